//! Cross-implementation: messages sealed by the `hpke` crate open in ours,
//! and ours open in theirs, in base and auth mode, with AES-128-GCM and
//! AES-256-GCM, including exports and multi-message contexts.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

mod common;

use hpke::kem::DhP256HkdfSha256 as Kem;
use hpke::{Deserializable, Kem as _, OpModeR, OpModeS, Serializable};
use oncewire::hpke::{self as ow, HpkeAead, KeyPair, RecipientContext, SenderContext};
use oncewire::provider::CryptoProvider;
use oncewire::provider::PublicKey;
use oncewire::rng::OsRng;
use oncewire::{Error, Secret};

type TheirSk = <Kem as hpke::Kem>::PrivateKey;
type TheirPk = <Kem as hpke::Kem>::PublicKey;

/// One key pair known to both libraries.
fn pair<P: CryptoProvider>(ikm: u8) -> (KeyPair<P>, TheirSk, TheirPk) {
    let (sk, pk) = Kem::derive_keypair(&[ikm; 32]);
    let ours = KeyPair::<P>::derive(&[ikm; 32]).unwrap();
    assert_eq!(ours.public_key().as_bytes().as_slice(), pk.to_bytes().as_slice(), "DeriveKeyPair agrees");
    let sk_bytes: [u8; 32] = sk.to_bytes().as_slice().try_into().unwrap();
    let imported = KeyPair::<P>::from_bytes(&Secret::new(sk_bytes)).unwrap();
    assert_eq!(imported.public_key(), ours.public_key());
    (ours, sk, pk)
}

const MSGS: [&[u8]; 3] = [b"", b"first request", &[0x5a; 1500]];

fn theirs_to_ours<P: CryptoProvider, A: HpkeAead, TA: hpke::aead::Aead>(auth: bool) {
    let (r, _, r_pk) = pair::<P>(1);
    let (s, s_sk, s_pk) = pair::<P>(2);
    let mode = if auth { OpModeS::Auth((s_sk, s_pk)) } else { OpModeS::Base };
    let (enc, mut ctx) = hpke::setup_sender::<TA, hpke::kdf::HkdfSha256, Kem>(&mode, &r_pk, b"interop info").unwrap();
    let enc = enc.to_bytes();
    let mut ours = if auth {
        RecipientContext::<A, P>::auth(&enc, &r, b"interop info", s.public_key()).unwrap()
    } else {
        RecipientContext::<A, P>::base(&enc, &r, b"interop info").unwrap()
    };
    for (i, m) in MSGS.iter().enumerate() {
        let aad = [i as u8; 7];
        let mut ct = ctx.seal(m, &aad).unwrap();
        assert_eq!(ours.open_in_place(&aad, &mut ct).unwrap(), *m);
    }
    let mut a = [0u8; 48];
    let mut b = [0u8; 48];
    ctx.export(b"exp", &mut a).unwrap();
    ours.export(b"exp", &mut b).unwrap();
    assert_eq!(a, b);
}

fn ours_to_theirs<P: CryptoProvider, A: HpkeAead, TA: hpke::aead::Aead>(auth: bool) {
    let (_, r_sk, r_pk) = pair::<P>(3);
    let (s, _, s_pk) = pair::<P>(4);
    let pk = PublicKey::from_sec1_uncompressed(&r_pk.to_bytes()).unwrap();
    let (enc, mut ours) = if auth {
        SenderContext::<A, P>::auth(&mut OsRng, &pk, b"interop info", &s).unwrap()
    } else {
        SenderContext::<A, P>::base(&mut OsRng, &pk, b"interop info").unwrap()
    };
    let mode = if auth { OpModeR::Auth(s_pk) } else { OpModeR::Base };
    let enc = <Kem as hpke::Kem>::EncappedKey::from_bytes(enc.as_bytes()).unwrap();
    let mut theirs =
        hpke::setup_receiver::<TA, hpke::kdf::HkdfSha256, Kem>(&mode, &r_sk, &enc, b"interop info").unwrap();
    for (i, m) in MSGS.iter().enumerate() {
        let aad = [i as u8; 7];
        let mut buf = m.to_vec();
        buf.extend_from_slice(&[0u8; ow::TAG_LEN]);
        let n = ours.seal_in_place(&aad, &mut buf, m.len()).unwrap();
        assert_eq!(theirs.open(&buf[..n], &aad).unwrap(), *m);
    }
    let mut a = [0u8; 48];
    let mut b = [0u8; 48];
    ours.export(b"exp", &mut a).unwrap();
    theirs.export(b"exp", &mut b).unwrap();
    assert_eq!(a, b);
}

fn hpke_crate_to_oncewire<P: CryptoProvider>() {
    theirs_to_ours::<P, ow::Aes128Gcm, hpke::aead::AesGcm128>(false);
    theirs_to_ours::<P, ow::Aes256Gcm, hpke::aead::AesGcm256>(false);
    theirs_to_ours::<P, ow::Aes128Gcm, hpke::aead::AesGcm128>(true);
    theirs_to_ours::<P, ow::Aes256Gcm, hpke::aead::AesGcm256>(true);
}

