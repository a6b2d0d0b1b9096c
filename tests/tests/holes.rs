//! The ways around the backbone's promises that an adversarial review found
//! (issue 17), each reproduced through the public interface with a real
//! credential and named after what it proves.

use serde_json::{Value, json};
use tests::fixtures::{event, registered};
use tests::gateway::tokens;
use tests::system::System;

const HARINGEY: &str = "E09000014";
const ISLINGTON: &str = "E09000019";

fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// The pointers a refusal names.
fn pointers(answer: &Value) -> Vec<String> {
    answer["errors"].as_array().into_iter().flatten().filter_map(|e| e["pointer"].as_str().map(str::to_owned)).collect()
}

/// The council the read side holds the child in.
async fn council_of(sys: &System, child: &str) -> Option<String> {
    sqlx::query_scalar("select council from child_status where child_id = $1::uuid")
        .bind(child)
        .fetch_one(&sys.pool)
        .await
        .expect("child_status")
}

#[tokio::test]
async fn a_childs_council_changes_only_by_transfer_and_its_registration_is_never_retracted() {
    let sys = System::start().await;
    let child = new_id();
    let registration = registered("reg", &child, HARINGEY);
    let seen = json!({"seen_by": new_id(), "seen_alone": true, "context": "statutory_visit"});
    sys.publish(
        tokens::HARINGEY,
        vec![registration.clone(), event("visit", "child.seen", &child, "2024-02-01T10:00:00Z", seen.clone())],
    )
    .await;

    // A correction of the registration naming another council: refused,
    // at the field, and nothing stored.
    let mut elsewhere = registration["data"].clone();
    elsewhere["council"] = ISLINGTON.into();
    let moving = event(
        "move",
        "record.corrected",
        &child,
        "2024-02-02T10:00:00Z",
        json!({"corrects": "reg", "reason": "wrong council", "data": elsewhere}),
    );
    let refused = sys.gateway.post(tokens::HARINGEY, &json!([moving])).await;
    assert_eq!(refused.status, 422, "{}", refused.text);
    assert_eq!(pointers(&refused.json), ["/data/data/council"], "{}", refused.text);

    // Retracting the registration: refused too.
    let hiding = event(
        "hide",
        "record.retracted",
        &child,
        "2024-02-02T10:00:00Z",
        json!({"retracts": "reg", "reason": "entered in error"}),
    );
    let refused = sys.gateway.post(tokens::HARINGEY, &json!([hiding])).await;
    assert_eq!(refused.status, 422, "{}", refused.text);
    assert_eq!(pointers(&refused.json), ["/data/retracts"], "{}", refused.text);

    // Correcting the registration's other fields still works.
    let mut fixed = registration["data"].clone();
    fixed["sex"] = "M".into();
    sys.publish(
        tokens::HARINGEY,
        vec![event(
            "fix",
            "record.corrected",
            &child,
            "2024-02-02T10:00:00Z",
            json!({"corrects": "reg", "reason": "sex recorded wrongly", "data": fixed}),
        )],
    )
    .await;

    // Both sides still hold the child in Haringey: its practitioners read
    // it, its publisher publishes, Islington's may not.
    let path = format!("/v1/children/{child}/chronology");
    assert_eq!(sys.query.get(tokens::HARINGEY, &path).await.status, 200);
    assert_eq!(council_of(&sys, &child).await.as_deref(), Some(HARINGEY));
    let more = event("visit-2", "child.seen", &child, "2024-03-01T10:00:00Z", seen.clone());
    sys.publish(tokens::HARINGEY, vec![more]).await;
    let islington = event("isl", "child.seen", &child, "2024-03-02T10:00:00Z", seen.clone());
    assert_eq!(sys.gateway.post(tokens::ISLINGTON, &json!([islington.clone()])).await.status, 403);

    // A transfer moves it, on both sides at once.
    let transfer = event("out", "child.transferred", &child, "2024-04-01T10:00:00Z", json!({"council": ISLINGTON}));
    sys.publish(tokens::HARINGEY, vec![transfer]).await;
    sys.publish(tokens::ISLINGTON, vec![islington]).await;
    let late = event("late", "child.seen", &child, "2024-04-02T10:00:00Z", seen);
    assert_eq!(sys.gateway.post(tokens::HARINGEY, &json!([late])).await.status, 403);
    assert_eq!(sys.query.get(tokens::HARINGEY, &path).await.status, 403, "Haringey's practitioners no longer read it");
    assert_eq!(council_of(&sys, &child).await.as_deref(), Some(ISLINGTON));
}

/// The stored documents of `child`'s subject, as the stream holds them.
async fn stored_documents(sys: &System, child: &str) -> Vec<Value> {
    let subject = events::Subject::parse(events::catalogue::SubjectKind::Child, child).expect("a child");
    tests::gateway::subject_history(&sys.nats.url(), &subject)
        .await
        .iter()
        .map(|bytes| serde_json::from_slice(bytes).expect("a stored document"))
        .collect()
}

