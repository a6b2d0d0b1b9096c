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
    assert!(csv.text.starts_with("serial,date,event,source_reference,reference,narrative,"), "{}", csv.text);
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
    let erased = reqwest::Client::new()
        .post(sys.gateway.url(&format!("/v1/children/{child}/erasure")))
        .bearer_auth(tokens::ADMIN)
        .header("x-purpose", "retention_ended")
        .send()
        .await
        .expect("the gateway answers");
    assert_eq!(erased.status(), 200);
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
