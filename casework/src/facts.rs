//! The facts behind caseloads and indicators, folded from one subject's
//! whole history. Pure: a subject's stored events in, rows out.
//!
//! Why a whole-history fold: a fact that arrives late (a referral recorded a
//! year after it happened, a correction of a plan's start date) must leave
//! the read models as if everything had arrived in business order. Folding
//! the subject's full history, sorted by business time, every time any of
//! its events arrives makes that true by construction, and makes applying a
//! batch twice harmless. A subject's history is tens to hundreds of events,
//! so the cost is small; bulk replays use large batches so that each subject
//! is folded few times.
//!
//! Corrections and retractions are applied first: a retracted event takes no
//! part, a corrected one takes part with its corrected data (and business
//! time, when the correction gives one). Which council each fact belongs
//! to is the subject's standing ([`events::standing`]), the fold the
//! gateway makes too: a correction never moves a child and a registration
//! is never retracted, whatever a stored amendment says.
//!
//! Only codes, dates and ids are read here. Personal fields stay sealed.

use chrono::{DateTime, FixedOffset, NaiveDate, Utc};
use events::calendar::{add_months, business_date_of};
use events::catalogue::CorrectedData;
use events::codes::{CategoryOfAbuse, ConferenceKind, ReviewKind, SeenContext, WorkerRole};
use events::ids::{CouncilCode, DfeLaCode, EventId, LaChildId, LocalId, PrincipalName, WorkerId};
use events::standing::Standing;
use events::{EventData, EventType, Problems};
use std::collections::{HashMap, HashSet};

/// One stored event of a subject, as the read models keep it: its data
/// typed in the stored form (personal fields sealed).
#[derive(Debug, Clone)]
pub struct Recorded {
    pub sequence: i64,
    pub event_id: EventId,
    pub source: PrincipalName,
    pub occurred_at: DateTime<Utc>,
    pub business_date: NaiveDate,
    /// When the backbone stored it: what was known when (the alerts' clock).
    pub recorded_at: DateTime<Utc>,
    pub data: EventData,
    /// The envelope's `authorrole`: who at the publisher wrote it.
    pub author_role: Option<events::codes::AuthorRole>,
    /// The envelope's `significant`: the publisher's own mark, if it gave one.
    pub significant: Option<bool>,
}

impl Recorded {
    pub fn event_type(&self) -> EventType {
        self.data.event_type()
    }
}

/// A subject's whole history, ready to fold: in recorded order, with every
/// correction's data typed as the event it corrects (which only the
/// history knows). The folds take only this, so none of them meets a
/// correction it cannot read.
#[derive(Debug, Clone)]
pub struct History {
    events: Vec<Recorded>,
    standing: Standing,
}

impl Default for History {
    fn default() -> Self {
        Self { events: Vec::new(), standing: Standing::unplaced() }
    }
}

/// Why a subject's stored history cannot be folded. The gateway checks a
/// correction against the event it corrects before storing it, so this
/// means the stored history is not what the gateway wrote.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HistoryError {
    #[error("event {sequence}: the correction does not fit the event it corrects: {problems}")]
    Correction { sequence: i64, problems: Problems },
    /// A child's history without its registration: every fact of a child
    /// belongs to a council, and the gateway stores nothing before the
    /// registration.
    #[error("the child's history has no registration")]
    Unregistered,
}

impl History {
    pub fn new(mut events: Vec<Recorded>) -> Result<Self, HistoryError> {
        events.sort_by_key(|r| r.sequence);
        // Which event each correction corrects, found first (borrowing),
        // then resolved. A correction of an event this history lacks
        // corrects nothing here (the gateway never stores one); it stays
        // unresolved and takes no part.
        let types: HashMap<(&PrincipalName, &EventId), EventType> =
            events.iter().map(|r| ((&r.source, &r.event_id), r.event_type())).collect();
        let targets: Vec<(usize, EventType)> = events
            .iter()
            .enumerate()
            .filter_map(|(i, r)| match &r.data {
                EventData::RecordCorrected(c) => types.get(&(&r.source, &c.corrects)).map(|t| (i, *t)),
                _ => None,
            })
            .collect();
        drop(types);
        for (i, corrected) in targets {
            let r = &mut events[i];
            if let EventData::RecordCorrected(c) = &mut r.data {
                c.resolve_stored(corrected)
                    .map_err(|problems| HistoryError::Correction { sequence: r.sequence, problems })?;
            }
        }
        let mut standing = Standing::unplaced();
        for r in &events {
            let sequence = u64::try_from(r.sequence).unwrap_or(0);
            standing.apply(&r.source, &r.event_id, sequence, r.occurred_at, &r.data);
        }
        Ok(Self { events, standing })
    }

