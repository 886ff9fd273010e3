//! One-shot requests to the server key (`SPEC.md` §11.3).
//!
//! A client that has no session can still send the server one request,
//! sealed with HPKE (RFC 9180, base or auth mode) to the server's public
//! key. Unlike a bare single-shot HPKE message, a request is accepted once:
//!
//! ```text
//! request = enc (65) ‖ timestamp (u64 BE, 8) ‖ ciphertext ‖ tag (16)
//! info    = "oncewire/1 request" ‖ app_info
//! aad     = timestamp (8) ‖ app_aad
//! ```
//!
//! The timestamp is authenticated (it is in the AAD). The receiver checks,
//! in order and before any cryptography: the length, the timestamp's
//! freshness, and a replay cache keyed on `SHA-256("oncewire/1 request id"
//! ‖ enc)[..12]`; then it opens, and only a request that authenticated is
//! recorded. A replay has the same `enc` (a new `enc` needs a new HPKE
//! context, which only the sender can make), so it is refused as `Replay`
//! while held and as `Stale` once evicted below the floor.
//!
//! [`RequestReceiver::open_unrecorded`] runs the same checks without
//! recording, and returns the [`Once`] for a store shared by several servers
//! to accept (`SPEC.md` §15.1).
//!
//! ```
//! use oncewire::clock::ManualClock;
//! use oncewire::hpke::KeyPair;
//! use oncewire::replay::Freshness;
//! use oncewire::request::{RequestReceiver, RequestSender, REQUEST_OVERHEAD, PAYLOAD_OFFSET};
//! use oncewire::rng::OsRng;
//! use oncewire::{Error, Secret};
//!
//! let clock = ManualClock::new(1_767_225_600_000);
//! let server: KeyPair = KeyPair::generate(&mut OsRng)?;
//! let mut rx: RequestReceiver = RequestReceiver::new(&Secret::new([7; 32]), Freshness::DEFAULT);
//!
//! let msg = b"POST /unlock";
//! let mut buf = [0u8; REQUEST_OVERHEAD + 12];
//! buf[PAYLOAD_OFFSET..][..msg.len()].copy_from_slice(msg);
//! let n = RequestSender::new(*server.public_key())
//!     .seal(&mut OsRng, &clock, None, b"app", b"", &mut buf, msg.len())?;
//! let mut copy = buf;
//! assert_eq!(rx.open(&server, None, &clock, b"app", b"", &mut buf[..n])?.payload, msg);
//! // The same request again is a replay.
//! assert_eq!(rx.open(&server, None, &clock, b"app", b"", &mut copy[..n]).unwrap_err(), Error::Replay);
//! # Ok::<(), oncewire::Error>(())
//! ```

use crate::cache::{Once, Purpose, ReplayCache};
use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::hpke::{Aes256Gcm, ENC_LEN, HpkeAead, KeyPair, RecipientContext, SenderContext, TAG_LEN};
use crate::keyschedule::request_id;
use crate::provider::{CryptoProvider, PublicKey};
use crate::replay::{Freshness, TimeFloor};
use crate::secret::Secret;
use core::marker::PhantomData;
use rand_core::TryCryptoRng;

use crate::keyschedule::labels::REQUEST_INFO as REQUEST_INFO_LABEL;
/// Longest `app_info`.
pub const MAX_APP_INFO: usize = 64;
/// Longest `app_aad`.
pub const MAX_APP_AAD: usize = 64;
/// Offset of the message in a request buffer: after `enc` and the timestamp.
pub const PAYLOAD_OFFSET: usize = ENC_LEN + 8;
/// Bytes a request adds to its message: `enc`, timestamp and tag.
pub const REQUEST_OVERHEAD: usize = PAYLOAD_OFFSET + TAG_LEN;

/// `"oncewire/1 request" ‖ app_info`, on the stack.
fn info_of(app_info: &[u8], out: &mut [u8; REQUEST_INFO_LABEL.len() + MAX_APP_INFO]) -> Result<usize> {
    let total = REQUEST_INFO_LABEL.len().checked_add(app_info.len()).ok_or(Error::PayloadTooLarge)?;
    let dst = out.get_mut(..total).ok_or(Error::PayloadTooLarge)?;
    let (label, rest) = dst.split_at_mut(REQUEST_INFO_LABEL.len());
    label.copy_from_slice(REQUEST_INFO_LABEL);
    rest.copy_from_slice(app_info);
    Ok(total)
}

