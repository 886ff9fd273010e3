//! Enrollment (`SPEC.md` §8.3): a device proves possession of its key by
//! signing a server challenge that names the server.

use super::{DeviceId, verify_signature};
use crate::error::{Error, Expiry, Result};
use crate::provider::{CryptoProvider, P256_SIGNATURE_LEN, PublicKey, fill_random};
use rand_core::TryCryptoRng;

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

/// A device whose enrollment verified: store it in your [`super::DeviceKeys`]
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

    // The device side is `crate::prover::Prover::answer_enrollment`.

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
            return Err(Error::Expired(Expiry::Enrollment));
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