/// Item 3: anything on the event subjects that the gateway did not sign,
/// or that does not continue its subject's chain, is a dead letter: it
/// gives no access, and the gateway's own next event still chains to the
/// last true one.
#[tokio::test]
async fn an_event_the_gateway_did_not_sign_or_chain_is_a_dead_letter_and_opens_nothing() {
    let sys = System::start().await;
    let child = new_id();
    let concern = json!({"concern_id": "C1", "summary": "bruising seen at nursery"});
    sys.publish(
        tokens::HARINGEY,
        vec![
            registered("reg", &child, HARINGEY),
            event("concern", "concern.raised", &child, "2024-02-01T10:00:00Z", concern),
        ],
    )
    .await;
    let stored = stored_documents(&sys, &child).await;
    let head = stored.last().expect("two events").clone();

    // Any process on an unsecured server can publish to the event subjects.
    // A review naming a reviewer, hash-true and linked to the true head,
    // but signed by a key the gateway never had.
    let mut forged = head.clone();
    forged["id"] = json!("forged-review");
    forged["type"] = json!("review.opened");
    forged["data"] = json!({"review_id": "R1", "kind": "cspr", "reviewers": ["panel-reviewer"]});
    forged["sequence"] = json!(3);
    forged["prevhash"] = head["hash"].clone();
    let stranger = events::chain::signing_key_from_seed([7; 32]);
    let forged = events::chain::seal(forged.as_object().expect("a document").clone(), &stranger);
    // A true event of this very subject, replayed: signed, but out of chain.
    let replayed = serde_json::to_vec(&stored[0]).expect("json");
    let nats_subject = events::subjects::event_subject(
        &events::Subject::parse(events::catalogue::SubjectKind::Child, &child).expect("a child"),
    );
    let js = async_nats::jetstream::new(tests::connect(&sys.nats.url()).await);
    for payload in [serde_json::to_vec(&forged).expect("json"), replayed] {
        js.publish(nats_subject.clone(), payload.into()).await.expect("publish").await.expect("stored");
    }

    // The gateway folds past them: its next event is the subject's third.
    let seen = json!({"seen_by": new_id(), "seen_alone": true, "context": "statutory_visit"});
    let results =
        sys.publish(tokens::HARINGEY, vec![event("visit", "child.seen", &child, "2024-03-01T10:00:00Z", seen)]).await;
    assert_eq!(results[0]["sequence"], 3, "{results:?}");

    // Nothing forged opened the record, and the true history is whole.
    let path = format!("/v1/children/{child}/chronology");
    assert_eq!(sys.query.get(tokens::REVIEWER, &path).await.status, 403, "the forged review gives no access");
    let chronology = sys.query.get(tokens::ADMIN, &path).await;
    let types: Vec<&str> =
        chronology.json["entries"].as_array().expect("entries").iter().filter_map(|e| e["type"].as_str()).collect();
    assert_eq!(types, ["child.registered", "concern.raised", "child.seen"], "{}", chronology.text);
    let reasons: Vec<String> = sqlx::query_scalar("select reason from dead_letter order by stream_seq")
        .fetch_all(&sys.pool)
        .await
        .expect("dead letters");
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(reasons[0].contains("signature"), "{}", reasons[0]);
    assert!(reasons[1].contains("chain"), "{}", reasons[1]);
}

/// Item 3, second half: the single server `ops/run` starts
/// (`ops/nats/safeguard.conf`) admits the roles' own users and no one
/// else, with the cluster's allow lists: a process without a role's seed
/// cannot connect, and a role cannot write the event subjects unless it is
/// the gateway.
#[tokio::test]
async fn the_single_server_of_ops_run_admits_only_each_roles_own_user() {
    let server = tests::secure::SingleServer::start().await;

    let stranger = async_nats::ConnectOptions::new()
        .connection_timeout(std::time::Duration::from_secs(5))
        .connect(server.url())
        .await;
    assert!(stranger.is_err(), "a connection without a role's key is refused");

    // The operator makes the streams; the gateway stores events on them.
    let out = std::process::Command::new(tests::safeguard_binary())
        .arg("streams")
        .envs(server.env("operator"))
        .output()
        .expect("run safeguard streams");
    assert!(out.status.success(), "safeguard streams: {}", String::from_utf8_lossy(&out.stderr));
    let options = tests::gateway::Options { creds: Some(server.seed("gateway")), ..tests::gateway::Options::default() };
    let gateway = tests::gateway::TestGateway::start_with(&server.url(), options).await;
    let child = new_id();
    let r = gateway.post(tokens::HARINGEY, &registered("reg", &child, HARINGEY)).await;
    assert_eq!(r.status, 201, "{}", r.text);

    // The query role, holding its own seed, may not put anything on the event subjects.
    let seed = std::fs::read_to_string(server.seed("query")).expect("seed");
    let (errors_tx, mut errors) = tokio::sync::mpsc::unbounded_channel();
    let query = async_nats::ConnectOptions::with_nkey(seed.trim().to_owned())
        .event_callback(move |event| {
            let tx = errors_tx.clone();
            async move {
                if let async_nats::Event::ServerError(e) = event {
                    let _ = tx.send(e.to_string());
                }
            }
        })
        .connect(server.url())
        .await
        .expect("the query role connects with its seed");
    let subject = events::subjects::event_subject(
        &events::Subject::parse(events::catalogue::SubjectKind::Child, &child).expect("a child"),
    );
    query.publish(subject.clone(), "forged".into()).await.expect("queued");
    query.flush().await.expect("flush");
    let refused = tokio::time::timeout(std::time::Duration::from_secs(10), errors.recv())
        .await
        .expect("the server refuses the publish")
        .expect("an error");
    assert!(refused.contains("Permissions Violation"), "{refused}");
    let operator =
        async_nats::jetstream::new(platform::bus::connect(&server.nats_args("operator")).await.expect("operator"));
    let stream = operator.get_stream(platform::bus::EVENTS_STREAM).await.expect("the event stream");
    let last = stream.get_last_raw_message_by_subject(&subject).await.expect("the subject's last event");
    let last: Value = serde_json::from_slice(&last.payload).expect("the gateway's event, not the forgery");
    assert_eq!(last["id"], "reg");
}

