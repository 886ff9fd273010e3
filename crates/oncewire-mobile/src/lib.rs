//! oncewire's client side for phone apps, through UniFFI: Kotlin (Android),
//! Swift (iOS) and Python bindings over the same Rust core the HTTP
//! binding's Rust client runs (`crates/oncewire-http/src/client.rs`).
//!
//! # Transport-agnostic
//! Nothing here opens a socket. Every step returns an [`HttpRequest`] (the
//! path under the backend's base URL, the headers and the body of one
//! `POST`, as `SPEC.md` §16 says), the app sends it with its own HTTP
//! stack (OkHttp, URLSession, `java.net.http`), and hands the answer back as
//! an [`HttpResponse`] (status, `Content-Type`, `Oncewire-Session`,
//! `Oncewire-Next-Action`, body). The bytes are those
//! `oncewire_http::client::Client` sends, so the Rust HTTP server accepts
//! them.
//!
//! # The device key stays in hardware
//! [`DeviceSigner`] is implemented by the app (Android Keystore/StrongBox,
//! the Secure Enclave): a 32-byte digest in, a signature out, and it may
//! fail. It returns the signature as the platform gives it,
//! [`Signature::Der`] (`NONEwithECDSA` on Android, `SecKeyCreateSignature`
//! on iOS) or [`Signature::Raw`] (`r ‖ s`); the core converts to the one
//! wire form (raw, low-S, `SPEC.md` §8.2) with its strict DER parser, so
//! no app carries its own converter.
//!
//! # Errors
//! Every failure is an [`OncewireError`] (an exception in Kotlin, Swift and
//! Python) that carries the [`NextAction`]: drop the frame, re-handshake,
//! re-enroll, refresh the token or retry later.
//!
//! # Flow (see `kotlin/OncewireTest.kt`)
//! ```text
//! enroll_challenge()            -> POST; enroll(response) -> POST; enroll_finish(response)
//! handshake_start()             -> POST message 1
//! handshake_finish(response)    -> POST message 3; handshake_confirm(response)
//! seal(path, body)              -> SealedCall { request, request_id }
//! open_reply(request_id, resp)  -> Reply { status, body, next_action }
//! challenge_request(), open_challenge(resp), token_request(), accept_token(id, resp),
//! seal_bound(path, request, challenge, use_token), key_update(path), key_update_finish(resp)
//! request_key_request(), accept_request_key(id, resp), seal_one_shot(path, body), one_shot_finish(resp)
//! ```
//!
//! # Threads
//! A [`Client`] is `Send + Sync` (one lock inside). The signer is called
//! with the lock held: a `DeviceSigner` must not call back into the same
//! client.
#![forbid(unsafe_code)]

use oncewire::bound::MAX_BOUND_LEN;
use oncewire::challenge::{CHALLENGE_LEN, Challenge};
use oncewire::clock::SystemClock;
use oncewire::device::{DeviceSignature, MAX_ENROLLMENT_REQUEST_LEN};
use oncewire::handshake::MAX_HANDSHAKE_LEN;
use oncewire::prover::Prover;
use oncewire::request::{PAYLOAD_OFFSET, REQUEST_OVERHEAD};
use oncewire::rng::OsRng;
use oncewire::token::MAX_TOKEN_LEN;
use oncewire::wire::buffer_len;
use oncewire::{Clock, DeviceId, Error, Limits, PeerAction, PublicKey};
use std::sync::{Arc, Mutex};
use zeroize::Zeroizing;

uniffi::setup_scaffolding!();

/// The content type of every oncewire body (`SPEC.md` §16.1).
pub const CONTENT_TYPE: &str = "application/oncewire";
/// The session header (`SPEC.md` §16.2).
pub const SESSION_HEADER: &str = "Oncewire-Session";
/// The routing header (`SPEC.md` §16.2).
pub const ROUTE_HEADER: &str = "Oncewire-Route";
/// The next-action header of a refusal (`SPEC.md` §16.6).
pub const NEXT_ACTION_HEADER: &str = "Oncewire-Next-Action";

type Session = oncewire::Session;
type ClientAwaitResponse = oncewire::handshake::ClientAwaitResponse;
type SessionId = [u8; 8];

/// `app_info` of one-shot requests over HTTP (`SPEC.md` §16.5).
const ONE_SHOT_INFO: &[u8] = b"oncewire-http/1 one-shot";

// --- errors -------------------------------------------------------------------

/// What the app does after a failure (`SPEC.md` §16.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, uniffi::Enum)]
pub enum NextAction {
    /// Give up on this frame; a retry is a new seal.
    Drop,
    /// Run a new handshake, then seal again.
    Rehandshake,
    /// Enroll the device (again).
    Reenroll,
    /// Fetch a new token and make a new proof.
    RefreshToken,
    /// Try again later (with a new challenge).
    RetryLater,
}

impl NextAction {
    fn of(e: &Error) -> Self {
        match e.peer_action() {
            PeerAction::Rehandshake => Self::Rehandshake,
            PeerAction::Reenroll => Self::Reenroll,
            PeerAction::RefreshToken => Self::RefreshToken,
            PeerAction::RetryLater => Self::RetryLater,
            _ => Self::Drop,
        }
    }

    /// The `Oncewire-Next-Action` token; anything unknown is `drop`.
    fn parse(header: Option<&str>) -> Self {
        match header.map(str::trim) {
            Some("rehandshake") => Self::Rehandshake,
            Some("reenroll") => Self::Reenroll,
            Some("refresh-token") => Self::RefreshToken,
            Some("retry-later") => Self::RetryLater,
            _ => Self::Drop,
        }
    }
}

