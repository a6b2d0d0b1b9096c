//! Request telemetry for every role's HTTP: a request id on each request
//! and answer (`X-Request-Id`), a span per request (tower-http's
//! `TraceLayer`) carrying the id, the method and the route (the route's
//! template, never the address as sent, so no identifier a caller put in a
//! path or query reaches a log), and the rule for server errors: the cause
//! goes to the log with the request id, the caller gets the id and words
//! of ours ([`server_error`]).
//!
//! Traces: [`init`] sets up the log and, when `OTEL_EXPORTER_OTLP_ENDPOINT`
//! (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, exports every span over
//! OTLP/HTTP. A request's span continues the caller's W3C trace
//! (`traceparent`), so one trace runs from a publisher through the gateway,
//! the stored event (its NATS headers) and the projector's apply span
//! (`projections::trace`) to the reads that follow.

use axum::Router;
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderValue, header::HeaderName};
use axum::middleware::{self, Next};
use axum::response::Response;
use tower_http::trace::TraceLayer;

/// The header a request id travels in, both ways.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

tokio::task_local! {
    static CURRENT: RequestId;
}

/// One request's id: ours, a fresh UUID, whatever the caller sent (a
/// caller's header could carry anything into the log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(String);

impl RequestId {
    fn new() -> Self {
        Self(uuid::Uuid::new_v4().to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The id of the request being answered, inside a router made with
/// [`traced`]; none outside one.
pub fn current() -> Option<RequestId> {
    CURRENT.try_with(Clone::clone).ok()
}

/// Logs a server error's cause, with its whole chain, under the current
/// request's id, and returns the id for the answer. `what` says in our
/// words what failed; only that and the id may be told to the caller.
pub fn report(what: &str, cause: Option<&anyhow::Error>) -> Option<RequestId> {
    let id = current();
    let request_id = id.as_ref().map(RequestId::as_str);
    match cause {
        Some(cause) => tracing::error!(request_id, error = %format!("{cause:#}"), "{what}"),
        None => tracing::warn!(request_id, "{what}"),
    }
    id
}

/// `router` with a request id and a span on every request, continuing the
/// caller's trace when the request carries a `traceparent`.
pub fn traced(router: Router) -> Router {
    let trace = TraceLayer::new_for_http().make_span_with(|request: &Request| {
        let route = request.extensions().get::<MatchedPath>().map_or("unmatched", MatchedPath::as_str);
        let id = request.headers().get(&REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("");
        let span = tracing::info_span!("request", method = %request.method(), route, request_id = id);
        let header = |name: &str| request.headers().get(name).and_then(|v| v.to_str().ok());
        if let Some(parent) = header("traceparent") {
            continue_trace(&span, parent, header("tracestate"));
        }
        span
    });
    // Layers run outside in: the id is set before the span is made.
    router.layer(trace).layer(middleware::from_fn(with_request_id))
}

async fn with_request_id(mut request: Request, next: Next) -> Response {
    let id = RequestId::new();
    let value = HeaderValue::from_str(id.as_str()).expect("a UUID is a header value");
    request.headers_mut().insert(REQUEST_ID, value.clone());
    let mut response = CURRENT.scope(id, next.run(request)).await;
    response.headers_mut().insert(REQUEST_ID, value);
    response
}

/// Makes `span` a child of the W3C trace context given (a request's
/// headers, an event's attributes). A context that does not parse leaves
/// the span a root of its own: a caller's bad header is no reason to fail.
pub fn continue_trace(span: &tracing::Span, traceparent: &str, tracestate: Option<&str>) {
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    let mut carrier = std::collections::HashMap::from([("traceparent".to_owned(), traceparent.to_owned())]);
    if let Some(state) = tracestate {
        carrier.insert("tracestate".to_owned(), state.to_owned());
    }
    let parent = opentelemetry::global::get_text_map_propagator(|p| p.extract(&carrier));
    let _ = span.set_parent(parent);
}

/// The process's tracing, set up by [`init`]: flushes the last spans to the
/// OTLP receiver when dropped (at the end of `main`).
#[derive(Debug)]
pub struct Tracing {
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Drop for Tracing {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            let _ = provider.shutdown();
        }
    }
}

/// Logs to standard error (filtered by `RUST_LOG`, `info` by default) and,
/// when an OTLP endpoint is configured in the standard variables, exports
/// spans to it as `service` over OTLP/HTTP with protobuf, in batches. Call
/// before any runtime starts: the exporter's HTTP client is a blocking one
/// with a thread of its own.
pub fn init(service: &str) -> Tracing {
    use opentelemetry::trace::TracerProvider as _;
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    // `RUST_LOG` says what is logged, not what is traced: a quiet log
    // (`warn`) must not silence the spans, which are all at `info`.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let log = tracing_subscriber::fmt::layer().with_target(false).with_filter(filter);
    let configured = ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]
        .iter()
        .any(|name| std::env::var_os(name).is_some_and(|v| !v.is_empty()));
    let exporter = if configured {
        match opentelemetry_otlp::SpanExporter::builder().with_http().build() {
            Ok(exporter) => Some(exporter),
            Err(e) => {
                // The log is not up yet: say it where the operator looks.
                eprintln!("safeguard: traces are not exported: the OTLP exporter could not be made: {e}");
                None
            }
        }
    } else {
        None
    };
    let Some(exporter) = exporter else {
        tracing_subscriber::registry().with(log).init();
        return Tracing { provider: None };
    };
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(opentelemetry_sdk::Resource::builder().with_service_name(service.to_owned()).build())
        .build();
    opentelemetry::global::set_text_map_propagator(opentelemetry_sdk::propagation::TraceContextPropagator::new());
    let spans = tracing_subscriber::filter::Targets::new()
        .with_default(tracing::Level::INFO)
        // Libraries' own spans (a connection pool's, an HTTP client's) are
        // theirs to explain, not part of a request's trace.
        .with_targets([
            ("sqlx", tracing::Level::WARN),
            ("hyper", tracing::Level::WARN),
            ("h2", tracing::Level::WARN),
            ("async_nats", tracing::Level::WARN),
        ]);
    let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("safeguard")).with_filter(spans);
    tracing_subscriber::registry().with(log).with(layer).init();
    Tracing { provider: Some(provider) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::routing::get;
    use http_body_util::BodyExt as _;
    use std::sync::{Arc, Mutex};
    use tower::ServiceExt as _;

    /// A log writer the test can read back.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().map_err(|_| std::io::Error::other("poisoned"))?.extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_server_error_is_logged_with_its_whole_cause_under_the_id_the_caller_is_given() {
        let log = Captured::default();
        let writer = log.clone();
        let subscriber = tracing_subscriber::fmt().with_writer(move || writer.clone()).with_ansi(false).finish();
        let _default = tracing::subscriber::set_default(subscriber);
        let router = traced(Router::new().route(
            "/fail",
            get(|| async {
                let cause = anyhow::anyhow!("connection reset by peer").context("the database failed");
                report("internal error", Some(&cause)).map(|id| id.to_string()).unwrap_or_default()
            }),
        ));
        let request =
            Request::get("/fail").header(REQUEST_ID, "chosen-by-caller").body(Body::empty()).expect("a request");
        let response = router.oneshot(request).await.expect("an answer");
        let header = response.headers().get(&REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        let body = response.into_body().collect().await.expect("a body").to_bytes();
        assert_eq!(body, header.as_bytes(), "the handler saw the id the caller is given");
        assert!(uuid::Uuid::parse_str(&header).is_ok(), "our own id, not the caller's: {header}");
        let text = String::from_utf8(log.0.lock().expect("the log").clone()).expect("UTF-8");
        let line = text.lines().find(|l| l.contains("internal error")).unwrap_or_else(|| panic!("no log line: {text}"));
        assert!(line.contains(&header), "the log line names the request id: {line}");
        assert!(line.contains("the database failed: connection reset by peer"), "the whole chain: {line}");
        assert!(line.contains("route=\"/fail\""), "the span names the route: {line}");
        assert!(!text.contains("chosen-by-caller"), "a caller's id never reaches the log: {text}");
    }

    #[test]
    fn outside_a_request_there_is_no_id() {
        assert_eq!(current(), None);
    }
}
