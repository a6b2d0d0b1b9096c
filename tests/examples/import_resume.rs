//! Seed and import rates, and an import interrupted and resumed: a
//! measurement, not a test.
//!
//! `cargo build --release -p safeguard && cargo run --release -p tests --example import_resume -- [EVENTS]`
//!
//! 1. Generates about EVENTS events (default 1,000,000) with `safeguard
//!    seed`'s generator and writes them as NDJSON: the seed rate.
//! 2. Starts a real NATS (sync_interval: always) and gateway, runs the
//!    release `safeguard import FILE`, kills it (SIGKILL) once a third of the
//!    file is stored, and runs it again to the end: the import rate of each
//!    run, and then a check that the stream holds every event of the file
//!    exactly once (event and id-index messages both equal to the file's
//!    events, every id once).

#![allow(clippy::print_stdout)] // printing the figures is the point

use std::collections::HashSet;
use std::io::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tests::NatsServer;
use tests::gateway::{TestGateway, tokens};

fn progress(file: &std::path::Path) -> u64 {
    std::fs::read_to_string(format!("{}.progress", file.display()))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|p| p["lines_done"].as_u64())
        .unwrap_or(0)
}

#[tokio::main]
async fn main() {
    let target: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(1_000_000);
    let until = chrono::NaiveDate::from_ymd_opt(2026, 3, 31).expect("date");
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("history.ndjson");

    let started = Instant::now();
    // About 21 events per seeded child.
    let per_council = (target / 8 / 21).max(10);
    let groups = safeguard::cli::seed::generate(3, 8, per_council, until).expect("seed");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&file).expect("create"));
    let mut ids = HashSet::new();
    for event in groups.iter().flatten() {
        ids.insert(event["id"].as_str().expect("id").to_owned());
        serde_json::to_writer(&mut out, event).expect("write");
        out.write_all(b"\n").expect("write");
    }
    out.flush().expect("flush");
    drop(out);
    let events = ids.len();
    let seed_secs = started.elapsed().as_secs_f64();
    println!(
        "seed: {events} events ({} children) generated and written as NDJSON in {seed_secs:.1} s, {:.0} events/s",
        per_council * 8,
        events as f64 / seed_secs
    );

    let nats = NatsServer::start().await;
    let gateway = Arc::new(TestGateway::start(&nats.url()).await);
    let binary = tests::workspace_root().join("target/release/safeguard");
    assert!(binary.exists(), "build the release binary first: cargo build --release -p safeguard");
    let import = || {
        let mut command = tokio::process::Command::new(&binary);
        command
            .arg("import")
            .arg(&file)
            .env("SAFEGUARD_URL", gateway.url(""))
            .env("SAFEGUARD_TOKEN", tokens::ADMIN)
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true);
        command
    };

    let total_lines = events as u64;
    let t = Instant::now();
    let mut first = import().spawn().expect("spawn");
    while progress(&file) < total_lines / 3 {
        assert!(first.try_wait().expect("poll").is_none(), "the import ended before it could be interrupted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.start_kill().expect("kill");
    let _ = first.wait().await;
    let killed_at = progress(&file);
    let first_secs = t.elapsed().as_secs_f64();
    println!(
        "import, first run: killed with SIGKILL after {first_secs:.1} s with {killed_at} lines recorded as stored ({:.0} events/s)",
        killed_at as f64 / first_secs
    );

    let t = Instant::now();
    let second = import().status().await.expect("run");
    assert!(second.success(), "the resumed import failed");
    let second_secs = t.elapsed().as_secs_f64();
    println!(
        "import, resumed: the remaining {} lines in {second_secs:.1} s ({:.0} events/s)",
        total_lines - killed_at,
        (total_lines - killed_at) as f64 / second_secs
    );

    // Every event of the file exactly once.
    let js = async_nats::jetstream::new(nats.client().await);
    let stream = js.get_stream(platform::bus::EVENTS_STREAM).await.expect("stream");
    let stored = projections::leader::count_matching(&stream, events::subjects::EVENTS_FILTER).await.expect("count");
    let indexed = projections::leader::count_matching(&stream, events::subjects::IDS_FILTER).await.expect("count");
    let mut seen = HashSet::with_capacity(events);
    let mut messages = platform::bus::read_ordered(&stream, events::subjects::EVENTS_FILTER, 1).await.expect("read");
    use futures::StreamExt as _;
    for _ in 0..stored {
        let message = messages.next().await.expect("a message").expect("a message");
        let doc: serde_json::Value = serde_json::from_slice(&message.payload).expect("json");
        assert!(seen.insert(doc["id"].as_str().expect("id").to_owned()), "an event stored twice");
    }
    assert_eq!(stored as usize, events, "every event stored");
    assert_eq!(indexed as usize, events, "one id-index entry per event");
    assert_eq!(seen, ids, "exactly the file's events");
    println!("stream: {stored} events and {indexed} id-index entries; every id of the file exactly once");
}
