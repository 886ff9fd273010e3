//! Verify now, record elsewhere (`SPEC.md` §15.1), through the public API:
//! each `*_unrecorded` path accepts what its recording twin accepts, records
//! nothing, refuses what its twin refuses with the same error, and returns
//! the exact [`Once`] its twin records; a [`ReplayCache`] (or the challenge
//! issuer) accepts each `Once` once.
#![allow(
    missing_docs,
    clippy::arithmetic_side_effects,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use common::{T0, bind};
use oncewire::bound::{BoundRequest, Checks, Onces, Requirements};
use oncewire::cache::{Once, Purpose, ReplayCache};
use oncewire::challenge::{CHALLENGE_LEN, Challenge, StatelessChallenges};
use oncewire::clock::ManualClock;
use oncewire::device::{DeviceSigner, SoftwareSigner};
use oncewire::hpke::{Aes256Gcm, ENC_LEN, KeyPair};
use oncewire::keyschedule::labels;
use oncewire::prover::Prover;
use oncewire::provider::{CryptoProvider, PublicKey};
use oncewire::replay::Freshness;
use oncewire::request::{PAYLOAD_OFFSET, REQUEST_OVERHEAD, RequestReceiver, RequestSender};
use oncewire::rng::OsRng;
use oncewire::token::{Claims, TokenIssuer, TokenProof, TokenVerifier};
use oncewire::{Audit, DefaultProvider, Error, Expiry, Secret};

const F: Freshness = Freshness::DEFAULT;
const TTL: u64 = 30_000;
const APP: &[u8] = b"app";
const AAD: &[u8] = b"aad";

type Rx = RequestReceiver<Aes256Gcm, DefaultProvider, 16>;
type Cache = ReplayCache<DefaultProvider, 16>;
type Issuer = StatelessChallenges<DefaultProvider, 16>;

fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    <DefaultProvider as CryptoProvider>::sha256(parts)
}

fn id12(digest: &[u8; 32]) -> [u8; 12] {
    digest[..12].try_into().unwrap()
}

fn cache(purpose: Purpose, freshness: Freshness) -> Cache {
    ReplayCache::generate(purpose, &mut OsRng, freshness).unwrap()
}

// ---------------------------------------------------------------------------
// One-shot requests
// ---------------------------------------------------------------------------

fn state_key() -> Secret<32> {
    Secret::new([9; 32])
}

fn seal_request(clock: &ManualClock, server: &PublicKey, msg: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; REQUEST_OVERHEAD + msg.len()];
    buf[PAYLOAD_OFFSET..][..msg.len()].copy_from_slice(msg);
    let n = RequestSender::new(*server).seal(&mut OsRng, clock, None, APP, AAD, &mut buf, msg.len()).unwrap();
    assert_eq!(n, buf.len());
    buf
}

/// `open_unrecorded` on a copy of `req`; on error, checks that the copy is
/// byte for byte unchanged. Returns the payload and the Once.
fn open_unrecorded(rx: &Rx, server: &KeyPair, clock: &ManualClock, req: &[u8]) -> Result<(Vec<u8>, Once), Error> {
    let mut buf = req.to_vec();
    match rx.open_unrecorded(server, None, clock, APP, AAD, &mut buf) {
        Ok((opened, once)) => {
            assert_eq!(opened.timestamp_ms, once.timestamp_ms);
            Ok((opened.payload.to_vec(), once))
        }
        Err(e) => {
            assert_eq!(buf, req, "a rejected request was changed ({e:?})");
            Err(e)
        }
    }
}

fn open(rx: &mut Rx, server: &KeyPair, clock: &ManualClock, req: &[u8]) -> Result<Vec<u8>, Error> {
    let mut buf = req.to_vec();
    rx.open(server, None, clock, APP, AAD, &mut buf).map(|o| o.payload.to_vec())
}

