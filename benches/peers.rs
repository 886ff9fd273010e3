//! oncewire against the crates a user would stitch together instead, in one
//! criterion run (see BENCHMARKS.md for the table and ratios):
//!
//! - `transport/N`: a sealed message there and back, i.e. seal + open, at
//!   64 B, 1 KiB and 16 KiB: oncewire framed records (header, counter nonce,
//!   replay window), raw `aes-gcm`, `ring` AES-256-GCM, and `snow` transport
//!   messages (`Noise_NN_25519_AESGCM_SHA256`);
//!   The same group times the raw call on a payload 36 bytes into a buffer
//!   (where a frame's payload sits), to separate alignment from framing;
//! - `hpke_single_shot/N`: HPKE seal and open (DHKEM(P-256, HKDF-SHA256),
//!   HKDF-SHA256, AES-256-GCM, base mode) against the `hpke` crate.
//!
//! The handshake against `snow`'s is in `benches/handshake.rs`.
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use aes_gcm::aead::{AeadInOut, KeyInit};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use hpke::kem::DhP256HkdfSha256 as Kem;
use hpke::{Deserializable, Kem as _, OpModeR, OpModeS, Serializable};
use oncewire::clock::ManualClock;
use oncewire::hpke::{self as ow, KeyPair};
use oncewire::provider::PublicKey;
use oncewire::rng::OsRng;
use oncewire::wire::{HEADER_LEN, buffer_len};
use oncewire::{CounterReceiver, CounterSender, RustCrypto, Secret};
use std::hint::black_box;
use std::time::Duration;

const NN: &str = "Noise_NN_25519_AESGCM_SHA256";

fn snow_transport() -> (snow::TransportState, snow::TransportState) {
    let mut i = snow::Builder::new(NN.parse().unwrap()).build_initiator().unwrap();
    let mut r = snow::Builder::new(NN.parse().unwrap()).build_responder().unwrap();
    let (mut a, mut b) = ([0u8; 1024], [0u8; 1024]);
    let n = i.write_message(&[], &mut a).unwrap();
    r.read_message(&a[..n], &mut b).unwrap();
    let n = r.write_message(&[], &mut a).unwrap();
    i.read_message(&a[..n], &mut b).unwrap();
    (i.into_transport_mode().unwrap(), r.into_transport_mode().unwrap())
}

fn transport(c: &mut Criterion) {
    for size in [64usize, 1024, 16 * 1024] {
        let mut g = c.benchmark_group(format!("transport/{size}"));
        g.throughput(Throughput::Bytes(size as u64));
        g.measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1)).sample_size(50);
        let clock = ManualClock::new(1_767_225_600_000);
        let (key, iv) = ([7u8; 32], [9u8; 12]);

        let mut tx = CounterSender::<RustCrypto>::new(&Secret::new(key), Secret::new(iv), *b"benchses", 0).unwrap();
        let mut rx = CounterReceiver::<RustCrypto, 32>::new(&Secret::new(key), Secret::new(iv), *b"benchses").unwrap();
        let mut buf = vec![0xa5u8; buffer_len(size)];
        g.bench_function("oncewire", |b| {
            b.iter(|| {
                let n = tx.seal_in_place(&clock, &mut buf, size).unwrap();
                black_box(rx.open_in_place(&clock, &mut buf[..n]).unwrap().payload.len())
            })
        });

        let raw = aes_gcm::Aes256Gcm::new(&key.into());
        let aad = [0x11u8; HEADER_LEN];
        let mut data = vec![0xa5u8; size];
        let mut counter = 0u64;
        g.bench_function("raw_aes_gcm", |b| {
            b.iter(|| {
                counter += 1;
                let mut nonce = [0u8; 12];
                nonce[4..].copy_from_slice(&counter.to_be_bytes());
                let tag = raw.encrypt_inout_detached(&nonce.into(), &aad, data.as_mut_slice().into()).unwrap();
                raw.decrypt_inout_detached(&nonce.into(), &aad, data.as_mut_slice().into(), &tag).unwrap();
                black_box(data.len())
            })
        });

        // The same raw call on a payload that sits where a frame's payload
        // sits (36 bytes into the buffer), to separate alignment from framing.
        let mut framed = vec![0xa5u8; buffer_len(size)];
        g.bench_function("raw_aes_gcm_at_offset_36", |b| {
            b.iter(|| {
                counter += 1;
                let mut nonce = [0u8; 12];
                nonce[4..].copy_from_slice(&counter.to_be_bytes());
                let data = &mut framed[HEADER_LEN..HEADER_LEN + size];
                let tag = raw.encrypt_inout_detached(&nonce.into(), black_box(&aad), data.into()).unwrap();
                raw.decrypt_inout_detached(&nonce.into(), &aad, data.into(), &tag).unwrap();
                black_box(data.len())
            })
        });
        let ring_key =
            ring::aead::LessSafeKey::new(ring::aead::UnboundKey::new(&ring::aead::AES_256_GCM, &key).unwrap());
        let mut counter = 0u64;
        g.bench_function("ring_aes_gcm", |b| {
            b.iter(|| {
                counter += 1;
                let mut nonce = [0u8; 12];
                nonce[4..].copy_from_slice(&counter.to_be_bytes());
                let tag = ring_key
                    .seal_in_place_separate_tag(
                        ring::aead::Nonce::assume_unique_for_key(nonce),
                        ring::aead::Aad::from(&aad),
                        &mut data,
                    )
                    .unwrap();
                ring_key
                    .open_in_place_separate_tag(
                        ring::aead::Nonce::assume_unique_for_key(nonce),
                        ring::aead::Aad::from(&aad),
                        tag,
                        &mut data,
                        0..,
                    )
                    .unwrap();
                black_box(data.len())
            })
        });

        let (mut si, mut sr) = snow_transport();
        let msg = vec![0xa5u8; size];
        let mut wire = vec![0u8; size + 16];
        let mut out = vec![0u8; size];
        g.bench_function("snow_nn_aesgcm", |b| {
            b.iter(|| {
                let n = si.write_message(&msg, &mut wire).unwrap();
                black_box(sr.read_message(&wire[..n], &mut out).unwrap())
            })
        });

        // The sending half alone (DESIGN §7 quotes snow's write per frame).
        g.bench_function("seal_only/oncewire", |b| {
            b.iter(|| {
                buf[HEADER_LEN..HEADER_LEN + size].copy_from_slice(&msg);
                black_box(tx.seal_in_place(&clock, &mut buf, size).unwrap())
            })
        });
        g.bench_function("seal_only/snow_nn_aesgcm", |b| {
            b.iter(|| black_box(si.write_message(&msg, &mut wire).unwrap()))
        });
        g.finish();
    }
}

