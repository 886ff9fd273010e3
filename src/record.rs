//! The record layer (`SPEC.md` §3, §4): sealing and opening v1 frames with
//! either nonce strategy, with replay protection committed only after the
//! tag verifies.
//!
//! - [`CounterSender`] / [`CounterReceiver`]: one direction of a session.
//!   Nonce = per-direction IV XOR the 64-bit sequence number; no RNG per
//!   message. The receiver keeps a [`CounterWindow`].
//! - [`OneShotSender`] / [`OneShotReceiver`]: one-shot messages under a
//!   long-lived key with 96-bit random nonces, an enforced per-key
//!   invocation cap, and a [`NonceRing`] plus freshness window on receipt.
//!
//! Buffers are the caller's: the payload sits at `buf[HEADER_LEN..]`, the
//! header is written in front and the tag after it, in place. Size buffers
//! with [`crate::wire::buffer_len`].
//!
//! # Receive order
//! parse (strict) → type and key id → timestamp floor and freshness →
//! replay check (pure) → AEAD open (tag first, in constant time) → commit.
//! Any failure leaves the buffer and the replay state unchanged; only the
//! [`Audit`] counters move.

use crate::audit::Audit;
use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::provider::{AeadCipher, CryptoProvider, fill_random};
use crate::replay::snapshot::{Kind, SnapshotKey};
use crate::replay::{Commit, CounterWindow, Freshness, NonceRing, TimeFloor, WindowState};
use crate::secret::Secret;
use crate::store::CounterStore;
use crate::wire::{
    Frame, FrameType, HEADER_LEN, Header, KEY_ID_LEN, MAX_PAYLOAD_LEN, NONCE_LEN, NonceField, TAG_LEN, buffer_len,
    counter_nonce, stage,
};

/// The NIST SP 800-38D limit on invocations of one key with random 96-bit nonces.
pub const RANDOM_NONCE_MAX_INVOCATIONS: u64 = 1 << 32;

/// The largest payload sealed under a long-lived key ([`OneShotSender`],
/// [`PersistentSender`]): 2^14 bytes, the record size the
/// AES-GCM usage limits of RFC 9147 §4.5.3 assume. Their usage counts are
/// persisted as record counts, so capping the record size bounds the number
/// of AES blocks under the key as well.
pub const LONG_KEY_MAX_PAYLOAD: usize = 1 << 14;

/// Default AES-GCM integrity limit: failed decryptions tolerated under one
/// receiving key (RFC 9147 §4.5.3).
pub const DEFAULT_MAX_FAILED: u64 = 1 << 36;

/// AES blocks one GCM invocation over `len` bytes uses: the payload blocks
/// and the one that encrypts the tag.
pub(crate) const fn gcm_blocks(len: usize) -> u64 {
    (len as u64).div_ceil(16).saturating_add(1)
}

/// What every receiver counts: its audit counters and the forgeries seen
/// under its key (the AEAD integrity limit, RFC 9147 §4.5.3).
#[derive(Debug, Clone, Copy)]
struct Health {
    audit: Audit,
    failed: u64,
    max_failed: u64,
}

impl Health {
    const fn new() -> Self {
        Self { audit: Audit::new(), failed: 0, max_failed: DEFAULT_MAX_FAILED }
    }

    /// Refuses everything once the integrity limit is reached.
    const fn check(&self) -> Result<()> {
        if self.failed >= self.max_failed { Err(Error::IntegrityLimit) } else { Ok(()) }
    }

    /// Counts a rejection; a forgery also counts toward the integrity limit,
    /// the one piece of state a failed open moves besides the audit counters.
    fn reject(&mut self, e: Error) -> Error {
        if e == Error::Authentication {
            self.failed = self.failed.saturating_add(1);
        }
        self.audit.record(e);
        e
    }
}

/// An opened frame: its authenticated header and the plaintext, in place.
///
/// Its `Debug` output shows the header and the payload length, never the
/// plaintext.
pub struct Opened<'a> {
    /// The authenticated header.
    pub header: Header,
    /// The plaintext, inside the caller's buffer.
    pub payload: &'a mut [u8],
}

impl core::fmt::Debug for Opened<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Opened")
            .field("header", &self.header)
            .field("payload_len", &self.payload.len())
            .finish_non_exhaustive()
    }
}

/// Most external AAD a frame may carry: a request's generation and sequence number.
pub(crate) const MAX_AAD_EXT: usize = 12;

/// `header ‖ ext` on the stack.
struct Aad {
    buf: [u8; HEADER_LEN + MAX_AAD_EXT],
    len: usize,
}

impl Aad {
    fn new(header: &[u8], ext: &[u8]) -> Result<Self> {
        let mut buf = [0u8; HEADER_LEN + MAX_AAD_EXT];
        let len = header.len().checked_add(ext.len()).filter(|l| *l <= buf.len()).ok_or(Error::Misuse)?;
        let (h, rest) = buf.split_at_mut(header.len());
        h.copy_from_slice(header);
        rest.get_mut(..ext.len()).ok_or(Error::Misuse)?.copy_from_slice(ext);
        Ok(Self { buf, len })
    }

    fn as_slice(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or_default()
    }
}

