//! One behavioural suite for the store traits of [`oncewire_http::store`]
//! ([`SessionStore`], [`PendingStore`], [`OnceStore`], [`DeviceRegistry`]),
//! generic over the implementation. `tests/stores.rs` runs it against the
//! in-memory stores; every other implementation must pass it too.
//!
//! # Reusing it (the fleet crate's Redis and PostgreSQL stores)
//!
//! Include this file as a module of your test crate and call the suites
//! with a factory of fresh, empty stores:
//!
//! ```ignore
//! #[path = "../../oncewire-http/tests/common/mod.rs"]
//! mod store_suite;
//!
//! #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
//! async fn redis_sessions_pass_the_suite() {
//!     store_suite::session_store_suite(|capacity| async move {
//!         RedisSessions::connect(URL, &unique_prefix(), capacity).await.unwrap()
//!     })
//!     .await;
//! }
//! ```
//!
//! - `make(capacity)` must return a store that shares nothing with the ones
//!   returned before (a new key prefix, schema or database each time) and
//!   holds at most `capacity` entries. The once store and the registry take
//!   no capacity; the once store's windows are given as [`OnceWindows`].
//! - The concurrency checks spawn tokio tasks: run them on a multi-thread
//!   runtime, so that the tasks really race.
//! - Each check is a `pub(crate)` function of its own, to run (or skip) one
//!   at a time; the `*_suite` functions run them all.
//! - Time is explicit: sessions and pending handshakes are made at [`T0`]
//!   (a fixed instant, in ms) and swept at instants after it, and once-uses
//!   are accepted "at" a given `now_ms`. A store must decide by the `now_ms`
//!   it is given, not by its own clock.
//!
//! The values stored are real: sessions and pending handshakes come from
//! handshakes run in memory against the core ([`Maker`]), enrolled devices
//! from real enrollments.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::arithmetic_side_effects
)]

use oncewire::cache::{Once, Purpose};
use oncewire::clock::Clock;
use oncewire::device::{Admission, EnrolledDevice, ReEnrollment};
use oncewire::handshake::MAX_HANDSHAKE_LEN;
use oncewire_http::provider::{
    ClientAwaitResponse, ClientHandshake, EnrollmentChallenge, Prover, ServerAwaitFinish, ServerKey, Session,
    SoftwareSigner,
};

use oncewire::replay::Freshness;
use oncewire::rng::{OsRng, TryCryptoRng, TryRng};
use oncewire::wire::buffer_len;
use oncewire::{DeviceId, DeviceSigner, Error, Expiry, Limits, PublicKey, Secret};
use oncewire_http::store::{DeviceRegistry, OnceStore, PendingStore, Refusal, SessionId, SessionStore};
use std::future::Future;
use std::sync::Arc;
use tokio::sync::Barrier;

/// 2026-01-01T00:00:00Z: when every session and pending handshake of the
/// suite is made.
pub(crate) const T0: u64 = 1_767_225_600_000;

/// A clock stopped at one instant.
#[derive(Clone, Copy, Debug)]
pub(crate) struct At(pub(crate) u64);

impl Clock for At {
    fn now_ms(&self) -> u64 {
        self.0
    }
}

/// A deterministic RNG (splitmix64): the same seed draws the same handshake
/// id and ephemeral keys, so two handshakes with one seed make two sessions
/// with one id (what a store must never let replace each other).
pub(crate) struct SeededRng(u64);

impl TryRng for SeededRng {
    type Error = core::convert::Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        Ok((self.try_next_u64()? >> 32) as u32)
    }
    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Ok(z ^ (z >> 31))
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        for chunk in dst.chunks_mut(8) {
            let word = self.try_next_u64()?.to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
        Ok(())
    }
}
impl TryCryptoRng for SeededRng {}

// ---------------------------------------------------------------------------
// Real values to store
// ---------------------------------------------------------------------------

/// Makes sessions and pending handshakes by running the core's handshake in
/// memory: one server key, one enrolled device.
pub(crate) struct Maker {
    server: ServerKey,
    device: DeviceId,
    /// The device key's scalar: each handshake signs with a signer made from it.
    signer_secret: Secret<32>,
    device_key: PublicKey,
}

impl Maker {
    pub(crate) fn new() -> Self {
        let server: ServerKey = ServerKey::generate(&mut OsRng).unwrap();
        let mut bytes = [0u8; 32];
        OsRng.try_fill_bytes(&mut bytes).unwrap();
        let signer_secret = Secret::new(bytes);
        let signer: SoftwareSigner = SoftwareSigner::from_bytes(&signer_secret).unwrap();
        let device_key = signer.public_key().unwrap();
        Self { server, device: DeviceId::new(b"store-suite").unwrap(), signer_secret, device_key }
    }

    /// The device every session is with.
    pub(crate) fn device(&self) -> DeviceId {
        self.device
    }

    /// Message 1 and the server's answer at `T0`: the pending handshake,
    /// the client's state and message 2.
    fn pending_with(
        &self,
        rng: &mut impl TryCryptoRng,
        limits: Limits,
    ) -> (ServerAwaitFinish, ClientAwaitResponse, Vec<u8>) {
        let clock = At(T0);
        let mut m1 = [0u8; MAX_HANDSHAKE_LEN];
        let (client, n1) = ClientHandshake::start(*self.server.public_key(), rng, &clock, &mut m1).unwrap();
        let mut m2 = [0u8; MAX_HANDSHAKE_LEN];
        let (pending, n2) = self.server.accept(rng, &clock, &m1[..n1], limits, &mut m2).unwrap();
        (pending, client, m2[..n2].to_vec())
    }

