//! The Python publisher of `clients/python` (built on the official
//! CloudEvents SDK, installed into `.venv` by `ops/test`) against a real
//! gateway and NATS: its own tests (structured, binary and batch modes, a
//! repeated id, refusals naming their field, the outbox), and the outbox
//! through a real outage: the gateway answers 503 while NATS is down, the
//! outbox keeps the events, and sending them again with the same ids
//! stores each once.

use serde_json::json;
use std::path::PathBuf;
use std::process::{Command, Output};
use tests::NatsServer;
use tests::gateway::{TestGateway, tokens};

fn python() -> PathBuf {
    tests::workspace_root().join(".venv/bin/python")
}

/// Runs the Python `args` against `gateway` as Haringey's publisher, leaving nothing behind.
fn run_python(gateway: &TestGateway, args: &[&str]) -> Output {
    let client = tests::workspace_root().join("clients/python");
    Command::new(python())
        .args(args)
        .current_dir(&client)
        .env("PYTHONPATH", &client)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("SAFEGUARD_GATEWAY_URL", gateway.url(""))
        .env("SAFEGUARD_TOKEN", tokens::HARINGEY)
        .env("SAFEGUARD_SOURCE", "haringey-csc")
        .output()
        .expect("the virtual environment's python (ops/test makes it)")
}

fn said(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_publisher_passes_its_tests_against_a_real_gateway() {
    let nats = NatsServer::start().await;
    let gateway = TestGateway::start(&nats.url()).await;
    let out = tokio::task::spawn_blocking(move || {
        let out = run_python(&gateway, &["-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"]);
        drop(gateway);
        out
    })
    .await
    .expect("pytest");
    assert!(out.status.success(), "the Python publisher's tests failed:\n{}", said(&out));
    assert!(said(&out).contains("4 passed"), "{}", said(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_outbox_sends_the_same_events_again_after_a_503_and_each_is_stored_once() {
    let mut nats = NatsServer::start().await;
    let gateway = TestGateway::start(&nats.url()).await;
    let dir = tempfile::tempdir().expect("a directory");
    let outbox = dir.path().join("outbox.db");
    let outbox = outbox.to_str().expect("a path");
    let child = uuid::Uuid::new_v4().to_string();
    let mut ids = Vec::new();
    for (i, t) in [events::EventType::ChildRegistered, events::EventType::ChildSeen].into_iter().enumerate() {
        let mut e = events::examples::event(t, &format!("outbox-{i}-{child}"), "2025-01-14T09:30:00Z");
        e["subject"] = json!(child);
        e["source"] = json!("haringey-csc");
        let path = dir.path().join(format!("{i}.json"));
        std::fs::write(&path, e.to_string()).expect("write");
        let out = run_python(&gateway, &["examples/outbox.py", outbox, "add", path.to_str().expect("a path")]);
        assert!(out.status.success(), "{}", said(&out));
        ids.push(format!("outbox-{i}-{child}"));
    }

    // NATS is down: the gateway answers 503, and the events wait.
    nats.stop();
    let out = run_python(&gateway, &["examples/outbox.py", outbox, "flush"]);
    assert_eq!(out.status.code(), Some(75), "{}", said(&out));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).expect("a summary");
    assert_eq!((summary["stored"].as_u64(), summary["waiting"].as_u64()), (Some(0), Some(2)), "{summary}");
    assert!(summary["unavailable"].is_string(), "{summary}");

    // Back up: the same events, with the same ids, are stored, once.
    nats.restart().await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let out = run_python(&gateway, &["examples/outbox.py", outbox, "flush"]);
        if out.status.success() {
            let summary: serde_json::Value = serde_json::from_slice(&out.stdout).expect("a summary");
            assert_eq!(summary["waiting"], 0, "{summary}");
            break;
        }
        assert_eq!(out.status.code(), Some(75), "only unavailability may hold events back: {}", said(&out));
        assert!(std::time::Instant::now() < deadline, "the gateway did not come back: {}", said(&out));
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let stored: Vec<String> = tests::gateway::stream_messages(&nats.url())
        .await
        .into_iter()
        .filter(|(subject, _)| subject.starts_with("sg.ev."))
        .filter_map(|(_, m)| serde_json::from_slice::<serde_json::Value>(&m).ok())
        .filter_map(|doc| doc["id"].as_str().map(str::to_owned))
        .filter(|id| ids.contains(id))
        .collect();
    let mut sorted = stored.clone();
    sorted.sort();
    assert_eq!(sorted, ids, "each event stored once: {stored:?}");
}
