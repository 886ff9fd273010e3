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
//! Where a store shared by several servers decides acceptance,
//! [`BoundRequest::verify_unrecorded`] checks every part against [`Checks`]
//! (no `&mut`) and returns the [`Onces`] the store must accept together, all
//! or none (`SPEC.md` §15.1).
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

use crate::cache::{Once, ReplayCache};
use crate::challenge::{BINDING_LEN, Challenge, StatelessChallenges};
use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::keyschedule::request_hash;
use crate::provider::{CryptoProvider, PublicKey};
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
pub struct Requirements<
    'r,
    'v,
    P: CryptoProvider = crate::provider::DefaultProvider,
    const C: usize = 1024,
    const T: usize = 1024,
> {
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

/// What a bound request is checked against when a store shared by several
/// servers records (`SPEC.md` §15.1): as [`Requirements`], with no `&mut`
/// anywhere. The used set and the proof cache only pre-check (they may be
/// empty); the store records the [`Onces`].
pub struct Checks<
    'r,
    'v,
    P: CryptoProvider = crate::provider::DefaultProvider,
    const C: usize = 1024,
    const T: usize = 1024,
> {
    /// The challenge issuer whose challenge the request must answer.
    pub challenges: Option<&'r StatelessChallenges<P, C>>,
    /// The token verifier, a proof cache of
    /// [`Purpose::TokenProofs`](crate::cache::Purpose::TokenProofs), and the
    /// token the request presents.
    pub token: Option<(&'r TokenVerifier<'v, P>, &'r ReplayCache<P, T>, &'r [u8])>,
}

impl<'r, 'v, P: CryptoProvider, const C: usize> Checks<'r, 'v, P, C> {
    /// Requires an answer to a challenge of `challenges`, and no token.
    pub const fn challenge(challenges: &'r StatelessChallenges<P, C>) -> Self {
        Self { challenges: Some(challenges), token: None }
    }
}

impl<'r, 'v, P: CryptoProvider, const T: usize> Checks<'r, 'v, P, 1024, T> {
    /// Requires a use of `token`, pre-checked with `verifier` and `cache`, and no challenge.
    pub const fn token(verifier: &'r TokenVerifier<'v, P>, cache: &'r ReplayCache<P, T>, token: &'r [u8]) -> Self {
        Self { challenges: None, token: Some((verifier, cache, token)) }
    }
}

impl<P: CryptoProvider, const C: usize, const T: usize> Clone for Checks<'_, '_, P, C, T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<P: CryptoProvider, const C: usize, const T: usize> Copy for Checks<'_, '_, P, C, T> {}

impl<P: CryptoProvider, const C: usize, const T: usize> core::fmt::Debug for Checks<'_, '_, P, C, T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Checks")
            .field("challenge", &self.challenges.is_some())
            .field("token", &self.token.is_some())
            .finish()
    }
}

/// The uses a verified bound request must record, all or none (`SPEC.md`
/// §15.1): a part that was not required is `None`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Onces {
    /// The challenge to mark used ([`Purpose::Challenges`](crate::cache::Purpose::Challenges)).
    pub challenge: Option<Once>,
    /// The token proof to record ([`Purpose::TokenProofs`](crate::cache::Purpose::TokenProofs)).
    pub proof: Option<Once>,
}

impl Onces {
    /// Every use to record: the challenge, then the proof.
    pub fn iter(&self) -> impl Iterator<Item = &Once> {
        self.challenge.iter().chain(self.proof.iter())
    }
}

/// Which part of a bound request failed: its audit counts the rejection.
#[derive(Clone, Copy)]
enum Part {
    /// A part missing or not required: counted nowhere.
    Shape,
    Challenge,
    Proof,
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
    /// [`TokenVerifier::verify_bound`], each counted in the audit of the part
    /// that failed. On error nothing is recorded.
    pub fn verify<'t, P: CryptoProvider, const C: usize, const T: usize>(
        &self,
        need: Requirements<'t, '_, P, C, T>,
        clock: &impl Clock,
        request: &[u8],
        device_key: &PublicKey,
    ) -> Result<Option<VerifiedToken<'t>>> {
        let Requirements { challenges, token } = need;
        let now = clock.now_ms();
        let shared = token.as_ref().map(|(verifier, cache, token)| (*verifier, &**cache, *token));
        match self.check_parts(challenges.as_deref(), shared, now, request, device_key) {
            Ok((verified, onces)) => {
                // Every part passed, checked at this `now` under `&mut`:
                // record them all (neither accept can fail).
                if let (Some(c), Some(once)) = (challenges, &onces.challenge) {
                    c.accept(once, now)?;
                }
                if let (Some((_, cache, _)), Some(once)) = (token, &onces.proof) {
                    cache.accept(once, now)?;
                }
                Ok(verified)
            }
            Err((Part::Shape, e)) => Err(e),
            Err((Part::Challenge, e)) => Err(challenges.map_or(e, |c| c.reject(e))),
            Err((Part::Proof, e)) => Err(token.map_or(e, |(_, cache, _)| cache.refuse(e))),
        }
    }

    /// Every check of [`Self::verify`], in the same order, without recording
    /// or counting anything: returns the verified token (if one was
    /// required) and the [`Onces`] to record. The store that decides
    /// acceptance must accept all of them atomically or none (`SPEC.md`
    /// §15.1), and the request must not be acted on unless it did.
    ///
    /// # Errors
    /// Those of [`Self::verify`]. On error there is no [`Once`] to record.
    pub fn verify_unrecorded<'t, P: CryptoProvider, const C: usize, const T: usize>(
        &self,
        need: Checks<'t, '_, P, C, T>,
        clock: &impl Clock,
        request: &[u8],
        device_key: &PublicKey,
    ) -> Result<(Option<VerifiedToken<'t>>, Onces)> {
        self.check_parts(need.challenges, need.token, clock.now_ms(), request, device_key).map_err(|(_, e)| e)
    }

    /// The checks of [`Self::verify`] at `now`, pure; an error says which
    /// part failed.
    #[allow(clippy::type_complexity)]
    fn check_parts<'t, P: CryptoProvider, const C: usize, const T: usize>(
        &self,
        challenges: Option<&StatelessChallenges<P, C>>,
        token: Option<(&TokenVerifier<'_, P>, &ReplayCache<P, T>, &'t [u8])>,
        now: u64,
        request: &[u8],
        device_key: &PublicKey,
    ) -> core::result::Result<(Option<VerifiedToken<'t>>, Onces), (Part, Error)> {
        if challenges.is_some() != self.binding.is_some() || token.is_some() != self.proof.is_some() {
            return Err((Part::Shape, Error::Malformed));
        }
        let hash = request_hash::<P>(request);
        let challenge = match (challenges, &self.binding) {
            (Some(c), Some(b)) => Some(c.check_binding(b, &hash, now).map_err(|e| (Part::Challenge, e))?),
            _ => None,
        };
        let (verified, proof) = match (token, &self.proof) {
            (Some((verifier, cache, token)), Some(proof)) => {
                let (v, once) =
                    verifier.check_use(cache, now, token, device_key, &hash, proof).map_err(|e| (Part::Proof, e))?;
                (Some(v), Some(once))
            }
            _ => (None, None),
        };
        Ok((verified, Onces { challenge, proof }))
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
