//! oncewire over HTTP: an axum [`server::Backend`] a backend team mounts,
//! and a reqwest [`client::Client`] an app (or its Rust core) calls.
//!
//! The binding is `SPEC.md` §16: every body is `application/oncewire`
//! (oncewire bytes, never plaintext), so content stays sealed through
//! proxies and load balancers that terminate TLS.
//!
//! - **Server.** [`server::Backend`] mounts enrollment, the handshake,
//!   challenges, tokens and the one-shot request key under `/oncewire/v1`,
//!   and puts your axum routes behind layers: [`server::Backend::sealed`]
//!   (each request opened and accepted once before your handler runs, each
//!   reply sealed and bound to its request), [`server::Backend::require`]
//!   (a challenge answer and/or a token use, checked over one hash of the
//!   request), and [`server::Backend::one_shot`] (HPKE requests with no
//!   session). Handlers take [`server::VerifiedDevice`],
//!   [`server::Opened`], [`server::CheckedToken`], [`server::ChallengeBound`].
//! - **Stores.** Sessions, pending handshakes, the accepted-once sets and
//!   the device registry are traits ([`store`]), in memory by default.
//! - **Refusals** are an opaque status and `Oncewire-Next-Action`
//!   ([`refusal`]); nothing says why authentication failed.
//! - **Observability.** [`metrics`] counts every acceptance and refusal
//!   (Prometheus text on [`server::Backend::metrics_router`]); every
//!   refusal is a `tracing` event with the session id and the error, never
//!   a secret or plaintext.
//! - **Client.** [`client::Client`] enrolls, connects to a pinned key,
//!   calls, makes bound calls and one-shot requests, and follows the
//!   server's next action (re-handshake, new token, new challenge; a lost
//!   reply is sealed again, never resent).
#![forbid(unsafe_code)]

#[cfg(feature = "client")]
pub mod client;
pub mod metrics;
pub mod provider;
pub mod server;
pub mod store;

use oncewire::{Error, PeerAction};

/// A clock shared between tasks: the system clock unless a builder was
/// given another (tests and the demo move time to play stale and expired
/// input, with [`server::ShiftedClock`]).
#[derive(Clone)]
pub struct SharedClock(std::sync::Arc<dyn oncewire::Clock + Send + Sync>);

impl SharedClock {
    /// The system clock.
    pub fn system() -> Self {
        Self(std::sync::Arc::new(oncewire::clock::SystemClock))
    }

    /// Any clock.
    pub fn new(clock: impl oncewire::Clock + Send + Sync + 'static) -> Self {
        Self(std::sync::Arc::new(clock))
    }
}

impl core::fmt::Debug for SharedClock {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "SharedClock({} ms)", self.0.now_ms())
    }
}

impl oncewire::Clock for SharedClock {
    fn now_ms(&self) -> u64 {
        self.0.now_ms()
    }
}

/// The content type of every oncewire body.
pub const CONTENT_TYPE: &str = "application/oncewire";
/// The header that carries the session id (hex).
pub const SESSION_HEADER: &str = "oncewire-session";
/// The header that carries a routing key for load balancers: the client's
/// handshake id (hex), sent with message 1, message 3 and every call of the
/// session it started (`SPEC.md` §16.2). The server ignores it.
pub const ROUTE_HEADER: &str = "oncewire-route";
/// The header that carries the next action of a refusal.
pub const NEXT_ACTION_HEADER: &str = "oncewire-next-action";

/// The HTTP status and next-action token of an error (see the crate docs).
pub fn refusal(e: Error) -> (u16, &'static str) {
    match e.peer_action() {
        PeerAction::Rehandshake => (401, "rehandshake"),
        PeerAction::Reenroll => (403, "reenroll"),
        PeerAction::RefreshToken => (401, "refresh-token"),
        PeerAction::RetryLater => (503, "retry-later"),
        _ => (400, "drop"),
    }
}

/// The session id as the header carries it.
pub fn session_hex(id: &[u8; 8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(16);
    for b in id {
        out.push(char::from(HEX.get(usize::from(b >> 4)).copied().unwrap_or(b'0')));
        out.push(char::from(HEX.get(usize::from(b & 0x0f)).copied().unwrap_or(b'0')));
    }
    out
}

/// Parses the header's hex session id.
///
/// # Errors
/// [`Error::UnknownSession`] if it is not 16 lowercase hex digits.
pub fn parse_session_hex(s: &str) -> Result<[u8; 8], Error> {
    // Lowercase hex digits only (SPEC §16.2): one spelling per id.
    fn digit(c: u8) -> Result<u8, Error> {
        match c {
            b'0'..=b'9' => Ok(c.wrapping_sub(b'0')),
            b'a'..=b'f' => Ok(c.wrapping_sub(b'a').wrapping_add(10)),
            _ => Err(Error::UnknownSession),
        }
    }
    let b = s.as_bytes();
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
