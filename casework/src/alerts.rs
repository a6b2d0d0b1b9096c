//! Alerts: what the backbone tells the people responsible for a child,
//! folded from the child's whole history. Pure: history, facts and the
//! council's settings in, alerts out; the time of reading only decides
//! which are visible yet and what their status is ([`Alert::status`]).
//!
//! Why a fold and not a queue of messages: an alert is a fact about the
//! history (a police concern arrived while the case was open; a visit fell
//! due and none was recorded), so the same history always gives the same
//! alerts with the same ids, a rebuild equals the live tables, and an
//! acknowledgement (`alert.acknowledged`, in the child's signed history)
//! names an alert every later fold will find again. Alerts that fall due
//! later are folded too, with a `raised_at` in the future; the projector's
//! sweep announces each as its time comes, so nothing waits for an event.
//!
//! The kinds:
//! - `agency_concern`: a concern, contact, shared information, or a sighting
//!   in a police or health context, published by another agency than the
//!   child's council (a publisher that has never recorded the council's own
//!   casework for this child: registration, transfer, referral, allocation),
//!   while the child has an open case. To the allocated worker and their
//!   team; with no worker allocated, `unallocated`, to the council's team
//!   managers.
//! - `pattern`: concerns or contacts from other agencies, at least
//!   `pattern_events` from `pattern_agencies` publishers within
//!   `pattern_window_days` (business dates), open case or not: the fragments
//!   put together. Raised once per window; events that made one pattern do
//!   not count towards the next.
//! - statutory clocks, each raised `alert_lead_days` working days before it
//!   is due (`*_due`) and again when missed (`*_missed`): the statutory
//!   visit (the council's interval in calendar days from the plan's start or
//!   the last visit; child protection and child in need plans each have
//!   their own), the assessment (its timescale in working days from its
//!   start), the ICPC (15 working days from the strategy discussion, else
//!   the enquiry's start), the review conference (3 months from the ICPC,
//!   then 6 from each review) and the child in need plan review (3 months
//!   from the start, then from each review). A clock met, or whose plan or
//!   enquiry ended, closes its alerts.
//!
//! Every alert is acknowledged within `acknowledge_within_days` working days
//! of the day it was raised, or it is escalated to the team manager.
//! Deadlines are the end of a Europe/London day (the start of the next).
//! Nothing personal is in an alert: ids, codes and times only.

use crate::facts::{ChildFacts, CouncilSetting, History, effective, setting_on};
use crate::indicators::{DEFAULT_ASSESSMENT_DAYS, DEFAULT_CIN_VISIT_INTERVAL_DAYS, DEFAULT_VISIT_INTERVAL_DAYS};
use chrono::{DateTime, Days, NaiveDate, Utc};
use events::calendar::{Calendar, add_months, business_date, start_of_day};
use events::codes::{ConferenceKind, SeenContext};
use events::ids::{AlertId, ChildId, CouncilCode, LocalId, PrincipalName, WorkerId};
use events::{EventData, EventType};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// The ICPC's statutory timescale, in working days.
pub const ICPC_WORKING_DAYS: u32 = 15;
pub const DEFAULT_PATTERN_AGENCIES: u32 = 2;
pub const DEFAULT_PATTERN_EVENTS: u32 = 3;
pub const DEFAULT_PATTERN_WINDOW_DAYS: u32 = 30;
pub const DEFAULT_ACKNOWLEDGE_WITHIN_DAYS: u32 = 1;
pub const DEFAULT_ALERT_LEAD_DAYS: u32 = 2;

macro_rules! kinds {
    ($($variant:ident = $code:literal: $label:literal,)+) => {
        /// What an alert is about.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Kind { $($variant),+ }

        impl Kind {
            pub const ALL: &'static [Kind] = &[$(Kind::$variant),+];
            pub fn code(self) -> &'static str {
                match self { $(Kind::$variant => $code),+ }
            }
            pub fn label(self) -> &'static str {
                match self { $(Kind::$variant => $label),+ }
            }
            pub fn from_code(code: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|k| k.code() == code)
            }
        }
    };
}

