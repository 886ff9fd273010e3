//! The flow of the Kotlin test through the Rust API of the bindings (the
//! same functions UniFFI exports), against an in-process
//! `oncewire_http::server::Backend` over loopback HTTP/1.1: `cargo test`
//! checks the bytes without a JVM.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::arithmetic_side_effects
)]

use axum::Router;
use axum::routing::post;
use oncewire::rng::OsRng;
use oncewire_http::provider::ServerKey;
use oncewire_http::server::{Backend, CheckedToken, Need, Opened, VerifiedDevice};
use oncewire_mobile::*;
use std::io::{Read, Write};
use std::sync::{Arc, Mutex};

struct Soft(Mutex<oncewire::device::SoftwareSigner>);

impl DeviceSigner for Soft {
    fn public_key(&self) -> Result<Vec<u8>, SignerError> {
        use oncewire::DeviceSigner as _;
        Ok(self.0.lock().unwrap().public_key().unwrap().as_bytes().to_vec())
    }
    fn sign_digest(&self, digest: Vec<u8>) -> Result<Signature, SignerError> {
        use oncewire::DeviceSigner as _;
        let d: [u8; 32] = digest.try_into().unwrap();
        let raw = self.0.lock().unwrap().sign_digest(&d).unwrap().to_raw_low_s().unwrap();
        Ok(Signature::Raw { bytes: raw.to_vec() })
    }
}

fn signer() -> Arc<Soft> {
    Arc::new(Soft(Mutex::new(oncewire::device::SoftwareSigner::generate(&mut OsRng).unwrap())))
}

async fn notes(VerifiedDevice(device): VerifiedDevice, Opened(body): Opened) -> Vec<u8> {
    let mut out = device.as_bytes().to_vec();
    out.extend_from_slice(b": ");
    out.extend_from_slice(&body);
    out
}

async fn orders(token: CheckedToken, Opened(_): Opened) -> Vec<u8> {
    token.subject.clone()
}

/// The server on its own runtime thread: (address, pinned key).
fn serve() -> (std::net::SocketAddr, Vec<u8>) {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        rt.block_on(async move {
            let backend = Backend::builder(ServerKey::generate(&mut OsRng).unwrap()).build().unwrap();
            let app = Router::new()
                .route("/v1/notes", post(notes))
                .route("/v1/orders", post(orders).route_layer(backend.require(Need::TOKEN)));
            let router = backend.router().merge(backend.sealed(app));
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send((listener.local_addr().unwrap(), backend.public_key().as_bytes().to_vec())).unwrap();
            axum::serve(listener, router).await.unwrap();
        });
    });
    rx.recv().unwrap()
}

/// A minimal HTTP/1.1 POST (one connection per request), as an app's stack would send it.
fn send(addr: std::net::SocketAddr, req: &HttpRequest) -> HttpResponse {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    let mut head = format!(
        "POST {} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        req.path,
        req.body.len()
    );
    for h in &req.headers {
        head.push_str(&format!("{}: {}\r\n", h.name, h.value));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(&req.body).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8(raw[..split].to_vec()).unwrap();
    let body = raw[split + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let mut resp = HttpResponse { status, content_type: None, session: None, next_action: None, body };
    for l in lines {
        let (k, v) = l.split_once(':').unwrap();
        let v = Some(v.trim().to_owned());
        match k.to_ascii_lowercase().as_str() {
            "content-type" => resp.content_type = v,
            "oncewire-session" => resp.session = v,
            "oncewire-next-action" => resp.next_action = v,
            "transfer-encoding" => panic!("chunked reply: not handled by this test client"),
            _ => {}
        }
    }
    resp
}

fn connect(c: &Client, addr: std::net::SocketAddr) {
    let m2 = send(addr, &c.handshake_start().unwrap());
    c.handshake_confirm(send(addr, &c.handshake_finish(m2).unwrap())).unwrap();
}

#[test]
fn enroll_handshake_calls_and_attacks_against_the_http_server() {
    let (addr, key) = serve();
    let phone = Client::new(key.clone(), b"phone-rs".to_vec(), signer()).unwrap();
    let ch = send(addr, &phone.enroll_challenge().unwrap());
    phone.enroll_finish(send(addr, &phone.enroll(ch).unwrap())).unwrap();
    connect(&phone, addr);
    assert!(!phone.session_status().unwrap().needs_handshake);

    let call = phone.seal("/v1/notes".into(), b"hi".to_vec()).unwrap();
    let reply = phone.open_reply(call.request_id, send(addr, &call.request)).unwrap();
    assert_eq!((reply.status, reply.body.as_slice()), (200, &b"phone-rs: hi"[..]));

    // A replayed frame: refused by the server, `drop`.
    let again = phone.open_reply(call.request_id, send(addr, &call.request)).unwrap_err();
    assert_eq!(again, OncewireError::Refused { status: 400, next_action: NextAction::Drop });

    // A tampered reply: does not open here; the genuine one still does.
    let call = phone.seal("/v1/notes".into(), b"t".to_vec()).unwrap();
    let genuine = send(addr, &call.request);
    let mut bad = genuine.clone();
    *bad.body.last_mut().unwrap() ^= 1;
    assert!(matches!(
        phone.open_reply(call.request_id, bad),
        Err(OncewireError::Protocol { next_action: NextAction::Drop, .. })
    ));
    assert!(phone.open_reply(call.request_id, genuine).is_ok());

    // A token, used by its device, then stolen by another.
    let t = phone.token_request().unwrap();
    phone.accept_token(t.request_id, send(addr, &t.request)).unwrap();
    let use_ = phone.seal_bound("/v1/orders".into(), b"GET".to_vec(), None, true).unwrap();
    assert_eq!(phone.open_reply(use_.request_id, send(addr, &use_.request)).unwrap().body, b"phone-rs");

    let tablet = Client::new(key, b"tablet-rs".to_vec(), signer()).unwrap();
    let ch = send(addr, &tablet.enroll_challenge().unwrap());
    tablet.enroll_finish(send(addr, &tablet.enroll(ch).unwrap())).unwrap();
    connect(&tablet, addr);
    tablet.set_token(phone.token().unwrap().unwrap()).unwrap();
    let stolen = tablet.seal_bound("/v1/orders".into(), b"GET".to_vec(), None, true).unwrap();
    assert_eq!(
        tablet.open_reply(stolen.request_id, send(addr, &stolen.request)).unwrap_err(),
        OncewireError::Refused { status: 401, next_action: NextAction::RefreshToken }
    );

    // Key update: the next seal is of generation 1 and is answered.
    phone.key_update_finish(send(addr, &phone.key_update("/v1/notes".into()).unwrap())).unwrap();
    let call = phone.seal("/v1/notes".into(), b"k".to_vec()).unwrap();
    assert_eq!(call.request_id.generation, 1);
    assert!(phone.open_reply(call.request_id, send(addr, &call.request)).is_ok());
}
