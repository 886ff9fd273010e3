//! Session establishment (DESIGN C6, `SPEC.md` §7).
//!
//! The pattern is **Noise NK** (`Noise_NK_P256_AESGCM_SHA256`), unmodified in
//! its two handshake messages, followed by a third message in which the
//! device authenticates by signing the Noise handshake hash with its
//! hardware-held key (channel binding, Noise §11.2; the same place TLS 1.3
//! puts `CertificateVerify`):
//!
//! ```text
//!   <- s                                   (client is pinned to the server's static key)
//!   ...
//!   -> e, es, [ {} ]                       HandshakeInit      (0x10, plaintext frame)
//!   <- e, ee, [ {server time, lifetime} ]  HandshakeResponse  (0x11, plaintext frame)
//!   -> { device id, sig(H) }               HandshakeFinish    (0x12, sealed under the c2s session key)
//! ```
//!
//! Both sides contribute ephemeral P-256 keys, so session keys have forward
//! secrecy; `es` authenticates the server to the client, whose decryption of
//! message 2 is the key confirmation; message 3 proves the device key and,
//! by opening under the new c2s key, confirms the client's keys to the server.
//!
//! The API is typestate: each step consumes `self`, so a failed step drops
//! the state (secrets zeroized), and a session exists only after the step
//! that authenticates the peer:
//!
//! - client: [`ClientHandshake::start`] → [`ClientAwaitResponse::finish`] → [`Session`];
//! - server: [`ServerKey::accept`] → [`ServerAwaitFinish::finish`] → [`Session`].

use crate::clock::Clock;
use crate::device::{DeviceId, DeviceKeys, DeviceSigner};
use crate::keyschedule::{self, SessionKeys, labels};
use crate::error::{Error, Result};
use crate::provider::{AeadCipher, CryptoProvider, PublicKey, RustCrypto, fill_random};
use crate::wire::{NONCE_LEN, TAG_LEN};
use crate::record::CounterReceiver;
use crate::secret::Secret;
use crate::session::{Limits, Peer, Role, ServerAuthenticated, Session};
use crate::wire::{Frame, FrameType, HEADER_LEN, Header, KEY_ID_LEN, NonceField};
use rand_core::TryCryptoRng;
use serde::{Deserialize, Serialize};

/// Largest handshake message 1, in bytes.
pub const INIT_LEN: usize = HEADER_LEN + 1 + 65 + 1 + TAG_LEN;
/// Buffer size that fits any handshake message.
pub const MAX_HANDSHAKE_LEN: usize = 256;

// ---------------------------------------------------------------------------
// Noise symmetric state
// ---------------------------------------------------------------------------

/// Noise `SymmetricState` with SHA-256 and AES-256-GCM.
struct Symmetric<P: CryptoProvider> {
    ck: Secret<32>,
    h: [u8; 32],
    k: Option<Secret<32>>,
    n: u64,
    _p: core::marker::PhantomData<P>,
}

impl<P: CryptoProvider> Symmetric<P> {
    fn new(server_static: &PublicKey) -> Self {
        let mut h = [0u8; 32];
        // PROTOCOL_NAME is 27 bytes: Noise pads names up to 32 bytes with zeros.
        for (d, s) in h.iter_mut().zip(labels::PROTOCOL_NAME) {
            *d = *s;
        }
        let mut st = Self { ck: Secret::new(h), h, k: None, n: 0, _p: core::marker::PhantomData };
        st.mix_hash(labels::PROLOGUE);
        st.mix_hash(server_static.as_bytes());
        st
    }

    fn mix_hash(&mut self, data: &[u8]) {
        self.h = P::sha256(&[&self.h, data]);
    }

    /// Noise `HKDF(ck, ikm, 2)`.
    fn mix_key(&mut self, ikm: &Secret<32>) {
        let temp = Secret::new(P::hmac_sha256(self.ck.expose(), &[ikm.expose()]));
        let ck = Secret::new(P::hmac_sha256(temp.expose(), &[&[0x01]]));
        let k = Secret::new(P::hmac_sha256(temp.expose(), &[ck.expose(), &[0x02]]));
        self.ck = ck;
        self.k = Some(k);
        self.n = 0;
    }

