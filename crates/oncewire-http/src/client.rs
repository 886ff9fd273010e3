//! The client: enrolls, connects (pinned key, handshake, clock offset) and
//! calls (seals a request, opens and checks the response bound to it),
//! re-handshaking once when the server says so.

use crate::{CONTENT_TYPE, NEXT_ACTION_HEADER, SESSION_HEADER, session_hex};
use oncewire::challenge::CHALLENGE_LEN;
use oncewire::clock::SystemClock;
use oncewire::device::MAX_ENROLLMENT_REQUEST_LEN;
use oncewire::handshake::MAX_HANDSHAKE_LEN;
use oncewire::prover::Prover;
use oncewire::rng::OsRng;
use oncewire::wire::buffer_len;
use oncewire::{ClientHandshake, DeviceId, DeviceSigner, Error, Limits, PublicKey, Session};

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

/// A client of one backend, for one device.
pub struct Client<S: DeviceSigner> {
    http: reqwest::Client,
    base: String,
    server_key: PublicKey,
    device: DeviceId,
    signer: S,
    session: Option<(Session, [u8; 8])>,
}

impl<S: DeviceSigner> core::fmt::Debug for Client<S> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Client").field("base", &self.base).field("device", &self.device).finish_non_exhaustive()
    }
}

impl<S: DeviceSigner> Client<S> {
    /// A client of the backend at `base` (e.g. `http://127.0.0.1:8080`),
    /// pinned to `server_key`, for `device` whose key `signer` holds.
    pub fn new(base: &str, server_key: PublicKey, device: DeviceId, signer: S) -> Self {
        Self {
            http: reqwest::Client::new(),
            base: base.trim_end_matches('/').to_owned(),
            server_key,
            device,
            signer,
            session: None,
        }
    }

    async fn post(
        &self,
        path: &str,
        session: Option<&[u8; 8]>,
        body: Vec<u8>,
    ) -> Result<(Vec<u8>, Option<String>), ClientError> {
        let mut req =
            self.http.post(format!("{}/oncewire/v1/{path}", self.base)).header("content-type", CONTENT_TYPE).body(body);
        if let Some(id) = session {
            req = req.header(SESSION_HEADER, session_hex(id));
        }
        let resp = req.send().await.map_err(|e| ClientError::Transport(e.to_string()))?;
        let status = resp.status().as_u16();
        let header = |name: &str| resp.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let next_action = header(NEXT_ACTION_HEADER);
        let session_id = header(SESSION_HEADER);
        if !(200..300).contains(&status) {
            return Err(ClientError::Refused { status, next_action: next_action.unwrap_or_default() });
        }
        let bytes = resp.bytes().await.map_err(|e| ClientError::Transport(e.to_string()))?;
        Ok((bytes.to_vec(), session_id))
    }

    /// Enrolls the device: asks for a challenge, signs it (naming the pinned
    /// server key), sends it back with the answer.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn enroll(&mut self) -> Result<(), ClientError> {
        let (challenge, _) = self.post("enroll/challenge", None, Vec::new()).await?;
        if challenge.len() != CHALLENGE_LEN {
            return Err(ClientError::Protocol(Error::Malformed));
        }
        let answer = Prover::new(&mut self.signer).answer_enrollment(&self.server_key, &challenge, self.device)?;
        let mut body = challenge;
        let mut buf = [0u8; MAX_ENROLLMENT_REQUEST_LEN];
        let n = answer.to_bytes(&mut buf)?;
        body.extend_from_slice(buf.get(..n).unwrap_or_default());
        self.post("enroll", None, body).await?;
        Ok(())
    }

    /// Runs the handshake with the pinned server key and keeps the session.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn connect(&mut self) -> Result<(), ClientError> {
        let mut m1 = [0u8; MAX_HANDSHAKE_LEN];
        let (hs, n1) = ClientHandshake::start(self.server_key, &mut OsRng, &SystemClock, &mut m1)?;
        let (m2, id) = self.post("handshake", None, m1.get(..n1).unwrap_or_default().to_vec()).await?;
        let id = crate::parse_session_hex(&id.unwrap_or_default())?;
        let mut m3 = [0u8; MAX_HANDSHAKE_LEN];
        let (session, n3): (Session, usize) =
            hs.finish(&SystemClock, &m2, self.device, &mut self.signer, Limits::DEFAULT, &mut m3)?;
        if session.session_id() != &id {
            return Err(ClientError::Protocol(Error::UnknownSession));
        }
        self.post("handshake/finish", Some(&id), m3.get(..n3).unwrap_or_default().to_vec()).await?;
        self.session = Some((session, id));
        Ok(())
    }

    /// Seals `request`, sends it, opens the response bound to it. If the
    /// server answers `rehandshake`, connects again and retries once (a new
    /// seal: the old frame would be a replay).
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn call(&mut self, request: &[u8]) -> Result<Vec<u8>, ClientError> {
        match self.call_once(request).await {
            Err(ClientError::Refused { next_action, .. }) if next_action == "rehandshake" => {
                self.connect().await?;
                self.call_once(request).await
            }
            other => other,
        }
    }

    /// The frame [`Self::call`] would send (for tests that replay it).
    ///
    /// # Errors
    /// [`ClientError`].
    pub fn seal(&mut self, request: &[u8]) -> Result<(Vec<u8>, oncewire::RequestId, [u8; 8]), ClientError> {
        let (session, id) = self.session.as_mut().ok_or(ClientError::Protocol(Error::UnknownSession))?;
        let mut frame = vec![0u8; buffer_len(request.len())];
        let (n, rid) = session.seal_request(&SystemClock, request, &mut frame)?;
        frame.truncate(n);
        Ok((frame, rid, *id))
    }

    /// Sends raw bytes as a call (for tests that replay or tamper).
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn send_raw(&self, session: &[u8; 8], frame: Vec<u8>) -> Result<Vec<u8>, ClientError> {
        Ok(self.post("call", Some(session), frame).await?.0)
    }

    async fn call_once(&mut self, request: &[u8]) -> Result<Vec<u8>, ClientError> {
        if self.session.is_none() {
            self.connect().await?;
        }
        let (frame, rid, id) = self.seal(request)?;
        let (mut resp, _) = self.post("call", Some(&id), frame).await?;
        let (session, _) = self.session.as_mut().ok_or(ClientError::Protocol(Error::UnknownSession))?;
        Ok(session.open_response(&SystemClock, rid, &mut resp)?.payload.to_vec())
    }
}
