//! The secured cluster (`ops/nats/cluster`): three nodes over TLS with one
//! NATS user per role. Every role does its work under its own permissions,
//! and no role can do what belongs to another: a dashboard cannot read the
//! event stream or publish an event, the projector and the query role cannot
//! publish events or change a stream, and even the gateway cannot delete or
//! purge the event stream. Streams and buckets are made by the operator's
//! credential (`safeguard streams`); no serving role may make, change, seal
//! or re-place a stream, or delete a consumer that is not its own.

use async_nats::jetstream;
use events::{EventType, examples};
use serde_json::{Value, json};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tests::gateway::{Options, TestGateway, tokens};
use tests::query::TestQuery;
use tests::secure::SecureCluster;
use tests::{TestDatabase, safeguard_binary};

/// Waits for the server to report a permissions violation to this client.
async fn violation(errors: &mut tokio::sync::mpsc::UnboundedReceiver<String>, what: &str) -> String {
    let error = tokio::time::timeout(Duration::from_secs(5), errors.recv())
        .await
        .unwrap_or_else(|_| panic!("no permissions violation reported for {what}"))
        .expect("the error channel is open");
    assert!(error.to_lowercase().contains("permissions violation"), "{what}: {error}");
    error
}

/// A JetStream context for requests the server will refuse: a refused
/// request is dropped without an answer, so it fails by timing out.
fn refused_js(client: async_nats::Client) -> jetstream::Context {
    let mut js = jetstream::new(client);
    js.set_timeout(Duration::from_millis(500));
    js
}

async fn message_count(js: &jetstream::Context) -> u64 {
    js.get_stream(platform::bus::EVENTS_STREAM).await.expect("stream").info().await.expect("info").state.messages
}

/// What a role other than the gateway may not do to the event stream.
async fn cannot_touch_the_event_stream(cluster: &SecureCluster, role: &str) {
    let (client, mut errors) = cluster.client(role).await;
    let subject = format!("sg.ev.00.child.{}", uuid::Uuid::new_v4());
    client.publish(subject.clone(), "{}".into()).await.expect("publish is sent");
    client.flush().await.expect("flush");
    let error = violation(&mut errors, &format!("{role} publishing an event")).await;
    assert!(error.contains("sg.ev.00.child"), "{error}");
    let js = refused_js(client);
    assert!(js.delete_stream(platform::bus::EVENTS_STREAM).await.is_err(), "{role} deleted the event stream");
    violation(&mut errors, &format!("{role} deleting the stream")).await;
}

/// The JetStream API requests that would destroy or hide history, or stop
/// another role, each made as `role`'s own NATS user: every one must be
/// refused by the server. (Sent without a reply subject: a refusal is
/// reported to the client as a permissions violation.)
async fn cannot_administer_the_streams(cluster: &SecureCluster, role: &str) {
    let (client, mut errors) = cluster.client(role).await;
    let keys = format!("KV_{}", platform::bus::KEYS_BUCKET);
    let mut requests: Vec<(String, Value)> = vec![
        (
            "$JS.API.STREAM.UPDATE.SG_EVENTS".into(),
            json!({"name": "SG_EVENTS", "subjects": ["sg.ev.>", "sg.id.>"], "max_msgs_per_subject": 1}),
        ),
        ("$JS.API.STREAM.UPDATE.SG_AUDIT".into(), json!({"name": "SG_AUDIT", "sealed": true})),
        (format!("$JS.API.STREAM.UPDATE.{keys}"), json!({"name": keys, "max_age": 1_000_000_000})),
        ("$JS.API.STREAM.CREATE.SG_ROGUE".into(), json!({"name": "SG_ROGUE", "subjects": ["sg.rogue"]})),
        ("$JS.API.STREAM.PEER.REMOVE.SG_EVENTS".into(), json!({"peer": "n1"})),
        ("$JS.API.STREAM.LEADER.STEPDOWN.SG_EVENTS".into(), json!({})),
        ("$JS.API.CONSUMER.LEADER.STEPDOWN.SG_EVENTS.sg-projector-main".into(), json!({})),
        ("$JS.API.STREAM.MSG.DELETE.SG_EVENTS".into(), json!({"seq": 1})),
        ("$JS.API.STREAM.PURGE.SG_AUDIT".into(), json!({})),
    ];
    if role != "projector" {
        requests.push(("$JS.API.CONSUMER.DELETE.SG_EVENTS.sg-projector-main".into(), json!({})));
        requests.push(("$JS.API.CONSUMER.DELETE.SG_AUDIT.sg-audit-projector".into(), json!({})));
    }
    for (subject, body) in requests {
        client.publish(subject.clone(), body.to_string().into()).await.expect("sent");
        client.flush().await.expect("flush");
        let error = violation(&mut errors, &format!("{role} sending {subject}")).await;
        assert!(error.contains(&subject), "{role}: {error}");
    }
}

