//! The published JSON Schemas against the parser the gateway runs: each
//! type's example is valid, and for examples mutated at random (a field
//! removed, added, or given another value) the schema and the parser give
//! the same verdict, but where the parser checks what no schema can say.
//! Validated with the `jsonschema` crate, as a client generated from the
//! schemas would validate.

use chrono::{DateTime, Utc};
use events::{EventType, examples, parse_received, schema};
use jsonschema::Validator;
use proptest::prelude::*;
use serde_json::{Value, json};
use std::path::PathBuf;

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2025-06-01T12:00:00Z").expect("time").with_timezone(&Utc)
}

fn validator(event_type: EventType) -> Validator {
    jsonschema::options()
        .should_validate_formats(true)
        .build(&schema::document(event_type))
        .unwrap_or_else(|e| panic!("{}: the schema does not compile: {e}", event_type.name()))
}

fn example(event_type: EventType) -> Value {
    examples::event(event_type, "ev-1", "2025-01-14T09:30:00Z")
}

/// Problems the parser finds that a JSON Schema cannot express: a check
/// digit or letter, a time relative to the receiving clock. The schema's
/// descriptions name each. A disagreement is allowed only when every
/// problem the parser reports is one of these.
const BEYOND_A_SCHEMA: &[&str] = &["check digit", "check letter", "no check digit is possible", "in the future"];

fn schemas_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("schemas")
}

#[test]
fn the_committed_schemas_are_the_generated_ones() {
    // `SAFEGUARD_WRITE_SCHEMAS=1 cargo test -p events --test schemas`
    // rewrites them after a catalogue change.
    let write = std::env::var_os("SAFEGUARD_WRITE_SCHEMAS").is_some();
    let dir = schemas_dir();
    let mut stale = Vec::new();
    for (name, document) in EventType::documents() {
        let path = dir.join(format!("{name}.json"));
        let text = serde_json::to_string_pretty(&document).expect("json") + "\n";
        if write {
            std::fs::create_dir_all(&dir).expect("schemas dir");
            std::fs::write(&path, &text).expect("write schema");
        } else if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
            stale.push(name);
        }
    }
    let committed = std::fs::read_dir(&dir).map(|d| d.count()).unwrap_or(0);
    assert!(
        stale.is_empty(),
        "events/schemas/ differs from the catalogue for {stale:?}: run SAFEGUARD_WRITE_SCHEMAS=1 cargo test -p events --test schemas"
    );
    assert_eq!(committed, EventType::ALL.len(), "events/schemas/ holds a file for no event type");
}

#[test]
fn every_schema_is_a_valid_draft_2020_12_schema() {
    for &event_type in EventType::ALL {
        let document = schema::document(event_type);
        if let Err(e) = jsonschema::meta::validate(&document) {
            panic!("{}: {e}", event_type.name());
        }
    }
}

#[test]
fn every_example_is_valid_against_its_schema() {
    for &event_type in EventType::ALL {
        let event = example(event_type);
        assert!(parse_received(&event, now()).is_ok(), "{}: the example itself", event_type.name());
        let errors: Vec<String> = validator(event_type).iter_errors(&event).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{}: {errors:?}", event_type.name());
    }
}

/// The verdicts of the parser and the schema on one event; `None` when
/// they agree (or disagree only where a schema cannot reach).
fn disagreement(event_type: EventType, validator: &Validator, event: &Value) -> Option<String> {
    verdicts(event_type, validator, event).1
}

/// Whether the parser took `event`, and the disagreement if any.
fn verdicts(event_type: EventType, validator: &Validator, event: &Value) -> (bool, Option<String>) {
    let parsed = parse_received(event, now());
    let valid = validator.is_valid(event);
    let found = match (&parsed, valid) {
        (Ok(_), true) | (Err(_), false) => None,
        (Ok(_), false) => {
            let errors: Vec<String> = validator.iter_errors(event).map(|e| e.to_string()).collect();
            Some(format!("{}: the parser takes what the schema refuses ({errors:?}): {event}", event_type.name()))
        }
        (Err(problems), true) => {
            let messages: Vec<String> = problems.iter().map(|p| p.message.clone()).collect();
            let beyond = messages.iter().all(|m| BEYOND_A_SCHEMA.iter().any(|b| m.contains(b)));
            (!beyond).then(|| {
                format!("{}: the schema takes what the parser refuses ({messages:?}): {event}", event_type.name())
            })
        }
    };
    (parsed.is_ok(), found)
}

