//! The client: enrolls, connects (pinned key, handshake, clock offset),
//! calls (seals a request, opens and checks the response bound to it),
//! makes bound calls (a fresh challenge and/or a token proof over one hash
//! of the request) and one-shot requests, and follows the server's next
//! action.
//!
//! The device key stays behind a [`DeviceSigner`]: on a phone, the
//! platform's hardware key signs.
//!
//! # Retries
//! A frame is accepted once, so the client never resends one. When a call
//! fails after the request left (the connection dropped, the reply was
//! lost), [`Client::call`] seals the same request again under a new
//! sequence number and sends it once more; the old frame, if it arrives,
//! is refused as a replay. The request may thus have run once already: an
//! operation that must not run twice carries its own id in the request
//! (the fleet's tests check that ids are never executed twice), or is sent
//! with [`Client::call_no_retry`]. On `rehandshake` the client connects
//! again and seals anew; on `refresh-token` a bound call fetches a new token;
//! on `retry-later` after an expired challenge it fetches a new challenge;
//! when a reply's time does not fit the clock offset measured at the
//! handshake (a clock stepped), it connects again to measure it anew.

use crate::provider::{ClientHandshake, Prover, RequestSender, Session};
use crate::server::{Need, ONE_SHOT_INFO};
use crate::store::SessionId;
use crate::{
    CONTENT_TYPE, NEXT_ACTION_HEADER, ROUTE_HEADER, SESSION_HEADER, SharedClock, parse_session_hex, session_hex,
};
use oncewire::bound::MAX_BOUND_LEN;
use oncewire::challenge::{CHALLENGE_LEN, Challenge};
use oncewire::device::MAX_ENROLLMENT_REQUEST_LEN;
use oncewire::handshake::MAX_HANDSHAKE_LEN;
use oncewire::request::{PAYLOAD_OFFSET, REQUEST_OVERHEAD};
use oncewire::rng::OsRng;
use oncewire::token::MAX_TOKEN_LEN;
use oncewire::wire::buffer_len;
use oncewire::{Clock, DeviceId, DeviceSigner, Error, Limits, PublicKey, RequestId};

/// Why a call failed.
#[derive(Debug)]
pub enum ClientError {
    /// The transport failed (connection, HTTP).
    Transport(String),
    /// The server refused, with this HTTP status and next action.
    Refused {
        /// The HTTP status.
        status: u16,
        /// The next action the server named (`drop`, `rehandshake`, …).
        next_action: String,
    },
    /// The protocol failed locally (a response that did not open, a bad message).
    Protocol(Error),
}

impl ClientError {
    /// The next action of a refusal, if this is one.
    pub fn next_action(&self) -> Option<&str> {
        match self {
            Self::Refused { next_action, .. } => Some(next_action),
            _ => None,
        }
    }
}

impl core::fmt::Display for ClientError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Transport(e) => write!(f, "transport: {e}"),
            Self::Refused { status, next_action } => write!(f, "refused: {status} ({next_action})"),
            Self::Protocol(e) => write!(f, "protocol: {e}"),
        }
    }
}

impl std::error::Error for ClientError {}

impl From<Error> for ClientError {
    fn from(e: Error) -> Self {
        Self::Protocol(e)
    }
}

/// What an HTTP exchange returned: a sealed (or oncewire) body, or a refusal.
#[derive(Debug)]
pub struct RawReply {
    /// The HTTP status.
    pub status: u16,
    /// The body (sealed, for a call).
    pub body: Vec<u8>,
    /// The `Oncewire-Session` header, if present.
    pub session: Option<String>,
    /// The `Oncewire-Next-Action` header, if present (an application may
    /// set one on a sealed reply).
    pub next_action: Option<String>,
}

/// The application's reply to a sealed call, opened and checked against
/// its request. `Debug` does not show the body.
pub struct Reply {
    /// The status the handler chose.
    pub status: u16,
    /// The handler's body.
    pub body: Vec<u8>,
    /// The next action the application named, if it set one.
    pub next_action: Option<String>,
}

impl core::fmt::Debug for Reply {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Reply({}, {} bytes, redacted)", self.status, self.body.len())
    }
}

