//! Chunked streams to a device key: round trips at chunk-size edges, and
//! each attack on the chunk sequence fails with its typed error, changing
//! nothing.
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::arithmetic_side_effects
)]

use oncewire::hpke::{Aes128Gcm, Aes256Gcm, HpkeAead, KeyPair};
use oncewire::rng::OsRng;
use oncewire::stream::{CHUNK_HEADER_LEN, STREAM_HEADER_LEN, StreamOpener, StreamSealer, chunk_buffer_len};
use oncewire::{DefaultProvider, Error};

struct Sealed {
    header: Vec<u8>,
    chunks: Vec<Vec<u8>>,
}

fn seal<A: HpkeAead>(device: &KeyPair, sender: Option<&KeyPair>, data: &[u8], max: usize) -> Sealed {
    let mut header = [0u8; STREAM_HEADER_LEN];
    let mut s =
        StreamSealer::<A, DefaultProvider>::start(&mut OsRng, device.public_key(), sender, b"fw", max, &mut header)
            .unwrap();
    let mut chunks = Vec::new();
    let mut pieces: Vec<&[u8]> = data.chunks(max).collect();
    if pieces.is_empty() || data.len().is_multiple_of(max) {
        pieces.push(&[]); // an empty last chunk
    }
    let n = pieces.len();
    for (i, p) in pieces.into_iter().enumerate() {
        let mut buf = vec![0u8; chunk_buffer_len(p.len())];
        buf[CHUNK_HEADER_LEN..CHUNK_HEADER_LEN + p.len()].copy_from_slice(p);
        let len = s.seal_chunk(&mut buf, p.len(), i + 1 == n).unwrap();
        assert_eq!(len, buf.len());
        chunks.push(buf);
    }
    assert!(s.is_finished());
    assert_eq!(s.seal_chunk(&mut [0u8; 64], 0, true).unwrap_err(), Error::TrailingBytes);
    Sealed { header: header.to_vec(), chunks }
}

fn open<A: HpkeAead>(device: &KeyPair, sender: Option<&KeyPair>, s: &Sealed) -> Result<Vec<u8>, Error> {
    let mut o = StreamOpener::<A, DefaultProvider>::start(&s.header, device, sender.map(KeyPair::public_key), b"fw")?;
    let mut out = Vec::new();
    for c in &s.chunks {
        let mut c = c.clone();
        let chunk = o.open_chunk(&mut c)?;
        out.extend_from_slice(chunk.data);
    }
    o.finish()?;
    Ok(out)
}

fn data(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 31 % 251) as u8).collect()
}

#[test]
fn round_trips_at_chunk_edges_in_both_modes_and_aeads() {
    let device = KeyPair::generate(&mut OsRng).unwrap();
    let sender = KeyPair::generate(&mut OsRng).unwrap();
    for n in [0, 1, 63, 64, 65, 128, 1000] {
        let d = data(n);
        assert_eq!(open::<Aes256Gcm>(&device, None, &seal::<Aes256Gcm>(&device, None, &d, 64)).unwrap(), d);
        let s = seal::<Aes128Gcm>(&device, Some(&sender), &d, 64);
        assert_eq!(open::<Aes128Gcm>(&device, Some(&sender), &s).unwrap(), d);
        // Auth-mode streams do not open as base mode or from another sender.
        assert_eq!(open::<Aes128Gcm>(&device, None, &s).unwrap_err(), Error::Authentication);
        assert_eq!(open::<Aes128Gcm>(&device, Some(&device), &s).unwrap_err(), Error::Authentication);
        // chunk_len tells a reader how much to read after the chunk header.
        let o = StreamOpener::<Aes128Gcm, DefaultProvider>::start(&s.header, &device, Some(sender.public_key()), b"fw")
            .unwrap();
        assert_eq!(o.chunk_len(&s.chunks[0][..CHUNK_HEADER_LEN]).unwrap(), s.chunks[0].len());
    }
}

#[test]
fn truncation_is_detected() {
    let device = KeyPair::generate(&mut OsRng).unwrap();
    let mut s = seal::<Aes256Gcm>(&device, None, &data(300), 64);
    s.chunks.pop();
    assert_eq!(open::<Aes256Gcm>(&device, None, &s).unwrap_err(), Error::Truncated);
    // Cut inside a chunk.
    let mut s = seal::<Aes256Gcm>(&device, None, &data(300), 64);
    let last = s.chunks.last_mut().unwrap();
    last.pop();
    assert_eq!(open::<Aes256Gcm>(&device, None, &s).unwrap_err(), Error::Truncated);
    // Mark an earlier chunk last and drop the rest.
    let mut s = seal::<Aes256Gcm>(&device, None, &data(300), 64);
    s.chunks.truncate(2);
    s.chunks[1][0] |= 0x80;
    assert_eq!(open::<Aes256Gcm>(&device, None, &s).unwrap_err(), Error::Authentication);
}

#[test]
fn reordering_is_detected() {
    let device = KeyPair::generate(&mut OsRng).unwrap();
    let mut s = seal::<Aes256Gcm>(&device, None, &data(300), 64);
    s.chunks.swap(1, 2);
    assert_eq!(open::<Aes256Gcm>(&device, None, &s).unwrap_err(), Error::Authentication);
    let mut s = seal::<Aes256Gcm>(&device, None, &data(300), 64);
    s.chunks.remove(1);
    assert_eq!(open::<Aes256Gcm>(&device, None, &s).unwrap_err(), Error::Authentication);
}

