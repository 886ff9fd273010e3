//! The backend: oncewire's routes, and layers that open sealed requests for
//! your axum handlers and seal their replies.
//!
//! ```no_run
//! use axum::{Router, routing::post};
//! use oncewire_http::provider::ServerKey;
//! use oncewire::rng::OsRng;
//! use oncewire_http::server::{Backend, Need, Opened, VerifiedDevice};
//!
//! async fn hello(VerifiedDevice(device): VerifiedDevice, Opened(body): Opened) -> Vec<u8> {
//!     format!("{device:?} sent {} bytes", body.len()).into_bytes()
//! }
//! async fn pay(Opened(body): Opened) -> &'static str {
//!     "paid" // only reached if the challenge and the token proof checked out
//! }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let key: ServerKey = ServerKey::generate(&mut OsRng)?;
//! let backend = Backend::builder(key).build()?;
//! let app = Router::new()
//!     .route("/hello", post(hello))
//!     .route("/pay", post(pay).route_layer(backend.require(Need::CHALLENGE_AND_TOKEN)));
//! let router = backend.router().merge(backend.sealed(app));
//! backend.spawn_sweeper(std::time::Duration::from_secs(10));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! axum::serve(listener, router).await?;
//! # Ok(()) }
//! ```
//!
//! What a handler behind [`Backend::sealed`] sees is plaintext: the
//! request body was opened (and counted as accepted once) before the
//! handler runs, and whatever the handler returns is sealed and bound to
//! that request before it leaves (its status stays visible; its body and
//! headers other than the content type do not travel). The extractors
//! [`VerifiedDevice`], [`Opened`], [`CheckedToken`] and [`ChallengeBound`]
//! only succeed on a request that went through the layers, so a handler
//! mounted without them cannot be reached by mistake.
//!
//! Concurrency: no lock of the backend is held across cryptography. A
//! session's own lock is held while its frame is opened and while its reply
//! is sealed, never across your handler.

use crate::metrics::{Metrics, Reason, Route};
use crate::provider::{
    EnrollmentIssuer, KeyPair, Provider, ReplayCache, RequestReceiver, ServerKey, Session, StatelessChallenges,
    TokenIssuer, TokenVerifier,
};
use crate::store::{
    DeviceRegistry, MemoryOnce, MemoryPending, MemoryRegistry, MemorySessions, OnceStore, PendingStore, Refusal,
    SessionHandle, SessionId, SessionStore,
};
use crate::{CONTENT_TYPE, NEXT_ACTION_HEADER, SESSION_HEADER, SharedClock, parse_session_hex, refusal, session_hex};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use oncewire::bound::{BoundRequest, Checks};
use oncewire::cache::{Once, Purpose};
use oncewire::challenge::{CHALLENGE_LEN, Challenge};
use oncewire::clock::SystemClock;
use oncewire::device::{EnrollmentRequest, ReEnrollment};
use oncewire::handshake::MAX_HANDSHAKE_LEN;
use oncewire::replay::Freshness;
use oncewire::rng::{OsRng, TryRng};
use oncewire::token::{Claims, MAX_TOKEN_LEN};
use oncewire::wire::buffer_len;
use oncewire::{Clock, CryptoProvider, DeviceId, Error, Limits, PublicKey, Received, RequestId, Secret, SeqUse};
use std::sync::Arc;
use zeroize::Zeroizing;

/// The `info` of every one-shot request (`SPEC.md` §16.5); its AAD is the
/// request's path.
pub const ONE_SHOT_INFO: &[u8] = b"oncewire-http/1 one-shot";

/// The longest enrollment body: a challenge and an enrollment request.
const MAX_ENROLL_BODY: usize = CHALLENGE_LEN + oncewire::device::MAX_ENROLLMENT_REQUEST_LEN;

/// The longest path a one-shot request can be bound to.
pub const MAX_ONE_SHOT_PATH: usize = oncewire::request::MAX_APP_AAD;

/// Settings of a [`Backend`]; [`Config::default`] suits most services.
#[derive(Clone, Copy, Debug)]
pub struct Config {
    /// Session limits (lifetime, rekeying, freshness of records).
    pub limits: Limits,
    /// The largest body of a sealed call, one-shot request or reply, in bytes
    /// (refused beyond it, 400 `drop`, before anything else is read).
    pub max_body: usize,
    /// Lifetime of enrollment and request challenges, in ms.
    pub challenge_ttl_ms: u64,
    /// Freshness window of one-shot requests and token proofs.
    pub freshness: Freshness,
    /// Lifetime of tokens the backend issues, in ms.
    pub token_ttl_ms: u64,
    /// What a second enrollment under a known device id does (`SPEC.md` §8.3).
    pub re_enrollment: ReEnrollment,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            limits: Limits::DEFAULT,
            max_body: 64 * 1024,
            challenge_ttl_ms: 60_000,
            freshness: Freshness::DEFAULT,
            token_ttl_ms: 300_000,
            re_enrollment: ReEnrollment::Refuse,
        }
    }
}

/// What a bound route requires of each request (`SPEC.md` §12, §13).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Need {
    /// An answer to a fresh challenge from `POST /oncewire/v1/challenge`.
    pub challenge: bool,
    /// A token from `POST /oncewire/v1/token` with a fresh proof of possession.
    pub token: bool,
}

impl Need {
    /// A challenge answer only.
    pub const CHALLENGE: Self = Self { challenge: true, token: false };
    /// A token use only.
    pub const TOKEN: Self = Self { challenge: false, token: true };
    /// Both, over one hash of the request.
    pub const CHALLENGE_AND_TOKEN: Self = Self { challenge: true, token: true };
}

/// The system clock shifted by an adjustable offset, shared between
/// threads: for tests and demos that move a backend's time.
#[derive(Clone, Debug, Default)]
pub struct ShiftedClock(Arc<std::sync::atomic::AtomicI64>);

