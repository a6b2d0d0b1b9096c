//! The three roles as separate `safeguard serve` processes, as production
//! runs them, for the benchmark and the load test: they talk to the roles
//! over HTTP only and read each process's peak memory.

use crate::free_port;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// The release build of `safeguard`, which `ops/bench` and `ops/load` build first.
pub fn release_binary() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::workspace_root().join("target"));
    let binary = target.join("release").join("safeguard");
    assert!(binary.exists(), "{} is missing: cargo build --release -p safeguard", binary.display());
    binary
}

/// A running gateway, projector and query role, each its own process.
#[derive(Debug)]
pub struct Deployment {
    dir: TempDir,
    binary: PathBuf,
    nats_url: String,
    database_url: String,
    gateway: String,
    query: String,
    projector: String,
    env: Vec<(String, String)>,
    roles: Vec<(&'static str, Child)>,
}

impl Deployment {
    /// Starts the gateway only; [`Deployment::start_readers`] adds the projector and the query role.
    pub async fn start(binary: &Path, nats_url: &str, database_url: &str) -> Self {
        Self::start_with(binary, nats_url, database_url, &[]).await
    }

    /// As [`Deployment::start`], with extra environment for every role (`SAFEGUARD_REPLICAS=3`, say).
    pub async fn start_with(binary: &Path, nats_url: &str, database_url: &str, env: &[(&str, &str)]) -> Self {
        #[allow(clippy::expect_used)]
        let dir = tempfile::Builder::new().prefix("sg-deploy-").tempdir().expect("temporary directory");
        #[allow(clippy::expect_used)]
        std::fs::write(dir.path().join("principals.toml"), crate::gateway::principals_toml()).expect("principals");
        let mut deployment = Self {
            dir,
            binary: binary.to_owned(),
            nats_url: nats_url.to_owned(),
            database_url: database_url.to_owned(),
            gateway: format!("127.0.0.1:{}", free_port()),
            query: format!("127.0.0.1:{}", free_port()),
            projector: format!("127.0.0.1:{}", free_port()),
            env: env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
            roles: Vec::new(),
        };
        deployment.spawn("gateway").await;
        deployment
    }

    /// Starts the projector and the query role.
    pub async fn start_readers(&mut self) {
        self.spawn("projector").await;
        self.spawn("query").await;
    }

    async fn spawn(&mut self, role: &'static str) {
        let path = |f: &str| self.dir.path().join(f);
        #[allow(clippy::expect_used)]
        let child = Command::new(&self.binary)
            .args(["serve", "--role", role])
            .env("NATS_URL", &self.nats_url)
            .env("DATABASE_URL", &self.database_url)
            .env("SAFEGUARD_PRINCIPALS", path("principals.toml"))
            .env("SAFEGUARD_SIGNING_KEY", path("signing.key"))
            .env("SAFEGUARD_MASTER_KEY", path("master.key"))
            .env("SAFEGUARD_SESSION_KEY", path("session.key"))
            .env("SAFEGUARD_EXPORT_KEY", path("export.key"))
            .env("SAFEGUARD_CREATE_KEYS", "1")
            .env("SAFEGUARD_PUBLIC_KEY", path("signing.key.pub"))
            .env("SAFEGUARD_LISTEN", &self.gateway)
            .env("SAFEGUARD_QUERY_LISTEN", &self.query)
            .env("SAFEGUARD_PROJECTOR_LISTEN", &self.projector)
            .env("RUST_LOG", "warn")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(path(&format!("{role}.log"))).map(Stdio::from).unwrap_or(Stdio::null()))
            .spawn()
            .expect("start a safeguard role");
        self.roles.push((role, child));
        let address = match role {
            "gateway" => &self.gateway,
            "query" => &self.query,
            _ => &self.projector,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        let client = reqwest::Client::new();
        loop {
            if let Ok(r) = client.get(format!("http://{address}/readyz")).send().await
                && r.status().is_success()
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the {role} did not become ready: {}",
                std::fs::read_to_string(path(&format!("{role}.log"))).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn gateway_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.gateway)
    }

    pub fn query_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.query)
    }

    pub fn projector_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.projector)
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    /// A release `safeguard rebuild` share of `partitions` under `name`
    /// (batches of 5,000), with this deployment's keys and its stderr
    /// piped, not yet started.
    pub fn rebuild_share(
        &self,
        nats_url: &str,
        database_url: &str,
        partitions: &str,
        name: &str,
    ) -> std::process::Command {
        let mut command = std::process::Command::new(release_binary());
        command
            .args(["rebuild", "--all", "--batch", "5000", "--partitions", partitions, "--projector-name", name])
            .env("NATS_URL", nats_url)
            .env("DATABASE_URL", database_url)
            .env("SAFEGUARD_MASTER_KEY", self.path("master.key"))
            .env("SAFEGUARD_PUBLIC_KEY", self.path("signing.key.pub"))
            .env("RUST_LOG", "warn")
            .stderr(std::process::Stdio::piped());
        command
    }

    /// Waits (up to 15 minutes) until the projector has applied `sequence`
    /// and has no child left to fold again under a council's new settings,
    /// so a phase measured after this sees no drain under way.
    pub async fn wait_projected(&self, sequence: u64) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(900);
        loop {
            #[allow(clippy::expect_used)]
            let text = reqwest::get(self.projector_url("/metrics"))
                .await
                .expect("the projector answers")
                .text()
                .await
                .expect("its metrics");
            let gauge = |name: &str| {
                text.lines()
                    .find(|l| l.starts_with(name))
                    .and_then(|l| l.rsplit(' ').next())
                    .and_then(|v| v.parse::<f64>().ok())
                    .unwrap_or(0.0)
            };
            if gauge("safeguard_projector_position{") >= sequence as f64
                && gauge("safeguard_projector_refolds_pending") == 0.0
            {
                return;
            }
            assert!(std::time::Instant::now() < deadline, "the projector did not reach {sequence}: {text}");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// The process id of a running role.
    pub fn pid(&self, role: &str) -> Option<u32> {
        self.roles.iter().find(|(r, _)| *r == role).map(|(_, child)| child.id())
    }

    /// The peak resident memory (VmHWM) of each role's process so far, in KiB.
    pub fn peak_memory_kib(&self) -> Vec<(&'static str, u64)> {
        self.roles.iter().map(|(role, child)| (*role, peak_rss_kib(child.id()).unwrap_or(0))).collect()
    }
}

/// How many events a finished `safeguard rebuild` says it applied ("rebuilt N events ...").
pub fn rebuilt_events(stderr: &str) -> Option<u64> {
    stderr.split("rebuilt ").nth(1)?.split(' ').next()?.parse().ok()
}

/// The peak resident memory a finished `safeguard rebuild` reports for itself, in MiB.
pub fn rebuilt_peak_mib(stderr: &str) -> Option<f64> {
    stderr.split("peak resident memory ").nth(1)?.split(' ').next()?.parse().ok()
}

/// VmHWM of a process, from `/proc`.
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

impl Drop for Deployment {
    fn drop(&mut self) {
        for (_, child) in &mut self.roles {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
