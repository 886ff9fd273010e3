//! The fixed-ephemeral entry points do not exist in a normal build, whatever
//! Cargo features any crate in the graph enables: they need
//! RUSTFLAGS="--cfg oncewire_test_vectors".
use oncewire::handshake::{ClientHandshake, ServerKey};
use oncewire::provider::CryptoProvider;
use oncewire::{RustCrypto, Secret};

fn main() {
    let mut m1 = [0u8; 256];
    let server = ServerKey::<RustCrypto>::from_bytes(&Secret::new([1; 32])).unwrap();
    let (e, e_pub) = RustCrypto::p256_ecdh_secret_from_bytes(&Secret::new([2; 32])).unwrap();
    let _ = ClientHandshake::<RustCrypto>::start_with(*server.public_key(), [0; 8], e, e_pub, 0, &mut m1);
}
