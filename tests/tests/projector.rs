//! The projector against real JetStream and PostgreSQL: every stored event
//! copied once, the chronology written from codes only, undecodable messages
//! kept, and a second run applying nothing twice.

use events::{EventType, examples};
use serde_json::{Value, json};
use sqlx::PgPool;
use std::sync::Arc;
use tests::gateway::{TestGateway, stream_count, tokens};
use tests::{NatsServer, TestDatabase};

fn child_event(t: EventType, id: &str, child: &str) -> Value {
    let mut e = examples::event(t, id, "2025-01-14T09:30:00Z");
    e["subject"] = json!(child);
    e
}

async fn project_until(gateway: &TestGateway, nats_url: &str, pool: &PgPool, target: u64) {
    let signers = tests::projector::signers_beside(&gateway.path("master.key")).await;
    tests::projector::run_until(nats_url, pool, projections::runtime::Settings::new(signers), target).await;
}

/// `n` children of Haringey, each referred and with an assessment under way.
fn referred_and_assessed(n: usize) -> Vec<Value> {
    (0..n)
        .flat_map(|i| {
            let child = uuid::Uuid::new_v4().to_string();
            [
                tests::fixtures::registered(&format!("reg-{i}"), &child, "E09000014"),
                child_event(EventType::ReferralReceived, &format!("ref-{i}"), &child),
                child_event(EventType::AssessmentStarted, &format!("asm-{i}"), &child),
            ]
        })
        .collect()
}

async fn count(pool: &PgPool, table: &str) -> i64 {
    sqlx::query_scalar(&format!("select count(*) from {table}")).fetch_one(pool).await.expect("count")
}

#[tokio::test]
async fn every_event_is_copied_once_and_a_rerun_applies_nothing_twice() {
    let nats = NatsServer::start().await;
    let gw = TestGateway::start(&nats.url()).await;
    let db = TestDatabase::create().await;
    let pool = db.pool().await;

    let mut expected_child_events = 0;
    for c in 0..20 {
        let child = uuid::Uuid::new_v4().to_string();
        let mut batch = vec![child_event(EventType::ChildRegistered, &format!("r-{c}"), &child)];
        for (i, t) in
            [EventType::ContactRecorded, EventType::ReferralReceived, EventType::ChildSeen, EventType::ConcernRaised]
                .into_iter()
                .enumerate()
        {
            batch.push(child_event(t, &format!("e-{c}-{i}"), &child));
        }
        expected_child_events += batch.len() as i64;
        let r = gw.post(tokens::HARINGEY, &Value::Array(batch)).await;
        assert_eq!(r.status, 201, "{}", r.text);
    }
    let r = gw.post(tokens::ADMIN, &examples::event(EventType::WorkerJoined, "w-1", "2025-01-14T09:30:00Z")).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let last = r.result(0)["stream_sequence"].as_u64().expect("stream sequence");

    project_until(&gw, &nats.url(), &pool, last).await;
    assert_eq!(count(&pool, "stored_event").await, expected_child_events + 1);
    assert_eq!(count(&pool, "chronology_entry").await, expected_child_events);
    assert_eq!(count(&pool, "dead_letter").await, 0);

    // The Postgres copy is the stream's, byte for byte in canonical form.
    let messages = tests::gateway::stream_messages(&nats.url()).await;
    let stream_events: Vec<Vec<u8>> =
        messages.into_iter().filter(|(s, _)| s.starts_with("sg.ev.")).map(|(_, p)| p).collect();
    let copies: Vec<Value> = sqlx::query_scalar("select document from stored_event order by stream_seq")
        .fetch_all(&pool)
        .await
        .expect("copies");
    let copies: Vec<Vec<u8>> = copies.iter().map(|v| serde_json::to_vec(v).expect("json")).collect();
    let a: Vec<&[u8]> = stream_events.iter().map(Vec::as_slice).collect();
    let b: Vec<&[u8]> = copies.iter().map(Vec::as_slice).collect();
    assert_eq!(events::chain::compare_copies("all", &a, &b), vec![]);

    // Nothing personal in the chronology.
    let summaries: Vec<String> =
        sqlx::query_scalar("select summary from chronology_entry").fetch_all(&pool).await.expect("summaries");
    assert!(summaries.iter().any(|s| s.starts_with("Referral R-4411 from police (6)")));
    for s in &summaries {
        assert!(!s.contains("Sam") && !s.contains("bruising") && !s.contains("hungry"), "{s}");
    }

    // A second run starts from the stored position and applies nothing.
    project_until(&gw, &nats.url(), &pool, last).await;
    assert_eq!(count(&pool, "stored_event").await, expected_child_events + 1);
    assert_eq!(count(&pool, "chronology_entry").await, expected_child_events);

    // And when the recorded position is behind what the read models hold
    // (as a rebuild's switch can leave a live batch), every message is
    // redelivered: each is known by its stream sequence and dropped, not
    // taken for a break in its child's chain and dead-lettered.
    sqlx::query("update projector_position set stream_seq = 0").execute(&pool).await.expect("rewind");
    project_until(&gw, &nats.url(), &pool, last).await;
    assert_eq!(count(&pool, "dead_letter").await, 0);
    assert_eq!(count(&pool, "stored_event").await, expected_child_events + 1);
    assert_eq!(count(&pool, "chronology_entry").await, expected_child_events);
}

#[tokio::test]
async fn an_undecodable_message_is_kept_as_a_dead_letter_and_the_rest_flows_on() {
    let nats = NatsServer::start().await;
    let gw = TestGateway::start(&nats.url()).await;
    let db = TestDatabase::create().await;
    let pool = db.pool().await;
    let child = uuid::Uuid::new_v4().to_string();
    let r = gw.post(tokens::HARINGEY, &child_event(EventType::ChildRegistered, "d-1", &child)).await;
    assert_eq!(r.status, 201, "{}", r.text);
    // Something that is not a stored event, written behind the gateway's back.
    let js = async_nats::jetstream::new(nats.client().await);
    js.publish(format!("sg.ev.00.child.{}", uuid::Uuid::new_v4()), "not an event".into())
        .await
        .expect("publish")
        .await
        .expect("ack");
    let r = gw.post(tokens::HARINGEY, &child_event(EventType::ChildSeen, "d-2", &child)).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let last = r.result(0)["stream_sequence"].as_u64().expect("stream sequence");
    assert!(stream_count(&nats.url()).await >= last);

    project_until(&gw, &nats.url(), &pool, last).await;
    let (reason, payload): (String, Vec<u8>) =
        sqlx::query_as("select reason, payload from dead_letter").fetch_one(&pool).await.expect("one dead letter");
    assert!(!reason.is_empty());
    assert_eq!(payload, b"not an event");
    assert_eq!(count(&pool, "stored_event").await, 2);
}

