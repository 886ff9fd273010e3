//! Fixed keys and real sealed seeds shared by the targets. Deterministic, so
//! a crash reproduces; the corpus holds real frames made with these keys.
#![allow(dead_code)]

use oncewire::clock::ManualClock;
use oncewire::device::{DeviceId, SoftwareSigner};
use oncewire::handshake::{ClientAwaitResponse, ClientHandshake, MAX_HANDSHAKE_LEN, ServerAwaitFinish, ServerKey};
use oncewire::provider::PublicKey;
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

/// An RNG that hands out a fixed script of bytes, in order, then zeros.
/// With it the normal handshake entry points (`start`, `accept`) draw
/// exactly the handshake id and ephemeral scalars the corpus was made with:
/// `start` draws the 8-byte handshake id, then a 32-byte scalar (accepted
/// at the first draw, being below the group order); `accept` draws one
/// scalar. So the fuzz targets need no fixed-ephemeral entry points (which
/// exist only under `--cfg oncewire_test_vectors`) and still make
/// byte-identical messages.
pub struct ScriptRng<'a>(pub &'a [u8]);
impl TryRng for ScriptRng<'_> {
    type Error = core::convert::Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        let mut b = [0u8; 4];
        self.try_fill_bytes(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }
    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        let mut b = [0u8; 8];
        self.try_fill_bytes(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        let n = dst.len().min(self.0.len());
        let (head, rest) = self.0.split_at(n);
        let (d_head, d_rest) = dst.split_at_mut(n);
        d_head.copy_from_slice(head);
        d_rest.fill(0);
        self.0 = rest;
        Ok(())
    }
}
impl TryCryptoRng for ScriptRng<'_> {}

/// The client's handshake id.
pub const HANDSHAKE_ID: [u8; 8] = *b"fuzz-hs1";
/// The client's ephemeral scalar.
pub const CLIENT_EPHEMERAL: [u8; 32] = [0x33; 32];
/// The server's ephemeral scalar.
pub const SERVER_EPHEMERAL: [u8; 32] = [0x44; 32];

pub fn clock() -> ManualClock {
    ManualClock::new(NOW)
}

/// The server's static key. Derived once: a scalar multiplication per call
/// otherwise.
pub fn server_key() -> &'static ServerKey {
    static K: std::sync::OnceLock<ServerKey> = std::sync::OnceLock::new();
    K.get_or_init(|| ServerKey::<RustCrypto>::from_bytes(&Secret::new([0x11; 32])).unwrap())
}

pub fn device() -> (DeviceId, SoftwareSigner) {
    (
        DeviceId::new(b"fuzz-device").unwrap(),
        SoftwareSigner::<RustCrypto>::from_bytes(&Secret::new([0x22; 32])).unwrap(),
    )
}

pub fn device_public() -> PublicKey {
    // Derived once: a scalar multiplication per call otherwise.
    static K: std::sync::OnceLock<PublicKey> = std::sync::OnceLock::new();
    *K.get_or_init(|| oncewire::device::DeviceSigner::public_key(&device().1).unwrap())
}

/// The client's side of the handshake, started at `NOW` with the fixed
/// handshake id and ephemeral key: message 1 is in `out[..n]`.
pub fn client_start(out: &mut [u8]) -> (ClientAwaitResponse, usize) {
    let mut script = [0u8; 8 + 32];
    script[..8].copy_from_slice(&HANDSHAKE_ID);
    script[8..].copy_from_slice(&CLIENT_EPHEMERAL);
    ClientHandshake::<RustCrypto>::start(*server_key().public_key(), &mut ScriptRng(&script), &clock(), out).unwrap()
}

/// The server's answer to `msg1` at `NOW` with the fixed ephemeral key:
/// message 2 is in `out[..n]`.
pub fn server_accept(server: &ServerKey, msg1: &[u8], out: &mut [u8]) -> oncewire::Result<(ServerAwaitFinish, usize)> {
    server.accept(&mut ScriptRng(&SERVER_EPHEMERAL), &clock(), msg1, limits(), out)
}

/// A real message 1 (fixed ephemeral). Made once: it costs two scalar
/// multiplications.
pub fn msg1() -> Vec<u8> {
    static M1: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    M1.get_or_init(|| {
        let mut out = [0u8; MAX_HANDSHAKE_LEN];
        let (_, n) = client_start(&mut out);
        out[..n].to_vec()
    })
    .clone()
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
