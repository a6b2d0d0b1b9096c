//! The query role: the read endpoints of CONTRACT.md ("Reads") over the
//! read models, every request authenticated, child-level reads scoped to
//! the principal's councils and recorded in the access log before the
//! answer is sent.
//!
//! # Layout
//!
//! - [`policy`]: who may read what; the only place access is decided.
//! - [`access`]: access events, stored on the audit stream before answering.
//! - [`caller`]: who is asking, from a bearer token or a page's session: one type for both.
//! - [`error`]: the one error type and its problem+json form.
//! - [`pages`]: the same reads as pages for people, under `/ui`.
//! - [`streams`]: limits on open event streams, and each stream's caller checked again as it runs.
//! - [`verify`]: chains, signatures, the Postgres copy and checkpoints (`GET /v1/verify`, `safeguard verify`).
//!
//! The query role reads PostgreSQL and publishes nothing but access events.
//! Every handler, API and page alike, asks [`policy`] and records the
//! answer through [`admit_child`], [`admit_council`] or [`record`].

pub mod access;
pub mod alerts;
pub mod caller;
pub mod error;
pub mod export;
pub mod involvement;
pub mod pages;
pub mod params;
pub mod pdf;
pub mod policy;
pub mod streams;
pub mod verify;

use access::{AccessLog, Outcome};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use caller::Caller;
use casework::format::Format;
use casework::indicators::Period;
use chrono::{DateTime, NaiveDate, Utc};
use error::{ParamError, QueryError};
use events::calendar::business_date;
use events::ids::CouncilCode;
use futures::StreamExt as _;
use params::Params;
use platform::principals::Principals;
use policy::{ChildInfo, Need};
use projections::PgPool;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use utoipa::OpenApi;

/// Chronology entries per page unless `limit` says otherwise, and the most it may say.
pub const DEFAULT_LIMIT: i64 = 500;
pub const MAX_LIMIT: i64 = 5000;

#[derive(Debug)]
pub struct QueryState {
    pub principals: Principals,
    /// Digests NHS numbers for lookups, as the projector did when indexing.
    pub lookup_key: [u8; 32],
    pub pool: PgPool,
    pub access: AccessLog,
    pub client: async_nats::Client,
    /// Children's data keys, read only: the export opens free text to redact it.
    pub keys: Arc<platform::keystore::KeyStore>,
    /// The gateway's public key file, for verification.
    pub public_key: std::path::PathBuf,
    /// Signs certified exports (`SAFEGUARD_EXPORT_KEY`); its public keys
    /// are kept beside it for verifiers.
    pub export_key: ed25519_dalek::SigningKey,
    pub metrics: QueryMetrics,
    /// A clock that tests can replace.
    pub now: fn() -> DateTime<Utc>,
    /// Signs the pages' session cookies (a key of its own, `SAFEGUARD_SESSION_KEY`).
    pub sessions: pages::session::SessionKey,
    /// Sessions signed out before they expired (`bus::SIGNED_OUT_BUCKET`).
    pub signed_out: async_nats::jetstream::kv::Store,
    /// The event streams open now, within their limits.
    pub streams: Arc<streams::Streams>,
    /// How long a read with `min_position` waits for the read models.
    pub read_wait: std::time::Duration,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabel {
    pub endpoint: &'static str,
    pub status: u16,
}

#[derive(Debug)]
pub struct QueryMetrics {
    registry: Registry,
    pub requests: Family<RequestLabel, Counter>,
    pub access_failures: Counter,
}

impl Default for QueryMetrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("safeguard_query");
        let requests = Family::<RequestLabel, Counter>::default();
        registry.register("requests", "Read requests by endpoint and status", requests.clone());
        let access_failures = Counter::default();
        registry.register(
            "access_log_failures",
            "Reads refused with 503 because the access event could not be stored",
            access_failures.clone(),
        );
        Self { registry, requests, access_failures }
    }
}

#[derive(Debug, OpenApi)]
#[openapi(
    info(title = "Safeguard queries", description = "Chronologies, lookups, caseloads and indicators."),
    paths(
        chronology,
        export::chronology_export,
        access_log,
        family_chronology,
        verify,
        lookup,
        worker_caseload,
        caseloads,
        indicators,
        indicators_stream,
        alerts::alerts,
        alerts::alerts_stream,
        involvement::involvement,
        cin_return,
        annex_a_return,
        council_quality,
        child_quality,
        healthz,
        readyz,
        metrics_text
    ),
    components(schemas(ParamError, error::Problem))
)]
pub struct ApiDoc;

/// The OpenAPI document the role serves at `/openapi.json`, as JSON:
/// utoipa's from the annotations, finished (`platform::openapi`) with each
/// parameter's real format, and with what every read can answer because
/// of [`read_position`]: a `min_position` to wait for, and 503 when the
/// read models have not reached it in time.
pub fn openapi_document() -> Value {
    static DOCUMENT: std::sync::LazyLock<Value> = std::sync::LazyLock::new(|| {
        let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or(Value::Null);
        if let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) {
            for (_, item) in paths.iter_mut().filter(|(path, _)| path.starts_with("/v1/")) {
                for operation in item.as_object_mut().into_iter().flat_map(|o| o.values_mut()) {
                    let Some(operation) = operation.as_object_mut() else { continue };
                    let parameters = operation.entry("parameters").or_insert_with(|| json!([]));
                    if let Some(parameters) = parameters.as_array_mut() {
                        parameters.push(json!({
                            "name": "min_position", "in": "query", "required": false,
                            "description": "Read your writes: a 201's stream_sequence; the read waits until the read models have applied it",
                        }));
                    }
                    if let Some(responses) = operation.get_mut("responses").and_then(Value::as_object_mut) {
                        responses.entry("409").or_insert_with(|| {
                            platform::openapi::problem(
                                "min_position is beyond the end of the stream: no 201 returned it",
                            )
                        });
                        responses.entry("503").or_insert_with(|| {
                            platform::openapi::problem(
                                "The read models have not reached min_position in time (the body gives their position), or a store is unavailable",
                            )
                        });
                    }
                }
            }
        }
        // A lookup names a child one of two ways, each whole.
        if let Some(body) = doc.pointer_mut("/paths/~1v1~1children~1lookup/post/requestBody/content/application~1json")
        {
            body["schema"] = json!({"oneOf": [
                {
                    "type": "object",
                    "properties": {"nhs_number": {"type": "string", "pattern": "^ *([0-9] *){10}$", "description": "10 digits, spaces allowed; the last a modulus 11 check digit"}},
                    "required": ["nhs_number"],
                    "additionalProperties": false,
                },
                {
                    "type": "object",
                    "properties": {
                        "council": events::schema::inline::<CouncilCode>(),
                        "la_child_id": events::schema::inline::<events::ids::LaChildId>(),
                    },
                    "required": ["council", "la_child_id"],
                    "additionalProperties": false,
                },
            ]});
        }
        // Event streams are capped per principal and in all (`streams`).
        for (path, item) in doc["paths"].as_object_mut().into_iter().flat_map(|p| p.iter_mut()) {
            if path.ends_with("/stream")
                && let Some(responses) = item.pointer_mut("/get/responses").and_then(Value::as_object_mut)
            {
                responses.entry("429").or_insert_with(|| {
                    platform::openapi::problem(
                        "The caller, or the role, holds as many open streams as it may (Retry-After)",
                    )
                });
            }
        }
        // Reads naming a child or a worker answer 404 for one not known.
        for operation in doc["paths"]
            .as_object_mut()
            .into_iter()
            .flat_map(|p| p.values_mut())
            .filter_map(Value::as_object_mut)
            .flat_map(|o| o.values_mut())
        {
            let names_one = operation["parameters"]
                .as_array()
                .is_some_and(|ps| ps.iter().any(|p| matches!(p["name"].as_str(), Some("child" | "worker"))));
            if let (true, Some(responses)) = (names_one, operation["responses"].as_object_mut()) {
                responses
                    .entry("404")
                    .or_insert_with(|| platform::openapi::problem("No such child or worker is known"));
            }
        }
        platform::openapi::finish(&mut doc, &parameter_schema);
        doc
    });
    DOCUMENT.clone()
}

