//! A counter receiver across restarts (`SPEC.md` §4.4), the two ways it may
//! come back and nothing else: restored from an authenticated snapshot, it
//! still refuses every replay and accepts new sequence numbers; restarted
//! without one, it takes the restart floor from its persisted time mark and
//! refuses every frame from before the restart. The snapshot write order
//! makes a snapshot usable exactly once: one written under an epoch the
//! trusted epoch has moved past is a rollback.
#![allow(
    missing_docs,
    clippy::arithmetic_side_effects,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use common::{T0, open_counter, seal_counter};
use oncewire::clock::ManualClock;
use oncewire::replay::{CounterWindow, Freshness, TimeFloor, TimeMark};
use oncewire::store::{CounterStore, VolatileStore};
use oncewire::{CounterReceiver, CounterSender, DefaultProvider, Error, Secret};

const F: Freshness = Freshness::DEFAULT;
const SID: [u8; 8] = *b"sess-rst";
/// How far ahead of the clock the time mark reserves (`TimeMark::boot`).
const AHEAD: u64 = 1_000;

type Rx = CounterReceiver<DefaultProvider, 4>;

fn tx() -> CounterSender {
    CounterSender::<DefaultProvider>::new(&Secret::new([0x21; 32]), Secret::new([0x12; 12]), SID, 0).unwrap()
}

/// A receiver as it comes up after a restart: nothing in memory.
fn blank_rx() -> Rx {
    Rx::new(&Secret::new([0x21; 32]), Secret::new([0x12; 12]), SID).unwrap()
}

fn snapshot(rx: &Rx, epoch: u64) -> Vec<u8> {
    let mut out = vec![0u8; 4 * 10 + 64];
    let n = rx.snapshot(epoch, &mut out).unwrap();
    out.truncate(n);
    out
}

/// What survives a power cycle: the trusted epoch (storage that cannot be
/// rolled back), the last snapshot written, and the receiver's time mark.
#[derive(Default)]
struct Disk {
    trusted: VolatileStore,
    snapshot: Option<Vec<u8>>,
    mark: VolatileStore,
}

impl Disk {
    fn trusted(&mut self) -> u64 {
        self.trusted.load().unwrap().unwrap_or(0)
    }

    /// `SPEC.md` §4.4, step 1, at shutdown: `e = trusted + 1`; write the
    /// snapshot with epoch `e`; then set `trusted = e`.
    fn shut_down(&mut self, rx: &Rx) {
        let e = self.trusted() + 1;
        self.snapshot = Some(snapshot(rx, e));
        self.trusted.store(e).unwrap();
    }

    /// Step 2, at boot: restore the snapshot if its epoch is the trusted
    /// one; in every case `trusted = trusted + 1` before accepting any frame.
    /// Returns the restored receiver, or the restore's error.
    fn boot_from_snapshot(&mut self) -> Result<Rx, Error> {
        let trusted = self.trusted();
        let mut rx = blank_rx();
        let r = rx.restore(self.snapshot.as_ref().expect("a snapshot on disk"), trusted, F);
        self.trusted.store(trusted + 1).unwrap();
        if r.is_err() {
            assert_eq!(rx.window(), &CounterWindow::<4>::new(), "a failed restore changed the window");
            assert_eq!(rx.floor(), TimeFloor::NONE, "a failed restore changed the floor");
        }
        r.map(|()| rx)
    }

    /// Boot without a snapshot: the floor from the time mark.
    fn boot_with_floor(&mut self, clock: &ManualClock) -> (TimeMark<&mut VolatileStore>, Rx) {
        let (mark, floor) = TimeMark::boot(&mut self.mark, clock, &F, AHEAD).unwrap();
        (mark, blank_rx().with_restart_floor(floor, F))
    }
}

/// A first life at T0: a sender, an empty disk, a receiver that checks freshness.
fn first_life() -> (ManualClock, CounterSender, Disk, Rx) {
    (ManualClock::new(T0), tx(), Disk::default(), blank_rx().with_freshness(F))
}

