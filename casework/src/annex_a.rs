//! Ofsted's Annex A child-level lists (RETURNS.md): lists 1 (contacts), 3
//! (referrals), 4 (assessments), 5 (section 47 and ICPC), 6 (children in
//! need) and 7 (child protection), for the six months before an inspection
//! date. Pure: a child's history in, rows out, with Ofsted's columns and
//! value conventions (letter-prefixed values, dates as dd/mm/yyyy).
//!
//! Lists 1, 3, 4 and 5 hold what happened in the six months; list 6 every
//! episode open at some time in them; list 7 every plan open at some time in
//! them. Allocated team and worker are those holding the case on the
//! inspection date (the worker's id: the backbone holds no staff names).

use crate::cin::{self, CinChild};
use crate::facts::{History, effective};
use chrono::{Months, NaiveDate};
use events::EventData;
use events::calendar::Calendar;
use events::codes::{CategoryOfAbuse, CourtOrder, Disability, Ethnicity, ReferralSource, SeenContext, Sex};
use events::ids::CouncilCode;
use events::ids::LocalId;

/// The lists Annex A asks for, by number.
pub const LISTS: [u8; 6] = [1, 3, 4, 5, 6, 7];

/// Columns every list starts with.
const COMMON: [&str; 5] = ["Child Unique ID", "Gender", "Ethnicity", "Date of Birth", "Age"];

/// The columns of a list, after the common ones.
pub fn columns(list: u8) -> Vec<&'static str> {
    let own: &[&str] = match list {
        1 => &["Date of Contact", "Contact Source"],
        3 => &[
            "Date of Referral",
            "Referral Source",
            "Referral NFA?",
            "Number of Referrals in Last 12 Months",
            "Allocated Team",
            "Allocated Worker",
        ],
        4 => &[
            "Disability",
            "Assessment Start Date",
            "Child Seen During Assessment",
            "Assessment Date of Authorisation",
            "Assessed as Requiring Social Care Support?",
            "Allocated Team",
            "Allocated Worker",
        ],
        5 => &[
            "Disability",
            "Strategy Discussion Initiating Section 47 Enquiry Start Date",
            "ICPC Deemed Unnecessary?",
            "Date of ICPC",
            "ICPC Resulted in a CP Plan?",
            "Number of S47 Enquiries in the Last 12 Months",
            "Number of ICPCs in the Last 12 Months",
            "Allocated Team",
            "Allocated Worker",
        ],
        6 => &[
            "Disability",
            "CIN Start Date",
            "Primary Need Code",
            "Date Child Was Last Seen",
            "CIN Closure Date",
            "Reason for Closure",
            "Case Status",
            "Allocated Team",
            "Allocated Worker",
        ],
        7 => &[
            "Disability",
            "CPP Start Date",
            "Initial Category of Abuse",
            "Latest Category of Abuse",
            "Date of the Last Statutory Visit",
            "Was the Child Seen Alone?",
            "Date of Latest Review Conference",
            "CPP End Date",
            "Subject to EPO or Police Protection in Last Six Months",
            "Number of Previous CP Plans",
            "Allocated Team",
            "Allocated Worker",
        ],
        _ => &[],
    };
    COMMON.iter().chain(own).copied().collect()
}

fn day(d: Option<NaiveDate>) -> String {
    d.map(|d| d.format("%d/%m/%Y").to_string()).unwrap_or_default()
}

fn yes_no(b: bool) -> String {
    (if b { "a) Yes" } else { "b) No" }).to_owned()
}

fn gender(sex: Option<Sex>) -> &'static str {
    match sex {
        Some(Sex::Male) => "a) Male",
        Some(Sex::Female) => "b) Female",
        _ => "c) Not stated/recorded",
    }
}

/// Annex A's letters for referral sources end at "u) 10: Unknown" with
/// "q) 6: Police"; the CIN code 5D, newer than that list, is given "v)".
fn source(source: ReferralSource) -> String {
    const ORDER: [&str; 21] = [
        "1A", "1B", "1C", "1D", "2A", "2B", "3A", "3B", "3C", "3D", "3E", "3F", "4", "5A", "5B", "5C", "6", "7", "8",
        "9", "10",
    ];
    let code = source.code();
    let letter = ORDER.iter().position(|c| *c == code).map_or('v', |i| (b'a' + i as u8) as char);
    format!("{letter}) {code}: {}", source.label())
}

