//! "Every request is accepted once", everywhere: one regression test per
//! finding of the security review (f01–f19), through the public API. Each
//! test asserts the exact typed [`Error`], and where a rejection must not
//! change anything, that the buffers and the replay state are unchanged.
//! Two property tests check the one-shot request cache and the token-proof
//! cache against a reference model: the set of everything ever accepted.
#![allow(
    missing_docs,
    clippy::arithmetic_side_effects,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use common::{Harness, T0, bind, open_counter, seal_counter};
use oncewire::cache::{Purpose, ReplayCache};
use oncewire::challenge::{Challenge, ChallengeTable, StatelessChallenges};
use oncewire::clock::ManualClock;
use oncewire::device::{
    Admission, DeviceId, DeviceSignature, DeviceSigner, EnrollmentChallenge, ReEnrollment, SignatureVerifier,
    SoftwareSigner,
};
use oncewire::handshake::{ServerKey, clock_offset};
use oncewire::hpke::{Aes256Gcm, ENC_LEN, KeyPair};
use oncewire::prover::Prover;
use oncewire::provider::{CryptoProvider, PublicKey};
use oncewire::record::LONG_KEY_MAX_PAYLOAD;
use oncewire::record::PersistentSender;
use oncewire::replay::SnapshotKey;
use oncewire::replay::{CounterWindow, Freshness, NonceRing, TimeFloor, TimeMark};
use oncewire::request::{PAYLOAD_OFFSET, REQUEST_OVERHEAD, RequestReceiver, RequestSender};
use oncewire::rng::OsRng;
use oncewire::session::{Limits, Received, RequestId, Session};
use oncewire::store::VolatileStore;
use oncewire::stream::{CHUNK_HEADER_LEN, STREAM_HEADER_LEN, StreamOpener, StreamSealer, chunk_buffer_len};
use oncewire::token::{Claims, PROOF_LEN, TokenIssuer, TokenVerifier};
use oncewire::wire::buffer_len;
use oncewire::{
    Clock, CounterReceiver, CounterSender, DefaultProvider, Error, Expiry, OneShotReceiver, OneShotSender, Secret,
};
use proptest::prelude::*;
use std::collections::{HashSet, VecDeque};
use std::sync::OnceLock;

const F: Freshness = Freshness::DEFAULT;
const KID: [u8; 8] = *b"key-0001";
const SID: [u8; 8] = *b"sess-001";
const HK: [u8; 16] = [0x5a; 16];

/// The P-256 group order n, big-endian (`ORDER` in `src/device.rs`).
const ORDER: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xbc, 0xe6, 0xfa,
    0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
];

// ---------------------------------------------------------------------------
// Sessions
// ---------------------------------------------------------------------------

fn seal_record(c: &mut Session, clock: &ManualClock, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; buffer_len(payload.len())];
    let n = c.seal(clock, payload, &mut f).unwrap();
    f.truncate(n);
    f
}

/// Opens a copy of `frame` on `sv`; on error, checks that the frame and
/// the receiving window are unchanged. Returns the payload.
fn open_record(sv: &mut Session, clock: &ManualClock, frame: &[u8]) -> Result<Vec<u8>, Error> {
    let mut buf = frame.to_vec();
    let window = sv.window().clone();
    let generations = sv.generations();
    match sv.open_in_place(clock, &mut buf) {
        Ok(Received::Record(o, _)) => Ok(o.payload.to_vec()),
        Ok(Received::KeyUpdated { .. }) => Ok(Vec::new()),
        Err(e) => {
            assert_eq!(buf, frame, "a rejected frame was changed ({e:?})");
            assert_eq!(sv.window(), &window, "a rejected frame moved the window ({e:?})");
            assert_eq!(sv.generations(), generations);
            Err(e)
        }
    }
}

// ---------------------------------------------------------------------------
// One-shot requests (f01)
// ---------------------------------------------------------------------------

const APP: &[u8] = b"app";
const AAD: &[u8] = b"aad";

type Rx<const N: usize> = RequestReceiver<Aes256Gcm, DefaultProvider, N>;

fn state_key() -> Secret<32> {
    Secret::new([7; 32])
}

fn seal_request(clock: &ManualClock, server: &PublicKey, sender: Option<&KeyPair>, msg: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; REQUEST_OVERHEAD + msg.len()];
    buf[PAYLOAD_OFFSET..][..msg.len()].copy_from_slice(msg);
    let sealer: RequestSender = RequestSender::new(*server);
    let n = sealer.seal(&mut OsRng, clock, sender, APP, AAD, &mut buf, msg.len()).unwrap();
    assert_eq!(n, msg.len() + REQUEST_OVERHEAD);
    assert_eq!(n, buf.len());
    buf
}

/// Opens a copy of `req`; on error, checks that the buffer and the cache are unchanged.
fn open_request<const N: usize>(
    rx: &mut Rx<N>,
    server: &KeyPair,
    pk_s: Option<&PublicKey>,
    clock: &ManualClock,
    req: &[u8],
) -> Result<Vec<u8>, Error> {
    let mut buf = req.to_vec();
    let before = rx.cache().ring().clone();
    let r = rx.open(server, pk_s, clock, APP, AAD, &mut buf).map(|o| {
        assert_eq!(o.timestamp_ms, u64::from_be_bytes(req[ENC_LEN..PAYLOAD_OFFSET].try_into().unwrap()));
        o.payload.to_vec()
    });
    if let Err(e) = r {
        assert_eq!(buf, req, "a rejected request was changed ({e:?})");
        assert_eq!(rx.cache().ring(), &before, "a rejected request changed the cache ({e:?})");
    }
    r
}

#[test]
fn f01_one_shot_request_replay_is_rejected() {
    let clock = ManualClock::new(T0);
    let server = KeyPair::<DefaultProvider>::generate(&mut OsRng).unwrap();
    let mut rx = Rx::<8>::new(&state_key(), F);

    // Accepted once; the byte-identical copy is a replay.
    let req = seal_request(&clock, server.public_key(), None, b"POST /unlock");
    assert_eq!(open_request(&mut rx, &server, None, &clock, &req).unwrap(), b"POST /unlock");
    assert_eq!(open_request(&mut rx, &server, None, &clock, &req), Err(Error::Replay));
    assert_eq!(open_request(&mut rx, &server, None, &clock, &req), Err(Error::Replay));

    // Stale: one millisecond past max_age; at max_age it is still accepted.
    let stale = seal_request(&ManualClock::new(T0 - F.max_age_ms - 1), server.public_key(), None, b"old");
    assert_eq!(open_request(&mut rx, &server, None, &clock, &stale), Err(Error::Stale));
    let edge = seal_request(&ManualClock::new(T0 - F.max_age_ms), server.public_key(), None, b"edge");
    assert_eq!(open_request(&mut rx, &server, None, &clock, &edge).unwrap(), b"edge");
    // The same request, captured and delivered once the clock moved past max_age.
    let later = seal_request(&clock, server.public_key(), None, b"later");
    let late_clock = ManualClock::new(T0 + F.max_age_ms + 1);
    assert_eq!(open_request(&mut rx, &server, None, &late_clock, &later), Err(Error::Stale));

    // From the future: one millisecond beyond the skew; at the skew it is accepted.
    let future = seal_request(&ManualClock::new(T0 + F.max_future_skew_ms + 1), server.public_key(), None, b"f");
    assert_eq!(open_request(&mut rx, &server, None, &clock, &future), Err(Error::FromFuture));
    let near = seal_request(&ManualClock::new(T0 + F.max_future_skew_ms), server.public_key(), None, b"n");
    assert_eq!(open_request(&mut rx, &server, None, &clock, &near).unwrap(), b"n");

    // Forgeries: nothing is consumed and the buffer is unchanged (checked in open_request).
    let genuine = seal_request(&clock, server.public_key(), None, b"POST /pay 10");
    let held = rx.cache().ring().len();
    let flip = |i: usize, bit: u8| {
        let mut f = genuine.clone();
        f[i] ^= bit;
        f
    };
    let ct = PAYLOAD_OFFSET + 3;
    let tag = genuine.len() - 1;
    let ts = PAYLOAD_OFFSET - 1; // lowest timestamp byte: still fresh, same replay id
    for (what, forged) in [("ciphertext", flip(ct, 0x01)), ("tag", flip(tag, 0x80)), ("timestamp", flip(ts, 0x01))] {
        assert_eq!(open_request(&mut rx, &server, None, &clock, &forged), Err(Error::Authentication), "{what}");
    }
    for (what, forged) in [("enc prefix", flip(0, 0x01)), ("enc x", flip(5, 0x01)), ("enc y", flip(ENC_LEN - 1, 0x02))]
    {
        let e = open_request(&mut rx, &server, None, &clock, &forged).unwrap_err();
        assert!(matches!(e, Error::Authentication | Error::InvalidKey), "{what}: {e:?}");
    }
    // Another app context: the info and aad are bound.
    let mut buf = genuine.clone();
    assert_eq!(rx.open(&server, None, &clock, b"other", AAD, &mut buf).unwrap_err(), Error::Authentication);
    assert_eq!(rx.open(&server, None, &clock, APP, b"other", &mut buf).unwrap_err(), Error::Authentication);
    assert_eq!(buf, genuine);
    // Another recipient key.
    let other = KeyPair::<DefaultProvider>::generate(&mut OsRng).unwrap();
    assert_eq!(open_request(&mut rx, &other, None, &clock, &genuine), Err(Error::Authentication));
    // Truncated.
    assert_eq!(open_request(&mut rx, &server, None, &clock, &genuine[..REQUEST_OVERHEAD - 1]), Err(Error::Truncated));
    assert_eq!(rx.cache().ring().len(), held, "a rejected request was recorded");
    // The genuine request still opens, once.
    assert_eq!(open_request(&mut rx, &server, None, &clock, &genuine).unwrap(), b"POST /pay 10");
    assert_eq!(open_request(&mut rx, &server, None, &clock, &genuine), Err(Error::Replay));
    // A forgery of an accepted request is refused as a replay before any cryptography.
    assert_eq!(open_request(&mut rx, &server, None, &clock, &flip(ct, 0x01)), Err(Error::Replay));
}

