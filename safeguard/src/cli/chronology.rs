//! `safeguard chronology`: a child's chronology through the query API, so
//! the caller's scope applies and the read is in the access log like any
//! other. With `--as-of`, the chronology as it stood then: what the
//! professionals had in front of them at a decision point.

use anyhow::Context as _;
use std::io::Write as _;

#[derive(Debug, Clone, clap::Args)]
pub struct ChronologyArgs {
    /// The child's id.
    #[arg(long)]
    pub child: uuid::Uuid,
    /// Show only what had been recorded by this RFC 3339 time, as it then stood.
    #[arg(long)]
    pub as_of: Option<String>,
    /// First business date (YYYY-MM-DD).
    #[arg(long)]
    pub from: Option<String>,
    /// Last business date (YYYY-MM-DD).
    #[arg(long)]
    pub to: Option<String>,
    /// md, csv or json.
    #[arg(long, default_value = "md", value_parser = ["md", "csv", "json"])]
    pub format: String,
    /// The anonymised chronology for publication (Child A, people by role, nothing identifying).
    #[arg(long, conflicts_with_all = ["as_of", "from", "to"])]
    pub export: bool,
    /// Why you are reading it (recorded in the access log).
    #[arg(long)]
    pub purpose: Option<String>,
    /// Who is reading it (recorded in the access log).
    #[arg(long)]
    pub acting_user: Option<String>,
    /// The query role.
    #[arg(long = "query-url", env = "SAFEGUARD_QUERY_URL", default_value = "http://127.0.0.1:8081")]
    pub query_url: String,
    /// A token of a principal allowed to read this child.
    #[arg(long, env = "SAFEGUARD_TOKEN", hide_env_values = true)]
    pub token: String,
}

/// Fetches every page and writes the chronology to stdout.
pub async fn run(args: ChronologyArgs) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    if args.export {
        return export(&http, &args).await;
    }
    let base = format!("{}/v1/children/{}/chronology", args.query_url.trim_end_matches('/'), args.child);
    let mut after: Option<String> = None;
    let mut entries: Vec<serde_json::Value> = Vec::new();
    let mut as_of = serde_json::Value::Null;
    // Pages are fetched as JSON and rendered once, so serial numbers and headers come out whole.
    loop {
        let mut query: Vec<(&str, String)> = vec![("limit", "5000".into())];
        for (name, value) in [("as_of", &args.as_of), ("from", &args.from), ("to", &args.to)] {
            if let Some(v) = value {
                query.push((name, v.clone()));
            }
        }
        if let Some(a) = &after {
            query.push(("after", a.clone()));
        }
        let request = asking(http.get(&base).query(&query), &args);
        let response = request.send().await.context("could not reach the query role")?;
        let status = response.status();
        let body: serde_json::Value = response.json().await.context("the query role did not answer JSON")?;
        if !status.is_success() {
            anyhow::bail!("the query role answered {status}: {}", body["detail"].as_str().unwrap_or(""));
        }
        // Every page answers for the same moment; the first one says which.
        if as_of.is_null() {
            as_of = body["as_of"].clone();
        }
        entries.extend(body["entries"].as_array().cloned().unwrap_or_default());
        match body["next"].as_str() {
            Some(next) => after = Some(next.to_owned()),
            None => break,
        }
    }
    let text = match args.format.as_str() {
        "json" => serde_json::to_string_pretty(
            &serde_json::json!({ "child": args.child, "as_of": as_of, "entries": entries }),
        )?,
        format => {
            let parsed: Vec<projections::chronology::Entry> =
                entries.into_iter().filter_map(|e| serde_json::from_value(e).ok()).collect();
            let as_of = as_of.as_str().and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok()).map(|t| t.to_utc());
            if format == "csv" {
                query::format::csv(&parsed, 1)
            } else {
                query::format::markdown(&args.child, &as_of.unwrap_or_default(), &parsed, 1)
            }
        }
    };
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    if !text.ends_with('\n') {
        out.write_all(b"\n")?;
    }
    Ok(())
}

/// The request with the token, and who is reading and why (for the access log).
fn asking(request: reqwest::RequestBuilder, args: &ChronologyArgs) -> reqwest::RequestBuilder {
    let mut request = request.bearer_auth(&args.token);
    if let Some(p) = &args.purpose {
        request = request.header("x-purpose", p);
    }
    if let Some(u) = &args.acting_user {
        request = request.header("x-acting-user", u);
    }
    request
}

/// The anonymised export, written as the query role renders it.
async fn export(http: &reqwest::Client, args: &ChronologyArgs) -> anyhow::Result<()> {
    let url = format!("{}/v1/children/{}/chronology/export", args.query_url.trim_end_matches('/'), args.child);
    let request = asking(http.get(&url).query(&[("format", &args.format)]), args);
    let response = request.send().await.context("could not reach the query role")?;
    let status = response.status();
    let body = response.text().await.context("the query role's answer could not be read")?;
    if !status.is_success() {
        let detail = serde_json::from_str::<serde_json::Value>(&body).ok();
        let detail = detail.as_ref().and_then(|b| b["detail"].as_str()).unwrap_or("");
        anyhow::bail!("the query role answered {status}: {detail}");
    }
    let mut out = std::io::stdout().lock();
    out.write_all(body.as_bytes())?;
    if !body.ends_with('\n') {
        out.write_all(b"\n")?;
    }
    Ok(())
}
