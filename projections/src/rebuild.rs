//! Building the read models afresh from the stream, beside the live ones,
//! and switching over in one step.
//!
//! The rebuild fills the schema [`crate::REBUILD_SCHEMA`] from the first
//! stream message with ephemeral consumers, while the live schema keeps
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
//!
//! A rebuild may be shared: processes given disjoint partitions (as
//! partitioned projectors are) fill the same schema side by side, and the
//! one that finishes last, once every partition is done, catches all of
//! them up and switches ([`share`]). Every casework row is folded from its
//! own subject's history, and council-wide rows (tallies, settings) are
//! written as partitioned projectors write them, so the shares need nothing
//! from each other but the schema.

mod share;

use crate::runtime::{self, Deliveries, Outcome, ProjectorError, Settings, Stats, Target};
use crate::statistics;
use crate::{LIVE_SCHEMA, PREVIOUS_SCHEMA, REBUILD_SCHEMA};
use async_nats::jetstream;
use share::{Finished, Share, Turn};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection as _, Row as _};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// What a rebuild did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Events this process applied to the rebuilt read models.
    pub events: u64,
    /// The stream position the rebuilt read models covered: at the switch,
    /// or, for a share another switched, where its partitions finished.
    pub position: u64,
    pub elapsed: Duration,
    /// Whether there were live read models to replace (kept in [`PREVIOUS_SCHEMA`]).
    pub replaced: bool,
    /// Whether this process switched the read models over (in a shared
    /// rebuild, the share that finished last does).
    pub switched: bool,
}

/// How often a share that has finished its partitions looks whether the
/// others have.
const WAIT: Duration = Duration::from_millis(200);

/// Rebuilds the read models of `settings.partitions` from the stream and,
/// once every partition is rebuilt (by this process or by the other shares
/// of the rebuild), switches over. `stats` moves as it goes, for a
/// progress bar.
pub async fn rebuild(
    database: PgConnectOptions,
    js: jetstream::Context,
    settings: Settings,
    stats: Arc<Stats>,
) -> Result<Report, ProjectorError> {
    let started = Instant::now();
    let mut admin = sqlx::PgConnection::connect_with(&database).await?;
    let share = Share::join(&mut admin, &database, &settings).await?;
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .connect_with(crate::in_schema(database.clone(), REBUILD_SCHEMA))
        .await?;
    let stream =
        js.get_stream(events::subjects::EVENTS_STREAM).await.map_err(|e| ProjectorError::JetStream(e.into()))?;
    if let Ok(info) = stream.get_info().await {
        stats.stream_last.store(info.state.last_sequence, Ordering::Relaxed);
    }
    // From where this share's name left its partitions: nothing on a fresh
    // schema, or a stopped share's position when its partitions are taken
    // up again under its name.
    let from = stored(&pool, &settings.name).await?;
    stats.position.store(from, Ordering::Relaxed);
    let consumer = runtime::consumer_from(&stream, None, &settings.partitions.filters(), from).await?;
    // A lost delivery fails the rebuild (run it again) rather than leave a hole.
    let mut deliveries = Deliveries::new();
    let target = Target::<std::future::Pending<()>>::Head;
    let tending = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(crate::in_schema(database.clone(), REBUILD_SCHEMA))
        .await?;
    let tended = runtime::AbortOnDrop(tokio::spawn(tend(tending.clone(), settings.clone(), stats.clone())));
    if let Outcome::Moved { stored } =
        runtime::pump(&pool, &stream, &consumer, &mut deliveries, &settings, &stats, from, None, target).await?
    {
        return Err(ProjectorError::RebuildRaced { stored });
    }
    drop(tended);
    // So that the switch, and the live projectors after it, plan from what the tables now hold.
    analyse(&tending, &settings.name, statistics::Growth::Rebuilt).await;
    tending.close().await;
    let finished = stats.position.load(Ordering::Relaxed);
    share.finished(&mut admin).await?;
    let mut waiting_for = None;
    let switched = loop {
        match share.turn(&mut admin).await? {
            Turn::Switch(shares) => {
                if let Some(at) = switch(&mut admin, &pool, &stream, &settings, &stats, &shares).await? {
                    break Some(at);
                }
                // The live projectors got ahead while the lock was being taken: catch up and try again.
            }
            Turn::Wait { missing } => {
                if waiting_for.as_ref() != Some(&missing) {
                    tracing::info!(partitions = %settings.partitions, missing = %missing, "rebuilt these partitions; waiting for the other shares");
                    waiting_for = Some(missing);
                }
                tokio::time::sleep(WAIT).await;
            }
            Turn::Switched => break None,
        }
    };
    pool.close().await;
    let replaced = sqlx::query_scalar::<_, bool>("select exists (select from pg_namespace where nspname = $1)")
        .bind(PREVIOUS_SCHEMA)
        .fetch_one(&mut admin)
        .await?;
    Ok(Report {
        events: stats.applied.load(Ordering::Relaxed),
        position: switched.unwrap_or(finished),
        elapsed: started.elapsed(),
        replaced,
        switched: switched.is_some(),
    })
}

