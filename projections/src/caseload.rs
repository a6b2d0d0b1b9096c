//! Caseloads: who holds which child, when each child was last seen, and
//! which visits and reviews are overdue, per worker, team and council.
//!
//! Read from the casework tables on the day asked for (`today`, passed in),
//! since "overdue" moves with the calendar even when no event arrives.

use crate::database::parsed;
use casework::indicators::{
    DEFAULT_CASELOAD_THRESHOLD, DEFAULT_CIN_VISIT_INTERVAL_DAYS, DEFAULT_VISIT_INTERVAL_DAYS, over_threshold,
};
use chrono::{DateTime, Days, NaiveDate, Utc};
use events::codes::WorkerRole;
use events::ids::{CouncilCode, LocalId};
use serde::Serialize;
use sqlx::{PgPool, Row};
use std::collections::BTreeMap;

/// One case a worker holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Case {
    pub child: uuid::Uuid,
    pub council: CouncilCode,
    pub allocated_at: DateTime<Utc>,
    pub last_seen: Option<DateTime<Utc>>,
    pub last_seen_alone: Option<DateTime<Utc>>,
    pub on_plan: bool,
    pub visit_overdue: bool,
    pub review_overdue: bool,
    /// Sealed records are shown to admins only; the query role leaves them out for everyone else.
    pub sealed: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorkerLoad {
    pub worker: uuid::Uuid,
    pub team: LocalId,
    pub role: WorkerRole,
    pub open_cases: i64,
    pub fte: f64,
    pub over_threshold: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TeamLoad {
    pub team: LocalId,
    pub open_cases: i64,
    pub workers: i64,
}

/// A council's caseloads on one day.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CouncilCaseload {
    pub council: CouncilCode,
    pub on: NaiveDate,
    pub threshold: f64,
    pub workers: Vec<WorkerLoad>,
    pub teams: Vec<TeamLoad>,
}

impl CouncilCaseload {
    /// One team's part, for team-level change notifications.
    pub fn team(&self, team: &LocalId) -> serde_json::Value {
        let workers: Vec<&WorkerLoad> = self.workers.iter().filter(|w| w.team == *team).collect();
        let open_cases = self.teams.iter().find(|t| t.team == *team).map_or(0, |t| t.open_cases);
        serde_json::json!({
            "council": self.council, "team": team, "on": self.on, "open_cases": open_cases, "workers": workers,
        })
    }
}

/// The council's settings on `day` that caseloads use: visit interval and threshold.
/// A council's visit intervals (child protection, child in need) and caseload threshold on `day`.
async fn settings(pool: &PgPool, council: &CouncilCode, day: NaiveDate) -> Result<((i64, i64), f64), sqlx::Error> {
    let row = sqlx::query(
        "select visit_interval_days, cin_visit_interval_days, caseload_threshold from council_setting where council = $1
          order by (effective_from <= $2) desc, case when effective_from <= $2 then effective_from end desc,
                   effective_from limit 1",
    )
    .bind(council.as_str())
    .bind(day)
    .fetch_optional(pool)
    .await?;
    let interval = row
        .as_ref()
        .and_then(|r| r.try_get::<Option<i32>, _>("visit_interval_days").ok().flatten())
        .map_or(DEFAULT_VISIT_INTERVAL_DAYS, i64::from);
    let cin_interval = row
        .as_ref()
        .and_then(|r| r.try_get::<Option<i32>, _>("cin_visit_interval_days").ok().flatten())
        .map_or(DEFAULT_CIN_VISIT_INTERVAL_DAYS, i64::from);
    let threshold = row
        .as_ref()
        .and_then(|r| r.try_get::<Option<i32>, _>("caseload_threshold").ok().flatten())
        .map_or(DEFAULT_CASELOAD_THRESHOLD, f64::from);
    Ok(((interval, cin_interval), threshold))
}

