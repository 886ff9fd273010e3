//! The backend and the client over real HTTP on loopback: enrollment, the
//! handshake, sealed calls, a bound call, a token use and a one-shot
//! request, through the public API of both sides.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use axum::Router;
use axum::routing::post;
use oncewire_http::provider::{Prover, ServerKey, SoftwareSigner};

use oncewire::DeviceId;
use oncewire::rng::OsRng;
use oncewire_http::client::Client;
use oncewire_http::metrics::Route;
use oncewire_http::server::{Backend, ChallengeBound, CheckedToken, Need, OneShot, Opened, VerifiedDevice};

async fn echo(VerifiedDevice(device): VerifiedDevice, Opened(body): Opened) -> Vec<u8> {
    let mut out = format!("{device:?} said ").into_bytes();
    out.extend_from_slice(&body);
    out
}

async fn pay(_: ChallengeBound, token: CheckedToken, Opened(body): Opened) -> Vec<u8> {
    let mut out = b"paid by ".to_vec();
    out.extend_from_slice(&token.subject);
    out.push(b':');
    out.extend_from_slice(&body);
    out
}

async fn ping(o: OneShot, Opened(body): Opened) -> axum::http::StatusCode {
    assert!(o.timestamp_ms > 0);
    if body.as_ref() == b"ping" { axum::http::StatusCode::ACCEPTED } else { axum::http::StatusCode::BAD_REQUEST }
}

async fn serve() -> (Backend, String) {
    let key: ServerKey = ServerKey::generate(&mut OsRng).unwrap();
    let backend = Backend::builder(key).build().unwrap();
    let app = Router::new()
        .route("/echo", post(echo))
        .route("/pay", post(pay).route_layer(backend.require(Need::CHALLENGE_AND_TOKEN)));
    let router = backend
        .router()
        .merge(backend.sealed(app))
        .merge(backend.one_shot(Router::new().route("/ping", post(ping))))
        .merge(backend.metrics_router());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    (backend, format!("http://{addr}"))
}

#[tokio::test]
async fn every_kind_of_request_end_to_end() {
    let (backend, base) = serve().await;
    let signer: SoftwareSigner = SoftwareSigner::generate(&mut OsRng).unwrap();
    let mut c = Client::new(&base, backend.public_key(), DeviceId::new(b"phone-1").unwrap(), signer);
    c.enroll().await.unwrap();
    c.connect().await.unwrap();
    assert_eq!(backend.sessions(), 1);
    let reply = c.call("/echo", b"hello").await.unwrap();
    assert_eq!(reply.status, 200);
    assert!(reply.body.ends_with(b" said hello"), "{}", String::from_utf8_lossy(&reply.body));

    let paid = c.call_bound("/pay", b"10 EUR to bob", Need::CHALLENGE_AND_TOKEN).await.unwrap();
    assert_eq!(paid.body, b"paid by phone-1:10 EUR to bob");
    assert_eq!(backend.metrics().accepted_count(Route::Bound), 1);

    assert_eq!(c.one_shot("/ping", b"ping").await.unwrap(), 202);
    assert_eq!(backend.metrics().accepted_count(Route::OneShot), 1);

    let m = reqwest::get(format!("{base}/metrics")).await.unwrap().text().await.unwrap();
    assert!(m.contains("oncewire_accepted_total{route=\"bound\"} 1"), "{m}");
    assert!(m.contains("oncewire_sessions 1"), "{m}");
}

/// An enrollment challenge is used once, through the once store: a second
/// enrollment answering the same challenge is refused, and counted.
#[tokio::test]
async fn an_enrollment_challenge_is_used_once() {
    use oncewire::device::MAX_ENROLLMENT_REQUEST_LEN;

    use oncewire_http::metrics::Reason;
    let (backend, base) = serve().await;
    let signer: SoftwareSigner = SoftwareSigner::generate(&mut OsRng).unwrap();
    let c = Client::new(&base, backend.public_key(), DeviceId::new(b"phone-9").unwrap(), signer);
    let challenge = c.send_raw("/oncewire/v1/enroll/challenge", None, Vec::new()).await.unwrap().body;
    let answer = |name: &'static [u8]| {
        let signer: SoftwareSigner = SoftwareSigner::generate(&mut OsRng).unwrap();
        let req = Prover::with_provider(signer)
            .answer_enrollment(&backend.public_key(), &challenge, DeviceId::new(name).unwrap())
            .unwrap();
        let mut buf = [0u8; MAX_ENROLLMENT_REQUEST_LEN];
        let n = req.to_bytes(&mut buf).unwrap();
        [challenge.as_slice(), &buf[..n]].concat()
    };
    c.send_raw("/oncewire/v1/enroll", None, answer(b"lock-a")).await.unwrap();
    match c.send_raw("/oncewire/v1/enroll", None, answer(b"lock-b")).await {
        Err(oncewire_http::client::ClientError::Refused { status: 400, next_action }) => {
            assert_eq!(next_action, "drop")
        }
        other => panic!("a reused enrollment challenge: {other:?}"),
    }
    assert_eq!(backend.registry().len(), 1);
    assert_eq!(backend.metrics().rejected_count(Route::Enroll, Reason::ChallengeReused), 1);
}
