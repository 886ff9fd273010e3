//! Low-S normalisation of raw P-256 signatures (`SPEC.md` §8.2): pure
//! byte arithmetic every provider shares, so that each signs in the one
//! form verifiers accept.

use crate::error::{Error, Result};
use crate::provider::P256_SIGNATURE_LEN;

/// The P-256 group order n, big-endian.
pub(crate) const ORDER: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xbc, 0xe6, 0xfa,
    0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
];
/// floor(n / 2), big-endian.
const HALF_ORDER: [u8; 32] = [
    0x7f, 0xff, 0xff, 0xff, 0x80, 0x00, 0x00, 0x00, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xde, 0x73, 0x7d,
    0x56, 0xd3, 0x8b, 0xcf, 0x42, 0x79, 0xdc, 0xe5, 0x61, 0x7e, 0x31, 0x92, 0xa8,
];

/// Big-endian comparison of two 32-byte numbers.
fn cmp32(a: &[u8; 32], b: &[u8; 32]) -> core::cmp::Ordering {
    a.iter().cmp(b.iter())
}

/// `a - b` for big-endian 32-byte numbers with `a >= b`.
fn sub32(a: &[u8; 32], b: &[u8; 32]) -> [u8; 32] {
    let mut out = [0u8; 32];
    let mut borrow = 0u16;
    for ((o, x), y) in out.iter_mut().zip(a.iter()).zip(b.iter()).rev() {
        let d = u16::from(*x).wrapping_sub(u16::from(*y)).wrapping_sub(borrow);
        *o = d.to_le_bytes()[0];
        borrow = u16::from(d > 0xff);
    }
    out
}

/// Normalises `s` to low-S (`s ≤ n/2`) and checks `0 < r, s < n`.
///
/// # Errors
/// [`Error::Authentication`] if `r` or `s` is zero or not below the order.
pub(crate) fn normalize_s(sig: [u8; P256_SIGNATURE_LEN]) -> Result<[u8; P256_SIGNATURE_LEN]> {
    let (r, s) = sig.split_at(32);
    let r: [u8; 32] = r.try_into().map_err(|_| Error::Authentication)?;
    let s: [u8; 32] = s.try_into().map_err(|_| Error::Authentication)?;
    for v in [&r, &s] {
        if *v == [0u8; 32] || cmp32(v, &ORDER) != core::cmp::Ordering::Less {
            return Err(Error::Authentication);
        }
    }
    let s = if cmp32(&s, &HALF_ORDER) == core::cmp::Ordering::Greater { sub32(&ORDER, &s) } else { s };
    let mut out = [0u8; P256_SIGNATURE_LEN];
    let (ro, so) = out.split_at_mut(32);
    ro.copy_from_slice(&r);
    so.copy_from_slice(&s);
    Ok(out)
}
