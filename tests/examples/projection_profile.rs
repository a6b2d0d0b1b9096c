//! Where projection time goes: a stream shaped like the benchmark's
//! (many short children in one council, a seeded population with its
//! council settings, a few long histories), projected afresh by an
//! in-process projector, with the read models' sizes after.
//!
//! `cargo run --release -p tests --example projection_profile -- [--children N] [--long N] [--shares N] [--reconfigure]`
//!
//! Run `perf record -g -p <pid>` beside it (the pid is printed) to see
//! which functions the time goes to. With `--shares N` it then rebuilds
//! the same database with one `safeguard rebuild` process and with N
//! sharing the partitions, and says what PostgreSQL's sessions waited on
//! during each. With `--reconfigure` it then configures the crowded
//! council again and times the projector folding each of its children
//! again (`refold::drain`).

#![allow(clippy::print_stdout)] // printing the figures is the point
#![allow(clippy::expect_used, clippy::unwrap_used)] // a measurement run stops at the first surprise

use serde_json::{Value, json};
use std::time::{Duration, Instant};
use tests::deploy::{Deployment, release_binary};
use tests::{NatsServer, TestDatabase};

async fn post(client: &reqwest::Client, url: &str, body: Value) -> u64 {
    let response = client.post(url).bearer_auth(tests::gateway::tokens::ADMIN).json(&body).send().await.unwrap();
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert!(status.is_success(), "{status}: {body}");
    let seqs = |v: &Value| v["stream_sequence"].as_u64().unwrap_or(0);
    match &body {
        Value::Array(items) => items.iter().map(seqs).max().unwrap_or(0),
        other => other["results"].as_array().map_or_else(|| seqs(other), |r| r.iter().map(seqs).max().unwrap_or(0)),
    }
}

fn short_child(prefix: &str, events: usize) -> Vec<Value> {
    let child = uuid::Uuid::new_v4().to_string();
    (0..events)
        .map(|i| {
            let id = format!("{prefix}-{i}");
            if i == 0 {
                tests::fixtures::registered(&id, &child, "E09000014")
            } else {
                let day = chrono::NaiveDate::from_ymd_opt(2024, 1, 3).unwrap() + chrono::Days::new(i as u64 % 700);
                tests::fixtures::event(
                    &id,
                    "child.seen",
                    &child,
                    &format!("{day}T11:00:00Z"),
                    json!({"seen_by": "8a0e4c8e-5d1b-4a63-9c1e-2f7f5a1d9b10", "seen_alone": i % 2 == 0, "context": "statutory_visit"}),
                )
            }
        })
        .collect()
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |name: &str, default: usize| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let (children, long, seeded) = (arg("--children", 20_000), arg("--long", 8), arg("--seeded", 3_000));
    let shares = arg("--shares", 0);
    let reconfigure = args.iter().any(|a| a == "--reconfigure");
    let nats = NatsServer::start().await;
    let db = TestDatabase::create().await;
    let deployment = Deployment::start(&release_binary(), &nats.url(), db.url()).await;
    let client = reqwest::Client::new();
    let url = deployment.gateway_url("/v1/events");

    let t = Instant::now();
    let mut last = 0;
    let shorts: Vec<Value> = (0..children).flat_map(|i| short_child(&format!("s{i}"), 3)).collect();
    for chunk in shorts.chunks(999) {
        last = last.max(post(&client, &url, Value::Array(chunk.to_vec())).await);
    }
    let until = chrono::NaiveDate::from_ymd_opt(2026, 3, 31).unwrap();
    let groups = safeguard::cli::seed::generate(42, 2, seeded, until).expect("seed");
    for batch in safeguard::cli::seed::batches(&groups, 1000) {
        last = last.max(post(&client, &url, Value::Array(batch)).await);
    }
    for l in 0..long {
        for chunk in short_child(&format!("long{l}"), 2_000).chunks(1000) {
            last = last.max(post(&client, &url, Value::Array(chunk.to_vec())).await);
        }
    }
    println!("published to {last} in {:.1} s", t.elapsed().as_secs_f64());

    let clean = TestDatabase::create().await;
    let pool = clean.pool().await;
    let signers: std::sync::Arc<dyn events::chain::Signers> =
        platform::PublicKeyFile::open(&deployment.path("signing.key.pub"), Duration::ZERO).await.unwrap();
    let settings = projections::runtime::Settings::new(signers);
    println!("projecting in process {}", std::process::id());
    let elapsed = tests::projector::run_until(&nats.url(), &pool, settings.clone(), last).await;
    let events: i64 = sqlx::query_scalar("select count(*) from stored_event").fetch_one(&pool).await.unwrap();
    println!(
        "projected {events} events in {:.1} s: {:.0} events/s",
        elapsed.as_secs_f64(),
        events as f64 / elapsed.as_secs_f64()
    );
    for (table, rows) in sqlx::query_as::<_, (String, i64)>(
        "select relname::text, n_live_tup from pg_stat_user_tables where schemaname = 'projection' order by 2 desc limit 12",
    )
    .fetch_all(&pool)
    .await
    .unwrap()
    {
        println!("{table:<24} {rows:>10}");
    }
    for (kind, rows) in
        sqlx::query_as::<_, (String, i64)>("select kind, count(*) from alert group by 1 order by 2 desc")
            .fetch_all(&pool)
            .await
            .unwrap()
    {
        println!("alert {kind:<28} {rows:>10}");
    }
    if reconfigure {
        let configured = tests::fixtures::configured("profile-reconfigured", &chrono::Utc::now().to_rfc3339(), 20);
        let at = post(&client, &url, json!([configured])).await;
        let queued: i64 = sqlx::query_scalar("select count(*) from child_status where council = $1")
            .bind(events::examples::COUNCIL)
            .fetch_one(&pool)
            .await
            .unwrap();
        let elapsed = tests::projector::run_until(&nats.url(), &pool, settings, at).await;
        println!(
            "folded the council's {queued} children again in {:.1} s: {:.0} children/s",
            elapsed.as_secs_f64(),
            queued as f64 / elapsed.as_secs_f64()
        );
    }
    if shares > 0 {
        for n in [1, shares] {
            rebuild_in_shares(&deployment, &nats.url(), clean.url(), &pool, n).await;
        }
    }
}

