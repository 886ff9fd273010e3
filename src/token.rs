//! Device-bound signed tokens (DESIGN C9, `SPEC.md` §13).
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
//! key. A request that uses the token must carry a proof: the device's
//! signature over `SHA-256("oncewire/1 token proof" ‖ SHA-256(token) ‖
//! request hash)`. [`TokenVerifier::verify_bound`] checks that the key that
//! made the proof is the one named in `cnf`. A stolen token without the
//! device key is worthless.

use crate::device::{DeviceSignature, DeviceSigner, verify_signature};
use crate::error::{Error, Result};
use crate::provider::{CryptoProvider, P256_SIGNATURE_LEN, PublicKey, RustCrypto};
use core::marker::PhantomData;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

/// Domain label of the issuer's signature.
pub const TOKEN_LABEL: &[u8] = b"oncewire/1 token";
/// Domain label of the device's proof of possession.
pub const PROOF_LABEL: &[u8] = b"oncewire/1 token proof";
/// Domain label of the key thumbprint.
pub const CNF_LABEL: &[u8] = b"oncewire/1 cnf";

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
    /// Confirmation: [`thumbprint`] of the device key.
    pub cnf: [u8; 32],
}

/// `SHA-256("oncewire/1 cnf" ‖ uncompressed public key)`.
pub fn thumbprint<P: CryptoProvider>(public: &PublicKey) -> [u8; 32] {
    P::sha256(&[CNF_LABEL, public.as_bytes()])
}

fn token_digest<P: CryptoProvider>(claims: &[u8]) -> [u8; 32] {
    P::sha256(&[TOKEN_LABEL, claims])
}

fn proof_digest<P: CryptoProvider>(token: &[u8], request_hash: &[u8; 32]) -> [u8; 32] {
    let token_hash = P::sha256(&[token]);
    P::sha256(&[PROOF_LABEL, &token_hash, request_hash])
}

/// Issues tokens with the server's ES256 key.
pub struct TokenIssuer<P: CryptoProvider = RustCrypto> {
    key: P::SigningKey,
    public: PublicKey,
}

impl<P: CryptoProvider> core::fmt::Debug for TokenIssuer<P> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("TokenIssuer").field("public", &self.public).finish_non_exhaustive()
    }
}

impl<P: CryptoProvider> TokenIssuer<P> {
    /// Wraps the issuer's signing key.
    pub fn new(key: P::SigningKey) -> Self {
        let public = P::signing_key_public(&key);
        Self { key, public }
    }

    /// The key verifiers pin.
    pub const fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// Writes `claims ‖ signature` into `out` and returns its length.
    ///
    /// # Errors
    /// [`Error::BufferTooSmall`], [`Error::Signer`].
    pub fn issue(&self, claims: &Claims<'_>, out: &mut [u8]) -> Result<usize> {
        let n = postcard::to_slice(claims, out).map_err(|_| Error::BufferTooSmall)?.len();
        let (body, rest) = out.split_at_mut(n);
        let sig = P::ecdsa_sign_prehash(&self.key, &token_digest::<P>(body))?;
        rest.get_mut(..P256_SIGNATURE_LEN).ok_or(Error::BufferTooSmall)?.copy_from_slice(&sig);
        n.checked_add(P256_SIGNATURE_LEN).ok_or(Error::BufferTooSmall)
    }
}

/// Device side: the proof of possession for using `token` on a request
/// whose SHA-256 is `request_hash`.
///
/// # Errors
/// [`Error::Signer`] if the hardware fails.
pub fn prove<P: CryptoProvider, S: DeviceSigner>(
    signer: &mut S,
    token: &[u8],
    request_hash: &[u8; 32],
) -> Result<[u8; P256_SIGNATURE_LEN]> {
    signer.sign_digest(&proof_digest::<P>(token, request_hash))?.to_raw_low_s()
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
pub struct TokenVerifier<'a, P: CryptoProvider = RustCrypto> {
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
    pub fn verify<'t>(&self, token: &'t [u8], now_ms: u64) -> Result<VerifiedToken<'t>> {
        let (claims, sig) = postcard::take_from_bytes::<Claims<'t>>(token).map_err(|_| Error::Decode)?;
        match sig.len().cmp(&P256_SIGNATURE_LEN) {
            core::cmp::Ordering::Less => return Err(Error::Truncated),
            core::cmp::Ordering::Greater => return Err(Error::TrailingBytes),
            core::cmp::Ordering::Equal => {}
        }
        let body = token.get(..token.len().saturating_sub(P256_SIGNATURE_LEN)).ok_or(Error::Truncated)?;
        verify_signature::<P>(&self.issuer, &token_digest::<P>(body), &DeviceSignature::from_raw(sig)?)?;
        if claims.aud.as_bytes() != self.audience.as_bytes() {
            return Err(Error::WrongAudience);
        }
        if now_ms > claims.exp.saturating_add(self.leeway_ms) {
            return Err(Error::Expired);
        }
        if claims.nbf > now_ms.saturating_add(self.leeway_ms) || claims.iat > now_ms.saturating_add(self.leeway_ms) {
            return Err(Error::NotYetValid);
        }
        Ok(VerifiedToken { claims, key_bound: false })
    }

    /// Verifies the token as [`Self::verify`] does, then the key binding:
    /// `device_key` must be the key named in `cnf`, and `proof` its
    /// signature over this token and `request_hash`.
    ///
    /// # Errors
    /// Those of [`Self::verify`], [`Error::KeyMismatch`] (the token names
    /// another key), [`Error::Authentication`] (the proof does not verify).
    pub fn verify_bound<'t>(
        &self,
        token: &'t [u8],
        now_ms: u64,
        device_key: &PublicKey,
        request_hash: &[u8; 32],
        proof: &[u8],
    ) -> Result<VerifiedToken<'t>> {
        let mut v = self.verify(token, now_ms)?;
        if !bool::from(thumbprint::<P>(device_key).ct_eq(&v.claims.cnf)) {
            return Err(Error::KeyMismatch);
        }
        verify_signature::<P>(
            device_key,
            &proof_digest::<P>(token, request_hash),
            &DeviceSignature::from_bytes(proof)?,
        )?;
        v.key_bound = true;
        Ok(v)
    }
}
