//! The anonymised chronology, for publication (CONTRACT.md "Reads",
//! `/chronology/export`). Pure: the child's stored events (personal fields
//! opened, or `null` after erasure), its chronology entries and the roles
//! of workers go in; a document with no name, identifier or personal
//! detail comes out.
//!
//! - The child is "Child A"; related people (`relationship.recorded`) are
//!   named by role ("Mother", "Sibling 1"); workers by their role
//!   ("Social worker 1"); anyone else who saw the child is "Professional n".
//! - Case-system ids become "Referral 1", "Plan 2" and so on; the local
//!   child id, NHS number, UPNs, addresses and date of birth are removed.
//! - Free text (`summary`, `reason`, `purpose`) is kept, with every known
//!   name, identifier and address of anyone in the records replaced by the
//!   label above (or "[removed]"), matched as whole words, ignoring case.
//!   Replacements go longest first, so "Jane Smith" becomes "Mother" before
//!   "Jane" or "Smith" alone are looked for.

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use projections::chronology::{Entry, Status};
use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::HashMap;

/// The published form.
#[derive(Debug, Clone, Serialize)]
pub struct Export {
    pub title: String,
    pub child: String,
    pub produced_at: DateTime<Utc>,
    /// The event stream position the read models had reached: the export
    /// covers everything recorded up to there.
    pub stream_position: u64,
    pub people: Vec<String>,
    pub entries: Vec<ExportEntry>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ExportEntry {
    pub serial: usize,
    pub date: NaiveDate,
    /// Whole years of age on that date, where the date of birth was recorded.
    pub age: Option<u32>,
    pub agency: String,
    pub event: String,
    pub summary: String,
    /// The free text recorded with the event, redacted.
    pub detail: Option<String>,
    pub status: Status,
    pub corrected_by: Option<usize>,
    pub retracted_by: Option<usize>,
}

/// What the export is made from.
#[derive(Debug)]
pub struct Sources<'a> {
    pub child: uuid::Uuid,
    /// Stored events of the child, stream order, personal fields opened (or null).
    pub documents: &'a [Value],
    /// The chronology as it stands, business order.
    pub entries: &'a [Entry],
    /// Worker id to role (worker.joined / worker.changed).
    pub worker_roles: &'a HashMap<String, String>,
    pub produced_at: DateTime<Utc>,
    pub stream_position: u64,
}

/// The text fields that are personal data (CONTRACT.md "Personal data").
const FREE_TEXT: [&str; 3] = ["summary", "reason", "purpose"];

/// Labels for ids, numbered in order of first appearance within each kind.
#[derive(Default)]
struct Labels {
    by_value: HashMap<String, String>,
    counts: HashMap<String, usize>,
}

impl Labels {
    fn label(&mut self, value: &str, kind: &str, numbered: bool) -> String {
        if let Some(l) = self.by_value.get(value) {
            return l.clone();
        }
        let n = self.counts.entry(kind.to_owned()).or_default();
        *n += 1;
        let label = if numbered { format!("{kind} {n}") } else { kind.to_owned() };
        self.by_value.insert(value.to_owned(), label.clone());
        label
    }
}

fn role_label(role: &str) -> (&'static str, bool) {
    match role {
        "mother" => ("Mother", false),
        "father" => ("Father", false),
        "step_parent" => ("Step-parent", true),
        "sibling" => ("Sibling", true),
        "grandparent" => ("Grandparent", true),
        "carer" => ("Carer", true),
        "household_member" => ("Household member", true),
        _ => ("Other person", true),
    }
}

fn worker_label(role: Option<&str>) -> &'static str {
    match role {
        Some("social_worker") => "Social worker",
        Some("senior_social_worker") => "Senior social worker",
        Some("team_manager") => "Team manager",
        Some("family_support_worker") => "Family support worker",
        Some(_) => "Practitioner",
        None => "Professional",
    }
}

