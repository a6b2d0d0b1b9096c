//! The query role end to end: events in through the gateway, applied by the
//! projector, read back through the API with scoping, formats and the
//! access log; and change notifications to NATS subscribers and SSE clients.

use futures::StreamExt as _;
use serde_json::{Value, json};
use std::time::Duration;
use tests::fixtures::{event, registered};
use tests::gateway::tokens;
use tests::query::access_events;
use tests::query::next_sse_event;
use tests::system::System;

const HARINGEY: &str = "E09000014";
const ISLINGTON: &str = "E09000019";

#[tokio::test]
async fn chronology_in_three_formats_scoped_and_logged_before_answering() {
    let sys = System::start().await;
    let child = uuid::Uuid::new_v4().to_string();
    let other = uuid::Uuid::new_v4().to_string();
    sys.publish(
        tokens::ADMIN,
        vec![
            registered("reg-1", &child, HARINGEY),
            registered("reg-2", &other, ISLINGTON),
            // Recorded out of business order on purpose: the visit happened after the referral.
            event("v-1", "child.seen", &child, "2024-03-05T15:00:00Z", json!({"seen_by": "W1", "seen_alone": true, "context": "statutory_visit"})),
            event("ref-1", "referral.received", &child, "2024-02-01T09:00:00Z", json!({"referral_id": "R1", "source": "6", "nfa": false, "primary_need": "N1"})),
            event("c-1", "contact.recorded", &child, "2024-01-31T09:00:00Z", json!({"contact_id": "C1", "source": "6", "summary": "Police attended a domestic incident", "outcome": "referral"})),
        ],
    )
    .await;

    let path = format!("/v1/children/{child}/chronology");
    let headers = [("x-acting-user", "j.smith"), ("x-purpose", "visit preparation")];
    let json = sys.query.get_with(Some(tokens::HARINGEY), &path, &headers).await;
    assert_eq!(json.status, 200, "{}", json.text);
    let types: Vec<&str> =
        json.json["entries"].as_array().expect("entries").iter().map(|e| e["type"].as_str().unwrap_or("")).collect();
    assert_eq!(types, ["child.registered", "contact.recorded", "referral.received", "child.seen"]);
    let referral = &json.json["entries"][2];
    assert_eq!(referral["summary"], "Referral R1 from police (6): primary need N1, abuse or neglect");
    assert_eq!(referral["status"], "current");
    assert!(referral["recorded_at"].as_str().is_some() && referral["occurred_at"] == "2024-02-01T09:00:00Z");
    // Free text never reaches the chronology's summaries (written from
    // codes, and stored); it is the narrative, opened for the reader (issue 18).
    let entries = json.json["entries"].as_array().expect("entries");
    assert!(entries.iter().all(|e| !e["summary"].as_str().unwrap_or("").contains("domestic incident")));
    assert_eq!(entries[1]["narrative"]["text"][0]["text"], "Police attended a domestic incident");

    let csv = sys.query.get(tokens::HARINGEY, &format!("{path}?format=csv")).await;
    assert_eq!(csv.status, 200);
    assert!(csv.content_type.starts_with("text/csv"));
    let mut lines = csv.text.lines();
    assert_eq!(
        lines.next(),
        Some(
            "serial,date,event,source_reference,agency,reference,narrative,significance,outcome,links,type,\
             occurred_at,recorded_at,status,corrected_by,retracted_by"
        )
    );
    assert!(lines.nth(2).expect("third row").starts_with("3,2024-02-01,\"Referral R1 from police (6)"));

    let md = sys.query.get(tokens::HARINGEY, &format!("{path}?format=md")).await;
    assert_eq!(md.status, 200);
    assert!(md.text.contains("| serial | date | event | source_reference |"));
    assert!(md.text.contains("| 4 | 2024-03-05 |"));

    // Pages follow each other, and serial numbers run on.
    let first = sys.query.get(tokens::HARINGEY, &format!("{path}?limit=3")).await;
    let next = first.json["next"].as_str().expect("a next page");
    let second = sys.query.get(tokens::HARINGEY, &format!("{path}?limit=3&after={next}&format=csv")).await;
    assert!(second.text.lines().nth(1).expect("row").starts_with("4,2024-03-05,"), "{}", second.text);

    // Refusals: another council's child, a dashboard, no token; unknown child; bad parameters.
    let islington = sys.query.get(tokens::HARINGEY, &format!("/v1/children/{other}/chronology")).await;
    assert_eq!(islington.status, 403);
    assert_eq!(sys.query.get(tokens::DASHBOARD, &path).await.status, 403);
    assert_eq!(sys.query.get_with(None, &path, &[]).await.status, 401);
    let unknown = sys.query.get(tokens::HARINGEY, &format!("/v1/children/{}/chronology", uuid::Uuid::new_v4())).await;
    assert_eq!(unknown.status, 404);
    let bad = sys.query.get(tokens::HARINGEY, &format!("{path}?as_of=yesterday&limit=0&format=pdf")).await;
    assert_eq!(bad.status, 422);
    assert_eq!(bad.content_type, "application/problem+json");
    let named: Vec<&str> =
        bad.json["errors"].as_array().expect("errors").iter().map(|e| e["parameter"].as_str().unwrap_or("")).collect();
    assert_eq!(named, ["as_of", "limit", "format"]);

    // Every child-level read and refusal was stored before it was answered.
    let log = access_events(&sys.nats.url()).await;
    let about = |c: &str| log.iter().filter(|e| e["child"] == c).cloned().collect::<Vec<_>>();
    let mine = about(&child);
    assert_eq!(mine.iter().filter(|e| e["outcome"] == "allowed").count(), 5, "{mine:?}");
    assert_eq!(mine.iter().filter(|e| e["outcome"] == "refused").count(), 1, "the dashboard's refusal");
    assert_eq!(mine[0]["principal"], "haringey-csc");
    assert_eq!(mine[0]["acting_user"], "j.smith");
    // The purpose is sealed under the child's key on the stream (issue 17 item 10).
    assert_eq!(mine[0]["purpose"]["enc"], "xchacha20poly1305", "{:?}", mine[0]);
    assert!(!serde_json::to_string(&log).unwrap_or_default().contains("visit preparation"));
    assert_eq!(mine[0]["endpoint"], "GET /v1/children/{child}/chronology");
    let theirs = about(&other);
    assert_eq!(theirs.len(), 1);
    assert_eq!(theirs[0]["outcome"], "refused");

    // Lookup by the council's own id, logged too.
    let found = sys
        .query
        .post(
            tokens::HARINGEY,
            "/v1/children/lookup",
            &json!({"council": HARINGEY, "la_child_id": format!("L{}", &child[..8])}),
        )
        .await;
    assert_eq!(found.status, 200, "{}", found.text);
    assert_eq!(found.json["children"], json!([{"child": child, "council": HARINGEY}]));
    let outside = sys
        .query
        .post(tokens::HARINGEY, "/v1/children/lookup", &json!({"council": ISLINGTON, "la_child_id": "X"}))
        .await;
    assert_eq!(outside.status, 403);
    let log = access_events(&sys.nats.url()).await;
    assert!(log.iter().any(|e| e["child"] == child && e["endpoint"] == "POST /v1/children/lookup"));
}

