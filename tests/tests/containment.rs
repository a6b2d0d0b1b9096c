//! When something does go wrong on the read side, the damage is contained
//! and impossible to miss. A subject whose rows PostgreSQL refuses is
//! parked (the rest of the stream goes on, reads of it say they are stale,
//! the metrics and `/readyz` say so, `safeguard parked retry` recovers it);
//! a projector that cannot make progress is reported stalled within the
//! timer interval; messages that are not the gateway's stored events are
//! dead letters and stop nothing. Each runs a real projector process, as
//! `safeguard serve --role projector` runs in production.

use serde_json::{Value, json};
use std::time::{Duration, Instant};
use tests::fixtures::{event, registered};
use tests::gateway::{TestGateway, tokens};
use tests::query::TestQuery;
use tests::{NatsServer, Process, TestDatabase, free_port};

const HARINGEY: &str = "E09000014";

struct Backbone {
    nats: NatsServer,
    gateway: TestGateway,
    db: TestDatabase,
    pool: sqlx::PgPool,
    query: TestQuery,
    listen: String,
    _projector: Option<Process>,
}

impl Backbone {
    /// Everything but the projector, on a migrated database (so a test can
    /// change the schema before anything is applied).
    async fn start() -> Self {
        let nats = NatsServer::start().await;
        let gateway = TestGateway::start(&nats.url()).await;
        let db = TestDatabase::create().await;
        let pool = db.pool().await;
        projections::migrate(&pool, projections::LIVE_SCHEMA).await.expect("migrate");
        let query = TestQuery::start(&nats.url(), db.url(), &gateway).await;
        let listen = format!("127.0.0.1:{}", free_port());
        Self { nats, gateway, db, pool, query, listen, _projector: None }
    }

    /// A projector process looking at the stream every 200 ms, calling a
    /// stall after 2 s.
    async fn start_projector(&mut self) {
        self._projector = Some(tests::projector::spawn_process(
            &self.nats.url(),
            self.db.url(),
            &self.gateway.path("master.key"),
            1000,
            &self.listen,
            &["--health-interval-ms", "200", "--stall-after-ms", "2000"],
        ));
        self.until("the projector to serve /readyz", Duration::from_secs(30), |b| async move {
            b.http(&b.projector("/readyz")).await.0 != 0
        })
        .await;
    }

    fn projector(&self, path: &str) -> String {
        format!("http://{}{path}", self.listen)
    }

    async fn http(&self, url: &str) -> (u16, String) {
        match reqwest::get(url).await {
            Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
            Err(_) => (0, String::new()),
        }
    }

    /// A metric of the projector's `/metrics`, by name.
    async fn metric(&self, name: &str) -> Option<f64> {
        let (_, text) = self.http(&self.projector("/metrics")).await;
        text.lines()
            .find(|l| l.starts_with(&format!("{name}{{")))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }

    async fn publish(&self, events: Vec<Value>) -> u64 {
        let r = self.gateway.post(tokens::ADMIN, &Value::Array(events)).await;
        assert_eq!(r.status, 201, "{}", r.text);
        r.last_stream_sequence()
    }

