//! Data-quality flags: breaches of the DfE's CIN census rules visible in a
//! child's own history, found as the events arrive, so a council fixes its
//! data before the return is due. Pure: a child's folded episodes
//! ([`crate::cin::fold`]) in, flags named by rule number out.
//!
//! Ingestion never refuses a fact for being inconsistent with the rest of
//! the record (CONTRACT.md); this is where such findings go.

use crate::cin::{CinChild, Episode};
use chrono::NaiveDate;
use events::codes::AssessmentFactor;
use events::ids::{CouncilCode, LocalId};
use serde::Serialize;

/// One breach.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Flag {
    pub rule: Rule,
    /// The council whose episode it is in.
    pub council: CouncilCode,
    /// What it concerns: a referral, assessment, section 47 or plan id.
    pub reference: LocalId,
    pub detail: String,
    /// The business date it is about.
    pub on: NaiveDate,
}

events::code_set! {
    /// Every DfE CIN census rule checked, in rule-number order: the code is
    /// the DfE's rule number, as the validator names it; the label its
    /// wording, shortened.
    Rule, "quality rule" {
        AssessmentBeforeReferral = "1103": "assessment started before the referral",
        IcpcBeforeReferral = "1104": "initial child protection conference before the referral",
        PlanBeforeReferral = "1105": "child protection plan started before the referral",
        PlanNotOnIcpcDay = "2885": "child protection plan started on a different day from its initial conference",
        S47BeforeReferral = "2889": "section 47 enquiry started before the referral",
        ActivityAfterClosure = "8565": "activity after the case was closed",
        AssessmentStartedAfterAuthorised = "8608": "assessment started after it was authorised",
        SeveralOpenEpisodes = "8815": "more than one open episode",
        OpenEpisodeNotLatest = "8816": "an open episode that is not the latest",
        EpisodesOverlap = "8820": "episodes overlap",
        PlanStartedAndEndedSameDay = "8840": "child protection plan started and ended on the same day",
        ReviewBeforePlan = "8841": "plan review on or before the plan started",
        Factor21WithOthers = "8869": "assessment factor 21 (no factors) given with other factors",
        PlanEndedBeforeStart = "8925": "child protection plan ended before it started",
        SeveralOpenPlans = "8935": "more than one open child protection plan",
        PlansOverlap = "8940": "child protection plans overlap",
        // The census's module 5 (2026-27): the DfE's order rules (as the
        // open-source validator implements them; its release on PyPI has
        // none yet), and three of our own.
        LetterBeforePreProceedings = "9006": "letter before proceedings sent before pre-proceedings began",
        StepDecisionBeforePreProceedings = "9009": "step up or down decided before pre-proceedings began",
        CourtApplicationBeforeDecision = "9012": "court application before the decision to issue proceedings",
        InitiatingLetterBeforeApplication = "9013": "letter initiating proceedings before the court application",
        PreProceedingsBeforeReferral = "PP01": "pre-proceedings began before the referral",
        PreProceedingsMeetingBeforeStart = "PP02": "a pre-proceedings or family group meeting before they began",
        FamilyMeetingHeldBeforeOffered = "PP03": "family group meeting held before it was offered, or never offered",
        PreProceedingsOverlap = "PP04": "pre-proceedings overlap",
    }
}