    fn nonce(&self) -> [u8; NONCE_LEN] {
        crate::wire::counter_nonce(&[0u8; NONCE_LEN], self.n)
    }

    fn cipher(&self) -> Result<P::Aes256Gcm> {
        P::Aes256Gcm::new(self.k.as_ref().ok_or(Error::Malformed)?.expose())
    }

    /// Encrypts `buf` in place with AD = h, then mixes `ciphertext ‖ tag` into h.
    fn encrypt_and_hash(&mut self, buf: &mut [u8]) -> Result<[u8; TAG_LEN]> {
        let tag = self.cipher()?.seal_detached(&self.nonce(), &self.h, buf)?;
        self.n = self.n.saturating_add(1);
        self.h = P::sha256(&[&self.h, buf, &tag]);
        Ok(tag)
    }

    /// Decrypts `ciphertext ‖ tag` into `out` with AD = h, then mixes it into h.
    fn decrypt_and_hash(&mut self, sealed: &[u8], out: &mut [u8]) -> Result<usize> {
        let split = sealed.len().checked_sub(TAG_LEN).ok_or(Error::Truncated)?;
        let (ct, tag) = sealed.split_at(split);
        let tag: &[u8; TAG_LEN] = tag.try_into().map_err(|_| Error::Truncated)?;
        let pt = out.get_mut(..ct.len()).ok_or(Error::BufferTooSmall)?;
        pt.copy_from_slice(ct);
        self.cipher()?.open_detached(&self.nonce(), &self.h, pt, tag)?;
        self.n = self.n.saturating_add(1);
        self.h = P::sha256(&[&self.h, sealed]);
        Ok(ct.len())
    }
}

// ---------------------------------------------------------------------------
// Control messages (postcard)
// ---------------------------------------------------------------------------

/// Body of handshake messages 1 and 2: an ephemeral key and a sealed payload.
#[derive(Serialize, Deserialize)]
struct EphemeralBody<'a> {
    e: &'a [u8],
    sealed: &'a [u8],
}

/// Plaintext payload of message 2.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
struct ServerHello {
    server_time_ms: u64,
    lifetime_ms: u64,
}

/// Plaintext of message 3.
#[derive(Serialize, Deserialize)]
struct FinishBody<'a> {
    device_id: &'a [u8],
    signature: &'a [u8],
}

/// Decodes a postcard value and rejects any remainder.
fn decode_exact<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T> {
    let (v, rest) = postcard::take_from_bytes::<T>(bytes).map_err(|_| Error::Decode)?;
    if !rest.is_empty() {
        return Err(Error::TrailingBytes);
    }
    Ok(v)
}

/// Parses a plaintext control frame of the expected type; returns header,
/// header bytes and body.
fn parse_control(frame: &[u8], expected: FrameType) -> Result<(Header, &[u8], &[u8])> {
    let f = Frame::new_checked(frame)?;
    let h = *f.header();
    if h.frame_type != expected {
        return Err(Error::UnexpectedFrame);
    }
    let (head, body) = frame.split_at_checked(HEADER_LEN).ok_or(Error::Truncated)?;
    Ok((h, head, body))
}

/// Writes a control frame: header then `body_len` bytes already at `out[HEADER_LEN..]`.
fn emit_control_header(
    out: &mut [u8],
    frame_type: FrameType,
    key_id: [u8; KEY_ID_LEN],
    now: u64,
    body_len: usize,
) -> Result<[u8; HEADER_LEN]> {
    let header = Header {
        frame_type,
        key_id,
        nonce: NonceField::None,
        timestamp_ms: now,
        payload_len: u32::try_from(body_len).map_err(|_| Error::PayloadTooLarge)?,
    };
    let mut head = [0u8; HEADER_LEN];
    header.emit(&mut head)?;
    out.get_mut(..HEADER_LEN).ok_or(Error::BufferTooSmall)?.copy_from_slice(&head);
    Ok(head)
}

