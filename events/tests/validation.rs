//! Every validation class is refused with the right JSON pointer, and
//! problems never repeat the offending value.

use chrono::{DateTime, Utc};
use events::{EventType, Problems, examples, parse_received};
use serde_json::{Value, json};

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2025-06-01T12:00:00Z").expect("time").with_timezone(&Utc)
}

fn example(t: EventType) -> Value {
    examples::event(t, "ev-1", "2025-01-14T09:30:00Z")
}

fn problems_of(event: &Value) -> Problems {
    match parse_received(event, now()) {
        Ok(_) => panic!("accepted: {event}"),
        Err(p) => p,
    }
}

/// Asserts that `event` is refused with a problem at `pointer` whose message
/// contains `words`.
#[track_caller]
fn refused_at(event: &Value, pointer: &str, words: &str) {
    let problems = problems_of(event);
    assert!(
        problems.iter().any(|p| p.pointer == pointer && p.message.contains(words)),
        "expected a problem at {pointer} containing {words:?}, got: {problems}"
    );
}

fn with(mut event: Value, pointer: &str, value: Value) -> Value {
    *event.pointer_mut(pointer).unwrap_or_else(|| panic!("no {pointer}")) = value;
    event
}

fn without(mut event: Value, pointer: &str) -> Value {
    let (parent, name) = pointer.rsplit_once('/').expect("pointer");
    let parent = if parent.is_empty() { &mut event } else { event.pointer_mut(parent).expect("parent") };
    parent.as_object_mut().expect("object").remove(name);
    event
}

#[test]
fn each_missing_envelope_attribute_is_named() {
    for attribute in ["specversion", "id", "type", "subject", "time", "data"] {
        let event = without(example(EventType::ReferralReceived), &format!("/{attribute}"));
        refused_at(&event, &format!("/{attribute}"), "is required");
    }
}

#[test]
fn wrong_specversion() {
    refused_at(&with(example(EventType::ChildDied), "/specversion", json!("0.3")), "/specversion", "1.0");
}

#[test]
fn unknown_type_and_unknown_fields() {
    refused_at(&with(example(EventType::ChildDied), "/type", json!("child.vanished")), "/type", "not an event type");
    let mut e = example(EventType::ChildDied);
    e["colour"] = json!("blue");
    refused_at(&e, "/colour", "not a known attribute");
    let mut e = example(EventType::ReferralReceived);
    e["data"]["urgency"] = json!("high");
    refused_at(&e, "/data/urgency", "not a known field");
    let mut e = example(EventType::ChildRegistered);
    e["data"]["person"]["nickname"] = json!("Sammy");
    refused_at(&e, "/data/person/nickname", "not a known field");
}

#[test]
fn backbone_attributes_cannot_be_sent() {
    for attribute in ["sequence", "prevhash", "hash", "signature"] {
        let mut e = example(EventType::ChildDied);
        e[attribute] = json!(1);
        refused_at(&e, &format!("/{attribute}"), "set by the backbone");
    }
}

#[test]
fn subjects_must_fit_the_type() {
    refused_at(&with(example(EventType::ChildDied), "/subject", json!("R-4411")), "/subject", "child UUID");
    refused_at(
        &with(example(EventType::ChildDied), "/subject", json!("7D1C9C1E-8A4E-4C5E-9F3F-0C9F6F3F2B11")),
        "/subject",
        "lowercase",
    );
    refused_at(
        &with(example(EventType::CouncilConfigured), "/subject", json!(examples::CHILD)),
        "/subject",
        "ONS code",
    );
    refused_at(&with(example(EventType::WorkerLeft), "/subject", json!("E09000014")), "/subject", "worker UUID");
}

#[test]
fn times_need_an_offset_and_may_not_be_in_the_future() {
    let e = example(EventType::ChildDied);
    refused_at(&with(e.clone(), "/time", json!("2025-01-14T09:30:00")), "/time", "offset");
    refused_at(&with(e.clone(), "/time", json!("14/01/2025")), "/time", "RFC 3339");
    refused_at(&with(e.clone(), "/time", json!("2025-06-01T12:06:00Z")), "/time", "future");
    refused_at(&with(e, "/data/date", json!("2025-02-30")), "/data/date", "real date");
}

#[test]
fn each_code_set_refuses_a_wrong_code() {
    let cases = [
        (EventType::ChildRegistered, "/data/sex", "sex code"),
        (EventType::ChildRegistered, "/data/ethnicity", "ethnicity code"),
        (EventType::ChildRegistered, "/data/disabilities/0", "disability code"),
        (EventType::ChildRegistered, "/data/person/upn_unknown", "UPN unknown reason"),
        (EventType::ReferralReceived, "/data/source", "referral source code"),
        (EventType::ReferralReceived, "/data/primary_need", "primary need code"),
        (EventType::ContactRecorded, "/data/outcome", "contact outcome"),
        (EventType::AssessmentCompleted, "/data/factors/0", "factor identified at assessment"),
        (EventType::CpPlanStarted, "/data/category", "category of abuse"),
        (EventType::CaseClosed, "/data/reason", "reason for closure"),
        (EventType::RelationshipRecorded, "/data/role", "relationship role"),
        (EventType::StrategyDiscussionHeld, "/data/decision", "strategy discussion decision"),
        (EventType::ConferenceHeld, "/data/kind", "conference kind"),
        (EventType::ConferenceHeld, "/data/outcome", "conference outcome"),
        (EventType::ChildSeen, "/data/context", "context"),
        (EventType::CourtApplicationFiled, "/data/kind", "court application kind"),
        (EventType::CourtOrderMade, "/data/order", "court order"),
        (EventType::ReviewOpened, "/data/kind", "review kind"),
        (EventType::WorkerJoined, "/data/role", "worker role"),
        (EventType::WorkerJoined, "/data/council", "ONS code"),
        (EventType::CouncilConfigured, "/data/dfe_la_code", "3-digit"),
    ];
    for (t, pointer, words) in cases {
        let e = with(example(t), pointer, json!("Jane Smith"));
        refused_at(&e, pointer, words);
        let problems = problems_of(&e);
        assert!(problems.iter().all(|p| !p.message.contains("Jane")), "a message repeats the value: {problems}");
    }
}

