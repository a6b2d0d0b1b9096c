//! `safeguard return cin --council CODE --year 2024-25 [--out FILE]` and
//! `safeguard return annex-a --council CODE --date D [--out DIR]`: statutory
//! returns through the query API, so the caller's scope applies and every
//! child in them is recorded in the access log.
//!
//! `safeguard return check FILE`: the checks the DfE's and Ofsted's
//! collections make, for a council's analyst before submitting: a CIN census
//! against the schema of its year (`xmllint`, Debian's libxml2-utils), from
//! 2026-27 its module 5 under the DfE's rules for it (`casework::module5`),
//! and, where
//! `SAFEGUARD_CIN_VALIDATOR` names the Python of an environment with the
//! DfE's `csc-validator-be-cin`, its rules; an Annex A list's categorical
//! values against Ofsted's strings. Exits 3 if anything fails.

use anyhow::Context as _;
use std::io::Write as _;

#[derive(Debug, Clone, clap::Args)]
pub struct ReturnArgs {
    /// Which return: `cin` (the DfE CIN census XML) or `annex-a` (Ofsted's
    /// lists 1, 3, 4, 5, 6 and 7 as CSV); or `check` a return's file.
    #[arg(value_parser = ["cin", "annex-a", "check"])]
    pub kind: String,
    /// The file to check (`check`): a CIN census or one Annex A list.
    #[arg(required_if_eq("kind", "check"))]
    pub file: Option<std::path::PathBuf>,
    /// The council's ONS code.
    #[arg(long, required_if_eq_any([("kind", "cin"), ("kind", "annex-a")]))]
    pub council: Option<String>,
    /// The CIN census's collection year, such as 2024-25 (1 April 2024 to 31 March 2025).
    #[arg(long, required_if_eq("kind", "cin"))]
    pub year: Option<String>,
    /// Annex A's inspection date (YYYY-MM-DD).
    #[arg(long, required_if_eq("kind", "annex-a"))]
    pub date: Option<String>,
    /// The census: a file (default stdout). Annex A: a directory for list1.csv ... list7.csv (default .).
    #[arg(long)]
    pub out: Option<std::path::PathBuf>,
    /// Wait until the read models hold this stream position (what a publish printed).
    #[arg(long)]
    pub min_position: Option<u64>,
    /// The query role.
    #[arg(long = "query-url", env = "SAFEGUARD_QUERY_URL", default_value = "http://127.0.0.1:8081")]
    pub query_url: String,
    /// A token of a practitioner or admin of the council.
    #[arg(long, env = "SAFEGUARD_TOKEN", hide_env_values = true, required_if_eq_any([("kind", "cin"), ("kind", "annex-a")]))]
    pub token: Option<String>,
    /// Why (recorded in the access log).
    #[arg(long, default_value = "statutory return")]
    pub purpose: String,
}

/// Makes a return, or checks one (`check`); false if a check failed.
pub async fn run(args: ReturnArgs) -> anyhow::Result<bool> {
    if args.kind == "check" {
        let file = args.file.clone().unwrap_or_default();
        let problems = check(&file).await?;
        let mut out = std::io::stdout().lock();
        for p in &problems {
            writeln!(out, "{p}")?;
        }
        eprintln!(
            "{}: {} problems in {}",
            if problems.is_empty() { "ok" } else { "FAILED" },
            problems.len(),
            file.display()
        );
        return Ok(problems.is_empty());
    }
    let token = args.token.clone().unwrap_or_default();
    let council = args.council.clone().unwrap_or_default();
    let http = super::client::RoleClient::query(&args.query_url, &token)?
        .acting(None, Some(args.purpose.clone()))
        .at_least(args.min_position);
    if args.kind == "annex-a" {
        let dir = args.out.clone().unwrap_or_else(|| ".".into());
        std::fs::create_dir_all(&dir).with_context(|| format!("could not create {}", dir.display()))?;
        let date = args.date.clone().unwrap_or_default();
        for list in casework::annex_a::LISTS {
            let list = list.to_string();
            let body = fetch(&http, &args, &[("council", &council), ("date", &date), ("list", &list)]).await?;
            let path = dir.join(format!("list{list}.csv"));
            std::fs::write(&path, &body).with_context(|| format!("could not write {}", path.display()))?;
            eprintln!("wrote Annex A list {list} of {council} at {date} to {}", path.display());
        }
        return Ok(true);
    }
    let year = args.year.clone().unwrap_or_default();
    let body = fetch(&http, &args, &[("council", &council), ("year", &year)]).await?;
    match &args.out {
        Some(path) => {
            std::fs::write(path, &body).with_context(|| format!("could not write {}", path.display()))?;
            eprintln!("wrote the CIN census of {council} for {year} to {}", path.display());
        }
        None => std::io::stdout().lock().write_all(&body)?,
    }
    Ok(true)
}

