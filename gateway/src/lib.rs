//! The gateway role: `POST /v1/events`, authenticated by bearer token,
//! stored through [`ingest`] as signed, chained, sealed events on JetStream.
//!
//! # Layout
//!
//! - [`ingest`]: the order of checks and the planning of each request.
//! - [`checks`]: the checks of one event against its subject's state (pure).
//! - [`state`]: per-subject state folded from the stream, and its cache.
//! - [`publish`]: atomic batch publish with JetStream's expectations.
//! - [`error`]: the one error type and its problem+json form.
//! - [`metrics`]: Prometheus counters.
//! - [`checkpoint`]: signed checkpoints of every subject's head, published periodically.
//!
//! Besides events, the gateway erases children's data keys
//! (`POST /v1/children/{child}/erasure`, admin only), because it is the
//! role that holds the key store; the erasure is recorded on the audit
//! stream before the key goes. The gateway never touches PostgreSQL.

pub mod checkpoint;
pub mod checks;
pub mod error;
pub mod ingest;
pub mod metrics;
pub mod publish;
pub mod state;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use error::{ApiError, FieldError};
use ingest::{EventResult, Ingest};
use platform::principals::{Principal, Principals, Role};
use serde::Serialize;
use serde_json::Value;
use std::sync::Arc;
use utoipa::OpenApi;

/// The most a request body may hold.
pub const MAX_BODY: usize = 4 * 1024 * 1024;
/// The most one event may hold, encoded.
pub const MAX_EVENT: usize = 512 * 1024;
/// The most events one request may carry.
pub const MAX_BATCH: usize = 1000;

/// Shared by every request.
#[derive(Debug)]
pub struct AppState {
    pub principals: Principals,
    pub ingest: Ingest,
    /// A clock that tests can replace.
    pub now: fn() -> chrono::DateTime<chrono::Utc>,
}

/// `{"results": [...]}`, one per event in request order.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Accepted {
    pub results: Vec<EventResult>,
}

#[derive(Debug, OpenApi)]
#[openapi(
    info(title = "Safeguard gateway", description = "Publish child-protection events as CloudEvents 1.0."),
    paths(post_events, erase_child, event_schemas, event_schema, healthz, readyz, metrics_text),
    components(schemas(
        Accepted,
        EventResult,
        FieldError,
        error::KnownStored,
        error::Problem,
        Erased,
        SchemaIndex,
        SchemaEntry
    ))
)]
pub struct ApiDoc;

/// The OpenAPI document the role serves at `/openapi.json`, as JSON: utoipa's
/// from the annotations, finished (`platform::openapi`), with the event
/// catalogue as schemas (`events::schema`), one per type and their `oneOf`,
/// as the body of `POST /v1/events`.
pub fn openapi_document() -> Value {
    static DOCUMENT: std::sync::LazyLock<Value> = std::sync::LazyLock::new(|| {
        let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or(Value::Null);
        if let Some(schemas) = doc.pointer_mut("/components/schemas").and_then(Value::as_object_mut) {
            schemas.extend(events::schema::components());
        }
        let event = serde_json::json!({"$ref": "#/components/schemas/Event"});
        let batch = serde_json::json!({"type": "array", "items": event, "minItems": 1, "maxItems": MAX_BATCH});
        if let Some(body) = doc.pointer_mut("/paths/~1v1~1events/post/requestBody") {
            body["content"] = serde_json::json!({
                "application/cloudevents+json": {"schema": event},
                "application/cloudevents-batch+json": {"schema": batch},
                "application/json": {"schema": {"oneOf": [event, batch]}},
            });
        }
        platform::openapi::finish(&mut doc, &|_, name| match name {
            "child" => Some(events::schema::inline::<events::ids::ChildId>()),
            "type" => Some(
                serde_json::json!({"type": "string", "enum": events::EventType::ALL.iter().map(|t| t.name()).collect::<Vec<_>>()}),
            ),
            _ => None,
        });
        doc
    });
    DOCUMENT.clone()
}

pub fn router(state: Arc<AppState>) -> Router {
    let routes = Router::new()
        .route("/v1/events", post(post_events))
        .route("/v1/children/{child}/erasure", post(erase_child))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .route("/v1/schemas", get(event_schemas))
        .route("/v1/schemas/{type}", get(event_schema))
        .route("/openapi.json", get(openapi))
        .with_state(state);
    platform::telemetry::traced(routes)
}

