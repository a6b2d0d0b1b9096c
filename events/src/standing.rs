//! A subject's standing: whether it is registered, and which council it
//! belongs to at each point of business time.
//!
//! Why one fold for both sides: the gateway decides scope (who may publish
//! about a child) from the council it folds out of the stream, and the read
//! side decides who may read the child, and whose returns and indicators its
//! facts count in, from the council it folds out of the same events. When
//! the two folded separately, a correction of a registration naming another
//! council moved the child on the read side (the other council's staff read
//! it, its own were refused) while the gateway still held it in the first,
//! so neither side could repair it. Both now fold this, so they cannot
//! disagree about whose a child is.
//!
//! The rules:
//! - A registration (a worker's joining) fixes the council a subject starts
//!   in. Only `child.transferred` moves a child.
//! - A correction may change a registration's or a transfer's other fields
//!   and its business time, never the council it names: the gateway refuses
//!   one that tries ([`Standing::refusal`]). A history stored before that
//!   check is folded with such a council ignored, which is what the gateway
//!   made of it.
//! - A registration or a joining cannot be retracted: the gateway refuses
//!   it, and a stored one takes no part here. A child's record, once opened,
//!   stays open to its council; one registered in the wrong council is
//!   transferred to the right one, which is also the honest history.
//! - A transfer can be retracted: the child is then where it would have
//!   been without it. Transfers take effect in business order (a late
//!   transfer takes its business-time place), ties in recorded order.
//!
//! Pure: events in recorded order in, answers out.

use crate::catalogue::{CorrectedData, EventData, EventType};
use crate::envelope::Subject;
use crate::ids::{CouncilCode, EventId, PrincipalName};
use chrono::{DateTime, Utc};

/// (publisher, id): how an amendment names the event it amends.
type Key = (PrincipalName, EventId);

/// The event that placed the subject in a council.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Placement {
    /// The registration or joining; none for a council, which is its own.
    key: Option<Key>,
    council: CouncilCode,
}

/// A transfer, as it now stands.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Move {
    key: Key,
    council: CouncilCode,
    sequence: u64,
    /// When it was recorded as happening, and when it now stands as
    /// happening (a correction's time, if the latest correction gives one).
    recorded_time: DateTime<Utc>,
    at: DateTime<Utc>,
    retracted: bool,
}

impl Move {
    /// Whether an amendment by `source` naming `id` names this transfer.
    fn named(&self, source: &PrincipalName, id: &EventId) -> bool {
        self.key.0 == *source && self.key.1 == *id
    }
}

/// A subject's standing, folded from its events in recorded order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Standing {
    /// Councils are placed by being named; children and workers by their
    /// first registration or joining.
    placement: Option<Placement>,
    moves: Vec<Move>,
}

impl Standing {
    /// The standing of a subject before its first event.
    pub fn new(subject: &Subject) -> Self {
        let placement = match subject {
            // A council is its own: no event places it, and none moves it.
            Subject::Council(code) => Some(Placement { key: None, council: code.clone() }),
            _ => None,
        };
        Self { placement, moves: Vec::new() }
    }

    /// A child's or worker's standing before its first event (for folds
    /// that know the subject's kind but not its id).
    pub fn unplaced() -> Self {
        Self { placement: None, moves: Vec::new() }
    }

    /// Whether a child has been registered or a worker has joined.
    /// Councils need neither.
    pub fn registered(&self) -> bool {
        self.placement.is_some()
    }

    /// Folds in the next event in recorded order: by `source`, with its
    /// `id`, the subject's `sequence`, and the business `time` it happened.
    pub fn apply(
        &mut self,
        source: &PrincipalName,
        id: &EventId,
        sequence: u64,
        time: DateTime<Utc>,
        data: &EventData,
    ) {
        match data {
            EventData::ChildRegistered(d) => self.place((source.clone(), id.clone()), &d.council),
            EventData::WorkerJoined(d) => self.place((source.clone(), id.clone()), &d.council),
            EventData::ChildTransferred(d) => self.moves.push(Move {
                key: (source.clone(), id.clone()),
                council: d.council.clone(),
                sequence,
                recorded_time: time,
                at: time,
                retracted: false,
            }),
            EventData::RecordCorrected(c) => {
                // Only a transfer's business time can move; its council and
                // everything about a registration stay as first recorded.
                if let Some(m) = self.moves.iter_mut().find(|m| m.named(source, &c.corrects)) {
                    m.at = c.time.as_ref().map_or(m.recorded_time, DateTime::to_utc);
                }
            }
            EventData::RecordRetracted(r) => {
                if let Some(m) = self.moves.iter_mut().find(|m| m.named(source, &r.retracts)) {
                    m.retracted = true;
                }
            }
            _ => {}
        }
    }

    fn place(&mut self, key: Key, council: &CouncilCode) {
        // The gateway registers a child once; the first placement stands.
        if self.placement.is_none() {
            self.placement = Some(Placement { key: Some(key), council: council.clone() });
        }
    }

