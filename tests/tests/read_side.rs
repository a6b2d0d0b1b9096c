//! The read side takes any history the gateway accepts: the histories that
//! real councils' data hold (overlapping referrals, ids used twice, plans
//! without conferences, facts about ids that never existed) are applied
//! without a single interruption, and a clean rebuild leaves the same
//! tables.

use serde_json::{Value, json};
use tests::fixtures::event;
use tests::gateway::tokens;
use tests::system::System;

/// Publishes each event in its own request, as an agency system sends them
/// one at a time, so the projector refolds the child after every event.
async fn publish_each(system: &System, events: &[Value]) -> u64 {
    let mut last = 0;
    for e in events {
        let r = system.gateway.post(tokens::ADMIN, e).await;
        assert_eq!(r.status, 201, "{}", r.text);
        last = r.json["results"][0]["stream_sequence"].as_u64().or(r.json["stream_sequence"].as_u64()).unwrap_or(last);
        // One batch per event: the projector catches up before the next.
        system.projector.wait_clean(last).await;
    }
    last
}

fn child_event(n: usize, t: &str, child: &str, time: &str, data: Value) -> Value {
    event(&format!("e-{n}"), t, child, time, data)
}

/// The reported reproduction: a second referral while the first is still
/// open, then a protection enquiry, conference and plan on the second.
/// The first refold writes a quality flag for the overlap; every later one
/// wrote it again and collided on the flag's key, for ever.
#[tokio::test]
async fn a_second_referral_while_the_first_is_open_then_a_plan_is_applied_without_a_stall() {
    let system = System::start().await;
    let child = uuid::Uuid::new_v4().to_string();
    let history = [
        (
            "child.registered",
            "2021-06-01T09:00:00Z",
            json!({"council": "E09000014", "la_child_id": "OVL1", "sex": "F", "birth_date": "2016-02-03"}),
        ),
        ("referral.received", "2022-01-10T09:00:00Z", json!({"referral_id": "R0", "source": "6", "nfa": false})),
        ("referral.received", "2024-09-02T09:00:00Z", json!({"referral_id": "R1", "source": "1B", "nfa": false})),
        ("assessment.started", "2024-09-03T09:00:00Z", json!({"assessment_id": "A1", "referral_id": "R1"})),
        (
            "strategy_discussion.held",
            "2024-09-04T09:00:00Z",
            json!({"discussion_id": "SD1", "referral_id": "R1", "agencies": ["police", "health"], "decision": "s47"}),
        ),
        ("s47.started", "2024-09-04T10:00:00Z", json!({"s47_id": "S1", "referral_id": "R1", "discussion_id": "SD1"})),
        (
            "conference.held",
            "2024-09-20T10:00:00Z",
            json!({"conference_id": "C1", "kind": "initial", "s47_id": "S1", "outcome": "plan"}),
        ),
        ("cp_plan.started", "2024-09-20T11:00:00Z", json!({"plan_id": "P1", "conference_id": "C1", "category": "NEG"})),
        ("cp_plan.ended", "2025-03-20T11:00:00Z", json!({"plan_id": "P1"})),
    ];
    let events: Vec<Value> =
        history.iter().enumerate().map(|(n, (t, time, data))| child_event(n, t, &child, time, data.clone())).collect();
    let last = publish_each(&system, &events).await;
    system.projector.wait_clean(last).await;

    let chronology = system.query.get(tokens::ADMIN, &format!("/v1/children/{child}/chronology")).await;
    assert_eq!(chronology.status, 200, "{}", chronology.text);
    assert_eq!(chronology.json["entries"].as_array().map(Vec::len), Some(events.len()));
}
