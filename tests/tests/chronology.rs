//! The chronology as practitioners, panels and courts read it (issue 18):
//! the narrative opened for those entitled to the record and never stored
//! in clear, and references that stay put when late facts arrive.

use serde_json::{Value, json};
use tests::fixtures::{event, registered};
use tests::gateway::tokens;
use tests::system::System;

const HARINGEY: &str = "E09000014";
const DISCLOSURE: &str = "Amelia told her teacher that her mother's partner hit her";

fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// A child named Amelia Hartley, her mother Claire, a concern in the
/// school's words, and a case review naming the panel's reviewer.
async fn amelias_record(sys: &System) -> String {
    let child = new_id();
    let mut registration = registered("reg", &child, HARINGEY);
    registration["data"]["person"] = json!({"given_name": "Amelia", "family_name": "Hartley"});
    let mother = event(
        "rel-mother",
        "relationship.recorded",
        &child,
        "2024-01-03T10:00:00Z",
        json!({"person_id": "PER1", "role": "mother", "person": {"given_name": "Claire", "family_name": "Hartley"}}),
    );
    let concern = event(
        "concern-1",
        "concern.raised",
        &child,
        "2024-02-01T10:00:00Z",
        json!({"concern_id": "C1", "category": "PHY", "summary": DISCLOSURE}),
    );
    sys.publish(tokens::HARINGEY, vec![registration, mother, concern]).await;
    let review = event(
        "review-1",
        "review.opened",
        &child,
        "2024-06-01T10:00:00Z",
        json!({"review_id": "R1", "kind": "cspr", "reviewers": ["panel-reviewer"]}),
    );
    sys.publish(tokens::ADMIN, vec![review]).await;
    child
}

fn entry<'a>(chronology: &'a Value, id: &str) -> &'a Value {
    chronology["entries"].as_array().expect("entries").iter().find(|e| e["id"] == id).expect("the entry")
}