    /// A pending handshake made at `T0`, waiting `timeout_ms` for message 3.
    pub(crate) fn pending(&self, timeout_ms: u64) -> ServerAwaitFinish {
        let limits = Limits { handshake_timeout_ms: timeout_ms, ..Limits::DEFAULT };
        self.pending_with(&mut OsRng, limits).0
    }

    /// Two pending handshakes with one id (the same seed), one waiting
    /// `timeout_ms` and one waiting `other_timeout_ms`: told apart by their
    /// deadlines.
    pub(crate) fn twin_pending(&self, seed: u64, timeout_ms: u64, other_timeout_ms: u64) -> [ServerAwaitFinish; 2] {
        [timeout_ms, other_timeout_ms].map(|t| {
            let limits = Limits { handshake_timeout_ms: t, ..Limits::DEFAULT };
            self.pending_with(&mut SeededRng(seed), limits).0
        })
    }

    /// The server's session of a handshake run to the end at `T0`, living
    /// `lifetime_ms`.
    fn session_with(&self, rng: &mut impl TryCryptoRng, lifetime_ms: u64) -> Session {
        let clock = At(T0);
        let (pending, client, m2) = self.pending_with(rng, Limits::DEFAULT.with_lifetime(lifetime_ms));
        let mut m3 = [0u8; MAX_HANDSHAKE_LEN];
        let mut signer: SoftwareSigner = SoftwareSigner::from_bytes(&self.signer_secret).unwrap();
        let (_client_session, n3): (Session, usize) =
            client.finish(&clock, &m2, self.device, &mut signer, Limits::DEFAULT, &mut m3).unwrap();
        let step = pending.read_finish::<32>(&clock, &mut m3[..n3]).unwrap();
        assert_eq!(step.device(), &self.device);
        step.verify(&clock, &self.device_key).unwrap()
    }

    /// Both ends of a session established at `T0`: (client, server).
    pub(crate) fn pair(&self) -> (Session, Session) {
        let clock = At(T0);
        let (pending, client, m2) = self.pending_with(&mut OsRng, Limits::DEFAULT);
        let mut m3 = [0u8; MAX_HANDSHAKE_LEN];
        let mut signer: SoftwareSigner = SoftwareSigner::from_bytes(&self.signer_secret).unwrap();
        let (c, n3): (Session, usize) =
            client.finish(&clock, &m2, self.device, &mut signer, Limits::DEFAULT, &mut m3).unwrap();
        let step = pending.read_finish::<32>(&clock, &mut m3[..n3]).unwrap();
        (c, step.verify(&clock, &self.device_key).unwrap())
    }

    /// A session established at `T0`, living `lifetime_ms`.
    pub(crate) fn session(&self, lifetime_ms: u64) -> Session {
        self.session_with(&mut OsRng, lifetime_ms)
    }

    /// Two sessions with one id (the same seed).
    pub(crate) fn twin_sessions(&self, seed: u64) -> [Session; 2] {
        [(); 2].map(|()| self.session_with(&mut SeededRng(seed), 3_600_000))
    }
}

/// The id a session is stored under.
pub(crate) fn id_of(s: &Session) -> SessionId {
    *s.session_id()
}

/// A new device key and its verified enrollment under `device`.
pub(crate) fn enrollment(device: &str) -> EnrolledDevice {
    let server: ServerKey = ServerKey::generate(&mut OsRng).unwrap();
    let clock = At(T0);
    let challenge: EnrollmentChallenge = EnrollmentChallenge::issue(&mut OsRng, &clock, 60_000).unwrap();
    let signer: SoftwareSigner = SoftwareSigner::generate(&mut OsRng).unwrap();
    let request = Prover::with_provider(signer)
        .answer_enrollment(server.public_key(), challenge.nonce(), DeviceId::new(device.as_bytes()).unwrap())
        .unwrap();
    challenge.verify(server.public_key(), &request, &clock).unwrap()
}

// ---------------------------------------------------------------------------
// SessionStore
// ---------------------------------------------------------------------------

/// Every check of a [`SessionStore`]; `make(capacity)` gives a fresh store.
pub(crate) async fn session_store_suite<S, F, Fut>(make: F)
where
    S: SessionStore,
    F: Fn(usize) -> Fut,
    Fut: Future<Output = S>,
{
    let maker = Maker::new();
    sessions_insert_get_remove(&make(8).await, &maker).await;
    sessions_capacity(&make(3).await, 3, &maker).await;
    sessions_never_replace(&make(8).await, &maker).await;
    sessions_sweep_drops_expired_only(&make(8).await, &maker).await;
    sessions_concurrent_inserts_stay_bounded(Arc::new(make(8).await), 8, &maker).await;
    sessions_commit_once_then_reply(&make(8).await, &maker).await;
    sessions_concurrent_commits_accept_one(Arc::new(make(8).await), &maker).await;
}