/// Writes the header, seals `buf[HEADER_LEN..HEADER_LEN + payload_len]` in
/// place under AAD `header ‖ aad_ext` and appends the tag. Returns the frame length.
#[inline]
fn seal_frame<A: AeadCipher>(
    cipher: &A,
    header: &Header,
    nonce: &[u8; NONCE_LEN],
    aad_ext: &[u8],
    buf: &mut [u8],
) -> Result<usize> {
    let payload_len = header.payload_len as usize;
    let total = buffer_len(payload_len);
    let frame = buf.get_mut(..total).ok_or(Error::BufferTooSmall)?;
    let (head, rest) = frame.split_at_mut(HEADER_LEN);
    let head: &mut [u8; HEADER_LEN] = head.try_into().map_err(|_| Error::BufferTooSmall)?;
    header.emit(head)?;
    let (body, tag_slot) = rest.split_at_mut(payload_len);
    let tag = if aad_ext.is_empty() {
        cipher.seal_detached(nonce, head, body)?
    } else {
        cipher.seal_detached(nonce, Aad::new(head, aad_ext)?.as_slice(), body)?
    };
    tag_slot.copy_from_slice(&tag);
    Ok(total)
}

/// Builds a header for a payload, checking its length.
#[inline]
fn header_for(
    frame_type: FrameType,
    key_id: [u8; KEY_ID_LEN],
    nonce: NonceField,
    now: u64,
    payload_len: usize,
    buf_len: usize,
) -> Result<Header> {
    if payload_len > MAX_PAYLOAD_LEN {
        return Err(Error::PayloadTooLarge);
    }
    if buf_len < buffer_len(payload_len) {
        return Err(Error::BufferTooSmall);
    }
    // payload_len <= 2^24, so it fits a u32.
    let payload_len = u32::try_from(payload_len).map_err(|_| Error::PayloadTooLarge)?;
    Ok(Header { frame_type, key_id, nonce, timestamp_ms: now, payload_len })
}

/// Parses `buf` as exactly one frame of `expected` type for `key_id`.
#[inline]
fn parse_for(buf: &[u8], expected: FrameType, key_id: &[u8; KEY_ID_LEN]) -> Result<Header> {
    let frame = Frame::new_checked(buf)?;
    let h = *frame.header();
    if h.frame_type != expected {
        return Err(Error::UnexpectedFrame);
    }
    if h.key_id != *key_id {
        return Err(Error::UnknownSession);
    }
    Ok(h)
}

/// Verifies and decrypts a parsed frame in place under AAD `header ‖ aad_ext`.
/// Leaves `buf` unchanged on error.
#[inline]
fn open_frame<'a, A: AeadCipher>(
    cipher: &A,
    header: Header,
    nonce: &[u8; NONCE_LEN],
    aad_ext: &[u8],
    buf: &'a mut [u8],
) -> Result<Opened<'a>> {
    let payload_len = header.payload_len as usize;
    let (head, rest) = buf.split_at_mut(HEADER_LEN.min(buf.len()));
    let (body, tag) = rest.split_at_mut(payload_len.min(rest.len()));
    let tag: &[u8; TAG_LEN] = (&*tag).try_into().map_err(|_| Error::Truncated)?;
    if aad_ext.is_empty() {
        cipher.open_detached(nonce, head, body, tag)?;
    } else {
        cipher.open_detached(nonce, Aad::new(head, aad_ext)?.as_slice(), body, tag)?;
    }
    Ok(Opened { header, payload: body })
}

/// Where a frame is opened: in place (`&mut [u8]`), or out of a read-only
/// frame into another buffer ([`OpenInto`]). Either way the frame is
/// unchanged on error.
pub(crate) trait OpenTarget<'a> {
    /// The frame, for parsing and the checks before the tag.
    fn frame(&self) -> &[u8];
    /// Verifies the tag and decrypts under AAD `header ‖ aad_ext`.
    fn open<A: AeadCipher>(
        self,
        cipher: &A,
        header: Header,
        nonce: &[u8; NONCE_LEN],
        aad_ext: &[u8],
    ) -> Result<Opened<'a>>;
}

impl<'a> OpenTarget<'a> for &'a mut [u8] {
    #[inline]
    fn frame(&self) -> &[u8] {
        self
    }

    #[inline]
    fn open<A: AeadCipher>(
        self,
        cipher: &A,
        header: Header,
        nonce: &[u8; NONCE_LEN],
        aad_ext: &[u8],
    ) -> Result<Opened<'a>> {
        open_frame(cipher, header, nonce, aad_ext, self)
    }
}

/// A read-only frame and the buffer its plaintext goes to.
pub(crate) struct OpenInto<'f, 'a> {
    pub(crate) frame: &'f [u8],
    pub(crate) out: &'a mut [u8],
}

impl<'a> OpenTarget<'a> for OpenInto<'_, 'a> {
    #[inline]
    fn frame(&self) -> &[u8] {
        self.frame
    }

