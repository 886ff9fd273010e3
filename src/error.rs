//! The crate-level error type, who caused it ([`Error::origin`]) and what
//! the peer should do next ([`Error::peer_action`]).

use core::fmt;

/// Everything that can go wrong in `oncewire`, in one flat, `Copy` enum.
///
/// Variants say who caused the failure: the **peer** (malformed, forged,
/// stale or replayed input), the **platform** (RNG, storage, signer), or the
/// **caller** (buffer too small, key exhausted). Every authentication failure
/// (AEAD tag, signature, MAC) is the single opaque [`Error::Authentication`],
/// so that an attacker learns nothing about which check failed.
///
/// Input that produces any of these errors changes no protocol state: replay
/// windows, counters and keys are exactly as they were before the call.
///
/// A server tells the peer only [`Error::peer_action`] (with an opaque
/// status), never the variant: the variant is for logs and metrics.
///
/// ```
/// use oncewire::{Error, Expiry, Origin, PeerAction};
/// assert_eq!(Error::Expired(Expiry::Token).peer_action(), PeerAction::RefreshToken);
/// assert_eq!(Error::UnknownSession.peer_action(), PeerAction::Rehandshake);
/// assert_eq!(Error::Authentication.origin(), Origin::Peer);
/// assert_eq!(Error::Authentication.peer_action(), PeerAction::Drop);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Error {
    /// Peer: the input ended before a complete header, field or frame.
    Truncated,
    /// Peer: bytes remain after a complete frame or control message.
    TrailingBytes,
    /// Peer: the version byte names a protocol version this build does not speak.
    UnsupportedVersion(u8),
    /// Peer: the frame type byte is not defined by the spec.
    UnknownFrameType(u8),
    /// Peer: a header field holds a value the spec forbids (reserved byte,
    /// nonce strategy that does not fit the frame type, non-zero nonce padding).
    Malformed,
    /// Peer: the frame is well formed but not what this receiver accepts here
    /// (another frame type or nonce strategy).
    UnexpectedFrame,
    /// Peer: the session id (or one-shot key id) in the header is not one
    /// this receiver holds: the session ended, expired, or never existed.
    UnknownSession,
    /// Peer: the device is not enrolled here.
    UnknownDevice,
    /// Peer: authentication failed (AEAD tag, signature or MAC). Deliberately opaque.
    Authentication,
    /// Peer: this frame (sequence number or nonce) was already accepted.
    Replay,
    /// Peer: the frame is older than the freshness window, behind the replay
    /// window, or at or below the replay floor (after a restart or ring pressure).
    Stale,
    /// Peer: the frame's timestamp is further in the future than the allowed skew.
    FromFuture,
    /// Peer: a control message or snapshot failed to decode.
    Decode,
    /// Caller: the output buffer is too small for the frame or message.
    BufferTooSmall,
    /// Caller: the payload is larger than the wire format allows.
    PayloadTooLarge,
    /// Caller: a fixed-capacity table is full (sessions, pending handshakes).
    /// Nothing was inserted; sweep expired entries or raise the capacity.
    CapacityExceeded,
    /// Caller: the key reached its invocation, sequence or block limit. Rekey
    /// now (a session: [`crate::session::Session::update_keys`]); nothing was sealed.
    KeyExhausted,
    /// Peer: so many forged frames failed under this receiving key that a
    /// forgery could now succeed (the AEAD integrity limit). The key is dead:
    /// every frame is refused, the peer's key update included. The peer must
    /// run a new handshake (a one-shot key: the sender must rekey).
    IntegrityLimit,
    /// Caller: the device id is already enrolled with another key, and the
    /// re-enrollment policy refuses to replace it.
    AlreadyEnrolled,
    /// Peer or caller: something with a lifetime ran out; which one says
    /// what to do next.
    Expired(Expiry),
    /// Peer: the token's `nbf` is still in the future (beyond the leeway).
    NotYetValid,
    /// Peer: the token was issued for another audience.
    WrongAudience,
    /// Peer: the token's `cnf` names another key than the one that signed the request.
    KeyMismatch,
    /// Peer: the challenge proof is bound to another request.
    RequestMismatch,
    /// Caller: a snapshot is older than the trusted epoch (rollback refused).
    Rollback,
    /// Caller or peer: key material is invalid (not a curve point, zero scalar).
    InvalidKey,
    /// Caller: a value could not be encoded (output buffer too small for postcard).
    Encode,
    /// Platform: the random number generator failed.
    Rng,
    /// Platform: persistent storage (a `CounterStore`) failed.
    Storage,
    /// Platform: the device signer (secure hardware) failed, or returned a
    /// signature that is not a valid P-256 signature.
    Signer,
    /// Caller: the API was used in a way its documentation rules out (a bug
    /// in the calling code, never something a peer can cause): a session id
    /// registered twice, an internal bound exceeded.
    Misuse,
}

/// What ran out, for [`Error::Expired`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Expiry {
    /// The session's lifetime: run a new handshake.
    Session,
    /// The wait for handshake message 3: run a new handshake.
    Handshake,
    /// The token's `exp`: get a new token.
    Token,
    /// A request challenge's expiry (or it fell below the used set's floor):
    /// get a new challenge and send the request again.
    Challenge,
    /// An enrollment challenge's expiry: enroll again.
    Enrollment,
}

