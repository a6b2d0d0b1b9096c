//! A readable one-line summary of each event, for the chronology.
//!
//! Written only from codes, dates and ids: never from free text or a
//! person's details, which stay sealed. Pure: the stored event in, a line out.

use events::EventData;
use events::catalogue::*;
use events::codes::*;
use events::ids::EventId;

/// "label (code)" for a code of a code set.
fn coded(label: &str, code: &str) -> String {
    format!("{label} ({code})")
}

fn yes_no(value: bool, yes: &str, no: &str) -> String {
    (if value { yes } else { no }).to_owned()
}

/// The names of the fields a details update gives, in name order.
fn updated_fields(d: &ChildDetailsUpdated) -> Vec<&'static str> {
    let given = [
        ("birth_date", d.birth_date.is_some()),
        ("disabilities", d.disabilities.is_some()),
        ("ethnicity", d.ethnicity.is_some()),
        ("expected_birth_date", d.expected_birth_date.is_some()),
        ("la_child_id", d.la_child_id.is_some()),
        ("person", d.person.is_some()),
        ("sex", d.sex.is_some()),
    ];
    given.into_iter().filter(|(_, g)| *g).map(|(name, _)| name).collect()
}

/// The summary line of an event whose stored data is `data`.
pub fn summarise(data: &EventData) -> String {
    use EventData as D;
    match data {
        D::ChildRegistered(d) => {
            let born = d.birth_date.map(|d| format!("born {d}"));
            let due = d.expected_birth_date.map(|d| format!("expected {d}"));
            format!(
                "Child registered with council {} as {}, sex {}, {}",
                d.council.as_str(),
                d.la_child_id.as_str(),
                d.sex.code(),
                born.or(due).unwrap_or_else(|| "birth date not given".into())
            )
        }
        D::ChildDetailsUpdated(d) => format!("Child's details updated: {}", updated_fields(d).join(", ")),
        D::ChildTransferred(d) => format!("Case transferred to council {}", d.council.as_str()),
        D::ChildDied(d) => format!("Child died on {}", d.date),
        D::RelationshipRecorded(d) => {
            format!("Relationship recorded: {} ({})", coded(d.role.label(), d.role.code()), d.person_id.as_str())
        }
        D::ContactRecorded(d) => {
            let outcome = d.outcome.map(|o| format!(": {}", o.label())).unwrap_or_default();
            format!("Contact from {}{outcome}", coded(d.source.label(), d.source.code()))
        }
        D::ReferralReceived(d) => {
            let need =
                d.primary_need.map(|n| format!(": primary need {}, {}", n.code(), n.label())).unwrap_or_default();
            let nfa = if d.nfa { " (no further action)" } else { "" };
            format!("Referral {} from {}{need}{nfa}", d.referral_id.as_str(), coded(d.source.label(), d.source.code()))
        }
        D::AssessmentStarted(d) => {
            format!("Assessment {} started (referral {})", d.assessment_id.as_str(), d.referral_id.as_str())
        }
        D::AssessmentCompleted(d) => {
            let factors: Vec<&str> = d.factors.iter().map(|f| f.code()).collect();
            format!(
                "Assessment {} completed: factors {}; child {}; {}",
                d.assessment_id.as_str(),
                factors.join(", "),
                yes_no(d.child_seen, "seen", "not seen"),
                yes_no(d.needs_support, "needs support", "no support needed")
            )
        }
        D::StrategyDiscussionHeld(d) => {
            let decision = match d.decision {
                StrategyDecision::S47 => "section 47 enquiry",
                _ => "no section 47 enquiry",
            };
            format!("Strategy discussion {} with {} agencies: {decision}", d.discussion_id.as_str(), d.agencies.len())
        }
        D::S47Started(d) => {
            format!("Section 47 enquiry {} started (referral {})", d.s47_id.as_str(), d.referral_id.as_str())
        }
        D::S47Completed(d) => format!(
            "Section 47 enquiry {} completed: {}",
            d.s47_id.as_str(),
            yes_no(d.icpc_required, "initial conference required", "no initial conference")
        ),
        D::ConferenceHeld(d) => format!("{} {}: {}", d.kind.label(), d.conference_id.as_str(), d.outcome.label()),
        D::CpPlanStarted(d) => format!(
            "Child protection plan {} started: {}",
            d.plan_id.as_str(),
            coded(d.category.label(), d.category.code())
        ),
        D::CpPlanCategoryChanged(d) => format!(
            "Child protection plan {} category now {}",
            d.plan_id.as_str(),
            coded(d.category.label(), d.category.code())
        ),
        D::CpPlanEnded(d) => format!("Child protection plan {} ended", d.plan_id.as_str()),
        D::CinPlanStarted(d) => format!("Child in need plan {} started", d.plan_id.as_str()),
        D::CinPlanEnded(d) => format!("Child in need plan {} ended", d.plan_id.as_str()),
        D::CinPlanReviewed(d) => format!("Child in need plan {} reviewed", d.plan_id.as_str()),
        D::ChildSeen(d) => format!(
            "Child seen{} ({}) by {}",
            if d.seen_alone { " alone" } else { "" },
            d.context.label(),
            d.seen_by.as_str()
        ),
        D::CaseAllocated(d) => format!("Case allocated to worker {} in team {}", d.worker_id, d.team_id.as_str()),
        D::CaseDeallocated(d) => format!("Case no longer held by worker {}", d.worker_id),
        D::CaseClosed(d) => {
            format!("Case closed (referral {}): {}", d.referral_id.as_str(), coded(d.reason.label(), d.reason.code()))
        }
        D::ConcernRaised(d) => {
            let about = d.category.map(|c| format!(" about {}", c.label())).unwrap_or_default();
            format!("Concern {} raised{about}", d.concern_id.as_str())
        }
        D::InformationShared(_) => "Information shared with another agency".to_owned(),
        D::PreProceedingsStarted(d) => format!("Pre-proceedings {} started", d.pre_proceedings_id.as_str()),
        D::PreProceedingsLetterSent(d) => {
            format!("{} sent (pre-proceedings {})", capitalised(d.letter.label()), d.pre_proceedings_id.as_str())
        }
        D::FamilyGroupMeetingOffered(d) => {
            format!("Family group meeting offered (pre-proceedings {})", d.pre_proceedings_id.as_str())
        }
        D::FamilyGroupMeetingHeld(d) => {
            format!("Family group meeting held (pre-proceedings {})", d.pre_proceedings_id.as_str())
        }
        D::PreProceedingsMeetingHeld(d) => {
            format!("{} held (pre-proceedings {})", capitalised(d.kind.label()), d.pre_proceedings_id.as_str())
        }
        D::PreProceedingsDecided(d) => {
            format!("Pre-proceedings {} decision: {}", d.pre_proceedings_id.as_str(), d.outcome.label())
        }
        D::CourtApplicationFiled(d) => {
            format!("Court application {} filed: {}", d.proceedings_id.as_str(), d.kind.label())
        }
        D::CourtHearingHeld(d) => format!("Court hearing in proceedings {}", d.proceedings_id.as_str()),
        D::CourtOrderMade(d) => format!("Court made {} in proceedings {}", d.order.label(), d.proceedings_id.as_str()),
        D::CourtProceedingsConcluded(d) => format!("Proceedings {} concluded", d.proceedings_id.as_str()),
        D::RecordCorrected(d) => format!("Correction of entry {}", d.corrects.as_str()),
        D::RecordRetracted(d) => format!("Entry {} retracted as made in error", d.retracts.as_str()),
        D::RecordSealed(_) => "Record sealed".to_owned(),
        D::RecordUnsealed(_) => "Record unsealed".to_owned(),
        D::ReviewOpened(d) => format!("{} {} opened", d.kind.label(), d.review_id.as_str()),
        D::ReviewClosed(d) => format!("Review {} closed", d.review_id.as_str()),
        D::AlertAcknowledged(d) => format!("Alert {} acknowledged", d.alert_id),
        D::WorkerJoined(_) | D::WorkerChanged(_) | D::WorkerLeft(_) | D::CouncilConfigured(_) => {
            data.event_type().name().to_owned()
        }
    }
}

/// The event an amendment names, if `data` amends one.
pub fn amends(data: &EventData) -> Option<&EventId> {
    match data {
        EventData::RecordCorrected(d) => Some(&d.corrects),
        EventData::RecordRetracted(d) => Some(&d.retracts),
        _ => None,
    }
}

/// "letter before proceedings" as a sentence begins it.
fn capitalised(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map(|c| c.to_uppercase().chain(chars).collect()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use events::{EventType, Problems, examples};

    fn summary_of(t: EventType) -> String {
        let data = EventData::parse(t, &examples::data(t), "/data", &mut Problems::new()).expect("example");
        summarise(&data)
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
