//! Replay protection in bounded memory (`SPEC.md` §4).
//!
//! - [`CounterWindow`]: an RFC 6479 sliding bitmap for sequence numbers.
//! - [`NonceRing`]: a fixed-capacity set of recently accepted random nonces
//!   with O(1) expected lookup, plus a freshness window ([`Freshness`]).
//!
//! Both follow the snow/boringtun discipline: a **pure** check before
//! decryption (`check`), and a **commit** only after the tag has verified
//! (`commit`). Forged, malformed, stale or replayed input never reaches
//! `commit`, so it changes no state.
//!
//! # The full-ring policy: raise a floor
//! When the ring is full, the oldest entry is evicted and the ring's *floor*
//! is raised to the largest timestamp ever evicted. Every frame whose
//! timestamp is at or below the floor is rejected as [`Error::Stale`]. So a
//! nonce that has left the ring can never be accepted again: its timestamp is
//! at or below the floor. The alternative, refusing new nonces while the
//! ring is full of fresh entries, would let one busy or malicious sender lock
//! every other sender out until entries age. The floor degrades more gently:
//! under pressure the effective freshness window shrinks to the span of
//! timestamps the ring holds, and only frames older than that are refused.
//! Evictions of still-fresh entries are counted as *ring pressure* so an
//! operator can size the ring.
//!
//! # Restarts
//! State can be written to an authenticated snapshot ([`SnapshotKey`])
//! tagged with an epoch, and restored only if its tag verifies under the
//! receiver's snapshot key, it belongs to the same key or session, and its
//! epoch equals the one the caller keeps in trusted storage (see `SPEC.md`
//! §4.4 for the write order). With no valid snapshot the receiver starts
//! with a floor ([`TimeMark::boot`]): the larger of a persisted high-water
//! mark of the receiver's clock and boot time plus the allowed future skew.
//! A floor is only sound together with a freshness check (every receiver
//! that takes a floor has one), so nothing that could have been accepted
//! before the restart is accepted after it, whatever the clocks do.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

mod mark;
mod ring;
pub(crate) mod snapshot;
mod window;

pub use mark::TimeMark;
pub use ring::{Commit, NonceRing};
pub use snapshot::{SNAPSHOT_TAG_LEN, SnapshotKey};
pub use window::CounterWindow;
pub(crate) use window::WindowState;

/// Freshness window for timestamps (`SPEC.md` §5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Freshness {
    /// Oldest acceptable timestamp, relative to the receiver's clock, in ms.
    pub max_age_ms: u64,
    /// How far ahead of the receiver's clock a timestamp may be, in ms.
    pub max_future_skew_ms: u64,
}

impl Freshness {
    /// 30 s of age and 5 s of future skew.
    pub const DEFAULT: Self = Self { max_age_ms: 30_000, max_future_skew_ms: 5_000 };

    /// Checks `ts` against `now` (both Unix ms). Pure.
    ///
    /// # Errors
    /// [`Error::Stale`] if older than `max_age_ms`, [`Error::FromFuture`] if
    /// more than `max_future_skew_ms` ahead.
    pub const fn check(&self, ts: u64, now: u64) -> Result<()> {
        if ts < now.saturating_sub(self.max_age_ms) {
            return Err(Error::Stale);
        }
        if ts > now.saturating_add(self.max_future_skew_ms) {
            return Err(Error::FromFuture);
        }
        Ok(())
    }
}

impl Default for Freshness {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// A timestamp floor: frames stamped at or below it are rejected.
///
/// Used after a restart without a snapshot, and raised by ring evictions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct TimeFloor(Option<u64>);

impl TimeFloor {
    /// No floor.
    pub const NONE: Self = Self(None);

    /// The floor after a restart without a valid snapshot: boot time plus the
    /// allowed future skew. Anything accepted before the restart carried a
    /// timestamp at or below that **only if** the receiver checked freshness
    /// and its clock at boot is not behind its clock before the restart. Where
    /// the clock may be behind at boot (no real-time clock), use
    /// [`TimeMark::boot`], which also persists a high-water mark.
    pub const fn after_restart(now: u64, freshness: &Freshness) -> Self {
        Self(Some(now.saturating_add(freshness.max_future_skew_ms)))
    }

    /// A floor at `ts`: everything stamped at or below it is refused.
    pub const fn at(ts: u64) -> Self {
        Self(Some(ts))
    }

    /// The floor value, if any.
    pub const fn get(&self) -> Option<u64> {
        self.0
    }

    /// Checks `ts`. Pure.
    ///
    /// # Errors
    /// [`Error::Stale`] if `ts` is at or below the floor.
    pub const fn check(&self, ts: u64) -> Result<()> {
        match self.0 {
            Some(f) if ts <= f => Err(Error::Stale),
            _ => Ok(()),
        }
    }

