//! The hash chain and signatures, and the pure verification of a subject's
//! whole history.
//!
//! - `hash`: lowercase hex SHA-256 of the RFC 8785 canonical bytes of the
//!   stored document without `hash` and `signature`.
//! - `prevhash`: the previous event's `hash` in the same subject; 64 zeros
//!   for the first.
//! - `signature`: standard base64 (with padding) of the Ed25519 signature of
//!   the 32 raw bytes of the hash (not its hex text).
//!
//! Because the hash covers the stored form, in which personal data is
//! encrypted, erasing a child's key leaves every hash and signature valid.

use crate::canonical::canonical_object;
use crate::json::parse_strict;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};
use std::fmt;

/// A SHA-256 digest, written as 64 lowercase hex characters.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    /// The `prevhash` of a subject's first event.
    pub const ZERO: Digest = Digest([0; 32]);

    pub fn parse(s: &str) -> Result<Self, String> {
        let lower = s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        let mut out = [0u8; 32];
        match hex::decode_to_slice(s, &mut out) {
            Ok(()) if lower => Ok(Self(out)),
            _ => Err("must be 64 lowercase hex characters".into()),
        }
    }

    pub fn of(bytes: &[u8]) -> Self {
        Self(Sha256::digest(bytes).into())
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({self})")
    }
}

/// The hash of a stored document: `hash` and `signature` are left out
/// whether or not they are present.
pub fn content_hash(doc: &Map<String, Value>) -> Digest {
    if doc.contains_key("hash") || doc.contains_key("signature") {
        let mut without = doc.clone();
        without.remove("hash");
        without.remove("signature");
        Digest::of(&canonical_object(&without))
    } else {
        Digest::of(&canonical_object(doc))
    }
}

/// The base64 Ed25519 signature of a hash.
pub fn sign_digest(key: &SigningKey, digest: &Digest) -> String {
    BASE64.encode(key.sign(&digest.0).to_bytes())
}

/// Whether `signature` (base64) is `key`'s signature of `digest`.
pub fn signature_valid(key: &VerifyingKey, digest: &Digest, signature: &str) -> bool {
    let Ok(bytes) = BASE64.decode(signature) else {
        return false;
    };
    let Ok(bytes) = <[u8; 64]>::try_from(bytes.as_slice()) else {
        return false;
    };
    key.verify_strict(&digest.0, &Signature::from_bytes(&bytes)).is_ok()
}

/// Whether `signature` is the signature of `digest` by any of `keys` (the
/// backbone's keys over time: after a rotation, older events stay signed
/// by the key of their day).
pub fn signature_valid_any(keys: &[VerifyingKey], digest: &Digest, signature: &str) -> bool {
    keys.iter().any(|key| signature_valid(key, digest, signature))
}

/// Adds `hash` and `signature` to an unsealed stored document.
pub fn seal(doc: Map<String, Value>, key: &SigningKey) -> Map<String, Value> {
    let (mut doc, digest) = hashed(doc);
    doc.insert("signature".into(), sign_digest(key, &digest).into());
    doc
}

/// The first half of [`seal`]: the document with its `hash`, and the hash.
/// Hashing must go in chain order (each document names the hash before
/// it); the second half, [`signed`], can then run anywhere.
pub fn hashed(mut doc: Map<String, Value>) -> (Map<String, Value>, Digest) {
    doc.remove("hash");
    doc.remove("signature");
    let digest = content_hash(&doc);
    doc.insert("hash".into(), digest.to_string().into());
    (doc, digest)
}

/// The second half of [`seal`]: a [`hashed`] document signed, as the JSON
/// bytes to store.
pub fn signed(mut doc: Map<String, Value>, key: &SigningKey, digest: &Digest) -> Result<Vec<u8>, serde_json::Error> {
    doc.insert("signature".into(), sign_digest(key, digest).into());
    serde_json::to_vec(&doc)
}

/// A signing key from its 32-byte seed.
pub fn signing_key_from_seed(seed: [u8; 32]) -> SigningKey {
    SigningKey::from_bytes(&seed)
}

/// The text form of a key file: the base64 of the 32-byte seed on one line.
pub fn encode_signing_key(key: &SigningKey) -> String {
    format!("{}\n", BASE64.encode(key.to_bytes()))
}

pub fn decode_signing_key(text: &str) -> Result<SigningKey, String> {
    let bytes = BASE64.decode(text.trim()).map_err(|_| "signing key file must hold one line of base64".to_string())?;
    let seed =
        <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| "signing key must be a 32-byte Ed25519 seed".to_string())?;
    Ok(SigningKey::from_bytes(&seed))
}

/// The public key in the form we publish it: base64 of its 32 bytes.
pub fn encode_verifying_key(key: &VerifyingKey) -> String {
    BASE64.encode(key.to_bytes())
}

/// A public key file: one key per line (base64), oldest first; blank lines
/// and lines starting with `#` are ignored. At least one key is required.
pub fn decode_verifying_keys(text: &str) -> Result<Vec<VerifyingKey>, String> {
    let keys = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(decode_verifying_key)
        .collect::<Result<Vec<_>, _>>()?;
    if keys.is_empty() {
        return Err("the public key file holds no key".into());
    }
    Ok(keys)
}

