//! The server side of the handshake: arbitrary message 1, and arbitrary
//! message 3 against a pending state made from a real message 1.
#![no_main]
#[path = "common.rs"]
mod common;
use common::*;
use libfuzzer_sys::fuzz_target;
use oncewire::handshake::MAX_HANDSHAKE_LEN;
use oncewire::provider::CryptoProvider;
use oncewire::{RustCrypto, Secret};

fuzz_target!(|data: &[u8]| {
    let server = server_key();
    let (e, e_pub) = RustCrypto::p256_ecdh_secret_from_bytes(&Secret::new([0x44; 32])).unwrap();
    let mut out = [0u8; MAX_HANDSHAKE_LEN];
    let _ = server.accept_with(e, e_pub, NOW, data, limits(), &mut out);

    let (e, e_pub) = RustCrypto::p256_ecdh_secret_from_bytes(&Secret::new([0x44; 32])).unwrap();
    let (pending, _) = server.accept_with(e, e_pub, NOW, &msg1(), limits(), &mut out).unwrap();
    let enrolled = (device().0, device_public());
    let mut msg3 = data.to_vec();
    let r = pending.finish::<_, 4>(&clock(), &mut msg3, &enrolled);
    // Without the client's keys and the device key, nothing may succeed.
    assert!(r.is_err(), "an arbitrary message 3 established a session");
});
