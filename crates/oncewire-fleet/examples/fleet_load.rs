//! Load generator in fleet mode (issue 13, item 5): N `fleet_server`
//! processes sharing one Redis and one PostgreSQL, measured the way the
//! single-process `oncewire-http` load generator measures
//! (`crates/oncewire-http/examples/load.rs`), plus the Redis work per
//! request.
//!
//! ```text
//! eval "$(scripts/services start)"
//! cargo build --release -p oncewire-fleet --examples
//! cargo run --release -p oncewire-fleet --example fleet_load -- --servers 1|3 [--clients 32] [--seconds 5] [--quick]
//! ```
//!
//! `--quick` is 8 clients and 1 s per phase.
//!
//! Environment: `ONCEWIRE_REDIS_URL` and `ONCEWIRE_PG_URL`. Each run makes
//! a fresh fleet prefix (Redis key prefix, PostgreSQL schema) and a fresh
//! seed, declares the prefix new (the restart floor), and starts
//! `--servers` `fleet_server` processes (the binary next to this one) on
//! loopback ports of their choosing, waiting for their `listening` line.
//!
//! Then `--clients` simulated devices, each an oncewire `Client` with its
//! own software key and its own keep-alive HTTP/1.1 connection; client `j`
//! talks to server `j % N` directly (no load balancer: each session stays
//! on the server that holds it in its cache). Each device enrolls once,
//! then the phases run, each for a fixed time after a short untimed
//! warm-up: handshakes (`connect()` in a loop), then sealed calls to the
//! servers' `POST /app/echo` (which returns the opened body and touches no
//! PostgreSQL) at 64 B and 1 KiB bodies, in turns of at most 1 s. Every
//! reply must open, be bound to its request and equal the request byte for
//! byte (a per-request counter is in each body). Any error makes the exit
//! status non-zero.
//!
//! # Redis work per request
//!
//! - `INFO commandstats`: `CONFIG RESETSTAT` right before each timed slice
//!   (after the warm-up), `INFO commandstats` after it; the sum of `calls=`
//!   over every `cmdstat_` line except this tool's own (`config|resetstat`,
//!   `info`), divided by the operations of the slice. Redis counts the
//!   commands a Lua script runs (`redis.call`) there too, so this is the
//!   commands *executed*, not the commands *sent*; the per-command
//!   breakdown is printed. `evalsha` + `eval` per request is the scripts
//!   run.
//! - `MONITOR` (through `redis-cli`, a short untimed audit after the timed
//!   phases, a fixed number of operations per client): each line says who
//!   ran the command, a client connection (`[0 127.0.0.1:port]`, a command
//!   sent over the network by a server) or a script (`[0 lua]`). Commands
//!   sent per request bound the round trips per request from above (a
//!   pipeline would count each of its commands). That number is the one
//!   held against the bar: at most 1 Redis round trip per sealed request.
//!
//! Everything shares this machine's cores: the clients (this process, one
//! tokio runtime), the servers and Redis. CPU per operation is printed for
//! each (this process from `/proc/self/stat`, the servers from
//! `/proc/<pid>/stat`, Redis from `INFO cpu`). The numbers are ratios
//! between set-ups measured the same way, not a capacity.
//!
//! The servers are killed at the end (by pid), on an error too; the run's
//! PostgreSQL schema and Redis keys are removed.
#![allow(clippy::arithmetic_side_effects, clippy::cast_precision_loss)] // statistics of a benchmark tool

use oncewire::rng::{OsRng, TryRng};
use oncewire::{DeviceId, PublicKey};
use oncewire_http::client::Client;
use oncewire_http::provider::SoftwareSigner;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::Barrier;
use tokio::time::timeout;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Device = Client<SoftwareSigner>;
type Redis = redis::aio::MultiplexedConnection;

