//! Timing probe (temporary).
#![allow(
    missing_docs,
    clippy::arithmetic_side_effects,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use oncewire::clock::ManualClock;
use oncewire::hpke::{Aes256Gcm, KeyPair};
use oncewire::replay::Freshness;
use oncewire::request::{self, PAYLOAD_OFFSET, REQUEST_OVERHEAD, RequestReceiver};
use oncewire::rng::OsRng;
use oncewire::{RustCrypto, Secret};
use std::time::Instant;

#[test]
fn probe() {
    let clock = ManualClock::new(1_767_225_600_000);
    let server = KeyPair::<RustCrypto>::generate(&mut OsRng).unwrap();
    let mut rx = RequestReceiver::<Aes256Gcm, RustCrypto, 8>::new(&Secret::new([7; 32]), Freshness::DEFAULT);
    let t = Instant::now();
    for _ in 0..10 {
        clock.advance(1);
        let mut buf = [0u8; REQUEST_OVERHEAD + 4];
        let n = request::seal::<Aes256Gcm, RustCrypto, _>(&mut OsRng, &clock, server.public_key(), None, b"", b"", &mut buf, 4).unwrap();
        let _ = PAYLOAD_OFFSET;
        rx.open(&server, None, &clock, b"", b"", &mut buf[..n]).unwrap();
    }
    println!("10 seal+open: {:?}", t.elapsed());
}
