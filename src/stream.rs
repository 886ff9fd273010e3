//! Chunked sealing of large payloads (files to a device) on top of HPKE,
//! STREAM-style (Hoang, Reyhanitabar, Rogaway, Vizár 2015), with no
//! allocation.
//!
//! A stream is a header, then chunks:
//!
//! ```text
//! header  = "OWS1" ‖ aead_id (u16 BE) ‖ max_chunk (u32 BE) ‖ enc (65)      75 bytes
//! chunk   = flags_len (u32 BE) ‖ ciphertext (len) ‖ tag (16)
//!           flags_len = last << 31 | len,  len <= max_chunk
//! ```
//!
//! The HPKE context is set up with `info = "oncewire/1 stream" ‖ header[..10]
//! ‖ app_info`, so the header's fields are bound to every key. Chunk `i` is
//! sealed with the context's `i`-th nonce (base_nonce XOR i) and AAD
//! `flags_len`. So:
//!
//! - reordering or dropping a middle chunk changes which nonce opens it:
//!   [`Error::Authentication`];
//! - dropping the tail is caught because no chunk carried the last flag:
//!   [`StreamOpener::finish`] returns [`Error::Truncated`];
//! - setting the last flag on an earlier chunk changes its AAD:
//!   [`Error::Authentication`];
//! - anything after the last chunk is [`Error::TrailingBytes`];
//! - a chunk from another stream was sealed under other keys (another
//!   `enc`): [`Error::Authentication`].
//!
//! A failed chunk changes nothing: the caller may stop, or (if it can get
//! the genuine chunk again) retry.

use crate::error::{Error, Result};
use crate::hpke::{Aes256Gcm, ENC_LEN, HpkeAead, KeyPair, RecipientContext, SenderContext, TAG_LEN};
use crate::provider::{CryptoProvider, PublicKey};
use rand_core::TryCryptoRng;

/// Stream header length.
pub const STREAM_HEADER_LEN: usize = 10 + ENC_LEN;
/// Chunk header length (`flags_len`).
pub const CHUNK_HEADER_LEN: usize = 4;
/// Bytes each chunk adds to its plaintext.
pub const CHUNK_OVERHEAD: usize = CHUNK_HEADER_LEN + TAG_LEN;
/// Largest chunk plaintext a stream may declare (16 MiB).
pub const MAX_CHUNK: usize = 1 << 24;
/// Longest application `info`.
pub const MAX_APP_INFO: usize = 64;

const MAGIC: [u8; 4] = *b"OWS1";
use crate::keyschedule::labels::STREAM_INFO as LABEL;
const LAST: u32 = 1 << 31;
/// Longest HPKE `info`: `LABEL ‖ header[..10] ‖ app_info`.
const MAX_INFO: usize = LABEL.len() + 10 + MAX_APP_INFO;

/// Buffer length for a chunk of `len` plaintext bytes.
pub const fn chunk_buffer_len(len: usize) -> usize {
    len.saturating_add(CHUNK_OVERHEAD)
}

/// `LABEL ‖ header[..10] ‖ app_info` on the stack.
fn stream_info(fixed: &[u8; 10], app_info: &[u8], out: &mut [u8; MAX_INFO]) -> Result<usize> {
    if app_info.len() > MAX_APP_INFO {
        return Err(Error::PayloadTooLarge);
    }
    let parts: [&[u8]; 3] = [LABEL, fixed, app_info];
    let mut at = 0usize;
    for p in parts {
        let end = at.checked_add(p.len()).ok_or(Error::BufferTooSmall)?;
        out.get_mut(at..end).ok_or(Error::BufferTooSmall)?.copy_from_slice(p);
        at = end;
    }
    Ok(at)
}

fn fixed_header<A: HpkeAead>(max_chunk: u32) -> [u8; 10] {
    let [a0, a1] = A::ID.to_be_bytes();
    let [m0, m1, m2, m3] = max_chunk.to_be_bytes();
    let [g0, g1, g2, g3] = MAGIC;
    [g0, g1, g2, g3, a0, a1, m0, m1, m2, m3]
}

/// Seals a stream chunk by chunk.
pub struct StreamSealer<A: HpkeAead = Aes256Gcm, P: CryptoProvider = crate::provider::DefaultProvider> {
    ctx: SenderContext<A, P>,
    max_chunk: u32,
    finished: bool,
}

impl<A: HpkeAead, P: CryptoProvider> core::fmt::Debug for StreamSealer<A, P> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("StreamSealer")
            .field("chunks", &self.ctx.seq())
            .field("max_chunk", &self.max_chunk)
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}

