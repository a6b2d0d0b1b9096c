//! Who is involved with a child: every agency that has recorded anything
//! about it (first and last dates, counts by event type), the worker who
//! holds the case, and the professionals who have seen the child. Pure:
//! from the child's history as it now stands (amendments applied, a
//! retracted entry not counted) and its folded facts; the query role names
//! agencies and people from `principals.toml` and their own records.
//!
//! Why it exists: in 2007 the fragments sat with agencies that did not
//! know of each other. The first question a worker asks of a new case is
//! who else knows this child.

use crate::facts::{ChildFacts, History, effective};
use chrono::{DateTime, NaiveDate, Utc};
use events::ids::{LocalId, PrincipalName, WorkerId};
use events::{EventData, EventType};
use std::collections::BTreeMap;

/// One agency's part: what it recorded, and over what span.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgencyPart {
    pub publisher: PrincipalName,
    pub first_on: NaiveDate,
    pub last_on: NaiveDate,
    pub counts: BTreeMap<EventType, u32>,
}

/// Someone who has seen the child (`child.seen`'s `seen_by`: a worker's id,
/// or another professional's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seer {
    pub seen_by: LocalId,
    /// The publisher that recorded the sightings (their agency).
    pub publisher: PrincipalName,
    /// The agency the sighting names, if it named one.
    pub agency: Option<String>,
    pub first_on: NaiveDate,
    pub last_on: NaiveDate,
    /// When they first saw the child: the order they are listed in.
    pub first_at: DateTime<Utc>,
    pub times: u32,
    /// The contexts seen in (`statutory_visit`, `health`...), each once.
    pub contexts: Vec<&'static str>,
}

/// The case's holder now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub worker: WorkerId,
    pub team: LocalId,
    pub since: NaiveDate,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Involvement {
    /// By first involvement, then publisher.
    pub agencies: Vec<AgencyPart>,
    pub allocated: Option<Holder>,
    /// By first sighting, then id.
    pub seen_by: Vec<Seer>,
}

pub fn involvement(history: &History, facts: &ChildFacts) -> Involvement {
    let sources: BTreeMap<i64, &PrincipalName> = history.iter().map(|r| (r.sequence, &r.source)).collect();
    let mut agencies: BTreeMap<&PrincipalName, AgencyPart> = BTreeMap::new();
    let mut seers: BTreeMap<(&LocalId, &PrincipalName), Seer> = BTreeMap::new();
    for f in effective(history) {
        let Some(source) = sources.get(&f.sequence).copied() else { continue };
        let part = agencies.entry(source).or_insert_with(|| AgencyPart {
            publisher: source.clone(),
            first_on: f.on,
            last_on: f.on,
            counts: BTreeMap::new(),
        });
        part.first_on = part.first_on.min(f.on);
        part.last_on = part.last_on.max(f.on);
        *part.counts.entry(f.event_type()).or_default() += 1;
        if let EventData::ChildSeen(d) = f.data {
            let seer = seers.entry((&d.seen_by, source)).or_insert_with(|| Seer {
                seen_by: d.seen_by.clone(),
                publisher: source.clone(),
                agency: None,
                first_on: f.on,
                last_on: f.on,
                first_at: f.at,
                times: 0,
                contexts: Vec::new(),
            });
            seer.first_on = seer.first_on.min(f.on);
            seer.first_at = seer.first_at.min(f.at);
            seer.last_on = seer.last_on.max(f.on);
            seer.times += 1;
            if let Some(agency) = &d.agency {
                seer.agency = Some(agency.as_str().to_owned());
            }
            if !seer.contexts.contains(&d.context.code()) {
                seer.contexts.push(d.context.code());
            }
        }
    }
    let mut agencies: Vec<AgencyPart> = agencies.into_values().collect();
    agencies.sort_by(|a, b| (a.first_on, &a.publisher).cmp(&(b.first_on, &b.publisher)));
    let mut seen_by: Vec<Seer> = seers.into_values().collect();
    seen_by.sort_by(|a, b| (a.first_at, &a.seen_by).cmp(&(b.first_at, &b.seen_by)));
    let allocated = facts.allocations.iter().rev().find(|a| a.to_on.is_none()).map(|a| Holder {
        worker: a.worker_id,
        team: a.team_id.clone(),
        since: a.from_on,
    });
    Involvement { agencies, allocated, seen_by }
}
