//! Starting the projector (and `safeguard rebuild`): NATS, PostgreSQL,
//! children's keys for the identifier index, change notifications, the
//! audit consumer and the projector's `/healthz`, `/readyz` and `/metrics`.

use anyhow::Context as _;
use std::future::Future;
use std::sync::Arc;

/// Runs the projector until `shutdown` resolves, with change notifications
/// for dashboards and an HTTP listener for its health and metrics.
pub async fn run(
    nats: platform::config::NatsArgs,
    database: platform::config::DatabaseArgs,
    projector: platform::config::ProjectorArgs,
    master_key: std::path::PathBuf,
    public_key: std::path::PathBuf,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let signers = signers(&public_key).await?;
    let client = platform::bus::connect(&nats).await?;
    let js = async_nats::jetstream::new(client.clone());
    platform::bus::ensure_streams(&js, &nats.stream_settings()).await?;
    let keys = keys(&js, &nats, &master_key).await?;
    let pool = projections::database::connect(&database.database_url).await?;
    let partitions = projector.partitions.clone().unwrap_or_else(events::subjects::Partitions::all);
    let settings = projections::runtime::Settings {
        name: projector.name.clone(),
        batch: projector.batch,
        partitions: partitions.clone(),
        keys: Some(keys),
        kept: Default::default(),
        signers,
        health_interval: std::time::Duration::from_millis(projector.health_interval_ms.max(100)),
        stall_after: std::time::Duration::from_millis(projector.stall_after_ms),
    };
    let stats = Arc::new(projections::runtime::Stats::default());
    // The notifier's sweep reads the alerts from its first tick: the schema
    // must be there before it starts (the consumer migrates again, a no-op).
    projections::migrate(&pool, projections::LIVE_SCHEMA).await?;
    let notifier = projections::notify::Notifier::default();
    let notifying = tokio::spawn(notifier.clone().run(
        client.clone(),
        pool.clone(),
        std::time::Duration::from_millis(projector.notify_interval_ms),
        chrono::Utc::now,
    ));
    let listener = tokio::net::TcpListener::bind(&projector.listen)
        .await
        .with_context(|| format!("could not listen on {}", projector.listen))?;
    tracing::info!(addr = %listener.local_addr()?, "projector metrics listening");
    // The audit stream's consumer runs beside the event projector, stopping
    // with it: once per database, in the projector that holds partition 0.
    let audit_stats = Arc::new(projections::runtime::Stats::default());
    let router = router(projector.name, stats.clone(), audit_stats.clone(), pool.clone(), client);
    // Only /healthz, /readyz and /metrics: the default limits serve them.
    let health = tokio::spawn(platform::http::serve(
        listener,
        router,
        platform::http::Limits::default(),
        std::future::pending(),
    ));
    let (stop_audit, audit_stopped) = tokio::sync::oneshot::channel::<()>();
    let audit = partitions.contains(0).then(|| {
        tokio::spawn(projections::audit::run(pool.clone(), js.clone(), audit_stats, async {
            let _ = audit_stopped.await;
        }))
    });
    let outcome = projections::runtime::run_with(pool, js, settings, stats, Some(notifier), shutdown).await;
    let _ = stop_audit.send(());
    if let Some(audit) = audit {
        let _ = audit.await;
    }
    notifying.abort();
    health.abort();
    outcome?;
    Ok(())
}

/// The gateway's public keys, from its public key file: waited for a
/// while, since `safeguard serve` starts the gateway (which writes it) and
/// the projector together.
pub async fn signers(public_key: &std::path::Path) -> anyhow::Result<Arc<dyn events::chain::Signers>> {
    let file = platform::PublicKeyFile::open(public_key, std::time::Duration::from_secs(30)).await?;
    Ok(file)
}

/// Read access to children's data keys, for the NHS-number index.
pub async fn keys(
    js: &async_nats::jetstream::Context,
    nats: &platform::config::NatsArgs,
    master_key: &std::path::Path,
) -> anyhow::Result<Arc<dyn events::privacy::ChildKeys>> {
    let bucket = platform::bus::ensure_key_bucket(js, &nats.stream_settings()).await?;
    let master = platform::keystore::MasterKey::open(master_key, std::time::Duration::from_secs(30)).await?;
    let store = platform::keystore::KeyStore::watched(bucket, master.clone()).await?;
    Ok(Arc::new(platform::keystore::ProjectorKeys::new(store, &master)))
}

/// The projector's metrics, read from its counters at each scrape.
#[derive(Debug)]
struct ProjectorMetrics {
    name: String,
    stats: Arc<projections::runtime::Stats>,
    audit: Arc<projections::runtime::Stats>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, prometheus_client::encoding::EncodeLabelSet)]
