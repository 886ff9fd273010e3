//! The server-side fleet API (`SPEC.md` §17): a session and a pending
//! handshake exported by one server and imported by another, frames
//! authenticated without being recorded and committed afterwards, and
//! sends only under granted (reserved) sequence numbers.
#![allow(
    missing_docs,
    clippy::arithmetic_side_effects,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use oncewire::clock::ManualClock;
use oncewire::device::{DeviceId, DeviceSigner, SoftwareSigner};
use oncewire::handshake::{ClientHandshake, MAX_HANDSHAKE_LEN, PENDING_STATE_LEN, ServerAwaitFinish, ServerKey};
use oncewire::rng::OsRng;
use oncewire::session::{Limits, Received, SESSION_STATE_LEN, SeqUse, Session};
use oncewire::wire::buffer_len;
use oncewire::{Error, PublicKey};

const NOW: u64 = 1_767_225_600_000;

struct Keys(DeviceId, PublicKey);
impl oncewire::device::DeviceKeys for Keys {
    fn device_key(&self, d: &DeviceId) -> Option<PublicKey> {
        (d == &self.0).then_some(self.1)
    }
}

/// Message 2 on server A, message 3 on server B (from A's exported
/// pending state): returns the client's session and B's.
fn handshake_across(clock: &ManualClock) -> (Session, Session) {
    let server = ServerKey::<oncewire::DefaultProvider>::generate(&mut OsRng).unwrap();
    let device = DeviceId::new(b"lock-0042").unwrap();
    let mut signer = SoftwareSigner::<oncewire::DefaultProvider>::generate(&mut OsRng).unwrap();
    let keys = Keys(device, signer.public_key().unwrap());
    let mut m1 = [0u8; MAX_HANDSHAKE_LEN];
    let (client, n1) =
        ClientHandshake::<oncewire::DefaultProvider>::start(*server.public_key(), &mut OsRng, clock, &mut m1).unwrap();
    let mut m2 = [0u8; MAX_HANDSHAKE_LEN];
    let (pending, n2) = server.accept(&mut OsRng, clock, &m1[..n1], Limits::DEFAULT, &mut m2).unwrap();
    let mut state = [0u8; PENDING_STATE_LEN];
    pending.export(&mut state).unwrap();
    let at_b = ServerAwaitFinish::<oncewire::DefaultProvider>::import(&state, Limits::DEFAULT).unwrap();
    assert_eq!(at_b.session_id(), pending.session_id());
    assert_eq!(at_b.deadline_ms(), pending.deadline_ms());
    let mut m3 = [0u8; MAX_HANDSHAKE_LEN];
    let (c, n3) = client.finish::<_, 32>(clock, &m2[..n2], device, &mut signer, Limits::DEFAULT, &mut m3).unwrap();
    let sv = at_b.finish::<_, 32>(clock, &mut m3[..n3], &keys).unwrap();
    assert_eq!(c.handshake_hash(), sv.handshake_hash());
    (c, sv)
}

fn export(s: &Session, after: Option<SeqUse>) -> [u8; SESSION_STATE_LEN] {
    let mut out = [0u8; SESSION_STATE_LEN];
    s.export(after, &mut out).unwrap();
    out
}

fn request(c: &mut Session, clock: &ManualClock, body: &[u8]) -> (Vec<u8>, oncewire::RequestId) {
    let mut f = vec![0u8; buffer_len(body.len())];
    let (n, id) = c.seal_request(clock, body, &mut f).unwrap();
    f.truncate(n);
    (f, id)
}

