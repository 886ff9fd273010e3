//! Enrollment (`SPEC.md` §8.3): a device proves possession of its key by
//! signing a server challenge that names the server.

use super::{DeviceId, verify_signature};
use crate::audit::Audit;
use crate::clock::Clock;
use crate::error::{Error, Expiry, Result};
use crate::keyschedule::{challenge_mac, labels};
use crate::provider::{CryptoProvider, P256_PUBLIC_LEN, P256_SIGNATURE_LEN, PublicKey, RustCrypto, fill_random};
use crate::replay::snapshot::{Kind, SnapshotKey};
use crate::replay::{Freshness, NonceRing, TimeFloor};
use crate::secret::Secret;
use core::marker::PhantomData;
use rand_core::TryCryptoRng;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

/// Length of an enrollment challenge on the wire.
pub const ENROLLMENT_CHALLENGE_LEN: usize = 32;
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
pub struct EnrollmentChallenge<P: CryptoProvider = RustCrypto> {
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

    /// Decodes a request from the wire, exactly.
    ///
    /// # Errors
    /// [`Error::Decode`], [`Error::TrailingBytes`], [`Error::Malformed`] (a
    /// device id of 0 or more than 32 bytes), [`Error::InvalidKey`] (not a
    /// 65-byte uncompressed key), [`Error::Authentication`] (a signature that
    /// is not 64 bytes: not the one wire form).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let wire: RequestWire<'_> = crate::replay::snapshot::decode_exact(bytes)?;
        Ok(Self {
            device: DeviceId::new(wire.device_id)?,
            public_key: PublicKey::from_sec1_uncompressed(wire.public_key)?,
            signature: wire.signature.try_into().map_err(|_| Error::Authentication)?,
        })
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

/// A stateless issuer of enrollment challenges: a challenge is
/// `expiry (u64 BE) ‖ random (8) ‖ tag (16)` with
/// `tag = HMAC-SHA256(K, "oncewire/1 enrollment challenge" ‖ expiry ‖ random)[..16]`
/// (`SPEC.md` §8.3), so a server parks no challenge in a map between the
/// two enrollment messages: it keeps only a bounded *used* set, with the
/// floor policy of `SPEC.md` §4.3, so each challenge verifies once. Its
/// restarts follow `SPEC.md` §12: the MAC key and the used set go together.
///
/// ```
/// use oncewire::clock::ManualClock;
/// use oncewire::device::{DeviceId, EnrollmentIssuer, SoftwareSigner};
/// use oncewire::prover::Prover;
/// use oncewire::rng::OsRng;
/// use oncewire::{Error, PublicKey, Secret, ServerKey};
///
/// let clock = ManualClock::new(1_767_225_600_000);
/// let server: ServerKey = ServerKey::generate(&mut OsRng)?;
/// let mut issuer: EnrollmentIssuer = EnrollmentIssuer::new(Secret::new([3; 32]), 60_000, [4; 16]);
/// let challenge = issuer.issue(&mut OsRng, &clock)?;
/// let signer: SoftwareSigner = SoftwareSigner::generate(&mut OsRng)?;
/// let device = DeviceId::new(b"lock-0042")?;
/// let answer = Prover::new(signer).answer_enrollment(server.public_key(), &challenge, device)?;
/// let enrolled = issuer.verify(server.public_key(), &challenge, &answer, &clock)?;
/// assert_eq!(enrolled.device, device);
/// // The same answer again: the challenge was used.
/// assert_eq!(issuer.verify(server.public_key(), &challenge, &answer, &clock).unwrap_err(), Error::Replay);
/// # Ok::<(), oncewire::Error>(())
/// ```
pub struct EnrollmentIssuer<P: CryptoProvider = RustCrypto, const N: usize = 1024> {
    mac_key: Secret<32>,
    ttl_ms: u64,
    used: NonceRing<N>,
    snapshot_key: SnapshotKey<P>,
    audit: Audit,
    _p: PhantomData<P>,
}

impl<P: CryptoProvider, const N: usize> core::fmt::Debug for EnrollmentIssuer<P, N> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("EnrollmentIssuer")
            .field("ttl_ms", &self.ttl_ms)
            .field("used", &self.used.len())
            .finish_non_exhaustive()
    }
}

impl<P: CryptoProvider, const N: usize> EnrollmentIssuer<P, N> {
    /// An issuer with a secret MAC key, a challenge lifetime, and a secret
    /// hash key for the used set.
    pub fn new(mac_key: Secret<32>, ttl_ms: u64, hash_key: [u8; 16]) -> Self {
        let snapshot_key = SnapshotKey::derive(mac_key.expose());
        let used = NonceRing::new(Self::freshness(ttl_ms), hash_key);
        Self { mac_key, ttl_ms, used, snapshot_key, audit: Audit::new(), _p: PhantomData }
    }

    /// An issuer with keys drawn from `rng` (they die with it: nothing it
    /// issued verifies after a restart).
    ///
    /// # Errors
    /// [`Error::Rng`].
    pub fn generate<R: TryCryptoRng + ?Sized>(rng: &mut R, ttl_ms: u64) -> Result<Self> {
        let mut mac = Secret::<32>::zero();
        let mut hash_key = [0u8; 16];
        fill_random(rng, mac.expose_mut())?;
        fill_random(rng, &mut hash_key)?;
        Ok(Self::new(mac, ttl_ms, hash_key))
    }

