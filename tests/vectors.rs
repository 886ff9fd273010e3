//! The pinned wire-format vectors in `tests/data/frames_v1.json`, run through
//! the public API: exact frame bytes for fixed inputs, and the typed error
//! for each malformed frame.
//!
//! To regenerate the file after a deliberate protocol change, run
//! `ONCEWIRE_WRITE_VECTORS=1 cargo test --test vectors` and review the diff
//! (and `SPEC.md`) in the same commit.
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
use oncewire::provider::CryptoProvider;
use oncewire::replay::{Freshness, NonceRing};
use oncewire::{CounterReceiver, CounterSender, Error, OneShotReceiver, OneShotSender, Secret};
use serde_json::{Value, json};

const PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/frames_v1.json");

/// u64 values are decimal strings in every vector file: JSON numbers above
/// 2^53 lose precision in JavaScript's `JSON.parse`.
fn u64_of(v: &Value) -> u64 {
    v.as_str().expect("u64 as a decimal string").parse().expect("decimal u64")
}

/// SPEC §3.1: IV XOR (0^4 ‖ seq), computed here independently of the crate.
fn counter_nonce(iv: &[u8; 12], seq: u64) -> [u8; 12] {
    let mut n = *iv;
    for (t, s) in n[4..].iter_mut().zip(seq.to_be_bytes()) {
        *t ^= s;
    }
    n
}

fn h(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().expect("hex string")).expect("valid hex")
}
fn arr<const N: usize>(v: &Value) -> [u8; N] {
    h(v).try_into().expect("length")
}

struct RecordIn {
    name: &'static str,
    key: [u8; 32],
    iv: [u8; 12],
    session_id: [u8; 8],
    seq: u64,
    ts: u64,
    payload: Vec<u8>,
}

fn record_inputs() -> Vec<RecordIn> {
    let key: [u8; 32] = core::array::from_fn(|i| i as u8);
    let iv: [u8; 12] = core::array::from_fn(|i| 0xa0 + i as u8);
    vec![
        RecordIn {
            name: "record-seq0-hello",
            key,
            iv,
            session_id: *b"sess-001",
            seq: 0,
            ts: 1_767_225_600_000,
            payload: b"hello, oncewire".to_vec(),
        },
        RecordIn {
            name: "record-seq1-empty",
            key,
            iv,
            session_id: *b"sess-001",
            seq: 1,
            ts: 1_767_225_600_001,
            payload: vec![],
        },
        RecordIn {
            name: "record-high-seq-64B",
            key: [0x42; 32],
            iv: [0xff; 12],
            session_id: [0, 1, 2, 3, 4, 5, 6, 7],
            seq: 0x0123_4567_89ab_cdef,
            ts: 1_767_225_600_123,
            payload: (0..64u8).collect(),
        },
    ]
}

struct SealedIn {
    name: &'static str,
    key: [u8; 32],
    key_id: [u8; 8],
    nonce: [u8; 12],
    ts: u64,
    payload: Vec<u8>,
}

fn sealed_inputs() -> Vec<SealedIn> {
    vec![
        SealedIn {
            name: "sealed-oneshot-json",
            key: [0x11; 32],
            key_id: *b"srv-key1",
            nonce: [0x5a; 12],
            ts: 1_767_225_600_000,
            payload: br#"{"score":9001}"#.to_vec(),
        },
        SealedIn {
            name: "sealed-oneshot-empty",
            key: [0x22; 32],
            key_id: *b"srv-key2",
            nonce: core::array::from_fn(|i| 0x10 * i as u8),
            ts: 1,
            payload: vec![],
        },
    ]
}

fn seal_record<P: CryptoProvider>(v: &RecordIn) -> Vec<u8> {
    let clock = ManualClock::new(v.ts);
    let mut tx = CounterSender::<P>::new(&Secret::new(v.key), Secret::new(v.iv), v.session_id, v.seq).unwrap();
    let mut buf = vec![0u8; oncewire::wire::buffer_len(v.payload.len())];
    let n = tx.seal(&clock, &v.payload, &mut buf).unwrap();
    buf.truncate(n);
    buf
}

