//! Property tests of the replay structures against a reference model: the
//! set of everything ever accepted. Random interleavings, out-of-order
//! delivery, clock movement (forwards and backwards) and floods far beyond
//! capacity. A replay is never accepted; a fresh, unique, in-window message
//! is rejected only where the documented floor policy (`SPEC.md` §4.3) says so.
#![allow(
    missing_docs,
    clippy::arithmetic_side_effects,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use oncewire::DefaultProvider;
use oncewire::Error;
use oncewire::replay::SnapshotKey;
use oncewire::replay::{CounterWindow, Freshness, NonceRing};
use proptest::prelude::*;
use std::collections::{HashSet, VecDeque};

#[derive(Clone, Debug)]
enum WinOp {
    Back(u16),
    Ahead(u32),
    Huge(u64),
}

fn win_op() -> impl Strategy<Value = WinOp> {
    prop_oneof![
        6 => (0u16..300).prop_map(WinOp::Back),
        3 => (0u32..200).prop_map(WinOp::Ahead),
        1 => any::<u64>().prop_map(WinOp::Huge),
    ]
}

fn window_model<const W: usize>(ops: &[WinOp]) {
    let mut w = CounterWindow::<W>::new();
    let mut seen: HashSet<u64> = HashSet::new();
    let mut top = 0u64;
    for op in ops {
        let seq = match op {
            WinOp::Back(d) => top.saturating_sub(u64::from(*d)),
            WinOp::Ahead(d) => top.saturating_add(u64::from(*d)),
            WinOp::Huge(v) => *v,
        };
        let before = w.clone();
        let got = w.check(seq);
        assert_eq!(w, before, "check must be pure");
        if seen.contains(&seq) {
            let want = if top - seq >= CounterWindow::<W>::WINDOW { Error::Stale } else { Error::Replay };
            assert_eq!(got, Err(want), "replayed sequence number {seq} (top {top})");
        } else if seq > top || top - seq < CounterWindow::<W>::WINDOW {
            assert_eq!(got, Ok(()), "fresh in-window seq {seq} rejected (top {top})");
        } else {
            assert_eq!(got, Err(Error::Stale), "seq {seq} below the window (top {top})");
        }
        if got.is_ok() {
            w.commit(seq);
            seen.insert(seq);
            top = top.max(seq);
        }
    }
}

#[derive(Clone, Debug)]
enum RingOp {
    /// Submit a frame: a nonce from a small pool (so repeats are common), a
    /// timestamp relative to now, and whether to reuse a previously accepted
    /// frame's exact (nonce, timestamp) pair instead (a byte-for-byte replay).
    Submit {
        id: u8,
        offset: i32,
        replay_pick: Option<usize>,
    },
    Advance(u32),
    Back(u16),
}

const AGE: u64 = 2_000;
const SKEW: u64 = 200;

fn ring_op() -> impl Strategy<Value = RingOp> {
    prop_oneof![
        8 => (any::<u8>(), -(2 * AGE as i32)..(2 * SKEW as i32), proptest::option::weighted(0.3, any::<usize>()))
            .prop_map(|(id, offset, replay_pick)| RingOp::Submit { id, offset, replay_pick }),
        2 => (0u32..500).prop_map(RingOp::Advance),
        1 => (0u16..300).prop_map(RingOp::Back),
    ]
}

