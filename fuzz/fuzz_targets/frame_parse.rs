//! Header and frame parsing, and the other wire forms a server decodes
//! (enrollment requests, bound requests, token proofs, challenges): never
//! panics; whatever parses re-emits to the same bytes (no re-encoding
//! differs from what was received); a key update that parses carries no
//! payload.
#![no_main]
use libfuzzer_sys::fuzz_target;
use oncewire::bound::{BoundRequest, MAX_BOUND_LEN};
use oncewire::challenge::Challenge;
use oncewire::device::{EnrollmentRequest, MAX_ENROLLMENT_REQUEST_LEN};
use oncewire::token::TokenProof;
use oncewire::wire::{Frame, FrameType, HEADER_LEN, Header};

fuzz_target!(|data: &[u8]| {
    if let Ok(frame) = Frame::new_checked(data) {
        let h = *frame.header();
        let mut out = [0u8; HEADER_LEN];
        h.emit(&mut out).expect("a parsed header emits");
        assert_eq!(&out[..], frame.header_bytes());
        assert_eq!(h.frame_len(), data.len());
    }
    if let Ok(bytes) = <&[u8; HEADER_LEN]>::try_from(data.get(..HEADER_LEN).unwrap_or_default()) {
        if let Ok(h) = Header::parse(bytes) {
            assert!(h.frame_type != FrameType::KeyUpdate || h.payload_len == 0, "a key update with a payload parsed");
            let mut out = [0u8; HEADER_LEN];
            h.emit(&mut out).expect("a parsed header emits");
            assert_eq!(&out, bytes);
        }
    }
    if let Ok(r) = EnrollmentRequest::from_bytes(data) {
        let mut out = [0u8; MAX_ENROLLMENT_REQUEST_LEN];
        let n = r.to_bytes(&mut out).expect("a parsed request encodes");
        assert_eq!(&out[..n], data, "an enrollment request re-encodes differently");
    }
    if let Ok(b) = BoundRequest::from_bytes(data) {
        let mut out = [0u8; MAX_BOUND_LEN];
        let n = b.to_bytes(&mut out).expect("a parsed bound request encodes");
        assert_eq!(&out[..n], data, "a bound request re-encodes differently");
    }
    if let Ok(p) = TokenProof::from_bytes(data) {
        assert_eq!(&p.to_bytes()[..], data);
    }
    if let Ok(c) = Challenge::from_bytes(data) {
        assert_eq!(&c.as_bytes()[..], data);
    }
});
