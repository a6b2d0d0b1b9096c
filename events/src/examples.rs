//! One valid example of every event type, used by the tests of every crate,
//! by the README and by the published test vectors.
//!
//! The match below is exhaustive, so a new catalogue type cannot be added
//! without an example, and the tests that pin each type's JSON shape cover it
//! automatically.

use crate::catalogue::{EventType, SubjectKind};
use serde_json::{Value, json};

/// A child id used throughout the examples.
pub const CHILD: &str = "7d1c9c1e-8a4e-4c5e-9f3f-0c9f6f3f2b11";
/// A worker id used throughout the examples.
pub const WORKER: &str = "3f9a7c2e-1b4d-4e8f-a6c5-9d2e8b7f1a34";
/// Haringey.
pub const COUNCIL: &str = "E09000014";

/// A valid `data` object for `event_type`, with every optional field that
/// has a value in the example present, in the order the type serialises.
pub fn data(event_type: EventType) -> Value {
    use EventType as T;
    match event_type {
        T::ChildRegistered => json!({
            "council": COUNCIL, "la_child_id": "HAR0001234", "sex": "M", "birth_date": "2023-08-02",
            "ethnicity": "WBRI", "disabilities": ["NONE"],
            "person": {"given_name": "Sam", "family_name": "Example", "nhs_number": "9434765919",
                       "upn_unknown": "UN6", "address": "1 Example Road, London N17 0AA"}
        }),
        T::ChildDetailsUpdated => {
            json!({"ethnicity": "MWBC", "person": {"address": "2 Example Road, London N17 0AB"}})
        }
        T::ChildTransferred => json!({"council": "E09000019"}),
        T::ChildDied => json!({"date": "2025-03-01"}),
        T::RelationshipRecorded => json!({
            "person_id": "P-77", "role": "mother", "person": {"given_name": "Alex", "family_name": "Example"}
        }),
        T::ContactRecorded => json!({
            "contact_id": "C-1001", "source": "3B", "summary": "Health visitor worried about bruising", "outcome": "referral"
        }),
        T::ReferralReceived => {
            json!({"referral_id": "R-4411", "source": "6", "nfa": false, "primary_need": "N1"})
        }
        T::AssessmentStarted => json!({"assessment_id": "A-1", "referral_id": "R-4411"}),
        T::AssessmentCompleted => {
            json!({"assessment_id": "A-1", "factors": ["3B", "16A"], "child_seen": true, "needs_support": true})
        }
        T::StrategyDiscussionHeld => json!({
            "discussion_id": "SD-1", "referral_id": "R-4411", "agencies": ["police", "health", "social care"], "decision": "s47"
        }),
        T::S47Started => {
            json!({"s47_id": "S47-1", "referral_id": "R-4411", "discussion_id": "SD-1"})
        }
        T::S47Completed => json!({"s47_id": "S47-1", "icpc_required": true}),
        T::ConferenceHeld => {
            json!({"conference_id": "CC-1", "kind": "initial", "s47_id": "S47-1", "outcome": "plan"})
        }
        T::CpPlanStarted => json!({"plan_id": "CPP-1", "conference_id": "CC-1", "category": "NEG"}),
        T::CpPlanCategoryChanged => json!({"plan_id": "CPP-1", "category": "EMO"}),
        T::CpPlanEnded => {
            json!({"plan_id": "CPP-1", "reason": "Risks reduced; stepped down to a child in need plan"})
        }
        T::CinPlanStarted => json!({"plan_id": "CIN-1", "referral_id": "R-4411"}),
        T::CinPlanEnded | T::CinPlanReviewed => json!({"plan_id": "CIN-1"}),
        T::ChildSeen => {
            json!({"seen_by": WORKER, "seen_alone": true, "context": "statutory_visit", "agency": "Haringey children's services"})
        }
        T::CaseAllocated => json!({"worker_id": WORKER, "team_id": "T-NORTH-1"}),
        T::CaseDeallocated => json!({"worker_id": WORKER}),
        T::CaseClosed => json!({"referral_id": "R-4411", "reason": "RC7"}),
        T::ConcernRaised => {
            json!({"concern_id": "CON-9", "summary": "Child arrived at school hungry three days running", "category": "NEG"})
        }
        T::InformationShared => {
            json!({"with_agency": "police", "purpose": "Strategy discussion", "summary": "Chronology of contacts shared"})
        }
        T::PreProceedingsStarted | T::FamilyGroupMeetingOffered | T::FamilyGroupMeetingHeld => {
            json!({"pre_proceedings_id": "PP-1"})
        }
        T::PreProceedingsLetterSent => json!({"pre_proceedings_id": "PP-1", "letter": "before_proceedings"}),
        T::PreProceedingsMeetingHeld => json!({"pre_proceedings_id": "PP-1", "kind": "initial"}),
        T::PreProceedingsDecided => json!({"pre_proceedings_id": "PP-1", "outcome": "issue_proceedings"}),
        T::CourtApplicationFiled => json!({
            "proceedings_id": "PR-1", "kind": "care", "court": "East London Family Court",
            "pre_proceedings_letter_date": "2025-02-01", "pre_proceedings_id": "PP-1"
        }),
        T::CourtHearingHeld => {
            json!({"proceedings_id": "PR-1", "summary": "Case management hearing; timetable set"})
        }
        T::CourtOrderMade => json!({"proceedings_id": "PR-1", "order": "interim_care"}),
        T::CourtProceedingsConcluded => json!({"proceedings_id": "PR-1"}),
        T::RecordCorrected => json!({
            "corrects": "lcs-20250114-000187", "reason": "Wrong referral source keyed",
            "data": {"referral_id": "R-4411", "source": "3A", "nfa": false, "primary_need": "N1"}
        }),
        T::RecordRetracted => {
            json!({"retracts": "lcs-20250114-000187", "reason": "Entered on the wrong child's record"})
        }
        T::RecordSealed => json!({"reason": "Child adopted; record sealed by court order"}),
        T::RecordUnsealed => json!({"reason": "Seal lifted for the practice review"}),
        T::ReviewOpened => {
            json!({"review_id": "CSPR-2025-01", "kind": "cspr", "reviewers": ["haringey-cspr-panel"]})
        }
        T::ReviewClosed => json!({"review_id": "CSPR-2025-01"}),
        T::AlertAcknowledged => json!({
            "alert_id": "0b9d6c1e-2f57-5e1c-9a43-6d0f4f1b7a21", "note": "Spoke to the school; visit brought forward"
        }),
        T::WorkerJoined => {
            json!({"council": COUNCIL, "team_id": "T-NORTH-1", "role": "social_worker", "fte": 1.0, "agency_staff": false})
        }
        T::WorkerChanged => json!({"team_id": "T-NORTH-2", "fte": 0.8}),
        T::WorkerLeft => json!({}),
        T::CouncilConfigured => json!({
            "effective_from": "2024-04-01", "dfe_la_code": "309", "population_0_17": 58000,
            "assessment_timescale_days": 45, "visit_interval_days": 10, "caseload_threshold": 20,
            "funded_social_worker_fte": 120.5, "pattern_agencies": 2, "pattern_events": 3,
            "pattern_window_days": 30, "acknowledge_within_days": 1, "alert_lead_days": 2
        }),
    }
}

/// The example subject for a type.
pub fn subject(event_type: EventType) -> &'static str {
    match event_type.subject_kind() {
        SubjectKind::Child => CHILD,
        SubjectKind::Worker => WORKER,
        SubjectKind::Council => COUNCIL,
    }
}

/// A whole received event of `event_type` with the example data.
pub fn event(event_type: EventType, id: &str, time: &str) -> Value {
    json!({
        "specversion": "1.0",
        "id": id,
        "type": event_type.name(),
        "subject": subject(event_type),
        "time": time,
        "data": data(event_type),
    })
}