#[test]
fn extension_is_detected() {
    let device = KeyPair::generate(&mut OsRng).unwrap();
    let mut s = seal::<Aes256Gcm>(&device, None, &data(300), 64);
    let again = s.chunks[0].clone();
    s.chunks.push(again);
    assert_eq!(open::<Aes256Gcm>(&device, None, &s).unwrap_err(), Error::TrailingBytes);
    // Clearing the last flag to append more fails at that chunk.
    let mut s = seal::<Aes256Gcm>(&device, None, &data(300), 64);
    let last = s.chunks.len() - 1;
    s.chunks[last][0] &= 0x7f;
    assert_eq!(open::<Aes256Gcm>(&device, None, &s).unwrap_err(), Error::Authentication);
    // Extra bytes on a chunk.
    let mut s = seal::<Aes256Gcm>(&device, None, &data(300), 64);
    s.chunks[0].push(0);
    assert_eq!(open::<Aes256Gcm>(&device, None, &s).unwrap_err(), Error::TrailingBytes);
}

#[test]
fn chunks_swapped_between_two_files_are_detected() {
    let device = KeyPair::generate(&mut OsRng).unwrap();
    let a = seal::<Aes256Gcm>(&device, None, &data(300), 64);
    let b = seal::<Aes256Gcm>(&device, None, &data(300), 64);
    // Same plaintext, same recipient: different keys per file.
    assert_ne!(a.chunks[1], b.chunks[1]);
    let mut mixed = Sealed { header: a.header.clone(), chunks: a.chunks.clone() };
    mixed.chunks[1] = b.chunks[1].clone();
    assert_eq!(open::<Aes256Gcm>(&device, None, &mixed).unwrap_err(), Error::Authentication);
    // B's header with A's chunks.
    let swapped = Sealed { header: b.header.clone(), chunks: a.chunks.clone() };
    assert_eq!(open::<Aes256Gcm>(&device, None, &swapped).unwrap_err(), Error::Authentication);
}

#[test]
fn header_edits_and_bad_lengths_are_typed_errors() {
    let device = KeyPair::generate(&mut OsRng).unwrap();
    let s = seal::<Aes256Gcm>(&device, None, &data(100), 64);
    let start = |h: &[u8]| StreamOpener::<Aes256Gcm, DefaultProvider>::start(h, &device, None, b"fw").map(|_| ());
    assert_eq!(start(&s.header[..STREAM_HEADER_LEN - 1]).unwrap_err(), Error::Truncated);
    let mut long = s.header.clone();
    long.push(0);
    assert_eq!(start(&long).unwrap_err(), Error::TrailingBytes);
    let mut h = s.header.clone();
    h[0] = b'X';
    assert_eq!(start(&h).unwrap_err(), Error::Malformed);
    let mut h = s.header.clone();
    h[3] = b'2';
    assert_eq!(start(&h).unwrap_err(), Error::UnsupportedVersion(b'2'));
    let mut h = s.header.clone();
    h[5] = 1; // AES-128-GCM announced to an AES-256-GCM opener
    assert_eq!(start(&h).unwrap_err(), Error::Malformed);
    let mut h = s.header.clone();
    h[6..10].copy_from_slice(&0u32.to_be_bytes());
    assert_eq!(start(&h).unwrap_err(), Error::PayloadTooLarge);
    // A larger max_chunk is bound into the keys: every chunk fails.
    let mut h = s.header.clone();
    h[6..10].copy_from_slice(&128u32.to_be_bytes());
    let edited = Sealed { header: h, chunks: s.chunks.clone() };
    assert_eq!(open::<Aes256Gcm>(&device, None, &edited).unwrap_err(), Error::Authentication);
    // Another app info.
    let mut o = StreamOpener::<Aes256Gcm, DefaultProvider>::start(&s.header, &device, None, b"other").unwrap();
    let mut c = s.chunks[0].clone();
    assert_eq!(o.open_chunk(&mut c).unwrap_err(), Error::Authentication);
    // A chunk announcing more than max_chunk is refused before any crypto.
    let mut o = StreamOpener::<Aes256Gcm, DefaultProvider>::start(&s.header, &device, None, b"fw").unwrap();
    assert_eq!(o.chunk_len(&65u32.to_be_bytes()).unwrap_err(), Error::PayloadTooLarge);
    let mut c = s.chunks[0].clone();
    c[..4].copy_from_slice(&65u32.to_be_bytes());
    assert_eq!(o.open_chunk(&mut c).unwrap_err(), Error::PayloadTooLarge);
    assert_eq!(o.open_chunk(&mut [0u8; 3]).unwrap_err(), Error::Truncated);
}

#[test]
fn a_failed_chunk_changes_nothing() {
    let device = KeyPair::generate(&mut OsRng).unwrap();
    let s = seal::<Aes256Gcm>(&device, None, &data(200), 64);
    let mut o = StreamOpener::<Aes256Gcm, DefaultProvider>::start(&s.header, &device, None, b"fw").unwrap();
    let mut bad = s.chunks[0].clone();
    bad[10] ^= 1;
    let before = bad.clone();
    assert_eq!(o.open_chunk(&mut bad).unwrap_err(), Error::Authentication);
    assert_eq!(bad, before);
    // The genuine chunk still opens in the same position, and the rest follow.
    let mut out = Vec::new();
    for c in &s.chunks {
        let mut c = c.clone();
        out.extend_from_slice(o.open_chunk(&mut c).unwrap().data);
    }
    o.finish().unwrap();
    assert_eq!(out, data(200));
}
