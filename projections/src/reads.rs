//! The query role's reads that are not a read model's own module: who may
//! see a child, lookups, stored documents, quality flags and the councils
//! configured. The query role decides access and answers; the SQL is here,
//! so that this crate stays the only one that runs it.

use crate::database::not_as_written;
use crate::refold::HISTORY_COLUMNS;
use casework::facts::History;
use casework::quality::Rule;
use chrono::NaiveDate;
use events::codes::WorkerRole;
use events::ids::{CouncilCode, PrincipalName};
use sqlx::PgPool;
use std::collections::HashMap;

/// What access to one child depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildAccess {
    /// The council responsible today (none before a registration is applied).
    pub council: Option<CouncilCode>,
    pub sealed: bool,
    /// Principals named by the child's open reviews.
    pub reviewers: Vec<PrincipalName>,
}

impl ChildAccess {
    /// Read at the edge: the council and reviewer names as written by the projector.
    fn read(council: Option<String>, sealed: bool, reviewers: Vec<String>) -> Result<Self, sqlx::Error> {
        let council = council.map(CouncilCode::try_from).transpose().map_err(|why| not_as_written("council", why))?;
        let reviewers = reviewers
            .into_iter()
            .map(PrincipalName::try_from)
            .collect::<Result<_, _>>()
            .map_err(|why| not_as_written("reviewers", why))?;
        Ok(Self { council, sealed, reviewers })
    }
}

pub async fn child_access(pool: &PgPool, child: uuid::Uuid) -> Result<Option<ChildAccess>, sqlx::Error> {
    let row: Option<(Option<String>, bool, Vec<String>)> = sqlx::query_as(
        "select s.council, s.sealed,
                coalesce((select array_agg(distinct r) from child_review v, unnest(v.reviewers) r
                           where v.child_id = s.child_id and v.closed_at is null), '{}')
           from child_status s where s.child_id = $1",
    )
    .bind(child)
    .fetch_optional(pool)
    .await?;
    row.map(|(council, sealed, reviewers)| ChildAccess::read(council, sealed, reviewers)).transpose()
}

/// Children with an NHS number whose keyed digest is `digest`, with their
/// access facts (the caller filters by its policy).
pub async fn children_with_identifier(
    pool: &PgPool,
    kind: &str,
    digest: &str,
) -> Result<Vec<(uuid::Uuid, ChildAccess)>, sqlx::Error> {
    let found: Vec<(uuid::Uuid, Option<String>, bool)> = sqlx::query_as(
        "select distinct s.child_id, s.council, s.sealed from child_identifier i join child_status s using (child_id)
          where i.kind = $1 and i.digest = $2 order by s.child_id",
    )
    .bind(kind)
    .bind(digest)
    .fetch_all(pool)
    .await?;
    found
        .into_iter()
        .map(|(child, council, sealed)| Ok((child, ChildAccess::read(council, sealed, Vec::new())?)))
        .collect()
}

/// Children a council knows by its own id `la_child_id`; sealed ones only
/// when `with_sealed`.
pub async fn children_with_local_id(
    pool: &PgPool,
    council: &CouncilCode,
    la_child_id: &str,
    with_sealed: bool,
) -> Result<Vec<(uuid::Uuid, CouncilCode)>, sqlx::Error> {
    let found: Vec<uuid::Uuid> = sqlx::query_scalar(
        "select child_id from child_status
          where council = $1 and la_child_id = $2 and (not sealed or $3) order by child_id",
    )
    .bind(council.as_str())
    .bind(la_child_id)
    .bind(with_sealed)
    .fetch_all(pool)
    .await?;
    Ok(found.into_iter().map(|child| (child, council.clone())).collect())
}

/// The children whose open reviews name `reviewer`, sealed ones left out.
pub async fn reviewed_by(pool: &PgPool, reviewer: &str) -> Result<Vec<uuid::Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "select distinct v.child_id from child_review v join child_status s using (child_id), unnest(v.reviewers) r
          where r = $1 and v.closed_at is null and not s.sealed order by v.child_id",
    )
    .bind(reviewer)
    .fetch_all(pool)
    .await
}

/// The councils that have configured themselves (`council.configured`).
pub async fn councils(pool: &PgPool) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar("select distinct council from council_setting order by council").fetch_all(pool).await
}

/// The stored histories of the subjects of one kind named in `ids`, typed
/// (personal fields sealed), by subject: one query for them all.
async fn histories(pool: &PgPool, kind: &str, ids: &[uuid::Uuid]) -> Result<Vec<(String, History)>, sqlx::Error> {
    let ids: Vec<String> = ids.iter().map(uuid::Uuid::to_string).collect();
    let rows = sqlx::query(
        &format!("select {HISTORY_COLUMNS} from stored_event where subject_kind = $1 and subject = any($2) order by subject, sequence"),
    )
    .bind(kind)
    .bind(&ids)
    .fetch_all(pool)
    .await?;
    crate::refold::group_histories(&rows)
}

