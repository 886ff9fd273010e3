//! Every refusal a client can meet, over real HTTP on loopback.
//!
//! Each test starts its own backend (a [`ShiftedClock`] to move its time),
//! mounts oncewire's routes, a plain sealed route, three bound routes (a
//! challenge and a token, a challenge, a token), two one-shot routes and the
//! metrics, and plays one attack with the client's raw helpers. Each checks
//! the HTTP status and `Oncewire-Next-Action`, that the application handler
//! never ran, that exactly the expected refusal was counted (and no other),
//! that the refusal carries nothing but its status and next action, and
//! that no state changed: the genuine request still goes through afterwards,
//! and the session and registry counts are as before.
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::arithmetic_side_effects
)]

use axum::Router;
use axum::routing::post;
use oncewire::bound::{BoundRequest, MAX_BOUND_LEN};
use oncewire::clock::SystemClock;
use oncewire_http::provider::{ClientHandshake, ServerKey, Session, SoftwareSigner};

use oncewire::handshake::MAX_HANDSHAKE_LEN;
use oncewire::rng::{OsRng, TryRng};
use oncewire::session::Limits;
use oncewire::wire::{HEADER_LEN, buffer_len};
use oncewire::{DeviceId, Error, Expiry, RequestId, Secret};
use oncewire_http::client::{Client, ClientError, RawReply, SealedRequest};
use oncewire_http::metrics::{Reason, Route};
use oncewire_http::server::{
    Backend, ChallengeBound, CheckedToken, Config, Need, OneShot, Opened, ShiftedClock, VerifiedDevice,
};
use oncewire_http::store::{
    DeviceRegistry, MemoryOnce, MemoryPending, MemoryRegistry, MemorySessions, PendingStore, SessionStore,
};
use oncewire_http::{CONTENT_TYPE, NEXT_ACTION_HEADER, SESSION_HEADER, session_hex};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

// ---------------------------------------------------------------------------
// The server under test
// ---------------------------------------------------------------------------

/// How many times each application handler ran.
#[derive(Clone, Default)]
struct Hits {
    /// `/echo` (sealed, no binding).
    echo: Arc<AtomicUsize>,
    /// `/pay` (a challenge and a token).
    pay: Arc<AtomicUsize>,
    /// `/door` (a challenge).
    door: Arc<AtomicUsize>,
    /// `/profile` (a token).
    profile: Arc<AtomicUsize>,
    /// `/a` (one-shot).
    a: Arc<AtomicUsize>,
    /// `/b` (one-shot).
    b: Arc<AtomicUsize>,
}

fn count(c: &AtomicUsize) -> usize {
    c.load(Ordering::SeqCst)
}

impl Hits {
    /// (echo, pay, door, profile, a, b).
    fn all(&self) -> [usize; 6] {
        [&self.echo, &self.pay, &self.door, &self.profile, &self.a, &self.b].map(|c| count(c))
    }
}

struct Server<S = MemorySessions, P = MemoryPending> {
    backend: Backend<MemoryRegistry, S, P, MemoryOnce>,
    base: String,
    clock: ShiftedClock,
    hits: Hits,
    http: reqwest::Client,
}

async fn serve() -> Server {
    serve_with(Config::default(), MemorySessions::new(1_000), MemoryPending::new(1_000)).await
}

async fn serve_with<S: SessionStore, P: PendingStore>(config: Config, sessions: S, pending: P) -> Server<S, P> {
    let key: ServerKey = ServerKey::generate(&mut OsRng).unwrap();
    let clock = ShiftedClock::new();
    let backend =
        Backend::builder(key).config(config).clock(clock.clone()).sessions(sessions).pending(pending).build().unwrap();
    let hits = Hits::default();

    let h = hits.echo.clone();
    let echo = move |VerifiedDevice(_): VerifiedDevice, Opened(body): Opened| async move {
        h.fetch_add(1, Ordering::SeqCst);
        [b"echo:".as_slice(), &body].concat()
    };
    let h = hits.pay.clone();
    let pay = move |_: ChallengeBound, t: CheckedToken, Opened(body): Opened| async move {
        h.fetch_add(1, Ordering::SeqCst);
        [b"paid by ".as_slice(), &t.subject, b":", &body].concat()
    };
    let h = hits.door.clone();
    let door = move |_: ChallengeBound, Opened(body): Opened| async move {
        h.fetch_add(1, Ordering::SeqCst);
        [b"opened:".as_slice(), &body].concat()
    };
    let h = hits.profile.clone();
    let profile = move |t: CheckedToken, Opened(body): Opened| async move {
        h.fetch_add(1, Ordering::SeqCst);
        [t.subject.as_slice(), b":", &body].concat()
    };
    let h = hits.a.clone();
    let a = move |_: OneShot, Opened(_): Opened| async move {
        h.fetch_add(1, Ordering::SeqCst);
        axum::http::StatusCode::ACCEPTED
    };
    let h = hits.b.clone();
    let b = move |_: OneShot, Opened(_): Opened| async move {
        h.fetch_add(1, Ordering::SeqCst);
        axum::http::StatusCode::ACCEPTED
    };

    let app = Router::new()
        .route("/echo", post(echo))
        .route("/pay", post(pay).route_layer(backend.require(Need::CHALLENGE_AND_TOKEN)))
        .route("/door", post(door).route_layer(backend.require(Need::CHALLENGE)))
        .route("/profile", post(profile).route_layer(backend.require(Need::TOKEN)));
    let one_shot = Router::new().route("/a", post(a)).route("/b", post(b));
    let router =
        backend.router().merge(backend.sealed(app)).merge(backend.one_shot(one_shot)).merge(backend.metrics_router());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    Server { backend, base: format!("http://{addr}"), clock, hits, http: reqwest::Client::new() }
}

// ---------------------------------------------------------------------------
// Devices
// ---------------------------------------------------------------------------

/// A fresh device key, as bytes (so a test can hold two signers of one key).
fn device_secret() -> Secret<32> {
    let mut b = [0u8; 32];
    OsRng.try_fill_bytes(&mut b).unwrap();
    Secret::new(b)
}

fn signer_of(secret: &Secret<32>) -> SoftwareSigner {
    SoftwareSigner::from_bytes(secret).unwrap()
}

/// A client of `s` for `name`, neither enrolled nor connected.
fn client<S, P>(s: &Server<S, P>, name: &str, secret: &Secret<32>) -> Client<SoftwareSigner>
where
    S: SessionStore,
    P: PendingStore,
{
    Client::new(&s.base, s.backend.public_key(), DeviceId::new(name.as_bytes()).unwrap(), signer_of(secret))
}

/// A client of `s` for `name`, enrolled and connected.
async fn device<S: SessionStore, P: PendingStore>(s: &Server<S, P>, name: &str) -> Client<SoftwareSigner> {
    let mut c = client(s, name, &device_secret());
    c.enroll().await.unwrap();
    c.connect().await.unwrap();
    c
}

// ---------------------------------------------------------------------------
// HTTP, refusals and counters
// ---------------------------------------------------------------------------

