//! Device binding (`SPEC.md` §8).
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
use crate::provider::{CryptoProvider, P256_SIGNATURE_LEN, PublicKey};
use crate::secret::Secret;
use core::marker::PhantomData;
use rand_core::TryCryptoRng;

mod enrollment;
mod id;
mod signature;

pub use enrollment::{
    Admission, EnrolledDevice, EnrollmentChallenge, EnrollmentIssuer, EnrollmentRequest, MAX_ENROLLMENT_REQUEST_LEN,
    ReEnrollment,
};
pub use id::{DeviceId, MAX_DEVICE_ID_LEN};
pub(crate) use signature::normalize_s;
pub use signature::{DeviceSignature, MAX_DER_SIGNATURE_LEN};

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
pub struct SoftwareSigner<P: CryptoProvider = crate::provider::DefaultProvider> {
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

/// Verifies wire signatures over digests: exactly 64 bytes of raw
/// `r ‖ s` with `0 < r < n` and `0 < s ≤ n/2` (`SPEC.md` §8.2). DER and
/// high-S forms are refused, so each signature has exactly one accepted
/// encoding.
///
/// # Errors
/// [`Error::Authentication`] if it is not in that form or does not verify,
/// [`Error::InvalidKey`] if `public` is not a valid point.
pub struct SignatureVerifier<P: CryptoProvider = crate::provider::DefaultProvider>(PhantomData<P>);

impl<P: CryptoProvider> core::fmt::Debug for SignatureVerifier<P> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("SignatureVerifier")
    }
}

impl<P: CryptoProvider> Default for SignatureVerifier<P> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<P: CryptoProvider> SignatureVerifier<P> {
    /// A verifier for the provider `P` (the default: `let v: SignatureVerifier = SignatureVerifier::new();`).
    pub const fn new() -> Self {
        Self(PhantomData)
    }

    /// Verifies `sig` by `public` over `digest` in the one wire form.
    ///
    /// # Errors
    /// [`Error::Authentication`] if it is not in that form or does not verify,
    /// [`Error::InvalidKey`] if `public` is not a valid point.
    pub fn verify(&self, public: &PublicKey, digest: &[u8; 32], sig: &[u8]) -> Result<()> {
        verify_signature::<P>(public, digest, sig)
    }
}

/// The one verifier behind [`SignatureVerifier`].
pub(crate) fn verify_signature<P: CryptoProvider>(public: &PublicKey, digest: &[u8; 32], sig: &[u8]) -> Result<()> {
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

/// Enrolled devices in a `HashMap` (feature `std`).
#[cfg(feature = "std")]
impl<S: core::hash::BuildHasher> DeviceKeys for std::collections::HashMap<DeviceId, PublicKey, S> {
    fn device_key(&self, device: &DeviceId) -> Option<PublicKey> {
        self.get(device).copied()
    }
}

/// Enrolled devices in a `BTreeMap` (feature `std`).
#[cfg(feature = "std")]
impl DeviceKeys for std::collections::BTreeMap<DeviceId, PublicKey> {
    fn device_key(&self, device: &DeviceId) -> Option<PublicKey> {
        self.get(device).copied()
    }
}

/// A fixed table of enrolled devices.
impl<const N: usize> DeviceKeys for [(DeviceId, PublicKey); N] {
    fn device_key(&self, device: &DeviceId) -> Option<PublicKey> {
        self.iter().find(|(id, _)| id == device).map(|(_, k)| *k)
    }
}
