//! Device binding (DESIGN C7, `SPEC.md` §8).
//!
//! The device key is P-256 and lives in secure hardware: Android Keystore or
//! StrongBox, the iOS Secure Enclave, or a secure element on I2C. It never
//! leaves. `oncewire` reaches it only through [`DeviceSigner`], which signs a
//! 32-byte digest and may fail.
//!
//! - **Enrollment** proves possession: the device signs a fresh server
//!   challenge ([`EnrollmentChallenge`], [`EnrollmentRequest`]).
//! - **Every handshake** carries a device signature over the handshake hash,
//!   which the server checks against the enrolled key ([`DeviceKeys`]).
//! - One signature has one accepted form on the wire: raw (P1363, `r ‖ s`,
//!   64 bytes) with low S. Hardware returns DER or high-S signatures; the
//!   client converts them ([`DeviceSignature::to_raw_low_s`]) before sending,
//!   and verifiers refuse every other form, so a replay cache keyed on bytes
//!   cannot be bypassed by re-encoding a signature.
//!
//! Only the verifiers in this module can mint [`DeviceVerified`], and an
//! established server session cannot be built without one.

use crate::error::{Error, Result};
use crate::provider::{CryptoProvider, P256_SIGNATURE_LEN, PublicKey, RustCrypto, fill_random};
use crate::secret::Secret;
use core::marker::PhantomData;
use rand_core::TryCryptoRng;

/// Longest device id, in bytes.
pub const MAX_DEVICE_ID_LEN: usize = 32;
/// Longest DER ECDSA P-256 signature: SEQUENCE of two 33-byte INTEGERs.
pub const MAX_DER_SIGNATURE_LEN: usize = 72;


/// A device identifier: 1 to 32 opaque bytes chosen at enrollment.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct DeviceId {
    bytes: [u8; MAX_DEVICE_ID_LEN],
    len: u8,
}

impl DeviceId {
    /// Wraps 1 to 32 bytes.
    ///
    /// # Errors
    /// [`Error::Malformed`] if `id` is empty or longer than 32 bytes.
    pub fn new(id: &[u8]) -> Result<Self> {
        if id.is_empty() || id.len() > MAX_DEVICE_ID_LEN {
            return Err(Error::Malformed);
        }
        let mut bytes = [0u8; MAX_DEVICE_ID_LEN];
        bytes.get_mut(..id.len()).ok_or(Error::Malformed)?.copy_from_slice(id);
        Ok(Self { bytes, len: u8::try_from(id.len()).map_err(|_| Error::Malformed)? })
    }

    /// The id bytes.
    pub fn as_bytes(&self) -> &[u8] {
        self.bytes.get(..usize::from(self.len)).unwrap_or_default()
    }
}

impl core::fmt::Debug for DeviceId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("DeviceId(")?;
        for b in self.as_bytes() {
            write!(f, "{b:02x}")?;
        }
        f.write_str(")")
    }
}

#[cfg(feature = "defmt")]
impl defmt::Format for DeviceId {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(f, "DeviceId({=[u8]:x})", self.as_bytes())
    }
}

/// A signature as secure hardware returns it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceSignature {
    /// Raw `r ‖ s` (IEEE P1363), as the Secure Enclave's raw API and most
    /// secure elements return it.
    Raw([u8; P256_SIGNATURE_LEN]),
    /// ASN.1 DER `ECDSA-Sig-Value`, as Android Keystore and `SecKeyCreateSignature` return it.
    Der {
        /// Encoded bytes; only the first `len` are used.
        bytes: [u8; MAX_DER_SIGNATURE_LEN],
        /// Encoded length.
        len: u8,
    },
}

