//! Enrollment (`SPEC.md` §8.3): a device proves possession of its key by
//! signing a server challenge that names the server.

use super::{DeviceId, verify_signature};
use crate::cache::Once;
use crate::challenge::{Challenge, StatelessChallenges};
use crate::clock::Clock;
use crate::error::{Error, Expiry, Result};
use crate::provider::{CryptoProvider, P256_PUBLIC_LEN, P256_SIGNATURE_LEN, PublicKey, fill_random};
use core::marker::PhantomData;
use rand_core::TryCryptoRng;
use serde::{Deserialize, Serialize};
/// Longest encoded [`EnrollmentRequest`]: postcard
/// `{device_id: bytes (1..32), public_key: bytes (65), signature: bytes (64)}`.
pub const MAX_ENROLLMENT_REQUEST_LEN: usize =
    1 + super::MAX_DEVICE_ID_LEN + 1 + P256_PUBLIC_LEN + 1 + P256_SIGNATURE_LEN;

/// The wire form of an enrollment request (`SPEC.md` §8.3).
#[derive(Serialize, Deserialize)]
struct RequestWire<'a> {
    device_id: &'a [u8],
    public_key: &'a [u8],
    signature: &'a [u8],
}

/// A server-issued enrollment challenge: 32 random bytes and an expiry.
///
/// It is neither `Clone` nor `Copy`, and [`Self::verify`] consumes it, so one
/// challenge verifies at most once.
#[derive(PartialEq, Eq)]
pub struct EnrollmentChallenge<P: CryptoProvider = crate::provider::DefaultProvider> {
    nonce: [u8; 32],
    expires_at_ms: u64,
    _p: PhantomData<P>,
}

impl<P: CryptoProvider> core::fmt::Debug for EnrollmentChallenge<P> {
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

impl EnrollmentRequest {
    /// Encodes the request for the wire: postcard
    /// `{device_id, public_key, signature}`, all byte strings (`SPEC.md` §8.3).
    /// Returns the length written; [`MAX_ENROLLMENT_REQUEST_LEN`] always fits.
    ///
    /// # Errors
    /// [`Error::BufferTooSmall`].
    pub fn to_bytes(&self, out: &mut [u8]) -> Result<usize> {
        let wire = RequestWire {
            device_id: self.device.as_bytes(),
            public_key: self.public_key.as_bytes(),
            signature: &self.signature,
        };
        Ok(postcard::to_slice(&wire, out).map_err(|_| Error::BufferTooSmall)?.len())
    }