/// A sealed request not yet sent (for tests that replay or tamper).
#[derive(Debug, Clone)]
pub struct SealedRequest {
    /// The frame.
    pub frame: Vec<u8>,
    /// What the response must be bound to.
    pub request: RequestId,
    /// The session it belongs to.
    pub session: SessionId,
}

/// A client of one backend, for one device.
pub struct Client<S: DeviceSigner> {
    http: reqwest::Client,
    base: String,
    server_key: PublicKey,
    device: DeviceId,
    prover: Prover<S>,
    session: Option<(Session, SessionId)>,
    request_key: Option<PublicKey>,
    token: Option<Vec<u8>>,
    /// The routing key of the current handshake and session (`Oncewire-Route`).
    route: Option<reqwest::header::HeaderValue>,
    /// The current session's `Oncewire-Session` value, made once.
    session_value: Option<(SessionId, reqwest::header::HeaderValue)>,
    clock: SharedClock,
}

impl<S: DeviceSigner> core::fmt::Debug for Client<S> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Client").field("base", &self.base).field("device", &self.device).finish_non_exhaustive()
    }
}

impl<S: DeviceSigner> Client<S> {
    /// A client of the backend at `base` (e.g. `https://api.example.com`),
    /// pinned to `server_key`, for `device` whose key `signer` holds. HTTPS
    /// goes through reqwest's rustls with the platform's roots.
    pub fn new(base: &str, server_key: PublicKey, device: DeviceId, signer: S) -> Self {
        Self::with_http(reqwest::Client::new(), base, server_key, device, signer)
    }