#[test]
fn f01_one_shot_request_flood_never_reopens_an_old_request() {
    let clock = ManualClock::new(T0);
    let server = KeyPair::<DefaultProvider>::generate(&mut OsRng).unwrap();
    let mut rx = Rx::<8>::new(&state_key(), F);
    let old = seal_request(&clock, server.public_key(), None, b"old");
    open_request(&mut rx, &server, None, &clock, &old).unwrap();
    // A flood three times the capacity, all fresh.
    let mut flood = Vec::new();
    for i in 0..24u8 {
        clock.advance(1);
        let r = seal_request(&clock, server.public_key(), None, &[i; 4]);
        open_request(&mut rx, &server, None, &clock, &r).unwrap();
        flood.push(r);
    }
    assert_eq!(rx.cache().ring().len(), 8);
    let floor = rx.cache().ring().floor().get().unwrap();
    assert!(floor >= T0, "the floor {floor} did not rise above the evicted request");
    assert!(rx.cache().audit().ring_pressure > 0);
    // The old request, evicted long ago, is below the floor.
    assert_eq!(open_request(&mut rx, &server, None, &clock, &old), Err(Error::Stale));
    // Every flood request is refused again: the evicted ones as stale, the held ones as replays.
    for (i, r) in flood.iter().enumerate() {
        let want = if i < flood.len() - 8 { Error::Stale } else { Error::Replay };
        assert_eq!(open_request(&mut rx, &server, None, &clock, r), Err(want), "flood request {i}");
    }
    // A fresh request above the floor is still accepted.
    clock.advance(1);
    let fresh = seal_request(&clock, server.public_key(), None, b"fresh");
    open_request(&mut rx, &server, None, &clock, &fresh).unwrap();
}

#[test]
fn f01_one_shot_request_replay_is_refused_after_snapshot_and_restart() {
    let clock = ManualClock::new(T0);
    let server = KeyPair::<DefaultProvider>::generate(&mut OsRng).unwrap();
    let mut rx = Rx::<8>::new(&state_key(), F);
    let req = seal_request(&clock, server.public_key(), None, b"POST /unlock");
    open_request(&mut rx, &server, None, &clock, &req).unwrap();
    let mut snap = vec![0u8; 4096];
    let n = rx.snapshot(3, &mut snap).unwrap();
    let snap = &snap[..n];
    drop(rx);

    // Restored with the same state key and epoch: still a replay.
    let mut back = Rx::<8>::restore(&state_key(), F, snap, 3).unwrap();
    assert_eq!(open_request(&mut back, &server, None, &clock, &req), Err(Error::Replay));
    // Wrong epoch, another state key, another purpose: refused.
    assert_eq!(Rx::<8>::restore(&state_key(), F, snap, 4).unwrap_err(), Error::Rollback);
    assert_eq!(Rx::<8>::restore(&Secret::new([8; 32]), F, snap, 3).unwrap_err(), Error::Authentication);
    assert_eq!(
        ReplayCache::<DefaultProvider, 8>::restore(Purpose::TokenProofs, &state_key(), F, snap, 3).unwrap_err(),
        Error::Authentication
    );
    assert_eq!(Rx::<4>::restore(&state_key(), F, snap, 3).unwrap_err(), Error::Authentication);

    // Restarted without a snapshot: everything from before the restart is refused.
    let floor = TimeFloor::after_restart(clock.now_ms(), &F);
    let mut restarted = Rx::<8>::after_restart(&state_key(), F, floor);
    assert_eq!(open_request(&mut restarted, &server, None, &clock, &req), Err(Error::Stale));
    // Even one sealed just before the restart with a clock at the skew limit.
    let edge = seal_request(&ManualClock::new(T0 + F.max_future_skew_ms), server.public_key(), None, b"e");
    assert_eq!(open_request(&mut restarted, &server, None, &clock, &edge), Err(Error::Stale));
    // A request made after the restart, stamped above the floor, is accepted.
    clock.advance(F.max_future_skew_ms + 1);
    let fresh = seal_request(&clock, server.public_key(), None, b"fresh");
    open_request(&mut restarted, &server, None, &clock, &fresh).unwrap();
}

#[test]
fn f01_one_shot_request_auth_mode_is_accepted_once_and_bound_to_the_sender() {
    let clock = ManualClock::new(T0);
    let server = KeyPair::<DefaultProvider>::generate(&mut OsRng).unwrap();
    let sender = KeyPair::<DefaultProvider>::generate(&mut OsRng).unwrap();
    let other = KeyPair::<DefaultProvider>::generate(&mut OsRng).unwrap();
    let mut rx = Rx::<8>::new(&state_key(), F);
    let req = seal_request(&clock, server.public_key(), Some(&sender), b"auth");
    // Opened as base mode, or as sent by another key: not authentic, nothing consumed.
    assert_eq!(open_request(&mut rx, &server, None, &clock, &req), Err(Error::Authentication));
    assert_eq!(open_request(&mut rx, &server, Some(other.public_key()), &clock, &req), Err(Error::Authentication));
    assert!(rx.cache().ring().is_empty());
    let pk_s = Some(sender.public_key());
    assert_eq!(open_request(&mut rx, &server, pk_s, &clock, &req).unwrap(), b"auth");
    assert_eq!(open_request(&mut rx, &server, pk_s, &clock, &req), Err(Error::Replay));
    // A base-mode request opened as auth mode.
    let base = seal_request(&clock, server.public_key(), None, b"base");
    assert_eq!(open_request(&mut rx, &server, pk_s, &clock, &base), Err(Error::Authentication));
}

// ---------------------------------------------------------------------------
// The reference model shared by both property tests
// ---------------------------------------------------------------------------

#[derive(Clone, Debug)]
enum Op {
    /// Submit a pool item never accepted in this case (by index among those;
    /// with `true`, among those inside the freshness window and above the floor).
    Fresh(usize, bool),
    /// Byte-for-byte replay of an item accepted earlier in this case.
    Replay(usize),
    /// A forgery of any pool item (its replay id unchanged).
    Forge(usize),
    Advance(u16),
    Back(u16),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        10 => (any::<usize>(), proptest::bool::weighted(0.75)).prop_map(|(i, w)| Op::Fresh(i, w)),
        4 => any::<usize>().prop_map(Op::Replay),
        1 => any::<usize>().prop_map(Op::Forge),
        2 => (0u16..500).prop_map(Op::Advance),
        1 => (0u16..250).prop_map(Op::Back),
    ]
}

/// Freshness of the property tests: tight, so clock moves matter.
const PF: Freshness = Freshness { max_age_ms: 2_000, max_future_skew_ms: 200 };

/// Runs `ops` against `submit(item, forged, now) -> (result, ring after)` and
/// a model holding every item ever accepted. `ts[i]` is item `i`'s
/// authenticated timestamp; `ring` is the receiver's initial ring.
fn check_against_model<const N: usize>(
    ops: &[Op],
    ts: &[u64],
    start: u64,
    min_now: u64,
    mut ring: NonceRing<N>,
    mut submit: impl FnMut(usize, bool, u64) -> (Result<(), Error>, NonceRing<N>),
) -> usize {
    let mut now = start;
    let mut accepted: Vec<usize> = Vec::new();
    let mut accepted_set: HashSet<usize> = HashSet::new();
    let mut fifo: VecDeque<u64> = VecDeque::new();
    let mut floor: Option<u64> = None;
    // What the receiver must answer for an item with timestamp t, held or not.
    let expect = |t: u64, now: u64, floor: Option<u64>, held: bool, forged: bool| -> Result<(), Error> {
        if floor.is_some_and(|fl| t <= fl) {
            return Err(Error::Stale);
        }
        PF.check(t, now)?;
        if held {
            return Err(Error::Replay);
        }
        if forged { Err(Error::Authentication) } else { Ok(()) }
    };
    for op in ops {
        match op {
            Op::Advance(d) => now += u64::from(*d),
            Op::Back(d) => now = now.saturating_sub(u64::from(*d)).max(min_now),
            Op::Fresh(pick, in_window) => {
                let candidates: Vec<usize> = (0..ts.len())
                    .filter(|i| !accepted_set.contains(i))
                    .filter(|i| !in_window || (PF.check(ts[*i], now).is_ok() && floor.is_none_or(|fl| ts[*i] > fl)))
                    .collect();
                if candidates.is_empty() {
                    continue;
                }
                let i = candidates[pick % candidates.len()];
                let want = expect(ts[i], now, floor, false, false);
                let (got, after) = submit(i, false, now);
                assert_eq!(got, want, "fresh unique item {i} (ts {}, now {now}, floor {floor:?})", ts[i]);
                if got.is_ok() {
                    accepted.push(i);
                    accepted_set.insert(i);
                    if fifo.len() == N {
                        let old = fifo.pop_front().unwrap();
                        floor = Some(floor.map_or(old, |fl| fl.max(old)));
                    }
                    fifo.push_back(ts[i]);
                    assert_eq!(after.floor().get(), floor, "the floor differs from the documented policy");
                    assert_eq!(after.len(), fifo.len());
                } else {
                    assert_eq!(after, ring, "a rejected item changed the ring");
                }
                ring = after;
            }
            Op::Replay(pick) => {
                if accepted.is_empty() {
                    continue;
                }
                let i = accepted[pick % accepted.len()];
                let want = expect(ts[i], now, floor, true, false);
                let (got, after) = submit(i, false, now);
                assert!(got.is_err(), "the replay of accepted item {i} was accepted");
                assert_eq!(got, want, "replay of item {i} (ts {}, now {now}, floor {floor:?})", ts[i]);
                assert_eq!(after, ring, "a replay changed the ring");
            }
            Op::Forge(pick) => {
                let i = pick % ts.len();
                let want = expect(ts[i], now, floor, accepted_set.contains(&i), true);
                let (got, after) = submit(i, true, now);
                assert_eq!(got, want, "forgery of item {i} (ts {}, now {now}, floor {floor:?})", ts[i]);
                assert_eq!(after, ring, "a forgery changed the ring");
            }
        }
    }
    // At the end, nothing ever accepted is accepted again, whatever the clock.
    for t in [now, now + 10_000, min_now] {
        for &i in &accepted {
            assert!(submit(i, false, t).0.is_err(), "item {i} accepted twice");
        }
    }
    accepted.len()
}

const POOL: usize = 64;
const BASE: u64 = T0 + 1_000_000;

/// Item `i`'s timestamp: `len` steps of `step` ms, in a scrambled order.
fn pool_ts(i: usize, len: usize, step: u64) -> u64 {
    BASE + ((i * 7) % len) as u64 * step
}