#[test]
fn requests_open_unrecorded_returns_the_once_and_records_nothing() {
    let clock = ManualClock::new(T0);
    let server = KeyPair::<DefaultProvider>::generate(&mut OsRng).unwrap();
    let rx = Rx::new(&state_key(), F);
    let req = seal_request(&clock, server.public_key(), b"POST /unlock");

    let (payload, once) = open_unrecorded(&rx, &server, &clock, &req).unwrap();
    assert_eq!(payload, b"POST /unlock");
    // The Once is the id and timestamp of SPEC §11.3.
    let expected = Once {
        purpose: Purpose::Requests,
        id: id12(&sha256(&[labels::REQUEST_ID, &req[..ENC_LEN]])),
        timestamp_ms: u64::from_be_bytes(req[ENC_LEN..PAYLOAD_OFFSET].try_into().unwrap()),
    };
    assert_eq!(once, expected);
    // Nothing was recorded or counted: the same request opens again, to the same Once.
    assert_eq!(open_unrecorded(&rx, &server, &clock, &req).unwrap(), (payload, once));
    assert_eq!(rx.cache().ring().len(), 0);
    assert_eq!(rx.cache().audit(), &Audit::new());

    // A store accepts it once.
    let mut store = cache(Purpose::Requests, F);
    store.check_once(&once, T0).unwrap();
    store.accept(&once, T0).unwrap();
    assert_eq!(store.accept(&once, T0), Err(Error::Replay));
    assert_eq!(store.check_once(&once, T0), Err(Error::Replay));
    assert_eq!(store.audit().accepted, 1);
    assert_eq!(store.audit().replay_rejected, 1);
}

#[test]
fn requests_the_once_is_what_open_records() {
    let clock = ManualClock::new(T0);
    let server = KeyPair::<DefaultProvider>::generate(&mut OsRng).unwrap();
    let req = seal_request(&clock, server.public_key(), b"POST /pay 10");
    let (_, once) = open_unrecorded(&Rx::new(&state_key(), F), &server, &clock, &req).unwrap();

    // `open` records exactly this Once: afterwards its cache says Replay to it,
    // and the receiver's own pre-check refuses the unrecorded path too.
    let mut rx = Rx::new(&state_key(), F);
    assert_eq!(open(&mut rx, &server, &clock, &req).unwrap(), b"POST /pay 10");
    assert_eq!(rx.cache().check_once(&once, T0), Err(Error::Replay));
    assert_eq!(open_unrecorded(&rx, &server, &clock, &req), Err(Error::Replay));

    // And the other way: a cache with the receiver's state key that accepted
    // the Once, restored into a receiver, makes `open` refuse the request.
    let mut store = Cache::new(Purpose::Requests, &state_key(), F);
    store.accept(&once, T0).unwrap();
    let mut snap = [0u8; 1024];
    let n = store.snapshot(1, &mut snap).unwrap();
    let mut restored = Rx::restore(&state_key(), F, &snap[..n], 1).unwrap();
    assert_eq!(open(&mut restored, &server, &clock, &req), Err(Error::Replay));
}

#[test]
fn requests_a_forged_request_fails_as_open_fails_and_leaves_the_buffer() {
    let clock = ManualClock::new(T0);
    let server = KeyPair::<DefaultProvider>::generate(&mut OsRng).unwrap();
    let rx = Rx::new(&state_key(), F);
    let genuine = seal_request(&clock, server.public_key(), b"POST /pay 10");
    let flip = |i: usize| {
        let mut f = genuine.clone();
        f[i] ^= 0x01;
        f
    };
    let stale = seal_request(&ManualClock::new(T0 - F.max_age_ms - 1), server.public_key(), b"old");
    let future = seal_request(&ManualClock::new(T0 + F.max_future_skew_ms + 1), server.public_key(), b"f");
    let other_key = KeyPair::<DefaultProvider>::generate(&mut OsRng).unwrap();
    let cases: [(&str, Vec<u8>, &KeyPair, Error); 7] = [
        ("ciphertext", flip(PAYLOAD_OFFSET + 2), &server, Error::Authentication),
        ("tag", flip(genuine.len() - 1), &server, Error::Authentication),
        ("timestamp", flip(PAYLOAD_OFFSET - 1), &server, Error::Authentication),
        ("recipient", genuine.clone(), &other_key, Error::Authentication),
        ("truncated", genuine[..REQUEST_OVERHEAD - 1].to_vec(), &server, Error::Truncated),
        ("stale", stale, &server, Error::Stale),
        ("future", future, &server, Error::FromFuture),
    ];
    for (what, forged, key, want) in cases {
        assert_eq!(open_unrecorded(&rx, key, &clock, &forged), Err(want), "{what}");
        // The recording API refuses it with the same error.
        let mut recording = Rx::new(&state_key(), F);
        assert_eq!(open(&mut recording, key, &clock, &forged), Err(want), "{what}");
    }
    assert_eq!(rx.cache().audit(), &Audit::new());
    // A failed open in place leaves every byte as it was.
    let mut buf = flip(PAYLOAD_OFFSET + 2);
    let before = buf.clone();
    assert!(rx.open_unrecorded(&server, None, &clock, APP, b"other", &mut buf).is_err());
    assert_eq!(buf, before);
    // The genuine request still opens.
    assert!(open_unrecorded(&rx, &server, &clock, &genuine).is_ok());
}

