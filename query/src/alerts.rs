//! Alerts for the people who hold children's cases: `GET /v1/alerts` and
//! its stream. A council's practitioners and admins read them (the same
//! question as a return: `policy::may_read_council_children`); every child
//! in an answer is a logged child-level read, and a sealed child is left
//! out for all but an admin, as in the caseloads.
//!
//! The stream follows the projector's change notices for the council's
//! alerts (`sg.changes.alerts.<council>.<team>`, counts only) and answers
//! each with the list as it now stands, read and logged like the first.

use crate::caller::Caller;
use crate::error::QueryError;
use crate::params::Params;
use crate::{Outcome, QueryState, admit_council, council_param, count, policy, record, streams, uuid_param};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Json, Response};
use casework::alerts::Status;
use chrono::{DateTime, Utc};
use events::ids::{LocalId, WorkerId};
use futures::StreamExt;
use projections::alerts::{Filter, Holder, Read};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;

#[derive(Debug, Clone, Default, Deserialize)]
pub struct AlertParams {
    council: Option<String>,
    worker: Option<String>,
    team: Option<String>,
    unallocated: Option<String>,
    status: Option<String>,
    limit: Option<String>,
}

const LIST: &str = "GET /v1/alerts";
const STREAM: &str = "GET /v1/alerts/stream";

/// The read `p` asks for, every parameter checked at once.
pub(crate) fn filter_of(p: &AlertParams) -> Result<Filter, QueryError> {
    let mut errors = Vec::new();
    let mut note = |e: QueryError| {
        if let QueryError::Invalid(mut list) = e {
            errors.append(&mut list);
        }
    };
    let council = council_param(p.council.as_deref()).map_err(&mut note).ok();
    let unallocated = match p.unallocated.as_deref() {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => {
            note(QueryError::invalid("unallocated", "must be true or false"));
            false
        }
    };
    let holders = usize::from(p.worker.is_some()) + usize::from(p.team.is_some()) + usize::from(unallocated);
    if holders > 1 {
        note(QueryError::invalid("worker", "give at most one of worker, team and unallocated=true"));
    }
    let holder = match (&p.worker, &p.team) {
        (Some(w), _) => uuid_param("worker", w).map(|w| Holder::Worker(WorkerId::from_uuid(w))).map_err(&mut note).ok(),
        (None, Some(t)) => LocalId::parse(t).map(Holder::Team).map_err(|m| note(QueryError::invalid("team", m))).ok(),
        (None, None) if unallocated => Some(Holder::Unallocated),
        (None, None) => Some(Holder::Council),
    };
    let status = match p.status.as_deref() {
        None => None,
        Some(code) => {
            let status = Status::from_code(code);
            if status.is_none() {
                note(QueryError::invalid("status", "must be open, acknowledged, escalated or closed"));
            }
            status
        }
    };
    let limit = match p.limit.as_deref() {
        None => 200,
        Some(text) => text.parse::<i64>().ok().filter(|n| (1..=1000).contains(n)).unwrap_or_else(|| {
            note(QueryError::invalid("limit", "must be a whole number from 1 to 1000"));
            0
        }),
    };
    match (council, holder) {
        (Some(council), Some(holder)) if errors.is_empty() => {
            Ok(Filter { council, holder, status, children: None, limit })
        }
        _ => Err(QueryError::Invalid(errors)),
    }
}

/// One alert as the API gives it: ids, codes and times, and where to read
/// the entry that raised it.
pub(crate) fn alert_json(read: &Read) -> Value {
    let a = &read.alert;
    let child = read.child;
    let reference = casework::narrative::reference_of(u64::try_from(a.sequence).unwrap_or(0));
    json!({
        "id": a.id,
        "kind": a.kind.code(),
        "child": child,
        "council": a.council,
        "worker": a.worker,
        "team": a.team,
        "raised_by": a.raised_by,
        "event": {"subject": child, "sequence": a.sequence},
        "raised_at": a.raised_at,
        "due_by": a.due_by,
        "escalates_at": a.escalates_at,
        "closed_at": a.closed_at,
        "status": read.status.code(),
        "acknowledged_by": a.acknowledged.as_ref().map(|k| &k.by),
        "acknowledged_at": a.acknowledged.as_ref().map(|k| k.at),
        "links": {
            "chronology": format!("/v1/children/{child}/chronology"),
            "entry": format!("/ui/children/{child}#{reference}"),
        },
    })
}

/// Reads the alerts `filter` names at `now` for `caller`, logging every
/// child in the answer as read.
pub(crate) async fn admitted(
    app: &QueryState,
    caller: &Caller,
    endpoint: &str,
    filter: &Filter,
    now: DateTime<Utc>,
) -> Result<Vec<Read>, QueryError> {
    admit_council(app, caller, endpoint, &filter.council).await?;
    let with_sealed = policy::may_see_case(&caller.principal, &filter.council, true);
    let reads = projections::alerts::list(&app.pool, filter, now, with_sealed).await?;
    let mut children: Vec<uuid::Uuid> = reads.iter().map(|r| r.child).collect();
    children.sort_unstable();
    children.dedup();
    if !children.is_empty() {
        record(app, caller, endpoint, &children, Outcome::Allowed).await?;
    }
    Ok(reads)
}

