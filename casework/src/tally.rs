//! What one child adds to its councils' indicator tallies.
//!
//! The indicators of a council-year are read from tallies the projector
//! keeps current in each batch's transaction: per council, day, measure
//! and key, how many. A read sums the days of its period (and, for what is
//! counted on one day, the changes up to that day), so it costs the same
//! whether the council has a year of history or twenty.
//!
//! Each child's tallies are a pure function of its folded facts
//! ([`tallies`]); the council's are their sum. [`crate::indicators`]
//! turns summed tallies into the indicators with the same arithmetic as
//! over the whole facts, and a property test holds the two equal.
//!
//! What a tally cannot hold is left to the read: the distinct children
//! starting a plan in a period, plan reviews (which depend on the period
//! and today), and workers' caseloads (a few hundred rows for a council).
//!
//! Whether a child on a plan was seen within the visit interval depends
//! on the council's settings, so its tallies do too: a council's new
//! settings queue its children to be folded again (as their alerts are),
//! and until they are the figure follows the settings they were folded
//! under.

use crate::facts::{Allocation, ChildFacts, CouncilSetting, CpPlan, Referral, setting_on};
use crate::indicators::visit_interval;
use chrono::{Days, NaiveDate};
use events::calendar::{Calendar, add_months, sub_months};
use events::ids::CouncilCode;
use std::collections::{BTreeMap, BTreeSet};

events::code_set! {
    /// What a tally counts. Counted on a day, with its key:
    /// - `referral`: referrals that open an episode, on the day received;
    ///   key [`REFERRAL_NFA`] if closed with no further action, plus
    ///   [`REFERRAL_REPEAT`] if within 12 months of the child's previous one;
    /// - `section_47`: enquiries, on the day started;
    /// - `icpc`: initial conferences, on the day held; key the working days
    ///   from the enquiry's start (`icpc_start_unknown` when not known);
    /// - `plan_started`, `plan_ended` (key 1 if it lasted two years or more);
    /// - `assessment_finding` (key 1 if the child was found in need) and
    ///   `assessment_duration` (key the working days from start), on the
    ///   day authorised.
    ///
    /// Running (see [`Measure::is_running`]): +1 the day something opens
    /// and -1 the day it closes, so the sum up to a day is what is open on
    /// it: `plans_open`; and, each child once, `in_need` (an episode open),
    /// `unallocated` (in need and held by no worker of the council),
    /// `on_plan` and `seen` (on a plan and seen on a statutory visit within
    /// the council's visit interval).
    Measure, "measure" {
        Referral = "referral": "Referral",
        Section47 = "section_47": "Section 47 enquiry",
        Icpc = "icpc": "Initial conference",
        IcpcStartUnknown = "icpc_start_unknown": "Initial conference, start unknown",
        PlanStarted = "plan_started": "Plan started",
        PlanEnded = "plan_ended": "Plan ended",
        AssessmentFinding = "assessment_finding": "Assessment finding",
        AssessmentDuration = "assessment_duration": "Assessment duration",
        PlansOpen = "plans_open": "Plans open",
        InNeed = "in_need": "Children in need",
        Unallocated = "unallocated": "Children in need, unallocated",
        OnPlan = "on_plan": "Children on plans",
        Seen = "seen": "Children on plans seen",
    }
}

impl Measure {
    /// A running measure is read as its sum up to a day, not over a period.
    pub fn is_running(self) -> bool {
        matches!(self, Self::PlansOpen | Self::InNeed | Self::Unallocated | Self::OnPlan | Self::Seen)
    }
}

/// Referral keys: the bits of [`Measure::Referral`]'s key.
pub const REFERRAL_NFA: i32 = 1;
pub const REFERRAL_REPEAT: i32 = 2;

/// One count on one day.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Tally {
    pub council: CouncilCode,
    pub measure: Measure,
    pub day: NaiveDate,
    pub key: i32,
    pub n: i64,
}

