//! The gateway against real JetStream, through its HTTP API.

use events::{EventType, Subject, examples};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};
use tests::NatsServer;
use tests::gateway::{Options, TestGateway, stream_count, subject_history, tokens};

fn child_subject(id: &str) -> Subject {
    Subject::Child(events::ids::ChildId::parse(id).expect("child id"))
}

fn event(t: EventType, id: &str) -> Value {
    examples::event(t, id, "2025-01-14T09:30:00Z")
}

/// A child event for a given child.
fn for_child(t: EventType, id: &str, child: &str) -> Value {
    let mut e = event(t, id);
    e["subject"] = json!(child);
    e
}

fn new_child() -> String {
    uuid::Uuid::new_v4().to_string()
}

async fn register(gw: &TestGateway, child: &str) {
    let r = gw.post(tokens::HARINGEY, &for_child(EventType::ChildRegistered, &format!("reg-{child}"), child)).await;
    assert_eq!(r.status, 201, "{}", r.text);
}

fn verify(gw: &TestGateway, subject: &Subject, history: &[Vec<u8>]) -> Vec<events::Break> {
    let refs: Vec<&[u8]> = history.iter().map(Vec::as_slice).collect();
    events::chain::verify_history(&subject.to_string(), &refs, &gw.verifying_key(), None)
}

#[tokio::test]
async fn every_catalogue_type_is_accepted_from_a_principal_allowed_to_send_it() {
    let nats = NatsServer::start().await;
    let gw = TestGateway::start(&nats.url()).await;
    let order = [EventType::ChildRegistered, EventType::WorkerJoined, EventType::CouncilConfigured];
    let mut types: Vec<EventType> = order.to_vec();
    // The transfer comes last: afterwards the child belongs to Islington and
    // Haringey may no longer write to it.
    types.extend(
        EventType::ALL
            .iter()
            .copied()
            .filter(|t| !order.contains(t) && !t.amends() && *t != EventType::ChildTransferred),
    );
    // The corrected and retracted event must exist first: its id is the one
    // the examples name.
    let target = event(EventType::ReferralReceived, "lcs-20250114-000187");
    for (n, t) in types.iter().enumerate() {
        let token = if t.admin_only() { tokens::ADMIN } else { tokens::HARINGEY };
        let r = gw.post(token, &event(*t, &format!("all-{n}"))).await;
        assert_eq!(r.status, 201, "{t}: {}", r.text);
        assert_eq!(r.result(0)["duplicate"], false);
    }
    let r = gw.post(tokens::HARINGEY, &target).await;
    assert_eq!(r.status, 201, "{}", r.text);
    for t in [EventType::RecordCorrected, EventType::RecordRetracted, EventType::ChildTransferred] {
        let r = gw.post(tokens::HARINGEY, &event(t, &format!("late-{}", t.name()))).await;
        assert_eq!(r.status, 201, "{t}: {}", r.text);
    }
    // Now Islington's, the child is out of Haringey's scope.
    let r = gw.post(tokens::HARINGEY, &event(EventType::ChildSeen, "after-transfer")).await;
    assert_eq!(r.status, 403, "{}", r.text);
    assert_eq!(r.json["errors"][0]["pointer"], "/subject");
    let r = gw.post(tokens::ISLINGTON, &event(EventType::ChildSeen, "after-transfer")).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let child = child_subject(examples::CHILD);
    let history = subject_history(&nats.url(), &child).await;
    let child_types = EventType::ALL.iter().filter(|t| t.subject_kind() == events::SubjectKind::Child).count();
    // Every child type once, plus the referral that was corrected and the
    // sighting after the transfer.
    assert_eq!(history.len(), child_types + 2);
    assert_eq!(verify(&gw, &child, &history), vec![]);
}