fn seal_oneshot<P: CryptoProvider>(v: &SealedIn) -> Vec<u8> {
    let clock = ManualClock::new(v.ts);
    let mut tx =
        OneShotSender::<_, P>::boot(&Secret::new(v.key), v.key_id, oncewire::store::VolatileStore::new(), 1).unwrap();
    let mut buf = vec![0u8; oncewire::wire::buffer_len(v.payload.len())];
    let n = tx.seal(&mut FixedRng::new(&v.nonce), &clock, &v.payload, &mut buf).unwrap();
    buf.truncate(n);
    buf
}

/// Malformed variants of the first record vector: (name, frame, error).
fn invalid_frames(good: &[u8]) -> Vec<(&'static str, Vec<u8>, Error)> {
    let edited = |edit: &dyn Fn(&mut Vec<u8>)| {
        let mut f = good.to_vec();
        edit(&mut f);
        f
    };
    let last = good.len() - 1;
    vec![
        ("bad-version", edited(&|f| f[0] = 0x02), Error::UnsupportedVersion(2)),
        ("unknown-type", edited(&|f| f[1] = 0x7e), Error::UnknownFrameType(0x7e)),
        ("strategy-mismatch", edited(&|f| f[2] = 0x02), Error::Malformed),
        ("reserved-nonzero", edited(&|f| f[3] = 0x80), Error::Malformed),
        ("counter-padding-nonzero", edited(&|f| f[12] = 0x01), Error::Malformed),
        ("key-update-with-payload", edited(&|f| f[1] = 0x04), Error::Malformed),
        ("trailing-byte", edited(&|f| f.push(0)), Error::TrailingBytes),
        ("truncated-tag", good[..last].to_vec(), Error::Truncated),
        ("header-only-prefix", good[..20].to_vec(), Error::Truncated),
        ("length-says-longer", edited(&|f| f[35] += 1), Error::Truncated),
        ("length-says-shorter", edited(&|f| f[35] -= 1), Error::TrailingBytes),
        ("wrong-session-id", edited(&|f| f[4] ^= 0x01), Error::UnknownSession),
        ("bad-tag", edited(&|f| f[last] ^= 0x01), Error::Authentication),
        ("bad-ciphertext", edited(&|f| f[36] ^= 0x80), Error::Authentication),
        ("timestamp-changed", edited(&|f| f[31] ^= 0x01), Error::Authentication),
    ]
}

fn generate<P: CryptoProvider>() -> Value {
    let records: Vec<Value> = record_inputs()
        .iter()
        .map(|v| {
            let frame = seal_record::<P>(v);
            json!({
                "name": v.name,
                "key": hex::encode(v.key),
                "iv": hex::encode(v.iv),
                "session_id": hex::encode(v.session_id),
                "seq": v.seq.to_string(),
                "timestamp_ms": v.ts.to_string(),
                "payload": hex::encode(&v.payload),
                "nonce": hex::encode(counter_nonce(&v.iv, v.seq)),
                "header": hex::encode(&frame[..36]),
                "frame": hex::encode(&frame),
            })
        })
        .collect();
    let sealed: Vec<Value> = sealed_inputs()
        .iter()
        .map(|v| {
            let frame = seal_oneshot::<P>(v);
            json!({
                "name": v.name,
                "key": hex::encode(v.key),
                "key_id": hex::encode(v.key_id),
                "nonce": hex::encode(v.nonce),
                "timestamp_ms": v.ts.to_string(),
                "payload": hex::encode(&v.payload),
                "header": hex::encode(&frame[..36]),
                "frame": hex::encode(&frame),
            })
        })
        .collect();
    let good = seal_record::<P>(&record_inputs()[0]);
    let invalid: Vec<Value> = invalid_frames(&good)
        .into_iter()
        .map(|(name, frame, err)| {
            json!({"name": name, "receiver": "record-seq0-hello", "frame": hex::encode(frame), "error": format!("{err:?}")})
        })
        .collect();
    json!({
        "description": "oncewire wire format v1 test vectors (SPEC.md section 2 and 3). All byte strings are hex.",
        "provenance": "Generated by tests/vectors.rs with ONCEWIRE_WRITE_VECTORS=1 from the fixed inputs listed here; AES-256-GCM outputs cross-checked with Python `cryptography` (interop/python).",
        "record": records,
        "sealed": sealed,
        "invalid": invalid,
    })
}

fn load() -> Value {
    load_json(PATH)
}

