//! The fleet test (issue 13, item 4): three `fleet_server` processes of one
//! fleet behind nginx (round-robin, no stickiness), clients that enroll,
//! handshake and make sealed calls through it, every acknowledged frame
//! replayed to each other server, one server killed with SIGKILL and Redis
//! restarted in the middle of the load, and PostgreSQL asked at the end how
//! often each operation ran.
//!
//! ```text
//! eval "$(scripts/services start)"
//! fleet_test [--quick] [--duration SECS] [--clients N] [--pace-ms MS]
//!            [--redis-down-ms MS] [--direct-every N] [--keep]
//!            [--restart-redis-with CMD]
//! ```
//!
//! `--restart-redis-with` brings back a Redis other than the one of
//! `scripts/services` (a shell command run after the shutdown, which must
//! start it empty on the port of `ONCEWIRE_REDIS_URL`).
//!
//! `scripts/fleet-test` builds the examples and runs this with `--quick`.
//!
//! Environment: `ONCEWIRE_REDIS_URL` and `ONCEWIRE_PG_URL` (from
//! `scripts/services start`). The test makes a fresh fleet prefix (Redis key
//! prefix, PostgreSQL schema) and seed and hands them to its servers as
//! `ONCEWIRE_FLEET_PREFIX` and `ONCEWIRE_FLEET_SEED`.
//!
//! # What runs
//!
//! - Three servers `s1`, `s2`, `s3` (`fleet_server`, next to this binary) on
//!   loopback ports of their choosing, and nginx in front of them with a
//!   round-robin upstream (`proxy_next_upstream error timeout`: a request
//!   that could not reach a server goes to the next; a request already sent
//!   is never resent by nginx).
//! - `--clients` tasks, each its own device (a software key): enroll and
//!   connect through nginx, then seal calls to `POST /app/op` whose body is a
//!   fresh 16-byte op id (hex), until the end of the load. Every
//!   `--direct-every`-th call goes to one live server directly instead of
//!   through nginx (round-robin over the live ones). A call is
//!   *acknowledged* when its reply opened, was bound to its request and says
//!   `<server> <op>`. A call whose reply was lost (transport error, 502/504,
//!   timeout) is not resent: the next call carries a new op id, so an op id
//!   is sealed in exactly one frame, and more than one execution of an op
//!   means a frame ran twice.
//! - Replays: every acknowledged frame is sent again, byte for byte with its
//!   session header, to each other live server directly. Each must be
//!   refused (never a 2xx).
//! - At 30 % of the load, `s2` is killed with `kill -9`; the clients carry
//!   on through nginx and the two others.
//! - At 55 %, Redis goes down for `--redis-down-ms` (`redis-cli shutdown
//!   nosave`) and `scripts/services restart-redis` brings it back empty.
//!   Meanwhile sealed calls are refused (503 `retry-later`); afterwards the
//!   clients re-handshake when told to (401 `rehandshake`). Once calls are
//!   acknowledged again, frames acknowledged before the restart (the first
//!   100 and the last 500) are replayed to every live server: each must be
//!   refused.
//!
//! # Checks (exit status 1 if any fails)
//!
//! Calls landed on every server (through nginx) before the kill; calls were
//! acknowledged after the kill and after Redis came back, by every client;
//! Redis being down was seen as 503 refusals; zero replays accepted (and
//! some refused, before and after the restart); every reply opened and named
//! its op; in PostgreSQL, no op id executed twice, every acknowledged op
//! executed exactly once and on the server its reply named, no op refused
//! by a server (4xx, 503) executed, no op executed that no client sent.
//! Lost replies are counted, executed or not: not an error.
//!
//! Every process started here is killed at the end (by pid), on failure too.
//! The run's files (nginx config and logs, server output) are in a
//! temporary directory, removed after a pass unless `--keep`.
#![allow(clippy::arithmetic_side_effects)] // counters and times of a test tool

use oncewire::rng::{OsRng, TryRng};
use oncewire::{DeviceId, PublicKey};
use oncewire_http::client::{Client, ClientError, RawReply};
use oncewire_http::provider::SoftwareSigner;
use oncewire_http::store::SessionId;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::time::{sleep, timeout};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const OP_PATH: &str = "/app/op";
/// Longer than nginx's proxy timeouts (5 s): nginx answers first.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// The server killed in the middle of the load.
const VICTIM: usize = 1;
const EARLY_FRAMES: usize = 100;
const RECENT_FRAMES: usize = 500;

/// Phases of the load, in order.
const BEFORE_KILL: u8 = 0;
const AFTER_KILL: u8 = 1;
const REDIS_DOWN: u8 = 2;
const REDIS_BACK: u8 = 3;
const PHASES: [&str; 4] = ["before the kill", "after the kill", "Redis restarting", "Redis back"];

struct Opts {
    duration: Duration,
    clients: usize,
    pace: Duration,
    redis_down: Duration,
    direct_every: u64,
    keep: bool,
    /// Brings Redis back (`sh -c`); `scripts/services restart-redis` if unset.
    restart_with: Option<String>,
}

fn parse_opts() -> Result<Opts, BoxError> {
    let mut o = Opts {
        duration: Duration::from_secs(90),
        clients: 8,
        pace: Duration::from_millis(5),
        redis_down: Duration::from_millis(1500),
        direct_every: 4,
        keep: false,
        restart_with: None,
    };
    let mut args = std::env::args().skip(1);
    let num = |v: Option<String>, name: &str| -> Result<u64, BoxError> {
        v.ok_or_else(|| format!("{name} needs a value"))?.parse::<u64>().map_err(|e| format!("{name}: {e}").into())
    };
    while let Some(a) = args.next() {
        match a.as_str() {
            "--quick" => {
                o.duration = Duration::from_secs(36);
                o.clients = 6;
            }
            "--duration" => o.duration = Duration::from_secs(num(args.next(), &a)?),
            "--clients" => o.clients = usize::try_from(num(args.next(), &a)?)?,
            "--pace-ms" => o.pace = Duration::from_millis(num(args.next(), &a)?),
            "--redis-down-ms" => o.redis_down = Duration::from_millis(num(args.next(), &a)?),
            "--direct-every" => o.direct_every = num(args.next(), &a)?.max(1),
            "--keep" => o.keep = true,
            "--restart-redis-with" => o.restart_with = Some(args.next().ok_or("--restart-redis-with needs a command")?),
            _ => {
                return Err(format!(
                    "unknown argument {a}; usage: fleet_test [--quick] [--duration SECS] [--clients N] \
                     [--pace-ms MS] [--redis-down-ms MS] [--direct-every N] [--keep] [--restart-redis-with CMD]"
                )
                .into());
            }
        }
    }
    if o.clients == 0 || o.duration < Duration::from_secs(10) {
        return Err("at least one client and 10 seconds of load".into());
    }
    Ok(o)
}

