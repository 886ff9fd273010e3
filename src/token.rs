//! Device-bound signed tokens (`SPEC.md` §13).
//!
//! A token is compact binary: postcard [`Claims`] followed by a raw ES256
//! (ECDSA P-256, SHA-256) signature by the issuer over
//! `SHA-256("oncewire/1 token" ‖ claims bytes)`. There is no algorithm
//! field, so there is nothing to confuse: ES256 is the only algorithm.
//!
//! Verification checks, in this order: the exact length split (trailing
//! bytes rejected), the signature, then `aud`, `exp` and `nbf` with leeway.
//! Claims are only looked at once the signature verified.
//!
//! **Key binding.** `cnf` is the SHA-256 thumbprint of the device's public
//! key. A request that uses the token must carry a [`TokenProof`]: an `iat`,
//! a random 128-bit `jti`, and the device's signature over
//! `SHA-256("oncewire/1 token proof" ‖ SHA-256(token) ‖ SHA-256(request) ‖
//! iat ‖ jti)`, as DPoP proofs carry `iat` and `jti`.
//! [`TokenVerifier::verify_bound`] checks that the key that made the proof
//! is the one named in `cnf`, that `iat` is fresh, and that the proof was
//! never accepted before (a [`ReplayCache`]). A stolen token without the
//! device key is worthless, and a captured (token, proof, request) is
//! accepted once.
//!
//! [`TokenVerifier::verify_bound_unrecorded`] runs the same checks without
//! recording, and returns the [`Once`] for a store shared by several servers
//! to accept (`SPEC.md` §15.1).

use crate::cache::{Once, Purpose, ReplayCache};
use crate::clock::Clock;
use crate::device::verify_signature;
use crate::error::{Error, Expiry, Result};
use crate::keyschedule::{id_of, proof_digest, request_hash, thumbprint, token_digest};
use crate::provider::{CryptoProvider, P256_SIGNATURE_LEN, PublicKey};
use core::marker::PhantomData;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

/// The claims of a token. Times are Unix milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims<'a> {
    /// Issuer.
    #[serde(borrow)]
    pub iss: &'a str,
    /// Subject: the device id.
    #[serde(borrow)]
    pub sub: &'a [u8],
    /// Audience: the service that must accept it.
    #[serde(borrow)]
    pub aud: &'a str,
    /// Issued at.
    pub iat: u64,
    /// Not before.
    pub nbf: u64,
    /// Expiry.
    pub exp: u64,
    /// Token id.
    #[serde(borrow)]
    pub jti: &'a [u8],
    /// Confirmation: the thumbprint of the device key ([`TokenIssuer::cnf`]).
    pub cnf: [u8; 32],
}

/// Longest token a verifier accepts (and an issuer makes): 512 bytes.
pub const MAX_TOKEN_LEN: usize = 512;

/// Length of a proof's unique id.
pub const PROOF_JTI_LEN: usize = 16;
/// Length of an encoded [`TokenProof`]: `iat (8) ‖ jti (16) ‖ signature (64)`.
pub const PROOF_LEN: usize = 8 + PROOF_JTI_LEN + P256_SIGNATURE_LEN;

/// A proof of possession for one use of a token: when it was made, a unique
/// id, and the device's raw low-S signature.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenProof {
    /// When the device made the proof, Unix ms (its clock, corrected by the
    /// session's offset where it has one).
    pub iat: u64,
    /// 128 random bits.
    pub jti: [u8; PROOF_JTI_LEN],
    /// Raw low-S signature over the proof digest (`SPEC.md` §13).
    pub signature: [u8; P256_SIGNATURE_LEN],
}

impl TokenProof {
    /// The wire form: `iat (u64 BE) ‖ jti ‖ signature`.
    pub fn to_bytes(&self) -> [u8; PROOF_LEN] {
        let mut out = [0u8; PROOF_LEN];
        let (iat, rest) = out.split_at_mut(8);
        let (jti, sig) = rest.split_at_mut(PROOF_JTI_LEN);
        iat.copy_from_slice(&self.iat.to_be_bytes());
        jti.copy_from_slice(&self.jti);
        sig.copy_from_slice(&self.signature);
        out
    }

    /// Parses the wire form, exactly [`PROOF_LEN`] bytes.
    ///
    /// # Errors
    /// [`Error::Truncated`] or [`Error::TrailingBytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        crate::wire::exact_len(bytes, PROOF_LEN)?;
        let (iat, rest) = bytes.split_first_chunk::<8>().ok_or(Error::Truncated)?;
        let (jti, sig) = rest.split_first_chunk::<PROOF_JTI_LEN>().ok_or(Error::Truncated)?;
        Ok(Self { iat: u64::from_be_bytes(*iat), jti: *jti, signature: sig.try_into().map_err(|_| Error::Truncated)? })
    }
}

