//! The checks of one event against the state of its subject, as planning
//! makes them in order (`ingest::Ingest::plan`). Pure: the state in, at
//! most one problem out, so each rule is tested here without NATS.

use crate::error::FieldError;
use crate::state::SubjectState;
use events::catalogue::{EventData, EventType};
use events::envelope::{ReceivedEvent, Subject};
use events::ids::CouncilCode;
use events::standing::named_council;
use platform::principals::Principal;

/// References to the subject's own history: a child is registered once
/// and a worker joins once, and nothing else comes before either.
pub fn references(i: usize, event: &ReceivedEvent, st: &SubjectState) -> Option<FieldError> {
    let problem = match event.event_type {
        EventType::ChildRegistered if st.standing.registered() => {
            "is already registered: a child is registered once (use child.details_updated)"
        }
        EventType::WorkerJoined if st.standing.registered() => "has already joined: use worker.changed",
        EventType::ChildRegistered | EventType::WorkerJoined | EventType::CouncilConfigured => return None,
        _ if !st.standing.registered() => match event.subject {
            Subject::Worker(_) => "is not a known worker: publish worker.joined first",
            _ => "is not a registered child: publish child.registered first",
        },
        _ => return None,
    };
    Some(FieldError::new(i, "/subject", problem))
}

/// The council the subject belongs to for this event: for a registration
/// or a worker joining, the one it names; otherwise (a transfer included:
/// the sending council decides) the one it belongs to now.
pub fn council(event: &ReceivedEvent, st: &SubjectState) -> Option<CouncilCode> {
    match event.event_type {
        EventType::ChildRegistered | EventType::WorkerJoined => named_council(&event.data).cloned(),
        _ => st.standing.council().cloned(),
    }
}

/// Council scope: the principal may publish about this subject's council.
pub fn scope(i: usize, principal: &Principal, event: &ReceivedEvent, st: &SubjectState) -> Option<FieldError> {
    let council = council(event, st)?;
    if principal.councils.allows(&council) {
        return None;
    }
    let pointer = if matches!(event.event_type, EventType::ChildRegistered | EventType::WorkerJoined) {
        "/data/council"
    } else {
        "/subject"
    };
    Some(FieldError::new(
        i,
        pointer,
        format!("belongs to council {}, outside this principal's scope", council.as_str()),
    ))
}

/// The publisher's view of the subject's position, checked on the
/// subject's first event in the request.
pub fn expectation(i: usize, first_of_subject: bool, event: &ReceivedEvent, st: &SubjectState) -> Option<FieldError> {
    let expected = event.expected_sequence.filter(|_| first_of_subject)?;
    (expected != st.sequence).then(|| {
        FieldError::new(
            i,
            "/expectedsequence",
            format!("is {expected}, but the subject is at sequence {}", st.sequence),
        )
    })
}

