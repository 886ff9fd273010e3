//! The two providers against each other: a RustCrypto client with an
//! aws-lc-rs server, and the reverse. The handshake (with enrollment and
//! the device signature), sessions (records both ways, responses, a key
//! update), one-shot HPKE requests and single-shot HPKE, streams, and
//! tokens: whatever one side seals or signs, the other opens or verifies.
#![cfg(feature = "aws-lc-rs")]
#![allow(
    missing_docs,
    clippy::arithmetic_side_effects,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use oncewire::clock::ManualClock;
use oncewire::device::{DeviceSigner, SoftwareSigner};
use oncewire::hpke::{self as ow, Aes128Gcm, Aes256Gcm, HpkeAead, KeyPair};
use oncewire::provider::{AwsLc, CryptoProvider};
use oncewire::replay::Freshness;
use oncewire::request::{PAYLOAD_OFFSET, REQUEST_OVERHEAD, RequestReceiver, RequestSender};
use oncewire::rng::OsRng;
use oncewire::session::Received;
use oncewire::stream::{CHUNK_HEADER_LEN, STREAM_HEADER_LEN, StreamOpener, StreamSealer, chunk_buffer_len};
use oncewire::token::{Claims, TokenIssuer, TokenVerifier};
use oncewire::wire::buffer_len;
use oncewire::{Error, RustCrypto, Secret};

const NOW: u64 = 1_767_225_600_000;

fn sessions<C: CryptoProvider, S: CryptoProvider>() {
    let clock = ManualClock::new(NOW);
    let (mut c, mut sv) = common::provider_pair::<C, S>(&clock);
    for len in [0usize, 1, 64, 1024, 16 * 1024] {
        let req: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let mut f = vec![0u8; buffer_len(len)];
        let (n, id) = c.seal_request(&clock, &req, &mut f).unwrap();
        // A tampered copy fails and leaves its bytes as they were.
        let mut bad = f[..n].to_vec();
        bad[n - 1] ^= 1;
        let before = bad.clone();
        assert_eq!(sv.open_in_place(&clock, &mut bad).unwrap_err(), Error::Authentication);
        assert_eq!(bad, before);
        let Received::Record(o, got) = sv.open_in_place(&clock, &mut f[..n]).unwrap() else { panic!() };
        assert_eq!(o.payload, &req[..]);
        assert_eq!(got, id);
        let resp = vec![0xa5u8; len / 2];
        let mut r = vec![0u8; buffer_len(resp.len())];
        let rn = sv.seal_response(&clock, got, &resp, &mut r).unwrap();
        assert_eq!(c.open_response(&clock, id, &mut r[..rn]).unwrap().payload, &resp[..]);
        // And plain records from the server to the client.
        let mut p = vec![0u8; buffer_len(len)];
        let pn = sv.seal(&clock, &req, &mut p).unwrap();
        let Received::Record(o, _) = c.open_in_place(&clock, &mut p[..pn]).unwrap() else { panic!() };
        assert_eq!(o.payload, &req[..]);
    }
    // A key update from the client moves the server along.
    let mut ku = vec![0u8; buffer_len(0)];
    let n = c.update_keys(&clock, &mut ku).unwrap();
    assert!(matches!(sv.open_in_place(&clock, &mut ku[..n]).unwrap(), Received::KeyUpdated { generation: 1 }));
    let mut f = vec![0u8; buffer_len(3)];
    let n = c.seal(&clock, b"new", &mut f).unwrap();
    let Received::Record(o, _) = sv.open_in_place(&clock, &mut f[..n]).unwrap() else { panic!() };
    assert_eq!(o.payload, b"new");
}

fn requests<C: CryptoProvider, S: CryptoProvider>() {
    let server = KeyPair::<S>::generate(&mut OsRng).unwrap();
    let clock = ManualClock::new(NOW);
    let mut rx = RequestReceiver::<Aes256Gcm, S, 8>::new(&Secret::new([1; 32]), Freshness::DEFAULT);
    for msg in [&b""[..], b"unlock door 3", &[0x5a; 4096]] {
        let mut req = vec![0u8; REQUEST_OVERHEAD + msg.len()];
        req[PAYLOAD_OFFSET..PAYLOAD_OFFSET + msg.len()].copy_from_slice(msg);
        let n = RequestSender::<Aes256Gcm, C>::with_suite(*server.public_key())
            .seal(&mut OsRng, &clock, None, b"door-api", b"v1", &mut req, msg.len())
            .unwrap();
        let mut copy = req[..n].to_vec();
        assert_eq!(rx.open(&server, None, &clock, b"door-api", b"v1", &mut copy).unwrap().payload, msg);
        let mut again = req[..n].to_vec();
        assert_eq!(rx.open(&server, None, &clock, b"door-api", b"v1", &mut again).unwrap_err(), Error::Replay);
    }
}

