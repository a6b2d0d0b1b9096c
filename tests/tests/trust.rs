//! Reviews and trust, end to end: what was known when, the anonymised
//! export, the role matrix with its access log, tamper evidence with signed
//! checkpoints, and erasure.

use serde_json::{Value, json};
use std::time::Duration;
use tests::NatsServer;
use tests::fixtures::{event, registered};
use tests::gateway::{Options, tokens};
use tests::system::System;

const HARINGEY: &str = "E09000014";
const ISLINGTON: &str = "E09000019";

fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

#[derive(Default)]
struct Setup {
    /// Make the event stream first, with deletes allowed, so a test can tamper with it.
    tamperable: bool,
    checkpoint_interval: Option<Duration>,
}

/// A system on a server prepared as `setup` asks.
async fn start(setup: Setup) -> System {
    let nats = NatsServer::start().await;
    if setup.tamperable {
        let js = async_nats::jetstream::new(nats.client().await);
        let settings = platform::config::StreamSettings { replicas: 1, duplicate_window: Duration::from_secs(120) };
        let config = async_nats::jetstream::stream::Config {
            deny_delete: false,
            ..platform::bus::events_stream_config(&settings)
        };
        js.create_stream(config).await.expect("a tamperable event stream");
    }
    System::start_with(nats, Options { checkpoint_interval: setup.checkpoint_interval, ..Options::default() }).await
}

fn recorded_at(result: &Value) -> String {
    result["recorded_at"].as_str().expect("recorded_at").to_owned()
}

/// (type, status) of each chronology entry, in order.
fn lines(answer: &tests::query::Answer) -> Vec<(String, String)> {
    answer.json["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| (e["type"].as_str().unwrap_or("").to_owned(), e["status"].as_str().unwrap_or("").to_owned()))
        .collect()
}

fn owned(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(a, b)| ((*a).to_owned(), (*b).to_owned())).collect()
}

#[tokio::test]
async fn as_of_shows_what_was_known_then_late_facts_in_business_place_from_when_they_were_recorded() {
    let sys = start(Setup::default()).await;
    let child = new_id();
    let worker = new_id();
    let seen = |alone: bool| json!({"seen_by": worker, "seen_alone": alone, "context": "statutory_visit"});
    let first = sys
        .publish(
            tokens::HARINGEY,
            vec![
                registered("reg", &child, HARINGEY),
                event("visit", "child.seen", &child, "2024-03-01T10:00:00Z", seen(true)),
            ],
        )
        .await;
    let t1 = recorded_at(&first[1]);
    // Recorded now, but it happened in February: before the visit in business order.
    let late = sys
        .publish(
            tokens::POLICE,
            vec![event(
                "concern",
                "concern.raised",
                &child,
                "2024-02-10T09:00:00Z",
                json!({"concern_id": "C1", "summary": "bruising seen at school"}),
            )],
        )
        .await;
    let t2 = recorded_at(&late[0]);
    sys.publish(
        tokens::HARINGEY,
        vec![event(
            "fix",
            "record.corrected",
            &child,
            "2024-03-02T09:00:00Z",
            json!({"corrects": "visit", "reason": "the child was not seen alone", "data": seen(false)}),
        )],
    )
    .await;

    let path = |as_of: Option<&str>| match as_of {
        Some(t) => format!("/v1/children/{child}/chronology?as_of={}", t.replace('+', "%2B")),
        None => format!("/v1/children/{child}/chronology"),
    };
    let at_t1 = sys.query.get(tokens::HARINGEY, &path(Some(&t1))).await;
    assert_eq!(at_t1.status, 200, "{}", at_t1.text);
    assert_eq!(lines(&at_t1), owned(&[("child.registered", "current"), ("child.seen", "current")]));
    let at_t2 = sys.query.get(tokens::HARINGEY, &path(Some(&t2))).await;
    assert_eq!(
        lines(&at_t2),
        owned(&[("child.registered", "current"), ("concern.raised", "current"), ("child.seen", "current")]),
        "the late concern takes its business-time place once recorded; the later correction is not yet known"
    );
    let now = sys.query.get(tokens::HARINGEY, &path(None)).await;
    assert_eq!(
        lines(&now),
        owned(&[
            ("child.registered", "current"),
            ("concern.raised", "current"),
            ("child.seen", "corrected"),
            ("record.corrected", "current"),
        ])
    );
    assert_eq!(now.json["entries"][2]["corrected_by"], "fix");
}

/// Everything that identifies the child or anyone around it, as recorded.
const SECRETS: [&str; 14] = [
    "Ayesha",
    "Okonkwo-Bright",
    "Grace",
    "Tobi",
    "Marcus",
    "Hale",
    "9434765919",
    "943 476 5919",
    "Larkspur",
    "N17 6QR",
    "Seven Sisters",
    "N7 6AE",
    "2019-03-04",
    "R-4411",
];

