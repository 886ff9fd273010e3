//! The helpers every integration used to write by hand, through the public
//! API: the enrollment request's wire form, the stateless enrollment issuer,
//! `BoundRequest` (challenge and token proof over one request hash, checked
//! all before any is recorded), the server key's persistence, buffer
//! bounds, `DeviceKeys` for maps, and the two-step message 3 through the
//! session table.
#![allow(
    missing_docs,
    clippy::arithmetic_side_effects,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use oncewire::bound::{BoundRequest, MAX_BOUND_LEN, Requirements};
use oncewire::cache::{Purpose, ReplayCache};
use oncewire::challenge::StatelessChallenges;
use oncewire::clock::ManualClock;
use oncewire::device::{DeviceKeys, EnrollmentIssuer, EnrollmentRequest, MAX_ENROLLMENT_REQUEST_LEN, SoftwareSigner};
use oncewire::handshake::MAX_HANDSHAKE_LEN;
use oncewire::prover::Prover;
use oncewire::replay::{Freshness, TimeFloor};
use oncewire::rng::OsRng;
use oncewire::token::{Claims, MAX_TOKEN_LEN, TokenIssuer, TokenVerifier};
use oncewire::{
    ClientHandshake, DefaultProvider, DeviceId, DeviceSigner, Error, Expiry, Limits, PublicKey, Received, Secret,
    ServerKey, Session, SessionTable,
};
use std::collections::{BTreeMap, HashMap};

const NOW: u64 = 1_767_225_600_000;

fn signer() -> SoftwareSigner {
    SoftwareSigner::generate(&mut OsRng).unwrap()
}

#[test]
fn enrollment_requests_round_trip_on_the_wire() {
    let server: ServerKey = ServerKey::generate(&mut OsRng).unwrap();
    let device = DeviceId::new(b"lock-0042").unwrap();
    let req = Prover::new(signer()).answer_enrollment(server.public_key(), &[7; 32], device).unwrap();
    let mut buf = [0u8; MAX_ENROLLMENT_REQUEST_LEN];
    let n = req.to_bytes(&mut buf).unwrap();
    assert_eq!(EnrollmentRequest::from_bytes(&buf[..n]).unwrap(), req);
    // A 32-byte id fills the bound exactly.
    let long = Prover::new(signer()).answer_enrollment(server.public_key(), &[7; 32], DeviceId::new(&[9; 32]).unwrap());
    assert_eq!(long.unwrap().to_bytes(&mut buf).unwrap(), MAX_ENROLLMENT_REQUEST_LEN);
    let n = req.to_bytes(&mut buf).unwrap();
    let mut long = buf[..n].to_vec();
    long.push(0);
    assert_eq!(EnrollmentRequest::from_bytes(&long).unwrap_err(), Error::TrailingBytes);
    assert_eq!(EnrollmentRequest::from_bytes(&buf[..n - 1]).unwrap_err(), Error::Decode);
    assert_eq!(EnrollmentRequest::from_bytes(&[]).unwrap_err(), Error::Decode);
    // A non-minimal length varint (9 as 0x89 0x00) decodes to the same request: refused.
    let mut odd = vec![0x89, 0x00];
    odd.extend_from_slice(&buf[1..n]);
    assert_eq!(EnrollmentRequest::from_bytes(&odd).unwrap_err(), Error::Decode);
}

