//! The Redis session store against a real Redis (`ONCEWIRE_REDIS_URL`,
//! from `scripts/services start`): the shared store suite, then what only
//! a fleet has: two servers (two stores on one prefix) continuing one
//! session, a frame accepted by one refused by the other, send numbers
//! that never repeat across servers, a key update applied by one and
//! followed by the other, and Redis losing the session.
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
use oncewire::wire::buffer_len;
use oncewire::{Error, Limits, Secret};
use oncewire_fleet::redis::conn::Fleet;
use oncewire_fleet::redis::sessions::RedisSessions;
use oncewire_fleet::seal::FleetKeys;
use oncewire_http::provider::Session;
use oncewire_http::store::{SessionHandle, SessionId, SessionStore};
use std::collections::HashSet;
use std::sync::Arc;
use store_suite::{At, Maker, T0, id_of};

fn url() -> String {
    std::env::var("ONCEWIRE_REDIS_URL")
        .expect("ONCEWIRE_REDIS_URL is not set: run `eval \"$(scripts/services start)\"` first")
}

fn prefix() -> String {
    let mut b = [0u8; 8];
    OsRng.try_fill_bytes(&mut b).unwrap();
    format!("t{}", b.iter().map(|x| format!("{x:02x}")).collect::<String>())
}

fn keys() -> Arc<FleetKeys> {
    Arc::new(FleetKeys::new(1, &Secret::new([0x42; 32])).unwrap())
}

async fn conn() -> redis::aio::ConnectionManager {
    redis::Client::open(url()).unwrap().get_connection_manager().await.unwrap()
}

