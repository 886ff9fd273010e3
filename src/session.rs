//! Established sessions (`SPEC.md` §7.4, §9): the record layer
//! after the handshake.
//!
//! A [`Session`] seals and opens records with counter nonces under
//! per-direction keys, with a [`crate::replay::CounterWindow`] and a
//! freshness check (on by default, [`Limits::freshness`]) on receipt. It
//! binds each response to its request (the response's AAD carries the
//! request's key generation and sequence number, a [`RequestId`], as OSCORE
//! binds a response to its request's partial IV), updates keys without a
//! new handshake, expires, and enforces the AEAD usage limits: it counts the
//! AES blocks it seals ([`Error::KeyExhausted`]: update the keys) and the
//! failed decryptions it sees ([`Error::IntegrityLimit`]: re-handshake).
//!
//! Sessions are built only by the handshake, and only with a proof that the
//! peer authenticated: [`ServerAuthenticated`] on the client,
//! [`DeviceVerified`] on the server.

use crate::audit::Audit;
use crate::clock::Clock;
use crate::device::{DeviceId, DeviceVerified, MAX_DEVICE_ID_LEN};
use crate::error::{Error, Expiry, Result};
use crate::keyschedule::{SessionKeys, next_secret, traffic_keys};
use crate::provider::{CryptoProvider, PublicKey};
use crate::record::{CounterReceiver, CounterSender, DEFAULT_MAX_FAILED, OpenInto, OpenTarget, Opened, gcm_blocks};
use crate::replay::Freshness;
use crate::secret::Secret;
use crate::wire::{Frame, FrameType, KEY_ID_LEN, stage};
use core::marker::PhantomData;

/// Usage and lifetime limits of a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Limits {
    /// Session lifetime from establishment. The server's value is sent to
    /// the client in handshake message 2 and applies to both sides.
    pub lifetime_ms: u64,
    /// Records sealed under one key before [`Error::KeyExhausted`]. Default
    /// 2^24, below the AES-GCM confidentiality limit of 2^24.5 full-size
    /// records (RFC 9147 §4.5.3, draft-irtf-cfrg-aead-limits).
    pub max_records_per_key: u64,
    /// AES blocks sealed under one key before [`Error::KeyExhausted`].
    /// Default 2^34 (256 GiB): the same 2^-60 confidentiality bound as 2^24
    /// records of 2^14 bytes, whatever the record sizes (a record may carry
    /// up to 16 MiB).
    pub max_blocks_per_key: u64,
    /// The freshness window every received record is checked against
    /// (`Stale`, `FromFuture`), in the server's time base. Default
    /// [`Freshness::DEFAULT`] (30 s old, 5 s ahead). `None` turns the check
    /// off: a withheld record is then accepted at any point of the
    /// session's lifetime.
    pub freshness: Option<Freshness>,
    /// Failed decryptions tolerated under one key before
    /// [`Error::IntegrityLimit`]. Default 2^36, the AES-GCM integrity limit of
    /// RFC 9147 §4.5.3.
    pub max_failed_per_key: u64,
    /// How long the server waits for handshake message 3.
    pub handshake_timeout_ms: u64,
}

impl Limits {
    /// One hour, 2^24 records, 2^34 blocks, 2^36 failures, freshness of
    /// 30 s back and 5 s ahead, 30 s handshake timeout.
    pub const DEFAULT: Self = Self {
        lifetime_ms: 3_600_000,
        max_records_per_key: 1 << 24,
        max_blocks_per_key: 1 << 34,
        freshness: Some(Freshness::DEFAULT),
        max_failed_per_key: DEFAULT_MAX_FAILED,
        handshake_timeout_ms: 30_000,
    };

