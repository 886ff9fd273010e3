//! Replay-check benches: a `CounterWindow` check, a `NonceRing` check at
//! 4096 entries, and a commit into a full ring. (Framed seal + open against
//! raw `aes-gcm` is the `transport` group of `benches/peers.rs`.)
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::panic
)]

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use oncewire::replay::{Commit, CounterWindow, Freshness, NonceRing};
use std::hint::black_box;
use std::time::Duration;

fn splitmix(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn nonce(x: &mut u64) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[..8].copy_from_slice(&splitmix(x).to_le_bytes());
    n[8..].copy_from_slice(&(splitmix(x) as u32).to_le_bytes());
    n
}

fn replay(c: &mut Criterion) {
    let mut g = c.benchmark_group("replay");
    g.measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1)).sample_size(50);

    let mut w = CounterWindow::<32>::new();
    for s in 0..4_000u64 {
        if s % 7 != 3 {
            w.commit(s);
        }
    }
    let seqs: Vec<u64> = (0..1024u64).map(|i| 4_000 - 1 - (i * 13) % 1_900).collect();
    let mut i = 0usize;
    g.bench_function(BenchmarkId::new("counter_window_check", 2048), |b| {
        b.iter(|| {
            i = (i + 1) & 1023;
            black_box(w.check(black_box(seqs[i])).is_ok())
        })
    });

    let now = 1_767_225_600_000u64;
    let f = Freshness { max_age_ms: u64::MAX / 4, max_future_skew_ms: 1_000 };
    let mut ring = Box::new(NonceRing::<4096>::new(f, [7u8; 16]));
    let mut x = 42u64;
    let mut present = Vec::new();
    for _ in 0..4096 {
        let n = nonce(&mut x);
        ring.commit(&n, now, now).unwrap();
        present.push(n);
    }
    let probes: Vec<[u8; 12]> =
        (0..1024).map(|k| if k % 2 == 0 { present[(k * 7) % 4096] } else { nonce(&mut x) }).collect();
    let mut j = 0usize;
    g.bench_function(BenchmarkId::new("nonce_ring_check", 4096), |b| {
        b.iter(|| {
            j = (j + 1) & 1023;
            black_box(ring.check(black_box(&probes[j]), now, now).is_ok())
        })
    });
    // A full ring whose oldest entry is still fresh: every commit evicts it
    // and raises the floor. Timestamps climb by 1 ms so each commit is fresh
    // and above the floor; the assert keeps the bench honest about that.
    let mut t = now;
    g.bench_function(BenchmarkId::new("nonce_ring_check_commit_full", 4096), |b| {
        b.iter(|| {
            t += 1;
            let n = nonce(&mut x);
            let r = ring.commit(&n, t, t);
            assert_eq!(r, Some(Commit::EvictedFresh));
            black_box(r)
        })
    });
    g.finish();
}

criterion_group!(benches, replay);
criterion_main!(benches);
