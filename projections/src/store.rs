//! Applying a batch of stream messages to the read models: one transaction
//! that also moves the projector's position, so a batch is either wholly
//! applied, position included, or not at all.

use crate::kept::Kept;
use crate::refold::{self, Changed, Touched};
use casework::indicators::Period;
use casework::summary;
use chrono::{DateTime, Datelike, NaiveDate, Utc};
use events::Subject;
use events::calendar::business_date_of;
use events::chain::{Head, NotTaken, Signers};
use events::envelope::StoredEvent;
use events::privacy::ChildKeys;
use sqlx::{PgConnection, Postgres, Transaction};
use std::collections::BTreeSet;

/// A stream message, decoded or not.
#[derive(Debug, Clone)]
pub enum Incoming {
    Event {
        stream_seq: u64,
        nats_subject: String,
        /// The stored JSON document: the message's bytes, checked as UTF-8
        /// JSON by decoding. It is what `stored_event.document` holds, so
        /// PostgreSQL parses it into `jsonb` from this text. The parsed
        /// tree the hash was checked on is not kept: in a batch of
        /// thousands it cost several times the text's memory, and a deep
        /// copy and a serialisation each per event to write.
        document: String,
        event: Box<StoredEvent>,
    },
    Undecodable {
        stream_seq: u64,
        nats_subject: String,
        reason: String,
        payload: Vec<u8>,
    },
}

impl Incoming {
    pub fn stream_seq(&self) -> u64 {
        match self {
            Self::Event { stream_seq, .. } | Self::Undecodable { stream_seq, .. } => *stream_seq,
        }
    }

    /// Decodes one stream message with `events::stored::decode`, which
    /// checks that it is what the gateway stores: a well-formed stored
    /// event, on the NATS subject its own subject maps to, whose bytes match
    /// its hash. Anything else is [`Incoming::Undecodable`] and goes to
    /// `dead_letter` with the reason;
    /// it never stops the projector. (The reasons name fields and
    /// positions, never values.) It must also carry the gateway's
    /// signature: what anyone else put on the event subjects is a dead
    /// letter too, never history. (Whether it continues its subject's chain
    /// is checked against the read models when it is applied.)
    pub fn decode(stream_seq: u64, nats_subject: &str, payload: &[u8], signers: &dyn Signers) -> Self {
        let undecodable = |reason: String| Self::Undecodable {
            stream_seq,
            nats_subject: nats_subject.to_owned(),
            reason,
            payload: payload.to_vec(),
        };
        let decoded = match events::stored::decode(nats_subject, payload) {
            Ok(decoded) => decoded,
            Err(e) => return undecodable(e.to_string()),
        };
        if !signers.signed(&decoded.event.hash, &decoded.event.signature) {
            return undecodable(NotTaken::Unsigned.to_string());
        }
        // `decode` parsed the bytes as JSON, which only UTF-8 passes.
        let Ok(document) = std::str::from_utf8(payload) else {
            return undecodable("the message is not UTF-8".to_owned());
        };
        Self::Event {
            stream_seq,
            nats_subject: nats_subject.to_owned(),
            document: document.to_owned(),
            event: Box::new(decoded.event),
        }
    }

    /// The event to apply, or the dead letter's row.
    pub(crate) fn item(&self) -> Result<EventItem<'_>, DeadLetter<'_>> {
        match self {
            Self::Event { stream_seq, nats_subject, document, event } => {
                Ok(EventItem { stream_seq: *stream_seq, nats_subject, document, event })
            }
            Self::Undecodable { stream_seq, nats_subject, reason, payload } => {
                Err(DeadLetter { stream_seq: *stream_seq, nats_subject, reason, payload })
            }
        }
    }
}

/// An undecodable message, as `dead_letter` keeps it.
pub(crate) struct DeadLetter<'a> {
    pub stream_seq: u64,
    pub nats_subject: &'a str,
    pub reason: &'a str,
    pub payload: &'a [u8],
}

