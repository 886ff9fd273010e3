//! The client side: arbitrary message 2 after a real message 1. Without the
//! server's static key nothing may authenticate.
#![no_main]
#[path = "common.rs"]
mod common;
use common::*;
use libfuzzer_sys::fuzz_target;
use oncewire::handshake::MAX_HANDSHAKE_LEN;

fuzz_target!(|data: &[u8]| {
    let mut out = [0u8; MAX_HANDSHAKE_LEN];
    let (client, _) = client_start(&mut out);
    let (id, mut signer) = device();
    let mut m3 = [0u8; MAX_HANDSHAKE_LEN];
    let r = client.finish::<_, 4>(&clock(), data, id, &mut signer, limits(), &mut m3);
    if r.is_ok() {
        // Only a genuine message 2 from the server key authenticates; the
        // corpus seed is one, so only byte-identical inputs may get here.
        let (_, n) = server_accept(server_key(), &msg1(), &mut out).unwrap();
        assert_eq!(data, &out[..n], "a forged message 2 authenticated the server");
    }
});
