//! The NATS subject scheme. Stored subjects can never change, so the scheme
//! carries its partition from the first event on: projectors scale out by
//! taking a share of the partitions, and per-subject order is kept because a
//! subject always lives in one partition.
//!
//! | subject | holds |
//! |---|---|
//! | `sg.ev.<pp>.child.<child uuid>` | a child's events |
//! | `sg.ev.<pp>.worker.<worker uuid>` | a worker's events |
//! | `sg.ev.<pp>.council.<ONS code>` | a council's events |
//! | `sg.id.<source>.<id digest>` | one message per (publisher, event id) ever stored: the id index |
//! | `sg.audit.access.<pp>.<child uuid>` | access events (audit stream) |
//! | `sg.audit.lookup` | access events of lookups that found nobody (audit stream) |
//! | `sg.audit.erasure.<pp>.<child uuid>` | erasures of a child's data key (audit stream) |
//! | `sg.audit.checkpoint` | signed checkpoints (audit stream) |
//! | `sg.changes.indicators.<ONS code>.<period>` | a council's indicators for a period (e.g. `2024-25`), each time they change (core NATS, not stored) |
//! | `sg.changes.caseload.<ONS code>.<team>` | a team's caseload, each time it changes (core NATS, not stored) |
//!
//! `<pp>` is the partition, two digits `00` to `31`: the first four bytes of
//! the SHA-256 of the subject's text form, big-endian, modulo 32. Personal
//! data never appears in a subject: child and worker ids are random UUIDs,
//! councils are public codes, and event ids appear only as a digest.

use crate::envelope::Subject;
use crate::ids::{EventId, PrincipalName};
use sha2::{Digest, Sha256};

/// The JetStream stream of events and the id index.
pub const EVENTS_STREAM: &str = "SG_EVENTS";
/// The JetStream stream of access events, erasures and checkpoints.
pub const AUDIT_STREAM: &str = "SG_AUDIT";
/// The JetStream stream that keeps change notices (`sg.changes.>`) for a
/// week, so a dashboard that was away resumes where it left off.
pub const CHANGES_STREAM: &str = "SG_CHANGES";
/// Where dashboards' replies come (their JetStream pulls): their own
/// inbox prefix, since they may not subscribe to `_INBOX.>`, where the
/// service roles' replies are.
pub const DASHBOARD_INBOX_PREFIX: &str = "_INBOX_dashboard";
/// The durable consumer of change notices the operator makes for a
/// dashboard (`safeguard streams --dashboard NAME`).
pub fn dashboard_consumer(name: &str) -> String {
    format!("sg-dashboard-{}", token(name))
}
/// The key-value bucket of children's wrapped data keys.
pub const KEYS_BUCKET: &str = "sg_child_keys";
/// The key-value bucket of page sessions that were signed out (by nonce).
pub const SIGNED_OUT_BUCKET: &str = "sg_signed_out";

/// Fixed forever: changing it would move subjects between partitions.
pub const PARTITIONS: u32 = 32;

/// The event stream's subjects.
pub const EVENTS_FILTER: &str = "sg.ev.>";
/// The id index's subjects (same stream as the events).
pub const IDS_FILTER: &str = "sg.id.>";
/// The audit stream's subjects.
pub const AUDIT_FILTER: &str = "sg.audit.>";
/// Access events of lookups that found nobody.
pub const LOOKUP: &str = "sg.audit.lookup";
/// Where checkpoints are published.
pub const CHECKPOINT: &str = "sg.audit.checkpoint";

/// Where the statutory returns made of one kind (`cin`), council and
/// collection year (`2024-25`) are recorded, each with its serial number.
pub fn return_subject(kind: &str, council: &str, year: &str) -> String {
    format!("sg.audit.return.{kind}.{council}.{year}")
}

/// Everything dashboards may subscribe to.
pub const CHANGES_FILTER: &str = "sg.changes.>";

/// Where a council's indicators for a period are announced when they change.
pub fn indicators_change_subject(council: &str, period: &str) -> String {
    format!("sg.changes.indicators.{council}.{}", token(period))
}

/// Where a team's caseload is announced when it changes.
pub fn caseload_change_subject(council: &str, team: &str) -> String {
    format!("sg.changes.caseload.{council}.{}", token(team))
}

/// The token of a council's alerts with no team: no team id's token can
/// be it, since [`token`] makes only letters, digits, `-` and `_`.
pub const UNALLOCATED_TOKEN: &str = "~unallocated";

