//! The accepted-once sets on a real Redis: the shared behavioural suite,
//! the restart floor, two servers on one Redis, and a Redis that does not
//! answer.
//!
//! Needs `ONCEWIRE_REDIS_URL` (start the services with
//! `scripts/services start`).
#![allow(
    missing_docs,
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::arithmetic_side_effects
)]

#[path = "../../oncewire-http/tests/common/mod.rs"]
mod store_suite;

use oncewire::cache::{Once, Purpose};
use oncewire::replay::Freshness;
use oncewire::rng::{OsRng, TryRng};
use oncewire::{Error, Expiry};
use oncewire_fleet::redis::{Fleet, FleetConfig, RedisOnce};
use oncewire_http::store::{OnceStore, Refusal};
use std::time::{Duration, Instant};
use store_suite::{OnceWindows, T0, fresh, once};

const WINDOWS: OnceWindows = OnceWindows { freshness: Freshness::DEFAULT, challenge_ttl_ms: 60_000 };

fn url() -> String {
    std::env::var("ONCEWIRE_REDIS_URL")
        .expect("ONCEWIRE_REDIS_URL is not set: run `scripts/services start` (it starts Redis and prints the URL)")
}

fn unique_prefix() -> String {
    let mut b = [0u8; 8];
    OsRng.try_fill_bytes(&mut b).unwrap();
    format!("t-once-{}", b.iter().map(|x| format!("{x:02x}")).collect::<String>())
}

/// A fresh fleet (never accepted anything under its prefix): its floor is
/// declared before the suite's instants, so the suite's first uses are not
/// refused by the floor.
async fn new_fleet(prefix: &str) -> Fleet {
    let fleet = Fleet::connect(&url(), prefix).await.unwrap();
    assert!(fleet.declare_new_fleet(0).await.unwrap());
    fleet
}

async fn store_on(fleet: Fleet) -> RedisOnce {
    RedisOnce::new(fleet, WINDOWS.freshness, WINDOWS.challenge_ttl_ms).await.unwrap()
}

async fn fresh_store() -> RedisOnce {
    store_on(new_fleet(&unique_prefix()).await).await
}

