//! `GET /v1/children/{child}/involvement`: who is involved with a child
//! (`casework::involvement`), each agency as people name it, the worker
//! who holds the case and the professionals who have seen the child, by
//! the names in their own records. A child-level read of the record,
//! scoped and logged like the chronology.

use crate::caller::Caller;
use crate::error::QueryError;
use crate::policy::Need;
use crate::{QueryState, admit_child, count, professionals, uuid_param};
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Json, Response};
use serde_json::{Value, json};
use std::sync::Arc;

const ENDPOINT: &str = "GET /v1/children/{child}/involvement";

/// Who is involved with the child: agencies, the case's holder, who has seen it.
#[utoipa::path(
    get,
    path = "/v1/children/{child}/involvement",
    params(("child" = String, Path, description = "The child's id")),
    responses(
        (status = 200, description = r#"{"child", "agencies": [{"publisher", "name", "kind", "first", "last", "events", "counts": {type: n}}], "allocated": {"worker", "team", "since", "name"}, "seen_by": [{"id", "name", "role", "agency", "first", "last", "times", "contexts"}]}"#),
        (status = 403, description = "Outside the principal's scope (recorded)", content_type = "application/problem+json"),
        (status = 404, description = "Unknown child", content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn involvement(
    State(app): State<Arc<QueryState>>,
    Path(child): Path<String>,
    headers: HeaderMap,
) -> Response {
    let result = async {
        let caller = Caller::from_bearer(&app, &headers).await?;
        let child = uuid_param("child", &child)?;
        admit_child(&app, &caller, ENDPOINT, child, Need::Record).await?;
        Ok(Json(read(&app, child).await?).into_response())
    }
    .await;
    count(&app, "involvement", result)
}

/// The involvement document of a child whose read is already admitted and logged.
pub(crate) async fn read(app: &QueryState, child: uuid::Uuid) -> Result<Value, QueryError> {
    let history = projections::reads::child_history(&app.pool, child).await?;
    let facts = casework::facts::fold_child(&history)
        .map_err(|e| anyhow::Error::new(e).context("the child's stored history does not fold"))?;
    let involved = casework::involvement::involvement(&history, &facts);
    let people = professionals(app, &history).await?;
    let name_of = |id: &str| people.get(id).and_then(casework::narrative::Professional::line);
    let agencies: Vec<Value> = involved
        .agencies
        .iter()
        .map(|a| {
            let principal = app.principals.named(a.publisher.as_str());
            let counts: serde_json::Map<String, Value> =
                a.counts.iter().map(|(t, n)| (t.name().to_owned(), json!(n))).collect();
            json!({
                "publisher": a.publisher,
                "name": principal.as_ref().map_or(a.publisher.as_str(), |p| p.display_name.as_str()),
                "kind": principal.as_ref().map(|p| p.agency.code()),
                "first": a.first_on,
                "last": a.last_on,
                "events": a.counts.values().sum::<u32>(),
                "counts": counts,
            })
        })
        .collect();
    let allocated = involved
        .allocated
        .as_ref()
        .map(|h| json!({"worker": h.worker, "team": h.team, "since": h.since, "name": name_of(&h.worker.to_string())}));
    let seen_by: Vec<Value> = involved
        .seen_by
        .iter()
        .map(|s| {
            let professional = people.get(s.seen_by.as_str());
            let agency = app.principals.named(s.publisher.as_str()).map(|p| p.display_name);
            json!({
                "id": s.seen_by,
                "name": name_of(s.seen_by.as_str()),
                "role": professional.and_then(|p| p.role).map(|r| r.code()),
                "agency": s.agency.clone().or(agency),
                "first": s.first_on,
                "last": s.last_on,
                "times": s.times,
                "contexts": s.contexts,
            })
        })
        .collect();
    Ok(json!({"child": child, "agencies": agencies, "allocated": allocated, "seen_by": seen_by}))
}
