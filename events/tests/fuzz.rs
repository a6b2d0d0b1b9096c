//! Property tests: the decoder never panics, whatever it is given, and
//! canonical bytes are stable.

use chrono::{DateTime, Utc};
use events::canonical::canonical;
use events::json::parse_strict;
use events::{EventType, examples, parse_received};
use proptest::prelude::*;
use serde_json::{Map, Value};

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2025-06-01T12:00:00Z").expect("time").with_timezone(&Utc)
}

/// Arbitrary JSON, with keys and strings drawn partly from the catalogue's
/// own vocabulary so that generated values reach deep into the parsers.
fn arb_json() -> impl Strategy<Value = Value> {
    let words = prop::sample::select(vec![
        "specversion",
        "id",
        "type",
        "subject",
        "time",
        "data",
        "person",
        "council",
        "sex",
        "factors",
        "1.0",
        "referral.received",
        "child.registered",
        "E09000014",
        "NONE",
        "21",
        "N1",
        "7d1c9c1e-8a4e-4c5e-9f3f-0c9f6f3f2b11",
        "2025-01-14T09:30:00Z",
        "9434765919",
    ]);
    let text = prop_oneof![words.clone().prop_map(str::to_owned), ".{0,12}"];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
        text.clone().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 8, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((text.clone(), inner), 0..8)
                .prop_map(|pairs| Value::Object(pairs.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn parsing_arbitrary_json_never_panics(value in arb_json()) {
        let _ = parse_received(&value, now());
    }

    #[test]
    fn replacing_any_part_of_a_valid_event_never_panics(
        type_index in 0..EventType::ALL.len(),
        path_choice in any::<prop::sample::Index>(),
        replacement in arb_json(),
    ) {
        let t = EventType::ALL[type_index];
        let mut event = examples::event(t, "ev-1", "2025-01-14T09:30:00Z");
        let pointers = all_pointers(&event, "");
        let target = path_choice.get(&pointers).clone();
        if let Some(slot) = event.pointer_mut(&target) {
            *slot = replacement;
        }
        if let Err(problems) = parse_received(&event, now()) {
            // Every problem is located somewhere inside the event.
            for p in problems.iter() {
                prop_assert!(p.pointer.is_empty() || p.pointer.starts_with('/'));
                prop_assert!(!p.message.is_empty());
            }
        }
    }

    #[test]
    fn strict_parsing_of_arbitrary_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = parse_strict(&bytes);
    }

    #[test]
    fn canonical_bytes_are_a_fixed_point(value in arb_json()) {
        let once = canonical(&value);
        let reparsed = parse_strict(&once);
        // Values with integers beyond 2^53 are refused by the strict parser;
        // everything else must read back to the same canonical bytes.
        if let Ok(v) = reparsed {
            prop_assert_eq!(canonical(&v), once);
        }
    }
}

fn all_pointers(value: &Value, at: &str) -> Vec<String> {
    let mut out = vec![at.to_owned()];
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                out.extend(all_pointers(v, &events::problem::child_pointer(at, k)));
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                out.extend(all_pointers(v, &format!("{at}/{i}")));
            }
        }
        _ => {}
    }
    out
}
