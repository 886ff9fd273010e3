//! The backend: an axum router over oncewire state.
//!
//! Concurrency: the session map is behind a read-write lock held only to
//! find or insert an entry; each session has its own lock, so no global
//! lock is held across cryptography. Pending handshakes are taken out of
//! their map before message 3 is opened. The number of sessions and pending
//! handshakes is bounded; a full table is refused with 503 `retry-later`.
//! Expired sessions are swept by a background task, not per request.

use crate::{CONTENT_TYPE, NEXT_ACTION_HEADER, SESSION_HEADER, parse_session_hex, refusal, session_hex};
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use oncewire::challenge::{CHALLENGE_LEN, Challenge, StatelessChallenges};
use oncewire::clock::SystemClock;
use oncewire::device::{EnrollmentIssuer, EnrollmentRequest, ReEnrollment};
use oncewire::handshake::{MAX_HANDSHAKE_LEN, ServerAwaitFinish};
use oncewire::rng::OsRng;
use oncewire::wire::buffer_len;
use oncewire::{Clock, DeviceId, Error, Limits, PublicKey, Received, ServerKey, Session};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

/// What the application does with an opened request: given the device and
/// the plaintext, the plaintext of the response.
pub type Handler = Arc<dyn Fn(&DeviceId, &[u8]) -> Vec<u8> + Send + Sync>;

type Id = [u8; 8];

struct Shared {
    key: ServerKey,
    limits: Limits,
    enrollments: Mutex<EnrollmentIssuer>,
    devices: RwLock<HashMap<DeviceId, PublicKey>>,
    pending: Mutex<HashMap<Id, ServerAwaitFinish>>,
    sessions: RwLock<HashMap<Id, Arc<Mutex<Session>>>>,
    max_sessions: usize,
    max_pending: usize,
    handler: Handler,
}

/// An oncewire backend: build it, then mount [`Backend::router`].
#[derive(Clone)]
pub struct Backend {
    shared: Arc<Shared>,
}

impl core::fmt::Debug for Backend {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Backend").field("server_key", self.shared.key.public_key()).finish_non_exhaustive()
    }
}

fn refuse(e: Error) -> Response {
    let (status, action) = refusal(e);
    let mut r = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST).into_response();
    r.headers_mut().insert(NEXT_ACTION_HEADER, HeaderValue::from_static(action));
    r
}

fn sealed(body: Vec<u8>, session: Option<&Id>) -> Response {
    let mut r = (StatusCode::OK, body).into_response();
    r.headers_mut().insert("content-type", HeaderValue::from_static(CONTENT_TYPE));
    if let Some(id) = session {
        if let Ok(v) = HeaderValue::from_str(&session_hex(id)) {
            r.headers_mut().insert(SESSION_HEADER, v);
        }
    }
    r
}

fn session_of(headers: &HeaderMap) -> Result<Id, Error> {
    let v = headers.get(SESSION_HEADER).ok_or(Error::UnknownSession)?;
    parse_session_hex(v.to_str().map_err(|_| Error::UnknownSession)?)
}

impl Backend {
    /// A backend with a server key, session limits, bounds, and the
    /// application's handler.
    ///
    /// # Errors
    /// [`Error::Rng`].
    pub fn new(
        key: ServerKey,
        limits: Limits,
        max_sessions: usize,
        max_pending: usize,
        handler: Handler,
    ) -> Result<Self, Error> {
        let challenges: StatelessChallenges = StatelessChallenges::generate(&mut OsRng, 60_000)?;
        Ok(Self {
            shared: Arc::new(Shared {
                key,
                limits,
                enrollments: Mutex::new(EnrollmentIssuer::new(challenges)),
                devices: RwLock::new(HashMap::new()),
                pending: Mutex::new(HashMap::new()),
                sessions: RwLock::new(HashMap::new()),
                max_sessions,
                max_pending,
                handler,
            }),
        })
    }

    /// The public key clients pin.
    pub fn public_key(&self) -> PublicKey {
        *self.shared.key.public_key()
    }

    /// Established sessions.
    pub fn sessions(&self) -> usize {
        self.shared.sessions.read().map_or(0, |m| m.len())
    }

