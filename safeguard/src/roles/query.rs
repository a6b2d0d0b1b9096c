//! Starting the query role: NATS, PostgreSQL (migrated, since it may start
//! before any projector), the principals, keys and sessions, and the
//! HTTP listener.

use anyhow::Context as _;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;

/// Runs the query role until `shutdown` resolves. Returns the address it
/// bound through `bound` before serving, so tests can use port 0.
pub async fn run(
    settings: platform::config::QuerySettings,
    shutdown: impl Future<Output = ()> + Send + 'static,
    bound: Option<tokio::sync::oneshot::Sender<std::net::SocketAddr>>,
) -> anyhow::Result<()> {
    let platform::config::QuerySettings { nats, database, principals: principals_path, master_key, query, http, clock } =
        settings;
    let client = platform::bus::connect(&nats).await?;
    let js = async_nats::jetstream::new(client.clone());
    platform::bus::ensure_streams(&js, &nats.stream_settings()).await?;
    let pool = projections::database::connect(&database.database_url).await?;
    // The query role may start before any projector: the tables it reads must exist.
    projections::migrate(&pool, projections::LIVE_SCHEMA).await.context("could not migrate the read models")?;
    let principals = platform::principals::Principals::load(&principals_path)?;
    platform::reload_on_hangup(principals.clone(), principals_path);
    let master = platform::keystore::MasterKey::open(&master_key, std::time::Duration::from_secs(30)).await?;
    let lookup_key = master.lookup_key();
    let sessions = query::pages::session::SessionKey::new(platform::keystore::session_key(&query.session_key)?);
    let signed_out = platform::bus::ensure_signed_out_bucket(&js, &nats.stream_settings()).await?;
    let bucket = platform::bus::ensure_key_bucket(&js, &nats.stream_settings()).await?;
    let keys = platform::keystore::KeyStore::watched(bucket, master).await?;
    let export_key = platform::load_signing_key(&query.export_key, true)?;
    platform::write_public_key(&query.export_key, &export_key)?;
    let state = Arc::new(query::QueryState {
        principals,
        lookup_key,
        keys: keys.clone(),
        public_key: query.public_key.clone().unwrap_or_else(|| platform::public_key_path(Path::new("signing.key"))),
        export_key,
        pool,
        access: query::access::AccessLog {
            js,
            timeout: std::time::Duration::from_millis(query.access_timeout_ms),
            keys: keys.clone(),
        },
        client,
        metrics: query::QueryMetrics::default(),
        now: clock,
        sessions,
        signed_out,
        streams: query::streams::Streams::new(
            query.max_streams,
            query.max_streams_per_principal,
            std::time::Duration::from_millis(query.stream_recheck_ms),
        ),
        read_wait: std::time::Duration::from_millis(query.read_wait_ms),
    });
    let listener = tokio::net::TcpListener::bind(&query.listen)
        .await
        .with_context(|| format!("could not listen on {}", query.listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "query role listening");
    if let Some(tx) = bound {
        let _ = tx.send(addr);
    }
    platform::http::serve(listener, query::router(state), http, shutdown).await?;
    Ok(())
}
