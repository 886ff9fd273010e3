//! The pieces `scripts/nginx-passthrough` runs around nginx (seed 002:
//! sealed calls through a reverse proxy that logs what it sees).
//!
//! ```text
//! proxy_target --gen-key                       a new server secret, hex (32 bytes)
//! proxy_target --free-port                     a loopback port free right now
//! proxy_target --serve NAME REGISTRY_DIR       a backend; the secret in ONCEWIRE_SERVER_KEY
//!                                              prints `port=P pubkey=HEX name=NAME`
//! proxy_target --relay UPSTREAM CAPTURE_DIR NAME
//!                                              a raw TCP relay to UPSTREAM (host:port) that
//!                                              writes every byte it forwards to CAPTURE_DIR;
//!                                              prints `port=P`
//! proxy_target --client URL PUBKEY_HEX [SESSIONS] [MAX_SESSIONS] [CALLS]
//!                                              enrolls devices, connects and calls /echo
//! ```
//!
//! **Server.** Several `--serve` processes share one server key (the client
//! pins one public key) and one device registry: [`FileRegistry`], one file
//! per device in `REGISTRY_DIR`, standing in for the database a fleet
//! shares. Sessions and pending handshakes stay in each process's memory:
//! that is why the proxy must send every request of a session to the
//! process that ran its handshake. `POST /echo` (sealed) answers with the
//! request's plaintext followed by ` | served by NAME`, so the client sees,
//! inside the sealed reply, which process held its session.
//!
//! **Relay.** nginx cannot log response bodies. The relay sits between
//! nginx and one backend and writes, for every TCP connection nginx opens
//! to it, two files: `NAME-connK.to-server` (every byte nginx sent
//! upstream: request lines, headers, bodies) and `NAME-connK.to-nginx`
//! (every byte the backend answered: status lines, headers, bodies). Each
//! chunk is written to the file before it is forwarded, so the capture
//! holds exactly what nginx received of every response.
//!
//! **Client.** Enrolls one device per session, connects, and makes CALLS
//! sealed calls whose plaintext (request and reply) contains
//! [`MARKER`]; checks every reply opened, was bound to its request, and
//! equals the request plus the serving process's name; checks that a
//! session never changed server. It makes at least SESSIONS sessions and
//! keeps going (up to MAX_SESSIONS) until two servers have been seen.
//! Exits non-zero on any failure.
#![allow(clippy::arithmetic_side_effects)] // counters and loop indices of a test tool

use axum::Router;
use axum::extract::State;
use axum::routing::post;
use oncewire::device::{Admission, EnrolledDevice, ReEnrollment};
use oncewire::rng::OsRng;
use oncewire::{DeviceId, Error, PublicKey, Secret};
use oncewire_http::client::Client;
use oncewire_http::provider::{ServerKey, SoftwareSigner};
use oncewire_http::server::{Backend, Opened, VerifiedDevice};
use oncewire_http::session_hex;
use oncewire_http::store::DeviceRegistry;
use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

/// The string every plaintext request and reply of the client carries; it
/// must never appear in what the proxy logged or forwarded.
pub const MARKER: &str = "SEED002-PLAINTEXT-MARKER";

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Result<Vec<u8>, BoxError> {
    let s = s.trim();
    if !s.len().is_multiple_of(2) {
        return Err("odd number of hex digits".into());
    }
    s.as_bytes().chunks_exact(2).map(|p| Ok(u8::from_str_radix(std::str::from_utf8(p)?, 16)?)).collect()
}

/// A device registry shared by several processes through a directory: one
/// file per device (named by the id in hex) holding its SEC1 public key.
/// A new file is written under a temporary name and hard-linked into
/// place, which fails if the id exists: the lookup and the insert of a new
/// id are one atomic step across processes.
#[derive(Debug)]
pub struct FileRegistry {
    dir: PathBuf,
}

impl FileRegistry {
    fn path(&self, device: &DeviceId) -> PathBuf {
        self.dir.join(hex(device.as_bytes()))
    }