/// Untimed operations per task before each phase's clock starts.
const WARMUP_OPS: usize = 3;
/// The length of one timed slice of the call phases (as in `load.rs`).
const SLICE_S: f64 = 1.0;
/// Operations per client in the `MONITOR` audit of each phase.
const AUDIT_HANDSHAKES: usize = 2;
const AUDIT_CALLS: usize = 20;
/// The bar: Redis round trips per sealed request on the hot path. The
/// measured value may exceed 1 by the servers' sweeper (every 5 s) and the
/// rare second round trip (a reply past its grant of send numbers): up to
/// 1 % is allowed for that.
const BAR: f64 = 1.0;
const BAR_SLACK: f64 = 0.01;
/// This tool's own commands, left out of the sums.
const OWN_COMMANDS: [&str; 2] = ["config|resetstat", "info"];

// --- small helpers ---------------------------------------------------------

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Result<Vec<u8>, BoxError> {
    if !s.len().is_multiple_of(2) {
        return Err("odd hex".into());
    }
    s.as_bytes().chunks(2).map(|p| Ok(u8::from_str_radix(std::str::from_utf8(p)?, 16)?)).collect()
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

/// A body of exactly `size` bytes (for sizes above 24): JSON text
/// `{"n":N,"data":"xx…"}` with a per-request counter.
fn message(n: u64, size: usize) -> Vec<u8> {
    let head = format!("{{\"n\":{n},\"data\":\"");
    let pad = size.saturating_sub(head.len() + 2);
    let mut v = Vec::with_capacity(size);
    v.extend_from_slice(head.as_bytes());
    v.resize(head.len() + pad, b'x');
    v.extend_from_slice(b"\"}");
    v
}

fn percentile(sorted: &[u64], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    Duration::from_nanos(sorted.get(i).copied().unwrap_or(0))
}

/// utime + stime of a process, from `/proc/<pid>/stat` (clock ticks of
/// 1/100 s, Linux's USER_HZ).
fn proc_cpu(pid: &str) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest.split_whitespace().map(|x| x.parse().unwrap_or(0)).collect();
    let ticks = f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0);
    Duration::from_millis(ticks * 10)
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

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

// --- processes -------------------------------------------------------------

struct Proc {
    name: String,
    pid: u32,
    child: Child,
}

/// The server processes, killed by pid at the end (or on drop).
#[derive(Default)]
struct Procs(Vec<Proc>);

impl Procs {
    fn pids(&self) -> Vec<String> {
        self.0.iter().map(|p| p.pid.to_string()).collect()
    }

    async fn kill_all(&mut self) {
        for p in &mut self.0 {
            if matches!(p.child.try_wait(), Ok(None)) {
                signal(p.pid, "-9");
                if timeout(Duration::from_secs(5), p.child.wait()).await.is_err() {
                    eprintln!("fleet_load: {} (pid {}) did not die", p.name, p.pid);
                }
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

/// Starts one `fleet_server` and waits for its `server-key` and
/// `listening` lines. Returns its address and its key (hex).
async fn start_server(
    procs: &mut Procs,
    bin: &Path,
    name: &str,
    envs: &[(&str, String)],
    dir: &Path,
) -> Result<(String, String), BoxError> {
    let err_path = dir.join(format!("{name}.err"));
    let mut child = Command::new(bin)
        .args(["--listen", "127.0.0.1:0", "--name", name])
        .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&err_path)?)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| {
            format!("starting {}: {e} (build it: cargo build --release -p oncewire-fleet --examples)", bin.display())
        })?;
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
    // Keep reading its stdout, so that it never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok((addr.ok_or("no address")?, key.ok_or("no key")?))
}

// --- Redis statistics ------------------------------------------------------

async fn redis_info(r: &mut Redis, section: &str) -> Result<String, BoxError> {
    Ok(redis::cmd("INFO").arg(section).query_async::<String>(r).await?)
}

/// `command -> calls` from `INFO commandstats`, without this tool's own.
fn commandstats(info: &str) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for line in info.lines() {
        let Some((name, rest)) = line.trim().strip_prefix("cmdstat_").and_then(|l| l.split_once(':')) else {
            continue;
        };
        if OWN_COMMANDS.contains(&name) {
            continue;
        }
        let calls =
            rest.split(',').find_map(|kv| kv.strip_prefix("calls=")).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        *out.entry(name.to_owned()).or_default() += calls;
    }
    out
}

