//! Replay caches for requests that are not session records (`SPEC.md` §4.5):
//! token proofs of possession ([`crate::token`]), one-shot HPKE requests
//! ([`crate::request`]) and used challenges ([`crate::challenge`]).
//!
//! A [`ReplayCache`] is a [`NonceRing`] of 96-bit ids, each the prefix of a
//! digest of what was authenticated, with the request's authenticated
//! timestamp, a freshness window and the floor policy of `SPEC.md` §4.3:
//! an id that was accepted is either still held (`Replay`) or at or below
//! the floor (`Stale`), so a flood of fresh requests never lets an old one
//! through again. Its hash key and snapshot key are derived from one secret
//! the server keeps with it (`state_key`).
//!
//! **Recording elsewhere** (`SPEC.md` §15.1). The `*_unrecorded` paths
//! ([`crate::request::RequestReceiver::open_unrecorded`],
//! [`crate::token::TokenVerifier::verify_bound_unrecorded`],
//! [`crate::challenge::StatelessChallenges::verify_bound_unrecorded`],
//! [`crate::bound::BoundRequest::verify_unrecorded`]) authenticate without
//! recording and return a [`Once`]: what a store must accept once,
//! atomically. [`ReplayCache::accept`] is such a store in memory; a store
//! shared by a fleet keeps the same contract.
//!
//! ```
//! use oncewire::cache::{Once, Purpose, ReplayCache};
//! use oncewire::replay::Freshness;
//! use oncewire::rng::OsRng;
//! use oncewire::Error;
//!
//! let now = 1_767_225_600_000;
//! let mut cache: ReplayCache = ReplayCache::generate(Purpose::Requests, &mut OsRng, Freshness::DEFAULT)?;
//! let once = Once { purpose: Purpose::Requests, id: [7; 12], timestamp_ms: now };
//! cache.check_once(&once, now)?; // pure
//! cache.accept(&once, now)?;
//! assert_eq!(cache.accept(&once, now), Err(Error::Replay));
//! # Ok::<(), oncewire::Error>(())
//! ```

use crate::audit::Audit;
use crate::error::{Error, Expiry, Result};
use crate::provider::CryptoProvider;
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
    /// Used stateless challenges (ids from the challenge's random bits, the
    /// expiry as the timestamp). Make such a cache with the issuer's window:
    /// `ReplayCache::generate(Purpose::Challenges, rng, <StatelessChallenges>::freshness(ttl_ms))`
    /// ([`StatelessChallenges::freshness`](crate::challenge::StatelessChallenges::freshness)).
    Challenges,
}

impl Purpose {
    const fn kind(self) -> Kind {
        match self {
            Self::TokenProofs => Kind::Proofs,
            Self::Requests => Kind::Requests,
            Self::Challenges => Kind::UsedChallenges,
        }
    }
}

/// An authenticated use that has not been recorded yet (`SPEC.md` §15.1):
/// what a store accepts once, atomically.
///
/// The `*_unrecorded` paths return one only after every check passed, so a
/// `Once` they return stands for an authenticated request. Its fields are
/// public so that a store can key, persist and expire it (by `purpose` and
/// `id`, until `timestamp_ms` leaves the purpose's freshness window); making
/// one by hand authenticates nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Once {
    /// Which kind of use it is; a store keys on it together with `id`.
    pub purpose: Purpose,
    /// The id the use is accepted once under (`SPEC.md` §11.3, §12, §13).
    pub id: [u8; NONCE_LEN],
    /// The use's authenticated timestamp, Unix ms: a request's timestamp,
    /// a proof's `iat`, a challenge's expiry.
    pub timestamp_ms: u64,
}

/// A bounded cache of accepted request ids with a freshness window. See the
/// [module docs](self).
pub struct ReplayCache<P: CryptoProvider = crate::provider::DefaultProvider, const N: usize = 1024> {
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

    /// Audit counters (`replay_rejected` or `challenge_reused`, `stale`, `from_future`, `ring_pressure`,
    /// `accepted`, and whatever [`Self::refuse`] counted).
    pub const fn audit(&self) -> &Audit {
        &self.audit
    }

    /// Would `once` be accepted at `now_ms`? Pure: it records and counts
    /// nothing.
    ///
    /// # Errors
    /// [`Error::Misuse`] if `once` is for another purpose than this cache's;
    /// else [`Error::Stale`] (too old, or at or below the floor),
    /// [`Error::FromFuture`] or [`Error::Replay`]. For
    /// [`Purpose::Challenges`], every failure but `Replay` is
    /// [`Error::Expired`]`(`[`Expiry::Challenge`]`)`, as for
    /// [`StatelessChallenges`](crate::challenge::StatelessChallenges).
    pub fn check_once(&self, once: &Once, now_ms: u64) -> Result<()> {
        if once.purpose != self.purpose {
            return Err(Error::Misuse);
        }
        match self.ring.check(&once.id, once.timestamp_ms, now_ms) {
            Err(e) if self.purpose == Purpose::Challenges && e != Error::Replay => {
                Err(Error::Expired(Expiry::Challenge))
            }
            r => r,
        }
    }

    /// Checks `once` as [`Self::check_once`] does and records it, counting
    /// it as accepted (and any ring pressure); or counts the rejection and
    /// returns it. Check and record happen under one `&mut self`, so two
    /// calls with the same `once` never both succeed.
    ///
    /// # Errors
    /// Those of [`Self::check_once`]; a rejected `once` changes nothing but
    /// the audit counters.
    pub fn accept(&mut self, once: &Once, now_ms: u64) -> Result<()> {
        match self.check_once(once, now_ms) {
            Ok(()) => {
                if self.ring.commit(&once.id, once.timestamp_ms, now_ms) == Some(Commit::EvictedFresh) {
                    self.audit.pressure();
                }
                self.audit.accept();
                Ok(())
            }
            Err(e) => Err(self.refuse(e)),
        }
    }

    /// Counts a rejection decided elsewhere (another part of the same
    /// request failed, or the shared store refused) in this cache's audit,
    /// and returns it. A reused challenge counts as `challenge_reused` in a
    /// [`Purpose::Challenges`] cache, as `replay_rejected` in the others.
    pub fn refuse(&mut self, e: Error) -> Error {
        if self.purpose == Purpose::Challenges && e == Error::Replay {
            self.audit.challenge_reused();
        } else {
            self.audit.record(e);
        }
        e
    }
}