impl DeviceSignature {
    /// Wraps a signature of either encoding: 64 bytes are raw, anything
    /// else must be DER.
    ///
    /// # Errors
    /// [`Error::Authentication`] if it is neither 64 bytes nor at most 72.
    ///
    /// A DER signature is 64 bytes long only if `r` and `s` together take 58
    /// bytes (probability about 2^-24); such a signature is read as raw and
    /// fails to verify. Senders therefore send raw signatures.
    pub fn from_bytes(sig: &[u8]) -> Result<Self> {
        if sig.len() == P256_SIGNATURE_LEN { Self::from_raw(sig) } else { Self::from_der(sig) }
    }

    /// Wraps a raw `r ‖ s` signature.
    ///
    /// # Errors
    /// [`Error::Authentication`] unless it is exactly 64 bytes.
    pub fn from_raw(sig: &[u8]) -> Result<Self> {
        Ok(Self::Raw(sig.try_into().map_err(|_| Error::Authentication)?))
    }

    /// Wraps a DER signature (checked strictly when used).
    ///
    /// # Errors
    /// [`Error::Authentication`] if it is longer than 72 bytes.
    pub fn from_der(sig: &[u8]) -> Result<Self> {
        let mut bytes = [0u8; MAX_DER_SIGNATURE_LEN];
        bytes.get_mut(..sig.len()).ok_or(Error::Authentication)?.copy_from_slice(sig);
        Ok(Self::Der { bytes, len: u8::try_from(sig.len()).map_err(|_| Error::Authentication)? })
    }

    /// Converts to raw `r ‖ s` with `s` normalised to the lower half of the
    /// group order. DER must be strict DER; anything else fails.
    ///
    /// # Errors
    /// [`Error::Authentication`] for malformed encodings, zero or out-of-range values.
    pub fn to_raw_low_s(&self) -> Result<[u8; P256_SIGNATURE_LEN]> {
        let raw = match self {
            Self::Raw(r) => *r,
            Self::Der { bytes, len } => parse_der(bytes.get(..usize::from(*len)).ok_or(Error::Authentication)?)?,
        };
        normalize_s(raw)
    }
}

/// The P-256 group order n, big-endian.
const ORDER: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xbc, 0xe6, 0xfa,
    0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
];
/// floor(n / 2), big-endian.
const HALF_ORDER: [u8; 32] = [
    0x7f, 0xff, 0xff, 0xff, 0x80, 0x00, 0x00, 0x00, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xde, 0x73, 0x7d,
    0x56, 0xd3, 0x8b, 0xcf, 0x42, 0x79, 0xdc, 0xe5, 0x61, 0x7e, 0x31, 0x92, 0xa8,
];

/// Big-endian comparison of two 32-byte numbers.
fn cmp32(a: &[u8; 32], b: &[u8; 32]) -> core::cmp::Ordering {
    a.iter().cmp(b.iter())
}

/// `a - b` for big-endian 32-byte numbers with `a >= b`.
fn sub32(a: &[u8; 32], b: &[u8; 32]) -> [u8; 32] {
    let mut out = [0u8; 32];
    let mut borrow = 0u16;
    for ((o, x), y) in out.iter_mut().zip(a.iter()).zip(b.iter()).rev() {
        let d = u16::from(*x).wrapping_sub(u16::from(*y)).wrapping_sub(borrow);
        *o = d.to_le_bytes()[0];
        borrow = u16::from(d > 0xff);
    }
    out
}

/// Normalises `s` to low-S (`s ≤ n/2`) and checks `0 < r, s < n`.
///
/// # Errors
/// [`Error::Authentication`] if `r` or `s` is zero or not below the order.
pub fn normalize_s(sig: [u8; P256_SIGNATURE_LEN]) -> Result<[u8; P256_SIGNATURE_LEN]> {
    let (r, s) = sig.split_at(32);
    let r: [u8; 32] = r.try_into().map_err(|_| Error::Authentication)?;
    let s: [u8; 32] = s.try_into().map_err(|_| Error::Authentication)?;
    for v in [&r, &s] {
        if *v == [0u8; 32] || cmp32(v, &ORDER) != core::cmp::Ordering::Less {
            return Err(Error::Authentication);
        }
    }
    let s = if cmp32(&s, &HALF_ORDER) == core::cmp::Ordering::Greater { sub32(&ORDER, &s) } else { s };
    let mut out = [0u8; P256_SIGNATURE_LEN];
    let (ro, so) = out.split_at_mut(32);
    ro.copy_from_slice(&r);
    so.copy_from_slice(&s);
    Ok(out)
}

