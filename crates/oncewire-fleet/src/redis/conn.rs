//! The connection every Redis store of a fleet shares: a
//! [`ConnectionManager`] (one multiplexed connection, reconnected in the
//! background), a key prefix, per-call timeouts and the error mapping.
//!
//! # Failing closed
//!
//! - Every Redis error is [`Error::Storage`] (HTTP 503, `retry-later`); an
//!   out-of-memory refusal (`OOM`, Redis at `maxmemory`) is
//!   [`Error::CapacityExceeded`]. A store that cannot answer refuses; it
//!   never accepts.
//! - Every call is bounded by [`FleetConfig::response_timeout`]: a Redis
//!   that does not answer refuses quickly instead of holding requests.
//!   A call that timed out may still have run on Redis; it was refused here,
//!   so the worst case is a use recorded and refused (the client seals
//!   anew), never a use accepted twice.
//! - Nothing is retried blindly. The connection manager reconnects but does
//!   not resend a failed command; the only resend is `EVALSHA` → `EVAL`
//!   after `NOSCRIPT`, which Redis answers without running anything.
//! - [`Fleet::connect`] refuses a Redis whose `maxmemory-policy` is not
//!   `noeviction`: an evicting Redis forgets what it accepted, and a replay
//!   would pass.
//!
//! # The restart floor
//!
//! When Redis comes back empty (a restart without persistence, a
//! `FLUSHALL`, a fresh fleet), the accepted-once sets are gone, and a
//! one-shot request, token proof or challenge accepted before could be
//! accepted again within its freshness window. The floor closes that gap.
//!
//! A key `{prefix}:floor` holds a time in Unix ms, and never expires. Every
//! accept script reads it first. If it is missing, Redis lost its state (or
//! never had any): the script sets it to `now_ms + skew_ms` (`SET NX`
//! inside the script, so racing servers agree on one value) and checks the
//! use against it. A use of a purpose whose future skew is `f` (its
//! `Freshness::max_future_skew_ms`; a challenge's ttl) is refused, as
//! `Stale` (a challenge as `Expired(Challenge)`), when its timestamp is
//! at or below `floor + f`.
//!
//! Why nothing accepted before the loss is accepted again: a use accepted
//! at time `t_a` (on the clock of the server that accepted it) had a
//! timestamp `ts <= t_a + f` (the window check). The loss came after the
//! accept, and the server that sets the floor does so at its `now_ms`,
//! after the loss; the clocks of two servers differ by at most `skew_ms`
//! ([`FleetConfig::skew_ms`]), so `t_a <= now_ms + skew_ms = floor`, hence
//! `ts <= floor + f`: refused. (This is
//! [`TimeFloor::after_restart`](oncewire::replay::TimeFloor::after_restart)
//! of the core, with the fleet's clock skew added.) A use stamped after the
//! floor cannot have been accepted before the loss.
//!
//! The cost: a fresh (or freshly emptied) fleet refuses the first
//! `skew_ms + f` ms of one-shot requests and token proofs as `Stale`
//! (clients re-seal), and challenges issued before the floor as expired
//! (clients fetch another).
//!
//! **What the floor does not see**: a Redis that comes back with *old*
//! state, floor included (a restart from an RDB snapshot or an AOF with
//! `appendfsync everysec`, a failover to a replica that missed the last
//! writes). Run the fleet's Redis without persistence (`--save ""
//! --appendonly no`: a restart is then empty, and the floor catches it) or
//! with `appendfsync always`, and after any event that may have lost writes
//! while keeping the floor, call [`Fleet::raise_floor`] (or `DEL
//! {prefix}:floor`).
//!
//! # Topology
//!
//! The scripts touch several keys at once: run one Redis primary. On Redis
//! Cluster every key of a fleet must sit in one slot: give a prefix that is
//! a hash tag, such as `{fleet}`.

use core::time::Duration;
use oncewire::Error;
use redis::aio::ConnectionManager;
use redis::{Client, Cmd, FromRedisValue, RedisError, Script, ScriptInvocation};

