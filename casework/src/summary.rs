//! A readable one-line summary of each event, for the chronology.
//!
//! Written only from codes, dates and ids: never from free text or a
//! person's details, which stay sealed. Pure: the stored event in, a line out.

use events::EventType;
use events::codes::*;
use serde_json::{Map, Value};

fn text<'a>(data: &'a Map<String, Value>, field: &str) -> &'a str {
    data.get(field).and_then(Value::as_str).unwrap_or("?")
}

fn flag(data: &Map<String, Value>, field: &str) -> Option<bool> {
    data.get(field).and_then(Value::as_bool)
}

/// "label (code)" for a code of a code set, or the raw code if unknown.
fn coded<C: Copy>(
    data: &Map<String, Value>,
    field: &str,
    parse: fn(&str) -> Option<C>,
    label: fn(C) -> &'static str,
) -> String {
    let code = text(data, field);
    match parse(code) {
        Some(c) => format!("{} ({code})", label(c)),
        None => code.to_owned(),
    }
}

fn source(data: &Map<String, Value>) -> String {
    coded(data, "source", ReferralSource::from_code, ReferralSource::label)
}

fn category(data: &Map<String, Value>) -> String {
    coded(data, "category", CategoryOfAbuse::from_code, CategoryOfAbuse::label)
}

fn yes_no(value: Option<bool>, yes: &str, no: &str) -> String {
    match value {
        Some(true) => yes.to_owned(),
        Some(false) => no.to_owned(),
        None => "?".to_owned(),
    }
}

