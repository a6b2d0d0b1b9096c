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

use crate::facts::{Fact, Recorded, date, effective, owned, text};
use chrono::NaiveDate;
use events::EventType;
use events::calendar::Calendar;
use serde_json::{Map, Value};
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

    /// Whether something from `from` to `to` (open if None) touches the year.
    fn touches(&self, from: NaiveDate, to: Option<NaiveDate>) -> bool {
        from <= self.reference_date && to.is_none_or(|end| end >= self.start)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CinChild {
    pub la_child_id: String,
    pub upn: Option<String>,
    pub former_upn: Option<String>,
    pub upn_unknown: Option<String>,
    pub birth_date: Option<NaiveDate>,
    pub expected_birth_date: Option<NaiveDate>,
    pub sex: String,
    pub death_date: Option<NaiveDate>,
    pub ethnicity: Option<String>,
    pub disabilities: Vec<String>,
    pub episodes: Vec<Episode>,
    /// Each plan's initial conference (plan id, conference id), for the quality rules.
    pub plan_conferences: Vec<(String, String)>,
    /// Every initial conference (id, date).
    pub initial_conferences: Vec<(String, NaiveDate)>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Episode {
    pub referral_id: String,
    pub council: String,
    pub referral_date: NaiveDate,
    pub source: String,
    pub primary_need: Option<String>,
    pub nfa: bool,
    pub closure: Option<(NaiveDate, String)>,
    /// An ICPC that belongs to no section 47 of the episode.
    pub initial_cpc: Option<NaiveDate>,
    pub assessments: Vec<Assessment>,
    pub cin_plans: Vec<CinPlan>,
    pub section47s: Vec<Section47>,
    pub plans: Vec<Plan>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CinPlan {
    pub id: String,
    pub start: NaiveDate,
    pub end: Option<NaiveDate>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Assessment {
    pub id: String,
    pub start: NaiveDate,
    pub authorised: Option<NaiveDate>,
    pub factors: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Section47 {
    pub id: String,
    pub start: NaiveDate,
    pub icpc_target: NaiveDate,
    pub icpc: Option<NaiveDate>,
    pub icpc_not_required: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub id: String,
    pub start: NaiveDate,
    pub end: Option<NaiveDate>,
    pub initial_category: String,
    pub latest_category: String,
    pub previous_plans: u32,
    pub reviews: Vec<NaiveDate>,
}

/// The child's census record for `council` and `year`, if the child is in scope.
pub fn census_child(
    history: &[Recorded],
    council: &str,
    year: &CollectionYear,
    calendar: &Calendar,
) -> Option<CinChild> {
    let mut child = fold(history, year.reference_date, calendar);
    // What belongs to this council's return for this year.
    child.episodes = std::mem::take(&mut child.episodes)
        .into_iter()
        .filter(|e| e.council == council && year.touches(e.referral_date, e.closure.as_ref().map(|c| c.0)))
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
pub fn fold(history: &[Recorded], until: NaiveDate, calendar: &Calendar) -> CinChild {
    let facts: Vec<Fact<'_>> = effective(history).into_iter().filter(|f| f.on <= until).collect();
    let mut child = CinChild::default();
    let mut current_council = String::new();
    let mut episodes: Vec<Episode> = Vec::new();
    for f in &facts {
        let d = f.data;
        match f.event_type {
            EventType::ChildRegistered | EventType::ChildDetailsUpdated => {
                if f.event_type == EventType::ChildRegistered {
                    current_council = owned(d, "council");
                }
                details(&mut child, d);
            }
            EventType::ChildTransferred => current_council = owned(d, "council"),
            EventType::ChildDied => child.death_date = date(d, "date").or(Some(f.on)),
            EventType::ReferralReceived => {
                let nfa = d.get("nfa").and_then(Value::as_bool).unwrap_or(false);
                episodes.push(Episode {
                    referral_id: owned(d, "referral_id"),
                    council: current_council.clone(),
                    referral_date: f.on,
                    source: owned(d, "source"),
                    primary_need: text(d, "primary_need").map(str::to_owned),
                    nfa,
                    // A referral with no further action is closed the day it is received.
                    closure: nfa.then(|| (f.on, "RC8".to_owned())),
                    ..Episode::default()
                });
            }
            EventType::CaseClosed => {
                if let Some(e) = episode(&mut episodes, text(d, "referral_id"), f.on)
                    && e.closure.is_none()
                {
                    e.closure = Some((f.on, owned(d, "reason")));
                }
            }
            _ => {}
        }
    }
    let mut plans_started = 0u32;
    let mut plan_conference: Vec<(String, String)> = Vec::new();
    let mut conference_episode: Vec<(String, usize)> = Vec::new();
    let mut reviews: Vec<(String, NaiveDate)> = Vec::new();
    let mut initial_conferences: Vec<(String, NaiveDate)> = Vec::new();
    // What starts a thing, then what hangs off it, then what ends or amends
    // it: so an end dated (wrongly) before its start still finds it.
    let phase = |t: EventType| match t {
        EventType::AssessmentStarted
        | EventType::S47Started
        | EventType::ConferenceHeld
        | EventType::CinPlanStarted => 1,
        EventType::CpPlanStarted => 2,
        _ => 3,
    };
    for current in 1..=3 {
        for f in facts.iter().filter(|f| phase(f.event_type) == current) {
            let d = f.data;
            match f.event_type {
                EventType::AssessmentStarted => {
                    if let Some(e) = episode(&mut episodes, text(d, "referral_id"), f.on) {
                        e.assessments.push(Assessment {
                            id: owned(d, "assessment_id"),
                            start: f.on,
                            ..Assessment::default()
                        });
                    }
                }
                EventType::AssessmentCompleted => {
                    let id = owned(d, "assessment_id");
                    if let Some(a) =
                        episodes.iter_mut().rev().flat_map(|e| e.assessments.iter_mut()).find(|a| a.id == id)
                    {
                        a.authorised = Some(f.on);
                        a.factors = d
                            .get("factors")
                            .and_then(Value::as_array)
                            .map(|l| l.iter().filter_map(Value::as_str).map(str::to_owned).collect())
                            .unwrap_or_default();
                    }
                }
                EventType::S47Started => {
                    if let Some(e) = episode(&mut episodes, text(d, "referral_id"), f.on) {
                        e.section47s.push(Section47 {
                            id: owned(d, "s47_id"),
                            start: f.on,
                            icpc_target: calendar.add_working_days(f.on, 15),
                            ..Section47::default()
                        });
                    }
                }
                EventType::S47Completed => {
                    let id = owned(d, "s47_id");
                    if let Some(s) =
                        episodes.iter_mut().rev().flat_map(|e| e.section47s.iter_mut()).find(|s| s.id == id)
                    {
                        s.icpc_not_required = d.get("icpc_required").and_then(Value::as_bool) == Some(false);
                    }
                }
                EventType::ConferenceHeld => match text(d, "kind") {
                    Some("initial") => {
                        let conference = owned(d, "conference_id");
                        initial_conferences.push((conference.clone(), f.on));
                        let s47 = text(d, "s47_id");
                        let found = episodes.iter_mut().enumerate().rev().find_map(|(i, e)| {
                            e.section47s
                                .iter_mut()
                                .find(|s| s47.is_none_or(|id| s.id == id) && s.icpc.is_none())
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
                    Some("review") => {
                        if let Some(plan) = text(d, "plan_id") {
                            reviews.push((plan.to_owned(), f.on));
                        }
                    }
                    _ => {}
                },
                EventType::CpPlanStarted => {
                    let conference = owned(d, "conference_id");
                    let at = conference_episode
                        .iter()
                        .find(|(c, _)| *c == conference)
                        .map(|(_, i)| *i)
                        .or_else(|| episode_index(&episodes, None, f.on));
                    let category = owned(d, "category");
                    if let Some(i) = at {
                        episodes[i].plans.push(Plan {
                            id: owned(d, "plan_id"),
                            start: f.on,
                            initial_category: category.clone(),
                            latest_category: category,
                            previous_plans: plans_started,
                            ..Plan::default()
                        });
                        plan_conference.push((owned(d, "plan_id"), conference));
                    }
                    plans_started += 1;
                }
                EventType::CpPlanCategoryChanged => {
                    if let Some(p) = plan(&mut episodes, text(d, "plan_id")) {
                        p.latest_category = owned(d, "category");
                    }
                }
                EventType::CpPlanEnded => {
                    if let Some(p) = plan(&mut episodes, text(d, "plan_id")) {
                        p.end = Some(f.on);
                    }
                }
                EventType::CinPlanStarted => {
                    if let Some(e) = episode(&mut episodes, text(d, "referral_id"), f.on) {
                        e.cin_plans.push(CinPlan { id: owned(d, "plan_id"), start: f.on, end: None });
                    }
                }
                EventType::CinPlanEnded => {
                    let id = owned(d, "plan_id");
                    if let Some(p) = episodes.iter_mut().rev().flat_map(|e| e.cin_plans.iter_mut()).find(|p| p.id == id)
                    {
                        p.end = Some(f.on);
                    }
                }
                _ => {}
            }
        }
    }
    for (plan_id, day) in reviews {
        if let Some(p) = plan(&mut episodes, Some(&plan_id)) {
            p.reviews.push(day);
        }
    }
    child.plan_conferences = plan_conference;
    child.initial_conferences = initial_conferences;
    child.episodes = episodes;
    child
}

fn details(child: &mut CinChild, d: &Map<String, Value>) {
    if let Some(id) = text(d, "la_child_id") {
        child.la_child_id = id.to_owned();
    }
    if let Some(sex) = text(d, "sex") {
        child.sex = sex.to_owned();
    }
    if let Some(born) = date(d, "birth_date") {
        child.birth_date = Some(born);
        child.expected_birth_date = None;
    }
    if let Some(due) = date(d, "expected_birth_date") {
        child.expected_birth_date = Some(due);
    }
    if let Some(e) = text(d, "ethnicity") {
        child.ethnicity = Some(e.to_owned());
    }
    if let Some(list) = d.get("disabilities").and_then(Value::as_array) {
        child.disabilities = list.iter().filter_map(Value::as_str).map(str::to_owned).collect();
    }
    if let Some(person) = d.get("person").and_then(Value::as_object) {
        for (field, slot) in
            [("upn", &mut child.upn), ("former_upn", &mut child.former_upn), ("upn_unknown", &mut child.upn_unknown)]
        {
            if let Some(v) = text(person, field) {
                *slot = Some(v.to_owned());
            }
        }
    }
}

/// The episode a fact belongs to: the one its `referral_id` names, or else
/// the latest that began on or before its date (or the first, for a fact
/// dated before every referral).
fn episode_index(episodes: &[Episode], referral_id: Option<&str>, on: NaiveDate) -> Option<usize> {
    if let Some(id) = referral_id
        && let Some(i) = episodes.iter().rposition(|e| e.referral_id == id)
    {
        return Some(i);
    }
    episodes.iter().rposition(|e| e.referral_date <= on).or((!episodes.is_empty()).then_some(0))
}

fn episode<'a>(episodes: &'a mut [Episode], referral_id: Option<&str>, on: NaiveDate) -> Option<&'a mut Episode> {
    let i = episode_index(episodes, referral_id, on)?;
    episodes.get_mut(i)
}

fn plan<'a>(episodes: &'a mut [Episode], plan_id: Option<&str>) -> Option<&'a mut Plan> {
    let id = plan_id?;
    episodes.iter_mut().rev().flat_map(|e| e.plans.iter_mut()).find(|p| p.id == id)
}

/// Who made the message.
#[derive(Debug, Clone)]
pub struct Header {
    pub dfe_la_code: String,
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
    x.leaf("LEA", &header.dfe_la_code);
    x.leaf("SoftwareCode", &header.software);
    x.leaf("Release", &header.release);
    x.leaf("SerialNo", header.serial);
    x.leaf("DateTime", header.made_at.format("%Y-%m-%dT%H:%M:%S"));
    x.close("Source");
    x.close("Header");
    x.open("Children");
    for c in children {
        x.open("Child");
        x.open("ChildIdentifiers");
        x.leaf("LAchildID", &c.la_child_id);
        x.maybe("UPN", c.upn.as_ref());
        x.maybe("FormerUPN", c.former_upn.as_ref());
        if c.upn.is_none() {
            x.maybe("UPNunknown", c.upn_unknown.as_ref());
        }
        x.maybe("PersonBirthDate", c.birth_date);
        if c.birth_date.is_none() {
            x.maybe("ExpectedPersonBirthDate", c.expected_birth_date);
        }
        x.leaf("Sex", &c.sex);
        x.maybe("PersonDeathDate", c.death_date);
        x.close("ChildIdentifiers");
        x.open("ChildCharacteristics");
        // "NOBT": information not yet obtained.
        x.leaf("Ethnicity", c.ethnicity.as_deref().unwrap_or("NOBT"));
        x.open("Disabilities");
        if c.disabilities.is_empty() {
            x.leaf("Disability", "NONE");
        }
        for d in &c.disabilities {
            x.leaf("Disability", d);
        }
        x.close("Disabilities");
        x.close("ChildCharacteristics");
        for e in &c.episodes {
            x.open("CINdetails");
            x.leaf("CINreferralDate", e.referral_date);
            x.leaf("ReferralSource", &e.source);
            x.maybe("PrimaryNeedCode", e.primary_need.as_ref());
            if let Some((closed, reason)) = &e.closure {
                x.leaf("CINclosureDate", closed);
                x.leaf("ReasonForClosure", reason);
            }
            x.maybe("DateOfInitialCPC", e.initial_cpc);
            x.leaf("ReferralNFA", if e.nfa { "true" } else { "false" });
            for a in &e.assessments {
                x.open("Assessments");
                x.leaf("AssessmentActualStartDate", a.start);
                x.maybe("AssessmentAuthorisationDate", a.authorised);
                if !a.factors.is_empty() {
                    x.open("FactorsIdentifiedAtAssessment");
                    for f in &a.factors {
                        x.leaf("AssessmentFactors", f);
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
            for p in &e.plans {
                x.open("ChildProtectionPlans");
                x.leaf("CPPstartDate", p.start);
                x.maybe("CPPendDate", p.end);
                x.leaf("InitialCategoryOfAbuse", &p.initial_category);
                x.leaf("LatestCategoryOfAbuse", &p.latest_category);
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
pub fn open_people(subject: &str, history: &mut [Recorded], key: &events::privacy::DataKey) {
    for r in history.iter_mut() {
        if !matches!(r.event_type.as_str(), "child.registered" | "child.details_updated") {
            continue;
        }
        let aad = events::privacy::associated_data(subject, &r.source, &r.event_id, "/data/person");
        if let Some(sealed) = r.data.get("person")
            && let Ok(opened) = events::privacy::open_value(key, &aad, sealed)
        {
            r.data.insert("person".into(), opened);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn history(facts: &[(&str, &str, Value)]) -> Vec<Recorded> {
        facts
            .iter()
            .enumerate()
            .map(|(i, (t, day, data))| {
                let on: NaiveDate = day.parse().expect("date");
                Recorded {
                    sequence: i as i64 + 1,
                    event_id: format!("e{i}"),
                    source: "test".into(),
                    event_type: (*t).to_owned(),
                    occurred_at: on.and_hms_opt(10, 0, 0).expect("time").and_utc(),
                    business_date: on,
                    data: data.as_object().cloned().unwrap_or_default(),
                }
            })
            .collect()
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
        let child = census_child(&h, "E09000014", &year, Calendar::england_and_wales()).expect("in scope");
        let e = &child.episodes[0];
        assert_eq!(e.section47s.len(), 1, "{e:?}");
        assert_eq!(e.section47s[0].icpc, NaiveDate::from_ymd_opt(2024, 4, 25));
        assert_eq!(e.initial_cpc, None);
    }
}
