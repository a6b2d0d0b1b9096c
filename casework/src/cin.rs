//! The CIN census (RETURNS.md): a child's history as the DfE's CIN census
//! record for one council and collection year, and the XML message. Pure:
//! histories in (with the child's `person` opened where a UPN is wanted),
//! records and text out.
//!
//! The census is a picture at the reference date (31 March): nothing
//! recorded as happening after it counts. A child is in scope if it has a
//! referral episode with this council open at any point in the year. Within
//! an episode, each part is returned when it belongs to the year: an
//! assessment, section 47, plan or closure whose date falls in the year, or
//! which is still open at its end (the DfE rules 8620, 8696, 8715, 8736,
//! 8740, 8930 and 4013 ask exactly that).
//!
//! From 2026-27 the census has a fifth module, pre-proceedings and family
//! group decision making (`PreProceedingsandFGDM`): each pre-proceedings
//! begun in the year (DfE rule 9005), with its letter before proceedings,
//! whether a family group decision making meeting was offered in it and
//! then held, the initial meeting, how many review meetings followed, the
//! decision to step up or down and its outcome, the court application and
//! the letter initiating proceedings.

use crate::facts::{Fact, History, effective};
use chrono::{Datelike as _, NaiveDate};
use events::calendar::Calendar;
use events::catalogue::ChildPerson;
use events::codes::{
    AssessmentFactor, CategoryOfAbuse, ClosureReason, ConferenceKind, Disability, Ethnicity, PreProceedingsLetter,
    PreProceedingsMeeting, PreProceedingsOutcome, PrimaryNeed, ReferralSource, Sex, UpnUnknown,
};
use events::ids::{CouncilCode, DfeLaCode, LaChildId, LocalId, Upn};
use events::{EventData, EventType, Personal};
use std::fmt::Write as _;

/// A collection year: 1 April to the reference date, 31 March.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CollectionYear {
    pub start: NaiveDate,
    pub reference_date: NaiveDate,
}

impl CollectionYear {
    /// `2024-25` is 1 April 2024 to 31 March 2025.
    pub fn parse(text: &str) -> Result<Self, String> {
        let period = crate::indicators::Period::financial_year(text)?;
        Ok(Self { start: period.from, reference_date: period.to })
    }

    fn contains(&self, day: NaiveDate) -> bool {
        self.start <= day && day <= self.reference_date
    }

    /// The year whose census has `reference` (31 March) as its `ReferenceDate`.
    pub fn ending(reference: NaiveDate) -> Option<Self> {
        let start = NaiveDate::from_ymd_opt(reference.year() - 1, 4, 1)?;
        Some(Self { start, reference_date: reference })
    }

    /// The DfE validator's rule set for the year: `cin2026_27`.
    pub fn ruleset(&self) -> String {
        format!("cin{}_{:02}", self.start.year(), self.reference_date.year() % 100)
    }

    /// Whether the census has module 5, pre-proceedings (2026-27 onward).
    pub fn has_pre_proceedings(&self) -> bool {
        self.reference_date >= FIRST_WITH_PRE_PROCEEDINGS
    }

    /// The schema a census of this year is written to: the name of one of
    /// [`SCHEMAS`].
    pub fn schema(&self) -> &'static str {
        if self.has_pre_proceedings() { SCHEMAS[1].0 } else { SCHEMAS[0].0 }
    }

    /// Whether something from `from` to `to` (open if None) touches the year.
    fn touches(&self, from: NaiveDate, to: Option<NaiveDate>) -> bool {
        from <= self.reference_date && to.is_none_or(|end| end >= self.start)
    }
}

/// A child as the census returns it: codes and ids as the catalogue's
/// types, written out as the DfE's codes only by [`message`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CinChild {
    pub la_child_id: Option<LaChildId>,
    pub upn: Option<Upn>,
    pub former_upn: Option<Upn>,
    pub upn_unknown: Option<UpnUnknown>,
    pub birth_date: Option<NaiveDate>,
    pub expected_birth_date: Option<NaiveDate>,
    pub sex: Option<Sex>,
    pub death_date: Option<NaiveDate>,
    pub ethnicity: Option<Ethnicity>,
    pub disabilities: Vec<Disability>,
    pub episodes: Vec<Episode>,
    /// Each plan's initial conference (plan id, conference id), for the quality rules.
    pub plan_conferences: Vec<(LocalId, LocalId)>,
    /// Every initial conference (id, date).
    pub initial_conferences: Vec<(LocalId, NaiveDate)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Episode {
    pub referral_id: LocalId,
    /// The council the child was in when the referral was received.
    pub council: CouncilCode,
    pub referral_date: NaiveDate,
    pub source: ReferralSource,
    pub primary_need: Option<PrimaryNeed>,
    pub nfa: bool,
    pub closure: Option<(NaiveDate, ClosureReason)>,
    /// An ICPC that belongs to no section 47 of the episode.
    pub initial_cpc: Option<NaiveDate>,
    pub assessments: Vec<Assessment>,
    pub cin_plans: Vec<CinPlan>,
    pub section47s: Vec<Section47>,
    pub plans: Vec<Plan>,
    pub pre_proceedings: Vec<PreProceedings>,
}

/// Pre-proceedings under the Public Law Outline: the census's module 5.
/// Each date is the first of its kind (a letter sent again is the same letter).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreProceedings {
    pub id: LocalId,
    /// The legal planning meeting's decision to begin them (PPStartDate).
    pub start: NaiveDate,
    /// The letter before proceedings (LBPSentDate).
    pub letter_before: Option<NaiveDate>,
    /// A family group decision making meeting offered, and held.
    pub family_meeting_offered: Option<NaiveDate>,
    pub family_meeting_held: Option<NaiveDate>,
    /// The initial pre-proceedings meeting (InitialPPMeetingDate).
    pub initial_meeting: Option<NaiveDate>,
    /// Review meetings held (ReviewMeetingsCount is how many).
    pub reviews: Vec<NaiveDate>,
    /// The decision to step up or down (StepDecisionDate) and its outcome.
    pub decision: Option<(NaiveDate, PreProceedingsOutcome)>,
    /// The application to court (CourtAppDate).
    pub application: Option<NaiveDate>,
    /// The letter initiating care proceedings (LetterInitCPDate).
    pub letter_initiating: Option<NaiveDate>,
    /// When they ended: a decision, an application to court, or the end of
    /// the episode (a closure, a move, a death).
    pub end: Option<NaiveDate>,
}