    /// The council the subject belongs to now: after the last transfer in
    /// business order, else where it was registered.
    pub fn council(&self) -> Option<&CouncilCode> {
        self.standing_moves().last().map(|m| &m.council).or(self.placement.as_ref().map(|p| &p.council))
    }

    /// The council the subject belonged to for a fact at `at` that is the
    /// subject's event `sequence`: after the last transfer at or before it
    /// (ties in recorded order), else where it was registered. A fact dated
    /// before the registration (a late registration) belongs to the council
    /// the child was registered with.
    pub fn council_at(&self, at: DateTime<Utc>, sequence: u64) -> Option<&CouncilCode> {
        self.standing_moves()
            .take_while(|m| (m.at, m.sequence) <= (at, sequence))
            .last()
            .map(|m| &m.council)
            .or(self.placement.as_ref().map(|p| &p.council))
    }

    /// Transfers not retracted, in business order.
    fn standing_moves(&self) -> impl Iterator<Item = &Move> {
        let mut moves: Vec<&Move> = self.moves.iter().filter(|m| !m.retracted).collect();
        moves.sort_by_key(|m| (m.at, m.sequence));
        moves.into_iter()
    }

    /// Why an amendment by `source` may not be stored, as (JSON pointer
    /// within the event, reason): it retracts a registration, or corrects
    /// the council a registration, a joining or a transfer names. `data`
    /// must be resolved (a correction checked against what it corrects).
    pub fn refusal(&self, source: &PrincipalName, data: &EventData) -> Option<(&'static str, String)> {
        let placed = |id: &EventId| {
            self.placement.as_ref().filter(|p| p.key.as_ref().is_some_and(|k| k.0 == *source && k.1 == *id))
        };
        match data {
            EventData::RecordRetracted(r) if placed(&r.retracts).is_some() => Some((
                "/data/retracts",
                "names a registration, which cannot be retracted: a record once opened stays with its council \
                 (correct its details with record.corrected, or move a child with child.transferred)"
                    .to_owned(),
            )),
            EventData::RecordCorrected(c) => {
                let CorrectedData::Resolved(corrected) = &c.data else { return None };
                let named = named_council(corrected)?;
                if let Some(p) = placed(&c.corrects) {
                    return (*named != p.council).then(|| {
                        let how = match corrected.event_type() {
                            EventType::WorkerJoined => "a worker's council is the one they joined",
                            _ => "a child moves council only by child.transferred",
                        };
                        (
                            "/data/data/council",
                            format!("cannot be changed by a correction ({how}); it stays {}", p.council.as_str()),
                        )
                    });
                }
                let m = self.moves.iter().find(|m| m.named(source, &c.corrects))?;
                (*named != m.council).then(|| {
                    (
                        "/data/data/council",
                        format!(
                            "cannot be changed by a correction; it stays {} (retract the transfer and record the right one)",
                            m.council.as_str()
                        ),
                    )
                })
            }
            _ => None,
        }
    }
}

/// Whether events of this type place or move their subject in a council.
pub fn places(t: EventType) -> bool {
    matches!(t, EventType::ChildRegistered | EventType::WorkerJoined | EventType::ChildTransferred)
}

