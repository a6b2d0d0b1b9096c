//! How fresh the read models are, for the query role: the position every
//! read can claim (`X-Read-Position`), and what the projectors last saw of
//! the stream (`projector_health`, written on their timer whether or not
//! they make progress; see [`crate::runtime::watch`]).

use chrono::{DateTime, Utc};
use sqlx::{PgPool, Row};

/// What one projector last reported.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ProjectorHealth {
    pub projector: String,
    pub position: i64,
    pub stream_last: i64,
    pub lag: i64,
    pub lag_seconds: f64,
    pub stalled: bool,
    pub parked: i32,
    pub checked_at: DateTime<Utc>,
}

/// The read models' freshness as a whole.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Freshness {
    /// The least position of the projectors: every event at or below it is
    /// in the read models (or waits behind a parked subject).
    pub position: u64,
    /// Some projector reports a stall.
    pub stalled: bool,
    /// The largest lag in seconds any projector reports.
    pub lag_seconds: f64,
    /// Subjects parked, in all.
    pub parked: i64,
    /// Children waiting to be folded again under their council's new
    /// settings (`refold_pending`): their alerts follow once it is 0.
    pub refolds_pending: i64,
    /// The oldest report's age in seconds: a projector that is gone stops reporting.
    pub report_age_seconds: Option<f64>,
    pub projectors: Vec<ProjectorHealth>,
}

/// The stream position below which the read models hold every event: the
/// least of the projectors' positions (partitioned projectors each cover
/// their own partitions up to their position). 0 before any has applied.
pub async fn complete_up_to(pool: &PgPool) -> Result<u64, sqlx::Error> {
    let position: Option<i64> =
        sqlx::query_scalar("select min(stream_seq) from projector_position").fetch_one(pool).await?;
    Ok(position.and_then(|p| u64::try_from(p).ok()).unwrap_or(0))
}

/// The position the read models have applied up to, and whether a projector is stalled.
pub async fn position(pool: &PgPool) -> Result<(u64, bool), sqlx::Error> {
    let row = sqlx::query(
        "select coalesce((select min(stream_seq) from projector_position), 0) as position,
                coalesce((select bool_or(stalled) from projector_health), false) as stalled",
    )
    .fetch_one(pool)
    .await?;
    let position: i64 = row.try_get("position")?;
    Ok((u64::try_from(position).unwrap_or(0), row.try_get("stalled")?))
}

/// Everything the projectors last reported.
pub async fn freshness(pool: &PgPool) -> Result<Freshness, sqlx::Error> {
    let (position, _) = position(pool).await?;
    let rows = sqlx::query(
        "select projector, position, stream_last, lag, lag_seconds, stalled, parked, checked_at
           from projector_health order by projector",
    )
    .fetch_all(pool)
    .await?;
    let projectors = rows
        .iter()
        .map(|r| {
            Ok(ProjectorHealth {
                projector: r.try_get("projector")?,
                position: r.try_get("position")?,
                stream_last: r.try_get("stream_last")?,
                lag: r.try_get("lag")?,
                lag_seconds: r.try_get("lag_seconds")?,
                stalled: r.try_get("stalled")?,
                parked: r.try_get("parked")?,
                checked_at: r.try_get("checked_at")?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    let parked: i64 = sqlx::query_scalar("select count(*) from parked_subject").fetch_one(pool).await?;
    let refolds_pending: i64 = sqlx::query_scalar("select count(*) from refold_pending").fetch_one(pool).await?;
    let now = Utc::now();
    Ok(Freshness {
        position,
        stalled: projectors.iter().any(|p| p.stalled),
        lag_seconds: projectors.iter().map(|p| p.lag_seconds).fold(0.0, f64::max),
        parked,
        refolds_pending,
        report_age_seconds: projectors
            .iter()
            .map(|p| (now - p.checked_at).num_milliseconds() as f64 / 1000.0)
            .reduce(f64::max),
        projectors,
    })
}
