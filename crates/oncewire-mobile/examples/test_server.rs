//! The live Rust HTTP server the Kotlin and Python tests talk to
//! (`scripts/mobile-test`): `oncewire_http::server::Backend` on loopback,
//! with the application routes of the HTTP demo
//! (`crates/oncewire-http/examples/demo.rs`):
//!
//! - `/v1/notes`: a sealed route; replies `noted for <device>: <body>`;
//! - `/v1/orders`: needs a token use; replies `3 orders of <device>`;
//! - `/v1/pay`: needs a fresh challenge and a token; replies
//!   `paid by <device>: <order>`;
//! - `/v1/confirm`: needs a fresh challenge only; replies `confirmed: <body>`;
//! - `/v1/beacon`, `/v1/unlock`: one-shot routes; 202 for a non-empty body.
//!
//! `test_server [SESSION_LIFETIME_MS [TOKEN_TTL_MS]]` shortens the
//! session lifetime and the token lifetime (for the expiry checks).
//!
//! It prints `BASE http://127.0.0.1:<port>` and `KEY <130 hex digits>` (the
//! key the app pins), one line each, then serves until killed.
use axum::Router;
use axum::routing::post;
use oncewire::Limits;
use oncewire::rng::OsRng;
use oncewire_http::provider::ServerKey;
use oncewire_http::server::{Backend, ChallengeBound, CheckedToken, Config, Need, OneShot, Opened, VerifiedDevice};
use std::io::Write as _;

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

async fn notes(VerifiedDevice(device): VerifiedDevice, Opened(body): Opened) -> Vec<u8> {
    let mut out = format!("noted for {}: ", lossy(device.as_bytes())).into_bytes();
    out.extend_from_slice(&body);
    out
}

async fn orders(token: CheckedToken, Opened(_): Opened) -> Vec<u8> {
    format!("3 orders of {}", lossy(&token.subject)).into_bytes()
}

async fn pay(_: ChallengeBound, token: CheckedToken, Opened(order): Opened) -> Vec<u8> {
    format!("paid by {}: {}", lossy(&token.subject), lossy(&order)).into_bytes()
}

async fn confirm(_: ChallengeBound, Opened(body): Opened) -> Vec<u8> {
    format!("confirmed: {}", lossy(&body)).into_bytes()
}

async fn beacon(_: OneShot, Opened(body): Opened) -> axum::http::StatusCode {
    if body.is_empty() { axum::http::StatusCode::BAD_REQUEST } else { axum::http::StatusCode::ACCEPTED }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<u64>());
    let mut config = Config::default();
    if let Some(lifetime) = args.next() {
        config.limits = Limits::DEFAULT.with_lifetime(lifetime?);
    }
    if let Some(ttl) = args.next() {
        config.token_ttl_ms = ttl?;
    }
    let key = ServerKey::generate(&mut OsRng)?;
    let backend = Backend::builder(key).config(config).build()?;
    let app = Router::new()
        .route("/v1/notes", post(notes))
        .route("/v1/orders", post(orders).route_layer(backend.require(Need::TOKEN)))
        .route("/v1/pay", post(pay).route_layer(backend.require(Need::CHALLENGE_AND_TOKEN)))
        .route("/v1/confirm", post(confirm).route_layer(backend.require(Need::CHALLENGE)));
    let one_shot = Router::new().route("/v1/beacon", post(beacon)).route("/v1/unlock", post(beacon));
    let router = backend.router().merge(backend.sealed(app)).merge(backend.one_shot(one_shot));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let key_hex: String = backend.public_key().as_bytes().iter().map(|b| format!("{b:02x}")).collect();
    let mut out = std::io::stdout().lock();
    writeln!(out, "BASE http://{addr}")?;
    writeln!(out, "KEY {key_hex}")?;
    out.flush()?;
    drop(out);
    axum::serve(listener, router).await?;
    Ok(())
}
