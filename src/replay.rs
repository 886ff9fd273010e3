//! Replay protection in bounded memory (DESIGN C4, `SPEC.md` §4).
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
//! State can be written to an authenticated snapshot ([`crate::snapshot`])
//! tagged with an epoch, and restored only if its tag verifies under the
//! receiver's snapshot key, it belongs to the same key or session, and its
//! epoch equals the one the caller keeps in trusted storage (see `SPEC.md`
//! §4.4 for the write order). With no valid snapshot the receiver starts
//! with a floor ([`TimeMark::boot`]): the larger of a persisted high-water
//! mark of the receiver's clock and boot time plus the allowed future skew.
//! A floor is only sound together with a freshness check (every receiver
//! that takes a floor has one), so nothing that could have been accepted
//! before the restart is accepted after it, whatever the clocks do.

use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::provider::{CryptoProvider};
use crate::wire::{NONCE_LEN};
use crate::snapshot::{Kind, SnapshotKey, decode_exact};
use crate::store::CounterStore;
use serde::de::{SeqAccess, Visitor};
use serde::ser::SerializeTuple;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Freshness window for timestamps (DESIGN C5).
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

// ---------------------------------------------------------------------------
// Counter window
// ---------------------------------------------------------------------------

/// RFC 6479 sliding-window replay check for 64-bit sequence numbers.
///
/// `WORDS` 64-bit words of bitmap give a window of `(WORDS - 1) × 64`
/// sequence numbers (one word is slack, so that sliding clears whole words,
/// as in RFC 6479 §2). `CounterWindow<32>` tracks 1984 numbers in 256 bytes.
/// Frames may arrive out of order anywhere inside the window.
///
/// ```
/// use oncewire::replay::CounterWindow;
/// use oncewire::Error;
/// let mut w = CounterWindow::<4>::new();
/// w.check(7)?;
/// w.commit(7);
/// assert_eq!(w.check(7), Err(Error::Replay));
/// w.check(3)?; // out of order, still inside the window
/// # Ok::<(), oncewire::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CounterWindow<const WORDS: usize> {
    top: u64,
    bitmap: [u64; WORDS],
}

impl<const WORDS: usize> Default for CounterWindow<WORDS> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const WORDS: usize> CounterWindow<WORDS> {
    const ASSERT_SIZE: () = assert!(WORDS >= 2 && WORDS <= (1 << 20), "CounterWindow needs 2..=2^20 words");

    /// Number of sequence numbers below the highest seen that are still tracked.
    pub const WINDOW: u64 = (WORDS as u64 - 1) * 64;

    /// An empty window: every sequence number from 0 up is acceptable.
    pub const fn new() -> Self {
        let () = Self::ASSERT_SIZE;
        Self { top: 0, bitmap: [0u64; WORDS] }
    }

    /// The highest sequence number committed so far (0 if none).
    pub const fn top(&self) -> u64 {
        self.top
    }

    #[inline]
    fn slot(seq: u64) -> (usize, u64) {
        // WORDS fits in u64 and the remainder is below WORDS, so both casts are lossless.
        let word = ((seq / 64).checked_rem(WORDS as u64).unwrap_or(0)) as usize;
        (word, 1u64 << (seq % 64))
    }

    /// Would `seq` be accepted? Pure: changes nothing.
    ///
    /// # Errors
    /// [`Error::Stale`] if `seq` is below the window, [`Error::Replay`] if it
    /// was already committed.
    #[inline]
    pub fn check(&self, seq: u64) -> Result<()> {
        if seq > self.top {
            return Ok(());
        }
        if self.top.wrapping_sub(seq) >= Self::WINDOW {
            return Err(Error::Stale);
        }
        let (word, bit) = Self::slot(seq);
        match self.bitmap.get(word) {
            Some(w) if w & bit == 0 => Ok(()),
            _ => Err(Error::Replay),
        }
    }

