//! `safeguard`: one binary for every role of the backbone. This file only
//! parses the command line; the work is in the library.

use clap::{Parser, Subcommand, ValueEnum};
use services::config::{DatabaseArgs, GatewayArgs, GatewaySettings, NatsArgs, ProjectorArgs};

/// Safeguard: an event-sourced backbone for child protection in England.
///
/// Every referral, contact, visit, conference, plan and court filing about a
/// child is an immutable, signed, hash-chained event on NATS JetStream.
#[derive(Debug, Parser)]
#[command(name = "safeguard", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the backbone's roles (all of them when none is named).
    Serve {
        /// A role to run; repeat for several.
        #[arg(long = "role", value_enum)]
        roles: Vec<Role>,
        #[command(flatten)]
        nats: NatsArgs,
        #[command(flatten)]
        gateway: GatewayArgs,
        #[command(flatten)]
        database: DatabaseArgs,
        #[command(flatten)]
        projector: ProjectorArgs,
    },
    /// Print a new random token once, and the principals.toml entry for it.
    Token {
        #[arg(long)]
        name: String,
        /// publish, practitioner, reviewer, dashboard, auditor or admin; repeat for several.
        #[arg(long = "role", required = true)]
        roles: Vec<String>,
        /// A council ONS code in scope, or *; repeat for several (default *).
        #[arg(long = "council")]
        councils: Vec<String>,
        /// An event type it may publish, or *; repeat for several (default *).
        #[arg(long = "event-type")]
        event_types: Vec<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Role {
    /// Accepts events over HTTP and stores them on JetStream.
    Gateway,
    /// Applies the stream to the read models in PostgreSQL.
    Projector,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Token { name, roles, councils, event_types } => {
            let token = services::token::new_token();
            match services::token::render(&name, &roles, &councils, &event_types, &token) {
                Ok(text) => {
                    #[allow(clippy::print_stdout)]
                    {
                        print!("{text}");
                    }
                    std::process::ExitCode::SUCCESS
                }
                Err(message) => {
                    eprintln!("safeguard token: {message}");
                    std::process::ExitCode::from(2)
                }
            }
        }
        Command::Serve { roles, nats, gateway, database, projector } => {
            init_tracing();
            let all = roles.is_empty();
            let wants = |role: Role| all || roles.contains(&role);
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("safeguard: could not start the runtime: {e}");
                    return std::process::ExitCode::FAILURE;
                }
            };
            let outcome = runtime.block_on(async move {
                // One shutdown signal, told to every role.
                let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
                tokio::spawn(async move {
                    services::shutdown_signal().await;
                    let _ = stop_tx.send(true);
                });
                let stopped = move || {
                    let mut rx = stop_rx.clone();
                    async move {
                        let _ = rx.wait_for(|stop| *stop).await;
                    }
                };
                let mut tasks = tokio::task::JoinSet::new();
                if wants(Role::Gateway) {
                    let settings = GatewaySettings::new(nats.clone(), gateway);
                    tasks.spawn(services::run_gateway(settings, stopped(), None));
                }
                if wants(Role::Projector) {
                    tasks.spawn(services::run_projector(nats, database, projector, stopped()));
                }
                // The first role to fail stops the process.
                while let Some(done) = tasks.join_next().await {
                    done??;
                }
                anyhow::Ok(())
            });
            match outcome {
                Ok(()) => std::process::ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = %format!("{e:#}"), "safeguard stopped");
                    eprintln!("safeguard: {e:#}");
                    std::process::ExitCode::FAILURE
                }
            }
        }
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    tracing_subscriber::fmt().with_env_filter(filter).with_target(false).init();
}