/// Every parameter of this role by name (and, for `format`, the operation
/// at `path`), with the format its parser takes.
fn parameter_schema(path: &str, name: &str) -> Option<Value> {
    use events::schema;
    Some(match name {
        "format" if path.ends_with("/export") => json!({"type": "string", "enum": ["md", "csv", "json", "pdf"]}),
        "format" => json!({"type": "string", "enum": ["json", "csv", "md"]}),
        "child" => schema::inline::<events::ids::ChildId>(),
        "worker" => schema::inline::<events::ids::WorkerId>(),
        "council" => schema::inline::<CouncilCode>(),
        "team" => schema::inline::<events::ids::LocalId>(),
        "from" | "to" | "date" => schema::date(),
        "period" | "year" => schema::financial_year(),
        "as_of" => json!({"type": "string", "format": "date-time"}),
        "limit" => json!({"type": "integer", "minimum": 1, "maximum": MAX_LIMIT}),
        "min_position" => json!({"type": "integer", "minimum": 0, "maximum": 1_u64 << 53}),
        "after" => {
            json!({"type": "string", "pattern": "^-?[0-9]{1,19}\\.-?[0-9]{1,19}$", "description": "The `next` of the previous page"})
        }
        "unallocated" => json!({"type": "boolean"}),
        "status" => {
            json!({"type": "string", "enum": casework::alerts::Status::ALL.iter().map(|s| s.code()).collect::<Vec<_>>()})
        }
        "record" => json!({"type": "string", "enum": ["anonymised", "full"]}),
        "list" => json!({"type": "integer", "enum": [1, 3, 4, 5, 6, 7]}),
        _ => return None,
    })
}

pub fn router(state: Arc<QueryState>) -> Router {
    let routes = Router::new()
        .route("/v1/children/{child}/chronology", get(chronology))
        .route("/v1/children/{child}/chronology/export", get(export::chronology_export))
        .route("/v1/children/{child}/access-log", get(access_log))
        .route("/v1/children/{child}/family", get(family_chronology))
        .route("/v1/verify", get(verify))
        .route("/v1/returns/cin", get(cin_return))
        .route("/v1/returns/annex-a", get(annex_a_return))
        .route("/v1/quality", get(council_quality))
        .route("/v1/children/{child}/quality", get(child_quality))
        .route("/v1/children/lookup", post(lookup))
        .route("/v1/workers/{worker}/caseload", get(worker_caseload))
        .route("/v1/caseloads", get(caseloads))
        .route("/v1/indicators", get(indicators))
        .route("/v1/indicators/stream", get(indicators_stream))
        .route("/v1/children/{child}/involvement", get(involvement::involvement))
        .route("/v1/alerts", get(alerts::alerts))
        .route("/v1/alerts/stream", get(alerts::alerts_stream))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .route("/openapi.json", get(|| async { Json(openapi_document()) }))
        .merge(pages::router())
        .layer(axum::middleware::from_fn_with_state(state.clone(), read_position))
        .with_state(state);
    platform::telemetry::traced(routes)
}

/// Every answer carries the read models' position (`X-Read-Position`),
/// read before the answer is made, so it is a floor: everything at or
/// below it was applied. While a projector reports a stall, answers also
/// say `X-Read-Stale: stalled`; a parked child's reads say so themselves.
///
/// Read-your-writes: a read with `min_position` (the `stream_sequence` a
/// 201 returned) first waits, up to the role's read wait, until the read
/// models have applied it; if they have not, it is answered 503 with their
/// position, and nothing is read or logged.
async fn read_position(
    State(app): State<Arc<QueryState>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let wanted = match min_position(request.uri().query()) {
        Ok(wanted) => wanted,
        Err(e) => return e.into_response(),
    };
    let known = match wanted {
        Some(wanted) => match caught_up(&app, wanted).await {
            Ok(known) => Some(known),
            Err(e) => return e.into_response(),
        },
        None => projections::health::position(&app.pool).await.ok(),
    };
    let mut response = next.run(request).await;
    if let Some((position, stalled)) = known {
        let headers = response.headers_mut();
        headers.insert("x-read-position", axum::http::HeaderValue::from(position));
        if stalled && !headers.contains_key("x-read-stale") {
            headers.insert("x-read-stale", axum::http::HeaderValue::from_static("stalled"));
        }
    }
    response
}

/// The `min_position` of a query string, if it has one.
fn min_position(query: Option<&str>) -> Result<Option<u64>, QueryError> {
    let Some(query) = query else { return Ok(None) };
    let mut found = None;
    for pair in query.split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if name != "min_position" {
            continue;
        }
        if found.is_some() {
            return Err(QueryError::invalid("min_position", "must be given once"));
        }
        let position = value.parse::<u64>().ok().filter(|p| *p <= 1 << 53).ok_or_else(|| {
            QueryError::invalid("min_position", "must be a stream position: a whole number, as a 201's stream_sequence")
        })?;
        found = Some(position);
    }
    Ok(found)
}