/// Every place in an example's data: object members and list items.
fn pointers(value: &Value, at: &str, out: &mut Vec<String>) {
    out.push(at.to_owned());
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                pointers(v, &format!("{at}/{k}"), out);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                pointers(v, &format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

/// Values drawn from the catalogue's own vocabulary and its edges: codes,
/// ids, dates good and bad, blank and control characters, lists with
/// repeats and lone codes, numbers at and past the ranges.
fn values() -> Vec<Value> {
    let long_label = "x".repeat(201);
    vec![
        Value::Null,
        json!(true),
        json!(0),
        json!(1),
        json!(2),
        json!(20),
        json!(21),
        json!(365),
        json!(366),
        json!(-1),
        json!(0.5),
        json!(1.5),
        json!(9_007_199_254_740_992_u64),
        json!(""),
        json!(" "),
        json!("\t\n"),
        json!("x"),
        json!("x y"),
        json!("line\nbreak"),
        json!("bell\u{7}"),
        json!(long_label),
        json!("M"),
        json!("NONE"),
        json!("21"),
        json!("3B"),
        json!("N1"),
        json!("UN6"),
        json!("initial"),
        json!("review"),
        json!("plan"),
        json!("continue"),
        json!("E09000014"),
        json!("E0900001"),
        json!("309"),
        json!("HAR0001234"),
        json!("R-4411"),
        json!("has space"),
        json!("2025-01-14"),
        json!("2025-02-30"),
        json!("2025-1-14"),
        json!("2025-01-14T09:30:00Z"),
        json!("2025-01-14T09:30:00"),
        json!("0043-09-07T09:26:17+05:40"),
        json!("1899-12-31T23:30:00-01:00"),
        json!("1900-01-01T00:30:00+01:00"),
        json!("9434765919"),
        json!("9434765918"),
        json!("A123456789012"),
        json!("B123456789012"),
        json!("7d1c9c1e-8a4e-4c5e-9f3f-0c9f6f3f2b11"),
        json!("7D1C9C1E-8A4E-4C5E-9F3F-0C9F6F3F2B11"),
        json!("00000000-0000-0000-0000-000000000000"),
        json!("00000000-0000-0000-0000-000000000001"),
        json!("a1b2c3d4-0000-4000-8000-000000000001"),
        json!("reviewer-1"),
        json!([]),
        json!(["NONE"]),
        json!(["NONE", "NONE"]),
        json!(["NONE", "K"]),
        json!(["21"]),
        json!(["21", "3B"]),
        json!(["3B", "3B"]),
        json!(["police"]),
        json!({}),
        json!({"given_name": "A"}),
        json!({"upn": "A123456789012", "upn_unknown": "UN6"}),
        json!({"zz": 1}),
    ]
}

#[test]
fn the_schema_and_the_parser_agree_on_every_single_change_to_an_example() {
    let values = values();
    let mut found = Vec::new();
    let (mut cases, mut taken) = (0, 0);
    for &event_type in EventType::ALL {
        let validator = validator(event_type);
        let base = example(event_type);
        let mut places = Vec::new();
        pointers(&base, "", &mut places);
        places.push("/data/zz_unknown".into());
        places.push("/zz_unknown".into());
        for place in &places {
            let mut variants = vec![remove(&base, place)];
            variants.extend(values.iter().map(|v| set(&base, place, v.clone())));
            for event in variants.into_iter().flatten() {
                let (ok, disagrees) = verdicts(event_type, &validator, &event);
                cases += 1;
                taken += usize::from(ok);
                found.extend(disagrees);
            }
        }
    }
    eprintln!("{cases} single changes: {taken} taken by both, {} refused by both", cases - taken);
    // Both verdicts must be common, or agreement would prove little.
    assert!(cases > 10_000 && taken > cases / 20 && taken < cases / 2, "{taken} of {cases} changes taken");
    assert!(
        found.is_empty(),
        "{} of {cases} changes disagree; the first ten:\n{}",
        found.len(),
        found[..found.len().min(10)].join("\n")
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Two or three changes at once, so rules across fields (a lone code,
    /// fields that exclude or need each other) meet values they were not
    /// written for.
    #[test]
    fn the_schema_and_the_parser_agree_on_several_changes_at_once(
        type_index in 0..EventType::ALL.len(),
        changes in proptest::collection::vec((any::<prop::sample::Index>(), any::<prop::sample::Index>(), any::<bool>()), 2..4),
    ) {
        let event_type = EventType::ALL[type_index];
        let values = values();
        let mut event = example(event_type);
        for (place, value, removing) in changes {
            let mut places = Vec::new();
            pointers(&event, "", &mut places);
            places.push("/data/zz_unknown".into());
            let place = place.get(&places).clone();
            let changed = if removing { remove(&event, &place) } else { set(&event, &place, value.get(&values).clone()) };
            if let Some(changed) = changed {
                event = changed;
            }
        }
        let found = disagreement(event_type, &validator(event_type), &event);
        prop_assert!(found.is_none(), "{}", found.unwrap_or_default());
    }
}

/// `base` with the member or item at `pointer` removed; `None` for the root.
fn remove(base: &Value, pointer: &str) -> Option<Value> {
    let (parent, last) = pointer.rsplit_once('/')?;
    let mut event = base.clone();
    match event.pointer_mut(parent)? {
        Value::Object(map) => {
            map.remove(last)?;
        }
        Value::Array(items) => {
            let i: usize = last.parse().ok()?;
            (i < items.len()).then(|| items.remove(i))?;
        }
        _ => return None,
    }
    Some(event)
}

/// `base` with `value` at `pointer` (a new member where the parent is an
/// object without it); `None` for the root.
fn set(base: &Value, pointer: &str, value: Value) -> Option<Value> {
    let (parent, last) = pointer.rsplit_once('/')?;
    let mut event = base.clone();
    match event.pointer_mut(parent)? {
        Value::Object(map) => {
            map.insert(last.to_owned(), value);
        }
        Value::Array(items) => {
            let i: usize = last.parse().ok()?;
            *items.get_mut(i)? = value;
        }
        _ => return None,
    }
    Some(event)
}
