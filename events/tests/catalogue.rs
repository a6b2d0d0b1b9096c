//! Every catalogue type: a valid example parses, round-trips, has its JSON
//! shape pinned, and names exactly the required and personal fields the
//! contract gives it.

use chrono::{DateTime, Utc};
use events::canonical::canonical;
use events::catalogue::{CorrectedData, EventData, RecordCorrected};
use events::{EventType, Problems, examples, parse_received, personal_pointers};
use serde_json::Value;
use std::collections::BTreeMap;

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2025-06-01T12:00:00Z").expect("time").with_timezone(&Utc)
}

fn parse_data(t: EventType, data: &Value) -> Result<EventData, Problems> {
    let mut problems = Problems::new();
    EventData::parse(t, data, "/data", &mut problems).ok_or(problems)
}

/// The canonical bytes of each example's data, one line per type. Changing a
/// type's wire shape changes this file, which is the point: stored events
/// are forever, so a shape change must be a deliberate, reviewed act
/// (`SAFEGUARD_BLESS=1 cargo test -p events --test catalogue` rewrites it).
const PINNED: &str = include_str!("golden/catalogue-shapes.txt");

#[test]
fn every_type_parses_its_example_and_round_trips() {
    for &t in EventType::ALL {
        let event = examples::event(t, "ex-1", "2025-01-14T09:30:00Z");
        let parsed = parse_received(&event, now()).unwrap_or_else(|p| panic!("{t}: {p}"));
        assert_eq!(parsed.event_type, t);
        let back = serde_json::to_value(&parsed.data).expect("serialise");
        assert_eq!(back, examples::data(t), "{t} does not round-trip");
    }
}