pub fn decode_verifying_key(text: &str) -> Result<VerifyingKey, String> {
    let bytes = BASE64.decode(text.trim()).map_err(|_| "public key must be base64".to_string())?;
    let raw = <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| "public key must be 32 bytes".to_string())?;
    VerifyingKey::from_bytes(&raw).map_err(|_| "public key is not a valid Ed25519 point".to_string())
}

/// What is wrong at one place in a history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakKind {
    /// The bytes no longer match their hash, or the links between events do
    /// not hold: something was changed after it was signed.
    Altered,
    /// A position in the history has no event.
    Missing,
    /// Events appear out of their sequence order.
    Reordered,
    /// The hash is consistent but the signature is not the backbone's.
    Forged,
    /// The stream and the Postgres copy disagree about an event.
    CopyMismatch,
}

/// One break in one subject's history.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Break {
    pub subject: String,
    /// The position concerned (as claimed by the event where it could be read).
    pub sequence: u64,
    pub kind: BreakKind,
    pub detail: String,
}

/// Whose signatures a reader of the stream accepts: the gateway's public
/// keys (after a rotation, every key it has signed with). The implementor
/// may learn keys it did not know yet (a rotation elsewhere) before it
/// answers no.
pub trait Signers: Send + Sync + std::fmt::Debug {
    fn signed(&self, digest: &Digest, signature: &str) -> bool;
}

/// Why a decoded stored event is not taken as the next of its subject.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotTaken {
    #[error("its signature does not verify with any of the gateway's public keys")]
    Unsigned,
    #[error(
        "it breaks its subject's chain: sequence {sequence} after {after}, or a prevhash that is not the hash of event {after}"
    )]
    OutOfChain { sequence: u64, after: u64 },
}

/// Whether an event (its `sequence`, `prevhash`, `hash` and `signature`)
/// is the next true event of a subject whose last true event is `head`
/// (None before the first): signed by the gateway and linked to the head.
/// Readers that fold a subject from the stream (the gateway's state, the
/// projector) take only such events: anyone able to publish on the event
/// subjects of an unsecured server could otherwise write history.
pub fn takes(
    head: Option<Head>,
    sequence: u64,
    prevhash: &Digest,
    hash: &Digest,
    signature: &str,
    signers: &dyn Signers,
) -> Result<(), NotTaken> {
    if !signers.signed(hash, signature) {
        return Err(NotTaken::Unsigned);
    }
    follows(head, sequence, prevhash)
}

/// The chain half of [`takes`], for a reader that checked the signature
/// when the message arrived.
pub fn follows(head: Option<Head>, sequence: u64, prevhash: &Digest) -> Result<(), NotTaken> {
    let (after, expected) = head.map_or((0, Digest::ZERO), |h| (h.sequence, h.hash));
    if sequence != after + 1 || *prevhash != expected {
        return Err(NotTaken::OutOfChain { sequence, after });
    }
    Ok(())
}

/// A subject's last known position and hash, for example from a signed
/// checkpoint: it lets verification notice events removed from the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub sequence: u64,
    pub hash: Digest,
}

/// What verification keeps of one event once its bytes have been checked:
/// enough to check the links between events without holding the bytes, so
/// a whole stream can be verified in one pass.
#[derive(Debug, Clone, Copy)]
pub struct Link {
    /// Where it came in the subject's messages (stream order, from 0).
    pub position: usize,
    pub sequence: u64,
    /// The hash of its bytes as they are (not the hash it claims).
    pub hash: Digest,
    pub prevhash: Option<Digest>,
    /// Whether the bytes hash to the claimed `hash`; links are only checked
    /// between events whose own hashes hold.
    pub intact: bool,
}

/// Checks one stored message of `subject` on its own: that it parses, names
/// the subject, matches its hash and carries the backbone's signature.
/// Pushes what is wrong onto `breaks`; returns what [`check_links`] needs,
/// unless the message is too damaged to place in the history.
pub fn check_event(
    subject: &str,
    position: usize,
    bytes: &[u8],
    keys: &[VerifyingKey],
    breaks: &mut Vec<Break>,
) -> Option<Link> {
    let mut push = |sequence: u64, kind: BreakKind, detail: String| {
        breaks.push(Break { subject: subject.to_owned(), sequence, kind, detail });
    };
    let guess = position as u64 + 1;
    let doc = match parse_strict(bytes) {
        Ok(Value::Object(doc)) => doc,
        Ok(_) | Err(_) => {
            push(guess, BreakKind::Altered, format!("message {guess} in stream order is not a JSON object"));
            return None;
        }
    };
    let Some(sequence) = doc.get("sequence").and_then(Value::as_u64).filter(|s| *s >= 1) else {
        push(guess, BreakKind::Altered, format!("message {guess} in stream order has no valid sequence"));
        return None;
    };
    let claimed = doc.get("hash").and_then(Value::as_str).and_then(|s| Digest::parse(s).ok());
    let actual = content_hash(&doc);
    let prevhash = doc.get("prevhash").and_then(Value::as_str).and_then(|s| Digest::parse(s).ok());
    if doc.get("subject").and_then(Value::as_str) != Some(subject) {
        push(sequence, BreakKind::Altered, "the event names another subject".into());
    }
    let intact = claimed == Some(actual);
    if !intact {
        push(sequence, BreakKind::Altered, "the event's bytes do not match its hash".into());
    } else {
        let signature = doc.get("signature").and_then(Value::as_str).unwrap_or("");
        if !signature_valid_any(keys, &actual, signature) {
            push(sequence, BreakKind::Forged, "the signature is not the backbone's signature of this hash".into());
        }
    }
    Some(Link { position, sequence, hash: actual, prevhash, intact })
}