/// The summary line of an event of `event_type` whose stored data is `data`.
pub fn summarise(event_type: EventType, data: &Map<String, Value>) -> String {
    use EventType as T;
    match event_type {
        T::ChildRegistered => {
            let born = data.get("birth_date").and_then(Value::as_str).map(|d| format!("born {d}"));
            let due = data.get("expected_birth_date").and_then(Value::as_str).map(|d| format!("expected {d}"));
            format!(
                "Child registered with council {} as {}, sex {}, {}",
                text(data, "council"),
                text(data, "la_child_id"),
                text(data, "sex"),
                born.or(due).unwrap_or_else(|| "birth date not given".into())
            )
        }
        T::ChildDetailsUpdated => {
            let mut fields: Vec<&str> = data.keys().map(String::as_str).collect();
            fields.sort_unstable();
            format!("Child's details updated: {}", fields.join(", "))
        }
        T::ChildTransferred => format!("Case transferred to council {}", text(data, "council")),
        T::ChildDied => format!("Child died on {}", text(data, "date")),
        T::RelationshipRecorded => format!(
            "Relationship recorded: {} ({})",
            coded(data, "role", RelationshipRole::from_code, RelationshipRole::label),
            text(data, "person_id")
        ),
        T::ContactRecorded => {
            let outcome = data
                .get("outcome")
                .and_then(Value::as_str)
                .and_then(ContactOutcome::from_code)
                .map(|o| format!(": {}", o.label()))
                .unwrap_or_default();
            format!("Contact from {}{outcome}", source(data))
        }
        T::ReferralReceived => {
            let need = data
                .get("primary_need")
                .and_then(Value::as_str)
                .and_then(PrimaryNeed::from_code)
                .map(|n| format!(": primary need {}, {}", n.code(), n.label()))
                .unwrap_or_default();
            let nfa = if flag(data, "nfa") == Some(true) { " (no further action)" } else { "" };
            format!("Referral {} from {}{need}{nfa}", text(data, "referral_id"), source(data))
        }
        T::AssessmentStarted => {
            format!("Assessment {} started (referral {})", text(data, "assessment_id"), text(data, "referral_id"))
        }
        T::AssessmentCompleted => {
            let factors: Vec<&str> = data
                .get("factors")
                .and_then(Value::as_array)
                .map(|f| f.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            format!(
                "Assessment {} completed: factors {}; child {}; {}",
                text(data, "assessment_id"),
                factors.join(", "),
                yes_no(flag(data, "child_seen"), "seen", "not seen"),
                yes_no(flag(data, "needs_support"), "needs support", "no support needed")
            )
        }
        T::StrategyDiscussionHeld => {
            let decision = if text(data, "decision") == "s47" { "section 47 enquiry" } else { "no section 47 enquiry" };
            let agencies = data.get("agencies").and_then(Value::as_array).map_or(0, Vec::len);
            format!("Strategy discussion {} with {agencies} agencies: {decision}", text(data, "discussion_id"))
        }
        T::S47Started => {
            format!("Section 47 enquiry {} started (referral {})", text(data, "s47_id"), text(data, "referral_id"))
        }
        T::S47Completed => format!(
            "Section 47 enquiry {} completed: {}",
            text(data, "s47_id"),
            yes_no(flag(data, "icpc_required"), "initial conference required", "no initial conference")
        ),
        T::ConferenceHeld => format!(
            "{} {}: {}",
            ConferenceKind::from_code(text(data, "kind")).map_or("Conference", |k| k.label()),
            text(data, "conference_id"),
            ConferenceOutcome::from_code(text(data, "outcome")).map_or("?", ConferenceOutcome::label)
        ),
        T::CpPlanStarted => format!("Child protection plan {} started: {}", text(data, "plan_id"), category(data)),
        T::CpPlanCategoryChanged => {
            format!("Child protection plan {} category now {}", text(data, "plan_id"), category(data))
        }
        T::CpPlanEnded => format!("Child protection plan {} ended", text(data, "plan_id")),
        T::CinPlanStarted => format!("Child in need plan {} started", text(data, "plan_id")),
        T::CinPlanEnded => format!("Child in need plan {} ended", text(data, "plan_id")),
        T::ChildSeen => format!(
            "Child seen{} ({}) by {}",
            if flag(data, "seen_alone") == Some(true) { " alone" } else { "" },
            SeenContext::from_code(text(data, "context")).map_or("?", SeenContext::label),
            text(data, "seen_by")
        ),
        T::CaseAllocated => {
            format!("Case allocated to worker {} in team {}", text(data, "worker_id"), text(data, "team_id"))
        }
        T::CaseDeallocated => format!("Case no longer held by worker {}", text(data, "worker_id")),
        T::CaseClosed => format!(
            "Case closed (referral {}): {}",
            text(data, "referral_id"),
            coded(data, "reason", ClosureReason::from_code, ClosureReason::label)
        ),
        T::ConcernRaised => {
            let about = data
                .get("category")
                .and_then(Value::as_str)
                .and_then(CategoryOfAbuse::from_code)
                .map(|c| format!(" about {}", c.label()))
                .unwrap_or_default();
            format!("Concern {} raised{about}", text(data, "concern_id"))
        }
        T::InformationShared => "Information shared with another agency".to_owned(),
        T::CourtApplicationFiled => format!(
            "Court application {} filed: {}",
            text(data, "proceedings_id"),
            ApplicationKind::from_code(text(data, "kind")).map_or("?", ApplicationKind::label)
        ),
        T::CourtHearingHeld => format!("Court hearing in proceedings {}", text(data, "proceedings_id")),
        T::CourtOrderMade => format!(
            "Court made {} in proceedings {}",
            CourtOrder::from_code(text(data, "order")).map_or("an order", CourtOrder::label),
            text(data, "proceedings_id")
        ),
        T::CourtProceedingsConcluded => format!("Proceedings {} concluded", text(data, "proceedings_id")),
        T::RecordCorrected => format!("Correction of entry {}", text(data, "corrects")),
        T::RecordRetracted => format!("Entry {} retracted as made in error", text(data, "retracts")),
        T::RecordSealed => "Record sealed".to_owned(),
        T::RecordUnsealed => "Record unsealed".to_owned(),
        T::ReviewOpened => format!(
            "{} {} opened",
            ReviewKind::from_code(text(data, "kind")).map_or("Review", ReviewKind::label),
            text(data, "review_id")
        ),
        T::ReviewClosed => format!("Review {} closed", text(data, "review_id")),
        T::WorkerJoined | T::WorkerChanged | T::WorkerLeft | T::CouncilConfigured => event_type.name().to_owned(),
    }
}

/// The id of the event an amendment names, if `event_type` amends one.
pub fn amends(event_type: EventType, data: &Map<String, Value>) -> Option<String> {
    let field = match event_type {
        EventType::RecordCorrected => "corrects",
        EventType::RecordRetracted => "retracts",
        _ => return None,
    };
    data.get(field).and_then(Value::as_str).map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use events::examples;

    fn summary_of(t: EventType) -> String {
        let data = examples::data(t);
        summarise(t, data.as_object().expect("object"))
    }

    #[test]
    fn summaries_read_like_a_chronology() {
        assert_eq!(
            summary_of(EventType::ReferralReceived),
            "Referral R-4411 from police (6): primary need N1, abuse or neglect"
        );
        assert_eq!(summary_of(EventType::CpPlanStarted), "Child protection plan CPP-1 started: neglect (NEG)");
        assert_eq!(
            summary_of(EventType::ContactRecorded),
            "Contact from health: health visitor (3B): referred to children's social care"
        );
    }

    #[test]
    fn summaries_never_carry_free_text_or_personal_details() {
        for &t in EventType::ALL {
            let line = summary_of(t);
            for secret in [
                "Sam",
                "Alex",
                "Example",
                "9434765919",
                "bruising",
                "hungry",
                "Risks reduced",
                "Wrong referral",
                "wrong child",
                "adopted;",
                "timetable",
            ] {
                assert!(!line.contains(secret), "{t}: {line}");
            }
        }
    }
}
