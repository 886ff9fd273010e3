//! Signature encodings (`SPEC.md` §8.2): what hardware returns, and the one
//! form the wire accepts.

use crate::error::{Error, Result};
use crate::provider::P256_SIGNATURE_LEN;
pub(crate) use crate::provider::normalize_s;

/// Longest DER ECDSA P-256 signature: SEQUENCE of two 33-byte INTEGERs.
pub const MAX_DER_SIGNATURE_LEN: usize = 72;

/// A signature as secure hardware returns it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceSignature {
    /// Raw `r ‖ s` (IEEE P1363), as the Secure Enclave's raw API and most
    /// secure elements return it.
    Raw([u8; P256_SIGNATURE_LEN]),
    /// ASN.1 DER `ECDSA-Sig-Value`, as Android Keystore and `SecKeyCreateSignature` return it.
    Der {
        /// Encoded bytes; only the first `len` are used.
        bytes: [u8; MAX_DER_SIGNATURE_LEN],
        /// Encoded length.
        len: u8,
    },
}

impl DeviceSignature {
    /// Wraps a signature of either encoding: 64 bytes are raw, anything
    /// else must be DER.
    ///
    /// # Errors
    /// [`Error::Signer`] if it is neither 64 bytes nor at most 72.
    ///
    /// A DER signature is 64 bytes long only if `r` and `s` together take 58
    /// bytes (probability about 2^-24); such a signature is read as raw and
    /// fails to verify. Senders therefore send raw signatures.
    pub fn from_bytes(sig: &[u8]) -> Result<Self> {
        if sig.len() == P256_SIGNATURE_LEN { Self::from_raw(sig) } else { Self::from_der(sig) }
    }

    /// Wraps a raw `r ‖ s` signature.
    ///
    /// # Errors
    /// [`Error::Signer`] unless it is exactly 64 bytes.
    pub fn from_raw(sig: &[u8]) -> Result<Self> {
        Ok(Self::Raw(sig.try_into().map_err(|_| Error::Signer)?))
    }

    /// Wraps a DER signature (checked strictly when used).
    ///
    /// # Errors
    /// [`Error::Signer`] if it is longer than 72 bytes.
    pub fn from_der(sig: &[u8]) -> Result<Self> {
        let mut bytes = [0u8; MAX_DER_SIGNATURE_LEN];
        bytes.get_mut(..sig.len()).ok_or(Error::Signer)?.copy_from_slice(sig);
        Ok(Self::Der { bytes, len: u8::try_from(sig.len()).map_err(|_| Error::Signer)? })
    }

    /// Converts to raw `r ‖ s` with `s` normalised to the lower half of the
    /// group order. DER must be strict DER; anything else fails.
    ///
    /// # Errors
    /// [`Error::Signer`] for malformed encodings, zero or out-of-range
    /// values: the hardware returned something that is not a signature.
    pub fn to_raw_low_s(&self) -> Result<[u8; P256_SIGNATURE_LEN]> {
        let raw = match self {
            Self::Raw(r) => *r,
            Self::Der { bytes, len } => {
                parse_der(bytes.get(..usize::from(*len)).ok_or(Error::Signer)?).map_err(|_| Error::Signer)?
            }
        };
        normalize_s(raw).map_err(|_| Error::Signer)
    }
}

/// Reads one strict-DER INTEGER that fits 32 bytes unsigned; returns it and the rest.
fn der_integer(input: &[u8]) -> Result<([u8; 32], &[u8])> {
    let (&tag, rest) = input.split_first().ok_or(Error::Authentication)?;
    let (&len, rest) = rest.split_first().ok_or(Error::Authentication)?;
    // Short-form length only: an INTEGER here is at most 33 bytes.
    if tag != 0x02 || len == 0 || len > 33 {
        return Err(Error::Authentication);
    }
    let (body, rest) = rest.split_at_checked(usize::from(len)).ok_or(Error::Authentication)?;
    let (&first, tail) = body.split_first().ok_or(Error::Authentication)?;
    if first & 0x80 != 0 {
        return Err(Error::Authentication); // negative
    }
    let digits = if first == 0 {
        match tail.first() {
            // A leading zero is only allowed before a byte with the top bit set.
            Some(b) if b & 0x80 != 0 => tail,
            _ if tail.is_empty() => body,
            _ => return Err(Error::Authentication),
        }
    } else {
        body
    };
    if digits.len() > 32 {
        return Err(Error::Authentication);
    }
    let mut out = [0u8; 32];
    let start = 32usize.saturating_sub(digits.len());
    out.get_mut(start..).ok_or(Error::Authentication)?.copy_from_slice(digits);
    Ok((out, rest))
}

/// Parses a strict-DER `ECDSA-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER }`.
fn parse_der(der: &[u8]) -> Result<[u8; P256_SIGNATURE_LEN]> {
    let (&tag, rest) = der.split_first().ok_or(Error::Authentication)?;
    let (&len, rest) = rest.split_first().ok_or(Error::Authentication)?;
    // At most 70 content bytes, so the length is always short-form.
    if tag != 0x30 || len > 0x7f || usize::from(len) != rest.len() {
        return Err(Error::Authentication);
    }
    let (r, rest) = der_integer(rest)?;
    let (s, rest) = der_integer(rest)?;
    if !rest.is_empty() {
        return Err(Error::Authentication);
    }
    let mut out = [0u8; P256_SIGNATURE_LEN];
    let (ro, so) = out.split_at_mut(32);
    ro.copy_from_slice(&r);
    so.copy_from_slice(&s);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::low_s::ORDER;

    #[test]
    fn der_and_raw_agree_and_high_s_normalises() {
        let mut raw = [0u8; 64];
        raw[31] = 5;
        raw[32..].copy_from_slice(&ORDER);
        raw[63] -= 1; // s = n - 1: high
        let low = normalize_s(raw).unwrap();
        assert_eq!(&low[..32], &raw[..32]);
        let mut one = [0u8; 32];
        one[31] = 1;
        assert_eq!(&low[32..], &one);
        // DER of r = 5, s = 0x80 (needs a leading zero).
        let der = [0x30, 0x07, 0x02, 0x01, 0x05, 0x02, 0x02, 0x00, 0x80];
        let parsed = DeviceSignature::from_bytes(&der).unwrap().to_raw_low_s().unwrap();
        assert_eq!(parsed[31], 5);
        assert_eq!(parsed[63], 0x80);
        // Non-minimal integer, negative integer, trailing garbage, long form.
        for bad in [
            &[0x30, 0x07, 0x02, 0x02, 0x00, 0x05, 0x02, 0x01, 0x05][..],
            &[0x30, 0x06, 0x02, 0x01, 0x85, 0x02, 0x01, 0x05],
            &[0x30, 0x07, 0x02, 0x01, 0x05, 0x02, 0x01, 0x05, 0x00],
            &[0x30, 0x81, 0x06, 0x02, 0x01, 0x05, 0x02, 0x01, 0x05],
            &[0x30, 0x06, 0x02, 0x01, 0x00, 0x02, 0x01, 0x05],
        ] {
            assert!(DeviceSignature::from_bytes(bad).and_then(|s| s.to_raw_low_s()).is_err(), "{bad:02x?}");
        }
    }
}
