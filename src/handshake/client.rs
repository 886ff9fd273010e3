//! The client side of the handshake (`SPEC.md` §7.3).

use super::noise::Symmetric;
use super::{
    EphemeralBody, FinishBody, ServerHello, clock_offset, decode_exact, emit_control_header, parse_control, write_body,
};
use crate::clock::Clock;
use crate::device::{DeviceId, DeviceSigner};
use crate::error::{Error, Result};
use crate::keyschedule;
use crate::provider::{CryptoProvider, PublicKey, fill_random};
use crate::session::{Limits, ServerAuthenticated, Session};
use crate::wire::{FrameType, HEADER_LEN, KEY_ID_LEN, TAG_LEN};
use rand_core::TryCryptoRng;

/// Client side, before message 1.
#[derive(Debug)]
pub struct ClientHandshake<P: CryptoProvider = crate::provider::DefaultProvider>(core::marker::PhantomData<P>);

/// Client side, after sending message 1, waiting for message 2.
pub struct ClientAwaitResponse<P: CryptoProvider = crate::provider::DefaultProvider> {
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
    /// point, [`Error::BufferTooSmall`] (use [`super::MAX_HANDSHAKE_LEN`]).
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
    /// Parse errors, [`Error::UnexpectedFrame`], [`Error::UnknownSession`] (not
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
            return Err(Error::UnknownSession);
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
        let mut session = Session::<P, W>::establish_client(
            keys,
            self.server_static,
            limits.with_lifetime(hello.lifetime_ms),
            received_ms,
            proof,
        )?;
        session.set_clock_offset(clock_offset(hello.server_time_ms, self.started_ms, received_ms));
        let payload_len = write_body(&FinishBody { device_id: device.as_bytes(), signature: &sig }, out)?;
        let n = session.seal_finish(now, out, payload_len)?;
        Ok((session, n))
    }
}
