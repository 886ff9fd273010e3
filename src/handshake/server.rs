//! The server side of the handshake (`SPEC.md` §7.3): message 2, then
//! message 3 in two steps so the device lookup can be asynchronous.

use super::noise::Symmetric;
use super::{EphemeralBody, FinishBody, ServerHello, decode_exact, emit_control_header, parse_control, write_body};
use crate::clock::Clock;
use crate::device::{DeviceId, DeviceKeys};
use crate::error::{Error, Expiry, Result};
use crate::keyschedule::{self, SessionKeys};
use crate::provider::{CryptoProvider, P256_SIGNATURE_LEN, PublicKey};
use crate::record::CounterReceiver;
use crate::secret::Secret;
use crate::session::{Limits, Session};
use crate::wire::{FrameType, HEADER_LEN, KEY_ID_LEN, NonceField, TAG_LEN};
use rand_core::TryCryptoRng;

/// The server's static P-256 key, which clients pin.
pub struct ServerKey<P: CryptoProvider = crate::provider::DefaultProvider> {
    secret: P::EcdhSecret,
    public: PublicKey,
}

impl<P: CryptoProvider> core::fmt::Debug for ServerKey<P> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ServerKey").field("public", &self.public).finish_non_exhaustive()
    }
}

/// Server side, after sending message 2, waiting for message 3.
pub struct ServerAwaitFinish<P: CryptoProvider = crate::provider::DefaultProvider> {
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

