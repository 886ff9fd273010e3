// `finish` consumes the state: after a failed attempt there is nothing left
// to retry with, so an attacker gets one try per handshake.
use oncewire::clock::ManualClock;
use oncewire::device::{DeviceId, SoftwareSigner};
use oncewire::handshake::{ClientHandshake, MAX_HANDSHAKE_LEN, ServerKey};
use oncewire::rng::OsRng;
use oncewire::session::{Limits, Session};
use oncewire::RustCrypto;

fn main() {
    let clock = ManualClock::new(0);
    let server = ServerKey::<RustCrypto>::generate(&mut OsRng).unwrap();
    let mut signer = SoftwareSigner::<RustCrypto>::generate(&mut OsRng).unwrap();
    let device = DeviceId::new(b"dev").unwrap();
    let mut m1 = [0u8; MAX_HANDSHAKE_LEN];
    let (pending, _) = ClientHandshake::<RustCrypto>::start(*server.public_key(), &mut OsRng, &clock, &mut m1).unwrap();
    let mut m3 = [0u8; MAX_HANDSHAKE_LEN];
    let first: Result<(Session, usize), _> =
        pending.finish::<_, 32>(&clock, b"forged", device, &mut signer, Limits::DEFAULT, &mut m3);
    assert!(first.is_err());
    let _second: Result<(Session, usize), _> =
        pending.finish::<_, 32>(&clock, b"genuine", device, &mut signer, Limits::DEFAULT, &mut m3);
}
