//! Crash test: a real projector process killed with SIGKILL mid-batch, again
//! and again, leaves read models equal to a clean rebuild, with nothing
//! applied twice.

use events::{EventType, examples};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use tests::gateway::{TestGateway, tokens};
use tests::tables::checksum;
use tests::{NatsServer, TestDatabase};

fn child_event(t: EventType, id: &str, child: &str) -> Value {
    let mut e = examples::event(t, id, "2025-01-14T09:30:00Z");
    e["subject"] = json!(child);
    e
}

fn spawn_projector_on(
    nats_url: &str,
    database_url: &str,
    master_key: &std::path::Path,
    listen: &str,
) -> tests::Process {
    tests::projector::spawn_process(nats_url, database_url, master_key, 40, listen, &[])
}

fn spawn_projector(nats_url: &str, database_url: &str, master_key: &std::path::Path) -> tests::Process {
    spawn_projector_on(nats_url, database_url, master_key, "127.0.0.1:0")
}

#[tokio::test]
async fn a_projector_killed_mid_batch_again_and_again_equals_a_clean_rebuild() {
    let nats = NatsServer::start().await;
    let gw = TestGateway::start(&nats.url()).await;
    let mut last = 0;
    for c in 0..6 {
        let child = uuid::Uuid::new_v4().to_string();
        let mut batch = vec![child_event(EventType::ChildRegistered, &format!("c{c}-0"), &child)];
        batch.extend((1..500).map(|i| child_event(EventType::ChildSeen, &format!("c{c}-{i}"), &child)));
        let r = gw.post(tokens::HARINGEY, &Value::Array(batch)).await;
        assert_eq!(r.status, 201, "{}", &r.text[..r.text.len().min(300)]);
        last = r.result(499)["stream_sequence"].as_u64().expect("stream sequence");
    }

    let crashed = TestDatabase::create().await;
    let pool = crashed.pool().await;
    let mut kills = 0;
    let mut previous = 0;
    for round in 0..6u64 {
        if previous >= last {
            break;
        }
        let mut projector = spawn_projector(&nats.url(), crashed.url(), &gw.path("master.key"));
        // Let it get into its work, then kill it without warning.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let at = tests::projector::stored_position(&pool).await;
            if at > previous || at >= last || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // Kill at a different point in each round: mid-fetch, mid-transaction, mid-ack.
        tokio::time::sleep(Duration::from_millis(3 + 5 * round)).await;
        let _ = projector.kill();
        let _ = projector.wait();
        kills += 1;
        previous = tests::projector::stored_position(&pool).await;
    }
    // Small batches and short fuses: the kills land before the end, mid-way
    // through the work, which is what the test is about.
    assert!(kills >= 3, "only {kills} kills landed before the projector finished");
    // A last run to the end, whose metrics show it caught up.
    let listen = format!("127.0.0.1:{}", tests::free_port());
    let mut projector = spawn_projector_on(&nats.url(), crashed.url(), &gw.path("master.key"), &listen);
    let deadline = Instant::now() + Duration::from_secs(60);
    while tests::projector::stored_position(&pool).await < last {
        assert!(Instant::now() < deadline, "the projector did not finish");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let metrics = loop {
        let text = match reqwest::get(format!("http://{listen}/metrics")).await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        if text.contains(&format!("safeguard_projector_position{{projector=\"main\"}} {last}")) {
            break text;
        }
        assert!(Instant::now() < deadline, "the projector's metrics never showed {last}: {text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(metrics.contains("safeguard_projector_lag{projector=\"main\"}"), "{metrics}");
    assert!(metrics.contains("safeguard_projector_dead_letters_total{projector=\"main\"} 0"), "{metrics}");
    let _ = projector.kill();
    let _ = projector.wait();

    // A clean rebuild in another database, by an in-process projector.
    let clean = TestDatabase::create().await;
    let clean_pool = clean.pool().await;
    let client = async_nats::connect(nats.url()).await.expect("connect");
    let nats_args = platform::config::NatsArgs::for_url(&nats.url());
    let keys =
        safeguard::roles::projector::keys(&async_nats::jetstream::new(client), &nats_args, &gw.path("master.key"))
            .await
            .expect("keys");
    let signers = tests::projector::signers_beside(&gw.path("master.key")).await;
    let settings = projections::runtime::Settings {
        name: "clean".into(),
        keys: Some(keys),
        ..projections::runtime::Settings::new(signers)
    };
    tests::projector::run_until(&nats.url(), &clean_pool, settings, last).await;

    let n: i64 = sqlx::query_scalar("select count(*) from stored_event").fetch_one(&pool).await.expect("count");
    assert_eq!(n, 3000, "every event exactly once");
    for (table, order) in tests::tables::read_models() {
        assert_eq!(checksum(&pool, table, order).await, checksum(&clean_pool, table, order).await, "{table} differs");
    }
    assert_eq!(tests::tables::count(&pool, "sighting").await, 6 * 499, "every sighting once");
    assert_eq!(tests::tables::count(&pool, "child_identifier").await, 6, "every child's NHS number indexed");
}
