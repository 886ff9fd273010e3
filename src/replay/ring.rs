//! The nonce ring and its full-ring floor policy (`SPEC.md` §4.2, §4.3).

use super::{Freshness, TimeFloor};
use crate::error::{Error, Result};
use crate::provider::CryptoProvider;
use crate::replay::snapshot::{Kind, SnapshotKey};
use crate::wire::NONCE_LEN;
use serde::de::{SeqAccess, Visitor};
use serde::ser::SerializeTuple;
use serde::{Deserializer, Serialize, Serializer};

const NIL: u32 = u32::MAX;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Entry {
    nonce: [u8; NONCE_LEN],
    ts: u64,
    next: u32,
}

impl Entry {
    const EMPTY: Self = Self { nonce: [0; NONCE_LEN], ts: 0, next: NIL };
}

/// A fixed-capacity record of recently accepted random nonces, with a
/// freshness window and a floor (see the [module docs](super) for the
/// full-ring policy).
///
/// Lookup is O(1) expected: a chained hash table with `N` buckets over an
/// `N`-entry FIFO ring, so the load factor never exceeds one. Bucket
/// positions come from a keyed hash with a caller-supplied secret key, and
/// only authenticated frames are ever inserted, so an attacker can neither
/// choose nor predict collisions.
///
/// Memory: `N × 28` bytes (plus alignment), no heap.
///
/// Equality is semantic: two rings are equal when they hold the same
/// `(nonce, timestamp)` entries in the same order, with the same floor,
/// freshness window and hash key, whatever their internal layout.
#[derive(Clone)]
pub struct NonceRing<const N: usize> {
    entries: [Entry; N],
    buckets: [u32; N],
    head: usize,
    len: usize,
    floor: TimeFloor,
    freshness: Freshness,
    hash_key: [u64; 2],
}

impl<const N: usize> core::fmt::Debug for NonceRing<N> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // The hash key is secret: it keeps collisions unaimable.
        f.debug_struct("NonceRing")
            .field("capacity", &N)
            .field("len", &self.len)
            .field("floor", &self.floor)
            .field("freshness", &self.freshness)
            .finish_non_exhaustive()
    }
}

impl<const N: usize> Drop for NonceRing<N> {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.hash_key);
    }
}

impl<const N: usize> PartialEq for NonceRing<N> {
    fn eq(&self, other: &Self) -> bool {
        use subtle::ConstantTimeEq;
        self.floor == other.floor
            && self.freshness == other.freshness
            && bool::from(self.hash_key.ct_eq(&other.hash_key))
            && self.len == other.len
            && self.iter().eq(other.iter())
    }
}

impl<const N: usize> Eq for NonceRing<N> {}

/// What a commit did to the ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Commit {
    /// Inserted without evicting anything.
    Inserted,
    /// Inserted after evicting an entry that had already aged out.
    EvictedStale,
    /// Inserted after evicting an entry that was still fresh: the floor rose
    /// above the freshness window (ring pressure).
    EvictedFresh,
}

impl<const N: usize> NonceRing<N> {
    const ASSERT_SIZE: () = assert!(N >= 1 && N < (u32::MAX as usize), "NonceRing capacity must be 1..u32::MAX");

    /// An empty ring. `hash_key` should be 16 random bytes: it keys bucket
    /// selection so collisions cannot be aimed.
    pub const fn new(freshness: Freshness, hash_key: [u8; 16]) -> Self {
        let () = Self::ASSERT_SIZE;
        let [a0, a1, a2, a3, a4, a5, a6, a7, b0, b1, b2, b3, b4, b5, b6, b7] = hash_key;
        Self {
            entries: [Entry::EMPTY; N],
            buckets: [NIL; N],
            head: 0,
            len: 0,
            floor: TimeFloor::NONE,
            freshness,
            hash_key: [
                u64::from_le_bytes([a0, a1, a2, a3, a4, a5, a6, a7]),
                u64::from_le_bytes([b0, b1, b2, b3, b4, b5, b6, b7]),
            ],
        }
    }

    /// An empty ring for a receiver that restarted without a valid snapshot:
    /// its floor is `now + max_future_skew_ms`. Sound only if the clock at
    /// boot is not behind the clock before the restart; otherwise start
    /// from the floor [`super::TimeMark::boot`] returns, with [`Self::with_floor`].
    pub const fn after_restart(freshness: Freshness, hash_key: [u8; 16], now: u64) -> Self {
        Self::new(freshness, hash_key).with_floor(TimeFloor::after_restart(now, &freshness))
    }

    /// The same ring with its floor raised to at least `floor`.
    #[must_use]
    pub const fn with_floor(mut self, floor: TimeFloor) -> Self {
        self.floor = match (self.floor.0, floor.0) {
            (Some(a), Some(b)) if a >= b => TimeFloor(Some(a)),
            (_, Some(b)) => TimeFloor(Some(b)),
            (a, None) => TimeFloor(a),
        };
        self
    }

    /// Capacity.
    pub const fn capacity(&self) -> usize {
        N
    }

    /// Number of nonces held.
    pub const fn len(&self) -> usize {
        self.len
    }

