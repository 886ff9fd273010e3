//! A `CryptoProvider` for the Cortex-M4: P-256 from `p256-cm4` (Emil
//! Lenngren's constant-time Cortex-M4 assembly, in Rust's `naked_asm`), and
//! AES-GCM, SHA-256 and HMAC from the core's [`RustCrypto`] provider.
//!
//! The core's P-256 is `p256` 0.14 in portable Rust: about 12 M instructions
//! per scalar multiplication on this target. `p256-cm4` does the same work in
//! well under a tenth of that, and in a fraction of the flash. The device side
//! of the handshake (one key generation, two ECDH, one signature) runs on it;
//! `scripts/size-report` counts its instructions.
//!
//! Behaviour matches [`RustCrypto`] exactly, and the `p256-check` firmware
//! checks it under QEMU against `RustCrypto` itself and the RFC 6979 vector:
//! the same public keys, the same shared secrets, the same validation of
//! SEC1 input (uncompressed here, compressed through `RustCrypto`; hybrid,
//! off-curve, out-of-range and identity encodings are refused), and
//! byte-identical signatures (RFC 6979 deterministic nonces, low-S). Scalars
//! are zeroized on drop.

use oncewire::device::DeviceSignature;
use oncewire::provider::{CryptoProvider, P256_PUBLIC_LEN, P256_SIGNATURE_LEN, PublicKey};
use oncewire::{Error, RustCrypto, Secret};
use rand_core::TryCryptoRng;
use zeroize::Zeroize;

/// The Cortex-M4 provider: a zero-sized marker, like [`RustCrypto`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cm4;

/// The P-256 group order n, as `p256-cm4` reads numbers: little-endian
/// 32-bit limbs.
const ORDER: [u32; 8] =
    [0xfc63_2551, 0xf3b9_cac2, 0xa717_9e84, 0xbce6_faad, 0xffff_ffff, 0xffff_ffff, 0x0000_0000, 0xffff_ffff];

/// A P-256 scalar in `1..n`, in little-endian 32-bit limbs; zeroized on drop.
pub struct Scalar([u32; 8]);

impl Scalar {
    /// A big-endian scalar, range-checked.
    fn from_be(bytes: &[u8; 32]) -> Result<Self, Error> {
        let s = Scalar(words_from_be(bytes));
        // `s` is zeroized on drop on either path.
        if p256_cm4::check_range_n(&s.0) { Ok(s) } else { Err(Error::InvalidKey) }
    }

    /// A fresh scalar by rejection sampling; a candidate fails with
    /// probability below 2^-32, so 64 failures in a row mean a broken RNG.
    fn random<R: TryCryptoRng + ?Sized>(rng: &mut R) -> Result<Self, Error> {
        let mut buf = Secret::<32>::zero();
        for _ in 0..64 {
            rng.try_fill_bytes(buf.expose_mut()).map_err(|_| Error::Rng)?;
            if let Ok(s) = Self::from_be(buf.expose()) {
                return Ok(s);
            }
        }
        Err(Error::Rng)
    }

    /// `self × G`, uncompressed.
    fn public(&self) -> Result<PublicKey, Error> {
        let (mut x, mut y) = ([0u32; 8], [0u32; 8]);
        if !p256_cm4::keygen(&mut x, &mut y, &self.0) {
            return Err(Error::InvalidKey);
        }
        let mut out = [0u8; P256_PUBLIC_LEN];
        p256_cm4::point_to_octet_string_uncompressed(&mut out, &x, &y);
        PublicKey::from_sec1_uncompressed(&out)
    }
}

impl Drop for Scalar {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl core::fmt::Debug for Scalar {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Scalar(<redacted>)")
    }
}

/// An ECDSA signing key with its public key (computed once, at import).
pub struct SigningKey {
    d: Scalar,
    public: PublicKey,
}

impl core::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SigningKey").field("public", &self.public).finish_non_exhaustive()
    }
}

