//! The indicators of CONTRACT.md, with the exact arithmetic of DOMAIN.md.
//!
//! Pure: a council's casework facts, a period and today's date in, the
//! indicators out. [`load`] is the small piece that reads the facts.
//!
//! Indicators that describe a moment rather than a span (plans open,
//! children seen, caseload, vacancies) are taken at the period's last day,
//! or today while the period is still running.

use crate::facts::{
    Allocation, Assessment, CouncilSetting, CpPlan, Icpc, Referral, Section47, WorkerSpell, setting_on,
};
use crate::tally::{Measure, REFERRAL_NFA, REFERRAL_REPEAT, Summed};
use chrono::{Datelike, Days, NaiveDate};
use events::calendar::{Calendar, add_months, sub_months};
use events::ids::{CouncilCode, WorkerId};
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// The statutory assessment timescale, in working days.
pub const DEFAULT_ASSESSMENT_DAYS: i64 = 45;
/// The ICPC timescale, in working days.
pub const ICPC_DAYS: i64 = 15;
/// Statutory visits are usually due at least every 10 working days: about
/// 14 calendar days, used when a council sets no `visit_interval_days`.
pub const DEFAULT_VISIT_INTERVAL_DAYS: i64 = 14;
/// 28 calendar days between visits to a child on a child in need plan, used
/// when a council sets no `cin_visit_interval_days`: there is no national
/// figure for children in need, and four weeks is a common local standard.
pub const DEFAULT_CIN_VISIT_INTERVAL_DAYS: i64 = 28;
/// Open cases per FTE above which a worker is flagged, when a council sets no
/// `caseload_threshold` (the national mean is 16).
pub const DEFAULT_CASELOAD_THRESHOLD: f64 = 20.0;

/// A span of business dates, both ends inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    pub from: NaiveDate,
    pub to: NaiveDate,
}

impl Period {
    /// A financial year written as DOMAIN.md does: "2024-25" is 1 April 2024
    /// to 31 March 2025.
    pub fn financial_year(text: &str) -> Result<Self, String> {
        let problem = || format!("must be a financial year such as 2024-25, not {text:?}");
        let (start, end) = text.split_once('-').ok_or_else(problem)?;
        let start: i32 = start.parse().map_err(|_| problem())?;
        let end: i32 = end.parse().map_err(|_| problem())?;
        if start.to_string().len() != 4 || text.len() != 7 || (start + 1) % 100 != end {
            return Err(problem());
        }
        let from = NaiveDate::from_ymd_opt(start, 4, 1).ok_or_else(problem)?;
        let to = NaiveDate::from_ymd_opt(start + 1, 3, 31).ok_or_else(problem)?;
        Ok(Self { from, to })
    }

    /// The financial year a day falls in.
    pub fn containing(day: NaiveDate) -> Self {
        let start = if day.month() >= 4 { day.year() } else { day.year() - 1 };
        Self {
            from: NaiveDate::from_ymd_opt(start, 4, 1).unwrap_or(day),
            to: NaiveDate::from_ymd_opt(start + 1, 3, 31).unwrap_or(day),
        }
    }

    /// "2024-25" when the period is a financial year, else "from..to".
    pub fn label(&self) -> String {
        let fy = Self::containing(self.from);
        if fy == *self {
            format!("{}-{:02}", self.from.year(), (self.from.year() + 1) % 100)
        } else {
            format!("{}..{}", self.from, self.to)
        }
    }

    pub fn contains(&self, day: NaiveDate) -> bool {
        self.from <= day && day <= self.to
    }

    /// The twelve months to the end of each of the last `n` financial
    /// quarters up to the one holding `day`, oldest first: a trend whose
    /// every point is a full year, so it reads against annual figures.
    /// The last point ends on the quarter's last day even while that
    /// quarter is still running (point-in-time indicators then use today).
    pub fn rolling_years_to_quarters(day: NaiveDate, n: usize) -> Vec<Self> {
        // Financial quarters end on the last days of June, September, December and March.
        let quarter_start_month = (day.month0() / 3) * 3 + 1;
        let quarter_start = NaiveDate::from_ymd_opt(day.year(), quarter_start_month, 1).unwrap_or(day);
        (0..n)
            .rev()
            .map(|back| {
                let next_quarter = add_months(sub_months(quarter_start, 3 * back as u32), 3);
                Self { from: sub_months(next_quarter, 12), to: next_quarter.pred_opt().unwrap_or(next_quarter) }
            })
            .collect()
    }
}

