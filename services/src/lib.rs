//! The `safeguard` binary's library: configuration, roles and commands.
//!
//! # Layout
//!
//! - [`config`]: flags and environment variables (CONTRACT.md "Configuration").
//! - [`bus`]: the NATS connection, version check, streams and key bucket.
//! - [`principals`]: `principals.toml`, tokens, roles and scopes.
//! - [`keystore`]: children's data keys, wrapped by the master key.
//! - [`gateway`]: the gateway role (`POST /v1/events`).
//! - [`query`]: the query role (chronologies, lookups, caseloads, indicators).
//! - [`token`]: `safeguard token`.
//! - [`returns_cmd`]: `safeguard return`, through the query API.
//! - [`import`]: `safeguard import`, bulk NDJSON through the gateway.
//! - [`seed`]: `safeguard seed`.
//! - [`chronology_cmd`]: `safeguard chronology`, through the query API.
//! - [`audit_cmd`]: `safeguard verify` and `safeguard erase`.
//! - [`parked_cmd`]: `safeguard parked` and `safeguard parked retry`.
//! - [`verify`]: chains, signatures, the Postgres copy and checkpoints (`safeguard verify`, `GET /v1/verify`).
//!
//! `main.rs` only parses the command line and calls in here.

pub mod audit_cmd;
pub mod backup;
pub mod bus;
pub mod chronology_cmd;
pub mod config;
pub mod gateway;
pub mod import;
pub mod keystore;
pub mod parked_cmd;
pub mod principals;
pub mod query;
pub mod returns_cmd;
pub mod seed;
pub mod token;
pub mod verify;

use anyhow::Context as _;
use ed25519_dalek::SigningKey;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;

/// Resolves on SIGINT or SIGTERM: the one shutdown signal every role uses.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}

/// Reads the gateway's Ed25519 signing key, creating it (mode 0600) if missing.
pub fn load_or_create_signing_key(path: &Path) -> anyhow::Result<SigningKey> {
    if !path.exists() {
        let mut seed = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut seed);
        let key = events::chain::signing_key_from_seed(seed);
        keystore::write_secret(path, &events::chain::encode_signing_key(&key))
            .with_context(|| format!("could not create the signing key {}", path.display()))?;
        tracing::info!(path = %path.display(), "created a new signing key");
    }
    let text = std::fs::read_to_string(path).with_context(|| format!("could not read {}", path.display()))?;
    events::chain::decode_signing_key(&text).map_err(|m| anyhow::anyhow!("{}: {m}", path.display()))
}

/// Connects to the read-model database, creating it if it does not exist.
/// Table names resolve in the live read-model schema.
pub async fn connect_database(url: &str) -> anyhow::Result<sqlx::PgPool> {
    let options = database_options(url).await?;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(8)
        // With PostgreSQL gone, a role should know within seconds (the
        // projector backs off and retries, a read answers 503), not after
        // sqlx's default of 30 s.
        .acquire_timeout(std::time::Duration::from_secs(5))
        .connect_with(projections::in_schema(options, projections::LIVE_SCHEMA))
        .await
        .context("could not connect to the read-model database")?;
    Ok(pool)
}

/// The options of DATABASE_URL, after creating its database if it does not exist.
pub async fn database_options(url: &str) -> anyhow::Result<sqlx::postgres::PgConnectOptions> {
    use sqlx::ConnectOptions as _;
    use std::str::FromStr as _;
    let options = sqlx::postgres::PgConnectOptions::from_str(url).context("DATABASE_URL is not a PostgreSQL URL")?;
    let database = options.get_database().unwrap_or("safeguard").to_owned();
    if !database.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        anyhow::bail!("the database name in DATABASE_URL must be letters, digits and _");
    }
    let admin = options.clone().database("postgres");
    let mut conn = admin.connect().await.context("could not reach PostgreSQL at DATABASE_URL")?;
    let exists: bool = sqlx::query_scalar("select exists (select from pg_database where datname = $1)")
        .bind(&database)
        .fetch_one(&mut conn)
        .await?;
    if !exists {
        // Two roles starting at once may both try; the loser's error is harmless.
        let _ = sqlx::query(&format!("create database {database}")).execute(&mut conn).await;
        tracing::info!(database = %database, "created the read-model database");
    }
    Ok(options)
}