fn at(event: Value, time: &str) -> Value {
    let mut e = event;
    e["time"] = json!(time);
    e
}

#[tokio::test]
async fn the_chronology_is_in_business_order_with_amendments_as_known_at_the_time() {
    let nats = NatsServer::start().await;
    let gw = TestGateway::start(&nats.url()).await;
    let db = TestDatabase::create().await;
    let pool = db.pool().await;
    let child = uuid::Uuid::new_v4().to_string();
    let first = json!([
        at(child_event(EventType::ChildRegistered, "k-reg", &child), "2025-01-10T10:00:00Z"),
        at(child_event(EventType::ReferralReceived, "k-ref", &child), "2025-01-14T09:30:00Z"),
        at(child_event(EventType::ChildSeen, "k-seen", &child), "2025-01-20T15:00:00Z"),
        // Recorded last, happened first after registration: a late fact.
        at(child_event(EventType::ContactRecorded, "k-contact", &child), "2025-01-12T08:00:00Z"),
    ]);
    let r = gw.post(tokens::HARINGEY, &first).await;
    assert_eq!(r.status, 201, "{}", r.text);
    // The moment the first batch was recorded: the amendments come after it.
    let before_amendments: chrono::DateTime<chrono::Utc> =
        r.result(3)["recorded_at"].as_str().expect("recorded_at").parse().expect("time");
    let mut correction = child_event(EventType::RecordCorrected, "k-fix", &child);
    correction["data"]["corrects"] = json!("k-ref");
    let mut retraction = child_event(EventType::RecordRetracted, "k-undo", &child);
    retraction["data"]["retracts"] = json!("k-seen");
    let r = gw.post(tokens::HARINGEY, &json!([correction, retraction])).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let last = r.result(1)["stream_sequence"].as_u64().expect("stream sequence");
    project_until(&gw, &nats.url(), &pool, last).await;

    let read = |as_of| {
        let q = projections::chronology::Query {
            child: child.parse().expect("uuid"),
            as_of,
            from: None,
            to: None,
            limit: 100,
            after: None,
        };
        let pool = pool.clone();
        async move { projections::chronology::read(&pool, &q).await.expect("read") }
    };
    let now = read(chrono::Utc::now()).await;
    let ids: Vec<&str> = now.iter().map(|e| e.id.as_str()).collect();
    // The amendments happened (business time) on 14 January, before the sighting.
    assert_eq!(ids, ["k-reg", "k-contact", "k-ref", "k-fix", "k-undo", "k-seen"]);
    let status: Vec<(&str, &str, Option<&str>, Option<&str>)> = now
        .iter()
        .map(|e| {
            (
                e.id.as_str(),
                e.status.as_str(),
                e.corrected_by.as_ref().map(events::ids::EventId::as_str),
                e.retracted_by.as_ref().map(events::ids::EventId::as_str),
            )
        })
        .collect();
    assert_eq!(status[2], ("k-ref", "corrected", Some("k-fix"), None));
    assert_eq!(status[5], ("k-seen", "retracted", None, Some("k-undo")));
    assert_eq!(status[1], ("k-contact", "current", None, None));

    // As known before the amendments were recorded.
    let then = read(before_amendments).await;
    let then: Vec<(&str, &str)> = then.iter().map(|e| (e.id.as_str(), e.status.as_str())).collect();
    assert_eq!(then, [("k-reg", "current"), ("k-contact", "current"), ("k-ref", "current"), ("k-seen", "current")]);
}

#[tokio::test]
async fn the_projector_rides_out_a_nats_restart_and_a_database_outage() {
    let mut nats = NatsServer::start().await;
    let gw = TestGateway::start(&nats.url()).await;
    let pg = tests::PgCluster::start().await;
    let db = TestDatabase::create_on(&pg.admin_url()).await;
    let pool = db.pool().await;
    let projector = tests::projector::LiveProjector::start(&gw, &nats.url(), &pool).await;

    let child = uuid::Uuid::new_v4().to_string();
    let publish = async |id: &str, t: EventType| -> u64 {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let r = gw.post(tokens::HARINGEY, &child_event(t, id, &child)).await;
            if r.status == 201 {
                return r.result(0)["stream_sequence"].as_u64().expect("stream sequence");
            }
            assert!(std::time::Instant::now() < deadline, "the gateway never stored {id}: {}", r.text);
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    };
    let first = publish("r-1", EventType::ChildRegistered).await;
    projector.wait_for(first).await;

    // NATS restarts under the projector: it reconnects and carries on.
    nats.restart().await;
    let second = publish("s-1", EventType::ChildSeen).await;
    projector.wait_for(second).await;

    // PostgreSQL is killed and comes back: the projector retries from what was committed.
    pg.kill();
    let third = publish("s-2", EventType::ChildSeen).await;
    // Keep PostgreSQL down until the projector has failed to apply the new event at least once.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while projector.interruptions() == 0 {
        assert!(std::time::Instant::now() < deadline, "the projector never noticed the outage");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    pg.start_again().await;
    projector.wait_for(third).await;

    assert_eq!(count(&pool, "stored_event").await, 3);
    assert_eq!(count(&pool, "sighting").await, 2);
}

