//! `cargo run --example envelope`: an oncewire server and client over loopback
//! TCP, in the UART/TCP envelope transport of `SPEC.md` Appendix A
//! (`kind (1 byte) ‖ length (u16 BE) ‖ bytes`). This is the host server the
//! Cortex-M4 firmware (`scripts/qemu-e2e`, over the emulated UART) and the
//! Python peer (`interop/python/peer.py`) talk to with `--server`. The demo of
//! the HTTP binding (`SPEC.md` §16), how apps and backends talk, is
//! `cargo run --example demo` (`crates/oncewire-http/examples/demo.rs`).
//!
//! The transcript shows device enrollment, the handshake, sealed requests and
//! responses, a challenge-bound high-value request, a token use and a
//! one-shot HPKE request, then plays attacks (a replayed frame, a changed
//! byte, a replayed token use, a replayed one-shot request, an expired token,
//! a stolen token used without the device key, a re-enrollment under a
//! stolen id) and shows each rejected with its typed error. It exits 0 only
//! if every expected outcome happened.
//!
//! Options:
//! - `--server ADDR`: run only the server (for the firmware and the Python
//!   peer), e.g. `--server 127.0.0.1:7878`; with `--print-key` it prints the
//!   server's public key; `--connections N` stops after N connections.
//!   With `--long-lived-key HEX` (key 32 ‖ IV 12 ‖ key id 8 bytes, the
//!   firmware's build-time `long_lived_key.bin`) it also opens envelope kind
//!   11, records under that long-lived key, and prints
//!   `long-lived: key ID seq N accepted` for each: `scripts/qemu-power-cut`
//!   checks across server runs that no sequence number repeats.
//! - `--client ADDR`: run only the client against a running server.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::panic
)]

use oncewire::bound::{BoundRequest, MAX_BOUND_LEN, Requirements};
use oncewire::cache::{Purpose, ReplayCache};
use oncewire::challenge::{CHALLENGE_LEN, Challenge, StatelessChallenges};
use oncewire::clock::SystemClock;
use oncewire::device::{
    DeviceId, DeviceSigner, EnrollmentIssuer, EnrollmentRequest, MAX_ENROLLMENT_REQUEST_LEN, ReEnrollment,
    SoftwareSigner,
};
use oncewire::handshake::{ClientHandshake, MAX_HANDSHAKE_LEN, ServerKey};
use oncewire::hpke::KeyPair;
use oncewire::prover::Prover;
use oncewire::provider::PublicKey;
use oncewire::replay::Freshness;
use oncewire::request::{PAYLOAD_OFFSET, REQUEST_OVERHEAD, RequestReceiver, RequestSender};
use oncewire::rng::{OsRng, TryRng};
use oncewire::session::{Limits, Peer, Received, RequestId, Session};
use oncewire::table::SessionTable;
use oncewire::token::{Claims, TokenIssuer, TokenVerifier};
use oncewire::wire::{Frame, FrameType, HEADER_LEN, NonceField, buffer_len};
use oncewire::{Clock, CounterReceiver, Error, Secret};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::ExitCode;

// --- demo envelope (SPEC.md Appendix A) --------------------------------------

const ENROLL_BEGIN: u8 = 1;
const ENROLL_CHALLENGE: u8 = 2;
const ENROLL_ANSWER: u8 = 3;
const OK: u8 = 4;
const FRAME: u8 = 5;
const TOKEN_USE: u8 = 6;
const SERVER_KEY: u8 = 7;
const ISSUER_KEY: u8 = 8;
const ONE_SHOT: u8 = 9;
const REQUEST_KEY: u8 = 10;
const LONG_LIVED: u8 = 11;
const REJECTED: u8 = 15;

/// `app_info` of the demo's one-shot requests.
const ONE_SHOT_INFO: &[u8] = b"oncewire-demo one-shot";

fn send(s: &mut TcpStream, kind: u8, body: &[u8]) {
    let len = u16::try_from(body.len()).expect("envelope body fits u16");
    let mut msg = Vec::with_capacity(3 + body.len());
    msg.push(kind);
    msg.extend_from_slice(&len.to_be_bytes());
    msg.extend_from_slice(body);
    s.write_all(&msg).expect("send");
}