// ---------------------------------------------------------------------------
// Token proofs
// ---------------------------------------------------------------------------

struct Tokens {
    issuer: TokenIssuer,
    device: SoftwareSigner,
    device_key: PublicKey,
    token: Vec<u8>,
}

fn tokens() -> Tokens {
    let issuer = TokenIssuer::<DefaultProvider>::generate(&mut OsRng).unwrap();
    let device = SoftwareSigner::<DefaultProvider>::generate(&mut OsRng).unwrap();
    let device_key = device.public_key().unwrap();
    let claims = Claims {
        iss: "auth",
        sub: b"lock-0042",
        aud: "api",
        iat: T0,
        nbf: T0,
        exp: T0 + 300_000,
        jti: &[7; 16],
        cnf: issuer.cnf(&device_key),
    };
    let mut buf = [0u8; 512];
    let n = issuer.issue(&claims, &mut buf).unwrap();
    Tokens { issuer, device, device_key, token: buf[..n].to_vec() }
}

fn prove(w: &mut Tokens, clock: &ManualClock, request: &[u8]) -> TokenProof {
    Prover::new(&mut w.device).prove(&mut OsRng, clock, &w.token, request).unwrap()
}

#[test]
fn token_verify_bound_unrecorded_returns_the_once_and_records_nothing() {
    let clock = ManualClock::new(T0);
    let mut w = tokens();
    let verifier: TokenVerifier = TokenVerifier::new(*w.issuer.public_key(), "api", 0);
    let empty = cache(Purpose::TokenProofs, F);
    let req = b"POST /unlock";
    let proof = prove(&mut w, &clock, req);
    let bytes = proof.to_bytes();

    let (v, once) = verifier.verify_bound_unrecorded(&empty, &clock, &w.token, &w.device_key, req, &bytes).unwrap();
    assert!(v.key_bound());
    assert_eq!(v.claims().sub, b"lock-0042");
    // The Once is the id and iat of SPEC §13.
    let digest =
        sha256(&[labels::TOKEN_PROOF, &sha256(&[&w.token]), &sha256(&[req]), &proof.iat.to_be_bytes(), &proof.jti]);
    assert_eq!(once, Once { purpose: Purpose::TokenProofs, id: id12(&digest), timestamp_ms: proof.iat });
    // Nothing recorded or counted: it verifies again, to the same Once.
    let again = verifier.verify_bound_unrecorded(&empty, &clock, &w.token, &w.device_key, req, &bytes).unwrap();
    assert_eq!(again, (v, once));
    assert_eq!(empty.ring().len(), 0);
    assert_eq!(empty.audit(), &Audit::new());

    // A store accepts it once; then the recording API refuses the proof.
    let mut store = cache(Purpose::TokenProofs, F);
    store.accept(&once, T0).unwrap();
    assert_eq!(store.accept(&once, T0), Err(Error::Replay));
    assert_eq!(verifier.verify_bound(&mut store, &clock, &w.token, &w.device_key, req, &bytes), Err(Error::Replay));

    // And the other way: what verify_bound records is this Once.
    let mut recording = cache(Purpose::TokenProofs, F);
    verifier.verify_bound(&mut recording, &clock, &w.token, &w.device_key, req, &bytes).unwrap();
    assert_eq!(recording.check_once(&once, T0), Err(Error::Replay));
    assert_eq!(recording.accept(&once, T0), Err(Error::Replay));
    assert_eq!(
        verifier.verify_bound_unrecorded(&recording, &clock, &w.token, &w.device_key, req, &bytes),
        Err(Error::Replay)
    );
}

