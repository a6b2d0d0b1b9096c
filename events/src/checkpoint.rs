//! Signed checkpoints: the head of every subject folded into one root, with
//! the stream position it covers, so an outside party who keeps the roots
//! can later prove that the history up to that position was not rewritten.
//!
//! # The root
//!
//! For stream position `P`, take every subject with at least one event at a
//! stream sequence `<= P`, and its head there (the last of its events in
//! stream order at or before `P`): `subject`, `sequence`, `hash`. Sort them
//! by subject (byte order) and hash the lines `"<subject> <sequence>
//! <hash>\n"` concatenated, with SHA-256. The root of no subjects is the
//! SHA-256 of nothing.
//!
//! # The document
//!
//! ```json
//! {"type": "safeguard.checkpoint", "stream": "SG_EVENTS", "covers": 1042,
//!  "subjects": 57, "events": 1000, "root": "<hex>", "previous": "<hex>", "at": "2025-...Z",
//!  "hash": "<hex>", "signature": "<base64>"}
//! ```
//!
//! `events` is how many events the stream holds at or before `covers`, so
//! removing one from the middle of a history (which leaves every head as
//! it was) is caught too. `previous` is the `hash` of the checkpoint before it (64 zeros for the
//! first), so the checkpoints form a chain of their own. `hash` and
//! `signature` are made exactly as an event's are ([`crate::chain`]): SHA-256
//! of the RFC 8785 form without them, and the Ed25519 signature of those 32
//! bytes by the gateway's key.

use crate::chain::{self, Digest};
use crate::json::parse_strict;
use ed25519_dalek::{SigningKey, VerifyingKey};
use serde_json::{Map, Value, json};
use sha2::{Digest as _, Sha256};

/// The `type` of a checkpoint document.
pub const TYPE: &str = "safeguard.checkpoint";

/// The root over subjects' heads, given in any order.
pub fn root<'a>(heads: impl IntoIterator<Item = (&'a str, u64, &'a Digest)>) -> Digest {
    let mut heads: Vec<(&str, u64, &Digest)> = heads.into_iter().collect();
    heads.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let mut hasher = Sha256::new();
    for (subject, sequence, hash) in heads {
        hasher.update(format!("{subject} {sequence} {hash}\n").as_bytes());
    }
    Digest(hasher.finalize().into())
}

/// A checkpoint, as published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub stream: String,
    pub covers: u64,
    pub subjects: u64,
    pub events: u64,
    pub root: Digest,
    pub previous: Digest,
    pub at: chrono::DateTime<chrono::Utc>,
    /// The checkpoint's own hash (what `previous` of the next one names).
    pub hash: Digest,
}

/// Makes and signs a checkpoint document; `counts` is (subjects, events).
pub fn sign(
    stream: &str,
    covers: u64,
    counts: (u64, u64),
    root: &Digest,
    previous: &Digest,
    at: chrono::DateTime<chrono::Utc>,
    key: &SigningKey,
) -> Map<String, Value> {
    let (subjects, events) = counts;
    let doc = json!({
        "type": TYPE,
        "stream": stream,
        "covers": covers,
        "subjects": subjects,
        "events": events,
        "root": root.to_string(),
        "previous": previous.to_string(),
        "at": at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
    });
    let Value::Object(doc) = doc else { unreachable!("json! of an object is an object") };
    chain::seal(doc, key)
}

/// Why a checkpoint document is not a valid checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    #[error("not a checkpoint document: {0}")]
    Malformed(&'static str),
    #[error("the checkpoint's bytes do not match its hash")]
    Altered,
    #[error("the checkpoint is not signed with this key")]
    Forged,
}

/// Reads a published checkpoint and checks its hash and its signature by
/// one of `keys`.
pub fn open(bytes: &[u8], keys: &[VerifyingKey]) -> Result<Checkpoint, CheckpointError> {
    let Ok(Value::Object(doc)) = parse_strict(bytes) else {
        return Err(CheckpointError::Malformed("not a JSON object"));
    };
    if doc.get("type").and_then(Value::as_str) != Some(TYPE) {
        return Err(CheckpointError::Malformed("type is not safeguard.checkpoint"));
    }
    let text = |name: &'static str| doc.get(name).and_then(Value::as_str).ok_or(CheckpointError::Malformed(name));
    let number = |name: &'static str| doc.get(name).and_then(Value::as_u64).ok_or(CheckpointError::Malformed(name));
    let digest =
        |name: &'static str| text(name).and_then(|t| Digest::parse(t).map_err(|_| CheckpointError::Malformed(name)));
    let claimed = digest("hash")?;
    let actual = chain::content_hash(&doc);
    if claimed != actual {
        return Err(CheckpointError::Altered);
    }
    if !chain::signature_valid_any(keys, &actual, text("signature")?) {
        return Err(CheckpointError::Forged);
    }
    let at = chrono::DateTime::parse_from_rfc3339(text("at")?).map_err(|_| CheckpointError::Malformed("at"))?.to_utc();
    Ok(Checkpoint {
        stream: text("stream")?.to_owned(),
        covers: number("covers")?,
        subjects: number("subjects")?,
        events: number("events")?,
        root: digest("root")?,
        previous: digest("previous")?,
        at,
        hash: actual,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_opens_with_the_public_key_only_while_untouched() {
        let key = chain::signing_key_from_seed([7; 32]);
        let h1 = Digest::of(b"one");
        let h2 = Digest::of(b"two");
        let r = root([("b", 2, &h2), ("a", 1, &h1)]);
        assert_eq!(r, root([("a", 1, &h1), ("b", 2, &h2)]), "order of the heads does not matter");
        let at = chrono::DateTime::parse_from_rfc3339("2025-01-14T09:30:00Z").expect("time").to_utc();
        let doc = sign("SG_EVENTS", 10, (2, 3), &r, &Digest::ZERO, at, &key);
        let bytes = serde_json::to_vec(&doc).expect("json");
        let opened = open(&bytes, &[key.verifying_key()]).expect("valid");
        assert_eq!((opened.covers, opened.subjects, opened.root), (10, 2, r));

        let mut altered = doc.clone();
        altered.insert("covers".into(), 11.into());
        assert_eq!(
            open(&serde_json::to_vec(&altered).expect("json"), &[key.verifying_key()]),
            Err(CheckpointError::Altered)
        );
        let other = chain::signing_key_from_seed([8; 32]);
        assert_eq!(open(&bytes, &[other.verifying_key()]), Err(CheckpointError::Forged));
        assert!(open(&bytes, &[other.verifying_key(), key.verifying_key()]).is_ok(), "any listed key will do");
    }
}