fn recv(s: &mut TcpStream) -> Option<(u8, Vec<u8>)> {
    let mut head = [0u8; 3];
    s.read_exact(&mut head).ok()?;
    let mut body = vec![0u8; usize::from(u16::from_be_bytes([head[1], head[2]]))];
    s.read_exact(&mut body).ok()?;
    Some((head[0], body))
}

/// What a client asks for inside a sealed record (postcard).
#[derive(Serialize, Deserialize, Debug)]
enum AppRequest<'a> {
    Ping(&'a str),
    GetChallenge,
    /// A high-value order and its `BoundRequest` (an answer to a challenge).
    Pay {
        order: &'a [u8],
        bound: &'a [u8],
    },
    GetToken {
        lifetime_ms: u64,
    },
}

/// What the server answers inside a sealed response (postcard).
#[derive(Serialize, Deserialize, Debug)]
enum AppResponse<'a> {
    Text(&'a str),
    Challenge(&'a [u8]),
    Token(&'a [u8]),
    Rejected(&'a str),
}

/// A token use, outside a session (postcard).
#[derive(Serialize, Deserialize)]
struct TokenUse<'a> {
    token: &'a [u8],
    device_public_key: &'a [u8],
    proof: &'a [u8],
    request: &'a [u8],
}

// --- server ------------------------------------------------------------------

struct Server {
    key: ServerKey,
    /// The HPKE key one-shot requests are sealed to (kept apart from the
    /// handshake key: one key, one protocol).
    request_key: KeyPair,
    requests: RequestReceiver,
    tokens: TokenIssuer,
    verifier: TokenVerifier<'static>,
    proofs: ReplayCache,
    challenges: StatelessChallenges,
    enrollments: EnrollmentIssuer,
    devices: HashMap<DeviceId, PublicKey>,
    table: SessionTable,
    /// With `--long-lived-key`: the receiver for a device's long-lived key.
    long_lived: Option<CounterReceiver>,
}

impl Server {
    fn new() -> Self {
        let mut rng = OsRng;
        // Every key here is drawn at start and dies with the process, so the
        // replay state needs no snapshot: nothing sealed to these keys before
        // a restart can be opened after it.
        let tokens: TokenIssuer = TokenIssuer::generate(&mut rng).unwrap();
        Self {
            key: ServerKey::generate(&mut rng).unwrap(),
            request_key: KeyPair::generate(&mut rng).unwrap(),
            requests: RequestReceiver::generate(&mut rng, Freshness::DEFAULT).unwrap(),
            verifier: TokenVerifier::new(*tokens.public_key(), "demo-api", 0),
            tokens,
            proofs: ReplayCache::generate(Purpose::TokenProofs, &mut rng, Freshness::DEFAULT).unwrap(),
            challenges: StatelessChallenges::generate(&mut rng, 30_000).unwrap(),
            enrollments: EnrollmentIssuer::generate(&mut rng, 60_000).unwrap(),
            devices: HashMap::new(),
            table: SessionTable::new(10_000, 1_000),
            long_lived: None,
        }
    }

    fn serve(&mut self, listener: &TcpListener, connections: Option<usize>) {
        let mut served = 0;
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            self.connection(&mut stream);
            served += 1;
            if connections.is_some_and(|n| served >= n) {
                return;
            }
        }
    }

    fn reject(s: &mut TcpStream, what: &str, e: Error) {
        println!("    server: rejected {what}: Error::{e:?}");
        send(s, REJECTED, format!("{e:?}").as_bytes());
    }

    fn connection(&mut self, s: &mut TcpStream) {
        let clock = SystemClock;
        let mut rng = OsRng;
        while let Some((kind, mut body)) = recv(s) {
            match kind {
                SERVER_KEY => send(s, SERVER_KEY, self.key.public_key().as_bytes()),
                ISSUER_KEY => send(s, ISSUER_KEY, self.tokens.public_key().as_bytes()),
                REQUEST_KEY => send(s, REQUEST_KEY, self.request_key.public_key().as_bytes()),
                ONE_SHOT => {
                    let r = self.requests.open(&self.request_key, None, &clock, ONE_SHOT_INFO, b"", &mut body);
                    match r {
                        Ok(opened) => {
                            let text = format!("one-shot accepted: {}", String::from_utf8_lossy(opened.payload));
                            send(s, OK, text.as_bytes());
                        }
                        Err(e) => Self::reject(s, "one-shot request", e),
                    }
                }
                // Stateless: the challenge comes back with the answer.
                ENROLL_BEGIN => send(s, ENROLL_CHALLENGE, self.enrollments.issue(&mut rng, &clock).unwrap().as_bytes()),
                ENROLL_ANSWER => {
                    let r = (|| {
                        let (challenge, request) = body.split_at_checked(CHALLENGE_LEN).ok_or(Error::Truncated)?;
                        let challenge = Challenge::from_bytes(challenge)?;
                        let request = EnrollmentRequest::from_bytes(request)?;
                        let d = self.enrollments.verify(self.key.public_key(), &challenge, &request, &clock)?;
                        // Re-enrollment is a policy: this server never lets a
                        // new key take over an enrolled id.
                        d.admit(self.devices.get(&d.device), ReEnrollment::Refuse)?;
                        Ok(d)
                    })();
                    match r {
                        Ok(d) => {
                            println!("    server: enrolled {:?}", d.device);
                            self.devices.insert(d.device, d.public_key);
                            send(s, OK, b"enrolled");
                        }
                        Err(e) => Self::reject(s, "enrollment", e),
                    }
                }
                FRAME => self.frame(s, &mut body),
                LONG_LIVED if self.long_lived.is_some() => {
                    let rx = self.long_lived.as_mut().unwrap();
                    match rx.open_in_place(&clock, &mut body) {
                        Ok(opened) => {
                            let NonceField::Counter(seq) = opened.header.nonce else { unreachable!("a record") };
                            println!("long-lived: key {} seq {seq} accepted", hex(&opened.header.key_id));
                            std::io::stdout().flush().unwrap();
                            send(s, OK, b"long-lived record accepted");
                        }
                        Err(e) => Self::reject(s, "long-lived record", e),
                    }
                }
                TOKEN_USE => {
                    let r = (|| {
                        let u: TokenUse<'_> = postcard::from_bytes(&body).map_err(|_| Error::Decode)?;
                        let pk = PublicKey::from_sec1_uncompressed(u.device_public_key)?;
                        self.verifier
                            .verify_bound(&mut self.proofs, &clock, u.token, &pk, u.request, u.proof)
                            .map(|_| ())
                    })();
                    match r {
                        Ok(()) => send(s, OK, b"token accepted"),
                        Err(e) => Self::reject(s, "token", e),
                    }
                }
                other => Self::reject(s, &format!("envelope kind {other}"), Error::UnexpectedFrame),
            }
        }
    }

    fn frame(&mut self, s: &mut TcpStream, frame: &mut [u8]) {
        let clock = SystemClock;
        let mut rng = OsRng;
        let ty = match Frame::new_checked(&*frame) {
            Ok(f) => f.header().frame_type,
            Err(e) => return Self::reject(s, "frame", e),
        };
        match ty {
            FrameType::HandshakeInit => {
                let mut out = [0u8; MAX_HANDSHAKE_LEN];
                match self.key.accept(&mut rng, &clock, frame, Limits::DEFAULT, &mut out) {
                    Ok((pending, n)) => match self.table.begin(&clock, pending) {
                        Ok(()) => send(s, FRAME, &out[..n]),
                        Err(e) => Self::reject(s, "handshake", e),
                    },
                    Err(e) => Self::reject(s, "handshake message 1", e),
                }
            }
            FrameType::HandshakeFinish => match self.table.finish(&clock, frame, &self.devices) {
                Ok(session) => {
                    println!("    server: session {} established with {:?}", hex(session.session_id()), session.peer());
                    send(s, OK, b"session established");
                }
                Err(e) => Self::reject(s, "handshake message 3", e),
            },
            _ => {
                let (session, received) = match self.table.open(&clock, frame) {
                    Ok(x) => x,
                    Err(e) => return Self::reject(s, "record", e),
                };
                let Received::Record(opened, request) = received else {
                    return send(s, OK, b"key updated");
                };
                let device = match session.peer() {
                    Peer::Device(d) => *d,
                    Peer::Server(_) => unreachable!("server sessions have device peers"),
                };
                let mut scratch = [0u8; 1024];
                let app: Result<AppRequest<'_>, _> = postcard::from_bytes(opened.payload);
                let reply: AppResponse<'_> = match app {
                    Ok(AppRequest::Ping(t)) => {
                        let text = format!("pong: {t} (device {device:?})");
                        let n = text.len().min(scratch.len());
                        scratch[..n].copy_from_slice(&text.as_bytes()[..n]);
                        AppResponse::Text(std::str::from_utf8(&scratch[..n]).unwrap_or("pong"))
                    }
                    Ok(AppRequest::GetChallenge) => {
                        let c = self.challenges.issue(&mut rng, &clock).unwrap();
                        scratch[..40].copy_from_slice(c.as_bytes());
                        AppResponse::Challenge(&scratch[..40])
                    }
                    Ok(AppRequest::Pay { order, bound }) => {
                        let need = Requirements::challenge(&mut self.challenges);
                        let device_key = self.devices[&device];
                        match BoundRequest::from_bytes(bound).and_then(|b| b.verify(need, &clock, order, &device_key)) {
                            Ok(_) => AppResponse::Text("payment accepted"),
                            Err(e) => {
                                println!("    server: rejected payment: Error::{e:?}");
                                AppResponse::Rejected(match e {
                                    Error::Replay => "Replay",
                                    Error::RequestMismatch => "RequestMismatch",
                                    Error::Expired(_) => "Expired",
                                    _ => "Authentication",
                                })
                            }
                        }
                    }
                    Ok(AppRequest::GetToken { lifetime_ms }) => {
                        let now = clock.now_ms();
                        let cnf = self.tokens.cnf(&self.devices[&device]);
                        let mut jti = [0u8; 16];
                        rng.try_fill_bytes(&mut jti).unwrap();
                        let claims = Claims {
                            iss: "oncewire-demo",
                            sub: device.as_bytes(),
                            aud: "demo-api",
                            iat: now,
                            nbf: now,
                            exp: now + lifetime_ms,
                            jti: &jti,
                            cnf,
                        };
                        let n = self.tokens.issue(&claims, &mut scratch).unwrap();
                        AppResponse::Token(&scratch[..n])
                    }
                    Err(_) => AppResponse::Rejected("Decode"),
                };
                let mut body = [0u8; 1200];
                let n = postcard::to_slice(&reply, &mut body).unwrap().len();
                let mut out = vec![0u8; buffer_len(n)];
                let len = session.seal_response(&clock, request, &body[..n], &mut out).unwrap();
                send(s, FRAME, &out[..len]);
            }
        }
    }
}