/// Issues tokens with the server's ES256 key.
pub struct TokenIssuer<P: CryptoProvider = crate::provider::DefaultProvider> {
    key: P::SigningKey,
    public: PublicKey,
}

impl<P: CryptoProvider> core::fmt::Debug for TokenIssuer<P> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("TokenIssuer").field("public", &self.public).finish_non_exhaustive()
    }
}

impl<P: CryptoProvider> TokenIssuer<P> {
    /// An issuer with a new signing key from `rng`.
    ///
    /// # Errors
    /// [`Error::Rng`].
    pub fn generate<R: rand_core::TryCryptoRng + ?Sized>(rng: &mut R) -> Result<Self> {
        Ok(Self::new(P::signing_key_generate(rng)?))
    }

    /// An issuer with the signing key whose private scalar is `secret`
    /// (persist it as a secret, like the server's static key).
    ///
    /// # Errors
    /// [`Error::InvalidKey`].
    pub fn from_bytes(secret: &crate::secret::Secret<32>) -> Result<Self> {
        Ok(Self::new(P::signing_key_from_bytes(secret)?))
    }

    /// Wraps the issuer's signing key.
    pub fn new(key: P::SigningKey) -> Self {
        let public = P::signing_key_public(&key);
        Self { key, public }
    }

    /// The key verifiers pin.
    pub const fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// The `cnf` claim that binds a token to `device_key`:
    /// `SHA-256("oncewire/1 cnf" ‖ uncompressed key)` (`SPEC.md` §13).
    pub fn cnf(&self, device_key: &PublicKey) -> [u8; 32] {
        thumbprint::<P>(device_key)
    }

    /// Writes `claims ‖ signature` into `out` and returns its length (at
    /// most [`MAX_TOKEN_LEN`]).
    ///
    /// # Errors
    /// [`Error::BufferTooSmall`], [`Error::PayloadTooLarge`] if the token
    /// would exceed [`MAX_TOKEN_LEN`], [`Error::Signer`].
    pub fn issue(&self, claims: &Claims<'_>, out: &mut [u8]) -> Result<usize> {
        let n = postcard::to_slice(claims, out).map_err(|_| Error::BufferTooSmall)?.len();
        if n.saturating_add(P256_SIGNATURE_LEN) > MAX_TOKEN_LEN {
            return Err(Error::PayloadTooLarge);
        }
        let (body, rest) = out.split_at_mut(n);
        let sig = P::ecdsa_sign_prehash(&self.key, &token_digest::<P>(body))?;
        rest.get_mut(..P256_SIGNATURE_LEN).ok_or(Error::BufferTooSmall)?.copy_from_slice(&sig);
        n.checked_add(P256_SIGNATURE_LEN).ok_or(Error::BufferTooSmall)
    }
}

/// Claims whose signature, audience and validity period verified. Only
/// [`TokenVerifier`] can make one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifiedToken<'a> {
    claims: Claims<'a>,
    key_bound: bool,
}

impl<'a> VerifiedToken<'a> {
    /// The verified claims.
    pub const fn claims(&self) -> &Claims<'a> {
        &self.claims
    }

    /// True if the request's proof of possession also verified
    /// ([`TokenVerifier::verify_bound`]).
    pub const fn key_bound(&self) -> bool {
        self.key_bound
    }
}

/// Verifies tokens from one issuer for one audience.
#[derive(Debug, Clone, Copy)]
pub struct TokenVerifier<'a, P: CryptoProvider = crate::provider::DefaultProvider> {
    issuer: PublicKey,
    audience: &'a str,
    leeway_ms: u64,
    _p: PhantomData<P>,
}

impl<'a, P: CryptoProvider> TokenVerifier<'a, P> {
    /// A verifier pinned to `issuer`, accepting `audience`, with a clock
    /// leeway for `exp`, `nbf` and `iat`.
    pub const fn new(issuer: PublicKey, audience: &'a str, leeway_ms: u64) -> Self {
        Self { issuer, audience, leeway_ms, _p: PhantomData }
    }