/// A child's stored history, typed (personal fields sealed).
pub async fn child_history(pool: &PgPool, child: uuid::Uuid) -> Result<History, sqlx::Error> {
    Ok(histories(pool, "child", &[child]).await?.pop().map(|(_, h)| h).unwrap_or_default())
}

/// The children linked to `child` as family: named by one of its
/// relationships (`child_id`), or naming it in one of theirs; a retracted
/// relationship links nobody.
pub async fn family(pool: &PgPool, child: uuid::Uuid) -> Result<Vec<uuid::Uuid>, sqlx::Error> {
    let rows: Vec<(String,)> = sqlx::query_as(
        "select distinct case when e.subject = $1 then e.document->'data'->>'child_id' else e.subject end
           from stored_event e
          where e.subject_kind = 'child' and e.event_type = 'relationship.recorded'
            and (e.subject = $1 or e.document->'data'->>'child_id' = $1)
            and e.document->'data' ? 'child_id'
            and not exists (
                select 1 from chronology_entry a
                 where a.child_id = e.subject::uuid and a.source = e.source and a.amends_event_id = e.event_id
                   and a.event_type = 'record.retracted')",
    )
    .bind(child.to_string())
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().filter_map(|(id,)| uuid::Uuid::parse_str(&id).ok()).filter(|id| *id != child).collect())
}

/// Workers' stored histories (their names sealed under their own keys), by
/// worker id; a worker with no events is absent.
pub async fn worker_histories(
    pool: &PgPool,
    workers: &[uuid::Uuid],
) -> Result<HashMap<uuid::Uuid, History>, sqlx::Error> {
    Ok(histories(pool, "worker", workers)
        .await?
        .into_iter()
        .filter_map(|(subject, history)| Some((uuid::Uuid::parse_str(&subject).ok()?, history)))
        .collect())
}

/// Each worker's role in their latest spell.
pub async fn worker_roles(pool: &PgPool, workers: &[uuid::Uuid]) -> Result<HashMap<String, WorkerRole>, sqlx::Error> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "select distinct on (worker_id) worker_id::text, role from worker_spell
          where worker_id = any($1) order by worker_id, ordinal desc",
    )
    .bind(workers)
    .fetch_all(pool)
    .await?;
    rows.into_iter()
        .map(|(worker, role)| {
            let role = WorkerRole::try_from(role).map_err(|why| not_as_written("role", why))?;
            Ok((worker, role))
        })
        .collect()
}

/// One data-quality flag.
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct Flag {
    pub child: uuid::Uuid,
    #[sqlx(try_from = "String")]
    pub rule: Rule,
    pub reference: String,
    pub detail: String,
    pub on: NaiveDate,
}

/// Per rule: how many children and how many flags, in a council.
pub async fn flag_counts(pool: &PgPool, council: &str) -> Result<Vec<(Rule, i64, i64)>, sqlx::Error> {
    let rows: Vec<(String, i64, i64)> = sqlx::query_as(
        "select rule, count(distinct child_id), count(*) from quality_flag where council = $1 group by rule order by rule",
    )
    .bind(council)
    .fetch_all(pool)
    .await?;
    rows.into_iter()
        .map(|(rule, children, flags)| {
            let rule = Rule::try_from(rule).map_err(|why| not_as_written("rule", why))?;
            Ok((rule, children, flags))
        })
        .collect()
}

/// A council's flags, sealed children's only when `with_sealed`.
pub async fn council_flags(pool: &PgPool, council: &str, with_sealed: bool) -> Result<Vec<Flag>, sqlx::Error> {
    sqlx::query_as(
        "select q.child_id as child, q.rule, q.reference, q.detail, q.on_date as on from quality_flag q
           join child_status s using (child_id)
          where q.council = $1 and (not s.sealed or $2) order by q.rule, q.on_date, q.child_id",
    )
    .bind(council)
    .bind(with_sealed)
    .fetch_all(pool)
    .await
}

/// One child's flags.
pub async fn child_flags(pool: &PgPool, child: uuid::Uuid) -> Result<Vec<Flag>, sqlx::Error> {
    sqlx::query_as(
        "select child_id as child, rule, reference, detail, on_date as on from quality_flag
          where child_id = $1 order by on_date, rule",
    )
    .bind(child)
    .fetch_all(pool)
    .await
}
