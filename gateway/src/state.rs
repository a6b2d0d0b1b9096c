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
    pub ids: Ids,
}

/// The ids stored in a subject, by (publisher, id): every one of its
/// history, so a child's may run to thousands.
///
/// A request plans on a copy of its subjects' states and keeps the cached
/// state untouched until its write is acknowledged, so that a refused
/// request leaves the cache as it was. Copying every id for each request
/// made one event on a long history allocate about a megabyte
/// (`tests/heap.rs`). So the ids known before a request are shared between
/// the cached state and the copy (`settled`), and what a request or a
/// catch-up adds goes beside them (`recent`) until the next copy is made.
#[derive(Debug, Clone, Default)]
pub struct Ids {
    settled: Arc<HashMap<(PrincipalName, EventId), Known>>,
    recent: HashMap<(PrincipalName, EventId), Known>,
}

impl Ids {
    pub fn get(&self, key: &(PrincipalName, EventId)) -> Option<&Known> {
        self.recent.get(key).or_else(|| self.settled.get(key))
    }

    /// For updating an id's stream position once its write is acknowledged.
    pub fn get_mut(&mut self, key: &(PrincipalName, EventId)) -> Option<&mut Known> {
        if !self.recent.contains_key(key) {
            let known = self.settled.get(key)?.clone();
            self.recent.insert(key.clone(), known);
        }
        self.recent.get_mut(key)
    }

    pub fn insert(&mut self, key: (PrincipalName, EventId), known: Known) {
        self.recent.insert(key, known);
    }

    /// How many ids are known.
    pub fn len(&self) -> usize {
        self.settled.len() + self.recent.keys().filter(|k| !self.settled.contains_key(*k)).count()
    }

    pub fn is_empty(&self) -> bool {
        self.settled.is_empty() && self.recent.is_empty()
    }

    /// Moves what was added into the shared part. The shared part is
    /// copied only if another copy still holds it, which the cache's own
    /// state, the one copy left once a request is done, never does. The
    /// added part is left empty and without capacity: a copy of a map
    /// copies its table, however few it holds, and a catch-up over a whole
    /// history leaves a large one.
    fn settle(&mut self) {
        if !self.recent.is_empty() {
            let recent = std::mem::take(&mut self.recent);
            Arc::make_mut(&mut self.settled).extend(recent);
        }
    }
}

impl SubjectState {
    pub fn new(subject: &Subject) -> Self {
        Self {
            sequence: 0,
            head: Digest::ZERO,
            last_stream_seq: 0,
            standing: Standing::new(subject),
            ids: Ids::default(),
        }
    }

