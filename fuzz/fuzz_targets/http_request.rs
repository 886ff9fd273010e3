//! The HTTP backend's request path, in process: one `Backend` with the full
//! router (oncewire's routes, a sealed `/echo`, a bound `/pay`, a one-shot
//! `/ping`, `/metrics`), a device enrolled and a session established
//! through the router itself, then per input one request (or two) with an
//! arbitrary path, method, headers and body: arbitrary bytes, or a genuine
//! sealed frame, key update, bound call or one-shot request of the real
//! session, mutated or sent twice.
//!
//! Properties (a panic is a finding):
//! - no panic anywhere, handlers included;
//! - every status is in a closed set;
//! - on oncewire's routes, the sealed routes and the one-shot route, a
//!   response that is not an acceptance is a refusal: no
//!   `application/oncewire` content type, an `Oncewire-Next-Action` among
//!   the five (with its status, `SPEC.md` §16.6) and an empty body; a
//!   sealed route's reply is sealed only for a call the layer accepted;
//! - only a genuine, unmutated frame (record or key update) is accepted by
//!   the sealing layer, and only under the real session's header (never
//!   under another established session's); a server's sealed reply sent
//!   back is never accepted; a genuine frame under the real session on a
//!   sealed route is accepted, and its reply opens with the client's
//!   session and the request's id;
//! - a frame accepted once is refused (`drop`) the second time and does not
//!   reach the application; a frame that was refused before being opened
//!   is still accepted afterwards;
//! - a bound call reaches `/pay` only with both a fresh challenge and the
//!   token, its plaintext untouched, once (refused otherwise, unsealed,
//!   with its next action; `drop` the second time); a one-shot request reaches
//!   `/ping` only unmutated, bound to that path, once;
//! - no response other than a sealed one or the operator's metrics
//!   contains the plaintext that was sealed.
//!
//! The backend's clock is shared with the client and moves 1 ms per input,
//! so that the once sets never see two uses at one instant; the session is
//! renewed long before it expires, the token before it does.
#![no_main]
#[path = "common.rs"]
mod common;

use arbitrary::Arbitrary;
use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, Uri, header};
use axum::routing::post;
use libfuzzer_sys::fuzz_target;
use oncewire::bound::MAX_BOUND_LEN;
use oncewire::challenge::Challenge;
use oncewire::device::{DeviceId, MAX_ENROLLMENT_REQUEST_LEN, SoftwareSigner};
use oncewire::handshake::MAX_HANDSHAKE_LEN;
use oncewire::prover::Prover;
use oncewire::request::{PAYLOAD_OFFSET, REQUEST_OVERHEAD, RequestSender};
use oncewire::wire::buffer_len;
use oncewire::{ClientHandshake, Clock, Limits, PublicKey, RequestId, RustCrypto, Secret, ServerKey, Session};
use oncewire_http::metrics::Route;
use oncewire_http::server::{
    Backend, ChallengeBound, CheckedToken, Need, ONE_SHOT_INFO, OneShot, Opened, VerifiedDevice,
};
use oncewire_http::{CONTENT_TYPE, NEXT_ACTION_HEADER, ROUTE_HEADER, SESSION_HEADER, parse_session_hex, session_hex};
use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tower::ServiceExt;

// --- the application -----------------------------------------------------------

static ECHO: AtomicU64 = AtomicU64::new(0);
static PAY: AtomicU64 = AtomicU64::new(0);
static PING: AtomicU64 = AtomicU64::new(0);

/// The device's id (made once: `common::device` also derives a key).
fn device_id() -> DeviceId {
    static ID: std::sync::OnceLock<DeviceId> = std::sync::OnceLock::new();
    *ID.get_or_init(|| common::device().0)
}

async fn echo(VerifiedDevice(device): VerifiedDevice, Opened(body): Opened) -> Vec<u8> {
    assert_eq!(device, device_id(), "a sealed call of another device");
    ECHO.fetch_add(1, Ordering::SeqCst);
    let mut out = b"echo:".to_vec();
    out.extend_from_slice(&body);
    out
}

async fn pay(
    VerifiedDevice(device): VerifiedDevice,
    _: ChallengeBound,
    token: CheckedToken,
    Opened(body): Opened,
) -> Vec<u8> {
    assert_eq!(device, device_id(), "a bound call of another device");
    assert_eq!(token.subject, device_id().as_bytes(), "a token of another device");
    PAY.fetch_add(1, Ordering::SeqCst);
    let mut out = b"paid:".to_vec();
    out.extend_from_slice(&body);
    out
}

async fn ping(_: OneShot, Opened(_): Opened) -> StatusCode {
    PING.fetch_add(1, Ordering::SeqCst);
    StatusCode::ACCEPTED
}

// --- the input -----------------------------------------------------------------

#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
enum Path {
    EnrollChallenge,
    Enroll,
    Handshake,
    Finish,
    Challenge,
    RequestKey,
    Token,
    Echo,
    Pay,
    Ping,
    Metrics,
    EchoQuery,
}

#[derive(Arbitrary, Debug)]
enum PathSel {
    Known(Path),
    Other(String),
}

