//! The handshake and session through the public API: the happy path, key
//! update, response binding, expiry and usage limits.
#![allow(
    missing_docs,
    clippy::arithmetic_side_effects,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use common::{Harness, SeededRng};
use oncewire::Clock;
use oncewire::session::{Limits, Peer, Received};
use oncewire::wire::buffer_len;
use oncewire::{Error, Expiry};

#[test]
fn handshake_then_request_response() {
    let mut s = Harness::new();
    let (mut c, mut sv) = s.handshake(Limits::DEFAULT);
    assert_eq!(sv.peer(), &Peer::Device(s.device));
    assert_eq!(c.peer(), &Peer::Server(*s.server.public_key()));
    assert_eq!(c.handshake_hash(), sv.handshake_hash());
    assert_eq!(c.next_seq(), 1, "message 3 used sequence 0");

    for i in 0..5u8 {
        let req = [i; 40];
        let mut f = vec![0u8; buffer_len(req.len())];
        let (n, id) = c.seal_request(&s.clock, &req, &mut f).unwrap();
        let Received::Record(opened, got) = sv.open_in_place(&s.clock, &mut f[..n]).unwrap() else { panic!() };
        assert_eq!(opened.payload, &req[..]);
        assert_eq!(got, id);
        let resp = [i ^ 0xff; 9];
        let mut r = vec![0u8; buffer_len(resp.len())];
        let rn = sv.seal_response(&s.clock, got, &resp, &mut r).unwrap();
        assert_eq!(c.open_response(&s.clock, id, &mut r[..rn]).unwrap().payload, &resp[..]);
    }
}

#[test]
fn key_update_moves_both_sides_to_the_next_generation() {
    let mut s = Harness::new();
    let (mut c, mut sv) = s.handshake(Limits::DEFAULT);
    let mut ku = vec![0u8; buffer_len(0)];
    let n = c.update_keys(&s.clock, &mut ku).unwrap();
    let mut old = vec![0u8; buffer_len(3)];
    // A record sealed under the new key opens after the update frame.
    let rn = c.seal(&s.clock, b"new", &mut old).unwrap();
    assert!(matches!(sv.open_in_place(&s.clock, &mut ku[..n]).unwrap(), Received::KeyUpdated { generation: 1 }));
    let Received::Record(o, _) = sv.open_in_place(&s.clock, &mut old[..rn]).unwrap() else { panic!() };
    assert_eq!(o.payload, b"new");
    assert_eq!(c.generations(), (1, 0));
    assert_eq!(sv.generations(), (0, 1));
    // A replayed key update does not ratchet again.
    assert_eq!(sv.open_in_place(&s.clock, &mut ku[..n]).unwrap_err(), Error::Authentication);
    assert_eq!(sv.generations(), (0, 1));
}

#[test]
fn sessions_expire_and_enforce_usage_limits() {
    let mut s = Harness::new();
    let limits = Limits { lifetime_ms: 1_000, max_records_per_key: 4, ..Limits::DEFAULT };
    let (mut c, mut sv) = s.handshake(limits);
    // The server's lifetime reaches the client through message 2.
    assert_eq!(c.expires_at_ms(), s.clock.now_ms() + 1_000);
    let mut f = vec![0u8; buffer_len(1)];
    // Server: sequence 0..=2 usable, 3 kept for the key update.
    for _ in 0..3 {
        sv.seal(&s.clock, b"x", &mut f).unwrap();
    }
    assert!(sv.needs_key_update());
    assert_eq!(sv.seal(&s.clock, b"x", &mut f).unwrap_err(), Error::KeyExhausted);
    let mut ku = vec![0u8; buffer_len(0)];
    sv.update_keys(&s.clock, &mut ku).unwrap();
    sv.seal(&s.clock, b"x", &mut f).unwrap();
    s.clock.advance(1_001);
    assert_eq!(sv.seal(&s.clock, b"x", &mut f).unwrap_err(), Error::Expired(Expiry::Session));
    assert_eq!(c.open_in_place(&s.clock, &mut f).unwrap_err(), Error::Expired(Expiry::Session));
}

#[test]
fn a_seeded_harness_repeats_its_handshake_exactly() {
    // Every random draw (the server key, the device key, the enrollment
    // challenge, the handshake id and both ephemerals) comes from the
    // caller's RNG: the same seed gives the same handshake, byte for byte.
    let run = |seed| {
        let mut s = Harness::with_rng(SeededRng::new(seed));
        let (mut c, sv) = s.handshake(Limits::DEFAULT);
        let mut f = vec![0u8; buffer_len(2)];
        let n = c.seal(&s.clock, b"hi", &mut f).unwrap();
        f.truncate(n);
        (*c.handshake_hash(), *sv.session_id(), f)
    };
    assert_eq!(run(7), run(7));
    assert_ne!(run(7).0, run(8).0);
}
