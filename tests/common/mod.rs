//! Helpers shared by the integration tests (`mod common;` in each): three
//! deterministic RNGs, the in-memory handshake harness, the counter-frame
//! helpers, the challenge binding computed from `SPEC.md`, and the pinned
//! vector files. Each test crate uses a subset, hence `dead_code`.
#![allow(
    dead_code,
    clippy::arithmetic_side_effects,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use oncewire::challenge::{BINDING_LEN, CHALLENGE_LEN, Challenge};
use oncewire::clock::ManualClock;
use oncewire::device::{DeviceId, DeviceSigner, EnrollmentChallenge, SoftwareSigner};
use oncewire::handshake::{ClientHandshake, MAX_HANDSHAKE_LEN, ServerKey};
use oncewire::prover::Prover;
use oncewire::provider::{CryptoProvider, PublicKey};
use oncewire::rng::{OsRng, TryCryptoRng, TryRng};
use oncewire::session::{Limits, Session};
use oncewire::wire::buffer_len;
use oncewire::{CounterReceiver, CounterSender, DefaultProvider, Error};
use serde_json::Value;

/// 2026-01-01T00:00:00Z: the harness clock's start.
pub(crate) const T0: u64 = 1_767_225_600_000;

// ---------------------------------------------------------------------------
// RNGs
// ---------------------------------------------------------------------------

/// Yields the same fixed bytes on every call (a vector's one-shot nonce, its
/// ephemeral key, a proof's jti): each fill takes the first `dst.len()` of
/// them. Only `fill_bytes` is expected; the word methods panic.
pub(crate) struct FixedRng(Vec<u8>);

impl FixedRng {
    pub(crate) fn new(bytes: &[u8]) -> Self {
        Self(bytes.to_vec())
    }
}

impl TryRng for FixedRng {
    type Error = core::convert::Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        unreachable!()
    }
    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        unreachable!()
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        dst.copy_from_slice(&self.0[..dst.len()]);
        Ok(())
    }
}
impl TryCryptoRng for FixedRng {}

/// Yields a script of bytes in order (a handshake id, then an ephemeral
/// scalar: what `ClientHandshake::start` and `ServerKey::accept` draw), then
/// falls back to the OS RNG. It makes the entry points use chosen values
/// through the normal API, so no test-only entry point is needed.
pub(crate) struct ScriptRng {
    script: Vec<u8>,
    at: usize,
}

impl ScriptRng {
    pub(crate) fn new(parts: &[&[u8]]) -> Self {
        Self { script: parts.concat(), at: 0 }
    }
}

impl TryRng for ScriptRng {
    type Error = core::convert::Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        unreachable!()
    }
    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        unreachable!()
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        if self.at + dst.len() <= self.script.len() {
            dst.copy_from_slice(&self.script[self.at..self.at + dst.len()]);
            self.at += dst.len();
        } else {
            OsRng.try_fill_bytes(dst).expect("OS RNG");
        }
        Ok(())
    }
}
impl TryCryptoRng for ScriptRng {}

/// A deterministic RNG from a seed: a counter (stepping by splitmix64's
/// gamma) through splitmix64's finaliser. The same seed gives the same
/// stream, so every key, id and ephemeral drawn from it repeats.
pub(crate) struct SeededRng(u64);

impl SeededRng {
    pub(crate) const fn new(seed: u64) -> Self {
        Self(seed)
    }
}

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

/// An RNG that always fails: the `Error::Rng` paths.
pub(crate) struct FailingRng;

impl TryRng for FailingRng {
    type Error = core::fmt::Error;
    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        Err(core::fmt::Error)
    }
    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        Err(core::fmt::Error)
    }
    fn try_fill_bytes(&mut self, _dst: &mut [u8]) -> Result<(), Self::Error> {
        Err(core::fmt::Error)
    }
}
impl TryCryptoRng for FailingRng {}

// ---------------------------------------------------------------------------
// The handshake harness
// ---------------------------------------------------------------------------

