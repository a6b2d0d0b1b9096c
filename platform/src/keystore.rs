//! Children's data keys.
//!
//! Each child has a random 32-byte data key under which the personal fields
//! of its events are sealed (`events::privacy`). Keys live outside the event
//! stream, in the JetStream key-value bucket `sg_child_keys` (file storage,
//! as many replicas as the streams), each wrapped (XChaCha20-Poly1305) by the
//! master key from `SAFEGUARD_MASTER_KEY`, so a copy of the bucket alone
//! reveals nothing. Erasing a child's key (purging its entry) makes that
//! child's personal data unreadable everywhere, while every hash and
//! signature still verifies.
//!
//! Erasure ([`KeyStore::erase`]) replaces the key with a tombstone in one
//! compare-and-set step, so no new key is ever made for that child and
//! there is no moment with neither, and then securely erases the message
//! that held the wrapped key (JetStream overwrites it on disk), which is why
//! the bucket's stream allows message deletes and keeps two messages a
//! child. Every process that caches keys watches the bucket, forgets a key
//! the moment it is erased, and remembers the erasure's revision, so a key
//! read before it (in flight, or from a replica that is behind) is never
//! cached or used after it.
//!
//! Back up the bucket with the streams (it is a JetStream stream,
//! `KV_sg_child_keys`), and the master key separately: either without the
//! other is useless, which is the point.

use async_nats::jetstream::kv;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use events::ids::{ChildId, WorkerId};
use events::privacy::DataKey;
use rand::RngCore;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

/// The key that wraps every data key.
#[derive(Clone)]
pub struct MasterKey([u8; 32]);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(<secret>)")
    }
}

impl MasterKey {
    /// Reads the key file (base64 of 32 bytes), creating it with a new
    /// random key (mode 0600) if it does not exist.
    ///
    /// Roles started together in one process may race to create it: the
    /// file is created exclusively, the loser reads the winner's key, and a
    /// read that catches the file before its contents are written tries again.
    /// Reads the master key the gateway made, waiting up to `wait` for it
    /// to appear (`safeguard serve` starts every role at once). Never makes
    /// one: a reader with a new master key would open nothing.
    pub async fn open(path: &Path, wait: std::time::Duration) -> anyhow::Result<Self> {
        if !crate::appeared(path, wait).await {
            anyhow::bail!(
                "no master key at {}: give SAFEGUARD_MASTER_KEY the gateway's (the gateway makes one only with --create-keys)",
                path.display()
            );
        }
        Self::read(path)
    }

    /// Reads the master key, or makes it (mode 0600) if missing and `create`;
    /// missing and not `create` is an error naming the path.
    pub fn load(path: &Path, create: bool) -> anyhow::Result<Self> {
        if create {
            return Self::load_or_create(path);
        }
        if !path.exists() {
            anyhow::bail!(
                "no master key at {}: point SAFEGUARD_MASTER_KEY at it, or start with --create-keys (SAFEGUARD_CREATE_KEYS=1) to make a new one for a new deployment",
                path.display()
            );
        }
        Self::read(path)
    }

    fn load_or_create(path: &Path) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        if !path.exists() {
            let mut bytes = [0u8; 32];
            rand::rngs::OsRng.fill_bytes(&mut bytes);
            match write_secret(path, &format!("{}\n", BASE64.encode(bytes))) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => {
                    return Err(e).with_context(|| format!("could not create the master key {}", path.display()));
                }
            }
        }
        Self::read(path)
    }

    fn read(path: &Path) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        let mut attempts = 0;
        loop {
            let text = std::fs::read_to_string(path).with_context(|| format!("could not read {}", path.display()))?;
            match BASE64.decode(text.trim()).ok().and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok()) {
                Some(key) => return Ok(Self(key)),
                None if attempts < 20 && text.is_empty() => {
                    attempts += 1;
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                None => anyhow::bail!("the master key file {} must hold base64 of 32 bytes", path.display()),
            }
        }
    }

    /// The key that digests identifiers for lookups (see
    /// `events::privacy::identifier_digest`), derived from the master key
    /// so that nothing more needs keeping: SHA-256 over a fixed context
    /// label and the master key.
    pub fn lookup_key(&self) -> [u8; 32] {
        use sha2::Digest as _;
        let mut hasher = sha2::Sha256::new();
        hasher.update(b"safeguard identifier lookup key v1\n");
        hasher.update(self.0);
        hasher.finalize().into()
    }

    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(self.0.as_slice().into())
    }
}

