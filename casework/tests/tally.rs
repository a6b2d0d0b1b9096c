//! Indicators from tallies equal indicators from the whole facts: for
//! arbitrary populations (`events::arbitrary`), any period and any today,
//! `compute_tallied` over the children's tallies summed as the read sums
//! them gives exactly what `compute` gives over the council's facts.
//!
//! The end-to-end version (the projector keeping `indicator_tally`, the
//! query role summing it) is in `tests/tests/read_side.rs`.

mod common;

use casework::facts::{CouncilSetting, setting_on};
use casework::indicators::{CouncilData, Period, Tallied, compute, compute_tallied, day_counted, visit_interval};
use casework::tally::{Measure, Summed, Tally, tallies};
use chrono::{Days, NaiveDate};
use common::histories;
use events::EventType;
use events::arbitrary::{COUNCILS, DAYS, first_day, population};
use events::calendar::Calendar;
use events::ids::{CouncilCode, WorkerId};
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};

/// Each council's facts as `projections::indicators::load` reads them, and
/// every child's tallies.
fn councils_and_tallies(p: &events::arbitrary::Population) -> (BTreeMap<CouncilCode, CouncilData>, Vec<Tally>) {
    let calendar = Calendar::england_and_wales();
    let all = histories(&p.events());
    let mut councils: BTreeMap<CouncilCode, CouncilData> =
        COUNCILS.iter().map(|c| (CouncilCode::parse(c).expect("a council"), CouncilData::default())).collect();
    let kind = |h: &casework::facts::History| h.first().map(casework::facts::Recorded::event_type);
    // Settings first: children's tallies are made under them.
    for (subject, history) in all.iter().filter(|(_, h)| kind(h) == Some(EventType::CouncilConfigured)) {
        if let Some(data) = CouncilCode::parse(subject).ok().and_then(|c| councils.get_mut(&c)) {
            data.settings = casework::facts::fold_council(history);
            // As the read models order them.
            data.settings.sort_by_key(|s| s.effective_from);
        }
    }
    let settings: BTreeMap<CouncilCode, Vec<CouncilSetting>> =
        councils.iter().map(|(c, d)| (c.clone(), d.settings.clone())).collect();
    let mut all_tallies = Vec::new();
    for (subject, history) in &all {
        match kind(history) {
            Some(EventType::ChildRegistered) => {
                let child: uuid::Uuid = subject.parse().unwrap_or_default();
                let facts = casework::facts::fold_child(history).expect("a child's history folds");
                all_tallies.extend(tallies(&facts, &settings, calendar));
                for (council, data) in &mut councils {
                    data.referrals
                        .extend(facts.referrals.iter().filter(|r| r.council == *council).map(|r| (child, r.clone())));
                    data.assessments.extend(facts.assessments.iter().filter(|a| a.council == *council).cloned());
                    data.icpcs.extend(facts.icpcs.iter().filter(|i| i.council == *council).cloned());
                    data.section47s.extend(facts.section47s.iter().filter(|s| s.council == *council).cloned());
                    data.plans.extend(facts.plans.iter().filter(|p| p.council == *council).map(|p| (child, p.clone())));
                    data.allocations
                        .extend(facts.allocations.iter().filter(|a| a.council == *council).map(|a| (child, a.clone())));
                    if facts.plans.iter().any(|p| p.council == *council) {
                        data.visits
                            .insert(child, facts.sightings.iter().filter(|s| s.statutory).map(|s| s.seen_on).collect());
                    }
                }
            }
            Some(EventType::WorkerJoined) => {
                for spell in casework::facts::fold_worker(history) {
                    if let Some(data) = councils.get_mut(&spell.council) {
                        data.spells.push((WorkerId::parse(subject).expect("worker"), spell));
                    }
                }
            }
            _ => {}
        }
    }
    (councils, all_tallies)
}

/// Sums `tallies` as `projections::indicators::tallied`'s SQL does: the
/// period's days by segment and key, the running measures up to `at`.
fn summed(
    tallies: &[Tally],
    council: &CouncilCode,
    from: NaiveDate,
    to: NaiveDate,
    at: NaiveDate,
    segments: &[NaiveDate],
) -> Summed {
    let mut out = Summed::default();
    for t in tallies.iter().filter(|t| t.council == *council) {
        if t.measure.is_running() {
            if t.day <= at {
                *out.at.entry(t.measure).or_default() += t.n;
            }
        } else if from <= t.day && t.day <= to {
            let segment = segments.iter().filter(|s| **s <= t.day).count();
            *out.over.entry((t.measure, segment, t.key)).or_default() += t.n;
        }
    }
    out.over.retain(|_, n| *n != 0);
    out.at.retain(|_, n| *n != 0);
    out
}

