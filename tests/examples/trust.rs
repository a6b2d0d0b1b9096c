//! Trust figures: what sealing personal data and signing cost per event on
//! ingest, and how fast the stream verifies. A measurement, not a test.
//!
//! `cargo run --release -p tests --example trust -- [EVENTS]`
//!
//! 1. On EVENTS seeded events (default 200,000; eight councils), the
//!    gateway's per-event crypto alone, on one core: sealing the personal
//!    fields (XChaCha20-Poly1305 under the child's key), then hashing
//!    (RFC 8785 + SHA-256) and signing (Ed25519). Compared with the time a
//!    whole event takes at the measured gateway ingest rate.
//! 2. The same events loaded through a real gateway into a real NATS
//!    (sync_interval: always) and projected; then `verify` over the whole
//!    stream, with the Postgres copy and without it (the outside verifier),
//!    and for one child.

#![allow(clippy::print_stdout)] // printing the figures is the point

use chrono::NaiveDate;
use serde_json::Value;
use std::sync::Arc;
use std::time::Instant;
use tests::gateway::TestGateway;
use tests::{NatsServer, TestDatabase};

#[tokio::main]
async fn main() {
    let target: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(200_000);
    let until = NaiveDate::from_ymd_opt(2026, 3, 31).expect("date");
    let per_council = (target / 8 / 19).max(10);
    let groups = safeguard::cli::seed::generate(7, 8, per_council, until).expect("seed");
    let all: Vec<Value> = groups.iter().flatten().cloned().collect();
    println!("generated {} events", all.len());

    crypto_cost(&all);

    let nats = NatsServer::start().await;
    let gw = Arc::new(TestGateway::start(&nats.url()).await);
    let started = Instant::now();
    let a_child = all.iter().find(|e| e["type"] == "child.registered").and_then(|e| e["subject"].as_str());
    let a_child = a_child.expect("a child").to_owned();
    let last = tests::gateway::load_groups(&gw, groups).await;
    let load = started.elapsed().as_secs_f64();
    let rate = all.len() as f64 / load;
    println!(
        "loaded through the gateway: {load:.1} s, {rate:.0} events/s ({:.0} µs of wall time per event)",
        1e6 / rate
    );

    let db = TestDatabase::create().await;
    let pool = db.pool().await;
    let signers = tests::projector::signers_beside(&gw.path("master.key")).await;
    tests::projector::run_until(&nats.url(), &pool, projections::runtime::Settings::new(signers), last).await;
    let key = [gw.verifying_key()];
    let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await.expect("connect"));
    for (what, copy) in [("with the Postgres copy", Some(&pool)), ("stream only (the outside verifier)", None)] {
        let t = Instant::now();
        let report = query::verify::verify(&js, copy, &key, None).await.expect("verify");
        let s = t.elapsed().as_secs_f64();
        assert!(report.ok, "{:?}", report.breaks.first());
        println!("verified {} events {what}: {s:.1} s, {:.0} events/s", report.checked, report.checked as f64 / s);
    }
    let child = events::Subject::Child(events::ids::ChildId::parse(&a_child).expect("a child"));
    let t = Instant::now();
    let report = query::verify::verify(&js, Some(&pool), &key, Some(&child)).await.expect("verify");
    println!(
        "verified one child ({} events) with the copy: {:.1} ms",
        report.checked,
        t.elapsed().as_secs_f64() * 1000.0
    );
}

/// The gateway's sealing, hashing and signing of each event, timed apart
/// from everything else it does.
fn crypto_cost(all: &[Value]) {
    let now = chrono::Utc::now();
    let received: Vec<events::ReceivedEvent> = all.iter().filter_map(|v| events::parse_received(v, now).ok()).collect();
    let data_key = events::privacy::DataKey::from_bytes([9; 32]);
    let signing = events::chain::signing_key_from_seed([1; 32]);
    let source = events::ids::PrincipalName::parse("measure").expect("name");
    let stamp = events::Stamp { source, recorded_at: now.fixed_offset(), sequence: 1, prevhash: events::Digest::ZERO };
    let docs: Vec<(Value, Vec<String>, String, String)> = received
        .iter()
        .map(|e| {
            let doc = Value::Object(e.to_unsealed_plain(&stamp));
            (doc, events::personal_pointers(&e.data, "/data"), e.subject.to_string(), e.id.as_str().to_owned())
        })
        .collect();
    let personal = docs.iter().filter(|d| !d.1.is_empty()).count();
    // Copies made before the clock starts: only sealing (with its random nonces) is timed.
    let mut sealed: Vec<Value> = docs.iter().map(|d| d.0.clone()).collect();
    let t = Instant::now();
    for (doc, (_, pointers, subject, id)) in sealed.iter_mut().zip(&docs) {
        if !pointers.is_empty() {
            events::privacy::seal_fields(doc, pointers, &data_key, (subject, "measure", id), || {
                let mut nonce = [0u8; 24];
                rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut nonce);
                nonce
            });
        }
    }
    let seal = t.elapsed().as_secs_f64();
    let maps: Vec<serde_json::Map<String, Value>> =
        sealed.into_iter().filter_map(|d| if let Value::Object(m) = d { Some(m) } else { None }).collect();
    let t = Instant::now();
    for map in maps {
        std::hint::black_box(events::chain::seal(map, &signing));
    }
    let sign = t.elapsed().as_secs_f64();
    let n = docs.len() as f64;
    println!(
        "sealing personal fields ({personal} of {} events carry some): {:.1} µs per event ({:.1} µs per event that has any)",
        docs.len(),
        seal * 1e6 / n,
        seal * 1e6 / personal.max(1) as f64
    );
    println!("hashing (RFC 8785, SHA-256) and signing (Ed25519): {:.1} µs per event", sign * 1e6 / n);
}