#[test]
fn every_type_has_its_json_shape_pinned() {
    let pinned: BTreeMap<&str, &str> = PINNED.lines().filter_map(|l| l.split_once(' ')).collect();
    let mut actual = String::new();
    let lines: Vec<(EventType, String)> = EventType::ALL
        .iter()
        .map(|&t| {
            let data = parse_data(t, &examples::data(t)).expect("valid");
            let bytes = canonical(&serde_json::to_value(&data).expect("json"));
            (t, String::from_utf8(bytes).expect("utf-8"))
        })
        .collect();
    if std::env::var_os("SAFEGUARD_BLESS").is_some() {
        let text: String = lines.iter().map(|(t, l)| format!("{} {l}\n", t.name())).collect();
        std::fs::write(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/catalogue-shapes.txt"), text).expect("write");
        return;
    }
    for (t, line) in lines {
        actual.push_str(&format!("{} {}\n", t.name(), line));
        assert_eq!(
            pinned.get(t.name()).copied(),
            Some(line.as_str()),
            "{t} shape differs from tests/golden/catalogue-shapes.txt"
        );
    }
    assert_eq!(pinned.len(), EventType::ALL.len(), "the golden file lists types the catalogue lacks:\n{actual}");
}

#[test]
fn the_catalogue_is_the_contracts_v1_list_the_pre_proceedings_and_the_alerts() {
    let names: Vec<&str> = EventType::ALL.iter().map(|t| t.name()).collect();
    // CONTRACT.md's 38, the six of the 2026-27 census's module 5 (issue 19),
    // and alert.acknowledged with cin_plan.reviewed (issue 20).
    assert_eq!(names.len(), 46);
    for t in EventType::ALL {
        assert_eq!(EventType::from_name(t.name()), Some(*t));
    }
    let admin: Vec<&str> = EventType::ALL.iter().filter(|t| t.admin_only()).map(|t| t.name()).collect();
    assert_eq!(admin, ["record.sealed", "record.unsealed", "review.opened", "review.closed", "council.configured"]);
}

/// CONTRACT.md's `R` fields per type, found by removing each field of the
/// example in turn and seeing whether parsing then names it as required.
#[test]
fn each_required_field_missing_is_named() {
    let expected: BTreeMap<&str, Vec<&str>> = [
        ("child.registered", vec!["birth_date", "council", "la_child_id", "sex"]),
        ("child.details_updated", vec![]),
        ("child.transferred", vec!["council"]),
        ("child.died", vec!["date"]),
        ("relationship.recorded", vec!["person_id", "role"]),
        ("contact.recorded", vec!["contact_id", "source", "summary"]),
        ("referral.received", vec!["nfa", "referral_id", "source"]),
        ("assessment.started", vec!["assessment_id", "referral_id"]),
        ("assessment.completed", vec!["assessment_id", "child_seen", "factors", "needs_support"]),
        ("strategy_discussion.held", vec!["agencies", "decision", "discussion_id", "referral_id"]),
        ("s47.started", vec!["referral_id", "s47_id"]),
        ("s47.completed", vec!["icpc_required", "s47_id"]),
        ("conference.held", vec!["conference_id", "kind", "outcome"]),
        ("cp_plan.started", vec!["category", "conference_id", "plan_id"]),
        ("cp_plan.category_changed", vec!["category", "plan_id"]),
        ("cp_plan.ended", vec!["plan_id"]),
        ("cin_plan.started", vec!["plan_id", "referral_id"]),
        ("cin_plan.ended", vec!["plan_id"]),
        ("cin_plan.reviewed", vec!["plan_id"]),
        ("child.seen", vec!["context", "seen_alone", "seen_by"]),
        ("case.allocated", vec!["team_id", "worker_id"]),
        ("case.deallocated", vec!["worker_id"]),
        ("case.closed", vec!["reason", "referral_id"]),
        ("concern.raised", vec!["concern_id", "summary"]),
        ("information.shared", vec!["purpose", "with_agency"]),
        ("pre_proceedings.started", vec!["pre_proceedings_id"]),
        ("pre_proceedings.letter_sent", vec!["letter", "pre_proceedings_id"]),
        ("family_group_meeting.offered", vec!["pre_proceedings_id"]),
        ("family_group_meeting.held", vec!["pre_proceedings_id"]),
        ("pre_proceedings.meeting_held", vec!["kind", "pre_proceedings_id"]),
        ("pre_proceedings.decided", vec!["outcome", "pre_proceedings_id"]),
        ("court.application_filed", vec!["court", "kind", "proceedings_id"]),
        ("court.hearing_held", vec!["proceedings_id"]),
        ("court.order_made", vec!["order", "proceedings_id"]),
        ("court.proceedings_concluded", vec!["proceedings_id"]),
        ("record.corrected", vec!["corrects", "data", "reason"]),
        ("record.retracted", vec!["reason", "retracts"]),
        ("record.sealed", vec!["reason"]),
        ("record.unsealed", vec!["reason"]),
        ("review.opened", vec!["kind", "review_id", "reviewers"]),
        ("review.closed", vec!["review_id"]),
        ("alert.acknowledged", vec!["alert_id"]),
        ("worker.joined", vec!["agency_staff", "council", "fte", "role", "team_id"]),
        ("worker.changed", vec![]),
        ("worker.left", vec![]),
        ("council.configured", vec!["effective_from"]),
    ]
    .into_iter()
    .collect();

    for &t in EventType::ALL {
        let example = examples::data(t);
        let mut required = Vec::new();
        for field in example.as_object().expect("object").keys() {
            let mut without = example.clone();
            without.as_object_mut().expect("object").remove(field);
            let pointer = format!("/data/{field}");
            if let Err(problems) = parse_data(t, &without) {
                let named = problems.iter().any(|p| p.pointer == pointer && p.message.starts_with("is required"));
                if named {
                    required.push(field.as_str());
                }
            }
        }
        required.sort();
        assert_eq!(required, expected[t.name()], "required fields of {t}");
    }
}

/// Personal data is the `person` object and every free-text field: `summary`,
/// `reason` (except case.closed's, which is a code), `purpose` and `note`.
#[test]
fn personal_fields_are_known_from_the_types() {
    for &t in EventType::ALL {
        let example = examples::data(t);
        let data = parse_data(t, &example).expect("valid");
        let found = personal_pointers(&data, "/data");
        let expected: Vec<String> = example
            .as_object()
            .expect("object")
            .keys()
            .filter(|k| match k.as_str() {
                "person" | "summary" | "purpose" | "note" => true,
                "reason" => t != EventType::CaseClosed,
                _ => false,
            })
            .map(|k| format!("/data/{k}"))
            .collect();
        assert_eq!(found, expected, "personal fields of {t}");
    }
}

#[test]
fn a_correction_is_checked_against_the_type_it_corrects() {
    let mut problems = Problems::new();
    let mut correction = match EventData::parse(
        EventType::RecordCorrected,
        &examples::data(EventType::RecordCorrected),
        "/data",
        &mut problems,
    ) {
        Some(EventData::RecordCorrected(c)) => c,
        other => panic!("not a correction: {other:?}"),
    };
    assert!(matches!(correction.data, CorrectedData::Unresolved(_)));
    assert!(correction.clone().resolve(EventType::ChildSeen, "/data").is_err(), "referral data is not a sighting");
    assert!(correction.clone().resolve(EventType::RecordRetracted, "/data").is_err(), "corrections correct originals");
    correction.resolve(EventType::ReferralReceived, "/data").expect("matches");
    assert!(matches!(correction.data, CorrectedData::Resolved(_)));

    // Once resolved, personal fields inside the corrected data are known too.
    let mut contact = RecordCorrected {
        data: CorrectedData::Unresolved(
            examples::data(EventType::ContactRecorded).as_object().expect("object").clone(),
        ),
        ..correction
    };
    contact.resolve(EventType::ContactRecorded, "/data").expect("valid");
    let pointers = personal_pointers(&EventData::RecordCorrected(contact), "/data");
    assert_eq!(pointers, ["/data/reason", "/data/data/summary"]);
}

/// The stored form is read by the same types: every personal field must be
/// sealed there (clear text where a sealed value belongs is a leak), and a
/// publisher may not send a sealed value (it is not theirs to make). The
/// rest of the data reads the same in both forms.
#[test]
fn personal_fields_are_clear_as_received_and_sealed_as_stored() {
    use events::Personal;
    use events::privacy::{DataKey, associated_data, seal_fields};
    let key = DataKey::from_bytes([9; 32]);
    let place = ("7d1c9c1e-8a4e-4c5e-9f3f-0c9f6f3f2b11", "haringey-csc", "e-1");
    for &t in EventType::ALL {
        let example = examples::data(t);
        let received = parse_data(t, &example).expect("valid");
        let pointers = personal_pointers(&received, "/data");
        let mut doc = serde_json::json!({ "data": example.clone() });
        seal_fields(&mut doc, &pointers, &key, place, || [1; 24]);
        let stored = EventData::parse_stored(t, &doc["data"]).unwrap_or_else(|p| panic!("{t} stored: {p}"));
        assert_eq!(personal_pointers(&stored, "/data"), pointers, "{t}");
        assert_eq!(serde_json::to_value(&stored).expect("json"), doc["data"], "{t}: the stored form round-trips");
        if pointers.is_empty() {
            assert_eq!(stored, received, "{t}: nothing personal, nothing differs");
            continue;
        }
        // Clear personal data in the stored form is refused, field by field.
        let clear = EventData::parse_stored(t, &example).expect_err("clear text stored");
        let named: Vec<&str> = clear.iter().map(|p| p.pointer.as_str()).collect();
        assert_eq!(named, pointers.iter().map(String::as_str).collect::<Vec<_>>(), "{t}");
        assert!(clear.iter().all(|p| p.message.contains("sealed")), "{t}: {clear}");
        // A sealed value from a publisher is refused.
        assert!(parse_data(t, &doc["data"]).is_err(), "{t}: a publisher sent a sealed value");
        // Sealed values open, with the key in their place, to what was sent.
        if let EventData::ChildRegistered(d) = &stored {
            let person: &Personal<_> = d.person.as_ref().expect("person");
            let aad = associated_data(place.0, place.1, place.2, "/data/person");
            let opened = person.opened(&key, &aad).expect("opens");
            let EventData::ChildRegistered(sent) = &received else { unreachable!() };
            assert_eq!(Some(&opened), sent.person.as_ref().and_then(Personal::clear));
            let elsewhere = associated_data(place.0, place.1, "e-2", "/data/person");
            assert!(person.opened(&key, &elsewhere).is_none(), "a sealed value does not open in another place");
        }
    }
}
