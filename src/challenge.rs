//! Server challenges bound to requests (`SPEC.md` §12).
//!
//! Like Play Integrity and App Attest nonces or DPoP server nonces: the
//! server issues an unpredictable, single-use, expiring challenge; the client
//! answers with `challenge ‖ SHA-256(request bytes)`, usually inside a
//! device-signed or session-sealed request, so the proof covers that exact
//! request and nothing else.
//!
//! Two issuers:
//! - [`StatelessChallenges`]: a challenge is `expiry ‖ 128 random bits ‖
//!   HMAC-SHA256 tag` (truncated to 128 bits), so the server keeps no list of
//!   issued challenges, only a bounded *used* set, a [`NonceRing`] with the
//!   same never-a-replay-hole floor (`SPEC.md` §4.3).
//! - [`ChallengeTable`]: a fixed table of issued challenges, removed on use.
//!
//! Errors: forged → [`Error::Authentication`], expired → [`Error::Expired`],
//! reused → [`Error::Replay`], bound to another request →
//! [`Error::RequestMismatch`]. A failed verification changes nothing but the
//! audit counters.
//!
//! **A used set shared by several servers** (`SPEC.md` §15.1).
//! [`StatelessChallenges::verify_bound_unrecorded`] checks a binding without
//! marking the challenge used and returns its [`Once`]; the store that
//! decides acceptance records it. In memory that store is the issuer itself
//! ([`StatelessChallenges::accept`]) or a [`ReplayCache`](crate::cache::ReplayCache) of used
//! challenges:
//!
//! ```
//! use oncewire::cache::{Purpose, ReplayCache};
//! use oncewire::challenge::StatelessChallenges;
//! use oncewire::clock::{Clock, ManualClock};
//! use oncewire::device::SoftwareSigner;
//! use oncewire::prover::Prover;
//! use oncewire::rng::OsRng;
//! use oncewire::Error;
//!
//! let clock = ManualClock::new(1_767_225_600_000);
//! let ttl = 30_000;
//! let challenges: StatelessChallenges = StatelessChallenges::generate(&mut OsRng, ttl)?;
//! let mut used: ReplayCache =
//!     ReplayCache::generate(Purpose::Challenges, &mut OsRng, <StatelessChallenges>::freshness(ttl))?;
//!
//! let challenge = challenges.issue(&mut OsRng, &clock)?;
//! let request = b"POST /pay 10 EUR to bob";
//! let signer: SoftwareSigner = SoftwareSigner::generate(&mut OsRng)?;
//! let binding = Prover::new(signer).bind(&challenge, request);
//!
//! let once = challenges.verify_bound_unrecorded(&clock, &binding, request)?;
//! // Checked, not recorded: it verifies again until a store accepts it.
//! assert_eq!(challenges.verify_bound_unrecorded(&clock, &binding, request)?, once);
//! used.accept(&once, clock.now_ms())?;
//! assert_eq!(used.accept(&once, clock.now_ms()), Err(Error::Replay));
//! # Ok::<(), oncewire::Error>(())
//! ```

use crate::audit::Audit;
use crate::cache::{Once, Purpose};
use crate::clock::Clock;
use crate::error::{Error, Expiry, Result};
use crate::provider::{CryptoProvider, fill_random};
use crate::replay::snapshot::{Kind, SnapshotKey};
use crate::replay::{Freshness, NonceRing, TimeFloor};
use crate::secret::Secret;
use core::marker::PhantomData;
use rand_core::TryCryptoRng;
use subtle::ConstantTimeEq;

/// Random bits in a challenge: 128.
pub const CHALLENGE_RANDOM_LEN: usize = 16;
/// Length of a stateless challenge: expiry (8) ‖ random (16) ‖ tag (16).
pub const CHALLENGE_LEN: usize = 8 + CHALLENGE_RANDOM_LEN + 16;
/// Length of a request binding: challenge ‖ SHA-256(request).
pub const BINDING_LEN: usize = CHALLENGE_LEN + 32;

/// A challenge as sent to the client.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Challenge([u8; CHALLENGE_LEN]);

impl core::fmt::Debug for Challenge {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Challenge").field("expires_at_ms", &self.expires_at_ms()).finish_non_exhaustive()
    }
}

