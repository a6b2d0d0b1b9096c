//! Alerts on hand-worked histories: a multi-agency case modelled on the
//! kind of history DOMAIN.md describes (police and health concerns about a
//! child on a plan), and each statutory clock against due dates worked out
//! by hand from the bank-holiday calendar (the comments show the working).

use casework::alerts::{Alert, Kind, Status, fold};
use casework::facts::{CouncilSetting, History, Recorded, fold_child};
use chrono::{DateTime, NaiveDate, Utc};
use events::calendar::{Calendar, business_date_of};
use events::ids::{AlertId, ChildId, CouncilCode, EventId, PrincipalName};
use serde_json::{Value, json};
use std::collections::BTreeMap;

const COUNCIL: &str = "E09000014";
const CHILD: &str = "7d1c9c1e-8a4e-4c5e-9f3f-0c9f6f3f2b11";
const WORKER: &str = "3a3b8f40-55d2-4c8e-9a51-2f7a0e0c1d11";
const CSC: &str = "haringey-csc";
const POLICE: &str = "met-police";
const HEALTH: &str = "whittington-health";

fn t(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text).expect("a time").to_utc()
}

/// A history written as (publisher, type, time, data), recorded in that
/// order at the time each happened.
fn history(events: &[(&str, &str, &str, Value)]) -> History {
    let recorded = events
        .iter()
        .enumerate()
        .map(|(i, (source, kind, time, data))| {
            let cloud = [json!({"type": kind, "subject": CHILD, "id": format!("e{i}"), "data": data})];
            let data = events::arbitrary::stored_data(&cloud, source).remove(0).expect("catalogue-valid data");
            let time = if time.len() == 10 { format!("{time}T12:00:00Z") } else { (*time).to_owned() };
            let at = DateTime::parse_from_rfc3339(&time).expect("a time");
            Recorded {
                sequence: i as i64 + 1,
                event_id: EventId::parse(&format!("e{i}")).expect("id"),
                source: PrincipalName::parse(source).expect("principal"),
                occurred_at: at.to_utc(),
                business_date: business_date_of(&at),
                recorded_at: at.to_utc(),
                data,
                author_role: None,
                significant: None,
            }
        })
        .collect();
    History::new(recorded).expect("history")
}

fn settings(extra: Value) -> BTreeMap<CouncilCode, Vec<CouncilSetting>> {
    let mut data = json!({"effective_from": "2020-01-01", "visit_interval_days": 10});
    if let (Some(d), Some(e)) = (data.as_object_mut(), extra.as_object()) {
        d.extend(e.clone());
    }
    let cloud = [json!({"type": "council.configured", "subject": COUNCIL, "id": "c1", "data": data})];
    let data = events::arbitrary::stored_data(&cloud, CSC).remove(0).expect("a configuration");
    let at = t("2020-01-01T12:00:00Z");
    let council = History::new(vec![Recorded {
        sequence: 1,
        event_id: EventId::parse("c1").expect("id"),
        source: PrincipalName::parse(CSC).expect("principal"),
        occurred_at: at,
        business_date: business_date_of(&at.fixed_offset()),
        recorded_at: at,
        data,
        author_role: None,
        significant: None,
    }])
    .expect("council history");
    BTreeMap::from([(CouncilCode::parse(COUNCIL).expect("code"), casework::facts::fold_council(&council))])
}

fn alerts_of(history: &History, settings: &BTreeMap<CouncilCode, Vec<CouncilSetting>>) -> Vec<Alert> {
    let facts = fold_child(history).expect("facts");
    let child = ChildId::parse(CHILD).expect("child");
    fold(child, history, &facts, settings, Calendar::england_and_wales())
}

fn of_kind(alerts: &[Alert], kind: Kind) -> Vec<&Alert> {
    alerts.iter().filter(|a| a.kind == kind).collect()
}