/// Why a step failed. Every variant names the next action.
#[derive(Debug, PartialEq, Eq, uniffi::Error)]
pub enum OncewireError {
    /// The server refused: an opaque status and its `Oncewire-Next-Action`.
    Refused {
        /// The HTTP status.
        status: u16,
        /// What the server said to do.
        next_action: NextAction,
    },
    /// The protocol failed here: a reply that did not open (tampered, or
    /// not bound to its request), a malformed message, an expired session.
    Protocol {
        /// The core's error, for logs (never a secret).
        reason: String,
        /// What to do next.
        next_action: NextAction,
    },
    /// The [`DeviceSigner`] failed or returned something that is not a
    /// signature (the user cancelled, the key was invalidated).
    Signer {
        /// What the signer said.
        reason: String,
        /// Retry later (or ask the user again).
        next_action: NextAction,
    },
    /// A step out of order or a bad argument (no session, no handshake
    /// pending, a server key that is not a P-256 point).
    Misuse {
        /// What was wrong.
        reason: String,
        /// What to do next (usually re-handshake).
        next_action: NextAction,
    },
}

impl OncewireError {
    fn misuse(reason: &str, next_action: NextAction) -> Self {
        Self::Misuse { reason: reason.to_owned(), next_action }
    }
}

impl core::fmt::Display for OncewireError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Refused { status, next_action } => write!(f, "refused: {status} ({next_action:?})"),
            Self::Protocol { reason, next_action } => write!(f, "protocol: {reason} ({next_action:?})"),
            Self::Signer { reason, next_action } => write!(f, "signer: {reason} ({next_action:?})"),
            Self::Misuse { reason, next_action } => write!(f, "misuse: {reason} ({next_action:?})"),
        }
    }
}

impl std::error::Error for OncewireError {}

impl From<Error> for OncewireError {
    fn from(e: Error) -> Self {
        let next_action = NextAction::of(&e);
        if e == Error::Signer {
            Self::Signer { reason: e.to_string(), next_action }
        } else {
            Self::Protocol { reason: e.to_string(), next_action }
        }
    }
}

/// The next action of an error (a free function: UniFFI error enums have
/// no methods in every language).
#[uniffi::export]
pub fn next_action_of(error: &OncewireError) -> NextAction {
    match error {
        OncewireError::Refused { next_action, .. }
        | OncewireError::Protocol { next_action, .. }
        | OncewireError::Signer { next_action, .. }
        | OncewireError::Misuse { next_action, .. } => *next_action,
    }
}

/// What a [`DeviceSigner`] throws.
#[derive(Debug, uniffi::Error)]
pub enum SignerError {
    /// The hardware failed, the user cancelled, the key is gone.
    Failed {
        /// For logs.
        reason: String,
    },
}

impl core::fmt::Display for SignerError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Failed { reason } => write!(f, "signer failed: {reason}"),
        }
    }
}

impl std::error::Error for SignerError {}

impl From<uniffi::UnexpectedUniFFICallbackError> for SignerError {
    fn from(e: uniffi::UnexpectedUniFFICallbackError) -> Self {
        Self::Failed { reason: e.reason }
    }
}

// --- the device signer -------------------------------------------------------

/// A signature as the platform returns it.
#[derive(Clone, PartialEq, Eq, uniffi::Enum)]
pub enum Signature {
    /// ASN.1 DER `ECDSA-Sig-Value` (Android `NONEwithECDSA`, iOS
    /// `SecKeyCreateSignature`): parsed strictly and normalised to low S here.
    Der {
        /// At most 72 bytes.
        bytes: Vec<u8>,
    },
    /// Raw `r ‖ s` (64 bytes, IEEE P1363); high S is normalised here.
    Raw {
        /// Exactly 64 bytes.
        bytes: Vec<u8>,
    },
}

impl core::fmt::Debug for Signature {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Der { bytes } => write!(f, "Signature::Der({} bytes)", bytes.len()),
            Self::Raw { bytes } => write!(f, "Signature::Raw({} bytes)", bytes.len()),
        }
    }
}

/// The device's P-256 key in the platform's secure hardware, implemented
/// by the app. The private key never crosses this boundary.
///
/// - **Android**: a Keystore (StrongBox) key with `PURPOSE_SIGN` and
///   `DIGEST_NONE`; `Signature.getInstance("NONEwithECDSA")`, `update(digest)`,
///   `sign()` gives DER: return `Signature.Der(bytes)`.
/// - **iOS**: a Secure Enclave key; `SecKeyCreateSignature` with
///   `.ecdsaSignatureDigestX962SHA256` over the digest; DER.
#[uniffi::export(with_foreign)]
pub trait DeviceSigner: Send + Sync {
    /// The public key, 65 bytes SEC1 uncompressed (`04 ‖ x ‖ y`; Java's
    /// `ECPublicKey.getW()` coordinates, iOS `SecKeyCopyExternalRepresentation`).
    ///
    /// # Errors
    /// [`SignerError`] if the hardware cannot be reached.
    fn public_key(&self) -> Result<Vec<u8>, SignerError>;

    /// Signs `digest` (32 bytes, already SHA-256: do not hash it again)
    /// with ECDSA P-256.
    ///
    /// # Errors
    /// [`SignerError`] if the hardware fails or the user cancels.
    fn sign_digest(&self, digest: Vec<u8>) -> Result<Signature, SignerError>;
}

/// The core's signer over the app's. The core's `Error::Signer` has no
/// payload: the app's reason is kept here and put back into
/// [`OncewireError::Signer`].
struct ForeignSigner {
    app: Arc<dyn DeviceSigner>,
    /// Why the last call failed, if it did (the app's text, or ours).
    last_failure: std::sync::Mutex<Option<String>>,
}

