//! The server provider: AWS-LC through `aws-lc-rs` (feature `aws-lc-rs`,
//! implies `std`).
//!
//! The same primitives as [`RustCrypto`](super::RustCrypto), several times
//! faster on a server CPU (AES-NI/VAES, assembly P-256). The wire format is
//! identical; the two providers interoperate in every direction. Two
//! behaviours differ and neither is visible on the wire:
//!
//! - **ECDSA nonces are random**, not RFC 6979: AWS-LC draws them. Signatures
//!   are still raw `r ‖ s` with low S, and they verify under either
//!   provider; only the exact bytes of a signature are not reproducible.
//! - **Failed opens restore the buffer from a copy.** AWS-LC decrypts while
//!   it authenticates and zeroes the output on failure, so `open_detached`
//!   keeps a copy of the ciphertext (never plaintext) in a per-thread scratch
//!   buffer and writes it back on error, as the [`AeadCipher`] contract asks.
//!   `open_detached_to` (out of place: a read-only frame into another
//!   buffer) needs no copy; `Session::open_to` is the path that uses it.
//!
//! Compressed SEC1 points (33 bytes, only ever parsed from input, never on
//! the wire) are decompressed with `p256`; AWS-LC validates every point it
//! uses.

use super::{
    AeadCipher, CryptoProvider, NONCE_LEN, P256_PUBLIC_LEN, P256_SIGNATURE_LEN, PublicKey, TAG_LEN, fill_random,
};
use crate::error::{Error, Result};
use crate::secret::Secret;
use aws_lc_rs::aead::{AES_128_GCM, AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::agreement::{self, ECDH_P256};
use aws_lc_rs::digest::{self, SHA256};
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use rand_core::TryCryptoRng;
use std::cell::RefCell;
use std::vec::Vec;

/// The aws-lc-rs provider (feature `aws-lc-rs`): for servers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AwsLc;

std::thread_local! {
    /// The ciphertext of the open in progress, to restore on failure.
    static OPEN_BACKUP: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Opens in place; on failure writes the saved ciphertext back.
fn open_restoring(
    key: &LessSafeKey,
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    buf: &mut [u8],
    tag: &[u8; TAG_LEN],
) -> Result<()> {
    let open = |buf: &mut [u8]| {
        key.open_in_place_separate_tag(Nonce::assume_unique_for_key(*nonce), Aad::from(aad), tag, buf)
            .map(|_| ())
            .map_err(|_| Error::Authentication)
    };
    if buf.is_empty() {
        return open(buf);
    }
    OPEN_BACKUP.with(|cell| {
        // Not re-entrant, so the borrow is always free; if it were not, a
        // fresh buffer does the same job.
        let mut local = Vec::new();
        let mut guard = cell.try_borrow_mut().ok();
        let backup = guard.as_deref_mut().unwrap_or(&mut local);
        backup.clear();
        backup.extend_from_slice(buf);
        let r = open(buf);
        if r.is_err() {
            buf.copy_from_slice(backup.get(..buf.len()).unwrap_or_default());
        }
        r
    })
}

macro_rules! awslc_gcm_cipher {
    ($name:ident, $alg:expr, $len:expr, $doc:expr) => {
        #[doc = $doc]
        pub struct $name(LessSafeKey);

        impl core::fmt::Debug for $name {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.debug_struct(stringify!($name)).finish_non_exhaustive()
            }
        }

        impl AeadCipher for $name {
            const KEY_LEN: usize = $len;

            fn new(key: &[u8]) -> Result<Self> {
                if key.len() != $len {
                    return Err(Error::InvalidKey);
                }
                UnboundKey::new(&$alg, key).map(|k| Self(LessSafeKey::new(k))).map_err(|_| Error::InvalidKey)
            }

            #[inline]
            fn seal_detached(&self, nonce: &[u8; NONCE_LEN], aad: &[u8], buf: &mut [u8]) -> Result<[u8; TAG_LEN]> {
                let tag = self
                    .0
                    .seal_in_place_separate_tag(Nonce::assume_unique_for_key(*nonce), Aad::from(aad), buf)
                    .map_err(|_| Error::PayloadTooLarge)?;
                tag.as_ref().try_into().map_err(|_| Error::PayloadTooLarge)
            }

            #[inline]
            fn open_detached(
                &self,
                nonce: &[u8; NONCE_LEN],
                aad: &[u8],
                buf: &mut [u8],
                tag: &[u8; TAG_LEN],
            ) -> Result<()> {
                open_restoring(&self.0, nonce, aad, buf, tag)
            }

            #[inline]
            fn open_detached_to(
                &self,
                nonce: &[u8; NONCE_LEN],
                aad: &[u8],
                ciphertext: &[u8],
                tag: &[u8; TAG_LEN],
                out: &mut [u8],
            ) -> Result<()> {
                // Out of place, so no copy: AWS-LC zeroes `out` on a bad
                // tag, and `ciphertext` is never written.
                if out.len() != ciphertext.len() {
                    return Err(Error::BufferTooSmall);
                }
                self.0
                    .open_separate_gather(Nonce::assume_unique_for_key(*nonce), Aad::from(aad), ciphertext, tag, out)
                    .map_err(|_| Error::Authentication)
            }
        }
    };
}

awslc_gcm_cipher!(AwsLcAes128Gcm, AES_128_GCM, 16, "AES-128-GCM from AWS-LC.");
awslc_gcm_cipher!(AwsLcAes256Gcm, AES_256_GCM, 32, "AES-256-GCM from AWS-LC.");

/// A P-256 ECDH private key held by AWS-LC (which cleanses it when freed).
pub struct EcdhSecret(agreement::PrivateKey);

impl core::fmt::Debug for EcdhSecret {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("EcdhSecret").finish_non_exhaustive()
    }
}