/// Reads one strict-DER INTEGER that fits 32 bytes unsigned; returns it and the rest.
fn der_integer(input: &[u8]) -> Result<([u8; 32], &[u8])> {
    let (&tag, rest) = input.split_first().ok_or(Error::Authentication)?;
    let (&len, rest) = rest.split_first().ok_or(Error::Authentication)?;
    // Short-form length only: an INTEGER here is at most 33 bytes.
    if tag != 0x02 || len == 0 || len > 33 {
        return Err(Error::Authentication);
    }
    let (body, rest) = rest.split_at_checked(usize::from(len)).ok_or(Error::Authentication)?;
    let (&first, tail) = body.split_first().ok_or(Error::Authentication)?;
    if first & 0x80 != 0 {
        return Err(Error::Authentication); // negative
    }
    let digits = if first == 0 {
        match tail.first() {
            // A leading zero is only allowed before a byte with the top bit set.
            Some(b) if b & 0x80 != 0 => tail,
            _ if tail.is_empty() => body,
            _ => return Err(Error::Authentication),
        }
    } else {
        body
    };
    if digits.len() > 32 {
        return Err(Error::Authentication);
    }
    let mut out = [0u8; 32];
    let start = 32usize.saturating_sub(digits.len());
    out.get_mut(start..).ok_or(Error::Authentication)?.copy_from_slice(digits);
    Ok((out, rest))
}

/// Parses a strict-DER `ECDSA-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER }`.
fn parse_der(der: &[u8]) -> Result<[u8; P256_SIGNATURE_LEN]> {
    let (&tag, rest) = der.split_first().ok_or(Error::Authentication)?;
    let (&len, rest) = rest.split_first().ok_or(Error::Authentication)?;
    // At most 70 content bytes, so the length is always short-form.
    if tag != 0x30 || len > 0x7f || usize::from(len) != rest.len() {
        return Err(Error::Authentication);
    }
    let (r, rest) = der_integer(rest)?;
    let (s, rest) = der_integer(rest)?;
    if !rest.is_empty() {
        return Err(Error::Authentication);
    }
    let mut out = [0u8; P256_SIGNATURE_LEN];
    let (ro, so) = out.split_at_mut(32);
    ro.copy_from_slice(&r);
    so.copy_from_slice(&s);
    Ok(out)
}

/// Secure hardware that holds a device's P-256 key and signs digests.
///
/// Implement it over the platform's key store:
/// - **Android**: a Keystore/StrongBox key with `PURPOSE_SIGN` and
///   `DIGEST_NONE`; pass the digest to `Signature("NONEwithECDSA")`; the
///   result is DER ([`DeviceSignature::Der`]).
/// - **iOS**: a Secure Enclave key; `SecKeyCreateSignature` with
///   `.ecdsaSignatureDigestX962SHA256`; DER.
/// - **Firmware**: a secure element on I2C (ATECC608, SE050, OPTIGA) signing
///   the digest in a key slot; usually raw `r ‖ s`.
///
/// Failures (user cancelled, key invalidated, bus error) return
/// [`Error::Signer`]; the handshake then fails and nothing is left behind.
pub trait DeviceSigner {
    /// The device's public key.
    ///
    /// # Errors
    /// [`Error::Signer`] if the hardware cannot be reached.
    fn public_key(&self) -> Result<PublicKey>;

    /// Signs a 32-byte SHA-256 digest with ECDSA P-256.
    ///
    /// # Errors
    /// [`Error::Signer`] if the hardware fails.
    fn sign_digest(&mut self, digest: &[u8; 32]) -> Result<DeviceSignature>;
}