/// Everything `facts` adds to its councils' tallies, in order, each
/// (council, measure, day, key) once and none zero: the same facts always
/// give the same list, so a refold compares lists to see whether it must
/// write.
pub fn tallies(
    facts: &ChildFacts,
    settings: &BTreeMap<CouncilCode, Vec<CouncilSetting>>,
    calendar: &Calendar,
) -> Vec<Tally> {
    let mut out: Vec<Tally> = Vec::new();
    let mut add = |council: &CouncilCode, measure: Measure, day: NaiveDate, key: i32, n: i64| {
        out.push(Tally { council: council.clone(), measure, day, key, n });
    };
    for r in facts.referrals.iter().filter(|r| !r.during_open_episode) {
        let repeat = r.previous_on.is_some_and(|p| p >= sub_months(r.received_on, 12));
        let key = if r.nfa { REFERRAL_NFA } else { 0 } | if repeat { REFERRAL_REPEAT } else { 0 };
        add(&r.council, Measure::Referral, r.received_on, key, 1);
    }
    for s in &facts.section47s {
        add(&s.council, Measure::Section47, s.started_on, 0, 1);
    }
    for i in &facts.icpcs {
        match i.s47_started_on {
            Some(start) => add(&i.council, Measure::Icpc, i.held_on, days(calendar, start, i.held_on), 1),
            None => add(&i.council, Measure::IcpcStartUnknown, i.held_on, 0, 1),
        }
    }
    for a in &facts.assessments {
        let Some(done) = a.completed_on else { continue };
        if let Some(need) = a.needs_support {
            add(&a.council, Measure::AssessmentFinding, done, i32::from(need), 1);
        }
        if let Some(start) = a.started_on {
            add(&a.council, Measure::AssessmentDuration, done, days(calendar, start, done), 1);
        }
    }
    for p in &facts.plans {
        add(&p.council, Measure::PlanStarted, p.started_on, 0, 1);
        if let Some(end) = p.ended_on {
            add(&p.council, Measure::PlanEnded, end, i32::from(lasted_2_years(p)), 1);
        }
        for (day, n) in Spans::of([(p.started_on, p.ended_on)]).changes() {
            add(&p.council, Measure::PlansOpen, day, 0, n);
        }
    }
    let councils: BTreeSet<&CouncilCode> = facts.plans.iter().map(|p| &p.council).collect();
    let visits: Vec<NaiveDate> = facts.sightings.iter().filter(|s| s.statutory).map(|s| s.seen_on).collect();
    for council in councils {
        let on_plan =
            Spans::of(facts.plans.iter().filter(|p| p.council == *council).map(|p| (p.started_on, p.ended_on)));
        let seen = seen(&visits, settings.get(council).map_or(&[], Vec::as_slice));
        for (day, n) in on_plan.changes() {
            add(council, Measure::OnPlan, day, 0, n);
        }
        for (day, n) in on_plan.within(&seen).changes() {
            add(council, Measure::Seen, day, 0, n);
        }
    }
    let councils: BTreeSet<&CouncilCode> = facts.referrals.iter().map(|r| &r.council).collect();
    for council in councils {
        let in_need = episodes(&facts.referrals, council);
        let held = Spans::of(facts.allocations.iter().filter(|a| a.council == *council).map(held));
        for (day, n) in in_need.changes() {
            add(council, Measure::InNeed, day, 0, n);
        }
        for (day, n) in in_need.without(&held).changes() {
            add(council, Measure::Unallocated, day, 0, n);
        }
    }
    merged(out)
}

/// Working days as a tally's key.
fn days(calendar: &Calendar, from: NaiveDate, to: NaiveDate) -> i32 {
    i32::try_from(calendar.working_days_between(from, to)).unwrap_or(i32::MAX)
}

/// Two years or more: the end is on or after the start plus 24 months.
pub fn lasted_2_years(plan: &CpPlan) -> bool {
    plan.ended_on.is_some_and(|e| e >= add_months(plan.started_on, 24))
}

/// The days a child had an episode of `council` open: from each referral
/// not closed with no further action (one received during an open episode
/// belongs to it) to the day the episode closed.
fn episodes(referrals: &[Referral], council: &CouncilCode) -> Spans {
    Spans::of(
        referrals
            .iter()
            .filter(|r| r.council == *council && !r.nfa && !r.during_open_episode)
            .map(|r| (r.received_on, r.closed_on)),
    )
}