    #[inline]
    fn open<A: AeadCipher>(
        self,
        cipher: &A,
        header: Header,
        nonce: &[u8; NONCE_LEN],
        aad_ext: &[u8],
    ) -> Result<Opened<'a>> {
        let payload_len = header.payload_len as usize;
        let (head, rest) = self.frame.split_at_checked(HEADER_LEN).ok_or(Error::Truncated)?;
        let (body, tag) = rest.split_at_checked(payload_len).ok_or(Error::Truncated)?;
        let tag: &[u8; TAG_LEN] = tag.try_into().map_err(|_| Error::Truncated)?;
        // The output's length is checked here, before any cryptography.
        let out = self.out.get_mut(..payload_len).ok_or(Error::BufferTooSmall)?;
        if aad_ext.is_empty() {
            cipher.open_detached_to(nonce, head, body, tag, out)?;
        } else {
            cipher.open_detached_to(nonce, Aad::new(head, aad_ext)?.as_slice(), body, tag, out)?;
        }
        Ok(Opened { header, payload: out })
    }
}

// ---------------------------------------------------------------------------
// Counter strategy
// ---------------------------------------------------------------------------

/// The sending half of one session direction (counter nonces).
pub struct CounterSender<P: CryptoProvider = crate::provider::DefaultProvider> {
    cipher: P::Aead256,
    iv: Secret<NONCE_LEN>,
    session_id: [u8; KEY_ID_LEN],
    next_seq: u64,
    limit: u64,
    blocks: u64,
    block_limit: u64,
}

impl<P: CryptoProvider> core::fmt::Debug for CounterSender<P> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("CounterSender")
            .field("session_id", &self.session_id)
            .field("next_seq", &self.next_seq)
            .finish_non_exhaustive()
    }
}

impl<P: CryptoProvider> CounterSender<P> {
    /// A sender starting at sequence number `first_seq`.
    ///
    /// # Errors
    /// [`Error::InvalidKey`] if the provider rejects the key.
    pub fn new(key: &Secret<32>, iv: Secret<NONCE_LEN>, session_id: [u8; KEY_ID_LEN], first_seq: u64) -> Result<Self> {
        Ok(Self {
            cipher: P::Aead256::new(key.expose())?,
            iv,
            session_id,
            next_seq: first_seq,
            limit: u64::MAX,
            blocks: 0,
            block_limit: u64::MAX,
        })
    }

    /// Lowers the last usable sequence number (exclusive): sealing at
    /// `limit` fails with [`Error::KeyExhausted`]. Used for AEAD usage
    /// limits and for counter reservations.
    pub fn set_limit(&mut self, limit: u64) {
        self.limit = limit;
    }

    /// Caps the AES blocks sealed under this key (the AES-GCM
    /// confidentiality limit counts blocks, not records). A seal that would
    /// pass the cap fails with [`Error::KeyExhausted`]. Counted in memory:
    /// for a key that outlives the process, cap the record size instead
    /// ([`LONG_KEY_MAX_PAYLOAD`]).
    pub fn set_block_limit(&mut self, blocks: u64) {
        self.block_limit = blocks;
    }

    /// AES blocks sealed under this key so far.
    pub const fn blocks(&self) -> u64 {
        self.blocks
    }

    /// The sequence number the next frame will carry.
    pub const fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// The session id written into every header.
    pub const fn session_id(&self) -> &[u8; KEY_ID_LEN] {
        &self.session_id
    }

    /// Seals `buf[HEADER_LEN..HEADER_LEN + payload_len]` in place, writing
    /// the header before it and the tag after it. Returns the frame length.
    ///
    /// # Errors
    /// [`Error::PayloadTooLarge`], [`Error::BufferTooSmall`], or
    /// [`Error::KeyExhausted`] when the sequence reaches its limit. Nothing
    /// is consumed on error.
    pub fn seal_in_place(&mut self, clock: &impl Clock, buf: &mut [u8], payload_len: usize) -> Result<usize> {
        self.seal_typed(FrameType::Record, &[], clock.now_ms(), buf, payload_len)
    }

    /// Seals a frame of any counter-strategy type with AAD `header ‖ aad_ext`.
    pub(crate) fn seal_typed(
        &mut self,
        frame_type: FrameType,
        aad_ext: &[u8],
        now: u64,
        buf: &mut [u8],
        payload_len: usize,
    ) -> Result<usize> {
        let seq = self.next_seq;
        let blocks = self.blocks.saturating_add(gcm_blocks(payload_len));
        if seq >= self.limit || blocks > self.block_limit {
            return Err(Error::KeyExhausted);
        }
        let header = header_for(frame_type, self.session_id, NonceField::Counter(seq), now, payload_len, buf.len())?;
        let n = seal_frame(&self.cipher, &header, &counter_nonce(self.iv.expose(), seq), aad_ext, buf)?;
        // seq < limit <= u64::MAX, so this cannot overflow.
        self.next_seq = seq.saturating_add(1);
        self.blocks = blocks;
        Ok(n)
    }

    /// Moves the next sequence number forward to `seq` (a range reserved
    /// in a store shared by several senders of one key: `SPEC.md` §17.3).
    ///
    /// # Errors
    /// [`Error::Misuse`] if `seq` is below the next sequence number: a
    /// sender never goes back (that would reuse a nonce).
    pub(crate) fn resume_at(&mut self, seq: u64) -> Result<()> {
        if seq < self.next_seq {
            return Err(Error::Misuse);
        }
        self.next_seq = seq;
        Ok(())
    }

    /// The last usable sequence number (exclusive).
    pub(crate) const fn limit(&self) -> u64 {
        self.limit
    }