/// Writes a file readable by its owner only.
/// The key that signs the pages' session cookies: a file of its own (base64
/// of 32 bytes, mode 0600), made on the first start if missing. Not derived
/// from the master key, so it can be replaced on its own (which signs
/// everyone out and touches no child's data) and a holder of it can forge
/// a session but open nothing. Every query role behind one address must
/// share the file, or a session opened on one is refused by the others.
pub fn session_key(path: &Path) -> anyhow::Result<[u8; 32]> {
    use anyhow::Context as _;
    if !path.exists() {
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        match write_secret(path, &format!("{}\n", BASE64.encode(bytes))) {
            Ok(()) => {
                tracing::warn!(path = %path.display(), "made a new page session key: every page session opened before is over")
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e).with_context(|| format!("could not create the session key {}", path.display())),
        }
    }
    let text = std::fs::read_to_string(path).with_context(|| format!("could not read {}", path.display()))?;
    BASE64
        .decode(text.trim())
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
        .with_context(|| format!("the session key file {} must hold base64 of 32 bytes", path.display()))
}

pub fn write_secret(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    file.write_all(text.as_bytes())
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("the child's data key has been erased")]
    Erased,
    /// The bucket could not be reached or refused: `what` was being done.
    #[error("the key store is unavailable ({what})")]
    Unavailable {
        what: &'static str,
        #[source]
        cause: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    #[error("a stored data key does not unwrap with this master key")]
    WrongMasterKey,
}

impl KeyError {
    fn unavailable(what: &'static str, cause: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Unavailable { what, cause: Some(Box::new(cause)) }
    }
}

/// Data keys, fetched from the bucket and cached.
pub struct KeyStore {
    bucket: kv::Store,
    master: MasterKey,
    state: Mutex<Known>,
}

/// What a key store knows of the bucket: keys it has read, and the
/// children it has seen erased, each with the bucket revision it was
/// learnt at. A key is never replaced by another, only by a tombstone, so
/// any change after a key's revision is its erasure: a key read at a
/// revision older than an erasure already seen (a read that was in flight
/// when the erasure landed, or answered by a replica that is behind) is
/// stale, and is neither used nor cached.
#[derive(Default)]
struct Known {
    keys: HashMap<uuid::Uuid, (DataKey, u64)>,
    /// Erased children and the revision of their tombstone. Erasures are
    /// few, and this is never cleared: forgetting one would let a stale
    /// read bring its key back.
    erased: HashMap<uuid::Uuid, u64>,
}

impl Known {
    /// Whether a key read at `revision` has been erased since.
    fn erased_after(&self, child: &uuid::Uuid, revision: u64) -> bool {
        self.erased.get(child).is_some_and(|&at| at > revision)
    }

    fn erase(&mut self, child: &uuid::Uuid, revision: u64) {
        self.keys.remove(child);
        let at = self.erased.entry(*child).or_insert(revision);
        *at = (*at).max(revision);
    }
}

impl std::fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyStore").finish_non_exhaustive()
    }
}

/// Keys cached at most; a cold key costs one bucket read.
const CACHE_LIMIT: usize = 100_000;

/// What an erased child's entry holds instead of a wrapped key.
const TOMBSTONE: &[u8] = b"erased";

/// How often an erasure tries again when the bucket changed under it, or a
/// replica answered with an older state than the one it must replace.
const ERASE_ATTEMPTS: u32 = 100;

