//! Where the backend keeps what must outlive a request, as traits, with
//! in-memory defaults: the device registry, established sessions, pending
//! handshakes, and the accepted-once sets (one-shot requests, token proofs,
//! used challenges). The fleet crate implements them on Redis and
//! PostgreSQL; every implementation must pass the same behavioural suite
//! (`tests/stores.rs`).
//!
//! The in-memory stores are safe under concurrency:
//! - no lock of theirs is held across cryptography: a session is a handle
//!   with its own lock, found through one shard of a sharded map;
//! - no request scans them: lookups are by id, and expiry is swept by
//!   [`crate::server::Backend::spawn_sweeper`] in the background;
//! - they are bounded, and a full store refuses with
//!   [`Error::CapacityExceeded`] (HTTP 503, `retry-later`).

use crate::provider::{ReplayCache, ServerAwaitFinish, Session, StatelessChallenges};
use oncewire::cache::{Once, Purpose};
use oncewire::device::{Admission, EnrolledDevice, ReEnrollment};
use oncewire::replay::Freshness;
use oncewire::rng::OsRng;
use oncewire::{DeviceId, Error, PublicKey, SeqUse};
use std::collections::HashMap;
use std::future::Future;
use std::hash::{BuildHasher, Hash, RandomState};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

/// A session id (the `Oncewire-Session` header, decoded).
pub type SessionId = [u8; 8];

/// An established session as the backend uses it: its own lock, held only
/// while one frame is opened or one response sealed (never across an await).
pub type SessionHandle = Arc<Mutex<Session>>;

/// The enrolled devices: looked up at every handshake, written at enrollment.
pub trait DeviceRegistry: Send + Sync + 'static {
    /// The key enrolled under `device`, if any.
    fn device_key(&self, device: &DeviceId) -> impl Future<Output = Result<Option<PublicKey>, Error>> + Send;

    /// Stores a verified enrollment under the re-enrollment `policy`
    /// (`SPEC.md` §8.3), atomically with the lookup of the key already
    /// enrolled under the same id.
    fn enroll(
        &self,
        device: EnrolledDevice,
        policy: ReEnrollment,
    ) -> impl Future<Output = Result<Admission, Error>> + Send;
}

/// Established sessions, by id.
pub trait SessionStore: Send + Sync + 'static {
    /// Stores a new session and returns its handle. An id already held is
    /// never replaced.
    ///
    /// # Errors
    /// [`Error::CapacityExceeded`] when full, [`Error::Misuse`] if `id` is
    /// held, [`Error::Storage`].
    fn insert(&self, id: SessionId, session: Session) -> impl Future<Output = Result<SessionHandle, Error>> + Send;

    /// The session under `id`, if any (expired or not: the core refuses an
    /// expired session itself, with `Expired(Session)`).
    ///
    /// # Errors
    /// [`Error::Storage`].
    fn get(&self, id: &SessionId) -> impl Future<Output = Result<Option<SessionHandle>, Error>> + Send;

    /// Forgets `id` (after its integrity limit, or when the device leaves).
    ///
    /// # Errors
    /// [`Error::Storage`].
    fn remove(&self, id: &SessionId) -> impl Future<Output = Result<(), Error>> + Send;

    /// Records a frame the session authenticated
    /// ([`Session::open_unrecorded`]), once: a store shared by several
    /// servers checks and records it there, atomically, then commits it in
    /// `handle` (`SPEC.md` §17.2). The default commits in `handle` alone,
    /// which is right for a store that lives in one process.
    ///
    /// # Errors
    /// [`Error::Replay`], [`Error::Stale`] (accepted before, here or on
    /// another server), [`Error::UnknownSession`] (the shared state is
    /// gone: re-handshake), [`Error::Storage`]. Nothing is recorded on error.
    fn commit(
        &self,
        id: &SessionId,
        handle: &SessionHandle,
        used: SeqUse,
    ) -> impl Future<Output = Result<(), Error>> + Send {
        let _ = id;
        let r = handle.lock().map_err(|_| Error::Storage).and_then(|mut s| s.commit(used));
        core::future::ready(r)
    }

    /// Makes sure the session may seal a response of `payload_len` bytes:
    /// a shared store reserves sequence numbers for this server alone
    /// ([`Session::grant_sends`], `SPEC.md` §17.3). The default does
    /// nothing: a session of one process counts its own.
    ///
    /// # Errors
    /// [`Error::KeyExhausted`] (the key's record limit: re-handshake),
    /// [`Error::Storage`].
    fn reserve(
        &self,
        id: &SessionId,
        handle: &SessionHandle,
        payload_len: usize,
    ) -> impl Future<Output = Result<(), Error>> + Send {
        let _ = (id, handle, payload_len);
        core::future::ready(Ok(()))
    }

    /// A frame failed to authenticate under `stale`: a store shared by
    /// several servers returns a fresher copy if another server moved the
    /// session on (a key update), so the frame is tried once more. The
    /// default has none.
    ///
    /// # Errors
    /// [`Error::Storage`].
    fn refresh(
        &self,
        id: &SessionId,
        stale: &SessionHandle,
    ) -> impl Future<Output = Result<Option<SessionHandle>, Error>> + Send {
        let _ = (id, stale);
        core::future::ready(Ok(None))
    }

    /// Drops sessions expired at `now_ms`; returns how many.
    fn sweep(&self, now_ms: u64) -> impl Future<Output = usize> + Send;

    /// Number of sessions held.
    fn len(&self) -> usize;

    /// True if none is held.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Handshakes between message 2 and message 3.