/// The principal a request's bearer token names: a token of
/// `principals.toml`, or an access token of one of its identity providers.
async fn authenticate(principals: &Principals, headers: &HeaderMap) -> Result<Principal, ApiError> {
    use platform::oidc::Refused;
    let authorization = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    match principals.authenticate_bearer(authorization).await {
        Ok(who) => Ok(who.principal),
        Err(Refused::Missing | Refused::Unknown) => Err(ApiError::Unauthorized),
        // Nothing is wrong with the token that we know of: try again later.
        Err(refused @ Refused::IssuerUnreachable) => {
            Err(ApiError::Unavailable { detail: refused.to_string(), stored: Vec::new(), cause: None })
        }
        Err(refused) => Err(ApiError::TokenRefused(refused.to_string())),
    }
}

/// JSON media types: `application/json` and `application/*+json`.
/// An event sent in CloudEvents' binary content mode: each `ce-NAME`
/// header is the attribute NAME (percent-decoded, as the HTTP binding
/// encodes it), and `data` the body already parsed. Header values are
/// text, so the catalogue's two attributes of other types are read back
/// into them (`significant` a boolean, `expectedsequence` a number); a
/// value that does not read stays text, for the envelope to refuse by name.
fn binary_event(headers: &HeaderMap, data: Value) -> Result<Value, ApiError> {
    let mut event = serde_json::Map::new();
    let mut errors = Vec::new();
    for (name, value) in headers {
        let Some(attribute) = name.as_str().strip_prefix("ce-") else { continue };
        let pointer = format!("/{attribute}");
        let Some(text) = value.to_str().ok().and_then(percent_decoded) else {
            errors.push(FieldError::new(0, pointer, "the ce- header is not percent-encoded UTF-8"));
            continue;
        };
        let typed = match attribute {
            "significant" if text.eq_ignore_ascii_case("true") => Value::Bool(true),
            "significant" if text.eq_ignore_ascii_case("false") => Value::Bool(false),
            "expectedsequence" => text.parse::<u64>().map(Value::from).unwrap_or(Value::String(text)),
            _ => Value::String(text),
        };
        if attribute == "data" {
            errors.push(FieldError::new(0, pointer, "in binary mode the data is the body, not a header"));
        } else if event.insert(attribute.to_owned(), typed).is_some() {
            errors.push(FieldError::new(0, pointer, "is sent in two ce- headers"));
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::Invalid { errors });
    }
    event.insert("data".into(), data);
    Ok(Value::Object(event))
}

