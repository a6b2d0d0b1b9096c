//! Every bad-input class of CONTRACT.md: its status, a problem+json body
//! naming the field, and nothing stored.

use events::{EventType, examples};
use serde_json::{Value, json};
use tests::NatsServer;
use tests::gateway::{Response, TestGateway, stream_count, tokens};

fn event(t: EventType, id: &str, child: &str) -> Value {
    let mut e = examples::event(t, id, "2025-01-14T09:30:00Z");
    if t.subject_kind() == events::SubjectKind::Child {
        e["subject"] = json!(child);
    }
    e
}

#[track_caller]
fn expect(r: &Response, status: u16, pointer: Option<&str>, what: &str) {
    assert_eq!(r.status, status, "{what}: {}", r.text);
    assert_eq!(r.content_type, "application/problem+json", "{what}");
    for field in ["type", "title", "status", "detail"] {
        assert!(!r.json[field].is_null(), "{what}: no {field} in {}", r.text);
    }
    assert_eq!(r.json["status"], status, "{what}");
    if let Some(pointer) = pointer {
        let errors = r.json["errors"].as_array().unwrap_or_else(|| panic!("{what}: no errors in {}", r.text));
        assert!(
            errors.iter().any(|e| e["pointer"] == pointer && e["message"].as_str().is_some_and(|m| !m.is_empty())),
            "{what}: no error at {pointer} in {}",
            r.text
        );
    }
    // Nothing a person wrote comes back in an error.
    for secret in ["Health visitor worried", "Sam", "Example Road"] {
        assert!(!r.text.contains(secret), "{what}: the answer repeats {secret:?}");
    }
}