/// A child whose records hold names, an address, an NHS number and
/// relatives, and repeat them in free text.
async fn child_with_personal_data(sys: &System, child: &str, worker: &str) {
    let address = "14 Larkspur Close, Tottenham, N17 6QR";
    let mut registration = registered("reg", child, HARINGEY);
    registration["data"]["person"] = json!({
        "given_name": "Ayesha", "family_name": "Okonkwo-Bright", "nhs_number": "9434765919", "address": address,
    });
    let relative = |id: &str, person_id: &str, role: &str, person: Value| {
        event(
            id,
            "relationship.recorded",
            child,
            "2024-01-02T11:00:00Z",
            json!({"person_id": person_id, "role": role, "person": person}),
        )
    };
    sys.publish(
        tokens::ADMIN,
        vec![event(
            "w-joined",
            "worker.joined",
            worker,
            "2023-06-01T09:00:00Z",
            json!({"council": HARINGEY, "team_id": "T-NORTH", "role": "social_worker", "fte": 1.0, "agency_staff": false}),
        )],
    )
    .await;
    sys.publish(
        tokens::HARINGEY,
        vec![
            registration,
            relative("mum", "P-MUM-77", "mother", json!({"given_name": "Grace", "family_name": "Okonkwo-Bright", "address": address})),
            relative("sib", "P-SIB-78", "sibling", json!({"given_name": "Tobi", "family_name": "Okonkwo-Bright"})),
            relative("dad", "P-DAD-79", "father", json!({"given_name": "Marcus", "family_name": "Hale", "address": "Flat 3, 88 Seven Sisters Road, N7 6AE"})),
            event(
                "contact",
                "contact.recorded",
                child,
                "2024-01-10T09:00:00Z",
                json!({"contact_id": "CT-5521", "source": "6", "outcome": "referral",
                       "summary": "Grace Okonkwo-Bright rang: AYESHA had a bruise; Tobi said Marcus Hale shouted at 14 Larkspur Close. NHS 943 476 5919."}),
            ),
            event(
                "referral",
                "referral.received",
                child,
                "2024-01-10T12:00:00Z",
                json!({"referral_id": "R-4411", "source": "6", "nfa": false, "primary_need": "N1"}),
            ),
            event("alloc", "case.allocated", child, "2024-01-11T09:00:00Z", json!({"worker_id": worker, "team_id": "T-NORTH"})),
            event(
                "concern",
                "concern.raised",
                child,
                "2024-01-12T09:00:00Z",
                json!({"concern_id": "CN-1", "summary": "ayesha okonkwo-bright seen crying; grace says marcus visited N17 6QR"}),
            ),
            event(
                "seen",
                "child.seen",
                child,
                "2024-01-15T09:00:00Z",
                json!({"seen_by": worker, "seen_alone": true, "context": "statutory_visit"}),
            ),
            event(
                "shared",
                "information.shared",
                child,
                "2024-01-16T09:00:00Z",
                json!({"with_agency": "school", "purpose": "Tell Ayesha's school that Grace has moved from 14 Larkspur Close",
                       "summary": "Hale family informed"}),
            ),
        ],
    )
    .await;
}

fn assert_clean(text: &str, child: &str, worker: &str, what: &str) {
    let lower = without_cryptographic_material(text).to_lowercase();
    let local_id = format!("L{}", &child[..8]).to_lowercase();
    for secret in SECRETS.iter().copied().chain([child, worker, local_id.as_str(), "P-MUM-77", "CT-5521", "T-NORTH"]) {
        assert!(!lower.contains(&secret.to_lowercase()), "{what} contains {secret:?}:\n{text}");
    }
}

/// `text` without its signatures, attestations, hashes and ciphertext:
/// unbroken runs of base64 or hex at least as long as a 32-byte value's.
/// A short name turns up in them by chance (a signature's "…GtObiD…" read
/// as "Tobi" failed an erasure run), while a leaked name or number stands
/// among spaces and punctuation.
fn without_cryptographic_material(text: &str) -> String {
    const SHORTEST: usize = 43;
    let encoded = |c: char| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '=');
    let mut out = String::with_capacity(text.len());
    let mut run = String::new();
    for c in text.chars() {
        if encoded(c) {
            run.push(c);
            continue;
        }
        if run.len() < SHORTEST {
            out.push_str(&run);
        }
        run.clear();
        out.push(c);
    }
    if run.len() < SHORTEST {
        out.push_str(&run);
    }
    out
}