    /// The same limits with another lifetime.
    #[must_use]
    pub const fn with_lifetime(mut self, lifetime_ms: u64) -> Self {
        self.lifetime_ms = lifetime_ms;
        self
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Which end of the session this is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Role {
    /// The app or device that started the handshake.
    Client,
    /// The backend.
    Server,
}

/// Who is on the other end, as authenticated by the handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Peer {
    /// The pinned server key (client side).
    Server(PublicKey),
    /// The enrolled device (server side).
    Device(DeviceId),
}

/// Proof that message 2 decrypted under a key only the pinned server could
/// derive. Only the handshake can make one.
#[derive(Debug)]
pub struct ServerAuthenticated(PhantomData<()>);

impl ServerAuthenticated {
    pub(crate) const fn new() -> Self {
        Self(PhantomData)
    }
}

/// A direction's sender from its traffic secret, at sequence 0.
fn sender_for<P: CryptoProvider>(secret: &Secret<32>, session_id: [u8; KEY_ID_LEN]) -> Result<CounterSender<P>> {
    let (key, iv) = traffic_keys::<P>(secret)?;
    CounterSender::new(&key, iv, session_id, 0)
}

/// What identifies a request within its session: the sending key
/// generation and sequence number of the record that carried it. A
/// response's AAD carries it (`SPEC.md` §9.2), and it is unique for the
/// session's whole life: sequence numbers restart at a key update, the
/// generation does not.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct RequestId {
    /// The client-to-server key generation the request was sealed under.
    pub generation: u32,
    /// Its sequence number.
    pub seq: u64,
}

impl RequestId {
    /// The 12 bytes a response's AAD carries: `generation (u32 BE) ‖ seq (u64 BE)`.
    pub fn to_bytes(&self) -> [u8; 12] {
        let mut out = [0u8; 12];
        let (g, q) = out.split_at_mut(4);
        g.copy_from_slice(&self.generation.to_be_bytes());
        q.copy_from_slice(&self.seq.to_be_bytes());
        out
    }
}

/// A frame a session opened. Its `Debug` output never shows plaintext.
#[derive(Debug)]
pub enum Received<'a> {
    /// An application record, and the id to answer it with
    /// ([`Session::seal_response`]).
    Record(Opened<'a>, RequestId),
    /// The peer moved its sending key to the next generation; nothing to deliver.
    KeyUpdated {
        /// The peer's new sending generation.
        generation: u32,
    },
}

/// A frame [`Session::open_unrecorded`] authenticated but did not record:
/// record it with [`Session::commit`] once a shared store accepted it
/// (`SPEC.md` §17.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SeqUse {
    /// The receiving key generation the frame opened under.
    pub generation: u32,
    /// Its sequence number.
    pub seq: u64,
    /// True for a key update: committing it moves the receiving key to
    /// `generation + 1`.
    pub key_update: bool,
}

/// Length of a server session's exported state ([`Session::export`]).
pub const SESSION_STATE_LEN: usize = 1 + KEY_ID_LEN + 1 + MAX_DEVICE_ID_LEN + 32 + 32 + 4 + 4 + 8 + 32;

const STATE_VERSION: u8 = 1;

/// An established session. See the [module docs](self).
pub struct Session<P: CryptoProvider = crate::provider::DefaultProvider, const W: usize = 32> {
    role: Role,
    session_id: [u8; KEY_ID_LEN],
    peer: Peer,
    tx: CounterSender<P>,
    rx: CounterReceiver<P, W>,
    tx_secret: Secret<32>,
    rx_secret: Secret<32>,
    tx_generation: u32,
    rx_generation: u32,
    expires_at_ms: u64,
    limits: Limits,
    clock_offset_ms: i64,
    handshake_hash: [u8; 32],
    audit: Audit,
}

impl<P: CryptoProvider, const W: usize> core::fmt::Debug for Session<P, W> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Session")
            .field("role", &self.role)
            .field("session_id", &self.session_id)
            .field("peer", &self.peer)
            .field("tx_generation", &self.tx_generation)
            .field("rx_generation", &self.rx_generation)
            .field("expires_at_ms", &self.expires_at_ms)
            .finish_non_exhaustive()
    }
}