/// Amendments name an earlier event of this subject by this publisher,
/// and never a retraction; and they leave the subject's standing alone: a
/// registration is never retracted, and no correction changes the council
/// a registration or a transfer names (events::standing).
pub fn amendment_target(
    i: usize,
    principal: &Principal,
    event: &ReceivedEvent,
    st: &SubjectState,
) -> Option<FieldError> {
    let (pointer, target) = match &event.data {
        EventData::RecordCorrected(c) => ("/data/corrects", c.corrects.clone()),
        EventData::RecordRetracted(r) => ("/data/retracts", r.retracts.clone()),
        _ => return None,
    };
    match st.ids.get(&(principal.name.clone(), target)) {
        None => Some(FieldError::new(i, pointer, "names no earlier event of this publisher in this subject's history")),
        Some(k) if k.event_type == EventType::RecordRetracted => {
            Some(FieldError::new(i, pointer, "names a retraction, which cannot itself be amended"))
        }
        Some(_) => {
            st.standing.refusal(&principal.name, &event.data).map(|(pointer, why)| FieldError::new(i, pointer, why))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Known;
    use chrono::{TimeZone as _, Utc};
    use events::examples;
    use events::ids::{EventId, PrincipalName};
    use platform::principals::{Principals, token_sha256};

    fn received(event_type: EventType, id: &str, data: serde_json::Value) -> ReceivedEvent {
        let mut value = examples::event(event_type, id, "2025-01-10T10:00:00Z");
        value["data"] = data;
        let now = Utc.with_ymd_and_hms(2025, 1, 10, 10, 0, 0).single().expect("a time");
        events::parse_received(&value, now).expect("a valid example")
    }

    fn example(event_type: EventType, id: &str) -> ReceivedEvent {
        received(event_type, id, examples::data(event_type))
    }

    fn principal(councils: &str) -> Principal {
        let text = format!(
            "[[principal]]\nname = \"haringey-csc\"\ntoken_sha256 = \"{}\"\nroles = [\"publish\"]\ncouncils = [{councils}]\nevent_types = [\"*\"]\n",
            token_sha256("t")
        );
        Principals::from_text(&text).expect("valid").authenticate("t").expect("known")
    }

    fn registered_child(council: &str) -> SubjectState {
        let event = example(EventType::ChildSeen, "x");
        let mut st = SubjectState::new(&event.subject);
        let mut registration = examples::data(EventType::ChildRegistered);
        registration["council"] = council.into();
        let registration = received(EventType::ChildRegistered, "reg", registration);
        let key = (PrincipalName::parse("haringey-csc").expect("a name"), registration.id.clone());
        st.advance(key, registration.time.to_utc(), &registration.data, 1, events::Digest::ZERO, 1);
        st.sequence = 3;
        st
    }

    #[test]
    fn a_child_is_registered_once_and_nothing_comes_before_its_registration() {
        let registration = example(EventType::ChildRegistered, "r");
        let fresh = SubjectState::new(&registration.subject);
        assert_eq!(references(0, &registration, &fresh), None);
        let again = references(2, &registration, &registered_child(examples::COUNCIL)).expect("refused");
        assert_eq!((again.index, again.pointer.as_str()), (2, "/subject"));
        assert!(again.message.contains("registered once"));
        let seen = example(EventType::ChildSeen, "s");
        assert!(references(0, &seen, &fresh).expect("refused").message.contains("publish child.registered first"));
        assert_eq!(references(0, &seen, &registered_child(examples::COUNCIL)), None);
    }

    #[test]
    fn scope_is_the_named_council_for_a_registration_and_the_sending_one_for_a_transfer() {
        let haringey = principal("\"E09000014\"");
        let registration = example(EventType::ChildRegistered, "r");
        let fresh = SubjectState::new(&registration.subject);
        assert_eq!(scope(0, &haringey, &registration, &fresh), None);
        let islington = principal("\"E09000019\"");
        let refused = scope(0, &islington, &registration, &fresh).expect("refused");
        assert_eq!(refused.pointer, "/data/council");
        // A transfer to Islington is Haringey's to publish, not Islington's.
        let transfer = example(EventType::ChildTransferred, "t");
        let st = registered_child(examples::COUNCIL);
        assert_eq!(scope(0, &haringey, &transfer, &st), None);
        assert_eq!(scope(0, &islington, &transfer, &st).expect("refused").pointer, "/subject");
    }

    #[test]
    fn the_expected_sequence_is_checked_on_a_subjects_first_event_only() {
        let mut seen = example(EventType::ChildSeen, "s");
        let st = registered_child(examples::COUNCIL);
        assert_eq!(expectation(0, true, &seen, &st), None, "no expectation sent");
        seen.expected_sequence = Some(3);
        assert_eq!(expectation(0, true, &seen, &st), None);
        seen.expected_sequence = Some(2);
        let refused = expectation(0, true, &seen, &st).expect("refused");
        assert_eq!(refused.message, "is 2, but the subject is at sequence 3");
        assert_eq!(expectation(0, false, &seen, &st), None, "later events follow the first");
    }

    #[test]
    fn an_amendment_names_an_earlier_event_of_the_same_publisher_and_never_a_retraction() {
        let haringey = principal("\"E09000014\"");
        let mut st = registered_child(examples::COUNCIL);
        let retraction =
            received(EventType::RecordRetracted, "x", serde_json::json!({"retracts": "v-1", "reason": "wrong child"}));
        let missing = amendment_target(0, &haringey, &retraction, &st).expect("refused");
        assert_eq!(missing.pointer, "/data/retracts");
        let key =
            |id: &str| (PrincipalName::parse("haringey-csc").expect("a name"), EventId::parse(id).expect("an id"));
        st.ids.insert(key("v-1"), Known { event_type: EventType::ChildSeen, sequence: 2, stream_seq: 9 });
        assert_eq!(amendment_target(0, &haringey, &retraction, &st), None);
        st.ids.insert(key("v-1"), Known { event_type: EventType::RecordRetracted, sequence: 2, stream_seq: 9 });
        assert!(amendment_target(0, &haringey, &retraction, &st).expect("refused").message.contains("retraction"));
        assert_eq!(amendment_target(0, &haringey, &example(EventType::ChildSeen, "s"), &st), None);
    }

    #[test]
    fn an_amendment_leaves_the_subjects_standing_alone() {
        let haringey = principal("\"E09000014\"");
        let st = registered_child(examples::COUNCIL);
        let retraction =
            received(EventType::RecordRetracted, "x", serde_json::json!({"retracts": "reg", "reason": "in error"}));
        let refused = amendment_target(0, &haringey, &retraction, &st).expect("refused");
        assert_eq!(refused.pointer, "/data/retracts");
        let mut elsewhere = examples::data(EventType::ChildRegistered);
        elsewhere["council"] = "E09000019".into();
        let mut correction = received(
            EventType::RecordCorrected,
            "y",
            serde_json::json!({"corrects": "reg", "reason": "wrong council", "data": elsewhere}),
        );
        if let EventData::RecordCorrected(c) = &mut correction.data {
            c.resolve(EventType::ChildRegistered, "/data").expect("fits a registration");
        }
        let refused = amendment_target(0, &haringey, &correction, &st).expect("refused");
        assert_eq!(refused.pointer, "/data/data/council");
    }
}
