//! The RNG seam: `rand_core` 0.10 [`TryCryptoRng`].
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
