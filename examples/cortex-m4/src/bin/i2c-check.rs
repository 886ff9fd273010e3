//! Checks the SBCon I2C driver and the EEPROM counter store against QEMU's
//! devices (no mocks): an address with no device answers
//! `NoAcknowledge(Address)`, through the driver and through the store; the
//! at24c at 0x50 keeps what the store commits across a remount. Uses the
//! EEPROM from byte 256 on, away from the companion's counters. Exits 0 if
//! every check held. Run by `scripts/qemu-power-cut` before its runs.
#![no_std]
#![no_main]

use cortex_m_rt::entry;
use cortex_m_semihosting::{debug, hprintln};
use embedded_hal::i2c::{Error as _, ErrorKind, I2c, NoAcknowledgeSource};
use oncewire_companion::counters::{EepromCounters, StoreError};
use oncewire_companion::i2c::SbconI2c;

const BASE: u16 = 256;

#[entry]
fn main() -> ! {
    let code = match check() {
        Ok(()) => {
            hprintln!("i2c-check: OK");
            debug::EXIT_SUCCESS
        }
        Err(why) => {
            hprintln!("i2c-check: FAILED: {}", why);
            debug::EXIT_FAILURE
        }
    };
    debug::exit(code);
    loop {
        cortex_m::asm::wfi();
    }
}

fn check() -> Result<(), &'static str> {
    let mut bus = SbconI2c::sbcon3(0);
    let nack = ErrorKind::NoAcknowledge(NoAcknowledgeSource::Address);
    match bus.write(0x51, &[0, 0]) {
        Err(e) if e.kind() == nack => hprintln!("i2c-check: no device at 0x51: NoAcknowledge(Address)"),
        Err(_) => return Err("0x51: an error other than NoAcknowledge(Address)"),
        Ok(()) => return Err("0x51: acknowledged, yet nothing is there"),
    }
    let bus = match EepromCounters::mount(bus, 0x51, BASE) {
        Err(StoreError::Bus(e)) if e.kind() == nack => {
            hprintln!("i2c-check: store on 0x51: Bus(NoAcknowledge(Address))");
            SbconI2c::sbcon3(0)
        }
        _ => return Err("store on 0x51: mounted, or the wrong error"),
    };
    let mut store = EepromCounters::mount(bus, 0x50, BASE).map_err(|_| "mount 0x50")?;
    let first = store.get(1).map_err(|_| "get")?;
    store.set(1, first + 7).map_err(|_| "set")?;
    let start = store.reserve(0, 3).map_err(|_| "reserve")?;
    let store = EepromCounters::mount(store.release(), 0x50, BASE).map_err(|_| "remount 0x50")?;
    if store.get(1) != Ok(first + 7) || store.get(0) != Ok(start + 3) {
        return Err("the EEPROM did not keep the committed counters");
    }
    hprintln!("i2c-check: at24c at 0x50 kept the counters across a remount (generation {})", store.generation());
    Ok(())
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    debug::exit(debug::EXIT_FAILURE);
    loop {
        cortex_m::asm::wfi();
    }
}
