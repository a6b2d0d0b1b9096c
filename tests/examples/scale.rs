//! A rebuild at national scale, for BENCHMARKS.md: ten million events (or
//! `--events N`) of seeded councils' histories published through the
//! gateway with the live projector following, then every read model rebuilt
//! by one `safeguard rebuild` process beside the live ones while the gateway
//! takes a trickle of new events and the query role answers reads; with each
//! role's peak resident memory. A long run outside CI (about 100 minutes here):
//!
//! `ops/bench --scale [--events N] [--markdown FILE]`
//!
//! It writes its section of the markdown file between the markers
//! `<!-- scale -->` and `<!-- /scale -->`, which `ops/bench` carries over
//! when it rewrites the rest.

#![allow(clippy::print_stdout)] // printing the figures is the point
#![allow(clippy::expect_used, clippy::unwrap_used)] // a measurement run stops at the first surprise

use futures::StreamExt as _;
use serde_json::{Value, json};
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tests::deploy::{Deployment, release_binary};
use tests::gateway::tokens;
use tests::{NatsServer, TestDatabase};

/// Children per council in one generated chunk: eight councils of 1,250
/// children give about 180,000 events, so the generator never holds more.
const CHILDREN_PER_CHUNK: usize = 1_250;
const COUNCILS: usize = 8;
/// Concurrent batch requests, as in the main benchmark's seeded population.
const CLIENTS: usize = 4;
/// The target the issue sets for each role during the rebuild.
const MEMORY_TARGET_MIB: f64 = 256.0;

/// 503s answered and retried, as an agency system's outbox retries them
/// (the same body and ids, which the gateway stores once).
static RETRIED: AtomicU64 = AtomicU64::new(0);

async fn post(client: &reqwest::Client, url: &str, body: &Value) -> u64 {
    let body = body.to_string();
    for attempt in 0..20u64 {
        let response = client
            .post(url)
            .bearer_auth(tokens::ADMIN)
            .header("content-type", "application/cloudevents+json")
            .body(body.clone())
            .send()
            .await
            .expect("the gateway answers");
        let status = response.status();
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        if status == 503 {
            RETRIED.fetch_add(1, Ordering::Relaxed);
            println!("503 (attempt {attempt}), retrying: {answer}");
            tokio::time::sleep(Duration::from_millis(500 * (attempt + 1))).await;
            continue;
        }
        assert_eq!(status, 201, "{answer}");
        return answer["results"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["stream_sequence"].as_u64())
            .max()
            .unwrap_or(0);
    }
    panic!("the gateway answered 503 twenty times");
}

/// Posts every body, `clients` at a time; returns the highest stream position acknowledged.
async fn post_all(client: &reqwest::Client, url: &str, bodies: Vec<Value>, clients: usize) -> u64 {
    futures::stream::iter(bodies)
        .map(|body| async move { post(client, url, &body).await })
        .buffer_unordered(clients)
        .fold(0, |last, s| async move { last.max(s) })
        .await
}