#[tokio::test]
async fn every_bad_input_is_refused_with_its_field_and_nothing_is_stored() {
    let nats = NatsServer::start().await;
    let gw = TestGateway::start(&nats.url()).await;
    let child = uuid::Uuid::new_v4().to_string();
    let setup = [
        (tokens::HARINGEY, event(EventType::ChildRegistered, "setup-1", &child)),
        (tokens::HARINGEY, event(EventType::ReferralReceived, "setup-2", &child)),
        (tokens::POLICE, event(EventType::ConcernRaised, "police-1", &child)),
    ];
    for (token, body) in &setup {
        let r = gw.post(token, body).await;
        assert_eq!(r.status, 201, "{}", r.text);
    }
    let stored = stream_count(&nats.url()).await;
    let contact = event(EventType::ContactRecorded, "c-1", &child);

    // Transport and body.
    let r = gw.post_raw(Some(tokens::HARINGEY), "application/json", b"{\"specversion\": ".to_vec()).await;
    expect(&r, 400, None, "malformed JSON");
    let r = gw.post_raw(Some(tokens::HARINGEY), "application/json", Vec::new()).await;
    expect(&r, 400, None, "empty body");
    let r = gw.post_raw(Some(tokens::HARINGEY), "application/json", b"{\"a\":1,\"a\":2}".to_vec()).await;
    expect(&r, 400, None, "duplicate keys");
    let r = gw.post(tokens::HARINGEY, &json!([])).await;
    expect(&r, 422, Some(""), "an empty batch");
    let r = gw.post_raw(Some(tokens::HARINGEY), "text/plain", contact.to_string().into_bytes()).await;
    expect(&r, 415, None, "wrong content type");
    let r = gw
        .post_raw(Some(tokens::HARINGEY), "application/x-www-form-urlencoded", contact.to_string().into_bytes())
        .await;
    expect(&r, 415, None, "form content type");
    let huge = json!({"padding": "x".repeat(4 * 1024 * 1024)});
    let r = gw.post(tokens::HARINGEY, &huge).await;
    expect(&r, 413, None, "body over 4 MiB");
    let mut big = contact.clone();
    big["data"]["summary"] = json!("y".repeat(600 * 1024));
    let r = gw.post(tokens::HARINGEY, &big).await;
    expect(&r, 413, Some(""), "event over 512 KiB");
    let many: Vec<Value> = (0..1001).map(|i| event(EventType::ChildSeen, &format!("m-{i}"), &child)).collect();
    let r = gw.post(tokens::HARINGEY, &Value::Array(many)).await;
    expect(&r, 413, None, "batch over 1,000");

    // Authentication and authorisation.
    let r = gw.post_raw(None, "application/json", contact.to_string().into_bytes()).await;
    expect(&r, 401, None, "no token");
    let r = gw.post("not-a-token", &contact).await;
    expect(&r, 401, None, "unknown token");
    let mut claimed = contact.clone();
    claimed["source"] = json!("met-police");
    let r = gw.post(tokens::HARINGEY, &claimed).await;
    expect(&r, 403, Some("/source"), "a claimed source");
    let r = gw.post(tokens::ISLINGTON, &event(EventType::ChildSeen, "i-1", &child)).await;
    expect(&r, 403, Some("/subject"), "a child of a council outside scope");
    let other_child = uuid::Uuid::new_v4().to_string();
    let r = gw.post(tokens::ISLINGTON, &event(EventType::ChildRegistered, "i-2", &other_child)).await;
    expect(&r, 403, Some("/data/council"), "registering into a council outside scope");
    let r = gw.post(tokens::POLICE, &event(EventType::ReferralReceived, "p-2", &child)).await;
    expect(&r, 403, Some("/type"), "a type outside scope");
    let r = gw.post(tokens::HARINGEY, &event(EventType::RecordSealed, "s-1", &child)).await;
    expect(&r, 403, Some("/type"), "an admin-only type");
    let r = gw.post(tokens::HARINGEY, &event(EventType::CouncilConfigured, "cc-1", &child)).await;
    expect(&r, 403, Some("/type"), "an admin-only council type");
    let mut with_recordedat = contact.clone();
    with_recordedat["recordedat"] = json!("2025-01-14T09:31:00Z");
    let r = gw.post(tokens::HARINGEY, &with_recordedat).await;
    expect(&r, 403, Some("/recordedat"), "recordedat outside an import");
    let r = gw.post(tokens::DASHBOARD, &contact).await;
    expect(&r, 403, Some(""), "a principal without publish");
    // 403 comes before validation: an invalid event of a forbidden type is 403.
    let mut invalid_forbidden = event(EventType::ReferralReceived, "p-3", &child);
    invalid_forbidden["data"]["source"] = json!("XX");
    let r = gw.post(tokens::POLICE, &invalid_forbidden).await;
    expect(&r, 403, Some("/type"), "permission before validation");

    // Structure.
    for attribute in ["specversion", "id", "type", "subject", "time", "data"] {
        let mut e = contact.clone();
        e.as_object_mut().expect("object").remove(attribute);
        let r = gw.post(tokens::HARINGEY, &e).await;
        expect(&r, 422, Some(&format!("/{attribute}")), &format!("missing {attribute}"));
    }
    let cases: [(&str, &str, Value); 6] = [
        ("wrong specversion", "/specversion", json!("0.3")),
        ("unknown type", "/type", json!("child.teleported")),
        ("non-UUID child subject", "/subject", json!("child-17")),
        ("time without offset", "/time", json!("2025-01-14T09:30:00")),
        ("time too far ahead", "/time", json!("2999-01-01T00:00:00Z")),
        ("a wrong code", "/data/source", json!("3Z")),
    ];
    for (what, pointer, value) in cases {
        let mut e = contact.clone();
        *e.pointer_mut(pointer).expect("pointer") = value;
        let r = gw.post(tokens::HARINGEY, &e).await;
        expect(&r, 422, Some(pointer), what);
    }
    let mut unknown_field = contact.clone();
    unknown_field["data"]["mood"] = json!("tense");
    let r = gw.post(tokens::HARINGEY, &unknown_field).await;
    expect(&r, 422, Some("/data/mood"), "an unknown field");

    // References to the subject's history.
    let stranger = uuid::Uuid::new_v4().to_string();
    let r = gw.post(tokens::HARINGEY, &event(EventType::ChildSeen, "u-1", &stranger)).await;
    expect(&r, 422, Some("/subject"), "an unknown child");
    let r = gw.post(tokens::HARINGEY, &event(EventType::ChildRegistered, "again", &child)).await;
    expect(&r, 422, Some("/subject"), "a second registration");
    let mut missing_target = event(EventType::RecordCorrected, "fix-1", &child);
    missing_target["data"]["corrects"] = json!("never-sent");
    let r = gw.post(tokens::HARINGEY, &missing_target).await;
    expect(&r, 422, Some("/data/corrects"), "correcting a missing event");
    let mut others = event(EventType::RecordRetracted, "fix-2", &child);
    others["data"]["retracts"] = json!("police-1");
    let r = gw.post(tokens::HARINGEY, &others).await;
    expect(&r, 422, Some("/data/retracts"), "retracting another publisher's event");
    let mut wrong_shape = event(EventType::RecordCorrected, "fix-3", &child);
    wrong_shape["data"]["corrects"] = json!("setup-2");
    wrong_shape["data"]["data"] = json!({"referral_id": "R-1", "source": "6"});
    let r = gw.post(tokens::HARINGEY, &wrong_shape).await;
    expect(&r, 422, Some("/data/data/nfa"), "a correction whose data does not fit the corrected type");

    // Ids.
    let r = gw
        .post(
            tokens::HARINGEY,
            &json!([event(EventType::ChildSeen, "twice", &child), event(EventType::ConcernRaised, "twice", &child)]),
        )
        .await;
    expect(&r, 422, Some("/id"), "the same id twice in a batch");
    assert_eq!(r.json["errors"][0]["index"], 1);
    let mut reused = event(EventType::ReferralReceived, "setup-2", &child);
    reused["data"]["nfa"] = json!(true);
    let r = gw.post(tokens::HARINGEY, &reused).await;
    expect(&r, 409, Some("/id"), "a reused id with other content");

    // A batch is validated whole: one bad event stores none.
    let mut bad = event(EventType::ChildSeen, "whole-2", &child);
    bad["data"]["context"] = json!("telepathy");
    let r = gw.post(tokens::HARINGEY, &json!([event(EventType::ChildSeen, "whole-1", &child), bad])).await;
    expect(&r, 422, Some("/data/context"), "one bad event in a batch");
    assert_eq!(r.json["errors"][0]["index"], 1);

    assert_eq!(stream_count(&nats.url()).await, stored, "a refused request stored something");
}
