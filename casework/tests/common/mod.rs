//! What the property tests share: generated populations as the read
//! models hold them.

use casework::facts::{History, Recorded};
use chrono::DateTime;
use events::arbitrary::stored_data;
use events::calendar::business_date_of;
use events::ids::{EventId, PrincipalName};
use serde_json::Value;
use std::collections::BTreeMap;

/// Each subject's history as the read models keep it (in the stored form,
/// personal fields sealed), by subject.
pub fn histories(events: &[Value]) -> BTreeMap<String, History> {
    let mut out: BTreeMap<String, Vec<Recorded>> = BTreeMap::new();
    let source = "safeguard-admin";
    for (e, data) in events.iter().zip(stored_data(events, source)) {
        let data = data.unwrap_or_else(|| panic!("the generator made an event the catalogue refuses: {e}"));
        let subject = e["subject"].as_str().unwrap_or_default().to_owned();
        let time = DateTime::parse_from_rfc3339(e["time"].as_str().unwrap_or_default()).unwrap_or_default();
        let list = out.entry(subject).or_default();
        list.push(Recorded {
            sequence: list.len() as i64 + 1,
            event_id: EventId::parse(e["id"].as_str().unwrap_or_default()).expect("event id"),
            source: PrincipalName::parse(source).expect("principal"),
            occurred_at: time.to_utc(),
            business_date: business_date_of(&time),
            recorded_at: time.to_utc(),
            data,
            author_role: None,
            significant: None,
        });
    }
    out.into_iter().map(|(s, h)| (s, History::new(h).expect("a stored history folds"))).collect()
}
