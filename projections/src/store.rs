//! Applying a batch of stream messages to the read models: one transaction
//! that also moves the projector's position, so a batch is either wholly
//! applied, position included, or not at all.

use crate::identifiers::{self, ChildKeys};
use crate::indicators::Period;
use crate::refold::{self, Changed, Touched};
use crate::summary;
use chrono::{DateTime, Datelike, NaiveDate, Utc};
use events::Subject;
use events::calendar::business_date_of;
use events::envelope::StoredEvent;
use sqlx::{PgConnection, Postgres, Transaction};
use std::collections::BTreeSet;

/// A stream message, decoded or not.
#[derive(Debug, Clone)]
pub enum Incoming {
    Event { stream_seq: u64, event: Box<StoredEvent>, document: serde_json::Value },
    Undecodable { stream_seq: u64, nats_subject: String, reason: String, payload: Vec<u8> },
}

impl Incoming {
    pub fn stream_seq(&self) -> u64 {
        match self {
            Self::Event { stream_seq, .. } | Self::Undecodable { stream_seq, .. } => *stream_seq,
        }
    }

    /// Decodes one stream message.
    pub fn decode(stream_seq: u64, nats_subject: &str, payload: &[u8]) -> Self {
        let parsed = events::json::parse_strict(payload).map_err(|e| e.to_string()).and_then(|value| match &value {
            serde_json::Value::Object(doc) => {
                StoredEvent::from_document(doc).map(|e| (e, value.clone())).map_err(|p| p.to_string())
            }
            _ => Err("not a JSON object".to_owned()),
        });
        match parsed {
            Ok((event, document)) => Self::Event { stream_seq, event: Box::new(event), document },
            Err(reason) => Self::Undecodable {
                stream_seq,
                nats_subject: nats_subject.to_owned(),
                reason,
                payload: payload.to_vec(),
            },
        }
    }
}

/// What one batch did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    pub events: u64,
    pub dead_letters: u64,
    /// Messages at or below the stored position, already applied before.
    pub skipped: u64,
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
    #[error("the key store failed: {0}")]
    Keys(String),
}

/// The position a projector has applied up to (0 before anything).
pub async fn position(conn: &mut PgConnection, projector: &str) -> Result<u64, sqlx::Error> {
    let seq: Option<i64> = sqlx::query_scalar("select stream_seq from projector_position where projector = $1")
        .bind(projector)
        .fetch_optional(conn)
        .await?;
    Ok(seq.unwrap_or(0).max(0) as u64)
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Applies `batch` (in stream order) within `tx`. Messages at or below the
/// stored position are skipped, so a batch redelivered after a crash
/// applies nothing twice. With `expected`, the batch is refused unless the
/// stored position is exactly where the caller last left it.
pub async fn apply_batch(
    tx: &mut Transaction<'_, Postgres>,
    projector: &str,
    batch: &[Incoming],
    expected: Option<u64>,
    keys: Option<&dyn ChildKeys>,
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
    let mut touched = Touched::default();

    let mut applied = Applied { position: from, ..Applied::default() };
    let mut rows = EventRows::default();
    let mut chronology = ChronologyRows::default();
    let mut dead = DeadRows::default();
    for item in batch {
        let seq = item.stream_seq();
        if seq <= from {
            applied.skipped += 1;
            continue;
        }
        applied.position = applied.position.max(seq);
        match item {
            Incoming::Event { stream_seq, event, document } => {
                applied.events += 1;
                rows.push(*stream_seq, event, document);
                applied.years.insert(Period::containing(business_date_of(&event.time)).from.year());
                match &event.subject {
                    Subject::Child(child) => {
                        chronology.push(*stream_seq, *child.as_uuid(), event);
                        touched.children.insert(*child.as_uuid());
                        if identifiers::carries_identifiers(event.event_type.name()) {
                            touched.identities.insert(*child.as_uuid());
                        }
                    }
                    Subject::Worker(worker) => {
                        touched.workers.insert(*worker.as_uuid());
                    }
                    Subject::Council(council) => {
                        touched.councils.insert(council.as_str().to_owned());
                    }
                }
            }
            Incoming::Undecodable { stream_seq, nats_subject, reason, payload } => {
                applied.dead_letters += 1;
                dead.stream_seq.push(to_i64(*stream_seq));
                dead.nats_subject.push(nats_subject.clone());
                dead.reason.push(reason.clone());
                dead.payload.push(payload.clone());
            }
        }
    }

    if !rows.stream_seq.is_empty() {
        sqlx::query(
            "insert into stored_event (stream_seq, subject, subject_kind, sequence, event_id, source, event_type,
                                       occurred_at, business_date, recorded_at, hash, document)
             select * from unnest($1::bigint[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::text[], $7::text[],
                                  $8::timestamptz[], $9::date[], $10::timestamptz[], $11::text[], $12::jsonb[])",
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
    if !dead.stream_seq.is_empty() {
        sqlx::query(
            "insert into dead_letter (stream_seq, nats_subject, reason, payload)
             select * from unnest($1::bigint[], $2::text[], $3::text[], $4::bytea[])",
        )
        .bind(&dead.stream_seq)
        .bind(&dead.nats_subject)
        .bind(&dead.reason)
        .bind(&dead.payload)
        .execute(&mut **tx)
        .await?;
    }
    // After the copy is written: the folds read each subject's whole history from it.
    applied.changed = refold::refold(tx, &touched, keys).await?;
    if applied.position > from {
        sqlx::query("update projector_position set stream_seq = $2, updated_at = now() where projector = $1")
            .bind(projector)
            .bind(to_i64(applied.position))
            .execute(&mut **tx)
            .await?;
    }
    Ok(applied)
}

#[derive(Default)]
struct EventRows {
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
    document: Vec<serde_json::Value>,
}

impl EventRows {
    fn push(&mut self, stream_seq: u64, event: &StoredEvent, document: &serde_json::Value) {
        self.stream_seq.push(to_i64(stream_seq));
        self.subject.push(event.subject.to_string());
        self.subject_kind.push(
            match event.subject {
                Subject::Child(_) => "child",
                Subject::Worker(_) => "worker",
                Subject::Council(_) => "council",
            }
            .to_owned(),
        );
        self.sequence.push(to_i64(event.sequence));
        self.event_id.push(event.id.as_str().to_owned());
        self.source.push(event.source.as_str().to_owned());
        self.event_type.push(event.event_type.name().to_owned());
        self.occurred_at.push(event.time.to_utc());
        self.business_date.push(business_date_of(&event.time));
        self.recorded_at.push(event.recorded_at.to_utc());
        self.hash.push(event.hash.to_string());
        self.document.push(document.clone());
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
    fn push(&mut self, stream_seq: u64, child: uuid::Uuid, event: &StoredEvent) {
        self.child_id.push(child);
        self.sequence.push(to_i64(event.sequence));
        self.stream_seq.push(to_i64(stream_seq));
        self.event_id.push(event.id.as_str().to_owned());
        self.source.push(event.source.as_str().to_owned());
        self.event_type.push(event.event_type.name().to_owned());
        self.occurred_at.push(event.time.to_utc());
        self.business_date.push(business_date_of(&event.time));
        self.recorded_at.push(event.recorded_at.to_utc());
        self.summary.push(summary::summarise(event.event_type, &event.data));
        self.amends.push(summary::amends(event.event_type, &event.data));
    }
}

#[derive(Default)]
struct DeadRows {
    stream_seq: Vec<i64>,
    nats_subject: Vec<String>,
    reason: Vec<String>,
    payload: Vec<Vec<u8>>,
}