    /// The cap on AES blocks sealed under this key.
    pub(crate) const fn block_limit(&self) -> u64 {
        self.block_limit
    }

    /// Copies `payload` into `out` and seals it there. Returns the frame length.
    ///
    /// # Errors
    /// As [`Self::seal_in_place`].
    pub fn seal(&mut self, clock: &impl Clock, payload: &[u8], out: &mut [u8]) -> Result<usize> {
        header_for(FrameType::Record, self.session_id, NonceField::Counter(0), 0, payload.len(), out.len())?;
        stage(payload, out)?;
        self.seal_in_place(clock, out, payload.len())
    }
}

/// The receiving half of one session direction, with a [`CounterWindow`] of
/// `W` words (`(W − 1) × 64` sequence numbers).
pub struct CounterReceiver<P: CryptoProvider = crate::provider::DefaultProvider, const W: usize = 32> {
    cipher: P::Aead256,
    iv: Secret<NONCE_LEN>,
    session_id: [u8; KEY_ID_LEN],
    window: CounterWindow<W>,
    floor: TimeFloor,
    freshness: Option<Freshness>,
    snapshot_key: SnapshotKey<P>,
    health: Health,
}

impl<P: CryptoProvider, const W: usize> core::fmt::Debug for CounterReceiver<P, W> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("CounterReceiver")
            .field("session_id", &self.session_id)
            .field("window_top", &self.window.top())
            .field("audit", &self.health.audit)
            .finish_non_exhaustive()
    }
}

impl<P: CryptoProvider, const W: usize> CounterReceiver<P, W> {
    /// A receiver with an empty window and no timestamp check. Sessions
    /// turn the freshness check on ([`crate::session::Limits::freshness`]).
    ///
    /// # Errors
    /// [`Error::InvalidKey`] if the provider rejects the key.
    pub fn new(key: &Secret<32>, iv: Secret<NONCE_LEN>, session_id: [u8; KEY_ID_LEN]) -> Result<Self> {
        Ok(Self {
            cipher: P::Aead256::new(key.expose())?,
            iv,
            session_id,
            window: CounterWindow::new(),
            floor: TimeFloor::NONE,
            freshness: None,
            snapshot_key: SnapshotKey::derive(key.expose()),
            health: Health::new(),
        })
    }

    /// Also checks each frame's timestamp against `freshness`.
    #[must_use]
    pub fn with_freshness(mut self, freshness: Freshness) -> Self {
        self.freshness = Some(freshness);
        self
    }

    /// A receiver that restarted without a valid snapshot: it refuses every
    /// frame stamped at or below `floor`, and checks freshness, without
    /// which a floor is unsound (a sender whose clock ran fast could have
    /// had frames above it accepted before the restart; `SPEC.md` §4.4).
    /// Take the floor from [`crate::replay::TimeMark::boot`].
    #[must_use]
    pub fn with_restart_floor(mut self, floor: TimeFloor, freshness: Freshness) -> Self {
        self.floor = floor;
        self.freshness = Some(freshness);
        self
    }

    /// Writes an authenticated snapshot of the window and floor, bound to
    /// this key and session id, tagged with `epoch` (`SPEC.md` §4.4).
    /// Returns its length.
    ///
    /// # Errors
    /// [`Error::Encode`] if `out` is too small (`W × 10 + 64` bytes always fit).
    pub fn snapshot(&self, epoch: u64, out: &mut [u8]) -> Result<usize> {
        let state = WindowState { window: self.window.clone(), floor: self.floor };
        self.snapshot_key.seal(Kind::Window, W, &self.session_id, epoch, &state, out)
    }

    /// Restores the window and floor from a snapshot this key and session
    /// wrote with epoch `trusted_epoch`. A restored receiver checks
    /// `freshness`.
    ///
    /// # Errors
    /// [`Error::Truncated`], [`Error::Authentication`] (forged, relabelled,
    /// or another key's or session's), [`Error::Rollback`], [`Error::Decode`],
    /// [`Error::TrailingBytes`]. On error the receiver is unchanged.
    pub fn restore(&mut self, snapshot: &[u8], trusted_epoch: u64, freshness: Freshness) -> Result<()> {
        let state = self.snapshot_key.open(Kind::Window, W, &self.session_id, trusted_epoch, snapshot)?;
        let state = WindowState::<W>::decode(state)?;
        self.window = state.window;
        self.floor = state.floor;
        self.freshness = Some(freshness);
        Ok(())
    }

    /// The replay window (for inspection and equality checks).
    pub const fn window(&self) -> &CounterWindow<W> {
        &self.window
    }

    /// The timestamp floor.
    pub const fn floor(&self) -> TimeFloor {
        self.floor
    }

    /// The audit counters.
    pub const fn audit(&self) -> &Audit {
        &self.health.audit
    }

    /// The session id this receiver accepts.
    pub const fn session_id(&self) -> &[u8; KEY_ID_LEN] {
        &self.session_id
    }