impl Challenge {
    /// Wraps received bytes (checked when verified).
    ///
    /// # Errors
    /// [`Error::Truncated`] or [`Error::TrailingBytes`] if not exactly [`CHALLENGE_LEN`] bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        crate::wire::exact_len(bytes, CHALLENGE_LEN)?;
        Ok(Self(bytes.try_into().map_err(|_| Error::Truncated)?))
    }

    /// The bytes to send.
    pub const fn as_bytes(&self) -> &[u8; CHALLENGE_LEN] {
        &self.0
    }

    /// The expiry it carries (authenticated only once verified).
    pub fn expires_at_ms(&self) -> u64 {
        let [a, b, c, d, e, f, g, h, ..] = self.0;
        u64::from_be_bytes([a, b, c, d, e, f, g, h])
    }

    fn random(&self) -> [u8; CHALLENGE_RANDOM_LEN] {
        let mut r = [0u8; CHALLENGE_RANDOM_LEN];
        r.copy_from_slice(self.0.get(8..8 + CHALLENGE_RANDOM_LEN).unwrap_or(&[0u8; CHALLENGE_RANDOM_LEN]));
        r
    }

    /// The first 96 random bits: the key of the used set.
    fn id(&self) -> [u8; 12] {
        let mut id = [0u8; 12];
        id.copy_from_slice(self.0.get(8..20).unwrap_or(&[0u8; 12]));
        id
    }

    /// What marking it used records: the id and the expiry.
    pub(crate) fn once(&self) -> Once {
        Once { purpose: Purpose::Challenges, id: self.id(), timestamp_ms: self.expires_at_ms() }
    }

    fn tag(&self) -> &[u8] {
        self.0.get(8 + CHALLENGE_RANDOM_LEN..).unwrap_or_default()
    }

    fn signed_part(&self) -> &[u8] {
        self.0.get(..8 + CHALLENGE_RANDOM_LEN).unwrap_or_default()
    }
}

/// `challenge ‖ request_hash`: the binding of `SPEC.md` §12.
pub(crate) fn binding(challenge: &Challenge, request_hash: &[u8; 32]) -> [u8; BINDING_LEN] {
    let mut out = [0u8; BINDING_LEN];
    let (c, h) = out.split_at_mut(CHALLENGE_LEN);
    c.copy_from_slice(challenge.as_bytes());
    h.copy_from_slice(request_hash);
    out
}

/// Splits and checks a binding against the request, in constant time.
fn split_binding<P: CryptoProvider>(binding: &[u8], request: &[u8]) -> Result<(Challenge, subtle::Choice)> {
    split_binding_hash(binding, &crate::keyschedule::request_hash::<P>(request))
}

/// As [`split_binding`], against a request hash computed once.
fn split_binding_hash(binding: &[u8], request_hash: &[u8; 32]) -> Result<(Challenge, subtle::Choice)> {
    let (c, h) = binding.split_at_checked(CHALLENGE_LEN).ok_or(Error::Truncated)?;
    crate::wire::exact_len(h, 32)?;
    let matches = request_hash.ct_eq(h);
    Ok((Challenge::from_bytes(c)?, matches))
}

/// The stateless issuer: MAC-tagged challenges and a bounded used set of `N`.
///
/// # Restarts
/// **The MAC key and the used set go together.** A challenge stays valid
/// for as long as the MAC key does, so if the key survives a restart (or is
/// shared by several servers), so must the used set, or an answered
/// challenge is accepted again. After a restart, either restore the used set
/// from an authenticated snapshot ([`Self::snapshot`], [`Self::restore`]), or
/// start with a floor ([`Self::after_restart`]) at or above the expiry of
/// every challenge issued before it: `boot time + ttl` if the clock is never
/// behind at boot, else the floor of a [`crate::replay::TimeMark`] whose
/// freshness is [`Self::freshness`]. A server that draws a new MAC key at
/// every start needs neither.
pub struct StatelessChallenges<P: CryptoProvider = crate::provider::DefaultProvider, const N: usize = 1024> {
    mac_key: Secret<32>,
    ttl_ms: u64,
    used: NonceRing<N>,
    snapshot_key: SnapshotKey<P>,
    audit: Audit,
    _p: PhantomData<P>,
}

impl<P: CryptoProvider, const N: usize> core::fmt::Debug for StatelessChallenges<P, N> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("StatelessChallenges")
            .field("ttl_ms", &self.ttl_ms)
            .field("used", &self.used.len())
            .finish_non_exhaustive()
    }
}

