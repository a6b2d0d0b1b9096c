//! What a chronology in the Public Law Outline's form adds to each entry,
//! beyond serial, date, event and source: whether it is significant, what
//! was done as a result, the entries it is linked to, and for a correction
//! or retraction what it changed. Pure: made from the child's stored
//! history as far as it had been recorded by the moment asked about (a
//! subject's sequence is its recorded order, so `up_to` is a sequence),
//! from codes, dates and ids only.

use crate::facts::History;
use crate::summary::summarise;
use events::EventData;
use events::catalogue::CorrectedData;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// One entry's PLO columns.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plo {
    /// Statutory steps (referrals, strategy discussions, enquiries,
    /// conferences, plans, court steps, a death or a transfer) are
    /// significant.
    #[serde(default)]
    pub significant: bool,
    /// Who at the publisher wrote it, by role (the envelope's `authorrole`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// What was done as a result: the outcome or decision the event records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    /// The entries this one follows from or belongs to, and those that follow from it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<Link>,
    /// For a corrected entry: what it now says, and the correction that says so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub corrected_to: Option<Change>,
    /// For a correction or retraction: the entry it changed, and what that said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changes: Option<Change>,
}

/// A link to another entry, by its lasting reference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    pub relation: String,
    pub reference: String,
}

/// Another entry and what it says (or said).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub reference: String,
    pub says: String,
}

fn reference(sequence: i64) -> String {
    format!("E{sequence}")
}

/// PLO columns by entry sequence.
pub type Plos = HashMap<i64, Plo>;

impl Plo {
    /// The links as one table cell: "follows referral E2; followed by E5".
    pub fn links_line(&self) -> String {
        self.links.iter().map(|l| format!("{} {}", l.relation, l.reference)).collect::<Vec<_>>().join("; ")
    }
}

