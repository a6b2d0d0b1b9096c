//! The benchmark: Safeguard beside the raw limits of NATS and PostgreSQL and
//! beside a well-known peer, in one run on one machine. A measurement, not
//! a test; `ops/bench` runs it and writes `BENCHMARKS.md`.
//!
//! `cargo run --release -p tests --example bench -- [--quick] [--json FILE] [--markdown FILE]`
//!
//! Everything runs on servers it starts itself: a nats-server with
//! `sync_interval: always`, fresh PostgreSQL databases on the local server,
//! and the three roles as separate `safeguard serve` processes (release
//! build). Sections:
//!
//! 1. ingest: gateway (single events from 1 and 32 clients, batches of 100
//!    and 1,000, with and without `expectedsequence`) beside raw JetStream
//!    publishes of the same size, count and fsync setting, and beside
//!    `cqrs-es` + `postgres-es` appending the same events to the same
//!    PostgreSQL;
//! 2. projection: every read model together beside raw `COPY` of event-sized rows;
//! 3. reads: chronology latency for children of 10, 100 and 1,000 events as
//!    the database grows from 1,000 to 10,000 to 100,000 children;
//!    indicators and caseloads on a seeded population; ack-to-visible
//!    latency under a steady load;
//! 4. rebuild and verification rates, and each role's peak memory;
//! 5. what a national deployment would need, worked out from the above.
//!
//! Beside the rates: where the CPU went in each ingest, projection, rebuild
//! and steady-load row, process by process (`tests::cpu::Meter`), with a
//! `perf` profile of the gateway and the projector during the rows the
//! targets name (`tests::cpu::Profile`, where `perf` runs); and issue 23's
//! targets, each with what this run measured and what bound its row.

#![allow(clippy::print_stdout)] // printing the figures is the point
#![allow(clippy::expect_used, clippy::unwrap_used)] // a measurement run stops at the first surprise

use async_nats::jetstream;
use bytes::Bytes;
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tests::cpu::{Meter, Profile, Which};
use tests::deploy::{Deployment, release_binary};
use tests::gateway::tokens;
use tests::{NatsServer, TestDatabase};

/// How big a run is: `--quick` is for trying the command, the default for the record.
#[derive(Debug, Clone, Copy)]
struct Scale {
    singles: usize,
    concurrent: usize,
    batches_100: usize,
    batches_1000: usize,
    children: [usize; 3],
    seeded_per_council: usize,
    samples: usize,
    copy_rows: usize,
}

const FULL: Scale = Scale {
    singles: 2_000,
    concurrent: 8_000,
    batches_100: 100,
    batches_1000: 20,
    children: [1_000, 10_000, 100_000],
    seeded_per_council: 3_000,
    samples: 300,
    copy_rows: 200_000,
};

const QUICK: Scale = Scale {
    singles: 300,
    concurrent: 1_000,
    batches_100: 10,
    batches_1000: 3,
    children: [1_000, 2_000, 5_000],
    seeded_per_council: 200,
    samples: 50,
    copy_rows: 20_000,
};

/// Clients for the concurrent workloads.
const CLIENTS: usize = 32;

/// The row of the load the ack-to-visible probes ran under.
const STEADY_LOAD: &str = "steady load during the ack-to-visible and alert probes (background and probes)";

#[derive(Debug, Clone, Serialize)]
struct Row {
    section: &'static str,
    name: String,
    value: f64,
    unit: &'static str,
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
    /// This figure over each figure it is compared with, and what that is.
    ratios: Vec<Ratio>,
    /// Where the machine's CPU went while it was measured, if metered.
    cpu: Option<Cpu>,
    /// A sampling profile of one process during the row: which, and its
    /// functions with their share of its samples (per cent).
    profile: Option<(String, Vec<(f64, String)>)>,
}

/// A row's CPU, from `tests::cpu`: what says whether the cores or waiting
/// limited it, and whose CPU an event costs.
#[derive(Debug, Clone, Serialize)]
struct Cpu {
    /// Microseconds of CPU an event, by process, `other` last.
    per_event_us: Vec<(String, f64)>,
    /// The share of the machine's cores busy, in per cent.
    busy_percent: f64,
    /// The share of the machine's cores idle waiting on the disk, in per cent.
    iowait_percent: f64,
    /// Events a second the cores would allow if nothing waited.
    ceiling: f64,
}

#[derive(Debug, Clone, Serialize)]
struct Ratio {
    ratio: f64,
    against: String,
}

#[derive(Debug, Default)]
struct Report {
    rows: Vec<Row>,
}

impl Report {
    fn add(&mut self, section: &'static str, name: impl Into<String>, value: f64, unit: &'static str) -> usize {
        let row = Row {
            section,
            name: name.into(),
            value,
            unit,
            p50_ms: None,
            p99_ms: None,
            ratios: Vec::new(),
            cpu: None,
            profile: None,
        };
        println!("{:<12} {:<66} {:>12.1} {}", row.section, row.name, row.value, row.unit);
        self.rows.push(row);
        self.rows.len() - 1
    }

    fn rate(&mut self, section: &'static str, name: impl Into<String>, m: &Measured) -> usize {
        let i = self.add(section, name, m.rate, "events/s");
        self.rows[i].p50_ms = m.p50_ms();
        self.rows[i].p99_ms = m.p99_ms();
        i
    }

    fn latency(&mut self, section: &'static str, name: impl Into<String>, mut times: Vec<Duration>) -> usize {
        times.sort();
        let p50 = ms(percentile(&times, 0.5));
        let i = self.add(section, name, p50, "ms p50");
        self.rows[i].p50_ms = Some(p50);
        self.rows[i].p99_ms = Some(ms(percentile(&times, 0.99)));
        println!("{:<12} {:<66} {:>12.1} ms p99", "", "", ms(percentile(&times, 0.99)));
        i
    }

    fn compare(&mut self, row: usize, base: usize) {
        let ratio = self.rows[row].value / self.rows[base].value;
        let against = self.rows[base].name.clone();
        self.rows[row].ratios.push(Ratio { ratio, against });
        println!("{:<12} {} / {}: {ratio:.2}", "ratio", self.rows[row].name, self.rows[base].name);
    }

    /// Records where the CPU went while `row` was measured over `events`.
    fn cpu(&mut self, row: usize, split: &tests::cpu::Split, events: usize) {
        let events = events as f64;
        let per_event_us: Vec<(String, f64)> =
            split.per_event_us(events).into_iter().map(|(name, us)| (name.to_owned(), us)).collect();
        let cpu = Cpu {
            per_event_us,
            busy_percent: 100.0 * split.busy_share(),
            iowait_percent: 100.0 * split.iowait_share(),
            ceiling: split.ceiling(events),
        };
        let parts: Vec<String> = cpu.per_event_us.iter().map(|(n, us)| format!("{n} {us:.0}")).collect();
        println!(
            "{:<12} {}: cores {:.0}% busy; µs an event: {}; the cores' ceiling {:.0}/s",
            "cpu",
            self.rows[row].name,
            cpu.busy_percent,
            parts.join(", "),
            cpu.ceiling
        );
        self.rows[row].cpu = Some(cpu);
    }

    /// Records a profile of `process` taken while `row` was measured.
    fn profile(&mut self, row: usize, process: &str, profile: Option<tests::cpu::Profile>) {
        let Some(profile) = profile else { return };
        let functions = profile.stop(2.0);
        for (share, function) in &functions {
            println!("{:<12} {}: {process}: {share:.1}% {function}", "profile", self.rows[row].name);
        }
        self.rows[row].profile = Some((process.to_owned(), functions));
    }

    fn row(&self, name: &str) -> Option<&Row> {
        self.rows.iter().find(|r| r.name == name)
    }

    fn value(&self, name: &str) -> f64 {
        self.rows.iter().find(|r| r.name == name).map_or(0.0, |r| r.value)
    }
}

#[derive(Debug, Default)]
struct Measured {
    rate: f64,
    latencies: Vec<Duration>,
}

impl Measured {
    fn new(events: usize, elapsed: Duration, mut latencies: Vec<Duration>) -> Self {
        latencies.sort();
        Self { rate: events as f64 / elapsed.as_secs_f64(), latencies }
    }
    fn p50_ms(&self) -> Option<f64> {
        (!self.latencies.is_empty()).then(|| ms(percentile(&self.latencies, 0.5)))
    }
    fn p99_ms(&self) -> Option<f64> {
        (!self.latencies.is_empty()).then(|| ms(percentile(&self.latencies, 0.99)))
    }
}

/// What a gateway ingest row needs: where it reports, and the deployment it loads.
struct Ingest<'a> {
    report: &'a mut Report,
    deployment: &'a Deployment,
    nats: &'a NatsServer,
    http: &'a Arc<Http>,
    url: &'a str,
}