impl<P: CryptoProvider, const W: usize> Session<P, W> {
    /// Client side: built from the handshake with the proof that the pinned
    /// server authenticated.
    pub(crate) fn establish_client(
        keys: SessionKeys,
        server: PublicKey,
        limits: Limits,
        now: u64,
        _proof: ServerAuthenticated,
    ) -> Result<Self> {
        let (rk, riv) = traffic_keys::<P>(&keys.s2c)?;
        let rx = CounterReceiver::new(&rk, riv, keys.session_id)?;
        let peer = Peer::Server(server);
        Self::assemble(Role::Client, keys.session_id, peer, keys.c2s, keys.s2c, rx, limits, now, keys.handshake_hash)
    }

    /// Server side: built from the handshake with the device's proof; `rx`
    /// already holds message 3 (sequence 0).
    pub(crate) fn establish_server(
        keys: SessionKeys,
        rx: CounterReceiver<P, W>,
        limits: Limits,
        now: u64,
        proof: DeviceVerified,
    ) -> Result<Self> {
        let peer = Peer::Device(*proof.device());
        Self::assemble(Role::Server, keys.session_id, peer, keys.s2c, keys.c2s, rx, limits, now, keys.handshake_hash)
    }

    #[allow(clippy::too_many_arguments)]
    fn assemble(
        role: Role,
        session_id: [u8; KEY_ID_LEN],
        peer: Peer,
        tx_secret: Secret<32>,
        rx_secret: Secret<32>,
        mut rx: CounterReceiver<P, W>,
        limits: Limits,
        now: u64,
        handshake_hash: [u8; 32],
    ) -> Result<Self> {
        let mut tx = sender_for::<P>(&tx_secret, session_id)?;
        tx.set_limit(limits.max_records_per_key);
        tx.set_block_limit(limits.max_blocks_per_key);
        rx.set_max_failed(limits.max_failed_per_key);
        if let Some(f) = limits.freshness {
            rx = rx.with_freshness(f);
        }
        Ok(Self {
            role,
            session_id,
            peer,
            tx,
            rx,
            tx_secret,
            rx_secret,
            tx_generation: 0,
            rx_generation: 0,
            expires_at_ms: now.saturating_add(limits.lifetime_ms),
            limits,
            clock_offset_ms: 0,
            handshake_hash,
            audit: Audit::new(),
        })
    }

    /// Sets the clock offset and restates the expiry in the corrected time base.
    pub(crate) fn set_clock_offset(&mut self, offset_ms: i64) {
        self.expires_at_ms = self.expires_at_ms.saturating_add_signed(offset_ms.saturating_sub(self.clock_offset_ms));
        self.clock_offset_ms = offset_ms;
    }

    /// Seals handshake message 3 (client, sequence 0).
    pub(crate) fn seal_finish(&mut self, now: u64, buf: &mut [u8], payload_len: usize) -> Result<usize> {
        self.tx.seal_typed(FrameType::HandshakeFinish, &[], now, buf, payload_len)
    }

    /// The (sending, receiving) traffic secrets: for test vectors only
    /// (`RUSTFLAGS="--cfg oncewire_test_vectors"`, never a Cargo feature).
    #[cfg(oncewire_test_vectors)]
    pub fn traffic_secrets(&self) -> (&Secret<32>, &Secret<32>) {
        (&self.tx_secret, &self.rx_secret)
    }

    /// This end's role.
    pub const fn role(&self) -> Role {
        self.role
    }

    /// The session id every record carries.
    pub const fn session_id(&self) -> &[u8; KEY_ID_LEN] {
        &self.session_id
    }

    /// The authenticated peer.
    pub const fn peer(&self) -> &Peer {
        &self.peer
    }

    /// Server side: the enrolled device this session is with (`None` on the
    /// client, whose peer is the server).
    pub const fn device(&self) -> Option<&DeviceId> {
        match &self.peer {
            Peer::Device(d) => Some(d),
            Peer::Server(_) => None,
        }
    }

    /// The Noise handshake hash, for channel binding (for example, to bind
    /// a token request to this session).
    pub const fn handshake_hash(&self) -> &[u8; 32] {
        &self.handshake_hash
    }