impl ForeignSigner {
    fn failed(&self, reason: String) -> Error {
        if let Ok(mut last) = self.last_failure.lock() {
            *last = Some(reason);
        }
        Error::Signer
    }

    /// The reason of the last failure, taken.
    fn take_failure(&self) -> Option<String> {
        self.last_failure.lock().ok().and_then(|mut l| l.take())
    }
}

impl oncewire::DeviceSigner for ForeignSigner {
    fn public_key(&self) -> oncewire::Result<PublicKey> {
        let bytes = self.app.public_key().map_err(|e| self.failed(e.to_string()))?;
        PublicKey::from_sec1_uncompressed(&bytes)
            .map_err(|_| self.failed("public key: not 65 bytes of a SEC1 uncompressed P-256 point".to_owned()))
    }

    fn sign_digest(&mut self, digest: &[u8; 32]) -> oncewire::Result<DeviceSignature> {
        let sig = match self.app.sign_digest(digest.to_vec()).map_err(|e| self.failed(e.to_string()))? {
            Signature::Der { bytes } => DeviceSignature::from_der(&bytes),
            Signature::Raw { bytes } => DeviceSignature::from_raw(&bytes),
        };
        let sig = sig.map_err(|_| self.failed("signature: neither 64 raw bytes nor at most 72 of DER".to_owned()))?;
        // Checked here (the core converts again) to name the failure.
        sig.to_raw_low_s().map_err(|_| self.failed("signature: not strict DER or not a valid r, s".to_owned()))?;
        Ok(sig)
    }
}

impl State {
    /// A core error of a step that used the signer, with the signer's reason.
    fn signer_error(&mut self, e: Error) -> OncewireError {
        let reason = self.prover.signer().take_failure();
        match (e, reason) {
            (Error::Signer, Some(reason)) => OncewireError::Signer { reason, next_action: NextAction::RetryLater },
            (e, _) => e.into(),
        }
    }
}

/// Converts a DER ECDSA P-256 signature to the wire form, raw `r ‖ s` with
/// low S (`SPEC.md` §8.2), with the core's strict parser. For apps that
/// keep signatures of their own; a [`DeviceSigner`] can return DER as is.
///
/// # Errors
/// [`OncewireError::Signer`] if it is not strict DER of a valid signature.
#[uniffi::export]
pub fn der_to_raw_low_s(der: Vec<u8>) -> Result<Vec<u8>, OncewireError> {
    Ok(DeviceSignature::from_der(&der)?.to_raw_low_s()?.to_vec())
}

// --- HTTP, as data -----------------------------------------------------------

/// One header.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct Header {
    /// Its name, as `SPEC.md` §16.2 spells it.
    pub name: String,
    /// Its value.
    pub value: String,
}

/// One `POST` for the app to send: to `base + path`, with `headers`
/// (always `Content-Type: application/oncewire`) and `body`.
#[derive(Clone, PartialEq, Eq, uniffi::Record)]
pub struct HttpRequest {
    /// Absolute path, e.g. `/oncewire/v1/handshake` or `/v1/notes`.
    pub path: String,
    /// The headers to set.
    pub headers: Vec<Header>,
    /// The body (oncewire bytes, never plaintext).
    pub body: Vec<u8>,
}

impl core::fmt::Debug for HttpRequest {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("HttpRequest")
            .field("path", &self.path)
            .field("headers", &self.headers)
            .field("body_len", &self.body.len())
            .finish()
    }
}

/// What the server answered, as the app received it.
#[derive(Clone, PartialEq, Eq, uniffi::Record)]
pub struct HttpResponse {
    /// The HTTP status.
    pub status: u16,
    /// The `Content-Type` header, if any.
    pub content_type: Option<String>,
    /// The `Oncewire-Session` header, if any.
    pub session: Option<String>,
    /// The `Oncewire-Next-Action` header, if any.
    pub next_action: Option<String>,
    /// The body.
    pub body: Vec<u8>,
}

impl core::fmt::Debug for HttpResponse {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("HttpResponse")
            .field("status", &self.status)
            .field("content_type", &self.content_type)
            .field("body_len", &self.body.len())
            .finish_non_exhaustive()
    }
}

impl HttpResponse {
    fn is_oncewire(&self) -> bool {
        self.content_type.as_deref().is_some_and(|c| c.trim().eq_ignore_ascii_case(CONTENT_TYPE))
    }

    /// A refusal (`SPEC.md` §16.1: not `application/oncewire` and not 2xx)
    /// becomes [`OncewireError::Refused`]; anything else is kept.
    fn checked(self) -> Result<Self, OncewireError> {
        if !self.is_oncewire() && !(200..300).contains(&self.status) {
            return Err(OncewireError::Refused {
                status: self.status,
                next_action: NextAction::parse(self.next_action.as_deref()),
            });
        }
        Ok(self)
    }
}

/// What a sealed reply is bound to: the request's key generation and
/// sequence number (`SPEC.md` §9.2). Not a secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq, uniffi::Record)]
pub struct RequestId {
    /// The client-to-server key generation.
    pub generation: u32,
    /// The sequence number.
    pub seq: u64,
}

impl From<oncewire::RequestId> for RequestId {
    fn from(r: oncewire::RequestId) -> Self {
        Self { generation: r.generation, seq: r.seq }
    }
}

impl From<RequestId> for oncewire::RequestId {
    fn from(r: RequestId) -> Self {
        Self { generation: r.generation, seq: r.seq }
    }
}

