//! Writes the fuzz seed corpus (`fuzz/corpus/<target>/`): real frames,
//! handshake messages, a token and a challenge binding, made with the fixed
//! keys in `fuzz/fuzz_targets/common.rs`, so the fuzzers start past the tag.
//!
//! `cargo run --example fuzz_corpus` (the corpus is checked in; rerun after
//! a protocol change). The fixed ephemeral keys come from a scripted RNG
//! through the normal API (`common::client_start`, `common::server_accept`).
#![allow(
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

#[path = "../fuzz/fuzz_targets/common.rs"]
mod common;

use common::*;
use oncewire::challenge::{BINDING_LEN, CHALLENGE_LEN, Challenge, StatelessChallenges};
use oncewire::handshake::MAX_HANDSHAKE_LEN;
use oncewire::hpke::{self, SingleShot};
use oncewire::prover::Prover;
use oncewire::provider::CryptoProvider;
use oncewire::replay::{Freshness, NonceRing};
use oncewire::request::{PAYLOAD_OFFSET, REQUEST_OVERHEAD, RequestSender};
use oncewire::stream::{CHUNK_HEADER_LEN, STREAM_HEADER_LEN, StreamSealer, chunk_buffer_len};
use oncewire::token::{Claims, TokenIssuer};
use oncewire::wire::buffer_len;
use oncewire::{CounterSender, OneShotSender, RustCrypto, Secret};
use std::path::Path;

/// `challenge ‖ SHA-256(request)` (SPEC.md §12), computed here from the spec.
fn bind(challenge: &Challenge, request: &[u8]) -> [u8; BINDING_LEN] {
    let mut out = [0u8; BINDING_LEN];
    out[..CHALLENGE_LEN].copy_from_slice(challenge.as_bytes());
    out[CHALLENGE_LEN..].copy_from_slice(&<RustCrypto as CryptoProvider>::sha256(&[request]));
    out
}

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus").join(target);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), bytes).unwrap();
}

/// One single-shot HPKE message to the fuzz recipient, in base mode or (with
/// a sender) auth mode.
fn hpke_seed<A: hpke::HpkeAead>(_aead: A, rng: &mut DetRng, sender: Option<&hpke::KeyPair>) -> Vec<u8> {
    let msg = b"hpke seed";
    let mut buf = vec![0u8; hpke::SINGLE_SHOT_OVERHEAD + msg.len()];
    buf[hpke::ENC_LEN..hpke::ENC_LEN + msg.len()].copy_from_slice(msg);
    let pk = hpke_recipient().public_key();
    let n = <SingleShot<A>>::seal(rng, pk, sender, b"fuzz", b"aad", &mut buf, msg.len()).unwrap();
    buf.truncate(n);
    buf
}

fn request_seed<A: hpke::HpkeAead>(_aead: A, rng: &mut DetRng, sender: Option<&hpke::KeyPair>) -> Vec<u8> {
    let msg = b"request seed";
    let mut buf = vec![0u8; REQUEST_OVERHEAD + msg.len()];
    buf[PAYLOAD_OFFSET..PAYLOAD_OFFSET + msg.len()].copy_from_slice(msg);
    let pk = hpke_recipient().public_key();
    let sealer: RequestSender<A> = RequestSender::with_suite(*pk);
    let n = sealer.seal(rng, &clock(), sender, b"fuzz", b"aad", &mut buf, msg.len()).unwrap();
    buf.truncate(n);
    buf
}