    /// This history with `more` events recorded after it, as
    /// [`History::new`] would make of them all: a projector that keeps a
    /// subject's history between batches reads only what is new.
    /// Corrections already resolved stay resolved, and a correction among
    /// `more` may correct an event of the kept history.
    pub fn extended(mut self, more: Vec<Recorded>) -> Result<Self, HistoryError> {
        if more.is_empty() {
            return Ok(self);
        }
        self.events.extend(more);
        Self::new(self.events)
    }

    /// The sequence of the last event recorded (none before any).
    pub fn last_sequence(&self) -> Option<i64> {
        self.events.last().map(|r| r.sequence)
    }

    /// Whether the subject is registered, and whose it is when.
    pub fn standing(&self) -> &Standing {
        &self.standing
    }

    pub(crate) fn events_mut(&mut self) -> &mut [Recorded] {
        &mut self.events
    }
}

impl std::ops::Deref for History {
    type Target = [Recorded];
    fn deref(&self) -> &[Recorded] {
        &self.events
    }
}

/// An event as it now stands: corrections applied, in business order.
#[derive(Debug, Clone)]
pub(crate) struct Fact<'a> {
    pub(crate) at: DateTime<Utc>,
    pub(crate) on: NaiveDate,
    pub(crate) sequence: i64,
    pub(crate) data: &'a EventData,
    /// The council the subject belonged to when this happened (none for a
    /// child not yet registered, which the gateway never stores).
    pub(crate) council: Option<&'a CouncilCode>,
}

impl Fact<'_> {
    pub(crate) fn event_type(&self) -> EventType {
        self.data.event_type()
    }
}

/// The history as it now stands, in business order (ties in recorded order).
pub(crate) fn effective(history: &History) -> Vec<Fact<'_>> {
    type Key<'a> = (&'a PrincipalName, &'a EventId);
    let mut corrected: HashMap<Key<'_>, (&EventData, Option<&DateTime<FixedOffset>>)> = HashMap::new();
    let mut retracted: HashSet<Key<'_>> = HashSet::new();
    // The history is in recorded order, so the latest correction wins.
    for r in history.iter() {
        match &r.data {
            EventData::RecordCorrected(c) => {
                if let CorrectedData::Resolved(data) = &c.data {
                    corrected.insert((&r.source, &c.corrects), (data, c.time.as_ref()));
                }
            }
            EventData::RecordRetracted(c) => {
                retracted.insert((&r.source, &c.retracts));
            }
            _ => {}
        }
    }
    let mut facts: Vec<Fact<'_>> = history
        .iter()
        .filter_map(|r| {
            if r.event_type().amends() {
                return None;
            }
            let key = (&r.source, &r.event_id);
            if retracted.contains(&key) {
                return None;
            }
            let (data, at, on) = match corrected.get(&key) {
                Some((data, Some(time))) => (*data, time.to_utc(), business_date_of(time)),
                Some((data, None)) => (*data, r.occurred_at, r.business_date),
                None => (&r.data, r.occurred_at, r.business_date),
            };
            let council = history.standing.council_at(at, u64::try_from(r.sequence).unwrap_or(0));
            Some(Fact { at, on, sequence: r.sequence, data, council })
        })
        .collect();
    facts.sort_by_key(|f| (f.at, f.sequence));
    facts
}

/// A referral, with the same child's previous referral.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Referral {
    pub referral_id: LocalId,
    pub council: CouncilCode,
    pub received_on: NaiveDate,
    pub nfa: bool,
    /// This council's previous referral of the child.
    pub previous_on: Option<NaiveDate>,
    pub closed_on: Option<NaiveDate>,
    /// Received while the council's episode was open: not a new referral.
    pub during_open_episode: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assessment {
    pub assessment_id: LocalId,
    pub council: CouncilCode,
    pub started_on: Option<NaiveDate>,
    pub completed_on: Option<NaiveDate>,
    /// What the authorised assessment found: whether the child needs support.
    pub needs_support: Option<bool>,
}

