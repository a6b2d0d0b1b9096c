//! The CloudEvents 1.0 envelope: as received from a publisher, and as stored
//! on the stream with the backbone's own attributes.
//!
//! Received attributes: `specversion`, `id`, `type`, `subject`, `time`, `data`
//! (all required), and optionally `source` (must equal the principal, checked
//! by the gateway), `recordedat` (admin import only), `expectedsequence`,
//! `datacontenttype`, and two CloudEvents extensions a chronology shows:
//! `authorrole` (the role of the person who wrote it, a code of
//! [`AuthorRole`]) and `significant` (a boolean: the publisher marks the
//! entry significant, or not, overriding the default that statutory steps
//! are). Both are stored as sent, under the hash and signature. The backbone adds `source`, `recordedat`, `sequence`,
//! `prevhash`, `hash` and `signature`; a publisher that sends the last four is
//! refused. `expectedsequence` steers the write and is not stored.
//!
//! The distributed tracing extension (`traceparent`, `tracestate`, W3C
//! Trace Context) is taken too, checked, and carried beside the stored
//! event as NATS headers rather than in it: the trace of a retry differs
//! from the first attempt's, and the same (publisher, id) must still be the
//! same event.

use crate::catalogue::{EventData, EventType, SubjectKind};
use crate::chain::Digest;
use crate::codes::AuthorRole;
use crate::fields::{FromJson, expect_str, kind_of};
use crate::ids::{ChildId, CouncilCode, EventId, PrincipalName, WorkerId};
use crate::problem::{Problems, child_pointer};
use chrono::{DateTime, Datelike, FixedOffset, SecondsFormat, TimeDelta, Utc};
use serde_json::{Map, Value};
use std::fmt;

pub const SPEC_VERSION: &str = "1.0";

/// How far ahead of the gateway's clock an event's `time` may be: publishers'
/// clocks drift, but a fact cannot have happened in the future.
pub const MAX_FUTURE: TimeDelta = TimeDelta::minutes(5);

/// Attributes only the backbone writes.
const BACKBONE_ATTRIBUTES: [&str; 4] = ["sequence", "prevhash", "hash", "signature"];

const RECEIVED_ATTRIBUTES: [&str; 14] = [
    "specversion",
    "id",
    "type",
    "subject",
    "time",
    "data",
    "source",
    "recordedat",
    "expectedsequence",
    "datacontenttype",
    "authorrole",
    "significant",
    "traceparent",
    "tracestate",
];

/// What an event is about: a child, a worker or a council.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Subject {
    Child(ChildId),
    Worker(WorkerId),
    Council(CouncilCode),
}

impl Subject {
    pub fn parse(kind: SubjectKind, s: &str) -> Result<Self, String> {
        match kind {
            SubjectKind::Child => ChildId::parse(s).map(Self::Child),
            SubjectKind::Worker => WorkerId::parse(s).map(Self::Worker),
            SubjectKind::Council => CouncilCode::parse(s).map(Self::Council),
        }
    }

    pub fn kind(&self) -> SubjectKind {
        match self {
            Self::Child(_) => SubjectKind::Child,
            Self::Worker(_) => SubjectKind::Worker,
            Self::Council(_) => SubjectKind::Council,
        }
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Child(id) => id.fmt(f),
            Self::Worker(id) => id.fmt(f),
            Self::Council(code) => f.write_str(code.as_str()),
        }
    }
}

/// An event as a publisher sent it, parsed and checked for structure.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedEvent {
    pub id: EventId,
    pub event_type: EventType,
    pub subject: Subject,
    /// When it happened. Its Europe/London date is the business date.
    pub time: DateTime<FixedOffset>,
    pub data: EventData,
    /// The `source` the body claimed, if any; the gateway requires it to be
    /// the principal's own name.
    pub claimed_source: Option<String>,
    /// An original recording time from a legacy system (admin import only).
    pub recorded_at: Option<DateTime<FixedOffset>>,
    /// The subject's position the publisher last saw (0 for a new subject).
    pub expected_sequence: Option<u64>,
    /// Who at the publisher wrote it, by role.
    pub author_role: Option<AuthorRole>,
    /// The publisher's own mark of significance, where it gave one.
    pub significant: Option<bool>,
    /// The publisher's trace, carried beside the stored event (not in it).
    pub trace: Option<TraceContext>,
}