/// A response as it arrived: status, every header, the body.
#[derive(Debug)]
struct Http {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
}

impl Http {
    /// As the client's raw helpers hand it to [`Client::open_reply`].
    fn raw(&self) -> RawReply {
        RawReply { status: self.status, body: self.body.clone(), session: None, next_action: None }
    }
}

/// POSTs `body` to `path` as an oncewire body, with `session` as the
/// `Oncewire-Session` header if given (sent as is, so it may be garbage).
async fn send<S, P>(s: &Server<S, P>, path: &str, session: Option<&str>, body: Vec<u8>) -> Http {
    let mut req = s.http.post(format!("{}{path}", s.base)).header("content-type", CONTENT_TYPE).body(body);
    if let Some(v) = session {
        req = req.header(SESSION_HEADER, v);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.bytes().await.unwrap().to_vec();
    Http { status, headers, body }
}

/// POSTs a sealed request to `path` under the session it was sealed in.
async fn post_sealed<S, P>(s: &Server<S, P>, path: &str, sealed: &SealedRequest) -> Http {
    send(s, path, Some(&session_hex(&sealed.session)), sealed.frame.clone()).await
}

/// A refusal: this status and next action, an empty body, and no header
/// that could say why (only the next action and HTTP's own framing).
#[track_caller]
fn assert_refusal(r: &Http, status: u16, action: &str) {
    assert_eq!(r.status, status, "status of {r:?}");
    let next = r.headers.get(NEXT_ACTION_HEADER).map(|v| v.to_str().unwrap());
    assert_eq!(next, Some(action), "next action of {r:?}");
    assert!(r.body.is_empty(), "a refusal has no body: {:?}", String::from_utf8_lossy(&r.body));
    for (name, value) in &r.headers {
        match name.as_str() {
            NEXT_ACTION_HEADER | "date" | "connection" => {}
            "content-length" => assert_eq!(value, "0", "a refusal has no body"),
            other => panic!("a refusal carries its status and next action only, not {other}: {value:?}"),
        }
    }
}

/// A refusal by a bound route (inside the sealing layer). SPEC.md §16.1
/// makes it a plain refusal like any other; the backend seals it as the
/// reply to the request instead (see `bound_refusal_is_plain_and_followed`).
/// Either way it shows its status and next action and nothing else: a
/// sealed one opens (under this request) to an empty body.
#[track_caller]
fn assert_bound_refusal(c: &mut Client<SoftwareSigner>, sealed: &SealedRequest, r: &Http, status: u16, action: &str) {
    let sealed_reply = r.headers.get("content-type").is_some_and(|v| v == CONTENT_TYPE);
    if !sealed_reply {
        return assert_refusal(r, status, action);
    }
    assert_eq!(r.status, status, "status of {r:?}");
    let next = r.headers.get(NEXT_ACTION_HEADER).map(|v| v.to_str().unwrap());
    assert_eq!(next, Some(action), "next action of {r:?}");
    for name in r.headers.keys() {
        assert!(
            ["content-type", "content-length", "date", NEXT_ACTION_HEADER].contains(&name.as_str()),
            "a refusal carries its status and next action only, not {name}"
        );
    }
    let opened = c.open_reply(sealed.request, r.raw()).unwrap();
    assert!(opened.body.is_empty(), "a refusal says nothing: {opened:?}");
}

/// A refusal as the client reports it.
#[track_caller]
fn assert_refused<T: core::fmt::Debug>(r: Result<T, ClientError>, status: u16, action: &str) {
    match r {
        Err(ClientError::Refused { status: got, next_action }) => {
            assert_eq!((got, next_action.as_str()), (status, action));
        }
        other => panic!("expected a refusal {status} {action}, got {other:?}"),
    }
}

const ROUTES: [Route; Route::ALL.len()] = Route::ALL;

const REASONS: [Reason; Reason::ALL.len()] = Reason::ALL;

/// Every refusal counted so far, by route and reason (non-zero ones only):
/// a test compares it whole, so a refusal counted under another reason or
/// route fails it too.
fn rejections<S: SessionStore, P: PendingStore>(s: &Server<S, P>) -> Vec<(Route, Reason, u64)> {
    let m = s.backend.metrics();
    ROUTES
        .iter()
        .flat_map(|&route| REASONS.iter().map(move |&reason| (route, reason, m.rejected_count(route, reason))))
        .filter(|&(_, _, n)| n > 0)
        .collect()
}

/// The scraped Prometheus text.
async fn scrape<S, P>(s: &Server<S, P>) -> String {
    s.http.get(format!("{}/metrics", s.base)).send().await.unwrap().text().await.unwrap()
}

// ---------------------------------------------------------------------------
// Bound plaintexts (SPEC.md §16.4.1: bound_len ‖ bound ‖ token_len ‖ token ‖ request)
// ---------------------------------------------------------------------------

/// A bound call's plaintext taken apart.
struct BoundPlain {
    bound: BoundRequest,
    token: Vec<u8>,
    request: Vec<u8>,
}

fn split_bound(plain: &[u8]) -> BoundPlain {
    let n = usize::from(plain[0]);
    let bound = BoundRequest::from_bytes(&plain[1..1 + n]).unwrap();
    let len = usize::from(u16::from_be_bytes([plain[1 + n], plain[2 + n]]));
    let token = plain[3 + n..3 + n + len].to_vec();
    let request = plain[3 + n + len..].to_vec();
    BoundPlain { bound, token, request }
}

fn join_bound(p: &BoundPlain) -> Vec<u8> {
    let mut b = [0u8; MAX_BOUND_LEN];
    let n = p.bound.to_bytes(&mut b).unwrap();
    let mut out = vec![u8::try_from(n).unwrap()];
    out.extend_from_slice(&b[..n]);
    out.extend_from_slice(&u16::try_from(p.token.len()).unwrap().to_be_bytes());
    out.extend_from_slice(&p.token);
    out.extend_from_slice(&p.request);
    out
}

// ---------------------------------------------------------------------------
// A handshake by hand (to replay or hold back message 3)
// ---------------------------------------------------------------------------

/// A handshake run by hand up to message 3, which is not sent yet.
struct Pending {
    id: [u8; 8],
    msg3: Vec<u8>,
    session: Session,
}

async fn handshake_by_hand<S, P>(s: &Server<S, P>, device: &str, secret: &Secret<32>) -> Pending
where
    S: SessionStore,
    P: PendingStore,
{
    let mut m1 = [0u8; MAX_HANDSHAKE_LEN];
    let (hs, n1) = ClientHandshake::start(s.backend.public_key(), &mut OsRng, &SystemClock, &mut m1).unwrap();
    let reply = send(s, "/oncewire/v1/handshake", None, m1[..n1].to_vec()).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let id = oncewire_http::parse_session_hex(reply.headers[SESSION_HEADER].to_str().unwrap()).unwrap();
    let mut m3 = [0u8; MAX_HANDSHAKE_LEN];
    let mut signer = signer_of(secret);
    let (session, n3): (Session, usize) = hs
        .finish(
            &SystemClock,
            &reply.body,
            DeviceId::new(device.as_bytes()).unwrap(),
            &mut signer,
            Limits::DEFAULT,
            &mut m3,
        )
        .unwrap();
    assert_eq!(session.session_id(), &id);
    Pending { id, msg3: m3[..n3].to_vec(), session }
}

/// A sealed call over a session run by hand; returns the opened reply.
async fn call_by_hand<S, P>(s: &Server<S, P>, id: &[u8; 8], session: &mut Session, body: &[u8]) -> Vec<u8> {
    let mut frame = vec![0u8; buffer_len(body.len())];
    let (n, rid) = session.seal_request(&SystemClock, body, &mut frame).unwrap();
    frame.truncate(n);
    let mut reply = send(s, "/echo", Some(&session_hex(id)), frame).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    session.open_response(&SystemClock, rid, &mut reply.body).unwrap().payload.to_vec()
}

// ---------------------------------------------------------------------------
// Sealed records
// ---------------------------------------------------------------------------

#[tokio::test]
async fn replayed_record() {
    let s = serve().await;
    let mut c = device(&s, "phone-1").await;
    let sealed = c.seal(b"once").unwrap();
    let first = post_sealed(&s, "/echo", &sealed).await;
    assert_eq!(first.status, 200);
    assert_eq!(c.open_reply(sealed.request, first.raw()).unwrap().body, b"echo:once");

    let again = post_sealed(&s, "/echo", &sealed).await;
    assert_refusal(&again, 400, "drop");
    assert_eq!(s.hits.all(), [1, 0, 0, 0, 0, 0], "the replay never reached the handler");
    assert_eq!(rejections(&s), [(Route::Call, Reason::Replay, 1)]);
    assert_eq!(s.backend.metrics().accepted_count(Route::Call), 1);
    let text = scrape(&s).await;
    assert!(text.contains("oncewire_rejected_total{route=\"call\",reason=\"replay\"} 1"), "{text}");

    // The session goes on.
    assert_eq!(c.call("/echo", b"next").await.unwrap().body, b"echo:next");
    assert_eq!(s.hits.all(), [2, 0, 0, 0, 0, 0]);
    assert_eq!(s.backend.sessions(), 1);
}

#[tokio::test]
async fn tampered_record() {
    let s = serve().await;
    let mut c = device(&s, "phone-1").await;
    let sealed = c.seal(b"pay 10 EUR").unwrap();
    let id = session_hex(&sealed.session);
    let flipped = |at: usize, mask: u8| {
        let mut f = sealed.frame.clone();
        f[at] ^= mask;
        f
    };
    let last = sealed.frame.len() - 1;
    // The tag, the ciphertext, the header's timestamp (by 1 ms: still
    // fresh) and sequence number (ahead, inside the window): all
    // authenticated, all one opaque refusal.
    for (at, mask) in [(last, 0x80), (HEADER_LEN, 0x80), (31, 0x01), (23, 0x40)] {
        assert_refusal(&send(&s, "/echo", Some(&id), flipped(at, mask)).await, 400, "drop");
    }
    // The version byte: it does not parse.
    assert_refusal(&send(&s, "/echo", Some(&id), flipped(0, 0x01)).await, 400, "drop");
    // Cut short.
    assert_refusal(&send(&s, "/echo", Some(&id), sealed.frame[..last].to_vec()).await, 400, "drop");
    assert_eq!(s.hits.all(), [0; 6]);
    assert_eq!(rejections(&s), [(Route::Call, Reason::AuthFailed, 4), (Route::Call, Reason::Malformed, 2)]);

    // None of them used up the genuine frame's sequence number.
    let genuine = post_sealed(&s, "/echo", &sealed).await;
    assert_eq!(genuine.status, 200);
    assert_eq!(c.open_reply(sealed.request, genuine.raw()).unwrap().body, b"echo:pay 10 EUR");
    assert_eq!(s.hits.all(), [1, 0, 0, 0, 0, 0]);
}

#[tokio::test]
async fn record_sent_with_another_sessions_id() {
    let s = serve().await;
    let mut a = device(&s, "phone-a").await;
    let mut b = device(&s, "phone-b").await;
    let sealed = a.seal(b"from a").unwrap();
    let b_id = session_hex(&b.session_id().unwrap());
    let r = send(&s, "/echo", Some(&b_id), sealed.frame.clone()).await;
    // The frame names session A: B's session does not know it.
    assert_refusal(&r, 401, "rehandshake");
    assert_eq!(s.hits.all(), [0; 6]);
    assert_eq!(rejections(&s), [(Route::Call, Reason::UnknownSession, 1)]);

    // Neither session changed: A's frame still opens under A, B goes on.
    let genuine = post_sealed(&s, "/echo", &sealed).await;
    assert_eq!(a.open_reply(sealed.request, genuine.raw()).unwrap().body, b"echo:from a");
    assert_eq!(b.call("/echo", b"from b").await.unwrap().body, b"echo:from b");
    assert_eq!(s.hits.all(), [2, 0, 0, 0, 0, 0]);
    assert_eq!(s.backend.sessions(), 2);
}

#[tokio::test]
async fn unknown_session_and_missing_or_garbled_header() {
    let s = serve().await;
    let mut c = device(&s, "phone-1").await;
    let sealed = c.seal(b"hello").unwrap();
    let mut unknown = [0u8; 8];
    OsRng.try_fill_bytes(&mut unknown).unwrap();
    for header in [Some(session_hex(&unknown)), None, Some("zzzzzzzzzzzzzzzz".into()), Some("abcd".into())] {
        let r = send(&s, "/echo", header.as_deref(), sealed.frame.clone()).await;
        assert_refusal(&r, 401, "rehandshake");
    }
    assert_eq!(s.hits.all(), [0; 6]);
    assert_eq!(rejections(&s), [(Route::Call, Reason::UnknownSession, 4)]);

    let genuine = post_sealed(&s, "/echo", &sealed).await;
    assert_eq!(c.open_reply(sealed.request, genuine.raw()).unwrap().body, b"echo:hello");
    assert_eq!(s.backend.sessions(), 1);
}

#[tokio::test]
async fn stale_record() {
    let s = serve().await;
    let mut c = device(&s, "phone-1").await;
    let old = c.seal(b"old").unwrap();
    let ahead = c.seal(b"ahead").unwrap();
    let window = s.backend.config().limits.freshness.unwrap();

    // The server is now past the record's freshness window.
    let past = i64::try_from(window.max_age_ms).unwrap() + 1_000;
    s.clock.shift(past);
    assert_refusal(&post_sealed(&s, "/echo", &old).await, 401, "rehandshake");
    // And before it: the record comes from too far in the future.
    let before = i64::try_from(window.max_future_skew_ms).unwrap() + 1_000;
    s.clock.shift(-past - before);
    assert_refusal(&post_sealed(&s, "/echo", &ahead).await, 401, "rehandshake");
    assert_eq!(s.hits.all(), [0; 6]);
    assert_eq!(rejections(&s), [(Route::Call, Reason::Stale, 1), (Route::Call, Reason::FromFuture, 1)]);

    // Back in time: neither refusal recorded anything, both frames open.
    s.clock.shift(before);
    for sealed in [&old, &ahead] {
        let r = post_sealed(&s, "/echo", sealed).await;
        assert_eq!(r.status, 200);
        c.open_reply(sealed.request, r.raw()).unwrap();
    }
    assert_eq!(s.hits.all(), [2, 0, 0, 0, 0, 0]);

    // A client whose clock drifted out of the window re-handshakes (which
    // measures the offset again) and goes on.
    s.clock.shift(past);
    assert_eq!(c.call("/echo", b"later").await.unwrap().body, b"echo:later");
    assert_eq!(s.hits.all(), [3, 0, 0, 0, 0, 0]);
    assert_eq!(s.backend.metrics().rejected_count(Route::Call, Reason::Stale), 2);
    // The stale session is not dropped (only an expired or dead one is).
    assert_eq!(s.backend.sessions(), 2);
}

#[tokio::test]
async fn expired_session() {
    let s = serve().await;
    let mut c = device(&s, "phone-1").await;
    let sealed = c.seal(b"late").unwrap();
    let lifetime = i64::try_from(s.backend.config().limits.lifetime_ms).unwrap();
    s.clock.shift(lifetime + 1_000);

    // The raw refusal: an expired session is forgotten.
    assert_refusal(&post_sealed(&s, "/echo", &sealed).await, 401, "rehandshake");
    assert_eq!(s.hits.all(), [0; 6]);
    assert_eq!(rejections(&s), [(Route::Call, Reason::Expired, 1)]);
    assert_eq!(s.backend.sessions(), 0);

    // The recovery: `call` is told to re-handshake (the session is unknown
    // now), connects again and succeeds.
    let before = c.session_id();
    assert_eq!(c.call("/echo", b"again").await.unwrap().body, b"echo:again");
    assert_ne!(c.session_id(), before);
    assert_eq!(s.hits.all(), [1, 0, 0, 0, 0, 0]);
    assert_eq!(s.backend.sessions(), 1);
    assert_eq!(rejections(&s), [(Route::Call, Reason::UnknownSession, 1), (Route::Call, Reason::Expired, 1)]);
}

/// The session's lifetime is also the client's (message 2 carries it): once
/// it ran out on the client's own clock, `call` must connect again rather
/// than fail. It does not: `Client::ensure_session` (client.rs) only asks
/// `needs_rehandshake()` (the integrity limit), so `seal` fails locally
/// with `Expired(Session)` and `call` returns that error.
#[tokio::test]
async fn session_expired_on_the_client_is_renewed() {
    let config = Config { limits: Limits::DEFAULT.with_lifetime(1_000), ..Config::default() };
    let s = serve_with(config, MemorySessions::new(10), MemoryPending::new(10)).await;
    let mut c = device(&s, "phone-1").await;
    assert_eq!(c.call("/echo", b"now").await.unwrap().body, b"echo:now");
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let r = c.call("/echo", b"later").await;
    assert!(!matches!(r, Err(ClientError::Protocol(Error::Expired(Expiry::Session)))), "{r:?}");
    assert_eq!(r.unwrap().body, b"echo:later");
}

#[tokio::test]
async fn lost_response_retry() {
    let s = serve().await;
    let mut c = device(&s, "phone-1").await;
    let sealed = c.seal(b"transfer #7").unwrap();
    // The reply is lost on the way back.
    let _lost = c.send_raw("/echo", Some(&sealed.session), sealed.frame.clone()).await.unwrap();
    // Resending the same frame is a replay: the client never does it.
    assert_refused(c.send_raw("/echo", Some(&sealed.session), sealed.frame.clone()).await, 400, "drop");
    assert_eq!(s.hits.all(), [1, 0, 0, 0, 0, 0]);
    assert_eq!(rejections(&s), [(Route::Call, Reason::Replay, 1)]);
    // Sealing anew goes through (the reply skipped over the lost one).
    assert_eq!(c.call("/echo", b"transfer #7").await.unwrap().body, b"echo:transfer #7");
    assert_eq!(s.hits.all(), [2, 0, 0, 0, 0, 0]);
}

// ---------------------------------------------------------------------------
// Replies the client must not accept
// ---------------------------------------------------------------------------

#[tokio::test]
async fn reply_that_does_not_open() {
    let s = serve().await;
    let mut c = device(&s, "phone-1").await;
    let sealed = c.seal(b"balance?").unwrap();
    let reply = post_sealed(&s, "/echo", &sealed).await;
    assert_eq!(reply.status, 200);
    // The tag, the ciphertext, the timestamp (by 1 ms).
    for (at, mask) in [(reply.body.len() - 1, 0x80), (HEADER_LEN, 0x80), (31, 0x01)] {
        let mut tampered = reply.raw();
        tampered.body[at] ^= mask;
        let r = c.open_reply(sealed.request, tampered);
        assert!(matches!(r, Err(ClientError::Protocol(Error::Authentication))), "{r:?}");
    }
    let mut cut = reply.raw();
    cut.body.truncate(HEADER_LEN + 2);
    assert!(matches!(c.open_reply(sealed.request, cut), Err(ClientError::Protocol(_))));
    // The genuine reply still opens: the failures changed nothing.
    assert_eq!(c.open_reply(sealed.request, reply.raw()).unwrap().body, b"echo:balance?");
    assert_eq!(c.call("/echo", b"next").await.unwrap().body, b"echo:next");
    assert_eq!(rejections(&s), []);
}

#[tokio::test]
async fn reply_to_another_request() {
    let s = serve().await;
    let mut c = device(&s, "phone-1").await;
    let first = c.seal(b"first").unwrap();
    let second = c.seal(b"second").unwrap();
    let r1 = post_sealed(&s, "/echo", &first).await;
    let r2 = post_sealed(&s, "/echo", &second).await;
    // Each reply is bound to its request (SPEC.md §9.2).
    let swapped = c.open_reply(second.request, r1.raw());
    assert!(matches!(swapped, Err(ClientError::Protocol(Error::Authentication))), "{swapped:?}");
    let made_up = RequestId { generation: first.request.generation, seq: first.request.seq + 100 };
    assert!(matches!(c.open_reply(made_up, r1.raw()), Err(ClientError::Protocol(Error::Authentication))));
    assert_eq!(c.open_reply(first.request, r1.raw()).unwrap().body, b"echo:first");
    assert_eq!(c.open_reply(second.request, r2.raw()).unwrap().body, b"echo:second");
    // A reply opens once.
    assert!(matches!(c.open_reply(first.request, r1.raw()), Err(ClientError::Protocol(Error::Replay))));
}

// ---------------------------------------------------------------------------
// Enrollment and the handshake
// ---------------------------------------------------------------------------

#[tokio::test]
async fn unknown_device_at_handshake() {
    let s = serve().await;
    let secret = device_secret();
    // Through the client: message 3 is refused.
    let mut c = client(&s, "never-enrolled", &secret);
    assert_refused(c.connect().await, 403, "reenroll");
    assert!(c.session_id().is_none());
    // By hand, to see the refusal itself.
    let p = handshake_by_hand(&s, "never-enrolled", &secret).await;
    let r = send(&s, "/oncewire/v1/handshake/finish", Some(&session_hex(&p.id)), p.msg3).await;
    assert_refusal(&r, 403, "reenroll");
    assert_eq!(rejections(&s), [(Route::Finish, Reason::UnknownDevice, 2)]);
    assert_eq!(s.backend.sessions(), 0);
    assert_eq!(s.backend.pending_store().len(), 0);
    assert!(s.backend.registry().is_empty());

    // What the next action says fixes it.
    c.enroll().await.unwrap();
    c.connect().await.unwrap();
    assert_eq!(c.call("/echo", b"hi").await.unwrap().body, b"echo:hi");
}

#[tokio::test]
async fn second_enrollment_of_a_taken_id() {
    let s = serve().await;
    let mut owner = device(&s, "phone-1").await;
    let key = registry_key(&s, "phone-1").await;

    let mut thief = client(&s, "phone-1", &device_secret());
    assert_refused(thief.enroll().await, 400, "drop");
    assert_eq!(rejections(&s), [(Route::Enroll, Reason::AlreadyEnrolled, 1)]);
    assert_eq!(s.backend.registry().len(), 1);
    assert_eq!(registry_key(&s, "phone-1").await, key, "the enrolled key was kept");
    // The thief's key does not open a session for the id.
    assert_refused(thief.connect().await, 400, "drop");
    assert_eq!(s.backend.metrics().rejected_count(Route::Finish, Reason::AuthFailed), 1);
    assert_eq!(s.backend.sessions(), 1);

    // The owner goes on, and enrolling again with the same key is accepted.
    assert_eq!(owner.call("/echo", b"mine").await.unwrap().body, b"echo:mine");
    owner.enroll().await.unwrap();
    assert_eq!(s.backend.registry().len(), 1);
}

/// The key enrolled under `name`.
async fn registry_key<S: SessionStore, P: PendingStore>(s: &Server<S, P>, name: &str) -> Option<oncewire::PublicKey> {
    s.backend.registry().device_key(&DeviceId::new(name.as_bytes()).unwrap()).await.unwrap()
}

#[tokio::test]
async fn message_3_replayed() {
    let s = serve().await;
    let secret = device_secret();
    client(&s, "phone-1", &secret).enroll().await.unwrap();
    let mut p = handshake_by_hand(&s, "phone-1", &secret).await;
    let id = session_hex(&p.id);
    let first = send(&s, "/oncewire/v1/handshake/finish", Some(&id), p.msg3.clone()).await;
    assert_eq!(first.status, 204, "{first:?}");
    // The pending handshake was taken by the first message 3.
    let again = send(&s, "/oncewire/v1/handshake/finish", Some(&id), p.msg3.clone()).await;
    assert_refusal(&again, 401, "rehandshake");
    assert_eq!(rejections(&s), [(Route::Finish, Reason::UnknownSession, 1)]);
    assert_eq!(s.backend.metrics().accepted_count(Route::Finish), 1);
    assert_eq!(s.backend.sessions(), 1);
    // The session it established is intact.
    assert_eq!(call_by_hand(&s, &p.id, &mut p.session, b"by hand").await, b"echo:by hand");
    assert_eq!(s.hits.all(), [1, 0, 0, 0, 0, 0]);
}

#[tokio::test]
async fn full_session_store() {
    let s = serve_with(Config::default(), MemorySessions::new(1), MemoryPending::new(10)).await;
    let mut first = device(&s, "phone-1").await;
    let mut second = client(&s, "phone-2", &device_secret());
    second.enroll().await.unwrap();
    assert_refused(second.connect().await, 503, "retry-later");
    assert_eq!(rejections(&s), [(Route::Finish, Reason::StoreRefused, 1)]);
    assert_eq!(s.backend.sessions(), 1);
    assert_eq!(s.backend.pending_store().len(), 0, "the refused handshake is not left pending");
    // The first session is unaffected.
    assert_eq!(first.call("/echo", b"still here").await.unwrap().body, b"echo:still here");
    assert_eq!(s.hits.all(), [1, 0, 0, 0, 0, 0]);
}

#[tokio::test]
async fn full_pending_store() {
    let s = serve_with(Config::default(), MemorySessions::new(10), MemoryPending::new(1)).await;
    let secret = device_secret();
    client(&s, "phone-1", &secret).enroll().await.unwrap();
    let mut held = handshake_by_hand(&s, "phone-1", &secret).await;
    assert_eq!(s.backend.pending_store().len(), 1);

    let mut other = client(&s, "phone-2", &device_secret());
    other.enroll().await.unwrap();
    assert_refused(other.connect().await, 503, "retry-later");
    assert_eq!(rejections(&s), [(Route::Handshake, Reason::StoreRefused, 1)]);
    assert_eq!(s.backend.pending_store().len(), 1);

    // The held handshake finishes; then there is room again.
    let id = session_hex(&held.id);
    assert_eq!(send(&s, "/oncewire/v1/handshake/finish", Some(&id), held.msg3.clone()).await.status, 204);
    assert_eq!(call_by_hand(&s, &held.id, &mut held.session, b"one").await, b"echo:one");
    other.connect().await.unwrap();
    assert_eq!(other.call("/echo", b"two").await.unwrap().body, b"echo:two");
    assert_eq!(s.backend.sessions(), 2);
}

// ---------------------------------------------------------------------------
// Bound calls: tokens and challenges
// ---------------------------------------------------------------------------

#[tokio::test]
async fn token_proof_replay() {
    let s = serve().await;
    let mut c = device(&s, "phone-1").await;
    c.fetch_token().await.unwrap();
    let token = c.token().unwrap().to_vec();
    let plain = c.bind(None, Some(&token), b"show profile").unwrap();
    // The same plaintext in two frames: each frame is new, the proof is not.
    let one = c.seal(&plain).unwrap();
    let two = c.seal(&plain).unwrap();
    let r = post_sealed(&s, "/profile", &one).await;
    assert_eq!(c.open_reply(one.request, r.raw()).unwrap().body, b"phone-1:show profile");
    let r = post_sealed(&s, "/profile", &two).await;
    assert_bound_refusal(&mut c, &two, &r, 400, "drop");
    assert_eq!(s.hits.all(), [0, 0, 0, 1, 0, 0]);
    assert_eq!(rejections(&s), [(Route::Bound, Reason::TokenProofReplay, 1)]);

    // A new proof for the same request and token goes through.
    let again = c.call_bound("/profile", b"show profile", Need::TOKEN).await.unwrap();
    assert_eq!(again.body, b"phone-1:show profile");
    assert_eq!(s.hits.all(), [0, 0, 0, 2, 0, 0]);
}

#[tokio::test]
async fn stolen_token() {
    let s = serve().await;
    let mut alice = device(&s, "alice").await;
    let mut mallory = device(&s, "mallory").await;
    alice.fetch_token().await.unwrap();
    let stolen = alice.token().unwrap().to_vec();
    // Mallory signs the proof with her own key: the token is bound to Alice's.
    let plain = mallory.bind(None, Some(&stolen), b"alice's profile").unwrap();
    let sealed = mallory.seal(&plain).unwrap();
    let r = post_sealed(&s, "/profile", &sealed).await;
    assert_bound_refusal(&mut mallory, &sealed, &r, 401, "refresh-token");
    assert_eq!(s.hits.all(), [0; 6]);
    assert_eq!(rejections(&s), [(Route::Bound, Reason::TokenRefused, 1)]);

    // Alice's token still works for Alice; Mallory gets her own.
    assert_eq!(alice.call_bound("/profile", b"mine", Need::TOKEN).await.unwrap().body, b"alice:mine");
    assert_eq!(mallory.call_bound("/profile", b"mine", Need::TOKEN).await.unwrap().body, b"mallory:mine");
    assert_eq!(s.hits.all(), [0, 0, 0, 2, 0, 0]);
}

#[tokio::test]
async fn expired_token() {
    let s = serve().await;
    let mut c = device(&s, "phone-1").await;
    c.fetch_token().await.unwrap();
    let old = c.token().unwrap().to_vec();
    s.clock.shift(i64::try_from(s.backend.config().token_ttl_ms).unwrap() + 1_000);
    // The shift also put the session's records out of their freshness
    // window; a new handshake measures the offset again (see stale_record).
    c.connect().await.unwrap();

    let plain = c.bind(None, Some(&old), b"show profile").unwrap();
    let sealed = c.seal(&plain).unwrap();
    let r = post_sealed(&s, "/profile", &sealed).await;
    assert_bound_refusal(&mut c, &sealed, &r, 401, "refresh-token");
    assert_eq!(s.hits.all(), [0; 6]);
    assert_eq!(rejections(&s), [(Route::Bound, Reason::Expired, 1)]);

    // What the next action says fixes it: a new token, a new proof.
    // (`call_bound` should do this itself; it does not, see
    // `bound_refusal_is_plain_and_followed`.)
    c.fetch_token().await.unwrap();
    assert_ne!(c.token().unwrap(), old.as_slice());
    let r = c.call_bound("/profile", b"show profile", Need::TOKEN).await.unwrap();
    assert_eq!((r.status, r.body.as_slice()), (200, b"phone-1:show profile".as_slice()));
    assert_eq!(s.hits.all(), [0, 0, 0, 1, 0, 0]);
    assert_eq!(rejections(&s), [(Route::Bound, Reason::Expired, 1)]);
}

/// SPEC.md §16.1: a refusal has an empty body and no `application/oncewire`
/// content type, so that a client tells it from an application's reply.
/// A bound route's refusal comes from `bound_layer` inside `sealed_layer`,
/// which seals whatever the inner service answered (`sealed_layer`, server.rs):
/// the refusal arrives as a sealed reply with the refusal's status.
/// `Client::send_raw` takes it for a reply (an `application/oncewire` body), `open_reply`
/// opens it, and `call_bound` returns `Ok(Reply { status: 401, body: [] })`
/// where it should have fetched a new token and tried again: its
/// `refresh-token` and `retry-later` branches (`Client::call_bound`) are
/// never reached.
#[tokio::test]
async fn bound_refusal_is_plain_and_followed() {
    let s = serve().await;
    let mut c = device(&s, "phone-1").await;
    c.fetch_token().await.unwrap();
    let old = c.token().unwrap().to_vec();
    s.clock.shift(i64::try_from(s.backend.config().token_ttl_ms).unwrap() + 1_000);
    c.connect().await.unwrap();
    let plain = c.bind(None, Some(&old), b"show profile").unwrap();
    let sealed = c.seal(&plain).unwrap();
    assert_refusal(&post_sealed(&s, "/profile", &sealed).await, 401, "refresh-token");
    // `call_bound` is refused the same way, fetches a new token, and succeeds.
    let r = c.call_bound("/profile", b"show profile", Need::TOKEN).await.unwrap();
    assert_eq!((r.status, r.body.as_slice()), (200, b"phone-1:show profile".as_slice()));
    assert_ne!(c.token().unwrap(), old.as_slice());
    assert_eq!(s.hits.all(), [0, 0, 0, 1, 0, 0]);
    assert_eq!(rejections(&s), [(Route::Bound, Reason::Expired, 2)]);
}

/// A client idle past its token's lifetime whose session the server lost
/// or no longer takes (a restart, a sweep, clocks apart) meets two next
/// actions in a row: `rehandshake`, then `refresh-token`. `call_bound`
/// follows one only (`Client::call_bound`). Today the call fails earlier, on
/// the sealed refusal of `bound_refusal_is_plain_and_followed` (it returns
/// `Ok(Reply { status: 401 })`); once that is fixed it fails here with
/// `Refused { 401, "refresh-token" }`.
#[tokio::test]
async fn call_bound_after_rehandshake_and_expired_token() {
    let s = serve().await;
    let mut c = device(&s, "phone-1").await;
    c.fetch_token().await.unwrap();
    // Past the token's lifetime; the session's records are now stale too.
    s.clock.shift(i64::try_from(s.backend.config().token_ttl_ms).unwrap() + 1_000);
    let r = c.call_bound("/profile", b"show profile", Need::TOKEN).await.unwrap();
    assert_eq!((r.status, r.body.as_slice()), (200, b"phone-1:show profile".as_slice()));
}

#[tokio::test]
async fn challenge_reuse() {
    let s = serve().await;
    let mut c = device(&s, "phone-1").await;
    let challenge = c.fetch_challenge().await.unwrap();
    let one = c.bind(Some(&challenge), None, b"front door").unwrap();
    let sealed = c.seal(&one).unwrap();
    let r = post_sealed(&s, "/door", &sealed).await;
    assert_eq!(c.open_reply(sealed.request, r.raw()).unwrap().body, b"opened:front door");

    // The same challenge again, for the same request and for another one.
    for request in [b"front door".as_slice(), b"back door"] {
        let plain = c.bind(Some(&challenge), None, request).unwrap();
        let sealed = c.seal(&plain).unwrap();
        let r = post_sealed(&s, "/door", &sealed).await;
        assert_bound_refusal(&mut c, &sealed, &r, 400, "drop");
    }
    assert_eq!(s.hits.all(), [0, 0, 1, 0, 0, 0]);
    assert_eq!(rejections(&s), [(Route::Bound, Reason::ChallengeReused, 2)]);
    assert_eq!(c.call_bound("/door", b"back door", Need::CHALLENGE).await.unwrap().body, b"opened:back door");
}

#[tokio::test]
async fn challenge_expired() {
    let s = serve().await;
    let mut c = device(&s, "phone-1").await;
    let challenge = c.fetch_challenge().await.unwrap();
    s.clock.shift(i64::try_from(s.backend.config().challenge_ttl_ms).unwrap() + 1_000);
    c.connect().await.unwrap(); // the records' window moved too (see stale_record)
    let plain = c.bind(Some(&challenge), None, b"front door").unwrap();
    let sealed = c.seal(&plain).unwrap();
    let r = post_sealed(&s, "/door", &sealed).await;
    assert_bound_refusal(&mut c, &sealed, &r, 503, "retry-later");
    assert_eq!(s.hits.all(), [0; 6]);
    assert_eq!(rejections(&s), [(Route::Bound, Reason::Expired, 1)]);
    // A fresh challenge goes through.
    assert_eq!(c.call_bound("/door", b"front door", Need::CHALLENGE).await.unwrap().body, b"opened:front door");
    assert_eq!(s.hits.all(), [0, 0, 1, 0, 0, 0]);
}

#[tokio::test]
async fn challenge_bound_to_another_request() {
    let s = serve().await;
    let mut c = device(&s, "phone-1").await;
    let challenge = c.fetch_challenge().await.unwrap();
    let genuine = c.bind(Some(&challenge), None, b"10 EUR").unwrap();
    let mut swapped = split_bound(&genuine);
    swapped.request = b"1000 EUR".to_vec();
    let sealed = c.seal(&join_bound(&swapped)).unwrap();
    let r = post_sealed(&s, "/door", &sealed).await;
    assert_bound_refusal(&mut c, &sealed, &r, 400, "drop");
    assert_eq!(s.hits.all(), [0; 6]);
    assert_eq!(rejections(&s), [(Route::Bound, Reason::AuthFailed, 1)]);
    // The challenge was not used up.
    let sealed = c.seal(&genuine).unwrap();
    let r = post_sealed(&s, "/door", &sealed).await;
    assert_eq!(c.open_reply(sealed.request, r.raw()).unwrap().body, b"opened:10 EUR");
}

#[tokio::test]
async fn bound_part_missing() {
    let s = serve().await;
    let mut c = device(&s, "phone-1").await;
    c.fetch_token().await.unwrap();
    let token = c.token().unwrap().to_vec();
    let challenge = c.fetch_challenge().await.unwrap();
    let attempts = [
        // No bound part at all: the request alone, or nothing.
        b"10 EUR to bob".to_vec(),
        Vec::new(),
        // The challenge without the token, and the token without the challenge.
        c.bind(Some(&challenge), None, b"10 EUR to bob").unwrap(),
        c.bind(None, Some(&token), b"10 EUR to bob").unwrap(),
    ];
    for plain in attempts {
        let sealed = c.seal(&plain).unwrap();
        let r = post_sealed(&s, "/pay", &sealed).await;
        assert_bound_refusal(&mut c, &sealed, &r, 400, "drop");
    }
    // A part the route does not require is refused too.
    let extra = c.bind(Some(&challenge), Some(&token), b"front door").unwrap();
    let sealed = c.seal(&extra).unwrap();
    let r = post_sealed(&s, "/door", &sealed).await;
    assert_bound_refusal(&mut c, &sealed, &r, 400, "drop");
    assert_eq!(s.hits.all(), [0; 6]);
    assert_eq!(rejections(&s), [(Route::Bound, Reason::Malformed, 5)]);

    // The challenge was not used up by any of them.
    let full = c.bind(Some(&challenge), Some(&token), b"10 EUR to bob").unwrap();
    let sealed = c.seal(&full).unwrap();
    let r = post_sealed(&s, "/pay", &sealed).await;
    assert_eq!(c.open_reply(sealed.request, r.raw()).unwrap().body, b"paid by phone-1:10 EUR to bob");
    assert_eq!(s.hits.all(), [0, 1, 0, 0, 0, 0]);
}

/// SPEC.md §15.1: the parts of a bound call are recorded together or not
/// at all. A part that fails leaves the other part usable.
#[tokio::test]
async fn bound_parts_recorded_together_or_none() {
    let s = serve().await;
    let mut c = device(&s, "phone-1").await;
    let mut mallory = device(&s, "mallory").await;
    c.fetch_token().await.unwrap();
    let token = c.token().unwrap().to_vec();
    let req = b"10 EUR to bob".as_slice();

    // 1. The token part fails its checks (another device's token): the
    //    challenge is not used up.
    let c1 = c.fetch_challenge().await.unwrap();
    let bad = mallory.bind(Some(&c1), Some(&token), req).unwrap();
    let sealed = mallory.seal(&bad).unwrap();
    let r = post_sealed(&s, "/pay", &sealed).await;
    assert_bound_refusal(&mut mallory, &sealed, &r, 401, "refresh-token");
    let good = c.bind(Some(&c1), Some(&token), req).unwrap();
    let sealed = c.seal(&good).unwrap();
    let r = post_sealed(&s, "/pay", &sealed).await;
    c.open_reply(sealed.request, r.raw()).unwrap();
    assert_eq!(s.hits.all(), [0, 1, 0, 0, 0, 0]);

    // 2. The proof was recorded before (it is `good`'s), the challenge is
    //    fresh: refused, and the fresh challenge is not used up.
    let c2 = c.fetch_challenge().await.unwrap();
    let with_c2 = split_bound(&c.bind(Some(&c2), Some(&token), req).unwrap());
    let mut replayed_proof = split_bound(&good);
    replayed_proof.bound.binding = with_c2.bound.binding;
    let sealed = c.seal(&join_bound(&replayed_proof)).unwrap();
    let r = post_sealed(&s, "/pay", &sealed).await;
    assert_bound_refusal(&mut c, &sealed, &r, 400, "drop");
    let sealed = c.seal(&join_bound(&with_c2)).unwrap();
    let r = post_sealed(&s, "/pay", &sealed).await;
    c.open_reply(sealed.request, r.raw()).unwrap();
    assert_eq!(s.hits.all(), [0, 2, 0, 0, 0, 0]);

    // 3. The challenge was used before (c2), the proof is fresh: refused,
    //    and the fresh proof is not recorded.
    let c3 = c.fetch_challenge().await.unwrap();
    let fresh = split_bound(&c.bind(Some(&c3), Some(&token), req).unwrap());
    let mut used_challenge =
        BoundPlain { bound: fresh.bound, token: fresh.token.clone(), request: fresh.request.clone() };
    used_challenge.bound.binding = with_c2.bound.binding;
    let sealed = c.seal(&join_bound(&used_challenge)).unwrap();
    let r = post_sealed(&s, "/pay", &sealed).await;
    assert_bound_refusal(&mut c, &sealed, &r, 400, "drop");
    let sealed = c.seal(&join_bound(&fresh)).unwrap();
    let r = post_sealed(&s, "/pay", &sealed).await;
    assert_eq!(c.open_reply(sealed.request, r.raw()).unwrap().body, b"paid by phone-1:10 EUR to bob");
    assert_eq!(s.hits.all(), [0, 3, 0, 0, 0, 0]);

    assert_eq!(
        rejections(&s),
        [
            (Route::Bound, Reason::ChallengeReused, 1),
            (Route::Bound, Reason::TokenProofReplay, 1),
            (Route::Bound, Reason::TokenRefused, 1),
        ]
    );
}

// ---------------------------------------------------------------------------
// One-shot requests
// ---------------------------------------------------------------------------

#[tokio::test]
async fn one_shot_replay() {
    let s = serve().await;
    let mut c = device(&s, "phone-1").await;
    let bytes = c.seal_one_shot("/a", b"ping").await.unwrap();
    assert_eq!(send(&s, "/a", None, bytes.clone()).await.status, 202);
    assert_refusal(&send(&s, "/a", None, bytes).await, 400, "drop");
    assert_eq!(s.hits.all(), [0, 0, 0, 0, 1, 0]);
    assert_eq!(rejections(&s), [(Route::OneShot, Reason::Replay, 1)]);
    assert_eq!(c.one_shot("/a", b"ping").await.unwrap(), 202);
    assert_eq!(s.hits.all(), [0, 0, 0, 0, 2, 0]);
}

#[tokio::test]
async fn one_shot_sent_to_another_path() {
    let s = serve().await;
    let mut c = device(&s, "phone-1").await;
    let bytes = c.seal_one_shot("/a", b"ping").await.unwrap();
    // The path is in the AAD.
    assert_refusal(&send(&s, "/b", None, bytes.clone()).await, 400, "drop");
    assert_eq!(s.hits.all(), [0; 6]);
    assert_eq!(rejections(&s), [(Route::OneShot, Reason::AuthFailed, 1)]);
    // Nothing was recorded: the request still goes through where it was sealed for.
    assert_eq!(send(&s, "/a", None, bytes).await.status, 202);
    assert_eq!(s.hits.all(), [0, 0, 0, 0, 1, 0]);
}

// ---------------------------------------------------------------------------
// Bodies, and what a refusal shows
// ---------------------------------------------------------------------------

#[tokio::test]
async fn oversize_body() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = serve().await;
    let c = device(&s, "phone-1").await;
    let max = s.backend.config().max_body;
    let id = session_hex(&c.session_id().unwrap());

    // One byte over, sent whole.
    assert_refusal(&send(&s, "/echo", Some(&id), vec![0xa5; max + 1]).await, 400, "drop");
    assert_refusal(&send(&s, "/a", None, vec![0xa5; max + 1]).await, 400, "drop");

    // A body announced at 16 MiB of which only a little more than the limit
    // is ever sent: the refusal comes without the rest, so nothing past the
    // limit was waited for.
    let addr = s.base.trim_start_matches("http://").to_owned();
    let head = format!(
        "POST /echo HTTP/1.1\r\nhost: {addr}\r\ncontent-type: {CONTENT_TYPE}\r\n{SESSION_HEADER}: {id}\r\n\
         content-length: {}\r\n\r\n",
        16 << 20
    );
    let exchange = async {
        let mut tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
        tcp.write_all(head.as_bytes()).await.unwrap();
        // The server may stop reading (and close) once it has refused.
        let _ = tcp.write_all(&vec![0xa5; max + 4096]).await;
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = tcp.read(&mut buf).await.unwrap();
            assert_ne!(n, 0, "closed without an answer");
            got.extend_from_slice(&buf[..n]);
        }
        got
    };
    let got = tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .expect("the server answered without waiting for the rest of the body");
    let text = String::from_utf8_lossy(&got).to_lowercase();
    assert!(text.starts_with("http/1.1 400"), "{text}");
    assert!(text.contains(&format!("{NEXT_ACTION_HEADER}: drop")), "{text}");

    assert_eq!(s.hits.all(), [0; 6]);
    assert_eq!(rejections(&s), [(Route::Call, Reason::Malformed, 2), (Route::OneShot, Reason::Malformed, 1)]);
}

