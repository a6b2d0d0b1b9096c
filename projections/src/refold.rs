//! Writing the casework tables: each touched subject's rows are deleted and
//! written afresh from its whole history, inside the batch's transaction.
//! The fold itself is [`casework::facts`]; this is only its IO.

use crate::database::{not_as_written, parsed, parsed_opt};
use crate::identifiers;
use crate::kept::{Entry, Kept, Rows};
use crate::store::{ApplyError, folded};
use casework::facts::{History, Recorded};
use chrono::{DateTime, NaiveDate, Utc};
use events::ids::{ChildId, CouncilCode, EventId, LocalId, PrincipalName};
use events::privacy::ChildKeys;
use events::{EventData, EventType, Subject};
use sqlx::{Postgres, Row, Transaction};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// The subjects a batch touched, by kind.
#[derive(Debug, Default, Clone)]
pub struct Touched {
    pub children: BTreeSet<uuid::Uuid>,
    /// Children with an event that may carry an identifier (see [`crate::identifiers`]).
    pub identities: BTreeSet<uuid::Uuid>,
    pub workers: BTreeSet<uuid::Uuid>,
    pub councils: BTreeSet<CouncilCode>,
}

/// What a refold changed, for change notifications: councils whose
/// indicators may have moved and (council, team) pairs whose caseload may have.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Changed {
    pub councils: BTreeSet<CouncilCode>,
    pub teams: BTreeSet<(CouncilCode, LocalId)>,
    /// (council, team) whose alerts may have changed; no team is the
    /// council's unallocated alerts.
    pub alerts: BTreeSet<(CouncilCode, Option<LocalId>)>,
    /// Children were queued to be folded again ([`drain`]).
    pub requeued: bool,
}

impl Changed {
    pub fn merge(&mut self, other: Changed) {
        self.councils.extend(other.councils);
        self.teams.extend(other.teams);
        self.alerts.extend(other.alerts);
        self.requeued |= other.requeued;
    }
}

/// The columns of `stored_event` that [`group_histories`] reads, in a select
/// list: every history the folds take is read with these.
pub(crate) const HISTORY_COLUMNS: &str = "subject, sequence, event_id, source, event_type, occurred_at, business_date,
    recorded_at, document->'data' as data, document->>'authorrole' as author_role,
    (document->'significant')::boolean as significant";

/// Each subject's whole history, for workers and councils (a handful of
/// events each); children are read through [`recorded_after`].
async fn histories(
    tx: &mut Transaction<'_, Postgres>,
    kind: &str,
    subjects: &[String],
) -> Result<Vec<(String, History)>, sqlx::Error> {
    let rows = sqlx::query(
        &format!("select {HISTORY_COLUMNS} from stored_event where subject_kind = $1 and subject = any($2) order by subject, sequence"),
    )
    .bind(kind)
    .bind(subjects)
    .fetch_all(&mut **tx)
    .await?;
    group_histories(&rows)
}

/// Reads one row of `stored_event` as the folds take it: the edge where
/// the read side's types begin. A row that does not read is a decode error
/// (the copy is not what the projector wrote), which parks its subject.
fn recorded(row: &sqlx::postgres::PgRow) -> Result<Recorded, sqlx::Error> {
    let event_type = parsed(row, "event_type", EventType::try_from)?;
    let data: serde_json::Value = row.try_get("data")?;
    Ok(Recorded {
        sequence: row.try_get("sequence")?,
        event_id: parsed(row, "event_id", EventId::try_from)?,
        source: parsed(row, "source", PrincipalName::try_from)?,
        occurred_at: row.try_get("occurred_at")?,
        business_date: row.try_get("business_date")?,
        recorded_at: row.try_get("recorded_at")?,
        data: EventData::parse_stored(event_type, &data).map_err(|p| not_as_written("data", p))?,
        author_role: match row.try_get::<Option<String>, _>("author_role")? {
            Some(code) => Some(events::codes::AuthorRole::from_code(&code).ok_or_else(|| {
                sqlx::Error::Decode(format!("stored_event.authorrole is not an author role: {code}").into())
            })?),
            None => None,
        },
        significant: row.try_get("significant")?,
    })
}

/// Groups rows of `stored_event` ([`HISTORY_COLUMNS`]), ordered by subject
/// and sequence, into each subject's history.
pub(crate) fn group_histories(rows: &[sqlx::postgres::PgRow]) -> Result<Vec<(String, History)>, sqlx::Error> {
    group_recorded(rows)?
        .into_iter()
        .map(|(subject, events)| {
            let history = History::new(events).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
            Ok((subject, history))
        })
        .collect()
}

/// Groups rows of `stored_event` ([`HISTORY_COLUMNS`]), ordered by subject
/// and sequence, into each subject's events, decoded.
fn group_recorded(rows: &[sqlx::postgres::PgRow]) -> Result<Vec<(String, Vec<Recorded>)>, sqlx::Error> {
    let mut out: Vec<(String, Vec<Recorded>)> = Vec::new();
    for row in rows {
        let subject: String = row.try_get("subject")?;
        let recorded = recorded(row)?;
        match out.last_mut() {
            Some((s, list)) if *s == subject => list.push(recorded),
            _ => out.push((subject, vec![recorded])),
        }
    }
    Ok(out)
}

/// Refolds every touched subject within `tx`; with `keys`, also the
/// identifier index of children whose identifying events arrived. Children
/// kept in `kept` are folded from what it holds (see [`crate::kept`]).
#[tracing::instrument(name = "refold", skip_all, fields(children = touched.children.len()))]
pub async fn refold(
    tx: &mut Transaction<'_, Postgres>,
    touched: &Touched,
    keys: Option<&dyn ChildKeys>,
    kept: &Kept,
) -> Result<Changed, ApplyError> {
    let mut changed = Changed::default();
    // Councils first: a child's alerts are folded under its council's
    // settings, so a council reconfigured queues its children to be folded
    // again. Not in this batch: a council may hold a hundred thousand
    // children, and one transaction refolding them all would hold every
    // later event back for as long (see [`drain`]).
    if !touched.councils.is_empty() {
        changed.merge(refold_councils(tx, &touched.councils).await?);
        queue_children_of(tx, &touched.councils).await?;
        changed.requeued = true;
    }
    if !touched.workers.is_empty() {
        changed.merge(refold_workers(tx, &touched.workers).await?);
    }
    if !touched.children.is_empty() {
        let folded = refold_children(tx, &touched.children, kept).await?;
        changed.merge(folded.changed);
        if let Some(keys) = keys
            && !touched.identities.is_empty()
        {
            let histories: Vec<(&str, &History)> =
                folded.children.iter().map(|(_, c)| (c.subject.as_str(), &c.entry.history)).collect();
            identifiers::refresh(tx, keys, &touched.identities, &histories).await?;
        }
        kept.keep(folded.children.into_iter().map(|(child, c)| (child, c.entry)));
    }
    Ok(changed)
}