    /// A copy to plan a request on, sharing the ids known so far with
    /// `self` rather than copying them (see [`Ids`]).
    pub fn copy_to_plan_on(&mut self) -> Self {
        self.ids.settle();
        self.clone()
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
///
/// Bounded by the events its states know, not by how many subjects it
/// holds: each state knows every id of its subject, and a child's history
/// may hold ten events or ten thousand. A bound of 200,000 subjects let the
/// gateway grow past 800 MB in the ten-million-event run (`ops/bench
/// --scale`). Past the budget, the states used longest ago that no request
/// holds are dropped; they reload from the stream on demand.
#[derive(Debug)]
pub struct Cache {
    inner: Mutex<Entries>,
    budget: usize,
}

#[derive(Debug, Default)]
struct Entries {
    map: HashMap<Subject, Entry>,
    /// Counts locks, for recency.
    tick: u64,
    /// Locks since the states were last weighed.
    since_weighed: usize,
}

#[derive(Debug)]
struct Entry {
    state: Arc<tokio::sync::Mutex<Option<SubjectState>>>,
    /// The tick it was last locked at.
    used: u64,
}

/// Events the cached states know at most, once weighed: at about 150 bytes
/// an id, some 40 MB.
pub const EVENTS_CACHED: usize = 250_000;
/// Locks between two weighings. A subject's state grows between them by
/// at most the requests' events (up to 1,000 each).
const WEIGH_EVERY: usize = 256;

impl Default for Cache {
    fn default() -> Self {
        Self::with_budget(EVENTS_CACHED)
    }
}

pub type Slot = OwnedMutexGuard<Option<SubjectState>>;

impl Cache {
    /// A cache whose states know at most about `events` events once weighed.
    pub fn with_budget(events: usize) -> Self {
        Self { inner: Mutex::new(Entries::default()), budget: events.max(1) }
    }

    /// Locks every subject in `wanted` (in a fixed order, so two batches
    /// touching the same subjects cannot deadlock).
    pub async fn lock(&self, wanted: &[Subject]) -> Vec<(Subject, Slot)> {
        let mut sorted: Vec<Subject> = wanted.to_vec();
        sorted.sort();
        sorted.dedup();
        let mutexes: Vec<(Subject, Arc<tokio::sync::Mutex<Option<SubjectState>>>)> = {
            let Ok(mut entries) = self.inner.lock() else {
                return Vec::new();
            };
            entries.tick += 1;
            entries.since_weighed += 1;
            if entries.since_weighed >= WEIGH_EVERY || entries.map.len() > self.budget {
                entries.trim(self.budget);
            }
            let tick = entries.tick;
            sorted
                .iter()
                .map(|s| {
                    let entry =
                        entries.map.entry(s.clone()).or_insert_with(|| Entry { state: Arc::default(), used: tick });
                    entry.used = tick;
                    (s.clone(), entry.state.clone())
                })
                .collect()
        };
        let mut out = Vec::with_capacity(mutexes.len());
        for (subject, mutex) in mutexes {
            out.push((subject, mutex.lock_owned().await));
        }
        out
    }

    /// The events the states no request holds know now (each state counts
    /// one at least).
    pub fn weight(&self) -> usize {
        self.inner.lock().map(|e| e.weigh().0).unwrap_or(0)
    }

    pub fn len(&self) -> usize {
        self.inner.lock().map(|e| e.map.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Entries {
    /// The events the states nobody holds know, and those states (last
    /// used, subject, weight). A state a request holds or waits for is in
    /// use and neither weighed nor dropped: no new request can reach it
    /// while `self` is locked.
    fn weigh(&self) -> (usize, Vec<(u64, Subject, usize)>) {
        let mut total = 0;
        let mut idle = Vec::new();
        for (subject, entry) in &self.map {
            if Arc::strong_count(&entry.state) > 1 {
                continue;
            }
            let Ok(state) = entry.state.try_lock() else { continue };
            let weight = state.as_ref().map_or(0, |s| s.ids.len()) + 1;
            total += weight;
            idle.push((entry.used, subject.clone(), weight));
        }
        (total, idle)
    }

    /// Drops the states used longest ago until those left know at most
    /// three quarters of `budget` events, if they know more than `budget`.
    fn trim(&mut self, budget: usize) {
        self.since_weighed = 0;
        let (mut total, mut idle) = self.weigh();
        if total <= budget {
            return;
        }
        idle.sort_unstable_by_key(|(used, ..)| *used);
        for (_, subject, weight) in idle {
            if total <= budget / 4 * 3 {
                break;
            }
            self.map.remove(&subject);
            total -= weight;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use events::ids::ChildId;

    fn child() -> Subject {
        Subject::Child(ChildId::parse(&uuid::Uuid::new_v4().to_string()).expect("an id"))
    }

    /// A subject's state that knows `events` events.
    fn knowing(subject: &Subject, events: usize) -> SubjectState {
        let mut state = SubjectState::new(subject);
        let publisher = PrincipalName::parse("haringey").expect("a name");
        for i in 0..events {
            let id = EventId::parse(&format!("e-{i}")).expect("an id");
            state.ids.insert(
                (publisher.clone(), id),
                Known { event_type: EventType::ChildSeen, sequence: 1, stream_seq: 1 },
            );
        }
        state
    }

    #[test]
    fn a_copy_to_plan_on_knows_every_id_and_what_it_adds_stays_its_own() {
        let subject = child();
        let mut cached = knowing(&subject, 3);
        let publisher = PrincipalName::parse("haringey").expect("a name");
        let key = |i: usize| (publisher.clone(), EventId::parse(&format!("e-{i}")).expect("an id"));
        let mut planned = cached.copy_to_plan_on();
        assert_eq!(planned.ids.len(), 3);
        planned.ids.insert(key(3), Known { event_type: EventType::ChildSeen, sequence: 4, stream_seq: 0 });
        // Acknowledged: an id known before moves its position in the copy only.
        planned.ids.get_mut(&key(0)).expect("known").stream_seq = 99;
        assert_eq!(planned.ids.len(), 4, "an id updated in the copy is counted once");
        assert_eq!(planned.ids.get(&key(0)).map(|k| k.stream_seq), Some(99));
        assert_eq!(cached.ids.len(), 3);
        assert_eq!(cached.ids.get(&key(0)).map(|k| k.stream_seq), Some(1), "the cached state is as it was");
        assert!(cached.ids.get(&key(3)).is_none());
        // The copy becomes the cached state, and the next copy knows all of it.
        let mut cached = planned;
        let next = cached.copy_to_plan_on();
        assert_eq!(next.ids.len(), 4);
        assert_eq!(next.ids.get(&key(0)).map(|k| k.stream_seq), Some(99));
        assert!(next.ids.get(&key(3)).is_some());
    }

    #[tokio::test]
    async fn the_cache_is_bounded_by_the_events_its_states_know_and_keeps_what_is_in_use_and_used_last() {
        let cache = Cache::with_budget(1_000);
        // Held throughout: in use, so never dropped however old.
        let held_subject = child();
        let mut held = cache.lock(std::slice::from_ref(&held_subject)).await;
        *held[0].1 = Some(knowing(&held_subject, 500));
        // Long histories, then short ones: many more events than the budget.
        let mut subjects = Vec::new();
        for n in 0..600 {
            let subject = child();
            let mut slots = cache.lock(std::slice::from_ref(&subject)).await;
            *slots[0].1 = Some(knowing(&subject, if n < 20 { 200 } else { 3 }));
            subjects.push(subject);
        }
        let weight = cache.weight();
        assert!(weight <= 1_000 + WEIGH_EVERY * 4, "the idle states know {weight} events");
        {
            let entries = cache.inner.lock().expect("lock");
            assert!(entries.map.contains_key(&held_subject), "a held state stays");
            assert!(entries.map.contains_key(subjects.last().expect("one")), "the one used last stays");
            assert!(!entries.map.contains_key(&subjects[0]), "the long history used first went");
        }
        // What went reloads as empty: the request brings it up to date from the stream.
        let again = cache.lock(std::slice::from_ref(&subjects[0])).await;
        assert!(again[0].1.is_none());
    }
}