#[tokio::test]
async fn a_batch_of_1000_is_stored_whole_and_chained() {
    let nats = NatsServer::start().await;
    let gw = TestGateway::start(&nats.url()).await;
    let child = new_child();
    let mut batch = vec![for_child(EventType::ChildRegistered, "b-0", &child)];
    for i in 1..1000 {
        batch.push(for_child(EventType::ChildSeen, &format!("b-{i}"), &child));
    }
    let r = gw.post(tokens::HARINGEY, &Value::Array(batch)).await;
    assert_eq!(r.status, 201, "{}", &r.text[..r.text.len().min(500)]);
    let results = r.json["results"].as_array().expect("results");
    assert_eq!(results.len(), 1000);
    for (i, result) in results.iter().enumerate() {
        assert_eq!(result["sequence"], i as u64 + 1);
        assert_eq!(result["id"], format!("b-{i}"));
    }
    let subject = child_subject(&child);
    let history = subject_history(&nats.url(), &subject).await;
    assert_eq!(history.len(), 1000);
    assert_eq!(verify(&gw, &subject, &history), vec![]);
    // Each event travels with its id-index entry.
    assert_eq!(stream_count(&nats.url()).await, 2000);
}

#[tokio::test]
async fn two_writers_with_the_same_expected_sequence_get_one_201_and_one_409() {
    let nats = NatsServer::start().await;
    let gw = TestGateway::start(&nats.url()).await;
    let child = new_child();
    register(&gw, &child).await;
    let mut a = for_child(EventType::ChildSeen, "race-a", &child);
    a["expectedsequence"] = json!(1);
    let mut b = for_child(EventType::ConcernRaised, "race-b", &child);
    b["expectedsequence"] = json!(1);
    let (ra, rb) = tokio::join!(gw.post(tokens::HARINGEY, &a), gw.post(tokens::HARINGEY, &b));
    let mut statuses = vec![ra.status, rb.status];
    statuses.sort();
    assert_eq!(statuses, vec![201, 409], "{} / {}", ra.text, rb.text);
    let loser = if ra.status == 409 { &ra } else { &rb };
    assert_eq!(loser.json["current_sequence"], 2);
    assert_eq!(loser.json["index"], 0);
    assert_eq!(loser.json["errors"][0]["pointer"], "/expectedsequence");
    assert_eq!(subject_history(&nats.url(), &child_subject(&child)).await.len(), 2);
}

#[tokio::test]
async fn fifty_concurrent_writers_on_two_gateways_extend_one_unbroken_chain() {
    let nats = NatsServer::start().await;
    let gw = TestGateway::start(&nats.url()).await;
    // A second gateway on the same stream: writers race through JetStream's
    // expected-sequence check, not only through one process's lock.
    let other = gw.sibling().await;
    let child = new_child();
    register(&gw, &child).await;
    let posts = (0..50).map(|i| {
        let target = if i % 2 == 0 { &gw } else { &other };
        let body = for_child(EventType::ChildSeen, &format!("w-{i}"), &child);
        async move { target.post(tokens::HARINGEY, &body).await }
    });
    let responses = futures::future::join_all(posts).await;
    let mut sequences = BTreeSet::new();
    for r in &responses {
        assert_eq!(r.status, 201, "{}", r.text);
        sequences.insert(r.result(0)["sequence"].as_u64().expect("sequence"));
    }
    assert_eq!(sequences, (2..=51).collect::<BTreeSet<u64>>());
    let subject = child_subject(&child);
    let history = subject_history(&nats.url(), &subject).await;
    assert_eq!(history.len(), 51);
    assert_eq!(verify(&gw, &subject, &history), vec![]);
}

