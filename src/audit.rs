//! Counted audit events (`SPEC.md` §6): what a server exports as metrics.

use crate::error::Error;

/// Counters of security-relevant events, kept by every receiver.
///
/// They count; they never change what is accepted. Sum them across
/// receivers with [`Audit::merge`] and export them as metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub struct Audit {
    /// Frames accepted.
    pub accepted: u64,
    /// Frames rejected as replays.
    pub replay_rejected: u64,
    /// Frames rejected as stale (too old, behind the window, below a floor).
    pub stale: u64,
    /// Frames rejected for a timestamp too far in the future.
    pub from_future: u64,
    /// Authentication failures (bad tag, signature or MAC).
    pub auth_failed: u64,
    /// Frames that did not parse (version, type, length, reserved fields).
    pub malformed: u64,
    /// Frames for another key or session, or of an unexpected type.
    pub misdirected: u64,
    /// Challenges presented a second time.
    pub challenge_reused: u64,
    /// Nonce-ring evictions of entries that were still fresh (the floor rose).
    pub ring_pressure: u64,
}

impl Audit {
    /// All zero.
    pub const fn new() -> Self {
        Self {
            accepted: 0,
            replay_rejected: 0,
            stale: 0,
            from_future: 0,
            auth_failed: 0,
            malformed: 0,
            misdirected: 0,
            challenge_reused: 0,
            ring_pressure: 0,
        }
    }

    /// Counts a rejection by its error.
    pub(crate) fn record(&mut self, e: Error) {
        let c = match e {
            Error::Replay => &mut self.replay_rejected,
            Error::Stale | Error::Expired(_) => &mut self.stale,
            Error::FromFuture => &mut self.from_future,
            Error::Authentication => &mut self.auth_failed,
            Error::UnknownSession | Error::UnknownDevice | Error::UnexpectedFrame => &mut self.misdirected,
            Error::NotYetValid => &mut self.from_future,
            Error::WrongAudience | Error::KeyMismatch | Error::RequestMismatch => &mut self.auth_failed,
            e if e.is_parse_error() => &mut self.malformed,
            _ => return,
        };
        *c = c.saturating_add(1);
    }

    /// Counts an accepted frame.
    pub(crate) fn accept(&mut self) {
        self.accepted = self.accepted.saturating_add(1);
    }

    /// Counts ring pressure.
    pub(crate) fn pressure(&mut self) {
        self.ring_pressure = self.ring_pressure.saturating_add(1);
    }

    /// Counts a reused challenge.
    pub(crate) fn challenge_reused(&mut self) {
        self.challenge_reused = self.challenge_reused.saturating_add(1);
    }

    /// Adds `other` into `self`, saturating.
    pub fn merge(&mut self, other: &Audit) {
        self.accepted = self.accepted.saturating_add(other.accepted);
        self.replay_rejected = self.replay_rejected.saturating_add(other.replay_rejected);
        self.stale = self.stale.saturating_add(other.stale);
        self.from_future = self.from_future.saturating_add(other.from_future);
        self.auth_failed = self.auth_failed.saturating_add(other.auth_failed);
        self.malformed = self.malformed.saturating_add(other.malformed);
        self.misdirected = self.misdirected.saturating_add(other.misdirected);
        self.challenge_reused = self.challenge_reused.saturating_add(other.challenge_reused);
        self.ring_pressure = self.ring_pressure.saturating_add(other.ring_pressure);
    }
}
