//! The Cortex-M pieces: UART0, the SysTick clock, a free-running 25 MHz
//! timer (instruction counts under `-icount`), stack painting, and the
//! vector table's device interrupts.

use core::sync::atomic::{AtomicU32, Ordering};
use cortex_m::peripheral::SYST;
use cortex_m::peripheral::syst::SystClkSource;
use oncewire::Clock;

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
// Timer: CMSDK APB TIMER0 at 0x4000_0000, a 32-bit down counter on the
// 25 MHz peripheral clock, free running. Under `qemu-system-arm -icount
// shift=0` the virtual clock advances 1 ns per guest instruction executed,
// so one tick (40 ns) is 40 instructions: the timer counts instructions.
// ---------------------------------------------------------------------------

const TIMER0: usize = 0x4000_0000;
const TIMER_CTRL: usize = 0x00;
const TIMER_VALUE: usize = 0x04;
const TIMER_RELOAD: usize = 0x08;
/// Ticks of [`ticks`] per second.
pub const TIMER_HZ: u32 = 25_000_000;

fn timer_reg(off: usize) -> *mut u32 {
    (TIMER0 + off) as *mut u32
}

/// Starts TIMER0 counting down from `u32::MAX` (171 s before it wraps).
pub fn start_timer() {
    // SAFETY: the timer's 4-byte aligned registers; no effect on memory.
    unsafe {
        core::ptr::write_volatile(timer_reg(TIMER_CTRL), 0);
        core::ptr::write_volatile(timer_reg(TIMER_RELOAD), u32::MAX);
        core::ptr::write_volatile(timer_reg(TIMER_VALUE), u32::MAX);
        core::ptr::write_volatile(timer_reg(TIMER_CTRL), 1);
    }
}

/// Timer ticks since [`start_timer`] (wrapping).
pub fn ticks() -> u32 {
    // SAFETY: as above.
    u32::MAX - unsafe { core::ptr::read_volatile(timer_reg(TIMER_VALUE)) }
}

/// Runs a loop of exactly `2 * n` instructions (`subs`, `bne`) and returns
/// the ticks it took: under `-icount shift=0`, `n / 20` ticks. The size
/// report checks this before it trusts a tick count as instructions.
#[inline(never)]
pub fn calibrate(n: u32) -> u32 {
    let t0 = ticks();
    // SAFETY: register-only arithmetic and a branch.
    unsafe {
        core::arch::asm!("2:", "subs {0}, #1", "bne 2b", inout(reg) n.max(1) => _, options(nomem, nostack));
    }
    ticks().wrapping_sub(t0)
}

// ---------------------------------------------------------------------------
// Vector table: cortex-m-rt's `device` feature, so that the table holds the
// device interrupts this firmware uses instead of 240 default entries
// (960 bytes of flash). It enables none (everything is polled; the NVIC is
// never touched), and cortex-m-rt's linker script wants at least one entry.
// ---------------------------------------------------------------------------

#[doc(hidden)]
#[unsafe(link_section = ".vector_table.interrupts")]
#[unsafe(no_mangle)]
pub static __INTERRUPTS: [unsafe extern "C" fn(); 1] = [{
    unsafe extern "C" {
        fn DefaultHandler();
    }
    DefaultHandler
}];

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
