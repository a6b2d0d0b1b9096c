//! Read models in PostgreSQL, built from the event stream.
//!
//! This crate owns every read-model table and the only code that writes
//! them. A projection is a pure function of stored events (for example
//! [`summary`]), plus [`store`], which writes what it yields in the same
//! transaction that moves the projector's stream position, and [`runtime`],
//! the consumer loop. It depends on `events`, never on the gateway or the
//! query side.
//!
//! # Layout
//!
//! - `migrations/`: the schema, each table with a comment saying why it exists.
//! - [`store`]: decoding stream messages and applying a batch in one transaction.
//! - [`summary`]: one-line chronology summaries from codes only.
//! - [`runtime`]: the durable pull consumer, acknowledging after commit.
//! - [`chronology`]: reading a child's chronology as it stood at a moment.

pub mod chronology;
pub mod runtime;
pub mod store;
pub mod summary;

/// The read-model schema.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");