impl Ingest<'_> {
    /// Posts `bodies` (`events` in all) from `clients` clients as the row
    /// `name`, metered, and with the gateway profiled if `profiled`.
    async fn row(&mut self, name: String, bodies: Vec<Value>, clients: usize, events: usize, profiled: bool) -> usize {
        let profile = profiled.then(|| self.deployment.pid("gateway").and_then(Profile::start)).flatten();
        let meter = Meter::start(roles(self.deployment, self.nats, "load generator"));
        let (measured, _) = post_all(self.http, self.url, bodies, clients).await;
        let row = self.report.rate("ingest", name, &measured);
        self.report.cpu(row, &meter.stop(), events);
        self.report.profile(row, "gateway", profile);
        row
    }
}

/// The processes of a deployment to meter, by role, with PostgreSQL and
/// this process (named for what it does in the phase).
fn roles(deployment: &Deployment, nats: &NatsServer, this: &'static str) -> Vec<(&'static str, Which)> {
    let pid = |role: &str| Which::Pids(deployment.pid(role).into_iter().collect());
    vec![
        ("gateway", pid("gateway")),
        ("projector", pid("projector")),
        ("query", pid("query")),
        ("nats-server", Which::Pids(nats.pid().into_iter().collect())),
        ("PostgreSQL", Which::Command("postgres")),
        (this, Which::This),
    ]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// A child's history as an agency would send it: registration, then visits.
fn history(prefix: &str, child: &str, events: usize, expected: bool) -> Vec<Value> {
    (0..events)
        .map(|i| {
            let id = format!("{prefix}-{i}");
            let mut e = if i == 0 {
                tests::fixtures::registered(&id, child, "E09000014")
            } else {
                let day = chrono::NaiveDate::from_ymd_opt(2024, 1, 3).unwrap() + chrono::Days::new(i as u64 % 700);
                tests::fixtures::event(
                    &id,
                    "child.seen",
                    child,
                    &format!("{day}T11:00:00Z"),
                    json!({"seen_by": "8a0e4c8e-5d1b-4a63-9c1e-2f7f5a1d9b10", "seen_alone": i % 2 == 0, "context": "statutory_visit"}),
                )
            };
            if expected && i == 0 {
                e["expectedsequence"] = json!(0);
            }
            e
        })
        .collect()
}

struct Http {
    client: reqwest::Client,
}

impl Http {
    async fn post(&self, url: &str, body: &Value) -> (u16, Value) {
        self.post_as(tokens::ADMIN, url, body).await
    }

    async fn post_as(&self, token: &str, url: &str, body: &Value) -> (u16, Value) {
        let r = self
            .client
            .post(url)
            .bearer_auth(token)
            .header("content-type", "application/cloudevents+json")
            .body(body.to_string())
            .send()
            .await
            .expect("the gateway answers");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, url: &str) -> (u16, Value) {
        let r = self
            .client
            .get(url)
            .bearer_auth(tokens::ADMIN)
            .header("x-acting-user", "bench")
            .header("x-purpose", "benchmark")
            .send()
            .await
            .expect("the query role answers");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }
}

/// Times `samples` GETs of a page with the session `cookie`.
async fn page_times(url: &str, cookie: &str, samples: usize) -> Vec<Duration> {
    let http = reqwest::Client::new();
    let mut times = Vec::new();
    for _ in 0..samples {
        let t = Instant::now();
        let r = http.get(url).header("cookie", cookie).send().await.expect("the query role answers");
        let status = r.status();
        let page = r.text().await.unwrap_or_default();
        times.push(t.elapsed());
        assert_eq!(status, 200, "{url}: {page}");
    }
    times
}

/// Posts `bodies` from `clients` clients, each taking every `clients`-th
/// body in order. Returns the measurement and the highest stream sequence stored.
async fn post_all(http: &Arc<Http>, url: &str, bodies: Vec<Value>, clients: usize) -> (Measured, u64) {
    let events: usize = bodies.iter().map(|b| b.as_array().map_or(1, Vec::len)).sum();
    let bodies = Arc::new(bodies);
    let started = Instant::now();
    let tasks = (0..clients).map(|c| {
        let (http, bodies, url) = (http.clone(), bodies.clone(), url.to_owned());
        tokio::spawn(async move {
            let (mut lat, mut last) = (Vec::new(), 0u64);
            for body in bodies.iter().skip(c).step_by(clients) {
                let t = Instant::now();
                let (status, answer) = http.post(&url, body).await;
                assert_eq!(status, 201, "{answer}");
                lat.push(t.elapsed());
                let results = answer["results"].as_array().into_iter().flatten();
                last = last.max(results.filter_map(|r| r["stream_sequence"].as_u64()).max().unwrap_or(0));
            }
            (lat, last)
        })
    });
    let (mut lat, mut last) = (Vec::new(), 0);
    for (l, s) in futures::future::join_all(tasks).await.into_iter().map(Result::unwrap) {
        lat.extend(l);
        last = last.max(s);
    }
    (Measured::new(events, started.elapsed(), lat), last)
}

/// Single events spread over `children` children, each child's events in order on one client.
fn singles(prefix: &str, n: usize, clients: usize, expected: bool) -> (Vec<Value>, Vec<Value>) {
    let children: Vec<String> = (0..clients.max(1) * 2).map(|_| uuid::Uuid::new_v4().to_string()).collect();
    let registrations: Vec<Value> =
        children.iter().enumerate().map(|(i, c)| history(&format!("{prefix}-r{i}"), c, 1, false).remove(0)).collect();
    // Body k goes to client k % clients; child k % children.len() is always on the same client.
    let mut seen_per_child = vec![1u64; children.len()];
    let bodies = (0..n)
        .map(|k| {
            let c = k % children.len();
            let mut e = history(&format!("{prefix}-{k}"), &children[c], 2, false).remove(1);
            if expected {
                e["expectedsequence"] = json!(seen_per_child[c]);
            }
            seen_per_child[c] += 1;
            e
        })
        .collect();
    (registrations, bodies)
}

// ---------------------------------------------------------------- the peer

/// The same append workload in `cqrs-es`: a child is an aggregate, each
/// event is recorded by a command, stored by `postgres-es` in one table
/// with (aggregate, sequence) as the key, so concurrent writers are
/// refused as our expected sequence refuses them.
#[derive(Debug, Default, Serialize, Deserialize)]
struct ChildHistory {
    events: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum ChildEvent {
    Recorded(Value),
}

impl DomainEvent for ChildEvent {
    fn event_type(&self) -> String {
        "Recorded".into()
    }
    fn event_version(&self) -> String {
        "1".into()
    }
}

/// The peer's command never fails; cqrs-es still asks for an error type.
#[derive(Debug)]
struct Refused;

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("refused")
    }
}

impl std::error::Error for Refused {}

impl Aggregate for ChildHistory {
    const TYPE: &'static str = "child";
    type Command = Vec<Value>;
    type Event = ChildEvent;
    type Error = Refused;
    type Services = ();

    async fn handle(&mut self, command: Vec<Value>, _: &(), sink: &EventSink<Self>) -> Result<(), Refused> {
        for document in command {
            sink.write(ChildEvent::Recorded(document), self).await;
        }
        Ok(())
    }

    fn apply(&mut self, _: ChildEvent) {
        self.events += 1;
    }
}

async fn peer(report: &mut Report, scale: Scale, gateway_rows: &[(usize, &str)]) {
    let db = TestDatabase::create().await;
    let pool = sqlx::PgPool::connect(db.url()).await.expect("connect");
    sqlx::raw_sql(
        "create table events (aggregate_type text not null, aggregate_id text not null,
            sequence bigint check (sequence >= 0) not null, event_type text not null, event_version text not null,
            payload json not null, metadata json not null, primary key (aggregate_type, aggregate_id, sequence));
         create table snapshots (aggregate_type text not null, aggregate_id text not null,
            last_sequence bigint check (last_sequence >= 0) not null, current_snapshot bigint check (current_snapshot >= 0) not null,
            payload json not null, primary key (aggregate_type, aggregate_id, last_sequence));",
    )
    .execute(&pool)
    .await
    .expect("postgres-es tables");
    let cqrs = Arc::new(postgres_es::postgres_cqrs::<ChildHistory>(pool, vec![], ()));

    let run = |commands: Vec<(String, Vec<Value>)>, clients: usize| {
        let cqrs = cqrs.clone();
        async move {
            let events: usize = commands.iter().map(|(_, c)| c.len()).sum();
            let commands = Arc::new(commands);
            let meter =
                Meter::start(vec![("PostgreSQL", Which::Command("postgres")), ("cqrs-es, in process", Which::This)]);
            let started = Instant::now();
            let tasks = (0..clients).map(|c| {
                let (cqrs, commands) = (cqrs.clone(), commands.clone());
                tokio::spawn(async move {
                    let mut lat = Vec::new();
                    for (child, command) in commands.iter().skip(c).step_by(clients) {
                        let t = Instant::now();
                        cqrs.execute(child, command.clone()).await.expect("cqrs-es stores");
                        lat.push(t.elapsed());
                    }
                    lat
                })
            });
            let lat: Vec<Duration> =
                futures::future::join_all(tasks).await.into_iter().flat_map(Result::unwrap).collect();
            (Measured::new(events, started.elapsed(), lat), meter.stop(), events)
        }
    };
    let spread = |prefix: &str, n: usize, clients: usize| -> Vec<(String, Vec<Value>)> {
        let (_, bodies) = singles(prefix, n, clients, false);
        bodies.into_iter().map(|b| (b["subject"].as_str().unwrap().to_owned(), vec![b])).collect()
    };
    let whole = |prefix: &str, batches: usize, size: usize| -> Vec<(String, Vec<Value>)> {
        (0..batches)
            .map(|b| {
                let child = uuid::Uuid::new_v4().to_string();
                (child.clone(), history(&format!("{prefix}{b}"), &child, size, false))
            })
            .collect()
    };
    let measured = [
        run(spread("p1", scale.singles, 1), 1).await,
        run(spread("pc", scale.concurrent, CLIENTS), CLIENTS).await,
        run(whole("pb", scale.batches_100, 100), 1).await,
        run(whole("pk", scale.batches_1000, 1000), 1).await,
    ];
    for ((gateway_row, what), (m, split, events)) in gateway_rows.iter().zip(measured) {
        let peer = report.rate("peer", format!("cqrs-es + postgres-es: {what}"), &m);
        report.cpu(peer, &split, events);
        report.compare(*gateway_row, peer);
    }
}

