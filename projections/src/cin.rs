//! Reading what the CIN census and Annex A are folded from: the histories
//! of a council's children in a collection year (the folds themselves are
//! in `casework::cin`).

use crate::database::not_as_written;
use crate::refold::HISTORY_COLUMNS;
use casework::cin::CollectionYear;
use casework::facts::History;
use events::ids::{CouncilCode, DfeLaCode};

/// What a return is folded from.
#[derive(Debug)]
pub struct Loaded {
    /// The council's DfE code, if configured.
    pub dfe: Option<DfeLaCode>,
    pub histories: Vec<(uuid::Uuid, History)>,
    /// Sealed children left out (for a reader who may not see them).
    pub withheld: usize,
}

/// Which children a return is folded from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Children with a referral to the council (the CIN census).
    Referred,
    /// Those, and every child of the council now with a contact recorded in
    /// the window (Annex A's list 1 holds contacts that never became
    /// referrals too; the fold keeps the council's own). A child contacted
    /// but never referred who has since moved away is not found: the copy
    /// does not index contacts by the council they were made to.
    ReferredOrContacted,
}

/// The histories of every child with a referral to `council` by the year's
/// reference date (the census decides which are in scope), and with
/// [`Scope::ReferredOrContacted`] every child with a contact in the year,
/// sealed children only `with_sealed`, and the council's DfE code.
pub async fn load(
    pool: &sqlx::PgPool,
    council: &CouncilCode,
    year: &CollectionYear,
    with_sealed: bool,
    scope: Scope,
) -> Result<Loaded, sqlx::Error> {
    let dfe: Option<String> = sqlx::query_scalar(
        "select dfe_la_code from council_setting where council = $1 and dfe_la_code is not null
          order by effective_from desc limit 1",
    )
    .bind(council.as_str())
    .fetch_optional(pool)
    .await?
    .flatten();
    let dfe = dfe.map(DfeLaCode::try_from).transpose().map_err(|why| not_as_written("dfe_la_code", why))?;
    const REFERRED: &str =
        "select distinct r.child_id::text, s.sealed from referral r join child_status s using (child_id)
          where r.council = $1 and r.received_on <= $2 and (r.closed_on is null or r.closed_on >= $3)";
    let sql = match scope {
        Scope::Referred => REFERRED.to_owned(),
        Scope::ReferredOrContacted => format!(
            "{REFERRED} union select e.subject, s.sealed from stored_event e join child_status s on s.child_id::text = e.subject
              where s.council = $1 and e.event_type = 'contact.recorded' and e.business_date >= $3 and e.business_date <= $2"
        ),
    };
    let found: Vec<(String, bool)> =
        sqlx::query_as(&sql).bind(council.as_str()).bind(year.reference_date).bind(year.start).fetch_all(pool).await?;
    let withheld = if with_sealed { 0 } else { found.iter().filter(|(_, sealed)| *sealed).count() };
    let children: Vec<String> =
        found.into_iter().filter(|(_, sealed)| with_sealed || !sealed).map(|(child, _)| child).collect();
    let rows = sqlx::query(&format!(
        "select {HISTORY_COLUMNS} from stored_event where subject = any($1) order by subject, sequence"
    ))
    .bind(&children)
    .fetch_all(pool)
    .await?;
    let out = crate::refold::group_histories(&rows)?
        .into_iter()
        .filter_map(|(subject, history)| Some((subject.parse::<uuid::Uuid>().ok()?, history)))
        .collect();
    Ok(Loaded { dfe, histories: out, withheld })
}
