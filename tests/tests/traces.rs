//! One trace across every hop, received as a collector would receive it:
//! the three roles run as their own `safeguard serve` processes exporting
//! over OTLP/HTTP (the `opentelemetry-otlp` exporter, configured only by
//! `OTEL_EXPORTER_OTLP_ENDPOINT`) to a receiver here that decodes the
//! official OTLP protobuf messages (`opentelemetry-proto`). A publisher's
//! `traceparent` must reach the gateway's request and store spans, the
//! projector's apply span (through the stored message's headers) and the
//! query role's span for the read that follows.

use axum::body::Bytes;
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use prost::Message as _;
use serde_json::json;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tests::deploy::Deployment;
use tests::gateway::tokens;
use tests::{NatsServer, TestDatabase};

/// One span as received: its service, name, trace and parent.
#[derive(Debug, Clone)]
struct Received {
    service: String,
    name: String,
    trace_id: String,
    parent_span_id: String,
}

/// An OTLP/HTTP trace receiver (`POST /v1/traces`, protobuf).
async fn receiver() -> (String, Arc<Mutex<Vec<Received>>>) {
    let spans: Arc<Mutex<Vec<Received>>> = Arc::default();
    let kept = spans.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        post(move |body: Bytes| {
            let kept = kept.clone();
            async move {
                let request = ExportTraceServiceRequest::decode(body).expect("an OTLP trace export");
                let mut kept = kept.lock().expect("spans");
                for resource in request.resource_spans {
                    let service = resource
                        .resource
                        .iter()
                        .flat_map(|r| &r.attributes)
                        .find(|a| a.key == "service.name")
                        .and_then(|a| a.value.as_ref()?.value.as_ref())
                        .map(|v| match v {
                            AnyValue::StringValue(s) => s.clone(),
                            other => format!("{other:?}"),
                        })
                        .unwrap_or_default();
                    for span in resource.scope_spans.into_iter().flat_map(|s| s.spans) {
                        kept.push(Received {
                            service: service.clone(),
                            name: span.name,
                            trace_id: hex::encode(span.trace_id),
                            parent_span_id: hex::encode(span.parent_span_id),
                        });
                    }
                }
                (
                    [("content-type", "application/x-protobuf")],
                    ExportTraceServiceResponse { partial_success: None }.encode_to_vec(),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a port");
    let address = listener.local_addr().expect("an address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{address}"), spans)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publishers_trace_runs_through_gateway_projector_and_the_read_that_follows() {
    let (endpoint, spans) = receiver().await;
    let nats = NatsServer::start().await;
    let db = TestDatabase::create().await;
    let env = [("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()), ("OTEL_BSP_SCHEDULE_DELAY", "100")];
    let mut roles = Deployment::start_with(&tests::safeguard_binary(), &nats.url(), db.url(), &env).await;
    roles.start_readers().await;

    // The publisher's trace and its own span, as an SDK would send them.
    let trace_id = format!("{:032x}", uuid::Uuid::new_v4().as_u128());
    let publisher_span = "00f067aa0ba902b7";
    let child = uuid::Uuid::new_v4().to_string();
    let mut event = events::examples::event(events::EventType::ChildRegistered, "traced-1", "2025-01-14T09:30:00Z");
    event["subject"] = json!(child);
    let http = reqwest::Client::new();
    let stored = http
        .post(roles.gateway_url("/v1/events"))
        .bearer_auth(tokens::HARINGEY)
        .header("content-type", "application/cloudevents+json")
        .header("traceparent", format!("00-{trace_id}-{publisher_span}-01"))
        .json(&event)
        .send()
        .await
        .expect("publish");
    assert_eq!(stored.status(), 201);
    let stored: serde_json::Value = stored.json().await.expect("json");
    let position = stored["results"][0]["stream_sequence"].as_u64().expect("a position");

    // The worker's read that follows, in the same trace.
    let read = http
        .get(roles.query_url(&format!("/v1/children/{child}/chronology?min_position={position}")))
        .bearer_auth(tokens::HARINGEY)
        .header("traceparent", format!("00-{trace_id}-b7ad6b7169203331-01"))
        .send()
        .await
        .expect("read");
    assert_eq!(read.status(), 200);

    let wanted = [
        ("safeguard-gateway", "request", "00f067aa0ba902b7"),
        ("safeguard-gateway", "gateway.store", "00f067aa0ba902b7"),
        ("safeguard-projector", "projector.apply", "00f067aa0ba902b7"),
        ("safeguard-query", "request", "b7ad6b7169203331"),
    ];
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let in_trace: Vec<Received> =
            spans.lock().expect("spans").iter().filter(|s| s.trace_id == trace_id).cloned().collect();
        let missing: Vec<_> = wanted
            .iter()
            .filter(|(service, name, parent)| {
                !in_trace.iter().any(|s| s.service == *service && s.name == *name && s.parent_span_id == *parent)
            })
            .collect();
        if missing.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "missing from the trace: {missing:?}; received in it: {in_trace:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Nothing of the child reaches a span's name: routes are templates.
    let all = spans.lock().expect("spans").clone();
    assert!(all.iter().all(|s| !s.name.contains(&child)), "a span names the child");
}