/// Seals a request from the client at `T0`.
fn sealed_request(client: &mut Session, body: &[u8]) -> (Vec<u8>, oncewire::RequestId) {
    let mut f = vec![0u8; buffer_len(body.len())];
    let (n, id) = client.seal_request(&At(T0), body, &mut f).unwrap();
    f.truncate(n);
    (f, id)
}

/// A frame the session authenticated is recorded once by `commit` (a
/// second commit, or the same frame again, is refused), `reserve` makes
/// room for the reply, and the reply opens at the client.
pub(crate) async fn sessions_commit_once_then_reply<S: SessionStore>(store: &S, maker: &Maker) {
    let (mut client, server) = maker.pair();
    let id = id_of(&server);
    let handle = store.insert(id, server).await.unwrap();
    for body in [&b"first"[..], b"second"] {
        let (frame, rid) = sealed_request(&mut client, body);
        let mut f = frame.clone();
        let used = {
            let mut s = handle.lock().unwrap();
            let (oncewire::Received::Record(o, got), used) = s.open_unrecorded(&At(T0), &mut f).unwrap() else {
                panic!("a record")
            };
            assert_eq!(o.payload, body);
            assert_eq!(got, rid);
            used
        };
        store.commit(&id, &handle, used).await.unwrap();
        assert!(
            matches!(store.commit(&id, &handle, used).await, Err(Error::Replay | Error::Stale)),
            "a frame is recorded once"
        );
        // The same frame again: refused at the open or at the commit.
        let got = store.get(&id).await.unwrap().expect("stored");
        let mut again = frame.clone();
        let reopened = got.lock().unwrap().open_unrecorded(&At(T0), &mut again).map(|(_, u)| u);
        match reopened {
            Ok(u) => assert!(matches!(store.commit(&id, &got, u).await, Err(Error::Replay | Error::Stale))),
            Err(e) => assert!(matches!(e, Error::Replay | Error::Stale), "{e:?}"),
        }
        store.reserve(&id, &handle, 64).await.unwrap();
        let mut out = vec![0u8; buffer_len(64)];
        let n = handle.lock().unwrap().seal_response(&At(T0), rid, &[7u8; 64], &mut out).unwrap();
        assert_eq!(client.open_response(&At(T0), rid, &mut out[..n]).unwrap().payload, &[7u8; 64]);
    }
    // A reply larger than one sequence number's share of blocks (16 KiB).
    let (frame, rid) = sealed_request(&mut client, b"big");
    let mut f = frame.clone();
    let used = handle.lock().unwrap().open_unrecorded(&At(T0), &mut f).unwrap().1;
    store.commit(&id, &handle, used).await.unwrap();
    let big = vec![9u8; 100_000];
    store.reserve(&id, &handle, big.len()).await.unwrap();
    let mut out = vec![0u8; buffer_len(big.len())];
    let n = handle.lock().unwrap().seal_response(&At(T0), rid, &big, &mut out).unwrap();
    assert_eq!(client.open_response(&At(T0), rid, &mut out[..n]).unwrap().payload, &big[..]);
}

/// Many tasks committing one authenticated frame at once: exactly one is
/// accepted.
pub(crate) async fn sessions_concurrent_commits_accept_one<S: SessionStore>(store: Arc<S>, maker: &Maker) {
    let (mut client, server) = maker.pair();
    let id = id_of(&server);
    let handle = store.insert(id, server).await.unwrap();
    let (frame, _) = sealed_request(&mut client, b"once");
    let mut f = frame.clone();
    let used = handle.lock().unwrap().open_unrecorded(&At(T0), &mut f).unwrap().1;
    let tasks = 16;
    let barrier = Arc::new(Barrier::new(tasks));
    let mut joins = Vec::new();
    for _ in 0..tasks {
        let (store, handle, barrier) = (store.clone(), handle.clone(), barrier.clone());
        joins.push(tokio::spawn(async move {
            barrier.wait().await;
            store.commit(&id, &handle, used).await
        }));
    }
    let mut accepted = 0;
    for j in joins {
        match j.await.unwrap() {
            Ok(()) => accepted += 1,
            Err(e) => assert!(matches!(e, Error::Replay | Error::Stale), "{e:?}"),
        }
    }
    assert_eq!(accepted, 1, "one commit of one frame");
}

/// Insert, get, remove: the handle holds the session stored, and a removed
/// id is gone.
pub(crate) async fn sessions_insert_get_remove<S: SessionStore>(store: &S, maker: &Maker) {
    assert!(store.is_empty());
    let (a, b) = (maker.session(3_600_000), maker.session(3_600_000));
    let (ia, ib) = (id_of(&a), id_of(&b));
    let expires = a.expires_at_ms();
    let handle = store.insert(ia, a).await.unwrap();
    assert_eq!(handle.lock().unwrap().session_id(), &ia);
    store.insert(ib, b).await.unwrap();
    assert_eq!(store.len(), 2);

    let got = store.get(&ia).await.unwrap().expect("stored");
    {
        let s = got.lock().unwrap();
        assert_eq!(s.session_id(), &ia);
        assert_eq!(s.device(), Some(&maker.device()));
        assert_eq!(s.expires_at_ms(), expires);
    }
    assert!(store.get(&[0xa5; 8]).await.unwrap().is_none(), "an id never stored");

    store.remove(&ia).await.unwrap();
    assert!(store.get(&ia).await.unwrap().is_none());
    assert_eq!(store.len(), 1);
    assert!(store.get(&ib).await.unwrap().is_some(), "removing one leaves the other");
    // Removing what is not there is not an error, and changes nothing.
    store.remove(&ia).await.unwrap();
    store.remove(&[0xa5; 8]).await.unwrap();
    assert_eq!(store.len(), 1);
    store.remove(&ib).await.unwrap();
    assert!(store.is_empty());
}