fn main() {
    let clock = clock();
    // Records and one-shot frames.
    let mut tx: CounterSender = CounterSender::new(&Secret::new(KEY), Secret::new(IV), SID, 0).unwrap();
    let mut one: OneShotSender<_> =
        OneShotSender::boot(&Secret::new(KEY), SID, oncewire::store::VolatileStore::new(), 1).unwrap();
    let mut rng = DetRng(7);
    for (i, p) in [&b""[..], b"ping", &[0xa5; 100]].iter().enumerate() {
        let mut f = vec![0u8; buffer_len(p.len())];
        let n = tx.seal(&clock, p, &mut f).unwrap();
        write("frame_open", &format!("record-{i}"), &f[..n]);
        write("frame_parse", &format!("record-{i}"), &f[..n]);
        let n = one.seal(&mut rng, &clock, p, &mut f).unwrap();
        write("frame_open", &format!("sealed-{i}"), &f[..n]);
        write("frame_parse", &format!("sealed-{i}"), &f[..n]);
    }
    let _: NonceRing<1> = NonceRing::new(Freshness::DEFAULT, [0; 16]);

    // Handshake: message 1, 2 and 3 with the fixed ephemerals of the targets.
    let m1 = msg1();
    write("handshake_server", "msg1", &m1);
    write("frame_parse", "msg1", &m1);
    let mut m2 = [0u8; MAX_HANDSHAKE_LEN];
    let (_, n2) = server_accept(server_key(), &m1, &mut m2).unwrap();
    write("handshake_client", "msg2", &m2[..n2]);
    write("frame_parse", "msg2", &m2[..n2]);
    let mut scratch = [0u8; MAX_HANDSHAKE_LEN];
    let (client, _) = client_start(&mut scratch);
    let (id, mut signer) = device();
    let mut m3 = [0u8; MAX_HANDSHAKE_LEN];
    let (mut session, n3): (oncewire::Session, usize) =
        client.finish(&clock, &m2[..n2], id, &mut signer, limits(), &mut m3).unwrap();
    write("handshake_server", "msg3", &m3[..n3]);
    write("frame_parse", "msg3", &m3[..n3]);
    let mut f = vec![0u8; buffer_len(5)];
    let n = session.seal(&clock, b"hello", &mut f).unwrap();
    write("session_open", "record-seq1", &f[..n]);

    // A token for the fuzz issuer, and a proof-prefixed variant.
    let issuer: TokenIssuer = TokenIssuer::from_bytes(&Secret::new([0x55; 32])).unwrap();
    let claims = Claims {
        iss: "fuzz",
        sub: b"fuzz-device",
        aud: "api.example",
        iat: NOW,
        nbf: NOW,
        exp: NOW + 60_000,
        jti: &[1; 16],
        cnf: issuer.cnf(&device_public()),
    };
    let mut t = [0u8; 256];
    let n = issuer.issue(&claims, &mut t).unwrap();
    write("token_verify", "token", &t[..n]);
    // `proof (88 bytes) ‖ token`: a real proof of possession for request [7; 32].
    let proof = Prover::new(&mut device().1).prove(&mut DetRng(9), &clock, &t[..n], &[7; 32]).unwrap();
    let mut with_proof = proof.to_bytes().to_vec();
    with_proof.extend_from_slice(&t[..n]);
    write("token_verify", "proof-token", &with_proof);

    // A challenge binding: first byte is the split (72), then binding ‖ request.
    let s: StatelessChallenges<RustCrypto, 8> = StatelessChallenges::new(Secret::new([0x66; 32]), 30_000, [1; 16]);
    let c = s.issue(&mut DetRng(3), &clock).unwrap();
    let request = b"POST /pay 10";
    let mut input = vec![72u8];
    input.extend_from_slice(&bind(&c, request));
    input.extend_from_slice(request);
    write("challenge_verify", "binding", &input);
    // HPKE single-shot messages, one per selector (base/auth x AES-128/256).
    let r = hpke_recipient();
    for sel in 0u8..4 {
        let sender = (sel >= 2).then(hpke_sender);
        let n = if sel % 2 == 0 {
            hpke_seed(hpke::Aes128Gcm, &mut rng, sender)
        } else {
            hpke_seed(hpke::Aes256Gcm, &mut rng, sender)
        };
        let mut input = vec![sel];
        input.extend_from_slice(&n);
        write("hpke_open", &format!("sel-{sel}"), &input);
    }
    // One-shot requests, one per selector 4-7 (base/auth x AES-128/256).
    for sel in 4u8..8 {
        let sender = (sel >= 6).then(hpke_sender);
        let n = if sel % 2 == 0 {
            request_seed(hpke::Aes128Gcm, &mut rng, sender)
        } else {
            request_seed(hpke::Aes256Gcm, &mut rng, sender)
        };
        let mut input = vec![sel];
        input.extend_from_slice(&n);
        write("hpke_open", &format!("sel-{sel}"), &input);
    }
    // A three-chunk stream (the last one short) and a one-chunk stream.
    for (name, data) in [("three-chunks", &[0x5au8; 40][..]), ("one-chunk", &b"tiny"[..])] {
        let mut header = [0u8; STREAM_HEADER_LEN];
        let mut s: StreamSealer =
            StreamSealer::start(&mut rng, r.public_key(), None, b"fuzz", 16, &mut header).unwrap();
        let mut out = header.to_vec();
        let pieces: Vec<&[u8]> = data.chunks(16).collect();
        for (i, p) in pieces.iter().enumerate() {
            let mut buf = vec![0u8; chunk_buffer_len(p.len())];
            buf[CHUNK_HEADER_LEN..CHUNK_HEADER_LEN + p.len()].copy_from_slice(p);
            let n = s.seal_chunk(&mut buf, p.len(), i + 1 == pieces.len()).unwrap();
            out.extend_from_slice(&buf[..n]);
        }
        write("stream_open", name, &out);
    }
    write("replay_model", "empty", &[]);
    write("replay_model", "ops", &[0, 1, 0, 2, 0, 3, 2, 5, 0, 2, 5, 0, 3, 7, 1, 4, 9]);
    println!("fuzz corpus written to fuzz/corpus/");
}