/// A request longer than one atomic batch is written in rounds, and each
/// round's first event expects the subject's position as the round before
/// left it: a writer on another gateway that got in between the rounds
/// would have the second round refused and planned again, never forked.
/// JetStream keeps each message's headers, so the stored messages show what
/// every write expected.
#[tokio::test]
async fn every_round_of_a_long_request_expects_its_subjects_position() {
    let nats = NatsServer::start().await;
    let gw = TestGateway::start(&nats.url()).await;
    let (a, b) = (new_child(), new_child());
    register(&gw, &a).await;
    register(&gw, &b).await;
    // Two subjects interleaved across two rounds of 500.
    let batch: Vec<Value> = (0..1000)
        .map(|i| for_child(EventType::ChildSeen, &format!("long-{i}"), if i % 2 == 0 { &a } else { &b }))
        .collect();
    let js = async_nats::jetstream::new(nats.client().await);
    let stream = js.get_stream(events::subjects::EVENTS_STREAM).await.expect("the stream");
    // Each subject's position before the request: its registration.
    let mut last: std::collections::HashMap<String, u64> = std::collections::HashMap::new();
    for child in [&a, &b] {
        let registered = stream
            .get_last_raw_message_by_subject(&events::subjects::event_subject(&child_subject(child)))
            .await
            .expect("registered");
        last.insert(child.clone(), registered.sequence);
    }
    let r = gw.post(tokens::HARINGEY, &Value::Array(batch)).await;
    assert_eq!(r.status, 201, "{}", &r.text[..r.text.len().min(500)]);
    let mut expecting = Vec::new();
    for (i, result) in r.json["results"].as_array().expect("results").iter().enumerate() {
        let seq = result["stream_sequence"].as_u64().expect("stream_sequence");
        let message = stream.get_raw_message(seq).await.expect("the event");
        let expected = message
            .headers
            .get("Nats-Expected-Last-Subject-Sequence")
            .map(|v| v.as_str().parse::<u64>().expect("a sequence"));
        let subject = result["subject"].as_str().expect("subject").to_owned();
        if let Some(expected) = expected {
            assert_eq!(Some(&expected), last.get(&subject), "event {i} expects its subject's last position");
            expecting.push(i);
        }
        last.insert(subject, seq);
    }
    // The first event of each subject in each round, and no other.
    assert_eq!(expecting, vec![0, 1, 500, 501]);
}

#[tokio::test]
async fn an_old_id_retried_after_the_duplicate_window_and_a_restart_is_not_stored_twice() {
    let nats = NatsServer::start().await;
    let options = Options { duplicate_window: Duration::from_secs(1), ..Options::default() };
    let mut gw = TestGateway::start_with(&nats.url(), options).await;
    let child = new_child();
    register(&gw, &child).await;
    let fact = for_child(EventType::ContactRecorded, "late-retry", &child);
    let first = gw.post(tokens::HARINGEY, &fact).await;
    assert_eq!(first.status, 201, "{}", first.text);
    let before = stream_count(&nats.url()).await;

    // Past JetStream's own duplicate window: only the backbone's id index
    // and the subject's history can recognise the retry.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let again = gw.post(tokens::HARINGEY, &fact).await;
    assert_eq!(again.status, 201, "{}", again.text);
    assert_eq!(again.result(0)["duplicate"], true);
    for field in ["sequence", "stream_sequence", "recorded_at", "hash"] {
        assert_eq!(again.result(0)[field], first.result(0)[field], "{field}");
    }

    gw.restart().await; // a cold cache
    let after_restart = gw.post(tokens::HARINGEY, &fact).await;
    assert_eq!(after_restart.status, 201, "{}", after_restart.text);
    assert_eq!(after_restart.result(0)["duplicate"], true);
    assert_eq!(after_restart.result(0)["hash"], first.result(0)["hash"]);
    assert_eq!(stream_count(&nats.url()).await, before, "nothing more was stored");

    // The same id with other content is a conflict, in the same child or another.
    let mut changed = fact.clone();
    changed["data"]["summary"] = json!("A different account");
    let r = gw.post(tokens::HARINGEY, &changed).await;
    assert_eq!(r.status, 409, "{}", r.text);
    assert_eq!(r.json["errors"][0]["pointer"], "/id");
    let other_child = new_child();
    register(&gw, &other_child).await;
    let elsewhere = for_child(EventType::ContactRecorded, "late-retry", &other_child);
    let r = gw.post(tokens::HARINGEY, &elsewhere).await;
    assert_eq!(r.status, 409, "{}", r.text);
    assert_eq!(stream_count(&nats.url()).await, before + 2, "only the second registration was stored");
}

