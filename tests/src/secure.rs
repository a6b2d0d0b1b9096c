//! The production-shaped cluster of `ops/cluster`, for tests: three
//! `nats-server` processes run from `ops/nats/cluster/node.conf` and
//! `accounts.conf` themselves, with TLS from `ops/nats/cluster/make-certs`
//! and one nkey per role from `safeguard nkey`, on free ports. What a test
//! shows here holds for the files an operator deploys.

use crate::{free_port, log_tail, safeguard_binary, workspace_root};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// The roles `accounts.conf` knows.
pub const ROLES: [&str; 5] = ["gateway", "projector", "query", "dashboard", "operator"];

/// Makes one nkey per role with `safeguard nkey` (the seed in
/// `dir/ROLE.seed`) and returns the environment `accounts.conf` reads the
/// public keys from.
fn role_keys(dir: &Path) -> Vec<(String, String)> {
    ROLES
        .iter()
        .map(|role| {
            #[allow(clippy::expect_used)]
            let out = Command::new(safeguard_binary())
                .args(["nkey", "--out"])
                .arg(dir.join(format!("{role}.seed")))
                .output()
                .expect("run safeguard nkey");
            assert!(out.status.success(), "safeguard nkey: {}", String::from_utf8_lossy(&out.stderr));
            let public = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            assert!(public.starts_with('U'), "a user public key: {public}");
            (format!("SG_{}_NKEY", role.to_uppercase()), public)
        })
        .collect()
}

/// The single server of `ops/run`, run from `ops/nats/safeguard.conf`
/// itself (on a free port and a store of its own) with one nkey per role.
#[derive(Debug)]
pub struct SingleServer {
    dir: TempDir,
    port: u16,
    server: Child,
}