    /// Records `seq` as accepted. Call only after [`Self::check`] passed and
    /// the frame's tag verified; a `seq` that fails `check` is ignored.
    #[inline]
    pub fn commit(&mut self, seq: u64) {
        if self.check(seq).is_err() {
            return;
        }
        if seq > self.top {
            let cur = self.top / 64;
            let new = seq / 64;
            let diff = new.wrapping_sub(cur).min(WORDS as u64);
            let mut i = 1u64;
            while i <= diff {
                let w = cur.wrapping_add(i).checked_rem(WORDS as u64).unwrap_or(0) as usize;
                if let Some(slot) = self.bitmap.get_mut(w) {
                    *slot = 0;
                }
                i = i.wrapping_add(1);
            }
            self.top = seq;
        }
        let (word, bit) = Self::slot(seq);
        if let Some(w) = self.bitmap.get_mut(word) {
            *w |= bit;
        }
    }
}

impl<const WORDS: usize> Serialize for CounterWindow<WORDS> {
    fn serialize<S: Serializer>(&self, s: S) -> core::result::Result<S::Ok, S::Error> {
        let mut t = s.serialize_tuple(WORDS.saturating_add(1))?;
        t.serialize_element(&self.top)?;
        for w in &self.bitmap {
            t.serialize_element(w)?;
        }
        t.end()
    }
}

impl<'de, const WORDS: usize> Deserialize<'de> for CounterWindow<WORDS> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> core::result::Result<Self, D::Error> {
        struct V<const W: usize>;
        impl<'de, const W: usize> Visitor<'de> for V<W> {
            type Value = CounterWindow<W>;
            fn expecting(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.write_str("counter window")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> core::result::Result<Self::Value, A::Error> {
                use serde::de::Error as _;
                let mut w = CounterWindow::<W>::new();
                w.top = seq.next_element()?.ok_or_else(|| A::Error::invalid_length(0, &self))?;
                for (i, slot) in w.bitmap.iter_mut().enumerate() {
                    *slot = seq.next_element()?.ok_or_else(|| A::Error::invalid_length(i.saturating_add(1), &self))?;
                }
                Ok(w)
            }
        }
        d.deserialize_tuple(WORDS.saturating_add(1), V::<WORDS>)
    }
}

// ---------------------------------------------------------------------------
// Nonce ring
// ---------------------------------------------------------------------------

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
/// freshness window and a floor (see the [module docs](self) for the
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
    /// from the floor [`TimeMark::boot`] returns, with [`Self::with_floor`].
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
    /// [`Error::Stale`] (too old, or at or below the floor),
    /// [`Error::FromFuture`], or [`Error::Replay`].
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
    /// [`Error::Encode`] if `out` is too small.
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
    /// [`Error::Truncated`], [`Error::Authentication`] (a forged, relabelled
    /// or foreign snapshot), [`Error::Rollback`] (another epoch),
    /// [`Error::Decode`] (more than `N` entries, duplicates),
    /// [`Error::TrailingBytes`].
    pub fn restore<P: CryptoProvider>(
        bytes: &[u8],
        key: &SnapshotKey<P>,
        context: &[u8],
        trusted_epoch: u64,
        freshness: Freshness,
        hash_key: [u8; 16],
    ) -> Result<Self> {
        Self::restore_as(Kind::Ring, bytes, key, context, trusted_epoch, freshness, hash_key)
    }

    pub(crate) fn restore_as<P: CryptoProvider>(
        kind: Kind,
        bytes: &[u8],
        key: &SnapshotKey<P>,
        context: &[u8],
        trusted_epoch: u64,
        freshness: Freshness,
        hash_key: [u8; 16],
    ) -> Result<Self> {
        let state = key.open(kind, N, context, trusted_epoch, bytes)?;
        let mut seed = RingSeed(Self::new(freshness, hash_key));
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

/// The replay state of a counter receiver, as a snapshot stores it.
#[derive(Serialize, Deserialize)]
pub(crate) struct WindowState<const W: usize> {
    pub(crate) window: CounterWindow<W>,
    pub(crate) floor: TimeFloor,
}

impl<const W: usize> WindowState<W> {
    pub(crate) fn decode(state: &[u8]) -> Result<Self> {
        decode_exact(state)
    }
}

// ---------------------------------------------------------------------------
// High-water mark
// ---------------------------------------------------------------------------

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
/// after a restart fresh frames are refused as [`Error::Stale`] until the
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
    /// [`Error::Storage`] if the store fails: nothing may be accepted until
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
    /// [`Error::Storage`]: accept nothing (the frame is not consumed; the
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