fn category(category: CategoryOfAbuse) -> String {
    match category {
        CategoryOfAbuse::Neglect => "a) Neglect",
        CategoryOfAbuse::Physical => "b) Physical abuse",
        CategoryOfAbuse::Sexual => "c) Sexual abuse",
        CategoryOfAbuse::Emotional => "d) Emotional abuse",
        CategoryOfAbuse::Multiple => "e) Multiple/not recommended",
    }
    .to_owned()
}

/// What the lists need beyond the census fold.
#[derive(Default)]
struct Extra {
    contacts: Vec<(NaiveDate, ReferralSource)>,
    allocation: Option<(String, String)>,
    sightings: Vec<(NaiveDate, bool, bool)>,
    assessment_seen: Vec<(LocalId, bool, bool)>,
    epo: Vec<NaiveDate>,
}

/// The rows of every list for one child: `(list, row)`.
pub fn rows(history: &History, council: &CouncilCode, date: NaiveDate, calendar: &Calendar) -> Vec<(u8, Vec<String>)> {
    let child = cin::fold(history, date, calendar);
    let from = date.checked_sub_months(Months::new(6)).unwrap_or(date);
    let in_window = |d: NaiveDate| from < d && d <= date;
    let extra = extra(history, date);
    let age = child.birth_date.and_then(|b| date.years_since(b)).map(|a| a.to_string()).unwrap_or_default();
    let common = |c: &CinChild| {
        vec![
            c.la_child_id.as_ref().map(|id| id.as_str().to_owned()).unwrap_or_default(),
            gender(c.sex).to_owned(),
            c.ethnicity.unwrap_or(Ethnicity::Nobt).code().to_owned(),
            day(c.birth_date.or(c.expected_birth_date)),
            age.clone(),
        ]
    };
    let disabled = yes_no(child.disabilities.iter().any(|d| *d != Disability::None));
    let (team, worker) = extra.allocation.clone().unwrap_or_default();
    let mut out = Vec::new();
    let episodes: Vec<&cin::Episode> = child.episodes.iter().filter(|e| e.council == *council).collect();
    if episodes.is_empty() && extra.contacts.is_empty() {
        return out;
    }

    for (on, src) in extra.contacts.iter().filter(|(on, _)| in_window(*on)) {
        let mut row = common(&child);
        row.extend([day(Some(*on)), source(*src)]);
        out.push((1, row));
    }
    let referral_dates: Vec<NaiveDate> = child.episodes.iter().map(|e| e.referral_date).collect();
    let year_before = |d: NaiveDate| d.checked_sub_months(Months::new(12)).unwrap_or(d);
    for e in episodes.iter().filter(|e| in_window(e.referral_date)) {
        let earlier =
            referral_dates.iter().filter(|d| **d < e.referral_date && **d >= year_before(e.referral_date)).count();
        let mut row = common(&child);
        row.extend([
            day(Some(e.referral_date)),
            source(e.source),
            yes_no(e.nfa),
            earlier.to_string(),
            team.clone(),
            worker.clone(),
        ]);
        out.push((3, row));
    }
    for e in &episodes {
        for a in e.assessments.iter().filter(|a| in_window(a.start) || a.authorised.is_some_and(in_window)) {
            let (seen, support) = extra
                .assessment_seen
                .iter()
                .find(|(id, _, _)| *id == a.id)
                .map_or((String::new(), String::new()), |(_, s, n)| (yes_no(*s), yes_no(*n)));
            let mut row = common(&child);
            row.extend([
                disabled.clone(),
                day(Some(a.start)),
                if a.authorised.is_some() { seen } else { String::new() },
                day(a.authorised),
                if a.authorised.is_some() { support } else { String::new() },
                team.clone(),
                worker.clone(),
            ]);
            out.push((4, row));
        }
    }
    let s47_dates: Vec<NaiveDate> = child.episodes.iter().flat_map(|e| e.section47s.iter().map(|s| s.start)).collect();
    let icpc_dates: Vec<NaiveDate> =
        child.episodes.iter().flat_map(|e| e.section47s.iter().filter_map(|s| s.icpc)).collect();
    for e in &episodes {
        for s in e.section47s.iter().filter(|s| in_window(s.start) || s.icpc.is_some_and(in_window)) {
            let count = |dates: &[NaiveDate], at: NaiveDate| {
                dates.iter().filter(|d| **d < at && **d >= year_before(at)).count().to_string()
            };
            let plan = s.icpc.is_some_and(|icpc| e.plans.iter().any(|p| p.start == icpc));
            let mut row = common(&child);
            row.extend([
                disabled.clone(),
                day(Some(s.start)),
                yes_no(s.icpc_not_required),
                day(s.icpc),
                if s.icpc.is_some() { yes_no(plan) } else { String::new() },
                count(&s47_dates, s.start),
                s.icpc.map(|icpc| count(&icpc_dates, icpc)).unwrap_or_default(),
                team.clone(),
                worker.clone(),
            ]);
            out.push((5, row));
        }
    }
    let last_seen = extra.sightings.iter().map(|(d, _, _)| *d).max();
    for e in episodes
        .iter()
        .filter(|e| !e.nfa && e.referral_date <= date && e.closure.as_ref().is_none_or(|(c, _)| *c > from))
    {
        let open_plan = e.plans.iter().any(|p| p.end.is_none());
        let open_cin_plan = e.cin_plans.iter().any(|p| p.end.is_none());
        let open_assessment = e.assessments.iter().any(|a| a.authorised.is_none());
        let status = if e.closure.is_some() {
            "e) Closed episode"
        } else if open_plan {
            "b) CP plan"
        } else if open_cin_plan {
            "c) CIN plan"
        } else if open_assessment {
            "d) Open assessment"
        } else {
            "c) CIN plan"
        };
        let mut row = common(&child);
        row.extend([
            disabled.clone(),
            day(Some(e.referral_date)),
            e.primary_need.map(|n| n.code().to_owned()).unwrap_or_default(),
            day(last_seen),
            day(e.closure.as_ref().map(|c| c.0)),
            e.closure.as_ref().map(|c| c.1.code().to_owned()).unwrap_or_default(),
            status.to_owned(),
            team.clone(),
            worker.clone(),
        ]);
        out.push((6, row));
    }
    let last_visit = extra.sightings.iter().filter(|(_, statutory, _)| *statutory).max_by_key(|(d, _, _)| *d);
    let epo = extra.epo.iter().any(|d| in_window(*d));
    for e in &episodes {
        for p in e.plans.iter().filter(|p| p.start <= date && p.end.is_none_or(|end| end > from)) {
            let mut row = common(&child);
            row.extend([
                disabled.clone(),
                day(Some(p.start)),
                category(p.initial_category),
                category(p.latest_category),
                day(last_visit.map(|v| v.0)),
                last_visit.map(|v| yes_no(v.2)).unwrap_or_default(),
                day(p.reviews.iter().max().copied()),
                day(p.end),
                yes_no(epo),
                p.previous_plans.to_string(),
                team.clone(),
                worker.clone(),
            ]);
            out.push((7, row));
        }
    }
    out
}