/// Serializes `body` to `out[HEADER_LEN..]`, returning its length.
fn write_body<T: Serialize>(body: &T, out: &mut [u8]) -> Result<usize> {
    let dst = out.get_mut(HEADER_LEN..).ok_or(Error::BufferTooSmall)?;
    Ok(postcard::to_slice(body, dst).map_err(|_| Error::BufferTooSmall)?.len())
}

/// The client's clock offset (SPEC.md §7.3):
/// `server_time − ⌊(t_send + t_receive) / 2⌋`, the sum taken without
/// overflow (as u128) and the division rounding down, saturated to `i64`.
pub fn clock_offset(server_time_ms: u64, sent_ms: u64, received_ms: u64) -> i64 {
    let mid = (u128::from(sent_ms).saturating_add(u128::from(received_ms)) / 2) as i128;
    let off = i128::from(server_time_ms).saturating_sub(mid);
    i64::try_from(off).unwrap_or(if off < 0 { i64::MIN } else { i64::MAX })
}

// ---------------------------------------------------------------------------
// Client
// ---------------------------------------------------------------------------

/// Client side, before message 1.
#[derive(Debug)]
pub struct ClientHandshake<P: CryptoProvider = RustCrypto>(core::marker::PhantomData<P>);

/// Client side, after sending message 1, waiting for message 2.
pub struct ClientAwaitResponse<P: CryptoProvider = RustCrypto> {
    sym: Symmetric<P>,
    e: P::EcdhSecret,
    handshake_id: [u8; KEY_ID_LEN],
    server_static: PublicKey,
    started_ms: u64,
}

impl<P: CryptoProvider> core::fmt::Debug for ClientAwaitResponse<P> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ClientAwaitResponse").field("handshake_id", &self.handshake_id).finish_non_exhaustive()
    }
}

impl<P: CryptoProvider> ClientHandshake<P> {
    /// Starts a handshake with the pinned server key: writes message 1 into
    /// `out` and returns the waiting state and the message length.
    ///
    /// # Errors
    /// [`Error::Rng`], [`Error::InvalidKey`] if the pinned key is not a valid
    /// point, [`Error::BufferTooSmall`] (use [`MAX_HANDSHAKE_LEN`]).
    pub fn start<R: TryCryptoRng + ?Sized>(
        server_static: PublicKey,
        rng: &mut R,
        clock: &impl Clock,
        out: &mut [u8],
    ) -> Result<(ClientAwaitResponse<P>, usize)> {
        let mut handshake_id = [0u8; KEY_ID_LEN];
        fill_random(rng, &mut handshake_id)?;
        let (e, e_pub) = P::p256_generate(rng)?;
        Self::start_inner(server_static, handshake_id, e, e_pub, clock.now_ms(), out)
    }

    /// [`Self::start`] with a caller-chosen ephemeral key and handshake id:
    /// for test vectors only (`RUSTFLAGS="--cfg oncewire_test_vectors"`,
    /// never a Cargo feature, so no dependency can switch it on).
    ///
    /// # Errors
    /// As [`Self::start`].
    #[cfg(oncewire_test_vectors)]
    pub fn start_with(
        server_static: PublicKey,
        handshake_id: [u8; KEY_ID_LEN],
        e: P::EcdhSecret,
        e_pub: PublicKey,
        now: u64,
        out: &mut [u8],
    ) -> Result<(ClientAwaitResponse<P>, usize)> {
        Self::start_inner(server_static, handshake_id, e, e_pub, now, out)
    }

