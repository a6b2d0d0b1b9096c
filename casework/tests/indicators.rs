//! Every indicator on a hand-computed fixture. Each history goes through the
//! same fold the projector runs (`casework`) and then the arithmetic
//! (`indicators::compute`); the expected figures were worked out by hand
//! from DOMAIN.md's rules, and the comments show the working.

use casework::facts::{History, Recorded};
use casework::indicators::{CouncilData, Detail, IcpcBands, Indicator, Period, compute, reviews_on_time};
use chrono::{DateTime, NaiveDate};
use events::calendar::{Calendar, business_date_of};
use events::ids::{EventId, PrincipalName};
use serde_json::{Value, json};

const COUNCIL: &str = "E09000014";

fn day(text: &str) -> NaiveDate {
    text.parse().expect("a date")
}

/// A history written as (type, time, data), recorded in that order, in the
/// form the stream stores it.
fn history(events: &[(&str, &str, Value)]) -> History {
    let subject = "7d1c9c1e-8a4e-4c5e-9f3f-0c9f6f3f2b11";
    let source = "haringey-csc";
    let cloud: Vec<Value> = events
        .iter()
        .enumerate()
        .map(|(i, (t, _, data))| json!({"type": t, "subject": subject, "id": format!("e{i}"), "data": data}))
        .collect();
    let stored = events::arbitrary::stored_data(&cloud, source);
    let recorded = events
        .iter()
        .zip(stored)
        .enumerate()
        .map(|(i, ((_, time, _), data))| {
            // Times without an offset are noon UTC on that date.
            let time = if time.len() == 10 { format!("{time}T12:00:00Z") } else { (*time).to_owned() };
            let at = DateTime::parse_from_rfc3339(&time).expect("a time");
            Recorded {
                sequence: i as i64 + 1,
                event_id: EventId::parse(&format!("e{i}")).expect("id"),
                source: PrincipalName::parse(source).expect("principal"),
                occurred_at: at.to_utc(),
                business_date: business_date_of(&at),
                recorded_at: at.to_utc(),
                data: data.expect("catalogue-valid data"),
                author_role: None,
                significant: None,
            }
        })
        .collect();
    History::new(recorded).expect("history")
}

fn registered() -> (&'static str, &'static str, Value) {
    (
        "child.registered",
        "2010-01-01",
        json!({"council": COUNCIL, "la_child_id": "X1", "sex": "F", "birth_date": "2009-05-01"}),
    )
}

/// Folds children and workers into one council's data, as the tables would hold it.
fn council(children: &[History], workers: &[History], config: &[Value]) -> CouncilData {
    let mut data = CouncilData::default();
    for (i, h) in children.iter().enumerate() {
        let child = uuid::Uuid::from_u128(i as u128 + 1);
        let facts = casework::facts::fold_child(h).expect("registered");
        data.referrals.extend(facts.referrals.into_iter().map(|r| (child, r)));
        data.assessments.extend(facts.assessments);
        data.section47s.extend(facts.section47s);
        data.icpcs.extend(facts.icpcs);
        data.plans.extend(facts.plans.into_iter().map(|p| (child, p)));
        data.allocations.extend(facts.allocations.into_iter().map(|a| (child, a)));
        let visits: Vec<NaiveDate> = facts.sightings.iter().filter(|s| s.statutory).map(|s| s.seen_on).collect();
        data.visits.insert(child, visits);
    }
    for (i, h) in workers.iter().enumerate() {
        let worker = events::ids::WorkerId::from_uuid(uuid::Uuid::from_u128(1000 + i as u128));
        data.spells.extend(casework::facts::fold_worker(h).into_iter().map(|s| (worker, s)));
    }
    let config: Vec<(&str, &str, Value)> =
        config.iter().map(|c| ("council.configured", "2000-01-01", c.clone())).collect();
    data.settings = casework::facts::fold_council(&history(&config));
    data
}

fn indicator(data: &CouncilData, period: &str, today: &str, name: &str) -> Indicator {
    let period = Period::financial_year(period).expect("period");
    compute(data, period, day(today), Calendar::england_and_wales())
        .into_iter()
        .find(|i| i.name.code() == name)
        .expect("the indicator is computed")
}

