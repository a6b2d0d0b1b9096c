//! `safeguard`: one binary for every role of the backbone. This file only
//! parses the command line; the work is in the library.

use clap::{Parser, Subcommand, ValueEnum};
use platform::config::{DatabaseArgs, GatewayArgs, GatewaySettings, NatsArgs, ProjectorArgs, QueryArgs};

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
    Serve(Box<ServeArgs>),
    /// Build the read models afresh from the stream beside the live ones,
    /// then switch over in one step; reads are served throughout.
    ///
    /// All read models share one transaction per batch and one stream
    /// position (the caseload and indicator folds read the stored copy), so
    /// naming any projection rebuilds them together.
    Rebuild {
        /// chronology, events, caseload or indicators.
        #[arg(value_parser = ["chronology", "events", "caseload", "indicators"], required_unless_present = "all")]
        projection: Option<String>,
        /// Rebuild every read model.
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        nats: NatsArgs,
        #[command(flatten)]
        database: DatabaseArgs,
        /// Messages applied per transaction while rebuilding.
        #[arg(long, default_value_t = 5000)]
        batch: usize,
        /// The live projector whose position the rebuild must reach. Each
        /// share of a shared rebuild has its own: the name of the live
        /// projector holding the same partitions.
        #[arg(long = "projector-name", env = "SAFEGUARD_PROJECTOR", default_value = "main")]
        name: String,
        /// This process's share of a rebuild shared by several, such as
        /// `0-15`; all by default. Run one process per share (disjoint
        /// partitions, distinct projector names) at the same time: each
        /// rebuilds its partitions, and the one finishing last switches.
        #[arg(long = "partitions", env = "SAFEGUARD_PROJECTOR_PARTITIONS", value_parser = platform::config::parse_partitions)]
        partitions: Option<events::subjects::Partitions>,
        /// The master key (for the NHS-number index, which needs children's data keys).
        #[arg(long, env = "SAFEGUARD_MASTER_KEY", default_value = "master.key")]
        master_key: std::path::PathBuf,
        /// The gateway's public keys: events they do not verify are dead letters.
        #[arg(long = "public-key", env = "SAFEGUARD_PUBLIC_KEY", default_value = "signing.key.pub")]
        public_key: std::path::PathBuf,
    },
    /// Generate a deterministic synthetic population and publish it through the gateway.
    Seed(safeguard::cli::seed::SeedArgs),
    /// Print a child's chronology (as it stood at --as-of) through the query API.
    Chronology(safeguard::cli::chronology::ChronologyArgs),
    /// Check every chain and signature in the stream, the Postgres copy and
    /// the signed checkpoints; report every break. Exits 3 if anything is broken.
    Verify(safeguard::cli::audit::VerifyArgs),
    /// Erase a child's data key (admin, through the gateway): the child's
    /// personal data becomes unreadable everywhere; chains still verify.
    Erase(safeguard::cli::audit::EraseArgs),
    /// Write a statutory return (the CIN census XML) through the query API.
    Return(safeguard::cli::returns::ReturnArgs),
    /// List the subjects the projector parked (their events could not be
    /// applied; the rest of the stream went on), or retry them.
    Parked(safeguard::cli::parked::ParkedArgs),
    /// Bulk-import NDJSON CloudEvents through the gateway (admin): resumable, batched.
    Import(safeguard::cli::import::ImportArgs),
    /// Copy the event, audit and key streams to files (ops/backup runs it).
    Backup(safeguard::cli::backup::BackupArgs),
    /// Put a backup into an empty NATS, keeping the event and audit streams' sequences.
    Restore(safeguard::cli::backup::RestoreArgs),
    /// Make the event and audit streams and the key buckets (the operator,
    /// before any role starts: serving roles may not make streams on the
    /// secured cluster).
    Streams(safeguard::cli::streams::StreamsArgs),
    /// Make a NATS user nkey for one role: the seed goes to --out (mode
    /// 0600, what NATS_CREDS names); the public key, which the server's
    /// accounts file lists, is printed.
    Nkey {
        #[arg(long)]
        out: std::path::PathBuf,
    },
    /// Print a new random token once, and the principals.toml entry for it.
    Token {
        #[arg(long)]
        name: String,
        /// publish, practitioner, reviewer, dashboard, auditor or admin; repeat for several.
        #[arg(long = "role", required = true)]
        roles: Vec<String>,
        /// A council ONS code in scope, or * for every council; repeat for
        /// several. Required: no token is for every council unless asked.
        #[arg(long = "council")]
        councils: Vec<String>,
        /// An event type it may publish, or *; repeat for several (default *).
        #[arg(long = "event-type")]
        event_types: Vec<String>,
        /// The organisation as people name it ("Haringey children's
        /// services"); chronologies show it as each entry's source.
        #[arg(long = "display-name")]
        display_name: Option<String>,
        /// council_childrens_services, police, health, education or other.
        #[arg(long)]
        agency: Option<String>,
    },
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
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
    #[command(flatten)]
    query: QueryArgs,
    #[command(flatten)]
    http: platform::http::HttpArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Role {
    /// Accepts events over HTTP and stores them on JetStream.
    Gateway,
    /// Applies the stream to the read models in PostgreSQL.
    Projector,
    /// Serves chronologies, lookups, caseloads and indicators over HTTP.
    Query,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Token { name, roles, councils, event_types, display_name, agency } => {
            let token = safeguard::cli::token::new_token();
            let identity = safeguard::cli::token::Identity { display_name, agency };
            match safeguard::cli::token::render(&name, &identity, &roles, &councils, &event_types, &token) {
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
        Command::Nkey { out } => match safeguard::cli::token::new_nkey(&out) {
            Ok(public) => {
                #[allow(clippy::print_stdout)]
                {
                    println!("{public}");
                }
                std::process::ExitCode::SUCCESS
            }
            Err(message) => {
                eprintln!("safeguard nkey: {message}");
                std::process::ExitCode::from(2)
            }
        },
        Command::Rebuild { projection: _, all: _, nats, database, batch, name, partitions, master_key, public_key } => {
            let _tracing = init_tracing("safeguard");
            let share = safeguard::roles::projector::Share {
                name,
                partitions: partitions.unwrap_or_else(events::subjects::Partitions::all),
            };
            block_on(safeguard::roles::projector::rebuild(nats, database, batch, share, master_key, public_key))
        }
        Command::Seed(args) => {
            let _tracing = init_tracing("safeguard");
            block_on(safeguard::cli::seed::run(args))
        }
        Command::Chronology(args) => block_on(safeguard::cli::chronology::run(args)),
        Command::Erase(args) => block_on(safeguard::cli::audit::run_erase(args)),
        Command::Return(args) => checked(safeguard::cli::returns::run(args)),
        Command::Import(args) => {
            let _tracing = init_tracing("safeguard");
            block_on(async move { safeguard::cli::import::run(args).await.map(|_| ()) })
        }
        Command::Backup(args) => {
            let _tracing = init_tracing("safeguard");
            block_on(safeguard::cli::backup::backup(args))
        }
        Command::Restore(args) => {
            let _tracing = init_tracing("safeguard");
            block_on(safeguard::cli::backup::restore(args))
        }
        Command::Streams(args) => {
            let _tracing = init_tracing("safeguard");
            block_on(safeguard::cli::streams::run(args))
        }
        Command::Parked(args) => {
            let _tracing = init_tracing("safeguard");
            checked(safeguard::cli::parked::run(args))
        }
        Command::Verify(args) => checked(safeguard::cli::audit::run_verify(args)),
        Command::Serve(serve) => {
            let ServeArgs { roles, nats, gateway, database, projector, query, http } = *serve;
            let http = http.limits();
            // Each role run alone is its own service in a trace.
            let service = match roles.as_slice() {
                [one] => format!("safeguard-{}", format!("{one:?}").to_lowercase()),
                _ => "safeguard".to_owned(),
            };
            let _tracing = init_tracing(&service);
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
                    platform::shutdown_signal().await;
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
                    let settings = GatewaySettings::new(nats.clone(), gateway.clone(), http);
                    tasks.spawn(safeguard::roles::gateway::run(settings, stopped(), None));
                }
                // The public keys are where the gateway keeps them, unless said otherwise.
                let mut query = query;
                if query.public_key.is_none() {
                    query.public_key = Some(platform::public_key_path(&gateway.signing_key));
                }
                let public_key = query.public_key.clone().unwrap_or_default();
                if wants(Role::Query) {
                    let principals = gateway.principals.clone();
                    let settings = platform::config::QuerySettings {
                        nats: nats.clone(),
                        database: database.clone(),
                        principals,
                        master_key: gateway.master_key.clone(),
                        query,
                        http,
                        clock: chrono::Utc::now,
                    };
                    tasks.spawn(safeguard::roles::query::run(settings, stopped(), None));
                }
                if wants(Role::Projector) {
                    let master_key = gateway.master_key.clone();
                    tasks.spawn(safeguard::roles::projector::run(
                        nats,
                        database,
                        projector,
                        master_key,
                        public_key,
                        stopped(),
                    ));
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

/// Runs a one-shot command on a fresh runtime.
fn block_on(work: impl std::future::Future<Output = anyhow::Result<()>>) -> std::process::ExitCode {
    let outcome = tokio::runtime::Runtime::new().map_err(anyhow::Error::from).and_then(|rt| rt.block_on(work));
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("safeguard: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Runs a check: exit 0 when it held, 3 when it found something wrong, 1
/// when it could not run.
fn checked(work: impl std::future::Future<Output = anyhow::Result<bool>>) -> std::process::ExitCode {
    let mut held = false;
    let code = block_on(async {
        held = work.await?;
        Ok(())
    });
    if code == std::process::ExitCode::SUCCESS && !held { std::process::ExitCode::from(3) } else { code }
}

/// The log, and traces exported over OTLP when configured
/// (`platform::telemetry::init`); kept until the command ends.
fn init_tracing(service: &str) -> platform::telemetry::Tracing {
    platform::telemetry::init(service)
}