fn spawn_partitioned(
    nats_url: &str,
    database_url: &str,
    gateway: &TestGateway,
    name: &str,
    partitions: &str,
) -> tests::Process {
    let extra = ["--projector-name", name, "--partitions", partitions];
    tests::projector::spawn_process(nats_url, database_url, &gateway.path("master.key"), 50, "127.0.0.1:0", &extra)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_partitioned_projectors_sharing_a_database_equal_one_clean_rebuild() {
    let nats = NatsServer::start().await;
    let gateway = Arc::new(TestGateway::start(&nats.url()).await);
    let db = TestDatabase::create().await;
    let pool = db.pool().await;
    let mut low = spawn_partitioned(&nats.url(), db.url(), &gateway, "low", "0-15");
    let mut high = spawn_partitioned(&nats.url(), db.url(), &gateway, "high", "16-31");

    // A seeded population (workers, councils, children: every kind of
    // subject, in every partition) arrives while both apply it; one of
    // them is killed and restarted half-way.
    let until = chrono::NaiveDate::from_ymd_opt(2025, 3, 31).expect("date");
    let groups = safeguard::cli::seed::generate(17, 2, 60, until).expect("seed");
    let events: i64 = groups.iter().map(|g| g.len() as i64).sum();
    let (first, second) = groups.split_at(groups.len() / 2);
    tests::gateway::load_groups(&gateway, first.to_vec()).await;
    let _ = high.kill();
    let _ = high.wait();
    let last = tests::gateway::load_groups(&gateway, second.to_vec()).await;
    let mut high = spawn_partitioned(&nats.url(), db.url(), &gateway, "high", "16-31");

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    // Every event applied, and every child the councils' settings queued folded again.
    loop {
        let (stored, queued) = (count(&pool, "stored_event").await, count(&pool, "refold_pending").await);
        if stored >= events && queued == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the two projectors did not apply every event: {stored} of {events} stored, {queued} children queued"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // Each has its own position; had either applied the other's
    // partitions, its copy of an event would have collided with the other's.
    let names: Vec<String> = sqlx::query_scalar("select projector from projector_position order by projector")
        .fetch_all(&pool)
        .await
        .expect("positions");
    assert_eq!(names, ["high", "low"]);
    // The copy counts as complete up to the least of the two positions, and verifies against the stream.
    let js = async_nats::jetstream::new(tests::connect(&nats.url()).await);
    let report = query::verify::verify(&js, Some(&pool), &[gateway.verifying_key()], None).await.expect("verify");
    assert!(report.ok, "{:?}", report.breaks);
    assert!(report.copy_position.is_some_and(|p| p > 0), "the copy was compared: {:?}", report.copy_position);
    let _ = low.kill();
    let _ = high.kill();
    let _ = low.wait();
    let _ = high.wait();

    let clean = TestDatabase::create().await;
    let clean_pool = clean.pool().await;
    let client = tests::connect(&nats.url()).await;
    let keys = safeguard::roles::projector::keys(
        &async_nats::jetstream::new(client),
        &platform::config::NatsArgs::for_url(&nats.url()),
        &gateway.path("master.key"),
    )
    .await
    .expect("keys");
    let signers = tests::projector::signers_beside(&gateway.path("master.key")).await;
    let settings = projections::runtime::Settings {
        name: "clean".into(),
        keys: Some(keys),
        ..projections::runtime::Settings::new(signers)
    };
    tests::projector::run_until(&nats.url(), &clean_pool, settings, last).await;
    for (table, order) in tests::tables::read_models() {
        assert_eq!(
            tests::tables::checksum(&pool, table, order).await,
            tests::tables::checksum(&clean_pool, table, order).await,
            "{table} differs"
        );
    }
}

/// A pull request whose messages never reach the projector (lost in flight,
/// as when the whole cluster restarts) must not cost those messages: the
/// projector sees its deliveries out of turn, applies nothing of that batch,
/// and starts again from its stored position. Here the lost pulls are made
/// on purpose: requests on the projector's own consumer whose answers go to
/// an inbox whose reader throws them away, queued ahead of the projector's own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_lost_on_the_way_are_noticed_and_nothing_is_skipped() {
    let nats = NatsServer::start().await;
    let gateway = TestGateway::start(&nats.url()).await;
    let db = TestDatabase::create().await;
    let pool = db.pool().await;
    let projector = tests::projector::LiveProjector::start_for(&gateway, &nats.url(), &pool).await;
    let client = tests::connect(&nats.url()).await;
    let js = async_nats::jetstream::new(client.clone());
    let stream = js.get_stream(platform::bus::EVENTS_STREAM).await.expect("stream");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while stream.consumer_info("sg-projector-main").await.is_err() {
        assert!(std::time::Instant::now() < deadline, "the projector made no consumer");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    const LOST: usize = 20;
    // Someone listens (the server answers only pulls with interest) and throws the messages away.
    let _sink = client.subscribe("_INBOX.lost-pulls").await.expect("subscribe");
    let pull = json!({"batch": 1, "expires": 20_000_000_000u64}).to_string();
    for _ in 0..LOST {
        client
            .publish_with_reply(
                "$JS.API.CONSUMER.MSG.NEXT.SG_EVENTS.sg-projector-main",
                "_INBOX.lost-pulls",
                pull.clone().into(),
            )
            .await
            .expect("a pull request");
    }
    client.flush().await.expect("flush");
    // The projector's own pending pull expires within 500 ms and is made again, behind ours.
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;

    let child = uuid::Uuid::new_v4().to_string();
    let mut events = vec![tests::fixtures::registered("lost-reg", &child, "E09000014")];
    for i in 0..30 {
        let mut seen = examples::event(EventType::ChildSeen, &format!("lost-{i}"), "2025-01-14T09:30:00Z");
        seen["subject"] = json!(child);
        events.push(seen);
    }
    let r = gateway.post(tokens::HARINGEY, &Value::Array(events)).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let last = r.json["results"][30]["stream_sequence"].as_u64().expect("a stream sequence");
    projector.wait_for(last).await;
    assert_eq!(count(&pool, "stored_event").await, 31, "every event applied, the lost deliveries too");
    assert!(projector.interruptions() >= 1, "the lost deliveries were noticed");
}

/// Roles starting together on a fresh database (a projector process and a
/// query role) all migrate it: none may fail on the other's schema.
#[tokio::test]
async fn roles_migrating_a_fresh_database_at_once_all_succeed() {
    let db = TestDatabase::create().await;
    let mut pools = Vec::new();
    for _ in 0..6 {
        pools.push(db.pool_in(projections::LIVE_SCHEMA).await);
    }
    let runs = pools.iter().map(|p| projections::migrate(p, projections::LIVE_SCHEMA));
    for result in futures::future::join_all(runs).await {
        assert!(result.is_ok(), "a concurrent migration failed: {result:?}");
    }
    assert!(count(&pools[0], "stored_event").await == 0, "the tables are there");
}

/// A council's new settings reach every child's alerts, but not in the
/// configuration's own batch: a council may hold a hundred thousand
/// children, and one transaction folding them all again would hold every
/// later event back as long (the benchmark's projection fell to a fifth).
/// The batch queues the children; the projector folds them again a chunk
/// at a time between batches, each chunk in its own transaction, until
/// the read models equal a clean projection.
#[tokio::test]
async fn a_reconfigured_council_queues_its_children_and_folds_them_again_a_chunk_at_a_time() {
    const CHILDREN: usize = 600;
    let nats = NatsServer::start().await;
    let gw = TestGateway::start(&nats.url()).await;
    let db = TestDatabase::create().await;
    let pool = db.pool().await;
    let configured = |id: &str, days: u32| tests::fixtures::configured(id, "2025-01-02T09:00:00Z", days);
    assert_eq!(gw.post(tokens::ADMIN, &json!([configured("cfg-45", 45)])).await.status, 201);
    // Each child has an assessment under way, whose clock runs on the council's timescale.
    let histories: Vec<Value> = referred_and_assessed(CHILDREN);
    let mut before = 0;
    for chunk in histories.chunks(999) {
        let r = gw.post(tokens::ADMIN, &Value::Array(chunk.to_vec())).await;
        assert_eq!(r.status, 201, "{}", r.text);
        before = r.json["results"]
            .as_array()
            .and_then(|a| a.last())
            .and_then(|l| l["stream_sequence"].as_u64())
            .expect("position");
    }
    project_until(&gw, &nats.url(), &pool, before).await;
    let due = |pool: PgPool| async move {
        sqlx::query_as::<_, (uuid::Uuid, chrono::DateTime<chrono::Utc>)>(
            "select alert_id, due_by from alert where kind = 'assessment_due' order by alert_id",
        )
        .fetch_all(&pool)
        .await
        .expect("alerts")
    };
    let under_45 = due(pool.clone()).await;
    assert_eq!(under_45.len(), CHILDREN);

    // The council shortens its timescale. Its event is applied as the projector applies a batch.
    let r = gw.post(tokens::ADMIN, &json!([configured("cfg-20", 20)])).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let at = r.json["results"][0]["stream_sequence"].as_u64().expect("position");
    let js = async_nats::jetstream::new(tests::connect(&nats.url()).await);
    let message = js
        .get_stream(events::subjects::EVENTS_STREAM)
        .await
        .expect("stream")
        .get_raw_message(at)
        .await
        .expect("the configuration's message");
    let signers = tests::projector::signers_beside(&gw.path("master.key")).await;
    let incoming = projections::store::Incoming::decode(at, &message.subject, &message.payload, &*signers);
    let mut tx = pool.begin().await.expect("begin");
    let applied = projections::store::apply_batch(
        &mut tx,
        "main",
        &[incoming],
        None,
        None,
        &projections::kept::Kept::default(),
        projections::store::Isolation::Together,
    )
    .await
    .expect("apply the configuration");
    assert_eq!(applied.events, 1);
    assert!(applied.changed.requeued, "the batch says its council's children wait");
    tx.commit().await.expect("commit");
    assert_eq!(due(pool.clone()).await, under_45, "no child was folded again in the configuration's batch");
    assert_eq!(count(&pool, "refold_pending").await, CHILDREN as i64, "every child of the council is queued");
    let setting: i32 =
        sqlx::query_scalar("select assessment_timescale_days from council_setting where council = 'E09000014'")
            .fetch_one(&pool)
            .await
            .expect("setting");
    assert_eq!(setting, 20, "the council's own settings are applied in its batch");

    // Drained a chunk at a time, each in its own transaction.
    let all = events::subjects::Partitions::all();
    let mut chunks = Vec::new();
    loop {
        let mut tx = pool.begin().await.expect("begin");
        let drained = projections::refold::drain(&mut tx, all.numbers(), 250, &projections::kept::Kept::default())
            .await
            .expect("drain");
        tx.commit().await.expect("commit");
        chunks.push((drained.children, drained.more));
        if !drained.more {
            break;
        }
    }
    assert_eq!(chunks, [(250, true), (250, true), (100, false)]);
    assert_eq!(count(&pool, "refold_pending").await, 0, "the queue is empty once a chunk comes back short");
    let under_20 = due(pool.clone()).await;
    assert_eq!(under_20.len(), CHILDREN);
    for ((id, old), (same, new)) in under_45.iter().zip(&under_20) {
        assert_eq!(id, same, "the same alert, folded again");
        assert!(new < old, "due sooner under the shorter timescale: {new} against {old}");
    }

    // What a clean projection of the same stream makes.
    let clean = TestDatabase::create().await;
    let clean_pool = clean.pool().await;
    project_until(&gw, &nats.url(), &clean_pool, at).await;
    for (table, order) in tests::tables::read_models() {
        assert_eq!(
            tests::tables::checksum(&pool, table, order).await,
            tests::tables::checksum(&clean_pool, table, order).await,
            "{table} differs"
        );
    }
}

/// A drain takes its chunk through the queue's index, whatever plan the
/// server settles on. PostgreSQL plans a statement prepared on a connection
/// afresh for its first five runs, then may keep one generic plan for any
/// parameters. The drain's first statement, generically planned, guessed
/// its `limit` at a tenth of the queue and read the whole queue for every
/// chunk: 10 to 12 million rows to drain 98,000 children in a profile.
/// Forced to the generic plan here, the chunks must read no row of the
/// queue but through an index.
#[tokio::test]
async fn a_drain_reads_the_queue_only_through_its_index_whatever_plan_is_chosen() {
    const QUEUED: i64 = 40_000;
    let db = TestDatabase::create().await;
    let pool = db.pool().await;
    projections::migrate(&pool, projections::LIVE_SCHEMA).await.expect("migrate");
    // Children without histories: folded again, they write nothing, so the
    // chunks cost only what taking them from the queue does.
    sqlx::query(
        "insert into refold_pending (child_id, partition, queued_at)
         select gen_random_uuid(), n % 32, now() + n * interval '1 millisecond' from generate_series(1, $1) n",
    )
    .bind(QUEUED)
    .execute(&pool)
    .await
    .expect("queue");
    sqlx::query("analyze refold_pending").execute(&pool).await.expect("analyze");

    let all = events::subjects::Partitions::all();
    let mut tx = pool.begin().await.expect("begin");
    sqlx::query("set local plan_cache_mode = force_generic_plan").execute(&mut *tx).await.expect("generic plans");
    let mut taken = 0;
    for chunk in [5, 1000, 40, 250, 5, 700] {
        let drained = projections::refold::drain(&mut tx, all.numbers(), chunk, &projections::kept::Kept::default())
            .await
            .expect("drain");
        assert_eq!((drained.children, drained.more), (chunk, true), "a full chunk each time");
        taken += chunk;
    }
    let (sequential, rows_read): (i64, i64) =
        sqlx::query_as("select seq_scan, seq_tup_read from pg_stat_xact_user_tables where relname = 'refold_pending'")
            .fetch_one(&mut *tx)
            .await
            .expect("this transaction's reads of the queue");
    tx.commit().await.expect("commit");
    assert_eq!(
        (sequential, rows_read),
        (0, 0),
        "the queue was read whole {sequential} times ({rows_read} rows) to take {taken} children"
    );
    assert_eq!(count(&pool, "refold_pending").await, QUEUED - taken as i64, "each chunk left the queue");
}

/// Settings for a projector named `name` that reads children's keys, as
/// `serve` runs it and as a clean projection does.
async fn keyed(gateway: &TestGateway, nats_url: &str, name: &str) -> projections::runtime::Settings {
    let client = tests::connect(nats_url).await;
    let keys = safeguard::roles::projector::keys(
        &async_nats::jetstream::new(client),
        &platform::config::NatsArgs::for_url(nats_url),
        &gateway.path("master.key"),
    )
    .await
    .expect("keys");
    let signers = tests::projector::signers_beside(&gateway.path("master.key")).await;
    projections::runtime::Settings {
        name: name.into(),
        keys: Some(keys),
        ..projections::runtime::Settings::new(signers)
    }
}

/// A single server's event stream made as the backbone makes it, but
/// allowing deletes, so a test can tamper with it.
async fn stream_allowing_deletes(
    nats: &NatsServer,
) -> (async_nats::jetstream::Context, async_nats::jetstream::stream::Stream) {
    let js = async_nats::jetstream::new(nats.client().await);
    let config =
        async_nats::jetstream::stream::Config { deny_delete: false, ..platform::bus::events_stream_config(&SETTINGS) };
    let stream = js.create_stream(config).await.expect("a stream that allows deletes");
    (js, stream)
}

/// The event stream's settings as the test gateway makes it.
const SETTINGS: platform::config::StreamSettings =
    platform::config::StreamSettings { replicas: 1, duplicate_window: std::time::Duration::from_secs(120) };

/// Makes the event stream go back to just before position `from`, as a
/// new leader that never held what followed leaves it (the fault suite's
/// three-node streams did): the stream is made again holding only the
/// messages before `from`, each at its old position, so the messages
/// published next take `from` and the positions after it.
async fn go_back_to_before(js: &async_nats::jetstream::Context, from: u64) {
    let stream = js.get_stream(platform::bus::EVENTS_STREAM).await.expect("the event stream");
    let mut before = Vec::new();
    for seq in 1..from {
        let message = stream.get_raw_message(seq).await.expect("a message");
        before.push((message.subject, message.payload));
    }
    js.delete_stream(platform::bus::EVENTS_STREAM).await.expect("delete the stream");
    js.create_stream(platform::bus::events_stream_config(&SETTINGS)).await.expect("the stream made again");
    for (seq, (subject, payload)) in (1..).zip(before) {
        let ack = js.publish(subject, payload).await.expect("publish").await.expect("ack");
        assert_eq!(ack.sequence, seq, "each message at its old position");
    }
}

/// Where the id's claim for the event at `seq` stands.
async fn claim_of(stream: &async_nats::jetstream::stream::Stream, seq: u64) -> u64 {
    let message = stream.get_raw_message(seq).await.expect("the event");
    let event = events::stored::decode(&message.subject, &message.payload).expect("an event").event;
    stream
        .get_last_raw_message_by_subject(&events::subjects::id_subject(&event.source, &event.id))
        .await
        .expect("the id's claim")
        .sequence
}

/// Two children of Haringey, each registered with a contact; then a
/// concern about the first (its publisher will send it again once the
/// stream disowns it) and a sighting of the second (disowned, never sent
/// again).
struct Disowning {
    resent_child: String,
    lost_child: String,
    concern: Value,
    /// The concern's position.
    disowned: u64,
    /// The sighting's position, the last.
    last: u64,
}

impl Disowning {
    async fn post(gw: &TestGateway) -> Self {
        let post = |body: Value| async move {
            let r = gw.post(tokens::HARINGEY, &body).await;
            assert_eq!(r.status, 201, "{}", r.text);
            r.last_stream_sequence()
        };
        let (resent_child, lost_child) = (uuid::Uuid::new_v4().to_string(), uuid::Uuid::new_v4().to_string());
        for child in [&resent_child, &lost_child] {
            post(child_event(EventType::ChildRegistered, &format!("r-{child}"), child)).await;
            post(child_event(EventType::ContactRecorded, &format!("c-{child}"), child)).await;
        }
        let concern = child_event(EventType::ConcernRaised, "concern-1", &resent_child);
        let disowned = post(concern.clone()).await;
        let last = post(child_event(EventType::ChildSeen, "seen-1", &lost_child)).await;
        Self { resent_child, lost_child, concern, disowned, last }
    }
}

/// Deletes the event at `seq` from the stream with its id's claim, as
/// someone who changed the stream would.
async fn delete_with_claim(stream: &async_nats::jetstream::stream::Stream, seq: u64) {
    let claim = claim_of(stream, seq).await;
    for at in [seq, claim] {
        assert!(stream.delete_message(at).await.expect("delete"), "message {at} deleted");
    }
}

/// JetStream can deliver a message its stream does not keep: in the fault
/// suite a killed stream leader had handed the projector an event that the
/// new leader never held, and the publisher's retry stored it again. Here
/// the stream goes back to before two delivered events (made again without
/// them, as such a leader leaves it): the concern's publisher, never
/// answered, sends it again, and it takes its old position with another
/// hash; the sighting is never sent again. The projector, started again,
/// reads back what it applied last, and moves its position back to where
/// the stream went back to: an event published afterwards at a position
/// it had applied is delivered too (its consumer would otherwise start
/// past it). The copy and every read model then equal a clean projection
/// of the stream, and verification finds nothing but an event someone
/// replayed, which the projector, delivered it again, keeps as one dead
/// letter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_the_stream_goes_back_on_leave_the_read_models_and_their_positions_are_delivered_again() {
    let nats = NatsServer::start().await;
    let mut gw = TestGateway::start(&nats.url()).await;
    let js = async_nats::jetstream::new(nats.client().await);
    let stream = js.get_stream(platform::bus::EVENTS_STREAM).await.expect("the event stream");
    let db = TestDatabase::create().await;
    let pool = db.pool().await;

    let Disowning { concern, disowned, .. } = Disowning::post(&gw).await;
    // One more, so the positions the stream goes back on reach further.
    let extra = child_event(EventType::ChildRegistered, "r-extra", &uuid::Uuid::new_v4().to_string());
    let r = gw.post(tokens::HARINGEY, &extra).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let last = r.last_stream_sequence();
    tests::projector::run_until(&nats.url(), &pool, keyed(&gw, &nats.url(), "main").await, last).await;

    go_back_to_before(&js, claim_of(&stream, disowned).await).await;
    gw.restart().await;
    let r = gw.post(tokens::HARINGEY, &concern).await;
    assert_eq!(r.status, 201, "the concern is stored again: {}", r.text);
    let again = r.last_stream_sequence();
    assert!(again <= last, "at a position the projector had applied ({again}, {last})");
    // And an event of the lost child's replayed by someone with publish
    // rights: a dead letter the projector records while it reads back, at
    // a position it is then delivered again.
    let replayed = stream.get_raw_message(claim_of(&stream, disowned).await - 1).await.expect("the contact");
    let replayed_child =
        events::stored::decode(&replayed.subject, &replayed.payload).expect("an event").event.subject.to_string();
    js.publish(replayed.subject, replayed.payload).await.expect("publish").await.expect("ack");

    let projector = tests::projector::LiveProjector::start_for(&gw, &nats.url(), &pool).await;
    projector.wait_for(again).await;
    let late_child = uuid::Uuid::new_v4().to_string();
    let r = gw.post(tokens::HARINGEY, &child_event(EventType::ChildRegistered, "r-late", &late_child)).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let late = r.last_stream_sequence();
    assert!(late <= last, "published after the projector read back, at a position it had applied ({late}, {last})");
    projector.wait_for(late).await;

    let late_held: i64 = sqlx::query_scalar("select count(*) from stored_event where event_id = 'r-late'")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(late_held, 1, "the late event is applied");
    assert!(
        projector.stats.reconciliations.load(std::sync::atomic::Ordering::Relaxed) >= 1,
        "the projector corrected its read models"
    );
    assert_eq!(
        count(&pool, "dead_letter").await,
        1,
        "only the replay is a dead letter, once: the concern sent again is no replay"
    );
    let positions: Vec<i64> = sqlx::query_scalar("select stream_seq from stored_event where event_id = 'concern-1'")
        .fetch_all(&pool)
        .await
        .expect("positions");
    assert_eq!(positions, [i64::try_from(again).expect("a position")]);
    let (_clean_db, clean) = tests::projector::clean_projection(&nats.url(), &gw.path("master.key"), late).await;
    assert_eq!(
        tests::tables::differences(&pool, &clean).await,
        Vec::<&str>::new(),
        "the read models equal a clean projection"
    );
    // Verification names the replay, and nothing else.
    let report = query::verify::verify(&js, Some(&pool), &[gw.verifying_key()], None).await.expect("verify");
    assert!(
        !report.breaks.is_empty() && report.breaks.iter().all(|b| b.subject == replayed_child),
        "{:?}",
        report.breaks
    );
}

/// The same two events deleted from the stream under a running projector,
/// as someone who changed it would (the stream denies deletes), and the
/// concern sent again by its publisher, its claim deleted too. The
/// messages that follow tell the projector: each takes the place of its
/// subject's last event, held since recently, so it reads back what it
/// applied last. Both positions are empty inside the stream's range:
/// deleted, not lost by a leader, whose positions are reused or lie past
/// the stream's end. So the copy keeps both events as evidence, the alarm
/// is raised, what followed them are dead letters, and verification with
/// the copy names both children. (Followed instead, the copy would agree
/// with the changed stream and verification would find nothing.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_projector_keeps_what_was_deleted_from_the_stream_and_raises_the_alarm() {
    let nats = NatsServer::start().await;
    let (js, stream) = stream_allowing_deletes(&nats).await;
    let mut gw = TestGateway::start(&nats.url()).await;
    let db = TestDatabase::create().await;
    let pool = db.pool().await;
    let projector = tests::projector::LiveProjector::start_for(&gw, &nats.url(), &pool).await;

    let Disowning { resent_child, lost_child, concern, disowned, last: lost } = Disowning::post(&gw).await;
    projector.wait_for(lost).await;

    delete_with_claim(&stream, disowned).await;
    delete_with_claim(&stream, lost).await;
    gw.restart().await;
    let r = gw.post(tokens::HARINGEY, &concern).await;
    assert_eq!(r.status, 201, "the concern is stored again: {}", r.text);
    let r = gw.post(tokens::HARINGEY, &child_event(EventType::ChildSeen, "seen-2", &lost_child)).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let next = r.last_stream_sequence();
    projector.wait_for(next).await;

    let deletions = projector.stats.deletions.load(std::sync::atomic::Ordering::Relaxed);
    assert!(deletions >= 2, "both deleted positions raise the alarm ({deletions})");
    assert_eq!(
        projector.stats.reconciliations.load(std::sync::atomic::Ordering::Relaxed),
        0,
        "nothing was taken for the stream going back"
    );
    assert_eq!(count(&pool, "dead_letter").await, 2, "what followed the deleted events are dead letters");
    let concern_at: Vec<i64> = sqlx::query_scalar("select stream_seq from stored_event where event_id = 'concern-1'")
        .fetch_all(&pool)
        .await
        .expect("positions");
    assert_eq!(concern_at, [i64::try_from(disowned).expect("a position")], "the copy keeps the deleted concern");
    let report = query::verify::verify(&js, Some(&pool), &[gw.verifying_key()], None).await.expect("verify");
    assert!(!report.ok, "verification finds the deletions");
    for child in [&resent_child, &lost_child] {
        assert!(
            report.breaks.iter().any(|b| b.subject == *child && b.kind == events::chain::BreakKind::CopyMismatch),
            "{child} is named: {:?}",
            report.breaks
        );
    }
}