/// The days on which a statutory visit fell within the visit interval
/// before: `v` counts from its day until `interval` days later (a visit
/// more than `interval` days ago no longer does), under the interval of
/// the settings in force on each day.
fn seen(visits: &[NaiveDate], settings: &[CouncilSetting]) -> Spans {
    // Each stretch of days under one setting, as `setting_on` reads them:
    // before the first change, the first setting.
    let mut starts: Vec<NaiveDate> = settings.iter().map(|s| s.effective_from).collect();
    starts.sort();
    starts.dedup();
    starts.insert(0, NaiveDate::MIN);
    let mut out = Vec::new();
    for (i, start) in starts.iter().enumerate() {
        let end = starts.get(i + 1).copied();
        let interval = setting_on(settings, *start).map_or(visit_interval(&CouncilSetting::default()), visit_interval);
        let windows = Spans::of(visits.iter().map(|v| {
            let until = u64::try_from(interval).ok().and_then(|i| v.checked_add_days(Days::new(i)));
            (*v, if interval <= 0 { Some(*v) } else { until })
        }));
        out.extend(windows.within(&Spans(vec![(*start, end)])).0);
    }
    Spans::of(out)
}

fn held(a: &Allocation) -> (NaiveDate, Option<NaiveDate>) {
    (a.from_on, a.to_on)
}

/// Sorts, sums equal keys and drops zeros.
pub fn merged(mut list: Vec<Tally>) -> Vec<Tally> {
    list.sort();
    let mut out: Vec<Tally> = Vec::with_capacity(list.len());
    for t in list {
        match out.last_mut() {
            Some(last)
                if last.council == t.council && last.measure == t.measure && last.day == t.day && last.key == t.key =>
            {
                last.n += t.n
            }
            _ => out.push(t),
        }
    }
    out.retain(|t| t.n != 0);
    out
}

/// The difference `new - old`, summed per (council, measure, day, key):
/// what a refold adds to the councils' tallies.
pub fn difference(old: &[Tally], new: &[Tally]) -> Vec<Tally> {
    let negated = old.iter().map(|t| Tally { n: -t.n, ..t.clone() });
    merged(negated.chain(new.iter().cloned()).collect())
}

/// A set of days as disjoint half-open spans `[from, to)`, in order; `to`
/// absent is open still.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Spans(Vec<(NaiveDate, Option<NaiveDate>)>);

impl Spans {
    /// The union of spans; a span ending on or before its start holds no day.
    pub fn of(spans: impl IntoIterator<Item = (NaiveDate, Option<NaiveDate>)>) -> Self {
        let mut all: Vec<(NaiveDate, Option<NaiveDate>)> =
            spans.into_iter().filter(|(from, to)| to.is_none_or(|t| t > *from)).collect();
        all.sort();
        let mut out: Vec<(NaiveDate, Option<NaiveDate>)> = Vec::with_capacity(all.len());
        for (from, to) in all {
            match out.last_mut() {
                // Overlapping or touching: one span. `None` (still open) is the greatest end.
                Some((_, last_to)) if last_to.is_none_or(|t| t >= from) => {
                    *last_to = match (*last_to, to) {
                        (Some(a), Some(b)) => Some(a.max(b)),
                        _ => None,
                    };
                }
                _ => out.push((from, to)),
            }
        }
        Self(out)
    }

    /// The days of `self` not in `other`.
    pub fn without(&self, other: &Spans) -> Spans {
        let mut out = Vec::new();
        for &(from, to) in &self.0 {
            let mut start = Some(from);
            for &(o_from, o_to) in &other.0 {
                let Some(s) = start else { break };
                if to.is_some_and(|t| o_from >= t) {
                    break;
                }
                if o_to.is_some_and(|ot| ot <= s) {
                    continue;
                }
                if o_from > s {
                    out.push((s, Some(o_from)));
                }
                start = o_to;
            }
            if let Some(s) = start
                && to.is_none_or(|t| t > s)
            {
                out.push((s, to));
            }
        }
        Self(out)
    }

    /// The days of `self` also in `other`.
    pub fn within(&self, other: &Spans) -> Spans {
        self.without(&self.without(other))
    }

