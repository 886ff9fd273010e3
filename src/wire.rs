//! Wire format v1 (`SPEC.md` §2).
//!
//! A sealed frame is `header ‖ ciphertext ‖ tag`. The 36-byte header has a
//! fixed layout and is the AEAD associated data, taken as the exact bytes
//! received:
//!
//! ```text
//!  0      1      2        3         4            12          24          32       36
//! +------+------+--------+---------+------------+-----------+-----------+--------+
//! | ver  | type | nonce  | reserved| key / sess | nonce     | timestamp | length |
//! | 0x01 |      | strat. | 0x00    | id (8)     | field (12)| ms BE (8) | BE (4) |
//! +------+------+--------+---------+------------+-----------+-----------+--------+
//! ```
//!
//! Two layers, as in smoltcp: [`Frame`] is a zero-copy view over a buffer
//! with field accessors, [`Header`] is the small parsed representation with
//! [`Header::parse`] and [`Header::emit`].
//!
//! # No-panic contract
//! Every function here takes arbitrary bytes and returns a typed error; none
//! indexes out of bounds or overflows, for any input.

use crate::error::{Error, Result};

/// Length of an AEAD nonce in bytes (96 bits), and of a header's nonce field.
pub const NONCE_LEN: usize = 12;
/// Length of an AEAD tag in bytes (128 bits).
pub const TAG_LEN: usize = 16;

/// The only protocol version this build speaks.
pub const VERSION: u8 = 0x01;
/// Length of the fixed header in bytes.
pub const HEADER_LEN: usize = 36;
/// Bytes a sealed frame adds to its payload: header plus tag.
pub const OVERHEAD: usize = HEADER_LEN + TAG_LEN;
/// The largest payload a v1 frame may carry (16 MiB). Larger payloads use the
/// chunked file API.
pub const MAX_PAYLOAD_LEN: usize = 1 << 24;
/// Length of the key or session id.
pub const KEY_ID_LEN: usize = 8;

/// Byte ranges of the header fields.
pub(crate) mod field {
    use core::ops::Range;
    /// Key or session id.
    pub(crate) const KEY_ID: Range<usize> = 4..12;
    /// Nonce field: `0⁴ ‖ seq` (counter) or 12 random bytes.
    pub(crate) const NONCE: Range<usize> = 12..24;
    /// Sender timestamp, Unix milliseconds, big-endian.
    pub(crate) const TIMESTAMP: Range<usize> = 24..32;
    /// Payload (ciphertext) length, big-endian.
    pub(crate) const LENGTH: Range<usize> = 32..36;
}

/// What a frame carries. Each type fixes its nonce strategy (`SPEC.md` §2.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[repr(u8)]
#[non_exhaustive]
pub enum FrameType {
    /// Session record: counter nonce, replay-checked by a [`crate::replay::CounterWindow`].
    Record = 0x01,
    /// One-shot sealed message: random nonce, replay-checked by a [`crate::replay::NonceRing`].
    Sealed = 0x02,
    /// Session response, bound to the request's sequence number through the AAD.
    Response = 0x03,
    /// Session key update: the sender moves to the next key generation.
    KeyUpdate = 0x04,
    /// Handshake message 1 (client to server), plaintext control frame.
    HandshakeInit = 0x10,
    /// Handshake message 2 (server to client), plaintext control frame.
    HandshakeResponse = 0x11,
    /// Handshake message 3 (client to server), sealed under the new session keys.
    HandshakeFinish = 0x12,
}

impl FrameType {
    /// Decodes the type byte.
    ///
    /// # Errors
    /// [`Error::UnknownFrameType`] for any byte the spec does not define.
    pub const fn from_u8(b: u8) -> Result<Self> {
        match b {
            0x01 => Ok(Self::Record),
            0x02 => Ok(Self::Sealed),
            0x03 => Ok(Self::Response),
            0x04 => Ok(Self::KeyUpdate),
            0x10 => Ok(Self::HandshakeInit),
            0x11 => Ok(Self::HandshakeResponse),
            0x12 => Ok(Self::HandshakeFinish),
            other => Err(Error::UnknownFrameType(other)),
        }
    }

