//! Every single-bit flip of a sealed frame (header, ciphertext and tag), for
//! both nonce strategies and for session records: each flip gives an error,
//! leaves the flipped buffer as it was, and leaves the replay state equal to
//! what it was; afterwards the genuine frame is still accepted, once.
#![allow(
    missing_docs,
    clippy::arithmetic_side_effects,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use common::FailingRng;
use oncewire::clock::ManualClock;
use oncewire::replay::{Freshness, NonceRing};
use oncewire::rng::OsRng;
use oncewire::wire::buffer_len;
use oncewire::{CounterReceiver, CounterSender, DefaultProvider, Error, OneShotReceiver, OneShotSender, Secret};

const PAYLOAD: &[u8; 37] = b"transfer 10.00 EUR from alice to bob.";

#[test]
fn every_bit_flip_of_a_record_fails_and_changes_nothing() {
    let clock = ManualClock::new(1_767_225_600_000);
    let (key, iv, sid) = ([3u8; 32], [4u8; 12], *b"session9");
    let mut tx = CounterSender::<DefaultProvider>::new(&Secret::new(key), Secret::new(iv), sid, 5).unwrap();
    let mut rx = CounterReceiver::<DefaultProvider, 4>::new(&Secret::new(key), Secret::new(iv), sid)
        .unwrap()
        .with_freshness(Freshness::DEFAULT);
    // Some history in the window first.
    for _ in 0..3 {
        let mut f = vec![0u8; buffer_len(1)];
        let n = tx.seal(&clock, b"x", &mut f).unwrap();
        rx.open_in_place(&clock, &mut f[..n]).unwrap();
    }
    let mut frame = vec![0u8; buffer_len(PAYLOAD.len())];
    let n = tx.seal(&clock, PAYLOAD, &mut frame).unwrap();
    frame.truncate(n);
    let window = rx.window().clone();
    let mut flips = 0;
    for bit in 0..frame.len() * 8 {
        let mut bad = frame.clone();
        bad[bit / 8] ^= 1 << (bit % 8);
        let before = bad.clone();
        let r = rx.open_in_place(&clock, &mut bad);
        assert!(r.is_err(), "flip of bit {bit} was accepted");
        assert_eq!(bad, before, "flip of bit {bit}: the failed open changed the buffer");
        assert_eq!(rx.window(), &window, "flip of bit {bit}: the replay window changed");
        flips += 1;
    }
    assert_eq!(flips, (36 + 37 + 16) * 8);
    let mut good = frame.clone();
    assert_eq!(rx.open_in_place(&clock, &mut good).unwrap().payload, PAYLOAD);
    let mut again = frame.clone();
    assert_eq!(rx.open_in_place(&clock, &mut again).unwrap_err(), Error::Replay);
}

#[test]
fn every_bit_flip_of_a_one_shot_frame_fails_and_changes_nothing() {
    let clock = ManualClock::new(1_767_225_600_000);
    let key = [8u8; 32];
    let kid = *b"srv-key1";
    let mut tx =
        OneShotSender::<_, DefaultProvider>::boot(&Secret::new(key), kid, oncewire::store::VolatileStore::new(), 1)
            .unwrap();
    let ring = NonceRing::<16>::new(Freshness::DEFAULT, [1; 16]);
    let mut rx = OneShotReceiver::<DefaultProvider, 16>::new(&Secret::new(key), kid, ring).unwrap();
    for _ in 0..3 {
        let mut f = vec![0u8; buffer_len(1)];
        let n = tx.seal(&mut OsRng, &clock, b"x", &mut f).unwrap();
        rx.open_in_place(&clock, &mut f[..n]).unwrap();
    }
    let mut frame = vec![0u8; buffer_len(PAYLOAD.len())];
    let n = tx.seal(&mut OsRng, &clock, PAYLOAD, &mut frame).unwrap();
    frame.truncate(n);
    let ring = rx.ring().clone();
    for bit in 0..frame.len() * 8 {
        let mut bad = frame.clone();
        bad[bit / 8] ^= 1 << (bit % 8);
        let before = bad.clone();
        assert!(rx.open_in_place(&clock, &mut bad).is_err(), "flip of bit {bit} was accepted");
        assert_eq!(bad, before, "flip of bit {bit}: the failed open changed the buffer");
        assert_eq!(rx.ring(), &ring, "flip of bit {bit}: the nonce ring changed");
    }
    let mut good = frame.clone();
    assert_eq!(rx.open_in_place(&clock, &mut good).unwrap().payload, PAYLOAD);
    let mut again = frame.clone();
    assert_eq!(rx.open_in_place(&clock, &mut again).unwrap_err(), Error::Replay);
    assert!(rx.audit().auth_failed > 0 && rx.audit().replay_rejected == 1);
}

#[test]
fn a_wrong_tag_leaves_the_buffer_unchanged_and_lengths_are_strict() {
    let clock = ManualClock::new(1_767_225_600_000);
    let (key, iv, sid) = ([3u8; 32], [4u8; 12], *b"session9");
    let mut tx = CounterSender::<DefaultProvider>::new(&Secret::new(key), Secret::new(iv), sid, 0).unwrap();
    let mut rx = CounterReceiver::<DefaultProvider, 4>::new(&Secret::new(key), Secret::new(iv), sid).unwrap();
    let mut frame = vec![0u8; buffer_len(PAYLOAD.len())];
    let n = tx.seal(&clock, PAYLOAD, &mut frame).unwrap();
    let mut bad = frame[..n].to_vec();
    *bad.last_mut().unwrap() ^= 0xff;
    let before = bad.clone();
    assert_eq!(rx.open_in_place(&clock, &mut bad).unwrap_err(), Error::Authentication);
    assert_eq!(bad, before);
    assert_ne!(&bad[36..36 + PAYLOAD.len()], PAYLOAD, "no plaintext was released into the buffer");
    let mut long = frame[..n].to_vec();
    long.push(0);
    assert_eq!(rx.open_in_place(&clock, &mut long).unwrap_err(), Error::TrailingBytes);
    assert_eq!(rx.open_in_place(&clock, &mut frame[..n - 1]).unwrap_err(), Error::Truncated);
}

#[test]
fn a_failing_rng_is_an_error_and_consumes_nothing() {
    let clock = ManualClock::new(1);
    let mut tx = OneShotSender::<_, DefaultProvider>::boot(
        &Secret::new([1; 32]),
        [2; 8],
        oncewire::store::VolatileStore::new(),
        1,
    )
    .unwrap();
    let mut f = vec![0u8; buffer_len(3)];
    assert_eq!(tx.seal(&mut FailingRng, &clock, b"abc", &mut f).unwrap_err(), Error::Rng);
    assert_eq!(tx.used(), 0);
    assert_eq!(
        oncewire::handshake::ClientHandshake::<DefaultProvider>::start(
            *oncewire::handshake::ServerKey::<DefaultProvider>::generate(&mut OsRng).unwrap().public_key(),
            &mut FailingRng,
            &clock,
            &mut [0u8; 256]
        )
        .unwrap_err(),
        Error::Rng
    );
}