/// What one batch did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    pub events: u64,
    pub dead_letters: u64,
    /// Messages at or below the stored position, already applied before.
    pub skipped: u64,
    /// Subjects parked by this batch (their first failing message and the error recorded).
    pub parked: u64,
    /// Messages kept waiting behind a parked subject (those of newly parked subjects included).
    pub held: u64,
    /// Dead letters that suggest the read models hold what the stream has
    /// since disowned (see [`Chained::suspect`]): the caller reads the
    /// stream back over the positions applied last ([`crate::reconcile`]).
    pub suspect: bool,
    pub position: u64,
    /// Councils and teams whose caseloads or indicators may have changed.
    pub changed: Changed,
    /// Financial years (by their first calendar year) the batch's business dates fall in.
    pub years: BTreeSet<i32>,
}

/// Why a batch was not applied.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("the read-model database failed: {0}")]
    Database(#[from] sqlx::Error),
    /// The stored position is not where this projector left it: the read
    /// models were swapped by a rebuild, or restored. The caller must
    /// resume from `stored`.
    #[error("the read models are at {stored}, not at {expected} where this projector left them")]
    Moved { stored: u64, expected: u64 },
    /// Children's data keys could not be fetched for the identifier index.
    #[error("the key store failed")]
    Keys(#[source] events::privacy::KeyStoreError),
    /// A pure fold panicked on a subject's history (a bug: it must take
    /// any history the gateway accepts).
    #[error("folding subject {subject} failed: {message}")]
    Fold { subject: String, message: String },
}

impl ApplyError {
    /// Whether the failure lies in what was being applied rather than in
    /// the database being away: a row a constraint refused, a value the
    /// database could not take, a trigger that raised, a fold that
    /// panicked. Applying the same messages again fails the same way, so
    /// retrying would stall the projector for ever; the subject is parked
    /// instead. Everything else (connections lost, the server shutting
    /// down, deadlocks, a full disk, a missing table after a bad deploy)
    /// may pass, and is retried with backoff.
    pub fn is_subject_failure(&self) -> bool {
        match self {
            Self::Fold { .. } => true,
            Self::Database(e) => is_content_error(e),
            _ => false,
        }
    }
}

/// Whether PostgreSQL refused what it was given (see
/// [`ApplyError::is_subject_failure`]), by SQLSTATE class.
pub fn is_content_error(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(e) => {
            let code = e.code().unwrap_or_default();
            // 22: data exception; 23: integrity constraint violation;
            // P0: raised by PL/pgSQL; 2F, 39: routine exceptions; 44: check option.
            ["22", "23", "P0", "2F", "39", "44"].iter().any(|class| code.starts_with(class))
        }
        sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) | sqlx::Error::TypeNotFound { .. } => true,
        _ => false,
    }
}

/// Runs a pure fold, turning a panic into [`ApplyError::Fold`] for `subject`.
pub(crate) fn folded<T>(subject: &str, fold: impl FnOnce() -> T) -> Result<T, ApplyError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(fold)).map_err(|panic| {
        let message = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".to_owned());
        ApplyError::Fold { subject: subject.to_owned(), message }
    })
}

/// The position a projector has applied up to (0 before anything).
pub async fn position(conn: &mut PgConnection, projector: &str) -> Result<u64, sqlx::Error> {
    let seq: Option<i64> = sqlx::query_scalar("select stream_seq from projector_position where projector = $1")
        .bind(projector)
        .fetch_optional(conn)
        .await?;
    Ok(seq.unwrap_or(0).max(0) as u64)
}

pub(crate) fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// How a batch's subjects are applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    /// All in one go: the fast path, and the usual one.
    Together,
    /// Each subject in its own savepoint; a subject that fails is parked
    /// and the rest are applied. For a batch that failed [`Together`](Self::Together)
    /// on its content ([`ApplyError::is_subject_failure`]).
    PerSubject,
}

/// One decoded event of a batch.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EventItem<'a> {
    pub stream_seq: u64,
    pub nats_subject: &'a str,
    /// The stored JSON document, exactly the message's bytes.
    pub document: &'a str,
    pub event: &'a StoredEvent,
}

impl EventItem<'_> {
    /// The message's bytes, for a dead letter or a parked message.
    pub fn payload(&self) -> &[u8] {
        self.document.as_bytes()
    }
}

