//! Board support for the oncewire companion firmware on QEMU `mps2-an386`:
//! the CMSDK UART as `embedded-io`, a SysTick millisecond clock, an HMAC-DRBG
//! behind the `TryCryptoRng` seam, stack painting, and the demo envelope.
#![no_std]

use core::sync::atomic::{AtomicU32, Ordering};
use cortex_m::peripheral::SYST;
use cortex_m::peripheral::syst::SystClkSource;
use oncewire::provider::CryptoProvider;
use oncewire::{Clock, RustCrypto};

// ---------------------------------------------------------------------------
// UART: ARM CMSDK APB UART0 at 0x4000_4000 (mps2-an385/an386).
// ---------------------------------------------------------------------------

const UART0: usize = 0x4000_4000;
const DATA: usize = 0x00;
const STATE: usize = 0x04;
const CTRL: usize = 0x08;
const BAUDDIV: usize = 0x10;
const STATE_TX_FULL: u32 = 1 << 0;
const STATE_RX_FULL: u32 = 1 << 1;

/// The board's UART0, which QEMU connects to the host demo server.
pub struct Uart(usize);

impl Uart {
    /// Enables UART0 for transmit and receive.
    pub fn uart0() -> Self {
        let u = Uart(UART0);
        u.write_reg(BAUDDIV, 16);
        u.write_reg(CTRL, 0b11);
        u
    }

    fn read_reg(&self, off: usize) -> u32 {
        // SAFETY: a memory-mapped register of the UART, 4-byte aligned.
        unsafe { core::ptr::read_volatile((self.0 + off) as *const u32) }
    }

    fn write_reg(&self, off: usize, v: u32) {
        // SAFETY: a memory-mapped register of the UART, 4-byte aligned.
        unsafe { core::ptr::write_volatile((self.0 + off) as *mut u32, v) }
    }
}

impl embedded_io::ErrorType for Uart {
    type Error = core::convert::Infallible;
}

impl embedded_io::Read for Uart {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        let mut n = 0;
        for slot in buf.iter_mut() {
            if n > 0 && self.read_reg(STATE) & STATE_RX_FULL == 0 {
                break;
            }
            while self.read_reg(STATE) & STATE_RX_FULL == 0 {}
            *slot = self.read_reg(DATA) as u8;
            n += 1;
        }
        Ok(n)
    }
}

