//! Closing the loop (issue 20): what one agency records reaches the worker
//! who holds the child. Modelled on a multi-agency case: police and health
//! concerns about a child on a plan raise alerts for the allocated worker,
//! three concerns from two agencies make one pattern, an alert left
//! unacknowledged escalates after a working day (across a weekend and a
//! bank holiday), an acknowledgement (a signed child event) stops it; all
//! read through the public API with real credentials, pushed over NATS and
//! SSE, and read-your-writes with `min_position`.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;
use tests::fixtures::{event, registered};
use tests::gateway::tokens;
use tests::query::{Limits, access_events, next_sse_event};
use tests::system::System;

const HARINGEY: &str = "E09000014";

/// The query role's time of reading in the test that moves it: 0 is the real time.
static READ_AT: AtomicI64 = AtomicI64::new(0);

fn read_at() -> DateTime<Utc> {
    match READ_AT.load(Ordering::SeqCst) {
        0 => Utc::now(),
        micros => DateTime::from_timestamp_micros(micros).unwrap_or_else(Utc::now),
    }
}

fn set_read_at(at: Option<DateTime<Utc>>) {
    READ_AT.store(at.map_or(0, |t| t.timestamp_micros()), Ordering::SeqCst);
}

fn t(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text).expect("a time").to_utc()
}

fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// A child referred in April 2025, allocated to `worker` in team `north`,
/// on a child protection plan from 8 May 2025: every event the council's
/// own system publishes.
async fn child_on_a_plan(sys: &System, worker: &str) -> String {
    let child = new_id();
    let mut registration = registered("reg", &child, HARINGEY);
    registration["time"] = json!("2025-03-03T10:00:00Z");
    sys.publish(
        tokens::HARINGEY,
        vec![
            registration,
            event(
                "ref",
                "referral.received",
                &child,
                "2025-04-01T10:00:00+01:00",
                json!({"referral_id": "R1", "source": "6", "nfa": false}),
            ),
            event(
                "alloc",
                "case.allocated",
                &child,
                "2025-04-01T11:00:00+01:00",
                json!({"worker_id": worker, "team_id": "north"}),
            ),
            event(
                "plan",
                "cp_plan.started",
                &child,
                "2025-05-08T15:00:00+01:00",
                json!({"plan_id": "P1", "conference_id": "C1", "category": "NEG"}),
            ),
        ],
    )
    .await;
    child
}

fn concern(id: &str, child: &str, time: &str, summary: &str) -> Value {
    event(id, "concern.raised", child, time, json!({"concern_id": id, "summary": summary}))
}

fn alerts_of<'a>(answer: &'a Value, kind: &str) -> Vec<&'a Value> {
    answer["alerts"].as_array().expect("alerts").iter().filter(|a| a["kind"] == kind).collect()
}

fn position(results: &[Value]) -> u64 {
    results.last().and_then(|r| r["stream_sequence"].as_u64()).expect("a stream sequence")
}

