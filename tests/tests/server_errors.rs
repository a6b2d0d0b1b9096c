//! Server errors, from outside: every answer carries a request id, and a
//! 5xx carries our own words and that id, never the internal cause (an
//! error from PostgreSQL or NATS, a file path, a connection string). The
//! cause goes to the role's log under the same id (checked in
//! `platform::telemetry`'s own tests).

use serde_json::json;
use std::time::Duration;
use tests::fixtures::registered;
use tests::gateway::{Response, TestGateway, tokens};
use tests::nats::NatsServer;
use tests::postgres::{PgCluster, TestDatabase};
use tests::query::TestQuery;

const HARINGEY: &str = "E09000014";

/// The id in the header, which must be a UUID and the same as the body's
/// `request_id` when the body has one.
fn request_id(r: &Response) -> uuid::Uuid {
    let header = r.headers.get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or_default();
    let id = uuid::Uuid::parse_str(header).unwrap_or_else(|_| panic!("x-request-id {header:?} is not a UUID"));
    if let Some(body) = r.json.get("request_id") {
        assert_eq!(body.as_str(), Some(header), "the body quotes the header's id: {}", r.text);
    }
    id
}

/// A server error's body quotes the id its cause is logged under.
fn quotes_its_request_id(r: &Response) {
    assert!(r.json["request_id"].is_string(), "a 5xx quotes its request id: {}", r.text);
    request_id(r);
}

/// Words that would mean an internal cause reached the caller.
fn assert_no_internals(r: &Response, also: &[&str]) {
    let text = r.text.to_lowercase();
    for word in [
        "sqlx",
        "pool timed out",
        "connection refused",
        "error communicating",
        "io error",
        "os error",
        "postgres://",
        "nats://",
    ]
    .iter()
    .chain(also)
    {
        assert!(!text.contains(&word.to_lowercase()), "the answer carries {word:?}: {}", r.text);
    }
}

#[tokio::test]
async fn every_answer_carries_a_fresh_request_id_and_a_caller_cannot_choose_it() {
    let nats = NatsServer::start().await;
    let gw = TestGateway::start(&nats.url()).await;
    let child = uuid::Uuid::new_v4().to_string();
    let stored = gw.post(tokens::HARINGEY, &registered("reg-1", &child, HARINGEY)).await;
    assert_eq!(stored.status, 201, "{}", stored.text);
    let refused = gw.post(tokens::HARINGEY, &json!({"specversion": "1.0"})).await;
    assert_eq!(refused.status, 422, "{}", refused.text);
    let (a, b) = (request_id(&stored), request_id(&refused));
    assert_ne!(a, b, "each request has its own id");
    // A caller's own header is not taken: it could carry anything into the log.
    let answer = reqwest::Client::new()
        .get(gw.url("/healthz"))
        .header("x-request-id", "forged\" injected=1")
        .send()
        .await
        .expect("the gateway answers");
    let header = answer.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    assert!(uuid::Uuid::parse_str(&header).is_ok(), "the gateway's own id, not the caller's: {header:?}");
}

#[tokio::test]
async fn a_query_role_that_cannot_read_its_keys_says_so_without_naming_the_file() {
    let nats = NatsServer::start().await;
    let gw = TestGateway::start(&nats.url()).await;
    let db = TestDatabase::create().await;
    let missing = gw.path("no-such-dir/signing.key.pub");
    let query =
        TestQuery::start_with(&nats.url(), db.url(), &gw.path("principals.toml"), &gw.path("master.key"), &missing)
            .await;
    let r = query.get(tokens::ADMIN, "/v1/verify").await;
    assert_eq!(r.status, 503, "{}", r.text);
    assert_eq!(r.content_type, "application/problem+json");
    assert_eq!(r.json["detail"], "the gateway's public keys cannot be read", "{}", r.text);
    quotes_its_request_id(&r);
    assert_no_internals(&r, &["no-such-dir", "signing.key.pub", "no such file"]);
}

#[tokio::test]
async fn with_postgresql_gone_the_query_role_answers_a_500_that_names_no_cause() {
    let nats = NatsServer::start().await;
    let gw = TestGateway::start(&nats.url()).await;
    let pg = PgCluster::start().await;
    let db = TestDatabase::create_on(&pg.admin_url()).await;
    let query = TestQuery::start(&nats.url(), db.url(), &gw).await;
    let path = format!("/v1/caseloads?council={HARINGEY}");
    let before = query.get(tokens::ADMIN, &path).await;
    assert_eq!(before.status, 200, "{}", before.text);
    pg.kill();
    // The pool notices within its acquire timeout (5 s).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let r = loop {
        let r = query.get(tokens::ADMIN, &path).await;
        if r.status >= 500 {
            break r;
        }
        assert!(tokio::time::Instant::now() < deadline, "still {} with PostgreSQL gone", r.status);
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(r.status, 500, "{}", r.text);
    assert_eq!(r.content_type, "application/problem+json");
    assert_eq!(r.json["type"], "/problems/internal");
    quotes_its_request_id(&r);
    let port = pg.port().to_string();
    assert_no_internals(&r, &[port.as_str(), db.name()]);
}

#[tokio::test]
async fn with_nats_gone_the_gateway_answers_a_503_in_its_own_words_with_the_request_id() {
    let mut nats = NatsServer::start().await;
    let gw = TestGateway::start_with(
        &nats.url(),
        tests::gateway::Options { publish_timeout: Duration::from_secs(1), ..tests::gateway::Options::default() },
    )
    .await;
    nats.kill();
    // A subject the gateway has never seen: it must read the stream first.
    let child = uuid::Uuid::new_v4().to_string();
    let r = gw.post(tokens::HARINGEY, &registered("reg-1", &child, HARINGEY)).await;
    assert_eq!(r.status, 503, "{}", r.text);
    quotes_its_request_id(&r);
    let url = nats.url();
    assert_no_internals(&r, &[url.as_str(), "timed out", "nats:"]);
}