/// `safeguard streams` with the operator's credential: what ops/cluster runs
/// before any role starts.
fn provision_as_operator(cluster: &SecureCluster) {
    let out = Command::new(safeguard_binary())
        .args(["streams", "--dashboard", "wall"])
        .envs(cluster.env("operator"))
        .output()
        .expect("run safeguard streams");
    assert!(out.status.success(), "safeguard streams: {}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_role_may_do_only_its_part_on_the_secured_cluster() {
    let cluster = SecureCluster::start().await;
    let url = cluster.urls();
    provision_as_operator(&cluster);

    // The gateway opens the streams the operator made, at three replicas, and stores events.
    let options =
        Options { replicas: 3, creds: Some(cluster.seed("gateway")), ca: Some(cluster.ca()), ..Options::default() };
    let gateway = TestGateway::start_with(&url, options).await;
    let child = uuid::Uuid::new_v4().to_string();
    let r = gateway.post(tokens::HARINGEY, &tests::fixtures::registered("p-1", &child, "E09000014")).await;
    assert_eq!(r.status, 201, "{}", r.text);

    // The projector, a real process with its own key, projects.
    let db = TestDatabase::create().await;
    let projector_log = tempfile::NamedTempFile::new().expect("a log file");
    let mut projector = tests::Process(
        Command::new(safeguard_binary())
            .args(["serve", "--role", "projector"])
            .envs(cluster.env("projector"))
            .env("DATABASE_URL", db.url())
            .env("SAFEGUARD_MASTER_KEY", gateway.path("master.key"))
            .env("SAFEGUARD_PUBLIC_KEY", gateway.path("signing.key.pub"))
            .env("SAFEGUARD_PROJECTOR_LISTEN", "127.0.0.1:0")
            .env("SAFEGUARD_NOTIFY_INTERVAL_MS", "100")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(projector_log.reopen().expect("the log file"))
            .spawn()
            .expect("start the projector"),
    );

    // A dashboard hears about changes to read models.
    let (dashboard, mut dashboard_errors) = cluster.client("dashboard").await;
    let mut changes = dashboard.subscribe("sg.changes.>").await.expect("subscribe to changes");
    dashboard.flush().await.expect("flush");

    // The query role reads, recording each read on the audit stream under its own key.
    let query = TestQuery::start_on(
        cluster.nats_args("query"),
        db.url(),
        &gateway.path("principals.toml"),
        &gateway.path("master.key"),
        &gateway.path("signing.key.pub"),
    )
    .await;
    let mut seen = examples::event(EventType::ChildSeen, "p-2", "2025-01-14T09:30:00Z");
    seen["subject"] = json!(child);
    let r = gateway.post(tokens::HARINGEY, &seen).await;
    assert_eq!(r.status, 201, "{}", r.text);
    // Free text is personal: the gateway makes and stores the child's data key in the key bucket.
    let mut concern = examples::event(EventType::ConcernRaised, "p-2b", "2025-01-15T09:30:00Z");
    concern["subject"] = json!(child);
    let r = gateway.post(tokens::HARINGEY, &concern).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let deadline = Instant::now() + Duration::from_secs(30);
    let chronology = loop {
        let a = query.get(tokens::HARINGEY, &format!("/v1/children/{child}/chronology")).await;
        if a.status == 200 && a.json["entries"].as_array().is_some_and(|e| e.len() == 3) {
            break a.json;
        }
        if projector.try_wait().expect("projector").is_some() {
            panic!("the projector exited: {}", std::fs::read_to_string(projector_log.path()).unwrap_or_default());
        }
        assert!(Instant::now() < deadline, "the chronology never showed the three events: {} {}", a.status, a.text);
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(chronology["entries"][1]["type"], "child.seen");
    // An event stream follows the change stream under the query role's own user.
    let mut sse = reqwest::Client::new()
        .get(query.url("/v1/indicators/stream?council=E09000014"))
        .bearer_auth(tokens::DASHBOARD)
        .send()
        .await
        .expect("the stream opens");
    assert_eq!(sse.status(), 200);
    let mut buffer = String::new();
    let first = tests::query::next_sse_event(&mut sse, &mut buffer).await;
    assert_eq!(first["council"], "E09000014");
    // A page session signed in and out under the query role's own key: the sign-out is recorded.
    let page = tests::query::PageSession::sign_in(&query.url(""), tokens::HARINGEY, "Cluster Check").await;
    assert_eq!(page.get("/ui").await.status(), 200);
    let csrf = page.csrf().await;
    assert_eq!(page.sign_out(&csrf).await.status(), 303, "the query role may record a sign-out");
    assert_eq!(page.get("/ui").await.status(), 303, "the signed-out session is over");
    // The gateway erases a child's key under its own user: the tombstone by
    // compare-and-set, then the key's message securely erased.
    let erased = gateway.erase(tokens::ADMIN, &child, &[("x-purpose", "recorded_in_error")]).await;
    assert_eq!(erased.status, 200, "{}", erased.text);
    let change = tokio::time::timeout(Duration::from_secs(10), futures::StreamExt::next(&mut changes))
        .await
        .expect("a change notice reached the dashboard")
        .expect("subscription open");
    assert!(change.subject.starts_with("sg.changes."), "{}", change.subject);
    // A dashboard that was away resumes from the durable consumer the
    // operator made for it: the notices are kept on the change stream.
    let (wall, mut wall_errors) =
        cluster.client_with_inbox("dashboard", events::subjects::DASHBOARD_INBOX_PREFIX).await;
    let wall_js = jetstream::new(wall.clone());
    let consumer: jetstream::consumer::PullConsumer = wall_js
        .get_consumer_from_stream(events::subjects::dashboard_consumer("wall"), platform::bus::CHANGES_STREAM)
        .await
        .expect("the dashboard opens its consumer");
    let mut kept = consumer.fetch().max_messages(10).expires(Duration::from_secs(5)).messages().await.expect("pull");
    let notice = futures::StreamExt::next(&mut kept).await.expect("a kept notice").expect("message");
    assert!(notice.subject.starts_with("sg.changes."), "{}", notice.subject);
    notice.ack().await.expect("the dashboard acknowledges what it read");
    // All of that work was done within each role's allow list: no server
    // refused anything a role asked for (a refused request is only logged
    // there, and would surface as a time-out much later).
    for node in 0..3 {
        let log = std::fs::read_to_string(cluster.log(node)).unwrap_or_default();
        let refused: Vec<&str> = log.lines().filter(|l| l.contains("Violation")).collect();
        assert!(refused.is_empty(), "node {node} refused a role's own work: {refused:#?}");
    }

    // It may not make a consumer of its own: a consumer's delivery subject could be anything.
    let changes_stream = wall_js.get_stream(platform::bus::CHANGES_STREAM).await.expect("stream info");
    let own = changes_stream
        .create_consumer(jetstream::consumer::push::Config {
            deliver_subject: "sg.audit.access.forged".into(),
            ..Default::default()
        })
        .await;
    assert!(own.is_err(), "a dashboard made a consumer");
    violation(&mut wall_errors, "a dashboard making a consumer").await;

    let operator = jetstream::new(cluster.client("operator").await.0);
    let before = message_count(&operator).await;
    let stream = operator.get_stream(platform::bus::EVENTS_STREAM).await.expect("stream");
    assert_eq!(stream.cached_info().config.num_replicas, 3, "the event stream has three replicas");

    // A dashboard may not read the event stream, the audit stream or the
    // API, nor publish anything.
    for subject in ["sg.ev.>", "sg.audit.>", "_INBOX.>"] {
        let _ = dashboard.subscribe(subject).await;
        dashboard.flush().await.expect("flush");
        let error = violation(&mut dashboard_errors, &format!("a dashboard subscribing to {subject}")).await;
        assert!(error.contains(subject), "{error}");
    }
    dashboard.publish(format!("sg.ev.00.child.{child}"), "{}".into()).await.expect("sent");
    dashboard.flush().await.expect("flush");
    violation(&mut dashboard_errors, "a dashboard publishing an event").await;
    let dashboard_js = refused_js(dashboard.clone());
    assert!(dashboard_js.get_stream(platform::bus::EVENTS_STREAM).await.is_err(), "a dashboard read stream info");

    cannot_touch_the_event_stream(&cluster, "projector").await;
    cannot_touch_the_event_stream(&cluster, "query").await;
    cannot_touch_the_event_stream(&cluster, "dashboard").await;
    for role in ["gateway", "projector", "query", "dashboard"] {
        cannot_administer_the_streams(&cluster, role).await;
    }

    // The gateway publishes events but may not delete or purge the stream.
    let (gateway_client, mut gateway_errors) = cluster.client("gateway").await;
    let gateway_js = refused_js(gateway_client);
    assert!(gateway_js.delete_stream(platform::bus::EVENTS_STREAM).await.is_err(), "the gateway deleted the stream");
    violation(&mut gateway_errors, "the gateway deleting the stream").await;
    let purge = refused_js(cluster.client("gateway").await.0)
        .get_stream(platform::bus::EVENTS_STREAM)
        .await
        .expect("the gateway may read stream info")
        .purge()
        .await;
    assert!(purge.is_err(), "the gateway purged the stream");

    // Nothing of all that reached the stream or changed a stream's settings.
    assert_eq!(message_count(&operator).await, before, "no refused action changed the stream");
    let events = operator.get_stream(platform::bus::EVENTS_STREAM).await.expect("stream").cached_info().clone();
    assert_eq!(events.config.max_messages_per_subject, -1, "unlimited per subject, as made");
    let audit = operator.get_stream(platform::bus::AUDIT_STREAM).await.expect("stream").cached_info().clone();
    assert!(!audit.config.sealed && audit.state.messages > 0, "the audit stream is neither sealed nor purged");
    let keys = operator.get_stream(format!("KV_{}", platform::bus::KEYS_BUCKET)).await.expect("bucket");
    assert_eq!(keys.cached_info().config.max_age, Duration::ZERO, "the key bucket keeps keys until erased");
    assert!(operator.get_stream("SG_ROGUE").await.is_err(), "no role made a stream");
    assert!(
        operator
            .get_stream(platform::bus::EVENTS_STREAM)
            .await
            .expect("stream")
            .consumer_info("sg-projector-main")
            .await
            .is_ok(),
        "the projector's consumer is still there"
    );
    let r = gateway
        .post(tokens::HARINGEY, &{
            let mut e = examples::event(EventType::ChildSeen, "p-3", "2025-01-15T09:30:00Z");
            e["subject"] = Value::String(child.clone());
            e
        })
        .await;
    assert_eq!(r.status, 201, "the gateway still stores: {}", r.text);
    let _ = projector.kill();
    let _ = projector.wait();
}