/// Applies `batch` (in stream order) within `tx`. Messages at or below the
/// stored position are skipped, so a batch redelivered after a crash
/// applies nothing twice. With `expected`, the batch is refused unless the
/// stored position is exactly where the caller last left it.
#[tracing::instrument(name = "apply_batch", skip_all, fields(projector = projector, messages = batch.len(), isolation = ?isolation))]
pub async fn apply_batch(
    tx: &mut Transaction<'_, Postgres>,
    projector: &str,
    batch: &[Incoming],
    expected: Option<u64>,
    keys: Option<&dyn ChildKeys>,
    kept: &Kept,
    isolation: Isolation,
) -> Result<Applied, ApplyError> {
    sqlx::query("insert into projector_position (projector, stream_seq) values ($1, 0) on conflict do nothing")
        .bind(projector)
        .execute(&mut **tx)
        .await?;
    let from: i64 = sqlx::query_scalar("select stream_seq from projector_position where projector = $1 for update")
        .bind(projector)
        .fetch_one(&mut **tx)
        .await?;
    let from = from.max(0) as u64;
    if let Some(expected) = expected
        && expected != from
    {
        return Err(ApplyError::Moved { stored: from, expected });
    }

    let mut applied = Applied { position: from, ..Applied::default() };
    // Past the stored position, a message may still have been dealt with:
    // a projector moved back after the stream went back on what it had
    // delivered (`crate::reconcile`) is delivered again what it kept as a
    // dead letter or queued behind a parked subject. Each is left as it
    // is, as an event already applied is (`in_chain`).
    let after: Vec<i64> = batch.iter().map(Incoming::stream_seq).filter(|&s| s > from).map(to_i64).collect();
    let recorded: BTreeSet<i64> = if after.is_empty() {
        BTreeSet::new()
    } else {
        sqlx::query_scalar(
            "select stream_seq from dead_letter where stream_seq = any($1)
             union all select stream_seq from parked_message where stream_seq = any($1)",
        )
        .bind(&after)
        .fetch_all(&mut **tx)
        .await?
        .into_iter()
        .collect()
    };
    let mut items: Vec<EventItem<'_>> = Vec::with_capacity(batch.len());
    let mut dead = DeadRows::default();
    for item in batch {
        let seq = item.stream_seq();
        if seq <= from || recorded.contains(&to_i64(seq)) {
            applied.skipped += 1;
            applied.position = applied.position.max(seq);
            continue;
        }
        applied.position = applied.position.max(seq);
        match item.item() {
            Ok(event) => items.push(event),
            Err(letter) => {
                applied.dead_letters += 1;
                dead.push_letter(&letter);
            }
        }
    }

    // A parked subject's later messages wait behind it, in order. The
    // share lock makes a `safeguard parked retry` in flight finish first
    // (its subject is then no longer parked, and this batch applies to it
    // as to any other).
    let subjects: Vec<String> =
        items.iter().map(|i| i.event.subject.to_string()).collect::<BTreeSet<_>>().into_iter().collect();
    let parked: BTreeSet<String> = if subjects.is_empty() {
        BTreeSet::new()
    } else {
        sqlx::query_scalar("select subject from parked_subject where subject = any($1) for share")
            .bind(&subjects)
            .fetch_all(&mut **tx)
            .await?
            .into_iter()
            .collect()
    };
    let mut waiting = ParkedRows::default();
    let (held, live): (Vec<EventItem<'_>>, Vec<EventItem<'_>>) =
        items.into_iter().partition(|i| parked.contains(&i.event.subject.to_string()));
    // A parked subject's waiting messages are checked when they are retried.
    let Chained { kept: live, broken, suspect } = in_chain(tx, live, from).await?;
    applied.suspect = suspect;
    for (item, why) in broken {
        applied.dead_letters += 1;
        dead.push(item.stream_seq, item.nats_subject, &why.to_string(), item.payload());
    }
    for item in &held {
        waiting.push(item);
    }

    match isolation {
        Isolation::Together => {
            applied.changed = write_events(tx, &live, keys, kept).await?;
            applied.events = live.len() as u64;
        }
        Isolation::PerSubject => {
            for (subject, group) in by_subject(&live) {
                sqlx::query("savepoint subject").execute(&mut **tx).await?;
                match write_events(tx, &group, keys, kept).await {
                    Ok(changed) => {
                        sqlx::query("release savepoint subject").execute(&mut **tx).await?;
                        applied.changed.merge(changed);
                        applied.events += group.len() as u64;
                    }
                    Err(e) if e.is_subject_failure() => {
                        sqlx::query("rollback to savepoint subject").execute(&mut **tx).await?;
                        let first = group.first().map_or(0, |i| i.stream_seq);
                        tracing::error!(
                            projector,
                            subject = %subject,
                            stream_seq = first,
                            error = %e,
                            "parked a subject whose events could not be applied; the rest of the stream goes on"
                        );
                        park(tx, projector, &group, &e.to_string()).await?;
                        applied.parked += 1;
                        for item in &group {
                            waiting.push(item);
                        }
                    }
                    Err(e) => return Err(e),
                }
            }
        }
    }
    for item in live.iter().chain(&held) {
        applied.years.insert(Period::containing(business_date_of(&item.event.time)).from.year());
    }
    applied.held = waiting.stream_seq.len() as u64;
    waiting.write(tx).await?;

    dead.write(tx).await?;
    if applied.position > from {
        // Never backwards (see `in_chain`: a batch may have read an older position than the table now holds).
        sqlx::query(
            "update projector_position set stream_seq = greatest(stream_seq, $2), updated_at = now()
              where projector = $1",
        )
        .bind(projector)
        .bind(to_i64(applied.position))
        .execute(&mut **tx)
        .await?;
    }
    Ok(applied)
}