    /// When the session expires (Unix ms, in the server-corrected time base).
    pub const fn expires_at_ms(&self) -> u64 {
        self.expires_at_ms
    }

    /// Client side: the server's clock minus this end's clock, in ms,
    /// measured during the handshake. The session applies it itself to
    /// header timestamps and expiry: always pass the session the same,
    /// uncorrected clock.
    pub const fn clock_offset_ms(&self) -> i64 {
        self.clock_offset_ms
    }

    /// The sequence number the next sealed record will carry.
    pub const fn next_seq(&self) -> u64 {
        self.tx.next_seq()
    }

    /// Current (sending, receiving) key generations.
    pub const fn generations(&self) -> (u32, u32) {
        (self.tx_generation, self.rx_generation)
    }

    /// True when the sending key should be updated now: the next record
    /// would hit a usage limit ([`Self::update_keys`] fixes it locally).
    pub fn needs_key_update(&self) -> bool {
        self.check_send_budget(0).is_err()
    }

    /// True once the receiving key reached its integrity limit: every frame
    /// is refused with [`Error::IntegrityLimit`], the peer's key update
    /// included, because a forgery could now succeed. No local step fixes
    /// it; the session is over and the client must run a new handshake.
    pub fn needs_rehandshake(&self) -> bool {
        self.rx.integrity_limit_reached()
    }

    /// The receiving window, for inspection and equality checks.
    pub const fn window(&self) -> &crate::replay::CounterWindow<W> {
        self.rx.window()
    }

    /// Audit counters of this session (all key generations).
    pub fn audit(&self) -> Audit {
        let mut a = self.audit;
        a.merge(self.rx.audit());
        a
    }

    /// This end's clock, corrected by the handshake's offset.
    fn now(&self, clock: &impl Clock) -> u64 {
        self.server_clock(clock).now_ms()
    }

    /// `clock` in the server's time base (the device clock plus this
    /// session's offset), for what is stamped outside the session: a token
    /// proof, a one-shot request. The session itself needs the uncorrected
    /// clock.
    pub const fn server_clock<C: Clock>(&self, clock: C) -> crate::clock::ServerClock<C> {
        crate::clock::ServerClock::new(clock, self.clock_offset_ms)
    }

    fn live(&self, now: u64) -> Result<()> {
        if now > self.expires_at_ms { Err(Error::Expired(Expiry::Session)) } else { Ok(()) }
    }

    fn check_send_budget(&self, payload_len: usize) -> Result<()> {
        // One (empty) record is kept back for the key update itself.
        let blocks = self.tx.blocks().saturating_add(gcm_blocks(payload_len)).saturating_add(gcm_blocks(0));
        if self.tx.next_seq().saturating_add(1) >= self.limits.max_records_per_key
            || blocks > self.limits.max_blocks_per_key
        {
            return Err(Error::KeyExhausted);
        }
        Ok(())
    }

    /// Seals `buf[HEADER_LEN..HEADER_LEN + payload_len]` as a record in
    /// place. Returns the frame length.
    ///
    /// # Errors
    /// [`Error::Expired`], [`Error::KeyExhausted`] (call
    /// [`Self::update_keys`]), [`Error::BufferTooSmall`], [`Error::PayloadTooLarge`].
    pub fn seal_in_place(&mut self, clock: &impl Clock, buf: &mut [u8], payload_len: usize) -> Result<usize> {
        Ok(self.seal_request_in_place(clock, buf, payload_len)?.0)
    }

    /// Seals a record in place like [`Self::seal_in_place`], and returns with
    /// the frame length the [`RequestId`] its response will be bound to.
    ///
    /// # Errors
    /// As [`Self::seal_in_place`].
    pub fn seal_request_in_place(
        &mut self,
        clock: &impl Clock,
        buf: &mut [u8],
        payload_len: usize,
    ) -> Result<(usize, RequestId)> {
        let now = self.now(clock);
        self.live(now)?;
        self.check_send_budget(payload_len)?;
        let id = RequestId { generation: self.tx_generation, seq: self.tx.next_seq() };
        let n = self.tx.seal_typed(FrameType::Record, &[], now, buf, payload_len)?;
        Ok((n, id))
    }