/// A full store refuses with `CapacityExceeded`, and the refused insert
/// leaves the count (and the store) as it was; a removal makes room.
pub(crate) async fn sessions_capacity<S: SessionStore>(store: &S, capacity: usize, maker: &Maker) {
    let mut ids = Vec::new();
    for _ in 0..capacity {
        let s = maker.session(3_600_000);
        ids.push(id_of(&s));
        store.insert(id_of(&s), s).await.unwrap();
    }
    assert_eq!(store.len(), capacity);
    let extra = maker.session(3_600_000);
    let extra_id = id_of(&extra);
    assert_eq!(store.insert(extra_id, extra).await.err(), Some(Error::CapacityExceeded));
    assert_eq!(store.len(), capacity, "a refused insert is not counted");
    assert!(store.get(&extra_id).await.unwrap().is_none(), "a refused insert is not stored");
    for id in &ids {
        assert!(store.get(id).await.unwrap().is_some());
    }
    // Refused again: the refusal did not leak a slot either way.
    let again = maker.session(3_600_000);
    assert_eq!(store.insert(id_of(&again), again).await.err(), Some(Error::CapacityExceeded));

    store.remove(&ids[0]).await.unwrap();
    let room = maker.session(3_600_000);
    store.insert(id_of(&room), room).await.unwrap();
    assert_eq!(store.len(), capacity);
}

/// An id already held is never replaced (`Misuse`): the first session stays,
/// and the count does not move.
pub(crate) async fn sessions_never_replace<S: SessionStore>(store: &S, maker: &Maker) {
    let [mut first, second] = maker.twin_sessions(42);
    let id = id_of(&first);
    assert_eq!(id_of(&second), id, "one seed, one id");
    // Use the first so that it can be told apart from its twin.
    let mut out = vec![0u8; buffer_len(2)];
    first.seal(&At(T0), b"hi", &mut out).unwrap();
    let used = first.next_seq();
    assert_ne!(used, second.next_seq());
    store.insert(id, first).await.unwrap();
    assert_eq!(store.insert(id, second).await.err(), Some(Error::Misuse));
    assert_eq!(store.len(), 1);
    let got = store.get(&id).await.unwrap().unwrap();
    assert_eq!(got.lock().unwrap().next_seq(), used, "the first session was kept");
}

/// Sweeping at `now` drops the sessions expired at `now`, and only those.
pub(crate) async fn sessions_sweep_drops_expired_only<S: SessionStore>(store: &S, maker: &Maker) {
    let short = maker.session(1_000);
    let long = maker.session(3_600_000);
    let (is, il) = (id_of(&short), id_of(&long));
    let short_expiry = short.expires_at_ms();
    assert_eq!(short_expiry, T0 + 1_000);
    store.insert(is, short).await.unwrap();
    store.insert(il, long).await.unwrap();

    assert_eq!(store.sweep(T0).await, 0);
    assert_eq!(store.sweep(short_expiry).await, 0, "a session lives up to its expiry");
    assert_eq!(store.len(), 2);
    assert_eq!(store.sweep(short_expiry + 1).await, 1);
    assert_eq!(store.len(), 1);
    assert!(store.get(&is).await.unwrap().is_none());
    assert!(store.get(&il).await.unwrap().is_some());
    assert_eq!(store.sweep(short_expiry + 1).await, 0, "nothing left to sweep");
    assert_eq!(store.sweep(T0 + 3_600_001).await, 1);
    assert!(store.is_empty());
}

/// Many tasks inserting at once never take the store past its bound: exactly
/// `capacity` inserts succeed, every other one is `CapacityExceeded`.
pub(crate) async fn sessions_concurrent_inserts_stay_bounded<S: SessionStore>(
    store: Arc<S>,
    capacity: usize,
    maker: &Maker,
) {
    let sessions: Vec<Session> = (0..capacity * 4).map(|_| maker.session(3_600_000)).collect();
    let start = Arc::new(Barrier::new(sessions.len()));
    let tasks: Vec<_> = sessions
        .into_iter()
        .map(|session| {
            let (store, start) = (store.clone(), start.clone());
            tokio::spawn(async move {
                let id = id_of(&session);
                start.wait().await;
                store.insert(id, session).await.map(|_| id)
            })
        })
        .collect();
    let mut stored = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            Ok(id) => stored.push(id),
            Err(e) => assert_eq!(e, Error::CapacityExceeded),
        }
        assert!(store.len() <= capacity);
    }
    assert_eq!(stored.len(), capacity);
    assert_eq!(store.len(), capacity);
    for id in &stored {
        assert!(store.get(id).await.unwrap().is_some());
    }
}

// ---------------------------------------------------------------------------
// PendingStore
// ---------------------------------------------------------------------------