// ---------------------------------------------------------------- raw limits

async fn raw_jetstream(report: &mut Report, scale: Scale, size: usize) -> Vec<usize> {
    let nats = NatsServer::start().await;
    let client = nats.client().await;
    let js = jetstream::new(client.clone());
    js.create_stream(jetstream::stream::Config {
        name: "RAW".into(),
        subjects: vec!["raw.>".into()],
        storage: jetstream::stream::StorageType::File,
        allow_atomic_publish: true,
        ..Default::default()
    })
    .await
    .expect("raw stream");
    let payload = Bytes::from(vec![b'x'; size]);
    let mut rows = Vec::new();
    let groups =
        || vec![("nats-server", Which::Pids(nats.pid().into_iter().collect())), ("load generator", Which::This)];

    for expected in [false, true] {
        let tag = if expected { ", expecting the subject's last sequence" } else { "" };
        // One at a time, one client.
        let mut last = std::collections::HashMap::<String, u64>::new();
        let mut lat = Vec::new();
        let meter = Meter::start(groups());
        let started = Instant::now();
        for i in 0..scale.singles {
            let subject = format!("raw.{expected}.one.{}", i % 64);
            let t = Instant::now();
            let ack = if expected {
                let mut headers = async_nats::HeaderMap::new();
                let seq = last.get(&subject).copied().unwrap_or(0);
                headers.insert("Nats-Expected-Last-Subject-Sequence", seq.to_string().as_str());
                js.publish_with_headers(subject.clone(), headers, payload.clone()).await.unwrap().await.unwrap()
            } else {
                js.publish(subject.clone(), payload.clone()).await.unwrap().await.unwrap()
            };
            last.insert(subject, ack.sequence);
            lat.push(t.elapsed());
        }
        rows.push(report.rate(
            "ingest",
            format!("raw JetStream: single events, 1 client{tag}"),
            &Measured::new(scale.singles, started.elapsed(), lat),
        ));
        report.cpu(rows[rows.len() - 1], &meter.stop(), scale.singles);
        // 32 clients, each publishing and waiting for its ack.
        let meter = Meter::start(groups());
        let started = Instant::now();
        let tasks = (0..CLIENTS).map(|c| {
            let (js, payload) = (js.clone(), payload.clone());
            let per = scale.concurrent / CLIENTS;
            tokio::spawn(async move {
                let mut lat = Vec::new();
                let mut last = 0u64;
                for _ in 0..per {
                    let subject = format!("raw.{expected}.many.{c}");
                    let t = Instant::now();
                    let ack = if expected {
                        let mut headers = async_nats::HeaderMap::new();
                        headers.insert("Nats-Expected-Last-Subject-Sequence", last.to_string().as_str());
                        js.publish_with_headers(subject, headers, payload.clone()).await.unwrap().await.unwrap()
                    } else {
                        js.publish(subject, payload.clone()).await.unwrap().await.unwrap()
                    };
                    last = ack.sequence;
                    lat.push(t.elapsed());
                }
                lat
            })
        });
        let lat: Vec<Duration> = futures::future::join_all(tasks).await.into_iter().flat_map(Result::unwrap).collect();
        rows.push(report.rate(
            "ingest",
            format!("raw JetStream: single events, {CLIENTS} clients{tag}"),
            &Measured::new(scale.concurrent / CLIENTS * CLIENTS, started.elapsed(), lat),
        ));
        report.cpu(rows[rows.len() - 1], &meter.stop(), scale.concurrent / CLIENTS * CLIENTS);
        // Atomic batches, as the gateway stores a request.
        for (size_of_batch, batches) in [(100, scale.batches_100), (1000, scale.batches_1000)] {
            let mut lat = Vec::new();
            let meter = Meter::start(groups());
            let started = Instant::now();
            for b in 0..batches {
                let subject = format!("raw.{expected}.batch.{size_of_batch}.{b}");
                let messages: Vec<gateway::publish::Outgoing> = (0..size_of_batch)
                    .map(|i| gateway::publish::Outgoing {
                        subject: subject.clone(),
                        payload: payload.clone(),
                        expect_last_subject_seq: (expected && i == 0).then_some(0),
                        trace: None,
                    })
                    .collect();
                let t = Instant::now();
                gateway::publish::publish_atomic(&client, &messages, Duration::from_secs(30))
                    .await
                    .expect("atomic batch");
                lat.push(t.elapsed());
            }
            rows.push(report.rate(
                "ingest",
                format!("raw JetStream: batches of {size_of_batch}{tag}"),
                &Measured::new(size_of_batch * batches, started.elapsed(), lat),
            ));
            report.cpu(rows[rows.len() - 1], &meter.stop(), size_of_batch * batches);
        }
    }
    // The primitive the gateway stores a single event with: an atomic batch
    // of two messages (the event and its id-index entry), one commit each.
    for clients in [1, CLIENTS] {
        let started = Instant::now();
        let per = scale.singles / clients;
        let tasks = (0..clients).map(|c| {
            let (client, payload) = (client.clone(), payload.clone());
            tokio::spawn(async move {
                let mut lat = Vec::new();
                for i in 0..per {
                    let messages: Vec<gateway::publish::Outgoing> = (0..2)
                        .map(|k| gateway::publish::Outgoing {
                            subject: format!("raw.pair.{c}.{i}.{k}"),
                            payload: payload.clone(),
                            expect_last_subject_seq: None,
                            trace: None,
                        })
                        .collect();
                    let t = Instant::now();
                    gateway::publish::publish_atomic(&client, &messages, Duration::from_secs(30))
                        .await
                        .expect("atomic batch");
                    lat.push(t.elapsed());
                }
                lat
            })
        });
        let lat: Vec<Duration> = futures::future::join_all(tasks).await.into_iter().flat_map(Result::unwrap).collect();
        let pair = report.rate(
            "ingest",
            format!("raw JetStream: atomic commits of 2 messages (one event and its id), {clients} client(s)"),
            &Measured::new(per * clients, started.elapsed(), lat),
        );
        report.compare(pair, rows[if clients == 1 { 0 } else { 1 }]);
    }
    // The alternative without atomic batches: the id claimed first, on its
    // own subject expecting it empty, and the event published only once the
    // claim is acknowledged (expecting its subject's last sequence). Two
    // plain publishes in turn per event.
    for clients in [1, CLIENTS] {
        let started = Instant::now();
        let per = scale.singles / clients;
        let tasks = (0..clients).map(|c| {
            let (js, payload) = (js.clone(), payload.clone());
            tokio::spawn(async move {
                let mut lat = Vec::new();
                let mut last = 0u64;
                for i in 0..per {
                    let t = Instant::now();
                    let mut claim = async_nats::HeaderMap::new();
                    claim.insert("Nats-Expected-Last-Subject-Sequence", "0");
                    let index = format!("raw.claim.{clients}.{c}.{i}");
                    js.publish_with_headers(index, claim, Bytes::from_static(b"{}")).await.unwrap().await.unwrap();
                    let mut chain = async_nats::HeaderMap::new();
                    chain.insert("Nats-Expected-Last-Subject-Sequence", last.to_string().as_str());
                    let subject = format!("raw.claimed.{clients}.{c}");
                    last =
                        js.publish_with_headers(subject, chain, payload.clone()).await.unwrap().await.unwrap().sequence;
                    lat.push(t.elapsed());
                }
                lat
            })
        });
        let lat: Vec<Duration> = futures::future::join_all(tasks).await.into_iter().flat_map(Result::unwrap).collect();
        let pair = report.rate(
            "ingest",
            format!("raw JetStream: the id claimed, then the event, two publishes in turn, {clients} client(s)"),
            &Measured::new(per * clients, started.elapsed(), lat),
        );
        report.compare(pair, rows[if clients == 1 { 0 } else { 1 }]);
    }
    rows
}

