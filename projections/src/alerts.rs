//! Reading alerts (`alert`, folded by [`crate::refold`] from
//! `casework::alerts`): a council's, a team's or a worker's, by status at a
//! moment; a team's counts for change notices; which teams' alerts changed
//! by the passing of time, for the sweep.
//!
//! Status is never stored: it is a function of the row and the time of
//! reading (`casework::alerts::Alert::status`), so the same row is `open`
//! today and `escalated` tomorrow without anything being written. The SQL
//! below selects by the same order of precedence; each row's status is
//! then taken from the casework type itself.

use crate::database::{parsed, parsed_opt};
use casework::alerts::{Acknowledgement, Alert, Kind, Status};
use chrono::{DateTime, Utc};
use events::ids::{AlertId, CouncilCode, LocalId, PrincipalName, WorkerId};
use sqlx::{PgPool, Row};
use std::collections::{BTreeMap, BTreeSet};

/// Whose alerts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Holder {
    /// Every alert of the council (its managers' view).
    Council,
    Team(LocalId),
    /// The council's alerts with no worker to go to.
    Unallocated,
    Worker(WorkerId),
}

/// A read of alerts.
#[derive(Debug, Clone)]
pub struct Filter {
    pub council: CouncilCode,
    pub holder: Holder,
    /// None: every status.
    pub status: Option<Status>,
    pub children: Option<Vec<uuid::Uuid>>,
    pub limit: i64,
}

/// An alert as read: the child it is about, and its state at the moment read.
#[derive(Debug, Clone)]
pub struct Read {
    pub child: uuid::Uuid,
    pub alert: Alert,
    pub status: Status,
}

/// The condition on `alert` (as `a`) for a status at `$1`, in the order
/// `Alert::status` decides.
fn status_condition(status: Status) -> &'static str {
    match status {
        Status::Acknowledged => "a.acknowledged_at <= $1",
        Status::Closed => "(a.acknowledged_at is null or a.acknowledged_at > $1) and a.closed_at <= $1",
        Status::Escalated => {
            "(a.acknowledged_at is null or a.acknowledged_at > $1) and (a.closed_at is null or a.closed_at > $1)
             and a.escalates_at <= $1"
        }
        Status::Open => {
            "(a.acknowledged_at is null or a.acknowledged_at > $1) and (a.closed_at is null or a.closed_at > $1)
             and a.escalates_at > $1"
        }
    }
}

/// Alerts raised by `now` that `filter` names, newest first. Sealed
/// children are left out unless `with_sealed`.
pub async fn list(
    pool: &PgPool,
    filter: &Filter,
    now: DateTime<Utc>,
    with_sealed: bool,
) -> Result<Vec<Read>, sqlx::Error> {
    let holder = match &filter.holder {
        Holder::Council => "true",
        Holder::Team(_) => "a.team_id = $3",
        Holder::Unallocated => "a.worker_id is null",
        Holder::Worker(_) => "a.worker_id = $4",
    };
    let status = filter.status.map_or("true", status_condition);
    let sealed = if with_sealed { "true" } else { "not coalesce(s.sealed, false)" };
    let sql = format!(
        "select a.* from alert a left join child_status s on s.child_id = a.child_id
          where a.council = $2 and a.raised_at <= $1 and {holder} and ({status}) and {sealed}
            and ($5::uuid[] is null or a.child_id = any($5))
          order by a.raised_at desc, a.alert_id limit $6"
    );
    let team = match &filter.holder {
        Holder::Team(t) => Some(t.as_str()),
        _ => None,
    };
    let worker = match &filter.holder {
        Holder::Worker(w) => Some(*w.as_uuid()),
        _ => None,
    };
    let rows = sqlx::query(&sql)
        .bind(now)
        .bind(filter.council.as_str())
        .bind(team)
        .bind(worker)
        .bind(filter.children.as_ref())
        .bind(filter.limit)
        .fetch_all(pool)
        .await?;
    rows.iter()
        .map(|r| {
            let alert = alert(r)?;
            let status = alert.status(now);
            Ok(Read { child: r.try_get("child_id")?, alert, status })
        })
        .collect()
}

fn alert(r: &sqlx::postgres::PgRow) -> Result<Alert, sqlx::Error> {
    let acknowledged = match parsed_opt(r, "acknowledged_by", PrincipalName::try_from)? {
        Some(by) => Some(Acknowledgement {
            by,
            at: r.try_get("acknowledged_at")?,
            sequence: r.try_get("acknowledged_sequence")?,
        }),
        None => None,
    };
    Ok(Alert {
        id: AlertId::from_uuid(r.try_get("alert_id")?),
        kind: parsed(r, "kind", Kind::try_from)?,
        council: parsed(r, "council", CouncilCode::try_from)?,
        worker: r.try_get::<Option<uuid::Uuid>, _>("worker_id")?.map(WorkerId::from_uuid),
        team: parsed_opt(r, "team_id", LocalId::try_from)?,
        raised_by: parsed_opt(r, "raised_by", PrincipalName::try_from)?,
        sequence: r.try_get("sequence")?,
        raised_at: r.try_get("raised_at")?,
        due_by: r.try_get("due_by")?,
        escalates_at: r.try_get("escalates_at")?,
        closed_at: r.try_get("closed_at")?,
        acknowledged,
    })
}

/// How many alerts wait on one holder: raised, neither acknowledged nor closed.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Waiting {
    pub open: i64,
    pub escalated: i64,
}

/// A council's waiting alerts at `now`, by team and worker (none for
/// those with no team or worker): counts only, for dashboards' change
/// notices and the caseload board.
pub async fn waiting(
    pool: &PgPool,
    council: &CouncilCode,
    now: DateTime<Utc>,
) -> Result<BTreeMap<(Option<LocalId>, Option<uuid::Uuid>), Waiting>, sqlx::Error> {
    let rows = sqlx::query(&format!(
        "select a.team_id, a.worker_id, count(*) filter (where {open}) as open,
                count(*) filter (where {escalated}) as escalated
           from alert a
          where a.council = $2 and a.raised_at <= $1
            and (a.acknowledged_at is null or a.acknowledged_at > $1) and (a.closed_at is null or a.closed_at > $1)
          group by a.team_id, a.worker_id",
        open = status_condition(Status::Open),
        escalated = status_condition(Status::Escalated),
    ))
    .bind(now)
    .bind(council.as_str())
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            let holder = (parsed_opt(r, "team_id", LocalId::try_from)?, r.try_get("worker_id")?);
            Ok((holder, Waiting { open: r.try_get("open")?, escalated: r.try_get("escalated")? }))
        })
        .collect()
}

/// The (council, team) of every alert whose visibility or status changed
/// with time alone in `(from, to]`: raised, escalated or closed then.
pub async fn changed_between(
    pool: &PgPool,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<BTreeSet<(CouncilCode, Option<LocalId>)>, sqlx::Error> {
    let rows = sqlx::query(
        "select distinct council, team_id from alert
          where (raised_at > $1 and raised_at <= $2) or (escalates_at > $1 and escalates_at <= $2)
             or (closed_at > $1 and closed_at <= $2)",
    )
    .bind(from)
    .bind(to)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| Ok((parsed(r, "council", CouncilCode::try_from)?, parsed_opt(r, "team_id", LocalId::try_from)?)))
        .collect()
}
