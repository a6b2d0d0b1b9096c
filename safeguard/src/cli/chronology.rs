//! `safeguard chronology`: a child's chronology through the query API, so
//! the caller's scope applies and the read is in the access log like any
//! other. With `--as-of`, the chronology as it stood then: what the
//! professionals had in front of them at a decision point.

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
    /// Wait until the read models hold this stream position (what a publish
    /// printed, or a 201's stream_sequence): read what was just written.
    #[arg(long)]
    pub min_position: Option<u64>,
    /// A token of a principal allowed to read this child.
    #[arg(long, env = "SAFEGUARD_TOKEN", hide_env_values = true)]
    pub token: String,
}

/// Fetches every page and writes the chronology to stdout.
pub async fn run(args: ChronologyArgs) -> anyhow::Result<()> {
    let query = super::client::RoleClient::query(&args.query_url, &args.token)?
        .acting(args.acting_user.clone(), args.purpose.clone())
        .at_least(args.min_position);
    if args.export {
        return export(&query, &args).await;
    }
    let path = format!("/v1/children/{}/chronology", args.child);
    let mut after: Option<String> = None;
    let mut entries: Vec<serde_json::Value> = Vec::new();
    let mut as_of = serde_json::Value::Null;
    // Pages are fetched as JSON and rendered once, so serial numbers and headers come out whole.
    loop {
        let mut params: Vec<(&str, &str)> = vec![("limit", "5000")];
        for (name, value) in [("as_of", &args.as_of), ("from", &args.from), ("to", &args.to), ("after", &after)] {
            if let Some(v) = value {
                params.push((name, v));
            }
        }
        let body = query.get(&path, &params).await?.json();
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
            // The narrative travels with each entry in JSON; the tables show it in a column.
            let narratives: casework::narrative::Narratives = entries
                .iter()
                .filter_map(|e| {
                    let narrative = serde_json::from_value(e.get("narrative")?.clone()).ok()?;
                    Some(((e["source"].as_str()?.to_owned(), e["id"].as_str()?.to_owned()), narrative))
                })
                .collect();
            let plo: casework::plo::Plos = entries
                .iter()
                .filter_map(|e| Some((e["sequence"].as_i64()?, serde_json::from_value(e.clone()).ok()?)))
                .collect();
            let agencies: casework::narrative::Agencies = entries
                .iter()
                .filter_map(|e| {
                    let agency = serde_json::from_value(e.get("agency")?.clone()).ok()?;
                    Some((e["source"].as_str()?.to_owned(), agency))
                })
                .collect();
            let extras = casework::format::Extras { narratives: &narratives, plo: &plo, agencies: &agencies };
            let parsed: Vec<projections::chronology::Entry> =
                entries.into_iter().filter_map(|e| serde_json::from_value(e).ok()).collect();
            let as_of = as_of.as_str().and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok()).map(|t| t.to_utc());
            if format == "csv" {
                casework::format::csv(&parsed, 1, &extras)
            } else {
                casework::format::markdown(&args.child, &as_of.unwrap_or_default(), &parsed, 1, &extras)
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

/// The anonymised export, written as the query role renders it.
async fn export(query: &super::client::RoleClient, args: &ChronologyArgs) -> anyhow::Result<()> {
    let path = format!("/v1/children/{}/chronology/export", args.child);
    let answer = query.get(&path, &[("format", &args.format)]).await?;
    let body = String::from_utf8_lossy(&answer.body);
    let mut out = std::io::stdout().lock();
    out.write_all(body.as_bytes())?;
    if !body.ends_with('\n') {
        out.write_all(b"\n")?;
    }
    Ok(())
}
