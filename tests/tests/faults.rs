//! The fault suite: real `nats-server`, PostgreSQL and projector processes
//! on loopback, broken while events flow in through a real gateway.
//!
//! Every scenario runs the same load (`tests::load`): clients that each own
//! a child and resend an event with the same id until it gets a 201. After
//! the fault is mended and the load stopped, each scenario holds the
//! backbone to the acknowledged events exactly:
//!
//! - the stream holds every acknowledged event once and nothing else of the load;
//! - `stored_event` holds the same ids once each, and every read model
//!   equals a clean rebuild from the stream;
//! - every child's chain verifies, signatures and all.
//!
//! NATS refusing outright (503, never a 201 for anything unstored) is also
//! shown with a single server in `gateway.rs`; here the whole cluster goes
//! down under load and the exact accounting shows the same.

use async_nats::jetstream;
use serde_json::Value;
use sqlx::PgPool;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tests::gateway::{Options, TestGateway};
use tests::load::{Ingest, Outcome};
use tests::projector::LiveProjector;
use tests::tables::checksum;
use tests::{NatsCluster, NatsServer, PgCluster, TestDatabase};

/// Load clients per scenario: enough that a fault always lands on some in flight.
const CLIENTS: usize = 8;

/// The three-node scenarios take turns: nine fsyncing servers plus three
/// loads at once on a two-core machine would measure the machine, not the
/// backbone. Each still owns its cluster, gateway and database.
static CLUSTER_TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn cluster_options() -> Options {
    // A publish stuck on a dead leader gives up (503, and the client resends)
    // well before a new leader has been elected twice over.
    Options { replicas: 3, publish_timeout: Duration::from_secs(4), ..Options::default() }
}