impl<P: CryptoProvider, const N: usize> StatelessChallenges<P, N> {
    /// An issuer with a secret MAC key, a challenge lifetime, and a secret
    /// hash key for the used set.
    pub fn new(mac_key: Secret<32>, ttl_ms: u64, hash_key: [u8; 16]) -> Self {
        let snapshot_key = SnapshotKey::derive(mac_key.expose());
        let used = NonceRing::new(Self::freshness(ttl_ms), hash_key);
        Self { mac_key, ttl_ms, used, snapshot_key, audit: Audit::new(), _p: PhantomData }
    }

    /// An issuer with keys drawn from `rng` (they die with it: nothing it
    /// issued verifies after a restart, so it needs no restart path).
    ///
    /// # Errors
    /// [`Error::Rng`].
    pub fn generate<R: TryCryptoRng + ?Sized>(rng: &mut R, ttl_ms: u64) -> Result<Self> {
        let mut mac = Secret::<32>::zero();
        let mut hash_key = [0u8; 16];
        fill_random(rng, mac.expose_mut())?;
        fill_random(rng, &mut hash_key)?;
        Ok(Self::new(mac, ttl_ms, hash_key))
    }

    /// The freshness window of the used set: an entry's timestamp is its
    /// expiry, acceptable from now until now + ttl.
    pub const fn freshness(ttl_ms: u64) -> Freshness {
        Freshness { max_age_ms: 0, max_future_skew_ms: ttl_ms }
    }

    /// An issuer whose MAC key survived a restart without a snapshot of its
    /// used set: every challenge expiring at or below `floor` is refused
    /// (as [`Error::Expired`]). `floor` must be at or above the expiry of every
    /// challenge issued before the restart; see the type's docs.
    pub fn after_restart(mac_key: Secret<32>, ttl_ms: u64, hash_key: [u8; 16], floor: TimeFloor) -> Self {
        let mut s = Self::new(mac_key, ttl_ms, hash_key);
        s.used = s.used.with_floor(floor);
        s
    }

    /// Writes an authenticated snapshot of the used set (keyed by the MAC
    /// key, so it restores only into an issuer with the same key), tagged
    /// with `epoch` (`SPEC.md` §4.4). Returns its length.
    ///
    /// # Errors
    /// [`Error::Encode`] if `out` is too small.
    pub fn snapshot(&self, epoch: u64, out: &mut [u8]) -> Result<usize> {
        self.used.snapshot_as(Kind::Challenges, &self.snapshot_key, &[], epoch, out)
    }

    /// An issuer with its used set restored from a snapshot written with
    /// epoch `trusted_epoch` by an issuer with the same MAC key and capacity.
    ///
    /// # Errors
    /// [`Error::Truncated`], [`Error::Authentication`], [`Error::Rollback`],
    /// [`Error::Decode`], [`Error::TrailingBytes`].
    pub fn restore(
        mac_key: Secret<32>,
        ttl_ms: u64,
        hash_key: [u8; 16],
        snapshot: &[u8],
        trusted_epoch: u64,
    ) -> Result<Self> {
        let mut s = Self::new(mac_key, ttl_ms, hash_key);
        let empty = NonceRing::new(Self::freshness(ttl_ms), hash_key);
        s.used = empty.restored(Kind::Challenges, &s.snapshot_key, &[], (snapshot, trusted_epoch))?;
        Ok(s)
    }

    fn mac(&self, signed: &[u8]) -> [u8; 32] {
        crate::keyschedule::challenge_mac::<P>(&self.mac_key, signed)
    }

    /// Issues a challenge expiring `ttl_ms` from now. Keeps no state.
    ///
    /// # Errors
    /// [`Error::Rng`] if the RNG fails.
    pub fn issue<R: TryCryptoRng + ?Sized>(&self, rng: &mut R, clock: &impl Clock) -> Result<Challenge> {
        let mut signed = [0u8; 8 + CHALLENGE_RANDOM_LEN];
        let (expiry, random) = signed.split_at_mut(8);
        expiry.copy_from_slice(&clock.now_ms().saturating_add(self.ttl_ms).to_be_bytes());
        fill_random(rng, random)?;
        let mac = self.mac(&signed);
        let mut c = [0u8; CHALLENGE_LEN];
        let (head, tag) = c.split_at_mut(8 + CHALLENGE_RANDOM_LEN);
        head.copy_from_slice(&signed);
        tag.copy_from_slice(mac.get(..16).ok_or(Error::Encode)?);
        Ok(Challenge(c))
    }