/// (what, token, device key, request, proof, the error).
type TokenCase<'a> = (&'a str, &'a [u8], &'a PublicKey, &'a [u8], &'a [u8], Error);

#[test]
fn token_a_bad_proof_fails_as_verify_bound_fails() {
    let clock = ManualClock::new(T0);
    let mut w = tokens();
    let verifier: TokenVerifier = TokenVerifier::new(*w.issuer.public_key(), "api", 0);
    let empty = cache(Purpose::TokenProofs, F);
    let req = b"POST /unlock";
    let good = prove(&mut w, &clock, req).to_bytes();
    let mut bad_sig = good;
    bad_sig[good.len() - 1] ^= 0x01;
    let stale = prove(&mut w, &ManualClock::new(T0 - F.max_age_ms - 1), req).to_bytes();
    let thief = SoftwareSigner::<DefaultProvider>::generate(&mut OsRng).unwrap().public_key().unwrap();
    let mut bad_token = w.token.clone();
    *bad_token.last_mut().unwrap() ^= 0x01;
    let cases: [TokenCase<'_>; 7] = [
        ("signature", &w.token, &w.device_key, req, &bad_sig, Error::Authentication),
        ("other request", &w.token, &w.device_key, b"POST /lock", &good, Error::Authentication),
        ("other device", &w.token, &thief, req, &good, Error::KeyMismatch),
        ("token", &bad_token, &w.device_key, req, &good, Error::Authentication),
        ("stale", &w.token, &w.device_key, req, &stale, Error::Stale),
        ("short", &w.token, &w.device_key, req, &good[..good.len() - 1], Error::Truncated),
        ("long", &w.token, &w.device_key, req, &[&good[..], &[0]].concat(), Error::TrailingBytes),
    ];
    for (what, token, key, request, proof, want) in cases {
        assert_eq!(verifier.verify_bound_unrecorded(&empty, &clock, token, key, request, proof), Err(want), "{what}");
        let mut recording = cache(Purpose::TokenProofs, F);
        assert_eq!(verifier.verify_bound(&mut recording, &clock, token, key, request, proof), Err(want), "{what}");
        assert_eq!(recording.ring().len(), 0, "{what}");
    }
    // A cache of another purpose is a caller's mistake.
    let requests = cache(Purpose::Requests, F);
    assert_eq!(
        verifier.verify_bound_unrecorded(&requests, &clock, &w.token, &w.device_key, req, &good),
        Err(Error::Misuse)
    );
}

// ---------------------------------------------------------------------------
// Challenges
// ---------------------------------------------------------------------------

fn issuer() -> Issuer {
    StatelessChallenges::generate(&mut OsRng, TTL).unwrap()
}

fn challenge_once(c: &Challenge) -> Once {
    Once { purpose: Purpose::Challenges, id: c.as_bytes()[8..20].try_into().unwrap(), timestamp_ms: c.expires_at_ms() }
}

