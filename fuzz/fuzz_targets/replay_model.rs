//! Differential: CounterWindow and NonceRing driven by arbitrary operation
//! sequences against a reference model (everything ever accepted). A replay
//! (the same sequence number; the same nonce with the same authenticated
//! timestamp) is never accepted; a fresh, unique, in-window message is
//! rejected only where the documented floor policy says so. The same nonce
//! with another timestamp is another frame (a sender's nonce reuse), which
//! the ring rejects while it holds the nonce and may accept after eviction.
//! A restart goes through an authenticated snapshot: the restored ring is
//! the same ring, and a tampered or rolled-back snapshot never restores.
#![no_main]
use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use oncewire::replay::SnapshotKey;
use oncewire::replay::{CounterWindow, Freshness, NonceRing};
use oncewire::{Error, RustCrypto};
use std::collections::{HashSet, VecDeque};

#[derive(Arbitrary, Debug)]
enum Op {
    Seq(u16),
    Jump(u32),
    Nonce { id: u8, age: i16 },
    Tick(u16),
    Back(u8),
    Restart(u16),
}

const CAP: usize = 8;

fuzz_target!(|ops: Vec<Op>| {
    let mut w = CounterWindow::<2>::new();
    let mut seen: HashSet<u64> = HashSet::new();
    let mut top = 0u64;
    let f = Freshness { max_age_ms: 1_000, max_future_skew_ms: 100 };
    let mut ring = NonceRing::<CAP>::new(f, [9; 16]);
    let mut accepted: HashSet<[u8; 12]> = HashSet::new();
    let mut accepted_frames: HashSet<([u8; 12], u64)> = HashSet::new();
    let mut fifo: VecDeque<u64> = VecDeque::new();
    let mut floor: Option<u64> = None;
    let mut now = 100_000u64;
    let snapshot_key = SnapshotKey::<RustCrypto>::derive(b"replay model receiver key");
    let mut epoch = 0u64;
    for op in ops {
        match op {
            Op::Seq(d) => {
                let seq = top.saturating_sub(u64::from(d % 200));
                step_window(&mut w, &mut seen, &mut top, seq);
            }
            Op::Jump(d) => {
                let seq = top.saturating_add(u64::from(d));
                step_window(&mut w, &mut seen, &mut top, seq);
            }
            Op::Nonce { id, age } => {
                let nonce = [id; 12];
                let ts = now.saturating_add_signed(i64::from(age));
                let got = ring.check(&nonce, ts, now);
                let replay = accepted_frames.contains(&(nonce, ts));
                let seen_nonce = accepted.contains(&nonce);
                let below_floor = floor.is_some_and(|fl| ts <= fl);
                let fresh = f.check(ts, now).is_ok();
                if replay {
                    assert!(got.is_err(), "replayed nonce accepted");
                }
                if !seen_nonce && fresh && !below_floor {
                    assert_eq!(got, Ok(()), "fresh unique nonce rejected outside the floor policy");
                }
                if below_floor {
                    assert_eq!(got, Err(Error::Stale));
                }
                if got.is_ok() {
                    ring.commit(&nonce, ts, now);
                    accepted.insert(nonce);
                    accepted_frames.insert((nonce, ts));
                    if fifo.len() == CAP {
                        let old = fifo.pop_front().unwrap();
                        floor = Some(floor.map_or(old, |fl| fl.max(old)));
                    }
                    fifo.push_back(ts);
                }
            }
            Op::Tick(d) => now = now.saturating_add(u64::from(d)),
            Op::Back(d) => now = now.saturating_sub(u64::from(d)),
            Op::Restart(flip) => {
                let mut snap = [0u8; 512];
                let n = ring.snapshot(&snapshot_key, b"model", epoch, &mut snap).unwrap();
                let restore = |bytes: &[u8], trusted_epoch| {
                    NonceRing::<CAP>::restore(bytes, &snapshot_key, b"model", trusted_epoch, f, [9; 16])
                };
                let mut bad = snap;
                bad[usize::from(flip) % n] ^= 1 << (flip >> 13);
                assert_eq!(restore(&bad[..n], epoch).err(), Some(Error::Authentication), "a tampered snapshot");
                assert_eq!(restore(&snap[..n], epoch + 1).err(), Some(Error::Rollback), "an old snapshot");
                let restored = restore(&snap[..n], epoch).unwrap();
                assert!(restored == ring, "the restored ring differs");
                ring = restored;
                epoch += 1;
            }
        }
    }
});

fn step_window(w: &mut CounterWindow<2>, seen: &mut HashSet<u64>, top: &mut u64, seq: u64) {
    let got = w.check(seq);
    if seen.contains(&seq) {
        assert!(got.is_err(), "replayed sequence number accepted");
    } else if seq > *top || top.wrapping_sub(seq) < CounterWindow::<2>::WINDOW {
        assert_eq!(got, Ok(()), "fresh in-window sequence number rejected");
    }
    if got.is_ok() {
        w.commit(seq);
        seen.insert(seq);
        *top = (*top).max(seq);
    }
}
