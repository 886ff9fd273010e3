//! `cargo run --example demo`: an oncewire backend (axum) and an app's client
//! (reqwest) over HTTP on loopback, in the binding of `SPEC.md` §16.
//!
//! The backend mounts oncewire's own routes (`/oncewire/v1/…`), an
//! application behind the sealing layer (a plain route `/v1/notes`, a
//! payment `/v1/pay` that needs a fresh challenge and a token, and
//! `/v1/orders` that needs a token), two one-shot routes (`/v1/beacon`,
//! `/v1/unlock`) and `GET /metrics`. The client is
//! [`oncewire_http::client::Client`], with a software key standing in for
//! the phone's hardware key.
//!
//! The transcript shows pinning, enrollment, the handshake, sealed calls, a
//! challenge-bound payment with a token, a token use and a one-shot
//! request, then plays attacks (replays of a frame, a token use and a
//! one-shot request, a changed byte, a one-shot moved to another path, a
//! stolen token, a re-enrollment under a stolen id, an unknown device, a
//! lost reply, a stale frame, an expired token) and shows each refused with
//! its status and next action, and the client recovering where it can.
//! Last it reads `/metrics` and checks that the server counted what the
//! demo did. It exits 0 only if every expected outcome happened.
//!
//! The backend's clock is a [`ShiftedClock`]: the demo moves it forward to
//! make a frame stale and a token expire without waiting.
//!
//! `cargo run --example demo --features oncewire-http/aws-lc-rs` runs the
//! same on the aws-lc-rs provider (`oncewire_http::provider`).
//!
//! The UART/TCP envelope transport of `SPEC.md` Appendix A (for the
//! Cortex-M4 firmware and the Python peer) is `cargo run --example envelope`.

use axum::Router;
use axum::http::StatusCode;
use axum::routing::post;
use oncewire_http::provider::{ServerKey, SoftwareSigner};

use oncewire::DeviceId;
use oncewire::rng::OsRng;
use oncewire_http::client::{Client, ClientError};
use oncewire_http::server::{
    Backend, ChallengeBound, CheckedToken, Need, OneShot, Opened, ShiftedClock, VerifiedDevice,
};
use oncewire_http::store::SessionId;
use oncewire_http::{CONTENT_TYPE, NEXT_ACTION_HEADER, SESSION_HEADER, session_hex};
use std::collections::BTreeMap;
use std::process::ExitCode;

type Fallible<T> = Result<T, Box<dyn std::error::Error>>;

// --- the backend's application ------------------------------------------------

/// A plain sealed route: the handler sees the device and the plaintext.
async fn notes(VerifiedDevice(device): VerifiedDevice, Opened(body): Opened) -> Vec<u8> {
    let mut out = format!("noted for {}: ", lossy(device.as_bytes())).into_bytes();
    out.extend_from_slice(&body);
    out
}

/// Reached only if the challenge answer and the token proof checked out
/// over this exact request.
async fn pay(_: ChallengeBound, token: CheckedToken, Opened(order): Opened) -> Vec<u8> {
    format!("paid by {}: {}", lossy(&token.subject), lossy(&order)).into_bytes()
}

/// Reached only with a token of this device and a fresh proof.
async fn orders(token: CheckedToken, Opened(_): Opened) -> Vec<u8> {
    format!("3 orders of {}", lossy(&token.subject)).into_bytes()
}

/// A one-shot route: no sealed reply, the status alone.
async fn beacon(_: OneShot, Opened(body): Opened) -> StatusCode {
    if body.is_empty() { StatusCode::BAD_REQUEST } else { StatusCode::ACCEPTED }
}

async fn serve(clock: ShiftedClock) -> Fallible<(Backend, String)> {
    let key: ServerKey = ServerKey::generate(&mut OsRng)?;
    let backend = Backend::builder(key).clock(clock).build()?;
    let app = Router::new()
        .route("/v1/notes", post(notes))
        .route("/v1/pay", post(pay).route_layer(backend.require(Need::CHALLENGE_AND_TOKEN)))
        .route("/v1/orders", post(orders).route_layer(backend.require(Need::TOKEN)));
    let one_shot = Router::new().route("/v1/beacon", post(beacon)).route("/v1/unlock", post(beacon));
    let router =
        backend.router().merge(backend.sealed(app)).merge(backend.one_shot(one_shot)).merge(backend.metrics_router());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, router).await });
    Ok((backend, format!("http://{addr}")))
}

