//! Load generator: sealed oncewire-http calls against the same axum
//! endpoint with plain JSON, in one run (DESIGN §7: sealed at least 0.8x
//! of plain at 1 KiB, every response verified).
//!
//! ```text
//! cargo run --release -p oncewire-http --example load -- [--clients 64] [--seconds 5] [--quick]
//!     [--only handshake,sealed64,plain64,sealed1k,plain1k]
//! cargo run --release -p oncewire-http --features aws-lc-rs --example load -- ...   # on aws-lc-rs
//! ```
//!
//! `scripts/load-both` runs it once per provider and prints the two side by side.
//!
//! `--quick` is 64 clients, 1 s per phase and 2,000 exchanges for the "no
//! HTTP" line (for CI: it fails on errors and on a disagreement with
//! `/metrics`, never on the ratio; a debug build judges no bar). `--only`
//! runs some phases (for profiling one of them).
//!
//! One process starts two servers on loopback, each on its own port:
//! - the oncewire backend (`Backend::router`, `/metrics`, and `POST /echo`
//!   behind `Backend::sealed`): the handler parses the opened body as JSON
//!   `{"n": u64, "data": string}` and returns it serialized again;
//! - a plain axum server with `POST /plain/echo` taking and returning
//!   `axum::Json` of the same struct: the same handler work, no oncewire.
//!
//! Then N simulated devices (default 64), each an oncewire `Client` with its
//! own key, all over one reqwest connection pool (keep-alive HTTP/1.1),
//! run these phases, each for a fixed time after a short untimed warm-up:
//! handshakes (each device enrolled once, then `connect()` in a loop),
//! sealed calls and plain JSON calls at 64 B and 1 KiB bodies (the JSON
//! text is exactly that long; `n` is a per-request counter). The call
//! phases take turns in slices of at most 1 s, so that the machine's other
//! load falls on all of them alike. Every sealed
//! reply must open, be bound to its request and equal the request's JSON
//! (so its counter); every plain reply must equal the request's JSON. Any
//! error makes the exit status non-zero.
//!
//! At the end the backend's `/metrics` must agree with what the generator
//! counted: `oncewire_accepted_total{route="call"}` equals the sealed calls
//! made (warm-up included) and `{route="finish"}` the handshakes completed.
//!
//! The servers and the clients share this machine's cores (one tokio
//! runtime, one worker thread per core): the numbers are a ratio between
//! two endpoints measured the same way, not a server capacity. Also
//! printed: the process's CPU per operation (clients and servers), and the
//! oncewire work of one sealed exchange timed without HTTP.
#![allow(clippy::arithmetic_side_effects, clippy::cast_precision_loss)] // statistics of a benchmark tool

use axum::Router;
use axum::routing::post;
use axum::serve::ListenerExt as _;
use oncewire::DeviceSigner as _;
use oncewire::clock::SystemClock;
use oncewire_http::provider::{ClientHandshake, ServerKey, Session, SoftwareSigner};

use oncewire::handshake::MAX_HANDSHAKE_LEN;
use oncewire::rng::OsRng;
use oncewire::wire::buffer_len;
use oncewire::{DeviceId, Limits, Received};
use oncewire_http::client::Client;
use oncewire_http::server::{Backend, Opened, VerifiedDevice};
use serde::{Deserialize, Serialize};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Barrier;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Device = Client<SoftwareSigner>;

/// Untimed operations per task before each phase's clock starts.
const WARMUP_OPS: usize = 3;

#[derive(Serialize, Deserialize, PartialEq, Eq, Debug)]
struct Msg {
    n: u64,
    data: String,
}

/// A message whose JSON text is exactly `size` bytes (for sizes above 40).
fn message(n: u64, size: usize) -> Vec<u8> {
    let overhead = serde_json::to_vec(&Msg { n, data: String::new() }).map_or(0, |v| v.len());
    let data = "x".repeat(size.saturating_sub(overhead));
    serde_json::to_vec(&Msg { n, data }).unwrap_or_default()
}

