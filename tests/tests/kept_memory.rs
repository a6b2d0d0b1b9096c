//! The projector's kept folds (`projections::kept`) bound its memory by a
//! budget counted in [`Entry::weight`]. The bound holds only if a unit of
//! weight costs about the same memory whatever the histories look like, so
//! this measures it, with DHAT's heap statistics (`dhat`), for children
//! registered and not yet heard of again (a steady trickle of new children)
//! and for seeded four-year histories. Measured when it was written: 497
//! and 277 bytes a unit (994 and 594 bytes an event).
//!
//! One test in its own binary: DHAT counts the whole process's heap.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test stops at the first surprise
#![allow(clippy::print_stdout)] // the measured figures, for the notes

use casework::facts::{History, Recorded};
use chrono::DateTime;
use events::arbitrary::stored_data;
use events::calendar::business_date_of;
use events::ids::{EventId, PrincipalName};
use projections::kept::{Entry, KEPT_WEIGHT, Kept, Rows};
use serde_json::Value;
use std::collections::BTreeMap;

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

/// The most a unit of weight may cost, so that [`KEPT_WEIGHT`] bounds the
/// copy near a hundred megabytes.
const BYTES_PER_UNIT: usize = 1_000;

#[test]
fn a_unit_of_kept_weight_costs_about_the_same_memory_whatever_the_histories() {
    let until = chrono::NaiveDate::from_ymd_opt(2026, 3, 31).unwrap();
    let seeded: Vec<Vec<Value>> = safeguard::cli::seed::generate(7, 2, 400, until)
        .unwrap()
        .into_iter()
        .filter(|g| g.first().is_some_and(|e| e["type"] == "child.registered"))
        .collect();
    let registered: Vec<Vec<Value>> = (0..4_000)
        .map(|n| {
            let child = uuid::Uuid::from_u128(n + 1).to_string();
            vec![tests::fixtures::registered(&format!("r-{n}"), &child, "E09000014")]
        })
        .collect();

    // Counted from here: the generated events above are the input, not the copy.
    let _profiler = dhat::Profiler::builder().testing().build();
    let mut costs = Vec::new();
    for (shape, groups) in [("registered once", &registered), ("seeded four-year histories", &seeded)] {
        let kept = Kept::new(usize::MAX);
        let before = dhat::HeapStats::get().curr_bytes;
        let mut events = 0;
        for group in groups {
            let (child, history) = history(group);
            events += history.len();
            let rows = Rows::fold(child, &history, &BTreeMap::new()).expect("a seeded history folds");
            kept.keep([(child, Entry { stamp: uuid::Uuid::new_v4(), history, rows })]);
        }
        let bytes = dhat::HeapStats::get().curr_bytes - before;
        let (children, weight) = kept.size();
        let per_unit = bytes / weight;
        println!(
            "{shape}: {children} children, {events} events, weight {weight}: {bytes} bytes, \
             {per_unit} a unit of weight, {} an event",
            bytes / events
        );
        assert!(
            per_unit <= BYTES_PER_UNIT,
            "{shape}: a unit of weight costs {per_unit} bytes, so {KEPT_WEIGHT} of them is more than {} MB",
            KEPT_WEIGHT * BYTES_PER_UNIT / 1_000_000
        );
        costs.push(per_unit);
        drop(kept);
    }
    let (low, high) = (costs.iter().min().unwrap(), costs.iter().max().unwrap());
    assert!(high / low < 3, "a unit of weight costs from {low} to {high} bytes as the histories' shape changes");
}

/// A child's history as the projector reads it back from `stored_event`:
/// the data in the stored form (personal fields sealed), decoded.
fn history(group: &[Value]) -> (uuid::Uuid, History) {
    let source = "safeguard-admin";
    let child: uuid::Uuid = group[0]["subject"].as_str().unwrap().parse().unwrap();
    let recorded = group
        .iter()
        .zip(stored_data(group, source))
        .enumerate()
        .map(|(n, (e, data))| {
            let time = DateTime::parse_from_rfc3339(e["time"].as_str().unwrap()).unwrap();
            Recorded {
                sequence: n as i64 + 1,
                event_id: EventId::parse(e["id"].as_str().unwrap()).unwrap(),
                source: PrincipalName::parse(source).unwrap(),
                occurred_at: time.to_utc(),
                business_date: business_date_of(&time),
                recorded_at: time.to_utc(),
                data: data.expect("the catalogue takes the seed"),
                author_role: None,
                significant: None,
            }
        })
        .collect();
    (child, History::new(recorded).unwrap())
}
