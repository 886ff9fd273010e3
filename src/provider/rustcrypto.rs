//! The default provider: RustCrypto `aes-gcm`, `p256`, `sha2`, `hmac`.
//! `no_std`, no `alloc`, usable in firmware.

use super::{AeadCipher, CryptoProvider, NONCE_LEN, P256_SIGNATURE_LEN, PublicKey, TAG_LEN, fill_random};
use crate::error::{Error, Result};
use crate::secret::Secret;
use aes_gcm::aead::{AeadInOut, KeyInit};
use hmac::Mac;
use p256::ecdsa::signature::hazmat::{PrehashSigner, PrehashVerifier};
use rand_core::TryCryptoRng;
use sha2::Digest;

/// The RustCrypto provider (the default).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RustCrypto;

macro_rules! aes_gcm_cipher {
    ($name:ident, $inner:ty, $len:expr, $doc:expr) => {
        #[doc = $doc]
        #[derive(Clone)]
        pub struct $name($inner);

        impl core::fmt::Debug for $name {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.debug_struct(stringify!($name)).finish_non_exhaustive()
            }
        }

        impl AeadCipher for $name {
            const KEY_LEN: usize = $len;

            fn new(key: &[u8]) -> Result<Self> {
                <$inner>::new_from_slice(key).map(Self).map_err(|_| Error::InvalidKey)
            }

            #[inline]
            fn seal_detached(&self, nonce: &[u8; NONCE_LEN], aad: &[u8], buf: &mut [u8]) -> Result<[u8; TAG_LEN]> {
                let tag =
                    self.0.encrypt_inout_detached(nonce.into(), aad, buf.into()).map_err(|_| Error::PayloadTooLarge)?;
                Ok(tag.into())
            }

            #[inline]
            fn open_detached(
                &self,
                nonce: &[u8; NONCE_LEN],
                aad: &[u8],
                buf: &mut [u8],
                tag: &[u8; TAG_LEN],
            ) -> Result<()> {
                // aes-gcm computes GHASH over the ciphertext, compares the tag
                // in constant time, and only then applies the keystream.
                self.0
                    .decrypt_inout_detached(nonce.into(), aad, buf.into(), tag.into())
                    .map_err(|_| Error::Authentication)
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
                // The same order as above: `out` is written only after the
                // tag over `ciphertext` compared equal.
                let io = aes_gcm::aead::inout::InOutBuf::new(ciphertext, out).map_err(|_| Error::BufferTooSmall)?;
                self.0.decrypt_inout_detached(nonce.into(), aad, io, tag.into()).map_err(|_| Error::Authentication)
            }
        }
    };
}

aes_gcm_cipher!(RcAes128Gcm, aes_gcm::Aes128Gcm, 16, "AES-128-GCM from the `aes-gcm` crate.");
aes_gcm_cipher!(RcAes256Gcm, aes_gcm::Aes256Gcm, 32, "AES-256-GCM from the `aes-gcm` crate.");

/// An ephemeral P-256 scalar (zeroized on drop by `p256`).
pub struct EcdhSecret(p256::NonZeroScalar);

impl core::fmt::Debug for EcdhSecret {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("EcdhSecret").finish_non_exhaustive()
    }
}

impl Drop for EcdhSecret {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

/// A P-256 ECDSA signing key (zeroized on drop by `ecdsa`).
pub struct SigningKey(p256::ecdsa::SigningKey);

impl core::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SigningKey").finish_non_exhaustive()
    }
}

fn scalar_from(bytes: &[u8; 32]) -> Result<p256::NonZeroScalar> {
    Option::from(p256::NonZeroScalar::from_repr((*bytes).into())).ok_or(Error::InvalidKey)
}

fn random_scalar<R: TryCryptoRng + ?Sized>(rng: &mut R) -> Result<p256::NonZeroScalar> {
    // Rejection sampling; a candidate fails with probability < 2^-32, so 64
    // failures in a row mean the RNG is broken.
    let mut buf = Secret::<32>::zero();
    for _ in 0..64 {
        fill_random(rng, buf.expose_mut())?;
        if let Ok(s) = scalar_from(buf.expose()) {
            return Ok(s);
        }
    }
    Err(Error::Rng)
}