struct RequestPool {
    server_secret: [u8; 32],
    requests: Vec<Vec<u8>>,
    ts: Vec<u64>,
}

fn request_pool() -> &'static RequestPool {
    static POOL_CELL: OnceLock<RequestPool> = OnceLock::new();
    POOL_CELL.get_or_init(|| {
        let server_secret = [0x42; 32];
        let server = KeyPair::<DefaultProvider>::from_bytes(&Secret::new(server_secret)).unwrap();
        let ts: Vec<u64> = (0..POOL).map(|i| pool_ts(i, POOL, 50)).collect();
        let requests = (0..POOL)
            .map(|i| seal_request(&ManualClock::new(ts[i]), server.public_key(), None, &[i as u8; 8]))
            .collect();
        RequestPool { server_secret, requests, ts }
    })
}

fn requests_model<const N: usize>(ops: &[Op]) {
    let pool = request_pool();
    let server = KeyPair::<DefaultProvider>::from_bytes(&Secret::new(pool.server_secret)).unwrap();
    let mut rx = Rx::<N>::new(&state_key(), PF);
    let ring = rx.cache().ring().clone();
    check_against_model::<N>(ops, &pool.ts, BASE + 1_000, BASE, ring, |i, forged, now| {
        let mut buf = pool.requests[i].clone();
        if forged {
            buf[PAYLOAD_OFFSET] ^= 0x01;
        }
        let copy = buf.clone();
        let r = rx.open(&server, None, &ManualClock::new(now), APP, AAD, &mut buf).map(|o| {
            assert_eq!(o.payload, &[i as u8; 8]);
            assert_eq!(o.timestamp_ms, pool.ts[i]);
        });
        if r.is_err() {
            assert_eq!(buf, copy, "a rejected request was changed");
        }
        (r, rx.cache().ring().clone())
    });
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn one_shot_requests_against_the_set_of_everything_accepted(
        ops in proptest::collection::vec(op(), 20..=40),
        small in proptest::bool::weighted(0.6),
    ) {
        if small { requests_model::<4>(&ops) } else { requests_model::<8>(&ops) }
    }
}

// ---------------------------------------------------------------------------
// Token proofs (f02)
// ---------------------------------------------------------------------------

const NOW: u64 = T0;
const REQ: &[u8] = b"POST /unlock";

struct TokenWorld {
    device: SoftwareSigner,
    device_pk: PublicKey,
    issuer_pk: PublicKey,
    token: Vec<u8>,
}

fn token_world() -> TokenWorld {
    let mut rng = OsRng;
    let issuer = TokenIssuer::<DefaultProvider>::new(DefaultProvider::signing_key_generate(&mut rng).unwrap());
    let device = SoftwareSigner::<DefaultProvider>::generate(&mut rng).unwrap();
    let device_pk = device.public_key().unwrap();
    let claims = Claims {
        iss: "https://auth.example",
        sub: b"lock-0042",
        aud: "api.example",
        iat: NOW,
        nbf: NOW,
        exp: NOW + 3_600_000,
        jti: &[7; 16],
        cnf: issuer.cnf(&device_pk),
    };
    let mut buf = [0u8; 512];
    let n = issuer.issue(&claims, &mut buf).unwrap();
    TokenWorld { device, device_pk, issuer_pk: *issuer.public_key(), token: buf[..n].to_vec() }
}

fn at(t: u64) -> ManualClock {
    ManualClock::new(t)
}

fn proof_cache<const N: usize>(f: Freshness) -> ReplayCache<DefaultProvider, N> {
    ReplayCache::new(Purpose::TokenProofs, &Secret::new([3; 32]), f)
}

impl TokenWorld {
    fn verifier(&self) -> TokenVerifier<'static> {
        TokenVerifier::<DefaultProvider>::new(self.issuer_pk, "api.example", 5_000)
    }

    fn proof(&mut self, iat: u64, request: &[u8]) -> [u8; PROOF_LEN] {
        Prover::new(&mut self.device).prove(&mut OsRng, &at(iat), &self.token, request).unwrap().to_bytes()
    }

    /// verify_bound; on error, checks that the cache's ring is unchanged.
    fn verify<const N: usize>(
        &self,
        cache: &mut ReplayCache<DefaultProvider, N>,
        now: u64,
        key: &PublicKey,
        request: &[u8],
        proof: &[u8],
    ) -> Result<(), Error> {
        let before = cache.ring().clone();
        let r = self.verifier().verify_bound(cache, &at(now), &self.token, key, request, proof).map(|v| {
            assert!(v.key_bound());
        });
        if let Err(e) = r {
            assert_eq!(cache.ring(), &before, "a rejected proof changed the cache ({e:?})");
        }
        r
    }
}

#[test]
fn f02_token_proof_replay_is_rejected() {
    let mut w = token_world();
    let pk = w.device_pk;
    let mut cache = proof_cache::<8>(F);
    // A captured (token, proof, request) is accepted once.
    let proof = w.proof(NOW, REQ);
    w.verify(&mut cache, NOW + 1, &pk, REQ, &proof).unwrap();
    assert_eq!(w.verify(&mut cache, NOW + 1, &pk, REQ, &proof), Err(Error::Replay));
    assert_eq!(w.verify(&mut cache, NOW + 2_000, &pk, REQ, &proof), Err(Error::Replay));
    // A stale iat, and the same proof delivered after max_age.
    let stale = w.proof(NOW - F.max_age_ms - 1, REQ);
    assert_eq!(w.verify(&mut cache, NOW, &pk, REQ, &stale), Err(Error::Stale));
    let fresh = w.proof(NOW, REQ);
    assert_eq!(w.verify(&mut cache, NOW + F.max_age_ms + 1, &pk, REQ, &fresh), Err(Error::Stale));
    // An iat from the future.
    let future = w.proof(NOW + F.max_future_skew_ms + 1, REQ);
    assert_eq!(w.verify(&mut cache, NOW, &pk, REQ, &future), Err(Error::FromFuture));
    // At the edges of the window it is accepted.
    let edge = w.proof(NOW - F.max_age_ms, REQ);
    w.verify(&mut cache, NOW, &pk, REQ, &edge).unwrap();
    let near = w.proof(NOW + F.max_future_skew_ms, REQ);
    w.verify(&mut cache, NOW, &pk, REQ, &near).unwrap();
}

#[test]
fn f02_rejected_token_proofs_consume_nothing() {
    let mut w = token_world();
    let pk = w.device_pk;
    let mut cache = proof_cache::<8>(F);
    let proof = w.proof(NOW, REQ);
    // A thief's key and proof: the token names another key.
    let mut thief = SoftwareSigner::<DefaultProvider>::generate(&mut OsRng).unwrap();
    let thief_pk = thief.public_key().unwrap();
    let thief_proof = Prover::new(&mut thief).prove(&mut OsRng, &at(NOW), &w.token, REQ).unwrap().to_bytes();
    assert_eq!(w.verify(&mut cache, NOW, &thief_pk, REQ, &thief_proof), Err(Error::KeyMismatch));
    assert_eq!(w.verify(&mut cache, NOW, &thief_pk, REQ, &proof), Err(Error::KeyMismatch));
    // The genuine key claimed with the thief's proof.
    assert_eq!(w.verify(&mut cache, NOW, &pk, REQ, &thief_proof), Err(Error::Authentication));
    // The genuine proof with a broken signature: same replay id, not consumed.
    let mut broken = proof;
    broken[8 + 16 + 5] ^= 0x01;
    assert_eq!(w.verify(&mut cache, NOW, &pk, REQ, &broken), Err(Error::Authentication));
    // The genuine proof for another request.
    assert_eq!(w.verify(&mut cache, NOW, &pk, b"POST /unlock-all", &proof), Err(Error::Authentication));
    assert!(cache.ring().is_empty(), "a rejected proof was recorded");
    // None of that consumed the genuine proof.
    w.verify(&mut cache, NOW, &pk, REQ, &proof).unwrap();
    assert_eq!(w.verify(&mut cache, NOW, &pk, REQ, &proof), Err(Error::Replay));
}

#[test]
fn f02_token_proof_flood_never_reopens_an_old_proof() {
    let mut w = token_world();
    let pk = w.device_pk;
    let mut cache = proof_cache::<8>(F);
    let old = w.proof(NOW, REQ);
    w.verify(&mut cache, NOW, &pk, REQ, &old).unwrap();
    let mut flood = Vec::new();
    for i in 1..=20u64 {
        let p = w.proof(NOW + i, REQ);
        w.verify(&mut cache, NOW + i, &pk, REQ, &p).unwrap();
        flood.push(p);
    }
    assert!(cache.ring().floor().get().unwrap() >= NOW);
    assert!(cache.audit().ring_pressure > 0);
    assert_eq!(w.verify(&mut cache, NOW + 20, &pk, REQ, &old), Err(Error::Stale));
    for (i, p) in flood.iter().enumerate() {
        let want = if i < flood.len() - 8 { Error::Stale } else { Error::Replay };
        assert_eq!(w.verify(&mut cache, NOW + 20, &pk, REQ, p), Err(want), "flood proof {i}");
    }
}

struct ProofPool {
    token: Vec<u8>,
    issuer_pk: PublicKey,
    device_pk: PublicKey,
    proofs: Vec<[u8; PROOF_LEN]>,
    ts: Vec<u64>,
}

const PROOF_POOL: usize = 40;

fn proof_pool() -> &'static ProofPool {
    static CELL: OnceLock<ProofPool> = OnceLock::new();
    CELL.get_or_init(|| {
        let mut w = token_world();
        let ts: Vec<u64> = (0..PROOF_POOL).map(|i| pool_ts(i, PROOF_POOL, 75)).collect();
        let proofs = ts.iter().map(|t| w.proof(*t, REQ)).collect();
        ProofPool { token: w.token, issuer_pk: w.issuer_pk, device_pk: w.device_pk, proofs, ts }
    })
}