fn figures(i: &Indicator) -> (f64, Option<f64>, Option<f64>) {
    (i.numerator, i.denominator, i.value)
}

#[test]
fn referrals_count_by_london_date_and_rate_by_population() {
    // 2024-03-31T23:30Z is 00:30 BST on 1 April 2024: the first day of 2024-25.
    let a = history(&[
        registered(),
        ("referral.received", "2024-03-31T23:30:00Z", json!({"referral_id": "R1", "source": "6", "nfa": false})),
        ("case.closed", "2024-07-01", json!({"referral_id": "R1", "reason": "RC7"})),
        ("referral.received", "2024-09-01", json!({"referral_id": "R2", "source": "2A", "nfa": true})),
    ]);
    // 2024-03-31T22:30Z is 23:30 BST on 31 March: still 2023-24.
    let b = history(&[
        registered(),
        ("referral.received", "2024-03-31T22:30:00Z", json!({"referral_id": "R1", "source": "6", "nfa": false})),
    ]);
    let data = council(&[a, b], &[], &[json!({"effective_from": "2000-01-01", "population_0_17": 50000})]);
    let i = indicator(&data, "2024-25", "2025-06-01", "referrals");
    assert_eq!(i.unit.code(), "per_10000");
    // 2 referrals in the year, 50,000 children: 0.4 per 10,000.
    assert_eq!(figures(&i), (2.0, Some(50000.0), Some(0.4)));
    assert_eq!(i.detail, Detail::Referrals { no_further_action: 1 });
    assert_eq!(figures(&indicator(&data, "2023-24", "2025-06-01", "referrals")).0, 1.0);
}

#[test]
fn a_re_referral_at_exactly_twelve_months_counts_and_a_day_more_does_not() {
    // The first episode closed before the second referral: a referral while
    // an episode is open is no new referral (tested below).
    let closed = ("case.closed", "2023-09-01", json!({"referral_id": "R1", "reason": "RC7"}));
    let exact = history(&[
        registered(),
        ("referral.received", "2023-06-01", json!({"referral_id": "R1", "source": "6", "nfa": false})),
        closed.clone(),
        ("referral.received", "2024-06-01", json!({"referral_id": "R2", "source": "6", "nfa": false})),
    ]);
    let over = history(&[
        registered(),
        ("referral.received", "2023-05-31", json!({"referral_id": "R1", "source": "6", "nfa": false})),
        closed,
        ("referral.received", "2024-06-01", json!({"referral_id": "R2", "source": "6", "nfa": false})),
    ]);
    let first = history(&[
        registered(),
        ("referral.received", "2024-07-01", json!({"referral_id": "R1", "source": "6", "nfa": true})),
    ]);
    let data = council(&[exact, over, first], &[], &[]);
    let i = indicator(&data, "2024-25", "2025-06-01", "re_referrals_within_12_months");
    // Three referrals in 2024-25; only the one a year to the day after the last counts.
    assert_eq!(i.unit.code(), "share");
    assert_eq!(figures(&i), (1.0, Some(3.0), Some(1.0 / 3.0)));
}

/// Only this council's facts, as the read models load them for it.
fn only_council(mut data: CouncilData) -> CouncilData {
    data.referrals.retain(|(_, r)| r.council.as_str() == COUNCIL);
    data.plans.retain(|(_, p)| p.council.as_str() == COUNCIL);
    data
}