fn public_of(s: &p256::NonZeroScalar) -> PublicKey {
    use p256::elliptic_curve::sec1::ToSec1Point;
    let point = p256::PublicKey::from_secret_scalar(s).to_sec1_point(false);
    let mut out = [0u8; 65];
    out.copy_from_slice(point.as_bytes());
    PublicKey(out)
}

fn point_of(pk: &PublicKey) -> Result<p256::PublicKey> {
    p256::PublicKey::from_sec1_bytes(pk.as_bytes()).map_err(|_| Error::InvalidKey)
}

impl CryptoProvider for RustCrypto {
    type Aead128 = RcAes128Gcm;
    type Aead256 = RcAes256Gcm;
    type EcdhSecret = EcdhSecret;
    type SigningKey = SigningKey;

    fn sha256(parts: &[&[u8]]) -> [u8; 32] {
        let mut h = sha2::Sha256::new();
        for p in parts {
            h.update(p);
        }
        h.finalize().into()
    }

    fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
        // HMAC accepts keys of any length, so this cannot fail.
        let Ok(mut m) = <hmac::Hmac<sha2::Sha256>>::new_from_slice(key) else {
            return [0u8; 32];
        };
        for p in parts {
            m.update(p);
        }
        m.finalize().into_bytes().into()
    }

    fn p256_generate<R: TryCryptoRng + ?Sized>(rng: &mut R) -> Result<(EcdhSecret, PublicKey)> {
        let s = random_scalar(rng)?;
        let pk = public_of(&s);
        Ok((EcdhSecret(s), pk))
    }

    fn p256_ecdh_secret_from_bytes(bytes: &Secret<32>) -> Result<(EcdhSecret, PublicKey)> {
        let s = scalar_from(bytes.expose())?;
        let pk = public_of(&s);
        Ok((EcdhSecret(s), pk))
    }

    fn p256_public_from_sec1(bytes: &[u8]) -> Result<PublicKey> {
        use p256::elliptic_curve::sec1::ToSec1Point;
        let pk = p256::PublicKey::from_sec1_bytes(bytes).map_err(|_| Error::InvalidKey)?;
        let point = pk.to_sec1_point(false);
        PublicKey::from_sec1_uncompressed(point.as_bytes())
    }

    fn p256_ecdh(secret: &EcdhSecret, peer: &PublicKey) -> Result<Secret<32>> {
        let peer = point_of(peer)?;
        let shared = p256::ecdh::diffie_hellman(secret.0, peer.as_affine());
        let mut out = Secret::<32>::zero();
        out.expose_mut().copy_from_slice(shared.raw_secret_bytes());
        Ok(out)
    }

    fn signing_key_from_bytes(bytes: &Secret<32>) -> Result<SigningKey> {
        let s = scalar_from(bytes.expose())?;
        Ok(SigningKey(p256::ecdsa::SigningKey::from(s)))
    }

    fn signing_key_generate<R: TryCryptoRng + ?Sized>(rng: &mut R) -> Result<SigningKey> {
        Ok(SigningKey(p256::ecdsa::SigningKey::from(random_scalar(rng)?)))
    }

    fn signing_key_public(key: &SigningKey) -> PublicKey {
        public_of(key.0.as_nonzero_scalar())
    }

    fn ecdsa_sign_prehash(key: &SigningKey, digest: &[u8; 32]) -> Result<[u8; P256_SIGNATURE_LEN]> {
        let sig: p256::ecdsa::Signature = key.0.sign_prehash(digest).map_err(|_| Error::Signer)?;
        let sig = sig.normalize_s();
        Ok(sig.to_bytes().into())
    }

    fn ecdsa_verify_prehash(public: &PublicKey, digest: &[u8; 32], sig: &[u8; P256_SIGNATURE_LEN]) -> Result<()> {
        let vk = p256::ecdsa::VerifyingKey::from(point_of(public)?);
        let sig = p256::ecdsa::Signature::from_slice(sig).map_err(|_| Error::Authentication)?;
        vk.verify_prehash(digest, &sig).map_err(|_| Error::Authentication)
    }
}
