//! Reading a council's indicators: its tallies summed for the period
//! (`indicator_tally`, kept by the projector) and the few rows tallies do
//! not hold. The arithmetic is in `casework::indicators`; [`load`] reads
//! the council's whole facts, the reference the tallies are tested against.

use crate::database::{parsed, parsed_opt};
use casework::facts::{Allocation, Assessment, CouncilSetting, CpPlan, Icpc, Referral, Section47, WorkerSpell};
use casework::indicators::{CouncilData, Document, Period, Tallied, day_counted, document_tallied};
use casework::tally::{Measure, Summed};
use chrono::NaiveDate;
use events::codes::{CategoryOfAbuse, WorkerRole};
use events::ids::{CouncilCode, DfeLaCode, LocalId, WorkerId};
use sqlx::Row as _;
use std::collections::BTreeMap;

/// The indicators document of `council` for `period`, as known `today`.
pub async fn document(
    pool: &sqlx::PgPool,
    council: &CouncilCode,
    period: Period,
    today: NaiveDate,
) -> Result<Document, sqlx::Error> {
    let t = tallied(pool, council, period, today).await?;
    Ok(document_tallied(&t, council, period, today))
}

/// Everything `casework::indicators::compute_tallied` needs for one
/// council and period: a handful of queries, each bounded by the period or
/// by what is open on its last day, not by the council's history.
pub async fn tallied(
    pool: &sqlx::PgPool,
    council: &CouncilCode,
    period: Period,
    today: NaiveDate,
) -> Result<Tallied, sqlx::Error> {
    let mut db = pool.acquire().await?;
    let at = day_counted(period, today);
    let settings = settings(&mut db, council).await?;
    let segments = Summed::segments(&settings, period.from, period.to);
    let (over, running): (Vec<Measure>, Vec<Measure>) = Measure::ALL.iter().partition(|m| !m.is_running());
    let codes = |list: &[Measure]| list.iter().map(|m| m.code()).collect::<Vec<_>>();
    let mut summed = Summed::default();
    // The period's days, each in the segment of the settings in force
    // (`width_bucket` counts the segment starts on or before the day).
    for r in sqlx::query(
        "select measure, width_bucket(day, $4::date[]) as segment, key, sum(n)::bigint as n
           from indicator_tally
          where council = $1 and measure = any($5) and day between $2 and $3
          group by 1, 2, 3",
    )
    .bind(council.as_str())
    .bind(period.from)
    .bind(period.to)
    .bind(&segments)
    .bind(codes(&over))
    .fetch_all(&mut *db)
    .await?
    {
        let segment = usize::try_from(r.try_get::<i32, _>("segment")?).unwrap_or(0);
        let key = (parsed(&r, "measure", Measure::try_from)?, segment, r.try_get("key")?);
        summed.over.insert(key, r.try_get("n")?);
    }
    for r in sqlx::query(
        "select measure, sum(n)::bigint as n from indicator_tally
          where council = $1 and measure = any($3) and day <= $2 group by 1",
    )
    .bind(council.as_str())
    .bind(at)
    .bind(codes(&running))
    .fetch_all(&mut *db)
    .await?
    {
        summed.at.insert(parsed(&r, "measure", Measure::try_from)?, r.try_get("n")?);
    }
    // Plans a review may have fallen due in: not ended by the period's
    // first day, ICPC before its last (a review is due three months on).
    let mut plans_under_review = Vec::new();
    for r in sqlx::query(
        "select plan_id, category, started_on, ended_on, icpc_on, earlier_plan, reviews from cp_plan
          where council = $1 and icpc_on < $3 and (ended_on is null or ended_on > $2)",
    )
    .bind(council.as_str())
    .bind(period.from)
    .bind(period.to)
    .fetch_all(&mut *db)
    .await?
    {
        plans_under_review.push(plan(&r, council)?);
    }
    let (starting, second): (i64, i64) = sqlx::query_as(
        "select count(distinct child_id), count(distinct child_id) filter (where earlier_plan) from cp_plan
          where council = $1 and started_on between $2 and $3",
    )
    .bind(council.as_str())
    .bind(period.from)
    .bind(period.to)
    .fetch_one(&mut *db)
    .await?;
    let spells = spells(&mut db, council).await?;
    let mut cases = BTreeMap::new();
    for (worker, n) in sqlx::query_as::<_, (uuid::Uuid, i64)>(
        "select worker_id, count(*) from allocation
          where council = $1 and from_on <= $2 and (to_on is null or to_on > $2) group by worker_id",
    )
    .bind(council.as_str())
    .bind(at)
    .fetch_all(&mut *db)
    .await?
    {
        cases.insert(WorkerId::from_uuid(worker), usize::try_from(n).unwrap_or(0));
    }
    let count = |n: i64| usize::try_from(n).unwrap_or(0);
    Ok(Tallied {
        settings,
        summed,
        plans_under_review,
        starting_plans: (count(starting), count(second)),
        spells,
        cases,
    })
}