impl embedded_io::Write for Uart {
    fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        for &b in buf {
            while self.read_reg(STATE) & STATE_TX_FULL != 0 {}
            self.write_reg(DATA, u32::from(b));
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Clock: SysTick at 1 kHz on the 25 MHz system clock.
// ---------------------------------------------------------------------------

static MILLIS: AtomicU32 = AtomicU32::new(0);

/// Milliseconds since boot.
pub fn millis() -> u32 {
    MILLIS.load(Ordering::Relaxed)
}

/// Called from the SysTick exception.
pub fn tick() {
    MILLIS.fetch_add(1, Ordering::Relaxed);
}

/// Starts the 1 ms SysTick.
pub fn start_systick(syst: &mut SYST) {
    syst.set_clock_source(SystClkSource::Core);
    syst.set_reload(25_000 - 1);
    syst.clear_current();
    syst.enable_counter();
    syst.enable_interrupt();
}

/// Wall clock: a build-time epoch plus time since boot. Pass it to the
/// session uncorrected: the session applies the clock offset it measured in
/// the handshake (message 2 carries the server's time) to every timestamp it
/// stamps and to the freshness check of every record and response it opens.
pub struct BoardClock {
    /// Unix ms at boot, as best known.
    pub epoch_ms: u64,
}

impl Clock for BoardClock {
    fn now_ms(&self) -> u64 {
        self.epoch_ms + u64::from(millis())
    }
}

// ---------------------------------------------------------------------------
// RNG: HMAC-DRBG (NIST SP 800-90A, SHA-256) seeded from flash.
// EMULATION ONLY: QEMU has no TRNG. A real device seeds from its TRNG and
// reports TRNG health-test failures as errors through this same seam.
// ---------------------------------------------------------------------------

/// HMAC-DRBG over the provider's HMAC-SHA256.
pub struct HmacDrbg {
    k: [u8; 32],
    v: [u8; 32],
}

impl HmacDrbg {
    /// Instantiates from a seed (entropy ‖ nonce ‖ personalisation).
    pub fn new(seed: &[u8]) -> Self {
        let mut d = HmacDrbg { k: [0; 32], v: [1; 32] };
        d.update(seed);
        d
    }

    fn update(&mut self, data: &[u8]) {
        self.k = RustCrypto::hmac_sha256(&self.k, &[&self.v, &[0x00], data]);
        self.v = RustCrypto::hmac_sha256(&self.k, &[&self.v]);
        if !data.is_empty() {
            self.k = RustCrypto::hmac_sha256(&self.k, &[&self.v, &[0x01], data]);
            self.v = RustCrypto::hmac_sha256(&self.k, &[&self.v]);
        }
    }
}

impl rand_core::TryRng for HmacDrbg {
    type Error = core::convert::Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        let mut b = [0u8; 4];
        self.try_fill_bytes(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }
    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        let mut b = [0u8; 8];
        self.try_fill_bytes(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        for chunk in dst.chunks_mut(32) {
            self.v = RustCrypto::hmac_sha256(&self.k, &[&self.v]);
            chunk.copy_from_slice(&self.v[..chunk.len()]);
        }
        self.update(&[]);
        Ok(())
    }
}

impl rand_core::TryCryptoRng for HmacDrbg {}

// ---------------------------------------------------------------------------
// Stack painting: fill unused stack with a pattern, later find the deepest
// word that changed.
// ---------------------------------------------------------------------------

const PAINT: u32 = 0xDEAD_BEEF;
/// How far below the current stack pointer to paint.
const PAINT_BYTES: usize = 64 * 1024;

/// A painted stack region.
pub struct StackPaint {
    top: usize,
    bottom: usize,
}

unsafe extern "C" {
    static _stack_start: u32;
}

impl StackPaint {
    /// Paints from just below the current stack pointer down `PAINT_BYTES`.
    #[inline(never)]
    pub fn paint() -> Self {
        let sp = cortex_m::register::msp::read() as usize;
        let top = core::ptr::addr_of!(_stack_start) as usize;
        let start = sp - 256; // leave this frame alone
        let bottom = top - PAINT_BYTES;
        let mut p = bottom;
        while p < start {
            // SAFETY: unused stack memory below the live frames, inside RAM.
            unsafe { core::ptr::write_volatile(p as *mut u32, PAINT) };
            p += 4;
        }
        StackPaint { top, bottom }
    }

    /// Peak stack use since boot, in bytes.
    pub fn peak(&self) -> usize {
        let mut p = self.bottom;
        // SAFETY: reads of painted stack memory inside RAM.
        while p < self.top && unsafe { core::ptr::read_volatile(p as *const u32) } == PAINT {
            p += 4;
        }
        self.top - p
    }
}

// ---------------------------------------------------------------------------
// Demo envelope (SPEC.md Appendix A): kind ‖ u16 BE length ‖ body.
// ---------------------------------------------------------------------------

/// Envelope kinds.
pub mod kind {
    /// Start enrollment.
    pub const ENROLL_BEGIN: u8 = 1;
    /// Enrollment challenge.
    pub const ENROLL_CHALLENGE: u8 = 2;
    /// Enrollment answer.
    pub const ENROLL_ANSWER: u8 = 3;
    /// Success.
    pub const OK: u8 = 4;
    /// An oncewire frame.
    pub const FRAME: u8 = 5;
    /// The server's static key.
    pub const SERVER_KEY: u8 = 7;
    /// Rejected, with the error name.
    pub const REJECTED: u8 = 15;
}

/// Sends one envelope.
pub fn send<W: embedded_io::Write>(w: &mut W, kind: u8, body: &[u8]) -> Result<(), W::Error> {
    let len = body.len() as u16;
    w.write_all(&[kind])?;
    w.write_all(&len.to_be_bytes())?;
    w.write_all(body)
}

/// Receives one envelope into `buf`; returns its kind and length.
pub fn recv<R: embedded_io::Read>(r: &mut R, buf: &mut [u8]) -> Result<(u8, usize), &'static str> {
    let mut head = [0u8; 3];
    r.read_exact(&mut head).map_err(|_| "uart read")?;
    let len = usize::from(u16::from_be_bytes([head[1], head[2]]));
    let body = buf.get_mut(..len).ok_or("envelope too large")?;
    r.read_exact(body).map_err(|_| "uart read")?;
    Ok((head[0], len))
}
