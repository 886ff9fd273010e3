//! The device side of everything outside the handshake (`SPEC.md` §8.3,
//! §12, §13): answering an enrollment challenge, binding a request to a
//! server challenge, proving possession of the key a token is bound to.
//!
//! A [`Prover`] wraps the device's [`DeviceSigner`] (the key in secure
//! hardware) and carries the provider as a type parameter with the default,
//! so device code never names it:
//!
//! ```
//! use oncewire::challenge::{BINDING_LEN, StatelessChallenges};
//! use oncewire::clock::ManualClock;
//! use oncewire::device::SoftwareSigner;
//! use oncewire::prover::Prover;
//! use oncewire::rng::OsRng;
//! use oncewire::Secret;
//!
//! let clock = ManualClock::new(1_767_225_600_000);
//! // The server issues a challenge...
//! let mut server: StatelessChallenges = StatelessChallenges::new(Secret::new([7; 32]), 30_000, [1; 16]);
//! let challenge = server.issue(&mut OsRng, &clock)?;
//! // ...the device binds its request to it...
//! let signer: SoftwareSigner = SoftwareSigner::generate(&mut OsRng)?;
//! let prover = Prover::new(signer);
//! let binding: [u8; BINDING_LEN] = prover.bind(&challenge, b"POST /pay 10 EUR");
//! // ...and the server accepts that exact request, once.
//! server.verify_bound(&clock, &binding, b"POST /pay 10 EUR")?;
//! assert!(server.verify_bound(&clock, &binding, b"POST /pay 10 EUR").is_err());
//! # Ok::<(), oncewire::Error>(())
//! ```

use crate::challenge::{BINDING_LEN, Challenge, binding};
use crate::clock::Clock;
use crate::device::{DeviceId, DeviceSigner, EnrollmentRequest};
use crate::error::Result;
use crate::keyschedule::{enrollment_digest, proof_digest, request_hash};
use crate::provider::{CryptoProvider, PublicKey, fill_random};
use crate::token::{PROOF_JTI_LEN, TokenProof};
use core::marker::PhantomData;
use rand_core::TryCryptoRng;

/// The device's prover: its signer, and the provider that hashes.
pub struct Prover<S: DeviceSigner, P: CryptoProvider = crate::provider::DefaultProvider> {
    signer: S,
    _p: PhantomData<P>,
}

impl<S: DeviceSigner, P: CryptoProvider> core::fmt::Debug for Prover<S, P> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Prover").finish_non_exhaustive()
    }
}

impl<S: DeviceSigner> Prover<S> {
    /// A prover over `signer` with the default provider. (`&mut signer`
    /// works too: `DeviceSigner` is implemented for `&mut S`.)
    pub const fn new(signer: S) -> Self {
        Self { signer, _p: PhantomData }
    }
}

impl<S: DeviceSigner, P: CryptoProvider> Prover<S, P> {
    /// A prover over `signer` with another provider.
    pub const fn with_provider(signer: S) -> Self {
        Self { signer, _p: PhantomData }
    }

    /// The signer (to run the handshake with it).
    pub fn signer(&mut self) -> &mut S {
        &mut self.signer
    }

    /// Gives the signer back.
    pub fn into_signer(self) -> S {
        self.signer
    }

    /// Answers the enrollment challenge of the server whose static key is
    /// `server` (the key the app pins): signs the digest of `SPEC.md` §8.3,
    /// in the one wire form (raw, low-S).
    ///
    /// # Errors
    /// [`crate::Error::Signer`] if the hardware fails or returns something
    /// that is not a signature.
    pub fn answer_enrollment(
        &mut self,
        server: &PublicKey,
        challenge: &[u8],
        device: DeviceId,
    ) -> Result<EnrollmentRequest> {
        let public_key = self.signer.public_key()?;
        let digest = enrollment_digest::<P>(server, challenge, device.as_bytes(), &public_key);
        let signature = self.signer.sign_digest(&digest)?.to_raw_low_s()?;
        Ok(EnrollmentRequest { device, public_key, signature })
    }

    /// Binds `challenge` to the exact `request` bytes:
    /// `challenge ‖ SHA-256(request)` (`SPEC.md` §12). Send the binding with
    /// the request, usually inside a sealed record.
    pub fn bind(&self, challenge: &Challenge, request: &[u8]) -> [u8; BINDING_LEN] {
        binding(challenge, &request_hash::<P>(request))
    }

    /// A fresh proof of possession for using `token` on the exact `request`
    /// bytes, stamped with `clock` and a random `jti` (`SPEC.md` §13). Make
    /// a new proof for every use, a retry included: the server accepts each
    /// proof once. In a session, stamp with
    /// [`crate::Session::server_clock`].
    ///
    /// # Errors
    /// [`crate::Error::Rng`], [`crate::Error::Signer`].
    pub fn prove<R: TryCryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        clock: &impl Clock,
        token: &[u8],
        request: &[u8],
    ) -> Result<TokenProof> {
        self.prove_hash(rng, clock, token, &request_hash::<P>(request))
    }

    /// [`Self::prove`] over a request hash computed once.
    pub(crate) fn prove_hash<R: TryCryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        clock: &impl Clock,
        token: &[u8],
        request_hash: &[u8; 32],
    ) -> Result<TokenProof> {
        let mut jti = [0u8; PROOF_JTI_LEN];
        fill_random(rng, &mut jti)?;
        let iat = clock.now_ms();
        let digest = proof_digest::<P>(token, request_hash, iat, &jti);
        let signature = self.signer.sign_digest(&digest)?.to_raw_low_s()?;
        Ok(TokenProof { iat, jti, signature })
    }
}