/// A section 47 enquiry started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section47 {
    pub s47_id: LocalId,
    pub council: CouncilCode,
    pub started_on: NaiveDate,
}

/// An initial child protection conference and the start of the section 47
/// enquiry that led to it (the ICPC clock).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Icpc {
    pub conference_id: LocalId,
    pub council: CouncilCode,
    pub held_on: NaiveDate,
    pub s47_started_on: Option<NaiveDate>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpPlan {
    pub plan_id: LocalId,
    pub council: CouncilCode,
    pub category: CategoryOfAbuse,
    pub started_on: NaiveDate,
    pub ended_on: Option<NaiveDate>,
    /// The conference that decided the plan, which starts the review clock.
    pub icpc_on: NaiveDate,
    /// The child had a plan that started before this one, however long ago.
    pub earlier_plan: bool,
    /// Review conferences, in date order.
    pub reviews: Vec<NaiveDate>,
}

impl CpPlan {
    /// Whether the plan is open on `day` (a plan ending on a day is no longer
    /// open that day).
    pub fn open_on(&self, day: NaiveDate) -> bool {
        self.started_on <= day && self.ended_on.is_none_or(|end| end > day)
    }

    /// When the next review falls due after the reviews held so far: three
    /// months after the ICPC, then six months after each review.
    pub fn next_review_due(&self) -> NaiveDate {
        match self.reviews.last() {
            Some(last) => add_months(*last, 6),
            None => add_months(self.icpc_on, 3),
        }
    }
}

/// A worker holding the child's case, from one day up to (not including) another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocation {
    pub worker_id: WorkerId,
    pub team_id: LocalId,
    pub council: CouncilCode,
    pub allocated_at: DateTime<Utc>,
    pub from_on: NaiveDate,
    pub to_on: Option<NaiveDate>,
}

impl Allocation {
    pub fn open_on(&self, day: NaiveDate) -> bool {
        self.from_on <= day && self.to_on.is_none_or(|end| end > day)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sighting {
    /// The subject sequence of the event that recorded it: a sighting's
    /// identity, which a late or corrected visit does not change.
    pub sequence: i64,
    pub seen_at: DateTime<Utc>,
    pub seen_on: NaiveDate,
    pub statutory: bool,
    pub alone: bool,
}

/// The child's state after everything known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildStatus {
    pub council: CouncilCode,
    pub la_child_id: Option<LaChildId>,
    pub died_on: Option<NaiveDate>,
    pub sealed: bool,
    /// An episode that began with a referral (not no-further-action) and is not closed.
    pub episode_open: bool,
    pub on_cp_plan: bool,
    pub on_cin_plan: bool,
    /// The day the open plan (CP first, else CIN) started.
    pub plan_started_on: Option<NaiveDate>,
    pub review_due_on: Option<NaiveDate>,
    pub last_seen_at: Option<DateTime<Utc>>,
    pub last_seen_alone_at: Option<DateTime<Utc>>,
    pub last_visit_on: Option<NaiveDate>,
}

/// A serious case or practice review of the child: while it is open, the
/// principals it names may read the child's record (the reviewer role).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Review {
    pub review_id: LocalId,
    pub kind: ReviewKind,
    pub reviewers: Vec<PrincipalName>,
    pub opened_at: DateTime<Utc>,
    pub closed_at: Option<DateTime<Utc>>,
}

/// Everything the casework tables hold about one child.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildFacts {
    pub status: ChildStatus,
    pub referrals: Vec<Referral>,
    pub assessments: Vec<Assessment>,
    pub section47s: Vec<Section47>,
    pub icpcs: Vec<Icpc>,
    pub plans: Vec<CpPlan>,
    pub allocations: Vec<Allocation>,
    pub sightings: Vec<Sighting>,
    pub reviews: Vec<Review>,
}

impl ChildFacts {
    /// A child registered with `council`, of whom nothing more is known.
    pub fn registered(council: CouncilCode) -> Self {
        Self {
            status: ChildStatus {
                council,
                la_child_id: None,
                died_on: None,
                sealed: false,
                episode_open: false,
                on_cp_plan: false,
                on_cin_plan: false,
                plan_started_on: None,
                review_due_on: None,
                last_seen_at: None,
                last_seen_alone_at: None,
                last_visit_on: None,
            },
            referrals: Vec::new(),
            assessments: Vec::new(),
            section47s: Vec::new(),
            icpcs: Vec::new(),
            plans: Vec::new(),
            allocations: Vec::new(),
            sightings: Vec::new(),
            reviews: Vec::new(),
        }
    }
}