events::code_set! {
    /// Every indicator, in the order a council's document lists them: the
    /// code is its name in the API and documents, the label words for a
    /// person reading the figure.
    Name, "indicator" {
        Referrals = "referrals": "Referrals",
        ReReferrals = "re_referrals_within_12_months": "Re-referrals within 12 months",
        AssessmentsWithinTimescale = "assessments_within_timescale": "Assessments within timescale",
        IcpcWithin15WorkingDays = "icpc_within_15_working_days": "Initial conferences within 15 working days",
        PlansOpen = "plans_open_at_period_end": "Child protection plans open",
        PlansLasting2Years = "plans_lasting_2_years_or_more": "Plans ending after 2 years or more",
        SecondPlans = "second_or_subsequent_plans": "Second or subsequent plans",
        PlansReviewedOnTime = "plans_reviewed_within_timescale": "Plans reviewed within timescale",
        ChildrenSeen = "children_on_plans_seen_within_interval": "Children on plans seen within the visit interval",
        CaseloadPerWorker = "caseload_per_worker": "Caseload per case-holding worker",
        VacancyRate = "vacancy_rate": "Social worker vacancy rate",
        ChildrenInNeed = "children_in_need_at_period_end": "Children in need",
        Section47s = "section_47_enquiries": "Section 47 enquiries",
        InitialConferences = "initial_conferences": "Initial child protection conferences",
        PlansStarted = "plans_started": "Child protection plans started",
        AssessedNotInNeed = "assessments_finding_no_need": "Assessments finding the child not in need",
        AssessmentDuration = "assessment_duration_median": "Assessment duration (median)",
        UnallocatedCases = "unallocated_cases": "Children in need with no allocated worker",
    }
}

/// What an indicator's value counts in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Unit {
    /// A proportion from 0 to 1.
    Share,
    /// Per 10,000 children aged 0 to 17.
    Per10000,
    /// Cases per full-time equivalent worker.
    PerFte,
    /// Working days.
    WorkingDays,
}

impl Unit {
    pub const fn code(self) -> &'static str {
        match self {
            Self::Share => "share",
            Self::Per10000 => "per_10000",
            Self::PerFte => "per_fte",
            Self::WorkingDays => "working_days",
        }
    }
}

impl std::fmt::Display for Unit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.code())
    }
}

impl Serialize for Unit {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.code())
    }
}

/// A published figure to read a council's indicator against, from
/// `data/comparators.json` (shipped with the code, each with its year and
/// source).
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Comparator {
    #[serde(skip_serializing)]
    pub indicator: String,
    /// `england`, `region` or `statistical_neighbours`.
    pub kind: String,
    /// The area the figure is of: "England", "London", "Haringey's statistical neighbours".
    pub area: String,
    /// The year it is of: "2024-25", or the workforce census's "2023".
    pub year: String,
    pub value: f64,
    pub source: String,
    /// The councils a regional or neighbours' figure is for (none for England's).
    #[serde(default, skip_serializing)]
    pub councils: Vec<String>,
}

#[derive(serde::Deserialize)]
struct Comparators {
    figures: Vec<Comparator>,
}

fn all_comparators() -> &'static [Comparator] {
    static FIGURES: std::sync::OnceLock<Vec<Comparator>> = std::sync::OnceLock::new();
    FIGURES.get_or_init(|| {
        // Checked by a unit test: the shipped file always parses and names known indicators.
        serde_json::from_str::<Comparators>(include_str!("../data/comparators.json"))
            .map(|c| c.figures)
            .unwrap_or_default()
    })
}

/// The figures `council`'s indicator is read against: England's, then its
/// region's and its statistical neighbours', where the data has them.
pub fn comparators(indicator: Name, council: &CouncilCode) -> Vec<&'static Comparator> {
    all_comparators()
        .iter()
        .filter(|c| c.indicator == indicator.code())
        .filter(|c| c.kind == "england" || c.councils.iter().any(|code| code == council.as_str()))
        .collect()
}

/// England's figure for an indicator, where the data has one.
pub fn national(indicator: Name) -> Option<&'static Comparator> {
    all_comparators().iter().find(|c| c.indicator == indicator.code() && c.kind == "england")
}

/// Everything one council's indicators are computed from.
#[derive(Debug, Clone, Default)]
pub struct CouncilData {
    pub settings: Vec<CouncilSetting>,
    /// Referrals received by the council, with the child they are about.
    pub referrals: Vec<(uuid::Uuid, Referral)>,
    pub assessments: Vec<Assessment>,
    pub section47s: Vec<Section47>,
    pub icpcs: Vec<Icpc>,
    /// Plans started in the council, with the child they belong to.
    pub plans: Vec<(uuid::Uuid, CpPlan)>,
    /// Statutory visits of the children in `plans`.
    pub visits: HashMap<uuid::Uuid, Vec<NaiveDate>>,
    /// Allocations in the council, with the child allocated.
    pub allocations: Vec<(uuid::Uuid, Allocation)>,
    /// Spells of workers who were ever in the council.
    pub spells: Vec<(WorkerId, WorkerSpell)>,
}

/// One indicator. `value` is absent when it cannot be computed (no
/// denominator, or no population configured).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Indicator {
    pub name: Name,
    pub unit: Unit,
    #[serde(serialize_with = "number")]
    pub numerator: f64,
    #[serde(serialize_with = "optional_number")]
    pub denominator: Option<f64>,
    #[serde(serialize_with = "optional_number")]
    pub value: Option<f64>,
    pub detail: Detail,
    /// The published figures to read it against (England's, and the
    /// region's and statistical neighbours' where known).
    pub comparators: Vec<&'static Comparator>,
}