fn id_kind(key: &str) -> Option<&'static str> {
    Some(match key {
        "referral_id" => "Referral",
        "assessment_id" => "Assessment",
        "discussion_id" => "Strategy discussion",
        "s47_id" => "Section 47 enquiry",
        "conference_id" => "Conference",
        "plan_id" => "Plan",
        "proceedings_id" => "Proceedings",
        "concern_id" => "Concern",
        "contact_id" => "Contact",
        "review_id" => "Review",
        "team_id" => "Team",
        _ => return None,
    })
}

/// The event's data, and the data a correction carries.
fn data_objects(doc: &Value) -> Vec<&Map<String, Value>> {
    let mut out = Vec::new();
    if let Some(data) = doc.get("data").and_then(Value::as_object) {
        out.push(data);
        if let Some(inner) = data.get("data").and_then(Value::as_object) {
            out.push(inner);
        }
    }
    out
}

/// Everything that must not appear, and what takes its place.
fn replacements(s: &Sources<'_>) -> (Vec<(String, String)>, Option<NaiveDate>) {
    let mut labels = Labels::default();
    let mut out: Vec<(String, String)> = Vec::new();
    let mut birth = None;
    let push_person = |out: &mut Vec<(String, String)>, person: &Map<String, Value>, label: &str| {
        let text = |k: &str| person.get(k).and_then(Value::as_str).map(str::trim).filter(|t| !t.is_empty());
        let given = text("given_name");
        let family = text("family_name");
        if let (Some(g), Some(f)) = (given, family) {
            out.push((format!("{g} {f}"), label.to_owned()));
            out.push((format!("{f}, {g}"), label.to_owned()));
        }
        for name in [given, family].into_iter().flatten() {
            out.push((name.to_owned(), label.to_owned()));
        }
        for key in ["nhs_number", "upn", "former_upn"] {
            if let Some(v) = text(key) {
                out.push((v.to_owned(), "[removed]".into()));
                if key == "nhs_number" && v.len() == 10 {
                    out.push((format!("{} {} {}", &v[..3], &v[3..6], &v[6..]), "[removed]".into()));
                }
            }
        }
        if let Some(address) = text("address") {
            out.push((address.to_owned(), "[address]".into()));
            for part in address.split([',', '\n']).map(str::trim).filter(|p| p.chars().count() >= 3) {
                out.push((part.to_owned(), "[address]".into()));
            }
        }
    };
    out.push((s.child.to_string(), "Child A".into()));
    for doc in s.documents {
        for data in data_objects(doc) {
            let person = data.get("person").and_then(Value::as_object);
            // A relationship (or a correction of one) names its person; any other person is the child.
            match data.get("person_id") {
                Some(_) => {
                    let id = data.get("person_id").and_then(Value::as_str).unwrap_or_default();
                    let role = data.get("role").and_then(Value::as_str).unwrap_or("other");
                    let (kind, numbered) = role_label(role);
                    let label = labels.label(id, kind, numbered);
                    out.push((id.to_owned(), label.clone()));
                    if let Some(p) = person {
                        push_person(&mut out, p, &label);
                    }
                }
                _ => {
                    if let Some(p) = person {
                        push_person(&mut out, p, "Child A");
                    }
                }
            }
            if let Some(local) = data.get("la_child_id").and_then(Value::as_str) {
                out.push((local.to_owned(), "[removed]".into()));
            }
            if let Some(born) = data.get("birth_date").and_then(Value::as_str) {
                out.push((born.to_owned(), "[date of birth]".into()));
                birth = birth.or_else(|| born.parse().ok());
            }
            for key in ["worker_id", "seen_by"] {
                if let Some(id) = data.get(key).and_then(Value::as_str) {
                    let role = s.worker_roles.get(id).map(String::as_str);
                    let label = labels.label(id, worker_label(role), true);
                    out.push((id.to_owned(), label));
                }
            }
            for (key, value) in data {
                if let (Some(kind), Some(id)) = (id_kind(key), value.as_str()) {
                    let label = labels.label(&format!("{kind}\n{id}"), kind, true);
                    out.push((id.to_owned(), label));
                }
            }
        }
    }
    // Longest first, so a full name is replaced before its parts.
    out.retain(|(needle, _)| !needle.is_empty());
    out.sort_by(|a, b| b.0.chars().count().cmp(&a.0.chars().count()).then_with(|| a.0.cmp(&b.0)));
    out.dedup_by(|a, b| a.0 == b.0);
    (out, birth)
}