fn vectors_file_matches_the_implementation<P: CryptoProvider>() {
    let generated = generate::<P>();
    assert_eq!(pinned_json(PATH, &generated), generated, "pinned vectors differ: the wire format changed");
}

fn record_vectors_seal_and_open<P: CryptoProvider>() {
    let v = load();
    let records = v["record"].as_array().unwrap();
    assert!(records.len() >= 3);
    for r in records {
        let (key, iv, sid) = (arr::<32>(&r["key"]), arr::<12>(&r["iv"]), arr::<8>(&r["session_id"]));
        let seq = u64_of(&r["seq"]);
        let ts = u64_of(&r["timestamp_ms"]);
        let payload = h(&r["payload"]);
        let frame = h(&r["frame"]);
        assert_eq!(&frame[..36], &h(&r["header"])[..]);
        let clock = ManualClock::new(ts);
        let mut tx = CounterSender::<P>::new(&Secret::new(key), Secret::new(iv), sid, seq).unwrap();
        let mut buf = vec![0u8; frame.len()];
        let n = tx.seal(&clock, &payload, &mut buf).unwrap();
        assert_eq!(&buf[..n], &frame[..], "{}", r["name"]);
        let mut rx = CounterReceiver::<P, 4>::new(&Secret::new(key), Secret::new(iv), sid).unwrap();
        let mut copy = frame.clone();
        let opened = rx.open_in_place(&clock, &mut copy).unwrap();
        assert_eq!(opened.payload, &payload[..]);
        assert_eq!(opened.header.timestamp_ms, ts);
    }
}

fn sealed_vectors_seal_and_open<P: CryptoProvider>() {
    let v = load();
    for r in v["sealed"].as_array().unwrap() {
        let (key, kid, nonce) = (arr::<32>(&r["key"]), arr::<8>(&r["key_id"]), arr::<12>(&r["nonce"]));
        let ts = u64_of(&r["timestamp_ms"]);
        let payload = h(&r["payload"]);
        let frame = h(&r["frame"]);
        let clock = ManualClock::new(ts);
        let mut tx =
            OneShotSender::<_, P>::boot(&Secret::new(key), kid, oncewire::store::VolatileStore::new(), 1).unwrap();
        let mut buf = vec![0u8; frame.len()];
        let n = tx.seal(&mut FixedRng::new(&nonce), &clock, &payload, &mut buf).unwrap();
        assert_eq!(&buf[..n], &frame[..], "{}", r["name"]);
        let ring = NonceRing::<8>::new(Freshness::DEFAULT, [3; 16]);
        let mut rx = OneShotReceiver::<P, 8>::new(&Secret::new(key), kid, ring).unwrap();
        let mut copy = frame.clone();
        assert_eq!(rx.open_in_place(&clock, &mut copy).unwrap().payload, &payload[..]);
        let mut again = frame.clone();
        assert_eq!(rx.open_in_place(&clock, &mut again).unwrap_err(), Error::Replay);
    }
}

fn invalid_vectors_give_their_typed_error_and_change_nothing<P: CryptoProvider>() {
    let v = load();
    let first = &v["record"][0];
    let (key, iv, sid) = (arr::<32>(&first["key"]), arr::<12>(&first["iv"]), arr::<8>(&first["session_id"]));
    let clock = ManualClock::new(u64_of(&first["timestamp_ms"]));
    let mut rx = CounterReceiver::<P, 4>::new(&Secret::new(key), Secret::new(iv), sid).unwrap();
    let invalid = v["invalid"].as_array().unwrap();
    assert!(invalid.len() >= 10);
    for case in invalid {
        let mut frame = h(&case["frame"]);
        let before = frame.clone();
        let err = rx.open_in_place(&clock, &mut frame).unwrap_err();
        assert_eq!(format!("{err:?}"), case["error"].as_str().unwrap(), "{}", case["name"]);
        assert_eq!(frame, before, "{}: buffer changed", case["name"]);
        assert_eq!(rx.window(), &oncewire::replay::CounterWindow::<4>::new());
    }
    // The legitimate frame still opens afterwards.
    let mut good = h(&first["frame"]);
    rx.open_in_place(&clock, &mut good).unwrap();
}

common::for_each_provider!(
    vectors_file_matches_the_implementation,
    record_vectors_seal_and_open,
    sealed_vectors_seal_and_open,
    invalid_vectors_give_their_typed_error_and_change_nothing
);
