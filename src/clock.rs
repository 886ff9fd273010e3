//! Time (`SPEC.md` §5): the [`Clock`] seam, a manual clock for tests and
//! firmware that keeps its own time, and the server time base of a session.

use core::cell::Cell;

/// A source of Unix time in milliseconds.
///
/// `oncewire` owns no clock. Servers use `SystemClock` (feature `std`);
/// firmware wraps its RTC or a time the server told it (see `SPEC.md` §5).
pub trait Clock {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;
}

impl<C: Clock + ?Sized> Clock for &C {
    fn now_ms(&self) -> u64 {
        (**self).now_ms()
    }
}

/// A clock that only moves when told to.
///
/// ```
/// use oncewire::clock::{Clock, ManualClock};
/// let c = ManualClock::new(1_000);
/// c.advance(500);
/// assert_eq!(c.now_ms(), 1_500);
/// ```
#[derive(Debug, Default, Clone)]
pub struct ManualClock(Cell<u64>);

impl ManualClock {
    /// A clock reading `now_ms`.
    pub const fn new(now_ms: u64) -> Self {
        Self(Cell::new(now_ms))
    }

    /// Sets the time.
    pub fn set(&self, now_ms: u64) {
        self.0.set(now_ms);
    }

    /// Moves the time forward, saturating.
    pub fn advance(&self, ms: u64) {
        self.0.set(self.0.get().saturating_add(ms));
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.0.get()
    }
}

/// A clock in the server's time base: a device clock plus the offset the
/// handshake measured. Only a session makes one ([`crate::Session::server_clock`]),
/// so the offset has one home: the session applies it to everything it
/// stamps, and this clock carries it to what is stamped outside the session
/// (a token proof's `iat`, a one-shot request). Never wrap it in another offset.
#[derive(Debug, Clone, Copy)]
pub struct ServerClock<C> {
    inner: C,
    offset_ms: i64,
}

impl<C: Clock> ServerClock<C> {
    pub(crate) const fn new(inner: C, offset_ms: i64) -> Self {
        Self { inner, offset_ms }
    }
}

impl<C: Clock> Clock for ServerClock<C> {
    fn now_ms(&self) -> u64 {
        self.inner.now_ms().saturating_add_signed(self.offset_ms)
    }
}

/// The system clock (feature `std`).
#[cfg(feature = "std")]
#[cfg_attr(docsrs, doc(cfg(feature = "std")))]
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

#[cfg(feature = "std")]
impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }
}