    /// Checks everything but the tag. Pure.
    #[inline]
    fn precheck(&self, expected: FrameType, buf: &[u8], now: u64) -> Result<(Header, u64)> {
        self.health.check()?;
        let h = parse_for(buf, expected, &self.session_id)?;
        let NonceField::Counter(seq) = h.nonce else {
            return Err(Error::Malformed);
        };
        self.floor.check(h.timestamp_ms)?;
        if let Some(f) = &self.freshness {
            f.check(h.timestamp_ms, now)?;
        }
        self.window.check(seq)?;
        Ok((h, seq))
    }

    /// Opens one frame in place. `frame` must hold exactly one frame.
    ///
    /// # Errors
    /// Parse errors, [`Error::UnexpectedFrame`], [`Error::UnknownSession`],
    /// [`Error::Stale`], [`Error::FromFuture`], [`Error::Replay`],
    /// [`Error::Authentication`], and [`Error::IntegrityLimit`] once the
    /// integrity limit is reached. On any error `frame` and the replay state
    /// are unchanged.
    pub fn open_in_place<'a>(&mut self, clock: &impl Clock, frame: &'a mut [u8]) -> Result<Opened<'a>> {
        self.open_typed(FrameType::Record, &[], clock.now_ms(), frame)
    }

    /// Opens one read-only frame into `out`, which must have room for the
    /// payload: the same checks as [`Self::open_in_place`], one pass, and no
    /// copy on a provider that decrypts while it authenticates.
    ///
    /// # Errors
    /// As [`Self::open_in_place`], and [`Error::BufferTooSmall`] if `out` is
    /// shorter than the payload (before any cryptography). On error `out`
    /// holds no plaintext and the replay state is unchanged.
    pub fn open_to<'a>(&mut self, clock: &impl Clock, frame: &[u8], out: &'a mut [u8]) -> Result<Opened<'a>> {
        self.open_typed(FrameType::Record, &[], clock.now_ms(), OpenInto { frame, out })
    }

    /// Opens a frame of the expected counter-strategy type with AAD `header ‖ aad_ext`.
    pub(crate) fn open_typed<'a, T: OpenTarget<'a>>(
        &mut self,
        expected: FrameType,
        aad_ext: &[u8],
        now: u64,
        frame: T,
    ) -> Result<Opened<'a>> {
        let r = self.precheck(expected, frame.frame(), now).and_then(|(h, seq)| {
            let opened = frame.open(&self.cipher, h, &counter_nonce(self.iv.expose(), seq), aad_ext)?;
            Ok((opened, seq))
        });
        match r {
            Ok((opened, seq)) => {
                self.window.commit(seq);
                self.health.audit.accept();
                Ok(opened)
            }
            Err(e) => Err(self.health.reject(e)),
        }
    }

    /// Authenticates a frame like [`Self::open_typed`] but records nothing
    /// in the window: the caller records `seq` with [`Self::commit_seq`]
    /// once a shared store accepted it (`SPEC.md` §17.2). A failed open
    /// counts as one, as in [`Self::open_typed`].
    pub(crate) fn open_typed_unrecorded<'a, T: OpenTarget<'a>>(
        &mut self,
        expected: FrameType,
        aad_ext: &[u8],
        now: u64,
        frame: T,
    ) -> Result<(Opened<'a>, u64)> {
        let r = self.precheck(expected, frame.frame(), now).and_then(|(h, seq)| {
            let opened = frame.open(&self.cipher, h, &counter_nonce(self.iv.expose(), seq), aad_ext)?;
            Ok((opened, seq))
        });
        r.map_err(|e| self.health.reject(e))
    }

    /// Records `seq`, authenticated by [`Self::open_typed_unrecorded`], in
    /// the window.
    ///
    /// # Errors
    /// [`Error::Replay`] or [`Error::Stale`] if the window refuses it now
    /// (it was recorded meanwhile); nothing changes then.
    pub(crate) fn commit_seq(&mut self, seq: u64) -> Result<()> {
        match self.window.check(seq) {
            Ok(()) => {
                self.window.commit(seq);
                self.health.audit.accept();
                Ok(())
            }
            Err(e) => Err(self.health.reject(e)),
        }
    }

    /// Sets how many failed decryptions are tolerated under this key (the
    /// AEAD integrity limit, default 2^36). At the limit every open fails
    /// with [`Error::IntegrityLimit`], a key update from the peer included:
    /// the key is dead, and the peer must re-handshake.
    pub fn set_max_failed(&mut self, max_failed: u64) {
        self.health.max_failed = max_failed;
    }

    /// Failed decryptions (bad tags) seen under this key.
    pub const fn failed(&self) -> u64 {
        self.health.failed
    }

    /// True once the integrity limit is reached (see [`Self::set_max_failed`]).
    pub const fn integrity_limit_reached(&self) -> bool {
        self.health.check().is_err()
    }
}

// ---------------------------------------------------------------------------
// Random strategy
// ---------------------------------------------------------------------------

/// Seals one-shot frames under a long-lived key with random 96-bit nonces
/// and an enforced invocation cap.
///
/// The invocation count survives reboots: it is reserved ahead in blocks in
/// a [`CounterStore`] (`SPEC.md` §10), so a reboot resumes at or above every
/// count used and the cap cannot be reset by restarting. Payloads are at
/// most [`LONG_KEY_MAX_PAYLOAD`] bytes.
pub struct OneShotSender<S: CounterStore, P: CryptoProvider = crate::provider::DefaultProvider> {
    cipher: P::Aead256,
    key_id: [u8; KEY_ID_LEN],
    used: u64,
    reserved_until: u64,
    block: u64,
    cap: u64,
    store: S,
}