async fn settings(db: &mut sqlx::PgConnection, council: &CouncilCode) -> Result<Vec<CouncilSetting>, sqlx::Error> {
    sqlx::query("select * from council_setting where council = $1 order by effective_from")
        .bind(council.as_str())
        .fetch_all(db)
        .await?
        .iter()
        .map(setting)
        .collect()
}

async fn spells(
    db: &mut sqlx::PgConnection,
    council: &CouncilCode,
) -> Result<Vec<(WorkerId, WorkerSpell)>, sqlx::Error> {
    let mut out = Vec::new();
    for r in
        sqlx::query("select worker_id, team_id, role, fte, agency, from_on, to_on from worker_spell where council = $1")
            .bind(council.as_str())
            .fetch_all(db)
            .await?
    {
        out.push((
            WorkerId::from_uuid(r.try_get("worker_id")?),
            WorkerSpell {
                council: council.clone(),
                team_id: parsed(&r, "team_id", LocalId::try_from)?,
                role: parsed(&r, "role", WorkerRole::try_from)?,
                fte: r.try_get("fte")?,
                agency: r.try_get("agency")?,
                from_on: r.try_get("from_on")?,
                to_on: r.try_get("to_on")?,
            },
        ));
    }
    Ok(out)
}

/// One row of `cp_plan`.
fn plan(r: &sqlx::postgres::PgRow, council: &CouncilCode) -> Result<CpPlan, sqlx::Error> {
    Ok(CpPlan {
        plan_id: parsed(r, "plan_id", LocalId::try_from)?,
        council: council.clone(),
        category: parsed(r, "category", CategoryOfAbuse::try_from)?,
        started_on: r.try_get("started_on")?,
        ended_on: r.try_get("ended_on")?,
        icpc_on: r.try_get("icpc_on")?,
        earlier_plan: r.try_get("earlier_plan")?,
        reviews: r.try_get("reviews")?,
    })
}

/// One row of `council_setting`.
pub(crate) fn setting(r: &sqlx::postgres::PgRow) -> Result<CouncilSetting, sqlx::Error> {
    let count = |name: &str| -> Result<Option<u32>, sqlx::Error> {
        Ok(r.try_get::<Option<i32>, _>(name)?.and_then(|v| u32::try_from(v).ok()))
    };
    Ok(CouncilSetting {
        effective_from: r.try_get("effective_from")?,
        dfe_la_code: parsed_opt(r, "dfe_la_code", DfeLaCode::try_from)?,
        population_0_17: r.try_get("population_0_17")?,
        assessment_timescale_days: r.try_get("assessment_timescale_days")?,
        visit_interval_days: r.try_get("visit_interval_days")?,
        cin_visit_interval_days: r.try_get("cin_visit_interval_days")?,
        caseload_threshold: r.try_get("caseload_threshold")?,
        funded_social_worker_fte: r.try_get("funded_social_worker_fte")?,
        pattern_agencies: count("pattern_agencies")?,
        pattern_events: count("pattern_events")?,
        pattern_window_days: count("pattern_window_days")?,
        acknowledge_within_days: count("acknowledge_within_days")?,
        alert_lead_days: count("alert_lead_days")?,
    })
}