impl KeyStore {
    pub fn new(bucket: kv::Store, master: MasterKey) -> Self {
        Self { bucket, master, state: Mutex::new(Known::default()) }
    }

    /// A key store that learns of every change to the bucket anywhere (an
    /// erasure by another process) as it happens: a key erased elsewhere
    /// is forgotten, and never cached again from a stale read. The watch
    /// is held by a task that ends when the store is dropped.
    pub async fn watched(bucket: kv::Store, master: MasterKey) -> Result<std::sync::Arc<Self>, KeyError> {
        let store = std::sync::Arc::new(Self::new(bucket, master));
        let mut watch = store.bucket.watch_all().await.map_err(|e| KeyError::unavailable("watching the bucket", e))?;
        let weak = std::sync::Arc::downgrade(&store);
        tokio::spawn(async move {
            use futures::StreamExt as _;
            while let Some(entry) = watch.next().await {
                let Some(store) = weak.upgrade() else { return };
                let mut known = store.known();
                match entry {
                    Ok(entry) => {
                        let Ok(child) = uuid::Uuid::parse_str(&entry.key) else { continue };
                        let removed = entry.operation != kv::Operation::Put || entry.value.as_ref() == TOMBSTONE;
                        if removed {
                            known.erase(&child, entry.revision);
                        } else {
                            known.keys.remove(&child);
                        }
                    }
                    // A watch that breaks cannot say what changed: forget
                    // every key (the erasures it knows stay known).
                    Err(_) => known.keys.clear(),
                }
            }
        });
        Ok(store)
    }

    fn known(&self) -> std::sync::MutexGuard<'_, Known> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Erases the child's data key for good, in one atomic step: a
    /// tombstone replaces the key by compare-and-set on the key's revision
    /// (or is created where there is no key), so at no moment is there
    /// neither, and no gateway can make a new key for the child after it.
    /// Then the message that held the wrapped key is securely erased from
    /// the bucket's stream (JetStream overwrites it on disk). Safe to
    /// repeat, and a repeat finishes an erasure interrupted after its
    /// first step. Returns whether there was a key to erase.
    pub async fn erase(&self, child: &ChildId) -> Result<bool, KeyError> {
        let id = *child.as_uuid();
        let name = child.to_string();
        let mut attempts = 0;
        let mut replaced_a_key = false;
        let tombstone_revision = loop {
            attempts += 1;
            if attempts > ERASE_ATTEMPTS {
                return Err(KeyError::Unavailable { what: "the key kept changing while being erased", cause: None });
            }
            let current =
                self.bucket.entry(name.clone()).await.map_err(|e| KeyError::unavailable("reading a key", e))?;
            let placed = match &current {
                Some(entry) if entry.operation == kv::Operation::Put && entry.value.as_ref() == TOMBSTONE => {
                    break entry.revision;
                }
                Some(entry) if entry.operation == kv::Operation::Put => {
                    let placed = self.bucket.update(name.clone(), TOMBSTONE.into(), entry.revision).await;
                    replaced_a_key = placed.is_ok();
                    placed.map_err(|e| {
                        (
                            e.kind() == kv::UpdateErrorKind::WrongLastRevision,
                            KeyError::unavailable("placing a tombstone", e),
                        )
                    })
                }
                Some(_) | None => self.bucket.create(name.clone(), TOMBSTONE.into()).await.map_err(|e| {
                    (e.kind() == kv::CreateErrorKind::AlreadyExists, KeyError::unavailable("placing a tombstone", e))
                }),
            };
            match placed {
                Ok(revision) => break revision,
                // The entry changed since it was read (a gateway made the
                // key just now), or the read came from a replica behind the
                // leader: read again.
                Err((true, _)) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
                Err((false, e)) => return Err(e),
            }
        };
        self.known().erase(&id, tombstone_revision);
        // Every wrapped key the child's subject still holds is older than
        // the tombstone: overwrite each on disk, oldest first.
        let subject = format!("$KV.{}.{name}", crate::bus::KEYS_BUCKET);
        let stream = &self.bucket.stream;
        let mut erased = false;
        let mut from = 1;
        while from < tombstone_revision {
            // From the stream's leader, not a direct get: any replica may
            // answer a direct get, and one that is stopped lets it time out
            // (a 503 for as long as it stays away) or one that is behind
            // may not hold the key yet, leaving it on disk.
            let next = stream.raw_message_builder().sequence(from).next_by_subject(subject.clone()).send().await;
            let held = match next {
                Ok(message) => message,
                Err(e) if e.kind() == async_nats::jetstream::stream::RawMessageErrorKind::NoMessageFound => break,
                Err(e) => return Err(KeyError::unavailable("reading a key's history", e)),
            };
            if held.sequence >= tombstone_revision {
                break;
            }
            match stream.delete_message(held.sequence).await {
                Ok(_) => erased = true,
                // Gone already: an earlier attempt erased it.
                Err(e)
                    if matches!(e.kind(), async_nats::jetstream::stream::DeleteMessageErrorKind::JetStream(j)
                        if j.error_code() == async_nats::jetstream::ErrorCode::NO_MESSAGE_FOUND) => {}
                Err(e) => return Err(KeyError::unavailable("erasing a key", e)),
            }
            from = held.sequence + 1;
        }
        Ok(replaced_a_key || erased)
    }