/// Replaces every whole-word, case-insensitive occurrence of each needle.
pub fn redact(text: &str, replacements: &[(String, String)]) -> String {
    let mut out = text.to_owned();
    for (needle, label) in replacements {
        out = replace_words(&out, needle, label);
    }
    out
}

fn replace_words(text: &str, needle: &str, label: &str) -> String {
    let lower_needle: Vec<char> = needle.chars().flat_map(char::to_lowercase).collect();
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let mut copied_to = 0;
    let is_word = |c: char| c.is_alphanumeric();
    while i < chars.len() {
        let boundary_before = i == 0 || !is_word(chars[i - 1].1) || !is_word(chars[i].1);
        if boundary_before && let Some(end) = match_at(&chars, i, &lower_needle) {
            let boundary_after = end == chars.len() || !is_word(chars[end].1) || !is_word(chars[end - 1].1);
            if boundary_after {
                out.push_str(&text[copied_to..chars[i].0]);
                drop_repeated_kind(&mut out, label);
                out.push_str(label);
                copied_to = if end == chars.len() { text.len() } else { chars[end].0 };
                i = end;
                continue;
            }
        }
        i += 1;
    }
    out.push_str(&text[copied_to..]);
    out
}

/// Summaries name an id after its kind ("Referral R-4411 from police"); its
/// numbered label already says the kind ("Referral 1"), so the word before
/// it goes, rather than read "Referral Referral 1".
fn drop_repeated_kind(out: &mut String, label: &str) {
    let Some((kind, number)) = label.rsplit_once(' ') else { return };
    if number.is_empty() || !number.chars().all(|c| c.is_ascii_digit()) {
        return;
    }
    let before = format!("{kind} ");
    let Some(start) = out.len().checked_sub(before.len()) else { return };
    let word_starts = start == 0 || out[..start].chars().next_back().is_some_and(|c| !c.is_alphanumeric());
    if out.is_char_boundary(start) && word_starts && out[start..].eq_ignore_ascii_case(&before) {
        out.truncate(start);
    }
}

/// Where a case-insensitive match of `needle` starting at `start` ends.
fn match_at(chars: &[(usize, char)], start: usize, needle: &[char]) -> Option<usize> {
    let mut n = 0;
    let mut i = start;
    while n < needle.len() {
        let (_, c) = chars.get(i)?;
        for lower in c.to_lowercase() {
            if needle.get(n) != Some(&lower) {
                return None;
            }
            n += 1;
        }
        i += 1;
    }
    Some(i)
}

fn age_on(birth: NaiveDate, day: NaiveDate) -> Option<u32> {
    day.years_since(birth)
}