/// Writes the id's claim in the id index as the gateway does, as if the
/// gateway that wrote it had stopped before writing its event.
async fn claim_only(nats: &NatsServer, publisher: &str, id: &str, child: &str) {
    let js = async_nats::jetstream::new(nats.client().await);
    let subject = events::subjects::id_subject(
        &events::ids::PrincipalName::parse(publisher).expect("a name"),
        &events::ids::EventId::parse(id).expect("an id"),
    );
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Expected-Last-Subject-Sequence", "0");
    let claim = json!({ "subject": child, "sequence": 2 }).to_string();
    js.publish_with_headers(subject, headers, claim.into()).await.expect("sent").await.expect("the claim is stored");
}

/// A write stopped between the id's claim and its event: the publisher's
/// retry finds its id claimed for its own subject and completes the write,
/// once; an event claimed for another subject stays refused.
#[tokio::test]
async fn a_write_stopped_after_its_claim_is_completed_by_the_retry_and_only_once() {
    let nats = NatsServer::start().await;
    let gw = TestGateway::start(&nats.url()).await;
    let child = new_child();
    register(&gw, &child).await;
    claim_only(&nats, "haringey-csc", "interrupted", &child).await;
    let before = stream_count(&nats.url()).await;

    let fact = for_child(EventType::ContactRecorded, "interrupted", &child);
    let r = gw.post(tokens::HARINGEY, &fact).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.result(0)["duplicate"], false, "the event itself had never been stored");
    assert_eq!(r.result(0)["sequence"], 2);
    assert_eq!(stream_count(&nats.url()).await, before + 1, "the event only: the claim stood");
    let again = gw.post(tokens::HARINGEY, &fact).await;
    assert_eq!(again.status, 201, "{}", again.text);
    assert_eq!(again.result(0)["duplicate"], true);
    assert_eq!(again.result(0)["stream_sequence"], r.result(0)["stream_sequence"]);
    let subject = child_subject(&child);
    let history = subject_history(&nats.url(), &subject).await;
    assert_eq!(history.len(), 2);
    assert_eq!(verify(&gw, &subject, &history), vec![]);

    // Claimed for one child, sent for another: taken, whether or not its event was stored.
    let other = new_child();
    register(&gw, &other).await;
    claim_only(&nats, "haringey-csc", "claimed-elsewhere", &child).await;
    let before = stream_count(&nats.url()).await;
    let r = gw.post(tokens::HARINGEY, &for_child(EventType::ContactRecorded, "claimed-elsewhere", &other)).await;
    assert_eq!(r.status, 409, "{}", r.text);
    assert_eq!(r.json["errors"][0]["pointer"], "/id");
    assert_eq!(stream_count(&nats.url()).await, before, "nothing was stored");
}

#[tokio::test]
async fn a_restarted_nats_server_still_has_every_acknowledged_event() {
    let mut nats = NatsServer::start().await;
    let gw = TestGateway::start(&nats.url()).await;
    let child = new_child();
    register(&gw, &child).await;
    let mut acknowledged = Vec::new();
    for i in 0..30 {
        let r = gw.post(tokens::HARINGEY, &for_child(EventType::ChildSeen, &format!("k-{i}"), &child)).await;
        assert_eq!(r.status, 201, "{}", r.text);
        acknowledged.push(r.result(0)["hash"].as_str().expect("hash").to_owned());
    }
    nats.kill();
    nats.relaunch();
    nats.wait_ready().await;
    let subject = child_subject(&child);
    let history = subject_history(&nats.url(), &subject).await;
    assert_eq!(history.len(), 31);
    let stored: Vec<String> = history[1..]
        .iter()
        .map(|m| serde_json::from_slice::<Value>(m).expect("json")["hash"].as_str().expect("hash").to_owned())
        .collect();
    assert_eq!(stored, acknowledged);
    assert_eq!(verify(&gw, &subject, &history), vec![]);
}

