//! What the gateway must know about a subject before it appends to it,
//! folded from that subject's own history in the stream.
//!
//! The gateway never reads Postgres. A subject's state (position, head hash,
//! whether it is registered, its council, and the ids already stored in it)
//! is loaded on demand by reading the subject's messages from the stream,
//! cached, and brought up to date from the cached position whenever
//! JetStream refuses a write because another writer got there first.

use async_nats::jetstream::stream::{RawMessageErrorKind, Stream};
use chrono::{DateTime, Utc};
use events::catalogue::{EventData, EventType};
use events::chain::{Digest, Head, Signers};
use events::envelope::{StoredEvent, Subject};
use events::ids::{EventId, PrincipalName};
use events::standing::Standing;
use events::subjects;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::OwnedMutexGuard;

/// An event already stored in a subject, by (publisher, id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Known {
    pub event_type: EventType,
    pub sequence: u64,
    /// Where it is in the stream (0 while it is only planned).
    pub stream_seq: u64,
}

#[derive(Debug, Clone)]
pub struct SubjectState {
    /// The subject's last position; 0 before its first event.
    pub sequence: u64,
    pub head: Digest,
    /// The stream sequence of the head, for JetStream's
    /// expected-last-subject-sequence check; 0 before the first event.
    pub last_stream_seq: u64,
    /// Whether it is registered and whose it is: the same fold the read
    /// side makes, so the two agree (events::standing).
    pub standing: Standing,
    pub ids: HashMap<(PrincipalName, EventId), Known>,
}

impl SubjectState {
    pub fn new(subject: &Subject) -> Self {
        Self {
            sequence: 0,
            head: Digest::ZERO,
            last_stream_seq: 0,
            standing: Standing::new(subject),
            ids: HashMap::new(),
        }
    }

    /// Folds one stored event in, if it is the subject's next true event
    /// (`events::chain::takes`): signed by the gateway and linked to the
    /// head. Anything else on the subject (a message some other process put
    /// there, a replay) moves only the stream position JetStream checks
    /// writes against, so the next true event still links to the last one.
    pub fn apply(&mut self, event: &StoredEvent, stream_seq: u64, signers: &dyn Signers) {
        self.last_stream_seq = stream_seq;
        let head = (self.sequence > 0).then_some(Head { sequence: self.sequence, hash: self.head });
        if let Err(why) =
            events::chain::takes(head, event.sequence, &event.prevhash, &event.hash, &event.signature, signers)
        {
            tracing::warn!(stream_seq, reason = %why, "passed over a message on an event subject that is not the subject's next true event");
            return;
        }
        let key = (event.source.clone(), event.id.clone());
        self.advance(key, event.time.to_utc(), &event.data, event.sequence, event.hash, stream_seq);
    }

    /// The subject after one more event by `key.0`, happening at `time`:
    /// stored (from [`SubjectState::apply`]) or planned (`stream_seq` 0
    /// until it is committed).
    pub fn advance(
        &mut self,
        key: (PrincipalName, EventId),
        time: DateTime<Utc>,
        data: &EventData,
        sequence: u64,
        hash: Digest,
        stream_seq: u64,
    ) {
        self.sequence = sequence;
        self.head = hash;
        self.standing.apply(&key.0, &key.1, sequence, time, data);
        self.ids.insert(key, Known { event_type: data.event_type(), sequence, stream_seq });
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("the stream could not be read")]
    Unavailable(#[source] async_nats::jetstream::stream::RawMessageError),
    #[error("stream message {stream_seq} is not a stored event")]
    Corrupt {
        stream_seq: u64,
        #[source]
        cause: events::stored::DecodeError,
    },
}

/// Brings `state` up to date by reading the subject's messages after its
/// cached position, from the stream leader.
pub async fn catch_up(
    stream: &Stream,
    subject: &Subject,
    state: &mut SubjectState,
    signers: &dyn Signers,
) -> Result<(), LoadError> {
    let filter = subjects::event_subject(subject);
    loop {
        let next = stream
            .raw_message_builder()
            .sequence(state.last_stream_seq + 1)
            .next_by_subject(filter.clone())
            .send()
            .await;
        let message = match next {
            Ok(m) => m,
            Err(e) if e.kind() == RawMessageErrorKind::NoMessageFound => return Ok(()),
            Err(e) => return Err(LoadError::Unavailable(e)),
        };
        let decoded = events::stored::decode(&message.subject, &message.payload)
            .map_err(|cause| LoadError::Corrupt { stream_seq: message.sequence, cause })?;
        state.apply(&decoded.event, message.sequence, signers);
    }
}

/// Per-subject states with a lock each. One writer per subject at a time in
/// this gateway; writers in other gateways are caught by JetStream's
/// expected-last-subject-sequence check.
#[derive(Debug, Default)]
pub struct Cache {
    entries: Mutex<HashMap<Subject, Arc<tokio::sync::Mutex<Option<SubjectState>>>>>,
}

/// Subjects cached at most before idle ones are dropped.
const CACHE_LIMIT: usize = 200_000;

pub type Slot = OwnedMutexGuard<Option<SubjectState>>;

impl Cache {
    /// Locks every subject in `wanted` (in a fixed order, so two batches
    /// touching the same subjects cannot deadlock).
    pub async fn lock(&self, wanted: &[Subject]) -> Vec<(Subject, Slot)> {
        let mut sorted: Vec<Subject> = wanted.to_vec();
        sorted.sort();
        sorted.dedup();
        let mutexes: Vec<(Subject, Arc<tokio::sync::Mutex<Option<SubjectState>>>)> = {
            let Ok(mut entries) = self.entries.lock() else {
                return Vec::new();
            };
            if entries.len() > CACHE_LIMIT {
                // Drop states nobody holds; they reload on demand.
                entries.retain(|_, m| Arc::strong_count(m) > 1);
            }
            sorted.iter().map(|s| (s.clone(), entries.entry(s.clone()).or_default().clone())).collect()
        };
        let mut out = Vec::with_capacity(mutexes.len());
        for (subject, mutex) in mutexes {
            out.push((subject, mutex.lock_owned().await));
        }
        out
    }

    pub fn len(&self) -> usize {
        self.entries.lock().map(|e| e.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
