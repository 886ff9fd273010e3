//! Active attacks on the handshake and the session record layer. Each one
//! must fail closed with a typed error. The handshake states are consumed by
//! every step (typestate), so a failed step leaves no state that could be
//! resumed; where a server keeps state on a table, the test shows that the
//! genuine peer's next message no longer completes it either.
#![allow(
    missing_docs,
    clippy::arithmetic_side_effects,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use common::{Harness, ScriptRng};
use oncewire::device::{DeviceId, SoftwareSigner};
use oncewire::handshake::{ClientAwaitResponse, ClientHandshake, MAX_HANDSHAKE_LEN, ServerAwaitFinish, ServerKey};
use oncewire::provider::{CryptoProvider, PublicKey};
use oncewire::rng::OsRng;
use oncewire::session::{Limits, Received, Session};
use oncewire::wire::{HEADER_LEN, buffer_len};
use oncewire::{DefaultProvider, Error, Expiry};

/// Where message 1's and message 2's ephemeral key sits: after the header
/// and the one-byte postcard length (65).
const E_AT: core::ops::Range<usize> = HEADER_LEN + 1..HEADER_LEN + 66;

type Msg = ([u8; MAX_HANDSHAKE_LEN], usize);

fn msg1(w: &Harness, pinned: PublicKey) -> (ClientAwaitResponse, Msg) {
    let mut m = [0u8; MAX_HANDSHAKE_LEN];
    let (c, n) = ClientHandshake::<DefaultProvider>::start(pinned, &mut OsRng, &w.clock, &mut m).unwrap();
    (c, (m, n))
}

fn msg2(w: &Harness, m1: &Msg) -> (ServerAwaitFinish, Msg) {
    let mut m = [0u8; MAX_HANDSHAKE_LEN];
    let (p, n) = w.server.accept(&mut OsRng, &w.clock, &m1.0[..m1.1], Limits::DEFAULT, &mut m).unwrap();
    (p, (m, n))
}

fn msg3(w: &mut Harness, c: ClientAwaitResponse, m2: &Msg) -> (Session, Msg) {
    let mut m = [0u8; MAX_HANDSHAKE_LEN];
    let (s, n) = c.finish::<_, 32>(&w.clock, &m2.0[..m2.1], w.device, &mut w.signer, Limits::DEFAULT, &mut m).unwrap();
    (s, (m, n))
}

fn client_finish(w: &mut Harness, c: ClientAwaitResponse, m2: &[u8]) -> Result<Session, Error> {
    let mut m = [0u8; MAX_HANDSHAKE_LEN];
    c.finish::<_, 32>(&w.clock, m2, w.device, &mut w.signer, Limits::DEFAULT, &mut m).map(|(s, _)| s)
}

fn server_accept(w: &Harness, m1: &[u8]) -> Result<ServerAwaitFinish, Error> {
    let mut m = [0u8; MAX_HANDSHAKE_LEN];
    w.server.accept(&mut OsRng, &w.clock, m1, Limits::DEFAULT, &mut m).map(|(p, _)| p)
}

fn server_finish(w: &Harness, p: ServerAwaitFinish, m3: &Msg) -> Result<Session, Error> {
    let mut copy = m3.0;
    p.finish::<_, 32>(&w.clock, &mut copy[..m3.1], &w.enrolled)
}

fn other_point() -> PublicKey {
    DefaultProvider::p256_generate(&mut OsRng).unwrap().1
}

/// A full, genuine run still works in every test world (the attacks below
/// fail because of what they change, not because the setup is broken).
#[test]
fn genuine_run_completes() {
    let mut w = Harness::new();
    let (mut c, mut s) = w.handshake(Limits::DEFAULT);
    let mut f = vec![0u8; buffer_len(2)];
    let n = c.seal(&w.clock, b"hi", &mut f).unwrap();
    assert!(matches!(s.open_in_place(&w.clock, &mut f[..n]).unwrap(), Received::Record(o, _) if o.payload == b"hi"));
}