impl ShiftedClock {
    /// No shift.
    pub fn new() -> Self {
        Self::default()
    }

    /// Moves this clock (and its clones) `ms` forward (negative: back).
    pub fn shift(&self, ms: i64) {
        self.0.fetch_add(ms, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Clock for ShiftedClock {
    fn now_ms(&self) -> u64 {
        SystemClock.now_ms().saturating_add_signed(self.0.load(std::sync::atomic::Ordering::SeqCst))
    }
}

struct Inner<R, S, P, O> {
    key: ServerKey,
    clock: SharedClock,
    config: Config,
    /// Enrollment challenges: issued and checked with no lock; their used
    /// set is the once store's (a fleet shares it).
    enrollments: Box<EnrollmentIssuer>,
    challenges: Box<StatelessChallenges>,
    request_key: KeyPair,
    /// Opens one-shot requests; never records (the once store does), so it
    /// is shared without a lock.
    requests: Box<RequestReceiver>,
    tokens: TokenIssuer,
    verifier: TokenVerifier<'static>,
    /// An empty proof cache, for the core's freshness pre-check of proofs
    /// (the once store records them).
    no_proofs: Box<ReplayCache>,
    registry: R,
    sessions: S,
    pending: P,
    once: O,
    metrics: Metrics,
}

/// An oncewire backend: build it with [`Backend::builder`], mount
/// [`Backend::router`] and your routes behind [`Backend::sealed`].
pub struct Backend<R = MemoryRegistry, S = MemorySessions, P = MemoryPending, O = MemoryOnce> {
    inner: Arc<Inner<R, S, P, O>>,
}

impl<R, S, P, O> Clone for Backend<R, S, P, O> {
    fn clone(&self) -> Self {
        Self { inner: self.inner.clone() }
    }
}

impl<R, S, P, O> core::fmt::Debug for Backend<R, S, P, O> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Backend").field("server_key", self.inner.key.public_key()).finish_non_exhaustive()
    }
}

/// Builds a [`Backend`]; in-memory stores unless you give others.
pub struct Builder<R, S, P, O> {
    key: ServerKey,
    config: Config,
    registry: R,
    sessions: S,
    pending: P,
    once: Option<O>,
    tokens: Option<TokenIssuer>,
    fleet: Option<Secret<32>>,
    clock: SharedClock,
}

impl<R, S, P, O> core::fmt::Debug for Builder<R, S, P, O> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Builder").field("config", &self.config).finish_non_exhaustive()
    }
}

impl Backend {
    /// A builder for the backend of `key`, with [`Config::default`], at
    /// most 100,000 sessions and 10,000 pending handshakes in memory.
    pub fn builder(key: ServerKey) -> Builder<MemoryRegistry, MemorySessions, MemoryPending, MemoryOnce> {
        Builder {
            key,
            config: Config::default(),
            registry: MemoryRegistry::new(),
            sessions: MemorySessions::new(100_000),
            pending: MemoryPending::new(10_000),
            once: None,
            tokens: None,
            fleet: None,
            clock: SharedClock::system(),
        }
    }
}

impl<R, S, P, O> Builder<R, S, P, O> {
    /// The settings.
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// The clock (the system clock otherwise).
    pub fn clock(mut self, clock: impl Clock + Send + Sync + 'static) -> Self {
        self.clock = SharedClock::new(clock);
        self
    }

    /// The key tokens are signed with (one is generated otherwise).
    pub fn token_issuer(mut self, issuer: TokenIssuer) -> Self {
        self.tokens = Some(issuer);
        self
    }

    /// The secret every server of a fleet shares (`SPEC.md` §17.1): the
    /// keys that must be the same on each of them are derived from it
    /// rather than drawn at random, so that a challenge issued by one
    /// server verifies on another, a one-shot request sealed to the
    /// request key one server published opens on every server, and a
    /// token one issued is accepted by all. Derived (HKDF-SHA256, one label
    /// each): the enrollment and request-challenge MAC keys and their
    /// used-set hash keys, the HPKE request key, the request receiver's
    /// state key and, unless [`Self::token_issuer`] gives one, the token
    /// signing key. Keep it as you keep the server key.
    pub fn fleet_secret(mut self, secret: Secret<32>) -> Self {
        self.fleet = Some(secret);
        self
    }

    /// The device registry (for example a database).
    pub fn registry<R2: DeviceRegistry>(self, registry: R2) -> Builder<R2, S, P, O> {
        Builder {
            key: self.key,
            config: self.config,
            registry,
            sessions: self.sessions,
            pending: self.pending,
            once: self.once,
            tokens: self.tokens,
            fleet: self.fleet,
            clock: self.clock,
        }
    }

    /// The session store.
    pub fn sessions<S2: SessionStore>(self, sessions: S2) -> Builder<R, S2, P, O> {
        Builder {
            key: self.key,
            config: self.config,
            registry: self.registry,
            sessions,
            pending: self.pending,
            once: self.once,
            tokens: self.tokens,
            fleet: self.fleet,
            clock: self.clock,
        }
    }

    /// The store of pending handshakes.
    pub fn pending<P2: PendingStore>(self, pending: P2) -> Builder<R, S, P2, O> {
        Builder {
            key: self.key,
            config: self.config,
            registry: self.registry,
            sessions: self.sessions,
            pending,
            once: self.once,
            tokens: self.tokens,
            fleet: self.fleet,
            clock: self.clock,
        }
    }

    /// The accepted-once store (a [`MemoryOnce`] sized to the config otherwise).
    pub fn once<O2: OnceStore>(self, once: O2) -> Builder<R, S, P, O2> {
        Builder {
            key: self.key,
            config: self.config,
            registry: self.registry,
            sessions: self.sessions,
            pending: self.pending,
            once: Some(once),
            tokens: self.tokens,
            fleet: self.fleet,
            clock: self.clock,
        }
    }
}