    /// Copies `payload` into `out` and seals it as a request: returns the
    /// frame length and the id to open its response with.
    ///
    /// # Errors
    /// As [`Self::seal_in_place`].
    pub fn seal_request(&mut self, clock: &impl Clock, payload: &[u8], out: &mut [u8]) -> Result<(usize, RequestId)> {
        stage(payload, out)?;
        self.seal_request_in_place(clock, out, payload.len())
    }

    /// Copies `payload` into `out` and seals it as a record.
    ///
    /// # Errors
    /// As [`Self::seal_in_place`].
    pub fn seal(&mut self, clock: &impl Clock, payload: &[u8], out: &mut [u8]) -> Result<usize> {
        stage(payload, out)?;
        self.seal_in_place(clock, out, payload.len())
    }

    /// Seals a response to `request` (from [`Received::Record`]). The
    /// request's key generation and sequence number are in the AAD, so the
    /// response opens only as the answer to that request, across key
    /// updates too.
    ///
    /// # Errors
    /// As [`Self::seal_in_place`].
    pub fn seal_response(
        &mut self,
        clock: &impl Clock,
        request: RequestId,
        payload: &[u8],
        out: &mut [u8],
    ) -> Result<usize> {
        let now = self.now(clock);
        self.live(now)?;
        self.check_send_budget(payload.len())?;
        stage(payload, out)?;
        self.tx.seal_typed(FrameType::Response, &request.to_bytes(), now, out, payload.len())
    }