/// Where a team's waiting alerts (counts, no child) are announced when they
/// change; no team is the council's unallocated alerts.
pub fn alerts_change_subject(council: &str, team: Option<&str>) -> String {
    format!("sg.changes.alerts.{council}.{}", team.map_or_else(|| UNALLOCATED_TOKEN.to_owned(), token))
}

/// A subject token for a local id: kept as it is when it is letters,
/// digits, `-` and `_`; otherwise `x` and the hex of its bytes, since `.`
/// would split it into two tokens (team ids may hold `.`, `:` and `/`).
fn token(id: &str) -> String {
    if !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        id.to_owned()
    } else {
        format!("x{}", hex::encode(id.as_bytes()))
    }
}

/// The partition of a subject.
pub fn partition(subject: &Subject) -> u32 {
    partition_of_name(&subject.to_string())
}

/// The partition of a subject by its name (a child's or worker's UUID, a
/// council's code), as the read models store it.
pub fn partition_of_name(name: &str) -> u32 {
    let digest = Sha256::digest(name.as_bytes());
    u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]) % PARTITIONS
}

fn kind_token(subject: &Subject) -> &'static str {
    match subject {
        Subject::Child(_) => "child",
        Subject::Worker(_) => "worker",
        Subject::Council(_) => "council",
    }
}

/// The NATS subject that holds `subject`'s events.
pub fn event_subject(subject: &Subject) -> String {
    format!("sg.ev.{:02}.{}.{}", partition(subject), kind_token(subject), subject)
}

/// The event subject (child or worker id, council code) a NATS subject of
/// the event stream holds, or None for anything else (the id index).
pub fn subject_of(nats_subject: &str) -> Option<&str> {
    let rest = nats_subject.strip_prefix("sg.ev.")?;
    let mut tokens = rest.splitn(3, '.');
    let (_partition, _kind, id) = (tokens.next()?, tokens.next()?, tokens.next()?);
    Some(id)
}

/// Where erasures of children's keys are recorded (audit stream).
pub fn erasure_subject(subject: &Subject) -> String {
    format!("sg.audit.erasure.{:02}.{}", partition(subject), subject)
}

/// The filter of one partition's events, for a projector that owns it.
pub fn partition_filter(partition: u32) -> String {
    format!("sg.ev.{partition:02}.>")
}

/// A share of the partitions, as a projector is given it: `0-15`,
/// `16-31`, `0-7,24-31`, `5`. Every partition named is below
/// [`PARTITIONS`]; none is named twice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partitions(Vec<u32>);

impl Partitions {
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut owned = Vec::new();
        for part in text.split(',').map(str::trim) {
            let (from, to) = part.split_once('-').unwrap_or((part, part));
            let number =
                |t: &str| {
                    t.trim().parse::<u32>().ok().filter(|&n| n < PARTITIONS).ok_or_else(|| {
                        format!("'{part}' is not a partition or a range of them (0 to {})", PARTITIONS - 1)
                    })
                };
            let (from, to) = (number(from)?, number(to)?);
            if from > to {
                return Err(format!("'{part}' runs backwards"));
            }
            for p in from..=to {
                if owned.contains(&p) {
                    return Err(format!("partition {p} is named twice"));
                }
                owned.push(p);
            }
        }
        owned.sort_unstable();
        Ok(Self(owned))
    }

    /// Every partition.
    pub fn all() -> Self {
        Self((0..PARTITIONS).collect())
    }

    /// Partitions by number, as stored (`rebuild_share.partitions`): each
    /// below [`PARTITIONS`], none twice.
    pub fn from_numbers(numbers: impl IntoIterator<Item = u32>) -> Result<Self, String> {
        let mut owned: Vec<u32> = numbers.into_iter().collect();
        owned.sort_unstable();
        if let Some(&p) = owned.iter().find(|&&p| p >= PARTITIONS) {
            return Err(format!("partition {p} is not below {PARTITIONS}"));
        }
        if let Some(w) = owned.windows(2).find(|w| w[0] == w[1]) {
            return Err(format!("partition {} is named twice", w[0]));
        }
        Ok(Self(owned))
    }

    /// Whether every partition is here.
    pub fn is_all(&self) -> bool {
        self.0.len() == PARTITIONS as usize
    }

    /// Whether any partition is in both.
    pub fn overlaps(&self, other: &Self) -> bool {
        self.0.iter().any(|p| other.contains(*p))
    }

    pub fn contains(&self, partition: u32) -> bool {
        self.0.contains(&partition)
    }

    /// The partitions' numbers, in order.
    pub fn numbers(&self) -> &[u32] {
        &self.0
    }

    /// The event-stream filters of these partitions (one `sg.ev.>` for all of them).
    pub fn filters(&self) -> Vec<String> {
        if self.is_all() {
            return vec![EVENTS_FILTER.to_owned()];
        }
        self.0.iter().map(|&p| partition_filter(p)).collect()
    }
}