    /// Raises the floor to at least `ts`.
    pub fn raise(&mut self, ts: u64) {
        self.0 = Some(match self.0 {
            Some(f) if f >= ts => f,
            _ => ts,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_basics() {
        let mut w = CounterWindow::<2>::new();
        assert_eq!(CounterWindow::<2>::WINDOW, 64);
        for s in [0u64, 5, 3, 63, 64, 100] {
            w.check(s).unwrap();
            w.commit(s);
            assert_eq!(w.check(s), Err(Error::Replay));
        }
        // 100 - 36 = 64 = WINDOW: stale; 37 inside.
        assert_eq!(w.check(36), Err(Error::Stale));
        w.check(37).unwrap();
        assert_eq!(w.check(64), Err(Error::Replay));
        // A huge jump clears everything.
        w.commit(1 << 40);
        assert_eq!(w.check((1 << 40) - 1), Ok(()));
        assert_eq!(w.check(100), Err(Error::Stale));
        w.commit(u64::MAX);
        assert_eq!(w.check(u64::MAX), Err(Error::Replay));
    }

    #[test]
    fn ring_floor_policy() {
        let f = Freshness { max_age_ms: 1000, max_future_skew_ms: 100 };
        let mut r = NonceRing::<2>::new(f, [7; 16]);
        let now = 10_000;
        r.check(&[1; 12], now - 10, now).unwrap();
        assert_eq!(r.commit(&[1; 12], now - 10, now), Some(Commit::Inserted));
        assert_eq!(r.commit(&[2; 12], now - 5, now), Some(Commit::Inserted));
        assert_eq!(r.check(&[1; 12], now - 10, now), Err(Error::Replay));
        // Third evicts nonce 1 (still fresh): floor = now - 10.
        assert_eq!(r.commit(&[3; 12], now - 20, now), Some(Commit::EvictedFresh));
        assert_eq!(r.floor().get(), Some(now - 10));
        // Nonce 1 is gone from the table but its replay is below the floor.
        assert_eq!(r.check(&[1; 12], now - 10, now), Err(Error::Stale));
        r.check(&[4; 12], now - 9, now).unwrap();
        assert_eq!(r.check(&[4; 12], now - 1001, now), Err(Error::Stale));
        assert_eq!(r.check(&[4; 12], now + 101, now), Err(Error::FromFuture));
    }

    #[test]
    fn snapshots_round_trip_and_refuse_rollback() {
        use crate::provider::RustCrypto;
        let f = Freshness::DEFAULT;
        let key = SnapshotKey::<RustCrypto>::derive(b"receiver secret");
        let mut r = NonceRing::<8>::new(f, [1; 16]);
        for i in 0..11u8 {
            r.commit(&[i; 12], 1000 + u64::from(i), 1000).unwrap();
        }
        let mut buf = [0u8; 512];
        let n = r.snapshot(&key, b"key-0001", 5, &mut buf).unwrap();
        let back = NonceRing::<8>::restore(&buf[..n], &key, b"key-0001", 5, f, [1; 16]).unwrap();
        assert_eq!(back, r);
        assert_eq!(NonceRing::<8>::restore(&buf[..n], &key, b"key-0001", 6, f, [1; 16]), Err(Error::Rollback));
        assert_eq!(NonceRing::<8>::restore(&buf[..n], &key, b"key-0002", 5, f, [1; 16]), Err(Error::Authentication));
        assert_eq!(NonceRing::<4>::restore(&buf[..n], &key, b"key-0001", 5, f, [1; 16]), Err(Error::Authentication));
        let other = SnapshotKey::<RustCrypto>::derive(b"another secret");
        assert_eq!(NonceRing::<8>::restore(&buf[..n], &other, b"key-0001", 5, f, [1; 16]), Err(Error::Authentication));
        assert_eq!(NonceRing::<8>::restore(&buf[..3], &key, b"key-0001", 5, f, [1; 16]), Err(Error::Truncated));
        let mut long = [0u8; 513];
        long[..n].copy_from_slice(&buf[..n]);
        assert_eq!(
            NonceRing::<8>::restore(&long[..n + 1], &key, b"key-0001", 5, f, [1; 16]),
            Err(Error::Authentication)
        );
    }

    #[test]
    fn debug_hides_the_hash_key() {
        extern crate std;
        let r = NonceRing::<2>::new(Freshness::DEFAULT, [0xab; 16]);
        let text = std::format!("{r:?}");
        assert!(
            !text.contains("hash_key") && !text.contains("12370169555311111083") && !text.contains("abab"),
            "{text}"
        );
    }
}
