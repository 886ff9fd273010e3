//! Pending handshakes (between message 2 and message 3) on Redis, so that
//! message 3 may reach any server of the fleet.
//!
//! - The value is the core's exported state
//!   ([`ServerAwaitFinish::export`]) sealed under the fleet key
//!   ([`FleetKeys`], label `"pending"`, bound to the session id): Redis
//!   never sees the handshake's secrets, and a blob moved under another id
//!   does not open.
//! - Keys: `{prefix}:p:{hex id}` holds the blob; the sorted set
//!   `{prefix}:p:idx` holds the ids by deadline (for the bound and for
//!   [`PendingStore::sweep`]); `{prefix}:p:ver` counts changes.
//! - **Insert** is one script: an id held is never replaced (`Misuse`); a
//!   full store first forgets the ids whose blob Redis already expired, then
//!   refuses (`CapacityExceeded`); else `SET … PX` and `ZADD`. The blob
//!   expires on Redis's clock after the handshake timeout of the store's
//!   [`Limits`] plus the fleet's clock skew, so a store no server sweeps
//!   does not grow; sweeps drop handshakes past their deadline earlier.
//! - **Take** is one script, `GET` then `DEL` (atomic, as `GETDEL`): a
//!   pending handshake is taken once fleet-wide, even when two servers race
//!   for it. A blob that does not open (sealed under a fleet key this server
//!   lacks, or moved under another id) is gone all the same, and refused
//!   with [`Error::Storage`] (logged): the client handshakes again.
//! - A full store forgets, before refusing, the ids whose blob Redis
//!   already expired (looking at the 256 earliest deadlines): a server that
//!   died between message 2 and message 3 does not hold a place for good.
//! - **`len()`** is synchronous in the trait: it is the count Redis gave
//!   with this store's latest reply (each script returns it with a change
//!   counter, and a reply never overwrites a newer one). Exact for one
//!   server; across a fleet, other servers' inserts and takes show at this
//!   server's next call.
//!
//! The bound (`capacity`) is the fleet's, not one server's. Single Redis
//! primary (the scripts touch several keys; on Redis Cluster give the
//! fleet a hash-tag prefix).

use super::conn::Fleet;
use super::once::push_hex;
use crate::seal::FleetKeys;
use oncewire::handshake::PENDING_STATE_LEN;
use oncewire::{Error, Limits};
use oncewire_http::provider::ServerAwaitFinish;
use oncewire_http::store::{PendingStore, SessionId};
use redis::Script;
use std::sync::{Arc, Mutex};
use zeroize::Zeroizing;

const LABEL: &[u8] = b"pending";

/// KEYS: blob, idx, ver. ARGV: blob, px, deadline, capacity, member, the
/// blob key's prefix. Returns {code, count, version}: 0 stored, 1 held
/// (`Misuse`), 2 full.
const INSERT: &str = r"
local function ver() return tonumber(redis.call('GET', KEYS[3]) or '0') end
if redis.call('EXISTS', KEYS[1]) == 1 then
  return {1, redis.call('ZCARD', KEYS[2]), ver()}
end
if not redis.call('ZSCORE', KEYS[2], ARGV[5]) then
  local cap = tonumber(ARGV[4])
  if redis.call('ZCARD', KEYS[2]) >= cap then
    local changed = false
    for _, m in ipairs(redis.call('ZRANGE', KEYS[2], 0, 255)) do
      if redis.call('EXISTS', ARGV[6] .. m) == 0 then
        redis.call('ZREM', KEYS[2], m)
        changed = true
      end
    end
    local v = changed and redis.call('INCR', KEYS[3]) or ver()
    local n = redis.call('ZCARD', KEYS[2])
    if n >= cap then return {2, n, v} end
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[5])
local v = redis.call('INCR', KEYS[3])
return {0, redis.call('ZCARD', KEYS[2]), v}
";

