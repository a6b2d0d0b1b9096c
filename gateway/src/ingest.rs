//! From a publisher's events to signed, chained, sealed messages on
//! JetStream: the order of checks, the per-subject planning, and the
//! retry when another writer moves a subject on.
//!
//! Order (CONTRACT.md "Events in"): permissions first (403, before anything
//! is validated), then every event's structure (422), then references to
//! each subject's own history (422, 403 for council scope, 409 for
//! sequences and reused ids). Only when the whole request passes is anything
//! stored, and then as atomic batches.

use crate::checks;
use crate::error::{ApiError, FieldError, KnownStored};
use crate::publish::{self, Outgoing, PublishError};
use crate::state::{self, Cache, SubjectState};
use async_nats::jetstream::stream::{RawMessageErrorKind, Stream};
use bytes::Bytes;
use chrono::{DateTime, FixedOffset, Utc};
use ed25519_dalek::SigningKey;
use events::canonical::canonical;
use events::catalogue::{EventData, EventType};
use events::chain::{self, Digest};
use events::envelope::{ReceivedEvent, Stamp, Subject, format_time, parse_received};
use events::ids::{EventId, PrincipalName};
use events::privacy::{self, DataKey};
use events::{personal_pointers, subjects};
use futures::{StreamExt as _, TryStreamExt as _};
use platform::keystore::{KeyError, KeyStore};
use platform::principals::Principal;
use rand::RngCore;
use serde::Serialize;
use serde_json::{Map, Value, json};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Events per round of writes: each travels with its id's claim, and an
/// atomic batch holds at most 1,000 messages.
const EVENTS_PER_BATCH: usize = publish::MAX_BATCH_MESSAGES / 2;

/// How often a request is planned again after another writer moved one of
/// its subjects on. The request's deadline (the publish timeout) is the real
/// bound; this only stops a loop that could never succeed.
const MAX_ATTEMPTS: u32 = 1000;
/// JetStream reads a request keeps in flight at once while it catches its
/// subjects up and reads what a resend names. Each read is a round trip;
/// a cold batch of 1,000 events needs one or two an event, and one after
/// another they outlasted the publish timeout against a JetStream a
/// network hop away (`tests/gateway.rs`).
const READS_IN_FLIGHT: usize = 64;

/// What the publisher gets back for each event, in request order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct EventResult {
    pub id: String,
    pub subject: String,
    /// 1-based position in the subject's history.
    pub sequence: u64,
    /// Position in the event stream.
    pub stream_sequence: u64,
    pub recorded_at: String,
    pub hash: String,
    /// True when the event had been stored before; the values are the original's.
    pub duplicate: bool,
}

/// Everything ingest needs, shared by all requests.
pub struct Ingest {
    pub client: async_nats::Client,
    /// Every write goes through it, so concurrent requests share commits.
    pub committer: publish::Committer,
    pub stream: Stream,
    pub keys: Arc<KeyStore>,
    pub signing: SigningKey,
    /// The gateway's public keys, every one it has signed with: what its
    /// fold of a subject takes as true (`state::SubjectState::apply`).
    pub signers: Arc<dyn events::chain::Signers>,
    pub cache: Cache,
    pub publish_timeout: Duration,
    /// Whether a lone event, with nothing else being written, goes as its
    /// claim and then itself in two plain publishes rather than one atomic
    /// batch of the two: faster on a stream of one replica, where JetStream
    /// stages an atomic batch on disk; slower on a replicated stream, where
    /// an atomic batch costs one Raft round like a plain publish (the rows
    /// of `ops/bench` on both).
    pub lone_event_as_two_publishes: bool,
    pub metrics: Arc<crate::metrics::Metrics>,
}

impl std::fmt::Debug for Ingest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ingest").field("publish_timeout", &self.publish_timeout).finish_non_exhaustive()
    }
}

