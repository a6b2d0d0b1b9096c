//! The identifiers a lookup can find a child by, opened from a child's
//! sealed fields with the child's data key (the index itself, of keyed
//! digests, is written by `projections::identifiers`).

use crate::facts::Recorded;
use events::privacy::{DataKey, associated_data, open_value};
use serde_json::Value;
use std::collections::BTreeSet;

/// What kind of identifier a digest is of.
pub const NHS_NUMBER: &str = "nhs_number";

/// Event types that may carry an NHS number.
pub fn carries_identifiers(event_type: &str) -> bool {
    matches!(event_type, "child.registered" | "child.details_updated" | "record.corrected")
}

/// The NHS numbers recorded in a child's history (in registrations, detail
/// updates and corrections of them), opened with `key`. Pure.
pub fn nhs_numbers(subject: &str, history: &[Recorded], key: &DataKey) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for r in history {
        let (person, pointer) = match r.event_type.as_str() {
            "child.registered" | "child.details_updated" => (r.data.get("person"), "/data/person"),
            "record.corrected" => (r.data.get("data").and_then(|d| d.get("person")), "/data/data/person"),
            _ => continue,
        };
        let Some(sealed) = person else { continue };
        let aad = associated_data(subject, &r.source, &r.event_id, pointer);
        if let Ok(Value::Object(person)) = open_value(key, &aad, sealed)
            && let Some(number) = person.get("nhs_number").and_then(Value::as_str)
        {
            out.insert(number.to_owned());
        }
    }
    out
}
