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
        last = r.last_stream_sequence().max(last);
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

/// Every table keyed by child is refolded whole: the list the refold
/// deletes from covers every table of the schema with a `child_id`,
/// but the chronology (one row per event, never rewritten), the
/// identifier index (rewritten by its own refresh), a child's indicator
/// tallies (rewritten by `tally::Writes`, which must read what it
/// deletes) and the queue of children to fold again (which a refold
/// empties, never writes).
#[tokio::test]
async fn every_table_keyed_by_child_is_rewritten_by_a_refold() {
    let db = tests::TestDatabase::create().await;
    let pool = db.pool().await;
    projections::migrate(&pool, projections::LIVE_SCHEMA).await.expect("migrate");
    let tables: Vec<String> = sqlx::query_scalar(
        "select table_name::text from information_schema.columns
          where table_schema = 'projection' and column_name = 'child_id' order by 1",
    )
    .fetch_all(&pool)
    .await
    .expect("tables");
    let left: Vec<&String> = tables
        .iter()
        .filter(|t| !projections::refold::CHILD_TABLES.contains(&t.as_str()))
        .filter(|t| {
            !["chronology_entry", "child_identifier", "indicator_part", "refold_pending", "child_fold"]
                .contains(&t.as_str())
        })
        .collect();
    assert!(left.is_empty(), "tables keyed by child that a refold would write twice: {left:?}");
}

/// Every read-model table is compared between live and rebuilt read models
/// (or named as not, with why): a table left off the list would let a
/// rebuild differ from the live one unseen, as `section_47` once did.
#[tokio::test]
async fn every_read_model_table_is_compared() {
    let db = tests::TestDatabase::create().await;
    let pool = db.pool().await;
    projections::migrate(&pool, projections::LIVE_SCHEMA).await.expect("migrate");
    let tables: Vec<String> = sqlx::query_scalar(
        "select table_name::text from information_schema.tables
          where table_schema = 'projection' and table_type = 'BASE TABLE' order by 1",
    )
    .fetch_all(&pool)
    .await
    .expect("tables");
    let compared: Vec<&str> = tests::tables::read_models().into_iter().map(|(t, _)| t).collect();
    let left: Vec<&String> = tables
        .iter()
        .filter(|t| !compared.contains(&t.as_str()))
        .filter(|t| !tests::tables::NOT_COMPARED.iter().any(|(n, _)| n == t))
        .collect();
    assert!(left.is_empty(), "read-model tables no comparison covers: {left:?}");
}

mod generated {
    use super::*;
    use events::arbitrary::{COUNCILS, Population, population};
    use proptest::prelude::*;
    use proptest::test_runner::{Config, RngSeed, TestRunner};