kinds! {
    AgencyConcern = "agency_concern": "another agency's concern about a child with an open case",
    Unallocated = "unallocated": "another agency's concern about a child with no allocated worker",
    Pattern = "pattern": "concerns from several agencies within a short time",
    StatutoryVisitDue = "statutory_visit_due": "statutory visit due",
    StatutoryVisitMissed = "statutory_visit_missed": "statutory visit missed",
    AssessmentDue = "assessment_due": "assessment due",
    AssessmentMissed = "assessment_missed": "assessment out of timescale",
    IcpcDue = "icpc_due": "initial child protection conference due",
    IcpcMissed = "icpc_missed": "initial child protection conference out of timescale",
    ReviewConferenceDue = "review_conference_due": "review conference due",
    ReviewConferenceMissed = "review_conference_missed": "review conference missed",
    CinPlanReviewDue = "cin_plan_review_due": "child in need plan review due",
    CinPlanReviewMissed = "cin_plan_review_missed": "child in need plan review missed",
}

impl TryFrom<String> for Kind {
    type Error = String;
    fn try_from(code: String) -> Result<Self, String> {
        Self::from_code(&code).ok_or_else(|| "is not an alert kind".to_owned())
    }
}

/// An alert's state at a moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    Open,
    Acknowledged,
    /// Not acknowledged in time: the team manager's.
    Escalated,
    /// Its clock was met, or its plan or enquiry ended, before anyone
    /// acknowledged it: nothing is left to do.
    Closed,
}

impl Status {
    pub const ALL: [Status; 4] = [Status::Open, Status::Acknowledged, Status::Escalated, Status::Closed];
    pub fn code(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Acknowledged => "acknowledged",
            Self::Escalated => "escalated",
            Self::Closed => "closed",
        }
    }
    pub fn from_code(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.code() == code)
    }
}

/// Who acknowledged an alert, and when (the first acknowledgement stands).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acknowledgement {
    pub by: PrincipalName,
    pub at: DateTime<Utc>,
    /// The `alert.acknowledged` event, in the child's history.
    pub sequence: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    pub id: AlertId,
    pub kind: Kind,
    pub council: CouncilCode,
    /// The allocated worker when it was raised; none goes to the team managers.
    pub worker: Option<WorkerId>,
    pub team: Option<LocalId>,
    /// The publisher of the event that raised it (none for a clock).
    pub raised_by: Option<PrincipalName>,
    /// The child's event that raised it: for a clock, the one that started it.
    pub sequence: i64,
    pub raised_at: DateTime<Utc>,
    /// For a clock, the end of the day it falls due; otherwise when it must be acknowledged.
    pub due_by: DateTime<Utc>,
    pub escalates_at: DateTime<Utc>,
    pub closed_at: Option<DateTime<Utc>>,
    pub acknowledged: Option<Acknowledgement>,
}

impl Alert {
    /// Whether it has been raised by `now` (clocks are folded ahead of time).
    pub fn raised(&self, now: DateTime<Utc>) -> bool {
        self.raised_at <= now
    }

    /// Its status at `now`: an acknowledgement stands over everything, then
    /// a close (nothing more to do, even if it escalated first), then
    /// escalation. `projections::alerts` selects by the same order.
    pub fn status(&self, now: DateTime<Utc>) -> Status {
        if self.acknowledged.as_ref().is_some_and(|a| a.at <= now) {
            Status::Acknowledged
        } else if self.closed_at.is_some_and(|c| c <= now) {
            Status::Closed
        } else if now >= self.escalates_at {
            Status::Escalated
        } else {
            Status::Open
        }
    }

    /// The next moment its status or visibility changes after `now`, if
    /// any: what the projector's sweep waits for.
    pub fn next_change(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        [Some(self.raised_at), Some(self.escalates_at), self.closed_at].into_iter().flatten().filter(|t| *t > now).min()
    }
}