/// A projector keeps the histories of the children it folded last, with
/// the rows it wrote from them, so a batch reads and writes only what is
/// new (`projections::kept`). The kept copy must never outlive the rows it
/// describes: here another process folds the child for a while, a
/// retraction and a correction change rows in the middle of the child's
/// sightings, and a batch is rolled back after its refold, then retried.
/// Each batch is one event, applied as the projector applies it, and the
/// read models still equal a clean projection. Without the stamp check the
/// retried batch writes nothing, and a sighting is missing for ever.
#[tokio::test]
async fn a_kept_history_is_trusted_only_while_the_database_holds_what_it_wrote() {
    let nats = NatsServer::start().await;
    let gw = TestGateway::start(&nats.url()).await;
    let db = TestDatabase::create().await;
    let pool = db.pool().await;
    projections::migrate(&pool, projections::LIVE_SCHEMA).await.expect("migrate");

    let child = uuid::Uuid::new_v4().to_string();
    let mut history = vec![
        tests::fixtures::registered("reg", &child, "E09000014"),
        child_event(EventType::ReferralReceived, "ref", &child),
        child_event(EventType::CaseAllocated, "alloc", &child),
    ];
    for day in 1..=20 {
        let mut seen =
            examples::event(EventType::ChildSeen, &format!("seen-{day}"), &format!("2025-02-{day:02}T10:00:00Z"));
        seen["subject"] = json!(child);
        history.push(seen);
    }
    let mut retraction = child_event(EventType::RecordRetracted, "retract-3", &child);
    retraction["data"]["retracts"] = json!("seen-3");
    let mut correction = child_event(EventType::RecordCorrected, "correct-5", &child);
    correction["data"] = json!({
        "corrects": "seen-5", "reason": "Seen with the parent present",
        "data": {"seen_by": examples::WORKER, "seen_alone": false, "context": "statutory_visit",
                 "agency": "Haringey children's services"}
    });
    history.extend([retraction, correction]);
    for day in 21..=25 {
        let mut seen =
            examples::event(EventType::ChildSeen, &format!("seen-{day}"), &format!("2025-02-{day:02}T10:00:00Z"));
        seen["subject"] = json!(child);
        history.push(seen);
    }
    let mut positions = Vec::new();
    for event in &history {
        let r = gw.post(tokens::ADMIN, event).await;
        assert_eq!(r.status, 201, "{}", r.text);
        positions.push(r.result(0)["stream_sequence"].as_u64().expect("position"));
    }

    let signers = tests::projector::signers_beside(&gw.path("master.key")).await;
    let stream = async_nats::jetstream::new(tests::connect(&nats.url()).await)
        .get_stream(events::subjects::EVENTS_STREAM)
        .await
        .expect("stream");
    let mut messages = Vec::new();
    for at in &positions {
        let m = stream.get_raw_message(*at).await.expect("message");
        messages.push(projections::store::Incoming::decode(*at, &m.subject, &m.payload, &*signers));
    }
    /// One message as the projector applies a batch, committed or rolled back.
    async fn apply(
        pool: &PgPool,
        kept: &projections::kept::Kept,
        message: &projections::store::Incoming,
        commit: bool,
    ) {
        let mut tx = pool.begin().await.expect("begin");
        let applied = projections::store::apply_batch(
            &mut tx,
            "main",
            std::slice::from_ref(message),
            None,
            None,
            kept,
            projections::store::Isolation::Together,
        )
        .await
        .expect("apply");
        assert_eq!(applied.events, 1);
        if commit {
            tx.commit().await.expect("commit");
        }
    }
    let (ours, another) = (projections::kept::Kept::default(), projections::kept::Kept::default());
    for message in &messages[..10] {
        apply(&pool, &ours, message, true).await;
    }
    assert_eq!(ours.size().0, 1, "the child is kept");
    // Another process folds the child meanwhile (a partition handed over and back).
    for message in &messages[10..14] {
        apply(&pool, &another, message, true).await;
    }
    // The retraction and the correction change rows in the middle.
    for message in &messages[14..25] {
        apply(&pool, &ours, message, true).await;
    }
    // Folded, then rolled back: the kept copy now describes rows that never
    // were. The projector retries the batch, as after a lost connection.
    apply(&pool, &ours, &messages[25], false).await;
    apply(&pool, &ours, &messages[25], true).await;
    for message in &messages[26..] {
        apply(&pool, &ours, message, true).await;
    }
    let sightings: i64 = sqlx::query_scalar("select count(*) from sighting").fetch_one(&pool).await.expect("count");
    assert_eq!(sightings, 24, "twenty-five visits, one retracted");

    let last = *positions.last().expect("events");
    let (_clean, clean_pool) = tests::projector::clean_projection(&nats.url(), &gw.path("master.key"), last).await;
    let differ = tests::tables::differences(&pool, &clean_pool).await;
    assert!(differ.is_empty(), "{differ:?} differ from a clean projection");
}

