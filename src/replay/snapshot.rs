//! Authenticated replay-state snapshots (`SPEC.md` §4.4).
//!
//! A snapshot is `body ‖ tag` where `body = epoch (varint) ‖ state` (postcard)
//! and `tag = HMAC-SHA256(snapshot key, "oncewire/1 snapshot" ‖ kind ‖
//! capacity (u32 BE) ‖ len(context) (1 byte) ‖ context ‖ body)`. The tag binds
//! the snapshot to the kind of structure, its capacity, the key or session it
//! belongs to (the context) and the epoch, so a relabelled epoch, a snapshot
//! of another session or key, or a crafted snapshot is refused with
//! [`crate::Error::Authentication`] before any of it is decoded.
//!
//! Restore checks, in order: length (`Truncated`), tag (`Authentication`),
//! epoch (`Rollback`), state (`Decode`, `TrailingBytes`).

use crate::error::{Error, Result};
use crate::provider::CryptoProvider;
use crate::secret::Secret;
use core::marker::PhantomData;
use subtle::ConstantTimeEq;

/// Length of a snapshot's tag (HMAC-SHA256, untruncated).
pub const SNAPSHOT_TAG_LEN: usize = 32;

/// What a snapshot holds, bound into its tag: a counter window and its
/// floor (1), a nonce ring (2), the used set of stateless challenges (3),
/// the replay caches of one-shot requests (4), token proofs (5) and used
/// challenges (6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
#[allow(missing_docs)]
pub(crate) enum Kind {
    Window = 1,
    Ring = 2,
    Challenges = 3,
    Requests = 4,
    Proofs = 5,
    UsedChallenges = 6,
}

/// The key that authenticates a receiver's snapshots.
///
/// Receivers derive it from their own secret (`HMAC-SHA256(secret,
/// "oncewire/1 snapshot key")`), so a snapshot only restores into a receiver
/// holding the same secret. Zeroized on drop, redacted in `Debug`.
pub struct SnapshotKey<P: CryptoProvider = crate::provider::DefaultProvider> {
    key: Secret<32>,
    _p: PhantomData<P>,
}

impl<P: CryptoProvider> core::fmt::Debug for SnapshotKey<P> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SnapshotKey").finish_non_exhaustive()
    }
}

impl<P: CryptoProvider> SnapshotKey<P> {
    /// Derives the snapshot key of a receiver from its secret.
    pub fn derive(secret: &[u8]) -> Self {
        Self { key: crate::keyschedule::snapshot_key::<P>(secret), _p: PhantomData }
    }

    fn tag(&self, kind: Kind, capacity: usize, context: &[u8], body: &[u8]) -> Result<[u8; SNAPSHOT_TAG_LEN]> {
        let cap = u32::try_from(capacity).map_err(|_| Error::Encode)?.to_be_bytes();
        let ctx_len = [u8::try_from(context.len()).map_err(|_| Error::Encode)?];
        Ok(crate::keyschedule::snapshot_tag::<P>(&self.key, &[&[kind as u8], &cap, &ctx_len, context], body))
    }

    /// Writes `postcard(epoch, state) ‖ tag` into `out`; returns its length.
    pub(crate) fn seal<T: serde::Serialize + ?Sized>(
        &self,
        kind: Kind,
        capacity: usize,
        context: &[u8],
        epoch: u64,
        state: &T,
        out: &mut [u8],
    ) -> Result<usize> {
        let body_len = postcard::to_slice(&(epoch, state), out).map_err(|_| Error::Encode)?.len();
        let (body, rest) = out.split_at_mut(body_len);
        let tag = self.tag(kind, capacity, context, body)?;
        rest.get_mut(..SNAPSHOT_TAG_LEN).ok_or(Error::Encode)?.copy_from_slice(&tag);
        body_len.checked_add(SNAPSHOT_TAG_LEN).ok_or(Error::Encode)
    }

    /// Checks the tag and the epoch; returns the state bytes.
    pub(crate) fn open<'a>(
        &self,
        kind: Kind,
        capacity: usize,
        context: &[u8],
        trusted_epoch: u64,
        bytes: &'a [u8],
    ) -> Result<&'a [u8]> {
        let split = bytes.len().checked_sub(SNAPSHOT_TAG_LEN).ok_or(Error::Truncated)?;
        let (body, tag) = bytes.split_at(split);
        let want = self.tag(kind, capacity, context, body)?;
        if !bool::from(want.ct_eq(tag)) {
            return Err(Error::Authentication);
        }
        let (epoch, state) = postcard::take_from_bytes::<u64>(body).map_err(|_| Error::Decode)?;
        if epoch != trusted_epoch {
            return Err(Error::Rollback);
        }
        Ok(state)
    }
}
