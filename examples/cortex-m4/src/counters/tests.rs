//! Host tests of the EEPROM counter store against an in-memory at24c model
//! that loses power after any given number of bytes written.
//!
//! `cd examples/cortex-m4 && cargo test --lib --target x86_64-unknown-linux-gnu`
extern crate std;

use super::*;
use embedded_hal::i2c::{ErrorKind, ErrorType, NoAcknowledgeSource, Operation};
use oncewire::record::PersistentSender;
use oncewire::{RustCrypto, Secret};
use std::collections::BTreeSet;
use std::vec::Vec;

const ADDR: u8 = 0x50;
const BASE: u16 = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ModelError(ErrorKind);

impl embedded_hal::i2c::Error for ModelError {
    fn kind(&self) -> ErrorKind {
        self.0
    }
}

/// How the byte being written when power goes is left.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Cut {
    /// Untouched (the cut fell between two bytes).
    Clean,
    /// Half-programmed: neither the old nor the new value.
    Torn,
}

/// An at24c with two address bytes, as QEMU 7.2 models it: a write sets the
/// address pointer from its first two bytes and stores the rest from there;
/// a read continues from the pointer.
struct Eeprom {
    mem: Vec<u8>,
    ptr: usize,
    /// Data bytes that still reach the array before the power cut.
    budget: Option<usize>,
    cut: Cut,
    /// Power is gone: every transaction fails until `power_on`.
    dead: bool,
    /// Data bytes stored since power-on.
    written: usize,
    /// Flip bit 0 of this many bytes, after acknowledging them.
    flaky: usize,
}

impl Eeprom {
    fn new(fill: u8) -> Self {
        Eeprom { mem: std::vec![fill; 256], ptr: 0, budget: None, cut: Cut::Clean, dead: false, written: 0, flaky: 0 }
    }
    fn power_on(&mut self, budget: Option<usize>, cut: Cut) {
        self.dead = false;
        self.budget = budget;
        self.cut = cut;
        self.written = 0;
    }
}

impl ErrorType for Eeprom {
    type Error = ModelError;
}

