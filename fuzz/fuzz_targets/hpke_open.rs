//! HPKE single-shot open on arbitrary bytes, base and auth mode, both
//! AEADs (selector 0-3), and one-shot requests through a
//! `RequestReceiver` with its timestamp check and replay cache (selector
//! 4-7): never panics; a failed open leaves the buffer (and the request
//! cache) unchanged; an accepted request is a replay the second time. The
//! corpus holds real messages to the fixed recipient, so runs reach past
//! the KEM into the AEAD.
#![no_main]
#[path = "common.rs"]
mod common;
use common::*;
use libfuzzer_sys::fuzz_target;
use oncewire::hpke::{self, Aes128Gcm, Aes256Gcm, HpkeAead, SingleShot};
use oncewire::provider::PublicKey;
use oncewire::replay::Freshness;
use oncewire::request::{PAYLOAD_OFFSET, REQUEST_OVERHEAD, RequestReceiver};
use oncewire::{Error, RustCrypto, Secret};

fuzz_target!(|data: &[u8]| {
    let Some((&sel, msg)) = data.split_first() else { return };
    let r = hpke_recipient();
    let s = hpke_sender();
    let mut buf = msg.to_vec();
    let res = match sel % 8 {
        0 => SingleShot::<Aes128Gcm>::open(r, None, b"fuzz", b"aad", &mut buf).map(|p| p.len()),
        1 => SingleShot::<Aes256Gcm>::open(r, None, b"fuzz", b"aad", &mut buf).map(|p| p.len()),
        2 => SingleShot::<Aes128Gcm>::open(r, Some(s.public_key()), b"fuzz", b"aad", &mut buf).map(|p| p.len()),
        3 => SingleShot::<Aes256Gcm>::open(r, Some(s.public_key()), b"fuzz", b"aad", &mut buf).map(|p| p.len()),
        4 => return request::<Aes128Gcm>(msg, None),
        5 => return request::<Aes256Gcm>(msg, None),
        6 => return request::<Aes128Gcm>(msg, Some(s.public_key())),
        _ => return request::<Aes256Gcm>(msg, Some(s.public_key())),
    };
    match res {
        Ok(n) => assert_eq!(n + hpke::SINGLE_SHOT_OVERHEAD, msg.len()),
        Err(_) => assert_eq!(buf, msg, "a failed open changed the buffer"),
    }
});

/// A request (`enc ‖ timestamp ‖ ciphertext ‖ tag`) to the fixed recipient,
/// in base mode or (with the sender's key) auth mode.
fn request<A: HpkeAead>(msg: &[u8], pk_s: Option<&PublicKey>) {
    let clock = clock();
    let mut rx = RequestReceiver::<A, RustCrypto, 8>::new(&Secret::new([0x77; 32]), Freshness::DEFAULT);
    let before = rx.cache().ring().clone();
    let mut buf = msg.to_vec();
    match rx.open(hpke_recipient(), pk_s, &clock, b"fuzz", b"aad", &mut buf) {
        Ok(opened) => {
            assert_eq!(opened.payload.len() + REQUEST_OVERHEAD, msg.len());
            let ts: [u8; 8] = msg[PAYLOAD_OFFSET - 8..PAYLOAD_OFFSET].try_into().unwrap();
            assert_eq!(opened.timestamp_ms, u64::from_be_bytes(ts));
            let held = rx.cache().ring().clone();
            let mut again = msg.to_vec();
            let r = rx.open(hpke_recipient(), pk_s, &clock, b"fuzz", b"aad", &mut again);
            assert_eq!(r.err(), Some(Error::Replay), "a request was accepted twice");
            assert_eq!(again, msg, "a refused request changed the buffer");
            assert_eq!(rx.cache().ring(), &held, "a refused request changed the replay cache");
        }
        Err(_) => {
            assert_eq!(buf, msg, "a failed open changed the buffer");
            assert_eq!(rx.cache().ring(), &before, "a failed open changed the replay cache");
        }
    }
}