/// Queues the children of `councils` in the read models (but the parked,
/// whose rows wait for their own messages) to be folded again by
/// [`drain`], each under its own partition.
pub(crate) async fn queue_children_of(
    tx: &mut Transaction<'_, Postgres>,
    councils: &BTreeSet<CouncilCode>,
) -> Result<(), sqlx::Error> {
    let codes: Vec<&str> = councils.iter().map(CouncilCode::as_str).collect();
    let children: Vec<uuid::Uuid> = sqlx::query_scalar(
        "select child_id from child_status where council = any($1)
            and child_id::text not in (select subject from parked_subject)",
    )
    .bind(&codes)
    .fetch_all(&mut **tx)
    .await?;
    let partitions = partition_numbers(
        &children
            .iter()
            .map(|c| events::subjects::partition(&Subject::Child(ChildId::from_uuid(*c))))
            .collect::<Vec<_>>(),
    );
    sqlx::query(
        "insert into refold_pending (child_id, partition) select * from unnest($1::uuid[], $2::int[])
         on conflict (child_id) do nothing",
    )
    .bind(&children)
    .bind(&partitions)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// What one [`drain`] did.
#[derive(Debug, Default)]
pub struct Drained {
    /// Children folded again.
    pub children: usize,
    /// Whether children may still be queued in the drained partitions: the
    /// chunk came back full. Not a count: counting the queue costs as much
    /// as the queue is long, and a chunk must cost what its children do
    /// (a count per chunk once held a drain of 545,000 children to about
    /// 60 a second).
    pub more: bool,
    pub changed: Changed,
}

/// Folds again up to `limit` of the children queued in `partitions` (see
/// [`queue_children_of`]), oldest first, within `tx`. Only the projector
/// owning a partition drains it, between its batches, so a child's rows
/// are never written by two transactions at once.
pub async fn drain(
    tx: &mut Transaction<'_, Postgres>,
    partitions: &[u32],
    limit: usize,
    kept: &Kept,
) -> Result<Drained, ApplyError> {
    let partitions = partition_numbers(partitions);
    // Written so that no plan of it reads more of the queue than the chunk,
    // for the server keeps one generic plan of a statement after its first
    // five runs on a connection, and a generic plan knows neither the limit
    // nor the partitions. Each partition is an ordered probe of the
    // (partition, queued_at) index, taken in turn until the chunk is full;
    // the chunk is then deleted by key as an array, which the planner
    // expects to be short. Written as `child_id in (select ...)`, the
    // generic plan guessed the limit at a tenth of the queue and joined the
    // chunk to a sequential scan of the whole queue, every chunk.
    let taken: Vec<uuid::Uuid> = sqlx::query_scalar(
        "delete from refold_pending where child_id = any(array(
             select queued.child_id from unnest($1::int[]) as p(partition)
              cross join lateral (select child_id from refold_pending r where r.partition = p.partition
                                   order by r.queued_at limit $2 for update skip locked) as queued
              limit $2))
         returning child_id",
    )
    .bind(&partitions)
    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
    .fetch_all(&mut **tx)
    .await?;
    let more = taken.len() >= limit;
    // A child parked since it was queued waits for its own messages.
    let parked: BTreeSet<uuid::Uuid> = sqlx::query_scalar::<_, String>(
        "select subject from parked_subject where subject_kind = 'child' and subject = any($1)",
    )
    .bind(taken.iter().map(uuid::Uuid::to_string).collect::<Vec<_>>())
    .fetch_all(&mut **tx)
    .await?
    .into_iter()
    .filter_map(|s| s.parse().ok())
    .collect();
    let children: BTreeSet<uuid::Uuid> = taken.into_iter().filter(|c| !parked.contains(c)).collect();
    let mut drained = Drained { children: children.len(), more, ..Drained::default() };
    if !children.is_empty() {
        let folded = refold_children(tx, &children, kept).await?;
        drained.changed = folded.changed;
        kept.keep(folded.children.into_iter().map(|(child, c)| (child, c.entry)));
    }
    Ok(drained)
}