/// Every problem the collections would find in the return at `path`.
pub async fn check(path: &std::path::Path) -> anyhow::Result<Vec<String>> {
    let bytes = std::fs::read(path).with_context(|| format!("could not read {}", path.display()))?;
    let text = String::from_utf8(bytes).context("a return is UTF-8 text")?;
    if text.trim_start().starts_with('<') {
        // A census that does not parse, or names no reference date, is
        // checked against the 2025-26 schema, which says what is wrong.
        let parsed = roxmltree::Document::parse(&text).ok();
        let year = parsed.as_ref().and_then(census_year);
        let schema = year.map_or(casework::cin::SCHEMAS[0].0, |y| y.schema());
        let mut problems = check_schema(path, schema).await?;
        problems.extend(check_dfe_rules(path).await?);
        if let (Some(doc), Some(year)) = (&parsed, year) {
            problems.extend(check_module_5(doc, &year));
        }
        Ok(problems)
    } else {
        check_annex_a(&text)
    }
}

/// The collection year a census is for, by its `ReferenceDate`.
fn census_year(doc: &roxmltree::Document<'_>) -> Option<casework::cin::CollectionYear> {
    let reference = doc.descendants().find(|n| n.has_tag_name("ReferenceDate"))?.text()?.trim().parse().ok()?;
    casework::cin::CollectionYear::ending(reference)
}

/// The census against `schema` (a file name of `casework::cin::SCHEMAS`), with xmllint.
async fn check_schema(path: &std::path::Path, schema: &str) -> anyhow::Result<Vec<String>> {
    let dir = tempfile::tempdir().context("a temporary directory")?;
    // Every schema, side by side: a later year's redefines an earlier one.
    for (name, text) in casework::cin::SCHEMAS {
        std::fs::write(dir.path().join(name), text)?;
    }
    let schema = dir.path().join(schema);
    let out = tokio::process::Command::new("xmllint")
        .args(["--noout", "--schema"])
        .arg(&schema)
        .arg(path)
        .output()
        .await
        .map_err(|e| anyhow::anyhow!("could not run xmllint ({e}): on Debian, apt-get install libxml2-utils"))?;
    if out.status.success() {
        return Ok(Vec::new());
    }
    let said = String::from_utf8_lossy(&out.stderr);
    let problems: Vec<String> =
        said.lines().filter(|l| !l.ends_with("fails to validate")).map(|l| format!("schema: {l}")).collect();
    Ok(if problems.is_empty() { vec![format!("schema: {}", said.trim())] } else { problems })
}

/// The census under the DfE's rules, where the validator is installed;
/// errors only (codes ending in Q are queries, for the analyst to review).
async fn check_dfe_rules(path: &std::path::Path) -> anyhow::Result<Vec<String>> {
    let Ok(python) = std::env::var("SAFEGUARD_CIN_VALIDATOR") else {
        eprintln!(
            "the DfE's rules were not run: set SAFEGUARD_CIN_VALIDATOR to the Python of an environment with csc-validator-be-cin"
        );
        return Ok(Vec::new());
    };
    Ok(dfe_rules(&python, path)
        .await?
        .into_iter()
        .filter(|f| !f.is_query())
        .map(|f| format!("DfE rule {}: child {}: {}", f.rule, f.child, f.description))
        .collect())
}

/// A 2026-27 (or later) census's module 5 under the DfE's rules for it,
/// which the released validator does not run yet (`casework::module5`):
/// errors are problems, queries notes on stderr.
fn check_module_5(doc: &roxmltree::Document<'_>, year: &casework::cin::CollectionYear) -> Vec<String> {
    if !year.has_pre_proceedings() {
        return Vec::new();
    }
    let mut blocks = Vec::new();
    for child in doc.descendants().filter(|n| n.has_tag_name("Child")) {
        let id = named(child, "ChildIdentifiers")
            .into_iter()
            .flat_map(|ids| named(ids, "LAchildID"))
            .find_map(|n| n.text())
            .unwrap_or_default()
            .to_owned();
        for details in named(child, "CINdetails") {
            for block in named(details, "PreProceedingsandFGDM") {
                let fields = block
                    .children()
                    .filter(roxmltree::Node::is_element)
                    .map(|n| (n.tag_name().name().to_owned(), n.text().unwrap_or_default().to_owned()))
                    .collect();
                blocks.push(casework::module5::Block { child: id.clone(), fields });
            }
        }
    }
    let mut problems = Vec::new();
    for f in casework::module5::findings(year, &blocks) {
        let line = format!("DfE rule {} (module 5): child {}: {}: {}", f.rule, f.child, f.field, f.detail);
        if f.is_query() {
            eprintln!("note: {line}");
        } else {
            problems.push(line);
        }
    }
    problems
}