/// What a share does beside its pump, every `settings.health_interval`,
/// as the live projector's watcher does for the live tables:
///
/// - gathers the statistics of the rebuild's tables as they grow (see
///   [`crate::statistics`]): no live projector need share the database;
/// - counts the children of its partitions queued to be folded again,
///   whichever share's batch queued them (a council's new settings queue
///   all its children, in every partition). The pump drains them between
///   its batches once it sees the count. Without this look a share learnt
///   only of the children it queued itself, and the rest waited for the
///   switch, where one process folded them while the others stood idle.
async fn tend(pool: sqlx::PgPool, settings: Settings, stats: Arc<Stats>) {
    let partitions = crate::refold::partition_numbers(settings.partitions.numbers());
    let mut tick = tokio::time::interval(settings.health_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        analyse(&pool, &settings.name, statistics::Growth::Rebuilding).await;
        match crate::refold::queued(&pool, &partitions).await {
            Ok(queued) => stats.refolds_pending.store(queued, Ordering::Relaxed),
            Err(e) => {
                tracing::warn!(projector = %settings.name, error = %e, "could not count the children queued to be folded again")
            }
        }
    }
}

/// Analyses the rebuild's tables grown past `growth`, one share at a time:
/// while it grows, a share whose turn another has taken skips it; as its
/// partitions finish, it waits.
async fn analyse(pool: &sqlx::PgPool, projector: &str, growth: statistics::Growth) {
    let wait = growth == statistics::Growth::Rebuilt;
    let analysed = async {
        let mut tx = pool.begin().await?;
        if share::statistics_lock(&mut tx, wait).await? {
            statistics::analyse(&mut tx, &[REBUILD_SCHEMA], growth, projector).await;
        }
        tx.commit().await
    };
    if let Err(e) = analysed.await {
        tracing::warn!(projector, error = %e, "could not gather table statistics");
    }
}

/// The position the rebuild's tables hold for `projector`.
async fn stored(pool: &sqlx::PgPool, projector: &str) -> Result<u64, ProjectorError> {
    let mut conn = pool.acquire().await?;
    Ok(crate::store::position(&mut conn, projector).await?)
}

/// One finished share's partitions, pumped by the share that switches.
struct Catching {
    settings: Settings,
    consumer: jetstream::consumer::PullConsumer,
    deliveries: Deliveries,
}