/// `timestamp ‖ app_aad`, on the stack.
fn aad_of(ts: u64, app_aad: &[u8], out: &mut [u8; 8 + MAX_APP_AAD]) -> Result<usize> {
    let total = 8usize.checked_add(app_aad.len()).ok_or(Error::PayloadTooLarge)?;
    let dst = out.get_mut(..total).ok_or(Error::PayloadTooLarge)?;
    let (t, rest) = dst.split_at_mut(8);
    t.copy_from_slice(&ts.to_be_bytes());
    rest.copy_from_slice(app_aad);
    Ok(total)
}

/// The client side: seals one-shot requests to one server's request key.
pub struct RequestSender<A: HpkeAead = Aes256Gcm, P: CryptoProvider = crate::provider::DefaultProvider> {
    server: PublicKey,
    _p: PhantomData<(A, P)>,
}

impl<A: HpkeAead, P: CryptoProvider> core::fmt::Debug for RequestSender<A, P> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RequestSender").field("server", &self.server).finish_non_exhaustive()
    }
}

impl RequestSender {
    /// A sender to the server whose request key is `server`, with AES-256-GCM
    /// and the default provider.
    pub const fn new(server: PublicKey) -> Self {
        Self { server, _p: PhantomData }
    }
}

impl<A: HpkeAead, P: CryptoProvider> RequestSender<A, P> {
    /// A sender with another AEAD or provider.
    pub const fn with_suite(server: PublicKey) -> Self {
        Self { server, _p: PhantomData }
    }

    /// Seals a request in place: put the message at
    /// `buf[PAYLOAD_OFFSET..PAYLOAD_OFFSET + msg_len]`; `enc`, the timestamp
    /// and the tag are written around it. The timestamp comes from `clock`
    /// (in a session's server time base: [`crate::Session::server_clock`]).
    /// With `sender`, auth mode (the server learns which static key sent
    /// it). Returns `msg_len + REQUEST_OVERHEAD`.
    ///
    /// # Errors
    /// [`Error::BufferTooSmall`], [`Error::PayloadTooLarge`] (`app_info` or
    /// `app_aad` above 64 bytes), [`Error::Rng`], [`Error::InvalidKey`].
    #[allow(clippy::too_many_arguments)]
    pub fn seal<R: TryCryptoRng + ?Sized>(
        &self,
        rng: &mut R,
        clock: &impl Clock,
        sender: Option<&KeyPair<P>>,
        app_info: &[u8],
        app_aad: &[u8],
        buf: &mut [u8],
        msg_len: usize,
    ) -> Result<usize> {
        let total = msg_len.checked_add(REQUEST_OVERHEAD).ok_or(Error::BufferTooSmall)?;
        let buf = buf.get_mut(..total).ok_or(Error::BufferTooSmall)?;
        let ts = clock.now_ms();
        let mut info = [0u8; REQUEST_INFO_LABEL.len() + MAX_APP_INFO];
        let info_len = info_of(app_info, &mut info)?;
        let mut aad = [0u8; 8 + MAX_APP_AAD];
        let aad_len = aad_of(ts, app_aad, &mut aad)?;
        let info = info.get(..info_len).ok_or(Error::PayloadTooLarge)?;
        let (enc, mut ctx) = match sender {
            None => SenderContext::<A, P>::base(rng, &self.server, info)?,
            Some(s) => SenderContext::<A, P>::auth(rng, &self.server, info, s)?,
        };
        let (head, body) = buf.split_at_mut(PAYLOAD_OFFSET);
        ctx.seal_in_place(aad.get(..aad_len).ok_or(Error::PayloadTooLarge)?, body, msg_len)?;
        let (enc_slot, ts_slot) = head.split_at_mut(ENC_LEN);
        enc_slot.copy_from_slice(enc.as_bytes());
        ts_slot.copy_from_slice(&ts.to_be_bytes());
        Ok(total)
    }
}