    /// Cases and seed: a fixed, bounded run in the suite; a long run with
    /// `SAFEGUARD_READ_SIDE_CASES=N SAFEGUARD_READ_SIDE_SEED=random`
    /// (docs/testing.md, "Testing the read side").
    fn runner() -> TestRunner {
        let cases = std::env::var("SAFEGUARD_READ_SIDE_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(4);
        let seed = match std::env::var("SAFEGUARD_READ_SIDE_SEED").as_deref() {
            Ok("random") => RngSeed::Random,
            Ok(n) => RngSeed::Fixed(n.parse().unwrap_or(15)),
            Err(_) => RngSeed::Fixed(15),
        };
        TestRunner::new(Config {
            cases,
            rng_seed: seed,
            max_shrink_iters: 32,
            failure_persistence: None,
            ..Config::default()
        })
    }

    /// Publishes the population in requests of one to twelve events, in
    /// order, and returns the last stream sequence.
    async fn publish(system: &System, events: &[Value], sizes: &[u8]) -> Result<u64, String> {
        let mut last = 0;
        let mut rest = events;
        let mut turn = 0;
        while !rest.is_empty() {
            let n = (1 + usize::from(sizes[turn % sizes.len()]) % 12).min(rest.len());
            turn += 1;
            let (chunk, tail) = rest.split_at(n);
            rest = tail;
            let r = system.gateway.post(tokens::ADMIN, &Value::Array(chunk.to_vec())).await;
            if r.status != 201 {
                return Err(format!(
                    "the gateway refused a generated request ({}): {}\nrequest: {}",
                    r.status,
                    r.text,
                    Value::Array(chunk.to_vec())
                ));
            }
            last = r.last_stream_sequence().max(last);
        }
        Ok(last)
    }

    /// Every read of the query role, for every subject, as an admin.
    fn reads(p: &Population) -> Vec<String> {
        let mut paths = Vec::new();
        for child in p.child_ids() {
            for suffix in [
                "chronology",
                "chronology?format=csv",
                "chronology?format=md",
                "chronology/export",
                "chronology/export?format=md",
                "quality",
            ] {
                paths.push(format!("/v1/children/{child}/{suffix}"));
            }
        }
        // The workers who joined: the one allocations name without joining is no subject.
        for worker in p.workers.iter().map(|(seed, _)| events::arbitrary::uuid_of(*seed)) {
            paths.push(format!("/v1/workers/{worker}/caseload"));
        }
        for council in COUNCILS {
            paths.push(format!("/v1/caseloads?council={council}"));
            paths.push(format!("/v1/quality?council={council}"));
            for year in ["2020-21", "2024-25", "2025-26", "2026-27"] {
                paths.push(format!("/v1/indicators?council={council}&period={year}"));
            }
            for year in ["2024-25", "2025-26"] {
                paths.push(format!("/v1/returns/cin?council={council}&year={year}"));
            }
            for list in [1, 3, 4, 5, 6, 7] {
                paths.push(format!("/v1/returns/annex-a?council={council}&date=2026-11-30&list={list}"));
            }
        }
        paths
    }

    async fn one(p: Population, sizes: Vec<u8>) -> Result<(), String> {
        let system = System::start().await;
        let events = p.events();
        let last = publish(&system, &events, &sizes).await?;
        system.projector.wait_clean(last).await;

        for path in reads(&p) {
            let answer = system.query.get(tokens::ADMIN, &path).await;
            if answer.status != 200 {
                return Err(format!("GET {path} answered {}: {}", answer.status, answer.text));
            }
        }
        // The indicators the projector's tallies give are those of the
        // council's whole facts, for financial years, spans across them
        // and days counted before, within and after.
        for council in COUNCILS {
            let council = events::ids::CouncilCode::parse(council).map_err(|e| e.to_string())?;
            let data = projections::indicators::load(&system.pool, &council).await.map_err(|e| e.to_string())?;
            let day = |s: &str| s.parse::<chrono::NaiveDate>().map_err(|e| e.to_string());
            let mut periods = Vec::new();
            for year in ["2019-20", "2021-22", "2024-25", "2025-26", "2026-27"] {
                periods.push(casework::indicators::Period::financial_year(year)?);
            }
            periods.push(casework::indicators::Period { from: day("2020-02-11")?, to: day("2023-07-30")? });
            periods.push(casework::indicators::Period { from: day("2025-12-24")?, to: day("2026-01-02")? });
            for period in periods {
                for today in [day("2025-06-15")?, day("2026-11-30")?] {
                    let expected = casework::indicators::document_from(&data, &council, period, today);
                    let got = projections::indicators::document(&system.pool, &council, period, today)
                        .await
                        .map_err(|e| e.to_string())?;
                    if got != expected {
                        return Err(format!(
                            "indicators of {council} for {period:?} on {today} from tallies differ from the facts':\n{}\n{}",
                            serde_json::to_string(&got).unwrap_or_default(),
                            serde_json::to_string(&expected).unwrap_or_default()
                        ));
                    }
                }
            }
        }
        let parked: i64 = sqlx::query_scalar("select count(*) from parked_subject")
            .fetch_one(&system.pool)
            .await
            .map_err(|e| e.to_string())?;
        if parked != 0 {
            return Err(format!("{parked} subjects parked"));
        }

        // A clean rebuild, in one batch per thousand messages, leaves the
        // same tables as the live projector's small batches did.
        let (_clean, clean_pool) =
            tests::projector::clean_projection(&system.nats.url(), &system.gateway.path("master.key"), last).await;
        let differ = tests::tables::differences(&system.pool, &clean_pool).await;
        if !differ.is_empty() {
            return Err(format!("{differ:?} differ between the live projector and a clean rebuild"));
        }
        Ok(())
    }

    /// Arbitrary multi-agency histories for many children, workers and
    /// councils, through a real gateway, projector and query role: the
    /// projector reaches the head with no interruption and nothing parked,
    /// every read answers 200, and a clean rebuild equals the live tables.
    #[test]
    fn any_accepted_history_is_applied_read_and_rebuilt_the_same() {
        let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
        let mut runner = runner();
        let strategy = (population(12, 30), proptest::collection::vec(any::<u8>(), 1..16));
        let histories = std::sync::atomic::AtomicUsize::new(0);
        let published = std::sync::atomic::AtomicUsize::new(0);
        let result = runner.run(&strategy, |(p, sizes)| {
            let h = histories.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            let e = published.fetch_add(p.events().len(), std::sync::atomic::Ordering::Relaxed) + p.events().len();
            // A running total, so a long run stopped from outside still says what it covered.
            eprintln!(
                "read side: case {h}: {} children, {} events; {e} events in all",
                p.children.len(),
                p.events().len()
            );
            rt.block_on(one(p, sizes)).map_err(TestCaseError::fail)
        });
        eprintln!(
            "read side: {} histories, {} events (shrinking included)",
            histories.into_inner(),
            published.into_inner()
        );
        if let Err(e) = result {
            panic!("{e}");
        }
    }
}
