//! The chain: a history verifies; altering any byte of any event, removing
//! one, swapping two, or appending one signed with another key is each
//! reported as the right kind of break.

use chrono::DateTime;
use ed25519_dalek::SigningKey;
use events::chain::{self, compare_copies, seal, verify_history};
use events::envelope::Stamp;
use events::ids::PrincipalName;
use events::{BreakKind, Digest, EventType, Head, examples, parse_received};

fn key(seed: u8) -> SigningKey {
    chain::signing_key_from_seed([seed; 32])
}

/// A sealed history of `types` for the example child, as stored messages.
fn history(types: &[EventType], key: &SigningKey) -> Vec<Vec<u8>> {
    let now = DateTime::parse_from_rfc3339("2025-06-01T12:00:00Z").expect("time").to_utc();
    let mut prevhash = Digest::ZERO;
    let mut out = Vec::new();
    for (i, &t) in types.iter().enumerate() {
        let received =
            parse_received(&examples::event(t, &format!("ev-{i}"), "2025-01-14T09:30:00Z"), now).expect("valid");
        let stamp = Stamp {
            source: PrincipalName::parse("haringey-csc").expect("name"),
            recorded_at: DateTime::parse_from_rfc3339("2025-01-14T09:31:00Z").expect("time"),
            sequence: i as u64 + 1,
            prevhash,
        };
        let doc = seal(received.to_unsealed_plain(&stamp), key);
        prevhash = Digest::parse(doc["hash"].as_str().expect("hash")).expect("digest");
        out.push(serde_json::to_vec(&doc).expect("json"));
    }
    out
}

const TYPES: [EventType; 5] = [
    EventType::ChildRegistered,
    EventType::ReferralReceived,
    EventType::ChildSeen,
    EventType::AssessmentStarted,
    EventType::ContactRecorded,
];

/// Sealing in two halves, hashed in chain order and signed anywhere (as the
/// gateway signs on every core), stores the very bytes sealing at once does.
#[test]
fn hashed_then_signed_is_sealed() {
    let key = key(1);
    let now = DateTime::parse_from_rfc3339("2025-06-01T12:00:00Z").expect("time").to_utc();
    let received =
        parse_received(&examples::event(EventType::ChildSeen, "halves", "2025-01-14T09:30:00Z"), now).expect("valid");
    let stamp = Stamp {
        source: PrincipalName::parse("haringey-csc").expect("name"),
        recorded_at: DateTime::parse_from_rfc3339("2025-01-14T09:31:00Z").expect("time"),
        sequence: 2,
        prevhash: chain::content_hash(&serde_json::Map::new()),
    };
    let whole = serde_json::to_vec(&seal(received.to_unsealed_plain(&stamp), &key)).expect("json");
    let (doc, digest) = chain::hashed(received.to_unsealed_plain(&stamp));
    assert_eq!(chain::signed(doc, &key, &digest).expect("json"), whole);
    assert_eq!(verify(&[whole], &key).len(), 1, "a lone second event misses its first, and nothing else");
}

fn verify(messages: &[Vec<u8>], key: &SigningKey) -> Vec<events::Break> {
    let refs: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
    verify_history(examples::CHILD, &refs, &key.verifying_key(), None)
}

#[test]
fn an_untouched_history_verifies() {
    let k = key(7);
    assert_eq!(verify(&history(&TYPES, &k), &k), vec![]);
}

#[test]
fn altering_any_byte_of_any_event_is_caught() {
    let k = key(7);
    let clean = history(&TYPES, &k);
    for (e, message) in clean.iter().enumerate() {
        let text = String::from_utf8(message.clone()).expect("utf-8");
        let signature_at = text.find("\"signature\":\"").expect("signature") + "\"signature\":\"".len();
        for i in 0..message.len() {
            let mut tampered = clean.clone();
            tampered[e][i] ^= 0x01;
            let breaks = verify(&tampered, &k);
            // A byte in the signature leaves the content and its hash intact:
            // the event is then not signed by us. Anywhere else the bytes no
            // longer match the hash, or no longer parse.
            let expected =
                if i >= signature_at && i < message.len() - 2 { BreakKind::Forged } else { BreakKind::Altered };
            assert!(
                breaks.iter().any(|b| b.kind == expected),
                "byte {i} of event {e} ({:?}): expected {expected:?}, got {breaks:?}",
                message[i] as char
            );
        }
    }
}