/// What `projections::indicators::tallied` reads, taken from the facts and
/// tallies in memory with the same conditions as its queries.
fn tallied(data: &CouncilData, all: &[Tally], council: &CouncilCode, period: Period, today: NaiveDate) -> Tallied {
    let at = day_counted(period, today);
    let segments = Summed::segments(&data.settings, period.from, period.to);
    let summed = summed(all, council, period.from, period.to, at, &segments);
    let starting: BTreeSet<uuid::Uuid> =
        data.plans.iter().filter(|(_, p)| period.contains(p.started_on)).map(|(c, _)| *c).collect();
    let second: BTreeSet<uuid::Uuid> =
        data.plans.iter().filter(|(_, p)| period.contains(p.started_on) && p.earlier_plan).map(|(c, _)| *c).collect();
    let mut cases = BTreeMap::new();
    for (_, a) in data.allocations.iter().filter(|(_, a)| a.open_on(at)) {
        *cases.entry(a.worker_id).or_default() += 1;
    }
    Tallied {
        settings: data.settings.clone(),
        plans_under_review: data
            .plans
            .iter()
            .filter(|(_, p)| p.icpc_on < period.to && p.ended_on.is_none_or(|e| e > period.from))
            .map(|(_, p)| p.clone())
            .collect(),
        starting_plans: (starting.len(), second.len()),
        summed,
        spells: data.spells.clone(),
        cases,
    }
}

fn day(offset: u16) -> NaiveDate {
    first_day().checked_add_days(Days::new(u64::from(offset))).unwrap_or_default()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn indicators_from_tallies_equal_indicators_from_the_facts(
        p in population(8, 40),
        spans in proptest::collection::vec((0..DAYS, 0u16..800, 0..DAYS + 60), 4),
    ) {
        let calendar = Calendar::england_and_wales();
        let (councils, all) = councils_and_tallies(&p);
        for (council, data) in &councils {
            let mut periods: Vec<(Period, NaiveDate)> = spans
                .iter()
                .map(|(from, len, today)| (Period { from: day(*from), to: day(from.saturating_add(*len)) }, day(*today)))
                .collect();
            // Financial years, and a period split where the council's settings change.
            for year in ["2020-21", "2024-25", "2026-27"] {
                periods.push((Period::financial_year(year).expect("year"), day(DAYS)));
            }
            for s in &data.settings {
                let around = Period { from: s.effective_from - Days::new(200), to: s.effective_from + Days::new(200) };
                periods.push((around, day(DAYS)));
            }
            for (period, today) in periods {
                let expected = compute(data, period, today, calendar);
                let got = compute_tallied(&tallied(data, &all, council, period, today), period, today);
                prop_assert_eq!(&got, &expected, "{} {:?} today {}", council, period, today);
            }
        }
    }

    /// A child's tallies are its own: folding it twice gives the same list,
    /// and what a refold adds is the difference of the two.
    #[test]
    fn a_childs_tallies_are_canonical(p in population(3, 40)) {
        let calendar = Calendar::england_and_wales();
        for history in histories(&p.events()).values() {
            if history.first().map(casework::facts::Recorded::event_type) != Some(EventType::ChildRegistered) {
                continue;
            }
            let facts = casework::facts::fold_child(history).expect("folds");
            let once = tallies(&facts, &BTreeMap::new(), calendar);
            prop_assert_eq!(&once, &tallies(&facts, &BTreeMap::new(), calendar));
            prop_assert!(once.windows(2).all(|w| w[0] < w[1]), "sorted, each key once");
            prop_assert!(once.iter().all(|t| t.n != 0));
            prop_assert!(casework::tally::difference(&once, &once).is_empty());
        }
    }
}

/// Visits count under the interval in force on the day counted, not the
/// one in force when the visit was made.
#[test]
fn a_visit_counts_under_the_interval_of_the_day_counted() {
    let council = CouncilCode::parse("E09000014").expect("council");
    let d = |s: &str| s.parse::<NaiveDate>().expect("date");
    let setting = |from: &str, days: i32| CouncilSetting {
        effective_from: d(from),
        visit_interval_days: Some(days),
        ..CouncilSetting::default()
    };
    let settings = vec![setting("2024-01-01", 14), setting("2024-03-01", 40)];
    assert_eq!(visit_interval(setting_on(&settings, d("2024-03-05")).expect("set")), 40);
    let facts = casework::facts::ChildFacts {
        plans: vec![casework::facts::CpPlan {
            plan_id: events::ids::LocalId::parse("P1").expect("id"),
            council: council.clone(),
            category: events::codes::CategoryOfAbuse::Neglect,
            started_on: d("2024-01-01"),
            ended_on: None,
            icpc_on: d("2024-01-01"),
            earlier_plan: false,
            reviews: vec![],
        }],
        sightings: vec![casework::facts::Sighting {
            sequence: 3,
            seen_at: d("2024-02-10").and_hms_opt(10, 0, 0).expect("time").and_utc(),
            seen_on: d("2024-02-10"),
            statutory: true,
            alone: true,
        }],
        ..casework::facts::ChildFacts::registered(council.clone())
    };
    let all = tallies(&facts, &BTreeMap::from([(council.clone(), settings)]), Calendar::england_and_wales());
    let seen_on = |day: &str| summed(&all, &council, d(day), d(day), d(day), &[]).open(Measure::Seen);
    // 14 days in February: seen to the 23rd, not on the 24th.
    assert_eq!((seen_on("2024-02-23"), seen_on("2024-02-24")), (1, 0));
    // From March the interval is 40 days: the same visit counts again until 21 March.
    assert_eq!((seen_on("2024-03-01"), seen_on("2024-03-20"), seen_on("2024-03-21")), (1, 1, 0));
}