#[test]
fn the_stateless_enrollment_issuer_accepts_each_challenge_once() {
    let clock = ManualClock::new(NOW);
    let server: ServerKey = ServerKey::generate(&mut OsRng).unwrap();
    let other: ServerKey = ServerKey::generate(&mut OsRng).unwrap();
    let issuer_with = |key: u8| -> EnrollmentIssuer<DefaultProvider, 8> {
        EnrollmentIssuer::new(StatelessChallenges::new(Secret::new([key; 32]), 60_000, [4; 16]))
    };
    let mut issuer = issuer_with(3);
    let device = DeviceId::new(b"lock-0042").unwrap();
    let mut prover = Prover::new(signer());

    let c = issuer.issue(&mut OsRng, &clock).unwrap();
    let answer = prover.answer_enrollment(server.public_key(), c.as_bytes(), device).unwrap();
    // Bound to the server: verified as another server's, it fails, and uses nothing.
    assert_eq!(issuer.verify(other.public_key(), &c, &answer, &clock).unwrap_err(), Error::Authentication);
    // A forged challenge (tag changed) and a forged expiry.
    for at in [30, 7] {
        let mut forged = *c.as_bytes();
        forged[at] ^= 1;
        let forged = oncewire::challenge::Challenge::from_bytes(&forged).unwrap();
        assert_eq!(issuer.verify(server.public_key(), &forged, &answer, &clock).unwrap_err(), Error::Authentication);
    }
    // Another issuer's challenge (another MAC key).
    let foreign = issuer_with(9).issue(&mut OsRng, &clock).unwrap();
    let a = prover.answer_enrollment(server.public_key(), foreign.as_bytes(), device).unwrap();
    assert_eq!(issuer.verify(server.public_key(), &foreign, &a, &clock).unwrap_err(), Error::Authentication);
    assert!(issuer.challenges().used().is_empty());
    // Once.
    let enrolled = issuer.verify(server.public_key(), &c, &answer, &clock).unwrap();
    assert_eq!(enrolled.device, device);
    assert_eq!(issuer.verify(server.public_key(), &c, &answer, &clock).unwrap_err(), Error::Replay);
    assert_eq!(issuer.challenges().audit().challenge_reused, 1);
    // Expired.
    let c2 = issuer.issue(&mut OsRng, &clock).unwrap();
    let a2 = prover.answer_enrollment(server.public_key(), c2.as_bytes(), device).unwrap();
    clock.advance(60_001);
    assert_eq!(issuer.verify(server.public_key(), &c2, &a2, &clock).unwrap_err(), Error::Expired(Expiry::Enrollment));

    // Restarts: the used set goes with the MAC key.
    let clock = ManualClock::new(NOW);
    let mut issuer = issuer_with(3);
    let c = issuer.issue(&mut OsRng, &clock).unwrap();
    let answer = prover.answer_enrollment(server.public_key(), c.as_bytes(), device).unwrap();
    issuer.verify(server.public_key(), &c, &answer, &clock).unwrap();
    let mut snap = [0u8; 2048];
    let n = issuer.challenges().snapshot(1, &mut snap).unwrap();
    let mut restored: EnrollmentIssuer<DefaultProvider, 8> = EnrollmentIssuer::new(
        StatelessChallenges::restore(Secret::new([3; 32]), 60_000, [4; 16], &snap[..n], 1).unwrap(),
    );
    assert_eq!(restored.verify(server.public_key(), &c, &answer, &clock).unwrap_err(), Error::Replay);
    let floor = TimeFloor::after_restart(NOW, &StatelessChallenges::<DefaultProvider, 8>::freshness(60_000));
    let mut fresh: EnrollmentIssuer<DefaultProvider, 8> =
        EnrollmentIssuer::new(StatelessChallenges::after_restart(Secret::new([3; 32]), 60_000, [4; 16], floor));
    assert_eq!(fresh.verify(server.public_key(), &c, &answer, &clock).unwrap_err(), Error::Expired(Expiry::Enrollment));
    clock.advance(1);
    let c3 = fresh.issue(&mut OsRng, &clock).unwrap();
    let a3 = prover.answer_enrollment(server.public_key(), c3.as_bytes(), device).unwrap();
    fresh.verify(server.public_key(), &c3, &a3, &clock).unwrap();
}

struct TokenWorld {
    issuer: TokenIssuer,
    token: Vec<u8>,
    prover: Prover<SoftwareSigner>,
    device_key: PublicKey,
}