#[test]
fn mitm_substitutes_the_client_ephemeral() {
    let mut w = Harness::new();
    let (c, mut m1) = msg1(&w, *w.server.public_key());
    let genuine = m1;
    // Swapping in another valid point breaks message 1's tag (es changes).
    m1.0[E_AT].copy_from_slice(other_point().as_bytes());
    assert_eq!(server_accept(&w, &m1.0[..m1.1]).unwrap_err(), Error::Authentication);

    // A MITM that builds its own message 1 (its own ephemeral, the victim's
    // handshake id) gets a message 2 the victim cannot use...
    let mut id = [0u8; 8];
    id.copy_from_slice(&genuine.0[4..12]);
    let mut forged = [0u8; MAX_HANDSHAKE_LEN];
    let (mitm, fn1) = ClientHandshake::<DefaultProvider>::start(
        *w.server.public_key(),
        &mut ScriptRng::new(&[&id]),
        &w.clock,
        &mut forged,
    )
    .unwrap();
    let (pending, m2) = msg2(&w, &(forged, fn1));
    assert_eq!(client_finish(&mut w, c, &m2.0[..m2.1]).unwrap_err(), Error::Authentication);

    // ...and its own message 3, signed by a key that is not the enrolled
    // device's, does not establish a session on the server.
    let mut thief = SoftwareSigner::<DefaultProvider>::generate(&mut OsRng).unwrap();
    let mut m3 = [0u8; MAX_HANDSHAKE_LEN];
    let (_, n3) =
        mitm.finish::<_, 32>(&w.clock, &m2.0[..m2.1], w.device, &mut thief, Limits::DEFAULT, &mut m3).unwrap();
    assert_eq!(server_finish(&w, pending, &(m3, n3)).unwrap_err(), Error::Authentication);
}

#[test]
fn mitm_substitutes_the_server_ephemeral() {
    let mut w = Harness::new();
    let (c, m1) = msg1(&w, *w.server.public_key());
    let (pending, mut m2) = msg2(&w, &m1);
    m2.0[E_AT].copy_from_slice(other_point().as_bytes());
    assert_eq!(client_finish(&mut w, c, &m2.0[..m2.1]).unwrap_err(), Error::Authentication);
    // The server's half is left waiting for a message 3 that never comes;
    // after the handshake timeout it refuses anything.
    w.clock.advance(Limits::DEFAULT.handshake_timeout_ms + 1);
    let (_, fake3) = msg1(&w, *w.server.public_key());
    assert_eq!(server_finish(&w, pending, &fake3).unwrap_err(), Error::Expired(Expiry::Handshake));
}

#[test]
fn an_invalid_ephemeral_point_is_rejected() {
    let mut w = Harness::new();
    let (_, mut m1) = msg1(&w, *w.server.public_key());
    m1.0[E_AT.start + 64] ^= 1; // off the curve
    assert_eq!(server_accept(&w, &m1.0[..m1.1]).unwrap_err(), Error::InvalidKey);
    let (c, m1) = msg1(&w, *w.server.public_key());
    let (_, mut m2) = msg2(&w, &m1);
    m2.0[E_AT.start] = 0x02; // not the uncompressed form
    assert_eq!(client_finish(&mut w, c, &m2.0[..m2.1]).unwrap_err(), Error::InvalidKey);
}

#[test]
fn a_wrong_server_static_key_fails() {
    let mut w = Harness::new();
    // The client pinned another key: the real server cannot read message 1.
    let (_, m1) = msg1(&w, other_point());
    assert_eq!(server_accept(&w, &m1.0[..m1.1]).unwrap_err(), Error::Authentication);

    // An impostor server (its own static key) answering a client that pinned
    // the real one cannot produce a message 2 the client accepts.
    let impostor = ServerKey::<DefaultProvider>::generate(&mut OsRng).unwrap();
    let (c, m1) = msg1(&w, *w.server.public_key());
    let mut m2 = [0u8; MAX_HANDSHAKE_LEN];
    assert_eq!(
        impostor.accept(&mut OsRng, &w.clock, &m1.0[..m1.1], Limits::DEFAULT, &mut m2).unwrap_err(),
        Error::Authentication
    );
    // A message 2 the impostor builds for a message 1 that pinned it, relayed
    // to the client that pinned the real server, fails too.
    let mut m1i = [0u8; MAX_HANDSHAKE_LEN];
    let mut id = [0u8; 8];
    id.copy_from_slice(&m1.0[4..12]);
    let (_, n1i) = ClientHandshake::<DefaultProvider>::start(
        *impostor.public_key(),
        &mut ScriptRng::new(&[&id]),
        &w.clock,
        &mut m1i,
    )
    .unwrap();
    let (_, n2) = impostor.accept(&mut OsRng, &w.clock, &m1i[..n1i], Limits::DEFAULT, &mut m2).unwrap();
    assert_eq!(client_finish(&mut w, c, &m2[..n2]).unwrap_err(), Error::Authentication);
}

