//! Pending handshakes on a real Redis: the shared behavioural suite, two
//! servers racing for one handshake, sealing under the fleet key, and a
//! Redis that does not answer.
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

use oncewire::rng::{OsRng, TryRng};
use oncewire::{Error, Limits, Secret};
use oncewire_fleet::redis::{Fleet, RedisPending};
use oncewire_fleet::seal::FleetKeys;
use oncewire_http::store::PendingStore;
use std::sync::Arc;
use store_suite::{Maker, T0};
use tokio::sync::Barrier;

fn url() -> String {
    std::env::var("ONCEWIRE_REDIS_URL")
        .expect("ONCEWIRE_REDIS_URL is not set: run `scripts/services start` (it starts Redis and prints the URL)")
}

fn unique_prefix() -> String {
    let mut b = [0u8; 8];
    OsRng.try_fill_bytes(&mut b).unwrap();
    format!("t-pending-{}", b.iter().map(|x| format!("{x:02x}")).collect::<String>())
}

fn fleet_keys() -> Arc<FleetKeys> {
    Arc::new(FleetKeys::new(1, &Secret::new([0x42; 32])).unwrap())
}

async fn store(prefix: &str, keys: Arc<FleetKeys>, capacity: usize) -> RedisPending {
    RedisPending::connect(&url(), prefix, keys, capacity, Limits::DEFAULT).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_pending_passes_the_suite() {
    store_suite::pending_store_suite(|capacity| async move { store(&unique_prefix(), fleet_keys(), capacity).await })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_servers_race_for_one_handshake() {
    let prefix = unique_prefix();
    let a = Arc::new(store(&prefix, fleet_keys(), 64).await);
    let b = Arc::new(store(&prefix, fleet_keys(), 64).await);
    let maker = Maker::new();
    for round in 0..5 {
        let p = maker.pending(30_000);
        let id = *p.session_id();
        if round % 2 == 0 {
            a.insert(id, p).await.unwrap()
        } else {
            b.insert(id, p).await.unwrap()
        }
        let start = Arc::new(Barrier::new(32));
        let tasks: Vec<_> = (0..32)
            .map(|i| {
                let s = if i % 2 == 0 { a.clone() } else { b.clone() };
                let start = start.clone();
                tokio::spawn(async move {
                    start.wait().await;
                    s.take(&id).await.unwrap().map(|p| *p.session_id())
                })
            })
            .collect();
        let mut got = Vec::new();
        for t in tasks {
            if let Some(i) = t.await.unwrap() {
                got.push(i);
            }
        }
        assert_eq!(got, vec![id], "taken once, fleet-wide");
    }
    // The bound is the fleet's: what one server inserted counts on the other.
    let p = maker.pending(30_000);
    a.insert(*p.session_id(), p).await.unwrap();
    b.refresh().await.unwrap();
    assert_eq!(b.len(), 1);
    // An id one server holds is never replaced through another.
    let [first, second] = maker.twin_pending(11, 30_000, 10_000);
    let id = *first.session_id();
    a.insert(id, first).await.unwrap();
    assert_eq!(b.insert(id, second).await.err(), Some(Error::Misuse));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_holds_only_sealed_state_bound_to_its_id() {
    let prefix = unique_prefix();
    let s = store(&prefix, fleet_keys(), 8).await;
    let fleet = s.fleet().clone();
    let maker = Maker::new();
    let (p, q) = (maker.pending(30_000), maker.pending(30_000));
    let (ip, iq) = (*p.session_id(), *q.session_id());
    let mut state = [0u8; oncewire::handshake::PENDING_STATE_LEN];
    p.export(&mut state).unwrap();
    s.insert(ip, p).await.unwrap();
    s.insert(iq, q).await.unwrap();
    let hex = |id: &[u8]| id.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let (kp, kq) = (fleet.key(&format!("p:{}", hex(&ip))), fleet.key(&format!("p:{}", hex(&iq))));
    let blob: Vec<u8> = fleet.query(redis::cmd("GET").arg(&kp)).await.unwrap();
    assert_eq!(blob.len(), state.len() + oncewire_fleet::seal::SEAL_OVERHEAD);
    assert!(!blob.windows(32).any(|w| state.windows(32).any(|s| s == w)), "a secret in the clear");
    let ttl: i64 = fleet.query(redis::cmd("PTTL").arg(&kp)).await.unwrap();
    assert!(ttl > 30_000 && ttl <= 35_000, "blob ttl {ttl}");

    // A blob moved under another id does not open: refused, never imported.
    let _: () = fleet.query(redis::cmd("SET").arg(&kq).arg(&blob)).await.unwrap();
    assert_eq!(s.take(&iq).await.err(), Some(Error::Storage));
    // Another fleet key does not open it either.
    let other = store(&prefix, Arc::new(FleetKeys::new(1, &Secret::new([7; 32])).unwrap()), 8).await;
    assert_eq!(other.take(&ip).await.err(), Some(Error::Storage));
    assert!(s.take(&ip).await.unwrap().is_none(), "taken (and dropped) by the failed open");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_store_forgets_what_redis_expired() {
    let prefix = unique_prefix();
    let s = store(&prefix, fleet_keys(), 2).await;
    let fleet = s.fleet().clone();
    let maker = Maker::new();
    let ids: Vec<_> = (0..2).map(|_| maker.pending(30_000)).collect();
    let mut held = Vec::new();
    for p in ids {
        held.push(*p.session_id());
        s.insert(*p.session_id(), p).await.unwrap();
    }
    assert_eq!(s.insert(*maker.pending(30_000).session_id(), maker.pending(30_000)).await.err(), Some(Error::Misuse));
    let extra = maker.pending(30_000);
    assert_eq!(s.insert(*extra.session_id(), extra).await.err(), Some(Error::CapacityExceeded));
    // Redis expired one blob (its server died before message 3 and no one swept).
    let hex = |id: &[u8]| id.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let _: u64 = fleet.query(redis::cmd("DEL").arg(fleet.key(&format!("p:{}", hex(&held[0]))))).await.unwrap();
    let extra = maker.pending(30_000);
    s.insert(*extra.session_id(), extra).await.unwrap();
    assert_eq!(s.len(), 2);
    assert_eq!(s.sweep(T0 + 30_001).await, 2);
    assert!(s.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_redis_that_does_not_answer_refuses() {
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let r = RedisPending::connect(&format!("redis://127.0.0.1:{closed}/"), "t", fleet_keys(), 8, Limits::DEFAULT).await;
    assert_eq!(r.err(), Some(Error::Storage));
    let _ = Fleet::connect(&url(), "t").await.unwrap();
}
