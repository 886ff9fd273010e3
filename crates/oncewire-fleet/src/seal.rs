//! The fleet key: what a server seals before it leaves state in Redis
//! (pending handshakes, sessions), so that any server of the fleet, and
//! only those, can continue it.
//!
//! A blob is `kid ‖ nonce ‖ ciphertext ‖ tag`: a 1-byte key id, a random
//! 96-bit nonce, then AES-256-GCM of the plaintext with a 16-byte tag. The
//! associated data is `"oncewire-fleet v1" ‖ label ‖ id ‖ kid`, with the
//! label and id each preceded by its length (one byte for the label, two for
//! the id): a blob moved under another id, or read as another kind of
//! state, does not open.
//!
//! # Rotation
//!
//! [`FleetKeys`] holds several keys by id, one of them current: seals use
//! the current key, opens use whichever key the blob names. To rotate:
//! 1. give every server the new key besides the old one (old still
//!    current) and roll them out;
//! 2. make the new key current on every server;
//! 3. once the longest-lived sealed state under the old key (a session's
//!    lifetime) is over, drop the old key.
//!
//! # Nonces
//!
//! Nonces are random (drawn from the OS RNG through
//! [`oncewire::rng::OsRng`]): with `q` seals under one key, two nonces
//! collide with probability about `q² / 2^97`. NIST SP 800-38D bounds
//! random-nonce GCM at 2^32 seals per key. Each [`FleetKeys`] counts the
//! seals of each key in this process and refuses past its limit with
//! [`Error::KeyExhausted`]. The 2^32 bound is for the whole fleet: the
//! default limit per process, [`FleetKeys::DEFAULT_SEAL_LIMIT`], is 2^28,
//! 2^32 shared by 16 servers (set it with [`FleetKeys::with_seal_limit`]).
//! A process restart starts its count again: rotate the key well before the
//! fleet could have sealed 2^32 times under it.

use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use oncewire::rng::{OsRng, TryRng};
use oncewire::{Error, Secret};
use std::sync::atomic::{AtomicU64, Ordering};
use zeroize::Zeroizing;

/// Bytes a seal adds to its plaintext: key id, nonce, tag.
pub const SEAL_OVERHEAD: usize = 1 + NONCE_LEN + TAG_LEN;

const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
const AAD_PREFIX: &[u8] = b"oncewire-fleet v1";

struct FleetKey {
    kid: u8,
    /// The expanded key (zeroized on drop by `aes-gcm`'s `zeroize` feature).
    cipher: Aes256Gcm,
    seals: AtomicU64,
}

/// The fleet's AES-256-GCM keys by 1-byte id, one current. See the
/// [module docs](self).
pub struct FleetKeys {
    keys: Vec<FleetKey>,
    current: u8,
    seal_limit: u64,
}

impl core::fmt::Debug for FleetKeys {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let ids: Vec<u8> = self.keys.iter().map(|k| k.kid).collect();
        f.debug_struct("FleetKeys")
            .field("kids", &ids)
            .field("current", &self.current)
            .field("seal_limit", &self.seal_limit)
            .finish_non_exhaustive()
    }
}

fn cipher(key: &Secret<32>) -> Result<Aes256Gcm, Error> {
    Aes256Gcm::new_from_slice(key.expose()).map_err(|_| Error::InvalidKey)
}

fn aad(label: &[u8], id: &[u8], kid: u8) -> Result<Vec<u8>, Error> {
    let label_len = u8::try_from(label.len()).map_err(|_| Error::Misuse)?;
    let id_len = u16::try_from(id.len()).map_err(|_| Error::Misuse)?;
    let cap = AAD_PREFIX.len().saturating_add(label.len()).saturating_add(id.len()).saturating_add(4);
    let mut a = Vec::with_capacity(cap);
    a.extend_from_slice(AAD_PREFIX);
    a.push(label_len);
    a.extend_from_slice(label);
    a.extend_from_slice(&id_len.to_be_bytes());
    a.extend_from_slice(id);
    a.push(kid);
    Ok(a)
}

impl FleetKeys {
    /// Seals per key and process before [`Error::KeyExhausted`]: 2^28
    /// (2^32 random nonces per key, shared by 16 servers).
    pub const DEFAULT_SEAL_LIMIT: u64 = 1 << 28;

