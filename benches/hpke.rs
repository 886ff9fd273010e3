//! HPKE single-shot seal and open (DHKEM(P-256, HKDF-SHA256), HKDF-SHA256,
//! AES-256-GCM, base mode) of 64 B and 1 KiB: oncewire against the `hpke`
//! crate on the same suite, in one run.
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use hpke::kem::DhP256HkdfSha256 as Kem;
use hpke::{Deserializable, Kem as _, OpModeR, OpModeS, Serializable};
use oncewire::hpke::{self as ow, KeyPair};
use oncewire::provider::PublicKey;
use oncewire::rng::OsRng;
use oncewire::{RustCrypto, Secret};
use std::hint::black_box;
use std::time::Duration;

type TheirAead = hpke::aead::AesGcm256;
type TheirKdf = hpke::kdf::HkdfSha256;

fn bench(c: &mut Criterion) {
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
                    ow::seal::<ow::Aes256Gcm, RustCrypto, _>(&mut OsRng, &pk, b"info", b"aad", &mut buf, size).unwrap(),
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
        let n = ow::seal::<ow::Aes256Gcm, RustCrypto, _>(&mut OsRng, &pk, b"info", b"aad", &mut buf, size).unwrap();
        let sealed = buf[..n].to_vec();
        let mut work = sealed.clone();
        g.bench_function("open/oncewire", |b| {
            b.iter(|| {
                work.copy_from_slice(&sealed);
                black_box(ow::open::<ow::Aes256Gcm, RustCrypto>(&ours, b"info", b"aad", &mut work).unwrap().len())
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

criterion_group!(benches, bench);
criterion_main!(benches);
