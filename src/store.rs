//! Reboot-safe sender counters (DESIGN C4e, RFC 8613 Appendix B.1.1).
//!
//! A device that keeps a key across reboots (a provisioned key, or session
//! keys kept in flash) must never seal twice under the same sequence number.
//! Writing the counter to flash before every frame would wear the flash out,
//! so [`PersistentSender`] reserves numbers ahead in blocks: before it uses
//! any number at or above the reserved bound it durably stores a new bound
//! `next + block`. After a reboot it resumes **at the stored bound**, skipping
//! whatever was reserved but unused. A power cut at any instant therefore
//! loses at most one block of numbers and never reuses one.

use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::provider::{CryptoProvider, RustCrypto};
use crate::wire::{NONCE_LEN};
use crate::record::{CounterSender, LONG_KEY_MAX_PAYLOAD};
use crate::secret::Secret;
use crate::wire::KEY_ID_LEN;

/// Persistent storage for one counter bound.
///
/// # Contract
/// `store` must be atomic and durable: once it returns `Ok`, a later `load`
/// (after any power cut) returns the new value; if power is cut during
/// `store`, a later `load` returns either the old or the new value. On flash
/// this is usually two slots with a sequence number and a CRC, written
/// alternately. Failures are [`Error::Storage`].
pub trait CounterStore {
    /// The stored bound, or `None` if nothing was ever stored.
    ///
    /// # Errors
    /// [`Error::Storage`] if the medium cannot be read.
    fn load(&mut self) -> Result<Option<u64>>;

    /// Durably replaces the stored bound.
    ///
    /// # Errors
    /// [`Error::Storage`] if the write failed; the old value may remain.
    fn store(&mut self, bound: u64) -> Result<()>;
}

impl<T: CounterStore + ?Sized> CounterStore for &mut T {
    fn load(&mut self) -> Result<Option<u64>> {
        (**self).load()
    }
    fn store(&mut self, bound: u64) -> Result<()> {
        (**self).store(bound)
    }
}

/// A counter kept in RAM: a [`CounterStore`] for tests, and for keys that
/// never outlive the process (a key generated at start and discarded at
/// exit). It forgets everything at a restart, so it must never back a key
/// that survives one.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct VolatileStore(Option<u64>);

impl VolatileStore {
    /// An empty store.
    pub const fn new() -> Self {
        Self(None)
    }
}

impl CounterStore for VolatileStore {
    fn load(&mut self) -> Result<Option<u64>> {
        Ok(self.0)
    }
    fn store(&mut self, bound: u64) -> Result<()> {
        self.0 = Some(bound);
        Ok(())
    }
}

/// Records a key that outlives the process may seal: 2^24, the AES-GCM
/// confidentiality limit of RFC 9147 §4.5.3 for records of at most
/// [`LONG_KEY_MAX_PAYLOAD`] bytes.
pub const LONG_KEY_MAX_RECORDS: u64 = 1 << 24;

/// A [`CounterSender`] whose sequence numbers survive reboots.
///
/// Usage limits: at most [`LONG_KEY_MAX_RECORDS`] sequence numbers (counted
/// from 0 across every boot, since the sequence number itself persists) of
/// at most [`LONG_KEY_MAX_PAYLOAD`] bytes each; then [`Error::KeyExhausted`].
pub struct PersistentSender<S: CounterStore, P: CryptoProvider = RustCrypto> {
    inner: CounterSender<P>,
    store: S,
    reserved_until: u64,
    block: u64,
}

impl<S: CounterStore, P: CryptoProvider> core::fmt::Debug for PersistentSender<S, P> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PersistentSender")
            .field("next_seq", &self.inner.next_seq())
            .field("reserved_until", &self.reserved_until)
            .field("block", &self.block)
            .finish_non_exhaustive()
    }
}

impl<S: CounterStore, P: CryptoProvider> PersistentSender<S, P> {
    /// Boots a sender: resumes at the stored bound (0 if none) and reserves
    /// the first block before returning. `block` (at least 1) trades flash
    /// writes against numbers skipped per reboot.
    ///
    /// # Errors
    /// [`Error::Storage`] if the store fails (nothing can be sealed until a
    /// reservation is durable), [`Error::KeyExhausted`] if the counter space
    /// is used up, [`Error::InvalidKey`].
    pub fn boot(
        key: &Secret<32>,
        iv: Secret<NONCE_LEN>,
        session_id: [u8; KEY_ID_LEN],
        mut store: S,
        block: u64,
    ) -> Result<Self> {
        let block = block.max(1);
        let start = store.load()?.unwrap_or(0);
        let reserved_until = start.checked_add(block).ok_or(Error::KeyExhausted)?;
        if start >= LONG_KEY_MAX_RECORDS {
            return Err(Error::KeyExhausted);
        }
        store.store(reserved_until)?;
        let mut inner = CounterSender::new(key, iv, session_id, start)?;
        inner.set_limit(LONG_KEY_MAX_RECORDS);
        Ok(Self { inner, store, reserved_until, block })
    }

    /// The sequence number the next frame will carry.
    pub const fn next_seq(&self) -> u64 {
        self.inner.next_seq()
    }

    /// The durable bound: no number at or above it has been used.
    pub const fn reserved_until(&self) -> u64 {
        self.reserved_until
    }

    /// Seals like [`CounterSender::seal_in_place`], first extending the
    /// reservation if the next number is not yet covered.
    ///
    /// # Errors
    /// [`Error::Storage`] if the reservation cannot be made durable (nothing
    /// is sealed), [`Error::PayloadTooLarge`] above [`LONG_KEY_MAX_PAYLOAD`],
    /// [`Error::KeyExhausted`] at [`LONG_KEY_MAX_RECORDS`], and the errors of
    /// [`CounterSender::seal_in_place`].
    pub fn seal_in_place(&mut self, clock: &impl Clock, buf: &mut [u8], payload_len: usize) -> Result<usize> {
        if payload_len > LONG_KEY_MAX_PAYLOAD {
            return Err(Error::PayloadTooLarge);
        }
        if self.inner.next_seq() >= LONG_KEY_MAX_RECORDS {
            return Err(Error::KeyExhausted);
        }
        if self.inner.next_seq() >= self.reserved_until {
            let bound = self.inner.next_seq().checked_add(self.block).ok_or(Error::KeyExhausted)?;
            self.store.store(bound)?;
            self.reserved_until = bound;
        }
        self.inner.seal_in_place(clock, buf, payload_len)
    }

    /// Copies `payload` into `out` and seals it there.
    ///
    /// # Errors
    /// As [`Self::seal_in_place`].
    pub fn seal(&mut self, clock: &impl Clock, payload: &[u8], out: &mut [u8]) -> Result<usize> {
        crate::wire::stage(payload, out)?;
        self.seal_in_place(clock, out, payload.len())
    }

    /// Gives back the store (for example, to shut down cleanly).
    pub fn into_store(self) -> S {
        self.store
    }
}
