//! The backend and the client over real HTTP on loopback: enrollment, the
//! handshake, sealed calls, and refusals with their status and next action.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use oncewire::device::SoftwareSigner;
use oncewire::rng::OsRng;
use oncewire::{DeviceId, Limits, ServerKey};
use oncewire_http::client::{Client, ClientError};
use oncewire_http::server::{Backend, Handler};
use std::sync::Arc;

async fn serve() -> (Backend, String) {
    let key: ServerKey = ServerKey::generate(&mut OsRng).unwrap();
    let handler: Handler = Arc::new(|device, body| {
        let mut out = format!("{device:?} said ").into_bytes();
        out.extend_from_slice(body);
        out
    });
    let backend = Backend::new(key, Limits::DEFAULT, 16, 16, handler).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = backend.router();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    (backend, format!("http://{addr}"))
}

fn client(base: &str, backend: &Backend, id: &[u8]) -> Client<SoftwareSigner> {
    let signer: SoftwareSigner = SoftwareSigner::generate(&mut OsRng).unwrap();
    Client::new(base, backend.public_key(), DeviceId::new(id).unwrap(), signer)
}

#[tokio::test]
async fn enroll_connect_call_and_refusals() {
    let (backend, base) = serve().await;
    let mut c = client(&base, &backend, b"phone-1");
    c.enroll().await.unwrap();
    c.connect().await.unwrap();
    assert_eq!(backend.sessions(), 1);
    let reply = c.call(b"hello").await.unwrap();
    assert!(reply.ends_with(b" said hello"), "{}", String::from_utf8_lossy(&reply));

    // A replayed frame: dropped (400, drop), and nothing changed: the next call works.
    let (frame, _, id) = c.seal(b"pay 10").unwrap();
    c.send_raw(&id, frame.clone()).await.unwrap();
    match c.send_raw(&id, frame.clone()).await {
        Err(ClientError::Refused { status: 400, next_action }) => assert_eq!(next_action, "drop"),
        other => panic!("replay: {other:?}"),
    }
    // A tampered frame.
    let (mut f, _, _) = c.seal(b"pay 11").unwrap();
    let last = f.len() - 1;
    f[last] ^= 1;
    match c.send_raw(&id, f).await {
        Err(ClientError::Refused { status: 400, next_action }) => assert_eq!(next_action, "drop"),
        other => panic!("tamper: {other:?}"),
    }
    // An unknown session: re-handshake.
    match c.send_raw(&[9; 8], frame).await {
        Err(ClientError::Refused { status: 401, next_action }) => assert_eq!(next_action, "rehandshake"),
        other => panic!("wrong session: {other:?}"),
    }
    assert!(c.call(b"still here").await.unwrap().ends_with(b"still here"));

    // A device that never enrolled: re-enroll.
    let mut stranger = client(&base, &backend, b"phone-2");
    match stranger.connect().await {
        Err(ClientError::Refused { status: 403, next_action }) => assert_eq!(next_action, "reenroll"),
        other => panic!("unknown device: {other:?}"),
    }
    // Re-enrolling a taken id with another key: dropped.
    let mut thief = client(&base, &backend, b"phone-1");
    match thief.enroll().await {
        Err(ClientError::Refused { status: 400, next_action }) => assert_eq!(next_action, "drop"),
        other => panic!("re-enrollment: {other:?}"),
    }
}

/// A registry that answers after a delay, like a database round trip.
struct SlowRegistry(oncewire_http::store::MemoryRegistry);

impl oncewire_http::store::DeviceRegistry for SlowRegistry {
    async fn device_key(&self, device: &DeviceId) -> Result<Option<oncewire::PublicKey>, oncewire::Error> {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        self.0.device_key(device).await
    }
    async fn enroll(
        &self,
        device: oncewire::device::EnrolledDevice,
        policy: oncewire::device::ReEnrollment,
    ) -> Result<oncewire::device::Admission, oncewire::Error> {
        self.0.enroll(device, policy).await
    }
}

#[tokio::test]
async fn message_3_waits_for_an_async_registry_lookup() {
    let key: ServerKey = ServerKey::generate(&mut OsRng).unwrap();
    let handler: Handler = Arc::new(|_, body| body.to_vec());
    let registry = SlowRegistry(oncewire_http::store::MemoryRegistry::new());
    let backend = Backend::with_registry(registry, key, Limits::DEFAULT, 16, 16, handler).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let router = backend.router();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    let signer: SoftwareSigner = SoftwareSigner::generate(&mut OsRng).unwrap();
    let mut c = Client::new(&base, backend.public_key(), DeviceId::new(b"lock-7").unwrap(), signer);
    c.enroll().await.unwrap();
    assert_eq!(backend.registry().0.len(), 1);
    assert_eq!(c.call(b"echo").await.unwrap(), b"echo");
}
