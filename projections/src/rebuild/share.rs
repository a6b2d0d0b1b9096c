//! The shares of a rebuild: processes that each rebuild some partitions
//! into the same schema, side by side.
//!
//! Each share is a row of `rebuild_share` in the rebuild's schema and a
//! session advisory lock its process holds for as long as it runs, so that
//! a share that stopped is told from one that runs. Joining and taking
//! turns happen under one more advisory lock, one share at a time:
//!
//! - A share joins the rebuild under way if any of its shares runs and
//!   none of the running or finished ones holds any of its partitions or
//!   its projector name. If none runs, whatever the schema holds is an
//!   earlier rebuild's: it starts afresh.
//! - A share that stopped before finishing leaves its partitions to the
//!   next share given them; under the same projector name it resumes from
//!   where the stopped one got to (applying skips what the tables hold).
//! - A finished share waits. The one that finds every partition finished
//!   catches them all up and switches; if it stops, a waiting share takes
//!   its turn.
//!
//! The table is dropped in the switch's transaction, so the live schema
//! never holds it, and waiting shares learn of the switch by its absence.

use super::ProjectorError;
use crate::REBUILD_SCHEMA;
use crate::runtime::Settings;
use events::subjects::Partitions;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgConnection, Row as _};

/// The advisory locks' first key: "SGRB". The second is 0 for joining and
/// taking turns, or a share's number (from 1) for its life.
const LOCKS: i32 = 0x5347_5242;
const TURNS: i32 = 0;
/// Held, for its transaction, by the share analysing the rebuild's tables:
/// the others skip their turn rather than analyse the same tables again.
const STATISTICS: i32 = -1;

/// This process's share of the rebuild.
pub(super) struct Share {
    id: i32,
}

/// A share that has rebuilt its partitions up to the head of the stream.
pub(super) struct Finished {
    pub name: String,
    pub partitions: Partitions,
}

/// What a finished share does next.
pub(super) enum Turn {
    /// Every partition is finished: catch up these shares and switch.
    Switch(Vec<Finished>),
    /// Some partitions are not finished yet (or another share is switching).
    Wait { missing: Partitions },
    /// Another share switched the read models over.
    Switched,
}

struct Row {
    id: i32,
    name: String,
    partitions: Partitions,
    finished: bool,
    switching: bool,
}

impl Share {
    /// Joins the rebuild under way, or starts one (see the module's rules).
    pub async fn join(
        admin: &mut PgConnection,
        database: &PgConnectOptions,
        settings: &Settings,
    ) -> Result<Self, ProjectorError> {
        lock(admin, TURNS).await?;
        let rows = rows(admin).await?.unwrap_or_default();
        let mut running = Vec::new();
        let mut stopped = Vec::new();
        for row in rows {
            if alive(admin, row.id).await? { running.push(row) } else { stopped.push(row) }
        }
        if running.is_empty() {
            sqlx::query(&format!("drop schema if exists {REBUILD_SCHEMA} cascade")).execute(&mut *admin).await?;
            let pool = PgPoolOptions::new()
                .max_connections(1)
                .connect_with(crate::in_schema(database.clone(), REBUILD_SCHEMA))
                .await?;
            crate::migrate(&pool, REBUILD_SCHEMA).await?;
            pool.close().await;
            sqlx::query(&format!(
                "create table {REBUILD_SCHEMA}.rebuild_share (
                     share integer generated always as identity primary key,
                     projector text not null unique,
                     partitions integer[] not null,
                     finished boolean not null default false,
                     switching boolean not null default false)"
            ))
            .execute(&mut *admin)
            .await?;
        } else {
            // A finished share's work is in the schema even if it stopped since.
            for row in running.iter().chain(stopped.iter().filter(|r| r.finished)) {
                if row.partitions.overlaps(&settings.partitions) || row.name == settings.name {
                    return Err(ProjectorError::RebuildShared {
                        projector: row.name.clone(),
                        partitions: row.partitions.to_string(),
                    });
                }
            }
            let unfinished: Vec<i32> = stopped.iter().filter(|r| !r.finished).map(|r| r.id).collect();
            sqlx::query(&format!("delete from {REBUILD_SCHEMA}.rebuild_share where share = any($1)"))
                .bind(&unfinished)
                .execute(&mut *admin)
                .await?;
        }
        let numbers: Vec<i32> = settings.partitions.numbers().iter().map(|&p| p as i32).collect();
        let id: i32 = sqlx::query_scalar(&format!(
            "insert into {REBUILD_SCHEMA}.rebuild_share (projector, partitions) values ($1, $2) returning share"
        ))
        .bind(&settings.name)
        .bind(&numbers)
        .fetch_one(&mut *admin)
        .await?;
        lock(admin, id).await?;
        unlock(admin, TURNS).await?;
        tracing::info!(share = id, partitions = %settings.partitions, projector = %settings.name, "rebuilding");
        Ok(Self { id })
    }

    /// Records that this share's partitions are rebuilt up to the head.
    pub async fn finished(&self, admin: &mut PgConnection) -> Result<(), ProjectorError> {
        sqlx::query(&format!("update {REBUILD_SCHEMA}.rebuild_share set finished = true where share = $1"))
            .bind(self.id)
            .execute(&mut *admin)
            .await?;
        Ok(())
    }

    /// Whether this share switches now, waits, or is done.
    pub async fn turn(&self, admin: &mut PgConnection) -> Result<Turn, ProjectorError> {
        lock(admin, TURNS).await?;
        let turn = self.decide(admin).await;
        unlock(admin, TURNS).await?;
        turn
    }

    async fn decide(&self, admin: &mut PgConnection) -> Result<Turn, ProjectorError> {
        let Some(rows) = rows(admin).await? else {
            return Ok(Turn::Switched);
        };
        if !rows.iter().any(|r| r.id == self.id) {
            return Err(ProjectorError::RebuildShares("this share's row left the rebuild while it ran".into()));
        }
        let done: Vec<u32> = rows.iter().filter(|r| r.finished).flat_map(|r| r.partitions.numbers().to_vec()).collect();
        let missing = Partitions::from_numbers((0..events::subjects::PARTITIONS).filter(|p| !done.contains(p)))
            .map_err(ProjectorError::RebuildShares)?;
        if !missing.numbers().is_empty() {
            return Ok(Turn::Wait { missing });
        }
        for other in rows.iter().filter(|r| r.switching && r.id != self.id) {
            if alive(admin, other.id).await? {
                return Ok(Turn::Wait { missing });
            }
        }
        sqlx::query(&format!("update {REBUILD_SCHEMA}.rebuild_share set switching = (share = $1)"))
            .bind(self.id)
            .execute(&mut *admin)
            .await?;
        let shares = rows
            .into_iter()
            .filter(|r| r.finished)
            .map(|r| Finished { name: r.name, partitions: r.partitions })
            .collect();
        Ok(Turn::Switch(shares))
    }

    /// Drops the shares' table in the switch's transaction, once no other
    /// share is between looking for it and reading it.
    pub async fn close(tx: &mut PgConnection) -> Result<(), ProjectorError> {
        sqlx::query("select pg_advisory_xact_lock($1, $2)").bind(LOCKS).bind(TURNS).execute(&mut *tx).await?;
        sqlx::query(&format!("drop table {REBUILD_SCHEMA}.rebuild_share")).execute(&mut *tx).await?;
        Ok(())
    }
}