/// The leak check reads words, not signatures: a secret spelled by chance
/// inside a signature is not a leak, and one written out still is.
#[test]
fn a_name_spelled_by_chance_inside_a_signature_is_no_leak_and_a_written_one_is() {
    let (child, worker) = ("0b5e7c1a-0000-4000-8000-000000000001", "0b5e7c1a-0000-4000-8000-000000000002");
    let row = "2,E2,2024-01-02,relationship.recorded,Relationship recorded: mother (Mother),\
               yYYN6k7GjD6TM641FR58EB2FvH7zBkH4KAB4XYJN6oeDKELgP/Xw2fT/xwl4amnxttAWMeBVXaLDiGtObiDNAA==";
    assert_clean(row, child, worker, "a signed row");
    let leaked = std::panic::catch_unwind(|| assert_clean(&format!("{row}, Tobi said"), child, worker, "a leak"));
    assert!(leaked.is_err(), "a name written out is found");
    let in_a_hash = std::panic::catch_unwind(|| assert_clean("prevhash,Hale,x", child, worker, "a leak"));
    assert!(in_a_hash.is_err(), "a name between commas is found");
}

#[tokio::test]
async fn the_anonymised_export_names_people_by_role_and_leaks_nothing_in_any_format() {
    let sys = start(Setup::default()).await;
    let (child, worker) = (new_id(), new_id());
    child_with_personal_data(&sys, &child, &worker).await;

    let path = |format: &str| format!("/v1/children/{child}/chronology/export?format={format}");
    let json_export = sys.query.get(tokens::HARINGEY, &path("json")).await;
    assert_eq!(json_export.status, 200, "{}", json_export.text);
    for format in ["md", "csv", "json", "pdf"] {
        let answer = sys.query.get(tokens::HARINGEY, &path(format)).await;
        assert_eq!(answer.status, 200, "{format}: {}", answer.text);
        assert_clean(&answer.text, &child, &worker, format);
        for label in ["Child A", "Mother", "Sibling 1", "Father", "Social worker 1", "Referral 1"] {
            assert!(answer.text.contains(label), "{format} should name {label}:\n{}", answer.text);
        }
    }
    // It says when it was made and what it covers, and keeps the free text, redacted.
    let doc = &json_export.json;
    assert!(doc["stream_position"].as_u64().expect("position") >= 11, "{doc}");
    assert!(doc["produced_at"].is_string());
    let contact = doc["entries"].as_array().expect("entries").iter().find(|e| e["event"] == "contact.recorded");
    let detail = contact.and_then(|e| e["detail"].as_str()).expect("the contact's free text");
    assert!(
        detail.contains("Mother rang: Child A had a bruise; Sibling 1 said Father shouted at [address]"),
        "{detail}"
    );
    assert!(detail.contains("[removed]"), "the NHS number is removed: {detail}");
    let md = sys.query.get(tokens::HARINGEY, &path("md")).await;
    assert!(md.text.contains("Produced ") && md.text.contains("event stream position"), "{}", md.text);
    // An unknown format is refused by name, before anything is read.
    let bad = sys.query.get(tokens::HARINGEY, &path("docx")).await;
    assert_eq!(bad.status, 422);
    assert!(bad.text.contains("format"), "{}", bad.text);
}

/// Expected statuses: a row per principal, a column per kind of child.
type Matrix = [[u16; 5]; 6];
/// A child-level endpoint as logged, how to reach it for a child, and its matrix.
type Endpoint = (&'static str, fn(&str) -> String, &'static Matrix);

/// What one principal may do to one kind of child, for each child-level endpoint.
const RECORD: Matrix = [
    [200, 403, 403, 200, 200], // practitioner (Haringey)
    [403, 403, 403, 200, 403], // reviewer
    [403; 5],                  // dashboard
    [403; 5],                  // auditor (Haringey)
    [200; 5],                  // admin
    [403; 5],                  // publisher only
];
const AUDIT: Matrix = [[403; 5], [403; 5], [403; 5], [200, 403, 403, 200, 200], [200; 5], [403; 5]];