/// The index of the node leading the event stream. Just after a node
/// returns or a leader steps down the stream may be between leaders for a
/// moment (no leader in its info, or no answer): that is waited out.
async fn stream_leader(cluster: &NatsCluster) -> usize {
    let js = jetstream::new(tests::connect(&cluster.urls()).await);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let leader = match js.get_stream(platform::bus::EVENTS_STREAM).await {
            Ok(mut stream) => stream.info().await.ok().and_then(|i| i.cluster.as_ref().and_then(|c| c.leader.clone())),
            Err(_) => None,
        };
        if let Some(leader) = leader {
            return (0..cluster.len()).find(|&i| cluster.node(i).name() == leader).expect("the leader is one of ours");
        }
        assert!(Instant::now() < deadline, "the event stream had no leader for 30 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Asks the event stream's leader to step down until `node` leads it, so
/// what the stream answers comes from that node's copy.
async fn make_leader(cluster: &NatsCluster, node: usize) {
    let client = cluster.client().await;
    let wanted = cluster.node(node).name().to_owned();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if stream_leader(cluster).await == node {
            return;
        }
        assert!(Instant::now() < deadline, "{wanted} never became the stream's leader");
        let body = serde_json::json!({"placement": {"preferred": wanted}}).to_string();
        let _ = client
            .request(format!("$JS.API.STREAM.LEADER.STEPDOWN.{}", platform::bus::EVENTS_STREAM), body.into())
            .await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// How often each of the load's event ids is in the stream.
async fn load_ids_in_stream(url: &str) -> BTreeMap<String, u32> {
    let mut ids = BTreeMap::new();
    for (subject, payload) in tests::gateway::stream_messages(url).await {
        if !subject.starts_with("sg.ev.") {
            continue;
        }
        let event: Value = serde_json::from_slice(&payload).expect("a stored event is JSON");
        let id = event["id"].as_str().expect("an id").to_owned();
        if id.starts_with("load-") {
            *ids.entry(id).or_default() += 1;
        }
    }
    ids
}

/// The acknowledged events, each once, as the stream and `pool` must hold them.
fn expected(outcome: &Outcome) -> BTreeMap<String, u32> {
    let mut ids = BTreeMap::new();
    for a in &outcome.acked {
        *ids.entry(a.id.clone()).or_default() += 1;
    }
    assert!(ids.values().all(|&n| n == 1), "the gateway acknowledged an id twice as new");
    ids
}

/// The stream, the Postgres copy and every child's chain hold exactly the acknowledged events.
async fn assert_held_exactly(url: &str, gateway: &TestGateway, pool: &PgPool, outcome: &Outcome) {
    let want = expected(outcome);
    eprintln!(
        "{} events acknowledged, {} answers refused and resent ({:?})",
        want.len(),
        outcome.refused,
        outcome.refused_by_status
    );
    let in_stream = load_ids_in_stream(url).await;
    assert_eq!(
        in_stream.len(),
        want.len(),
        "the stream holds {} ids of the load, {} were acknowledged",
        in_stream.len(),
        want.len()
    );
    assert_eq!(in_stream, want, "the stream holds exactly the acknowledged events, once each");

    let rows: Vec<(String, i64)> =
        sqlx::query_as("select event_id, count(*) from stored_event where event_id like 'load-%' group by event_id")
            .fetch_all(pool)
            .await
            .expect("stored events");
    let in_copy: BTreeMap<String, u32> = rows.into_iter().map(|(id, n)| (id, n as u32)).collect();
    assert_eq!(in_copy, want, "the read models hold exactly the acknowledged events, once each");

    let js = jetstream::new(tests::connect(url).await);
    // Right after a node comes back, a stream may be between leaders for a
    // moment: verification then fails to open it, and is run again.
    let deadline = Instant::now() + Duration::from_secs(20);
    let report = loop {
        match query::verify::verify(&js, Some(pool), &[gateway.verifying_key()], None).await {
            Ok(report) => break report,
            Err(e) => assert!(Instant::now() < deadline, "verification does not run: {e:#}"),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert!(report.ok, "the chains or the copy are broken: {:?}", &report.breaks[..report.breaks.len().min(5)]);
}

/// Every read model in `pool` equals a clean rebuild from the stream.
async fn assert_equals_clean_rebuild(url: &str, gateway: &TestGateway, pool: &PgPool, last: u64) {
    let clean = TestDatabase::create().await;
    let clean_pool = clean.pool().await;
    let client = tests::connect(url).await;
    let nats_args = platform::config::NatsArgs::for_url(url);
    let keys = safeguard::roles::projector::keys(&jetstream::new(client), &nats_args, &gateway.path("master.key"))
        .await
        .expect("keys");
    let signers = tests::projector::signers_beside(&gateway.path("master.key")).await;
    let settings = projections::runtime::Settings {
        name: "clean".into(),
        keys: Some(keys),
        ..projections::runtime::Settings::new(signers)
    };
    tests::projector::run_until(url, &clean_pool, settings, last).await;
    for (table, order) in tests::tables::read_models() {
        assert_eq!(checksum(pool, table, order).await, checksum(&clean_pool, table, order).await, "{table} differs");
    }
}

/// A three-node scenario's parts: its turn, the cluster, a gateway storing
/// at three replicas, and a database with a live projector.
struct ClusterRig {
    _turn: tokio::sync::MutexGuard<'static, ()>,
    cluster: NatsCluster,
    url: String,
    gateway: Arc<TestGateway>,
    _db: TestDatabase,
    pool: PgPool,
    projector: LiveProjector,
}

impl ClusterRig {
    async fn start() -> Self {
        let turn = CLUSTER_TURN.lock().await;
        let cluster = NatsCluster::start(3).await;
        let url = cluster.urls();
        let gateway = Arc::new(TestGateway::start_with(&url, cluster_options()).await);
        let db = TestDatabase::create().await;
        let pool = db.pool().await;
        let projector = LiveProjector::start_for(&gateway, &url, &pool).await;
        Self { _turn: turn, cluster, url, gateway, _db: db, pool, projector }
    }

    /// Once the projector has applied the load, holds everything to it.
    async fn hold_to(&self, outcome: &Outcome) {
        self.projector.wait_for(outcome.last_sequence()).await;
        // An election near the end may have been seen by no look yet: the
        // read models are held to the stream once it has been, and checked.
        self.projector.wait_checked().await;
        eprintln!(
            "the projector corrected its read models to follow the stream {} time(s)",
            self.projector.stats.reconciliations.load(std::sync::atomic::Ordering::Relaxed)
        );
        assert_held_exactly(&self.url, &self.gateway, &self.pool, outcome).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_stream_leader_during_ingest_loses_nothing_acknowledged() {
    let mut rig = ClusterRig::start().await;
    let cluster = &mut rig.cluster;
    let load = Ingest::start(rig.gateway.clone(), CLIENTS);
    load.wait_for_more(150).await;
    // The leader dies under a projector that is consuming, with batches in
    // flight: without this wait the kill could land before the projector's
    // first session has made its consumer, and the test would not see it.
    rig.projector.wait_applying().await;
    load.wait_for_more(50).await;
    let leader = stream_leader(cluster).await;
    cluster.node_mut(leader).kill();
    // Ingest resumes on the two nodes left, under a new leader.
    load.wait_for_more(150).await;
    assert_ne!(stream_leader(cluster).await, leader, "a new leader took over");
    cluster.node_mut(leader).relaunch();
    cluster.node(leader).wait_ready().await;
    load.wait_for_more(50).await;
    let outcome = load.stop().await;

    rig.hold_to(&outcome).await;
    // The killed leader caught up: let it lead and read the stream from it.
    make_leader(&rig.cluster, leader).await;
    assert_eq!(load_ids_in_stream(&rig.url).await, expected(&outcome), "the old leader's copy is whole");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_follower_restarts_and_catches_up() {
    let mut rig = ClusterRig::start().await;
    let cluster = &mut rig.cluster;
    let load = Ingest::start(rig.gateway.clone(), CLIENTS);
    load.wait_for_more(100).await;
    rig.projector.wait_applying().await;
    let leader = stream_leader(cluster).await;
    let follower = (leader + 1) % cluster.len();
    cluster.node_mut(follower).kill();
    // Two of three is a quorum: ingest goes on while the follower is away.
    load.wait_for_more(200).await;
    cluster.node_mut(follower).relaunch();
    cluster.node(follower).wait_ready().await;
    load.wait_for_more(50).await;
    let outcome = load.stop().await;

    rig.hold_to(&outcome).await;
    // What the stream answers now comes from the restarted follower's copy.
    make_leader(&rig.cluster, follower).await;
    assert_eq!(load_ids_in_stream(&rig.url).await, expected(&outcome), "the restarted follower's copy is whole");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_and_starting_the_whole_cluster_loses_nothing_acknowledged() {
    let mut rig = ClusterRig::start().await;
    let cluster = &mut rig.cluster;
    let load = Ingest::start(rig.gateway.clone(), CLIENTS);
    load.wait_for_more(150).await;
    rig.projector.wait_applying().await;
    for i in 0..cluster.len() {
        cluster.node_mut(i).stop();
    }
    // With NATS gone the gateway refuses (503) and the clients resend.
    let during = load.acked();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        load.acked() <= during + CLIENTS as u64,
        "at most the publishes in flight when NATS stopped were acknowledged"
    );
    for i in 0..cluster.len() {
        cluster.node_mut(i).relaunch();
    }
    for i in 0..cluster.len() {
        cluster.node(i).wait_ready().await;
    }
    load.wait_for_more(150).await;
    let outcome = load.stop().await;
    assert!(
        outcome.refused_by_status.get(&503).is_some_and(|&n| n > 0),
        "NATS down gave 503s: {:?}",
        outcome.refused_by_status
    );

    rig.hold_to(&outcome).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_killed_during_projection_under_load_recovers_to_a_clean_rebuild() {
    let nats = NatsServer::start().await;
    let gateway = Arc::new(TestGateway::start(&nats.url()).await);
    let pg = PgCluster::start().await;
    let db = TestDatabase::create_on(&pg.admin_url()).await;
    let pool = db.pool().await;
    let projector = LiveProjector::start_for(&gateway, &nats.url(), &pool).await;

    let load = Ingest::start(gateway.clone(), CLIENTS);
    load.wait_for_more(200).await;
    pg.kill();
    // Ingest does not depend on PostgreSQL: it goes on while the projector waits.
    load.wait_for_more(200).await;
    // The harness's pool waits sqlx's default 30 s for a connection before it gives up.
    let deadline = Instant::now() + Duration::from_secs(45);
    while projector.interruptions() == 0 {
        assert!(Instant::now() < deadline, "the projector never noticed PostgreSQL go");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    pg.start_again().await;
    load.wait_for_more(100).await;
    let outcome = load.stop().await;

    projector.wait_for(outcome.last_sequence()).await;
    let pool = db.pool().await;
    assert_held_exactly(&nats.url(), &gateway, &pool, &outcome).await;
    assert_equals_clean_rebuild(&nats.url(), &gateway, &pool, outcome.last_sequence()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projector_killed_again_and_again_under_load_equals_a_clean_rebuild() {
    let nats = NatsServer::start().await;
    let gateway = Arc::new(TestGateway::start(&nats.url()).await);
    let db = TestDatabase::create().await;
    let pool = db.pool().await;

    let load = Ingest::start(gateway.clone(), CLIENTS);
    load.wait_for_more(100).await;
    let mut kills = 0;
    for round in 0..8u64 {
        let before = tests::projector::stored_position(&pool).await;
        let mut projector =
            tests::projector::spawn_process(&nats.url(), db.url(), &gateway.path("master.key"), 25, "127.0.0.1:0", &[]);
        // Let it get into its work, then kill it without warning, at a
        // different point of a batch each round.
        let deadline = Instant::now() + Duration::from_secs(30);
        while tests::projector::stored_position(&pool).await <= before && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(2 + 7 * round)).await;
        let _ = projector.kill();
        let _ = projector.wait();
        kills += 1;
    }
    let outcome = load.stop().await;
    assert_eq!(kills, 8);

    let mut projector =
        tests::projector::spawn_process(&nats.url(), db.url(), &gateway.path("master.key"), 25, "127.0.0.1:0", &[]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while tests::projector::stored_position(&pool).await < outcome.last_sequence() {
        assert!(Instant::now() < deadline, "the last projector did not finish");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = projector.kill();
    let _ = projector.wait();

    assert_held_exactly(&nats.url(), &gateway, &pool, &outcome).await;
    assert_equals_clean_rebuild(&nats.url(), &gateway, &pool, outcome.last_sequence()).await;
}