    /// Checks a challenge without committing. Pure.
    pub(crate) fn check(&self, c: &Challenge, now: u64) -> Result<()> {
        let mac = self.mac(c.signed_part());
        if !bool::from(mac.get(..16).unwrap_or_default().ct_eq(c.tag())) {
            return Err(Error::Authentication);
        }
        self.check_used(&c.once(), now)
    }

    /// Checks a challenge's id and expiry against the used set. Pure.
    fn check_used(&self, once: &Once, now: u64) -> Result<()> {
        if once.purpose != Purpose::Challenges {
            return Err(Error::Misuse);
        }
        match self.used.check(&once.id, once.timestamp_ms, now) {
            Ok(()) => Ok(()),
            Err(Error::Replay) => Err(Error::Replay),
            // Past its expiry, or at or below the used set's floor.
            Err(_) => Err(Error::Expired(Expiry::Challenge)),
        }
    }

    fn record(&mut self, r: Result<()>) -> Result<()> {
        if let Err(e) = r {
            if e == Error::Replay {
                self.audit.challenge_reused();
            } else {
                self.audit.record(e);
            }
        }
        r
    }

    /// Verifies a bare challenge and marks it used.
    ///
    /// # Errors
    /// [`Error::Authentication`] (forged), [`Error::Expired`], [`Error::Replay`].
    pub fn verify(&mut self, clock: &impl Clock, challenge: &Challenge) -> Result<()> {
        let now = clock.now_ms();
        let r = self.check(challenge, now);
        if r.is_ok() {
            self.commit(challenge, now);
        }
        self.record(r)
    }

    /// Verifies a binding `challenge ‖ SHA-256(request)` against the
    /// request bytes received, and marks the challenge used.
    ///
    /// # Errors
    /// [`Error::Truncated`], [`Error::TrailingBytes`],
    /// [`Error::Authentication`] (forged), [`Error::Expired`],
    /// [`Error::Replay`], [`Error::RequestMismatch`].
    pub fn verify_bound(&mut self, clock: &impl Clock, binding: &[u8], request: &[u8]) -> Result<()> {
        let now = clock.now_ms();
        match self.check_binding(binding, &crate::keyschedule::request_hash::<P>(request), now) {
            // Checked against this used set at this `now` under `&mut self`: the accept cannot fail.
            Ok(once) => self.accept(&once, now),
            Err(e) => Err(self.reject(e)),
        }
    }

    /// Every check of [`Self::verify_bound`], in the same order, without
    /// marking the challenge used: returns the [`Once`] to record
    /// (`Purpose::Challenges`, the first 96 random bits of the challenge and
    /// its expiry, `SPEC.md` §12) in the store that decides acceptance
    /// (`SPEC.md` §15.1): this issuer ([`Self::accept`]), or a
    /// [`ReplayCache`](crate::cache::ReplayCache) made with
    /// `ReplayCache::generate(Purpose::Challenges, rng, <StatelessChallenges>::freshness(ttl_ms))`,
    /// or a store shared by several servers. The request must not be acted on
    /// unless the store accepts it.
    ///
    /// This issuer's used set pre-checks (it may stay empty when another
    /// store records). Nothing is counted, so the store counts its rejections.
    ///
    /// # Errors
    /// Those of [`Self::verify_bound`].
    pub fn verify_bound_unrecorded(&self, clock: &impl Clock, binding: &[u8], request: &[u8]) -> Result<Once> {
        self.check_binding(binding, &crate::keyschedule::request_hash::<P>(request), clock.now_ms())
    }

    /// Marks the challenge of `once` used, if it would be accepted at
    /// `now_ms` (its expiry not past, above the floor, not used before):
    /// counts it as accepted, or counts the rejection and returns it. Check
    /// and record happen under one `&mut self`.
    ///
    /// # Errors
    /// [`Error::Misuse`] (a `once` of another purpose),
    /// [`Error::Expired`]`(`[`Expiry::Challenge`]`)`, [`Error::Replay`].
    pub fn accept(&mut self, once: &Once, now_ms: u64) -> Result<()> {
        match self.check_used(once, now_ms) {
            Ok(()) => {
                self.commit_used(once, now_ms);
                Ok(())
            }
            Err(e) => Err(self.reject(e)),
        }
    }

    /// Pure check of a binding against a request hash (for
    /// [`crate::bound::BoundRequest`]); returns what to record.
    pub(crate) fn check_binding(&self, binding: &[u8], request_hash: &[u8; 32], now: u64) -> Result<Once> {
        let (c, matches) = split_binding_hash(binding, request_hash)?;
        self.check(&c, now)?;
        if !bool::from(matches) {
            return Err(Error::RequestMismatch);
        }
        Ok(c.once())
    }