fn proofs_model<const N: usize>(ops: &[Op]) {
    let pool = proof_pool();
    let v = TokenVerifier::<DefaultProvider>::new(pool.issuer_pk, "api.example", 5_000);
    let mut cache = proof_cache::<N>(PF);
    let ring = cache.ring().clone();
    check_against_model::<N>(ops, &pool.ts, BASE + 1_000, BASE, ring, |i, forged, now| {
        let mut proof = pool.proofs[i];
        if forged {
            proof[8 + 16 + 3] ^= 0x01; // a byte of r: same replay id, bad signature
        }
        let r = v.verify_bound(&mut cache, &at(now), &pool.token, &pool.device_pk, REQ, &proof).map(|_| ());
        (r, cache.ring().clone())
    });
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn token_proofs_against_the_set_of_everything_accepted(
        ops in proptest::collection::vec(op(), 15..=30),
        small in proptest::bool::weighted(0.6),
    ) {
        if small { proofs_model::<4>(&ops) } else { proofs_model::<8>(&ops) }
    }
}

// ---------------------------------------------------------------------------
// f03: response binding across a key update
// ---------------------------------------------------------------------------

#[test]
fn f03_a_withheld_response_does_not_answer_a_request_of_the_next_generation() {
    let mut s = Harness::new();
    let (mut c, mut sv) = s.handshake(Limits::DEFAULT);
    let clock = s.clock.clone();
    // Request seq 1 under generation 0 (message 3 used seq 0).
    let mut f = vec![0u8; buffer_len(8)];
    let (n, id_old) = c.seal_request(&clock, b"balance?", &mut f).unwrap();
    assert_eq!(id_old, RequestId { generation: 0, seq: 1 });
    let Received::Record(_, got) = sv.open_in_place(&clock, &mut f[..n]).unwrap() else { panic!() };
    assert_eq!(got, id_old);
    // The server's response to it is withheld by the network.
    let mut withheld = vec![0u8; buffer_len(9)];
    let wn = sv.seal_response(&clock, got, b"balance 0", &mut withheld).unwrap();
    withheld.truncate(wn);

    // Client key update, delivered.
    let mut ku = vec![0u8; buffer_len(0)];
    let kn = c.update_keys(&clock, &mut ku).unwrap();
    assert!(matches!(sv.open_in_place(&clock, &mut ku[..kn]).unwrap(), Received::KeyUpdated { generation: 1 }));
    // Sequence numbers restart: seq 0, then the new request again at seq 1, generation 1.
    let r0 = seal_record(&mut c, &clock, b"ping");
    open_record(&mut sv, &clock, &r0).unwrap();
    let mut f = vec![0u8; buffer_len(9)];
    let (n, id_new) = c.seal_request(&clock, b"transfer!", &mut f).unwrap();
    assert_eq!(id_new, RequestId { generation: 1, seq: 1 });
    assert_eq!(id_new.seq, id_old.seq);
    assert_ne!(id_new.to_bytes(), id_old.to_bytes());
    let Received::Record(_, got_new) = sv.open_in_place(&clock, &mut f[..n]).unwrap() else { panic!() };
    assert_eq!(got_new, id_new);

    // The withheld response, presented as the answer to the new request: refused, nothing changes.
    let window = c.window().clone();
    let mut buf = withheld.clone();
    assert_eq!(c.open_response(&clock, id_new, &mut buf).unwrap_err(), Error::Authentication);
    assert_eq!(buf, withheld);
    assert_eq!(c.window(), &window);
    // The genuine response to the new request opens, and only as that answer.
    let mut resp = vec![0u8; buffer_len(4)];
    let rn = sv.seal_response(&clock, got_new, b"done", &mut resp).unwrap();
    let mut copy = resp[..rn].to_vec();
    assert_eq!(c.open_response(&clock, id_old, &mut copy).unwrap_err(), Error::Authentication);
    assert_eq!(c.open_response(&clock, id_new, &mut resp[..rn]).unwrap().payload, b"done");
    // The withheld response still opens as the answer to the request it answers.
    let mut buf = withheld.clone();
    assert_eq!(c.open_response(&clock, id_old, &mut buf).unwrap().payload, b"balance 0");
}

// ---------------------------------------------------------------------------
// f04: session record freshness
// ---------------------------------------------------------------------------

#[test]
fn f04_a_withheld_session_record_is_stale() {
    assert_eq!(Limits::DEFAULT.freshness, Some(Freshness::DEFAULT));
    assert_eq!(Freshness::DEFAULT, Freshness { max_age_ms: 30_000, max_future_skew_ms: 5_000 });
    let mut s = Harness::new();
    let (mut c, mut sv) = s.handshake(Limits::DEFAULT);
    let clock = s.clock.clone();
    let withheld = seal_record(&mut c, &clock, b"open the door");
    let edge = seal_record(&mut c, &clock, b"edge");
    clock.advance(30_000);
    // At exactly max_age it is accepted.
    assert_eq!(open_record(&mut sv, &clock, &edge).unwrap(), b"edge");
    clock.advance(1_000);
    // 31 s later: stale, and the window is unchanged (checked in open_record).
    let window = sv.window().clone();
    assert_eq!(open_record(&mut sv, &clock, &withheld), Err(Error::Stale));
    assert_eq!(sv.window(), &window);
    // A fresh record still opens.
    let fresh = seal_record(&mut c, &clock, b"now");
    assert_eq!(open_record(&mut sv, &clock, &fresh).unwrap(), b"now");

    // With the check switched off on the server, the same withheld record is accepted.
    let mut s = Harness::new();
    let (mut c, mut sv) = s.handshake(Limits { freshness: None, ..Limits::DEFAULT });
    let clock = s.clock.clone();
    let withheld = seal_record(&mut c, &clock, b"open the door");
    clock.advance(31_000);
    assert_eq!(open_record(&mut sv, &clock, &withheld).unwrap(), b"open the door");
}

// ---------------------------------------------------------------------------
// f05: authenticated snapshots
// ---------------------------------------------------------------------------

fn counter_key(b: u8) -> Secret<32> {
    Secret::new([b; 32])
}

fn counter_tx(key: u8, sid: [u8; 8]) -> CounterSender {
    CounterSender::<DefaultProvider>::new(&counter_key(key), Secret::new([0x11; 12]), sid, 0).unwrap()
}

fn counter_rx(key: u8, sid: [u8; 8]) -> CounterReceiver<DefaultProvider, 4> {
    CounterReceiver::<DefaultProvider, 4>::new(&counter_key(key), Secret::new([0x11; 12]), sid)
        .unwrap()
        .with_freshness(F)
}

/// 40 crafted bytes: a plausible body and a made-up tag.
fn crafted_40() -> [u8; 40] {
    let mut c = [0u8; 40];
    c[0] = 2;
    for (i, b) in c.iter_mut().enumerate().skip(8) {
        *b = i as u8;
    }
    c
}

#[test]
fn f05_counter_receiver_snapshots_are_authenticated() {
    let clock = ManualClock::new(T0);
    let mut tx = counter_tx(1, SID);
    let mut rx = counter_rx(1, SID);
    let mut old = vec![0u8; 512];
    let on = rx.snapshot(1, &mut old).unwrap();
    old.truncate(on);
    let frame = seal_counter(&mut tx, &clock, b"unlock");
    open_counter(&mut rx, &clock, &frame).unwrap();
    let mut snap = vec![0u8; 512];
    let n = rx.snapshot(2, &mut snap).unwrap();
    snap.truncate(n);

    let restore = |bytes: &[u8], epoch: u64| {
        let mut fresh = counter_rx(1, SID);
        let r = fresh.restore(bytes, epoch, F);
        if r.is_err() {
            assert_eq!(fresh.window(), &CounterWindow::<4>::new(), "a failed restore changed the window");
            assert_eq!(fresh.floor(), TimeFloor::NONE, "a failed restore changed the floor");
        }
        r.map(|()| fresh)
    };
    // The old snapshot (before the frame was accepted) relabelled with the current epoch.
    assert_eq!(old[0], 1, "postcard varint epoch");
    let mut relabelled = old.clone();
    relabelled[0] = 2;
    assert_eq!(restore(&relabelled, 2).unwrap_err(), Error::Authentication);
    // A snapshot of another session id (same key), and of another key (same session id).
    let other_sid = counter_rx(1, *b"sess-002");
    let mut other = vec![0u8; 512];
    let m = other_sid.snapshot(2, &mut other).unwrap();
    assert_eq!(restore(&other[..m], 2).unwrap_err(), Error::Authentication);
    let other_key = counter_rx(2, SID);
    let m = other_key.snapshot(2, &mut other).unwrap();
    assert_eq!(restore(&other[..m], 2).unwrap_err(), Error::Authentication);
    // Crafted snapshots.
    assert_eq!(restore(&snap[..3], 2).unwrap_err(), Error::Truncated);
    assert_eq!(restore(&crafted_40(), 2).unwrap_err(), Error::Authentication);
    assert_eq!(restore(&[0u8; 40], 0).unwrap_err(), Error::Authentication);
    // The genuine snapshot with a wrong trusted epoch.
    assert_eq!(restore(&snap, 3).unwrap_err(), Error::Rollback);
    assert_eq!(restore(&snap, 1).unwrap_err(), Error::Rollback);
    // The old snapshot with its own epoch restores, but is one the caller no longer trusts.
    assert_eq!(restore(&old, 2).unwrap_err(), Error::Rollback);
    // The genuine one restores, and the restored receiver refuses the replay.
    let mut back = restore(&snap, 2).unwrap();
    assert_eq!(open_counter(&mut back, &clock, &frame), Err(Error::Replay));
    let next = seal_counter(&mut tx, &clock, b"next");
    assert_eq!(open_counter(&mut back, &clock, &next).unwrap(), b"next");
}

fn one_shot_tx(key: u8) -> OneShotSender<VolatileStore> {
    OneShotSender::<_, DefaultProvider>::boot(&counter_key(key), KID, VolatileStore::new(), 16).unwrap()
}

fn seal_one_shot(tx: &mut OneShotSender<VolatileStore>, clock: &ManualClock, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; buffer_len(payload.len())];
    let n = tx.seal(&mut OsRng, clock, payload, &mut f).unwrap();
    f.truncate(n);
    f
}

fn open_one_shot<const N: usize>(
    rx: &mut OneShotReceiver<DefaultProvider, N>,
    clock: &ManualClock,
    frame: &[u8],
) -> Result<Vec<u8>, Error> {
    let mut buf = frame.to_vec();
    let ring = rx.ring().clone();
    let r = rx.open_in_place(clock, &mut buf).map(|o| o.payload.to_vec());
    if let Err(e) = r {
        assert_eq!(buf, frame, "a rejected frame was changed ({e:?})");
        assert_eq!(rx.ring(), &ring, "a rejected frame changed the ring ({e:?})");
    }
    r
}