    fn read(&self, device: &DeviceId) -> Result<Option<PublicKey>, Error> {
        match std::fs::read(self.path(device)) {
            Ok(b) => PublicKey::from_sec1_uncompressed(&b).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(_) => Err(Error::Storage),
        }
    }

    fn staged(&self, key: &PublicKey) -> Result<PathBuf, Error> {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = self.dir.join(format!(".tmp-{}-{n}", std::process::id()));
        std::fs::write(&tmp, key.as_bytes()).map_err(|_| Error::Storage)?;
        Ok(tmp)
    }
}

impl DeviceRegistry for FileRegistry {
    async fn device_key(&self, device: &DeviceId) -> Result<Option<PublicKey>, Error> {
        self.read(device)
    }

    async fn enroll(&self, device: EnrolledDevice, policy: ReEnrollment) -> Result<Admission, Error> {
        let tmp = self.staged(&device.public_key)?;
        let linked = std::fs::hard_link(&tmp, self.path(&device.device));
        let r = match linked {
            Ok(()) => Ok(Admission::New),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let held = self.read(&device.device)?;
                let admission = device.admit(held.as_ref(), policy)?;
                if admission == Admission::Replaced {
                    std::fs::rename(&tmp, self.path(&device.device)).map_err(|_| Error::Storage)?;
                }
                Ok(admission)
            }
            Err(_) => Err(Error::Storage),
        };
        let _ = std::fs::remove_file(&tmp);
        r
    }
}

async fn echo(State(name): State<Arc<str>>, _: VerifiedDevice, Opened(body): Opened) -> Vec<u8> {
    let mut out = body.to_vec();
    out.extend_from_slice(b" | served by ");
    out.extend_from_slice(name.as_bytes());
    out
}

async fn serve(name: &str, registry: &Path) -> Result<(), BoxError> {
    let secret = std::env::var("ONCEWIRE_SERVER_KEY").map_err(|_| "ONCEWIRE_SERVER_KEY is not set")?;
    let bytes: [u8; 32] = unhex(&secret)?.try_into().map_err(|_| "the server key is not 32 bytes")?;
    let key: ServerKey = ServerKey::from_bytes(&Secret::new(bytes))?;
    let backend = Backend::builder(key).registry(FileRegistry { dir: registry.to_owned() }).build()?;
    let app = Router::new().route("/echo", post(echo)).with_state(Arc::<str>::from(name));
    let router = backend.router().merge(backend.sealed(app)).merge(backend.metrics_router());
    backend.spawn_sweeper(std::time::Duration::from_secs(10));
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    println!("port={port} pubkey={} name={name}", hex(backend.public_key().as_bytes()));
    axum::serve(listener, router).await?;
    Ok(())
}

async fn relay(upstream: String, dir: PathBuf, name: String) -> Result<(), BoxError> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    println!("port={}", listener.local_addr()?.port());
    let mut n = 0u64;
    loop {
        let (inbound, _) = listener.accept().await?;
        n += 1;
        let base = dir.join(format!("{name}-conn{n}"));
        let upstream = upstream.clone();
        tokio::spawn(async move {
            if let Err(e) = relay_connection(inbound, &upstream, &base).await {
                eprintln!("relay {}: {e}", base.display());
            }
        });
    }
}

async fn relay_connection(inbound: TcpStream, upstream: &str, base: &Path) -> Result<(), BoxError> {
    let outbound = TcpStream::connect(upstream).await?;
    let (from_nginx, to_nginx) = inbound.into_split();
    let (from_server, to_server) = outbound.into_split();
    let up = pump(from_nginx, to_server, base.with_extension("to-server"));
    let down = pump(from_server, to_nginx, base.with_extension("to-nginx"));
    let (a, b) = tokio::join!(up, down);
    a?;
    b?;
    Ok(())
}

/// Copies `r` to `w`, writing each chunk to `capture` before forwarding it.
async fn pump(
    mut r: tokio::net::tcp::OwnedReadHalf,
    mut w: tokio::net::tcp::OwnedWriteHalf,
    capture: PathBuf,
) -> Result<(), BoxError> {
    let mut file = std::fs::File::create(capture)?;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = r.read(&mut buf).await?;
        let chunk = buf.get(..n).unwrap_or_default();
        if chunk.is_empty() {
            let _ = w.shutdown().await;
            return Ok(());
        }
        file.write_all(chunk)?;
        w.write_all(chunk).await?;
    }
}