impl embedded_hal::i2c::I2c for Eeprom {
    fn transaction(&mut self, address: u8, operations: &mut [Operation<'_>]) -> Result<(), ModelError> {
        if address != ADDR || self.dead {
            return Err(ModelError(ErrorKind::NoAcknowledge(NoAcknowledgeSource::Address)));
        }
        let len = self.mem.len();
        for op in operations {
            match op {
                Operation::Write(bytes) => {
                    let (hi, lo, data) = match bytes {
                        [hi, lo, data @ ..] => (*hi, *lo, data),
                        _ => return Err(ModelError(ErrorKind::Other)),
                    };
                    self.ptr = usize::from(u16::from_be_bytes([hi, lo])) % len;
                    for &b in data.iter() {
                        if self.budget == Some(0) {
                            if self.cut == Cut::Torn {
                                self.mem[self.ptr] ^= 0x5A;
                            }
                            self.dead = true;
                            return Err(ModelError(ErrorKind::NoAcknowledge(NoAcknowledgeSource::Data)));
                        }
                        if let Some(n) = self.budget.as_mut() {
                            *n -= 1;
                        }
                        self.mem[self.ptr] = if self.flaky > 0 {
                            self.flaky -= 1;
                            b ^ 1
                        } else {
                            b
                        };
                        self.ptr = (self.ptr + 1) % len;
                        self.written += 1;
                    }
                }
                Operation::Read(buf) => {
                    for slot in buf.iter_mut() {
                        *slot = self.mem[self.ptr];
                        self.ptr = (self.ptr + 1) % len;
                    }
                }
            }
        }
        Ok(())
    }
}

const BLOCK: u64 = 4;
const BOOT: usize = 0;
const SEQ: usize = 1;

/// What one device life handed out before it ended.
#[derive(Default)]
struct Used {
    boots: Vec<u64>,
    seqs: Vec<u64>,
}

/// One life of the firmware's use of the store: mount, reserve a boot
/// number, boot a `PersistentSender` on counter `SEQ`, seal `records`.
/// Stops at the first error (the power cut). Numbers count as handed out
/// only once the store returned, as in the firmware.
fn life(eeprom: &mut Eeprom, records: usize, used: &mut Used) -> Result<(), ()> {
    let mut store = EepromCounters::mount(&mut *eeprom, ADDR, BASE).map_err(|_| ())?;
    let boot = store.reserve(BOOT, 1).map_err(|_| ())?;
    used.boots.push(boot);
    let key = Secret::new([7u8; 32]);
    let mut tx = PersistentSender::<_, RustCrypto>::boot(&key, Secret::new([9; 12]), [1; 8], store.counter(SEQ), BLOCK)
        .map_err(|_| ())?;
    let clock = oncewire::clock::ManualClock::new(1);
    for _ in 0..records {
        let seq = tx.next_seq();
        let mut out = [0u8; 128];
        tx.seal(&clock, b"door", &mut out).map_err(|_| ())?;
        used.seqs.push(seq);
    }
    Ok(())
}

/// After a cut: a fresh mount recovers counters above everything handed out.
fn check_recovered(eeprom: &mut Eeprom, used: &Used, what: &str) {
    eeprom.power_on(None, Cut::Clean);
    let store = EepromCounters::mount(&mut *eeprom, ADDR, BASE).unwrap();
    let boot = store.get(BOOT).unwrap();
    let seq = store.get(SEQ).unwrap();
    if let Some(&max) = used.boots.iter().max() {
        assert!(boot > max, "{what}: boot counter {boot} not above {max}, handed out before the cut");
    }
    if let Some(&max) = used.seqs.iter().max() {
        assert!(seq > max, "{what}: sequence bound {seq} not above {max}, used before the cut");
    }
}

fn total_bytes(records: usize) -> usize {
    let mut e = Eeprom::new(0xFF);
    life(&mut e, records, &mut Used::default()).unwrap();
    e.written
}

#[test]
fn a_cut_at_every_byte_of_a_first_life_recovers_above_every_number_used() {
    let records = 10;
    let total = total_bytes(records);
    // Boot number, first reservation, two more blocks: 4 slot writes.
    assert_eq!(total, 4 * SLOT_LEN);
    for cut in [Cut::Clean, Cut::Torn] {
        for k in 0..total {
            let mut e = Eeprom::new(0xFF);
            e.power_on(Some(k), cut);
            let mut used = Used::default();
            assert!(life(&mut e, records, &mut used).is_err(), "cut at {k} must end the life");
            assert_eq!(e.written, k);
            check_recovered(&mut e, &used, &std::format!("{cut:?} cut after {k} bytes"));
        }
    }
}

#[test]
fn cuts_at_every_byte_of_a_later_life_never_reuse_across_reboots() {
    // A device that already lived (both slots valid), then cut at every
    // byte of its next life, then booted again: all numbers distinct.
    let records = 9;
    let mut aged = Eeprom::new(0xFF);
    let mut history = Used::default();
    for _ in 0..3 {
        life(&mut aged, records, &mut history).unwrap();
    }
    let mut probe = Eeprom { mem: aged.mem.clone(), ..Eeprom::new(0) };
    life(&mut probe, records, &mut Used::default()).unwrap();
    let total = probe.written;
    for cut in [Cut::Clean, Cut::Torn] {
        for k in 0..total {
            let mut e = Eeprom { mem: aged.mem.clone(), ..Eeprom::new(0) };
            e.power_on(Some(k), cut);
            let mut used = Used { boots: history.boots.clone(), seqs: history.seqs.clone() };
            assert!(life(&mut e, records, &mut used).is_err());
            check_recovered(&mut e, &used, &std::format!("{cut:?} cut after {k} bytes of life 4"));
            // The next life resumes sealing, above everything before.
            e.power_on(None, Cut::Clean);
            life(&mut e, records, &mut used).unwrap();
            let distinct: BTreeSet<_> = used.seqs.iter().collect();
            assert_eq!(distinct.len(), used.seqs.len(), "a sequence number was reused");
            let boots: BTreeSet<_> = used.boots.iter().collect();
            assert_eq!(boots.len(), used.boots.len(), "a boot number was reused");
        }
    }
}

#[test]
fn many_random_cuts_in_a_row_never_reuse() {
    // A long chain of lives, each cut at a pseudo-random byte (xorshift).
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    let mut e = Eeprom::new(0xFF);
    let mut used = Used::default();
    let mut completed = 0;
    for life_no in 0..400 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let budget = (x % (5 * SLOT_LEN as u64)) as usize;
        let cut = if x & 1 == 0 { Cut::Clean } else { Cut::Torn };
        e.power_on(Some(budget), cut);
        if life(&mut e, 12, &mut used).is_ok() {
            completed += 1;
        }
        check_recovered(&mut e, &used, &std::format!("life {life_no}"));
    }
    let distinct: BTreeSet<_> = used.seqs.iter().collect();
    assert_eq!(distinct.len(), used.seqs.len(), "a sequence number was reused");
    assert!(used.seqs.len() > 1000, "the chain sealed too little to mean anything: {}", used.seqs.len());
    assert!(completed > 0 && completed < 400);
}