/// The settings an alert is raised under: the council's, or the defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    pub pattern_agencies: u32,
    pub pattern_events: u32,
    pub pattern_window_days: u32,
    pub acknowledge_within_days: u32,
    pub lead_days: u32,
    pub visit_interval_days: u32,
    pub cin_visit_interval_days: u32,
    pub assessment_days: u32,
}

impl Settings {
    pub fn of(setting: Option<&CouncilSetting>) -> Self {
        let days = |v: Option<i32>, default: i64| {
            v.and_then(|v| u32::try_from(v).ok()).unwrap_or(u32::try_from(default).unwrap_or(u32::MAX))
        };
        Self {
            pattern_agencies: setting.and_then(|s| s.pattern_agencies).unwrap_or(DEFAULT_PATTERN_AGENCIES),
            pattern_events: setting.and_then(|s| s.pattern_events).unwrap_or(DEFAULT_PATTERN_EVENTS),
            pattern_window_days: setting.and_then(|s| s.pattern_window_days).unwrap_or(DEFAULT_PATTERN_WINDOW_DAYS),
            acknowledge_within_days: setting
                .and_then(|s| s.acknowledge_within_days)
                .unwrap_or(DEFAULT_ACKNOWLEDGE_WITHIN_DAYS),
            lead_days: setting.and_then(|s| s.alert_lead_days).unwrap_or(DEFAULT_ALERT_LEAD_DAYS),
            visit_interval_days: days(setting.and_then(|s| s.visit_interval_days), DEFAULT_VISIT_INTERVAL_DAYS),
            cin_visit_interval_days: days(
                setting.and_then(|s| s.cin_visit_interval_days),
                DEFAULT_CIN_VISIT_INTERVAL_DAYS,
            ),
            assessment_days: days(setting.and_then(|s| s.assessment_timescale_days), DEFAULT_ASSESSMENT_DAYS),
        }
    }
}

/// The id of an alert: a name-based UUID of the child and what raised it,
/// so every fold of the same history names it alike.
fn alert_id(child: ChildId, key: &str) -> AlertId {
    // A namespace of our own (a v4 UUID fixed here for ever).
    const NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x6d2f_8b1e_4c3a_4f0e_9a57_1b2c_3d4e_5f60);
    AlertId::from_uuid(uuid::Uuid::new_v5(&NAMESPACE, format!("{child}/{key}").as_bytes()))
}

/// The end of the `n`th working day after `day`: when something raised on
/// `day` with `n` working days to act must have been acted on.
fn end_of_working_days(calendar: &Calendar, day: NaiveDate, n: u32) -> DateTime<Utc> {
    end_of(calendar.add_working_days(day, n))
}

/// The end of a London day: the start of the next.
fn end_of(day: NaiveDate) -> DateTime<Utc> {
    start_of_day(day + Days::new(1))
}

/// What raised an alert, before it is routed and timed.
struct Raise<'a> {
    kind: Kind,
    /// What raised it, unique within the child: the alert's id is made from it.
    key: String,
    council: &'a CouncilCode,
    sequence: i64,
    raised_at: DateTime<Utc>,
    raised_by: Option<&'a PrincipalName>,
    due_by: Option<DateTime<Utc>>,
    closed_at: Option<DateTime<Utc>>,
}

/// A deadline the council must meet, from the event that started it.
#[derive(Debug, Clone)]
struct Clock {
    due: Kind,
    missed: Kind,
    key: String,
    council: CouncilCode,
    started_by: i64,
    due_on: NaiveDate,
    met_at: Option<DateTime<Utc>>,
    /// Its plan or enquiry ended, or the child died.
    ended_at: Option<DateTime<Utc>>,
}

