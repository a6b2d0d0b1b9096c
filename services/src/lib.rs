//! The `safeguard` binary's library: configuration, roles and commands.
//!
//! # Layout
//!
//! - [`config`]: flags and environment variables (CONTRACT.md "Configuration").
//! - [`bus`]: the NATS connection, version check, streams and key bucket.
//! - [`principals`]: `principals.toml`, tokens, roles and scopes.
//! - [`keystore`]: children's data keys, wrapped by the master key.
//! - [`gateway`]: the gateway role (`POST /v1/events`).
//! - [`token`]: `safeguard token`.
//!
//! `main.rs` only parses the command line and calls in here.

pub mod bus;
pub mod config;
pub mod gateway;
pub mod keystore;
pub mod principals;
pub mod token;

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
pub async fn connect_database(url: &str) -> anyhow::Result<sqlx::PgPool> {
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
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(8)
        .connect_with(options)
        .await
        .context("could not connect to the read-model database")?;
    Ok(pool)
}

/// Runs the projector until `shutdown` resolves.
pub async fn run_projector(
    nats: config::NatsArgs,
    database: config::DatabaseArgs,
    projector: config::ProjectorArgs,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let client = bus::connect(&nats.url, nats.creds.as_deref()).await?;
    let js = async_nats::jetstream::new(client);
    bus::ensure_streams(&js, &nats.stream_settings()).await?;
    let pool = connect_database(&database.database_url).await?;
    let settings = projections::runtime::Settings {
        name: projector.name,
        batch: projector.batch,
        ..projections::runtime::Settings::default()
    };
    projections::runtime::run(pool, js, settings, Arc::default(), shutdown).await?;
    Ok(())
}

/// Runs the gateway until `shutdown` resolves. Returns the address it bound
/// through `bound` before serving, so tests can use port 0.
pub async fn run_gateway(
    settings: config::GatewaySettings,
    shutdown: impl Future<Output = ()> + Send + 'static,
    bound: Option<tokio::sync::oneshot::Sender<std::net::SocketAddr>>,
) -> anyhow::Result<()> {
    let client = bus::connect(&settings.nats.url, settings.nats.creds.as_deref()).await?;
    let js = async_nats::jetstream::new(client.clone());
    let stream_settings = settings.nats.stream_settings();
    bus::ensure_streams(&js, &stream_settings).await?;
    let bucket = bus::ensure_key_bucket(&js, &stream_settings).await?;
    let stream = js.get_stream(bus::EVENTS_STREAM).await.context("could not open the event stream")?;
    let master = keystore::MasterKey::load_or_create(&settings.master_key)?;
    let signing = load_or_create_signing_key(&settings.signing_key)?;
    let principals = principals::Principals::load(&settings.principals)?;

    // SIGHUP reloads principals.toml; a bad file keeps the old set.
    let reload_path = settings.principals.clone();
    let reloadable = principals.clone();
    tokio::spawn(async move {
        let Ok(mut hangups) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
            return;
        };
        while hangups.recv().await.is_some() {
            match reloadable.reload(&reload_path) {
                Ok(n) => tracing::info!(principals = n, "reloaded principals"),
                Err(e) => tracing::error!(error = %e, "kept the previous principals"),
            }
        }
    });

    let state = Arc::new(gateway::AppState {
        principals,
        ingest: gateway::ingest::Ingest {
            client,
            stream,
            keys: keystore::KeyStore::new(bucket, master),
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
    axum::serve(listener, gateway::router(state)).with_graceful_shutdown(shutdown).await?;
    Ok(())
}
