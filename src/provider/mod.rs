//! The crypto provider seam: every primitive behind one trait.
//!
//! Every primitive the protocol uses sits behind [`CryptoProvider`]: detached
//! AEAD, SHA-256, HMAC/HKDF-SHA256, P-256 key generation, ECDH and ECDSA. The
//! protocol types are generic over the provider (`Session<P>`, not
//! `Box<dyn …>`), so a server can swap in a faster backend as a new file, not
//! a redesign. The default, [`RustCrypto`], is `no_std` and is the one the
//! firmware uses. Servers can use [`AwsLc`] (feature `aws-lc-rs`, with
//! `std`): the same wire format on AWS-LC.
//!
//! A provider is a zero-sized type with associated functions: it holds no
//! state, so protocol objects stay `Send` and cheap to move. Key objects are
//! associated types, so a provider may keep them in memory, in a hardware key
//! slot, or in a secure element.

use crate::error::{Error, Result};
use crate::secret::Secret;
use rand_core::TryCryptoRng;

pub(crate) mod low_s;
pub(crate) use low_s::normalize_s;
mod rustcrypto;
pub use rustcrypto::RustCrypto;

#[cfg(feature = "aws-lc-rs")]
#[cfg_attr(docsrs, doc(cfg(feature = "aws-lc-rs")))]
mod awslc;
#[cfg(feature = "aws-lc-rs")]
#[cfg_attr(docsrs, doc(cfg(feature = "aws-lc-rs")))]
pub use awslc::AwsLc;

/// The provider every type's `P` parameter defaults to: [`RustCrypto`].
///
/// Test runs only: with `RUSTFLAGS="--cfg oncewire_default_awslc"` and the
/// `aws-lc-rs` feature it is [`AwsLc`], so that the whole test suite runs
/// once per provider (`.ci/run` does). It is a cfg, never a Cargo feature:
/// a feature that changed a default type would change it for every crate in
/// a dependency graph.
#[cfg(not(oncewire_default_awslc))]
pub type DefaultProvider = RustCrypto;
/// The provider every type's `P` parameter defaults to: here [`AwsLc`]
/// (`--cfg oncewire_default_awslc`, a test run).
#[cfg(all(oncewire_default_awslc, feature = "aws-lc-rs"))]
pub type DefaultProvider = AwsLc;
#[cfg(all(oncewire_default_awslc, not(feature = "aws-lc-rs")))]
compile_error!("--cfg oncewire_default_awslc needs the aws-lc-rs feature");

use crate::wire::{NONCE_LEN, TAG_LEN};
/// Length of an uncompressed SEC1 P-256 public key (`0x04 ‖ x ‖ y`).
pub const P256_PUBLIC_LEN: usize = 65;
/// Length of a raw (P1363, `r ‖ s`) P-256 ECDSA signature.
pub const P256_SIGNATURE_LEN: usize = 64;

/// A prepared AEAD key (AES-GCM with a 96-bit nonce and a 128-bit tag).
///
/// # Contract for implementors
/// - `open_detached` verifies the tag in constant time **before** any
///   plaintext is written, and on any error leaves `buf` byte-for-byte
///   unchanged. A backend that decrypts while it authenticates must restore
///   the buffer (re-apply the keystream) before returning the error.
/// - Errors are opaque: every failure is [`Error::Authentication`], except
///   inputs longer than the algorithm allows, which are [`Error::PayloadTooLarge`].
pub trait AeadCipher: Sized {
    /// Key length in bytes.
    const KEY_LEN: usize;

    /// Prepares a key (expands the AES key schedule once).
    ///
    /// # Errors
    /// [`Error::InvalidKey`] if `key` is not exactly [`Self::KEY_LEN`] bytes.
    fn new(key: &[u8]) -> Result<Self>;

    /// Encrypts `buf` in place and returns the detached tag.
    ///
    /// # Errors
    /// [`Error::PayloadTooLarge`] if `buf` or `aad` exceed the algorithm's limits.
    fn seal_detached(&self, nonce: &[u8; NONCE_LEN], aad: &[u8], buf: &mut [u8]) -> Result<[u8; TAG_LEN]>;

    /// Verifies `tag` and, only if it is valid, decrypts `buf` in place.
    ///
    /// # Errors
    /// [`Error::Authentication`] if the tag does not verify; `buf` is unchanged.
    fn open_detached(&self, nonce: &[u8; NONCE_LEN], aad: &[u8], buf: &mut [u8], tag: &[u8; TAG_LEN]) -> Result<()>;

