//! Reboot-safe counters in an I2C EEPROM (`SPEC.md` §10), generic over any
//! `embedded_hal::i2c::I2c`: the `CounterStore` of the companion firmware.
//!
//! # Layout
//!
//! Two slots of [`SLOT_LEN`] bytes, at `base` and `base + SLOT_STRIDE`:
//!
//! ```text
//! generation (u32 LE) ‖ COUNTERS × value (u64 LE) ‖ CRC-32 (u32 LE)
//! ```
//!
//! The CRC (IEEE, reflected) covers a layout tag and the bytes before it. A
//! slot is valid if its CRC matches. At mount the valid slot with the higher
//! generation holds the counters; no valid slot (a blank 0xFF or zeroed
//! EEPROM) is a first boot, every counter 0.
//!
//! # Atomicity
//!
//! Every commit writes the slot that does *not* hold the current state,
//! with generation + 1, then reads it back and compares. A power cut at any
//! byte leaves the current slot untouched, so the next mount finds either
//! the old state (the new slot is torn: its CRC fails) or the new one. A
//! failed commit leaves the in-memory state at the old value, and the next
//! commit overwrites the same (non-current) slot again.
//!
//! Values only grow: a commit that would lower a counter, or overflow it or
//! the generation, is an error, never a wrap.

use embedded_hal::i2c::I2c;

/// How many counters a store holds.
pub const COUNTERS: usize = 2;
/// Bytes of one slot.
pub const SLOT_LEN: usize = 4 + 8 * COUNTERS + 4;
/// Distance between the two slots (one 32-byte EEPROM page each).
pub const SLOT_STRIDE: u16 = 32;
/// Largest write the driver issues in one I2C transaction (the EEPROM's page
/// size; a write never crosses a page).
pub const PAGE: usize = 8;
/// Bytes of EEPROM the store occupies from its base.
pub const FOOTPRINT: u16 = SLOT_STRIDE * 2;

/// Mixed into every CRC: a slot of another layout or program never validates.
const TAG: &[u8; 8] = b"owctr\x01\x00\x02";

/// How often a write the EEPROM has not finished (it NACKs its address
/// during its internal write cycle) is polled before giving up.
const ACK_POLLS: u32 = 1000;

/// Errors of [`EepromCounters`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreError<E> {
    /// The I2C bus failed (for example `NoAcknowledge`: no EEPROM).
    Bus(E),
    /// A slot read back differently from what was written.
    Verify,
    /// The counter (or the slot generation) would overflow: exhausted.
    Exhausted,
    /// The new value is below the stored one: counters never go back.
    Backwards,
    /// No such counter.
    Index,
    /// Both slots hold data that is neither a valid slot nor blank. A power
    /// cut cannot do that (only one slot is written at a time, and never the
    /// one holding the current state), so the EEPROM failed or was tampered
    /// with; starting again from zero would reuse sequence numbers and
    /// nonces under the long-lived key. The device must be re-provisioned.
    Corrupt,
}

/// `COUNTERS` persistent counters in an I2C EEPROM with two-byte addresses
/// (24C32 and up, and QEMU's `at24c-eeprom`).
pub struct EepromCounters<I2C> {
    i2c: I2C,
    device: u8,
    base: u16,
    /// The slot holding the current state and its generation; `None` before
    /// the first commit on a blank EEPROM.
    current: Option<(u16, u32)>,
    values: [u64; COUNTERS],
    hook: Option<fn(Write, u32)>,
    damaged: u8,
}

/// The two ends of a slot write, for [`EepromCounters::on_write`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Write {
    /// The first byte of the slot is about to go out.
    Begin,
    /// The last byte went out (read-back not yet done).
    End,
}

/// CRC-32 (IEEE 802.3, reflected, as zlib), bit by bit: small in flash.
pub fn crc32(parts: &[&[u8]]) -> u32 {
    let mut crc = !0u32;
    for part in parts {
        for &b in part.iter() {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = (crc >> 1) ^ (0xEDB8_8320 & (crc & 1).wrapping_neg());
            }
        }
    }
    !crc
}

fn le32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(b);
    u32::from_le_bytes(a)
}

fn le64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(b);
    u64::from_le_bytes(a)
}