/// Runs the projector until `shutdown` resolves, with change notifications
/// for dashboards and an HTTP listener for its health and metrics.
pub async fn run_projector(
    nats: config::NatsArgs,
    database: config::DatabaseArgs,
    projector: config::ProjectorArgs,
    master_key: std::path::PathBuf,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let client = bus::connect(&nats).await?;
    let js = async_nats::jetstream::new(client.clone());
    bus::ensure_streams(&js, &nats.stream_settings()).await?;
    let keys = projector_keys(&js, &nats, &master_key).await?;
    let pool = connect_database(&database.database_url).await?;
    let partitions = projector.partitions.clone().unwrap_or_else(events::subjects::Partitions::all);
    let settings = projections::runtime::Settings {
        name: projector.name.clone(),
        batch: projector.batch,
        filters: partitions.filters(),
        keys: Some(keys),
        health_interval: std::time::Duration::from_millis(projector.health_interval_ms.max(100)),
        stall_after: std::time::Duration::from_millis(projector.stall_after_ms),
    };
    let stats = Arc::new(projections::runtime::Stats::default());
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
    let router = projector_router(projector.name, stats.clone(), audit_stats.clone(), pool.clone(), client);
    let health = tokio::spawn(axum::serve(listener, router).into_future());
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

/// Read access to children's data keys, for the NHS-number index.
pub async fn projector_keys(
    js: &async_nats::jetstream::Context,
    nats: &config::NatsArgs,
    master_key: &std::path::Path,
) -> anyhow::Result<Arc<dyn projections::identifiers::ChildKeys>> {
    let bucket = bus::ensure_key_bucket(js, &nats.stream_settings()).await?;
    let master = keystore::MasterKey::load_or_create(master_key)?;
    let store = keystore::KeyStore::watched(bucket, master.clone()).await?;
    Ok(Arc::new(keystore::ProjectorKeys::new(store, &master)))
}

/// The projector's `/healthz`, `/readyz` and `/metrics`.
fn projector_router(
    name: String,
    stats: Arc<projections::runtime::Stats>,
    audit: Arc<projections::runtime::Stats>,
    pool: sqlx::PgPool,
    client: async_nats::Client,
) -> axum::Router {
    use axum::routing::get;
    use std::sync::atomic::Ordering;
    let ready_stats = stats.clone();
    let metrics = move || {
        let s = stats.clone();
        let name = name.clone();
        async move {
            let label = format!("{{projector=\"{name}\"}}");
            let mut out = String::new();
            let mut gauge = |metric: &str, help: &str, kind: &str, value: u64| {
                let suffix = if kind == "counter" { "_total" } else { "" };
                out.push_str(&format!(
                    "# HELP safeguard_projector_{metric} {help}\n# TYPE safeguard_projector_{metric} {kind}\nsafeguard_projector_{metric}{suffix}{label} {value}\n"
                ));
            };
            gauge("position", "Stream sequence applied up to", "gauge", s.position.load(Ordering::Relaxed));
            gauge(
                "stream_last",
                "The stream's last sequence when last looked at",
                "gauge",
                s.stream_last.load(Ordering::Relaxed),
            );
            gauge(
                "lag",
                "Stream head minus applied position while an event of this projector waits, else 0 (an upper bound: the stream also holds id-index messages)",
                "gauge",
                s.lag(),
            );
            gauge("events_applied", "Events applied since start", "counter", s.applied.load(Ordering::Relaxed));
            gauge(
                "dead_letters",
                "Messages that are not well-formed, correctly hashed stored events, kept in dead_letter since start",
                "counter",
                s.dead_letters.load(Ordering::Relaxed),
            );
            gauge(
                "stalled",
                "1 while events wait and none has been applied for the stall interval",
                "gauge",
                u64::from(s.stalled()),
            );
            gauge(
                "parked_subjects",
                "Subjects parked: their events wait until `safeguard parked retry`",
                "gauge",
                s.parked.load(Ordering::Relaxed),
            );
            gauge("parkings", "Subjects parked since start", "counter", s.parkings.load(Ordering::Relaxed));
            gauge(
                "audit_dead_letters",
                "Audit messages kept in audit.dead_letter since start",
                "counter",
                audit.dead_letters.load(Ordering::Relaxed),
            );
            gauge(
                "interruptions",
                "Sessions ended by a NATS or PostgreSQL failure since start (each retried)",
                "counter",
                s.interruptions.load(Ordering::Relaxed),
            );
            let mut float = |metric: &str, help: &str, value: f64| {
                out.push_str(&format!(
                    "# HELP safeguard_projector_{metric} {help}\n# TYPE safeguard_projector_{metric} gauge\nsafeguard_projector_{metric}{label} {value}\n"
                ));
            };
            float(
                "lag_seconds",
                "Age of the oldest event this projector has not applied (0 when none waits)",
                s.lag_seconds(),
            );
            float(
                "last_error_timestamp_seconds",
                "When the projector last failed or parked a subject (Unix seconds; 0 never)",
                s.last_error_at_ms.load(Ordering::Relaxed) as f64 / 1000.0,
            );
            out.push_str("# EOF\n");
            ([(axum::http::header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], out)
        }
    };
    let ready = move || {
        let pool = pool.clone();
        let client = client.clone();
        let stats = ready_stats.clone();
        async move {
            let nats = client.connection_state() == async_nats::connection::State::Connected;
            let pg = sqlx::query("select 1").execute(&pool).await.is_ok();
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
    axum::Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
}

/// Runs the query role until `shutdown` resolves. Returns the address it
/// bound through `bound` before serving, so tests can use port 0.
pub async fn run_query(
    nats: config::NatsArgs,
    database: config::DatabaseArgs,
    principals_path: std::path::PathBuf,
    master_key: std::path::PathBuf,
    query: config::QueryArgs,
    shutdown: impl Future<Output = ()> + Send + 'static,
    bound: Option<tokio::sync::oneshot::Sender<std::net::SocketAddr>>,
) -> anyhow::Result<()> {
    let client = bus::connect(&nats).await?;
    let js = async_nats::jetstream::new(client.clone());
    bus::ensure_streams(&js, &nats.stream_settings()).await?;
    let pool = connect_database(&database.database_url).await?;
    // The query role may start before any projector: the tables it reads must exist.
    projections::migrate(&pool, projections::LIVE_SCHEMA).await.context("could not migrate the read models")?;
    let principals = principals::Principals::load(&principals_path)?;
    reload_on_hangup(principals.clone(), principals_path);
    let master = keystore::MasterKey::load_or_create(&master_key)?;
    let lookup_key = master.lookup_key();
    let sessions = query::pages::session::SessionKey::new(master.session_key());
    let signed_out = bus::ensure_signed_out_bucket(&js, &nats.stream_settings()).await?;
    let bucket = bus::ensure_key_bucket(&js, &nats.stream_settings()).await?;
    let keys = keystore::KeyStore::watched(bucket, master).await?;
    let state = Arc::new(query::QueryState {
        principals,
        lookup_key,
        keys,
        public_key: query.public_key.clone().unwrap_or_else(|| public_key_path(Path::new("signing.key"))),
        pool,
        access: query::access::AccessLog { js, timeout: std::time::Duration::from_millis(query.access_timeout_ms) },
        client,
        metrics: query::QueryMetrics::default(),
        now: chrono::Utc::now,
        sessions,
        signed_out,
    });
    let listener = tokio::net::TcpListener::bind(&query.listen)
        .await
        .with_context(|| format!("could not listen on {}", query.listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "query role listening");
    if let Some(tx) = bound {
        let _ = tx.send(addr);
    }
    axum::serve(listener, query::router(state)).with_graceful_shutdown(shutdown).await?;
    Ok(())
}

/// SIGHUP reloads principals.toml; a bad file keeps the old set.
fn reload_on_hangup(principals: principals::Principals, path: std::path::PathBuf) {
    tokio::spawn(async move {
        let Ok(mut hangups) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
            return;
        };
        while hangups.recv().await.is_some() {
            match principals.reload(&path) {
                Ok(n) => tracing::info!(principals = n, "reloaded principals"),
                Err(e) => tracing::error!(error = %e, "kept the previous principals"),
            }
        }
    });
}

/// Runs the gateway until `shutdown` resolves. Returns the address it bound
/// through `bound` before serving, so tests can use port 0.
pub async fn run_gateway(
    settings: config::GatewaySettings,
    shutdown: impl Future<Output = ()> + Send + 'static,
    bound: Option<tokio::sync::oneshot::Sender<std::net::SocketAddr>>,
) -> anyhow::Result<()> {
    let client = bus::connect(&settings.nats).await?;
    let js = async_nats::jetstream::new(client.clone());
    let stream_settings = settings.nats.stream_settings();
    bus::ensure_streams(&js, &stream_settings).await?;
    let bucket = bus::ensure_key_bucket(&js, &stream_settings).await?;
    // Made here, where the secured cluster allows it, for the query role's pages.
    bus::ensure_signed_out_bucket(&js, &stream_settings).await?;
    let stream = js.get_stream(bus::EVENTS_STREAM).await.context("could not open the event stream")?;
    let master = keystore::MasterKey::load_or_create(&settings.master_key)?;
    let signing = load_or_create_signing_key(&settings.signing_key)?;
    let public_keys = write_public_key(&settings.signing_key, &signing)?;
    let principals = principals::Principals::load(&settings.principals)?;
    let keys = keystore::KeyStore::watched(bucket, master).await?;

    reload_on_hangup(principals.clone(), settings.principals.clone());
    let checkpointer = settings
        .checkpoint_interval
        .map(|every| tokio::spawn(gateway::checkpoint::run(js.clone(), signing.clone(), public_keys, every)));

    let state = Arc::new(gateway::AppState {
        principals,
        ingest: gateway::ingest::Ingest {
            committer: gateway::publish::Committer::start(client.clone(), settings.publish_timeout),
            client,
            stream,
            keys,
            signing,
            cache: gateway::state::Cache::default(),
            publish_timeout: settings.publish_timeout,
            metrics: Arc::default(),
        },
        now: chrono::Utc::now,
    });
    let listener = tokio::net::TcpListener::bind(&settings.listen)
        .await
        .with_context(|| format!("could not listen on {}", settings.listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "gateway listening");
    if let Some(tx) = bound {
        let _ = tx.send(addr);
    }
    let served = axum::serve(listener, gateway::router(state)).with_graceful_shutdown(shutdown).await;
    if let Some(task) = checkpointer {
        task.abort();
    }
    served?;
    Ok(())
}

/// The public key file beside the signing key (`signing.key.pub`): what an
/// outside verifier needs, and all it needs. One base64 key per line, oldest
/// first: every key the gateway has signed with, because events keep the
/// signature of their day after a rotation.
pub fn public_key_path(signing_key: &Path) -> std::path::PathBuf {
    let mut name = signing_key.as_os_str().to_owned();
    name.push(".pub");
    name.into()
}

/// Adds the signing key's public key to the public key file if it is not
/// there yet (after a rotation, a new line), and returns every key listed.
fn write_public_key(signing_key: &Path, key: &SigningKey) -> anyhow::Result<Vec<ed25519_dalek::VerifyingKey>> {
    let path = public_key_path(signing_key);
    let mut text = std::fs::read_to_string(&path).unwrap_or_default();
    let mut keys = if text.trim().is_empty() {
        Vec::new()
    } else {
        events::chain::decode_verifying_keys(&text).map_err(|m| anyhow::anyhow!("{}: {m}", path.display()))?
    };
    if !keys.contains(&key.verifying_key()) {
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&format!("{}\n", events::chain::encode_verifying_key(&key.verifying_key())));
        std::fs::write(&path, text).with_context(|| format!("could not write {}", path.display()))?;
        keys.push(key.verifying_key());
    }
    Ok(keys)
}

/// `safeguard rebuild`: builds the read models afresh beside the live ones
/// with a progress bar on stderr, then switches over.
pub async fn run_rebuild(
    nats: config::NatsArgs,
    database: config::DatabaseArgs,
    batch: usize,
    name: String,
    master_key: std::path::PathBuf,
) -> anyhow::Result<()> {
    let client = bus::connect(&nats).await?;
    let js = async_nats::jetstream::new(client);
    bus::ensure_streams(&js, &nats.stream_settings()).await?;
    let keys = projector_keys(&js, &nats, &master_key).await?;
    let options = database_options(&database.database_url).await?;
    let settings = projections::runtime::Settings {
        name,
        batch: batch.max(1),
        keys: Some(keys),
        ..projections::runtime::Settings::default()
    };
    let stats = Arc::new(projections::runtime::Stats::default());
    let progress = tokio::spawn(progress_bar(stats.clone()));
    let report = projections::rebuild::rebuild(options, js, settings, stats).await;
    progress.abort();
    eprintln!();
    let report = report?;
    let rate = report.events as f64 / report.elapsed.as_secs_f64().max(1e-9);
    eprintln!(
        "rebuilt {} events up to stream position {} in {:.1} s ({rate:.0} events/s); {}",
        report.events,
        report.position,
        report.elapsed.as_secs_f64(),
        if report.replaced {
            "the previous read models are kept in schema projection_previous until the next rebuild"
        } else {
            "there were no live read models to replace"
        }
    );
    Ok(())
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
