//! The accepted-once sets (one-shot requests, token proofs, used
//! challenges) on Redis, shared by every server of a fleet.
//!
//! One [`OnceStore::accept`] is **one** `EVALSHA` of one Lua script, which
//! Redis runs atomically:
//!
//! 1. the restart floor (see [`super::conn`]): read `{prefix}:floor`, or set
//!    it if Redis lost it;
//! 2. each use in order, as [`oncewire_http::store::MemoryOnce`] checks it
//!    ([`ReplayCache::check_once`](oncewire::cache::ReplayCache::check_once)):
//!    at or below the floor → `Stale`, outside its window → `Stale` /
//!    `FromFuture`, already held → `Replay`; for a challenge every
//!    failure but `Replay` is `Expired(Challenge)`; the first failure
//!    refuses the request, naming its set;
//! 3. only if all passed, `SET` each key with `PX` = how long it must be
//!    remembered: all the parts of one request or none.
//!
//! Redis refuses a script for lack of memory at its first write, never
//! halfway through, so an `OOM` (→ [`Error::CapacityExceeded`]) records
//! nothing. The same use twice in one request is refused as a replay of
//! itself before Redis is asked.
//!
//! Keys: `{prefix}:o:{req|proof|chal}:{hex of the id}`. A key lives for the
//! rest of its use's window plus the fleet's clock skew
//! ([`FleetConfig::skew_ms`](super::conn::FleetConfig::skew_ms)), then
//! expires: past its window the use is refused as `Stale` (or
//! `Expired(Challenge)`) by the window check, whichever server's clock
//! (within the skew) decides.
//!
//! Single Redis primary: the script touches several keys (on Redis Cluster,
//! give the fleet a hash-tag prefix so that they share one slot).

use super::conn::Fleet;
use oncewire::Error;
use oncewire::Expiry;
use oncewire::cache::{Once, Purpose};
use oncewire_http::provider::StatelessChallenges;

use oncewire::replay::Freshness;
use oncewire_http::store::{OnceStore, Refusal};
use redis::Script;

/// KEYS[1] = the floor, KEYS[1 + i] = use i. ARGV[1] = the floor to set if
/// missing; then, per use, 3 args: its timestamp less its purpose's future
/// skew (saturating), its window verdict ("" fresh, "S" stale, "F" from
/// the future), its PX.
///
/// Returns {code, i}: 0 accepted; -1 floor unreadable; 1 at or below the
/// floor; 2 stale; 3 from the future; 4 replay (i = the use, 1-based).
const ACCEPT: &str = r"
local floor = redis.call('GET', KEYS[1])
if not floor then
  redis.call('SET', KEYS[1], ARGV[1], 'NX')
  floor = redis.call('GET', KEYS[1])
end
floor = tonumber(floor)
if floor == nil then return {-1, 0} end
local n = #KEYS - 1
for i = 1, n do
  local b = 1 + (i - 1) * 3
  local adj = tonumber(ARGV[b + 1])
  if adj == nil or adj <= floor then return {1, i} end
  local verdict = ARGV[b + 2]
  if verdict == 'S' then return {2, i} end
  if verdict == 'F' then return {3, i} end
  if redis.call('EXISTS', KEYS[i + 1]) == 1 then return {4, i} end
end
for i = 1, n do
  redis.call('SET', KEYS[i + 1], '1', 'PX', ARGV[1 + (i - 1) * 3 + 3])
end
return {0, 0}
";

/// The accepted-once sets of a fleet, on Redis. See the [module docs](self).
pub struct RedisOnce {
    fleet: Fleet,
    freshness: Freshness,
    challenges: Freshness,
    script: Script,
    keys: [String; 3],
}

impl core::fmt::Debug for RedisOnce {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RedisOnce")
            .field("fleet", &self.fleet)
            .field("freshness", &self.freshness)
            .field("challenges", &self.challenges)
            .finish_non_exhaustive()
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Appends the lower-case hex of `bytes` to `out`.
pub(crate) fn push_hex(out: &mut String, bytes: &[u8]) {
    for b in bytes {
        for nibble in [b >> 4, b & 0x0f] {
            if let Some(&c) = HEX.get(usize::from(nibble)) {
                out.push(char::from(c));
            }
        }
    }
}

impl RedisOnce {
    /// The sets, with the windows of
    /// [`MemoryOnce::new`](oncewire_http::store::MemoryOnce::new):
    /// `freshness` for one-shot requests and token proofs, challenges
    /// living `challenge_ttl_ms`. Loads the script, so that each accept is
    /// one `EVALSHA`.
    ///
    /// # Errors
    /// [`Error::Storage`].
    pub async fn new(fleet: Fleet, freshness: Freshness, challenge_ttl_ms: u64) -> Result<Self, Error> {
        let script = Script::new(ACCEPT);
        fleet.load(&script).await?;
        let keys = [fleet.key("o:req:"), fleet.key("o:proof:"), fleet.key("o:chal:")];
        Ok(Self { fleet, freshness, challenges: StatelessChallenges::freshness(challenge_ttl_ms), script, keys })
    }