/// Every check of a [`PendingStore`]; `make(capacity)` gives a fresh store.
pub(crate) async fn pending_store_suite<P, F, Fut>(make: F)
where
    P: PendingStore,
    F: Fn(usize) -> Fut,
    Fut: Future<Output = P>,
{
    let maker = Maker::new();
    pending_insert_take_once(&make(8).await, &maker).await;
    pending_capacity(&make(3).await, 3, &maker).await;
    pending_never_replace(&make(8).await, &maker).await;
    pending_sweep_drops_expired_only(&make(8).await, &maker).await;
    pending_concurrent_take_is_once(Arc::new(make(8).await), &maker).await;
    pending_concurrent_inserts_stay_bounded(Arc::new(make(8).await), 8, &maker).await;
}

/// A pending handshake is taken once: the second take finds nothing.
pub(crate) async fn pending_insert_take_once<P: PendingStore>(store: &P, maker: &Maker) {
    assert!(store.is_empty());
    let (a, b) = (maker.pending(30_000), maker.pending(30_000));
    let (ia, ib) = (*a.session_id(), *b.session_id());
    store.insert(ia, a).await.unwrap();
    store.insert(ib, b).await.unwrap();
    assert_eq!(store.len(), 2);

    let taken = store.take(&ia).await.unwrap().expect("stored");
    assert_eq!(taken.session_id(), &ia);
    assert_eq!(taken.deadline_ms(), T0 + 30_000);
    assert!(store.take(&ia).await.unwrap().is_none(), "taken once");
    assert_eq!(store.len(), 1);
    assert!(store.take(&[0xa5; 8]).await.unwrap().is_none(), "an id never stored");
    assert_eq!(store.take(&ib).await.unwrap().unwrap().session_id(), &ib);
    assert!(store.is_empty());
}

/// A full store refuses with `CapacityExceeded` and its count stays; a take
/// makes room.
pub(crate) async fn pending_capacity<P: PendingStore>(store: &P, capacity: usize, maker: &Maker) {
    let mut ids = Vec::new();
    for _ in 0..capacity {
        let p = maker.pending(30_000);
        ids.push(*p.session_id());
        store.insert(*p.session_id(), p).await.unwrap();
    }
    let extra = maker.pending(30_000);
    let extra_id = *extra.session_id();
    assert_eq!(store.insert(extra_id, extra).await.err(), Some(Error::CapacityExceeded));
    assert_eq!(store.len(), capacity, "a refused insert is not counted");
    assert!(store.take(&extra_id).await.unwrap().is_none(), "a refused insert is not stored");
    assert_eq!(store.len(), capacity);

    assert!(store.take(&ids[0]).await.unwrap().is_some());
    let room = maker.pending(30_000);
    store.insert(*room.session_id(), room).await.unwrap();
    assert_eq!(store.len(), capacity);
}

/// An id already held is never replaced (`Misuse`).
pub(crate) async fn pending_never_replace<P: PendingStore>(store: &P, maker: &Maker) {
    let [first, second] = maker.twin_pending(7, 30_000, 10_000);
    let id = *first.session_id();
    assert_eq!(second.session_id(), &id, "one seed, one id");
    store.insert(id, first).await.unwrap();
    assert_eq!(store.insert(id, second).await.err(), Some(Error::Misuse));
    assert_eq!(store.len(), 1);
    assert_eq!(store.take(&id).await.unwrap().unwrap().deadline_ms(), T0 + 30_000, "the first was kept");
    assert!(store.is_empty());
}

/// Sweeping at `now` drops the handshakes past their deadline, only those.
pub(crate) async fn pending_sweep_drops_expired_only<P: PendingStore>(store: &P, maker: &Maker) {
    let (short, long) = (maker.pending(1_000), maker.pending(30_000));
    let (is, il) = (*short.session_id(), *long.session_id());
    store.insert(is, short).await.unwrap();
    store.insert(il, long).await.unwrap();
    assert_eq!(store.sweep(T0 + 1_000).await, 0, "a handshake waits up to its deadline");
    assert_eq!(store.sweep(T0 + 1_001).await, 1);
    assert_eq!(store.len(), 1);
    assert!(store.take(&is).await.unwrap().is_none());
    assert!(store.take(&il).await.unwrap().is_some());
}

/// Many tasks taking one pending handshake at once: exactly one gets it.
pub(crate) async fn pending_concurrent_take_is_once<P: PendingStore>(store: Arc<P>, maker: &Maker) {
    let p = maker.pending(30_000);
    let id = *p.session_id();
    store.insert(id, p).await.unwrap();
    let start = Arc::new(Barrier::new(32));
    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let (store, start) = (store.clone(), start.clone());
            tokio::spawn(async move {
                start.wait().await;
                store.take(&id).await.unwrap().is_some()
            })
        })
        .collect();
    let mut got = 0;
    for t in tasks {
        got += usize::from(t.await.unwrap());
    }
    assert_eq!(got, 1);
    assert!(store.is_empty());
}