#[test]
fn a_wrong_or_unenrolled_device_key_fails() {
    let mut w = Harness::new();
    // Enrolled device id, but the handshake is signed by another key.
    let (c, m1) = msg1(&w, *w.server.public_key());
    let (p, m2) = msg2(&w, &m1);
    let mut thief = SoftwareSigner::<DefaultProvider>::generate(&mut OsRng).unwrap();
    let mut m3 = [0u8; MAX_HANDSHAKE_LEN];
    let (_, n3) = c.finish::<_, 32>(&w.clock, &m2.0[..m2.1], w.device, &mut thief, Limits::DEFAULT, &mut m3).unwrap();
    assert_eq!(server_finish(&w, p, &(m3, n3)).unwrap_err(), Error::Authentication);

    // A device id the server never enrolled.
    let (c, m1) = msg1(&w, *w.server.public_key());
    let (p, m2) = msg2(&w, &m1);
    let stranger = DeviceId::new(b"lock-9999").unwrap();
    let (_, n3) =
        c.finish::<_, 32>(&w.clock, &m2.0[..m2.1], stranger, &mut w.signer, Limits::DEFAULT, &mut m3).unwrap();
    assert_eq!(server_finish(&w, p, &(m3, n3)).unwrap_err(), Error::UnknownDevice);
}

#[test]
fn replayed_handshake_messages_do_not_yield_a_session() {
    let mut w = Harness::new();
    let (c, m1) = msg1(&w, *w.server.public_key());
    let (p, m2) = msg2(&w, &m1);
    let (_client_session, m3) = msg3(&mut w, c, &m2);
    let _server_session = server_finish(&w, p, &m3).unwrap();

    // Message 1 replayed: the server answers with a fresh ephemeral, so the
    // pending state has other keys, and the captured message 3 does not
    // complete it (its session id no longer matches).
    let (replayed, m2b) = msg2(&w, &m1);
    assert_ne!(m2b.0[..m2b.1], m2.0[..m2.1]);
    assert_eq!(server_finish(&w, replayed, &m3).unwrap_err(), Error::UnknownSession);

    // Message 2 replayed to a client that reuses the handshake id (worst
    // case): the client's new ephemeral makes the old message 2 fail.
    let mut id = [0u8; 8];
    id.copy_from_slice(&m1.0[4..12]);
    let mut buf = [0u8; MAX_HANDSHAKE_LEN];
    let (c2, _) = ClientHandshake::<DefaultProvider>::start(
        *w.server.public_key(),
        &mut ScriptRng::new(&[&id]),
        &w.clock,
        &mut buf,
    )
    .unwrap();
    assert_eq!(client_finish(&mut w, c2, &m2.0[..m2.1]).unwrap_err(), Error::Authentication);
    // With a fresh random id it is not even routed to the handshake.
    let (c3, _) = msg1(&w, *w.server.public_key());
    assert_eq!(client_finish(&mut w, c3, &m2.0[..m2.1]).unwrap_err(), Error::UnknownSession);
}

#[test]
fn replayed_message_3_is_rejected_by_the_established_session() {
    let mut w = Harness::new();
    let (c, m1) = msg1(&w, *w.server.public_key());
    let (p, m2) = msg2(&w, &m1);
    let (_cs, m3) = msg3(&mut w, c, &m2);
    let mut s = server_finish(&w, p, &m3).unwrap();
    let before = s.window().clone();
    let mut again = m3.0;
    assert!(s.open_in_place(&w.clock, &mut again[..m3.1]).is_err());
    assert_eq!(s.window(), &before);
}

#[test]
fn reflected_messages_are_refused() {
    let mut w = Harness::new();
    let (c, m1) = msg1(&w, *w.server.public_key());
    // Message 1 reflected to the client as if it were message 2.
    assert_eq!(client_finish(&mut w, c, &m1.0[..m1.1]).unwrap_err(), Error::UnexpectedFrame);
    // Message 2 reflected to the server as if it were message 1.
    let (_, m2) = msg2(&w, &m1);
    assert_eq!(server_accept(&w, &m2.0[..m2.1]).unwrap_err(), Error::UnexpectedFrame);
    // A record reflected back to its sender: the other direction's key.
    let (mut cs, _ss) = w.handshake(Limits::DEFAULT);
    let mut f = vec![0u8; buffer_len(4)];
    let n = cs.seal(&w.clock, b"ping", &mut f).unwrap();
    let before = cs.window().clone();
    assert_eq!(cs.open_in_place(&w.clock, &mut f[..n]).unwrap_err(), Error::Authentication);
    assert_eq!(cs.window(), &before);
}