    /// The child's data key, created if the child has none yet. Two gateways
    /// creating one at once agree: the bucket's create is compare-and-set,
    /// and the loser reads the winner's key.
    pub async fn key_for(&self, child: &ChildId) -> Result<DataKey, KeyError> {
        self.key_of(child.as_uuid()).await
    }

    /// The child's data key if it exists (None after erasure or before any).
    pub async fn existing_key(&self, child: &ChildId) -> Result<Option<DataKey>, KeyError> {
        self.existing_key_of(child.as_uuid()).await
    }

    /// A worker's data key (its name is sealed under it), created if the
    /// worker has none yet. Keys are per subject: a worker's and a child's
    /// live side by side in the bucket under their own ids.
    pub async fn worker_key(&self, worker: &WorkerId) -> Result<DataKey, KeyError> {
        self.key_of(worker.as_uuid()).await
    }

    /// A worker's data key if it has one.
    pub async fn existing_worker_key(&self, worker: &WorkerId) -> Result<Option<DataKey>, KeyError> {
        self.existing_key_of(worker.as_uuid()).await
    }

    /// A key for a child being registered now: it has none yet, so the key
    /// is made straight away (one round trip, not a read and then a make).
    /// Safe whatever is there: the bucket's create refuses to replace a key
    /// or a tombstone, and then the entry is read.
    pub async fn key_for_new_child(&self, child: &ChildId) -> Result<DataKey, KeyError> {
        self.make(child.as_uuid()).await
    }

    async fn key_of(&self, subject: &uuid::Uuid) -> Result<DataKey, KeyError> {
        if let Some(key) = self.cached(subject) {
            return Ok(key);
        }
        if let Some(key) = self.fetch(subject).await? {
            return Ok(key);
        }
        self.make(subject).await
    }

    /// Makes the subject's key by compare-and-set; if one (or a tombstone)
    /// is there already, reads it instead.
    async fn make(&self, subject: &uuid::Uuid) -> Result<DataKey, KeyError> {
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        let wrapped = self.wrap(subject, &bytes);
        match self.bucket.create(subject.to_string(), wrapped.into()).await {
            Ok(revision) => {
                let key = DataKey::from_bytes(bytes);
                self.remember(subject, &key, revision)?;
                Ok(key)
            }
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => self
                .fetch(subject)
                .await?
                .ok_or(KeyError::Unavailable { what: "a key vanished while being created", cause: None }),
            Err(e) => Err(KeyError::unavailable("creating a key", e)),
        }
    }