#[tokio::test]
async fn caseloads_and_indicators_answer_from_the_read_models() {
    let sys = System::start().await;
    let worker = uuid::Uuid::new_v4().to_string();
    let child = uuid::Uuid::new_v4().to_string();
    sys.publish(
        tokens::ADMIN,
        vec![
            event("cfg", "council.configured", HARINGEY, "2024-01-01T00:00:00Z", json!({"effective_from": "2024-01-01", "population_0_17": 20000, "caseload_threshold": 15, "visit_interval_days": 14, "funded_social_worker_fte": 4})),
            event("w", "worker.joined", &worker, "2024-01-01T09:00:00Z", json!({"council": HARINGEY, "team_id": "north", "role": "social_worker", "fte": 1.0, "agency_staff": false})),
            registered("reg", &child, HARINGEY),
            event("ref", "referral.received", &child, "2024-12-02T10:00:00Z", json!({"referral_id": "R1", "source": "6", "nfa": false})),
            event("alloc", "case.allocated", &child, "2024-12-02T11:00:00Z", json!({"worker_id": worker, "team_id": "north"})),
            event("s47", "s47.started", &child, "2024-12-16T10:00:00Z", json!({"s47_id": "S1", "referral_id": "R1"})),
            event("icpc", "conference.held", &child, "2025-01-09T10:00:00Z", json!({"conference_id": "C1", "kind": "initial", "s47_id": "S1", "outcome": "plan"})),
            event("plan", "cp_plan.started", &child, "2025-01-09T11:00:00Z", json!({"plan_id": "P1", "conference_id": "C1", "category": "NEG"})),
            event("seen", "child.seen", &child, "2025-01-20T11:00:00Z", json!({"seen_by": worker, "seen_alone": true, "context": "statutory_visit"})),
        ],
    )
    .await;

    let mine = sys.query.get(tokens::HARINGEY, &format!("/v1/workers/{worker}/caseload")).await;
    assert_eq!(mine.status, 200, "{}", mine.text);
    let case = &mine.json["cases"][0];
    assert_eq!(case["child"], child);
    assert_eq!(case["on_plan"], true);
    assert_eq!(case["last_seen"], "2025-01-20T11:00:00Z");
    assert_eq!(case["last_seen_alone"], "2025-01-20T11:00:00Z");
    // Today is long after the last visit (14 days) and the first review (9 April 2025).
    assert_eq!(case["visit_overdue"], true);
    assert_eq!(case["review_overdue"], true);
    assert_eq!(sys.query.get(tokens::DASHBOARD, &format!("/v1/workers/{worker}/caseload")).await.status, 403);

    let council = sys.query.get(tokens::DASHBOARD, &format!("/v1/caseloads?council={HARINGEY}")).await;
    assert_eq!(council.status, 200, "{}", council.text);
    assert_eq!(council.json["workers"][0]["worker"], worker);
    assert_eq!(council.json["workers"][0]["open_cases"], 1);
    assert_eq!(council.json["workers"][0]["over_threshold"], false);
    assert_eq!(council.json["teams"], json!([{"team": "north", "open_cases": 1, "workers": 1}]));

    let ind = sys.query.get(tokens::DASHBOARD, &format!("/v1/indicators?council={HARINGEY}&period=2024-25")).await;
    assert_eq!(ind.status, 200, "{}", ind.text);
    assert_eq!(ind.json["period"], "2024-25");
    let by_name = |name: &str| {
        ind.json["indicators"].as_array().expect("list").iter().find(|i| i["name"] == name).cloned().expect(name)
    };
    let referrals = by_name("referrals");
    assert_eq!(
        (referrals["numerator"].clone(), referrals["denominator"].clone(), referrals["value"].clone()),
        (json!(1), json!(20000), json!(0.5))
    );
    let icpc = by_name("icpc_within_15_working_days");
    assert_eq!(icpc["value"], json!(1));
    assert_eq!(icpc["detail"]["bands"]["11-15"], 1);
    assert_eq!(by_name("plans_open_at_period_end")["numerator"], 1);
    let vacancy = by_name("vacancy_rate");
    assert_eq!((vacancy["numerator"].clone(), vacancy["value"].clone()), (json!(3), json!(0.75)));
    // Each indicator carries the published figures it is read against, with their source and year.
    assert_eq!(
        referrals["comparators"][0],
        json!({"kind": "england", "area": "England", "year": "2024-25", "value": 525.0,
               "source": "DfE, Characteristics of children in need 2025: 632,830 referrals"})
    );
    assert_eq!(by_name("children_in_need_at_period_end")["unit"], "per_10000");
    assert_eq!(by_name("assessment_duration_median")["unit"], "working_days");
    let bad = sys.query.get(tokens::DASHBOARD, &format!("/v1/indicators?council={HARINGEY}&period=2024")).await;
    assert_eq!(bad.status, 422);
    assert_eq!(bad.json["errors"][0]["parameter"], "period");
    assert_eq!(sys.query.get(tokens::ISLINGTON, &format!("/v1/indicators?council={HARINGEY}")).await.status, 403);
}

