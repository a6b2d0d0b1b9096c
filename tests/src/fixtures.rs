//! Events for tests, written as an agency system would send them.

use serde_json::{Value, json};

/// A CloudEvent with the given id, type, subject, business time and data.
pub fn event(id: &str, t: &str, subject: &str, time: &str, data: Value) -> Value {
    json!({"specversion": "1.0", "id": id, "type": t, "subject": subject, "time": time, "data": data})
}

/// `council.configured` for the example council (`events::examples::COUNCIL`)
/// at `time`, with the example settings but an assessment timescale of
/// `days`: each such event queues every child of the council to be folded
/// again under it.
pub fn configured(id: &str, time: &str, days: u32) -> Value {
    let mut e = events::examples::event(events::EventType::CouncilConfigured, id, time);
    e["data"]["assessment_timescale_days"] = json!(days);
    e
}

/// `child.registered` on 2 January 2024 with the local id `L` and the
/// child id's first eight characters, a girl born 4 March 2019.
pub fn registered(id: &str, child: &str, council: &str) -> Value {
    event(
        id,
        "child.registered",
        child,
        "2024-01-02T10:00:00Z",
        json!({"council": council, "la_child_id": format!("L{}", &child[..8]), "sex": "F", "birth_date": "2019-03-04"}),
    )
}
