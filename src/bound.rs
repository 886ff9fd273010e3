//! A request bound to a server challenge and a token use through one hash
//! of its exact bytes (`SPEC.md` §12, §13).
//!
//! High-value requests carry proof that they are fresh and come from the
//! genuine device: an answer to a server challenge (`challenge ‖
//! SHA-256(request)`), a proof of possession for a token (over
//! `SHA-256(request)` too), or both. [`BoundRequest`] carries them; a
//! [`Prover`](crate::prover::Prover) makes one in one call, and
//! [`BoundRequest::verify`] checks one in one call. The server checks every
//! part before it records any: a request whose token proof fails does not
//! use up its challenge, and the other way round.
//!
//! ```
//! use oncewire::bound::{BoundRequest, Requirements};
//! use oncewire::cache::{Purpose, ReplayCache};
//! use oncewire::challenge::StatelessChallenges;
//! use oncewire::clock::ManualClock;
//! use oncewire::device::{DeviceSigner, SoftwareSigner};
//! use oncewire::prover::Prover;
//! use oncewire::replay::Freshness;
//! use oncewire::rng::OsRng;
//! use oncewire::token::{Claims, TokenIssuer, TokenVerifier};
//! use oncewire::{Error, Secret};
//!
//! let clock = ManualClock::new(1_767_225_600_000);
//! let now = 1_767_225_600_000;
//! // Server: a challenge issuer, a token issuer and verifier, a proof cache.
//! let mut challenges: StatelessChallenges = StatelessChallenges::generate(&mut OsRng, 30_000)?;
//! let issuer: TokenIssuer = TokenIssuer::generate(&mut OsRng)?;
//! let verifier: TokenVerifier = TokenVerifier::new(*issuer.public_key(), "api", 0);
//! let mut proofs: ReplayCache = ReplayCache::generate(Purpose::TokenProofs, &mut OsRng, Freshness::DEFAULT)?;
//! // The device, its token, and a challenge.
//! let signer: SoftwareSigner = SoftwareSigner::generate(&mut OsRng)?;
//! let device_key = signer.public_key()?;
//! let claims = Claims { iss: "auth", sub: b"phone", aud: "api", iat: now, nbf: now, exp: now + 60_000, jti: &[1; 16], cnf: issuer.cnf(&device_key) };
//! let mut buf = [0u8; oncewire::token::MAX_TOKEN_LEN];
//! let n = issuer.issue(&claims, &mut buf)?;
//! let token = &buf[..n];
//! let challenge = challenges.issue(&mut OsRng, &clock)?;
//!
//! // Device: one call binds the request to both.
//! let request = b"POST /pay 10 EUR to bob";
//! let mut prover = Prover::new(signer);
//! let bound = prover.bound_request(&mut OsRng, &clock, request, Some(&challenge), Some(token))?;
//! let mut out = [0u8; oncewire::bound::MAX_BOUND_LEN];
//! let n = bound.to_bytes(&mut out)?;
//! let wire = &out[..n];
//!
//! // Server: one call checks both, then records both.
//! let got = BoundRequest::from_bytes(wire)?;
//! let need = Requirements { challenges: Some(&mut challenges), token: Some((&verifier, &mut proofs, token)) };
//! assert!(got.verify(need, &clock, request, &device_key)?.is_some());
//! // The same request again is refused.
//! let need = Requirements { challenges: Some(&mut challenges), token: Some((&verifier, &mut proofs, token)) };
//! assert!(got.verify(need, &clock, request, &device_key).is_err());
//! # Ok::<(), oncewire::Error>(())
//! ```

use crate::cache::ReplayCache;
use crate::challenge::{BINDING_LEN, Challenge, StatelessChallenges};
use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::keyschedule::request_hash;
use crate::provider::{CryptoProvider, PublicKey, RustCrypto};
use crate::token::{PROOF_LEN, TokenProof, TokenVerifier, VerifiedToken};

/// Longest encoded [`BoundRequest`]: flags, a binding and a proof.
pub const MAX_BOUND_LEN: usize = 1 + BINDING_LEN + PROOF_LEN;

const HAS_BINDING: u8 = 0x01;
const HAS_PROOF: u8 = 0x02;

/// What binds a request: an answer to a challenge, a token proof, or both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BoundRequest {
    /// `challenge ‖ SHA-256(request)`.
    pub binding: Option<[u8; BINDING_LEN]>,
    /// The proof of possession for the token used with the request.
    pub proof: Option<TokenProof>,
}

/// What the server requires of a bound request, and what it checks it with.
/// A part that is `None` must be absent from the request, and a part that
/// is required must be present (`Error::Malformed` otherwise).
pub struct Requirements<'r, 'v, P: CryptoProvider = RustCrypto, const C: usize = 1024, const T: usize = 1024> {
    /// The challenge issuer whose challenge the request must answer.
    pub challenges: Option<&'r mut StatelessChallenges<P, C>>,
    /// The token verifier, its proof cache, and the token the request presents.
    pub token: Option<(&'r TokenVerifier<'v, P>, &'r mut ReplayCache<P, T>, &'r [u8])>,
}

impl<'r, 'v, P: CryptoProvider, const C: usize> Requirements<'r, 'v, P, C> {
    /// Requires an answer to a challenge of `challenges`, and no token.
    pub fn challenge(challenges: &'r mut StatelessChallenges<P, C>) -> Self {
        Self { challenges: Some(challenges), token: None }
    }
}