    /// Verifies `tag` over `ciphertext` and, only if it is valid, decrypts
    /// it into `out`. `ciphertext` is read-only, so a failed open cannot
    /// change it: a backend that decrypts while it authenticates needs no
    /// copy here. On error `out` holds no plaintext (it may hold the
    /// ciphertext or zeros).
    ///
    /// The default copies `ciphertext` into `out` and opens it there with
    /// [`Self::open_detached`]; a backend that can decrypt from one buffer
    /// into another overrides it.
    ///
    /// # Errors
    /// [`Error::BufferTooSmall`] if `out` is not exactly as long as
    /// `ciphertext` (checked before any cryptography),
    /// [`Error::Authentication`] if the tag does not verify.
    #[inline]
    fn open_detached_to(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        ciphertext: &[u8],
        tag: &[u8; TAG_LEN],
        out: &mut [u8],
    ) -> Result<()> {
        if out.len() != ciphertext.len() {
            return Err(Error::BufferTooSmall);
        }
        out.copy_from_slice(ciphertext);
        self.open_detached(nonce, aad, out, tag)
    }
}

/// An uncompressed SEC1 P-256 public key, `0x04 ‖ x ‖ y`.
///
/// Construction checks only the length and the `0x04` prefix; every provider
/// operation that uses the key checks that it is a valid point on the curve
/// and not the identity, and fails with [`Error::InvalidKey`] otherwise.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey([u8; P256_PUBLIC_LEN]);

impl PublicKey {
    /// Wraps uncompressed SEC1 bytes.
    ///
    /// # Errors
    /// [`Error::InvalidKey`] if the length is not 65 or the first byte is not `0x04`.
    pub fn from_sec1_uncompressed(bytes: &[u8]) -> Result<Self> {
        let arr: [u8; P256_PUBLIC_LEN] = bytes.try_into().map_err(|_| Error::InvalidKey)?;
        if arr[0] != 0x04 {
            return Err(Error::InvalidKey);
        }
        Ok(Self(arr))
    }

    /// The 65 encoded bytes.
    pub const fn as_bytes(&self) -> &[u8; P256_PUBLIC_LEN] {
        &self.0
    }
}

impl core::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("PublicKey(")?;
        for b in self.0.get(1..9).unwrap_or_default() {
            write!(f, "{b:02x}")?;
        }
        f.write_str("…)")
    }
}

#[cfg(feature = "defmt")]
impl defmt::Format for PublicKey {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(f, "PublicKey({=[u8]:x}…)", self.0.get(1..9).unwrap_or_default())
    }
}

/// The primitives `oncewire` needs, in one small trait.
///
/// All functions are associated functions: a provider is a zero-sized
/// marker type. See the [module docs](self) for the design.
pub trait CryptoProvider {
    /// A prepared AES-128-GCM key (used by HPKE).
    type Aead128: AeadCipher;
    /// A prepared AES-256-GCM key (used by every frame).
    type Aead256: AeadCipher;
    /// An ephemeral P-256 private key for ECDH, zeroized on drop.
    type EcdhSecret;
    /// A P-256 ECDSA private key held in software (server static key,
    /// token issuer, test devices). Devices keep theirs behind `DeviceSigner`.
    type SigningKey;

    /// SHA-256 over the concatenation of `parts`.
    fn sha256(parts: &[&[u8]]) -> [u8; 32];

