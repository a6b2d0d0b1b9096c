//! Request telemetry for every role's HTTP: a request id on each request
//! and answer (`X-Request-Id`), a span per request (tower-http's
//! `TraceLayer`) carrying the id, the method and the route (the route's
//! template, never the address as sent, so no identifier a caller put in a
//! path or query reaches a log), and the rule for server errors: the cause
//! goes to the log with the request id, the caller gets the id and words
//! of ours ([`server_error`]).

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

/// `router` with a request id and a span on every request.
pub fn traced(router: Router) -> Router {
    let trace = TraceLayer::new_for_http().make_span_with(|request: &Request| {
        let route = request.extensions().get::<MatchedPath>().map_or("unmatched", MatchedPath::as_str);
        let id = request.headers().get(&REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("");
        tracing::info_span!("request", method = %request.method(), route, request_id = id)
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