/// Written as [`Partitions::parse`] reads it, in ranges: `0-15`, `0-7,24-31`.
impl std::fmt::Display for Partitions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut first = true;
        let mut numbers = self.0.iter().copied().peekable();
        while let Some(from) = numbers.next() {
            let mut to = from;
            while numbers.peek() == Some(&(to + 1)) {
                to += 1;
                numbers.next();
            }
            if !first {
                f.write_str(",")?;
            }
            first = false;
            if from == to { write!(f, "{from}")? } else { write!(f, "{from}-{to}")? }
        }
        Ok(())
    }
}

/// The id-index subject of one (publisher, event id). The id is digested so
/// that any printable id fits in one subject token.
pub fn id_subject(source: &PrincipalName, id: &EventId) -> String {
    let digest = Sha256::digest(id.as_str().as_bytes());
    format!("sg.id.{}.{}", source.as_str(), hex::encode(&digest[..16]))
}

/// Where access events about a child are published.
pub fn access_subject(subject: &Subject) -> String {
    format!("sg.audit.access.{:02}.{}", partition(subject), subject)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::ChildId;

    #[test]
    fn subjects_are_stable() {
        let child = Subject::Child(ChildId::parse("7d1c9c1e-8a4e-4c5e-9f3f-0c9f6f3f2b11").expect("id"));
        // Pinned: a change here would strand every stored event.
        assert_eq!(
            event_subject(&child),
            format!("sg.ev.{:02}.child.7d1c9c1e-8a4e-4c5e-9f3f-0c9f6f3f2b11", partition(&child))
        );
        assert_eq!(partition(&child), 7);
        let id =
            id_subject(&PrincipalName::parse("haringey-csc").expect("name"), &EventId::parse("lcs-1").expect("id"));
        assert!(id.starts_with("sg.id.haringey-csc."));
        assert_eq!(subject_of(&event_subject(&child)), Some("7d1c9c1e-8a4e-4c5e-9f3f-0c9f6f3f2b11"));
        assert_eq!(subject_of(&id), None);
        assert_eq!(id.split('.').count(), 4);
        assert_eq!(caseload_change_subject("E09000014", "team-1"), "sg.changes.caseload.E09000014.team-1");
        assert_eq!(caseload_change_subject("E09000014", "a.b"), "sg.changes.caseload.E09000014.x612e62");
        assert_eq!(indicators_change_subject("E09000014", "2024-25"), "sg.changes.indicators.E09000014.2024-25");
        assert_eq!(alerts_change_subject("E09000014", Some("team-1")), "sg.changes.alerts.E09000014.team-1");
        assert_eq!(alerts_change_subject("E09000014", None), "sg.changes.alerts.E09000014.~unallocated");
    }

    #[test]
    fn partitions_parse_ranges_and_lists() {
        let p = Partitions::parse("0-2, 30-31").expect("parses");
        assert_eq!(p.filters(), ["sg.ev.00.>", "sg.ev.01.>", "sg.ev.02.>", "sg.ev.30.>", "sg.ev.31.>"]);
        assert!(p.contains(31) && !p.contains(3));
        assert_eq!(Partitions::parse("0-31").expect("all").filters(), [EVENTS_FILTER]);
        assert_eq!(Partitions::parse("7").expect("one").filters(), ["sg.ev.07.>"]);
        for bad in ["", "32", "3-1", "0-3,2", "a-b", "-1"] {
            assert!(Partitions::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn partitions_are_written_as_they_are_read_and_stored_by_number() {
        for text in ["0-31", "0-15", "16-31", "0-7,24-31", "5", "0,2,4-6"] {
            let p = Partitions::parse(text).expect("parses");
            assert_eq!(p.to_string(), text);
            assert_eq!(Partitions::from_numbers(p.numbers().to_vec()), Ok(p));
        }
        assert!(Partitions::parse("0-31").expect("all").is_all() && !Partitions::parse("0-30").expect("some").is_all());
        let (low, high) = (Partitions::parse("0-15").expect("low"), Partitions::parse("16-31").expect("high"));
        assert!(!low.overlaps(&high) && low.overlaps(&Partitions::parse("15-16").expect("middle")));
        assert!(Partitions::from_numbers([3, 3]).is_err() && Partitions::from_numbers([32]).is_err());
    }
}