// --- client ------------------------------------------------------------------

struct Transcript {
    failures: u32,
}

impl Transcript {
    fn ok(&mut self, what: &str, ok: bool, detail: &str) {
        println!("  [{}] {what}: {detail}", if ok { " ok " } else { "FAIL" });
        if !ok {
            self.failures += 1;
        }
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

struct Client {
    stream: TcpStream,
    session: Session,
    /// Sealed frames as they went on the wire, for the attacks.
    captured: Vec<Vec<u8>>,
}

impl Client {
    /// Seals a request, sends it, and opens the response bound to it.
    fn call(&mut self, req: &AppRequest<'_>) -> Result<Vec<u8>, String> {
        let clock = SystemClock;
        let mut body = [0u8; 1024];
        let n = postcard::to_slice(req, &mut body).unwrap().len();
        let mut frame = vec![0u8; buffer_len(n)];
        let (len, id): (usize, RequestId) = self.session.seal_request(&clock, &body[..n], &mut frame).unwrap();
        frame.truncate(len);
        self.captured.push(frame.clone());
        send(&mut self.stream, FRAME, &frame);
        match recv(&mut self.stream) {
            Some((FRAME, mut resp)) => match self.session.open_response(&clock, id, &mut resp) {
                Ok(o) => Ok(o.payload.to_vec()),
                Err(e) => Err(format!("client could not open the response: {e:?}")),
            },
            Some((REJECTED, why)) => Err(String::from_utf8_lossy(&why).into_owned()),
            other => Err(format!("unexpected reply {other:?}")),
        }
    }

    /// Sends raw bytes as a frame and returns the server's verdict.
    fn send_raw(&mut self, frame: &[u8]) -> String {
        send(&mut self.stream, FRAME, frame);
        match recv(&mut self.stream) {
            Some((REJECTED, why)) => format!("Error::{}", String::from_utf8_lossy(&why)),
            Some((k, _)) => format!("ACCEPTED (reply kind {k})"),
            None => "connection closed".into(),
        }
    }
}

fn run_client(addr: &str) -> u32 {
    let clock = SystemClock;
    let mut rng = OsRng;
    let mut t = Transcript { failures: 0 };
    let mut stream = TcpStream::connect(addr).expect("connect to the demo server");
    let device = DeviceId::new(b"phone-7f3a").unwrap();
    // Emulation only: a real app keeps this key in the Keystore / Secure Enclave.
    let mut signer: SoftwareSigner = SoftwareSigner::generate(&mut rng).unwrap();

    println!("1. pinning: the app ships with the server's static key");
    send(&mut stream, SERVER_KEY, &[]);
    let (_, key) = recv(&mut stream).unwrap();
    let server_key = PublicKey::from_sec1_uncompressed(&key).unwrap();
    println!("  server key {}…", &hex(&key)[..24]);

    println!("2. enrollment: the device proves possession of its hardware key");
    let verdict = enroll(&mut stream, &server_key, device, &mut signer);
    t.ok("device enrolled", verdict == "enrolled", &format!("{device:?}"));
    // Someone who learned the device id enrolls a key of their own under it.
    let mut intruder: SoftwareSigner = SoftwareSigner::generate(&mut rng).unwrap();
    let verdict = enroll(&mut stream, &server_key, device, &mut intruder);
    t.ok("re-enroll the same id with another key", verdict == "Error::AlreadyEnrolled", &verdict);

    println!("3. handshake: Noise NK over P-256, then the device signs the handshake hash");
    let mut m1 = [0u8; MAX_HANDSHAKE_LEN];
    let (hs, n1) = ClientHandshake::start(server_key, &mut rng, &clock, &mut m1).unwrap();
    send(&mut stream, FRAME, &m1[..n1]);
    let (_, m2) = recv(&mut stream).unwrap();
    let mut m3 = [0u8; MAX_HANDSHAKE_LEN];
    let (session, n3): (Session, usize) =
        hs.finish(&clock, &m2, device, &mut signer, Limits::DEFAULT, &mut m3).unwrap();
    send(&mut stream, FRAME, &m3[..n3]);
    let (kind, _) = recv(&mut stream).unwrap();
    t.ok(
        "session established",
        kind == OK,
        &format!("messages of {n1}, {} and {n3} bytes; session {}", m2.len(), hex(session.session_id())),
    );
    let mut c = Client { stream, session, captured: Vec::new() };

    println!("4. sealed requests and responses (each response bound to its request)");
    for text in ["hello", "GET /profile"] {
        let r = c.call(&AppRequest::Ping(text));
        let shown = r.as_ref().map(|b| format!("{:?}", response(b)));
        t.ok(&format!("request {text:?}"), r.is_ok(), &format!("{shown:?}"));
    }

    println!("5. a high-value request bound to a fresh server challenge");
    let challenge = match c.call(&AppRequest::GetChallenge).map(|b| b.to_vec()) {
        Ok(b) => match response(&b) {
            Ok(AppResponse::Challenge(ch)) => Challenge::from_bytes(ch).unwrap(),
            other => panic!("no challenge: {other:?}"),
        },
        Err(e) => panic!("no challenge: {e}"),
    };
    let order = b"pay 10.00 EUR to bob";
    let mut out = [0u8; MAX_BOUND_LEN];
    let b = Prover::new(&mut signer).bound_request(&mut rng, &clock, order, Some(&challenge), None).unwrap();
    let n = b.to_bytes(&mut out).unwrap();
    let bound = &out[..n];
    let r = c.call(&AppRequest::Pay { order, bound }).unwrap();
    let accepted = matches!(postcard::from_bytes(&r), Ok(AppResponse::Text("payment accepted")));
    t.ok("payment with its challenge", accepted, "challenge ‖ SHA-256(order) verified");
    let r = c.call(&AppRequest::Pay { order, bound }).unwrap();
    let replay = matches!(postcard::from_bytes(&r), Ok(AppResponse::Rejected("Replay")));
    t.ok("the same challenge answered twice", replay, "rejected: Replay");
    let c2 = match response(&c.call(&AppRequest::GetChallenge).unwrap()) {
        Ok(AppResponse::Challenge(ch)) => Challenge::from_bytes(ch).unwrap(),
        other => panic!("no challenge: {other:?}"),
    };
    let altered = b"pay 9999.00 EUR to mallory";
    let mut out = [0u8; MAX_BOUND_LEN];
    let b = Prover::new(&mut signer).bound_request(&mut rng, &clock, order, Some(&c2), None).unwrap();
    let n = b.to_bytes(&mut out).unwrap();
    let bound = &out[..n];
    let r = c.call(&AppRequest::Pay { order: altered, bound }).unwrap();
    let mismatch = matches!(postcard::from_bytes(&r), Ok(AppResponse::Rejected("RequestMismatch")));
    t.ok("an altered order with a valid challenge", mismatch, "rejected: RequestMismatch");

    println!("6. a short-lived token bound to the device key");
    let token = match response(&c.call(&AppRequest::GetToken { lifetime_ms: 60_000 }).unwrap()) {
        Ok(AppResponse::Token(tk)) => tk.to_vec(),
        other => panic!("no token: {other:?}"),
    };
    let request = b"GET /api/orders";
    // The session's clock offset puts the proof's iat in the server's time base.
    let server_clock = c.session.server_clock(clock);
    let proof = Prover::new(&mut signer).prove(&mut rng, &server_clock, &token, request).unwrap().to_bytes();
    let device_pk = signer.public_key().unwrap();
    let verdict = use_token(&mut c.stream, &token, &device_pk, &proof, request);
    t.ok(&format!("token of {} bytes with the device's proof", token.len()), verdict == "accepted", &verdict);

    println!("7. a one-shot request sealed to the server's key (HPKE), no session needed");
    send(&mut c.stream, REQUEST_KEY, &[]);
    let (_, rk) = recv(&mut c.stream).unwrap();
    let request_key = PublicKey::from_sec1_uncompressed(&rk).unwrap();
    let msg = b"unlock door 3";
    let mut one_shot = vec![0u8; REQUEST_OVERHEAD + msg.len()];
    one_shot[PAYLOAD_OFFSET..PAYLOAD_OFFSET + msg.len()].copy_from_slice(msg);
    let n = RequestSender::new(request_key)
        .seal(&mut rng, &server_clock, None, ONE_SHOT_INFO, b"", &mut one_shot, msg.len())
        .unwrap();
    one_shot.truncate(n);
    let verdict = one_shot_verdict(&mut c.stream, &one_shot);
    t.ok(&format!("one-shot request of {n} bytes"), verdict.starts_with("accepted"), &verdict);

    println!("8. attacks");
    let captured = c.captured[0].clone();
    let verdict = c.send_raw(&captured);
    t.ok("replay a captured request frame", verdict == "Error::Replay", &verdict);

    let verdict = use_token(&mut c.stream, &token, &device_pk, &proof, request);
    t.ok("replay a captured token use (token, proof, request)", verdict == "Error::Replay", &verdict);

    let verdict = one_shot_verdict(&mut c.stream, &one_shot);
    t.ok("replay a captured one-shot request", verdict == "Error::Replay", &verdict);

    let body = postcard::to_slice(&AppRequest::Ping("transfer 10"), &mut [0u8; 256]).unwrap().to_vec();
    let mut fresh = vec![0u8; buffer_len(body.len())];
    let n = c.session.seal(&clock, &body, &mut fresh).unwrap();
    fresh.truncate(n);
    let mut tampered = fresh.clone();
    tampered[HEADER_LEN + 4] ^= 0x01;
    let verdict = c.send_raw(&tampered);
    t.ok("change one byte of a frame", verdict == "Error::Authentication", &verdict);

    let short = match response(&c.call(&AppRequest::GetToken { lifetime_ms: 1 }).unwrap()) {
        Ok(AppResponse::Token(tk)) => tk.to_vec(),
        other => panic!("no token: {other:?}"),
    };
    std::thread::sleep(std::time::Duration::from_millis(20));
    let proof = Prover::new(&mut signer).prove(&mut rng, &server_clock, &short, request).unwrap().to_bytes();
    let verdict = use_token(&mut c.stream, &short, &device_pk, &proof, request);
    t.ok("use an expired token", verdict == "Error::Expired(Token)", &verdict);

    let mut thief: SoftwareSigner = SoftwareSigner::generate(&mut rng).unwrap();
    let thief_proof = Prover::new(&mut thief).prove(&mut rng, &server_clock, &token, request).unwrap().to_bytes();
    let verdict = use_token(&mut c.stream, &token, &thief.public_key().unwrap(), &thief_proof, request);
    t.ok("a stolen token with the thief's own key", verdict == "Error::KeyMismatch", &verdict);
    let verdict = use_token(&mut c.stream, &token, &device_pk, &thief_proof, request);
    t.ok("a stolen token claiming the device key", verdict == "Error::Authentication", &verdict);
    t.failures
}

/// Runs one enrollment (challenge, signed answer) and returns the verdict.
fn enroll(s: &mut TcpStream, server_key: &PublicKey, device: DeviceId, signer: &mut impl DeviceSigner) -> String {
    send(s, ENROLL_BEGIN, &[]);
    let (_, challenge) = recv(s).unwrap();
    let req = Prover::new(signer).answer_enrollment(server_key, &challenge, device).unwrap();
    // The challenge goes back with the answer: the server keeps no state.
    let mut answer = challenge.clone();
    let mut buf = [0u8; MAX_ENROLLMENT_REQUEST_LEN];
    let n = req.to_bytes(&mut buf).unwrap();
    answer.extend_from_slice(&buf[..n]);
    send(s, ENROLL_ANSWER, &answer);
    match recv(s) {
        Some((OK, text)) => String::from_utf8_lossy(&text).into_owned(),
        Some((REJECTED, why)) => format!("Error::{}", String::from_utf8_lossy(&why)),
        other => format!("unexpected {other:?}"),
    }
}

/// Decodes a response body.
fn response(body: &[u8]) -> Result<AppResponse<'_>, postcard::Error> {
    postcard::from_bytes(body)
}

fn one_shot_verdict(s: &mut TcpStream, request: &[u8]) -> String {
    send(s, ONE_SHOT, request);
    match recv(s) {
        Some((OK, text)) => format!("accepted ({})", String::from_utf8_lossy(&text)),
        Some((REJECTED, why)) => format!("Error::{}", String::from_utf8_lossy(&why)),
        other => format!("unexpected {other:?}"),
    }
}

fn use_token(s: &mut TcpStream, token: &[u8], pk: &PublicKey, proof: &[u8], request: &[u8]) -> String {
    let mut buf = [0u8; 1024];
    let msg =
        postcard::to_slice(&TokenUse { token, device_public_key: pk.as_bytes(), proof, request }, &mut buf).unwrap();
    send(s, TOKEN_USE, msg);
    match recv(s) {
        Some((OK, _)) => "accepted".into(),
        Some((REJECTED, why)) => format!("Error::{}", String::from_utf8_lossy(&why)),
        other => format!("unexpected {other:?}"),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    if let Some(addr) = arg("--server") {
        let listener = TcpListener::bind(&addr).expect("bind");
        let mut server = Server::new();
        if let Some(hex) = arg("--long-lived-key") {
            let b: Vec<u8> =
                (0..hex.len() / 2).map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap()).collect();
            assert_eq!(b.len(), 52, "--long-lived-key: 104 hex digits");
            let key = Secret::new(b[..32].try_into().unwrap());
            let iv = Secret::new(b[32..44].try_into().unwrap());
            server.long_lived = Some(CounterReceiver::new(&key, iv, b[44..].try_into().unwrap()).unwrap());
        }
        println!("listening {}", listener.local_addr().unwrap());
        std::io::stdout().flush().unwrap();
        if args.iter().any(|a| a == "--print-key") {
            println!("server-key {}", hex(server.key.public_key().as_bytes()));
        }
        let connections = arg("--connections").and_then(|n| n.parse().ok());
        server.serve(&listener, connections);
        return ExitCode::SUCCESS;
    }
    let failures = if let Some(addr) = arg("--client") {
        run_client(&addr)
    } else {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let addr = listener.local_addr().unwrap().to_string();
        println!("oncewire demo: server on {addr}, client connecting\n");
        std::thread::spawn(move || Server::new().serve(&listener, Some(1)));
        run_client(&addr)
    };
    if failures == 0 {
        println!("\ndemo: every expected outcome happened");
        ExitCode::SUCCESS
    } else {
        println!("\ndemo: {failures} expected outcomes did NOT happen");
        ExitCode::FAILURE
    }
}