impl<S: CounterStore, P: CryptoProvider> core::fmt::Debug for OneShotSender<S, P> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("OneShotSender")
            .field("key_id", &self.key_id)
            .field("used", &self.used)
            .field("cap", &self.cap)
            .finish_non_exhaustive()
    }
}

impl<S: CounterStore, P: CryptoProvider> OneShotSender<S, P> {
    /// Boots a sender with the default cap of 2³² invocations: resumes at
    /// the stored count (0 if none) and durably reserves `block` (at least
    /// 1) more before returning.
    ///
    /// # Errors
    /// [`Error::Storage`] if the store fails, [`Error::KeyExhausted`] if the
    /// stored count is at the cap, [`Error::InvalidKey`].
    pub fn boot(key: &Secret<32>, key_id: [u8; KEY_ID_LEN], mut store: S, block: u64) -> Result<Self> {
        let block = block.max(1);
        let used = store.load()?.unwrap_or(0);
        if used >= RANDOM_NONCE_MAX_INVOCATIONS {
            return Err(Error::KeyExhausted);
        }
        let reserved_until = used.saturating_add(block);
        store.store(reserved_until)?;
        Ok(Self {
            cipher: P::Aead256::new(key.expose())?,
            key_id,
            used,
            reserved_until,
            block,
            cap: RANDOM_NONCE_MAX_INVOCATIONS,
            store,
        })
    }

    /// Lowers the invocation cap. Values above 2³² are clamped to 2³².
    #[must_use]
    pub fn with_cap(mut self, cap: u64) -> Self {
        self.cap = cap.min(RANDOM_NONCE_MAX_INVOCATIONS);
        self
    }

    /// Invocations spent so far (including those lost to reboots).
    pub const fn used(&self) -> u64 {
        self.used
    }

    /// Invocations left before [`Error::KeyExhausted`].
    pub const fn remaining(&self) -> u64 {
        self.cap.saturating_sub(self.used)
    }

    /// Seals `buf[HEADER_LEN..HEADER_LEN + payload_len]` in place under a
    /// fresh random nonce. Returns the frame length.
    ///
    /// # Errors
    /// [`Error::KeyExhausted`] at the cap (rekey), [`Error::Storage`] if the
    /// next reservation cannot be made durable, [`Error::Rng`] if the RNG
    /// fails, [`Error::PayloadTooLarge`] above [`LONG_KEY_MAX_PAYLOAD`],
    /// [`Error::BufferTooSmall`]. Nothing is sealed on error.
    pub fn seal_in_place<R: rand_core::TryCryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        clock: &impl Clock,
        buf: &mut [u8],
        payload_len: usize,
    ) -> Result<usize> {
        if self.used >= self.cap {
            return Err(Error::KeyExhausted);
        }
        if payload_len > LONG_KEY_MAX_PAYLOAD {
            return Err(Error::PayloadTooLarge);
        }
        let mut nonce = [0u8; NONCE_LEN];
        let header = header_for(
            FrameType::Sealed,
            self.key_id,
            NonceField::Random(nonce),
            clock.now_ms(),
            payload_len,
            buf.len(),
        )?;
        if self.used >= self.reserved_until {
            let bound = self.used.saturating_add(self.block);
            self.store.store(bound)?;
            self.reserved_until = bound;
        }
        fill_random(rng, &mut nonce)?;
        let header = Header { nonce: NonceField::Random(nonce), ..header };
        let n = seal_frame(&self.cipher, &header, &nonce, &[], buf)?;
        self.used = self.used.saturating_add(1);
        Ok(n)
    }

    /// Copies `payload` into `out` and seals it there.
    ///
    /// # Errors
    /// As [`Self::seal_in_place`].
    pub fn seal<R: rand_core::TryCryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        clock: &impl Clock,
        payload: &[u8],
        out: &mut [u8],
    ) -> Result<usize> {
        header_for(FrameType::Sealed, self.key_id, NonceField::Random([0; NONCE_LEN]), 0, payload.len(), out.len())?;
        stage(payload, out)?;
        self.seal_in_place(rng, clock, out, payload.len())
    }

    /// Gives back the store.
    pub fn into_store(self) -> S {
        self.store
    }
}

/// Opens one-shot frames, with a [`NonceRing`] of `N` nonces and a
/// freshness window.
pub struct OneShotReceiver<P: CryptoProvider = crate::provider::DefaultProvider, const N: usize = 1024> {
    cipher: P::Aead256,
    key_id: [u8; KEY_ID_LEN],
    ring: NonceRing<N>,
    snapshot_key: SnapshotKey<P>,
    health: Health,
}

impl<P: CryptoProvider, const N: usize> core::fmt::Debug for OneShotReceiver<P, N> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("OneShotReceiver")
            .field("key_id", &self.key_id)
            .field("held", &self.ring.len())
            .field("audit", &self.health.audit)
            .finish_non_exhaustive()
    }
}

