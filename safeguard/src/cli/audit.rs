//! `safeguard verify` and `safeguard erase`: the trust commands.
//!
//! `verify` connects to NATS (and, unless `--stream-only`, the read-model
//! database) directly: it is what an operator, or an outside party holding
//! only the public key and read access to the stream, runs. `erase` goes
//! through the gateway's API with an admin token, so it is authorised and
//! recorded like any other request.

use anyhow::Context as _;
use platform::{bus, config};
use query::verify;
use std::io::Write as _;

#[derive(Debug, Clone, clap::Args)]
pub struct VerifyArgs {
    /// Only this child's history.
    #[arg(long)]
    pub child: Option<uuid::Uuid>,
    /// Check a certified export (Markdown, CSV, JSON or PDF, from
    /// `/chronology/export`) with the public keys alone: no NATS, no
    /// database. Names every entry left out, altered or moved.
    #[arg(long, conflicts_with_all = ["child", "stream_only"])]
    pub export: Option<std::path::PathBuf>,
    /// The export keys' public keys, one base64 key per line (default:
    /// `<SAFEGUARD_EXPORT_KEY>.pub`, as the query role keeps them).
    #[arg(long = "export-public-key", env = "SAFEGUARD_EXPORT_PUBLIC_KEY")]
    pub export_public_key: Option<std::path::PathBuf>,
    /// Only to find the default export public key file beside it.
    #[arg(long = "export-key", env = "SAFEGUARD_EXPORT_KEY", default_value = "export.key", hide = true)]
    pub export_key: std::path::PathBuf,
    /// The gateway's public keys: one base64 key per line, every key it has
    /// signed with (default: `<SAFEGUARD_SIGNING_KEY>.pub`, as the gateway keeps them).
    #[arg(long = "public-key", env = "SAFEGUARD_PUBLIC_KEY")]
    pub public_key: Option<std::path::PathBuf>,
    /// Only to find the default public key file beside it; verification never reads it.
    #[arg(long, env = "SAFEGUARD_SIGNING_KEY", default_value = "signing.key", hide = true)]
    pub signing_key: std::path::PathBuf,
    /// Check the stream and checkpoints alone, without the Postgres copy:
    /// all an outside verifier needs is NATS read access and the public key.
    #[arg(long)]
    pub stream_only: bool,
    #[command(flatten)]
    pub nats: config::NatsArgs,
    #[command(flatten)]
    pub database: config::DatabaseArgs,
}

fn read_public_keys(path: &std::path::Path) -> anyhow::Result<Vec<ed25519_dalek::VerifyingKey>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("could not read the public keys {}", path.display()))?;
    events::chain::decode_verifying_keys(&text).map_err(|m| anyhow::anyhow!("{}: {m}", path.display()))
}

/// Runs verification; prints the report as JSON on stdout and a summary on
/// stderr. Returns whether everything held.
pub async fn run_verify(args: VerifyArgs) -> anyhow::Result<bool> {
    let path = args.public_key.clone().unwrap_or_else(|| platform::public_key_path(&args.signing_key));
    let keys = read_public_keys(&path)?;
    if let Some(file) = &args.export {
        let export_keys = read_public_keys(
            &args.export_public_key.clone().unwrap_or_else(|| platform::public_key_path(&args.export_key)),
        )?;
        let bytes = std::fs::read(file).with_context(|| format!("could not read {}", file.display()))?;
        let report = super::export_check::check(&bytes, &keys, &export_keys);
        let mut out = std::io::stdout().lock();
        serde_json::to_writer_pretty(&mut out, &report)?;
        out.write_all(b"\n")?;
        eprintln!(
            "{}: {} entries, certified through {} by the checkpoint at {}; {} problems",
            if report.ok { "ok" } else { "BROKEN" },
            report.entries,
            report.certified_through.map_or_else(|| "nothing".to_owned(), casework::narrative::reference_of),
            report.checkpoint_covers.map_or_else(|| "none".to_owned(), |c| format!("stream position {c}")),
            report.problems.len()
        );
        for p in &report.problems {
            eprintln!("  {:?} {}: {}", p.kind, p.reference.as_deref().unwrap_or("-"), p.detail);
        }
        return Ok(report.ok);
    }
    let client = bus::connect(&args.nats).await?;
    let js = async_nats::jetstream::new(client);
    let pool =
        if args.stream_only { None } else { Some(projections::database::connect(&args.database.database_url).await?) };
    let child = args.child.map(|c| events::Subject::Child(events::ids::ChildId::from_uuid(c)));
    let started = std::time::Instant::now();
    let report = verify::verify(&js, pool.as_ref(), &keys, child.as_ref()).await?;
    let elapsed = started.elapsed().as_secs_f64();
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, &report)?;
    out.write_all(b"\n")?;
    eprintln!(
        "{}: {} events checked in {elapsed:.1} s ({:.0} events/s), {} breaks; {} checkpoints checked, {} failed{}",
        if report.ok { "ok" } else { "BROKEN" },
        report.checked,
        report.checked as f64 / elapsed.max(1e-9),
        report.breaks.len(),
        report.checkpoints.checked,
        report.checkpoints.failures.len(),
        match report.copy_position {
            Some(p) => format!("; the Postgres copy compared up to stream position {p}"),
            None => "; the Postgres copy was not compared".into(),
        }
    );
    Ok(report.ok)
}

#[derive(Debug, Clone, clap::Args)]
pub struct EraseArgs {
    /// The child whose data key is erased.
    #[arg(long)]
    pub child: uuid::Uuid,
    /// The basis (recorded with the erasure): retention_ended,
    /// subject_request, court_order or recorded_in_error.
    #[arg(long, value_parser = ["retention_ended", "subject_request", "court_order", "recorded_in_error"])]
    pub purpose: String,
    /// Who is doing it (recorded with the erasure).
    #[arg(long)]
    pub acting_user: Option<String>,
    /// The gateway.
    #[arg(long = "gateway-url", env = "SAFEGUARD_URL", default_value = "http://127.0.0.1:8080")]
    pub gateway_url: String,
    /// An admin's token.
    #[arg(long, env = "SAFEGUARD_TOKEN", hide_env_values = true)]
    pub token: String,
}

/// Erases a child's data key through the gateway and prints its answer.
pub async fn run_erase(args: EraseArgs) -> anyhow::Result<()> {
    let gateway = super::client::RoleClient::gateway(&args.gateway_url, &args.token)?
        .acting(args.acting_user.clone(), Some(args.purpose.clone()));
    let body = gateway.post_empty(&format!("/v1/children/{}/erasure", args.child)).await?.json();
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, &body)?;
    out.write_all(b"\n")?;
    Ok(())
}