    /// One key, `kid`, current.
    ///
    /// # Errors
    /// [`Error::InvalidKey`] never in practice (the length is fixed).
    pub fn new(kid: u8, key: &Secret<32>) -> Result<Self, Error> {
        Ok(Self {
            keys: vec![FleetKey { kid, cipher: cipher(key)?, seals: AtomicU64::new(0) }],
            current: kid,
            seal_limit: Self::DEFAULT_SEAL_LIMIT,
        })
    }

    /// One random key, `kid`, current (for one server alone, or tests: a
    /// fleet's servers must share their keys).
    ///
    /// # Errors
    /// [`Error::Rng`].
    pub fn generate(kid: u8) -> Result<Self, Error> {
        let mut key = Secret::<32>::zero();
        OsRng.try_fill_bytes(key.expose_mut()).map_err(|_| Error::Rng)?;
        Self::new(kid, &key)
    }

    /// Seals per key (in this process) before [`Error::KeyExhausted`].
    #[must_use]
    pub const fn with_seal_limit(mut self, limit: u64) -> Self {
        self.seal_limit = limit;
        self
    }

    /// Adds a key that opens blobs (and may be made current).
    ///
    /// # Errors
    /// [`Error::Misuse`] if `kid` is held already.
    pub fn add(&mut self, kid: u8, key: &Secret<32>) -> Result<(), Error> {
        if self.keys.iter().any(|k| k.kid == kid) {
            return Err(Error::Misuse);
        }
        self.keys.push(FleetKey { kid, cipher: cipher(key)?, seals: AtomicU64::new(0) });
        Ok(())
    }

    /// Makes `kid` the key new seals use.
    ///
    /// # Errors
    /// [`Error::Misuse`] if no key `kid` is held.
    pub fn set_current(&mut self, kid: u8) -> Result<(), Error> {
        if !self.keys.iter().any(|k| k.kid == kid) {
            return Err(Error::Misuse);
        }
        self.current = kid;
        Ok(())
    }

    /// Drops key `kid`: blobs sealed under it no longer open.
    ///
    /// # Errors
    /// [`Error::Misuse`] if `kid` is the current key, or not held.
    pub fn remove(&mut self, kid: u8) -> Result<(), Error> {
        if kid == self.current {
            return Err(Error::Misuse);
        }
        let before = self.keys.len();
        self.keys.retain(|k| k.kid != kid);
        if self.keys.len() == before {
            return Err(Error::Misuse);
        }
        Ok(())
    }

    /// The id of the key new seals use.
    pub const fn current(&self) -> u8 {
        self.current
    }

    /// Seals made under `kid` by this process, if the key is held.
    pub fn seals(&self, kid: u8) -> Option<u64> {
        self.keys.iter().find(|k| k.kid == kid).map(|k| k.seals.load(Ordering::Relaxed))
    }

