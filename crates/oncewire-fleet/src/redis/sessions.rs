//! Sessions on Redis, sealed under the fleet key, so that any server can
//! continue a session another server established (`SPEC.md` §17).
//!
//! Per session, two keys (`P` is the [`Fleet`]'s prefix):
//! - `P:s:<id>`, a hash: `blob` (the session's exported state, sealed
//!   under the fleet key: [`crate::seal::FleetKeys`]), `gen` (the
//!   receiving key generation the blob is at) and `ctr` (the next send
//!   sequence number not yet reserved by any server);
//! - `P:w:<id>`, a sorted set: the sequence numbers accepted under
//!   generation `gen`, trimmed to the core's window
//!   ([`CounterWindow::WINDOW`]).
//!
//! And `P:sessions`, a sorted set of every session id by expiry, which
//! bounds the store and lets [`SessionStore::sweep`] find what expired.
//!
//! # The hot path: one round trip
//!
//! A server keeps the sessions it has seen in memory, so a sealed request
//! costs one `EVALSHA`: the accept script checks the generation, checks
//! and records the sequence number in the window, and, when this server's
//! grant of send sequence numbers is used up or old, reserves the next
//! block with `HINCRBY` in the same script. Only a reply larger than its
//! grant's share of AES blocks, or a frame that fails under a stale copy
//! (another server applied a key update), costs a second.
//!
//! # Failing closed
//!
//! Every Redis error or timeout refuses the request with
//! [`Error::Storage`] (503, retry later), before anything is accepted. When
//! Redis comes back empty, the session hash is gone: the accept script
//! answers "unknown", the server forgets its cached copy, and the client
//! re-handshakes ([`Error::UnknownSession`], 401). Nothing accepted before
//! the loss can be accepted again: a new session has new keys.

use crate::redis::conn::Fleet;
use crate::seal::FleetKeys;
use oncewire::replay::CounterWindow;
use oncewire::{Error, Expiry, Limits, SESSION_STATE_LEN, SeqUse};
use oncewire_http::provider::Session;
use oncewire_http::store::{SessionHandle, SessionId, SessionStore};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

/// Send sequence numbers a server reserves at a time.
pub const DEFAULT_SEND_BLOCK: u64 = 16;

/// A grant older than this is given up at the next request, so that the
/// numbers servers seal under stay close together: the client's window
/// takes them out of order, within [`CounterWindow::WINDOW`] (`SPEC.md`
/// §17.3).
pub const DEFAULT_GRANT_AGE: Duration = Duration::from_secs(1);

const LABEL: &[u8] = b"session";

/// The accept script. KEYS: the session hash, its window. ARGV: the
/// generation the frame opened under, its sequence number, 1 for a key
/// update, the window width, how many send numbers to reserve (0 for
/// none), the key update's new sealed blob.
/// Returns `{status, first}`: 0 accepted (`first` the first reserved
/// number, or -1), -1 unknown session, -2 another generation, -3 replay,
/// -4 below the window.
const ACCEPT: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return {-1, -1} end
local gen = tonumber(redis.call('HGET', KEYS[1], 'gen'))
if gen ~= tonumber(ARGV[1]) then return {-2, -1} end
local seq = tonumber(ARGV[2])
if redis.call('ZSCORE', KEYS[2], ARGV[2]) then return {-3, -1} end
local width = tonumber(ARGV[4])
local top = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
local high = seq
if #top > 0 then
  local t = tonumber(top[2])
  if t >= seq and t - seq >= width then return {-4, -1} end
  if t > high then high = t end
end
local first = -1
local n = tonumber(ARGV[5])
if n > 0 then first = redis.call('HINCRBY', KEYS[1], 'ctr', n) - n end
if ARGV[3] == '1' then
  redis.call('HSET', KEYS[1], 'gen', gen + 1, 'blob', ARGV[6])
  redis.call('DEL', KEYS[2])
else
  redis.call('ZADD', KEYS[2], seq, ARGV[2])
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. (high - width + 1))
  redis.call('PEXPIRE', KEYS[2], redis.call('PTTL', KEYS[1]))
end
return {0, first}
";

/// The reserve script. KEYS: the session hash. ARGV: how many.
/// Returns the first reserved number, or -1 for an unknown session.
const RESERVE: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local n = tonumber(ARGV[1])
return redis.call('HINCRBY', KEYS[1], 'ctr', n) - n
";

