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
use events::codes::{
    CategoryOfAbuse, ClosureReason, CourtOrder, Disability, Ethnicity, PrimaryNeed, ReferralSource, SeenContext, Sex,
};
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

/// Ofsted's strings for referral and contact sources: a letter, the CIN
/// code and Ofsted's group name (`q) 6: Police`). The CIN code 5D is newer
/// than Ofsted's list; it keeps its group's name with the letter after
/// the last (see [`NEWER_THAN_OFSTED`]).
fn source(source: ReferralSource) -> String {
    const ORDER: [(&str, &str); 21] = [
        ("1A", "Individual"),
        ("1B", "Individual"),
        ("1C", "Individual"),
        ("1D", "Individual"),
        ("2A", "Schools"),
        ("2B", "Education services"),
        ("3A", "Health services"),
        ("3B", "Health services"),
        ("3C", "Health services"),
        ("3D", "Health services"),
        ("3E", "Health services"),
        ("3F", "Health services"),
        ("4", "Housing"),
        ("5A", "LA services"),
        ("5B", "LA services"),
        ("5C", "LA services"),
        ("6", "Police"),
        ("7", "Other legal agency"),
        ("8", "Other"),
        ("9", "Anonymous"),
        ("10", "Unknown"),
    ];
    let code = source.code();
    match ORDER.iter().position(|(c, _)| *c == code) {
        Some(i) => format!("{}) {code}: {}", (b'a' + i as u8) as char, ORDER[i].1),
        None => format!("v) {code}: LA services"),
    }
}

/// Values of CIN codes newer than Ofsted's Annex A template (5D, from
/// 2023, and RC9, from 2019-20), written in the template's manner; a
/// council's analyst sees them named in `safeguard return check`.
pub const NEWER_THAN_OFSTED: [&str; 2] =
    ["v) 5D: LA services", "RC9 - Case closed after assessment, referred to early help"];

/// Ofsted's strings for ethnicity: a letter and the CIN code (`k) APKN`).
fn ethnicity(e: Ethnicity) -> String {
    const ORDER: [&str; 20] = [
        "WBRI", "WIRI", "WIRT", "WOTH", "WROM", "MWBC", "MWBA", "MWAS", "MOTH", "AIND", "APKN", "ABAN", "AOTH", "BCRB",
        "BAFR", "BOTH", "CHNE", "OOTH", "REFU", "NOBT",
    ];
    let code = e.code();
    // Ofsted's template gives REFU and NOBT the same letter.
    let i = ORDER.iter().position(|c| *c == code).unwrap_or(ORDER.len() - 1).min(18);
    format!("{}) {code}", (b'a' + i as u8) as char)
}

/// Ofsted's strings for the primary need (`N1 - Abuse or neglect`).
fn primary_need(n: PrimaryNeed) -> String {
    let words = match n {
        PrimaryNeed::N0 => "Not stated",
        PrimaryNeed::N1 => "Abuse or neglect",
        PrimaryNeed::N2 => "Child's disability",
        PrimaryNeed::N3 => "Parental disability or illness",
        PrimaryNeed::N4 => "Family in acute stress",
        PrimaryNeed::N5 => "Family dysfunction",
        PrimaryNeed::N6 => "Socially unacceptable behaviour",
        PrimaryNeed::N7 => "Low income",
        PrimaryNeed::N8 => "Absent parenting",
        PrimaryNeed::N9 => "Cases other than children in need",
    };
    format!("{} - {words}", n.code())
}

