//! Opening arbitrary bytes against fixed receivers of both nonce strategies.
//! A failed open must leave the buffer and the replay state unchanged. Seeds
//! in the corpus are real frames sealed with these keys, so the fuzzer also
//! explores past the tag (and must never get a mutated frame accepted).
#![no_main]
#[path = "common.rs"]
mod common;
use common::*;
use libfuzzer_sys::fuzz_target;
use oncewire::replay::{Freshness, NonceRing};
use oncewire::{CounterReceiver, OneShotReceiver, RustCrypto, Secret};

fuzz_target!(|data: &[u8]| {
    let clock = clock();
    let mut rx = CounterReceiver::<RustCrypto, 4>::new(&Secret::new(KEY), Secret::new(IV), SID)
        .unwrap()
        .with_freshness(Freshness::DEFAULT);
    let before = rx.window().clone();
    let mut buf = data.to_vec();
    if rx.open_in_place(&clock, &mut buf).is_err() {
        assert_eq!(buf, data, "failed open changed the buffer");
        assert_eq!(rx.window(), &before, "failed open changed the window");
    } else {
        // Accepted once: the same bytes again are a replay.
        let mut again = data.to_vec();
        assert!(rx.open_in_place(&clock, &mut again).is_err());
    }

    let ring = NonceRing::<8>::new(Freshness::DEFAULT, [5; 16]);
    let mut one = OneShotReceiver::<RustCrypto, 8>::new(&Secret::new(KEY), SID, ring).unwrap();
    let before = one.ring().clone();
    let mut buf = data.to_vec();
    if one.open_in_place(&clock, &mut buf).is_err() {
        assert_eq!(buf, data);
        assert_eq!(one.ring(), &before);
    } else {
        let mut again = data.to_vec();
        assert!(one.open_in_place(&clock, &mut again).is_err());
    }
});