/// What an indicator shows beside its figure, one shape per indicator
/// (CONTRACT.md: `detail`). Serialised as the object alone.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Detail {
    /// `referrals`: how many were closed with no further action.
    Referrals { no_further_action: usize },
    /// `assessments_within_timescale`: the timescales applied, and whether
    /// any was the council's own rather than the national 45 working days.
    Assessments { timescale_working_days: Vec<i64>, local_timescale: bool },
    /// `icpc_within_15_working_days`: the DfE's bands, and conferences whose
    /// enquiry's start is not known.
    Icpc { bands: IcpcBands, s47_start_unknown: usize },
    /// `plans_open_at_period_end`, `children_in_need_at_period_end`: the day counted.
    On { on: NaiveDate },
    /// `assessment_duration_median`: assessments authorised in the period by
    /// working days from start to authorisation, in the DfE's bands (table C2).
    Durations { bands: DurationBands },
    /// `children_on_plans_seen_within_interval`: the interval and the day.
    Visits { interval_days: i64, on: NaiveDate },
    /// `caseload_per_worker`.
    Caseload { on: NaiveDate, threshold: f64, workers_over_threshold: usize, case_holding_workers: usize },
    /// `vacancy_rate`: permanent and agency social worker FTE in post (every grade).
    Vacancy {
        on: NaiveDate,
        #[serde(serialize_with = "number")]
        filled_fte: f64,
        #[serde(serialize_with = "number")]
        agency_fte: f64,
    },
    /// Indicators with nothing to add: an empty object.
    None {},
}

/// ICPCs by working days from the strategy discussion's enquiry to the
/// conference, in the DfE's bands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct IcpcBands {
    #[serde(rename = "0-10")]
    pub up_to_10: usize,
    #[serde(rename = "11-15")]
    pub from_11_to_15: usize,
    #[serde(rename = "16-20")]
    pub from_16_to_20: usize,
    #[serde(rename = "21+")]
    pub over_20: usize,
}

impl IcpcBands {
    fn count(&mut self, working_days: i64) {
        self.count_n(working_days, 1);
    }

    fn count_n(&mut self, working_days: i64, n: usize) {
        let band = match working_days {
            ..=10 => &mut self.up_to_10,
            11..=15 => &mut self.from_11_to_15,
            16..=20 => &mut self.from_16_to_20,
            _ => &mut self.over_20,
        };
        *band += n;
    }
}

/// Assessments by working days from start to authorisation, in the bands
/// of the DfE's table C2 ("Completed assessments by duration").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DurationBands {
    #[serde(rename = "same_day")]
    pub same_day: usize,
    #[serde(rename = "1-10")]
    pub up_to_10: usize,
    #[serde(rename = "11-20")]
    pub up_to_20: usize,
    #[serde(rename = "21-30")]
    pub up_to_30: usize,
    #[serde(rename = "31-40")]
    pub up_to_40: usize,
    #[serde(rename = "41-45")]
    pub up_to_45: usize,
    #[serde(rename = "46-50")]
    pub up_to_50: usize,
    #[serde(rename = "51-60")]
    pub up_to_60: usize,
    #[serde(rename = "61+")]
    pub over_60: usize,
}

impl DurationBands {
    fn count_n(&mut self, working_days: i64, n: usize) {
        let band = match working_days {
            ..=0 => &mut self.same_day,
            1..=10 => &mut self.up_to_10,
            11..=20 => &mut self.up_to_20,
            21..=30 => &mut self.up_to_30,
            31..=40 => &mut self.up_to_40,
            41..=45 => &mut self.up_to_45,
            46..=50 => &mut self.up_to_50,
            51..=60 => &mut self.up_to_60,
            _ => &mut self.over_60,
        };
        *band += n;
    }
}

/// Whole numbers print as integers, so counts read as counts.
fn as_json(n: f64) -> Value {
    if n.fract() == 0.0 && n.abs() < 9e15 { json!(n as i64) } else { json!((n * 1e6).round() / 1e6) }
}

fn number<S: serde::Serializer>(n: &f64, s: S) -> Result<S::Ok, S::Error> {
    as_json(*n).serialize(s)
}

fn optional_number<S: serde::Serializer>(n: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
    n.map(as_json).serialize(s)
}

fn share(name: Name, numerator: usize, denominator: usize, detail: Detail) -> Indicator {
    let value = (denominator > 0).then(|| numerator as f64 / denominator as f64);
    Indicator {
        name,
        unit: Unit::Share,
        numerator: numerator as f64,
        denominator: Some(denominator as f64),
        value,
        detail,
        comparators: Vec::new(),
    }
}

fn per_10000(name: Name, numerator: usize, population: Option<i64>, detail: Detail) -> Indicator {
    let denominator = population.filter(|p| *p > 0).map(|p| p as f64);
    let value = denominator.map(|p| numerator as f64 * 10_000.0 / p);
    Indicator {
        name,
        unit: Unit::Per10000,
        numerator: numerator as f64,
        denominator,
        value,
        detail,
        comparators: Vec::new(),
    }
}