fn hex(b: &[u8]) -> String {
    b.iter().fold(String::with_capacity(b.len() * 2), |mut s, x| {
        let _ = write!(s, "{x:02x}");
        s
    })
}

fn unhex(s: &str) -> Result<Vec<u8>, BoxError> {
    if !s.len().is_multiple_of(2) {
        return Err("odd hex length".into());
    }
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).ok_or("hex").map_err(BoxError::from).and_then(|p| Ok(u8::from_str_radix(p, 16)?)))
        .collect()
}

fn random_bytes(n: usize) -> Result<Vec<u8>, BoxError> {
    let mut b = vec![0u8; n];
    OsRng.try_fill_bytes(&mut b).map_err(|e| format!("rng: {e}"))?;
    Ok(b)
}

fn env(name: &str) -> Result<String, BoxError> {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .ok_or_else(|| format!("{name} is not set: run  eval \"$(scripts/services start)\"  first").into())
}

/// Sends `signal` to `pid` with kill(1).
fn signal(pid: u32, signal: &str) {
    let _ = std::process::Command::new("kill")
        .args([signal, &pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

// --- processes -------------------------------------------------------------

/// A process this test started (killed on drop, by tokio, if still held).
struct Proc {
    name: String,
    pid: u32,
    child: Child,
}

/// Every process started, killed by pid at the end (or on drop).
#[derive(Default)]
struct Procs(Vec<Proc>);

impl Procs {
    fn pid(&self, name: &str) -> Option<u32> {
        self.0.iter().find(|p| p.name == name).map(|p| p.pid)
    }

    /// SIGKILLs `name` (kill -9 PID) and reaps it.
    async fn kill(&mut self, name: &str) -> Result<u32, BoxError> {
        let p = self.0.iter_mut().find(|p| p.name == name).ok_or("no such process")?;
        signal(p.pid, "-9");
        timeout(Duration::from_secs(5), p.child.wait()).await.map_err(|_| format!("{name} did not die"))??;
        Ok(p.pid)
    }

    /// Kills every process still running and reaps it.
    async fn kill_all(&mut self) {
        for p in &mut self.0 {
            if matches!(p.child.try_wait(), Ok(None)) {
                signal(p.pid, "-9");
                let _ = timeout(Duration::from_secs(5), p.child.wait()).await;
            }
        }
        self.0.clear();
    }
}

impl Drop for Procs {
    fn drop(&mut self) {
        for p in &mut self.0 {
            if matches!(p.child.try_wait(), Ok(None)) {
                signal(p.pid, "-9");
            }
        }
    }
}

struct Server {
    name: String,
    addr: String,
}

/// Starts one `fleet_server` on a port of its choosing and waits for its
/// `server-key` and `listening` lines (the rest of its stdout goes to a file).
async fn start_server(
    procs: &mut Procs,
    bin: &Path,
    name: &str,
    envs: &[(&str, String)],
    dir: &Path,
) -> Result<(Server, String), BoxError> {
    let err_path = dir.join(format!("{name}.err"));
    let mut child = Command::new(bin)
        .args(["--listen", "127.0.0.1:0", "--name", name])
        .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&err_path)?)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("starting {}: {e} (build it: cargo build -p oncewire-fleet --examples)", bin.display()))?;
    let pid = child.id().ok_or("no pid")?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    procs.0.push(Proc { name: name.to_owned(), pid, child });
    let mut lines = BufReader::new(stdout).lines();
    let (mut key, mut addr) = (None, None);
    let ready = async {
        while key.is_none() || addr.is_none() {
            let Some(line) = lines.next_line().await? else {
                return Err(BoxError::from(format!(
                    "{name} exited before it was ready: {}",
                    std::fs::read_to_string(&err_path).unwrap_or_default().trim()
                )));
            };
            if let Some(k) = line.strip_prefix("server-key ") {
                key = Some(k.trim().to_owned());
            } else if let Some(a) = line.strip_prefix("listening ") {
                addr = Some(a.trim().to_owned());
            }
        }
        Ok(())
    };
    timeout(Duration::from_secs(60), ready).await.map_err(|_| format!("{name} was not ready within 60 s"))??;
    let mut out = std::fs::File::create(dir.join(format!("{name}.out")))?;
    tokio::spawn(async move {
        use std::io::Write as _;
        while let Ok(Some(line)) = lines.next_line().await {
            let _ = writeln!(out, "{line}");
        }
    });
    let (key, addr) = (key.ok_or("no key")?, addr.ok_or("no address")?);
    Ok((Server { name: name.to_owned(), addr }, key))
}

fn free_port() -> Result<u16, BoxError> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn nginx_config(dir: &Path, port: u16, servers: &[Server]) -> String {
    let d = dir.display();
    let upstreams: String =
        servers.iter().map(|s| format!("        server {} max_fails=1 fail_timeout=2s;\n", s.addr)).collect();
    format!(
        "# nginx in front of the fleet test's servers (written by fleet_test).
daemon off;
master_process off;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{
    worker_connections 1024;
}}
http {{
    client_body_temp_path {d}/tmp/body;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
    log_format fleet '$msec $status $request_uri \"$upstream_addr\" \"$upstream_status\"';
    access_log {d}/access.log fleet;
    # Round-robin, no stickiness: any request may reach any server.
    upstream fleet {{
{upstreams}    }}
    server {{
        listen 127.0.0.1:{port};
        proxy_http_version 1.1;
        proxy_set_header Connection \"\";
        proxy_set_header Host $host;
        proxy_connect_timeout 1s;
        proxy_send_timeout 5s;
        proxy_read_timeout 5s;
        # A server that cannot be reached: the next one. A request already
        # sent is not resent (POST is not idempotent).
        proxy_next_upstream error timeout;
        location / {{
            proxy_pass http://fleet;
        }}
    }}
}}
"
    )
}

