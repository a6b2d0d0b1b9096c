//! The identifiers a lookup can find a child by, opened from a child's
//! sealed fields with the child's data key (the index itself, of keyed
//! digests, is written by `projections::identifiers`).

use crate::facts::History;
use events::EventData;
use events::catalogue::CorrectedData;
use events::privacy::{DataKey, associated_data};
use std::collections::BTreeSet;

/// What kind of identifier a digest is of.
pub const NHS_NUMBER: &str = "nhs_number";

/// Whether an event may carry an NHS number: a registration, a details
/// update, or a correction (of one of those).
pub fn carries_identifiers(data: &EventData) -> bool {
    matches!(data, EventData::ChildRegistered(_) | EventData::ChildDetailsUpdated(_) | EventData::RecordCorrected(_))
}

/// The NHS numbers recorded in a child's history (in registrations, detail
/// updates and corrections of them), opened with `key`. Pure.
pub fn nhs_numbers(subject: &str, history: &History, key: &DataKey) -> BTreeSet<String> {
    let person_of = |data: &EventData| match data {
        EventData::ChildRegistered(d) => d.person.clone(),
        EventData::ChildDetailsUpdated(d) => d.person.clone(),
        _ => None,
    };
    let mut out = BTreeSet::new();
    for r in history.iter() {
        let (person, pointer) = match &r.data {
            EventData::RecordCorrected(c) => match &c.data {
                CorrectedData::Resolved(data) => (person_of(data), "/data/data/person"),
                CorrectedData::Unresolved(_) => continue,
            },
            data => (person_of(data), "/data/person"),
        };
        let Some(person) = person else { continue };
        let aad = associated_data(subject, r.source.as_str(), r.event_id.as_str(), pointer);
        if let Some(number) = person.opened(key, &aad).and_then(|p| p.nhs_number) {
            out.insert(number.as_str().to_owned());
        }
    }
    out
}