fn referrals_numerator(doc: &Value) -> Value {
    doc["indicators"].as_array().expect("list").iter().find(|i| i["name"] == "referrals").expect("referrals")["numerator"].clone()
}

#[tokio::test]
async fn indicator_changes_reach_nats_subscribers_and_sse_clients() {
    let sys = System::start().await;
    let child = uuid::Uuid::new_v4().to_string();
    sys.publish(tokens::ADMIN, vec![registered("reg", &child, HARINGEY)]).await;

    let now = chrono::Utc::now();
    let period = casework::indicators::Period::containing(events::calendar::business_date(&now)).label();
    let client = async_nats::connect(sys.nats.url()).await.expect("connect");
    let mut indicators =
        client.subscribe(format!("sg.changes.indicators.{HARINGEY}.{period}")).await.expect("subscribe");
    let mut caseloads = client.subscribe(format!("sg.changes.caseload.{HARINGEY}.>")).await.expect("subscribe");
    client.flush().await.expect("flush");

    let sse = reqwest::Client::new()
        .get(sys.query.url(&format!("/v1/indicators/stream?council={HARINGEY}")))
        .bearer_auth(tokens::DASHBOARD)
        .send()
        .await
        .expect("the stream opens");
    assert_eq!(sse.status(), 200);
    assert!(sse.headers()["content-type"].to_str().unwrap_or("").starts_with("text/event-stream"));
    let mut body = sse;
    let mut buffer = String::new();
    let first = next_sse_event(&mut body, &mut buffer).await;
    assert_eq!(first["period"], period);
    assert_eq!(referrals_numerator(&first), 0);

    let worker = uuid::Uuid::new_v4().to_string();
    let time = (now - chrono::Duration::minutes(5)).to_rfc3339();
    sys.publish(tokens::ADMIN, vec![event("w", "worker.joined", &worker, &time, json!({"council": HARINGEY, "team_id": "south", "role": "social_worker", "fte": 1.0, "agency_staff": false}))]).await;
    sys.publish(
        tokens::HARINGEY,
        vec![
            event(
                "ref",
                "referral.received",
                &child,
                &time,
                json!({"referral_id": "R1", "source": "2A", "nfa": false}),
            ),
            event("alloc", "case.allocated", &child, &time, json!({"worker_id": worker, "team_id": "south"})),
        ],
    )
    .await;

    // A plain NATS subscriber sees the change...
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let m = tokio::time::timeout_at(deadline, indicators.next())
            .await
            .expect("an indicators change in time")
            .expect("message");
        let doc: Value = serde_json::from_slice(&m.payload).expect("JSON");
        if referrals_numerator(&doc) == 1 {
            break;
        }
    }
    let team = loop {
        let m = tokio::time::timeout_at(deadline, caseloads.next())
            .await
            .expect("a caseload change in time")
            .expect("message");
        let doc: Value = serde_json::from_slice(&m.payload).expect("JSON");
        if doc["open_cases"] == 1 {
            break doc;
        }
    };
    assert_eq!(team["team"], "south");
    assert_eq!(team["workers"][0]["worker"], worker);
    // ...and so does the SSE client.
    loop {
        let doc = next_sse_event(&mut body, &mut buffer).await;
        if referrals_numerator(&doc) == 1 {
            break;
        }
    }
}