#[tokio::test]
async fn personal_data_is_not_readable_in_the_raw_stream() {
    let nats = NatsServer::start().await;
    let gw = TestGateway::start(&nats.url()).await;
    let child = new_child();
    let mut registration = for_child(EventType::ChildRegistered, "pd-1", &child);
    registration["data"]["person"]["given_name"] = json!("Zebedee");
    registration["data"]["person"]["family_name"] = json!("Quennell-Fotheringay");
    let mut contact = for_child(EventType::ContactRecorded, "pd-2", &child);
    contact["data"]["summary"] = json!("Neighbour Marguerite Oyelaran-Pike heard crying");
    let r = gw.post(tokens::HARINGEY, &json!([registration, contact])).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let all: Vec<u8> = tests::gateway::stream_messages(&nats.url())
        .await
        .into_iter()
        .flat_map(|(s, p)| [s.into_bytes(), p].concat())
        .collect();
    let text = String::from_utf8_lossy(&all);
    for secret in ["Zebedee", "Quennell", "Marguerite", "Oyelaran", "9434765919", "Example Road", "heard crying"] {
        assert!(!text.contains(secret), "{secret} is readable in the stream");
    }
    // What is not personal stays readable: codes and dates.
    assert!(text.contains("\"la_child_id\":\"HAR0001234\""));
    assert!(text.contains("\"enc\":\"xchacha20poly1305\""));
    // Nor is it on disk in the server's store.
    let mut on_disk = Vec::new();
    collect_files(&nats.store_dir(), &mut on_disk);
    let disk = String::from_utf8_lossy(&on_disk);
    assert!(disk.contains("HAR0001234"), "the store holds the events");
    assert!(!disk.contains("Zebedee") && !disk.contains("Marguerite"));
}

fn collect_files(dir: &std::path::Path, out: &mut Vec<u8>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect_files(&path, out);
        } else if let Ok(bytes) = std::fs::read(&path) {
            out.extend(bytes);
        }
    }
}

#[tokio::test]
async fn with_nats_stopped_the_gateway_answers_503_within_its_timeout_and_reports_nothing_unstored() {
    let mut nats = NatsServer::start().await;
    let timeout = Duration::from_secs(2);
    let gw = TestGateway::start_with(&nats.url(), Options { publish_timeout: timeout, ..Options::default() }).await;
    let child = new_child();
    register(&gw, &child).await;
    let before = stream_count(&nats.url()).await;
    nats.kill();
    let started = Instant::now();
    let r = gw.post(tokens::HARINGEY, &for_child(EventType::ChildSeen, "while-down", &child)).await;
    let waited = started.elapsed();
    assert_eq!(r.status, 503, "{}", r.text);
    assert_eq!(r.content_type, "application/problem+json");
    assert_eq!(r.json["stored"], json!([]), "nothing is reported stored");
    // The answer comes from the gateway's own timeout, not a hung request.
    assert!(waited < timeout * 3, "answered after {waited:?}");
    nats.relaunch();
    nats.wait_ready().await;
    // A 503 promises only that nothing unlisted is reported stored. Writes
    // already on the wire when the server died may still have landed: the
    // id's claim alone, or the claim and its event.
    let after = stream_count(&nats.url()).await;
    assert!((before..=before + 2).contains(&after), "{before} then {after}");
    // Retrying the same request is safe either way: one event, sequence 2.
    // New, or the original if the batch on the wire landed after all.
    let r = post_until_stored(&gw, &for_child(EventType::ChildSeen, "while-down", &child)).await;
    assert_eq!(r.result(0)["sequence"], 2);
    let subject = child_subject(&child);
    let history = subject_history(&nats.url(), &subject).await;
    assert_eq!(history.len(), 2);
    assert_eq!(verify(&gw, &subject, &history), vec![]);
}

