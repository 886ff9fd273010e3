//! Every RFC 9180 test vector for DHKEM(P-256, HKDF-SHA256), HKDF-SHA256,
//! AES-128-GCM and AES-256-GCM in base and auth mode, run through the
//! crate's own HPKE API: key derivation, setup on both sides, every
//! encryption in sequence (exact ciphertext bytes, then decryption) and
//! every export. The JSON is the published file, filtered; its provenance
//! and hash are inside it.
#![allow(
    missing_docs,
    clippy::arithmetic_side_effects,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;
use common::FixedRng;
use oncewire::provider::CryptoProvider;

use oncewire::Secret;
use oncewire::hpke::{Aes128Gcm, Aes256Gcm, HpkeAead, KeyPair, RecipientContext, SenderContext};
use serde_json::Value;

fn h(v: &Value, k: &str) -> Vec<u8> {
    hex::decode(v[k].as_str().unwrap_or_else(|| panic!("missing {k}"))).unwrap()
}

fn run<P: CryptoProvider, A: HpkeAead>(v: &Value) -> (usize, usize) {
    let auth = v["mode"] == 2;
    let r = KeyPair::<P>::derive(&h(v, "ikmR")).unwrap();
    assert_eq!(r.public_key().as_bytes().as_slice(), h(v, "pkRm"), "DeriveKeyPair(ikmR)");
    let r2 = KeyPair::<P>::from_bytes(&Secret::new(h(v, "skRm").try_into().unwrap())).unwrap();
    assert_eq!(r2.public_key(), r.public_key(), "skRm imports to pkRm");
    let e = KeyPair::<P>::derive(&h(v, "ikmE")).unwrap();
    assert_eq!(e.public_key().as_bytes().as_slice(), h(v, "pkEm"), "DeriveKeyPair(ikmE)");
    let s = auth.then(|| KeyPair::<P>::derive(&h(v, "ikmS")).unwrap());
    if let Some(s) = &s {
        assert_eq!(s.public_key().as_bytes().as_slice(), h(v, "pkSm"), "DeriveKeyPair(ikmS)");
    }
    let info = h(v, "info");
    // The ephemeral key: skEm through the RNG the normal API draws it from.
    let mut eph = FixedRng::new(&h(v, "skEm"));
    let (enc, mut sender) = match &s {
        None => SenderContext::<A, P>::base(&mut eph, r.public_key(), &info).unwrap(),
        Some(s) => SenderContext::<A, P>::auth(&mut eph, r.public_key(), &info, s).unwrap(),
    };
    assert_eq!(enc.as_bytes().as_slice(), h(v, "enc"));
    let mut recipient = match &s {
        None => RecipientContext::<A, P>::base(enc.as_bytes(), &r, &info).unwrap(),
        Some(s) => RecipientContext::<A, P>::auth(enc.as_bytes(), &r, &info, s.public_key()).unwrap(),
    };
    let encs = v["encryptions"].as_array().unwrap();
    for (i, x) in encs.iter().enumerate() {
        let (pt, aad, ct) = (h(x, "pt"), h(x, "aad"), h(x, "ct"));
        let mut buf = pt.clone();
        buf.extend_from_slice(&[0u8; 16]);
        let n = sender.seal_in_place(&aad, &mut buf, pt.len()).unwrap();
        assert_eq!(&buf[..n], ct.as_slice(), "encryption {i}: ciphertext");
        assert_eq!(recipient.open_in_place(&aad, &mut buf).unwrap(), pt.as_slice(), "encryption {i}: plaintext");
    }
    let exports = v["exports"].as_array().unwrap();
    for x in exports {
        let ctx = h(x, "exporter_context");
        let want = h(x, "exported_value");
        let len = usize::try_from(x["L"].as_u64().unwrap()).unwrap();
        let mut a = vec![0u8; len];
        let mut b = vec![0u8; len];
        sender.export(&ctx, &mut a).unwrap();
        recipient.export(&ctx, &mut b).unwrap();
        assert_eq!(a, want);
        assert_eq!(b, want);
    }
    (encs.len(), exports.len())
}

fn rfc9180_vectors_pass_through_our_api<P: CryptoProvider>() {
    let doc: Value = serde_json::from_str(include_str!("data/hpke_rfc9180.json")).unwrap();
    let vectors = doc["vectors"].as_array().unwrap();
    let (mut suites, mut encs, mut exps) = (0, 0, 0);
    for v in vectors {
        assert_eq!((v["kem_id"].as_u64(), v["kdf_id"].as_u64()), (Some(0x10), Some(1)));
        let (e, x) = match v["aead_id"].as_u64().unwrap() {
            1 => run::<P, Aes128Gcm>(v),
            2 => run::<P, Aes256Gcm>(v),
            other => panic!("unexpected aead {other}"),
        };
        suites += 1;
        encs += e;
        exps += x;
    }
    println!("RFC 9180: {suites} vectors (base+auth x AES-128/256-GCM), {encs} encryptions, {exps} exports");
    assert_eq!(suites, 4, "base and auth for both AEADs");
    assert!(encs >= 4 * 257);
}

common::for_each_provider!(rfc9180_vectors_pass_through_our_api);