#[tokio::test]
async fn lookup_by_nhs_number_finds_children_in_scope_without_storing_the_number() {
    let sys = System::start().await;
    let child = uuid::Uuid::new_v4().to_string();
    let other = uuid::Uuid::new_v4().to_string();
    let mut mine = registered("reg-1", &child, HARINGEY);
    mine["data"]["person"] = json!({"given_name": "Adaleigh", "family_name": "Example", "nhs_number": "9434765919"});
    let mut theirs = registered("reg-2", &other, ISLINGTON);
    theirs["data"]["person"] = json!({"nhs_number": "9434765870"});
    sys.publish(tokens::ADMIN, vec![mine, theirs]).await;
    // The number changes later; the old one still finds the child.
    sys.publish(
        tokens::HARINGEY,
        vec![event(
            "upd",
            "child.details_updated",
            &child,
            "2024-05-01T10:00:00Z",
            json!({"person": {"nhs_number": "9434765927"}}),
        )],
    )
    .await;

    let find = |n: &str| {
        let body = json!({"nhs_number": n});
        let query = &sys.query;
        async move { query.post(tokens::HARINGEY, "/v1/children/lookup", &body).await }
    };
    for number in ["9434765919", "9434765927", "943 476 5919"] {
        let found = find(number).await;
        assert_eq!(found.status, 200, "{number}: {}", found.text);
        assert_eq!(found.json["children"], json!([{"child": child, "council": HARINGEY}]), "{number}");
    }
    // Another council's child is not revealed; an unknown number finds nobody; a bad one is named.
    assert_eq!(find("9434765870").await.json["children"], json!([]));
    let admin = sys.query.post(tokens::ADMIN, "/v1/children/lookup", &json!({"nhs_number": "9434765870"})).await;
    assert_eq!(admin.json["children"], json!([{"child": other, "council": ISLINGTON}]));
    let bad = find("9434765918").await;
    assert_eq!(bad.status, 422);
    assert_eq!(bad.json["errors"][0]["parameter"], "nhs_number");
    assert!(!bad.text.contains("9434765918"), "errors never repeat the value");

    // No table holds the number, or the name, in clear.
    let pool = sys.pool.clone();
    let tables: Vec<String> =
        sqlx::query_scalar("select table_name::text from information_schema.tables where table_schema = 'projection'")
            .fetch_all(&pool)
            .await
            .expect("tables");
    for table in tables {
        let text: String = sqlx::query_scalar(&format!("select coalesce(string_agg(t::text, ' '), '') from {table} t"))
            .fetch_one(&pool)
            .await
            .expect("dump");
        for secret in ["9434765919", "9434765927", "Adaleigh"] {
            assert!(!text.contains(secret), "{table} holds {secret} in clear");
        }
    }
}