    /// +1 where each span opens and -1 where it closes.
    fn changes(&self) -> impl Iterator<Item = (NaiveDate, i64)> + '_ {
        self.0.iter().flat_map(|(from, to)| std::iter::once((*from, 1)).chain(to.map(|t| (t, -1))))
    }
}

/// A council's tallies summed for one period and one day: what the
/// indicators read in place of the council's whole facts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summed {
    /// Counted-on-a-day measures over the period, by the segment of the
    /// period the day falls in (see [`Summed::segments`]) and key.
    pub over: BTreeMap<(Measure, usize, i32), i64>,
    /// Running measures summed up to the day counted.
    pub at: BTreeMap<Measure, i64>,
}

impl Summed {
    /// The total of `measure` over the period, keys chosen by `keep`.
    pub fn total(&self, measure: Measure, keep: impl Fn(i32) -> bool) -> usize {
        let n: i64 = self.over.iter().filter(|((m, _, key), _)| *m == measure && keep(*key)).map(|(_, n)| n).sum();
        usize::try_from(n).unwrap_or(0)
    }

    /// `measure`'s keys over the period, each as often as counted, in order.
    pub fn keys(&self, measure: Measure) -> Vec<(i32, usize)> {
        let mut by_key: BTreeMap<i32, i64> = BTreeMap::new();
        for ((m, _, key), n) in &self.over {
            if *m == measure {
                *by_key.entry(*key).or_default() += n;
            }
        }
        by_key.into_iter().map(|(k, n)| (k, usize::try_from(n).unwrap_or(0))).collect()
    }

    /// A running measure on the day counted.
    pub fn open(&self, measure: Measure) -> usize {
        usize::try_from(self.at.get(&measure).copied().unwrap_or(0)).unwrap_or(0)
    }

    /// The first days of a period's segments after its first: where a
    /// council's settings change within it, so each segment has one
    /// assessment timescale.
    pub fn segments(settings: &[crate::facts::CouncilSetting], from: NaiveDate, to: NaiveDate) -> Vec<NaiveDate> {
        let starts: BTreeSet<NaiveDate> =
            settings.iter().map(|s| s.effective_from).filter(|d| *d > from && *d <= to).collect();
        starts.into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(text: &str) -> NaiveDate {
        text.parse().unwrap_or(NaiveDate::MIN)
    }

    fn contains(spans: &Spans, day: NaiveDate) -> bool {
        spans.0.iter().any(|(from, to)| *from <= day && to.is_none_or(|t| t > day))
    }

    #[test]
    fn spans_merge_and_subtract() {
        let a = Spans::of([
            (d("2024-01-10"), Some(d("2024-02-01"))),
            (d("2024-01-20"), None),
            (d("2023-05-01"), Some(d("2023-05-01"))),
        ]);
        assert_eq!(a, Spans(vec![(d("2024-01-10"), None)]));
        let held = Spans::of([(d("2024-01-15"), Some(d("2024-01-20"))), (d("2024-03-01"), None)]);
        assert_eq!(
            a.without(&held),
            Spans(vec![(d("2024-01-10"), Some(d("2024-01-15"))), (d("2024-01-20"), Some(d("2024-03-01")))])
        );
        assert_eq!(held.without(&a), Spans(vec![]));
        for day in ["2024-01-09", "2024-01-10", "2024-01-15", "2024-01-19", "2024-01-20", "2024-03-01", "2025-01-01"] {
            assert_eq!(contains(&a.without(&held), d(day)), contains(&a, d(day)) && !contains(&held, d(day)), "{day}");
        }
    }

    #[test]
    fn a_difference_cancels_what_is_unchanged() {
        let council = CouncilCode::try_from("E09000014".to_owned()).expect("code");
        let t = |day: &str, n| Tally { council: council.clone(), measure: Measure::Referral, day: d(day), key: 0, n };
        assert_eq!(
            difference(&[t("2024-01-01", 1), t("2024-02-01", 1)], &[t("2024-02-01", 1), t("2024-03-01", 1)]),
            [t("2024-01-01", -1), t("2024-03-01", 1)]
        );
    }
}
