//! Read-model figures on a seeded population: projection throughput with
//! every read model, rebuild time, and chronology latency for a child with
//! 1,000 events. A measurement, not a test.
//!
//! `cargo run --release -p tests --example read_models -- [EVENTS]`
//!
//! Generates about EVENTS events with `safeguard seed`'s generator (eight
//! councils), plus one child with 1,000 events, loads them through a real
//! gateway into a real NATS (sync_interval: always), then times:
//! 1. one projector applying the whole stream to a fresh database
//!    (stored copy, chronology, caseload and indicator facts together);
//! 2. `rebuild` of all of it beside the live tables, then the switch;
//! 3. GET /v1/children/{child}/chronology for the 1,000-event child through
//!    the query role (access event stored before each answer), 200 times;
//! 4. GET /v1/indicators for one council and year, and GET /v1/caseloads,
//!    50 times each.

#![allow(clippy::print_stdout)] // printing the figures is the point

use chrono::NaiveDate;
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tests::gateway::{TestGateway, tokens};
use tests::query::TestQuery;
use tests::{NatsServer, TestDatabase};

#[tokio::main]
async fn main() {
    let target: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let until = NaiveDate::from_ymd_opt(2026, 3, 31).expect("date");
    // About 19 events per seeded child.
    let per_council = (target / 8 / 19).max(10);
    let started = Instant::now();
    let mut groups = services::seed::generate(42, 8, per_council, until).expect("seed");
    let big = uuid::Uuid::new_v4().to_string();
    let mut long = vec![json!({"specversion": "1.0", "id": "big-0", "type": "child.registered", "subject": big,
        "time": "2020-01-06T10:00:00Z", "data": {"council": "E09000014", "la_child_id": "BIG1", "sex": "F", "birth_date": "2015-01-01"}})];
    for i in 1..1000 {
        let day = NaiveDate::from_ymd_opt(2020, 1, 7).expect("date") + chrono::Days::new(i);
        let context = if i % 3 == 0 { "school" } else { "statutory_visit" };
        long.push(json!({"specversion": "1.0", "id": format!("big-{i}"), "type": "child.seen", "subject": big,
            "time": format!("{day}T11:00:00Z"), "data": {"seen_by": "W1", "seen_alone": i % 2 == 0, "context": context}}));
    }
    groups.push(long);
    let total: usize = groups.iter().map(Vec::len).sum();
    println!(
        "generated {total} events ({per_council} children per council, 8 councils) in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let nats = NatsServer::start().await;
    let gw = Arc::new(TestGateway::start(&nats.url()).await);
    let started = Instant::now();
    let last = tests::gateway::load_groups(&gw, groups).await;
    let load = started.elapsed();
    println!(
        "loaded {total} events through the gateway in {:.1} s ({:.0} events/s)",
        load.as_secs_f64(),
        total as f64 / load.as_secs_f64()
    );

    let db = TestDatabase::create().await;
    let pool = db.pool().await;
    let settings = projections::runtime::Settings::default();
    let elapsed = tests::projector::run_until(&nats.url(), &pool, settings, last).await;
    println!(
        "projected {total} events, every read model, batches of 1,000: {:.1} s, {:.0} events/s",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64()
    );

    let client = async_nats::connect(nats.url()).await.expect("connect");
    let options: sqlx::postgres::PgConnectOptions = db.url().parse().expect("url");
    let stats = Arc::new(projections::runtime::Stats::default());
    let settings = projections::runtime::Settings { batch: 5000, ..Default::default() };
    let report = projections::rebuild::rebuild(options, async_nats::jetstream::new(client), settings, stats)
        .await
        .expect("rebuild");
    println!(
        "rebuilt {} events beside the live tables and switched, batches of 5,000: {:.1} s, {:.0} events/s",
        report.events,
        report.elapsed.as_secs_f64(),
        report.events as f64 / report.elapsed.as_secs_f64()
    );

    let query = TestQuery::start(&nats.url(), db.url(), &gw).await;
    let path = format!("/v1/children/{big}/chronology?limit=1000");
    let mut times: Vec<Duration> = Vec::new();
    for _ in 0..200 {
        let t = Instant::now();
        let r = query.get(tokens::ADMIN, &path).await;
        times.push(t.elapsed());
        assert_eq!(r.status, 200);
        assert_eq!(r.json["entries"].as_array().map(Vec::len), Some(1000));
    }
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "chronology of a 1,000-event child over HTTP (access event stored first), {} children in the database: p50 {:.1} ms, p99 {:.1} ms",
        per_council * 8 + 1,
        ms(times[times.len() / 2]),
        ms(times[times.len() * 99 / 100])
    );

    for (what, path) in [
        ("indicators of one council and year", "/v1/indicators?council=E09000014&period=2024-25"),
        ("caseloads of one council", "/v1/caseloads?council=E09000014"),
    ] {
        let mut times: Vec<Duration> = Vec::new();
        for _ in 0..50 {
            let t = Instant::now();
            let r = query.get(tokens::ADMIN, path).await;
            times.push(t.elapsed());
            assert_eq!(r.status, 200, "{}", r.text);
        }
        times.sort();
        println!(
            "{what} over HTTP ({per_council} children in the council): p50 {:.1} ms, p99 {:.1} ms",
            ms(times[times.len() / 2]),
            ms(times[times.len() * 99 / 100])
        );
    }
}