#[tokio::test]
async fn with_nats_hung_the_gateway_answers_503_after_its_timeout() {
    let nats = NatsServer::start().await;
    let timeout = Duration::from_secs(2);
    let gw = TestGateway::start_with(&nats.url(), Options { publish_timeout: timeout, ..Options::default() }).await;
    let child = new_child();
    register(&gw, &child).await;
    let before = stream_count(&nats.url()).await;
    nats.pause();
    let started = Instant::now();
    let r = gw.post(tokens::HARINGEY, &for_child(EventType::ChildSeen, "while-hung", &child)).await;
    let waited = started.elapsed();
    nats.resume();
    assert_eq!(r.status, 503, "{}", r.text);
    assert_eq!(r.json["stored"], json!([]), "nothing is reported stored");
    assert!(waited >= timeout && waited < timeout * 3, "answered after {waited:?}");
    // The batch was on the wire: it lands whole or not at all, and a retry is safe.
    let r = post_until_stored(&gw, &for_child(EventType::ChildSeen, "while-hung", &child)).await;
    assert_eq!(r.result(0)["sequence"], 2);
    assert_eq!(stream_count(&nats.url()).await, before + 2);
    let subject = child_subject(&child);
    let history = subject_history(&nats.url(), &subject).await;
    assert_eq!(verify(&gw, &subject, &history), vec![]);
}