    /// Decodes a request from the wire, exactly, in its one canonical
    /// encoding (minimal length varints).
    ///
    /// # Errors
    /// [`Error::Decode`] (also for a non-minimal encoding), [`Error::TrailingBytes`], [`Error::Malformed`] (a
    /// device id of 0 or more than 32 bytes), [`Error::InvalidKey`] (not a
    /// 65-byte uncompressed key), [`Error::Authentication`] (a signature that
    /// is not 64 bytes: not the one wire form).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let wire: RequestWire<'_> = crate::wire::decode_exact(bytes)?;
        let request = Self {
            device: DeviceId::new(wire.device_id)?,
            public_key: PublicKey::from_sec1_uncompressed(wire.public_key)?,
            signature: wire.signature.try_into().map_err(|_| Error::Authentication)?,
        };
        // One accepted encoding: a non-minimal length varint is refused.
        let mut canonical = [0u8; MAX_ENROLLMENT_REQUEST_LEN];
        let n = request.to_bytes(&mut canonical)?;
        if canonical.get(..n) != Some(bytes) {
            return Err(Error::Decode);
        }
        Ok(request)
    }
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

impl<P: CryptoProvider> EnrollmentChallenge<P> {
    /// Issues a fresh challenge valid for `ttl_ms`.
    ///
    /// # Errors
    /// [`Error::Rng`] if the RNG fails.
    pub fn issue<R: TryCryptoRng + ?Sized>(rng: &mut R, clock: &impl crate::clock::Clock, ttl_ms: u64) -> Result<Self> {
        let mut nonce = [0u8; 32];
        fill_random(rng, &mut nonce)?;
        Ok(Self { nonce, expires_at_ms: clock.now_ms().saturating_add(ttl_ms), _p: PhantomData })
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
    pub fn verify(
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

/// A stateless issuer of enrollment challenges, over a
/// [`StatelessChallenges`] of its own (`SPEC.md` §8.3): a challenge is the
/// 40-byte MAC-tagged [`Challenge`] of `SPEC.md` §12, so a server parks no
/// challenge in a map between the two enrollment messages, and the used set
/// makes each challenge verify once. Restarts, snapshots and the MAC key are
/// those of the inner issuer ([`Self::challenges`]): the key and the used set
/// go together. Give enrollment its own issuer (its own MAC key), apart from
/// the one that binds requests.
///
/// ```
/// use oncewire::challenge::StatelessChallenges;
/// use oncewire::clock::ManualClock;
/// use oncewire::device::{DeviceId, EnrollmentIssuer, SoftwareSigner};
/// use oncewire::prover::Prover;
/// use oncewire::rng::OsRng;
/// use oncewire::{Error, ServerKey};
///
/// let clock = ManualClock::new(1_767_225_600_000);
/// let server: ServerKey = ServerKey::generate(&mut OsRng)?;
/// let mut issuer: EnrollmentIssuer = EnrollmentIssuer::new(StatelessChallenges::generate(&mut OsRng, 60_000)?);
/// let challenge = issuer.issue(&mut OsRng, &clock)?;
/// let signer: SoftwareSigner = SoftwareSigner::generate(&mut OsRng)?;
/// let device = DeviceId::new(b"lock-0042")?;
/// let answer = Prover::new(signer).answer_enrollment(server.public_key(), challenge.as_bytes(), device)?;
/// let enrolled = issuer.verify(server.public_key(), &challenge, &answer, &clock)?;
/// assert_eq!(enrolled.device, device);
/// // The same answer again: the challenge was used.
/// assert_eq!(issuer.verify(server.public_key(), &challenge, &answer, &clock).unwrap_err(), Error::Replay);
/// # Ok::<(), oncewire::Error>(())
/// ```
#[derive(Debug)]
pub struct EnrollmentIssuer<P: CryptoProvider = crate::provider::DefaultProvider, const N: usize = 1024> {
    challenges: StatelessChallenges<P, N>,
}

impl<P: CryptoProvider, const N: usize> EnrollmentIssuer<P, N> {
    /// An issuer over `challenges` (used for enrollment only).
    pub const fn new(challenges: StatelessChallenges<P, N>) -> Self {
        Self { challenges }
    }

    /// An issuer over a new [`StatelessChallenges`] whose keys come from
    /// `rng` and die with it (nothing it issued verifies after a restart).
    ///
    /// # Errors
    /// [`Error::Rng`].
    pub fn generate<R: TryCryptoRng + ?Sized>(rng: &mut R, ttl_ms: u64) -> Result<Self> {
        Ok(Self::new(StatelessChallenges::generate(rng, ttl_ms)?))
    }

    /// The inner issuer: its used set, snapshots and audit counters.
    pub const fn challenges(&self) -> &StatelessChallenges<P, N> {
        &self.challenges
    }

    /// Issues a challenge expiring after the issuer's lifetime. Keeps no state.
    ///
    /// # Errors
    /// [`Error::Rng`].
    pub fn issue<R: TryCryptoRng + ?Sized>(&self, rng: &mut R, clock: &impl Clock) -> Result<Challenge> {
        self.challenges.issue(rng, clock)
    }

    /// Verifies an enrollment answer to `challenge` for the server whose
    /// static key is `server`, and marks the challenge used. Checks, in
    /// order: the tag (`Authentication`), the expiry and the used set's
    /// floor (`Expired(Enrollment)`), the used set (`Replay`), the device's
    /// signature (`Authentication`). Only an answer that passes all of them
    /// uses the challenge. Apply your re-enrollment policy to the result
    /// with [`EnrolledDevice::admit`].
    ///
    /// # Errors
    /// Those above, and [`Error::InvalidKey`].
    pub fn verify(
        &mut self,
        server: &PublicKey,
        challenge: &Challenge,
        request: &EnrollmentRequest,
        clock: &impl Clock,
    ) -> Result<EnrolledDevice> {
        let now = clock.now_ms();
        match self.verify_at(server, challenge, request, now) {
            Ok((device, _)) => {
                self.challenges.commit(challenge, now);
                Ok(device)
            }
            Err(e) => Err(self.challenges.reject(e)),
        }
    }

    /// Every check of [`Self::verify`], in its order, without recording:
    /// returns the enrolled device and the [`Once`] that marks its
    /// challenge used (`Purpose::Challenges`, `SPEC.md` §15.1), for the
    /// store that decides acceptance (a fleet shares it). Do not admit the
    /// device unless the store accepted the `Once`; map a store's
    /// `Expired(Challenge)` to `Expired(Enrollment)`. Counts nothing.
    ///
    /// # Errors
    /// Those of [`Self::verify`].
    pub fn verify_unrecorded(
        &self,
        server: &PublicKey,
        challenge: &Challenge,
        request: &EnrollmentRequest,
        clock: &impl Clock,
    ) -> Result<(EnrolledDevice, Once)> {
        self.verify_at(server, challenge, request, clock.now_ms())
    }

    fn verify_at(
        &self,
        server: &PublicKey,
        challenge: &Challenge,
        request: &EnrollmentRequest,
        now: u64,
    ) -> Result<(EnrolledDevice, Once)> {
        self.challenges.check(challenge, now).map_err(|e| match e {
            Error::Expired(_) => Error::Expired(Expiry::Enrollment),
            e => e,
        })?;
        let digest = crate::keyschedule::enrollment_digest::<P>(
            server,
            challenge.as_bytes(),
            request.device.as_bytes(),
            &request.public_key,
        );
        verify_signature::<P>(&request.public_key, &digest, &request.signature)?;
        Ok((EnrolledDevice { device: request.device, public_key: request.public_key }, challenge.once()))
    }
}
