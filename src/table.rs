//! A server-side session table keyed by session id (DESIGN C12, feature `std`).
//!
//! Holds pending handshakes (between messages 2 and 3) and established
//! sessions, both bounded, and routes incoming frames by the session id in
//! their header.

use crate::clock::Clock;
use crate::device::DeviceKeys;
use crate::error::{Error, Expiry, Result};
use crate::handshake::ServerAwaitFinish;
use crate::provider::{CryptoProvider, RustCrypto};
use crate::session::{Received, Session};
use crate::wire::{Frame, KEY_ID_LEN};
use std::collections::HashMap;

/// Pending handshakes and established sessions, bounded in number.
pub struct SessionTable<P: CryptoProvider = RustCrypto, const W: usize = 32> {
    sessions: HashMap<[u8; KEY_ID_LEN], Session<P, W>>,
    pending: HashMap<[u8; KEY_ID_LEN], (ServerAwaitFinish<P>, u64)>,
    max_sessions: usize,
    max_pending: usize,
    pending_ttl_ms: u64,
}

impl<P: CryptoProvider, const W: usize> core::fmt::Debug for SessionTable<P, W> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SessionTable")
            .field("sessions", &self.sessions.len())
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}

impl<P: CryptoProvider, const W: usize> SessionTable<P, W> {
    /// A table for at most `max_sessions` sessions and `max_pending`
    /// handshakes, each pending for at most `pending_ttl_ms`.
    pub fn new(max_sessions: usize, max_pending: usize, pending_ttl_ms: u64) -> Self {
        Self { sessions: HashMap::new(), pending: HashMap::new(), max_sessions, max_pending, pending_ttl_ms }
    }

    /// Number of established sessions.
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// True if no session is established.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// Number of pending handshakes.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Parks a handshake waiting for message 3.
    ///
    /// # Errors
    /// [`Error::CapacityExceeded`] if the pending table is full (after
    /// dropping expired entries), [`Error::Misuse`] if the session id is
    /// already in use (a 2^-64 event, or a bug).
    pub fn begin(&mut self, clock: &impl Clock, pending: ServerAwaitFinish<P>) -> Result<()> {
        let now = clock.now_ms();
        self.pending.retain(|_, (_, deadline)| *deadline >= now);
        let id = *pending.session_id();
        if self.pending.contains_key(&id) || self.sessions.contains_key(&id) {
            return Err(Error::Misuse);
        }
        if self.pending.len() >= self.max_pending {
            return Err(Error::CapacityExceeded);
        }
        self.pending.insert(id, (pending, now.saturating_add(self.pending_ttl_ms)));
        Ok(())
    }

    /// Completes the pending handshake that message 3 names and stores the
    /// session. The pending state is consumed whatever the outcome.
    ///
    /// # Errors
    /// [`Error::UnknownSession`] if no handshake is pending under that id,
    /// [`Error::CapacityExceeded`], and the errors of
    /// [`ServerAwaitFinish::finish`].
    pub fn finish<K: DeviceKeys + ?Sized>(
        &mut self,
        clock: &impl Clock,
        msg3: &mut [u8],
        keys: &K,
    ) -> Result<&mut Session<P, W>> {
        let id = Frame::new_checked(&*msg3)?.header().key_id;
        let (pending, _) = self.pending.remove(&id).ok_or(Error::UnknownSession)?;
        let now = clock.now_ms();
        self.sessions.retain(|_, s| s.expires_at_ms() >= now);
        if self.sessions.len() >= self.max_sessions {
            return Err(Error::CapacityExceeded);
        }
        let session = pending.finish::<K, W>(clock, msg3, keys)?;
        Ok(self.sessions.entry(id).or_insert(session))
    }

    /// The session with this id.
    pub fn get_mut(&mut self, session_id: &[u8; KEY_ID_LEN]) -> Option<&mut Session<P, W>> {
        self.sessions.get_mut(session_id)
    }

    /// Routes a frame to its session by the id in its header and opens it.
    /// Returns the session (to answer on) and what was received.
    ///
    /// # Errors
    /// Parse errors, [`Error::UnknownSession`] (no such session), and the errors
    /// of [`Session::open_in_place`]. An expired session is removed.
    pub fn open<'a>(&mut self, clock: &impl Clock, frame: &'a mut [u8]) -> Result<(&mut Session<P, W>, Received<'a>)> {
        let id = Frame::new_checked(&*frame)?.header().key_id;
        let session = self.sessions.get(&id).ok_or(Error::UnknownSession)?;
        if clock.now_ms() > session.expires_at_ms() {
            self.sessions.remove(&id);
            return Err(Error::Expired(Expiry::Session));
        }
        let session = self.sessions.get_mut(&id).ok_or(Error::UnknownSession)?;
        let r = session.open_in_place(clock, frame)?;
        Ok((session, r))
    }

    /// Removes a session.
    pub fn remove(&mut self, session_id: &[u8; KEY_ID_LEN]) -> Option<Session<P, W>> {
        self.sessions.remove(session_id)
    }

    /// Drops expired sessions and pending handshakes.
    pub fn sweep(&mut self, clock: &impl Clock) {
        let now = clock.now_ms();
        self.sessions.retain(|_, s| s.expires_at_ms() >= now);
        self.pending.retain(|_, (_, deadline)| *deadline >= now);
    }
}