/// Redis's own CPU (`used_cpu_sys` + `used_cpu_user` of `INFO cpu`).
async fn redis_cpu(r: &mut Redis) -> Result<Duration, BoxError> {
    let info = redis_info(r, "cpu").await?;
    let mut s = 0.0;
    for line in info.lines() {
        if let Some(v) = line.strip_prefix("used_cpu_sys:").or_else(|| line.strip_prefix("used_cpu_user:")) {
            s += v.trim().parse::<f64>().unwrap_or(0.0);
        }
    }
    Ok(Duration::from_secs_f64(s))
}

/// CPU so far of this process, the servers and Redis.
#[derive(Clone, Copy, Default)]
struct Cpu {
    clients: Duration,
    servers: Duration,
    redis: Duration,
}

impl Cpu {
    async fn now(ctx: &mut Ctx) -> Result<Self, BoxError> {
        Ok(Self {
            clients: proc_cpu("self"),
            servers: ctx.server_pids.iter().map(|p| proc_cpu(p)).sum(),
            redis: redis_cpu(&mut ctx.redis).await?,
        })
    }

    fn since(self, before: Self) -> Self {
        Self {
            clients: self.clients.saturating_sub(before.clients),
            servers: self.servers.saturating_sub(before.servers),
            redis: self.redis.saturating_sub(before.redis),
        }
    }

    fn add(&mut self, o: Self) {
        self.clients += o.clients;
        self.servers += o.servers;
        self.redis += o.redis;
    }
}

// --- phases ----------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Handshake,
    Sealed(usize),
}

impl Kind {
    fn label(self) -> String {
        match self {
            Self::Handshake => "handshake (connect)".to_owned(),
            Self::Sealed(s) if s >= 1024 => format!("sealed call {} KiB", s / 1024),
            Self::Sealed(s) => format!("sealed call {s} B"),
        }
    }
}

/// One operation, verified. `Ok(true)` when a sealed call had to
/// handshake on its own first (a session past its limits).
async fn op(kind: Kind, dev: &mut Device, n: u64) -> Result<bool, String> {
    match kind {
        Kind::Handshake => dev.connect().await.map(|()| false).map_err(|e| e.to_string()),
        Kind::Sealed(size) => {
            let before = dev.session_id();
            let body = message(n, size);
            let reply = dev.call_no_retry("/app/echo", &body).await.map_err(|e| e.to_string())?;
            if reply.status != 200 {
                return Err(format!("sealed call: status {}", reply.status));
            }
            if reply.body != body {
                return Err(format!("sealed call {n}: the reply opened but does not equal its request"));
            }
            Ok(dev.session_id() != before)
        }
    }
}

#[derive(Default)]
struct TaskOut {
    latencies_ns: Vec<u64>,
    ok_untimed: u64,
    errors: u64,
    first_error: Option<String>,
    reconnects: u64,
    end: Option<Instant>,
}

impl TaskOut {
    fn record(&mut self, r: Result<bool, String>, timed: Option<Duration>) {
        match r {
            Ok(reconnected) => {
                self.reconnects += u64::from(reconnected);
                match timed {
                    Some(d) => self.latencies_ns.push(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)),
                    None => self.ok_untimed += 1,
                }
            }
            Err(e) => {
                self.errors += 1;
                self.first_error.get_or_insert(e);
            }
        }
    }
}

struct PhaseResult {
    kind: Kind,
    ops: u64,
    errors: u64,
    first_error: Option<String>,
    reconnects: u64,
    elapsed: Duration,
    cpu: Cpu,
    latencies_ns: Vec<u64>,
    /// Redis commands executed in the timed slices (`INFO commandstats`).
    commands: BTreeMap<String, u64>,
}

