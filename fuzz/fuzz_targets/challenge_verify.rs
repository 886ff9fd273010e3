//! Challenge verification on arbitrary bindings and requests: never panics,
//! forged challenges never verify, a verified one never verifies twice, not
//! even after the used set went through a snapshot and a restart.
#![no_main]
#[path = "common.rs"]
mod common;
use common::*;
use libfuzzer_sys::fuzz_target;
use oncewire::challenge::{ChallengeTable, StatelessChallenges};
use oncewire::{RustCrypto, Secret};

fuzz_target!(|data: &[u8]| {
    let clock = clock();
    let mut s = StatelessChallenges::<RustCrypto, 8>::new(Secret::new([0x66; 32]), 30_000, [1; 16]);
    let split = data.first().map_or(0, |b| usize::from(*b)).min(data.len().saturating_sub(1));
    let (binding, request) = data.get(1..).unwrap_or_default().split_at(split.min(data.len().saturating_sub(1)));
    if s.verify_bound(&clock, binding, request).is_ok() {
        assert!(s.verify_bound(&clock, binding, request).is_err(), "challenge accepted twice");
        let mut snap = [0u8; 512];
        let n = s.snapshot(7, &mut snap).unwrap();
        let mut restored =
            StatelessChallenges::<RustCrypto, 8>::restore(Secret::new([0x66; 32]), 30_000, [1; 16], &snap[..n], 7)
                .unwrap();
        assert!(restored.verify_bound(&clock, binding, request).is_err(), "challenge accepted again after a restore");
        assert!(
            StatelessChallenges::<RustCrypto, 8>::restore(Secret::new([0x66; 32]), 30_000, [1; 16], &snap[..n], 8)
                .is_err(),
            "a snapshot restored under another epoch"
        );
    }
    let mut t = ChallengeTable::<4>::new(30_000);
    let mut rng = DetRng(1);
    let _ = t.issue(&mut rng, &clock);
    assert!(t.verify_bound::<RustCrypto>(&clock, binding, request).is_err() || binding.len() == 72);
});