#[test]
fn challenge_verify_bound_unrecorded_returns_the_once_and_records_nothing() {
    let clock = ManualClock::new(T0);
    let mut issuer = issuer();
    let c = issuer.issue(&mut OsRng, &clock).unwrap();
    let req = b"POST /pay 10";
    let b = bind(&c, req);

    let once = issuer.verify_bound_unrecorded(&clock, &b, req).unwrap();
    // The Once is what the used set is keyed on (SPEC §12): the first 96
    // random bits, with the expiry as the timestamp.
    assert_eq!(once, challenge_once(&c));
    assert_eq!(once.timestamp_ms, T0 + TTL);
    assert_eq!(issuer.verify_bound_unrecorded(&clock, &b, req).unwrap(), once);
    assert_eq!(issuer.used().len(), 0);
    assert_eq!(issuer.audit(), &Audit::new());

    // A used-challenge cache made with the public constructor accepts it once.
    let mut used: ReplayCache =
        ReplayCache::generate(Purpose::Challenges, &mut OsRng, <StatelessChallenges>::freshness(TTL)).unwrap();
    used.accept(&once, T0).unwrap();
    assert_eq!(used.accept(&once, T0), Err(Error::Replay));
    assert_eq!(used.audit().challenge_reused, 1);
    assert_eq!(used.audit().accepted, 1);

    // The issuer accepts it once; then the recording API refuses the binding.
    issuer.accept(&once, T0).unwrap();
    assert_eq!(issuer.accept(&once, T0), Err(Error::Replay));
    assert_eq!(issuer.verify_bound(&clock, &b, req), Err(Error::Replay));
    assert_eq!(issuer.audit().challenge_reused, 2);

    // And the other way: what verify_bound records is this Once.
    let c2 = issuer.issue(&mut OsRng, &clock).unwrap();
    let b2 = bind(&c2, req);
    issuer.verify_bound(&clock, &b2, req).unwrap();
    assert_eq!(issuer.accept(&challenge_once(&c2), T0), Err(Error::Replay));
    assert_eq!(issuer.verify_bound_unrecorded(&clock, &b2, req), Err(Error::Replay));
}

/// (what, binding, request, clock, the error).
type BindingCase<'a> = (&'a str, &'a [u8], &'a [u8], &'a ManualClock, Error);

#[test]
fn challenge_a_bad_binding_fails_as_verify_bound_fails() {
    let clock = ManualClock::new(T0);
    let mut issuer = issuer();
    let c = issuer.issue(&mut OsRng, &clock).unwrap();
    let req = b"POST /pay 10";
    let b = bind(&c, req);
    let mut forged = b;
    forged[3] ^= 1; // the expiry
    let mut bad_tag = b;
    bad_tag[CHALLENGE_LEN - 1] ^= 1;
    let late = ManualClock::new(T0 + TTL + 1);
    let cases: [BindingCase<'_>; 5] = [
        ("expiry", &forged, req, &clock, Error::Authentication),
        ("tag", &bad_tag, req, &clock, Error::Authentication),
        ("other request", &b, b"POST /pay 99", &clock, Error::RequestMismatch),
        ("expired", &b, req, &late, Error::Expired(Expiry::Challenge)),
        ("short", &b[..10], req, &clock, Error::Truncated),
    ];
    for (what, binding, request, at, want) in cases {
        assert_eq!(issuer.verify_bound_unrecorded(at, binding, request), Err(want), "{what}");
        // The recording API refuses it with the same error, and uses nothing.
        assert_eq!(issuer.verify_bound(at, binding, request), Err(want), "{what}");
        assert_eq!(issuer.used().len(), 0, "{what}");
    }
    // The genuine binding still verifies.
    assert_eq!(issuer.verify_bound_unrecorded(&clock, &b, req), Ok(challenge_once(&c)));
}

#[test]
fn challenge_once_past_expiry_is_expired_everywhere() {
    let clock = ManualClock::new(T0);
    let mut issuer = issuer();
    let c = issuer.issue(&mut OsRng, &clock).unwrap();
    let once = issuer.verify_bound_unrecorded(&clock, &bind(&c, b"r"), b"r").unwrap();
    let mut used = cache(Purpose::Challenges, StatelessChallenges::<DefaultProvider>::freshness(TTL));
    let late = T0 + TTL + 1;
    assert_eq!(used.check_once(&once, late), Err(Error::Expired(Expiry::Challenge)));
    assert_eq!(used.accept(&once, late), Err(Error::Expired(Expiry::Challenge)));
    assert_eq!(issuer.accept(&once, late), Err(Error::Expired(Expiry::Challenge)));
    assert_eq!(used.audit().stale, 1);
    assert_eq!(issuer.audit().stale, 1);
    // At its expiry it is still accepted.
    used.accept(&once, T0 + TTL).unwrap();
    // A challenge expiring beyond the ttl (another issuer's) is refused as expired too.
    let far = Once { timestamp_ms: T0 + TTL + 1, ..once };
    assert_eq!(used.check_once(&far, T0), Err(Error::Expired(Expiry::Challenge)));
    // The issuer refuses a Once of another purpose, and records nothing.
    let foreign = Once { purpose: Purpose::Requests, ..once };
    assert_eq!(issuer.accept(&foreign, T0), Err(Error::Misuse));
    assert_eq!(issuer.used().len(), 0);
}