/// The items grouped by subject, each group in stream order, groups in the
/// order their subjects first appear.
fn by_subject<'a>(items: &[EventItem<'a>]) -> Vec<(String, Vec<EventItem<'a>>)> {
    let mut groups: Vec<(String, Vec<EventItem<'a>>)> = Vec::new();
    let mut index: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for item in items {
        let subject = item.event.subject.to_string();
        match index.get(&subject) {
            Some(&i) => groups[i].1.push(*item),
            None => {
                index.insert(subject.clone(), groups.len());
                groups.push((subject, vec![*item]));
            }
        }
    }
    groups
}

/// Records `group`'s subject as parked at its first message, with the error.
async fn park(
    tx: &mut Transaction<'_, Postgres>,
    projector: &str,
    group: &[EventItem<'_>],
    error: &str,
) -> Result<(), sqlx::Error> {
    let Some(first) = group.first() else { return Ok(()) };
    sqlx::query(
        "insert into parked_subject (subject, subject_kind, projector, stream_seq, error) values ($1, $2, $3, $4, $5)",
    )
    .bind(first.event.subject.to_string())
    .bind(subject_kind(&first.event.subject))
    .bind(projector)
    .bind(to_i64(first.stream_seq))
    .bind(error)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

fn subject_kind(subject: &Subject) -> &'static str {
    match subject {
        Subject::Child(_) => "child",
        Subject::Worker(_) => "worker",
        Subject::Council(_) => "council",
    }
}

/// Writes the events' copies and chronology entries and refolds every
/// subject they touch. Used for a whole batch, for one subject in a
/// savepoint, and by a retry of a parked subject.
pub(crate) async fn write_events(
    tx: &mut Transaction<'_, Postgres>,
    items: &[EventItem<'_>],
    keys: Option<&dyn ChildKeys>,
    kept: &Kept,
) -> Result<Changed, ApplyError> {
    let mut touched = Touched::default();
    let mut rows = EventRows::default();
    let mut chronology = ChronologyRows::default();
    for item in items {
        let event = item.event;
        rows.push(item.stream_seq, event, item.document);
        match &event.subject {
            Subject::Child(child) => {
                let summary = folded(&event.subject.to_string(), || {
                    (summary::summarise(&event.data), summary::amends(&event.data).map(|id| id.as_str().to_owned()))
                })?;
                chronology.push(item.stream_seq, *child.as_uuid(), event, summary);
                touched.children.insert(*child.as_uuid());
                if casework::identifiers::carries_identifiers(&event.data) {
                    touched.identities.insert(*child.as_uuid());
                }
            }
            Subject::Worker(worker) => {
                touched.workers.insert(*worker.as_uuid());
            }
            Subject::Council(council) => {
                touched.councils.insert(council.clone());
            }
        }
    }

    if !rows.stream_seq.is_empty() {
        sqlx::query(
            "insert into stored_event (stream_seq, subject, subject_kind, sequence, event_id, source, event_type,
                                       occurred_at, business_date, recorded_at, hash, document)
             select s, sub, kind, seq, id, src, ty, occ, bd, rec, h, doc::jsonb
               from unnest($1::bigint[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::text[], $7::text[],
                           $8::timestamptz[], $9::date[], $10::timestamptz[], $11::text[], $12::text[])
                    as u(s, sub, kind, seq, id, src, ty, occ, bd, rec, h, doc)",
        )
        .bind(&rows.stream_seq)
        .bind(&rows.subject)
        .bind(&rows.subject_kind)
        .bind(&rows.sequence)
        .bind(&rows.event_id)
        .bind(&rows.source)
        .bind(&rows.event_type)
        .bind(&rows.occurred_at)
        .bind(&rows.business_date)
        .bind(&rows.recorded_at)
        .bind(&rows.hash)
        .bind(&rows.document)
        .execute(&mut **tx)
        .await?;
    }
    if !chronology.child_id.is_empty() {
        sqlx::query(
            "insert into chronology_entry (child_id, sequence, stream_seq, event_id, source, event_type, occurred_at,
                                           business_date, recorded_at, summary, amends_event_id)
             select * from unnest($1::uuid[], $2::bigint[], $3::bigint[], $4::text[], $5::text[], $6::text[],
                                  $7::timestamptz[], $8::date[], $9::timestamptz[], $10::text[], $11::text[])",
        )
        .bind(&chronology.child_id)
        .bind(&chronology.sequence)
        .bind(&chronology.stream_seq)
        .bind(&chronology.event_id)
        .bind(&chronology.source)
        .bind(&chronology.event_type)
        .bind(&chronology.occurred_at)
        .bind(&chronology.business_date)
        .bind(&chronology.recorded_at)
        .bind(&chronology.summary)
        .bind(&chronology.amends)
        .execute(&mut **tx)
        .await?;
    }
    // After the copy is written: the folds read each subject's whole history from it.
    refold::refold(tx, &touched, keys, kept).await
}

/// Messages waiting behind a parked subject.
#[derive(Default)]
struct ParkedRows {
    stream_seq: Vec<i64>,
    subject: Vec<String>,
    sequence: Vec<i64>,
    hash: Vec<String>,
    nats_subject: Vec<String>,
    payload: Vec<Vec<u8>>,
}

impl ParkedRows {
    fn push(&mut self, item: &EventItem<'_>) {
        self.stream_seq.push(to_i64(item.stream_seq));
        self.subject.push(item.event.subject.to_string());
        self.sequence.push(to_i64(item.event.sequence));
        self.hash.push(item.event.hash.to_string());
        self.nats_subject.push(item.nats_subject.to_owned());
        self.payload.push(item.payload().to_vec());
    }

    async fn write(self, tx: &mut Transaction<'_, Postgres>) -> Result<(), sqlx::Error> {
        if self.stream_seq.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "insert into parked_message (stream_seq, subject, sequence, hash, nats_subject, payload)
             select * from unnest($1::bigint[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::bytea[])",
        )
        .bind(&self.stream_seq)
        .bind(&self.subject)
        .bind(&self.sequence)
        .bind(&self.hash)
        .bind(&self.nats_subject)
        .bind(&self.payload)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }
}

#[derive(Default)]
struct EventRows<'a> {
    stream_seq: Vec<i64>,
    subject: Vec<String>,
    subject_kind: Vec<String>,
    sequence: Vec<i64>,
    event_id: Vec<String>,
    source: Vec<String>,
    event_type: Vec<String>,
    occurred_at: Vec<DateTime<Utc>>,
    business_date: Vec<NaiveDate>,
    recorded_at: Vec<DateTime<Utc>>,
    hash: Vec<String>,
    document: Vec<&'a str>,
}

impl<'a> EventRows<'a> {
    fn push(&mut self, stream_seq: u64, event: &StoredEvent, document: &'a str) {
        self.stream_seq.push(to_i64(stream_seq));
        self.subject.push(event.subject.to_string());
        self.subject_kind.push(subject_kind(&event.subject).to_owned());
        self.sequence.push(to_i64(event.sequence));
        self.event_id.push(event.id.as_str().to_owned());
        self.source.push(event.source.as_str().to_owned());
        self.event_type.push(event.event_type.name().to_owned());
        self.occurred_at.push(event.time.to_utc());
        self.business_date.push(business_date_of(&event.time));
        self.recorded_at.push(event.recorded_at.to_utc());
        self.hash.push(event.hash.to_string());
        self.document.push(document);
    }
}

#[derive(Default)]
struct ChronologyRows {
    child_id: Vec<uuid::Uuid>,
    sequence: Vec<i64>,
    stream_seq: Vec<i64>,
    event_id: Vec<String>,
    source: Vec<String>,
    event_type: Vec<String>,
    occurred_at: Vec<DateTime<Utc>>,
    business_date: Vec<NaiveDate>,
    recorded_at: Vec<DateTime<Utc>>,
    summary: Vec<String>,
    amends: Vec<Option<String>>,
}

impl ChronologyRows {
    fn push(&mut self, stream_seq: u64, child: uuid::Uuid, event: &StoredEvent, summary: (String, Option<String>)) {
        self.child_id.push(child);
        self.sequence.push(to_i64(event.sequence));
        self.stream_seq.push(to_i64(stream_seq));
        self.event_id.push(event.id.as_str().to_owned());
        self.source.push(event.source.as_str().to_owned());
        self.event_type.push(event.event_type.name().to_owned());
        self.occurred_at.push(event.time.to_utc());
        self.business_date.push(business_date_of(&event.time));
        self.recorded_at.push(event.recorded_at.to_utc());
        self.summary.push(summary.0);
        self.amends.push(summary.1);
    }
}

#[derive(Default)]
pub(crate) struct DeadRows {
    stream_seq: Vec<i64>,
    nats_subject: Vec<String>,
    reason: Vec<String>,
    payload: Vec<Vec<u8>>,
}

impl DeadRows {
    pub(crate) fn push(&mut self, stream_seq: u64, nats_subject: &str, reason: &str, payload: &[u8]) {
        self.stream_seq.push(to_i64(stream_seq));
        self.nats_subject.push(nats_subject.to_owned());
        self.reason.push(reason.to_owned());
        self.payload.push(payload.to_vec());
    }

    pub(crate) fn push_letter(&mut self, letter: &DeadLetter<'_>) {
        self.push(letter.stream_seq, letter.nats_subject, letter.reason, letter.payload);
    }

    pub(crate) fn len(&self) -> usize {
        self.stream_seq.len()
    }

    pub(crate) async fn write(self, tx: &mut Transaction<'_, Postgres>) -> Result<(), sqlx::Error> {
        if self.stream_seq.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "insert into dead_letter (stream_seq, nats_subject, reason, payload)
             select * from unnest($1::bigint[], $2::text[], $3::text[], $4::bytea[])",
        )
        .bind(&self.stream_seq)
        .bind(&self.nats_subject)
        .bind(&self.reason)
        .bind(&self.payload)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }
}

