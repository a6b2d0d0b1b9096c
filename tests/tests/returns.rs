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

/// Runs the DfE rules on `xml` (through the same code as `safeguard return
/// check`); returns every finding.
async fn validate(xml: &str, name: &str) -> Vec<Finding> {
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join(format!("{name}.xml"));
    std::fs::write(&file, xml).expect("write");
    safeguard::cli::returns::dfe_rules(&validator(), &file)
        .await
        .expect("run the validator")
        .into_iter()
        .map(|f| (f.rule, f.child, f.columns, f.value))
        .collect()
}

/// `xml` without any `<tag>...</tag>` element.
fn strip(xml: &str, tag: &str) -> String {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut out = String::new();
    let mut rest = xml;
    while let Some(at) = rest.find(&open) {
        out.push_str(&rest[..at]);
        let end = rest[at..].find(&close).expect("closed") + at + close.len();
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
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
    // Into the 2026-27 collection year, so its census has pre-proceedings (module 5).
    let until = chrono::NaiveDate::from_ymd_opt(2026, 11, 30).expect("date");
    let groups = safeguard::cli::seed::generate(5, 3, 120, until).expect("seed");
    let last = tests::gateway::load_groups(&gateway, groups).await;
    projector.wait_for(last).await;

    let mut errors = Vec::new();
    let mut queries: std::collections::BTreeMap<String, usize> = std::collections::BTreeMap::new();
    let mut children = 0;
    for (council, _, name) in safeguard::cli::seed::COUNCILS.iter().take(3) {
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

    // Annex A of the same population: every list answers, the busy ones
    // have rows, and every categorical value is one of Ofsted's strings.
    let checked = tempfile::tempdir().expect("dir");
    for n in [1, 3, 4, 5, 6, 7] {
        let path = format!("/v1/returns/annex-a?council=E09000014&date=2025-03-31&list={n}");
        let answer = query.get(tokens::ADMIN, &path).await;
        assert_eq!(answer.status, 200, "{}", answer.text);
        let rows = answer.text.lines().count() - 1;
        assert!(rows > 0 || n == 5, "list {n} is empty");
        let file = checked.path().join(format!("list{n}.csv"));
        std::fs::write(&file, &answer.text).expect("write");
        let out = tokio::process::Command::new(tests::safeguard_binary())
            .args(["return", "check"])
            .arg(&file)
            .output()
            .await
            .expect("run safeguard return check");
        assert!(out.status.success(), "list {n}:\n{}", String::from_utf8_lossy(&out.stdout));
    }
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
    // Every census, of each council and year, is valid against the schema
    // of its year as `safeguard return check` finds it (xmllint); Haringey's
    // of each later year is run through the DfE's rules (that year's set)
    // by the same command.
    let dir = checked;
    let mut module_5 = 0;
    for (council, _, name) in safeguard::cli::seed::COUNCILS.iter().take(3) {
        for year in ["2024-25", "2025-26", "2026-27"] {
            let answer = query.get(tokens::ADMIN, &format!("/v1/returns/cin?council={council}&year={year}")).await;
            assert_eq!(answer.status, 200, "{}", answer.text);
            let file = dir.path().join(format!("{name}-{year}.xml"));
            std::fs::write(&file, &answer.text).expect("write");
            // For running other checkers on the same censuses by hand (docs/returns.md).
            if let Some(keep) = std::env::var_os("SAFEGUARD_KEEP_RETURNS") {
                std::fs::create_dir_all(&keep).expect("a directory for the returns kept");
                std::fs::copy(&file, std::path::Path::new(&keep).join(format!("{name}-{year}.xml"))).expect("keep");
            }
            let mut check = tokio::process::Command::new(tests::safeguard_binary());
            check.args(["return", "check"]).arg(&file);
            if year == "2024-25" || *council != "E09000014" {
                check.env_remove("SAFEGUARD_CIN_VALIDATOR"); // the rules ran on 2024-25 above
            }
            if year == "2026-27" {
                module_5 += answer.text.matches("<PreProceedingsandFGDM>").count();
                // Module 5 is all the 2026-27 census adds: without it, the
                // message is valid against the DfE's own 2025-26 schema.
                let without = dir.path().join(format!("{name}-{year}-without-module-5.xml"));
                std::fs::write(&without, strip(&answer.text, "PreProceedingsandFGDM")).expect("write");
                let dfe = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../standards/cin-census-2025-26.xsd");
                let out = tokio::process::Command::new("xmllint")
                    .args(["--noout", "--schema"])
                    .arg(&dfe)
                    .arg(&without)
                    .output()
                    .await
                    .expect("run xmllint");
                assert!(out.status.success(), "{name}: {}", String::from_utf8_lossy(&out.stderr));
            } else {
                assert!(!answer.text.contains("PreProceedings"), "{name} {year}: module 5 before 2026-27");
            }
            let out = check.output().await.expect("run safeguard return check");
            assert!(
                out.status.success(),
                "{name} {year}:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    assert!(module_5 > 0, "the seed's pre-proceedings reach the 2026-27 census");
    // Module 5 broken as the DfE's 2026-27 rules would refuse it (which
    // the released validator does not run yet): the check names the rules.
    let with_module_5 = safeguard::cli::seed::COUNCILS
        .iter()
        .take(3)
        .map(|(_, _, name)| std::fs::read_to_string(dir.path().join(format!("{name}-2026-27.xml"))).expect("a census"))
        .find(|xml| xml.contains("<LBPSentDate>"))
        .expect("a 2026-27 census with a letter before proceedings");
    let start = with_module_5.split("<PPStartDate>").nth(1).and_then(|r| r.split('<').next()).expect("a start");
    let letter = with_module_5.split("<LBPSentDate>").nth(1).and_then(|r| r.split('<').next()).expect("a letter");
    let day_before: chrono::NaiveDate = start.parse::<chrono::NaiveDate>().expect("a date").pred_opt().expect("a day");
    let broken_5 = dir.path().join("broken-module-5.xml");
    std::fs::write(
        &broken_5,
        with_module_5.replacen(&format!("<LBPSentDate>{letter}<"), &format!("<LBPSentDate>{day_before}<"), 1),
    )
    .expect("write");
    let out = tokio::process::Command::new(tests::safeguard_binary())
        .args(["return", "check"])
        .arg(&broken_5)
        .env_remove("SAFEGUARD_CIN_VALIDATOR")
        .output()
        .await
        .expect("run safeguard return check");
    let said = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{said}");
    assert!(said.contains("DfE rule 9006 (module 5)") && said.contains("LBPSentDate"), "{said}");
    // Each census made is numbered anew: SerialNo, three digits, one more each time.
    let serial = |xml: &str| -> u32 {
        let n = xml.split("<SerialNo>").nth(1).and_then(|r| r.split('<').next()).expect("a serial number");
        assert!(n.len() >= 3, "{n}");
        n.parse().expect("digits")
    };
    let path = "/v1/returns/cin?council=E09000014&year=2024-25";
    let first = serial(&query.get(tokens::ADMIN, path).await.text);
    let second = serial(&query.get(tokens::ADMIN, path).await.text);
    assert_eq!(second, first + 1);

    // A census broken as the DfE's collection would refuse it is named by the check.
    let broken = dir.path().join("broken.xml");
    let good = std::fs::read_to_string(dir.path().join("Haringey-2024-25.xml")).expect("a census");
    std::fs::write(&broken, good.replacen("<Sex>", "<Gender>", 1).replacen("</Sex>", "</Gender>", 1)).expect("write");
    let out = tokio::process::Command::new(tests::safeguard_binary())
        .args(["return", "check"])
        .arg(&broken)
        .env_remove("SAFEGUARD_CIN_VALIDATOR")
        .output()
        .await
        .expect("run safeguard return check");
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stdout).contains("Gender"), "{}", String::from_utf8_lossy(&out.stdout));
}

/// One child per breach, all in Haringey in 2024-25: what each child's
/// history holds beyond its registration and a referral on 1 May 2024.
/// (8869, factor 21 with other factors, is a rule of a single event: the
/// gateway refuses it, so it never reaches the record; tested below.)
/// A fact of a child's history: type, business date, data.
type Fact = (&'static str, &'static str, serde_json::Value);

fn breaches() -> Vec<(&'static [&'static str], Vec<Fact>)> {
    use serde_json::json;
    let s47 = |id: &str, day: &'static str| ("s47.started", day, json!({"s47_id": id, "referral_id": "R1"}));
    let icpc = |id: &str, s47: &str, day: &'static str| {
        ("conference.held", day, json!({"conference_id": id, "kind": "initial", "s47_id": s47, "outcome": "plan"}))
    };
    let plan = |id: &str, conf: &str, day: &'static str| {
        ("cp_plan.started", day, json!({"plan_id": id, "conference_id": conf, "category": "NEG"}))
    };
    let end = |id: &str, day: &'static str| ("cp_plan.ended", day, json!({"plan_id": id}));
    let assess =
        |id: &str, day: &'static str| ("assessment.started", day, json!({"assessment_id": id, "referral_id": "R1"}));
    let done = |id: &str, day: &'static str, factors: serde_json::Value| {
        (
            "assessment.completed",
            day,
            json!({"assessment_id": id, "factors": factors, "child_seen": true, "needs_support": true}),
        )
    };
    vec![
        (&["1103"], vec![assess("A1", "2024-04-22")]),
        // An ICPC before the referral; its enquiry (which cannot start after it) is before the referral too.
        (
            &["1104", "2889"],
            vec![
                s47("S1", "2024-04-22"),
                (
                    "conference.held",
                    "2024-04-25",
                    json!({"conference_id": "C1", "kind": "initial", "s47_id": "S1", "outcome": "no_plan"}),
                ),
            ],
        ),
        (&["2889"], vec![s47("S1", "2024-04-29")]),
        // A plan before the referral starts at its ICPC, which needs its enquiry: all three before it.
        (
            &["1104", "1105", "2889"],
            vec![s47("S1", "2024-04-15"), icpc("C1", "S1", "2024-04-25"), plan("P1", "C1", "2024-04-25")],
        ),
        (&["8608"], vec![assess("A1", "2024-06-10"), done("A1", "2024-06-03", json!(["2A"]))]),
        (
            &["8925"],
            vec![
                s47("S1", "2024-05-20"),
                icpc("C1", "S1", "2024-06-03"),
                plan("P1", "C1", "2024-06-03"),
                end("P1", "2024-05-31"),
            ],
        ),
        (
            &["8840"],
            vec![
                s47("S1", "2024-05-20"),
                icpc("C1", "S1", "2024-06-03"),
                plan("P1", "C1", "2024-06-03"),
                end("P1", "2024-06-03"),
            ],
        ),
        (&["2885"], vec![s47("S1", "2024-05-20"), icpc("C1", "S1", "2024-06-03"), plan("P1", "C1", "2024-06-04")]),
        (
            &["8841"],
            vec![
                s47("S1", "2024-05-20"),
                icpc("C1", "S1", "2024-06-03"),
                plan("P1", "C1", "2024-06-03"),
                (
                    "conference.held",
                    "2024-06-03",
                    json!({"conference_id": "C2", "kind": "review", "plan_id": "P1", "outcome": "continue"}),
                ),
            ],
        ),
        // Two open plans, each in its own (overlapping, open) episode.
        (
            &["8815", "8816", "8820", "8935", "8940"],
            vec![
                s47("S1", "2024-05-20"),
                icpc("C1", "S1", "2024-06-03"),
                plan("P1", "C1", "2024-06-03"),
                (
                    "referral.received",
                    "2024-06-20",
                    json!({"referral_id": "R2", "source": "6", "nfa": false, "primary_need": "N1"}),
                ),
                ("s47.started", "2024-06-20", json!({"s47_id": "S2", "referral_id": "R2"})),
                icpc("C2", "S2", "2024-07-01"),
                plan("P2", "C2", "2024-07-01"),
            ],
        ),
        (
            &["8940"],
            vec![
                s47("S1", "2024-05-20"),
                icpc("C1", "S1", "2024-06-03"),
                plan("P1", "C1", "2024-06-03"),
                end("P1", "2024-09-02"),
                s47("S2", "2024-07-22"),
                icpc("C2", "S2", "2024-08-05"),
                plan("P2", "C2", "2024-08-05"),
                end("P2", "2024-10-01"),
            ],
        ),
        (
            &["8565"],
            vec![
                assess("A1", "2024-05-02"),
                done("A1", "2024-05-20", json!(["2A"])),
                ("case.closed", "2024-06-03", json!({"referral_id": "R1", "reason": "RC7"})),
                assess("A2", "2024-07-01"),
                done("A2", "2024-07-15", json!(["2A"])),
            ],
        ),
        (
            &["8815", "8816", "8820"],
            vec![(
                "referral.received",
                "2024-06-03",
                json!({"referral_id": "R2", "source": "6", "nfa": false, "primary_need": "N1"}),
            )],
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliberate_breaches_are_flagged_by_rule_and_the_dfe_rules_find_the_same() {
    use serde_json::json;
    let nats = NatsServer::start().await;
    let gateway = TestGateway::start(&nats.url()).await;
    let db = TestDatabase::create().await;
    let projector = LiveProjector::start_for(&gateway, &nats.url(), &db.pool().await).await;
    let query = TestQuery::start(&nats.url(), db.url(), &gateway).await;
    let council = json!({"specversion": "1.0", "id": "council", "type": "council.configured", "subject": "E09000014",
        "time": "2020-01-01T09:00:00Z", "data": {"effective_from": "2020-01-01", "dfe_la_code": "309"}});
    let mut events = vec![council];
    let mut expected = std::collections::BTreeSet::new();
    let mut children = Vec::new();
    for (n, (rules, facts)) in breaches().into_iter().enumerate() {
        let child = uuid::Uuid::new_v4().to_string();
        let mut history = vec![
            (
                "child.registered",
                "2024-01-02",
                json!({"council": "E09000014", "la_child_id": format!("Q{n:04}"), "sex": "F", "birth_date": "2015-03-04", "ethnicity": "WBRI"}),
            ),
            (
                "referral.received",
                "2024-05-01",
                json!({"referral_id": "R1", "source": "6", "nfa": false, "primary_need": "N1"}),
            ),
        ];
        history.extend(facts);
        for (i, (t, day, data)) in history.into_iter().enumerate() {
            events.push(json!({"specversion": "1.0", "id": format!("q{n}-{i}"), "type": t, "subject": child,
                "time": format!("{day}T10:00:00Z"), "data": data}));
        }
        expected.extend(rules.iter().map(|r| (*r).to_owned()));
        children.push((child, rules));
    }
    let r = gateway.post(tokens::ADMIN, &serde_json::Value::Array(events)).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let factor21 = json!({"specversion": "1.0", "id": "f21", "type": "assessment.completed", "subject": children[0].0,
        "time": "2024-05-20T10:00:00Z", "data": {"assessment_id": "A1", "factors": ["21", "2A"], "child_seen": true, "needs_support": true}});
    let refused = gateway.post(tokens::ADMIN, &factor21).await;
    assert_eq!(refused.status, 422, "8869 is refused at the door: {}", refused.text);
    let last = r.json["results"].as_array().and_then(|a| a.last()).and_then(|l| l["stream_sequence"].as_u64());
    projector.wait_for(last.expect("a position")).await;

    // Each child is flagged with exactly its rules.
    for (child, rules) in &children {
        let answer = query.get(tokens::HARINGEY, &format!("/v1/children/{child}/quality")).await;
        assert_eq!(answer.status, 200, "{}", answer.text);
        let mut got: Vec<String> = answer.json["flags"]
            .as_array()
            .expect("flags")
            .iter()
            .filter_map(|f| f["rule"].as_str().map(str::to_owned))
            .collect();
        got.sort();
        got.dedup();
        assert_eq!(got, rules.to_vec(), "{}", answer.text);
    }
    let council = query.get(tokens::HARINGEY, "/v1/quality?council=E09000014").await;
    let flagged: std::collections::BTreeSet<String> = council.json["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .filter_map(|r| r["rule"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(flagged, expected, "{}", council.text);
    assert_eq!(query.get(tokens::DASHBOARD, "/v1/quality?council=E09000014").await.status, 403);

    // The DfE's rules find the same breaches in the census.
    let census = query.get(tokens::ADMIN, "/v1/returns/cin?council=E09000014&year=2024-25").await;
    assert_eq!(census.status, 200, "{}", census.text);
    let found: std::collections::BTreeSet<String> =
        validate(&census.text, "breaches").await.into_iter().map(|f| f.0).filter(|r| !r.ends_with('Q')).collect();
    assert_eq!(found, expected, "{}", census.text);
}

/// The rows of an Annex A list, as (header, rows) of cells.
fn parse_csv(text: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let mut lines = text.lines();
    let header = lines.next().map(split_csv).unwrap_or_default();
    (header, lines.map(split_csv).collect())
}

// Multi-threaded: the command runs as a child process while this runtime serves the roles.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn annex_a_lists_a_known_child_with_ofsteds_columns_and_values() {
    use serde_json::json;
    let nats = NatsServer::start().await;
    let gateway = TestGateway::start(&nats.url()).await;
    let db = TestDatabase::create().await;
    let projector = LiveProjector::start_for(&gateway, &nats.url(), &db.pool().await).await;
    let query = TestQuery::start(&nats.url(), db.url(), &gateway).await;
    let child = uuid::Uuid::new_v4().to_string();
    let worker = uuid::Uuid::new_v4().to_string();
    let facts: Vec<Fact> = vec![
        (
            "child.registered",
            "2018-02-10",
            json!({"council": "E09000014", "la_child_id": "HAR001", "sex": "M", "birth_date": "2018-02-10", "ethnicity": "BAFR", "disabilities": ["LD"]}),
        ),
        ("referral.received", "2024-06-03", json!({"referral_id": "R0", "source": "2A", "nfa": true})),
        ("contact.recorded", "2024-10-01", json!({"contact_id": "C1", "source": "6", "summary": "Police attended"})),
        (
            "referral.received",
            "2024-10-01",
            json!({"referral_id": "R1", "source": "6", "nfa": false, "primary_need": "N1"}),
        ),
        ("case.allocated", "2024-10-02", json!({"worker_id": worker, "team_id": "T-NORTH"})),
        ("assessment.started", "2024-10-02", json!({"assessment_id": "A1", "referral_id": "R1"})),
        ("s47.started", "2024-10-03", json!({"s47_id": "S1", "referral_id": "R1"})),
        ("court.order_made", "2024-10-04", json!({"proceedings_id": "P-1", "order": "epo"})),
        (
            "conference.held",
            "2024-10-17",
            json!({"conference_id": "C-I", "kind": "initial", "s47_id": "S1", "outcome": "plan"}),
        ),
        ("cp_plan.started", "2024-10-17", json!({"plan_id": "P1", "conference_id": "C-I", "category": "PHY"})),
        (
            "assessment.completed",
            "2024-11-20",
            json!({"assessment_id": "A1", "factors": ["3B"], "child_seen": true, "needs_support": true}),
        ),
        ("cp_plan.category_changed", "2024-12-02", json!({"plan_id": "P1", "category": "MUL"})),
        ("child.seen", "2025-01-06", json!({"seen_by": worker, "seen_alone": false, "context": "statutory_visit"})),
        (
            "conference.held",
            "2025-01-15",
            json!({"conference_id": "C-R", "kind": "review", "plan_id": "P1", "outcome": "continue"}),
        ),
        ("child.seen", "2025-01-20", json!({"seen_by": worker, "seen_alone": true, "context": "school"})),
    ];
    let events: Vec<serde_json::Value> = facts
        .into_iter()
        .enumerate()
        .map(|(i, (t, day, data))| {
            json!({"specversion": "1.0", "id": format!("a-{i}"), "type": t, "subject": child, "time": format!("{day}T10:00:00Z"), "data": data})
        })
        .collect();
    let r = gateway.post(tokens::ADMIN, &serde_json::Value::Array(events)).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let last = r.json["results"].as_array().and_then(|a| a.last()).and_then(|l| l["stream_sequence"].as_u64());
    projector.wait_for(last.expect("a position")).await;

    let list = |n: u8| {
        let query = &query;
        async move {
            let answer = query
                .get(tokens::HARINGEY, &format!("/v1/returns/annex-a?council=E09000014&date=2025-02-01&list={n}"))
                .await;
            assert_eq!(answer.status, 200, "{}", answer.text);
            parse_csv(&answer.text)
        }
    };
    let common = ["HAR001", "a) Male", "o) BAFR", "10/02/2018", "6"];
    let row = |own: &[&str]| common.iter().chain(own).map(|s| (*s).to_owned()).collect::<Vec<_>>();
    // A contact that never became a referral is listed too; one recorded
    // while a child was another council's is not this council's to list.
    let (contacted, moved) = (uuid::Uuid::new_v4().to_string(), uuid::Uuid::new_v4().to_string());
    let more = serde_json::json!([
        {"specversion": "1.0", "id": "b-0", "type": "child.registered", "subject": contacted, "time": "2019-03-01T10:00:00Z",
         "data": {"council": "E09000014", "la_child_id": "HAR002", "sex": "F", "birth_date": "2019-03-01", "ethnicity": "WBRI"}},
        {"specversion": "1.0", "id": "b-1", "type": "contact.recorded", "subject": contacted, "time": "2024-11-05T10:00:00Z",
         "data": {"contact_id": "C2", "source": "2A", "summary": "School asked for advice"}},
        {"specversion": "1.0", "id": "c-0", "type": "child.registered", "subject": moved, "time": "2017-05-01T10:00:00Z",
         "data": {"council": "E09000019", "la_child_id": "ISL001", "sex": "M", "birth_date": "2017-05-01", "ethnicity": "WBRI"}},
        {"specversion": "1.0", "id": "c-1", "type": "contact.recorded", "subject": moved, "time": "2024-09-01T10:00:00Z",
         "data": {"contact_id": "C3", "source": "6", "summary": "Police attended in Islington"}},
        {"specversion": "1.0", "id": "c-2", "type": "child.transferred", "subject": moved, "time": "2024-12-01T10:00:00Z",
         "data": {"council": "E09000014"}},
    ]);
    let r = gateway.post(tokens::ADMIN, &more).await;
    assert_eq!(r.status, 201, "{}", r.text);
    projector.wait_for(r.last_stream_sequence()).await;

    let (header, rows) = list(1).await;
    assert_eq!(header[..5], ["Child Unique ID", "Gender", "Ethnicity", "Date of Birth", "Age"]);
    let contact_only = ["HAR002", "b) Female", "a) WBRI", "01/03/2019", "5", "05/11/2024", "e) 2A: Schools"];
    let contact_only: Vec<String> = contact_only.iter().map(|s| (*s).to_owned()).collect();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(rows.contains(&row(&["01/10/2024", "q) 6: Police"])), "{rows:?}");
    assert!(rows.contains(&contact_only), "{rows:?}");
    let (header, rows) = list(3).await;
    assert_eq!(header[8], "Number of Referrals in Last 12 Months");
    // The NFA referral of June is outside the six months but counts among the last twelve.
    assert_eq!(rows, vec![row(&["01/10/2024", "q) 6: Police", "b) No", "1", "T-NORTH", &worker])]);
    let (_, rows) = list(4).await;
    assert_eq!(rows, vec![row(&["a) Yes", "02/10/2024", "a) Yes", "20/11/2024", "a) Yes", "T-NORTH", &worker])]);
    let (_, rows) = list(5).await;
    assert_eq!(
        rows,
        vec![row(&["a) Yes", "03/10/2024", "b) No", "17/10/2024", "a) Yes", "0", "0", "T-NORTH", &worker])]
    );
    let (_, rows) = list(6).await;
    assert_eq!(
        rows,
        vec![row(&[
            "a) Yes",
            "01/10/2024",
            "N1 - Abuse or neglect",
            "20/01/2025",
            "",
            "",
            "b) Child Protection plan",
            "T-NORTH",
            &worker
        ])]
    );
    let (header, rows) = list(7).await;
    assert_eq!(header.len(), 17);
    assert_eq!(
        rows,
        vec![row(&[
            "a) Yes",
            "17/10/2024",
            "b) Physical abuse",
            "e) Multiple/not recommended",
            "06/01/2025",
            "b) No",
            "15/01/2025",
            "",
            "a) Yes",
            "0",
            "T-NORTH",
            &worker,
        ])]
    );
    let bad = query.get(tokens::HARINGEY, "/v1/returns/annex-a?council=E09000014&date=2025-02-01&list=2").await;
    assert_eq!(bad.status, 422);
    assert!(bad.text.contains("list"), "{}", bad.text);

    // The command writes all six lists.
    let dir = tempfile::tempdir().expect("dir");
    let run = tokio::process::Command::new(tests::safeguard_binary())
        .args(["return", "annex-a", "--council", "E09000014", "--date", "2025-02-01", "--out"])
        .arg(dir.path())
        .env("SAFEGUARD_QUERY_URL", query.url(""))
        .env("SAFEGUARD_TOKEN", tokens::HARINGEY)
        .output()
        .await
        .expect("run safeguard return");
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    for n in [1, 3, 4, 5, 6, 7] {
        let text = std::fs::read_to_string(dir.path().join(format!("list{n}.csv"))).expect("a list");
        assert!(text.contains("HAR001"), "list {n}: {text}");
    }
}