    /// The nonce strategy this frame type requires.
    pub const fn nonce_strategy(self) -> NonceStrategy {
        match self {
            Self::Record | Self::Response | Self::KeyUpdate | Self::HandshakeFinish => NonceStrategy::Counter,
            Self::Sealed => NonceStrategy::Random,
            Self::HandshakeInit | Self::HandshakeResponse => NonceStrategy::None,
        }
    }

    /// Length of the tag this frame type carries: 16, or 0 for plaintext
    /// control frames.
    pub const fn tag_len(self) -> usize {
        match self.nonce_strategy() {
            NonceStrategy::None => 0,
            _ => TAG_LEN,
        }
    }
}

/// How the frame's AEAD nonce is formed (`SPEC.md` §3.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[repr(u8)]
pub enum NonceStrategy {
    /// No AEAD: a plaintext control frame (handshake messages 1 and 2), no
    /// tag; its bytes are bound by the handshake transcript instead.
    None = 0x00,
    /// Nonce = per-direction IV XOR the 64-bit sequence number.
    Counter = 0x01,
    /// Nonce = 96 random bits carried in the header.
    Random = 0x02,
}

/// The nonce field of a header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum NonceField {
    /// Plaintext control frame: twelve zero bytes.
    None,
    /// A 64-bit sequence number, encoded as four zero bytes then the number big-endian.
    Counter(u64),
    /// 96 random bits.
    Random([u8; NONCE_LEN]),
}

impl NonceField {
    /// The strategy this field belongs to.
    pub const fn strategy(&self) -> NonceStrategy {
        match self {
            Self::None => NonceStrategy::None,
            Self::Counter(_) => NonceStrategy::Counter,
            Self::Random(_) => NonceStrategy::Random,
        }
    }

    /// The 12 bytes as they appear in the header.
    pub fn to_bytes(&self) -> [u8; NONCE_LEN] {
        match self {
            Self::None => [0u8; NONCE_LEN],
            Self::Counter(seq) => {
                let mut out = [0u8; NONCE_LEN];
                let [_, _, _, _, rest @ ..] = &mut out;
                *rest = seq.to_be_bytes();
                out
            }
            Self::Random(n) => *n,
        }
    }
}

/// The parsed header (the "Repr").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Header {
    /// What the frame carries.
    pub frame_type: FrameType,
    /// Key id (one-shot frames) or session id (records).
    pub key_id: [u8; KEY_ID_LEN],
    /// Sequence number or random nonce.
    pub nonce: NonceField,
    /// Sender's clock, Unix milliseconds.
    pub timestamp_ms: u64,
    /// Ciphertext length in bytes (the tag is not counted).
    pub payload_len: u32,
}

impl Header {
    /// Parses a header from exactly [`HEADER_LEN`] bytes, strictly.
    ///
    /// # Errors
    /// [`Error::UnsupportedVersion`], [`Error::UnknownFrameType`],
    /// [`Error::Malformed`] (reserved byte, strategy not matching the type,
    /// counter padding not zero, a key update with a payload),
    /// [`Error::PayloadTooLarge`].
    #[inline]
    pub fn parse(bytes: &[u8; HEADER_LEN]) -> Result<Self> {
        let [ver, ty, strategy, reserved, ..] = *bytes;
        if ver != VERSION {
            return Err(Error::UnsupportedVersion(ver));
        }
        let frame_type = FrameType::from_u8(ty)?;
        if reserved != 0 {
            return Err(Error::Malformed);
        }
        if strategy != frame_type.nonce_strategy() as u8 {
            return Err(Error::Malformed);
        }
        let key_id: [u8; KEY_ID_LEN] = take(bytes, field::KEY_ID)?;
        let nonce_bytes: [u8; NONCE_LEN] = take(bytes, field::NONCE)?;
        let nonce = match frame_type.nonce_strategy() {
            NonceStrategy::Counter => {
                let [a, b, c, d, seq @ ..] = nonce_bytes;
                if a | b | c | d != 0 {
                    return Err(Error::Malformed);
                }
                NonceField::Counter(u64::from_be_bytes(seq))
            }
            NonceStrategy::Random => NonceField::Random(nonce_bytes),
            NonceStrategy::None => {
                if nonce_bytes != [0u8; NONCE_LEN] {
                    return Err(Error::Malformed);
                }
                NonceField::None
            }
        };
        let timestamp_ms = u64::from_be_bytes(take(bytes, field::TIMESTAMP)?);
        let payload_len = u32::from_be_bytes(take(bytes, field::LENGTH)?);
        if payload_len as usize > MAX_PAYLOAD_LEN {
            return Err(Error::PayloadTooLarge);
        }
        // A key update carries nothing (SPEC.md §9.3).
        if frame_type == FrameType::KeyUpdate && payload_len != 0 {
            return Err(Error::Malformed);
        }
        Ok(Self { frame_type, key_id, nonce, timestamp_ms, payload_len })
    }