/// A W3C Trace Context (`traceparent`, and `tracestate` if any), checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    traceparent: String,
    tracestate: Option<String>,
}

impl TraceContext {
    /// Checks both values as W3C Trace Context 1 defines them; the problem
    /// names which attribute is at fault and why.
    pub fn parse(traceparent: &str, tracestate: Option<&str>) -> Result<Self, (&'static str, &'static str)> {
        const FORMAT: &str = "must be a W3C traceparent: 2 hex digits of version, 32 of trace id, 16 of parent id and 2 of flags, joined by '-' (lower case)";
        let bytes = traceparent.as_bytes();
        let hex = |range: std::ops::Range<usize>| {
            bytes[range].iter().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
        };
        let shaped = bytes.len() >= 55
            && [2, 35, 52].iter().all(|&i| bytes[i] == b'-')
            && hex(0..2)
            && hex(3..35)
            && hex(36..52)
            && hex(53..55);
        // A later version may append fields after a '-'; version 00 has none.
        if !shaped || (bytes.len() > 55 && (&traceparent[..2] == "00" || bytes[55] != b'-')) {
            return Err(("/traceparent", FORMAT));
        }
        if &traceparent[..2] == "ff" {
            return Err(("/traceparent", "has version ff, which W3C Trace Context forbids"));
        }
        if traceparent[3..35].bytes().all(|b| b == b'0') || traceparent[36..52].bytes().all(|b| b == b'0') {
            return Err(("/traceparent", "has a trace id or parent id of all zeros, which W3C Trace Context forbids"));
        }
        if let Some(state) = tracestate {
            let members: Vec<&str> = state.split(',').map(str::trim).filter(|m| !m.is_empty()).collect();
            let printable = state.bytes().all(|b| (0x20..=0x7e).contains(&b));
            if state.len() > 512 || !printable || members.len() > 32 || members.iter().any(|m| !m.contains('=')) {
                return Err((
                    "/tracestate",
                    "must be a W3C tracestate: at most 32 key=value members, comma-separated, printable ASCII, 512 characters at most",
                ));
            }
        }
        Ok(Self { traceparent: traceparent.to_owned(), tracestate: tracestate.map(str::to_owned) })
    }

    pub fn traceparent(&self) -> &str {
        &self.traceparent
    }

    pub fn tracestate(&self) -> Option<&str> {
        self.tracestate.as_deref()
    }

    /// The trace id (32 hex digits).
    pub fn trace_id(&self) -> &str {
        &self.traceparent[3..35]
    }
}