/// Waits until the read models have applied `wanted`, polling their
/// position (a one-row read) at a growing interval, for at most the role's
/// read wait.
///
/// A position beyond the end of the stream is no 201's `stream_sequence`
/// (the gateway answers 201 only once the event is in the stream): it is
/// refused at once, as the caller's mistake, rather than waited for and
/// answered 503 as if the read models were slow.
async fn caught_up(app: &QueryState, wanted: u64) -> Result<(u64, bool), QueryError> {
    let deadline = tokio::time::Instant::now() + app.read_wait;
    let mut pause = std::time::Duration::from_millis(2);
    let mut end_checked = false;
    loop {
        let (position, stalled) = projections::health::position(&app.pool).await?;
        if position >= wanted {
            return Ok((position, stalled));
        }
        if !end_checked {
            end_checked = true;
            // If the stream cannot be asked, wait as before: it may be slow, not wrong.
            if stream_end(&app.client).await.is_some_and(|end| wanted > end) {
                return Err(QueryError::BeyondStream(wanted));
            }
        }
        if tokio::time::Instant::now() + pause > deadline {
            return Err(QueryError::Behind { position, wanted });
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(std::time::Duration::from_millis(50));
    }
}

/// The stream position of the last event stored, as JetStream says.
async fn stream_end(client: &async_nats::Client) -> Option<u64> {
    let js = async_nats::jetstream::new(client.clone());
    let mut stream = js.get_stream(events::subjects::EVENTS_STREAM).await.ok()?;
    Some(stream.info().await.ok()?.state.last_sequence)
}

fn count(app: &QueryState, endpoint: &'static str, result: Result<Response, QueryError>) -> Response {
    let response = result.unwrap_or_else(IntoResponse::into_response);
    app.metrics.requests.get_or_create(&RequestLabel { endpoint, status: response.status().as_u16() }).inc();
    response
}

/// The caller, from the bearer token and the `X-Acting-User` / `X-Purpose` headers.
fn council_param(value: Option<&str>) -> Result<CouncilCode, QueryError> {
    let text = value.ok_or_else(|| QueryError::invalid("council", "is required (an ONS code such as E09000014)"))?;
    CouncilCode::parse(text).map_err(|m| QueryError::invalid("council", m))
}

/// The council an aggregate request names, once the caller is known to be allowed its aggregates.
async fn aggregate_scope(app: &QueryState, headers: &HeaderMap, p: &CouncilParams) -> Result<CouncilCode, QueryError> {
    let principal = Caller::from_bearer(app, headers).await?.principal;
    let council = council_param(p.council.as_deref())?;
    policy::may_read_aggregates(&principal, &council).map_err(QueryError::Forbidden)?;
    Ok(council)
}

async fn child_info(pool: &PgPool, child: uuid::Uuid) -> Result<Option<ChildInfo>, QueryError> {
    Ok(projections::reads::child_access(pool, child).await?.map(ChildInfo::from))
}

/// Checks a child-level read of `child` and records it (allowed or refused)
/// before anything is answered.
async fn admit_child(
    app: &QueryState,
    caller: &Caller,
    endpoint: &str,
    child: uuid::Uuid,
    need: Need,
) -> Result<ChildInfo, QueryError> {
    let Some(info) = child_info(&app.pool, child).await? else {
        // A child whose registration is parked is known to the stream but
        // not yet to the read models: an admin is told so rather than that
        // the child does not exist. (Whoever else asks learns nothing: the
        // council that would decide their access is not known yet either.)
        if policy::learns_of_parked(&caller.principal)
            && projections::parking::parked(&app.pool, &child.to_string()).await?.is_some()
        {
            return Err(QueryError::unavailable(format!(
                "the read models hold nothing of child {child} yet: its events are parked (safeguard parked)"
            )));
        }
        return Err(QueryError::NotFound(format!("no child {child} is known")));
    };
    if let Err(reason) = policy::may_read_child(&caller.principal, &info, need) {
        // One answer whatever the reason, so a refusal tells nobody that a
        // child is sealed or under review; the reason is in the access log.
        refuse(app, caller, endpoint, &[child], &reason).await?;
        return Err(QueryError::Forbidden(policy::CHILD_REFUSED.to_owned()));
    }
    record(app, caller, endpoint, &[child], Outcome::Allowed).await?;
    Ok(info)
}

/// Council-wide child-level reads (returns, data-quality lists): the
/// practitioner or admin role for the council; a refusal is recorded.
async fn admit_council(
    app: &QueryState,
    caller: &Caller,
    endpoint: &str,
    council: &CouncilCode,
) -> Result<(), QueryError> {
    let Err(refusal) = policy::may_read_council_children(&caller.principal, council) else { return Ok(()) };
    refuse(app, caller, endpoint, &[], &refusal).await?;
    Err(QueryError::Forbidden(refusal))
}

/// How many sealed children a return left out, for a reader who may not
/// see them (0 for an admin, whose return is whole).
const SEALED_WITHHELD: header::HeaderName = header::HeaderName::from_static("x-sealed-children-withheld");

async fn record(
    app: &QueryState,
    caller: &Caller,
    endpoint: &str,
    children: &[uuid::Uuid],
    outcome: Outcome,
) -> Result<(), QueryError> {
    logged(app, caller, endpoint, children, outcome, None).await
}

/// Records a refused read with why it was refused.
async fn refuse(
    app: &QueryState,
    caller: &Caller,
    endpoint: &str,
    children: &[uuid::Uuid],
    reason: &str,
) -> Result<(), QueryError> {
    logged(app, caller, endpoint, children, Outcome::Refused, Some(reason)).await
}

async fn logged(
    app: &QueryState,
    caller: &Caller,
    endpoint: &str,
    children: &[uuid::Uuid],
    outcome: Outcome,
    reason: Option<&str>,
) -> Result<(), QueryError> {
    app.access.record(&caller.asker, endpoint, children, outcome, reason, (app.now)()).await.map_err(|e| {
        app.metrics.access_failures.inc();
        QueryError::dependency("the access log could not record this read, so it is not answered", e)
    })
}

/// A child's or worker's id as the gateway takes it: lowercase hyphenated,
/// the one form the catalogue writes, not any form a UUID parser reads.
fn uuid_param(name: &str, text: &str) -> Result<uuid::Uuid, QueryError> {
    events::ids::parse_canonical_uuid(text, name).map_err(|m| QueryError::invalid(name, m))
}

/// A date as the catalogue reads one: `YYYY-MM-DD`, a real day.
fn date_param(name: &str, text: Option<&str>) -> Result<Option<NaiveDate>, QueryError> {
    text.map(|t| events::fields::parse_date(t).map_err(|m| QueryError::invalid(name, m))).transpose()
}

#[derive(Debug, Default, Deserialize)]
pub struct ChronologyParams {
    as_of: Option<String>,
    from: Option<String>,
    to: Option<String>,
    limit: Option<String>,
    after: Option<String>,
    format: Option<String>,
}

/// `after` cursors are opaque to callers: microseconds of the business time and the subject sequence.
fn cursor(entry: &projections::chronology::Entry) -> String {
    format!("{}.{}", entry.occurred_at.timestamp_micros(), entry.sequence)
}

fn parse_cursor(text: &str) -> Option<(DateTime<Utc>, i64)> {
    let (micros, seq) = text.split_once('.')?;
    Some((DateTime::from_timestamp_micros(micros.parse().ok()?)?, seq.parse().ok()?))
}

/// A child's chronology across agencies, in business-time order.
#[utoipa::path(
    get,
    path = "/v1/children/{child}/chronology",
    params(
        ("child" = String, Path, description = "The child's id"),
        ("as_of" = Option<String>, Query, description = "RFC 3339 time: only what had been recorded by then, as it then stood"),
        ("from" = Option<String>, Query, description = "First business date, inclusive"),
        ("to" = Option<String>, Query, description = "Last business date, inclusive"),
        ("limit" = Option<i64>, Query, description = "Entries per page (1 to 5000, default 500)"),
        ("after" = Option<String>, Query, description = "The `next` of the previous page"),
        ("format" = Option<String>, Query, description = "json (default), csv or md"),
    ),
    responses(
        (status = 200, description = "The chronology"),
        (status = 403, description = "Outside the principal's scope (recorded)", content_type = "application/problem+json"),
        (status = 404, description = "Unknown child", content_type = "application/problem+json"),
        (status = 422, description = "A parameter is invalid", content_type = "application/problem+json"),
        (status = 503, description = "The access log could not record the read", content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
async fn chronology(
    State(app): State<Arc<QueryState>>,
    Path(child): Path<String>,
    Params(params): Params<ChronologyParams>,
    headers: HeaderMap,
) -> Response {
    let result = read_chronology(&app, &child, params, &headers).await;
    count(&app, "chronology", result)
}

async fn read_chronology(
    app: &QueryState,
    child: &str,
    params: ChronologyParams,
    headers: &HeaderMap,
) -> Result<Response, QueryError> {
    let caller = Caller::from_bearer(app, headers).await?;
    let child = uuid_param("child", child)?;
    // Every parameter is checked before the read is admitted and logged.
    let mut problems = Vec::new();
    let mut check = |r: Result<(), QueryError>| {
        if let Err(QueryError::Invalid(mut e)) = r {
            problems.append(&mut e);
        }
    };
    let mut as_of = (app.now)();
    if let Some(t) = &params.as_of {
        match DateTime::parse_from_rfc3339(t) {
            Ok(t) => as_of = t.to_utc(),
            Err(_) => check(Err(QueryError::invalid("as_of", "must be an RFC 3339 time, e.g. 2025-01-14T09:30:00Z"))),
        }
    }
    let from = date_param("from", params.from.as_deref()).unwrap_or_else(|e| {
        check(Err(e));
        None
    });
    let to = date_param("to", params.to.as_deref()).unwrap_or_else(|e| {
        check(Err(e));
        None
    });
    let mut limit = DEFAULT_LIMIT;
    if let Some(l) = &params.limit {
        match l.parse::<i64>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => limit = n,
            _ => check(Err(QueryError::invalid("limit", format!("must be a whole number from 1 to {MAX_LIMIT}")))),
        }
    }
    let after = match &params.after {
        Some(a) => parse_cursor(a).or_else(|| {
            check(Err(QueryError::invalid("after", "must be the `next` value of a previous page")));
            None
        }),
        None => None,
    };
    let format = match params.format.as_deref().map_or(Some(Format::Json), Format::from_param) {
        Some(Format::Pdf) => {
            check(Err(QueryError::invalid(
                "format",
                "must be json, csv or md; a PDF is an export (/chronology/export)",
            )));
            Format::Json
        }
        Some(format) => format,
        None => {
            check(Err(QueryError::invalid("format", "must be json, csv or md")));
            Format::Json
        }
    };
    if !problems.is_empty() {
        return Err(QueryError::Invalid(problems));
    }
    admit_child(app, &caller, "GET /v1/children/{child}/chronology", child, Need::Record).await?;

    let q = projections::chronology::Query { child, as_of, from, to, limit: limit + 1, after };
    let stale = parked_child(app, child).await?;
    let mut entries = projections::chronology::read(&app.pool, &q).await?;
    let next = if entries.len() as i64 > limit {
        entries.truncate(limit as usize);
        entries.last().map(cursor)
    } else {
        None
    };
    let first_serial = 1 + match after {
        Some(_) => serial_before(app, &q).await?,
        None => 0,
    };
    let record = full_record(app, child, as_of).await?;
    let extras =
        casework::format::Extras { narratives: &record.narratives, plo: &record.plo, agencies: &record.agencies };
    Ok(match format {
        Format::Csv => (
            [(header::CONTENT_TYPE, "text/csv; charset=utf-8")],
            casework::format::csv(&entries, first_serial, &extras),
        )
            .into_response(),
        Format::Markdown => (
            [(header::CONTENT_TYPE, "text/markdown; charset=utf-8")],
            casework::format::markdown(&child, &as_of, &entries, first_serial, &extras),
        )
            .into_response(),
        // A PDF was refused above.
        Format::Json | Format::Pdf => {
            let entries: Vec<Value> = entries.iter().map(|e| entry_json(e, &record)).collect();
            Json(json!({ "child": child, "as_of": as_of, "entries": entries, "next": next, "stale": stale }))
                .into_response()
        }
    })
    .map(|r| marked_stale(r, stale.as_ref()))
}

/// One chronology entry as the full record answers it in JSON: the stored
/// line with its lasting reference, agency, narrative and PLO columns.
fn entry_json(e: &projections::chronology::Entry, record: &FullRecord) -> Value {
    let mut v = serde_json::to_value(e).unwrap_or_default();
    v["reference"] = json!(casework::narrative::reference(e));
    if let Some(agency) = record.agencies.get(e.source.as_str()) {
        v["agency"] = json!(agency);
    }
    if let Some(n) = casework::narrative::of(&record.narratives, e) {
        v["narrative"] = json!(n);
    }
    if let (Some(plo), Value::Object(map)) = (record.plo.get(&e.sequence), &mut v)
        && let Value::Object(columns) = json!(plo)
    {
        map.extend(columns);
    }
    v
}

/// The family view: the child's chronology with those of the children its
/// relationships link it to (brothers and sisters, children of one
/// household), a lane each, in one date order. The child asked about must
/// be readable (else 403, logged); each linked child is included only if
/// the caller may read its record too, and each read is logged. A linked
/// child the caller may not read is left out without a word, so the view
/// tells nobody that it exists.
#[utoipa::path(
    get,
    path = "/v1/children/{child}/family",
    params(("child" = String, Path, description = "The child's id")),
    responses(
        (status = 200, description = r#"{"children": [{"child", "lane"}], "entries": [... each with "child" and "lane"]}"#),
        (status = 403, description = "Not allowed to read this child's record (recorded)", content_type = "application/problem+json"),
        (status = 404, description = "Unknown child", content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
async fn family_chronology(
    State(app): State<Arc<QueryState>>,
    Path(child): Path<String>,
    headers: HeaderMap,
) -> Response {
    let result = async {
        let caller = Caller::from_bearer(&app, &headers).await?;
        let child = uuid_param("child", &child)?;
        let endpoint = "GET /v1/children/{child}/family";
        admit_child(&app, &caller, endpoint, child, Need::Record).await?;
        let mut members = vec![child];
        members.extend(family_members(&app, &caller, endpoint, child).await?);
        let now = (app.now)();
        let mut lanes = Vec::new();
        let mut entries: Vec<(DateTime<Utc>, usize, i64, Value)> = Vec::new();
        for (i, member) in members.iter().enumerate() {
            let lane = format!("Child {}", i + 1);
            lanes.push(json!({ "child": member, "lane": lane }));
            let q = projections::chronology::Query::whole(*member, now);
            let record = full_record(&app, *member, now).await?;
            for e in projections::chronology::read(&app.pool, &q).await? {
                let mut v = entry_json(&e, &record);
                v["child"] = json!(member);
                v["lane"] = json!(lane);
                entries.push((e.occurred_at, i, e.sequence, v));
            }
        }
        entries.sort_by_key(|e| (e.0, e.1, e.2));
        let entries: Vec<Value> = entries.into_iter().map(|(_, _, _, v)| v).collect();
        Ok(Json(json!({ "child": child, "as_of": now, "children": lanes, "entries": entries })).into_response())
    }
    .await;
    count(&app, "family", result)
}

/// The children linked to `child` as family whose records the caller may
/// read, each read recorded; the others are left out without a word.
pub(crate) async fn family_members(
    app: &QueryState,
    caller: &Caller,
    endpoint: &str,
    child: uuid::Uuid,
) -> Result<Vec<uuid::Uuid>, QueryError> {
    let mut members = Vec::new();
    for other in projections::reads::family(&app.pool, child).await? {
        let Some(info) = child_info(&app.pool, other).await? else { continue };
        if policy::may_read_child(&caller.principal, &info, Need::Record).is_ok() {
            record(app, caller, endpoint, &[other], Outcome::Allowed).await?;
            members.push(other);
        }
    }
    Ok(members)
}

/// The professionals a child's history names (the workers cases went to,
/// whoever saw the child), each by the name sealed in their own record,
/// their role and their agency.
pub(crate) async fn professionals(
    app: &QueryState,
    history: &casework::facts::History,
) -> Result<casework::narrative::Professionals, QueryError> {
    let mut ids = casework::anonymise::worker_ids(history);
    ids.sort_unstable();
    ids.dedup();
    let roles = projections::reads::worker_roles(&app.pool, &ids).await?;
    // One read for every worker's record; ids that name no worker (a
    // professional from elsewhere who saw the child) have none.
    let records = projections::reads::worker_histories(&app.pool, &ids).await?;
    let mut out = casework::narrative::Professionals::new();
    for (id, record) in records {
        let key = app
            .keys
            .existing_worker_key(&events::ids::WorkerId::from_uuid(id))
            .await
            .map_err(|e| QueryError::dependency("the key store is unavailable", e))?;
        let (given_name, family_name) = casework::narrative::professional_name(id, &record, key.as_ref());
        let agency = record
            .iter()
            .find(|r| matches!(r.data, events::EventData::WorkerJoined(_)))
            .and_then(|r| app.principals.named(r.source.as_str()))
            .map(|p| p.display_name);
        let role = roles.get(&id.to_string()).copied();
        out.insert(id.to_string(), casework::narrative::Professional { given_name, family_name, role, agency });
    }
    Ok(out)
}

/// What the full record shows beside the stored lines.
pub(crate) struct FullRecord {
    /// What each event says in words, opened with the child's key.
    pub narratives: casework::narrative::Narratives,
    /// The PLO columns, as far as the history had been recorded by `as_of`.
    pub plo: casework::plo::Plos,
    /// Every publisher of the history, as people name it.
    pub agencies: casework::narrative::Agencies,
}

/// The full record's narrative and PLO columns, for a reader already
/// admitted to the record: made for the answer and never stored.
pub(crate) async fn full_record(
    app: &QueryState,
    child: uuid::Uuid,
    as_of: DateTime<Utc>,
) -> Result<FullRecord, QueryError> {
    let history = projections::reads::child_history(&app.pool, child).await?;
    let up_to = projections::chronology::last_sequence_by(&app.pool, child, as_of).await?;
    let key = app
        .keys
        .existing_key(&events::ids::ChildId::from_uuid(child))
        .await
        .map_err(|e| QueryError::dependency("the key store is unavailable", e))?;
    let agencies = history
        .iter()
        .filter_map(|r| {
            let p = app.principals.named(r.source.as_str())?;
            Some((
                p.name.as_str().to_owned(),
                casework::narrative::Agency { name: p.display_name, kind: p.agency.code().to_owned() },
            ))
        })
        .collect();
    let professionals = professionals(app, &history).await?;
    Ok(FullRecord {
        narratives: casework::narrative::narratives(child, &history, key.as_ref(), &professionals),
        plo: casework::plo::plo(&history, up_to),
        agencies,
    })
}

/// Whether a child's read models stand still behind a parked subject:
/// what is shown is what was known before the first event that could not
/// be applied. Reads say so, in a `stale` field and `X-Read-Stale`.
async fn parked_child(app: &QueryState, child: uuid::Uuid) -> Result<Option<Value>, QueryError> {
    let parked = projections::parking::parked(&app.pool, &child.to_string()).await?;
    Ok(parked.map(|p| {
        json!({
            "reason": "parked",
            "detail": "events from this stream position on could not be applied yet and are not shown",
            "stream_seq": p.stream_seq,
            "waiting": p.waiting,
            "since": p.parked_at,
        })
    }))
}

/// `X-Read-Stale: parked; stream_seq=N` on a read of a parked child.
fn marked_stale(mut response: Response, stale: Option<&Value>) -> Response {
    if let Some(seq) = stale.and_then(|s| s["stream_seq"].as_i64())
        && let Ok(value) = axum::http::HeaderValue::from_str(&format!("parked; stream_seq={seq}"))
    {
        response.headers_mut().insert("x-read-stale", value);
    }
    response
}

/// How many entries come before a page, so serial numbers run on across pages.
async fn serial_before(app: &QueryState, q: &projections::chronology::Query) -> Result<usize, QueryError> {
    Ok(projections::chronology::entries_before(&app.pool, q).await?)
}

/// Who has read the child's record, or been refused: for auditors and
/// admins. Reading it is itself recorded. Entries are those the projector
/// has taken from the audit stream (up to `audit_position`).
#[utoipa::path(
    get,
    path = "/v1/children/{child}/access-log",
    params(("child" = String, Path, description = "The child's id")),
    responses(
        (status = 200, description = r#"{"child", "entries": [{"principal", "acting_user", "purpose", "endpoint", "at", "outcome"}]}"#),
        (status = 403, description = "Not an auditor of the child's council (recorded)", content_type = "application/problem+json"),
        (status = 404, description = "Unknown child", content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
async fn access_log(State(app): State<Arc<QueryState>>, Path(child): Path<String>, headers: HeaderMap) -> Response {
    let result = async {
        let caller = Caller::from_bearer(&app, &headers).await?;
        let child = uuid_param("child", &child)?;
        admit_child(&app, &caller, "GET /v1/children/{child}/access-log", child, Need::Audit).await?;
        let (records, position) = projections::audit::access_log(&app.pool, child).await?;
        let key = app
            .keys
            .existing_key(&events::ids::ChildId::from_uuid(child))
            .await
            .map_err(|e| QueryError::dependency("the key store is unavailable", e))?;
        let entries: Vec<Value> = records.iter().map(|r| access_entry(r, child, key.as_ref())).collect();
        Ok(Json(json!({ "child": child, "entries": entries, "audit_position": position })).into_response())
    }
    .await;
    count(&app, "access_log", result)
}

/// One access-log entry as the log answers it: the purpose opened with the
/// child's key (null once the key is erased, or if none was kept).
fn access_entry(
    record: &projections::audit::AccessRecord,
    child: uuid::Uuid,
    key: Option<&events::privacy::DataKey>,
) -> Value {
    use events::audit::Purpose;
    let (purpose, kept) = match record.purpose.as_ref().map(|p| &p.0) {
        None => (None, "none given"),
        Some(Purpose::Legacy(text)) => (Some(text.clone()), "in clear (recorded before purposes were sealed)"),
        Some(Purpose::Withheld) => (None, "withheld (no child's key to seal it under)"),
        Some(Purpose::Sealed(sealed)) => match key {
            None => (None, "erased with the child's data key"),
            Some(key) => match sealed.open_json(key, &Purpose::place(child, record.id)) {
                Ok(Value::String(text)) => (Some(text), "sealed"),
                _ => (None, "does not open"),
            },
        },
    };
    let mut entry = json!({
        "principal": record.principal.as_str(),
        "acting_user": record.acting_user,
        "purpose": purpose,
        "purpose_kept": kept,
        "endpoint": record.endpoint,
        "at": record.at,
        "outcome": record.outcome.as_str(),
    });
    if let Some(reason) = &record.reason {
        entry["reason"] = json!(reason);
    }
    entry
}

#[derive(Debug, Default, Deserialize)]
pub struct VerifyParams {
    child: Option<String>,
}

/// Checks every chain and signature in the stream (or one child's) against
/// the Postgres copy and the signed checkpoints, and reports each break.
#[utoipa::path(
    get,
    path = "/v1/verify",
    params(("child" = Option<String>, Query, description = "Only this child's history")),
    responses(
        (status = 200, description = r#"{"ok", "checked", "breaks": [{"subject", "sequence", "kind", "detail"}], "checkpoints": {...}}"#),
        (status = 403, description = "Not an auditor (of every council, for the whole stream)", content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
async fn verify(State(app): State<Arc<QueryState>>, Params(p): Params<VerifyParams>, headers: HeaderMap) -> Response {
    let result = async {
        let caller = Caller::from_bearer(&app, &headers).await?;
        let child = match p.child.as_deref() {
            Some(text) => {
                let child = uuid_param("child", text)?;
                admit_child(&app, &caller, "GET /v1/verify", child, Need::Audit).await?;
                Some(events::Subject::Child(events::ids::ChildId::from_uuid(child)))
            }
            None => {
                policy::may_verify_stream(&caller.principal).map_err(QueryError::Forbidden)?;
                None
            }
        };
        let keys = gateway_keys(&app)?;
        let js = app.access.js.clone();
        let report = crate::verify::verify(&js, Some(&app.pool), &keys, child.as_ref())
            .await
            .map_err(|e| QueryError::dependency("verification could not run", e))?;
        Ok(Json(report).into_response())
    }
    .await;
    count(&app, "verify", result)
}

/// The gateway's public keys, read from its public key file.
pub(crate) fn gateway_keys(app: &QueryState) -> Result<Vec<ed25519_dalek::VerifyingKey>, QueryError> {
    let text = std::fs::read_to_string(&app.public_key).map_err(|e| {
        QueryError::dependency(
            "the gateway's public keys cannot be read",
            anyhow::Error::new(e).context(app.public_key.display().to_string()),
        )
    })?;
    events::chain::decode_verifying_keys(&text).map_err(|m| {
        QueryError::dependency(
            "the gateway's public keys cannot be read",
            anyhow::anyhow!("{}: {m}", app.public_key.display()),
        )
    })
}

#[derive(Debug, Default, Deserialize)]
pub struct ReturnParams {
    council: Option<String>,
    year: Option<String>,
    date: Option<String>,
    list: Option<String>,
}

/// The DfE CIN census XML for a council and collection year, from the
/// read models. Every child in it is recorded in the access log.
#[utoipa::path(
    get,
    path = "/v1/returns/cin",
    params(
        ("council" = String, Query, description = "ONS code"),
        ("year" = String, Query, description = "Collection year such as 2024-25"),
    ),
    responses(
        (status = 200, description = "The CIN census message", content_type = "application/xml"),
        (status = 403, description = "Not a practitioner or admin of the council", content_type = "application/problem+json"),
        (status = 409, description = "The council has no DfE LA code configured (council.configured with dfe_la_code)", content_type = "application/problem+json"),
        (status = 422, description = "A parameter is invalid", content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
async fn cin_return(
    State(app): State<Arc<QueryState>>,
    Params(p): Params<ReturnParams>,
    headers: HeaderMap,
) -> Response {
    let result = read_cin_return(&app, &p, &headers).await;
    count(&app, "cin_return", result)
}

async fn read_cin_return(app: &QueryState, p: &ReturnParams, headers: &HeaderMap) -> Result<Response, QueryError> {
    let endpoint = "GET /v1/returns/cin";
    let caller = Caller::from_bearer(app, headers).await?;
    let council = council_param(p.council.as_deref())?;
    let year = p
        .year
        .as_deref()
        .ok_or_else(|| QueryError::invalid("year", "is required (a collection year such as 2024-25)"))?;
    let year = casework::cin::CollectionYear::parse(year).map_err(|m| QueryError::invalid("year", m))?;
    admit_council(app, &caller, endpoint, &council).await?;
    // Sealed children are returned to admins only (who make the statutory
    // return); anyone else's copy leaves them out and says how many.
    let loaded = projections::cin::load(
        &app.pool,
        &council,
        &year,
        policy::sees_sealed(&caller.principal),
        projections::cin::Scope::Referred,
    )
    .await?;
    let (withheld, histories) = (loaded.withheld, loaded.histories);
    let dfe = loaded.dfe.ok_or_else(|| {
        QueryError::NotConfigured(
            "the council has no DfE LA code: publish council.configured with dfe_la_code first".into(),
        )
    })?;
    let calendar = events::calendar::Calendar::england_and_wales();
    let mut children = Vec::new();
    let mut ids = Vec::new();
    for (child, mut history) in histories {
        let key = app
            .keys
            .existing_key(&events::ids::ChildId::from_uuid(child))
            .await
            .map_err(|e| QueryError::dependency("the key store is unavailable", e))?;
        if let Some(key) = key {
            casework::cin::open_people(&child.to_string(), &mut history, &key);
        }
        if let Some(record) = casework::cin::census_child(&history, &council, &year, calendar) {
            ids.push(child);
            children.push(record);
        }
    }
    children.sort_by(|a, b| a.la_child_id.cmp(&b.la_child_id));
    // Sealed children are in statutory returns too; every child returned is a child-level read.
    record(app, &caller, endpoint, &ids, Outcome::Allowed).await?;
    let made_at = (app.now)();
    let year_name = format!("{}-{}", year.start.format("%Y"), year.reference_date.format("%y"));
    let serial = next_serial(app, &caller, "cin", &council, &year_name, made_at).await?;
    let header = casework::cin::Header {
        dfe_la_code: dfe,
        software: "Safeguard".into(),
        release: env!("CARGO_PKG_VERSION").into(),
        serial,
        made_at,
    };
    let xml = casework::cin::message(&header, &year, &children);
    Ok((
        [(header::CONTENT_TYPE, "application/xml; charset=utf-8".to_owned()), (SEALED_WITHHELD, withheld.to_string())],
        xml,
    )
        .into_response())
}

/// The serial number of a return about to be made: one more than the last
/// made of the same kind, council and year, recorded on the audit stream
/// (`events::audit::ReturnMade`) before the return is answered. Published
/// expecting the last record there, so two query roles making the same
/// return at once get two numbers.
async fn next_serial(
    app: &QueryState,
    caller: &Caller,
    kind: &str,
    council: &CouncilCode,
    year: &str,
    at: DateTime<Utc>,
) -> Result<u32, QueryError> {
    use async_nats::jetstream::context::PublishErrorKind;
    use async_nats::jetstream::stream::LastRawMessageErrorKind;
    let unavailable = |e: anyhow::Error| QueryError::dependency("the audit stream could not number the return", e);
    let subject = events::subjects::return_subject(kind, council.as_str(), year);
    let stream = app.access.js.get_stream(platform::bus::AUDIT_STREAM).await.map_err(|e| unavailable(e.into()))?;
    for _ in 0..10 {
        let (serial, expected) = match stream.get_last_raw_message_by_subject(&subject).await {
            Ok(last) => {
                let made: events::audit::ReturnMade =
                    serde_json::from_slice(&last.payload).map_err(|e| unavailable(e.into()))?;
                (made.serial + 1, last.sequence)
            }
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => (1, 0),
            Err(e) => return Err(unavailable(e.into())),
        };
        let made = events::audit::ReturnMade {
            kind: kind.to_owned(),
            council: council.as_str().to_owned(),
            year: year.to_owned(),
            serial,
            principal: caller.principal.name.as_str().to_owned(),
            acting_user: caller.asker.acting_user.clone(),
            at,
        };
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(async_nats::header::NATS_EXPECTED_LAST_SUBJECT_SEQUENCE, expected.to_string().as_str());
        let payload = serde_json::to_vec(&made).map_err(|e| unavailable(e.into()))?;
        let ack = app
            .access
            .js
            .publish_with_headers(subject.clone(), headers, payload.into())
            .await
            .map_err(|e| unavailable(e.into()))?;
        match ack.await {
            Ok(_) => return Ok(serial),
            // Another query role numbered one first: take the next.
            Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => continue,
            Err(e) => return Err(unavailable(e.into())),
        }
    }
    Err(QueryError::unavailable("the return could not be numbered: too many made at once; try again"))
}

/// One of Ofsted's Annex A lists (1, 3, 4, 5, 6 or 7) for the six months
/// before an inspection date, as CSV with Ofsted's columns and values.
#[utoipa::path(
    get,
    path = "/v1/returns/annex-a",
    params(
        ("council" = String, Query, description = "ONS code"),
        ("date" = String, Query, description = "The inspection date, YYYY-MM-DD"),
        ("list" = u8, Query, description = "1, 3, 4, 5, 6 or 7"),
    ),
    responses((status = 200, description = "The list", content_type = "text/csv")),
    security(("bearer" = []))
)]
async fn annex_a_return(
    State(app): State<Arc<QueryState>>,
    Params(p): Params<ReturnParams>,
    headers: HeaderMap,
) -> Response {
    let result = async {
        let endpoint = "GET /v1/returns/annex-a";
        let caller = Caller::from_bearer(&app, &headers).await?;
        let council = council_param(p.council.as_deref())?;
        let date = date_param("date", p.date.as_deref())?
            .ok_or_else(|| QueryError::invalid("date", "is required (the inspection date, YYYY-MM-DD)"))?;
        let list = p
            .list
            .as_deref()
            .and_then(|l| l.parse::<u8>().ok())
            .filter(|l| casework::annex_a::LISTS.contains(l))
            .ok_or_else(|| QueryError::invalid("list", "must be 1, 3, 4, 5, 6 or 7"))?;
        admit_council(&app, &caller, endpoint, &council).await?;
        let from = date.checked_sub_months(chrono::Months::new(6)).unwrap_or(date);
        let window = casework::cin::CollectionYear { start: from, reference_date: date };
        let loaded = projections::cin::load(
            &app.pool,
            &council,
            &window,
            policy::sees_sealed(&caller.principal),
            projections::cin::Scope::ReferredOrContacted,
        )
        .await?;
        let (withheld, histories) = (loaded.withheld, loaded.histories);
        let calendar = events::calendar::Calendar::england_and_wales();
        let mut rows = Vec::new();
        let mut ids = Vec::new();
        for (child, history) in histories {
            let mine: Vec<Vec<String>> = casework::annex_a::rows(&history, &council, date, calendar)
                .into_iter()
                .filter(|(l, _)| *l == list)
                .map(|(_, row)| row)
                .collect();
            if !mine.is_empty() {
                ids.push(child);
                rows.extend(mine);
            }
        }
        rows.sort();
        record(&app, &caller, endpoint, &ids, Outcome::Allowed).await?;
        let csv = casework::annex_a::csv(list, &rows);
        Ok((
            [(header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()), (SEALED_WITHHELD, withheld.to_string())],
            csv,
        )
            .into_response())
    }
    .await;
    count(&app, "annex_a", result)
}

/// A council's data-quality flags: the DfE rules its children's histories
/// break, per rule and per child, so they are fixed before the return.
#[utoipa::path(
    get,
    path = "/v1/quality",
    params(("council" = String, Query, description = "ONS code")),
    responses((status = 200, description = r#"{"council", "rules": [{"rule", "description", "children", "flags"}], "flags": [{"child", "rule", "reference", "detail", "on"}]}"#)),
    security(("bearer" = []))
)]
async fn council_quality(
    State(app): State<Arc<QueryState>>,
    Params(p): Params<CouncilParams>,
    headers: HeaderMap,
) -> Response {
    let result = async {
        let endpoint = "GET /v1/quality";
        let caller = Caller::from_bearer(&app, &headers).await?;
        let council = council_param(p.council.as_deref())?;
        admit_council(&app, &caller, endpoint, &council).await?;
        let counts = projections::reads::flag_counts(&app.pool, council.as_str()).await?;
        // The list names children: sealed ones only for admins.
        let flags =
            projections::reads::council_flags(&app.pool, council.as_str(), policy::sees_sealed(&caller.principal))
                .await?;
        let mut ids: Vec<uuid::Uuid> = flags.iter().map(|f| f.child).collect();
        ids.sort();
        ids.dedup();
        record(&app, &caller, endpoint, &ids, Outcome::Allowed).await?;
        let rules: Vec<Value> = counts
            .into_iter()
            .map(|(rule, children, n)| {
                json!({"rule": rule, "description": rule.label(), "children": children, "flags": n})
            })
            .collect();
        Ok(Json(json!({ "council": council.as_str(), "rules": rules, "flags": flags })).into_response())
    }
    .await;
    count(&app, "quality", result)
}

/// One child's data-quality flags.
#[utoipa::path(
    get,
    path = "/v1/children/{child}/quality",
    params(("child" = String, Path, description = "The child's id")),
    responses((status = 200, description = r#"{"child", "flags": [{"rule", "description", "reference", "detail", "on"}]}"#)),
    security(("bearer" = []))
)]
async fn child_quality(State(app): State<Arc<QueryState>>, Path(child): Path<String>, headers: HeaderMap) -> Response {
    let result = async {
        let caller = Caller::from_bearer(&app, &headers).await?;
        let child = uuid_param("child", &child)?;
        admit_child(&app, &caller, "GET /v1/children/{child}/quality", child, Need::Record).await?;
        let flags = projections::reads::child_flags(&app.pool, child).await?;
        let flags: Vec<Value> = flags
            .into_iter()
            .map(|f| json!({"rule": f.rule, "description": f.rule.label(), "reference": f.reference, "detail": f.detail, "on": f.on}))
            .collect();
        let stale = parked_child(&app, child).await?;
        Ok(marked_stale(Json(json!({ "child": child, "flags": flags, "stale": stale })).into_response(), stale.as_ref()))
    }
    .await;
    count(&app, "child_quality", result)
}

#[derive(Debug, Serialize)]
struct Found {
    child: uuid::Uuid,
    council: CouncilCode,
}

/// Finds children by the council's own id or by NHS number.
#[utoipa::path(
    post,
    path = "/v1/children/lookup",
    request_body(content = Value, description = r#"{"council", "la_child_id"} or {"nhs_number"}"#),
    responses((status = 200, description = r#"{"children": [{"child", "council"}]}"#)),
    security(("bearer" = []))
)]
async fn lookup(State(app): State<Arc<QueryState>>, headers: HeaderMap, body: axum::body::Body) -> Response {
    let result = do_lookup(&app, &headers, body).await;
    count(&app, "lookup", result)
}

/// A lookup names one child: far less than this.
const LOOKUP_BODY_LIMIT: usize = 4 * 1024;

/// The body through [`platform::http::read_body`], its refusals as the query role answers them.
pub async fn bounded_body(
    headers: &HeaderMap,
    body: axum::body::Body,
    limit: usize,
) -> Result<bytes::Bytes, QueryError> {
    platform::http::read_body(headers, body, limit).await.map_err(|e| match e {
        platform::http::BodyError::TooLarge(limit) => {
            QueryError::TooLarge(format!("the body must be at most {limit} bytes"))
        }
        platform::http::BodyError::Unreadable => QueryError::invalid("body", "could not be read in full"),
    })
}

async fn do_lookup(app: &QueryState, headers: &HeaderMap, body: axum::body::Body) -> Result<Response, QueryError> {
    let caller = Caller::from_bearer(app, headers).await?;
    let endpoint = "POST /v1/children/lookup";
    if let Err(refusal) = policy::may_look_up(&caller.principal) {
        refuse(app, &caller, endpoint, &[], &refusal).await?;
        return Err(QueryError::Forbidden(refusal));
    }
    let body = bounded_body(headers, body, LOOKUP_BODY_LIMIT).await?;
    let value = events::json::parse_strict(&body).map_err(|e| QueryError::invalid("body", e.message))?;
    let Value::Object(map) = value else {
        return Err(QueryError::invalid("body", r#"must be {"council", "la_child_id"} or {"nhs_number"}"#));
    };
    let text = |name: &str| map.get(name).and_then(Value::as_str);
    for key in map.keys() {
        if !matches!(key.as_str(), "council" | "la_child_id" | "nhs_number") {
            return Err(QueryError::invalid(key, "is not a lookup field (council, la_child_id or nhs_number)"));
        }
    }
    let wanted = if map.contains_key("nhs_number") {
        if map.len() > 1 {
            return Err(QueryError::invalid("nhs_number", "give the NHS number alone, or council and la_child_id"));
        }
        Lookup::nhs_number(text("nhs_number").unwrap_or_default())?
    } else {
        Lookup::local(text("council"), text("la_child_id"))?
    };
    let found = find_children(app, &caller, endpoint, &wanted).await?;
    let children: Vec<Found> = found.into_iter().map(|(child, council)| Found { child, council }).collect();
    Ok(Json(json!({ "children": children })).into_response())
}

/// What a lookup looks for, parsed.
#[derive(Debug)]
enum Lookup {
    Nhs(events::ids::NhsNumber),
    Local(CouncilCode, events::ids::LaChildId),
}

impl Lookup {
    fn nhs_number(written: &str) -> Result<Self, QueryError> {
        // People write NHS numbers in groups of 3, 3 and 4 digits.
        let written: String = written.chars().filter(|c| *c != ' ').collect();
        events::ids::NhsNumber::parse(&written).map(Self::Nhs).map_err(|m| QueryError::invalid("nhs_number", m))
    }

    fn local(council: Option<&str>, local: Option<&str>) -> Result<Self, QueryError> {
        let council = council_param(council)?;
        let local = local.ok_or_else(|| QueryError::invalid("la_child_id", "is required with council"))?;
        let local = events::ids::LaChildId::parse(local).map_err(|m| QueryError::invalid("la_child_id", m))?;
        Ok(Self::Local(council, local))
    }
}

/// The children a lookup finds that the principal may read, with their
/// councils; the rest are not revealed to exist. The lookup is logged
/// (the children named, or a refusal) before anything is answered.
async fn find_children(
    app: &QueryState,
    caller: &Caller,
    endpoint: &str,
    wanted: &Lookup,
) -> Result<Vec<(uuid::Uuid, CouncilCode)>, QueryError> {
    let found: Vec<(uuid::Uuid, CouncilCode)> = match wanted {
        Lookup::Nhs(number) => {
            let digest =
                events::privacy::identifier_digest(&app.lookup_key, casework::identifiers::NHS_NUMBER, number.as_str());
            projections::reads::children_with_identifier(&app.pool, casework::identifiers::NHS_NUMBER, &digest)
                .await?
                .into_iter()
                .filter(|(_, access)| {
                    let info =
                        ChildInfo { council: access.council.clone(), sealed: access.sealed, reviewers: Vec::new() };
                    policy::may_read_child(&caller.principal, &info, Need::Record).is_ok()
                })
                // A child in child_status is registered, so it has a council.
                .filter_map(|(child, access)| Some((child, access.council?)))
                .collect()
        }
        Lookup::Local(council, local) => {
            if let Err(refusal) = policy::may_look_up_in(&caller.principal, council) {
                refuse(app, caller, endpoint, &[], &refusal).await?;
                return Err(QueryError::Forbidden(refusal));
            }
            projections::reads::children_with_local_id(
                &app.pool,
                council,
                local.as_str(),
                policy::sees_sealed(&caller.principal),
            )
            .await?
        }
    };
    let ids: Vec<uuid::Uuid> = found.iter().map(|(c, _)| *c).collect();
    record(app, caller, endpoint, &ids, Outcome::Allowed).await?;
    Ok(found)
}

/// The cases a worker holds today.
#[utoipa::path(
    get,
    path = "/v1/workers/{worker}/caseload",
    params(("worker" = String, Path, description = "The worker's id")),
    responses((status = 200, description = r#"{"worker", "cases": [...]}"#)),
    security(("bearer" = []))
)]
async fn worker_caseload(
    State(app): State<Arc<QueryState>>,
    Path(worker): Path<String>,
    headers: HeaderMap,
) -> Response {
    let result = read_worker_caseload(&app, &worker, &headers).await;
    count(&app, "worker_caseload", result)
}

async fn read_worker_caseload(app: &QueryState, worker: &str, headers: &HeaderMap) -> Result<Response, QueryError> {
    let caller = Caller::from_bearer(app, headers).await?;
    let worker = uuid_param("worker", worker)?;
    let today = business_date(&(app.now)());
    let (council, cases) =
        admitted_worker_cases(app, &caller, "GET /v1/workers/{worker}/caseload", worker, today).await?;
    Ok(Json(json!({ "worker": worker, "council": council, "on": today, "cases": cases })).into_response())
}

/// A worker's council and the cases of theirs the principal may see, the
/// read logged (allowed or refused) for every child listed.
async fn admitted_worker_cases(
    app: &QueryState,
    caller: &Caller,
    endpoint: &str,
    worker: uuid::Uuid,
    today: NaiveDate,
) -> Result<(CouncilCode, Vec<projections::caseload::Case>), QueryError> {
    let council = projections::caseload::worker_council(&app.pool, worker, today)
        .await?
        .ok_or_else(|| QueryError::NotFound(format!("no worker {worker} is known")))?;
    let cases = projections::caseload::worker_cases(&app.pool, worker, today).await?;
    let ids: Vec<uuid::Uuid> = cases.iter().map(|c| c.child).collect();
    if let Err(refusal) = policy::may_read_worker(&caller.principal, &council) {
        refuse(app, caller, endpoint, &ids, &refusal).await?;
        return Err(QueryError::Forbidden(refusal));
    }
    // A case held in another council (after a transfer) is left out, and so is a sealed child.
    let cases: Vec<_> =
        cases.into_iter().filter(|c| policy::may_see_case(&caller.principal, &c.council, c.sealed)).collect();
    let ids: Vec<uuid::Uuid> = cases.iter().map(|c| c.child).collect();
    record(app, caller, endpoint, &ids, Outcome::Allowed).await?;
    Ok((council, cases))
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct CouncilParams {
    council: Option<String>,
    period: Option<String>,
    from: Option<String>,
    to: Option<String>,
}

/// Every worker and team of a council today, with open cases and who is over the threshold.
#[utoipa::path(
    get,
    path = "/v1/caseloads",
    params(("council" = String, Query, description = "ONS code")),
    responses((status = 200, description = r#"{"council", "workers": [...], "teams": [...]}"#)),
    security(("bearer" = []))
)]
async fn caseloads(
    State(app): State<Arc<QueryState>>,
    Params(p): Params<CouncilParams>,
    headers: HeaderMap,
) -> Response {
    let result = async {
        let council = aggregate_scope(&app, &headers, &p).await?;
        let today = business_date(&(app.now)());
        let loads = projections::caseload::council(&app.pool, &council, today).await?;
        Ok(Json(loads).into_response())
    }
    .await;
    count(&app, "caseloads", result)
}

fn period_of(p: &CouncilParams, today: NaiveDate) -> Result<Period, QueryError> {
    match (&p.period, &p.from, &p.to) {
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
            Err(QueryError::invalid("period", "give either period or from and to, not both"))
        }
        (Some(text), None, None) => Period::financial_year(text).map_err(|m| QueryError::invalid("period", m)),
        (None, None, None) => Ok(Period::containing(today)),
        (None, from, to) => {
            let from = date_param("from", from.as_deref())?
                .ok_or_else(|| QueryError::invalid("from", "is required with to"))?;
            let to =
                date_param("to", to.as_deref())?.ok_or_else(|| QueryError::invalid("to", "is required with from"))?;
            if to < from {
                return Err(QueryError::invalid("to", "must not be before from"));
            }
            Ok(Period { from, to })
        }
    }
}

/// A council's indicators for a financial year (default: the current one) or a span of dates.
#[utoipa::path(
    get,
    path = "/v1/indicators",
    params(
        ("council" = String, Query, description = "ONS code"),
        ("period" = Option<String>, Query, description = "Financial year such as 2024-25"),
        ("from" = Option<String>, Query, description = "First business date, with to"),
        ("to" = Option<String>, Query, description = "Last business date, with from"),
    ),
    responses((status = 200, description = r#"{"council", "period", "indicators": [...]}"#)),
    security(("bearer" = []))
)]
async fn indicators(
    State(app): State<Arc<QueryState>>,
    Params(p): Params<CouncilParams>,
    headers: HeaderMap,
) -> Response {
    let result = async {
        let council = aggregate_scope(&app, &headers, &p).await?;
        let today = business_date(&(app.now)());
        let period = period_of(&p, today)?;
        let doc = projections::indicators::document(&app.pool, &council, period, today).await?;
        Ok(Json(doc).into_response())
    }
    .await;
    count(&app, "indicators", result)
}

/// Server-Sent Events: the indicators document now, then each time it changes.
#[utoipa::path(
    get,
    path = "/v1/indicators/stream",
    params(
        ("council" = String, Query, description = "ONS code"),
        ("period" = Option<String>, Query, description = "Financial year such as 2024-25 (default: the current one)"),
    ),
    responses((status = 200, description = "text/event-stream of `indicators` events", content_type = "text/event-stream")),
    security(("bearer" = []))
)]
async fn indicators_stream(
    State(app): State<Arc<QueryState>>,
    Params(p): Params<CouncilParams>,
    headers: HeaderMap,
) -> Response {
    let result = async {
        let council = aggregate_scope(&app, &headers, &p).await?;
        let today = business_date(&(app.now)());
        if p.from.is_some() || p.to.is_some() {
            return Err(QueryError::invalid("from", "the stream follows a financial year: use period"));
        }
        let period = period_of(&p, today)?;
        let caller = Caller::from_bearer(&app, &headers).await?;
        let resume = streams::last_event_id(&headers)?;
        let ticket = app.streams.admit(caller.principal.name.as_str())?;
        // The token must still name a principal that may read this council's figures.
        let still_allowed = {
            let app = app.clone();
            move || {
                let (app, headers, p) = (app.clone(), headers.clone(), p.clone());
                async move { aggregate_scope(&app, &headers, &p).await.is_ok() }
            }
        };
        indicator_events(&app, &council, period, today, resume, ticket, still_allowed).await
    }
    .await;
    count(&app, "indicators_stream", result)
}

/// The indicators document of `council` for `period` now, then each time
/// the projector announces a change, as Server-Sent Events, each with its
/// place on the change stream as its id. A client that reconnects with
/// `Last-Event-ID` (browsers do) gets every notice it missed, in order,
/// then the new ones; one away for longer than the stream keeps them
/// starts again from the document.
///
/// The stream holds `ticket` while it runs and ends when `still_allowed`,
/// asked every so often, says no.
pub(crate) async fn indicator_events<F, Fut>(
    app: &QueryState,
    council: &CouncilCode,
    period: Period,
    today: NaiveDate,
    resume: Option<u64>,
    ticket: streams::Ticket,
    still_allowed: F,
) -> Result<Response, QueryError>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send + 'static,
{
    // The stream's position first, then the document: a change between
    // the two comes again after it, never not at all.
    let subject = events::subjects::indicators_change_subject(council.as_str(), &period.label());
    let notices = streams::Notices::open(&app.client).await?;
    let (head, from) = match resume.filter(|id| notices.resumes(*id)) {
        Some(id) => (None, id),
        None => {
            let first = projections::indicators::document(&app.pool, council, period, today).await?;
            let first = serde_json::to_string(&first).map_err(anyhow::Error::from)?;
            (Some(Event::default().event("indicators").id(notices.last.to_string()).data(first)), notices.last)
        }
    };
    let head = futures::stream::iter(head.map(Ok::<_, std::convert::Infallible>));
    let rest = notices.after(subject, from).await?.map(|(sequence, payload)| {
        Ok::<_, std::convert::Infallible>(
            Event::default().event("indicators").id(sequence.to_string()).data(String::from_utf8_lossy(&payload)),
        )
    });
    let events = streams::guarded(head.chain(rest), ticket, still_allowed);
    Ok(Sse::new(events).keep_alive(KeepAlive::default()).into_response())
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", responses((status = 200, description = "alive", content_type = "text/plain")))]
async fn healthz() -> &'static str {
    "ok\n"
}

/// Readiness: PostgreSQL answers and NATS is connected.
#[utoipa::path(
    get,
    path = "/readyz",
    responses(
        (status = 200, description = r#"{"ready": true, "read_models": {position, lag, stalled, parked, refolds_pending, ...}}"#),
        (status = 503, description = r#"{"nats": bool, "postgres": bool}: which is unreachable"#),
    )
)]
async fn readyz(State(app): State<Arc<QueryState>>) -> Response {
    let nats = app.client.connection_state() == async_nats::connection::State::Connected;
    let pg = tokio::time::timeout(std::time::Duration::from_secs(2), projections::database::reachable(&app.pool))
        .await
        .unwrap_or(false);
    if nats && pg {
        // Ready to answer; how fresh the answers are is reported beside it.
        match projections::health::freshness(&app.pool).await {
            Ok(f) => (StatusCode::OK, Json(json!({"ready": true, "read_models": f}))).into_response(),
            Err(_) => (StatusCode::OK, Json(json!({"ready": true, "read_models": null}))).into_response(),
        }
    } else {
        let missing: HashMap<&str, bool> = [("nats", nats), ("postgres", pg)].into();
        (StatusCode::SERVICE_UNAVAILABLE, Json(missing)).into_response()
    }
}

#[utoipa::path(get, path = "/metrics", responses((status = 200, description = "OpenMetrics text format", content_type = "application/openmetrics-text")))]
async fn metrics_text(State(app): State<Arc<QueryState>>) -> Response {
    let mut out = String::new();
    let _ = prometheus_client::encoding::text::encode(&mut out, &app.metrics.registry);
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], out).into_response()
}