/// How many children of `partitions` wait to be folded again: a count of
/// the queue, for the health check, never per chunk.
pub async fn queued<'e>(db: impl sqlx::PgExecutor<'e>, partitions: &[i32]) -> Result<u64, sqlx::Error> {
    let n: i64 = sqlx::query_scalar("select count(*) from refold_pending where partition = any($1)")
        .bind(partitions)
        .fetch_one(db)
        .await?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// Partition numbers as the `refold_pending` column holds them.
pub fn partition_numbers(partitions: &[u32]) -> Vec<i32> {
    partitions.iter().map(|p| i32::try_from(*p).unwrap_or(i32::MAX)).collect()
}

/// Every council's settings, for the alerts' fold (a few rows a council).
async fn council_settings(
    tx: &mut Transaction<'_, Postgres>,
) -> Result<BTreeMap<CouncilCode, Vec<casework::facts::CouncilSetting>>, sqlx::Error> {
    let mut out: BTreeMap<CouncilCode, Vec<casework::facts::CouncilSetting>> = BTreeMap::new();
    for row in
        sqlx::query("select * from council_setting order by council, effective_from").fetch_all(&mut **tx).await?
    {
        let council = parsed(&row, "council", CouncilCode::try_from)?;
        out.entry(council).or_default().push(crate::indicators::setting(&row)?);
    }
    Ok(out)
}

/// Every table [`ChildRows::write`] fills, each keyed by child. (A child's
/// `indicator_part` rows are kept by [`crate::tally::Writes`] instead,
/// which must read what it deletes.) A refold
/// deletes a child's rows from all of them before writing them afresh, so a
/// table left off this list would be written twice and refuse the second
/// write for ever (as `quality_flag` once was). The read-side test checks
/// this list against the schema: every table with a `child_id` column is
/// here or is the identifier index, which [`identifiers::refresh`] rewrites.
pub const CHILD_TABLES: [&str; 11] = [
    "child_status",
    "referral",
    "assessment",
    "section_47",
    "icpc",
    "cp_plan",
    "allocation",
    "sighting",
    "child_review",
    "quality_flag",
    "alert",
];

fn count(n: Option<u32>) -> Option<i32> {
    n.map(|n| i32::try_from(n).unwrap_or(i32::MAX))
}

fn i32_of(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// One child as a refold left it: its history and the rows written from
/// it, under the stamp written with them.
struct FoldedChild {
    subject: String,
    entry: Entry,
}

/// What [`refold_children`] did.
struct Folded {
    changed: Changed,
    children: Vec<(uuid::Uuid, FoldedChild)>,
}

async fn refold_children(
    tx: &mut Transaction<'_, Postgres>,
    children: &BTreeSet<uuid::Uuid>,
    kept: &Kept,
) -> Result<Folded, ApplyError> {
    let ids: Vec<uuid::Uuid> = children.iter().copied().collect();
    let mut changed = Changed::default();
    // What the children looked like before, so a council or team they left
    // hears of it too. Every fold writes a child's status row with the
    // rest of its rows, so a child without one holds no rows at all: it
    // was never folded here (in a rebuild, most children of a batch),
    // and nothing of its needs reading back or removing.
    let before = sqlx::query(
        "select child_id, council, null as team_id from child_status where child_id = any($1)
         union all select child_id, council, team_id from allocation where child_id = any($1) and to_on is null",
    )
    .bind(&ids)
    .fetch_all(&mut **tx)
    .await?;
    let mut held = BTreeSet::new();
    for row in before {
        held.insert(row.try_get::<uuid::Uuid, _>("child_id")?);
        let Some(council) = parsed_opt(&row, "council", CouncilCode::try_from)? else { continue };
        if let Some(team) = parsed_opt(&row, "team_id", LocalId::try_from)? {
            changed.teams.insert((council.clone(), team));
        }
        changed.councils.insert(council);
    }
    let held: Vec<uuid::Uuid> = held.into_iter().collect();

    // The kept folds whose rows are still the ones the database holds; the
    // rest of the children are read and written afresh.
    let mut entries = kept.take(ids.iter().copied());
    if !entries.is_empty() {
        let stamps: BTreeMap<uuid::Uuid, uuid::Uuid> =
            sqlx::query_as("select child_id, stamp from child_fold where child_id = any($1)")
                .bind(entries.keys().copied().collect::<Vec<_>>())
                .fetch_all(&mut **tx)
                .await?
                .into_iter()
                .collect();
        entries.retain(|child, entry| stamps.get(child) == Some(&entry.stamp));
    }
    let afresh: Vec<uuid::Uuid> = ids.iter().filter(|c| !entries.contains_key(c)).copied().collect();
    // Of those, the ones whose rows the database holds.
    let replaced: Vec<uuid::Uuid> = held.iter().filter(|c| !entries.contains_key(c)).copied().collect();
    // Alerts' teams before, so a team that lost one hears of it: the kept
    // folds hold them, the database holds the rest.
    for entry in entries.values() {
        changed.alerts.extend(entry.rows.alerts.iter().map(|a| (a.council.clone(), a.team.clone())));
    }
    let mut tallies = crate::tally::Writes::default();
    if !replaced.is_empty() {
        for row in sqlx::query("select distinct council, team_id from alert where child_id = any($1)")
            .bind(&replaced)
            .fetch_all(&mut **tx)
            .await?
        {
            let council = parsed(&row, "council", CouncilCode::try_from)?;
            changed.alerts.insert((council, parsed_opt(&row, "team_id", LocalId::try_from)?));
        }
        for table in CHILD_TABLES {
            sqlx::query(&format!("delete from {table} where child_id = any($1)"))
                .bind(&replaced)
                .execute(&mut **tx)
                .await?;
        }
        tallies.take_afresh(tx, &replaced).await?;
    }
    let mut histories: Vec<(String, Option<Entry>, Vec<Recorded>)> = Vec::with_capacity(ids.len());
    let subjects: Vec<String> = afresh.iter().map(uuid::Uuid::to_string).collect();
    for (subject, events) in recorded_after(tx, &subjects, &[]).await? {
        histories.push((subject, None, events));
    }
    if !entries.is_empty() {
        let (subjects, after): (Vec<String>, Vec<i64>) =
            entries.iter().map(|(c, e)| (c.to_string(), e.history.last_sequence().unwrap_or(0))).unzip();
        let mut new: BTreeMap<String, Vec<Recorded>> =
            recorded_after(tx, &subjects, &after).await?.into_iter().collect();
        for (child, entry) in entries {
            let subject = child.to_string();
            let events = new.remove(&subject).unwrap_or_default();
            histories.push((subject, Some(entry), events));
        }
    }

    let settings = council_settings(tx).await?;
    let mut rows = ChildRows::default();
    let mut out = Vec::with_capacity(histories.len());
    for (subject, entry, events) in histories {
        let Ok(child) = subject.parse::<uuid::Uuid>() else { continue };
        let (history, before) = match entry {
            Some(entry) => (entry.history.extended(events), Some(entry.rows)),
            None => (History::new(events), None),
        };
        // A child's history the gateway did not write (no registration, a
        // correction that does not fit): a content error, which parks the child.
        let history = history.map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
        let now = folded(&subject, || Rows::fold(child, &history, &settings))?
            .map_err(|e: casework::facts::HistoryError| sqlx::Error::Decode(Box::new(e)))?;
        let facts = &now.facts;
        changed.alerts.extend(now.alerts.iter().map(|a| (a.council.clone(), a.team.clone())));
        changed.councils.insert(facts.status.council.clone());
        for a in facts.allocations.iter().filter(|a| a.to_on.is_none()) {
            changed.teams.insert((a.council.clone(), a.team_id.clone()));
        }
        changed.councils.extend(facts.referrals.iter().map(|r| r.council.clone()));
        changed.councils.extend(facts.plans.iter().map(|p| p.council.clone()));
        rows.add(child, before.as_ref(), &now);
        tallies.add(child, before.as_ref().map(|b| &b.tallies[..]), &now.tallies);
        let entry = Entry { stamp: uuid::Uuid::new_v4(), history, rows: now };
        out.push((child, FoldedChild { subject, entry }));
    }
    rows.write(tx).await?;
    // Last of the child rows: the tallies' rows are shared with other
    // projectors, and are held from here until the batch commits.
    tallies.write(tx).await?;
    sqlx::query(
        "insert into child_fold (child_id, stamp) select * from unnest($1::uuid[], $2::uuid[])
         on conflict (child_id) do update set stamp = excluded.stamp",
    )
    .bind(out.iter().map(|(c, _)| *c).collect::<Vec<_>>())
    .bind(out.iter().map(|(_, f)| f.entry.stamp).collect::<Vec<_>>())
    .execute(&mut **tx)
    .await?;
    Ok(Folded { changed, children: out })
}

/// Each subject's events after a sequence (`after`, one per subject, or
/// from the first when empty), decoded, in order.
async fn recorded_after(
    tx: &mut Transaction<'_, Postgres>,
    subjects: &[String],
    after: &[i64],
) -> Result<Vec<(String, Vec<Recorded>)>, sqlx::Error> {
    if subjects.is_empty() {
        return Ok(Vec::new());
    }
    let from_first;
    let after = if after.is_empty() {
        from_first = vec![0; subjects.len()];
        &from_first
    } else {
        after
    };
    // One index range scan of `(subject, sequence)` per subject, whatever
    // the statistics say. `offset 0` keeps the subquery lateral: flattened
    // into a join, the planner was free to hash the whole of `stored_event`
    // instead, and did while two rebuild shares filled it (parallel scans
    // spilling to disk: three quarters of PostgreSQL's time). Whole
    // histories, read as `subject = any($1)`, later ran as parallel plans
    // too (under two shares, with half a million events in the table).
    let rows = sqlx::query(&format!(
        "select h.* from unnest($1::text[], $2::bigint[]) as k(s, after)
           cross join lateral (select {HISTORY_COLUMNS} from stored_event
                                where subject_kind = 'child' and subject = k.s and sequence > k.after
                               offset 0) h
          order by h.subject, h.sequence"
    ))
    .bind(subjects)
    .bind(after)
    .fetch_all(&mut **tx)
    .await?;
    group_recorded(&rows)
}

/// Where a child's rows in one table stop agreeing with what the database
/// holds (`old`, none when it holds none of them): the first row to
/// rewrite, or none when they agree throughout.
fn cut<T: PartialEq>(old: Option<&[T]>, new: &[T]) -> Option<usize> {
    match old {
        None => Some(0),
        Some(old) => {
            let same = old.iter().zip(new).take_while(|(a, b)| a == b).count();
            (same < old.len() || same < new.len()).then_some(same)
        }
    }
}

/// The rows a batch writes, table by table, and the rows it removes first:
/// for each table, the children whose rows from an ordinal on (or all of
/// them, for tables keyed otherwise) no longer stand.
#[derive(Default)]
struct ChildRows {
    cuts: Deletes,
    /// Rows keyed by the event that recorded them, removed one by one.
    gone: Deletes,
    status: Vec<(uuid::Uuid, casework::facts::ChildStatus)>,
    referrals: Vec<(uuid::Uuid, casework::facts::Referral)>,
    assessments: Vec<(uuid::Uuid, casework::facts::Assessment)>,
    section47s: Vec<(uuid::Uuid, casework::facts::Section47)>,
    icpcs: Vec<(uuid::Uuid, casework::facts::Icpc)>,
    plans: Vec<(uuid::Uuid, casework::facts::CpPlan)>,
    allocations: Vec<(uuid::Uuid, i32, uuid::Uuid, casework::facts::Allocation)>,
    sightings: Vec<(uuid::Uuid, i32, casework::facts::Sighting)>,
    reviews: Vec<(uuid::Uuid, casework::facts::Review)>,
    flags: Vec<(uuid::Uuid, i32, casework::quality::Flag)>,
    alerts: Vec<(uuid::Uuid, casework::alerts::Alert)>,
}

/// Rows to remove before writing, by table: each child with the ordinal
/// from which (in `cuts`) or at which (in `gone`) its rows no longer stand.
type Deletes = BTreeMap<&'static str, (Vec<uuid::Uuid>, Vec<i32>)>;

fn delete(deletes: &mut Deletes, table: &'static str, child: uuid::Uuid, ordinal: i32) {
    let d = deletes.entry(table).or_default();
    d.0.push(child);
    d.1.push(ordinal);
}

/// The tables whose rows are numbered by `ordinal` in the fold's order, so
/// that rows appended to a long history are written alone. `sighting` is
/// keyed by the sequence of the visit's own event instead: visits come late
/// and are corrected, and a position in business order would shift every
/// later row with each late one. The other tables are a handful of rows a
/// child and are rewritten whole when any changes.
const ORDINAL_TABLES: [&str; 2] = ["allocation", "quality_flag"];

impl ChildRows {
    /// Adds what `child`'s fold `now` changes from `before` (none: the
    /// database holds no rows of the child).
    fn add(&mut self, child: uuid::Uuid, before: Option<&Rows>, now: &Rows) {
        /// Rows keyed otherwise than by ordinal: all rewritten, or none.
        fn whole<T: PartialEq + Clone, R>(
            cuts: &mut Deletes,
            table: &'static str,
            child: uuid::Uuid,
            old: Option<&[T]>,
            new: &[T],
            out: &mut Vec<R>,
            row: impl Fn(T) -> R,
        ) {
            if cut(old, new).is_some() {
                if old.is_some() {
                    delete(cuts, table, child, 0);
                }
                out.extend(new.iter().cloned().map(row));
            }
        }
        /// Rows keyed by their own event's sequence: those added, changed or gone.
        #[allow(clippy::too_many_arguments)] // one call per table, each naming what it writes
        fn keyed<T: PartialEq + Clone, R>(
            gone: &mut Deletes,
            table: &'static str,
            child: uuid::Uuid,
            old: Option<&[T]>,
            new: &[T],
            key: impl Fn(&T) -> i32,
            out: &mut Vec<R>,
            row: impl Fn(i32, T) -> R,
        ) {
            let before: HashMap<i32, &T> = old.unwrap_or_default().iter().map(|x| (key(x), x)).collect();
            let now: HashMap<i32, &T> = new.iter().map(|x| (key(x), x)).collect();
            if old.is_some() {
                for (k, x) in &before {
                    if now.get(k) != Some(x) {
                        delete(gone, table, child, *k);
                    }
                }
            }
            out.extend(new.iter().filter(|x| before.get(&key(x)) != Some(x)).map(|x| row(key(x), x.clone())));
        }
        /// Rows keyed by ordinal: those from the first that changed.
        fn tail<T: PartialEq + Clone, R>(
            cuts: &mut Deletes,
            table: &'static str,
            child: uuid::Uuid,
            old: Option<&[T]>,
            new: &[T],
            out: &mut Vec<R>,
            row: impl Fn(i32, T) -> R,
        ) {
            if let Some(from) = cut(old, new) {
                if old.is_some() {
                    delete(cuts, table, child, i32_of(from));
                }
                out.extend(new[from..].iter().cloned().enumerate().map(|(i, x)| row(i32_of(from + i), x)));
            }
        }
        let (f, c) = (&now.facts, &mut self.cuts);
        whole(
            c,
            "child_status",
            child,
            before.map(|b| std::slice::from_ref(&b.facts.status)),
            std::slice::from_ref(&f.status),
            &mut self.status,
            |x| (child, x),
        );
        whole(c, "referral", child, before.map(|b| &b.facts.referrals[..]), &f.referrals, &mut self.referrals, |x| {
            (child, x)
        });
        whole(
            c,
            "assessment",
            child,
            before.map(|b| &b.facts.assessments[..]),
            &f.assessments,
            &mut self.assessments,
            |x| (child, x),
        );
        whole(
            c,
            "section_47",
            child,
            before.map(|b| &b.facts.section47s[..]),
            &f.section47s,
            &mut self.section47s,
            |x| (child, x),
        );
        whole(c, "icpc", child, before.map(|b| &b.facts.icpcs[..]), &f.icpcs, &mut self.icpcs, |x| (child, x));
        whole(c, "cp_plan", child, before.map(|b| &b.facts.plans[..]), &f.plans, &mut self.plans, |x| (child, x));
        whole(c, "child_review", child, before.map(|b| &b.facts.reviews[..]), &f.reviews, &mut self.reviews, |x| {
            (child, x)
        });
        whole(c, "alert", child, before.map(|b| &b.alerts[..]), &now.alerts, &mut self.alerts, |x| (child, x));
        tail(
            c,
            "allocation",
            child,
            before.map(|b| &b.facts.allocations[..]),
            &f.allocations,
            &mut self.allocations,
            |i, a| (child, i, *a.worker_id.as_uuid(), a),
        );
        let at = |s: &casework::facts::Sighting| i32::try_from(s.sequence).unwrap_or(i32::MAX);
        keyed(
            &mut self.gone,
            "sighting",
            child,
            before.map(|b| &b.facts.sightings[..]),
            &f.sightings,
            at,
            &mut self.sightings,
            |k, s| (child, k, s),
        );
        tail(c, "quality_flag", child, before.map(|b| &b.flags[..]), &now.flags, &mut self.flags, |i, x| (child, i, x));
    }

    /// Removes the rows that no longer stand, then writes every row, table
    /// by table, in the batch's transaction.
    async fn write(self, tx: &mut Transaction<'_, Postgres>) -> Result<(), sqlx::Error> {
        for (table, (children, keys)) in &self.gone {
            if children.is_empty() {
                continue;
            }
            sqlx::query(&format!(
                "delete from {table} t using unnest($1::uuid[], $2::int[]) as d(child, key)
                  where t.child_id = d.child and t.ordinal = d.key"
            ))
            .bind(children)
            .bind(keys)
            .execute(&mut **tx)
            .await?;
        }
        for (table, (children, from)) in &self.cuts {
            if ORDINAL_TABLES.contains(table) {
                sqlx::query(&format!(
                    "delete from {table} t using unnest($1::uuid[], $2::int[]) as d(child, from_ordinal)
                      where t.child_id = d.child and t.ordinal >= d.from_ordinal"
                ))
                .bind(children)
                .bind(from)
                .execute(&mut **tx)
                .await?;
            } else {
                sqlx::query(&format!("delete from {table} where child_id = any($1)"))
                    .bind(children)
                    .execute(&mut **tx)
                    .await?;
            }
        }
        insert_status(tx, &self.status).await?;
        insert_referrals(tx, &self.referrals).await?;
        insert_assessments(tx, &self.assessments).await?;
        insert_section47s(tx, &self.section47s).await?;
        insert_icpcs(tx, &self.icpcs).await?;
        insert_plans(tx, &self.plans).await?;
        insert_allocations(tx, &self.allocations).await?;
        insert_sightings(tx, &self.sightings).await?;
        insert_flags(tx, &self.flags).await?;
        insert_alerts(tx, &self.alerts).await?;
        // One row at a time: reviews are rare.
        for (child, r) in &self.reviews {
            sqlx::query("insert into child_review values ($1, $2, $3, $4, $5, $6)")
                .bind(child)
                .bind(r.review_id.as_str())
                .bind(r.kind.code())
                .bind(r.reviewers.iter().map(|p| p.as_str().to_owned()).collect::<Vec<_>>())
                .bind(r.opened_at)
                .bind(r.closed_at)
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }
}

/// Writes `alert` rows in one statement.
async fn insert_alerts(
    tx: &mut Transaction<'_, Postgres>,
    a: &[(uuid::Uuid, casework::alerts::Alert)],
) -> Result<(), sqlx::Error> {
    if a.is_empty() {
        return Ok(());
    }
    fn ack(x: &casework::alerts::Alert) -> Option<&casework::alerts::Acknowledgement> {
        x.acknowledged.as_ref()
    }
    sqlx::query(
        "insert into alert select * from unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::uuid[],
            $6::text[], $7::text[], $8::bigint[], $9::timestamptz[], $10::timestamptz[], $11::timestamptz[],
            $12::timestamptz[], $13::text[], $14::timestamptz[], $15::bigint[])",
    )
    .bind(a.iter().map(|(_, x)| *x.id.as_uuid()).collect::<Vec<_>>())
    .bind(a.iter().map(|(c, _)| *c).collect::<Vec<_>>())
    .bind(a.iter().map(|(_, x)| x.kind.code()).collect::<Vec<_>>())
    .bind(a.iter().map(|(_, x)| x.council.as_str()).collect::<Vec<_>>())
    .bind(a.iter().map(|(_, x)| x.worker.map(|w| *w.as_uuid())).collect::<Vec<_>>())
    .bind(a.iter().map(|(_, x)| x.team.as_ref().map(LocalId::as_str)).collect::<Vec<_>>())
    .bind(a.iter().map(|(_, x)| x.raised_by.as_ref().map(PrincipalName::as_str)).collect::<Vec<_>>())
    .bind(a.iter().map(|(_, x)| x.sequence).collect::<Vec<_>>())
    .bind(a.iter().map(|(_, x)| x.raised_at).collect::<Vec<_>>())
    .bind(a.iter().map(|(_, x)| x.due_by).collect::<Vec<_>>())
    .bind(a.iter().map(|(_, x)| x.escalates_at).collect::<Vec<_>>())
    .bind(a.iter().map(|(_, x)| x.closed_at).collect::<Vec<_>>())
    .bind(a.iter().map(|(_, x)| ack(x).map(|k| k.by.as_str())).collect::<Vec<_>>())
    .bind(a.iter().map(|(_, x)| ack(x).map(|k| k.at)).collect::<Vec<_>>())
    .bind(a.iter().map(|(_, x)| ack(x).map(|k| k.sequence)).collect::<Vec<_>>())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Writes `child_status` rows in one statement.
async fn insert_status(
    tx: &mut Transaction<'_, Postgres>,
    s: &[(uuid::Uuid, casework::facts::ChildStatus)],
) -> Result<(), sqlx::Error> {
    if s.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "insert into child_status select * from unnest($1::uuid[], $2::text[], $3::text[], $4::date[],
            $5::bool[], $6::bool[], $7::bool[], $8::bool[], $9::date[], $10::date[], $11::timestamptz[],
            $12::timestamptz[], $13::date[])",
    )
    .bind(s.iter().map(|(c, _)| *c).collect::<Vec<_>>())
    .bind(s.iter().map(|(_, x)| x.council.as_str()).collect::<Vec<_>>())
    .bind(s.iter().map(|(_, x)| x.la_child_id.as_ref().map(|id| id.as_str())).collect::<Vec<_>>())
    .bind(s.iter().map(|(_, x)| x.died_on).collect::<Vec<_>>())
    .bind(s.iter().map(|(_, x)| x.sealed).collect::<Vec<_>>())
    .bind(s.iter().map(|(_, x)| x.episode_open).collect::<Vec<_>>())
    .bind(s.iter().map(|(_, x)| x.on_cp_plan).collect::<Vec<_>>())
    .bind(s.iter().map(|(_, x)| x.on_cin_plan).collect::<Vec<_>>())
    .bind(s.iter().map(|(_, x)| x.plan_started_on).collect::<Vec<_>>())
    .bind(s.iter().map(|(_, x)| x.review_due_on).collect::<Vec<_>>())
    .bind(s.iter().map(|(_, x)| x.last_seen_at).collect::<Vec<_>>())
    .bind(s.iter().map(|(_, x)| x.last_seen_alone_at).collect::<Vec<_>>())
    .bind(s.iter().map(|(_, x)| x.last_visit_on).collect::<Vec<_>>())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Writes `referral` rows in one statement.
async fn insert_referrals(
    tx: &mut Transaction<'_, Postgres>,
    r: &[(uuid::Uuid, casework::facts::Referral)],
) -> Result<(), sqlx::Error> {
    if r.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "insert into referral select * from unnest($1::uuid[], $2::text[], $3::text[], $4::date[],
            $5::bool[], $6::date[], $7::date[], $8::bool[])",
    )
    .bind(r.iter().map(|(c, _)| *c).collect::<Vec<_>>())
    .bind(r.iter().map(|(_, x)| x.referral_id.as_str()).collect::<Vec<_>>())
    .bind(r.iter().map(|(_, x)| x.council.as_str()).collect::<Vec<_>>())
    .bind(r.iter().map(|(_, x)| x.received_on).collect::<Vec<_>>())
    .bind(r.iter().map(|(_, x)| x.nfa).collect::<Vec<_>>())
    .bind(r.iter().map(|(_, x)| x.previous_on).collect::<Vec<_>>())
    .bind(r.iter().map(|(_, x)| x.closed_on).collect::<Vec<_>>())
    .bind(r.iter().map(|(_, x)| x.during_open_episode).collect::<Vec<_>>())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Writes `assessment` rows in one statement.
async fn insert_assessments(
    tx: &mut Transaction<'_, Postgres>,
    a: &[(uuid::Uuid, casework::facts::Assessment)],
) -> Result<(), sqlx::Error> {
    if a.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "insert into assessment select * from unnest($1::uuid[], $2::text[], $3::text[], $4::date[], $5::date[],
            $6::boolean[])",
    )
    .bind(a.iter().map(|(c, _)| *c).collect::<Vec<_>>())
    .bind(a.iter().map(|(_, x)| x.assessment_id.as_str()).collect::<Vec<_>>())
    .bind(a.iter().map(|(_, x)| x.council.as_str()).collect::<Vec<_>>())
    .bind(a.iter().map(|(_, x)| x.started_on).collect::<Vec<_>>())
    .bind(a.iter().map(|(_, x)| x.completed_on).collect::<Vec<_>>())
    .bind(a.iter().map(|(_, x)| x.needs_support).collect::<Vec<_>>())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Writes `section_47` rows in one statement.