    /// Seals `plain` as state of kind `label` (at most 255 bytes) under `id`
    /// (at most 65535 bytes): `kid ‖ nonce ‖ ciphertext ‖ tag`.
    ///
    /// # Errors
    /// [`Error::KeyExhausted`] past the current key's seal limit;
    /// [`Error::Rng`]; [`Error::Misuse`] for an over-long label or id;
    /// [`Error::PayloadTooLarge`].
    pub fn seal(&self, label: &[u8], id: &[u8], plain: &[u8]) -> Result<Vec<u8>, Error> {
        let key = self.keys.iter().find(|k| k.kid == self.current).ok_or(Error::Misuse)?;
        let aad = aad(label, id, key.kid)?;
        key.seals
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                if n < self.seal_limit { n.checked_add(1) } else { None }
            })
            .map_err(|_| Error::KeyExhausted)?;
        let mut nonce = [0u8; NONCE_LEN];
        OsRng.try_fill_bytes(&mut nonce).map_err(|_| Error::Rng)?;
        let len = plain.len().checked_add(SEAL_OVERHEAD).ok_or(Error::PayloadTooLarge)?;
        let mut out = Vec::with_capacity(len);
        out.push(key.kid);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plain);
        let body = out.get_mut(1usize.saturating_add(NONCE_LEN)..).ok_or(Error::Misuse)?;
        let tag = key
            .cipher
            .encrypt_inout_detached(&Nonce::from(nonce), &aad, body.into())
            .map_err(|_| Error::PayloadTooLarge)?;
        out.extend_from_slice(tag.as_slice());
        Ok(out)
    }

    /// Opens a blob [`Self::seal`] made with the same `label` and `id`.
    ///
    /// # Errors
    /// [`Error::Authentication`]: too short, unknown key id, or a tag that
    /// does not verify (another label, id or key, or a changed byte).
    pub fn open(&self, label: &[u8], id: &[u8], blob: &[u8]) -> Result<Zeroizing<Vec<u8>>, Error> {
        if blob.len() < SEAL_OVERHEAD {
            return Err(Error::Authentication);
        }
        let (&kid, rest) = blob.split_first().ok_or(Error::Authentication)?;
        let (nonce, rest) = rest.split_at_checked(NONCE_LEN).ok_or(Error::Authentication)?;
        let body_len = rest.len().checked_sub(TAG_LEN).ok_or(Error::Authentication)?;
        let (body, tag) = rest.split_at_checked(body_len).ok_or(Error::Authentication)?;
        let key = self.keys.iter().find(|k| k.kid == kid).ok_or(Error::Authentication)?;
        let aad = aad(label, id, kid).map_err(|_| Error::Authentication)?;
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| Error::Authentication)?;
        let tag: [u8; TAG_LEN] = tag.try_into().map_err(|_| Error::Authentication)?;
        let mut plain = Zeroizing::new(body.to_vec());
        key.cipher
            .decrypt_inout_detached(&Nonce::from(nonce), &aad, plain.as_mut_slice().into(), &Tag::from(tag))
            .map_err(|_| Error::Authentication)?;
        Ok(plain)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_and_binding() {
        let keys = FleetKeys::new(1, &Secret::new([9; 32])).unwrap();
        let blob = keys.seal(b"pending", b"id-1", b"state").unwrap();
        assert_eq!(blob.len(), 5 + SEAL_OVERHEAD);
        assert_eq!(blob[0], 1);
        assert_eq!(&**keys.open(b"pending", b"id-1", &blob).unwrap(), b"state");
        assert_eq!(keys.open(b"pending", b"id-2", &blob).err(), Some(Error::Authentication));
        assert_eq!(keys.open(b"session", b"id-1", &blob).err(), Some(Error::Authentication));
        // Label and id boundaries are bound: "pe"+"nding…" is not "pending"+"…".
        assert_eq!(keys.open(b"pendingi", b"d-1", &blob).err(), Some(Error::Authentication));
        for i in 0..blob.len() {
            let mut b = blob.clone();
            b[i] ^= 1;
            assert_eq!(keys.open(b"pending", b"id-1", &b).err(), Some(Error::Authentication), "byte {i}");
        }
        for n in 0..SEAL_OVERHEAD {
            assert_eq!(keys.open(b"pending", b"id-1", &blob[..n]).err(), Some(Error::Authentication));
        }
        // Two seals of one plaintext differ (random nonces).
        assert_ne!(keys.seal(b"pending", b"id-1", b"state").unwrap(), blob);
        assert_eq!(keys.seals(1), Some(2));
    }

    #[test]
    fn rotation() {
        let mut keys = FleetKeys::new(1, &Secret::new([1; 32])).unwrap();
        let old = keys.seal(b"s", b"x", b"old").unwrap();
        keys.add(2, &Secret::new([2; 32])).unwrap();
        assert_eq!(keys.add(2, &Secret::new([3; 32])).err(), Some(Error::Misuse));
        keys.set_current(2).unwrap();
        let new = keys.seal(b"s", b"x", b"new").unwrap();
        assert_eq!(new[0], 2);
        assert_eq!(&**keys.open(b"s", b"x", &old).unwrap(), b"old");
        assert_eq!(keys.remove(2).err(), Some(Error::Misuse), "the current key stays");
        keys.remove(1).unwrap();
        assert_eq!(keys.open(b"s", b"x", &old).err(), Some(Error::Authentication));
        assert_eq!(&**keys.open(b"s", b"x", &new).unwrap(), b"new");
        // Another fleet's key with the same id does not open it.
        let other = FleetKeys::new(2, &Secret::new([7; 32])).unwrap();
        assert_eq!(other.open(b"s", b"x", &new).err(), Some(Error::Authentication));
        assert!(!format!("{keys:?}").contains("cipher"));
    }

    #[test]
    fn seal_limit() {
        let keys = FleetKeys::generate(0).unwrap().with_seal_limit(2);
        keys.seal(b"s", b"", b"").unwrap();
        keys.seal(b"s", b"", b"").unwrap();
        assert_eq!(keys.seal(b"s", b"", b"").err(), Some(Error::KeyExhausted));
        assert_eq!(keys.seal(&[0; 256], b"", b"").err(), Some(Error::Misuse));
    }
}