/// Every indicator for `period`, as known `today`.
pub fn compute(data: &CouncilData, period: Period, today: NaiveDate, calendar: &Calendar) -> Vec<Indicator> {
    let at = day_counted(period, today);
    let setting = setting_on(&data.settings, at).cloned().unwrap_or_default();
    let population = setting.population_0_17;
    vec![
        referrals(data, period, population),
        re_referrals(data, period),
        assessments_within_timescale(data, period, calendar),
        icpc_within_15_working_days(data, period, calendar),
        plans_open_at_period_end(data, at, population),
        plans_lasting_2_years_or_more(data, period),
        second_or_subsequent_plans(data, period),
        plans_reviewed_within_timescale(data.plans.iter().map(|(_, p)| p), period, today),
        children_on_plans_seen_within_interval(data, at, &setting),
        caseload_per_worker(&worker_loads(data, at), at, &setting),
        vacancy_rate(&data.spells, at, &setting),
        children_in_need_at_period_end(data, at, population),
        per_10000(
            Name::Section47s,
            data.section47s.iter().filter(|s| period.contains(s.started_on)).count(),
            population,
            Detail::None {},
        ),
        per_10000(
            Name::InitialConferences,
            data.icpcs.iter().filter(|i| period.contains(i.held_on)).count(),
            population,
            Detail::None {},
        ),
        per_10000(
            Name::PlansStarted,
            data.plans.iter().filter(|(_, p)| period.contains(p.started_on)).count(),
            population,
            Detail::None {},
        ),
        assessments_finding_no_need(data, period),
        assessment_duration_median(data, period, calendar),
        unallocated_cases(data, at),
    ]
}

/// The day indicators of a moment are taken on: the period's last day, or
/// today while the period runs.
pub fn day_counted(period: Period, today: NaiveDate) -> NaiveDate {
    period.to.min(today).max(period.from)
}

/// What the indicators of one council and period are read from in place of
/// its whole facts: its tallies summed (see [`crate::tally`]) and the few
/// rows tallies cannot hold. `compute_tallied` gives from it what
/// [`compute`] gives from the facts.
#[derive(Debug, Clone, Default)]
pub struct Tallied {
    pub settings: Vec<CouncilSetting>,
    /// The tallies over the period, split at [`Summed::segments`], and up
    /// to the [`day_counted`].
    pub summed: Summed,
    /// The council's plans that may have had a review fall due in the
    /// period: not ended by its first day, ICPC before its last.
    pub plans_under_review: Vec<CpPlan>,
    /// Children starting a plan in the period, and how many of them had an earlier plan.
    pub starting_plans: (usize, usize),
    /// Spells of workers who were ever in the council.
    pub spells: Vec<(WorkerId, WorkerSpell)>,
    /// Open cases on the day counted, by worker.
    pub cases: BTreeMap<WorkerId, usize>,
}

/// The visit interval in calendar days under `setting`.
pub fn visit_interval(setting: &CouncilSetting) -> i64 {
    setting.visit_interval_days.map_or(DEFAULT_VISIT_INTERVAL_DAYS, i64::from)
}

/// Every indicator for `period`, as known `today`, from tallies: the same
/// figures as [`compute`] over the facts the tallies were made from.
pub fn compute_tallied(t: &Tallied, period: Period, today: NaiveDate) -> Vec<Indicator> {
    let at = day_counted(period, today);
    let setting = setting_on(&t.settings, at).cloned().unwrap_or_default();
    let population = setting.population_0_17;
    let s = &t.summed;
    let all = |_| true;
    let referrals = s.total(Measure::Referral, all);
    let durations: Vec<(i64, usize)> =
        s.keys(Measure::AssessmentDuration).into_iter().map(|(k, n)| (i64::from(k), n)).collect();
    let (on_plan, seen) = (s.open(Measure::OnPlan), s.open(Measure::Seen));
    let (starting, second) = t.starting_plans;
    let in_need = s.open(Measure::InNeed);
    vec![
        per_10000(
            Name::Referrals,
            referrals,
            population,
            Detail::Referrals { no_further_action: s.total(Measure::Referral, |k| k & REFERRAL_NFA != 0) },
        ),
        share(Name::ReReferrals, s.total(Measure::Referral, |k| k & REFERRAL_REPEAT != 0), referrals, Detail::None {}),
        tallied_assessments_within_timescale(t, period),
        tallied_icpc_within_15_working_days(s),
        per_10000(Name::PlansOpen, s.open(Measure::PlansOpen), population, Detail::On { on: at }),
        share(
            Name::PlansLasting2Years,
            s.total(Measure::PlanEnded, |k| k == 1),
            s.total(Measure::PlanEnded, all),
            Detail::None {},
        ),
        share(Name::SecondPlans, second, starting, Detail::None {}),
        plans_reviewed_within_timescale(t.plans_under_review.iter(), period, today),
        share(Name::ChildrenSeen, seen, on_plan, Detail::Visits { interval_days: visit_interval(&setting), on: at }),
        caseload_per_worker(&loads_of(&t.spells, &t.cases, at), at, &setting),
        vacancy_rate(&t.spells, at, &setting),
        per_10000(Name::ChildrenInNeed, in_need, population, Detail::On { on: at }),
        per_10000(Name::Section47s, s.total(Measure::Section47, all), population, Detail::None {}),
        per_10000(
            Name::InitialConferences,
            s.total(Measure::Icpc, all) + s.total(Measure::IcpcStartUnknown, all),
            population,
            Detail::None {},
        ),
        per_10000(Name::PlansStarted, s.total(Measure::PlanStarted, all), population, Detail::None {}),
        share(
            Name::AssessedNotInNeed,
            s.total(Measure::AssessmentFinding, |k| k == 0),
            s.total(Measure::AssessmentFinding, all),
            Detail::None {},
        ),
        duration_median(&durations),
        share(Name::UnallocatedCases, s.open(Measure::Unallocated), in_need, Detail::On { on: at }),
    ]
}