/// `%XX` sequences decoded, the result UTF-8; none for a broken sequence.
fn percent_decoded(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The request's own W3C trace context (`traceparent`, `tracestate`
/// headers) for every event that does not carry one: an SDK traces the
/// HTTP request, and its events belong to that trace.
fn with_request_trace(headers: &HeaderMap, events: &mut [Value]) {
    let Some(parent) = headers.get("traceparent").and_then(|v| v.to_str().ok()) else { return };
    let state = headers.get("tracestate").and_then(|v| v.to_str().ok());
    for event in events {
        if let Value::Object(object) = event
            && !object.contains_key("traceparent")
        {
            object.insert("traceparent".into(), parent.into());
            if let Some(state) = state
                && !object.contains_key("tracestate")
            {
                object.insert("tracestate".into(), state.into());
            }
        }
    }
}

fn is_json_type(media: &str) -> bool {
    media == "application/json" || (media.starts_with("application/") && media.ends_with("+json"))
}

/// Store one event or a batch.
#[utoipa::path(
    post,
    path = "/v1/events",
    request_body(content = Value, description = "One CloudEvent (application/cloudevents+json or application/json) or an array of them (application/cloudevents-batch+json)", content_type = "application/cloudevents+json"),
    responses(
        (status = 201, description = "Every event is durably stored (or was before)", body = Accepted),
        (status = 400, description = "The body is not JSON, or is empty", content_type = "application/problem+json"),
        (status = 401, description = "No or unknown bearer token", content_type = "application/problem+json"),
        (status = 403, description = "Not allowed for this principal", content_type = "application/problem+json"),
        (status = 409, description = "Sequence or id conflict; nothing stored", content_type = "application/problem+json"),
        (status = 413, description = "Body, event or batch too large", content_type = "application/problem+json"),
        (status = 415, description = "Not a JSON content type", content_type = "application/problem+json"),
        (status = 422, description = "Invalid event; nothing stored", content_type = "application/problem+json"),
        (status = 503, description = "Storage unavailable; `stored` lists what is known stored", content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
async fn post_events(State(app): State<Arc<AppState>>, headers: HeaderMap, body: Body) -> Response {
    let result = handle_post(&app, &headers, body).await;
    let status = match &result {
        Ok(_) => StatusCode::CREATED,
        Err(e) => e.status(),
    };
    app.ingest.metrics.requests.get_or_create(&metrics::StatusLabel { status: status.as_u16() }).inc();
    match result {
        Ok(accepted) => (StatusCode::CREATED, Json(accepted)).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn handle_post(app: &AppState, headers: &HeaderMap, body: Body) -> Result<Accepted, ApiError> {
    let principal = authenticate(&app.principals, headers).await?;
    if !principal.has(Role::Publish) {
        return Err(ApiError::Forbidden {
            errors: vec![FieldError::new(0, "", "this principal does not have the publish role")],
        });
    }
    let media = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or("").trim().to_ascii_lowercase())
        .unwrap_or_default();
    // CloudEvents' HTTP binding: a cloudevents media type is structured
    // (or batched) mode whatever else is sent; otherwise a ce-specversion
    // header makes it binary mode, the attributes in headers.
    let binary = !media.starts_with("application/cloudevents") && headers.contains_key("ce-specversion");
    if binary && !(media.is_empty() || media == "application/json") {
        return Err(ApiError::UnsupportedMediaType {
            detail: "in binary mode the body is the event's data: send it as application/json".into(),
        });
    }
    if !binary && !is_json_type(&media) {
        return Err(ApiError::UnsupportedMediaType {
            detail: "send application/cloudevents+json, application/json, or application/cloudevents-batch+json, \
                     or binary mode (ce-* headers, the data as application/json)"
                .into(),
        });
    }
    let bytes = platform::http::read_body(headers, body, MAX_BODY).await.map_err(|e| match e {
        platform::http::BodyError::TooLarge(_) => {
            ApiError::TooLarge { detail: format!("the body is over {MAX_BODY} bytes (4 MiB)"), errors: Vec::new() }
        }
        platform::http::BodyError::Unreadable => {
            ApiError::BadJson { detail: "the body could not be read in full".into() }
        }
    })?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::BadJson { detail: "the body is empty".into() });
    }
    let value = events::json::parse_strict(&bytes)
        .map_err(|e| ApiError::BadJson { detail: format!("{} (line {}, column {})", e.message, e.line, e.column) })?;
    let value = if binary { binary_event(headers, value)? } else { value };
    let mut events = match value {
        Value::Array(items) => {
            if items.is_empty() {
                return Err(ApiError::Invalid {
                    errors: vec![FieldError::new(0, "", "a batch must hold at least one event")],
                });
            }
            if items.len() > MAX_BATCH {
                return Err(ApiError::TooLarge {
                    detail: format!("a batch holds at most {MAX_BATCH} events; this one holds {}", items.len()),
                    errors: Vec::new(),
                });
            }
            items
        }
        single => vec![single],
    };
    let oversized: Vec<FieldError> = events
        .iter()
        .enumerate()
        .filter(|(_, e)| serde_json::to_vec(e).map(|b| b.len()).unwrap_or(0) > MAX_EVENT)
        .map(|(i, _)| FieldError::new(i, "", format!("an event may be at most {MAX_EVENT} bytes (512 KiB) encoded")))
        .collect();
    if !oversized.is_empty() {
        return Err(ApiError::TooLarge { detail: "an event is over 512 KiB".into(), errors: oversized });
    }
    with_request_trace(headers, &mut events);
    ingest::check_permissions(&principal, &events)?;
    let now = (app.now)();
    let received = ingest::validate(&events, now)?;
    // Each traced event's storing is a span of its publisher's trace
    // (the request's own span is in the trace its headers name, if any).
    let storing: Vec<(usize, tracing::Span)> = received
        .iter()
        .enumerate()
        .filter_map(|(i, event)| {
            let trace = event.trace.as_ref()?;
            let span = tracing::info_span!("gateway.store", stream_sequence = tracing::field::Empty);
            platform::telemetry::continue_trace(&span, trace.traceparent(), trace.tracestate());
            Some((i, span))
        })
        .collect();
    let results = app.ingest.ingest(&principal, received, now).await?;
    for (i, span) in storing {
        if let Some(result) = results.get(i) {
            span.record("stream_sequence", result.stream_sequence);
        }
    }
    Ok(Accepted { results })
}

/// The catalogue's event types, each with where its JSON Schema is.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SchemaIndex {
    pub schemas: Vec<SchemaEntry>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SchemaEntry {
    /// The CloudEvents `type`, such as `referral.received`.
    #[serde(rename = "type")]
    pub event_type: &'static str,
    /// What its `subject` names: `child`, `worker` or `council`.
    pub subject: &'static str,
    /// The path of its JSON Schema document.
    pub href: String,
}

/// Every event type of catalogue v1, with the path of its JSON Schema.
/// Public, like this document: the schemas hold no data.
#[utoipa::path(get, path = "/v1/schemas", responses((status = 200, description = "The catalogue's types", body = SchemaIndex)))]
async fn event_schemas() -> Json<SchemaIndex> {
    use events::SubjectKind;
    let schemas = events::EventType::ALL
        .iter()
        .map(|t| SchemaEntry {
            event_type: t.name(),
            subject: match t.subject_kind() {
                SubjectKind::Child => "child",
                SubjectKind::Worker => "worker",
                SubjectKind::Council => "council",
            },
            href: format!("{}/{}", events::schema::PATH, t.name()),
        })
        .collect();
    Json(SchemaIndex { schemas })
}

/// One event type's JSON Schema (draft 2020-12): the whole event as a
/// publisher sends it. The same documents are committed under
/// `events/schemas/`.
#[utoipa::path(
    get,
    path = "/v1/schemas/{type}",
    params(("type" = String, Path, description = "An event type of catalogue v1, such as referral.received")),
    responses(
        (status = 200, description = "The type's JSON Schema", content_type = "application/schema+json"),
        (status = 404, description = "No event type of catalogue v1 is named so", content_type = "application/problem+json"),
    )
)]
async fn event_schema(Path(name): Path<String>) -> Response {
    match events::EventType::from_name(&name) {
        Some(t) => {
            let mut response = Json(events::schema::document(t)).into_response();
            response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/schema+json"));
            response
        }
        None => ApiError::NotFound {
            detail: "no event type of catalogue v1 is named so; GET /v1/schemas lists them".into(),
        }
        .into_response(),
    }
}

