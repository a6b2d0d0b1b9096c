//! The harness itself: servers really start, really keep what they
//! acknowledged across kills, and really go away.

use async_nats::jetstream::{self, stream};
use std::time::{Duration, Instant};
use tests::nats::{MIN_VERSION, nats_server_binary, server_version};
use tests::{NatsCluster, NatsServer, PgCluster, TestDatabase};

async fn create_stream(js: &jetstream::Context, replicas: usize) -> stream::Stream {
    js.create_stream(stream::Config {
        name: "HARNESS".into(),
        subjects: vec!["harness.>".into()],
        storage: stream::StorageType::File,
        num_replicas: replicas,
        ..Default::default()
    })
    .await
    .expect("create stream")
}

async fn publish_acked(js: &jetstream::Context, n: usize, from: usize) {
    for i in from..from + n {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match js.publish(format!("harness.{i}"), format!("message {i}").into()).await {
                Ok(ack) => match ack.await {
                    Ok(_) => break,
                    Err(e) if Instant::now() > deadline => panic!("no ack for {i}: {e}"),
                    Err(_) => {}
                },
                Err(e) if Instant::now() > deadline => panic!("publish {i}: {e}"),
                Err(_) => {}
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

async fn message_count(js: &jetstream::Context) -> u64 {
    let mut stream = js.get_stream("HARNESS").await.expect("stream");
    stream.info().await.expect("info").state.messages
}

#[test]
fn the_nats_server_is_new_enough() {
    let version = server_version(nats_server_binary()).expect("version");
    assert!(version >= MIN_VERSION, "{version:?}");
}

#[tokio::test]
async fn a_killed_server_keeps_every_acknowledged_message() {
    let mut server = NatsServer::start().await;
    let js = jetstream::new(server.client().await);
    create_stream(&js, 1).await;
    publish_acked(&js, 200, 0).await;
    server.kill();
    assert!(!server.is_running());
    server.relaunch();
    server.wait_ready().await;
    let js = jetstream::new(server.client().await);
    assert_eq!(message_count(&js).await, 200);
}

#[tokio::test]
async fn servers_do_not_share_anything() {
    let a = NatsServer::start().await;
    let b = NatsServer::start().await;
    assert_ne!(a.port(), b.port());
    assert_ne!(a.store_dir(), b.store_dir());
    let js_a = jetstream::new(a.client().await);
    create_stream(&js_a, 1).await;
    publish_acked(&js_a, 3, 0).await;
    let js_b = jetstream::new(b.client().await);
    assert!(js_b.get_stream("HARNESS").await.is_err(), "b must not see a's stream");
    let dir = a.store_dir();
    drop(a);
    assert!(!dir.exists(), "the store directory is removed on drop");
}

#[tokio::test]
async fn a_three_node_cluster_survives_the_loss_of_a_node() {
    let mut cluster = NatsCluster::start(3).await;
    let js = jetstream::new(cluster.client().await);
    let mut s = create_stream(&js, 3).await;
    assert_eq!(s.info().await.expect("info").config.num_replicas, 3);
    publish_acked(&js, 50, 0).await;

    cluster.node_mut(0).kill();
    publish_acked(&js, 50, 50).await;
    assert_eq!(message_count(&js).await, 100);

    cluster.node_mut(0).relaunch();
    cluster.node(0).wait_ready().await;
    // The restarted node catches up; read through it alone to show it.
    let only_node_0 = jetstream::new(cluster.node(0).client().await);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let n = match only_node_0.get_stream("HARNESS").await {
            Ok(mut s) => s.info().await.map(|i| i.state.messages).unwrap_or(0),
            Err(_) => 0,
        };
        if n == 100 {
            break;
        }
        assert!(Instant::now() < deadline, "node 0 saw {n} of 100 messages");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn test_databases_are_isolated_and_dropped() {
    let a = TestDatabase::create().await;
    let b = TestDatabase::create().await;
    assert_ne!(a.name(), b.name());
    let pool_a = a.pool().await;
    sqlx::query("create table t (x int)").execute(&pool_a).await.expect("create");
    let pool_b = b.pool().await;
    let seen: Option<String> =
        sqlx::query_scalar("select to_regclass('t')::text").fetch_one(&pool_b).await.expect("query");
    assert_eq!(seen, None, "b must not see a's table");

    let name = a.name().to_owned();
    drop(a); // with pool_a still open: the drop forces its connections off
    let still_there: bool = sqlx::query_scalar("select exists (select from pg_database where datname = $1)")
        .bind(&name)
        .fetch_one(&pool_b)
        .await
        .expect("query");
    assert!(!still_there, "{name} was not dropped");
    drop(pool_a);
}

#[tokio::test]
async fn a_private_postgres_keeps_committed_rows_across_a_kill() {
    let pg = PgCluster::start().await;
    let url = pg.create_database("harness").await;
    let pool = sqlx::PgPool::connect(&url).await.expect("connect");
    sqlx::query("create table fact (n int primary key)").execute(&pool).await.expect("create");
    sqlx::query("insert into fact select generate_series(1, 100)").execute(&pool).await.expect("insert");
    pool.close().await;

    pg.kill();
    assert!(sqlx::PgPool::connect(&url).await.is_err(), "the server is down");
    pg.start_again().await;

    let pool = sqlx::PgPool::connect(&url).await.expect("reconnect");
    let n: i64 = sqlx::query_scalar("select count(*) from fact").fetch_one(&pool).await.expect("count");
    assert_eq!(n, 100);
    pool.close().await;
    pg.restart().await;
    let pool = sqlx::PgPool::connect(&url).await.expect("reconnect after restart");
    let n: i64 = sqlx::query_scalar("select count(*) from fact").fetch_one(&pool).await.expect("count");
    assert_eq!(n, 100);
}