    fn start_inner(
        server_static: PublicKey,
        handshake_id: [u8; KEY_ID_LEN],
        e: P::EcdhSecret,
        e_pub: PublicKey,
        now: u64,
        out: &mut [u8],
    ) -> Result<(ClientAwaitResponse<P>, usize)> {
        let mut sym = Symmetric::<P>::new(&server_static);
        // Body length is fixed: size it with a placeholder, then emit the
        // header, which the transcript covers before any token.
        let placeholder = [0u8; TAG_LEN];
        let body_len = write_body(&EphemeralBody { e: e_pub.as_bytes(), sealed: &placeholder }, out)?;
        let head = emit_control_header(out, FrameType::HandshakeInit, handshake_id, now, body_len)?;
        sym.mix_hash(&head);
        sym.mix_hash(e_pub.as_bytes());
        let es = P::p256_ecdh(&e, &server_static)?;
        sym.mix_key(&es);
        let tag = sym.encrypt_and_hash(&mut [])?;
        let written = write_body(&EphemeralBody { e: e_pub.as_bytes(), sealed: &tag }, out)?;
        if written != body_len {
            return Err(Error::Encode);
        }
        let total = HEADER_LEN.checked_add(body_len).ok_or(Error::BufferTooSmall)?;
        Ok((ClientAwaitResponse { sym, e, handshake_id, server_static, started_ms: now }, total))
    }
}

impl<P: CryptoProvider> ClientAwaitResponse<P> {
    /// The id that routes message 2 back to this handshake.
    pub const fn handshake_id(&self) -> &[u8; KEY_ID_LEN] {
        &self.handshake_id
    }

    /// Reads message 2, authenticates the server, has the device sign the
    /// handshake hash, and writes message 3 into `out`. Returns the
    /// established session and the length of message 3.
    ///
    /// # Errors
    /// Parse errors, [`Error::UnexpectedFrame`], [`Error::UnknownKey`] (not
    /// this handshake), [`Error::InvalidKey`], [`Error::Authentication`] (not
    /// the pinned server, or tampered), [`Error::Signer`],
    /// [`Error::BufferTooSmall`]. On error the state is dropped.
    pub fn finish<S: DeviceSigner, const W: usize>(
        mut self,
        clock: &impl Clock,
        msg2: &[u8],
        device: DeviceId,
        signer: &mut S,
        limits: Limits,
        out: &mut [u8],
    ) -> Result<(Session<P, W>, usize)> {
        // t_receive of the clock offset (SPEC.md §7.3): before any P-256 work.
        let received_ms = clock.now_ms();
        let (h2, head, body) = parse_control(msg2, FrameType::HandshakeResponse)?;
        if h2.key_id != self.handshake_id {
            return Err(Error::UnknownKey);
        }
        let body: EphemeralBody<'_> = decode_exact(body)?;
        let e_s = PublicKey::from_sec1_uncompressed(body.e)?;
        self.sym.mix_hash(head);
        self.sym.mix_hash(e_s.as_bytes());
        let ee = P::p256_ecdh(&self.e, &e_s)?;
        self.sym.mix_key(&ee);
        let mut pt = [0u8; 32];
        let n = self.sym.decrypt_and_hash(body.sealed, &mut pt)?;
        let hello: ServerHello = decode_exact(pt.get(..n).ok_or(Error::Decode)?)?;
        let proof = ServerAuthenticated::new();

        let keys = keyschedule::session_keys::<P>(&self.sym.ck, &self.sym.h)?;
        let digest = keyschedule::handshake_signature_digest::<P>(&keys.handshake_hash);
        let sig = signer.sign_digest(&digest).map_err(|_| Error::Signer)?.to_raw_low_s()?;
        let now = clock.now_ms();
        let mut session = Session::<P, W>::establish(
            Role::Client,
            keys,
            Peer::Server(self.server_static),
            limits.with_lifetime(hello.lifetime_ms),
            received_ms,
            proof.into(),
        )?;
        session.set_clock_offset(clock_offset(hello.server_time_ms, self.started_ms, received_ms));
        let payload_len = write_body(&FinishBody { device_id: device.as_bytes(), signature: &sig }, out)?;
        let n = session.seal_finish(now, out, payload_len)?;
        Ok((session, n))
    }
}

// ---------------------------------------------------------------------------
// Server
// ---------------------------------------------------------------------------