/// What an erasure answers.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Erased {
    pub child: String,
    pub erased_at: String,
    /// Whether a key was erased now (false when it already had been, or the child never had one).
    pub key_erased: bool,
    /// Where the erasure is recorded in the audit stream.
    pub audit_sequence: u64,
}

/// Erases a child's data key: afterwards the child's personal data is
/// unreadable everywhere, while every chain and signature still verifies.
/// Recorded on the audit stream (`sg.audit.erasure.<pp>.<child>`) before the
/// key is erased, with its basis (`X-Purpose`, a code); safe to repeat.
#[utoipa::path(
    post,
    path = "/v1/children/{child}/erasure",
    params(("child" = String, Path, description = "The child's id")),
    responses(
        (status = 200, description = "The key is erased", body = Erased),
        (status = 401, description = "No or unknown bearer token", content_type = "application/problem+json"),
        (status = 403, description = "Not an admin", content_type = "application/problem+json"),
        (status = 404, description = "No such child in the stream", content_type = "application/problem+json"),
        (status = 422, description = "The child id is not a UUID, or X-Purpose is not a basis code (retention_ended, subject_request, court_order, recorded_in_error)", content_type = "application/problem+json"),
        (status = 503, description = "The audit stream or key store is unavailable; nothing or only the record was done, and repeating is safe", content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
async fn erase_child(State(app): State<Arc<AppState>>, Path(child): Path<String>, headers: HeaderMap) -> Response {
    match erase(&app, &child, &headers).await {
        Ok(erased) => (StatusCode::OK, Json(erased)).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn erase(app: &AppState, child: &str, headers: &HeaderMap) -> Result<Erased, ApiError> {
    use events::ids::ChildId;
    let principal = authenticate(&app.principals, headers).await?;
    if !principal.is_admin() {
        return Err(ApiError::Forbidden { errors: vec![FieldError::new(0, "", "erasure needs the admin role")] });
    }
    let child = ChildId::parse(child)
        .map_err(|m| ApiError::Invalid { errors: vec![FieldError::new(0, "/child", format!("the child id {m}"))] })?;
    let subject = events::Subject::Child(child);

    match app
        .ingest
        .stream
        .raw_message_builder()
        .last_by_subject(events::subjects::event_subject(&subject))
        .send()
        .await
    {
        Ok(_) => {}
        Err(e) if e.kind() == async_nats::jetstream::stream::RawMessageErrorKind::NoMessageFound => {
            return Err(ApiError::NotFound { detail: format!("no child {child} has any event") });
        }
        Err(e) => return Err(ApiError::unavailable("JetStream could not be read", e)),
    }
    let header = |name: &str| -> Option<String> {
        let text = headers.get(name)?.to_str().ok()?.trim();
        (!text.is_empty()).then(|| text.chars().take(200).collect())
    };
    // Why, as a code: the record outlives the key, so free text about the
    // child written here would outlive the erasure.
    let basis = match header("x-purpose") {
        Some(text) => events::audit::ErasureBasis::parse(&text),
        None => None,
    };
    let Some(basis) = basis else {
        let codes: Vec<&str> = events::audit::ErasureBasis::ALL.iter().map(|b| b.as_str()).collect();
        let message = format!("must give the erasure's basis as one of {}", codes.join(", "));
        return Err(ApiError::Invalid { errors: vec![FieldError::new(0, "/headers/x-purpose", message)] });
    };
    let at = (app.now)();
    let record = events::audit::Erasure {
        id: uuid::Uuid::new_v4(),
        child: *child.as_uuid(),
        principal: principal.name.as_str().to_owned(),
        acting_user: header("x-acting-user"),
        basis: Some(basis),
        at,
    };
    let js = async_nats::jetstream::new(app.ingest.client.clone());
    let payload = serde_json::to_vec(&record).map_err(|e| ApiError::Internal(e.into()))?;
    let publish = async {
        js.publish(events::subjects::erasure_subject(&subject), payload.into())
            .await
            .map_err(|e| ApiError::unavailable("the audit stream did not store the erasure", e))?
            .await
            .map_err(|e| ApiError::unavailable("the audit stream did not store the erasure", e))
    };
    let ack =
        tokio::time::timeout(app.ingest.publish_timeout, publish).await.map_err(|_| ApiError::Unavailable {
            detail: "the audit stream did not answer in time".into(),
            stored: Vec::new(),
            cause: None,
        })??;
    let key_erased = app
        .ingest
        .keys
        .erase(&child)
        .await
        .map_err(|e| ApiError::unavailable("the key store could not erase the key", e))?;
    tracing::info!(principal = %principal.name.as_str(), audit_sequence = ack.sequence, "erased a child's data key");
    Ok(Erased {
        child: child.to_string(),
        erased_at: at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        key_erased,
        audit_sequence: ack.sequence,
    })
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", responses((status = 200, description = "alive")))]
async fn healthz() -> &'static str {
    "ok\n"
}

/// Readiness: NATS is connected and JetStream answers.
#[utoipa::path(get, path = "/readyz", responses((status = 200, description = "ready"), (status = 503, description = "NATS or JetStream unreachable")))]
async fn readyz(State(app): State<Arc<AppState>>) -> Response {
    let connected = app.ingest.client.connection_state() == async_nats::connection::State::Connected;
    let js = async_nats::jetstream::new(app.ingest.client.clone());
    let answers = connected
        && tokio::time::timeout(std::time::Duration::from_secs(2), js.query_account()).await.is_ok_and(|r| r.is_ok());
    if answers {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "NATS JetStream is not reachable\n").into_response()
    }
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", responses((status = 200, description = "OpenMetrics text format", content_type = "application/openmetrics-text")))]
async fn metrics_text(State(app): State<Arc<AppState>>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
        app.ingest.metrics.encode(),
    )
        .into_response()
}

async fn openapi() -> Json<Value> {
    Json(openapi_document())
}
