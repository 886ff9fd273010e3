//! The counter window (`SPEC.md` §4.1).

use super::TimeFloor;
use crate::error::{Error, Result};
use crate::wire::decode_exact;
use serde::de::{SeqAccess, Visitor};
use serde::ser::SerializeTuple;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

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
    /// [`crate::Error::Stale`] if `seq` is below the window, [`crate::Error::Replay`] if it
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
