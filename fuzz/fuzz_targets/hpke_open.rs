//! HPKE single-shot open on arbitrary bytes, base and auth mode, both
//! AEADs: never panics, and a failed open leaves the buffer unchanged. The
//! corpus holds real messages to the fixed recipient, so runs reach past
//! the KEM into the AEAD.
#![no_main]
#[path = "common.rs"]
mod common;
use common::*;
use libfuzzer_sys::fuzz_target;
use oncewire::RustCrypto;
use oncewire::hpke::{self, Aes128Gcm, Aes256Gcm};

fuzz_target!(|data: &[u8]| {
    let Some((&sel, msg)) = data.split_first() else { return };
    let r = hpke_recipient();
    let s = hpke_sender();
    let mut buf = msg.to_vec();
    let res = match sel % 4 {
        0 => hpke::open::<Aes128Gcm, RustCrypto>(r, b"fuzz", b"aad", &mut buf).map(|p| p.len()),
        1 => hpke::open::<Aes256Gcm, RustCrypto>(r, b"fuzz", b"aad", &mut buf).map(|p| p.len()),
        2 => hpke::open_auth::<Aes128Gcm, RustCrypto>(r, s.public_key(), b"fuzz", b"aad", &mut buf).map(|p| p.len()),
        _ => hpke::open_auth::<Aes256Gcm, RustCrypto>(r, s.public_key(), b"fuzz", b"aad", &mut buf).map(|p| p.len()),
    };
    match res {
        Ok(n) => assert_eq!(n + hpke::SINGLE_SHOT_OVERHEAD, msg.len()),
        Err(_) => assert_eq!(buf, msg, "a failed open changed the buffer"),
    }
});