#[derive(Arbitrary, Debug)]
enum MethodSel {
    Post,
    Get,
    Put,
    Head,
    Delete,
    Options,
    Patch,
    Other(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
enum SessionSel {
    None,
    Real,
    /// The real id in upper case: lenient parsing may accept it.
    RealUpper,
    Hex(u64),
    Raw(Vec<u8>),
    /// The real id first, another value after it.
    RealThenRaw(Vec<u8>),
    RawThenReal(Vec<u8>),
    /// Another established session of the same device.
    OtherSession,
}

#[derive(Arbitrary, Debug)]
enum ContentTypeSel {
    None,
    Oncewire,
    Json,
    Raw(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
enum LengthSel {
    None,
    Honest,
    Lie(u32),
    Raw(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
enum RouteSel {
    None,
    Hex(u64),
    Raw(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
enum Mutation {
    Flip { at: u16, bit: u8 },
    Set { at: u16, byte: u8 },
    Insert { at: u16, byte: u8 },
    Remove { at: u16 },
    Truncate { len: u16 },
    Append(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
enum BodySel {
    Raw(Vec<u8>),
    /// A body around the 64 KiB limit, or around 2 MiB (axum's default limit).
    Large {
        fill: u8,
        delta: i16,
        huge: bool,
    },
    Genuine {
        plain: Vec<u8>,
        mutations: Vec<Mutation>,
    },
    Twice {
        plain: Vec<u8>,
    },
    KeyUpdate {
        mutations: Vec<Mutation>,
        twice: bool,
    },
    Bound {
        request: Vec<u8>,
        challenge: bool,
        token: bool,
        mutations: Vec<Mutation>,
        twice: bool,
    },
    OneShot {
        plain: Vec<u8>,
        for_ping: bool,
        mutations: Vec<Mutation>,
        twice: bool,
    },
    /// The server's sealed reply to a genuine call, sent back to it.
    Reflect {
        plain: Vec<u8>,
        mutations: Vec<Mutation>,
    },
}

#[derive(Arbitrary, Debug)]
struct Input {
    path: PathSel,
    method: MethodSel,
    session: SessionSel,
    content_type: ContentTypeSel,
    length: LengthSel,
    route: RouteSel,
    body: BodySel,
}

// --- the world -----------------------------------------------------------------

/// The backend's and the client's clock: moved by the harness only.
#[derive(Clone, Debug)]
struct Tick(Arc<AtomicU64>);

impl Clock for Tick {
    fn now_ms(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// What a route is, as the checks see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    /// oncewire's unsealed routes.
    Plain,
    /// Behind the sealing layer.
    Sealed,
    OneShot,
    Metrics,
    Other,
}

fn class_of(path: &str) -> Class {
    match path {
        "/oncewire/v1/enroll/challenge"
        | "/oncewire/v1/enroll"
        | "/oncewire/v1/handshake"
        | "/oncewire/v1/handshake/finish"
        | "/oncewire/v1/challenge" => Class::Plain,
        "/oncewire/v1/request-key" | "/oncewire/v1/token" | "/echo" | "/pay" => Class::Sealed,
        "/ping" => Class::OneShot,
        "/metrics" => Class::Metrics,
        _ => Class::Other,
    }
}

#[derive(Debug)]
struct Resp {
    status: u16,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Resp {
    fn is_oncewire(&self) -> bool {
        self.headers.get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes() == CONTENT_TYPE.as_bytes())
    }

    fn action(&self) -> Option<&[u8]> {
        self.headers.get(NEXT_ACTION_HEADER).map(HeaderValue::as_bytes)
    }
}

/// Counters read before and after each request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
struct Counts {
    echo: u64,
    pay: u64,
    ping: u64,
    call: u64,
    bound: u64,
    one_shot: u64,
    enroll: u64,
    finish: u64,
}

impl Counts {
    fn minus(self, before: Self) -> Self {
        Self {
            echo: self.echo - before.echo,
            pay: self.pay - before.pay,
            ping: self.ping - before.ping,
            call: self.call - before.call,
            bound: self.bound - before.bound,
            one_shot: self.one_shot - before.one_shot,
            enroll: self.enroll - before.enroll,
            finish: self.finish - before.finish,
        }
    }
}

/// How a request is sent: path, method and headers.
struct Spec {
    uri: Uri,
    method: Method,
    session: SessionExpect,
    headers: Vec<(HeaderName, HeaderValue)>,
    length: Option<Vec<u8>>,
}

/// Whether the request carries the real session's header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SessionExpect {
    /// The exact header of the real session (first value).
    Real,
    /// Not the real session.
    Not,
    /// Another session, which exists: the frame does not open under it.
    Wrong,
    /// Unspecified by `SPEC.md` (upper case, a second value).
    Maybe,
}

const STATUSES: &[u16] = &[200, 202, 204, 400, 401, 403, 404, 405, 413, 503];
const REFUSALS: &[(u16, &[u8])] =
    &[(400, b"drop"), (401, b"rehandshake"), (403, b"reenroll"), (401, b"refresh-token"), (503, b"retry-later")];
fn is_refusal(status: u16, action: &[u8]) -> bool {
    REFUSALS.iter().any(|&(s, a)| s == status && a == action)
}

/// The largest body the backend takes (its default config).
const MAX_BODY: usize = 64 * 1024;

struct World {
    rt: tokio::runtime::Runtime,
    router: Router,
    backend: Backend,
    clock: Tick,
    rng: common::DetRng,
    prover: Prover<SoftwareSigner>,
    server_public: PublicKey,
    session: Session,
    sid: [u8; 8],
    session_at: u64,
    /// A second session of the device, never used to seal.
    other_sid: [u8; 8],
    /// Every session established so far (they stay in the store).
    known_sids: Vec<[u8; 8]>,
    token: Vec<u8>,
    token_at: u64,
    request_key: PublicKey,
    inputs: u64,
}

/// Sends one request through the router, in process.
fn send_on(rt: &tokio::runtime::Runtime, router: &Router, req: Request<Body>) -> Resp {
    rt.block_on(async {
        let resp = match router.clone().oneshot(req).await {
            Ok(r) => r,
            Err(e) => match e {},
        };
        let (parts, body) = resp.into_parts();
        let body = axum::body::to_bytes(body, usize::MAX).await.expect("a response body that does not read");
        Resp { status: parts.status.as_u16(), headers: parts.headers, body: body.to_vec() }
    })
}

fn post_on(rt: &tokio::runtime::Runtime, router: &Router, path: &str, sid: Option<&[u8; 8]>, body: Vec<u8>) -> Resp {
    let mut b = Request::builder().method(Method::POST).uri(path).header(header::CONTENT_TYPE, CONTENT_TYPE);
    if let Some(id) = sid {
        b = b.header(SESSION_HEADER, session_hex(id));
    }
    send_on(rt, router, b.body(Body::from(body)).unwrap())
}

impl World {
    fn new() -> Self {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let clock = Tick(Arc::new(AtomicU64::new(common::NOW)));
        let key = ServerKey::<RustCrypto>::from_bytes(&Secret::new([0x11; 32])).unwrap();
        let backend = Backend::builder(key).clock(clock.clone()).build().unwrap();
        let app = Router::new()
            .route("/echo", post(echo))
            .route("/pay", post(pay).route_layer(backend.require(Need::CHALLENGE_AND_TOKEN)));
        let router = backend
            .router()
            .merge(backend.sealed(app))
            .merge(backend.one_shot(Router::new().route("/ping", post(ping))))
            .merge(backend.metrics_router());
        let server_public = backend.public_key();
        let (device, signer) = common::device();
        let mut prover = Prover::new(signer);

        // Enrollment, through the router.
        let r = post_on(&rt, &router, "/oncewire/v1/enroll/challenge", None, Vec::new());
        assert_eq!(r.status, 200, "setup: enrollment challenge");
        let challenge = r.body;
        let answer = prover.answer_enrollment(&server_public, &challenge, device).unwrap();
        let mut buf = [0u8; MAX_ENROLLMENT_REQUEST_LEN];
        let n = answer.to_bytes(&mut buf).unwrap();
        let mut body = challenge;
        body.extend_from_slice(&buf[..n]);
        let r = post_on(&rt, &router, "/oncewire/v1/enroll", None, body);
        assert_eq!(r.status, 204, "setup: enrollment");

        let mut rng = common::DetRng(0x6f6e_6365_7769_7265);
        let (_, other_sid) = handshake(&rt, &router, &clock, &mut rng, &mut prover, server_public);
        let (session, sid) = handshake(&rt, &router, &clock, &mut rng, &mut prover, server_public);
        let mut w = Self {
            rt,
            router,
            backend,
            clock,
            rng,
            prover,
            server_public,
            session,
            sid,
            session_at: common::NOW,
            other_sid,
            known_sids: vec![other_sid, sid],
            token: Vec::new(),
            token_at: common::NOW,
            request_key: server_public,
            inputs: 0,
        };
        w.fetch_token();
        // The request key, authenticated over the session as a client gets it.
        let (frame, rid) = w.seal(b"");
        let mut r = w.post("/oncewire/v1/request-key", Some(w.sid), frame);
        assert_eq!(r.status, 200, "setup: request key");
        let key = w.session.open_response(&w.clock, rid, &mut r.body).expect("setup: request key reply").payload;
        w.request_key = PublicKey::from_sec1_uncompressed(key).unwrap();
        assert_eq!(w.request_key, w.backend.request_key(), "setup: request key");
        w
    }

    fn now(&self) -> u64 {
        self.clock.now_ms()
    }

    fn post(&self, path: &str, sid: Option<[u8; 8]>, body: Vec<u8>) -> Resp {
        post_on(&self.rt, &self.router, path, sid.as_ref(), body)
    }

    fn counts(&self) -> Counts {
        let m = self.backend.metrics();
        Counts {
            echo: ECHO.load(Ordering::SeqCst),
            pay: PAY.load(Ordering::SeqCst),
            ping: PING.load(Ordering::SeqCst),
            call: m.accepted_count(Route::Call),
            bound: m.accepted_count(Route::Bound),
            one_shot: m.accepted_count(Route::OneShot),
            enroll: m.accepted_count(Route::Enroll),
            finish: m.accepted_count(Route::Finish),
        }
    }

    fn fetch_token(&mut self) {
        let (frame, rid) = self.seal(b"");
        let mut r = self.post("/oncewire/v1/token", Some(self.sid), frame);
        assert_eq!(r.status, 200, "token: {r:?}");
        let token = self.session.open_response(&self.clock, rid, &mut r.body).expect("token reply").payload;
        self.token = token.to_vec();
        self.token_at = self.now();
    }

    /// One ms per input; a new session and token well before they expire.
    fn advance(&mut self) {
        self.clock.0.fetch_add(1, Ordering::SeqCst);
        self.inputs += 1;
        if self.inputs.is_multiple_of(4096) {
            self.rt.block_on(self.backend.sweep());
        }
        if self.now() - self.session_at > Limits::DEFAULT.lifetime_ms / 2 || self.session.needs_rehandshake() {
            self.rt.block_on(self.backend.sweep());
            let (s, id) =
                handshake(&self.rt, &self.router, &self.clock, &mut self.rng, &mut self.prover, self.server_public);
            self.session = s;
            self.sid = id;
            self.known_sids.push(id);
            self.session_at = self.now();
        }
        if self.now() - self.token_at > 200_000 {
            self.fetch_token();
        }
    }

    fn seal(&mut self, plain: &[u8]) -> (Vec<u8>, RequestId) {
        let mut frame = vec![0u8; buffer_len(plain.len())];
        let (n, rid) = self.session.seal_request(&self.clock, plain, &mut frame).expect("seal");
        frame.truncate(n);
        (frame, rid)
    }

    fn spec(&self, input: &Input) -> Spec {
        let path: String = match &input.path {
            PathSel::Known(p) => match p {
                Path::EnrollChallenge => "/oncewire/v1/enroll/challenge",
                Path::Enroll => "/oncewire/v1/enroll",
                Path::Handshake => "/oncewire/v1/handshake",
                Path::Finish => "/oncewire/v1/handshake/finish",
                Path::Challenge => "/oncewire/v1/challenge",
                Path::RequestKey => "/oncewire/v1/request-key",
                Path::Token => "/oncewire/v1/token",
                Path::Echo => "/echo",
                Path::Pay => "/pay",
                Path::Ping => "/ping",
                Path::Metrics => "/metrics",
                Path::EchoQuery => "/echo?oncewire=1",
            }
            .to_owned(),
            PathSel::Other(s) => s.clone(),
        };
        let uri = Uri::try_from(path.as_str())
            .ok()
            .filter(|u| u.path().starts_with('/') && u.authority().is_none())
            .unwrap_or_else(|| Uri::from_static("/not-a-route"));
        let method = match &input.method {
            MethodSel::Post => Method::POST,
            MethodSel::Get => Method::GET,
            MethodSel::Put => Method::PUT,
            MethodSel::Head => Method::HEAD,
            MethodSel::Delete => Method::DELETE,
            MethodSel::Options => Method::OPTIONS,
            MethodSel::Patch => Method::PATCH,
            MethodSel::Other(b) => Method::from_bytes(b).unwrap_or(Method::POST),
        };
        let real = session_hex(&self.sid);
        let mut headers = Vec::new();
        let hv = |b: &[u8]| HeaderValue::from_bytes(b).ok();
        let session_name = HeaderName::from_static(SESSION_HEADER);
        let mut session_values: Vec<HeaderValue> = Vec::new();
        match &input.session {
            SessionSel::None => {}
            SessionSel::Real => session_values.push(HeaderValue::from_str(&real).unwrap()),
            SessionSel::RealUpper => session_values.push(HeaderValue::from_str(&real.to_uppercase()).unwrap()),
            SessionSel::Hex(v) => session_values.push(HeaderValue::from_str(&format!("{v:016x}")).unwrap()),
            SessionSel::Raw(b) => session_values.extend(hv(b)),
            SessionSel::RealThenRaw(b) => {
                session_values.push(HeaderValue::from_str(&real).unwrap());
                session_values.extend(hv(b));
            }
            SessionSel::OtherSession => {
                session_values.push(HeaderValue::from_str(&session_hex(&self.other_sid)).unwrap());
            }
            SessionSel::RawThenReal(b) => {
                session_values.extend(hv(b));
                session_values.push(HeaderValue::from_str(&real).unwrap());
            }
        }
        let each: Vec<SessionExpect> = session_values.iter().map(|v| self.names(v.as_bytes())).collect();
        let session = match each.as_slice() {
            [] => SessionExpect::Not,
            [one] => *one,
            // Which of two values counts is not specified.
            more if more.iter().any(|e| matches!(e, SessionExpect::Real | SessionExpect::Maybe)) => {
                SessionExpect::Maybe
            }
            more if more.iter().all(|e| *e == SessionExpect::Not) => SessionExpect::Not,
            _ => SessionExpect::Wrong,
        };
        for v in session_values {
            headers.push((session_name.clone(), v));
        }
        match &input.content_type {
            ContentTypeSel::None => {}
            ContentTypeSel::Oncewire => headers.push((header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE))),
            ContentTypeSel::Json => {
                headers.push((header::CONTENT_TYPE, HeaderValue::from_static("application/json")));
            }
            ContentTypeSel::Raw(b) => headers.extend(hv(b).map(|v| (header::CONTENT_TYPE, v))),
        }
        let length = match &input.length {
            LengthSel::None => None,
            LengthSel::Honest => Some(Vec::new()),
            LengthSel::Lie(n) => Some(n.to_string().into_bytes()),
            LengthSel::Raw(b) => Some(b.clone()),
        };
        match &input.route {
            RouteSel::None => {}
            RouteSel::Hex(v) => {
                headers.push((
                    HeaderName::from_static(ROUTE_HEADER),
                    HeaderValue::from_str(&format!("{v:016x}")).unwrap(),
                ));
            }
            RouteSel::Raw(b) => headers.extend(hv(b).map(|v| (HeaderName::from_static(ROUTE_HEADER), v))),
        }
        Spec { uri, method, session, headers, length }
    }

    /// Which session one value of the session header names.
    fn names(&self, value: &[u8]) -> SessionExpect {
        if value == session_hex(&self.sid).as_bytes() {
            return SessionExpect::Real;
        }
        // Only the lower-case hex of the id names it (§16.2); another
        // spelling that decodes to it would be lenient, not a forgery: not
        // asserted either way.
        match parse_session_hex(core::str::from_utf8(value).unwrap_or("")) {
            Ok(id) if id == self.sid => SessionExpect::Maybe,
            Ok(id) if self.known_sids.contains(&id) => SessionExpect::Wrong,
            _ => SessionExpect::Not,
        }
    }

    /// Sends `body` as `spec` says; checks the shape of the response and
    /// returns it with what moved.
    fn send(&self, spec: &Spec, body: Vec<u8>, plain: &[u8]) -> (Resp, Counts) {
        let mut b = Request::builder().method(spec.method.clone()).uri(spec.uri.clone());
        for (n, v) in &spec.headers {
            b = b.header(n, v);
        }
        match &spec.length {
            None => {}
            Some(l) if l.is_empty() => b = b.header(header::CONTENT_LENGTH, body.len()),
            Some(l) => {
                if let Ok(v) = HeaderValue::from_bytes(l) {
                    b = b.header(header::CONTENT_LENGTH, v);
                }
            }
        }
        let req = b.body(Body::from(body)).expect("a request the harness built");
        let before = self.counts();
        let r = send_on(&self.rt, &self.router, req);
        let d = self.counts().minus(before);
        self.check_shape(class_of(spec.uri.path()), &r, d, plain);
        (r, d)
    }

    /// Sends `frame` to `/echo`, `POST`, under the real session.
    fn send_echo(&self, frame: Vec<u8>, plain: &[u8]) -> (Resp, Counts) {
        self.send(&self.echo_spec(), frame, plain)
    }

    fn echo_spec(&self) -> Spec {
        Spec {
            uri: Uri::from_static("/echo"),
            method: Method::POST,
            session: SessionExpect::Real,
            headers: vec![
                (HeaderName::from_static(SESSION_HEADER), HeaderValue::from_str(&session_hex(&self.sid)).unwrap()),
                (header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE)),
            ],
            length: None,
        }
    }

    fn send_to(&self, path: &'static str, frame: Vec<u8>, plain: &[u8]) -> (Resp, Counts) {
        let spec = Spec {
            uri: Uri::from_static(path),
            method: Method::POST,
            session: SessionExpect::Real,
            headers: vec![(
                HeaderName::from_static(SESSION_HEADER),
                HeaderValue::from_str(&session_hex(&self.sid)).unwrap(),
            )],
            length: None,
        };
        self.send(&spec, frame, plain)
    }

    fn check_shape(&self, class: Class, r: &Resp, d: Counts, plain: &[u8]) {
        assert!(STATUSES.contains(&r.status), "status {} outside the closed set: {r:?}", r.status);
        assert!(d.call <= 1 && d.bound <= 1 && d.one_shot <= 1, "one request accepted more than once: {d:?}");
        let accepted = match class {
            Class::Plain => r.is_oncewire() || (r.status == 204 && (d.enroll == 1 || d.finish == 1)),
            Class::Sealed => r.is_oncewire(),
            Class::OneShot => d.one_shot == 1,
            Class::Metrics | Class::Other => true,
        };
        if class == Class::Sealed && r.is_oncewire() {
            assert_eq!(d.call, 1, "a sealed reply without an acceptance: {r:?}");
        }
        if class == Class::OneShot && d.one_shot == 1 {
            assert!(!r.is_oncewire() && r.body.is_empty(), "a one-shot reply with a body: {r:?}");
        }
        if !accepted {
            let action = r.action().unwrap_or_else(|| panic!("a refusal without a next action on {class:?}: {r:?}"));
            assert!(
                is_refusal(r.status, action),
                "a refusal with status {} and next action {:?}: {r:?}",
                r.status,
                String::from_utf8_lossy(action)
            );
            assert!(r.body.is_empty(), "a refusal with a body: {r:?}");
        }
        if !r.is_oncewire() && class != Class::Metrics && plain.len() >= 4 && r.body.len() >= plain.len() {
            assert!(!r.body.windows(plain.len()).any(|w| w == plain), "plaintext in a response in the clear: {r:?}");
        }
    }

    /// A refusal of a replayed frame: `drop`, nothing moved.
    fn assert_replay_refused(&self, r: &Resp, d: Counts, what: &str) {
        assert_eq!(d, Counts::default(), "{what} accepted twice: {r:?}");
        assert!(!r.is_oncewire(), "{what} accepted twice: {r:?}");
        assert_eq!((r.status, r.action()), (400, Some(&b"drop"[..])), "{what} replayed: {r:?}");
    }

    /// The genuine frame `frame` was sent as `spec` says and got `r`; checks
    /// what must hold whatever the route.
    fn check_genuine(&mut self, spec: &Spec, r: &Resp, d: Counts, rid: RequestId) -> Option<(u16, Vec<u8>)> {
        let class = class_of(spec.uri.path());
        match (class, spec.session) {
            (Class::Sealed, SessionExpect::Real) if spec.method == Method::POST => {
                assert_eq!(d.call, 1, "a genuine frame under the real session refused: {r:?}");
            }
            (Class::Sealed, _) if spec.method != Method::POST => {
                // Only POST carries a sealed request: nothing is opened or used up.
                assert_eq!(d.call, 0, "a frame accepted with {}: {r:?}", spec.method);
                assert_eq!((r.status, r.action()), (400, Some(&b"drop"[..])), "method {}: {r:?}", spec.method);
            }
            (_, SessionExpect::Wrong) => {
                assert_eq!(d.call, 0, "a frame accepted under another session: {r:?}");
            }
            (Class::Sealed, SessionExpect::Not) => {
                assert_eq!(d.call, 0, "a frame accepted under another session header: {r:?}");
                assert_eq!((r.status, r.action()), (401, Some(&b"rehandshake"[..])), "no session: {r:?}");
            }
            (Class::Plain | Class::OneShot | Class::Metrics, _) => {
                assert_eq!(d.call, 0, "a frame accepted off the sealed routes: {r:?}");
            }
            _ => {}
        }
        if d.call == 0 {
            assert_eq!((d.echo, d.pay), (0, 0), "the application reached without an acceptance: {d:?}");
            return None;
        }
        if !r.is_oncewire() {
            // Accepted, then refused from inside (a bound route's checks, an
            // extractor): unsealed, its shape checked by `check_shape`.
            return None;
        }
        if spec.method == Method::HEAD {
            return None;
        }
        let mut body = r.body.clone();
        let opened = self.session.open_response(&self.clock, rid, &mut body);
        let payload = opened.unwrap_or_else(|e| panic!("a reply that does not open ({e:?}): {r:?}")).payload.to_vec();
        Some((r.status, payload))
    }

    fn run(&mut self, input: Input) {
        self.advance();
        let spec = self.spec(&input);
        let path = spec.uri.path().to_owned();
        let post_real = spec.method == Method::POST && spec.session == SessionExpect::Real;
        match input.body {
            BodySel::Raw(bytes) => {
                let (_, d) = self.send(&spec, bytes, b"");
                self.assert_nothing_forged(d);
            }
            BodySel::Large { fill, delta, huge } => {
                let base = if huge { 2 * 1024 * 1024 } else { MAX_BODY };
                let len = base.saturating_add_signed(isize::from(delta));
                let (r, d) = self.send(&spec, vec![fill; len], b"");
                self.assert_nothing_forged(d);
                let checked = match class_of(&path) {
                    // The session header is checked first.
                    Class::Sealed => spec.session == SessionExpect::Real,
                    Class::OneShot => true,
                    _ => false,
                };
                if len > MAX_BODY && checked {
                    assert_eq!((r.status, r.action()), (400, Some(&b"drop"[..])), "a body past the limit: {r:?}");
                }
            }
            BodySel::Genuine { plain, mutations } => {
                let (frame, rid) = self.seal(&plain);
                let sent = mutate(&frame, &mutations);
                let (r, d) = self.send(&spec, sent.clone(), &plain);
                if sent != frame {
                    self.assert_nothing_forged(d);
                    return;
                }
                let reply = self.check_genuine(&spec, &r, d, rid);
                if path == "/echo" && post_real {
                    let (status, payload) = reply.expect("an accepted call");
                    assert_eq!(status, 200, "echo: {r:?}");
                    assert_eq!(d.echo, 1, "echo not reached: {r:?}");
                    assert_eq!(payload, [b"echo:".as_slice(), &plain].concat(), "echo answered another body");
                }
            }
            BodySel::Twice { plain } => {
                let (frame, rid) = self.seal(&plain);
                let (r, d) = self.send(&spec, frame.clone(), &plain);
                self.check_genuine(&spec, &r, d, rid);
                let (mut r2, d2) = self.send_echo(frame, &plain);
                if d.call == 1 {
                    self.assert_replay_refused(&r2, d2, "a frame");
                } else {
                    // Refused before it was opened: it is still good.
                    assert_eq!((d2.call, d2.echo), (1, 1), "a frame refused unopened is not accepted later: {r2:?}");
                    let payload = self.session.open_response(&self.clock, rid, &mut r2.body).expect("reply").payload;
                    assert_eq!(payload, [b"echo:".as_slice(), &plain].concat());
                }
            }
            BodySel::KeyUpdate { mutations, twice } => {
                let mut buf = [0u8; 256];
                let Ok(n) = self.session.update_keys(&self.clock, &mut buf) else { return };
                let frame = buf[..n].to_vec();
                let sent = mutate(&frame, &mutations);
                let (r, d) = self.send(&spec, sent.clone(), b"");
                let mut delivered = false;
                if sent != frame {
                    self.assert_nothing_forged(d);
                } else {
                    if class_of(&path) == Class::Sealed && post_real {
                        assert_eq!(d.call, 1, "a genuine key update refused: {r:?}");
                    }
                    if d.call == 1 {
                        assert_eq!(r.status, 204, "a key update answered {r:?}");
                        assert!(r.body.is_empty() && d.echo == 0 && d.pay == 0, "a key update reached the application");
                        delivered = true;
                    }
                }
                if !delivered {
                    let (r, d) = self.send_echo(frame.clone(), b"");
                    assert_eq!((r.status, d.call, d.echo), (204, 1, 0), "a key update not taken: {r:?}");
                    assert!(r.is_oncewire() && r.body.is_empty(), "a key update answered {r:?}");
                }
                if twice {
                    let (r, d) = self.send_echo(frame, b"");
                    self.assert_replay_refused(&r, d, "a key update");
                }
            }
            BodySel::Bound { request, challenge, token, mutations, twice } => {
                let c = challenge.then(|| {
                    let r = self.post("/oncewire/v1/challenge", None, Vec::new());
                    assert_eq!(r.status, 200, "challenge: {r:?}");
                    Challenge::from_bytes(&r.body).expect("a challenge")
                });
                let t = token.then(|| self.token.clone());
                let plain = self.bind(c.as_ref(), t.as_deref(), &request);
                let sent_plain = mutate(&plain, &mutations);
                let (frame, rid) = self.seal(&sent_plain);
                let (r, d) = self.send(&spec, frame, &sent_plain);
                let reply = self.check_genuine(&spec, &r, d, rid);
                let complete =
                    path == "/pay" && spec.method == Method::POST && challenge && token && sent_plain == plain;
                let expect_paid = complete && spec.session == SessionExpect::Real;
                if complete && spec.session == SessionExpect::Maybe {
                    // Not specified: whether a lenient header names the session.
                } else if expect_paid {
                    let (status, payload) = reply.expect("an accepted call");
                    assert_eq!((status, d.pay, d.bound), (200, 1, 1), "a genuine bound call refused: {r:?}");
                    assert_eq!(payload, [b"paid:".as_slice(), &request].concat(), "pay answered another body");
                } else {
                    assert_eq!((d.pay, d.bound), (0, 0), "a bound call that should fail reached /pay: {r:?}");
                    if path == "/pay" && spec.method == Method::POST && d.call == 1 {
                        // Refused by the bound checks: unsealed, with its next
                        // action (`check_shape`).
                        assert!(reply.is_none(), "a failed bound call answered sealed: {r:?}");
                    }
                }
                if twice && expect_paid {
                    let (frame, _) = self.seal(&plain);
                    let (r, d) = self.send_to("/pay", frame, &plain);
                    assert_eq!((d.call, d.bound, d.pay), (1, 0, 0), "a bound call used twice: {r:?}");
                    assert!(!r.is_oncewire() && r.body.is_empty(), "a bound call used twice: {r:?}");
                    assert_eq!((r.status, r.action()), (400, Some(&b"drop"[..])), "a bound call used twice: {r:?}");
                }
            }
            BodySel::Reflect { plain, mutations } => {
                let (frame, rid) = self.seal(&plain);
                let (r, d) = self.send_echo(frame, &plain);
                assert_eq!((d.call, d.echo), (1, 1), "a genuine call refused: {r:?}");
                assert!(self.check_genuine(&self.echo_spec(), &r, d, rid).is_some(), "an echo not sealed: {r:?}");
                let (_, d) = self.send(&spec, mutate(&r.body, &mutations), &plain);
                self.assert_nothing_forged(d);
            }
            BodySel::OneShot { plain, for_ping, mutations, twice } => {
                let aad: &[u8] = if for_ping { b"/ping" } else { b"/echo" };
                let mut buf = vec![0u8; plain.len() + REQUEST_OVERHEAD];
                buf[PAYLOAD_OFFSET..PAYLOAD_OFFSET + plain.len()].copy_from_slice(&plain);
                let n = RequestSender::new(self.request_key)
                    .seal(&mut self.rng, &self.clock, None, ONE_SHOT_INFO, aad, &mut buf, plain.len())
                    .expect("one-shot seal");
                buf.truncate(n);
                let sent = mutate(&buf, &mutations);
                let (r, d) = self.send(&spec, sent.clone(), &plain);
                assert_eq!(d.call, 0, "a one-shot request accepted as a sealed call: {r:?}");
                let genuine = sent == buf && for_ping;
                if !genuine {
                    assert_eq!(
                        (d.one_shot, d.ping),
                        (0, 0),
                        "a tampered or misrouted one-shot request accepted: {r:?}"
                    );
                } else if path == "/ping" && spec.method == Method::POST {
                    assert_eq!(d.one_shot, 1, "a genuine one-shot request refused: {r:?}");
                    assert_eq!((r.status, d.ping), (202, 1), "ping: {r:?}");
                } else if path == "/ping" {
                    // Only POST carries a one-shot request: nothing is recorded.
                    assert_eq!((d.one_shot, d.ping), (0, 0), "a one-shot accepted with {}: {r:?}", spec.method);
                }
                if twice && d.one_shot == 1 {
                    let (r, d) = self.send_to("/ping", buf, &plain);
                    self.assert_replay_refused(&r, d, "a one-shot request");
                }
            }
        }
    }

    /// Nothing was accepted for a body that is not a genuine frame.
    fn assert_nothing_forged(&self, d: Counts) {
        let moved = Counts { enroll: 0, ..d };
        assert_eq!(moved, Counts::default(), "a forged body was accepted: {d:?}");
    }

    /// `bound_len ‖ bound ‖ token_len ‖ token ‖ request` (`SPEC.md` §16.4.1).
    fn bind(&mut self, challenge: Option<&Challenge>, token: Option<&[u8]>, request: &[u8]) -> Vec<u8> {
        let bound = self.prover.bound_request(&mut self.rng, &self.clock, request, challenge, token).expect("bind");
        let mut b = [0u8; MAX_BOUND_LEN];
        let n = bound.to_bytes(&mut b).expect("bound encoding");
        let token = token.unwrap_or_default();
        let mut plain = vec![u8::try_from(n).unwrap()];
        plain.extend_from_slice(&b[..n]);
        plain.extend_from_slice(&u16::try_from(token.len()).unwrap().to_be_bytes());
        plain.extend_from_slice(token);
        plain.extend_from_slice(request);
        plain
    }
}

/// A handshake through the router: message 1, message 2 and the session
/// header, message 3.
fn handshake(
    rt: &tokio::runtime::Runtime,
    router: &Router,
    clock: &Tick,
    rng: &mut common::DetRng,
    prover: &mut Prover<SoftwareSigner>,
    server: PublicKey,
) -> (Session, [u8; 8]) {
    let mut m1 = [0u8; MAX_HANDSHAKE_LEN];
    let (hs, n1) = ClientHandshake::<RustCrypto>::start(server, rng, clock, &mut m1).unwrap();
    let r = post_on(rt, router, "/oncewire/v1/handshake", None, m1[..n1].to_vec());
    assert_eq!(r.status, 200, "setup: handshake: {r:?}");
    let id = r.headers.get(SESSION_HEADER).and_then(|v| v.to_str().ok()).expect("setup: session header");
    let id = parse_session_hex(id).unwrap();
    let mut m3 = [0u8; MAX_HANDSHAKE_LEN];
    let (session, n3): (Session, usize) =
        hs.finish(clock, &r.body, device_id(), prover.signer(), Limits::DEFAULT, &mut m3).unwrap();
    assert_eq!(session.session_id(), &id, "setup: session id");
    let r = post_on(rt, router, "/oncewire/v1/handshake/finish", Some(&id), m3[..n3].to_vec());
    assert_eq!(r.status, 204, "setup: message 3: {r:?}");
    (session, id)
}

fn mutate(original: &[u8], mutations: &[Mutation]) -> Vec<u8> {
    let mut v = original.to_vec();
    for m in mutations {
        let at = |a: u16, len: usize| usize::from(a) % (len + 1);
        match m {
            Mutation::Flip { at: a, bit } => {
                let i = at(*a, v.len());
                if let Some(b) = v.get_mut(i) {
                    *b ^= 1 << (bit % 8);
                }
            }
            Mutation::Set { at: a, byte } => {
                let i = at(*a, v.len());
                if let Some(b) = v.get_mut(i) {
                    *b = *byte;
                }
            }
            Mutation::Insert { at: a, byte } => {
                let i = at(*a, v.len());
                v.insert(i, *byte);
            }
            Mutation::Remove { at: a } => {
                let i = at(*a, v.len());
                if i < v.len() {
                    v.remove(i);
                }
            }
            Mutation::Truncate { len } => v.truncate(usize::from(*len)),
            Mutation::Append(bytes) => v.extend_from_slice(bytes),
        }
    }
    v
}

thread_local! {
    static WORLD: RefCell<Option<World>> = const { RefCell::new(None) };
}

fuzz_target!(|input: Input| {
    WORLD.with(|w| {
        let mut w = w.borrow_mut();
        w.get_or_insert_with(World::new).run(input);
    });
});