/// Who caused an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Origin {
    /// The peer's input: malformed, forged, stale, replayed, or for something
    /// that expired or does not exist.
    Peer,
    /// The calling code: a buffer too small, a key used up, a bug.
    Caller,
    /// The platform: the RNG, storage or the device signer.
    Platform,
}

/// What the peer should do after this error: what a server sends back (as a
/// machine-readable next action with an opaque status), in the way rustls
/// maps an error to the alert it sends. It never says why authentication failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum PeerAction {
    /// Nothing will make this input acceptable: drop it (a forgery, a replay,
    /// garbage). A genuine client that retries seals its request afresh.
    Drop,
    /// Run a new handshake: the session is gone, expired, dead at its
    /// integrity limit, or the clocks drifted (a new handshake measures the
    /// clock offset again).
    Rehandshake,
    /// Enroll the device (again).
    Reenroll,
    /// Get a new token (and make a new proof).
    RefreshToken,
    /// The failure is on this side (capacity, storage, a bug) or needs a
    /// fresh challenge: try again later.
    RetryLater,
}

impl Error {
    /// True for input that did not parse: a frame, message or snapshot that
    /// is truncated, too long, of an unknown version or type, malformed, or
    /// too large.
    pub const fn is_parse_error(&self) -> bool {
        matches!(
            self,
            Error::Truncated
                | Error::TrailingBytes
                | Error::UnsupportedVersion(_)
                | Error::UnknownFrameType(_)
                | Error::Malformed
                | Error::Decode
                | Error::PayloadTooLarge
        )
    }

    /// Who caused the error.
    pub const fn origin(&self) -> Origin {
        match self {
            Error::BufferTooSmall
            | Error::CapacityExceeded
            | Error::KeyExhausted
            | Error::Rollback
            | Error::Encode
            | Error::AlreadyEnrolled
            | Error::Misuse => Origin::Caller,
            Error::Rng | Error::Storage | Error::Signer => Origin::Platform,
            // Everything else is the peer's input: parse errors, forgeries,
            // replays, stale or misdirected frames, what expired or is unknown.
            _ => Origin::Peer,
        }
    }

    /// What the peer should do next (see [`PeerAction`]).
    pub const fn peer_action(&self) -> PeerAction {
        match self {
            Error::UnknownSession
            | Error::IntegrityLimit
            | Error::Stale
            | Error::FromFuture
            | Error::Expired(Expiry::Session | Expiry::Handshake) => PeerAction::Rehandshake,
            Error::UnknownDevice | Error::Expired(Expiry::Enrollment) => PeerAction::Reenroll,
            Error::Expired(Expiry::Token) | Error::NotYetValid | Error::WrongAudience | Error::KeyMismatch => {
                PeerAction::RefreshToken
            }
            Error::Expired(Expiry::Challenge) => PeerAction::RetryLater,
            Error::AlreadyEnrolled => PeerAction::Drop,
            _ => match self.origin() {
                Origin::Peer => PeerAction::Drop,
                Origin::Caller | Origin::Platform => PeerAction::RetryLater,
            },
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Truncated => f.write_str("input truncated"),
            Error::TrailingBytes => f.write_str("trailing bytes after message"),
            Error::UnsupportedVersion(v) => write!(f, "unsupported protocol version {v}"),
            Error::UnknownFrameType(t) => write!(f, "unknown frame type {t:#04x}"),
            Error::Malformed => f.write_str("malformed header field"),
            Error::UnexpectedFrame => f.write_str("unexpected frame type or nonce strategy"),
            Error::UnknownSession => f.write_str("unknown session or key id"),
            Error::UnknownDevice => f.write_str("device not enrolled"),
            Error::Authentication => f.write_str("authentication failed"),
            Error::Replay => f.write_str("replayed frame"),
            Error::Stale => f.write_str("stale frame"),
            Error::FromFuture => f.write_str("timestamp too far in the future"),
            Error::Decode => f.write_str("decode failed"),
            Error::BufferTooSmall => f.write_str("buffer too small"),
            Error::PayloadTooLarge => f.write_str("payload too large"),
            Error::CapacityExceeded => f.write_str("capacity exceeded"),
            Error::KeyExhausted => f.write_str("key exhausted: rekey required"),
            Error::IntegrityLimit => f.write_str("integrity limit reached: re-handshake required"),
            Error::AlreadyEnrolled => f.write_str("device already enrolled with another key"),
            Error::Expired(what) => write!(f, "expired: {what:?}"),
            Error::NotYetValid => f.write_str("not yet valid"),
            Error::WrongAudience => f.write_str("wrong audience"),
            Error::KeyMismatch => f.write_str("token bound to another key"),
            Error::RequestMismatch => f.write_str("proof bound to another request"),
            Error::Rollback => f.write_str("snapshot older than trusted epoch"),
            Error::InvalidKey => f.write_str("invalid key material"),
            Error::Encode => f.write_str("encode failed"),
            Error::Rng => f.write_str("random number generator failed"),
            Error::Storage => f.write_str("persistent storage failed"),
            Error::Signer => f.write_str("device signer failed"),
            Error::Misuse => f.write_str("API misuse"),
        }
    }
}

impl core::error::Error for Error {}

/// Shorthand for `Result<T, oncewire::Error>`.
pub type Result<T> = core::result::Result<T, Error>;
