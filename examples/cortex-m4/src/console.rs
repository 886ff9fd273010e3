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

/// Where the first `{}` of `s` starts.
fn placeholder(s: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i + 1 < s.len() {
        if s[i] == b'{' && s[i + 1] == b'}' {
            return Some(i);
        }
        i += 1;
    }
    None
}

/// Formats one line (with its newline) into `out`; returns its length.
pub fn format_line(fmt: &str, args: &[Arg<'_>], out: &mut [u8; LINE]) -> usize {
    let mut line = Line { buf: out, len: 0 };
    let mut args = args.iter();
    let mut rest = fmt.as_bytes();
    while let Some(at) = placeholder(rest) {
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

/// Writes one line to the semihosting console (the host's stdout: `:tt`
/// opened for writing, as `hprintln!` does), in one `SYS_WRITE`.
#[cfg(target_arch = "arm")]
pub fn print(fmt: &str, args: &[Arg<'_>]) {
    use core::sync::atomic::{AtomicUsize, Ordering};
    use cortex_m_semihosting::{nr, syscall};
    /// The console's file handle plus one; 0 before the first line.
    static STDOUT: AtomicUsize = AtomicUsize::new(0);
    let mut buf = [0u8; LINE];
    let n = format_line(fmt, args, &mut buf);
    let mut fd = STDOUT.load(Ordering::Relaxed);
    if fd == 0 {
        // SAFETY: SYS_OPEN of a NUL-terminated name in flash (length
        // without the NUL); the host only reads it.
        fd = unsafe { syscall!(OPEN, c":tt".as_ptr(), nr::open::W_TRUNC, 3) }.wrapping_add(1);
        STDOUT.store(fd, Ordering::Relaxed);
    }
    if fd != 0 {
        // SAFETY: SYS_WRITE of `n` initialised bytes of `buf`; the host only
        // reads them. A short write drops the rest of the line.
        unsafe { syscall!(WRITE, fd - 1, buf.as_ptr(), n) };
    }
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