/// KEYS: blob, idx, ver. ARGV: member. Returns {blob or false, count, version}.
const TAKE: &str = r"
local blob = redis.call('GET', KEYS[1])
if blob then redis.call('DEL', KEYS[1]) end
local removed = redis.call('ZREM', KEYS[2], ARGV[1])
local v
if blob or removed == 1 then v = redis.call('INCR', KEYS[3]) else v = tonumber(redis.call('GET', KEYS[3]) or '0') end
return {blob, redis.call('ZCARD', KEYS[2]), v}
";

/// KEYS: idx, ver. ARGV: now, the blob key's prefix, batch. Returns
/// {dropped, count, version}: the ids whose deadline is before `now`.
const SWEEP: &str = r"
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
for _, m in ipairs(ids) do
  redis.call('DEL', ARGV[2] .. m)
  redis.call('ZREM', KEYS[1], m)
end
local v
if #ids > 0 then v = redis.call('INCR', KEYS[2]) else v = tonumber(redis.call('GET', KEYS[2]) or '0') end
return {#ids, redis.call('ZCARD', KEYS[1]), v}
";

/// Ids swept per script call (a sweep loops; each call holds Redis briefly).
const SWEEP_BATCH: usize = 1024;

/// Pending handshakes of a fleet, on Redis. See the [module docs](self).
pub struct RedisPending {
    fleet: Fleet,
    keys: Arc<FleetKeys>,
    limits: Limits,
    capacity: usize,
    blob_prefix: String,
    idx: String,
    ver: String,
    insert: Script,
    take: Script,
    sweep: Script,
    /// (change counter, count) of the newest reply seen.
    seen: Mutex<(u64, usize)>,
}

impl core::fmt::Debug for RedisPending {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RedisPending")
            .field("fleet", &self.fleet)
            .field("capacity", &self.capacity)
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

impl RedisPending {
    /// At most `capacity` pending handshakes in the fleet, sealed under
    /// `keys`, read back under `limits` (the servers' handshake timeout and
    /// session limits: [`ServerAwaitFinish::import`]). Loads the scripts.
    ///
    /// # Errors
    /// [`Error::Storage`].
    pub async fn new(fleet: Fleet, keys: Arc<FleetKeys>, capacity: usize, limits: Limits) -> Result<Self, Error> {
        let (insert, take, sweep) = (Script::new(INSERT), Script::new(TAKE), Script::new(SWEEP));
        for s in [&insert, &take, &sweep] {
            fleet.load(s).await?;
        }
        let store = Self {
            blob_prefix: fleet.key("p:"),
            idx: fleet.key("p:idx"),
            ver: fleet.key("p:ver"),
            fleet,
            keys,
            limits,
            capacity,
            insert,
            take,
            sweep,
            seen: Mutex::new((0, 0)),
        };
        store.refresh().await?;
        Ok(store)
    }

    /// Connects ([`Fleet::connect`]) and makes the store ([`Self::new`]).
    ///
    /// # Errors
    /// [`Error::Storage`].
    pub async fn connect(
        url: &str,
        prefix: &str,
        keys: Arc<FleetKeys>,
        capacity: usize,
        limits: Limits,
    ) -> Result<Self, Error> {
        Self::new(Fleet::connect(url, prefix).await?, keys, capacity, limits).await
    }

    /// The connection and prefix.
    pub const fn fleet(&self) -> &Fleet {
        &self.fleet
    }

    /// Reads the count from Redis (what [`PendingStore::len`] returns until
    /// the next reply).
    ///
    /// # Errors
    /// [`Error::Storage`].
    pub async fn refresh(&self) -> Result<usize, Error> {
        let mut pipe = redis::pipe();
        pipe.cmd("GET").arg(&self.ver).cmd("ZCARD").arg(&self.idx);
        let mut conn = self.fleet.connection();
        let timeout = self.fleet.config().response_timeout;
        let (v, n): (Option<u64>, u64) = match tokio::time::timeout(timeout, pipe.query_async(&mut conn)).await {
            Ok(r) => r.map_err(|e| super::conn::map_error(&e))?,
            Err(_) => return Err(Error::Storage),
        };
        self.saw(v.unwrap_or(0), n);
        Ok(self.len())
    }

    fn blob_key(&self, id: &SessionId) -> String {
        let mut k = self.blob_prefix.clone();
        push_hex(&mut k, id);
        k
    }

    fn member(id: &SessionId) -> String {
        let mut m = String::with_capacity(16);
        push_hex(&mut m, id);
        m
    }

    /// Keeps the count of the newest reply (by change counter).
    fn saw(&self, version: u64, count: u64) {
        let count = usize::try_from(count).unwrap_or(usize::MAX);
        if let Ok(mut s) = self.seen.lock() {
            if version >= s.0 {
                *s = (version, count);
            }
        }
    }
}

impl PendingStore for RedisPending {
    async fn insert(&self, id: SessionId, pending: ServerAwaitFinish) -> Result<(), Error> {
        if pending.session_id() != &id {
            return Err(Error::Misuse);
        }
        let mut state = Zeroizing::new([0u8; PENDING_STATE_LEN]);
        pending.export(&mut state)?;
        let blob = self.keys.seal(LABEL, &id, state.as_slice())?;
        let px = self.limits.handshake_timeout_ms.saturating_add(self.fleet.config().skew_ms).max(1);
        let mut inv = self.insert.prepare_invoke();
        inv.key(self.blob_key(&id))
            .key(&self.idx)
            .key(&self.ver)
            .arg(blob)
            .arg(px.to_string())
            .arg(pending.deadline_ms().to_string())
            .arg(self.capacity.to_string())
            .arg(Self::member(&id))
            .arg(&self.blob_prefix);
        let (code, count, version): (i64, u64, u64) = self.fleet.invoke(&inv).await?;
        self.saw(version, count);
        match code {
            0 => Ok(()),
            1 => Err(Error::Misuse),
            2 => Err(Error::CapacityExceeded),
            _ => Err(Error::Storage),
        }
    }

    async fn take(&self, id: &SessionId) -> Result<Option<ServerAwaitFinish>, Error> {
        let mut inv = self.take.prepare_invoke();
        inv.key(self.blob_key(id)).key(&self.idx).key(&self.ver).arg(Self::member(id));
        let (blob, count, version): (Option<Vec<u8>>, u64, u64) = self.fleet.invoke(&inv).await?;
        self.saw(version, count);
        let Some(blob) = blob.map(Zeroizing::new) else {
            return Ok(None);
        };
        let plain = self.keys.open(LABEL, id, &blob).map_err(|e| {
            tracing::warn!(error = ?e, "a pending handshake did not open under the fleet keys (another fleet key?)");
            Error::Storage
        })?;
        let state: Zeroizing<[u8; PENDING_STATE_LEN]> =
            Zeroizing::new(plain.as_slice().try_into().map_err(|_| Error::Storage)?);
        let pending = ServerAwaitFinish::import(&state, self.limits).map_err(|_| Error::Storage)?;
        if pending.session_id() != id {
            return Err(Error::Storage);
        }
        Ok(Some(pending))
    }

    async fn sweep(&self, now_ms: u64) -> usize {
        let mut dropped = 0usize;
        // Bounded: at most as many rounds as the store can hold batches.
        let rounds = self.capacity.checked_div(SWEEP_BATCH).unwrap_or(0).saturating_add(1);
        for _ in 0..rounds {
            let mut inv = self.sweep.prepare_invoke();
            inv.key(&self.idx).key(&self.ver).arg(now_ms.to_string()).arg(&self.blob_prefix).arg(SWEEP_BATCH);
            match self.fleet.invoke::<(u64, u64, u64)>(&inv).await {
                Ok((n, count, version)) => {
                    self.saw(version, count);
                    let n = usize::try_from(n).unwrap_or(usize::MAX);
                    dropped = dropped.saturating_add(n);
                    if n < SWEEP_BATCH {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
        dropped
    }

    fn len(&self) -> usize {
        self.seen.lock().map_or(0, |s| s.1)
    }
}