    /// HMAC-SHA256 keyed with `key` over the concatenation of `parts`.
    fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32];

    /// HKDF-SHA256 extract (RFC 5869 §2.2) over the concatenation of `ikm`.
    fn hkdf_extract(salt: &[u8], ikm: &[&[u8]]) -> Secret<32> {
        Secret::new(Self::hmac_sha256(salt, ikm))
    }

    /// HKDF-SHA256 expand (RFC 5869 §2.3) with `info` the concatenation of
    /// `info`, filling `okm`.
    ///
    /// # Errors
    /// [`Error::BufferTooSmall`] if `okm` is longer than 255 × 32 bytes.
    fn hkdf_expand(prk: &Secret<32>, info: &[&[u8]], okm: &mut [u8]) -> Result<()> {
        const MAX_PARTS: usize = 8;
        if okm.len() > 255 * 32 || info.len() > MAX_PARTS {
            return Err(Error::BufferTooSmall);
        }
        let mut t = Secret::<32>::zero();
        let mut t_len = 0usize;
        for (i, chunk) in okm.chunks_mut(32).enumerate() {
            // At most 255 chunks (checked above), so the counter fits a byte.
            let counter = [u8::try_from(i).map_err(|_| Error::BufferTooSmall)?.wrapping_add(1)];
            let mut parts: [&[u8]; MAX_PARTS + 2] = [&[]; MAX_PARTS + 2];
            let prev = t.expose().get(..t_len).unwrap_or_default();
            let mut n = 0usize;
            for (slot, p) in parts.iter_mut().zip(core::iter::once(prev).chain(info.iter().copied())) {
                *slot = p;
                n = n.wrapping_add(1);
            }
            if let Some(slot) = parts.get_mut(n) {
                *slot = &counter;
            }
            // Written straight into the zeroized buffer: no copy of the block
            // stays on the stack.
            *t.expose_mut() = Self::hmac_sha256(prk.expose(), parts.get(..=n).unwrap_or_default());
            t_len = 32;
            chunk.copy_from_slice(t.expose().get(..chunk.len()).unwrap_or_default());
        }
        Ok(())
    }

    /// Generates a fresh P-256 key pair for ECDH.
    ///
    /// # Errors
    /// [`Error::Rng`] if the RNG fails.
    fn p256_generate<R: TryCryptoRng + ?Sized>(rng: &mut R) -> Result<(Self::EcdhSecret, PublicKey)>;

    /// Imports an ECDH private scalar (for test vectors and fixed keys).
    ///
    /// # Errors
    /// [`Error::InvalidKey`] if the scalar is zero or not below the group order.
    fn p256_ecdh_secret_from_bytes(bytes: &Secret<32>) -> Result<(Self::EcdhSecret, PublicKey)>;

    /// Parses and validates a SEC1 public key, compressed (33 bytes) or
    /// uncompressed (65 bytes), into the uncompressed form.
    ///
    /// # Errors
    /// [`Error::InvalidKey`] if it is not a valid point other than the identity.
    fn p256_public_from_sec1(bytes: &[u8]) -> Result<PublicKey>;

    /// P-256 ECDH: the x-coordinate of `secret × peer`.
    ///
    /// # Errors
    /// [`Error::InvalidKey`] if `peer` is not a valid point.
    fn p256_ecdh(secret: &Self::EcdhSecret, peer: &PublicKey) -> Result<Secret<32>>;

    /// Imports an ECDSA private scalar.
    ///
    /// # Errors
    /// [`Error::InvalidKey`] if the scalar is zero or not below the group order.
    fn signing_key_from_bytes(bytes: &Secret<32>) -> Result<Self::SigningKey>;

    /// Generates a fresh ECDSA key.
    ///
    /// # Errors
    /// [`Error::Rng`] if the RNG fails.
    fn signing_key_generate<R: TryCryptoRng + ?Sized>(rng: &mut R) -> Result<Self::SigningKey>;

    /// The public key of an ECDSA private key.
    fn signing_key_public(key: &Self::SigningKey) -> PublicKey;

    /// ECDSA P-256 over a 32-byte digest, low-S, raw `r ‖ s`. The nonce is
    /// deterministic (RFC 6979) in [`RustCrypto`] and random in `AwsLc`; the
    /// wire form is the same.
    ///
    /// # Errors
    /// [`Error::Signer`] if signing fails.
    fn ecdsa_sign_prehash(key: &Self::SigningKey, digest: &[u8; 32]) -> Result<[u8; P256_SIGNATURE_LEN]>;

    /// Verifies a raw `r ‖ s` ECDSA P-256 signature over a 32-byte digest.
    /// High-S signatures are accepted here; callers that need uniqueness
    /// normalise first (see the `device` module).
    ///
    /// # Errors
    /// [`Error::Authentication`] if the signature does not verify,
    /// [`Error::InvalidKey`] if `public` is not a valid point.
    fn ecdsa_verify_prehash(public: &PublicKey, digest: &[u8; 32], sig: &[u8; P256_SIGNATURE_LEN]) -> Result<()>;
}

/// A fresh, valid P-256 private scalar from the RNG, as bytes: for keys
/// that must be stored and reloaded (a server's static key, a token
/// issuer's key). Rejection sampling; 64 failures in a row mean a broken RNG.
///
/// # Errors
/// [`Error::Rng`].
pub(crate) fn p256_secret_bytes<P: CryptoProvider, R: TryCryptoRng + ?Sized>(rng: &mut R) -> Result<Secret<32>> {
    let mut s = Secret::<32>::zero();
    for _ in 0..64 {
        fill_random(rng, s.expose_mut())?;
        if P::p256_ecdh_secret_from_bytes(&s).is_ok() {
            return Ok(s);
        }
    }
    Err(Error::Rng)
}

/// Fills `dst` from a fallible cryptographic RNG, mapping failure to [`Error::Rng`].
///
/// # Errors
/// [`Error::Rng`] if the generator fails.
pub(crate) fn fill_random<R: TryCryptoRng + ?Sized>(rng: &mut R, dst: &mut [u8]) -> Result<()> {
    rng.try_fill_bytes(dst).map_err(|_| Error::Rng)
}
