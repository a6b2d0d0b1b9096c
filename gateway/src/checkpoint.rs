//! The gateway's checkpointer: follows the event stream, keeping every
//! subject's head, and every interval, when the stream has moved, publishes
//! a signed checkpoint (`events::checkpoint`) on `sg.audit.checkpoint`.
//!
//! Checkpoints chain: each names the hash of the one before it, and is
//! published expecting that one to be the last on the subject, so two
//! gateways never fork the chain (the loser skips its turn). A checkpoint is
//! only made when the follower has read everything the stream held when it
//! last looked, so its root is over a consistent prefix of the stream.

use async_nats::jetstream;
use ed25519_dalek::SigningKey;
use events::chain::Digest;
use events::{checkpoint, subjects};
use futures::StreamExt as _;
use platform::bus;
use std::time::Duration;

/// What the follower reads of each event: no more than it needs.
#[derive(serde::Deserialize)]
struct HeadOf {
    subject: String,
    sequence: u64,
    hash: String,
}

/// Runs until the task is dropped. Failures (NATS away) are logged and
/// retried from the start of the stream.
/// `keys` are every public key the gateway has signed with (the last
/// checkpoint may be signed by a key since rotated out).
pub async fn run(
    js: jetstream::Context,
    signing: SigningKey,
    keys: Vec<ed25519_dalek::VerifyingKey>,
    interval: Duration,
) {
    loop {
        if let Err(e) = follow(&js, &signing, &keys, interval).await {
            tracing::warn!(error = %e, "checkpointer interrupted; starting again");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn follow(
    js: &jetstream::Context,
    signing: &SigningKey,
    keys: &[ed25519_dalek::VerifyingKey],
    interval: Duration,
) -> anyhow::Result<()> {
    let events = js.get_stream(bus::EVENTS_STREAM).await?;
    let audit = js.get_stream(bus::AUDIT_STREAM).await?;
    let mut messages = bus::read_ordered(&events, subjects::EVENTS_FILTER, 1).await?;
    // Every subject's head, for ever: the checkpointer's memory grows with
    // the subjects, about 100 bytes each (a national stream's eight million
    // children would take most of a gigabyte; see ARCHITECTURE.md).
    let mut heads = checkpoint::HashedHeads::default();
    let mut covers = 0u64;
    let mut count = 0u64;
    let mut caught_up = false;
    let mut published = last_checkpoint(&audit, keys).await?.map_or(0, |(_, cp)| cp.covers);
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            message = messages.next() => {
                let message = message
                    .ok_or_else(|| anyhow::anyhow!("the event stream reader ended"))?
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                let info = message.info().map_err(|e| anyhow::anyhow!("{e}"))?;
                covers = info.stream_sequence;
                caught_up = info.pending == 0;
                let head: HeadOf = serde_json::from_slice(&message.payload)?;
                let hash = Digest::parse(&head.hash).map_err(|m| anyhow::anyhow!("stream position {covers}: {m}"))?;
                heads.set(&head.subject, head.sequence, hash);
                count += 1;
            }
            _ = tick.tick() => {
                if caught_up
                    && covers > published
                    && let Some(made) = publish(js, &audit, (signing, keys), (covers, count), &heads).await?
                {
                    published = made;
                }
            }
        }
    }
}

/// The last checkpoint on the audit stream and its audit sequence.
async fn last_checkpoint(
    audit: &jetstream::stream::Stream,
    keys: &[ed25519_dalek::VerifyingKey],
) -> anyhow::Result<Option<(u64, checkpoint::Checkpoint)>> {
    use async_nats::jetstream::stream::RawMessageErrorKind;
    match audit.raw_message_builder().last_by_subject(subjects::CHECKPOINT).send().await {
        Ok(message) => {
            let cp = checkpoint::open(&message.payload, keys)
                .map_err(|e| anyhow::anyhow!("the last checkpoint does not verify: {e}"))?;
            Ok(Some((message.sequence, cp)))
        }
        Err(e) if e.kind() == RawMessageErrorKind::NoMessageFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Publishes a checkpoint over `heads` at `covers`; returns the position
/// now covered by the last checkpoint (None if another gateway got there first).
async fn publish(
    js: &jetstream::Context,
    audit: &jetstream::stream::Stream,
    (signing, keys): (&SigningKey, &[ed25519_dalek::VerifyingKey]),
    (covers, events): (u64, u64),
    heads: &checkpoint::HashedHeads,
) -> anyhow::Result<Option<u64>> {
    let last = last_checkpoint(audit, keys).await?;
    if let Some((_, cp)) = &last
        && cp.covers >= covers
    {
        return Ok(Some(cp.covers));
    }
    let previous = last.as_ref().map_or(Digest::ZERO, |(_, cp)| cp.hash);
    let root = heads.root();
    let counts = (heads.len() as u64, events);
    let doc = checkpoint::sign(bus::EVENTS_STREAM, covers, counts, &root, &previous, chrono::Utc::now(), signing);
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(
        async_nats::header::NATS_EXPECTED_LAST_SUBJECT_SEQUENCE,
        last.as_ref().map_or(0, |(seq, _)| *seq).to_string().as_str(),
    );
    let payload = serde_json::to_vec(&doc)?;
    let ack = js.publish_with_headers(subjects::CHECKPOINT, headers, payload.into()).await?;
    match ack.await {
        Ok(_) => {
            tracing::info!(covers, subjects = heads.len(), root = %root, "published a checkpoint");
            Ok(Some(covers))
        }
        // Another gateway published first; its checkpoint stands and this one is not needed.
        Err(e) if e.kind() == async_nats::jetstream::context::PublishErrorKind::WrongLastSequence => Ok(None),
        Err(e) => Err(e.into()),
    }
}