impl<A: HpkeAead, P: CryptoProvider> StreamSealer<A, P> {
    /// Starts a stream to `recipient` (base mode, or auth mode with the
    /// sender's static key) and writes the stream header.
    ///
    /// # Errors
    /// [`Error::PayloadTooLarge`] if `max_chunk` is 0 or above [`MAX_CHUNK`],
    /// or `app_info` is longer than [`MAX_APP_INFO`]; [`Error::Rng`];
    /// [`Error::InvalidKey`].
    pub fn start<R: TryCryptoRng + ?Sized>(
        rng: &mut R,
        recipient: &PublicKey,
        sender: Option<&KeyPair<P>>,
        app_info: &[u8],
        max_chunk: usize,
        header: &mut [u8; STREAM_HEADER_LEN],
    ) -> Result<Self> {
        if max_chunk == 0 || max_chunk > MAX_CHUNK {
            return Err(Error::PayloadTooLarge);
        }
        let max_chunk = u32::try_from(max_chunk).map_err(|_| Error::PayloadTooLarge)?;
        let fixed = fixed_header::<A>(max_chunk);
        let mut info = [0u8; MAX_INFO];
        let info_len = stream_info(&fixed, app_info, &mut info)?;
        let info = info.get(..info_len).ok_or(Error::BufferTooSmall)?;
        let (enc, ctx) = match sender {
            None => SenderContext::<A, P>::base(rng, recipient, info)?,
            Some(s) => SenderContext::<A, P>::auth(rng, recipient, info, s)?,
        };
        let (f, e) = header.split_at_mut(10);
        f.copy_from_slice(&fixed);
        e.copy_from_slice(enc.as_bytes());
        Ok(Self { ctx, max_chunk, finished: false })
    }

    /// Seals one chunk in place. `buf` is laid out `flags_len ‖ plaintext ‖
    /// tag`: put `len` plaintext bytes at `buf[CHUNK_HEADER_LEN..]`. Mark
    /// the final chunk with `last` (it may be empty). Returns the chunk length.
    ///
    /// # Errors
    /// [`Error::PayloadTooLarge`] above the stream's `max_chunk`,
    /// [`Error::BufferTooSmall`], [`Error::TrailingBytes`] after the last
    /// chunk, [`Error::KeyExhausted`].
    pub fn seal_chunk(&mut self, buf: &mut [u8], len: usize, last: bool) -> Result<usize> {
        if self.finished {
            return Err(Error::TrailingBytes);
        }
        let len32 = u32::try_from(len).map_err(|_| Error::PayloadTooLarge)?;
        if len32 > self.max_chunk {
            return Err(Error::PayloadTooLarge);
        }
        let total = chunk_buffer_len(len);
        let chunk = buf.get_mut(..total).ok_or(Error::BufferTooSmall)?;
        let (head, body) = chunk.split_at_mut(CHUNK_HEADER_LEN);
        let flags_len = if last { len32 | LAST } else { len32 };
        head.copy_from_slice(&flags_len.to_be_bytes());
        self.ctx.seal_in_place(head, body, len)?;
        self.finished = last;
        Ok(total)
    }

    /// Whether the last chunk was sealed.
    pub const fn is_finished(&self) -> bool {
        self.finished
    }
}

/// Opens a stream chunk by chunk, in order.
pub struct StreamOpener<A: HpkeAead = Aes256Gcm, P: CryptoProvider = crate::provider::DefaultProvider> {
    ctx: RecipientContext<A, P>,
    max_chunk: u32,
    finished: bool,
}

impl<A: HpkeAead, P: CryptoProvider> core::fmt::Debug for StreamOpener<A, P> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("StreamOpener")
            .field("chunks", &self.ctx.seq())
            .field("max_chunk", &self.max_chunk)
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}

/// One opened chunk. Its `Debug` output never shows the plaintext.
pub struct Chunk<'a> {
    /// The plaintext, inside the caller's buffer.
    pub data: &'a mut [u8],
    /// Whether this was the final chunk.
    pub last: bool,
}

impl core::fmt::Debug for Chunk<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Chunk").field("len", &self.data.len()).field("last", &self.last).finish_non_exhaustive()
    }
}