async fn raw_copy(report: &mut Report, rows: usize, document: &Value) -> usize {
    let db = TestDatabase::create().await;
    let pool = sqlx::PgPool::connect(db.url()).await.expect("connect");
    sqlx::raw_sql(
        "create table copied (stream_seq bigint primary key, subject text not null, subject_kind text not null,
           sequence bigint not null, event_id text not null, source text not null, event_type text not null,
           occurred_at timestamptz not null, business_date date not null, recorded_at timestamptz not null,
           hash text not null, document jsonb not null, unique (subject, sequence))",
    )
    .execute(&pool)
    .await
    .expect("table");
    let doc = document.to_string().replace('\\', "\\\\").replace('\t', "\\t").replace('\n', "\\n");
    let mut text = String::new();
    for i in 0..rows {
        let _ = writeln!(
            text,
            "{i}\tchild-{}\tchild\t{}\tev-{i}\tharingey-csc\tchild.seen\t2025-01-14T09:30:00Z\t2025-01-14\t2025-01-14T09:31:00Z\t{:064x}\t{doc}",
            i / 10,
            i % 10 + 1,
            i
        );
    }
    let started = Instant::now();
    let mut conn = pool.acquire().await.expect("connection");
    let mut copy = conn.copy_in_raw("copy copied from stdin").await.expect("copy");
    for chunk in text.as_bytes().chunks(1 << 20) {
        copy.send(chunk).await.expect("send");
    }
    copy.finish().await.expect("finish");
    report.rate(
        "projection",
        "raw PostgreSQL COPY of event-sized rows (one table, indexed)",
        &Measured::new(rows, started.elapsed(), vec![]),
    )
}

// ---------------------------------------------------------------- three replicas

async fn cluster(report: &mut Report, scale: Scale, size: usize, http: &Arc<Http>) {
    let cluster = tests::NatsCluster::start(3).await;
    let db = TestDatabase::create().await;
    let deployment =
        Deployment::start_with(&release_binary(), &cluster.urls(), db.url(), &[("SAFEGUARD_REPLICAS", "3")]).await;
    let url = deployment.gateway_url("/v1/events");
    let (registrations, bodies) = singles("r3one", scale.singles / 2, 1, true);
    post_all(http, &url, vec![Value::Array(registrations)], 1).await;
    let one = report.rate(
        "cluster",
        "gateway, R3: single events, 1 client, with expectedsequence",
        &post_all(http, &url, bodies, 1).await.0,
    );
    let (registrations, bodies) = singles("r3many", scale.concurrent / CLIENTS * CLIENTS, CLIENTS, true);
    post_all(http, &url, vec![Value::Array(registrations)], 1).await;
    let many = report.rate(
        "cluster",
        format!("gateway, R3: single events, {CLIENTS} clients, with expectedsequence"),
        &post_all(http, &url, bodies, CLIENTS).await.0,
    );
    let bodies = (0..scale.batches_1000)
        .map(|b| Value::Array(history(&format!("r3b{b}"), &uuid::Uuid::new_v4().to_string(), 1000, true)))
        .collect();
    let batch = report.rate(
        "cluster",
        "gateway, R3: batches of 1000, with expectedsequence",
        &post_all(http, &url, bodies, 1).await.0,
    );

    let client = cluster.client().await;
    let js = jetstream::new(client.clone());
    js.create_stream(jetstream::stream::Config {
        name: "RAW".into(),
        subjects: vec!["raw.>".into()],
        num_replicas: 3,
        allow_atomic_publish: true,
        ..Default::default()
    })
    .await
    .expect("raw R3 stream");
    let payload = Bytes::from(vec![b'x'; size]);
    let mut lat = Vec::new();
    let started = Instant::now();
    for i in 0..scale.singles / 2 {
        let t = Instant::now();
        js.publish(format!("raw.one.{}", i % 64), payload.clone()).await.unwrap().await.unwrap();
        lat.push(t.elapsed());
    }
    let raw_one = report.rate(
        "cluster",
        "raw JetStream, R3: single events, 1 client",
        &Measured::new(scale.singles / 2, started.elapsed(), lat),
    );
    let started = Instant::now();
    let tasks = (0..CLIENTS).map(|c| {
        let (js, payload) = (js.clone(), payload.clone());
        let per = scale.concurrent / CLIENTS;
        tokio::spawn(async move {
            for _ in 0..per {
                js.publish(format!("raw.many.{c}"), payload.clone()).await.unwrap().await.unwrap();
            }
        })
    });
    futures::future::join_all(tasks).await;
    let raw_many = report.rate(
        "cluster",
        format!("raw JetStream, R3: single events, {CLIENTS} clients"),
        &Measured::new(scale.concurrent / CLIENTS * CLIENTS, started.elapsed(), vec![]),
    );
    let started = Instant::now();
    for b in 0..scale.batches_1000 {
        let messages: Vec<gateway::publish::Outgoing> = (0..1000)
            .map(|_| gateway::publish::Outgoing {
                subject: format!("raw.batch.{b}"),
                payload: payload.clone(),
                expect_last_subject_seq: None,
                trace: None,
            })
            .collect();
        gateway::publish::publish_atomic(&client, &messages, Duration::from_secs(30)).await.expect("atomic batch");
    }
    let raw_batch = report.rate(
        "cluster",
        "raw JetStream, R3: batches of 1000",
        &Measured::new(1000 * scale.batches_1000, started.elapsed(), vec![]),
    );
    let started = Instant::now();
    for i in 0..scale.singles / 2 {
        let messages: Vec<gateway::publish::Outgoing> = (0..2)
            .map(|k| gateway::publish::Outgoing {
                subject: format!("raw.pair.{i}.{k}"),
                payload: payload.clone(),
                expect_last_subject_seq: None,
                trace: None,
            })
            .collect();
        gateway::publish::publish_atomic(&client, &messages, Duration::from_secs(30)).await.expect("atomic batch");
    }
    report.rate(
        "cluster",
        "raw JetStream, R3: atomic commits of 2 messages, 1 client",
        &Measured::new(scale.singles / 2, started.elapsed(), vec![]),
    );
    report.compare(one, raw_one);
    report.compare(many, raw_many);
    report.compare(batch, raw_batch);
}

