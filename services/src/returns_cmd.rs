//! `safeguard return cin --council CODE --year 2024-25 [--out FILE]`: a
//! statutory return through the query API, so the caller's scope applies
//! and every child in it is recorded in the access log.

use anyhow::Context as _;
use std::io::Write as _;

#[derive(Debug, Clone, clap::Args)]
pub struct ReturnArgs {
    /// Which return: `cin` (the DfE CIN census XML).
    #[arg(value_parser = ["cin"])]
    pub kind: String,
    /// The council's ONS code.
    #[arg(long)]
    pub council: String,
    /// The collection year, such as 2024-25 (1 April 2024 to 31 March 2025).
    #[arg(long)]
    pub year: String,
    /// Write it here rather than to stdout.
    #[arg(long)]
    pub out: Option<std::path::PathBuf>,
    /// The query role.
    #[arg(long = "query-url", env = "SAFEGUARD_QUERY_URL", default_value = "http://127.0.0.1:8081")]
    pub query_url: String,
    /// A token of a practitioner or admin of the council.
    #[arg(long, env = "SAFEGUARD_TOKEN", hide_env_values = true)]
    pub token: String,
    /// Why (recorded in the access log).
    #[arg(long, default_value = "statutory return")]
    pub purpose: String,
}

pub async fn run(args: ReturnArgs) -> anyhow::Result<()> {
    let url = format!("{}/v1/returns/{}", args.query_url.trim_end_matches('/'), args.kind);
    let response = reqwest::Client::new()
        .get(&url)
        .bearer_auth(&args.token)
        .header("x-purpose", &args.purpose)
        .query(&[("council", &args.council), ("year", &args.year)])
        .send()
        .await
        .context("could not reach the query role")?;
    let status = response.status();
    let body = response.bytes().await.context("the query role's answer could not be read")?;
    if !status.is_success() {
        let detail = serde_json::from_slice::<serde_json::Value>(&body).ok();
        anyhow::bail!(
            "the query role answered {status}: {}",
            detail.as_ref().and_then(|d| d["detail"].as_str()).unwrap_or("")
        );
    }
    match &args.out {
        Some(path) => {
            std::fs::write(path, &body).with_context(|| format!("could not write {}", path.display()))?;
            eprintln!("wrote the {} return of {} for {} to {}", args.kind, args.council, args.year, path.display());
        }
        None => std::io::stdout().lock().write_all(&body)?,
    }
    Ok(())
}
