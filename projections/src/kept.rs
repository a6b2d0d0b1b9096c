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

use casework::facts::{ChildFacts, History};
use std::collections::HashMap;
use std::sync::Mutex;

/// The events kept in memory at most, over all children: about a kilobyte
/// each decoded, so this bounds the copy near a hundred megabytes. The
/// children folded least recently are let go first.
pub const KEPT_EVENTS: usize = 100_000;

/// The rows a child's fold wrote, table by table: what the database holds
/// for it while the entry's stamp is current.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Rows {
    pub facts: ChildFacts,
    pub flags: Vec<casework::quality::Flag>,
    pub alerts: Vec<casework::alerts::Alert>,
    /// The child's indicator tallies, as `indicator_part` holds them.
    pub tallies: Vec<casework::tally::Tally>,
}

/// One child's kept fold.
#[derive(Debug)]
pub(crate) struct Entry {
    /// The `child_fold` stamp written with these rows.
    pub stamp: uuid::Uuid,
    pub history: History,
    pub rows: Rows,
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
    entries: HashMap<uuid::Uuid, (Entry, u64)>,
    events: usize,
    clock: u64,
}

impl Default for Kept {
    fn default() -> Self {
        Self::new(KEPT_EVENTS)
    }
}

impl Kept {
    /// A copy keeping at most `budget` events; 0 keeps nothing, so every
    /// batch folds its children from their whole histories.
    pub fn new(budget: usize) -> Self {
        Self { budget, inner: Mutex::new(Inner::default()) }
    }

    /// Takes the entries of `children` out of the copy: the batch folding
    /// them puts back what it wrote ([`Kept::keep`]), and a batch that
    /// fails leaves nothing behind to be trusted.
    pub(crate) fn take(&self, children: impl IntoIterator<Item = uuid::Uuid>) -> HashMap<uuid::Uuid, Entry> {
        let mut inner = self.lock();
        let mut out = HashMap::new();
        for child in children {
            if let Some((entry, _)) = inner.entries.remove(&child) {
                inner.events -= entry.history.len();
                out.insert(child, entry);
            }
        }
        out
    }

    /// Keeps what a batch wrote, letting the least recently folded go
    /// beyond the budget.
    pub(crate) fn keep(&self, entries: impl IntoIterator<Item = (uuid::Uuid, Entry)>) {
        if self.budget == 0 {
            return;
        }
        let mut inner = self.lock();
        for (child, entry) in entries {
            // A history larger than the whole budget would only push every
            // other child out, then itself.
            if entry.history.len() > self.budget {
                continue;
            }
            inner.clock += 1;
            inner.events += entry.history.len();
            let clock = inner.clock;
            if let Some((old, _)) = inner.entries.insert(child, (entry, clock)) {
                inner.events -= old.history.len();
            }
        }
        if inner.events > self.budget {
            // Down to three quarters, so that letting go is not paid on every batch.
            let mut by_age: Vec<(u64, uuid::Uuid, usize)> =
                inner.entries.iter().map(|(c, (e, used))| (*used, *c, e.history.len())).collect();
            by_age.sort_unstable();
            let target = self.budget / 4 * 3;
            for (_, child, events) in by_age {
                if inner.events <= target {
                    break;
                }
                inner.entries.remove(&child);
                inner.events -= events;
            }
        }
    }

    /// Lets every entry go: for a change to the copy made outside the
    /// children's own batches, such as events removed by a reconciliation,
    /// which a kept history would otherwise still hold.
    pub fn clear(&self) {
        let mut inner = self.lock();
        inner.entries.clear();
        inner.events = 0;
    }

    /// Children and events kept now.
    pub fn size(&self) -> (usize, usize) {
        let inner = self.lock();
        (inner.entries.len(), inner.events)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while the lock was held left at worst an entry too many
        // or too few, which the stamps make harmless.
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