#[test]
fn a_re_referral_and_an_earlier_plan_count_only_within_the_council() {
    // Referred, planned and closed in Islington; then moved to Haringey and referred there.
    let moved = history(&[
        (
            "child.registered",
            "2010-01-01",
            json!({"council": "E09000019", "la_child_id": "X1", "sex": "F", "birth_date": "2009-05-01"}),
        ),
        ("referral.received", "2023-11-01", json!({"referral_id": "I1", "source": "6", "nfa": false})),
        ("conference.held", "2023-11-20", json!({"conference_id": "IC1", "kind": "initial", "outcome": "plan"})),
        ("cp_plan.started", "2023-11-20", json!({"plan_id": "IP1", "conference_id": "IC1", "category": "NEG"})),
        ("cp_plan.ended", "2024-02-01", json!({"plan_id": "IP1"})),
        ("case.closed", "2024-02-01", json!({"referral_id": "I1", "reason": "RC7"})),
        ("child.transferred", "2024-03-01", json!({"council": COUNCIL})),
        ("referral.received", "2024-06-01", json!({"referral_id": "H1", "source": "6", "nfa": false})),
        ("conference.held", "2024-07-01", json!({"conference_id": "HC1", "kind": "initial", "outcome": "plan"})),
        ("cp_plan.started", "2024-07-01", json!({"plan_id": "HP1", "conference_id": "HC1", "category": "NEG"})),
    ]);
    let data = only_council(council(&[moved], &[], &[]));
    // Haringey's first referral and first plan of this child: the DfE counts within the council.
    let i = indicator(&data, "2024-25", "2025-06-01", "re_referrals_within_12_months");
    assert_eq!(figures(&i), (0.0, Some(1.0), Some(0.0)));
    let i = indicator(&data, "2024-25", "2025-06-01", "second_or_subsequent_plans");
    assert_eq!(figures(&i), (0.0, Some(1.0), Some(0.0)));
}

#[test]
fn a_referral_while_an_episode_is_open_is_not_a_new_referral() {
    let child = history(&[
        registered(),
        ("referral.received", "2024-05-01", json!({"referral_id": "R1", "source": "6", "nfa": false})),
        ("referral.received", "2024-06-01", json!({"referral_id": "R2", "source": "2A", "nfa": false})),
        ("case.closed", "2024-08-01", json!({"referral_id": "R1", "reason": "RC7"})),
        ("referral.received", "2024-09-01", json!({"referral_id": "R3", "source": "6", "nfa": false})),
    ]);
    let data = council(&[child], &[], &[json!({"effective_from": "2000-01-01", "population_0_17": 10000})]);
    // R1 and R3 are referrals; R2 came while R1's episode was open.
    let i = indicator(&data, "2024-25", "2025-06-01", "referrals");
    assert_eq!(figures(&i).0, 2.0);
    // R3 came within 12 months of R1: one re-referral of two.
    let i = indicator(&data, "2024-25", "2025-06-01", "re_referrals_within_12_months");
    assert_eq!(figures(&i), (1.0, Some(2.0), Some(0.5)));
}

#[test]
fn the_icpc_clock_starts_at_the_strategy_discussion_and_never_at_an_old_enquiry() {
    // Discussion Tue 10 Dec 2024, enquiry Mon 16 Dec, ICPC Thu 9 Jan 2025.
    // Working days after 10 Dec: 11-13 (3), 16-20 (8), 23, 24 (10), 27 (11),
    // 30, 31 (13), 2, 3 Jan (15), 6-9 (19): late, in the 16-20 band.
    let from_discussion = history(&[
        registered(),
        (
            "strategy_discussion.held",
            "2024-12-10",
            json!({"discussion_id": "D1", "referral_id": "R1", "agencies": ["police"], "decision": "s47"}),
        ),
        ("s47.started", "2024-12-16", json!({"s47_id": "S1", "referral_id": "R1", "discussion_id": "D1"})),
        (
            "conference.held",
            "2025-01-09",
            json!({"conference_id": "C1", "kind": "initial", "s47_id": "S1", "outcome": "plan"}),
        ),
    ]);
    // An ICPC naming no enquiry, the only one two years old and conferenced long ago.
    let no_enquiry = history(&[
        registered(),
        ("s47.started", "2022-11-01", json!({"s47_id": "S0", "referral_id": "R0"})),
        (
            "conference.held",
            "2022-11-15",
            json!({"conference_id": "C0", "kind": "initial", "s47_id": "S0", "outcome": "no_plan"}),
        ),
        ("conference.held", "2024-12-20", json!({"conference_id": "C2", "kind": "initial", "outcome": "plan"})),
    ]);
    let data = council(&[from_discussion, no_enquiry], &[], &[]);
    let i = indicator(&data, "2024-25", "2025-06-01", "icpc_within_15_working_days");
    assert_eq!(figures(&i), (0.0, Some(2.0), Some(0.0)));
    let Detail::Icpc { bands, s47_start_unknown } = i.detail else { panic!("an ICPC detail") };
    assert_eq!(bands, IcpcBands { up_to_10: 0, from_11_to_15: 0, from_16_to_20: 1, over_20: 0 });
    assert_eq!(s47_start_unknown, 1, "the old enquiry starts no clock");
}