fn extra(history: &History, date: NaiveDate) -> Extra {
    use EventData as D;
    let mut x = Extra::default();
    let mut allocations: Vec<(String, String)> = Vec::new();
    for f in effective(history).into_iter().filter(|f| f.on <= date) {
        match f.data {
            D::ContactRecorded(d) => x.contacts.push((f.on, d.source)),
            D::CaseAllocated(d) => allocations.push((d.team_id.as_str().to_owned(), d.worker_id.to_string())),
            D::CaseDeallocated(d) => {
                let worker = d.worker_id.to_string();
                allocations.retain(|(_, w)| *w != worker);
            }
            D::CaseClosed(_) => allocations.clear(),
            D::ChildSeen(d) => x.sightings.push((f.on, d.context == SeenContext::StatutoryVisit, d.seen_alone)),
            D::AssessmentCompleted(d) => {
                x.assessment_seen.push((d.assessment_id.clone(), d.child_seen, d.needs_support));
            }
            D::CourtOrderMade(d) if d.order == CourtOrder::Epo => x.epo.push(f.on),
            _ => {}
        }
    }
    x.allocation = allocations.pop();
    x
}

/// A list as CSV (RFC 4180, formulas defused), header first.
pub fn csv(list: u8, rows: &[Vec<String>]) -> String {
    let mut out = crate::csv::line(&columns(list));
    for row in rows {
        out.push_str(&crate::csv::line(row));
    }
    out
}
