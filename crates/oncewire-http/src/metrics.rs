//! The backend's counters, exported in the Prometheus text format on
//! `GET /metrics` (mount [`crate::server::Backend::metrics_router`] where
//! your scraper reaches it, not on the public listener).
//!
//! Every step that accepts or refuses is counted once, by route kind and,
//! for refusals, by reason: `call` counts the sealed records opened (or
//! refused) by the sealing layer, and `bound` the challenge and token checks
//! of a bound route after that, so a bound call refused for its token is
//! one accepted `call` and one refused `bound`. The reasons are those of the core's
//! [`oncewire::Audit`] (replays, stale frames, authentication failures, …)
//! plus the store's: challenge reuse, token-proof replays, store refusals.
//! Lock-free: each counter is an atomic.

use oncewire::Error;
use oncewire::cache::Purpose;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// The route kinds counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// `POST /enroll/challenge` and `POST /enroll`.
    Enroll,
    /// `POST /handshake` (messages 1 and 2).
    Handshake,
    /// `POST /handshake/finish` (message 3).
    Finish,
    /// A sealed call to a route behind [`crate::server::Backend::sealed`].
    Call,
    /// The challenge and token parts of a bound call.
    Bound,
    /// A one-shot request behind [`crate::server::Backend::one_shot`].
    OneShot,
}

impl Route {
    /// Every route kind, in the order of the exposition.
    pub const ALL: [Route; 6] =
        [Route::Enroll, Route::Handshake, Route::Finish, Route::Call, Route::Bound, Route::OneShot];

    /// Its label value.
    pub const fn name(self) -> &'static str {
        match self {
            Route::Enroll => "enroll",
            Route::Handshake => "handshake",
            Route::Finish => "finish",
            Route::Call => "call",
            Route::Bound => "bound",
            Route::OneShot => "one_shot",
        }
    }
}

/// Why a request was refused, as counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// A frame, request or proof seen before.
    Replay,
    /// A challenge presented a second time.
    ChallengeReused,
    /// A token proof presented a second time.
    TokenProofReplay,
    /// Too old, behind the window, or below a floor.
    Stale,
    /// Stamped too far in the future.
    FromFuture,
    /// A bad tag, signature or MAC.
    AuthFailed,
    /// Did not parse.
    Malformed,
    /// No such session (or a frame for another one).
    UnknownSession,
    /// No such device.
    UnknownDevice,
    /// A session, token, challenge or handshake past its lifetime.
    Expired,
    /// A token refused for its claims (audience, key, validity).
    TokenRefused,
    /// A store was full or could not answer.
    StoreRefused,
    /// An enrollment refused by the re-enrollment policy.
    AlreadyEnrolled,
    /// Anything else.
    Other,
}

const REASON_NAMES: [(Reason, &str); 14] = [
    (Reason::Replay, "replay"),
    (Reason::ChallengeReused, "challenge_reused"),
    (Reason::TokenProofReplay, "token_proof_replay"),
    (Reason::Stale, "stale"),
    (Reason::FromFuture, "from_future"),
    (Reason::AuthFailed, "auth_failed"),
    (Reason::Malformed, "malformed"),
    (Reason::UnknownSession, "unknown_session"),
    (Reason::UnknownDevice, "unknown_device"),
    (Reason::Expired, "expired"),
    (Reason::TokenRefused, "token_refused"),
    (Reason::StoreRefused, "store_refused"),
    (Reason::AlreadyEnrolled, "already_enrolled"),
    (Reason::Other, "other"),
];

impl Reason {
    /// Every reason, in the order of the exposition.
    pub const ALL: [Reason; 14] = [
        Reason::Replay,
        Reason::ChallengeReused,
        Reason::TokenProofReplay,
        Reason::Stale,
        Reason::FromFuture,
        Reason::AuthFailed,
        Reason::Malformed,
        Reason::UnknownSession,
        Reason::UnknownDevice,
        Reason::Expired,
        Reason::TokenRefused,
        Reason::StoreRefused,
        Reason::AlreadyEnrolled,
        Reason::Other,
    ];

