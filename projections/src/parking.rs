//! Parked subjects: listing them, and applying their waiting messages again
//! once the cause is fixed (`safeguard parked`, `safeguard parked retry`).
//!
//! A subject is parked by [`crate::store::apply_batch`] when applying its
//! events fails on their content (a fold that panicked, a row a constraint
//! refused). Its messages from the failing one on wait in `parked_message`,
//! in stream order; the projector's position moves past them, so the rest
//! of the stream goes on. A retry takes the subject's row `for update` (a
//! batch arriving for the subject meanwhile waits on its share lock, then
//! finds it no longer parked), applies the waiting messages in order with
//! the same code the projector uses, and on success removes the parking in
//! the same transaction. If they fail again, nothing is applied and the
//! parking records the new error and the attempt.

use crate::store::{self, ApplyError, EventItem, Incoming};
use chrono::{DateTime, Utc};
use events::chain::Signers;
use events::privacy::ChildKeys;
use sqlx::{PgPool, Row};

/// One parked subject, as `safeguard parked` lists it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Parked {
    pub subject: String,
    pub subject_kind: String,
    pub projector: String,
    /// The stream position of the first message that could not be applied.
    pub stream_seq: i64,
    pub error: String,
    pub parked_at: DateTime<Utc>,
    pub attempts: i32,
    pub retried_at: Option<DateTime<Utc>>,
    /// Messages waiting behind it.
    pub waiting: i64,
}

const SELECT: &str = "select p.subject, p.subject_kind, p.projector, p.stream_seq, p.error, p.parked_at, p.attempts,
        p.retried_at, (select count(*) from parked_message m where m.subject = p.subject) as waiting
   from parked_subject p";

fn parked_of(r: &sqlx::postgres::PgRow) -> Result<Parked, sqlx::Error> {
    Ok(Parked {
        subject: r.try_get("subject")?,
        subject_kind: r.try_get("subject_kind")?,
        projector: r.try_get("projector")?,
        stream_seq: r.try_get("stream_seq")?,
        error: r.try_get("error")?,
        parked_at: r.try_get("parked_at")?,
        attempts: r.try_get("attempts")?,
        retried_at: r.try_get("retried_at")?,
        waiting: r.try_get("waiting")?,
    })
}

/// Every parked subject, oldest parking first.
pub async fn list(pool: &PgPool) -> Result<Vec<Parked>, sqlx::Error> {
    let rows = sqlx::query(&format!("{SELECT} order by p.parked_at, p.subject")).fetch_all(pool).await?;
    rows.iter().map(parked_of).collect()
}

/// One subject's parking, if it is parked: its read models stand where
/// they were before the first message that failed.
pub async fn parked(pool: &PgPool, subject: &str) -> Result<Option<Parked>, sqlx::Error> {
    let row = sqlx::query(&format!("{SELECT} where p.subject = $1")).bind(subject).fetch_optional(pool).await?;
    row.as_ref().map(parked_of).transpose()
}

/// What a retry of one subject came to.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Retried {
    pub subject: String,
    /// Messages applied (0 when it failed again).
    pub applied: u64,
    /// The error, when it failed again and stays parked.
    pub error: Option<String>,
}

/// Applies the waiting messages of every parked subject, or of `subject`
/// alone. A failure on a subject's content leaves that subject parked with
/// the new error and goes on to the next; a database failure stops the
/// retry (nothing half-applied: each subject is one transaction).
pub async fn retry(
    pool: &PgPool,
    subject: Option<&str>,
    keys: Option<&dyn ChildKeys>,
    signers: &dyn Signers,
) -> Result<Vec<Retried>, ApplyError> {
    let subjects: Vec<String> = match subject {
        Some(s) => vec![s.to_owned()],
        None => {
            sqlx::query_scalar("select subject from parked_subject order by parked_at, subject").fetch_all(pool).await?
        }
    };
    let mut out = Vec::with_capacity(subjects.len());
    for subject in subjects {
        out.push(retry_one(pool, &subject, keys, signers).await?);
    }
    Ok(out)
}

async fn retry_one(
    pool: &PgPool,
    subject: &str,
    keys: Option<&dyn ChildKeys>,
    signers: &dyn Signers,
) -> Result<Retried, ApplyError> {
    let mut tx = pool.begin().await?;
    let parked: Option<String> = sqlx::query_scalar("select subject from parked_subject where subject = $1 for update")
        .bind(subject)
        .fetch_optional(&mut *tx)
        .await?;
    if parked.is_none() {
        return Ok(Retried { subject: subject.to_owned(), applied: 0, error: Some("is not parked".to_owned()) });
    }
    let rows = sqlx::query(
        "select stream_seq, nats_subject, payload from parked_message where subject = $1 order by stream_seq",
    )
    .bind(subject)
    .fetch_all(&mut *tx)
    .await?;
    let mut messages = Vec::with_capacity(rows.len());
    for r in &rows {
        let seq: i64 = r.try_get("stream_seq")?;
        let nats_subject: String = r.try_get("nats_subject")?;
        let payload: Vec<u8> = r.try_get("payload")?;
        messages.push(Incoming::decode(u64::try_from(seq).unwrap_or(0), &nats_subject, &payload, signers));
    }
    // They decoded when they arrived, but a message parked before the
    // projector checked signatures may not carry the gateway's; and whether
    // each continues the subject's chain is known only now. Either way it
    // is a dead letter, never dropped.
    let mut dead = store::DeadRows::default();
    let mut items: Vec<EventItem<'_>> = Vec::with_capacity(messages.len());
    for m in &messages {
        match m.item() {
            Ok(item) => items.push(item),
            Err(letter) => dead.push_letter(&letter),
        }
    }
    // A parked subject's messages wait behind it; whether a break among
    // them is suspect was for the pump to judge when they came.
    let store::Chained { kept: items, broken, .. } = store::in_chain(&mut tx, items, 0).await?;
    for (item, why) in &broken {
        dead.push(item.stream_seq, item.nats_subject, &why.to_string(), item.payload());
    }
    let dead_letters = dead.len();
    dead.write(&mut tx).await?;
    if dead_letters > 0 {
        tracing::warn!(subject, dead_letters, "waiting messages the gateway did not sign or chain are dead letters");
    }
    match store::write_events(&mut tx, &items, keys, &crate::kept::Kept::new(0)).await {
        Ok(_) => {
            sqlx::query("delete from parked_message where subject = $1").bind(subject).execute(&mut *tx).await?;
            sqlx::query("delete from parked_subject where subject = $1").bind(subject).execute(&mut *tx).await?;
            tx.commit().await?;
            tracing::info!(subject, applied = items.len(), "a parked subject was applied and is no longer parked");
            Ok(Retried { subject: subject.to_owned(), applied: items.len() as u64, error: None })
        }
        Err(e) if e.is_subject_failure() => {
            drop(tx);
            let error = e.to_string();
            sqlx::query(
                "update parked_subject set error = $2, attempts = attempts + 1, retried_at = now() where subject = $1",
            )
            .bind(subject)
            .bind(&error)
            .execute(pool)
            .await?;
            tracing::warn!(subject, error = %error, "a parked subject failed again and stays parked");
            Ok(Retried { subject: subject.to_owned(), applied: 0, error: Some(error) })
        }
        Err(e) => Err(e),
    }
}