/// The audience of the tokens a backend issues and accepts.
pub const TOKEN_AUDIENCE: &str = "oncewire-http";

impl<R: DeviceRegistry, S: SessionStore, P: PendingStore> Builder<R, S, P, MemoryOnce> {
    /// The backend.
    ///
    /// # Errors
    /// [`Error::Rng`].
    pub fn build(mut self) -> Result<Backend<R, S, P, MemoryOnce>, Error> {
        if self.once.is_none() {
            self.once = Some(MemoryOnce::new(self.config.freshness, self.config.challenge_ttl_ms)?);
        }
        self.build_with()
    }
}

impl<R: DeviceRegistry, S: SessionStore, P: PendingStore, O: OnceStore> Builder<R, S, P, O> {
    /// The backend, with the once store given by [`Builder::once`].
    ///
    /// # Errors
    /// [`Error::Rng`]; [`Error::Misuse`] if no once store was given.
    pub fn build_with(self) -> Result<Backend<R, S, P, O>, Error> {
        let c = self.config;
        let keys = match &self.fleet {
            Some(secret) => SharedKeys::derive(secret, c)?,
            None => SharedKeys::generate(c)?,
        };
        let tokens = match (self.tokens, keys.tokens) {
            (Some(t), _) => t,
            (None, Some(t)) => t,
            (None, None) => TokenIssuer::generate(&mut OsRng)?,
        };
        let verifier = TokenVerifier::new(*tokens.public_key(), TOKEN_AUDIENCE, 0);
        Ok(Backend {
            inner: Arc::new(Inner {
                key: self.key,
                clock: self.clock,
                config: c,
                enrollments: keys.enrollments,
                challenges: keys.challenges,
                request_key: keys.request_key,
                requests: keys.requests,
                tokens,
                verifier,
                no_proofs: boxed(|| ReplayCache::generate(Purpose::TokenProofs, &mut OsRng, c.freshness))?,
                registry: self.registry,
                sessions: self.sessions,
                pending: self.pending,
                once: self.once.ok_or(Error::Misuse)?,
                metrics: Metrics::default(),
            }),
        })
    }
}

/// The keys a fleet's servers must share, drawn at random for one server
/// or derived from the fleet secret.
struct SharedKeys {
    enrollments: Box<EnrollmentIssuer>,
    challenges: Box<StatelessChallenges>,
    request_key: KeyPair,
    requests: Box<RequestReceiver>,
    tokens: Option<TokenIssuer>,
}

impl SharedKeys {
    fn generate(c: Config) -> Result<Self, Error> {
        Ok(Self {
            enrollments: boxed(|| EnrollmentIssuer::generate(&mut OsRng, c.challenge_ttl_ms))?,
            challenges: boxed(|| StatelessChallenges::generate(&mut OsRng, c.challenge_ttl_ms))?,
            request_key: KeyPair::generate(&mut OsRng)?,
            requests: boxed(|| RequestReceiver::generate(&mut OsRng, c.freshness))?,
            tokens: None,
        })
    }

    fn derive(secret: &Secret<32>, c: Config) -> Result<Self, Error> {
        let key = |label: &[u8]| -> Result<Secret<32>, Error> {
            let mut out = Secret::<32>::zero();
            Provider::hkdf_expand(secret, &[b"oncewire-http fleet ", label], out.expose_mut())?;
            Ok(out)
        };
        let hash_key = |label: &[u8]| -> Result<[u8; 16], Error> {
            let k = key(label)?;
            let mut out = [0u8; 16];
            out.copy_from_slice(k.expose().get(..16).ok_or(Error::Misuse)?);
            Ok(out)
        };
        let enroll =
            StatelessChallenges::new(key(b"enrollment mac")?, c.challenge_ttl_ms, hash_key(b"enrollment hash")?);
        let challenges =
            StatelessChallenges::new(key(b"challenge mac")?, c.challenge_ttl_ms, hash_key(b"challenge hash")?);
        Ok(Self {
            enrollments: Box::new(EnrollmentIssuer::new(enroll)),
            challenges: Box::new(challenges),
            request_key: KeyPair::from_bytes(&key(b"request key")?)?,
            requests: Box::new(RequestReceiver::new(&key(b"request state")?, c.freshness)),
            tokens: Some(TokenIssuer::from_bytes(&key(b"token key")?)?),
        })
    }
}

/// Builds a large value in a frame of its own and moves it to the heap.
#[inline(never)]
fn boxed<T>(f: impl FnOnce() -> Result<T, Error>) -> Result<Box<T>, Error> {
    f().map(Box::new)
}

/// A refusal: an opaque status and the next action, nothing else.
///
/// Inside [`Backend::sealed`] (a bound route's checks, an extractor that
/// failed) a refusal leaves unsealed, as every refusal does (`SPEC.md`
/// §16.1), so the client sees its next action.
pub fn refuse(e: Error) -> Response {
    let (status, action) = refusal(e);
    let mut r = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST).into_response();
    r.headers_mut().insert(NEXT_ACTION_HEADER, HeaderValue::from_static(action));
    r.extensions_mut().insert(RefusalMark(action));
    r
}

