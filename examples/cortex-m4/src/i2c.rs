//! A bit-banged I2C master for the ARM SBCon two-wire interface of the MPS2
//! boards, as `embedded_hal::i2c::I2c` (embedded-hal 1.0, 7-bit addresses).
//!
//! The SBCon has no state machine: software sets and clears the SCL and SDA
//! lines and reads them back. On `mps2-an386` the fourth controller, at
//! [`SBCON3`], is the one QEMU attaches `-device at24c-eeprom,address=0x50`
//! (and `tmp105`) to.
//!
//! Register map: offset 0 reads the lines (bit 0 SCL, bit 1 SDA) and, when
//! written, drives the given lines high (released: I2C is open drain);
//! offset 4, written, drives the given lines low.

use embedded_hal::i2c::{self, ErrorKind, NoAcknowledgeSource, Operation, SevenBitAddress};

/// Base address of the fourth SBCon I2C controller of `mps2-an386`.
pub const SBCON3: usize = 0x4002_A000;

const SET: usize = 0x00;
const CLEAR: usize = 0x04;
const SCL: u32 = 1 << 0;
const SDA: u32 = 1 << 1;

/// The memory-mapped lines of one SBCon: the one place this driver touches
/// hardware. Reads and writes are volatile 32-bit accesses to `base + off`.
struct Lines(usize);

impl Lines {
    fn mmio(&self, off: usize, write: Option<u32>) -> u32 {
        let reg = (self.0 + off) as *mut u32;
        match write {
            // SAFETY: `self.0` is the SBCon register block at `SBCON3` (the
            // only constructor); offsets 0 and 4 are its 4-byte aligned
            // registers, and accessing them has no effect on memory.
            Some(v) => unsafe {
                core::ptr::write_volatile(reg, v);
                0
            },
            // SAFETY: as above.
            None => unsafe { core::ptr::read_volatile(reg) },
        }
    }
}

/// Errors of [`SbconI2c`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum I2cError {
    /// No device acknowledged its address, or the device refused a data byte.
    NoAcknowledge(NoAcknowledgeSource),
    /// The clock line stayed low (held by a device) past the stretch limit.
    ClockStuck,
}

impl i2c::Error for I2cError {
    fn kind(&self) -> ErrorKind {
        match *self {
            I2cError::NoAcknowledge(src) => ErrorKind::NoAcknowledge(src),
            I2cError::ClockStuck => ErrorKind::Bus,
        }
    }
}

/// A bit-banged I2C master on one SBCon controller.
pub struct SbconI2c {
    lines: Lines,
    /// Busy-wait iterations per half clock period (0 under QEMU; about
    /// `cpu_hz / (4 * bus_hz)` on hardware).
    half_period: u32,
}

impl SbconI2c {
    /// The fourth controller of `mps2-an386` ([`SBCON3`], where QEMU attaches
    /// `at24c-eeprom`), with the bus idle. Like the UART, the driver only
    /// ever touches the board's own register block at a fixed address.
    pub fn sbcon3(half_period: u32) -> Self {
        let bus = SbconI2c { lines: Lines(SBCON3), half_period };
        bus.lines.mmio(SET, Some(SCL | SDA));
        bus
    }

    fn delay(&self) {
        for _ in 0..self.half_period {
            core::hint::spin_loop();
        }
    }

    fn scl(&self, high: bool) -> Result<(), I2cError> {
        if high {
            self.lines.mmio(SET, Some(SCL));
            // Clock stretching: a device may hold SCL low.
            let mut spins = 0u32;
            while self.lines.mmio(SET, None) & SCL == 0 {
                spins += 1;
                if spins > 100_000 {
                    return Err(I2cError::ClockStuck);
                }
            }
        } else {
            self.lines.mmio(CLEAR, Some(SCL));
        }
        self.delay();
        Ok(())
    }

    fn sda(&self, high: bool) {
        self.lines.mmio(if high { SET } else { CLEAR }, Some(SDA));
        self.delay();
    }

    fn sda_is_high(&self) -> bool {
        self.lines.mmio(SET, None) & SDA != 0
    }

    /// START, or a repeated START: SDA falls while SCL is high.
    fn start(&self) -> Result<(), I2cError> {
        self.sda(true);
        self.scl(true)?;
        self.sda(false);
        self.scl(false)
    }

    /// STOP: SDA rises while SCL is high.
    fn stop(&self) -> Result<(), I2cError> {
        self.sda(false);
        self.scl(true)?;
        self.sda(true);
        Ok(())
    }

    /// Clocks out one byte; true if the device acknowledged it.
    fn write_byte(&self, byte: u8) -> Result<bool, I2cError> {
        for bit in (0..8).rev() {
            self.sda(byte >> bit & 1 != 0);
            self.scl(true)?;
            self.scl(false)?;
        }
        self.sda(true); // release SDA for the ACK
        self.scl(true)?;
        let ack = !self.sda_is_high();
        self.scl(false)?;
        Ok(ack)
    }

    /// Clocks in one byte, then ACKs it (`ack`) or NACKs it (the last byte).
    fn read_byte(&self, ack: bool) -> Result<u8, I2cError> {
        self.sda(true);
        let mut byte = 0u8;
        for _ in 0..8 {
            self.scl(true)?;
            byte = byte << 1 | u8::from(self.sda_is_high());
            self.scl(false)?;
        }
        self.sda(!ack);
        self.scl(true)?;
        self.scl(false)?;
        self.sda(true);
        Ok(byte)
    }

    fn run(&self, address: u8, operations: &mut [Operation<'_>]) -> Result<(), I2cError> {
        let mut previous_was_read: Option<bool> = None;
        let count = operations.len();
        for i in 0..count {
            let is_read = matches!(operations[i], Operation::Read(_));
            // Adjacent operations of one kind continue without a new START.
            if previous_was_read != Some(is_read) {
                self.start()?;
                if !self.write_byte(address << 1 | u8::from(is_read))? {
                    return Err(I2cError::NoAcknowledge(NoAcknowledgeSource::Address));
                }
            }
            previous_was_read = Some(is_read);
            let next_is_read = operations.get(i + 1).is_some_and(|o| matches!(o, Operation::Read(_)));
            match &mut operations[i] {
                Operation::Write(bytes) => {
                    for &b in bytes.iter() {
                        if !self.write_byte(b)? {
                            return Err(I2cError::NoAcknowledge(NoAcknowledgeSource::Data));
                        }
                    }
                }
                Operation::Read(buf) => {
                    let n = buf.len();
                    for (j, slot) in buf.iter_mut().enumerate() {
                        // NACK only the last byte before a STOP or a new START.
                        let last = j + 1 == n && !next_is_read;
                        *slot = self.read_byte(!last)?;
                    }
                }
            }
        }
        Ok(())
    }
}

impl i2c::ErrorType for SbconI2c {
    type Error = I2cError;
}

impl i2c::I2c<SevenBitAddress> for SbconI2c {
    fn transaction(&mut self, address: u8, operations: &mut [Operation<'_>]) -> Result<(), Self::Error> {
        let r = self.run(address, operations);
        // Always release the bus, also after a NACK.
        let s = self.stop();
        r.and(s)
    }
}