#[test]
fn pending_state_rejects_an_unknown_version() {
    let clock = ManualClock::new(NOW);
    let server = ServerKey::<oncewire::DefaultProvider>::generate(&mut OsRng).unwrap();
    let mut m1 = [0u8; MAX_HANDSHAKE_LEN];
    let (_, n1) =
        ClientHandshake::<oncewire::DefaultProvider>::start(*server.public_key(), &mut OsRng, &clock, &mut m1).unwrap();
    let mut m2 = [0u8; MAX_HANDSHAKE_LEN];
    let (pending, _) = server.accept(&mut OsRng, &clock, &m1[..n1], Limits::DEFAULT, &mut m2).unwrap();
    let mut state = [0u8; PENDING_STATE_LEN];
    pending.export(&mut state).unwrap();
    state[0] ^= 0xff;
    assert_eq!(
        ServerAwaitFinish::<oncewire::DefaultProvider>::import(&state, Limits::DEFAULT).unwrap_err(),
        Error::Decode
    );
}

#[test]
fn a_session_continues_on_another_server() {
    let clock = ManualClock::new(NOW);
    let (mut c, mut a) = handshake_across(&clock);
    a.hold_sends();
    // Held: nothing is sealed until a grant.
    let (f, id) = request(&mut c, &clock, b"one");
    let mut g = f.clone();
    let Received::Record(_, rid) = a.open_in_place(&clock, &mut g).unwrap() else { panic!() };
    assert_eq!(rid, id);
    assert_eq!(a.sends_needed(10), 1);
    let mut out = vec![0u8; buffer_len(10)];
    assert_eq!(a.seal_response(&clock, rid, b"0123456789", &mut out).unwrap_err(), Error::KeyExhausted);

    // Server B imports A's state: same keys, an empty window, held sends.
    let mut b = Session::<oncewire::DefaultProvider, 32>::import(&export(&a, None), Limits::DEFAULT).unwrap();
    assert_eq!(b.session_id(), a.session_id());
    assert_eq!(b.device(), a.device());
    assert_eq!(b.expires_at_ms(), a.expires_at_ms());
    assert_eq!(b.handshake_hash(), a.handshake_hash());
    // B's window does not know what A accepted: the shared store must.
    let mut again = f.clone();
    let (_, used) = b.open_unrecorded(&clock, &mut again).unwrap();
    assert_eq!(used, SeqUse { generation: 0, seq: id.seq, key_update: false });

    // Grants: A gets 100..110, B gets 110..120; both seal responses the client opens.
    a.grant_sends(100, 10).unwrap();
    b.grant_sends(110, 10).unwrap();
    assert_eq!(a.next_seq(), 100);
    let n = a.seal_response(&clock, rid, b"from a", &mut out).unwrap();
    assert_eq!(c.open_response(&clock, id, &mut out[..n]).unwrap().payload, b"from a");

    let (f2, id2) = request(&mut c, &clock, b"two");
    let mut g2 = f2.clone();
    let (Received::Record(o, rid2), used2) = b.open_unrecorded(&clock, &mut g2).unwrap() else { panic!() };
    assert_eq!(o.payload, b"two");
    b.commit(used2).unwrap();
    // Committed once: a second commit, and a replay, are refused.
    assert_eq!(b.commit(used2).unwrap_err(), Error::Replay);
    let mut g3 = f2.clone();
    assert_eq!(b.open_unrecorded(&clock, &mut g3).unwrap_err(), Error::Replay);
    let mut r = vec![0u8; buffer_len(6)];
    let n = b.seal_response(&clock, rid2, b"from b", &mut r).unwrap();
    assert_eq!(c.open_response(&clock, id2, &mut r[..n]).unwrap().payload, b"from b");
    assert_eq!(b.next_seq(), 111);

    // A grant never goes back under a number already sealed.
    assert_eq!(b.grant_sends(105, 10).unwrap_err(), Error::Misuse);
    // Nor past the key's record limit.
    assert_eq!(b.grant_sends(Limits::DEFAULT.max_records_per_key - 5, 10).unwrap_err(), Error::KeyExhausted);
    // A grant is used up, then nothing is sealed.
    b.grant_sends(200, 1).unwrap();
    assert_eq!(b.sends_needed(1), 0);
    b.seal_response(&clock, rid2, b"x", &mut r).unwrap();
    assert_eq!(b.sends_needed(1), 1);
    assert_eq!(b.seal_response(&clock, rid2, b"x", &mut r).unwrap_err(), Error::KeyExhausted);
}