/// How a [`Fleet`] talks to Redis.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FleetConfig {
    /// The longest one call may take before it is refused with
    /// [`Error::Storage`]. Default 500 ms.
    pub response_timeout: Duration,
    /// The longest a (re)connection attempt may take. Default 500 ms.
    pub connection_timeout: Duration,
    /// Bound on the difference between the clocks of the fleet's servers,
    /// in ms: added to the restart floor and to how long an accepted use
    /// is remembered. Default 5000.
    pub skew_ms: u64,
}

impl FleetConfig {
    /// 500 ms per call and per connection attempt, 5 s of clock skew.
    pub const DEFAULT: Self = Self {
        response_timeout: Duration::from_millis(500),
        connection_timeout: Duration::from_millis(500),
        skew_ms: 5_000,
    };
}

impl Default for FleetConfig {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// A connection to the fleet's Redis and the prefix of every key a store
/// writes. Cheap to clone (the connection is shared).
#[derive(Clone)]
pub struct Fleet {
    conn: ConnectionManager,
    prefix: std::sync::Arc<str>,
    config: FleetConfig,
}

impl core::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Fleet").field("prefix", &self.prefix).field("config", &self.config).finish_non_exhaustive()
    }
}

/// Maps a Redis error onto the core's: `OOM` is
/// [`Error::CapacityExceeded`], everything else [`Error::Storage`].
pub fn map_error(e: &RedisError) -> Error {
    let oom = e.code() == Some("OOM") || e.detail().is_some_and(|d| d.starts_with("OOM ") || d.contains(" OOM "));
    if oom {
        tracing::warn!(error = %e, "redis refused a write: out of memory");
        Error::CapacityExceeded
    } else {
        tracing::warn!(error = %e, "redis call failed");
        Error::Storage
    }
}

/// Raises the floor to at least `ARGV[1]`: KEYS[1] = the floor.
const RAISE_FLOOR: &str = r"
local cur = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
local want = tonumber(ARGV[1])
if want > cur then
  redis.call('SET', KEYS[1], ARGV[1])
  return ARGV[1]
end
return redis.call('GET', KEYS[1])
";

impl Fleet {
    /// Connects with [`FleetConfig::DEFAULT`]. See [`Self::connect_with`].
    ///
    /// # Errors
    /// [`Error::Storage`] (unreachable, or not `noeviction`).
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, Error> {
        Self::connect_with(url, prefix, FleetConfig::DEFAULT).await
    }

    /// Connects to the Redis at `url` (`redis://host:port/db`), checks that
    /// it never evicts (`maxmemory-policy` is `noeviction`), and keys
    /// everything under `prefix` (`{prefix}:…`).
    ///
    /// # Errors
    /// [`Error::Storage`] if Redis does not answer within the timeouts, or
    /// evicts keys; [`Error::Misuse`] for an empty prefix.
    pub async fn connect_with(url: &str, prefix: &str, config: FleetConfig) -> Result<Self, Error> {
        if prefix.is_empty() {
            return Err(Error::Misuse);
        }
        let client = Client::open(url).map_err(|e| map_error(&e))?;
        let manager_config = redis::aio::ConnectionManagerConfig::new()
            .set_response_timeout(Some(config.response_timeout))
            .set_connection_timeout(Some(config.connection_timeout))
            .set_number_of_retries(1);
        let connect = ConnectionManager::new_with_config(client, manager_config);
        // The first connection, bounded as a whole (retries included).
        let bound = config.connection_timeout.saturating_mul(3).saturating_add(config.response_timeout);
        let conn = match tokio::time::timeout(bound, connect).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => return Err(map_error(&e)),
            Err(_) => {
                tracing::warn!("redis did not answer the connection in time");
                return Err(Error::Storage);
            }
        };
        let fleet = Self { conn, prefix: prefix.into(), config };
        let policy: Vec<String> = fleet.query(redis::cmd("CONFIG").arg("GET").arg("maxmemory-policy")).await?;
        if policy.get(1).map(String::as_str) != Some("noeviction") {
            tracing::error!(?policy, "redis evicts keys (maxmemory-policy is not noeviction): refused");
            return Err(Error::Storage);
        }
        Ok(fleet)
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The configuration.
    pub const fn config(&self) -> &FleetConfig {
        &self.config
    }