    /// Connects ([`Fleet::connect`]) and makes the sets ([`Self::new`]).
    ///
    /// # Errors
    /// [`Error::Storage`].
    pub async fn connect(url: &str, prefix: &str, freshness: Freshness, challenge_ttl_ms: u64) -> Result<Self, Error> {
        Self::new(Fleet::connect(url, prefix).await?, freshness, challenge_ttl_ms).await
    }

    /// The connection and prefix.
    pub const fn fleet(&self) -> &Fleet {
        &self.fleet
    }

    /// The window of `purpose`.
    pub const fn window(&self, purpose: Purpose) -> Freshness {
        match purpose {
            Purpose::Requests | Purpose::TokenProofs => self.freshness,
            Purpose::Challenges => self.challenges,
        }
    }

    /// The key `once` is recorded under.
    pub fn key(&self, once: &Once) -> String {
        let base = match once.purpose {
            Purpose::Requests => &self.keys[0],
            Purpose::TokenProofs => &self.keys[1],
            Purpose::Challenges => &self.keys[2],
        };
        let mut k = String::with_capacity(base.len().saturating_add(once.id.len().saturating_mul(2)));
        k.push_str(base);
        push_hex(&mut k, &once.id);
        k
    }
}

/// How `e`, met by a use of `purpose`, is reported (a challenge's every
/// failure but `Replay` is `Expired(Challenge)`).
fn named(purpose: Purpose, e: Error) -> Refusal {
    let error =
        if purpose == Purpose::Challenges && e != Error::Replay { Error::Expired(Expiry::Challenge) } else { e };
    Refusal { error, set: Some(purpose) }
}

impl OnceStore for RedisOnce {
    async fn accept(&self, onces: &[Once], now_ms: u64) -> Result<(), Refusal> {
        // The same use twice in one request is a replay of itself.
        for (i, o) in onces.iter().enumerate() {
            if onces.iter().skip(i.saturating_add(1)).any(|p| p == o) {
                return Err(Refusal { error: Error::Replay, set: Some(o.purpose) });
            }
        }
        if onces.is_empty() {
            return Ok(());
        }
        let skew = self.fleet.config().skew_ms;
        let mut inv = self.script.prepare_invoke();
        inv.key(self.fleet.floor_key()).arg(now_ms.saturating_add(skew).to_string());
        for o in onces {
            let w = self.window(o.purpose);
            let verdict = match w.check(o.timestamp_ms, now_ms) {
                Ok(()) => "",
                Err(Error::FromFuture) => "F",
                Err(_) => "S",
            };
            // Remembered while the use is in its window on any server:
            // until `ts + max_age` on a clock up to `skew` behind, +1 ms.
            let px = o
                .timestamp_ms
                .saturating_add(w.max_age_ms)
                .saturating_sub(now_ms)
                .saturating_add(skew)
                .saturating_add(1)
                .max(1);
            inv.key(self.key(o))
                .arg(o.timestamp_ms.saturating_sub(w.max_future_skew_ms).to_string())
                .arg(verdict)
                .arg(px.to_string());
        }
        let (code, at): (i64, i64) = self.fleet.invoke(&inv).await.map_err(Refusal::from)?;
        let which = || {
            usize::try_from(at)
                .ok()
                .and_then(|i| i.checked_sub(1))
                .and_then(|i| onces.get(i))
                .map(|o| o.purpose)
                .ok_or(Refusal::from(Error::Storage))
        };
        match code {
            0 => Ok(()),
            1 | 2 => Err(named(which()?, Error::Stale)),
            3 => Err(named(which()?, Error::FromFuture)),
            4 => Err(named(which()?, Error::Replay)),
            _ => {
                tracing::error!(code, "the restart floor is unreadable: refusing");
                Err(Refusal::from(Error::Storage))
            }
        }
    }
}
