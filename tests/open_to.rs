//! `Session::open_to` and `open_response_to`: a read-only frame opened into
//! another buffer, through both providers. The same guarantees as the
//! in-place open: a forged, replayed, malformed or too-large-for-`out`
//! frame changes nothing (the window, the generation, the key), `out`
//! never holds plaintext after a failure, and the two paths share one
//! replay window.
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
use oncewire::clock::ManualClock;
use oncewire::provider::{AeadCipher, CryptoProvider};
use oncewire::session::Received;
use oncewire::wire::{OVERHEAD, buffer_len};

const NOW: u64 = 1_767_225_600_000;

fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8 ^ 0x5a).collect()
}

/// Opens out of place at every size, answers, and reads the answer out of place.
fn open_to_matches_in_place<P: CryptoProvider>() {
    let clock = ManualClock::new(NOW);
    let (mut c, mut sv) = common::provider_pair::<P, P>(&clock);
    for len in [0usize, 1, 15, 16, 17, 64, 1024, 16 * 1024] {
        let req = payload(len);
        let mut f = vec![0u8; buffer_len(len)];
        let (n, id) = c.seal_request(&clock, &req, &mut f).unwrap();
        let frame = f[..n].to_vec();
        let mut out = vec![0u8; n - OVERHEAD];
        let Received::Record(o, got) = sv.open_to(&clock, &frame, &mut out).unwrap() else { panic!() };
        assert_eq!(o.payload, &req[..]);
        assert_eq!(got, id);
        assert_eq!(frame, f[..n], "the frame is read-only");
        // Either path refuses it now: one window.
        assert_eq!(sv.open_to(&clock, &frame, &mut out).unwrap_err(), Error::Replay);
        assert_eq!(sv.open_in_place(&clock, &mut f[..n]).unwrap_err(), Error::Replay);

        let resp = payload(len / 2 + 3);
        let mut r = vec![0u8; buffer_len(resp.len())];
        let rn = sv.seal_response(&clock, got, &resp, &mut r).unwrap();
        let mut rout = vec![0u8; rn]; // longer than needed is fine
        assert_eq!(c.open_response_to(&clock, id, &r[..rn], &mut rout).unwrap().payload, &resp[..]);
        assert_eq!(c.open_response_to(&clock, id, &r[..rn], &mut rout).unwrap_err(), Error::Replay);
    }
    // A frame opened in place first is refused out of place.
    let mut f = vec![0u8; buffer_len(8)];
    let n = c.seal(&clock, b"in place", &mut f).unwrap();
    let frame = f[..n].to_vec();
    sv.open_in_place(&clock, &mut f[..n]).unwrap();
    assert_eq!(sv.open_to(&clock, &frame, &mut [0u8; 8]).unwrap_err(), Error::Replay);
}

/// Forged, truncated and too-large-for-`out` frames change nothing, and
/// `out` never holds plaintext after a failure.
fn failures_change_nothing<P: CryptoProvider>() {
    let clock = ManualClock::new(NOW);
    let (mut c, mut sv) = common::provider_pair::<P, P>(&clock);
    let req = payload(1024);
    let mut f = vec![0u8; buffer_len(req.len())];
    let n = c.seal(&clock, &req, &mut f).unwrap();
    let good = f[..n].to_vec();
    let window = sv.window().clone();
    let failed = sv.audit();

    // Every single-bit flip of the header, the ciphertext's ends and the tag.
    let mut flips = 0;
    for byte in (0..40).chain(n - 40..n) {
        let mut bad = good.clone();
        bad[byte] ^= 1;
        let mut out = vec![0xeeu8; req.len()];
        // Which error depends on the field hit (a parse error, another
        // session, a replay, a bad tag); that it fails is what counts here.
        assert!(sv.open_to(&clock, &bad, &mut out).is_err(), "byte {byte} opened");
        assert_ne!(out, req, "byte {byte}: plaintext in out after a failed open");
        assert_eq!(*sv.window(), window, "byte {byte}: the window moved");
        flips += 1;
    }
    assert_eq!(flips, 80);
    assert_ne!(sv.audit(), failed, "the audit counted the rejections");

    // Truncated and extended frames.
    for cut in [0, 1, 35, 36, n - 17, n - 1] {
        let mut out = vec![0u8; req.len()];
        assert!(sv.open_to(&clock, &good[..cut], &mut out).is_err(), "cut {cut}");
    }
    let mut long = good.clone();
    long.push(0);
    assert!(sv.open_to(&clock, &long, &mut vec![0u8; n]).is_err());

    // `out` one byte short: refused before any cryptography, nothing changes.
    let before = sv.audit().auth_failed;
    let mut short = vec![0u8; req.len() - 1];
    assert_eq!(sv.open_to(&clock, &good, &mut short).unwrap_err(), Error::BufferTooSmall);
    assert_eq!(sv.audit().auth_failed, before, "a short `out` is not a forgery");
    assert_eq!(*sv.window(), window);

    // After all that, the genuine frame still opens, once.
    let mut out = vec![0u8; req.len()];
    let Received::Record(o, _) = sv.open_to(&clock, &good, &mut out).unwrap() else { panic!() };
    assert_eq!(o.payload, &req[..]);
    assert_eq!(sv.open_to(&clock, &good, &mut out).unwrap_err(), Error::Replay);
}

