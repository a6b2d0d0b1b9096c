//! The audit consumer: projects the audit stream (`SG_AUDIT`) into the
//! `audit` schema (migration 0007): access events for the access log,
//! erasures, and checkpoints.
//!
//! Like the event projector, each batch is one transaction that also moves
//! `audit.position`, acknowledged only after commit, and re-run safely from
//! the stored position. The audit tables live outside the `projection`
//! schema, so a rebuild of the read models leaves them alone.
//!
//! An erasure also removes the child's rows from the identifier index, in
//! every copy of the read models, under a lock that waits for any batch
//! writing that index to finish: a projector that fetched the child's key
//! before it was erased cannot slip digests in afterwards.

use crate::runtime::{ProjectorError, Stats, consumer_from};
use async_nats::jetstream;
use chrono::{DateTime, Utc};
use futures::StreamExt as _;
use sqlx::{PgPool, Postgres, Transaction};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// The audit stream.
pub use events::subjects::AUDIT_STREAM;
/// The consumer's row in `audit.position` and its durable's name.
const CONSUMER: &str = "audit";

/// An access-log row (the table `audit.access_event`). On the wire it is an
/// `events::audit::AccessEvent`; the query role opens its purpose with the
/// child's key when it answers.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct AccessRecord {
    pub id: uuid::Uuid,
    #[sqlx(rename = "child_id")]
    pub child: Option<uuid::Uuid>,
    #[sqlx(try_from = "String")]
    pub principal: events::ids::PrincipalName,
    pub acting_user: Option<String>,
    pub purpose: Option<sqlx::types::Json<events::audit::Purpose>>,
    pub endpoint: String,
    pub at: DateTime<Utc>,
    #[sqlx(try_from = "String")]
    pub outcome: events::audit::Outcome,
    /// Why a refused read was refused (absent for reads allowed).
    pub reason: Option<String>,
}

/// One decoded audit message: a record, or why it is a dead letter.
enum Record {
    Known(events::audit::Record),
    Unknown(String),
}

/// One audit message as it arrived, and what it says.
struct Message {
    stream_seq: u64,
    subject: String,
    payload: Vec<u8>,
    record: Record,
}

fn decode(subject: &str, payload: &[u8]) -> Record {
    match events::audit::decode(subject, payload) {
        Ok(record) => Record::Known(record),
        Err(reason) => Record::Unknown(reason),
    }
}