/// The flags of one child.
pub fn flags(child: &CinChild) -> Vec<Flag> {
    let mut out = Vec::new();
    let mut flag = |rule: Rule, e: &Episode, reference: &LocalId, on: NaiveDate, detail: String| {
        out.push(Flag { rule, council: e.council.clone(), reference: reference.clone(), detail, on });
    };
    for e in &child.episodes {
        let referred = e.referral_date;
        for a in &e.assessments {
            if a.start < referred {
                flag(
                    Rule::AssessmentBeforeReferral,
                    e,
                    &a.id,
                    a.start,
                    format!("assessment started {} before the referral of {referred}", a.start),
                );
            }
            if let Some(done) = a.authorised
                && a.start > done
            {
                flag(
                    Rule::AssessmentStartedAfterAuthorised,
                    e,
                    &a.id,
                    a.start,
                    format!("assessment started {} after it was authorised on {done}", a.start),
                );
            }
            if a.factors.contains(&AssessmentFactor::F21) && a.factors.len() > 1 {
                flag(
                    Rule::Factor21WithOthers,
                    e,
                    &a.id,
                    a.authorised.unwrap_or(a.start),
                    "factor 21 with other factors".into(),
                );
            }
        }
        for s in &e.section47s {
            if s.start < referred {
                flag(
                    Rule::S47BeforeReferral,
                    e,
                    &s.id,
                    s.start,
                    format!("section 47 started {} before the referral of {referred}", s.start),
                );
            }
            if let Some(icpc) = s.icpc
                && icpc < referred
            {
                flag(
                    Rule::IcpcBeforeReferral,
                    e,
                    &s.id,
                    icpc,
                    format!("initial conference {icpc} before the referral of {referred}"),
                );
            }
        }
        if let Some(icpc) = e.initial_cpc
            && icpc < referred
        {
            flag(
                Rule::IcpcBeforeReferral,
                e,
                &e.referral_id,
                icpc,
                format!("initial conference {icpc} before the referral of {referred}"),
            );
        }
        for p in &e.plans {
            if p.start < referred {
                flag(
                    Rule::PlanBeforeReferral,
                    e,
                    &p.id,
                    p.start,
                    format!("plan started {} before the referral of {referred}", p.start),
                );
            }
            if let Some(end) = p.end {
                if end < p.start {
                    flag(
                        Rule::PlanEndedBeforeStart,
                        e,
                        &p.id,
                        end,
                        format!("plan ended {end} before it started on {}", p.start),
                    );
                } else if end == p.start {
                    flag(Rule::PlanStartedAndEndedSameDay, e, &p.id, end, format!("plan started and ended on {end}"));
                }
            }
            let conference = child.plan_conferences.iter().find(|(plan, _)| *plan == p.id).map(|(_, c)| c);
            let held =
                conference.and_then(|c| child.initial_conferences.iter().find(|(id, _)| id == c)).map(|(_, d)| *d);
            if let Some(held) = held
                && held != p.start
            {
                flag(
                    Rule::PlanNotOnIcpcDay,
                    e,
                    &p.id,
                    p.start,
                    format!("plan started {} but its initial conference was on {held}", p.start),
                );
            }
            for r in p.reviews.iter().filter(|r| **r <= p.start) {
                flag(Rule::ReviewBeforePlan, e, &p.id, *r, format!("review on {r}, the plan started on {}", p.start));
            }
        }
        let mut pre: Vec<&crate::cin::PreProceedings> = e.pre_proceedings.iter().collect();
        pre.sort_by_key(|p| p.start);
        for p in &pre {
            let began = p.start;
            let mut order = |rule: Rule, later: Option<NaiveDate>, earlier: Option<NaiveDate>, what: &str| {
                if let (Some(later), Some(earlier)) = (later, earlier)
                    && later < earlier
                {
                    flag(rule, e, &p.id, later, format!("{what} on {later}, before {earlier}"));
                }
            };
            order(Rule::PreProceedingsBeforeReferral, Some(began), Some(referred), "began");
            order(Rule::LetterBeforePreProceedings, p.letter_before, Some(began), "letter before proceedings");
            order(Rule::StepDecisionBeforePreProceedings, p.decision.map(|(d, _)| d), Some(began), "decision");
            order(Rule::CourtApplicationBeforeDecision, p.application, p.decision.map(|(d, _)| d), "application");
            order(Rule::InitiatingLetterBeforeApplication, p.letter_initiating, p.application, "letter initiating");
            let meetings = [p.initial_meeting, p.family_meeting_offered, p.family_meeting_held]
                .into_iter()
                .flatten()
                .chain(p.reviews.iter().copied());
            order(Rule::PreProceedingsMeetingBeforeStart, meetings.min(), Some(began), "meeting");
            if let Some(held) = p.family_meeting_held
                && p.family_meeting_offered.is_none_or(|offered| offered > held)
            {
                let offered = p.family_meeting_offered.map_or("never".to_owned(), |d| d.to_string());
                flag(
                    Rule::FamilyMeetingHeldBeforeOffered,
                    e,
                    &p.id,
                    held,
                    format!("held on {held}, offered {offered}"),
                );
            }
        }
        for pair in pre.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            if a.end.is_none_or(|end| end > b.start) {
                flag(
                    Rule::PreProceedingsOverlap,
                    e,
                    &b.id,
                    b.start,
                    format!("started {} while those from {} were open", b.start, a.start),
                );
            }
        }
        if let Some((closed, _)) = &e.closure {
            let mut later: Vec<NaiveDate> = Vec::new();
            later.extend(e.assessments.iter().flat_map(|a| [Some(a.start), a.authorised]).flatten());
            later.extend(e.section47s.iter().flat_map(|s| [Some(s.start), s.icpc]).flatten());
            later.extend(e.plans.iter().flat_map(|p| [Some(p.start), p.end]).flatten());
            later.extend(e.plans.iter().flat_map(|p| p.reviews.iter().copied()));
            later.extend(e.cin_plans.iter().flat_map(|p| [Some(p.start), p.end]).flatten());
            later.extend(e.pre_proceedings.iter().flat_map(steps));
            if let Some(first) = later.into_iter().filter(|d| d > closed).min() {
                flag(
                    Rule::ActivityAfterClosure,
                    e,
                    &e.referral_id,
                    first,
                    format!("activity on {first} after the case closed on {closed}"),
                );
            }
        }
    }

    // Across episodes and plans.
    let open: Vec<&Episode> = child.episodes.iter().filter(|e| e.closure.is_none() && !e.nfa).collect();
    if open.len() > 1 {
        for e in &open {
            flag(
                Rule::SeveralOpenEpisodes,
                e,
                &e.referral_id,
                e.referral_date,
                format!("{} episodes open at once", open.len()),
            );
        }
    }
    let latest = child.episodes.iter().map(|e| e.referral_date).max();
    for e in &open {
        if Some(e.referral_date) < latest {
            flag(
                Rule::OpenEpisodeNotLatest,
                e,
                &e.referral_id,
                e.referral_date,
                "an open episode with a later episode after it".into(),
            );
        }
    }
    let mut episodes: Vec<&Episode> = child.episodes.iter().collect();
    episodes.sort_by_key(|e| e.referral_date);
    for pair in episodes.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        if a.closure.as_ref().is_none_or(|(closed, _)| *closed > b.referral_date) {
            flag(
                Rule::EpisodesOverlap,
                b,
                &b.referral_id,
                b.referral_date,
                format!("referred {} while episode from {} was open", b.referral_date, a.referral_date),
            );
        }
    }
    let mut plans: Vec<(&Episode, &crate::cin::Plan)> =
        child.episodes.iter().flat_map(|e| e.plans.iter().map(move |p| (e, p))).collect();
    plans.sort_by_key(|(_, p)| p.start);
    let open_plans = plans.iter().filter(|(_, p)| p.end.is_none()).count();
    if open_plans > 1 {
        for (e, p) in plans.iter().filter(|(_, p)| p.end.is_none()) {
            flag(Rule::SeveralOpenPlans, e, &p.id, p.start, format!("{open_plans} plans open at once"));
        }
    }
    for pair in plans.windows(2) {
        let ((_, a), (e, b)) = (pair[0], pair[1]);
        if a.end.is_none_or(|end| end > b.start) {
            flag(
                Rule::PlansOverlap,
                e,
                &b.id,
                b.start,
                format!("plan started {} while the plan from {} was open", b.start, a.start),
            );
        }
    }
    out
}

/// Every dated step of pre-proceedings.
fn steps(p: &crate::cin::PreProceedings) -> impl Iterator<Item = NaiveDate> + '_ {
    [
        Some(p.start),
        p.letter_before,
        p.family_meeting_offered,
        p.family_meeting_held,
        p.initial_meeting,
        p.decision.map(|(d, _)| d),
        p.application,
        p.letter_initiating,
    ]
    .into_iter()
    .flatten()
    .chain(p.reviews.iter().copied())
}