struct ProjectorLabel {
    projector: String,
}

impl prometheus_client::collector::Collector for ProjectorMetrics {
    fn encode(&self, mut encoder: prometheus_client::encoding::DescriptorEncoder) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric as _;
        use prometheus_client::metrics::MetricType::{Counter, Gauge};
        use prometheus_client::metrics::counter::ConstCounter;
        use prometheus_client::metrics::gauge::ConstGauge;
        use std::sync::atomic::Ordering::Relaxed;
        let (s, label) = (&self.stats, ProjectorLabel { projector: self.name.clone() });
        let gauges: [(&str, &str, u64); 6] = [
            ("position", "Stream sequence applied up to", s.position.load(Relaxed)),
            ("stream_last", "The stream's last sequence when last looked at", s.stream_last.load(Relaxed)),
            (
                "lag",
                "Stream head minus applied position while an event of this projector waits, else 0 (an upper bound: the stream also holds id-index messages)",
                s.lag(),
            ),
            ("stalled", "1 while events wait and none has been applied for the stall interval", u64::from(s.stalled())),
            (
                "parked_subjects",
                "Subjects parked: their events wait until `safeguard parked retry`",
                s.parked.load(Relaxed),
            ),
            (
                "refolds_pending",
                "Children of this projector's partitions waiting to be folded again under their council's new settings",
                s.refolds_pending.load(Relaxed),
            ),
        ];
        for (name, help, value) in gauges {
            ConstGauge::new(value)
                .encode(encoder.encode_descriptor(name, help, None, Gauge)?.encode_family(&label)?)?;
        }
        let seconds: [(&str, &str, f64); 2] = [
            (
                "lag_seconds",
                "Age of the oldest event this projector has not applied (0 when none waits)",
                s.lag_seconds(),
            ),
            (
                "last_error_timestamp_seconds",
                "When the projector last failed or parked a subject (Unix seconds; 0 never)",
                s.last_error_at_ms.load(Relaxed) as f64 / 1000.0,
            ),
        ];
        for (name, help, value) in seconds {
            ConstGauge::new(value)
                .encode(encoder.encode_descriptor(name, help, None, Gauge)?.encode_family(&label)?)?;
        }
        let counters: [(&str, &str, u64); 7] = [
            ("events_applied", "Events applied since start", s.applied.load(Relaxed)),
            (
                "dead_letters",
                "Messages that are not well-formed, correctly hashed stored events, kept in dead_letter since start",
                s.dead_letters.load(Relaxed),
            ),
            ("parkings", "Subjects parked since start", s.parkings.load(Relaxed)),
            (
                "audit_dead_letters",
                "Audit messages kept in audit.dead_letter since start",
                self.audit.dead_letters.load(Relaxed),
            ),
            (
                "interruptions",
                "Sessions ended by a NATS or PostgreSQL failure since start (each retried)",
                s.interruptions.load(Relaxed),
            ),
            (
                "reconciliations",
                "Times the stream was found to no longer hold what it had delivered and the read models were made to follow it, since start",
                s.reconciliations.load(Relaxed),
            ),
            (
                "stream_deletions",
                "Events the read models hold at positions the event stream has deleted, counted at each check that finds them (the rows are kept), since start",
                s.deletions.load(Relaxed),
            ),
        ];
        for (name, help, value) in counters {
            ConstCounter::new(value)
                .encode(encoder.encode_descriptor(name, help, None, Counter)?.encode_family(&label)?)?;
        }
        Ok(())
    }
}