    /// `{prefix}:{suffix}`.
    pub fn key(&self, suffix: &str) -> String {
        let mut k = String::with_capacity(self.prefix.len().saturating_add(suffix.len()).saturating_add(1));
        k.push_str(&self.prefix);
        k.push(':');
        k.push_str(suffix);
        k
    }

    /// The restart floor's key, `{prefix}:floor` (see the [module docs](self)).
    pub fn floor_key(&self) -> String {
        self.key("floor")
    }

    /// A clone of the connection (a shared handle).
    pub fn connection(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// Runs one command, bounded by the response timeout, errors mapped.
    ///
    /// # Errors
    /// [`Error::Storage`], [`Error::CapacityExceeded`] (`OOM`).
    pub async fn query<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T, Error> {
        let mut conn = self.conn.clone();
        match tokio::time::timeout(self.config.response_timeout, cmd.query_async::<T>(&mut conn)).await {
            Ok(r) => r.map_err(|e| map_error(&e)),
            Err(_) => {
                tracing::warn!("redis did not answer in time");
                Err(Error::Storage)
            }
        }
    }

    /// Runs a script (`EVALSHA`, then `EVAL` after `NOSCRIPT`), bounded by
    /// the response timeout, errors mapped.
    ///
    /// # Errors
    /// [`Error::Storage`], [`Error::CapacityExceeded`] (`OOM`).
    pub async fn invoke<T: FromRedisValue>(&self, script: &ScriptInvocation<'_>) -> Result<T, Error> {
        let mut conn = self.conn.clone();
        match tokio::time::timeout(self.config.response_timeout, script.invoke_async::<T>(&mut conn)).await {
            Ok(r) => r.map_err(|e| map_error(&e)),
            Err(_) => {
                tracing::warn!("redis did not answer a script in time");
                Err(Error::Storage)
            }
        }
    }

    /// Loads `script` into Redis's script cache (so that its first call is
    /// one `EVALSHA`).
    ///
    /// # Errors
    /// [`Error::Storage`].
    pub async fn load(&self, script: &Script) -> Result<(), Error> {
        let mut conn = self.conn.clone();
        match tokio::time::timeout(self.config.response_timeout, script.load_async(&mut conn)).await {
            Ok(r) => r.map(|_| ()).map_err(|e| map_error(&e)),
            Err(_) => Err(Error::Storage),
        }
    }

    /// The restart floor, if set (see the [module docs](self)).
    ///
    /// # Errors
    /// [`Error::Storage`] (also for a floor that is not a number).
    pub async fn floor(&self) -> Result<Option<u64>, Error> {
        let v: Option<String> = self.query(redis::cmd("GET").arg(self.floor_key())).await?;
        v.map(|s| s.parse::<u64>().map_err(|_| Error::Storage)).transpose()
    }

    /// Raises the floor to at least `now_ms + skew_ms`: call it after an
    /// event that may have lost accepted uses while keeping the floor (a
    /// restart from old persistence, a failover to a lagging replica).
    /// Returns the floor now in force.
    ///
    /// # Errors
    /// [`Error::Storage`].
    pub async fn raise_floor(&self, now_ms: u64) -> Result<u64, Error> {
        let want = now_ms.saturating_add(self.config.skew_ms);
        let script = Script::new(RAISE_FLOOR);
        let mut inv = script.prepare_invoke();
        inv.key(self.floor_key()).arg(want.to_string());
        let v: String = self.invoke(&inv).await?;
        v.parse::<u64>().map_err(|_| Error::Storage)
    }

    /// Declares a fleet that has never accepted anything under this prefix:
    /// sets the floor to `floor_ms` if no floor is set (`SET NX`), so that
    /// the first requests are not refused by the floor. Returns whether it
    /// was set.
    ///
    /// **Only** for a prefix known to be new (a fresh deployment, a test):
    /// called after a loss of Redis, it would let what was accepted before
    /// the loss be accepted again. Servers never call it on their own.
    ///
    /// # Errors
    /// [`Error::Storage`].
    pub async fn declare_new_fleet(&self, floor_ms: u64) -> Result<bool, Error> {
        let set: Option<String> =
            self.query(redis::cmd("SET").arg(self.floor_key()).arg(floor_ms.to_string()).arg("NX")).await?;
        Ok(set.is_some())
    }
}