#[test]
fn f05_one_shot_receiver_snapshots_are_authenticated() {
    let clock = ManualClock::new(T0);
    let mut tx = one_shot_tx(1);
    let mut rx = OneShotReceiver::<DefaultProvider, 8>::new(&counter_key(1), KID, NonceRing::new(F, HK)).unwrap();
    let mut old = vec![0u8; 1024];
    let on = rx.snapshot(1, &mut old).unwrap();
    old.truncate(on);
    let frame = seal_one_shot(&mut tx, &clock, b"unlock");
    open_one_shot(&mut rx, &clock, &frame).unwrap();
    let mut snap = vec![0u8; 1024];
    let n = rx.snapshot(2, &mut snap).unwrap();
    snap.truncate(n);

    type R = OneShotReceiver<DefaultProvider, 8>;
    let restore = |bytes: &[u8], epoch: u64| R::restore(&counter_key(1), KID, bytes, epoch, F, HK);
    assert_eq!(old[0], 1, "postcard varint epoch");
    let mut relabelled = old.clone();
    relabelled[0] = 2;
    assert_eq!(restore(&relabelled, 2).unwrap_err(), Error::Authentication);
    // Another key id, and another key.
    assert_eq!(R::restore(&counter_key(1), *b"key-0002", &snap, 2, F, HK).unwrap_err(), Error::Authentication);
    assert_eq!(R::restore(&counter_key(2), KID, &snap, 2, F, HK).unwrap_err(), Error::Authentication);
    let other =
        OneShotReceiver::<DefaultProvider, 8>::new(&counter_key(1), *b"key-0002", NonceRing::new(F, HK)).unwrap();
    let mut foreign = vec![0u8; 1024];
    let m = other.snapshot(2, &mut foreign).unwrap();
    assert_eq!(restore(&foreign[..m], 2).unwrap_err(), Error::Authentication);
    // Another capacity.
    assert_eq!(
        OneShotReceiver::<DefaultProvider, 4>::restore(&counter_key(1), KID, &snap, 2, F, HK).unwrap_err(),
        Error::Authentication
    );
    // Crafted.
    assert_eq!(restore(&snap[..3], 2).unwrap_err(), Error::Truncated);
    assert_eq!(restore(&crafted_40(), 2).unwrap_err(), Error::Authentication);
    // Wrong epoch.
    assert_eq!(restore(&snap, 3).unwrap_err(), Error::Rollback);
    assert_eq!(restore(&old, 2).unwrap_err(), Error::Rollback);
    // Genuine: restores and refuses the replay.
    let mut back = restore(&snap, 2).unwrap();
    assert_eq!(open_one_shot(&mut back, &clock, &frame), Err(Error::Replay));
    let next = seal_one_shot(&mut tx, &clock, b"next");
    assert_eq!(open_one_shot(&mut back, &clock, &next).unwrap(), b"next");
}

#[test]
fn f05_nonce_ring_snapshots_are_authenticated() {
    let key = SnapshotKey::<DefaultProvider>::derive(b"receiver secret");
    let mut ring = NonceRing::<8>::new(F, HK);
    let mut old = vec![0u8; 1024];
    let on = ring.snapshot(&key, b"ctx-1", 1, &mut old).unwrap();
    old.truncate(on);
    ring.commit(&[9; 12], T0, T0).unwrap();
    let mut snap = vec![0u8; 1024];
    let n = ring.snapshot(&key, b"ctx-1", 2, &mut snap).unwrap();
    snap.truncate(n);
    let restore = |bytes: &[u8], k: &SnapshotKey<DefaultProvider>, ctx: &[u8], epoch: u64| {
        NonceRing::<8>::restore(bytes, k, ctx, epoch, F, HK)
    };
    let mut relabelled = old.clone();
    assert_eq!(relabelled[0], 1);
    relabelled[0] = 2;
    assert_eq!(restore(&relabelled, &key, b"ctx-1", 2).unwrap_err(), Error::Authentication);
    assert_eq!(restore(&snap, &key, b"ctx-2", 2).unwrap_err(), Error::Authentication);
    let other = SnapshotKey::<DefaultProvider>::derive(b"another secret");
    assert_eq!(restore(&snap, &other, b"ctx-1", 2).unwrap_err(), Error::Authentication);
    assert_eq!(restore(&snap[..3], &key, b"ctx-1", 2).unwrap_err(), Error::Truncated);
    assert_eq!(restore(&crafted_40(), &key, b"ctx-1", 2).unwrap_err(), Error::Authentication);
    assert_eq!(restore(&snap, &key, b"ctx-1", 7).unwrap_err(), Error::Rollback);
    let back = restore(&snap, &key, b"ctx-1", 2).unwrap();
    assert_eq!(back, ring);
    assert_eq!(back.check(&[9; 12], T0, T0), Err(Error::Replay));
}

// ---------------------------------------------------------------------------
// f06: restart floors
// ---------------------------------------------------------------------------

#[test]
fn f06_a_reboot_with_a_clock_behind_does_not_reopen_accepted_frames() {
    const T: u64 = T0;
    let key = counter_key(1);
    let mut tx = one_shot_tx(1);
    let sender_clock = ManualClock::new(T);
    let mut mark_store = VolatileStore::new();

    // First boot, some time before T.
    let boot1 = ManualClock::new(T - 20_000);
    let (mut mark, floor) = TimeMark::boot(&mut mark_store, &boot1, &F, 1_000).unwrap();
    assert_eq!(floor.get(), Some(T - 20_000 + F.max_future_skew_ms));
    let mut rx =
        OneShotReceiver::<DefaultProvider, 64>::new(&key, KID, NonceRing::new(F, HK).with_floor(floor)).unwrap();
    // At real time T: cover, then accept.
    let clock = ManualClock::new(T);
    let frames: Vec<Vec<u8>> = (0..3u8).map(|i| seal_one_shot(&mut tx, &sender_clock, &[i; 5])).collect();
    mark.cover(&clock).unwrap();
    assert!(mark.bound() >= T + F.max_future_skew_ms);
    for (i, f) in frames.iter().enumerate() {
        assert_eq!(open_one_shot(&mut rx, &clock, f).unwrap(), [i as u8; 5]);
    }
    drop(rx);
    let _ = mark.into_store(); // power off: the mark ends here

    // Reboot with a clock 60 s behind (no RTC; synced later).
    let behind = ManualClock::new(T - 60_000);
    let (mut mark2, floor2) = TimeMark::boot(&mut mark_store, &behind, &F, 1_000).unwrap();
    assert!(floor2.get().unwrap() >= T + F.max_future_skew_ms, "floor {floor2:?} below what was accepted");
    let mut rx2 =
        OneShotReceiver::<DefaultProvider, 64>::new(&key, KID, NonceRing::new(F, HK).with_floor(floor2)).unwrap();
    mark2.cover(&behind).unwrap();
    for f in &frames {
        assert_eq!(open_one_shot(&mut rx2, &behind, f), Err(Error::Stale));
    }
    // The clock is synced back to T: still refused.
    mark2.cover(&clock).unwrap();
    for f in &frames {
        assert_eq!(open_one_shot(&mut rx2, &clock, f), Err(Error::Stale));
    }

    // The old approach, NonceRing::after_restart(f, hk, boot_now), is sound only if the
    // clock at boot is not behind: with the clock 60 s behind its floor is T - 55 s,
    // and once the clock is synced the pre-reboot frames are accepted a second time.
    let unsound = NonceRing::<64>::after_restart(F, HK, behind.now_ms());
    assert_eq!(unsound.floor().get(), Some(T - 60_000 + F.max_future_skew_ms));
    let mut rx_old = OneShotReceiver::<DefaultProvider, 64>::new(&key, KID, unsound).unwrap();
    for f in &frames {
        assert!(open_one_shot(&mut rx_old, &clock, f).is_ok(), "documents the unsound precondition");
    }

    // Frames stamped above the new floor are accepted once the clock gets there.
    let later = ManualClock::new(floor2.get().unwrap() + 1);
    mark2.cover(&later).unwrap();
    let fresh = seal_one_shot(&mut tx, &later, b"fresh");
    assert_eq!(open_one_shot(&mut rx2, &later, &fresh).unwrap(), b"fresh");
    assert_eq!(open_one_shot(&mut rx2, &later, &fresh), Err(Error::Replay));
}

#[test]
fn f06_a_counter_receiver_with_a_restart_floor_checks_freshness() {
    const T: u64 = T0;
    let mut tx = counter_tx(1, SID);
    let clock = ManualClock::new(T);
    // A sender whose clock runs 60 s fast, then one with a correct clock.
    let fast = seal_counter(&mut tx, &ManualClock::new(T + 60_000), b"fast");
    let honest = seal_counter(&mut tx, &clock, b"honest");
    let stale = seal_counter(&mut tx, &ManualClock::new(T - F.max_age_ms - 1), b"stale");

    // A receiver after an earlier restart: floor from TimeMark::boot, and nothing else.
    let mut store = VolatileStore::new();
    let (mut mark, floor) = TimeMark::boot(&mut store, &ManualClock::new(T - 20_000), &F, 1_000).unwrap();
    let mk = |floor: TimeFloor| {
        CounterReceiver::<DefaultProvider, 4>::new(&counter_key(1), Secret::new([0x11; 12]), SID)
            .unwrap()
            .with_restart_floor(floor, F)
    };
    let mut rx1 = mk(floor);
    mark.cover(&clock).unwrap();
    assert_eq!(open_counter(&mut rx1, &clock, &fast), Err(Error::FromFuture));
    assert_eq!(open_counter(&mut rx1, &clock, &stale), Err(Error::Stale));
    assert_eq!(open_counter(&mut rx1, &clock, &honest).unwrap(), b"honest");
    drop(rx1);
    let _ = mark.into_store(); // power off: the mark ends here

    // Restart one second later.
    let clock = ManualClock::new(T + 1_000);
    let (mut mark2, floor2) = TimeMark::boot(&mut store, &clock, &F, 1_000).unwrap();
    let mut rx2 = mk(floor2);
    mark2.cover(&clock).unwrap();
    assert_eq!(open_counter(&mut rx2, &clock, &honest), Err(Error::Stale));
    assert_eq!(open_counter(&mut rx2, &clock, &fast), Err(Error::FromFuture));

    // Why the floor needs freshness: a receiver without it accepts the fast frame, and a
    // receiver restarted with a floor at boot + skew accepts it a second time once its
    // clock reaches the frame's timestamp.
    let mut no_freshness =
        CounterReceiver::<DefaultProvider, 4>::new(&counter_key(1), Secret::new([0x11; 12]), SID).unwrap();
    assert_eq!(open_counter(&mut no_freshness, &ManualClock::new(T), &fast).unwrap(), b"fast");
    let mut after = mk(TimeFloor::after_restart(T + 1_000, &F));
    assert_eq!(open_counter(&mut after, &ManualClock::new(T + 60_000), &fast).unwrap(), b"fast");
}