    /// Its label value.
    pub fn name(self) -> &'static str {
        REASON_NAMES.iter().find(|(r, _)| *r == self).map_or("other", |(_, n)| n)
    }

    /// The reason of `e`; a replay is told apart by the set it hit.
    pub fn of(e: Error, set: Option<Purpose>) -> Self {
        match e {
            Error::Replay => match set {
                Some(Purpose::Challenges) => Self::ChallengeReused,
                Some(Purpose::TokenProofs) => Self::TokenProofReplay,
                _ => Self::Replay,
            },
            Error::Stale | Error::Rollback => Self::Stale,
            Error::FromFuture => Self::FromFuture,
            Error::Authentication | Error::RequestMismatch => Self::AuthFailed,
            Error::UnknownSession | Error::UnexpectedFrame => Self::UnknownSession,
            Error::UnknownDevice => Self::UnknownDevice,
            Error::Expired(_) | Error::IntegrityLimit => Self::Expired,
            Error::NotYetValid | Error::WrongAudience | Error::KeyMismatch => Self::TokenRefused,
            Error::CapacityExceeded | Error::Storage => Self::StoreRefused,
            Error::AlreadyEnrolled => Self::AlreadyEnrolled,
            e if e.is_parse_error() => Self::Malformed,
            _ => Self::Other,
        }
    }
}

/// The counters. Shared by every request; each update is one atomic add.
#[derive(Debug, Default)]
pub struct Metrics {
    accepted: [AtomicU64; Route::ALL.len()],
    rejected: [[AtomicU64; Reason::ALL.len()]; Route::ALL.len()],
}

fn route_index(r: Route) -> usize {
    Route::ALL.iter().position(|x| *x == r).unwrap_or(0)
}

fn reason_index(r: Reason) -> usize {
    Reason::ALL.iter().position(|x| *x == r).unwrap_or(Reason::ALL.len().saturating_sub(1))
}

impl Metrics {
    /// Counts an accepted request.
    pub fn accepted(&self, route: Route) {
        if let Some(c) = self.accepted.get(route_index(route)) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts a refusal.
    pub fn rejected(&self, route: Route, reason: Reason) {
        if let Some(c) = self.rejected.get(route_index(route)).and_then(|r| r.get(reason_index(reason))) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Accepted requests of `route` so far.
    pub fn accepted_count(&self, route: Route) -> u64 {
        self.accepted.get(route_index(route)).map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// Refusals of `route` for `reason` so far.
    pub fn rejected_count(&self, route: Route, reason: Reason) -> u64 {
        self.rejected
            .get(route_index(route))
            .and_then(|r| r.get(reason_index(reason)))
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// All refusals of `route`.
    pub fn rejected_total(&self, route: Route) -> u64 {
        self.rejected.get(route_index(route)).map_or(0, |r| r.iter().map(|c| c.load(Ordering::Relaxed)).sum())
    }

    /// The Prometheus text exposition of every counter, followed by the
    /// gauges in `gauges` (name, help, value).
    pub fn render(&self, gauges: &[(&str, &str, u64)]) -> String {
        let mut out = String::new();
        out.push_str("# HELP oncewire_accepted_total Requests accepted, by route kind.\n");
        out.push_str("# TYPE oncewire_accepted_total counter\n");
        for (route, c) in Route::ALL.iter().zip(&self.accepted) {
            let _ =
                writeln!(out, "oncewire_accepted_total{{route=\"{}\"}} {}", route.name(), c.load(Ordering::Relaxed));
        }
        out.push_str("# HELP oncewire_rejected_total Requests refused, by route kind and reason.\n");
        out.push_str("# TYPE oncewire_rejected_total counter\n");
        for (route, row) in Route::ALL.iter().zip(&self.rejected) {
            for (reason, c) in Reason::ALL.iter().zip(row) {
                let _ = writeln!(
                    out,
                    "oncewire_rejected_total{{route=\"{}\",reason=\"{}\"}} {}",
                    route.name(),
                    reason.name(),
                    c.load(Ordering::Relaxed)
                );
            }
        }
        for (name, help, value) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}");
        }
        out
    }
}