#[test]
fn a_restored_receiver_refuses_the_replays_and_accepts_new_sequence_numbers() {
    let (clock, mut tx, mut disk, mut rx) = first_life();
    // Sequence numbers 0..=5 sealed; 3 is held back by the network.
    let frames: Vec<Vec<u8>> = (0..6u8).map(|i| seal_counter(&mut tx, &clock, &[i; 4])).collect();
    for (i, f) in frames.iter().enumerate().filter(|(i, _)| *i != 3) {
        assert_eq!(open_counter(&mut rx, &clock, f).unwrap(), [i as u8; 4]);
    }
    let window = rx.window().clone();
    disk.shut_down(&rx);
    assert_eq!(disk.trusted(), 1);
    drop(rx);

    clock.advance(2_000);
    let mut back = disk.boot_from_snapshot().unwrap();
    assert_eq!(disk.trusted(), 2);
    assert_eq!(back.window(), &window, "the restored window is the one snapshotted");
    // Every accepted frame is still a replay (each refusal changes nothing:
    // open_counter checks the frame and the window).
    for (i, f) in frames.iter().enumerate().filter(|(i, _)| *i != 3) {
        assert_eq!(open_counter(&mut back, &clock, f), Err(Error::Replay), "frame {i}");
    }
    // The held-back sequence number was never accepted: it opens, once.
    assert_eq!(open_counter(&mut back, &clock, &frames[3]).unwrap(), [3; 4]);
    assert_eq!(open_counter(&mut back, &clock, &frames[3]), Err(Error::Replay));
    // New sequence numbers open, once.
    for payload in [b"six".as_slice(), b"seven"] {
        let f = seal_counter(&mut tx, &clock, payload);
        assert_eq!(open_counter(&mut back, &clock, &f).unwrap(), payload);
        assert_eq!(open_counter(&mut back, &clock, &f), Err(Error::Replay));
    }
    // The restored receiver checks freshness.
    let stale = seal_counter(&mut tx, &ManualClock::new(T0 + 2_000 - F.max_age_ms - 1), b"old");
    assert_eq!(open_counter(&mut back, &clock, &stale), Err(Error::Stale));
}

#[test]
fn a_receiver_restarted_without_a_snapshot_refuses_everything_from_before_the_restart() {
    // The reboot clock: behind (no real-time clock, synced later), on time, ahead.
    for reboot_at in [T0 - 60_000, T0 + 1_000, T0 + 10_000] {
        let mut tx = tx();
        let mut disk = Disk::default();
        let clock = ManualClock::new(T0);
        // The first life booted a minute earlier, with no snapshot either.
        let (mut mark, mut rx) = disk.boot_with_floor(&ManualClock::new(T0 - 60_000));
        let accepted: Vec<Vec<u8>> = (0..4u8).map(|i| seal_counter(&mut tx, &clock, &[i; 3])).collect();
        mark.cover(&clock).unwrap();
        for (i, f) in accepted.iter().enumerate() {
            assert_eq!(open_counter(&mut rx, &clock, f).unwrap(), [i as u8; 3]);
        }
        // Sealed before the restart and never delivered; and one from a sender at
        // the skew limit, which this receiver could have accepted.
        let withheld = seal_counter(&mut tx, &clock, b"withheld");
        let at_skew = seal_counter(&mut tx, &ManualClock::new(T0 + F.max_future_skew_ms), b"skew");
        drop(rx);
        let _ = mark.into_store(); // power off: the mark ends here, and no snapshot is written

        let reboot = ManualClock::new(reboot_at);
        let (mut mark, mut rx) = disk.boot_with_floor(&reboot);
        let floor = rx.floor().get().unwrap();
        assert!(floor >= T0 + F.max_future_skew_ms, "floor {floor} below what was accepted (reboot at {reboot_at})");
        assert_eq!(rx.window(), &CounterWindow::<4>::new());
        // The clock is synced back to real time, then later still: every frame from
        // before the restart is below the floor.
        for now in [reboot_at, T0 + 1_000, T0 + 20_000] {
            let now = ManualClock::new(now.max(reboot_at));
            mark.cover(&now).unwrap();
            for (i, f) in accepted.iter().chain([&withheld, &at_skew]).enumerate() {
                assert_eq!(open_counter(&mut rx, &now, f), Err(Error::Stale), "frame {i}, reboot at {reboot_at}");
            }
        }
        // A frame stamped after the floor opens once the clock is there, once.
        let later = ManualClock::new(floor + 1);
        mark.cover(&later).unwrap();
        let fresh = seal_counter(&mut tx, &later, b"fresh");
        assert_eq!(open_counter(&mut rx, &later, &fresh).unwrap(), b"fresh");
        assert_eq!(open_counter(&mut rx, &later, &fresh), Err(Error::Replay));
        // Stamped at the floor itself: refused.
        let at_floor = seal_counter(&mut tx, &ManualClock::new(floor), b"floor");
        assert_eq!(open_counter(&mut rx, &later, &at_floor), Err(Error::Stale));
    }
}