// --- the transcript -------------------------------------------------------------

/// The outcomes, and what the server should have counted for them.
#[derive(Default)]
struct Transcript {
    failures: u32,
    /// Refusals the demo caused, by (route kind, reason) as `/metrics` names them.
    refused: BTreeMap<(&'static str, &'static str), u64>,
    /// Acceptances the demo caused, for the route kinds it tallies.
    accepted: BTreeMap<&'static str, u64>,
}

fn bump<K: Ord>(map: &mut BTreeMap<K, u64>, key: K) {
    let n = map.entry(key).or_default();
    *n = n.saturating_add(1);
}

impl Transcript {
    fn ok(&mut self, what: &str, ok: bool, detail: &str) {
        println!("  [{}] {what}: {detail}", if ok { " ok " } else { "FAIL" });
        if !ok {
            self.failures = self.failures.saturating_add(1);
        }
    }

    /// The server accepted a request of these route kinds.
    fn accepted(&mut self, routes: &[&'static str]) {
        for r in routes {
            bump(&mut self.accepted, *r);
        }
    }

    /// The server refused a request the client made on its own (a retry's
    /// first try), counted under `route`/`reason`.
    fn refused_inside(&mut self, route: &'static str, reason: &'static str) {
        bump(&mut self.refused, (route, reason));
    }

    /// An attack: the answer must be a refusal with `status` and `action`,
    /// which the server counts under `route`/`reason`.
    fn expect_refused(
        &mut self,
        what: &str,
        answer: Verdict,
        (status, action): (u16, &str),
        (route, reason): (&'static str, &'static str),
    ) {
        bump(&mut self.refused, (route, reason));
        let (ok, detail) = match answer {
            Verdict::Refused { status: s, action: a, sealed } => (
                s == status && a == action,
                format!(
                    "refused {s} ({a}){}, counted {route}/{reason}",
                    if sealed { " in a sealed reply" } else { "" }
                ),
            ),
            Verdict::Accepted(what) => (false, format!("expected {status} ({action}), got {what}")),
            Verdict::Failed(e) => (false, format!("expected {status} ({action}), got {e}")),
        };
        self.ok(what, ok, &detail);
    }
}

/// What the server answered.
enum Verdict {
    /// A refusal: its status and `Oncewire-Next-Action`, and whether it came
    /// as a sealed (`application/oncewire`) reply.
    Refused { status: u16, action: String, sealed: bool },
    /// Anything without a next action, described.
    Accepted(String),
    /// No answer (transport, or a local protocol error).
    Failed(String),
}

impl Verdict {
    /// The verdict of a client call.
    fn of<T>(r: Result<T, ClientError>) -> Self {
        match r {
            Ok(_) => Self::Accepted("success".into()),
            Err(ClientError::Refused { status, next_action }) => {
                Self::Refused { status, action: next_action, sealed: false }
            }
            Err(e) => Self::Failed(e.to_string()),
        }
    }
}

/// The attacker's side: raw bytes POSTed as they were captured or changed,
/// no client in between.
struct Wire {
    http: reqwest::Client,
    base: String,
}

impl Wire {
    async fn post(&self, path: &str, session: Option<&SessionId>, body: Vec<u8>) -> Verdict {
        let mut req = self.http.post(format!("{}{path}", self.base)).header("content-type", CONTENT_TYPE).body(body);
        if let Some(id) = session {
            req = req.header(SESSION_HEADER, session_hex(id));
        }
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => return Verdict::Failed(e.to_string()),
        };
        let header = |name: &str| resp.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let status = resp.status().as_u16();
        match header(NEXT_ACTION_HEADER) {
            Some(action) => {
                let sealed = header("content-type").as_deref() == Some(CONTENT_TYPE);
                Verdict::Refused { status, action, sealed }
            }
            None => Verdict::Accepted(format!("{status} without a next action")),
        }
    }
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn ms(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn software_key() -> Fallible<SoftwareSigner> {
    // Emulation only: on a phone the Keystore / Secure Enclave key signs.
    Ok(SoftwareSigner::generate(&mut OsRng)?)
}

// --- the demo -------------------------------------------------------------------

async fn run(t: &mut Transcript) -> Fallible<()> {
    let clock = ShiftedClock::new();
    let (backend, base) = serve(clock.clone()).await?;
    println!(
        "oncewire demo: an axum backend on {base}, an app's client calling it over HTTP (provider: {})\n",
        oncewire_http::provider::name()
    );

    println!("1. pinning: the app ships with the server's static key");
    let server_key = backend.public_key();
    println!("  server key {}…", hex(server_key.as_bytes().get(..12).unwrap_or_default()));
    let phone_id = DeviceId::new(b"phone-7f3a")?;
    let mut phone = Client::new(&base, server_key, phone_id, software_key()?);

    println!("2. enrollment: the device proves possession of its hardware key");
    phone.enroll().await?;
    t.accepted(&["enroll"]);
    t.ok("device enrolled", true, "phone-7f3a, its key bound to the pinned server key (POST /oncewire/v1/enroll)");

    println!("3. handshake: Noise NK over P-256 to the pinned key, then the device signs the handshake hash");
    phone.connect().await?;
    t.accepted(&["handshake", "finish"]);
    let id = phone.session_id().ok_or("no session after connect")?;
    let offset = phone.session().map_or(0, |s| s.clock_offset_ms());
    t.ok(
        "session established",
        backend.sessions() == 1,
        &format!("Oncewire-Session: {}; clock offset {offset:+} ms (server minus device)", session_hex(&id)),
    );

    println!("4. sealed calls: the handler sees plaintext, the wire carries sealed bytes only");
    let (note, marker) = (b"note: buy milk", b"buy milk");
    let first = phone.seal(note)?;
    let raw = phone.send_raw("/v1/notes", Some(&first.session), first.frame.clone()).await?;
    let (request_len, reply_len) = (first.frame.len(), raw.body.len());
    let reply_sealed = !contains(&raw.body, marker);
    let reply = phone.open_reply(first.request, raw)?;
    t.ok(
        "POST /v1/notes",
        reply.status == 200 && reply.body == b"noted for phone-7f3a: note: buy milk",
        &format!("{} {:?}", reply.status, lossy(&reply.body)),
    );
    t.ok(
        "the request on the wire",
        !contains(&first.frame, marker),
        &format!("{request_len} sealed bytes for {} of plaintext; \"buy milk\" not among them", note.len()),
    );
    t.ok(
        "the reply on the wire",
        reply_sealed,
        &format!("{reply_len} sealed bytes, opened only as the answer to that request; \"buy milk\" not among them"),
    );
    let reply = phone.call("/v1/notes", b"note: call mum").await?;
    t.ok("Client::call (seal, send, open)", reply.status == 200, &format!("{} {:?}", reply.status, lossy(&reply.body)));

    println!("5. a payment bound to a fresh challenge and a token, over one hash of the order");
    let paid = phone.call_bound("/v1/pay", b"pay 10.00 EUR to bob", Need::CHALLENGE_AND_TOKEN).await?;
    t.accepted(&["bound"]);
    let token = phone.token().map(<[u8]>::to_vec).ok_or("no token after a bound call")?;
    t.ok(
        "POST /v1/pay",
        paid.status == 200 && paid.body == b"paid by phone-7f3a: pay 10.00 EUR to bob",
        &format!("{} {:?}", paid.status, lossy(&paid.body)),
    );
    println!("  (the client fetched a {}-byte token and a 40-byte challenge first)", token.len());

    println!("6. a token use: the token and a fresh proof of possession, sealed with the request");
    let request = b"GET /v1/orders";
    let token_use = phone.bind(None, Some(&token), request)?;
    let sealed = phone.seal(&token_use)?;
    let raw = phone.send_raw("/v1/orders", Some(&sealed.session), sealed.frame).await?;
    let reply = phone.open_reply(sealed.request, raw)?;
    t.accepted(&["bound"]);
    let binding_len = token_use.first().copied().map_or(0, usize::from);
    t.ok(
        "POST /v1/orders",
        reply.status == 200 && reply.body == b"3 orders of phone-7f3a",
        &format!(
            "{} {:?}; plaintext {} bytes: binding and proof {binding_len} ‖ token {} ‖ request {}",
            reply.status,
            lossy(&reply.body),
            token_use.len(),
            token.len(),
            request.len()
        ),
    );

    println!("7. a one-shot request sealed to the server's request key (HPKE) for its path, no session");
    let beacon = phone.seal_one_shot("/v1/beacon", b"door 3 opened").await?;
    let status = phone.send_raw("/v1/beacon", None, beacon.clone()).await?.status;
    t.accepted(&["one_shot"]);
    t.ok(
        "POST /v1/beacon",
        status == 202,
        &format!("{} bytes, status {status} (the key was fetched once over the session)", beacon.len()),
    );

    println!("8. attacks");
    let wire = Wire { http: reqwest::Client::new(), base: base.clone() };
    let r = wire.post("/v1/notes", Some(&first.session), first.frame.clone()).await;
    t.expect_refused("replay the frame of step 4", r, (400, "drop"), ("call", "replay"));

    let mut forged = phone.seal(b"note: transfer 10")?;
    if let Some(last) = forged.frame.last_mut() {
        *last ^= 0x01;
    }
    let r = wire.post("/v1/notes", Some(&forged.session), forged.frame).await;
    t.expect_refused("change one byte of a frame (its tag)", r, (400, "drop"), ("call", "auth_failed"));

    let again = phone.seal(&token_use)?;
    let r = wire.post("/v1/orders", Some(&again.session), again.frame).await;
    t.expect_refused(
        "the token use of step 6 in a new frame (same proof)",
        r,
        (400, "drop"),
        ("bound", "token_proof_replay"),
    );

    let r = wire.post("/v1/beacon", None, beacon).await;
    t.expect_refused("replay the one-shot request of step 7", r, (400, "drop"), ("one_shot", "replay"));

    let moved = phone.seal_one_shot("/v1/beacon", b"door 4 opened").await?;
    let r = wire.post("/v1/unlock", None, moved).await;
    t.expect_refused("a one-shot for /v1/beacon sent to /v1/unlock", r, (400, "drop"), ("one_shot", "auth_failed"));

    let mut tablet = Client::new(&base, server_key, DeviceId::new(b"tablet-2")?, software_key()?);
    tablet.enroll().await?;
    tablet.connect().await?;
    t.accepted(&["enroll", "handshake", "finish"]);
    let stolen = tablet.bind(None, Some(&token), request)?;
    let sealed = tablet.seal(&stolen)?;
    let r = wire.post("/v1/orders", Some(&sealed.session), sealed.frame).await;
    t.expect_refused(
        "phone-7f3a's token used by tablet-2 (enrolled, in its own session)",
        r,
        (401, "refresh-token"),
        ("bound", "token_refused"),
    );

    let mut intruder = Client::new(&base, server_key, phone_id, software_key()?);
    let r = Verdict::of(intruder.enroll().await);
    t.expect_refused("re-enroll phone-7f3a with another key", r, (400, "drop"), ("enroll", "already_enrolled"));

    let mut stranger = Client::new(&base, server_key, DeviceId::new(b"stranger-9")?, software_key()?);
    let r = Verdict::of(stranger.connect().await);
    // Message 1 is answered: the device names itself only in message 3.
    t.accepted(&["handshake"]);
    t.expect_refused("a handshake by a device never enrolled", r, (403, "reenroll"), ("finish", "unknown_device"));

    let lost = phone.seal(b"note: reply lost")?;
    let _lost_on_the_way_back = phone.send_raw("/v1/notes", Some(&lost.session), lost.frame.clone()).await?;
    let r = wire.post("/v1/notes", Some(&lost.session), lost.frame.clone()).await;
    t.expect_refused("a lost reply: resend the same frame", r, (400, "drop"), ("call", "replay"));
    let next_seq = phone.session().map_or(0, |s| s.next_seq());
    let reply = phone.call("/v1/notes", b"note: reply lost").await?;
    t.ok(
        "  Client::call seals it again instead",
        reply.status == 200,
        &format!(
            "sequence {} resent: refused; sealed again as sequence {next_seq}: {}",
            lost.request.seq, reply.status
        ),
    );

    let freshness_ms = backend.config().limits.freshness.map_or(30_000, |f| f.max_age_ms);
    let held = phone.seal(b"note: held back")?;
    clock.shift(ms(freshness_ms.saturating_add(1_000)));
    let r = wire.post("/v1/notes", Some(&held.session), held.frame).await;
    t.expect_refused(
        &format!("a frame held back past the record freshness ({} s)", freshness_ms / 1_000),
        r,
        (401, "rehandshake"),
        ("call", "stale"),
    );
    let before = phone.session_id().ok_or("no session")?;
    let reply = phone.call("/v1/notes", b"note: after the wait").await?;
    // `call`'s first try was sealed under the old clock offset: stale too.
    t.refused_inside("call", "stale");
    t.accepted(&["handshake", "finish"]);
    recovered(t, "  the client recovers by itself", &phone, reply.status, before);

    let ttl_ms = backend.config().token_ttl_ms;
    clock.shift(ms(ttl_ms.saturating_add(1_000)));
    println!("  (the server's clock moves past Config::token_ttl_ms = {} s)", ttl_ms / 1_000);
    let before = phone.session_id().ok_or("no session")?;
    // Records sealed under the old clock offset are stale again: `call` re-handshakes first.
    let reply = phone.call("/v1/notes", b"note: much later").await?;
    t.refused_inside("call", "stale");
    t.accepted(&["handshake", "finish"]);
    recovered(t, "  the session went stale too; the client recovers by itself", &phone, reply.status, before);
    let held_token = phone.token().map(<[u8]>::to_vec).ok_or("no token")?;
    let expired = phone.bind(None, Some(&held_token), request)?;
    let sealed = phone.seal(&expired)?;
    let r = wire.post("/v1/orders", Some(&sealed.session), sealed.frame).await;
    t.expect_refused("a token past its lifetime", r, (401, "refresh-token"), ("bound", "expired"));
    let reply = phone.call_bound("/v1/orders", request, Need::TOKEN).await?;
    // `call_bound`'s first try used the expired token.
    t.refused_inside("bound", "expired");
    let renewed = phone.token().is_some_and(|tk| tk != held_token.as_slice());
    if reply.status == 200 {
        t.accepted(&["bound"]);
    }
    t.ok(
        "  the client recovers by itself",
        reply.status == 200 && renewed,
        &if renewed {
            format!("Client::call_bound was told refresh-token, fetched a new token, proved again: {}", reply.status)
        } else {
            format!("Client::call_bound returned status {} and kept the expired token", reply.status)
        },
    );

    println!("9. the metrics (GET /metrics): what the server counted");
    let text = reqwest::get(format!("{base}/metrics")).await?.text().await?;
    check_metrics(t, &text);
    Ok(())
}

/// After a `rehandshake` refusal: `call` ran a new handshake and sealed again.
fn recovered(t: &mut Transcript, what: &str, phone: &Client<SoftwareSigner>, status: u16, old: SessionId) {
    let id = phone.session_id().unwrap_or(old);
    let offset = phone.session().map_or(0, |s| s.clock_offset_ms());
    t.ok(
        what,
        status == 200 && id != old,
        &format!(
            "Client::call was told rehandshake, got session {} (offset {offset:+} ms), sealed again: {status}",
            session_hex(&id)
        ),
    );
}

/// Prints the non-zero `oncewire_*` lines and checks them against the tally.
fn check_metrics(t: &mut Transcript, text: &str) {
    let mut refused: BTreeMap<(String, String), u64> = BTreeMap::new();
    let mut accepted: BTreeMap<String, u64> = BTreeMap::new();
    let mut gauges: BTreeMap<String, u64> = BTreeMap::new();
    for line in text.lines().filter(|l| l.starts_with("oncewire_")) {
        let Some((name, value)) = line.rsplit_once(' ') else { continue };
        let value: u64 = value.parse().unwrap_or(0);
        if value != 0 {
            println!("  {line}");
        }
        let label =
            |l: &str| name.split(&format!("{l}=\"")).nth(1).and_then(|v| v.split('"').next()).map(str::to_owned);
        if name.starts_with("oncewire_rejected_total{") {
            if let (Some(route), Some(reason)) = (label("route"), label("reason")) {
                refused.insert((route, reason), value);
            }
        } else if name.starts_with("oncewire_accepted_total{") {
            if let Some(route) = label("route") {
                accepted.insert(route, value);
            }
        } else {
            gauges.insert(name.to_owned(), value);
        }
    }

    // What the demo played, in the same shape, zeros left out.
    let mut played: BTreeMap<(String, String), u64> = BTreeMap::new();
    for ((route, reason), n) in &t.refused {
        played.insert(((*route).to_owned(), (*reason).to_owned()), *n);
    }
    refused.retain(|_, n| *n > 0);
    let per_route = |m: &BTreeMap<(String, String), u64>| {
        let mut sums: BTreeMap<String, u64> = BTreeMap::new();
        for ((route, _), n) in m {
            let e = sums.entry(route.clone()).or_default();
            *e = e.saturating_add(*n);
        }
        sums
    };
    let (played_sums, counted_sums) = (per_route(&played), per_route(&refused));
    let shown: Vec<String> = played_sums
        .keys()
        .chain(counted_sums.keys().filter(|r| !played_sums.contains_key(*r)))
        .map(|r| {
            let (p, c) = (played_sums.get(r).copied().unwrap_or(0), counted_sums.get(r).copied().unwrap_or(0));
            format!("{r} {p}{}{c}", if p == c { " = " } else { " != " })
        })
        .collect();
    t.ok("refused calls played = rejected counters, per route", played_sums == counted_sums, &shown.join(", "));
    let wrong: Vec<String> = played
        .keys()
        .chain(refused.keys())
        .filter(|k| played.get(*k) != refused.get(*k))
        .map(|(route, reason)| {
            let (p, c) = (played.get(&(route.clone(), reason.clone())), refused.get(&(route.clone(), reason.clone())));
            format!("{route}/{reason}: played {}, counted {}", p.copied().unwrap_or(0), c.copied().unwrap_or(0))
        })
        .collect();
    let detail =
        if wrong.is_empty() { format!("{} route/reason pairs, as played", played.len()) } else { wrong.join("; ") };
    t.ok("each refusal under its reason", wrong.is_empty(), &detail);

    let shown: Vec<String> =
        t.accepted.iter().map(|(r, n)| format!("{r} {n}/{}", accepted.get(*r).copied().unwrap_or(0))).collect();
    let same = t.accepted.iter().all(|(r, n)| accepted.get(*r) == Some(n));
    t.ok("acceptances, played/counted", same, &shown.join(", "));

    let finished = t.accepted.get("finish").copied().unwrap_or(0);
    let sessions = gauges.get("oncewire_sessions").copied().unwrap_or(0);
    let pending = gauges.get("oncewire_pending_handshakes").copied().unwrap_or(0);
    t.ok(
        "sessions held",
        sessions == finished && pending == 0,
        &format!("{sessions} (one per completed handshake, none swept yet), {pending} pending"),
    );
}

#[tokio::main]
async fn main() -> ExitCode {
    let mut t = Transcript::default();
    if let Err(e) = run(&mut t).await {
        t.ok("the demo stopped", false, &e.to_string());
    }
    if t.failures == 0 {
        println!("\ndemo: every expected outcome happened");
        ExitCode::SUCCESS
    } else {
        println!("\ndemo: {} expected outcomes did NOT happen", t.failures);
        ExitCode::FAILURE
    }
}