/// Checks the order of one subject's events (given in stream order), the
/// links between them, that no position is missing, and, with a known
/// `head`, that nothing was removed from the end or changed at the head.
pub fn check_links(subject: &str, links: &[Link], head: Option<Head>, breaks: &mut Vec<Break>) {
    let mut push = |sequence: u64, kind: BreakKind, detail: String| {
        breaks.push(Break { subject: subject.to_owned(), sequence, kind, detail });
    };

    // Order: each event must come after every event with a lower sequence.
    let mut highest = 0;
    for r in links {
        if r.sequence < highest {
            push(r.sequence, BreakKind::Reordered, format!("sequence {} appears after sequence {highest}", r.sequence));
        }
        highest = highest.max(r.sequence);
    }

    // Links, in sequence order.
    let mut by_sequence: Vec<&Link> = links.iter().collect();
    by_sequence.sort_by_key(|r| (r.sequence, r.position));
    let mut expected = 1;
    let mut previous: Option<&Link> = None;
    for r in by_sequence {
        if r.sequence < expected {
            push(r.sequence, BreakKind::Altered, format!("sequence {} appears more than once", r.sequence));
            continue;
        }
        for missing in expected..r.sequence {
            push(missing, BreakKind::Missing, format!("no event holds sequence {missing}"));
        }
        let link_expected = match previous {
            _ if r.sequence == 1 => Some(Digest::ZERO),
            Some(p) if p.sequence + 1 == r.sequence && p.intact => Some(p.hash),
            _ => None,
        };
        if let Some(link) = link_expected
            && r.intact
            && r.prevhash != Some(link)
        {
            push(
                r.sequence,
                BreakKind::Altered,
                format!("prevhash does not match the hash of sequence {}", r.sequence - 1),
            );
        }
        expected = r.sequence + 1;
        previous = Some(r);
    }

    if let Some(head) = head {
        for missing in expected..=head.sequence {
            push(
                missing,
                BreakKind::Missing,
                format!("the known head is at sequence {}, but no event holds sequence {missing}", head.sequence),
            );
        }
        if let Some(r) = links.iter().find(|r| r.sequence == head.sequence)
            && r.hash != head.hash
        {
            push(head.sequence, BreakKind::Altered, "the event differs from the known head's hash".into());
        }
    }
}

/// Verifies one subject's history, given as the stored messages in stream
/// order, and names every break. Pure: the caller fetches the messages.
pub fn verify_history(subject: &str, messages: &[&[u8]], key: &VerifyingKey, head: Option<Head>) -> Vec<Break> {
    let mut breaks = Vec::new();
    let links: Vec<Link> = messages
        .iter()
        .enumerate()
        .filter_map(|(position, bytes)| check_event(subject, position, bytes, std::slice::from_ref(key), &mut breaks))
        .collect();
    check_links(subject, &links, head, &mut breaks);
    breaks.sort_by_key(|b| b.sequence);
    breaks
}

/// Whether two stored copies of an event have the same canonical content.
pub fn same_event(a: &[u8], b: &[u8]) -> bool {
    let canonical_of = |bytes: &[u8]| -> Option<Vec<u8>> {
        match parse_strict(bytes) {
            Ok(Value::Object(doc)) => Some(canonical_object(&doc)),
            _ => None,
        }
    };
    canonical_of(a).is_some_and(|a| Some(a) == canonical_of(b))
}

/// Compares two copies of one subject's history (the stream and the Postgres
/// copy), position by position, by canonical content.
pub fn compare_copies(subject: &str, stream: &[&[u8]], copy: &[&[u8]]) -> Vec<Break> {
    let mut breaks = Vec::new();
    for i in 0..stream.len().max(copy.len()) {
        let sequence = i as u64 + 1;
        let detail = match (stream.get(i), copy.get(i)) {
            (Some(a), Some(b)) if same_event(a, b) => continue,
            (Some(_), Some(_)) => "the stream and the copy hold different events",
            (Some(_), None) => "the copy lacks an event the stream holds",
            (None, Some(_)) => "the copy holds an event the stream lacks",
            (None, None) => continue,
        };
        breaks.push(Break {
            subject: subject.to_owned(),
            sequence,
            kind: BreakKind::CopyMismatch,
            detail: detail.into(),
        });
    }
    breaks
}