/// Parses one received event, returning every problem at once. `now` is the
/// receiving clock, for the "not in the future" rule.
pub fn parse_received(value: &Value, now: DateTime<Utc>) -> Result<ReceivedEvent, Problems> {
    let mut problems = Problems::new();
    let Value::Object(object) = value else {
        problems.push("", format!("an event must be a JSON object, not {}", kind_of(value)));
        return Err(problems);
    };

    for name in object.keys() {
        if BACKBONE_ATTRIBUTES.contains(&name.as_str()) {
            problems.push(child_pointer("", name), "is set by the backbone; leave it out");
        } else if !RECEIVED_ATTRIBUTES.contains(&name.as_str()) {
            problems.push(
                child_pointer("", name),
                format!("is not a known attribute; expected only: {}", RECEIVED_ATTRIBUTES.join(", ")),
            );
        }
    }

    match object.get("specversion") {
        None => problems.push("/specversion", "is required"),
        Some(Value::String(s)) if s == SPEC_VERSION => {}
        Some(_) => problems.push("/specversion", "must be \"1.0\" (CloudEvents 1.0)"),
    }

    let id = required(object, "id", &mut problems).and_then(|v| EventId::from_json(v, "/id", &mut problems));

    let event_type = required(object, "type", &mut problems).and_then(|v| {
        let name = expect_str(v, "/type", &mut problems)?;
        let found = EventType::from_name(name);
        if found.is_none() {
            problems.push(
                "/type",
                "is not an event type of catalogue v1 (the catalogue: docs/data-model.md, Catalogue v1)",
            );
        }
        found
    });

    let subject = required(object, "subject", &mut problems).and_then(|v| {
        let s = expect_str(v, "/subject", &mut problems)?;
        let kind = event_type?.subject_kind();
        Subject::parse(kind, s).map_err(|m| problems.push("/subject", m)).ok()
    });

    let time = required(object, "time", &mut problems)
        .and_then(|v| DateTime::<FixedOffset>::from_json(v, "/time", &mut problems))
        .and_then(|t| check_time(t, now, "/time", &mut problems));

    let data = required(object, "data", &mut problems).and_then(|v| {
        if !v.is_object() {
            problems
                .push("/data", format!("must be an object ({{}} where the type has no fields), not {}", kind_of(v)));
            return None;
        }
        EventData::parse(event_type?, v, "/data", &mut problems)
    });

    let claimed_source = match object.get("source") {
        None => None,
        Some(v) => expect_str(v, "/source", &mut problems).map(str::to_owned),
    };

    let recorded_at = match object.get("recordedat") {
        None => None,
        Some(v) => DateTime::<FixedOffset>::from_json(v, "/recordedat", &mut problems)
            .and_then(|t| check_time(t, now, "/recordedat", &mut problems)),
    };

    let expected_sequence = match object.get("expectedsequence") {
        None => None,
        Some(v) => u64::from_json(v, "/expectedsequence", &mut problems),
    };

    let author_role = match object.get("authorrole") {
        None => None,
        Some(v) => AuthorRole::from_json(v, "/authorrole", &mut problems),
    };
    let significant = match object.get("significant") {
        None => None,
        Some(v) => bool::from_json(v, "/significant", &mut problems),
    };

    let trace = match (object.get("traceparent"), object.get("tracestate")) {
        (None, None) => None,
        (None, Some(_)) => {
            problems.push("/tracestate", "is taken only with a traceparent");
            None
        }
        (Some(parent), state) => {
            let parent = expect_str(parent, "/traceparent", &mut problems);
            let state = match state {
                None => Some(None),
                Some(v) => expect_str(v, "/tracestate", &mut problems).map(Some),
            };
            match (parent, state) {
                (Some(parent), Some(state)) => {
                    TraceContext::parse(parent, state).map_err(|(at, message)| problems.push(at, message)).ok()
                }
                _ => None,
            }
        }
    };

    match object.get("datacontenttype") {
        None => {}
        Some(Value::String(s)) if s == "application/json" => {}
        Some(_) => problems.push("/datacontenttype", "must be \"application/json\" when given"),
    }

    if !problems.is_empty() {
        return Err(problems);
    }
    match (id, event_type, subject, time, data) {
        (Some(id), Some(event_type), Some(subject), Some(time), Some(data)) => Ok(ReceivedEvent {
            id,
            event_type,
            subject,
            time,
            data,
            claimed_source,
            recorded_at,
            expected_sequence,
            author_role,
            significant,
            trace,
        }),
        // Every None above recorded a problem, so this arm is unreachable in
        // practice; it keeps the function total.
        _ => {
            problems.push("", "is not a valid event");
            Err(problems)
        }
    }
}

fn required<'v>(object: &'v Map<String, Value>, name: &str, problems: &mut Problems) -> Option<&'v Value> {
    match object.get(name) {
        None | Some(Value::Null) => {
            problems.push(child_pointer("", name), "is required");
            None
        }
        Some(v) => Some(v),
    }
}

fn check_time(
    time: DateTime<FixedOffset>,
    now: DateTime<Utc>,
    at: &str,
    problems: &mut Problems,
) -> Option<DateTime<FixedOffset>> {
    if time.with_timezone(&Utc) > now + MAX_FUTURE {
        problems.push(at, "must not be more than 5 minutes in the future");
        return None;
    }
    if time.year() < 1900 {
        problems.push(at, "must be in 1900 or later");
        return None;
    }
    Some(time)
}

