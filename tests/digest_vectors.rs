//! Pinned vectors for the digests a device signs and the one-shot request
//! format (`tests/data/digests_v1.json`, `SPEC.md` §7.3, §8.3, §11.3, §13):
//! enrollment, token, token proof and `cnf` digests with their signatures,
//! the clock offset's rounding, and a one-shot HPKE request with its replay
//! id. Signatures are deterministic (RFC 6979), and the request's ephemeral
//! key comes from a fixed RNG through the normal API, so every byte is exact.
//! Each test runs once per provider: the device and the token issuer sign
//! with RustCrypto in every run (RFC 6979 pins the bytes); the hashing,
//! verification, HPKE and request paths go through the provider under test.
//! `interop/python/check_vectors.py` recomputes all of it.
//!
//! Regenerate after a deliberate change with
//! `ONCEWIRE_WRITE_VECTORS=1 cargo test --test digest_vectors`.
#![allow(
    missing_docs,
    clippy::arithmetic_side_effects,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use common::{FixedRng, load_json, pinned_json};
use oncewire::clock::ManualClock;
use oncewire::device::{DeviceId, DeviceSigner, SignatureVerifier, SoftwareSigner};
use oncewire::handshake::clock_offset;
use oncewire::hpke::{Aes256Gcm, KeyPair};
use oncewire::keyschedule::labels;
use oncewire::prover::Prover;
use oncewire::provider::{CryptoProvider, PublicKey};
use oncewire::replay::Freshness;
use oncewire::request::{PAYLOAD_OFFSET, REQUEST_OVERHEAD, RequestReceiver, RequestSender};
use oncewire::token::{Claims, TokenIssuer, TokenProof};
use oncewire::{RustCrypto, Secret};
use serde_json::{Value, json};

const PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/digests_v1.json");
const NOW: u64 = 1_767_225_600_000;

fn scalar(fill: u8) -> [u8; 32] {
    let mut s = [fill; 32];
    s[0] = 0x01;
    s
}