    /// True if no nonce is held.
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The current floor.
    pub const fn floor(&self) -> TimeFloor {
        self.floor
    }

    /// The freshness window.
    pub const fn freshness(&self) -> &Freshness {
        &self.freshness
    }

    #[inline]
    fn bucket(&self, nonce: &[u8; NONCE_LEN]) -> usize {
        let [a0, a1, a2, a3, a4, a5, a6, a7, b0, b1, b2, b3] = *nonce;
        let lo = u64::from_le_bytes([a0, a1, a2, a3, a4, a5, a6, a7]);
        let hi = u64::from(u32::from_le_bytes([b0, b1, b2, b3]));
        // Keyed multiply-xorshift mix (two rounds), then Lemire range reduction.
        let mut h = (lo ^ self.hash_key[0]).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        h ^= (hi ^ self.hash_key[1]).wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
        h ^= h >> 29;
        h = h.wrapping_mul(0xBF58_476D_1CE4_E5B9);
        h ^= h >> 32;
        // The product's high word is below N, so the cast is lossless.
        (u128::from(h).wrapping_mul(N as u128) >> 64) as usize
    }

    /// True if `nonce` is held.
    #[inline]
    pub fn contains(&self, nonce: &[u8; NONCE_LEN]) -> bool {
        let mut i = self.buckets.get(self.bucket(nonce)).copied().unwrap_or(NIL);
        // A chain never holds more than N entries; the bound makes that explicit.
        let mut steps = 0usize;
        while let Some(e) = self.entries.get(i as usize) {
            if steps >= N {
                break;
            }
            if e.nonce == *nonce {
                return true;
            }
            i = e.next;
            steps = steps.wrapping_add(1);
        }
        false
    }

    /// Would a frame with this nonce and timestamp be accepted at `now`? Pure.
    ///
    /// # Errors
    /// [`crate::Error::Stale`] (too old, or at or below the floor),
    /// [`crate::Error::FromFuture`], or [`crate::Error::Replay`].
    #[inline]
    pub fn check(&self, nonce: &[u8; NONCE_LEN], ts: u64, now: u64) -> Result<()> {
        self.floor.check(ts)?;
        self.freshness.check(ts, now)?;
        if self.contains(nonce) {
            return Err(Error::Replay);
        }
        Ok(())
    }

    /// Records an accepted nonce. Call only after [`Self::check`] passed and
    /// the tag verified. If the ring is full, the oldest entry is evicted and
    /// the floor raised to its timestamp. A nonce that fails `check` is
    /// ignored (returns `None`).
    pub fn commit(&mut self, nonce: &[u8; NONCE_LEN], ts: u64, now: u64) -> Option<Commit> {
        if self.check(nonce, ts, now).is_err() {
            return None;
        }
        Some(self.insert(*nonce, ts, now))
    }

    fn insert(&mut self, nonce: [u8; NONCE_LEN], ts: u64, now: u64) -> Commit {
        let mut outcome = Commit::Inserted;
        if self.len >= N {
            let old = self.entries.get(self.head).copied().unwrap_or(Entry::EMPTY);
            self.unlink(self.head, &old.nonce);
            self.floor.raise(old.ts);
            outcome =
                if self.freshness.check(old.ts, now).is_ok() { Commit::EvictedFresh } else { Commit::EvictedStale };
            self.head = self.head.wrapping_add(1).checked_rem(N).unwrap_or(0);
            self.len = self.len.saturating_sub(1);
        }
        let pos = self.head.wrapping_add(self.len).checked_rem(N).unwrap_or(0);
        let b = self.bucket(&nonce);
        let next = self.buckets.get(b).copied().unwrap_or(NIL);
        if let Some(e) = self.entries.get_mut(pos) {
            *e = Entry { nonce, ts, next };
        }
        if let Some(slot) = self.buckets.get_mut(b) {
            // pos < N < u32::MAX (checked at compile time).
            *slot = pos as u32;
        }
        self.len = self.len.wrapping_add(1);
        outcome
    }

    fn unlink(&mut self, pos: usize, nonce: &[u8; NONCE_LEN]) {
        let b = self.bucket(nonce);
        let target = pos as u32;
        let next_of_target = self.entries.get(pos).map_or(NIL, |e| e.next);
        let Some(head) = self.buckets.get_mut(b) else { return };
        if *head == target {
            *head = next_of_target;
            return;
        }
        let mut i = *head;
        let mut steps = 0usize;
        while steps < N {
            let Some(e) = self.entries.get_mut(i as usize) else { return };
            if e.next == target {
                e.next = next_of_target;
                return;
            }
            i = e.next;
            steps = steps.wrapping_add(1);
        }
    }