/// The insert script. KEYS: the session hash, the index. ARGV: the id,
/// its expiry, the sealed blob, the generation, the key TTL in ms, the
/// capacity. Returns the count held, -1 if full, -2 if the id is held.
const INSERT: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 or redis.call('ZSCORE', KEYS[2], ARGV[1]) then return -2 end
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[6]) then return -1 end
redis.call('HSET', KEYS[1], 'blob', ARGV[3], 'gen', ARGV[4], 'ctr', 0)
redis.call('PEXPIRE', KEYS[1], ARGV[5])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
return redis.call('ZCARD', KEYS[2])
";

/// The remove script. KEYS: the hash, the window, the index. ARGV: the id.
/// Returns the count held.
const REMOVE: &str = r"
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('ZREM', KEYS[3], ARGV[1])
return redis.call('ZCARD', KEYS[3])
";

/// One session this server has seen, and when its send grant was made.
struct Cached {
    handle: SessionHandle,
    granted_at: Mutex<Option<Instant>>,
}

/// Sessions on Redis, with a cache of those this server has seen. See the
/// [module docs](self).
pub struct RedisSessions {
    fleet: Fleet,
    keys: Arc<FleetKeys>,
    limits: Limits,
    capacity: usize,
    block: u64,
    grant_age: Duration,
    cache: RwLock<HashMap<SessionId, Arc<Cached>>>,
    len: AtomicUsize,
    round_trips: AtomicU64,
    accept: redis::Script,
    reserve: redis::Script,
    insert: redis::Script,
    remove: redis::Script,
}