#[test]
fn blank_or_zeroed_is_a_first_boot_and_garbage_in_both_slots_is_corrupt_not_zero() {
    for fill in [0xFF, 0x00] {
        let mut e = Eeprom::new(fill);
        let s = EepromCounters::mount(&mut e, ADDR, BASE).unwrap();
        assert!(s.is_blank());
        assert_eq!(s.damaged(), 0);
        assert_eq!((s.get(0), s.get(1)), (Ok(0), Ok(0)));
    }
    let mut x = 1u32;
    let mut e = Eeprom::new(0);
    for b in e.mem.iter_mut() {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
        *b = (x >> 16) as u8;
    }
    let before = e.mem.clone();
    // Counters at zero here would reuse every sequence number and nonce.
    assert!(matches!(EepromCounters::mount(&mut e, ADDR, BASE), Err(StoreError::Corrupt)));
    assert_eq!(e.mem, before, "a refused mount writes nothing");

    // A valid slot beside a damaged one: the valid one is the state.
    let mut e = Eeprom::new(0xFF);
    EepromCounters::mount(&mut e, ADDR, BASE).unwrap().set(0, 7).unwrap();
    let other = usize::from(BASE + SLOT_STRIDE);
    for b in &mut e.mem[other..other + SLOT_LEN] {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
        *b = (x >> 16) as u8;
    }
    let s = EepromCounters::mount(&mut e, ADDR, BASE).unwrap();
    assert_eq!((s.get(0), s.damaged()), (Ok(7), 1));

    // Only one torn slot beside a blank one: a first commit cut short.
    let mut e = Eeprom::new(0xFF);
    e.mem[usize::from(BASE) + 3] = 0x5A;
    let s = EepromCounters::mount(&mut e, ADDR, BASE).unwrap();
    assert!(s.is_blank());
    assert_eq!(s.damaged(), 1);
}

#[test]
fn the_newer_valid_slot_wins_and_a_torn_newer_slot_loses() {
    let mut e = Eeprom::new(0xFF);
    let mut s = EepromCounters::mount(&mut e, ADDR, BASE).unwrap();
    s.set(1, 10).unwrap();
    s.set(1, 20).unwrap();
    s.set(1, 30).unwrap(); // generation 3, back in slot 0
    assert_eq!(s.generation(), 3);
    let _ = s.release();
    let s = EepromCounters::mount(&mut e, ADDR, BASE).unwrap();
    assert_eq!((s.generation(), s.get(1)), (3, Ok(30)));
    let _ = s.release();
    // Corrupt one byte of slot 0 (the newest): slot 1 (20) is what is left.
    e.mem[usize::from(BASE) + 6] ^= 0x10;
    let s = EepromCounters::mount(&mut e, ADDR, BASE).unwrap();
    assert_eq!((s.generation(), s.get(1)), (2, Ok(20)));
    assert_eq!(s.damaged(), 1);
}

#[test]
fn a_write_that_reads_back_wrong_is_an_error_and_keeps_the_old_value() {
    let mut e = Eeprom::new(0xFF);
    let mut s = EepromCounters::mount(&mut e, ADDR, BASE).unwrap();
    s.set(1, 5).unwrap();
    let _ = s.release();
    e.flaky = 1;
    let mut s = EepromCounters::mount(&mut e, ADDR, BASE).unwrap();
    assert_eq!(s.set(1, 9), Err(StoreError::Verify));
    assert_eq!(s.get(1), Ok(5));
    // The retry goes to the same (non-current) slot and succeeds.
    s.set(1, 9).unwrap();
    let _ = s.release();
    let s = EepromCounters::mount(&mut e, ADDR, BASE).unwrap();
    assert_eq!(s.get(1), Ok(9));
}

#[test]
fn exhaustion_and_going_back_are_errors_never_a_wrap() {
    let mut e = Eeprom::new(0xFF);
    let mut s = EepromCounters::mount(&mut e, ADDR, BASE).unwrap();
    s.set(0, u64::MAX - 1).unwrap();
    assert_eq!(s.reserve(0, 2), Err(StoreError::Exhausted));
    assert_eq!(s.reserve(0, 1), Ok(u64::MAX - 1));
    assert_eq!(s.reserve(0, 1), Err(StoreError::Exhausted));
    assert_eq!(s.set(0, 3), Err(StoreError::Backwards));
    assert_eq!(s.get(2), Err(StoreError::Index));
    let _ = s.release();
    // A slot at the last generation: no further commit.
    let slot = encode(u32::MAX, &[1, 2]);
    e.mem[usize::from(BASE)..usize::from(BASE) + SLOT_LEN].copy_from_slice(&slot);
    let mut s = EepromCounters::mount(&mut e, ADDR, BASE).unwrap();
    assert_eq!(s.generation(), u32::MAX);
    assert_eq!(s.set(1, 3), Err(StoreError::Exhausted));
    assert_eq!(s.get(1), Ok(2));
}

#[test]
fn a_missing_eeprom_is_no_acknowledge_of_the_address() {
    let mut e = Eeprom::new(0xFF);
    e.dead = true;
    match EepromCounters::mount(&mut e, ADDR, BASE) {
        Err(StoreError::Bus(err)) => {
            assert_eq!(err.0, ErrorKind::NoAcknowledge(NoAcknowledgeSource::Address));
        }
        _ => panic!("mount without a device must fail"),
    }
}

#[test]
fn crc32_is_the_ieee_crc() {
    assert_eq!(crc32(&[b"123456789"]), 0xCBF4_3926);
    assert_eq!(crc32(&[b"1234", b"56789"]), 0xCBF4_3926);
}