/// A server key, a device enrolled with it (device id `lock-0042`), and a
/// [`ManualClock`] at [`T0`]; every random draw comes from `rng`.
pub(crate) struct Harness<R: TryCryptoRng = OsRng> {
    pub(crate) rng: R,
    pub(crate) clock: ManualClock,
    pub(crate) server: ServerKey,
    pub(crate) device: DeviceId,
    pub(crate) signer: SoftwareSigner,
    /// What the server's enrollment recorded: (device id, device key).
    pub(crate) enrolled: (DeviceId, PublicKey),
}

impl Harness<OsRng> {
    /// A harness drawing from the operating system's RNG.
    pub(crate) fn new() -> Self {
        Self::with_rng(OsRng)
    }
}

impl<R: TryCryptoRng> Harness<R> {
    /// Generates the server key and the device signer, and enrolls the
    /// device: proof of possession over a fresh server challenge.
    pub(crate) fn with_rng(mut rng: R) -> Self {
        let clock = ManualClock::new(T0);
        let server = ServerKey::<DefaultProvider>::generate(&mut rng).unwrap();
        let device = DeviceId::new(b"lock-0042").unwrap();
        let mut signer = SoftwareSigner::<DefaultProvider>::generate(&mut rng).unwrap();
        let challenge: EnrollmentChallenge = EnrollmentChallenge::issue(&mut rng, &clock, 60_000).unwrap();
        let request =
            Prover::new(&mut signer).answer_enrollment(server.public_key(), challenge.nonce(), device).unwrap();
        let enrolled = challenge.verify(server.public_key(), &request, &clock).unwrap();
        Self { rng, clock, server, device, signer, enrolled: (enrolled.device, enrolled.public_key) }
    }

    /// Runs the handshake in memory with `server_limits` on the server and
    /// the default limits on the client; returns (client, server).
    pub(crate) fn handshake(&mut self, server_limits: Limits) -> (Session, Session) {
        self.handshake_with(server_limits, Limits::DEFAULT)
    }

    /// Runs the handshake in memory; returns (client, server).
    pub(crate) fn handshake_with(&mut self, server_limits: Limits, client_limits: Limits) -> (Session, Session) {
        let mut m1 = [0u8; MAX_HANDSHAKE_LEN];
        let (client, n1) =
            ClientHandshake::<DefaultProvider>::start(*self.server.public_key(), &mut self.rng, &self.clock, &mut m1)
                .unwrap();
        let mut m2 = [0u8; MAX_HANDSHAKE_LEN];
        let (pending, n2) = self.server.accept(&mut self.rng, &self.clock, &m1[..n1], server_limits, &mut m2).unwrap();
        let mut m3 = [0u8; MAX_HANDSHAKE_LEN];
        let (client_session, n3) = client
            .finish::<_, 32>(&self.clock, &m2[..n2], self.device, &mut self.signer, client_limits, &mut m3)
            .unwrap();
        assert_eq!(pending.session_id(), client_session.session_id());
        let server_session = pending.finish::<_, 32>(&self.clock, &mut m3[..n3], &self.enrolled).unwrap();
        assert_eq!(client_session.clock_offset_ms(), 0);
        (client_session, server_session)
    }
}

// ---------------------------------------------------------------------------
// Counter frames
// ---------------------------------------------------------------------------

/// Seals `payload` as one record; returns exactly the frame.
pub(crate) fn seal_counter(tx: &mut CounterSender, clock: &ManualClock, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; buffer_len(payload.len())];
    let n = tx.seal(clock, payload, &mut f).unwrap();
    f.truncate(n);
    f
}

/// Opens a copy of `frame`; on error, checks that the frame and the replay
/// window are unchanged. Returns the payload.
pub(crate) fn open_counter<const W: usize>(
    rx: &mut CounterReceiver<DefaultProvider, W>,
    clock: &ManualClock,
    frame: &[u8],
) -> Result<Vec<u8>, Error> {
    let mut buf = frame.to_vec();
    let window = rx.window().clone();
    let r = rx.open_in_place(clock, &mut buf).map(|o| o.payload.to_vec());
    if let Err(e) = r {
        assert_eq!(buf, frame, "a rejected frame was changed ({e:?})");
        assert_eq!(rx.window(), &window, "a rejected frame moved the window ({e:?})");
    }
    r
}