/// A P-256 ECDSA signing key held by AWS-LC (which cleanses it when freed),
/// with its public key.
pub struct SigningKey {
    key: EcdsaKeyPair,
    public: PublicKey,
}

impl core::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SigningKey").field("public", &self.public).finish_non_exhaustive()
    }
}

/// Checks `0 < s < n` in constant time (the same check as the RustCrypto
/// provider), before AWS-LC sees the scalar.
fn check_scalar(bytes: &Secret<32>) -> Result<()> {
    let s: Option<p256::NonZeroScalar> = p256::NonZeroScalar::from_repr((*bytes.expose()).into()).into();
    s.map(|_| ()).ok_or(Error::InvalidKey)
}

fn ecdh_import(bytes: &Secret<32>) -> Result<(EcdhSecret, PublicKey)> {
    check_scalar(bytes)?;
    let key = agreement::PrivateKey::from_private_key(&ECDH_P256, bytes.expose()).map_err(|_| Error::InvalidKey)?;
    let public = key.compute_public_key().map_err(|_| Error::InvalidKey)?;
    let public = PublicKey::from_sec1_uncompressed(public.as_ref())?;
    Ok((EcdhSecret(key), public))
}

fn random_secret<R: TryCryptoRng + ?Sized>(rng: &mut R) -> Result<Secret<32>> {
    // Rejection sampling; a candidate fails with probability < 2^-32, so 64
    // failures in a row mean the RNG is broken.
    let mut buf = Secret::<32>::zero();
    for _ in 0..64 {
        fill_random(rng, buf.expose_mut())?;
        if check_scalar(&buf).is_ok() {
            return Ok(buf);
        }
    }
    Err(Error::Rng)
}

fn signing_import(bytes: &Secret<32>) -> Result<SigningKey> {
    let (_, public) = ecdh_import(bytes)?;
    let key = EcdsaKeyPair::from_private_key_and_public_key(
        &ECDSA_P256_SHA256_FIXED_SIGNING,
        bytes.expose(),
        public.as_bytes(),
    )
    .map_err(|_| Error::InvalidKey)?;
    Ok(SigningKey { key, public })
}

fn sha256_digest(digest: &[u8; 32]) -> Result<digest::Digest> {
    digest::Digest::import_less_safe(digest, &SHA256).map_err(|_| Error::Authentication)
}

impl CryptoProvider for AwsLc {
    type Aead128 = AwsLcAes128Gcm;
    type Aead256 = AwsLcAes256Gcm;
    type EcdhSecret = EcdhSecret;
    type SigningKey = SigningKey;

