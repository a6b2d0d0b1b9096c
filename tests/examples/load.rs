//! The load test: many clients at once through the gateway and the query
//! role, for a fixed time, reporting throughput, latency and errors. A
//! measurement, not a test; `ops/load` runs it.
//!
//! `cargo run --release -p tests --example load -- [--clients 64] [--seconds 60]`
//!
//! Starts its own nats-server (`sync_interval: always`), a fresh database
//! and the three roles as separate release processes, loads a seeded
//! population (two councils), then runs the clients: half write (each
//! records visits to its own child, one event per request, as a case
//! system does when a worker saves), half read (a seeded child's
//! chronology, a council's indicators, a council's caseloads, in turn).
//! Every answer other than 201 or 200 counts as an error.

#![allow(clippy::print_stdout)] // printing the figures is the point
#![allow(clippy::expect_used, clippy::unwrap_used)] // a measurement run stops at the first surprise

use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tests::deploy::{Deployment, release_binary};
use tests::gateway::tokens;
use tests::{NatsServer, TestDatabase};

#[derive(Debug, Default)]
struct Side {
    ok: u64,
    errors: u64,
    latencies: Vec<Duration>,
}

impl Side {
    fn merge(&mut self, other: Side) {
        self.ok += other.ok;
        self.errors += other.errors;
        self.latencies.extend(other.latencies);
    }

    fn print(&mut self, what: &str, seconds: f64) {
        self.latencies.sort();
        let at = |p: f64| {
            let i = ((self.latencies.len().saturating_sub(1)) as f64 * p).round() as usize;
            self.latencies.get(i).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
        };
        println!(
            "{what:<10} {:>9} ok {:>6} errors {:>9.0} req/s   p50 {:>7.1} ms   p99 {:>7.1} ms   max {:>7.1} ms",
            self.ok,
            self.errors,
            self.ok as f64 / seconds,
            at(0.5),
            at(0.99),
            at(1.0)
        );
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |name: &str, default: u64| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let clients = arg("--clients", 64) as usize;
    let seconds = arg("--seconds", 60);

    let nats = NatsServer::start().await;
    let db = TestDatabase::create().await;
    let mut deployment = Deployment::start(&release_binary(), &nats.url(), db.url()).await;
    deployment.start_readers().await;
    let http = reqwest::Client::builder().pool_max_idle_per_host(clients).build().unwrap();

    // A population to read.
    let until = chrono::NaiveDate::from_ymd_opt(2026, 3, 31).unwrap();
    let groups = safeguard::cli::seed::generate(7, 2, 500, until).expect("seed");
    let children: Vec<String> = groups
        .iter()
        .filter_map(|g| g.first())
        .filter(|e| e["type"] == "child.registered")
        .filter_map(|e| e["subject"].as_str().map(str::to_owned))
        .collect();
    let (people, kids): (Vec<_>, Vec<_>) =
        groups.into_iter().partition(|g| g.first().is_some_and(|e| e["type"] != "child.registered"));
    for part in [people, kids] {
        for batch in safeguard::cli::seed::batches(&part, 1000) {
            let r = http
                .post(deployment.gateway_url("/v1/events"))
                .bearer_auth(tokens::ADMIN)
                .header("content-type", "application/cloudevents+json")
                .body(Value::Array(batch).to_string())
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 201);
        }
    }
    // Let the projector catch up before the clock starts.
    tokio::time::sleep(Duration::from_secs(5)).await;
    println!(
        "{} seeded children; {clients} clients for {seconds} s ({} writing, {} reading)",
        children.len(),
        clients / 2,
        clients - clients / 2
    );

    let children = Arc::new(children);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let (http, children) = (http.clone(), children.clone());
            let events = deployment.gateway_url("/v1/events");
            let query = deployment.query_url("");
            tokio::spawn(async move {
                let mut side = Side::default();
                let writer = c % 2 == 0;
                let child = uuid::Uuid::new_v4().to_string();
                let mut n = 0u64;
                while Instant::now() < deadline {
                    let t = Instant::now();
                    let ok = if writer {
                        let event = if n == 0 {
                            tests::fixtures::registered(&format!("load-{c}-0"), &child, "E09000014")
                        } else {
                            tests::fixtures::event(
                                &format!("load-{c}-{n}"),
                                "child.seen",
                                &child,
                                "2025-06-02T10:00:00Z",
                                json!({"seen_by": "8a0e4c8e-5d1b-4a63-9c1e-2f7f5a1d9b10", "seen_alone": true, "context": "statutory_visit"}),
                            )
                        };
                        let r = http
                            .post(&events)
                            .bearer_auth(tokens::HARINGEY)
                            .header("content-type", "application/cloudevents+json")
                            .body(event.to_string())
                            .send()
                            .await;
                        r.is_ok_and(|r| r.status().as_u16() == 201)
                    } else {
                        let path = match n % 3 {
                            0 => format!("/v1/children/{}/chronology", children[(c * 7919 + n as usize) % children.len()]),
                            1 => "/v1/indicators?council=E09000014&period=2024-25".to_owned(),
                            _ => "/v1/caseloads?council=E09000019".to_owned(),
                        };
                        let r = http
                            .get(format!("{query}{path}"))
                            .bearer_auth(tokens::ADMIN)
                            .header("x-acting-user", "load-test")
                            .header("x-purpose", "load test")
                            .send()
                            .await;
                        match r {
                            Ok(r) if r.status().as_u16() == 200 => r.bytes().await.is_ok(),
                            _ => false,
                        }
                    };
                    side.latencies.push(t.elapsed());
                    if ok {
                        side.ok += 1;
                        n += 1;
                    } else {
                        side.errors += 1;
                    }
                }
                (writer, side)
            })
        })
        .collect();
    let (mut writes, mut reads) = (Side::default(), Side::default());
    for t in tasks {
        let (writer, side) = t.await.unwrap();
        if writer { writes.merge(side) } else { reads.merge(side) }
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!("over {elapsed:.1} s:");
    writes.print("gateway", elapsed);
    reads.print("queries", elapsed);
    for (role, kib) in deployment.peak_memory_kib() {
        println!("peak resident memory of the {role} process: {:.0} MiB", kib as f64 / 1024.0);
    }
}