/// Applies the audit stream until `shutdown` resolves, retrying (with
/// backoff) through NATS and PostgreSQL failures.
pub async fn run(
    pool: PgPool,
    js: jetstream::Context,
    stats: Arc<Stats>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ProjectorError> {
    crate::migrate(&pool, crate::LIVE_SCHEMA).await?;
    tokio::pin!(shutdown);
    let mut failures: u32 = 0;
    loop {
        let session = session(&pool, &js, &stats);
        tokio::select! {
            () = &mut shutdown => return Ok(()),
            result = session => {
                let e = match result { Ok(()) => continue, Err(e) => e };
                stats.interruptions.fetch_add(1, Ordering::Relaxed);
                failures = failures.saturating_add(1);
                let wait = Duration::from_millis(200 * u64::from(failures.min(25)));
                tracing::warn!(error = &e as &dyn std::error::Error, retry_in_ms = wait.as_millis() as u64, "audit consumer interrupted");
                tokio::select! {
                    () = &mut shutdown => return Ok(()),
                    () = tokio::time::sleep(wait) => {}
                }
            }
        }
    }
}

async fn session(pool: &PgPool, js: &jetstream::Context, stats: &Stats) -> Result<(), ProjectorError> {
    let stream = js.get_stream(AUDIT_STREAM).await.map_err(|e| ProjectorError::JetStream(e.into()))?;
    let from: i64 = sqlx::query_scalar("select stream_seq from audit.position where consumer = $1")
        .bind(CONSUMER)
        .fetch_optional(pool)
        .await?
        .unwrap_or(0);
    let from = from.max(0) as u64;
    stats.position.store(from, Ordering::Relaxed);
    let durable = "sg-audit-projector".to_owned();
    let _ = stream.delete_consumer(&durable).await;
    let consumer = consumer_from(&stream, Some(durable), &[events::subjects::AUDIT_FILTER.to_owned()], from).await?;
    let mut deliveries = crate::runtime::Deliveries::new();
    loop {
        let mut messages = consumer
            .fetch()
            .max_messages(1000)
            .expires(Duration::from_millis(500))
            .messages()
            .await
            .map_err(|e| ProjectorError::JetStream(e.into()))?;
        let mut batch = Vec::new();
        let mut last = None;
        while let Some(message) = messages.next().await {
            let message = message.map_err(ProjectorError::JetStream)?;
            let info = message.info().map_err(ProjectorError::JetStream)?;
            deliveries.check(info.consumer_sequence)?;
            batch.push(Message {
                stream_seq: info.stream_sequence,
                subject: message.subject.to_string(),
                payload: message.payload.to_vec(),
                record: decode(message.subject.as_str(), &message.payload),
            });
            last = Some(message);
        }
        let Some(last) = last else { continue };
        let mut tx = pool.begin().await?;
        let (position, dead) = match apply(&mut tx, &batch, false).await {
            Ok(done) => {
                tx.commit().await?;
                done
            }
            // One record the tables refuse: again, each record on its own,
            // the refused ones kept as dead letters.
            Err(e) if crate::store::is_content_error(&e) => {
                drop(tx);
                let mut tx = pool.begin().await?;
                let done = apply(&mut tx, &batch, true).await?;
                tx.commit().await?;
                done
            }
            Err(e) => return Err(e.into()),
        };
        if dead > 0 {
            stats.dead_letters.fetch_add(dead, Ordering::Relaxed);
            tracing::warn!(count = dead, "kept audit messages that cannot be applied in audit.dead_letter");
        }
        last.ack().await.map_err(ProjectorError::JetStream)?;
        stats.position.store(position, Ordering::Relaxed);
        stats.applied.fetch_add(batch.len() as u64, Ordering::Relaxed);
    }
}

/// Applies one batch in `tx`, skipping what the stored position covers;
/// with `isolate`, each record in its own savepoint, a refused one kept as
/// a dead letter. Returns the position and the dead letters kept.
async fn apply(
    tx: &mut Transaction<'_, Postgres>,
    batch: &[Message],
    isolate: bool,
) -> Result<(u64, u64), sqlx::Error> {
    sqlx::query("insert into audit.position values ($1, 0) on conflict do nothing")
        .bind(CONSUMER)
        .execute(&mut **tx)
        .await?;
    let from: i64 = sqlx::query_scalar("select stream_seq from audit.position where consumer = $1 for update")
        .bind(CONSUMER)
        .fetch_one(&mut **tx)
        .await?;
    let mut position = from.max(0) as u64;
    let mut dead = 0;
    for m in batch {
        if m.stream_seq <= position {
            continue;
        }
        position = m.stream_seq;
        let stream_seq = i64::try_from(m.stream_seq).unwrap_or(i64::MAX);
        if let Record::Unknown(reason) = &m.record {
            dead_letter(tx, m, reason).await?;
            dead += 1;
            continue;
        }
        if !isolate {
            record(tx, stream_seq, &m.record).await?;
            continue;
        }
        sqlx::query("savepoint record").execute(&mut **tx).await?;
        match record(tx, stream_seq, &m.record).await {
            Ok(()) => {
                sqlx::query("release savepoint record").execute(&mut **tx).await?;
            }
            Err(e) if crate::store::is_content_error(&e) => {
                sqlx::query("rollback to savepoint record").execute(&mut **tx).await?;
                dead_letter(tx, m, &e.to_string()).await?;
                dead += 1;
            }
            Err(e) => return Err(e),
        }
    }
    sqlx::query("update audit.position set stream_seq = $2 where consumer = $1")
        .bind(CONSUMER)
        .bind(i64::try_from(position).unwrap_or(i64::MAX))
        .execute(&mut **tx)
        .await?;
    Ok((position, dead))
}

async fn dead_letter(tx: &mut Transaction<'_, Postgres>, m: &Message, reason: &str) -> Result<(), sqlx::Error> {
    tracing::warn!(stream_seq = m.stream_seq, reason = %reason, "kept an audit message that cannot be applied");
    sqlx::query("insert into audit.dead_letter (stream_seq, nats_subject, reason, payload) values ($1, $2, $3, $4) on conflict do nothing")
        .bind(i64::try_from(m.stream_seq).unwrap_or(i64::MAX))
        .bind(&m.subject)
        .bind(reason)
        .bind(&m.payload)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

async fn record(tx: &mut Transaction<'_, Postgres>, stream_seq: i64, record: &Record) -> Result<(), sqlx::Error> {
    {
        match record {
            Record::Known(events::audit::Record::Access(a)) => {
                sqlx::query(
                    "insert into audit.access_event
                       (stream_seq, id, child_id, principal, acting_user, purpose_kept, endpoint, at, outcome, reason)
                     values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                     on conflict do nothing",
                )
                .bind(stream_seq)
                .bind(a.id)
                .bind(a.child)
                .bind(&a.principal)
                .bind(&a.acting_user)
                .bind(a.purpose.as_ref().map(sqlx::types::Json))
                .bind(&a.endpoint)
                .bind(a.at)
                .bind(a.outcome.as_str())
                .bind(&a.reason)
                .execute(&mut **tx)
                .await?;
            }
            Record::Known(events::audit::Record::Erasure(e)) => erase(tx, stream_seq, e).await?,
            Record::Known(events::audit::Record::Checkpoint { covers, root, document }) => {
                sqlx::query("insert into audit.checkpoint values ($1, $2, $3, $4) on conflict do nothing")
                    .bind(stream_seq)
                    .bind(covers)
                    .bind(root)
                    .bind(document)
                    .execute(&mut **tx)
                    .await?;
            }
            // The audit stream is the record of returns made; no read model needs them.
            Record::Known(events::audit::Record::Return(_)) | Record::Unknown(_) => {}
        }
    }
    Ok(())
}

/// Records the erasure and removes the child's identifier digests from the
/// live read models, a rebuild in progress and the kept previous copy.
async fn erase(
    tx: &mut Transaction<'_, Postgres>,
    stream_seq: i64,
    e: &events::audit::Erasure,
) -> Result<(), sqlx::Error> {
    sqlx::query("insert into audit.erased_child values ($1, $2, $3, $4, $5) on conflict do nothing")
        .bind(e.child)
        .bind(stream_seq)
        .bind(&e.principal)
        .bind(&e.acting_user)
        .bind(e.at)
        .execute(&mut **tx)
        .await?;
    for schema in [crate::LIVE_SCHEMA, crate::REBUILD_SCHEMA, crate::PREVIOUS_SCHEMA] {
        let table = format!("{schema}.child_identifier");
        let exists: Option<String> =
            sqlx::query_scalar("select to_regclass($1)::text").bind(&table).fetch_one(&mut **tx).await?;
        if exists.is_none() {
            continue;
        }
        // Waits for any batch that is writing the index to commit, so its
        // rows are visible to the delete; later batches see erased_child.
        sqlx::query(&format!("lock table {table} in share row exclusive mode")).execute(&mut **tx).await?;
        sqlx::query(&format!("delete from {table} where child_id = $1")).bind(e.child).execute(&mut **tx).await?;
    }
    Ok(())
}

/// A child's access log, oldest first, as far as the audit consumer has
/// applied the audit stream (returned alongside).
pub async fn access_log(pool: &PgPool, child: uuid::Uuid) -> Result<(Vec<AccessRecord>, u64), sqlx::Error> {
    let entries: Vec<AccessRecord> = sqlx::query_as(
        "select id, child_id, principal, acting_user, coalesce(purpose_kept, to_jsonb(purpose)) as purpose, endpoint,
                at, outcome, reason
           from audit.access_event
          where child_id = $1 order by at, stream_seq",
    )
    .bind(child)
    .fetch_all(pool)
    .await?;
    let position: Option<i64> = sqlx::query_scalar("select stream_seq from audit.position where consumer = $1")
        .bind(CONSUMER)
        .fetch_optional(pool)
        .await?;
    Ok((entries, position.unwrap_or(0).max(0) as u64))
}

/// The latest checkpoint covering no more than stream position `upto`, as
/// the gateway published it (its signature is the reader's to check).
pub async fn latest_checkpoint(pool: &PgPool, upto: u64) -> Result<Option<serde_json::Value>, sqlx::Error> {
    sqlx::query_scalar("select document from audit.checkpoint where covers <= $1 order by covers desc limit 1")
        .bind(i64::try_from(upto).unwrap_or(i64::MAX))
        .fetch_optional(pool)
        .await
}