impl<P: CryptoProvider, const N: usize> OneShotReceiver<P, N> {
    /// A receiver with the given ring (new, or after a restart with the
    /// floor of [`crate::replay::TimeMark::boot`]).
    ///
    /// # Errors
    /// [`Error::InvalidKey`] if the provider rejects the key.
    pub fn new(key: &Secret<32>, key_id: [u8; KEY_ID_LEN], ring: NonceRing<N>) -> Result<Self> {
        Ok(Self {
            cipher: P::Aead256::new(key.expose())?,
            key_id,
            ring,
            snapshot_key: SnapshotKey::derive(key.expose()),
            health: Health::new(),
        })
    }

    /// A receiver restored from a snapshot that this key and key id wrote
    /// with epoch `trusted_epoch` (`SPEC.md` §4.4).
    ///
    /// # Errors
    /// [`Error::InvalidKey`], and those of [`NonceRing::restore`].
    pub fn restore(
        key: &Secret<32>,
        key_id: [u8; KEY_ID_LEN],
        snapshot: &[u8],
        trusted_epoch: u64,
        freshness: Freshness,
        hash_key: [u8; 16],
    ) -> Result<Self> {
        let snapshot_key = SnapshotKey::<P>::derive(key.expose());
        let ring = NonceRing::restore(snapshot, &snapshot_key, &key_id, trusted_epoch, freshness, hash_key)?;
        Self::new(key, key_id, ring)
    }

    /// Writes an authenticated snapshot of the ring, bound to this key and
    /// key id. Returns its length.
    ///
    /// # Errors
    /// [`Error::Encode`] if `out` is too small.
    pub fn snapshot(&self, epoch: u64, out: &mut [u8]) -> Result<usize> {
        self.ring.snapshot(&self.snapshot_key, &self.key_id, epoch, out)
    }

    /// Sets the integrity limit (default 2^36 failed decryptions); at the
    /// limit every open fails with [`Error::IntegrityLimit`]: rekey.
    pub fn set_max_failed(&mut self, max_failed: u64) {
        self.health.max_failed = max_failed;
    }

    /// The replay state.
    pub const fn ring(&self) -> &NonceRing<N> {
        &self.ring
    }

    /// The audit counters.
    pub const fn audit(&self) -> &Audit {
        &self.health.audit
    }

    fn precheck(&self, buf: &[u8], now: u64) -> Result<(Header, [u8; NONCE_LEN])> {
        self.health.check()?;
        let h = parse_for(buf, FrameType::Sealed, &self.key_id)?;
        let NonceField::Random(nonce) = h.nonce else {
            return Err(Error::Malformed);
        };
        self.ring.check(&nonce, h.timestamp_ms, now)?;
        Ok((h, nonce))
    }

    /// Opens one frame in place. `frame` must hold exactly one frame.
    ///
    /// # Errors
    /// Parse errors, [`Error::UnexpectedFrame`], [`Error::UnknownSession`],
    /// [`Error::Stale`], [`Error::FromFuture`], [`Error::Replay`],
    /// [`Error::Authentication`], [`Error::IntegrityLimit`]. On any error
    /// `frame` and the ring are unchanged.
    pub fn open_in_place<'a>(&mut self, clock: &impl Clock, frame: &'a mut [u8]) -> Result<Opened<'a>> {
        let now = clock.now_ms();
        let r = self
            .precheck(frame, now)
            .and_then(|(h, nonce)| Ok((open_frame(&self.cipher, h, &nonce, &[], frame)?, nonce)));
        match r {
            Ok((opened, nonce)) => {
                if self.ring.commit(&nonce, opened.header.timestamp_ms, now) == Some(Commit::EvictedFresh) {
                    self.health.audit.pressure();
                }
                self.health.audit.accept();
                Ok(opened)
            }
            Err(e) => Err(self.health.reject(e)),
        }
    }
}

// ---------------------------------------------------------------------------
// Reboot-safe counter sender
// ---------------------------------------------------------------------------

/// Records a key that outlives the process may seal: 2^24, the AES-GCM
/// confidentiality limit of RFC 9147 §4.5.3 for records of at most
/// [`LONG_KEY_MAX_PAYLOAD`] bytes.
pub const LONG_KEY_MAX_RECORDS: u64 = 1 << 24;

/// A [`CounterSender`] whose sequence numbers survive reboots.
///
/// Usage limits: at most [`LONG_KEY_MAX_RECORDS`] sequence numbers (counted
/// from 0 across every boot, since the sequence number itself persists) of
/// at most [`LONG_KEY_MAX_PAYLOAD`] bytes each; then [`Error::KeyExhausted`].
pub struct PersistentSender<S: CounterStore, P: CryptoProvider = crate::provider::DefaultProvider> {
    inner: CounterSender<P>,
    store: S,
    reserved_until: u64,
    block: u64,
}

impl<S: CounterStore, P: CryptoProvider> core::fmt::Debug for PersistentSender<S, P> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PersistentSender")
            .field("next_seq", &self.inner.next_seq())
            .field("reserved_until", &self.reserved_until)
            .field("block", &self.block)
            .finish_non_exhaustive()
    }
}

