//! Serving a role's HTTP with limits, so no client can hold the role's
//! resources for as long as it likes (`axum::serve` sets no timeout at all:
//! a client sending its headers a byte at a time held a connection for
//! ever).
//!
//! - **Headers**: a connection must deliver a request's headers within
//!   [`Limits::header_read`] of starting to wait for them. The same clock
//!   runs while a kept-alive connection is idle, so idle connections close
//!   too.
//! - **A request**: from its headers to the head of its answer, body read
//!   included, within [`Limits::request`]; past it the answer is 408 and the
//!   connection closes. A stream (Server-Sent Events) answers its head at
//!   once; how long it may then run is the query role's to limit.
//! - **In flight**: at most [`Limits::in_flight`] requests are answered at
//!   once; the next is answered 503 at once with `Retry-After`, so a flood
//!   is refused rather than queued behind the work in hand.
//! - **Connections**: at most [`Limits::connections`] are open; past it
//!   the role stops accepting until one closes (the kernel's backlog holds
//!   the rest).
//!
//! - **Bodies**: [`read_body`] reads at most what an endpoint needs, and
//!   refuses a larger declared one before reading any of it.
//!
//! Only HTTP/1.1 is served: every client of ours speaks it, and each
//! protocol served is one more set of limits to get right.

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse as _, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Semaphore, watch};
use tower::ServiceExt as _;

/// How much of a role one client, or all of them, may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub header_read: Duration,
    pub request: Duration,
    pub in_flight: usize,
    pub connections: usize,
}

const HEADER_TIMEOUT_MS: u64 = 10_000;
const REQUEST_TIMEOUT_MS: u64 = 60_000;
const MAX_IN_FLIGHT: usize = 256;
const MAX_CONNECTIONS: usize = 1024;

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_read: Duration::from_millis(HEADER_TIMEOUT_MS),
            request: Duration::from_millis(REQUEST_TIMEOUT_MS),
            in_flight: MAX_IN_FLIGHT,
            connections: MAX_CONNECTIONS,
        }
    }
}

/// The limits, from the command line or the environment.
#[derive(Debug, Clone, clap::Args)]
pub struct HttpArgs {
    /// How long a connection may take to send a request's headers (and may
    /// sit idle between requests), in milliseconds.
    #[arg(long = "http-header-timeout-ms", env = "SAFEGUARD_HTTP_HEADER_TIMEOUT_MS", default_value_t = HEADER_TIMEOUT_MS)]
    pub header_timeout_ms: u64,
    /// How long a request may take from its headers to its answer, body
    /// read included, in milliseconds; past it the answer is 408.
    #[arg(long = "http-request-timeout-ms", env = "SAFEGUARD_HTTP_REQUEST_TIMEOUT_MS", default_value_t = REQUEST_TIMEOUT_MS)]
    pub request_timeout_ms: u64,
    /// Requests answered at once by one role; more are answered 503.
    #[arg(long = "http-max-in-flight", env = "SAFEGUARD_HTTP_MAX_IN_FLIGHT", default_value_t = MAX_IN_FLIGHT)]
    pub max_in_flight: usize,
    /// Connections open at once to one role; more wait to be accepted.
    #[arg(long = "http-max-connections", env = "SAFEGUARD_HTTP_MAX_CONNECTIONS", default_value_t = MAX_CONNECTIONS)]
    pub max_connections: usize,
}

impl HttpArgs {
    pub fn limits(&self) -> Limits {
        Limits {
            header_read: Duration::from_millis(self.header_timeout_ms.max(1)),
            request: Duration::from_millis(self.request_timeout_ms.max(1)),
            in_flight: self.max_in_flight.max(1),
            connections: self.max_connections.max(1),
        }
    }
}

/// How long a stopping role waits for the answers in hand before it drops
/// their connections (a stream never ends by itself).
const DRAIN: Duration = Duration::from_secs(10);

/// Serves `router` on `listener` within `limits` until `shutdown`
/// resolves; then stops accepting, lets the answers in hand finish (for
/// [`DRAIN`] at most) and returns.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let router = limited(router, limits);
    let connections = Arc::new(Semaphore::new(limits.connections));
    let (closing, closing_rx) = watch::channel(false);
    let mut open = tokio::task::JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        while open.try_join_next().is_some() {}
        let permit = tokio::select! {
            permit = connections.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, or a connection reset before
                    // it was accepted: neither stops the role.
                    tracing::warn!(error = %e, "could not accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let service =
            TowerToHyperService::new(router.clone().map_request(|r: Request<hyper::body::Incoming>| r.map(Body::new)));
        let mut closing = closing_rx.clone();
        open.spawn(async move {
            let _permit = permit;
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder.timer(TokioTimer::new()).header_read_timeout(limits.header_read);
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            let mut connection = std::pin::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => return,
                _ = closing.wait_for(|c| *c) => connection.as_mut().graceful_shutdown(),
            }
            let _ = connection.await;
        });
    }
    drop(listener);
    let _ = closing.send(true);
    let _ = tokio::time::timeout(DRAIN, async { while open.join_next().await.is_some() {} }).await;
    Ok(())
}

/// `router` with the per-request limits: the deadline and the cap on
/// requests in flight.
fn limited(router: Router, limits: Limits) -> Router {
    let in_flight = Arc::new(Semaphore::new(limits.in_flight));
    router.layer(axum::middleware::from_fn(move |request: Request, next: axum::middleware::Next| {
        let in_flight = in_flight.clone();
        async move {
            let Ok(_permit) = in_flight.try_acquire_owned() else {
                let mut answer = problem(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "busy",
                    "Too many requests in progress",
                    &format!("this service is answering {} requests at once; try again shortly", limits.in_flight),
                );
                answer.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                return answer;
            };
            match tokio::time::timeout(limits.request, next.run(request)).await {
                Ok(answer) => answer,
                Err(_) => {
                    let mut answer = problem(
                        StatusCode::REQUEST_TIMEOUT,
                        "request-timeout",
                        "Request took too long",
                        &format!(
                            "the request and its answer must be done within {} ms; it may be sent again (an \
                             event already stored is not stored twice)",
                            limits.request.as_millis()
                        ),
                    );
                    answer.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
                    answer
                }
            }
        }
    }))
}

/// A problem+json answer of the limits' own (RFC 9457).
pub fn problem(status: StatusCode, slug: &str, title: &str, detail: &str) -> Response {
    let body = serde_json::json!({
        "type": format!("/problems/{slug}"),
        "title": title,
        "status": status.as_u16(),
        "detail": detail,
    });
    let mut answer = (status, body.to_string()).into_response();
    answer.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
    answer
}

/// Why a body was not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("the body is larger than {0} bytes")]
    TooLarge(usize),
    #[error("the body could not be read in full")]
    Unreadable,
}

/// The body, read only up to `limit` bytes: a larger one is refused from
/// its `Content-Length` before any of it is read, or as soon as it passes
/// the limit. Handlers authenticate first and read the body after, so no
/// one a role does not know can make it read anything.
pub async fn read_body(headers: &axum::http::HeaderMap, body: Body, limit: usize) -> Result<bytes::Bytes, BodyError> {
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(BodyError::TooLarge(limit));
    }
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        if e.into_inner().is::<http_body_util::LengthLimitError>() {
            BodyError::TooLarge(limit)
        } else {
            BodyError::Unreadable
        }
    })
}
