//! What every role of the backbone stands on, with no database in it:
//! configuration, the NATS connection and the streams, principals, the key
//! store, signing keys and the process's signals.
//!
//! - [`config`]: flags and environment variables (CONTRACT.md "Configuration").
//! - [`bus`]: the NATS connection, version check, streams and key buckets.
//! - [`principals`]: `principals.toml`, tokens, roles and scopes.
//! - [`keystore`]: children's data keys, wrapped by the master key.
//! - [`http`]: serving a role's HTTP with timeouts and limits.
//! - [`telemetry`]: request ids, request spans, and how a server error is reported.
//! - [`openapi`]: what both roles' OpenAPI documents share (the bearer scheme, problem+json).
//!
//! This crate may not depend on sqlx (a check in `tests/tests/workspace.rs`
//! holds it to that): the gateway is built on it, and the gateway never
//! touches PostgreSQL.

pub mod bus;
pub mod config;
pub mod http;
pub mod keystore;
pub mod oidc;
pub mod openapi;
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

/// Reads the gateway's Ed25519 signing key, creating it (mode 0600) if
/// missing and `create`; missing and not `create` is an error naming it.
pub fn load_signing_key(path: &Path, create: bool) -> anyhow::Result<SigningKey> {
    if !path.exists() && !create {
        anyhow::bail!(
            "no signing key at {}: point SAFEGUARD_SIGNING_KEY at it, or start with --create-keys (SAFEGUARD_CREATE_KEYS=1) to make a new one",
            path.display()
        );
    }
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

/// The gateway's public keys as a reader of the stream holds them: read
/// from the public key file, and read again when a signature verifies with
/// none of them and the file has changed since (the gateway adds a line
/// before it first signs with a new key), so a rotation is picked up
/// without a restart while a flood of forged messages costs a `stat` each.
#[derive(Debug)]
pub struct PublicKeyFile {
    path: std::path::PathBuf,
    keys: std::sync::RwLock<(Option<std::time::SystemTime>, Vec<ed25519_dalek::VerifyingKey>)>,
}

impl PublicKeyFile {
    /// Reads `path`, waiting up to `wait` for the gateway to write it (the
    /// roles of `safeguard serve` start together). A file that never
    /// appears, or does not read, is an error: a reader that trusted no key
    /// would refuse every event.
    pub async fn open(path: &Path, wait: std::time::Duration) -> anyhow::Result<std::sync::Arc<Self>> {
        appeared(path, wait).await;
        let keys = Self::read(path)?;
        Ok(std::sync::Arc::new(Self { path: path.to_owned(), keys: std::sync::RwLock::new(keys) }))
    }

    fn modified(path: &Path) -> Option<std::time::SystemTime> {
        std::fs::metadata(path).and_then(|m| m.modified()).ok()
    }

    fn read(path: &Path) -> anyhow::Result<(Option<std::time::SystemTime>, Vec<ed25519_dalek::VerifyingKey>)> {
        let modified = Self::modified(path);
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("could not read the gateway's public keys at {}", path.display()))?;
        let keys =
            events::chain::decode_verifying_keys(&text).map_err(|m| anyhow::anyhow!("{}: {m}", path.display()))?;
        Ok((modified, keys))
    }
}

impl events::chain::Signers for PublicKeyFile {
    fn signed(&self, digest: &events::Digest, signature: &str) -> bool {
        let Ok(held) = self.keys.read() else { return false };
        if events::chain::signature_valid_any(&held.1, digest, signature) {
            return true;
        }
        let unchanged = held.0.is_some() && held.0 == Self::modified(&self.path);
        drop(held);
        if unchanged {
            return false;
        }
        match Self::read(&self.path) {
            Ok(fresh) => {
                let valid = events::chain::signature_valid_any(&fresh.1, digest, signature);
                if let Ok(mut held) = self.keys.write() {
                    *held = fresh;
                }
                valid
            }
            Err(e) => {
                tracing::warn!(error = %e, "kept the public keys already read");
                false
            }
        }
    }
}

/// Waits up to `wait` for a file another role writes (the gateway's keys:
/// `safeguard serve` starts every role at once); whether it appeared is
/// the caller's to check.
pub async fn appeared(path: &Path, wait: std::time::Duration) -> bool {
    let deadline = std::time::Instant::now() + wait;
    while !path.exists() && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    path.exists()
}
