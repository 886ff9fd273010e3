//! Board support for the oncewire companion firmware on QEMU `mps2-an386`:
//! the CMSDK UART as `embedded-io`, the SBCon I2C bus as `embedded-hal`
//! ([`i2c`]), reboot-safe counters in an I2C EEPROM ([`counters`]), a SysTick
//! millisecond clock, an HMAC-DRBG behind the `TryCryptoRng` seam, stack
//! painting, and the demo envelope.
//!
//! The board pieces build for the Cortex-M target only; [`counters`] and
//! [`i2c`] also build on the host, where the counter store's power-cut
//! tests run: `cargo test --lib --target x86_64-unknown-linux-gnu`.
#![cfg_attr(not(test), no_std)]

pub mod console;
pub mod counters;
pub mod i2c;

#[cfg(target_arch = "arm")]
mod board;
#[cfg(target_arch = "arm")]
pub mod cm4;
#[cfg(target_arch = "arm")]
pub use board::*;

use oncewire::RustCrypto;
use oncewire::provider::CryptoProvider;

// ---------------------------------------------------------------------------
// RNG: HMAC-DRBG (NIST SP 800-90A, SHA-256) seeded from flash.
// EMULATION ONLY: QEMU has no TRNG. A real device seeds from its TRNG and
// reports TRNG health-test failures as errors through this same seam.
// ---------------------------------------------------------------------------

/// HMAC-DRBG over the provider's HMAC-SHA256.
pub struct HmacDrbg {
    k: [u8; 32],
    v: [u8; 32],
}

impl HmacDrbg {
    /// Instantiates from a seed (entropy ‖ nonce ‖ personalisation).
    pub fn new(seed: &[u8]) -> Self {
        let mut d = HmacDrbg { k: [0; 32], v: [1; 32] };
        d.update(seed);
        d
    }

    /// Mixes `data` into the state (SP 800-90A reseed without new entropy):
    /// the firmware mixes in its boot number, persisted before first use,
    /// so that no two boots draw the same stream.
    pub fn reseed(&mut self, data: &[u8]) {
        self.update(data);
    }

    fn update(&mut self, data: &[u8]) {
        self.k = RustCrypto::hmac_sha256(&self.k, &[&self.v, &[0x00], data]);
        self.v = RustCrypto::hmac_sha256(&self.k, &[&self.v]);
        if !data.is_empty() {
            self.k = RustCrypto::hmac_sha256(&self.k, &[&self.v, &[0x01], data]);
            self.v = RustCrypto::hmac_sha256(&self.k, &[&self.v]);
        }
    }
}

impl rand_core::TryRng for HmacDrbg {
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
        for chunk in dst.chunks_mut(32) {
            self.v = RustCrypto::hmac_sha256(&self.k, &[&self.v]);
            chunk.copy_from_slice(&self.v[..chunk.len()]);
        }
        self.update(&[]);
        Ok(())
    }
}

impl rand_core::TryCryptoRng for HmacDrbg {}

// ---------------------------------------------------------------------------
// Demo envelope (SPEC.md Appendix A): kind ‖ u16 BE length ‖ body.
// ---------------------------------------------------------------------------

/// Envelope kinds.
pub mod kind {
    /// Start enrollment.
    pub const ENROLL_BEGIN: u8 = 1;
    /// Enrollment challenge.
    pub const ENROLL_CHALLENGE: u8 = 2;
    /// Enrollment answer.
    pub const ENROLL_ANSWER: u8 = 3;
    /// Success.
    pub const OK: u8 = 4;
    /// An oncewire frame.
    pub const FRAME: u8 = 5;
    /// The server's static key.
    pub const SERVER_KEY: u8 = 7;
    /// A record under the device's long-lived key (the server needs
    /// `--long-lived-key`).
    pub const LONG_LIVED: u8 = 11;
    /// Rejected, with the error name.
    pub const REJECTED: u8 = 15;
}

/// Sends one envelope.
pub fn send<W: embedded_io::Write>(w: &mut W, kind: u8, body: &[u8]) -> Result<(), W::Error> {
    let len = body.len() as u16;
    w.write_all(&[kind])?;
    w.write_all(&len.to_be_bytes())?;
    w.write_all(body)
}

/// Receives one envelope into `buf`; returns its kind and length.
pub fn recv<R: embedded_io::Read>(r: &mut R, buf: &mut [u8]) -> Result<(u8, usize), &'static str> {
    let mut head = [0u8; 3];
    r.read_exact(&mut head).map_err(|_| "uart read")?;
    let len = usize::from(u16::from_be_bytes([head[1], head[2]]));
    let body = buf.get_mut(..len).ok_or("envelope too large")?;
    r.read_exact(body).map_err(|_| "uart read")?;
    Ok((head[0], len))
}