/// Many tasks inserting at once never take the store past its bound.
pub(crate) async fn pending_concurrent_inserts_stay_bounded<P: PendingStore>(
    store: Arc<P>,
    capacity: usize,
    maker: &Maker,
) {
    let pending: Vec<ServerAwaitFinish> = (0..capacity * 4).map(|_| maker.pending(30_000)).collect();
    let start = Arc::new(Barrier::new(pending.len()));
    let tasks: Vec<_> = pending
        .into_iter()
        .map(|p| {
            let (store, start) = (store.clone(), start.clone());
            tokio::spawn(async move {
                start.wait().await;
                store.insert(*p.session_id(), p).await
            })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(()) => ok += 1,
            Err(e) => assert_eq!(e, Error::CapacityExceeded),
        }
        assert!(store.len() <= capacity);
    }
    assert_eq!(ok, capacity);
    assert_eq!(store.len(), capacity);
}

// ---------------------------------------------------------------------------
// OnceStore
// ---------------------------------------------------------------------------

/// The windows a once store was made with: `freshness` for one-shot
/// requests and token proofs, `challenge_ttl_ms` for challenges (whose
/// timestamp is their expiry, acceptable from now to now + ttl).
#[derive(Clone, Copy, Debug)]
pub(crate) struct OnceWindows {
    pub(crate) freshness: Freshness,
    pub(crate) challenge_ttl_ms: u64,
}

const PURPOSES: [Purpose; 3] = [Purpose::Requests, Purpose::TokenProofs, Purpose::Challenges];

/// A use with a random id, stamped `timestamp_ms`.
pub(crate) fn once(purpose: Purpose, timestamp_ms: u64) -> Once {
    let mut id = [0u8; 12];
    OsRng.try_fill_bytes(&mut id).unwrap();
    Once { purpose, id, timestamp_ms }
}

/// A use that is fresh at `now` for its purpose (a challenge expires later).
pub(crate) fn fresh(purpose: Purpose, now: u64) -> Once {
    once(purpose, if purpose == Purpose::Challenges { now + 1_000 } else { now })
}

fn refusal(error: Error, set: Purpose) -> Result<(), Refusal> {
    Err(Refusal { error, set: Some(set) })
}

/// Every check of an [`OnceStore`]; `make()` gives a fresh store made with
/// `windows`.
pub(crate) async fn once_store_suite<O, F, Fut>(make: F, windows: OnceWindows)
where
    O: OnceStore,
    F: Fn() -> Fut,
    Fut: Future<Output = O>,
{
    once_accepts_once_then_replay(&make().await).await;
    once_all_or_none(&make().await).await;
    once_duplicate_in_one_batch(&make().await).await;
    once_outside_the_window(&make().await, windows).await;
    once_purposes_are_apart(&make().await, windows).await;
    once_concurrent_accept_is_once(Arc::new(make().await)).await;
    once_concurrent_batches_all_or_none(Arc::new(make().await)).await;
}

/// Each purpose: accepted once, then `Replay` (named by its set), however
/// many times it comes back; an empty batch is accepted and records nothing.
pub(crate) async fn once_accepts_once_then_replay<O: OnceStore>(store: &O) {
    let now = T0;
    store.accept(&[], now).await.unwrap();
    for p in PURPOSES {
        let o = fresh(p, now);
        store.accept(&[o], now).await.unwrap();
        assert_eq!(store.accept(&[o], now).await, refusal(Error::Replay, p));
        assert_eq!(store.accept(&[o], now + 10).await, refusal(Error::Replay, p), "later, still a replay");
        // Another id of the same purpose is not.
        store.accept(&[fresh(p, now)], now).await.unwrap();
    }
}

/// The parts of one request are recorded together or not at all: a batch
/// with one replayed part records none of the others (checked by accepting
/// each of them alone afterwards), whatever the position of the replay.
pub(crate) async fn once_all_or_none<O: OnceStore>(store: &O) {
    let now = T0;
    // A used challenge, then a request with that challenge and a new proof.
    let challenge = fresh(Purpose::Challenges, now);
    store.accept(&[challenge], now).await.unwrap();
    let proof = fresh(Purpose::TokenProofs, now);
    assert_eq!(store.accept(&[challenge, proof], now).await, refusal(Error::Replay, Purpose::Challenges));
    assert_eq!(store.accept(&[proof, challenge], now).await, refusal(Error::Replay, Purpose::Challenges));
    assert_eq!(store.accept(&[proof], now).await, Ok(()), "a refused batch recorded its proof");

    // A used proof with a new challenge.
    let challenge = fresh(Purpose::Challenges, now);
    assert_eq!(store.accept(&[challenge, proof], now).await, refusal(Error::Replay, Purpose::TokenProofs));
    assert_eq!(store.accept(&[challenge], now).await, Ok(()), "a refused batch recorded its challenge");

    // Three purposes, the last one stale: nothing recorded.
    let parts = [fresh(Purpose::Requests, now), fresh(Purpose::TokenProofs, now)];
    let stale = once(Purpose::Requests, now - 3_600_000);
    assert!(store.accept(&[parts[0], parts[1], fresh(Purpose::Challenges, now), stale], now).await.is_err());
    assert_eq!(store.accept(&parts, now).await, Ok(()), "a refused batch recorded some of its parts");
}