async fn sealed_echo(_: VerifiedDevice, Opened(body): Opened) -> Result<Vec<u8>, axum::http::StatusCode> {
    let m: Msg = serde_json::from_slice(&body).map_err(|_| axum::http::StatusCode::BAD_REQUEST)?;
    serde_json::to_vec(&m).map_err(|_| axum::http::StatusCode::INTERNAL_SERVER_ERROR)
}

async fn plain_echo(axum::Json(m): axum::Json<Msg>) -> axum::Json<Msg> {
    axum::Json(m)
}

async fn start_servers() -> Result<(Backend, String, String), BoxError> {
    let key: ServerKey = ServerKey::generate(&mut OsRng)?;
    let backend = Backend::builder(key).build()?;
    let app = Router::new().route("/echo", post(sealed_echo));
    let sealed = backend.router().merge(backend.sealed(app)).merge(backend.metrics_router());
    backend.spawn_sweeper(Duration::from_secs(10));
    let plain = Router::new().route("/plain/echo", post(plain_echo));

    let l1 = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let l2 = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let (a1, a2) = (l1.local_addr()?, l2.local_addr()?);
    // The same socket options on both servers.
    let l1 = l1.tap_io(|s| {
        let _ = s.set_nodelay(true);
    });
    let l2 = l2.tap_io(|s| {
        let _ = s.set_nodelay(true);
    });
    tokio::spawn(async move { axum::serve(l1, sealed).await });
    tokio::spawn(async move { axum::serve(l2, plain).await });
    Ok((backend, format!("http://{a1}"), format!("http://{a2}/plain/echo")))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Handshake,
    Sealed(usize),
    Plain(usize),
}

impl Kind {
    fn label(self) -> String {
        let size = |s: usize| if s >= 1024 { format!("{} KiB", s / 1024) } else { format!("{s} B") };
        match self {
            Self::Handshake => "handshake (connect)".to_owned(),
            Self::Sealed(s) => format!("sealed call {}", size(s)),
            Self::Plain(s) => format!("plain JSON {}", size(s)),
        }
    }
}

#[derive(Default)]
struct TaskOut {
    latencies_ns: Vec<u64>,
    warm_ok: u64,
    errors: u64,
    first_error: Option<String>,
    /// Handshakes a sealed call ran on its own (a session past its limits).
    reconnects: u64,
    end: Option<Instant>,
}

struct PhaseResult {
    kind: Kind,
    ops: u64,
    warm_ok: u64,
    errors: u64,
    first_error: Option<String>,
    reconnects: u64,
    elapsed: Duration,
    cpu: Duration,
    latencies_ns: Vec<u64>,
}

impl PhaseResult {
    fn ops_per_s(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    fn cpu_per_op(&self) -> Duration {
        self.cpu / u32::try_from(self.ops.max(1)).unwrap_or(u32::MAX)
    }

    /// Adds a later slice of the same kind.
    fn merge(&mut self, other: Self) {
        self.ops += other.ops;
        self.warm_ok += other.warm_ok;
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        self.reconnects += other.reconnects;
        self.elapsed += other.elapsed;
        self.cpu += other.cpu;
        self.latencies_ns.extend(other.latencies_ns);
    }
}

/// One operation of a phase, verified.
async fn op(kind: Kind, dev: &mut Device, http: &reqwest::Client, plain_url: &str, n: u64) -> Result<u64, String> {
    match kind {
        Kind::Handshake => dev.connect().await.map(|()| 0).map_err(|e| e.to_string()),
        Kind::Sealed(size) => {
            let before = dev.session_id();
            let body = message(n, size);
            let reply = dev.call_no_retry("/echo", &body).await.map_err(|e| e.to_string())?;
            let reconnected = u64::from(dev.session_id() != before);
            if reply.status != 200 {
                return Err(format!("sealed call: status {}", reply.status));
            }
            if reply.body != body {
                return Err(format!("sealed call {n}: the reply opened but does not match its request"));
            }
            Ok(reconnected)
        }
        Kind::Plain(size) => {
            let body = message(n, size);
            let resp = http
                .post(plain_url)
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
                .await
                .map_err(|e| e.to_string())?;
            if resp.status() != 200 {
                return Err(format!("plain call: status {}", resp.status()));
            }
            let got = resp.bytes().await.map_err(|e| e.to_string())?;
            if got.as_ref() != body.as_slice() {
                return Err(format!("plain call {n}: the reply does not match its request"));
            }
            Ok(0)
        }
    }
}

/// The process's CPU time so far (user + system, all threads), from
/// `/proc/self/stat` in clock ticks of 1/100 s (Linux's USER_HZ).
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses).
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest.split_whitespace().map(|x| x.parse().unwrap_or(0)).collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after ')'.
    let ticks = f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

