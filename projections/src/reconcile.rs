//! Keeping the copy true to the stream when the stream's leader changes.
//!
//! JetStream can hand a consumer a message that the stream does not keep.
//! The fault suite found it: a three-node stream's leader was killed with
//! an atomic batch in flight; the projector had already been given the
//! batch's event, the new leader never held it, and the publisher, never
//! answered, sent the event again, which the stream stored at a later
//! position. The read models then held an event at a position the stream
//! leaves empty, and took the retry for a replay (a dead letter). Had the
//! new leader put another event at that position, the projector would
//! have taken it for a redelivery and never applied it.
//!
//! The class is *the read models trusting a delivery the stream later
//! disowns*, and no check of one batch can see it: the batch was true when
//! it came. So the projector reads the stream back over the positions it
//! applied last, and makes its copy agree, whenever the stream may have
//! moved under it: when a session starts (after a restart, an outage or a
//! lost delivery); when its watcher sees the stream elect a leader (told
//! by the leader's name and when it took over: the fault suite lost a
//! correction when one server was elected again between two looks); and
//! when a batch's dead letters look like the copy is what is wrong
//! (`store::Chained::suspect`), which needs no election to be seen. The
//! stream is read from its leader (`crate::leader`). A
//! row the stream does not hold where the copy has it is removed; an event
//! the stream holds that the copy lacks is applied (if it continues its
//! subject's chain, else it is a dead letter like any other); and every
//! subject either touched is folded again from its corrected history.
//! The projector's position moves back to just before the first position
//! the stream went back on: its consumer had delivered past it, and would
//! never deliver what the stream stores there next. Afterwards the read
//! models equal what a clean rebuild of the stream gives, and the
//! correction is logged as an error and counted, since it means the stream
//! went back on something it had delivered.
//!
//! A stream that goes back leaves no hole: a position it went back on is
//! reused by a later message, or lies past its end. A position left empty
//! inside its range was deleted, which the stream denies, so somebody
//! changed it. The copy's row there is not removed (following the stream
//! would erase the evidence of what was deleted, and `safeguard verify`
//! names it only while the copy keeps it); it is logged and counted, and
//! raises an alarm.

use crate::refold::{self, Changed, Touched};
use crate::runtime::{ProjectorError, Settings, filter_fields, js_error};
use crate::store::{self, DeadRows, EventItem, Incoming, to_i64};
use async_nats::jetstream::{self, consumer};
use events::Subject;
use events::catalogue::SubjectKind;
use events::chain::{Head, NotTaken};
use futures::StreamExt;
use sqlx::PgPool;
use std::collections::{HashMap, HashSet};
use std::time::Duration;

/// How far back from its position the projector reads the stream again.
/// A leader dies with at most a few commits in flight (a gateway has two,
/// of up to 1,000 messages each); the rest is room for the projector to
/// have gone on applying before its watcher looked.
pub const WINDOW: u64 = 10_000;

/// What one [`reconcile`] found and did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Reconciled {
    /// Stream messages read back.
    pub read: u64,
    /// Rows of the copy the stream does not hold at their position, removed.
    pub removed: u64,
    /// Events the stream holds that the copy lacked, now applied.
    pub added: u64,
    /// Messages looked at again that do not continue their subject's chain.
    pub dead_letters: u64,
    /// Rows of the copy at positions the stream left empty inside its
    /// range: deleted (the stream denies deletes, so someone changed it),
    /// not disowned. Kept as the evidence `safeguard verify` reports.
    pub deleted: u64,
    /// Where this projector's position was moved back to: the stream went
    /// back on positions at or below it, and messages it stores there later
    /// must be delivered, which a consumer past them never does.
    pub moved_back_to: Option<u64>,
    /// What the corrections changed, for change notifications.
    pub changed: Changed,
}

impl Reconciled {
    /// Whether the copy had to be corrected.
    pub fn corrected(&self) -> bool {
        self.removed + self.added + self.dead_letters > 0 || self.moved_back_to.is_some()
    }
}

/// A stream message read back.
struct Message {
    stream_seq: u64,
    nats_subject: String,
    payload: bytes::Bytes,
}