impl PhaseResult {
    fn ops_per_s(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    fn per_op(&self, d: Duration) -> f64 {
        d.as_secs_f64() * 1e6 / self.ops.max(1) as f64
    }

    fn commands_per_op(&self) -> f64 {
        self.commands.values().sum::<u64>() as f64 / self.ops.max(1) as f64
    }

    fn scripts_per_op(&self) -> f64 {
        let s: u64 = ["evalsha", "eval"].iter().map(|c| self.commands.get(*c).copied().unwrap_or(0)).sum();
        s as f64 / self.ops.max(1) as f64
    }

    fn merge(&mut self, other: Self) {
        self.ops += other.ops;
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        self.reconnects += other.reconnects;
        self.elapsed += other.elapsed;
        self.cpu.add(other.cpu);
        self.latencies_ns.extend(other.latencies_ns);
        for (k, v) in other.commands {
            *self.commands.entry(k).or_default() += v;
        }
    }
}

struct Ctx {
    redis: Redis,
    redis_url: String,
    server_pids: Vec<String>,
    /// Operations made outside the timed slices (warm-up, audits).
    untimed_errors: u64,
}

/// One timed slice of `kind`: every device warms up, then Redis's
/// statistics are reset, then the clock runs for `seconds`.
async fn phase(
    kind: Kind,
    devices: Vec<Device>,
    seconds: f64,
    ctx: &mut Ctx,
) -> Result<(Vec<Device>, PhaseResult), BoxError> {
    let n = devices.len();
    let warmed = Arc::new(Barrier::new(n + 1));
    let go = Arc::new(Barrier::new(n + 1));
    let mut tasks = Vec::with_capacity(n);
    for (t, mut dev) in devices.into_iter().enumerate() {
        let (warmed, go) = (warmed.clone(), go.clone());
        tasks.push(tokio::spawn(async move {
            let mut out = TaskOut::default();
            let mut seq = 0u64;
            let mut next = || {
                seq += 1;
                ((t as u64) << 32) | seq
            };
            for _ in 0..WARMUP_OPS {
                let r = op(kind, &mut dev, next()).await;
                out.record(r, None);
            }
            warmed.wait().await;
            go.wait().await;
            let deadline = Instant::now() + Duration::from_secs_f64(seconds);
            while Instant::now() < deadline {
                let t0 = Instant::now();
                let r = op(kind, &mut dev, next()).await;
                out.record(r, Some(t0.elapsed()));
            }
            out.end = Some(Instant::now());
            (dev, out)
        }));
    }
    warmed.wait().await;
    // Right before the clock: reset Redis's counters, read the CPU so far.
    let reset = async {
        let _: () = redis::cmd("CONFIG").arg("RESETSTAT").query_async(&mut ctx.redis).await?;
        Cpu::now(ctx).await
    };
    let cpu0 = reset.await;
    go.wait().await;
    let start = Instant::now();
    let mut devices = Vec::with_capacity(n);
    let mut res = PhaseResult {
        kind,
        ops: 0,
        errors: 0,
        first_error: None,
        reconnects: 0,
        elapsed: Duration::ZERO,
        cpu: Cpu::default(),
        latencies_ns: Vec::new(),
        commands: BTreeMap::new(),
    };
    let mut end = start;
    for t in tasks {
        match t.await {
            Ok((dev, out)) => {
                devices.push(dev);
                res.ops += out.latencies_ns.len() as u64;
                res.errors += out.errors;
                res.reconnects += out.reconnects;
                if res.first_error.is_none() {
                    res.first_error = out.first_error;
                }
                end = end.max(out.end.unwrap_or(start));
                res.latencies_ns.extend(out.latencies_ns);
            }
            Err(e) => {
                res.errors += 1;
                res.first_error.get_or_insert(format!("task failed: {e}"));
            }
        }
    }
    res.elapsed = end - start;
    let cpu0 = cpu0?;
    res.commands = commandstats(&redis_info(&mut ctx.redis, "commandstats").await?);
    res.cpu = Cpu::now(ctx).await?.since(cpu0);
    Ok((devices, res))
}

/// What `MONITOR` saw during an audit.
#[derive(Default)]
struct Audit {
    ops: u64,
    /// Commands sent by a client connection (the servers), by name.
    sent: BTreeMap<String, u64>,
    /// Commands run inside a script, by name.
    in_scripts: BTreeMap<String, u64>,
}

impl Audit {
    fn sent_per_op(&self) -> f64 {
        self.sent.values().sum::<u64>() as f64 / self.ops.max(1) as f64
    }