/// A slot's generation and values if its CRC matches.
fn decode(slot: &[u8; SLOT_LEN]) -> Option<(u32, [u64; COUNTERS])> {
    let (body, crc) = slot.split_at(SLOT_LEN - 4);
    if crc32(&[TAG, body]) != le32(crc) {
        return None;
    }
    let mut values = [0u64; COUNTERS];
    for (i, v) in values.iter_mut().enumerate() {
        *v = le64(&body[4 + 8 * i..12 + 8 * i]);
    }
    Some((le32(&body[..4]), values))
}

fn encode(generation: u32, values: &[u64; COUNTERS]) -> [u8; SLOT_LEN] {
    let mut slot = [0u8; SLOT_LEN];
    slot[..4].copy_from_slice(&generation.to_le_bytes());
    for (i, v) in values.iter().enumerate() {
        slot[4 + 8 * i..12 + 8 * i].copy_from_slice(&v.to_le_bytes());
    }
    let crc = crc32(&[TAG, &slot[..SLOT_LEN - 4]]);
    slot[SLOT_LEN - 4..].copy_from_slice(&crc.to_le_bytes());
    slot
}

impl<I2C: I2c> EepromCounters<I2C> {
    /// Reads both slots of the EEPROM at 7-bit address `device`, from byte
    /// `base` (a multiple of [`PAGE`]), and takes the newest valid one.
    /// Bad contents are never an error: no valid slot is a first boot.
    ///
    /// # Errors
    /// [`StoreError::Bus`] if the EEPROM cannot be read.
    pub fn mount(i2c: I2C, device: u8, base: u16) -> Result<Self, StoreError<I2C::Error>> {
        let mut s = EepromCounters { i2c, device, base, current: None, values: [0; COUNTERS], hook: None, damaged: 0 };
        for index in 0..2u16 {
            let at = base + index * SLOT_STRIDE;
            let mut slot = [0u8; SLOT_LEN];
            s.read(at, &mut slot)?;
            match decode(&slot) {
                Some((generation, values)) if s.current.is_none_or(|(_, g)| generation > g) => {
                    s.current = Some((at, generation));
                    s.values = values;
                }
                Some(_) => {}
                // Neither valid nor blank: a write was cut in this slot.
                None if slot.iter().any(|&b| b != slot[0]) || (slot[0] != 0 && slot[0] != 0xFF) => s.damaged += 1,
                None => {}
            }
        }
        // One torn slot beside a blank one is a first commit cut short
        // (nothing was committed, so nothing was used); two are not a
        // power cut, and zero would be a lie.
        if s.current.is_none() && s.damaged == 2 {
            return Err(StoreError::Corrupt);
        }
        Ok(s)
    }

    /// Calls `hook` with the slot generation just before and just after each
    /// slot write (the power-cut test logs them to know when it cut).
    #[must_use]
    pub fn on_write(mut self, hook: fn(Write, u32)) -> Self {
        self.hook = Some(hook);
        self
    }

    /// Slots found at mount that are neither valid nor blank (0x00 or 0xFF
    /// throughout): evidence of a write cut by a power loss.
    pub fn damaged(&self) -> u8 {
        self.damaged
    }

    /// True if no valid slot was found at mount and nothing was committed.
    pub fn is_blank(&self) -> bool {
        self.current.is_none()
    }

    /// The generation of the current slot (0 when blank).
    pub fn generation(&self) -> u32 {
        self.current.map_or(0, |(_, g)| g)
    }

    /// Counter `index`'s durable value (0 on a first boot).
    ///
    /// # Errors
    /// [`StoreError::Index`].
    pub fn get(&self, index: usize) -> Result<u64, StoreError<I2C::Error>> {
        self.values.get(index).copied().ok_or(StoreError::Index)
    }

    /// Durably sets counter `index` to `value` (at or above its value).
    ///
    /// # Errors
    /// [`StoreError::Backwards`], [`StoreError::Index`],
    /// [`StoreError::Exhausted`] (generation), [`StoreError::Bus`] and
    /// [`StoreError::Verify`]; on any error the durable state is the old one
    /// (or, after a power cut, possibly the new one).
    pub fn set(&mut self, index: usize, value: u64) -> Result<(), StoreError<I2C::Error>> {
        let old = self.get(index)?;
        if value < old {
            return Err(StoreError::Backwards);
        }
        let mut values = self.values;
        values[index] = value;
        self.commit(values)
    }