    /// A new server key whose private scalar the caller keeps, to persist it
    /// and reload it at every start with [`Self::from_bytes`]. Store the
    /// 32 bytes as a secret (a secrets manager or KMS, encrypted at rest):
    /// whoever holds them can impersonate the server to every client that
    /// pins its public key. Rotating it means shipping the new public key to
    /// the clients first. [`Self::generate`] makes a key that cannot be
    /// exported.
    ///
    /// # Errors
    /// [`Error::Rng`].
    pub fn generate_persistent<R: TryCryptoRng + ?Sized>(rng: &mut R) -> Result<(Self, Secret<32>)> {
        let secret = crate::provider::p256_secret_bytes::<P, R>(rng)?;
        Ok((Self::from_bytes(&secret)?, secret))
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

/// Length of a pending handshake's exported state ([`ServerAwaitFinish::export`]).
pub const PENDING_STATE_LEN: usize = 1 + KEY_ID_LEN + 32 + 32 + 32 + 8;

const PENDING_VERSION: u8 = 1;

impl<P: CryptoProvider> ServerAwaitFinish<P> {
    /// Writes the handshake's state into `out`, so that another server can
    /// read message 3 (`SPEC.md` §17.1): the session id, both traffic
    /// secrets, the handshake hash and when message 2 was sent.
    ///
    /// `out` then holds secrets: seal it (the fleet key) and zeroize it.
    ///
    /// # Errors
    /// [`Error::Encode`] never in practice (the length is fixed).
    pub fn export(&self, out: &mut [u8; PENDING_STATE_LEN]) -> Result<()> {
        let mut w = crate::wire::Writer::new(out);
        w.put(&[PENDING_VERSION])?;
        w.put(&self.keys.session_id)?;
        w.put(self.keys.c2s.expose())?;
        w.put(self.keys.s2c.expose())?;
        w.put(&self.keys.handshake_hash)?;
        w.put(&self.established_ms.to_be_bytes())?;
        w.done()
    }

    /// A pending handshake another server exported with [`Self::export`],
    /// under this server's `limits` (its handshake timeout and the
    /// session's limits).
    ///
    /// # Errors
    /// [`Error::Decode`] (unknown version).
    pub fn import(state: &[u8; PENDING_STATE_LEN], limits: Limits) -> Result<Self> {
        let mut r = crate::wire::Reader::new(state);
        if r.take::<1>()? != [PENDING_VERSION] {
            return Err(Error::Decode);
        }
        let session_id = r.take::<KEY_ID_LEN>()?;
        let c2s = Secret::new(r.take::<32>()?);
        let s2c = Secret::new(r.take::<32>()?);
        let handshake_hash = r.take::<32>()?;
        let established_ms = u64::from_be_bytes(r.take::<8>()?);
        let keys = SessionKeys { session_id, c2s, s2c, handshake_hash };
        Ok(Self { keys, limits, established_ms, _p: core::marker::PhantomData })
    }

    /// The session id message 3 will carry: key the pending table by it.
    pub const fn session_id(&self) -> &[u8; KEY_ID_LEN] {
        &self.keys.session_id
    }

    /// When this handshake stops waiting for message 3 (Unix ms).
    pub const fn deadline_ms(&self) -> u64 {
        self.established_ms.saturating_add(self.limits.handshake_timeout_ms)
    }

    /// Reads message 3: opens it under the client-to-server key (it must
    /// carry sequence 0) and returns the step that names the device. Look
    /// the device's enrolled key up by [`ServerAwaitDevice::device`] (in a
    /// database, asynchronously if need be), then call
    /// [`ServerAwaitDevice::verify`]. Nothing about the device is trusted yet.
    ///
    /// # Errors
    /// [`Error::Expired`] after the handshake timeout, parse errors,
    /// [`Error::UnexpectedFrame`], [`Error::UnknownSession`] (wrong session id),
    /// [`Error::Authentication`] (tag, or a signature not in the one wire
    /// form), [`Error::Malformed`] (not sequence 0, or a bad device id),
    /// [`Error::Decode`], [`Error::TrailingBytes`]. On error the state is dropped.
    pub fn read_finish<const W: usize>(self, clock: &impl Clock, msg3: &mut [u8]) -> Result<ServerAwaitDevice<P, W>> {
        let now = clock.now_ms();
        if now > self.deadline_ms() {
            return Err(Error::Expired(Expiry::Handshake));
        }
        let c2s = keyschedule::traffic_keys::<P>(&self.keys.c2s)?;
        let mut rx = CounterReceiver::<P, W>::new(&c2s.0, c2s.1, self.keys.session_id)?;
        let opened = rx.open_typed(FrameType::HandshakeFinish, &[], now, msg3)?;
        if opened.header.nonce != NonceField::Counter(0) {
            return Err(Error::Malformed);
        }
        let body: FinishBody<'_> = decode_exact(opened.payload)?;
        let device = DeviceId::new(body.device_id)?;
        let signature: [u8; P256_SIGNATURE_LEN] = body.signature.try_into().map_err(|_| Error::Authentication)?;
        let deadline_ms = self.deadline_ms();
        Ok(ServerAwaitDevice { keys: self.keys, rx, limits: self.limits, deadline_ms, device, signature })
    }

    /// [`Self::read_finish`] then [`ServerAwaitDevice::verify`] with the key
    /// `keys` holds for the device.
    ///
    /// # Errors
    /// Those of both steps, and [`Error::UnknownSession`] if the device is not
    /// enrolled.
    pub fn finish<K: DeviceKeys + ?Sized, const W: usize>(
        self,
        clock: &impl Clock,
        msg3: &mut [u8],
        keys: &K,
    ) -> Result<Session<P, W>> {
        let step = self.read_finish::<W>(clock, msg3)?;
        let public = keys.device_key(step.device()).ok_or(Error::UnknownDevice)?;
        step.verify(clock, &public)
    }
}

/// Server side, after message 3 opened: it names a device whose signature
/// is not verified yet. Look up its enrolled key and call [`Self::verify`].
pub struct ServerAwaitDevice<P: CryptoProvider = crate::provider::DefaultProvider, const W: usize = 32> {
    keys: SessionKeys,
    rx: CounterReceiver<P, W>,
    limits: Limits,
    deadline_ms: u64,
    device: DeviceId,
    signature: [u8; P256_SIGNATURE_LEN],
}

impl<P: CryptoProvider, const W: usize> core::fmt::Debug for ServerAwaitDevice<P, W> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ServerAwaitDevice")
            .field("session_id", &self.keys.session_id)
            .field("device", &self.device)
            .finish_non_exhaustive()
    }
}

impl<P: CryptoProvider, const W: usize> ServerAwaitDevice<P, W> {
    /// The device message 3 claims to be (not yet verified).
    pub const fn device(&self) -> &DeviceId {
        &self.device
    }

    /// Verifies the device's signature over the handshake hash with its
    /// enrolled key and establishes the session.
    ///
    /// # Errors
    /// [`Error::Expired`] after the handshake timeout (the lookup took too
    /// long), [`Error::Authentication`] (not this device's signature),
    /// [`Error::InvalidKey`]. On error the state is dropped.
    pub fn verify(self, clock: &impl Clock, device_key: &PublicKey) -> Result<Session<P, W>> {
        let now = clock.now_ms();
        if now > self.deadline_ms {
            return Err(Error::Expired(Expiry::Handshake));
        }
        let digest = keyschedule::handshake_signature_digest::<P>(&self.keys.handshake_hash);
        let proof = crate::device::verify_device::<P>(self.device, device_key, &digest, &self.signature)?;
        Session::<P, W>::establish_server(self.keys, self.rx, self.limits, now, proof)
    }
}