impl core::fmt::Debug for RedisSessions {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RedisSessions")
            .field("prefix", &self.fleet.prefix())
            .field("capacity", &self.capacity)
            .field("len", &self.len.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

fn hex(id: &SessionId) -> String {
    let mut out = String::with_capacity(id.len().saturating_mul(2));
    super::once::push_hex(&mut out, id);
    out
}

impl RedisSessions {
    /// A store on `fleet` (its connection, prefix and timeouts), sealing sessions
    /// under `keys`, importing them under this server's `limits` (those the
    /// backend's handshakes use), holding at most `capacity` sessions
    /// fleet-wide.
    pub fn new(fleet: Fleet, keys: Arc<FleetKeys>, limits: Limits, capacity: usize) -> Self {
        Self {
            fleet,
            keys,
            limits,
            capacity,
            block: DEFAULT_SEND_BLOCK,
            grant_age: DEFAULT_GRANT_AGE,
            cache: RwLock::new(HashMap::new()),
            len: AtomicUsize::new(0),
            round_trips: AtomicU64::new(0),
            accept: redis::Script::new(ACCEPT),
            reserve: redis::Script::new(RESERVE),
            insert: redis::Script::new(INSERT),
            remove: redis::Script::new(REMOVE),
        }
    }

    /// Reserves `block` send numbers at a time (default
    /// [`DEFAULT_SEND_BLOCK`]).
    #[must_use]
    pub fn with_send_block(mut self, block: u64) -> Self {
        self.block = block.max(1);
        self
    }

    /// Gives up a grant older than `age` (default [`DEFAULT_GRANT_AGE`]).
    #[must_use]
    pub fn with_grant_age(mut self, age: Duration) -> Self {
        self.grant_age = age;
        self
    }

    /// Redis round trips this store made (each script call or command is
    /// one), for the load generator's per-request figure.
    pub fn round_trips(&self) -> u64 {
        self.round_trips.load(Ordering::Relaxed)
    }

    /// Sessions this server holds in memory.
    pub fn cached(&self) -> usize {
        self.cache.read().map_or(0, |c| c.len())
    }

    /// Forgets this server's cached copies (as a restarted server would):
    /// the next request for each fetches it from Redis.
    pub fn forget_cache(&self) {
        if let Ok(mut c) = self.cache.write() {
            c.clear();
        }
    }

    fn hash_key(&self, id: &SessionId) -> String {
        self.fleet.key(&format!("s:{}", hex(id)))
    }

    fn window_key(&self, id: &SessionId) -> String {
        self.fleet.key(&format!("w:{}", hex(id)))
    }

    fn index_key(&self) -> String {
        self.fleet.key("sessions")
    }

    async fn run<T: redis::FromRedisValue>(&self, inv: redis::ScriptInvocation<'_>) -> Result<T, Error> {
        self.round_trips.fetch_add(1, Ordering::Relaxed);
        self.fleet.invoke(&inv).await
    }

    async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, Error> {
        self.round_trips.fetch_add(1, Ordering::Relaxed);
        self.fleet.query(cmd).await
    }

    fn seal(&self, id: &SessionId, session: &Session, after: Option<SeqUse>) -> Result<Vec<u8>, Error> {
        let mut state = Zeroizing::new([0u8; SESSION_STATE_LEN]);
        session.export(after, &mut state)?;
        self.keys.seal(LABEL, id, &state[..])
    }

    fn open(&self, id: &SessionId, blob: &[u8], gen_: u32) -> Result<Session, Error> {
        let plain = self.keys.open(LABEL, id, blob)?;
        let state: &[u8; SESSION_STATE_LEN] = plain.as_slice().try_into().map_err(|_| Error::Decode)?;
        let session = Session::import(state, self.limits)?;
        // The blob and the generation are written together; a mismatch is corruption.
        if session.generations().1 != gen_ || session.session_id() != id {
            return Err(Error::Decode);
        }
        Ok(session)
    }

    fn cached_entry(&self, id: &SessionId) -> Option<Arc<Cached>> {
        self.cache.read().ok()?.get(id).cloned()
    }

    fn cache_put(&self, id: SessionId, session: Session) -> Result<SessionHandle, Error> {
        let handle = Arc::new(Mutex::new(session));
        let entry = Arc::new(Cached { handle: handle.clone(), granted_at: Mutex::new(None) });
        let mut c = self.cache.write().map_err(|_| Error::Storage)?;
        // A cache, not the store: when full, forget one (it is fetched again).
        if c.len() >= self.capacity.max(1) && !c.contains_key(&id) {
            if let Some(k) = c.keys().next().copied() {
                c.remove(&k);
            }
        }
        c.insert(id, entry);
        Ok(handle)
    }

    fn forget(&self, id: &SessionId) {
        if let Ok(mut c) = self.cache.write() {
            c.remove(id);
        }
    }

    /// Fetches `id` from Redis into the cache.
    async fn fetch(&self, id: &SessionId) -> Result<Option<SessionHandle>, Error> {
        let cmd = redis::cmd("HMGET").arg(self.hash_key(id)).arg("blob").arg("gen").to_owned();
        let (blob, gen_): (Option<Vec<u8>>, Option<u32>) = self.query(&cmd).await?;
        let (Some(blob), Some(gen_)) = (blob, gen_) else {
            self.forget(id);
            return Ok(None);
        };
        let session = self.open(id, &blob, gen_)?;
        self.cache_put(*id, session).map(Some)
    }

    /// How many send numbers to reserve with this request, if any.
    fn to_reserve(&self, entry: &Cached, payload_len: usize) -> Result<u64, Error> {
        let needed = entry.handle.lock().map_err(|_| Error::Storage)?.sends_needed(payload_len);
        let old = entry.granted_at.lock().map_err(|_| Error::Storage)?.is_none_or(|t| t.elapsed() >= self.grant_age);
        Ok(if needed > 0 || old { needed.max(self.block) } else { 0 })
    }

    fn grant(&self, entry: &Cached, first: i64, count: u64) -> Result<(), Error> {
        let first = u64::try_from(first).map_err(|_| Error::Storage)?;
        let granted = entry.handle.lock().map_err(|_| Error::Storage)?.grant_sends(first, count);
        match granted {
            Ok(()) => {
                *entry.granted_at.lock().map_err(|_| Error::Storage)? = Some(Instant::now());
                Ok(())
            }
            // The key's record limit: the session is over (re-handshake).
            Err(Error::KeyExhausted) => Err(Error::Expired(Expiry::Session)),
            Err(e) => Err(e),
        }
    }

    fn entry_for(&self, id: &SessionId, handle: &SessionHandle) -> Arc<Cached> {
        match self.cached_entry(id) {
            Some(e) if Arc::ptr_eq(&e.handle, handle) => e,
            // A handle the cache no longer holds (evicted): track it alone.
            _ => Arc::new(Cached { handle: handle.clone(), granted_at: Mutex::new(None) }),
        }
    }
}

impl SessionStore for RedisSessions {
    async fn insert(&self, id: SessionId, mut session: Session) -> Result<SessionHandle, Error> {
        // From now on this server too seals only under reserved numbers.
        session.hold_sends();
        let blob = self.seal(&id, &session, None)?;
        // The keys outlive the session by a minute at most; sweeping removes them on time.
        let ttl = self.limits.lifetime_ms.saturating_add(60_000);
        let mut inv = self.insert.prepare_invoke();
        inv.key(self.hash_key(&id))
            .key(self.index_key())
            .arg(&id[..])
            .arg(session.expires_at_ms())
            .arg(blob)
            .arg(session.generations().1)
            .arg(ttl)
            .arg(self.capacity);
        let n: i64 = self.run(inv).await?;
        match n {
            -1 => Err(Error::CapacityExceeded),
            -2 => Err(Error::Misuse),
            n => {
                // Inserts racing each other answer in any order: keep the largest count.
                self.len.fetch_max(usize::try_from(n).unwrap_or(usize::MAX), Ordering::Relaxed);
                self.cache_put(id, session)
            }
        }
    }

    async fn get(&self, id: &SessionId) -> Result<Option<SessionHandle>, Error> {
        if let Some(e) = self.cached_entry(id) {
            return Ok(Some(e.handle.clone()));
        }
        self.fetch(id).await
    }

    async fn remove(&self, id: &SessionId) -> Result<(), Error> {
        self.forget(id);
        let mut inv = self.remove.prepare_invoke();
        inv.key(self.hash_key(id)).key(self.window_key(id)).key(self.index_key()).arg(&id[..]);
        let n: i64 = self.run(inv).await?;
        self.len.store(usize::try_from(n).unwrap_or(0), Ordering::Relaxed);
        Ok(())
    }

    async fn commit(&self, id: &SessionId, handle: &SessionHandle, used: SeqUse) -> Result<(), Error> {
        let entry = self.entry_for(id, handle);
        let reserve = if used.key_update { 0 } else { self.to_reserve(&entry, 0)? };
        let blob = if used.key_update {
            let s = handle.lock().map_err(|_| Error::Storage)?;
            self.seal(id, &s, Some(used))?
        } else {
            Vec::new()
        };
        let mut inv = self.accept.prepare_invoke();
        inv.key(self.hash_key(id))
            .key(self.window_key(id))
            .arg(used.generation)
            .arg(used.seq)
            .arg(u8::from(used.key_update))
            .arg(CounterWindow::<32>::WINDOW)
            .arg(reserve)
            .arg(blob);
        let (status, first): (i64, i64) = self.run(inv).await?;
        match status {
            0 => {}
            -1 => {
                // Gone from Redis (expired, removed, or Redis came back empty).
                self.forget(id);
                return Err(Error::UnknownSession);
            }
            -2 => return Err(Error::Stale),
            -3 => return Err(Error::Replay),
            _ => return Err(Error::Stale),
        }
        // Accepted fleet-wide; now here.
        handle.lock().map_err(|_| Error::Storage)?.commit(used)?;
        if reserve > 0 {
            self.grant(&entry, first, reserve)?;
        }
        Ok(())
    }

    async fn reserve(&self, id: &SessionId, handle: &SessionHandle, payload_len: usize) -> Result<(), Error> {
        let entry = self.entry_for(id, handle);
        let needed = handle.lock().map_err(|_| Error::Storage)?.sends_needed(payload_len);
        if needed == 0 {
            return Ok(());
        }
        let count = needed.max(self.block);
        let mut inv = self.reserve.prepare_invoke();
        inv.key(self.hash_key(id)).arg(count);
        let first: i64 = self.run(inv).await?;
        if first < 0 {
            self.forget(id);
            return Err(Error::UnknownSession);
        }
        self.grant(&entry, first, count)
    }

    async fn refresh(&self, id: &SessionId, stale: &SessionHandle) -> Result<Option<SessionHandle>, Error> {
        let cmd = redis::cmd("HGET").arg(self.hash_key(id)).arg("gen").to_owned();
        let gen_: Option<u32> = self.query(&cmd).await?;
        let local = stale.lock().map_err(|_| Error::Storage)?.generations().1;
        match gen_ {
            Some(g) if g != local => self.fetch(id).await,
            _ => Ok(None),
        }
    }

    async fn sweep(&self, now_ms: u64) -> usize {
        // Sessions expired at `now_ms`: expiry strictly before it.
        let cmd = redis::cmd("ZRANGEBYSCORE").arg(self.index_key()).arg("-inf").arg(format!("({now_ms}")).to_owned();
        let Ok(expired) = self.query::<Vec<Vec<u8>>>(&cmd).await else {
            return 0;
        };
        let mut n: usize = 0;
        for raw in expired {
            let Ok(id) = SessionId::try_from(raw.as_slice()) else {
                continue;
            };
            if self.remove(&id).await.is_ok() {
                n = n.saturating_add(1);
            }
        }
        n
    }

    /// The fleet-wide count as Redis last reported it to this server
    /// (exact when this server is the only writer; otherwise as of its last
    /// insert, removal or sweep).
    fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }
}