// ---------------------------------------------------------------------------
// f07: the stateless challenges' used set across restarts
// ---------------------------------------------------------------------------

#[test]
fn f07_an_answered_stateless_challenge_stays_used_across_a_restart() {
    const TTL: u64 = 60_000;
    type S = StatelessChallenges<DefaultProvider, 16>;
    let mac = || Secret::new([9; 32]);
    let hk = [4; 16];
    let clock = ManualClock::new(T0);
    let mut s = S::new(mac(), TTL, hk);
    let c = s.issue(&mut OsRng, &clock).unwrap();
    let b = bind(&c, REQ);
    s.verify_bound(&clock, &b, REQ).unwrap();
    let pending = s.issue(&mut OsRng, &clock).unwrap();
    let pb = bind(&pending, REQ);
    let mut snap = vec![0u8; 2048];
    let n = s.snapshot(7, &mut snap).unwrap();
    snap.truncate(n);
    drop(s);
    clock.advance(1_000);

    // Restarting with the same MAC key and an empty used set would accept the answer again.
    let mut naive = S::new(mac(), TTL, hk);
    assert_eq!(naive.verify_bound(&clock, &b, REQ), Ok(()), "documents the hole a restart opens");

    // Restored from the snapshot: a replay. The pending challenge can still be answered once.
    let mut restored = S::restore(mac(), TTL, hk, &snap, 7).unwrap();
    assert_eq!(restored.verify_bound(&clock, &b, REQ), Err(Error::Replay));
    restored.verify_bound(&clock, &pb, REQ).unwrap();
    assert_eq!(restored.verify_bound(&clock, &pb, REQ), Err(Error::Replay));
    assert_eq!(S::restore(mac(), TTL, hk, &snap, 8).unwrap_err(), Error::Rollback);
    assert_eq!(S::restore(Secret::new([1; 32]), TTL, hk, &snap, 7).unwrap_err(), Error::Authentication);
    assert_eq!(S::restore(mac(), TTL, hk, &snap[..3], 7).unwrap_err(), Error::Truncated);

    // Restarted without a snapshot: everything issued before the restart has expired.
    let floor = TimeFloor::after_restart(clock.now_ms(), &S::freshness(TTL));
    let mut after = S::after_restart(mac(), TTL, hk, floor);
    assert_eq!(after.verify_bound(&clock, &b, REQ), Err(Error::Expired(Expiry::Challenge)));
    assert_eq!(after.verify_bound(&clock, &pb, REQ), Err(Error::Expired(Expiry::Challenge)));
    // A challenge issued after the restart (1 ms later) verifies, once.
    clock.advance(1);
    let fresh = after.issue(&mut OsRng, &clock).unwrap();
    let fb = bind(&fresh, REQ);
    after.verify_bound(&clock, &fb, REQ).unwrap();
    assert_eq!(after.verify_bound(&clock, &fb, REQ), Err(Error::Replay));
}

// ---------------------------------------------------------------------------
// f08: one accepted signature encoding
// ---------------------------------------------------------------------------

/// n − s for a 32-byte big-endian s < n.
fn order_minus(s: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    let mut borrow = 0i16;
    for i in (0..32).rev() {
        let mut d = i16::from(ORDER[i]) - i16::from(s[i]) - borrow;
        borrow = i16::from(d < 0);
        if d < 0 {
            d += 256;
        }
        out[i] = d as u8;
    }
    assert_eq!(borrow, 0);
    out
}

fn high_s(raw: &[u8; 64]) -> [u8; 64] {
    let mut h = *raw;
    h[32..].copy_from_slice(&order_minus(&raw[32..]));
    h
}

fn der_int(v: &[u8]) -> Vec<u8> {
    let mut digits: Vec<u8> = v.iter().copied().skip_while(|b| *b == 0).collect();
    if digits.first().is_none_or(|b| b & 0x80 != 0) {
        digits.insert(0, 0);
    }
    let mut out = vec![0x02, digits.len() as u8];
    out.extend(digits);
    out
}

fn der(raw: &[u8; 64]) -> Vec<u8> {
    let mut body = der_int(&raw[..32]);
    body.extend(der_int(&raw[32..]));
    let mut out = vec![0x30, body.len() as u8];
    out.extend(body);
    out
}

#[test]
fn f08_only_raw_low_s_signatures_verify() {
    let mut signer = SoftwareSigner::<DefaultProvider>::generate(&mut OsRng).unwrap();
    let pk = signer.public_key().unwrap();
    let digest = [0x3c; 32];
    let low = signer.sign_digest(&digest).unwrap().to_raw_low_s().unwrap();
    SignatureVerifier::<DefaultProvider>::new().verify(&pk, &digest, &low).unwrap();
    let high = high_s(&low);
    assert_ne!(high, low);
    // The other encodings of the same signature are refused by the verifier.
    assert_eq!(SignatureVerifier::<DefaultProvider>::new().verify(&pk, &digest, &high), Err(Error::Authentication));
    assert_eq!(
        SignatureVerifier::<DefaultProvider>::new().verify(&pk, &digest, &der(&low)),
        Err(Error::Authentication)
    );
    assert_eq!(
        SignatureVerifier::<DefaultProvider>::new().verify(&pk, &digest, &der(&high)),
        Err(Error::Authentication)
    );
    // Clients convert them to the one wire form.
    assert_eq!(DeviceSignature::from_raw(&high).unwrap().to_raw_low_s().unwrap(), low);
    assert_eq!(DeviceSignature::from_der(&der(&low)).unwrap().to_raw_low_s().unwrap(), low);
    assert_eq!(DeviceSignature::from_der(&der(&high)).unwrap().to_raw_low_s().unwrap(), low);
    assert_eq!(DeviceSignature::from_bytes(&der(&high)).unwrap().to_raw_low_s().unwrap(), low);
    assert_eq!(DeviceSignature::from_bytes(&high).unwrap().to_raw_low_s().unwrap(), low);

    // A token proof with the high-S form of its genuine signature: not authentic, not recorded.
    let mut w = token_world();
    let pk = w.device_pk;
    let mut cache = proof_cache::<8>(F);
    let proof = w.proof(NOW, REQ);
    let mut sig = [0u8; 64];
    sig.copy_from_slice(&proof[24..]);
    let mut malleated = proof;
    malleated[24..].copy_from_slice(&high_s(&sig));
    assert_eq!(w.verify(&mut cache, NOW, &pk, REQ, &malleated), Err(Error::Authentication));
    // A DER signature in the proof: refused (the proof has a fixed length).
    let mut with_der = proof[..24].to_vec();
    with_der.extend(der(&sig));
    assert!(w.verify(&mut cache, NOW, &pk, REQ, &with_der).is_err());
    assert!(cache.ring().is_empty(), "a malleated proof was recorded");
    // The genuine proof is accepted once; the malleated copy is then a replay.
    w.verify(&mut cache, NOW, &pk, REQ, &proof).unwrap();
    assert_eq!(w.verify(&mut cache, NOW, &pk, REQ, &malleated), Err(Error::Replay));
    assert_eq!(w.verify(&mut cache, NOW, &pk, REQ, &proof), Err(Error::Replay));
}

// ---------------------------------------------------------------------------
// f09: the nonce ring's Debug hides its hash key
// ---------------------------------------------------------------------------

#[test]
fn f09_nonce_ring_debug_does_not_print_the_hash_key() {
    let ring = NonceRing::<4>::new(F, [0xab; 16]);
    assert_eq!(u64::from_le_bytes([0xab; 8]), 12_370_169_555_311_111_083);
    let texts = [format!("{ring:?}"), format!("{ring:#?}"), format!("{ring:x?}"), format!("{ring:X?}")];
    for text in &texts {
        let lower = text.to_lowercase();
        for needle in ["12370169555311111083", "abababab", "171, 171", "0xab", "hash_key"] {
            assert!(!lower.contains(needle), "{needle:?} in {text}");
        }
    }
    // Nor does a receiver or cache that holds one.
    let rx = OneShotReceiver::<DefaultProvider, 4>::new(&counter_key(1), KID, ring).unwrap();
    let text = format!("{rx:?}").to_lowercase();
    assert!(!text.contains("12370169555311111083") && !text.contains("abababab"), "{text}");
}

// ---------------------------------------------------------------------------
// f10: the integrity limit kills the key, key update included
// ---------------------------------------------------------------------------

#[test]
fn f10_after_the_integrity_limit_even_a_genuine_key_update_is_refused() {
    let mut s = Harness::new();
    let (mut c, mut sv) = s.handshake(Limits { max_failed_per_key: 3, ..Limits::DEFAULT });
    let clock = s.clock.clone();
    for i in 0..3 {
        assert!(!sv.needs_rehandshake(), "after {i} forgeries");
        let mut forged = seal_record(&mut c, &clock, b"forged");
        forged[40] ^= 0x01;
        assert_eq!(open_record(&mut sv, &clock, &forged), Err(Error::Authentication));
    }
    assert!(sv.needs_rehandshake());
    assert!(!sv.needs_key_update());
    let genuine = seal_record(&mut c, &clock, b"genuine");
    assert_eq!(open_record(&mut sv, &clock, &genuine), Err(Error::IntegrityLimit));
    let mut ku = vec![0u8; buffer_len(0)];
    let kn = c.update_keys(&clock, &mut ku).unwrap();
    ku.truncate(kn);
    assert_eq!(open_record(&mut sv, &clock, &ku), Err(Error::IntegrityLimit));
    assert_eq!(sv.generations(), (0, 0));
    assert!(sv.needs_rehandshake());
    assert!(!sv.needs_key_update());
}

// ---------------------------------------------------------------------------
// f11: enrollment
// ---------------------------------------------------------------------------