    fn in_scripts_per_op(&self) -> f64 {
        self.in_scripts.values().sum::<u64>() as f64 / self.ops.max(1) as f64
    }
}

/// `per_client` operations of `kind` from every device with `redis-cli
/// MONITOR` attached; every line attributed to a connection or to a script.
async fn audit(
    kind: Kind,
    devices: Vec<Device>,
    per_client: usize,
    ctx: &mut Ctx,
) -> Result<(Vec<Device>, Audit), BoxError> {
    let mut mon = Command::new("redis-cli")
        .args(["-u", &ctx.redis_url, "monitor"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("redis-cli monitor: {e} (redis-cli is needed: scripts/services start installs it)"))?;
    let mon_pid = mon.id().ok_or("redis-cli: no pid")?;
    let mut lines = BufReader::new(mon.stdout.take().ok_or("redis-cli: no stdout")?).lines();
    let first = timeout(Duration::from_secs(5), lines.next_line()).await.map_err(|_| "redis-cli monitor: no OK")??;
    if first.as_deref().map(str::trim) != Some("OK") {
        signal(mon_pid, "-9");
        return Err(format!("redis-cli monitor: {first:?}").into());
    }
    let reader = tokio::spawn(async move {
        let mut got = Vec::new();
        while let Ok(Some(l)) = lines.next_line().await {
            got.push(l);
        }
        got
    });

    let mut tasks = Vec::new();
    for (t, mut dev) in devices.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            let mut out = TaskOut::default();
            for i in 0..per_client {
                let r = op(kind, &mut dev, (1 << 62) | ((t as u64) << 32) | i as u64).await;
                out.record(r, None);
            }
            (dev, out)
        }));
    }
    let mut devices = Vec::new();
    let mut a = Audit::default();
    let mut errors = Vec::new();
    for t in tasks {
        let (dev, out) = t.await?;
        devices.push(dev);
        a.ops += out.ok_untimed;
        if out.errors > 0 {
            ctx.untimed_errors += out.errors;
            errors.push(out.first_error.unwrap_or_default());
        }
    }
    // Let the last lines arrive, then stop redis-cli (by its pid).
    tokio::time::sleep(Duration::from_millis(300)).await;
    signal(mon_pid, "-9");
    let _ = timeout(Duration::from_secs(5), mon.wait()).await;
    let got = reader.await?;
    if let Some(e) = errors.first() {
        return Err(format!("audit of {}: {} errors (first: {e})", kind.label(), errors.len()).into());
    }
    for l in got {
        // 1796188929.359652 [0 127.0.0.1:56604] "evalsha" "…" …
        let Some((who, rest)) = l.split_once('[').and_then(|(_, r)| r.split_once(']')) else { continue };
        let name = rest.trim_start().split('"').nth(1).unwrap_or("?").to_ascii_lowercase();
        let from_script = who.split_whitespace().nth(1) == Some("lua");
        let m = if from_script { &mut a.in_scripts } else { &mut a.sent };
        *m.entry(name).or_default() += 1;
    }
    Ok((devices, a))
}

fn breakdown(m: &BTreeMap<String, u64>, ops: u64) -> String {
    let mut v: Vec<(&String, &u64)> = m.iter().collect();
    v.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let parts: Vec<String> = v.iter().map(|(k, c)| format!("{k} {:.3}", **c as f64 / ops.max(1) as f64)).collect();
    if parts.is_empty() { "none".to_owned() } else { parts.join(", ") }
}

// --- options, main ---------------------------------------------------------

const USAGE: &str = "usage: fleet_load --servers N [--clients 32] [--seconds 5] [--quick]";

struct Options {
    servers: usize,
    clients: usize,
    seconds: f64,
}

