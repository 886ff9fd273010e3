//! Tokens and challenges through the public API: every rejection the
//! issue lists, with its typed error.
#![allow(
    missing_docs,
    clippy::arithmetic_side_effects,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use common::bind;
use oncewire::cache::{Purpose, ReplayCache};
use oncewire::challenge::StatelessChallenges;
use oncewire::clock::ManualClock;
use oncewire::device::{DeviceSigner, SoftwareSigner};
use oncewire::prover::Prover;
use oncewire::provider::CryptoProvider;
use oncewire::replay::Freshness;
use oncewire::rng::OsRng;
use oncewire::token::{Claims, TokenIssuer, TokenVerifier};
use oncewire::{Clock, DefaultProvider, Error, Expiry, Secret};

const NOW: u64 = 1_767_225_600_000;

struct World {
    issuer: TokenIssuer,
    device: SoftwareSigner,
    token: Vec<u8>,
}

fn claims<'a>(cnf: [u8; 32], aud: &'a str) -> Claims<'a> {
    Claims {
        iss: "https://auth.example",
        sub: b"lock-0042",
        aud,
        iat: NOW,
        nbf: NOW,
        exp: NOW + 300_000,
        jti: &[7; 16],
        cnf,
    }
}

fn world() -> World {
    let mut rng = OsRng;
    let issuer = TokenIssuer::<DefaultProvider>::new(DefaultProvider::signing_key_generate(&mut rng).unwrap());
    let device = SoftwareSigner::<DefaultProvider>::generate(&mut rng).unwrap();
    let cnf = issuer.cnf(&device.public_key().unwrap());
    let mut buf = [0u8; 512];
    let n = issuer.issue(&claims(cnf, "api.example"), &mut buf).unwrap();
    World { issuer, device, token: buf[..n].to_vec() }
}

fn at(t: u64) -> ManualClock {
    ManualClock::new(t)
}

fn cache() -> ReplayCache<DefaultProvider, 64> {
    ReplayCache::new(Purpose::TokenProofs, &Secret::new([3; 32]), Freshness::DEFAULT)
}

#[test]
fn a_good_token_verifies_with_its_device_proof() {
    let mut w = world();
    let v = TokenVerifier::<DefaultProvider>::new(*w.issuer.public_key(), "api.example", 5_000);
    let req = b"POST /unlock";
    let mut proofs = cache();
    let proof = Prover::new(&mut w.device).prove(&mut OsRng, &at(NOW), &w.token, req).unwrap();
    let pk = w.device.public_key().unwrap();
    let ok = v.verify_bound(&mut proofs, &at(NOW + 1), &w.token, &pk, req, &proof.to_bytes()).unwrap();
    assert!(ok.key_bound());
    assert_eq!(ok.claims().sub, b"lock-0042");
    println!("token size: {} bytes, proof {} bytes", w.token.len(), proof.to_bytes().len());
}

