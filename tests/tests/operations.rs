//! The gateway's operational surface: health, readiness, metrics, the
//! OpenAPI document, and reloading principals on SIGHUP.

use events::{EventType, examples};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use tests::NatsServer;
use tests::gateway::{TestGateway, tokens};

async fn get(url: &str) -> (u16, String) {
    let r = reqwest::get(url).await.expect("answer");
    (r.status().as_u16(), r.text().await.unwrap_or_default())
}

#[tokio::test]
async fn health_readiness_metrics_and_openapi() {
    let mut nats = NatsServer::start().await;
    let gw = TestGateway::start(&nats.url()).await;
    assert_eq!(get(&gw.url("/healthz")).await.0, 200);
    assert_eq!(get(&gw.url("/readyz")).await.0, 200);

    let r =
        gw.post(tokens::HARINGEY, &examples::event(EventType::ChildRegistered, "m-1", "2025-01-14T09:30:00Z")).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let (status, metrics) = get(&gw.url("/metrics")).await;
    assert_eq!(status, 200);
    // Counts by kind of subject only: the gateway's /metrics answers anyone
    // who reaches it, and a count by type would tell them, say, how many
    // children's deaths were recorded this week (issue 17 item 11).
    assert!(metrics.contains(r#"safeguard_gateway_events_stored_total{subject_kind="child"} 1"#), "{metrics}");
    assert!(!metrics.contains("child.registered") && !metrics.contains("event_type"), "{metrics}");
    assert!(metrics.contains(r#"safeguard_gateway_requests_total{status="201"} 1"#), "{metrics}");
    assert!(!metrics.contains(examples::CHILD), "metrics never name a child");

    let (status, doc) = get(&gw.url("/openapi.json")).await;
    assert_eq!(status, 200);
    let doc: Value = serde_json::from_str(&doc).expect("json");
    assert!(doc["paths"]["/v1/events"]["post"]["responses"]["201"].is_object(), "{doc}");
    assert!(doc["components"]["schemas"]["EventResult"].is_object());

    nats.kill();
    let deadline = Instant::now() + Duration::from_secs(10);
    while get(&gw.url("/readyz")).await.0 != 503 {
        assert!(Instant::now() < deadline, "still ready without NATS");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(get(&gw.url("/healthz")).await.0, 200, "alive all the same");
}

#[tokio::test]
async fn principals_reload_on_sighup_and_a_bad_file_keeps_the_old_ones() {
    let nats = NatsServer::start().await;
    let gw = TestGateway::start(&nats.url()).await;
    let child = examples::event(EventType::ChildRegistered, "h-1", "2025-01-14T09:30:00Z");
    let path = gw.path("principals.toml");
    let original = std::fs::read_to_string(&path).expect("principals");

    // A new principal, then SIGHUP.
    let added = format!(
        "{original}[[principal]]\nname = \"newcomer\"\ntoken_sha256 = \"{}\"\nroles = [\"publish\"]\ncouncils = [\"*\"]\nevent_types = [\"*\"]\n",
        platform::principals::token_sha256("newcomer-token")
    );
    std::fs::write(&path, added).expect("write");
    assert_eq!(gw.post("newcomer-token", &child).await.status, 401, "not before the signal");
    nix::sys::signal::kill(nix::unistd::Pid::this(), nix::sys::signal::Signal::SIGHUP).expect("signal");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = gw.post("newcomer-token", &child).await;
        if r.status == 201 {
            assert_eq!(r.result(0)["sequence"], 1);
            break;
        }
        assert!(Instant::now() < deadline, "the new principal never arrived: {}", r.text);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A broken file is refused and the set in force stays.
    std::fs::write(&path, "[[principal]]\nname = \"broken\"\n").expect("write");
    nix::sys::signal::kill(nix::unistd::Pid::this(), nix::sys::signal::Signal::SIGHUP).expect("signal");
    // Nothing observable changes when a reload is refused, so there is no
    // condition to wait on: give the reload task time to run and fail.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut seen = examples::event(EventType::ChildSeen, "h-2", "2025-01-14T09:30:00Z");
    seen["subject"] = json!(examples::CHILD);
    let r = gw.post("newcomer-token", &seen).await;
    assert_eq!(r.status, 201, "{}", r.text);
}

/// The systemd units of `ops/systemd` are ones systemd takes: checked by
/// `systemd-analyze verify` with the binaries where the units expect them
/// replaced by the ones this suite runs, failing on any complaint (an
/// unknown key is only a warning to systemd, and a unit silently missing a
/// hardening line would be a worse unit).
#[test]
fn the_systemd_units_verify() {
    let root = tests::workspace_root();
    let dir = tempfile::tempdir().expect("a directory");
    let mut units = Vec::new();
    for entry in std::fs::read_dir(root.join("ops/systemd")).expect("ops/systemd") {
        let path = entry.expect("an entry").path();
        if path.extension().is_none_or(|e| e != "service") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("a unit");
        let text = text
            .replace("/usr/local/bin/safeguard", &tests::safeguard_binary().display().to_string())
            .replace("/usr/local/bin/nats-server", &tests::nats::nats_server_binary().display().to_string());
        let copy = dir.path().join(path.file_name().expect("a name"));
        std::fs::write(&copy, text).expect("write");
        units.push(copy);
    }
    assert_eq!(units.len(), 4, "NATS and the three roles");
    let out = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .args(&units)
        .output()
        .expect("systemd-analyze (Debian's systemd package; ops/test installs it if missing)");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && said.trim().is_empty(), "systemd-analyze verify: {said}");
}

/// Every route of each role's router is in its OpenAPI document with its
/// methods, and the document names no route the router lacks: read from
/// the routers' source (`.route("PATH", get(..).post(..))`) against the
/// documents the roles serve at `/openapi.json`. The pages (`/ui`, for
/// people, not clients) and the document itself are left out.
#[test]
fn the_openapi_documents_and_the_routers_name_the_same_routes() {
    use std::collections::BTreeSet;
    let root = tests::workspace_root();
    let routed = |file: &str| -> BTreeSet<(String, String)> {
        let text = std::fs::read_to_string(root.join(file)).expect("a router's source");
        let mut out = BTreeSet::new();
        let mut rest = text.as_str();
        while let Some(at) = rest.find(".route(\"") {
            rest = &rest[at + 8..];
            let path = &rest[..rest.find('"').expect("a path's end")];
            let call = &rest[..rest.find(".route(").unwrap_or(rest.len()).min(rest.find(";\n").unwrap_or(rest.len()))];
            for method in ["get", "post", "put", "patch", "delete"] {
                if call.contains(&format!("{method}(")) {
                    out.insert((method.to_owned(), path.to_owned()));
                }
            }
        }
        out.retain(|(_, p)| p != "/openapi.json" && !p.starts_with("/ui"));
        out
    };
    let documented = |doc: Value| -> BTreeSet<(String, String)> {
        let mut out = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for method in item.as_object().expect("a path item").keys() {
                if ["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                    out.insert((method.clone(), path.clone()));
                }
            }
        }
        out
    };
    for (role, routes, doc) in [
        ("gateway", routed("gateway/src/lib.rs"), documented(gateway::openapi_document())),
        ("query", routed("query/src/lib.rs"), documented(query::openapi_document())),
    ] {
        assert!(routes.len() > 3, "{role}: the router's routes were found: {routes:?}");
        let undocumented: Vec<_> = routes.difference(&doc).collect();
        let unrouted: Vec<_> = doc.difference(&routes).collect();
        assert!(
            undocumented.is_empty() && unrouted.is_empty(),
            "{role}: routes missing from the OpenAPI document: {undocumented:?}; documented but not routed: {unrouted:?}"
        );
    }
}
