//! The server provider (`AwsLc`, feature `aws-lc-rs`) against what a backend
//! would use otherwise, in one criterion run (BENCHMARKS.md has the ratios;
//! DESIGN.md §7 has the bars):
//!
//! - `aws_transport/N`: seal + open at 64 B, 1 KiB and 16 KiB: oncewire
//!   framed records on `AwsLc` (opened in place, and `_to`: out of place
//!   into a second buffer), raw aws-lc-rs AES-256-GCM (36-byte AAD, as a
//!   frame header), raw `ring`, and `snow` transport messages with its ring
//!   resolver (`Noise_NN_25519_AESGCM_SHA256`);
//! - `aws_handshake`: the server's side of the handshake (message 2 and the
//!   check of message 3) and the full handshake on both providers, and a
//!   rustls 0.23 TLS 1.3 handshake with client certificates, ECDSA P-256
//!   (certificates and key exchange), on its aws-lc-rs provider, in memory;
//! - `aws_hpke_single_shot/N`: HPKE single-shot seal and open on both
//!   providers against the `hpke` crate.
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
use oncewire::clock::ManualClock;
use oncewire::device::{DeviceId, DeviceSigner, SoftwareSigner};
use oncewire::handshake::{ClientHandshake, MAX_HANDSHAKE_LEN, ServerKey};
use oncewire::hpke::{self as ow, KeyPair};
use oncewire::provider::{AwsLc, CryptoProvider, PublicKey};
use oncewire::rng::OsRng;
use oncewire::session::Limits;
use oncewire::wire::{HEADER_LEN, buffer_len};
use oncewire::{CounterReceiver, CounterSender, RustCrypto, Secret};
use std::hint::black_box;
use std::io::{Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

const NN: &str = "Noise_NN_25519_AESGCM_SHA256";

fn ring_resolver() -> snow::resolvers::BoxedCryptoResolver {
    Box::new(snow::resolvers::FallbackResolver::new(
        Box::new(snow::resolvers::RingResolver),
        Box::new(snow::resolvers::DefaultResolver),
    ))
}

fn snow_transport() -> (snow::TransportState, snow::TransportState) {
    let mut i = snow::Builder::with_resolver(NN.parse().unwrap(), ring_resolver()).build_initiator().unwrap();
    let mut r = snow::Builder::with_resolver(NN.parse().unwrap(), ring_resolver()).build_responder().unwrap();
    let (mut a, mut b) = ([0u8; 1024], [0u8; 1024]);
    let n = i.write_message(&[], &mut a).unwrap();
    r.read_message(&a[..n], &mut b).unwrap();
    let n = r.write_message(&[], &mut a).unwrap();
    i.read_message(&a[..n], &mut b).unwrap();
    (i.into_transport_mode().unwrap(), r.into_transport_mode().unwrap())
}

fn transport(c: &mut Criterion) {
    for size in [64usize, 1024, 16 * 1024] {
        let mut g = c.benchmark_group(format!("aws_transport/{size}"));
        g.throughput(Throughput::Bytes(size as u64));
        g.measurement_time(Duration::from_secs(2)).warm_up_time(Duration::from_millis(500)).sample_size(40);
        let clock = ManualClock::new(1_767_225_600_000);
        let (key, iv) = ([7u8; 32], [9u8; 12]);

        let mut tx = CounterSender::<AwsLc>::new(&Secret::new(key), Secret::new(iv), *b"benchses", 0).unwrap();
        let mut rx = CounterReceiver::<AwsLc, 32>::new(&Secret::new(key), Secret::new(iv), *b"benchses").unwrap();
        let mut buf = vec![0xa5u8; buffer_len(size)];
        g.bench_function("oncewire_awslc", |b| {
            b.iter(|| {
                let n = tx.seal_in_place(&clock, &mut buf, size).unwrap();
                black_box(rx.open_in_place(&clock, &mut buf[..n]).unwrap().payload.len())
            })
        });

        // The same, opened out of place into a second buffer (as snow's
        // read_message and an HTTP body are): AWS-LC decrypts straight into
        // `out`, with no copy of the ciphertext first.
        let mut tx = CounterSender::<AwsLc>::new(&Secret::new(key), Secret::new(iv), *b"benchses", 0).unwrap();
        let mut rx = CounterReceiver::<AwsLc, 32>::new(&Secret::new(key), Secret::new(iv), *b"benchses").unwrap();
        let mut out = vec![0u8; size];
        g.bench_function("oncewire_awslc_to", |b| {
            b.iter(|| {
                let n = tx.seal_in_place(&clock, &mut buf, size).unwrap();
                black_box(rx.open_to(&clock, &buf[..n], &mut out).unwrap().payload.len())
            })
        });

        let aad = [0x11u8; HEADER_LEN];
        let mut data = vec![0xa5u8; size];
        let aws_key = aws_lc_rs::aead::LessSafeKey::new(
            aws_lc_rs::aead::UnboundKey::new(&aws_lc_rs::aead::AES_256_GCM, &key).unwrap(),
        );
        let mut counter = 0u64;
        g.bench_function("raw_aws_lc", |b| {
            b.iter(|| {
                counter += 1;
                let mut nonce = [0u8; 12];
                nonce[4..].copy_from_slice(&counter.to_be_bytes());
                let tag = aws_key
                    .seal_in_place_separate_tag(
                        aws_lc_rs::aead::Nonce::assume_unique_for_key(nonce),
                        aws_lc_rs::aead::Aad::from(&aad),
                        &mut data,
                    )
                    .unwrap();
                aws_key
                    .open_in_place_separate_tag(
                        aws_lc_rs::aead::Nonce::assume_unique_for_key(nonce),
                        aws_lc_rs::aead::Aad::from(&aad),
                        tag.as_ref(),
                        &mut data,
                    )
                    .unwrap();
                black_box(data.len())
            })
        });

        let ring_key =
            ring::aead::LessSafeKey::new(ring::aead::UnboundKey::new(&ring::aead::AES_256_GCM, &key).unwrap());
        g.bench_function("raw_ring", |b| {
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
        g.bench_function("snow_ring", |b| {
            b.iter(|| {
                let n = si.write_message(&msg, &mut wire).unwrap();
                black_box(sr.read_message(&wire[..n], &mut out).unwrap())
            })
        });
        g.finish();
    }
}

/// One full handshake; `server_only` times only `accept` and the server's
/// `finish` (the client's steps run outside the clock).
fn handshake_iters<P: CryptoProvider>(iters: u64, server_only: bool) -> Duration {
    let clock = ManualClock::new(1_767_225_600_000);
    let server = ServerKey::<P>::from_bytes(&Secret::new([0x11; 32])).unwrap();
    let device = DeviceId::new(b"bench-device").unwrap();
    let mut signer = SoftwareSigner::<P>::from_bytes(&Secret::new([7; 32])).unwrap();
    let enrolled = (device, signer.public_key().unwrap());
    let mut timed = Duration::ZERO;
    let start = Instant::now();
    for _ in 0..iters {
        let mut m1 = [0u8; MAX_HANDSHAKE_LEN];
        let (client, n1) = ClientHandshake::<P>::start(*server.public_key(), &mut OsRng, &clock, &mut m1).unwrap();
        let t = Instant::now();
        let mut m2 = [0u8; MAX_HANDSHAKE_LEN];
        let (pending, n2) = server.accept(&mut OsRng, &clock, &m1[..n1], Limits::DEFAULT, &mut m2).unwrap();
        timed += t.elapsed();
        let mut m3 = [0u8; MAX_HANDSHAKE_LEN];
        let (cs, n3) =
            client.finish::<_, 32>(&clock, &m2[..n2], device, &mut signer, Limits::DEFAULT, &mut m3).unwrap();
        let t = Instant::now();
        let ss = pending.finish::<_, 32>(&clock, &mut m3[..n3], &enrolled).unwrap();
        timed += t.elapsed();
        black_box((cs, ss));
    }
    if server_only { timed } else { start.elapsed() }
}

fn rustls_configs() -> (Arc<rustls::ClientConfig>, Arc<rustls::ServerConfig>) {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    let der = |name: &str| std::fs::read(format!("{}/benches/data/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let ca = CertificateDer::from(der("ca.cert.der"));
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca).unwrap();
    let roots = Arc::new(roots);
    // P-256 everywhere: certificates, signatures and the key exchange.
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    provider.kx_groups = vec![rustls::crypto::aws_lc_rs::kx_group::SECP256R1];
    let provider = Arc::new(provider);
    let key = |name: &str| PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(der(name)));
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone()).build().unwrap();
    let mut server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![CertificateDer::from(der("server.cert.der"))], key("server.key.der"))
        .unwrap();
    // Every handshake a full one: no tickets, no session cache, no resumption.
    server.send_tls13_tickets = 0;
    server.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    let mut client = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(vec![CertificateDer::from(der("client.cert.der"))], key("client.key.der"))
        .unwrap();
    client.resumption = rustls::client::Resumption::disabled();
    (Arc::new(client), Arc::new(server))
}

/// One rustls handshake in memory, bytes shuttled until both sides are done.
fn rustls_handshake(client: &Arc<rustls::ClientConfig>, server: &Arc<rustls::ServerConfig>) {
    let name = rustls::pki_types::ServerName::try_from("server.bench").unwrap();
    let mut c = rustls::ClientConnection::new(client.clone(), name).unwrap();
    let mut s = rustls::ServerConnection::new(server.clone()).unwrap();
    let mut pipe = Vec::with_capacity(8192);
    while c.is_handshaking() || s.is_handshaking() {
        pipe.clear();
        while c.wants_write() {
            c.write_tls(&mut pipe).unwrap();
        }
        if !pipe.is_empty() {
            s.read_tls(&mut pipe.as_slice()).unwrap();
            s.process_new_packets().unwrap();
        }
        pipe.clear();
        while s.wants_write() {
            s.write_tls(&mut pipe).unwrap();
        }
        if !pipe.is_empty() {
            c.read_tls(&mut pipe.as_slice()).unwrap();
            c.process_new_packets().unwrap();
        }
    }
    // Application data once each way, so both sides have used their keys.
    c.writer().write_all(b"ping").unwrap();
    pipe.clear();
    c.write_tls(&mut pipe).unwrap();
    s.read_tls(&mut pipe.as_slice()).unwrap();
    s.process_new_packets().unwrap();
    let mut got = [0u8; 4];
    s.reader().read_exact(&mut got).unwrap();
    black_box(got);
}

/// The P-256 work of one handshake through the provider, nothing else (two
/// key generations, four ECDH, one sign, one verify), and each operation
/// alone: where the handshake's time goes.
fn ops<P: CryptoProvider>(g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>, name: &str) {
    let (s_static, s_pub) = P::p256_ecdh_secret_from_bytes(&Secret::new([0x11; 32])).unwrap();
    let key = P::signing_key_from_bytes(&Secret::new([7; 32])).unwrap();
    let vk = P::signing_key_public(&key);
    let digest = [9u8; 32];
    let sig = P::ecdsa_sign_prehash(&key, &digest).unwrap();
    g.bench_function(format!("ops_sum/{name}"), |b| {
        b.iter(|| {
            let (ce, ce_pub) = P::p256_generate(&mut OsRng).unwrap();
            let (se, se_pub) = P::p256_generate(&mut OsRng).unwrap();
            let a = P::p256_ecdh(&ce, &s_pub).unwrap();
            let b2 = P::p256_ecdh(&s_static, &ce_pub).unwrap();
            let c2 = P::p256_ecdh(&se, &ce_pub).unwrap();
            let d = P::p256_ecdh(&ce, &se_pub).unwrap();
            let sig = P::ecdsa_sign_prehash(&key, &digest).unwrap();
            P::ecdsa_verify_prehash(&vk, &digest, &sig).unwrap();
            black_box((a, b2, c2, d))
        })
    });
    g.bench_function(format!("op_generate/{name}"), |b| b.iter(|| black_box(P::p256_generate(&mut OsRng).unwrap().1)));
    g.bench_function(format!("op_ecdh/{name}"), |b| b.iter(|| black_box(P::p256_ecdh(&s_static, &vk).unwrap())));
    g.bench_function(format!("op_sign/{name}"), |b| {
        b.iter(|| black_box(P::ecdsa_sign_prehash(&key, &digest).unwrap()))
    });
    g.bench_function(format!("op_verify/{name}"), |b| b.iter(|| P::ecdsa_verify_prehash(&vk, &digest, &sig).unwrap()));
}

fn handshake(c: &mut Criterion) {
    let mut g = c.benchmark_group("aws_handshake");
    g.measurement_time(Duration::from_secs(4)).warm_up_time(Duration::from_secs(1)).sample_size(30);
    g.bench_function("oncewire_full/awslc", |b| b.iter_custom(|n| handshake_iters::<AwsLc>(n, false)));
    g.bench_function("oncewire_full/rustcrypto", |b| b.iter_custom(|n| handshake_iters::<RustCrypto>(n, false)));
    g.bench_function("oncewire_server/awslc", |b| b.iter_custom(|n| handshake_iters::<AwsLc>(n, true)));
    g.bench_function("oncewire_server/rustcrypto", |b| b.iter_custom(|n| handshake_iters::<RustCrypto>(n, true)));
    ops::<AwsLc>(&mut g, "awslc");
    // The same two operations on aws-lc-rs directly, as rustls calls them.
    {
        use aws_lc_rs::{agreement, signature};
        let peer =
            *AwsLc::signing_key_public(&AwsLc::signing_key_from_bytes(&Secret::new([7; 32])).unwrap()).as_bytes();
        let rng = aws_lc_rs::rand::SystemRandom::new();
        g.bench_function("op_ecdh_ephemeral/raw_aws_lc", |b| {
            b.iter(|| {
                let my = agreement::EphemeralPrivateKey::generate(&agreement::ECDH_P256, &rng).unwrap();
                let peer = agreement::UnparsedPublicKey::new(&agreement::ECDH_P256, &peer);
                black_box(agreement::agree_ephemeral(my, peer, (), |k| Ok::<u8, ()>(k[0])).unwrap())
            })
        });
        let kp = signature::EcdsaKeyPair::from_private_key_and_public_key(
            &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &[7; 32],
            &peer,
        )
        .unwrap();
        let sig = kp.sign(&rng, b"message").unwrap();
        let vk = signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, peer);
        g.bench_function("op_verify/raw_aws_lc", |b| b.iter(|| vk.verify(b"message", sig.as_ref()).unwrap()));
    }
    let (client, server) = rustls_configs();
    g.bench_function("rustls_mtls_p256/awslc", |b| b.iter(|| rustls_handshake(&client, &server)));
    g.finish();
}