    async fn until<'a, F, Fut>(&'a self, what: &str, within: Duration, mut check: F)
    where
        F: FnMut(&'a Self) -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = Instant::now() + within;
        while !check(self).await {
            assert!(Instant::now() < deadline, "waited {within:?} for {what}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn applied_to(&self, position: u64) {
        self.until(&format!("position {position}"), Duration::from_secs(60), |b| async move {
            tests::projector::stored_position(&b.pool).await >= position
        })
        .await;
    }

    /// `safeguard parked ARGS` against this database, with its output and whether it succeeded.
    fn parked(&self, args: &[&str]) -> (bool, String) {
        let output = std::process::Command::new(tests::safeguard_binary())
            .arg("parked")
            .args(args)
            .env("DATABASE_URL", self.db.url())
            .env("NATS_URL", self.nats.url())
            .env("SAFEGUARD_MASTER_KEY", self.gateway.path("master.key"))
            .env("SAFEGUARD_PUBLIC_KEY", self.gateway.path("signing.key.pub"))
            .env("RUST_LOG", "warn")
            .output()
            .expect("run safeguard parked");
        let text = String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
        (output.status.success(), text)
    }
}

fn seen(id: &str, child: &str, day: u32) -> Value {
    event(
        id,
        "child.seen",
        child,
        &format!("2024-02-{day:02}T10:00:00Z"),
        json!({"seen_by": "W1", "seen_alone": true, "context": "statutory_visit"}),
    )
}

fn entries(answer: &tests::query::Answer) -> usize {
    answer.json["entries"].as_array().map_or(0, Vec::len)
}

#[tokio::test]
async fn a_subject_the_read_models_refuse_is_parked_the_rest_goes_on_and_a_retry_recovers_it() {
    let mut sys = Backbone::start().await;
    let (a, b) = (uuid::Uuid::new_v4().to_string(), uuid::Uuid::new_v4().to_string());
    // A constraint that refuses one child's rows: a stand-in for any bug
    // that makes one subject's rows unwritable.
    sqlx::query(&format!("alter table sighting add constraint refuse_one_child check (child_id <> '{b}')"))
        .execute(&sys.pool)
        .await
        .expect("add the constraint");
    sys.start_projector().await;

    // Both children in one batch, with one of A's visits.
    let first =
        sys.publish(vec![registered("a-1", &a, HARINGEY), registered("b-1", &b, HARINGEY), seen("a-2", &a, 1)]).await;
    sys.applied_to(first).await;
    // B's first visit is the row the read models refuse, in a batch with A's.
    let second = sys.publish(vec![seen("b-2", &b, 2), seen("a-3", &a, 3)]).await;
    sys.applied_to(second).await;
    // Later events of B wait behind it, in order; A's go on.
    let last = sys.publish(vec![seen("b-3", &b, 4), seen("a-4", &a, 5), seen("b-4", &b, 6)]).await;
    sys.applied_to(last).await;

    let ok = sys.query.get(tokens::ADMIN, &format!("/v1/children/{a}/chronology")).await;
    assert_eq!((ok.status, entries(&ok)), (200, 4), "{}", ok.text);
    assert!(ok.json["stale"].is_null() && ok.headers.get("x-read-stale").is_none());
    assert!(ok.headers.get("x-read-position").is_some(), "every read carries the read models' position");

    let stale = sys.query.get(tokens::ADMIN, &format!("/v1/children/{b}/chronology")).await;
    // What is known: the registration, from before the first event that failed.
    assert_eq!((stale.status, entries(&stale)), (200, 1), "{}", stale.text);
    assert_eq!(stale.json["stale"]["reason"], "parked");
    assert_eq!(stale.json["stale"]["waiting"], 3);
    let header = stale.headers.get("x-read-stale").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    assert!(header.starts_with("parked; stream_seq="), "{header}");

    let row: (i64, String) = sqlx::query_as("select stream_seq, error from parked_subject where subject = $1")
        .bind(&b)
        .fetch_one(&sys.pool)
        .await
        .expect("the parking");
    assert!(row.1.contains("refuse_one_child"), "the error names the constraint: {}", row.1);
    assert!(!row.1.contains("HAR") && !row.1.contains("2019-03-04"), "the error repeats no value: {}", row.1);

    sys.until("the metrics to count the parked subject", Duration::from_secs(10), |s| async move {
        s.metric("safeguard_projector_parked_subjects").await == Some(1.0)
    })
    .await;
    assert_eq!(sys.metric("safeguard_projector_parkings_total").await, Some(1.0));
    assert!(sys.metric("safeguard_projector_last_error_timestamp_seconds").await.unwrap_or(0.0) > 1.0e9);
    assert_eq!(sys.metric("safeguard_projector_stalled").await, Some(0.0), "parking is not a stall");
    let (status, body) = sys.http(&sys.projector("/readyz")).await;
    assert_eq!(status, 200);
    assert!(body.contains("1 subjects parked"), "{body}");
    let ready = sys.query.get_with(None, "/readyz", &[]).await;
    assert_eq!(ready.json["read_models"]["parked"], 1, "{}", ready.text);

    let (listed, out) = sys.parked(&[]);
    assert!(listed && out.contains(&b) && out.contains("refuse_one_child"), "{out}");
    // Retrying before the cause is fixed changes nothing and says so (exit 3).
    let (fixed, out) = sys.parked(&["retry"]);
    assert!(!fixed && out.contains("still parked"), "{out}");

    sqlx::query("alter table sighting drop constraint refuse_one_child").execute(&sys.pool).await.expect("drop");
    let (fixed, out) = sys.parked(&["retry", "--subject", &b]);
    assert!(fixed && out.contains("applied 3 waiting messages"), "{out}");
    let recovered = sys.query.get(tokens::ADMIN, &format!("/v1/children/{b}/chronology")).await;
    assert_eq!((entries(&recovered), recovered.json["stale"].clone()), (4, Value::Null), "{}", recovered.text);
    sys.until("the metrics to clear", Duration::from_secs(10), |s| async move {
        s.metric("safeguard_projector_parked_subjects").await == Some(0.0)
    })
    .await;

    // Later events of the recovered child are applied as any other's.
    let later = sys.publish(vec![seen("b-5", &b, 7)]).await;
    sys.applied_to(later).await;

    // The read models equal a clean rebuild, and verify finds the copy whole.
    let (_clean, clean_pool) =
        tests::projector::clean_projection(&sys.nats.url(), &sys.gateway.path("master.key"), later).await;
    assert_eq!(
        tests::tables::differences(&sys.pool, &clean_pool).await,
        Vec::<&str>::new(),
        "differs from a clean rebuild"
    );
    let verified = sys.query.get(tokens::NATIONAL_AUDITOR, "/v1/verify").await;
    assert_eq!(verified.status, 200, "{}", verified.text);
    assert_eq!(verified.json["ok"], true, "{}", verified.text);
}

#[tokio::test]
async fn a_projector_that_cannot_progress_is_reported_stalled_within_the_timer_interval() {
    let mut sys = Backbone::start().await;
    sys.start_projector().await;
    let a = uuid::Uuid::new_v4().to_string();
    let first = sys.publish(vec![registered("a-1", &a, HARINGEY)]).await;
    sys.applied_to(first).await;
    // The watcher looks every 200 ms: lag is 0 from its first look after the batch.
    sys.until(
        "no lag",
        Duration::from_secs(5),
        |s| async move { s.metric("safeguard_projector_lag").await == Some(0.0) },
    )
    .await;

    // Another session holds a lock the projector's next batch needs.
    let mut holder = sys.pool.begin().await.expect("begin");
    sqlx::query("lock table chronology_entry in access exclusive mode").execute(&mut *holder).await.expect("lock");
    let waiting = sys.publish(vec![seen("a-2", &a, 1)]).await;

    sys.until("the projector to report lag", Duration::from_secs(5), |s| async move {
        s.metric("safeguard_projector_lag").await.unwrap_or(0.0) >= 1.0
    })
    .await;
    sys.until("stalled", Duration::from_secs(8), |s| async move {
        s.metric("safeguard_projector_stalled").await == Some(1.0)
    })
    .await;
    let seconds = sys.metric("safeguard_projector_lag_seconds").await.unwrap_or(0.0);
    assert!(seconds >= 2.0, "the oldest waiting event is at least the stall interval old: {seconds}");
    sys.until("lag seconds to rise while stalled", Duration::from_secs(3), |s| async move {
        s.metric("safeguard_projector_lag_seconds").await.unwrap_or(0.0) > seconds
    })
    .await;
    let (status, body) = sys.http(&sys.projector("/readyz")).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("stalled"), "{body}");
    // Readers are told too.
    let read = sys.query.get(tokens::ADMIN, &format!("/v1/caseloads?council={HARINGEY}")).await;
    assert_eq!(read.headers.get("x-read-stale").and_then(|v| v.to_str().ok()), Some("stalled"));
    assert_eq!(read.headers.get("x-read-position").and_then(|v| v.to_str().ok()), Some(first.to_string().as_str()));
    let ready = sys.query.get_with(None, "/readyz", &[]).await;
    assert_eq!(ready.json["read_models"]["stalled"], true, "{}", ready.text);

    holder.rollback().await.expect("release the lock");
    sys.applied_to(waiting).await;
    sys.until("the stall to clear", Duration::from_secs(5), |s| async move {
        s.metric("safeguard_projector_stalled").await == Some(0.0)
    })
    .await;
    assert_eq!(sys.metric("safeguard_projector_lag").await, Some(0.0));
    assert_eq!(sys.http(&sys.projector("/readyz")).await.0, 200);
}