/// The shares, or None if there is no rebuild (never started, or switched).
async fn rows(admin: &mut PgConnection) -> Result<Option<Vec<Row>>, ProjectorError> {
    let table = format!("{REBUILD_SCHEMA}.rebuild_share");
    let exists: bool =
        sqlx::query_scalar("select to_regclass($1) is not null").bind(&table).fetch_one(&mut *admin).await?;
    if !exists {
        return Ok(None);
    }
    let rows =
        sqlx::query(&format!("select share, projector, partitions, finished, switching from {table} order by share"))
            .fetch_all(&mut *admin)
            .await?;
    let mut shares = Vec::with_capacity(rows.len());
    for row in rows {
        let numbers: Vec<i32> = row.try_get("partitions")?;
        let partitions = Partitions::from_numbers(numbers.into_iter().map(|p| p.max(0) as u32))
            .map_err(|e| ProjectorError::RebuildShares(format!("a share's partitions: {e}")))?;
        shares.push(Row {
            id: row.try_get("share")?,
            name: row.try_get("projector")?,
            partitions,
            finished: row.try_get("finished")?,
            switching: row.try_get("switching")?,
        });
    }
    Ok(Some(shares))
}

/// Whether the process of share `id` still runs: it holds its lock for
/// as long as it does (the session's end releases it, however it ends).
async fn alive(admin: &mut PgConnection, id: i32) -> Result<bool, ProjectorError> {
    let free: bool =
        sqlx::query_scalar("select pg_try_advisory_lock($1, $2)").bind(LOCKS).bind(id).fetch_one(&mut *admin).await?;
    if free {
        unlock(admin, id).await?;
    }
    Ok(!free)
}

async fn lock(admin: &mut PgConnection, key: i32) -> Result<(), ProjectorError> {
    sqlx::query("select pg_advisory_lock($1, $2)").bind(LOCKS).bind(key).execute(&mut *admin).await?;
    Ok(())
}

async fn unlock(admin: &mut PgConnection, key: i32) -> Result<(), ProjectorError> {
    sqlx::query("select pg_advisory_unlock($1, $2)").bind(LOCKS).bind(key).execute(&mut *admin).await?;
    Ok(())
}

/// Takes the rebuild's statistics lock for the transaction `tx` is in:
/// waiting for it, or, with `wait` false, only if no other share holds
/// it. Returns whether it is held.
pub(super) async fn statistics_lock(tx: &mut PgConnection, wait: bool) -> Result<bool, sqlx::Error> {
    if wait {
        sqlx::query("select pg_advisory_xact_lock($1, $2)").bind(LOCKS).bind(STATISTICS).execute(&mut *tx).await?;
        return Ok(true);
    }
    sqlx::query_scalar("select pg_try_advisory_xact_lock($1, $2)")
        .bind(LOCKS)
        .bind(STATISTICS)
        .fetch_one(&mut *tx)
        .await
}