/// What [`in_chain`] made of a batch's events.
pub(crate) struct Chained<'a> {
    /// Those that continue their subject's chain, in stream order.
    pub kept: Vec<EventItem<'a>>,
    /// The rest, with why: dead letters.
    pub broken: Vec<(EventItem<'a>, NotTaken)>,
    /// Whether a break looks like the read models, not the message, being
    /// wrong: an event that skips past the subject's last held event or
    /// links to another event in its place (the copy lacks or holds
    /// something the stream does not), or takes the place of the subject's
    /// last event held since recently (the copy holds that event at a
    /// position the stream went back on, and this is the publisher's retry
    /// of it, or the event the stream holds there instead). A healthy
    /// stream, written with expected subject sequences, delivers none of
    /// these. Only events the gateway signed get here, so nobody without
    /// its key can raise this; an older event replayed (or moved by
    /// someone who tampered with the stream) raises nothing, and the copy
    /// keeps what it holds as evidence for `safeguard verify`.
    pub suspect: bool,
}

/// Each subject's last stored event (`$1`: the subjects), read once a
/// batch for every subject it touches: one backward step down the
/// `(subject, sequence)` index a subject. Written as `distinct on
/// (subject)`, it read every row of each subject's history, so a batch on
/// a child of 8,000 events spent 16 ms in it alone (`tests/projector.rs`
/// checks the plan).
pub const SUBJECT_HEADS: &str = "select s.subject, h.sequence, h.hash, h.stream_seq
   from unnest($1::text[]) as s(subject)
   cross join lateral (select sequence, hash, stream_seq from stored_event e
                        where e.subject = s.subject order by e.sequence desc limit 1) h";

