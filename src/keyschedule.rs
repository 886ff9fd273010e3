//! The key schedule: every protocol label and every derivation
//! (`SPEC.md` §7.4, §8, §11.3, §12, §13, §4.4).
//!
//! The handshake derives the session secrets here, the session derives its
//! traffic keys and key updates here, and every signed or MACed digest is
//! built here, so each `"oncewire/1 …"` label has one home. The labels are
//! public, in [`labels`], for implementers in other languages; the
//! derivations are internal.

use crate::error::Result;
use crate::provider::{CryptoProvider, PublicKey};
use crate::secret::Secret;
use crate::wire::{KEY_ID_LEN, NONCE_LEN};

/// Every label of protocol v1, byte for byte. Each is used exactly where
/// the `SPEC.md` section in its documentation says.
pub mod labels {
    /// The Noise protocol name hashed into the initial state (§7.2).
    pub const PROTOCOL_NAME: &[u8] = b"Noise_NK_P256_AESGCM_SHA256";
    /// The Noise prologue (§7.2).
    pub const PROLOGUE: &[u8] = b"oncewire/1";
    /// Client-to-server traffic secret: `Expand(ck, label ‖ H, 32)` (§7.4).
    pub const C2S: &[u8] = b"oncewire/1 c2s";
    /// Server-to-client traffic secret (§7.4).
    pub const S2C: &[u8] = b"oncewire/1 s2c";
    /// Session id: `Expand(ck, label ‖ H, 8)` (§7.4).
    pub const SESSION_ID: &[u8] = b"oncewire/1 session id";
    /// A direction's AEAD key: `Expand(secret, label, 32)` (§7.4).
    pub const KEY: &[u8] = b"oncewire/1 key";
    /// A direction's IV: `Expand(secret, label, 12)` (§7.4).
    pub const IV: &[u8] = b"oncewire/1 iv";
    /// The next traffic secret at a key update (§7.4, §9.3).
    pub const KEY_UPDATE: &[u8] = b"oncewire/1 key update";
    /// The device's handshake signature digest: `SHA-256(label ‖ H)` (§7.3).
    pub const HANDSHAKE_SIGNATURE: &[u8] = b"oncewire/1 device handshake signature";
    /// The device's enrollment signature digest (§8.3).
    pub const ENROLLMENT: &[u8] = b"oncewire/1 device enrollment";
    /// The issuer's token signature digest (§13).
    pub const TOKEN: &[u8] = b"oncewire/1 token";
    /// The device's token proof digest (§13).
    pub const TOKEN_PROOF: &[u8] = b"oncewire/1 token proof";
    /// The `cnf` thumbprint of a device key (§13).
    pub const CNF: &[u8] = b"oncewire/1 cnf";
    /// The stateless challenge MAC (§12).
    pub const CHALLENGE: &[u8] = b"oncewire/1 challenge";
    /// The snapshot MAC (§4.4).
    pub const SNAPSHOT: &[u8] = b"oncewire/1 snapshot";
    /// The snapshot key derivation (§4.4).
    pub const SNAPSHOT_KEY: &[u8] = b"oncewire/1 snapshot key";
    /// The hash key of a replay cache (§4.5).
    pub const REPLAY_CACHE_HASH_KEY: &[u8] = b"oncewire/1 replay cache hash key";
    /// Prefix of a one-shot request's HPKE `info` (§11.3).
    pub const REQUEST_INFO: &[u8] = b"oncewire/1 request";
    /// A one-shot request's replay id (§11.3).
    pub const REQUEST_ID: &[u8] = b"oncewire/1 request id";
    /// Prefix of a stream's HPKE `info` (§11.2).
    pub const STREAM_INFO: &[u8] = b"oncewire/1 stream";
}

/// What the handshake hands to the session.
pub(crate) struct SessionKeys {
    pub(crate) session_id: [u8; KEY_ID_LEN],
    pub(crate) c2s: Secret<32>,
    pub(crate) s2c: Secret<32>,
    pub(crate) handshake_hash: [u8; 32],
}

/// The session secrets from the final Noise chaining key and hash (§7.4).
pub(crate) fn session_keys<P: CryptoProvider>(ck: &Secret<32>, h: &[u8; 32]) -> Result<SessionKeys> {
    let mut c2s = Secret::<32>::zero();
    let mut s2c = Secret::<32>::zero();
    let mut session_id = [0u8; KEY_ID_LEN];
    P::hkdf_expand(ck, &[labels::C2S, h], c2s.expose_mut())?;
    P::hkdf_expand(ck, &[labels::S2C, h], s2c.expose_mut())?;
    P::hkdf_expand(ck, &[labels::SESSION_ID, h], &mut session_id)?;
    Ok(SessionKeys { session_id, c2s, s2c, handshake_hash: *h })
}