/// The server's static P-256 key, which clients pin.
pub struct ServerKey<P: CryptoProvider = RustCrypto> {
    secret: P::EcdhSecret,
    public: PublicKey,
}

impl<P: CryptoProvider> core::fmt::Debug for ServerKey<P> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ServerKey").field("public", &self.public).finish_non_exhaustive()
    }
}

/// Server side, after sending message 2, waiting for message 3.
pub struct ServerAwaitFinish<P: CryptoProvider = RustCrypto> {
    keys: SessionKeys,
    limits: Limits,
    established_ms: u64,
    _p: core::marker::PhantomData<P>,
}

impl<P: CryptoProvider> core::fmt::Debug for ServerAwaitFinish<P> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ServerAwaitFinish").field("session_id", &self.keys.session_id).finish_non_exhaustive()
    }
}

impl<P: CryptoProvider> ServerKey<P> {
    /// Generates a server key.
    ///
    /// # Errors
    /// [`Error::Rng`] if the RNG fails.
    pub fn generate<R: TryCryptoRng + ?Sized>(rng: &mut R) -> Result<Self> {
        let (secret, public) = P::p256_generate(rng)?;
        Ok(Self { secret, public })
    }

    /// Imports a server key from its private scalar.
    ///
    /// # Errors
    /// [`Error::InvalidKey`] if the scalar is zero or not below the order.
    pub fn from_bytes(secret: &Secret<32>) -> Result<Self> {
        let (secret, public) = P::p256_ecdh_secret_from_bytes(secret)?;
        Ok(Self { secret, public })
    }

    /// The public key clients pin.
    pub const fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// Reads message 1 and writes message 2 into `out`. Returns the state
    /// that waits for message 3 (look it up by [`ServerAwaitFinish::session_id`])
    /// and the length of message 2.
    ///
    /// # Errors
    /// Parse errors, [`Error::UnexpectedFrame`], [`Error::Decode`],
    /// [`Error::TrailingBytes`], [`Error::InvalidKey`],
    /// [`Error::Authentication`] (the client did not use this server's key),
    /// [`Error::Rng`], [`Error::BufferTooSmall`].
    pub fn accept<R: TryCryptoRng + ?Sized>(
        &self,
        rng: &mut R,
        clock: &impl Clock,
        msg1: &[u8],
        limits: Limits,
        out: &mut [u8],
    ) -> Result<(ServerAwaitFinish<P>, usize)> {
        let (e, e_pub) = P::p256_generate(rng)?;
        self.accept_inner(e, e_pub, clock.now_ms(), msg1, limits, out)
    }

    /// [`Self::accept`] with a caller-chosen ephemeral key: for test vectors
    /// only (`RUSTFLAGS="--cfg oncewire_test_vectors"`).
    ///
    /// # Errors
    /// As [`Self::accept`].
    #[cfg(oncewire_test_vectors)]
    pub fn accept_with(
        &self,
        e: P::EcdhSecret,
        e_pub: PublicKey,
        now: u64,
        msg1: &[u8],
        limits: Limits,
        out: &mut [u8],
    ) -> Result<(ServerAwaitFinish<P>, usize)> {
        self.accept_inner(e, e_pub, now, msg1, limits, out)
    }