/// Checks that need nothing but the principal and the raw event: who may
/// publish what. Done before validation, so a principal learns nothing about
/// the validity of events it may not send.
pub fn check_permissions(principal: &Principal, events: &[Value]) -> Result<(), ApiError> {
    let mut errors = Vec::new();
    for (i, event) in events.iter().enumerate() {
        if let Some(source) = event.get("source")
            && source.as_str() != Some(principal.name.as_str())
        {
            errors.push(FieldError::new(
                i,
                "/source",
                "must be this principal's own name, or be left out: the gateway stamps it",
            ));
        }
        if let Some(event_type) = event.get("type").and_then(Value::as_str).and_then(EventType::from_name)
            && let Err(why) = principal.may_publish(event_type)
        {
            errors.push(FieldError::new(i, "/type", why));
        }
        if event.get("recordedat").is_some() && !principal.is_admin() {
            errors.push(FieldError::new(i, "/recordedat", "only an admin import may carry an original recordedat"));
        }
    }
    if errors.is_empty() { Ok(()) } else { Err(ApiError::Forbidden { errors }) }
}

/// Parses every event, reporting every problem of every event at once.
pub fn validate(events: &[Value], now: DateTime<Utc>) -> Result<Vec<ReceivedEvent>, ApiError> {
    let mut errors = Vec::new();
    let mut parsed = Vec::with_capacity(events.len());
    let mut first_index: HashMap<&str, usize> = HashMap::new();
    for (i, event) in events.iter().enumerate() {
        match parse_received(event, now) {
            Ok(e) => parsed.push(e),
            Err(problems) => {
                errors.extend(problems.into_iter().map(|p| FieldError::new(i, p.pointer, p.message)));
            }
        }
        if let Some(id) = event.get("id").and_then(Value::as_str)
            && let Some(earlier) = first_index.insert(id, i)
        {
            errors.push(FieldError::new(i, "/id", format!("repeats the id of event {earlier} in this batch")));
            first_index.insert(id, earlier);
        }
    }
    if errors.is_empty() { Ok(parsed) } else { Err(ApiError::Invalid { errors }) }
}

/// One event's fate in a plan.
#[derive(Debug, Clone)]
enum Slot {
    /// Stored before: the original's result.
    Earlier(EventResult),
    /// To be stored now.
    New,
    /// Refused; the plan fails with the reason.
    Refused,
}

#[derive(Debug, Clone)]
struct NewEvent {
    request_index: usize,
    subject: Subject,
    id: EventId,
    sequence: u64,
    hash: Digest,
    recorded_at: String,
    event_type: EventType,
    /// The stored document, hashed and not yet signed.
    unsigned: Map<String, Value>,
    /// The id's claim in the id index; `None` when an earlier attempt
    /// claimed it for this subject and its event was never stored.
    claim: Option<Outgoing>,
    event_message: Outgoing,
}

#[derive(Debug)]
struct Plan {
    slots: Vec<Slot>,
    new: Vec<NewEvent>,
    /// The states as they will be once the new events are stored (stream
    /// sequences are filled in after commit).
    after: HashMap<Subject, SubjectState>,
    /// Each subject's last stream sequence as planned against: what the
    /// subject's first write expects.
    before: HashMap<Subject, u64>,
}

/// Signs the planned events and turns them into the bytes to publish, on
/// every core. Each event's hash is fixed by the plan, one event after
/// another, since each names the one before it; the signatures and the
/// bytes depend on nothing but their own event, and signing is most of the
/// CPU a stored event costs.
async fn sign_all(key: &SigningKey, new: &mut [NewEvent]) -> Result<(), ApiError> {
    /// Below this, another thread costs more than it saves.
    const PER_TASK_AT_LEAST: usize = 64;
    let work: Vec<(Map<String, Value>, Digest)> =
        new.iter_mut().map(|n| (std::mem::take(&mut n.unsigned), n.hash)).collect();
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let per_task = work.len().div_ceil(cores).max(PER_TASK_AT_LEAST);
    let sign = |part: Vec<(Map<String, Value>, Digest)>, key: &SigningKey| {
        part.into_iter().map(|(doc, hash)| chain::signed(doc, key, &hash)).collect::<Result<Vec<Vec<u8>>, _>>()
    };
    let payloads: Vec<Vec<u8>> = if work.len() <= per_task {
        sign(work, key).map_err(|e| ApiError::Internal(e.into()))?
    } else {
        let mut parts = Vec::new();
        let mut rest = work.into_iter();
        loop {
            let part: Vec<_> = rest.by_ref().take(per_task).collect();
            if part.is_empty() {
                break;
            }
            let key = key.clone();
            parts.push(tokio::task::spawn_blocking(move || sign(part, &key)));
        }
        let mut payloads = Vec::with_capacity(new.len());
        for part in futures::future::join_all(parts).await {
            let part = part.map_err(|e| ApiError::Internal(e.into()))?;
            payloads.extend(part.map_err(|e| ApiError::Internal(e.into()))?);
        }
        payloads
    };
    for (n, payload) in new.iter_mut().zip(payloads) {
        n.event_message.payload = Bytes::from(payload);
    }
    Ok(())
}