/// `EnrollmentChallenge` must not be `Clone`: this is ambiguous (and does not
/// compile) if it were.
trait AmbiguousIfClone<A> {
    fn check() {}
}
impl<T: ?Sized> AmbiguousIfClone<()> for T {}
#[allow(dead_code)]
struct IsClone;
impl<T: Clone> AmbiguousIfClone<IsClone> for T {}
const _: fn() = || <EnrollmentChallenge as AmbiguousIfClone<_>>::check();

#[test]
fn f11_an_enrollment_answer_names_its_server_and_re_enrollment_is_refused() {
    let mut rng = OsRng;
    let clock = ManualClock::new(T0);
    let server_a = ServerKey::<DefaultProvider>::generate(&mut rng).unwrap();
    let server_b = ServerKey::<DefaultProvider>::generate(&mut rng).unwrap();
    let device = DeviceId::new(b"lock-0042").unwrap();
    let mut signer = SoftwareSigner::<DefaultProvider>::generate(&mut rng).unwrap();
    // Server B's challenge, relayed by server A: the device answers for A.
    let challenge: EnrollmentChallenge = EnrollmentChallenge::issue(&mut rng, &clock, 60_000).unwrap();
    let for_a = Prover::new(&mut signer).answer_enrollment(server_a.public_key(), challenge.nonce(), device).unwrap();
    assert_eq!(challenge.verify(server_b.public_key(), &for_a, &clock).unwrap_err(), Error::Authentication);
    // Answered for B, it verifies at B.
    let challenge: EnrollmentChallenge = EnrollmentChallenge::issue(&mut rng, &clock, 60_000).unwrap();
    let for_b = Prover::new(&mut signer).answer_enrollment(server_b.public_key(), challenge.nonce(), device).unwrap();
    let enrolled = challenge.verify(server_b.public_key(), &for_b, &clock).unwrap();
    assert_eq!(enrolled.public_key, signer.public_key().unwrap());

    // Re-enrollment policy.
    let other = SoftwareSigner::<DefaultProvider>::generate(&mut rng).unwrap().public_key().unwrap();
    assert_eq!(enrolled.admit(Some(&other), ReEnrollment::Refuse), Err(Error::AlreadyEnrolled));
    assert_eq!(ReEnrollment::default(), ReEnrollment::Refuse);
    assert_eq!(enrolled.admit(Some(&other), ReEnrollment::default()), Err(Error::AlreadyEnrolled));
    assert_eq!(enrolled.admit(Some(&enrolled.public_key), ReEnrollment::Refuse), Ok(Admission::Unchanged));
    assert_eq!(enrolled.admit(None, ReEnrollment::Refuse), Ok(Admission::New));
    assert_eq!(enrolled.admit(Some(&other), ReEnrollment::Replace), Ok(Admission::Replaced));
}

// ---------------------------------------------------------------------------
// f13: usage limits
// ---------------------------------------------------------------------------

#[test]
fn f13_one_shot_usage_survives_a_reboot() {
    let key = counter_key(1);
    let clock = ManualClock::new(T0);
    let mut store = VolatileStore::new();
    let mut tx = OneShotSender::<_, DefaultProvider>::boot(&key, KID, &mut store, 16).unwrap();
    assert_eq!(tx.used(), 0);
    let mut buf = vec![0u8; buffer_len(4)];
    for _ in 0..5 {
        tx.seal(&mut OsRng, &clock, b"ping", &mut buf).unwrap();
    }
    assert_eq!(tx.used(), 5);
    drop(tx);
    // Rebooted on the same store: never back at 0.
    let tx = OneShotSender::<_, DefaultProvider>::boot(&key, KID, &mut store, 16).unwrap();
    assert!(tx.used() >= 5, "a reboot reset the usage to {}", tx.used());
    drop(tx);
    // With a cap of 6, the reboot leaves at most one invocation.
    let mut tx = OneShotSender::<_, DefaultProvider>::boot(&key, KID, &mut store, 16).unwrap().with_cap(6);
    assert!(tx.remaining() <= 1);
    let mut sealed = 0;
    let err = loop {
        match tx.seal(&mut OsRng, &clock, b"ping", &mut buf) {
            Ok(_) => sealed += 1,
            Err(e) => break e,
        }
        assert!(sealed <= 1);
    };
    assert_eq!(err, Error::KeyExhausted);
}

#[test]
fn f13_long_lived_keys_refuse_oversized_payloads() {
    let key = counter_key(1);
    let clock = ManualClock::new(T0);
    let big = vec![0x11u8; LONG_KEY_MAX_PAYLOAD + 1];
    let mut out = vec![0u8; buffer_len(big.len())];
    let mut tx = OneShotSender::<_, DefaultProvider>::boot(&key, KID, VolatileStore::new(), 16).unwrap();
    assert_eq!(tx.seal(&mut OsRng, &clock, &big, &mut out).unwrap_err(), Error::PayloadTooLarge);
    assert_eq!(tx.used(), 0, "a refused seal used an invocation");
    tx.seal(&mut OsRng, &clock, &big[..LONG_KEY_MAX_PAYLOAD], &mut out).unwrap();
    assert_eq!(tx.used(), 1);

    let mut ps =
        PersistentSender::<_, DefaultProvider>::boot(&key, Secret::new([0x22; 12]), SID, VolatileStore::new(), 16)
            .unwrap();
    assert_eq!(ps.seal(&clock, &big, &mut out).unwrap_err(), Error::PayloadTooLarge);
    assert_eq!(ps.next_seq(), 0);
    ps.seal(&clock, &big[..LONG_KEY_MAX_PAYLOAD], &mut out).unwrap();
    assert_eq!(ps.next_seq(), 1);
}

#[test]
fn f13_sessions_count_aes_blocks_and_one_shot_receivers_count_forgeries() {
    let mut s = Harness::new();
    let limits = Limits { max_blocks_per_key: 100, ..Limits::DEFAULT };
    let (mut c, mut sv) = s.handshake_with(limits, limits);
    let clock = s.clock.clone();
    // 2 KiB = 128 + 1 blocks: over the cap. Nothing is consumed.
    let mut out = vec![0u8; buffer_len(2048)];
    let seq = sv.next_seq();
    assert_eq!(sv.seal(&clock, &[0u8; 2048], &mut out).unwrap_err(), Error::KeyExhausted);
    assert_eq!(c.seal(&clock, &[0u8; 2048], &mut out).unwrap_err(), Error::KeyExhausted);
    assert_eq!(sv.next_seq(), seq);
    // A small record passes.
    let mut f = vec![0u8; buffer_len(32)];
    let n = sv.seal(&clock, &[7u8; 32], &mut f).unwrap();
    let Received::Record(o, _) = c.open_in_place(&clock, &mut f[..n]).unwrap() else { panic!() };
    assert_eq!(o.payload, &[7u8; 32]);

    // One-shot receiver integrity limit.
    let mut tx = one_shot_tx(1);
    let mut rx = OneShotReceiver::<DefaultProvider, 8>::new(&counter_key(1), KID, NonceRing::new(F, HK)).unwrap();
    rx.set_max_failed(2);
    for _ in 0..2 {
        let mut forged = seal_one_shot(&mut tx, &clock, b"forged");
        forged[40] ^= 0x01;
        assert_eq!(open_one_shot(&mut rx, &clock, &forged), Err(Error::Authentication));
    }
    let genuine = seal_one_shot(&mut tx, &clock, b"genuine");
    assert_eq!(open_one_shot(&mut rx, &clock, &genuine), Err(Error::IntegrityLimit));
}

// ---------------------------------------------------------------------------
// f14: a key update never carries a payload
// ---------------------------------------------------------------------------

#[test]
fn f14_a_key_update_frame_with_a_payload_is_malformed() {
    let mut s = Harness::new();
    let (mut c, mut sv) = s.handshake(Limits::DEFAULT);
    let clock = s.clock.clone();
    let frame = seal_record(&mut c, &clock, b"not empty");
    assert_eq!(frame[1], 0x01);
    let mut as_update = frame.clone();
    as_update[1] = 0x04;
    let window = sv.window().clone();
    assert_eq!(open_record(&mut sv, &clock, &as_update), Err(Error::Malformed));
    assert_eq!(sv.window(), &window);
    assert_eq!(sv.generations(), (0, 0));
    assert_eq!(open_record(&mut sv, &clock, &frame).unwrap(), b"not empty");
}

// ---------------------------------------------------------------------------
// f15: Debug never shows plaintext
// ---------------------------------------------------------------------------

const SECRET_TEXT: &[u8] = b"TOPSECRET-PLAINTEXT";

fn assert_hides_plaintext(what: &str, v: &dyn std::fmt::Debug) {
    let texts = [format!("{v:?}"), format!("{v:#?}"), format!("{v:x?}"), format!("{v:X?}")];
    for text in &texts {
        let squeezed: String = text.chars().filter(|c| !c.is_whitespace()).collect::<String>().to_lowercase();
        for needle in ["topsecret", "84,79,80", "54,4f,50", "0x54,0x4f", "544f50"] {
            assert!(!squeezed.contains(needle), "{what}: {needle:?} in {text}");
        }
    }
}

