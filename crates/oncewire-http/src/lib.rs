//! oncewire over HTTP: an axum [`server::Backend`] a backend team mounts,
//! and a reqwest [`client::Client`] an app (or its Rust core) calls.
//!
//! **Status: foundation (issue 12 in progress).** Enrollment, the
//! handshake and sealed calls work end to end over HTTP/1.1. The device
//! registry is an async trait ([`store::DeviceRegistry`], in memory by
//! default), and message 3 waits for its lookup between the core's two
//! steps with no lock held. Still to come: tokens, challenge-bound calls,
//! the other stores as traits, metrics, the nginx pass-through test and the
//! load generator.
//!
//! # The binding (draft)
//!
//! Every body is `application/oncewire`: raw oncewire bytes, never
//! plaintext. Paths are under `/oncewire/v1`:
//!
//! | method and path                  | request body                         | reply                                  |
//! |----------------------------------|--------------------------------------|----------------------------------------|
//! | `POST /enroll/challenge`         | empty                                | 200, a 40-byte challenge               |
//! | `POST /enroll`                   | challenge ‖ enrollment request       | 204                                    |
//! | `POST /handshake`                | handshake message 1                  | 200, message 2; `Oncewire-Session`     |
//! | `POST /handshake/finish`         | message 3; `Oncewire-Session`        | 204                                    |
//! | `POST /call`                     | a record; `Oncewire-Session`         | 200, the response bound to it          |
//!
//! The `Oncewire-Session` header carries the session id in hex, so a load
//! balancer can route by it. A refusal is an opaque status plus the
//! `Oncewire-Next-Action` header: `drop` (400), `rehandshake` (401),
//! `reenroll` (403), `refresh-token` (401), `retry-later` (503). Nothing in a
//! reply says why authentication failed.
//!
//! **Retries.** A client whose reply was lost seals its request again (a
//! new sequence number): the old frame is a replay and is refused.
#![forbid(unsafe_code)]

pub mod client;
pub mod metrics;
pub mod server;
pub mod store;

use oncewire::{Error, PeerAction};

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
    id.iter().map(|b| format!("{b:02x}")).collect()
}

/// Parses the header's hex session id.
///
/// # Errors
/// [`Error::UnknownSession`] if it is not 16 hex digits.
pub fn parse_session_hex(s: &str) -> Result<[u8; 8], Error> {
    let b = s.as_bytes();
    if b.len() != 16 {
        return Err(Error::UnknownSession);
    }
    let mut out = [0u8; 8];
    for (o, pair) in out.iter_mut().zip(b.chunks_exact(2)) {
        let txt = core::str::from_utf8(pair).map_err(|_| Error::UnknownSession)?;
        *o = u8::from_str_radix(txt, 16).map_err(|_| Error::UnknownSession)?;
    }
    Ok(out)
}