/// Builds the anonymised chronology.
pub fn anonymise(s: &Sources<'_>) -> Export {
    let (replacements, birth) = replacements(s);
    let by_id: HashMap<(&str, &str), &Value> =
        s.documents.iter().filter_map(|d| Some(((d.get("source")?.as_str()?, d.get("id")?.as_str()?), d))).collect();
    let serial_of: HashMap<&str, usize> = s.entries.iter().enumerate().map(|(i, e)| (e.id.as_str(), i + 1)).collect();
    let entries = s
        .entries
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let date = events::calendar::business_date(&e.occurred_at);
            let doc = by_id.get(&(e.source.as_str(), e.id.as_str()));
            let mut texts = Vec::new();
            if let Some(doc) = doc {
                for data in data_objects(doc) {
                    for key in FREE_TEXT {
                        if let Some(t) = data.get(key).and_then(Value::as_str) {
                            texts.push(redact(t, &replacements));
                        }
                    }
                }
            }
            ExportEntry {
                serial: i + 1,
                date,
                age: birth.and_then(|b| age_on(b, date)),
                agency: e.source.as_str().to_owned(),
                event: e.event_type.name().to_owned(),
                summary: redact(&e.summary, &replacements),
                detail: (!texts.is_empty()).then(|| texts.join(" / ")),
                status: e.status,
                corrected_by: e.corrected_by.as_deref().and_then(|id| serial_of.get(id).copied()),
                retracted_by: e.retracted_by.as_deref().and_then(|id| serial_of.get(id).copied()),
            }
        })
        .collect();
    let mut people: Vec<String> = vec!["Child A".to_owned()];
    for (_, label) in &replacements {
        if !label.starts_with('[') && !people.contains(label) && !label.contains('\n') {
            people.push(label.clone());
        }
    }
    Export {
        title: "Chronology of Child A".into(),
        child: "Child A".into(),
        produced_at: s.produced_at,
        stream_position: s.stream_position,
        people,
        entries,
    }
}

const COLUMNS: [&str; 10] =
    ["serial", "date", "age", "agency", "event", "summary", "detail", "status", "corrected_by", "retracted_by"];

fn cells(e: &ExportEntry) -> [String; 10] {
    let opt = |n: Option<usize>| n.map(|n| n.to_string()).unwrap_or_default();
    [
        e.serial.to_string(),
        e.date.to_string(),
        e.age.map(|a| a.to_string()).unwrap_or_default(),
        e.agency.clone(),
        e.event.clone(),
        e.summary.clone(),
        e.detail.clone().unwrap_or_default(),
        e.status.to_string(),
        opt(e.corrected_by),
        opt(e.retracted_by),
    ]
}

fn produced(x: &Export) -> String {
    format!(
        "Produced {} from the record up to event stream position {}. Names, identifiers and personal details are removed.",
        x.produced_at.to_rfc3339_opts(SecondsFormat::Secs, true),
        x.stream_position
    )
}

pub fn csv(x: &Export) -> String {
    let mut out = format!("# {}\r\n", casework::csv::field(&produced(x)));
    out.push_str(&casework::csv::line(&COLUMNS));
    for e in &x.entries {
        out.push_str(&casework::csv::line(&cells(e)));
    }
    out
}

pub fn markdown(x: &Export) -> String {
    let mut out = format!("# {}\n\n{}\n\nPeople: {}.\n\n", x.title, produced(x), x.people.join(", "));
    out.push_str(&format!("| {} |\n|{}\n", COLUMNS.join(" | "), "---|".repeat(COLUMNS.len())));
    for e in &x.entries {
        let row: Vec<String> = cells(e).iter().map(|c| crate::format::md_cell(c)).collect();
        out.push_str(&format!("| {} |\n", row.join(" | ")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_replaced_as_whole_words_ignoring_case() {
        let r = vec![("Jane Smith".to_owned(), "Mother".to_owned()), ("Jane".to_owned(), "Mother".to_owned())];
        assert_eq!(
            redact("JANE smith said jane was fine; Janet was not", &r),
            "Mother said Mother was fine; Janet was not"
        );
        let r = vec![("Zoë".to_owned(), "Child A".to_owned())];
        assert_eq!(redact("zoë and ZOË, Zoëy", &r), "Child A and Child A, Zoëy");
    }

    #[test]
    fn an_id_after_its_kind_is_not_named_twice() {
        let r =
            vec![("R-4411".to_owned(), "Referral 1".to_owned()), ("S1".to_owned(), "Section 47 enquiry 1".to_owned())];
        assert_eq!(
            redact("Section 47 enquiry S1 started (referral R-4411); see R-4411. Preferral R-4411", &r),
            "Section 47 enquiry 1 started (Referral 1); see Referral 1. Preferral Referral 1"
        );
        // Unnumbered labels are left as they are.
        let r = vec![("Jane".to_owned(), "Mother".to_owned())];
        assert_eq!(redact("Mother Jane", &r), "Mother Mother");
    }
}
