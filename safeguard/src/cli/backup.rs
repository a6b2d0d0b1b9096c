//! `safeguard backup` and `safeguard restore`: the three streams that hold
//! everything not derivable (the events with their id index, the audit
//! stream, the bucket of wrapped data keys) copied message by message to
//! files, and put back into an empty NATS.
//!
//! A backup is a directory with one `<STREAM>.jsonl` per stream: a first
//! line with the stream's configuration and its first and last sequence,
//! then one line per message (`seq`, `subject`, `headers`, `payload` in
//! base64). It holds what the stream holds: personal fields sealed, data
//! keys wrapped by the master key, which is never in a backup (keep it
//! apart, as docs/operations.md, "Backup and restore", says).
//!
//! Restore refuses a stream that already holds messages. It republishes in
//! order, and for the event and audit streams, whose sequence numbers the
//! read models and checkpoints refer to, each message is published
//! expecting the stream's last sequence to be the one before it, so the
//! restored stream has exactly the original sequences or the restore
//! stops. The key bucket's sequences may differ (erasures leave gaps); its
//! keys and values are what count.

use anyhow::{Context as _, bail};
use async_nats::HeaderMap;
use async_nats::jetstream::{self, stream};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use futures::StreamExt as _;
use platform::bus::{self, AUDIT_STREAM, EVENTS_STREAM, KEYS_BUCKET};
use platform::config::NatsArgs;
use serde::{Deserialize, Serialize};
use std::io::{BufRead as _, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

#[derive(Debug, clap::Args)]
pub struct BackupArgs {
    #[command(flatten)]
    pub nats: NatsArgs,
    /// The directory to write (created; must not hold a backup already).
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct RestoreArgs {
    #[command(flatten)]
    pub nats: NatsArgs,
    /// A directory written by `safeguard backup`.
    #[arg(long)]
    pub from: PathBuf,
}

/// The streams a backup holds, in the order they are restored: keys before
/// the events that need them.
fn streams() -> [(String, bool); 3] {
    // (name, whether its sequences must be kept)
    [(format!("KV_{KEYS_BUCKET}"), false), (EVENTS_STREAM.to_owned(), true), (AUDIT_STREAM.to_owned(), true)]
}

#[derive(Debug, Serialize, Deserialize)]
struct Header {
    stream: String,
    config: stream::Config,
    first_seq: u64,
    last_seq: u64,
    messages: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct Line {
    seq: u64,
    subject: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    headers: Vec<(String, String)>,
    payload: String,
}

/// Headers the server acts on when a message is published (batches,
/// expectations, message ids): never replayed.
fn replayable(name: &str) -> bool {
    !name.to_ascii_lowercase().starts_with("nats-")
}

pub async fn backup(args: BackupArgs) -> anyhow::Result<()> {
    let client = bus::connect(&args.nats).await?;
    let js = jetstream::new(client);
    // Owner only, whatever the umask: a backup holds sealed personal data
    // and the wrapped data keys.
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    std::fs::set_permissions(&args.out, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("cannot restrict {}", args.out.display()))?;
    for (name, _) in streams() {
        let path = args.out.join(format!("{name}.jsonl"));
        if path.exists() {
            bail!("{} exists: write each backup to a new directory", path.display());
        }
        let mut stream = js.get_stream(&name).await.with_context(|| format!("no stream {name}"))?;
        let info = stream.info().await.with_context(|| format!("stream {name}"))?.clone();
        let (first, last) = (info.state.first_sequence, info.state.last_sequence);
        let partial = args.out.join(format!("{name}.jsonl.partial"));
        let mut out = std::io::BufWriter::new({
            // A partial file left by an interrupted backup is written afresh.
            let file = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&partial)
                .with_context(|| format!("cannot create {}", partial.display()))?;
            file.set_permissions(std::fs::Permissions::from_mode(0o600))
                .with_context(|| format!("cannot restrict {}", partial.display()))?;
            file
        });
        // The header counts what the stream held at the start; messages
        // stored after `last` are left for the next backup.
        let header = Header {
            stream: name.clone(),
            config: info.config.clone(),
            first_seq: first,
            last_seq: last,
            messages: info.state.messages,
        };
        writeln!(out, "{}", serde_json::to_string(&header)?)?;
        let mut count = 0u64;
        if info.state.messages > 0 {
            let mut messages = bus::read_ordered(&stream, ">", first).await?;
            while let Some(message) = messages.next().await {
                let message = message.with_context(|| format!("reading {name}"))?;
                let seq = message.info().map_err(|e| anyhow::anyhow!("{e}"))?.stream_sequence;
                let headers = message
                    .headers
                    .as_ref()
                    .map(|h| {
                        h.iter()
                            .filter(|(k, _)| replayable(k.as_ref()))
                            .flat_map(|(k, vs)| vs.iter().map(move |v| (k.to_string(), v.to_string())))
                            .collect()
                    })
                    .unwrap_or_default();
                let line = Line {
                    seq,
                    subject: message.subject.to_string(),
                    headers,
                    payload: STANDARD.encode(&message.payload),
                };
                writeln!(out, "{}", serde_json::to_string(&line)?)?;
                count += 1;
                if seq >= last {
                    break;
                }
            }
        }
        if count != header.messages {
            bail!("{name} changed while it was read ({count} of {} messages): run the backup again", header.messages);
        }
        out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(&partial, &path)?;
        eprintln!("safeguard backup: {name}: {count} messages, sequences {first} to {last}");
    }
    Ok(())
}

pub async fn restore(args: RestoreArgs) -> anyhow::Result<()> {
    let client = bus::connect(&args.nats).await?;
    let js = jetstream::new(client.clone());
    for (name, keep_sequences) in streams() {
        restore_stream(&js, &args.from, &name, keep_sequences, args.nats.replicas).await?;
    }
    Ok(())
}

async fn restore_stream(
    js: &jetstream::Context,
    dir: &Path,
    name: &str,
    keep_sequences: bool,
    replicas: usize,
) -> anyhow::Result<()> {
    let path = dir.join(format!("{name}.jsonl"));
    let file = std::fs::File::open(&path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut lines = std::io::BufReader::new(file).lines();
    let header: Header = serde_json::from_str(&lines.next().context("an empty backup file")??)
        .with_context(|| format!("{}: the first line is not a backup header", path.display()))?;
    if let Ok(mut existing) = js.get_stream(name).await
        && existing.info().await?.state.messages > 0
    {
        bail!("{name} already holds messages: restore only into an empty NATS");
    }
    let config = stream::Config { num_replicas: replicas, ..header.config.clone() };
    js.get_or_create_stream(config).await.with_context(|| format!("cannot create {name}"))?;
    let mut pending = std::collections::VecDeque::new();
    let mut previous: Option<u64> = None;
    let mut restored = 0u64;
    for (n, line) in lines.enumerate() {
        let line: Line = serde_json::from_str(&line?).with_context(|| format!("{}: line {}", path.display(), n + 2))?;
        let mut headers = HeaderMap::new();
        for (k, v) in &line.headers {
            headers.append(k.as_str(), v.as_str());
        }
        if keep_sequences {
            let expected = previous.unwrap_or(header.first_seq.saturating_sub(1));
            if line.seq != expected + 1 {
                bail!("{name}: a gap in the backup before sequence {}: its sequences cannot be kept", line.seq);
            }
            headers.insert("Nats-Expected-Last-Sequence", expected.to_string().as_str());
        }
        let payload = STANDARD.decode(&line.payload).with_context(|| format!("{}: line {}", path.display(), n + 2))?;
        let ack = js.publish_with_headers(line.subject, headers, payload.into()).await?;
        pending.push_back((line.seq, ack));
        previous = Some(line.seq);
        // Acknowledgements are awaited a window behind, in order.
        while pending.len() > 512 {
            restored += confirm(pending.pop_front(), keep_sequences).await?;
        }
    }
    while let Some(next) = pending.pop_front() {
        restored += confirm(Some(next), keep_sequences).await?;
    }
    if restored != header.messages {
        bail!("{name}: restored {restored} messages of {}", header.messages);
    }
    eprintln!("safeguard restore: {name}: {restored} messages");
    Ok(())
}

async fn confirm(
    next: Option<(u64, jetstream::context::PublishAckFuture)>,
    keep_sequences: bool,
) -> anyhow::Result<u64> {
    let Some((seq, ack)) = next else { return Ok(0) };
    let ack = ack.await.with_context(|| format!("sequence {seq} was not stored"))?;
    if keep_sequences && ack.sequence != seq {
        bail!("sequence {seq} was stored as {}", ack.sequence);
    }
    Ok(1)
}