/// [`assessments_within_timescale`] from tallies: each segment of the
/// period has one setting, so one timescale.
fn tallied_assessments_within_timescale(t: &Tallied, period: Period) -> Indicator {
    let starts = std::iter::once(period.from).chain(Summed::segments(&t.settings, period.from, period.to));
    let (mut within, mut total, mut local) = (0, 0, false);
    let mut timescales = BTreeSet::new();
    for (segment, start) in starts.enumerate() {
        let configured = setting_on(&t.settings, start).and_then(|s| s.assessment_timescale_days);
        let timescale = configured.map_or(DEFAULT_ASSESSMENT_DAYS, i64::from);
        let counted: Vec<(i64, i64)> = t
            .summed
            .over
            .iter()
            .filter(|((m, seg, _), _)| *m == Measure::AssessmentDuration && *seg == segment)
            .map(|((_, _, key), n)| (i64::from(*key), *n))
            .collect();
        let n: i64 = counted.iter().map(|(_, n)| n).sum();
        if n <= 0 {
            continue;
        }
        local |= configured.is_some();
        timescales.insert(timescale);
        total += n;
        within += counted.iter().filter(|(days, _)| *days <= timescale).map(|(_, n)| n).sum::<i64>();
    }
    if timescales.is_empty() {
        let configured = setting_on(&t.settings, period.to).and_then(|s| s.assessment_timescale_days);
        local = configured.is_some();
        timescales.insert(configured.map_or(DEFAULT_ASSESSMENT_DAYS, i64::from));
    }
    let count = |n: i64| usize::try_from(n).unwrap_or(0);
    share(
        Name::AssessmentsWithinTimescale,
        count(within),
        count(total),
        Detail::Assessments { timescale_working_days: timescales.into_iter().collect(), local_timescale: local },
    )
}

/// [`icpc_within_15_working_days`] from tallies.
fn tallied_icpc_within_15_working_days(s: &Summed) -> Indicator {
    let mut bands = IcpcBands::default();
    let mut within = 0;
    let unknown = s.total(Measure::IcpcStartUnknown, |_| true);
    let mut total = unknown;
    for (days, n) in s.keys(Measure::Icpc) {
        bands.count_n(i64::from(days), n);
        total += n;
        if i64::from(days) <= ICPC_DAYS {
            within += n;
        }
    }
    share(Name::IcpcWithin15WorkingDays, within, total, Detail::Icpc { bands, s47_start_unknown: unknown })
}

/// Children in need on `at`: the council's episodes open that day, from a
/// referral not closed with no further action (a referral received while an
/// episode was open is part of that episode, not another child in need).
fn children_in_need_at_period_end(data: &CouncilData, at: NaiveDate, population: Option<i64>) -> Indicator {
    let n = in_need_on(data, at).len();
    per_10000(Name::ChildrenInNeed, n, population, Detail::On { on: at })
}

/// The children with an episode of the council open on `at`.
fn in_need_on(data: &CouncilData, at: NaiveDate) -> BTreeSet<uuid::Uuid> {
    data.referrals
        .iter()
        .filter(|(_, r)| !r.nfa && !r.during_open_episode && r.received_on <= at && r.closed_on.is_none_or(|c| c > at))
        .map(|(child, _)| *child)
        .collect()
}

/// Children in need on `at` whom no worker of the council holds: the
/// cases waiting for a social worker.
fn unallocated_cases(data: &CouncilData, at: NaiveDate) -> Indicator {
    let open = in_need_on(data, at);
    let held: BTreeSet<uuid::Uuid> =
        data.allocations.iter().filter(|(_, a)| a.open_on(at)).map(|(child, _)| *child).collect();
    let waiting = open.difference(&held).count();
    share(Name::UnallocatedCases, waiting, open.len(), Detail::On { on: at })
}

/// Of assessments authorised in the period, those that found the child not
/// in need (assessments folded before the finding was kept are left out).
fn assessments_finding_no_need(data: &CouncilData, period: Period) -> Indicator {
    let found: Vec<bool> = data
        .assessments
        .iter()
        .filter(|a| a.completed_on.is_some_and(|d| period.contains(d)))
        .filter_map(|a| a.needs_support)
        .collect();
    share(Name::AssessedNotInNeed, found.iter().filter(|n| !**n).count(), found.len(), Detail::None {})
}