fn percentile(sorted: &[u64], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    Duration::from_nanos(sorted.get(i).copied().unwrap_or(0))
}

async fn phase(
    kind: Kind,
    devices: Vec<Device>,
    http: &reqwest::Client,
    plain_url: &str,
    seconds: f64,
) -> (Vec<Device>, PhaseResult) {
    let n = devices.len();
    let barrier = Arc::new(Barrier::new(n + 1));
    let mut tasks = Vec::with_capacity(n);
    for (t, mut dev) in devices.into_iter().enumerate() {
        let barrier = barrier.clone();
        let http = http.clone();
        let url = plain_url.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut out = TaskOut::default();
            let mut seq = 0u64;
            let mut next = || {
                seq += 1;
                ((t as u64) << 32) | seq
            };
            let record = |out: &mut TaskOut, r: Result<u64, String>, timed: Option<Duration>| match r {
                Ok(reconnected) => {
                    out.reconnects += reconnected;
                    match timed {
                        Some(d) => out.latencies_ns.push(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)),
                        None => out.warm_ok += 1,
                    }
                }
                Err(e) => {
                    out.errors += 1;
                    out.first_error.get_or_insert(e);
                }
            };
            for _ in 0..WARMUP_OPS {
                let r = op(kind, &mut dev, &http, &url, next()).await;
                record(&mut out, r, None);
            }
            barrier.wait().await;
            let deadline = Instant::now() + Duration::from_secs_f64(seconds);
            while Instant::now() < deadline {
                let t0 = Instant::now();
                let r = op(kind, &mut dev, &http, &url, next()).await;
                record(&mut out, r, Some(t0.elapsed()));
            }
            out.end = Some(Instant::now());
            (dev, out)
        }));
    }
    barrier.wait().await;
    let start = Instant::now();
    let cpu0 = cpu_time();
    let mut devices = Vec::with_capacity(n);
    let mut all = Vec::new();
    let mut res = PhaseResult {
        kind,
        ops: 0,
        warm_ok: 0,
        errors: 0,
        first_error: None,
        reconnects: 0,
        elapsed: Duration::ZERO,
        cpu: Duration::ZERO,
        latencies_ns: Vec::new(),
    };
    let mut end = start;
    for t in tasks {
        match t.await {
            Ok((dev, out)) => {
                devices.push(dev);
                res.ops += out.latencies_ns.len() as u64;
                res.warm_ok += out.warm_ok;
                res.errors += out.errors;
                res.reconnects += out.reconnects;
                if res.first_error.is_none() {
                    res.first_error = out.first_error;
                }
                end = end.max(out.end.unwrap_or(start));
                all.extend(out.latencies_ns);
            }
            Err(e) => {
                res.errors += 1;
                res.first_error.get_or_insert(format!("task failed: {e}"));
            }
        }
    }
    res.cpu = cpu_time().saturating_sub(cpu0);
    res.elapsed = end - start;
    res.latencies_ns = all;
    (devices, res)
}