/// Splits `items` (in stream order) into those that continue their
/// subject's chain from the last event the read models hold (and from
/// each other), and the rest with why: a true event replayed onto its own
/// subject, or a message someone else put there linked to nothing true.
/// Such a message is a dead letter rather than a parking, so nobody can
/// stop a child's projection by publishing one. `from` is the position
/// the batch applies after: a subject's last event held from within
/// [`crate::reconcile::WINDOW`] of it counts as recent.
///
/// A message the read models already hold (its stream sequence is stored)
/// is dropped from both: it is a redelivery, not a replay, and applying
/// is idempotent whatever the recorded position says. (A rebuild's switch
/// can leave a live projector's batch, blocked on the old position row,
/// holding a position older than the rebuilt tables.)
pub(crate) async fn in_chain<'a>(
    tx: &mut Transaction<'_, Postgres>,
    items: Vec<EventItem<'a>>,
    from: u64,
) -> Result<Chained<'a>, sqlx::Error> {
    let nothing = |kept| Chained { kept, broken: Vec::new(), suspect: false };
    if items.is_empty() {
        return Ok(nothing(items));
    }
    let sequences: Vec<i64> = items.iter().map(|i| to_i64(i.stream_seq)).collect();
    let stored: BTreeSet<i64> = sqlx::query_scalar("select stream_seq from stored_event where stream_seq = any($1)")
        .bind(&sequences)
        .fetch_all(&mut **tx)
        .await?
        .into_iter()
        .collect();
    let items: Vec<EventItem<'a>> = items.into_iter().filter(|i| !stored.contains(&to_i64(i.stream_seq))).collect();
    if items.is_empty() {
        return Ok(nothing(items));
    }
    let subjects: Vec<String> =
        items.iter().map(|i| i.event.subject.to_string()).collect::<BTreeSet<_>>().into_iter().collect();
    let rows: Vec<(String, i64, String, i64)> =
        sqlx::query_as(SUBJECT_HEADS).bind(&subjects).fetch_all(&mut **tx).await?;
    // Each subject's last event, and the position it was applied at (0 for
    // one applied in this batch).
    let mut heads: std::collections::HashMap<String, (Head, u64)> = std::collections::HashMap::new();
    for (subject, sequence, hash, stream_seq) in rows {
        let hash = events::Digest::parse(&hash).map_err(|why| crate::database::not_as_written("hash", why))?;
        let head = Head { sequence: u64::try_from(sequence).unwrap_or(0), hash };
        heads.insert(subject, (head, u64::try_from(stream_seq).unwrap_or(0)));
    }
    let recent_after = from.saturating_sub(crate::reconcile::WINDOW);
    let mut chained = Chained { kept: Vec::with_capacity(items.len()), broken: Vec::new(), suspect: false };
    for item in items {
        let subject = item.event.subject.to_string();
        let head = heads.get(&subject).copied();
        match events::chain::follows(head.map(|(h, _)| h), item.event.sequence, &item.event.prevhash) {
            Ok(()) => {
                heads.insert(subject, (Head { sequence: item.event.sequence, hash: item.event.hash }, item.stream_seq));
                chained.kept.push(item);
            }
            Err(why) => {
                let held = head.map_or(0, |(h, _)| h.sequence);
                let held_at = head.map_or(0, |(_, at)| at);
                let sequence = item.event.sequence;
                chained.suspect |= sequence > held || (sequence == held && held_at > recent_after);
                chained.broken.push((item, why));
            }
        }
    }
    Ok(chained)
}