fn single_shot_one<A: HpkeAead, C: CryptoProvider, S: CryptoProvider>() {
    let r = KeyPair::<S>::generate(&mut OsRng).unwrap();
    let s = KeyPair::<C>::generate(&mut OsRng).unwrap();
    for auth in [false, true] {
        let sender = auth.then_some(&s);
        let mut buf = vec![0u8; ow::SINGLE_SHOT_OVERHEAD + 8];
        buf[ow::ENC_LEN..ow::ENC_LEN + 8].copy_from_slice(b"one shot");
        let n = ow::SingleShot::<A, C>::seal(&mut OsRng, r.public_key(), sender, b"info", b"aad", &mut buf, 8).unwrap();
        buf.truncate(n);
        let pk = auth.then(|| *s.public_key());
        assert_eq!(ow::SingleShot::<A, S>::open(&r, pk.as_ref(), b"info", b"aad", &mut buf).unwrap(), b"one shot");
    }
}

fn single_shot<C: CryptoProvider, S: CryptoProvider>() {
    single_shot_one::<Aes128Gcm, C, S>();
    single_shot_one::<Aes256Gcm, C, S>();
}

fn streams<C: CryptoProvider, S: CryptoProvider>() {
    // The server (C here) streams firmware to a device key held under S.
    let device = KeyPair::<S>::generate(&mut OsRng).unwrap();
    let data: Vec<u8> = (0..5000).map(|i| (i * 31 % 251) as u8).collect();
    let max = 1024;
    let mut header = [0u8; STREAM_HEADER_LEN];
    let mut s =
        StreamSealer::<Aes256Gcm, C>::start(&mut OsRng, device.public_key(), None, b"fw", max, &mut header).unwrap();
    let pieces: Vec<&[u8]> = data.chunks(max).collect();
    let mut chunks = Vec::new();
    for (i, p) in pieces.iter().enumerate() {
        let mut buf = vec![0u8; chunk_buffer_len(p.len())];
        buf[CHUNK_HEADER_LEN..CHUNK_HEADER_LEN + p.len()].copy_from_slice(p);
        s.seal_chunk(&mut buf, p.len(), i + 1 == pieces.len()).unwrap();
        chunks.push(buf);
    }
    let mut o = StreamOpener::<Aes256Gcm, S>::start(&header, &device, None, b"fw").unwrap();
    let mut out = Vec::new();
    for c in &mut chunks {
        out.extend_from_slice(o.open_chunk(c).unwrap().data);
    }
    o.finish().unwrap();
    assert_eq!(out, data);
}

fn tokens<C: CryptoProvider, S: CryptoProvider>() {
    let issuer = TokenIssuer::<S>::new(S::signing_key_generate(&mut OsRng).unwrap());
    let device = SoftwareSigner::<C>::generate(&mut OsRng).unwrap();
    let cnf = issuer.cnf(&device.public_key().unwrap());
    let claims = Claims {
        iss: "https://auth.example",
        sub: b"lock-0042",
        aud: "api.example",
        iat: NOW,
        nbf: NOW,
        exp: NOW + 300_000,
        jti: &[7; 16],
        cnf,
    };
    let mut buf = [0u8; 512];
    let n = issuer.issue(&claims, &mut buf).unwrap();
    let v = TokenVerifier::<C>::new(*issuer.public_key(), "api.example", 5_000);
    v.verify(&buf[..n], &ManualClock::new(NOW)).unwrap();
    buf[n - 1] ^= 1;
    assert_eq!(v.verify(&buf[..n], &ManualClock::new(NOW)).unwrap_err(), Error::Authentication);
}

/// The same secret gives the same public key, ECDH value and verifiable
/// signatures under both providers.
fn primitives<C: CryptoProvider, S: CryptoProvider>() {
    let a = Secret::new([0x21; 32]);
    let b = Secret::new([0x42; 32]);
    let (ca, cpa) = C::p256_ecdh_secret_from_bytes(&a).unwrap();
    let (sb, spb) = S::p256_ecdh_secret_from_bytes(&b).unwrap();
    assert_eq!(C::p256_ecdh(&ca, &spb).unwrap(), S::p256_ecdh(&sb, &cpa).unwrap());
    let key = C::signing_key_from_bytes(&a).unwrap();
    assert_eq!(C::signing_key_public(&key), cpa);
    let digest = S::sha256(&[b"cross", b"provider"]);
    assert_eq!(digest, C::sha256(&[b"crossprovider"]));
    assert_eq!(C::hmac_sha256(b"k", &[b"a", b"b"]), S::hmac_sha256(b"k", &[b"ab"]));
    let sig = C::ecdsa_sign_prehash(&key, &digest).unwrap();
    S::ecdsa_verify_prehash(&cpa, &digest, &sig).unwrap();
    let mut wrong = digest;
    wrong[0] ^= 1;
    assert_eq!(S::ecdsa_verify_prehash(&cpa, &wrong, &sig).unwrap_err(), Error::Authentication);
}

macro_rules! both_ways {
    ($($name:ident),* $(,)?) => {
        mod rustcrypto_client_awslc_server {
            $( #[test] fn $name() { super::$name::<super::RustCrypto, super::AwsLc>(); } )*
        }
        mod awslc_client_rustcrypto_server {
            $( #[test] fn $name() { super::$name::<super::AwsLc, super::RustCrypto>(); } )*
        }
    };
}

both_ways!(sessions, requests, single_shot, streams, tokens, primitives);