/// The children of `node` named `name`.
fn named<'a, 'input>(node: roxmltree::Node<'a, 'input>, name: &str) -> Vec<roxmltree::Node<'a, 'input>> {
    node.children().filter(|n| n.has_tag_name(name)).collect()
}

/// One finding of the DfE's rules: a row of the validator's `user_report.csv`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DfeFinding {
    pub rule: String,
    pub child: String,
    pub columns: String,
    pub value: String,
    pub description: String,
}

impl DfeFinding {
    /// A query (a code ending in Q): a warning for the analyst, not an error.
    pub fn is_query(&self) -> bool {
        self.rule.ends_with('Q')
    }
}

/// Every finding of the DfE's rules (`csc-validator-be-cin`, run by
/// `python`, the interpreter of an environment that has it) on the census
/// at `path`, under the rule set of the census's own year. The validator
/// exits 0 whatever it finds, so its report is read.
pub async fn dfe_rules(python: &str, path: &std::path::Path) -> anyhow::Result<Vec<DfeFinding>> {
    let dir = tempfile::tempdir().context("a temporary directory")?;
    let file = std::fs::canonicalize(path)?;
    let text = std::fs::read_to_string(&file).with_context(|| format!("could not read {}", file.display()))?;
    let doc = roxmltree::Document::parse(&text).context("the census is not XML")?;
    let year = census_year(&doc).context("the census names no ReferenceDate")?;
    let out = tokio::process::Command::new(python)
        .args(["-m", "cin_validator", "run"])
        .arg(&file)
        .args(["-r", &year.ruleset(), "-o"])
        .current_dir(dir.path())
        .output()
        .await
        .context("could not run the DfE's validator")?;
    anyhow::ensure!(out.status.success(), "the DfE's validator failed: {}", String::from_utf8_lossy(&out.stderr));
    let report = std::fs::read_to_string(dir.path().join("user_report.csv")).unwrap_or_default();
    let records = casework::certified::csv_records(&report);
    let Some((header, rows)) = records.split_first() else { return Ok(Vec::new()) };
    let at = |name: &str| header.iter().position(|h| h == name);
    let cell = |row: &Vec<String>, name: &str| at(name).and_then(|i| row.get(i)).cloned().unwrap_or_default();
    Ok(rows
        .iter()
        .map(|r| DfeFinding {
            rule: cell(r, "rule_code"),
            child: cell(r, "LAchildID"),
            columns: cell(r, "columns_affected"),
            value: cell(r, "value_flagged"),
            description: cell(r, "rule_description"),
        })
        .filter(|f| !f.rule.is_empty())
        .collect())
}

/// An Annex A list (one of ours, known by its header) against Ofsted's strings.
fn check_annex_a(text: &str) -> anyhow::Result<Vec<String>> {
    let records = casework::certified::csv_records(text);
    let Some((header, rows)) = records.split_first() else { anyhow::bail!("the file is empty") };
    let list = casework::annex_a::list_of(header).ok_or_else(|| {
        anyhow::anyhow!("not a CIN census nor one of the Annex A lists 1, 3, 4, 5, 6 or 7 this backbone writes")
    })?;
    let mut problems = Vec::new();
    for f in casework::annex_a::check(list, header, rows) {
        let line = format!("Annex A list {list}, row {}, {}: {}", f.row, f.column, f.detail);
        if f.newer {
            // Not a wrong string: a code Ofsted's template has no string for yet.
            eprintln!("note: {line}");
        } else {
            problems.push(line);
        }
    }
    Ok(problems)
}

async fn fetch(
    http: &super::client::RoleClient,
    args: &ReturnArgs,
    query: &[(&str, &String)],
) -> anyhow::Result<bytes::Bytes> {
    let query: Vec<(&str, &str)> = query.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Ok(http.get(&format!("/v1/returns/{}", args.kind), &query).await?.body)
}
