//! Building the read models afresh from the stream, beside the live ones,
//! and switching over in one step.
//!
//! The rebuild fills the schema [`crate::REBUILD_SCHEMA`] from the first
//! stream message with an ephemeral consumer, while the live schema keeps
//! serving reads and the live projector keeps applying new events. Once
//! caught up, one transaction locks the live projectors' position rows
//! (waiting for any batch in flight), checks the rebuild has reached them,
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

    let stream = js.get_stream(runtime::EVENTS_STREAM).await.map_err(|e| ProjectorError::JetStream(e.to_string()))?;
    if let Ok(info) = stream.clone().info().await {
        stats.stream_last.store(info.state.last_sequence, Ordering::Relaxed);
    }
    let consumer = runtime::consumer_from(&stream, None, &settings.filter, 0).await?;
    let mut position = 0;
    loop {
        let target = Target::<std::future::Pending<()>>::Head;
        match runtime::pump(&pool, &stream, &consumer, &settings, &stats, position, None, target).await? {
            Outcome::Reached | Outcome::Stopped => {}
            Outcome::Moved { stored } => {
                return Err(ProjectorError::JetStream(format!(
                    "another process wrote to {REBUILD_SCHEMA} (position {stored}); run one rebuild at a time"
                )));
            }
        }
        position = stats.position.load(Ordering::Relaxed);
        if switch(&mut admin, &settings.name, position).await? {
            break;
        }
        // The live projector got ahead while we checked: catch up again.
    }
    pool.close().await;
    let replaced = sqlx::query_scalar::<_, bool>("select exists (select from pg_namespace where nspname = $1)")
        .bind(PREVIOUS_SCHEMA)
        .fetch_one(&mut admin)
        .await?;
    Ok(Report { events: stats.applied.load(Ordering::Relaxed), position, elapsed: started.elapsed(), replaced })
}

/// Swaps the rebuilt schema in if it has reached every live projector's
/// position; returns false (changing nothing) if it has not.
async fn switch(admin: &mut sqlx::PgConnection, name: &str, position: u64) -> Result<bool, ProjectorError> {
    let mut tx = admin.begin().await?;
    let live_exists: bool = sqlx::query_scalar("select exists (select from pg_namespace where nspname = $1)")
        .bind(LIVE_SCHEMA)
        .fetch_one(&mut *tx)
        .await?;
    let mut names = vec![name.to_owned()];
    if live_exists {
        // Waits for a live batch in flight, and holds the live projectors still until the switch commits.
        let rows = sqlx::query(&format!(
            "select projector, stream_seq from {LIVE_SCHEMA}.projector_position order by projector for update"
        ))
        .fetch_all(&mut *tx)
        .await?;
        for row in rows {
            let live: i64 = row.try_get("stream_seq")?;
            if live.max(0) as u64 > position {
                tx.rollback().await?;
                return Ok(false);
            }
            let projector: String = row.try_get("projector")?;
            if !names.contains(&projector) {
                names.push(projector);
            }
        }
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
    Ok(true)
}
