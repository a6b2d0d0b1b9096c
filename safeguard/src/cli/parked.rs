//! `safeguard parked` and `safeguard parked retry`: the subjects the
//! projector could not apply, and applying them again once the cause is
//! fixed (a new release, a constraint removed).
//!
//! Both work on the read-model database directly, as `safeguard rebuild`
//! does: they are operator commands and read no child's personal data (a
//! parked subject is an id, a position and an error). A retry needs the
//! key store for the NHS-number index, like the projector.

use anyhow::Context as _;
use platform::config::{DatabaseArgs, NatsArgs};
use std::io::Write as _;

#[derive(Debug, clap::Args)]
pub struct ParkedArgs {
    #[command(subcommand)]
    pub action: Option<ParkedAction>,
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, clap::Subcommand)]
pub enum ParkedAction {
    /// Apply the waiting messages of every parked subject (or of one) again.
    /// Exits 3 if any subject stays parked.
    Retry {
        /// A subject (child or worker id, or council code) to retry alone.
        #[arg(long)]
        subject: Option<String>,
        #[command(flatten)]
        nats: NatsArgs,
        /// The master key (for the NHS-number index, which needs children's data keys).
        #[arg(long, env = "SAFEGUARD_MASTER_KEY", default_value = "master.key")]
        master_key: std::path::PathBuf,
        /// The gateway's public keys: waiting messages they do not verify are dead letters.
        #[arg(long = "public-key", env = "SAFEGUARD_PUBLIC_KEY", default_value = "signing.key.pub")]
        public_key: std::path::PathBuf,
    },
}

/// Runs the command; `Ok(false)` when a retried subject stays parked.
pub async fn run(args: ParkedArgs) -> anyhow::Result<bool> {
    let pool = projections::database::connect(&args.database.database_url).await?;
    projections::migrate(&pool, projections::LIVE_SCHEMA).await.context("could not migrate the read models")?;
    let mut out = std::io::stdout().lock();
    match args.action {
        None => {
            let parked = projections::parking::list(&pool).await?;
            if args.json {
                writeln!(out, "{}", serde_json::to_string_pretty(&parked)?)?;
            } else if parked.is_empty() {
                writeln!(out, "no parked subjects")?;
            } else {
                writeln!(out, "subject\tkind\tprojector\tstream position\twaiting\tattempts\tparked at\terror")?;
                for p in &parked {
                    writeln!(
                        out,
                        "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
                        p.subject,
                        p.subject_kind,
                        p.projector,
                        p.stream_seq,
                        p.waiting,
                        p.attempts,
                        p.parked_at.to_rfc3339(),
                        p.error
                    )?;
                }
            }
            Ok(true)
        }
        Some(ParkedAction::Retry { subject, nats, master_key, public_key }) => {
            let signers = crate::roles::projector::signers(&public_key).await?;
            let client = platform::bus::connect(&nats).await?;
            let js = async_nats::jetstream::new(client);
            let keys = crate::roles::projector::keys(&js, &nats, &master_key).await?;
            let retried =
                projections::parking::retry(&pool, subject.as_deref(), Some(keys.as_ref()), &*signers).await?;
            if args.json {
                writeln!(out, "{}", serde_json::to_string_pretty(&retried)?)?;
            } else if retried.is_empty() {
                writeln!(out, "no parked subjects")?;
            }
            for r in &retried {
                if !args.json {
                    match &r.error {
                        None => {
                            writeln!(out, "{}: applied {} waiting messages; no longer parked", r.subject, r.applied)?
                        }
                        Some(e) => writeln!(out, "{}: still parked: {e}", r.subject)?,
                    }
                }
            }
            Ok(retried.iter().all(|r| r.error.is_none()))
        }
    }
}