/// Retries a POST until it is answered 201 (NATS coming back), with a deadline.
async fn post_until_stored(gw: &TestGateway, body: &Value) -> tests::gateway::Response {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = gw.post(tokens::HARINGEY, body).await;
        if r.status == 201 {
            return r;
        }
        assert!(Instant::now() < deadline, "still {}: {}", r.status, r.text);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// CloudEvents' binary content mode, as SDKs, Knative and Dapr send by
/// default: the attributes in `ce-*` headers (percent-encoded), the data as
/// the body. Stored exactly as the same event in structured mode would be;
/// a publisher's W3C trace context (the `traceparent` extension, or the
/// request's own header) travels as headers of the stored message, not in
/// the event, so a retry under a new trace is still the same event.
#[tokio::test]
async fn binary_mode_and_trace_context_are_taken_as_sdks_send_them() {
    let nats = NatsServer::start().await;
    let gw = TestGateway::start(&nats.url()).await;
    let child = new_child();
    register(&gw, &child).await;
    let seen = for_child(EventType::ChildSeen, "seen-binary", &child);
    let data = seen["data"].to_string().into_bytes();
    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let binary = [
        ("content-type", "application/json"),
        ("ce-specversion", "1.0"),
        ("ce-id", "seen-binary"),
        ("ce-type", "child.seen"),
        ("ce-subject", child.as_str()),
        // Percent-encoded: the HTTP binding lets a sender encode any character so.
        ("ce-time", "2025-01-14T09%3A30%3A00Z"),
        ("ce-source", "haringey-csc"),
        ("ce-significant", "True"),
        ("ce-authorrole", "social_worker"),
        ("ce-traceparent", PARENT),
        ("ce-tracestate", "vendor=abc"),
    ];
    let r = gw.post_with(tokens::HARINGEY, &binary, data.clone()).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let at = r.result(0)["stream_sequence"].as_u64().expect("position");
    let stream = async_nats::jetstream::new(tests::connect(&nats.url()).await)
        .get_stream(events::subjects::EVENTS_STREAM)
        .await
        .expect("stream");
    let message = stream.get_raw_message(at).await.expect("the stored message");
    let headers = message.headers;
    assert_eq!(headers.get("traceparent").map(|v| v.as_str()), Some(PARENT));
    assert_eq!(headers.get("tracestate").map(|v| v.as_str()), Some("vendor=abc"));
    let doc: Value = serde_json::from_slice(&message.payload).expect("the stored event");
    assert_eq!(doc["significant"], json!(true));
    assert_eq!(doc["authorrole"], "social_worker");
    assert_eq!(doc["time"], "2025-01-14T09:30:00Z");
    assert!(doc.get("traceparent").is_none(), "the trace is beside the event, not in it");

    // The same event again, under another trace and in structured mode: a duplicate, not a conflict.
    let mut again = seen.clone();
    again["significant"] = json!(true);
    again["authorrole"] = json!("social_worker");
    again["traceparent"] = json!("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
    let r = gw.post(tokens::HARINGEY, &again).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.result(0)["duplicate"], json!(true));
    assert_eq!(r.result(0)["stream_sequence"].as_u64(), Some(at));

    // The request's own traceparent header traces an event that carries none.
    let plain = for_child(EventType::ChildSeen, "seen-traced-request", &child);
    let r = gw
        .post_with(
            tokens::HARINGEY,
            &[("content-type", "application/cloudevents+json"), ("traceparent", PARENT)],
            plain.to_string().into_bytes(),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let at = r.result(0)["stream_sequence"].as_u64().expect("position");
    let message = stream.get_raw_message(at).await.expect("the stored message");
    assert_eq!(message.headers.get("traceparent").map(|v| v.as_str()), Some(PARENT));

    // Refusals name the attribute, and store nothing.
    let before = stream_count(&nats.url()).await;
    let with = |name: &'static str, value: &'static str| {
        let mut h: Vec<(&str, &str)> = binary.iter().copied().filter(|(n, _)| *n != name).collect();
        h.push((name, value));
        h
    };
    for (headers, pointer, says) in [
        (with("ce-traceparent", "00-0000-bad"), "/traceparent", "W3C traceparent"),
        (
            with("ce-traceparent", "00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
            "/traceparent",
            "all zeros",
        ),
        (with("ce-significant", "perhaps"), "/significant", ""),
        (with("ce-data", "{}"), "/data", "the body"),
        (with("ce-time", "2025-01-14T09%3"), "/time", "percent-encoded"),
    ] {
        let r = gw.post_with(tokens::HARINGEY, &headers, data.clone()).await;
        assert_eq!(r.status, 422, "{pointer}: {}", r.text);
        let errors = r.json["errors"].as_array().expect("errors");
        assert!(
            errors.iter().any(|e| e["pointer"] == pointer && e["message"].as_str().is_some_and(|m| m.contains(says))),
            "{pointer}: {}",
            r.text
        );
    }
    let mut stateless = for_child(EventType::ChildSeen, "seen-state-only", &child);
    stateless["tracestate"] = json!("vendor=abc");
    let r = gw.post(tokens::HARINGEY, &stateless).await;
    assert_eq!(r.status, 422);
    assert!(r.text.contains("/tracestate"), "{}", r.text);
    let r = gw.post_with(tokens::HARINGEY, &with("content-type", "text/plain"), data.clone()).await;
    assert_eq!(r.status, 415, "{}", r.text);
    assert_eq!(stream_count(&nats.url()).await, before, "nothing refused was stored");
}

/// The JSON Schemas, as a client generating from them would fetch them:
/// every type listed, each document the committed one, and every event the
/// schema refuses is refused by the gateway too, with the same pointer.
#[tokio::test]
async fn the_published_schemas_describe_what_the_gateway_takes() {
    let nats = NatsServer::start().await;
    let gw = TestGateway::start(&nats.url()).await;
    let http = reqwest::Client::new();
    let index: Value = http.get(gw.url("/v1/schemas")).send().await.expect("index").json().await.expect("json");
    let listed = index["schemas"].as_array().expect("schemas");
    assert_eq!(listed.len(), EventType::ALL.len());

    let child = new_child();
    register(&gw, &child).await;
    for entry in listed {
        let name = entry["type"].as_str().expect("type");
        let event_type = EventType::from_name(name).expect("a catalogue type");
        let response = http.get(gw.url(entry["href"].as_str().expect("href"))).send().await.expect("schema");
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "application/schema+json");
        let document: Value = response.json().await.expect("json");
        let committed = tests::workspace_root().join(format!("events/schemas/{name}.json"));
        let committed: Value =
            serde_json::from_str(&std::fs::read_to_string(committed).expect("committed")).expect("json");
        assert_eq!(document, committed, "{name}: served and committed differ");

        let validator = jsonschema::options().should_validate_formats(true).build(&document).expect("compiles");
        let mut good = event(event_type, &format!("schema-{name}"));
        if event_type.subject_kind() == events::SubjectKind::Child {
            good["subject"] = json!(child);
        }
        assert!(validator.is_valid(&good), "{name}: the example");
        // A field the type does not have: refused by both, at the same place.
        let mut bad = good.clone();
        bad["data"]["not_a_field"] = json!(1);
        assert!(!validator.is_valid(&bad), "{name}: an unknown field");
        let r = gw.post(tokens::ADMIN, &bad).await;
        assert_eq!(r.status, 422, "{name}: {}", r.text);
        assert_eq!(r.json["errors"][0]["pointer"], "/data/not_a_field", "{}", r.text);
    }
    let unknown = http.get(gw.url("/v1/schemas/child.adopted")).send().await.expect("404");
    assert_eq!(unknown.status(), 404);
    assert_eq!(unknown.headers()["content-type"], "application/problem+json");
}

/// A resend can reach a gateway that holds nothing of its subjects: another
/// replica behind the load balancer, or this one restarted. That gateway
/// must read every subject's history and every stored event the request
/// names before it can answer. Read one message at a time, in turn, a
/// batch of 1,000 events took one round trip to JetStream for each message
/// twice over. Against a JetStream a network hop away that outlasted the
/// publish timeout, so the resend got a 503, and so did every resend after
/// it: the ten-million-event run retried one batch seven times
/// (docs/benchmarks.md). Here JetStream is 5 ms away each way, and the
/// gateway's timeout is its default in the tests (10 s).
#[tokio::test]
async fn a_batch_resent_to_a_cold_gateway_a_network_hop_from_jetstream_is_answered_in_time() {
    let nats = NatsServer::start().await;
    let gw = TestGateway::start(&nats.url()).await;
    let until = chrono::NaiveDate::from_ymd_opt(2026, 3, 31).expect("date");
    let groups = safeguard::cli::seed::generate(3, 1, 100, until).expect("seed");
    let (people, children): (Vec<_>, Vec<_>) =
        groups.into_iter().partition(|g| g.first().is_some_and(|e| e["type"] != "child.registered"));
    for batch in safeguard::cli::seed::batches(&people, 1_000) {
        let r = gw.post(tokens::ADMIN, &Value::Array(batch)).await;
        assert_eq!(r.status, 201, "{}", r.text);
    }
    let body = Value::Array(safeguard::cli::seed::batches(&children, 1_000).swap_remove(0));
    let events = body.as_array().map_or(0, Vec::len);
    let subjects: BTreeSet<&str> =
        body.as_array().into_iter().flatten().filter_map(|e| e["subject"].as_str()).collect();
    assert!(events > 900 && subjects.len() > 40, "a batch of {events} events on {} children", subjects.len());
    let first = gw.post(tokens::ADMIN, &body).await;
    assert_eq!(first.status, 201, "{}", first.text);

    let link = tests::link::SlowLink::start(nats.url().trim_start_matches("nats://"), Duration::from_millis(5)).await;
    let cold = gw.sibling_on(&link.nats_url()).await;
    let started = Instant::now();
    let again = cold.post(tokens::ADMIN, &body).await;
    assert_eq!(again.status, 201, "after {:?}: {}", started.elapsed(), again.text);
    for i in 0..events {
        assert_eq!(again.result(i)["duplicate"], true, "event {i} is the one stored first");
        assert_eq!(again.result(i)["stream_sequence"], first.result(i)["stream_sequence"], "event {i}");
    }
}