/// The PLO columns of every entry of `history` recorded at or before
/// sequence `up_to`, by sequence.
pub fn plo(history: &History, up_to: i64) -> Plos {
    use EventData as D;
    let recorded: Vec<_> = history.iter().filter(|r| r.sequence <= up_to).collect();
    // Where each case-system record was opened, and each event by its publisher's id.
    let mut opened: HashMap<(&'static str, &str), i64> = HashMap::new();
    let mut by_id: HashMap<(&str, &str), i64> = HashMap::new();
    for r in &recorded {
        by_id.insert((r.source.as_str(), r.event_id.as_str()), r.sequence);
        let opens: Option<(&'static str, &str)> = match &r.data {
            D::ReferralReceived(d) => Some(("referral", d.referral_id.as_str())),
            D::AssessmentStarted(d) => Some(("assessment", d.assessment_id.as_str())),
            D::StrategyDiscussionHeld(d) => Some(("discussion", d.discussion_id.as_str())),
            D::S47Started(d) => Some(("s47", d.s47_id.as_str())),
            D::ConferenceHeld(d) => Some(("conference", d.conference_id.as_str())),
            D::CpPlanStarted(d) => Some(("cp_plan", d.plan_id.as_str())),
            D::CinPlanStarted(d) => Some(("cin_plan", d.plan_id.as_str())),
            D::PreProceedingsStarted(d) => Some(("pre_proceedings", d.pre_proceedings_id.as_str())),
            D::CourtApplicationFiled(d) => Some(("proceedings", d.proceedings_id.as_str())),
            _ => None,
        };
        if let Some(key) = opens {
            opened.entry(key).or_insert(r.sequence);
        }
    }
    let mut out: HashMap<i64, Plo> = HashMap::new();
    let mut followed_by: Vec<(i64, i64)> = Vec::new();
    for r in &recorded {
        let to = |kind: &'static str, id: &str| opened.get(&(kind, id)).copied().filter(|s| *s != r.sequence);
        let mut links: Vec<(&'static str, Option<i64>)> = Vec::new();
        match &r.data {
            D::AssessmentStarted(d) => links.push(("follows referral", to("referral", d.referral_id.as_str()))),
            D::AssessmentCompleted(d) => links.push(("completes", to("assessment", d.assessment_id.as_str()))),
            D::StrategyDiscussionHeld(d) => links.push(("about referral", to("referral", d.referral_id.as_str()))),
            D::S47Started(d) => {
                links.push(("follows referral", to("referral", d.referral_id.as_str())));
                if let Some(id) = &d.discussion_id {
                    links.push(("decided at strategy discussion", to("discussion", id.as_str())));
                }
            }
            D::S47Completed(d) => links.push(("completes", to("s47", d.s47_id.as_str()))),
            D::ConferenceHeld(d) => {
                if let Some(id) = &d.s47_id {
                    links.push(("follows section 47 enquiry", to("s47", id.as_str())));
                }
                if let Some(id) = &d.plan_id {
                    links.push(("reviews plan", to("cp_plan", id.as_str())));
                }
            }
            D::CpPlanStarted(d) => links.push(("decided at conference", to("conference", d.conference_id.as_str()))),
            D::CpPlanCategoryChanged(d) => links.push(("changes plan", to("cp_plan", d.plan_id.as_str()))),
            D::CpPlanEnded(d) => links.push(("ends plan", to("cp_plan", d.plan_id.as_str()))),
            D::CinPlanStarted(d) => links.push(("follows referral", to("referral", d.referral_id.as_str()))),
            D::CinPlanEnded(d) => links.push(("ends plan", to("cin_plan", d.plan_id.as_str()))),
            D::CinPlanReviewed(d) => links.push(("reviews plan", to("cin_plan", d.plan_id.as_str()))),
            D::CaseClosed(d) => links.push(("closes referral", to("referral", d.referral_id.as_str()))),
            D::FamilyGroupMeetingOffered(d) | D::FamilyGroupMeetingHeld(d) => {
                links.push(("in pre-proceedings", to("pre_proceedings", d.pre_proceedings_id.as_str())));
            }
            D::PreProceedingsLetterSent(d) => {
                links.push(("in pre-proceedings", to("pre_proceedings", d.pre_proceedings_id.as_str())));
            }
            D::PreProceedingsMeetingHeld(d) => {
                links.push(("in pre-proceedings", to("pre_proceedings", d.pre_proceedings_id.as_str())));
            }
            D::PreProceedingsDecided(d) => {
                links.push(("decides pre-proceedings", to("pre_proceedings", d.pre_proceedings_id.as_str())));
            }
            D::CourtApplicationFiled(d) => {
                if let Some(id) = &d.pre_proceedings_id {
                    links.push(("follows pre-proceedings", to("pre_proceedings", id.as_str())));
                }
            }
            D::CourtHearingHeld(d) => links.push(("in proceedings", to("proceedings", d.proceedings_id.as_str()))),
            D::CourtOrderMade(d) => links.push(("in proceedings", to("proceedings", d.proceedings_id.as_str()))),
            D::CourtProceedingsConcluded(d) => {
                links.push(("concludes proceedings", to("proceedings", d.proceedings_id.as_str())));
            }
            D::RecordCorrected(d) => {
                links.push(("corrects", by_id.get(&(r.source.as_str(), d.corrects.as_str())).copied()));
            }
            D::RecordRetracted(d) => {
                links.push(("retracts", by_id.get(&(r.source.as_str(), d.retracts.as_str())).copied()));
            }
            _ => {}
        }
        let entry = out.entry(r.sequence).or_default();
        // The publisher's own mark wins; without one, statutory steps are significant.
        entry.significant = r.significant.unwrap_or_else(|| significant(&r.data));
        entry.author = r.author_role.map(|role| role.label().to_owned());
        entry.outcome = outcome(&r.data);
        for (relation, target) in links {
            if let Some(target) = target {
                entry.links.push(Link { relation: relation.to_owned(), reference: reference(target) });
                followed_by.push((target, r.sequence));
            }
        }
    }
    for (target, from) in followed_by {
        out.entry(target)
            .or_default()
            .links
            .push(Link { relation: "followed by".to_owned(), reference: reference(from) });
    }
    // What each amendment changed, and what a corrected entry now says (the last correction's words).
    let says: HashMap<i64, String> = recorded.iter().map(|r| (r.sequence, summarise(&r.data))).collect();
    for r in &recorded {
        let (target, now) = match &r.data {
            D::RecordCorrected(d) => {
                let target = by_id.get(&(r.source.as_str(), d.corrects.as_str())).copied();
                let now = match &d.data {
                    CorrectedData::Resolved(inner) => summarise(inner),
                    CorrectedData::Unresolved(_) => "corrected data not readable".to_owned(),
                };
                (target, Some(now))
            }
            D::RecordRetracted(d) => (by_id.get(&(r.source.as_str(), d.retracts.as_str())).copied(), None),
            _ => continue,
        };
        let Some(target) = target else { continue };
        let was = says.get(&target).cloned().unwrap_or_default();
        out.entry(r.sequence).or_default().changes = Some(Change { reference: reference(target), says: was });
        if let Some(now) = now {
            out.entry(target).or_default().corrected_to = Some(Change { reference: reference(r.sequence), says: now });
        }
    }
    out
}

fn significant(data: &EventData) -> bool {
    use EventData as D;
    matches!(
        data,
        D::ReferralReceived(_)
            | D::StrategyDiscussionHeld(_)
            | D::S47Started(_)
            | D::S47Completed(_)
            | D::ConferenceHeld(_)
            | D::CpPlanStarted(_)
            | D::CpPlanEnded(_)
            | D::PreProceedingsStarted(_)
            | D::PreProceedingsLetterSent(_)
            | D::PreProceedingsDecided(_)
            | D::CourtApplicationFiled(_)
            | D::CourtOrderMade(_)
            | D::CourtProceedingsConcluded(_)
            | D::ChildDied(_)
            | D::ChildTransferred(_)
            | D::CaseClosed(_)
    )
}

fn outcome(data: &EventData) -> Option<String> {
    use EventData as D;
    match data {
        D::ContactRecorded(d) => d.outcome.map(|o| o.label().to_owned()),
        D::ReferralReceived(d) => d.nfa.then(|| "no further action".to_owned()),
        D::AssessmentCompleted(d) => {
            Some(if d.needs_support { "the child needs support" } else { "no support needed" }.to_owned())
        }
        D::StrategyDiscussionHeld(d) => Some(match d.decision {
            events::codes::StrategyDecision::S47 => "a section 47 enquiry".to_owned(),
            _ => "no section 47 enquiry".to_owned(),
        }),
        D::S47Completed(d) => Some(
            if d.icpc_required { "an initial child protection conference" } else { "no initial conference" }.to_owned(),
        ),
        D::ConferenceHeld(d) => Some(d.outcome.label().to_owned()),
        D::CaseClosed(d) => Some(d.reason.label().to_owned()),
        D::CourtOrderMade(d) => Some(d.order.label().to_owned()),
        D::PreProceedingsDecided(d) => Some(d.outcome.label().to_owned()),
        _ => None,
    }
}