/// A sealed call to send, and the id its reply must open with.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct SealedCall {
    /// The `POST` to send.
    pub request: HttpRequest,
    /// Give it to [`Client::open_reply`] with the answer.
    pub request_id: RequestId,
}

/// The application's reply, opened and checked against its request.
#[derive(Clone, PartialEq, Eq, uniffi::Record)]
pub struct Reply {
    /// The status the server's handler chose.
    pub status: u16,
    /// The handler's body (plaintext).
    pub body: Vec<u8>,
    /// A next action the application set on its reply, if any.
    pub next_action: Option<NextAction>,
}

impl core::fmt::Debug for Reply {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Reply({}, {} bytes, redacted)", self.status, self.body.len())
    }
}

/// The state of the session, for the app to decide when to re-handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq, uniffi::Record)]
pub struct SessionStatus {
    /// A session is held.
    pub connected: bool,
    /// It expires at this time, in ms since the Unix epoch on the server's
    /// clock (0 without a session).
    pub expires_at_ms: u64,
    /// The server's clock minus this device's, measured at the handshake.
    pub clock_offset_ms: i64,
    /// The next seal needs a key update first ([`Client::key_update`]).
    pub needs_key_update: bool,
    /// The session cannot seal any more (expired, at its integrity limit):
    /// run a new handshake.
    pub needs_handshake: bool,
}

// --- the client --------------------------------------------------------------

/// The lowercase hex of a session or handshake id (`SPEC.md` §16.2).
fn hex(id: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(id.len().saturating_mul(2));
    for b in id {
        out.push(char::from(HEX.get(usize::from(b >> 4)).copied().unwrap_or(b'0')));
        out.push(char::from(HEX.get(usize::from(b & 0x0f)).copied().unwrap_or(b'0')));
    }
    out
}

/// Exactly 16 lowercase hex digits (one spelling per id).
fn parse_session(s: &str) -> Result<SessionId, Error> {
    fn digit(c: u8) -> Result<u8, Error> {
        match c {
            b'0'..=b'9' => Ok(c.wrapping_sub(b'0')),
            b'a'..=b'f' => Ok(c.wrapping_sub(b'a').wrapping_add(10)),
            _ => Err(Error::UnknownSession),
        }
    }
    let b = s.trim().as_bytes();
    if b.len() != 16 {
        return Err(Error::UnknownSession);
    }
    let mut out = [0u8; 8];
    for (o, pair) in out.iter_mut().zip(b.chunks_exact(2)) {
        let (hi, lo) = match pair {
            [hi, lo] => (digit(*hi)?, digit(*lo)?),
            _ => return Err(Error::UnknownSession),
        };
        *o = (hi << 4) | lo;
    }
    Ok(out)
}

struct State {
    server_key: PublicKey,
    device: DeviceId,
    prover: Prover<ForeignSigner>,
    /// Message 1 sent, message 2 awaited.
    handshake: Option<ClientAwaitResponse>,
    /// Message 3 sent, its 204 awaited.
    finishing: Option<(Session, SessionId)>,
    session: Option<(Session, SessionId)>,
    /// `Oncewire-Route`: the handshake id of the current handshake and session.
    route: Option<String>,
    token: Option<Zeroizing<Vec<u8>>>,
    /// The key one-shot requests are sealed to, fetched over a session.
    request_key: Option<PublicKey>,
    clock: SystemClock,
}

/// Redacted: no key, token or session secret.
impl core::fmt::Debug for State {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("State")
            .field("device", &self.device)
            .field("connected", &self.session.is_some())
            .field("token", &self.token.as_ref().map(|_| "redacted"))
            .finish_non_exhaustive()
    }
}

impl State {
    fn post(&self, path: &str, session: Option<&SessionId>, body: Vec<u8>) -> HttpRequest {
        let mut headers = vec![Header { name: "Content-Type".to_owned(), value: CONTENT_TYPE.to_owned() }];
        if let Some(id) = session {
            headers.push(Header { name: SESSION_HEADER.to_owned(), value: hex(id) });
        }
        if let Some(route) = &self.route {
            headers.push(Header { name: ROUTE_HEADER.to_owned(), value: route.clone() });
        }
        HttpRequest { path: path.to_owned(), headers, body }
    }

    fn session(&mut self) -> Result<&mut (Session, SessionId), OncewireError> {
        self.session
            .as_mut()
            .ok_or_else(|| OncewireError::misuse("no session: run the handshake", NextAction::Rehandshake))
    }

    fn seal(&mut self, path: &str, body: &[u8]) -> Result<SealedCall, OncewireError> {
        let clock = self.clock;
        let (session, id) = self.session()?;
        let id = *id;
        let mut frame = vec![0u8; buffer_len(body.len())];
        let (n, request) = session.seal_request(&clock, body, &mut frame)?;
        frame.truncate(n);
        Ok(SealedCall { request: self.post(path, Some(&id), frame), request_id: request.into() })
    }

    fn open_reply(&mut self, request_id: RequestId, response: HttpResponse) -> Result<Reply, OncewireError> {
        let mut response = response.checked()?;
        if !response.is_oncewire() {
            // A 2xx that is not a sealed reply cannot be a reply to a call.
            return Err(Error::Malformed.into());
        }
        let clock = self.clock;
        let (session, _) = self.session()?;
        let body = session.open_response(&clock, request_id.into(), &mut response.body)?.payload.to_vec();
        response.body.fill(0);
        Ok(Reply {
            status: response.status,
            body,
            next_action: response.next_action.as_deref().map(|a| NextAction::parse(Some(a))),
        })
    }
}

