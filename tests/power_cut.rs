//! Reboot safety (DESIGN C4e): a power cut at every step of the counter
//! reservation, before and after each durable write, never leads to a
//! sequence number (and so a nonce) being used twice under the same key.
#![allow(
    missing_docs,
    clippy::arithmetic_side_effects,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use oncewire::clock::ManualClock;
use oncewire::record::PersistentSender;
use oncewire::store::CounterStore;
use oncewire::wire::{Frame, NonceField, buffer_len};
use oncewire::{DefaultProvider, Error, Secret};
use std::collections::HashSet;

/// Where in a write the power goes.
#[derive(Clone, Copy, Debug)]
enum Cut {
    /// Before the new value is durable: the old value stays.
    BeforeCommit,
    /// After the new value is durable, before the call returns.
    AfterCommit,
}

/// Flash that holds one value atomically and loses power at a chosen write.
struct Flash {
    durable: Option<u64>,
    writes_left: Option<usize>,
    cut: Cut,
    dead: bool,
}

impl CounterStore for &mut Flash {
    fn load(&mut self) -> Result<Option<u64>, Error> {
        if self.dead {
            return Err(Error::Storage);
        }
        Ok(self.durable)
    }
    fn store(&mut self, bound: u64) -> Result<(), Error> {
        if self.dead {
            return Err(Error::Storage);
        }
        if let Some(left) = self.writes_left.as_mut() {
            if *left == 0 {
                self.dead = true;
                if let Cut::AfterCommit = self.cut {
                    self.durable = Some(bound);
                }
                return Err(Error::Storage);
            }
            *left -= 1;
        }
        self.durable = Some(bound);
        Ok(())
    }
}

fn seq_of(frame: &[u8]) -> u64 {
    match Frame::new_checked(frame).unwrap().header().nonce {
        NonceField::Counter(s) => s,
        other => panic!("{other:?}"),
    }
}

/// Boots, seals until the power is cut (or `frames` are sealed), and
/// records every sequence number that left the device.
fn run_until_cut(flash: &mut Flash, block: u64, frames: usize, used: &mut HashSet<u64>) -> usize {
    let key = Secret::new([9u8; 32]);
    let clock = ManualClock::new(1);
    let Ok(mut tx) =
        PersistentSender::<_, DefaultProvider>::boot(&key, Secret::new([3; 12]), [1; 8], &mut *flash, block)
    else {
        return 0;
    };
    let mut buf = [0u8; buffer_len(4)];
    let mut sent = 0;
    for _ in 0..frames {
        match tx.seal(&clock, b"ping", &mut buf) {
            Ok(n) => {
                let seq = seq_of(&buf[..n]);
                assert!(used.insert(seq), "sequence number {seq} reused: nonce reuse under the same key");
                sent += 1;
            }
            Err(e) => {
                assert_eq!(e, Error::Storage);
                break;
            }
        }
    }
    sent
}

#[test]
fn power_cut_at_every_reservation_step_never_reuses_a_nonce() {
    for block in [1u64, 3, 16] {
        for cut in [Cut::BeforeCommit, Cut::AfterCommit] {
            for cut_at in 0..12usize {
                let mut flash = Flash { durable: None, writes_left: Some(cut_at), cut, dead: false };
                let mut used = HashSet::new();
                // First life: cut at the chosen write.
                run_until_cut(&mut flash, block, 200, &mut used);
                // Several more lives, each cut at a different write.
                for life in 0..5usize {
                    flash.dead = false;
                    flash.writes_left = Some((cut_at + life) % 4);
                    run_until_cut(&mut flash, block, 50, &mut used);
                }
                // A last life without cuts makes progress.
                flash.dead = false;
                flash.writes_left = None;
                let before = used.len();
                assert_eq!(run_until_cut(&mut flash, block, 20, &mut used), 20);
                assert_eq!(used.len(), before + 20);
            }
        }
    }
}

#[test]
fn reboot_resumes_at_the_reserved_bound() {
    let mut flash = Flash { durable: None, writes_left: None, cut: Cut::BeforeCommit, dead: false };
    let mut used = HashSet::new();
    assert_eq!(run_until_cut(&mut flash, 10, 3, &mut used), 3);
    assert_eq!(flash.durable, Some(10));
    // Reboot: 3..10 were reserved but unused; they are skipped.
    assert_eq!(run_until_cut(&mut flash, 10, 1, &mut used), 1);
    assert!(used.contains(&10));
    assert_eq!(flash.durable, Some(20));
}

#[test]
fn a_failing_store_blocks_sealing() {
    let mut flash = Flash { durable: Some(5), writes_left: Some(0), cut: Cut::BeforeCommit, dead: false };
    let key = Secret::new([9u8; 32]);
    let r = PersistentSender::<_, DefaultProvider>::boot(&key, Secret::new([3; 12]), [1; 8], &mut flash, 4);
    assert_eq!(r.err().map(|_| ()), Some(()));
}
