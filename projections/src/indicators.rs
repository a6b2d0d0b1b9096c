//! Reading a council's casework facts for the indicator arithmetic (which
//! is in `casework::indicators`).

use crate::database::{parsed, parsed_opt};
use casework::facts::{Allocation, Assessment, CouncilSetting, CpPlan, Icpc, Referral, Section47, WorkerSpell};
use casework::indicators::{CouncilData, Document, Period, document_from};
use chrono::NaiveDate;
use events::codes::{CategoryOfAbuse, WorkerRole};
use events::ids::{CouncilCode, DfeLaCode, LocalId, WorkerId};

/// Computes the document from the casework tables.
pub async fn document(
    pool: &sqlx::PgPool,
    council: &CouncilCode,
    period: Period,
    today: NaiveDate,
) -> Result<Document, sqlx::Error> {
    let data = load(pool, council).await?;
    Ok(document_from(&data, council, period, today))
}

/// One row of `council_setting`.
pub(crate) fn setting(r: &sqlx::postgres::PgRow) -> Result<CouncilSetting, sqlx::Error> {
    use sqlx::Row as _;
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

/// Reads everything `casework::indicators::compute` needs about one council.
pub async fn load(pool: &sqlx::PgPool, council: &CouncilCode) -> Result<CouncilData, sqlx::Error> {
    use sqlx::Row as _;
    let mut data = CouncilData::default();
    for r in sqlx::query("select * from council_setting where council = $1 order by effective_from")
        .bind(council.as_str())
        .fetch_all(pool)
        .await?
    {
        data.settings.push(setting(&r)?);
    }
    for r in
        sqlx::query("select child_id, referral_id, received_on, nfa, previous_on, closed_on, during_open_episode from referral where council = $1")
            .bind(council.as_str())
            .fetch_all(pool)
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
        .fetch_all(pool)
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
            .fetch_all(pool)
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
        .fetch_all(pool)
        .await?
    {
        data.icpcs.push(Icpc {
            conference_id: parsed(&r, "conference_id", LocalId::try_from)?,
            council: council.clone(),
            held_on: r.try_get("held_on")?,
            s47_started_on: r.try_get("s47_started_on")?,
        });
    }
    for r in sqlx::query(
        "select child_id, plan_id, category, started_on, ended_on, icpc_on, earlier_plan, reviews
           from cp_plan where council = $1",
    )
    .bind(council.as_str())
    .fetch_all(pool)
    .await?
    {
        data.plans.push((
            r.try_get("child_id")?,
            CpPlan {
                plan_id: parsed(&r, "plan_id", LocalId::try_from)?,
                council: council.clone(),
                category: parsed(&r, "category", CategoryOfAbuse::try_from)?,
                started_on: r.try_get("started_on")?,
                ended_on: r.try_get("ended_on")?,
                icpc_on: r.try_get("icpc_on")?,
                earlier_plan: r.try_get("earlier_plan")?,
                reviews: r.try_get("reviews")?,
            },
        ));
    }
    for r in sqlx::query(
        "select child_id, seen_on from sighting
          where statutory and child_id in (select child_id from cp_plan where council = $1)",
    )
    .bind(council.as_str())
    .fetch_all(pool)
    .await?
    {
        data.visits.entry(r.try_get("child_id")?).or_default().push(r.try_get("seen_on")?);
    }
    for r in sqlx::query(
        "select child_id, worker_id, team_id, allocated_at, from_on, to_on from allocation where council = $1",
    )
    .bind(council.as_str())
    .fetch_all(pool)
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
    for r in
        sqlx::query("select worker_id, team_id, role, fte, agency, from_on, to_on from worker_spell where council = $1")
            .bind(council.as_str())
            .fetch_all(pool)
            .await?
    {
        data.spells.push((
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
    Ok(data)
}