type TheirAead = hpke::aead::AesGcm256;
type TheirKdf = hpke::kdf::HkdfSha256;

fn hpke_for<P: CryptoProvider>(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    size: usize,
) {
    let (their_sk, their_pk) = Kem::derive_keypair(&[42u8; 32]);
    let ours = KeyPair::<P>::from_bytes(&Secret::new(their_sk.to_bytes().as_slice().try_into().unwrap())).unwrap();
    let pk = PublicKey::from_sec1_uncompressed(&their_pk.to_bytes()).unwrap();
    let msg = vec![0x42u8; size];
    let mut buf = vec![0u8; ow::SINGLE_SHOT_OVERHEAD + size];
    g.bench_function(format!("seal/oncewire_{name}"), |b| {
        b.iter(|| {
            buf[ow::ENC_LEN..ow::ENC_LEN + size].copy_from_slice(&msg);
            black_box(
                ow::SingleShot::<ow::Aes256Gcm, P>::seal(&mut OsRng, &pk, None, b"info", b"aad", &mut buf, size)
                    .unwrap(),
            )
        })
    });
    buf[ow::ENC_LEN..ow::ENC_LEN + size].copy_from_slice(&msg);
    let n = ow::SingleShot::<ow::Aes256Gcm, P>::seal(&mut OsRng, &pk, None, b"info", b"aad", &mut buf, size).unwrap();
    let sealed = buf[..n].to_vec();
    let mut work = sealed.clone();
    g.bench_function(format!("open/oncewire_{name}"), |b| {
        b.iter(|| {
            work.copy_from_slice(&sealed);
            black_box(ow::SingleShot::<ow::Aes256Gcm, P>::open(&ours, None, b"info", b"aad", &mut work).unwrap().len())
        })
    });
}

