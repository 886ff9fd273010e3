//! A multi-MiB file sealed to a device's public key with the chunked
//! stream API, written to disk, read back chunk by chunk through one fixed
//! buffer, and checked. Then the attacks on a chunk sequence: truncation,
//! reordering, extension and chunk swapping between two files, each of which
//! must fail.
//!
//! ```text
//! cargo run --example file_transfer [-- SIZE_MIB]
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::arithmetic_side_effects)]

use oncewire::hpke::KeyPair;
use oncewire::provider::CryptoProvider;
use oncewire::rng::OsRng;
use oncewire::stream::{CHUNK_HEADER_LEN, STREAM_HEADER_LEN, StreamOpener, StreamSealer, chunk_buffer_len};
use oncewire::{Error, RustCrypto};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

const CHUNK: usize = 64 * 1024;

/// Seals `input` to `device` into `output`, one chunk at a time. Returns the
/// byte offsets where each chunk starts (for the attack demonstrations).
fn seal_file(device: &KeyPair, input: &Path, output: &Path) -> Result<Vec<usize>, Box<dyn std::error::Error>> {
    let mut src = std::fs::File::open(input)?;
    let mut dst = std::io::BufWriter::new(std::fs::File::create(output)?);
    let mut header = [0u8; STREAM_HEADER_LEN];
    let mut sealer: StreamSealer =
        StreamSealer::start(&mut OsRng, device.public_key(), None, b"fw", CHUNK, &mut header)?;
    dst.write_all(&header)?;
    let mut buf = vec![0u8; chunk_buffer_len(CHUNK)];
    let mut offsets = Vec::new();
    let mut at = STREAM_HEADER_LEN;
    // Full chunks go out as they are read; the first short read (possibly
    // empty, for a file that is a multiple of CHUNK) is the last chunk.
    loop {
        let len = read_full(&mut src, &mut buf[CHUNK_HEADER_LEN..CHUNK_HEADER_LEN + CHUNK])?;
        let last = len < CHUNK;
        let n = sealer.seal_chunk(&mut buf, len, last)?;
        dst.write_all(&buf[..n])?;
        offsets.push(at);
        at += n;
        if last {
            break;
        }
    }
    dst.flush()?;
    Ok(offsets)
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// Opens a sealed stream from any reader, through one chunk buffer, into
/// `sink`. Returns the plaintext length.
fn open_stream(device: &KeyPair, mut src: impl Read, mut sink: impl Write) -> Result<u64, Error> {
    let io = |_| Error::Truncated;
    let mut header = [0u8; STREAM_HEADER_LEN];
    src.read_exact(&mut header).map_err(io)?;
    let mut opener: StreamOpener = StreamOpener::start(&header, device, None, b"fw")?;
    let mut buf = vec![0u8; chunk_buffer_len(opener.max_chunk())];
    let mut total = 0u64;
    loop {
        let got = read_full(&mut src, &mut buf[..CHUNK_HEADER_LEN]).map_err(io)?;
        if got == 0 {
            break; // end of input: finish() decides whether that was allowed
        }
        if got < CHUNK_HEADER_LEN {
            return Err(Error::Truncated);
        }
        let n = opener.chunk_len(&buf[..CHUNK_HEADER_LEN])?;
        let got = read_full(&mut src, &mut buf[CHUNK_HEADER_LEN..n]).map_err(io)?;
        if got < n - CHUNK_HEADER_LEN {
            return Err(Error::Truncated);
        }
        let chunk = opener.open_chunk(&mut buf[..n])?;
        sink.write_all(chunk.data).map_err(io)?;
        total += chunk.data.len() as u64;
    }
    opener.finish()?;
    Ok(total)
}

fn expect_err(what: &str, r: Result<u64, Error>, want: Error, ok: &mut bool) {
    match r {
        Err(e) if e == want => println!("  {what:<44} rejected: {e:?}"),
        other => {
            println!("  {what:<44} UNEXPECTED: {other:?} (wanted {want:?})");
            *ok = false;
        }
    }
}

fn main() -> ExitCode {
    let mib: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(8);
    let dir: PathBuf = std::env::temp_dir().join(format!("oncewire-file-transfer-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let plain = dir.join("firmware.bin");
    let sealed = dir.join("firmware.bin.ows");
    let other = dir.join("other.bin.ows");

    // A multi-MiB input file of random bytes.
    let mut data = vec![0u8; mib * 1024 * 1024 + 12_345];
    oncewire::rng::TryRng::try_fill_bytes(&mut OsRng, &mut data).unwrap();
    std::fs::write(&plain, &data).unwrap();
    let digest = RustCrypto::sha256(&[&data]);

    let device: KeyPair = KeyPair::generate(&mut OsRng).unwrap();
    let t = Instant::now();
    let offsets = seal_file(&device, &plain, &sealed).unwrap();
    let seal_ms = t.elapsed().as_secs_f64() * 1e3;
    let sealed_len = std::fs::metadata(&sealed).unwrap().len();
    println!(
        "sealed {} bytes into {} chunks of up to {} KiB: {sealed_len} bytes on disk ({seal_ms:.0} ms)",
        data.len(),
        offsets.len(),
        CHUNK / 1024
    );

    let t = Instant::now();
    let mut out = Vec::with_capacity(data.len());
    let n = open_stream(&device, std::io::BufReader::new(std::fs::File::open(&sealed).unwrap()), &mut out).unwrap();
    let open_ms = t.elapsed().as_secs_f64() * 1e3;
    let mut ok = n as usize == data.len() && RustCrypto::sha256(&[&out]) == digest;
    println!("opened {n} bytes ({open_ms:.0} ms), SHA-256 matches the original: {ok}");

    println!("attacks:");
    let bytes = std::fs::read(&sealed).unwrap();
    let chunk = |i: usize| -> &[u8] {
        let end = offsets.get(i + 1).copied().unwrap_or(bytes.len());
        &bytes[offsets[i]..end]
    };
    let last = offsets.len() - 1;
    let attempt = |b: &[u8]| open_stream(&device, b, std::io::sink());

    // Truncation: drop the last chunk (a clean cut at a chunk boundary).
    expect_err("truncated (last chunk dropped)", attempt(&bytes[..offsets[last]]), Error::Truncated, &mut ok);
    // Truncation inside a chunk.
    expect_err("truncated (cut inside a chunk)", attempt(&bytes[..bytes.len() - 7]), Error::Truncated, &mut ok);
    // Reordering: swap chunks 1 and 2.
    let mut reordered = bytes[..offsets[1]].to_vec();
    reordered.extend_from_slice(chunk(2));
    reordered.extend_from_slice(chunk(1));
    reordered.extend_from_slice(&bytes[offsets[3]..]);
    expect_err("reordered (chunks 1 and 2 swapped)", attempt(&reordered), Error::Authentication, &mut ok);
    // Extension: append a copy of chunk 0 after the last chunk.
    let mut extended = bytes.clone();
    extended.extend_from_slice(chunk(0));
    expect_err("extended (chunk appended after the last)", attempt(&extended), Error::TrailingBytes, &mut ok);
    // Swapping between files: chunk 1 from another file to the same device.
    seal_file(&device, &plain, &other).unwrap();
    let other_bytes = std::fs::read(&other).unwrap();
    let mut spliced = bytes[..offsets[1]].to_vec();
    spliced.extend_from_slice(&other_bytes[offsets[1]..offsets[2]]);
    spliced.extend_from_slice(&bytes[offsets[2]..]);
    expect_err("chunk 1 swapped in from another file", attempt(&spliced), Error::Authentication, &mut ok);
    // Another device cannot open it at all.
    let stranger: KeyPair = KeyPair::generate(&mut OsRng).unwrap();
    let r = open_stream(&stranger, &bytes[..], std::io::sink());
    expect_err("opened with another device's key", r, Error::Authentication, &mut ok);

    std::fs::remove_dir_all(&dir).ok();
    if ok {
        println!("file transfer: all expected outcomes happened");
        ExitCode::SUCCESS
    } else {
        println!("file transfer: FAILED");
        ExitCode::FAILURE
    }
}