#[tokio::test]
async fn agencies_concerns_reach_the_worker_escalate_unless_acknowledged_and_make_one_pattern() {
    let sys = System::start_limited(Limits { clock: read_at, ..Limits::default() }).await;
    let worker = new_id();
    let child = child_on_a_plan(&sys, &worker).await;
    let mine = format!("/v1/alerts?council={HARINGEY}&worker={worker}");

    // A police concern imported from a legacy system, recorded on Friday 23
    // May 2025: the next working day after it is Tuesday 27 May (Monday is
    // the spring bank holiday), and it escalates at that day's end.
    let mut legacy = concern("legacy-1", &child, "2025-05-23T10:00:00+01:00", "Domestic incident attended");
    legacy["recordedat"] = json!("2025-05-23T10:00:00+01:00");
    sys.publish(tokens::ADMIN, vec![legacy]).await;
    set_read_at(Some(t("2025-05-27T22:59:59Z")));
    let before = sys.query.get(tokens::HARINGEY, &mine).await;
    assert_eq!(before.status, 200, "{}", before.text);
    let imported = alerts_of(&before.json, "agency_concern");
    assert_eq!(imported.len(), 1, "{}", before.text);
    assert_eq!(imported[0]["raised_at"], "2025-05-23T09:00:00Z");
    assert_eq!(imported[0]["escalates_at"], "2025-05-27T23:00:00Z");
    assert_eq!(imported[0]["status"], "open", "not escalated over the weekend and the bank holiday");
    assert_eq!(imported[0]["worker"], worker.as_str());
    assert_eq!(imported[0]["team"], "north");
    set_read_at(Some(t("2025-05-27T23:00:00Z")));
    let after = sys.query.get(tokens::HARINGEY, &mine).await;
    assert_eq!(alerts_of(&after.json, "agency_concern")[0]["status"], "escalated");
    // The team manager sees it among the team's escalated alerts.
    let team =
        sys.query.get(tokens::HARINGEY, &format!("/v1/alerts?council={HARINGEY}&team=north&status=escalated")).await;
    assert!(alerts_of(&team.json, "agency_concern").iter().any(|a| a["id"] == imported[0]["id"]), "{}", team.text);
    set_read_at(None);

    // Now: police, health, police, within days; a sighting by police too.
    let now = Utc::now();
    let at = |minutes: i64| (now - chrono::Duration::minutes(minutes)).to_rfc3339();
    sys.publish(tokens::POLICE, vec![concern("p-1", &child, &at(50), "Call-out to the address")]).await;
    sys.publish(tokens::HEALTH, vec![concern("h-1", &child, &at(40), "Missed health appointments")]).await;
    let last = sys
        .publish(
            tokens::POLICE,
            vec![
                concern("p-2", &child, &at(30), "Second call-out"),
                event(
                    "p-seen",
                    "child.seen",
                    &child,
                    &at(20),
                    json!({"seen_by": "PC-1", "seen_alone": false, "context": "police"}),
                ),
            ],
        )
        .await;
    let open = sys.query.get(tokens::HARINGEY, &format!("{mine}&status=open&min_position={}", position(&last))).await;
    assert_eq!(open.status, 200, "{}", open.text);
    let concerns = alerts_of(&open.json, "agency_concern");
    assert_eq!(concerns.len(), 4, "three concerns and a police sighting: {}", open.text);
    assert!(concerns.iter().all(|a| a["worker"] == worker.as_str() && a["child"] == child.as_str()));
    let by: Vec<&str> = concerns.iter().filter_map(|a| a["raised_by"].as_str()).collect();
    assert_eq!(by.iter().filter(|p| **p == "met-police").count(), 3);
    assert_eq!(by.iter().filter(|p| **p == "whittington-health").count(), 1);
    let pattern = alerts_of(&open.json, "pattern");
    assert_eq!(pattern.len(), 1, "three from two agencies within 30 days, raised once: {}", open.text);
    assert_eq!(pattern[0]["raised_by"], "met-police", "raised by the third concern");
    // No personal data in an alert: the chronology has the words.
    assert!(!open.text.contains("call-out") && !open.text.contains("appointments"), "{}", open.text);

    // The worker acknowledges the first police concern: a signed child event.
    let first = concerns.iter().find(|a| a["event"]["sequence"] == 6).expect("p-1's alert");
    let id = first["id"].as_str().expect("an id").to_owned();
    let ack = |eid: &str| {
        event(
            eid,
            "alert.acknowledged",
            &child,
            &Utc::now().to_rfc3339(),
            json!({"alert_id": id, "note": "Spoke to the officer"}),
        )
    };
    let acked = sys.gateway.post(tokens::HARINGEY, &json!([ack("ack-1")])).await;
    assert_eq!(acked.status, 201, "{}", acked.text);
    let ack_position = acked.json["results"][0]["stream_sequence"].as_u64().expect("position");
    let read =
        sys.query.get(tokens::HARINGEY, &format!("{mine}&status=acknowledged&min_position={ack_position}")).await;
    let acknowledged = alerts_of(&read.json, "agency_concern");
    assert_eq!(acknowledged.len(), 1, "{}", read.text);
    assert_eq!(acknowledged[0]["id"], id.as_str());
    assert_eq!(acknowledged[0]["acknowledged_by"], "haringey-csc");
    let acknowledged_at = acknowledged[0]["acknowledged_at"].clone();
    // Twice is idempotent: the first acknowledgement stands.
    let again = sys.publish(tokens::HARINGEY, vec![ack("ack-2")]).await;
    let read =
        sys.query.get(tokens::HARINGEY, &format!("{mine}&status=acknowledged&min_position={}", position(&again))).await;
    assert_eq!(alerts_of(&read.json, "agency_concern").len(), 1);
    assert_eq!(alerts_of(&read.json, "agency_concern")[0]["acknowledged_at"], acknowledged_at);
    // Another council's publisher cannot acknowledge it.
    let foreign = sys.gateway.post(tokens::ISLINGTON, &json!([ack("ack-islington")])).await;
    assert_eq!(foreign.status, 403, "{}", foreign.text);
    // The acknowledgement is in the chronology: who knew what, and when.
    let chronology = sys.query.get(tokens::HARINGEY, &format!("/v1/children/{child}/chronology")).await;
    assert!(chronology.text.contains(&format!("Alert {id} acknowledged")), "{}", chronology.text);

    // A working day later, the rest have escalated; the acknowledged one has not.
    let escalates_at = t(first["escalates_at"].as_str().expect("escalates_at"));
    let raised_on = events::calendar::business_date(&t(first["raised_at"].as_str().expect("raised_at")));
    let calendar = events::calendar::Calendar::england_and_wales();
    let next_day = calendar.add_working_days(raised_on, 1) + chrono::Days::new(1);
    assert_eq!(escalates_at, events::calendar::start_of_day(next_day), "the end of the next working day");
    set_read_at(Some(escalates_at + chrono::Duration::minutes(1)));
    let later = sys.query.get(tokens::HARINGEY, &mine).await;
    set_read_at(None);
    let statuses: Vec<(&str, &str)> = alerts_of(&later.json, "agency_concern")
        .iter()
        .filter(|a| a["raised_at"].as_str() > Some("2026"))
        .map(|a| (a["id"].as_str().unwrap_or(""), a["status"].as_str().unwrap_or("")))
        .collect();
    assert_eq!(statuses.len(), 4);
    for (alert, status) in statuses {
        assert_eq!(status, if alert == id { "acknowledged" } else { "escalated" });
    }

    // Who may read them: the council's practitioners and admins, no one else.
    for (token, why) in [
        (tokens::DASHBOARD, "a dashboard sees no child"),
        (tokens::POLICE, "a publisher only"),
        (tokens::ISLINGTON, "another council's"),
        (tokens::REVIEWER, "a reviewer reads only the children of their reviews"),
    ] {
        let refused = sys.query.get(token, &mine).await;
        assert_eq!(refused.status, 403, "{why}: {}", refused.text);
    }
    assert_eq!(sys.query.get(tokens::ADMIN, &mine).await.status, 200);
    let log = access_events(&sys.nats.url()).await;
    let alert_reads: Vec<&Value> = log.iter().filter(|e| e["endpoint"] == "GET /v1/alerts").collect();
    assert!(
        alert_reads.iter().any(|e| e["child"] == child.as_str() && e["outcome"] == "allowed"),
        "every child listed is a logged read"
    );
    assert!(alert_reads.iter().any(|e| e["principal"] == "partnership-dashboard" && e["outcome"] == "refused"));
}