#[test]
fn a_grant_carries_its_share_of_blocks() {
    let clock = ManualClock::new(NOW);
    let (_, mut a) = handshake_across(&clock);
    // 2^34 blocks over 2^24 records: 1024 blocks (16 KiB) per number.
    a.hold_sends();
    a.grant_sends(0, 1).unwrap();
    // GCM uses one block more than the payload's (the tag's).
    assert_eq!(a.sends_needed(16 * 1024 - 16), 0);
    assert_eq!(a.sends_needed(16 * 1024), 2);
    assert_eq!(a.sends_needed(64 * 1024 - 16), 4);
    assert_eq!(a.sends_needed(64 * 1024), 5);
}

#[test]
fn a_key_update_is_applied_only_when_committed_and_exports_ahead() {
    let clock = ManualClock::new(NOW);
    let (mut c, mut a) = handshake_across(&clock);
    let mut ku = vec![0u8; buffer_len(0)];
    let n = c.update_keys(&clock, &mut ku).unwrap();
    let mut k = ku[..n].to_vec();
    let (r, used) = a.open_unrecorded(&clock, &mut k).unwrap();
    assert!(matches!(r, Received::KeyUpdated { generation: 1 }));
    assert!(used.key_update);
    // Not applied yet.
    assert_eq!(a.generations().1, 0);
    // The state another server will continue from, once committed.
    let ahead = export(&a, Some(used));
    assert_eq!(
        a.export(Some(SeqUse { generation: 0, seq: 9, key_update: false }), &mut [0u8; SESSION_STATE_LEN]).unwrap_err(),
        Error::Misuse
    );
    a.commit(used).unwrap();
    assert_eq!(a.generations().1, 1);
    assert_eq!(export(&a, None), ahead);

    let mut b = Session::<oncewire::DefaultProvider, 32>::import(&ahead, Limits::DEFAULT).unwrap();
    assert_eq!(b.generations().1, 1);
    let (f, _) = request(&mut c, &clock, b"after the update");
    let mut g = f.clone();
    let (Received::Record(o, rid), used) = b.open_unrecorded(&clock, &mut g).unwrap() else { panic!() };
    assert_eq!(o.payload, b"after the update");
    assert_eq!(rid.generation, 1);
    b.commit(used).unwrap();
    // A commit from before the key update is refused.
    assert_eq!(b.commit(SeqUse { generation: 0, seq: 7, key_update: false }).unwrap_err(), Error::Stale);
}

#[test]
fn imported_state_is_checked() {
    let clock = ManualClock::new(NOW);
    let (c, a) = handshake_across(&clock);
    let state = export(&a, None);
    // Clients have nothing to export.
    assert_eq!(c.export(None, &mut [0u8; SESSION_STATE_LEN]).unwrap_err(), Error::Misuse);
    let mut bad = state;
    bad[0] = 2;
    assert_eq!(Session::<oncewire::DefaultProvider, 32>::import(&bad, Limits::DEFAULT).unwrap_err(), Error::Decode);
    // A device id length past 32, or zero, or non-zero padding.
    let at = 1 + oncewire::wire::KEY_ID_LEN;
    for len in [0u8, 33, 255] {
        let mut bad = state;
        bad[at] = len;
        assert_eq!(Session::<oncewire::DefaultProvider, 32>::import(&bad, Limits::DEFAULT).unwrap_err(), Error::Decode);
    }
    let mut bad = state;
    bad[at + 1 + 31] = 1;
    assert_eq!(Session::<oncewire::DefaultProvider, 32>::import(&bad, Limits::DEFAULT).unwrap_err(), Error::Decode);
}