    /// Writes every header byte.
    ///
    /// # Errors
    /// [`Error::Malformed`] if the nonce field does not fit the frame type
    /// or a key update has a payload, [`Error::PayloadTooLarge`] if
    /// `payload_len` exceeds [`MAX_PAYLOAD_LEN`].
    #[inline]
    pub fn emit(&self, out: &mut [u8; HEADER_LEN]) -> Result<()> {
        if self.nonce.strategy() != self.frame_type.nonce_strategy() {
            return Err(Error::Malformed);
        }
        if self.frame_type == FrameType::KeyUpdate && self.payload_len != 0 {
            return Err(Error::Malformed);
        }
        if self.payload_len as usize > MAX_PAYLOAD_LEN {
            return Err(Error::PayloadTooLarge);
        }
        let (head, rest) = out.split_at_mut(field::KEY_ID.start);
        head.copy_from_slice(&[VERSION, self.frame_type as u8, self.nonce.strategy() as u8, 0]);
        let (key_id, rest) = rest.split_at_mut(KEY_ID_LEN);
        key_id.copy_from_slice(&self.key_id);
        let (nonce, rest) = rest.split_at_mut(NONCE_LEN);
        nonce.copy_from_slice(&self.nonce.to_bytes());
        let (ts, len) = rest.split_at_mut(8);
        ts.copy_from_slice(&self.timestamp_ms.to_be_bytes());
        len.copy_from_slice(&self.payload_len.to_be_bytes());
        Ok(())
    }

    /// The total frame length this header announces: header, payload, and
    /// the tag if the frame type is sealed.
    pub const fn frame_len(&self) -> usize {
        (self.payload_len as usize).saturating_add(HEADER_LEN).saturating_add(self.frame_type.tag_len())
    }
}

fn take<const N: usize>(bytes: &[u8; HEADER_LEN], range: core::ops::Range<usize>) -> Result<[u8; N]> {
    bytes.get(range).and_then(|s| s.try_into().ok()).ok_or(Error::Truncated)
}

/// Buffer size for a frame carrying `payload_len` bytes: `payload_len + OVERHEAD`.
/// Saturates instead of overflowing; lengths above [`MAX_PAYLOAD_LEN`] are
/// rejected by every sealing function anyway.
pub const fn buffer_len(payload_len: usize) -> usize {
    payload_len.saturating_add(OVERHEAD)
}

/// Nonce for the counter strategy: IV XOR (0⁴ ‖ seq), as in TLS 1.3 §5.3
/// (`SPEC.md` §3.1).
#[inline]
pub(crate) fn counter_nonce(iv: &[u8; NONCE_LEN], seq: u64) -> [u8; NONCE_LEN] {
    let mut n = *iv;
    let [_, _, _, _, tail @ ..] = &mut n;
    for (t, s) in tail.iter_mut().zip(seq.to_be_bytes()) {
        *t ^= s;
    }
    n
}

/// Checks that `bytes` is exactly `want` bytes long.
///
/// # Errors
/// [`Error::Truncated`] if shorter, [`Error::TrailingBytes`] if longer.
#[inline]
pub(crate) const fn exact_len(bytes: &[u8], want: usize) -> Result<()> {
    if bytes.len() < want {
        Err(Error::Truncated)
    } else if bytes.len() > want {
        Err(Error::TrailingBytes)
    } else {
        Ok(())
    }
}