impl<T: DeviceSigner + ?Sized> DeviceSigner for &mut T {
    fn public_key(&self) -> Result<PublicKey> {
        (**self).public_key()
    }
    fn sign_digest(&mut self, digest: &[u8; 32]) -> Result<DeviceSignature> {
        (**self).sign_digest(digest)
    }
}

/// A device key held in memory, for tests, servers and emulation.
///
/// # Security
/// The point of device binding is a key that cannot be copied. Use this only
/// where no secure hardware exists, and say so.
pub struct SoftwareSigner<P: CryptoProvider = RustCrypto> {
    key: P::SigningKey,
    public: PublicKey,
}

impl<P: CryptoProvider> core::fmt::Debug for SoftwareSigner<P> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SoftwareSigner").field("public", &self.public).finish_non_exhaustive()
    }
}

impl<P: CryptoProvider> SoftwareSigner<P> {
    /// Generates a new key.
    ///
    /// # Errors
    /// [`Error::Rng`] if the RNG fails.
    pub fn generate<R: TryCryptoRng + ?Sized>(rng: &mut R) -> Result<Self> {
        let key = P::signing_key_generate(rng)?;
        let public = P::signing_key_public(&key);
        Ok(Self { key, public })
    }

    /// Imports a private scalar.
    ///
    /// # Errors
    /// [`Error::InvalidKey`] if the scalar is zero or not below the order.
    pub fn from_bytes(secret: &Secret<32>) -> Result<Self> {
        let key = P::signing_key_from_bytes(secret)?;
        let public = P::signing_key_public(&key);
        Ok(Self { key, public })
    }
}

impl<P: CryptoProvider> DeviceSigner for SoftwareSigner<P> {
    fn public_key(&self) -> Result<PublicKey> {
        Ok(self.public)
    }
    fn sign_digest(&mut self, digest: &[u8; 32]) -> Result<DeviceSignature> {
        Ok(DeviceSignature::Raw(P::ecdsa_sign_prehash(&self.key, digest)?))
    }
}

/// Proof that a device signature verified. It has a private field; only this module's
/// verifiers can make one, so code that requires it cannot skip the check.
#[derive(Debug)]
pub struct DeviceVerified {
    device: DeviceId,
    _private: PhantomData<()>,
}

impl DeviceVerified {
    /// The device whose signature verified.
    pub const fn device(&self) -> &DeviceId {
        &self.device
    }
}

/// Verifies a wire signature over a digest: exactly 64 bytes of raw
/// `r ‖ s` with `0 < r < n` and `0 < s ≤ n/2` (`SPEC.md` §8.2). DER and
/// high-S forms are refused, so each signature has exactly one accepted
/// encoding.
///
/// # Errors
/// [`Error::Authentication`] if it is not in that form or does not verify,
/// [`Error::InvalidKey`] if `public` is not a valid point.
pub fn verify_signature<P: CryptoProvider>(public: &PublicKey, digest: &[u8; 32], sig: &[u8]) -> Result<()> {
    let raw: [u8; P256_SIGNATURE_LEN] = sig.try_into().map_err(|_| Error::Authentication)?;
    if normalize_s(raw)? != raw {
        return Err(Error::Authentication);
    }
    P::ecdsa_verify_prehash(public, digest, &raw)
}

/// Verifies `sig` by `device` over `digest` and mints the proof.
pub(crate) fn verify_device<P: CryptoProvider>(
    device: DeviceId,
    public: &PublicKey,
    digest: &[u8; 32],
    sig: &[u8],
) -> Result<DeviceVerified> {
    verify_signature::<P>(public, digest, sig)?;
    Ok(DeviceVerified { device, _private: PhantomData })
}

/// Where the server finds enrolled device keys.
pub trait DeviceKeys {
    /// The enrolled public key of `device`, if any.
    fn device_key(&self, device: &DeviceId) -> Option<PublicKey>;
}

