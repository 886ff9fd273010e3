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

use oncewire::clock::ManualClock;
use oncewire::device::{DeviceId, EnrollmentChallenge, SoftwareSigner};
use oncewire::handshake::{ClientHandshake, MAX_HANDSHAKE_LEN, ServerKey};
use oncewire::prover::Prover;
use oncewire::provider::PublicKey;
use oncewire::rng::OsRng;
use oncewire::session::{Limits, Peer, Received, Session};
use oncewire::wire::buffer_len;
use oncewire::{Error, Expiry, RustCrypto};

struct Setup {
    server: ServerKey,
    device: DeviceId,
    signer: SoftwareSigner,
    enrolled: (DeviceId, PublicKey),
    clock: ManualClock,
}

fn setup() -> Setup {
    let mut rng = OsRng;
    let clock = ManualClock::new(1_767_225_600_000);
    let server = ServerKey::<RustCrypto>::generate(&mut rng).unwrap();
    let device = DeviceId::new(b"lock-0042").unwrap();
    let mut signer = SoftwareSigner::<RustCrypto>::generate(&mut rng).unwrap();
    // Enrollment: proof of possession over a fresh server challenge.
    let challenge = EnrollmentChallenge::issue(&mut rng, &clock, 60_000).unwrap();
    let request = Prover::new(&mut signer).answer_enrollment(server.public_key(), challenge.nonce(), device).unwrap();
    let enrolled = challenge.verify::<RustCrypto>(server.public_key(), &request, &clock).unwrap();
    Setup { server, device, signer, enrolled: (enrolled.device, enrolled.public_key), clock }
}

trait Now {
    fn now(&self) -> u64;
}
impl Now for ManualClock {
    fn now(&self) -> u64 {
        oncewire::Clock::now_ms(self)
    }
}

fn handshake(s: &mut Setup, limits: Limits) -> (Session, Session) {
    let mut rng = OsRng;
    let mut m1 = [0u8; MAX_HANDSHAKE_LEN];
    let (client, n1) =
        ClientHandshake::<RustCrypto>::start(*s.server.public_key(), &mut rng, &s.clock, &mut m1).unwrap();
    let mut m2 = [0u8; MAX_HANDSHAKE_LEN];
    let (pending, n2) = s.server.accept(&mut rng, &s.clock, &m1[..n1], limits, &mut m2).unwrap();
    let mut m3 = [0u8; MAX_HANDSHAKE_LEN];
    let (client_session, n3) =
        client.finish::<_, 32>(&s.clock, &m2[..n2], s.device, &mut s.signer, Limits::DEFAULT, &mut m3).unwrap();
    assert_eq!(pending.session_id(), client_session.session_id());
    let server_session = pending.finish::<_, 32>(&s.clock, &mut m3[..n3], &s.enrolled).unwrap();
    (client_session, server_session)
}

#[test]
fn handshake_then_request_response() {
    let mut s = setup();
    let (mut c, mut sv) = handshake(&mut s, Limits::DEFAULT);
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
    let mut s = setup();
    let (mut c, mut sv) = handshake(&mut s, Limits::DEFAULT);
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
    let mut s = setup();
    let limits = Limits { lifetime_ms: 1_000, max_records_per_key: 4, ..Limits::DEFAULT };
    let (mut c, mut sv) = handshake(&mut s, limits);
    // The server's lifetime reaches the client through message 2.
    assert_eq!(c.expires_at_ms(), s.clock.now() + 1_000);
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
