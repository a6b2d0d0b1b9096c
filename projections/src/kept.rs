//! Children's histories kept between batches, with the rows last written
//! from them, so that a batch folds each child it touches from what it
//! already holds: it reads only the child's new events and writes only the
//! rows that changed. Without it every batch read, decoded and rewrote a
//! child's whole history, and a child with thousands of events (a baby on a
//! plan visited daily for years) made the projector slower with every event.
//!
//! The copy is an optimisation and never an authority: each refold of a
//! child writes a fresh stamp to `child_fold` in its transaction, and an
//! entry is used only while its stamp is the one the database holds. A
//! batch rolled back, another process's refold (a partition handed over,
//! a council's settings drained), a rebuild switched in, or a
//! reconciliation (which clears the whole copy, see [`Kept::clear`]) each
//! leave the stamps unequal, and the child is then read and written afresh
//! from its whole history, as without the copy.

use casework::facts::{ChildFacts, CouncilSetting, History, HistoryError};
use chrono::NaiveDate;
use events::ids::{ChildId, CouncilCode};
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

/// What the copy keeps at most, over all children, in units of
/// [`Entry::weight`]: an event, a row or a child, each a few hundred bytes
/// decoded (`heap` in the tests crate measures it), so this bounds
/// the copy under a hundred megabytes. The children folded least recently
/// are let go first.
pub const KEPT_WEIGHT: usize = 100_000;

/// The rows a child's fold wrote, table by table: what the database holds
/// for it while the entry's stamp is current.
#[derive(Debug, Clone, PartialEq)]
pub struct Rows {
    pub facts: ChildFacts,
    pub flags: Vec<casework::quality::Flag>,
    pub alerts: Vec<casework::alerts::Alert>,
    /// The child's indicator tallies, as `indicator_part` holds them.
    pub tallies: Vec<casework::tally::Tally>,
}

impl Rows {
    /// A child's rows, folded from its whole history under the councils'
    /// settings: the pure part of a refold.
    pub fn fold(
        child: uuid::Uuid,
        history: &History,
        settings: &BTreeMap<CouncilCode, Vec<CouncilSetting>>,
    ) -> Result<Self, HistoryError> {
        let calendar = events::calendar::Calendar::england_and_wales();
        let facts = casework::facts::fold_child(history)?;
        let tallies = casework::tally::tallies(&facts, settings, calendar);
        let census = casework::cin::fold(history, NaiveDate::MAX, calendar);
        let mut flags = casework::quality::flags(&census);
        // In a fixed order, so the rows do not depend on the order the events arrived in.
        flags.sort_by(|a, b| (a.rule, &a.reference, a.on, &a.detail).cmp(&(b.rule, &b.reference, b.on, &b.detail)));
        let alerts = casework::alerts::fold(ChildId::from_uuid(child), history, &facts, settings, calendar);
        Ok(Self { facts, flags, alerts, tallies })
    }
}

/// One child's kept fold.
#[derive(Debug)]
pub struct Entry {
    /// The `child_fold` stamp written with these rows.
    pub stamp: uuid::Uuid,
    pub history: History,
    pub rows: Rows,
}

impl Entry {
    /// What the entry costs the budget: one for each event and each row,
    /// and one for what every child holds however short its history (its
    /// status, stamp and place in the map). Counted in events alone, the
    /// rows and the child were free: a child registered and not yet heard
    /// of again cost 994 bytes an event against 594 for a seeded history
    /// (`tests/heap.rs`), and beside a long rebuild, with a trickle
    /// of new children, a live projector grew from 183 to 218 MiB and was
    /// still rising (docs/benchmarks.md).
    pub fn weight(&self) -> usize {
        let (facts, rows) = (&self.rows.facts, &self.rows);
        1 + self.history.len()
            + facts.referrals.len()
            + facts.assessments.len()
            + facts.section47s.len()
            + facts.icpcs.len()
            + facts.plans.len()
            + facts.allocations.len()
            + facts.sightings.len()
            + facts.reviews.len()
            + rows.flags.len()
            + rows.alerts.len()
            + rows.tallies.len()
    }
}

/// The kept folds of one projector process. Shared by its batches, which
/// follow one another, so the lock is never held across a wait.
#[derive(Debug)]
pub struct Kept {
    budget: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Each child's entry, its weight and when it was last kept. Boxed: an
    /// entry is several hundred bytes before anything it points to, and
    /// the map holds its values inline in one table sized to a power of
    /// two, so its empty slots cost as much as full ones, and while it
    /// doubles it holds both tables.
    entries: HashMap<uuid::Uuid, (Box<Entry>, usize, u64)>,
    weight: usize,
    clock: u64,
}

impl Default for Kept {
    fn default() -> Self {
        Self::new(KEPT_WEIGHT)
    }
}

impl Kept {
    /// A copy keeping at most `budget` of weight; 0 keeps nothing, so every
    /// batch folds its children from their whole histories.
    pub fn new(budget: usize) -> Self {
        Self { budget, inner: Mutex::new(Inner::default()) }
    }

    /// Takes the entries of `children` out of the copy: the batch folding
    /// them puts back what it wrote ([`Kept::keep`]), and a batch that
    /// fails leaves nothing behind to be trusted.
    pub fn take(&self, children: impl IntoIterator<Item = uuid::Uuid>) -> HashMap<uuid::Uuid, Entry> {
        let mut inner = self.lock();
        let mut out = HashMap::new();
        for child in children {
            if let Some((entry, weight, _)) = inner.entries.remove(&child) {
                inner.weight -= weight;
                out.insert(child, *entry);
            }
        }
        out
    }

    /// Keeps what a batch wrote, letting the least recently folded go
    /// beyond the budget.
    pub fn keep(&self, entries: impl IntoIterator<Item = (uuid::Uuid, Entry)>) {
        if self.budget == 0 {
            return;
        }
        let mut inner = self.lock();
        for (child, entry) in entries {
            let weight = entry.weight();
            // A fold heavier than the whole budget would only push every
            // other child out, then itself.
            if weight > self.budget {
                continue;
            }
            inner.clock += 1;
            inner.weight += weight;
            let clock = inner.clock;
            if let Some((_, old, _)) = inner.entries.insert(child, (Box::new(entry), weight, clock)) {
                inner.weight -= old;
            }
        }
        if inner.weight > self.budget {
            // Down to three quarters, so that letting go is not paid on every batch.
            let mut by_age: Vec<(u64, uuid::Uuid, usize)> =
                inner.entries.iter().map(|(c, (_, weight, used))| (*used, *c, *weight)).collect();
            by_age.sort_unstable();
            let target = self.budget / 4 * 3;
            for (_, child, weight) in by_age {
                if inner.weight <= target {
                    break;
                }
                inner.entries.remove(&child);
                inner.weight -= weight;
            }
        }
    }

    /// Lets every entry go: for a change to the copy made outside the
    /// children's own batches, such as events removed by a reconciliation,
    /// which a kept history would otherwise still hold.
    pub fn clear(&self) {
        let mut inner = self.lock();
        inner.entries.clear();
        inner.weight = 0;
    }

    /// Children kept now, and their weight.
    pub fn size(&self) -> (usize, usize) {
        let inner = self.lock();
        (inner.entries.len(), inner.weight)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while the lock was held left at worst an entry too many
        // or too few, which the stamps make harmless.
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
