//! Read models in PostgreSQL, built from the event stream.
//!
//! This crate owns every read-model table and is the only one that runs
//! SQL (writes and reads). A projection is a pure fold of stored events,
//! in `casework`, plus [`store`], which writes what it yields in the same
//! transaction that moves the projector's stream position, and [`runtime`],
//! the consumer loop. It depends on `events` and `casework`, never on the
//! roles above it.
//!
//! # Layout
//!
//! - `migrations/`: the schema, each table with a comment saying why it exists.
//! - [`database`]: reaching the database named by `DATABASE_URL` (created if missing).
//! - [`store`]: decoding stream messages and applying a batch in one transaction.
//! - [`runtime`]: the durable pull consumer, acknowledging after commit.
//! - [`chronology`]: reading a child's chronology as it stood at a moment.
//! - [`refold`]: writing a subject's folded facts, in the batch's transaction.
//! - [`kept`]: children's histories kept between batches, so a batch folds only what is new.
//! - [`cin`]: the histories the CIN census and Annex A are folded from.
//! - [`indicators`]: reading a council's facts for the indicator arithmetic.
//! - [`caseload`]: caseloads per worker, team and council, on a given day.
//! - [`identifiers`]: keyed digests of NHS numbers, for lookups.
//! - [`notify`]: change notifications for dashboards on NATS.
//! - [`audit`]: the audit stream into the `audit` schema: access log, erasures, checkpoints.
//! - [`reads`]: the query role's reads beside the read models' own (access facts, lookups, flags).
//! - [`copy`]: the Postgres copy of the stream, read for verification.
//! - [`rebuild`]: building the read models afresh beside the live ones, then swapping.

pub use sqlx::{Error as ReadError, PgPool};

pub mod alerts;
pub mod audit;
pub mod caseload;
pub mod chronology;
pub mod cin;
pub mod copy;
pub mod database;
pub mod health;
pub mod identifiers;
pub mod indicators;
pub mod kept;
pub mod leader;
pub mod notify;
pub mod parking;
pub mod reads;
pub mod rebuild;
pub mod reconcile;
pub mod refold;
pub mod runtime;
pub mod statistics;
pub mod store;
pub(crate) mod tally;
pub mod trace;

/// The read-model tables.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The Postgres schema the live read models are in. A rebuild fills
/// [`REBUILD_SCHEMA`] beside it and then swaps the two names in one
/// transaction (see [`rebuild`]); every connection finds the tables by
/// name through its `search_path`, so it follows the swap.
pub const LIVE_SCHEMA: &str = "projection";
/// Where a rebuild builds the read models afresh.
pub const REBUILD_SCHEMA: &str = "projection_rebuild";
/// Where the read models a rebuild replaced are kept, until the next rebuild.
pub const PREVIOUS_SCHEMA: &str = "projection_previous";

/// Connection options whose unqualified table names resolve in `schema`.
pub fn in_schema(options: sqlx::postgres::PgConnectOptions, schema: &str) -> sqlx::postgres::PgConnectOptions {
    options.options([("search_path", schema)])
}

/// Creates `schema` if missing and applies the migrations in it. The pool's
/// connections must have been made [`in_schema`] with the same schema.
pub async fn migrate(pool: &sqlx::PgPool, schema: &str) -> Result<(), sqlx::migrate::MigrateError> {
    // Roles starting at once (a query role and a projector on a fresh
    // database) race to create the schema, and PostgreSQL's "if not exists"
    // does not hold under that race (a unique violation in pg_namespace
    // stopped one of them). One advisory lock serialises the whole
    // migration. The connection is detached from the pool, so the lock goes
    // with it even if the unlock below never runs.
    let mut conn = pool.acquire().await?.detach();
    sqlx::query("select pg_advisory_lock(hashtext('safeguard read-model migrations'))").execute(&mut conn).await?;
    let create = format!("create schema if not exists {schema}");
    let result = match sqlx::query(&create).execute(&mut conn).await {
        Ok(_) => match MIGRATOR.run_direct(&mut conn).await {
            Ok(()) => tally::backfill(&mut conn).await.map_err(Into::into),
            Err(e) => Err(e),
        },
        Err(e) => Err(e.into()),
    };
    let _ =
        sqlx::query("select pg_advisory_unlock(hashtext('safeguard read-model migrations'))").execute(&mut conn).await;
    let _ = sqlx::Connection::close(conn).await;
    result
}