#[test]
fn a_used_challenge_snapshot_restores_only_as_used_challenges() {
    let key = Secret::new([4; 32]);
    let fresh = StatelessChallenges::<DefaultProvider>::freshness(TTL);
    let mut used = Cache::new(Purpose::Challenges, &key, fresh);
    let once = Once { purpose: Purpose::Challenges, id: [1; 12], timestamp_ms: T0 + 10 };
    used.accept(&once, T0).unwrap();
    let mut snap = [0u8; 1024];
    let n = used.snapshot(1, &mut snap).unwrap();
    let back = Cache::restore(Purpose::Challenges, &key, fresh, &snap[..n], 1).unwrap();
    assert_eq!(back.check_once(&once, T0), Err(Error::Replay));
    for other in [Purpose::Requests, Purpose::TokenProofs] {
        assert_eq!(Cache::restore(other, &key, fresh, &snap[..n], 1).unwrap_err(), Error::Authentication);
    }
}

// ---------------------------------------------------------------------------
// check_once / accept / refuse
// ---------------------------------------------------------------------------

#[test]
fn check_once_and_accept_refuse_a_foreign_purpose_and_a_stale_timestamp() {
    let mut proofs = cache(Purpose::TokenProofs, F);
    let once = Once { purpose: Purpose::Requests, id: [2; 12], timestamp_ms: T0 };
    assert_eq!(proofs.check_once(&once, T0), Err(Error::Misuse));
    assert_eq!(proofs.accept(&once, T0), Err(Error::Misuse));
    assert_eq!(proofs.ring().len(), 0);
    let challenge = Once { purpose: Purpose::Challenges, ..once };
    assert_eq!(proofs.accept(&challenge, T0), Err(Error::Misuse));

    let mine = Once { purpose: Purpose::TokenProofs, ..once };
    let stale = Once { timestamp_ms: T0 - F.max_age_ms - 1, ..mine };
    assert_eq!(proofs.check_once(&stale, T0), Err(Error::Stale));
    assert_eq!(proofs.accept(&stale, T0), Err(Error::Stale));
    let future = Once { timestamp_ms: T0 + F.max_future_skew_ms + 1, ..mine };
    assert_eq!(proofs.accept(&future, T0), Err(Error::FromFuture));
    assert_eq!(proofs.audit().stale, 1);
    assert_eq!(proofs.audit().from_future, 1);
    assert_eq!(proofs.ring().len(), 0);

    // A rejection decided elsewhere is counted here and handed back.
    assert_eq!(proofs.refuse(Error::Authentication), Error::Authentication);
    assert_eq!(proofs.audit().auth_failed, 1);
    assert_eq!(proofs.audit().accepted, 0);
    proofs.accept(&mine, T0).unwrap();
    assert_eq!(proofs.audit().accepted, 1);
}

// ---------------------------------------------------------------------------
// Bound requests
// ---------------------------------------------------------------------------