    /// The used set's freshness window: an entry's timestamp is its expiry.
    pub const fn freshness(ttl_ms: u64) -> Freshness {
        Freshness { max_age_ms: 0, max_future_skew_ms: ttl_ms }
    }

    /// An issuer whose MAC key survived a restart without a snapshot:
    /// challenges expiring at or below `floor` are refused (`SPEC.md` §12).
    pub fn after_restart(mac_key: Secret<32>, ttl_ms: u64, hash_key: [u8; 16], floor: TimeFloor) -> Self {
        let mut s = Self::new(mac_key, ttl_ms, hash_key);
        s.used = s.used.with_floor(floor);
        s
    }

    /// Writes an authenticated snapshot of the used set (`SPEC.md` §4.4).
    ///
    /// # Errors
    /// [`Error::Encode`] if `out` is too small.
    pub fn snapshot(&self, epoch: u64, out: &mut [u8]) -> Result<usize> {
        self.used.snapshot_as(Kind::Enrollments, &self.snapshot_key, &[], epoch, out)
    }

    /// An issuer with its used set restored from a snapshot.
    ///
    /// # Errors
    /// [`Error::Truncated`], [`Error::Authentication`], [`Error::Rollback`],
    /// [`Error::Decode`], [`Error::TrailingBytes`].
    pub fn restore(
        mac_key: Secret<32>,
        ttl_ms: u64,
        hash_key: [u8; 16],
        snapshot: &[u8],
        trusted_epoch: u64,
    ) -> Result<Self> {
        let mut s = Self::new(mac_key, ttl_ms, hash_key);
        s.used = NonceRing::restore_as(
            Kind::Enrollments,
            snapshot,
            &s.snapshot_key,
            &[],
            trusted_epoch,
            Self::freshness(ttl_ms),
            hash_key,
        )?;
        Ok(s)
    }

    fn tag(&self, signed: &[u8]) -> [u8; 32] {
        challenge_mac::<P>(&self.mac_key, labels::ENROLLMENT_CHALLENGE, signed)
    }

    /// Issues a challenge expiring `ttl_ms` from now. Keeps no state.
    ///
    /// # Errors
    /// [`Error::Rng`].
    pub fn issue<R: TryCryptoRng + ?Sized>(
        &self,
        rng: &mut R,
        clock: &impl Clock,
    ) -> Result<[u8; ENROLLMENT_CHALLENGE_LEN]> {
        let mut c = [0u8; ENROLLMENT_CHALLENGE_LEN];
        let (signed, tag) = c.split_at_mut(16);
        let (expiry, random) = signed.split_at_mut(8);
        expiry.copy_from_slice(&clock.now_ms().saturating_add(self.ttl_ms).to_be_bytes());
        fill_random(rng, random)?;
        let mac = self.tag(signed);
        tag.copy_from_slice(mac.get(..16).ok_or(Error::Misuse)?);
        Ok(c)
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
        challenge: &[u8; ENROLLMENT_CHALLENGE_LEN],
        request: &EnrollmentRequest,
        clock: &impl Clock,
    ) -> Result<EnrolledDevice> {
        let now = clock.now_ms();
        let r = self.check(server, challenge, request, now);
        match r {
            Ok((id, expiry, device)) => {
                if self.used.commit(&id, expiry, now) == Some(crate::replay::Commit::EvictedFresh) {
                    self.audit.pressure();
                }
                self.audit.accept();
                Ok(device)
            }
            Err(e) => {
                if e == Error::Replay {
                    self.audit.challenge_reused();
                } else {
                    self.audit.record(e);
                }
                Err(e)
            }
        }
    }

    fn check(
        &self,
        server: &PublicKey,
        challenge: &[u8; ENROLLMENT_CHALLENGE_LEN],
        request: &EnrollmentRequest,
        now: u64,
    ) -> Result<([u8; 12], u64, EnrolledDevice)> {
        let (signed, tag) = challenge.split_at(16);
        let (expiry, random) = signed.split_at(8);
        if !bool::from(self.tag(signed).get(..16).unwrap_or_default().ct_eq(tag)) {
            return Err(Error::Authentication);
        }
        let expiry = u64::from_be_bytes(expiry.try_into().map_err(|_| Error::Truncated)?);
        let mut id = [0u8; 12];
        let (head, rest) = id.split_at_mut(8);
        head.copy_from_slice(random);
        rest.copy_from_slice(tag.get(..4).unwrap_or_default());
        match self.used.check(&id, expiry, now) {
            Ok(()) => {}
            Err(Error::Replay) => return Err(Error::Replay),
            Err(_) => return Err(Error::Expired(Expiry::Enrollment)),
        }
        let digest = crate::keyschedule::enrollment_digest::<P>(
            server,
            challenge,
            request.device.as_bytes(),
            &request.public_key,
        );
        verify_signature::<P>(&request.public_key, &digest, &request.signature)?;
        Ok((id, expiry, EnrolledDevice { device: request.device, public_key: request.public_key }))
    }

    /// Audit counters.
    pub const fn audit(&self) -> &Audit {
        &self.audit
    }
}