#[test]
fn assessments_use_working_days_and_a_local_timescale() {
    // Started Mon 2 Sep 2024. 35 working days later is Fri 18 Oct; 40 is Fri 25 Oct.
    let assessment = |done: &str| {
        history(&[
            registered(),
            ("assessment.started", "2024-09-02", json!({"assessment_id": "A1", "referral_id": "R1"})),
            (
                "assessment.completed",
                done,
                json!({"assessment_id": "A1", "factors": ["21"], "child_seen": true, "needs_support": false}),
            ),
        ])
    };
    let children = [assessment("2024-10-18"), assessment("2024-10-25")];
    // Nationally (45 days) both are in time.
    let national = council(&children, &[], &[]);
    let i = indicator(&national, "2024-25", "2025-06-01", "assessments_within_timescale");
    assert_eq!(figures(&i), (2.0, Some(2.0), Some(1.0)));
    assert_eq!(i.detail, Detail::Assessments { timescale_working_days: vec![45], local_timescale: false });
    // A council that set 35 working days: only the first.
    let local = council(&children, &[], &[json!({"effective_from": "2000-01-01", "assessment_timescale_days": 35})]);
    let i = indicator(&local, "2024-25", "2025-06-01", "assessments_within_timescale");
    assert_eq!(figures(&i), (1.0, Some(2.0), Some(0.5)));
    assert_eq!(i.detail, Detail::Assessments { timescale_working_days: vec![35], local_timescale: true });
}

#[test]
fn icpc_timescale_across_christmas_and_new_year_counts_working_days_only() {
    // s47 started Mon 16 Dec 2024. Working days after it: 17, 18, 19, 20, 23,
    // 24 (6), 27 (7; 25 and 26 are bank holidays), 30, 31 (9), 2 Jan (10; 1
    // Jan is a bank holiday), 3 (11), 6, 7, 8, 9 (15), 10 (16).
    let icpc = |held: &str| {
        history(&[
            registered(),
            ("s47.started", "2024-12-16", json!({"s47_id": "S1", "referral_id": "R1"})),
            (
                "conference.held",
                held,
                json!({"conference_id": "C1", "kind": "initial", "s47_id": "S1", "outcome": "plan"}),
            ),
        ])
    };
    // 9 Jan is 24 calendar days on but 15 working days: in time. 10 Jan is 16.
    let data = council(&[icpc("2025-01-09"), icpc("2025-01-10"), icpc("2024-12-30")], &[], &[]);
    let i = indicator(&data, "2024-25", "2025-06-01", "icpc_within_15_working_days");
    assert_eq!(figures(&i), (2.0, Some(3.0), Some(2.0 / 3.0)));
    let Detail::Icpc { bands, .. } = i.detail else { panic!("an ICPC detail") };
    assert_eq!(bands, IcpcBands { up_to_10: 1, from_11_to_15: 1, from_16_to_20: 1, over_20: 0 });
    assert_eq!(serde_json::to_value(bands).expect("json"), json!({"0-10": 1, "11-15": 1, "16-20": 1, "21+": 0}));
}

fn plan(start: &str, end: Option<&str>) -> History {
    let mut events = vec![
        registered(),
        ("conference.held", start, json!({"conference_id": "C1", "kind": "initial", "outcome": "plan"})),
        ("cp_plan.started", start, json!({"plan_id": "P1", "conference_id": "C1", "category": "NEG"})),
    ];
    if let Some(end) = end {
        events.push(("cp_plan.ended", end, json!({"plan_id": "P1"})));
    }
    history(&events)
}

#[test]
fn plans_open_at_period_end_are_open_on_its_last_day() {
    let data = council(
        &[
            plan("2024-05-01", None),
            plan("2024-05-01", Some("2025-03-31")), // ended on the last day: no longer open
            plan("2024-05-01", Some("2025-04-01")), // open on 31 March
            plan("2025-04-01", None),               // not yet started
        ],
        &[],
        &[json!({"effective_from": "2000-01-01", "population_0_17": 40000})],
    );
    let i = indicator(&data, "2024-25", "2026-01-01", "plans_open_at_period_end");
    // 2 plans, 40,000 children: 0.5 per 10,000.
    assert_eq!(figures(&i), (2.0, Some(40000.0), Some(0.5)));
}