/// The council an event places or moves its subject in.
pub fn named_council(data: &EventData) -> Option<&CouncilCode> {
    match data {
        EventData::ChildRegistered(d) => Some(&d.council),
        EventData::WorkerJoined(d) => Some(&d.council),
        EventData::ChildTransferred(d) => Some(&d.council),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::examples;
    use chrono::TimeZone as _;

    const HARINGEY: &str = "E09000014";
    const ISLINGTON: &str = "E09000019";
    const CAMDEN: &str = "E09000007";

    fn code(c: &str) -> CouncilCode {
        CouncilCode::parse(c).expect("a code")
    }

    fn publisher() -> PrincipalName {
        PrincipalName::parse("haringey-csc").expect("a name")
    }

    fn id(s: &str) -> EventId {
        EventId::parse(s).expect("an id")
    }

    fn day(d: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 1, d, 10, 0, 0).single().expect("a time")
    }

    fn data(event_type: EventType, value: serde_json::Value) -> EventData {
        let mut problems = crate::Problems::new();
        EventData::parse(event_type, &value, "/data", &mut problems).expect("valid data")
    }

    fn registration(council: &str) -> EventData {
        let mut value = examples::data(EventType::ChildRegistered);
        value["council"] = council.into();
        data(EventType::ChildRegistered, value)
    }

    fn transfer(council: &str) -> EventData {
        data(EventType::ChildTransferred, serde_json::json!({"council": council}))
    }

    fn correction(corrects: &str, corrected: EventData, time: Option<&str>) -> EventData {
        let mut value = serde_json::json!({"corrects": corrects, "reason": "entered wrongly", "data": corrected});
        if let Some(t) = time {
            value["time"] = t.into();
        }
        let mut d = data(EventType::RecordCorrected, value);
        if let EventData::RecordCorrected(c) = &mut d {
            c.resolve(corrected.event_type(), "/data").expect("fits");
        }
        d
    }

    fn retraction(retracts: &str) -> EventData {
        data(EventType::RecordRetracted, serde_json::json!({"retracts": retracts, "reason": "entered in error"}))
    }

    /// A child registered in Haringey on the 2nd, and the standing after `then`.
    fn child(then: &[(&str, u64, DateTime<Utc>, EventData)]) -> Standing {
        let mut s = Standing::unplaced();
        s.apply(&publisher(), &id("reg"), 1, day(2), &registration(HARINGEY));
        for (event_id, sequence, at, d) in then {
            s.apply(&publisher(), &id(event_id), *sequence, *at, d);
        }
        s
    }

    #[test]
    fn a_registration_places_a_child_and_facts_before_it_belong_to_its_council() {
        let s = child(&[]);
        assert!(s.registered());
        assert_eq!(s.council(), Some(&code(HARINGEY)));
        assert_eq!(s.council_at(day(1), 5), Some(&code(HARINGEY)), "a late registration covers earlier facts");
        assert!(!Standing::unplaced().registered());
        let council = Subject::Council(code(CAMDEN));
        assert_eq!(Standing::new(&council).council(), Some(&code(CAMDEN)));
    }

    #[test]
    fn a_correction_never_moves_a_child_and_the_gateway_refuses_one_that_tries() {
        let moving = correction("reg", registration(ISLINGTON), None);
        let s = child(&[("fix", 2, day(3), moving.clone())]);
        assert_eq!(s.council(), Some(&code(HARINGEY)), "a stored correction's council is ignored");
        let (pointer, why) = child(&[]).refusal(&publisher(), &moving).expect("refused");
        assert_eq!(pointer, "/data/data/council");
        assert!(why.contains("child.transferred"), "{why}");
        let other_fields = correction("reg", registration(HARINGEY), None);
        assert_eq!(
            child(&[]).refusal(&publisher(), &other_fields),
            None,
            "the rest of a registration can be corrected"
        );
        let someone_else = PrincipalName::parse("met-police").expect("a name");
        assert_eq!(child(&[]).refusal(&someone_else, &moving), None, "names nothing of that publisher's");
    }

    #[test]
    fn a_registration_cannot_be_retracted_and_a_stored_retraction_changes_nothing() {
        let s = child(&[("undo", 2, day(3), retraction("reg"))]);
        assert!(s.registered());
        assert_eq!(s.council(), Some(&code(HARINGEY)));
        let (pointer, _) = child(&[]).refusal(&publisher(), &retraction("reg")).expect("refused");
        assert_eq!(pointer, "/data/retracts");
        assert_eq!(child(&[]).refusal(&publisher(), &retraction("other")), None);
    }

    #[test]
    fn transfers_take_effect_in_business_order_and_can_be_retracted_or_moved_in_time() {
        // To Islington on the 10th, recorded first; to Camden on the 5th, recorded late.
        let s = child(&[("t1", 2, day(10), transfer(ISLINGTON)), ("t2", 3, day(5), transfer(CAMDEN))]);
        assert_eq!(s.council(), Some(&code(ISLINGTON)), "the later in business time stands");
        assert_eq!(s.council_at(day(4), 9), Some(&code(HARINGEY)));
        assert_eq!(s.council_at(day(7), 1), Some(&code(CAMDEN)));
        assert_eq!(s.council_at(day(10), 1), Some(&code(CAMDEN)), "the same time, recorded before the transfer");
        assert_eq!(s.council_at(day(10), 2), Some(&code(ISLINGTON)), "the transfer itself");

        let retracted = child(&[("t1", 2, day(10), transfer(ISLINGTON)), ("undo", 3, day(11), retraction("t1"))]);
        assert_eq!(retracted.council(), Some(&code(HARINGEY)));
        assert_eq!(retracted.refusal(&publisher(), &retraction("t1")), None, "a transfer may be retracted");

        let later = correction("t1", transfer(ISLINGTON), Some("2025-01-20T10:00:00Z"));
        let moved = child(&[("t1", 2, day(10), transfer(ISLINGTON)), ("fix", 3, day(11), later)]);
        assert_eq!(moved.council_at(day(15), 9), Some(&code(HARINGEY)), "its corrected date stands");
        assert_eq!(moved.council(), Some(&code(ISLINGTON)));

        let elsewhere = correction("t1", transfer(CAMDEN), None);
        let s = child(&[("t1", 2, day(10), transfer(ISLINGTON))]);
        assert_eq!(s.refusal(&publisher(), &elsewhere).map(|r| r.0), Some("/data/data/council"));
        let s = child(&[("t1", 2, day(10), transfer(ISLINGTON)), ("fix", 3, day(11), elsewhere)]);
        assert_eq!(s.council(), Some(&code(ISLINGTON)), "a stored one is folded with its council ignored");
    }
}