#[tokio::test]
async fn messages_that_are_not_the_gateways_stored_events_are_dead_letters_and_stop_nothing() {
    let mut sys = Backbone::start().await;
    sys.start_projector().await;
    let a = uuid::Uuid::new_v4().to_string();
    let first = sys.publish(vec![registered("a-1", &a, HARINGEY)]).await;
    sys.applied_to(first).await;
    let child = events::Subject::parse(events::catalogue::SubjectKind::Child, &a).expect("child");

    let client = tests::connect(&sys.nats.url()).await;
    let js = async_nats::jetstream::new(client);
    let stored = tests::gateway::subject_history(&sys.nats.url(), &child).await.remove(0);
    let mut altered: Value = serde_json::from_slice(&stored).expect("json");
    altered["data"]["la_child_id"] = json!("FORGED1");
    // On subjects of children the gateway never serves: a subject holding
    // a message that is not a stored event is refused by the gateway too.
    let fresh = || {
        events::Subject::parse(events::catalogue::SubjectKind::Child, &uuid::Uuid::new_v4().to_string()).expect("child")
    };
    let (c, other) = (fresh(), fresh());
    altered["subject"] = json!(c.to_string());
    // Hash-true documents whose data the catalogue does not describe: a
    // field renamed (a read model would once have read it as absent and
    // been silently emptied), and a personal field in clear where the
    // stored form has it sealed (a leak).
    let rehashed = |mut doc: Value, data: Value| {
        doc["subject"] = json!(fresh().to_string());
        doc["data"] = data;
        let subject = events::subjects::event_subject(
            &events::Subject::parse(events::catalogue::SubjectKind::Child, doc["subject"].as_str().expect("subject"))
                .expect("child"),
        );
        doc["hash"] = json!(events::chain::content_hash(doc.as_object().expect("object")).to_string());
        (subject, serde_json::to_vec(&doc).expect("json"))
    };
    let original: Value = serde_json::from_slice(&stored).expect("json");
    let mut renamed = original["data"].clone();
    let local = renamed["la_child_id"].take();
    renamed.as_object_mut().expect("data").remove("la_child_id");
    renamed["local_child_id"] = local;
    let (renamed_subject, renamed) = rehashed(original.clone(), renamed);
    let mut in_clear = original["data"].clone();
    in_clear["person"] = json!({"given_name": "FORGED1"});
    let (clear_subject, in_clear) = rehashed(original, in_clear);
    let poison: [(String, Vec<u8>, &str); 6] = [
        (events::subjects::event_subject(&c), b"not json".to_vec(), "JSON"),
        (events::subjects::event_subject(&c), serde_json::to_vec(&json!({"id": 1})).expect("json"), "must be"),
        (events::subjects::event_subject(&c), serde_json::to_vec(&altered).expect("json"), "hash"),
        // A true event replayed onto another child's subject.
        (events::subjects::event_subject(&other), stored.clone(), "subject"),
        (renamed_subject, renamed, "/data/local_child_id: is not a known field"),
        (clear_subject, in_clear, "/data/person: must be a sealed value"),
    ];
    for (subject, payload, _) in &poison {
        js.publish(subject.clone(), payload.clone().into()).await.expect("publish").await.expect("ack");
    }
    // An audit record the audit table would refuse.
    let bad_access = json!({"id": uuid::Uuid::new_v4(), "child": a, "principal": "x", "endpoint": "GET", "at": "2024-01-01T00:00:00Z", "outcome": "maybe"});
    js.publish(events::subjects::access_subject(&child), serde_json::to_vec(&bad_access).expect("json").into())
        .await
        .expect("publish")
        .await
        .expect("ack");

    // The stream goes on past them.
    let last = sys.publish(vec![seen("a-2", &a, 1)]).await;
    sys.applied_to(last).await;
    let chronology = sys.query.get(tokens::ADMIN, &format!("/v1/children/{a}/chronology")).await;
    assert_eq!(entries(&chronology), 2, "{}", chronology.text);
    let reasons: Vec<String> = sqlx::query_scalar("select reason from dead_letter order by stream_seq")
        .fetch_all(&sys.pool)
        .await
        .expect("dead letters");
    assert_eq!(reasons.len(), poison.len(), "{reasons:?}");
    for (reason, (_, _, expected)) in reasons.iter().zip(&poison) {
        assert!(reason.contains(expected), "{reason} should name {expected}");
        assert!(!reason.contains("FORGED1"), "a reason repeats no value: {reason}");
    }
    assert_eq!(sys.metric("safeguard_projector_dead_letters_total").await, Some(poison.len() as f64));
    assert_eq!(sys.metric("safeguard_projector_interruptions_total").await, Some(0.0));

    // The audit consumer keeps the refused record and goes on: a real read is logged after it.
    sys.until("the audit dead letter", Duration::from_secs(10), |s| async move {
        sqlx::query_scalar::<_, i64>("select count(*) from audit.dead_letter").fetch_one(&s.pool).await.unwrap_or(0)
            == 1
    })
    .await;
    let log = sys.query.get(tokens::ADMIN, &format!("/v1/children/{a}/access-log")).await;
    assert_eq!(log.status, 200, "{}", log.text);
    sys.until("the audit consumer to apply the reads after it", Duration::from_secs(10), |s| async move {
        sqlx::query_scalar::<_, i64>("select count(*) from audit.access_event").fetch_one(&s.pool).await.unwrap_or(0)
            >= 2
    })
    .await;
    assert_eq!(sys.metric("safeguard_projector_audit_dead_letters_total").await, Some(1.0));
}