/// A direction's AEAD key and IV from its traffic secret (§7.4).
pub(crate) fn traffic_keys<P: CryptoProvider>(secret: &Secret<32>) -> Result<(Secret<32>, Secret<NONCE_LEN>)> {
    let mut key = Secret::<32>::zero();
    let mut iv = Secret::<NONCE_LEN>::zero();
    P::hkdf_expand(secret, &[labels::KEY], key.expose_mut())?;
    P::hkdf_expand(secret, &[labels::IV], iv.expose_mut())?;
    Ok((key, iv))
}

/// The next traffic secret at a key update (§9.3).
pub(crate) fn next_secret<P: CryptoProvider>(secret: &Secret<32>) -> Result<Secret<32>> {
    let mut next = Secret::<32>::zero();
    P::hkdf_expand(secret, &[labels::KEY_UPDATE], next.expose_mut())?;
    Ok(next)
}

/// The digest the device signs in message 3: `SHA-256(label ‖ H)` (§7.3).
pub(crate) fn handshake_signature_digest<P: CryptoProvider>(handshake_hash: &[u8; 32]) -> [u8; 32] {
    P::sha256(&[labels::HANDSHAKE_SIGNATURE, handshake_hash])
}

/// The digest a device signs to enroll (§8.3):
/// `SHA-256(label ‖ server key ‖ challenge ‖ len(id) ‖ id ‖ device key)`.
pub(crate) fn enrollment_digest<P: CryptoProvider>(
    server: &PublicKey,
    challenge: &[u8],
    id: &[u8],
    public: &PublicKey,
) -> [u8; 32] {
    let len = [u8::try_from(id.len()).unwrap_or(0)];
    P::sha256(&[labels::ENROLLMENT, server.as_bytes(), challenge, &len, id, public.as_bytes()])
}

/// `SHA-256("oncewire/1 cnf" ‖ uncompressed public key)` (§13).
pub(crate) fn thumbprint<P: CryptoProvider>(public: &PublicKey) -> [u8; 32] {
    P::sha256(&[labels::CNF, public.as_bytes()])
}

/// The issuer's signature digest over a token's claims (§13).
pub(crate) fn token_digest<P: CryptoProvider>(claims: &[u8]) -> [u8; 32] {
    P::sha256(&[labels::TOKEN, claims])
}

/// The digest a device signs to use a token on a request (§13).
pub(crate) fn proof_digest<P: CryptoProvider>(token: &[u8], request_hash: &[u8; 32], iat: u64, jti: &[u8]) -> [u8; 32] {
    let token_hash = P::sha256(&[token]);
    P::sha256(&[labels::TOKEN_PROOF, &token_hash, request_hash, &iat.to_be_bytes(), jti])
}

/// The hash of a request's exact bytes, which bindings and proofs cover.
pub(crate) fn request_hash<P: CryptoProvider>(request: &[u8]) -> [u8; 32] {
    P::sha256(&[request])
}

/// A stateless challenge's MAC (§12), untruncated.
pub(crate) fn challenge_mac<P: CryptoProvider>(key: &Secret<32>, signed: &[u8]) -> [u8; 32] {
    P::hmac_sha256(key.expose(), &[labels::CHALLENGE, signed])
}

/// A receiver's snapshot key from its secret (§4.4).
pub(crate) fn snapshot_key<P: CryptoProvider>(secret: &[u8]) -> Secret<32> {
    Secret::new(P::hmac_sha256(secret, &[labels::SNAPSHOT_KEY]))
}

/// A snapshot's tag (§4.4).
pub(crate) fn snapshot_tag<P: CryptoProvider>(key: &Secret<32>, header: &[&[u8]], body: &[u8]) -> [u8; 32] {
    let mut parts: [&[u8]; 6] = [labels::SNAPSHOT, &[], &[], &[], &[], body];
    for (slot, h) in parts.iter_mut().skip(1).zip(header.iter().take(4)) {
        *slot = h;
    }
    P::hmac_sha256(key.expose(), &parts)
}

/// A replay cache's ring hash key (§4.5).
pub(crate) fn replay_cache_hash_key<P: CryptoProvider>(state_key: &Secret<32>) -> [u8; 16] {
    let full = Secret::new(P::hmac_sha256(state_key.expose(), &[labels::REPLAY_CACHE_HASH_KEY]));
    let mut out = [0u8; 16];
    out.copy_from_slice(full.expose().get(..16).unwrap_or(&[0u8; 16]));
    out
}

/// A one-shot request's replay id: `SHA-256(label ‖ enc)[..12]` (§11.3).
pub(crate) fn request_id<P: CryptoProvider>(enc: &[u8]) -> [u8; NONCE_LEN] {
    id_of(&P::sha256(&[labels::REQUEST_ID, enc]))
}

/// The 96-bit id of a digest: its first 12 bytes.
pub(crate) fn id_of(digest: &[u8; 32]) -> [u8; NONCE_LEN] {
    let mut id = [0u8; NONCE_LEN];
    id.copy_from_slice(digest.get(..NONCE_LEN).unwrap_or(&[0u8; NONCE_LEN]));
    id
}