#[test]
fn truncated_or_reordered_transcripts_fail() {
    let mut w = Harness::new();
    let (c, m1) = msg1(&w, *w.server.public_key());
    for cut in [0, 1, HEADER_LEN - 1, HEADER_LEN, m1.1 - 1] {
        assert!(server_accept(&w, &m1.0[..cut]).is_err(), "message 1 cut to {cut} bytes");
    }
    // Message 1 with one extra byte.
    assert_eq!(server_accept(&w, &m1.0[..m1.1 + 1]).unwrap_err(), Error::TrailingBytes);

    let (p, m2) = msg2(&w, &m1);
    assert_eq!(client_finish(&mut w, c, &m2.0[..m2.1 - 1]).unwrap_err(), Error::Truncated);

    // Reordered: the server gets message 1 where it waits for message 3.
    assert_eq!(server_finish(&w, p, &m1).unwrap_err(), Error::UnexpectedFrame);
    // The client gets its own handshake's message 3 where it waits for 2.
    let (c, _) = msg1(&w, *w.server.public_key());
    let (c_other, m1b) = msg1(&w, *w.server.public_key());
    let (_, m2b) = msg2(&w, &m1b);
    let (_, m3b) = msg3(&mut w, c_other, &m2b);
    assert_eq!(client_finish(&mut w, c, &m3b.0[..m3b.1]).unwrap_err(), Error::UnexpectedFrame);
}

#[test]
fn version_downgrade_and_header_edits_fail() {
    let mut w = Harness::new();
    let (_, m1) = msg1(&w, *w.server.public_key());
    for v in [0u8, 2, 0xff] {
        let mut m = m1;
        m.0[0] = v;
        assert_eq!(server_accept(&w, &m.0[..m.1]).unwrap_err(), Error::UnsupportedVersion(v));
    }
    // Every header byte is in the transcript: the timestamp, for example.
    let mut m = m1;
    m.0[30] ^= 1;
    assert_eq!(server_accept(&w, &m.0[..m.1]).unwrap_err(), Error::Authentication);

    let (c, m1) = msg1(&w, *w.server.public_key());
    let (_, mut m2) = msg2(&w, &m1);
    m2.0[0] = 0;
    assert_eq!(client_finish(&mut w, c, &m2.0[..m2.1]).unwrap_err(), Error::UnsupportedVersion(0));
}

#[test]
fn a_frame_from_one_session_does_not_open_in_another() {
    let mut w = Harness::new();
    let (mut a_client, _a_server) = w.handshake(Limits::DEFAULT);
    let (_b_client, mut b_server) = w.handshake(Limits::DEFAULT);
    let mut f = vec![0u8; buffer_len(5)];
    let n = a_client.seal(&w.clock, b"hello", &mut f).unwrap();
    let before = b_server.window().clone();
    assert_eq!(b_server.open_in_place(&w.clock, &mut f[..n]).unwrap_err(), Error::UnknownSession);
    // Rewriting the session id to B's does not help: A's key sealed it.
    f[4..12].copy_from_slice(b_server.session_id());
    assert_eq!(b_server.open_in_place(&w.clock, &mut f[..n]).unwrap_err(), Error::Authentication);
    assert_eq!(b_server.window(), &before);
}

#[test]
fn swapped_responses_are_rejected() {
    let mut w = Harness::new();
    let (mut c, mut s) = w.handshake(Limits::DEFAULT);
    let mut reqs = Vec::new();
    for body in [b"pay 10".as_slice(), b"pay 99"] {
        let mut f = vec![0u8; buffer_len(body.len())];
        let (n, id) = c.seal_request(&w.clock, body, &mut f).unwrap();
        assert!(matches!(s.open_in_place(&w.clock, &mut f[..n]).unwrap(), Received::Record(_, got) if got == id));
        reqs.push(id);
    }
    let mut responses = Vec::new();
    for (seq, body) in reqs.iter().zip([b"ok-10".as_slice(), b"ok-99"]) {
        let mut r = vec![0u8; buffer_len(body.len())];
        let n = s.seal_response(&w.clock, *seq, body, &mut r).unwrap();
        r.truncate(n);
        responses.push(r);
    }
    // The response to request 2 offered as the answer to request 1, and the
    // other way round.
    let mut r1 = responses[1].clone();
    assert_eq!(c.open_response(&w.clock, reqs[0], &mut r1).unwrap_err(), Error::Authentication);
    assert_eq!(r1, responses[1], "a failed open leaves the buffer unchanged");
    let mut r0 = responses[0].clone();
    assert_eq!(c.open_response(&w.clock, reqs[1], &mut r0).unwrap_err(), Error::Authentication);
    // Matched correctly, both open.
    assert_eq!(c.open_response(&w.clock, reqs[0], &mut responses[0]).unwrap().payload, b"ok-10");
    assert_eq!(c.open_response(&w.clock, reqs[1], &mut responses[1]).unwrap().payload, b"ok-99");
}

#[test]
fn message_3_after_the_handshake_timeout_is_refused() {
    let mut w = Harness::new();
    let (c, m1) = msg1(&w, *w.server.public_key());
    let (p, m2) = msg2(&w, &m1);
    let (_cs, m3) = msg3(&mut w, c, &m2);
    w.clock.advance(Limits::DEFAULT.handshake_timeout_ms + 1);
    assert_eq!(server_finish(&w, p, &m3).unwrap_err(), Error::Expired(Expiry::Handshake));
}