/// Folds a child's alerts. `settings` are its council's configurations
/// (every council the child has been in, by code); `facts` its
/// [`crate::facts::fold_child`]. Sorted by id, one per id.
pub fn fold(
    child: ChildId,
    history: &History,
    facts: &ChildFacts,
    settings: &BTreeMap<CouncilCode, Vec<CouncilSetting>>,
    calendar: &Calendar,
) -> Vec<Alert> {
    let settings_on =
        |council: &CouncilCode, day: NaiveDate| Settings::of(settings.get(council).and_then(|s| setting_on(s, day)));
    let routed = |day: NaiveDate| {
        // The case's holder on the day: the latest allocation open then.
        facts.allocations.iter().rev().find(|a| a.open_on(day)).map(|a| (a.worker_id, a.team_id.clone()))
    };
    let recorded: HashMap<i64, DateTime<Utc>> = history.iter().map(|r| (r.sequence, r.recorded_at)).collect();
    let sources: HashMap<i64, &PrincipalName> = history.iter().map(|r| (r.sequence, &r.source)).collect();
    let council_publishers: BTreeSet<&PrincipalName> = history
        .iter()
        .filter(|r| {
            matches!(
                r.event_type(),
                EventType::ChildRegistered
                    | EventType::ChildTransferred
                    | EventType::ReferralReceived
                    | EventType::CaseAllocated
            )
        })
        .map(|r| &r.source)
        .collect();
    let effective = effective(history);
    let council_now = &facts.status.council;
    let mut out: Vec<Alert> = Vec::new();
    let raise = |r: Raise<'_>| {
        let on = business_date(&r.raised_at);
        let s = settings_on(r.council, on);
        let escalates_at = end_of_working_days(calendar, on, s.acknowledge_within_days);
        let (worker, team) = routed(on).map_or((None, None), |(w, t)| (Some(w), Some(t)));
        let kind = if r.kind == Kind::AgencyConcern && worker.is_none() { Kind::Unallocated } else { r.kind };
        Alert {
            id: alert_id(child, &r.key),
            kind,
            council: r.council.clone(),
            worker,
            team,
            raised_by: r.raised_by.cloned(),
            sequence: r.sequence,
            raised_at: r.raised_at,
            due_by: r.due_by.unwrap_or(escalates_at),
            escalates_at,
            closed_at: r.closed_at,
            acknowledged: None,
        }
    };

    // Another agency's word about the child.
    let mut pattern_events: Vec<(DateTime<Utc>, NaiveDate, i64, &PrincipalName)> = Vec::new();
    for f in &effective {
        let Some(source) = sources.get(&f.sequence).copied() else { continue };
        if council_publishers.contains(source) {
            continue;
        }
        let agency_word = match f.data {
            EventData::ConcernRaised(_) | EventData::ContactRecorded(_) => {
                pattern_events.push((f.at, f.on, f.sequence, source));
                true
            }
            EventData::InformationShared(_) => true,
            EventData::ChildSeen(d) => matches!(d.context, SeenContext::Police | SeenContext::Health),
            _ => false,
        };
        let at = recorded.get(&f.sequence).copied().unwrap_or(f.at).max(f.at);
        if agency_word && open_case(facts, business_date(&at)) {
            let council = f.council.unwrap_or(council_now);
            out.push(raise(Raise {
                kind: Kind::AgencyConcern,
                key: format!("agency/{}", f.sequence),
                council,
                sequence: f.sequence,
                raised_at: at,
                raised_by: Some(source),
                due_by: None,
                closed_at: None,
            }));
        }
    }

    // The fragments put together.
    pattern_events.sort_by_key(|(at, _, sequence, _)| (*at, *sequence));
    let mut from = 0;
    for i in 0..pattern_events.len() {
        let (_, on, sequence, source) = pattern_events[i];
        let s = settings_on(council_now, on);
        let window_start = on - Days::new(u64::from(s.pattern_window_days.saturating_sub(1)));
        let window: Vec<_> = pattern_events[from..=i].iter().filter(|(_, day, _, _)| *day >= window_start).collect();
        let agencies: BTreeSet<&PrincipalName> = window.iter().map(|(_, _, _, p)| *p).collect();
        if window.len() >= s.pattern_events as usize && agencies.len() >= s.pattern_agencies as usize {
            // Raised when the last of them was known.
            let at = window.iter().map(|(at, _, seq, _)| recorded.get(seq).copied().unwrap_or(*at).max(*at)).max();
            let at = at.unwrap_or(pattern_events[i].0);
            let council =
                effective.iter().find(|f| f.sequence == sequence).and_then(|f| f.council).unwrap_or(council_now);
            out.push(raise(Raise {
                kind: Kind::Pattern,
                key: format!("pattern/{sequence}"),
                council,
                sequence,
                raised_at: at,
                raised_by: Some(source),
                due_by: None,
                closed_at: None,
            }));
            from = i + 1;
        }
    }

    // The statutory clocks.
    for clock in clocks(history, facts, &effective, &settings_on, calendar) {
        let s = settings_on(&clock.council, clock.due_on);
        let due_by = end_of(clock.due_on);
        let closes = [clock.met_at, clock.ended_at].into_iter().flatten().min();
        let alert = |kind: Kind, stage: &str, raised_at: DateTime<Utc>| Raise {
            kind,
            key: format!("{}/{stage}", clock.key),
            council: &clock.council,
            sequence: clock.started_by,
            raised_at,
            raised_by: None,
            due_by: Some(due_by),
            closed_at: closes,
        };
        if s.lead_days > 0 {
            let raised_at = start_of_day(calendar.sub_working_days(clock.due_on, s.lead_days));
            if closes.is_none_or(|c| c > raised_at) {
                out.push(raise(alert(clock.due, "due", raised_at)));
            }
        }
        if closes.is_none_or(|c| c >= due_by) {
            out.push(raise(alert(clock.missed, "missed", due_by)));
        }
    }

    // Acknowledgements, in the order they were recorded: the first stands.
    let mut acknowledgements: Vec<_> = effective
        .iter()
        .filter_map(|f| match f.data {
            EventData::AlertAcknowledged(d) => Some((f.sequence, f.at, d.alert_id)),
            _ => None,
        })
        .collect();
    acknowledgements.sort_by_key(|(sequence, _, _)| *sequence);
    out.sort_by_key(|a| a.id);
    out.dedup_by_key(|a| a.id);
    for (sequence, at, id) in acknowledgements {
        if let Ok(i) = out.binary_search_by_key(&id, |a| a.id)
            && out[i].acknowledged.is_none()
            && let Some(by) = sources.get(&sequence)
        {
            out[i].acknowledged = Some(Acknowledgement { by: (*by).clone(), at, sequence });
        }
    }
    out
}