#[test]
fn a_plan_of_exactly_two_years_counts_as_two_years_or_more() {
    let data = council(
        &[
            plan("2022-06-10", Some("2024-06-10")), // exactly two years
            plan("2022-06-11", Some("2024-06-10")), // a day short
            plan("2020-02-29", Some("2022-02-28")), // 29 Feb plus two years is 28 Feb, but ends in 2021-22
            plan("2023-01-01", None),               // not ended
        ],
        &[],
        &[],
    );
    let i = indicator(&data, "2024-25", "2026-01-01", "plans_lasting_2_years_or_more");
    assert_eq!(figures(&i), (1.0, Some(2.0), Some(0.5)));
    let leap = indicator(&data, "2021-22", "2026-01-01", "plans_lasting_2_years_or_more");
    assert_eq!(figures(&leap), (1.0, Some(1.0), Some(1.0)));
}

#[test]
fn a_second_plan_years_after_the_first_is_second_or_subsequent() {
    let again = history(&[
        registered(),
        ("conference.held", "2015-03-02", json!({"conference_id": "C1", "kind": "initial", "outcome": "plan"})),
        ("cp_plan.started", "2015-03-02", json!({"plan_id": "P1", "conference_id": "C1", "category": "NEG"})),
        ("cp_plan.ended", "2016-01-05", json!({"plan_id": "P1"})),
        ("conference.held", "2024-07-01", json!({"conference_id": "C2", "kind": "initial", "outcome": "plan"})),
        ("cp_plan.started", "2024-07-01", json!({"plan_id": "P2", "conference_id": "C2", "category": "EMO"})),
    ]);
    let data = council(&[again, plan("2024-08-01", None), plan("2024-09-01", None)], &[], &[]);
    let i = indicator(&data, "2024-25", "2026-01-01", "second_or_subsequent_plans");
    // Three children started plans in 2024-25; one had a plan nine years before.
    assert_eq!(figures(&i), (1.0, Some(3.0), Some(1.0 / 3.0)));
}

#[test]
fn reviews_on_time_follow_three_then_six_months() {
    let reviewed = |reviews: &[&str]| {
        let mut events = vec![
            registered(),
            ("conference.held", "2024-04-10", json!({"conference_id": "C1", "kind": "initial", "outcome": "plan"})),
            ("cp_plan.started", "2024-04-10", json!({"plan_id": "P1", "conference_id": "C1", "category": "NEG"})),
        ];
        for (i, r) in reviews.iter().enumerate() {
            events.push((
                "conference.held",
                r,
                json!({"conference_id": format!("R{i}"), "kind": "review", "plan_id": "P1", "outcome": "continue"}),
            ));
        }
        history(&events)
    };
    // Due 10 Jul 2024 (ICPC + 3 months), then 6 months after each review.
    let on_time = reviewed(&["2024-07-10", "2025-01-09"]); // due 10 Jul, then 10 Jan: both on time
    let late_first = reviewed(&["2024-07-11", "2025-01-10"]); // a day late, then on time (due 11 Jan)
    let missed = reviewed(&["2024-07-01"]); // on time, then nothing by the 1 Jan 2025 due date
    let period = Period::financial_year("2024-25").expect("period");
    let today = day("2025-06-01");
    let facts = |h: &History| casework::facts::fold_child(h).expect("registered").plans.remove(0);
    assert_eq!(reviews_on_time(&facts(&on_time), period, today), Some(true));
    assert_eq!(reviews_on_time(&facts(&late_first), period, today), Some(false));
    assert_eq!(reviews_on_time(&facts(&missed), period, today), Some(false));
    // A plan that ended before its first review fell due is not counted.
    let short = plan("2024-04-10", Some("2024-06-01"));
    assert_eq!(reviews_on_time(&facts(&short), period, today), None);

    let data = council(&[on_time, late_first, missed, short], &[], &[]);
    let i = indicator(&data, "2024-25", "2025-06-01", "plans_reviewed_within_timescale");
    assert_eq!(figures(&i), (1.0, Some(3.0), Some(1.0 / 3.0)));
}