/// Refusals with the same next action look the same, whatever the reason:
/// a replay, a forgery, garbage and a misdirected one-shot request all get
/// the same status, the same headers and the same (empty) body.
#[tokio::test]
async fn refusals_do_not_say_why() {
    let s = serve().await;
    let mut c = device(&s, "phone-1").await;
    let sealed = c.seal(b"x").unwrap();
    let id = session_hex(&sealed.session);
    post_sealed(&s, "/echo", &sealed).await;
    let mut forged = c.seal(b"y").unwrap().frame;
    forged[HEADER_LEN] ^= 1;
    let one_shot = c.seal_one_shot("/a", b"ping").await.unwrap();

    let drops = [
        post_sealed(&s, "/echo", &sealed).await,                          // replay
        send(&s, "/echo", Some(&id), forged).await,                       // forgery
        send(&s, "/echo", Some(&id), b"garbage".to_vec()).await,          // does not parse
        send(&s, "/b", None, one_shot).await,                             // one-shot for another path
        send(&s, "/oncewire/v1/handshake", None, vec![1; 90]).await,      // a garbled message 1
        send(&s, "/oncewire/v1/enroll", None, b"garbage".to_vec()).await, // a garbled enrollment
    ];
    let shape = |r: &Http| {
        let mut names: Vec<String> = r.headers.keys().map(|k| k.as_str().to_owned()).filter(|k| k != "date").collect();
        names.sort();
        (r.status, names, r.headers[NEXT_ACTION_HEADER].clone(), r.body.clone())
    };
    for r in &drops {
        assert_refusal(r, 400, "drop");
        assert_eq!(shape(r), shape(&drops[0]), "{r:?}");
    }
    let rehandshakes = [
        send(&s, "/echo", None, c.seal(b"z").unwrap().frame).await,
        send(&s, "/oncewire/v1/handshake/finish", Some(&id), vec![0; 100]).await,
    ];
    for r in &rehandshakes {
        assert_refusal(r, 401, "rehandshake");
    }
    assert_eq!(s.hits.all(), [1, 0, 0, 0, 0, 0]);
    // The metrics, not the client, learn why.
    assert_eq!(
        rejections(&s),
        [
            (Route::Enroll, Reason::Malformed, 1),
            (Route::Handshake, Reason::Malformed, 1),
            (Route::Finish, Reason::UnknownSession, 1),
            (Route::Call, Reason::Replay, 1),
            (Route::Call, Reason::AuthFailed, 1),
            (Route::Call, Reason::Malformed, 1),
            (Route::Call, Reason::UnknownSession, 1),
            (Route::OneShot, Reason::AuthFailed, 1),
        ]
    );
}

/// The handshake and enrollment routes read their body with axum's `Bytes`
/// extractor (`enroll`, `handshake`, `finish` in server.rs), so a body over axum's default limit
/// (2 MiB, not `Config::max_body`) is refused by axum itself: 413 with a
/// text body that says why, no next action, and no metric counted.
#[tokio::test]
async fn oversize_handshake_body_is_an_opaque_refusal() {
    let s = serve().await;
    let max = s.backend.config().max_body;
    for path in ["/oncewire/v1/handshake", "/oncewire/v1/handshake/finish", "/oncewire/v1/enroll"] {
        let r = send(&s, path, Some("0000000000000000"), vec![0xa5; (max + 1).max(3 << 20)]).await;
        assert_refusal(&r, 400, "drop");
    }
    assert_eq!(rejections(&s).len(), 3);
}