/// The projector's `/healthz`, `/readyz` and `/metrics`.
fn router(
    name: String,
    stats: Arc<projections::runtime::Stats>,
    audit: Arc<projections::runtime::Stats>,
    pool: projections::PgPool,
    client: async_nats::Client,
) -> axum::Router {
    use axum::routing::get;
    use std::sync::atomic::Ordering;
    let ready_stats = stats.clone();
    let mut registry = prometheus_client::registry::Registry::with_prefix("safeguard_projector");
    registry.register_collector(Box::new(ProjectorMetrics { name, stats, audit }));
    let registry = Arc::new(registry);
    let metrics = move || {
        let registry = registry.clone();
        async move {
            let mut out = String::new();
            let status = match prometheus_client::encoding::text::encode(&mut out, &registry) {
                Ok(()) => axum::http::StatusCode::OK,
                Err(_) => axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            };
            (
                status,
                [(axum::http::header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
                out,
            )
        }
    };
    let ready = move || {
        let pool = pool.clone();
        let client = client.clone();
        let stats = ready_stats.clone();
        async move {
            let nats = client.connection_state() == async_nats::connection::State::Connected;
            let pg = projections::database::reachable(&pool).await;
            let unavailable = axum::http::StatusCode::SERVICE_UNAVAILABLE;
            if !(nats && pg) {
                (unavailable, "NATS or PostgreSQL is not reachable\n".to_owned())
            } else if stats.stalled() {
                let lag = stats.lag();
                let seconds = stats.lag_seconds();
                (unavailable, format!("stalled: {lag} messages behind, the oldest waiting {seconds:.0} s\n"))
            } else {
                // Parked subjects are an alarm, not unreadiness: the rest of the stream is applied.
                match stats.parked.load(Ordering::Relaxed) {
                    0 => (axum::http::StatusCode::OK, "ready\n".to_owned()),
                    n => (axum::http::StatusCode::OK, format!("ready; {n} subjects parked (safeguard parked)\n")),
                }
            }
        }
    };
    platform::telemetry::traced(
        axum::Router::new()
            .route("/healthz", get(|| async { "ok\n" }))
            .route("/readyz", get(ready))
            .route("/metrics", get(metrics)),
    )
}

/// A rebuild's share: its projector name and partitions (all of them when
/// one process rebuilds alone).
#[derive(Debug)]
pub struct Share {
    pub name: String,
    pub partitions: events::subjects::Partitions,
}

/// `safeguard rebuild`: builds the read models (of a share's partitions)
/// afresh beside the live ones with a progress bar on stderr, then
/// switches over (or leaves that to the share finishing last).
pub async fn rebuild(
    nats: platform::config::NatsArgs,
    database: platform::config::DatabaseArgs,
    batch: usize,
    share: Share,
    master_key: std::path::PathBuf,
    public_key: std::path::PathBuf,
) -> anyhow::Result<()> {
    let signers = signers(&public_key).await?;
    let client = platform::bus::connect(&nats).await?;
    let js = async_nats::jetstream::new(client);
    platform::bus::ensure_streams(&js, &nats.stream_settings()).await?;
    let keys = keys(&js, &nats, &master_key).await?;
    let options = projections::database::options(&database.database_url).await?;
    let settings = projections::runtime::Settings {
        name: share.name,
        partitions: share.partitions.clone(),
        batch: batch.max(1),
        keys: Some(keys),
        ..projections::runtime::Settings::new(signers)
    };
    let stats = Arc::new(projections::runtime::Stats::default());
    let progress = tokio::spawn(progress_bar(stats.clone()));
    let report = projections::rebuild::rebuild(options, js, settings, stats).await;
    progress.abort();
    eprintln!();
    let report = report?;
    let rate = report.events as f64 / report.elapsed.as_secs_f64().max(1e-9);
    let of = if share.partitions.is_all() { String::new() } else { format!(" of partitions {}", share.partitions) };
    // The process's own high-water mark, so an operator sizing a machine
    // for a national rebuild reads it off the run that just finished.
    let peak = peak_resident_mib().map_or(String::new(), |mib| format!(", peak resident memory {mib:.0} MiB"));
    eprintln!(
        "rebuilt {} events{of} up to stream position {} in {:.1} s ({rate:.0} events/s{peak}); {}",
        report.events,
        report.position,
        report.elapsed.as_secs_f64(),
        match (report.switched, report.replaced) {
            (false, _) => "another share of the rebuild switched the read models over",
            (true, true) => "the previous read models are kept in schema projection_previous until the next rebuild",
            (true, false) => "there were no live read models to replace",
        }
    );
    Ok(())
}

/// This process's peak resident set (VmHWM), where the kernel reports it.
fn peak_resident_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: f64 = status.lines().find(|l| l.starts_with("VmHWM:"))?.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// Draws `[#####.....]  45%  123456/270000  5432/s` on stderr until aborted.
async fn progress_bar(stats: Arc<projections::runtime::Stats>) {
    use std::io::Write as _;
    use std::sync::atomic::Ordering;
    let started = std::time::Instant::now();
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(250));
    loop {
        tick.tick().await;
        let at = stats.position.load(Ordering::Relaxed);
        let end = stats.stream_last.load(Ordering::Relaxed).max(at).max(1);
        let filled = (at * 30 / end) as usize;
        let rate = stats.applied.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64().max(1e-9);
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\r[{}{}] {:>3}%  {at}/{end} stream position  {rate:.0} events/s ",
            "#".repeat(filled),
            ".".repeat(30 - filled.min(30)),
            at * 100 / end
        );
        let _ = err.flush();
    }
}