/// The median working days from start to authorisation of assessments
/// authorised in the period (the lower middle of an even count, as the
/// DfE's whole-day medians), with the DfE's bands.
fn assessment_duration_median(data: &CouncilData, period: Period, calendar: &Calendar) -> Indicator {
    let mut days: Vec<i64> = data
        .assessments
        .iter()
        .filter_map(|a| Some((a.started_on?, a.completed_on.filter(|d| period.contains(*d))?)))
        .map(|(start, done)| calendar.working_days_between(start, done))
        .collect();
    days.sort_unstable();
    let counted: Vec<(i64, usize)> = days.iter().map(|d| (*d, 1)).collect();
    duration_median(&counted)
}

/// The median and bands of durations given as (working days, how many),
/// in ascending order of days.
fn duration_median(counted: &[(i64, usize)]) -> Indicator {
    let mut bands = DurationBands::default();
    for (d, n) in counted {
        bands.count_n(*d, *n);
    }
    let total: usize = counted.iter().map(|(_, n)| n).sum();
    // The lower middle: the ((total - 1) / 2)th duration, counting from 0.
    let median = (total > 0).then(|| {
        let mut left = (total - 1) / 2;
        counted
            .iter()
            .find(|(_, n)| {
                if left < *n {
                    true
                } else {
                    left -= n;
                    false
                }
            })
            .map_or(0.0, |(d, _)| *d as f64)
    });
    Indicator {
        name: Name::AssessmentDuration,
        unit: Unit::WorkingDays,
        numerator: median.unwrap_or(0.0),
        denominator: Some(total as f64),
        value: median,
        detail: Detail::Durations { bands },
        comparators: Vec::new(),
    }
}

fn referrals(data: &CouncilData, period: Period, population: Option<i64>) -> Indicator {
    let counted = |r: &&Referral| period.contains(r.received_on) && !r.during_open_episode;
    let n = data.referrals.iter().map(|(_, r)| r).filter(counted).count();
    let nfa = data.referrals.iter().map(|(_, r)| r).filter(counted).filter(|r| r.nfa).count();
    per_10000(Name::Referrals, n, population, Detail::Referrals { no_further_action: nfa })
}

/// Within 12 months: the previous referral's date is on or after the same
/// calendar date one year earlier.
fn re_referrals(data: &CouncilData, period: Period) -> Indicator {
    let in_period: Vec<&Referral> = data
        .referrals
        .iter()
        .map(|(_, r)| r)
        .filter(|r| period.contains(r.received_on) && !r.during_open_episode)
        .collect();
    let re = in_period.iter().filter(|r| r.previous_on.is_some_and(|p| p >= sub_months(r.received_on, 12))).count();
    share(Name::ReReferrals, re, in_period.len(), Detail::None {})
}

fn assessments_within_timescale(data: &CouncilData, period: Period, calendar: &Calendar) -> Indicator {
    let mut within = 0;
    let mut total = 0;
    let mut local = false;
    let mut timescales = BTreeSet::new();
    for a in &data.assessments {
        let (Some(start), Some(done)) = (a.started_on, a.completed_on) else { continue };
        if !period.contains(done) {
            continue;
        }
        let timescale = match setting_on(&data.settings, done).and_then(|s| s.assessment_timescale_days) {
            Some(days) => {
                local = true;
                i64::from(days)
            }
            None => DEFAULT_ASSESSMENT_DAYS,
        };
        timescales.insert(timescale);
        total += 1;
        if calendar.working_days_between(start, done) <= timescale {
            within += 1;
        }
    }
    if timescales.is_empty() {
        let configured = setting_on(&data.settings, period.to).and_then(|s| s.assessment_timescale_days);
        local = configured.is_some();
        timescales.insert(configured.map_or(DEFAULT_ASSESSMENT_DAYS, i64::from));
    }
    share(
        Name::AssessmentsWithinTimescale,
        within,
        total,
        Detail::Assessments { timescale_working_days: timescales.into_iter().collect(), local_timescale: local },
    )
}

fn icpc_within_15_working_days(data: &CouncilData, period: Period, calendar: &Calendar) -> Indicator {
    let mut bands = IcpcBands::default();
    let mut within = 0;
    let mut total = 0;
    let mut unknown_start = 0;
    for icpc in data.icpcs.iter().filter(|i| period.contains(i.held_on)) {
        total += 1;
        let Some(start) = icpc.s47_started_on else {
            // Without the enquiry's start the ICPC cannot be shown to be on time.
            unknown_start += 1;
            continue;
        };
        let days = calendar.working_days_between(start, icpc.held_on);
        bands.count(days);
        if days <= ICPC_DAYS {
            within += 1;
        }
    }
    share(Name::IcpcWithin15WorkingDays, within, total, Detail::Icpc { bands, s47_start_unknown: unknown_start })
}