#[test]
fn check_digits_and_check_letters() {
    let e = example(EventType::ChildRegistered);
    refused_at(
        &with(e.clone(), "/data/person/nhs_number", json!("9434765918")),
        "/data/person/nhs_number",
        "check digit",
    );
    let mut upn = e.clone();
    upn["data"]["person"]["upn"] = json!("A820200101001");
    upn["data"]["person"].as_object_mut().expect("person").remove("upn_unknown");
    // A820200101001 has the wrong check letter (its own is computed in ids.rs tests).
    let problems = problems_of(&upn);
    assert!(problems.iter().any(|p| p.pointer == "/data/person/upn"), "{problems}");
}

#[test]
fn factor_21_and_disability_none_stand_alone() {
    refused_at(
        &with(example(EventType::AssessmentCompleted), "/data/factors", json!(["21", "3B"])),
        "/data/factors",
        "21",
    );
    refused_at(
        &with(example(EventType::ChildRegistered), "/data/disabilities", json!(["NONE", "AUT"])),
        "/data/disabilities",
        "NONE must stand alone",
    );
    refused_at(
        &with(example(EventType::AssessmentCompleted), "/data/factors", json!(["3B", "3B"])),
        "/data/factors/1",
        "repeats",
    );
}

#[test]
fn la_child_id_at_most_20_letters_or_digits() {
    let e = example(EventType::ChildRegistered);
    refused_at(&with(e.clone(), "/data/la_child_id", json!("A".repeat(21))), "/data/la_child_id", "1 to 20");
    refused_at(&with(e.clone(), "/data/la_child_id", json!("HAR-001")), "/data/la_child_id", "letters or digits");
    assert!(parse_received(&with(e, "/data/la_child_id", json!("A".repeat(20))), now()).is_ok());
}

#[test]
fn wrong_json_kinds_are_named() {
    let e = example(EventType::ReferralReceived);
    refused_at(&with(e.clone(), "/data/nfa", json!("no")), "/data/nfa", "true or false");
    refused_at(&with(e.clone(), "/data", json!([])), "/data", "must be an object");
    refused_at(&with(e, "/id", json!(17)), "/id", "must be a string");
    refused_at(&json!([1]), "", "must be a JSON object");
    refused_at(&with(example(EventType::WorkerJoined), "/data/fte", json!(1.5)), "/data/fte", "at most 1");
}

#[test]
fn cross_field_rules() {
    // A child needs a birth date or an expected one.
    let e = without(example(EventType::ChildRegistered), "/data/birth_date");
    refused_at(&e, "/data/birth_date", "expected_birth_date");
    let mut unborn = e;
    unborn["data"]["expected_birth_date"] = json!("2025-09-01");
    assert!(parse_received(&unborn, now()).is_ok());
    // A review conference names its plan and continues or ends it.
    let review = with(example(EventType::ConferenceHeld), "/data/kind", json!("review"));
    refused_at(&review, "/data/outcome", "continue or end");
    refused_at(&review, "/data/plan_id", "review");
    // An update must update something.
    refused_at(&with(example(EventType::ChildDetailsUpdated), "/data", json!({})), "/data", "at least one");
    refused_at(&with(example(EventType::WorkerChanged), "/data", json!({})), "/data", "at least one");
    // A UPN and a reason for having none contradict each other.
    let mut both = example(EventType::ChildRegistered);
    both["data"]["person"]["upn"] =
        json!(format!("{}820200101001", events::ids::Upn::check_letter(b"820200101001") as char));
    refused_at(&both, "/data/person/upn_unknown", "must not be given with a upn");
}

#[test]
fn every_problem_is_reported_at_once() {
    let mut e = example(EventType::ChildRegistered);
    e["specversion"] = json!("2");
    e["data"]["sex"] = json!("X");
    e["data"]["ethnicity"] = json!("Y");
    e["data"]["la_child_id"] = json!("way-too-long-for-a-child-id");
    e["data"]["person"]["nhs_number"] = json!("123");
    let problems = problems_of(&e);
    let pointers: Vec<&str> = problems.iter().map(|p| p.pointer.as_str()).collect();
    assert_eq!(
        pointers,
        ["/specversion", "/data/la_child_id", "/data/sex", "/data/ethnicity", "/data/person/nhs_number"],
        "{problems}"
    );
}

#[test]
fn free_text_is_checked_but_never_echoed() {
    let e = with(example(EventType::ContactRecorded), "/data/summary", json!("   "));
    refused_at(&e, "/data/summary", "must not be empty");
    let long = with(example(EventType::ContactRecorded), "/data/summary", json!("x".repeat(20_001)));
    refused_at(&long, "/data/summary", "at most 20000");
}