/// Why planning stopped.
enum PlanError {
    Api(ApiError),
    /// The stream moved on under us; catch up and plan again.
    Stale,
    /// The child's data key was erased: personal fields cannot be sealed.
    Erased,
}

impl From<ApiError> for PlanError {
    fn from(e: ApiError) -> Self {
        Self::Api(e)
    }
}

impl Ingest {
    /// Stores `events` for `principal` and returns one result per event.
    #[tracing::instrument(name = "ingest", skip_all, fields(principal = %principal.name.as_str(), events = events.len()))]
    pub async fn ingest(
        &self,
        principal: &Principal,
        events: Vec<ReceivedEvent>,
        now: DateTime<Utc>,
    ) -> Result<Vec<EventResult>, ApiError> {
        let committed: Arc<Mutex<Vec<KnownStored>>> = Arc::default();
        let work = self.ingest_inner(principal, events, now, committed.clone());
        match tokio::time::timeout(self.publish_timeout, work).await {
            Ok(result) => result,
            Err(_) => {
                self.metrics.unavailable.inc();
                let stored = committed.lock().map(|c| c.clone()).unwrap_or_default();
                Err(ApiError::Unavailable {
                    detail: format!(
                        "JetStream did not answer within {:?}; events listed in `stored` are stored, and retrying the whole request with the same ids is safe",
                        self.publish_timeout
                    ),
                    stored,
                    cause: None,
                })
            }
        }
    }