/// Makes the copy of this projector's partitions agree with the stream
/// over positions `after + 1 ..= upto` (see the module documentation).
/// `upto` is the projector's position: past it, the pump applies as usual.
pub async fn reconcile(
    pool: &PgPool,
    stream: &jetstream::stream::Stream,
    settings: &Settings,
    after: u64,
    upto: u64,
) -> Result<Reconciled, ProjectorError> {
    if upto <= after {
        return Ok(Reconciled::default());
    }
    let messages = read_back(stream, settings, after, upto).await?;
    // Histories kept between batches may hold what is about to be removed.
    settings.kept.clear();
    let mut done = Reconciled { read: messages.len() as u64, ..Reconciled::default() };

    // What the stream holds at each position: the event's verified hash,
    // or nothing for a message that is not a readable event (a dead letter).
    let mut in_stream: HashMap<u64, (String, String)> = HashMap::with_capacity(messages.len());
    for m in &messages {
        if let Ok(decoded) = events::stored::decode(&m.nats_subject, &m.payload) {
            in_stream.insert(m.stream_seq, (decoded.event.subject.to_string(), decoded.event.hash.to_string()));
        }
    }
    let copy: Vec<(i64, String, String, String)> = sqlx::query_as(
        "select stream_seq, subject, subject_kind, hash from stored_event where stream_seq > $1 and stream_seq <= $2",
    )
    .bind(to_i64(after))
    .bind(to_i64(upto))
    .fetch_all(pool)
    .await?;
    let mut untrue: Vec<(i64, String, String)> = Vec::new();
    let mut held: HashSet<u64> = HashSet::new();
    for (seq, subject, kind, hash) in copy {
        let seq_u = u64::try_from(seq).unwrap_or(0);
        // Another partition's projector keeps its own rows true.
        if !settings.partitions.contains(events::subjects::partition_of_name(&subject)) {
            continue;
        }
        match in_stream.get(&seq_u) {
            Some((s, h)) if *s == subject && *h == hash => {
                held.insert(seq_u);
            }
            _ => untrue.push((seq, kind, subject)),
        }
    }
    // Told apart by what the stream holds at each such position now.
    let read_at: HashSet<u64> = messages.iter().map(|m| m.stream_seq).collect();
    let last = stream.get_info().await.map_err(js_error)?.state.last_sequence;
    let mut wrong: Vec<i64> = Vec::new();
    let mut wrong_subjects: Vec<(String, String)> = Vec::new();
    for (seq, kind, subject) in untrue {
        let seq_u = u64::try_from(seq).unwrap_or(0);
        if !read_at.contains(&seq_u) && seq_u <= last && !holds_a_message(stream, seq_u).await? {
            done.deleted += 1;
            tracing::error!(projector = %settings.name, stream_seq = seq_u, "the event stream no longer holds a message at a position inside its range: it was deleted, and the read models keep the event as evidence");
            continue;
        }
        wrong.push(seq);
        wrong_subjects.push((kind, subject));
    }
    // A disowned position, or the stream's end below the position, means
    // the stream went back: the consumer must deliver from there again.
    let went_back_to = wrong.iter().map(|&s| u64::try_from(s).unwrap_or(0).saturating_sub(1)).chain([last]).min();
    let moved_back_to = went_back_to.filter(|&to| to < upto);
    let touched_names: HashSet<&str> = wrong_subjects.iter().map(|(_, s)| s.as_str()).collect();
    let parked = positions(pool, "parked_message", after, upto).await?;
    let dead = positions(pool, "dead_letter", after, upto).await?;
    // Events the copy lacks: neither applied, nor held behind a parked
    // subject, nor a dead letter already (unless it was judged against a
    // row now found untrue, as the retry of a disowned event was).
    let missing: Vec<&Message> = messages
        .iter()
        .filter(|m| {
            let Some((subject, _)) = in_stream.get(&m.stream_seq) else { return false };
            let seq = to_i64(m.stream_seq);
            !held.contains(&m.stream_seq)
                && !parked.contains(&seq)
                && (!dead.contains(&seq) || touched_names.contains(subject.as_str()))
        })
        .collect();
    if wrong.is_empty() && missing.is_empty() && moved_back_to.is_none() {
        return Ok(done);
    }

    let mut tx = pool.begin().await?;
    // The pump is this projector's only other writer and waits for us; a
    // rebuild's switch may have swapped the tables, which are then a clean
    // projection of the stream already.
    let stored: Option<i64> =
        sqlx::query_scalar("select stream_seq from projector_position where projector = $1 for update")
            .bind(&settings.name)
            .fetch_optional(&mut *tx)
            .await?;
    if stored != Some(to_i64(upto)) {
        return Ok(done);
    }
    if !wrong.is_empty() {
        sqlx::query("delete from chronology_entry where stream_seq = any($1)").bind(&wrong).execute(&mut *tx).await?;
        sqlx::query("delete from stored_event where stream_seq = any($1)").bind(&wrong).execute(&mut *tx).await?;
        done.removed = wrong.len() as u64;
    }
    let again: Vec<i64> = missing.iter().map(|m| to_i64(m.stream_seq)).filter(|seq| dead.contains(seq)).collect();
    sqlx::query("delete from dead_letter where stream_seq = any($1)").bind(&again).execute(&mut *tx).await?;

    let decoded: Vec<Incoming> = missing
        .iter()
        .map(|m| Incoming::decode(m.stream_seq, &m.nats_subject, &m.payload, &*settings.signers))
        .collect();
    let mut dead_rows = DeadRows::default();
    let mut items: Vec<EventItem<'_>> = Vec::new();
    for incoming in &decoded {
        match incoming.item() {
            Ok(item) => items.push(item),
            Err(letter) => dead_rows.push_letter(&letter),
        }
    }
    let (kept, broken) = linked(&mut tx, items).await?;
    for (item, why) in &broken {
        dead_rows.push(item.stream_seq, item.nats_subject, &why.to_string(), item.payload());
    }
    done.dead_letters = dead_rows.len() as u64;
    dead_rows.write(&mut tx).await?;
    let keys = settings.keys.as_deref();
    done.changed = store::write_events(&mut tx, &kept, keys, &settings.kept).await.map_err(fold_error)?;
    done.added = kept.len() as u64;

    // The subjects whose untrue rows went, folded from what is left.
    let mut touched = Touched::default();
    for (kind, subject) in &wrong_subjects {
        let kind = match kind.as_str() {
            "child" => SubjectKind::Child,
            "worker" => SubjectKind::Worker,
            _ => SubjectKind::Council,
        };
        match Subject::parse(kind, subject) {
            Ok(Subject::Child(child)) => {
                touched.children.insert(*child.as_uuid());
                touched.identities.insert(*child.as_uuid());
            }
            Ok(Subject::Worker(worker)) => {
                touched.workers.insert(*worker.as_uuid());
            }
            Ok(Subject::Council(council)) => {
                touched.councils.insert(council);
            }
            Err(_) => {}
        }
    }
    done.changed.merge(refold::refold(&mut tx, &touched, keys, &settings.kept).await.map_err(fold_error)?);
    if let Some(to) = moved_back_to {
        // What it applied above lies past `to`; redelivered, it is skipped
        // as held (`store::in_chain`).
        sqlx::query("update projector_position set stream_seq = $2, updated_at = now() where projector = $1")
            .bind(&settings.name)
            .bind(to_i64(to))
            .execute(&mut *tx)
            .await?;
        done.moved_back_to = Some(to);
    }
    tx.commit().await?;
    Ok(done)
}