async fn insert_section47s(
    tx: &mut Transaction<'_, Postgres>,
    s: &[(uuid::Uuid, casework::facts::Section47)],
) -> Result<(), sqlx::Error> {
    if s.is_empty() {
        return Ok(());
    }
    sqlx::query("insert into section_47 select * from unnest($1::uuid[], $2::text[], $3::text[], $4::date[])")
        .bind(s.iter().map(|(c, _)| *c).collect::<Vec<_>>())
        .bind(s.iter().map(|(_, x)| x.s47_id.as_str()).collect::<Vec<_>>())
        .bind(s.iter().map(|(_, x)| x.council.as_str()).collect::<Vec<_>>())
        .bind(s.iter().map(|(_, x)| x.started_on).collect::<Vec<_>>())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Writes `icpc` rows in one statement.
async fn insert_icpcs(
    tx: &mut Transaction<'_, Postgres>,
    i: &[(uuid::Uuid, casework::facts::Icpc)],
) -> Result<(), sqlx::Error> {
    if i.is_empty() {
        return Ok(());
    }
    sqlx::query("insert into icpc select * from unnest($1::uuid[], $2::text[], $3::text[], $4::date[], $5::date[])")
        .bind(i.iter().map(|(c, _)| *c).collect::<Vec<_>>())
        .bind(i.iter().map(|(_, x)| x.conference_id.as_str()).collect::<Vec<_>>())
        .bind(i.iter().map(|(_, x)| x.council.as_str()).collect::<Vec<_>>())
        .bind(i.iter().map(|(_, x)| x.held_on).collect::<Vec<_>>())
        .bind(i.iter().map(|(_, x)| x.s47_started_on).collect::<Vec<_>>())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Writes `cp_plan` rows in one statement.
async fn insert_plans(
    tx: &mut Transaction<'_, Postgres>,
    p: &[(uuid::Uuid, casework::facts::CpPlan)],
) -> Result<(), sqlx::Error> {
    if p.is_empty() {
        return Ok(());
    }
    // Reviews travel as one text per plan: Postgres has no arrays of arrays of unequal length.
    sqlx::query(
        "insert into cp_plan
         select c, id, council, category, started, ended, icpc, earlier,
                coalesce(string_to_array(nullif(reviews, ''), ',')::date[], '{}')
           from unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::date[], $6::date[], $7::date[],
                       $8::bool[], $9::text[])
             as t(c, id, council, category, started, ended, icpc, earlier, reviews)",
    )
    .bind(p.iter().map(|(c, _)| *c).collect::<Vec<_>>())
    .bind(p.iter().map(|(_, x)| x.plan_id.as_str()).collect::<Vec<_>>())
    .bind(p.iter().map(|(_, x)| x.council.as_str()).collect::<Vec<_>>())
    .bind(p.iter().map(|(_, x)| x.category.code()).collect::<Vec<_>>())
    .bind(p.iter().map(|(_, x)| x.started_on).collect::<Vec<_>>())
    .bind(p.iter().map(|(_, x)| x.ended_on).collect::<Vec<_>>())
    .bind(p.iter().map(|(_, x)| x.icpc_on).collect::<Vec<_>>())
    .bind(p.iter().map(|(_, x)| x.earlier_plan).collect::<Vec<_>>())
    .bind(
        p.iter()
            .map(|(_, x)| x.reviews.iter().map(NaiveDate::to_string).collect::<Vec<_>>().join(","))
            .collect::<Vec<_>>(),
    )
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Writes `allocation` rows in one statement.
async fn insert_allocations(
    tx: &mut Transaction<'_, Postgres>,
    a: &[(uuid::Uuid, i32, uuid::Uuid, casework::facts::Allocation)],
) -> Result<(), sqlx::Error> {
    if a.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "insert into allocation select * from unnest($1::uuid[], $2::int[], $3::uuid[], $4::text[], $5::text[],
            $6::timestamptz[], $7::date[], $8::date[])",
    )
    .bind(a.iter().map(|(c, _, _, _)| *c).collect::<Vec<_>>())
    .bind(a.iter().map(|(_, i, _, _)| *i).collect::<Vec<_>>())
    .bind(a.iter().map(|(_, _, w, _)| *w).collect::<Vec<_>>())
    .bind(a.iter().map(|(_, _, _, x)| x.team_id.as_str()).collect::<Vec<_>>())
    .bind(a.iter().map(|(_, _, _, x)| x.council.as_str()).collect::<Vec<_>>())
    .bind(a.iter().map(|(_, _, _, x)| x.allocated_at).collect::<Vec<DateTime<Utc>>>())
    .bind(a.iter().map(|(_, _, _, x)| x.from_on).collect::<Vec<_>>())
    .bind(a.iter().map(|(_, _, _, x)| x.to_on).collect::<Vec<_>>())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Writes `sighting` rows in one statement.
async fn insert_sightings(
    tx: &mut Transaction<'_, Postgres>,
    s: &[(uuid::Uuid, i32, casework::facts::Sighting)],
) -> Result<(), sqlx::Error> {
    if s.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "insert into sighting select * from unnest($1::uuid[], $2::int[], $3::timestamptz[], $4::date[],
            $5::bool[], $6::bool[])",
    )
    .bind(s.iter().map(|(c, _, _)| *c).collect::<Vec<_>>())
    .bind(s.iter().map(|(_, i, _)| *i).collect::<Vec<_>>())
    .bind(s.iter().map(|(_, _, x)| x.seen_at).collect::<Vec<_>>())
    .bind(s.iter().map(|(_, _, x)| x.seen_on).collect::<Vec<_>>())
    .bind(s.iter().map(|(_, _, x)| x.statutory).collect::<Vec<_>>())
    .bind(s.iter().map(|(_, _, x)| x.alone).collect::<Vec<_>>())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Writes `quality_flag` rows in one statement.