#[test]
fn bound_request_with_both_parts_gives_two_onces_all_or_none() {
    let clock = ManualClock::new(T0);
    let mut w = tokens();
    let verifier: TokenVerifier = TokenVerifier::new(*w.issuer.public_key(), "api", 0);
    let mut challenges: StatelessChallenges = StatelessChallenges::generate(&mut OsRng, TTL).unwrap();
    let empty: ReplayCache = ReplayCache::generate(Purpose::TokenProofs, &mut OsRng, F).unwrap();
    let c = challenges.issue(&mut OsRng, &clock).unwrap();
    let req = b"POST /pay 10 EUR to bob";
    let bound = Prover::new(&mut w.device).bound_request(&mut OsRng, &clock, req, Some(&c), Some(&w.token)).unwrap();
    let checks = Checks { challenges: Some(&challenges), token: Some((&verifier, &empty, &w.token[..])) };

    let (v, onces) = bound.verify_unrecorded(checks, &clock, req, &w.device_key).unwrap();
    assert!(v.unwrap().key_bound());
    // The challenge's Once and the proof's Once, as the single-part paths give them.
    assert_eq!(onces.challenge, Some(challenge_once(&c)));
    assert_eq!(
        onces.challenge,
        Some(challenges.verify_bound_unrecorded(&clock, &bound.binding.unwrap(), req).unwrap())
    );
    let proof = bound.proof.unwrap().to_bytes();
    let (_, proof_once) =
        verifier.verify_bound_unrecorded(&empty, &clock, &w.token, &w.device_key, req, &proof).unwrap();
    assert_eq!(onces.proof, Some(proof_once));
    assert_eq!(onces.iter().copied().collect::<Vec<_>>(), [challenge_once(&c), proof_once]);
    // Nothing recorded: it verifies again, to the same Onces.
    assert_eq!(bound.verify_unrecorded(checks, &clock, req, &w.device_key).unwrap().1, onces);
    assert_eq!(challenges.used().len(), 0);
    assert_eq!(empty.ring().len(), 0);

    // Two stores accept them once each.
    let mut used = cache(Purpose::Challenges, StatelessChallenges::<DefaultProvider>::freshness(TTL));
    let mut proofs = cache(Purpose::TokenProofs, F);
    used.accept(onces.challenge.as_ref().unwrap(), T0).unwrap();
    proofs.accept(onces.proof.as_ref().unwrap(), T0).unwrap();
    assert_eq!(used.accept(onces.challenge.as_ref().unwrap(), T0), Err(Error::Replay));
    assert_eq!(proofs.accept(onces.proof.as_ref().unwrap(), T0), Err(Error::Replay));

    // What `verify` records is these Onces: with the proof recorded, it refuses
    // the request and leaves the challenge unused.
    let mut proofs: ReplayCache = ReplayCache::generate(Purpose::TokenProofs, &mut OsRng, F).unwrap();
    proofs.accept(onces.proof.as_ref().unwrap(), T0).unwrap();
    let need = Requirements { challenges: Some(&mut challenges), token: Some((&verifier, &mut proofs, &w.token[..])) };
    assert_eq!(bound.verify(need, &clock, req, &w.device_key), Err(Error::Replay));
    assert_eq!(challenges.used().len(), 0);
    assert_eq!(proofs.audit().replay_rejected, 1);
    // With neither recorded, `verify` accepts and records both.
    let mut proofs: ReplayCache = ReplayCache::generate(Purpose::TokenProofs, &mut OsRng, F).unwrap();
    let need = Requirements { challenges: Some(&mut challenges), token: Some((&verifier, &mut proofs, &w.token[..])) };
    assert!(bound.verify(need, &clock, req, &w.device_key).unwrap().is_some());
    assert_eq!(challenges.accept(onces.challenge.as_ref().unwrap(), T0), Err(Error::Replay));
    assert_eq!(proofs.accept(onces.proof.as_ref().unwrap(), T0), Err(Error::Replay));
}

#[test]
fn bound_request_a_failing_part_gives_no_onces() {
    let clock = ManualClock::new(T0);
    let mut w = tokens();
    let verifier: TokenVerifier = TokenVerifier::new(*w.issuer.public_key(), "api", 0);
    let challenges: StatelessChallenges = StatelessChallenges::generate(&mut OsRng, TTL).unwrap();
    let empty: ReplayCache = ReplayCache::generate(Purpose::TokenProofs, &mut OsRng, F).unwrap();
    let c = challenges.issue(&mut OsRng, &clock).unwrap();
    let req = b"POST /pay 10 EUR to bob";
    let bound = Prover::new(&mut w.device).bound_request(&mut OsRng, &clock, req, Some(&c), Some(&w.token)).unwrap();
    let checks = Checks { challenges: Some(&challenges), token: Some((&verifier, &empty, &w.token[..])) };
    let thief = SoftwareSigner::<DefaultProvider>::generate(&mut OsRng).unwrap().public_key().unwrap();

    // A token failure: an error, so no Onces.
    let r: Result<(_, Onces), Error> = bound.verify_unrecorded(checks, &clock, req, &thief);
    assert_eq!(r, Err(Error::KeyMismatch));
    let mut tampered = bound;
    if let Some(p) = tampered.proof.as_mut() {
        p.signature[0] ^= 1;
    }
    assert_eq!(tampered.verify_unrecorded(checks, &clock, req, &w.device_key), Err(Error::Authentication));
    // A challenge failure.
    assert_eq!(bound.verify_unrecorded(checks, &clock, b"POST /pay 99", &w.device_key), Err(Error::RequestMismatch));
    // A part that is not required, or missing.
    let only_challenge = Checks::challenge(&challenges);
    assert_eq!(bound.verify_unrecorded(only_challenge, &clock, req, &w.device_key), Err(Error::Malformed));
    let no_proof = BoundRequest { proof: None, ..bound };
    assert_eq!(no_proof.verify_unrecorded(checks, &clock, req, &w.device_key), Err(Error::Malformed));
    let only_token = Checks::token(&verifier, &empty, &w.token);
    assert_eq!(bound.verify_unrecorded(only_token, &clock, req, &w.device_key), Err(Error::Malformed));
    // Nothing was recorded or counted anywhere; the genuine request still verifies.
    assert_eq!(challenges.audit(), &Audit::new());
    assert_eq!(empty.audit(), &Audit::new());
    let (_, onces) = bound.verify_unrecorded(checks, &clock, req, &w.device_key).unwrap();
    assert_eq!(onces.iter().count(), 2);
}