/// The council a worker is in on `day` (their latest spell otherwise), if known.
pub async fn worker_council(
    pool: &PgPool,
    worker: uuid::Uuid,
    day: NaiveDate,
) -> Result<Option<CouncilCode>, sqlx::Error> {
    let row = sqlx::query(
        "select council from worker_spell where worker_id = $1
          order by (from_on <= $2 and (to_on is null or to_on > $2)) desc, ordinal desc limit 1",
    )
    .bind(worker)
    .bind(day)
    .fetch_optional(pool)
    .await?;
    row.map(|r| parsed(&r, "council", CouncilCode::try_from)).transpose()
}

/// The cases `worker` holds on `today`, sealed children included (marked).
pub async fn worker_cases(pool: &PgPool, worker: uuid::Uuid, today: NaiveDate) -> Result<Vec<Case>, sqlx::Error> {
    let rows = sqlx::query(&format!("{CASES} where a.worker_id = $1 {OPEN_ON_2} order by a.allocated_at, a.child_id"))
        .bind(worker)
        .bind(today)
        .fetch_all(pool)
        .await?;
    Ok(cases_from(pool, rows, today).await?.into_iter().map(|(_, case)| case).collect())
}

/// Every open case of `council` on `today` with the worker holding it,
/// sealed children included (marked): what the caseload board counts.
pub async fn council_cases(
    pool: &PgPool,
    council: &CouncilCode,
    today: NaiveDate,
) -> Result<Vec<(uuid::Uuid, Case)>, sqlx::Error> {
    let rows = sqlx::query(&format!("{CASES} where a.council = $1 {OPEN_ON_2} order by a.worker_id, a.allocated_at"))
        .bind(council.as_str())
        .bind(today)
        .fetch_all(pool)
        .await?;
    cases_from(pool, rows, today).await
}

/// Open allocations with the child's status; each caller adds its own
/// filter on `$1` (two statements, so each keeps its index).
const CASES: &str = "select a.worker_id, a.child_id, a.council, a.allocated_at, s.last_seen_at, s.last_seen_alone_at,
        s.on_cp_plan, s.on_cin_plan, s.plan_started_on, s.review_due_on, s.last_visit_on, s.sealed, s.died_on
   from allocation a join child_status s using (child_id)";
const OPEN_ON_2: &str = "and a.from_on <= $2 and (a.to_on is null or a.to_on > $2)";

async fn cases_from(
    pool: &PgPool,
    rows: Vec<sqlx::postgres::PgRow>,
    today: NaiveDate,
) -> Result<Vec<(uuid::Uuid, Case)>, sqlx::Error> {
    let mut intervals: BTreeMap<CouncilCode, (i64, i64)> = BTreeMap::new();
    let mut cases = Vec::with_capacity(rows.len());
    for row in rows {
        let council = parsed(&row, "council", CouncilCode::try_from)?;
        let interval = match intervals.get(&council) {
            Some(i) => *i,
            None => {
                let (i, _) = settings(pool, &council, today).await?;
                intervals.insert(council.clone(), i);
                i
            }
        };
        let on_cp: bool = row.try_get("on_cp_plan")?;
        let on_plan = on_cp || row.try_get::<bool, _>("on_cin_plan")?;
        // A child protection plan is visited on its interval; a child in need plan on the council's CIN one.
        let interval = if on_cp { interval.0 } else { interval.1 };
        let last_visit: Option<NaiveDate> = row.try_get("last_visit_on")?;
        let plan_started: Option<NaiveDate> = row.try_get("plan_started_on")?;
        let review_due: Option<NaiveDate> = row.try_get("review_due_on")?;
        // No visit or review falls due for a child who has died.
        let died: Option<NaiveDate> = row.try_get("died_on")?;
        let alive = died.is_none_or(|d| d > today);
        let case = Case {
            child: row.try_get("child_id")?,
            council,
            allocated_at: row.try_get("allocated_at")?,
            last_seen: row.try_get("last_seen_at")?,
            last_seen_alone: row.try_get("last_seen_alone_at")?,
            on_plan,
            visit_overdue: alive
                && on_plan
                && visit_overdue(visits_due_since(last_visit, plan_started), interval, today),
            review_overdue: alive && on_cp && review_due.is_some_and(|due| due < today),
            sealed: row.try_get("sealed")?,
        };
        cases.push((row.try_get("worker_id")?, case));
    }
    Ok(cases)
}