#[tokio::test]
async fn every_role_against_every_read_with_each_kind_of_child_and_every_child_level_attempt_logged() {
    let sys = start(Setup::default()).await;
    let worker = new_id();
    let [own, other, sealed, reviewed, closed] = [new_id(), new_id(), new_id(), new_id(), new_id()];
    sys.publish(
        tokens::ADMIN,
        vec![event(
            "w",
            "worker.joined",
            &worker,
            "2023-06-01T09:00:00Z",
            json!({"council": HARINGEY, "team_id": "T1", "role": "social_worker", "fte": 1.0, "agency_staff": false}),
        )],
    )
    .await;
    let allocated = |child: &str| {
        let id = format!("alloc-{child}");
        event(&id, "case.allocated", child, "2024-01-05T09:00:00Z", json!({"worker_id": worker, "team_id": "T1"}))
    };
    for child in [&own, &sealed, &reviewed, &closed] {
        sys.publish(tokens::HARINGEY, vec![registered(&format!("reg-{child}"), child, HARINGEY), allocated(child)])
            .await;
    }
    sys.publish(tokens::ISLINGTON, vec![registered("reg", &other, ISLINGTON)]).await;
    let review = |id: &str, child: &str, t: &str, data: Value| event(id, t, child, "2024-06-01T09:00:00Z", data);
    sys.publish(
        tokens::ADMIN,
        vec![
            review("seal", &sealed, "record.sealed", json!({"reason": "adoption"})),
            review(
                "open-1",
                &reviewed,
                "review.opened",
                json!({"review_id": "CSPR-1", "kind": "cspr", "reviewers": ["panel-reviewer"]}),
            ),
            review(
                "open-2",
                &closed,
                "review.opened",
                json!({"review_id": "CSPR-2", "kind": "cspr", "reviewers": ["panel-reviewer"]}),
            ),
            event("close", "review.closed", &closed, "2024-09-01T09:00:00Z", json!({"review_id": "CSPR-2"})),
        ],
    )
    .await;

    let principals = [
        ("haringey-csc", tokens::HARINGEY),
        ("panel-reviewer", tokens::REVIEWER),
        ("partnership-dashboard", tokens::DASHBOARD),
        ("haringey-auditor", tokens::AUDITOR),
        ("safeguard-admin", tokens::ADMIN),
        ("met-police", tokens::POLICE),
    ];
    let children = [&own, &other, &sealed, &reviewed, &closed];
    let endpoints: [Endpoint; 4] = [
        ("GET /v1/children/{child}/chronology", |c| format!("/v1/children/{c}/chronology"), &RECORD),
        ("GET /v1/children/{child}/chronology/export", |c| format!("/v1/children/{c}/chronology/export"), &RECORD),
        ("GET /v1/children/{child}/access-log", |c| format!("/v1/children/{c}/access-log"), &AUDIT),
        ("GET /v1/verify", |c| format!("/v1/verify?child={c}"), &AUDIT),
    ];
    let mut expected_log = Vec::new();
    for (endpoint, path, table) in endpoints {
        for (p, (name, token)) in principals.iter().enumerate() {
            for (c, child) in children.iter().enumerate() {
                let answer = sys.query.get(token, &path(child)).await;
                let want = table[p][c];
                assert_eq!(answer.status, want, "{name} {endpoint} child #{c}: {}", answer.text);
                let outcome = if want == 200 { "allowed" } else { "refused" };
                expected_log.push(((*name).to_owned(), endpoint.to_owned(), (*child).clone(), outcome.to_owned()));
            }
        }
    }

    // Aggregates and lookups: (principal, lookup, caseloads, indicators, worker caseload, whole-stream verify).
    let aggregate: [(&str, [u16; 5]); 7] = [
        (tokens::HARINGEY, [200, 200, 200, 200, 403]),
        (tokens::REVIEWER, [403, 403, 403, 403, 403]),
        (tokens::DASHBOARD, [403, 200, 200, 403, 403]),
        (tokens::AUDITOR, [403, 403, 403, 403, 403]),
        (tokens::ADMIN, [200, 200, 200, 200, 200]),
        (tokens::POLICE, [403, 403, 403, 403, 403]),
        (tokens::NATIONAL_AUDITOR, [403, 403, 403, 403, 200]),
    ];
    let sealed_local = json!({"council": HARINGEY, "la_child_id": format!("L{}", &sealed[..8])});
    for (token, want) in aggregate {
        let lookup = sys.query.post(token, "/v1/children/lookup", &sealed_local).await;
        let caseloads = sys.query.get(token, &format!("/v1/caseloads?council={HARINGEY}")).await;
        let indicators = sys.query.get(token, &format!("/v1/indicators?council={HARINGEY}")).await;
        let cases = sys.query.get(token, &format!("/v1/workers/{worker}/caseload")).await;
        let verify = sys.query.get(token, "/v1/verify").await;
        let got = [lookup.status, caseloads.status, indicators.status, cases.status, verify.status];
        assert_eq!(got, want, "token {token}: {} {} {}", lookup.text, cases.text, verify.text);
        if cases.status == 200 {
            // A sealed child is left out of a worker's caseload for all but admin, and out of lookups.
            let listed: Vec<&str> =
                cases.json["cases"].as_array().expect("cases").iter().filter_map(|c| c["child"].as_str()).collect();
            assert_eq!(listed.contains(&sealed.as_str()), token == tokens::ADMIN, "{listed:?}");
            assert!(listed.contains(&own.as_str()));
            let found = lookup.json["children"].as_array().expect("children").len();
            assert_eq!(found, usize::from(token == tokens::ADMIN), "{}", lookup.text);
        }
        if verify.status == 200 {
            assert_eq!(verify.json["ok"], true, "{}", verify.text);
        }
    }
    // Aggregates still count the sealed child: four Haringey cases open for the worker.
    let loads = sys.query.get(tokens::DASHBOARD, &format!("/v1/caseloads?council={HARINGEY}")).await;
    assert_eq!(loads.json["workers"][0]["open_cases"], 4, "{}", loads.text);

    // Every child-level attempt, allowed or refused, is in the access log, once.
    sys.projector.wait_for_audit().await;
    let rows: Vec<(String, String, uuid::Uuid, String)> = sqlx::query_as(
        "select principal, endpoint, child_id, outcome from audit.access_event
          where endpoint <> 'POST /v1/children/lookup' and endpoint <> 'GET /v1/workers/{worker}/caseload'",
    )
    .fetch_all(&sys.pool)
    .await
    .expect("access events");
    let mut logged: Vec<(String, String, String, String)> =
        rows.into_iter().map(|(p, e, c, o)| (p, e, c.to_string(), o)).collect();
    logged.sort();
    expected_log.sort();
    assert_eq!(logged, expected_log);
}