impl<S: CounterStore, P: CryptoProvider> PersistentSender<S, P> {
    /// Boots a sender: resumes at the stored bound (0 if none) and reserves
    /// the first block before returning. `block` (at least 1) trades flash
    /// writes against numbers skipped per reboot.
    ///
    /// # Errors
    /// [`Error::Storage`] if the store fails (nothing can be sealed until a
    /// reservation is durable), [`Error::KeyExhausted`] if the counter space
    /// is used up, [`Error::InvalidKey`].
    pub fn boot(
        key: &Secret<32>,
        iv: Secret<NONCE_LEN>,
        session_id: [u8; KEY_ID_LEN],
        mut store: S,
        block: u64,
    ) -> Result<Self> {
        let block = block.max(1);
        let start = store.load()?.unwrap_or(0);
        let reserved_until = start.checked_add(block).ok_or(Error::KeyExhausted)?;
        if start >= LONG_KEY_MAX_RECORDS {
            return Err(Error::KeyExhausted);
        }
        store.store(reserved_until)?;
        let mut inner = CounterSender::new(key, iv, session_id, start)?;
        inner.set_limit(LONG_KEY_MAX_RECORDS);
        Ok(Self { inner, store, reserved_until, block })
    }

    /// The sequence number the next frame will carry.
    pub const fn next_seq(&self) -> u64 {
        self.inner.next_seq()
    }

    /// The durable bound: no number at or above it has been used.
    pub const fn reserved_until(&self) -> u64 {
        self.reserved_until
    }

    /// Seals like [`CounterSender::seal_in_place`], first extending the
    /// reservation if the next number is not yet covered.
    ///
    /// # Errors
    /// [`Error::Storage`] if the reservation cannot be made durable (nothing
    /// is sealed), [`Error::PayloadTooLarge`] above [`LONG_KEY_MAX_PAYLOAD`],
    /// [`Error::KeyExhausted`] at [`LONG_KEY_MAX_RECORDS`], and the errors of
    /// [`CounterSender::seal_in_place`].
    pub fn seal_in_place(&mut self, clock: &impl Clock, buf: &mut [u8], payload_len: usize) -> Result<usize> {
        if payload_len > LONG_KEY_MAX_PAYLOAD {
            return Err(Error::PayloadTooLarge);
        }
        if self.inner.next_seq() >= LONG_KEY_MAX_RECORDS {
            return Err(Error::KeyExhausted);
        }
        if self.inner.next_seq() >= self.reserved_until {
            let bound = self.inner.next_seq().checked_add(self.block).ok_or(Error::KeyExhausted)?;
            self.store.store(bound)?;
            self.reserved_until = bound;
        }
        self.inner.seal_in_place(clock, buf, payload_len)
    }

    /// Copies `payload` into `out` and seals it there.
    ///
    /// # Errors
    /// As [`Self::seal_in_place`].
    pub fn seal(&mut self, clock: &impl Clock, payload: &[u8], out: &mut [u8]) -> Result<usize> {
        crate::wire::stage(payload, out)?;
        self.seal_in_place(clock, out, payload.len())
    }

    /// Gives back the store (for example, to shut down cleanly).
    pub fn into_store(self) -> S {
        self.store
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::provider::RustCrypto;

    #[test]
    fn counter_exhaustion_is_an_error_not_a_wrap() {
        let key = Secret::new([1u8; 32]);
        let clock = ManualClock::new(5);
        let mut tx = CounterSender::<RustCrypto>::new(&key, Secret::new([2; 12]), [3; 8], u64::MAX - 1).unwrap();
        let mut buf = [0u8; 64];
        tx.seal(&clock, b"x", &mut buf).unwrap();
        assert_eq!(tx.seal(&clock, b"x", &mut buf), Err(Error::KeyExhausted));
        assert_eq!(tx.next_seq(), u64::MAX);
    }

    #[test]
    fn random_cap_is_enforced() {
        struct Counting(u8);
        impl rand_core::TryRng for Counting {
            type Error = core::convert::Infallible;
            fn try_next_u32(&mut self) -> core::result::Result<u32, Self::Error> {
                Ok(0)
            }
            fn try_next_u64(&mut self) -> core::result::Result<u64, Self::Error> {
                Ok(0)
            }
            fn try_fill_bytes(&mut self, dst: &mut [u8]) -> core::result::Result<(), Self::Error> {
                self.0 = self.0.wrapping_add(1);
                dst.fill(self.0);
                Ok(())
            }
        }
        impl rand_core::TryCryptoRng for Counting {}
        let key = Secret::new([1u8; 32]);
        let clock = ManualClock::new(5);
        let mut store = crate::store::VolatileStore::new();
        let mut tx = OneShotSender::<_, RustCrypto>::boot(&key, [3; 8], &mut store, 1).unwrap().with_cap(2);
        let mut buf = [0u8; 64];
        let mut rng = Counting(0);
        tx.seal(&mut rng, &clock, b"a", &mut buf).unwrap();
        tx.seal(&mut rng, &clock, b"b", &mut buf).unwrap();
        assert_eq!(tx.seal(&mut rng, &clock, b"c", &mut buf), Err(Error::KeyExhausted));
        assert_eq!(tx.remaining(), 0);
        drop(tx);
        // A reboot resumes at the stored count: the cap is not reset.
        let tx = OneShotSender::<_, RustCrypto>::boot(&key, [3; 8], &mut store, 1).unwrap().with_cap(u64::MAX);
        assert_eq!(tx.remaining(), (1 << 32) - 2);
    }
}