fn cpu_line() -> (String, String) {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |name: &str| {
        info.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_once(':'))
            .map_or(String::new(), |(_, v)| v.trim().to_owned())
    };
    let model = field("model name");
    let flags = field("flags");
    let have: Vec<String> = ["aes", "avx2", "avx512f", "vaes", "pclmulqdq"]
        .iter()
        .map(|f| format!("{f}={}", if flags.split_whitespace().any(|x| x == *f) { "yes" } else { "no" }))
        .collect();
    (model, have.join(" "))
}

/// The oncewire work of one sealed exchange without HTTP, on one core:
/// the client seals a request, the server opens it and seals the reply,
/// the client opens the reply (4 AES-GCM passes plus framing and replay
/// checks, and the buffers the HTTP layer allocates for each).
fn core_cost(size: usize, iterations: u32) -> Result<Duration, BoxError> {
    let key: ServerKey = ServerKey::generate(&mut OsRng)?;
    let mut signer: SoftwareSigner = SoftwareSigner::generate(&mut OsRng)?;
    let device_key = signer.public_key()?;
    let mut m1 = [0u8; MAX_HANDSHAKE_LEN];
    let (hs, n1) = ClientHandshake::start(*key.public_key(), &mut OsRng, &SystemClock, &mut m1)?;
    let mut m2 = [0u8; MAX_HANDSHAKE_LEN];
    let (pending, n2) =
        key.accept(&mut OsRng, &SystemClock, m1.get(..n1).unwrap_or_default(), Limits::DEFAULT, &mut m2)?;
    let mut m3 = [0u8; MAX_HANDSHAKE_LEN];
    let (mut client, n3): (Session, usize) = hs.finish(
        &SystemClock,
        m2.get(..n2).unwrap_or_default(),
        DeviceId::new(b"core-cost")?,
        &mut signer,
        Limits::DEFAULT,
        &mut m3,
    )?;
    let step = pending.read_finish::<32>(&SystemClock, m3.get_mut(..n3).unwrap_or_default())?;
    let mut server: Session = step.verify(&SystemClock, &device_key)?;
    let body = message(1, size);
    let t0 = Instant::now();
    for _ in 0..iterations {
        let mut frame = vec![0u8; buffer_len(body.len())];
        let (n, request) = client.seal_request(&SystemClock, &body, &mut frame)?;
        frame.truncate(n);
        let (rid, plain) = match server.open_in_place(&SystemClock, &mut frame)? {
            Received::Record(o, rid) => (rid, o.payload.to_vec()),
            Received::KeyUpdated { .. } => return Err("unexpected key update".into()),
        };
        let mut out = vec![0u8; buffer_len(plain.len())];
        let n = server.seal_response(&SystemClock, rid, &plain, &mut out)?;
        out.truncate(n);
        let opened = client.open_response(&SystemClock, request, &mut out)?;
        if opened.payload != body.as_slice() {
            return Err("core-cost loop: reply mismatch".into());
        }
    }
    Ok(t0.elapsed() / iterations)
}

/// `(route, value)` of every `oncewire_accepted_total` line.
fn accepted(metrics: &str, route: &str) -> Option<u64> {
    let prefix = format!("oncewire_accepted_total{{route=\"{route}\"}} ");
    metrics.lines().find_map(|l| l.strip_prefix(&prefix)).and_then(|v| v.trim().parse().ok())
}

/// The length of one timed slice: the call phases take turns in slices of
/// at most this long, so that a change in the machine's other load during
/// the run falls on sealed and plain alike.
const SLICE_S: f64 = 1.0;

const ALL_KINDS: [(Kind, &str); 5] = [
    (Kind::Handshake, "handshake"),
    (Kind::Sealed(64), "sealed64"),
    (Kind::Plain(64), "plain64"),
    (Kind::Sealed(1024), "sealed1k"),
    (Kind::Plain(1024), "plain1k"),
];

