//! Token verification on arbitrary bytes: never panics; only tokens signed
//! by the issuer key verify (the corpus seed is one).
#![no_main]
#[path = "common.rs"]
mod common;
use common::*;
use libfuzzer_sys::fuzz_target;
use oncewire::provider::CryptoProvider;
use oncewire::token::{TokenIssuer, TokenVerifier};
use oncewire::{RustCrypto, Secret};

fuzz_target!(|data: &[u8]| {
    let issuer = TokenIssuer::<RustCrypto>::new(RustCrypto::signing_key_from_bytes(&Secret::new([0x55; 32])).unwrap());
    let v = TokenVerifier::<RustCrypto>::new(*issuer.public_key(), "api.example", 30_000);
    let _ = v.verify(data, NOW);
    let (proof, rest) = data.split_at(data.len().min(64));
    let _ = v.verify_bound(rest, NOW, &device_public(), &[7; 32], proof);
});