fn plans_open_at_period_end(data: &CouncilData, at: NaiveDate, population: Option<i64>) -> Indicator {
    let n = data.plans.iter().filter(|(_, p)| p.open_on(at)).count();
    per_10000(Name::PlansOpen, n, population, Detail::On { on: at })
}

/// Two years or more: the end date is on or after the start plus 24 months.
fn plans_lasting_2_years_or_more(data: &CouncilData, period: Period) -> Indicator {
    let ended: Vec<&CpPlan> =
        data.plans.iter().map(|(_, p)| p).filter(|p| p.ended_on.is_some_and(|e| period.contains(e))).collect();
    let long = ended.iter().filter(|p| p.ended_on.is_some_and(|e| e >= add_months(p.started_on, 24))).count();
    share(Name::PlansLasting2Years, long, ended.len(), Detail::None {})
}

/// Of children starting a plan in the period, those who had any earlier plan.
fn second_or_subsequent_plans(data: &CouncilData, period: Period) -> Indicator {
    let mut children: BTreeMap<uuid::Uuid, bool> = BTreeMap::new();
    for (child, p) in data.plans.iter().filter(|(_, p)| period.contains(p.started_on)) {
        *children.entry(*child).or_default() |= p.earlier_plan;
    }
    let second = children.values().filter(|s| **s).count();
    share(Name::SecondPlans, second, children.len(), Detail::None {})
}

/// A plan counts as reviewed within timescale if every review that fell due
/// while it was open in the period was held on time: the first within three
/// months of the ICPC, each later one within six months of the one before.
/// Plans with no review due in the period are not counted either way.
fn plans_reviewed_within_timescale<'a>(
    plans: impl Iterator<Item = &'a CpPlan>,
    period: Period,
    today: NaiveDate,
) -> Indicator {
    let mut on_time = 0;
    let mut counted = 0;
    for plan in plans {
        match reviews_on_time(plan, period, today) {
            Some(true) => {
                counted += 1;
                on_time += 1;
            }
            Some(false) => counted += 1,
            None => {}
        }
    }
    share(Name::PlansReviewedOnTime, on_time, counted, Detail::None {})
}

/// `None` when no review fell due in the period while the plan was open.
pub fn reviews_on_time(plan: &CpPlan, period: Period, today: NaiveDate) -> Option<bool> {
    // Reviews fall due only while the plan is open and only once the day has come.
    let horizon = period.to.min(today);
    let mut due = add_months(plan.icpc_on, 3);
    let mut held = plan.reviews.iter().copied();
    let mut any = false;
    let mut all = true;
    loop {
        let open = plan.ended_on.is_none_or(|end| due < end);
        if due > horizon || !open {
            break;
        }
        let next = held.next();
        if due >= period.from {
            any = true;
            if next.is_none_or(|r| r > due) {
                all = false;
            }
        }
        match next {
            Some(r) => due = add_months(r, 6),
            None => break,
        }
    }
    any.then_some(all)
}

fn children_on_plans_seen_within_interval(data: &CouncilData, at: NaiveDate, setting: &CouncilSetting) -> Indicator {
    let interval = visit_interval(setting);
    let since = at.checked_sub_days(Days::new(interval.max(0) as u64)).unwrap_or(at);
    let children: BTreeSet<uuid::Uuid> =
        data.plans.iter().filter(|(_, p)| p.open_on(at)).map(|(child, _)| *child).collect();
    let seen = children
        .iter()
        .filter(|child| data.visits.get(child).is_some_and(|v| v.iter().any(|d| *d > since && *d <= at)))
        .count();
    share(Name::ChildrenSeen, seen, children.len(), Detail::Visits { interval_days: interval, on: at })
}

/// Open allocated cases per case-holding FTE in the council, on `at`, and
/// each worker's own ratio against the threshold.
pub fn worker_loads(data: &CouncilData, at: NaiveDate) -> BTreeMap<WorkerId, (WorkerSpell, usize)> {
    let mut cases: BTreeMap<WorkerId, usize> = BTreeMap::new();
    for (_, a) in data.allocations.iter().filter(|(_, a)| a.open_on(at)) {
        *cases.entry(a.worker_id).or_default() += 1;
    }
    loads_of(&data.spells, &cases, at)
}

/// Each worker in post on `at` with the open cases `cases` gives them.
fn loads_of(
    spells: &[(WorkerId, WorkerSpell)],
    cases: &BTreeMap<WorkerId, usize>,
    at: NaiveDate,
) -> BTreeMap<WorkerId, (WorkerSpell, usize)> {
    spells
        .iter()
        .filter(|(_, s)| s.open_on(at))
        .map(|(worker, s)| (*worker, (s.clone(), cases.get(worker).copied().unwrap_or(0))))
        .collect()
}