/// Whether the stream (its leader) holds any message at `seq`, of any subject.
async fn holds_a_message(stream: &jetstream::stream::Stream, seq: u64) -> Result<bool, ProjectorError> {
    match stream.get_raw_message(seq).await {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == jetstream::stream::RawMessageErrorKind::NoMessageFound => Ok(false),
        Err(e) => Err(js_error(e)),
    }
}

/// Reads back this projector's messages at positions `after + 1 ..= upto`.
async fn read_back(
    stream: &jetstream::stream::Stream,
    settings: &Settings,
    after: u64,
    upto: u64,
) -> Result<Vec<Message>, ProjectorError> {
    let (filter_subject, filter_subjects) = filter_fields(&settings.partitions.filters());
    // What the stream holds is what its leader holds.
    let mut consumer = crate::leader::consumer(
        stream,
        consumer::pull::Config {
            filter_subject,
            filter_subjects,
            deliver_policy: consumer::DeliverPolicy::ByStartSequence { start_sequence: after + 1 },
            ack_policy: consumer::AckPolicy::None,
            inactive_threshold: Duration::from_secs(30),
            ..Default::default()
        },
    )
    .await
    .map_err(js_error)?;
    let name = consumer.cached_info().name.clone();
    let result = async {
        let mut out = Vec::new();
        let mut left = consumer.info().await.map_err(js_error)?.num_pending;
        while left > 0 {
            let mut batch = consumer
                .fetch()
                .max_messages(1_000)
                .expires(Duration::from_secs(1))
                .messages()
                .await
                .map_err(js_error)?;
            let mut got = 0;
            while let Some(message) = batch.next().await {
                let message = message.map_err(js_error)?;
                let info = message.info().map_err(js_error)?;
                got += 1;
                left = info.pending;
                if info.stream_sequence > upto {
                    left = 0;
                    break;
                }
                out.push(Message {
                    stream_seq: info.stream_sequence,
                    nats_subject: message.subject.to_string(),
                    payload: message.payload.clone(),
                });
            }
            if got == 0 {
                break;
            }
        }
        Ok(out)
    }
    .await;
    let _ = stream.delete_consumer(&name).await;
    result
}