/// Reads everything `casework::indicators::compute` needs about one
/// council: its whole facts. The indicators are read from tallies
/// ([`tallied`]); this is the reference they are tested against.
pub async fn load(pool: &sqlx::PgPool, council: &CouncilCode) -> Result<CouncilData, sqlx::Error> {
    let mut db = pool.acquire().await?;
    let mut data = CouncilData { settings: settings(&mut db, council).await?, ..CouncilData::default() };
    for r in
        sqlx::query("select child_id, referral_id, received_on, nfa, previous_on, closed_on, during_open_episode from referral where council = $1")
            .bind(council.as_str())
            .fetch_all(&mut *db)
            .await?
    {
        data.referrals.push((r.try_get("child_id")?, Referral {
            referral_id: parsed(&r, "referral_id", LocalId::try_from)?,
            council: council.clone(),
            received_on: r.try_get("received_on")?,
            nfa: r.try_get("nfa")?,
            previous_on: r.try_get("previous_on")?,
            during_open_episode: r.try_get("during_open_episode")?,
            closed_on: r.try_get("closed_on")?,
        }));
    }
    for r in sqlx::query("select s47_id, started_on from section_47 where council = $1")
        .bind(council.as_str())
        .fetch_all(&mut *db)
        .await?
    {
        data.section47s.push(Section47 {
            s47_id: parsed(&r, "s47_id", LocalId::try_from)?,
            council: council.clone(),
            started_on: r.try_get("started_on")?,
        });
    }
    for r in
        sqlx::query("select assessment_id, started_on, completed_on, needs_support from assessment where council = $1")
            .bind(council.as_str())
            .fetch_all(&mut *db)
            .await?
    {
        data.assessments.push(Assessment {
            assessment_id: parsed(&r, "assessment_id", LocalId::try_from)?,
            council: council.clone(),
            started_on: r.try_get("started_on")?,
            completed_on: r.try_get("completed_on")?,
            needs_support: r.try_get("needs_support")?,
        });
    }
    for r in sqlx::query("select conference_id, held_on, s47_started_on from icpc where council = $1")
        .bind(council.as_str())
        .fetch_all(&mut *db)
        .await?
    {
        data.icpcs.push(Icpc {
            conference_id: parsed(&r, "conference_id", LocalId::try_from)?,
            council: council.clone(),
            held_on: r.try_get("held_on")?,
            s47_started_on: r.try_get("s47_started_on")?,
        });
    }
    for r in sqlx::query("select * from cp_plan where council = $1").bind(council.as_str()).fetch_all(&mut *db).await? {
        data.plans.push((r.try_get("child_id")?, plan(&r, council)?));
    }
    for r in sqlx::query(
        "select child_id, seen_on from sighting
          where statutory and child_id in (select child_id from cp_plan where council = $1)",
    )
    .bind(council.as_str())
    .fetch_all(&mut *db)
    .await?
    {
        data.visits.entry(r.try_get("child_id")?).or_default().push(r.try_get("seen_on")?);
    }
    for r in sqlx::query(
        "select child_id, worker_id, team_id, allocated_at, from_on, to_on from allocation where council = $1",
    )
    .bind(council.as_str())
    .fetch_all(&mut *db)
    .await?
    {
        data.allocations.push((
            r.try_get("child_id")?,
            Allocation {
                worker_id: WorkerId::from_uuid(r.try_get("worker_id")?),
                team_id: parsed(&r, "team_id", LocalId::try_from)?,
                council: council.clone(),
                allocated_at: r.try_get("allocated_at")?,
                from_on: r.try_get("from_on")?,
                to_on: r.try_get("to_on")?,
            },
        ));
    }
    data.spells = spells(&mut db, council).await?;
    Ok(data)
}
