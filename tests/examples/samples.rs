//! The sample chronologies in `docs/samples/`: a made-up multi-agency case
//! (Amelia Hartley, her mother, her brother and her mother's partner; a
//! council, the police and a health trust) published through a real
//! gateway into a real NATS, projected into a real PostgreSQL, and read
//! back through the query role as a practitioner reads it (the full record
//! with the Public Law Outline's columns) and as it is published (the
//! anonymised export). Every name in it is invented.
//!
//! `ops/samples` runs it: `cargo run -p tests --example samples -- docs/samples`

#![allow(clippy::print_stdout, clippy::expect_used)] // a command that writes files and says so

use serde_json::{Value, json};
use tests::fixtures::{event, registered};
use tests::gateway::tokens;
use tests::system::System;

const HARINGEY: &str = "E09000014";

#[tokio::main]
async fn main() {
    let out = std::path::PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "docs/samples".into()));
    std::fs::create_dir_all(&out).expect("the output directory");
    // A gateway that signs checkpoints often, so the exports are certified to their last entry.
    let sys = System::certifying().await;
    let child = uuid::Uuid::new_v4().to_string();
    let at = |day: &str| format!("2024-{day}T10:00:00Z");
    let address = "12 Elm Road, Tottenham, N17 9PL";
    let mut registration = registered("reg-1", &child, HARINGEY);
    registration["data"]["person"] =
        json!({"given_name": "Amelia", "family_name": "Hartley", "nhs_number": "9434765919", "address": address});
    let relative = |id: &str, person_id: &str, role: &str, given: &str, family: &str| {
        event(
            id,
            "relationship.recorded",
            &child,
            &at("01-02"),
            json!({
                "person_id": person_id, "role": role, "person": {"given_name": given, "family_name": family},
            }),
        )
    };
    let csc = vec![
        registration,
        relative("rel-mum", "P-MUM", "mother", "Claire", "Hartley"),
        relative("rel-sib", "P-SIB", "sibling", "Noah", "Hartley"),
        relative("rel-hh", "P-HH", "household_member", "Dean", "Rourke"),
        event(
            "contact-1",
            "contact.recorded",
            &child,
            &at("01-15"),
            json!({"contact_id": "CT1", "source": "2A", "outcome": "referral",
            "summary": "School: Amelia came in hungry and said Dean Rourke shouts at her mother"}),
        ),
        event(
            "referral-1",
            "referral.received",
            &child,
            &at("01-16"),
            json!({"referral_id": "R1", "source": "2A", "nfa": false, "primary_need": "N1"}),
        ),
    ];
    sys.publish(tokens::HARINGEY, csc).await;
    let worker = uuid::Uuid::new_v4().to_string();
    sys.publish(
        tokens::HARINGEY,
        vec![event(
            "w-joined",
            "worker.joined",
            &worker,
            "2023-09-01T09:00:00Z",
            json!({"council": HARINGEY, "team_id": "T-NORTH", "role": "social_worker", "fte": 1.0,
                   "agency_staff": false, "person": {"given_name": "Joanna", "family_name": "Smithers"}}),
        )],
    )
    .await;
    sys.publish(
        tokens::HARINGEY,
        vec![
            event(
                "alloc-1",
                "case.allocated",
                &child,
                &at("01-17"),
                json!({"worker_id": worker, "team_id": "T-NORTH"}),
            ),
            event(
                "seen-1",
                "child.seen",
                &child,
                &at("01-18"),
                json!({"seen_by": worker, "seen_alone": true, "context": "statutory_visit"}),
            ),
        ],
    )
    .await;
    sys.publish(
        tokens::POLICE,
        vec![event(
            "police-1",
            "concern.raised",
            &child,
            &at("01-20"),
            json!({"concern_id": "PC7", "category": "EMO",
            "summary": "Called to 12 Elm Road at 23:40: shouting; Claire Hartley declined to make a statement"}),
        )],
    )
    .await;
    sys.publish(
        tokens::HEALTH,
        vec![event(
            "health-1",
            "concern.raised",
            &child,
            &at("01-22"),
            json!({"concern_id": "HV3", "category": "PHY",
            "summary": "Health visitor saw a bruise on Amelia's upper arm; Noah said she fell"}),
        )],
    )
    .await;
    let casework = vec![
        event(
            "sd-1",
            "strategy_discussion.held",
            &child,
            &at("01-23"),
            json!({"discussion_id": "D1", "referral_id": "R1", "agencies": ["police", "health", "school"], "decision": "s47"}),
        ),
        event(
            "s47-1",
            "s47.started",
            &child,
            &at("01-23"),
            json!({"s47_id": "S1", "referral_id": "R1", "discussion_id": "D1"}),
        ),
        event("s47-2", "s47.completed", &child, &at("02-06"), json!({"s47_id": "S1", "icpc_required": true})),
        event(
            "icpc-1",
            "conference.held",
            &child,
            &at("02-14"),
            json!({"conference_id": "C1", "kind": "initial", "s47_id": "S1", "outcome": "plan"}),
        ),
        event(
            "plan-1",
            "cp_plan.started",
            &child,
            &at("02-14"),
            json!({"plan_id": "P1", "conference_id": "C1", "category": "PHY"}),
        ),
    ];
    sys.publish(tokens::HARINGEY, casework).await;
    // A mistake put right: the corrected entry says what it now says, and the correction what it said.
    sys.publish(
        tokens::HARINGEY,
        vec![event(
            "fix-1",
            "record.corrected",
            &child,
            &at("02-20"),
            json!({"corrects": "referral-1", "reason": "the school, not the health visitor, referred",
                "data": {"referral_id": "R1", "source": "2A", "nfa": false, "primary_need": "N2"}}),
        )],
    )
    .await;
    let last: i64 =
        sqlx::query_scalar("select max(stream_seq) from stored_event").fetch_one(&sys.pool).await.expect("read");
    sys.wait_for_checkpoint(last.max(0) as u64).await;
    let path = format!("/v1/children/{child}/chronology");
    let full = sys.query.get(tokens::HARINGEY, &format!("{path}?format=md")).await;
    let export = sys.query.get(tokens::HARINGEY, &format!("{path}/export?format=md")).await;
    assert_eq!((full.status, export.status), (200, 200), "{} {}", full.text, export.text);
    let note = |what: &str| {
        format!(
            "<!-- Made by ops/samples (tests/examples/samples.rs): {what} of an invented case, read back \
             through the query role. Every name is made up. -->\n\n"
        )
    };
    let write = |file: &str, text: String| {
        let path = out.join(file);
        std::fs::write(&path, text).expect("write the sample");
        println!("wrote {}", path.display());
    };
    write("chronology.md", note("the full record, as a practitioner of the council reads it,") + &full.text);
    write("export.md", note("the anonymised export, certified") + &export.text);
    let pdf = reqwest::Client::new()
        .get(sys.query.url(&format!("{path}/export?record=full&format=pdf")))
        .bearer_auth(tokens::HARINGEY)
        .send()
        .await
        .expect("the query role answers")
        .bytes()
        .await
        .expect("the PDF");
    std::fs::write(out.join("court-bundle.pdf"), &pdf).expect("write the sample");
    println!("wrote {}", out.join("court-bundle.pdf").display());
    let json: Value = sys.query.get(tokens::HARINGEY, &path).await.json;
    println!("{} entries", json["entries"].as_array().map_or(0, Vec::len));
}