fn oncewire_to_hpke_crate<P: CryptoProvider>() {
    ours_to_theirs::<P, ow::Aes128Gcm, hpke::aead::AesGcm128>(false);
    ours_to_theirs::<P, ow::Aes256Gcm, hpke::aead::AesGcm256>(false);
    ours_to_theirs::<P, ow::Aes128Gcm, hpke::aead::AesGcm128>(true);
    ours_to_theirs::<P, ow::Aes256Gcm, hpke::aead::AesGcm256>(true);
}

fn single_shot_interop_both_ways<P: CryptoProvider>() {
    let (r, r_sk, r_pk) = pair::<P>(5);
    // Theirs -> ours, laid out enc ‖ ct ‖ tag.
    let (enc, ct) = hpke::single_shot_seal::<hpke::aead::AesGcm256, hpke::kdf::HkdfSha256, Kem>(
        &OpModeS::Base,
        &r_pk,
        b"info",
        b"one shot",
        b"aad",
    )
    .unwrap();
    let mut buf = enc.to_bytes().to_vec();
    buf.extend_from_slice(&ct);
    assert_eq!(ow::SingleShot::<ow::Aes256Gcm, P>::open(&r, None, b"info", b"aad", &mut buf).unwrap(), b"one shot");
    // Ours -> theirs.
    let pk = PublicKey::from_sec1_uncompressed(&r_pk.to_bytes()).unwrap();
    let mut buf = vec![0u8; ow::SINGLE_SHOT_OVERHEAD + 8];
    buf[ow::ENC_LEN..ow::ENC_LEN + 8].copy_from_slice(b"one shot");
    let n = ow::SingleShot::<ow::Aes256Gcm, P>::seal(&mut OsRng, &pk, None, b"info", b"aad", &mut buf, 8).unwrap();
    let enc = <Kem as hpke::Kem>::EncappedKey::from_bytes(&buf[..ow::ENC_LEN]).unwrap();
    let pt = hpke::single_shot_open::<hpke::aead::AesGcm256, hpke::kdf::HkdfSha256, Kem>(
        &OpModeR::Base,
        &r_sk,
        &enc,
        b"info",
        &buf[ow::ENC_LEN..n],
        b"aad",
    )
    .unwrap();
    assert_eq!(pt, b"one shot");
}

fn auth_mode_rejects_another_sender_and_base_rejects_auth<P: CryptoProvider>() {
    let (r, _, r_pk) = pair::<P>(6);
    let (_, s_sk, s_pk) = pair::<P>(7);
    let (other, _, _) = pair::<P>(8);
    let (enc, mut ctx) = hpke::setup_sender::<hpke::aead::AesGcm256, hpke::kdf::HkdfSha256, Kem>(
        &OpModeS::Auth((s_sk, s_pk)),
        &r_pk,
        b"i",
    )
    .unwrap();
    let mut ct = ctx.seal(b"from 7", b"").unwrap();
    let before = ct.clone();
    let enc = enc.to_bytes();
    // Expecting sender 8: the context derives other keys, so the open fails.
    let mut wrong = RecipientContext::<ow::Aes256Gcm, P>::auth(&enc, &r, b"i", other.public_key()).unwrap();
    assert_eq!(wrong.open_in_place(b"", &mut ct).unwrap_err(), Error::Authentication);
    assert_eq!(ct, before);
    assert_eq!(wrong.seq(), 0, "a failed open does not advance the sequence");
    let mut base = RecipientContext::<ow::Aes256Gcm, P>::base(&enc, &r, b"i").unwrap();
    assert_eq!(base.open_in_place(b"", &mut ct).unwrap_err(), Error::Authentication);
    // Wrong info.
    let mut info = RecipientContext::<ow::Aes256Gcm, P>::base(&enc, &r, b"j").unwrap();
    assert_eq!(info.open_in_place(b"", &mut ct).unwrap_err(), Error::Authentication);
}

fn malformed_enc_and_short_input_are_typed_errors<P: CryptoProvider>() {
    let (r, _, _) = pair::<P>(9);
    let mut short = [0u8; ow::SINGLE_SHOT_OVERHEAD - 1];
    assert_eq!(ow::SingleShot::<ow::Aes128Gcm, P>::open(&r, None, b"", b"", &mut short).unwrap_err(), Error::Truncated);
    let mut not_a_point = [0u8; ow::SINGLE_SHOT_OVERHEAD];
    not_a_point[0] = 4;
    assert_eq!(
        ow::SingleShot::<ow::Aes128Gcm, P>::open(&r, None, b"", b"", &mut not_a_point).unwrap_err(),
        Error::InvalidKey
    );
    let mut compressed = [0u8; ow::SINGLE_SHOT_OVERHEAD];
    compressed[..33].copy_from_slice(&{
        let mut c = [0u8; 33];
        c[0] = 2;
        c[1..].copy_from_slice(&r.public_key().as_bytes()[1..33]);
        c
    });
    assert_eq!(
        ow::SingleShot::<ow::Aes128Gcm, P>::open(&r, None, b"", b"", &mut compressed).unwrap_err(),
        Error::InvalidKey
    );
    assert_eq!(RecipientContext::<ow::Aes128Gcm, P>::base(&[4u8; 64], &r, b"").unwrap_err(), Error::InvalidKey);
}

common::for_each_provider!(
    hpke_crate_to_oncewire,
    oncewire_to_hpke_crate,
    single_shot_interop_both_ways,
    auth_mode_rejects_another_sender_and_base_rejects_auth,
    malformed_enc_and_short_input_are_typed_errors
);
