//! The persisted high-water mark of a receiver's clock (`SPEC.md` §4.4).

use super::{Freshness, TimeFloor};
use crate::clock::Clock;
use crate::error::Result;
use crate::store::CounterStore;

/// A persisted high-water mark of the receiver's clock, for restarts
/// without a snapshot (`SPEC.md` §4.4).
///
/// Every frame a receiver accepts at its time `now` carries a timestamp of
/// at most `now + max_future_skew_ms` (its freshness check). Before the
/// receiver accepts anything at time `now`, [`TimeMark::cover`] makes sure
/// the store holds a bound at or above `now + max_future_skew_ms`,
/// reserving `ahead_ms` more so that the store is written about once per
/// `ahead_ms`. At boot, [`TimeMark::boot`] returns the floor
/// `max(stored bound, now + max_future_skew_ms)`: every timestamp accepted
/// before the restart is at or below it, even if the clock at boot is behind
/// (a device with no real-time clock, synced later) or jumped back.
///
/// The mark moves with the receiver's clock only, never with input, so
/// forged frames cannot raise it. A clock that jumps forward raises it, and
/// after a restart fresh frames are refused as [`crate::Error::Stale`] until the
/// clock passes it: this fails closed.
#[derive(Debug)]
pub struct TimeMark<S: CounterStore> {
    store: S,
    bound: u64,
    skew_ms: u64,
    ahead_ms: u64,
}

impl<S: CounterStore> TimeMark<S> {
    /// Loads the mark, computes the restart floor, and durably reserves the
    /// next bound before returning.
    ///
    /// # Errors
    /// [`crate::Error::Storage`] if the store fails: nothing may be accepted until
    /// the reservation is durable.
    pub fn boot(mut store: S, clock: &impl Clock, freshness: &Freshness, ahead_ms: u64) -> Result<(Self, TimeFloor)> {
        let skew_ms = freshness.max_future_skew_ms;
        let stored = store.load()?.unwrap_or(0);
        let floor = stored.max(clock.now_ms().saturating_add(skew_ms));
        let bound = floor.saturating_add(ahead_ms.max(1));
        store.store(bound)?;
        Ok((Self { store, bound, skew_ms, ahead_ms: ahead_ms.max(1) }, TimeFloor(Some(floor))))
    }

    /// Call before accepting anything at the clock's current time: extends
    /// the durable bound if it does not cover `now + max_future_skew_ms`.
    ///
    /// # Errors
    /// [`crate::Error::Storage`]: accept nothing (the frame is not consumed; the
    /// sender may retry).
    pub fn cover(&mut self, clock: &impl Clock) -> Result<()> {
        let need = clock.now_ms().saturating_add(self.skew_ms);
        if need <= self.bound {
            return Ok(());
        }
        let bound = need.saturating_add(self.ahead_ms);
        self.store.store(bound)?;
        self.bound = bound;
        Ok(())
    }

    /// The durable bound.
    pub const fn bound(&self) -> u64 {
        self.bound
    }

    /// Gives back the store.
    pub fn into_store(self) -> S {
        self.store
    }
}