    /// Counts a rejection.
    pub(crate) fn reject(&mut self, e: Error) -> Error {
        let _ = self.record(Err(e));
        e
    }

    /// Marks a checked challenge used.
    pub(crate) fn commit(&mut self, c: &Challenge, now: u64) {
        self.commit_used(&c.once(), now);
    }

    fn commit_used(&mut self, once: &Once, now: u64) {
        if self.used.commit(&once.id, once.timestamp_ms, now) == Some(crate::replay::Commit::EvictedFresh) {
            self.audit.pressure();
        }
        self.audit.accept();
    }

    /// The used set (for snapshots and inspection).
    pub const fn used(&self) -> &NonceRing<N> {
        &self.used
    }

    /// Audit counters: `challenge_reused`, `auth_failed`, `stale`, `ring_pressure`.
    pub const fn audit(&self) -> &Audit {
        &self.audit
    }
}

#[derive(Clone, Copy)]
struct Issued {
    random: [u8; CHALLENGE_RANDOM_LEN],
    expires_at_ms: u64,
}

/// The stateful issuer: up to `N` outstanding challenges, each removed when
/// used. A new challenge takes a free slot, or the slot of an expired one;
/// only when all `N` are outstanding and live does it drop the one that
/// expires first (which then fails as [`Error::Replay`], like any challenge
/// the table does not hold). This fails closed.
///
/// Its state lives only in memory and dies with the process, so a challenge
/// issued before a restart can never be answered after it.
///
/// Its challenges have the same layout as stateless ones with an all-zero tag.
pub struct ChallengeTable<const N: usize = 16> {
    slots: [Option<Issued>; N],
    ttl_ms: u64,
    audit: Audit,
}

impl<const N: usize> core::fmt::Debug for ChallengeTable<N> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ChallengeTable").field("ttl_ms", &self.ttl_ms).finish_non_exhaustive()
    }
}

impl<const N: usize> ChallengeTable<N> {
    /// An empty table.
    pub const fn new(ttl_ms: u64) -> Self {
        Self { slots: [None; N], ttl_ms, audit: Audit::new() }
    }

    /// Issues and records a challenge.
    ///
    /// # Errors
    /// [`Error::Rng`] if the RNG fails.
    pub fn issue<R: TryCryptoRng + ?Sized>(&mut self, rng: &mut R, clock: &impl Clock) -> Result<Challenge> {
        let mut random = [0u8; CHALLENGE_RANDOM_LEN];
        fill_random(rng, &mut random)?;
        let now = clock.now_ms();
        let expires_at_ms = now.saturating_add(self.ttl_ms);
        // A free or expired slot first; else the live challenge expiring first.
        let free = self.slots.iter().position(|s| s.is_none_or(|s| now > s.expires_at_ms));
        let slot = free.unwrap_or_else(|| {
            self.slots.iter().enumerate().min_by_key(|(_, s)| s.map_or(0, |s| s.expires_at_ms)).map_or(0, |(i, _)| i)
        });
        if let Some(s) = self.slots.get_mut(slot) {
            *s = Some(Issued { random, expires_at_ms });
        }
        let mut c = [0u8; CHALLENGE_LEN];
        let (e, rest) = c.split_at_mut(8);
        e.copy_from_slice(&expires_at_ms.to_be_bytes());
        if let Some(r) = rest.get_mut(..CHALLENGE_RANDOM_LEN) {
            r.copy_from_slice(&random);
        }
        Ok(Challenge(c))
    }

    fn find(&self, c: &Challenge) -> Option<usize> {
        let random = c.random();
        // Constant time in the challenge bytes: every slot is compared.
        let mut found = None;
        for (i, s) in self.slots.iter().enumerate() {
            if let Some(s) = s {
                if bool::from(s.random.ct_eq(&random)) {
                    found = Some(i);
                }
            }
        }
        found
    }

