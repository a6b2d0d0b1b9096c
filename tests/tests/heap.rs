//! What the service's own copies cost in heap, measured with DHAT's heap
//! statistics (`dhat`). DHAT counts the whole process's heap, so the tests
//! of this binary take turns (`SERIAL`).
//!
//! - The projector's kept folds (`projections::kept`) bound its memory by a
//!   budget counted in [`Entry::weight`]. The bound holds only if a unit of
//!   weight costs about the same memory whatever the histories look like,
//!   so this measures it for children registered and not yet heard of again
//!   (a steady trickle of new children) and for seeded four-year histories.
//!   Measured when it was written: 497 and 277 bytes a unit (994 and 594
//!   bytes an event).
//! - The gateway keeps each subject's state, every id stored in it among
//!   it, and a request plans on a copy of its subjects' states. What one
//!   event costs must not grow with the child's history.

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

/// One DHAT profiler at a time, and nothing else allocating beside it.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The most a unit of weight may cost, so that [`KEPT_WEIGHT`] bounds the
/// copy near a hundred megabytes.
const BYTES_PER_UNIT: usize = 1_000;

#[test]
fn a_unit_of_kept_weight_costs_about_the_same_memory_whatever_the_histories() {
    let _serial = SERIAL.blocking_lock();
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

/// Events for a child, for the gateway test.
fn seen(prefix: &str, child: &str, n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| {
            tests::fixtures::event(
                &format!("{prefix}-{i}"),
                "child.seen",
                child,
                "2026-11-02T10:00:00Z",
                serde_json::json!({"seen_by": "W1", "seen_alone": true, "context": "statutory_visit"}),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_event_costs_the_gateway_the_same_heap_whatever_the_length_of_the_childs_history() {
    let _serial = SERIAL.lock().await;
    let nats = tests::NatsServer::start().await;
    let gateway = tests::gateway::TestGateway::start(&nats.url()).await;
    let token = tests::gateway::tokens::HARINGEY;
    let (long, short) = (uuid::Uuid::new_v4().to_string(), uuid::Uuid::new_v4().to_string());
    for (child, events) in [(&long, 5_000), (&short, 5)] {
        let r = gateway
            .post(token, &Value::Array(vec![tests::fixtures::registered(&format!("r-{child}"), child, "E09000014")]))
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
        for (b, batch) in seen(&format!("h-{child}"), child, events).chunks(1_000).enumerate() {
            let r = gateway.post(token, &Value::Array(batch.to_vec())).await;
            assert_eq!(r.status, 201, "batch {b}: {}", r.text);
        }
    }

    // Counted from here, with both children's states in the gateway's cache.
    const REQUESTS: usize = 50;
    let _profiler = dhat::Profiler::builder().testing().build();
    let mut per_request = Vec::new();
    for (round, (child, what)) in
        [(&long, "5,000 events"), (&short, "5 events"), (&long, "5,000 events, again")].into_iter().enumerate()
    {
        let events = seen(&format!("one-{round}-{child}"), child, REQUESTS);
        let before = dhat::HeapStats::get().total_bytes;
        for event in events {
            let r = gateway.post(token, &Value::Array(vec![event])).await;
            assert_eq!(r.status, 201, "{}", r.text);
        }
        let bytes = (dhat::HeapStats::get().total_bytes - before) / REQUESTS as u64;
        println!("one event on a child of {what}: {bytes} bytes allocated a request");
        per_request.push(bytes);
    }
    let short_one = per_request[1];
    for long_one in [per_request[0], per_request[2]] {
        assert!(
            long_one < short_one * 3 / 2,
            "an event on a child of 5,000 events allocates {long_one} bytes, on a child of 5 {short_one}"
        );
    }
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