/// Where the visit clock runs from: the later of the last statutory visit
/// and the start of the plan open now, so a plan started today is not
/// overdue on its first day for a visit made years before it.
pub fn visits_due_since(last_visit: Option<NaiveDate>, plan_started: Option<NaiveDate>) -> Option<NaiveDate> {
    last_visit.max(plan_started)
}

/// A visit is overdue when the last one (or the plan's start, before any)
/// is more than `interval` calendar days before `today`.
pub fn visit_overdue(since: Option<NaiveDate>, interval: i64, today: NaiveDate) -> bool {
    match since {
        Some(day) => day.checked_add_days(Days::new(interval.max(0) as u64)).is_some_and(|due| due < today),
        None => false,
    }
}

/// Every worker and team of `council` on `today`.
pub async fn council(pool: &PgPool, council: &CouncilCode, today: NaiveDate) -> Result<CouncilCaseload, sqlx::Error> {
    let (_, threshold) = settings(pool, council, today).await?;
    // One pass over the council's workers and their open allocations.
    let workers = sqlx::query(
        "with staff as (
             select worker_id, team_id, role, fte from worker_spell
              where council = $1 and from_on <= $2 and (to_on is null or to_on > $2)),
         held as (
             select a.worker_id, count(*) as open_cases from allocation a join staff using (worker_id)
              where a.from_on <= $2 and (a.to_on is null or a.to_on > $2)
              group by a.worker_id)
         select s.worker_id, s.team_id, s.role, s.fte, coalesce(h.open_cases, 0) as open_cases
           from staff s left join held h using (worker_id)
          order by s.team_id, s.worker_id",
    )
    .bind(council.as_str())
    .bind(today)
    .fetch_all(pool)
    .await?;
    let mut out = CouncilCaseload { council: council.clone(), on: today, threshold, workers: vec![], teams: vec![] };
    for row in workers {
        let open_cases: i64 = row.try_get("open_cases")?;
        let fte: f64 = row.try_get("fte")?;
        let role = parsed(&row, "role", WorkerRole::try_from)?;
        let holds = matches!(role, WorkerRole::SocialWorker | WorkerRole::SeniorSocialWorker);
        out.workers.push(WorkerLoad {
            worker: row.try_get("worker_id")?,
            team: parsed(&row, "team_id", LocalId::try_from)?,
            role,
            open_cases,
            fte,
            over_threshold: holds && over_threshold(open_cases.max(0) as usize, fte, threshold),
        });
    }
    let teams = sqlx::query(
        "select team_id, count(*) as open_cases from allocation
          where council = $1 and from_on <= $2 and (to_on is null or to_on > $2) group by team_id",
    )
    .bind(council.as_str())
    .bind(today)
    .fetch_all(pool)
    .await?;
    let mut by_team: BTreeMap<LocalId, TeamLoad> = BTreeMap::new();
    for row in teams {
        let team = parsed(&row, "team_id", LocalId::try_from)?;
        by_team.insert(team.clone(), TeamLoad { team, open_cases: row.try_get("open_cases")?, workers: 0 });
    }
    for w in &out.workers {
        by_team
            .entry(w.team.clone())
            .or_insert_with(|| TeamLoad { team: w.team.clone(), open_cases: 0, workers: 0 })
            .workers += 1;
    }
    out.teams = by_team.into_values().collect();
    Ok(out)
}