/// Folds a child's whole history. Every fact belongs to the council the
/// child was in when it happened, so a history with no registration is
/// an error, not a child of no council.
pub fn fold_child(history: &History) -> Result<ChildFacts, HistoryError> {
    use EventData as D;
    let council_now = history.standing().council().ok_or(HistoryError::Unregistered)?.clone();
    let mut out = ChildFacts::registered(council_now.clone());
    let mut status = out.status.clone();
    // Each council's last referral of the child: the DfE counts re-referrals within a council.
    let mut last_referral: HashMap<CouncilCode, NaiveDate> = HashMap::new();
    let mut discussions: HashMap<&LocalId, NaiveDate> = HashMap::new();
    // Each enquiry: when its ICPC clock starts (the strategy discussion that
    // initiated it, else its own start), in the order they began.
    let mut enquiries: Vec<(&LocalId, NaiveDate)> = Vec::new();
    let mut conferenced: std::collections::HashSet<&LocalId> = std::collections::HashSet::new();
    let mut conferences: HashMap<&LocalId, NaiveDate> = HashMap::new();
    let mut reviews: HashMap<&LocalId, Vec<NaiveDate>> = HashMap::new();
    let mut plan_conference: Vec<&LocalId> = Vec::new();
    let mut cin_open: HashMap<&LocalId, NaiveDate> = HashMap::new();

    let facts = effective(history);
    // Who may read the record (sealing, open reviews) follows the order in
    // which those facts were recorded, not the dates they carry: a review
    // closed, or a record sealed, by a fact dated in the past takes effect
    // when it is recorded, as the gateway's acknowledgement said it would.
    let mut access: Vec<&Fact<'_>> = facts
        .iter()
        .filter(|f| {
            matches!(
                f.event_type(),
                EventType::RecordSealed | EventType::RecordUnsealed | EventType::ReviewOpened | EventType::ReviewClosed
            )
        })
        .collect();
    access.sort_by_key(|f| f.sequence);
    for f in access {
        match f.data {
            D::RecordSealed(_) => status.sealed = true,
            D::RecordUnsealed(_) => status.sealed = false,
            D::ReviewOpened(d) => {
                out.reviews.retain(|r| r.review_id != d.review_id);
                out.reviews.push(Review {
                    review_id: d.review_id.clone(),
                    kind: d.kind,
                    reviewers: d.reviewers.clone(),
                    opened_at: f.at,
                    closed_at: None,
                });
            }
            D::ReviewClosed(d) => {
                if let Some(r) = out.reviews.iter_mut().find(|r| r.review_id == d.review_id) {
                    r.closed_at = Some(f.at);
                }
            }
            _ => {}
        }
    }

    for f in &facts {
        // A child is registered before anything else is stored about it,
        // so every fact has a council; the one it has now covers the rest.
        let council = f.council.unwrap_or(&council_now);
        match f.data {
            D::ChildRegistered(d) => status.la_child_id = Some(d.la_child_id.clone()),
            D::ChildDetailsUpdated(d) => {
                if let Some(id) = &d.la_child_id {
                    status.la_child_id = Some(id.clone());
                }
            }
            // The sending council's allocations end with the transfer.
            D::ChildTransferred(_) => close_allocations(&mut out.allocations, f.on, None),
            D::ChildDied(d) => status.died_on = Some(d.date),
            D::ReferralReceived(d) => {
                out.referrals.retain(|r| r.referral_id != d.referral_id);
                // The census guide: a referral while the council's episode is
                // still open is not recorded as a new one.
                let during_open_episode = out.referrals.iter().any(|r| {
                    r.council == *council && !r.nfa && !r.during_open_episode && r.closed_on.is_none_or(|c| c > f.on)
                });
                out.referrals.push(Referral {
                    referral_id: d.referral_id.clone(),
                    council: council.clone(),
                    received_on: f.on,
                    nfa: d.nfa,
                    previous_on: last_referral.get(council).copied(),
                    closed_on: None,
                    during_open_episode,
                });
                if !during_open_episode {
                    last_referral.insert(council.clone(), f.on);
                }
            }
            D::StrategyDiscussionHeld(d) => {
                discussions.insert(&d.discussion_id, f.on);
            }
            D::AssessmentStarted(d) => {
                let a = assessment(&mut out.assessments, &d.assessment_id, council);
                a.started_on = Some(f.on);
            }
            D::AssessmentCompleted(d) => {
                let a = assessment(&mut out.assessments, &d.assessment_id, council);
                a.completed_on = Some(f.on);
                a.needs_support = Some(d.needs_support);
                a.council.clone_from(council);
            }
            D::S47Started(d) => {
                let clock = d.discussion_id.as_ref().and_then(|id| discussions.get(id).copied()).unwrap_or(f.on);
                enquiries.retain(|(id, _)| *id != &d.s47_id);
                enquiries.push((&d.s47_id, clock));
                // An enquiry id stated again is one enquiry: the later statement stands.
                out.section47s.retain(|s| s.s47_id != d.s47_id);
                out.section47s.push(Section47 { s47_id: d.s47_id.clone(), council: council.clone(), started_on: f.on });
            }
            D::ConferenceHeld(d) => {
                let id = &d.conference_id;
                conferences.insert(id, f.on);
                match d.kind {
                    ConferenceKind::Initial => {
                        // The enquiry it names, or else the latest not yet
                        // conferenced: never an enquiry an earlier ICPC followed.
                        let enquiry = match &d.s47_id {
                            Some(named) => enquiries.iter().find(|(id, _)| *id == named),
                            None => enquiries.iter().rev().find(|(id, _)| !conferenced.contains(*id)),
                        };
                        let started = enquiry.map(|(_, clock)| *clock);
                        if let Some((id, _)) = enquiry {
                            conferenced.insert(*id);
                        }
                        // A conference id stated again (a resend under a new
                        // event id, a system that reuses ids) is one conference:
                        // the later statement stands, as for referrals.
                        out.icpcs.retain(|i| i.conference_id != *id);
                        out.icpcs.push(Icpc {
                            conference_id: id.clone(),
                            council: council.clone(),
                            held_on: f.on,
                            s47_started_on: started,
                        });
                    }
                    ConferenceKind::Review => {
                        if let Some(plan) = &d.plan_id {
                            reviews.entry(plan).or_default().push(f.on);
                        }
                    }
                    ConferenceKind::TransferIn => {}
                }
            }
            D::CpPlanStarted(d) => {
                let id = &d.plan_id;
                // A plan id started again is one plan: the later start stands.
                if let Some(i) = out.plans.iter().position(|p| p.plan_id == *id) {
                    out.plans.remove(i);
                    plan_conference.remove(i);
                }
                // Earlier plans with this council: the DfE counts within the council.
                let earlier =
                    out.plans.iter().any(|p| p.plan_id != *id && p.council == *council && p.started_on <= f.on);
                out.plans.push(CpPlan {
                    plan_id: id.clone(),
                    council: council.clone(),
                    category: d.category,
                    started_on: f.on,
                    ended_on: None,
                    icpc_on: f.on,
                    earlier_plan: earlier,
                    reviews: Vec::new(),
                });
                plan_conference.push(&d.conference_id);
            }
            D::CpPlanCategoryChanged(d) => {
                if let Some(p) = plan(&mut out.plans, &d.plan_id) {
                    p.category = d.category;
                }
            }
            D::CpPlanEnded(d) => {
                if let Some(p) = plan(&mut out.plans, &d.plan_id) {
                    p.ended_on = Some(f.on);
                }
            }
            D::CinPlanStarted(d) => {
                cin_open.insert(&d.plan_id, f.on);
            }
            D::CinPlanEnded(d) => {
                cin_open.remove(&d.plan_id);
            }
            D::ChildSeen(d) => {
                let statutory = d.context == SeenContext::StatutoryVisit;
                out.sightings.push(Sighting {
                    sequence: f.sequence,
                    seen_at: f.at,
                    seen_on: f.on,
                    statutory,
                    alone: d.seen_alone,
                });
                status.last_seen_at = Some(f.at);
                if d.seen_alone {
                    status.last_seen_alone_at = Some(f.at);
                }
                if statutory {
                    status.last_visit_on = Some(f.on);
                }
            }
            D::CaseAllocated(d) => {
                let worker = d.worker_id;
                if !out.allocations.iter().any(|a| a.worker_id == worker && a.to_on.is_none()) {
                    out.allocations.push(Allocation {
                        worker_id: worker,
                        team_id: d.team_id.clone(),
                        council: council.clone(),
                        allocated_at: f.at,
                        from_on: f.on,
                        to_on: None,
                    });
                }
            }
            D::CaseDeallocated(d) => {
                close_allocations(&mut out.allocations, f.on, Some(d.worker_id));
            }
            D::CaseClosed(d) => {
                if let Some(r) = out.referrals.iter_mut().find(|r| r.referral_id == d.referral_id) {
                    r.closed_on = Some(f.on);
                }
                // Closing the episode ends whoever held the case.
                close_allocations(&mut out.allocations, f.on, None);
            }
            _ => {}
        }
    }

    // Links that may point forward in business order are made at the end.
    for (p, conference) in out.plans.iter_mut().zip(plan_conference) {
        if let Some(held) = conferences.get(conference) {
            p.icpc_on = *held;
        }
        if let Some(dates) = reviews.get(&p.plan_id) {
            p.reviews = dates.iter().copied().filter(|d| *d >= p.started_on).collect();
        }
    }

    let open_cp = out.plans.iter().rev().find(|p| p.ended_on.is_none());
    status.episode_open = out.referrals.iter().any(|r| !r.nfa && r.closed_on.is_none());
    status.on_cp_plan = open_cp.is_some();
    status.on_cin_plan = !cin_open.is_empty();
    status.plan_started_on = open_cp.map(|p| p.started_on).or_else(|| cin_open.values().min().copied());
    status.review_due_on = open_cp.map(CpPlan::next_review_due);
    out.status = status;
    Ok(out)
}

