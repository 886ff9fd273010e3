//! The backend: an axum router over oncewire state.
//!
//! Concurrency: the session map is behind a read-write lock held only to
//! find or insert an entry; each session has its own lock, so no global
//! lock is held across cryptography. Pending handshakes are taken out of
//! their map before message 3 is opened. The number of sessions and pending
//! handshakes is bounded; a full table is refused with 503 `retry-later`.
//! Expired sessions are swept by a background task, not per request.

use crate::store::{DeviceRegistry, MemoryRegistry};
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

struct Shared<R> {
    key: ServerKey,
    limits: Limits,
    enrollments: Mutex<EnrollmentIssuer>,
    devices: R,
    pending: Mutex<HashMap<Id, ServerAwaitFinish>>,
    sessions: RwLock<HashMap<Id, Arc<Mutex<Session>>>>,
    max_sessions: usize,
    max_pending: usize,
    handler: Handler,
}

/// An oncewire backend over a device registry: build it, then mount
/// [`Backend::router`].
pub struct Backend<R: DeviceRegistry = MemoryRegistry> {
    shared: Arc<Shared<R>>,
}

impl<R: DeviceRegistry> Clone for Backend<R> {
    fn clone(&self) -> Self {
        Self { shared: self.shared.clone() }
    }
}

impl<R: DeviceRegistry> core::fmt::Debug for Backend<R> {
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
    /// A backend with an in-memory device registry, a server key, session
    /// limits, bounds, and the application's handler.
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
        Self::with_registry(MemoryRegistry::new(), key, limits, max_sessions, max_pending, handler)
    }
}

impl<R: DeviceRegistry> Backend<R> {
    /// A backend over `registry` (for example a database).
    ///
    /// # Errors
    /// [`Error::Rng`].
    pub fn with_registry(
        registry: R,
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
                devices: registry,
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

    /// The device registry.
    pub fn registry(&self) -> &R {
        &self.shared.devices
    }

    /// Established sessions.
    pub fn sessions(&self) -> usize {
        self.shared.sessions.read().map_or(0, |m| m.len())
    }

    /// The routes of the binding (see the crate docs), under `/oncewire/v1`.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/oncewire/v1/enroll/challenge", post(enroll_challenge::<R>))
            .route("/oncewire/v1/enroll", post(enroll::<R>))
            .route("/oncewire/v1/handshake", post(handshake::<R>))
            .route("/oncewire/v1/handshake/finish", post(finish::<R>))
            .route("/oncewire/v1/call", post(call::<R>))
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

async fn enroll_challenge<R: DeviceRegistry>(State(s): State<Arc<Shared<R>>>) -> Response {
    let issued = s.enrollments.lock().map_err(|_| Error::Misuse).and_then(|e| e.issue(&mut OsRng, &SystemClock));
    match issued {
        Ok(c) => sealed(c.as_bytes().to_vec(), None),
        Err(e) => refuse(e),
    }
}

async fn enroll<R: DeviceRegistry>(State(s): State<Arc<Shared<R>>>, body: Bytes) -> Response {
    let verified = (|| {
        let (challenge, request) = body.split_at_checked(CHALLENGE_LEN).ok_or(Error::Truncated)?;
        let challenge = Challenge::from_bytes(challenge)?;
        let request = EnrollmentRequest::from_bytes(request)?;
        s.enrollments.lock().map_err(|_| Error::Misuse)?.verify(s.key.public_key(), &challenge, &request, &SystemClock)
    })();
    let r = match verified {
        // The registry applies the policy atomically with its own lookup.
        Ok(d) => s.devices.enroll(d, ReEnrollment::Refuse).await,
        Err(e) => Err(e),
    };
    match r {
        Ok(_) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => refuse(e),
    }
}

async fn handshake<R: DeviceRegistry>(State(s): State<Arc<Shared<R>>>, body: Bytes) -> Response {
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

async fn finish<R: DeviceRegistry>(State(s): State<Arc<Shared<R>>>, headers: HeaderMap, body: Bytes) -> Response {
    match finish_steps(&s, &headers, body.to_vec()).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => refuse(e),
    }
}

/// Message 3 in the core's two steps, with the registry lookup (which may
/// be a database round trip) in between and no lock held across it.
async fn finish_steps<R: DeviceRegistry>(s: &Shared<R>, headers: &HeaderMap, mut msg3: Vec<u8>) -> Result<(), Error> {
    let id = session_of(headers)?;
    // Taken out of the map before any cryptography runs.
    let pending = s.pending.lock().map_err(|_| Error::Misuse)?.remove(&id).ok_or(Error::UnknownSession)?;
    let step = pending.read_finish::<32>(&SystemClock, &mut msg3)?;
    let key = s.devices.device_key(step.device()).await?.ok_or(Error::UnknownDevice)?;
    let session: Session = step.verify(&SystemClock, &key)?;
    let mut m = s.sessions.write().map_err(|_| Error::Misuse)?;
    if m.len() >= s.max_sessions {
        return Err(Error::CapacityExceeded);
    }
    m.insert(id, Arc::new(Mutex::new(session)));
    Ok(())
}

async fn call<R: DeviceRegistry>(State(s): State<Arc<Shared<R>>>, headers: HeaderMap, body: Bytes) -> Response {
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
