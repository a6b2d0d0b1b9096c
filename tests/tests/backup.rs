//! The backup and restore runbook, run as an operator runs it: `ops/backup`
//! against a live deployment, `ops/restore` into an empty NATS and an empty
//! database, then the same keys carry on. Everything the old deployment
//! held comes back exactly: stream sequences, the id index, the audit
//! stream, wrapped keys (an erased child stays erased), and read models.

use events::{EventType, examples};
use serde_json::{Value, json};
use std::process::Command;
use tests::gateway::{TestGateway, tokens};
use tests::projector::LiveProjector;
use tests::tables::checksum;
use tests::{NatsServer, TestDatabase, safeguard_binary, workspace_root};

async fn messages(url: &str, stream: &str) -> Vec<(u64, String, Vec<u8>)> {
    let js = async_nats::jetstream::new(tests::connect(url).await);
    let mut s = js.get_stream(stream).await.expect("stream");
    let info = s.info().await.expect("info").clone();
    let mut out = Vec::new();
    for seq in info.state.first_sequence..=info.state.last_sequence {
        if let Ok(m) = s.get_raw_message(seq).await {
            out.push((m.sequence, m.subject.to_string(), m.payload.to_vec()));
        }
    }
    out
}

fn run(script: &str, dir: &std::path::Path, nats_url: &str, database_url: &str) {
    let out = Command::new(workspace_root().join("ops").join(script))
        .arg(dir)
        .env("NATS_URL", nats_url)
        // libpq's tools take no sqlx-only parameters.
        .env("DATABASE_URL", database_url.split('?').next().unwrap_or(database_url))
        .env("SAFEGUARD_BIN", safeguard_binary())
        .env("RUST_LOG", "warn")
        .output()
        .expect("run the script");
    assert!(out.status.success(), "ops/{script} failed: {}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_restored_into_an_empty_nats_and_database_carries_on_exactly() {
    let old_nats = NatsServer::start().await;
    let gateway = TestGateway::start(&old_nats.url()).await;
    let old_db = TestDatabase::create().await;
    let old_pool = old_db.pool().await;
    let projector = LiveProjector::start_for(&gateway, &old_nats.url(), &old_pool).await;

    let kept = uuid::Uuid::new_v4().to_string();
    let erased = uuid::Uuid::new_v4().to_string();
    let mut last = 0;
    for child in [&kept, &erased] {
        let mut concern = examples::event(EventType::ConcernRaised, &format!("c-{child}"), "2025-01-15T09:30:00Z");
        concern["subject"] = json!(child);
        let batch = Value::Array(vec![tests::fixtures::registered(&format!("r-{child}"), child, "E09000014"), concern]);
        let r = gateway.post(tokens::HARINGEY, &batch).await;
        assert_eq!(r.status, 201, "{}", r.text);
        last = r.result(1)["stream_sequence"].as_u64().expect("sequence");
    }
    let r = gateway.erase(tokens::ADMIN, &erased, &[("x-purpose", "retention_ended")]).await;
    assert_eq!(r.status, 200, "{}", r.text);
    projector.wait_for(last).await;
    projector.wait_for_audit().await;

    let dir = tempfile::tempdir().expect("dir");
    let backup = dir.path().join("backup");
    run("backup", &backup, &old_nats.url(), old_db.url());
    assert!(backup.join("readmodels.dump").exists() && backup.join("SHA256SUMS").exists());
    // A backup holds children's sealed personal data and the wrapped keys:
    // nobody but its owner may read any of it (issue 17 item 11).
    let mut open_to_others = Vec::new();
    let mut pending = vec![backup.clone()];
    while let Some(path) = pending.pop() {
        let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&path).expect("metadata").permissions());
        if mode & 0o077 != 0 {
            open_to_others.push(format!("{} {:o}", path.display(), mode & 0o777));
        }
        if path.is_dir() {
            pending.extend(std::fs::read_dir(&path).expect("read dir").map(|e| e.expect("entry").path()));
        }
    }
    assert!(open_to_others.is_empty(), "readable by others: {open_to_others:#?}");

    let new_nats = NatsServer::start().await;
    let new_db = TestDatabase::create().await;
    run("restore", &backup, &new_nats.url(), new_db.url());
    let new_pool = new_db.pool().await;

    // The streams, message for message, at the same sequences; the keys, value for value.
    for stream in [platform::bus::EVENTS_STREAM, platform::bus::AUDIT_STREAM] {
        assert_eq!(messages(&new_nats.url(), stream).await, messages(&old_nats.url(), stream).await, "{stream}");
    }
    let children = [kept.clone(), erased.clone()];
    let (old_keys, new_keys) = (keys(&old_nats.url(), &children).await, keys(&new_nats.url(), &children).await);
    assert_eq!(old_keys, new_keys);
    assert_eq!(new_keys[1].as_deref(), Some(&b"erased"[..]), "the erased child stays erased");
    assert!(new_keys[0].as_ref().is_some_and(|k| k != b"erased"), "the kept child's key is there");
    // The read models, table for table.
    for (table, order) in tests::tables::read_models() {
        assert_eq!(checksum(&new_pool, table, order).await, checksum(&old_pool, table, order).await, "{table}");
    }
    for table in ["audit.access_event", "audit.erased_child"] {
        assert_eq!(
            tests::tables::count(&new_pool, table).await,
            tests::tables::count(&old_pool, table).await,
            "{table}"
        );
    }

    // The same keys carry on: a new event extends the kept child's chain,
    // the projector resumes from the restored position, and all verifies.
    let new_gateway = gateway.sibling_on(&new_nats.url()).await;
    let mut seen = examples::event(EventType::ChildSeen, "after-restore", "2025-02-01T10:00:00Z");
    seen["subject"] = json!(kept);
    let r = new_gateway.post(tokens::HARINGEY, &seen).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.result(0)["sequence"], 3, "the chain continues where it was");
    let next = r.result(0)["stream_sequence"].as_u64().expect("sequence");
    let resumed = LiveProjector::start_for(&new_gateway, &new_nats.url(), &new_pool).await;
    resumed.wait_for(next).await;
    assert_eq!(
        tests::tables::count(&new_pool, "stored_event").await,
        tests::tables::count(&old_pool, "stored_event").await + 1
    );
    let js = async_nats::jetstream::new(tests::connect(&new_nats.url()).await);
    let report = query::verify::verify(&js, Some(&new_pool), &[gateway.verifying_key()], None).await.expect("verify");
    assert!(report.ok, "{:?}", report.breaks);
}

/// The key bucket's values for `children`.
async fn keys(url: &str, children: &[String]) -> Vec<Option<Vec<u8>>> {
    let js = async_nats::jetstream::new(tests::connect(url).await);
    let bucket = js.get_key_value(platform::bus::KEYS_BUCKET).await.expect("bucket");
    let mut out = Vec::new();
    for child in children {
        out.push(bucket.get(child.as_str()).await.expect("get").map(|v| v.to_vec()));
    }
    out
}
