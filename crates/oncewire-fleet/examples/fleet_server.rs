//! One server of a fleet: an oncewire backend whose state is all shared,
//! in Redis (sessions, pending handshakes, the accepted-once sets, the send
//! counters) and PostgreSQL (the device registry). Run several behind a
//! load balancer, each with the same seed; `scripts/fleet-test` does.
//!
//! ```text
//! fleet_server --listen 127.0.0.1:PORT --name s1
//! ```
//!
//! Environment: `ONCEWIRE_REDIS_URL`, `ONCEWIRE_PG_URL` (from
//! `scripts/services start`), `ONCEWIRE_FLEET_PREFIX` (Redis key prefix and
//! PostgreSQL schema, default `fleet`), `ONCEWIRE_FLEET_SEED` (64 hex
//! digits: the server key, the fleet secret and the fleet key are derived
//! from it; every server of one fleet gets the same).
//!
//! Prints `server-key <hex SEC1>` and `listening <addr>` once ready.
//!
//! Routes: `/oncewire/v1/...`, `GET /metrics`, and a sealed `POST /app/op`
//! whose body is an op id: it records one row (op id, server name) in
//! `<prefix>.fleet_executions` and replies `<name> <op id>`, so a test can
//! count in PostgreSQL how often each op executed; and a sealed
//! `POST /app/echo` that returns the opened body as is and touches neither
//! PostgreSQL nor anything but the sealing layer's Redis state (for
//! `fleet_load`).

use axum::Router;
use axum::http::StatusCode;
use axum::routing::post;
use oncewire::{CryptoProvider, RustCrypto, Secret};
use oncewire_fleet::postgres::PgRegistry;
use oncewire_fleet::redis::sessions::RedisSessions;
use oncewire_fleet::redis::{Fleet, RedisOnce, RedisPending};
use oncewire_fleet::seal::FleetKeys;
use oncewire_http::provider::ServerKey;
use oncewire_http::server::{Backend, Config, Opened};
use std::sync::Arc;

type Fallible<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn arg(name: &str) -> Option<String> {
    let mut args = std::env::args();
    while let Some(a) = args.next() {
        if a == name {
            return args.next();
        }
    }
    None
}

fn env(name: &str) -> Fallible<String> {
    std::env::var(name).map_err(|_| format!("{name} is not set (run: eval \"$(scripts/services start)\")").into())
}

fn unhex(s: &str) -> Fallible<[u8; 32]> {
    let mut out = [0u8; 32];
    if s.len() != 64 {
        return Err("ONCEWIRE_FLEET_SEED: 64 hex digits".into());
    }
    for (o, pair) in out.iter_mut().zip(s.as_bytes().chunks(2)) {
        *o = u8::from_str_radix(std::str::from_utf8(pair)?, 16)?;
    }
    Ok(out)
}

/// One secret per use, from the seed (HKDF-SHA256 expand, one label each).
fn derive(seed: &Secret<32>, label: &[u8]) -> Fallible<Secret<32>> {
    let mut out = Secret::<32>::zero();
    RustCrypto::hkdf_expand(seed, &[b"oncewire fleet demo ", label], out.expose_mut())?;
    Ok(out)
}

#[tokio::main]
async fn main() -> Fallible<()> {
    let listen = arg("--listen").unwrap_or_else(|| "127.0.0.1:0".into());
    let name = arg("--name").unwrap_or_else(|| "server".into());
    let redis_url = env("ONCEWIRE_REDIS_URL")?;
    let pg_url = env("ONCEWIRE_PG_URL")?;
    let prefix = std::env::var("ONCEWIRE_FLEET_PREFIX").unwrap_or_else(|_| "fleet".into());
    let seed = Secret::new(unhex(&env("ONCEWIRE_FLEET_SEED")?)?);

    let key = ServerKey::from_bytes(&derive(&seed, b"server key")?)?;
    let public = *key.public_key();
    let config = Config::default();
    let fleet_keys = Arc::new(FleetKeys::new(1, &derive(&seed, b"fleet key")?)?);

    let fleet = Fleet::connect(&redis_url, &prefix).await?;
    let schema = prefix.to_ascii_lowercase().replace(|c: char| !c.is_ascii_alphanumeric() && c != '_', "_");
    let registry = PgRegistry::connect_in_schema(&pg_url, &schema, 4).await?;
    registry.migrate().await?;
    let sessions = RedisSessions::new(fleet.clone(), fleet_keys.clone(), config.limits, 1_000_000);
    let pending = RedisPending::new(fleet.clone(), fleet_keys.clone(), 100_000, config.limits).await?;
    let once = RedisOnce::new(fleet.clone(), config.freshness, config.challenge_ttl_ms).await?;

    // The executions log the fleet test counts.
    let (pg, conn) = tokio_postgres::connect(&pg_url, tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            eprintln!("postgres connection: {e}");
        }
    });
    pg.batch_execute(&format!(
        "CREATE SCHEMA IF NOT EXISTS {schema}; \
         CREATE TABLE IF NOT EXISTS {schema}.fleet_executions (op text NOT NULL, server text NOT NULL, at timestamptz NOT NULL DEFAULT now())"
    ))
    .await?;
    let pg = Arc::new(pg);
    let insert = Arc::new(format!("INSERT INTO {schema}.fleet_executions (op, server) VALUES ($1, $2)"));

    let backend = Backend::builder(key)
        .config(config)
        .fleet_secret(derive(&seed, b"fleet secret")?)
        .registry(registry)
        .sessions(sessions)
        .pending(pending)
        .once(once)
        .build_with()?;
    backend.spawn_sweeper(std::time::Duration::from_secs(5));

    let op = {
        let name = name.clone();
        move |Opened(body): Opened| {
            let (pg, insert, name) = (pg.clone(), insert.clone(), name.clone());
            async move {
                let op = String::from_utf8_lossy(&body).into_owned();
                match pg.execute(insert.as_str(), &[&op, &name]).await {
                    Ok(_) => (StatusCode::OK, format!("{name} {op}").into_bytes()),
                    Err(e) => {
                        eprintln!("{name}: recording op: {e}");
                        (StatusCode::SERVICE_UNAVAILABLE, Vec::new())
                    }
                }
            }
        }
    };
    let echo = |Opened(body): Opened| async move { body };
    let app = Router::new().route("/app/op", post(op)).route("/app/echo", post(echo));
    let router = backend.router().merge(backend.sealed(app)).merge(backend.metrics_router());
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    let hex: String = public.as_bytes().iter().map(|b| format!("{b:02x}")).collect();
    println!("server-key {hex}");
    println!("listening {}", listener.local_addr()?);
    axum::serve(listener, router).await?;
    Ok(())
}