/// Ofsted's strings for the reason for closure (`RC7 - Services ceased ...`).
fn closure(r: ClosureReason) -> String {
    let words = match r {
        ClosureReason::Rc1 => "Adopted",
        ClosureReason::Rc2 => "Died",
        ClosureReason::Rc3 => "Child arrangements order",
        ClosureReason::Rc4 => "Special guardianship order",
        ClosureReason::Rc5 => "Transferred to services of another local authority",
        ClosureReason::Rc6 => "Transferred to adult social care services",
        ClosureReason::Rc7 => "Services ceased for any other reason, including child no longer in need",
        ClosureReason::Rc8 => "Case closed after assessment, no further action",
        ClosureReason::Rc9 => "Case closed after assessment, referred to early help",
    };
    format!("{} - {words}", r.code())
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
    let extra = extra(history, council, date);
    let age = child.birth_date.and_then(|b| date.years_since(b)).map(|a| a.to_string()).unwrap_or_default();
    let common = |c: &CinChild| {
        vec![
            c.la_child_id.as_ref().map(|id| id.as_str().to_owned()).unwrap_or_default(),
            gender(c.sex).to_owned(),
            ethnicity(c.ethnicity.unwrap_or(Ethnicity::Nobt)),
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
            "b) Child Protection plan"
        } else if open_cin_plan {
            "c) Child in need plan"
        } else if open_assessment {
            "d) Open assessment"
        } else {
            "c) Child in need plan"
        };
        let mut row = common(&child);
        row.extend([
            disabled.clone(),
            day(Some(e.referral_date)),
            e.primary_need.map(primary_need).unwrap_or_default(),
            day(last_seen),
            day(e.closure.as_ref().map(|c| c.0)),
            e.closure.as_ref().map(|c| closure(c.1)).unwrap_or_default(),
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

fn extra(history: &History, council: &CouncilCode, date: NaiveDate) -> Extra {
    use EventData as D;
    let mut x = Extra::default();
    let mut allocations: Vec<(String, String)> = Vec::new();
    for f in effective(history).into_iter().filter(|f| f.on <= date) {
        match f.data {
            // Only the council's own contacts: a child who moved brings none of another's.
            D::ContactRecorded(d) if f.council == Some(council) => x.contacts.push((f.on, d.source)),
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

/// Ofsted's strings for every categorical column (`standards/annex-a-codes.md`).
pub const OFSTED_CODES: &str = include_str!("../../standards/annex-a-codes.md");

/// Our column name and the name Ofsted's codes file gives the same column,
/// for each list's categorical columns.
fn categorical(list: u8) -> &'static [(&'static str, &'static str)] {
    const DISABILITY: (&str, &str) = ("Disability", "Does the Child have a Disability");
    match list {
        1 => &[("Gender", "Gender"), ("Ethnicity", "Ethnicity"), ("Contact Source", "Contact Source")],
        3 => &[
            ("Gender", "Gender"),
            ("Ethnicity", "Ethnicity"),
            ("Referral Source", "Referral Source"),
            ("Referral NFA?", "Referral NFA?"),
        ],
        4 => &[
            ("Gender", "Gender"),
            ("Ethnicity", "Ethnicity"),
            DISABILITY,
            ("Child Seen During Assessment", "Child Seen During Continuous Assessment"),
            (
                "Assessed as Requiring Social Care Support?",
                "Was the child assessed as requiring LA children's social care support",
            ),
        ],
        5 => &[
            ("Gender", "Gender"),
            ("Ethnicity", "Ethnicity"),
            DISABILITY,
            ("ICPC Deemed Unnecessary?", "Was an Initial Child Protection Conference deemed unnecessary?"),
            (
                "ICPC Resulted in a CP Plan?",
                "Did the Initial Child Protection Conference Result in a Child Protection Plan",
            ),
        ],
        6 => &[
            ("Gender", "Gender"),
            ("Ethnicity", "Ethnicity"),
            DISABILITY,
            ("Primary Need Code", "Primary Need Code"),
            ("Reason for Closure", "Reason for Closure"),
            ("Case Status", "Case status"),
        ],
        7 => &[
            ("Gender", "Gender"),
            ("Ethnicity", "Ethnicity"),
            DISABILITY,
            ("Initial Category of Abuse", "Initial Category of Abuse"),
            ("Latest Category of Abuse", "Latest Category of Abuse"),
            ("Was the Child Seen Alone?", "Was the Child Seen Alone?"),
            (
                "Subject to EPO or Police Protection in Last Six Months",
                "Subject to Emergency Protection Order or Protected Under Police Powers in Last Six Months (Y/N)",
            ),
        ],
        _ => &[],
    }
}

/// The strings Ofsted's codes file allows in `column` of `list`.
fn allowed(list: u8, column: &str) -> Vec<String> {
    let heading = format!("## List {list}");
    let Some(section) = OFSTED_CODES.split("\n## ").find(|s| format!("## {s}").starts_with(&heading)) else {
        return Vec::new();
    };
    let marker = format!("- **{column}**:");
    section
        .lines()
        .find(|l| l.starts_with(&marker))
        .map(|l| l[marker.len()..].split('`').skip(1).step_by(2).map(str::to_owned).collect())
        .unwrap_or_default()
}

/// Which list a CSV of ours is, from its header.
pub fn list_of(header: &[String]) -> Option<u8> {
    LISTS
        .into_iter()
        .find(|n| columns(*n).iter().zip(header).all(|(a, b)| *a == b) && columns(*n).len() == header.len())
}

/// A categorical value that is not one of Ofsted's strings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Counted from 1 after the header; 0 for the header itself.
    pub row: usize,
    pub column: String,
    pub detail: String,
    /// A CIN code newer than Ofsted's template ([`NEWER_THAN_OFSTED`]):
    /// written in the template's manner, for the analyst to decide on,
    /// rather than a wrong string.
    pub newer: bool,
}

/// Every categorical value of an Annex A list (its header and rows, as a
/// CSV reader gives them) that is not one of Ofsted's strings.
pub fn check(list: u8, header: &[String], rows: &[Vec<String>]) -> Vec<Finding> {
    let mut out = Vec::new();
    for (ours, theirs) in categorical(list) {
        let Some(at) = header.iter().position(|h| h == ours) else {
            out.push(Finding {
                row: 0,
                column: (*ours).to_owned(),
                detail: "the column is missing".into(),
                newer: false,
            });
            continue;
        };
        let allowed = allowed(list, theirs);
        for (i, row) in rows.iter().enumerate() {
            let value = row.get(at).map(String::as_str).unwrap_or_default();
            if value.is_empty() || allowed.iter().any(|a| a == value) {
                continue;
            }
            let newer = NEWER_THAN_OFSTED.contains(&value);
            let detail = if newer {
                format!("{value:?} is a CIN code newer than Ofsted's template, which has no string for it")
            } else {
                format!("{value:?} is not one of Ofsted's strings for {theirs:?}")
            };
            out.push(Finding { row: i + 1, column: (*ours).to_owned(), detail, newer });
        }
    }
    out
}

#[cfg(test)]
mod ofsted {
    use super::*;

    #[test]
    fn every_categorical_column_has_ofsteds_strings_and_our_writers_use_them() {
        for list in LISTS {
            for (ours, theirs) in categorical(list) {
                assert!(columns(list).contains(ours), "list {list} has {ours}");
                assert!(!allowed(list, theirs).is_empty(), "list {list}: Ofsted's codes for {theirs}");
            }
        }
        for e in Ethnicity::ALL {
            assert!(allowed(1, "Ethnicity").contains(&ethnicity(*e)), "{e:?}");
        }
        for s in ReferralSource::ALL {
            let v = source(*s);
            assert!(allowed(3, "Referral Source").contains(&v) || NEWER_THAN_OFSTED.contains(&v.as_str()), "{v}");
        }
        for n in PrimaryNeed::ALL {
            assert!(allowed(6, "Primary Need Code").contains(&primary_need(*n)), "{n:?}");
        }
        for r in ClosureReason::ALL {
            let v = closure(*r);
            assert!(allowed(6, "Reason for Closure").contains(&v) || NEWER_THAN_OFSTED.contains(&v.as_str()), "{v}");
        }
        for c in CategoryOfAbuse::ALL {
            assert!(allowed(7, "Initial Category of Abuse").contains(&category(*c)));
        }
        let header: Vec<String> = columns(6).iter().map(|c| (*c).to_owned()).collect();
        assert_eq!(list_of(&header), Some(6));
        let mut row = vec![String::new(); header.len()];
        row[header.iter().position(|h| h == "Primary Need Code").unwrap_or(0)] = "N1".into();
        let found = check(6, &header, &[row]);
        assert_eq!(found.len(), 1);
        assert!(found[0].detail.contains("not one of Ofsted's strings") && !found[0].newer, "{found:?}");
    }
}