    /// Reserves `n` numbers of counter `index` ahead of use: durably raises
    /// it by `n` and returns the old value, the first number now usable; the
    /// numbers `old..old + n` are the caller's, and no later boot hands them
    /// out again.
    ///
    /// # Errors
    /// [`StoreError::Exhausted`] if `old + n` overflows, and those of [`Self::set`].
    pub fn reserve(&mut self, index: usize, n: u64) -> Result<u64, StoreError<I2C::Error>> {
        let old = self.get(index)?;
        let new = old.checked_add(n).ok_or(StoreError::Exhausted)?;
        self.set(index, new)?;
        Ok(old)
    }

    /// Counter `index` as an `oncewire::store::CounterStore` (for the core's
    /// reboot-safe senders).
    pub fn counter(&mut self, index: usize) -> Counter<'_, I2C> {
        Counter { store: self, index }
    }

    /// Gives back the bus.
    pub fn release(self) -> I2C {
        self.i2c
    }

    fn commit(&mut self, values: [u64; COUNTERS]) -> Result<(), StoreError<I2C::Error>> {
        let (target, generation) = match self.current {
            None => (self.base, 1),
            Some((at, g)) => {
                let other = if at == self.base { self.base + SLOT_STRIDE } else { self.base };
                (other, g.checked_add(1).ok_or(StoreError::Exhausted)?)
            }
        };
        let slot = encode(generation, &values);
        if let Some(hook) = self.hook {
            hook(Write::Begin, generation);
        }
        for (k, chunk) in slot.chunks(PAGE).enumerate() {
            self.write(target + (k * PAGE) as u16, chunk)?;
        }
        if let Some(hook) = self.hook {
            hook(Write::End, generation);
        }
        let mut back = [0u8; SLOT_LEN];
        self.read(target, &mut back)?;
        if back != slot {
            return Err(StoreError::Verify);
        }
        self.current = Some((target, generation));
        self.values = values;
        Ok(())
    }

    fn read(&mut self, at: u16, buf: &mut [u8]) -> Result<(), StoreError<I2C::Error>> {
        let addr = at.to_be_bytes();
        self.poll(|i2c, device| i2c.write_read(device, &addr, buf))
    }

    fn write(&mut self, at: u16, bytes: &[u8]) -> Result<(), StoreError<I2C::Error>> {
        let mut msg = [0u8; 2 + PAGE];
        msg[..2].copy_from_slice(&at.to_be_bytes());
        msg[2..2 + bytes.len()].copy_from_slice(bytes);
        self.poll(|i2c, device| i2c.write(device, &msg[..2 + bytes.len()]))
    }

    /// Runs `op`, retrying while the EEPROM NACKs its address (busy with an
    /// internal write cycle, "acknowledge polling").
    fn poll(
        &mut self,
        mut op: impl FnMut(&mut I2C, u8) -> Result<(), I2C::Error>,
    ) -> Result<(), StoreError<I2C::Error>> {
        use embedded_hal::i2c::{Error as _, ErrorKind, NoAcknowledgeSource};
        let mut tries = 0;
        loop {
            match op(&mut self.i2c, self.device) {
                Ok(()) => return Ok(()),
                Err(e) if e.kind() == ErrorKind::NoAcknowledge(NoAcknowledgeSource::Address) && tries < ACK_POLLS => {
                    tries += 1;
                }
                Err(e) => return Err(StoreError::Bus(e)),
            }
        }
    }
}

/// One counter of an [`EepromCounters`], as the core's `CounterStore`.
pub struct Counter<'a, I2C> {
    store: &'a mut EepromCounters<I2C>,
    index: usize,
}

impl<I2C: I2c> oncewire::store::CounterStore for Counter<'_, I2C> {
    fn load(&mut self) -> oncewire::Result<Option<u64>> {
        if self.store.is_blank() {
            return Ok(None);
        }
        self.store.get(self.index).map(Some).map_err(|_| oncewire::Error::Storage)
    }

    fn store(&mut self, bound: u64) -> oncewire::Result<()> {
        self.store.set(self.index, bound).map_err(|_| oncewire::Error::Storage)
    }
}

#[cfg(test)]
mod tests;