#[test]
fn every_bad_token_is_rejected_with_its_error() {
    let mut w = world();
    let pk = w.device.public_key().unwrap();
    let v = TokenVerifier::<DefaultProvider>::new(*w.issuer.public_key(), "api.example", 5_000);
    let req = b"POST /unlock";
    let mut proofs = cache();
    let proof = Prover::new(&mut w.device).prove(&mut OsRng, &at(NOW), &w.token, req).unwrap().to_bytes();

    // Signed by another key.
    let other = TokenIssuer::<DefaultProvider>::new(DefaultProvider::signing_key_generate(&mut OsRng).unwrap());
    let mut buf = [0u8; 512];
    let n = other.issue(&claims(w.issuer.cnf(&pk), "api.example"), &mut buf).unwrap();
    assert_eq!(v.verify(&buf[..n], &at(NOW)).unwrap_err(), Error::Authentication);
    // For another audience.
    let n = w.issuer.issue(&claims(w.issuer.cnf(&pk), "admin.example"), &mut buf).unwrap();
    assert_eq!(v.verify(&buf[..n], &at(NOW)).unwrap_err(), Error::WrongAudience);
    // Expired (beyond leeway) and not yet valid (beyond leeway); inside the leeway both pass.
    assert_eq!(v.verify(&w.token, &at(NOW + 300_000 + 5_001)).unwrap_err(), Error::Expired(Expiry::Token));
    v.verify(&w.token, &at(NOW + 300_000 + 5_000)).unwrap();
    assert_eq!(v.verify(&w.token, &at(NOW - 5_001)).unwrap_err(), Error::NotYetValid);
    v.verify(&w.token, &at(NOW - 5_000)).unwrap();
    // Bound to another device key: a thief's own key and proof.
    let mut thief = SoftwareSigner::<DefaultProvider>::generate(&mut OsRng).unwrap();
    let thief_proof = Prover::new(&mut thief).prove(&mut OsRng, &at(NOW), &w.token, req).unwrap().to_bytes();
    assert_eq!(
        v.verify_bound(&mut proofs, &at(NOW), &w.token, &thief.public_key().unwrap(), req, &thief_proof).unwrap_err(),
        Error::KeyMismatch
    );
    // The genuine device key claimed, but the thief cannot make its proof.
    assert_eq!(
        v.verify_bound(&mut proofs, &at(NOW), &w.token, &pk, req, &thief_proof).unwrap_err(),
        Error::Authentication
    );
    // The genuine proof for another request.
    assert_eq!(
        v.verify_bound(&mut proofs, &at(NOW), &w.token, &pk, b"POST /unlock-all", &proof).unwrap_err(),
        Error::Authentication
    );
    // A proof of the wrong length.
    assert_eq!(v.verify_bound(&mut proofs, &at(NOW), &w.token, &pk, req, &proof[..87]).unwrap_err(), Error::Truncated);
    let mut long = proof.to_vec();
    long.push(0);
    assert_eq!(v.verify_bound(&mut proofs, &at(NOW), &w.token, &pk, req, &long).unwrap_err(), Error::TrailingBytes);
    // None of that consumed the genuine proof.
    assert!(proofs.ring().is_empty());
    v.verify_bound(&mut proofs, &at(NOW), &w.token, &pk, req, &proof).unwrap();
    // One claim byte changed, anywhere in the claims: never accepted.
    let claims_len = w.token.len() - 64;
    for i in 0..claims_len {
        let mut t = w.token.clone();
        t[i] ^= 0x01;
        assert!(v.verify(&t, &at(NOW)).is_err(), "byte {i} changed and still verified");
    }
    // Signature bytes changed.
    let mut t = w.token.clone();
    t[claims_len + 5] ^= 0x80;
    assert_eq!(v.verify(&t, &at(NOW)).unwrap_err(), Error::Authentication);
    // Trailing bytes and truncation.
    let mut t = w.token.clone();
    t.push(0);
    assert_eq!(v.verify(&t, &at(NOW)).unwrap_err(), Error::TrailingBytes);
    assert_eq!(v.verify(&w.token[..w.token.len() - 1], &at(NOW)).unwrap_err(), Error::Truncated);
    assert_eq!(v.verify(&w.token[..3], &at(NOW)).unwrap_err(), Error::Decode);
}

#[test]
fn challenges_are_single_use_expiring_unforgeable_and_bound() {
    let clock = ManualClock::new(NOW);
    let mut rng = OsRng;
    let mut server = StatelessChallenges::<DefaultProvider, 64>::new(Secret::new([9; 32]), 30_000, [4; 16]);
    let c = server.issue(&mut rng, &clock).unwrap();
    assert_eq!(c.expires_at_ms(), clock.now_ms() + 30_000);
    let request = br#"{"op":"transfer","amount":10}"#;
    let binding = bind(&c, request);
    // Mismatched request.
    assert_eq!(server.verify_bound(&clock, &binding, br#"{"op":"transfer","amount":99}"#), Err(Error::RequestMismatch));
    // Forged: a challenge from a server with another key.
    let other = StatelessChallenges::<DefaultProvider, 4>::new(Secret::new([8; 32]), 30_000, [4; 16]);
    let forged = other.issue(&mut rng, &clock).unwrap();
    assert_eq!(server.verify_bound(&clock, &bind(&forged, request), request), Err(Error::Authentication));
    // Answered once, then a second time.
    server.verify_bound(&clock, &binding, request).unwrap();
    assert_eq!(server.verify_bound(&clock, &binding, request), Err(Error::Replay));
    assert_eq!(server.audit().challenge_reused, 1);
    // Expired.
    let late = server.issue(&mut rng, &clock).unwrap();
    clock.advance(30_001);
    assert_eq!(server.verify_bound(&clock, &bind(&late, request), request), Err(Error::Expired(Expiry::Challenge)));
}

#[test]
fn the_used_set_never_opens_a_replay_hole_under_a_flood() {
    let clock = ManualClock::new(NOW);
    let mut rng = OsRng;
    let mut server = StatelessChallenges::<DefaultProvider, 8>::new(Secret::new([9; 32]), 60_000, [4; 16]);
    let mut answered = Vec::new();
    for i in 0..200u64 {
        let c = server.issue(&mut rng, &clock).unwrap();
        let b = bind(&c, &i.to_be_bytes());
        server.verify_bound(&clock, &b, &i.to_be_bytes()).unwrap();
        answered.push((b, i));
        clock.advance(7);
    }
    assert!(server.audit().ring_pressure > 0);
    for (b, i) in &answered {
        assert!(server.verify_bound(&clock, b, &i.to_be_bytes()).is_err(), "challenge {i} accepted twice");
    }
}