fn generate<P: CryptoProvider>() -> Value {
    let server = KeyPair::<P>::from_bytes(&Secret::new(scalar(0x51))).unwrap();
    let server_pk: PublicKey = *server.public_key();
    let mut device = SoftwareSigner::<RustCrypto>::from_bytes(&Secret::new(scalar(0x44))).unwrap();
    let device_pk = device.public_key().unwrap();
    let device_id = DeviceId::new(b"lock-0042").unwrap();

    // Enrollment (§8.3).
    let challenge = [0xc7u8; 32];
    let enroll =
        Prover::<_, P>::with_provider(&mut device).answer_enrollment(&server_pk, &challenge, device_id).unwrap();
    // The digests are computed here from SPEC.md, independently of the crate.
    let sha = |parts: &[&[u8]]| P::sha256(parts);
    let enroll_digest = sha(&[
        labels::ENROLLMENT,
        server_pk.as_bytes(),
        &challenge,
        &[device_id.as_bytes().len() as u8],
        device_id.as_bytes(),
        device_pk.as_bytes(),
    ]);
    assert!(SignatureVerifier::<P>::new().verify(&device_pk, &enroll_digest, &enroll.signature).is_ok());
    // The provider under test signs as well (aws-lc-rs draws random nonces,
    // so its bytes are not pinned): the other provider accepts the result.
    let mut own = SoftwareSigner::<P>::from_bytes(&Secret::new(scalar(0x44))).unwrap();
    assert_eq!(own.public_key().unwrap(), device_pk);
    let own_enroll =
        Prover::<_, P>::with_provider(&mut own).answer_enrollment(&server_pk, &challenge, device_id).unwrap();
    assert!(SignatureVerifier::<RustCrypto>::new().verify(&device_pk, &enroll_digest, &own_enroll.signature).is_ok());

    // Token (§13).
    let issuer_key = RustCrypto::signing_key_from_bytes(&Secret::new(scalar(0x66))).unwrap();
    let issuer = TokenIssuer::<RustCrypto>::new(issuer_key);
    let cnf = sha(&[labels::CNF, device_pk.as_bytes()]);
    assert_eq!(issuer.cnf(&device_pk), cnf);
    let jti = [0x0au8; 16];
    let claims = Claims {
        iss: "https://auth.example",
        sub: device_id.as_bytes(),
        aud: "api.example",
        iat: NOW,
        nbf: NOW,
        exp: NOW + 300_000,
        jti: &jti,
        cnf,
    };
    let mut buf = [0u8; 512];
    let n = issuer.issue(&claims, &mut buf).unwrap();
    let token = buf[..n].to_vec();
    let claims_len = n - 64;
    let token_digest = sha(&[labels::TOKEN, &token[..claims_len]]);

    // Token proof (§13).
    let request_bytes = b"POST /unlock";
    let proof_jti = [0x5au8; 16];
    let proof_iat = NOW + 1_000;
    let proof = Prover::<_, P>::with_provider(&mut device)
        .prove(&mut FixedRng::new(&proof_jti), &ManualClock::new(proof_iat), &token, request_bytes)
        .unwrap();
    assert_eq!(proof.jti, proof_jti);
    let p_digest =
        sha(&[labels::TOKEN_PROOF, &sha(&[&token]), &sha(&[request_bytes]), &proof_iat.to_be_bytes(), &proof_jti]);
    assert!(SignatureVerifier::<P>::new().verify(&device_pk, &p_digest, &proof.signature).is_ok());

    // One-shot request (§11.3): a fixed ephemeral key through the normal API.
    let eph = scalar(0x77);
    let msg = b"unlock door 3";
    let (app_info, app_aad) = (b"door-api".as_slice(), b"v1".as_slice());
    let mut req = vec![0u8; REQUEST_OVERHEAD + msg.len()];
    req[PAYLOAD_OFFSET..PAYLOAD_OFFSET + msg.len()].copy_from_slice(msg);
    let clock = ManualClock::new(NOW + 2_000);
    let rn = RequestSender::<Aes256Gcm, P>::with_suite(server_pk)
        .seal(&mut FixedRng::new(&eph), &clock, None, app_info, app_aad, &mut req, msg.len())
        .unwrap();
    assert_eq!(rn, req.len());
    // It opens once, through the API.
    let mut rx = RequestReceiver::<Aes256Gcm, P, 8>::new(&Secret::new([1; 32]), Freshness::DEFAULT);
    let mut copy = req.clone();
    assert_eq!(rx.open(&server, None, &clock, app_info, app_aad, &mut copy).unwrap().payload, msg);
    let mut again = req.clone();
    assert_eq!(rx.open(&server, None, &clock, app_info, app_aad, &mut again).unwrap_err(), oncewire::Error::Replay);

    let offsets: Vec<Value> =
        [(1_000u64, 0u64, 3u64), (NOW + 250, NOW, NOW + 401), (5, 10, 20), (u64::MAX, u64::MAX, u64::MAX - 1)]
            .iter()
            .map(|&(server, sent, received)| {
                json!({
                    "server_time_ms": server.to_string(),
                    "sent_ms": sent.to_string(),
                    "received_ms": received.to_string(),
                    "offset_ms": clock_offset(server, sent, received).to_string(),
                })
            })
            .collect();

    json!({
        "description": "oncewire v1 digest and one-shot request vectors (SPEC.md sections 7.3, 8.3, 11.3, 13). Byte strings are lowercase hex; u64 and i64 values are decimal strings. Signatures are raw r || s, low-S, deterministic (RFC 6979).",
        "provenance": "Generated by tests/digest_vectors.rs with ONCEWIRE_WRITE_VECTORS=1; recomputed independently by interop/python/check_vectors.py (Python cryptography).",
        "keys": {
            "server_request_secret": hex::encode(scalar(0x51)),
            "server_public": hex::encode(server_pk.as_bytes()),
            "device_secret": hex::encode(scalar(0x44)),
            "device_public": hex::encode(device_pk.as_bytes()),
            "issuer_secret": hex::encode(scalar(0x66)),
            "issuer_public": hex::encode(issuer.public_key().as_bytes()),
        },
        "enrollment": {
            "server_public": hex::encode(server_pk.as_bytes()),
            "challenge": hex::encode(challenge),
            "device_id": hex::encode(device_id.as_bytes()),
            "device_public": hex::encode(device_pk.as_bytes()),
            "digest": hex::encode(enroll_digest),
            "signature": hex::encode(enroll.signature),
        },
        "cnf": {"device_public": hex::encode(device_pk.as_bytes()), "thumbprint": hex::encode(cnf)},
        "token": {
            "claims": hex::encode(&token[..claims_len]),
            "digest": hex::encode(token_digest),
            "signature": hex::encode(&token[claims_len..]),
            "token": hex::encode(&token),
            "iat": NOW.to_string(), "nbf": NOW.to_string(), "exp": (NOW + 300_000).to_string(),
        },
        "token_proof": {
            "token": hex::encode(&token),
            "request": hex::encode(request_bytes),
            "iat": proof_iat.to_string(),
            "jti": hex::encode(proof_jti),
            "digest": hex::encode(p_digest),
            "signature": hex::encode(proof.signature),
            "proof": hex::encode(proof.to_bytes()),
        },
        "clock_offset": offsets,
        "one_shot_request": {
            "kem_id": "16", "kdf_id": "1", "aead_id": "2", "mode": "0",
            "recipient_public": hex::encode(server_pk.as_bytes()),
            "ephemeral_secret": hex::encode(eph),
            "timestamp_ms": (NOW + 2_000).to_string(),
            "app_info": hex::encode(app_info),
            "app_aad": hex::encode(app_aad),
            "info": hex::encode([b"oncewire/1 request".as_slice(), app_info].concat()),
            "aad": hex::encode([(NOW + 2_000).to_be_bytes().as_slice(), app_aad].concat()),
            "message": hex::encode(msg),
            "request": hex::encode(&req),
            "replay_id": hex::encode(&sha(&[labels::REQUEST_ID, &req[..65]])[..12]),
        },
    })
}

fn digest_and_request_vectors_are_pinned<P: CryptoProvider>() {
    let generated = generate::<P>();
    let pinned = pinned_json(PATH, &generated);
    assert_eq!(pinned, generated, "pinned digest vectors differ: the protocol changed");
}

#[test]
fn pinned_token_proof_round_trips() {
    let v = load_json(PATH);
    let proof = hex::decode(v["token_proof"]["proof"].as_str().unwrap()).unwrap();
    let p = TokenProof::from_bytes(&proof).unwrap();
    assert_eq!(p.iat.to_string(), v["token_proof"]["iat"].as_str().unwrap());
    assert_eq!(p.to_bytes().to_vec(), proof);
}

common::for_each_provider!(digest_and_request_vectors_are_pinned);