/// Marks a response made by [`refuse`].
#[derive(Clone, Copy, Debug)]
struct RefusalMark(&'static str);

fn oncewire_body(status: StatusCode, body: Vec<u8>, session: Option<&SessionId>) -> Response {
    let mut r = (status, body).into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    if let Some(id) = session {
        if let Ok(v) = HeaderValue::from_str(&session_hex(id)) {
            r.headers_mut().insert(SESSION_HEADER, v);
        }
    }
    r
}

fn session_of(headers: &HeaderMap) -> Result<SessionId, Error> {
    let v = headers.get(SESSION_HEADER).ok_or(Error::UnknownSession)?;
    parse_session_hex(v.to_str().map_err(|_| Error::UnknownSession)?)
}

/// Where the opened payload (at address `addr`, `len` bytes) sits in
/// `frame`, if it is the slice right after the header (how records open
/// in place).
fn frame_payload_at(frame: &[u8], addr: usize, len: usize) -> Option<core::ops::Range<usize>> {
    let start = oncewire::wire::HEADER_LEN;
    let end = start.checked_add(len)?;
    let slot = frame.get(start..end)?;
    (slot.as_ptr().addr() == addr).then_some(start..end)
}

/// Reads a body up to `max` bytes into a buffer that is wiped when dropped
/// (sealed frames are opened in place; replies hold plaintext).
async fn read_body(body: Body, max: usize) -> Result<Zeroizing<Vec<u8>>, Error> {
    // `Vec::from(Bytes)` takes the buffer over without a copy when it can.
    read_bytes(body, max).await.map(|b| Zeroizing::new(Vec::from(b)))
}

/// Reads a body up to `max` bytes, without copying it.
async fn read_bytes(body: Body, max: usize) -> Result<Bytes, Error> {
    axum::body::to_bytes(body, max).await.map_err(|_| Error::PayloadTooLarge)
}

fn lock(s: &SessionHandle) -> Result<std::sync::MutexGuard<'_, Session>, Error> {
    s.lock().map_err(|_| Error::Storage)
}

/// What the sealing layer learned of a request: put in its extensions for
/// the extractors.
#[derive(Clone, Debug)]
struct SealedCall {
    session: SessionId,
    device: DeviceId,
}

/// The device of the session a sealed request came in: authenticated at
/// the handshake, and this request's frame opened under that session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VerifiedDevice(pub DeviceId);

/// The opened body of a sealed request (or a one-shot request), for a
/// handler behind [`Backend::sealed`] or [`Backend::one_shot`]. On a bound
/// route it is the request alone, its challenge and token parts removed.
#[derive(Clone)]
pub struct Opened(pub Bytes);

impl core::fmt::Debug for Opened {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Opened({} bytes, redacted)", self.0.len())
    }
}

/// A token checked on a bound route: issued by this backend, bound to the
/// device's key, used once with a fresh proof over this exact request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckedToken {
    /// The subject (the device id it was issued to).
    pub subject: Vec<u8>,
    /// When it expires, in ms since the Unix epoch.
    pub expires_at_ms: u64,
    /// When the proof of this use was made (the client's clock, corrected).
    pub used_at_ms: u64,
}

/// Proof that a request answered a fresh challenge, used once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChallengeBound;

/// A one-shot request's authenticated timestamp.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OneShot {
    /// When the client sealed it (its clock).
    pub timestamp_ms: u64,
}

macro_rules! from_extension {
    ($t:ty) => {
        impl<St: Send + Sync> FromRequestParts<St> for $t {
            type Rejection = Response;
            async fn from_request_parts(parts: &mut Parts, _: &St) -> Result<Self, Self::Rejection> {
                parts.extensions.get::<$t>().cloned().ok_or_else(|| refuse(Error::Misuse))
            }
        }
    };
}

impl<St: Send + Sync> FromRequestParts<St> for VerifiedDevice {
    type Rejection = Response;
    async fn from_request_parts(parts: &mut Parts, _: &St) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<SealedCall>().map(|c| Self(c.device)).ok_or_else(|| refuse(Error::Misuse))
    }
}
from_extension!(CheckedToken);
from_extension!(ChallengeBound);
from_extension!(OneShot);

/// Marks a body the layers opened, so [`Opened`] cannot take a raw body.
#[derive(Clone, Copy, Debug)]
struct OpenedMark;

impl<St: Send + Sync> FromRequest<St> for Opened {
    type Rejection = Response;
    async fn from_request(req: Request, _: &St) -> Result<Self, Self::Rejection> {
        if req.extensions().get::<OpenedMark>().is_none() {
            return Err(refuse(Error::Misuse));
        }
        let body = axum::body::to_bytes(req.into_body(), usize::MAX).await.map_err(|_| refuse(Error::Storage))?;
        Ok(Self(body))
    }
}

/// Splits a bound call's plaintext: `bound_len (1) ‖ bound ‖ token_len (u16
/// BE) ‖ token ‖ request` (`SPEC.md` §16.4.1).
fn split_bound(plain: &[u8]) -> Result<(BoundRequest, &[u8], &[u8]), Error> {
    let (&n, rest) = plain.split_first().ok_or(Error::Truncated)?;
    let (bound, rest) = rest.split_at_checked(usize::from(n)).ok_or(Error::Truncated)?;
    let (len, rest) = rest.split_first_chunk::<2>().ok_or(Error::Truncated)?;
    let len = usize::from(u16::from_be_bytes(*len));
    if len > MAX_TOKEN_LEN {
        return Err(Error::PayloadTooLarge);
    }
    let (token, request) = rest.split_at_checked(len).ok_or(Error::Truncated)?;
    Ok((BoundRequest::from_bytes(bound)?, token, request))
}

impl<R: DeviceRegistry, S: SessionStore, P: PendingStore, O: OnceStore> Backend<R, S, P, O> {
    /// The public key clients pin.
    pub fn public_key(&self) -> PublicKey {
        *self.inner.key.public_key()
    }

    /// The key one-shot requests are sealed to (clients fetch it over a
    /// session, `POST /oncewire/v1/request-key`, so it is authenticated).
    pub fn request_key(&self) -> PublicKey {
        *self.inner.request_key.public_key()
    }