    async fn ingest_inner(
        &self,
        principal: &Principal,
        mut events: Vec<ReceivedEvent>,
        now: DateTime<Utc>,
        committed: Arc<Mutex<Vec<KnownStored>>>,
    ) -> Result<Vec<EventResult>, ApiError> {
        let subjects: Vec<Subject> = events.iter().map(|e| e.subject.clone()).collect();
        let mut slots = self.cache.lock(&subjects).await;
        let recorded_at: DateTime<FixedOffset> = now.fixed_offset();
        // Ids this request itself stored, so a re-plan after a partial commit
        // does not call them duplicates.
        let mut ours: HashSet<(PrincipalName, EventId)> = HashSet::new();
        let mut check_index = false;

        for attempt in 0..MAX_ATTEMPTS {
            if attempt > 0 {
                // Writers in other gateways are racing for the same subjects:
                // back off a little, randomly, so one of them wins each round.
                let ceiling = 2u64.saturating_pow(attempt.min(6)) * 1_000;
                let micros = rand::random::<u64>() % ceiling;
                tokio::time::sleep(Duration::from_micros(micros)).await;
            }
            // Every subject's state: the cached one is trusted on the first
            // attempt (JetStream's expectations catch a stale cache); a subject
            // not cached, or any subject after a failed commit, is brought up
            // to date from the stream.
            let mut states: HashMap<Subject, SubjectState> = HashMap::new();
            let mut behind = Vec::new();
            for (i, (subject, slot)) in slots.iter_mut().enumerate() {
                let cached = slot.is_some();
                let mut st = slot.take().unwrap_or_else(|| SubjectState::new(subject));
                if cached && attempt == 0 {
                    states.insert(subject.clone(), st.copy_to_plan_on());
                    **slot = Some(st);
                } else {
                    behind.push((i, subject.clone(), st));
                }
            }
            // Side by side: each subject's catching up is a round trip per
            // message, and one subject after another a cold batch of 1,000
            // events took longer than the publish timeout against a
            // JetStream a network hop away (`READS_IN_FLIGHT`).
            let mut loading = futures::stream::iter(behind)
                .map(|(i, subject, mut st)| async move {
                    let loaded = state::catch_up(&self.stream, &subject, &mut st, &*self.signers).await;
                    (i, subject, st, loaded)
                })
                .buffer_unordered(READS_IN_FLIGHT);
            while let Some((i, subject, mut st, loaded)) = loading.next().await {
                let copy = st.copy_to_plan_on();
                if let Some((_, slot)) = slots.get_mut(i) {
                    **slot = Some(st);
                }
                let st = copy;
                loaded.map_err(|e| match e {
                    state::LoadError::Unavailable(e) => unavailable("JetStream could not be read", e, &committed),
                    // A stored message that is not an event is not an
                    // outage: refuse loudly rather than ask for retries.
                    corrupt @ state::LoadError::Corrupt { .. } => ApiError::Internal(corrupt.into()),
                })?;
                states.insert(subject, st);
            }

            let plan = match self.plan(principal, &mut events, states, recorded_at, check_index, &ours).await {
                Ok(plan) => plan,
                Err(PlanError::Api(e)) => return Err(e),
                Err(PlanError::Stale) => continue,
                // `plan` turns an erased key into a conflict naming the event; this is only a backstop.
                Err(PlanError::Erased) => {
                    return Err(ApiError::Conflict {
                        errors: vec![FieldError::new(0, "", "this child's personal data has been erased")],
                        current_sequence: None,
                    });
                }
            };

            let mut results: Vec<Option<EventResult>> = vec![None; plan.slots.len()];
            for (i, slot) in plan.slots.iter().enumerate() {
                if let Slot::Earlier(r) = slot {
                    results[i] = Some(r.clone());
                }
            }
            let mut after = plan.after;
            // What each subject's next write expects: the position planned
            // against, then the last event this request stored in it. Every
            // round expects it afresh, so a writer elsewhere that gets in
            // between two rounds of a long request refuses the second round
            // rather than forking the chain.
            let mut last_stream_seq = plan.before;
            let mut stale = false;
            for chunk in plan.new.chunks(EVENTS_PER_BATCH) {
                // An event is written only with or after its id's claim
                // (see `Self::plan`). Each subject's first event in the round
                // expects the subject's last sequence.
                let claims: Vec<Outgoing> = chunk.iter().filter_map(|n| n.claim.clone()).collect();
                let mut events = Vec::with_capacity(chunk.len());
                let mut seen: HashSet<&Subject> = HashSet::new();
                for n in chunk {
                    let mut message = n.event_message.clone();
                    if seen.insert(&n.subject) {
                        message.expect_last_subject_seq = Some(last_stream_seq.get(&n.subject).copied().unwrap_or(0));
                    }
                    events.push(message);
                }
                let started = std::time::Instant::now();
                let lone = claims.len() == 1 && events.len() == 1 && self.committer.is_idle();
                let outcome = if lone && self.lone_event_as_two_publishes {
                    // A lone event with nothing else being written, on one
                    // server: the claim, then the event, as two plain
                    // publishes. An atomic batch of the two would cost
                    // several times as long (`Self::lone_event_as_two_publishes`).
                    match self.committer.commit(claims).await {
                        Ok(_) => self.committer.commit(events).await,
                        Err(e) => Err(e),
                    }
                } else {
                    // Otherwise the round's claims and events as one atomic
                    // batch, claims first, shared with other requests' rounds
                    // by the group commit: all of it or none, so a request
                    // refused after a race (a 409) has stored no event.
                    let claimed = claims.len() as u64;
                    let mut messages = claims;
                    messages.extend(events);
                    self.committer.commit(messages).await.map(|done| publish::Committed {
                        first_stream_seq: done.first_stream_seq + claimed,
                        count: done.count - claimed,
                    })
                };
                let done = match outcome {
                    Ok(done) => done,
                    Err(PublishError::WrongLastSequence(_)) => {
                        stale = true;
                        break;
                    }
                    Err(e) => {
                        self.metrics.unavailable.inc();
                        return Err(unavailable("JetStream did not store the events", e, &committed));
                    }
                };
                self.metrics.commit_seconds.observe(started.elapsed().as_secs_f64());
                for (k, n) in chunk.iter().enumerate() {
                    let stream_seq = done.first_stream_seq + k as u64;
                    last_stream_seq.insert(n.subject.clone(), stream_seq);
                    if let Some(st) = after.get_mut(&n.subject) {
                        st.last_stream_seq = st.last_stream_seq.max(stream_seq);
                        if let Some(known) = st.ids.get_mut(&(principal.name.clone(), n.id.clone())) {
                            known.stream_seq = stream_seq;
                        }
                    }
                    ours.insert((principal.name.clone(), n.id.clone()));
                    self.metrics.stored.get_or_create(&crate::metrics::KindLabel::of(n.event_type)).inc();
                    results[n.request_index] = Some(EventResult {
                        id: n.id.as_str().to_owned(),
                        subject: n.subject.to_string(),
                        sequence: n.sequence,
                        stream_sequence: stream_seq,
                        recorded_at: n.recorded_at.clone(),
                        hash: n.hash.to_string(),
                        duplicate: false,
                    });
                    if let Ok(mut c) = committed.lock() {
                        c.push(KnownStored {
                            index: n.request_index,
                            id: n.id.as_str().to_owned(),
                            sequence: n.sequence,
                        });
                    }
                }
            }
            if stale {
                // Another writer got there first, or an id was used before:
                // catch up (the loop does) and check the id index this time.
                self.metrics.retries.inc();
                check_index = true;
                continue;
            }
            for (subject, slot) in slots.iter_mut() {
                if let Some(st) = after.remove(subject) {
                    **slot = Some(st);
                }
            }
            return results
                .into_iter()
                .map(|r| r.ok_or_else(|| ApiError::Internal(anyhow::anyhow!("an event has no result"))))
                .collect();
        }
        Err(ApiError::Unavailable {
            detail: "the subjects kept moving on under concurrent writers; retry the whole request".into(),
            stored: committed.lock().map(|c| c.clone()).unwrap_or_default(),
            cause: None,
        })
    }

