//! Reading a child's chronology: every agency's entries in business-time
//! order (ties in recorded order), each with its status and the amendments
//! that name it, as it stood at `as_of`.
//!
//! Status is derived when reading, from the amendments recorded by then, so
//! the same table answers "what is known now" and "what was known when".

use crate::database::{parsed, parsed_opt};
use chrono::{DateTime, NaiveDate, Utc};
use events::EventType;
use events::ids::{EventId, PrincipalName};
use sqlx::PgPool;

pub use casework::chronology::{Entry, Status};

/// What to read.
#[derive(Debug, Clone)]
pub struct Query {
    pub child: uuid::Uuid,
    /// Only what had been recorded by then, as it then stood.
    pub as_of: DateTime<Utc>,
    /// Business dates, inclusive.
    pub from: Option<NaiveDate>,
    pub to: Option<NaiveDate>,
    pub limit: i64,
    /// Entries after this one in chronology order: (occurred_at, sequence).
    pub after: Option<(DateTime<Utc>, i64)>,
}

impl Query {
    /// Every entry of the child's chronology as it stood at `as_of`, in one read.
    pub fn whole(child: uuid::Uuid, as_of: DateTime<Utc>) -> Self {
        Self { child, as_of, from: None, to: None, limit: i64::from(i32::MAX), after: None }
    }
}

pub async fn read(pool: &PgPool, q: &Query) -> Result<Vec<Entry>, sqlx::Error> {
    let (after_at, after_seq) = match q.after {
        Some((at, seq)) => (Some(at), Some(seq)),
        None => (None, None),
    };
    let rows = sqlx::query(
        "select e.sequence, e.event_id as id, e.event_type, e.occurred_at, e.recorded_at, e.source, e.summary,
                case when r.event_id is not null then 'retracted'
                     when c.event_id is not null then 'corrected'
                     else 'current' end as status,
                c.event_id as corrected_by, r.event_id as retracted_by
           from chronology_entry e
           left join lateral (
                select a.event_id from chronology_entry a
                 where a.child_id = e.child_id and a.source = e.source and a.amends_event_id = e.event_id
                   and a.event_type = 'record.corrected' and a.recorded_at <= $2
                 order by a.sequence desc limit 1) c on true
           left join lateral (
                select a.event_id from chronology_entry a
                 where a.child_id = e.child_id and a.source = e.source and a.amends_event_id = e.event_id
                   and a.event_type = 'record.retracted' and a.recorded_at <= $2
                 order by a.sequence desc limit 1) r on true
          where e.child_id = $1
            and e.recorded_at <= $2
            and ($3::date is null or e.business_date >= $3)
            and ($4::date is null or e.business_date <= $4)
            and ($6::timestamptz is null or (e.occurred_at, e.sequence) > ($6, $7))
          order by e.occurred_at, e.sequence
          limit $5",
    )
    .bind(q.child)
    .bind(q.as_of)
    .bind(q.from)
    .bind(q.to)
    .bind(q.limit)
    .bind(after_at)
    .bind(after_seq)
    .fetch_all(pool)
    .await?;
    rows.iter().map(entry).collect()
}

/// One row as an [`Entry`]: the read's edge, where its text columns become
/// the types they name (a value that is not one is a decode error).
fn entry(row: &sqlx::postgres::PgRow) -> Result<Entry, sqlx::Error> {
    use sqlx::Row as _;
    Ok(Entry {
        sequence: row.try_get("sequence")?,
        id: parsed(row, "id", EventId::try_from)?,
        event_type: parsed(row, "event_type", EventType::try_from)?,
        occurred_at: row.try_get("occurred_at")?,
        recorded_at: row.try_get("recorded_at")?,
        source: parsed(row, "source", PrincipalName::try_from)?,
        summary: row.try_get("summary")?,
        status: parsed(row, "status", Status::try_from)?,
        corrected_by: parsed_opt(row, "corrected_by", EventId::try_from)?,
        retracted_by: parsed_opt(row, "retracted_by", EventId::try_from)?,
    })
}

/// How many entries of `q` come before its page (`q.after`), so serial
/// numbers run on across pages. 0 for the first page.
/// The last of the child's sequences recorded by `as_of`: a subject's
/// sequence is its recorded order, so everything known then is at or below it.
pub async fn last_sequence_by(pool: &PgPool, child: uuid::Uuid, as_of: DateTime<Utc>) -> Result<i64, sqlx::Error> {
    let last: Option<i64> =
        sqlx::query_scalar("select max(sequence) from chronology_entry where child_id = $1 and recorded_at <= $2")
            .bind(child)
            .bind(as_of)
            .fetch_one(pool)
            .await?;
    Ok(last.unwrap_or(0))
}

pub async fn entries_before(pool: &PgPool, q: &Query) -> Result<usize, sqlx::Error> {
    let Some((at, seq)) = q.after else { return Ok(0) };
    let n: i64 = sqlx::query_scalar(
        "select count(*) from chronology_entry where child_id = $1 and recorded_at <= $2
            and ($3::date is null or business_date >= $3) and ($4::date is null or business_date <= $4)
            and (occurred_at, sequence) <= ($5, $6)",
    )
    .bind(q.child)
    .bind(q.as_of)
    .bind(q.from)
    .bind(q.to)
    .bind(at)
    .bind(seq)
    .fetch_one(pool)
    .await?;
    Ok(usize::try_from(n).unwrap_or(0))
}
