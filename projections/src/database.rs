//! Reaching the read-model database: `DATABASE_URL` as options, the
//! database created if it does not exist, and the live pool every role
//! reads through.

use sqlx::ConnectOptions as _;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use std::str::FromStr as _;

/// Why the read-model database could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum DatabaseError {
    #[error("DATABASE_URL is not a PostgreSQL URL")]
    Url(#[source] sqlx::Error),
    #[error("the database name in DATABASE_URL must be letters, digits and _")]
    Name,
    #[error("could not reach PostgreSQL at DATABASE_URL")]
    Unreachable(#[source] sqlx::Error),
    #[error("could not connect to the read-model database")]
    Connect(#[source] sqlx::Error),
}

/// Connects to the read-model database, creating it if it does not exist.
/// Table names resolve in the live read-model schema.
pub async fn connect(url: &str) -> Result<PgPool, DatabaseError> {
    let options = options(url).await?;
    PgPoolOptions::new()
        .max_connections(8)
        // With PostgreSQL gone, a role should know within seconds (the
        // projector backs off and retries, a read answers 503), not after
        // sqlx's default of 30 s.
        .acquire_timeout(std::time::Duration::from_secs(5))
        .connect_with(crate::in_schema(options, crate::LIVE_SCHEMA))
        .await
        .map_err(DatabaseError::Connect)
}

/// The options of DATABASE_URL, after creating its database if it does not exist.
pub async fn options(url: &str) -> Result<PgConnectOptions, DatabaseError> {
    let options = PgConnectOptions::from_str(url).map_err(DatabaseError::Url)?;
    let database = options.get_database().unwrap_or("safeguard").to_owned();
    if !database.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(DatabaseError::Name);
    }
    let admin = options.clone().database("postgres");
    let mut conn = admin.connect().await.map_err(DatabaseError::Unreachable)?;
    let exists: bool = sqlx::query_scalar("select exists (select from pg_database where datname = $1)")
        .bind(&database)
        .fetch_one(&mut conn)
        .await
        .map_err(DatabaseError::Unreachable)?;
    if !exists {
        // Two roles starting at once may both try; the loser's error is harmless.
        let _ = sqlx::query(&format!("create database {database}")).execute(&mut conn).await;
        tracing::info!(database = %database, "created the read-model database");
    }
    Ok(options)
}

/// Whether PostgreSQL answers a trivial query on `pool` (for `/readyz`).
pub async fn reachable(pool: &PgPool) -> bool {
    sqlx::query("select 1").execute(pool).await.is_ok()
}

/// A value read from PostgreSQL that is not what the projector wrote: a
/// decode error, which parks the subject being applied (see
/// [`crate::store::is_content_error`]) rather than being guessed at.
pub(crate) fn not_as_written(column: &str, why: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> sqlx::Error {
    sqlx::Error::ColumnDecode { index: column.to_owned(), source: why.into() }
}

/// A text column read as the type it names, at the read's edge.
pub(crate) fn parsed<T>(
    row: &sqlx::postgres::PgRow,
    column: &str,
    parse: impl FnOnce(String) -> Result<T, String>,
) -> Result<T, sqlx::Error> {
    use sqlx::Row as _;
    parse(row.try_get(column)?).map_err(|why| not_as_written(column, why))
}

/// [`parsed`] for a nullable text column.
pub(crate) fn parsed_opt<T>(
    row: &sqlx::postgres::PgRow,
    column: &str,
    parse: impl FnOnce(String) -> Result<T, String>,
) -> Result<Option<T>, sqlx::Error> {
    use sqlx::Row as _;
    row.try_get::<Option<String>, _>(column)?.map(parse).transpose().map_err(|why| not_as_written(column, why))
}
