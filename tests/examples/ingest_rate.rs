//! Ingest rate through the gateway beside raw JetStream, with fsync on.
//!
//! `cargo run --release -p tests --example ingest_rate -- [SINGLE] [BATCHES] [CONCURRENCY]`
//!
//! Starts its own nats-server (sync_interval: always) and gateway, then
//! prints events per second for: raw JetStream publishes (one at a time,
//! and pipelined), gateway single events (one client, then CONCURRENCY
//! clients), and gateway batches of 1,000. A measurement, not a test.

#![allow(clippy::print_stdout)] // printing the figures is the point

use events::{EventType, examples};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use tests::NatsServer;
use tests::gateway::{TestGateway, tokens};

fn child_event(t: EventType, id: &str, child: &str) -> Value {
    let mut e = examples::event(t, id, "2025-01-14T09:30:00Z");
    e["subject"] = json!(child);
    e
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::main]
async fn main() {
    let args: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let single = args.first().copied().unwrap_or(2000);
    let batches = args.get(1).copied().unwrap_or(10);
    let concurrency = args.get(2).copied().unwrap_or(16);

    let nats = NatsServer::start().await;
    let gw = TestGateway::start(&nats.url()).await;
    println!("nats-server with sync_interval: always; {single} single events, {batches} batches of 1,000");
    println!("{:<44} {:>12} {:>10} {:>10}", "workload", "events/s", "p50 ms", "p99 ms");

    // Raw JetStream, same server, same fsync setting, event-sized payloads.
    let js = async_nats::jetstream::new(nats.client().await);
    js.create_stream(async_nats::jetstream::stream::Config {
        name: "RAW".into(),
        subjects: vec!["raw.>".into()],
        storage: async_nats::jetstream::stream::StorageType::File,
        ..Default::default()
    })
    .await
    .expect("raw stream");
    let payload = bytes::Bytes::from(vec![b'x'; 900]);
    let mut lat = Vec::with_capacity(single);
    let started = Instant::now();
    for i in 0..single {
        let t = Instant::now();
        js.publish(format!("raw.{}", i % 64), payload.clone()).await.expect("publish").await.expect("ack");
        lat.push(t.elapsed());
    }
    report("raw JetStream publish, one at a time", single, started.elapsed(), &mut lat);
    let started = Instant::now();
    let mut acks = Vec::with_capacity(single);
    for i in 0..single {
        acks.push(js.publish(format!("raw.{}", i % 64), payload.clone()).await.expect("publish"));
    }
    for ack in acks {
        ack.await.expect("ack");
    }
    report("raw JetStream publish, pipelined", single, started.elapsed(), &mut []);

    // Gateway single events, one client, spread over children.
    let children: Vec<String> = (0..64).map(|_| uuid::Uuid::new_v4().to_string()).collect();
    let registrations: Vec<Value> = children
        .iter()
        .enumerate()
        .map(|(i, c)| child_event(EventType::ChildRegistered, &format!("reg-{i}"), c))
        .collect();
    assert_eq!(gw.post(tokens::ADMIN, &Value::Array(registrations)).await.status, 201);
    let mut lat = Vec::with_capacity(single);
    let started = Instant::now();
    for i in 0..single {
        let body = child_event(EventType::ChildSeen, &format!("s-{i}"), &children[i % children.len()]);
        let t = Instant::now();
        let r = gw.post(tokens::ADMIN, &body).await;
        assert_eq!(r.status, 201, "{}", r.text);
        lat.push(t.elapsed());
    }
    report("gateway single events, 1 client", single, started.elapsed(), &mut lat);

    // Gateway single events, several clients at once.
    let started = Instant::now();
    let per_client = single / concurrency;
    let gw_ref = &gw;
    let children_ref = &children;
    let tasks = (0..concurrency).map(|c| async move {
        let mut lat = Vec::with_capacity(per_client);
        for i in 0..per_client {
            let body = child_event(
                EventType::ChildSeen,
                &format!("c{c}-{i}"),
                &children_ref[(c * 7 + i) % children_ref.len()],
            );
            let t = Instant::now();
            let r = gw_ref.post(tokens::ADMIN, &body).await;
            assert_eq!(r.status, 201, "{}", r.text);
            lat.push(t.elapsed());
        }
        lat
    });
    let mut lat: Vec<Duration> = futures::future::join_all(tasks).await.into_iter().flatten().collect();
    report(
        &format!("gateway single events, {concurrency} clients"),
        per_client * concurrency,
        started.elapsed(),
        &mut lat,
    );

    // Gateway batches of 1,000 (each batch one new child's history).
    let mut lat = Vec::with_capacity(batches);
    let started = Instant::now();
    for b in 0..batches {
        let child = uuid::Uuid::new_v4().to_string();
        let mut batch = vec![child_event(EventType::ChildRegistered, &format!("b{b}-0"), &child)];
        batch.extend((1..1000).map(|i| child_event(EventType::ChildSeen, &format!("b{b}-{i}"), &child)));
        let t = Instant::now();
        let r = gw.post(tokens::ADMIN, &Value::Array(batch)).await;
        assert_eq!(r.status, 201, "{}", &r.text[..r.text.len().min(300)]);
        lat.push(t.elapsed());
    }
    report("gateway batches of 1,000 (p = per batch)", batches * 1000, started.elapsed(), &mut lat);
}

fn report(name: &str, events: usize, elapsed: Duration, latencies: &mut [Duration]) {
    latencies.sort();
    let rate = events as f64 / elapsed.as_secs_f64();
    let ms = |d: Duration| format!("{:.2}", d.as_secs_f64() * 1000.0);
    let (p50, p99) = if latencies.is_empty() {
        ("-".to_owned(), "-".to_owned())
    } else {
        (ms(percentile(latencies, 0.5)), ms(percentile(latencies, 0.99)))
    };
    println!("{name:<44} {rate:>12.0} {p50:>10} {p99:>10}");
}