async fn start_nginx(procs: &mut Procs, dir: &Path, servers: &[Server]) -> Result<u16, BoxError> {
    for sub in ["tmp/body", "tmp/proxy", "tmp/fastcgi", "tmp/uwsgi", "tmp/scgi"] {
        std::fs::create_dir_all(dir.join(sub))?;
    }
    let port = free_port()?;
    let conf = dir.join("nginx.conf");
    std::fs::write(&conf, nginx_config(dir, port, servers))?;
    let prefix = format!("{}/", dir.display());
    let t = Command::new("nginx")
        .args(["-t", "-q", "-c"])
        .arg(&conf)
        .args(["-p", &prefix])
        .output()
        .await
        .map_err(|e| format!("nginx: {e} (install it: apt-get install -y nginx)"))?;
    if !t.status.success() {
        return Err(format!("nginx -t: {}", String::from_utf8_lossy(&t.stderr)).into());
    }
    let child = Command::new("nginx")
        .arg("-c")
        .arg(&conf)
        .args(["-p", &prefix])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("nginx.err"))?)
        .kill_on_drop(true)
        .spawn()?;
    let pid = child.id().ok_or("no pid")?;
    procs.0.push(Proc { name: "nginx".into(), pid, child });
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return Ok(port);
        }
        sleep(Duration::from_millis(50)).await;
    }
    Err(format!("nginx did not start: {}", std::fs::read_to_string(dir.join("error.log")).unwrap_or_default()).into())
}

