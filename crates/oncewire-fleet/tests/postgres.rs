//! [`PgRegistry`] against a real PostgreSQL server: the shared behavioural
//! suite of the store traits (the same checks as the in-memory registry),
//! then what only this store has: revocation, migrations, enrollments racing
//! from several servers, and a server that cannot be reached.
//!
//! The server is named by `ONCEWIRE_PG_URL` (a tokio-postgres conninfo
//! string); `eval "$(scripts/services start)"` starts one and sets it.
//! Without it these tests fail: they never pass silently.
#![allow(
    dead_code,
    unreachable_pub,
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::arithmetic_side_effects
)]

#[path = "../../oncewire-http/tests/common/mod.rs"]
mod store_suite;

use oncewire::device::{Admission, ReEnrollment};
use oncewire::{DeviceId, Error};
use oncewire_fleet::postgres::PgRegistry;
use oncewire_http::store::DeviceRegistry;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use store_suite::enrollment;
use tokio::sync::Barrier;

/// The server's conninfo, or a failure saying how to get one.
fn url() -> String {
    match std::env::var("ONCEWIRE_PG_URL") {
        Ok(u) if !u.trim().is_empty() => u,
        _ => panic!(
            "ONCEWIRE_PG_URL is not set: these tests need a real PostgreSQL server. \
             Run `eval \"$(scripts/services start)\"` first (it starts one on 127.0.0.1:15432 \
             and prints the exports)"
        ),
    }
}

/// A schema name no other store of this run (or of an earlier run) uses.
fn fresh_schema() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("t_{}_{}_{}", std::process::id(), nanos, N.fetch_add(1, Ordering::Relaxed))
}

/// A fresh, empty, migrated registry in a schema of its own.
async fn fresh(pool: usize) -> (PgRegistry, String) {
    let schema = fresh_schema();
    let r = PgRegistry::connect_in_schema(&url(), &schema, pool).await.unwrap();
    assert_eq!(r.migrate().await.unwrap(), 1, "a fresh schema applies the one migration");
    (r, schema)
}

