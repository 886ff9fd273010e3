//! Device ids (`SPEC.md` §8.1).

use crate::error::{Error, Result};

/// Longest device id, in bytes.
pub const MAX_DEVICE_ID_LEN: usize = 32;

/// A device identifier: 1 to 32 opaque bytes chosen at enrollment.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeviceId {
    bytes: [u8; MAX_DEVICE_ID_LEN],
    len: u8,
}

impl DeviceId {
    /// Wraps 1 to 32 bytes.
    ///
    /// # Errors
    /// [`Error::Malformed`] if `id` is empty or longer than 32 bytes.
    pub fn new(id: &[u8]) -> Result<Self> {
        if id.is_empty() || id.len() > MAX_DEVICE_ID_LEN {
            return Err(Error::Malformed);
        }
        let mut bytes = [0u8; MAX_DEVICE_ID_LEN];
        bytes.get_mut(..id.len()).ok_or(Error::Malformed)?.copy_from_slice(id);
        Ok(Self { bytes, len: u8::try_from(id.len()).map_err(|_| Error::Malformed)? })
    }

    /// The id bytes.
    pub fn as_bytes(&self) -> &[u8] {
        self.bytes.get(..usize::from(self.len)).unwrap_or_default()
    }
}

impl core::fmt::Debug for DeviceId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("DeviceId(")?;
        for b in self.as_bytes() {
            write!(f, "{b:02x}")?;
        }
        f.write_str(")")
    }
}

#[cfg(feature = "defmt")]
impl defmt::Format for DeviceId {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(f, "DeviceId({=[u8]:x})", self.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_id_bounds() {
        assert!(DeviceId::new(&[]).is_err());
        assert!(DeviceId::new(&[1; 33]).is_err());
        assert_eq!(DeviceId::new(b"abc").unwrap().as_bytes(), b"abc");
    }
}
