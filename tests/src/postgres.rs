//! Isolated PostgreSQL for tests.
//!
//! [`TestDatabase`] creates a uniquely named database on the shared server
//! (`SAFEGUARD_TEST_DATABASE_URL`, default the local server's `postgres`
//! database) and drops it, connections and all, when the test ends.
//!
//! [`PgCluster`] runs a private server made with `initdb` in a temporary
//! directory on a free port, for tests that stop, kill or restart
//! PostgreSQL. As root, the server runs as the `postgres` user, because
//! PostgreSQL refuses to run as root.

use crate::{free_port, log_tail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::{Pid, Uid, User, chown};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgConnection, PgPool};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::str::FromStr;
use std::time::{Duration, Instant};
use tempfile::TempDir;

const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

fn admin_url() -> String {
    std::env::var("SAFEGUARD_TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_ADMIN_URL.to_owned())
}

/// A database of its own for one test on the shared server.
#[derive(Debug)]
pub struct TestDatabase {
    name: String,
    url: String,
    admin_url: String,
}

impl TestDatabase {
    /// Creates an empty database named `sg_test_<uuid>`.
    pub async fn create() -> Self {
        Self::create_on(&admin_url()).await
    }

    /// Creates one on the server behind `admin_url` (for example a [`PgCluster`]'s).
    pub async fn create_on(admin_url: &str) -> Self {
        let name = format!("sg_test_{}", uuid::Uuid::new_v4().simple());
        let mut admin = connect_admin(admin_url).await;
        #[allow(clippy::expect_used)]
        sqlx::query(&format!("create database {name}")).execute(&mut admin).await.expect("create the test database");
        let _ = admin.close().await;
        #[allow(clippy::expect_used)]
        let options = PgConnectOptions::from_str(admin_url).expect("admin url").database(&name);
        Self { url: options.to_url_lossy().to_string(), name, admin_url: admin_url.to_owned() }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// A URL for `DATABASE_URL`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A small pool on this database.
    /// A pool whose tables resolve in the live read-model schema, as the
    /// projector's and the query role's do.
    pub async fn pool(&self) -> PgPool {
        let pool = self.pool_in(projections::LIVE_SCHEMA).await;
        // As every role does before it uses the database.
        #[allow(clippy::expect_used)]
        sqlx::query(&format!("create schema if not exists {}", projections::LIVE_SCHEMA))
            .execute(&pool)
            .await
            .expect("create the read-model schema");
        pool
    }

    /// A pool whose tables resolve in `schema`.
    pub async fn pool_in(&self, schema: &str) -> PgPool {
        #[allow(clippy::expect_used)]
        let options = PgConnectOptions::from_str(&self.url).expect("test database url");
        #[allow(clippy::expect_used)]
        PgPoolOptions::new()
            .max_connections(4)
            .connect_with(projections::in_schema(options, schema))
            .await
            .expect("connect to the test database")
    }
}

async fn connect_admin(url: &str) -> PgConnection {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match PgConnection::connect(url).await {
            Ok(c) => return c,
            Err(e) if Instant::now() > deadline => {
                panic!("cannot reach PostgreSQL for tests ({e}); start it or set SAFEGUARD_TEST_DATABASE_URL")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // Drop runs outside any async context we can rely on (the test's
        // runtime may be shutting down), so the drop happens on a thread of
        // its own with a runtime of its own.
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        let dropper = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
                return;
            };
            rt.block_on(async move {
                if let Ok(mut admin) = PgConnection::connect(&admin_url).await {
                    let _ =
                        sqlx::query(&format!("drop database if exists {name} with (force)")).execute(&mut admin).await;
                    let _ = admin.close().await;
                }
            });
        });
        let _ = dropper.join();
    }
}

/// A private PostgreSQL server, owned by one test.
#[derive(Debug)]
pub struct PgCluster {
    dir: TempDir,
    port: u16,
    bin: PathBuf,
}