#[test]
fn children_on_plans_seen_within_the_interval_count_statutory_visits_only() {
    let seen = |sightings: &[(&str, &str)]| {
        let mut events = vec![
            registered(),
            ("conference.held", "2025-01-06", json!({"conference_id": "C1", "kind": "initial", "outcome": "plan"})),
            ("cp_plan.started", "2025-01-06", json!({"plan_id": "P1", "conference_id": "C1", "category": "NEG"})),
        ];
        for (when, context) in sightings {
            events.push(("child.seen", when, json!({"seen_by": "W1", "seen_alone": true, "context": context})));
        }
        history(&events)
    };
    // Period end 31 Mar 2025, interval 10 days: visits after 21 March count.
    let data = council(
        &[
            seen(&[("2025-03-25", "statutory_visit")]),
            seen(&[("2025-03-21", "statutory_visit")]), // exactly 10 days before: outside
            seen(&[("2025-03-28", "school")]),          // seen, but not a statutory visit
        ],
        &[],
        &[json!({"effective_from": "2000-01-01", "visit_interval_days": 10})],
    );
    let i = indicator(&data, "2024-25", "2025-06-01", "children_on_plans_seen_within_interval");
    assert_eq!(figures(&i), (1.0, Some(3.0), Some(1.0 / 3.0)));
    assert!(matches!(i.detail, Detail::Visits { interval_days: 10, .. }), "{:?}", i.detail);
}

fn worker(council: &str, role: &str, fte: f64, agency: bool, left: Option<&str>) -> History {
    let mut events = vec![(
        "worker.joined",
        "2024-01-01",
        json!({"council": council, "team_id": "T1", "role": role, "fte": fte, "agency_staff": agency}),
    )];
    if let Some(left) = left {
        events.push(("worker.left", left, json!({})));
    }
    history(&events)
}

#[test]
fn caseload_is_open_allocated_cases_per_case_holding_fte() {
    let w1 = uuid::Uuid::from_u128(1000).to_string();
    let w2 = uuid::Uuid::from_u128(1001).to_string();
    let allocated = |worker: &str, until: Option<&str>| {
        let mut events =
            vec![registered(), ("case.allocated", "2024-06-01", json!({"worker_id": worker, "team_id": "T1"}))];
        if let Some(until) = until {
            events.push(("case.deallocated", until, json!({"worker_id": worker})));
        }
        history(&events)
    };
    let children = [
        allocated(&w1, None),
        allocated(&w1, None),
        allocated(&w1, None),
        allocated(&w2, None),
        allocated(&w2, Some("2025-03-31")), // ended on the day: not held
    ];
    let workers = [
        worker(COUNCIL, "social_worker", 1.0, false, None),
        worker(COUNCIL, "senior_social_worker", 0.5, false, None),
        worker(COUNCIL, "team_manager", 1.0, false, None),
    ];
    let data = council(&children, &workers, &[json!({"effective_from": "2000-01-01", "caseload_threshold": 2})]);
    let i = indicator(&data, "2024-25", "2026-01-01", "caseload_per_worker");
    // 4 cases over 1.5 case-holding FTE; worker 1 has 3 per FTE (over 2), worker 2 has 1 / 0.5 = 2 (not over).
    assert_eq!(i.unit.code(), "per_fte");
    assert_eq!(figures(&i), (4.0, Some(1.5), Some(4.0 / 1.5)));
    assert!(matches!(i.detail, Detail::Caseload { workers_over_threshold: 1, .. }), "{:?}", i.detail);
}

#[test]
fn vacancy_rate_counts_permanent_staff_only() {
    let workers = [
        worker(COUNCIL, "social_worker", 1.0, false, None),
        worker(COUNCIL, "social_worker", 0.5, false, None),
        worker(COUNCIL, "social_worker", 1.0, true, None), // agency: covers, does not fill
        worker(COUNCIL, "social_worker", 1.0, false, Some("2025-02-01")), // gone by 31 March
    ];
    let data = council(&[], &workers, &[json!({"effective_from": "2000-01-01", "funded_social_worker_fte": 6.0})]);
    let i = indicator(&data, "2024-25", "2026-01-01", "vacancy_rate");
    // Funded 6, permanent filled 1.5: vacant 4.5, a rate of 0.75.
    assert_eq!(figures(&i), (4.5, Some(6.0), Some(0.75)));
}

