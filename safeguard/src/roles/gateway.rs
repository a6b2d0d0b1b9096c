//! Starting the gateway role: NATS, the streams and key bucket, the keys,
//! the principals, the checkpointer and the HTTP listener.

use anyhow::Context as _;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// Runs the gateway until `shutdown` resolves. Returns the address it bound
/// through `bound` before serving, so tests can use port 0.
pub async fn run(
    settings: platform::config::GatewaySettings,
    shutdown: impl Future<Output = ()> + Send + 'static,
    bound: Option<tokio::sync::oneshot::Sender<std::net::SocketAddr>>,
) -> anyhow::Result<()> {
    let client = platform::bus::connect(&settings.nats).await?;
    let js = async_nats::jetstream::new(client.clone());
    let stream_settings = settings.nats.stream_settings();
    platform::bus::ensure_streams(&js, &stream_settings).await?;
    let bucket = platform::bus::ensure_key_bucket(&js, &stream_settings).await?;
    let stream = js.get_stream(platform::bus::EVENTS_STREAM).await.context("could not open the event stream")?;
    let master = platform::keystore::MasterKey::load(&settings.master_key, settings.create_keys)?;
    let signing = platform::load_signing_key(&settings.signing_key, settings.create_keys)?;
    let public_keys = platform::write_public_key(&settings.signing_key, &signing)?;
    // Read back from the file, so a rotation by a sibling gateway is seen.
    let signers =
        platform::PublicKeyFile::open(&platform::public_key_path(&settings.signing_key), Duration::ZERO).await?;
    let principals = platform::principals::Principals::load(&settings.principals)?;
    let keys = platform::keystore::KeyStore::watched(bucket, master).await?;

    platform::reload_on_hangup(principals.clone(), settings.principals.clone());
    let checkpointer = settings
        .checkpoint_interval
        .map(|every| tokio::spawn(gateway::checkpoint::run(js.clone(), signing.clone(), public_keys, every)));

    let replicas = stream.cached_info().config.num_replicas;
    let state = Arc::new(gateway::AppState {
        principals,
        ingest: gateway::ingest::Ingest {
            committer: gateway::publish::Committer::start(client.clone(), settings.publish_timeout),
            client,
            stream,
            keys,
            signing,
            signers,
            cache: gateway::state::Cache::default(),
            publish_timeout: settings.publish_timeout,
            lone_event_as_two_publishes: replicas <= 1,
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
    let served = platform::http::serve(listener, gateway::router(state), settings.http, shutdown).await;
    if let Some(task) = checkpointer {
        task.abort();
    }
    served?;
    Ok(())
}