// ---------------------------------------------------------------- the run

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let scale = if args.iter().any(|a| a == "--quick") { QUICK } else { FULL };
    let arg = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let json_out = arg("--json").unwrap_or_else(|| "target/bench.json".into());
    let markdown_out = arg("--markdown");
    let ingest_only = args.iter().any(|a| a == "--ingest-only");
    let started = Instant::now();
    let mut report = Report::default();
    println!("{:<12} {:<66} {:>12}", "section", "measure", "value");

    // 1. Ingest through the gateway (its own process, nothing else running).
    let nats = NatsServer::start().await;
    let db = TestDatabase::create().await;
    let mut deployment = Deployment::start(&release_binary(), &nats.url(), db.url()).await;
    let http = Arc::new(Http { client: reqwest::Client::new() });
    let events_url = deployment.gateway_url("/v1/events");
    let mut gateway_rows = Vec::new();
    let mut ingest =
        Ingest { report: &mut report, deployment: &deployment, nats: &nats, http: &http, url: &events_url };
    for expected in [false, true] {
        let tag = if expected { ", with expectedsequence" } else { "" };
        let (registrations, bodies) = singles(&format!("g1{expected}"), scale.singles, 1, expected);
        post_all(&http, &events_url, vec![Value::Array(registrations)], 1).await;
        let one =
            ingest.row(format!("gateway: single events, 1 client{tag}"), bodies, 1, scale.singles, expected).await;
        let (registrations, bodies) =
            singles(&format!("gc{expected}"), scale.concurrent / CLIENTS * CLIENTS, CLIENTS, expected);
        post_all(&http, &events_url, vec![Value::Array(registrations)], 1).await;
        let events = bodies.len();
        let many = ingest
            .row(format!("gateway: single events, {CLIENTS} clients{tag}"), bodies, CLIENTS, events, expected)
            .await;
        let mut batch_rows = Vec::new();
        for (size, batches) in [(100, scale.batches_100), (1000, scale.batches_1000)] {
            let bodies = (0..batches)
                .map(|b| {
                    Value::Array(history(
                        &format!("gb{expected}{size}-{b}"),
                        &uuid::Uuid::new_v4().to_string(),
                        size,
                        expected,
                    ))
                })
                .collect();
            let profiled = expected && size == 1000;
            batch_rows.push(
                ingest.row(format!("gateway: batches of {size}{tag}"), bodies, 1, size * batches, profiled).await,
            );
        }
        gateway_rows.push([one, many, batch_rows[0], batch_rows[1]]);
    }

    // What an event weighs on disk, for the raw runs and the national figures.
    let js = jetstream::new(nats.client().await);
    let info = js.get_stream(platform::bus::EVENTS_STREAM).await.unwrap().info().await.unwrap().clone();
    let sample = js
        .get_stream(platform::bus::EVENTS_STREAM)
        .await
        .unwrap()
        .get_raw_message(info.state.last_sequence)
        .await
        .unwrap();
    // A request's last message is always an event (its id-index entry comes just before it).
    assert!(sample.subject.starts_with("sg.ev."), "the stream ends with an event");
    let event_bytes = sample.payload.len();
    let stream_bytes_per_event = info.state.bytes as f64 / (info.state.messages as f64 / 2.0);
    report.add("ingest", "stored event size (the JSON JetStream holds)", event_bytes as f64, "bytes");
    report.add("ingest", "stream bytes per event (event + id-index message)", stream_bytes_per_event, "bytes");

    // 1b. Raw JetStream, the same workloads with payloads of the same size.
    let raw_rows = raw_jetstream(&mut report, scale, event_bytes).await;
    for (gateway, raw) in gateway_rows.iter().flatten().zip(&raw_rows) {
        report.compare(*gateway, *raw);
    }

    // 1c. The peer, appending the same events to the same PostgreSQL.
    let with_expected = gateway_rows[1];
    peer(
        &mut report,
        scale,
        &[
            (with_expected[0], "single events, 1 client"),
            (with_expected[1], &format!("single events, {CLIENTS} clients")),
            (with_expected[2], "batches of 100"),
            (with_expected[3], "batches of 1000"),
        ],
    )
    .await;

    // 1d. The production shape: a three-node cluster, every stream at three replicas.
    cluster(&mut report, scale, event_bytes, &http).await;

    if ingest_only {
        return;
    }

    // 2. Reads. The projector and the query role start; the database grows.
    deployment.start_readers().await;
    let probes: Vec<(usize, String)> = [10, 100, 1000].iter().map(|&n| (n, uuid::Uuid::new_v4().to_string())).collect();
    let mut probe_bodies = Vec::new();
    for (n, child) in &probes {
        for chunk in history(&format!("probe{n}"), child, *n, false).chunks(1000) {
            probe_bodies.push(Value::Array(chunk.to_vec()));
        }
    }
    let mut last = post_all(&http, &events_url, probe_bodies, 1).await.1;
    let mut children_now =
        scale.singles.min(4) + 2 * CLIENTS * 2 + scale.batches_100 + scale.batches_1000 + probes.len();
    for &target in &scale.children {
        let more = target.saturating_sub(children_now);
        let bodies: Vec<Value> = (0..more)
            .map(|i| history(&format!("bg{target}-{i}"), &uuid::Uuid::new_v4().to_string(), 3, false))
            .collect::<Vec<_>>()
            .chunks(333)
            .map(|c| Value::Array(c.iter().flatten().cloned().collect()))
            .collect();
        last = last.max(post_all(&http, &events_url, bodies, 4).await.1);
        children_now = children_now.max(target);
        deployment.wait_projected(last).await;
        for (n, child) in &probes {
            let url = deployment.query_url(&format!("/v1/children/{child}/chronology?limit=1000"));
            let mut times = Vec::new();
            for _ in 0..scale.samples {
                let t = Instant::now();
                let (status, body) = http.get(&url).await;
                times.push(t.elapsed());
                assert_eq!(status, 200, "{body}");
                assert_eq!(body["entries"].as_array().map(Vec::len), Some(*n));
            }
            report.latency("reads", format!("chronology of a {n}-event child, {target} children"), times);
        }
    }

    // A seeded population, for indicators and caseloads, and the bulk of the projection figures.
    let until = chrono::NaiveDate::from_ymd_opt(2026, 3, 31).unwrap();
    let groups = safeguard::cli::seed::generate(42, 2, scale.seeded_per_council, until).expect("seed");
    let seeded: usize = groups.iter().map(Vec::len).sum();
    let bodies: Vec<Value> = {
        let (people, children): (Vec<_>, Vec<_>) =
            groups.into_iter().partition(|g| g.first().is_some_and(|e| e["type"] != "child.registered"));
        let mut all: Vec<Value> = safeguard::cli::seed::batches(&people, 1000).into_iter().map(Value::Array).collect();
        post_all(&http, &events_url, std::mem::take(&mut all), 1).await;
        safeguard::cli::seed::batches(&children, 1000).into_iter().map(Value::Array).collect()
    };
    let (m, seeded_last) = post_all(&http, &events_url, bodies, 4).await;
    report.rate("ingest", format!("gateway: seeded population ({seeded} events), batches of 1,000, 4 at a time"), &m);
    deployment.wait_projected(seeded_last).await;
    // The second seeded council holds only its seeded children; the first
    // also holds every child registered above (over 100,000 at full scale).
    let (seeded_council, _, _) = safeguard::cli::seed::COUNCILS[1];
    let crowded: i64 = sqlx::query_scalar("select count(*) from child_status where council = 'E09000014'")
        .fetch_one(&db.pool().await)
        .await
        .unwrap_or(0);
    for (what, council, children) in [
        ("indicators of one council and year", seeded_council, scale.seeded_per_council as i64),
        ("caseloads of one council", seeded_council, scale.seeded_per_council as i64),
        ("indicators of one council and year", "E09000014", crowded),
        ("caseloads of one council", "E09000014", crowded),
    ] {
        let path = if what.starts_with("indicators") {
            format!("/v1/indicators?council={council}&period=2024-25")
        } else {
            format!("/v1/caseloads?council={council}")
        };
        let mut times = Vec::new();
        for _ in 0..scale.samples / 3 {
            let t = Instant::now();
            let (status, body) = http.get(&deployment.query_url(&path)).await;
            times.push(t.elapsed());
            assert_eq!(status, 200, "{body}");
        }
        report.latency("reads", format!("{what} ({children} children in the council)"), times);
    }

    // The pages people use, beside the API reads above: signed in once, as a browser is.
    let cookie = tests::query::PageSession::sign_in(&deployment.query_url(""), tokens::ADMIN, "bench").await.cookie;
    let page_paths = [
        (
            "page: indicators dashboard, 9 periods",
            format!("/ui/indicators?council={seeded_council}&period=2024-25"),
            scale.seeded_per_council as i64,
        ),
        (
            "page: indicators dashboard, 9 periods",
            "/ui/indicators?council=E09000014&period=2024-25".to_owned(),
            crowded,
        ),
        ("page: caseload board", format!("/ui/caseloads?council={seeded_council}"), scale.seeded_per_council as i64),
        ("page: caseload board", "/ui/caseloads?council=E09000014".to_owned(), crowded),
    ];
    for (what, path, children) in page_paths {
        let times = page_times(&deployment.query_url(&path), &cookie, scale.samples / 3).await;
        report.latency("reads", format!("{what} ({children} children in the council)"), times);
    }
    for (n, child) in &probes {
        let times =
            page_times(&deployment.query_url(&format!("/ui/children/{child}")), &cookie, scale.samples / 3).await;
        report.latency("reads", format!("page: chronology timeline of a {n}-event child"), times);
    }

    // Ack-to-visible: under a steady background load, a probe event's 201
    // until the chronology shows it.
    // Issue 23's target load: 1,000 events/s, sixteen children visited every 16 ms.
    const STEADY_CLIENTS: usize = 16;
    const STEADY_EVERY: Duration = Duration::from_millis(16);
    let stop = Arc::new(AtomicBool::new(false));
    let loads: Vec<_> = (0..STEADY_CLIENTS)
        .map(|c| {
            let (http, url, stop) = (http.clone(), events_url.clone(), stop.clone());
            tokio::spawn(async move {
                let child = uuid::Uuid::new_v4().to_string();
                let all = history(&format!("steady{c}"), &child, 20_000, false);
                http.post(&url, &all[0]).await;
                let mut sent = 1;
                // Each client records a visit every STEADY_EVERY at most: a steady load, not a flood.
                let mut ticker = tokio::time::interval(STEADY_EVERY);
                ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                while !stop.load(Ordering::Relaxed) && sent < all.len() {
                    ticker.tick().await;
                    let (status, body) = http.post(&url, &all[sent]).await;
                    assert_eq!(status, 201, "{body}");
                    sent += 1;
                }
                sent
            })
        })
        .collect();
    let watched = uuid::Uuid::new_v4().to_string();
    let events = history("visible", &watched, scale.samples + 1, false);
    http.post(&events_url, &events[0]).await;
    let chronology = deployment.query_url(&format!("/v1/children/{watched}/chronology?limit=1000"));
    // Alert latency, measured turn about with ack-to-visible so both see the
    // same load: a police concern's 201 until the allocated worker's open
    // alerts list it (`GET /v1/alerts`).
    let alerted = uuid::Uuid::new_v4().to_string();
    let worker = uuid::Uuid::new_v4().to_string();
    let case_day = (chrono::Utc::now() - chrono::Duration::days(7)).to_rfc3339();
    let open_case = [
        tests::fixtures::registered("alerted-reg", &alerted, "E09000014"),
        tests::fixtures::event(
            "alerted-ref",
            "referral.received",
            &alerted,
            &case_day,
            json!({"referral_id": "R1", "source": "6", "nfa": false}),
        ),
        tests::fixtures::event(
            "alerted-alloc",
            "case.allocated",
            &alerted,
            &case_day,
            json!({"worker_id": worker, "team_id": "T1"}),
        ),
    ];
    for e in &open_case {
        let (status, body) = http.post(&events_url, e).await;
        assert_eq!(status, 201, "{body}");
    }
    let alerts = deployment.query_url(&format!("/v1/alerts?council=E09000014&worker={worker}&status=open&limit=1000"));
    let mut alert_times = Vec::new();

    let mut times = Vec::new();
    let meter = Meter::start(roles(&deployment, &nats, "load generator"));
    let load_started = Instant::now();
    // The steady children's histories grow for as long as this runs, and
    // each batch refolds a child's whole history (see docs/benchmarks.md),
    // so a slow projector would make the phase, and its load, grow without
    // end: it stops after PROBING_AT_MOST, with the probes it took.
    const PROBING_AT_MOST: Duration = Duration::from_secs(180);
    for (i, event) in events.iter().enumerate().skip(1) {
        if i > 10 && load_started.elapsed() > PROBING_AT_MOST {
            break;
        }
        let (status, body) = http.post(&events_url, event).await;
        assert_eq!(status, 201, "{body}");
        let acked = Instant::now();
        // One read that waits for the event's position (read-your-writes),
        // as a publisher's own client reads: polling instead would log an
        // access event per poll, and the projector applying those would
        // slow the very thing measured, the more the slower it already was.
        let at = body["results"][0]["stream_sequence"].as_u64().expect("a position");
        loop {
            let (status, body) = http.get(&format!("{chronology}&min_position={at}")).await;
            if status == 200 && body["entries"].as_array().map_or(0, Vec::len) > i {
                break;
            }
            assert!(status == 200 || status == 503, "{status}: {body}");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        times.push(acked.elapsed());

        let concern = tests::fixtures::event(
            &format!("alert-probe-{i}"),
            "concern.raised",
            &alerted,
            &chrono::Utc::now().to_rfc3339(),
            json!({"concern_id": format!("P{i}"), "summary": "A concern from the police"}),
        );
        let (status, body) = http.post_as(tokens::POLICE, &events_url, &concern).await;
        assert_eq!(status, 201, "{body}");
        let acked = Instant::now();
        let at = body["results"][0]["stream_sequence"].as_u64().expect("a position");
        loop {
            let (status, body) = http.get(&format!("{alerts}&min_position={at}")).await;
            let listed =
                body["alerts"].as_array().map_or(0, |a| a.iter().filter(|a| a["kind"] == "agency_concern").count());
            if status == 200 && listed >= i {
                break;
            }
            assert!(status == 200 || status == 503, "{status}: {body}");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        alert_times.push(acked.elapsed());
    }

    stop.store(true, Ordering::Relaxed);
    let split = meter.stop();
    let mut steady = 0;
    for load in loads {
        steady += load.await.unwrap();
    }
    let probes = times.len();
    let visible = report.latency(
        "reads",
        format!(
            "ack-to-visible in the chronology, under {:.0} events/s of steady load on {STEADY_CLIENTS} children \
             (each reaching {} events; {probes} probes)",
            steady as f64 / load_started.elapsed().as_secs_f64(),
            steady / STEADY_CLIENTS,
        ),
        times,
    );
    // Each probe is an event too, and so is each alert probe's concern.
    report.cpu(visible, &split, steady + 2 * probes);
    report.add("reads", STEADY_LOAD, (steady + 2 * probes) as f64 / load_started.elapsed().as_secs_f64(), "events/s");
    report.latency(
        "reads",
        "alert latency: a police concern's 201 until the worker's open alerts list it, turn about with the above",
        alert_times,
    );

    // 3. Projection, rebuild and verification over the whole stream.
    let mut js_info = js.get_stream(platform::bus::EVENTS_STREAM).await.unwrap();
    let last = js_info.info().await.unwrap().state.last_sequence;
    let clean = TestDatabase::create().await;
    let clean_pool = clean.pool().await;
    // Its own name: projectors sharing a stream must never share a durable consumer.
    let signers: Arc<dyn events::chain::Signers> =
        platform::PublicKeyFile::open(&deployment.path("signing.key.pub"), Duration::ZERO).await.unwrap();
    let settings = projections::runtime::Settings {
        name: "bench-clean".into(),
        ..projections::runtime::Settings::new(signers.clone())
    };
    let profile = Profile::start(std::process::id());
    let meter = Meter::start(roles(&deployment, &nats, "projector, in process"));
    let elapsed = tests::projector::run_until(&nats.url(), &clean_pool, settings, last).await;
    let split = meter.stop();
    let total_events: i64 =
        sqlx::query_scalar("select count(*) from stored_event").fetch_one(&clean_pool).await.unwrap();
    let projection = report.rate(
        "projection",
        format!("projection, every read model, one projector, batches of 1,000 ({total_events} events)"),
        &Measured::new(total_events as usize, elapsed, vec![]),
    );
    report.cpu(projection, &split, total_events as usize);
    report.profile(projection, "the projector (this process)", profile);
    let copy =
        raw_copy(&mut report, scale.copy_rows, &json!({"example": "x".repeat(event_bytes.saturating_sub(40))})).await;
    report.compare(projection, copy);

    let options: sqlx::postgres::PgConnectOptions = clean.url().parse().unwrap();
    let meter = Meter::start(roles(&deployment, &nats, "rebuild, in process"));
    let rebuilt = projections::rebuild::rebuild(
        options,
        jetstream::new(nats.client().await),
        projections::runtime::Settings {
            name: "bench-clean".into(),
            batch: 5000,
            ..projections::runtime::Settings::new(signers)
        },
        Arc::new(projections::runtime::Stats::default()),
    )
    .await
    .expect("rebuild");
    let rebuild = report.rate(
        "projection",
        "rebuild beside the live tables, then switch (batches of 5,000)",
        &Measured::new(rebuilt.events as usize, rebuilt.elapsed, vec![]),
    );
    report.cpu(rebuild, &meter.stop(), rebuilt.events as usize);
    report.compare(rebuild, copy);
    // The rebuild as an operator runs it, one process, then shared by two
    // processes given half the partitions each (as two partitioned
    // projectors would be), on the same database one after the other.
    let rebuild_processes = |shares: &'static [(&'static str, &'static str)]| {
        let running: Vec<_> = shares
            .iter()
            .map(|(name, partitions)| {
                deployment
                    .rebuild_share(&nats.url(), clean.url(), partitions, name)
                    .spawn()
                    .expect("start safeguard rebuild")
            })
            .collect();
        let mut groups = roles(&deployment, &nats, "bench");
        // Counted once each has exited and been waited for, below.
        groups.insert(0, ("safeguard rebuild", Which::ExitedChildren));
        let meter = Meter::start(groups);
        let started = Instant::now();
        tokio::task::spawn_blocking(move || {
            let (mut events, mut peak) = (0, 0.0f64);
            for child in running {
                let output = child.wait_with_output().expect("safeguard rebuild");
                let stderr = String::from_utf8_lossy(&output.stderr);
                assert!(output.status.success(), "safeguard rebuild failed: {stderr}");
                events +=
                    tests::deploy::rebuilt_events(&stderr).expect("safeguard rebuild says how many events it rebuilt");
                peak =
                    peak.max(tests::deploy::rebuilt_peak_mib(&stderr).expect("safeguard rebuild says its peak memory"));
            }
            (Measured::new(events as usize, started.elapsed(), vec![]), meter.stop(), events, peak)
        })
    };
    let (one, split, events, rebuild_peak_mib) = rebuild_processes(&[("bench-clean", "0-31")]).await.expect("join");
    let one =
        report.rate("projection", "rebuild, one `safeguard rebuild` process, then switch (batches of 5,000)", &one);
    report.cpu(one, &split, events as usize);
    let (shared, split, events, _) =
        rebuild_processes(&[("bench-low", "0-15"), ("bench-high", "16-31")]).await.expect("join");
    let shared = report.rate(
        "projection",
        "rebuild shared by two `safeguard rebuild` processes (partitions 0-15 and 16-31), then switch",
        &shared,
    );
    report.cpu(shared, &split, events as usize);
    report.compare(shared, one);
    let keys =
        events::chain::decode_verifying_keys(&std::fs::read_to_string(deployment.path("signing.key.pub")).unwrap())
            .expect("public keys");
    for (what, copy) in
        [("verification, stream and Postgres copy", Some(&clean_pool)), ("verification, stream only", None)]
    {
        let t = Instant::now();
        let r = query::verify::verify(&js, copy, &keys, None).await.expect("verify");
        assert!(r.ok, "{:?}", &r.breaks[..r.breaks.len().min(3)]);
        report.rate("projection", what, &Measured::new(r.checked as usize, t.elapsed(), vec![]));
    }

    // 4. A council's new settings reach every child's alerts: the live
    // projector folds each child of the crowded council again, a chunk at
    // a time between its batches (`refold::drain`). Measured last, so the
    // projections and rebuilds above do not fold them too.
    let configured = tests::fixtures::configured("bench-reconfigured", &chrono::Utc::now().to_rfc3339(), 20);
    let t = Instant::now();
    let (status, body) = http.post(&events_url, &configured).await;
    assert_eq!(status, 201, "{body}");
    deployment.wait_projected(body["results"][0]["stream_sequence"].as_u64().expect("a position")).await;
    report.add(
        "projection",
        format!("a council reconfigured: each of its {crowded} children folded again by the live projector"),
        crowded as f64 / t.elapsed().as_secs_f64(),
        "children/s",
    );

    // 5. Peak memory of each role over the whole run.
    for (role, kib) in deployment.peak_memory_kib() {
        report.add("memory", format!("peak resident memory of the {role} process"), kib as f64 / 1024.0, "MiB");
    }
    report.add(
        "memory",
        format!("peak resident memory of the `safeguard rebuild` process (one process, {total_events} events)"),
        rebuild_peak_mib,
        "MiB",
    );
    let table_bytes: i64 = tests::benchmarks::read_model_bytes(&clean_pool).await;
    report.add(
        "memory",
        "read-model storage per event (all tables and indexes)",
        table_bytes as f64 / total_events as f64,
        "bytes",
    );

    println!("benchmark finished in {:.0} s", started.elapsed().as_secs_f64());
    std::fs::write(&json_out, serde_json::to_string_pretty(&json!({"rows": report.rows})).unwrap())
        .expect("write json");
    if let Some(path) = markdown_out {
        let pg_version: String =
            sqlx::query_scalar("show server_version").fetch_one(&clean_pool).await.unwrap_or_default();
        // As the server ran, not as a distribution ships it: one run's
        // figures were set by autovacuum being off (docs/benchmarks.md).
        let settings: Vec<(String, String)> = sqlx::query_as(
            "select name::text, current_setting(name) from pg_settings
              where name = any(array['fsync', 'synchronous_commit', 'autovacuum', 'shared_buffers',
                                     'max_parallel_workers_per_gather', 'work_mem'])
              order by name",
        )
        .fetch_all(&clean_pool)
        .await
        .unwrap_or_default();
        let settings: Vec<String> = settings.iter().map(|(name, value)| format!("`{name}` {value}")).collect();
        let pg = format!("{pg_version}; {}", settings.join(", "));
        // The long `ops/bench --scale` run's section is kept as it was.
        let mut document = markdown(&report, started.elapsed(), &pg);
        let previous = std::fs::read_to_string(&path).unwrap_or_default();
        if let Some(section) = tests::benchmarks::scale_section(&previous) {
            document = tests::benchmarks::with_scale_section(&document, section);
        }
        std::fs::write(&path, document).expect("write markdown");
        println!("wrote {path}");
    }
    drop(deployment);
}