// ---------------------------------------------------------------------------
// Challenges
// ---------------------------------------------------------------------------

/// `challenge ‖ SHA-256(request)` (SPEC.md §12), computed here from the spec.
pub(crate) fn bind(challenge: &Challenge, request: &[u8]) -> [u8; BINDING_LEN] {
    let mut out = [0u8; BINDING_LEN];
    out[..CHALLENGE_LEN].copy_from_slice(challenge.as_bytes());
    out[CHALLENGE_LEN..].copy_from_slice(&<DefaultProvider as CryptoProvider>::sha256(&[request]));
    out
}

// ---------------------------------------------------------------------------
// Pinned vector files
// ---------------------------------------------------------------------------

/// The JSON in `path`.
pub(crate) fn load_json(path: &str) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path} exists: {e}"));
    serde_json::from_str(&text).expect("valid JSON")
}

/// The pinned file at `path`, after writing `generated` there first when
/// `ONCEWIRE_WRITE_VECTORS` is set (a deliberate protocol change).
pub(crate) fn pinned_json(path: &str, generated: &Value) -> Value {
    if std::env::var_os("ONCEWIRE_WRITE_VECTORS").is_some() {
        std::fs::write(path, serde_json::to_string_pretty(generated).unwrap() + "\n").unwrap();
    }
    load_json(path)
}

// ---------------------------------------------------------------------------
// Providers
// ---------------------------------------------------------------------------

/// Runs each named test, a function generic over `P: CryptoProvider`, once
/// per provider built in: `rustcrypto::NAME` always, `aws_lc::NAME` with the
/// `aws-lc-rs` feature.
#[allow(unused_macros)]
macro_rules! for_each_provider {
    ($($name:ident),* $(,)?) => {
        mod rustcrypto {
            $(
                #[test]
                fn $name() {
                    super::$name::<oncewire::RustCrypto>();
                }
            )*
        }
        #[cfg(feature = "aws-lc-rs")]
        mod aws_lc {
            $(
                #[test]
                fn $name() {
                    super::$name::<oncewire::provider::AwsLc>();
                }
            )*
        }
    };
}
#[allow(unused_imports)]
pub(crate) use for_each_provider;

/// Enrollment and the handshake: the device (client, provider `C`) enrolls
/// with the server (provider `S`), then both run the three messages.
pub(crate) fn provider_pair<C: CryptoProvider, S: CryptoProvider>(clock: &ManualClock) -> (Session<C>, Session<S>) {
    let server = ServerKey::<S>::generate(&mut OsRng).unwrap();
    let device = DeviceId::new(b"lock-0042").unwrap();
    let mut signer = SoftwareSigner::<C>::generate(&mut OsRng).unwrap();
    let challenge = EnrollmentChallenge::<S>::issue(&mut OsRng, clock, 60_000).unwrap();
    let request = Prover::<_, C>::with_provider(&mut signer)
        .answer_enrollment(server.public_key(), challenge.nonce(), device)
        .unwrap();
    let enrolled = challenge.verify(server.public_key(), &request, clock).unwrap();
    assert_eq!(enrolled.public_key, signer.public_key().unwrap());
    let enrolled = (enrolled.device, enrolled.public_key);

    let mut m1 = [0u8; MAX_HANDSHAKE_LEN];
    let (client, n1) = ClientHandshake::<C>::start(*server.public_key(), &mut OsRng, clock, &mut m1).unwrap();
    let mut m2 = [0u8; MAX_HANDSHAKE_LEN];
    let (pending, n2) = server.accept(&mut OsRng, clock, &m1[..n1], Limits::DEFAULT, &mut m2).unwrap();
    let mut m3 = [0u8; MAX_HANDSHAKE_LEN];
    let (c, n3) = client.finish::<_, 32>(clock, &m2[..n2], device, &mut signer, Limits::DEFAULT, &mut m3).unwrap();
    let sv = pending.finish::<_, 32>(clock, &mut m3[..n3], &enrolled).unwrap();
    assert_eq!(c.handshake_hash(), sv.handshake_hash());
    assert_eq!(c.session_id(), sv.session_id());
    (c, sv)
}
