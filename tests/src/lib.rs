//! The test harness every suite uses: real `nats-server` processes and
//! isolated PostgreSQL databases, each owned by one test and gone when it
//! drops, so the suite runs in parallel and leaves nothing behind.
//!
//! # Layout
//!
//! - [`nats`]: [`NatsServer`] (one JetStream server on free ports with its
//!   own store directory) and [`NatsCluster`] (three of them, clustered).
//! - [`postgres`]: [`TestDatabase`], a fresh database on the shared server,
//!   and [`PgCluster`] (a private cluster made with `initdb`, for tests that
//!   must stop, kill or restart PostgreSQL).
//! - [`fixtures`]: events as an agency system would send them.
//! - [`gateway`]: a real gateway on a free port, with test principals, and bulk loading.
//! - [`projector`]: the projector in-process, to a position or left running.
//! - [`query`]: a real query role on a free port, and the access events it stored.
//! - [`system`]: all of it at once (NATS, gateway, database, projector, query role).
//! - [`browser`]: headless Chromium driven through ChromeDriver, for the pages.
//! - [`oidc`]: a real OpenID Connect provider (oidc-provider from npm) on a free port.
//! - [`link`]: a network hop on loopback, a TCP relay that adds latency each way.
//! - [`cpu`]: where a benchmark's CPU went, process by process, from `/proc`.
//!
//! Nothing here is a stand-in: tests talk to the same servers production
//! runs, configured as production is (`sync_interval: always`).

pub mod benchmarks;
pub mod browser;
pub mod cpu;
pub mod deploy;
pub mod fixtures;
pub mod gateway;
pub mod link;
pub mod load;
pub mod nats;
pub mod oidc;
pub mod postgres;
pub mod projector;
pub mod query;
pub mod secure;
pub mod system;
pub mod tables;

pub use nats::{NatsCluster, NatsServer};
pub use postgres::{PgCluster, TestDatabase};

use std::net::TcpListener;
use std::path::PathBuf;

/// A TCP port on 127.0.0.1 that was free a moment ago, for a server a
/// test starts, and never handed out twice by this process.
///
/// It is taken below the kernel's ephemeral range. A port from that range
/// (what binding port 0 gives) is also what the kernel gives outgoing
/// connections as their source port, and a test's clients make thousands:
/// the fault suite saw a restarted nats-server find its port taken by one
/// ("address already in use"). Below the range only another listener can
/// take it, and every listener of ours comes through here.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    let (low, high) = listening_range();
    let mut given = GIVEN.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    for _ in 0..1_000 {
        let candidate = low + (uuid::Uuid::new_v4().as_u128() % u128::from(high - low)) as u16;
        if !given.contains(&candidate) && TcpListener::bind(("127.0.0.1", candidate)).is_ok() {
            given.insert(candidate);
            return candidate;
        }
    }
    panic!("no free port between {low} and {high} in 1,000 tries");
}

/// Where [`free_port`] looks: from 10,000 (above the usual services) to
/// the start of the kernel's ephemeral range (Linux's default if unread).
fn listening_range() -> (u16, u16) {
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| text.split_whitespace().next().and_then(|low| low.parse::<u16>().ok()))
        .unwrap_or(32_768);
    (10_000, ephemeral_low.max(20_000))
}

/// A client of the server or servers in `urls` (comma-separated, as
/// `NATS_URL` takes them), connected as the roles connect.
pub async fn connect(urls: &str) -> async_nats::Client {
    #[allow(clippy::expect_used)]
    platform::bus::connect(&platform::config::NatsArgs::for_url(urls)).await.expect("connect to the test NATS")
}

/// The workspace root (where `.venv/` and `ops/` live).
pub fn workspace_root() -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    here.parent().map(PathBuf::from).unwrap_or(here)
}

/// The last `lines` lines of a log file, for failure messages.
pub(crate) fn log_tail(path: &std::path::Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The `safeguard` binary, for tests that must kill a real process.
///
/// `cargo test --workspace` (what `ops/test` runs) builds it with the
/// workspace's features before any test starts, so it is used as found.
/// Only when it is missing (`cargo test -p tests` on a fresh tree) is it
/// built here, once per test process.
pub fn safeguard_binary() -> PathBuf {
    static BINARY: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BINARY
        .get_or_init(|| {
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| workspace_root().join("target"));
            let binary = target.join("debug").join("safeguard");
            if !binary.exists() {
                let cargo = option_env!("CARGO").unwrap_or("cargo");
                #[allow(clippy::expect_used)]
                let status = std::process::Command::new(cargo)
                    .args(["build", "-q", "-p", "safeguard", "--bin", "safeguard"])
                    .current_dir(workspace_root())
                    .status()
                    .expect("run cargo build");
                assert!(status.success(), "cargo build of the safeguard binary failed");
            }
            binary
        })
        .clone()
}

/// A child process that is killed when dropped, so a failing test leaves
/// no role running behind it.
#[derive(Debug)]
pub struct Process(pub std::process::Child);

impl std::ops::Deref for Process {
    type Target = std::process::Child;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for Process {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A role of the `safeguard` library running in this process on port 0.
#[derive(Debug)]
pub(crate) struct Running {
    pub base: String,
    pub stop: tokio::sync::oneshot::Sender<()>,
    pub task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// Starts a role: `run` gets the shutdown future and the sender for the
/// address it bound, as `safeguard::roles::gateway::run` and `safeguard::roles::query::run`
/// take them. Waits until it listens; panics with its error if it fails.
pub(crate) async fn start_role<F>(
    what: &str,
    run: impl FnOnce(
        std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
        tokio::sync::oneshot::Sender<std::net::SocketAddr>,
    ) -> F,
) -> Running
where
    F: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (bound_tx, bound_rx) = tokio::sync::oneshot::channel();
    let stopped = Box::pin(async move {
        let _ = stop_rx.await;
    });
    let task = tokio::spawn(run(stopped, bound_tx));
    let addr = match tokio::time::timeout(std::time::Duration::from_secs(30), bound_rx).await {
        Ok(Ok(addr)) => addr,
        _ => {
            let outcome = if task.is_finished() { format!("{:?}", task.await) } else { "still starting".into() };
            panic!("the {what} did not start: {outcome}");
        }
    };
    Running { base: format!("http://{addr}"), stop, task }
}