    #[tracing::instrument(name = "plan", skip_all, fields(events = events.len(), subjects = states.len()))]
    async fn plan(
        &self,
        principal: &Principal,
        events: &mut [ReceivedEvent],
        mut states: HashMap<Subject, SubjectState>,
        recorded_at: DateTime<FixedOffset>,
        check_index: bool,
        ours: &HashSet<(PrincipalName, EventId)>,
    ) -> Result<Plan, PlanError> {
        let mut slots = Vec::with_capacity(events.len());
        let mut new = Vec::new();
        let mut forbidden = Vec::new();
        let mut invalid = Vec::new();
        let mut conflicts = Vec::new();
        let mut current_sequence = None;
        let mut seen_subjects: HashSet<Subject> = HashSet::new();
        // Stream sequences the subjects had before this request, for
        // JetStream's expectation on each subject's first message.
        let before: HashMap<Subject, u64> = states.iter().map(|(s, st)| (s.clone(), st.last_stream_seq)).collect();

        // What the loop below would otherwise read one event at a time, in
        // turn: the stored events this request names again (a resend), and
        // after a refused write the id index's entry of every other event.
        // Read side by side first (`READS_IN_FLIGHT`).
        let known = |e: &ReceivedEvent| {
            states
                .get(&e.subject)
                .and_then(|st| st.ids.get(&(principal.name.clone(), e.id.clone())))
                .map(|k| k.stream_seq)
        };
        let resent: HashSet<u64> = events.iter().filter_map(known).filter(|&seq| seq != 0).collect();
        let mut stored = self.fetch_all(resent).await?;
        let mut claims = if check_index {
            let unknown: Vec<EventId> = events.iter().filter(|e| known(e).is_none()).map(|e| e.id.clone()).collect();
            self.claimed_subjects(&principal.name, unknown).await?
        } else {
            HashMap::new()
        };

        for (i, event) in events.iter_mut().enumerate() {
            let subject = event.subject.clone();
            let first_of_subject = seen_subjects.insert(subject.clone());
            let Some(st) = states.get_mut(&subject) else {
                return Err(ApiError::Internal(anyhow::anyhow!("no state for a locked subject")).into());
            };
            let key = (principal.name.clone(), event.id.clone());

            // Corrections are checked against the type they correct first,
            // so that a retried correction compares like with like.
            if let EventData::RecordCorrected(correction) = &mut event.data
                && let Some(target) = st.ids.get(&(principal.name.clone(), correction.corrects.clone()))
                && let Err(problems) = correction.resolve(target.event_type, "/data")
            {
                invalid.extend(problems.into_iter().map(|p| FieldError::new(i, p.pointer, p.message)));
                slots.push(Slot::Refused);
                continue;
            }

            // Idempotency: this subject's own history first.
            if let Some(known) = st.ids.get(&key) {
                let stream_seq = known.stream_seq;
                if stream_seq == 0 {
                    // Known from this request's own planning but not yet
                    // committed: can only happen for repeated ids, which
                    // validation refuses.
                    return Err(PlanError::Stale);
                }
                // Read above: this loop adds only planned ids (position 0).
                let Some((doc, original)) = stored.remove(&stream_seq) else { return Err(PlanError::Stale) };
                let mut result = EventResult {
                    id: original.id.as_str().to_owned(),
                    subject: subject.to_string(),
                    sequence: original.sequence,
                    stream_sequence: stream_seq,
                    recorded_at: format_time(&original.recorded_at),
                    hash: original.hash.to_string(),
                    duplicate: true,
                };
                if ours.contains(&key) {
                    result.duplicate = false;
                    slots.push(Slot::Earlier(result));
                    continue;
                }
                if self.same_content(doc, &original, event).await? {
                    self.metrics.duplicates.inc();
                    slots.push(Slot::Earlier(result));
                } else {
                    conflicts.push(FieldError::new(
                        i,
                        "/id",
                        "was already used by this publisher for a different event",
                    ));
                    slots.push(Slot::Refused);
                }
                continue;
            }
            // Then, after a refused write, the id index across every subject.
            // An id claimed for this subject whose event is not in it was
            // claimed by a write that stopped between the two (or is still
            // racing us): its event is written now, without a new claim,
            // and the subject's expected sequence lets only one of the two
            // writers store it. An id claimed for another subject is taken.
            let mut claim_needed = true;
            // Read above, when the index is to be checked (empty otherwise).
            if let Some(claimed) = claims.remove(&event.id).flatten() {
                if claimed != subject.to_string() {
                    conflicts.push(FieldError::new(
                        i,
                        "/id",
                        "was already used by this publisher for a different event",
                    ));
                    slots.push(Slot::Refused);
                    continue;
                }
                claim_needed = false;
            }

            // The checks against the subject's state, in order (crate::checks).
            invalid.extend(checks::references(i, event, st));
            forbidden.extend(checks::scope(i, principal, event, st));
            if let Some(conflict) = checks::expectation(i, first_of_subject, event, st) {
                conflicts.push(conflict);
                current_sequence.get_or_insert(st.sequence);
            }
            invalid.extend(checks::amendment_target(i, principal, event, st));

            if !(forbidden.is_empty() && invalid.is_empty() && conflicts.is_empty()) {
                slots.push(Slot::Refused);
                continue;
            }

            // Stamp, seal personal data, chain and sign.
            let stamp = Stamp {
                source: principal.name.clone(),
                recorded_at: event.recorded_at.unwrap_or(recorded_at),
                sequence: st.sequence + 1,
                prevhash: st.head,
            };
            let (unsigned, hash) = match self.seal_and_hash(event, &stamp).await {
                Ok(sealed) => sealed,
                Err(PlanError::Erased) => {
                    let pointer = personal_pointers(&event.data, "/data").first().cloned().unwrap_or_default();
                    conflicts.push(FieldError::new(
                        i,
                        pointer,
                        "this child's personal data has been erased; record the fact without personal fields",
                    ));
                    slots.push(Slot::Refused);
                    continue;
                }
                Err(e) => return Err(e),
            };

            let index_payload = json!({ "subject": subject.to_string(), "sequence": stamp.sequence });
            let n = NewEvent {
                request_index: i,
                subject: subject.clone(),
                id: event.id.clone(),
                sequence: stamp.sequence,
                hash,
                recorded_at: format_time(&stamp.recorded_at),
                event_type: event.event_type,
                unsigned,
                claim: claim_needed.then(|| Outgoing {
                    subject: subjects::id_subject(&principal.name, &event.id),
                    payload: Bytes::from(index_payload.to_string()),
                    expect_last_subject_seq: Some(0),
                    trace: None,
                }),
                event_message: Outgoing {
                    subject: subjects::event_subject(&subject),
                    // Filled in by `sign_all` once the plan stands.
                    payload: Bytes::new(),
                    // Set when the event's run is written (see `ingest_inner`).
                    expect_last_subject_seq: None,
                    trace: event.trace.clone(),
                },
            };

            // The subject as it will be after this event.
            st.advance(key, event.time.to_utc(), &event.data, stamp.sequence, hash, 0);
            slots.push(Slot::New);
            new.push(n);
        }

        if !forbidden.is_empty() {
            return Err(ApiError::Forbidden { errors: forbidden }.into());
        }
        if !invalid.is_empty() {
            return Err(ApiError::Invalid { errors: invalid }.into());
        }
        if !conflicts.is_empty() {
            return Err(ApiError::Conflict { errors: conflicts, current_sequence }.into());
        }
        sign_all(&self.signing, &mut new).await?;
        Ok(Plan { slots, new, after: states, before })
    }