#[tokio::test]
async fn a_read_that_cannot_be_logged_is_not_answered() {
    let mut sys = System::start().await;
    let child = uuid::Uuid::new_v4().to_string();
    sys.publish(tokens::ADMIN, vec![registered("reg", &child, HARINGEY)]).await;
    let path = format!("/v1/children/{child}/chronology");
    assert_eq!(sys.query.get(tokens::HARINGEY, &path).await.status, 200);

    // Operations endpoints answer without a token and describe the role.
    assert_eq!(sys.query.get_with(None, "/healthz", &[]).await.status, 200);
    assert_eq!(sys.query.get_with(None, "/readyz", &[]).await.status, 200);
    let metrics = sys.query.get_with(None, "/metrics", &[]).await;
    assert!(
        metrics.text.contains("safeguard_query_requests_total{endpoint=\"chronology\",status=\"200\"} 1"),
        "{}",
        metrics.text
    );
    let openapi = sys.query.get_with(None, "/openapi.json", &[]).await;
    for path in ["/v1/children/{child}/chronology", "/v1/children/lookup", "/v1/caseloads", "/v1/indicators/stream"] {
        assert!(openapi.json["paths"].get(path).is_some(), "{path} missing from the OpenAPI document");
    }

    // With NATS gone the access event cannot be stored: 503, and no chronology in the body.
    sys.nats.stop();
    let refused = sys.query.get(tokens::HARINGEY, &path).await;
    assert_eq!(refused.status, 503, "{}", refused.text);
    assert_eq!(refused.content_type, "application/problem+json");
    assert!(!refused.text.contains("child.registered"));
    assert_eq!(sys.query.get_with(None, "/readyz", &[]).await.status, 503);
    let metrics = sys.query.get_with(None, "/metrics", &[]).await;
    assert!(metrics.text.contains("safeguard_query_access_log_failures_total 1"), "{}", metrics.text);
}

// Multi-threaded: the command runs as a blocking child process while this
// runtime serves it the query role.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chronology_command_reads_through_the_api_as_it_stood() {
    let sys = System::start().await;
    let child = uuid::Uuid::new_v4().to_string();
    let referral = sys
        .publish(
            tokens::HARINGEY,
            vec![
                registered("reg", &child, HARINGEY),
                event(
                    "ref",
                    "referral.received",
                    &child,
                    "2024-02-01T09:00:00Z",
                    json!({"referral_id": "R1", "source": "6", "nfa": false}),
                ),
            ],
        )
        .await;
    // As the record stood when the referral was recorded: the correction is recorded after it.
    let between = referral.last().and_then(|r| r["recorded_at"].as_str()).expect("recorded_at").to_owned();
    sys.publish(
        tokens::HARINGEY,
        vec![event("fix", "record.corrected", &child, "2024-02-02T09:00:00Z", json!({"corrects": "ref", "reason": "source was a school", "data": {"referral_id": "R1", "source": "2A", "nfa": false}}))],
    )
    .await;

    let run = |as_of: Option<String>, format: &str| {
        let mut args = vec!["chronology".to_owned(), "--child".into(), child.clone(), "--format".into(), format.into()];
        if let Some(t) = as_of {
            args.extend(["--as-of".to_owned(), t]);
        }
        let output = std::process::Command::new(tests::safeguard_binary())
            .args(&args)
            .args(["--purpose", "case review", "--acting-user", "reviewer.one"])
            .env("SAFEGUARD_QUERY_URL", sys.query.url(""))
            .env("SAFEGUARD_TOKEN", tokens::HARINGEY)
            .output()
            .expect("run safeguard chronology");
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    // Before the correction was recorded, the referral stood uncorrected and the correction did not exist.
    let then = run(Some(between), "md");
    assert!(then.contains("| 2 | 2024-02-01 | Referral R1 from police (6)"), "{then}");
    assert!(!then.contains("[corrected") && !then.contains("record.corrected"), "{then}");
    let now = run(None, "md");
    // The corrected entry says what it now says, and which entry corrected it (issue 18).
    assert!(
        now.contains("[corrected by E3: Referral R1 from schools (2A)]") && now.contains("record.corrected"),
        "{now}"
    );
    let csv = run(None, "csv");
    assert!(csv.starts_with("serial,date,event,source_reference"), "{csv}");

    let log = access_events(&sys.nats.url()).await;
    assert!(
        log.iter()
            .any(|e| e["child"] == child && e["acting_user"] == "reviewer.one" && e["purpose"]["enc"].is_string())
    );
}