pub trait PendingStore: Send + Sync + 'static {
    /// Stores a pending handshake. An id already held is never replaced.
    ///
    /// # Errors
    /// [`Error::CapacityExceeded`] when full, [`Error::Misuse`] if `id` is
    /// held, [`Error::Storage`].
    fn insert(&self, id: SessionId, pending: ServerAwaitFinish) -> impl Future<Output = Result<(), Error>> + Send;

    /// Takes the pending handshake out (so message 3 is tried once).
    ///
    /// # Errors
    /// [`Error::Storage`].
    fn take(&self, id: &SessionId) -> impl Future<Output = Result<Option<ServerAwaitFinish>, Error>> + Send;

    /// Drops handshakes past their deadline at `now_ms`; returns how many.
    fn sweep(&self, now_ms: u64) -> impl Future<Output = usize> + Send;

    /// Number held.
    fn len(&self) -> usize;

    /// True if none is held.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The accepted-once sets (`SPEC.md` §15): one-shot requests, token
/// proofs, used challenges. The core authenticates and names each use as
/// an [`Once`]; the store records it.
pub trait OnceStore: Send + Sync + 'static {
    /// Records every use in `onces` (the parts of one request), all or
    /// none, atomically: if any was accepted before (`Replay`), is outside
    /// its window (`Stale`, `FromFuture`, `Expired(Challenge)`), or the
    /// store cannot answer (`Storage`, `CapacityExceeded`), nothing is
    /// recorded. A store that cannot answer refuses; it never accepts.
    fn accept(&self, onces: &[Once], now_ms: u64) -> impl Future<Output = Result<(), Refusal>> + Send;

    /// Audit counters of each set the store keeps locally, if it does
    /// (exported as metrics).
    fn audits(&self) -> Vec<(Purpose, oncewire::Audit)> {
        Vec::new()
    }
}

/// Why an [`OnceStore`] refused, and which set refused (for the metrics:
/// a replayed challenge and a replayed token proof are counted apart).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The error the request is refused with.
    pub error: Error,
    /// The set that refused, if one did (not for `Storage`).
    pub set: Option<Purpose>,
}

impl From<Error> for Refusal {
    fn from(error: Error) -> Self {
        Self { error, set: None }
    }
}

// --- in memory -----------------------------------------------------------------

/// A device registry in memory (a map behind a read-write lock).
#[derive(Debug, Default)]
pub struct MemoryRegistry {
    devices: RwLock<HashMap<DeviceId, PublicKey>>,
}

impl MemoryRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of enrolled devices.
    pub fn len(&self) -> usize {
        self.devices.read().map_or(0, |m| m.len())
    }

    /// True if no device is enrolled.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl DeviceRegistry for MemoryRegistry {
    async fn device_key(&self, device: &DeviceId) -> Result<Option<PublicKey>, Error> {
        Ok(self.devices.read().map_err(|_| Error::Storage)?.get(device).copied())
    }

    async fn enroll(&self, device: EnrolledDevice, policy: ReEnrollment) -> Result<Admission, Error> {
        let mut m = self.devices.write().map_err(|_| Error::Storage)?;
        let admission = device.admit(m.get(&device.device), policy)?;
        if admission != Admission::Unchanged {
            m.insert(device.device, device.public_key);
        }
        Ok(admission)
    }
}

const SHARDS: usize = 64;