impl PreProceedings {
    /// How they ended, as decided, or as an application to court implies.
    pub fn outcome(&self) -> Option<PreProceedingsOutcome> {
        self.decision.map(|(_, o)| o).or(self.application.map(|_| PreProceedingsOutcome::IssueProceedings))
    }
}

/// The census's code (the DfE's code set CS131: A, B or C) for how
/// pre-proceedings ended; `continue` ends nothing. A is care proceedings
/// issued (the DfE's own sample pairs it with a court application); B a
/// step down to a plan; C an end with no further statutory action. The
/// code set's words were not reachable from here: B and C are our reading
/// of it (docs/returns.md).
pub fn outcome_code(outcome: PreProceedingsOutcome) -> Option<&'static str> {
    use PreProceedingsOutcome as O;
    match outcome {
        O::IssueProceedings => Some("A"),
        O::StepDownChildProtection | O::StepDownChildInNeed => Some("B"),
        O::NoFurtherAction => Some("C"),
        O::Continue => None,
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CinPlan {
    pub id: LocalId,
    pub start: NaiveDate,
    pub end: Option<NaiveDate>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assessment {
    pub id: LocalId,
    pub start: NaiveDate,
    pub authorised: Option<NaiveDate>,
    pub factors: Vec<AssessmentFactor>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section47 {
    pub id: LocalId,
    pub start: NaiveDate,
    pub icpc_target: NaiveDate,
    pub icpc: Option<NaiveDate>,
    pub icpc_not_required: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub id: LocalId,
    pub start: NaiveDate,
    pub end: Option<NaiveDate>,
    pub initial_category: CategoryOfAbuse,
    pub latest_category: CategoryOfAbuse,
    pub previous_plans: u32,
    pub reviews: Vec<NaiveDate>,
}

/// The child's census record for `council` and `year`, if the child is in scope.
pub fn census_child(
    history: &History,
    council: &CouncilCode,
    year: &CollectionYear,
    calendar: &Calendar,
) -> Option<CinChild> {
    let mut child = fold(history, year.reference_date, calendar);
    // What belongs to this council's return for this year.
    child.episodes = std::mem::take(&mut child.episodes)
        .into_iter()
        .filter(|e| e.council == *council && year.touches(e.referral_date, e.closure.as_ref().map(|c| c.0)))
        .map(|mut e| {
            e.assessments.retain(|a| a.authorised.map_or(year.touches(a.start, None), |end| year.contains(end)));
            for a in &mut e.assessments {
                if a.authorised.is_none() {
                    a.factors.clear();
                }
            }
            e.cin_plans.retain(|p| year.touches(p.start, p.end));
            e.section47s.retain(|s| match s.icpc {
                Some(icpc) => year.contains(icpc),
                None => year.contains(s.start) || (s.icpc_not_required && year.touches(s.start, None)),
            });
            e.plans.retain(|p| p.end.is_none_or(|end| year.contains(end)));
            for p in &mut e.plans {
                p.reviews.retain(|r| year.contains(*r));
            }
            // Begun in the year: DfE rule 9005.
            e.pre_proceedings.retain(|p| year.contains(p.start));
            if !year.has_pre_proceedings() {
                e.pre_proceedings.clear();
            }
            if e.initial_cpc.is_some_and(|d| !year.contains(d)) {
                e.initial_cpc = None;
            }
            e
        })
        .collect();
    (!child.episodes.is_empty()).then_some(child)
}

/// Every referral episode of the child with everything that belongs to
/// it, from what had happened by `until` (business date). Two passes:
/// first the child and its episodes, then what hangs off them, found by
/// the ids that link them (`referral_id`, `s47_id`, `conference_id`,
/// `plan_id`) or, where an event names none, by the episode its date falls
/// in; so a fact dated before its referral is still found (and flagged).
pub fn fold(history: &History, until: NaiveDate, calendar: &Calendar) -> CinChild {
    use EventData as D;
    let facts: Vec<Fact<'_>> = effective(history).into_iter().filter(|f| f.on <= until).collect();
    let mut child = CinChild::default();
    let mut episodes: Vec<Episode> = Vec::new();
    // Episodes a fact ended (a move, a death, an 18th birthday) and when.
    let mut ended_by_fact: Vec<(usize, NaiveDate)> = Vec::new();
    for f in &facts {
        match f.data {
            D::ChildRegistered(d) => {
                details(
                    &mut child,
                    Details {
                        la_child_id: Some(&d.la_child_id),
                        sex: Some(d.sex),
                        birth_date: d.birth_date,
                        expected_birth_date: d.expected_birth_date,
                        ethnicity: d.ethnicity,
                        disabilities: d.disabilities.as_deref(),
                        person: d.person.as_ref(),
                    },
                );
            }
            D::ChildDetailsUpdated(d) => details(
                &mut child,
                Details {
                    la_child_id: d.la_child_id.as_ref(),
                    sex: d.sex,
                    birth_date: d.birth_date,
                    expected_birth_date: d.expected_birth_date,
                    ethnicity: d.ethnicity,
                    disabilities: d.disabilities.as_deref(),
                    person: d.person.as_ref(),
                },
            ),
            D::ChildDied(d) => child.death_date = Some(d.date),
            D::ReferralReceived(d) => {
                // A child is registered before anything else is stored about
                // it, so a referral always has a council (events::standing).
                let Some(council) = f.council.or(history.standing().council()) else { continue };
                episodes.push(Episode {
                    referral_id: d.referral_id.clone(),
                    council: council.clone(),
                    referral_date: f.on,
                    source: d.source,
                    primary_need: d.primary_need,
                    nfa: d.nfa,
                    // A referral with no further action is closed the day it came in. Not RC8 (closed after an
                    // assessment, which an NFA referral never had: DfE query
                    // 8825Q) but RC7, services ceased: no longer in need.
                    closure: d.nfa.then_some((f.on, ClosureReason::Rc7)),
                    initial_cpc: None,
                    assessments: Vec::new(),
                    cin_plans: Vec::new(),
                    section47s: Vec::new(),
                    plans: Vec::new(),
                    pre_proceedings: Vec::new(),
                });
            }
            D::CaseClosed(d) => {
                if let Some(e) = episode(&mut episodes, Some(&d.referral_id), f.on)
                    && e.closure.is_none()
                {
                    e.closure = Some((f.on, d.reason));
                }
            }
            // The sending council's open episodes end the day the child
            // moves (RC5); the receiving council opens its own by referral.
            D::ChildTransferred(d) => {
                for (i, e) in episodes.iter_mut().enumerate() {
                    if e.council != d.council && e.closure.is_none() {
                        e.closure = Some((f.on, ClosureReason::Rc5));
                        ended_by_fact.push((i, f.on));
                    }
                }
            }
            _ => {}
        }
    }
    // A death ends every episode open then (RC2); an 18th birthday ends
    // what is still open (RC7: no longer a child in need of these services).
    // A birthday is time passing, not a recorded fact: it counts only for a
    // fold as at a date (a census), not for one of all that is recorded
    // (`NaiveDate::MAX`, the quality flags), which would end episodes at
    // birthdays still to come.
    let eighteen = child
        .birth_date
        .and_then(|b| b.checked_add_months(chrono::Months::new(12 * 18)))
        .filter(|_| until != NaiveDate::MAX);
    let ends = [(child.death_date, ClosureReason::Rc2), (eighteen, ClosureReason::Rc7)];
    for (on, reason) in ends.into_iter().filter_map(|(on, r)| Some((on.filter(|d| *d <= until)?, r))) {
        for (i, e) in episodes.iter_mut().enumerate() {
            if e.closure.is_none() && e.referral_date <= on {
                e.closure = Some((on, reason));
                ended_by_fact.push((i, on));
            }
        }
    }
    let mut plans_started = 0u32;
    let mut plan_conference: Vec<(LocalId, LocalId)> = Vec::new();
    let mut conference_episode: Vec<(&LocalId, usize)> = Vec::new();
    let mut reviews: Vec<(&LocalId, NaiveDate)> = Vec::new();
    let mut initial_conferences: Vec<(LocalId, NaiveDate)> = Vec::new();
    // What starts a thing, then what hangs off it, then what ends or amends
    // it: so an end dated (wrongly) before its start still finds it.
    let phase = |t: EventType| match t {
        EventType::AssessmentStarted
        | EventType::S47Started
        | EventType::ConferenceHeld
        | EventType::CinPlanStarted
        | EventType::PreProceedingsStarted => 1,
        EventType::CpPlanStarted => 2,
        _ => 3,
    };
    for current in 1..=3 {
        for f in facts.iter().filter(|f| phase(f.event_type()) == current) {
            match f.data {
                D::AssessmentStarted(d) => {
                    if let Some(e) = episode(&mut episodes, Some(&d.referral_id), f.on) {
                        e.assessments.push(Assessment {
                            id: d.assessment_id.clone(),
                            start: f.on,
                            authorised: None,
                            factors: Vec::new(),
                        });
                    }
                }
                D::AssessmentCompleted(d) => {
                    let id = &d.assessment_id;
                    if let Some(a) =
                        episodes.iter_mut().rev().flat_map(|e| e.assessments.iter_mut()).find(|a| a.id == *id)
                    {
                        a.authorised = Some(f.on);
                        a.factors.clone_from(&d.factors);
                    }
                }
                D::S47Started(d) => {
                    if let Some(e) = episode(&mut episodes, Some(&d.referral_id), f.on) {
                        e.section47s.push(Section47 {
                            id: d.s47_id.clone(),
                            start: f.on,
                            icpc_target: calendar.add_working_days(f.on, 15),
                            icpc: None,
                            icpc_not_required: false,
                        });
                    }
                }
                D::S47Completed(d) => {
                    let id = &d.s47_id;
                    if let Some(s) =
                        episodes.iter_mut().rev().flat_map(|e| e.section47s.iter_mut()).find(|s| s.id == *id)
                    {
                        s.icpc_not_required = !d.icpc_required;
                    }
                }
                // A transfer-in conference is the receiving council's initial
                // conference (the census has no other date for it): a plan it
                // starts starts on its day (DfE rule 2885). It follows no
                // enquiry of this council, so its date is the episode's own.
                D::ConferenceHeld(d) => match d.kind {
                    ConferenceKind::Initial | ConferenceKind::TransferIn => {
                        let conference = &d.conference_id;
                        initial_conferences.push((conference.clone(), f.on));
                        let s47 = d.s47_id.as_ref();
                        let transfer = d.kind == ConferenceKind::TransferIn;
                        let found = episodes.iter_mut().enumerate().rev().find_map(|(i, e)| {
                            e.section47s
                                .iter_mut()
                                .find(|s| !transfer && s47.is_none_or(|id| s.id == *id) && s.icpc.is_none())
                                .map(|s| (i, s))
                        });
                        match found {
                            Some((i, s)) => {
                                s.icpc = Some(f.on);
                                conference_episode.push((conference, i));
                            }
                            None => {
                                if let Some(i) = episode_index(&episodes, None, f.on) {
                                    episodes[i].initial_cpc = Some(f.on);
                                    conference_episode.push((conference, i));
                                }
                            }
                        }
                    }
                    ConferenceKind::Review => {
                        if let Some(plan) = &d.plan_id {
                            reviews.push((plan, f.on));
                        }
                    }
                },
                D::CpPlanStarted(d) => {
                    let conference = &d.conference_id;
                    let at = conference_episode
                        .iter()
                        .find(|(c, _)| *c == conference)
                        .map(|(_, i)| *i)
                        .or_else(|| episode_index(&episodes, None, f.on));
                    if let Some(i) = at {
                        episodes[i].plans.push(Plan {
                            id: d.plan_id.clone(),
                            start: f.on,
                            end: None,
                            initial_category: d.category,
                            latest_category: d.category,
                            previous_plans: plans_started,
                            reviews: Vec::new(),
                        });
                        plan_conference.push((d.plan_id.clone(), conference.clone()));
                    }
                    plans_started += 1;
                }
                D::CpPlanCategoryChanged(d) => {
                    if let Some(p) = plan(&mut episodes, &d.plan_id) {
                        p.latest_category = d.category;
                    }
                }
                D::CpPlanEnded(d) => {
                    if let Some(p) = plan(&mut episodes, &d.plan_id) {
                        p.end = Some(f.on);
                    }
                }
                D::CinPlanStarted(d) => {
                    if let Some(e) = episode(&mut episodes, Some(&d.referral_id), f.on) {
                        e.cin_plans.push(CinPlan { id: d.plan_id.clone(), start: f.on, end: None });
                    }
                }
                D::PreProceedingsStarted(d) => {
                    if let Some(e) = episode(&mut episodes, None, f.on) {
                        e.pre_proceedings.push(PreProceedings {
                            id: d.pre_proceedings_id.clone(),
                            start: f.on,
                            letter_before: None,
                            family_meeting_offered: None,
                            family_meeting_held: None,
                            initial_meeting: None,
                            reviews: Vec::new(),
                            decision: None,
                            application: None,
                            letter_initiating: None,
                            end: None,
                        });
                    }
                }
                D::PreProceedingsLetterSent(d) => {
                    if let Some(p) = pre_proceedings(&mut episodes, &d.pre_proceedings_id) {
                        let letter = match d.letter {
                            PreProceedingsLetter::BeforeProceedings => &mut p.letter_before,
                            PreProceedingsLetter::InitiatingProceedings => &mut p.letter_initiating,
                        };
                        *letter = letter.or(Some(f.on));
                    }
                }
                D::PreProceedingsMeetingHeld(d) => {
                    if let Some(p) = pre_proceedings(&mut episodes, &d.pre_proceedings_id) {
                        match d.kind {
                            PreProceedingsMeeting::Initial => p.initial_meeting = p.initial_meeting.or(Some(f.on)),
                            PreProceedingsMeeting::Review => p.reviews.push(f.on),
                        }
                    }
                }
                D::FamilyGroupMeetingOffered(d) => {
                    if let Some(p) = pre_proceedings(&mut episodes, &d.pre_proceedings_id) {
                        p.family_meeting_offered = p.family_meeting_offered.or(Some(f.on));
                    }
                }
                D::FamilyGroupMeetingHeld(d) => {
                    if let Some(p) = pre_proceedings(&mut episodes, &d.pre_proceedings_id) {
                        p.family_meeting_held = p.family_meeting_held.or(Some(f.on));
                    }
                }
                D::PreProceedingsDecided(d) => {
                    if let Some(p) = pre_proceedings(&mut episodes, &d.pre_proceedings_id)
                        && p.decision.is_none()
                        && outcome_code(d.outcome).is_some()
                    {
                        p.decision = Some((f.on, d.outcome));
                        p.end = p.end.or(Some(f.on));
                    }
                }
                // An application to court ends the pre-proceedings it
                // follows: the one it names, or else the one open that day.
                D::CourtApplicationFiled(d) => {
                    let named = d.pre_proceedings_id.as_ref();
                    let open = episodes.iter_mut().rev().flat_map(|e| e.pre_proceedings.iter_mut()).find(|p| {
                        named.map_or(p.start <= f.on && p.end.is_none_or(|end| end >= f.on), |id| p.id == *id)
                    });
                    if let Some(p) = open {
                        p.application = p.application.or(Some(f.on));
                        p.end = p.end.or(Some(f.on));
                    }
                }
                D::CinPlanEnded(d) => {
                    let id = &d.plan_id;
                    if let Some(p) =
                        episodes.iter_mut().rev().flat_map(|e| e.cin_plans.iter_mut()).find(|p| p.id == *id)
                    {
                        p.end = Some(f.on);
                    }
                }
                _ => {}
            }
        }
    }
    for (plan_id, day) in reviews {
        if let Some(p) = plan(&mut episodes, plan_id) {
            p.reviews.push(day);
        }
    }
    // Pre-proceedings still open when their episode closed end with it.
    for e in &mut episodes {
        if let Some((closed, _)) = e.closure {
            for p in e.pre_proceedings.iter_mut().filter(|p| p.end.is_none() && p.start <= closed) {
                p.end = Some(closed);
            }
        }
    }
    // What an episode ended by a death, a move or an 18th birthday still
    // had open ends with it: nothing is recorded after a closure (8565).
    for (i, on) in ended_by_fact {
        let e = &mut episodes[i];
        for p in e.plans.iter_mut().filter(|p| p.end.is_none() && p.start <= on) {
            p.end = Some(on);
        }
        for p in e.cin_plans.iter_mut().filter(|p| p.end.is_none() && p.start <= on) {
            p.end = Some(on);
        }
    }
    child.plan_conferences = plan_conference;
    child.initial_conferences = initial_conferences;
    child.episodes = episodes;
    child
}

/// The details a registration or a details update gives.
struct Details<'a> {
    la_child_id: Option<&'a LaChildId>,
    sex: Option<Sex>,
    birth_date: Option<NaiveDate>,
    expected_birth_date: Option<NaiveDate>,
    ethnicity: Option<Ethnicity>,
    disabilities: Option<&'a [Disability]>,
    person: Option<&'a Personal<ChildPerson>>,
}

fn details(child: &mut CinChild, d: Details<'_>) {
    if let Some(id) = d.la_child_id {
        child.la_child_id = Some(id.clone());
    }
    if let Some(sex) = d.sex {
        child.sex = Some(sex);
    }
    if let Some(born) = d.birth_date {
        child.birth_date = Some(born);
        child.expected_birth_date = None;
    }
    if let Some(due) = d.expected_birth_date {
        child.expected_birth_date = Some(due);
    }
    if let Some(e) = d.ethnicity {
        child.ethnicity = Some(e);
    }
    if let Some(list) = d.disabilities {
        child.disabilities = list.to_vec();
    }
    // Only an opened `person` (see [`open_people`]) gives UPNs.
    if let Some(person) = d.person.and_then(Personal::clear) {
        if let Some(upn) = &person.upn {
            child.upn = Some(upn.clone());
        }
        if let Some(upn) = &person.former_upn {
            child.former_upn = Some(upn.clone());
        }
        if let Some(why) = person.upn_unknown {
            child.upn_unknown = Some(why);
        }
    }
}

/// The episode a fact belongs to: the one its `referral_id` names, or else
/// the latest that began on or before its date (or the first, for a fact
/// dated before every referral).
fn episode_index(episodes: &[Episode], referral_id: Option<&LocalId>, on: NaiveDate) -> Option<usize> {
    if let Some(id) = referral_id
        && let Some(i) = episodes.iter().rposition(|e| e.referral_id == *id)
    {
        return Some(i);
    }
    episodes.iter().rposition(|e| e.referral_date <= on).or((!episodes.is_empty()).then_some(0))
}

fn episode<'a>(episodes: &'a mut [Episode], referral_id: Option<&LocalId>, on: NaiveDate) -> Option<&'a mut Episode> {
    let i = episode_index(episodes, referral_id, on)?;
    episodes.get_mut(i)
}