#[tokio::test]
async fn no_visit_or_review_falls_due_for_a_child_who_has_died() {
    let sys = System::start().await;
    let worker = uuid::Uuid::new_v4().to_string();
    let child = uuid::Uuid::new_v4().to_string();
    let history = |died: bool| {
        let mut events = vec![
            event(
                "cfg",
                "council.configured",
                HARINGEY,
                "2024-01-01T00:00:00Z",
                json!({"effective_from": "2024-01-01", "population_0_17": 20000, "caseload_threshold": 15, "visit_interval_days": 14, "funded_social_worker_fte": 4}),
            ),
            event(
                "w",
                "worker.joined",
                &worker,
                "2024-01-01T09:00:00Z",
                json!({"council": HARINGEY, "team_id": "north", "role": "social_worker", "fte": 1.0, "agency_staff": false}),
            ),
            registered("reg", &child, HARINGEY),
            event(
                "ref",
                "referral.received",
                &child,
                "2024-12-02T10:00:00Z",
                json!({"referral_id": "R1", "source": "6", "nfa": false}),
            ),
            event(
                "alloc",
                "case.allocated",
                &child,
                "2024-12-02T11:00:00Z",
                json!({"worker_id": worker, "team_id": "north"}),
            ),
            event(
                "icpc",
                "conference.held",
                &child,
                "2025-01-09T10:00:00Z",
                json!({"conference_id": "C1", "kind": "initial", "outcome": "plan"}),
            ),
            event(
                "plan",
                "cp_plan.started",
                &child,
                "2025-01-09T11:00:00Z",
                json!({"plan_id": "P1", "conference_id": "C1", "category": "NEG"}),
            ),
        ];
        if died {
            events.push(event("died", "child.died", &child, "2025-01-15T10:00:00Z", json!({"date": "2025-01-15"})));
        }
        events
    };
    sys.publish(tokens::ADMIN, history(false)[..2].to_vec()).await;
    sys.publish(tokens::HARINGEY, history(true)[2..].to_vec()).await;
    let mine = sys.query.get(tokens::HARINGEY, &format!("/v1/workers/{worker}/caseload")).await;
    assert_eq!(mine.status, 200, "{}", mine.text);
    let case = &mine.json["cases"][0];
    assert_eq!((case["visit_overdue"].clone(), case["review_overdue"].clone()), (json!(false), json!(false)), "{case}");
}

