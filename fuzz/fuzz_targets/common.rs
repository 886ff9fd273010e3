//! Fixed keys and real sealed seeds shared by the targets. Deterministic, so
//! a crash reproduces; the corpus holds real frames made with these keys.
#![allow(dead_code)]

use oncewire::clock::ManualClock;
use oncewire::device::{DeviceId, SoftwareSigner};
use oncewire::handshake::{ClientHandshake, MAX_HANDSHAKE_LEN, ServerKey};
use oncewire::provider::{CryptoProvider, PublicKey};
use oncewire::rng::{TryCryptoRng, TryRng};
use oncewire::session::Limits;
use oncewire::{RustCrypto, Secret};

pub const NOW: u64 = 1_767_225_600_000;
pub const KEY: [u8; 32] = [0x42; 32];
pub const IV: [u8; 12] = [0x24; 12];
pub const SID: [u8; 8] = *b"fuzzsess";

/// A deterministic RNG (splitmix64): fuzzing needs reproducible runs.
pub struct DetRng(pub u64);
impl TryRng for DetRng {
    type Error = core::convert::Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        Ok(self.try_next_u64()? as u32)
    }
    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Ok(z ^ (z >> 31))
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        for c in dst.chunks_mut(8) {
            let v = self.try_next_u64()?.to_le_bytes();
            c.copy_from_slice(&v[..c.len()]);
        }
        Ok(())
    }
}
impl TryCryptoRng for DetRng {}

pub fn clock() -> ManualClock {
    ManualClock::new(NOW)
}

pub fn server_key() -> ServerKey {
    ServerKey::<RustCrypto>::from_bytes(&Secret::new([0x11; 32])).unwrap()
}

pub fn device() -> (DeviceId, SoftwareSigner) {
    (
        DeviceId::new(b"fuzz-device").unwrap(),
        SoftwareSigner::<RustCrypto>::from_bytes(&Secret::new([0x22; 32])).unwrap(),
    )
}

pub fn device_public() -> PublicKey {
    oncewire::device::DeviceSigner::public_key(&device().1).unwrap()
}

/// A real message 1 (fixed ephemeral).
pub fn msg1() -> Vec<u8> {
    let (e, e_pub) = RustCrypto::p256_ecdh_secret_from_bytes(&Secret::new([0x33; 32])).unwrap();
    let mut out = [0u8; MAX_HANDSHAKE_LEN];
    let (_, n) =
        ClientHandshake::<RustCrypto>::start_with(*server_key().public_key(), *b"fuzz-hs1", e, e_pub, NOW, &mut out)
            .unwrap();
    out[..n].to_vec()
}

pub fn limits() -> Limits {
    Limits::DEFAULT
}

/// The HPKE recipient (a device) and, for auth mode, the sender. Derived
/// once: deriving costs a scalar multiplication per call.
pub fn hpke_recipient() -> &'static oncewire::hpke::KeyPair {
    static K: std::sync::OnceLock<oncewire::hpke::KeyPair> = std::sync::OnceLock::new();
    K.get_or_init(|| oncewire::hpke::KeyPair::derive(&[0x33; 32]).unwrap())
}
pub fn hpke_sender() -> &'static oncewire::hpke::KeyPair {
    static K: std::sync::OnceLock<oncewire::hpke::KeyPair> = std::sync::OnceLock::new();
    K.get_or_init(|| oncewire::hpke::KeyPair::derive(&[0x44; 32]).unwrap())
}