async fn store(prefix: &str, keys: &Arc<FleetKeys>, capacity: usize) -> RedisSessions {
    let fleet = Fleet::connect(&url(), prefix).await.unwrap();
    RedisSessions::new(fleet, keys.clone(), Limits::DEFAULT, capacity)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_sessions_pass_the_suite() {
    let keys = keys();
    store_suite::session_store_suite(|capacity| {
        let keys = keys.clone();
        async move { store(&prefix(), &keys, capacity).await }
    })
    .await;
}

fn request(client: &mut Session, body: &[u8]) -> (Vec<u8>, oncewire::RequestId) {
    let mut f = vec![0u8; buffer_len(body.len())];
    let (n, id) = client.seal_request(&At(T0), body, &mut f).unwrap();
    f.truncate(n);
    (f, id)
}

/// Authenticates `frame` on `handle` and has `store` accept it.
async fn accept(store: &RedisSessions, id: &SessionId, handle: &SessionHandle, frame: &[u8]) -> Result<(), Error> {
    let mut f = frame.to_vec();
    let used = handle.lock().unwrap().open_unrecorded(&At(T0), &mut f).map(|(_, u)| u)?;
    store.commit(id, handle, used).await
}

/// Seals a reply on `handle` after `store` reserved for it; returns its sequence number.
async fn reply(
    store: &RedisSessions,
    id: &SessionId,
    handle: &SessionHandle,
    client: &mut Session,
    rid: oncewire::RequestId,
) -> u64 {
    store.reserve(id, handle, 32).await.unwrap();
    let mut out = vec![0u8; buffer_len(32)];
    let mut s = handle.lock().unwrap();
    let seq = s.next_seq();
    let n = s.seal_response(&At(T0), rid, &[1u8; 32], &mut out).unwrap();
    drop(s);
    assert_eq!(client.open_response(&At(T0), rid, &mut out[..n]).unwrap().payload, &[1u8; 32]);
    seq
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_servers_continue_one_session_and_accept_each_frame_once() {
    let (p, keys) = (prefix(), keys());
    let (a, b) = (store(&p, &keys, 100).await, store(&p, &keys, 100).await);
    let maker = Maker::new();
    let (mut client, server) = maker.pair();
    let id = id_of(&server);
    let ha = a.insert(id, server).await.unwrap();
    // B has never seen it: fetched from Redis, sealed under the fleet key.
    let hb = b.get(&id).await.unwrap().expect("shared");
    assert_eq!(hb.lock().unwrap().handshake_hash(), ha.lock().unwrap().handshake_hash());

    let mut seqs = HashSet::new();
    for i in 0..200 {
        let (frame, rid) = request(&mut client, format!("call {i}").as_bytes());
        let (first, other, hf, ho) = if i % 2 == 0 { (&a, &b, &ha, &hb) } else { (&b, &a, &hb, &ha) };
        accept(first, &id, hf, &frame).await.unwrap();
        // The same frame at the other server: it authenticates there, and the store refuses it.
        assert!(matches!(accept(other, &id, ho, &frame).await, Err(Error::Replay)));
        // And again at the first.
        assert!(matches!(accept(first, &id, hf, &frame).await, Err(Error::Replay)));
        let seq = reply(first, &id, hf, &mut client, rid).await;
        assert!(seqs.insert(seq), "send number {seq} sealed twice");
    }
    assert_eq!(seqs.len(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_servers_accept_a_frame_once() {
    let (p, keys) = (prefix(), keys());
    let maker = Maker::new();
    let (mut client, server) = maker.pair();
    let id = id_of(&server);
    let first = Arc::new(store(&p, &keys, 100).await);
    first.insert(id, server).await.unwrap();
    let mut servers = vec![first];
    for _ in 0..3 {
        servers.push(Arc::new(store(&p, &keys, 100).await));
    }
    for round in 0..20 {
        let (frame, _) = request(&mut client, format!("race {round}").as_bytes());
        let mut joins = Vec::new();
        for s in &servers {
            let (s, frame) = (s.clone(), frame.clone());
            joins.push(tokio::spawn(async move {
                let h = s.get(&id).await.unwrap().unwrap();
                accept(&s, &id, &h, &frame).await
            }));
        }
        let mut ok = 0;
        for j in joins {
            if j.await.unwrap().is_ok() {
                ok += 1;
            }
        }
        assert_eq!(ok, 1, "round {round}: one server accepts");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_key_update_on_one_server_is_followed_by_the_other() {
    let (p, keys) = (prefix(), keys());
    let (a, b) = (store(&p, &keys, 100).await, store(&p, &keys, 100).await);
    let maker = Maker::new();
    let (mut client, server) = maker.pair();
    let id = id_of(&server);
    let ha = a.insert(id, server).await.unwrap();
    let hb = b.get(&id).await.unwrap().unwrap();
    let (before, _) = request(&mut client, b"before");

    let mut ku = vec![0u8; buffer_len(0)];
    let n = client.update_keys(&At(T0), &mut ku).unwrap();
    accept(&a, &id, &ha, &ku[..n]).await.unwrap();
    assert_eq!(ha.lock().unwrap().generations().1, 1);
    // The key update again, at B: refused (B's copy opens it, the store does not take it twice).
    assert!(accept(&b, &id, &hb, &ku[..n]).await.is_err());

    // A record under the new key at B, whose cached copy is a generation behind.
    let (after, _) = request(&mut client, b"after");
    let mut f = after.clone();
    assert_eq!(hb.lock().unwrap().open_unrecorded(&At(T0), &mut f).unwrap_err(), Error::Authentication);
    let fresh = b.refresh(&id, &hb).await.unwrap().expect("a fresher copy");
    assert_eq!(fresh.lock().unwrap().generations().1, 1);
    accept(&b, &id, &fresh, &after).await.unwrap();
    // A record sealed before the update, delivered after it: refused everywhere.
    assert!(accept(&a, &id, &ha, &before).await.is_err());
    assert!(accept(&b, &id, &fresh, &before).await.is_err());
    // Nothing fresher now.
    assert!(b.refresh(&id, &fresh).await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_session_lost_from_redis_is_unknown_and_stays_refused() {
    let (p, keys) = (prefix(), keys());
    let a = store(&p, &keys, 100).await;
    let maker = Maker::new();
    let (mut client, server) = maker.pair();
    let id = id_of(&server);
    let ha = a.insert(id, server).await.unwrap();
    let (frame, _) = request(&mut client, b"accepted before the loss");
    accept(&a, &id, &ha, &frame).await.unwrap();
    let (next, _) = request(&mut client, b"sent after the loss");

    // Redis loses everything under the prefix (as a restart without persistence would).
    let mut c = conn().await;
    let found: Vec<String> = redis::cmd("KEYS").arg(format!("*{p}*")).query_async(&mut c).await.unwrap();
    assert!(!found.is_empty());
    let _: () = redis::cmd("DEL").arg(&found).query_async(&mut c).await.unwrap();

    // The cached copy still authenticates, but the store no longer knows the session.
    assert_eq!(accept(&a, &id, &ha, &next).await.unwrap_err(), Error::UnknownSession);
    assert_eq!(a.cached(), 0, "the cached copy is dropped");
    // The frame accepted before: refused (by the old copy's window, or as unknown).
    assert!(matches!(accept(&a, &id, &ha, &frame).await, Err(Error::Replay | Error::UnknownSession)));
    assert!(a.get(&id).await.unwrap().is_none());
    // Another server has nothing either.
    let b = store(&p, &keys, 100).await;
    assert!(b.get(&id).await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_blob_under_another_fleet_key_does_not_open() {
    let p = prefix();
    let a = store(&p, &keys(), 100).await;
    let maker = Maker::new();
    let (_, server) = maker.pair();
    let id = id_of(&server);
    a.insert(id, server).await.unwrap();
    let other = Arc::new(FleetKeys::new(1, &Secret::new([0x43; 32])).unwrap());
    let b = store(&p, &other, 100).await;
    assert_eq!(b.get(&id).await.unwrap_err(), Error::Authentication);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_round_trip_per_request_on_the_hot_path() {
    let (p, keys) = (prefix(), keys());
    let a = store(&p, &keys, 100).await;
    let maker = Maker::new();
    let (mut client, server) = maker.pair();
    let id = id_of(&server);
    let ha = a.insert(id, server).await.unwrap();
    let before = a.round_trips();
    let n = 320u64;
    for i in 0..n {
        let (frame, rid) = request(&mut client, format!("{i}").as_bytes());
        let h = a.get(&id).await.unwrap().unwrap();
        assert!(Arc::ptr_eq(&h, &ha), "cached");
        accept(&a, &id, &h, &frame).await.unwrap();
        reply(&a, &id, &h, &mut client, rid).await;
    }
    let trips = a.round_trips() - before;
    // One script per request; the reservation rides in it.
    assert_eq!(trips, n, "{trips} round trips for {n} requests");
}