/// The same use twice in one batch is a replay of itself: refused, and not
/// recorded.
pub(crate) async fn once_duplicate_in_one_batch<O: OnceStore>(store: &O) {
    let now = T0;
    for p in PURPOSES {
        let o = fresh(p, now);
        assert_eq!(store.accept(&[o, o], now).await, refusal(Error::Replay, p));
        let other = fresh(Purpose::Requests, now);
        assert!(store.accept(&[other, o, o], now).await.is_err());
        assert_eq!(store.accept(&[o], now).await, Ok(()), "a refused duplicate was recorded");
        assert_eq!(store.accept(&[other], now).await, Ok(()), "a refused batch recorded some of its parts");
    }
}

/// A use outside its purpose's window is refused (`Stale` / `FromFuture`;
/// for a challenge, `Expired(Challenge)`), and is not recorded: a use
/// refused as from the future is accepted once its time comes.
pub(crate) async fn once_outside_the_window<O: OnceStore>(store: &O, w: OnceWindows) {
    let now = T0;
    let f = w.freshness;
    for p in [Purpose::Requests, Purpose::TokenProofs] {
        let old = once(p, now - f.max_age_ms - 1);
        assert_eq!(store.accept(&[old], now).await, refusal(Error::Stale, p));
        store.accept(&[once(p, now - f.max_age_ms)], now).await.unwrap();
        let ahead = once(p, now + f.max_future_skew_ms + 1);
        assert_eq!(store.accept(&[ahead], now).await, refusal(Error::FromFuture, p));
        store.accept(&[ahead], now + 1).await.unwrap();
    }
    let expired = Error::Expired(Expiry::Challenge);
    let gone = once(Purpose::Challenges, now - 1);
    assert_eq!(store.accept(&[gone], now).await, refusal(expired, Purpose::Challenges));
    let far = once(Purpose::Challenges, now + w.challenge_ttl_ms + 1);
    assert_eq!(store.accept(&[far], now).await, refusal(expired, Purpose::Challenges));
    store.accept(&[far], now + 1).await.unwrap();
    store.accept(&[once(Purpose::Challenges, now)], now).await.unwrap();
}

/// The sets are apart: one id used for one purpose is new for another, each
/// purpose has its own window, and a refusal names the set that refused.
pub(crate) async fn once_purposes_are_apart<O: OnceStore>(store: &O, w: OnceWindows) {
    let now = T0;
    let id = [0x5a; 12];
    for p in PURPOSES {
        let o = Once { purpose: p, id, timestamp_ms: if p == Purpose::Challenges { now + 1 } else { now } };
        store.accept(&[o], now).await.unwrap();
    }
    for p in PURPOSES {
        let o = Once { purpose: p, id, timestamp_ms: if p == Purpose::Challenges { now + 1 } else { now } };
        assert_eq!(store.accept(&[o], now).await, refusal(Error::Replay, p));
    }
    // A timestamp a challenge may carry (an expiry ahead) is from the
    // future for a one-shot request, and one a request may carry (a moment
    // ago) is past for a challenge.
    assert!(w.challenge_ttl_ms > w.freshness.max_future_skew_ms + 1, "windows too close for this check");
    let ahead = now + w.freshness.max_future_skew_ms + 1;
    store.accept(&[once(Purpose::Challenges, ahead)], now).await.unwrap();
    assert_eq!(
        store.accept(&[once(Purpose::Requests, ahead)], now).await,
        refusal(Error::FromFuture, Purpose::Requests)
    );
    store.accept(&[once(Purpose::Requests, now - 1)], now).await.unwrap();
    assert_eq!(
        store.accept(&[once(Purpose::Challenges, now - 1)], now).await,
        refusal(Error::Expired(Expiry::Challenge), Purpose::Challenges)
    );
}

/// 32 tasks accepting the same use at once: exactly one succeeds, every
/// other one is a replay.
pub(crate) async fn once_concurrent_accept_is_once<O: OnceStore>(store: Arc<O>) {
    let now = T0;
    for p in PURPOSES {
        let o = fresh(p, now);
        let start = Arc::new(Barrier::new(32));
        let tasks: Vec<_> = (0..32)
            .map(|_| {
                let (store, start) = (store.clone(), start.clone());
                tokio::spawn(async move {
                    start.wait().await;
                    store.accept(&[o], now).await
                })
            })
            .collect();
        let mut ok = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(()) => ok += 1,
                Err(r) => assert_eq!(r, Refusal { error: Error::Replay, set: Some(p) }),
            }
        }
        assert_eq!(ok, 1, "{p:?}");
    }
}

/// 32 tasks each presenting one shared challenge with a proof of its own:
/// one request wins, and the 31 losers' proofs were not recorded.
pub(crate) async fn once_concurrent_batches_all_or_none<O: OnceStore>(store: Arc<O>) {
    let now = T0;
    let challenge = fresh(Purpose::Challenges, now);
    let proofs: Vec<Once> = (0..32).map(|_| fresh(Purpose::TokenProofs, now)).collect();
    let start = Arc::new(Barrier::new(proofs.len()));
    let tasks: Vec<_> = proofs
        .iter()
        .map(|&proof| {
            let (store, start) = (store.clone(), start.clone());
            tokio::spawn(async move {
                start.wait().await;
                store.accept(&[challenge, proof], now).await.is_ok()
            })
        })
        .collect();
    let mut winners = Vec::new();
    for (t, proof) in tasks.into_iter().zip(&proofs) {
        if t.await.unwrap() {
            winners.push(*proof);
        }
    }
    assert_eq!(winners.len(), 1);
    for proof in &proofs {
        let alone = store.accept(&[*proof], now).await;
        if winners.contains(proof) {
            assert_eq!(alone, refusal(Error::Replay, Purpose::TokenProofs));
        } else {
            assert_eq!(alone, Ok(()), "a losing request's proof was recorded");
        }
    }
}