/// Another server of the same fleet: its own connections to `schema`.
async fn another_server(schema: &str, pool: usize) -> PgRegistry {
    let r = PgRegistry::connect_in_schema(&url(), schema, pool).await.unwrap();
    assert_eq!(r.migrate().await.unwrap(), 0, "already migrated");
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pg_registry_passes_the_store_suite() {
    store_suite::registry_suite(|| async { fresh(4).await.0 }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pg_registry_passes_the_suite_on_one_connection() {
    // Lookups and enrollment transactions share the one connection.
    store_suite::registry_suite(|| async { fresh(1).await.0 }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn revoked_devices_are_unknown_and_never_enrolled_again() {
    let (r, schema) = fresh(2).await;
    let a = enrollment("revoked-phone");
    let b = enrollment("kept-phone");
    assert_eq!(r.enroll(a, ReEnrollment::Refuse).await.unwrap(), Admission::New);
    assert_eq!(r.enroll(b, ReEnrollment::Refuse).await.unwrap(), Admission::New);

    assert!(r.revoke(&a.device).await.unwrap(), "an enrolled device is revoked");
    assert_eq!(r.device_key(&a.device).await.unwrap(), None, "a revoked key is not looked up");
    assert_eq!(r.device_key(&b.device).await.unwrap(), Some(b.public_key), "others are untouched");
    assert!(!r.revoke(&a.device).await.unwrap(), "revoked twice: the second does nothing");

    // Never enrolled again: not with its old key, not with another, under
    // either policy.
    let mut other = enrollment("revoked-phone");
    assert_eq!(other.device, a.device);
    for policy in [ReEnrollment::Refuse, ReEnrollment::Replace] {
        assert_eq!(r.enroll(a, policy).await.err(), Some(Error::AlreadyEnrolled));
        assert_eq!(r.enroll(other, policy).await.err(), Some(Error::AlreadyEnrolled));
    }
    other.public_key = b.public_key;
    assert_eq!(r.enroll(other, ReEnrollment::Replace).await.err(), Some(Error::AlreadyEnrolled));
    assert_eq!(r.device_key(&a.device).await.unwrap(), None, "a refused enrollment wrote nothing");

    // Every server of the fleet sees it.
    let second = another_server(&schema, 1).await;
    assert_eq!(second.device_key(&a.device).await.unwrap(), None);
    assert_eq!(second.enroll(a, ReEnrollment::Replace).await.err(), Some(Error::AlreadyEnrolled));
    assert_eq!(second.device_key(&b.device).await.unwrap(), Some(b.public_key));

    // An id never enrolled is not recorded by a revocation: it enrolls later.
    let unknown = DeviceId::new(b"never-enrolled").unwrap();
    assert!(!r.revoke(&unknown).await.unwrap());
    assert_eq!(r.enroll(enrollment("never-enrolled"), ReEnrollment::Refuse).await.unwrap(), Admission::New);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn migrations_are_idempotent_and_run_once_by_a_fleet() {
    let (r, schema) = fresh(2).await;
    assert_eq!(r.migrate().await.unwrap(), 0, "run twice: nothing the second time");
    assert_eq!(r.migrate().await.unwrap(), 0);
    let d = enrollment("survives-migrate");
    r.enroll(d, ReEnrollment::Refuse).await.unwrap();
    assert_eq!(r.migrate().await.unwrap(), 0);
    assert_eq!(r.device_key(&d.device).await.unwrap(), Some(d.public_key), "migrating again kept the data");
    let _ = another_server(&schema, 1).await;

    // Eight servers starting together on an empty schema: one applies the
    // migration, the others find it applied.
    let schema = fresh_schema();
    let url = url();
    let start = Arc::new(Barrier::new(8));
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (url, schema, start) = (url.clone(), schema.clone(), start.clone());
            tokio::spawn(async move {
                let r = PgRegistry::connect_in_schema(&url, &schema, 1).await?;
                start.wait().await;
                r.migrate().await
            })
        })
        .collect();
    let mut applied = 0;
    for t in tasks {
        applied += t.await.unwrap().unwrap();
    }
    assert_eq!(applied, 1, "the fleet applied the migration once");

    // The record: one row per version.
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    let rows = client.query(&format!("SELECT version, name FROM \"{schema}\".oncewire_migrations"), &[]).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get::<_, i32>(0), 1);
    assert_eq!(rows[0].get::<_, &str>(1), "0001_devices");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_enrollments_from_several_servers() {
    let (first, schema) = fresh(2).await;
    let mut servers = vec![Arc::new(first)];
    for _ in 0..3 {
        servers.push(Arc::new(another_server(&schema, 2).await));
    }

    for round in 0..4 {
        // Refuse: 16 keys for one id, spread over four servers; exactly one
        // key wins, every other one is refused.
        let id = format!("contested-{round}");
        let candidates: Vec<_> = (0..16).map(|_| enrollment(&id)).collect();
        let start = Arc::new(Barrier::new(candidates.len()));
        let tasks: Vec<_> = candidates
            .iter()
            .enumerate()
            .map(|(i, &d)| {
                let (server, start) = (servers[i % servers.len()].clone(), start.clone());
                tokio::spawn(async move {
                    start.wait().await;
                    server.enroll(d, ReEnrollment::Refuse).await
                })
            })
            .collect();
        let mut winner = None;
        for (t, d) in tasks.into_iter().zip(&candidates) {
            match t.await.unwrap() {
                Ok(a) => {
                    assert_eq!(a, Admission::New);
                    assert!(winner.replace(d.public_key).is_none(), "two keys enrolled one id");
                }
                Err(e) => assert_eq!(e, Error::AlreadyEnrolled),
            }
        }
        assert!(winner.is_some(), "no key won");
        for s in &servers {
            assert_eq!(s.device_key(&candidates[0].device).await.unwrap(), winner, "every server agrees");
        }

        // Replace: 16 new keys at once for the enrolled id; each one
        // replaces, and the key left is one of theirs, the same on every
        // server.
        let replacements: Vec<_> = (0..16).map(|_| enrollment(&id)).collect();
        let start = Arc::new(Barrier::new(replacements.len()));
        let tasks: Vec<_> = replacements
            .iter()
            .enumerate()
            .map(|(i, &d)| {
                let (server, start) = (servers[i % servers.len()].clone(), start.clone());
                tokio::spawn(async move {
                    start.wait().await;
                    server.enroll(d, ReEnrollment::Replace).await
                })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.unwrap().unwrap(), Admission::Replaced);
        }
        let left = servers[0].device_key(&candidates[0].device).await.unwrap().unwrap();
        assert!(replacements.iter().any(|d| d.public_key == left), "the key left is one of the replacements");
        for s in &servers {
            assert_eq!(s.device_key(&candidates[0].device).await.unwrap(), Some(left));
        }
    }

    // A new id enrolled from every server at once under Replace: one is
    // New, the rest Replaced (none sees it new twice).
    let candidates: Vec<_> = (0..16).map(|_| enrollment("fresh-contested")).collect();
    let start = Arc::new(Barrier::new(candidates.len()));
    let tasks: Vec<_> = candidates
        .iter()
        .enumerate()
        .map(|(i, &d)| {
            let (server, start) = (servers[i % servers.len()].clone(), start.clone());
            tokio::spawn(async move {
                start.wait().await;
                server.enroll(d, ReEnrollment::Replace).await
            })
        })
        .collect();
    let mut new = 0;
    for t in tasks {
        match t.await.unwrap().unwrap() {
            Admission::New => new += 1,
            Admission::Replaced => {}
            Admission::Unchanged => panic!("distinct keys are never Unchanged"),
        }
    }
    assert_eq!(new, 1, "exactly one enrollment found the id new");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unreachable_server_is_a_storage_error() {
    // A port that was just open and is now closed: nothing listens there.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let conninfo = format!("host=127.0.0.1 port={port} user=oncewire dbname=oncewire connect_timeout=5");
    assert_eq!(PgRegistry::connect(&conninfo, 2).await.err(), Some(Error::Storage));
    assert_eq!(PgRegistry::connect_in_schema(&conninfo, "t_closed", 1).await.err(), Some(Error::Storage));
    // Something that accepts connections and hangs up at once (not a
    // PostgreSQL server): `Storage` too.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(4) {
            drop(stream);
        }
    });
    let conninfo = format!("host=127.0.0.1 port={port} user=oncewire dbname=oncewire connect_timeout=5");
    assert_eq!(PgRegistry::connect(&conninfo, 1).await.err(), Some(Error::Storage));

    // A registry whose schema was never migrated answers `Storage`, not
    // "unknown device".
    let bare = PgRegistry::connect_in_schema(&url(), &fresh_schema(), 1).await.unwrap();
    let d = enrollment("unmigrated");
    assert_eq!(bare.device_key(&d.device).await.err(), Some(Error::Storage));
    assert_eq!(bare.enroll(d, ReEnrollment::Refuse).await.err(), Some(Error::Storage));
    assert_eq!(bare.revoke(&d.device).await.err(), Some(Error::Storage));
    // A schema name that is not a plain identifier is refused before any
    // connection is made.
    for bad in ["", "Upper", "1digit", "semi;colon", "quo\"te", &"x".repeat(64)] {
        assert_eq!(PgRegistry::connect_in_schema(&url(), bad, 1).await.err(), Some(Error::Misuse), "{bad:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lost_connection_is_a_storage_error_then_reconnects() {
    // The server ends this registry's backends (as a restart or a network
    // cut would): calls answer `Storage` or succeed on a new connection,
    // never panic, never make an answer up; then the registry serves again.
    let schema = fresh_schema();
    let app = format!("oncewire_lost_{}", std::process::id());
    let conninfo = format!("{} application_name={app}", url());
    let r = PgRegistry::connect_in_schema(&conninfo, &schema, 2).await.unwrap();
    r.migrate().await.unwrap();
    let d = enrollment("lost-connection");
    r.enroll(d, ReEnrollment::Refuse).await.unwrap();

    let (admin, conn) = tokio_postgres::connect(&url(), tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    let ended = admin
        .query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1", &[&app])
        .await
        .unwrap();
    assert_eq!(ended.len(), 2, "both connections of the registry ended");
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;

    let mut storage_errors = 0;
    let mut served = false;
    for _ in 0..10 {
        match r.device_key(&d.device).await {
            Ok(k) => {
                assert_eq!(k, Some(d.public_key), "an answer after the loss is the stored one");
                served = true;
            }
            Err(e) => {
                assert_eq!(e, Error::Storage);
                storage_errors += 1;
            }
        }
    }
    assert!(served, "the registry reconnected ({storage_errors} storage errors)");
    println!("after the loss: {storage_errors} storage errors, then served again");
    assert_eq!(r.enroll(d, ReEnrollment::Refuse).await.unwrap(), Admission::Unchanged);
    assert!(r.revoke(&d.device).await.unwrap());
}