/// A bounded map split into shards, each behind its own lock, so that
/// concurrent requests for different ids rarely meet on one lock.
struct Sharded<V> {
    shards: Vec<RwLock<HashMap<SessionId, V>>>,
    hasher: RandomState,
    len: AtomicUsize,
    max: usize,
}

impl<V> Sharded<V> {
    fn new(max: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| RwLock::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
            len: AtomicUsize::new(0),
            max,
        }
    }

    fn shard(&self, id: &SessionId) -> Result<&RwLock<HashMap<SessionId, V>>, Error> {
        let mut h = self.hasher.build_hasher();
        id.hash(&mut h);
        let n = u64::try_from(SHARDS).map_err(|_| Error::Storage)?;
        let i = std::hash::Hasher::finish(&h).checked_rem(n).ok_or(Error::Storage)?;
        let i = usize::try_from(i).map_err(|_| Error::Storage)?;
        self.shards.get(i).ok_or(Error::Storage)
    }

    /// Reserves a place, or refuses when full.
    fn reserve(&self) -> Result<(), Error> {
        self.len
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| if n < self.max { n.checked_add(1) } else { None })
            .map(|_| ())
            .map_err(|_| Error::CapacityExceeded)
    }

    fn release(&self, n: usize) {
        let _ = self.len.fetch_update(Ordering::AcqRel, Ordering::Acquire, |m| Some(m.saturating_sub(n)));
    }

    /// Inserts if absent: an id already held is never replaced (`Misuse`).
    fn insert(&self, id: SessionId, v: V) -> Result<(), Error> {
        self.reserve()?;
        let r =
            self.shard(&id).and_then(|s| s.write().map_err(|_| Error::Storage)).and_then(|mut s| match s.entry(id) {
                std::collections::hash_map::Entry::Occupied(_) => Err(Error::Misuse),
                std::collections::hash_map::Entry::Vacant(e) => {
                    e.insert(v);
                    Ok(())
                }
            });
        if r.is_err() {
            self.release(1);
        }
        r
    }

    fn remove(&self, id: &SessionId) -> Result<Option<V>, Error> {
        let v = self.shard(id)?.write().map_err(|_| Error::Storage)?.remove(id);
        if v.is_some() {
            self.release(1);
        }
        Ok(v)
    }

    fn retain(&self, mut keep: impl FnMut(&V) -> bool) -> usize {
        let mut dropped = 0usize;
        for s in &self.shards {
            if let Ok(mut s) = s.write() {
                let before = s.len();
                s.retain(|_, v| keep(v));
                dropped = dropped.saturating_add(before.saturating_sub(s.len()));
            }
        }
        self.release(dropped);
        dropped
    }

    fn len(&self) -> usize {
        self.len.load(Ordering::Acquire)
    }
}

/// Sessions in memory: a sharded, bounded map of handles.
pub struct MemorySessions {
    map: Sharded<SessionHandle>,
}

impl core::fmt::Debug for MemorySessions {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("MemorySessions").field("len", &self.map.len()).field("max", &self.map.max).finish()
    }
}

impl MemorySessions {
    /// At most `max` sessions.
    pub fn new(max: usize) -> Self {
        Self { map: Sharded::new(max) }
    }
}

impl SessionStore for MemorySessions {
    async fn insert(&self, id: SessionId, session: Session) -> Result<SessionHandle, Error> {
        let handle = Arc::new(Mutex::new(session));
        self.map.insert(id, handle.clone())?;
        Ok(handle)
    }

    async fn get(&self, id: &SessionId) -> Result<Option<SessionHandle>, Error> {
        Ok(self.map.shard(id)?.read().map_err(|_| Error::Storage)?.get(id).cloned())
    }

    async fn remove(&self, id: &SessionId) -> Result<(), Error> {
        self.map.remove(id).map(|_| ())
    }

    async fn sweep(&self, now_ms: u64) -> usize {
        // A session whose lock is poisoned is dropped too.
        self.map.retain(|s| s.lock().is_ok_and(|s| s.expires_at_ms() >= now_ms))
    }

    fn len(&self) -> usize {
        self.map.len()
    }
}

/// Pending handshakes in memory: sharded and bounded.
pub struct MemoryPending {
    map: Sharded<ServerAwaitFinish>,
}

impl core::fmt::Debug for MemoryPending {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("MemoryPending").field("len", &self.map.len()).field("max", &self.map.max).finish()
    }
}

impl MemoryPending {
    /// At most `max` pending handshakes.
    pub fn new(max: usize) -> Self {
        Self { map: Sharded::new(max) }
    }
}