fn document(filter: &Filter, now: DateTime<Utc>, reads: &[Read]) -> Value {
    let holder = match &filter.holder {
        Holder::Council => json!({"council": filter.council}),
        Holder::Team(t) => json!({"team": t}),
        Holder::Unallocated => json!({"unallocated": true}),
        Holder::Worker(w) => json!({"worker": w}),
    };
    json!({
        "council": filter.council,
        "for": holder,
        "status": filter.status.map(Status::code),
        "at": now,
        "alerts": reads.iter().map(alert_json).collect::<Vec<_>>(),
    })
}

/// A council's alerts: a worker's, a team's, the unallocated, or all.
#[utoipa::path(
    get,
    path = "/v1/alerts",
    params(
        ("council" = String, Query, description = "ONS code"),
        ("worker" = Option<String>, Query, description = "A worker's id: the alerts routed to them"),
        ("team" = Option<String>, Query, description = "A team's id: the alerts of its workers' cases"),
        ("unallocated" = Option<bool>, Query, description = "true: the alerts with no worker, for team managers"),
        ("status" = Option<String>, Query, description = "open, acknowledged, escalated or closed (default: all)"),
        ("limit" = Option<i64>, Query, description = "At most this many, newest first (1 to 1000, default 200)"),
        ("min_position" = Option<u64>, Query, description = "Wait until the read models hold this stream position"),
    ),
    responses(
        (status = 200, description = r#"{"council", "for", "status", "at", "alerts": [{"id", "kind", "child", "council", "worker", "team", "raised_by", "event": {"subject", "sequence"}, "raised_at", "due_by", "status", "acknowledged_by", "acknowledged_at", ...}]}"#),
        (status = 403, description = "Not a practitioner or admin of the council (recorded)", content_type = "application/problem+json"),
        (status = 422, description = "A parameter is invalid", content_type = "application/problem+json"),
        (status = 503, description = "The access log could not record the read, or min_position was not reached", content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn alerts(
    State(app): State<Arc<QueryState>>,
    Params(p): Params<AlertParams>,
    headers: HeaderMap,
) -> Response {
    let result = async {
        let caller = Caller::from_bearer(&app, &headers).await?;
        let filter = filter_of(&p)?;
        let now = (app.now)();
        let reads = admitted(&app, &caller, LIST, &filter, now).await?;
        Ok(Json(document(&filter, now, &reads)).into_response())
    }
    .await;
    count(&app, "alerts", result)
}

/// Server-Sent Events: the alerts now, then again each time they change
/// (by an event, an acknowledgement, or time: a clock raised, an alert escalated).
#[utoipa::path(
    get,
    path = "/v1/alerts/stream",
    params(
        ("council" = String, Query, description = "ONS code"),
        ("worker" = Option<String>, Query, description = "A worker's id"),
        ("team" = Option<String>, Query, description = "A team's id"),
        ("unallocated" = Option<bool>, Query, description = "true: the alerts with no worker"),
        ("status" = Option<String>, Query, description = "open, acknowledged, escalated or closed (default: all)"),
    ),
    responses((status = 200, description = "text/event-stream of `alerts` events, each the whole list", content_type = "text/event-stream")),
    security(("bearer" = []))
)]
pub async fn alerts_stream(
    State(app): State<Arc<QueryState>>,
    Params(p): Params<AlertParams>,
    headers: HeaderMap,
) -> Response {
    let result = async {
        let caller = Caller::from_bearer(&app, &headers).await?;
        let filter = filter_of(&p)?;
        let first = admitted(&app, &caller, STREAM, &filter, (app.now)()).await?;
        let ticket = app.streams.admit(caller.principal.name.as_str())?;
        let still_allowed = {
            let app = app.clone();
            let council = filter.council.clone();
            move || {
                let (app, headers, council) = (app.clone(), headers.clone(), council.clone());
                async move {
                    Caller::from_bearer(&app, &headers)
                        .await
                        .is_ok_and(|c| policy::may_read_council_children(&c.principal, &council).is_ok())
                }
            }
        };
        // The change stream's position, then the list: a change between the
        // two is announced after it. Each event is the whole list, so a
        // client back with `Last-Event-ID` is given the list as it stands
        // now and misses nothing.
        let filter = Arc::new(filter);
        let subject = match &filter.holder {
            Holder::Team(t) => events::subjects::alerts_change_subject(filter.council.as_str(), Some(t.as_str())),
            _ => format!("sg.changes.alerts.{}.>", filter.council.as_str()),
        };
        let notices = streams::Notices::open(&app.client).await?;
        let from = notices.last;
        let now = (app.now)();
        let head = document(&filter, now, &first);
        let head = futures::stream::once(async move {
            Ok(Event::default().event("alerts").id(from.to_string()).data(head.to_string()))
        });
        let reader = app.clone();
        let rest = notices.after(subject, from).await?.then(move |(sequence, _)| {
            let (app, caller, filter) = (reader.clone(), caller.clone(), filter.clone());
            async move {
                let now = (app.now)();
                let data = match admitted(&app, &caller, STREAM, &filter, now).await {
                    Ok(reads) => document(&filter, now, &reads),
                    // Told, not dropped: the next change reads again. (The
                    // cause is the role's, not the reader's: it is not repeated.)
                    Err(_) => json!({"error": "the alerts could not be read just now"}),
                };
                Ok::<_, std::convert::Infallible>(
                    Event::default().event("alerts").id(sequence.to_string()).data(data.to_string()),
                )
            }
        });
        let events = streams::guarded(head.chain(rest), ticket, still_allowed);
        Ok(Sse::new(events).keep_alive(KeepAlive::default()).into_response())
    }
    .await;
    count(&app, "alerts_stream", result)
}