const USAGE: &str =
    "usage: load [--clients N] [--seconds S] [--quick] [--only handshake,sealed64,plain64,sealed1k,plain1k]";

struct Options {
    clients: usize,
    seconds: f64,
    kinds: Vec<Kind>,
    /// Exchanges timed for the "no HTTP, one core" line.
    core_iterations: u32,
}

fn options() -> Result<Options, BoxError> {
    let mut o = Options {
        clients: 64,
        seconds: 5.0,
        kinds: ALL_KINDS.iter().map(|(k, _)| *k).collect(),
        core_iterations: 20_000,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--clients" => o.clients = args.next().ok_or("--clients N")?.parse()?,
            "--seconds" => o.seconds = args.next().ok_or("--seconds S")?.parse()?,
            "--quick" => {
                o.clients = 64;
                o.seconds = 1.0;
                o.core_iterations = 2_000;
            }
            "--only" => {
                let list = args.next().ok_or(USAGE)?;
                o.kinds = list
                    .split(',')
                    .map(|name| ALL_KINDS.iter().find(|(_, n)| *n == name).map(|(k, _)| *k).ok_or(USAGE))
                    .collect::<Result<_, _>>()?;
            }
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    if o.clients == 0 || o.seconds.is_nan() || o.seconds <= 0.0 {
        return Err("--clients and --seconds must be positive".into());
    }
    Ok(o)
}

async fn run() -> Result<bool, BoxError> {
    let o = options()?;
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let (model, flags) = cpu_line();
    println!(
        "oncewire-http load: {} clients, {} s per phase (call phases in turns of at most {SLICE_S} s), \
         keep-alive HTTP/1.1 on loopback",
        o.clients, o.seconds
    );
    println!("CPU: {model}; {cores} cores; {flags}");
    println!("provider: {} (oncewire_http::provider::Provider, both sides)", oncewire_http::provider::name());
    println!(
        "Note: the servers and the load generator run in this one process (one tokio runtime) and share \
         these {cores} cores; CPU below is the whole process's (clients and servers)."
    );

    let (backend, base, plain_url) = start_servers().await?;
    let http = reqwest::Client::builder().pool_max_idle_per_host(o.clients.saturating_mul(2)).build()?;

    // Devices: one key each, each enrolled once.
    let mut devices = Vec::with_capacity(o.clients);
    for i in 0..o.clients {
        let signer: SoftwareSigner = SoftwareSigner::generate(&mut OsRng)?;
        let id = DeviceId::new(format!("load-{i}").as_bytes())?;
        devices.push(Client::with_http(http.clone(), &base, backend.public_key(), id, signer));
    }
    let mut tasks = Vec::with_capacity(o.clients);
    for mut d in devices {
        tasks.push(tokio::spawn(async move { d.enroll().await.map(|()| d) }));
    }
    let mut devices = Vec::with_capacity(o.clients);
    for t in tasks {
        devices.push(t.await?.map_err(|e| format!("enrollment failed: {e}"))?);
    }

    // Handshakes first (they leave every device with a session), then the
    // call phases in turns of at most SLICE_S each.
    let mut results: Vec<PhaseResult> = Vec::new();
    if o.kinds.contains(&Kind::Handshake) {
        let (d, r) = phase(Kind::Handshake, devices, &http, &plain_url, o.seconds).await;
        devices = d;
        results.push(r);
    }
    let calls: Vec<Kind> = o.kinds.iter().copied().filter(|k| *k != Kind::Handshake).collect();
    let slices = (o.seconds / SLICE_S).ceil().max(1.0);
    let slice_s = o.seconds / slices;
    for _ in 0..(slices as u64) {
        for &kind in &calls {
            let (d, r) = phase(kind, devices, &http, &plain_url, slice_s).await;
            devices = d;
            match results.iter_mut().find(|x| x.kind == kind) {
                Some(acc) => acc.merge(r),
                None => results.push(r),
            }
        }
    }

    println!();
    println!(
        "{:<22} {:>9} {:>11} {:>9} {:>9} {:>9} {:>11} {:>7}",
        "phase", "ops", "ops/s", "p50 ms", "p99 ms", "CPU cores", "CPU µs/op", "errors"
    );
    for r in &mut results {
        r.latencies_ns.sort_unstable();
        let cpu_cores = r.cpu.as_secs_f64() / r.elapsed.as_secs_f64().max(1e-9);
        println!(
            "{:<22} {:>9} {:>11.1} {:>9.3} {:>9.3} {:>9.2} {:>11.1} {:>7}",
            r.kind.label(),
            r.ops,
            r.ops_per_s(),
            percentile(&r.latencies_ns, 0.50).as_secs_f64() * 1e3,
            percentile(&r.latencies_ns, 0.99).as_secs_f64() * 1e3,
            cpu_cores,
            r.cpu_per_op().as_secs_f64() * 1e6,
            r.errors
        );
    }
    let find = |k: Kind| results.iter().find(|r| r.kind == k);
    for size in [64, 1024] {
        let (Some(sealed), Some(plain)) = (find(Kind::Sealed(size)), find(Kind::Plain(size))) else { continue };
        let ratio = sealed.ops_per_s() / plain.ops_per_s().max(1e-9);
        // With the cores saturated, throughput is cores / CPU per op: the
        // ratio of CPU costs is the same ratio, less sensitive to other load.
        let by_cpu = plain.cpu_per_op().as_secs_f64() / sealed.cpu_per_op().as_secs_f64().max(1e-12);
        let label = if size >= 1024 { "1 KiB" } else { "64 B" };
        let verdict = if size < 1024 {
            String::new()
        } else if cfg!(debug_assertions) {
            " (bar: at least 0.8x, judged on --release builds only: this one is a debug build)".to_owned()
        } else {
            format!(" (bar: at least 0.8x): {}", if ratio >= 0.8 { "PASS" } else { "BELOW" })
        };
        println!("sealed / plain at {label}: {ratio:.3}x throughput{verdict}; {by_cpu:.3}x by CPU per op");
    }

    // The oncewire work alone, per exchange, for scale.
    for size in [64, 1024] {
        let c = core_cost(size, o.core_iterations)?;
        println!(
            "oncewire work per sealed exchange at {size} B, no HTTP, one core (seal, open, seal reply, open reply): {:.2} µs",
            c.as_secs_f64() * 1e6
        );
    }

    let mut ok = true;
    for r in results.iter().filter(|r| r.errors > 0) {
        ok = false;
        println!("ERRORS in {}: {} (first: {})", r.kind.label(), r.errors, r.first_error.as_deref().unwrap_or("?"));
    }

    // The backend's own counters must agree with ours.
    let m = http.get(format!("{base}/metrics")).send().await?.text().await?;
    let calls: u64 = results.iter().filter(|r| matches!(r.kind, Kind::Sealed(_))).map(|r| r.ops + r.warm_ok).sum();
    let hs = results.iter().find(|r| r.kind == Kind::Handshake).map_or(0, |r| r.ops + r.warm_ok);
    let finishes = hs + results.iter().map(|r| r.reconnects).sum::<u64>();
    for (route, counted) in [("call", calls), ("finish", finishes)] {
        let served = accepted(&m, route);
        let agree = served == Some(counted);
        ok &= agree;
        println!(
            "metrics: oncewire_accepted_total{{route=\"{route}\"}} = {}, counted by the generator = {counted}: {}",
            served.map_or("missing".to_owned(), |v| v.to_string()),
            if agree { "agree" } else { "DISAGREE" }
        );
    }
    Ok(ok)
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("load: {e}");
            ExitCode::FAILURE
        }
    }
}