/// The DfE's workforce census: vacancies over vacancies plus filled FTE,
/// every grade of social worker filling a post (managers too), family
/// support workers none.
#[test]
fn vacancy_rate_is_vacancies_over_vacancies_and_filled_posts_of_every_social_work_grade() {
    let workers = [
        worker(COUNCIL, "social_worker", 1.0, false, None),
        worker(COUNCIL, "senior_social_worker", 1.0, false, None),
        worker(COUNCIL, "team_manager", 1.0, false, None),
        worker(COUNCIL, "family_support_worker", 1.0, false, None),
    ];
    let data = council(&[], &workers, &[json!({"effective_from": "2000-01-01", "funded_social_worker_fte": 5.0})]);
    let i = indicator(&data, "2024-25", "2026-01-01", "vacancy_rate");
    // Filled 3 (the manager's post is filled), vacant 2: 2 / (2 + 3) = 0.4.
    assert_eq!(figures(&i), (2.0, Some(5.0), Some(0.4)));
    // More in post than funded: no vacancy, and the denominator is who is in post.
    let data = council(&[], &workers, &[json!({"effective_from": "2000-01-01", "funded_social_worker_fte": 2.0})]);
    let i = indicator(&data, "2024-25", "2026-01-01", "vacancy_rate");
    assert_eq!(figures(&i), (0.0, Some(3.0), Some(0.0)));
}

#[test]
fn corrections_and_retractions_change_the_facts_they_name() {
    let h = history(&[
        registered(),
        ("referral.received", "2024-05-01", json!({"referral_id": "R1", "source": "6", "nfa": false})),
        ("referral.received", "2024-06-01", json!({"referral_id": "R2", "source": "6", "nfa": false})),
        // e1 really happened a year earlier; e2 was made in error.
        (
            "record.corrected",
            "2024-07-01",
            json!({"corrects": "e1", "reason": "wrong date", "time": "2023-05-01T12:00:00Z", "data": {"referral_id": "R1", "source": "6", "nfa": true}}),
        ),
        ("record.retracted", "2024-07-02", json!({"retracts": "e2", "reason": "entered in error"})),
    ]);
    let facts = casework::facts::fold_child(&h).expect("registered");
    assert_eq!(facts.referrals.len(), 1);
    assert_eq!(facts.referrals[0].received_on, day("2023-05-01"));
    assert!(facts.referrals[0].nfa);
}

/// Histories stored before the gateway refused them (events::standing):
/// a correction of the registration naming another council, and a
/// retraction of the registration. The read side folds them as the gateway
/// did, so the child and its referral stay Haringey's, in the facts and in
/// the census alike.
#[test]
fn a_stored_amendment_neither_moves_a_child_nor_unregisters_it() {
    let (t, time, mut elsewhere) = registered();
    elsewhere["council"] = "E09000019".into();
    let h = history(&[
        (t, time, registered().2),
        ("record.corrected", "2010-01-02", json!({"corrects": "e0", "reason": "moved", "data": elsewhere})),
        ("record.retracted", "2010-01-03", json!({"retracts": "e0", "reason": "hidden"})),
        ("referral.received", "2010-02-01", json!({"referral_id": "R1", "source": "6", "nfa": false})),
    ]);
    let facts = casework::facts::fold_child(&h).expect("registered");
    assert_eq!(facts.status.council.as_str(), COUNCIL);
    assert_eq!(facts.referrals.iter().map(|r| r.council.as_str()).collect::<Vec<_>>(), [COUNCIL]);
    let year = casework::cin::CollectionYear::parse("2009-10").expect("a year");
    let haringey = events::ids::CouncilCode::parse(COUNCIL).expect("a code");
    let census = casework::cin::census_child(&h, &haringey, &year, Calendar::england_and_wales());
    assert_eq!(census.map(|c| c.episodes.len()), Some(1), "the referral is in Haringey's census");
}