fn plan<'a>(episodes: &'a mut [Episode], id: &LocalId) -> Option<&'a mut Plan> {
    episodes.iter_mut().rev().flat_map(|e| e.plans.iter_mut()).find(|p| p.id == *id)
}

fn pre_proceedings<'a>(episodes: &'a mut [Episode], id: &LocalId) -> Option<&'a mut PreProceedings> {
    episodes.iter_mut().rev().flat_map(|e| e.pre_proceedings.iter_mut()).find(|p| p.id == *id)
}

/// Who made the message.
#[derive(Debug, Clone)]
pub struct Header {
    pub dfe_la_code: DfeLaCode,
    pub software: String,
    pub release: String,
    pub serial: u32,
    pub made_at: chrono::DateTime<chrono::Utc>,
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

struct Xml {
    out: String,
    depth: usize,
}

impl Xml {
    fn open(&mut self, tag: &str) {
        let _ = writeln!(self.out, "{}<{tag}>", "  ".repeat(self.depth));
        self.depth += 1;
    }
    fn close(&mut self, tag: &str) {
        self.depth -= 1;
        let _ = writeln!(self.out, "{}</{tag}>", "  ".repeat(self.depth));
    }
    fn leaf(&mut self, tag: &str, value: impl std::fmt::Display) {
        let _ = writeln!(self.out, "{}<{tag}>{}</{tag}>", "  ".repeat(self.depth), escape(&value.to_string()));
    }
    fn maybe(&mut self, tag: &str, value: Option<impl std::fmt::Display>) {
        if let Some(v) = value {
            self.leaf(tag, v);
        }
    }
}

/// The census schemas, by file name, as `standards/` holds them (see its
/// README): the DfE's 2025-26 one, and 2026-27's, which redefines it to add
/// module 5 (pre-proceedings) as the DfE's 2026-27 rules read it, so it is
/// read beside the 2025-26 file. `safeguard return check` writes them all
/// and validates against the one of the census's year.
pub const SCHEMAS: [(&str, &str); 2] = [
    ("cin-census-2025-26.xsd", include_str!("../../standards/cin-census-2025-26.xsd")),
    ("cin-census-2026-27.xsd", include_str!("../../standards/cin-census-2026-27.xsd")),
];

/// The reference date of the first census with module 5.
const FIRST_WITH_PRE_PROCEEDINGS: NaiveDate = NaiveDate::from_ymd_opt(2027, 3, 31).expect("a date");

/// The census message: the header and every child in scope.
pub fn message(header: &Header, year: &CollectionYear, children: &[CinChild]) -> String {
    let mut x = Xml { out: String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"), depth: 0 };
    x.open("Message");
    x.open("Header");
    x.open("CollectionDetails");
    x.leaf("Collection", "CIN");
    x.leaf("Year", year.reference_date.format("%Y"));
    x.leaf("ReferenceDate", year.reference_date);
    x.close("CollectionDetails");
    x.open("Source");
    x.leaf("SourceLevel", "L");
    x.leaf("LEA", header.dfe_la_code.as_str());
    x.leaf("SoftwareCode", &header.software);
    x.leaf("Release", &header.release);
    // At least three digits, as the schema's pattern requires.
    x.leaf("SerialNo", format!("{:03}", header.serial));
    x.leaf("DateTime", header.made_at.format("%Y-%m-%dT%H:%M:%S"));
    x.close("Source");
    x.close("Header");
    x.open("Children");
    for c in children {
        x.open("Child");
        x.open("ChildIdentifiers");
        // Required by the schema; every registration carries one, so an
        // absent one is a history the census cannot describe: said, not skipped.
        x.leaf("LAchildID", c.la_child_id.as_ref().map_or("UNKNOWN", LaChildId::as_str));
        x.maybe("UPN", c.upn.as_ref().map(Upn::as_str));
        x.maybe("FormerUPN", c.former_upn.as_ref().map(Upn::as_str));
        if c.upn.is_none() {
            x.maybe("UPNunknown", c.upn_unknown.map(UpnUnknown::code));
        }
        x.maybe("PersonBirthDate", c.birth_date);
        if c.birth_date.is_none() {
            x.maybe("ExpectedPersonBirthDate", c.expected_birth_date);
        }
        // Required by the schema: U where the record does not say.
        x.leaf("Sex", c.sex.map_or("U", Sex::code));
        x.maybe("PersonDeathDate", c.death_date);
        x.close("ChildIdentifiers");
        x.open("ChildCharacteristics");
        // "NOBT": information not yet obtained.
        x.leaf("Ethnicity", c.ethnicity.unwrap_or(Ethnicity::Nobt).code());
        x.open("Disabilities");
        if c.disabilities.is_empty() {
            x.leaf("Disability", Disability::None.code());
        }
        for d in &c.disabilities {
            x.leaf("Disability", d.code());
        }
        x.close("Disabilities");
        x.close("ChildCharacteristics");
        for e in &c.episodes {
            x.open("CINdetails");
            x.leaf("CINreferralDate", e.referral_date);
            x.leaf("ReferralSource", e.source.code());
            x.maybe("PrimaryNeedCode", e.primary_need.map(PrimaryNeed::code));
            if let Some((closed, reason)) = &e.closure {
                x.leaf("CINclosureDate", closed);
                x.leaf("ReasonForClosure", reason.code());
            }
            x.maybe("DateOfInitialCPC", e.initial_cpc);
            for a in &e.assessments {
                x.open("Assessments");
                x.leaf("AssessmentActualStartDate", a.start);
                x.maybe("AssessmentAuthorisationDate", a.authorised);
                if !a.factors.is_empty() {
                    x.open("FactorsIdentifiedAtAssessment");
                    for f in &a.factors {
                        x.leaf("AssessmentFactors", f.code());
                    }
                    x.close("FactorsIdentifiedAtAssessment");
                }
                x.close("Assessments");
            }
            for p in &e.cin_plans {
                x.open("CINPlanDates");
                x.leaf("CINPlanStartDate", p.start);
                x.maybe("CINPlanEndDate", p.end);
                x.close("CINPlanDates");
            }
            for s in &e.section47s {
                x.open("Section47");
                x.leaf("S47ActualStartDate", s.start);
                x.leaf("InitialCPCtarget", s.icpc_target);
                x.maybe("DateOfInitialCPC", s.icpc);
                x.leaf("ICPCnotRequired", if s.icpc_not_required { "true" } else { "false" });
                x.close("Section47");
            }
            // The schema's sequence: after the enquiries, before the plans.
            x.leaf("ReferralNFA", if e.nfa { "true" } else { "false" });
            for p in &e.plans {
                x.open("ChildProtectionPlans");
                x.leaf("CPPstartDate", p.start);
                x.maybe("CPPendDate", p.end);
                x.leaf("InitialCategoryOfAbuse", p.initial_category.code());
                x.leaf("LatestCategoryOfAbuse", p.latest_category.code());
                x.leaf("NumberOfPreviousCPP", p.previous_plans);
                if !p.reviews.is_empty() {
                    x.open("Reviews");
                    for r in &p.reviews {
                        x.leaf("CPPreviewDate", r);
                    }
                    x.close("Reviews");
                }
                x.close("ChildProtectionPlans");
            }
            for p in &e.pre_proceedings {
                let flag = |yes: bool| if yes { "1" } else { "0" };
                x.open("PreProceedingsandFGDM");
                x.leaf("PPStartDate", p.start);
                x.maybe("LBPSentDate", p.letter_before);
                // Whether the letter offered a family group decision making
                // meeting: said only with a letter (rule 9007), and then
                // whether one was held only after an offer (9010Q).
                if p.letter_before.is_some() {
                    x.leaf("FGDMMeetingOffer", flag(p.family_meeting_offered.is_some()));
                }
                if p.family_meeting_offered.is_some() {
                    x.leaf("FGDMMeetingFac", flag(p.family_meeting_held.is_some()));
                }
                x.maybe("InitialPPMeetingDate", p.initial_meeting);
                if p.initial_meeting.is_some() || !p.reviews.is_empty() {
                    x.leaf("ReviewMeetingsCount", p.reviews.len());
                }
                x.maybe("StepDecisionDate", p.decision.map(|(on, _)| on));
                x.maybe("PPOutcome", p.outcome().and_then(outcome_code));
                x.maybe("CourtAppDate", p.application);
                x.maybe("LetterInitCPDate", p.letter_initiating);
                x.close("PreProceedingsandFGDM");
            }
            x.close("CINdetails");
        }
        x.close("Child");
    }
    x.close("Children");
    x.close("Message");
    x.out
}

/// Opens the sealed `person` of the child's registration and detail
/// updates with its data key, so the UPNs can be returned. Without a key
/// (erased) they stay sealed and the census says the UPN is unknown.
pub fn open_people(subject: &str, history: &mut History, key: &events::privacy::DataKey) {
    for r in history.events_mut() {
        let person = match &mut r.data {
            EventData::ChildRegistered(d) => &mut d.person,
            EventData::ChildDetailsUpdated(d) => &mut d.person,
            _ => continue,
        };
        let aad = events::privacy::associated_data(subject, r.source.as_str(), r.event_id.as_str(), "/data/person");
        if let Some(opened) = person.as_ref().and_then(|p| p.opened(key, &aad)) {
            *person = Some(Personal::Clear(opened));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facts::Recorded;
    use events::ids::{EventId, PrincipalName};
    use serde_json::{Value, json};

    fn history(facts: &[(&str, &str, Value)]) -> History {
        let cloud: Vec<Value> = facts
            .iter()
            .enumerate()
            .map(|(i, (t, _, data))| json!({"type": t, "subject": "s", "id": format!("e{i}"), "data": data}))
            .collect();
        let events = facts
            .iter()
            .zip(events::arbitrary::stored_data(&cloud, "test"))
            .enumerate()
            .map(|(i, ((_, day, _), data))| {
                let on: NaiveDate = day.parse().expect("date");
                Recorded {
                    sequence: i as i64 + 1,
                    event_id: EventId::parse(&format!("e{i}")).expect("id"),
                    source: PrincipalName::parse("test").expect("name"),
                    occurred_at: on.and_hms_opt(10, 0, 0).expect("time").and_utc(),
                    business_date: on,
                    recorded_at: on.and_hms_opt(10, 0, 0).expect("time").and_utc(),
                    data: data.expect("data"),
                    author_role: None,
                    significant: None,
                }
            })
            .collect();
        History::new(events).expect("history")
    }

    #[test]
    fn an_icpc_belongs_to_its_enquiry_even_when_both_precede_the_referral() {
        let h = history(&[
            (
                "child.registered",
                "2024-01-02",
                json!({"council": "E09000014", "la_child_id": "A1", "sex": "F", "birth_date": "2015-03-04"}),
            ),
            ("referral.received", "2024-05-01", json!({"referral_id": "R1", "source": "6", "nfa": false})),
            ("s47.started", "2024-04-22", json!({"s47_id": "S1", "referral_id": "R1"})),
            (
                "conference.held",
                "2024-04-25",
                json!({"conference_id": "C1", "kind": "initial", "s47_id": "S1", "outcome": "no_plan"}),
            ),
        ]);
        let year = CollectionYear::parse("2024-25").expect("year");
        let child =
            census_child(&h, &CouncilCode::parse("E09000014").expect("a code"), &year, Calendar::england_and_wales())
                .expect("in scope");
        let e = &child.episodes[0];
        assert_eq!(e.section47s.len(), 1, "{e:?}");
        assert_eq!(e.section47s[0].icpc, NaiveDate::from_ymd_opt(2024, 4, 25));
        assert_eq!(e.initial_cpc, None);
    }

    #[test]
    fn a_plan_started_at_a_transfer_in_conference_has_that_conference_as_its_initial_one() {
        let facts = |plan_day: &'static str| {
            vec![
                (
                    "child.registered",
                    "2024-01-02",
                    json!({"council": "E09000014", "la_child_id": "A1", "sex": "F", "birth_date": "2015-03-04"}),
                ),
                ("referral.received", "2024-05-01", json!({"referral_id": "R1", "source": "5A", "nfa": false})),
                (
                    "conference.held",
                    "2024-05-10",
                    json!({"conference_id": "TC1", "kind": "transfer_in", "outcome": "plan"}),
                ),
                ("cp_plan.started", plan_day, json!({"plan_id": "P1", "conference_id": "TC1", "category": "NEG"})),
            ]
        };
        let year = CollectionYear::parse("2024-25").expect("year");
        let haringey = CouncilCode::parse("E09000014").expect("a code");
        let on_the_day = history(&facts("2024-05-10"));
        let child = census_child(&on_the_day, &haringey, &year, Calendar::england_and_wales()).expect("in scope");
        assert_eq!(child.episodes[0].initial_cpc, NaiveDate::from_ymd_opt(2024, 5, 10), "DateOfInitialCPC is given");
        assert!(crate::quality::flags(&child).is_empty(), "{:?}", crate::quality::flags(&child));
        let a_day_late = history(&facts("2024-05-11"));
        let child = census_child(&a_day_late, &haringey, &year, Calendar::england_and_wales()).expect("in scope");
        let rules: Vec<_> = crate::quality::flags(&child).into_iter().map(|f| f.rule).collect();
        assert_eq!(rules, [crate::quality::Rule::PlanNotOnIcpcDay], "the project's own 2885 sees it too");
    }

    #[test]
    fn a_death_a_move_and_an_18th_birthday_each_end_the_episodes_open_then() {
        let registered = |born: &str| {
            (
                "child.registered",
                "2024-01-02",
                json!({"council": "E09000014", "la_child_id": "A1", "sex": "F", "birth_date": born}),
            )
        };
        let referral = ("referral.received", "2024-05-01", json!({"referral_id": "R1", "source": "6", "nfa": false}));
        let conference =
            ("conference.held", "2024-06-03", json!({"conference_id": "C1", "kind": "initial", "outcome": "plan"}));
        let plan =
            ("cp_plan.started", "2024-06-03", json!({"plan_id": "P1", "conference_id": "C1", "category": "NEG"}));
        let haringey = CouncilCode::parse("E09000014").expect("a code");
        let census = |h: &History, year: &str| {
            census_child(h, &haringey, &CollectionYear::parse(year).expect("year"), Calendar::england_and_wales())
        };
        let day = |text: &str| text.parse::<NaiveDate>().expect("date");

        let died = history(&[
            registered("2015-03-04"),
            referral.clone(),
            conference.clone(),
            plan.clone(),
            ("child.died", "2024-09-10", json!({"date": "2024-09-10"})),
        ]);
        let child = census(&died, "2024-25").expect("in scope");
        assert_eq!(child.episodes[0].closure, Some((day("2024-09-10"), ClosureReason::Rc2)));
        assert_eq!(child.episodes[0].plans[0].end, Some(day("2024-09-10")), "the plan ends with the episode");
        assert!(crate::quality::flags(&child).is_empty(), "{:?}", crate::quality::flags(&child));
        assert!(census(&died, "2025-26").is_none(), "no open episode in a later census");

        let moved = history(&[
            registered("2015-03-04"),
            referral.clone(),
            ("child.transferred", "2024-10-01", json!({"council": "E09000019"})),
        ]);
        let child = census(&moved, "2024-25").expect("in scope");
        assert_eq!(child.episodes[0].closure, Some((day("2024-10-01"), ClosureReason::Rc5)));
        assert!(census(&moved, "2025-26").is_none(), "the sending council's later census leaves the child out");

        let grown = history(&[registered("2006-08-20"), referral.clone()]);
        let child = census(&grown, "2024-25").expect("in scope");
        assert_eq!(child.episodes[0].closure, Some((day("2024-08-20"), ClosureReason::Rc7)));
    }

    #[test]
    fn a_referral_with_no_further_action_closes_that_day_as_services_ceased_not_after_assessment() {
        let h = history(&[
            (
                "child.registered",
                "2024-01-02",
                json!({"council": "E09000014", "la_child_id": "A1", "sex": "F", "birth_date": "2015-03-04"}),
            ),
            ("referral.received", "2024-05-01", json!({"referral_id": "R1", "source": "6", "nfa": true})),
        ]);
        let year = CollectionYear::parse("2024-25").expect("year");
        let child =
            census_child(&h, &CouncilCode::parse("E09000014").expect("a code"), &year, Calendar::england_and_wales())
                .expect("in scope");
        let e = &child.episodes[0];
        assert!(e.nfa && e.assessments.is_empty());
        assert_eq!(e.closure, Some((NaiveDate::from_ymd_opt(2024, 5, 1).expect("date"), ClosureReason::Rc7)));
    }

    #[test]
    fn pre_proceedings_are_module_5_of_the_2026_27_census_and_no_earlier_one() {
        let registered = json!({"council": "E09000014", "la_child_id": "A1", "sex": "M", "birth_date": "2019-03-04"});
        let pp = |id: &str| json!({"pre_proceedings_id": id});
        let letter = |id: &str, which: &str| json!({"pre_proceedings_id": id, "letter": which});
        let meeting = |id: &str, kind: &str| json!({"pre_proceedings_id": id, "kind": kind});
        let h = history(&[
            ("child.registered", "2025-01-02", registered),
            ("referral.received", "2025-02-03", json!({"referral_id": "R1", "source": "6", "nfa": false})),
            // Begun in 2025-26: not the 2026-27 census's (rule 9005), though it ends in it.
            ("pre_proceedings.started", "2026-03-02", pp("PP0")),
            (
                "pre_proceedings.decided",
                "2026-05-01",
                json!({"pre_proceedings_id": "PP0", "outcome": "no_further_action"}),
            ),
            // Stepped down after a family group meeting offered and held, and two reviews.
            ("pre_proceedings.started", "2026-05-04", pp("PP1")),
            ("pre_proceedings.letter_sent", "2026-05-06", letter("PP1", "before_proceedings")),
            ("family_group_meeting.offered", "2026-05-06", pp("PP1")),
            ("pre_proceedings.meeting_held", "2026-05-13", meeting("PP1", "initial")),
            ("family_group_meeting.held", "2026-05-27", pp("PP1")),
            ("pre_proceedings.meeting_held", "2026-06-24", meeting("PP1", "review")),
            ("pre_proceedings.decided", "2026-06-25", json!({"pre_proceedings_id": "PP1", "outcome": "continue"})),
            ("pre_proceedings.meeting_held", "2026-07-22", meeting("PP1", "review")),
            (
                "pre_proceedings.decided",
                "2026-07-23",
                json!({"pre_proceedings_id": "PP1", "outcome": "step_down_child_protection"}),
            ),
            // To court: a letter with no family group meeting offered, no decision recorded.
            ("pre_proceedings.started", "2026-09-01", pp("PP2")),
            ("pre_proceedings.letter_sent", "2026-09-03", letter("PP2", "before_proceedings")),
            // Steps of pre-proceedings never begun are no one's.
            ("family_group_meeting.held", "2026-09-04", pp("PP9")),
            (
                "court.application_filed",
                "2026-11-02",
                json!({"proceedings_id": "PR1", "kind": "care", "court": "Family Court"}),
            ),
            ("pre_proceedings.letter_sent", "2026-11-03", letter("PP2", "initiating_proceedings")),
        ]);
        let haringey = CouncilCode::parse("E09000014").expect("a code");
        let calendar = Calendar::england_and_wales();
        let day = |text: &str| text.parse::<NaiveDate>().ok();
        let year = CollectionYear::parse("2026-27").expect("year");
        let child = census_child(&h, &haringey, &year, calendar).expect("in scope");
        let found = &child.episodes[0].pre_proceedings;
        assert_eq!(found.iter().map(|p| p.id.as_str()).collect::<Vec<_>>(), ["PP1", "PP2"]);
        let (first, second) = (&found[0], &found[1]);
        assert_eq!(
            (first.letter_before, first.family_meeting_offered, first.family_meeting_held),
            (day("2026-05-06"), day("2026-05-06"), day("2026-05-27"))
        );
        assert_eq!((first.initial_meeting, first.reviews.len()), (day("2026-05-13"), 2));
        // `continue` decides nothing; the step down does.
        assert_eq!(
            first.decision,
            Some((day("2026-07-23").expect("a date"), PreProceedingsOutcome::StepDownChildProtection))
        );
        // The application names no pre-proceedings: it follows the one open that day.
        assert_eq!(
            (second.decision, second.application, second.letter_initiating),
            (None, day("2026-11-02"), day("2026-11-03"))
        );
        assert_eq!(second.outcome(), Some(PreProceedingsOutcome::IssueProceedings));
        let header = Header {
            dfe_la_code: DfeLaCode::parse("309").expect("a code"),
            software: "safeguard".into(),
            release: "test".into(),
            serial: 1,
            made_at: chrono::DateTime::UNIX_EPOCH,
        };
        let xml = message(&header, &year, std::slice::from_ref(&child));
        let blocks: Vec<&str> = xml.split("<PreProceedingsandFGDM>").skip(1).collect();
        assert_eq!(blocks.len(), 2, "{xml}");
        for (expected, block) in [
            (
                vec![
                    "<PPStartDate>2026-05-04<",
                    "<LBPSentDate>2026-05-06<",
                    "<FGDMMeetingOffer>1<",
                    "<FGDMMeetingFac>1<",
                    "<InitialPPMeetingDate>2026-05-13<",
                    "<ReviewMeetingsCount>2<",
                    "<StepDecisionDate>2026-07-23<",
                    "<PPOutcome>B<",
                ],
                blocks[0],
            ),
            (
                vec![
                    "<PPStartDate>2026-09-01<",
                    "<FGDMMeetingOffer>0<",
                    "<PPOutcome>A<",
                    "<CourtAppDate>2026-11-02<",
                    "<LetterInitCPDate>2026-11-03<",
                ],
                blocks[1],
            ),
        ] {
            for part in expected {
                assert!(block.contains(part), "{part} in {block}");
            }
        }
        // No family group meeting offered: nothing said of one held (9010Q asks only after an offer).
        assert!(!blocks[1].contains("FGDMMeetingFac"), "{}", blocks[1]);
        assert_eq!(year.schema(), "cin-census-2026-27.xsd");
        assert!(crate::quality::flags(&child).is_empty(), "{:?}", crate::quality::flags(&child));
        // The 2025-26 census has no module 5, though PP0 began in its year.
        let earlier = CollectionYear::parse("2025-26").expect("year");
        let child = census_child(&h, &haringey, &earlier, calendar).expect("in scope");
        assert!(child.episodes[0].pre_proceedings.is_empty());
        let xml = message(&header, &earlier, &[child]);
        assert!(!xml.contains("PreProceedings"), "{xml}");
        assert_eq!(earlier.schema(), "cin-census-2025-26.xsd");
    }

    #[test]
    fn pre_proceedings_out_of_order_are_flagged_by_rule() {
        let registered = json!({"council": "E09000014", "la_child_id": "A1", "sex": "M", "birth_date": "2019-03-04"});
        let pp = |id: &str| json!({"pre_proceedings_id": id});
        let h = history(&[
            ("child.registered", "2025-01-02", registered),
            ("referral.received", "2026-05-01", json!({"referral_id": "R1", "source": "6", "nfa": false})),
            ("pre_proceedings.started", "2026-05-05", pp("PP1")),
            (
                "pre_proceedings.letter_sent",
                "2026-05-04",
                json!({"pre_proceedings_id": "PP1", "letter": "before_proceedings"}),
            ),
            ("family_group_meeting.held", "2026-05-20", pp("PP1")),
            ("pre_proceedings.started", "2026-06-01", pp("PP2")),
            (
                "pre_proceedings.decided",
                "2026-07-01",
                json!({"pre_proceedings_id": "PP2", "outcome": "issue_proceedings"}),
            ),
            (
                "court.application_filed",
                "2026-06-30",
                json!({"proceedings_id": "PR1", "kind": "care", "court": "Family Court", "pre_proceedings_id": "PP2"}),
            ),
        ]);
        let child = fold(&h, NaiveDate::MAX, Calendar::england_and_wales());
        let rules: Vec<_> =
            crate::quality::flags(&child).into_iter().map(|f| (f.rule, f.reference.to_string())).collect();
        use crate::quality::Rule as R;
        assert_eq!(
            rules,
            [
                (R::LetterBeforePreProceedings, "PP1".to_owned()),
                (R::FamilyMeetingHeldBeforeOffered, "PP1".to_owned()),
                (R::CourtApplicationBeforeDecision, "PP2".to_owned()),
                (R::PreProceedingsOverlap, "PP2".to_owned()),
            ]
        );
    }
}