/// However many uses come after it, an accepted use is never accepted again
/// (a bounded store evicts, and then refuses what it evicted as `Stale`).
pub(crate) async fn once_flood_never_readmits<O: OnceStore>(store: &O, flood: usize) {
    let now = T0;
    let first = fresh(Purpose::Requests, now);
    store.accept(&[first], now).await.unwrap();
    for i in 0..flood {
        let t = now + 1 + u64::try_from(i).unwrap();
        let _ = store.accept(&[once(Purpose::Requests, t)], t).await;
    }
    // Still inside `first`'s freshness window (for a flood shorter than it).
    let later = now + 1 + u64::try_from(flood).unwrap();
    let again = store.accept(&[first], later).await;
    assert!(again.is_err(), "an accepted use was accepted again after a flood");
}

// ---------------------------------------------------------------------------
// DeviceRegistry
// ---------------------------------------------------------------------------

/// Every check of a [`DeviceRegistry`]; `make()` gives a fresh, empty one.
pub(crate) async fn registry_suite<R, F, Fut>(make: F)
where
    R: DeviceRegistry,
    F: Fn() -> Fut,
    Fut: Future<Output = R>,
{
    registry_enroll_and_lookup(&make().await).await;
    registry_re_enrollment(&make().await).await;
    registry_concurrent_enrollments(Arc::new(make().await)).await;
}

/// Enroll, then look up: the key enrolled, and nothing for an unknown id.
pub(crate) async fn registry_enroll_and_lookup<R: DeviceRegistry>(registry: &R) {
    let unknown = DeviceId::new(b"nobody").unwrap();
    assert_eq!(registry.device_key(&unknown).await.unwrap(), None);
    let a = enrollment("phone-a");
    let b = enrollment("phone-b");
    assert_eq!(registry.enroll(a, ReEnrollment::Refuse).await.unwrap(), Admission::New);
    assert_eq!(registry.enroll(b, ReEnrollment::Replace).await.unwrap(), Admission::New);
    assert_eq!(registry.device_key(&a.device).await.unwrap(), Some(a.public_key));
    assert_eq!(registry.device_key(&b.device).await.unwrap(), Some(b.public_key));
    assert_eq!(registry.device_key(&unknown).await.unwrap(), None);
}

/// The re-enrollment policy (`SPEC.md` §8.3): the same key again changes
/// nothing; another key is refused under `Refuse` (the enrolled key stays)
/// and replaces it under `Replace`.
pub(crate) async fn registry_re_enrollment<R: DeviceRegistry>(registry: &R) {
    let first = enrollment("lock-1");
    registry.enroll(first, ReEnrollment::Refuse).await.unwrap();
    for policy in [ReEnrollment::Refuse, ReEnrollment::Replace] {
        assert_eq!(registry.enroll(first, policy).await.unwrap(), Admission::Unchanged);
    }
    let mut other = enrollment("lock-1");
    assert_eq!(other.device, first.device);
    assert_eq!(registry.enroll(other, ReEnrollment::Refuse).await.err(), Some(Error::AlreadyEnrolled));
    assert_eq!(registry.device_key(&first.device).await.unwrap(), Some(first.public_key), "refused: kept");
    assert_eq!(registry.enroll(other, ReEnrollment::Replace).await.unwrap(), Admission::Replaced);
    assert_eq!(registry.device_key(&first.device).await.unwrap(), Some(other.public_key), "replaced");
    // The old key is now the other one.
    assert_eq!(registry.enroll(first, ReEnrollment::Refuse).await.err(), Some(Error::AlreadyEnrolled));
    other.public_key = first.public_key;
    assert_eq!(registry.enroll(other, ReEnrollment::Refuse).await.err(), Some(Error::AlreadyEnrolled));
}

/// 16 keys enrolling one id at once under `Refuse`: exactly one becomes the
/// device's key, the others are refused (the policy is applied atomically
/// with the lookup).
pub(crate) async fn registry_concurrent_enrollments<R: DeviceRegistry>(registry: Arc<R>) {
    let candidates: Vec<EnrolledDevice> = (0..16).map(|_| enrollment("contested")).collect();
    let start = Arc::new(Barrier::new(candidates.len()));
    let tasks: Vec<_> = candidates
        .iter()
        .map(|&d| {
            let (registry, start) = (registry.clone(), start.clone());
            tokio::spawn(async move {
                start.wait().await;
                registry.enroll(d, ReEnrollment::Refuse).await
            })
        })
        .collect();
    let mut winner = None;
    for (t, d) in tasks.into_iter().zip(&candidates) {
        match t.await.unwrap() {
            Ok(a) => {
                assert_eq!(a, Admission::New);
                assert!(winner.replace(d.public_key).is_none(), "two keys enrolled one id");
            }
            Err(e) => assert_eq!(e, Error::AlreadyEnrolled),
        }
    }
    let device = candidates[0].device;
    assert_eq!(registry.device_key(&device).await.unwrap(), winner);
    assert!(winner.is_some());
}