    /// The key tokens are signed with.
    pub fn token_key(&self) -> PublicKey {
        *self.inner.tokens.public_key()
    }

    /// The backend's clock.
    pub fn clock(&self) -> &SharedClock {
        &self.inner.clock
    }

    /// The settings.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The device registry.
    pub fn registry(&self) -> &R {
        &self.inner.registry
    }

    /// The session store.
    pub fn session_store(&self) -> &S {
        &self.inner.sessions
    }

    /// The pending-handshake store.
    pub fn pending_store(&self) -> &P {
        &self.inner.pending
    }

    /// The accepted-once store.
    pub fn once_store(&self) -> &O {
        &self.inner.once
    }

    /// The counters.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// Established sessions.
    pub fn sessions(&self) -> usize {
        self.inner.sessions.len()
    }

    /// oncewire's own routes, under `/oncewire/v1` (`SPEC.md` §16):
    /// enrollment, the handshake, challenges, and (sealed) the request key
    /// and tokens.
    pub fn router(&self) -> Router {
        // Every oncewire route is POST; any other method is refused as
        // oncewire refuses (`drop`), not with a bare 405.
        let plain = Router::new()
            .route("/oncewire/v1/enroll/challenge", post(enroll_challenge::<R, S, P, O>).fallback(wrong_method))
            .route("/oncewire/v1/enroll", post(enroll::<R, S, P, O>).fallback(wrong_method))
            .route("/oncewire/v1/handshake", post(handshake::<R, S, P, O>).fallback(wrong_method))
            .route("/oncewire/v1/handshake/finish", post(finish::<R, S, P, O>).fallback(wrong_method))
            .route("/oncewire/v1/challenge", post(challenge::<R, S, P, O>).fallback(wrong_method))
            .with_state(self.clone());
        let sealed = Router::new()
            .route("/oncewire/v1/request-key", post(request_key::<R, S, P, O>))
            .route("/oncewire/v1/token", post(token::<R, S, P, O>))
            .with_state(self.clone());
        plain.merge(self.sealed(sealed))
    }

    /// `GET /metrics`: the counters in the Prometheus text format. Mount it
    /// where your scraper reaches it.
    pub fn metrics_router(&self) -> Router {
        Router::new().route("/metrics", get(metrics::<R, S, P, O>)).with_state(self.clone())
    }

    /// Puts `app` behind the sealing layer: every request must be a record
    /// of an established session (`Oncewire-Session` header), is opened and
    /// accepted once before a handler sees its plaintext, and every reply
    /// is sealed and bound to it.
    pub fn sealed<St: Clone + Send + Sync + 'static>(&self, app: Router<St>) -> Router<St> {
        app.layer(from_fn_with_state(self.clone(), sealed_layer::<R, S, P, O>))
    }

    /// Puts `app` behind the one-shot layer: every request must be a
    /// one-shot HPKE request (`SPEC.md` §11.3) sealed to
    /// [`Backend::request_key`] for the request's path, and is accepted
    /// once. There is no sealed reply: the handler's status is returned,
    /// its body dropped.
    pub fn one_shot<St: Clone + Send + Sync + 'static>(&self, app: Router<St>) -> Router<St> {
        app.layer(from_fn_with_state(self.clone(), one_shot_layer::<R, S, P, O>))
    }

    /// A route layer (inside [`Backend::sealed`]) that requires a challenge
    /// answer and/or a token use of every request, checks them over one
    /// hash of the request, and records them once.
    pub fn require(&self, need: Need) -> RequireLayer<R, S, P, O> {
        let f: BoundFn<R, S, P, O> = |s, r, n| Box::pin(bound_layer(s, r, n));
        from_fn_with_state((self.clone(), need), f)
    }

    /// Drops expired sessions and pending handshakes (run it periodically,
    /// for example with [`Backend::spawn_sweeper`]).
    pub async fn sweep(&self) -> (usize, usize) {
        let now = self.inner.clock.now_ms();
        (self.inner.sessions.sweep(now).await, self.inner.pending.sweep(now).await)
    }

    /// Sweeps every `period` on the tokio runtime.
    pub fn spawn_sweeper(&self, period: std::time::Duration) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            let mut t = tokio::time::interval(period);
            loop {
                t.tick().await;
                me.sweep().await;
            }
        })
    }

    fn refused(&self, route: Route, e: Error, set: Option<Purpose>, session: Option<&SessionId>) -> Response {
        self.inner.metrics.rejected(route, Reason::of(e, set));
        match session {
            Some(id) => tracing::info!(route = ?route, session = %session_hex(id), error = %e, "oncewire: refused"),
            None => tracing::info!(route = ?route, error = %e, "oncewire: refused"),
        }
        refuse(e)
    }

    fn refused_with(&self, route: Route, r: Refusal, session: Option<&SessionId>) -> Response {
        self.refused(route, r.error, r.set, session)
    }
}

async fn wrong_method() -> Response {
    refuse(Error::Malformed)
}

/// The future a [`Backend::require`] layer returns.
pub type BoxFuture = std::pin::Pin<Box<dyn Future<Output = Response> + Send>>;

type BoundFn<R, S, P, O> = fn(State<(Backend<R, S, P, O>, Need)>, Request, Next) -> BoxFuture;

/// The layer [`Backend::require`] returns.
pub type RequireLayer<R, S, P, O> = axum::middleware::FromFnLayer<
    BoundFn<R, S, P, O>,
    (Backend<R, S, P, O>, Need),
    (State<(Backend<R, S, P, O>, Need)>, Request),
>;

async fn enroll_challenge<R: DeviceRegistry, S: SessionStore, P: PendingStore, O: OnceStore>(
    State(b): State<Backend<R, S, P, O>>,
) -> Response {
    let issued = b.inner.enrollments.issue(&mut OsRng, &b.inner.clock);
    match issued {
        Ok(c) => oncewire_body(StatusCode::OK, c.as_bytes().to_vec(), None),
        Err(e) => b.refused(Route::Enroll, e, None, None),
    }
}

