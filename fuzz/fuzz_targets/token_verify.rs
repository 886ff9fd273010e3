//! Token verification on arbitrary bytes: never panics; only tokens signed
//! by the issuer key verify (the corpus seed is one). A bound use
//! (`proof (88 bytes) ‖ token`) that verifies is refused the second time,
//! and a refused one leaves the replay cache unchanged.
#![no_main]
#[path = "common.rs"]
mod common;
use common::*;
use libfuzzer_sys::fuzz_target;
use oncewire::cache::{Purpose, ReplayCache};
use oncewire::provider::{CryptoProvider, PublicKey};
use oncewire::replay::Freshness;
use oncewire::token::{PROOF_LEN, TokenIssuer, TokenVerifier};
use oncewire::{Error, RustCrypto, Secret};

fn issuer_public() -> PublicKey {
    static K: std::sync::OnceLock<PublicKey> = std::sync::OnceLock::new();
    *K.get_or_init(|| {
        let key = RustCrypto::signing_key_from_bytes(&Secret::new([0x55; 32])).unwrap();
        *TokenIssuer::<RustCrypto>::new(key).public_key()
    })
}

fuzz_target!(|data: &[u8]| {
    let clock = clock();
    let v = TokenVerifier::<RustCrypto>::new(issuer_public(), "api.example", 30_000);
    let _ = v.verify(data, &clock);
    let (proof, token) = data.split_at(data.len().min(PROOF_LEN));
    let mut cache =
        ReplayCache::<RustCrypto, 8>::new(Purpose::TokenProofs, &Secret::new([0x77; 32]), Freshness::DEFAULT);
    let request = [7u8; 32];
    let before = cache.ring().clone();
    match v.verify_bound(&mut cache, &clock, token, &device_public(), &request, proof) {
        Ok(t) => {
            assert!(t.key_bound());
            let again = v.verify_bound(&mut cache, &clock, token, &device_public(), &request, proof);
            assert_eq!(again.err(), Some(Error::Replay), "a token proof was accepted twice");
        }
        Err(_) => assert_eq!(cache.ring(), &before, "a refused proof changed the replay cache"),
    }
});