#[tokio::test]
async fn the_narrative_is_read_by_those_entitled_to_the_record_and_never_stored_in_clear() {
    let sys = System::start().await;
    let child = amelias_record(&sys).await;
    let path = format!("/v1/children/{child}/chronology");

    for token in [tokens::HARINGEY, tokens::REVIEWER] {
        let chronology = sys.query.get(token, &path).await;
        assert_eq!(chronology.status, 200, "{}", chronology.text);
        let json = &chronology.json;
        assert_eq!(entry(json, "concern-1")["narrative"]["text"], json!([{"field": "summary", "text": DISCLOSURE}]));
        assert_eq!(entry(json, "reg")["narrative"]["people"], json!(["Amelia Hartley (child)"]));
        assert_eq!(entry(json, "rel-mother")["narrative"]["people"], json!(["Claire Hartley (mother)"]));
    }
    let markdown = sys.query.get(tokens::HARINGEY, &format!("{path}?format=md")).await;
    assert!(markdown.text.contains(DISCLOSURE), "{}", markdown.text);
    assert!(markdown.text.contains("| narrative |"), "{}", markdown.text);
    let csv = sys.query.get(tokens::HARINGEY, &format!("{path}?format=csv")).await;
    assert!(
        csv.text
            .starts_with("serial,date,event,source_reference,agency,reference,narrative,significance,outcome,links,"),
        "{}",
        csv.text
    );
    assert!(csv.text.contains("Claire Hartley (mother)"), "{}", csv.text);

    // The timeline page shows it too.
    let page = tests::query::PageSession::sign_in(&sys.query.url(""), tokens::HARINGEY, "A. Worker").await;
    let html = page.get(&format!("/ui/children/{child}")).await.text().await.expect("the page");
    assert!(html.contains("told her teacher") && html.contains("Claire Hartley (mother)"), "{html}");

    // Nobody else reads it, and no table holds it.
    for token in [tokens::ISLINGTON, tokens::DASHBOARD, tokens::POLICE] {
        let refused = sys.query.get(token, &path).await;
        assert_eq!(refused.status, 403, "{}", refused.text);
        assert!(!refused.text.contains("Amelia") && !refused.text.contains("hit her"), "{}", refused.text);
    }
    let stored = tests::tables::every_table_as_text(&sys.pool).await;
    for secret in ["Amelia", "Claire", "Hartley", "hit her"] {
        assert!(!stored.contains(secret), "a read-model table holds {secret:?} in clear");
    }

    // After erasure the entry says that its words were erased.
    let erased = sys.gateway.erase(tokens::ADMIN, &child, &[("x-purpose", "retention_ended")]).await;
    assert_eq!(erased.status, 200, "{}", erased.text);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let chronology = sys.query.get(tokens::HARINGEY, &path).await;
        let concern = entry(&chronology.json, "concern-1")["narrative"].clone();
        if concern == json!({"erased": true}) {
            assert!(!chronology.text.contains("Amelia") && !chronology.text.contains("hit her"), "{}", chronology.text);
            assert_eq!(entry(&chronology.json, "rel-mother")["narrative"], json!({"erased": true}));
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the narrative outlived the key: {concern}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let markdown = sys.query.get(tokens::HARINGEY, &format!("{path}?format=md")).await;
    assert!(markdown.text.contains("[erased]") && !markdown.text.contains("hit her"), "{}", markdown.text);
}

#[tokio::test]
async fn a_late_fact_leaves_every_earlier_entrys_reference_unchanged() {
    let sys = System::start().await;
    let child = amelias_record(&sys).await;
    let path = format!("/v1/children/{child}/chronology");
    let references = |chronology: &Value| -> Vec<(String, String)> {
        chronology["entries"]
            .as_array()
            .expect("entries")
            .iter()
            .map(|e| (e["id"].as_str().unwrap_or("").to_owned(), e["reference"].as_str().unwrap_or("").to_owned()))
            .collect()
    };
    let before = references(&sys.query.get(tokens::HARINGEY, &path).await.json);
    assert_eq!(before.len(), 4, "{before:?}");

    // Recorded now, it happened before everything else but the registration.
    let late = event(
        "visit-late",
        "child.seen",
        &child,
        "2024-01-02T15:00:00Z",
        json!({"seen_by": new_id(), "seen_alone": true, "context": "statutory_visit"}),
    );
    sys.publish(tokens::HARINGEY, vec![late]).await;
    let after_json = sys.query.get(tokens::HARINGEY, &path).await.json;
    let after = references(&after_json);
    assert_eq!(after.len(), 5);
    assert_eq!(after[1].0, "visit-late", "the late fact takes its place in date order: {after:?}");
    for (id, reference) in &before {
        let now = after.iter().find(|(i, _)| i == id).map(|(_, r)| r.clone());
        assert_eq!(now.as_deref(), Some(reference.as_str()), "entry {id} kept its reference");
    }
    assert_eq!(entry(&after_json, "visit-late")["reference"], "E5", "a new entry takes the next reference");
    let markdown = sys.query.get(tokens::HARINGEY, &format!("{path}?format=md")).await.text;
    assert!(markdown.lines().any(|l| l.starts_with("| 2 |") && l.contains("E5")), "{markdown}");
}

fn by_type<'a>(chronology: &'a Value, t: &str) -> &'a Value {
    chronology["entries"].as_array().expect("entries").iter().find(|e| e["type"] == t).expect("an entry of that type")
}

fn links(entry: &Value) -> Vec<(String, String)> {
    entry["links"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|l| (l["relation"].as_str().unwrap_or("").to_owned(), l["reference"].as_str().unwrap_or("").to_owned()))
        .collect()
}

