//! The connection to NATS and the JetStream resources the backbone owns:
//! the event stream (events and the id index), the audit stream, and the
//! key-value bucket that holds children's data keys.

use crate::config::{NatsArgs, StreamSettings};
use async_nats::jetstream::{self, kv, stream};
use events::subjects;
use std::time::Duration;

pub use events::subjects::{AUDIT_STREAM, CHANGES_STREAM, EVENTS_STREAM, KEYS_BUCKET, SIGNED_OUT_BUCKET};

/// The oldest server the backbone runs on: atomic batch publish arrived in 2.12.
pub const MIN_SERVER: (u32, u32) = (2, 12);

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("could not connect to NATS at {url}: {message}")]
    Connect { url: String, message: String },
    #[error("NATS server {found} is too old: the backbone needs {}.{} or newer (atomic batch publish)", MIN_SERVER.0, MIN_SERVER.1)]
    TooOld { found: String },
    #[error("could not set up {what}: {message}")]
    Setup { what: &'static str, message: String },
}

/// Connects to `nats.url` (comma-separated servers), with the role's
/// credentials and the cluster's CA when they are given.
pub async fn connect(nats: &NatsArgs) -> Result<async_nats::Client, BusError> {
    let urls = nats.url.as_str();
    let addrs: Vec<async_nats::ServerAddr> = urls
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(|u| u.parse().map_err(|e| BusError::Connect { url: u.to_owned(), message: format!("{e}") }))
        .collect::<Result<_, _>>()?;
    let mut options = async_nats::ConnectOptions::new()
        .name("safeguard")
        .retry_on_initial_connect()
        .connection_timeout(Duration::from_secs(5));
    if let Some(path) = &nats.creds {
        options = with_credentials(options, path)
            .await
            .map_err(|message| BusError::Connect { url: urls.to_owned(), message })?;
    }
    if let Some(ca) = &nats.ca {
        options = options.require_tls(true).add_root_certificates(ca.clone());
    }
    let client = tokio::time::timeout(Duration::from_secs(30), options.connect(addrs))
        .await
        .map_err(|_| BusError::Connect { url: urls.to_owned(), message: "timed out".into() })?
        .map_err(|e| BusError::Connect { url: urls.to_owned(), message: e.to_string() })?;
    // The server info arrives with the connection; wait briefly for it.
    for _ in 0..100 {
        if !client.server_info().version.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    check_version(&client.server_info().version)?;
    Ok(client)
}

/// A `.creds` file (JWT and seed) or a bare nkey seed, told apart by the
/// JWT's armour. The seed never appears in an error.
async fn with_credentials(
    options: async_nats::ConnectOptions,
    path: &std::path::Path,
) -> Result<async_nats::ConnectOptions, String> {
    let text = tokio::fs::read_to_string(path)
        .await
        .map_err(|e| format!("cannot read the credentials file {}: {e}", path.display()))?;
    if text.contains("BEGIN NATS USER JWT") {
        return options.credentials(&text).map_err(|e| format!("credentials file {}: {e}", path.display()));
    }
    let seed = text.lines().map(str::trim).find(|l| l.starts_with("SU")).ok_or_else(|| {
        format!("{} holds neither a NATS .creds file nor a user nkey seed (a line starting SU)", path.display())
    })?;
    nkeys::KeyPair::from_seed(seed).map_err(|_| format!("{} holds a malformed nkey seed", path.display()))?;
    Ok(options.nkey(seed.to_owned()))
}

/// Refuses servers older than [`MIN_SERVER`].
pub fn check_version(version: &str) -> Result<(), BusError> {
    let mut parts = version.trim_start_matches('v').split(['.', '-']).map(|p| p.parse::<u32>().unwrap_or(0));
    let found = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    if found < MIN_SERVER {
        return Err(BusError::TooOld { found: version.to_owned() });
    }
    Ok(())
}

fn protected(name: &str, subjects: Vec<String>, settings: &StreamSettings) -> stream::Config {
    stream::Config {
        name: name.to_owned(),
        subjects,
        storage: stream::StorageType::File,
        num_replicas: settings.replicas,
        // Nothing is ever removed: no limits, no deletes, no purges.
        max_age: Duration::ZERO,
        deny_delete: true,
        deny_purge: true,
        allow_direct: true,
        allow_atomic_publish: true,
        duplicate_window: settings.duplicate_window,
        ..Default::default()
    }
}

/// The event stream as the backbone makes it. (Tests of tamper evidence
/// make it themselves with deletes allowed, before any gateway starts.)
pub fn events_stream_config(settings: &StreamSettings) -> stream::Config {
    protected(EVENTS_STREAM, vec![subjects::EVENTS_FILTER.to_owned(), subjects::IDS_FILTER.to_owned()], settings)
}

/// How long change notices are kept: a dashboard away for longer starts
/// again from the documents as they stand.
pub const CHANGES_KEPT: Duration = Duration::from_secs(7 * 24 * 3600);

/// The stream of change notices: what the projector announces on
/// `sg.changes.>` (core NATS), kept for [`CHANGES_KEPT`]. Unlike the event
/// and audit streams it forgets: notices are derived, and the read models
/// can always say what is true now.
pub fn changes_stream_config(settings: &StreamSettings) -> stream::Config {
    stream::Config {
        name: CHANGES_STREAM.to_owned(),
        subjects: vec![subjects::CHANGES_FILTER.to_owned()],
        storage: stream::StorageType::File,
        num_replicas: settings.replicas,
        max_age: CHANGES_KEPT,
        discard: stream::DiscardPolicy::Old,
        duplicate_window: Duration::from_secs(60),
        allow_direct: true,
        ..Default::default()
    }
}

/// The durable consumer a dashboard resumes from, made by the operator
/// (the dashboard's NATS user may pull from it and acknowledge, not make
/// consumers: a consumer's delivery subject could be anything).
pub async fn ensure_dashboard_consumer(js: &jetstream::Context, name: &str) -> Result<(), BusError> {
    let durable = subjects::dashboard_consumer(name);
    let stream = js
        .get_stream(CHANGES_STREAM)
        .await
        .map_err(|e| BusError::Setup { what: "the change stream", message: e.to_string() })?;
    stream
        .get_or_create_consumer(
            &durable,
            jetstream::consumer::pull::Config {
                durable_name: Some(durable.clone()),
                ack_policy: jetstream::consumer::AckPolicy::Explicit,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| BusError::Setup { what: "a dashboard's consumer", message: e.to_string() })?;
    Ok(())
}

/// Makes every stream and bucket the backbone needs, if missing: the
/// operator's act (`safeguard streams`, run by ops/cluster before any role
/// starts). On the secured cluster no serving role may make or change a
/// stream (ops/nats/cluster/accounts.conf), so each role only opens what
/// this made; on a single unsecured server (ops/run, tests) a role that
/// finds one missing makes it itself through the same functions.
pub async fn provision(js: &jetstream::Context, settings: &StreamSettings) -> Result<(), BusError> {
    ensure_streams(js, settings).await?;
    ensure_key_bucket(js, settings).await?;
    upgrade_key_bucket(js).await?;
    ensure_signed_out_bucket(js, settings).await?;
    Ok(())
}

/// Creates the event, audit and change streams if they are missing. Existing streams
/// are left as they are (they cannot be loosened: deny_delete and
/// deny_purge are permanent).
pub async fn ensure_streams(js: &jetstream::Context, settings: &StreamSettings) -> Result<(), BusError> {
    js.get_or_create_stream(events_stream_config(settings))
        .await
        .map_err(|e| BusError::Setup { what: "the event stream", message: e.to_string() })?;
    let audit = protected(AUDIT_STREAM, vec![subjects::AUDIT_FILTER.to_owned()], settings);
    js.get_or_create_stream(audit)
        .await
        .map_err(|e| BusError::Setup { what: "the audit stream", message: e.to_string() })?;
    js.get_or_create_stream(changes_stream_config(settings))
        .await
        .map_err(|e| BusError::Setup { what: "the change stream", message: e.to_string() })?;
    Ok(())
}

/// The bucket of signed-out page sessions. A session cookie carries its own
/// proof (see `query::pages::session`), so signing out must be remembered
/// somewhere every query role sees until the cookie would have expired
/// anyway: each entry ages out after `max_age`. The operator makes it
/// ([`provision`]); the query role reads and writes it; the gateway and the
/// projector never touch it.
pub async fn ensure_signed_out_bucket(
    js: &jetstream::Context,
    settings: &StreamSettings,
) -> Result<kv::Store, BusError> {
    let config = kv::Config {
        bucket: SIGNED_OUT_BUCKET.to_owned(),
        description: "page sessions signed out before they expired, by nonce".to_owned(),
        history: 1,
        // A session lives 8 hours; an hour more covers clocks a little apart.
        max_age: Duration::from_secs(9 * 60 * 60),
        storage: stream::StorageType::File,
        num_replicas: settings.replicas,
        ..Default::default()
    };
    // Roles start together (`serve`), and a bucket another role has just
    // made may not have a leader yet: a few tries, a second apart.
    let mut attempt = 0;
    loop {
        if let Ok(store) = js.get_key_value(SIGNED_OUT_BUCKET).await {
            return Ok(store);
        }
        match js.create_key_value(config.clone()).await {
            Ok(store) => return Ok(store),
            Err(e) if attempt >= 4 => {
                return Err(BusError::Setup { what: "the signed-out bucket", message: e.to_string() });
            }
            Err(e) => tracing::warn!(error = %e, "the signed-out bucket is not ready; trying again"),
        }
        attempt += 1;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The bucket of children's data keys: separate from the event stream
/// because, unlike events, a key must be erasable. Its stream is made here
/// rather than by the key-value API, which always denies message deletes:
/// erasure must securely erase the message that held a wrapped key, not
/// just hide it (see `keystore`). Otherwise it is an ordinary bucket with
/// one value per key.
pub async fn ensure_key_bucket(js: &jetstream::Context, settings: &StreamSettings) -> Result<kv::Store, BusError> {
    if let Ok(store) = js.get_key_value(KEYS_BUCKET).await {
        return Ok(store);
    }
    js.get_or_create_stream(key_bucket_config(settings))
        .await
        .map_err(|e| BusError::Setup { what: "the key bucket", message: e.to_string() })?;
    js.get_key_value(KEYS_BUCKET).await.map_err(|e| BusError::Setup { what: "the key bucket", message: e.to_string() })
}

/// Two messages a child: an erasure puts its tombstone over the key in one
/// compare-and-set step (so there is never a moment with neither), and
/// only then securely erases the message that held the key, which must
/// still be there to be overwritten (with one message a subject, the limit
/// would drop it unerased).
const KEY_BUCKET_HISTORY: i64 = 2;

fn key_bucket_config(settings: &StreamSettings) -> stream::Config {
    stream::Config {
        name: format!("KV_{KEYS_BUCKET}"),
        description: Some("per-child data keys, wrapped by the master key".to_owned()),
        subjects: vec![format!("$KV.{KEYS_BUCKET}.>")],
        max_messages_per_subject: KEY_BUCKET_HISTORY,
        storage: stream::StorageType::File,
        num_replicas: settings.replicas,
        allow_rollup: true,
        deny_delete: false,
        deny_purge: false,
        allow_direct: true,
        discard: stream::DiscardPolicy::New,
        ..Default::default()
    }
}

/// A key bucket made by an earlier version kept one message a child; the
/// operator's `safeguard streams` raises it to [`KEY_BUCKET_HISTORY`].
async fn upgrade_key_bucket(js: &jetstream::Context) -> Result<(), BusError> {
    let setup = |e: &dyn std::fmt::Display| BusError::Setup { what: "the key bucket", message: e.to_string() };
    let mut stream = js.get_stream(format!("KV_{KEYS_BUCKET}")).await.map_err(|e| setup(&e))?;
    let mut config = stream.info().await.map_err(|e| setup(&e))?.config.clone();
    if config.max_messages_per_subject < KEY_BUCKET_HISTORY {
        config.max_messages_per_subject = KEY_BUCKET_HISTORY;
        js.update_stream(config).await.map_err(|e| setup(&e))?;
    }
    Ok(())
}

/// Reads the messages of `stream` matching `filter` in stream order, from
/// stream sequence `from` on (1 is the start), with an ordered consumer
/// that nothing else shares and the server forgets when it is dropped.
pub async fn read_ordered(
    stream: &jetstream::stream::Stream,
    filter: &str,
    from: u64,
) -> Result<jetstream::consumer::pull::Ordered, BusError> {
    let setup = |e: &dyn std::fmt::Display| BusError::Setup { what: "a reader", message: e.to_string() };
    let consumer = stream
        .create_consumer(jetstream::consumer::pull::OrderedConfig {
            filter_subject: filter.to_owned(),
            deliver_policy: jetstream::consumer::DeliverPolicy::ByStartSequence { start_sequence: from.max(1) },
            ..Default::default()
        })
        .await
        .map_err(|e| setup(&e))?;
    consumer.messages().await.map_err(|e| setup(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_servers_are_refused() {
        assert!(check_version("2.9.15").is_err());
        assert!(check_version("2.11.9").is_err());
        assert!(check_version("2.12.0").is_ok());
        assert!(check_version("2.15.1").is_ok());
        assert!(check_version("3.0.0-beta").is_ok());
    }
}
