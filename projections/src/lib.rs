//! Read models in PostgreSQL, built from the event stream.
//!
//! This crate will own every read-model table and the only code that writes
//! them: a projection is a pure function from (state, event) to changes, plus
//! the small piece that applies those changes in the same transaction that
//! stores the stream position. It depends on `events` and on nothing that
//! serves HTTP or publishes to NATS.
//!
//! It is empty until the projector is built (issue 4); it exists now so that
//! the workspace's dependency direction (events ← projections ← services) is
//! fixed from the start.
