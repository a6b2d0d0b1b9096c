//! Change notifications for dashboard teams: after batches commit, each
//! council whose indicators changed and each team whose caseload changed is
//! announced on core NATS (subjects in `events::subjects`), with the same
//! JSON the query API returns.
//!
//! Why debounced: a bulk load commits many batches a second, and
//! recomputing a council's indicators after every one would cost more than
//! applying the batch. Marks are gathered and flushed every `interval`; a
//! document is published only when it differs from the last one published
//! for that subject, so subscribers see changes, not heartbeats. After a
//! restart the first flush of each subject is published again: a
//! subscriber may see one repeat, never a gap.
//!
//! Alerts change with time as well as with events: a clock folded ahead
//! is raised when its day comes, and an alert not acknowledged escalates.
//! So every flush also sweeps `alert` for what time alone raised,
//! escalated or closed since the last sweep (from a day before the start,
//! after a restart), and announces those teams' counts too.

use crate::refold::Changed;
use crate::{caseload, indicators};
use casework::indicators::Period;
use chrono::{DateTime, NaiveDate, Utc};
use events::calendar::business_date;
use events::ids::{CouncilCode, LocalId};
use events::subjects::{alerts_change_subject, caseload_change_subject, indicators_change_subject};
use sqlx::PgPool;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Clone, Default)]
struct Dirty {
    /// Council to the financial years (by first calendar year) to recompute.
    councils: BTreeMap<CouncilCode, BTreeSet<i32>>,
    teams: BTreeSet<(CouncilCode, LocalId)>,
    alerts: BTreeSet<(CouncilCode, Option<LocalId>)>,
}

impl Dirty {
    fn is_empty(&self) -> bool {
        self.councils.is_empty() && self.teams.is_empty() && self.alerts.is_empty()
    }
}

/// Marks what changed; a background task publishes it.
#[derive(Debug, Clone, Default)]
pub struct Notifier {
    dirty: Arc<Mutex<Dirty>>,
}

impl Notifier {
    /// Marks what a committed batch changed.
    pub fn mark(&self, changed: &Changed, years: &BTreeSet<i32>) {
        let Ok(mut dirty) = self.dirty.lock() else { return };
        for council in &changed.councils {
            dirty.councils.entry(council.clone()).or_default().extend(years.iter().copied());
        }
        dirty.teams.extend(changed.teams.iter().cloned());
        dirty.alerts.extend(changed.alerts.iter().cloned());
    }

    fn take(&self) -> Dirty {
        self.dirty.lock().map(|mut d| std::mem::take(&mut *d)).unwrap_or_default()
    }

    /// Puts back what a failed flush took, for the next one.
    fn restore(&self, taken: Dirty) {
        let Ok(mut dirty) = self.dirty.lock() else { return };
        for (council, years) in taken.councils {
            dirty.councils.entry(council).or_default().extend(years);
        }
        dirty.teams.extend(taken.teams);
        dirty.alerts.extend(taken.alerts);
    }

    /// Publishes what was marked, every `interval`, until the task is dropped.
    pub async fn run(self, client: async_nats::Client, pool: PgPool, interval: Duration, now: fn() -> DateTime<Utc>) {
        let mut last: HashMap<String, Vec<u8>> = HashMap::new();
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut swept = now() - chrono::TimeDelta::days(1);
        loop {
            tick.tick().await;
            let at = now();
            match crate::alerts::changed_between(&pool, swept, at).await {
                Ok(teams) => {
                    self.mark(&Changed { alerts: teams, ..Changed::default() }, &BTreeSet::new());
                    swept = at;
                }
                Err(e) => tracing::warn!(error = &e as &dyn std::error::Error, "could not sweep the alerts"),
            }
            let dirty = self.take();
            if dirty.is_empty() {
                continue;
            }
            if let Err(e) = publish(&client, &pool, dirty.clone(), at, &mut last).await {
                tracing::warn!(error = &e as &dyn std::error::Error, "could not publish change notifications");
                self.restore(dirty);
            }
        }
    }
}

async fn publish(
    client: &async_nats::Client,
    pool: &PgPool,
    dirty: Dirty,
    now: DateTime<Utc>,
    last: &mut HashMap<String, Vec<u8>>,
) -> Result<(), NotifyError> {
    let today = business_date(&now);
    let current = Period::containing(today);
    for (council, years) in dirty.councils {
        let mut periods: BTreeSet<i32> = years;
        periods.insert(chrono::Datelike::year(&current.from));
        for year in periods {
            let Some(from) = NaiveDate::from_ymd_opt(year, 4, 1) else { continue };
            let period = Period::containing(from);
            let doc = indicators::document(pool, &council, period, today).await?;
            let subject = indicators_change_subject(council.as_str(), &doc.period);
            send(client, subject, serde_json::to_vec(&doc)?, last).await?;
        }
    }
    let mut by_council: BTreeMap<CouncilCode, Vec<LocalId>> = BTreeMap::new();
    for (council, team) in dirty.teams {
        by_council.entry(council).or_default().push(team);
    }
    for (council, teams) in by_council {
        let loads = caseload::council(pool, &council, today).await?;
        for team in teams {
            let subject = caseload_change_subject(council.as_str(), team.as_str());
            send(client, subject, serde_json::to_vec(&loads.team(&team))?, last).await?;
        }
    }
    let mut alerts: BTreeMap<CouncilCode, BTreeSet<Option<LocalId>>> = BTreeMap::new();
    for (council, team) in dirty.alerts {
        alerts.entry(council).or_default().insert(team);
    }
    for (council, teams) in alerts {
        let waiting = crate::alerts::waiting(pool, &council, now).await?;
        for team in teams {
            let mine: Vec<(&Option<uuid::Uuid>, &crate::alerts::Waiting)> =
                waiting.iter().filter(|((t, _), _)| *t == team).map(|((_, w), n)| (w, n)).collect();
            let workers: Vec<serde_json::Value> = mine
                .iter()
                .map(|(worker, w)| serde_json::json!({"worker": worker, "open": w.open, "escalated": w.escalated}))
                .collect();
            let doc = serde_json::json!({
                "council": council, "team": team, "at": now,
                "open": mine.iter().map(|(_, w)| w.open).sum::<i64>(),
                "escalated": mine.iter().map(|(_, w)| w.escalated).sum::<i64>(),
                "workers": workers,
            });
            let subject = alerts_change_subject(council.as_str(), team.as_ref().map(LocalId::as_str));
            send(client, subject, serde_json::to_vec(&doc)?, last).await?;
        }
    }
    client.flush().await.map_err(|e| NotifyError::Nats(e.into()))?;
    Ok(())
}

async fn send(
    client: &async_nats::Client,
    subject: String,
    payload: Vec<u8>,
    last: &mut HashMap<String, Vec<u8>>,
) -> Result<(), NotifyError> {
    if last.get(&subject) == Some(&payload) {
        return Ok(());
    }
    client.publish(subject.clone(), payload.clone().into()).await.map_err(|e| NotifyError::Nats(e.into()))?;
    last.insert(subject, payload);
    Ok(())
}

/// Why a flush of notifications failed; its marks are kept for the next one.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("encoding: {0}")]
    Json(#[from] serde_json::Error),
    #[error("NATS did not take the notification")]
    Nats(#[source] Box<dyn std::error::Error + Send + Sync>),
}