#[tokio::test]
async fn the_access_log_shows_who_read_why_and_reading_it_is_logged_too() {
    let sys = start(Setup::default()).await;
    let child = new_id();
    sys.publish(tokens::HARINGEY, vec![registered("reg", &child, HARINGEY)]).await;
    let chronology = format!("/v1/children/{child}/chronology");
    let read = sys
        .query
        .get_with(
            Some(tokens::HARINGEY),
            &chronology,
            &[("x-acting-user", "j.bloggs@haringey"), ("x-purpose", "strategy discussion")],
        )
        .await;
    assert_eq!(read.status, 200);
    assert_eq!(sys.query.get(tokens::REVIEWER, &chronology).await.status, 403);

    let log_path = format!("/v1/children/{child}/access-log");
    sys.projector.wait_for_audit().await;
    let first = sys.query.get(tokens::AUDITOR, &log_path).await;
    assert_eq!(first.status, 200, "{}", first.text);
    let entries = first.json["entries"].as_array().expect("entries").clone();
    // The two reads, then (if the audit consumer was quick enough) this very read of the log.
    assert!(entries.len() >= 2, "{}", first.text);
    assert!(entries[2..].iter().all(|e| e["principal"] == "haringey-auditor"), "{}", first.text);
    assert_eq!(entries[0]["principal"], "haringey-csc");
    assert_eq!(entries[0]["acting_user"], "j.bloggs@haringey");
    assert_eq!(entries[0]["purpose"], "strategy discussion");
    assert_eq!(entries[0]["endpoint"], "GET /v1/children/{child}/chronology");
    assert_eq!(entries[0]["outcome"], "allowed");
    assert_eq!(entries[1]["principal"], "panel-reviewer");
    assert_eq!(entries[1]["outcome"], "refused");
    assert!(entries[0]["at"].is_string());

    sys.projector.wait_for_audit().await;
    let second = sys.query.get(tokens::AUDITOR, &log_path).await;
    let last = second.json["entries"].as_array().and_then(|e| e.last()).cloned().expect("an entry");
    assert_eq!(last["principal"], "haringey-auditor", "{}", second.text);
    assert_eq!(last["endpoint"], "GET /v1/children/{child}/access-log");
    // Practitioners read records, not who else read them.
    assert_eq!(sys.query.get(tokens::HARINGEY, &log_path).await.status, 403);
}

/// Runs `safeguard verify --stream-only` with nothing but NATS and the
/// public key; returns the exit code and the report.
async fn outside_verifier(nats_url: &str, public_key: &std::path::Path) -> (i32, Value) {
    let output = tokio::process::Command::new(tests::safeguard_binary())
        .args(["verify", "--stream-only", "--public-key"])
        .arg(public_key)
        .env("NATS_URL", nats_url)
        .env_remove("DATABASE_URL")
        .output()
        .await
        .expect("run safeguard verify");
    let report = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|_| panic!("a JSON report: {}", String::from_utf8_lossy(&output.stderr)));
    (output.status.code().unwrap_or(-1), report)
}

fn has_break(report: &Value, subject: &str, sequence: u64, kind: &str) -> bool {
    report["breaks"]
        .as_array()
        .is_some_and(|b| b.iter().any(|b| b["subject"] == subject && b["sequence"] == sequence && b["kind"] == kind))
}

