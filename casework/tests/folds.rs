//! The pure folds take any history the catalogue allows: for arbitrary
//! populations (`events::arbitrary`), every fold, return and indicator is
//! computed without a panic, and every row a fold returns has a key that
//! is unique where its table's primary key says it must be. A fold that
//! returned two rows under one key stopped the projector for good (the
//! table refused the batch, which was retried for ever).
//!
//! The end-to-end version, through a real gateway, projector and query
//! role, is `tests/tests/read_side.rs`; this one runs thousands of
//! histories in seconds and shrinks a failure to a few events.

mod common;

use casework::facts::History;
use casework::indicators::{CouncilData, Period};
use chrono::NaiveDate;
use common::histories;
use events::EventType;
use events::arbitrary::{COUNCILS, population};
use events::calendar::Calendar;
use events::ids::CouncilCode;
use proptest::prelude::*;
use std::collections::{BTreeMap, HashSet};

fn unique<'a>(what: &str, keys: impl IntoIterator<Item = &'a str>) -> Result<(), TestCaseError> {
    let mut seen = HashSet::new();
    for k in keys {
        prop_assert!(seen.insert(k), "two {what} rows share the key {k}");
    }
    Ok(())
}

fn kind_of(history: &History) -> Option<EventType> {
    history.first().map(casework::facts::Recorded::event_type)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn every_fold_takes_any_history_and_keys_its_rows_uniquely(p in population(8, 40)) {
        let calendar = Calendar::england_and_wales();
        let all = histories(&p.events());
        let codes: Vec<CouncilCode> = COUNCILS.iter().map(|c| CouncilCode::parse(c).expect("a council")).collect();
        let mut councils: BTreeMap<&CouncilCode, CouncilData> = codes.iter().map(|c| (c, CouncilData::default())).collect();
        let today = NaiveDate::from_ymd_opt(2026, 12, 1).unwrap_or_default();
        for (subject, history) in &all {
            for r in history.iter() {
                let _ = casework::summary::summarise(&r.data);
                let _ = casework::summary::amends(&r.data);
            }
            match kind_of(history) {
                Some(EventType::ChildRegistered) => {
                    let child: uuid::Uuid = subject.parse().unwrap_or_default();
                    let facts = casework::facts::fold_child(history).expect("a child's history starts with its registration");
                    unique("referral", facts.referrals.iter().map(|r| r.referral_id.as_str()))?;
                    unique("assessment", facts.assessments.iter().map(|a| a.assessment_id.as_str()))?;
                    unique("icpc", facts.icpcs.iter().map(|i| i.conference_id.as_str()))?;
                    unique("cp_plan", facts.plans.iter().map(|p| p.plan_id.as_str()))?;
                    unique("child_review", facts.reviews.iter().map(|r| r.review_id.as_str()))?;
                    // Alerts: one per id, every status defined at any moment.
                    let settings: BTreeMap<CouncilCode, Vec<casework::facts::CouncilSetting>> = BTreeMap::new();
                    let child_id = events::ids::ChildId::from_uuid(child);
                    let alerts = casework::alerts::fold(child_id, history, &facts, &settings, calendar);
                    let ids: Vec<String> = alerts.iter().map(|a| a.id.to_string()).collect();
                    unique("alert", ids.iter().map(String::as_str))?;
                    for a in &alerts {
                        prop_assert!(a.raised_at < a.escalates_at, "an alert escalates after it is raised: {a:?}");
                        let _ = a.status(today.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc());
                    }
                    let involved = casework::involvement::involvement(history, &facts);
                    let publishers: Vec<&str> = involved.agencies.iter().map(|a| a.publisher.as_str()).collect();
                    unique("agency", publishers)?;
                    for a in &involved.agencies {
                        prop_assert!(a.first_on <= a.last_on && a.counts.values().all(|n| *n > 0));
                    }
                    let folded = casework::cin::fold(history, NaiveDate::MAX, calendar);
                    let _ = casework::quality::flags(&folded);
                    for council in &codes {
                        for year in ["2019-20", "2022-23", "2024-25", "2025-26", "2026-27"] {
                            if let Ok(y) = casework::cin::CollectionYear::parse(year)
                                && let Some(c) = casework::cin::census_child(history, council, &y, calendar)
                            {
                                let _ = casework::quality::flags(&c);
                            }
                        }
                        let _ = casework::annex_a::rows(history, council, today, calendar);
                    }
                    for (council, data) in &mut councils {
                        data.referrals.extend(facts.referrals.iter().filter(|r| r.council == **council).map(|r| (child, r.clone())));
                        data.assessments.extend(facts.assessments.iter().filter(|a| a.council == **council).cloned());
                        data.icpcs.extend(facts.icpcs.iter().filter(|i| i.council == **council).cloned());
                        data.section47s.extend(facts.section47s.iter().filter(|s| s.council == **council).cloned());
                        data.plans.extend(facts.plans.iter().filter(|p| p.council == **council).map(|p| (child, p.clone())));
                        data.allocations.extend(facts.allocations.iter().filter(|a| a.council == **council).map(|a| (child, a.clone())));
                        data.visits.insert(child, facts.sightings.iter().filter(|s| s.statutory).map(|s| s.seen_on).collect());
                    }
                }
                Some(EventType::WorkerJoined) => {
                    for spell in casework::facts::fold_worker(history) {
                        if let Some(data) = councils.get_mut(&spell.council) {
                            data.spells.push((events::ids::WorkerId::parse(subject).expect("worker"), spell));
                        }
                    }
                }
                _ => {
                    let settings = casework::facts::fold_council(history);
                    let mut seen = HashSet::new();
                    for s in &settings {
                        prop_assert!(seen.insert(s.effective_from), "two settings from {}", s.effective_from);
                    }
                    if let Some(data) = CouncilCode::parse(subject).ok().and_then(|c| councils.get_mut(&c)) {
                        data.settings = settings;
                    }
                }
            }
        }
        for (council, data) in &councils {
            for year in ["2019-20", "2023-24", "2025-26", "2026-27"] {
                if let Ok(period) = Period::financial_year(year) {
                    let _ = casework::indicators::compute(data, period, today, calendar);
                    let _ = casework::indicators::document_from(data, council, period, today);
                }
            }
        }
    }
}