fn caseload_per_worker(
    loads: &BTreeMap<WorkerId, (WorkerSpell, usize)>,
    at: NaiveDate,
    setting: &CouncilSetting,
) -> Indicator {
    let threshold = setting.caseload_threshold.map_or(DEFAULT_CASELOAD_THRESHOLD, f64::from);
    let holders: Vec<&(WorkerSpell, usize)> = loads.values().filter(|(s, _)| s.holds_cases()).collect();
    let cases: usize = holders.iter().map(|(_, n)| n).sum();
    let fte: f64 = holders.iter().map(|(s, _)| s.fte).sum();
    let over = holders.iter().filter(|(s, n)| over_threshold(*n, s.fte, threshold)).count();
    Indicator {
        name: Name::CaseloadPerWorker,
        unit: Unit::PerFte,
        numerator: cases as f64,
        denominator: Some(fte),
        value: (fte > 0.0).then(|| cases as f64 / fte),
        detail: Detail::Caseload {
            on: at,
            threshold,
            workers_over_threshold: over,
            case_holding_workers: holders.len(),
        },
        comparators: Vec::new(),
    }
}

/// A worker is over the threshold when their open cases per FTE exceed it.
pub fn over_threshold(cases: usize, fte: f64, threshold: f64) -> bool {
    fte > 0.0 && cases as f64 / fte > threshold
}

/// The DfE's workforce census: vacant FTE / (vacant FTE + filled FTE), a
/// post filled by a permanent social worker of any grade (managers too),
/// vacant FTE the funded posts no one permanent fills. Agency staff cover
/// vacancies but do not fill posts.
fn vacancy_rate(spells: &[(WorkerId, WorkerSpell)], at: NaiveDate, setting: &CouncilSetting) -> Indicator {
    let in_post = |agency: bool| -> f64 {
        spells
            .iter()
            .filter(|(_, s)| s.open_on(at) && s.is_social_worker() && s.agency == agency)
            .map(|(_, s)| s.fte)
            .sum()
    };
    let (filled, agency) = (in_post(false), in_post(true));
    let vacant = setting.funded_social_worker_fte.map(|f| (f - filled).max(0.0));
    let posts = vacant.map(|v| v + filled);
    Indicator {
        name: Name::VacancyRate,
        unit: Unit::Share,
        numerator: vacant.unwrap_or(0.0),
        denominator: posts,
        value: posts.filter(|p| *p > 0.0).zip(vacant).map(|(p, v)| v / p),
        detail: Detail::Vacancy { on: at, filled_fte: filled, agency_fte: agency },
        comparators: Vec::new(),
    }
}

/// The indicators document of CONTRACT.md for one council and period.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Document {
    pub council: CouncilCode,
    pub period: String,
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub indicators: Vec<Indicator>,
}

/// The document from facts already loaded (one load serves many periods).
pub fn document_from(data: &CouncilData, council: &CouncilCode, period: Period, today: NaiveDate) -> Document {
    document_of(compute(data, period, today, Calendar::england_and_wales()), council, period)
}

/// The document from a council's tallies for the period.
pub fn document_tallied(t: &Tallied, council: &CouncilCode, period: Period, today: NaiveDate) -> Document {
    document_of(compute_tallied(t, period, today), council, period)
}

fn document_of(indicators: Vec<Indicator>, council: &CouncilCode, period: Period) -> Document {
    Document {
        council: council.clone(),
        period: period.label(),
        from: period.from,
        to: period.to,
        indicators: indicators
            .into_iter()
            .map(|mut i| {
                i.comparators = comparators(i.name, council);
                i
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(text: &str) -> NaiveDate {
        text.parse().unwrap_or(NaiveDate::MIN)
    }

    #[test]
    fn rolling_years_end_on_the_last_days_of_financial_quarters() {
        let periods = Period::rolling_years_to_quarters(day("2025-05-10"), 3);
        let spans: Vec<(String, String)> = periods.iter().map(|p| (p.from.to_string(), p.to.to_string())).collect();
        assert_eq!(
            spans,
            [
                ("2024-01-01".to_owned(), "2024-12-31".to_owned()),
                ("2024-04-01".to_owned(), "2025-03-31".to_owned()),
                ("2024-07-01".to_owned(), "2025-06-30".to_owned()),
            ]
        );
        // A year to 31 March is the financial year, and says so.
        assert_eq!(periods[1].label(), "2024-25");
    }

    #[test]
    fn the_shipped_comparators_parse_and_name_known_indicators() {
        let raw: serde_json::Value =
            serde_json::from_str(include_str!("../data/comparators.json")).expect("comparators.json is JSON");
        let figures = raw["figures"].as_array().expect("figures");
        assert_eq!(all_comparators().len(), figures.len(), "every figure parses");
        for c in all_comparators() {
            assert!(Name::ALL.iter().any(|n| n.code() == c.indicator), "{}", c.indicator);
            assert!(["england", "region", "statistical_neighbours"].contains(&c.kind.as_str()), "{}", c.kind);
            assert!(!c.source.is_empty() && !c.year.is_empty());
        }
    }

    #[test]
    fn national_figures_are_those_of_the_domain() {
        assert_eq!(national(Name::IcpcWithin15WorkingDays).map(|n| n.value), Some(0.814));
        assert_eq!(national(Name::VacancyRate).map(|n| n.value), Some(0.189));
        assert_eq!(national(Name::SecondPlans), None);
    }
}