    /// The stored form of `event` at `stamp`: its personal fields sealed
    /// under the child's data key (none to seal, no key needed), chained and
    /// hashed; `sign_all` signs it. The document and its hash;
    /// `PlanError::Erased` if the child's key has been erased and there is
    /// something to seal.
    async fn seal_and_hash(
        &self,
        event: &ReceivedEvent,
        stamp: &Stamp,
    ) -> Result<(Map<String, Value>, Digest), PlanError> {
        let data = serde_json::to_value(&event.data).map_err(|e| ApiError::Internal(e.into()))?;
        let mut doc = Value::Object(event.to_unsealed(stamp, data));
        let pointers = personal_pointers(&event.data, "/data");
        // Every registered child has a data key from its registration on,
        // so whatever is later said about it (a reader's purpose on the audit
        // stream among it) can be sealed under a key that erasure reaches.
        let key = match (&event.subject, event.event_type) {
            (Subject::Child(child), events::EventType::ChildRegistered) => {
                Some(self.keys.key_for_new_child(child).await.map_err(key_error)?)
            }
            _ if !pointers.is_empty() => Some(self.data_key(&event.subject).await?),
            _ => None,
        };
        if let Some(key) = key.filter(|_| !pointers.is_empty()) {
            let subject_text = event.subject.to_string();
            privacy::seal_fields(
                &mut doc,
                &pointers,
                &key,
                (&subject_text, stamp.source.as_str(), event.id.as_str()),
                || {
                    let mut nonce = [0u8; 24];
                    rand::rngs::OsRng.fill_bytes(&mut nonce);
                    nonce
                },
            );
        }
        let Value::Object(unsealed) = doc else {
            return Err(ApiError::Internal(anyhow::anyhow!("a stored document is not an object")).into());
        };
        Ok(chain::hashed(unsealed))
    }