#[tokio::test]
async fn a_child_with_no_worker_goes_to_the_team_managers_and_new_alerts_are_pushed() {
    let sys = System::start().await;
    let child = new_id();
    let now = Utc::now();
    let at = |minutes: i64| (now - chrono::Duration::minutes(minutes)).to_rfc3339();
    sys.publish(
        tokens::HARINGEY,
        vec![
            registered("reg", &child, HARINGEY),
            event(
                "ref",
                "referral.received",
                &child,
                &at(60),
                json!({"referral_id": "R1", "source": "6", "nfa": false}),
            ),
        ],
    )
    .await;
    let nats = async_nats::connect(sys.nats.url()).await.expect("connect");
    let mut notices = nats.subscribe(format!("sg.changes.alerts.{HARINGEY}.>")).await.expect("subscribe");
    nats.flush().await.expect("flush");
    let url = sys.query.url(&format!("/v1/alerts/stream?council={HARINGEY}&unallocated=true&status=open"));
    let mut sse = reqwest::Client::new().get(url).bearer_auth(tokens::HARINGEY).send().await.expect("the stream opens");
    assert_eq!(sse.status(), 200);
    let mut buffer = String::new();
    let first = next_sse_event(&mut sse, &mut buffer).await;
    assert_eq!(first["alerts"], json!([]), "{first}");

    sys.publish(tokens::HEALTH, vec![concern("h-1", &child, &at(5), "Bruising seen at clinic")]).await;
    let pushed = loop {
        let doc = next_sse_event(&mut sse, &mut buffer).await;
        if !doc["alerts"].as_array().is_none_or(Vec::is_empty) {
            break doc;
        }
    };
    let alert = &pushed["alerts"][0];
    assert_eq!(alert["kind"], "unallocated", "{pushed}");
    assert_eq!(alert["worker"], Value::Null);
    assert_eq!(alert["raised_by"], "whittington-health");
    assert_eq!(alert["links"]["entry"], format!("/ui/children/{child}#E3"));

    // Dashboards hear counts, never a child.
    let (subject, notice) = notice_where(&mut notices, "a notice", |doc| doc["open"].as_i64() == Some(1)).await;
    assert_eq!(subject, format!("sg.changes.alerts.{HARINGEY}.~unallocated"));
    assert_eq!(notice["team"], Value::Null);
    assert!(!notice.to_string().contains(&child), "{notice}");
}

