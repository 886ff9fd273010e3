//! Constant-time checks (dudect, Reparaz–Balasch–Verbauwhede 2017) of the
//! secret comparisons, driven through the public API:
//!
//! - `record_tag`: a forged frame whose tag is wrong in its first byte
//!   against one wrong in its last byte (both fail);
//! - `challenge_tag`: the same for a challenge's MAC tag;
//! - `challenge_request_hash`: a binding whose request hash differs from the
//!   received request's in the first byte against the last byte;
//! - `token_cnf`: a token whose `cnf` differs from the presenting key's
//!   thumbprint in the first byte against the last byte (many tokens per
//!   class, so the ECDSA verification before it averages out);
//! - `control_naive_eq`: a deliberately leaky early-exit `==` on 16 bytes,
//!   to show the harness sees a leak of this size on this machine;
//! - `replay_window_public` and `nonce_ring_public`: the replay checks on
//!   public inputs (sequence numbers, nonces in the header). Their timing
//!   may depend on those inputs; nothing secret flows into them.
//!
//! |t| below 4.5 means no leak was detected. Run:
//! `cargo run --release --example dudect`
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use dudect_bencher::rand::RngExt;
use dudect_bencher::{BenchRng, Class, CtRunner, ctbench_main};
use oncewire::cache::{Purpose, ReplayCache};
use oncewire::challenge::{BINDING_LEN, CHALLENGE_LEN, Challenge, StatelessChallenges};
use oncewire::clock::ManualClock;
use oncewire::device::{DeviceSigner, SoftwareSigner};
use oncewire::prover::Prover;
use oncewire::provider::CryptoProvider;
use oncewire::replay::{CounterWindow, Freshness, NonceRing};
use oncewire::rng::OsRng;
use oncewire::token::{Claims, TokenIssuer, TokenVerifier};
use oncewire::wire::buffer_len;
use oncewire::{CounterReceiver, CounterSender, RustCrypto, Secret};
use std::cell::RefCell;
use std::hint::black_box;

/// `challenge ‖ SHA-256(request)` (SPEC.md §12), computed here from the spec.
fn bind(challenge: &Challenge, request: &[u8]) -> [u8; BINDING_LEN] {
    let mut out = [0u8; BINDING_LEN];
    out[..CHALLENGE_LEN].copy_from_slice(challenge.as_bytes());
    out[CHALLENGE_LEN..].copy_from_slice(&<RustCrypto as CryptoProvider>::sha256(&[request]));
    out
}

const NOW: u64 = 1_767_225_600_000;
const SAMPLES: usize = 100_000;

fn class(rng: &mut BenchRng) -> Class {
    let left: bool = rng.random();
    if left { Class::Left } else { Class::Right }
}

fn record_tag(runner: &mut CtRunner, rng: &mut BenchRng) {
    let clock = ManualClock::new(NOW);
    let (key, iv) = (Secret::new([7u8; 32]), [9u8; 12]);
    let mut tx: CounterSender = CounterSender::new(&key, Secret::new(iv), *b"ct-check", 0).unwrap();
    let mut rx: CounterReceiver = CounterReceiver::new(&key, Secret::new(iv), *b"ct-check").unwrap();
    rx.set_max_failed(u64::MAX);
    let mut frame = vec![0u8; buffer_len(64)];
    let n = tx.seal(&clock, &[0x42; 64], &mut frame).unwrap();
    let mut inputs = Vec::with_capacity(SAMPLES);
    for _ in 0..SAMPLES {
        let c = class(rng);
        let mut f = frame[..n].to_vec();
        let at = if matches!(c, Class::Left) { n - 16 } else { n - 1 };
        f[at] ^= 1 << rng.random_range(0..8u32);
        inputs.push((c, f));
    }
    // run_one takes an `Fn`: the receiver and frame sit in RefCells (a
    // constant cost in both classes).
    let rx = RefCell::new(rx);
    for (c, f) in inputs {
        let f = RefCell::new(f);
        runner.run_one(c, || black_box(rx.borrow_mut().open_in_place(&clock, &mut f.borrow_mut()).is_err()));
    }
}

/// Flips a bit at `left_at` or `right_at` of a genuine challenge binding (by
/// class) and times `verify_bound`. A failed verification does not mark the
/// challenge used, so every sample reaches the same comparison.
fn challenge_binding(runner: &mut CtRunner, rng: &mut BenchRng, left_at: usize, right_at: usize) {
    let clock = ManualClock::new(NOW);
    let s: StatelessChallenges<RustCrypto, 64> = StatelessChallenges::new(Secret::new([0x66; 32]), 30_000, [1; 16]);
    let challenge = s.issue(&mut OsRng, &clock).unwrap();
    let request = b"POST /transfer amount=10";
    let binding = bind(&challenge, request);
    let mut inputs = Vec::with_capacity(SAMPLES);
    for _ in 0..SAMPLES {
        let c = class(rng);
        let mut b = binding;
        let at = if matches!(c, Class::Left) { left_at } else { right_at };
        b[at] ^= 1 << rng.random_range(0..8u32);
        inputs.push((c, b));
    }
    let s = RefCell::new(s);
    for (c, b) in inputs {
        runner.run_one(c, || black_box(s.borrow_mut().verify_bound(&clock, &b, request).is_err()));
    }
}

/// The challenge's MAC tag is bytes 24..40 of the binding.
fn challenge_tag(runner: &mut CtRunner, rng: &mut BenchRng) {
    challenge_binding(runner, rng, 24, 39);
}

