//! `safeguard return cin --council CODE --year 2024-25 [--out FILE]` and
//! `safeguard return annex-a --council CODE --date D [--out DIR]`: statutory
//! returns through the query API, so the caller's scope applies and every
//! child in them is recorded in the access log.

use anyhow::Context as _;
use std::io::Write as _;

#[derive(Debug, Clone, clap::Args)]
pub struct ReturnArgs {
    /// Which return: `cin` (the DfE CIN census XML) or `annex-a` (Ofsted's lists 1, 3, 4, 5, 6 and 7 as CSV).
    #[arg(value_parser = ["cin", "annex-a"])]
    pub kind: String,
    /// The council's ONS code.
    #[arg(long)]
    pub council: String,
    /// The CIN census's collection year, such as 2024-25 (1 April 2024 to 31 March 2025).
    #[arg(long, required_if_eq("kind", "cin"))]
    pub year: Option<String>,
    /// Annex A's inspection date (YYYY-MM-DD).
    #[arg(long, required_if_eq("kind", "annex-a"))]
    pub date: Option<String>,
    /// The census: a file (default stdout). Annex A: a directory for list1.csv ... list7.csv (default .).
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
    let http = super::client::RoleClient::query(&args.query_url, &args.token)?.acting(None, Some(args.purpose.clone()));
    if args.kind == "annex-a" {
        let dir = args.out.clone().unwrap_or_else(|| ".".into());
        std::fs::create_dir_all(&dir).with_context(|| format!("could not create {}", dir.display()))?;
        let date = args.date.clone().unwrap_or_default();
        for list in casework::annex_a::LISTS {
            let list = list.to_string();
            let body = fetch(&http, &args, &[("council", &args.council), ("date", &date), ("list", &list)]).await?;
            let path = dir.join(format!("list{list}.csv"));
            std::fs::write(&path, &body).with_context(|| format!("could not write {}", path.display()))?;
            eprintln!("wrote Annex A list {list} of {} at {date} to {}", args.council, path.display());
        }
        return Ok(());
    }
    let year = args.year.clone().unwrap_or_default();
    let body = fetch(&http, &args, &[("council", &args.council), ("year", &year)]).await?;
    match &args.out {
        Some(path) => {
            std::fs::write(path, &body).with_context(|| format!("could not write {}", path.display()))?;
            eprintln!("wrote the CIN census of {} for {year} to {}", args.council, path.display());
        }
        None => std::io::stdout().lock().write_all(&body)?,
    }
    Ok(())
}

async fn fetch(
    http: &super::client::RoleClient,
    args: &ReturnArgs,
    query: &[(&str, &String)],
) -> anyhow::Result<bytes::Bytes> {
    let query: Vec<(&str, &str)> = query.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Ok(http.get(&format!("/v1/returns/{}", args.kind), &query).await?.body)
}
