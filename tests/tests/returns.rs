//! Statutory returns from the read models, checked by the DfE's own rules:
//! the CIN census of a seeded multi-council population, run through
//! `csc-validator-be-cin` (RETURNS.md), must hold no error.

use std::sync::Arc;
use tests::gateway::{TestGateway, tokens};
use tests::projector::LiveProjector;
use tests::query::TestQuery;
use tests::{NatsServer, TestDatabase};

/// The validator's Python (a virtual environment with csc-validator-be-cin); `ops/test` sets it.
fn validator() -> String {
    std::env::var("SAFEGUARD_CIN_VALIDATOR").unwrap_or_else(|_| {
        panic!(
            "SAFEGUARD_CIN_VALIDATOR must name the python of a venv with csc-validator-be-cin (ops/test installs one)"
        )
    })
}

/// One row of `user_report.csv`: (rule code, LAchildID, columns, value flagged).
type Finding = (String, String, String, String);

/// Runs the DfE rules on `xml`; returns every finding.
async fn validate(xml: &str, name: &str) -> Vec<Finding> {
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join(format!("{name}.xml"));
    std::fs::write(&file, xml).expect("write");
    let output = tokio::process::Command::new(validator())
        .args(["-m", "cin_validator", "run"])
        .arg(&file)
        .args(["-r", "cin2024_25", "-o"])
        .current_dir(dir.path())
        .output()
        .await
        .expect("run the validator");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let report = std::fs::read_to_string(dir.path().join("user_report.csv")).unwrap_or_default();
    let mut reader = report.lines();
    let header: Vec<&str> = reader.next().map(|h| h.split(',').collect()).unwrap_or_default();
    let column = |name: &str| header.iter().position(|h| *h == name);
    let (code, child, columns, value) =
        (column("rule_code"), column("LAchildID"), column("columns_affected"), column("value_flagged"));
    let mut findings = Vec::new();
    for line in report.lines().skip(1) {
        let cells = split_csv(line);
        let cell = |i: Option<usize>| i.and_then(|i| cells.get(i)).cloned().unwrap_or_default();
        findings.push((cell(code), cell(child), cell(columns), cell(value)));
    }
    findings
}

fn split_csv(line: &str) -> Vec<String> {
    let mut cells = vec![String::new()];
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => cells.push(String::new()),
            _ => cells.last_mut().expect("a cell").push(c),
        }
    }
    cells
}

// Multi-threaded: the validator runs as a child process while this runtime serves the roles.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cin_census_of_a_seeded_population_holds_no_error_under_the_dfe_rules() {
    let nats = NatsServer::start().await;
    let gateway = Arc::new(TestGateway::start(&nats.url()).await);
    let db = TestDatabase::create().await;
    let projector = LiveProjector::start_for(&gateway, &nats.url(), &db.pool().await).await;
    let query = TestQuery::start(&nats.url(), db.url(), &gateway).await;
    let until = chrono::NaiveDate::from_ymd_opt(2025, 6, 30).expect("date");
    let groups = services::seed::generate(5, 3, 120, until).expect("seed");
    let last = tests::gateway::load_groups(&gateway, groups).await;
    projector.wait_for(last).await;

    let mut errors = Vec::new();
    let mut queries: std::collections::BTreeMap<String, usize> = std::collections::BTreeMap::new();
    let mut children = 0;
    for (council, _, name) in services::seed::COUNCILS.iter().take(3) {
        let answer = query.get(tokens::ADMIN, &format!("/v1/returns/cin?council={council}&year=2024-25")).await;
        assert_eq!(answer.status, 200, "{}", answer.text);
        children += answer.text.matches("<Child>").count();
        for finding in validate(&answer.text, name).await {
            if finding.0.ends_with('Q') {
                *queries.entry(finding.0).or_default() += 1;
            } else {
                errors.push((name.to_string(), finding));
            }
        }
    }
    eprintln!("{children} children returned; queries (warnings) by rule: {queries:?}");
    assert!(children > 100, "{children} children returned");
    assert!(errors.is_empty(), "{} errors, the first: {:#?}", errors.len(), &errors[..errors.len().min(15)]);

    // Every child returned is a child-level read in the access log; a dashboard may not have the return.
    projector.wait_for_audit().await;
    let logged: i64 = sqlx::query_scalar(
        "select count(*) from audit.access_event where endpoint = 'GET /v1/returns/cin' and outcome = 'allowed'",
    )
    .fetch_one(&db.pool().await)
    .await
    .expect("count");
    assert_eq!(logged as usize, children);
    let refused = query.get(tokens::DASHBOARD, "/v1/returns/cin?council=E09000014&year=2024-25").await;
    assert_eq!(refused.status, 403);
    // The command writes the same message.
    let dir = tempfile::tempdir().expect("dir");
    let out = dir.path().join("cin.xml");
    let run = tokio::process::Command::new(tests::safeguard_binary())
        .args(["return", "cin", "--council", "E09000014", "--year", "2024-25", "--out"])
        .arg(&out)
        .env("SAFEGUARD_QUERY_URL", query.url(""))
        .env("SAFEGUARD_TOKEN", tokens::ADMIN)
        .output()
        .await
        .expect("run safeguard return");
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let written = std::fs::read_to_string(&out).expect("the return");
    let api = query.get(tokens::ADMIN, "/v1/returns/cin?council=E09000014&year=2024-25").await;
    assert!(written.contains("<Collection>CIN</Collection>") && written.contains("<LEA>309</LEA>"), "{written}");
    assert_eq!(written.matches("<Child>").count(), api.text.matches("<Child>").count());
    let bad = query.get(tokens::ADMIN, "/v1/returns/cin?council=E09000014&year=2024").await;
    assert_eq!(bad.status, 422);
    assert!(bad.text.contains("year"), "{}", bad.text);
}