/// The projector gathers its tables' planner statistics itself when they
/// have grown, so a server run without autovacuum (the benchmark's was)
/// does not plan every read as if the tables were empty: a kept child's
/// read of its new events became a parallel scan of all of `stored_event`.
#[tokio::test]
async fn the_projector_analyses_its_tables_once_they_have_grown() {
    let sys = tests::system::System::start().await;
    // As if autovacuum were off for the server: only the projector can analyse it now.
    sqlx::query("alter table stored_event set (autovacuum_enabled = false)").execute(&sys.pool).await.expect("alter");
    let analysed_at = || async {
        sqlx::query_scalar::<_, Option<chrono::DateTime<chrono::Utc>>>(
            "select last_analyze from pg_stat_user_tables where schemaname = 'projection' and relname = 'stored_event'",
        )
        .fetch_one(&sys.pool)
        .await
        .expect("pg_stat_user_tables")
    };
    let before = analysed_at().await;
    let events: Vec<Value> = (0..200)
        .map(|i| child_event(EventType::ChildRegistered, &format!("grown-{i}"), &uuid::Uuid::new_v4().to_string()))
        .collect();
    sys.publish(tokens::HARINGEY, events).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let now = analysed_at().await;
        if now.is_some() && now != before {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "stored_event was never analysed after 200 rows");
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    let estimated: f32 = sqlx::query_scalar("select reltuples from pg_class where oid = 'stored_event'::regclass")
        .fetch_one(&sys.pool)
        .await
        .expect("reltuples");
    assert!(estimated >= 200.0, "the planner now knows the table's size: {estimated}");
}

