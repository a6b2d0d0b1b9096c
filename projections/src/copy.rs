//! The Postgres copy of the stream (`stored_event`, and messages waiting
//! behind a parked subject: the `event_copy` view), read for verification:
//! `safeguard verify` and `GET /v1/verify` compare it with the stream. How
//! far it is complete is `crate::health::complete_up_to`.

use events::Subject;
use events::chain::{Digest, Head};
use sqlx::PgPool;
use std::collections::HashMap;

/// One message of the copy, as the stream held it.
#[derive(Debug, Clone)]
pub struct CopyRow {
    pub stream_seq: u64,
    pub subject: String,
    pub sequence: u64,
    pub document: String,
}

/// The copy's rows with stream positions in `(after, upto]`: applied
/// events and messages waiting behind a parked subject (`event_copy`).
pub async fn rows(pool: &PgPool, child: Option<&Subject>, after: u64, upto: u64) -> Result<Vec<CopyRow>, sqlx::Error> {
    let (after, upto) = (i64::try_from(after).unwrap_or(i64::MAX), i64::try_from(upto).unwrap_or(i64::MAX));
    // Two statements rather than one with "$3 is null or subject = $3",
    // which would keep the planner from the subject index for one child.
    let rows: Vec<(i64, String, i64, String)> = match child {
        Some(subject) => {
            sqlx::query_as(
                "select stream_seq, subject, sequence, document from event_copy
              where subject = $3 and stream_seq > $1 and stream_seq <= $2 order by stream_seq",
            )
            .bind(after)
            .bind(upto)
            .bind(subject.to_string())
            .fetch_all(pool)
            .await
        }
        None => {
            sqlx::query_as(
                "select stream_seq, subject, sequence, document from event_copy
              where stream_seq > $1 and stream_seq <= $2 order by stream_seq",
            )
            .bind(after)
            .bind(upto)
            .fetch_all(pool)
            .await
        }
    }?;
    Ok(rows
        .into_iter()
        .map(|(s, subject, sequence, document)| CopyRow {
            stream_seq: s.max(0) as u64,
            subject,
            sequence: sequence.max(0) as u64,
            document,
        })
        .collect())
}

/// Each subject's last event in the copy, up to stream position `upto`.
pub async fn heads(pool: &PgPool, child: Option<&Subject>, upto: u64) -> Result<HashMap<String, Head>, sqlx::Error> {
    let upto = i64::try_from(upto).unwrap_or(i64::MAX);
    let rows: Vec<(String, i64, String)> = match child {
        Some(subject) => {
            sqlx::query_as(
                "select subject, sequence, hash from event_copy
              where subject = $1 and stream_seq <= $2 order by sequence desc limit 1",
            )
            .bind(subject.to_string())
            .bind(upto)
            .fetch_all(pool)
            .await
        }
        None => {
            sqlx::query_as(
                "select distinct on (subject) subject, sequence, hash from event_copy
              where stream_seq <= $1 order by subject, sequence desc",
            )
            .bind(upto)
            .fetch_all(pool)
            .await
        }
    }?;
    Ok(rows
        .into_iter()
        .filter_map(|(subject, sequence, hash)| {
            Some((subject, Head { sequence: sequence.max(0) as u64, hash: Digest::parse(&hash).ok()? }))
        })
        .collect())
}

/// A subject's chain as the copy holds it (applied events only), in
/// sequence order: what a certified export proves each entry with.
pub async fn links(pool: &PgPool, subject: &Subject) -> Result<Vec<casework::certified::Link>, sqlx::Error> {
    let rows: Vec<(i64, String, Option<String>, Option<String>)> = sqlx::query_as(
        "select sequence, hash, document->>'prevhash', document->>'signature' from stored_event
          where subject = $1 order by sequence",
    )
    .bind(subject.to_string())
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(sequence, hash, prevhash, signature)| {
            Some(casework::certified::Link {
                sequence: sequence.max(0) as u64,
                hash: Digest::parse(&hash).ok()?,
                prevhash: Digest::parse(&prevhash?).ok()?,
                signature: signature?,
            })
        })
        .collect())
}