    /// Verifies a binding against the request and removes the challenge.
    ///
    /// # Errors
    /// [`Error::Truncated`], [`Error::TrailingBytes`], [`Error::Replay`]
    /// (unknown: never issued, already used, or dropped), [`Error::Expired`],
    /// [`Error::RequestMismatch`].
    pub fn verify_bound<P: CryptoProvider>(
        &mut self,
        clock: &impl Clock,
        binding: &[u8],
        request: &[u8],
    ) -> Result<()> {
        let now = clock.now_ms();
        let r = split_binding::<P>(binding, request).and_then(|(c, matches)| {
            let i = self.find(&c).ok_or(Error::Replay)?;
            let issued = self.slots.get(i).copied().flatten().ok_or(Error::Replay)?;
            if now > issued.expires_at_ms || c.expires_at_ms() != issued.expires_at_ms {
                return Err(Error::Expired(Expiry::Challenge));
            }
            if !bool::from(matches) {
                return Err(Error::RequestMismatch);
            }
            Ok(i)
        });
        match r {
            Ok(i) => {
                if let Some(s) = self.slots.get_mut(i) {
                    *s = None;
                }
                self.audit.accept();
                Ok(())
            }
            Err(e) => {
                if e == Error::Replay {
                    self.audit.challenge_reused();
                } else {
                    self.audit.record(e);
                }
                Err(e)
            }
        }
    }

    /// Audit counters.
    pub const fn audit(&self) -> &Audit {
        &self.audit
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::provider::RustCrypto;

    fn bind(c: &Challenge, request: &[u8]) -> [u8; BINDING_LEN] {
        let mut out = [0u8; BINDING_LEN];
        out[..CHALLENGE_LEN].copy_from_slice(c.as_bytes());
        out[CHALLENGE_LEN..].copy_from_slice(&RustCrypto::sha256(&[request]));
        out
    }

    struct Seq(u8);
    impl rand_core::TryRng for Seq {
        type Error = core::convert::Infallible;
        fn try_next_u32(&mut self) -> core::result::Result<u32, Self::Error> {
            Ok(0)
        }
        fn try_next_u64(&mut self) -> core::result::Result<u64, Self::Error> {
            Ok(0)
        }
        fn try_fill_bytes(&mut self, d: &mut [u8]) -> core::result::Result<(), Self::Error> {
            self.0 = self.0.wrapping_add(1);
            d.fill(self.0);
            Ok(())
        }
    }
    impl rand_core::TryCryptoRng for Seq {}

    #[test]
    fn stateless_lifecycle() {
        let clock = ManualClock::new(10_000);
        let mut s = StatelessChallenges::<RustCrypto, 4>::new(Secret::new([5; 32]), 1_000, [1; 16]);
        let mut rng = Seq(0);
        let c = s.issue(&mut rng, &clock).unwrap();
        let b = bind(&c, b"POST /pay 10");
        assert_eq!(s.verify_bound(&clock, &b, b"POST /pay 99"), Err(Error::RequestMismatch));
        s.verify_bound(&clock, &b, b"POST /pay 10").unwrap();
        assert_eq!(s.verify_bound(&clock, &b, b"POST /pay 10"), Err(Error::Replay));
        assert_eq!(s.audit().challenge_reused, 1);
        let mut forged = b;
        forged[3] ^= 1; // push the expiry
        assert_eq!(s.verify_bound(&clock, &forged, b"POST /pay 10"), Err(Error::Authentication));
        let c2 = s.issue(&mut rng, &clock).unwrap();
        clock.advance(1_001);
        assert_eq!(s.verify(&clock, &c2), Err(Error::Expired(Expiry::Challenge)));
        assert_eq!(s.verify_bound(&clock, &b[..10], b""), Err(Error::Truncated));
    }

    #[test]
    fn table_lifecycle() {
        let clock = ManualClock::new(10_000);
        let mut t = ChallengeTable::<2>::new(1_000);
        let mut rng = Seq(0);
        let c = t.issue(&mut rng, &clock).unwrap();
        let b = bind(&c, b"req");
        t.verify_bound::<RustCrypto>(&clock, &b, b"req").unwrap();
        assert_eq!(t.verify_bound::<RustCrypto>(&clock, &b, b"req"), Err(Error::Replay));
        let old = t.issue(&mut rng, &clock).unwrap();
        clock.advance(1);
        let live = t.issue(&mut rng, &clock).unwrap();
        clock.advance(1);
        t.issue(&mut rng, &clock).unwrap(); // full: drops `old`, the first to expire
        assert_eq!(t.verify_bound::<RustCrypto>(&clock, &bind(&old, b"r"), b"r"), Err(Error::Replay));
        t.verify_bound::<RustCrypto>(&clock, &bind(&live, b"r"), b"r").unwrap();
    }
}