/// Rebuilds `database_url`'s read models with `n` `safeguard rebuild`
/// processes sharing the partitions evenly, and prints the rate and the
/// wait events PostgreSQL's active sessions showed, sampled every 50 ms.
async fn rebuild_in_shares(deployment: &Deployment, nats_url: &str, database_url: &str, pool: &sqlx::PgPool, n: usize) {
    let t = Instant::now();
    let mut running: Vec<_> = (0..n)
        .map(|i| {
            let (from, to) = (i * 32 / n, (i + 1) * 32 / n - 1);
            deployment
                .rebuild_share(nats_url, database_url, &format!("{from}-{to}"), &format!("share-{i}"))
                .spawn()
                .unwrap()
        })
        .collect();
    let mut waits = std::collections::BTreeMap::<String, u64>::new();
    while running.iter_mut().any(|c| c.try_wait().unwrap().is_none()) {
        for (wait, sessions) in sqlx::query_as::<_, (String, i64)>(
            "select coalesce(wait_event_type || ':' || wait_event, 'on CPU') || '  ' || regexp_replace(left(query, 70), '\\s+', ' ', 'g'),
                    count(*) from pg_stat_activity
             where datname = current_database() and state = 'active' and pid <> pg_backend_pid() group by 1",
        )
        .fetch_all(pool)
        .await
        .unwrap()
        {
            *waits.entry(wait).or_default() += sessions as u64;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut events = 0;
    for child in running {
        let output = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{stderr}");
        events += tests::deploy::rebuilt_events(&stderr).unwrap();
        println!(
            "  a `safeguard rebuild` process peaked at {:.1} MiB",
            tests::deploy::rebuilt_peak_mib(&stderr).unwrap()
        );
    }
    let elapsed = t.elapsed().as_secs_f64();
    println!("rebuilt {events} events with {n} process(es) in {elapsed:.1} s: {:.0} events/s", events as f64 / elapsed);
    let samples: u64 = waits.values().sum();
    let mut waits: Vec<_> = waits.into_iter().collect();
    waits.sort_by_key(|(_, count)| std::cmp::Reverse(*count));
    for (wait, count) in waits.into_iter().take(12) {
        println!("  {:>5.1}%  {wait}", 100.0 * count as f64 / samples.max(1) as f64);
    }
    // The switched-in tables are the rebuild's own: how they were read
    // while it ran, and whether their statistics were ever gathered.
    println!("  {:<24} {:>10} {:>14} {:>10}  analysed", "table", "seq scans", "rows seq-read", "idx scans");
    for (table, seq, read, idx, analysed) in sqlx::query_as::<_, (String, i64, i64, i64, bool)>(
        "select relname::text, seq_scan, seq_tup_read, coalesce(idx_scan, 0), last_analyze is not null
           from pg_stat_user_tables where schemaname = 'projection' order by seq_tup_read desc limit 8",
    )
    .fetch_all(pool)
    .await
    .unwrap()
    {
        println!("  {table:<24} {seq:>10} {read:>14} {idx:>10}  {analysed}");
    }
}