    /// Iterates `(nonce, timestamp)` oldest first.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8; NONCE_LEN], u64)> + '_ {
        (0..self.len).filter_map(move |k| {
            let e = self.entries.get(self.head.wrapping_add(k).checked_rem(N).unwrap_or(0))?;
            Some((&e.nonce, e.ts))
        })
    }

    /// Writes an authenticated snapshot (`SPEC.md` §4.4) of this ring,
    /// bound to `context` (the key id of the receiver) and tagged with
    /// `epoch`, into `out`. Returns its length.
    ///
    /// # Errors
    /// [`crate::Error::Encode`] if `out` is too small.
    pub fn snapshot<P: CryptoProvider>(
        &self,
        key: &SnapshotKey<P>,
        context: &[u8],
        epoch: u64,
        out: &mut [u8],
    ) -> Result<usize> {
        self.snapshot_as(Kind::Ring, key, context, epoch, out)
    }

    pub(crate) fn snapshot_as<P: CryptoProvider>(
        &self,
        kind: Kind,
        key: &SnapshotKey<P>,
        context: &[u8],
        epoch: u64,
        out: &mut [u8],
    ) -> Result<usize> {
        key.seal(kind, N, context, epoch, &RingRef(self), out)
    }

    /// Restores a ring from a snapshot made by [`Self::snapshot`] with the
    /// same key, capacity and context, only if its epoch equals
    /// `trusted_epoch`.
    ///
    /// # Errors
    /// [`crate::Error::Truncated`], [`crate::Error::Authentication`] (a forged, relabelled
    /// or foreign snapshot), [`crate::Error::Rollback`] (another epoch),
    /// [`crate::Error::Decode`] (more than `N` entries, duplicates),
    /// [`crate::Error::TrailingBytes`].
    pub fn restore<P: CryptoProvider>(
        bytes: &[u8],
        key: &SnapshotKey<P>,
        context: &[u8],
        trusted_epoch: u64,
        freshness: Freshness,
        hash_key: [u8; 16],
    ) -> Result<Self> {
        Self::new(freshness, hash_key).restored(Kind::Ring, key, context, (bytes, trusted_epoch))
    }

    /// This (empty) ring with the state of `snapshot = (bytes, trusted epoch)`.
    pub(crate) fn restored<P: CryptoProvider>(
        self,
        kind: Kind,
        key: &SnapshotKey<P>,
        context: &[u8],
        snapshot: (&[u8], u64),
    ) -> Result<Self> {
        let state = key.open(kind, N, context, snapshot.1, snapshot.0)?;
        let mut seed = RingSeed(self);
        let mut de = postcard::Deserializer::from_bytes(state);
        serde::de::DeserializeSeed::deserialize(&mut seed, &mut de).map_err(|_| Error::Decode)?;
        let rest = de.finalize().map_err(|_| Error::Decode)?;
        if !rest.is_empty() {
            return Err(Error::TrailingBytes);
        }
        Ok(seed.0)
    }
}

struct RingRef<'a, const N: usize>(&'a NonceRing<N>);

impl<const N: usize> Serialize for RingRef<'_, N> {
    fn serialize<S: Serializer>(&self, s: S) -> core::result::Result<S::Ok, S::Error> {
        let mut t = s.serialize_tuple(2)?;
        t.serialize_element(&self.0.floor)?;
        t.serialize_element(&Entries(self.0))?;
        t.end()
    }
}

struct Entries<'a, const N: usize>(&'a NonceRing<N>);

impl<const N: usize> Serialize for Entries<'_, N> {
    fn serialize<S: Serializer>(&self, s: S) -> core::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut seq = s.serialize_seq(Some(self.0.len))?;
        for e in self.0.iter() {
            seq.serialize_element(&e)?;
        }
        seq.end()
    }
}

struct RingSeed<const N: usize>(NonceRing<N>);

impl<'de, const N: usize> serde::de::DeserializeSeed<'de> for &mut RingSeed<N> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> core::result::Result<(), D::Error> {
        d.deserialize_tuple(2, self)
    }
}

impl<'de, const N: usize> Visitor<'de> for &mut RingSeed<N> {
    type Value = ();
    fn expecting(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("nonce ring snapshot")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> core::result::Result<(), A::Error> {
        use serde::de::Error as _;
        let floor: TimeFloor = seq.next_element()?.ok_or_else(|| A::Error::invalid_length(0, &"floor"))?;
        self.0.floor = floor;
        seq.next_element_seed(EntriesSeed(&mut self.0))?.ok_or_else(|| A::Error::invalid_length(1, &"entries"))?;
        Ok(())
    }
}

struct EntriesSeed<'a, const N: usize>(&'a mut NonceRing<N>);

impl<'de, const N: usize> serde::de::DeserializeSeed<'de> for EntriesSeed<'_, N> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> core::result::Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de, const N: usize> Visitor<'de> for EntriesSeed<'_, N> {
    type Value = ();
    fn expecting(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("ring entries")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> core::result::Result<(), A::Error> {
        use serde::de::Error as _;
        while let Some((nonce, ts)) = seq.next_element::<([u8; NONCE_LEN], u64)>()? {
            if self.0.len >= N {
                return Err(A::Error::invalid_length(N.saturating_add(1), &"at most N entries"));
            }
            if self.0.contains(&nonce) {
                return Err(A::Error::custom("duplicate nonce"));
            }
            // Restored entries keep their order; `now` only classifies evictions,
            // and no eviction happens below capacity.
            self.0.insert(nonce, ts, ts);
        }
        Ok(())
    }
}
