//! Console lines without `core::fmt`: a format string whose `{}` are
//! replaced, in order, by [`Arg`]s (strings and integers), built into one
//! buffer and written to the semihosting console in one call.
//!
//! `core::fmt` (the `Formatter`, padding, `Display` for integers, `Debug`
//! for strings with its Unicode escape tables, and the 64-bit division it
//! needs) cost the companion image about 6 KiB of flash; this costs a few
//! hundred bytes. The format strings are the ones the defmt build logs with
//! (`log!` in the binaries), so both variants print the same lines.

/// One value substituted for a `{}`.
#[derive(Clone, Copy)]
pub enum Arg<'a> {
    /// Written as is.
    Str(&'a str),
    /// Unsigned decimal.
    U(u64),
    /// Signed decimal.
    I(i64),
}

impl<'a> From<&'a str> for Arg<'a> {
    fn from(s: &'a str) -> Self {
        Arg::Str(s)
    }
}

macro_rules! from_int {
    ($variant:ident: $($t:ty),*) => {$(
        impl From<$t> for Arg<'_> {
            fn from(v: $t) -> Self {
                Arg::$variant(v as _)
            }
        }
    )*};
}
from_int!(U: u8, u16, u32, u64, usize);
from_int!(I: i32, i64);

/// Bytes of one console line; longer lines are cut short.
pub const LINE: usize = 160;

/// A byte buffer that drops what does not fit.
struct Line<'a> {
    buf: &'a mut [u8; LINE],
    len: usize,
}

impl Line<'_> {
    fn push(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if let Some(slot) = self.buf.get_mut(self.len) {
                *slot = b;
                self.len += 1;
            }
        }
    }

    /// Decimal digits of `v`, with 32-bit divisions only (a `u64` division
    /// would link the 64-bit division routine): long division by 10 of four
    /// 16-bit limbs.
    fn push_u64(&mut self, v: u64) {
        let mut limbs = [(v >> 48) as u16, (v >> 32) as u16, (v >> 16) as u16, v as u16];
        // u64::MAX has 20 digits: written from the back.
        let mut digits = [0u8; 20];
        let mut start = digits.len();
        while start > 0 {
            let mut rem = 0u32;
            for limb in limbs.iter_mut() {
                let cur = rem << 16 | u32::from(*limb);
                *limb = (cur / 10) as u16;
                rem = cur % 10;
            }
            start -= 1;
            digits[start] = b'0' + rem as u8;
            if limbs == [0; 4] {
                break;
            }
        }
        self.push(&digits[start..]);
    }
}

/// Formats one line (with its newline) into `out`; returns its length.
pub fn format_line(fmt: &str, args: &[Arg<'_>], out: &mut [u8; LINE]) -> usize {
    let mut line = Line { buf: out, len: 0 };
    let mut args = args.iter();
    let mut rest = fmt.as_bytes();
    while let Some(at) = rest.windows(2).position(|w| w == b"{}") {
        line.push(&rest[..at]);
        rest = &rest[at + 2..];
        match args.next() {
            Some(Arg::Str(s)) => line.push(s.as_bytes()),
            Some(&Arg::U(v)) => line.push_u64(v),
            Some(&Arg::I(v)) => {
                if v < 0 {
                    line.push(b"-");
                }
                line.push_u64(v.unsigned_abs());
            }
            None => line.push(b"{}"),
        }
    }
    line.push(rest);
    // The newline always fits: it replaces the last byte of a full line.
    line.len = line.len.min(LINE - 1);
    line.push(b"\n");
    line.len
}

/// Writes one line to the semihosting console (the host's stdout).
#[cfg(target_arch = "arm")]
pub fn print(fmt: &str, args: &[Arg<'_>]) {
    use core::cell::Cell;
    use cortex_m::interrupt::{self, Mutex};
    use cortex_m_semihosting::hio::{self, HostStream};
    static STDOUT: Mutex<Cell<Option<HostStream>>> = Mutex::new(Cell::new(None));
    let mut buf = [0u8; LINE];
    let n = format_line(fmt, args, &mut buf);
    interrupt::free(|cs| {
        let cell = STDOUT.borrow(cs);
        let stream = cell.get().or_else(|| hio::hstdout().ok());
        cell.set(stream);
        if let Some(mut s) = stream {
            let _ = s.write_all(&buf[..n]);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(fmt: &str, args: &[Arg<'_>]) -> std::string::String {
        let mut buf = [0u8; LINE];
        let n = format_line(fmt, args, &mut buf);
        std::string::String::from_utf8(buf[..n].to_vec()).unwrap_or_default()
    }

    #[test]
    fn integers_and_strings() {
        assert_eq!(line("peak stack: {} bytes", &[7u32.into()]), "peak stack: 7 bytes\n");
        assert_eq!(line("{} {} {}", &[0u64.into(), u64::MAX.into(), 10u8.into()]), "0 18446744073709551615 10\n");
        assert_eq!(line("{}/{}", &[i64::MIN.into(), (-42i64).into()]), "-9223372036854775808/-42\n");
        assert_eq!(line("sent \"{}\"", &["door state?".into()]), "sent \"door state?\"\n");
        assert_eq!(line("{} and {}", &["one".into()]), "one and {}\n");
        for v in [1u64, 9, 65_535, 65_536, 4_294_967_295, 4_294_967_296, 1_000_000_007_000] {
            assert_eq!(line("{}", &[v.into()]), std::format!("{v}\n"));
        }
    }

    #[test]
    fn long_lines_are_cut_not_overrun() {
        let long = [b'x'; 400];
        let s = core::str::from_utf8(&long).unwrap_or_default();
        let out = line("{}{}", &[s.into(), u64::MAX.into()]);
        assert_eq!(out.len(), LINE);
        assert!(out.ends_with('\n'));
    }
}