/// Big-endian bytes to little-endian limbs.
fn words_from_be(be: &[u8; 32]) -> [u32; 8] {
    let mut w = [0u32; 8];
    for (word, chunk) in w.iter_mut().zip(be.rchunks_exact(4)) {
        let mut b = [0u8; 4];
        b.copy_from_slice(chunk);
        *word = u32::from_be_bytes(b);
    }
    w
}

/// Little-endian limbs to big-endian bytes.
fn words_to_be(w: &[u32; 8], out: &mut [u8; 32]) {
    for (chunk, word) in out.rchunks_exact_mut(4).zip(w.iter()) {
        chunk.copy_from_slice(&word.to_be_bytes());
    }
}

/// A digest as an integer mod n (RFC 6979's `bits2octets`, and the `z` of
/// ECDSA): a 256-bit value is below 2n, so one conditional subtraction.
fn digest_mod_n(digest: &[u8; 32]) -> [u32; 8] {
    let mut z = words_from_be(digest);
    // `check_range_n` is false for 0 (already reduced) and for z >= n.
    if z != [0; 8] && !p256_cm4::check_range_n(&z) {
        let mut borrow = 0u64;
        for (limb, n) in z.iter_mut().zip(ORDER) {
            let d = u64::from(*limb).wrapping_sub(u64::from(n)).wrapping_sub(borrow);
            *limb = d as u32;
            borrow = d >> 63;
        }
    }
    z
}

/// A validated uncompressed point as `p256-cm4` limbs.
fn point(public: &PublicKey) -> Result<([u32; 8], [u32; 8]), Error> {
    let (mut x, mut y) = ([0u32; 8], [0u32; 8]);
    // `PublicKey` is 65 bytes starting 0x04: the input `octet_string_to_point`
    // needs (it indexes `[1..33]` before it checks the length).
    if p256_cm4::octet_string_to_point(&mut x, &mut y, public.as_bytes()) { Ok((x, y)) } else { Err(Error::InvalidKey) }
}

impl CryptoProvider for Cm4 {
    type Aead128 = <RustCrypto as CryptoProvider>::Aead128;
    type Aead256 = <RustCrypto as CryptoProvider>::Aead256;
    type EcdhSecret = Scalar;
    type SigningKey = SigningKey;

    fn sha256(parts: &[&[u8]]) -> [u8; 32] {
        RustCrypto::sha256(parts)
    }

    fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
        RustCrypto::hmac_sha256(key, parts)
    }

    fn p256_generate<R: TryCryptoRng + ?Sized>(rng: &mut R) -> Result<(Scalar, PublicKey), Error> {
        let s = Scalar::random(rng)?;
        let public = s.public()?;
        Ok((s, public))
    }

    fn p256_ecdh_secret_from_bytes(bytes: &Secret<32>) -> Result<(Scalar, PublicKey), Error> {
        let s = Scalar::from_be(bytes.expose())?;
        let public = s.public()?;
        Ok((s, public))
    }

    fn p256_public_from_sec1(bytes: &[u8]) -> Result<PublicKey, Error> {
        match (bytes.len(), bytes.first()) {
            // `p256-cm4` also decodes the hybrid form (0x06/0x07), which
            // RustCrypto refuses, and panics on input shorter than 33 bytes:
            // only the uncompressed form goes to it.
            (P256_PUBLIC_LEN, Some(0x04)) => {
                // Validated as a point; its bytes are already the output form.
                let public = PublicKey::from_sec1_uncompressed(bytes)?;
                point(&public)?;
                Ok(public)
            }
            // `p256-cm4` 0.4.0 decompresses to a y that is not on the curve
            // (the `p256-check` firmware caught it), so compressed input goes
            // to RustCrypto. The device never parses one (its peers send
            // uncompressed keys); only HPKE calls this, on servers.
            (33, Some(0x02 | 0x03)) => RustCrypto::p256_public_from_sec1(bytes),
            _ => Err(Error::InvalidKey),
        }
    }

    fn p256_ecdh(secret: &Scalar, peer: &PublicKey) -> Result<Secret<32>, Error> {
        let (x, y) = point(peer)?;
        let mut shared = Secret::<32>::zero();
        if p256_cm4::ecdh_calc_shared_secret(shared.expose_mut(), &secret.0, &x, &y) {
            Ok(shared)
        } else {
            Err(Error::InvalidKey)
        }
    }

    fn signing_key_from_bytes(bytes: &Secret<32>) -> Result<SigningKey, Error> {
        let d = Scalar::from_be(bytes.expose())?;
        let public = d.public()?;
        Ok(SigningKey { d, public })
    }

    fn signing_key_generate<R: TryCryptoRng + ?Sized>(rng: &mut R) -> Result<SigningKey, Error> {
        let d = Scalar::random(rng)?;
        let public = d.public()?;
        Ok(SigningKey { d, public })
    }

    fn signing_key_public(key: &SigningKey) -> PublicKey {
        key.public
    }

    /// RFC 6979 (HMAC-SHA256, no additional data), as `RustCrypto` signs:
    /// the two give the same signature for the same key and digest.
    fn ecdsa_sign_prehash(key: &SigningKey, digest: &[u8; 32]) -> Result<[u8; P256_SIGNATURE_LEN], Error> {
        let h = digest_mod_n(digest);
        let mut h1 = [0u8; 32];
        words_to_be(&h, &mut h1);
        let mut x = Secret::<32>::zero();
        words_to_be(&key.d.0, x.expose_mut());
        // RFC 6979 §3.2 steps b–f: V = 0x01…, K = 0x00…
        let mut k = Secret::<32>::zero();
        let mut v = Secret::new([0x01; 32]);
        for sep in [0x00u8, 0x01] {
            *k.expose_mut() = RustCrypto::hmac_sha256(k.expose(), &[v.expose(), &[sep], x.expose(), &h1]);
            *v.expose_mut() = RustCrypto::hmac_sha256(k.expose(), &[v.expose()]);
        }
        // Step h. A candidate fails (out of range, or r or s zero) with
        // probability about 2^-32; 64 in a row cannot happen.
        for _ in 0..64 {
            *v.expose_mut() = RustCrypto::hmac_sha256(k.expose(), &[v.expose()]);
            if let Ok(nonce) = Scalar::from_be(v.expose()) {
                let (mut r, mut s) = ([0u32; 8], [0u32; 8]);
                // `h` reduced mod n, which is what ECDSA's z means; `p256-cm4`
                // would take the digest unreduced.
                if p256_cm4::sign(&mut r, &mut s, &h1, &key.d.0, &nonce.0) {
                    let mut sig = [0u8; P256_SIGNATURE_LEN];
                    let (ro, so) = sig.split_at_mut(32);
                    words_to_be(&r, ro.try_into().map_err(|_| Error::Signer)?);
                    words_to_be(&s, so.try_into().map_err(|_| Error::Signer)?);
                    return DeviceSignature::Raw(sig).to_raw_low_s();
                }
            }
            *k.expose_mut() = RustCrypto::hmac_sha256(k.expose(), &[v.expose(), &[0x00]]);
            *v.expose_mut() = RustCrypto::hmac_sha256(k.expose(), &[v.expose()]);
        }
        Err(Error::Signer)
    }

    fn ecdsa_verify_prehash(
        public: &PublicKey,
        digest: &[u8; 32],
        sig: &[u8; P256_SIGNATURE_LEN],
    ) -> Result<(), Error> {
        let (x, y) = point(public)?;
        let (r, s) = sig.split_at(32);
        let r = words_from_be(r.try_into().map_err(|_| Error::Authentication)?);
        let s = words_from_be(s.try_into().map_err(|_| Error::Authentication)?);
        let mut h1 = [0u8; 32];
        words_to_be(&digest_mod_n(digest), &mut h1);
        // Range checks of r and s (1..n) are `verify`'s first step.
        if p256_cm4::verify(&x, &y, &h1, &r, &s) { Ok(()) } else { Err(Error::Authentication) }
    }
}
