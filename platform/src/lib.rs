//! What every role of the backbone stands on, with no database in it:
//! configuration, the NATS connection and the streams, principals, the key
//! store, signing keys and the process's signals.
//!
//! - [`config`]: flags and environment variables (CONTRACT.md "Configuration").
//! - [`bus`]: the NATS connection, version check, streams and key buckets.
//! - [`principals`]: `principals.toml`, tokens, roles and scopes.
//! - [`keystore`]: children's data keys, wrapped by the master key.
//! - [`telemetry`]: request ids, request spans, and how a server error is reported.
//!
//! This crate may not depend on sqlx (a check in `tests/tests/workspace.rs`
//! holds it to that): the gateway is built on it, and the gateway never
//! touches PostgreSQL.

pub mod bus;
pub mod config;
pub mod keystore;
pub mod principals;
pub mod telemetry;

use anyhow::Context as _;
use ed25519_dalek::SigningKey;
use std::path::Path;

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

/// SIGHUP reloads principals.toml; a bad file keeps the old set.
pub fn reload_on_hangup(principals: principals::Principals, path: std::path::PathBuf) {
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
pub fn write_public_key(signing_key: &Path, key: &SigningKey) -> anyhow::Result<Vec<ed25519_dalek::VerifyingKey>> {
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