fn command_output(program: &str, args: &[&str]) -> String {
    std::process::Command::new(program)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|_| "unknown".into())
}

fn markdown(report: &Report, elapsed: Duration, pg_version: &str) -> String {
    let mut out = String::new();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| t.lines().next().and_then(|l| l.split_whitespace().nth(1)).and_then(|k| k.parse::<f64>().ok()))
        .map_or(0.0, |k| k / 1024.0 / 1024.0);
    let nats_version = command_output(&tests::nats::nats_server_binary().display().to_string(), &["--version"]);
    let rustc = command_output("rustc", &["--version"]);
    let _ = writeln!(
        out,
        "<!-- Written by ops/bench ({:.0} s); edit the prose in tests/examples/bench.rs. -->",
        elapsed.as_secs_f64()
    );
    let _ = writeln!(out, "# Benchmarks\n");
    let _ = writeln!(
        out,
        "One run of `ops/bench` on one machine: Safeguard beside the raw limits of NATS and PostgreSQL \
         and beside a well-known peer, all on the same servers in the same run. Nothing here is a timed \
         test: these are measurements, and a second run on a different day will differ by a few per cent.\n"
    );
    let _ = writeln!(out, "## Machine and versions\n");
    let _ = writeln!(out, "| | |\n|---|---|");
    let _ = writeln!(out, "| CPU | {cpu}, {cores} cores |");
    let _ = writeln!(out, "| memory | {memory:.0} GiB |");
    let _ = writeln!(
        out,
        "| NATS | {nats_version}, one server, `sync_interval: always` (every write fsynced before its ack), file storage, one replica |"
    );
    let _ = writeln!(out, "| PostgreSQL | {pg_version} |");
    let _ = writeln!(out, "| Rust | {rustc}, release build |");
    let _ = writeln!(out, "| peer | cqrs-es 0.5.0 with postgres-es 0.5.0 (crates.io), on the same PostgreSQL |");
    let _ = writeln!(
        out,
        "\nEvery process (NATS, PostgreSQL, the three roles, the load generator) shares the same two cores, so each figure is lower than it would be on separate machines.\n"
    );
    let _ = writeln!(out, "## Commands\n");
    let _ = writeln!(
        out,
        "```sh\nops/bench            # this file and target/bench.json (about 15 minutes)\nops/bench --quick    # a short run to try the command\nops/load             # 64 clients for 60 s through the gateway and the query role\n```\n"
    );
    for (section, title) in [
        ("ingest", "Ingest: gateway, raw JetStream, and the peer"),
        ("cluster", "Ingest on a three-node cluster (every stream at three replicas)"),
        ("peer", "The peer: cqrs-es with postgres-es"),
        ("projection", "Projection, rebuild and verification"),
        ("reads", "Reads"),
        ("memory", "Memory and storage"),
    ] {
        let _ = writeln!(out, "## {title}\n");
        let _ = writeln!(out, "| measure | value | p50 ms | p99 ms | ratio to |\n|---|---:|---:|---:|---|");
        for r in report.rows.iter().filter(|r| r.section == section) {
            let opt = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v:.2}"));
            let ratios: Vec<String> = r.ratios.iter().map(|x| format!("**{:.2}** × {}", x.ratio, x.against)).collect();
            let _ = writeln!(
                out,
                "| {} | {:.1} {} | {} | {} | {} |",
                r.name,
                r.value,
                r.unit,
                opt(r.p50_ms),
                opt(r.p99_ms),
                ratios.join("<br>")
            );
        }
        let _ = writeln!(out);
    }
    cpu_section(&mut out, report);
    targets(&mut out, report);
    let _ = writeln!(out, "## Reading the figures\n");
    let _ = writeln!(
        out,
        "- **Single events on one server.** No (publisher, id) may ever be stored twice, so each event travels \
         with its id's claim in the id index, and each write expects its subject's last sequence, so no chain \
         forks. JetStream allows one such expectation per message, so an event costs two messages. On one \
         server JetStream stages an atomic batch on disk before committing it: compare the rows `raw JetStream: \
         atomic commits of 2 messages` and `the id claimed, then the event, two publishes in turn`. So a lone \
         event goes as two plain publishes, its claim and then itself, and the gateway's single events sit \
         close to that second primitive. Under concurrent load the group commit (`gateway::publish::Committer`) \
         shares one atomic commit among many requests' events and claims instead.\n\
         - **On three replicas** every write is a Raft round as well as an fsync, plain publishes cost about \
         what atomic commits do, so there a lone event stays one atomic batch of its claim and itself.\n\
         - **Batches** amortise the commit: the gateway's batches of 1,000 stay below raw JetStream because each \
         event is validated, stamped, hashed (RFC 8785), signed (Ed25519, on every core) and, where it carries personal data, \
         sealed, and because the stream holds two messages per event.\n\
         - **Projection** writes every read model in the batch's transaction, folding each touched child from \
         its kept history and its new events and writing the rows that changed, about 1,700 bytes of tables and \
         indexes an event, so it runs at a fraction of a bare `COPY` into one table.\n\
         - **The peer** (cqrs-es with postgres-es) appends to one PostgreSQL table without hashing, signing or \
         an id index, and loads an aggregate's events before each command.\n"
    );
    national(&mut out, report);
    out
}

