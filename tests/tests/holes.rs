//! The ways around the backbone's promises that an adversarial review found
//! (issue 17), each reproduced through the public interface with a real
//! credential and named after what it proves.

use serde_json::{Value, json};
use tests::fixtures::{event, registered};
use tests::gateway::tokens;
use tests::system::System;

const HARINGEY: &str = "E09000014";
const ISLINGTON: &str = "E09000019";

fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// The pointers a refusal names.
fn pointers(answer: &Value) -> Vec<String> {
    answer["errors"].as_array().into_iter().flatten().filter_map(|e| e["pointer"].as_str().map(str::to_owned)).collect()
}

/// The council the read side holds the child in.
async fn council_of(sys: &System, child: &str) -> Option<String> {
    sqlx::query_scalar("select council from child_status where child_id = $1::uuid")
        .bind(child)
        .fetch_one(&sys.pool)
        .await
        .expect("child_status")
}

#[tokio::test]
async fn a_childs_council_changes_only_by_transfer_and_its_registration_is_never_retracted() {
    let sys = System::start().await;
    let child = new_id();
    let registration = registered("reg", &child, HARINGEY);
    let seen = json!({"seen_by": new_id(), "seen_alone": true, "context": "statutory_visit"});
    sys.publish(
        tokens::HARINGEY,
        vec![registration.clone(), event("visit", "child.seen", &child, "2024-02-01T10:00:00Z", seen.clone())],
    )
    .await;

    // A correction of the registration naming another council: refused,
    // at the field, and nothing stored.
    let mut elsewhere = registration["data"].clone();
    elsewhere["council"] = ISLINGTON.into();
    let moving = event(
        "move",
        "record.corrected",
        &child,
        "2024-02-02T10:00:00Z",
        json!({"corrects": "reg", "reason": "wrong council", "data": elsewhere}),
    );
    let refused = sys.gateway.post(tokens::HARINGEY, &json!([moving])).await;
    assert_eq!(refused.status, 422, "{}", refused.text);
    assert_eq!(pointers(&refused.json), ["/data/data/council"], "{}", refused.text);

    // Retracting the registration: refused too.
    let hiding = event(
        "hide",
        "record.retracted",
        &child,
        "2024-02-02T10:00:00Z",
        json!({"retracts": "reg", "reason": "entered in error"}),
    );
    let refused = sys.gateway.post(tokens::HARINGEY, &json!([hiding])).await;
    assert_eq!(refused.status, 422, "{}", refused.text);
    assert_eq!(pointers(&refused.json), ["/data/retracts"], "{}", refused.text);

    // Correcting the registration's other fields still works.
    let mut fixed = registration["data"].clone();
    fixed["sex"] = "M".into();
    sys.publish(
        tokens::HARINGEY,
        vec![event(
            "fix",
            "record.corrected",
            &child,
            "2024-02-02T10:00:00Z",
            json!({"corrects": "reg", "reason": "sex recorded wrongly", "data": fixed}),
        )],
    )
    .await;

    // Both sides still hold the child in Haringey: its practitioners read
    // it, its publisher publishes, Islington's may not.
    let path = format!("/v1/children/{child}/chronology");
    assert_eq!(sys.query.get(tokens::HARINGEY, &path).await.status, 200);
    assert_eq!(council_of(&sys, &child).await.as_deref(), Some(HARINGEY));
    let more = event("visit-2", "child.seen", &child, "2024-03-01T10:00:00Z", seen.clone());
    sys.publish(tokens::HARINGEY, vec![more]).await;
    let islington = event("isl", "child.seen", &child, "2024-03-02T10:00:00Z", seen.clone());
    assert_eq!(sys.gateway.post(tokens::ISLINGTON, &json!([islington.clone()])).await.status, 403);

    // A transfer moves it, on both sides at once.
    let transfer = event("out", "child.transferred", &child, "2024-04-01T10:00:00Z", json!({"council": ISLINGTON}));
    sys.publish(tokens::HARINGEY, vec![transfer]).await;
    sys.publish(tokens::ISLINGTON, vec![islington]).await;
    let late = event("late", "child.seen", &child, "2024-04-02T10:00:00Z", seen);
    assert_eq!(sys.gateway.post(tokens::HARINGEY, &json!([late])).await.status, 403);
    assert_eq!(sys.query.get(tokens::HARINGEY, &path).await.status, 403, "Haringey's practitioners no longer read it");
    assert_eq!(council_of(&sys, &child).await.as_deref(), Some(ISLINGTON));
}
