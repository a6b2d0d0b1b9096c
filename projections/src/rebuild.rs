//! Building the read models afresh from the stream, beside the live ones,
//! and switching over in one step.
//!
//! The rebuild fills the schema [`crate::REBUILD_SCHEMA`] from the first
//! stream message with an ephemeral consumer, while the live schema keeps
//! serving reads and the live projector keeps applying new events. Once
//! caught up, one transaction locks the live projectors' position rows
//! (waiting for any batch in flight), catches the rebuild up to them while
//! they are held still (so it finishes under steady live traffic too),
//! and renames the schemas: live becomes [`crate::PREVIOUS_SCHEMA`],
//! rebuilt becomes live. Every connection resolves table names through its
//! `search_path`, and PostgreSQL re-plans cached statements when a schema is
//! renamed, so readers see the old tables up to the commit and the new ones
//! after it, never a mix. A live projector whose next batch finds a position
//! other than where it left off resumes from the rebuilt position
//! ([`crate::store::ApplyError::Moved`]).

use crate::runtime::{self, Outcome, ProjectorError, Settings, Stats, Target};
use crate::{LIVE_SCHEMA, PREVIOUS_SCHEMA, REBUILD_SCHEMA};
use async_nats::jetstream;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection as _, Row as _};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// What a rebuild did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Events applied to the rebuilt read models.
    pub events: u64,
    /// The stream position the rebuilt read models covered at the switch.
    pub position: u64,
    pub elapsed: Duration,
    /// Whether there were live read models to replace (kept in [`PREVIOUS_SCHEMA`]).
    pub replaced: bool,
}

/// Rebuilds every read model from the stream and switches over. `stats`
/// moves as it goes, for a progress bar.
pub async fn rebuild(
    database: PgConnectOptions,
    js: jetstream::Context,
    settings: Settings,
    stats: Arc<Stats>,
) -> Result<Report, ProjectorError> {
    let started = Instant::now();
    let mut admin = sqlx::PgConnection::connect_with(&database).await?;
    sqlx::query(&format!("drop schema if exists {REBUILD_SCHEMA} cascade")).execute(&mut admin).await?;
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .connect_with(crate::in_schema(database.clone(), REBUILD_SCHEMA))
        .await?;
    crate::migrate(&pool, REBUILD_SCHEMA).await?;

    let stream =
        js.get_stream(events::subjects::EVENTS_STREAM).await.map_err(|e| ProjectorError::JetStream(e.into()))?;
    if let Ok(info) = stream.clone().info().await {
        stats.stream_last.store(info.state.last_sequence, Ordering::Relaxed);
    }
    let consumer = runtime::consumer_from(&stream, None, &settings.partitions.filters(), 0).await?;
    // A lost delivery fails the rebuild (run it again) rather than leave a hole.
    let mut deliveries = runtime::Deliveries::new();
    let mut position = 0;
    let mut target = Target::<std::future::Pending<()>>::Head;
    loop {
        match runtime::pump(&pool, &stream, &consumer, &mut deliveries, &settings, &stats, position, None, target)
            .await?
        {
            Outcome::Reached | Outcome::Stopped => {}
            Outcome::Moved { stored } => {
                return Err(ProjectorError::RebuildRaced { stored });
            }
        }
        position = stats.position.load(Ordering::Relaxed);
        match switch(
            &mut admin,
            &settings.name,
            position,
            &pool,
            &stream,
            &consumer,
            &mut deliveries,
            &settings,
            &stats,
        )
        .await?
        {
            Some(at) => {
                position = at;
                break;
            }
            // The live projector got ahead while the lock was being taken: catch up and try again.
            None => target = Target::Head,
        }
    }
    pool.close().await;
    let replaced = sqlx::query_scalar::<_, bool>("select exists (select from pg_namespace where nspname = $1)")
        .bind(PREVIOUS_SCHEMA)
        .fetch_one(&mut admin)
        .await?;
    Ok(Report { events: stats.applied.load(Ordering::Relaxed), position, elapsed: started.elapsed(), replaced })
}

/// Swaps the rebuilt schema in. Holding the live projectors' position rows
/// (so they cannot move), it catches the rebuild up to the furthest of them,
/// then renames the schemas in the same transaction. Returns the position
/// the rebuilt read models cover.
#[allow(clippy::too_many_arguments)]
async fn switch(
    admin: &mut sqlx::PgConnection,
    name: &str,
    mut position: u64,
    pool: &sqlx::PgPool,
    stream: &jetstream::stream::Stream,
    consumer: &jetstream::consumer::PullConsumer,
    deliveries: &mut runtime::Deliveries,
    settings: &Settings,
    stats: &Stats,
) -> Result<Option<u64>, ProjectorError> {
    let mut tx = admin.begin().await?;
    let live_exists: bool = sqlx::query_scalar("select exists (select from pg_namespace where nspname = $1)")
        .bind(LIVE_SCHEMA)
        .fetch_one(&mut *tx)
        .await?;
    // The projectors that will resume from the rebuilt tables: the live
    // ones (all partitioned projectors among them), or, on a first build,
    // the rebuild's own name. No other row is written: the copy counts as
    // complete only up to the least position of its rows.
    let mut names: Vec<String> = Vec::new();
    if live_exists {
        // Waits for a live batch in flight, and holds the live projectors still until the switch commits.
        let rows = sqlx::query(&format!(
            "select projector, stream_seq from {LIVE_SCHEMA}.projector_position order by projector for update"
        ))
        .fetch_all(&mut *tx)
        .await?;
        let mut furthest = 0u64;
        for row in rows {
            let live: i64 = row.try_get("stream_seq")?;
            furthest = furthest.max(live.max(0) as u64);
            let projector: String = row.try_get("projector")?;
            if !names.contains(&projector) {
                names.push(projector);
            }
        }
        if furthest > position {
            // The rebuild applies on its own connections, so the lock held here only stops the live side.
            let target = Target::<std::future::Pending<()>>::Until(furthest);
            match runtime::pump(pool, stream, consumer, deliveries, settings, stats, position, None, target).await? {
                Outcome::Reached => position = stats.position.load(Ordering::Relaxed),
                Outcome::Stopped | Outcome::Moved { .. } => {
                    tx.rollback().await?;
                    return Ok(None);
                }
            }
        }
    }
    if names.is_empty() {
        names.push(name.to_owned());
    }
    // Every live projector resumes from the rebuilt position: the rebuild covered all subjects up to it.
    for projector in &names {
        sqlx::query(&format!(
            "insert into {REBUILD_SCHEMA}.projector_position (projector, stream_seq) values ($1, $2)
             on conflict (projector) do update set stream_seq = excluded.stream_seq, updated_at = now()"
        ))
        .bind(projector)
        .bind(i64::try_from(position).unwrap_or(i64::MAX))
        .execute(&mut *tx)
        .await?;
    }
    sqlx::query(&format!("drop schema if exists {PREVIOUS_SCHEMA} cascade")).execute(&mut *tx).await?;
    if live_exists {
        sqlx::query(&format!("alter schema {LIVE_SCHEMA} rename to {PREVIOUS_SCHEMA}")).execute(&mut *tx).await?;
    }
    sqlx::query(&format!("alter schema {REBUILD_SCHEMA} rename to {LIVE_SCHEMA}")).execute(&mut *tx).await?;
    tx.commit().await?;
    tracing::info!(position, "switched to the rebuilt read models");
    Ok(Some(position))
}