/// An opened request: its authenticated timestamp and the plaintext, in
/// place. `Debug` never shows the plaintext.
pub struct OpenedRequest<'a> {
    /// The sender's authenticated timestamp, Unix ms.
    pub timestamp_ms: u64,
    /// The plaintext, inside the caller's buffer.
    pub payload: &'a mut [u8],
}

impl core::fmt::Debug for OpenedRequest<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("OpenedRequest")
            .field("timestamp_ms", &self.timestamp_ms)
            .field("payload_len", &self.payload.len())
            .finish_non_exhaustive()
    }
}

/// The server side: opens requests sealed to its key, each at most once.
pub struct RequestReceiver<
    A: HpkeAead = Aes256Gcm,
    P: CryptoProvider = crate::provider::DefaultProvider,
    const N: usize = 1024,
> {
    cache: ReplayCache<P, N>,
    _a: PhantomData<A>,
}

impl<A: HpkeAead, P: CryptoProvider, const N: usize> core::fmt::Debug for RequestReceiver<A, P, N> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RequestReceiver").field("cache", &self.cache).finish_non_exhaustive()
    }
}

impl<A: HpkeAead, P: CryptoProvider, const N: usize> RequestReceiver<A, P, N> {
    /// A receiver with an empty cache. `state_key` is a server secret that
    /// keys the cache (and its snapshots); `freshness` bounds the requests'
    /// timestamps.
    pub fn new(state_key: &Secret<32>, freshness: Freshness) -> Self {
        Self { cache: ReplayCache::new(Purpose::Requests, state_key, freshness), _a: PhantomData }
    }

    /// A receiver with a state key drawn from `rng` (it dies with the
    /// receiver; pair it with a request key that does too).
    ///
    /// # Errors
    /// [`Error::Rng`].
    pub fn generate<R: TryCryptoRng + ?Sized>(rng: &mut R, freshness: Freshness) -> Result<Self> {
        let mut state_key = Secret::<32>::zero();
        crate::provider::fill_random(rng, state_key.expose_mut())?;
        Ok(Self::new(&state_key, freshness))
    }

    /// A receiver after a restart without a snapshot, refusing everything at
    /// or below `floor` ([`crate::replay::TimeMark::boot`]).
    pub fn after_restart(state_key: &Secret<32>, freshness: Freshness, floor: TimeFloor) -> Self {
        Self { cache: ReplayCache::after_restart(Purpose::Requests, state_key, freshness, floor), _a: PhantomData }
    }

    /// A receiver restored from [`Self::snapshot`] (same `state_key`,
    /// capacity, and epoch `trusted_epoch`).
    ///
    /// # Errors
    /// As [`ReplayCache::restore`].
    pub fn restore(state_key: &Secret<32>, freshness: Freshness, snapshot: &[u8], trusted_epoch: u64) -> Result<Self> {
        Ok(Self {
            cache: ReplayCache::restore(Purpose::Requests, state_key, freshness, snapshot, trusted_epoch)?,
            _a: PhantomData,
        })
    }

    /// Writes an authenticated snapshot of the cache. Returns its length.
    ///
    /// # Errors
    /// [`Error::Encode`] if `out` is too small.
    pub fn snapshot(&self, epoch: u64, out: &mut [u8]) -> Result<usize> {
        self.cache.snapshot(epoch, out)
    }

    /// The replay cache (for inspection and its audit counters).
    pub const fn cache(&self) -> &ReplayCache<P, N> {
        &self.cache
    }