/// The alert rules in `ops/prometheus` pass Prometheus's own checker and
/// unit tests, and every projector metric they name is one a real
/// projector serves (a renamed metric would leave an alert that never fires).
#[tokio::test]
async fn the_alert_rules_pass_promtool_and_name_metrics_a_projector_serves() {
    let dir = tests::workspace_root().join("ops/prometheus");
    for args in [vec!["check", "rules", "alerts.yml"], vec!["test", "rules", "alerts.test.yml"]] {
        let out = std::process::Command::new("promtool")
            .args(&args)
            .current_dir(&dir)
            .output()
            .expect("run promtool (Debian's prometheus package, which ops/test installs)");
        assert!(
            out.status.success(),
            "promtool {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    let mut sys = Backbone::start().await;
    sys.start_projector().await;
    let (_, served) = sys.http(&sys.projector("/metrics")).await;
    let rules = std::fs::read_to_string(dir.join("alerts.yml")).expect("alerts.yml");
    let named: std::collections::BTreeSet<&str> = rules
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("safeguard_projector_"))
        .collect();
    assert!(named.len() >= 5, "{named:?}");
    for metric in named {
        assert!(
            served.lines().any(|l| l.starts_with(&format!("{metric}{{"))),
            "the projector serves no {metric}:\n{served}"
        );
    }
}