async fn client(url: &str, key_hex: &str, sessions: usize, max_sessions: usize, calls: usize) -> Result<(), BoxError> {
    let server_key = PublicKey::from_sec1_uncompressed(&unhex(key_hex)?)?;
    let http = reqwest::Client::builder().build()?;
    let tag = std::process::id();
    let mut per_server: BTreeMap<String, usize> = BTreeMap::new();
    let mut calls_ok = 0usize;
    let mut i = 0usize;
    while i < sessions || (per_server.len() < 2 && i < max_sessions) {
        let signer: SoftwareSigner = SoftwareSigner::generate(&mut OsRng)?;
        let device = DeviceId::new(format!("seed002-{tag}-{i}").as_bytes())?;
        let mut c = Client::with_http(http.clone(), url, server_key, device, signer);
        c.enroll().await?;
        c.connect().await?;
        let id = c.session_id().ok_or("no session after connect")?;
        let mut server: Option<String> = None;
        for j in 0..calls {
            let request = format!("{MARKER} session {i} call {j}");
            let reply = c.call_no_retry("/echo", request.as_bytes()).await?;
            if reply.status != 200 {
                return Err(format!("session {i} call {j}: status {}", reply.status).into());
            }
            let name = reply
                .body
                .strip_prefix(request.as_bytes())
                .and_then(|rest| rest.strip_prefix(b" | served by ".as_slice()))
                .ok_or_else(|| format!("session {i} call {j}: the reply does not echo the request"))?;
            let name = String::from_utf8(name.to_vec())?;
            if *server.get_or_insert_with(|| name.clone()) != name {
                return Err(format!("session {i} moved from {server:?} to {name}").into());
            }
            if c.session_id() != Some(id) {
                return Err(format!("session {i} was replaced during call {j}").into());
            }
            if i == 0 && j == 0 {
                // A positive control for the script's grep: the marker is
                // in the plaintext the client sees.
                println!("sample_reply_plaintext={}", String::from_utf8_lossy(&reply.body));
            }
            calls_ok += 1;
        }
        let server = server.unwrap_or_default();
        println!("session={} server={server} calls={calls}", session_hex(&id));
        *per_server.entry(server).or_default() += 1;
        i += 1;
    }
    let spread: Vec<String> = per_server.iter().map(|(s, n)| format!("{s}:{n}")).collect();
    println!("summary sessions={i} calls_ok={calls_ok} servers={}", spread.join(","));
    Ok(())
}

fn usage() -> BoxError {
    "usage: proxy_target --gen-key | --free-port | --serve NAME REGISTRY_DIR | \
     --relay UPSTREAM CAPTURE_DIR NAME | --client URL PUBKEY_HEX [SESSIONS] [MAX_SESSIONS] [CALLS]"
        .into()
}

async fn run(args: Vec<String>) -> Result<(), BoxError> {
    let arg = |i: usize| args.get(i).cloned().ok_or_else(usage);
    let num = |i: usize, default: usize| -> Result<usize, BoxError> {
        args.get(i).map_or(Ok(default), |s| s.parse().map_err(Into::into))
    };
    match args.first().map(String::as_str) {
        Some("--gen-key") => {
            let (_, secret) = ServerKey::generate_persistent(&mut OsRng)?;
            println!("{}", hex(secret.expose()));
            Ok(())
        }
        Some("--free-port") => {
            let l = std::net::TcpListener::bind("127.0.0.1:0")?;
            println!("{}", l.local_addr()?.port());
            Ok(())
        }
        Some("--serve") => serve(&arg(1)?, Path::new(&arg(2)?)).await,
        Some("--relay") => relay(arg(1)?, PathBuf::from(arg(2)?), arg(3)?).await,
        Some("--client") => client(&arg(1)?, &arg(2)?, num(3, 8)?, num(4, 64)?, num(5, 5)?).await,
        _ => Err(usage()),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("proxy_target: {e}");
            ExitCode::FAILURE
        }
    }
}