    /// Verifies signature, audience and validity period.
    ///
    /// # Errors
    /// [`Error::Decode`], [`Error::Truncated`] / [`Error::TrailingBytes`]
    /// (the bytes after the claims are not exactly one signature),
    /// [`Error::Authentication`], [`Error::WrongAudience`],
    /// [`Error::Expired`], [`Error::NotYetValid`].
    pub fn verify<'t>(&self, token: &'t [u8], clock: &impl Clock) -> Result<VerifiedToken<'t>> {
        self.verify_at(token, clock.now_ms())
    }

    fn verify_at<'t>(&self, token: &'t [u8], now_ms: u64) -> Result<VerifiedToken<'t>> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(Error::PayloadTooLarge);
        }
        let (claims, sig) = postcard::take_from_bytes::<Claims<'t>>(token).map_err(|_| Error::Decode)?;
        crate::wire::exact_len(sig, P256_SIGNATURE_LEN)?;
        let body = token.get(..token.len().saturating_sub(P256_SIGNATURE_LEN)).ok_or(Error::Truncated)?;
        verify_signature::<P>(&self.issuer, &token_digest::<P>(body), sig)?;
        if claims.aud.as_bytes() != self.audience.as_bytes() {
            return Err(Error::WrongAudience);
        }
        if now_ms > claims.exp.saturating_add(self.leeway_ms) {
            return Err(Error::Expired(Expiry::Token));
        }
        if claims.nbf > now_ms.saturating_add(self.leeway_ms) || claims.iat > now_ms.saturating_add(self.leeway_ms) {
            return Err(Error::NotYetValid);
        }
        Ok(VerifiedToken { claims, key_bound: false })
    }

    /// Verifies the token as [`Self::verify`] does, then one use of it: the
    /// proof must be made by the key named in `cnf`, over this token and the
    /// exact `request` bytes, with a fresh `iat`, and must never have been
    /// accepted before. Only then is it recorded in `cache`.
    ///
    /// Checks, in order: the proof's length (`Truncated`, `TrailingBytes`),
    /// before any cryptography; the token; `cnf` (`KeyMismatch`); `iat` freshness and the
    /// cache (`Stale`, `FromFuture`, `Replay`); the proof's signature
    /// (`Authentication`). A rejected proof changes nothing but the audit
    /// counters.
    ///
    /// # Errors
    /// Those of [`Self::verify`], the ones above, and [`Error::Misuse`] if
    /// `cache` is not a [`Purpose::TokenProofs`] cache.
    pub fn verify_bound<'t, const N: usize>(
        &self,
        cache: &mut ReplayCache<P, N>,
        clock: &impl Clock,
        token: &'t [u8],
        device_key: &PublicKey,
        request: &[u8],
        proof: &[u8],
    ) -> Result<VerifiedToken<'t>> {
        let now = clock.now_ms();
        let r = TokenProof::from_bytes(proof)
            .and_then(|proof| self.check_use(cache, now, token, device_key, &request_hash::<P>(request), &proof));
        match r {
            // Checked against this cache at this `now` under `&mut`: the accept cannot fail.
            Ok((v, once)) => cache.accept(&once, now).map(|()| v),
            Err(e) => Err(cache.refuse(e)),
        }
    }

    /// Every check of [`Self::verify_bound`], in the same order, without
    /// recording anything: returns the verified token and the [`Once`] to
    /// record (`Purpose::TokenProofs`, the id `digest[0..12]` and the proof's
    /// `iat`, `SPEC.md` §13) in the store that decides acceptance
    /// (`SPEC.md` §15.1). The use must not be acted on unless the store
    /// accepts it.
    ///
    /// `cache` pre-checks freshness and replay (it may be an empty cache of
    /// [`Purpose::TokenProofs`] when a shared store records); nothing is
    /// counted, so the store counts its rejections ([`ReplayCache::refuse`]).
    ///
    /// # Errors
    /// Those of [`Self::verify_bound`].
    pub fn verify_bound_unrecorded<'t, const N: usize>(
        &self,
        cache: &ReplayCache<P, N>,
        clock: &impl Clock,
        token: &'t [u8],
        device_key: &PublicKey,
        request: &[u8],
        proof: &[u8],
    ) -> Result<(VerifiedToken<'t>, Once)> {
        let proof = TokenProof::from_bytes(proof)?;
        self.check_use(cache, clock.now_ms(), token, device_key, &request_hash::<P>(request), &proof)
    }

    /// Every check of [`Self::verify_bound`], against a request hash and
    /// one reading of the clock, without recording anything. Pure.
    pub(crate) fn check_use<'t, const N: usize>(
        &self,
        cache: &ReplayCache<P, N>,
        now: u64,
        token: &'t [u8],
        device_key: &PublicKey,
        request_hash: &[u8; 32],
        proof: &TokenProof,
    ) -> Result<(VerifiedToken<'t>, Once)> {
        let mut v = self.verify_at(token, now)?;
        if !bool::from(thumbprint::<P>(device_key).ct_eq(&v.claims.cnf)) {
            return Err(Error::KeyMismatch);
        }
        let digest = proof_digest::<P>(token, request_hash, proof.iat, &proof.jti);
        let once = Once { purpose: Purpose::TokenProofs, id: id_of(&digest), timestamp_ms: proof.iat };
        cache.check_once(&once, now)?;
        verify_signature::<P>(device_key, &digest, &proof.signature)?;
        v.key_bound = true;
        Ok((v, once))
    }
}