fn assessment<'a>(list: &'a mut Vec<Assessment>, id: &LocalId, council: &CouncilCode) -> &'a mut Assessment {
    let index = match list.iter().position(|a| a.assessment_id == *id) {
        Some(i) => i,
        None => {
            list.push(Assessment {
                assessment_id: id.clone(),
                council: council.clone(),
                started_on: None,
                completed_on: None,
                needs_support: None,
            });
            list.len() - 1
        }
    };
    &mut list[index]
}

fn plan<'a>(list: &'a mut [CpPlan], id: &LocalId) -> Option<&'a mut CpPlan> {
    list.iter_mut().rev().find(|p| p.plan_id == *id)
}

fn close_allocations(list: &mut [Allocation], on: NaiveDate, worker: Option<WorkerId>) {
    for a in list.iter_mut().filter(|a| a.to_on.is_none()) {
        if worker.is_none_or(|w| w == a.worker_id) {
            a.to_on = Some(on);
        }
    }
}

/// A worker's team, role and hours over a span of days (`to_on` exclusive).
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerSpell {
    pub council: CouncilCode,
    pub team_id: LocalId,
    pub role: WorkerRole,
    pub fte: f64,
    pub agency: bool,
    pub from_on: NaiveDate,
    pub to_on: Option<NaiveDate>,
}