#[tokio::test]
async fn a_publish_then_a_read_with_its_position_always_sees_it() {
    let limits = Limits { read_wait: Duration::from_millis(300), ..Limits::default() };
    let sys = System::start_limited(limits).await;
    let child = new_id();
    sys.publish(tokens::HARINGEY, vec![registered("reg", &child, HARINGEY)]).await;
    // Load beside the rounds: another child's events, sent without waiting.
    let load = {
        let gateway = sys.gateway.url("/v1/events");
        tokio::spawn(async move {
            let http = reqwest::Client::new();
            let other = new_id();
            let _ = http
                .post(&gateway)
                .bearer_auth(tokens::HARINGEY)
                .json(&json!([registered("o-reg", &other, HARINGEY)]))
                .send()
                .await;
            for i in 0..400 {
                let seen = event(
                    &format!("o-{i}"),
                    "child.seen",
                    &other,
                    &Utc::now().to_rfc3339(),
                    json!({"seen_by": "W1", "seen_alone": true, "context": "statutory_visit"}),
                );
                let _ = http.post(&gateway).bearer_auth(tokens::HARINGEY).json(&json!([seen])).send().await;
            }
        })
    };
    for round in 0..40 {
        let id = format!("seen-{round}");
        let seen = event(
            &id,
            "child.seen",
            &child,
            &Utc::now().to_rfc3339(),
            json!({"seen_by": "W1", "seen_alone": true, "context": "statutory_visit"}),
        );
        let r = sys.gateway.post(tokens::HARINGEY, &json!([seen])).await;
        assert_eq!(r.status, 201, "{}", r.text);
        let at = r.json["results"][0]["stream_sequence"].as_u64().expect("position");
        // No waiting on the projector here: the read itself waits.
        let path = format!("/v1/children/{child}/chronology?min_position={at}");
        let read = loop {
            let read = sys.query.get(tokens::HARINGEY, &path).await;
            if read.status != 503 {
                break read;
            }
            // The wait is short in this test; under load a read may be told to retry.
            assert!(read.json["position"].as_u64().is_some_and(|p| p < at), "{}", read.text);
        };
        assert_eq!(read.status, 200, "{}", read.text);
        assert!(
            read.json["entries"].as_array().expect("entries").iter().any(|e| e["id"] == id.as_str()),
            "round {round}: {}",
            read.text
        );
        let header =
            read.headers.get("x-read-position").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
        assert!(header.is_some_and(|p| p >= at), "the answer says it holds {at}");
    }
    load.await.expect("the load ran");

    // The command a script runs after publishing waits the same way, and
    // says so when the read models are not there yet.
    let cli = |position: u64| {
        tokio::process::Command::new(tests::safeguard_binary())
            .args(["chronology", "--child", &child, "--format", "json", "--min-position", &position.to_string()])
            .env("SAFEGUARD_QUERY_URL", sys.query.url(""))
            .env("SAFEGUARD_TOKEN", tokens::HARINGEY)
            .output()
    };
    let seen = event(
        "seen-cli",
        "child.seen",
        &child,
        &Utc::now().to_rfc3339(),
        json!({"seen_by": "W1", "seen_alone": true, "context": "statutory_visit"}),
    );
    let r = sys.gateway.post(tokens::HARINGEY, &json!([seen])).await;
    let at = r.json["results"][0]["stream_sequence"].as_u64().expect("position");
    let output = cli(at).await.expect("run safeguard chronology");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(String::from_utf8_lossy(&output.stdout).contains("seen-cli"));
    let behind = cli(9_000_000).await.expect("run safeguard chronology");
    assert!(!behind.status.success());
    assert!(
        String::from_utf8_lossy(&behind.stderr).contains("min_position"),
        "{}",
        String::from_utf8_lossy(&behind.stderr)
    );

    // A position past the end of the stream is no 201's: refused at once
    // (409), not waited for and answered 503 as if the read models were
    // slow (Schemathesis found the 503).
    let started = std::time::Instant::now();
    let far = sys.query.get(tokens::HARINGEY, &format!("/v1/children/{child}/chronology?min_position=9000000")).await;
    assert_eq!(far.status, 409, "{}", far.text);
    assert_eq!(far.json["type"], "/problems/beyond-stream");
    assert!(started.elapsed() < std::time::Duration::from_secs(1), "answered without waiting");
}