/// Starts `safeguard serve --role gateway` with the files in `dir`, the
/// master key at `master` and `env`, and waits (a minute at most) for it to
/// stop by itself: whether it failed, and what it said.
async fn gateway_refusing_to_start(
    nats: &tests::NatsServer,
    dir: &std::path::Path,
    master: &std::path::Path,
    env: &[(&str, &str)],
) -> (bool, String) {
    let out = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        tokio::process::Command::new(tests::safeguard_binary())
            .args(["serve", "--role", "gateway"])
            .env("NATS_URL", nats.url())
            .env("SAFEGUARD_PRINCIPALS", dir.join("principals.toml"))
            .env("SAFEGUARD_SIGNING_KEY", dir.join("signing.key"))
            .env("SAFEGUARD_MASTER_KEY", master)
            .env("SAFEGUARD_LISTEN", "127.0.0.1:0")
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the gateway stops by itself")
    .expect("run the gateway");
    (!out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Item 4: an admin's council scope was honoured for aggregates only, so an
/// admin "limited" to one council read and erased children anywhere. No
/// such entry loads now: the role covers every council or is not given.
#[tokio::test]
async fn an_admin_limited_to_some_councils_is_refused_by_name_at_start_and_by_the_token_command() {
    let nats = tests::NatsServer::start().await;
    let dir = tempfile::tempdir().expect("a directory");
    let principals = dir.path().join("principals.toml");
    let entry = format!(
        "[[principal]]\nname = \"haringey-admin\"\ntoken_sha256 = \"{}\"\nroles = [\"admin\"]\ncouncils = [\"{HARINGEY}\"]\n",
        platform::principals::token_sha256("limited-admin-token")
    );
    std::fs::write(&principals, entry).expect("write principals");
    let master = dir.path().join("master.key");
    let (stopped, stderr) =
        gateway_refusing_to_start(&nats, dir.path(), &master, &[("SAFEGUARD_CREATE_KEYS", "1")]).await;
    assert!(stopped, "a gateway started with a council-limited admin");
    assert!(stderr.contains("principal 1 (haringey-admin)") && stderr.contains("admin"), "{stderr}");

    let token = |councils: &[&str]| {
        let mut command = std::process::Command::new(tests::safeguard_binary());
        command.args(["token", "--name", "someone", "--role", "admin"]);
        for c in councils {
            command.args(["--council", c]);
        }
        command.output().expect("run safeguard token")
    };
    let narrow = token(&[HARINGEY]);
    assert_eq!(narrow.status.code(), Some(2), "{}", String::from_utf8_lossy(&narrow.stderr));
    let unscoped = token(&[]);
    assert_eq!(unscoped.status.code(), Some(2), "no token is for every council unless asked");
    assert!(token(&["*"]).status.success());
}

/// Item 9: whether a record is sealed and whether a review is open followed
/// business time, so a `review.closed` or `record.sealed` dated in the past
/// changed nothing and a reviewer kept access. Access follows the order in
/// which such facts were recorded.
#[tokio::test]
async fn closing_a_review_or_sealing_a_record_takes_effect_whatever_date_it_carries() {
    let sys = System::start().await;
    let (reviewed, sealed) = (new_id(), new_id());
    sys.publish(
        tokens::HARINGEY,
        vec![registered("reg-r", &reviewed, HARINGEY), registered("reg-s", &sealed, HARINGEY)],
    )
    .await;
    let review = json!({"review_id": "CSPR-9", "kind": "cspr", "reviewers": ["panel-reviewer"]});
    let reason = || json!({"reason": "adoption"});
    sys.publish(
        tokens::ADMIN,
        vec![
            event("open", "review.opened", &reviewed, "2024-06-01T09:00:00Z", review),
            event("seal", "record.sealed", &sealed, "2024-01-10T09:00:00Z", reason()),
            event("unseal", "record.unsealed", &sealed, "2024-06-01T09:00:00Z", reason()),
        ],
    )
    .await;
    let path = |child: &str| format!("/v1/children/{child}/chronology");
    assert_eq!(sys.query.get(tokens::REVIEWER, &path(&reviewed)).await.status, 200, "the review is open");
    assert_eq!(sys.query.get(tokens::HARINGEY, &path(&sealed)).await.status, 200, "unsealed");

    // Recorded now, dated before the opening and the unsealing.
    sys.publish(
        tokens::ADMIN,
        vec![
            event("close", "review.closed", &reviewed, "2024-05-01T09:00:00Z", json!({"review_id": "CSPR-9"})),
            event("seal-again", "record.sealed", &sealed, "2024-03-01T09:00:00Z", reason()),
        ],
    )
    .await;
    assert_eq!(sys.query.get(tokens::REVIEWER, &path(&reviewed)).await.status, 403, "the review is closed");
    assert_eq!(sys.query.get(tokens::HARINGEY, &path(&sealed)).await.status, 403, "sealed again");
}

/// Item 5: a sealed child reached practitioners through the returns (its
/// local id in Annex A), and a 403 told any principal that a child was
/// sealed. Returns carry sealed children for admins only and say how many
/// they left out; every child-level refusal reads the same, its reason kept
/// in the access log.
#[tokio::test]
async fn a_sealed_child_reaches_no_practitioner_through_a_return_or_a_refusal() {
    let sys = System::start().await;
    let (open, sealed, elsewhere) = (new_id(), new_id(), new_id());
    let referral = |id: &str, child: &str| {
        event(
            id,
            "referral.received",
            child,
            "2024-03-01T10:00:00Z",
            json!({"referral_id": id, "source": "6", "nfa": false}),
        )
    };
    sys.publish(
        tokens::HARINGEY,
        vec![
            registered("reg-o", &open, HARINGEY),
            referral("R-open", &open),
            registered("reg-s", &sealed, HARINGEY),
            referral("R-sealed", &sealed),
        ],
    )
    .await;
    sys.publish(tokens::ISLINGTON, vec![registered("reg-e", &elsewhere, ISLINGTON)]).await;
    let seal = event("seal", "record.sealed", &sealed, "2024-04-01T10:00:00Z", json!({"reason": "adoption"}));
    sys.publish(tokens::ADMIN, vec![seal]).await;

    // Annex A list 3 (referrals) for the six months to 1 May 2024.
    let path = format!("/v1/returns/annex-a?council={HARINGEY}&list=3&date=2024-05-01");
    let local = |child: &str| format!("L{}", &child[..8]);
    let practitioner = sys.query.get(tokens::HARINGEY, &path).await;
    assert_eq!(practitioner.status, 200, "{}", practitioner.text);
    assert!(practitioner.text.contains(&local(&open)), "{}", practitioner.text);
    assert!(!practitioner.text.contains(&local(&sealed)), "the sealed child is left out: {}", practitioner.text);
    let withheld = |a: &tests::gateway::Response| {
        a.headers.get("x-sealed-children-withheld").and_then(|v| v.to_str().ok()).map(str::to_owned)
    };
    assert_eq!(withheld(&practitioner).as_deref(), Some("1"));
    let admin = sys.query.get(tokens::ADMIN, &path).await;
    assert!(admin.text.contains(&local(&sealed)), "an admin's return is whole: {}", admin.text);
    assert_eq!(withheld(&admin).as_deref(), Some("0"));

    // A sealed child of its own council and a child of another read alike.
    let chronology = |child: &str| format!("/v1/children/{child}/chronology");
    let refused_sealed = sys.query.get(tokens::HARINGEY, &chronology(&sealed)).await;
    let refused_elsewhere = sys.query.get(tokens::HARINGEY, &chronology(&elsewhere)).await;
    assert_eq!((refused_sealed.status, refused_elsewhere.status), (403, 403));
    assert_eq!(refused_sealed.json["detail"], refused_elsewhere.json["detail"], "{}", refused_sealed.text);
    assert!(!refused_sealed.text.contains("sealed"), "{}", refused_sealed.text);
    // The reason is in the access log, for those who audit it, once the
    // audit consumer has applied the refusal.
    sys.projector.wait_for_audit().await;
    let log = sys.query.get(tokens::ADMIN, &format!("/v1/children/{sealed}/access-log")).await;
    let reasons: Vec<&str> = log.json["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["outcome"] == "refused")
        .filter_map(|e| e["reason"].as_str())
        .collect();
    assert_eq!(reasons, ["this child's record is sealed"], "{}", log.text);
}

/// Item 11: a master key was made silently when its path was wrong, so a
/// gateway started with a mistyped SAFEGUARD_MASTER_KEY wrapped new
/// children's keys under a key nobody else had. Keys are made only when
/// asked for (`--create-keys`); otherwise a missing key stops the role,
/// naming the path, and nothing is made.
#[tokio::test]
async fn a_role_whose_master_key_is_missing_refuses_to_start_unless_told_to_make_one() {
    let nats = tests::NatsServer::start().await;
    let dir = tempfile::tempdir().expect("a directory");
    let principals = dir.path().join("principals.toml");
    std::fs::write(&principals, tests::gateway::principals_toml()).expect("write principals");
    let master = dir.path().join("mistyped.key");
    let (stopped, stderr) = gateway_refusing_to_start(&nats, dir.path(), &master, &[]).await;
    assert!(stopped, "a gateway started without its master key");
    assert!(stderr.contains("mistyped.key") && stderr.contains("--create-keys"), "{stderr}");
    assert!(!master.exists(), "no master key was made");
}

/// Opens a raw connection to `base` (`http://host:port`).
async fn raw_connection(base: &str) -> tokio::net::TcpStream {
    let addr = base.trim_start_matches("http://").trim_end_matches('/').to_owned();
    tokio::net::TcpStream::connect(addr).await.expect("connect")
}

/// Everything the server sends on `stream` until it closes the connection,
/// or `None` if it has not closed it within `within`.
async fn until_closed(stream: &mut tokio::net::TcpStream, within: std::time::Duration) -> Option<String> {
    use tokio::io::AsyncReadExt as _;
    let mut answer = Vec::new();
    match tokio::time::timeout(within, stream.read_to_end(&mut answer)).await {
        Ok(_) => Some(String::from_utf8_lossy(&answer).into_owned()),
        Err(_) => None,
    }
}

/// Item 6: no client holds a role for long. Headers sent a byte at a time,
/// an idle connection and a body that never finishes are each cut off; a
/// flood is answered 503 rather than queued; a body is not read before its
/// sender is known, nor beyond what the endpoint needs; and event streams
/// are capped per principal and in all.
#[tokio::test]
async fn a_slow_or_greedy_client_holds_no_role_for_long() {
    use std::time::Duration;
    use tokio::io::AsyncWriteExt as _;
    let http = platform::http::Limits {
        header_read: Duration::from_millis(700),
        request: Duration::from_millis(1500),
        in_flight: 2,
        connections: 64,
    };
    let nats = tests::NatsServer::start().await;
    let gateway = tests::gateway::TestGateway::start_with(
        &nats.url(),
        tests::gateway::Options { http, ..tests::gateway::Options::default() },
    )
    .await;
    let base = gateway.url("");

    // Headers a byte at a time: the connection is closed once the header time is up.
    let mut slow = raw_connection(&base).await;
    slow.write_all(b"POST /v1/events HTTP/1.1\r\n").await.expect("write");
    let dribble = tokio::spawn(async move {
        for byte in b"Host: gateway\r\nAuthorization: Bearer x".iter().cycle() {
            if slow.write_all(&[*byte]).await.is_err() {
                return slow;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        slow
    });
    let mut slow = tokio::time::timeout(Duration::from_secs(5), dribble)
        .await
        .expect("the server stops taking headers a byte at a time")
        .expect("the writer");
    assert!(until_closed(&mut slow, Duration::from_secs(2)).await.is_some());

    // An idle connection is closed too.
    let mut idle = raw_connection(&base).await;
    assert!(until_closed(&mut idle, Duration::from_secs(5)).await.is_some(), "an idle connection is closed");

    // A body that never finishes is answered 408.
    let stalled_body = || async {
        let mut c = raw_connection(&base).await;
        let head = format!(
            "POST /v1/events HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer {}\r\nContent-Type: \
             application/json\r\nContent-Length: 1000\r\n\r\n[{{\"id\":",
            tokens::HARINGEY
        );
        c.write_all(head.as_bytes()).await.expect("write");
        c
    };
    let (mut first, mut second) = (stalled_body().await, stalled_body().await);
    // Two requests in flight are all this gateway answers at once: once both
    // stalled ones are in hand (well within their deadline), the next is refused at once.
    let deadline = std::time::Instant::now() + Duration::from_secs(1);
    let busy = loop {
        let r = gateway.post(tokens::HARINGEY, &registered("reg-busy", &new_id(), HARINGEY)).await;
        if r.status != 201 || std::time::Instant::now() > deadline {
            break r;
        }
    };
    assert_eq!(busy.status, 503, "{}", busy.text);
    assert_eq!(busy.json["type"], "/problems/busy", "{}", busy.text);
    let answer = until_closed(&mut first, Duration::from_secs(5)).await.expect("the stalled request is answered");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("application/problem+json"), "{answer}");
    let _ = until_closed(&mut second, Duration::from_secs(5)).await.expect("the second too");
    let later = gateway.post(tokens::HARINGEY, &registered("reg-later", &new_id(), HARINGEY)).await;
    assert_eq!(later.status, 201, "{}", later.text);

    // The query role reads no body before it knows the sender, and no more than it needs.
    let db = tests::TestDatabase::create().await;
    let limits = tests::query::Limits {
        http,
        streams: 3,
        streams_per_principal: 2,
        stream_recheck: Duration::from_secs(1),
        ..Default::default()
    };
    let query = tests::query::TestQuery::start_limited(&nats.url(), db.url(), &gateway, limits).await;
    let announced = |path: &str, token: Option<&str>, origin: bool| {
        let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
        let origin = if origin { format!("Origin: {}\r\n", query.url("")) } else { String::new() };
        let host = query.url("").trim_start_matches("http://").to_owned();
        format!(
            "POST {path} HTTP/1.1\r\nHost: {host}\r\n{auth}{origin}Content-Type: application/json\r\nContent-Length: \
             2000000\r\n\r\n"
        )
    };
    for (path, token, origin, status) in [
        ("/v1/children/lookup", None, false, "401"),
        ("/v1/children/lookup", Some(tokens::HARINGEY), false, "413"),
        ("/ui/sign-in", None, true, "413"),
    ] {
        let mut c = raw_connection(&query.url("")).await;
        c.write_all(announced(path, token, origin).as_bytes()).await.expect("write");
        let mut head = [0u8; 12];
        use tokio::io::AsyncReadExt as _;
        tokio::time::timeout(Duration::from_secs(1), c.read_exact(&mut head))
            .await
            .unwrap_or_else(|_| panic!("{path} answered before its 2 MB body was sent"))
            .expect("read");
        assert_eq!(&String::from_utf8_lossy(&head)[9..12], status, "{path}");
    }

    // Event streams: two a principal, three in all.
    let stream = |token: &'static str, council: &'static str| {
        let url = query.url(&format!("/v1/indicators/stream?council={council}"));
        async move { reqwest::Client::new().get(url).bearer_auth(token).send().await.expect("the query role answers") }
    };
    let a = stream(tokens::HARINGEY, HARINGEY).await;
    let b = stream(tokens::HARINGEY, HARINGEY).await;
    assert_eq!((a.status().as_u16(), b.status().as_u16()), (200, 200));
    let third = stream(tokens::HARINGEY, HARINGEY).await;
    assert_eq!(third.status(), 429, "a third stream of one principal");
    assert!(third.headers().contains_key("retry-after"));
    let problem: Value = third.json().await.expect("problem+json");
    assert_eq!(problem["type"], "/problems/too-many-streams");
    let c = stream(tokens::ADMIN, ISLINGTON).await;
    assert_eq!(c.status(), 200, "another principal's first");
    assert_eq!(stream(tokens::DASHBOARD, HARINGEY).await.status(), 429, "a fourth in all");
    drop(a);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let d = stream(tokens::DASHBOARD, HARINGEY).await;
        if d.status() == 200 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "a closed stream's place is never given back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop((b, c));
}

/// Reads an event stream until the server ends it; whether it did within `within`.
async fn ends_within(mut response: reqwest::Response, within: std::time::Duration) -> bool {
    tokio::time::timeout(within, async { while let Ok(Some(_)) = response.chunk().await {} }).await.is_ok()
}

/// Item 7: a page session is bound to the token it was opened with, and an
/// event stream stops once its caller may no longer have it: after a
/// sign-out, and after the token is rotated.
#[tokio::test]
async fn sessions_and_streams_end_with_the_credential_that_opened_them() {
    use std::time::Duration;
    let sys = System::start().await;
    let base = sys.query.url("");
    let old_page = tests::query::PageSession::sign_in(&base, tokens::HARINGEY, "A. Worker").await;
    assert_eq!(old_page.get("/ui").await.status(), 200);

    // A stream on the page session ends when the session signs out.
    let signing_out = tests::query::PageSession::sign_in(&base, tokens::HARINGEY, "B. Worker").await;
    let page_stream = reqwest::Client::new()
        .get(format!("{base}/ui/indicators/stream?council={HARINGEY}"))
        .header("cookie", &signing_out.cookie)
        .send()
        .await
        .expect("the stream");
    assert_eq!(page_stream.status(), 200);
    let csrf = signing_out.csrf().await;
    assert_eq!(signing_out.sign_out(&csrf).await.status(), 303);
    assert!(ends_within(page_stream, Duration::from_secs(5)).await, "the stream outlived its sign-out");

    // A bearer stream opened with the token about to be rotated.
    let bearer_stream = reqwest::Client::new()
        .get(sys.query.url(&format!("/v1/indicators/stream?council={HARINGEY}")))
        .bearer_auth(tokens::HARINGEY)
        .send()
        .await
        .expect("the stream");
    assert_eq!(bearer_stream.status(), 200);

    // The token leaks; the operator rotates it in principals.toml and reloads.
    let rotated = "test-haringey-rotated-token";
    let path = sys.gateway.path("principals.toml");
    let text = std::fs::read_to_string(&path).expect("principals");
    let text = text
        .replace(&platform::principals::token_sha256(tokens::HARINGEY), &platform::principals::token_sha256(rotated));
    std::fs::write(&path, text).expect("write principals");
    nix::sys::signal::kill(nix::unistd::Pid::this(), nix::sys::signal::Signal::SIGHUP).expect("signal");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while sys.query.get(rotated, &format!("/v1/indicators?council={HARINGEY}")).await.status != 200 {
        assert!(std::time::Instant::now() < deadline, "the rotated token was never taken");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    assert_eq!(old_page.get("/ui").await.status(), 303, "a cookie minted with the old token is over");
    assert!(ends_within(bearer_stream, Duration::from_secs(5)).await, "the stream outlived its token");
    let new_page = tests::query::PageSession::sign_in(&base, rotated, "A. Worker").await;
    assert_eq!(new_page.get("/ui").await.status(), 200, "the new token signs in");
}

/// Item 11: the page session key is its own, not derived from the master
/// key: two query roles sharing the master key but not the session key do
/// not accept each other's sessions, and one sharing the session key does.
#[tokio::test]
async fn the_page_session_key_is_its_own_and_not_the_master_keys() {
    let sys = System::start().await;
    let page = tests::query::PageSession::sign_in(&sys.query.url(""), tokens::HARINGEY, "A. Worker").await;
    assert_eq!(page.get("/ui").await.status(), 200);

    let other_dir = tempfile::tempdir().expect("a directory");
    let other_key = other_dir.path().join("session.key");
    let other =
        tests::query::TestQuery::start_with_session_key(&sys.nats.url(), sys.db.url(), &sys.gateway, &other_key).await;
    let same = tests::query::TestQuery::start_with_session_key(
        &sys.nats.url(),
        sys.db.url(),
        &sys.gateway,
        &sys.gateway.path("session.key"),
    )
    .await;
    let get = |base: String| {
        let cookie = page.cookie.clone();
        async move {
            reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client")
                .get(format!("{base}/ui"))
                .header("cookie", cookie)
                .send()
                .await
                .expect("the query role answers")
                .status()
        }
    };
    assert_eq!(get(same.url("")).await, 200, "a query role sharing the session key accepts the session");
    assert_eq!(get(other.url("")).await, 303, "the master key alone does not open a session");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&other_key).expect("made").permissions());
    assert_eq!(mode & 0o777, 0o600, "the session key is its owner's alone");
}

/// Every message of the audit stream, raw.
async fn audit_payloads(sys: &System) -> Vec<(String, Vec<u8>)> {
    let js = async_nats::jetstream::new(tests::connect(&sys.nats.url()).await);
    let stream = js.get_stream(platform::bus::AUDIT_STREAM).await.expect("the audit stream");
    let last = stream.get_info().await.expect("info").state.last_sequence;
    let mut out = Vec::new();
    for seq in 1..=last {
        if let Ok(m) = stream.get_raw_message(seq).await {
            out.push((m.subject.to_string(), m.payload.to_vec()));
        }
    }
    out
}

/// Item 10: a purpose someone types is personal data. On the undeletable
/// audit stream it is sealed under the child's data key (and so erased
/// with it), withheld when there is no child to seal it for, and an
/// erasure's own reason is a code, never free text.
#[tokio::test]
async fn a_readers_purpose_is_sealed_for_its_child_and_erased_with_it() {
    let sys = System::start().await;
    let child = new_id();
    sys.publish(tokens::HARINGEY, vec![registered("reg", &child, HARINGEY)]).await;
    let why = "worried about Jane Doe's bruising";
    let path = format!("/v1/children/{child}/chronology");
    let read = sys.query.get_with(Some(tokens::HARINGEY), &path, &[("x-purpose", why)]).await;
    assert_eq!(read.status, 200, "{}", read.text);
    let lookup = reqwest::Client::new()
        .post(sys.query.url("/v1/children/lookup"))
        .bearer_auth(tokens::HARINGEY)
        .header("x-purpose", "looking for Jane Doe's brother")
        .json(&json!({"council": HARINGEY, "la_child_id": "NOBODY1"}))
        .send()
        .await
        .expect("lookup");
    assert_eq!(lookup.status(), 200);
    sys.projector.wait_for_audit().await;

    let clear = |bytes: &[u8]| String::from_utf8_lossy(bytes).contains("Jane Doe");
    let on_stream = audit_payloads(&sys).await;
    assert!(on_stream.iter().all(|(_, p)| !clear(p)), "a purpose in clear on the audit stream");
    let rows: Vec<Option<String>> =
        sqlx::query_scalar("select concat(purpose, purpose_kept::text) from audit.access_event")
            .fetch_all(&sys.pool)
            .await
            .expect("access rows");
    assert!(rows.iter().flatten().all(|r| !r.contains("Jane")), "a purpose in clear in the read model: {rows:?}");

    // The auditor reads it, opened with the child's key.
    let log_path = format!("/v1/children/{child}/access-log");
    let log = sys.query.get(tokens::AUDITOR, &log_path).await;
    assert_eq!(log.status, 200, "{}", log.text);
    let entry = log.json["entries"].as_array().expect("entries").iter().find(|e| e["purpose"] == why).cloned();
    assert_eq!(entry.expect("the read, with its purpose")["purpose_kept"], "sealed", "{}", log.text);

    // An erasure gives its basis as a code.
    let erase = |purpose: &'static str| {
        let child = child.clone();
        let gateway = &sys.gateway;
        async move {
            let r = gateway.erase(tokens::ADMIN, &child, &[("x-purpose", purpose)]).await;
            (r.status, r.json)
        }
    };
    let (status, refusal) = erase("mother asked; Jane Doe moved away").await;
    assert_eq!(status, 422, "{refusal}");
    assert_eq!(pointers(&refusal), ["/headers/x-purpose"], "{refusal}");
    let (status, answer) = erase("subject_request").await;
    assert_eq!(status, 200, "{answer}");
    sys.projector.wait_for_audit().await;
    let erasure = audit_payloads(&sys)
        .await
        .into_iter()
        .find(|(s, _)| s.starts_with("sg.audit.erasure."))
        .map(|(_, p)| serde_json::from_slice::<Value>(&p).expect("json"))
        .expect("the erasure record");
    assert_eq!(erasure["basis"], "subject_request");

    // Once the key is gone, so is what the reader wrote.
    let log = sys.query.get(tokens::AUDITOR, &log_path).await;
    assert_eq!(log.status, 200, "{}", log.text);
    assert!(!log.text.contains("Jane"), "{}", log.text);
    let kept: Vec<&str> =
        log.json["entries"].as_array().expect("entries").iter().filter_map(|e| e["purpose_kept"].as_str()).collect();
    assert!(kept.contains(&"erased with the child's data key"), "{kept:?}");
}

const BRUISE: &str = "bruise seen at nursery";

/// Registers `child` with a concern whose summary is [`BRUISE`].
async fn child_with_a_concern(gateway: &tests::gateway::TestGateway, child: &str) -> u64 {
    let concern = json!({"concern_id": "C1", "summary": BRUISE, "category": "PHY"});
    let r = gateway
        .post(
            tokens::HARINGEY,
            &json!([
                registered("reg", child, HARINGEY),
                event("concern", "concern.raised", child, "2024-02-01T10:00:00Z", concern)
            ]),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    r.last_stream_sequence()
}

/// Erases `child` through `gateway` as the admin, trying again while the
/// cluster answers 503 (a stream leader being elected after a node went),
/// and says whether the key was erased. An attempt answered 503 may have
/// erased it before failing, and the retry that finishes it then answers
/// `key_erased: false` (docs/security.md): so a 503 followed by a 200 with
/// the child's key gone counts as erased, which the roles' refusals after
/// it then show.
async fn erase_child(gateway: &tests::gateway::TestGateway, child: &str) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut interrupted = false;
    loop {
        let r = gateway.erase(tokens::ADMIN, child, &[("x-purpose", "retention_ended")]).await;
        if r.status == 503 && std::time::Instant::now() < deadline {
            interrupted = true;
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            continue;
        }
        assert_eq!(r.status, 200, "{}", r.text);
        return r.json["key_erased"] == true || interrupted;
    }
}

/// A later concern with free text about `child`: what a gateway holding a
/// stale key would seal. A 503 (a cluster electing a stream leader after a
/// node came back) is asked again, for 30 s at most.
async fn post_free_text(gateway: &tests::gateway::TestGateway, child: &str, n: usize) -> u16 {
    let concern = json!({"concern_id": format!("L{n}"), "summary": "seen again", "category": "PHY"});
    let e = event(&format!("later-{n}"), "concern.raised", child, "2024-03-01T10:00:00Z", concern);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let status = gateway.post(tokens::HARINGEY, &e).await.status;
        if status != 503 || std::time::Instant::now() > deadline {
            return status;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// Whether the anonymised export through `query` shows the concern's text.
/// A 503 (the access log's stream still electing a leader after a node
/// came back) is asked again, for 30 s at most.
async fn export_shows_text(query: &tests::query::TestQuery, child: &str) -> bool {
    let path = format!("/v1/children/{child}/chronology/export?format=json");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let export = query.get(tokens::HARINGEY, &path).await;
        if export.status == 503 && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            continue;
        }
        assert_eq!(export.status, 200, "{}", export.text);
        return export.text.contains(BRUISE);
    }
}

/// Item 8: erasure is one atomic step. A reader of the bucket never finds
/// a child with neither key nor tombstone (in which a gateway would make a
/// fresh key and accept readable personal data), the message that held
/// the key is securely erased, and no role uses or caches the erased key
/// once it has seen the erasure.
#[tokio::test]
async fn erasure_is_one_step_that_leaves_no_moment_without_key_or_tombstone() {
    let sys = System::start().await;
    let other_gateway = sys.gateway.sibling().await;
    let child = new_id();
    let last = child_with_a_concern(&sys.gateway, &child).await;
    sys.projector.wait_for(last).await;
    assert!(export_shows_text(&sys.query, &child).await, "the query role holds the key");
    assert_eq!(post_free_text(&other_gateway, &child, 0).await, 201, "the other gateway holds the key");

    // Watch the child's entry as closely as the bucket can be read, while it is erased.
    let js = async_nats::jetstream::new(tests::connect(&sys.nats.url()).await);
    let bucket = js.get_key_value(platform::bus::KEYS_BUCKET).await.expect("the key bucket");
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let reads = std::sync::Arc::new(AtomicUsize::new(0));
    let watcher = {
        let (bucket, stop, reads, child) = (bucket.clone(), stop.clone(), reads.clone(), child.clone());
        tokio::spawn(async move {
            let mut empty = 0;
            while !stop.load(Ordering::Relaxed) {
                match bucket.entry(child.clone()).await.expect("read the entry") {
                    Some(e) if e.operation == async_nats::jetstream::kv::Operation::Put => {}
                    _ => empty += 1,
                }
                reads.fetch_add(1, Ordering::Relaxed);
            }
            empty
        })
    };
    // Reads under way before the erasure, and for as many again after it.
    let read_at_least = |n: usize| {
        let reads = reads.clone();
        async move {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while reads.load(Ordering::Relaxed) < n {
                assert!(std::time::Instant::now() < deadline, "the entry is not being read");
                tokio::task::yield_now().await;
            }
        }
    };
    read_at_least(10).await;
    assert!(erase_child(&sys.gateway, &child).await, "the key was erased");
    read_at_least(reads.load(Ordering::Relaxed) + 10).await;
    stop.store(true, Ordering::Relaxed);
    let empty = watcher.await.expect("the watcher");
    let reads = reads.load(Ordering::Relaxed);
    assert!(reads > 10, "the entry was read {reads} times");
    assert_eq!(empty, 0, "{empty} of {reads} reads found neither key nor tombstone");

    // Only the tombstone is left: the key's message is erased, not merely superseded.
    let stream = js.get_stream(format!("KV_{}", platform::bus::KEYS_BUCKET)).await.expect("the bucket's stream");
    let subject = format!("$KV.{}.{child}", platform::bus::KEYS_BUCKET);
    let first = stream.direct_get_first_for_subject(subject).await.expect("the child's first message");
    assert_eq!(first.payload.as_ref(), b"erased", "a wrapped key is still on disk");

    // Every role that held the key stops using it, and never takes it up again.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut n = 1;
    while post_free_text(&other_gateway, &child, n).await != 409 {
        assert!(std::time::Instant::now() < deadline, "the other gateway went on sealing with the erased key");
        n += 1;
    }
    while export_shows_text(&sys.query, &child).await {
        assert!(std::time::Instant::now() < deadline, "the query role went on opening with the erased key");
    }
    for i in 0..20 {
        assert_eq!(post_free_text(&other_gateway, &child, 100 + i).await, 409);
        assert!(!export_shows_text(&sys.query, &child).await);
    }
}

/// Item 8, under a lagging replica: with the key bucket on three nodes, a
/// query role and a gateway whose only node was stopped through the
/// erasure (and so is behind when it comes back) stop using the key once
/// they learn of the erasure, and never take it up again from a read of
/// the lagging node.
#[tokio::test]
async fn erasure_holds_for_roles_reading_a_lagging_replica() {
    let cluster = tests::NatsCluster::start(3).await;
    let (first, lagging) = (cluster.node(0).url(), cluster.node(2).url());
    let options = tests::gateway::Options { replicas: 3, ..tests::gateway::Options::default() };
    let gateway = tests::gateway::TestGateway::start_with(&first, options).await;
    let db = tests::TestDatabase::create().await;
    let pool = db.pool().await;
    let projector = tests::projector::LiveProjector::start_for(&gateway, &first, &pool).await;
    let query = tests::query::TestQuery::start(&lagging, db.url(), &gateway).await;
    let behind = gateway.sibling_on(&lagging).await;

    let child = new_id();
    let last = child_with_a_concern(&gateway, &child).await;
    projector.wait_for(last).await;
    assert!(export_shows_text(&query, &child).await, "the query role on the lagging node holds the key");
    assert_eq!(post_free_text(&behind, &child, 0).await, 201, "so does the gateway on it");

    cluster.node(2).pause();
    // Let the two nodes left take over whatever the stopped one led: the
    // gateway stores events again before the erasure is asked for.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while gateway.post(tokens::HARINGEY, &json!([registered(&new_id(), &new_id(), HARINGEY)])).await.status != 201 {
        assert!(std::time::Instant::now() < deadline, "the cluster never took writes without the stopped node");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(erase_child(&gateway, &child).await, "the key was erased");
    // More writes to the bucket while the node is away, so it has more to catch up on.
    for i in 0..50 {
        let other = new_id();
        let r = gateway.post(tokens::HARINGEY, &json!([registered(&format!("reg-{i}"), &other, HARINGEY)])).await;
        assert!(r.status == 201 || r.status == 503, "{}", r.text);
    }
    cluster.node(2).resume();

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut n = 1;
    while post_free_text(&behind, &child, n).await != 409 {
        assert!(std::time::Instant::now() < deadline, "the gateway on the lagging node kept the erased key");
        n += 1;
    }
    while export_shows_text(&query, &child).await {
        assert!(std::time::Instant::now() < deadline, "the query role on the lagging node kept the erased key");
    }
    for i in 0..20 {
        assert_eq!(post_free_text(&behind, &child, 100 + i).await, 409, "a stale read brought the key back");
        assert!(!export_shows_text(&query, &child).await, "a stale read brought the key back");
    }
}
