//! The narrative of a child's full record: what each agency wrote with an
//! event (`summary`, `reason`, `purpose`) and the people it names, opened
//! with the child's data key at read time for a principal entitled to the
//! record. Pure: the stored history (personal fields sealed) and the key
//! go in; the text comes out, and is never stored anywhere: read-model
//! tables hold codes only.
//!
//! After erasure (no key) an event that carried free text says so instead.

use crate::anonymise::{Opener, data_objects, free_text};
use crate::facts::{History, Recorded};
use events::EventData;
use events::catalogue::{ChildDetailsUpdated, ChildRegistered};
use events::ids::Label;
use events::privacy::DataKey;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// What one event says in words.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Narrative {
    /// Free text by field (`summary`, `reason`, `purpose`), as written.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub text: Vec<Said>,
    /// The people the event names, by name and part ("Jane Smith (child)",
    /// "Mary Smith (mother)").
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub people: Vec<String>,
    /// The event carried personal data that no longer opens: the child's
    /// data key was erased.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub erased: bool,
}

/// One free-text field of an event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Said {
    pub field: String,
    pub text: String,
}

impl Narrative {
    pub fn is_empty(&self) -> bool {
        self.text.is_empty() && self.people.is_empty() && !self.erased
    }

    /// One line for a table cell: the text, then the people; or that it was erased.
    pub fn line(&self) -> String {
        if self.erased && self.text.is_empty() {
            return "[erased]".to_owned();
        }
        let mut parts: Vec<String> = self.text.iter().map(|s| s.text.clone()).collect();
        if !self.people.is_empty() {
            parts.push(format!("People: {}", self.people.join("; ")));
        }
        parts.join(" / ")
    }
}

/// Who a publisher is, as people name it: from principals.toml.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Agency {
    pub name: String,
    /// The agency kind's code (`police`, `health`, ...).
    pub kind: String,
}

impl Agency {
    /// "Metropolitan Police (police)".
    pub fn line(&self) -> String {
        let kind = events::codes::AgencyKind::from_code(&self.kind).map_or(self.kind.as_str(), |k| k.label());
        format!("{} ({kind})", self.name)
    }
}

/// Agencies by publisher (principal) name.
pub type Agencies = HashMap<String, Agency>;

/// A professional as the full record names them: their name (sealed in
/// their own record, opened with their key), role and agency.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Professional {
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub role: Option<events::codes::WorkerRole>,
    pub agency: Option<String>,
}

impl Professional {
    /// "Jo Smith, social worker, Haringey children's services".
    pub fn line(&self) -> Option<String> {
        let name = name(self.given_name.as_deref(), self.family_name.as_deref())?;
        let mut parts = vec![name];
        parts.extend(self.role.map(|r| r.label().to_owned()));
        parts.extend(self.agency.clone());
        Some(parts.join(", "))
    }
}

/// Professionals by worker id.
pub type Professionals = HashMap<String, Professional>;

/// A worker's name from their own history (`worker.joined`, then any
/// `worker.changed` that renames them), opened with their key.
pub fn professional_name(
    worker: uuid::Uuid,
    history: &History,
    key: Option<&DataKey>,
) -> (Option<String>, Option<String>) {
    let opener = Opener { subject: worker.to_string(), key };
    let mut names = (None, None);
    for r in history.iter() {
        let person = match &r.data {
            EventData::WorkerJoined(d) => d.person.as_ref(),
            EventData::WorkerChanged(d) => d.person.as_ref(),
            _ => None,
        };
        if let Some(p) = person.and_then(|p| opener.open(r, "/data", "person", p)) {
            names = (p.given_name.map(|g| g.as_str().to_owned()), p.family_name.map(|f| f.as_str().to_owned()));
        }
    }
    names
}

/// Narratives by (publisher, event id).
pub type Narratives = HashMap<(String, String), Narrative>;

/// The narrative of `entry`, if it has one.
pub fn of<'a>(narratives: &'a Narratives, entry: &crate::chronology::Entry) -> Option<&'a Narrative> {
    narratives.get(&(entry.source.as_str().to_owned(), entry.id.as_str().to_owned()))
}

/// An entry's reference for ever: its place in the child's own history
/// (the subject's sequence), which a late fact never changes, unlike its
/// serial (its place in date order).
pub fn reference(entry: &crate::chronology::Entry) -> String {
    reference_of(entry.sequence.max(0) as u64)
}

/// The reference of the event at `sequence` in the child's history.
pub fn reference_of(sequence: u64) -> String {
    format!("E{sequence}")
}

/// The narrative of every event of `history` that has any, by (publisher, event id).
pub fn narratives(
    child: uuid::Uuid,
    history: &History,
    key: Option<&DataKey>,
    professionals: &Professionals,
) -> Narratives {
    let opener = Opener { subject: child.to_string(), key };
    history
        .iter()
        .filter_map(|r| {
            let mut n = narrative(r, &opener);
            // Who did it, by name: the worker a case went to, whoever saw the child.
            let worker = match &r.data {
                EventData::CaseAllocated(d) => Some(d.worker_id.to_string()),
                EventData::CaseDeallocated(d) => Some(d.worker_id.to_string()),
                EventData::ChildSeen(d) => Some(d.seen_by.as_str().to_owned()),
                _ => None,
            };
            if let Some(line) = worker.and_then(|w| professionals.get(&w)).and_then(Professional::line) {
                n.people.push(line);
            }
            (!n.is_empty()).then(|| ((r.source.as_str().to_owned(), r.event_id.as_str().to_owned()), n))
        })
        .collect()
}

fn name(given: Option<&str>, family: Option<&str>) -> Option<String> {
    let parts: Vec<&str> = [given, family].into_iter().flatten().map(str::trim).filter(|p| !p.is_empty()).collect();
    (!parts.is_empty()).then(|| parts.join(" "))
}

fn narrative(r: &Recorded, opener: &Opener<'_>) -> Narrative {
    use EventData as D;
    let mut n = Narrative::default();
    let mut sealed_unopened = false;
    for (data, root) in data_objects(r) {
        for (field, text) in free_text(data) {
            match opener.open(r, root, field, text) {
                Some(t) => n.text.push(Said { field: field.to_owned(), text: t.as_str().to_owned() }),
                None => sealed_unopened = true,
            }
        }
        // A person the event names, and their part: the child, or a relative by role.
        let labelled = |given: Option<&Label>, family: Option<&Label>, part: &str| {
            name(given.map(Label::as_str), family.map(Label::as_str)).map(|n| format!("{n} ({part})"))
        };
        let person = match data {
            D::ChildRegistered(ChildRegistered { person: Some(p), .. })
            | D::ChildDetailsUpdated(ChildDetailsUpdated { person: Some(p), .. }) => Some(
                opener
                    .open(r, root, "person", p)
                    .and_then(|p| labelled(p.given_name.as_ref(), p.family_name.as_ref(), "child")),
            ),
            D::RelationshipRecorded(d) => d.person.as_ref().map(|p| {
                let part = d.role.label().to_lowercase();
                opener
                    .open(r, root, "person", p)
                    .and_then(|p| labelled(p.given_name.as_ref(), p.family_name.as_ref(), &part))
            }),
            _ => None,
        };
        match person {
            Some(Some(p)) => n.people.push(p),
            Some(None) => sealed_unopened = true,
            None => {}
        }
    }
    n.erased = sealed_unopened && opener.key.is_none();
    n
}
