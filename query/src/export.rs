//! Exports of a child's chronology that a court can file and a review can
//! publish: the full record (names, narrative, professionals) or the
//! anonymised one, as Markdown, CSV, JSON or PDF. Every export is certified
//! (`casework::certified`): it states the stream position it covers, the
//! latest signed checkpoint at or before it with the proof that the child's
//! history ended where the export says, and each entry's hash, chain link,
//! gateway signature and the export key's attestation of what the entry
//! shows. `safeguard verify --export FILE` checks it with public keys alone.

use crate::caller::Caller;
use crate::error::{ParamError, QueryError};
use crate::params::Params;
use crate::policy::Need;
use crate::{QueryState, admit_child, count, entry_json, full_record, marked_stale, parked_child, uuid_param};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use casework::anonymise;
use casework::certified::{self, Covers, Link, Record};
use casework::format::Format;
use chrono::{DateTime, Utc};
use events::checkpoint;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::sync::Arc;

#[derive(Debug, Default, Deserialize)]
pub struct ExportParams {
    format: Option<String>,
    record: Option<String>,
}

/// A certified export of a child's chronology: anonymised for publication
/// (the child is "Child A", people and professionals by role, no name,
/// identifier or personal detail), or the full record for a court.
#[utoipa::path(
    get,
    path = "/v1/children/{child}/chronology/export",
    params(
        ("child" = String, Path, description = "The child's id"),
        ("format" = Option<String>, Query, description = "md (default), csv, json or pdf"),
        ("record" = Option<String>, Query, description = "anonymised (default) or full"),
    ),
    responses(
        (status = 200, description = "The certified chronology"),
        (status = 403, description = "Outside the principal's scope (recorded)", content_type = "application/problem+json"),
        (status = 404, description = "Unknown child", content_type = "application/problem+json"),
        (status = 422, description = "A parameter is invalid", content_type = "application/problem+json"),
        (status = 503, description = "The access log could not record the read", content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn chronology_export(
    State(app): State<Arc<QueryState>>,
    Path(child): Path<String>,
    Params(params): Params<ExportParams>,
    headers: HeaderMap,
) -> Response {
    let result = read_export(&app, &child, params, &headers).await;
    count(&app, "chronology_export", result)
}

async fn read_export(
    app: &QueryState,
    child: &str,
    params: ExportParams,
    headers: &HeaderMap,
) -> Result<Response, QueryError> {
    let caller = Caller::from_bearer(app, headers).await?;
    let child = uuid_param("child", child)?;
    let mut problems = Vec::new();
    let format = params.format.as_deref().map_or(Some(Format::Markdown), Format::from_param);
    if format.is_none() {
        problems.push(ParamError { parameter: "format".into(), message: "must be md, csv, json or pdf".into() });
    }
    let record = match params.record.as_deref() {
        None | Some("anonymised") => Some(Record::Anonymised),
        Some("full") => Some(Record::Full),
        Some(_) => {
            problems.push(ParamError { parameter: "record".into(), message: "must be anonymised or full".into() });
            None
        }
    };
    let (Some(format), Some(record)) = (format, record) else { return Err(QueryError::Invalid(problems)) };
    admit_child(app, &caller, "GET /v1/children/{child}/chronology/export", child, Need::Record).await?;
    let stale = parked_child(app, child).await?;
    let prepared = prepare(app, child, record, format.name()).await?;
    let document = document(prepared, format, &app.export_key)?;
    Ok(marked_stale(document.into_response(), stale.as_ref()))
}

/// An export's bytes and its media type.
pub(crate) enum Document {
    Text(&'static str, String),
    Json(Value),
    Pdf(Vec<u8>),
}

impl IntoResponse for Document {
    fn into_response(self) -> Response {
        match self {
            Self::Text(media, body) => ([(header::CONTENT_TYPE, media)], body).into_response(),
            Self::Json(value) => axum::Json(value).into_response(),
            Self::Pdf(bytes) => ([(header::CONTENT_TYPE, "application/pdf")], bytes).into_response(),
        }
    }
}

const CSV: &str = "text/csv; charset=utf-8";
const MARKDOWN: &str = "text/markdown; charset=utf-8";

/// What every format of one export is made from: the table (CSV, Markdown,
/// PDF, the printable page), the entries as JSON objects, what the
/// certificate covers and the child's chain.
pub(crate) struct Prepared {
    pub table: certified::Table,
    pub entries: Vec<(u64, Map<String, Value>)>,
    pub extra: Map<String, Value>,
    pub covers: Covers,
    pub links: Vec<Link>,
}

/// Reads what an export of `record` needs, as it stands now. The caller
/// has admitted (and logged) the read.
pub(crate) async fn prepare(
    app: &QueryState,
    child: uuid::Uuid,
    record: Record,
    format: &'static str,
) -> Result<Prepared, QueryError> {
    let produced_at = (app.now)();
    // The position first: everything read after it covers at least that
    // much. The least of the projectors' positions: with partitioned
    // projectors, only below it is every subject's history complete.
    let position = projections::health::complete_up_to(&app.pool).await?;
    let subject = events::Subject::Child(events::ids::ChildId::from_uuid(child)).to_string();
    let covers = Covers {
        record,
        format,
        // Named as the checkpoints' trees name it: not even the child's id is shown.
        subject: checkpoint::subject_name(&subject),
        produced_at,
        stream_position: position,
        checkpoint: checkpoint_for(app, &subject, position).await?,
    };
    match record {
        Record::Anonymised => {
            let exported = build_anonymised(app, child, produced_at, position).await?;
            // The chain is read after the entries, so that every entry has its link.
            let links = chain(app, child).await?;
            let entries = exported
                .entries
                .iter()
                .map(|e| (e.sequence, serde_json::to_value(e).ok().and_then(into_object).unwrap_or_default()))
                .collect();
            let extra = json!({
                "title": exported.title,
                "child": exported.child,
                "produced_at": exported.produced_at,
                "stream_position": exported.stream_position,
                "people": exported.people,
            });
            Ok(Prepared {
                table: anonymise::table(&exported),
                entries,
                extra: into_object(extra).unwrap_or_default(),
                covers,
                links,
            })
        }
        Record::Full => {
            let q = projections::chronology::Query::whole(child, produced_at);
            let rows = projections::chronology::read(&app.pool, &q).await?;
            let links = chain(app, child).await?;
            let full = full_record(app, child, produced_at).await?;
            let extras =
                casework::format::Extras { narratives: &full.narratives, plo: &full.plo, agencies: &full.agencies };
            let table = casework::format::table(&child, &produced_at, &rows, &extras);
            let entries = rows
                .iter()
                .enumerate()
                .map(|(i, e)| {
                    let mut v = entry_json(e, &full);
                    v["serial"] = json!(i + 1);
                    (e.sequence.max(0) as u64, into_object(v).unwrap_or_default())
                })
                .collect();
            let extra = json!({ "title": table.title, "child": child, "as_of": produced_at });
            Ok(Prepared { table, entries, extra: into_object(extra).unwrap_or_default(), covers, links })
        }
    }
}

/// One format of a prepared export, certified with the export key.
pub(crate) fn document(p: Prepared, format: Format, key: &ed25519_dalek::SigningKey) -> Result<Document, QueryError> {
    Ok(match format {
        Format::Csv => Document::Text(CSV, certified::csv(&p.table, &p.covers, &p.links, key)),
        Format::Markdown => Document::Text(MARKDOWN, certified::markdown(&p.table, &p.covers, &p.links, key)),
        Format::Json => Document::Json(certified::json(p.entries, p.extra, &p.covers, &p.links, key, None)),
        Format::Pdf => Document::Pdf(
            crate::pdf::certified(&p.table, p.entries, p.extra, &p.covers, &p.links, key)
                .map_err(|e| QueryError::Internal(anyhow::anyhow!("the PDF could not be made: {e}")))?,
        ),
    })
}

/// The child's chain as the copy holds it.
async fn chain(app: &QueryState, child: uuid::Uuid) -> Result<Vec<Link>, QueryError> {
    let subject = events::Subject::Child(events::ids::ChildId::from_uuid(child));
    Ok(projections::copy::links(&app.pool, &subject).await?)
}

fn into_object(value: Value) -> Option<Map<String, Value>> {
    match value {
        Value::Object(map) => Some(map),
        _ => None,
    }
}

/// The latest signed checkpoint at or before `position` and the proof that
/// `subject`'s head is in its root, if there is one that holds. A
/// checkpoint that does not verify, or whose root the copy's heads do not
/// fold to, certifies nothing: the export then says so (no checkpoint) and
/// the fault is logged for the operators, who have `safeguard verify`.
async fn checkpoint_for(
    app: &QueryState,
    subject: &str,
    position: u64,
) -> Result<Option<(Value, checkpoint::Proof)>, QueryError> {
    let Some(document) = projections::audit::latest_checkpoint(&app.pool, position).await? else { return Ok(None) };
    let keys = crate::gateway_keys(app)?;
    let cp = match checkpoint::open(&serde_json::to_vec(&document).unwrap_or_default(), &keys) {
        // Only a hashed tree's proof names no one: an anonymised export carries it.
        Ok(cp) if cp.tree == checkpoint::Tree::HashedMerkle => cp,
        Ok(_) => return Ok(None),
        Err(e) => {
            tracing::error!(error = %e, "the latest checkpoint does not verify: exports are not certified by it");
            return Ok(None);
        }
    };
    // Every subject's head at the checkpoint: the Merkle path needs its neighbours.
    let heads = projections::copy::heads(&app.pool, None, cp.covers).await?;
    let proof = checkpoint::Proof::of(cp.tree, heads.iter().map(|(s, h)| (s.as_str(), h.sequence, &h.hash)), subject);
    match proof {
        Some(p) if p.leads_to(&cp.root) => Ok(Some((document, p))),
        Some(_) => {
            tracing::error!(
                covers = cp.covers,
                "the copy's heads do not fold to the checkpoint's root: run safeguard verify"
            );
            Ok(None)
        }
        None => Ok(None), // the child's history began after the checkpoint
    }
}

/// The anonymised chronology of a child as it stands now, for the pages'
/// publication view. The caller has admitted (and logged) the read.
pub(crate) async fn build_export(app: &QueryState, child: uuid::Uuid) -> Result<anonymise::Export, QueryError> {
    let produced_at = (app.now)();
    let position = projections::health::complete_up_to(&app.pool).await?;
    build_anonymised(app, child, produced_at, position).await
}

/// The anonymised chronology of a child as it stands at `produced_at`. The
/// caller has admitted (and logged) the read.
async fn build_anonymised(
    app: &QueryState,
    child: uuid::Uuid,
    produced_at: DateTime<Utc>,
    position: u64,
) -> Result<anonymise::Export, QueryError> {
    let q = projections::chronology::Query::whole(child, produced_at);
    let entries = projections::chronology::read(&app.pool, &q).await?;
    let history = projections::reads::child_history(&app.pool, child).await?;
    let key = app
        .keys
        .existing_key(&events::ids::ChildId::from_uuid(child))
        .await
        .map_err(|e| QueryError::dependency("the key store is unavailable", e))?;
    let worker_roles = projections::reads::worker_roles(&app.pool, &anonymise::worker_ids(&history)).await?;
    let professionals = crate::professionals(app, &history).await?;
    Ok(anonymise::anonymise(&anonymise::Sources {
        child,
        history: &history,
        key: key.as_ref(),
        entries: &entries,
        worker_roles: &worker_roles,
        professionals: &professionals,
        produced_at,
        stream_position: position,
    }))
}
