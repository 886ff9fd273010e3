// A client waiting for message 2 has no keys yet: it cannot seal.
use oncewire::clock::ManualClock;
use oncewire::handshake::{ClientHandshake, MAX_HANDSHAKE_LEN, ServerKey};
use oncewire::rng::OsRng;
use oncewire::RustCrypto;

fn main() {
    let clock = ManualClock::new(0);
    let server = ServerKey::<RustCrypto>::generate(&mut OsRng).unwrap();
    let mut m1 = [0u8; MAX_HANDSHAKE_LEN];
    let (mut pending, _) = ClientHandshake::<RustCrypto>::start(*server.public_key(), &mut OsRng, &clock, &mut m1).unwrap();
    let mut out = [0u8; 64];
    pending.seal(&clock, b"too early", &mut out);
}
