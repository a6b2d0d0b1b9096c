//! Keeping `indicator_tally` current: each refolded child's tallies
//! (`casework::tally`) replace its old ones in `indicator_part`, and what
//! changed is added to the council's in the same transaction.

use crate::database::parsed;
use casework::tally::{Measure, Tally, difference};
use events::ids::CouncilCode;
use sqlx::{Postgres, Transaction};
use std::collections::BTreeSet;

/// What a batch changes in the tallies, gathered child by child and
/// written at once ([`Writes::write`]).
#[derive(Default)]
pub(crate) struct Writes {
    /// The changes to children's parts: only what differs, so a child
    /// with years of visits whose latest extends one span changes a row
    /// or two, not all of them.
    parts: Vec<(uuid::Uuid, Tally)>,
    /// The changes to the councils' tallies.
    changes: Vec<Tally>,
}

impl Writes {
    /// Deletes the parts of children read afresh (the database holds rows
    /// of theirs this process does not know), taking what they held away
    /// from their councils' tallies.
    pub async fn take_afresh(
        &mut self,
        tx: &mut Transaction<'_, Postgres>,
        children: &[uuid::Uuid],
    ) -> Result<(), sqlx::Error> {
        let rows =
            sqlx::query("delete from indicator_part where child_id = any($1) returning council, measure, day, key, n")
                .bind(children)
                .fetch_all(&mut **tx)
                .await?;
        for row in &rows {
            let mut old = tally(row)?;
            old.n = -old.n;
            self.changes.push(old);
        }
        Ok(())
    }

    /// A child folded: `before` is what the database holds of its
    /// tallies (none when [`Writes::take_afresh`] removed them).
    pub fn add(&mut self, child: uuid::Uuid, before: Option<&[Tally]>, now: &[Tally]) {
        let changed = difference(before.unwrap_or_default(), now);
        self.parts.extend(changed.iter().map(|t| (child, t.clone())));
        self.changes.extend(changed);
    }

    pub async fn write(self, tx: &mut Transaction<'_, Postgres>) -> Result<(), sqlx::Error> {
        if !self.parts.is_empty() {
            let children: Vec<uuid::Uuid> = self.parts.iter().map(|(c, _)| *c).collect();
            let list: Vec<Tally> = self.parts.into_iter().map(|(_, t)| t).collect();
            add(tx, "indicator_part", Some(&children), &list).await?;
        }
        // Summed per row and sorted (`difference` against nothing merges),
        // so this transaction locks the rows it changes in key order: one
        // statement for every change, since a second would lock rows out of
        // order with another projector's.
        let changes = difference(&[], &self.changes);
        if !changes.is_empty() {
            add(tx, "indicator_tally", None, &changes).await?;
        }
        Ok(())
    }
}

/// Adds `list`'s counts to `table`'s rows, keyed by council, measure, day
/// and key (after `children`'s child, for `indicator_part`), in the order
/// given, then removes the rows it left at zero, which a rebuild would not
/// write (all locked by the first statement).
async fn add(
    tx: &mut Transaction<'_, Postgres>,
    table: &str,
    children: Option<&[uuid::Uuid]>,
    list: &[Tally],
) -> Result<(), sqlx::Error> {
    // `indicator_part`'s rows lead with the child.
    let (child_type, child_key, child_col, child_match) = match children {
        Some(_) => ("$6::uuid[], ", "child_id, ", "ch, ", "t.child_id = c.ch and "),
        None => ("", "", "", ""),
    };
    let (councils, measures, days, keys, ns) = columns(list);
    let given = format!(
        "unnest({child_type}$1::text[], $2::text[], $3::date[], $4::int[], $5::bigint[]) as c({child_col}c, m, d, k, n)"
    );
    let upsert = format!(
        "insert into {table} ({child_key}council, measure, day, key, n)
         select {child_col}c, m, d, k, n from {given} order by {child_col}c, m, d, k
         on conflict ({child_key}council, measure, day, key) do update set n = {table}.n + excluded.n"
    );
    let prune = format!(
        "delete from {table} t using {given}
          where {child_match}t.council = c.c and t.measure = c.m and t.day = c.d and t.key = c.k and t.n = 0"
    );
    for sql in [upsert, prune] {
        let mut q = sqlx::query(&sql).bind(&councils).bind(&measures).bind(&days).bind(&keys).bind(&ns);
        if let Some(children) = children {
            q = q.bind(children);
        }
        q.execute(&mut **tx).await?;
    }
    Ok(())
}

type Columns<'a> = (Vec<&'a str>, Vec<&'static str>, Vec<chrono::NaiveDate>, Vec<i32>, Vec<i64>);

fn columns(list: &[Tally]) -> Columns<'_> {
    (
        list.iter().map(|t| t.council.as_str()).collect(),
        list.iter().map(|t| t.measure.code()).collect(),
        list.iter().map(|t| t.day).collect(),
        list.iter().map(|t| t.key).collect(),
        list.iter().map(|t| t.n).collect(),
    )
}

/// One row of `indicator_part` or `indicator_tally`.
fn tally(row: &sqlx::postgres::PgRow) -> Result<Tally, sqlx::Error> {
    use sqlx::Row as _;
    Ok(Tally {
        council: parsed(row, "council", CouncilCode::try_from)?,
        measure: parsed(row, "measure", Measure::try_from)?,
        day: row.try_get("day")?,
        key: row.try_get("key")?,
        n: row.try_get("n")?,
    })
}

/// Queues every child for refolding if the read models were written
/// before tallies existed (the migration leaves a marker), once.
pub(crate) async fn backfill(conn: &mut sqlx::PgConnection) -> Result<(), sqlx::Error> {
    use sqlx::Connection as _;
    let mut tx = conn.begin().await?;
    let marked: Option<bool> =
        sqlx::query_scalar("delete from indicator_backfill returning queued").fetch_optional(&mut *tx).await?;
    if marked.is_some() {
        let councils: BTreeSet<CouncilCode> =
            sqlx::query_scalar::<_, String>("select distinct council from child_status where council is not null")
                .fetch_all(&mut *tx)
                .await?
                .into_iter()
                .filter_map(|c| CouncilCode::try_from(c).ok())
                .collect();
        crate::refold::queue_children_of(&mut tx, &councils).await?;
        tracing::info!(councils = councils.len(), "queued every child to be folded again for indicator tallies");
    }
    tx.commit().await
}
