//! `safeguard rebuild` under read load: the real binary rebuilds the read
//! models beside the live ones while readers keep asking; every read is
//! answered, the rebuilt tables equal the ones they replace, and the live
//! projector carries on in the rebuilt schema. A second rebuild runs while
//! events keep arriving, and still finishes and equals a clean projection.

use chrono::NaiveDate;
use serde_json::{Value, json};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tests::gateway::{TestGateway, tokens};
use tests::projector::LiveProjector;
use tests::query::TestQuery;
use tests::tables::{checksum, count, read_models};
use tests::{NatsServer, TestDatabase, safeguard_binary};

/// `safeguard rebuild --all` with `extra` arguments (a share's partitions
/// and name), not yet started.
fn rebuild_command(nats_url: &str, database_url: &str, master_key: &std::path::Path, extra: &[&str]) -> Command {
    let mut command = Command::new(safeguard_binary());
    command
        .args(["rebuild", "--all"])
        .args(if extra.contains(&"--batch") { &[][..] } else { &["--batch", "500"][..] })
        .args(extra)
        .env("NATS_URL", nats_url)
        .env("DATABASE_URL", database_url)
        .env("SAFEGUARD_PUBLIC_KEY", master_key.with_file_name("signing.key.pub"))
        .env("SAFEGUARD_MASTER_KEY", master_key)
        .env("RUST_LOG", "warn");
    command
}

/// Waits for a `safeguard rebuild` to end, and returns its stderr and
/// whether it succeeded. The process is killed if the wait is dropped (a
/// test that failed leaves no share waiting behind it).
async fn finished(command: Command) -> (bool, String) {
    let output =
        tokio::process::Command::from(command).kill_on_drop(true).output().await.expect("run safeguard rebuild");
    (output.status.success(), String::from_utf8_lossy(&output.stderr).into_owned())
}

/// Runs `safeguard rebuild --all` to the end and returns its stderr.
async fn rebuild(nats_url: String, database_url: String, master_key: std::path::PathBuf) -> String {
    let (success, stderr) = finished(rebuild_command(&nats_url, &database_url, &master_key, &[])).await;
    assert!(success, "rebuild failed: {stderr}");
    assert!(stderr.contains("rebuilt") && stderr.contains("events/s"), "{stderr}");
    stderr
}

fn seen(id: &str, child: &str) -> Value {
    json!({"specversion": "1.0", "id": id, "type": "child.seen", "subject": child,
           "time": "2026-03-30T10:00:00Z", "data": {"seen_by": "W9", "seen_alone": true, "context": "school"}})
}

