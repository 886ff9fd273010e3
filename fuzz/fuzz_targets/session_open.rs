//! An established session (from a real handshake) opening arbitrary frames
//! and responses: never panics, never changes the window on failure.
#![no_main]
#[path = "common.rs"]
mod common;
use common::*;
use libfuzzer_sys::fuzz_target;
use oncewire::handshake::MAX_HANDSHAKE_LEN;
use oncewire::provider::CryptoProvider;
use oncewire::session::Session;
use oncewire::{RustCrypto, Secret};
use std::sync::OnceLock;

fn server_session() -> Session {
    static MSG3: OnceLock<Vec<u8>> = OnceLock::new();
    let server = server_key();
    let mut out = [0u8; MAX_HANDSHAKE_LEN];
    let (e, e_pub) = RustCrypto::p256_ecdh_secret_from_bytes(&Secret::new([0x44; 32])).unwrap();
    let (pending, n2) = server.accept_with(e, e_pub, NOW, &msg1(), limits(), &mut out).unwrap();
    let msg3 = MSG3.get_or_init(|| {
        let (e, e_pub) = RustCrypto::p256_ecdh_secret_from_bytes(&Secret::new([0x33; 32])).unwrap();
        let mut m1 = [0u8; MAX_HANDSHAKE_LEN];
        let (client, _) = oncewire::handshake::ClientHandshake::<RustCrypto>::start_with(
            *server.public_key(),
            *b"fuzz-hs1",
            e,
            e_pub,
            NOW,
            &mut m1,
        )
        .unwrap();
        let (id, mut signer) = device();
        let mut m3 = [0u8; MAX_HANDSHAKE_LEN];
        let (_, n3) = client.finish::<_, 32>(&clock(), &out[..n2], id, &mut signer, limits(), &mut m3).unwrap();
        m3[..n3].to_vec()
    });
    let mut m3 = msg3.clone();
    pending.finish::<_, 32>(&clock(), &mut m3, &(device().0, device_public())).unwrap()
}

fuzz_target!(|data: &[u8]| {
    static SESSION: OnceLock<std::sync::Mutex<Session>> = OnceLock::new();
    let mut s = SESSION.get_or_init(|| std::sync::Mutex::new(server_session())).lock().unwrap();
    let before = s.window().clone();
    let mut buf = data.to_vec();
    if s.open_in_place(&clock(), &mut buf).is_err() {
        assert_eq!(buf, data);
        assert_eq!(s.window(), &before);
    }
    let mut buf = data.to_vec();
    if s.open_response(&clock(), 1, &mut buf).is_err() {
        assert_eq!(buf, data);
    }
});