impl WorkerSpell {
    pub fn open_on(&self, day: NaiveDate) -> bool {
        self.from_on <= day && self.to_on.is_none_or(|end| end > day)
    }

    /// Social workers and senior social workers hold cases.
    pub fn holds_cases(&self) -> bool {
        matches!(self.role, WorkerRole::SocialWorker | WorkerRole::SeniorSocialWorker)
    }

    /// A social worker of any grade, managers included: who fills a funded
    /// post in the DfE's workforce census (family support workers do not).
    pub fn is_social_worker(&self) -> bool {
        matches!(self.role, WorkerRole::SocialWorker | WorkerRole::SeniorSocialWorker | WorkerRole::TeamManager)
    }
}

/// Folds a worker's whole history into spells.
pub fn fold_worker(history: &History) -> Vec<WorkerSpell> {
    let mut spells: Vec<WorkerSpell> = Vec::new();
    for f in effective(history) {
        let current = spells.last_mut().filter(|s| s.to_on.is_none());
        match f.data {
            EventData::WorkerJoined(d) => {
                if let Some(open) = current {
                    open.to_on = Some(f.on);
                }
                spells.push(WorkerSpell {
                    // The council they joined, whatever a stored correction says.
                    council: f.council.unwrap_or(&d.council).clone(),
                    team_id: d.team_id.clone(),
                    role: d.role,
                    fte: d.fte.get(),
                    agency: d.agency_staff,
                    from_on: f.on,
                    to_on: None,
                });
            }
            EventData::WorkerChanged(d) => {
                let Some(open) = current else { continue };
                let mut next = open.clone();
                open.to_on = Some(f.on);
                next.from_on = f.on;
                if let Some(team) = &d.team_id {
                    next.team_id.clone_from(team);
                }
                if let Some(role) = d.role {
                    next.role = role;
                }
                if let Some(fte) = d.fte {
                    next.fte = fte.get();
                }
                spells.push(next);
            }
            EventData::WorkerLeft(_) => {
                if let Some(open) = current {
                    open.to_on = Some(f.on);
                }
            }
            _ => {}
        }
    }
    // A change on the day a spell began leaves an empty spell; drop it.
    spells.retain(|s| s.to_on.is_none_or(|end| end > s.from_on));
    spells
}