#[test]
fn f15_opened_values_do_not_debug_print_their_plaintext() {
    // Sanity: the check catches a plain byte slice.
    let leaks = std::panic::catch_unwind(|| assert_hides_plaintext("slice", &SECRET_TEXT));
    assert!(leaks.is_err(), "the check would not catch a leak");

    // Session: Received and Opened.
    let mut s = Harness::new();
    let (mut c, mut sv) = s.handshake(Limits::DEFAULT);
    let clock = s.clock.clone();
    let mut f = seal_record(&mut c, &clock, SECRET_TEXT);
    let received = sv.open_in_place(&clock, &mut f).unwrap();
    assert_hides_plaintext("Received", &received);
    let Received::Record(opened, _) = received else { panic!() };
    assert_eq!(opened.payload, SECRET_TEXT);
    assert_hides_plaintext("Opened", &opened);

    // One-shot frame: Opened.
    let mut tx = one_shot_tx(1);
    let mut rx = OneShotReceiver::<DefaultProvider, 8>::new(&counter_key(1), KID, NonceRing::new(F, HK)).unwrap();
    let mut f = seal_one_shot(&mut tx, &clock, SECRET_TEXT);
    let opened = rx.open_in_place(&clock, &mut f).unwrap();
    assert_eq!(opened.payload, SECRET_TEXT);
    assert_hides_plaintext("one-shot Opened", &opened);

    // Stream chunk.
    let device = KeyPair::<DefaultProvider>::generate(&mut OsRng).unwrap();
    let mut header = [0u8; STREAM_HEADER_LEN];
    let mut sealer = StreamSealer::<Aes256Gcm, DefaultProvider>::start(
        &mut OsRng,
        device.public_key(),
        None,
        b"fw",
        64,
        &mut header,
    )
    .unwrap();
    let mut chunk = vec![0u8; chunk_buffer_len(SECRET_TEXT.len())];
    chunk[CHUNK_HEADER_LEN..][..SECRET_TEXT.len()].copy_from_slice(SECRET_TEXT);
    let n = sealer.seal_chunk(&mut chunk, SECRET_TEXT.len(), true).unwrap();
    let mut opener = StreamOpener::<Aes256Gcm, DefaultProvider>::start(&header, &device, None, b"fw").unwrap();
    let c = opener.open_chunk(&mut chunk[..n]).unwrap();
    assert_eq!(c.data, SECRET_TEXT);
    assert_hides_plaintext("Chunk", &c);

    // One-shot request.
    let server = KeyPair::<DefaultProvider>::generate(&mut OsRng).unwrap();
    let mut rx = Rx::<8>::new(&state_key(), F);
    let mut req = seal_request(&clock, server.public_key(), None, SECRET_TEXT);
    let opened = rx.open(&server, None, &clock, APP, AAD, &mut req).unwrap();
    assert_eq!(opened.payload, SECRET_TEXT);
    assert_hides_plaintext("OpenedRequest", &opened);
}

// ---------------------------------------------------------------------------
// f16: the challenge table drops only when it must
// ---------------------------------------------------------------------------

fn table_verify<const N: usize>(t: &mut ChallengeTable<N>, clock: &ManualClock, c: &Challenge) -> Result<(), Error> {
    t.verify_bound::<DefaultProvider>(clock, &bind(c, REQ), REQ)
}

#[test]
fn f16_the_challenge_table_drops_only_the_first_to_expire_and_only_when_full() {
    const TTL: u64 = 10_000;
    let clock = ManualClock::new(T0);
    // Each challenge expires 1 ms after the one before.
    let issue = |t: &mut ChallengeTable<4>| {
        let c = t.issue(&mut OsRng, &clock).unwrap();
        clock.advance(1);
        c
    };

    // Three challenges in a table of four (free slots remain): all three verify.
    let mut t = ChallengeTable::<4>::new(TTL);
    let three: Vec<Challenge> = (0..3).map(|_| issue(&mut t)).collect();
    for c in &three {
        table_verify(&mut t, &clock, c).unwrap();
    }

    // A free slot is used wherever it is: fill the table, answer the third challenge,
    // and issue again. Nothing live is dropped (round-robin slots dropped x[0] here).
    let fill_and_free_the_third = |t: &mut ChallengeTable<4>| {
        let x: Vec<Challenge> = (0..4).map(|_| issue(t)).collect();
        table_verify(t, &clock, &x[2]).unwrap();
        let y = issue(t);
        (x, y)
    };
    let mut t = ChallengeTable::<4>::new(TTL);
    let (x, y) = fill_and_free_the_third(&mut t);
    for (name, c) in [("x0", &x[0]), ("x1", &x[1]), ("x3", &x[3]), ("y", &y)] {
        assert_eq!(table_verify(&mut t, &clock, c), Ok(()), "{name}");
    }
    let mut t = ChallengeTable::<4>::new(TTL);
    let (x, y) = fill_and_free_the_third(&mut t);
    // The table holds x[0], x[1], y, x[3]; they expire in the order x[0], x[1], x[3], y.
    // Four more into the full table: each drops only the live challenge expiring first,
    // so x[3] goes before y although y sits in the slot before it.
    let more: Vec<Challenge> = (0..3).map(|_| issue(&mut t)).collect();
    for (name, c) in [("x0", &x[0]), ("x1", &x[1]), ("x3", &x[3])] {
        assert_eq!(table_verify(&mut t, &clock, c), Err(Error::Replay), "{name} was not dropped");
    }
    for c in more.iter().chain([&y]) {
        table_verify(&mut t, &clock, c).unwrap();
    }
    let mut t = ChallengeTable::<4>::new(TTL);
    let full: Vec<Challenge> = (0..4).map(|_| issue(&mut t)).collect();
    let fifth = issue(&mut t);
    assert_eq!(table_verify(&mut t, &clock, &full[0]), Err(Error::Replay));
    for c in full[1..].iter().chain([&fifth]) {
        table_verify(&mut t, &clock, c).unwrap();
    }

    // Expired slots are reused before a live challenge is dropped.
    let mut t = ChallengeTable::<4>::new(TTL);
    let mut a: Vec<Challenge> = (0..2).map(|_| issue(&mut t)).collect();
    clock.advance(100);
    a.extend((0..2).map(|_| issue(&mut t)));
    table_verify(&mut t, &clock, &a[2]).unwrap();
    clock.advance(5_000);
    let b = issue(&mut t); // takes a[2]'s slot
    clock.set(a[1].expires_at_ms() + 1); // a[0] and a[1] expired; a[3] and b live
    assert_eq!(table_verify(&mut t, &clock, &a[1]), Err(Error::Expired(Expiry::Challenge)));
    let c = issue(&mut t);
    let d = issue(&mut t);
    for (name, ch) in [("a3", &a[3]), ("b", &b), ("c", &c), ("d", &d)] {
        assert_eq!(table_verify(&mut t, &clock, ch), Ok(()), "{name}");
    }
    for ch in &a[..2] {
        assert_eq!(table_verify(&mut t, &clock, ch), Err(Error::Replay), "its slot was reused");
    }
}

// ---------------------------------------------------------------------------
// f19: the clock offset rounds down and never overflows
// ---------------------------------------------------------------------------

#[test]
fn f19_clock_offset_rounds_down_without_overflow() {
    assert_eq!(clock_offset(1000, 0, 3), 999); // mid = 1 (1.5 rounded down)
    assert_eq!(clock_offset(1000, 0, 2), 999);
    assert_eq!(clock_offset(1000, 1000, 1000), 0);
    assert_eq!(clock_offset(0, 1000, 1001), -1000);
    assert_eq!(clock_offset(u64::MAX, u64::MAX, u64::MAX), 0);
    assert_eq!(clock_offset(u64::MAX, u64::MAX - 1, u64::MAX), 1);
    assert_eq!(clock_offset(u64::MAX - 10, u64::MAX, u64::MAX), -10);
    assert_eq!(clock_offset(u64::MAX, 0, 0), i64::MAX);
    assert_eq!(clock_offset(0, u64::MAX, u64::MAX), i64::MIN);
    assert_eq!(clock_offset(u64::MAX, 0, u64::MAX), i64::MAX);
}

// ---------------------------------------------------------------------------
// Audit counters
// ---------------------------------------------------------------------------

#[test]
fn replays_are_counted_in_the_audit_counters() {
    let clock = ManualClock::new(T0);

    // Session record.
    let mut s = Harness::new();
    let (mut c, mut sv) = s.handshake(Limits::DEFAULT);
    let frame = seal_record(&mut c, &s.clock, b"x");
    open_record(&mut sv, &s.clock, &frame).unwrap();
    let before = sv.audit().replay_rejected;
    assert_eq!(open_record(&mut sv, &s.clock, &frame), Err(Error::Replay));
    assert_eq!(sv.audit().replay_rejected, before + 1);

    // Counter receiver.
    let mut tx = counter_tx(1, SID);
    let mut rx = counter_rx(1, SID);
    let f = seal_counter(&mut tx, &clock, b"x");
    open_counter(&mut rx, &clock, &f).unwrap();
    assert_eq!(open_counter(&mut rx, &clock, &f), Err(Error::Replay));
    assert_eq!((rx.audit().accepted, rx.audit().replay_rejected), (1, 1));

    // One-shot frame.
    let mut tx = one_shot_tx(1);
    let mut rx = OneShotReceiver::<DefaultProvider, 8>::new(&counter_key(1), KID, NonceRing::new(F, HK)).unwrap();
    let f = seal_one_shot(&mut tx, &clock, b"x");
    open_one_shot(&mut rx, &clock, &f).unwrap();
    assert_eq!(open_one_shot(&mut rx, &clock, &f), Err(Error::Replay));
    assert_eq!((rx.audit().accepted, rx.audit().replay_rejected), (1, 1));

    // One-shot request.
    let server = KeyPair::<DefaultProvider>::generate(&mut OsRng).unwrap();
    let mut rx = Rx::<8>::new(&state_key(), F);
    let req = seal_request(&clock, server.public_key(), None, b"x");
    open_request(&mut rx, &server, None, &clock, &req).unwrap();
    assert_eq!(open_request(&mut rx, &server, None, &clock, &req), Err(Error::Replay));
    assert_eq!((rx.cache().audit().accepted, rx.cache().audit().replay_rejected), (1, 1));

    // Token proof.
    let mut w = token_world();
    let pk = w.device_pk;
    let mut cache = proof_cache::<8>(F);
    let proof = w.proof(NOW, REQ);
    w.verify(&mut cache, NOW, &pk, REQ, &proof).unwrap();
    assert_eq!(w.verify(&mut cache, NOW, &pk, REQ, &proof), Err(Error::Replay));
    assert_eq!((cache.audit().accepted, cache.audit().replay_rejected), (1, 1));

    // Stateless challenge.
    let mut sc = StatelessChallenges::<DefaultProvider, 8>::new(Secret::new([9; 32]), 60_000, [4; 16]);
    let ch = sc.issue(&mut OsRng, &clock).unwrap();
    let b = bind(&ch, REQ);
    sc.verify_bound(&clock, &b, REQ).unwrap();
    assert_eq!(sc.verify_bound(&clock, &b, REQ), Err(Error::Replay));
    assert_eq!(sc.verify(&clock, &ch), Err(Error::Replay));
    assert_eq!((sc.audit().accepted, sc.audit().challenge_reused), (1, 2));

    // Challenge table.
    let mut t = ChallengeTable::<4>::new(60_000);
    let ch = t.issue(&mut OsRng, &clock).unwrap();
    table_verify(&mut t, &clock, &ch).unwrap();
    assert_eq!(table_verify(&mut t, &clock, &ch), Err(Error::Replay));
    assert_eq!((t.audit().accepted, t.audit().challenge_reused), (1, 1));
}
