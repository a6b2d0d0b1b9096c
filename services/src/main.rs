//! `safeguard`: one binary for every role of the backbone.
//!
//! The roles (gateway, projector, query) and the operator commands arrive
//! with the issues that build them; today the binary describes itself.

use clap::Parser;

/// Safeguard: an event-sourced backbone for child protection in England.
///
/// Every referral, contact, visit, conference, plan and court filing about a
/// child is an immutable, signed, hash-chained event on NATS JetStream;
/// read models in PostgreSQL serve caseloads, indicators and chronologies.
#[derive(Debug, Parser)]
#[command(name = "safeguard", version, about, long_about)]
struct Cli {}

fn main() {
    Cli::parse();
    // With no subcommands yet, a bare invocation shows what the binary is.
    let mut command = <Cli as clap::CommandFactory>::command();
    let _ = command.print_long_help();
}