/// The client of one backend, for one device: the app's oncewire state.
#[derive(uniffi::Object)]
pub struct Client {
    state: Mutex<State>,
}

impl core::fmt::Debug for Client {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Client").finish_non_exhaustive()
    }
}

impl Client {
    fn with<T>(&self, f: impl FnOnce(&mut State) -> Result<T, OncewireError>) -> Result<T, OncewireError> {
        // A poisoned lock (a panic in another call) is refused, never propagated.
        let mut state =
            self.state.lock().map_err(|_| OncewireError::misuse("client state poisoned", NextAction::RetryLater))?;
        f(&mut state)
    }
}

#[uniffi::export]
impl Client {
    /// A client pinned to `server_key` (65 bytes SEC1 uncompressed, shipped
    /// with the app) for the device `device_id` (1 to 32 bytes) whose key
    /// `signer` holds.
    ///
    /// # Errors
    /// [`OncewireError::Misuse`] if the key is not a P-256 point or the id
    /// is empty or too long.
    #[uniffi::constructor]
    pub fn new(
        server_key: Vec<u8>,
        device_id: Vec<u8>,
        signer: Arc<dyn DeviceSigner>,
    ) -> Result<Arc<Self>, OncewireError> {
        let server_key = PublicKey::from_sec1_uncompressed(&server_key)
            .map_err(|_| OncewireError::misuse("server key: not a P-256 SEC1 uncompressed point", NextAction::Drop))?;
        let device = DeviceId::new(&device_id)
            .map_err(|_| OncewireError::misuse("device id: 1 to 32 bytes", NextAction::Drop))?;
        Ok(Arc::new(Self {
            state: Mutex::new(State {
                server_key,
                device,
                prover: Prover::new(ForeignSigner { app: signer, last_failure: std::sync::Mutex::new(None) }),
                handshake: None,
                finishing: None,
                session: None,
                route: None,
                token: None,
                request_key: None,
                clock: SystemClock,
            }),
        }))
    }

    // --- enrollment (SPEC §8.3, §16.3) ---

    /// Step 1 of enrollment: ask for a challenge.
    ///
    /// # Errors
    /// [`OncewireError::Misuse`] only if an earlier call panicked inside
    /// the client (its lock is poisoned).
    pub fn enroll_challenge(&self) -> Result<HttpRequest, OncewireError> {
        self.with(|s| Ok(s.post("/oncewire/v1/enroll/challenge", None, Vec::new())))
    }

    /// Step 2: the signer answers the challenge (naming the pinned server
    /// key); send `challenge ‖ answer`.
    ///
    /// # Errors
    /// [`OncewireError::Refused`], [`OncewireError::Signer`], a malformed challenge.
    pub fn enroll(&self, challenge: HttpResponse) -> Result<HttpRequest, OncewireError> {
        self.with(|s| {
            let challenge = challenge.checked()?.body;
            if challenge.len() != CHALLENGE_LEN {
                return Err(Error::Malformed.into());
            }
            let server_key = s.server_key;
            let device = s.device;
            let answer = match s.prover.answer_enrollment(&server_key, &challenge, device) {
                Ok(a) => a,
                Err(e) => return Err(s.signer_error(e)),
            };
            let mut buf = [0u8; MAX_ENROLLMENT_REQUEST_LEN];
            let n = answer.to_bytes(&mut buf)?;
            let mut body = challenge;
            body.extend_from_slice(buf.get(..n).ok_or(Error::Encode)?);
            Ok(s.post("/oncewire/v1/enroll", None, body))
        })
    }

    /// Step 3: the server's answer (204 when enrolled).
    ///
    /// # Errors
    /// [`OncewireError::Refused`] (`drop` for a device id enrolled with
    /// another key).
    pub fn enroll_finish(&self, response: HttpResponse) -> Result<(), OncewireError> {
        response.checked().map(|_| ())
    }

    // --- the handshake (SPEC §7, §16.3) ---

    /// Starts a handshake with the pinned server key: message 1. Drops any
    /// session held.
    ///
    /// # Errors
    /// [`OncewireError::Protocol`] (the RNG failed).
    pub fn handshake_start(&self) -> Result<HttpRequest, OncewireError> {
        self.with(|s| {
            s.session = None;
            s.finishing = None;
            s.handshake = None;
            let mut m1 = [0u8; MAX_HANDSHAKE_LEN];
            let (hs, n1) = oncewire::ClientHandshake::start(s.server_key, &mut OsRng, &s.clock, &mut m1)?;
            // The handshake id routes message 1, message 3 and every call of
            // the session to one server (SPEC §16.2).
            s.route = Some(hex(hs.handshake_id()));
            s.handshake = Some(hs);
            Ok(s.post("/oncewire/v1/handshake", None, m1.get(..n1).ok_or(Error::Encode)?.to_vec()))
        })
    }

