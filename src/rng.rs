//! The RNG seam (DESIGN C11): `rand_core` 0.10 [`TryCryptoRng`].
//!
//! Every function that needs randomness takes `&mut R` where
//! `R: TryCryptoRng`. A failing generator (a hardware TRNG that reports a
//! health-test failure, say) surfaces as [`crate::Error::Rng`], never as a
//! panic, and nothing is consumed.

pub use rand_core::{TryCryptoRng, TryRng};

/// The operating system's RNG (feature `std`), via `getrandom`.
#[cfg(feature = "std")]
#[cfg_attr(docsrs, doc(cfg(feature = "std")))]
pub use getrandom::SysRng as OsRng;

/// An RNG that always fails: for testing the `Error::Rng` paths.
#[derive(Debug, Default, Clone, Copy)]
pub struct FailingRng;

/// The error [`FailingRng`] returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RngFailure;

impl core::fmt::Display for RngFailure {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("rng failure")
    }
}

impl core::error::Error for RngFailure {}

impl TryRng for FailingRng {
    type Error = RngFailure;
    fn try_next_u32(&mut self) -> Result<u32, RngFailure> {
        Err(RngFailure)
    }
    fn try_next_u64(&mut self) -> Result<u64, RngFailure> {
        Err(RngFailure)
    }
    fn try_fill_bytes(&mut self, _dst: &mut [u8]) -> Result<(), RngFailure> {
        Err(RngFailure)
    }
}

impl TryCryptoRng for FailingRng {}
