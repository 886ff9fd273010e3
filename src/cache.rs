//! Replay caches for requests that are not session records (`SPEC.md` §4.5):
//! token proofs of possession ([`crate::token`]) and one-shot HPKE requests
//! ([`crate::request`]).
//!
//! A [`ReplayCache`] is a [`NonceRing`] of 96-bit ids, each the prefix of a
//! digest of what was authenticated, with the request's authenticated
//! timestamp, a freshness window and the floor policy of `SPEC.md` §4.3:
//! an id that was accepted is either still held (`Replay`) or at or below
//! the floor (`Stale`), so a flood of fresh requests never lets an old one
//! through again. Its hash key and snapshot key are derived from one secret
//! the server keeps with it (`state_key`).

use crate::audit::Audit;
use crate::error::{Error, Result};
use crate::provider::{CryptoProvider, RustCrypto};
use crate::replay::snapshot::{Kind, SnapshotKey};
use crate::replay::{Commit, Freshness, NonceRing, TimeFloor};
use crate::secret::Secret;
use crate::wire::NONCE_LEN;

/// What a cache holds; bound into its snapshots.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Purpose {
    /// Token proofs of possession (ids from the proof digest).
    TokenProofs,
    /// One-shot HPKE requests (ids from the encapsulated key).
    Requests,
}

impl Purpose {
    const fn kind(self) -> Kind {
        match self {
            Self::TokenProofs => Kind::Proofs,
            Self::Requests => Kind::Requests,
        }
    }
}

/// A bounded cache of accepted request ids with a freshness window. See the
/// [module docs](self).
pub struct ReplayCache<P: CryptoProvider = RustCrypto, const N: usize = 1024> {
    purpose: Purpose,
    ring: NonceRing<N>,
    snapshot_key: SnapshotKey<P>,
    audit: Audit,
}

impl<P: CryptoProvider, const N: usize> core::fmt::Debug for ReplayCache<P, N> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ReplayCache")
            .field("purpose", &self.purpose)
            .field("ring", &self.ring)
            .field("audit", &self.audit)
            .finish_non_exhaustive()
    }
}

impl<P: CryptoProvider, const N: usize> ReplayCache<P, N> {
    /// An empty cache. `state_key` is a server secret (32 random bytes)
    /// kept with the cache's snapshots; `freshness` bounds the age and
    /// future skew of accepted timestamps.
    pub fn new(purpose: Purpose, state_key: &Secret<32>, freshness: Freshness) -> Self {
        Self {
            purpose,
            ring: NonceRing::new(freshness, crate::keyschedule::replay_cache_hash_key::<P>(state_key)),
            snapshot_key: SnapshotKey::derive(state_key.expose()),
            audit: Audit::new(),
        }
    }

    /// An empty cache with a state key drawn from `rng`.
    ///
    /// # Errors
    /// [`Error::Rng`].
    pub fn generate<R: rand_core::TryCryptoRng + ?Sized>(
        purpose: Purpose,
        rng: &mut R,
        freshness: Freshness,
    ) -> Result<Self> {
        let mut state_key = Secret::<32>::zero();
        crate::provider::fill_random(rng, state_key.expose_mut())?;
        Ok(Self::new(purpose, &state_key, freshness))
    }

    /// An empty cache after a restart without a snapshot: nothing at or below
    /// `floor` is accepted. Take the floor from [`crate::replay::TimeMark::boot`]
    /// (or [`TimeFloor::after_restart`] where the clock is known not to be
    /// behind at boot).
    pub fn after_restart(purpose: Purpose, state_key: &Secret<32>, freshness: Freshness, floor: TimeFloor) -> Self {
        let mut c = Self::new(purpose, state_key, freshness);
        c.ring = c.ring.with_floor(floor);
        c
    }

    /// A cache restored from a snapshot that a cache of the same purpose,
    /// capacity and `state_key` wrote with epoch `trusted_epoch`.
    ///
    /// # Errors
    /// [`Error::Truncated`], [`Error::Authentication`], [`Error::Rollback`],
    /// [`Error::Decode`], [`Error::TrailingBytes`].
    pub fn restore(
        purpose: Purpose,
        state_key: &Secret<32>,
        freshness: Freshness,
        snapshot: &[u8],
        trusted_epoch: u64,
    ) -> Result<Self> {
        let snapshot_key = SnapshotKey::derive(state_key.expose());
        let empty = NonceRing::new(freshness, crate::keyschedule::replay_cache_hash_key::<P>(state_key));
        let ring = empty.restored(purpose.kind(), &snapshot_key, &[], (snapshot, trusted_epoch))?;
        Ok(Self { purpose, ring, snapshot_key, audit: Audit::new() })
    }

    /// Writes an authenticated snapshot tagged with `epoch`. Returns its length.
    ///
    /// # Errors
    /// [`Error::Encode`] if `out` is too small.
    pub fn snapshot(&self, epoch: u64, out: &mut [u8]) -> Result<usize> {
        self.ring.snapshot_as(self.purpose.kind(), &self.snapshot_key, &[], epoch, out)
    }

    /// What this cache holds.
    pub const fn purpose(&self) -> Purpose {
        self.purpose
    }

    /// The ring (for inspection).
    pub const fn ring(&self) -> &NonceRing<N> {
        &self.ring
    }

    /// Audit counters (`replay_rejected`, `stale`, `from_future`, `ring_pressure`, `accepted`).
    pub const fn audit(&self) -> &Audit {
        &self.audit
    }

    /// Pure check of an id and its authenticated timestamp.
    pub(crate) fn check(&self, id: &[u8; NONCE_LEN], ts: u64, now: u64) -> Result<()> {
        self.ring.check(id, ts, now)
    }

    /// Counts a rejection.
    pub(crate) fn reject(&mut self, e: Error) -> Error {
        self.audit.record(e);
        e
    }

    /// Commits an id after its request authenticated.
    pub(crate) fn commit(&mut self, id: &[u8; NONCE_LEN], ts: u64, now: u64) {
        if self.ring.commit(id, ts, now) == Some(Commit::EvictedFresh) {
            self.audit.pressure();
        }
        self.audit.accept();
    }
}