/// Decodes a postcard value and rejects any remainder (postcard's
/// `from_bytes` would accept trailing bytes).
///
/// # Errors
/// [`Error::Decode`], [`Error::TrailingBytes`].
pub(crate) fn decode_exact<'a, T: serde::Deserialize<'a>>(bytes: &'a [u8]) -> Result<T> {
    let (v, rest) = postcard::take_from_bytes::<T>(bytes).map_err(|_| Error::Decode)?;
    if !rest.is_empty() {
        return Err(Error::TrailingBytes);
    }
    Ok(v)
}

/// Copies `payload` into `out` at `offset`, where an in-place seal expects it.
///
/// # Errors
/// [`Error::PayloadTooLarge`] on overflow, [`Error::BufferTooSmall`].
pub(crate) fn stage_at(offset: usize, payload: &[u8], out: &mut [u8]) -> Result<()> {
    let end = offset.checked_add(payload.len()).ok_or(Error::PayloadTooLarge)?;
    out.get_mut(offset..end).ok_or(Error::BufferTooSmall)?.copy_from_slice(payload);
    Ok(())
}

/// Copies `payload` into `out` at the frame payload offset ([`HEADER_LEN`]).
///
/// # Errors
/// As [`stage_at`].
pub(crate) fn stage(payload: &[u8], out: &mut [u8]) -> Result<()> {
    stage_at(HEADER_LEN, payload, out)
}

/// A zero-copy view of a complete frame, checked on construction.
///
/// After [`Frame::new_checked`] succeeds, the buffer is exactly one frame:
/// the header parses, and `HEADER_LEN + payload_len + TAG_LEN` equals the
/// buffer length. No trailing bytes.
#[derive(Debug, Clone, Copy)]
pub struct Frame<T> {
    buf: T,
    header: Header,
}

impl<T: AsRef<[u8]>> Frame<T> {
    /// Checks the whole buffer and wraps it.
    ///
    /// # Errors
    /// Everything [`Header::parse`] returns, [`Error::Truncated`] if the
    /// buffer is shorter than the header announces, and
    /// [`Error::TrailingBytes`] if it is longer.
    #[inline]
    pub fn new_checked(buf: T) -> Result<Self> {
        let bytes = buf.as_ref();
        let header_bytes: &[u8; HEADER_LEN] =
            bytes.get(..HEADER_LEN).and_then(|h| h.try_into().ok()).ok_or(Error::Truncated)?;
        let header = Header::parse(header_bytes)?;
        exact_len(bytes, header.frame_len())?;
        Ok(Self { buf, header })
    }

    /// The parsed header.
    pub const fn header(&self) -> &Header {
        &self.header
    }

    /// The header exactly as received (the AEAD associated data).
    pub fn header_bytes(&self) -> &[u8] {
        self.buf.as_ref().get(..HEADER_LEN).unwrap_or_default()
    }

    /// The ciphertext.
    pub fn payload(&self) -> &[u8] {
        let end = HEADER_LEN.saturating_add(self.header.payload_len as usize);
        self.buf.as_ref().get(HEADER_LEN..end).unwrap_or_default()
    }

    /// The tag (all zero for plaintext control frames, which have none).
    pub fn tag(&self) -> [u8; TAG_LEN] {
        if self.header.frame_type.tag_len() == 0 {
            return [0u8; TAG_LEN];
        }
        let bytes = self.buf.as_ref();
        let start = bytes.len().saturating_sub(TAG_LEN);
        bytes.get(start..).and_then(|t| t.try_into().ok()).unwrap_or([0u8; TAG_LEN])
    }

    /// Gives the buffer back.
    pub fn into_inner(self) -> T {
        self.buf
    }
}

/// Writes fixed fields into a fixed-size state buffer (exported sessions
/// and handshakes), and checks it was filled exactly.
pub(crate) struct Writer<'a> {
    out: &'a mut [u8],
    at: usize,
}

impl<'a> Writer<'a> {
    pub(crate) fn new(out: &'a mut [u8]) -> Self {
        Self { out, at: 0 }
    }

