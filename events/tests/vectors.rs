//! The published test vectors in `events/vectors/` are exactly what this
//! implementation produces, and they verify.
//!
//! `SAFEGUARD_BLESS=1 cargo test -p events --test vectors` rewrites them;
//! a change to them is a change to the chain rules and must be deliberate.

use chrono::DateTime;
use events::canonical::canonical_object;
use events::chain::{self, Digest, seal, verify_history};
use events::envelope::Stamp;
use events::ids::PrincipalName;
use events::{EventType, examples, parse_received};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use std::path::{Path, PathBuf};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("vectors")
}

/// The documented test key: the SHA-256 of the ASCII text below is the seed.
const KEY_PHRASE: &str = "safeguard test vectors v1";

/// The events of the vector history, chosen to exercise the canonical form:
/// non-ASCII and astral characters, escapes, fractions and nested objects.
fn events() -> Vec<Value> {
    let t = |event_type: EventType, id: &str, time: &str, data: Option<Value>| {
        let mut e = examples::event(event_type, id, time);
        if let Some(d) = data {
            e["data"] = d;
        }
        e
    };
    vec![
        t(EventType::ChildRegistered, "lcs-20250110-000001", "2025-01-10T10:00:00Z", None),
        t(
            EventType::ContactRecorded,
            "police-2025-0042",
            "2025-01-13T22:15:00Z",
            Some(json!({
                "contact_id": "C-0042", "source": "6",
                "summary": "Neighbour reported shouting; officer noted \"bruise\" on left cheek \u{1F61F}\nFollow-up: é, ü, 日本",
                "outcome": "referral"
            })),
        ),
        t(EventType::ReferralReceived, "lcs-20250114-000187", "2025-01-14T09:30:00Z", None),
        t(EventType::ChildSeen, "lcs-20250116-000301", "2025-06-16T16:45:00+01:00", None),
        t(EventType::AssessmentCompleted, "lcs-20250220-000410", "2025-02-20T11:00:00Z", None),
        t(EventType::RecordCorrected, "lcs-20250221-000002", "2025-02-21T08:00:00Z", None),
    ]
}

struct Generated {
    files: Vec<(String, Vec<u8>)>,
}

fn generate() -> Generated {
    let seed: [u8; 32] = Sha256::digest(KEY_PHRASE.as_bytes()).into();
    let key = chain::signing_key_from_seed(seed);
    let now = DateTime::parse_from_rfc3339("2025-06-30T00:00:00Z").expect("time").to_utc();
    let mut files = Vec::new();
    let mut history = String::new();
    let mut manifest = Vec::new();
    let mut prevhash = Digest::ZERO;
    for (i, event) in events().iter().enumerate() {
        let received = parse_received(event, now).expect("vector events are valid");
        let sequence = i as u64 + 1;
        let stamp = Stamp {
            source: PrincipalName::parse("haringey-csc").expect("name"),
            recorded_at: received.time + chrono::TimeDelta::minutes(3),
            sequence,
            prevhash,
        };
        let unsealed = received.to_unsealed_plain(&stamp);
        let canonical = canonical_object(&unsealed);
        let sealed = seal(unsealed, &key);
        let hash = sealed["hash"].as_str().expect("hash").to_owned();
        prevhash = Digest::parse(&hash).expect("digest");
        let name = format!("{sequence:02}-{}.canonical.json", received.event_type.name());
        manifest.push(json!({
            "sequence": sequence,
            "type": received.event_type.name(),
            "canonical": name,
            "hash": hash,
            "signature": sealed["signature"],
        }));
        files.push((name, canonical));
        history.push_str(&serde_json::to_string(&sealed).expect("json"));
        history.push('\n');
    }
    files.push(("history.ndjson".into(), history.into_bytes()));
    let manifest = json!({
        "subject": examples::CHILD,
        "key_seed": "SHA-256 of the ASCII text \"safeguard test vectors v1\"",
        "public_key": chain::encode_verifying_key(&key.verifying_key()),
        "events": manifest,
    });
    files.push(("manifest.json".into(), (serde_json::to_string_pretty(&manifest).expect("json") + "\n").into_bytes()));
    files.push((
        "public-key.txt".into(),
        format!("{}\n", chain::encode_verifying_key(&key.verifying_key())).into_bytes(),
    ));
    files.push(("test-signing-key.txt".into(), chain::encode_signing_key(&key).into_bytes()));
    Generated { files }
}

#[test]
fn published_vectors_match_this_implementation() {
    let generated = generate();
    if std::env::var_os("SAFEGUARD_BLESS").is_some() {
        for (name, bytes) in &generated.files {
            std::fs::write(dir().join(name), bytes).expect("write");
        }
        return;
    }
    for (name, bytes) in &generated.files {
        let published = std::fs::read(dir().join(name)).unwrap_or_else(|_| panic!("vectors/{name} is missing"));
        assert!(published == *bytes, "vectors/{name} differs from what this implementation produces");
    }
}

#[test]
fn published_vectors_verify_from_the_files_alone() {
    let public_key = std::fs::read_to_string(dir().join("public-key.txt")).expect("public key");
    let key = chain::decode_verifying_key(&public_key).expect("key");
    let history = std::fs::read_to_string(dir().join("history.ndjson")).expect("history");
    let lines: Vec<&[u8]> = history.lines().map(str::as_bytes).collect();
    assert_eq!(lines.len(), events().len());
    assert!(verify_history(examples::CHILD, &lines, &key, None).is_empty());

    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(dir().join("manifest.json")).expect("manifest")).expect("json");
    for entry in manifest["events"].as_array().expect("events") {
        let canonical = std::fs::read(dir().join(entry["canonical"].as_str().expect("name"))).expect("canonical");
        let hash = hex::encode(Sha256::digest(&canonical));
        assert_eq!(entry["hash"].as_str(), Some(hash.as_str()));
        let digest = Digest::parse(&hash).expect("digest");
        assert!(chain::signature_valid(&key, &digest, entry["signature"].as_str().expect("signature")));
    }
}