#[tokio::test]
async fn tampering_is_reported_by_kind_and_a_checkpoint_holds_only_until_the_stream_is_rewritten() {
    let mut sys = start(Setup { tamperable: true, checkpoint_interval: Some(Duration::from_millis(100)) }).await;
    let [a, b, c, d] = [new_id(), new_id(), new_id(), new_id()];
    let mut seqs = std::collections::HashMap::new();
    for child in [&a, &b, &c, &d] {
        let results = sys
            .publish(
                tokens::HARINGEY,
                vec![
                    registered(&format!("reg-{child}"), child, HARINGEY),
                    event(
                        &format!("ref-{child}"),
                        "referral.received",
                        child,
                        "2024-02-01T09:00:00Z",
                        json!({"referral_id": "R1", "source": "6", "nfa": false}),
                    ),
                    event(
                        &format!("seen-{child}"),
                        "child.seen",
                        child,
                        "2024-02-02T09:00:00Z",
                        json!({"seen_by": new_id(), "seen_alone": true, "context": "statutory_visit"}),
                    ),
                ],
            )
            .await;
        let at: Vec<u64> = results.iter().map(|r| r["stream_sequence"].as_u64().expect("seq")).collect();
        seqs.insert(child.clone(), at);
    }
    let last = seqs[&d][2];

    // Wait for a checkpoint that covers everything, then keep only the public key.
    checkpoint_covering(&sys.nats, last).await;
    let js = async_nats::jetstream::new(sys.nats.client().await);
    let outside = tempfile::tempdir().expect("dir");
    let public_key = outside.path().join("safeguard.pub");
    std::fs::copy(sys.gateway.path("signing.key.pub"), &public_key).expect("copy the public key");
    let (code, report) = outside_verifier(&sys.nats.url(), &public_key).await;
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["ok"], true);
    assert_eq!(report["checked"], 12);
    assert!(report["checkpoints"]["checked"].as_u64() >= Some(1), "{report}");
    let whole = sys.query.get(tokens::NATIONAL_AUDITOR, "/v1/verify").await;
    assert_eq!(whole.json["ok"], true, "{}", whole.text);

    // Tamper through a plain NATS connection, with the gateway stopped.
    sys.gateway.shutdown().await;
    let stream = js.get_stream(platform::bus::EVENTS_STREAM).await.expect("event stream");
    let payload = |seq: u64| {
        let stream = stream.clone();
        async move { stream.get_raw_message(seq).await.expect("a stored message").payload }
    };
    let nats_subject = |child: &str| {
        events::subjects::event_subject(&events::Subject::Child(events::ids::ChildId::parse(child).expect("id")))
    };
    // a: an event removed from the middle.
    assert!(stream.delete_message(seqs[&a][1]).await.expect("delete"));
    // b: its head altered and published again.
    let mut altered: Value = serde_json::from_slice(&payload(seqs[&b][2]).await).expect("json");
    altered["data"]["seen_alone"] = json!(false);
    assert!(stream.delete_message(seqs[&b][2]).await.expect("delete"));
    js.publish(nats_subject(&b), serde_json::to_vec(&altered).expect("json").into())
        .await
        .expect("publish")
        .await
        .expect("ack");
    // c: an event moved to the end.
    let moved = payload(seqs[&c][1]).await;
    assert!(stream.delete_message(seqs[&c][1]).await.expect("delete"));
    js.publish(nats_subject(&c), moved).await.expect("publish").await.expect("ack");
    // d: a new event, properly chained, signed with a key that is not the gateway's.
    let head: Value = serde_json::from_slice(&payload(seqs[&d][2]).await).expect("json");
    let mut forged = head.as_object().expect("object").clone();
    forged.insert("id".into(), json!("forged-1"));
    forged.insert("sequence".into(), json!(4));
    forged.insert("prevhash".into(), head["hash"].clone());
    let impostor = events::chain::signing_key_from_seed([42; 32]);
    let forged = events::chain::seal(forged, &impostor);
    js.publish(nats_subject(&d), serde_json::to_vec(&forged).expect("json").into())
        .await
        .expect("publish")
        .await
        .expect("ack");

    let (code, report) = outside_verifier(&sys.nats.url(), &public_key).await;
    assert_eq!(code, 3, "{report}");
    assert_eq!(report["ok"], false);
    assert!(has_break(&report, &a, 2, "missing"), "{report}");
    assert!(has_break(&report, &b, 3, "altered"), "{report}");
    assert!(has_break(&report, &c, 2, "reordered"), "{report}");
    assert!(has_break(&report, &d, 4, "forged"), "{report}");
    let failures = report["checkpoints"]["failures"].as_array().expect("failures");
    assert!(!failures.is_empty(), "the checkpoint no longer holds: {report}");

    // With the Postgres copy, the differences between the two are named as well.
    let whole = sys.query.get(tokens::NATIONAL_AUDITOR, "/v1/verify").await;
    assert_eq!(whole.json["ok"], false, "{}", whole.text);
    assert!(has_break(&whole.json, &a, 2, "copy_mismatch"), "{}", whole.text);
    assert!(has_break(&whole.json, &b, 3, "copy_mismatch"), "{}", whole.text);
    // One child's verification covers that child only.
    let one = sys.query.get(tokens::AUDITOR, &format!("/v1/verify?child={a}")).await;
    let subjects: Vec<&str> =
        one.json["breaks"].as_array().expect("breaks").iter().filter_map(|b| b["subject"].as_str()).collect();
    assert!(!subjects.is_empty() && subjects.iter().all(|s| *s == a), "{}", one.text);

    // A projector started again reads back what it applied last. A
    // position left empty inside the stream's range was deleted, not lost
    // by a leader: the copy keeps what stood there, so the differences are
    // still named, and the alarm is raised rather than the copy following
    // the tampered stream.
    let tampered_to = stream.get_info().await.expect("stream info").state.last_sequence;
    sys.projector.restart(&sys.gateway).await;
    sys.projector.wait_for(tampered_to).await;
    let deletions = sys.projector.stats.deletions.load(std::sync::atomic::Ordering::Relaxed);
    assert!(deletions >= 3, "the three deleted positions raise the alarm ({deletions})");
    assert_eq!(
        sys.projector.stats.reconciliations.load(std::sync::atomic::Ordering::Relaxed),
        0,
        "nothing was taken for the stream going back"
    );
    let whole = sys.query.get(tokens::NATIONAL_AUDITOR, "/v1/verify").await;
    assert!(has_break(&whole.json, &a, 2, "copy_mismatch"), "{}", whole.text);
    assert!(has_break(&whole.json, &b, 3, "copy_mismatch"), "{}", whole.text);
}