impl<T: DeviceKeys + ?Sized> DeviceKeys for &T {
    fn device_key(&self, device: &DeviceId) -> Option<PublicKey> {
        (**self).device_key(device)
    }
}

/// A single enrolled device: the "caller-supplied key" form of [`DeviceKeys`].
impl DeviceKeys for (DeviceId, PublicKey) {
    fn device_key(&self, device: &DeviceId) -> Option<PublicKey> {
        (self.0 == *device).then_some(self.1)
    }
}

/// A fixed table of enrolled devices.
impl<const N: usize> DeviceKeys for [(DeviceId, PublicKey); N] {
    fn device_key(&self, device: &DeviceId) -> Option<PublicKey> {
        self.iter().find(|(id, _)| id == device).map(|(_, k)| *k)
    }
}

/// A server-issued enrollment challenge: 32 random bytes and an expiry.
///
/// It is neither `Clone` nor `Copy`, and [`Self::verify`] consumes it, so one
/// challenge verifies at most once.
#[derive(PartialEq, Eq)]
pub struct EnrollmentChallenge {
    nonce: [u8; 32],
    expires_at_ms: u64,
}

impl core::fmt::Debug for EnrollmentChallenge {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("EnrollmentChallenge").field("expires_at_ms", &self.expires_at_ms).finish_non_exhaustive()
    }
}

/// What a device sends to enroll.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EnrollmentRequest {
    /// The id the device enrolls under.
    pub device: DeviceId,
    /// Its public key.
    pub public_key: PublicKey,
    /// Its raw low-S signature over the enrollment digest.
    pub signature: [u8; P256_SIGNATURE_LEN],
}

/// A device whose enrollment verified: store it in your [`DeviceKeys`]
/// after [`EnrolledDevice::admit`] applied your re-enrollment policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EnrolledDevice {
    /// The device id.
    pub device: DeviceId,
    /// Its public key.
    pub public_key: PublicKey,
}

/// What to do when a device id that is already enrolled enrolls again.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ReEnrollment {
    /// Keep the enrolled key; a new key for the same id is refused with
    /// [`Error::AlreadyEnrolled`] (the same key again is accepted and
    /// changes nothing). The default: whoever learns a device id cannot
    /// take it over by enrolling a key of their own.
    #[default]
    Refuse,
    /// Replace the enrolled key (after a factory reset, say). Choose it only
    /// where enrollment itself is authorised out of band.
    Replace,
}

/// The outcome of [`EnrolledDevice::admit`]: what to write to the registry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Admission {
    /// A new device: store it.
    New,
    /// Already enrolled with this very key: nothing to store.
    Unchanged,
    /// Enrolled with another key, and the policy replaces it: store the new key.
    Replaced,
}

impl EnrolledDevice {
    /// Applies a re-enrollment policy given the key currently enrolled under
    /// this id, if any.
    ///
    /// # Errors
    /// [`Error::AlreadyEnrolled`] if another key is enrolled and `policy` is
    /// [`ReEnrollment::Refuse`].
    pub fn admit(&self, enrolled: Option<&PublicKey>, policy: ReEnrollment) -> Result<Admission> {
        match (enrolled, policy) {
            (None, _) => Ok(Admission::New),
            (Some(k), _) if *k == self.public_key => Ok(Admission::Unchanged),
            (Some(_), ReEnrollment::Refuse) => Err(Error::AlreadyEnrolled),
            (Some(_), ReEnrollment::Replace) => Ok(Admission::Replaced),
        }
    }
}

impl EnrollmentChallenge {
    /// Issues a fresh challenge valid for `ttl_ms`.
    ///
    /// # Errors
    /// [`Error::Rng`] if the RNG fails.
    pub fn issue<R: TryCryptoRng + ?Sized>(rng: &mut R, clock: &impl crate::clock::Clock, ttl_ms: u64) -> Result<Self> {
        let mut nonce = [0u8; 32];
        fill_random(rng, &mut nonce)?;
        Ok(Self { nonce, expires_at_ms: clock.now_ms().saturating_add(ttl_ms) })
    }

