//! Chunked-stream open on arbitrary bytes (header, then chunks, read the way
//! a file reader would): never panics; a failed chunk leaves its buffer and
//! the stream position unchanged; a stream is accepted only if it ends with
//! the last chunk. The corpus holds real streams to the fixed recipient.
#![no_main]
#[path = "common.rs"]
mod common;
use common::*;
use libfuzzer_sys::fuzz_target;
use oncewire::RustCrypto;
use oncewire::hpke::Aes256Gcm;
use oncewire::stream::{CHUNK_HEADER_LEN, STREAM_HEADER_LEN, StreamOpener};

fuzz_target!(|data: &[u8]| {
    let r = hpke_recipient();
    let Some((header, mut rest)) = data.split_at_checked(STREAM_HEADER_LEN) else {
        assert!(StreamOpener::<Aes256Gcm, RustCrypto>::start(data, r, None, b"fuzz").is_err());
        return;
    };
    let Ok(mut o) = StreamOpener::<Aes256Gcm, RustCrypto>::start(header, r, None, b"fuzz") else { return };
    while !rest.is_empty() {
        let Ok(n) = o.chunk_len(&rest[..rest.len().min(CHUNK_HEADER_LEN)]) else { return };
        let take = n.min(rest.len());
        let mut chunk = rest[..take].to_vec();
        let was_finished = o.is_finished();
        match o.open_chunk(&mut chunk) {
            Ok(c) => {
                assert_eq!(c.data.len() + oncewire::stream::CHUNK_OVERHEAD, take);
            }
            Err(_) => {
                assert_eq!(chunk, &rest[..take], "a failed chunk changed the buffer");
                assert_eq!(o.is_finished(), was_finished);
                return;
            }
        }
        rest = &rest[take..];
    }
    let finished = o.is_finished();
    assert_eq!(o.finish().is_ok(), finished);
});
