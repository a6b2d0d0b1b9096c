//! Running a projector in-process until it has applied the stream up to a
//! position, for tests and measurements.

use projections::runtime::{Settings, Stats};
use sqlx::PgPool;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// The public keys of the gateway whose key files live beside
/// `master_key` (as a test gateway keeps them), read again when they change.
pub async fn signers_beside(master_key: &std::path::Path) -> Arc<dyn events::chain::Signers> {
    #[allow(clippy::expect_used)]
    platform::PublicKeyFile::open(&master_key.with_file_name("signing.key.pub"), Duration::from_secs(5))
        .await
        .expect("the gateway's public keys")
}

/// Runs a projector with `settings` on `pool` until its position reaches
/// `target`, stops it cleanly, and returns how long the applying took.
pub async fn run_until(nats_url: &str, pool: &PgPool, settings: Settings, target: u64) -> Duration {
    #[allow(clippy::expect_used)]
    let client = crate::connect(nats_url).await;
    let stats = Arc::new(Stats::default());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let started = Instant::now();
    let task = tokio::spawn(projections::runtime::run(
        pool.clone(),
        async_nats::jetstream::new(client),
        settings,
        stats.clone(),
        async move {
            let _ = stop_rx.await;
        },
    ));
    let deadline = Instant::now() + Duration::from_secs(300);
    while !settled(&stats, target) {
        assert!(!task.is_finished(), "the projector stopped early");
        assert!(Instant::now() < deadline, "the projector did not reach {target}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let elapsed = started.elapsed();
    let _ = stop_tx.send(());
    #[allow(clippy::expect_used)]
    task.await.expect("join the projector").expect("the projector ran cleanly");
    elapsed
}

/// Whether a projector has applied the stream up to `target` and folded
/// again every child a council's new settings queued.
pub fn settled(stats: &Stats, target: u64) -> bool {
    stats.position.load(Ordering::Relaxed) >= target && stats.refolds_pending.load(Ordering::Relaxed) == 0
}

/// A clean projection of the stream up to `target` in a new database, as a
/// rebuild would make it (with the children's keys under `master_key`), to
/// compare live read models with.
pub async fn clean_projection(
    nats_url: &str,
    master_key: &std::path::Path,
    target: u64,
) -> (crate::TestDatabase, PgPool) {
    let db = crate::TestDatabase::create().await;
    let pool = db.pool().await;
    let client = crate::connect(nats_url).await;
    let nats = platform::config::NatsArgs::for_url(nats_url);
    #[allow(clippy::expect_used)]
    let keys =
        safeguard::roles::projector::keys(&async_nats::jetstream::new(client), &nats, master_key).await.expect("keys");
    let settings =
        Settings { name: "clean".into(), keys: Some(keys), ..Settings::new(signers_beside(master_key).await) };
    run_until(nats_url, &pool, settings, target).await;
    (db, pool)
}

/// A `safeguard serve --role projector` process, killed when dropped: it
/// applies at most `batch` messages per transaction, serves its metrics on
/// `listen`, and takes `extra` arguments (a name, partitions).
pub fn spawn_process(
    nats_url: &str,
    database_url: &str,
    master_key: &std::path::Path,
    batch: usize,
    listen: &str,
    extra: &[&str],
) -> crate::Process {
    #[allow(clippy::expect_used)]
    let child = std::process::Command::new(crate::safeguard_binary())
        .args(["serve", "--role", "projector"])
        .args(extra)
        .env("NATS_URL", nats_url)
        .env("DATABASE_URL", database_url)
        .env("SAFEGUARD_PROJECTOR_BATCH", batch.to_string())
        .env("SAFEGUARD_MASTER_KEY", master_key)
        .env("SAFEGUARD_PUBLIC_KEY", master_key.with_file_name("signing.key.pub"))
        .env("SAFEGUARD_PROJECTOR_LISTEN", listen)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start a projector process");
    crate::Process(child)
}

/// The furthest position any projector has stored in `pool`'s database (0
/// before the first batch, before the tables exist, and while children
/// wait to be folded again under their council's new settings: a wait for
/// a position waits for them too).
pub async fn stored_position(pool: &PgPool) -> u64 {
    sqlx::query_scalar::<_, i64>(
        "select case when exists (select from refold_pending) then 0
                     else coalesce((select max(stream_seq) from projector_position), 0) end",
    )
    .fetch_one(pool)
    .await
    .unwrap_or(0) as u64
}

/// A projector running in the background, as `serve --role projector`
/// runs it (with change notifications and the audit consumer), until dropped.
#[derive(Debug)]
pub struct LiveProjector {
    pub stats: Arc<Stats>,
    /// The audit consumer's position in the audit stream.
    pub audit_stats: Arc<Stats>,
    task: tokio::task::JoinHandle<Result<(), projections::runtime::ProjectorError>>,
    audit: tokio::task::JoinHandle<Result<(), projections::runtime::ProjectorError>>,
    notifier: tokio::task::JoinHandle<()>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    nats_url: String,
    pool: PgPool,
    master_key: Option<std::path::PathBuf>,
}

impl LiveProjector {
    /// A projector taking `gateway`'s events, without access to children's
    /// keys (no NHS-number index).
    pub async fn start(gateway: &crate::gateway::TestGateway, nats_url: &str, pool: &PgPool) -> Self {
        Self::start_with(gateway, nats_url, pool, None).await
    }

    /// A projector that reads children's keys with `gateway`'s master key,
    /// as `serve` runs it.
    pub async fn start_for(gateway: &crate::gateway::TestGateway, nats_url: &str, pool: &PgPool) -> Self {
        Self::start_with(gateway, nats_url, pool, Some(gateway.path("master.key"))).await
    }

    async fn start_with(
        gateway: &crate::gateway::TestGateway,
        nats_url: &str,
        pool: &PgPool,
        master_key: Option<std::path::PathBuf>,
    ) -> Self {
        #[allow(clippy::expect_used)]
        let client = crate::connect(nats_url).await;
        let mut settings = Settings::new(signers_beside(&gateway.path("master.key")).await);
        // Its watcher looks often, so a test waiting for a look waits little.
        settings.health_interval = Duration::from_secs(1);
        if let Some(path) = &master_key {
            let js = async_nats::jetstream::new(client.clone());
            let nats = platform::config::NatsArgs::for_url(nats_url);
            #[allow(clippy::expect_used)]
            let keys = safeguard::roles::projector::keys(&js, &nats, path).await.expect("the key store");
            settings.keys = Some(keys);
        }
        let stats = Arc::new(Stats::default());
        let notifier = projections::notify::Notifier::default();
        let notifying = tokio::spawn(notifier.clone().run(
            client.clone(),
            pool.clone(),
            Duration::from_millis(100),
            chrono::Utc::now,
        ));
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let audit_stats = Arc::new(Stats::default());
        let audit = tokio::spawn(projections::audit::run(
            pool.clone(),
            async_nats::jetstream::new(client.clone()),
            audit_stats.clone(),
            std::future::pending(),
        ));
        let task = tokio::spawn(projections::runtime::run_with(
            pool.clone(),
            async_nats::jetstream::new(client),
            settings,
            stats.clone(),
            Some(notifier),
            async move {
                let _ = stop_rx.await;
            },
        ));
        Self {
            stats,
            audit_stats,
            task,
            audit,
            notifier: notifying,
            stop: Some(stop_tx),
            nats_url: nats_url.to_owned(),
            pool: pool.clone(),
            master_key,
        }
    }

    /// Stops it as a shutdown does and starts it again (a new process, as
    /// far as the projector can tell: it keeps nothing in memory), with
    /// `gateway`'s keys. Its counters start again from zero.
    pub async fn restart(&mut self, gateway: &crate::gateway::TestGateway) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
        let (nats_url, pool, master_key) = (self.nats_url.clone(), self.pool.clone(), self.master_key.clone());
        // The old one's notifier and audit consumer go with it (Drop).
        *self = Self::start_with(gateway, &nats_url, &pool, master_key).await;
    }

    /// How many times a NATS or PostgreSQL failure has interrupted it.
    pub fn interruptions(&self) -> u64 {
        self.stats.interruptions.load(Ordering::Relaxed)
    }

    /// Waits until the audit consumer has applied everything the audit stream holds now.
    pub async fn wait_for_audit(&self) {
        #[allow(clippy::expect_used)]
        let client = crate::connect(&self.nats_url).await;
        let js = async_nats::jetstream::new(client);
        #[allow(clippy::expect_used)]
        let mut stream = js.get_stream(projections::audit::AUDIT_STREAM).await.expect("the audit stream");
        #[allow(clippy::expect_used)]
        let target = stream.info().await.expect("audit stream info").state.last_sequence;
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.audit_stats.position.load(Ordering::Relaxed) < target {
            assert!(!self.audit.is_finished(), "the audit consumer stopped early");
            assert!(Instant::now() < deadline, "the audit consumer did not reach {target}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits until the projector has applied the stream up to `target`
    /// without a single interruption or parked subject: the read side must
    /// take any history the gateway accepts, and one failure (a batch
    /// refused by PostgreSQL, a fold that failed) is reported at once, not
    /// waited out.
    pub async fn wait_clean(&self, target: u64) {
        let deadline = Instant::now() + Duration::from_secs(120);
        while !settled(&self.stats, target) {
            assert_eq!(self.interruptions(), 0, "the projector was interrupted before reaching {target}");
            assert_eq!(
                self.stats.parkings.load(Ordering::Relaxed),
                0,
                "the projector parked a subject before {target}"
            );
            assert!(!self.task.is_finished(), "the projector stopped early");
            assert!(Instant::now() < deadline, "the projector did not reach {target}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(self.interruptions(), 0, "the projector was interrupted on the way to {target}");
        assert_eq!(
            self.stats.parkings.load(Ordering::Relaxed),
            0,
            "the projector parked a subject on the way to {target}"
        );
    }

    /// Waits until the projector has applied the stream up to `target`.
    /// Waits until the projector has applied something, so a fault that
    /// follows lands on a projector that is consuming.
    pub async fn wait_applying(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.stats.position.load(std::sync::atomic::Ordering::Relaxed) == 0 {
            assert!(!self.task.is_finished(), "the projector stopped early");
            assert!(Instant::now() < deadline, "the projector applied nothing for 60 s");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits until the watcher has looked at the stream twice more (so an
    /// election before this call has been seen) and the projector has
    /// read back whatever that asked it to check.
    pub async fn wait_checked(&self) {
        let looks = || self.stats.looks.load(std::sync::atomic::Ordering::Relaxed);
        let wanted = looks() + 2;
        let deadline = Instant::now() + Duration::from_secs(60);
        while looks() < wanted || self.stats.recheck_pending() {
            assert!(!self.task.is_finished(), "the projector stopped early");
            assert!(
                Instant::now() < deadline,
                "the projector's watcher did not look, or its check did not end, in 60 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn wait_for(&self, target: u64) {
        let deadline = Instant::now() + Duration::from_secs(120);
        while !settled(&self.stats, target) {
            assert!(!self.task.is_finished(), "the projector stopped early");
            assert!(Instant::now() < deadline, "the projector did not reach {target}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for LiveProjector {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.notifier.abort();
        self.audit.abort();
    }
}
