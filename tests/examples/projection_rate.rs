//! Projection throughput: how fast the projector applies a loaded stream.
//!
//! `cargo run --release -p tests --example projection_rate -- [EVENTS]`
//!
//! Loads EVENTS events through the gateway in batches of 1,000 (children of
//! 100 events each), then times one projector applying them all to a fresh
//! database. A measurement, not a test.

#![allow(clippy::print_stdout)] // printing the figures is the point

use events::{EventType, examples};
use serde_json::{Value, json};
use std::time::Instant;
use tests::gateway::{TestGateway, tokens};
use tests::{NatsServer, TestDatabase};

#[tokio::main]
async fn main() {
    let events: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let nats = NatsServer::start().await;
    let gw = TestGateway::start(&nats.url()).await;
    let kinds =
        [EventType::ChildSeen, EventType::ContactRecorded, EventType::ConcernRaised, EventType::ReferralReceived];
    let started = Instant::now();
    let mut last = 0;
    for b in 0..events.div_ceil(1000) {
        let mut batch = Vec::with_capacity(1000);
        for c in 0..10 {
            let child = uuid::Uuid::new_v4().to_string();
            for i in 0..100 {
                let t = if i == 0 { EventType::ChildRegistered } else { kinds[i % kinds.len()] };
                let mut e = examples::event(t, &format!("b{b}-c{c}-{i}"), "2025-01-14T09:30:00Z");
                e["subject"] = json!(child);
                batch.push(e);
            }
        }
        let r = gw.post(tokens::ADMIN, &Value::Array(batch)).await;
        assert_eq!(r.status, 201, "{}", &r.text[..r.text.len().min(300)]);
        last = r.result(999)["stream_sequence"].as_u64().expect("stream sequence");
    }
    let loaded = events.div_ceil(1000) * 1000;
    println!("loaded {loaded} events through the gateway in {:.1} s", started.elapsed().as_secs_f64());

    let db = TestDatabase::create().await;
    let pool = db.pool().await;
    let elapsed =
        tests::projector::run_until(&nats.url(), &pool, projections::runtime::Settings::default(), last).await;
    println!(
        "projected {loaded} events (event copy + chronology) in {:.2} s: {:.0} events/s",
        elapsed.as_secs_f64(),
        loaded as f64 / elapsed.as_secs_f64()
    );
}