type TheirAead = hpke::aead::AesGcm256;
type TheirKdf = hpke::kdf::HkdfSha256;

fn hpke_single_shot(c: &mut Criterion) {
    let (their_sk, their_pk) = Kem::derive_keypair(&[42u8; 32]);
    let ours =
        KeyPair::<RustCrypto>::from_bytes(&Secret::new(their_sk.to_bytes().as_slice().try_into().unwrap())).unwrap();
    let pk = PublicKey::from_sec1_uncompressed(&their_pk.to_bytes()).unwrap();

    for size in [64usize, 1024] {
        let mut g = c.benchmark_group(format!("hpke_single_shot/{size}"));
        g.throughput(Throughput::Bytes(size as u64));
        g.measurement_time(Duration::from_secs(5)).warm_up_time(Duration::from_secs(1)).sample_size(30);

        let msg = vec![0x42u8; size];
        let mut buf = vec![0u8; ow::SINGLE_SHOT_OVERHEAD + size];
        g.bench_function("seal/oncewire", |b| {
            b.iter(|| {
                buf[ow::ENC_LEN..ow::ENC_LEN + size].copy_from_slice(&msg);
                black_box(
                    ow::SingleShot::<ow::Aes256Gcm, RustCrypto>::seal(
                        &mut OsRng, &pk, None, b"info", b"aad", &mut buf, size,
                    )
                    .unwrap(),
                )
            })
        });
        let mut tbuf = msg.clone();
        g.bench_function("seal/hpke_crate", |b| {
            b.iter(|| {
                tbuf.copy_from_slice(&msg);
                black_box(
                    hpke::single_shot_seal_inout_detached::<TheirAead, TheirKdf, Kem>(
                        &OpModeS::Base,
                        &their_pk,
                        b"info",
                        tbuf.as_mut_slice().into(),
                        b"aad",
                    )
                    .unwrap(),
                )
            })
        });

        // One sealed message, opened from a fresh copy each time.
        buf[ow::ENC_LEN..ow::ENC_LEN + size].copy_from_slice(&msg);
        let n =
            ow::SingleShot::<ow::Aes256Gcm, RustCrypto>::seal(&mut OsRng, &pk, None, b"info", b"aad", &mut buf, size)
                .unwrap();
        let sealed = buf[..n].to_vec();
        let mut work = sealed.clone();
        g.bench_function("open/oncewire", |b| {
            b.iter(|| {
                work.copy_from_slice(&sealed);
                black_box(
                    ow::SingleShot::<ow::Aes256Gcm, RustCrypto>::open(&ours, None, b"info", b"aad", &mut work)
                        .unwrap()
                        .len(),
                )
            })
        });
        let enc = <Kem as hpke::Kem>::EncappedKey::from_bytes(&sealed[..ow::ENC_LEN]).unwrap();
        let tag = hpke::aead::AeadTag::<TheirAead>::from_bytes(&sealed[n - ow::TAG_LEN..]).unwrap();
        let ct = sealed[ow::ENC_LEN..n - ow::TAG_LEN].to_vec();
        let mut twork = ct.clone();
        g.bench_function("open/hpke_crate", |b| {
            b.iter(|| {
                twork.copy_from_slice(&ct);
                hpke::single_shot_open_inout_detached::<TheirAead, TheirKdf, Kem>(
                    &OpModeR::Base,
                    &their_sk,
                    &enc,
                    b"info",
                    twork.as_mut_slice().into(),
                    b"aad",
                    &tag,
                )
                .unwrap();
                black_box(twork.len())
            })
        });
        g.finish();
    }
}

criterion_group!(benches, transport, hpke_single_shot);
criterion_main!(benches);