/// Waits until a checkpoint covers stream position `position`.
async fn checkpoint_covering(nats: &NatsServer, position: u64) {
    let js = async_nats::jetstream::new(nats.client().await);
    let audit = js.get_stream(platform::bus::AUDIT_STREAM).await.expect("audit stream");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(m) = audit.get_last_raw_message_by_subject(events::subjects::CHECKPOINT).await {
            let cp: Value = serde_json::from_slice(&m.payload).expect("json");
            if cp["covers"].as_u64() >= Some(position) {
                return;
            }
        }
        assert!(std::time::Instant::now() < deadline, "no checkpoint covered stream position {position}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn after_a_key_rotation_events_and_checkpoints_of_both_keys_verify_with_the_listed_keys() {
    let mut sys = start(Setup { checkpoint_interval: Some(Duration::from_millis(100)), ..Setup::default() }).await;
    let child = new_id();
    let seen = |id: &str, day: &str| {
        event(
            id,
            "child.seen",
            &child,
            &format!("2024-02-{day}T09:00:00Z"),
            json!({"seen_by": new_id(), "seen_alone": true, "context": "school"}),
        )
    };
    let before = sys.publish(tokens::HARINGEY, vec![registered("reg", &child, HARINGEY), seen("s1", "01")]).await;
    checkpoint_covering(&sys.nats, before[1]["stream_sequence"].as_u64().expect("seq")).await;
    sys.gateway.rotate_signing_key().await;
    let after = sys.publish(tokens::HARINGEY, vec![seen("s2", "02"), seen("s3", "03")]).await;
    assert_eq!(after[1]["sequence"], 4, "the chain runs on across the rotation");
    checkpoint_covering(&sys.nats, after[1]["stream_sequence"].as_u64().expect("seq")).await;

    let listed = std::fs::read_to_string(sys.gateway.path("signing.key.pub")).expect("public keys");
    assert_eq!(listed.lines().count(), 2, "{listed}");
    let (code, report) = outside_verifier(&sys.nats.url(), &sys.gateway.path("signing.key.pub")).await;
    assert_eq!(code, 0, "{report}");
    assert!(report["checkpoints"]["checked"].as_u64() >= Some(2), "{report}");

    // With the new key alone, everything the old key signed looks forged.
    let dir = tempfile::tempdir().expect("dir");
    let newest = dir.path().join("newest.pub");
    std::fs::write(&newest, listed.lines().last().expect("a key")).expect("write");
    let (code, report) = outside_verifier(&sys.nats.url(), &newest).await;
    assert_eq!(code, 3, "{report}");
    assert!(has_break(&report, &child, 1, "forged") && has_break(&report, &child, 2, "forged"), "{report}");
    assert!(!has_break(&report, &child, 3, "forged"), "{report}");
    assert!(!report["checkpoints"]["failures"].as_array().expect("failures").is_empty(), "{report}");
}

#[tokio::test]
async fn erasure_leaves_no_personal_data_anywhere_while_chains_verify_and_aggregates_stand() {
    let sys = start(Setup::default()).await;
    let (child, worker) = (new_id(), new_id());
    child_with_personal_data(&sys, &child, &worker).await;
    let lookup = json!({"nhs_number": "943 476 5919"});
    let found = sys.query.post(tokens::HARINGEY, "/v1/children/lookup", &lookup).await;
    assert_eq!(found.json["children"][0]["child"], child.as_str(), "{}", found.text);
    let indicators_path = format!("/v1/indicators?council={HARINGEY}&period=2023-24");
    let before = sys.query.get(tokens::DASHBOARD, &indicators_path).await.json;
    let export_path = format!("/v1/children/{child}/chronology/export?format=json");
    let before_export = sys.query.get(tokens::HARINGEY, &export_path).await;
    assert!(before_export.text.contains("Child A had a bruise"), "{}", before_export.text);

    // Only an admin may erase, and only a child that exists.
    let erase = |token: &'static str, child: String| {
        let gateway = &sys.gateway;
        async move {
            let headers = [("x-purpose", "retention_ended"), ("x-acting-user", "records.officer")];
            gateway.erase(token, &child, &headers).await
        }
    };
    assert_eq!(erase(tokens::HARINGEY, child.clone()).await.status, 403);
    assert_eq!(erase(tokens::ADMIN, new_id()).await.status, 404);
    let erased = erase(tokens::ADMIN, child.clone()).await;
    assert_eq!(erased.status, 200, "{}", erased.text);
    assert_eq!(erased.json["key_erased"], true);
    let again = erase(tokens::ADMIN, child.clone()).await;
    assert_eq!((again.status, again.json["key_erased"].clone()), (200, json!(false)), "repeating is harmless");

    // The erasure is audited, and the identifier index forgets the child.
    sys.projector.wait_for_audit().await;
    let who: (String, Option<String>) =
        sqlx::query_as("select principal, acting_user from audit.erased_child where child_id = $1")
            .bind(uuid::Uuid::parse_str(&child).expect("uuid"))
            .fetch_one(&sys.pool)
            .await
            .expect("the erasure is recorded");
    assert_eq!(who, ("safeguard-admin".to_owned(), Some("records.officer".to_owned())));
    let found = sys.query.post(tokens::HARINGEY, "/v1/children/lookup", &lookup).await;
    assert_eq!(found.json["children"], json!([]), "{}", found.text);

    // No read yields the personal data (the query role forgets the key as the bucket changes).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let export = loop {
        let export = sys.query.get(tokens::HARINGEY, &export_path).await;
        if !export.text.contains("Child A had a bruise") || std::time::Instant::now() > deadline {
            break export;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(export.status, 200);
    for format in ["md", "csv", "json"] {
        let text = sys
            .query
            .get(tokens::HARINGEY, &format!("/v1/children/{child}/chronology/export?format={format}"))
            .await
            .text;
        assert_clean(&text, &child, &worker, format);
    }
    let chronology = sys.query.get(tokens::ADMIN, &format!("/v1/children/{child}/chronology?format=csv")).await;
    assert_eq!(chronology.status, 200);
    for secret in SECRETS.iter().filter(|s| !s.starts_with("2019") && !s.starts_with("R-")) {
        assert!(!chronology.text.contains(secret), "{secret} in {}", chronology.text);
    }

    // No table and no raw message holds it, and the wrapped key is gone from the bucket's stream.
    let tables = tests::tables::every_table_as_text(&sys.pool).await;
    for secret in ["Ayesha", "Okonkwo", "Grace", "Marcus", "9434765919", "Larkspur"] {
        assert!(!tables.contains(secret), "{secret} is in a table");
    }
    let js = async_nats::jetstream::new(sys.nats.client().await);
    let mut events_stream = js.get_stream(platform::bus::EVENTS_STREAM).await.expect("stream");
    let last = events_stream.info().await.expect("info").state.last_sequence;
    for seq in 1..=last {
        let message = events_stream.get_raw_message(seq).await.expect("message");
        let text = String::from_utf8_lossy(&message.payload);
        assert!(!text.contains("Ayesha") && !text.contains("9434765919"), "stream message {seq} is in clear");
    }
    let keys = js.get_stream(format!("KV_{}", platform::bus::KEYS_BUCKET)).await.expect("key stream");
    let entry = keys.get_last_raw_message_by_subject(&format!("$KV.{}.{child}", platform::bus::KEYS_BUCKET)).await;
    assert_eq!(entry.expect("the tombstone").payload.as_ref(), b"erased");
    let held = projections::leader::count_matching(&keys, &format!("$KV.{}.{child}", platform::bus::KEYS_BUCKET))
        .await
        .expect("count");
    assert_eq!(held, 1, "only the tombstone is left");

    // Every chain and signature still verifies, and the aggregates are as they were.
    let verify = sys.query.get(tokens::NATIONAL_AUDITOR, "/v1/verify").await;
    assert_eq!(verify.json["ok"], true, "{}", verify.text);
    let after = sys.query.get(tokens::DASHBOARD, &indicators_path).await.json;
    assert_eq!(before, after);

    // New facts may be recorded without personal fields; personal fields are refused by name.
    let refused = sys
        .gateway
        .post(
            tokens::HARINGEY,
            &event(
                "late",
                "concern.raised",
                &child,
                "2024-02-01T09:00:00Z",
                json!({"concern_id": "CN-2", "summary": "again"}),
            ),
        )
        .await;
    assert_eq!(refused.status, 409, "{}", refused.text);
    assert_eq!(refused.json["errors"][0]["pointer"], "/data/summary");
    let seen = sys
        .gateway
        .post(
            tokens::HARINGEY,
            &event(
                "seen-2",
                "child.seen",
                &child,
                "2024-02-01T09:00:00Z",
                json!({"seen_by": worker, "seen_alone": false, "context": "school"}),
            ),
        )
        .await;
    assert_eq!(seen.status, 201, "{}", seen.text);
}
