//! Reads of a replicated stream that must say what the stream holds.
//!
//! A consumer reads the copy of the server it is placed on, and the server
//! places a consumer of fewer replicas than its stream on a random online
//! server of the stream's (nats-server's `createGroupForConsumer`), not on
//! its leader. A follower may lack the newest messages, and a server
//! rejoining after an outage may for a while hold messages the leader
//! never kept. Either would make the read-back of [`crate::reconcile`]
//! remove true rows or keep untrue ones, and a count short. So these reads
//! make their consumer again until it lands with the stream's leader.

use async_nats::jetstream::{self, consumer};
use std::time::Duration;

/// How many times [`consumer`] makes a consumer before giving up.
const PLACEMENT_TRIES: usize = 24;

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("JetStream failed while placing a reader: {0}")]
    JetStream(String),
    #[error("no reader was placed with the stream's leader in {PLACEMENT_TRIES} tries")]
    NotPlaced,
}

fn failed(e: impl std::fmt::Display) -> ReadError {
    ReadError::JetStream(e.to_string())
}

/// Makes a one-replica, in-memory pull consumer with `config` that reads
/// `stream`'s leader's copy (on a single server, the only one). A try
/// placed elsewhere is dropped; one that cannot be (a role without the
/// right) is forgotten by the server after `config.inactive_threshold`.
/// `config.name` is replaced: each try has a name of its own.
pub async fn consumer(
    stream: &jetstream::stream::Stream,
    config: consumer::pull::Config,
) -> Result<consumer::PullConsumer, ReadError> {
    let config = consumer::pull::Config { num_replicas: 1, memory_storage: true, ..config };
    for _ in 0..PLACEMENT_TRIES {
        let info = stream.get_info().await.map_err(failed)?;
        // One replica has one copy; a stream between leaders has none to
        // prefer, and the read is as good as any other then.
        let leader = info.cluster.and_then(|c| c.leader).filter(|_| info.config.num_replicas > 1);
        let name = format!("sg-read-{}", uuid::Uuid::new_v4().simple());
        let mut consumer = stream
            .create_consumer(consumer::pull::Config { name: Some(name.clone()), ..config.clone() })
            .await
            .map_err(failed)?;
        let Some(leader) = leader else { return Ok(consumer) };
        let placed = consumer.info().await.map_err(failed)?.cluster.as_ref().and_then(|c| c.leader.clone());
        if placed.as_deref() == Some(leader.as_str()) {
            return Ok(consumer);
        }
        let _ = stream.delete_consumer(&name).await;
    }
    Err(ReadError::NotPlaced)
}

/// How many messages match `filter` in `stream` (0 when none), as its
/// leader holds them.
pub async fn count_matching(stream: &jetstream::stream::Stream, filter: &str) -> Result<u64, ReadError> {
    let config = consumer::pull::Config {
        filter_subject: filter.to_owned(),
        inactive_threshold: Duration::from_secs(10),
        ..Default::default()
    };
    // Not deleted: the server forgets it after `inactive_threshold`, and no
    // serving role may delete consumers (only the projector its own).
    Ok(consumer(stream, config).await?.cached_info().num_pending)
}
