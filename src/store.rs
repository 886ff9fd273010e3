//! Persistent counters (`SPEC.md` §10, RFC 8613 Appendix B.1.1): the
//! [`CounterStore`] seam that reboot-safe senders
//! ([`crate::record::PersistentSender`], [`crate::record::OneShotSender`])
//! reserve their counts in, and that a receiver's high-water mark
//! ([`crate::replay::TimeMark`]) persists through.

use crate::error::Result;

/// Persistent storage for one counter bound.
///
/// # Contract
/// `store` must be atomic and durable: once it returns `Ok`, a later `load`
/// (after any power cut) returns the new value; if power is cut during
/// `store`, a later `load` returns either the old or the new value. On flash
/// this is usually two slots with a sequence number and a CRC, written
/// alternately. Failures are [`crate::Error::Storage`].
pub trait CounterStore {
    /// The stored bound, or `None` if nothing was ever stored.
    ///
    /// # Errors
    /// [`crate::Error::Storage`] if the medium cannot be read.
    fn load(&mut self) -> Result<Option<u64>>;

    /// Durably replaces the stored bound.
    ///
    /// # Errors
    /// [`crate::Error::Storage`] if the write failed; the old value may remain.
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