/// Read models written before indicator tallies existed hold none; the
/// migration marks them, and the first projector to migrate queues every
/// child to be folded again, once. Folded, the tallies equal those the
/// projector wrote as the events came.
#[tokio::test]
async fn read_models_older_than_tallies_are_folded_again_once() {
    const CHILDREN: usize = 40;
    let nats = NatsServer::start().await;
    let gw = TestGateway::start(&nats.url()).await;
    let db = TestDatabase::create().await;
    let pool = db.pool().await;
    let histories: Vec<Value> = referred_and_assessed(CHILDREN);
    let r = gw.post(tokens::ADMIN, &Value::Array(histories)).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let last = r.json["results"].as_array().and_then(|a| a.last()).and_then(|l| l["stream_sequence"].as_u64());
    project_until(&gw, &nats.url(), &pool, last.expect("position")).await;
    let tallies = |pool: PgPool| async move {
        (
            tests::tables::checksum(&pool, "indicator_part", "child_id, council, measure, day, key").await,
            tests::tables::checksum(&pool, "indicator_tally", "council, measure, day, key").await,
        )
    };
    let written = tallies(pool.clone()).await;
    let referrals: i64 =
        sqlx::query_scalar("select coalesce(sum(n), 0)::bigint from indicator_tally where measure = 'referral'")
            .fetch_one(&pool)
            .await
            .expect("sum");
    assert_eq!(referrals, CHILDREN as i64, "each child's referral is tallied");

    // As an older release left them: no tallies, and the migration's marker.
    sqlx::query("truncate indicator_part, indicator_tally").execute(&pool).await.expect("truncate");
    sqlx::query("insert into indicator_backfill values (false)").execute(&pool).await.expect("mark");
    projections::migrate(&pool, projections::LIVE_SCHEMA).await.expect("migrate");
    assert_eq!(count(&pool, "refold_pending").await, CHILDREN as i64, "every child is queued");
    assert_eq!(count(&pool, "indicator_backfill").await, 0, "the marker is taken");
    let all = events::subjects::Partitions::all();
    let mut tx = pool.begin().await.expect("begin");
    let drained = projections::refold::drain(&mut tx, all.numbers(), 1000, &projections::kept::Kept::default())
        .await
        .expect("drain");
    tx.commit().await.expect("commit");
    assert_eq!((drained.children, drained.more), (CHILDREN, false));
    assert_eq!(tallies(pool.clone()).await, written, "folded again, the tallies are as written live");

    // Once: a second migration queues nothing.
    projections::migrate(&pool, projections::LIVE_SCHEMA).await.expect("migrate again");
    assert_eq!(count(&pool, "refold_pending").await, 0);
}

