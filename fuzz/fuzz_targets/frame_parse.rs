//! Header and frame parsing: never panics; whatever parses re-emits to the
//! same bytes (no re-encoding differs from what was received); a key update
//! that parses carries no payload.
#![no_main]
use libfuzzer_sys::fuzz_target;
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
});