    /// Opens a record or key update in place.
    ///
    /// # Errors
    /// [`Error::Expired`], parse errors, [`Error::UnexpectedFrame`] (a
    /// response: use [`Self::open_response`]), [`Error::UnknownSession`],
    /// [`Error::Replay`], [`Error::Stale`], [`Error::Authentication`],
    /// [`Error::IntegrityLimit`] at the integrity limit (re-handshake). On error nothing changes
    /// but the audit counters and the failed-decryption count.
    pub fn open_in_place<'a>(&mut self, clock: &impl Clock, frame: &'a mut [u8]) -> Result<Received<'a>> {
        let (received, used) = self.open_unrecorded(clock, frame)?;
        self.commit(used)?;
        Ok(received)
    }

    /// Authenticates a record or key update like [`Self::open_in_place`],
    /// but records nothing: the frame is accepted only once
    /// [`Self::commit`] records the returned [`SeqUse`]. For a server
    /// whose replay state lives in a store shared with other servers
    /// (`SPEC.md` §17.2): authenticate here, check and record in the
    /// store, then commit locally. A key update is reported but not
    /// applied until it is committed.
    ///
    /// # Errors
    /// As [`Self::open_in_place`]. Only the local window is consulted: a
    /// frame another server accepted passes here and is refused by the
    /// store.
    pub fn open_unrecorded<'a>(&mut self, clock: &impl Clock, frame: &'a mut [u8]) -> Result<(Received<'a>, SeqUse)> {
        self.open_unrecorded_at(clock, frame)
    }

    /// Opens a record or key update out of a read-only `frame` into `out`,
    /// which must have room for the payload (`frame.len()` minus
    /// [`crate::wire::OVERHEAD`] for a well-formed frame). The same
    /// checks, in the same order, as [`Self::open_in_place`]; the frame
    /// cannot change, and on error `out` holds no plaintext.
    ///
    /// For a server that receives a frame in a buffer it may not write (an
    /// HTTP body): one pass instead of a copy and an in-place open, and on
    /// a provider whose AEAD decrypts while it authenticates (aws-lc-rs)
    /// no copy at all.
    ///
    /// # Errors
    /// As [`Self::open_in_place`], and [`Error::BufferTooSmall`] if `out`
    /// is shorter than the payload (before any cryptography).
    pub fn open_to<'a>(&mut self, clock: &impl Clock, frame: &[u8], out: &'a mut [u8]) -> Result<Received<'a>> {
        let (received, used) = self.open_unrecorded_to(clock, frame, out)?;
        self.commit(used)?;
        Ok(received)
    }

    /// [`Self::open_unrecorded`] out of a read-only `frame` into `out`, as
    /// [`Self::open_to`] opens.
    ///
    /// # Errors
    /// As [`Self::open_to`].
    pub fn open_unrecorded_to<'a>(
        &mut self,
        clock: &impl Clock,
        frame: &[u8],
        out: &'a mut [u8],
    ) -> Result<(Received<'a>, SeqUse)> {
        self.open_unrecorded_at(clock, OpenInto { frame, out })
    }

    /// The one body of [`Self::open_unrecorded`] and [`Self::open_unrecorded_to`].
    #[inline]
    fn open_unrecorded_at<'a, T: OpenTarget<'a>>(
        &mut self,
        clock: &impl Clock,
        frame: T,
    ) -> Result<(Received<'a>, SeqUse)> {
        let now = self.now(clock);
        self.live(now)?;
        let ty = Frame::new_checked(frame.frame()).map(|f| f.header().frame_type);
        let generation = self.rx_generation;
        match ty {
            Ok(FrameType::KeyUpdate) => {
                let (_, seq) = self.rx.open_typed_unrecorded(FrameType::KeyUpdate, &[], now, frame)?;
                let next = generation.checked_add(1).ok_or(Error::KeyExhausted)?;
                Ok((Received::KeyUpdated { generation: next }, SeqUse { generation, seq, key_update: true }))
            }
            _ => {
                let (opened, seq) = self.rx.open_typed_unrecorded(FrameType::Record, &[], now, frame)?;
                Ok((
                    Received::Record(opened, RequestId { generation, seq }),
                    SeqUse { generation, seq, key_update: false },
                ))
            }
        }
    }

    /// Records a frame [`Self::open_unrecorded`] authenticated, and applies
    /// it if it is a key update.
    ///
    /// # Errors
    /// [`Error::Stale`] if the receiving key moved on since it opened;
    /// [`Error::Replay`] or [`Error::Stale`] if the local window refuses it.
    /// Nothing changes on error.
    pub fn commit(&mut self, used: SeqUse) -> Result<()> {
        if used.generation != self.rx_generation {
            return Err(Error::Stale);
        }
        if used.key_update {
            // Derive first, so a failure leaves the session as it was.
            let next = next_secret::<P>(&self.rx_secret)?;
            self.rx.commit_seq(used.seq)?;
            return self.ratchet_rx_to(next);
        }
        self.rx.commit_seq(used.seq)
    }

    /// Server side: writes what another server needs to continue this
    /// session into `out` (`SPEC.md` §17.1): the session id, the device,
    /// both traffic secrets and generations, the expiry and the handshake
    /// hash. Not the replay window and not the send counter: those live in
    /// the shared store. With `after`, the state as it will be once `after`
    /// (a key update) is committed.
    ///
    /// `out` then holds secrets: seal it (the fleet key) and zeroize it.
    ///
    /// # Errors
    /// [`Error::Misuse`] on a client session.
    pub fn export(&self, after: Option<SeqUse>, out: &mut [u8; SESSION_STATE_LEN]) -> Result<()> {
        let Peer::Device(device) = &self.peer else {
            return Err(Error::Misuse);
        };
        let (rx_secret, rx_generation);
        let next;
        match after {
            Some(u) if u.key_update && u.generation == self.rx_generation => {
                next = next_secret::<P>(&self.rx_secret)?;
                rx_secret = next.expose();
                rx_generation = self.rx_generation.checked_add(1).ok_or(Error::KeyExhausted)?;
            }
            Some(_) => return Err(Error::Misuse),
            None => {
                rx_secret = self.rx_secret.expose();
                rx_generation = self.rx_generation;
            }
        }
        let id = device.as_bytes();
        let mut device_bytes = [0u8; MAX_DEVICE_ID_LEN];
        device_bytes.get_mut(..id.len()).ok_or(Error::Misuse)?.copy_from_slice(id);
        let mut w = crate::wire::Writer::new(out);
        w.put(&[STATE_VERSION])?;
        w.put(&self.session_id)?;
        w.put(&[u8::try_from(id.len()).map_err(|_| Error::Misuse)?])?;
        w.put(&device_bytes)?;
        w.put(self.tx_secret.expose())?;
        w.put(rx_secret)?;
        w.put(&self.tx_generation.to_be_bytes())?;
        w.put(&rx_generation.to_be_bytes())?;
        w.put(&self.expires_at_ms.to_be_bytes())?;
        w.put(&self.handshake_hash)?;
        w.done()
    }

    /// Server side: a session another server exported with
    /// [`Self::export`], under this server's `limits`. Its window is empty
    /// (the shared store holds the replay state) and it seals nothing until
    /// [`Self::grant_sends`] hands it sequence numbers reserved in the
    /// shared store.
    ///
    /// # Errors
    /// [`Error::Decode`] (unknown version, bad device id, padding not
    /// zero), [`Error::InvalidKey`].
    pub fn import(state: &[u8; SESSION_STATE_LEN], limits: Limits) -> Result<Self> {
        let mut r = crate::wire::Reader::new(state);
        if r.take::<1>()? != [STATE_VERSION] {
            return Err(Error::Decode);
        }
        let session_id = r.take::<KEY_ID_LEN>()?;
        let [device_len] = r.take::<1>()?;
        let device_bytes = r.take::<MAX_DEVICE_ID_LEN>()?;
        let tx_secret = Secret::new(r.take::<32>()?);
        let rx_secret = Secret::new(r.take::<32>()?);
        let tx_generation = u32::from_be_bytes(r.take::<4>()?);
        let rx_generation = u32::from_be_bytes(r.take::<4>()?);
        let expires_at_ms = u64::from_be_bytes(r.take::<8>()?);
        let handshake_hash = r.take::<32>()?;
        let len = usize::from(device_len);
        let (id, padding) = device_bytes.split_at_checked(len).ok_or(Error::Decode)?;
        if padding.iter().any(|&b| b != 0) {
            return Err(Error::Decode);
        }
        let device = DeviceId::new(id).map_err(|_| Error::Decode)?;
        let (rk, riv) = traffic_keys::<P>(&rx_secret)?;
        let rx = CounterReceiver::new(&rk, riv, session_id)?;
        let mut s = Self::assemble(
            Role::Server,
            session_id,
            Peer::Device(device),
            tx_secret,
            rx_secret,
            rx,
            limits,
            0,
            handshake_hash,
        )?;
        s.tx_generation = tx_generation;
        s.rx_generation = rx_generation;
        s.expires_at_ms = expires_at_ms;
        s.hold_sends();
        Ok(s)
    }

    /// Server side: seal nothing more until [`Self::grant_sends`] hands out
    /// sequence numbers reserved in a shared store (`SPEC.md` §17.3). A
    /// session a server just established calls this before it is shared,
    /// so that it too seals only under reserved numbers.
    pub fn hold_sends(&mut self) {
        let next = self.tx.next_seq();
        self.tx.set_limit(next);
        self.tx.set_block_limit(self.tx.blocks());
    }

    /// Server side: hands the session the sequence numbers
    /// `first..first + count`, reserved for this server alone in a shared
    /// store, with `count × (max_blocks / max_records)` AES blocks (so the
    /// blocks of every grant together stay within the key's block limit;
    /// `SPEC.md` §17.3). What is left of an earlier grant is given up.
    ///
    /// # Errors
    /// [`Error::Misuse`] if `first` is below a number this session already
    /// sealed under; [`Error::KeyExhausted`] if the range passes the key's
    /// record limit.
    pub fn grant_sends(&mut self, first: u64, count: u64) -> Result<()> {
        let end = first.checked_add(count).ok_or(Error::KeyExhausted)?;
        if end > self.limits.max_records_per_key.saturating_sub(1) {
            return Err(Error::KeyExhausted);
        }
        self.tx.resume_at(first)?;
        self.tx.set_limit(end);
        let ratio = self.limits.max_blocks_per_key.checked_div(self.limits.max_records_per_key).unwrap_or(0);
        self.tx.set_block_limit(self.tx.blocks().saturating_add(count.saturating_mul(ratio)));
        Ok(())
    }

    /// Server side: how many sequence numbers to reserve so that a
    /// response of `payload_len` bytes fits the current grant, or 0 if it
    /// already does.
    pub fn sends_needed(&self, payload_len: usize) -> u64 {
        let blocks = gcm_blocks(payload_len);
        if self.tx.next_seq() < self.tx.limit() && self.tx.blocks().saturating_add(blocks) <= self.tx.block_limit() {
            return 0;
        }
        let ratio = self.limits.max_blocks_per_key.checked_div(self.limits.max_records_per_key).unwrap_or(0).max(1);
        blocks.div_ceil(ratio).max(1)
    }

    /// Opens the response to `request` (from [`Self::seal_request`]).
    ///
    /// # Errors
    /// As [`Self::open_in_place`]; a response to another request (of this or
    /// another key generation) fails with [`Error::Authentication`].
    pub fn open_response<'a>(
        &mut self,
        clock: &impl Clock,
        request: RequestId,
        frame: &'a mut [u8],
    ) -> Result<Opened<'a>> {
        let now = self.now(clock);
        self.live(now)?;
        self.rx.open_typed(FrameType::Response, &request.to_bytes(), now, frame)
    }

    /// [`Self::open_response`] out of a read-only `frame` into `out`, as
    /// [`Self::open_to`] opens.
    ///
    /// # Errors
    /// As [`Self::open_response`], and [`Error::BufferTooSmall`] if `out`
    /// is shorter than the payload.
    pub fn open_response_to<'a>(
        &mut self,
        clock: &impl Clock,
        request: RequestId,
        frame: &[u8],
        out: &'a mut [u8],
    ) -> Result<Opened<'a>> {
        let now = self.now(clock);
        self.live(now)?;
        self.rx.open_typed(FrameType::Response, &request.to_bytes(), now, OpenInto { frame, out })
    }

    /// Moves the sending key to the next generation without a handshake:
    /// writes a key-update frame (sealed under the current key) into `out`,
    /// then switches. Send the frame before any record sealed afterwards.
    ///
    /// Records sealed under the old key that arrive after the key update
    /// are rejected; deliver in order across a key update.
    ///
    /// # Errors
    /// [`Error::Expired`], [`Error::BufferTooSmall`], [`Error::KeyExhausted`]
    /// if even the reserved record is used up (never in normal use).
    pub fn update_keys(&mut self, clock: &impl Clock, out: &mut [u8]) -> Result<usize> {
        let now = self.now(clock);
        self.live(now)?;
        let generation = self.tx_generation.checked_add(1).ok_or(Error::KeyExhausted)?;
        let next = next_secret::<P>(&self.tx_secret)?;
        let mut tx = sender_for::<P>(&next, self.session_id)?;
        tx.set_limit(self.limits.max_records_per_key);
        tx.set_block_limit(self.limits.max_blocks_per_key);
        let n = self.tx.seal_typed(FrameType::KeyUpdate, &[], now, out, 0)?;
        self.tx = tx;
        self.tx_secret = next;
        self.tx_generation = generation;
        Ok(n)
    }

    fn ratchet_rx_to(&mut self, next: Secret<32>) -> Result<()> {
        let generation = self.rx_generation.checked_add(1).ok_or(Error::KeyExhausted)?;
        let (k, iv) = traffic_keys::<P>(&next)?;
        let mut rx = CounterReceiver::new(&k, iv, self.session_id)?;
        rx.set_max_failed(self.limits.max_failed_per_key);
        if let Some(f) = self.limits.freshness {
            rx = rx.with_freshness(f);
        }
        self.audit.merge(self.rx.audit());
        self.rx = rx;
        self.rx_secret = next;
        self.rx_generation = generation;
        Ok(())
    }
}
