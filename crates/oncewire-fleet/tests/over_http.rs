//! Two backends of one fleet, in process, on one Redis prefix and one
//! PostgreSQL schema: every request kind accepted by one is refused by the
//! other (a sealed call, a challenge answer, a token proof, a one-shot
//! request), and a session established on one continues on the other.
//! Needs `ONCEWIRE_REDIS_URL` and `ONCEWIRE_PG_URL` (`scripts/services start`).
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::arithmetic_side_effects
)]

use axum::Router;
use axum::http::StatusCode;
use axum::routing::post;
use oncewire_http::provider::{ServerKey, SoftwareSigner};

use oncewire::rng::{OsRng, TryRng};
use oncewire::{DeviceId, Limits, PublicKey, Secret};
use oncewire_fleet::postgres::PgRegistry;
use oncewire_fleet::redis::sessions::RedisSessions;
use oncewire_fleet::redis::{Fleet, RedisOnce, RedisPending};
use oncewire_fleet::seal::FleetKeys;
use oncewire_http::client::{Client, ClientError};
use oncewire_http::server::{Backend, ChallengeBound, CheckedToken, Config, Need, OneShot, Opened};
use std::sync::Arc;

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: run `eval \"$(scripts/services start)\"` first"))
}

async fn echo(Opened(body): Opened) -> Vec<u8> {
    body.to_vec()
}

async fn pay(_: ChallengeBound, token: CheckedToken, Opened(order): Opened) -> Vec<u8> {
    let mut out = token.subject.clone();
    out.extend_from_slice(b" paid ");
    out.extend_from_slice(&order);
    out
}

async fn beacon(_: OneShot, Opened(_): Opened) -> StatusCode {
    StatusCode::ACCEPTED
}

/// One server of the fleet `prefix`; returns its base URL.
async fn server(prefix: &str, schema: &str) -> (String, PublicKey) {
    let config = Config::default();
    let fleet = Fleet::connect(&env("ONCEWIRE_REDIS_URL"), prefix).await.unwrap();
    let keys = Arc::new(FleetKeys::new(1, &Secret::new([0x11; 32])).unwrap());
    let registry = PgRegistry::connect_in_schema(&env("ONCEWIRE_PG_URL"), schema, 2).await.unwrap();
    registry.migrate().await.unwrap();
    let backend = Backend::builder(ServerKey::from_bytes(&Secret::new([0x22; 32])).unwrap())
        .config(config)
        .fleet_secret(Secret::new([0x33; 32]))
        .registry(registry)
        .sessions(RedisSessions::new(fleet.clone(), keys.clone(), Limits::DEFAULT, 10_000))
        .pending(RedisPending::new(fleet.clone(), keys, 10_000, Limits::DEFAULT).await.unwrap())
        .once(RedisOnce::new(fleet, config.freshness, config.challenge_ttl_ms).await.unwrap())
        .build_with()
        .unwrap();
    let public = backend.public_key();
    let app = Router::new()
        .route("/v1/echo", post(echo))
        .route("/v1/pay", post(pay).route_layer(backend.require(Need::CHALLENGE_AND_TOKEN)));
    let one_shot = Router::new().route("/v1/beacon", post(beacon));
    let router = backend.router().merge(backend.sealed(app)).merge(backend.one_shot(one_shot));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    (format!("http://{addr}"), public)
}

fn status(r: Result<oncewire_http::client::RawReply, ClientError>) -> u16 {
    match r {
        Ok(raw) => raw.status,
        Err(ClientError::Refused { status, .. }) => status,
        Err(e) => panic!("{e:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn what_one_server_accepted_the_other_refuses() {
    let mut tag = [0u8; 6];
    OsRng.try_fill_bytes(&mut tag).unwrap();
    let tag: String = tag.iter().map(|b| format!("{b:02x}")).collect();
    let (prefix, schema) = (format!("http-{tag}"), format!("http_{tag}"));
    // A fleet known to be new: no floor refuses its first seconds.
    Fleet::connect(&env("ONCEWIRE_REDIS_URL"), &prefix).await.unwrap().declare_new_fleet(0).await.unwrap();
    let (a, key) = server(&prefix, &schema).await;
    let (b, key_b) = server(&prefix, &schema).await;
    assert_eq!(key, key_b);

    let device = DeviceId::new(b"fleet-phone").unwrap();
    let signer: SoftwareSigner = SoftwareSigner::generate(&mut OsRng).unwrap();
    let mut client = Client::new(&a, key, device, signer);
    let other: SoftwareSigner = SoftwareSigner::generate(&mut OsRng).unwrap();
    let to_b = Client::new(&b, key, device, other);
    client.enroll().await.unwrap();
    client.connect().await.unwrap();

    // A sealed call accepted by A; the same bytes at B are a replay.
    let sealed = client.seal(b"hello").unwrap();
    let raw = client.send_raw("/v1/echo", Some(&sealed.session), sealed.frame.clone()).await.unwrap();
    assert_eq!(client.open_reply(sealed.request, raw).unwrap().body, b"hello");
    assert_eq!(status(to_b.send_raw("/v1/echo", Some(&sealed.session), sealed.frame).await), 400);

    // The session continues on B: a new frame there is accepted, and B's reply opens.
    for i in 0..40u32 {
        let body = format!("on b {i}");
        let sealed = client.seal(body.as_bytes()).unwrap();
        let raw = to_b.send_raw("/v1/echo", Some(&sealed.session), sealed.frame.clone()).await.unwrap();
        assert_eq!(client.open_reply(sealed.request, raw).unwrap().body, body.as_bytes());
        // And A refuses it.
        assert_eq!(status(client.send_raw("/v1/echo", Some(&sealed.session), sealed.frame).await), 400);
    }

    // A challenge from A and a token from A, bound to one request: accepted by B
    // once; the same binding in a new frame is refused by A (challenge and proof used).
    client.fetch_token().await.unwrap();
    let challenge = client.fetch_challenge().await.unwrap();
    let token = client.token().map(<[u8]>::to_vec);
    let plain = client.bind(Some(&challenge), token.as_deref(), b"10 EUR").unwrap();
    let first = client.seal(&plain).unwrap();
    let raw = to_b.send_raw("/v1/pay", Some(&first.session), first.frame).await.unwrap();
    let reply = client.open_reply(first.request, raw).unwrap();
    assert_eq!(reply.status, 200);
    assert!(reply.body.ends_with(b" paid 10 EUR"));
    let again = client.seal(&plain).unwrap();
    assert_eq!(status(client.send_raw("/v1/pay", Some(&again.session), again.frame).await), 400);

    // A one-shot request sealed to the request key A published: accepted by B, then refused by A.
    let one = client.seal_one_shot("/v1/beacon", b"ping").await.unwrap();
    assert_eq!(status(to_b.send_raw("/v1/beacon", None, one.clone()).await), 202);
    assert_eq!(status(client.send_raw("/v1/beacon", None, one.clone()).await), 400);
    assert_eq!(status(to_b.send_raw("/v1/beacon", None, one).await), 400);

    // And the client's own path through A still works.
    assert_eq!(client.call("/v1/echo", b"still here").await.unwrap().body, b"still here");
}