/// The request hash is bytes 40..72 of the binding.
fn challenge_request_hash(runner: &mut CtRunner, rng: &mut BenchRng) {
    challenge_binding(runner, rng, 40, 71);
}

fn token_cnf(runner: &mut CtRunner, rng: &mut BenchRng) {
    const TOKENS: usize = 128;
    const TOKEN_SAMPLES: usize = 8_000;
    let issuer: TokenIssuer = TokenIssuer::generate(&mut OsRng).unwrap();
    let verifier: TokenVerifier = TokenVerifier::new(*issuer.public_key(), "api.example", 5_000);
    let mut device: SoftwareSigner = SoftwareSigner::generate(&mut OsRng).unwrap();
    let device_pk = device.public_key().unwrap();
    let good = issuer.cnf(&device_pk);
    let request = [3u8; 32];
    let clock = ManualClock::new(NOW);
    // Both classes fail at the cnf comparison, before the cache is touched.
    let cache: RefCell<ReplayCache<RustCrypto, 64>> =
        RefCell::new(ReplayCache::new(Purpose::TokenProofs, &Secret::new([5; 32]), Freshness::DEFAULT));
    let make = |at: usize, jti: u8| {
        let mut cnf = good;
        cnf[at] ^= 0x80;
        let jti = [jti; 16];
        let claims = Claims {
            iss: "https://auth.example",
            sub: b"lock-0042",
            aud: "api.example",
            iat: NOW,
            nbf: NOW,
            exp: NOW + 300_000,
            jti: &jti,
            cnf,
        };
        let mut out = vec![0u8; 512];
        let n = issuer.issue(&claims, &mut out).unwrap();
        out.truncate(n);
        out
    };
    let left: Vec<Vec<u8>> = (0..TOKENS).map(|i| make(0, i as u8)).collect();
    let right: Vec<Vec<u8>> = (0..TOKENS).map(|i| make(31, i as u8)).collect();
    let proofs: Vec<(Vec<u8>, Vec<u8>)> = left
        .iter()
        .zip(&right)
        .map(|(l, r)| {
            let pl = Prover::new(&mut device).prove(&mut OsRng, &clock, l, &request).unwrap();
            let pr = Prover::new(&mut device).prove(&mut OsRng, &clock, r, &request).unwrap();
            (pl.to_bytes().to_vec(), pr.to_bytes().to_vec())
        })
        .collect();
    let mut inputs = Vec::with_capacity(TOKEN_SAMPLES);
    for _ in 0..TOKEN_SAMPLES {
        let c = class(rng);
        let i = rng.random_range(0..TOKENS);
        inputs.push((c, i));
    }
    for (c, i) in inputs {
        let (token, proof) =
            if matches!(c, Class::Left) { (&left[i], &proofs[i].0) } else { (&right[i], &proofs[i].1) };
        runner.run_one(c, || {
            black_box(
                verifier.verify_bound(&mut cache.borrow_mut(), &clock, token, &device_pk, &request, proof).is_err(),
            )
        });
    }
}

fn control_naive_eq(runner: &mut CtRunner, rng: &mut BenchRng) {
    let secret: [u8; 16] = rng.random();
    let mut inputs = Vec::with_capacity(SAMPLES);
    for _ in 0..SAMPLES {
        let c = class(rng);
        let mut guess = secret;
        guess[if matches!(c, Class::Left) { 0 } else { 15 }] ^= 1;
        inputs.push((c, guess));
    }
    for (c, g) in inputs {
        runner.run_one(c, || {
            // Early exit: deliberately not constant time.
            let mut eq = true;
            for (a, b) in black_box(&secret).iter().zip(black_box(&g)) {
                if a != b {
                    eq = false;
                    break;
                }
            }
            eq
        });
    }
}

fn replay_window_public(runner: &mut CtRunner, rng: &mut BenchRng) {
    let mut w: CounterWindow<32> = CounterWindow::new();
    for s in (0..4_000u64).step_by(2) {
        w.commit(s);
    }
    let mut inputs = Vec::with_capacity(SAMPLES);
    for _ in 0..SAMPLES {
        let c = class(rng);
        // Left: an unseen number inside the window; right: one ahead of it.
        let seq = if matches!(c, Class::Left) {
            3_001 + 2 * rng.random_range(0..400u64)
        } else {
            4_000 + rng.random_range(0..1_000u64)
        };
        inputs.push((c, seq));
    }
    for (c, seq) in inputs {
        runner.run_one(c, || black_box(w.check(seq).is_ok()));
    }
}

fn nonce_ring_public(runner: &mut CtRunner, rng: &mut BenchRng) {
    let f = Freshness { max_age_ms: 60_000, max_future_skew_ms: 1_000 };
    let mut ring: Box<NonceRing<1024>> = Box::new(NonceRing::new(f, rng.random()));
    let mut present = Vec::new();
    for _ in 0..1024 {
        let n: [u8; 12] = rng.random();
        ring.commit(&n, NOW, NOW).unwrap();
        present.push(n);
    }
    let mut inputs = Vec::with_capacity(SAMPLES);
    for _ in 0..SAMPLES {
        let c = class(rng);
        // Left: a nonce already held (a replay); right: a fresh one.
        let n = if matches!(c, Class::Left) { present[rng.random_range(0..1024)] } else { rng.random() };
        inputs.push((c, n));
    }
    for (c, n) in inputs {
        runner.run_one(c, || black_box(ring.check(&n, NOW, NOW).is_ok()));
    }
}

ctbench_main!(
    record_tag,
    challenge_tag,
    challenge_request_hash,
    token_cnf,
    control_naive_eq,
    replay_window_public,
    nonce_ring_public
);
