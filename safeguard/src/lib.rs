//! The `safeguard` binary's library: the wiring of each role and the
//! operator commands. The roles' own code is in their crates (`gateway`,
//! `query`, `projections`); what they stand on is in `platform`.
//!
//! - [`roles`]: starting each role from its settings, until shutdown.
//! - [`cli`]: one module per operator command.
//!
//! `main.rs` only parses the command line and calls in here.

pub mod cli;
pub mod roles;
