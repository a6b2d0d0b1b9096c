//! The gateway's decoder and validator on arbitrary bytes: strict JSON, then
//! the envelope and typed data of a received event, and the stored form.
//! Whatever the bytes, nothing may panic; and a document that parses must
//! have canonical bytes that parse back to the same canonical bytes (two
//! readers must never disagree about what a signature covers).

#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = events::json::parse_strict(data) else { return };
    let now = chrono::DateTime::from_timestamp(1_750_000_000, 0).unwrap_or_default();
    let _ = events::parse_received(&value, now);
    if let Value::Object(doc) = &value {
        let _ = events::StoredEvent::from_document(doc);
        let canonical = events::canonical::canonical_object(doc);
        let again = events::json::parse_strict(&canonical).expect("canonical bytes are strict JSON");
        assert_eq!(events::canonical::canonical(&again), canonical, "canonical form is stable");
    }
});
