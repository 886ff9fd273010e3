//! Size baseline: counter-session seal and open with a replay window, and
//! nothing else (no P-256, no handshake). Seals and opens one frame, checks a
//! replay is rejected, prints its peak stack (stack painting), and exits.
#![no_std]
#![no_main]

use cortex_m_rt::entry;
use cortex_m_semihosting::debug;
use oncewire::clock::ManualClock;
use oncewire::wire::buffer_len;
use oncewire::{CounterReceiver, CounterSender, Error, RustCrypto, Secret};
use oncewire_companion::StackPaint;
use oncewire_companion::console::{Arg, print};

#[entry]
fn main() -> ! {
    let stack = StackPaint::paint();
    let ok = run().is_ok();
    print("peak stack: {} bytes", &[Arg::from(stack.peak())]);
    print(if ok { "minimal: OK" } else { "minimal: FAILED" }, &[]);
    debug::exit(if ok { debug::EXIT_SUCCESS } else { debug::EXIT_FAILURE });
    loop {
        cortex_m::asm::wfi();
    }
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    debug::exit(debug::EXIT_FAILURE);
    loop {
        cortex_m::asm::wfi();
    }
}

fn run() -> Result<(), Error> {
    // The key and IV would come from a handshake or provisioning.
    let key = Secret::new(core::hint::black_box([7u8; 32]));
    let iv = core::hint::black_box([9u8; 12]);
    let clock = ManualClock::new(1_767_225_600_000);
    let mut tx: CounterSender = CounterSender::new(&key, Secret::new(iv), *b"sess0001", 0)?;
    let mut rx: CounterReceiver<RustCrypto, 4> = CounterReceiver::new(&key, Secret::new(iv), *b"sess0001")?;
    let mut frame = [0u8; buffer_len(32)];
    let n = tx.seal(&clock, core::hint::black_box(b"unlock door 7, user 42, ok"), &mut frame)?;
    let mut copy = frame;
    rx.open_in_place(&clock, &mut frame[..n])?;
    match rx.open_in_place(&clock, &mut copy[..n]) {
        Err(Error::Replay) => Ok(()),
        _ => Err(Error::Authentication),
    }
}