impl PgCluster {
    /// `initdb`s a new cluster and starts it.
    pub async fn start() -> Self {
        let bin = pg_bindir();
        #[allow(clippy::expect_used)]
        let dir = tempfile::Builder::new().prefix("sg-pg-").tempdir().expect("temporary directory");
        if Uid::effective().is_root() {
            #[allow(clippy::expect_used)]
            let postgres =
                User::from_name("postgres").ok().flatten().expect("a postgres system user (install postgresql)");
            #[allow(clippy::expect_used)]
            chown(dir.path(), Some(postgres.uid), Some(postgres.gid)).expect("chown the cluster directory");
        }
        let cluster = Self { port: free_port(), dir, bin };
        let data = cluster.data_dir();
        cluster.run_checked(
            "initdb",
            &[
                "-D",
                path_str(&data),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
                "--no-sync",
            ],
        );
        cluster.start_server();
        cluster.wait_ready().await;
        cluster
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The admin URL of this server (its `postgres` database).
    pub fn admin_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// A URL for a database on this server, which [`PgCluster::create_database`] makes.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    pub async fn create_database(&self, database: &str) -> String {
        let mut admin = connect_admin(&self.admin_url()).await;
        #[allow(clippy::expect_used)]
        sqlx::query(&format!("create database {database}")).execute(&mut admin).await.expect("create database");
        let _ = admin.close().await;
        self.url(database)
    }

    fn start_server(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=on -c max_connections=50",
            self.port,
            path_str(self.dir.path())
        );
        let data = self.data_dir();
        let log = self.log_path();
        let out = self
            .run("pg_ctl", &["-D", path_str(&data), "-l", path_str(&log), "-o", &options, "-w", "-t", "60", "start"]);
        assert!(
            out.status.success(),
            "pg_ctl start failed: {}\nlog tail:\n{}",
            stderr(&out),
            log_tail(&self.log_path(), 30)
        );
    }

    async fn wait_ready(&self) {
        drop(connect_admin(&self.admin_url()).await);
    }

    /// A clean shutdown (`pg_ctl stop -m fast`).
    pub fn stop(&self) {
        let data = self.data_dir();
        let _ = self.run("pg_ctl", &["-D", path_str(&data), "-m", "fast", "-w", "stop"]);
    }

    /// SIGKILL to the postmaster: what a power cut looks like to PostgreSQL.
    pub fn kill(&self) {
        if let Some(pid) = self.postmaster_pid() {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            let deadline = Instant::now() + Duration::from_secs(10);
            while kill(Pid::from_raw(pid), None).is_ok() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            // Children exit once the postmaster is gone; the next start
            // waits for them through pg_ctl.
        }
    }

    /// Starts a stopped or killed server again (crash recovery runs as needed).
    pub async fn restart(&self) {
        self.stop();
        let _ = std::fs::remove_file(self.dir.path().join(format!(".s.PGSQL.{}", self.port)));
        self.start_server();
        self.wait_ready().await;
    }

    /// Starts the server after [`PgCluster::kill`] or [`PgCluster::stop`].
    pub async fn start_again(&self) {
        self.start_server();
        self.wait_ready().await;
    }

    fn postmaster_pid(&self) -> Option<i32> {
        let text = std::fs::read_to_string(self.data_dir().join("postmaster.pid")).ok()?;
        text.lines().next()?.trim().parse().ok()
    }

    fn run(&self, program: &str, args: &[&str]) -> Output {
        let path = self.bin.join(program);
        let mut command = if Uid::effective().is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&path);
            c
        } else {
            Command::new(&path)
        };
        #[allow(clippy::expect_used)]
        command.args(args).current_dir(self.dir.path()).output().expect("run a PostgreSQL program")
    }

    fn run_checked(&self, program: &str, args: &[&str]) {
        let out = self.run(program, args);
        assert!(out.status.success(), "{program} failed: {}", stderr(&out));
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let data = self.data_dir();
        let _ = self.run("pg_ctl", &["-D", path_str(&data), "-m", "immediate", "-w", "stop"]);
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap_or_default()
}

/// Where `initdb` and `pg_ctl` live: `PG_BINDIR`, else `pg_config --bindir`,
/// else the newest `/usr/lib/postgresql/*/bin`.
pub fn pg_bindir() -> PathBuf {
    if let Some(dir) = std::env::var_os("PG_BINDIR") {
        return PathBuf::from(dir);
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if dir.join("initdb").exists() {
            return dir;
        }
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, p): &(u32, PathBuf)| p.join("initdb").exists())
        .collect();
    found.sort();
    found
        .pop()
        .map(|(_, p)| p)
        .unwrap_or_else(|| panic!("no PostgreSQL server binaries found: install postgresql or set PG_BINDIR"))
}
