//! The server side of the handshake: arbitrary message 1, and arbitrary
//! message 3 against a pending state made from a real message 1.
#![no_main]
#[path = "common.rs"]
mod common;
use common::*;
use libfuzzer_sys::fuzz_target;
use oncewire::handshake::MAX_HANDSHAKE_LEN;

fn genuine_msg3() -> &'static [u8] {
    static M3: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    M3.get_or_init(|| {
        let mut m1 = [0u8; MAX_HANDSHAKE_LEN];
        let (client, n1) = client_start(&mut m1);
        let mut m2 = [0u8; MAX_HANDSHAKE_LEN];
        let (_, n2) = server_accept(server_key(), &m1[..n1], &mut m2).unwrap();
        let (id, mut signer) = device();
        let mut m3 = [0u8; MAX_HANDSHAKE_LEN];
        let (_, n3) = client.finish::<_, 4>(&clock(), &m2[..n2], id, &mut signer, limits(), &mut m3).unwrap();
        m3[..n3].to_vec()
    })
}

fuzz_target!(|data: &[u8]| {
    let server = server_key();
    let mut out = [0u8; MAX_HANDSHAKE_LEN];
    let _ = server_accept(server, data, &mut out);

    let (pending, _) = server_accept(server, &msg1(), &mut out).unwrap();
    let enrolled = (device().0, device_public());
    let mut msg3 = data.to_vec();
    let r = pending.finish::<_, 4>(&clock(), &mut msg3, &enrolled);
    if r.is_ok() {
        // Only the genuine message 3 (the corpus seed, made with the client's
        // ephemeral key and the device key) may establish a session.
        assert_eq!(data, genuine_msg3(), "a forged message 3 established a session");
    }
});