async fn enroll<R: DeviceRegistry, S: SessionStore, P: PendingStore, O: OnceStore>(
    State(b): State<Backend<R, S, P, O>>,
    body: Body,
) -> Response {
    let s = &b.inner;
    let body = match read_body(body, MAX_ENROLL_BODY).await {
        Ok(b) => b,
        Err(e) => return b.refused(Route::Enroll, e, None, None),
    };
    let verified = (|| {
        let (challenge, request) = body.split_at_checked(CHALLENGE_LEN).ok_or(Error::Truncated)?;
        let challenge = Challenge::from_bytes(challenge)?;
        let request = EnrollmentRequest::from_bytes(request)?;
        s.enrollments.verify_unrecorded(s.key.public_key(), &challenge, &request, &s.clock)
    })();
    let (d, once) = match verified {
        Ok(v) => v,
        Err(e) => return b.refused(Route::Enroll, e, None, None),
    };
    // The challenge is used once (in the shared set), then the registry
    // applies the policy atomically with its own lookup.
    if let Err(r) = s.once.accept(&[once], s.clock.now_ms()).await {
        let error = match r.error {
            Error::Expired(_) => Error::Expired(oncewire::Expiry::Enrollment),
            e => e,
        };
        return b.refused(Route::Enroll, error, r.set, None);
    }
    let r = s.registry.enroll(d, s.config.re_enrollment).await.map(|a| (d, a));
    match r {
        Ok((d, admission)) => {
            s.metrics.accepted(Route::Enroll);
            tracing::info!(device = ?d.device, admission = ?admission, "oncewire: enrolled");
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => b.refused(Route::Enroll, e, None, None),
    }
}

async fn handshake<R: DeviceRegistry, S: SessionStore, P: PendingStore, O: OnceStore>(
    State(b): State<Backend<R, S, P, O>>,
    body: Body,
) -> Response {
    let s = &b.inner;
    let body = match read_body(body, MAX_HANDSHAKE_LEN).await {
        Ok(b) => b,
        Err(e) => return b.refused(Route::Handshake, e, None, None),
    };
    let mut out = [0u8; MAX_HANDSHAKE_LEN];
    let r = s.key.accept(&mut OsRng, &s.clock, &body, s.config.limits, &mut out);
    let r = match r {
        Ok((pending, n)) => {
            let id = *pending.session_id();
            s.pending.insert(id, pending).await.map(|()| (id, n))
        }
        Err(e) => Err(e),
    };
    match r {
        Ok((id, n)) => {
            s.metrics.accepted(Route::Handshake);
            oncewire_body(StatusCode::OK, out.get(..n).unwrap_or_default().to_vec(), Some(&id))
        }
        Err(e) => b.refused(Route::Handshake, e, None, None),
    }
}

async fn finish<R: DeviceRegistry, S: SessionStore, P: PendingStore, O: OnceStore>(
    State(b): State<Backend<R, S, P, O>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let id = session_of(&headers).ok();
    let body = match read_body(body, MAX_HANDSHAKE_LEN).await {
        Ok(b) => b,
        Err(e) => return b.refused(Route::Finish, e, None, id.as_ref()),
    };
    match finish_steps(&b, id, body).await {
        Ok(device) => {
            b.inner.metrics.accepted(Route::Finish);
            if let Some(id) = &id {
                tracing::info!(session = %session_hex(id), device = ?device, "oncewire: session established");
            }
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => b.refused(Route::Finish, e, None, id.as_ref()),
    }
}

/// Message 3 in the core's two steps, with the registry lookup (which may
/// be a database round trip) in between and no lock held across it.
async fn finish_steps<R: DeviceRegistry, S: SessionStore, P: PendingStore, O: OnceStore>(
    b: &Backend<R, S, P, O>,
    id: Option<SessionId>,
    mut msg3: Zeroizing<Vec<u8>>,
) -> Result<DeviceId, Error> {
    let s = &b.inner;
    let id = id.ok_or(Error::UnknownSession)?;
    // Taken out of the store before any cryptography runs: message 3 is tried once.
    let pending = s.pending.take(&id).await?.ok_or(Error::UnknownSession)?;
    let step = pending.read_finish::<32>(&s.clock, &mut msg3)?;
    let device = *step.device();
    let key = s.registry.device_key(&device).await?.ok_or(Error::UnknownDevice)?;
    let session: Session = step.verify(&s.clock, &key)?;
    s.sessions.insert(id, session).await?;
    Ok(device)
}

async fn challenge<R: DeviceRegistry, S: SessionStore, P: PendingStore, O: OnceStore>(
    State(b): State<Backend<R, S, P, O>>,
) -> Response {
    match b.inner.challenges.issue(&mut OsRng, &b.inner.clock) {
        Ok(c) => oncewire_body(StatusCode::OK, c.as_bytes().to_vec(), None),
        Err(e) => b.refused(Route::Bound, e, None, None),
    }
}

async fn request_key<R: DeviceRegistry, S: SessionStore, P: PendingStore, O: OnceStore>(
    State(b): State<Backend<R, S, P, O>>,
    _: VerifiedDevice,
) -> Vec<u8> {
    b.inner.request_key.public_key().as_bytes().to_vec()
}

async fn token<R: DeviceRegistry, S: SessionStore, P: PendingStore, O: OnceStore>(
    State(b): State<Backend<R, S, P, O>>,
    VerifiedDevice(device): VerifiedDevice,
) -> Response {
    let s = &b.inner;
    let r = async {
        let key = s.registry.device_key(&device).await?.ok_or(Error::UnknownDevice)?;
        let mut jti = [0u8; 16];
        OsRng.try_fill_bytes(&mut jti).map_err(|_| Error::Rng)?;
        let now = s.clock.now_ms();
        let claims = Claims {
            iss: TOKEN_AUDIENCE,
            sub: device.as_bytes(),
            aud: TOKEN_AUDIENCE,
            iat: now,
            nbf: now,
            exp: now.saturating_add(s.config.token_ttl_ms),
            jti: &jti,
            cnf: s.tokens.cnf(&key),
        };
        let mut out = vec![0u8; MAX_TOKEN_LEN];
        let n = s.tokens.issue(&claims, &mut out)?;
        out.truncate(n);
        Ok::<_, Error>(out)
    };
    match r.await {
        Ok(t) => t.into_response(),
        // Sealed by the layer with the refusal's status and next action.
        Err(e) => b.refused(Route::Call, e, None, None),
    }
}

async fn metrics<R: DeviceRegistry, S: SessionStore, P: PendingStore, O: OnceStore>(
    State(b): State<Backend<R, S, P, O>>,
) -> Response {
    let s = &b.inner;
    let mut gauges = vec![
        ("oncewire_sessions", "Established sessions held.", u64::try_from(s.sessions.len()).unwrap_or(u64::MAX)),
        (
            "oncewire_pending_handshakes",
            "Handshakes awaiting message 3.",
            u64::try_from(s.pending.len()).unwrap_or(u64::MAX),
        ),
    ];
    let audits = s.once.audits();
    let names: Vec<(String, String, u64)> = audits
        .iter()
        .flat_map(|(p, a)| {
            let set = match p {
                Purpose::Requests => "one_shot",
                Purpose::TokenProofs => "token_proofs",
                Purpose::Challenges => "challenges",
            };
            [
                (format!("oncewire_once_{set}_accepted"), "Uses recorded by the once store.", a.accepted),
                (
                    format!("oncewire_once_{set}_ring_pressure"),
                    "Fresh entries evicted (the floor rose).",
                    a.ring_pressure,
                ),
            ]
            .map(|(n, h, v)| (n, h.to_owned(), v))
        })
        .collect();
    for (n, h, v) in &names {
        gauges.push((n.as_str(), h.as_str(), *v));
    }
    let mut r = s.metrics.render(&gauges).into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4"));
    r
}

async fn sealed_layer<R: DeviceRegistry, S: SessionStore, P: PendingStore, O: OnceStore>(
    State(b): State<Backend<R, S, P, O>>,
    req: Request,
    next: Next,
) -> Response {
    let s = &b.inner;
    // Only POST carries a sealed request: nothing else is opened (or used up).
    if req.method() != axum::http::Method::POST {
        return b.refused(Route::Call, Error::Malformed, None, None);
    }
    let id = match session_of(req.headers()) {
        Ok(id) => id,
        Err(e) => return b.refused(Route::Call, e, None, None),
    };
    let (mut parts, body) = req.into_parts();
    // Lengths first: nothing is read past the limit, no cryptography runs on it.
    let mut frame = match read_body(body, s.config.max_body).await {
        Ok(f) => f,
        Err(e) => return b.refused(Route::Call, e, None, Some(&id)),
    };
    let mut handle = match s.sessions.get(&id).await {
        Ok(Some(h)) => h,
        Ok(None) => return b.refused(Route::Call, Error::UnknownSession, None, Some(&id)),
        Err(e) => return b.refused(Route::Call, e, None, Some(&id)),
    };
    // The session's own lock, for the open alone. Authenticated here,
    // recorded by the store (shared by the fleet, or this process alone).
    let mut opened = open_unrecorded(&handle, &s.clock, &mut frame);
    if opened.as_ref().err() == Some(&Error::Authentication) {
        // Another server may have moved the session on (a key update): a
        // shared store hands a fresher copy, tried once. The failed open
        // left the frame as it was.
        match s.sessions.refresh(&id, &handle).await {
            Ok(Some(fresh)) => {
                handle = fresh;
                opened = open_unrecorded(&handle, &s.clock, &mut frame);
            }
            Ok(None) => {}
            Err(e) => return b.refused(Route::Call, e, None, Some(&id)),
        }
    }
    let opened = match opened {
        Ok(call) => s.sessions.commit(&id, &handle, call.1).await.map(|()| call),
        Err(e) => Err(e),
    };
    let (device, rid, plain) = match opened {
        Ok((device, used, Some((addr, len)))) => match frame_payload_at(&frame, addr, len) {
            // Opened in place, right after the header: handed on without a copy.
            Some(range) => (
                device,
                RequestId { generation: used.generation, seq: used.seq },
                Bytes::from(std::mem::take(&mut *frame)).slice(range),
            ),
            None => return b.refused(Route::Call, Error::Misuse, None, Some(&id)),
        },
        Ok((_, _, None)) => {
            s.metrics.accepted(Route::Call);
            return oncewire_body(StatusCode::NO_CONTENT, Vec::new(), None);
        }
        Err(e) => {
            if matches!(e, Error::IntegrityLimit | Error::Expired(_)) {
                let _ = s.sessions.remove(&id).await;
            }
            return b.refused(Route::Call, e, None, Some(&id));
        }
    };
    s.metrics.accepted(Route::Call);
    parts.extensions.insert(SealedCall { session: id, device });
    parts.extensions.insert(OpenedMark);
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    let response = next.run(Request::from_parts(parts, Body::from(plain))).await;

    // A refusal from inside (a bound route's checks, an extractor) leaves
    // as it is: unsealed, empty, with its next action.
    if let Some(RefusalMark(action)) = response.extensions().get::<RefusalMark>().copied() {
        let mut r = response.status().into_response();
        r.headers_mut().insert(NEXT_ACTION_HEADER, HeaderValue::from_static(action));
        return r;
    }
    // Seal whatever the handler answered, bound to this request.
    let (rparts, rbody) = response.into_parts();
    let reply = match read_bytes(rbody, s.config.max_body).await {
        Ok(r) => r,
        Err(e) => return b.refused(Route::Call, e, None, Some(&id)),
    };
    if let Err(e) = s.sessions.reserve(&id, &handle, reply.len()).await {
        return b.refused(Route::Call, e, None, Some(&id));
    }
    let sealed = lock(&handle).and_then(|mut session| {
        let mut out = vec![0u8; buffer_len(reply.len())];
        let n = session.seal_response(&s.clock, rid, &reply, &mut out)?;
        out.truncate(n);
        Ok(out)
    });
    match sealed {
        Ok(out) => {
            let mut r = oncewire_body(rparts.status, out, None);
            // Only what a client needs to act on travels in the clear.
            if let Some(v) = rparts.headers.get(NEXT_ACTION_HEADER) {
                r.headers_mut().insert(NEXT_ACTION_HEADER, v.clone());
            }
            r
        }
        Err(e) => b.refused(Route::Call, e, None, Some(&id)),
    }
}

/// What a sealed call's open hands on: the device, the frame to record,
/// and where the plaintext lies in the frame (`None` for a key update).
type OpenedCall = (DeviceId, SeqUse, Option<(usize, usize)>);

fn open_unrecorded(handle: &SessionHandle, clock: &SharedClock, frame: &mut [u8]) -> Result<OpenedCall, Error> {
    let mut session = lock(handle)?;
    let device = session.device().copied().ok_or(Error::Misuse)?;
    match session.open_unrecorded(clock, frame)? {
        (Received::Record(opened, _), used) => {
            Ok((device, used, Some((opened.payload.as_ptr().addr(), opened.payload.len()))))
        }
        (Received::KeyUpdated { .. }, used) => Ok((device, used, None)),
    }
}

async fn bound_layer<R: DeviceRegistry, S: SessionStore, P: PendingStore, O: OnceStore>(
    State((b, need)): State<(Backend<R, S, P, O>, Need)>,
    req: Request,
    next: Next,
) -> Response {
    let s = &b.inner;
    let Some(call) = req.extensions().get::<SealedCall>().cloned() else {
        // Mounted outside the sealing layer: a configuration error.
        return b.refused(Route::Bound, Error::Misuse, None, None);
    };
    let (mut parts, body) = req.into_parts();
    let plain = match read_bytes(body, s.config.max_body).await {
        Ok(p) => p,
        Err(e) => return b.refused(Route::Bound, e, None, Some(&call.session)),
    };
    let checked = async {
        let (bound, token, request) = split_bound(&plain)?;
        let key = s.registry.device_key(&call.device).await?.ok_or(Error::UnknownDevice)?;
        let checks = Checks {
            challenges: need.challenge.then_some(&s.challenges),
            token: need.token.then_some((&s.verifier, &s.no_proofs, token)),
        };
        let (verified, onces) = bound.verify_unrecorded(checks, &s.clock, request, &key)?;
        let token = verified.map(|t| CheckedToken {
            subject: t.claims().sub.to_vec(),
            expires_at_ms: t.claims().exp,
            used_at_ms: bound.proof.map_or(0, |p| p.iat),
        });
        let onces: Vec<Once> = onces.iter().copied().collect();
        Ok::<_, Error>((token, onces, request.len()))
    }
    .await;
    let (token, onces, request_len) = match checked {
        Ok(c) => c,
        Err(e) => return b.refused(Route::Bound, e, None, Some(&call.session)),
    };
    // Recorded once, all parts together, only now that every part checked out.
    if let Err(r) = s.once.accept(&onces, s.clock.now_ms()).await {
        return b.refused_with(Route::Bound, r, Some(&call.session));
    }
    s.metrics.accepted(Route::Bound);
    if let Some(t) = token {
        parts.extensions.insert(t);
    }
    if need.challenge {
        parts.extensions.insert(ChallengeBound);
    }
    let start = plain.len().saturating_sub(request_len);
    let request = plain.slice(start.min(plain.len())..);
    next.run(Request::from_parts(parts, Body::from(request))).await
}

async fn one_shot_layer<R: DeviceRegistry, S: SessionStore, P: PendingStore, O: OnceStore>(
    State(b): State<Backend<R, S, P, O>>,
    req: Request,
    next: Next,
) -> Response {
    let s = &b.inner;
    if req.method() != axum::http::Method::POST {
        return b.refused(Route::OneShot, Error::Malformed, None, None);
    }
    let (mut parts, body) = req.into_parts();
    let path = parts.uri.path().as_bytes().to_vec();
    let mut buf = match read_body(body, s.config.max_body).await {
        Ok(f) => f,
        Err(e) => return b.refused(Route::OneShot, e, None, None),
    };
    let opened = s
        .requests
        .open_unrecorded(&s.request_key, None, &s.clock, ONE_SHOT_INFO, &path, &mut buf)
        .map(|(o, once)| (o.timestamp_ms, o.payload.to_vec(), once));
    let (ts, plain, once) = match opened {
        Ok(o) => o,
        Err(e) => return b.refused(Route::OneShot, e, None, None),
    };
    if let Err(r) = s.once.accept(&[once], s.clock.now_ms()).await {
        return b.refused_with(Route::OneShot, r, None);
    }
    s.metrics.accepted(Route::OneShot);
    parts.extensions.insert(OneShot { timestamp_ms: ts });
    parts.extensions.insert(OpenedMark);
    parts.headers.remove(header::CONTENT_LENGTH);
    let response = next.run(Request::from_parts(parts, Body::from(plain))).await;
    // No sealed channel back: the status alone.
    response.status().into_response()
}