/// Sums the rows every scan of `table` in a plan (EXPLAIN ANALYZE, JSON) returned.
fn rows_scanned(plan: &Value, table: &str) -> f64 {
    let own = if plan["Relation Name"] == table {
        plan["Actual Rows"].as_f64().unwrap_or(0.0) * plan["Actual Loops"].as_f64().unwrap_or(1.0)
    } else {
        0.0
    };
    own + plan["Plans"].as_array().into_iter().flatten().map(|p| rows_scanned(p, table)).sum::<f64>()
}

/// Every batch reads the last stored event of each subject it touches,
/// to check that the batch continues the chain. That read must step to
/// the last event, not read the history: a child's may hold thousands,
/// and the steady-load benchmark's children, at 8,000 events, spent 16 ms
/// a batch in it.
#[tokio::test]
async fn a_batch_reads_the_last_event_of_each_subject_it_touches_without_reading_the_history() {
    let db = TestDatabase::create().await;
    let pool = db.pool().await;
    projections::migrate(&pool, projections::LIVE_SCHEMA).await.expect("migrate");
    // The copy as the projector leaves it: one child of 5,000 events, one of 1.
    sqlx::query(
        "insert into stored_event (stream_seq, subject, subject_kind, sequence, event_id, source, event_type,
                                   occurred_at, business_date, recorded_at, hash, document)
         select n, case when n <= 5000 then 'long' else 'short' end, 'child', case when n <= 5000 then n else 1 end,
                'e-' || n, 'test', 'child.seen', now(), current_date, now(), 'h' || n, '{}'::jsonb
           from generate_series(1, 5001) n",
    )
    .execute(&pool)
    .await
    .expect("a long history and a short one");
    sqlx::query("analyze stored_event").execute(&pool).await.expect("analyze");
    let subjects = vec!["long".to_owned(), "short".to_owned()];

    let heads: Vec<(String, i64, String, i64)> =
        sqlx::query_as(projections::store::SUBJECT_HEADS).bind(&subjects).fetch_all(&pool).await.expect("heads");
    let mut heads: Vec<(String, i64, i64)> = heads.into_iter().map(|(s, seq, _, at)| (s, seq, at)).collect();
    heads.sort();
    assert_eq!(heads, vec![("long".to_owned(), 5000, 5000), ("short".to_owned(), 1, 5001)]);

    let (plan,): (Value,) =
        sqlx::query_as(&format!("explain (analyze, format json) {}", projections::store::SUBJECT_HEADS))
            .bind(&subjects)
            .fetch_one(&pool)
            .await
            .expect("the plan");
    let scanned = rows_scanned(&plan[0]["Plan"], "stored_event");
    assert!(scanned <= 2.0, "reading two subjects' last events scanned {scanned} rows of stored_event: {plan}");
}