/// A key update opened out of place, unrecorded then committed, moves the
/// generation once; a stale `SeqUse` is refused.
fn key_update_and_unrecorded<P: CryptoProvider>() {
    let clock = ManualClock::new(NOW);
    let (mut c, mut sv) = common::provider_pair::<P, P>(&clock);
    let mut ku = vec![0u8; buffer_len(0)];
    let kn = c.update_keys(&clock, &mut ku).unwrap();
    let (r, used) = sv.open_unrecorded_to(&clock, &ku[..kn], &mut []).unwrap();
    assert!(matches!(r, Received::KeyUpdated { generation: 1 }));
    assert_eq!(sv.generations(), (0, 0), "not applied before commit");
    sv.commit(used).unwrap();
    assert_eq!(sv.generations(), (0, 1));
    assert!(sv.commit(used).is_err(), "a SeqUse commits once");
    assert!(sv.open_to(&clock, &ku[..kn], &mut []).is_err(), "a replayed key update does not ratchet again");
    assert_eq!(sv.generations(), (0, 1));

    let mut f = vec![0u8; buffer_len(5)];
    let n = c.seal(&clock, b"after", &mut f).unwrap();
    let mut out = [0u8; 5];
    let (r, used) = sv.open_unrecorded_to(&clock, &f[..n], &mut out).unwrap();
    let Received::Record(o, _) = r else { panic!() };
    assert_eq!(o.payload, b"after");
    sv.commit(used).unwrap();
    assert_eq!(sv.open_in_place(&clock, &mut f[..n]).unwrap_err(), Error::Replay);
}

/// The provider method itself: a wrong-length `out` is refused before any
/// cryptography; a bad tag leaves no plaintext in `out`.
fn aead_open_detached_to<P: CryptoProvider>() {
    let k = P::Aead256::new(&[7u8; 32]).unwrap();
    let nonce = [9u8; 12];
    let pt = payload(100);
    let mut ct = pt.clone();
    let tag = k.seal_detached(&nonce, b"aad", &mut ct).unwrap();
    let mut out = vec![0u8; 100];
    k.open_detached_to(&nonce, b"aad", &ct, &tag, &mut out).unwrap();
    assert_eq!(out, pt);
    for len in [0, 99, 101] {
        let mut o = vec![0u8; len];
        assert_eq!(k.open_detached_to(&nonce, b"aad", &ct, &tag, &mut o).unwrap_err(), Error::BufferTooSmall);
    }
    let mut bad = tag;
    bad[15] ^= 0x80;
    let mut o = vec![0u8; 100];
    assert_eq!(k.open_detached_to(&nonce, b"aad", &ct, &bad, &mut o).unwrap_err(), Error::Authentication);
    assert_ne!(o, pt);
    assert_eq!(k.open_detached_to(&nonce, b"aaD", &ct, &tag, &mut o).unwrap_err(), Error::Authentication);
    assert_ne!(o, pt);
}

common::for_each_provider!(
    open_to_matches_in_place,
    failures_change_nothing,
    key_update_and_unrecorded,
    aead_open_detached_to
);