    /// As [`Client::new`], over a reqwest client you configured (roots,
    /// proxies, timeouts, connection pool).
    pub fn with_http(http: reqwest::Client, base: &str, server_key: PublicKey, device: DeviceId, signer: S) -> Self {
        Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
            server_key,
            device,
            prover: Prover::with_provider(signer),
            session: None,
            request_key: None,
            token: None,
            route: None,
            session_value: None,
            clock: SharedClock::system(),
        }
    }

    /// This device's clock (the system clock otherwise; tests move it).
    pub fn with_clock(mut self, clock: impl Clock + Send + Sync + 'static) -> Self {
        self.clock = SharedClock::new(clock);
        self
    }

    /// The current session's id, if connected.
    pub fn session_id(&self) -> Option<SessionId> {
        self.session.as_ref().map(|(_, id)| *id)
    }

    /// The current session, if connected.
    pub fn session(&self) -> Option<&Session> {
        self.session.as_ref().map(|(s, _)| s)
    }

    /// The token held for bound calls, if any.
    pub fn token(&self) -> Option<&[u8]> {
        self.token.as_deref()
    }

    /// Sends `body` to `path` (absolute, e.g. `/oncewire/v1/handshake` or
    /// `/pay`), with the session header if given.
    ///
    /// # Errors
    /// [`ClientError::Transport`]; [`ClientError::Refused`] for a reply
    /// that is not an oncewire body (a refusal).
    pub async fn send_raw(
        &self,
        path: &str,
        session: Option<&SessionId>,
        body: Vec<u8>,
    ) -> Result<RawReply, ClientError> {
        use reqwest::header::{CONTENT_TYPE as CT, HeaderName, HeaderValue};
        let mut req = self
            .http
            .post(format!("{}{path}", self.base))
            .header(CT, HeaderValue::from_static(CONTENT_TYPE))
            .body(body);
        if let Some(id) = session {
            let value = match &self.session_value {
                Some((held, v)) if held == id => v.clone(),
                _ => HeaderValue::from_str(&session_hex(id)).map_err(|_| ClientError::Protocol(Error::Encode))?,
            };
            req = req.header(HeaderName::from_static(SESSION_HEADER), value);
        }
        if let Some(route) = &self.route {
            req = req.header(HeaderName::from_static(ROUTE_HEADER), route.clone());
        }
        let resp = req.send().await.map_err(|e| ClientError::Transport(e.to_string()))?;
        let status = resp.status().as_u16();
        let header = |name: &str| resp.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let next_action = header(NEXT_ACTION_HEADER);
        let session = header(SESSION_HEADER);
        let is_oncewire = header("content-type").is_some_and(|c| c == CONTENT_TYPE);
        if !is_oncewire && !(200..300).contains(&status) {
            return Err(ClientError::Refused { status, next_action: next_action.unwrap_or_default() });
        }
        // Taken over without a copy when the buffer is not shared.
        let body = Vec::from(resp.bytes().await.map_err(|e| ClientError::Transport(e.to_string()))?);
        Ok(RawReply { status, body, session, next_action })
    }

    /// Enrolls the device: asks for a challenge, signs it (naming the pinned
    /// server key), sends it back with the answer.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn enroll(&mut self) -> Result<(), ClientError> {
        let challenge = self.send_raw("/oncewire/v1/enroll/challenge", None, Vec::new()).await?.body;
        if challenge.len() != CHALLENGE_LEN {
            return Err(ClientError::Protocol(Error::Malformed));
        }
        let answer = self.prover.answer_enrollment(&self.server_key, &challenge, self.device)?;
        let mut body = challenge;
        let mut buf = [0u8; MAX_ENROLLMENT_REQUEST_LEN];
        let n = answer.to_bytes(&mut buf)?;
        body.extend_from_slice(buf.get(..n).unwrap_or_default());
        self.send_raw("/oncewire/v1/enroll", None, body).await?;
        Ok(())
    }

    /// Runs the handshake with the pinned server key and keeps the session
    /// (and its measured clock offset).
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn connect(&mut self) -> Result<(), ClientError> {
        self.session = None;
        let mut m1 = [0u8; MAX_HANDSHAKE_LEN];
        let (hs, n1) = ClientHandshake::start(self.server_key, &mut OsRng, &self.clock, &mut m1)?;
        // The handshake id routes message 1, message 3 and every call of the
        // session to one server, for a load balancer with no shared state.
        self.route = reqwest::header::HeaderValue::from_str(&session_hex(hs.handshake_id())).ok();
        let reply = self.send_raw("/oncewire/v1/handshake", None, m1.get(..n1).unwrap_or_default().to_vec()).await?;
        let id = parse_session_hex(&reply.session.unwrap_or_default())?;
        let mut m3 = [0u8; MAX_HANDSHAKE_LEN];
        let (session, n3): (Session, usize) =
            hs.finish(&self.clock, &reply.body, self.device, self.prover.signer(), Limits::DEFAULT, &mut m3)?;
        if session.session_id() != &id {
            return Err(ClientError::Protocol(Error::UnknownSession));
        }
        self.send_raw("/oncewire/v1/handshake/finish", Some(&id), m3.get(..n3).unwrap_or_default().to_vec()).await?;
        self.session = Some((session, id));
        self.session_value = reqwest::header::HeaderValue::from_str(&session_hex(&id)).ok().map(|v| (id, v));
        Ok(())
    }

    /// Connects if there is no session, or if the one held can no longer
    /// seal: past its lifetime (on the server's clock, as the session
    /// measured it), at its integrity limit, or out of sequence numbers.
    async fn ensure_session(&mut self) -> Result<(), ClientError> {
        let stale = self.session.as_ref().is_none_or(|(s, _)| {
            s.needs_rehandshake() || s.server_clock(self.clock.clone()).now_ms() > s.expires_at_ms()
        });
        if stale { self.connect().await } else { Ok(()) }
    }

    /// Seals `body`, connecting again once if the session turns out unable
    /// to seal (expired between the check and the seal).
    async fn seal_fresh(&mut self, body: &[u8]) -> Result<SealedRequest, ClientError> {
        self.ensure_session().await?;
        match self.seal(body) {
            Err(ClientError::Protocol(Error::Expired(_) | Error::IntegrityLimit | Error::KeyExhausted)) => {
                self.connect().await?;
                self.seal(body)
            }
            other => other,
        }
    }

    /// Seals `body` as a request of the current session.
    ///
    /// # Errors
    /// [`Error::UnknownSession`] if not connected; those of
    /// [`Session::seal_request`].
    pub fn seal(&mut self, body: &[u8]) -> Result<SealedRequest, ClientError> {
        let (session, id) = self.session.as_mut().ok_or(ClientError::Protocol(Error::UnknownSession))?;
        let mut frame = vec![0u8; buffer_len(body.len())];
        let (n, request) = session.seal_request(&self.clock, body, &mut frame)?;
        frame.truncate(n);
        Ok(SealedRequest { frame, request, session: *id })
    }

    /// Opens a reply to `request` (a [`RawReply`] of a sealed call).
    ///
    /// # Errors
    /// [`Error::UnknownSession`] if not connected; those of
    /// [`Session::open_response`] (a reply not bound to `request` fails).
    pub fn open_reply(&mut self, request: RequestId, mut raw: RawReply) -> Result<Reply, ClientError> {
        let (session, _) = self.session.as_mut().ok_or(ClientError::Protocol(Error::UnknownSession))?;
        let body = session.open_response(&self.clock, request, &mut raw.body)?.payload.to_vec();
        Ok(Reply { status: raw.status, body, next_action: raw.next_action })
    }

    /// Seals `body`, sends it to `path`, opens the response bound to it.
    /// Re-handshakes when told to, and re-seals once after a lost reply
    /// (see the module docs).
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn call(&mut self, path: &str, body: &[u8]) -> Result<Reply, ClientError> {
        match self.call_no_retry(path, body).await {
            Err(ClientError::Refused { next_action, .. }) if next_action == "rehandshake" => {
                self.connect().await?;
                self.call_no_retry(path, body).await
            }
            Err(ClientError::Transport(_)) => self.call_no_retry(path, body).await,
            // The reply's time did not fit the offset measured at the
            // handshake: a clock stepped. Measure it again and seal anew.
            Err(ClientError::Protocol(Error::FromFuture | Error::Stale)) => {
                self.connect().await?;
                self.call_no_retry(path, body).await
            }
            other => other,
        }
    }

    /// As [`Client::call`], without resending after a lost reply (it still
    /// connects first if there is no session).
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn call_no_retry(&mut self, path: &str, body: &[u8]) -> Result<Reply, ClientError> {
        let sealed = self.seal_fresh(body).await?;
        let raw = self.send_raw(path, Some(&sealed.session), sealed.frame).await?;
        self.open_reply(sealed.request, raw)
    }

    /// A fresh challenge for a bound call.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn fetch_challenge(&self) -> Result<Challenge, ClientError> {
        let raw = self.send_raw("/oncewire/v1/challenge", None, Vec::new()).await?;
        Ok(Challenge::from_bytes(&raw.body)?)
    }

    /// Gets a token bound to this device's key, over the session.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn fetch_token(&mut self) -> Result<(), ClientError> {
        let reply = self.call("/oncewire/v1/token", b"").await?;
        if reply.status != 200 || reply.body.len() > MAX_TOKEN_LEN {
            return Err(ClientError::Protocol(Error::Malformed));
        }
        self.token = Some(reply.body);
        Ok(())
    }

    /// The plaintext of a bound call: `bound_len ‖ bound ‖ token_len ‖
    /// token ‖ request` (`SPEC.md` §16.4.1), with a fresh proof (stamped in
    /// the server's time) if a token is used.
    ///
    /// # Errors
    /// [`Error::UnknownSession`], [`Error::Rng`], [`Error::Signer`].
    pub fn bind(
        &mut self,
        challenge: Option<&Challenge>,
        token: Option<&[u8]>,
        request: &[u8],
    ) -> Result<Vec<u8>, ClientError> {
        let (session, _) = self.session.as_ref().ok_or(ClientError::Protocol(Error::UnknownSession))?;
        let clock = session.server_clock(self.clock.clone());
        let bound = self.prover.bound_request(&mut OsRng, &clock, request, challenge, token)?;
        let mut b = [0u8; MAX_BOUND_LEN];
        let n = bound.to_bytes(&mut b)?;
        let token = token.unwrap_or_default();
        let token_len = u16::try_from(token.len()).map_err(|_| Error::PayloadTooLarge)?;
        let mut plain =
            Vec::with_capacity(3usize.saturating_add(n).saturating_add(token.len()).saturating_add(request.len()));
        plain.push(u8::try_from(n).map_err(|_| Error::Encode)?);
        plain.extend_from_slice(b.get(..n).unwrap_or_default());
        plain.extend_from_slice(&token_len.to_be_bytes());
        plain.extend_from_slice(token);
        plain.extend_from_slice(request);
        Ok(plain)
    }

    /// A call to a bound route: fetches a challenge and/or uses the token
    /// (fetching one first if none is held) as `need` says, binds them to
    /// the exact request bytes, and calls. On `refresh-token` it fetches a
    /// new token; on `retry-later` or a lost reply, a new challenge; each
    /// retry is a new binding and a new proof, once.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn call_bound(&mut self, path: &str, request: &[u8], need: Need) -> Result<Reply, ClientError> {
        // Each next action is followed at most once, then the call gives up.
        let (mut rehandshaken, mut refreshed, mut rechallenged, mut resent) = (false, false, false, false);
        loop {
            let r = self.call_bound_once(path, request, need).await;
            match &r {
                Err(ClientError::Refused { next_action, .. }) => match next_action.as_str() {
                    "refresh-token" if need.token && !refreshed => {
                        refreshed = true;
                        self.fetch_token().await?;
                    }
                    "rehandshake" if !rehandshaken => {
                        rehandshaken = true;
                        self.connect().await?;
                    }
                    "retry-later" if need.challenge && !rechallenged => rechallenged = true,
                    _ => return r,
                },
                Err(ClientError::Transport(_)) if !resent => resent = true,
                Err(ClientError::Protocol(Error::FromFuture | Error::Stale)) if !rehandshaken => {
                    rehandshaken = true;
                    self.connect().await?;
                }
                _ => return r,
            }
        }
    }

    async fn call_bound_once(&mut self, path: &str, request: &[u8], need: Need) -> Result<Reply, ClientError> {
        self.ensure_session().await?;
        if need.token && self.token.is_none() {
            self.fetch_token().await?;
        }
        let challenge = if need.challenge { Some(self.fetch_challenge().await?) } else { None };
        let token = if need.token { self.token.clone() } else { None };
        let plain = self.bind(challenge.as_ref(), token.as_deref(), request)?;
        let sealed = self.seal_fresh(&plain).await?;
        let raw = self.send_raw(path, Some(&sealed.session), sealed.frame).await?;
        self.open_reply(sealed.request, raw)
    }

    /// Seals a one-shot request to `path` under the server's request key
    /// (fetched once over a session, so it is authenticated), stamped in
    /// the server's time.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn seal_one_shot(&mut self, path: &str, body: &[u8]) -> Result<Vec<u8>, ClientError> {
        self.ensure_session().await?;
        let key = match self.request_key {
            Some(k) => k,
            None => {
                let reply = self.call("/oncewire/v1/request-key", b"").await?;
                let k = PublicKey::from_sec1_uncompressed(&reply.body)?;
                self.request_key = Some(k);
                k
            }
        };
        let total = body.len().checked_add(REQUEST_OVERHEAD).ok_or(Error::PayloadTooLarge)?;
        let mut buf = vec![0u8; total];
        buf.get_mut(PAYLOAD_OFFSET..PAYLOAD_OFFSET.saturating_add(body.len()))
            .ok_or(Error::BufferTooSmall)?
            .copy_from_slice(body);
        // Fetching the key connected: the session has measured the offset.
        let (session, _) = self.session.as_ref().ok_or(ClientError::Protocol(Error::UnknownSession))?;
        let clock = session.server_clock(self.clock.clone());
        let n = RequestSender::with_suite(key).seal(
            &mut OsRng,
            &clock,
            None,
            ONE_SHOT_INFO,
            path.as_bytes(),
            &mut buf,
            body.len(),
        )?;
        buf.truncate(n);
        Ok(buf)
    }

    /// Sends a one-shot request to `path` (a route behind
    /// [`crate::server::Backend::one_shot`]); returns the handler's status.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn one_shot(&mut self, path: &str, body: &[u8]) -> Result<u16, ClientError> {
        let req = self.seal_one_shot(path, body).await?;
        Ok(self.send_raw(path, None, req).await?.status)
    }
}
