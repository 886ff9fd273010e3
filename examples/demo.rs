//! `cargo run --example demo`: oncewire end to end in one process.
//!
//! Shows sealing and opening with both nonce strategies, then plays the
//! attacks and checks each is rejected with its typed error. Exits non-zero
//! if any expected outcome did not happen.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::arithmetic_side_effects)]

use oncewire::clock::SystemClock;
use oncewire::replay::{Freshness, NonceRing};
use oncewire::rng::{OsRng, TryRng};
use oncewire::wire::{HEADER_LEN, buffer_len};
use oncewire::{CounterReceiver, CounterSender, Error, OneShotReceiver, OneShotSender, RustCrypto, Secret};
use std::process::ExitCode;

struct Transcript {
    failures: u32,
}

impl Transcript {
    fn step(&mut self, what: &str, ok: bool, detail: &str) {
        println!("  [{}] {what}: {detail}", if ok { " ok " } else { "FAIL" });
        if !ok {
            self.failures += 1;
        }
    }

    fn expect_err<T>(&mut self, what: &str, got: Result<T, Error>, want: Error) {
        match got {
            Err(e) if e == want => self.step(what, true, &format!("rejected with Error::{e:?} ({e})")),
            Err(e) => self.step(what, false, &format!("rejected, but with {e:?} instead of {want:?}")),
            Ok(_) => self.step(what, false, "ACCEPTED"),
        }
    }
}

fn random<const N: usize>(rng: &mut OsRng) -> [u8; N] {
    let mut b = [0u8; N];
    rng.try_fill_bytes(&mut b).expect("OS RNG");
    b
}

fn main() -> ExitCode {
    let clock = SystemClock;
    let mut rng = OsRng;
    let mut t = Transcript { failures: 0 };

    println!("oncewire demo: session records (counter nonces)");
    let key = Secret::new(random::<32>(&mut rng));
    let iv = random::<12>(&mut rng);
    let sid = random::<8>(&mut rng);
    let mut tx = CounterSender::<RustCrypto>::new(&key, Secret::new(iv), sid, 0).unwrap();
    let mut rx =
        CounterReceiver::<RustCrypto, 32>::new(&key, Secret::new(iv), sid).unwrap().with_freshness(Freshness::DEFAULT);

    let mut frames = Vec::new();
    for msg in ["GET /profile", "POST /score 9001", "GET /inventory"] {
        let mut buf = vec![0u8; buffer_len(msg.len())];
        let n = tx.seal(&clock, msg.as_bytes(), &mut buf).unwrap();
        buf.truncate(n);
        println!("  sealed {:>2} B payload -> {:>2} B frame, seq {}", msg.len(), n, tx.next_seq() - 1);
        frames.push(buf);
    }
    // Deliver out of order: 2, 0, 1.
    for i in [2usize, 0, 1] {
        let mut f = frames[i].clone();
        let opened = rx.open_in_place(&clock, &mut f).map(|o| String::from_utf8_lossy(o.payload).into_owned());
        t.step(&format!("open frame {i} (out of order)"), opened.is_ok(), &format!("{opened:?}"));
    }

    println!("attacks on the session:");
    let mut replay = frames[1].clone();
    t.expect_err("replay a captured frame", rx.open_in_place(&clock, &mut replay), Error::Replay);
    let window_before = rx.window().clone();
    let msg = b"POST /transfer amount=10";
    let mut fresh = vec![0u8; buffer_len(msg.len())];
    let n = tx.seal(&clock, msg, &mut fresh).unwrap();
    fresh.truncate(n);
    let mut tampered = fresh.clone();
    tampered[HEADER_LEN + 21] ^= 0x02; // "10" becomes "30"
    t.expect_err("change one byte of a frame", rx.open_in_place(&clock, &mut tampered), Error::Authentication);
    let mut header_tamper = fresh.clone();
    header_tamper[31] ^= 0x01; // timestamp
    t.expect_err(
        "change the timestamp in a header",
        rx.open_in_place(&clock, &mut header_tamper),
        Error::Authentication,
    );
    let mut truncated = fresh.clone();
    truncated.pop();
    t.expect_err("truncate a frame", rx.open_in_place(&clock, &mut truncated), Error::Truncated);
    t.step("replay state unchanged by bad frames", rx.window() == &window_before, "window compares equal");
    let opened = rx.open_in_place(&clock, &mut fresh).map(|o| String::from_utf8_lossy(o.payload).into_owned());
    t.step("the untouched frame still opens", opened.is_ok(), &format!("{opened:?}"));

    println!("oncewire demo: one-shot messages (random nonces)");
    let long_key = Secret::new(random::<32>(&mut rng));
    let key_id = *b"srv-key1";
    let mut one_tx = OneShotSender::<RustCrypto>::new(&long_key, key_id, 0).unwrap().with_cap(3);
    let ring = NonceRing::<256>::new(Freshness::DEFAULT, random::<16>(&mut rng));
    let mut one_rx = OneShotReceiver::<RustCrypto, 256>::new(&long_key, key_id, ring).unwrap();
    let msg = b"{\"op\":\"unlock\",\"door\":7}";
    let mut buf = vec![0u8; buffer_len(msg.len())];
    let n = one_tx.seal(&mut rng, &clock, msg, &mut buf).unwrap();
    buf.truncate(n);
    let mut copy = buf.clone();
    let opened = one_rx.open_in_place(&clock, &mut copy).map(|o| String::from_utf8_lossy(o.payload).into_owned());
    t.step("open one-shot frame", opened.is_ok(), &format!("{opened:?}"));
    let mut again = buf.clone();
    t.expect_err("replay the one-shot frame", one_rx.open_in_place(&clock, &mut again), Error::Replay);
    let mut scratch = vec![0u8; buffer_len(1)];
    one_tx.seal(&mut rng, &clock, b"a", &mut scratch).unwrap();
    one_tx.seal(&mut rng, &clock, b"b", &mut scratch).unwrap();
    t.expect_err(
        "seal past the key's invocation cap",
        one_tx.seal(&mut rng, &clock, b"c", &mut scratch),
        Error::KeyExhausted,
    );

    let mut audit = *rx.audit();
    audit.merge(one_rx.audit());
    println!("audit counters: {audit:?}");

    if t.failures == 0 {
        println!("demo: every expected outcome happened");
        ExitCode::SUCCESS
    } else {
        println!("demo: {} expected outcomes did NOT happen", t.failures);
        ExitCode::FAILURE
    }
}