/// Splits `items` (in stream order) into those that continue their
/// subject's chain where it stands in the copy (the event before them
/// there, their own place free) and the rest, with why. Unlike the
/// pump's check, an event may land before the subject's last row: it is
/// put back where the stream has it.
async fn linked<'a>(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    items: Vec<EventItem<'a>>,
) -> Result<(Vec<EventItem<'a>>, Vec<(EventItem<'a>, NotTaken)>), sqlx::Error> {
    let mut subjects = Vec::with_capacity(items.len() * 2);
    let mut sequences = Vec::with_capacity(items.len() * 2);
    for item in &items {
        for sequence in [item.event.sequence.saturating_sub(1), item.event.sequence] {
            subjects.push(item.event.subject.to_string());
            sequences.push(to_i64(sequence));
        }
    }
    let rows: Vec<(String, i64, String)> = sqlx::query_as(
        "select subject, sequence, hash from stored_event
          where (subject, sequence) in (select * from unnest($1::text[], $2::bigint[]))",
    )
    .bind(&subjects)
    .bind(&sequences)
    .fetch_all(&mut **tx)
    .await?;
    let mut held: HashMap<(String, u64), events::Digest> = HashMap::with_capacity(rows.len());
    for (subject, sequence, hash) in rows {
        let hash = events::Digest::parse(&hash).map_err(|why| crate::database::not_as_written("hash", why))?;
        held.insert((subject, u64::try_from(sequence).unwrap_or(0)), hash);
    }
    let mut kept = Vec::with_capacity(items.len());
    let mut broken = Vec::new();
    for item in items {
        let subject = item.event.subject.to_string();
        let sequence = item.event.sequence;
        let before = sequence.checked_sub(1).filter(|s| *s > 0);
        let head = before.and_then(|s| held.get(&(subject.clone(), s)).map(|hash| Head { sequence: s, hash: *hash }));
        let placed = if held.contains_key(&(subject.clone(), sequence)) {
            Err(NotTaken::OutOfChain { sequence, after: sequence })
        } else {
            events::chain::follows(head, sequence, &item.event.prevhash)
        };
        match placed {
            Ok(()) => {
                held.insert((subject, sequence), item.event.hash);
                kept.push(item);
            }
            Err(why) => broken.push((item, why)),
        }
    }
    Ok((kept, broken))
}

fn fold_error(e: store::ApplyError) -> ProjectorError {
    match e {
        store::ApplyError::Database(e) => ProjectorError::Database(e),
        store::ApplyError::Keys(e) => ProjectorError::Keys(e),
        e => ProjectorError::Fold(e.to_string()),
    }
}

/// The positions `table` (keyed by `stream_seq`) holds in `after + 1 ..= upto`.
async fn positions(pool: &PgPool, table: &str, after: u64, upto: u64) -> Result<HashSet<i64>, sqlx::Error> {
    let rows: Vec<i64> =
        sqlx::query_scalar(&format!("select stream_seq from {table} where stream_seq > $1 and stream_seq <= $2"))
            .bind(to_i64(after))
            .bind(to_i64(upto))
            .fetch_all(pool)
            .await?;
    Ok(rows.into_iter().collect())
}