#[test]
fn a_snapshot_is_refused_once_the_trusted_epoch_moved_on() {
    let (clock, mut tx, mut disk, mut rx) = first_life();
    let first = seal_counter(&mut tx, &clock, b"first");
    open_counter(&mut rx, &clock, &first).unwrap();
    disk.shut_down(&rx);
    let snap1 = disk.snapshot.clone().unwrap();
    assert_eq!((snap1[0], disk.trusted()), (1, 1), "written under epoch 1, then trusted = 1");

    // Boot: restored, and the trusted epoch moves on before anything is accepted.
    let mut rx = disk.boot_from_snapshot().unwrap();
    assert_eq!(disk.trusted(), 2);
    let second = seal_counter(&mut tx, &clock, b"second");
    open_counter(&mut rx, &clock, &second).unwrap();
    // A crash: no shutdown, so the last snapshot on disk is still snap1.
    drop(rx);

    // Epoch 1 is no longer trusted: restoring snap1 would forget `second`.
    let err = disk.boot_from_snapshot().unwrap_err();
    assert_eq!(err, Error::Rollback);
    assert_eq!(disk.trusted(), 3);
    let mut naive = blank_rx();
    naive.restore(&snap1, 1, F).unwrap();
    assert_eq!(open_counter(&mut naive, &clock, &second).unwrap(), b"second", "documents the replay a rollback opens");
    // Nor under any other trusted epoch.
    assert_eq!(blank_rx().restore(&snap1, 3, F).unwrap_err(), Error::Rollback);
    assert_eq!(blank_rx().restore(&snap1, 0, F).unwrap_err(), Error::Rollback);
    // So the receiver takes the restart floor, which refuses `second` too.
    clock.advance(1_000);
    let (mut mark, mut rx) = disk.boot_with_floor(&clock);
    mark.cover(&clock).unwrap();
    assert_eq!(open_counter(&mut rx, &clock, &first), Err(Error::Stale));
    assert_eq!(open_counter(&mut rx, &clock, &second), Err(Error::Stale));

    // A crash in the middle of step 1 (snapshot written with e = trusted + 1,
    // trusted not yet set to e): no snapshot has the trusted epoch.
    let e = disk.trusted() + 1;
    disk.snapshot = Some(snapshot(&rx, e));
    assert_eq!(disk.boot_from_snapshot().unwrap_err(), Error::Rollback);
    // And a snapshot restored once cannot be restored again after the next crash.
    disk.shut_down(&rx);
    drop(disk.boot_from_snapshot().unwrap());
    assert_eq!(disk.boot_from_snapshot().unwrap_err(), Error::Rollback);
}