/// A council's settings in force from a date: each configuration overrides
/// the fields it gives and keeps the rest.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CouncilSetting {
    pub effective_from: NaiveDate,
    pub dfe_la_code: Option<DfeLaCode>,
    pub population_0_17: Option<i64>,
    pub assessment_timescale_days: Option<i32>,
    pub visit_interval_days: Option<i32>,
    /// How often a child on a child in need plan is visited (not the child
    /// protection interval: councils set their own).
    pub cin_visit_interval_days: Option<i32>,
    pub caseload_threshold: Option<i32>,
    pub funded_social_worker_fte: Option<f64>,
    /// The alerts' settings ([`crate::alerts::Settings`]).
    pub pattern_agencies: Option<u32>,
    pub pattern_events: Option<u32>,
    pub pattern_window_days: Option<u32>,
    pub acknowledge_within_days: Option<u32>,
    pub alert_lead_days: Option<u32>,
}

/// Folds a council's configurations, in order of the date each takes effect.
pub fn fold_council(history: &History) -> Vec<CouncilSetting> {
    let mut configured: Vec<(&events::catalogue::CouncilConfigured, Fact<'_>)> = effective(history)
        .into_iter()
        .filter_map(|f| match f.data {
            EventData::CouncilConfigured(d) => Some((d, f)),
            _ => None,
        })
        .collect();
    configured.sort_by_key(|(d, f)| (d.effective_from, f.at, f.sequence));
    let mut out: Vec<CouncilSetting> = Vec::new();
    for (d, _) in configured {
        let from = d.effective_from;
        let mut s = out.last().cloned().unwrap_or_default();
        s.effective_from = from;
        let days = |v: Option<u32>| v.map(|v| i32::try_from(v).unwrap_or(i32::MAX));
        if let Some(code) = &d.dfe_la_code {
            s.dfe_la_code = Some(code.clone());
        }
        s.population_0_17 = d.population_0_17.map(|p| i64::try_from(p).unwrap_or(i64::MAX)).or(s.population_0_17);
        s.assessment_timescale_days = days(d.assessment_timescale_days).or(s.assessment_timescale_days);
        s.visit_interval_days = days(d.visit_interval_days).or(s.visit_interval_days);
        s.cin_visit_interval_days = days(d.cin_visit_interval_days).or(s.cin_visit_interval_days);
        s.caseload_threshold = days(d.caseload_threshold).or(s.caseload_threshold);
        s.funded_social_worker_fte = d.funded_social_worker_fte.map(|f| f.get()).or(s.funded_social_worker_fte);
        s.pattern_agencies = d.pattern_agencies.or(s.pattern_agencies);
        s.pattern_events = d.pattern_events.or(s.pattern_events);
        s.pattern_window_days = d.pattern_window_days.or(s.pattern_window_days);
        s.acknowledge_within_days = d.acknowledge_within_days.or(s.acknowledge_within_days);
        s.alert_lead_days = d.alert_lead_days.or(s.alert_lead_days);
        // Two configurations effective the same day: the later-recorded one stands.
        if out.last().is_some_and(|last| last.effective_from == from) {
            out.pop();
        }
        out.push(s);
    }
    out
}

/// The setting in force on `day`, if any.
pub fn setting_on(settings: &[CouncilSetting], day: NaiveDate) -> Option<&CouncilSetting> {
    settings.iter().rev().find(|s| s.effective_from <= day).or(settings.first())
}