/// Writes a time the one way the backbone stores times: RFC 3339, the
/// offset it was given with (`Z` for UTC), and only as many fraction digits
/// as needed.
pub fn format_time(time: &DateTime<FixedOffset>) -> String {
    time.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// What the gateway adds to a received event before sealing it.
#[derive(Debug, Clone, PartialEq)]
pub struct Stamp {
    pub source: PrincipalName,
    pub recorded_at: DateTime<FixedOffset>,
    /// 1-based position in the subject's history.
    pub sequence: u64,
    /// The previous event's hash in this subject, or [`Digest::ZERO`].
    pub prevhash: Digest,
}

impl ReceivedEvent {
    /// The stored document before sealing: the received attributes, the
    /// stamp, and `data` in its stored form (personal fields encrypted by the
    /// caller, which is why it is passed in rather than taken from `self`).
    pub fn to_unsealed(&self, stamp: &Stamp, stored_data: Value) -> Map<String, Value> {
        let mut doc = Map::new();
        doc.insert("specversion".into(), SPEC_VERSION.into());
        doc.insert("id".into(), self.id.as_str().into());
        doc.insert("source".into(), stamp.source.as_str().into());
        doc.insert("type".into(), self.event_type.name().into());
        doc.insert("subject".into(), self.subject.to_string().into());
        doc.insert("time".into(), format_time(&self.time).into());
        doc.insert("recordedat".into(), format_time(&stamp.recorded_at).into());
        doc.insert("sequence".into(), stamp.sequence.into());
        doc.insert("prevhash".into(), stamp.prevhash.to_string().into());
        if let Some(role) = self.author_role {
            doc.insert("authorrole".into(), role.code().into());
        }
        if let Some(significant) = self.significant {
            doc.insert("significant".into(), significant.into());
        }
        doc.insert("data".into(), stored_data);
        doc
    }

    /// The stored document with `data` exactly as typed (nothing encrypted):
    /// for tests, test vectors and anything that holds no personal data.
    pub fn to_unsealed_plain(&self, stamp: &Stamp) -> Map<String, Value> {
        let data = serde_json::to_value(&self.data).unwrap_or(Value::Null);
        self.to_unsealed(stamp, data)
    }
}

/// A stored event read back from the stream: its attributes, and its data
/// typed in the stored form (personal fields sealed; opening them is the
/// business of a reader that holds the child's key).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    pub id: EventId,
    pub source: PrincipalName,
    pub event_type: EventType,
    pub subject: Subject,
    pub time: DateTime<FixedOffset>,
    pub recorded_at: DateTime<FixedOffset>,
    pub sequence: u64,
    pub prevhash: Digest,
    pub hash: Digest,
    pub signature: String,
    pub data: EventData,
    pub author_role: Option<AuthorRole>,
    pub significant: Option<bool>,
}