    /// Reads message 2 (authenticating the pinned server), has the signer
    /// sign the handshake, and returns message 3.
    ///
    /// # Errors
    /// [`OncewireError::Refused`]; [`OncewireError::Protocol`] (not the
    /// pinned server, tampered, a session id that does not match);
    /// [`OncewireError::Signer`]; [`OncewireError::Misuse`] without
    /// [`Self::handshake_start`].
    pub fn handshake_finish(&self, response: HttpResponse) -> Result<HttpRequest, OncewireError> {
        self.with(|s| {
            let hs = s
                .handshake
                .take()
                .ok_or_else(|| OncewireError::misuse("no handshake started", NextAction::Rehandshake))?;
            let response = response.checked()?;
            let id = parse_session(response.session.as_deref().unwrap_or_default())?;
            let mut m3 = [0u8; MAX_HANDSHAKE_LEN];
            let clock = s.clock;
            let device = s.device;
            let finished: Result<(Session, usize), Error> =
                hs.finish(&clock, &response.body, device, s.prover.signer(), Limits::DEFAULT, &mut m3);
            let (session, n3) = match finished {
                Ok(f) => f,
                Err(e) => return Err(s.signer_error(e)),
            };
            if session.session_id() != &id {
                return Err(Error::UnknownSession.into());
            }
            s.finishing = Some((session, id));
            Ok(s.post("/oncewire/v1/handshake/finish", Some(&id), m3.get(..n3).ok_or(Error::Encode)?.to_vec()))
        })
    }

    /// The server's answer to message 3 (204): the session is ready.
    ///
    /// # Errors
    /// [`OncewireError::Refused`] (`reenroll` for a device never enrolled).
    pub fn handshake_confirm(&self, response: HttpResponse) -> Result<(), OncewireError> {
        self.with(|s| {
            let pending = s
                .finishing
                .take()
                .ok_or_else(|| OncewireError::misuse("no handshake finishing", NextAction::Rehandshake))?;
            response.checked()?;
            s.session = Some(pending);
            Ok(())
        })
    }

    /// The session's state (expiry on the server's clock, key update due).
    ///
    /// # Errors
    /// [`OncewireError::Misuse`] only if an earlier call panicked inside
    /// the client (its lock is poisoned).
    pub fn session_status(&self) -> Result<SessionStatus, OncewireError> {
        self.with(|s| {
            let clock = s.clock;
            Ok(match &s.session {
                None => SessionStatus {
                    connected: false,
                    expires_at_ms: 0,
                    clock_offset_ms: 0,
                    needs_key_update: false,
                    needs_handshake: true,
                },
                Some((session, _)) => SessionStatus {
                    connected: true,
                    expires_at_ms: session.expires_at_ms(),
                    clock_offset_ms: session.clock_offset_ms(),
                    needs_key_update: session.needs_key_update(),
                    needs_handshake: session.needs_rehandshake()
                        || session.server_clock(clock).now_ms() > session.expires_at_ms(),
                },
            })
        })
    }

    /// The session id (16 hex digits), if connected.
    ///
    /// # Errors
    /// [`OncewireError::Misuse`] only if an earlier call panicked inside
    /// the client (its lock is poisoned).
    pub fn session_id(&self) -> Result<Option<String>, OncewireError> {
        self.with(|s| Ok(s.session.as_ref().map(|(_, id)| hex(id))))
    }

    /// Forgets the session (logout, or to force a new handshake).
    ///
    /// # Errors
    /// [`OncewireError::Misuse`] only if an earlier call panicked inside
    /// the client (its lock is poisoned).
    pub fn end_session(&self) -> Result<(), OncewireError> {
        self.with(|s| {
            s.session = None;
            s.finishing = None;
            s.handshake = None;
            Ok(())
        })
    }

    // --- sealed calls (SPEC §16.4) ---

    /// Seals `body` as a request of the session, for `path` (an application
    /// route behind the server's sealing layer). Send each frame once: on a
    /// lost reply, seal again (SPEC §16.7).
    ///
    /// # Errors
    /// [`OncewireError::Misuse`] (`rehandshake`) without a session;
    /// [`OncewireError::Protocol`]: expired (`rehandshake`), the key due for
    /// an update ([`Self::key_update`]).
    pub fn seal(&self, path: String, body: Vec<u8>) -> Result<SealedCall, OncewireError> {
        let body = Zeroizing::new(body);
        self.with(|s| s.seal(&path, &body))
    }

    /// Opens the reply to the request `request_id` and checks it is bound
    /// to it (SPEC §9.2). A refusal becomes [`OncewireError::Refused`].
    ///
    /// # Errors
    /// [`OncewireError::Refused`]; [`OncewireError::Protocol`] for a reply
    /// that does not open (tampered, replayed, for another request).
    pub fn open_reply(&self, request_id: RequestId, response: HttpResponse) -> Result<Reply, OncewireError> {
        self.with(|s| s.open_reply(request_id, response))
    }

    // --- challenges and tokens (SPEC §12, §13, §16.4.1) ---

    /// Asks for a fresh request challenge.
    ///
    /// # Errors
    /// [`OncewireError::Misuse`] only if an earlier call panicked inside
    /// the client (its lock is poisoned).
    pub fn challenge_request(&self) -> Result<HttpRequest, OncewireError> {
        self.with(|s| Ok(s.post("/oncewire/v1/challenge", None, Vec::new())))
    }

    /// The challenge in the server's answer to [`Self::challenge_request`].
    ///
    /// # Errors
    /// [`OncewireError::Refused`]; a body that is not a challenge.
    pub fn open_challenge(&self, response: HttpResponse) -> Result<Vec<u8>, OncewireError> {
        let body = response.checked()?.body;
        Challenge::from_bytes(&body)?;
        Ok(body)
    }

    /// A sealed request for a token bound to this device's key.
    ///
    /// # Errors
    /// As [`Self::seal`].
    pub fn token_request(&self) -> Result<SealedCall, OncewireError> {
        self.with(|s| s.seal("/oncewire/v1/token", b""))
    }