/// Deletes every key of `prefix` (the floor included): Redis lost it all.
async fn lose_everything(fleet: &Fleet) {
    let pattern = format!("{}:*", fleet.prefix());
    let keys: Vec<String> = fleet.query(redis::cmd("KEYS").arg(&pattern)).await.unwrap();
    assert!(!keys.is_empty());
    let _: u64 = fleet.query(redis::cmd("DEL").arg(&keys)).await.unwrap();
    let left: Vec<String> = fleet.query(redis::cmd("KEYS").arg(&pattern)).await.unwrap();
    assert!(left.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_once_passes_the_suite() {
    store_suite::once_store_suite(fresh_store, WINDOWS).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_once_flood_never_readmits() {
    store_suite::once_flood_never_readmits(&fresh_store().await, 2_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fresh_fleet_refuses_until_its_floor() {
    // No floor declared: the first accept sets it to now + skew, and
    // refuses everything a server could have accepted before.
    let fleet = Fleet::connect(&url(), &unique_prefix()).await.unwrap();
    let skew = fleet.config().skew_ms;
    let store = store_on(fleet.clone()).await;
    let now = T0;
    let f = WINDOWS.freshness.max_future_skew_ms;
    let r = store.accept(&[fresh(Purpose::Requests, now)], now).await;
    assert_eq!(r, Err(Refusal { error: Error::Stale, set: Some(Purpose::Requests) }));
    assert_eq!(fleet.floor().await.unwrap(), Some(now + skew));
    // A challenge issued before the floor (expiring within floor + ttl) is expired.
    let r = store.accept(&[once(Purpose::Challenges, now + 1_000)], now).await;
    assert_eq!(r, Err(Refusal { error: Error::Expired(Expiry::Challenge), set: Some(Purpose::Challenges) }));
    // Later, past floor + future skew: accepted.
    let later = now + skew + f + 1;
    store.accept(&[fresh(Purpose::Requests, later)], later).await.unwrap();
    store.accept(&[once(Purpose::TokenProofs, later)], later).await.unwrap();
    let later_c = now + skew + WINDOWS.challenge_ttl_ms + 1;
    store.accept(&[once(Purpose::Challenges, later_c)], later_c - 1).await.unwrap();
    // The floor never expires.
    let ttl: i64 = fleet.query(redis::cmd("PTTL").arg(fleet.floor_key())).await.unwrap();
    assert_eq!(ttl, -1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn after_redis_lost_everything_nothing_is_accepted_again() {
    let fleet = new_fleet(&unique_prefix()).await;
    let store = store_on(fleet.clone()).await;
    let now = T0;
    // Uses accepted just before the loss, some at the edge of the future skew.
    let f = WINDOWS.freshness.max_future_skew_ms;
    let accepted: Vec<Once> = vec![
        fresh(Purpose::Requests, now),
        once(Purpose::Requests, now + f),
        once(Purpose::TokenProofs, now + f),
        once(Purpose::Challenges, now + WINDOWS.challenge_ttl_ms),
        fresh(Purpose::Challenges, now),
    ];
    for o in &accepted {
        store.accept(&[*o], now).await.unwrap();
    }
    lose_everything(&fleet).await;
    // Redis comes back empty at `now` (then a bit later): each use accepted
    // before is refused, by a server whose clock is up to the skew behind.
    let skew = fleet.config().skew_ms;
    for at in [now - skew, now, now + 1_000] {
        for o in &accepted {
            let r = store.accept(&[*o], at).await;
            assert!(r.is_err(), "accepted again after the loss at {at}: {o:?}");
        }
    }
    // And by a second server with its own connection.
    let other = store_on(Fleet::connect(&url(), fleet.prefix()).await.unwrap()).await;
    for o in &accepted {
        assert!(other.accept(&[*o], now + 2_000).await.is_err());
    }
    // New uses, stamped after the floor, are accepted.
    let floor = fleet.floor().await.unwrap().unwrap();
    let later = floor + WINDOWS.freshness.max_future_skew_ms + 1;
    store.accept(&[fresh(Purpose::Requests, later)], later).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn raise_floor_refuses_what_a_lagging_redis_forgot() {
    let fleet = new_fleet(&unique_prefix()).await;
    let store = store_on(fleet.clone()).await;
    let now = T0;
    let o = fresh(Purpose::Requests, now);
    store.accept(&[o], now).await.unwrap();
    // Redis forgot the use but kept the floor (old persistence): the
    // operator raises the floor.
    let _: u64 = fleet.query(redis::cmd("DEL").arg(store.key(&o))).await.unwrap();
    let floor = fleet.raise_floor(now).await.unwrap();
    assert_eq!(floor, now + fleet.config().skew_ms);
    assert_eq!(store.accept(&[o], now).await, Err(Refusal { error: Error::Stale, set: Some(Purpose::Requests) }));
    // Never lowered.
    assert_eq!(fleet.raise_floor(now - 10_000).await.unwrap(), floor);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_servers_on_one_redis_accept_once() {
    let prefix = unique_prefix();
    let a = store_on(new_fleet(&prefix).await).await;
    let b = store_on(Fleet::connect(&url(), &prefix).await.unwrap()).await;
    let now = T0;
    for p in [Purpose::Requests, Purpose::TokenProofs, Purpose::Challenges] {
        let o = fresh(p, now);
        a.accept(&[o], now).await.unwrap();
        assert_eq!(b.accept(&[o], now).await, Err(Refusal { error: Error::Replay, set: Some(p) }));
        let o = fresh(p, now);
        b.accept(&[o], now + 3).await.unwrap();
        assert_eq!(a.accept(&[o], now).await, Err(Refusal { error: Error::Replay, set: Some(p) }));
    }
    // Racing: 16 tasks on each server, one use: accepted once.
    let (a, b) = (std::sync::Arc::new(a), std::sync::Arc::new(b));
    let o = fresh(Purpose::Requests, now);
    let tasks: Vec<_> = (0..32)
        .map(|i| {
            let s = if i % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move { s.accept(&[o], now).await.is_ok() })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        ok += usize::from(t.await.unwrap());
    }
    assert_eq!(ok, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn keys_expire_with_their_window() {
    let fleet = new_fleet(&unique_prefix()).await;
    let store = store_on(fleet.clone()).await;
    let now = T0;
    let skew = fleet.config().skew_ms;
    let r = once(Purpose::Requests, now - 10_000);
    let c = once(Purpose::Challenges, now + 20_000);
    store.accept(&[r, c], now).await.unwrap();
    let pttl = |k: String| {
        let fleet = fleet.clone();
        async move { fleet.query::<i64>(redis::cmd("PTTL").arg(k)).await.unwrap() }
    };
    // The rest of the window (20 s for the request, 20 s for the challenge) + skew.
    let (tr, tc) = (pttl(store.key(&r)).await, pttl(store.key(&c)).await);
    let want = i64::try_from(20_000 + skew).unwrap();
    assert!((want - 1_000..=want + 1).contains(&tr), "request ttl {tr}");
    assert!((want - 1_000..=want + 1).contains(&tc), "challenge ttl {tc}");
    assert!(store.key(&r).starts_with(&format!("{}:o:req:", fleet.prefix())));
}

/// A private `redis-server` on a free port (killed on drop), and its URL.
async fn private_redis(extra: &[&str]) -> (tokio::process::Child, String, Fleet) {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let server = tokio::process::Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .args(extra)
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("redis-server is needed (scripts/services installs it)");
    let url = format!("redis://127.0.0.1:{port}/");
    for _ in 0..50 {
        if let Ok(f) = Fleet::connect(&url, "private").await {
            return (server, url, f);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the private redis-server did not start");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_evalsha_per_accept() {
    // A Redis of its own, so that `INFO commandstats` counts only this test.
    let (mut server, _url, fleet) = private_redis(&[]).await;
    fleet.declare_new_fleet(0).await.unwrap();
    let store = store_on(fleet.clone()).await;
    let _: () = fleet.query(redis::cmd("CONFIG").arg("RESETSTAT")).await.unwrap();
    let n = 200u64;
    for i in 0..n {
        let now = T0 + i;
        let parts = [fresh(Purpose::Requests, now), fresh(Purpose::TokenProofs, now), fresh(Purpose::Challenges, now)];
        store.accept(&parts, now).await.unwrap();
        // A refused one is one call too.
        assert!(store.accept(&parts[..1], now).await.is_err());
    }
    let info: String = fleet.query(redis::cmd("INFO").arg("commandstats")).await.unwrap();
    let mut calls = std::collections::BTreeMap::new();
    for l in info.lines().filter(|l| l.starts_with("cmdstat_")) {
        let name = l.trim_start_matches("cmdstat_").split(':').next().unwrap().to_string();
        let c: u64 = l.split("calls=").nth(1).unwrap().split(',').next().unwrap().parse().unwrap();
        calls.insert(name, c);
    }
    calls.remove("info");
    calls.remove("config|resetstat");
    println!("commands for {} accepts: {calls:?}", 2 * n);
    // One round trip per accept: `EVALSHA` (never `EVAL` or `SCRIPT LOAD`);
    // inside the script (counted by Redis too): the floor's `GET`, one
    // `EXISTS` per part checked and one `SET` per part recorded.
    let want: std::collections::BTreeMap<String, u64> =
        [("evalsha", 2 * n), ("get", 2 * n), ("exists", 3 * n + n), ("set", 3 * n)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
    assert_eq!(calls, want);
    server.kill().await.unwrap();
    let _ = server.wait().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_redis_that_does_not_answer_refuses() {
    // A closed port.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let t = Instant::now();
    let r = Fleet::connect(&format!("redis://127.0.0.1:{closed}/"), "t").await;
    assert_eq!(r.err(), Some(Error::Storage));
    assert!(t.elapsed() < Duration::from_secs(5), "took {:?}", t.elapsed());

    // A port that accepts and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    let t = Instant::now();
    let r = Fleet::connect(&format!("redis://127.0.0.1:{port}/"), "t").await;
    assert_eq!(r.err(), Some(Error::Storage));
    assert!(t.elapsed() < Duration::from_secs(5), "took {:?}", t.elapsed());
    hold.abort();
}

/// Redis itself (a private `redis-server` this test starts): accepts while
/// up, refuses with `Storage` while down (quickly, never accepting), and
/// after it comes back empty refuses what it accepted before.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_down_refuses_and_comes_back_empty() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let start = || {
        tokio::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server is needed (run `scripts/services start`, which installs it)")
    };
    let url = format!("redis://127.0.0.1:{port}/");
    let connect = |url: String| async move {
        for _ in 0..50 {
            if let Ok(f) = Fleet::connect_with(&url, "down", FleetConfig::DEFAULT).await {
                return f;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the private redis-server did not start");
    };
    let mut server = start();
    let fleet = connect(url.clone()).await;
    fleet.declare_new_fleet(0).await.unwrap();
    let store = store_on(fleet.clone()).await;
    let now = T0;
    let o = fresh(Purpose::Requests, now);
    store.accept(&[o], now).await.unwrap();

    server.kill().await.unwrap();
    let _ = server.wait().await;
    for _ in 0..5 {
        let t = Instant::now();
        let r = store.accept(&[fresh(Purpose::Requests, now)], now).await;
        assert_eq!(r, Err(Refusal { error: Error::Storage, set: None }));
        assert!(t.elapsed() < Duration::from_secs(2), "a refusal took {:?}", t.elapsed());
        assert_eq!(store.accept(&[o], now).await, Err(Refusal { error: Error::Storage, set: None }));
    }

    let mut server = start();
    // The same store, reconnected by its manager: the replay is refused.
    let mut refused_stale = false;
    for _ in 0..50 {
        match store.accept(&[o], now).await {
            Err(Refusal { error: Error::Storage, .. }) => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(Refusal { error: Error::Stale, set: Some(Purpose::Requests) }) => {
                refused_stale = true;
                break;
            }
            other => panic!("after the restart: {other:?}"),
        }
    }
    assert!(refused_stale, "redis did not come back");
    // Serving again, past the floor.
    let floor = fleet.floor().await.unwrap().unwrap();
    let later = floor + WINDOWS.freshness.max_future_skew_ms + 1;
    store.accept(&[fresh(Purpose::Requests, later)], later).await.unwrap();
    server.kill().await.unwrap();
    let _ = server.wait().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_evicting_redis_is_refused() {
    // Only checked against a private redis-server (the shared one is not ours to reconfigure).
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut server = tokio::process::Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .args(["--maxmemory", "2mb", "--maxmemory-policy", "allkeys-lru"])
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("redis-server is needed");
    let url = format!("redis://127.0.0.1:{port}/");
    let mut last = None;
    for _ in 0..50 {
        match Fleet::connect(&url, "evict").await {
            Err(Error::Storage) => {
                // Up but refused, or not up yet: tell them apart with a plain client.
                if let Ok(c) = redis::Client::open(url.as_str()) {
                    if let Ok(mut c) = c.get_multiplexed_async_connection().await {
                        if redis::cmd("PING").query_async::<String>(&mut c).await.is_ok() {
                            last = Some(Fleet::connect(&url, "evict").await.err());
                            break;
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => panic!("an evicting redis was accepted: {:?}", other.map(|_| ())),
        }
    }
    assert_eq!(last, Some(Some(Error::Storage)));
    server.kill().await.unwrap();
    let _ = server.wait().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_redis_refuses_with_capacity_exceeded_and_records_nothing() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut server = tokio::process::Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .args(["--maxmemory", "4mb", "--maxmemory-policy", "noeviction"])
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("redis-server is needed");
    let url = format!("redis://127.0.0.1:{port}/");
    let mut fleet = None;
    for _ in 0..50 {
        if let Ok(f) = Fleet::connect(&url, "full").await {
            fleet = Some(f);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let fleet = fleet.expect("the private redis-server did not start");
    fleet.declare_new_fleet(0).await.unwrap();
    let store = store_on(fleet.clone()).await;
    // Fill it.
    // Small values, so that Redis is really over its limit (a refused big
    // value only fills the query buffer for a moment).
    let big = vec![0u8; 4 * 1024];
    let mut full = false;
    for i in 0..20_000 {
        match fleet.query::<()>(redis::cmd("SET").arg(format!("fill:{i}")).arg(&big)).await {
            Ok(()) => {}
            Err(e) => {
                assert_eq!(e, Error::CapacityExceeded);
                full = true;
                break;
            }
        }
    }
    assert!(full, "maxmemory was never reached");
    // Memory hovers around the limit (a refused value frees its buffer):
    // small writes until one is refused too, then a request; an accept that
    // still found room recorded all its parts, a refused one none.
    let now = T0;
    let mut refused = 0;
    for round in 0..20 {
        for j in 0..100_000 {
            let k = format!("tiny:{round}:{j}");
            if fleet.query::<()>(redis::cmd("SET").arg(k).arg(j)).await == Err(Error::CapacityExceeded) {
                break;
            }
        }
        let parts = [fresh(Purpose::Requests, now), fresh(Purpose::TokenProofs, now)];
        let r = store.accept(&parts, now).await;
        let mut held = 0;
        for p in &parts {
            held += fleet.query::<u64>(redis::cmd("EXISTS").arg(store.key(p))).await.unwrap();
        }
        match r {
            Ok(()) => assert_eq!(held, 2),
            Err(e) => {
                assert_eq!(e, Refusal { error: Error::CapacityExceeded, set: None });
                assert_eq!(held, 0, "a refused accept recorded a part");
                refused += 1;
            }
        }
        if refused >= 3 {
            break;
        }
    }
    assert!(refused >= 3, "a full Redis never refused");
    let parts = [fresh(Purpose::Requests, now), fresh(Purpose::TokenProofs, now)];
    // Room again: accepted.
    fleet.query::<()>(&redis::cmd("FLUSHDB")).await.unwrap();
    fleet.declare_new_fleet(0).await.unwrap();
    store.accept(&parts, now).await.unwrap();
    server.kill().await.unwrap();
    let _ = server.wait().await;
}