#[tokio::test]
async fn every_bad_parameter_is_named() {
    let sys = System::start().await;
    for (query, parameter) in [
        ("status=bogus", "status"),
        ("limit=0", "limit"),
        ("limit=abc", "limit"),
        ("worker=not-a-uuid", "worker"),
        ("team=has%20space", "team"),
        ("unallocated=maybe", "unallocated"),
        ("worker=3a3b8f40-55d2-4c8e-9a51-2f7a0e0c1d11&team=north", "worker"),
    ] {
        let r = sys.query.get(tokens::HARINGEY, &format!("/v1/alerts?council={HARINGEY}&{query}")).await;
        assert_eq!(r.status, 422, "{query}: {}", r.text);
        assert_eq!(r.json["errors"][0]["parameter"], parameter, "{query}: {}", r.text);
    }
    let r = sys.query.get(tokens::HARINGEY, "/v1/alerts").await;
    assert_eq!((r.status, r.json["errors"][0]["parameter"].as_str()), (422, Some("council")));
    // A parameter given twice is named too, in problem+json (axum's own
    // extractor answered a bare 400 in plain text; Schemathesis found it).
    let r = sys.query.get(tokens::HARINGEY, &format!("/v1/alerts?council={HARINGEY}&council={HARINGEY}")).await;
    assert_eq!((r.status, r.json["errors"][0]["parameter"].as_str()), (422, Some("council")), "{}", r.text);
    assert_eq!(r.headers["content-type"], "application/problem+json");
    for bad in ["abc", "-1", "1.5", "9007199254740993", "1&min_position=2"] {
        let r = sys.query.get(tokens::HARINGEY, &format!("/v1/alerts?council={HARINGEY}&min_position={bad}")).await;
        assert_eq!(r.status, 422, "{bad}: {}", r.text);
        assert_eq!(r.json["errors"][0]["parameter"], "min_position");
    }
}