    /// Opens a request sealed to `recipient` (in auth mode, by `pk_s`), and
    /// records it in the receiver's cache: [`Self::open_unrecorded`], then
    /// [`ReplayCache::accept`] of its [`Once`].
    ///
    /// # Errors
    /// In order: [`Error::Truncated`], [`Error::Stale`] /
    /// [`Error::FromFuture`], [`Error::Replay`], [`Error::PayloadTooLarge`]
    /// (`app_info` or `app_aad` too long), [`Error::InvalidKey`] (bad `enc`),
    /// [`Error::Authentication`]. On any error `buf` and the cache are
    /// unchanged (the rejection is counted in the cache's audit).
    pub fn open<'a>(
        &mut self,
        recipient: &KeyPair<P>,
        pk_s: Option<&PublicKey>,
        clock: &impl Clock,
        app_info: &[u8],
        app_aad: &[u8],
        buf: &'a mut [u8],
    ) -> Result<OpenedRequest<'a>> {
        let now = clock.now_ms();
        match self.open_at(recipient, pk_s, now, app_info, app_aad, buf) {
            // Checked against this cache at this `now` under `&mut self`,
            // so the accept cannot fail.
            Ok((opened, once)) => self.cache.accept(&once, now).map(|()| opened),
            Err(e) => Err(self.cache.refuse(e)),
        }
    }

    /// Every check of [`Self::open`], in the same order (the length, the
    /// timestamp's freshness and this receiver's own cache before any ECDH;
    /// then HPKE), without recording anything. Returns the opened request
    /// and the [`Once`] to record (`Purpose::Requests`, the id from `enc`
    /// and the timestamp, `SPEC.md` §11.3) in the store that decides
    /// acceptance (`SPEC.md` §15.1): the request must not be acted on
    /// unless the store accepts it.
    ///
    /// Takes `&self`: it counts nothing either, so the store counts its
    /// rejections ([`ReplayCache::refuse`]). Where a shared store records,
    /// this receiver's cache stays empty and only pre-checks freshness.
    ///
    /// # Errors
    /// Those of [`Self::open`]. On any error `buf` is unchanged.
    pub fn open_unrecorded<'a>(
        &self,
        recipient: &KeyPair<P>,
        pk_s: Option<&PublicKey>,
        clock: &impl Clock,
        app_info: &[u8],
        app_aad: &[u8],
        buf: &'a mut [u8],
    ) -> Result<(OpenedRequest<'a>, Once)> {
        self.open_at(recipient, pk_s, clock.now_ms(), app_info, app_aad, buf)
    }

    fn open_at<'a>(
        &self,
        recipient: &KeyPair<P>,
        pk_s: Option<&PublicKey>,
        now: u64,
        app_info: &[u8],
        app_aad: &[u8],
        buf: &'a mut [u8],
    ) -> Result<(OpenedRequest<'a>, Once)> {
        let once = Self::precheck(&self.cache, buf, now)?;
        let mut info = [0u8; REQUEST_INFO_LABEL.len() + MAX_APP_INFO];
        let info_len = info_of(app_info, &mut info)?;
        let info = info.get(..info_len).ok_or(Error::PayloadTooLarge)?;
        let mut aad = [0u8; 8 + MAX_APP_AAD];
        let aad_len = aad_of(once.timestamp_ms, app_aad, &mut aad)?;
        let (head, body) = buf.split_at_mut(PAYLOAD_OFFSET);
        let enc = head.get(..ENC_LEN).ok_or(Error::Truncated)?;
        let mut ctx = match pk_s {
            None => RecipientContext::<A, P>::base(enc, recipient, info)?,
            Some(pk_s) => RecipientContext::<A, P>::auth(enc, recipient, info, pk_s)?,
        };
        let payload = ctx.open_in_place(aad.get(..aad_len).ok_or(Error::PayloadTooLarge)?, body)?;
        Ok((OpenedRequest { timestamp_ms: once.timestamp_ms, payload }, once))
    }

    /// The length, then the id and timestamp against the cache. Pure.
    fn precheck(cache: &ReplayCache<P, N>, buf: &[u8], now: u64) -> Result<Once> {
        if buf.len() < REQUEST_OVERHEAD {
            return Err(Error::Truncated);
        }
        let (enc, rest) = buf.split_at_checked(ENC_LEN).ok_or(Error::Truncated)?;
        let (ts, _) = rest.split_first_chunk::<8>().ok_or(Error::Truncated)?;
        let once = Once { purpose: Purpose::Requests, id: request_id::<P>(enc), timestamp_ms: u64::from_be_bytes(*ts) };
        cache.check_once(&once, now)?;
        Ok(once)
    }
}