impl<'r, 'v, P: CryptoProvider, const T: usize> Requirements<'r, 'v, P, 1024, T> {
    /// Requires a use of `token`, checked with `verifier` and `cache`, and no challenge.
    pub fn token(verifier: &'r TokenVerifier<'v, P>, cache: &'r mut ReplayCache<P, T>, token: &'r [u8]) -> Self {
        Self { challenges: None, token: Some((verifier, cache, token)) }
    }
}

impl core::fmt::Debug for Requirements<'_, '_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Requirements")
            .field("challenge", &self.challenges.is_some())
            .field("token", &self.token.is_some())
            .finish()
    }
}

impl BoundRequest {
    /// Encodes it: `flags (1) ‖ [binding (72)] ‖ [proof (88)]`, bit 0 a
    /// binding, bit 1 a proof. Returns the length (at most [`MAX_BOUND_LEN`]).
    ///
    /// # Errors
    /// [`Error::BufferTooSmall`].
    pub fn to_bytes(&self, out: &mut [u8]) -> Result<usize> {
        let mut n = 1usize;
        let mut flags = 0u8;
        if let Some(b) = &self.binding {
            out.get_mut(n..n.saturating_add(BINDING_LEN)).ok_or(Error::BufferTooSmall)?.copy_from_slice(b);
            n = n.saturating_add(BINDING_LEN);
            flags |= HAS_BINDING;
        }
        if let Some(p) = &self.proof {
            out.get_mut(n..n.saturating_add(PROOF_LEN)).ok_or(Error::BufferTooSmall)?.copy_from_slice(&p.to_bytes());
            n = n.saturating_add(PROOF_LEN);
            flags |= HAS_PROOF;
        }
        *out.first_mut().ok_or(Error::BufferTooSmall)? = flags;
        Ok(n)
    }

    /// Decodes it, exactly.
    ///
    /// # Errors
    /// [`Error::Truncated`], [`Error::TrailingBytes`], [`Error::Malformed`]
    /// (unknown flags).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let (&flags, mut rest) = bytes.split_first().ok_or(Error::Truncated)?;
        if flags & !(HAS_BINDING | HAS_PROOF) != 0 {
            return Err(Error::Malformed);
        }
        let mut want = 0usize;
        if flags & HAS_BINDING != 0 {
            want = want.saturating_add(BINDING_LEN);
        }
        if flags & HAS_PROOF != 0 {
            want = want.saturating_add(PROOF_LEN);
        }
        crate::wire::exact_len(rest, want)?;
        let mut binding = None;
        if flags & HAS_BINDING != 0 {
            let (b, r) = rest.split_first_chunk::<BINDING_LEN>().ok_or(Error::Truncated)?;
            binding = Some(*b);
            rest = r;
        }
        let proof = if flags & HAS_PROOF != 0 { Some(TokenProof::from_bytes(rest)?) } else { None };
        Ok(Self { binding, proof })
    }

    /// Checks the request against `need`: the challenge answer (if
    /// required), then the token use (if required), all over one hash of the
    /// exact `request` bytes; and only when every part passed, records the
    /// challenge as used and the proof as accepted. Returns the verified
    /// token, if one was required.
    ///
    /// # Errors
    /// [`Error::Malformed`] (a part missing, or present but not required),
    /// and those of [`StatelessChallenges::verify_bound`] and
    /// [`TokenVerifier::verify_bound`]. On error nothing is recorded.
    pub fn verify<'t, P: CryptoProvider, const C: usize, const T: usize>(
        &self,
        need: Requirements<'t, '_, P, C, T>,
        clock: &impl Clock,
        request: &[u8],
        device_key: &PublicKey,
    ) -> Result<Option<VerifiedToken<'t>>> {
        let Requirements { mut challenges, token } = need;
        if challenges.is_some() != self.binding.is_some() || token.is_some() != self.proof.is_some() {
            return Err(Error::Malformed);
        }
        let now = clock.now_ms();
        let hash = request_hash::<P>(request);
        let checked_challenge = match (challenges.as_deref_mut(), &self.binding) {
            (Some(c), Some(b)) => match c.check_binding(b, &hash, now) {
                Ok(ch) => Some(ch),
                Err(e) => return Err(c.reject(e)),
            },
            _ => None,
        };
        let (verified, checked_use) = match (token, &self.proof) {
            (Some((verifier, cache, token)), Some(proof)) => {
                match verifier.check_use(cache, clock, token, device_key, &hash, proof) {
                    Ok(u) => (Some(u.token), Some((cache, u.id, u.iat))),
                    Err(e) => return Err(cache.reject(e)),
                }
            }
            _ => (None, None),
        };
        // Every part passed: record them all.
        if let (Some(c), Some(ch)) = (challenges, checked_challenge) {
            c.commit(&ch, now);
        }
        if let Some((cache, id, iat)) = checked_use {
            cache.commit(&id, iat, now);
        }
        Ok(verified)
    }
}

impl<S: crate::device::DeviceSigner, P: CryptoProvider> crate::prover::Prover<S, P> {
    /// Binds `request` to `challenge` and/or makes a proof for using `token`
    /// on it, hashing the request once (`SPEC.md` §12, §13).
    ///
    /// # Errors
    /// [`Error::Rng`], [`Error::Signer`].
    pub fn bound_request<R: rand_core::TryCryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        clock: &impl Clock,
        request: &[u8],
        challenge: Option<&Challenge>,
        token: Option<&[u8]>,
    ) -> Result<BoundRequest> {
        let hash = request_hash::<P>(request);
        let binding = challenge.map(|c| crate::challenge::binding(c, &hash));
        let proof = match token {
            Some(t) => Some(self.prove_hash(rng, clock, t, &hash)?),
            None => None,
        };
        Ok(BoundRequest { binding, proof })
    }
}