    /// Opens the token reply and keeps the token for bound calls.
    ///
    /// # Errors
    /// As [`Self::open_reply`]; a reply that is not a token.
    pub fn accept_token(&self, request_id: RequestId, response: HttpResponse) -> Result<(), OncewireError> {
        self.with(|s| {
            let reply = s.open_reply(request_id, response)?;
            let body = Zeroizing::new(reply.body);
            if reply.status != 200 || body.is_empty() || body.len() > MAX_TOKEN_LEN {
                return Err(Error::Malformed.into());
            }
            s.token = Some(body);
            Ok(())
        })
    }

    /// The token held, to persist it (it is bound to the device key: useless
    /// without the signer).
    ///
    /// # Errors
    /// [`OncewireError::Misuse`] only if an earlier call panicked inside
    /// the client (its lock is poisoned).
    pub fn token(&self) -> Result<Option<Vec<u8>>, OncewireError> {
        self.with(|s| Ok(s.token.as_ref().map(|t| t.to_vec())))
    }

    /// Installs a token kept from earlier.
    ///
    /// # Errors
    /// [`OncewireError::Misuse`] if it is empty or longer than 512 bytes.
    pub fn set_token(&self, token: Vec<u8>) -> Result<(), OncewireError> {
        let token = Zeroizing::new(token);
        if token.is_empty() || token.len() > MAX_TOKEN_LEN {
            return Err(OncewireError::misuse("token: 1 to 512 bytes", NextAction::RefreshToken));
        }
        self.with(|s| {
            s.token = Some(token);
            Ok(())
        })
    }

    /// Seals a bound call to `path`: `request` with an answer to
    /// `challenge` (from [`Self::open_challenge`]) and/or a fresh proof of
    /// the token held (`use_token`), over one hash of the exact request
    /// bytes (SPEC §16.4.1), stamped in the server's time. Make a new one
    /// (new challenge, new proof) for every attempt.
    ///
    /// # Errors
    /// [`OncewireError::Misuse`] (`refresh-token`) for `use_token` without a
    /// token; [`OncewireError::Signer`]; as [`Self::seal`].
    pub fn seal_bound(
        &self,
        path: String,
        request: Vec<u8>,
        challenge: Option<Vec<u8>>,
        use_token: bool,
    ) -> Result<SealedCall, OncewireError> {
        let request = Zeroizing::new(request);
        self.with(|s| {
            let challenge = challenge.as_deref().map(Challenge::from_bytes).transpose()?;
            let token = if use_token {
                Some(
                    s.token
                        .clone()
                        .ok_or_else(|| OncewireError::misuse("no token: fetch one", NextAction::RefreshToken))?,
                )
            } else {
                None
            };
            let clock = {
                let (session, _) = s.session()?;
                session.server_clock(SystemClock)
            };
            let bound = match s.prover.bound_request(
                &mut OsRng,
                &clock,
                &request,
                challenge.as_ref(),
                token.as_deref().map(|t| t.as_slice()),
            ) {
                Ok(b) => b,
                Err(e) => return Err(s.signer_error(e)),
            };
            let mut b = [0u8; MAX_BOUND_LEN];
            let n = bound.to_bytes(&mut b)?;
            let token = token.as_deref().map(|t| t.as_slice()).unwrap_or_default();
            let token_len = u16::try_from(token.len()).map_err(|_| Error::PayloadTooLarge)?;
            let mut plain = Zeroizing::new(Vec::with_capacity(
                3usize.saturating_add(n).saturating_add(token.len()).saturating_add(request.len()),
            ));
            plain.push(u8::try_from(n).map_err(|_| Error::Encode)?);
            plain.extend_from_slice(b.get(..n).ok_or(Error::Encode)?);
            plain.extend_from_slice(&token_len.to_be_bytes());
            plain.extend_from_slice(token);
            plain.extend_from_slice(&request);
            s.seal(&path, &plain)
        })
    }

    // --- one-shot requests (SPEC §11.3, §16.5) ---

    /// A sealed request for the server's one-shot request key (fetched over
    /// the session, so the pinned server key authenticates it).
    ///
    /// # Errors
    /// As [`Self::seal`].
    pub fn request_key_request(&self) -> Result<SealedCall, OncewireError> {
        self.with(|s| s.seal("/oncewire/v1/request-key", b""))
    }

    /// Opens the request-key reply and keeps the key.
    ///
    /// # Errors
    /// As [`Self::open_reply`]; a reply that is not a P-256 key.
    pub fn accept_request_key(&self, request_id: RequestId, response: HttpResponse) -> Result<(), OncewireError> {
        self.with(|s| {
            let reply = s.open_reply(request_id, response)?;
            s.request_key = Some(PublicKey::from_sec1_uncompressed(&reply.body)?);
            Ok(())
        })
    }

    /// Seals a one-shot request to `path` (at most 64 bytes, bound into the
    /// request) under the request key, stamped in the server's time (the
    /// session's clock offset). No session is needed to send it, and there
    /// is no sealed reply: [`Self::one_shot_finish`] gives the status.
    ///
    /// # Errors
    /// [`OncewireError::Misuse`] without the request key
    /// ([`Self::accept_request_key`]) or a session; [`OncewireError::Protocol`]
    /// for a path longer than 64 bytes.
    pub fn seal_one_shot(&self, path: String, body: Vec<u8>) -> Result<HttpRequest, OncewireError> {
        let body = Zeroizing::new(body);
        self.with(|s| {
            let key = s
                .request_key
                .ok_or_else(|| OncewireError::misuse("no request key: fetch it", NextAction::RetryLater))?;
            let clock = {
                let (session, _) = s.session()?;
                session.server_clock(SystemClock)
            };
            let total = body.len().checked_add(REQUEST_OVERHEAD).ok_or(Error::PayloadTooLarge)?;
            let mut buf = vec![0u8; total];
            buf.get_mut(PAYLOAD_OFFSET..PAYLOAD_OFFSET.saturating_add(body.len()))
                .ok_or(Error::BufferTooSmall)?
                .copy_from_slice(&body);
            let n = oncewire::request::RequestSender::new(key).seal(
                &mut OsRng,
                &clock,
                None,
                ONE_SHOT_INFO,
                path.as_bytes(),
                &mut buf,
                body.len(),
            )?;
            buf.truncate(n);
            Ok(s.post(&path, None, buf))
        })
    }