#[tokio::test]
async fn who_is_involved_and_the_pages_show_the_alerts_where_people_work() {
    let sys = System::start().await;
    let worker = new_id();
    let now = Utc::now();
    let at = |minutes: i64| (now - chrono::Duration::minutes(minutes)).to_rfc3339();
    sys.publish(
        tokens::ADMIN,
        vec![event("w", "worker.joined", &worker, &at(600), json!({"council": HARINGEY, "team_id": "north", "role": "social_worker", "fte": 1.0, "agency_staff": false, "person": {"given_name": "Jo", "family_name": "Smith"}}))],
    )
    .await;
    let child = child_on_a_plan(&sys, &worker).await;
    sys.publish(tokens::POLICE, vec![concern("p-1", &child, &at(50), "Call-out to the address")]).await;
    sys.publish(
        tokens::HEALTH,
        vec![
            concern("h-1", &child, &at(40), "Missed appointments"),
            event(
                "h-seen",
                "child.seen",
                &child,
                &at(30),
                json!({"seen_by": "HV-7", "seen_alone": false, "context": "health"}),
            ),
        ],
    )
    .await;
    sys.publish(
        tokens::HARINGEY,
        vec![event(
            "visit",
            "child.seen",
            &child,
            &at(20),
            json!({"seen_by": worker, "seen_alone": true, "context": "statutory_visit"}),
        )],
    )
    .await;

    // Who is involved: each agency as people name it, the holder, who has seen the child.
    let path = format!("/v1/children/{child}/involvement");
    let involved = sys.query.get(tokens::HARINGEY, &path).await;
    assert_eq!(involved.status, 200, "{}", involved.text);
    let agencies = involved.json["agencies"].as_array().expect("agencies");
    let names: Vec<&str> = agencies.iter().filter_map(|a| a["name"].as_str()).collect();
    assert_eq!(names, ["Haringey children's services", "Metropolitan Police", "Whittington Health"]);
    let health = &agencies[2];
    assert_eq!((health["kind"].as_str(), health["events"].as_u64()), (Some("health"), Some(2)));
    assert_eq!(health["counts"], json!({"child.seen": 1, "concern.raised": 1}));
    assert_eq!(agencies[0]["first"], "2025-03-03");
    assert_eq!(involved.json["allocated"]["worker"], worker.as_str());
    assert_eq!(involved.json["allocated"]["team"], "north");
    let seen: Vec<(&str, &str)> = involved.json["seen_by"]
        .as_array()
        .expect("seen_by")
        .iter()
        .map(|s| (s["id"].as_str().unwrap_or(""), s["agency"].as_str().unwrap_or("")))
        .collect();
    assert_eq!(seen, [("HV-7", "Whittington Health"), (worker.as_str(), "Haringey children's services")]);
    assert!(
        involved.json["seen_by"][1]["name"].as_str().is_some_and(|n| n.starts_with("Jo Smith")),
        "{}",
        involved.text
    );
    for token in [tokens::DASHBOARD, tokens::ISLINGTON, tokens::POLICE] {
        assert_eq!(sys.query.get(token, &path).await.status, 403);
    }
    let log = access_events(&sys.nats.url()).await;
    assert!(
        log.iter().any(|e| e["endpoint"] == "GET /v1/children/{child}/involvement" && e["child"] == child.as_str())
    );

    // The worker's page lists the alerts waiting, each linking to its entry.
    let session = tests::query::PageSession::sign_in(&sys.query.url(""), tokens::HARINGEY, "J. Smith").await;
    let page = session.get(&format!("/ui/workers/{worker}")).await.text().await.expect("page");
    // Two concerns and a health sighting, and the plan's first review
    // conference (due 8 August 2025, never held): warned and missed, both
    // escalated long since. The visits' clocks were met, late, today: closed.
    assert!(page.contains("Alerts waiting (5)"), "{page}");
    assert!(page.contains("Review conference missed"), "{page}");
    assert!(page.contains(&format!("/ui/children/{child}#E5")), "a link to the police concern's entry: {page}");
    assert!(page.contains("from Metropolitan Police"), "{page}");
    // The board counts them, naming no child.
    let board = session.get(&format!("/ui/caseloads?council={HARINGEY}")).await.text().await.expect("board");
    assert!(board.contains("Alerts waiting (escalated)"), "{board}");
    assert!(board.contains("5 (2)"), "{board}");
    // The child's page shows who is involved beside the timeline, and the entry the link opens.
    let child_page = session.get(&format!("/ui/children/{child}")).await.text().await.expect("child page");
    assert!(child_page.contains("Who is involved") && child_page.contains("Whittington Health"), "{child_page}");
    assert!(child_page.contains(r#"id="E5""#), "{child_page}");
}

/// Every notice on `subject` the change stream holds after `after`: what a
/// resumed subscriber must be given, read straight from the stream.
async fn notices_after(nats: &str, subject: &str, after: u64) -> Vec<(u64, Value)> {
    let js = async_nats::jetstream::new(async_nats::connect(nats).await.expect("connect"));
    let mut stream = js.get_stream(events::subjects::CHANGES_STREAM).await.expect("the change stream");
    let last = stream.info().await.expect("info").state.last_sequence;
    let mut out = Vec::new();
    for sequence in after + 1..=last {
        if let Ok(m) = stream.get_raw_message(sequence).await
            && m.subject.as_str() == subject
        {
            out.push((sequence, serde_json::from_slice(&m.payload).expect("JSON")));
        }
    }
    out
}

/// The next SSE event's id (which every event of these streams carries) and data.
async fn next_with_id(body: &mut reqwest::Response, buffer: &mut String) -> (u64, Value) {
    let (id, data) = tests::query::next_sse_event_with_id(body, buffer).await;
    (id.expect("an event id"), data)
}

#[tokio::test]
async fn an_interrupted_subscription_resumes_and_misses_no_notice() {
    let sys = System::start().await;
    let now = Utc::now();
    let period = casework::indicators::Period::containing(events::calendar::business_date(&now)).label();
    let subject = format!("sg.changes.indicators.{HARINGEY}.{period}");
    let url = sys.query.url(&format!("/v1/indicators/stream?council={HARINGEY}"));
    let open = |last: Option<u64>| {
        let mut request = reqwest::Client::new().get(url.clone()).bearer_auth(tokens::DASHBOARD);
        if let Some(id) = last {
            request = request.header("last-event-id", id.to_string());
        }
        request.send()
    };
    let mut first = open(None).await.expect("the stream opens");
    let mut buffer = String::new();
    let (seen, _) = next_with_id(&mut first, &mut buffer).await;
    drop(first);

    // While the dashboard is away: four children referred, each announced on its own.
    for i in 0..4 {
        let child = new_id();
        let time = (now - chrono::Duration::minutes(30 - i)).to_rfc3339();
        let referral = event(
            &format!("ref-{i}"),
            "referral.received",
            &child,
            &time,
            json!({"referral_id": "R1", "source": "6", "nfa": false}),
        );
        sys.publish(tokens::HARINGEY, vec![registered(&format!("reg-{i}"), &child, HARINGEY), referral]).await;
        // Each announced before the next is published: wait for its notice on the stream.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while notices_after(&sys.nats.url(), &subject, seen).await.len() <= usize::try_from(i).unwrap_or(0) {
            assert!(tokio::time::Instant::now() < deadline, "referral {i} was never announced");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let missed = notices_after(&sys.nats.url(), &subject, seen).await;
    assert!(missed.len() >= 2, "the changes were announced while it was away: {}", missed.len());

    // Back with Last-Event-ID: every notice it missed, in order, and nothing it had.
    let mut again = open(Some(seen)).await.expect("the stream opens again");
    let mut buffer = String::new();
    let mut resumed = Vec::new();
    while resumed.len() < missed.len() {
        resumed.push(next_with_id(&mut again, &mut buffer).await);
    }
    assert_eq!(resumed, missed);
    // And then the new ones.
    let child = new_id();
    let referral = event(
        "ref",
        "referral.received",
        &child,
        &now.to_rfc3339(),
        json!({"referral_id": "R1", "source": "6", "nfa": false}),
    );
    sys.publish(tokens::HARINGEY, vec![registered("reg-new", &child, HARINGEY), referral]).await;
    let (next, _) = next_with_id(&mut again, &mut buffer).await;
    assert!(next > resumed.last().map_or(seen, |(id, _)| *id));

    // An id the stream never gave (or long aged out) starts from the document.
    let mut fresh = open(Some(u64::MAX / 2)).await.expect("the stream opens");
    let mut buffer = String::new();
    let (_, doc) = next_with_id(&mut fresh, &mut buffer).await;
    assert_eq!(doc["council"], HARINGEY);
    let bad = reqwest::Client::new()
        .get(url.clone())
        .bearer_auth(tokens::DASHBOARD)
        .header("last-event-id", "yesterday")
        .send()
        .await
        .expect("answer");
    assert_eq!(bad.status(), 422);
}

/// An alert that goes away (its concern retracted by whoever recorded it)
/// is news to the team that held it, here the council's managers of
/// unallocated cases, who hold no other: the projector tells their
/// dashboards from what the child's rows held before, in this case from
/// the fold it kept in memory since the concern's batch.
#[tokio::test]
async fn a_retracted_concern_tells_the_team_that_held_its_alert() {
    let sys = System::start().await;
    let child = new_id();
    let at = |minutes: i64| (Utc::now() - chrono::Duration::minutes(minutes)).to_rfc3339();
    let referral = json!({"referral_id": "R1", "source": "6", "nfa": false});
    sys.publish(
        tokens::HARINGEY,
        vec![registered("reg", &child, HARINGEY), event("ref", "referral.received", &child, &at(60), referral)],
    )
    .await;
    sys.publish(tokens::ADMIN, vec![concern("c-1", &child, &at(5), "Bruising seen at clinic")]).await;
    let unallocated = format!("/v1/alerts?council={HARINGEY}&unallocated=true&status=open");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let open = sys.query.get(tokens::HARINGEY, &unallocated).await;
        if alerts_of(&open.json, "unallocated").len() == 1 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the concern raised no alert: {}", open.text);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let nats = async_nats::connect(sys.nats.url()).await.expect("connect");
    let mut notices = nats.subscribe(format!("sg.changes.alerts.{HARINGEY}.~unallocated")).await.expect("subscribe");
    nats.flush().await.expect("flush");
    let retraction = event(
        "c-1-retracted",
        "record.retracted",
        &child,
        &at(0),
        json!({"retracts": "c-1", "reason": "recorded against the wrong child"}),
    );
    sys.publish(tokens::ADMIN, vec![retraction]).await;
    notice_where(&mut notices, "the unallocated cases' managers heard that their alert went", |doc| {
        doc["open"].as_i64() == Some(0)
    })
    .await;
    let open = sys.query.get(tokens::HARINGEY, &unallocated).await;
    assert!(open.json["alerts"].as_array().is_some_and(Vec::is_empty), "{}", open.text);
}

/// The first change notice on `notices` whose document `wanted` takes,
/// with its subject, within 20 s (else the test fails saying `what`).
async fn notice_where(
    notices: &mut async_nats::Subscriber,
    what: &str,
    wanted: impl Fn(&Value) -> bool,
) -> (String, Value) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let m = tokio::time::timeout_at(deadline, futures::StreamExt::next(notices))
            .await
            .unwrap_or_else(|_| panic!("{what}: none within 20 s"))
            .expect("message");
        let doc: Value = serde_json::from_slice(&m.payload).expect("JSON");
        if wanted(&doc) {
            return (m.subject.to_string(), doc);
        }
    }
}