    fn accept_inner(
        &self,
        e: P::EcdhSecret,
        e_pub: PublicKey,
        now: u64,
        msg1: &[u8],
        limits: Limits,
        out: &mut [u8],
    ) -> Result<(ServerAwaitFinish<P>, usize)> {
        let (h1, head, body) = parse_control(msg1, FrameType::HandshakeInit)?;
        let body: EphemeralBody<'_> = decode_exact(body)?;
        let e_c = PublicKey::from_sec1_uncompressed(body.e)?;
        let mut sym = Symmetric::<P>::new(&self.public);
        sym.mix_hash(head);
        sym.mix_hash(e_c.as_bytes());
        let es = P::p256_ecdh(&self.secret, &e_c)?;
        sym.mix_key(&es);
        let mut empty = [0u8; 0];
        if sym.decrypt_and_hash(body.sealed, &mut empty)? != 0 {
            return Err(Error::Decode);
        }

        let hello = ServerHello { server_time_ms: now, lifetime_ms: limits.lifetime_ms };
        let mut pt = [0u8; 24];
        let pt_len = postcard::to_slice(&hello, &mut pt).map_err(|_| Error::Encode)?.len();
        let mut sealed = [0u8; 24 + TAG_LEN];
        let sealed_len = pt_len.checked_add(TAG_LEN).ok_or(Error::Encode)?;
        let body_len = write_body(
            &EphemeralBody { e: e_pub.as_bytes(), sealed: sealed.get(..sealed_len).ok_or(Error::Encode)? },
            out,
        )?;
        let head2 = emit_control_header(out, FrameType::HandshakeResponse, h1.key_id, now, body_len)?;
        sym.mix_hash(&head2);
        sym.mix_hash(e_pub.as_bytes());
        let ee = P::p256_ecdh(&e, &e_c)?;
        sym.mix_key(&ee);
        let (ct, tag_slot) = sealed.split_at_mut(pt_len);
        ct.copy_from_slice(pt.get(..pt_len).ok_or(Error::Encode)?);
        let tag = sym.encrypt_and_hash(ct)?;
        tag_slot.get_mut(..TAG_LEN).ok_or(Error::Encode)?.copy_from_slice(&tag);
        let written = write_body(
            &EphemeralBody { e: e_pub.as_bytes(), sealed: sealed.get(..sealed_len).ok_or(Error::Encode)? },
            out,
        )?;
        if written != body_len {
            return Err(Error::Encode);
        }
        let keys = keyschedule::session_keys::<P>(&sym.ck, &sym.h)?;
        let total = HEADER_LEN.checked_add(body_len).ok_or(Error::BufferTooSmall)?;
        Ok((ServerAwaitFinish { keys, limits, established_ms: now, _p: core::marker::PhantomData }, total))
    }
}

impl<P: CryptoProvider> ServerAwaitFinish<P> {
    /// The session id message 3 will carry: key the pending table by it.
    pub const fn session_id(&self) -> &[u8; KEY_ID_LEN] {
        &self.keys.session_id
    }

    /// Reads message 3: opens it under the client-to-server key, looks up the
    /// device's enrolled key, verifies its signature over the handshake hash,
    /// and returns the established session.
    ///
    /// # Errors
    /// Parse errors, [`Error::UnexpectedFrame`], [`Error::UnknownKey`] (wrong
    /// session id, or the device is not enrolled), [`Error::Authentication`]
    /// (tag or signature), [`Error::Decode`], [`Error::TrailingBytes`],
    /// [`Error::Expired`]. On error the state is dropped.
    pub fn finish<K: DeviceKeys + ?Sized, const W: usize>(
        self,
        clock: &impl Clock,
        msg3: &mut [u8],
        keys: &K,
    ) -> Result<Session<P, W>> {
        let now = clock.now_ms();
        if now > self.established_ms.saturating_add(self.limits.handshake_timeout_ms) {
            return Err(Error::Expired);
        }
        let digest = keyschedule::handshake_signature_digest::<P>(&self.keys.handshake_hash);
        let c2s = keyschedule::traffic_keys::<P>(&self.keys.c2s)?;
        let mut rx = CounterReceiver::<P, W>::new(&c2s.0, c2s.1, self.keys.session_id)?;
        let opened = rx.open_typed(FrameType::HandshakeFinish, &[], now, msg3)?;
        if opened.header.nonce != NonceField::Counter(0) {
            return Err(Error::Malformed);
        }
        let body: FinishBody<'_> = decode_exact(opened.payload)?;
        let device = DeviceId::new(body.device_id)?;
        let public = keys.device_key(&device).ok_or(Error::UnknownKey)?;
        let proof = crate::device::verify_device::<P>(device, &public, &digest, body.signature)?;
        Session::<P, W>::establish_server(self.keys, rx, self.limits, now, proof)
    }
}