#[tokio::test]
async fn a_rebuild_under_read_load_answers_throughout_and_equals_the_old_tables() {
    let nats = NatsServer::start().await;
    let gateway = Arc::new(TestGateway::start(&nats.url()).await);
    let db = TestDatabase::create().await;
    let pool = db.pool().await;
    let projector = LiveProjector::start_for(&gateway, &nats.url(), &pool).await;
    let query = Arc::new(TestQuery::start(&nats.url(), db.url(), &gateway).await);

    let until = NaiveDate::from_ymd_opt(2026, 3, 31).expect("date");
    let groups = safeguard::cli::seed::generate(5, 2, 30, until).expect("seed");
    let mut last = 0;
    for batch in safeguard::cli::seed::batches(&groups, 1000) {
        let r = gateway.post(tokens::ADMIN, &Value::Array(batch)).await;
        assert_eq!(r.status, 201, "{}", &r.text[..r.text.len().min(300)]);
        last = r.json["results"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|x| x["stream_sequence"].as_u64())
            .max()
            .unwrap_or(last);
    }
    projector.wait_for(last).await;
    let child = groups.iter().flatten().find(|e| e["type"] == "child.registered").expect("a child")["subject"]
        .as_str()
        .expect("id")
        .to_owned();

    // Readers: a chronology and an indicators document, over and over.
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|i| {
            let query = query.clone();
            let stop = stop.clone();
            let child = child.clone();
            tokio::spawn(async move {
                let mut answers = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let path = if i == 0 {
                        format!("/v1/children/{child}/chronology")
                    } else {
                        "/v1/indicators?council=E09000014&period=2024-25".to_owned()
                    };
                    answers.push(query.get(tokens::HARINGEY, &path).await.status);
                }
                answers
            })
        })
        .collect();

    rebuild(nats.url(), db.url().to_owned(), gateway.path("master.key")).await;
    stop.store(true, Ordering::Relaxed);

    let mut answered = 0;
    for reader in readers {
        let answers = reader.await.expect("reader");
        assert!(answers.iter().all(|s| *s == 200), "a read failed during the rebuild: {answers:?}");
        answered += answers.len();
    }
    assert!(answered >= 4, "the readers kept reading ({answered} reads)");

    for (table, order) in read_models() {
        let old = checksum(&pool, &format!("{}.{table}", projections::PREVIOUS_SCHEMA), order).await;
        let new = checksum(&pool, &format!("{}.{table}", projections::LIVE_SCHEMA), order).await;
        assert_eq!(old, new, "{table} differs after the rebuild");
    }
    let before = count(&pool, "projection.stored_event").await;
    assert!(before > 500, "{before} events");

    // The live projector carries on, now in the rebuilt tables.
    let r = gateway.post(tokens::ADMIN, &seen("after-rebuild", &child)).await;
    assert_eq!(r.status, 201, "{}", r.text);
    projector.wait_for(r.result(0)["stream_sequence"].as_u64().expect("seq")).await;
    assert_eq!(count(&pool, "projection.stored_event").await, before + 1);
    assert_eq!(count(&pool, "projection_previous.stored_event").await, before);

    // Again, with events arriving all the while: the rebuild must still
    // finish (it catches up while holding the live projector still) and the
    // result, once the writer stops, equals a clean projection.
    let writing = Arc::new(AtomicBool::new(true));
    let writer = {
        let writing = writing.clone();
        let gateway = gateway.clone();
        let child = child.clone();
        tokio::spawn(async move {
            let mut last = 0;
            let mut n = 0;
            while writing.load(Ordering::Relaxed) {
                n += 1;
                let r = gateway.post(tokens::ADMIN, &seen(&format!("during-{n}"), &child)).await;
                assert_eq!(r.status, 201, "{}", r.text);
                last = r.result(0)["stream_sequence"].as_u64().expect("seq");
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            (n, last)
        })
    };
    rebuild(nats.url(), db.url().to_owned(), gateway.path("master.key")).await;
    writing.store(false, Ordering::Relaxed);
    let (written, last) = writer.await.expect("writer");
    assert!(written > 5, "events arrived during the rebuild ({written})");
    projector.wait_for(last).await;

    let clean = TestDatabase::create().await;
    let clean_pool = clean.pool().await;
    let client = async_nats::connect(nats.url()).await.expect("connect");
    let nats_args = platform::config::NatsArgs::for_url(&nats.url());
    let keys =
        safeguard::roles::projector::keys(&async_nats::jetstream::new(client), &nats_args, &gateway.path("master.key"))
            .await
            .expect("keys");
    let signers = tests::projector::signers_beside(&gateway.path("master.key")).await;
    let settings = projections::runtime::Settings {
        name: "clean".into(),
        keys: Some(keys),
        ..projections::runtime::Settings::new(signers)
    };
    tests::projector::run_until(&nats.url(), &clean_pool, settings, last).await;
    // What the live projector could not apply, said if anything (a dead letter is a defect here).
    let dead: Vec<(i64, String)> = sqlx::query_as("select stream_seq, reason from dead_letter order by stream_seq")
        .fetch_all(&pool)
        .await
        .expect("dead letters");
    assert!(dead.is_empty(), "the live projector dead-lettered: {dead:?}");
    for (table, order) in read_models() {
        assert_eq!(checksum(&pool, table, order).await, checksum(&clean_pool, table, order).await, "{table} differs");
    }
    assert_eq!(count(&pool, "stored_event").await, before + 1 + written as i64);
}

