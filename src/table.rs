//! A server-side session table keyed by session id (`SPEC.md` §7, feature `std`).
//!
//! Holds pending handshakes (between messages 2 and 3) and established
//! sessions, both bounded, and routes incoming frames by the session id in
//! their header. No operation scans the table: expiry is kept in deadline
//! order (a queue for handshakes, whose timeouts are one `Limits` value, and
//! a heap for sessions), so dropping what expired costs O(log n) per entry,
//! paid once.

use crate::clock::Clock;
use crate::device::DeviceKeys;
use crate::error::{Error, Expiry, Result};
use crate::handshake::ServerAwaitFinish;
use crate::provider::CryptoProvider;
use crate::session::{Received, Session};
use crate::wire::{Frame, KEY_ID_LEN};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};

type Id = [u8; KEY_ID_LEN];

/// Pending handshakes and established sessions, bounded in number.
///
/// ```
/// use oncewire::SessionTable;
/// let table: SessionTable = SessionTable::new(10_000, 1_000);
/// assert!(table.is_empty());
/// ```
pub struct SessionTable<P: CryptoProvider = crate::provider::DefaultProvider, const W: usize = 32> {
    sessions: HashMap<Id, Session<P, W>>,
    session_expiry: BinaryHeap<Reverse<(u64, Id)>>,
    pending: HashMap<Id, ServerAwaitFinish<P>>,
    pending_order: VecDeque<(u64, Id)>,
    max_sessions: usize,
    max_pending: usize,
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
    /// handshakes. A handshake waits for message 3 as long as the `Limits`
    /// it was accepted with say (`handshake_timeout_ms`).
    pub fn new(max_sessions: usize, max_pending: usize) -> Self {
        Self {
            sessions: HashMap::new(),
            session_expiry: BinaryHeap::new(),
            pending: HashMap::new(),
            pending_order: VecDeque::new(),
            max_sessions,
            max_pending,
        }
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

    /// Drops the pending handshakes and sessions that expired by `now`, in
    /// deadline order: each entry is dropped once, O(log n).
    fn expire(&mut self, now: u64) {
        while let Some(&(deadline, id)) = self.pending_order.front() {
            if deadline >= now {
                break;
            }
            self.pending_order.pop_front();
            if self.pending.get(&id).is_some_and(|p| p.deadline_ms() == deadline) {
                self.pending.remove(&id);
            }
        }
        while let Some(&Reverse((expires, id))) = self.session_expiry.peek() {
            if expires >= now {
                break;
            }
            self.session_expiry.pop();
            if self.sessions.get(&id).is_some_and(|s| s.expires_at_ms() == expires) {
                self.sessions.remove(&id);
            }
        }
    }

    /// Parks a handshake waiting for message 3.
    ///
    /// # Errors
    /// [`Error::CapacityExceeded`] if the pending table is full (after
    /// dropping expired entries), [`Error::Misuse`] if the session id is
    /// already in use (a 2^-64 event, or a bug).
    pub fn begin(&mut self, clock: &impl Clock, pending: ServerAwaitFinish<P>) -> Result<()> {
        self.expire(clock.now_ms());
        let id = *pending.session_id();
        if self.pending.contains_key(&id) || self.sessions.contains_key(&id) {
            return Err(Error::Misuse);
        }
        if self.pending.len() >= self.max_pending {
            return Err(Error::CapacityExceeded);
        }
        self.pending_order.push_back((pending.deadline_ms(), id));
        self.pending.insert(id, pending);
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
        self.expire(clock.now_ms());
        let pending = self.pending.remove(&id).ok_or(Error::UnknownSession)?;
        if self.sessions.len() >= self.max_sessions {
            return Err(Error::CapacityExceeded);
        }
        let session = pending.finish::<K, W>(clock, msg3, keys)?;
        Ok(self.insert(id, session))
    }

    /// Stores an established session (from [`crate::handshake::ServerAwaitDevice::verify`]).
    ///
    /// # Errors
    /// [`Error::CapacityExceeded`] if the table is full (after dropping
    /// expired entries), [`Error::Misuse`] if the id is already in use.
    pub fn store(&mut self, clock: &impl Clock, session: Session<P, W>) -> Result<&mut Session<P, W>> {
        self.expire(clock.now_ms());
        let id = *session.session_id();
        if self.sessions.contains_key(&id) {
            return Err(Error::Misuse);
        }
        if self.sessions.len() >= self.max_sessions {
            return Err(Error::CapacityExceeded);
        }
        Ok(self.insert(id, session))
    }

    /// Takes the pending handshake that message 3 names, for the two-step
    /// finish ([`ServerAwaitFinish::read_finish`], then a device lookup).
    ///
    /// # Errors
    /// Parse errors, [`Error::UnknownSession`].
    pub fn take_pending(&mut self, clock: &impl Clock, msg3: &[u8]) -> Result<ServerAwaitFinish<P>> {
        let id = Frame::new_checked(msg3)?.header().key_id;
        self.expire(clock.now_ms());
        self.pending.remove(&id).ok_or(Error::UnknownSession)
    }

    fn insert(&mut self, id: Id, session: Session<P, W>) -> &mut Session<P, W> {
        self.session_expiry.push(Reverse((session.expires_at_ms(), id)));
        self.sessions.entry(id).insert_entry(session).into_mut()
    }

    /// The session with this id.
    pub fn get_mut(&mut self, session_id: &[u8; KEY_ID_LEN]) -> Option<&mut Session<P, W>> {
        self.sessions.get_mut(session_id)
    }

    /// Routes a frame to its session by the id in its header and opens it.
    /// Returns the session (to answer on) and what was received.
    ///
    /// # Errors
    /// Parse errors, [`Error::UnknownSession`] (no such session), and the
    /// errors of [`Session::open_in_place`]. An expired session is removed.
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

    /// Drops expired sessions and pending handshakes (in deadline order,
    /// without scanning the table). Every other call does this too.
    pub fn sweep(&mut self, clock: &impl Clock) {
        self.expire(clock.now_ms());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Server types are `Send + Sync`, so a server can share them across threads.
    #[test]
    fn server_types_are_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<SessionTable>();
        check::<Session>();
        check::<crate::handshake::ServerKey>();
        check::<ServerAwaitFinish>();
        check::<crate::handshake::ServerAwaitDevice>();
        check::<crate::challenge::StatelessChallenges>();
        check::<crate::token::TokenVerifier<'static>>();
        check::<crate::cache::ReplayCache>();
        check::<crate::request::RequestReceiver>();
    }
}