fn hpke_single_shot(c: &mut Criterion) {
    let (their_sk, their_pk) = Kem::derive_keypair(&[42u8; 32]);
    for size in [64usize, 1024] {
        let mut g = c.benchmark_group(format!("aws_hpke_single_shot/{size}"));
        g.throughput(Throughput::Bytes(size as u64));
        g.measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_millis(500)).sample_size(30);
        hpke_for::<AwsLc>(&mut g, "awslc", size);
        hpke_for::<RustCrypto>(&mut g, "rustcrypto", size);

        let msg = vec![0x42u8; size];
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
        let mut ct = msg.clone();
        let (enc, tag) = hpke::single_shot_seal_inout_detached::<TheirAead, TheirKdf, Kem>(
            &OpModeS::Base,
            &their_pk,
            b"info",
            ct.as_mut_slice().into(),
            b"aad",
        )
        .unwrap();
        let enc = <Kem as hpke::Kem>::EncappedKey::from_bytes(&enc.to_bytes()).unwrap();
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

/// The CPU, printed with every run (sessions do not always get the same one).
fn cpu(_: &mut Criterion) {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = info.lines().find(|l| l.starts_with("model name")).unwrap_or("model name: unknown");
    let flags = info.lines().find(|l| l.starts_with("flags")).unwrap_or("");
    let wanted = ["aes", "pclmulqdq", "vaes", "vpclmulqdq", "avx2", "avx512f", "sha_ni", "adx", "bmi2"];
    let have: Vec<&str> = flags.split_whitespace().filter(|f| wanted.contains(f)).collect();
    println!("CPU: {} | flags: {} | {} CPUs", model.split(':').nth(1).unwrap_or("").trim(), have.join(" "), {
        std::thread::available_parallelism().map(usize::from).unwrap_or(0)
    });
}

criterion_group!(benches, cpu, transport, handshake, hpke_single_shot);
criterion_main!(benches);