/// Partitioned projectors share a rebuild: one `safeguard rebuild` process
/// per share of the partitions, run together. The share finishing first
/// waits (the live tables serve on), a share claiming its partitions or its
/// name is refused, and the share finishing last catches every partition
/// up, under live traffic, and switches once. The result equals a clean
/// projection, and the live projectors carry on in it under their names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_shared_by_two_processes_switches_once_and_equals_a_clean_projection() {
    let nats = NatsServer::start().await;
    let gateway = Arc::new(TestGateway::start(&nats.url()).await);
    let db = TestDatabase::create().await;
    let pool = db.pool().await;
    let master_key = gateway.path("master.key");
    let live = |name: &str, partitions: &str| {
        let extra = ["--projector-name", name, "--partitions", partitions];
        tests::projector::spawn_process(&nats.url(), db.url(), &master_key, 200, "127.0.0.1:0", &extra)
    };
    // The tables exist before the processes start, so counting them below
    // never races the processes' own migrations (which then find them done).
    projections::migrate(&pool, projections::LIVE_SCHEMA).await.expect("migrate");
    let _low = live("low", "0-15");
    let _high = live("high", "16-31");
    let until = NaiveDate::from_ymd_opt(2025, 3, 31).expect("date");
    let groups = safeguard::cli::seed::generate(23, 2, 40, until).expect("seed");
    let events: i64 = groups.iter().map(|g| g.len() as i64).sum();
    let child = groups.iter().flatten().find(|e| e["type"] == "child.registered").expect("a child")["subject"]
        .as_str()
        .expect("id")
        .to_owned();
    tests::gateway::load_groups(&gateway, groups).await;
    let applied =
        || async { (count(&pool, "projection.stored_event").await, count(&pool, "projection.refold_pending").await) };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    while applied().await != (events, 0) {
        assert!(
            std::time::Instant::now() < deadline,
            "the live projectors did not apply the population: {:?}",
            applied().await
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    // Events keep arriving throughout.
    let writing = Arc::new(AtomicBool::new(true));
    let writer = {
        let (writing, gateway, child) = (writing.clone(), gateway.clone(), child.clone());
        tokio::spawn(async move {
            let (mut n, mut last) = (0, 0);
            while writing.load(Ordering::Relaxed) {
                n += 1;
                let r = gateway.post(tokens::ADMIN, &seen(&format!("shared-{n}"), &child)).await;
                assert_eq!(r.status, 201, "{}", r.text);
                last = r.result(0)["stream_sequence"].as_u64().expect("seq");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            (n, last)
        })
    };

    // The first share rebuilds its half and waits for the other.
    let low = tokio::spawn(finished(rebuild_command(
        &nats.url(),
        db.url(),
        &master_key,
        &["--partitions", "0-15", "--projector-name", "low"],
    )));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    loop {
        let done: Option<bool> =
            sqlx::query_scalar("select finished from projection_rebuild.rebuild_share where projector = 'low'")
                .fetch_optional(&pool)
                .await
                .unwrap_or(None);
        if done == Some(true) {
            break;
        }
        assert!(!low.is_finished(), "the first share ended alone: {:?}", low.await);
        assert!(std::time::Instant::now() < deadline, "the first share did not finish its partitions");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(!low.is_finished(), "a share with partitions missing waits");
    let stored: i64 = count(&pool, "projection_rebuild.stored_event").await;
    assert!(stored > 0 && stored < events, "the first share rebuilt only its partitions ({stored} of {events} events)");

    // Shares that would overlap the one running are refused, and change nothing.
    for (partitions, name) in [("8-9", "other"), ("16-31", "low")] {
        let (success, stderr) = finished(rebuild_command(
            &nats.url(),
            db.url(),
            &master_key,
            &["--partitions", partitions, "--projector-name", name],
        ))
        .await;
        assert!(!success, "share {name} {partitions} was let in: {stderr}");
        assert!(stderr.contains("share low holds partitions 0-15"), "{stderr}");
    }
    let shares: Vec<String> =
        sqlx::query_scalar("select projector from projection_rebuild.rebuild_share order by share")
            .fetch_all(&pool)
            .await
            .expect("shares");
    assert_eq!(shares, ["low"]);

    // The second share finishes the rebuild; exactly one of the two switches.
    let (high_ok, high) = finished(rebuild_command(
        &nats.url(),
        db.url(),
        &master_key,
        &["--partitions", "16-31", "--projector-name", "high"],
    ))
    .await;
    assert!(high_ok, "the high share failed: {high}");
    let (low_ok, low) = tokio::time::timeout(std::time::Duration::from_secs(60), low)
        .await
        .expect("the waiting share ended once the rebuild switched")
        .expect("join");
    assert!(low_ok, "the low share failed: {low}");
    assert!(
        low.contains("rebuilt") && low.contains("of partitions 0-15") && high.contains("of partitions 16-31"),
        "{low}\n{high}"
    );
    let switched = [&low, &high].iter().filter(|s| s.contains("kept in schema projection_previous")).count();
    let left = [&low, &high].iter().filter(|s| s.contains("another share of the rebuild switched")).count();
    assert_eq!((switched, left), (1, 1), "{low}\n{high}");
    let rebuilding: bool =
        sqlx::query_scalar("select exists (select from pg_namespace where nspname = 'projection_rebuild')")
            .fetch_one(&pool)
            .await
            .expect("schemas");
    assert!(!rebuilding, "the rebuild's schema was switched in");

    writing.store(false, Ordering::Relaxed);
    let (written, last) = writer.await.expect("writer");
    assert!(written > 5, "events arrived during the rebuild ({written})");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    while applied().await != (events + written as i64, 0) {
        assert!(std::time::Instant::now() < deadline, "the live projectors did not carry on: {:?}", applied().await);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let names: Vec<String> =
        sqlx::query_scalar("select projector from projection.projector_position order by projector")
            .fetch_all(&pool)
            .await
            .expect("positions");
    assert_eq!(names, ["high", "low"], "the live projectors' rows, and no other");

    let (_clean, clean_pool) = tests::projector::clean_projection(&nats.url(), &master_key, last).await;
    for (table, order) in read_models() {
        assert_eq!(checksum(&pool, table, order).await, checksum(&clean_pool, table, order).await, "{table} differs");
    }
}

/// A share that stops before finishing leaves its partitions to the next
/// process given them: under the same name, while another share of the
/// rebuild runs, it resumes from where the stopped one got to (what the
/// tables already hold is skipped), and the result equals a clean projection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_share_stopped_half_way_is_resumed_under_its_name_and_the_rebuild_equals_a_clean_projection() {
    let nats = NatsServer::start().await;
    let gateway = Arc::new(TestGateway::start(&nats.url()).await);
    let db = TestDatabase::create().await;
    let pool = db.pool().await;
    let master_key = gateway.path("master.key");
    let projector = LiveProjector::start_for(&gateway, &nats.url(), &pool).await;
    let until = NaiveDate::from_ymd_opt(2025, 3, 31).expect("date");
    let groups = safeguard::cli::seed::generate(29, 2, 40, until).expect("seed");
    let last = tests::gateway::load_groups(&gateway, groups).await;
    projector.wait_for(last).await;
    let share = |partitions: &str, name: &str, batch: &str| {
        let extra = ["--partitions", partitions, "--projector-name", name, "--batch", batch];
        rebuild_command(&nats.url(), db.url(), &master_key, &extra)
    };
    let position = |name: &'static str| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>(
                "select stream_seq from projection_rebuild.projector_position where projector = $1",
            )
            .bind(name)
            .fetch_optional(&pool)
            .await
            .unwrap_or(None)
            .unwrap_or(0)
        }
    };

    // One share runs and waits; the other is stopped part of the way through, a message at a time.
    let high = tokio::spawn(finished(share("16-31", "high", "500")));
    let mut low = tests::Process(share("0-15", "low", "1").stderr(std::process::Stdio::null()).spawn().expect("start"));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while position("low").await < 50 {
        assert!(std::time::Instant::now() < deadline, "the first low share made no progress");
        assert!(low.try_wait().expect("wait").is_none(), "the first low share ended before it was stopped");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let _ = low.kill();
    let _ = low.wait();
    let stopped_at = position("low").await;
    assert!(stopped_at < i64::try_from(last).expect("position"), "stopped part of the way ({stopped_at} of {last})");
    assert!(!high.is_finished(), "the other share waits for the stopped one's partitions");

    let (low_ok, low) = finished(share("0-15", "low", "500")).await;
    assert!(low_ok, "the low share failed: {low}");
    let (high_ok, high) = tokio::time::timeout(std::time::Duration::from_secs(60), high)
        .await
        .expect("the waiting share ended once the rebuild switched")
        .expect("join");
    assert!(high_ok, "{low}\n{high}");
    let rebuilt = |stderr: &str| -> i64 {
        tests::deploy::rebuilt_events(stderr)
            .and_then(|n| i64::try_from(n).ok())
            .expect("how many events a share rebuilt")
    };
    // Each process reports its own peak memory, for sizing a rebuild's machine.
    for stderr in [&low, &high] {
        let mib = tests::deploy::rebuilt_peak_mib(stderr).expect("a share reports its peak memory");
        assert!(mib > 1.0, "peak resident memory {mib} MiB: {stderr}");
    }
    // The share finishing last switches; the other one's count is its partitions' alone.
    assert!(low.contains("kept in schema projection_previous") && high.contains("another share"), "{low}\n{high}");
    let low_partitions = count(&pool, "projection.stored_event").await - rebuilt(&high);
    let resumed = rebuilt(&low);
    assert!(
        resumed > 0 && resumed < low_partitions,
        "the resumed share applied {resumed} events, not all {low_partitions} of its partitions again"
    );
    projector.wait_for(last).await;
    let (_clean, clean_pool) = tests::projector::clean_projection(&nats.url(), &master_key, last).await;
    for (table, order) in read_models() {
        assert_eq!(checksum(&pool, table, order).await, checksum(&clean_pool, table, order).await, "{table} differs");
    }
}

/// A rebuild gathers its own tables' planner statistics as they grow,
/// whether or not a live projector shares its database (whose watcher
/// would otherwise have been the only one to). Without them every batch's
/// reads and deletes of its children were planned as scans of whole
/// tables; the benchmark's rebuilds, on a database with no live
/// projector, never had any. The database also holds the live schema as
/// every role leaves it before a projector has migrated it, created and
/// empty, which a first rebuild's switch once failed on.
#[tokio::test]
async fn a_rebuild_with_no_live_projector_beside_it_arrives_with_its_tables_analysed() {
    let nats = NatsServer::start().await;
    let gateway = Arc::new(TestGateway::start(&nats.url()).await);
    let db = TestDatabase::create().await;
    let pool = db.pool().await;
    let until = NaiveDate::from_ymd_opt(2025, 3, 31).expect("date");
    let groups = safeguard::cli::seed::generate(31, 1, 30, until).expect("seed");
    let events: i64 = groups.iter().map(|g| g.len() as i64).sum();
    assert!(events > 200, "enough events to pass autoanalyze's threshold ({events})");
    tests::gateway::load_groups(&gateway, groups).await;

    rebuild(nats.url(), db.url().to_owned(), gateway.path("master.key")).await;
    assert_eq!(count(&pool, "projection.stored_event").await, events);
    let unanalysed: Vec<String> = sqlx::query_scalar(
        "select relname::text from pg_stat_user_tables
          where schemaname = 'projection' and relname in ('stored_event', 'chronology_entry')
            and last_analyze is null order by 1",
    )
    .fetch_all(&pool)
    .await
    .expect("statistics");
    assert!(unanalysed.is_empty(), "the rebuilt tables arrived without statistics: {unanalysed:?}");
}