    /// The bytes to send to the device.
    pub const fn nonce(&self) -> &[u8; 32] {
        &self.nonce
    }

    /// Device side: signs the challenge of the server whose key is `server`
    /// (the key the app pins) with the hardware key, and converts the
    /// signature to the one wire form (raw, low-S).
    ///
    /// # Errors
    /// [`Error::Signer`] if the hardware fails, [`Error::Authentication`] if
    /// it returned a malformed signature.
    pub fn answer<P: CryptoProvider, S: DeviceSigner>(
        server: &PublicKey,
        challenge: &[u8; 32],
        device: DeviceId,
        signer: &mut S,
    ) -> Result<EnrollmentRequest> {
        let public_key = signer.public_key()?;
        let signature =
            signer.sign_digest(&crate::keyschedule::enrollment_digest::<P>(server, challenge, device.as_bytes(), &public_key))?.to_raw_low_s()?;
        Ok(EnrollmentRequest { device, public_key, signature })
    }

    /// Server side: checks the answer against this challenge and this
    /// server's key. Consumes the challenge, so it is single-use whatever
    /// the outcome.
    ///
    /// # Errors
    /// [`Error::Expired`] after the expiry, [`Error::Authentication`] if the
    /// signature does not verify (or names another server),
    /// [`Error::InvalidKey`] for a bad key.
    pub fn verify<P: CryptoProvider>(
        self,
        server: &PublicKey,
        request: &EnrollmentRequest,
        clock: &impl crate::clock::Clock,
    ) -> Result<EnrolledDevice> {
        if clock.now_ms() > self.expires_at_ms {
            return Err(Error::Expired);
        }
        let digest = crate::keyschedule::enrollment_digest::<P>(
            server,
            &self.nonce,
            request.device.as_bytes(),
            &request.public_key,
        );
        verify_signature::<P>(&request.public_key, &digest, &request.signature)?;
        Ok(EnrolledDevice { device: request.device, public_key: request.public_key })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_and_raw_agree_and_high_s_normalises() {
        let mut raw = [0u8; 64];
        raw[31] = 5;
        raw[32..].copy_from_slice(&ORDER);
        raw[63] -= 1; // s = n - 1: high
        let low = normalize_s(raw).unwrap();
        assert_eq!(&low[..32], &raw[..32]);
        let mut one = [0u8; 32];
        one[31] = 1;
        assert_eq!(&low[32..], &one);
        // DER of r = 5, s = 0x80 (needs a leading zero).
        let der = [0x30, 0x07, 0x02, 0x01, 0x05, 0x02, 0x02, 0x00, 0x80];
        let parsed = DeviceSignature::from_bytes(&der).unwrap().to_raw_low_s().unwrap();
        assert_eq!(parsed[31], 5);
        assert_eq!(parsed[63], 0x80);
        // Non-minimal integer, negative integer, trailing garbage, long form.
        for bad in [
            &[0x30, 0x07, 0x02, 0x02, 0x00, 0x05, 0x02, 0x01, 0x05][..],
            &[0x30, 0x06, 0x02, 0x01, 0x85, 0x02, 0x01, 0x05],
            &[0x30, 0x07, 0x02, 0x01, 0x05, 0x02, 0x01, 0x05, 0x00],
            &[0x30, 0x81, 0x06, 0x02, 0x01, 0x05, 0x02, 0x01, 0x05],
            &[0x30, 0x06, 0x02, 0x01, 0x00, 0x02, 0x01, 0x05],
        ] {
            assert!(DeviceSignature::from_bytes(bad).and_then(|s| s.to_raw_low_s()).is_err(), "{bad:02x?}");
        }
    }

    #[test]
    fn device_id_bounds() {
        assert!(DeviceId::new(&[]).is_err());
        assert!(DeviceId::new(&[1; 33]).is_err());
        assert_eq!(DeviceId::new(b"abc").unwrap().as_bytes(), b"abc");
    }
}