/// `GET /metrics` of one server, over a plain connection.
async fn metrics(addr: &str) -> Result<String, BoxError> {
    let mut s = timeout(Duration::from_secs(3), tokio::net::TcpStream::connect(addr)).await??;
    s.write_all(format!("GET /metrics HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes()).await?;
    let mut buf = Vec::new();
    timeout(Duration::from_secs(3), s.read_to_end(&mut buf)).await??;
    let text = String::from_utf8_lossy(&buf).into_owned();
    Ok(text.split_once("\r\n\r\n").map_or(text.clone(), |(_, b)| b.to_owned()))
}

/// The non-zero oncewire counters of a /metrics text, one line.
fn metrics_summary(text: &str) -> String {
    let mut out = Vec::new();
    for line in text.lines() {
        if line.starts_with('#') || !line.starts_with("oncewire_") {
            continue;
        }
        let Some((name, value)) = line.rsplit_once(' ') else { continue };
        if value == "0" {
            continue;
        }
        if name.starts_with("oncewire_accepted_total") || name.starts_with("oncewire_rejected_total") {
            let short =
                name.replace("oncewire_accepted_total", "accepted").replace("oncewire_rejected_total", "rejected");
            out.push(format!("{short}={value}"));
        }
    }
    out.join(" ")
}

// --- shared state and counts ---------------------------------------------

/// A frame acknowledged before the Redis restart, kept to replay after it.
struct Captured {
    frame: Vec<u8>,
    session: SessionId,
}

struct Shared {
    servers: Vec<Server>,
    /// One client per server, straight to it (no device of its own is used:
    /// `send_raw` with another device's session header).
    direct: Vec<Client<SoftwareSigner>>,
    phase: AtomicU8,
    killed: AtomicUsize,
    stop: AtomicBool,
    /// Calls acknowledged through nginx, by server (the kill waits for all).
    landed: Vec<AtomicU64>,
    acks_after_restart: AtomicU64,
    early: Mutex<Vec<Captured>>,
    recent: Mutex<VecDeque<Captured>>,
    pace: Duration,
    direct_every: u64,
}

impl Shared {
    fn phase(&self) -> u8 {
        self.phase.load(Ordering::SeqCst)
    }

    fn live(&self, i: usize) -> bool {
        self.killed.load(Ordering::SeqCst) != i
    }

    fn index(&self, name: &str) -> Option<usize> {
        self.servers.iter().position(|s| s.name == name)
    }
}

#[derive(Default)]
struct Replays {
    tried: u64,
    rejected: BTreeMap<String, u64>,
    accepted: u64,
    unreachable: u64,
    /// Still 503 after retries (post-restart replays only).
    inconclusive: u64,
}

impl Replays {
    fn rejected_total(&self) -> u64 {
        self.rejected.values().sum()
    }

    fn merge(&mut self, o: Self) {
        self.tried += o.tried;
        self.accepted += o.accepted;
        self.unreachable += o.unreachable;
        self.inconclusive += o.inconclusive;
        for (k, v) in o.rejected {
            *self.rejected.entry(k).or_default() += v;
        }
    }
}

enum ReplayResult {
    Rejected(String),
    RetryLater,
    Accepted(u16),
    Unreachable,
}

async fn replay_once(c: &Client<SoftwareSigner>, frame: &[u8], session: &SessionId) -> ReplayResult {
    match timeout(CALL_TIMEOUT, c.send_raw(OP_PATH, Some(session), frame.to_vec())).await {
        Err(_) | Ok(Err(ClientError::Transport(_))) => ReplayResult::Unreachable,
        Ok(Err(ClientError::Refused { status: 503, next_action })) if next_action == "retry-later" => {
            ReplayResult::RetryLater
        }
        Ok(Err(ClientError::Refused { status, next_action })) => {
            ReplayResult::Rejected(format!("{status} {next_action}"))
        }
        Ok(Err(ClientError::Protocol(e))) => ReplayResult::Rejected(format!("protocol {e}")),
        Ok(Ok(RawReply { status, .. })) if (200..300).contains(&status) => ReplayResult::Accepted(status),
        Ok(Ok(RawReply { status, next_action, .. })) => {
            ReplayResult::Rejected(format!("{status} {} (sealed)", next_action.unwrap_or_default()))
        }
    }
}

#[derive(Default)]
struct Stats {
    requests: u64,
    via_nginx: u64,
    direct: u64,
    acked: u64,
    acked_by_phase: [u64; 4],
    /// Acknowledged through nginx, by (server, phase).
    landed: BTreeMap<(String, u8), u64>,
    acked_direct: u64,
    lost: BTreeMap<String, u64>,
    failovers: u64,
    retry_later_calls: [u64; 4],
    retry_later_handshakes: [u64; 4],
    rehandshake_answers: u64,
    rehandshakes: u64,
    connect_failures: BTreeMap<String, u64>,
    seal_errors: u64,
    unopened: u64,
    bad_bodies: u64,
    app_errors: BTreeMap<u16, u64>,
    other_refusals: BTreeMap<String, u64>,
    replays: Replays,
    accepted_replays: Vec<String>,
    samples: Vec<String>,
    /// Clients with no acknowledged call after Redis came back.
    clients_not_serving_after: u64,
    acked_from_killed_after_kill: u64,
}

impl Stats {
    fn sample(&mut self, s: String) {
        if self.samples.len() < 8 {
            self.samples.push(s);
        }
    }

    fn merge(&mut self, o: Self) {
        self.requests += o.requests;
        self.via_nginx += o.via_nginx;
        self.direct += o.direct;
        self.acked += o.acked;
        for i in 0..4 {
            if let (Some(a), Some(b)) = (self.acked_by_phase.get_mut(i), o.acked_by_phase.get(i)) {
                *a += b;
            }
            if let (Some(a), Some(b)) = (self.retry_later_calls.get_mut(i), o.retry_later_calls.get(i)) {
                *a += b;
            }
            if let (Some(a), Some(b)) = (self.retry_later_handshakes.get_mut(i), o.retry_later_handshakes.get(i)) {
                *a += b;
            }
        }
        for (k, v) in o.landed {
            *self.landed.entry(k).or_default() += v;
        }
        self.acked_direct += o.acked_direct;
        for (k, v) in o.lost {
            *self.lost.entry(k).or_default() += v;
        }
        self.failovers += o.failovers;
        self.rehandshake_answers += o.rehandshake_answers;
        self.rehandshakes += o.rehandshakes;
        for (k, v) in o.connect_failures {
            *self.connect_failures.entry(k).or_default() += v;
        }
        self.seal_errors += o.seal_errors;
        self.unopened += o.unopened;
        self.bad_bodies += o.bad_bodies;
        for (k, v) in o.app_errors {
            *self.app_errors.entry(k).or_default() += v;
        }
        for (k, v) in o.other_refusals {
            *self.other_refusals.entry(k).or_default() += v;
        }
        self.replays.merge(o.replays);
        self.accepted_replays.extend(o.accepted_replays);
        for s in o.samples {
            self.sample(s);
        }
        self.clients_not_serving_after += o.clients_not_serving_after;
        self.acked_from_killed_after_kill += o.acked_from_killed_after_kill;
    }
}

/// What the client knows of an op.
enum Fate {
    /// The reply opened and named this server.
    Acked(String),
    /// A server refused the frame (4xx, 503): it must not have run.
    Refused(String),
    /// The reply was lost (or did not open): it ran once or not at all.
    Unknown,
}

fn bump<K: Ord>(m: &mut BTreeMap<K, u64>, k: K) {
    *m.entry(k).or_default() += 1;
}

fn bump_phase(a: &mut [u64; 4], phase: u8) {
    if let Some(x) = a.get_mut(usize::from(phase)) {
        *x += 1;
    }
}

// --- clients -----------------------------------------------------------------

async fn setup_client(url: String, key: PublicKey, device: String) -> Result<Client<SoftwareSigner>, BoxError> {
    let signer: SoftwareSigner = SoftwareSigner::generate(&mut OsRng)?;
    let mut c = Client::new(&url, key, DeviceId::new(device.as_bytes())?, signer);
    let mut last = String::new();
    for _ in 0..5 {
        match timeout(CALL_TIMEOUT, c.enroll()).await {
            Ok(Ok(())) => {
                last.clear();
                break;
            }
            Ok(Err(e)) => last = format!("enroll: {e}"),
            Err(_) => last = "enroll: timeout".into(),
        }
        sleep(Duration::from_millis(200)).await;
    }
    if !last.is_empty() {
        return Err(format!("{device}: {last}").into());
    }
    for _ in 0..5 {
        match timeout(CALL_TIMEOUT, c.connect()).await {
            Ok(Ok(())) => return Ok(c),
            Ok(Err(e)) => last = format!("connect: {e}"),
            Err(_) => last = "connect: timeout".into(),
        }
        sleep(Duration::from_millis(200)).await;
    }
    Err(format!("{device}: {last}").into())
}

/// Sends every acknowledged frame to each other live server.
async fn replay_to_others(shared: &Shared, frame: &[u8], session: &SessionId, origin: usize, st: &mut Stats) {
    for (i, c) in shared.direct.iter().enumerate() {
        if i == origin || !shared.live(i) {
            continue;
        }
        st.replays.tried += 1;
        match replay_once(c, frame, session).await {
            ReplayResult::Rejected(k) => bump(&mut st.replays.rejected, k),
            ReplayResult::RetryLater => bump(&mut st.replays.rejected, "503 retry-later".to_owned()),
            ReplayResult::Unreachable => st.replays.unreachable += 1,
            ReplayResult::Accepted(status) => {
                st.replays.accepted += 1;
                let name = shared.servers.get(i).map_or("?", |s| s.name.as_str());
                st.accepted_replays
                    .push(format!("frame of session {} accepted again by {name} ({status})", hex(session)));
            }
        }
    }
}

async fn load(
    id: usize,
    mut c: Client<SoftwareSigner>,
    shared: Arc<Shared>,
) -> Result<(Stats, Vec<(String, Fate)>), BoxError> {
    let mut st = Stats::default();
    let mut ops: Vec<(String, Fate)> = Vec::new();
    let mut n: u64 = id as u64;
    let mut need_connect = false;
    let mut rehandshake_pending = false;
    let mut failing = false;
    while !shared.stop.load(Ordering::SeqCst) {
        n += 1;
        if need_connect {
            match timeout(CALL_TIMEOUT, c.connect()).await {
                Ok(Ok(())) => {
                    need_connect = false;
                    if rehandshake_pending {
                        rehandshake_pending = false;
                        st.rehandshakes += 1;
                    }
                }
                Ok(Err(ClientError::Refused { status: 503, next_action })) if next_action == "retry-later" => {
                    bump_phase(&mut st.retry_later_handshakes, shared.phase());
                    sleep(Duration::from_millis(50)).await;
                    continue;
                }
                Ok(Err(e)) => {
                    bump(&mut st.connect_failures, format!("{e}"));
                    sleep(Duration::from_millis(50)).await;
                    continue;
                }
                Err(_) => {
                    bump(&mut st.connect_failures, "timeout".to_owned());
                    continue;
                }
            }
        }
        let op = hex(&random_bytes(16)?);
        let phase = shared.phase();
        let target = if n.is_multiple_of(shared.direct_every) {
            let live: Vec<usize> = (0..shared.servers.len()).filter(|&i| shared.live(i)).collect();
            live.get(usize::try_from(n / shared.direct_every).unwrap_or(0) % live.len().max(1)).copied()
        } else {
            None
        };
        let sealed = match c.seal(op.as_bytes()) {
            Ok(s) => s,
            Err(e) => {
                st.seal_errors += 1;
                st.sample(format!("client {id}: seal: {e}"));
                need_connect = true;
                continue;
            }
        };
        st.requests += 1;
        let res = {
            let sender = match target {
                Some(t) => shared.direct.get(t).ok_or("no such server")?,
                None => &c,
            };
            timeout(CALL_TIMEOUT, sender.send_raw(OP_PATH, Some(&sealed.session), sealed.frame.clone())).await
        };
        if target.is_some() {
            st.direct += 1;
        } else {
            st.via_nginx += 1;
        }
        let fate = match res {
            Ok(Ok(raw)) if (200..300).contains(&raw.status) => match c.open_reply(sealed.request, raw) {
                Ok(reply) => {
                    let body = String::from_utf8_lossy(&reply.body).into_owned();
                    let named = body.split_once(' ').filter(|(_, o)| *o == op).and_then(|(s, _)| shared.index(s));
                    let right_server = match (named, target) {
                        (Some(s), Some(t)) => s == t,
                        (Some(_), None) => true,
                        (None, _) => false,
                    };
                    match named {
                        Some(s) if reply.status == 200 && right_server => {
                            let name = shared.servers.get(s).map_or_else(String::new, |x| x.name.clone());
                            st.acked += 1;
                            bump_phase(&mut st.acked_by_phase, phase);
                            if target.is_none() {
                                bump(&mut st.landed, (name.clone(), phase));
                                if let Some(l) = shared.landed.get(s) {
                                    l.fetch_add(1, Ordering::SeqCst);
                                }
                            } else {
                                st.acked_direct += 1;
                            }
                            if phase >= AFTER_KILL && s == VICTIM {
                                st.acked_from_killed_after_kill += 1;
                            }
                            if failing {
                                failing = false;
                                st.failovers += 1;
                            }
                            replay_to_others(&shared, &sealed.frame, &sealed.session, s, &mut st).await;
                            let now = shared.phase();
                            if now <= AFTER_KILL {
                                let cap = Captured { frame: sealed.frame.clone(), session: sealed.session };
                                let mut early = shared.early.lock().map_err(|_| "poisoned")?;
                                if early.len() < EARLY_FRAMES {
                                    early.push(cap);
                                } else {
                                    drop(early);
                                    let mut recent = shared.recent.lock().map_err(|_| "poisoned")?;
                                    recent.push_back(cap);
                                    if recent.len() > RECENT_FRAMES {
                                        recent.pop_front();
                                    }
                                }
                            } else if now == REDIS_BACK && phase == REDIS_BACK {
                                shared.acks_after_restart.fetch_add(1, Ordering::SeqCst);
                            }
                            Fate::Acked(name)
                        }
                        _ => {
                            st.bad_bodies += 1;
                            st.sample(format!(
                                "client {id}: reply {} {body:?} to op {op} (sent to {target:?})",
                                reply.status
                            ));
                            Fate::Unknown
                        }
                    }
                }
                Err(e) => {
                    st.unopened += 1;
                    st.sample(format!("client {id}: a reply did not open: {e}"));
                    Fate::Unknown
                }
            },
            Ok(Ok(raw)) => {
                bump(&mut st.app_errors, raw.status);
                Fate::Unknown
            }
            Ok(Err(ClientError::Refused { status: 503, next_action })) if next_action == "retry-later" => {
                // Counted in the phase it came back in.
                bump_phase(&mut st.retry_later_calls, shared.phase().max(phase));
                sleep(Duration::from_millis(20)).await;
                Fate::Refused("503 retry-later".into())
            }
            Ok(Err(ClientError::Refused { status: 401, next_action })) if next_action == "rehandshake" => {
                st.rehandshake_answers += 1;
                need_connect = true;
                rehandshake_pending = true;
                Fate::Refused("401 rehandshake".into())
            }
            Ok(Err(ClientError::Refused { status, next_action })) if (400..500).contains(&status) => {
                let k = format!("{status} {next_action}");
                bump(&mut st.other_refusals, k.clone());
                st.sample(format!(
                    "client {id}: op {op} refused: {k} (phase {})",
                    PHASES.get(usize::from(phase)).unwrap_or(&"?")
                ));
                Fate::Refused(k)
            }
            Ok(Err(ClientError::Refused { status, next_action })) => {
                bump(&mut st.lost, format!("{status} {next_action}").trim_end().to_owned());
                failing = true;
                Fate::Unknown
            }
            Ok(Err(ClientError::Transport(e))) => {
                bump(&mut st.lost, "transport".to_owned());
                st.sample(format!("client {id}: transport: {e}"));
                failing = true;
                Fate::Unknown
            }
            Ok(Err(ClientError::Protocol(e))) => {
                bump(&mut st.lost, format!("protocol {e}"));
                failing = true;
                Fate::Unknown
            }
            Err(_) => {
                bump(&mut st.lost, "timeout".to_owned());
                failing = true;
                Fate::Unknown
            }
        };
        ops.push((op, fate));
        if !shared.pace.is_zero() {
            sleep(shared.pace).await;
        }
    }
    if st.acked_by_phase.get(usize::from(REDIS_BACK)).copied().unwrap_or(0) == 0 {
        st.clients_not_serving_after = 1;
    }
    Ok((st, ops))
}

/// Replays the frames acknowledged before the restart to every live server,
/// retrying one that met a 503 (Redis not quite back) a few times.
async fn replay_captured(shared: &Shared) -> Result<(usize, Replays), BoxError> {
    let mut frames: Vec<Captured> = std::mem::take(&mut *shared.early.lock().map_err(|_| "poisoned")?);
    frames.extend(std::mem::take(&mut *shared.recent.lock().map_err(|_| "poisoned")?));
    let mut r = Replays::default();
    for f in &frames {
        for (i, c) in shared.direct.iter().enumerate() {
            if !shared.live(i) {
                continue;
            }
            r.tried += 1;
            let mut attempts = 0;
            loop {
                attempts += 1;
                match replay_once(c, &f.frame, &f.session).await {
                    ReplayResult::Rejected(k) => bump(&mut r.rejected, k),
                    ReplayResult::RetryLater if attempts < 6 => {
                        sleep(Duration::from_millis(200)).await;
                        continue;
                    }
                    ReplayResult::RetryLater => r.inconclusive += 1,
                    ReplayResult::Unreachable => r.unreachable += 1,
                    ReplayResult::Accepted(_) => r.accepted += 1,
                }
                break;
            }
        }
    }
    Ok((frames.len(), r))
}

// --- the run -----------------------------------------------------------------

struct Ctx {
    procs: Procs,
    dir: PathBuf,
    keep: bool,
}

async fn restart_redis(root: &Path, redis_url: &str, down: Duration, with: Option<&str>) -> Result<Duration, BoxError> {
    let t0 = Instant::now();
    if !down.is_zero() {
        let hostport = redis_url.trim_start_matches("redis://").split('/').next().unwrap_or_default();
        let hostport = hostport.rsplit('@').next().unwrap_or(hostport);
        let (host, port) = hostport.rsplit_once(':').unwrap_or((hostport, "6379"));
        let _ = Command::new("redis-cli")
            .args(["-h", host, "-p", port, "shutdown", "nosave"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await;
        sleep(down).await;
    }
    let mut cmd = match with {
        Some(c) => {
            let mut cmd = Command::new("sh");
            cmd.args(["-c", c]);
            cmd
        }
        None => {
            let mut cmd = Command::new(root.join("scripts/services"));
            cmd.arg("restart-redis");
            cmd
        }
    };
    let what = with.unwrap_or("scripts/services restart-redis");
    let out = timeout(Duration::from_secs(60), cmd.stdin(Stdio::null()).output())
        .await
        .map_err(|_| format!("{what} took over 60 s"))??;
    if !out.status.success() {
        return Err(format!("{what}: {}", String::from_utf8_lossy(&out.stderr).trim()).into());
    }
    Ok(t0.elapsed())
}

#[allow(clippy::too_many_lines)] // one scenario, in order
async fn run(opts: &Opts, ctx: &mut Ctx) -> Result<Vec<String>, BoxError> {
    let redis_url = env("ONCEWIRE_REDIS_URL")?;
    let pg_url = env("ONCEWIRE_PG_URL")?;
    let root = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."));
    let bin = std::env::current_exe()?.with_file_name("fleet_server");
    let prefix = format!("fleettest_{}", hex(&random_bytes(4)?));
    let seed = hex(&random_bytes(32)?);
    let envs = [
        ("ONCEWIRE_REDIS_URL", redis_url.clone()),
        ("ONCEWIRE_PG_URL", pg_url.clone()),
        ("ONCEWIRE_FLEET_PREFIX", prefix.clone()),
        ("ONCEWIRE_FLEET_SEED", seed),
    ];

    // A prefix no server ever used: declared new, so that the restart floor
    // (missing on a fresh prefix, as after a loss of Redis) does not refuse
    // the first enrollments. After the restart in the middle, nothing
    // declares it: the floor is set as after a real loss.
    oncewire_fleet::redis::conn::Fleet::connect(&redis_url, &prefix).await?.declare_new_fleet(0).await?;

    let mut servers = Vec::new();
    let mut key_hex: Option<String> = None;
    for name in ["s1", "s2", "s3"] {
        let (s, k) = start_server(&mut ctx.procs, &bin, name, &envs, &ctx.dir).await?;
        if key_hex.get_or_insert_with(|| k.clone()) != &k {
            return Err(format!("{name} has another server key than s1: not one fleet").into());
        }
        servers.push(s);
    }
    let key = PublicKey::from_sec1_uncompressed(&unhex(&key_hex.unwrap_or_default())?)?;
    let nginx_port = start_nginx(&mut ctx.procs, &ctx.dir, &servers).await?;
    let url = format!("http://127.0.0.1:{nginx_port}");
    let desc: Vec<String> = servers
        .iter()
        .map(|s| format!("{} {} (pid {})", s.name, s.addr, ctx.procs.pid(&s.name).unwrap_or(0)))
        .collect();
    println!("fleet-test: servers {}; nginx 127.0.0.1:{nginx_port}; prefix {prefix}", desc.join(", "));
    println!("fleet-test: files in {}", ctx.dir.display());

    // Enroll and connect every client, through nginx.
    let mut setups = Vec::new();
    for i in 0..opts.clients {
        setups.push(tokio::spawn(setup_client(url.clone(), key, format!("{prefix}-device-{i}"))));
    }
    let mut clients = Vec::new();
    for s in setups {
        clients.push(s.await??);
    }
    let mut direct = Vec::new();
    for (i, s) in servers.iter().enumerate() {
        let signer: SoftwareSigner = SoftwareSigner::generate(&mut OsRng)?;
        direct.push(Client::new(
            &format!("http://{}", s.addr),
            key,
            DeviceId::new(format!("replayer-{i}").as_bytes())?,
            signer,
        ));
    }
    let landed = servers.iter().map(|_| AtomicU64::new(0)).collect();
    let shared = Arc::new(Shared {
        servers,
        direct,
        phase: AtomicU8::new(BEFORE_KILL),
        killed: AtomicUsize::new(usize::MAX),
        stop: AtomicBool::new(false),
        landed,
        acks_after_restart: AtomicU64::new(0),
        early: Mutex::new(Vec::new()),
        recent: Mutex::new(VecDeque::new()),
        pace: opts.pace,
        direct_every: opts.direct_every,
    });
    println!(
        "fleet-test: {} clients enrolled and connected; load for {:.0} s",
        opts.clients,
        opts.duration.as_secs_f64()
    );

    let start = Instant::now();
    let mut tasks = Vec::new();
    for (i, c) in clients.into_iter().enumerate() {
        tasks.push(tokio::spawn(load(i, c, shared.clone())));
    }
    let mut failures = Vec::new();
    let elapsed = |t: Instant| (t - start).as_secs_f64();

    // The kill, once every server served calls through nginx (5 s grace).
    let kill_at = opts.duration.mul_f64(0.3);
    sleep(kill_at.saturating_sub(start.elapsed())).await;
    let grace = Instant::now() + Duration::from_secs(5);
    while shared.landed.iter().any(|l| l.load(Ordering::SeqCst) == 0) && Instant::now() < grace {
        sleep(Duration::from_millis(100)).await;
    }
    let victim = shared.servers.get(VICTIM).map(|s| s.name.clone()).ok_or("no victim")?;
    // Killed first, then marked: calls and replays already on their way to
    // it (direct ones too) meet a dead server.
    let kill_time = Instant::now();
    let pid = ctx.procs.kill(&victim).await?;
    shared.killed.store(VICTIM, Ordering::SeqCst);
    shared.phase.store(AFTER_KILL, Ordering::SeqCst);
    println!("fleet-test: {:5.1} s  killed {victim} (kill -9 {pid})", elapsed(kill_time));

    // Redis: down, then back empty.
    let restart_at = opts.duration.mul_f64(0.55);
    sleep(restart_at.saturating_sub(start.elapsed())).await;
    let restart_time = Instant::now();
    shared.phase.store(REDIS_DOWN, Ordering::SeqCst);
    println!(
        "fleet-test: {:5.1} s  Redis down ({} ms), then scripts/services restart-redis",
        elapsed(restart_time),
        opts.redis_down.as_millis()
    );
    let down_for = restart_redis(&root, &redis_url, opts.redis_down, opts.restart_with.as_deref()).await?;
    shared.phase.store(REDIS_BACK, Ordering::SeqCst);
    let back_time = Instant::now();
    println!("fleet-test: {:5.1} s  Redis back (the restart took {:.1} s)", elapsed(back_time), down_for.as_secs_f64());

    // Once calls are acknowledged again, replay what was captured before.
    let wait_until = Instant::now() + Duration::from_secs(15);
    while shared.acks_after_restart.load(Ordering::SeqCst) == 0 && Instant::now() < wait_until {
        sleep(Duration::from_millis(50)).await;
    }
    let serving_again = shared.acks_after_restart.load(Ordering::SeqCst) > 0;
    if serving_again {
        println!("fleet-test: {:5.1} s  serving again", elapsed(Instant::now()));
    }
    let (captured, post) = replay_captured(&shared).await?;
    println!("fleet-test: {:5.1} s  replayed {captured} frames captured before the restart", elapsed(Instant::now()));

    sleep(opts.duration.saturating_sub(start.elapsed())).await;
    shared.stop.store(true, Ordering::SeqCst);
    let load_time = start.elapsed();
    let mut st = Stats::default();
    let mut ops: HashMap<String, Fate> = HashMap::new();
    for t in tasks {
        let (s, o) = timeout(Duration::from_secs(30), t).await.map_err(|_| "a client did not stop")???;
        st.merge(s);
        ops.extend(o);
    }
    // Let a lost request that is still running somewhere finish.
    sleep(Duration::from_millis(1000)).await;

    // PostgreSQL: how often each op ran, and where.
    let (pg, conn) = tokio_postgres::connect(&pg_url, tokio_postgres::NoTls).await?;
    let conn = tokio::spawn(conn);
    let rows = pg
        .query(&format!("SELECT op, count(*), string_agg(server, ',') FROM {prefix}.fleet_executions GROUP BY op"), &[])
        .await?;
    let mut executed: HashMap<String, (i64, String)> = HashMap::new();
    for r in rows {
        executed.insert(r.try_get(0)?, (r.try_get(1)?, r.try_get(2)?));
    }
    let executions: i64 = executed.values().map(|(n, _)| n).sum();
    let (mut dup, mut ack_not_once, mut ack_wrong_server, mut lost_ran, mut lost_not_ran, mut refused_ran) =
        (0u64, 0u64, 0u64, 0u64, 0u64, 0u64);
    let mut examples = Vec::new();
    for (op, (n, where_)) in &executed {
        if *n > 1 {
            dup += 1;
            examples.push(format!("op {op} executed {n} times ({where_})"));
        }
    }
    for (op, fate) in &ops {
        let (n, where_) = executed.get(op).map_or((0, ""), |(n, w)| (*n, w.as_str()));
        match fate {
            Fate::Acked(server) => {
                if n != 1 {
                    ack_not_once += 1;
                    examples.push(format!("acknowledged op {op} (by {server}) executed {n} times"));
                } else if where_ != server {
                    ack_wrong_server += 1;
                    examples.push(format!("acknowledged op {op}: reply from {server}, executed on {where_}"));
                }
            }
            Fate::Unknown if n == 0 => lost_not_ran += 1,
            Fate::Unknown => lost_ran += 1,
            Fate::Refused(why) if n > 0 => {
                refused_ran += 1;
                examples.push(format!("op {op} refused ({why}) but executed {n} times on {where_}"));
            }
            Fate::Refused(_) => {}
        }
    }
    let strangers = executed.keys().filter(|op| !ops.contains_key(*op)).count();
    if !ctx.keep {
        let _ = pg.batch_execute(&format!("DROP SCHEMA IF EXISTS {prefix} CASCADE")).await;
    }
    drop(pg);
    let _ = conn.await;

    // The servers' own counts, and nginx's retries on another upstream.
    let mut metric_lines = Vec::new();
    for (i, s) in shared.servers.iter().enumerate() {
        if shared.live(i) {
            let m = metrics(&s.addr).await.map_or_else(|e| format!("unavailable: {e}"), |t| metrics_summary(&t));
            metric_lines.push(format!("{}: {m}", s.name));
        }
    }
    let access = std::fs::read_to_string(ctx.dir.join("access.log")).unwrap_or_default();
    let nginx_requests = access.lines().count();
    let nginx_retried = access.lines().filter(|l| l.split('"').nth(1).is_some_and(|u| u.contains(','))).count();

    // The verdicts.
    let names: Vec<String> = shared.servers.iter().map(|s| s.name.clone()).collect();
    let landed = |name: &str, phase: u8| st.landed.get(&(name.to_owned(), phase)).copied().unwrap_or(0);
    for n in &names {
        if landed(n, BEFORE_KILL) == 0 {
            failures.push(format!("no call landed on {n} through nginx before the kill"));
        }
    }
    let phase_acks = |p: u8| st.acked_by_phase.get(usize::from(p)).copied().unwrap_or(0);
    if phase_acks(AFTER_KILL) == 0 {
        failures.push("no call acknowledged after the kill (before the Redis restart)".into());
    }
    if !serving_again || phase_acks(REDIS_BACK) == 0 {
        failures.push("no call acknowledged after Redis came back".into());
    }
    if st.acked_from_killed_after_kill > 0 {
        failures
            .push(format!("{} calls sent after the kill acknowledged by {victim}", st.acked_from_killed_after_kill));
    }
    if st.clients_not_serving_after > 0 {
        failures
            .push(format!("{} clients had no call acknowledged after Redis came back", st.clients_not_serving_after));
    }
    let down_refusals: u64 = [REDIS_DOWN, REDIS_BACK]
        .iter()
        .map(|&p| {
            st.retry_later_calls.get(usize::from(p)).copied().unwrap_or(0)
                + st.retry_later_handshakes.get(usize::from(p)).copied().unwrap_or(0)
        })
        .sum();
    if down_refusals == 0 {
        failures.push("no 503 retry-later while Redis was down".into());
    }
    if st.replays.accepted > 0 {
        failures.push(format!("{} replays accepted", st.replays.accepted));
    }
    if st.replays.rejected_total() == 0 {
        failures.push("no replay was refused (none tried?)".into());
    }
    if post.accepted > 0 {
        failures.push(format!("{} frames from before the Redis restart accepted after it", post.accepted));
    }
    if post.rejected_total() == 0 {
        failures.push("no frame from before the Redis restart was replayed and refused after it".into());
    }
    if st.unopened > 0 {
        failures.push(format!("{} replies did not open", st.unopened));
    }
    if st.bad_bodies > 0 {
        failures.push(format!("{} replies did not name their op or server", st.bad_bodies));
    }
    if dup > 0 {
        failures.push(format!("{dup} op ids executed more than once"));
    }
    if ack_not_once > 0 {
        failures.push(format!("{ack_not_once} acknowledged ops not executed exactly once"));
    }
    if ack_wrong_server > 0 {
        failures.push(format!("{ack_wrong_server} acknowledged ops executed on another server than their reply named"));
    }
    if refused_ran > 0 {
        failures.push(format!("{refused_ran} refused ops executed"));
    }
    if strangers > 0 {
        failures.push(format!("{strangers} ops executed that no client sent"));
    }

    // The counts.
    let fmt_map = |m: &BTreeMap<String, u64>| {
        if m.is_empty() {
            "none".to_owned()
        } else {
            m.iter().map(|(k, v)| format!("{k}: {v}")).collect::<Vec<_>>().join(", ")
        }
    };
    let per_phase = |p: u8| names.iter().map(|n| format!("{n} {}", landed(n, p))).collect::<Vec<_>>().join(", ");
    let secs = load_time.as_secs_f64();
    println!("fleet-test: counts ({} clients, {secs:.1} s of load)", opts.clients);
    println!(
        "  requests: {} sealed calls ({} through nginx, {} direct), {:.0}/s; acknowledged {} ({} direct); nginx handled {nginx_requests} requests",
        st.requests,
        st.via_nginx,
        st.direct,
        st.requests as f64 / secs,
        st.acked,
        st.acked_direct
    );
    for p in [BEFORE_KILL, AFTER_KILL, REDIS_DOWN, REDIS_BACK] {
        println!(
            "  acknowledged {:<18} {:6}; through nginx by server: {}",
            format!("{}:", PHASES.get(usize::from(p)).unwrap_or(&"?")),
            phase_acks(p),
            per_phase(p)
        );
    }
    println!(
        "  kill: {victim} at {:.1} s; acknowledged by {victim} after: {}",
        (kill_time - start).as_secs_f64(),
        st.acked_from_killed_after_kill
    );
    println!(
        "  failovers: {} seen by clients (a call lost, the next acknowledged), {nginx_retried} by nginx (retried on another upstream); lost replies: {}",
        st.failovers,
        fmt_map(&st.lost)
    );
    println!(
        "  replays (each acknowledged frame to each other live server): tried {}, rejected {} ({}), accepted {}, unreachable {}",
        st.replays.tried,
        st.replays.rejected_total(),
        fmt_map(&st.replays.rejected),
        st.replays.accepted,
        st.replays.unreachable
    );
    println!(
        "  Redis restart at {:.1} s, back at {:.1} s: refusals 503 retry-later while down: calls {}, handshakes {}; \
         after restart-redis returned: calls {}, handshakes {}",
        (restart_time - start).as_secs_f64(),
        (back_time - start).as_secs_f64(),
        st.retry_later_calls.get(usize::from(REDIS_DOWN)).unwrap_or(&0),
        st.retry_later_handshakes.get(usize::from(REDIS_DOWN)).unwrap_or(&0),
        st.retry_later_calls.get(usize::from(REDIS_BACK)).unwrap_or(&0),
        st.retry_later_handshakes.get(usize::from(REDIS_BACK)).unwrap_or(&0),
    );
    let outside: u64 = st.retry_later_calls.iter().take(2).chain(st.retry_later_handshakes.iter().take(2)).sum();
    println!(
        "  re-handshakes: {} (401 rehandshake answers: {}); 503 outside the restart: {outside}; other connect failures: {}",
        st.rehandshakes,
        st.rehandshake_answers,
        fmt_map(&st.connect_failures)
    );
    println!(
        "  frames from before the restart replayed after it: {captured} frames, tried {}, rejected {} ({}), accepted {}, \
         unreachable {}, still 503: {}",
        post.tried,
        post.rejected_total(),
        fmt_map(&post.rejected),
        post.accepted,
        post.unreachable,
        post.inconclusive
    );
    let refusals: BTreeMap<String, u64> = st.other_refusals.clone();
    println!(
        "  other refusals of fresh frames: {}; sealed non-2xx replies: {:?}; seal errors {}; unopened replies {}; bad replies {}",
        fmt_map(&refusals),
        st.app_errors,
        st.seal_errors,
        st.unopened,
        st.bad_bodies
    );
    println!(
        "  PostgreSQL: {} ops executed ({executions} executions); duplicates executed {dup}; acknowledged but not executed once {ack_not_once} \
         (on another server {ack_wrong_server}); lost replies executed {lost_ran}, not executed {lost_not_ran}; refused but executed {refused_ran}; \
         unknown ops {strangers}",
        executed.len()
    );
    for m in &metric_lines {
        println!("  metrics {m}");
    }
    for s in st.samples.iter().chain(st.accepted_replays.iter().take(5)).chain(examples.iter().take(10)) {
        println!("  note: {s}");
    }
    Ok(failures)
}

#[tokio::main]
async fn main() -> ExitCode {
    let opts = match parse_opts() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("fleet-test: {e}");
            return ExitCode::from(2);
        }
    };
    for name in ["ONCEWIRE_REDIS_URL", "ONCEWIRE_PG_URL"] {
        if let Err(e) = env(name) {
            eprintln!("fleet-test: FAIL: {e}");
            return ExitCode::FAILURE;
        }
    }
    let dir = std::env::temp_dir().join(format!("fleet-test.{}", std::process::id()));
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("fleet-test: {}: {e}", dir.display());
        return ExitCode::FAILURE;
    }
    // nginx may switch to another user: it must traverse the directory.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755));
    }
    let mut ctx = Ctx { procs: Procs::default(), dir, keep: opts.keep };
    let result = run(&opts, &mut ctx).await;
    ctx.procs.kill_all().await;
    let ok = match result {
        Ok(failures) if failures.is_empty() => {
            println!("fleet-test: PASS");
            true
        }
        Ok(failures) => {
            for f in &failures {
                println!("fleet-test: FAIL: {f}");
            }
            false
        }
        Err(e) => {
            println!("fleet-test: FAIL: {e}");
            false
        }
    };
    if ok && !ctx.keep {
        let _ = std::fs::remove_dir_all(&ctx.dir);
    } else {
        println!("fleet-test: files kept in {}", ctx.dir.display());
    }
    if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}