impl PendingStore for MemoryPending {
    async fn insert(&self, id: SessionId, pending: ServerAwaitFinish) -> Result<(), Error> {
        self.map.insert(id, pending)
    }

    async fn take(&self, id: &SessionId) -> Result<Option<ServerAwaitFinish>, Error> {
        self.map.remove(id)
    }

    async fn sweep(&self, now_ms: u64) -> usize {
        self.map.retain(|p| p.deadline_ms() >= now_ms)
    }

    fn len(&self) -> usize {
        self.map.len()
    }
}

/// The accepted-once sets in memory: one core [`ReplayCache`] per purpose,
/// each behind its own lock, held only to check and record (no
/// cryptography runs under it).
///
/// `N` bounds each set: past it the oldest entry is evicted and the set's
/// floor rises, so an evicted use is refused as stale, never accepted again.
pub struct MemoryOnce<const N: usize = 4096> {
    requests: Box<Mutex<ReplayCache<N>>>,
    proofs: Box<Mutex<ReplayCache<N>>>,
    challenges: Box<Mutex<ReplayCache<N>>>,
}

/// A cache on the heap (the rings are large; built in a frame of its own).
#[inline(never)]
fn boxed_cache<const N: usize>(p: Purpose, f: Freshness) -> Result<Box<Mutex<ReplayCache<N>>>, Error> {
    Ok(Box::new(Mutex::new(ReplayCache::generate(p, &mut OsRng, f)?)))
}

impl<const N: usize> core::fmt::Debug for MemoryOnce<N> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("MemoryOnce").field("capacity", &N).finish_non_exhaustive()
    }
}

impl<const N: usize> MemoryOnce<N> {
    /// Sets with the freshness window of one-shot requests and token proofs,
    /// and that of challenges living `challenge_ttl_ms`.
    ///
    /// # Errors
    /// [`Error::Rng`].
    pub fn new(freshness: Freshness, challenge_ttl_ms: u64) -> Result<Self, Error> {
        Ok(Self {
            requests: boxed_cache(Purpose::Requests, freshness)?,
            proofs: boxed_cache(Purpose::TokenProofs, freshness)?,
            challenges: boxed_cache(Purpose::Challenges, StatelessChallenges::freshness(challenge_ttl_ms))?,
        })
    }

    fn set(&self, p: Purpose) -> &Mutex<ReplayCache<N>> {
        match p {
            Purpose::Requests => &self.requests,
            Purpose::TokenProofs => &self.proofs,
            Purpose::Challenges => &self.challenges,
        }
    }
}

impl<const N: usize> OnceStore for MemoryOnce<N> {
    async fn accept(&self, onces: &[Once], now_ms: u64) -> Result<(), Refusal> {
        // The same use twice in one request is a replay of itself.
        for (i, o) in onces.iter().enumerate() {
            if onces.iter().skip(i.saturating_add(1)).any(|p| p == o) {
                return Err(Refusal { error: Error::Replay, set: Some(o.purpose) });
            }
        }
        // Locks in a fixed order (requests, proofs, challenges), so that two
        // requests never wait on each other.
        let order = [Purpose::Requests, Purpose::TokenProofs, Purpose::Challenges];
        let mut held = Vec::with_capacity(order.len());
        for p in order {
            if onces.iter().any(|o| o.purpose == p) {
                held.push((p, self.set(p).lock().map_err(|_| Error::Storage)?));
            }
        }
        // Check all, then record all.
        let mut failed = None;
        for o in onces {
            let (_, cache) = held.iter().find(|(p, _)| *p == o.purpose).ok_or(Error::Misuse)?;
            if let Err(e) = cache.check_once(o, now_ms) {
                failed = Some((o.purpose, e));
                break;
            }
        }
        if let Some((set, e)) = failed {
            let error = match held.iter_mut().find(|(p, _)| *p == set) {
                Some((_, c)) => c.refuse(e),
                None => e,
            };
            return Err(Refusal { error, set: Some(set) });
        }
        for o in onces {
            if let Some((_, c)) = held.iter_mut().find(|(p, _)| *p == o.purpose) {
                c.accept(o, now_ms).map_err(|error| Refusal { error, set: Some(o.purpose) })?;
            }
        }
        Ok(())
    }

    fn audits(&self) -> Vec<(Purpose, oncewire::Audit)> {
        [Purpose::Requests, Purpose::TokenProofs, Purpose::Challenges]
            .into_iter()
            .filter_map(|p| self.set(p).lock().ok().map(|c| (p, *c.audit())))
            .collect()
    }
}