fn ring_model<const N: usize>(ops: &[RingOp]) {
    let f = Freshness { max_age_ms: AGE, max_future_skew_ms: SKEW };
    let mut ring = NonceRing::<N>::new(f, [3; 16]);
    let mut now = 1_000_000u64;
    let mut frames: Vec<([u8; 12], u64)> = Vec::new();
    let mut frame_set: HashSet<([u8; 12], u64)> = HashSet::new();
    let mut nonces: HashSet<[u8; 12]> = HashSet::new();
    let mut fifo: VecDeque<u64> = VecDeque::new();
    let mut floor: Option<u64> = None;
    let mut accepted = 0usize;
    for op in ops {
        match op {
            RingOp::Advance(d) => now += u64::from(*d),
            RingOp::Back(d) => now -= u64::from(*d),
            RingOp::Submit { id, offset, replay_pick } => {
                let (nonce, ts) = match (replay_pick, frames.is_empty()) {
                    (Some(i), false) => frames[i % frames.len()],
                    _ => {
                        let mut n = [*id; 12];
                        n[0] = id.wrapping_mul(31);
                        (n, now.saturating_add_signed(i64::from(*offset)))
                    }
                };
                let before = ring.clone();
                let got = ring.check(&nonce, ts, now);
                assert_eq!(ring, before, "check must be pure");
                let below_floor = floor.is_some_and(|fl| ts <= fl);
                if frame_set.contains(&(nonce, ts)) {
                    assert!(got.is_err(), "replay of an accepted frame was accepted");
                } else if !nonces.contains(&nonce) && f.check(ts, now).is_ok() && !below_floor {
                    assert_eq!(got, Ok(()), "fresh unique in-window frame rejected outside the floor policy");
                }
                if below_floor {
                    assert_eq!(got, Err(Error::Stale));
                }
                if got.is_ok() {
                    ring.commit(&nonce, ts, now).unwrap();
                    accepted += 1;
                    frames.push((nonce, ts));
                    frame_set.insert((nonce, ts));
                    nonces.insert(nonce);
                    if fifo.len() == N {
                        let old = fifo.pop_front().unwrap();
                        floor = Some(floor.map_or(old, |fl| fl.max(old)));
                    }
                    fifo.push_back(ts);
                    assert_eq!(ring.floor().get(), floor, "floor differs from the documented policy");
                }
            }
        }
    }
    assert!(ring.len() <= N);
    // A snapshot restores to an equal ring that behaves the same.
    let mut buf = vec![0u8; 64 + N * 32];
    let key = SnapshotKey::<DefaultProvider>::derive(b"receiver key");
    let n = ring.snapshot(&key, b"key-0001", 4, &mut buf).unwrap();
    let back = NonceRing::<N>::restore(&buf[..n], &key, b"key-0001", 4, f, [3; 16]).unwrap();
    assert_eq!(back, ring);
    for (nonce, ts) in frames.iter().rev().take(8) {
        assert_eq!(back.check(nonce, *ts, now), ring.check(nonce, *ts, now));
    }
    assert_eq!(NonceRing::<N>::restore(&buf[..n], &key, b"key-0001", 5, f, [3; 16]).unwrap_err(), Error::Rollback);
    let _ = accepted;
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn counter_window_2_never_accepts_a_replay(ops in proptest::collection::vec(win_op(), 1..500)) {
        window_model::<2>(&ops);
    }

    #[test]
    fn counter_window_4_never_accepts_a_replay(ops in proptest::collection::vec(win_op(), 1..500)) {
        window_model::<4>(&ops);
    }

    #[test]
    fn nonce_ring_4_under_floods(ops in proptest::collection::vec(ring_op(), 1..500)) {
        ring_model::<4>(&ops);
    }

    #[test]
    fn nonce_ring_16_under_floods(ops in proptest::collection::vec(ring_op(), 1..500)) {
        ring_model::<16>(&ops);
    }

    #[test]
    fn after_a_restart_nothing_before_the_floor_is_accepted(now in 10_000u64..1u64 << 50, back in 0u64..10_000, id in any::<u8>()) {
        let f = Freshness { max_age_ms: AGE, max_future_skew_ms: SKEW };
        let ring = NonceRing::<8>::after_restart(f, [1; 16], now);
        // Anything a pre-restart receiver could have accepted had ts <= now + skew.
        let ts = (now + SKEW).saturating_sub(back);
        prop_assert_eq!(ring.check(&[id; 12], ts, now), Err(Error::Stale));
        prop_assert_eq!(ring.check(&[id; 12], now + SKEW + 1, now + SKEW + 1), Ok(()));
    }
}