fn percentile(times: &mut [Duration], p: f64) -> f64 {
    times.sort();
    let i = ((times.len() as f64 * p).ceil() as usize).clamp(1, times.len().max(1)) - 1;
    times.get(i).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

fn command_output(program: &str, args: &[&str]) -> String {
    std::process::Command::new(program)
        .args(args)
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let target: usize = arg("--events").and_then(|v| v.parse().ok()).unwrap_or(10_000_000);
    let markdown = arg("--markdown");
    let started = Instant::now();
    // The code measured is the code at the start: the run takes over an hour.
    let commit = command_output("git", &["rev-parse", "--short", "HEAD"]);

    let nats = NatsServer::start().await;
    let db = TestDatabase::create().await;
    let mut deployment = Deployment::start(&release_binary(), &nats.url(), db.url()).await;
    deployment.start_readers().await;
    let client = reqwest::Client::new();
    let events_url = deployment.gateway_url("/v1/events");

    // 1. Ingest, a chunk of councils' histories at a time, the projector following.
    let until = chrono::NaiveDate::from_ymd_opt(2026, 3, 31).unwrap();
    let (mut published, mut last, mut chunk) = (0usize, 0u64, 0u64);
    let ingest = Instant::now();
    while published < target {
        let groups = safeguard::cli::seed::generate(1_000 + chunk, COUNCILS, CHILDREN_PER_CHUNK, until).expect("seed");
        chunk += 1;
        // Councils and workers first, then children's histories side by side.
        let (mut people, children): (Vec<_>, Vec<_>) =
            groups.into_iter().partition(|g| g.first().is_some_and(|e| e["type"] != "child.registered"));
        if chunk > 1 {
            // A council is configured once, as councils are: every
            // configuration queues all its children to be folded again
            // (the first run here configured each council 55 times, and
            // the queue of 545,000 children drained at about 60 a second).
            for group in &mut people {
                group.retain(|e| e["type"] != "council.configured");
            }
            people.retain(|g| !g.is_empty());
        }
        published += people.iter().chain(&children).map(Vec::len).sum::<usize>();
        let to_bodies =
            |g: &[Vec<Value>]| safeguard::cli::seed::batches(g, 1000).into_iter().map(Value::Array).collect::<Vec<_>>();
        last = last.max(post_all(&client, &events_url, to_bodies(&people), 1).await);
        last = last.max(post_all(&client, &events_url, to_bodies(&children), CLIENTS).await);
        println!(
            "published {published} events ({:.0} events/s), stream position {last}",
            published as f64 / ingest.elapsed().as_secs_f64()
        );
    }
    let ingest_elapsed = ingest.elapsed();
    deployment.wait_projected(last).await;
    let live_elapsed = ingest.elapsed();
    println!("the live projector reached {last} after {:.0} s", live_elapsed.as_secs_f64());

    // 2. The rebuild, as an operator runs it, with the service in use.
    let running = Arc::new(AtomicBool::new(true));
    let trickle = tokio::spawn({
        let (client, url, running) = (client.clone(), events_url.clone(), running.clone());
        async move {
            let (mut n, mut last) = (0usize, 0u64);
            while running.load(Ordering::Relaxed) {
                let child = uuid::Uuid::new_v4().to_string();
                let id = format!("trickle-{n}");
                let body = json!([tests::fixtures::registered(&id, &child, "E09000014")]);
                last = last.max(post(&client, &url, &body).await);
                n += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (n, last)
        }
    });
    let reads = tokio::spawn({
        let (client, running) = (client.clone(), running.clone());
        let url = deployment.query_url("/v1/indicators?council=E09000014&period=2024-25");
        async move {
            let mut times = Vec::new();
            while running.load(Ordering::Relaxed) {
                let t = Instant::now();
                let r = client
                    .get(&url)
                    .bearer_auth(tokens::ADMIN)
                    .header("x-acting-user", "bench")
                    .header("x-purpose", "benchmark")
                    .send()
                    .await
                    .expect("the query role answers");
                assert_eq!(r.status(), 200);
                let _ = r.bytes().await;
                times.push(t.elapsed());
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            times
        }
    });
    let rebuild = deployment.rebuild_share(&nats.url(), db.url(), "0-31", "main").spawn().expect("safeguard rebuild");
    let rebuild_started = Instant::now();
    let output = tokio::task::spawn_blocking(move || rebuild.wait_with_output()).await.unwrap().unwrap();
    let rebuild_elapsed = rebuild_started.elapsed();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "safeguard rebuild failed: {stderr}");
    running.store(false, Ordering::Relaxed);
    let (trickled, trickle_last) = trickle.await.unwrap();
    let mut read_times = reads.await.unwrap();
    deployment.wait_projected(trickle_last).await;
    let rebuilt = tests::deploy::rebuilt_events(&stderr).expect("how many events the rebuild applied");
    let rebuild_peak = tests::deploy::rebuilt_peak_mib(&stderr).expect("the rebuild's peak memory");
    println!("{}", stderr.lines().last().unwrap_or(""));

    // The switched read models hold every event, the trickle's included.
    let pool = db.pool().await;
    let stored: i64 = sqlx::query_scalar("select count(*) from stored_event").fetch_one(&pool).await.unwrap();
    let holds_all = stored as usize == published + trickled;
    let table_bytes: i64 = tests::benchmarks::read_model_bytes(&pool).await;
    let js = async_nats::jetstream::new(nats.client().await);
    let stream = js.get_stream(platform::bus::EVENTS_STREAM).await.unwrap().info().await.unwrap().state.clone();

    // 3. The figures.
    let peaks = deployment.peak_memory_kib();
    let peak = |role: &str| peaks.iter().find(|(r, _)| *r == role).map_or(0.0, |(_, kib)| *kib as f64 / 1024.0);
    let verdict = |mib: f64| {
        if mib <= MEMORY_TARGET_MIB { "within the 256 MiB target" } else { "**over** the 256 MiB target" }
    };
    let events = stored as f64;
    let nats_mib = nats.peak_memory_kib().unwrap_or(0) as f64 / 1024.0;
    let rows: Vec<(String, String)> = vec![
        (
            format!(
                "events published through the gateway ({chunk} chunks of {COUNCILS} councils' seeded histories, batches of 1,000, {CLIENTS} at a time)"
            ),
            format!("{published}"),
        ),
        (
            "ingest, with the live projector following on the same cores".into(),
            format!(
                "{:.0} events/s ({:.1} min)",
                published as f64 / ingest_elapsed.as_secs_f64(),
                ingest_elapsed.as_secs_f64() / 60.0
            ),
        ),
        (
            "live projection: from the first publish until the projector held the last".into(),
            format!(
                "{:.0} events/s ({:.1} min)",
                published as f64 / live_elapsed.as_secs_f64(),
                live_elapsed.as_secs_f64() / 60.0
            ),
        ),
        (
            "rebuild, one `safeguard rebuild` process beside the live tables, then switch (batches of 5,000)".into(),
            format!(
                "{:.0} events/s ({rebuilt} events in {:.1} min)",
                rebuilt as f64 / rebuild_elapsed.as_secs_f64(),
                rebuild_elapsed.as_secs_f64() / 60.0
            ),
        ),
        (
            "new events during the rebuild (single registrations, one client), all in the switched read models".into(),
            format!("{trickled}"),
        ),
        (
            format!("indicators of one council and year during the rebuild ({} reads)", read_times.len()),
            format!("{:.1} ms p50, {:.1} ms p99", percentile(&mut read_times, 0.5), percentile(&mut read_times, 0.99)),
        ),
        (
            "requests answered 503 (storage unavailable) and retried with the same ids".into(),
            format!("{}", RETRIED.load(Ordering::Relaxed)),
        ),
        (
            "events in the read models after the switch, of those published".into(),
            format!("{stored} of {}{}", published + trickled, if holds_all { "" } else { " (**missing some**)" }),
        ),
        (
            "peak resident memory of the gateway (the whole ingest)".into(),
            format!("{:.1} MiB, {}", peak("gateway"), verdict(peak("gateway"))),
        ),
        (
            "peak resident memory of the live projector (the whole ingest and rebuild)".into(),
            format!("{:.1} MiB, {}", peak("projector"), verdict(peak("projector"))),
        ),
        (
            "peak resident memory of the query role (reads throughout)".into(),
            format!("{:.1} MiB, {}", peak("query"), verdict(peak("query"))),
        ),
        (
            "peak resident memory of the `safeguard rebuild` process (its own report)".into(),
            format!("{rebuild_peak:.1} MiB, {}", verdict(rebuild_peak)),
        ),
        (
            format!(
                "peak resident memory of nats-server ({} messages on {} subjects in the stream)",
                stream.messages, stream.subjects_count
            ),
            format!("{nats_mib:.1} MiB, {:.0} bytes per stream message", nats_mib * 1048576.0 / stream.messages as f64),
        ),
        (
            "read-model storage per event (all tables and indexes, after the switch)".into(),
            format!("{:.0} bytes", table_bytes as f64 / events),
        ),
        (
            "stream storage per event (event and id-index messages)".into(),
            format!("{:.0} bytes", stream.bytes as f64 / events),
        ),
    ];
    for (what, value) in &rows {
        println!("{what:<100} {value}");
    }
    if let Some(path) = markdown {
        write_markdown(&path, &rows, started.elapsed(), chunk, &commit);
    }
    assert!(holds_all, "the read models after the switch hold {stored} events of {}", published + trickled);
}

fn write_markdown(path: &str, rows: &[(String, String)], elapsed: Duration, chunks: u64, commit: &str) {
    let mut out = String::from("<!-- scale -->\n## A rebuild at national scale\n\n");
    let _ = writeln!(
        out,
        "A separate long run, `ops/bench --scale` ({:.0} minutes, {}, commit {}), on the same machine and servers as the tables above. \
         Each of its {chunks} chunks is eight councils' four-year histories from `safeguard seed`, so councils, workers and children accumulate as a national stream's do. \
         Every role runs as its own release process throughout; the rebuild runs while the live projector, the gateway and the query role serve.\n",
        elapsed.as_secs_f64() / 60.0,
        chrono::Utc::now().format("%Y-%m-%d"),
        commit,
    );
    let _ = writeln!(out, "| measure | value |\n|---|---:|");
    for (what, value) in rows {
        let _ = writeln!(out, "| {what} | {value} |");
    }
    out.push_str("<!-- /scale -->");
    let document = std::fs::read_to_string(path).unwrap_or_default();
    std::fs::write(path, tests::benchmarks::with_scale_section(&document, &out)).expect("write the markdown");
}