async fn insert_flags(
    tx: &mut Transaction<'_, Postgres>,
    f: &[(uuid::Uuid, i32, casework::quality::Flag)],
) -> Result<(), sqlx::Error> {
    if f.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "insert into quality_flag select * from unnest($1::uuid[], $2::int[], $3::text[], $4::text[], $5::text[],
            $6::text[], $7::date[])",
    )
    .bind(f.iter().map(|(c, _, _)| *c).collect::<Vec<_>>())
    .bind(f.iter().map(|(_, i, _)| *i).collect::<Vec<_>>())
    .bind(f.iter().map(|(_, _, x)| x.council.as_str()).collect::<Vec<_>>())
    .bind(f.iter().map(|(_, _, x)| x.rule.code().to_owned()).collect::<Vec<_>>())
    .bind(f.iter().map(|(_, _, x)| x.reference.as_str()).collect::<Vec<_>>())
    .bind(f.iter().map(|(_, _, x)| x.detail.clone()).collect::<Vec<_>>())
    .bind(f.iter().map(|(_, _, x)| x.on).collect::<Vec<_>>())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn refold_workers(
    tx: &mut Transaction<'_, Postgres>,
    workers: &BTreeSet<uuid::Uuid>,
) -> Result<Changed, ApplyError> {
    let ids: Vec<uuid::Uuid> = workers.iter().copied().collect();
    let mut changed = Changed::default();
    let before = sqlx::query("delete from worker_spell where worker_id = any($1) returning council, team_id")
        .bind(&ids)
        .fetch_all(&mut **tx)
        .await?;
    for row in before {
        let council = parsed(&row, "council", CouncilCode::try_from)?;
        changed.teams.insert((council.clone(), parsed(&row, "team_id", LocalId::try_from)?));
        changed.councils.insert(council);
    }
    let subjects: Vec<String> = ids.iter().map(uuid::Uuid::to_string).collect();
    let mut rows: Vec<(uuid::Uuid, i32, casework::facts::WorkerSpell)> = Vec::new();
    for (subject, history) in histories(tx, "worker", &subjects).await? {
        let Ok(worker) = subject.parse::<uuid::Uuid>() else { continue };
        for (i, spell) in folded(&subject, || casework::facts::fold_worker(&history))?.into_iter().enumerate() {
            changed.councils.insert(spell.council.clone());
            changed.teams.insert((spell.council.clone(), spell.team_id.clone()));
            rows.push((worker, i32_of(i), spell));
        }
    }
    if !rows.is_empty() {
        sqlx::query(
            "insert into worker_spell select * from unnest($1::uuid[], $2::int[], $3::text[], $4::text[], $5::text[],
                $6::float8[], $7::bool[], $8::date[], $9::date[])",
        )
        .bind(rows.iter().map(|(w, _, _)| *w).collect::<Vec<_>>())
        .bind(rows.iter().map(|(_, i, _)| *i).collect::<Vec<_>>())
        .bind(rows.iter().map(|(_, _, s)| s.council.as_str()).collect::<Vec<_>>())
        .bind(rows.iter().map(|(_, _, s)| s.team_id.as_str()).collect::<Vec<_>>())
        .bind(rows.iter().map(|(_, _, s)| s.role.code()).collect::<Vec<_>>())
        .bind(rows.iter().map(|(_, _, s)| s.fte).collect::<Vec<_>>())
        .bind(rows.iter().map(|(_, _, s)| s.agency).collect::<Vec<_>>())
        .bind(rows.iter().map(|(_, _, s)| s.from_on).collect::<Vec<_>>())
        .bind(rows.iter().map(|(_, _, s)| s.to_on).collect::<Vec<_>>())
        .execute(&mut **tx)
        .await?;
    }
    Ok(changed)
}