impl StoredEvent {
    /// Reads a stored document. Problems name the attribute at fault.
    pub fn from_document(doc: &Map<String, Value>) -> Result<Self, Problems> {
        let mut problems = Problems::new();
        let text = |name: &str, problems: &mut Problems| -> Option<String> {
            match doc.get(name) {
                Some(Value::String(s)) => Some(s.clone()),
                _ => {
                    problems.push(child_pointer("", name), "must be a string");
                    None
                }
            }
        };
        let id = text("id", &mut problems).and_then(|s| EventId::parse(&s).map_err(|m| problems.push("/id", m)).ok());
        let source = text("source", &mut problems)
            .and_then(|s| PrincipalName::parse(&s).map_err(|m| problems.push("/source", m)).ok());
        let event_type = text("type", &mut problems).and_then(|s| {
            EventType::from_name(&s).or_else(|| {
                problems.push("/type", "is not a known event type");
                None
            })
        });
        let subject = match (text("subject", &mut problems), event_type) {
            (Some(s), Some(t)) => Subject::parse(t.subject_kind(), &s).map_err(|m| problems.push("/subject", m)).ok(),
            _ => None,
        };
        let time = text("time", &mut problems)
            .and_then(|s| crate::fields::parse_time(&s).map_err(|m| problems.push("/time", m)).ok());
        let recorded_at = text("recordedat", &mut problems)
            .and_then(|s| crate::fields::parse_time(&s).map_err(|m| problems.push("/recordedat", m)).ok());
        let sequence = match doc.get("sequence").and_then(Value::as_u64) {
            Some(n) if n >= 1 => Some(n),
            _ => {
                problems.push("/sequence", "must be a whole number, 1 or more");
                None
            }
        };
        let prevhash = text("prevhash", &mut problems)
            .and_then(|s| Digest::parse(&s).map_err(|m| problems.push("/prevhash", m)).ok());
        let hash =
            text("hash", &mut problems).and_then(|s| Digest::parse(&s).map_err(|m| problems.push("/hash", m)).ok());
        let signature = text("signature", &mut problems);
        let author_role = match doc.get("authorrole") {
            None => None,
            Some(v) => AuthorRole::from_json(v, "/authorrole", &mut problems),
        };
        let significant = match doc.get("significant") {
            None => None,
            Some(Value::Bool(b)) => Some(*b),
            Some(_) => {
                problems.push("/significant", "must be true or false");
                None
            }
        };
        let data = match (doc.get("data"), event_type) {
            (Some(value), Some(t)) => EventData::parse_stored(t, value)
                .map_err(|found| {
                    for p in found {
                        problems.push(p.pointer, p.message);
                    }
                })
                .ok(),
            (None, _) => {
                problems.push("/data", "is required");
                None
            }
            (Some(_), None) => None,
        };
        match (id, source, event_type, subject, time, recorded_at, sequence, prevhash, hash, signature, data) {
            (
                Some(id),
                Some(source),
                Some(event_type),
                Some(subject),
                Some(time),
                Some(recorded_at),
                Some(sequence),
                Some(prevhash),
                Some(hash),
                Some(signature),
                Some(data),
            ) if problems.is_empty() => Ok(Self {
                id,
                source,
                event_type,
                subject,
                time,
                recorded_at,
                sequence,
                prevhash,
                hash,
                signature,
                data,
                author_role,
                significant,
            }),
            _ => Err(problems),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2025-06-01T12:00:00Z").expect("time").with_timezone(&Utc)
    }

    fn pointers(e: Problems) -> Vec<String> {
        e.into_iter().map(|p| p.pointer).collect()
    }

    #[test]
    fn every_envelope_problem_is_reported_at_once() {
        let e =
            parse_received(&json!({"specversion": "0.3", "type": "referral.received", "data": {}, "hash": "x"}), now())
                .expect_err("invalid");
        let p = pointers(e);
        for expected in
            ["/hash", "/specversion", "/id", "/subject", "/time", "/data/referral_id", "/data/source", "/data/nfa"]
        {
            assert!(p.contains(&expected.to_string()), "missing {expected} in {p:?}");
        }
    }

    #[test]
    fn times_need_an_offset_and_cannot_be_in_the_future() {
        let base = json!({"specversion": "1.0", "id": "a", "type": "child.died",
            "subject": "7d1c9c1e-8a4e-4c5e-9f3f-0c9f6f3f2b11", "data": {"date": "2025-05-01"}});
        let mut no_offset = base.clone();
        no_offset["time"] = json!("2025-05-01T10:00:00");
        let e = parse_received(&no_offset, now()).expect_err("no offset");
        assert!(e.iter().any(|p| p.pointer == "/time" && p.message.contains("offset")), "{e}");

        let mut future = base.clone();
        future["time"] = json!("2025-06-01T12:05:01Z");
        assert!(parse_received(&future, now()).is_err());
        let mut just_in_time = base;
        just_in_time["time"] = json!("2025-06-01T13:05:00+01:00");
        assert!(parse_received(&just_in_time, now()).is_ok());
    }
}