fn token_world() -> TokenWorld {
    let issuer: TokenIssuer = TokenIssuer::generate(&mut OsRng).unwrap();
    let s = signer();
    let device_key = s.public_key().unwrap();
    let claims = Claims {
        iss: "auth",
        sub: b"phone",
        aud: "api",
        iat: NOW,
        nbf: NOW,
        exp: NOW + 60_000,
        jti: &[1; 16],
        cnf: issuer.cnf(&device_key),
    };
    let mut buf = [0u8; MAX_TOKEN_LEN];
    let n = issuer.issue(&claims, &mut buf).unwrap();
    TokenWorld { issuer, token: buf[..n].to_vec(), prover: Prover::new(s), device_key }
}

#[test]
fn a_bound_request_records_nothing_unless_every_part_verifies() {
    let clock = ManualClock::new(NOW);
    let mut w = token_world();
    let verifier: TokenVerifier = TokenVerifier::new(*w.issuer.public_key(), "api", 0);
    let mut proofs: ReplayCache<DefaultProvider, 16> =
        ReplayCache::new(Purpose::TokenProofs, &Secret::new([2; 32]), Freshness::DEFAULT);
    let mut challenges: StatelessChallenges<DefaultProvider, 16> =
        StatelessChallenges::generate(&mut OsRng, 30_000).unwrap();
    let request = b"POST /pay 10 EUR to bob";
    let challenge = challenges.issue(&mut OsRng, &clock).unwrap();
    let bound = w.prover.bound_request(&mut OsRng, &clock, request, Some(&challenge), Some(&w.token)).unwrap();

    // Wire round trip.
    let mut out = [0u8; MAX_BOUND_LEN];
    let n = bound.to_bytes(&mut out).unwrap();
    assert_eq!(n, MAX_BOUND_LEN);
    assert_eq!(BoundRequest::from_bytes(&out[..n]).unwrap(), bound);
    assert_eq!(BoundRequest::from_bytes(&out[..n - 1]).unwrap_err(), Error::Truncated);
    let mut bad = out;
    bad[0] = 0x04;
    assert_eq!(BoundRequest::from_bytes(&bad[..n]).unwrap_err(), Error::Malformed);

    macro_rules! need {
        () => {
            Requirements { challenges: Some(&mut challenges), token: Some((&verifier, &mut proofs, &w.token[..])) }
        };
    }
    // Another request: the challenge part fails first, nothing is recorded.
    assert_eq!(
        bound.verify(need!(), &clock, b"POST /pay 9999 EUR", &w.device_key).unwrap_err(),
        Error::RequestMismatch
    );
    // A proof by another key: the token part fails after the challenge passed;
    // the challenge must not be used up.
    let mut thief = Prover::new(signer());
    let stolen = BoundRequest {
        binding: bound.binding,
        proof: Some(thief.prove(&mut OsRng, &clock, &w.token, request).unwrap()),
    };
    assert_eq!(stolen.verify(need!(), &clock, request, &w.device_key).unwrap_err(), Error::Authentication);
    assert!(challenges.used().is_empty() && proofs.ring().is_empty(), "a failed part recorded something");
    // A missing part, or one that is not required.
    let only_challenge = BoundRequest { binding: bound.binding, proof: None };
    assert_eq!(only_challenge.verify(need!(), &clock, request, &w.device_key).unwrap_err(), Error::Malformed);
    // The genuine one: once.
    let t = bound.verify(need!(), &clock, request, &w.device_key).unwrap().unwrap();
    assert!(t.key_bound());
    assert_eq!(challenges.used().len(), 1);
    assert_eq!(proofs.ring().len(), 1);
    assert_eq!(bound.verify(need!(), &clock, request, &w.device_key).unwrap_err(), Error::Replay);

    // Challenge only.
    let c = challenges.issue(&mut OsRng, &clock).unwrap();
    let b = w.prover.bound_request(&mut OsRng, &clock, request, Some(&c), None).unwrap();
    let need = Requirements::<'_, '_, DefaultProvider, 16, 16> { challenges: Some(&mut challenges), token: None };
    assert!(b.verify(need, &clock, request, &w.device_key).unwrap().is_none());
    // Token only.
    let b = w.prover.bound_request(&mut OsRng, &clock, request, None, Some(&w.token)).unwrap();
    let need = Requirements::<'_, '_, DefaultProvider, 16, 16> {
        challenges: None,
        token: Some((&verifier, &mut proofs, &w.token[..])),
    };
    assert!(b.verify(need, &clock, request, &w.device_key).unwrap().is_some());
}