#[tokio::test]
async fn a_plan_started_today_is_not_overdue_for_a_visit_made_years_before_it() {
    let sys = System::start().await;
    let worker = uuid::Uuid::new_v4().to_string();
    let child = uuid::Uuid::new_v4().to_string();
    let today = (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    council_with_worker(&sys, &worker, json!({"visit_interval_days": 14})).await;
    sys.publish(
        tokens::HARINGEY,
        vec![
            registered("reg", &child, HARINGEY),
            event(
                "ref",
                "referral.received",
                &child,
                "2022-01-05T10:00:00Z",
                json!({"referral_id": "R1", "source": "6", "nfa": false}),
            ),
            event(
                "alloc",
                "case.allocated",
                &child,
                "2022-01-05T11:00:00Z",
                json!({"worker_id": worker, "team_id": "north"}),
            ),
            event(
                "seen",
                "child.seen",
                &child,
                "2022-01-10T11:00:00Z",
                json!({"seen_by": worker, "seen_alone": true, "context": "statutory_visit"}),
            ),
            event(
                "icpc",
                "conference.held",
                &child,
                &today,
                json!({"conference_id": "C1", "kind": "initial", "outcome": "plan"}),
            ),
            event(
                "plan",
                "cp_plan.started",
                &child,
                &today,
                json!({"plan_id": "P1", "conference_id": "C1", "category": "NEG"}),
            ),
        ],
    )
    .await;
    let mine = sys.query.get(tokens::HARINGEY, &format!("/v1/workers/{worker}/caseload")).await;
    assert_eq!(mine.status, 200, "{}", mine.text);
    let case = &mine.json["cases"][0];
    assert_eq!((case["on_plan"].clone(), case["visit_overdue"].clone()), (json!(true), json!(false)), "{case}");
}

#[tokio::test]
async fn a_child_in_need_is_visited_on_the_councils_cin_interval_not_the_child_protection_one() {
    let sys = System::start().await;
    let worker = uuid::Uuid::new_v4().to_string();
    let (cin, cp) = (uuid::Uuid::new_v4().to_string(), uuid::Uuid::new_v4().to_string());
    // Both children were last visited 20 days ago: late for a plan seen every
    // 14 days, in time for one seen every 28.
    let ago = |days: i64| {
        (chrono::Utc::now() - chrono::Duration::days(days)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    };
    council_with_worker(&sys, &worker, json!({"visit_interval_days": 14, "cin_visit_interval_days": 28})).await;
    let mut events = Vec::new();
    for child in [&cin, &cp] {
        events.extend([
            registered(&format!("reg-{child}"), child, HARINGEY),
            event(
                &format!("ref-{child}"),
                "referral.received",
                child,
                &ago(60),
                json!({"referral_id": "R1", "source": "6", "nfa": false}),
            ),
            event(
                &format!("alloc-{child}"),
                "case.allocated",
                child,
                &ago(59),
                json!({"worker_id": worker, "team_id": "north"}),
            ),
        ]);
    }
    events.push(event("cin-plan", "cin_plan.started", &cin, &ago(40), json!({"plan_id": "CIN1", "referral_id": "R1"})));
    events.push(event(
        "icpc",
        "conference.held",
        &cp,
        &ago(40),
        json!({"conference_id": "C1", "kind": "initial", "outcome": "plan"}),
    ));
    events.push(event(
        "cp-plan",
        "cp_plan.started",
        &cp,
        &ago(40),
        json!({"plan_id": "P1", "conference_id": "C1", "category": "NEG"}),
    ));
    for child in [&cin, &cp] {
        events.push(event(
            &format!("seen-{child}"),
            "child.seen",
            child,
            &ago(20),
            json!({"seen_by": worker, "seen_alone": true, "context": "statutory_visit"}),
        ));
    }
    sys.publish(tokens::HARINGEY, events).await;
    let mine = sys.query.get(tokens::HARINGEY, &format!("/v1/workers/{worker}/caseload")).await;
    assert_eq!(mine.status, 200, "{}", mine.text);
    let overdue = |child: &str| {
        mine.json["cases"].as_array().expect("cases").iter().find(|c| c["child"] == child).expect("the case")["visit_overdue"]
            .clone()
    };
    assert_eq!((overdue(&cin), overdue(&cp)), (json!(false), json!(true)));
    // An interval outside 1 to 365 days is refused by name.
    let bad = sys
        .gateway
        .post(
            tokens::ADMIN,
            &event(
                "cfg-bad",
                "council.configured",
                HARINGEY,
                "2020-01-02T00:00:00Z",
                json!({"effective_from": "2020-01-02", "cin_visit_interval_days": 0}),
            ),
        )
        .await;
    assert_eq!(bad.status, 422, "{}", bad.text);
    assert!(bad.text.contains("/data/cin_visit_interval_days"), "{}", bad.text);
}

/// Haringey configured since 2020 with `settings` (visit intervals), and
/// `worker` a social worker in its north team since then.
async fn council_with_worker(sys: &System, worker: &str, mut settings: Value) {
    settings["effective_from"] = json!("2020-01-01");
    let joined =
        json!({"council": HARINGEY, "team_id": "north", "role": "social_worker", "fte": 1.0, "agency_staff": false});
    sys.publish(
        tokens::ADMIN,
        vec![
            event("cfg", "council.configured", HARINGEY, "2020-01-01T00:00:00Z", settings),
            event("w", "worker.joined", worker, "2020-01-01T09:00:00Z", joined),
        ],
    )
    .await;
}