    fn sha256(parts: &[&[u8]]) -> [u8; 32] {
        let mut ctx = digest::Context::new(&SHA256);
        for p in parts {
            ctx.update(p);
        }
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.finish().as_ref());
        out
    }

    fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
        let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key);
        let mut ctx = aws_lc_rs::hmac::Context::with_key(&key);
        for p in parts {
            ctx.update(p);
        }
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.sign().as_ref());
        out
    }

    fn p256_generate<R: TryCryptoRng + ?Sized>(rng: &mut R) -> Result<(EcdhSecret, PublicKey)> {
        ecdh_import(&random_secret(rng)?)
    }

    fn p256_ecdh_secret_from_bytes(bytes: &Secret<32>) -> Result<(EcdhSecret, PublicKey)> {
        ecdh_import(bytes)
    }

    fn p256_public_from_sec1(bytes: &[u8]) -> Result<PublicKey> {
        let public = match (bytes.len(), bytes.first()) {
            (P256_PUBLIC_LEN, Some(0x04)) => PublicKey::from_sec1_uncompressed(bytes)?,
            // Decompression only; AWS-LC validates the result below.
            (33, Some(0x02 | 0x03)) => super::RustCrypto::p256_public_from_sec1(bytes)?,
            _ => return Err(Error::InvalidKey),
        };
        let peer = agreement::UnparsedPublicKey::new(&ECDH_P256, public.as_bytes());
        agreement::ParsedPublicKey::try_from(&peer).map_err(|_| Error::InvalidKey)?;
        Ok(public)
    }

    fn p256_ecdh(secret: &EcdhSecret, peer: &PublicKey) -> Result<Secret<32>> {
        let peer = agreement::UnparsedPublicKey::new(&ECDH_P256, peer.as_bytes());
        agreement::agree(&secret.0, peer, Error::InvalidKey, |shared| {
            let mut out = Secret::<32>::zero();
            let shared: &[u8; 32] = shared.try_into().map_err(|_| Error::InvalidKey)?;
            out.expose_mut().copy_from_slice(shared);
            Ok(out)
        })
    }

    fn signing_key_from_bytes(bytes: &Secret<32>) -> Result<SigningKey> {
        signing_import(bytes)
    }

    fn signing_key_generate<R: TryCryptoRng + ?Sized>(rng: &mut R) -> Result<SigningKey> {
        signing_import(&random_secret(rng)?)
    }

    fn signing_key_public(key: &SigningKey) -> PublicKey {
        key.public
    }

    fn ecdsa_sign_prehash(key: &SigningKey, digest: &[u8; 32]) -> Result<[u8; P256_SIGNATURE_LEN]> {
        let sig = key.key.sign_digest(&sha256_digest(digest).map_err(|_| Error::Signer)?).map_err(|_| Error::Signer)?;
        let raw: [u8; P256_SIGNATURE_LEN] = sig.as_ref().try_into().map_err(|_| Error::Signer)?;
        // AWS-LC does not normalise S; the wire form is low-S (SPEC.md §8.2).
        super::normalize_s(raw).map_err(|_| Error::Signer)
    }

    fn ecdsa_verify_prehash(public: &PublicKey, digest: &[u8; 32], sig: &[u8; P256_SIGNATURE_LEN]) -> Result<()> {
        let key = aws_lc_rs::signature::ParsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, public.as_bytes())
            .map_err(|_| Error::InvalidKey)?;
        key.verify_digest_sig(&sha256_digest(digest)?, sig).map_err(|_| Error::Authentication)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn failed_open_leaves_the_buffer_unchanged() {
        let k = AwsLcAes256Gcm::new(&[7u8; 32]).unwrap();
        let nonce = [1u8; NONCE_LEN];
        let mut buf = [0x5au8; 100];
        let tag = k.seal_detached(&nonce, b"aad", &mut buf).unwrap();
        let ct = buf;
        let mut bad = tag;
        bad[0] ^= 1;
        assert_eq!(k.open_detached(&nonce, b"aad", &mut buf, &bad), Err(Error::Authentication));
        assert_eq!(buf, ct);
        k.open_detached(&nonce, b"aad", &mut buf, &tag).unwrap();
        assert_eq!(buf, [0x5au8; 100]);
    }

    #[test]
    fn signatures_are_low_s_and_keys_redacted() {
        let key = AwsLc::signing_key_from_bytes(&Secret::new([0x11; 32])).unwrap();
        let half = [
            0x7f, 0xff, 0xff, 0xff, 0x80, 0x00, 0x00, 0x00, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xde, 0x73,
            0x7d, 0x56, 0xd3, 0x8b, 0xcf, 0x42, 0x79, 0xdc, 0xe5, 0x61, 0x7e, 0x31, 0x92, 0xa8,
        ];
        for i in 0..32u8 {
            let d = [i; 32];
            let sig = AwsLc::ecdsa_sign_prehash(&key, &d).unwrap();
            assert!(sig[32..] <= half[..]);
            AwsLc::ecdsa_verify_prehash(&AwsLc::signing_key_public(&key), &d, &sig).unwrap();
        }
        let dbg = std::format!("{key:?}");
        assert!(dbg.starts_with("SigningKey { public: PublicKey(") && dbg.ends_with(".. }"), "{dbg}");
        let (e, _) = AwsLc::p256_ecdh_secret_from_bytes(&Secret::new([0x11; 32])).unwrap();
        assert_eq!(std::format!("{e:?}"), "EcdhSecret { .. }");
    }

    #[test]
    fn scalars_out_of_range_are_refused() {
        assert!(AwsLc::p256_ecdh_secret_from_bytes(&Secret::new([0; 32])).is_err());
        assert!(AwsLc::signing_key_from_bytes(&Secret::new([0xff; 32])).is_err());
    }
}
