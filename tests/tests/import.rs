//! `safeguard import`: a real process importing an NDJSON file through a
//! real gateway, killed part-way and run again.

use serde_json::{Value, json};
use std::collections::HashSet;
use std::io::Write as _;
use std::time::{Duration, Instant};
use tests::NatsServer;
use tests::gateway::{TestGateway, tokens};

/// Every stored event (not id-index message) on the event stream.
async fn stored_events(nats: &NatsServer) -> Vec<Value> {
    let js = async_nats::jetstream::new(nats.client().await);
    let mut stream = js.get_stream(platform::bus::EVENTS_STREAM).await.expect("event stream");
    let last = stream.info().await.expect("info").state.last_sequence;
    let mut out = Vec::new();
    for seq in 1..=last {
        let message = stream.get_raw_message(seq).await.expect("message");
        if message.subject.starts_with("sg.ev.") {
            out.push(serde_json::from_slice(&message.payload).expect("json"));
        }
    }
    out
}

fn import(file: &std::path::Path, gateway: &TestGateway, extra: &[&str]) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(tests::safeguard_binary());
    command
        .arg("import")
        .arg(file)
        .args(extra)
        .env("SAFEGUARD_URL", gateway.url(""))
        .env("SAFEGUARD_TOKEN", tokens::ADMIN)
        .env("RUST_LOG", "warn")
        .kill_on_drop(true);
    command
}

fn progress(file: &std::path::Path) -> u64 {
    let path = format!("{}.progress", file.display());
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        .and_then(|p| p["lines_done"].as_u64())
        .unwrap_or(0)
}

// Multi-threaded: the import runs as a child process while this runtime serves it the gateway.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_killed_part_way_and_run_again_stores_every_event_exactly_once() {
    let nats = NatsServer::start().await;
    let gateway = TestGateway::start(&nats.url()).await;
    let until = chrono::NaiveDate::from_ymd_opt(2025, 3, 31).expect("date");
    let groups = safeguard::cli::seed::generate(11, 2, 150, until).expect("seed");
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("legacy.ndjson");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&file).expect("create"));
    let mut lines = 0u64;
    let mut ids = HashSet::new();
    for (i, event) in groups.iter().flatten().enumerate() {
        let mut event = event.clone();
        // A legacy system's own recording times are kept.
        if i % 50 == 0 {
            let time = event["time"].as_str().expect("time").to_owned();
            event["recordedat"] = json!(time);
        }
        ids.insert(event["id"].as_str().expect("id").to_owned());
        serde_json::to_writer(&mut out, &event).expect("write");
        out.write_all(b"\n").expect("write");
        lines += 1;
        if i % 400 == 0 {
            out.write_all(b"\n").expect("a blank line is skipped");
            lines += 1;
        }
    }
    out.flush().expect("flush");
    drop(out);
    let events = ids.len();

    // First run: killed once some batches are stored.
    let mut first = import(&file, &gateway, &["--batch", "50", "--concurrency", "3"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(120);
    while progress(&file) == 0 {
        assert!(first.try_wait().expect("poll").is_none(), "the import finished before it could be interrupted");
        assert!(Instant::now() < deadline, "no progress");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    first.start_kill().expect("kill");
    let _ = first.wait().await;
    let interrupted_at = progress(&file);
    assert!(interrupted_at < lines, "killed part-way: {interrupted_at} of {lines}");
    let part = stored_events(&nats).await.len();
    assert!(part > 0 && part < events, "{part} of {events} stored before the kill");

    // Second run: resumes and finishes.
    let second = import(&file, &gateway, &["--batch", "50", "--concurrency", "3"]).output().await.expect("run");
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(second.status.success(), "{stderr}");
    assert!(stderr.contains(&format!("resuming after line {interrupted_at}")), "{stderr}");
    assert_eq!(progress(&file), lines);

    // Every event exactly once, in file order within each subject, with legacy recording times kept.
    let stored = stored_events(&nats).await;
    assert_eq!(stored.len(), events);
    let stored_ids: HashSet<String> = stored.iter().map(|e| e["id"].as_str().expect("id").to_owned()).collect();
    assert_eq!(stored_ids, ids);
    let source: Vec<&Value> = groups.iter().flatten().collect();
    for (i, original) in source.iter().enumerate().filter(|(i, _)| i % 50 == 0) {
        let kept = stored.iter().find(|e| e["id"] == original["id"]).expect("stored");
        assert_eq!(kept["recordedat"], original["time"], "event {i}");
    }
    for group in &groups {
        let sequences: Vec<u64> = group
            .iter()
            .map(|e| stored.iter().find(|s| s["id"] == e["id"]).and_then(|s| s["sequence"].as_u64()).expect("seq"))
            .collect();
        assert!(sequences.windows(2).all(|w| w[0] < w[1]), "a subject's events in file order: {sequences:?}");
    }

    // A third run has nothing left to do; from the start, everything is a duplicate.
    let again = import(&file, &gateway, &["--from-start"]).output().await.expect("run");
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(again.status.success(), "{stderr}");
    assert!(stderr.contains(&format!("0 events stored, {events} already stored")), "{stderr}");
    assert_eq!(stored_events(&nats).await.len(), events);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_line_is_named_and_nothing_of_its_batch_is_stored() {
    let nats = NatsServer::start().await;
    let gateway = TestGateway::start(&nats.url()).await;
    let child = uuid::Uuid::new_v4().to_string();
    let event = |id: &str, t: &str, data: Value| json!({"specversion": "1.0", "id": id, "type": t, "subject": child, "time": "2024-01-02T10:00:00Z", "data": data});
    let good = event(
        "reg",
        "child.registered",
        json!({"council": "E09000014", "la_child_id": "A1", "sex": "F", "birth_date": "2019-03-04"}),
    );
    let bad = event("ref", "referral.received", json!({"referral_id": "R1", "source": "99", "nfa": false}));
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("bad.ndjson");
    std::fs::write(&file, format!("{good}\n{bad}\n")).expect("write");

    let run = import(&file, &gateway, &["--batch", "1"]).output().await.expect("run");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success());
    assert!(stderr.contains("line 2 /data/source"), "{stderr}");
    assert_eq!(stored_events(&nats).await.len(), 1, "the good line before it is stored");
    assert_eq!(progress(&file), 1);

    // Fixed (a changed file starts from its first line), the import completes; line 1 is not stored twice.
    let fixed = event("ref", "referral.received", json!({"referral_id": "R1", "source": "6", "nfa": false}));
    std::fs::write(&file, format!("{good}\n{fixed}\n")).expect("write");
    let run = import(&file, &gateway, &[]).output().await.expect("run");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    assert!(stderr.contains("1 events stored, 1 already stored"), "{stderr}");
    assert_eq!(stored_events(&nats).await.len(), 2);
}