    /// The subject's data key: a child's, or a worker's (whose name is sealed under it).
    async fn data_key(&self, subject: &Subject) -> Result<DataKey, PlanError> {
        match subject {
            Subject::Child(child) => self.keys.key_for(child).await.map_err(key_error),
            Subject::Worker(worker) => self.keys.worker_key(worker).await.map_err(key_error),
            _ => Err(ApiError::Internal(anyhow::anyhow!("personal data on a subject that holds none")).into()),
        }
    }

    /// The subject the id index binds (publisher, id) to, if it is claimed.
    async fn claimed_subject(&self, source: &PrincipalName, id: &EventId) -> Result<Option<String>, PlanError> {
        let found = self.stream.raw_message_builder().last_by_subject(subjects::id_subject(source, id)).send().await;
        let message = match found {
            Ok(m) => m,
            Err(e) if e.kind() == RawMessageErrorKind::NoMessageFound => return Ok(None),
            Err(e) => {
                return Err(ApiError::unavailable("JetStream could not be read", e).into());
            }
        };
        let claim: Value = serde_json::from_slice(&message.payload).map_err(|e| {
            ApiError::Internal(anyhow::Error::new(e).context(format!("id index entry {}", message.sequence)))
        })?;
        match claim.get("subject").and_then(Value::as_str) {
            Some(subject) => Ok(Some(subject.to_owned())),
            None => {
                Err(ApiError::Internal(anyhow::anyhow!("id index entry {} names no subject", message.sequence)).into())
            }
        }
    }