impl SingleServer {
    pub async fn start() -> Self {
        #[allow(clippy::expect_used)]
        let dir = tempfile::Builder::new().prefix("sg-single-").tempdir().expect("temporary directory");
        let env = role_keys(dir.path());
        let port = free_port();
        // Flags override the file's listen address and store, as ops/run's -sd does.
        #[allow(clippy::expect_used)]
        let server = Command::new(crate::nats::nats_server_binary())
            .arg("-c")
            .arg(workspace_root().join("ops/nats/safeguard.conf"))
            .args(["-a", "127.0.0.1", "-p", &port.to_string()])
            .arg("-sd")
            .arg(dir.path().join("store"))
            .arg("-l")
            .arg(dir.path().join("nats.log"))
            .envs(env)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn nats-server");
        let server = Self { dir, port, server };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !std::fs::read_to_string(server.dir.path().join("nats.log"))
            .unwrap_or_default()
            .contains("Server is ready")
        {
            assert!(
                Instant::now() < deadline,
                "ops/nats/safeguard.conf did not start: {}",
                log_tail(&server.log(), 30)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        server
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn seed(&self, role: &str) -> PathBuf {
        self.dir.path().join(format!("{role}.seed"))
    }

    /// The environment a `safeguard` process of `role` runs with.
    pub fn env(&self, role: &str) -> Vec<(String, String)> {
        vec![("NATS_URL".into(), self.url()), ("NATS_CREDS".into(), self.seed(role).display().to_string())]
    }

    pub fn nats_args(&self, role: &str) -> platform::config::NatsArgs {
        platform::config::NatsArgs { creds: Some(self.seed(role)), ..platform::config::NatsArgs::for_url(&self.url()) }
    }

    pub fn log(&self) -> PathBuf {
        self.dir.path().join("nats.log")
    }
}

impl Drop for SingleServer {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

#[derive(Debug)]
pub struct SecureCluster {
    dir: TempDir,
    client_ports: Vec<u16>,
    nodes: Vec<Child>,
}

impl SecureCluster {
    /// Makes the certificates and role keys and starts three nodes; waits
    /// until the operator can place a three-replica stream.
    pub async fn start() -> Self {
        #[allow(clippy::expect_used)]
        let dir = tempfile::Builder::new().prefix("sg-secure-").tempdir().expect("temporary directory");
        let cluster_dir = workspace_root().join("ops/nats/cluster");
        #[allow(clippy::expect_used)]
        let status = Command::new(cluster_dir.join("make-certs"))
            .arg(dir.path().join("tls"))
            .status()
            .expect("run ops/nats/cluster/make-certs");
        assert!(status.success(), "make-certs failed");
        let mut env = role_keys(dir.path());
        let tls = dir.path().join("tls");
        for (k, f) in [("SG_TLS_CERT", "node.pem"), ("SG_TLS_KEY", "node-key.pem"), ("SG_TLS_CA", "ca.pem")] {
            env.push((k.into(), tls.join(f).display().to_string()));
        }
        let client_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let route_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let nodes = (0..3)
            .map(|i| {
                let node = dir.path().join(format!("n{}", i + 1));
                let routes: Vec<String> =
                    (0..3).filter(|&j| j != i).map(|j| format!("nats-route://127.0.0.1:{}", route_ports[j])).collect();
                #[allow(clippy::expect_used)]
                Command::new(crate::nats::nats_server_binary())
                    .arg("-c")
                    .arg(cluster_dir.join("node.conf"))
                    .arg("-l")
                    .arg(node.with_extension("log"))
                    .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                    .env("SG_NODE_NAME", format!("n{}", i + 1))
                    .env("SG_CLIENT_LISTEN", format!("127.0.0.1:{}", client_ports[i]))
                    .env("SG_CLUSTER_LISTEN", format!("127.0.0.1:{}", route_ports[i]))
                    .env("SG_STORE_DIR", node.join("store"))
                    .env("SG_ROUTE_A", &routes[0])
                    .env("SG_ROUTE_B", &routes[1])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("spawn nats-server")
            })
            .collect();
        let cluster = Self { dir, client_ports, nodes };
        cluster.wait_placeable().await;
        cluster
    }

    /// `tls://127.0.0.1:PORT` for each node, comma-separated, as `NATS_URL` takes them.
    pub fn urls(&self) -> String {
        self.client_ports.iter().map(|p| format!("tls://127.0.0.1:{p}")).collect::<Vec<_>>().join(",")
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("tls/ca.pem")
    }

    /// The nkey seed file of `role`.
    pub fn seed(&self, role: &str) -> PathBuf {
        self.dir.path().join(format!("{role}.seed"))
    }

    /// The environment a `safeguard` process of `role` runs with.
    pub fn env(&self, role: &str) -> Vec<(String, String)> {
        vec![
            ("NATS_URL".into(), self.urls()),
            ("NATS_CREDS".into(), self.seed(role).display().to_string()),
            ("NATS_CA".into(), self.ca().display().to_string()),
            ("SAFEGUARD_REPLICAS".into(), "3".into()),
        ]
    }

    /// The connection settings of `role`, for the library's own `bus::connect`.
    pub fn nats_args(&self, role: &str) -> platform::config::NatsArgs {
        platform::config::NatsArgs {
            creds: Some(self.seed(role)),
            ca: Some(self.ca()),
            replicas: 3,
            ..platform::config::NatsArgs::for_url(&self.urls())
        }
    }

    /// A client of `role`, and the errors the server sends it (permission
    /// violations among them), as text.
    pub async fn client(&self, role: &str) -> (async_nats::Client, tokio::sync::mpsc::UnboundedReceiver<String>) {
        self.client_with_inbox(role, "_INBOX").await
    }

    /// As [`SecureCluster::client`], with replies on `inbox` (a dashboard's
    /// are on `events::subjects::DASHBOARD_INBOX_PREFIX`).
    pub async fn client_with_inbox(
        &self,
        role: &str,
        inbox: &str,
    ) -> (async_nats::Client, tokio::sync::mpsc::UnboundedReceiver<String>) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        #[allow(clippy::expect_used)]
        let seed = std::fs::read_to_string(self.seed(role)).expect("seed");
        let addrs: Vec<async_nats::ServerAddr> =
            self.client_ports.iter().filter_map(|p| format!("tls://127.0.0.1:{p}").parse().ok()).collect();
        #[allow(clippy::expect_used)]
        let client = async_nats::ConnectOptions::with_nkey(seed.trim().to_owned())
            .require_tls(true)
            .add_root_certificates(self.ca())
            .custom_inbox_prefix(inbox)
            .event_callback(move |event| {
                let tx = tx.clone();
                async move {
                    if let async_nats::Event::ServerError(e) = event {
                        let _ = tx.send(e.to_string());
                    }
                }
            })
            .connect(addrs)
            .await
            .expect("connect to the secure cluster");
        (client, rx)
    }

    async fn wait_placeable(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Ok(client)) =
                tokio::time::timeout(Duration::from_secs(5), platform::bus::connect(&self.nats_args("operator"))).await
            {
                let js = async_nats::jetstream::new(client);
                let probe = js
                    .create_stream(async_nats::jetstream::stream::Config {
                        name: "HARNESS_PLACEMENT_PROBE".into(),
                        subjects: vec!["harness-probe.placement".into()],
                        num_replicas: 3,
                        ..Default::default()
                    })
                    .await;
                if probe.is_ok() {
                    let _ = js.delete_stream("HARNESS_PLACEMENT_PROBE").await;
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "the secure cluster was not ready within 30 s; n1's log:\n{}",
                log_tail(&self.log(0), 30)
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub fn log(&self, node: usize) -> PathBuf {
        self.dir.path().join(format!("n{}.log", node + 1))
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for SecureCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            let _ = node.kill();
            let _ = node.wait();
        }
    }
}