    async fn existing_key_of(&self, subject: &uuid::Uuid) -> Result<Option<DataKey>, KeyError> {
        if let Some(key) = self.cached(subject) {
            return Ok(Some(key));
        }
        match self.fetch(subject).await {
            Err(KeyError::Erased) => Ok(None),
            other => other,
        }
    }

    async fn fetch(&self, subject: &uuid::Uuid) -> Result<Option<DataKey>, KeyError> {
        let entry =
            self.bucket.entry(subject.to_string()).await.map_err(|e| KeyError::unavailable("reading a key", e))?;
        let Some(entry) = entry.filter(|e| e.operation == kv::Operation::Put) else {
            return if self.known().erased.contains_key(subject) { Err(KeyError::Erased) } else { Ok(None) };
        };
        if entry.value.as_ref() == TOMBSTONE {
            self.known().erase(subject, entry.revision);
            return Err(KeyError::Erased);
        }
        let key = self.unwrap(subject, &entry.value)?;
        self.remember(subject, &key, entry.revision)?;
        Ok(Some(key))
    }

    fn cached(&self, subject: &uuid::Uuid) -> Option<DataKey> {
        self.known().keys.get(subject).map(|(key, _)| key.clone())
    }

    /// Caches a key read at `revision`, unless an erasure since is known:
    /// then the read was stale and the subject is erased.
    fn remember(&self, subject: &uuid::Uuid, key: &DataKey, revision: u64) -> Result<(), KeyError> {
        let mut known = self.known();
        if known.erased_after(subject, revision) {
            return Err(KeyError::Erased);
        }
        if known.keys.len() >= CACHE_LIMIT {
            known.keys.clear();
        }
        known.keys.insert(*subject, (key.clone(), revision));
        Ok(())
    }

    /// The key wrapped by the master key, bound to its subject's id.
    fn wrap(&self, child: &uuid::Uuid, key: &[u8; 32]) -> Vec<u8> {
        let mut nonce = [0u8; 24];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let aad = child.to_string();
        let sealed = self
            .master
            .cipher()
            .encrypt(XNonce::from_slice(&nonce), Payload { msg: key, aad: aad.as_bytes() })
            .unwrap_or_default();
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        BASE64.encode(out).into_bytes()
    }

    fn unwrap(&self, child: &uuid::Uuid, wrapped: &[u8]) -> Result<DataKey, KeyError> {
        let bytes = BASE64.decode(wrapped).map_err(|_| KeyError::WrongMasterKey)?;
        if bytes.len() < 24 {
            return Err(KeyError::WrongMasterKey);
        }
        let (nonce, sealed) = bytes.split_at(24);
        let aad = child.to_string();
        let key = self
            .master
            .cipher()
            .decrypt(XNonce::from_slice(nonce), Payload { msg: sealed, aad: aad.as_bytes() })
            .map_err(|_| KeyError::WrongMasterKey)?;
        let key = <[u8; 32]>::try_from(key.as_slice()).map_err(|_| KeyError::WrongMasterKey)?;
        Ok(DataKey::from_bytes(key))
    }
}

/// Children's data keys for the projector's identifier index. It only ever
/// reads keys: a child without one (erased, or never given personal data)
/// is simply not indexed.
#[derive(Debug)]
pub struct ProjectorKeys {
    store: std::sync::Arc<KeyStore>,
    lookup: [u8; 32],
}

impl ProjectorKeys {
    pub fn new(store: std::sync::Arc<KeyStore>, master: &MasterKey) -> Self {
        Self { lookup: master.lookup_key(), store }
    }
}

impl events::privacy::ChildKeys for ProjectorKeys {
    fn key(&self, child: uuid::Uuid) -> events::privacy::KeyFuture<'_> {
        Box::pin(async move { self.store.existing_key(&ChildId::from_uuid(child)).await.map_err(Into::into) })
    }

    fn lookup_key(&self) -> &[u8; 32] {
        &self.lookup
    }
}