    pub(crate) fn put(&mut self, bytes: &[u8]) -> Result<()> {
        let end = self.at.checked_add(bytes.len()).ok_or(Error::Encode)?;
        self.out.get_mut(self.at..end).ok_or(Error::Encode)?.copy_from_slice(bytes);
        self.at = end;
        Ok(())
    }

    pub(crate) fn done(self) -> Result<()> {
        if self.at == self.out.len() { Ok(()) } else { Err(Error::Encode) }
    }
}

/// Reads fixed fields from a fixed-size state buffer.
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Self { bytes }
    }

    pub(crate) fn take<const N: usize>(&mut self) -> Result<[u8; N]> {
        let (head, rest) = self.bytes.split_at_checked(N).ok_or(Error::Decode)?;
        self.bytes = rest;
        head.try_into().map_err(|_| Error::Decode)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Header {
        Header {
            frame_type: FrameType::Record,
            key_id: *b"SESSION1",
            nonce: NonceField::Counter(0x0102_0304_0506_0708),
            timestamp_ms: 1_700_000_000_000,
            payload_len: 5,
        }
    }

    #[test]
    fn emit_writes_every_byte_and_round_trips() {
        let mut out = [0xa5u8; HEADER_LEN];
        sample().emit(&mut out).unwrap();
        assert_eq!(
            out,
            [
                0x01, 0x01, 0x01, 0x00, b'S', b'E', b'S', b'S', b'I', b'O', b'N', b'1', 0, 0, 0, 0, 1, 2, 3, 4, 5, 6,
                7, 8, 0x00, 0x00, 0x01, 0x8b, 0xcf, 0xe5, 0x68, 0x00, 0, 0, 0, 5
            ]
        );
        assert_eq!(Header::parse(&out).unwrap(), sample());
    }

    #[test]
    fn strict_parse() {
        let mut good = [0u8; HEADER_LEN];
        sample().emit(&mut good).unwrap();
        let mut b = good;
        b[0] = 2;
        assert_eq!(Header::parse(&b), Err(Error::UnsupportedVersion(2)));
        let mut b = good;
        b[1] = 0x7f;
        assert_eq!(Header::parse(&b), Err(Error::UnknownFrameType(0x7f)));
        let mut b = good;
        b[2] = 2;
        assert_eq!(Header::parse(&b), Err(Error::Malformed));
        let mut b = good;
        b[3] = 1;
        assert_eq!(Header::parse(&b), Err(Error::Malformed));
        let mut b = good;
        b[12] = 1;
        assert_eq!(Header::parse(&b), Err(Error::Malformed));
        let mut b = good;
        b[32] = 0x7f;
        assert_eq!(Header::parse(&b), Err(Error::PayloadTooLarge));
    }

    #[test]
    fn counter_nonce_xors_the_tail() {
        let iv = [0xffu8; 12];
        let n = counter_nonce(&iv, 0x0102_0304_0506_0708);
        assert_eq!(n, [0xff, 0xff, 0xff, 0xff, 0xfe, 0xfd, 0xfc, 0xfb, 0xfa, 0xf9, 0xf8, 0xf7]);
    }

    #[test]
    fn frame_length_must_add_up() {
        let mut buf = [0u8; HEADER_LEN + 5 + TAG_LEN + 1];
        let h: &mut [u8; HEADER_LEN] = (&mut buf[..HEADER_LEN]).try_into().unwrap();
        sample().emit(h).unwrap();
        assert!(Frame::new_checked(&buf[..HEADER_LEN + 5 + TAG_LEN]).is_ok());
        assert_eq!(Frame::new_checked(&buf[..]).err(), Some(Error::TrailingBytes));
        assert_eq!(Frame::new_checked(&buf[..HEADER_LEN + 5 + TAG_LEN - 1]).err(), Some(Error::Truncated));
        assert_eq!(Frame::new_checked(&buf[..HEADER_LEN - 1]).err(), Some(Error::Truncated));
        assert_eq!(Frame::new_checked(&buf[..0]).err(), Some(Error::Truncated));
    }
}