impl<A: HpkeAead, P: CryptoProvider> StreamOpener<A, P> {
    /// Reads a stream header. Pass the sender's public key for an auth-mode
    /// stream, `None` for base mode.
    ///
    /// # Errors
    /// [`Error::Truncated`] / [`Error::TrailingBytes`] (header length),
    /// [`Error::Malformed`] (not a stream header, or another AEAD),
    /// [`Error::UnsupportedVersion`] (`OWS` with another version), [`Error::PayloadTooLarge`] (`max_chunk`), [`Error::InvalidKey`].
    pub fn start(header: &[u8], recipient: &KeyPair<P>, sender: Option<&PublicKey>, app_info: &[u8]) -> Result<Self> {
        crate::wire::exact_len(header, STREAM_HEADER_LEN)?;
        let (fixed, enc) = header.split_at(10);
        let fixed: [u8; 10] = fixed.try_into().map_err(|_| Error::Truncated)?;
        let [g0, g1, g2, g3, a0, a1, m0, m1, m2, m3] = fixed;
        if [g0, g1, g2] != [b'O', b'W', b'S'] {
            return Err(Error::Malformed);
        }
        if [g0, g1, g2, g3] != MAGIC {
            return Err(Error::UnsupportedVersion(g3));
        }
        if u16::from_be_bytes([a0, a1]) != A::ID {
            return Err(Error::Malformed);
        }
        let max_chunk = u32::from_be_bytes([m0, m1, m2, m3]);
        if max_chunk == 0 || max_chunk as usize > MAX_CHUNK {
            return Err(Error::PayloadTooLarge);
        }
        let mut info = [0u8; MAX_INFO];
        let info_len = stream_info(&fixed, app_info, &mut info)?;
        let info = info.get(..info_len).ok_or(Error::BufferTooSmall)?;
        let ctx = match sender {
            None => RecipientContext::<A, P>::base(enc, recipient, info)?,
            Some(pk) => RecipientContext::<A, P>::auth(enc, recipient, info, pk)?,
        };
        Ok(Self { ctx, max_chunk, finished: false })
    }

    /// The largest chunk plaintext this stream may carry: size the chunk
    /// buffer as [`chunk_buffer_len`]`(max_chunk)`.
    pub const fn max_chunk(&self) -> usize {
        self.max_chunk as usize
    }

    /// The whole length of the chunk whose first [`CHUNK_HEADER_LEN`] bytes
    /// are `chunk_header`: read that many bytes, then call
    /// [`Self::open_chunk`].
    ///
    /// # Errors
    /// [`Error::Truncated`], [`Error::PayloadTooLarge`] above `max_chunk`,
    /// [`Error::TrailingBytes`] after the last chunk.
    pub fn chunk_len(&self, chunk_header: &[u8]) -> Result<usize> {
        if self.finished {
            return Err(Error::TrailingBytes);
        }
        let (len, _) = self.parse(chunk_header)?;
        Ok(chunk_buffer_len(len))
    }

    fn parse(&self, chunk: &[u8]) -> Result<(usize, bool)> {
        let head: [u8; CHUNK_HEADER_LEN] =
            chunk.get(..CHUNK_HEADER_LEN).and_then(|h| h.try_into().ok()).ok_or(Error::Truncated)?;
        let flags_len = u32::from_be_bytes(head);
        let len = flags_len & !LAST;
        if len > self.max_chunk {
            return Err(Error::PayloadTooLarge);
        }
        Ok((len as usize, flags_len & LAST != 0))
    }

    /// Opens the next chunk in place. `chunk` must be exactly one chunk.
    /// On error nothing changes: not `chunk`, not the position in the stream.
    ///
    /// # Errors
    /// [`Error::TrailingBytes`] after the last chunk (or if `chunk` is
    /// longer than its header says), [`Error::Truncated`],
    /// [`Error::PayloadTooLarge`], [`Error::Authentication`] (tampered,
    /// reordered, or from another stream).
    pub fn open_chunk<'a>(&mut self, chunk: &'a mut [u8]) -> Result<Chunk<'a>> {
        if self.finished {
            return Err(Error::TrailingBytes);
        }
        let (len, last) = self.parse(chunk)?;
        crate::wire::exact_len(chunk, chunk_buffer_len(len))?;
        let (head, body) = chunk.split_at_mut(CHUNK_HEADER_LEN);
        let data = self.ctx.open_in_place(head, body)?;
        self.finished = last;
        Ok(Chunk { data, last })
    }

    /// Whether the last chunk was opened.
    pub const fn is_finished(&self) -> bool {
        self.finished
    }

    /// Ends the stream: succeeds only if the last chunk was opened, so a
    /// stream cut at a chunk boundary is caught.
    ///
    /// # Errors
    /// [`Error::Truncated`].
    pub fn finish(self) -> Result<()> {
        if self.finished { Ok(()) } else { Err(Error::Truncated) }
    }
}