#[test]
fn a_removed_event_is_missing() {
    let k = key(7);
    let mut h = history(&TYPES, &k);
    h.remove(2);
    let breaks = verify(&h, &k);
    assert_eq!(breaks.len(), 1, "{breaks:?}");
    assert_eq!((breaks[0].kind, breaks[0].sequence), (BreakKind::Missing, 3));
}

#[test]
fn a_removed_last_event_is_missing_against_a_known_head() {
    let k = key(7);
    let full = history(&TYPES, &k);
    let last: serde_json::Value = serde_json::from_slice(&full[4]).expect("json");
    let head = Head { sequence: 5, hash: Digest::parse(last["hash"].as_str().expect("hash")).expect("digest") };
    let refs: Vec<&[u8]> = full[..4].iter().map(Vec::as_slice).collect();
    let breaks = verify_history(examples::CHILD, &refs, &k.verifying_key(), Some(head));
    assert_eq!(breaks.iter().map(|b| (b.kind, b.sequence)).collect::<Vec<_>>(), [(BreakKind::Missing, 5)]);
}

#[test]
fn swapped_events_are_reordered() {
    let k = key(7);
    let mut h = history(&TYPES, &k);
    h.swap(1, 2);
    let breaks = verify(&h, &k);
    assert_eq!(breaks.iter().map(|b| (b.kind, b.sequence)).collect::<Vec<_>>(), [(BreakKind::Reordered, 2)]);
}

#[test]
fn an_event_appended_with_another_key_is_forged() {
    let ours = key(7);
    let theirs = key(9);
    let mut h = history(&TYPES, &ours);
    // The forger builds a perfectly linked sixth event but cannot sign as us.
    let with_forgery = {
        let mut longer = TYPES.to_vec();
        longer.push(EventType::ConcernRaised);
        let mut forged_chain = history(&longer, &ours);
        let mut doc: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(&forged_chain[5]).expect("json");
        doc = seal(doc, &theirs);
        forged_chain[5] = serde_json::to_vec(&doc).expect("json");
        forged_chain
    };
    h.push(with_forgery[5].clone());
    let breaks = verify(&h, &ours);
    assert_eq!(breaks.iter().map(|b| (b.kind, b.sequence)).collect::<Vec<_>>(), [(BreakKind::Forged, 6)]);
}

#[test]
fn a_rewritten_event_breaks_the_next_link() {
    // Someone with the key rewrites event 2 and re-signs it: the hash of
    // event 2 changes, so event 3's prevhash no longer matches.
    let k = key(7);
    let mut h = history(&TYPES, &k);
    let mut doc: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&h[1]).expect("json");
    doc["data"]["nfa"] = true.into();
    h[1] = serde_json::to_vec(&seal(doc, &k)).expect("json");
    let breaks = verify(&h, &k);
    assert_eq!(breaks.iter().map(|b| (b.kind, b.sequence)).collect::<Vec<_>>(), [(BreakKind::Altered, 3)]);
}

#[test]
fn copies_that_differ_are_named() {
    let k = key(7);
    let stream = history(&TYPES, &k);
    let mut copy = stream.clone();
    copy[3] = stream[4].clone();
    copy.pop();
    let a: Vec<&[u8]> = stream.iter().map(Vec::as_slice).collect();
    let b: Vec<&[u8]> = copy.iter().map(Vec::as_slice).collect();
    let breaks = compare_copies(examples::CHILD, &a, &b);
    assert_eq!(
        breaks.iter().map(|b| (b.kind, b.sequence)).collect::<Vec<_>>(),
        [(BreakKind::CopyMismatch, 4), (BreakKind::CopyMismatch, 5)]
    );
    // Key order in the JSON text does not matter, only content.
    let reordered: serde_json::Value = serde_json::from_slice(&stream[0]).expect("json");
    let mut keys: Vec<(String, serde_json::Value)> =
        reordered.as_object().expect("object").clone().into_iter().collect();
    keys.reverse();
    let text = serde_json::to_vec(&keys.into_iter().collect::<serde_json::Map<_, _>>()).expect("json");
    assert!(compare_copies(examples::CHILD, &a[..1], &[text.as_slice()]).is_empty());
}