    async fn fetch(&self, stream_seq: u64) -> Result<(Value, events::StoredEvent), PlanError> {
        let message = self
            .stream
            .raw_message_builder()
            .sequence(stream_seq)
            .send()
            .await
            .map_err(|e| PlanError::Api(ApiError::unavailable("JetStream could not be read", e)))?;
        let decoded = events::stored::decode(&message.subject, &message.payload)
            .map_err(|e| ApiError::Internal(anyhow::Error::new(e).context(format!("stream message {stream_seq}"))))?;
        Ok((decoded.document, decoded.event))
    }

    /// [`Self::fetch`] of each of `stream_seqs`, side by side.
    async fn fetch_all(
        &self,
        stream_seqs: impl IntoIterator<Item = u64>,
    ) -> Result<HashMap<u64, (Value, events::StoredEvent)>, PlanError> {
        futures::stream::iter(stream_seqs)
            .map(|seq| async move { Ok::<_, PlanError>((seq, self.fetch(seq).await?)) })
            .buffer_unordered(READS_IN_FLIGHT)
            .try_collect()
            .await
    }

    /// [`Self::claimed_subject`] of each of `ids`, side by side.
    async fn claimed_subjects(
        &self,
        source: &PrincipalName,
        ids: impl IntoIterator<Item = EventId>,
    ) -> Result<HashMap<EventId, Option<String>>, PlanError> {
        futures::stream::iter(ids)
            .map(|id| async move {
                let claimed = self.claimed_subject(source, &id).await?;
                Ok::<_, PlanError>((id, claimed))
            })
            .buffer_unordered(READS_IN_FLIGHT)
            .try_collect()
            .await
    }

    /// Whether a retried event says exactly what the stored one (`doc`, as
    /// stored, and `stored`, decoded) says.
    async fn same_content(
        &self,
        mut doc: Value,
        stored: &events::StoredEvent,
        event: &ReceivedEvent,
    ) -> Result<bool, PlanError> {
        // A resend after a 503 comes here while NATS may still be coming
        // back: the key store being away is a 503 again, not a fault.
        let key = match &stored.subject {
            Subject::Child(child) => Some(self.keys.existing_key(child).await.map_err(key_error)?),
            Subject::Worker(worker) => Some(self.keys.existing_worker_key(worker).await.map_err(key_error)?),
            Subject::Council(_) => None,
        };
        if let Some(key) = key {
            privacy::open_fields(&mut doc, key.as_ref());
        }
        let received = serde_json::to_value(&event.data).map_err(|e| ApiError::Internal(e.into()))?;
        let same_time = doc["time"].as_str() == Some(format_time(&event.time).as_str());
        let same_recorded =
            event.recorded_at.is_none_or(|r| doc["recordedat"].as_str() == Some(format_time(&r).as_str()));
        let same_marks = stored.author_role == event.author_role && stored.significant == event.significant;
        Ok(stored.event_type == event.event_type
            && same_time
            && same_recorded
            && same_marks
            && canonical(&doc["data"]) == canonical(&received))
    }
}

/// What a key-store failure means to the sender.
fn key_error(e: KeyError) -> PlanError {
    match e {
        KeyError::Erased => PlanError::Erased,
        e @ KeyError::Unavailable { .. } => PlanError::Api(ApiError::unavailable("the key store is unavailable", e)),
        other @ KeyError::WrongMasterKey => PlanError::Api(ApiError::Internal(other.into())),
    }
}

fn unavailable(detail: &str, cause: impl Into<anyhow::Error>, committed: &Arc<Mutex<Vec<KnownStored>>>) -> ApiError {
    ApiError::Unavailable {
        detail: format!(
            "{detail}; events listed in `stored` are stored, and retrying the whole request with the same ids is safe"
        ),
        stored: committed.lock().map(|c| c.clone()).unwrap_or_default(),
        cause: Some(cause.into()),
    }
}