#[tokio::test]
async fn the_chronology_has_the_public_law_outlines_columns_and_shows_what_amendments_changed() {
    let sys = System::start().await;
    let child = new_id();
    let at = |day: &str| format!("2024-{day}T10:00:00Z");
    sys.publish(
        tokens::HARINGEY,
        vec![
            registered("reg", &child, HARINGEY),
            event("contact-1", "contact.recorded", &child, &at("01-20"), json!({"contact_id": "CT1", "source": "6", "summary": "Police called", "outcome": "referral"})),
            event("ref-1", "referral.received", &child, &at("01-21"), json!({"referral_id": "R1", "source": "6", "nfa": false})),
            event("sd-1", "strategy_discussion.held", &child, &at("01-22"), json!({"discussion_id": "D1", "referral_id": "R1", "agencies": ["police", "health"], "decision": "s47"})),
            event("s47-1", "s47.started", &child, &at("01-23"), json!({"s47_id": "S1", "referral_id": "R1", "discussion_id": "D1"})),
            event("icpc-1", "conference.held", &child, &at("02-05"), json!({"conference_id": "C1", "kind": "initial", "s47_id": "S1", "outcome": "plan"})),
            event("plan-1", "cp_plan.started", &child, &at("02-05"), json!({"plan_id": "P1", "conference_id": "C1", "category": "PHY"})),
            event("concern-2", "concern.raised", &child, &at("02-10"), json!({"concern_id": "K2", "summary": "wrong child", "category": "NEG"})),
        ],
    )
    .await;
    let police = event(
        "police-1",
        "concern.raised",
        &child,
        &at("01-19"),
        json!({"concern_id": "P1", "summary": "Neighbours heard shouting"}),
    );
    sys.publish(tokens::POLICE, vec![police]).await;
    let before_amendments = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    sys.publish(
        tokens::HARINGEY,
        vec![
            event("fix-1", "record.corrected", &child, &at("03-01"), json!({"corrects": "contact-1", "reason": "outcome mistyped", "data": {"contact_id": "CT1", "source": "6", "summary": "Police called", "outcome": "nfa"}})),
            event("undo-2", "record.retracted", &child, &at("03-01"), json!({"retracts": "concern-2", "reason": "recorded on the wrong child"})),
        ],
    )
    .await;

    let path = format!("/v1/children/{child}/chronology");
    let json = sys.query.get(tokens::HARINGEY, &path).await.json;
    let reference = |id: &str| entry(&json, id)["reference"].as_str().expect("a reference").to_owned();

    // Significance, outcome and the links between statutory steps.
    let discussion = by_type(&json, "strategy_discussion.held");
    assert_eq!(discussion["significant"], true);
    assert_eq!(discussion["outcome"], "a section 47 enquiry");
    assert!(links(discussion).contains(&("followed by".into(), reference("s47-1"))), "{discussion}");
    let s47 = by_type(&json, "s47.started");
    assert_eq!(
        links(s47),
        [
            ("follows referral".to_owned(), reference("ref-1")),
            ("decided at strategy discussion".to_owned(), reference("sd-1")),
            ("followed by".to_owned(), reference("icpc-1")),
        ]
    );
    let conference = by_type(&json, "conference.held");
    assert_eq!(conference["outcome"], "child protection plan");
    let plan = by_type(&json, "cp_plan.started");
    assert_eq!(links(plan), [("decided at conference".to_owned(), reference("icpc-1"))]);
    assert_eq!(by_type(&json, "child.registered")["significant"], false);

    // Each entry names its source as people name it.
    assert_eq!(entry(&json, "police-1")["agency"], json!({"name": "Metropolitan Police", "kind": "police"}));
    assert_eq!(entry(&json, "ref-1")["agency"]["name"], "Haringey children's services");

    // A correction shows what the entry now says and what it said; a retraction what it withdrew.
    let contact = entry(&json, "contact-1");
    assert_eq!(contact["status"], "corrected");
    assert_eq!(contact["corrected_to"]["reference"], reference("fix-1"));
    assert!(contact["corrected_to"]["says"].as_str().unwrap_or("").contains("no further action"), "{contact}");
    let fix = entry(&json, "fix-1");
    assert_eq!(fix["changes"]["reference"], reference("contact-1"));
    assert!(fix["changes"]["says"].as_str().unwrap_or("").contains("referred to children's social care"), "{fix}");
    assert_eq!(fix["narrative"]["text"][0]["text"], "outcome mistyped");
    let undo = entry(&json, "undo-2");
    assert_eq!(undo["changes"]["reference"], reference("concern-2"));
    assert_eq!(undo["narrative"]["text"][0]["text"], "recorded on the wrong child");

    // As it stood before the amendments, nothing of them shows.
    let then = sys.query.get(tokens::HARINGEY, &format!("{path}?as_of={before_amendments}")).await;
    assert_eq!(then.status, 200, "{}", then.text);
    assert!(entry(&then.json, "contact-1").get("corrected_to").is_none(), "{}", then.text);

    let markdown = sys.query.get(tokens::HARINGEY, &format!("{path}?format=md")).await.text;
    assert!(markdown.contains("| significance | outcome | links |"), "{markdown}");
    assert!(markdown.contains("| Metropolitan Police (police) |"), "{markdown}");
    assert!(markdown.contains(&format!("[corrected by {}:", reference("fix-1"))), "{markdown}");
}

const ISLINGTON: &str = "E09000019";

