//! The client side: arbitrary message 2 after a real message 1. Without the
//! server's static key nothing may authenticate.
#![no_main]
#[path = "common.rs"]
mod common;
use common::*;
use libfuzzer_sys::fuzz_target;
use oncewire::handshake::{ClientHandshake, MAX_HANDSHAKE_LEN};
use oncewire::provider::CryptoProvider;
use oncewire::{RustCrypto, Secret};

fuzz_target!(|data: &[u8]| {
    let (e, e_pub) = RustCrypto::p256_ecdh_secret_from_bytes(&Secret::new([0x33; 32])).unwrap();
    let mut out = [0u8; MAX_HANDSHAKE_LEN];
    let (client, _) =
        ClientHandshake::<RustCrypto>::start_with(*server_key().public_key(), *b"fuzz-hs1", e, e_pub, NOW, &mut out)
            .unwrap();
    let (id, mut signer) = device();
    let mut m3 = [0u8; MAX_HANDSHAKE_LEN];
    let r = client.finish::<_, 4>(&clock(), data, id, &mut signer, limits(), &mut m3);
    if r.is_ok() {
        // Only a genuine message 2 from the server key authenticates; the
        // corpus seed is one, so only byte-identical inputs may get here.
        let server = server_key();
        let (e, e_pub) = RustCrypto::p256_ecdh_secret_from_bytes(&Secret::new([0x44; 32])).unwrap();
        let (_, n) = server.accept_with(e, e_pub, NOW, &msg1(), limits(), &mut out).unwrap();
        assert_eq!(data, &out[..n], "a forged message 2 authenticated the server");
    }
});