fn registered() -> (&'static str, &'static str, &'static str, Value) {
    (
        CSC,
        "child.registered",
        "2025-01-06",
        json!({"council": COUNCIL, "la_child_id": "X1", "sex": "F", "birth_date": "2019-05-01"}),
    )
}

/// The case: referred in April, allocated, on a plan from 8 May; then
/// police and health speak up.
fn case(
    mut more: Vec<(&'static str, &'static str, &'static str, Value)>,
) -> Vec<(&'static str, &'static str, &'static str, Value)> {
    let mut events = vec![
        registered(),
        (CSC, "referral.received", "2025-04-01", json!({"referral_id": "R1", "source": "6", "nfa": false})),
        (CSC, "case.allocated", "2025-04-01", json!({"worker_id": WORKER, "team_id": "T-NORTH"})),
        (CSC, "cp_plan.started", "2025-05-08", json!({"plan_id": "P1", "conference_id": "C1", "category": "NEG"})),
    ];
    events.append(&mut more);
    events
}

#[test]
fn police_and_health_concerns_reach_the_worker_and_make_one_pattern() {
    let history = history(&case(vec![
        // Friday before the spring bank holiday.
        (
            POLICE,
            "concern.raised",
            "2025-05-23T10:00:00+01:00",
            json!({"concern_id": "P-1", "summary": "Domestic incident attended"}),
        ),
        (HEALTH, "concern.raised", "2025-06-02", json!({"concern_id": "H-1", "summary": "Missed health appointments"})),
        (
            POLICE,
            "contact.recorded",
            "2025-06-10",
            json!({"contact_id": "P-2", "source": "6", "summary": "Second call-out"}),
        ),
        // A fourth within the window makes no second pattern.
        (HEALTH, "concern.raised", "2025-06-12", json!({"concern_id": "H-2", "summary": "Bruising seen"})),
        // The council's own concern is not another agency's.
        (CSC, "concern.raised", "2025-06-13", json!({"concern_id": "S-1", "summary": "Worker's concern"})),
    ]));
    let alerts = alerts_of(&history, &settings(json!({})));
    let concerns = of_kind(&alerts, Kind::AgencyConcern);
    assert_eq!(concerns.len(), 4, "one for each of the other agencies' concerns and contacts");
    let first = concerns.iter().find(|a| a.sequence == 5).expect("the police concern's alert");
    assert_eq!(first.worker.map(|w| w.to_string()).as_deref(), Some(WORKER));
    assert_eq!(first.team.as_ref().map(|t| t.as_str()), Some("T-NORTH"));
    assert_eq!(first.raised_by.as_ref().map(|p| p.as_str()), Some(POLICE));
    assert_eq!(first.raised_at, t("2025-05-23T09:00:00Z"));
    // One working day from Friday 23 May: Monday 26 is a bank holiday, so
    // Tuesday 27; escalated at its end, midnight in summer time.
    assert_eq!(first.escalates_at, t("2025-05-27T23:00:00Z"));
    assert_eq!(first.status(t("2025-05-27T22:59:59Z")), Status::Open);
    assert_eq!(first.status(t("2025-05-27T23:00:00Z")), Status::Escalated);
    assert!(first.status(t("2025-05-25T12:00:00Z")) == Status::Open, "not over a weekend");

    let patterns = of_kind(&alerts, Kind::Pattern);
    assert_eq!(patterns.len(), 1, "three from two agencies within 30 days, raised once: {patterns:?}");
    assert_eq!(patterns[0].sequence, 7, "raised by the third");
    assert_eq!(patterns[0].worker.map(|w| w.to_string()).as_deref(), Some(WORKER));
    assert!(of_kind(&alerts, Kind::Unallocated).is_empty());
}

#[test]
fn an_acknowledgement_stops_escalation_and_the_first_one_stands() {
    let base = history(&case(vec![(
        POLICE,
        "concern.raised",
        "2025-05-23T10:00:00+01:00",
        json!({"concern_id": "P-1", "summary": "Domestic incident attended"}),
    )]));
    let id: AlertId = of_kind(&alerts_of(&base, &settings(json!({}))), Kind::AgencyConcern)[0].id;
    let history = history(&case(vec![
        (
            POLICE,
            "concern.raised",
            "2025-05-23T10:00:00+01:00",
            json!({"concern_id": "P-1", "summary": "Domestic incident attended"}),
        ),
        (
            CSC,
            "alert.acknowledged",
            "2025-05-27T09:00:00+01:00",
            json!({"alert_id": id.to_string(), "note": "Called the officer"}),
        ),
        (CSC, "alert.acknowledged", "2025-05-28T09:00:00+01:00", json!({"alert_id": id.to_string()})),
        // An alert of no one's: changes nothing.
        (
            CSC,
            "alert.acknowledged",
            "2025-05-28T09:00:00+01:00",
            json!({"alert_id": "9f0e7d6c-5b4a-4392-8a1b-0c9d8e7f6a5b"}),
        ),
    ]));
    let alerts = alerts_of(&history, &settings(json!({})));
    let alert = alerts.iter().find(|a| a.id == id).expect("the same id after the acknowledgement");
    let ack = alert.acknowledged.as_ref().expect("acknowledged");
    assert_eq!((ack.by.as_str(), ack.at, ack.sequence), (CSC, t("2025-05-27T08:00:00Z"), 6));
    assert_eq!(alert.status(t("2025-05-27T07:59:59Z")), Status::Open);
    assert_eq!(alert.status(t("2025-06-30T00:00:00Z")), Status::Acknowledged);
}

#[test]
fn a_child_with_no_worker_goes_to_the_team_managers_and_one_with_no_case_to_no_one() {
    let unallocated = history(&[
        registered(),
        (CSC, "referral.received", "2025-04-01", json!({"referral_id": "R1", "source": "6", "nfa": false})),
        (POLICE, "concern.raised", "2025-04-03", json!({"concern_id": "P-1", "summary": "Incident"})),
        (HEALTH, "child.seen", "2025-04-04", json!({"seen_by": "GP-1", "seen_alone": false, "context": "health"})),
        // Seen at school: not a police or health sighting.
        (HEALTH, "child.seen", "2025-04-05", json!({"seen_by": "N-1", "seen_alone": false, "context": "school"})),
    ]);
    let alerts = alerts_of(&unallocated, &settings(json!({})));
    let to_managers = of_kind(&alerts, Kind::Unallocated);
    assert_eq!(to_managers.len(), 2);
    assert!(to_managers.iter().all(|a| a.worker.is_none() && a.team.is_none()));

    let no_case = history(&[
        registered(),
        (POLICE, "concern.raised", "2025-04-03", json!({"concern_id": "P-1", "summary": "Incident"})),
    ]);
    assert!(alerts_of(&no_case, &settings(json!({}))).is_empty());
}

#[test]
fn a_councils_own_thresholds_decide_a_pattern() {
    let events = vec![
        registered(),
        (POLICE, "concern.raised", "2025-03-01", json!({"concern_id": "P-1", "summary": "One"})),
        (HEALTH, "concern.raised", "2025-03-20", json!({"concern_id": "H-1", "summary": "Two"})),
    ];
    // By default three are needed; this council asks for two within 20 days.
    assert!(of_kind(&alerts_of(&history(&events), &settings(json!({}))), Kind::Pattern).is_empty());
    let strict = settings(json!({"pattern_events": 2, "pattern_window_days": 20}));
    assert_eq!(of_kind(&alerts_of(&history(&events), &strict), Kind::Pattern).len(), 1);
    let narrow = settings(json!({"pattern_events": 2, "pattern_window_days": 19}));
    assert!(of_kind(&alerts_of(&history(&events), &narrow), Kind::Pattern).is_empty(), "1 to 20 March is 20 days");
}

fn clock(alerts: &[Alert], kind: Kind) -> &Alert {
    let found = of_kind(alerts, kind);
    assert_eq!(found.len(), 1, "one {kind:?}: {alerts:#?}");
    found[0]
}

#[test]
fn the_icpc_clock_runs_fifteen_working_days_from_the_strategy_discussion() {
    let history = history(&[
        registered(),
        (CSC, "referral.received", "2025-04-01", json!({"referral_id": "R1", "source": "6", "nfa": false})),
        (
            CSC,
            "strategy_discussion.held",
            "2025-04-10",
            json!({"discussion_id": "SD1", "referral_id": "R1", "agencies": ["police"], "decision": "s47"}),
        ),
        (CSC, "s47.started", "2025-04-11", json!({"s47_id": "S1", "referral_id": "R1", "discussion_id": "SD1"})),
        (
            CSC,
            "conference.held",
            "2025-05-08",
            json!({"conference_id": "C1", "kind": "initial", "s47_id": "S1", "outcome": "plan"}),
        ),
    ]);
    let alerts = alerts_of(&history, &settings(json!({})));
    // Thursday 10 April plus 15 working days, past Good Friday, Easter
    // Monday and the early May holiday: Tuesday 6 May.
    let due = clock(&alerts, Kind::IcpcDue);
    assert_eq!(due.due_by, t("2025-05-06T23:00:00Z"));
    // Two working days before: Monday 5 May is a holiday, so Thursday 1 May.
    assert_eq!(due.raised_at, t("2025-04-30T23:00:00Z"));
    let missed = clock(&alerts, Kind::IcpcMissed);
    assert_eq!(missed.raised_at, t("2025-05-06T23:00:00Z"));
    assert_eq!(missed.closed_at, Some(t("2025-05-08T12:00:00Z")), "the conference closes it");
    // Raised at the start of Wednesday 7 May: acknowledged by the end of
    // the next working day, Thursday 8 May, or escalated.
    assert_eq!(missed.escalates_at, t("2025-05-08T23:00:00Z"));
    assert_eq!(missed.status(t("2025-05-08T11:59:59Z")), Status::Open);
    assert_eq!(missed.status(t("2025-05-09T00:00:00Z")), Status::Closed, "the conference leaves nothing to do");
    assert!(!missed.raised(t("2025-05-06T22:59:59Z")));
}

#[test]
fn the_assessment_clock_counts_its_councils_working_days() {
    let history = history(&[
        registered(),
        (CSC, "referral.received", "2025-04-01", json!({"referral_id": "R1", "source": "6", "nfa": false})),
        (CSC, "assessment.started", "2025-04-01", json!({"assessment_id": "A1", "referral_id": "R1"})),
        (
            CSC,
            "assessment.completed",
            "2025-06-20",
            json!({"assessment_id": "A1", "factors": ["1C"], "child_seen": true, "needs_support": true}),
        ),
    ]);
    let alerts = alerts_of(&history, &settings(json!({})));
    // Tuesday 1 April plus 45 working days (four holidays on the way): Monday 9 June.
    let missed = clock(&alerts, Kind::AssessmentMissed);
    assert_eq!(missed.due_by, t("2025-06-09T23:00:00Z"));
    assert_eq!(missed.closed_at, Some(t("2025-06-19T23:00:00Z")), "completed on 20 June");
    assert_eq!(clock(&alerts, Kind::AssessmentDue).raised_at, t("2025-06-04T23:00:00Z"), "Thursday 5 June");
    // A council with 60 working days is owed it on Monday 30 June: completed
    // before even the warning (Thursday 26 June), so no alert at all.
    let generous = alerts_of(&history, &settings(json!({"assessment_timescale_days": 60})));
    assert!(of_kind(&generous, Kind::AssessmentMissed).is_empty());
    assert!(of_kind(&generous, Kind::AssessmentDue).is_empty());
    let later = alerts_of(&history, &settings(json!({"assessment_timescale_days": 60, "alert_lead_days": 10})));
    // Ten working days before 30 June: Monday 16 June, before the completion.
    assert_eq!(clock(&later, Kind::AssessmentDue).raised_at, t("2025-06-15T23:00:00Z"));
    assert_eq!(clock(&later, Kind::AssessmentDue).due_by, t("2025-06-30T23:00:00Z"));
}

#[test]
fn visits_and_reviews_fall_due_from_the_plan_and_each_other() {
    let history = history(&case(vec![
        (CSC, "child.seen", "2025-05-16", json!({"seen_by": WORKER, "seen_alone": true, "context": "statutory_visit"})),
        (
            CSC,
            "conference.held",
            "2025-08-06",
            json!({"conference_id": "C2", "kind": "review", "plan_id": "P1", "outcome": "continue"}),
        ),
    ]));
    let alerts = alerts_of(&history, &settings(json!({"alert_lead_days": 0})));
    let missed = of_kind(&alerts, Kind::StatutoryVisitMissed);
    // Plan from Thursday 8 May, every 10 days: the visit on 16 May meets
    // the first; the next, due 26 May, was never made.
    assert_eq!(missed.len(), 1, "{missed:#?}");
    assert_eq!(missed[0].due_by, t("2025-05-26T23:00:00Z"));
    assert!(of_kind(&alerts, Kind::StatutoryVisitDue).is_empty(), "no warning with no lead");
    // Review conference: 3 months from 8 May is 8 August, held on 6 August;
    // the next 6 months from it, 6 February 2026 (winter time).
    let reviews = of_kind(&alerts, Kind::ReviewConferenceMissed);
    assert_eq!(reviews.len(), 1, "{reviews:#?}");
    assert_eq!(reviews[0].due_by, t("2026-02-07T00:00:00Z"));
}

#[test]
fn a_child_in_need_plan_is_reviewed_every_three_months_and_its_end_stops_the_clocks() {
    let history = history(&[
        registered(),
        (CSC, "referral.received", "2025-01-06", json!({"referral_id": "R1", "source": "6", "nfa": false})),
        (CSC, "cin_plan.started", "2025-01-10", json!({"plan_id": "CIN1", "referral_id": "R1"})),
        (CSC, "cin_plan.reviewed", "2025-04-09", json!({"plan_id": "CIN1"})),
        (CSC, "cin_plan.ended", "2025-06-30", json!({"plan_id": "CIN1"})),
    ]);
    let alerts = alerts_of(&history, &settings(json!({"alert_lead_days": 0})));
    // Reviewed on 9 April, inside 3 months of 10 January; the next due 9
    // July, after the plan ended: none missed.
    assert!(of_kind(&alerts, Kind::CinPlanReviewMissed).is_empty(), "{alerts:#?}");
    // Visits: 28 days from 10 January (the default for child in need plans), 7 February.
    let visit = of_kind(&alerts, Kind::StatutoryVisitMissed);
    assert_eq!(visit.len(), 1);
    assert_eq!(visit[0].due_by, t("2025-02-08T00:00:00Z"));
    assert_eq!(visit[0].closed_at, Some(t("2025-06-29T23:00:00Z")), "the plan's end closes it");
}

#[test]
fn the_same_history_gives_the_same_ids_and_each_once() {
    let events = case(vec![
        (POLICE, "concern.raised", "2025-05-23", json!({"concern_id": "P-1", "summary": "One"})),
        (HEALTH, "concern.raised", "2025-05-24", json!({"concern_id": "H-1", "summary": "Two"})),
        (HEALTH, "concern.raised", "2025-05-25", json!({"concern_id": "H-2", "summary": "Three"})),
    ]);
    let a = alerts_of(&history(&events), &settings(json!({})));
    let b = alerts_of(&history(&events), &settings(json!({})));
    assert_eq!(a, b);
    let mut ids: Vec<AlertId> = a.iter().map(|x| x.id).collect();
    ids.dedup();
    assert_eq!(ids.len(), a.len());
    let day = |a: &Alert| a.raised_at.date_naive();
    assert!(a.iter().all(|x| day(x) >= NaiveDate::from_ymd_opt(2025, 4, 1).expect("date")));
}