fn members(family: &Value) -> Vec<String> {
    family["children"]
        .as_array()
        .expect("children")
        .iter()
        .filter_map(|c| c["child"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn brothers_and_sisters_are_read_together_within_the_readers_scope_each_read_logged() {
    let sys = System::start().await;
    let (a, b, c) = (new_id(), new_id(), new_id());
    let sibling = |id: &str, child: &str, other: &str| {
        event(
            id,
            "relationship.recorded",
            child,
            "2024-01-05T10:00:00Z",
            json!({"person_id": "SIB", "role": "sibling", "child_id": other}),
        )
    };
    sys.publish(
        tokens::HARINGEY,
        vec![
            registered("reg-a", &a, HARINGEY),
            registered("reg-b", &b, HARINGEY),
            sibling("a-knows-b", &a, &b),
            event(
                "b-seen",
                "child.seen",
                &b,
                "2024-01-04T10:00:00Z",
                json!({"seen_by": "W1", "seen_alone": false, "context": "school"}),
            ),
        ],
    )
    .await;
    // A half-brother in another council names the child from his own record.
    sys.publish(tokens::ISLINGTON, vec![registered("reg-c", &c, ISLINGTON), sibling("c-knows-a", &c, &a)]).await;

    let path = format!("/v1/children/{a}/family");
    let family = sys.query.get(tokens::HARINGEY, &path).await;
    assert_eq!(family.status, 200, "{}", family.text);
    assert_eq!(members(&family.json), [a.clone(), b.clone()], "the Islington brother is outside this reader's scope");
    assert!(!family.text.contains(&c), "nothing tells of a child the reader may not read");
    let lanes: Vec<(&str, &str)> = family.json["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| (e["lane"].as_str().unwrap_or(""), e["id"].as_str().unwrap_or("")))
        .collect();
    assert_eq!(lanes, [("Child 1", "reg-a"), ("Child 2", "reg-b"), ("Child 2", "b-seen"), ("Child 1", "a-knows-b")]);

    // Each child's read is logged.
    let log = tests::query::access_events(&sys.nats.url()).await;
    let read = |child: &str| {
        log.iter().any(|e| {
            e["child"] == child && e["endpoint"] == "GET /v1/children/{child}/family" && e["outcome"] == "allowed"
        })
    };
    assert!(read(&a) && read(&b) && !read(&c), "{log:?}");

    // The page shows a lane a child.
    let page = tests::query::PageSession::sign_in(&sys.query.url(""), tokens::HARINGEY, "A. Worker").await;
    let html = page.get(&format!("/ui/children/{a}?view=family")).await.text().await.expect("the page");
    assert!(
        html.contains(&format!("Child 1 ({})", &a[..8])) && html.contains(&format!("Child 2 ({})", &b[..8])),
        "{html}"
    );
    assert!(!html.contains(&c[..8]), "{html}");

    // An admin sees all three; the link holds from either end; nobody else gets in.
    assert_eq!(members(&sys.query.get(tokens::ADMIN, &path).await.json).len(), 3);
    assert_eq!(
        members(&sys.query.get(tokens::HARINGEY, &format!("/v1/children/{b}/family")).await.json),
        [b.clone(), a.clone()]
    );
    assert_eq!(sys.query.get(tokens::ISLINGTON, &path).await.status, 403);

    // A relationship retracted links nobody.
    let undo = event(
        "undo",
        "record.retracted",
        &a,
        "2024-02-01T10:00:00Z",
        json!({"retracts": "a-knows-b", "reason": "wrong child"}),
    );
    sys.publish(tokens::HARINGEY, vec![undo]).await;
    assert_eq!(members(&sys.query.get(tokens::HARINGEY, &path).await.json), [a]);
}

/// Item 18's leak test: a multi-agency case of more than fifty entries from
/// three agencies, whose free text names the child, her family, her NHS
/// number and her address in every way people write them. The full record
/// shows them to its reader; the anonymised export shows none of them.
#[tokio::test]
async fn the_anonymised_export_of_a_long_multi_agency_case_names_nobody() {
    let sys = System::start().await;
    let child = new_id();
    let address = "12 Elm Road, Tottenham, N17 9PL";
    let mut registration = registered("reg", &child, HARINGEY);
    registration["data"]["person"] = json!({
        "given_name": "Amelia", "family_name": "Hartley", "nhs_number": "9434765919", "address": address,
    });
    let relative = |id: &str, person_id: &str, role: &str, given: &str, family: &str| {
        event(
            id,
            "relationship.recorded",
            &child,
            "2024-01-02T11:00:00Z",
            json!({
                "person_id": person_id, "role": role, "person": {"given_name": given, "family_name": family, "address": address},
            }),
        )
    };
    sys.publish(
        tokens::HARINGEY,
        vec![
            registration,
            relative("mum", "P-MUM", "mother", "Claire", "Hartley"),
            relative("sib", "P-SIB", "sibling", "Noah", "Hartley"),
            relative("partner", "P-HH", "household_member", "Dean", "Rourke"),
        ],
    )
    .await;
    let sayings = [
        "Amelia Hartley came to school hungry; Noah said there was no food at 12 Elm Road",
        "Claire HARTLEY did not answer the door; Dean Rourke was heard shouting",
        "Hartley, Amelia seen at A&E, NHS 943 476 5919, bruise to the left arm",
        "Neighbour at 12 Elm Road reports Dean shouting at amelia late at night",
        "Noah Hartley (brother) says Claire is frightened of Dean Rourke",
    ];
    let publishers = [(tokens::HARINGEY, "csc"), (tokens::POLICE, "police"), (tokens::HEALTH, "health")];
    let mut count = 4;
    for round in 0..6 {
        for (p, (token, tag)) in publishers.iter().enumerate() {
            let mut batch = Vec::new();
            for k in 0..3 {
                let n = round * 9 + p * 3 + k;
                let day = format!("2024-{:02}-{:02}T10:00:00Z", 2 + n / 28, 1 + n % 28);
                let text = sayings[n % sayings.len()];
                let e = if k == 2 {
                    event(
                        &format!("{tag}-seen-{n}"),
                        "child.seen",
                        &child,
                        &day,
                        json!({"seen_by": format!("PRO-{tag}"), "seen_alone": n % 2 == 0, "context": "school"}),
                    )
                } else {
                    event(
                        &format!("{tag}-concern-{n}"),
                        "concern.raised",
                        &child,
                        &day,
                        json!({"concern_id": format!("K{n}"), "summary": text, "category": "NEG"}),
                    )
                };
                batch.push(e);
            }
            sys.publish(token, batch).await;
            count += 3;
        }
    }
    assert!(count >= 50, "{count} entries");

    // The full record names them for its reader.
    let full = sys.query.get(tokens::HARINGEY, &format!("/v1/children/{child}/chronology?limit=500")).await;
    assert_eq!(full.json["entries"].as_array().map(Vec::len), Some(count));
    assert!(full.text.contains("Amelia Hartley came to school hungry"));
    let agencies: std::collections::BTreeSet<&str> =
        full.json["entries"].as_array().expect("entries").iter().filter_map(|e| e["agency"]["kind"].as_str()).collect();
    assert_eq!(agencies.into_iter().collect::<Vec<_>>(), ["council_childrens_services", "health", "police"]);

    // The anonymised export names nobody, in any format.
    let forbidden = [
        "Amelia",
        "amelia",
        "AMELIA",
        "Hartley",
        "HARTLEY",
        "Claire",
        "Noah",
        "Dean",
        "Rourke",
        "9434765919",
        "943 476 5919",
        "Elm Road",
        "N17 9PL",
        "Tottenham",
        child.as_str(),
        &format!("L{}", &child[..8]),
        "P-MUM",
        "P-SIB",
        "P-HH",
    ];
    for format in ["md", "csv", "json", "pdf"] {
        let export =
            sys.query.get(tokens::HARINGEY, &format!("/v1/children/{child}/chronology/export?format={format}")).await;
        assert_eq!(export.status, 200, "{}", export.text);
        for word in forbidden {
            assert!(!export.text.contains(word), "the {format} export names {word:?}:\n{}", export.text);
        }
        assert!(export.text.contains("Child A") && export.text.contains("Mother"), "{}", export.text);
    }
}

#[tokio::test]
async fn professionals_are_named_in_the_full_record_and_by_role_in_the_anonymised_one() {
    let sys = System::start().await;
    let (child, worker) = (new_id(), new_id());
    sys.publish(
        tokens::HARINGEY,
        vec![event(
            "w-joined",
            "worker.joined",
            &worker,
            "2023-06-01T09:00:00Z",
            json!({"council": HARINGEY, "team_id": "T-NORTH", "role": "social_worker", "fte": 1.0, "agency_staff": false,
                   "person": {"given_name": "Joanna", "family_name": "Smithers"}}),
        )],
    )
    .await;
    sys.publish(
        tokens::HARINGEY,
        vec![
            registered("reg", &child, HARINGEY),
            event(
                "alloc",
                "case.allocated",
                &child,
                "2024-01-03T10:00:00Z",
                json!({"worker_id": worker, "team_id": "T-NORTH"}),
            ),
            event(
                "seen",
                "child.seen",
                &child,
                "2024-01-10T10:00:00Z",
                json!({"seen_by": worker, "seen_alone": true, "context": "statutory_visit"}),
            ),
            event(
                "c1",
                "concern.raised",
                &child,
                "2024-01-11T10:00:00Z",
                json!({"concern_id": "K1", "summary": "Joanna Smithers found the flat cold"}),
            ),
        ],
    )
    .await;

    let chronology = sys.query.get(tokens::HARINGEY, &format!("/v1/children/{child}/chronology")).await;
    let named = "Joanna Smithers, social worker, Haringey children's services";
    assert_eq!(entry(&chronology.json, "alloc")["narrative"]["people"], json!([named]), "{}", chronology.text);
    assert_eq!(entry(&chronology.json, "seen")["narrative"]["people"], json!([named]));

    // The name is sealed in the worker's own record: nowhere in clear, on the stream or in a table.
    let stored = tests::tables::every_table_as_text(&sys.pool).await;
    assert!(!stored.contains("Smithers") && !stored.contains("Joanna"), "a table holds the worker's name");
    let stream = tests::gateway::stream_messages(&sys.nats.url()).await;
    assert!(
        stream.iter().all(|(_, p)| !String::from_utf8_lossy(p).contains("Smithers")),
        "the stream holds it in clear"
    );

    // Published, the professional is their role.
    let export = sys.query.get(tokens::HARINGEY, &format!("/v1/children/{child}/chronology/export?format=md")).await;
    assert!(!export.text.contains("Smithers") && !export.text.contains("Joanna"), "{}", export.text);
    assert!(export.text.contains("Social worker 1 found the flat cold"), "{}", export.text);
}

/// The export's bytes, as a court clerk would save them.
async fn export_bytes(sys: &System, child: &str, record: &str, format: &str) -> Vec<u8> {
    let url = sys.query.url(&format!("/v1/children/{child}/chronology/export?record={record}&format={format}"));
    let response =
        reqwest::Client::new().get(url).bearer_auth(tokens::HARINGEY).send().await.expect("the query role answers");
    assert_eq!(response.status(), 200, "{record} {format}");
    response.bytes().await.expect("the body").to_vec()
}

/// `safeguard verify --export` on `bytes` with the public keys alone: its
/// exit status and its report.
fn verify_export(sys: &System, bytes: &[u8], name: &str) -> (bool, Value) {
    let dir = tempfile::tempdir().expect("a directory");
    let file = dir.path().join(name);
    std::fs::write(&file, bytes).expect("write the export");
    let out = std::process::Command::new(tests::safeguard_binary())
        .args(["verify", "--export"])
        .arg(&file)
        .arg("--public-key")
        .arg(sys.gateway.path("signing.key.pub"))
        .arg("--export-public-key")
        .arg(sys.gateway.path("export.key.pub"))
        .env_remove("NATS_URL")
        .env_remove("DATABASE_URL")
        .output()
        .expect("run safeguard verify");
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("a report: {}", String::from_utf8_lossy(&out.stderr)));
    (out.status.success(), report)
}

fn problems(report: &Value) -> Vec<(String, String)> {
    report["problems"]
        .as_array()
        .expect("problems")
        .iter()
        .map(|p| (p["kind"].as_str().unwrap_or("").to_owned(), p["reference"].as_str().unwrap_or("").to_owned()))
        .collect()
}

#[tokio::test]
async fn a_certified_export_verifies_with_the_public_keys_and_names_an_entry_removed_altered_or_moved() {
    let sys = System::certifying().await;
    let child = amelias_record(&sys).await;
    // Three agencies, and a late fact dated before what came earlier, so
    // date order and history order differ.
    let police = event(
        "police-1",
        "concern.raised",
        &child,
        "2024-03-01T10:00:00Z",
        json!({"concern_id": "P1", "category": "PHY", "summary": "Officers called to a disturbance at the address"}),
    );
    sys.publish(tokens::POLICE, vec![police]).await;
    let health = event(
        "health-1",
        "child.seen",
        &child,
        "2024-03-05T10:00:00Z",
        json!({"seen_by": "PRO-HV", "seen_alone": true, "context": "health"}),
    );
    sys.publish(tokens::HEALTH, vec![health]).await;
    let late = event(
        "late-1",
        "concern.raised",
        &child,
        "2024-01-10T10:00:00Z",
        json!({"concern_id": "C0", "category": "NEG", "summary": "Nursery noted Amelia often came in hungry"}),
    );
    let last = sys.publish(tokens::HARINGEY, vec![late]).await;
    let position = last[0]["stream_sequence"].as_u64().expect("position");
    sys.wait_for_checkpoint(position).await;

    // Every export, full and anonymised, in every format, verifies whole.
    for record in ["full", "anonymised"] {
        for format in ["md", "csv", "json", "pdf"] {
            let bytes = export_bytes(&sys, &child, record, format).await;
            let (ok, report) = verify_export(&sys, &bytes, &format!("export.{format}"));
            assert!(ok, "{record} {format}: {report:#}");
            assert_eq!(report["entries"], 7, "{record} {format}");
            assert_eq!(report["certified_through"], 7, "{record} {format}: the checkpoint covers the whole history");
            assert_eq!(report["uncertified"], json!([]), "{record} {format}");
            assert_eq!(report["record"], record);
        }
    }

    // The full record as CSV: one entry removed, one altered, two swapped.
    let csv = String::from_utf8(export_bytes(&sys, &child, "full", "csv").await).expect("text");
    let lines: Vec<&str> = csv.split_inclusive("\r\n").collect();
    let row_of = |reference: &str| lines.iter().position(|l| l.contains(&format!(",{reference},"))).expect("a row");
    let without: String = lines.iter().enumerate().filter(|(i, _)| *i != row_of("E3")).map(|(_, l)| *l).collect();
    let (ok, report) = verify_export(&sys, without.as_bytes(), "removed.csv");
    assert!(!ok);
    assert!(problems(&report).contains(&("removed".into(), "E3".into())), "{report:#}");

    let altered = csv.replacen("Officers called to a disturbance", "Officers called to a quiet visit", 1);
    assert_ne!(altered, csv);
    let (ok, report) = verify_export(&sys, altered.as_bytes(), "altered.csv");
    assert!(!ok);
    assert_eq!(problems(&report), vec![("altered".to_owned(), "E5".to_owned())], "{report:#}");

    let mut moved = lines.clone();
    let (a, b) = (row_of("E5"), row_of("E6"));
    moved.swap(a, b);
    let (ok, report) = verify_export(&sys, moved.concat().as_bytes(), "moved.csv");
    assert!(!ok);
    let named = problems(&report);
    assert!(!named.is_empty() && named.iter().all(|(k, r)| k == "reordered" && (r == "E5" || r == "E6")), "{report:#}");

    // The anonymised Markdown and JSON, altered, name the entry too.
    let md = String::from_utf8(export_bytes(&sys, &child, "anonymised", "md").await).expect("text");
    let altered = md.replacen("Officers called to a disturbance", "Officers were never called", 1);
    assert_ne!(altered, md);
    let (ok, report) = verify_export(&sys, altered.as_bytes(), "altered.md");
    assert!(!ok);
    assert_eq!(problems(&report), vec![("altered".to_owned(), "E5".to_owned())], "{report:#}");
    let json_export: Value =
        serde_json::from_slice(&export_bytes(&sys, &child, "anonymised", "json").await).expect("json");
    let mut fewer = json_export.clone();
    let entries = fewer["entries"].as_array_mut().expect("entries");
    entries.retain(|e| e["reference"] != "E4");
    let (ok, report) = verify_export(&sys, &serde_json::to_vec(&fewer).expect("json"), "removed.json");
    assert!(!ok);
    assert!(problems(&report).contains(&("removed".into(), "E4".into())), "{report:#}");

    // The printable page sets the same blocks, and the pages' own PDF verifies as the API's does.
    let page = tests::query::PageSession::sign_in(&sys.query.url(""), tokens::HARINGEY, "A. Worker").await;
    let printable = page.get(&format!("/ui/children/{child}/print")).await.text().await.expect("html");
    for n in 1..=7 {
        assert!(printable.contains(&format!("E{n}   ")), "E{n} in the printable view");
    }
    assert!(printable.contains("Certified by the checkpoint at event stream position"), "{printable}");
    let from_page = page.get(&format!("/ui/children/{child}/export.pdf?record=full")).await;
    assert_eq!(from_page.status(), 200);
    let (ok, report) = verify_export(&sys, &from_page.bytes().await.expect("pdf"), "page.pdf");
    assert!(ok && report["certified_through"] == 7, "{report:#}");
    let islington = tests::query::PageSession::sign_in(&sys.query.url(""), tokens::ISLINGTON, "B. Worker").await;
    for path in [format!("/ui/children/{child}/print"), format!("/ui/children/{child}/export.pdf")] {
        assert_eq!(islington.get(&path).await.status(), 403, "{path}: another council's reader sees nothing");
    }

    // A PDF whose page was changed no longer matches the record it carries.
    let pdf = export_bytes(&sys, &child, "full", "pdf").await;
    let at = pdf.windows(8).position(|w| w == b"Officers").expect("the page shows the police's words");
    let mut changed = pdf.clone();
    changed[at..at + 8].copy_from_slice(b"Soldiers");
    let (ok, report) = verify_export(&sys, &changed, "changed.pdf");
    assert!(!ok, "{report:#}");
    assert!(report["problems"].to_string().contains("pages"), "{report:#}");
}

#[tokio::test]
async fn a_publisher_names_the_authors_role_and_marks_significance_and_a_bad_mark_is_refused() {
    let sys = System::start().await;
    let child = amelias_record(&sys).await;
    let mut marked = event(
        "police-marked",
        "concern.raised",
        &child,
        "2024-03-01T10:00:00Z",
        json!({"concern_id": "P1", "category": "PHY", "summary": "Officers called to a disturbance"}),
    );
    marked["authorrole"] = json!("police_officer");
    marked["significant"] = json!(true);
    sys.publish(tokens::POLICE, vec![marked.clone()]).await;
    let mut referral = event(
        "referral-unmarked",
        "referral.received",
        &child,
        "2024-03-02T10:00:00Z",
        json!({"referral_id": "R1", "source": "6", "nfa": false, "primary_need": "N1"}),
    );
    referral["significant"] = json!(false);
    sys.publish(tokens::HARINGEY, vec![referral]).await;

    let chronology = sys.query.get(tokens::HARINGEY, &format!("/v1/children/{child}/chronology")).await;
    let police = entry(&chronology.json, "police-marked");
    assert_eq!((police["significant"].clone(), police["author"].clone()), (json!(true), json!("police officer")));
    assert_eq!(entry(&chronology.json, "referral-unmarked")["significant"], false, "the publisher's mark wins");
    assert_eq!(entry(&chronology.json, "concern-1")["significant"], false, "a concern is not significant unmarked");
    assert!(entry(&chronology.json, "concern-1").get("author").is_none());
    let csv = sys.query.get(tokens::HARINGEY, &format!("/v1/children/{child}/chronology?format=csv")).await;
    assert!(csv.text.contains("author: police officer"), "{}", csv.text);
    let page = tests::query::PageSession::sign_in(&sys.query.url(""), tokens::HARINGEY, "A. Worker").await;
    let timeline = page.get(&format!("/ui/children/{child}")).await.text().await.expect("html");
    assert_eq!(timeline.matches("class=\"badge significant\"").count(), 1, "the police's marked concern only");
    assert!(timeline.contains("author: police officer"), "the timeline names the author's role");
    let export = sys.query.get(tokens::HARINGEY, &format!("/v1/children/{child}/chronology/export?format=json")).await;
    let exported = export.json["entries"].as_array().expect("entries");
    assert!(exported.iter().any(|e| e["author"] == "police officer"), "{}", export.text);

    // A role outside the list, or a mark that is not a boolean, is refused by name.
    let mut bad = marked.clone();
    bad["id"] = json!("police-bad");
    bad["authorrole"] = json!("constable");
    bad["significant"] = json!("yes");
    let r = sys.gateway.post(tokens::POLICE, &bad).await;
    assert_eq!(r.status, 422, "{}", r.text);
    let pointers: Vec<&str> =
        r.json["errors"].as_array().expect("errors").iter().filter_map(|e| e["pointer"].as_str()).collect();
    assert_eq!(pointers, ["/authorrole", "/significant"], "{}", r.text);
    // The same id with another mark is another event: refused, the first kept.
    let mut remarked = marked.clone();
    remarked["significant"] = json!(false);
    let r = sys.gateway.post(tokens::POLICE, &remarked).await;
    assert_eq!(r.status, 409, "{}", r.text);
    let again = sys.gateway.post(tokens::POLICE, &marked).await;
    assert_eq!((again.status, again.result(0)["duplicate"].clone()), (201, json!(true)), "{}", again.text);
}