/// Where the machine's CPU went during each metered row (`tests::cpu`).
fn cpu_section(out: &mut String, report: &Report) {
    let _ = writeln!(out, "## Where the CPU went\n");
    let _ = writeln!(
        out,
        "Every process shares the two cores. For each metered row: how busy the cores were (and how much of \
         the time they sat waiting on the disk), the CPU every process spent an event (from `/proc`, in \
         microseconds), and the rate the cores would allow if nothing waited (cores over all the CPU an event \
         cost). A row near its ceiling is bound by the cores, and the largest share says whose; a row far \
         below it is bound by waiting (round trips, fsyncs, one thing after another).\n"
    );
    let _ = writeln!(
        out,
        "| measure | events/s | cores busy (on the disk) | CPU an event, µs | the cores' ceiling, events/s | of the ceiling |"
    );
    let _ = writeln!(out, "|---|---:|---:|---|---:|---:|");
    for r in &report.rows {
        let Some(cpu) = &r.cpu else { continue };
        let rate = if r.unit == "events/s" { r.value } else { report.value(STEADY_LOAD) };
        let _ = writeln!(
            out,
            "| {} | {rate:.0} | {:.0}% ({:.0}%) | {} | {:.0} | {:.2} |",
            r.name,
            cpu.busy_percent,
            cpu.iowait_percent,
            cpu_parts(cpu),
            cpu.ceiling,
            rate / cpu.ceiling
        );
    }
    let _ = writeln!(out);
    for r in &report.rows {
        let Some((process, functions)) = &r.profile else { continue };
        let _ = writeln!(
            out,
            "Inside {process} during `{}` (`perf record`, 499 samples a second; functions with 2% of its samples or more):\n",
            r.name
        );
        let _ = writeln!(out, "| share of samples | function |\n|---:|---|");
        for (share, function) in functions {
            let _ = writeln!(out, "| {share:.1}% | `{}` |", function.replace('|', "\\|"));
        }
        let _ = writeln!(out);
    }
}