#[test]
fn the_analysts_rates_medians_and_bands_by_hand() {
    // Child A: referred in 2024-25, assessed in 10 working days (in need),
    // an enquiry, an ICPC and a plan, still open at 31 March 2025.
    let a = history(&[
        registered(),
        ("referral.received", "2024-06-03", json!({"referral_id": "R1", "source": "6", "nfa": false})),
        ("assessment.started", "2024-06-03", json!({"assessment_id": "A1", "referral_id": "R1"})),
        (
            "assessment.completed",
            "2024-06-17",
            json!({"assessment_id": "A1", "factors": ["2B"], "child_seen": true, "needs_support": true}),
        ),
        ("s47.started", "2024-06-04", json!({"s47_id": "S1", "referral_id": "R1"})),
        (
            "conference.held",
            "2024-06-20",
            json!({"conference_id": "C1", "kind": "initial", "s47_id": "S1", "outcome": "plan"}),
        ),
        ("cp_plan.started", "2024-06-20", json!({"plan_id": "P1", "conference_id": "C1", "category": "NEG"})),
        ("case.allocated", "2024-06-03", json!({"worker_id": "0b9f3c52-8d1e-4f6a-9c2b-3e4d5f6a7b8c", "team_id": "T1"})),
    ]);
    // Child D: referred in March 2025, still waiting for a worker on the 31st.
    let d = history(&[
        registered(),
        ("referral.received", "2025-03-20", json!({"referral_id": "R1", "source": "3A", "nfa": false})),
    ]);
    // Child B: referred and assessed in 50 working days as not in need, closed in the year.
    let b = history(&[
        registered(),
        ("referral.received", "2024-09-02", json!({"referral_id": "R1", "source": "2A", "nfa": false})),
        ("assessment.started", "2024-09-02", json!({"assessment_id": "A1", "referral_id": "R1"})),
        (
            "assessment.completed",
            "2024-11-11",
            json!({"assessment_id": "A1", "factors": ["21"], "child_seen": true, "needs_support": false}),
        ),
        ("case.closed", "2024-11-12", json!({"referral_id": "R1", "reason": "RC8"})),
    ]);
    // Child C: a no-further-action referral, never in need; an assessment the same day it began.
    let c = history(&[
        registered(),
        ("referral.received", "2025-01-06", json!({"referral_id": "R1", "source": "1A", "nfa": true})),
        ("assessment.started", "2025-01-06", json!({"assessment_id": "A1", "referral_id": "R1"})),
        (
            "assessment.completed",
            "2025-01-06",
            json!({"assessment_id": "A1", "factors": ["21"], "child_seen": true, "needs_support": false}),
        ),
    ]);
    let data = council(&[a, b, c, d], &[], &[json!({"effective_from": "2000-01-01", "population_0_17": 20000})]);
    let got = |name: &str| figures(&indicator(&data, "2024-25", "2025-06-01", name));
    // Two children in need on 31 March 2025 (A and D); B closed, C never opened: 2 per 20,000 = 1 per 10,000.
    assert_eq!(got("children_in_need_at_period_end"), (2.0, Some(20000.0), Some(1.0)));
    // Of them, D has no worker.
    assert_eq!(got("unallocated_cases"), (1.0, Some(2.0), Some(0.5)));
    assert_eq!(got("section_47_enquiries"), (1.0, Some(20000.0), Some(0.5)));
    assert_eq!(got("initial_conferences"), (1.0, Some(20000.0), Some(0.5)));
    assert_eq!(got("plans_started"), (1.0, Some(20000.0), Some(0.5)));
    // Two of three assessments found no need.
    assert_eq!(got("assessments_finding_no_need"), (2.0, Some(3.0), Some(2.0 / 3.0)));
    // Working days 0, 10 and 50 (2 September to 11 November 2024: ten weeks, no bank holiday): median 10.
    let median = indicator(&data, "2024-25", "2025-06-01", "assessment_duration_median");
    assert_eq!(median.unit.code(), "working_days");
    assert_eq!(figures(&median), (10.0, Some(3.0), Some(10.0)));
    let bands = serde_json::to_value(&median.detail).expect("json");
    assert_eq!(bands["bands"]["same_day"], 1);
    assert_eq!(bands["bands"]["1-10"], 1);
    assert_eq!(bands["bands"]["46-50"], 1);
    assert_eq!(bands["bands"]["61+"], 0);
    // England's figures come with their source.
    let england = casework::indicators::national(casework::indicators::Name::ChildrenInNeed).expect("a figure");
    assert!(england.source.contains("402,400"), "{}", england.source);
}
