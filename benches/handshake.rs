//! The full handshake (client and server, all three messages) against the
//! sum of the raw `p256` operations it performs: two key generations, four
//! ECDH, one ECDSA sign and one ECDSA verify. The ratio shows what the
//! protocol adds on top of its P-256 work (target: within 10%). In the same
//! run, `snow`'s `Noise_NK_25519_AESGCM_SHA256` (the same pattern over
//! X25519, no device signature) and `Noise_NN_25519_AESGCM_SHA256`
//! handshakes, the peer a user would pick instead.
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use criterion::{Criterion, criterion_group, criterion_main};
use oncewire::clock::ManualClock;
use oncewire::device::{DeviceId, DeviceSigner, SoftwareSigner};
use oncewire::handshake::{ClientHandshake, MAX_HANDSHAKE_LEN, ServerKey};
use oncewire::rng::{OsRng, TryRng};
use oncewire::session::Limits;
use oncewire::{RustCrypto, Secret};
use p256::ecdsa::signature::hazmat::{PrehashSigner, PrehashVerifier};
use std::hint::black_box;
use std::time::Duration;

fn random_scalar() -> p256::NonZeroScalar {
    loop {
        let mut b = [0u8; 32];
        OsRng.try_fill_bytes(&mut b).unwrap();
        if let Some(s) = Option::from(p256::NonZeroScalar::from_repr(b.into())) {
            return s;
        }
    }
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("handshake");
    g.measurement_time(Duration::from_secs(8)).warm_up_time(Duration::from_secs(2)).sample_size(30);

    let clock = ManualClock::new(1_767_225_600_000);
    let server = ServerKey::<RustCrypto>::generate(&mut OsRng).unwrap();
    let device = DeviceId::new(b"bench-device").unwrap();
    let mut signer = SoftwareSigner::<RustCrypto>::from_bytes(&Secret::new([7; 32])).unwrap();
    let enrolled = (device, signer.public_key().unwrap());

    g.bench_function("oncewire_full", |b| {
        b.iter(|| {
            let mut rng = OsRng;
            let mut m1 = [0u8; MAX_HANDSHAKE_LEN];
            let (client, n1) =
                ClientHandshake::<RustCrypto>::start(*server.public_key(), &mut rng, &clock, &mut m1).unwrap();
            let mut m2 = [0u8; MAX_HANDSHAKE_LEN];
            let (pending, n2) = server.accept(&mut rng, &clock, &m1[..n1], Limits::DEFAULT, &mut m2).unwrap();
            let mut m3 = [0u8; MAX_HANDSHAKE_LEN];
            let (cs, n3) =
                client.finish::<_, 32>(&clock, &m2[..n2], device, &mut signer, Limits::DEFAULT, &mut m3).unwrap();
            let ss = pending.finish::<_, 32>(&clock, &mut m3[..n3], &enrolled).unwrap();
            black_box((cs, ss))
        })
    });

    // The same P-256 work with the raw crate, nothing else.
    let server_sk = random_scalar();
    let server_pk = p256::PublicKey::from_secret_scalar(&server_sk);
    let device_sk = p256::ecdsa::SigningKey::from(random_scalar());
    let device_vk = *device_sk.verifying_key();
    g.bench_function("p256_ops_sum", |b| {
        b.iter(|| {
            let ce = random_scalar();
            let ce_pub = p256::PublicKey::from_secret_scalar(&ce); // client keygen
            let se = random_scalar();
            let se_pub = p256::PublicKey::from_secret_scalar(&se); // server keygen
            let es_c = p256::ecdh::diffie_hellman(ce, server_pk.as_affine());
            let es_s = p256::ecdh::diffie_hellman(server_sk, ce_pub.as_affine());
            let ee_s = p256::ecdh::diffie_hellman(se, ce_pub.as_affine());
            let ee_c = p256::ecdh::diffie_hellman(ce, se_pub.as_affine());
            let digest = [black_box(9u8); 32];
            let sig: p256::ecdsa::Signature = device_sk.sign_prehash(&digest).unwrap();
            device_vk.verify_prehash(&digest, &sig).unwrap();
            black_box((es_c, es_s, ee_s, ee_c))
        })
    });
    let nk = "Noise_NK_25519_AESGCM_SHA256";
    let server_static = snow::Builder::new(nk.parse().unwrap()).generate_keypair().unwrap();
    for (name, pattern) in [("snow_nk_25519", nk), ("snow_nn_25519", "Noise_NN_25519_AESGCM_SHA256")] {
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut ib = snow::Builder::new(pattern.parse().unwrap());
                let mut rb = snow::Builder::new(pattern.parse().unwrap());
                if pattern == nk {
                    ib = ib.remote_public_key(&server_static.public).unwrap();
                    rb = rb.local_private_key(&server_static.private).unwrap();
                }
                let mut i = ib.build_initiator().unwrap();
                let mut r = rb.build_responder().unwrap();
                let (mut a, mut p) = ([0u8; 256], [0u8; 256]);
                let n = i.write_message(&[], &mut a).unwrap();
                r.read_message(&a[..n], &mut p).unwrap();
                let n = r.write_message(&[], &mut a).unwrap();
                i.read_message(&a[..n], &mut p).unwrap();
                black_box((i.into_transport_mode().unwrap(), r.into_transport_mode().unwrap()))
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