#[test]
fn enrollment_unrecorded_names_its_challenge_once() {
    use oncewire::device::{DeviceId, EnrollmentIssuer};
    let clock = ManualClock::new(T0);
    let server = KeyPair::<DefaultProvider>::generate(&mut OsRng).unwrap();
    let mut issuer: EnrollmentIssuer<DefaultProvider, 16> = EnrollmentIssuer::generate(&mut OsRng, TTL).unwrap();
    let challenge = issuer.issue(&mut OsRng, &clock).unwrap();
    let device = DeviceId::new(b"lock-1").unwrap();
    let signer: SoftwareSigner = SoftwareSigner::generate(&mut OsRng).unwrap();
    let request = Prover::new(signer).answer_enrollment(server.public_key(), challenge.as_bytes(), device).unwrap();

    // Unrecorded: the same answer verifies twice, naming the same Once.
    let (d1, once) = issuer.verify_unrecorded(server.public_key(), &challenge, &request, &clock).unwrap();
    let (d2, again) = issuer.verify_unrecorded(server.public_key(), &challenge, &request, &clock).unwrap();
    assert_eq!((d1, once), (d2, again));
    assert_eq!(once.purpose, Purpose::Challenges);
    assert_eq!(once.timestamp_ms, challenge.expires_at_ms());

    // A shared set accepts it once.
    let mut used = ReplayCache::<DefaultProvider, 16>::generate(
        Purpose::Challenges,
        &mut OsRng,
        <StatelessChallenges>::freshness(TTL),
    )
    .unwrap();
    used.accept(&once, T0).unwrap();
    assert_eq!(used.accept(&once, T0), Err(Error::Replay));

    // It is what the recording twin records: after it, the twin says Replay.
    issuer.verify(server.public_key(), &challenge, &request, &clock).unwrap();
    assert_eq!(issuer.verify(server.public_key(), &challenge, &request, &clock), Err(Error::Replay));

    // Forged (another key claims the answer): Authentication, no Once;
    // past the expiry: Expired(Enrollment).
    let fresh: EnrollmentIssuer<DefaultProvider, 16> = EnrollmentIssuer::generate(&mut OsRng, TTL).unwrap();
    let c2 = fresh.issue(&mut OsRng, &clock).unwrap();
    let s2: SoftwareSigner = SoftwareSigner::generate(&mut OsRng).unwrap();
    let r2 = Prover::new(s2).answer_enrollment(server.public_key(), c2.as_bytes(), device).unwrap();
    let mut bad = r2;
    bad.public_key = request.public_key;
    assert_eq!(fresh.verify_unrecorded(server.public_key(), &c2, &bad, &clock).map(|_| ()), Err(Error::Authentication));
    clock.advance(TTL + 1);
    assert_eq!(
        fresh.verify_unrecorded(server.public_key(), &c2, &r2, &clock).map(|_| ()),
        Err(Error::Expired(Expiry::Enrollment))
    );
}