/// Whether the child has an open case on `day`: a referral taken on and
/// not closed, a plan, or an allocated worker.
fn open_case(facts: &ChildFacts, day: NaiveDate) -> bool {
    facts.referrals.iter().any(|r| !r.nfa && r.received_on <= day && r.closed_on.is_none_or(|c| c > day))
        || facts.plans.iter().any(|p| p.open_on(day))
        || facts.allocations.iter().any(|a| a.open_on(day))
}

type SettingsOn<'a> = dyn Fn(&CouncilCode, NaiveDate) -> Settings + 'a;

fn clocks(
    history: &History,
    facts: &ChildFacts,
    effective: &[crate::facts::Fact<'_>],
    settings_on: &SettingsOn<'_>,
    calendar: &Calendar,
) -> Vec<Clock> {
    let council_now = &facts.status.council;
    let died_at = effective.iter().find(|f| f.event_type() == EventType::ChildDied).map(|f| f.at);
    let first_seq = history.first().map_or(1, |r| r.sequence);
    let seq_on = |day: NaiveDate| {
        // The event that started a clock on `day` (the latest that day), for the link.
        effective.iter().rev().find(|f| f.on <= day).map_or(first_seq, |f| f.sequence)
    };
    let ended = |end: Option<NaiveDate>| [end.map(start_of_day), died_at].into_iter().flatten().min();
    let mut out = Vec::new();

    // Visits: child protection plans, then child in need plans.
    let visits: Vec<(NaiveDate, DateTime<Utc>)> =
        facts.sightings.iter().filter(|s| s.statutory).map(|s| (s.seen_on, s.seen_at)).collect();
    let mut plans: Vec<(String, &CouncilCode, NaiveDate, Option<NaiveDate>, bool)> = facts
        .plans
        .iter()
        .map(|p| (format!("cp/{}", p.plan_id.as_str()), &p.council, p.started_on, p.ended_on, true))
        .collect();
    let cin = cin_plans(effective, council_now);
    plans.extend(cin.iter().map(|p| (format!("cin/{}", p.id.as_str()), p.council, p.start, p.end, false)));
    for (key, council, start, end, cp) in &plans {
        let s = settings_on(council, *start);
        let interval = u64::from(if *cp { s.visit_interval_days } else { s.cin_visit_interval_days });
        let mut from = *start;
        let mut n = 0;
        loop {
            let due_on = from + Days::new(interval);
            let met = visits.iter().find(|(on, _)| *on >= from && (n == 0 || *on > from)).copied();
            out.push(Clock {
                due: Kind::StatutoryVisitDue,
                missed: Kind::StatutoryVisitMissed,
                key: format!("visit/{key}/{n}"),
                council: (*council).clone(),
                started_by: seq_on(from),
                due_on,
                met_at: met.map(|(_, at)| at),
                ended_at: ended(*end),
            });
            match met {
                Some((on, _)) if end.is_none_or(|e| on < e) => {
                    from = on;
                    n += 1;
                }
                _ => break,
            }
        }
    }

    // Assessments.
    for a in &facts.assessments {
        let Some(started) = a.started_on else { continue };
        let s = settings_on(&a.council, started);
        out.push(Clock {
            due: Kind::AssessmentDue,
            missed: Kind::AssessmentMissed,
            key: format!("assessment/{}", a.assessment_id.as_str()),
            council: a.council.clone(),
            started_by: seq_on(started),
            due_on: calendar.add_working_days(started, s.assessment_days),
            met_at: a.completed_on.map(start_of_day),
            ended_at: died_at,
        });
    }

    // ICPCs: from the strategy discussion, else the enquiry's start, to the
    // initial conference; an enquiry that found no conference needed ends it.
    let mut discussions: HashMap<&LocalId, NaiveDate> = HashMap::new();
    let mut enquiries: Vec<(&LocalId, NaiveDate, i64, &CouncilCode)> = Vec::new();
    let mut met: HashMap<&LocalId, DateTime<Utc>> = HashMap::new();
    let mut no_icpc: HashMap<&LocalId, DateTime<Utc>> = HashMap::new();
    for f in effective {
        match f.data {
            EventData::StrategyDiscussionHeld(d) => {
                discussions.insert(&d.discussion_id, f.on);
            }
            EventData::S47Started(d) => {
                let clock = d.discussion_id.as_ref().and_then(|id| discussions.get(id).copied()).unwrap_or(f.on);
                enquiries.retain(|(id, ..)| *id != &d.s47_id);
                enquiries.push((&d.s47_id, clock, f.sequence, f.council.unwrap_or(council_now)));
            }
            EventData::S47Completed(d) if !d.icpc_required => {
                no_icpc.entry(&d.s47_id).or_insert(f.at);
            }
            EventData::ConferenceHeld(d) if d.kind == ConferenceKind::Initial => {
                let enquiry = match &d.s47_id {
                    Some(named) => enquiries.iter().find(|(id, ..)| *id == named),
                    None => enquiries.iter().rev().find(|(id, ..)| !met.contains_key(*id)),
                };
                if let Some((id, ..)) = enquiry {
                    met.entry(id).or_insert(f.at);
                }
            }
            _ => {}
        }
    }
    for (id, start, sequence, council) in enquiries {
        out.push(Clock {
            due: Kind::IcpcDue,
            missed: Kind::IcpcMissed,
            key: format!("icpc/{}", id.as_str()),
            council: council.clone(),
            started_by: sequence,
            due_on: calendar.add_working_days(start, ICPC_WORKING_DAYS),
            met_at: met.get(id).copied(),
            ended_at: [no_icpc.get(id).copied(), died_at].into_iter().flatten().min(),
        });
    }

    // Review conferences: 3 months from the ICPC, then 6 from each review;
    // child in need plans: every 3 months.
    for p in &facts.plans {
        out.extend(reviews(Reviews {
            kinds: (Kind::ReviewConferenceDue, Kind::ReviewConferenceMissed),
            key: format!("review/{}", p.plan_id.as_str()),
            council: &p.council,
            from: p.icpc_on,
            held: &p.reviews,
            end: p.ended_on,
            months: (3, 6),
            started_by: &seq_on,
            ended_at: ended(p.ended_on),
        }));
    }
    for p in &cin {
        out.extend(reviews(Reviews {
            kinds: (Kind::CinPlanReviewDue, Kind::CinPlanReviewMissed),
            key: format!("cin_review/{}", p.id.as_str()),
            council: p.council,
            from: p.start,
            held: &p.reviews,
            end: p.end,
            months: (3, 3),
            started_by: &seq_on,
            ended_at: ended(p.end),
        }));
    }
    out
}

/// A plan's reviews, as a schedule of clocks.
struct Reviews<'a> {
    kinds: (Kind, Kind),
    key: String,
    council: &'a CouncilCode,
    /// The day the first review's clock starts.
    from: NaiveDate,
    held: &'a [NaiveDate],
    end: Option<NaiveDate>,
    /// Months to the first review, then from each review to the next.
    months: (u32, u32),
    /// The event that started a clock on a day.
    started_by: &'a dyn Fn(NaiveDate) -> i64,
    ended_at: Option<DateTime<Utc>>,
}

