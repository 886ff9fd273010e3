//! Secret byte newtypes: zeroized on drop, redacted in `Debug`, compared in
//! constant time.

use core::fmt;
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// A fixed-size secret: key material, a PRK, a shared secret or an IV.
///
/// It is zeroized on drop, its `Debug` output never shows the bytes, and
/// equality is constant time. It deliberately implements neither `Copy` nor
/// `Clone`: a secret is moved, not duplicated.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct Secret<const N: usize>([u8; N]);

impl<const N: usize> Secret<N> {
    /// Wraps raw bytes. The caller should zeroize its own copy.
    pub const fn new(bytes: [u8; N]) -> Self {
        Self(bytes)
    }

    /// Borrows the secret bytes.
    ///
    /// # Security
    /// Do not copy the result into memory that is not zeroized.
    pub const fn expose(&self) -> &[u8; N] {
        &self.0
    }

    /// A mutable view, for filling in place (from an RNG or a KDF).
    pub fn expose_mut(&mut self) -> &mut [u8; N] {
        &mut self.0
    }

    /// All-zero secret, to be filled through [`Secret::expose_mut`].
    pub const fn zero() -> Self {
        Self([0u8; N])
    }
}

impl<const N: usize> fmt::Debug for Secret<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Secret").finish_non_exhaustive()
    }
}

impl<const N: usize> ConstantTimeEq for Secret<N> {
    fn ct_eq(&self, other: &Self) -> subtle::Choice {
        self.0.ct_eq(&other.0)
    }
}

impl<const N: usize> PartialEq for Secret<N> {
    fn eq(&self, other: &Self) -> bool {
        self.ct_eq(other).into()
    }
}

impl<const N: usize> Eq for Secret<N> {}

#[cfg(feature = "defmt")]
impl<const N: usize> defmt::Format for Secret<N> {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(f, "Secret {{ .. }}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted() {
        extern crate std;
        let s = Secret::new([0x42u8; 4]);
        let text = std::format!("{s:?}");
        assert_eq!(text, "Secret { .. }");
        assert!(!text.contains("42") && !text.contains("66"));
    }

    #[test]
    fn equality_is_by_value() {
        assert_eq!(Secret::new([1u8, 2]), Secret::new([1u8, 2]));
        assert_ne!(Secret::new([1u8, 2]), Secret::new([1u8, 3]));
    }
}