#[test]
fn tokens_have_a_bound() {
    let w = token_world();
    let verifier: TokenVerifier = TokenVerifier::new(*w.issuer.public_key(), "api", 0);
    let long = vec![0u8; MAX_TOKEN_LEN + 1];
    assert_eq!(verifier.verify(&long, &ManualClock::new(NOW)).unwrap_err(), Error::PayloadTooLarge);
    let big = [7u8; MAX_TOKEN_LEN];
    let claims =
        Claims { iss: "auth", sub: &big, aud: "api", iat: NOW, nbf: NOW, exp: NOW, jti: &[1; 16], cnf: [0; 32] };
    let mut buf = [0u8; 2 * MAX_TOKEN_LEN];
    assert_eq!(w.issuer.issue(&claims, &mut buf).unwrap_err(), Error::PayloadTooLarge);
}

#[test]
fn the_server_key_persists_and_reloads() {
    let (key, secret): (ServerKey, Secret<32>) = ServerKey::generate_persistent(&mut OsRng).unwrap();
    let again: ServerKey = ServerKey::from_bytes(&secret).unwrap();
    assert_eq!(key.public_key(), again.public_key());
    let issuer: TokenIssuer = TokenIssuer::from_bytes(&secret).unwrap();
    assert_ne!(issuer.public_key(), &PublicKey::from_sec1_uncompressed(&[4; 65]).unwrap());
}

#[test]
fn maps_are_device_registries_and_message_3_can_wait_for_a_lookup() {
    let clock = ManualClock::new(NOW);
    let server: ServerKey = ServerKey::generate(&mut OsRng).unwrap();
    let device = DeviceId::new(b"lock-0042").unwrap();
    let mut s = signer();
    let mut hash: HashMap<DeviceId, PublicKey> = HashMap::new();
    let mut tree: BTreeMap<DeviceId, PublicKey> = BTreeMap::new();
    hash.insert(device, s.public_key().unwrap());
    tree.insert(device, s.public_key().unwrap());
    assert_eq!(hash.device_key(&device), tree.device_key(&device));
    assert_eq!(hash.device_key(&DeviceId::new(b"x").unwrap()), None);

    let mut table: SessionTable = SessionTable::new(4, 4);
    let mut m1 = [0u8; MAX_HANDSHAKE_LEN];
    let (hs, n1) = ClientHandshake::start(*server.public_key(), &mut OsRng, &clock, &mut m1).unwrap();
    let mut m2 = [0u8; MAX_HANDSHAKE_LEN];
    let (pending, n2) = server.accept(&mut OsRng, &clock, &m1[..n1], Limits::DEFAULT, &mut m2).unwrap();
    table.begin(&clock, pending).unwrap();
    let mut m3 = [0u8; MAX_HANDSHAKE_LEN];
    let (mut client, n3): (Session, usize) =
        hs.finish(&clock, &m2[..n2], device, &mut s, Limits::DEFAULT, &mut m3).unwrap();
    // Step 1: message 3 names the device; step 2 (after an async lookup): verify.
    let step = table.take_pending(&clock, &m3[..n3]).unwrap().read_finish::<32>(&clock, &mut m3[..n3]).unwrap();
    let key = tree.get(step.device()).copied().unwrap();
    let session = step.verify(&clock, &key).unwrap();
    assert_eq!(session.device(), Some(&device));
    table.store(&clock, session).unwrap();
    // The table routes the client's record to it.
    let mut f = vec![0u8; oncewire::wire::buffer_len(2)];
    let (n, id) = client.seal_request(&clock, b"hi", &mut f).unwrap();
    let (_, got) = table.open(&clock, &mut f[..n]).unwrap();
    assert!(matches!(got, Received::Record(o, r) if o.payload == b"hi" && r == id));
    // Message 3 for an unknown handshake.
    assert_eq!(table.take_pending(&clock, &m3[..n3]).unwrap_err(), Error::UnknownSession);
}