/// Swaps the rebuilt schema in, every share's partitions being finished.
/// First it brings each share's partitions up to the head (the others
/// stopped where they finished); then, holding the live projectors'
/// position rows (so they cannot move), up to the furthest of them, and
/// renames the schemas in the same transaction. Returns the position the
/// rebuilt read models cover, or None if the live side got away.
async fn switch(
    admin: &mut sqlx::PgConnection,
    pool: &sqlx::PgPool,
    stream: &jetstream::stream::Stream,
    settings: &Settings,
    stats: &Stats,
    shares: &[Finished],
) -> Result<Option<u64>, ProjectorError> {
    let mut catching = Vec::with_capacity(shares.len());
    for finished in shares {
        let settings =
            Settings { name: finished.name.clone(), partitions: finished.partitions.clone(), ..settings.clone() };
        let from = stored(pool, &settings.name).await?;
        let consumer = runtime::consumer_from(stream, None, &settings.partitions.filters(), from).await?;
        let mut deliveries = Deliveries::new();
        let target = Target::<std::future::Pending<()>>::Head;
        if let Outcome::Moved { stored } =
            runtime::pump(pool, stream, &consumer, &mut deliveries, &settings, stats, from, None, target).await?
        {
            return Err(ProjectorError::RebuildRaced { stored });
        }
        catching.push(Catching { settings, consumer, deliveries });
    }

    let mut tx = admin.begin().await?;
    // The live schema may exist with no tables yet: every role creates it
    // before it uses the database, and only a projector migrates it. Such
    // a schema is renamed away like any other, but holds no positions.
    let (live_exists, live_positions): (bool, bool) = sqlx::query_as(
        "select exists (select from pg_namespace where nspname = $1),
                to_regclass(format('%I.projector_position', $1::text)) is not null",
    )
    .bind(LIVE_SCHEMA)
    .fetch_one(&mut *tx)
    .await?;
    // The projectors that will resume from the rebuilt tables: the live
    // ones (all partitioned projectors among them), or, on a first build,
    // the shares' own names.
    let mut names: Vec<String> = Vec::new();
    let mut furthest = 0u64;
    if live_positions {
        // Waits for a live batch in flight, and holds the live projectors still until the switch commits.
        let rows = sqlx::query(&format!(
            "select projector, stream_seq from {LIVE_SCHEMA}.projector_position order by projector for update"
        ))
        .fetch_all(&mut *tx)
        .await?;
        for row in rows {
            let live: i64 = row.try_get("stream_seq")?;
            furthest = furthest.max(live.max(0) as u64);
            let projector: String = row.try_get("projector")?;
            if !names.contains(&projector) {
                names.push(projector);
            }
        }
    }
    if names.is_empty() {
        names.extend(shares.iter().map(|s| s.name.clone()));
    }
    // Every share's partitions complete through the same position, at
    // least the furthest live one. The rebuild applies on its own
    // connections, so the lock held here only stops the live side.
    let mut covered = u64::MAX;
    for Catching { settings, consumer, deliveries } in &mut catching {
        let from = stored(pool, &settings.name).await?;
        let target = Target::<std::future::Pending<()>>::Until(furthest);
        match runtime::pump(pool, stream, consumer, deliveries, settings, stats, from, None, target).await? {
            Outcome::Reached => {}
            Outcome::Stopped | Outcome::Moved { .. } => {
                tx.rollback().await?;
                return Ok(None);
            }
        }
        let position = stored(pool, &settings.name).await?;
        covered = covered.min(runtime::covered_through(stream, &settings.partitions.filters(), position).await?);
    }
    // Every live projector resumes from there: the rebuild covered all subjects up to it.
    for projector in &names {
        sqlx::query(&format!(
            "insert into {REBUILD_SCHEMA}.projector_position (projector, stream_seq) values ($1, $2)
             on conflict (projector) do update set stream_seq = excluded.stream_seq, updated_at = now()"
        ))
        .bind(projector)
        .bind(i64::try_from(covered).unwrap_or(i64::MAX))
        .execute(&mut *tx)
        .await?;
    }
    // Shares named after no live projector leave no row behind: the copy
    // counts as complete only up to the least position of its rows.
    sqlx::query(&format!("delete from {REBUILD_SCHEMA}.projector_position where projector <> all($1)"))
        .bind(&names)
        .execute(&mut *tx)
        .await?;
    Share::close(&mut tx).await?;
    sqlx::query(&format!("drop schema if exists {PREVIOUS_SCHEMA} cascade")).execute(&mut *tx).await?;
    if live_exists {
        sqlx::query(&format!("alter schema {LIVE_SCHEMA} rename to {PREVIOUS_SCHEMA}")).execute(&mut *tx).await?;
    }
    sqlx::query(&format!("alter schema {REBUILD_SCHEMA} rename to {LIVE_SCHEMA}")).execute(&mut *tx).await?;
    tx.commit().await?;
    tracing::info!(position = covered, shares = shares.len(), "switched to the rebuilt read models");
    Ok(Some(covered))
}