    /// The handler's status for a one-shot request.
    ///
    /// # Errors
    /// [`OncewireError::Refused`] (`drop` for a replay or a request made
    /// for another path).
    pub fn one_shot_finish(&self, response: HttpResponse) -> Result<u16, OncewireError> {
        Ok(response.checked()?.status)
    }

    // --- key update (SPEC §9.3) ---

    /// Moves this side's sending key to the next generation: a key-update
    /// frame to send to `path` (any route behind the sealing layer; the
    /// server answers 204 and no application sees it). Records sealed
    /// afterwards use the new key: send this frame first, and wait for its
    /// answer. If it is lost, the next calls fail (`rehandshake`).
    ///
    /// # Errors
    /// As [`Self::seal`].
    pub fn key_update(&self, path: String) -> Result<HttpRequest, OncewireError> {
        self.with(|s| {
            let clock = s.clock;
            let (session, id) = s.session()?;
            let id = *id;
            let mut frame = vec![0u8; buffer_len(0)];
            let n = session.update_keys(&clock, &mut frame)?;
            frame.truncate(n);
            Ok(s.post(&path, Some(&id), frame))
        })
    }

    /// The server's answer to [`Self::key_update`] (204).
    ///
    /// # Errors
    /// [`OncewireError::Refused`].
    pub fn key_update_finish(&self, response: HttpResponse) -> Result<(), OncewireError> {
        response.checked().map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Soft(std::sync::Mutex<oncewire::device::SoftwareSigner>);

    impl DeviceSigner for Soft {
        fn public_key(&self) -> Result<Vec<u8>, SignerError> {
            use oncewire::DeviceSigner as _;
            let s = self.0.lock().map_err(|_| SignerError::Failed { reason: "lock".into() })?;
            s.public_key().map(|k| k.as_bytes().to_vec()).map_err(|e| SignerError::Failed { reason: e.to_string() })
        }
        fn sign_digest(&self, digest: Vec<u8>) -> Result<Signature, SignerError> {
            use oncewire::DeviceSigner as _;
            let d: [u8; 32] = digest.try_into().map_err(|_| SignerError::Failed { reason: "len".into() })?;
            let mut s = self.0.lock().map_err(|_| SignerError::Failed { reason: "lock".into() })?;
            let sig = s
                .sign_digest(&d)
                .and_then(|s| s.to_raw_low_s())
                .map_err(|e| SignerError::Failed { reason: e.to_string() })?;
            Ok(Signature::Raw { bytes: sig.to_vec() })
        }
    }

    fn client() -> Arc<Client> {
        let key = oncewire::ServerKey::<oncewire::provider::DefaultProvider>::generate(&mut OsRng).unwrap();
        let signer = oncewire::device::SoftwareSigner::generate(&mut OsRng).unwrap();
        Client::new(key.public_key().as_bytes().to_vec(), b"dev".to_vec(), Arc::new(Soft(Mutex::new(signer)))).unwrap()
    }

    #[test]
    fn bad_inputs_are_typed_errors_not_panics() {
        let signer = Arc::new(Soft(Mutex::new(oncewire::device::SoftwareSigner::generate(&mut OsRng).unwrap())));
        assert!(matches!(Client::new(vec![4; 3], b"d".to_vec(), signer.clone()), Err(OncewireError::Misuse { .. })));
        let c = client();
        assert!(matches!(
            c.seal("/x".into(), vec![1]),
            Err(OncewireError::Misuse { next_action: NextAction::Rehandshake, .. })
        ));
        let junk = HttpResponse {
            status: 200,
            content_type: Some(CONTENT_TYPE.into()),
            session: Some("zz".into()),
            next_action: None,
            body: vec![0xff; 7],
        };
        assert!(c.handshake_finish(junk.clone()).is_err());
        c.handshake_start().unwrap();
        assert!(c.handshake_finish(junk.clone()).is_err());
        assert!(c.enroll(junk.clone()).is_err());
        assert!(c.open_challenge(junk.clone()).is_err());
        assert!(c.seal_bound("/x".into(), vec![], Some(vec![1, 2]), false).is_err());
        assert!(c.set_token(vec![0; 513]).is_err());
        let refused = HttpResponse {
            status: 401,
            content_type: None,
            session: None,
            next_action: Some("refresh-token".into()),
            body: vec![],
        };
        assert_eq!(
            c.enroll(refused).unwrap_err(),
            OncewireError::Refused { status: 401, next_action: NextAction::RefreshToken }
        );
        assert!(der_to_raw_low_s(vec![0x30, 0x00]).is_err());
        assert!(der_to_raw_low_s(vec![0u8; 200]).is_err());
    }

    #[test]
    fn a_handshake_message_1_names_its_route() {
        let c = client();
        let m1 = c.handshake_start().unwrap();
        assert_eq!(m1.path, "/oncewire/v1/handshake");
        assert!(m1.headers.iter().any(|h| h.name == ROUTE_HEADER && h.value.len() == 16));
        assert!(m1.headers.iter().any(|h| h.name == "Content-Type" && h.value == CONTENT_TYPE));
    }
}