/// "gateway 41, nats-server 22, … (total 70)", leaving out processes that spent under a microsecond.
fn cpu_parts(cpu: &Cpu) -> String {
    let total: f64 = cpu.per_event_us.iter().map(|(_, us)| us).sum();
    let parts: Vec<String> =
        cpu.per_event_us.iter().filter(|(_, us)| *us >= 1.0).map(|(n, us)| format!("{n} {us:.0}")).collect();
    format!("{} (total {total:.0})", parts.join(", "))
}

/// What bound a metered row, read from its CPU: the cores (and whose CPU
/// most), or waiting.
fn bound_by(row: &Row, rate: f64) -> String {
    let Some(cpu) = &row.cpu else { return String::new() };
    let mut parts = cpu.per_event_us.clone();
    parts.sort_by(|a, b| b.1.total_cmp(&a.1));
    let total: f64 = parts.iter().map(|(_, us)| us).sum();
    let top: Vec<String> = parts
        .iter()
        .take(2)
        .map(|(n, us)| format!("{n} {us:.0} µs ({:.0}%)", 100.0 * us / total.max(f64::MIN_POSITIVE)))
        .collect();
    // Two cores shared by processes that hand work to each other are
    // seldom all busy: three quarters is as near the ceiling as a pipeline
    // of a few steps gets, and under six tenths most of the time is waits.
    let share = rate / cpu.ceiling;
    let bound = if share >= 0.75 {
        "the cores"
    } else if share < 0.6 {
        "waiting, not the cores"
    } else {
        "partly the cores, partly waiting"
    };
    format!(
        "{bound} ({:.0}% busy, {:.0}% on the disk): {share:.2} of the cores' ceiling; CPU an event {total:.0} µs, most {}",
        cpu.busy_percent,
        cpu.iowait_percent,
        top.join(", ")
    )
}

/// Issue 23's targets, each beside what this run measured and, where
/// metered, what bound it.
fn targets(out: &mut String, report: &Report) {
    let _ = writeln!(out, "## The targets\n");
    let _ = writeln!(out, "| target | this run | met | what bound the row |\n|---|---|---|---|");
    let mut line = |target: String, measured: String, met: bool, row: Option<&Row>| {
        let bound = row.map_or(String::new(), |r| {
            bound_by(r, if r.unit == "events/s" { r.value } else { report.value(STEADY_LOAD) })
        });
        let _ = writeln!(out, "| {target} | {measured} | {} | {bound} |", if met { "yes" } else { "**no**" });
    };
    let ratio = |row: &Row, against: &str| row.ratios.iter().find(|x| x.against.starts_with(against)).map(|x| x.ratio);
    let gateway = |what: &str| report.row(&format!("gateway: {what}, with expectedsequence"));
    for what in
        ["single events, 1 client", &format!("single events, {CLIENTS} clients"), "batches of 100", "batches of 1000"]
    {
        let Some(row) = gateway(what) else { continue };
        let r = ratio(row, "cqrs-es").unwrap_or(0.0);
        line(format!("gateway {what} ≥ 1.5 × cqrs-es + postgres-es"), format!("{r:.2} ×"), r >= 1.5, Some(row));
    }
    for (what, at_least) in [
        ("single events, 1 client", 0.5),
        (&format!("single events, {CLIENTS} clients"), 0.8),
        ("batches of 1000", 0.5),
    ] {
        let Some(row) = gateway(what) else { continue };
        let r = ratio(row, "raw JetStream").unwrap_or(0.0);
        line(format!("gateway {what} ≥ {at_least} × raw JetStream"), format!("{r:.2} ×"), r >= at_least, Some(row));
    }
    for name in [
        report.rows.iter().find(|r| r.name.starts_with("projection, every read model")).map(|r| r.name.clone()),
        Some("rebuild beside the live tables, then switch (batches of 5,000)".to_owned()),
    ]
    .into_iter()
    .flatten()
    {
        let Some(row) = report.row(&name) else { continue };
        let r = ratio(row, "raw PostgreSQL COPY").unwrap_or(0.0);
        let what = name.split(',').next().unwrap_or(&name).split(" beside").next().unwrap_or(&name).to_owned();
        line(format!("{what} ≥ 0.5 × raw `COPY`"), format!("{r:.2} ×"), r >= 0.5, Some(row));
    }
    if let Some(row) = report.rows.iter().find(|r| r.name.starts_with("rebuild shared by two")) {
        let r = ratio(row, "rebuild, one").unwrap_or(0.0);
        line("a rebuild shared by two processes faster than one".to_owned(), format!("{r:.2} ×"), r > 1.0, Some(row));
    }
    if let Some(row) = report.rows.iter().rev().find(|r| r.name.starts_with("indicators of one council and year")) {
        line(
            "indicators of one council-year at 100,000 children ≤ 10 ms p50".to_owned(),
            format!("{:.1} ms p50 ({})", row.value, row.name.split('(').nth(1).unwrap_or("").trim_end_matches(')')),
            row.value <= 10.0,
            None,
        );
    }
    if let Some(row) = report.rows.iter().find(|r| r.name.starts_with("ack-to-visible")) {
        let load = report.value(STEADY_LOAD);
        let p99 = row.p99_ms.unwrap_or(f64::INFINITY);
        line(
            "ack-to-visible p99 ≤ 100 ms at 1,000 events/s".to_owned(),
            format!("{p99:.0} ms p99 at {load:.0} events/s"),
            p99 <= 100.0 && load >= 1000.0,
            Some(row),
        );
    }
    let _ = writeln!(
        out,
        "| peak resident memory of each role during a 10-million-event rebuild ≤ 256 MiB | `ops/bench --scale`: the section on a rebuild at national scale | see there | |\n"
    );
}

/// What a national deployment needs, from the measured rates.
fn national(out: &mut String, report: &Report) {
    const PER_YEAR: f64 = 15_000_000.0;
    const TWENTY_YEARS: f64 = 300_000_000.0;
    let batch = report.value("gateway: batches of 1000, with expectedsequence");
    let concurrent = report.value(&format!("gateway: single events, {CLIENTS} clients, with expectedsequence"));
    let rebuild = report.rows.iter().find(|r| r.name.starts_with("rebuild")).map_or(0.0, |r| r.value);
    let verify = report.value("verification, stream only");
    let verify_copy = report.value("verification, stream and Postgres copy");
    let stream_bytes = report.value("stream bytes per event (event + id-index message)");
    let table_bytes = report.value("read-model storage per event (all tables and indexes)");
    let hours = |events: f64, rate: f64| if rate > 0.0 { events / rate / 3600.0 } else { f64::NAN };
    let _ = writeln!(out, "## A national deployment, worked out\n");
    let _ = writeln!(
        out,
        "England records about 15 million events a year (DOMAIN.md); twenty years is about 300 million. \
         From the rates above, on this two-core machine:\n"
    );
    let _ = writeln!(out, "| question | answer |\n|---|---|");
    let _ = writeln!(
        out,
        "| a year of events as single requests from {CLIENTS} agency clients | {:.1} hours of ingest ({concurrent:.0} events/s); the year's average arrival rate is {:.2} events/s |",
        hours(PER_YEAR, concurrent),
        PER_YEAR / (365.0 * 24.0 * 3600.0)
    );
    let _ = writeln!(
        out,
        "| a year of events as batches of 1,000 (a migration) | {:.1} hours ({batch:.0} events/s) |",
        hours(PER_YEAR, batch)
    );
    let _ = writeln!(out, "| importing twenty years of history in batches | {:.0} hours |", hours(TWENTY_YEARS, batch));
    let _ = writeln!(
        out,
        "| rebuilding every read model from twenty years | {:.0} hours ({rebuild:.0} events/s) |",
        hours(TWENTY_YEARS, rebuild)
    );
    let _ = writeln!(
        out,
        "| verifying twenty years (stream only / with the copy) | {:.1} / {:.1} hours |",
        hours(TWENTY_YEARS, verify),
        hours(TWENTY_YEARS, verify_copy)
    );
    let _ = writeln!(
        out,
        "| stream storage for twenty years, three replicas | {:.0} GB per node, {:.0} GB in all |",
        TWENTY_YEARS * stream_bytes / 1e9,
        3.0 * TWENTY_YEARS * stream_bytes / 1e9
    );
    let _ = writeln!(out, "| read-model storage for twenty years | {:.0} GB |", TWENTY_YEARS * table_bytes / 1e9);
    let _ = writeln!(
        out,
        "\nIngest is never the constraint: the busiest hour of a normal year is a few events per second. \
         What scales with the size of history is the rebuild (a projector applies every event again) and \
         verification (every event is hashed and its signature checked). Both are linear and run beside the \
         live service; partitioned projectors (`--partitions`) share a rebuild across machines. A child's \
         chronology costs the same at 1,000 and at 100,000 children (the rows above), and verifying one child \
         reads only that child's subject.\n"
    );
}