    /// The routes of the binding (see the crate docs), under `/oncewire/v1`.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/oncewire/v1/enroll/challenge", post(enroll_challenge))
            .route("/oncewire/v1/enroll", post(enroll))
            .route("/oncewire/v1/handshake", post(handshake))
            .route("/oncewire/v1/handshake/finish", post(finish))
            .route("/oncewire/v1/call", post(call))
            .with_state(self.shared.clone())
    }

    /// Drops expired sessions and pending handshakes (run it periodically,
    /// for example with [`Backend::spawn_sweeper`]).
    pub fn sweep(&self) {
        let now = SystemClock.now_ms();
        if let Ok(mut m) = self.shared.sessions.write() {
            m.retain(|_, s| s.lock().is_ok_and(|s| s.expires_at_ms() >= now));
        }
        if let Ok(mut m) = self.shared.pending.lock() {
            m.retain(|_, p| p.deadline_ms() >= now);
        }
    }

    /// Sweeps every `period` on the tokio runtime.
    pub fn spawn_sweeper(&self, period: std::time::Duration) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            let mut t = tokio::time::interval(period);
            loop {
                t.tick().await;
                me.sweep();
            }
        })
    }
}

async fn enroll_challenge(State(s): State<Arc<Shared>>) -> Response {
    let issued = s.enrollments.lock().map_err(|_| Error::Misuse).and_then(|e| e.issue(&mut OsRng, &SystemClock));
    match issued {
        Ok(c) => sealed(c.as_bytes().to_vec(), None),
        Err(e) => refuse(e),
    }
}

async fn enroll(State(s): State<Arc<Shared>>, body: Bytes) -> Response {
    let r = (|| {
        let (challenge, request) = body.split_at_checked(CHALLENGE_LEN).ok_or(Error::Truncated)?;
        let challenge = Challenge::from_bytes(challenge)?;
        let request = EnrollmentRequest::from_bytes(request)?;
        let d = s.enrollments.lock().map_err(|_| Error::Misuse)?.verify(
            s.key.public_key(),
            &challenge,
            &request,
            &SystemClock,
        )?;
        let mut devices = s.devices.write().map_err(|_| Error::Misuse)?;
        d.admit(devices.get(&d.device), ReEnrollment::Refuse)?;
        devices.insert(d.device, d.public_key);
        Ok::<_, Error>(())
    })();
    match r {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => refuse(e),
    }
}

async fn handshake(State(s): State<Arc<Shared>>, body: Bytes) -> Response {
    let mut out = [0u8; MAX_HANDSHAKE_LEN];
    let r = s.key.accept(&mut OsRng, &SystemClock, &body, s.limits, &mut out).and_then(|(pending, n)| {
        let id = *pending.session_id();
        let mut p = s.pending.lock().map_err(|_| Error::Misuse)?;
        if p.len() >= s.max_pending {
            return Err(Error::CapacityExceeded);
        }
        p.insert(id, pending);
        Ok((id, n))
    });
    match r {
        Ok((id, n)) => sealed(out.get(..n).unwrap_or_default().to_vec(), Some(&id)),
        Err(e) => refuse(e),
    }
}

async fn finish(State(s): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let mut msg3 = body.to_vec();
    let r = (|| {
        let id = session_of(&headers)?;
        // Taken out of the map before any cryptography runs.
        let pending = s.pending.lock().map_err(|_| Error::Misuse)?.remove(&id).ok_or(Error::UnknownSession)?;
        let step = pending.read_finish::<32>(&SystemClock, &mut msg3)?;
        let key =
            s.devices.read().map_err(|_| Error::Misuse)?.get(step.device()).copied().ok_or(Error::UnknownDevice)?;
        let session: Session = step.verify(&SystemClock, &key)?;
        let mut m = s.sessions.write().map_err(|_| Error::Misuse)?;
        if m.len() >= s.max_sessions {
            return Err(Error::CapacityExceeded);
        }
        m.insert(id, Arc::new(Mutex::new(session)));
        Ok(())
    })();
    match r {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => refuse(e),
    }
}

async fn call(State(s): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let mut frame = body.to_vec();
    let r = (|| {
        let id = session_of(&headers)?;
        let session = s.sessions.read().map_err(|_| Error::Misuse)?.get(&id).cloned().ok_or(Error::UnknownSession)?;
        // Only this session's lock is held across the cryptography.
        let mut session = session.lock().map_err(|_| Error::Misuse)?;
        let clock = SystemClock;
        let device = session.device().copied().ok_or(Error::Misuse)?;
        let (request, reply) = match session.open_in_place(&clock, &mut frame)? {
            Received::Record(opened, request) => (request, (s.handler)(&device, opened.payload)),
            Received::KeyUpdated { .. } => return Ok(Vec::new()),
        };
        let mut out = vec![0u8; buffer_len(reply.len())];
        let n = session.seal_response(&clock, request, &reply, &mut out)?;
        out.truncate(n);
        Ok(out)
    })();
    match r {
        Ok(out) => sealed(out, None),
        Err(e) => refuse(e),
    }
}
