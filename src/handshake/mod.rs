//! Session establishment (`SPEC.md` §7).
//!
//! The pattern is **Noise NK** (`Noise_NK_P256_AESGCM_SHA256`), unmodified in
//! its two handshake messages, followed by a third message in which the
//! device authenticates by signing the Noise handshake hash with its
//! hardware-held key (channel binding, Noise §11.2; the same place TLS 1.3
//! puts `CertificateVerify`):
//!
//! ```text
//!   <- s                                   (client is pinned to the server's static key)
//!   ...
//!   -> e, es, [ {} ]                       HandshakeInit      (0x10, plaintext frame)
//!   <- e, ee, [ {server time, lifetime} ]  HandshakeResponse  (0x11, plaintext frame)
//!   -> { device id, sig(H) }               HandshakeFinish    (0x12, sealed under the c2s session key)
//! ```
//!
//! Both sides contribute ephemeral P-256 keys, so session keys have forward
//! secrecy; `es` authenticates the server to the client, whose decryption of
//! message 2 is the key confirmation; message 3 proves the device key and,
//! by opening under the new c2s key, confirms the client's keys to the server.
//!
//! The API is typestate: each step consumes `self`, so a failed step drops
//! the state (secrets zeroized), and a session exists only after the step
//! that authenticates the peer:
//!
//! - client: [`ClientHandshake::start`] → [`ClientAwaitResponse::finish`] → [`Session`];
//! - server: [`ServerKey::accept`] → [`ServerAwaitFinish::read_finish`]
//!   (names the device) → [`ServerAwaitDevice::verify`] (with the device's
//!   enrolled key, looked up by the caller, possibly asynchronously) →
//!   [`Session`]; [`ServerAwaitFinish::finish`] does both with a [`DeviceKeys`].

use crate::error::{Error, Result};
use crate::wire::{Frame, FrameType, HEADER_LEN, Header, KEY_ID_LEN, NonceField};
use serde::{Deserialize, Serialize};

mod client;
mod noise;
mod server;

pub use client::{ClientAwaitResponse, ClientHandshake};
pub use server::{PENDING_STATE_LEN, ServerAwaitDevice, ServerAwaitFinish, ServerKey};

#[cfg(doc)]
use crate::{device::DeviceKeys, session::Session};

/// Buffer size that fits any handshake message.
pub const MAX_HANDSHAKE_LEN: usize = 256;

/// Body of handshake messages 1 and 2: an ephemeral key and a sealed payload.
#[derive(Serialize, Deserialize)]
pub(super) struct EphemeralBody<'a> {
    pub(super) e: &'a [u8],
    pub(super) sealed: &'a [u8],
}

/// Plaintext payload of message 2.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct ServerHello {
    pub(super) server_time_ms: u64,
    pub(super) lifetime_ms: u64,
}

/// Plaintext of message 3.
#[derive(Serialize, Deserialize)]
pub(super) struct FinishBody<'a> {
    pub(super) device_id: &'a [u8],
    pub(super) signature: &'a [u8],
}

pub(super) use crate::wire::decode_exact;

/// Parses a plaintext control frame of the expected type; returns header,
/// header bytes and body.
pub(super) fn parse_control(frame: &[u8], expected: FrameType) -> Result<(Header, &[u8], &[u8])> {
    let f = Frame::new_checked(frame)?;
    let h = *f.header();
    if h.frame_type != expected {
        return Err(Error::UnexpectedFrame);
    }
    let (head, body) = frame.split_at_checked(HEADER_LEN).ok_or(Error::Truncated)?;
    Ok((h, head, body))
}

/// Writes a control frame: header then `body_len` bytes already at `out[HEADER_LEN..]`.
pub(super) fn emit_control_header(
    out: &mut [u8],
    frame_type: FrameType,
    key_id: [u8; KEY_ID_LEN],
    now: u64,
    body_len: usize,
) -> Result<[u8; HEADER_LEN]> {
    let header = Header {
        frame_type,
        key_id,
        nonce: NonceField::None,
        timestamp_ms: now,
        payload_len: u32::try_from(body_len).map_err(|_| Error::PayloadTooLarge)?,
    };
    let mut head = [0u8; HEADER_LEN];
    header.emit(&mut head)?;
    out.get_mut(..HEADER_LEN).ok_or(Error::BufferTooSmall)?.copy_from_slice(&head);
    Ok(head)
}

/// Serializes `body` to `out[HEADER_LEN..]`, returning its length.
pub(super) fn write_body<T: Serialize>(body: &T, out: &mut [u8]) -> Result<usize> {
    let dst = out.get_mut(HEADER_LEN..).ok_or(Error::BufferTooSmall)?;
    Ok(postcard::to_slice(body, dst).map_err(|_| Error::BufferTooSmall)?.len())
}

/// The client's clock offset (SPEC.md §7.3):
/// `server_time − ⌊(t_send + t_receive) / 2⌋`, the sum taken without
/// overflow (as u128) and the division rounding down, saturated to `i64`.
pub fn clock_offset(server_time_ms: u64, sent_ms: u64, received_ms: u64) -> i64 {
    let mid = (u128::from(sent_ms).saturating_add(u128::from(received_ms)) / 2) as i128;
    let off = i128::from(server_time_ms).saturating_sub(mid);
    i64::try_from(off).unwrap_or(if off < 0 { i64::MIN } else { i64::MAX })
}