async fn refold_councils(
    tx: &mut Transaction<'_, Postgres>,
    councils: &BTreeSet<CouncilCode>,
) -> Result<Changed, ApplyError> {
    let codes: Vec<String> = councils.iter().map(|c| c.as_str().to_owned()).collect();
    sqlx::query("delete from council_setting where council = any($1)").bind(&codes).execute(&mut **tx).await?;
    let mut rows: Vec<(String, casework::facts::CouncilSetting)> = Vec::new();
    for (council, history) in histories(tx, "council", &codes).await? {
        rows.extend(
            folded(&council, || casework::facts::fold_council(&history))?.into_iter().map(|s| (council.clone(), s)),
        );
    }
    if !rows.is_empty() {
        sqlx::query(
            "insert into council_setting select * from unnest($1::text[], $2::date[], $3::text[], $4::bigint[],
                $5::int[], $6::int[], $7::int[], $8::float8[], $9::int[], $10::int[], $11::int[], $12::int[], $13::int[],
                $14::int[])",
        )
        .bind(rows.iter().map(|(c, _)| c.clone()).collect::<Vec<_>>())
        .bind(rows.iter().map(|(_, s)| s.effective_from).collect::<Vec<_>>())
        .bind(rows.iter().map(|(_, s)| s.dfe_la_code.as_ref().map(|c| c.as_str())).collect::<Vec<_>>())
        .bind(rows.iter().map(|(_, s)| s.population_0_17).collect::<Vec<_>>())
        .bind(rows.iter().map(|(_, s)| s.assessment_timescale_days).collect::<Vec<_>>())
        .bind(rows.iter().map(|(_, s)| s.visit_interval_days).collect::<Vec<_>>())
        .bind(rows.iter().map(|(_, s)| s.caseload_threshold).collect::<Vec<_>>())
        .bind(rows.iter().map(|(_, s)| s.funded_social_worker_fte).collect::<Vec<_>>())
        .bind(rows.iter().map(|(_, s)| s.cin_visit_interval_days).collect::<Vec<_>>())
        .bind(rows.iter().map(|(_, s)| count(s.pattern_agencies)).collect::<Vec<_>>())
        .bind(rows.iter().map(|(_, s)| count(s.pattern_events)).collect::<Vec<_>>())
        .bind(rows.iter().map(|(_, s)| count(s.pattern_window_days)).collect::<Vec<_>>())
        .bind(rows.iter().map(|(_, s)| count(s.acknowledge_within_days)).collect::<Vec<_>>())
        .bind(rows.iter().map(|(_, s)| count(s.alert_lead_days)).collect::<Vec<_>>())
        .execute(&mut **tx)
        .await?;
    }
    Ok(Changed { councils: councils.clone(), ..Changed::default() })
}