fn options() -> Result<Options, BoxError> {
    let mut o = Options { servers: 1, clients: 32, seconds: 5.0 };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--servers" => o.servers = args.next().ok_or(USAGE)?.parse()?,
            "--clients" => o.clients = args.next().ok_or(USAGE)?.parse()?,
            "--seconds" => o.seconds = args.next().ok_or(USAGE)?.parse()?,
            "--quick" => {
                o.clients = 8;
                o.seconds = 1.0;
            }
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other}; {USAGE}").into()),
        }
    }
    if o.servers == 0 || o.servers > 64 || o.clients == 0 || o.seconds.is_nan() || o.seconds <= 0.0 {
        return Err(format!("--servers (1 to 64), --clients and --seconds must be positive; {USAGE}").into());
    }
    Ok(o)
}

/// What `run` made that the end removes.
#[derive(Default)]
struct Made {
    procs: Procs,
    prefix: Option<String>,
    schema: Option<String>,
    dir: Option<PathBuf>,
}

#[allow(clippy::too_many_lines)] // one run, in order
async fn run(made: &mut Made) -> Result<bool, BoxError> {
    let o = options()?;
    let redis_url = env("ONCEWIRE_REDIS_URL")?;
    let pg_url = env("ONCEWIRE_PG_URL")?;
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let (model, flags) = cpu_line();
    println!(
        "oncewire-fleet load: {} server process(es), {} clients (client j on server j % {}), {} s per phase \
         (call phases in turns of at most {SLICE_S} s), keep-alive HTTP/1.1 on loopback",
        o.servers, o.clients, o.servers, o.seconds
    );
    println!("CPU: {model}; {cores} cores; {flags}");
    println!(
        "Note: the {} server process(es), Redis, PostgreSQL and the clients (this process, one tokio runtime) \
         all share these {cores} cores; load average at start: {}",
        o.servers,
        loadavg()
    );

    let bin = std::env::current_exe()?.with_file_name("fleet_server");
    let tag = hex(&random_bytes(4)?);
    let prefix = format!("fleetload_{tag}");
    made.prefix = Some(prefix.clone());
    made.schema = Some(prefix.clone());
    let dir = std::env::temp_dir().join(format!("fleet-load.{}.{tag}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    made.dir = Some(dir.clone());
    let seed = hex(&random_bytes(32)?);
    let envs = [
        ("ONCEWIRE_REDIS_URL", redis_url.clone()),
        ("ONCEWIRE_PG_URL", pg_url.clone()),
        ("ONCEWIRE_FLEET_PREFIX", prefix.clone()),
        ("ONCEWIRE_FLEET_SEED", seed),
    ];
    let redis = redis::Client::open(redis_url.as_str())?.get_multiplexed_async_connection().await?;
    let mut ctx = Ctx { redis, redis_url: redis_url.clone(), server_pids: Vec::new(), untimed_errors: 0 };
    let clients_before = redis_info(&mut ctx.redis, "clients").await?;
    let others = clients_before
        .lines()
        .find_map(|l| l.strip_prefix("connected_clients:"))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(0)
        .saturating_sub(1);
    println!(
        "Redis {redis_url}: {others} other client connection(s) before the servers start{}",
        if others > 0 { " (their commands are counted below too)" } else { "" }
    );
    // A prefix no server ever used: declared new (the restart floor).
    oncewire_fleet::redis::conn::Fleet::connect(&redis_url, &prefix).await?.declare_new_fleet(0).await?;

    let mut addrs = Vec::new();
    let mut key_hex: Option<String> = None;
    for i in 1..=o.servers {
        let name = format!("s{i}");
        let (addr, k) = start_server(&mut made.procs, &bin, &name, &envs, &dir).await?;
        if key_hex.get_or_insert_with(|| k.clone()) != &k {
            return Err(format!("{name} has another server key than s1: not one fleet").into());
        }
        addrs.push(addr);
    }
    ctx.server_pids = made.procs.pids();
    let key = PublicKey::from_sec1_uncompressed(&unhex(&key_hex.unwrap_or_default())?)?;
    println!(
        "servers: {} (prefix {prefix})",
        addrs.iter().zip(&ctx.server_pids).map(|(a, p)| format!("{a} pid {p}")).collect::<Vec<_>>().join(", ")
    );

    // Devices: one key each, enrolled once (on their own server).
    let mut tasks = Vec::with_capacity(o.clients);
    for j in 0..o.clients {
        let signer: SoftwareSigner = SoftwareSigner::generate(&mut OsRng)?;
        let id = DeviceId::new(format!("{prefix}-{j}").as_bytes())?;
        let base = format!("http://{}", addrs.get(j % o.servers).ok_or("no server")?);
        let mut d = Client::new(&base, key, id, signer);
        tasks.push(tokio::spawn(async move { d.enroll().await.map(|()| d) }));
    }
    let mut devices = Vec::with_capacity(o.clients);
    for t in tasks {
        devices.push(t.await?.map_err(|e| format!("enrollment failed: {e}"))?);
    }

    let mut results: Vec<PhaseResult> = Vec::new();
    let (d, r) = phase(Kind::Handshake, devices, o.seconds, &mut ctx).await?;
    devices = d;
    results.push(r);
    let calls = [Kind::Sealed(64), Kind::Sealed(1024)];
    let slices = (o.seconds / SLICE_S).ceil().max(1.0);
    let slice_s = o.seconds / slices;
    for _ in 0..(slices as u64) {
        for &kind in &calls {
            let (d, r) = phase(kind, devices, slice_s, &mut ctx).await?;
            devices = d;
            match results.iter_mut().find(|x| x.kind == kind) {
                Some(acc) => acc.merge(r),
                None => results.push(r),
            }
        }
    }

    // The audits, untimed: who sends which command.
    let mut audits = Vec::new();
    for kind in [Kind::Handshake, Kind::Sealed(64), Kind::Sealed(1024)] {
        let per = if kind == Kind::Handshake { AUDIT_HANDSHAKES } else { AUDIT_CALLS };
        let (d, a) = audit(kind, devices, per, &mut ctx).await?;
        devices = d;
        audits.push((kind, a));
    }
    drop(devices);

    println!();
    println!(
        "{:<22} {:>8} {:>10} {:>8} {:>8} {:>11} {:>10} {:>22} {:>6}",
        "phase", "ops", "ops/s", "p50 ms", "p99 ms", "Redis cmd/op", "scripts/op", "CPU µs/op cli/srv/Redis", "errors"
    );
    for r in &mut results {
        r.latencies_ns.sort_unstable();
        println!(
            "{:<22} {:>8} {:>10.1} {:>8.3} {:>8.3} {:>11.3} {:>10.3} {:>22} {:>6}",
            r.kind.label(),
            r.ops,
            r.ops_per_s(),
            percentile(&r.latencies_ns, 0.50).as_secs_f64() * 1e3,
            percentile(&r.latencies_ns, 0.99).as_secs_f64() * 1e3,
            r.commands_per_op(),
            r.scripts_per_op(),
            format!("{:.0} / {:.0} / {:.0}", r.per_op(r.cpu.clients), r.per_op(r.cpu.servers), r.per_op(r.cpu.redis)),
            r.errors
        );
    }
    for r in &results {
        let total = r.cpu.clients + r.cpu.servers + r.cpu.redis;
        println!(
            "{}: {} ops in {:.2} s; cores used: clients {:.2}, servers {:.2}, Redis {:.2} (total {:.2} of {cores}); \
             handshakes a call ran on its own: {}",
            r.kind.label(),
            r.ops,
            r.elapsed.as_secs_f64(),
            r.cpu.clients.as_secs_f64() / r.elapsed.as_secs_f64().max(1e-9),
            r.cpu.servers.as_secs_f64() / r.elapsed.as_secs_f64().max(1e-9),
            r.cpu.redis.as_secs_f64() / r.elapsed.as_secs_f64().max(1e-9),
            total.as_secs_f64() / r.elapsed.as_secs_f64().max(1e-9),
            r.reconnects
        );
    }

    println!();
    println!(
        "Redis commands per operation, INFO commandstats (CONFIG RESETSTAT before each timed slice; commands run \
         inside scripts included; this tool's {} left out):",
        OWN_COMMANDS.join(", ")
    );
    for r in &results {
        println!("  {}: {:.3} = {}", r.kind.label(), r.commands_per_op(), breakdown(&r.commands, r.ops));
    }
    println!(
        "Redis commands per operation, MONITOR audit (untimed; sent by a server connection | run inside a script):"
    );
    for (kind, a) in &audits {
        println!(
            "  {} ({} ops): sent {:.3} = {} | in scripts {:.3} = {}",
            kind.label(),
            a.ops,
            a.sent_per_op(),
            breakdown(&a.sent, a.ops),
            a.in_scripts_per_op(),
            breakdown(&a.in_scripts, a.ops)
        );
    }

    let mut ok = true;
    for (kind, a) in audits.iter().filter(|(k, _)| matches!(k, Kind::Sealed(_))) {
        let sent = a.sent_per_op();
        let scripts = results.iter().find(|r| r.kind == *kind).map_or(0.0, PhaseResult::scripts_per_op);
        let pass = sent <= BAR + BAR_SLACK && scripts <= BAR + BAR_SLACK;
        println!(
            "Redis round trips per {} (hot path; bar: at most {BAR:.0}): {sent:.3} commands sent per request \
             (MONITOR), {scripts:.3} scripts per request (commandstats, timed): {}",
            kind.label(),
            if pass { "PASS" } else { "ABOVE" }
        );
        ok &= pass;
    }

    for r in results.iter().filter(|r| r.errors > 0) {
        ok = false;
        println!("ERRORS in {}: {} (first: {})", r.kind.label(), r.errors, r.first_error.as_deref().unwrap_or("?"));
    }
    if ctx.untimed_errors > 0 {
        ok = false;
        println!("ERRORS outside the timed slices: {}", ctx.untimed_errors);
    }
    for (i, pid) in ctx.server_pids.iter().enumerate() {
        if !Path::new(&format!("/proc/{pid}")).exists() {
            ok = false;
            println!("ERROR: server s{} (pid {pid}) is gone", i + 1);
        }
    }
    println!("load average at the end: {}", loadavg());
    Ok(ok)
}

/// Removes the run's PostgreSQL schema and Redis keys (best effort).
async fn clean_up(made: &Made) {
    if let (Some(schema), Ok(pg_url)) = (&made.schema, env("ONCEWIRE_PG_URL")) {
        match tokio_postgres::connect(&pg_url, tokio_postgres::NoTls).await {
            Ok((pg, conn)) => {
                let h = tokio::spawn(conn);
                if let Err(e) = pg.batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE")).await {
                    eprintln!("fleet_load: dropping schema {schema}: {e}");
                }
                drop(pg);
                let _ = h.await;
            }
            Err(e) => eprintln!("fleet_load: PostgreSQL for the clean-up: {e}"),
        }
    }
    if let (Some(prefix), Ok(url)) = (&made.prefix, env("ONCEWIRE_REDIS_URL")) {
        let r = async {
            let mut c = redis::Client::open(url.as_str())?.get_multiplexed_async_connection().await?;
            let mut cursor = 0u64;
            loop {
                let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(format!("{prefix}:*"))
                    .arg("COUNT")
                    .arg(1000)
                    .query_async(&mut c)
                    .await?;
                if !keys.is_empty() {
                    let _: u64 = redis::cmd("DEL").arg(&keys).query_async(&mut c).await?;
                }
                if next == 0 {
                    break;
                }
                cursor = next;
            }
            Ok::<(), BoxError>(())
        };
        if let Err(e) = r.await {
            eprintln!("fleet_load: removing the Redis keys {prefix}:*: {e}");
        }
    }
    if let Some(dir) = &made.dir {
        let _ = std::fs::remove_dir_all(dir);
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let mut made = Made::default();
    let r = run(&mut made).await;
    if let (Err(_), Some(dir)) = (&r, &made.dir) {
        // Show what the servers said before removing their files.
        for p in &made.procs.0 {
            let err = std::fs::read_to_string(dir.join(format!("{}.err", p.name))).unwrap_or_default();
            if !err.trim().is_empty() {
                eprintln!("fleet_load: {} stderr:\n{}", p.name, err.trim_end());
            }
        }
    }
    made.procs.kill_all().await;
    clean_up(&made).await;
    match r {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("fleet_load: {e}");
            ExitCode::FAILURE
        }
    }
}
