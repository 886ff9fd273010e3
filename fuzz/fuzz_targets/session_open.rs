//! An established session (from a real handshake) opening arbitrary frames
//! and responses: never panics, never changes the window on failure; an
//! accepted record is a replay the second time; the out-of-place open
//! (`open_unrecorded_to`) reaches the same verdict as the in-place one.
#![no_main]
#[path = "common.rs"]
mod common;
use common::*;
use libfuzzer_sys::fuzz_target;
use oncewire::handshake::MAX_HANDSHAKE_LEN;
use oncewire::session::{Received, RequestId, Session};
use std::sync::OnceLock;

fn server_session() -> Session {
    let server = server_key();
    let mut m1 = [0u8; MAX_HANDSHAKE_LEN];
    let (client, n1) = client_start(&mut m1);
    let mut m2 = [0u8; MAX_HANDSHAKE_LEN];
    let (pending, n2) = server_accept(server, &m1[..n1], &mut m2).unwrap();
    let (id, mut signer) = device();
    let mut m3 = [0u8; MAX_HANDSHAKE_LEN];
    let (_, n3) = client.finish::<_, 32>(&clock(), &m2[..n2], id, &mut signer, limits(), &mut m3).unwrap();
    pending.finish::<_, 32>(&clock(), &mut m3[..n3], &(device().0, device_public())).unwrap()
}

fuzz_target!(|data: &[u8]| {
    static SESSION: OnceLock<std::sync::Mutex<Session>> = OnceLock::new();
    let mut s = SESSION.get_or_init(|| std::sync::Mutex::new(server_session())).lock().unwrap();
    let before = s.window().clone();
    // The out-of-place open first: it records nothing, so the in-place
    // open below must reach the same verdict on the same state.
    let mut out = vec![0u8; data.len()];
    let to = s.open_unrecorded_to(&clock(), data, &mut out).map(|_| ());
    assert_eq!(s.window(), &before, "an unrecorded open changed the window");
    let mut buf = data.to_vec();
    let in_place = s.open_in_place(&clock(), &mut buf);
    assert_eq!(to, in_place.as_ref().map(|_| ()).map_err(|e| *e), "open_to and open_in_place disagree");
    match in_place {
        Err(_) => {
            assert_eq!(buf, data, "a failed open changed the buffer");
            assert_eq!(s.window(), &before, "a failed open changed the window");
        }
        Ok(Received::Record(..)) => {
            let mut again = data.to_vec();
            assert!(s.open_in_place(&clock(), &mut again).is_err(), "a record was accepted twice");
        }
        Ok(Received::KeyUpdated { .. }) => {}
    }
    let mut buf = data.to_vec();
    let request = RequestId { generation: 0, seq: 1 };
    if s.open_response(&clock(), request, &mut buf).is_err() {
        assert_eq!(buf, data, "a failed open changed the buffer");
    }
});