/// One clock for each review held and one for the next not yet held; a
/// plan that ended before a review fell due owed none.
fn reviews(r: Reviews<'_>) -> Vec<Clock> {
    let mut out = Vec::new();
    let (mut start, mut due_on) = (r.from, add_months(r.from, r.months.0));
    for n in 0.. {
        let held = r.held.get(n).copied();
        if r.end.is_some_and(|e| e <= due_on && held.is_none_or(|h| h >= e)) {
            break;
        }
        out.push(Clock {
            due: r.kinds.0,
            missed: r.kinds.1,
            key: format!("{}/{n}", r.key),
            council: r.council.clone(),
            started_by: (r.started_by)(start),
            due_on,
            met_at: held.map(start_of_day),
            ended_at: r.ended_at,
        });
        match held {
            Some(h) => (start, due_on) = (h, add_months(h, r.months.1)),
            None => break,
        }
    }
    out
}

/// A child in need plan as the alerts read it.
struct CinPlan<'a> {
    id: &'a LocalId,
    council: &'a CouncilCode,
    start: NaiveDate,
    end: Option<NaiveDate>,
    reviews: Vec<NaiveDate>,
}

fn cin_plans<'a>(effective: &[crate::facts::Fact<'a>], council_now: &'a CouncilCode) -> Vec<CinPlan<'a>> {
    let mut plans: Vec<CinPlan<'a>> = Vec::new();
    for f in effective {
        match f.data {
            EventData::CinPlanStarted(d) => {
                // A plan id started again is one plan: the later start stands.
                plans.retain(|p| p.id != &d.plan_id);
                let council = f.council.unwrap_or(council_now);
                plans.push(CinPlan { id: &d.plan_id, council, start: f.on, end: None, reviews: Vec::new() });
            }
            EventData::CinPlanReviewed(d) => {
                if let Some(p) = plans.iter_mut().find(|p| p.id == &d.plan_id && p.end.is_none()) {
                    p.reviews.push(f.on);
                }
            }
            EventData::CinPlanEnded(d) => {
                if let Some(p) = plans.iter_mut().find(|p| p.id == &d.plan_id && p.end.is_none()) {
                    p.end = Some(f.on);
                }
            }
            _ => {}
        }
    }
    plans
}
