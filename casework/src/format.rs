//! The chronology as CSV and Markdown, with the columns courts expect of a
//! care-proceedings chronology (`serial`, `date`, `event`,
//! `source_reference`, ISO dates), the entry's lasting `reference` and its
//! `narrative` (what was written, opened for the reader), and then the
//! backbone's own.

use crate::chronology::{Entry, Status};
use crate::narrative::{self, Agencies, Narratives};
use crate::plo::Plos;

/// What a reader of the full record is shown beside the stored lines: the
/// narrative and the PLO columns.
#[derive(Debug, Clone, Copy)]
pub struct Extras<'a> {
    pub narratives: &'a Narratives,
    pub plo: &'a Plos,
    /// The publishers as people name them.
    pub agencies: &'a Agencies,
}
use chrono::{DateTime, SecondsFormat, Utc};

/// How a chronology is answered (`format=`): JSON, CSV or Markdown, and
/// for an export also PDF.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Csv,
    Markdown,
    Pdf,
}

impl Format {
    /// The `format` parameter's value, if it is one.
    pub fn from_param(text: &str) -> Option<Self> {
        match text {
            "json" => Some(Self::Json),
            "csv" => Some(Self::Csv),
            "md" => Some(Self::Markdown),
            "pdf" => Some(Self::Pdf),
            _ => None,
        }
    }

    /// As a certificate names it.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::Csv => "csv",
            Self::Markdown => "md",
            Self::Pdf => "pdf",
        }
    }
}

const COLUMNS: [&str; 16] = [
    "serial",
    "date",
    "event",
    "source_reference",
    "agency",
    "reference",
    "narrative",
    "significance",
    "outcome",
    "links",
    "type",
    "occurred_at",
    "recorded_at",
    "status",
    "corrected_by",
    "retracted_by",
];

fn row(serial: usize, e: &Entry, extras: &Extras<'_>) -> [String; 16] {
    let iso = |t: &DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::AutoSi, true);
    let plo = extras.plo.get(&e.sequence).cloned().unwrap_or_default();
    let mut event = match (e.status, &plo.corrected_to) {
        (Status::Corrected, Some(now)) => format!("{} [corrected by {}: {}]", e.summary, now.reference, now.says),
        (Status::Corrected, None) => format!("{} [corrected]", e.summary),
        (Status::Retracted, _) => format!("{} [retracted]", e.summary),
        (Status::Current, _) => e.summary.clone(),
    };
    if let Some(was) = &plo.changes {
        event.push_str(&format!(" ({} said: {})", was.reference, was.says));
    }
    [
        serial.to_string(),
        events::calendar::business_date(&e.occurred_at).to_string(),
        event,
        format!("{} {}", e.source.as_str(), e.id.as_str()),
        {
            let agency = extras
                .agencies
                .get(e.source.as_str())
                .map_or_else(|| e.source.as_str().to_owned(), narrative::Agency::line);
            match &plo.author {
                Some(role) => format!("{agency}; author: {role}"),
                None => agency,
            }
        },
        narrative::reference(e),
        narrative::of(extras.narratives, e).map(narrative::Narrative::line).unwrap_or_default(),
        if plo.significant { "significant".to_owned() } else { String::new() },
        plo.outcome.clone().unwrap_or_default(),
        plo.links_line(),
        e.event_type.name().to_owned(),
        iso(&e.occurred_at),
        iso(&e.recorded_at),
        e.status.to_string(),
        e.corrected_by.as_ref().map(|id| id.as_str().to_owned()).unwrap_or_default(),
        e.retracted_by.as_ref().map(|id| id.as_str().to_owned()).unwrap_or_default(),
    ]
}

/// `first_serial` numbers the first row, so pages continue each other.
pub fn csv(entries: &[Entry], first_serial: usize, extras: &Extras<'_>) -> String {
    let mut out = crate::csv::line(&COLUMNS);
    for (i, e) in entries.iter().enumerate() {
        out.push_str(&crate::csv::line(&row(first_serial + i, e, extras)));
    }
    out
}

/// The whole full record as a table, for a certified export (`crate::certified`).
pub fn table(
    child: &uuid::Uuid,
    as_of: &DateTime<Utc>,
    entries: &[Entry],
    extras: &Extras<'_>,
) -> crate::certified::Table {
    crate::certified::Table {
        title: format!("Chronology of child {child}"),
        preamble: vec![format!(
            "As recorded by {}. Dates are business dates (Europe/London).",
            as_of.to_rfc3339_opts(SecondsFormat::Secs, true)
        )],
        columns: COLUMNS.to_vec(),
        rows: entries
            .iter()
            .enumerate()
            .map(|(i, e)| crate::certified::Row {
                sequence: e.sequence.max(0) as u64,
                cells: row(i + 1, e, extras).to_vec(),
            })
            .collect(),
    }
}

pub(crate) fn md_cell(value: &str) -> String {
    value.replace('\\', "\\\\").replace('|', "\\|").replace(['\n', '\r'], " ")
}

pub fn markdown(
    child: &uuid::Uuid,
    as_of: &DateTime<Utc>,
    entries: &[Entry],
    first_serial: usize,
    extras: &Extras<'_>,
) -> String {
    let mut out = format!(
        "# Chronology of child {child}\n\nAs recorded by {}. Dates are business dates (Europe/London).\n\n",
        as_of.to_rfc3339_opts(SecondsFormat::Secs, true)
    );
    out.push_str(&format!("| {} |\n", COLUMNS.join(" | ")));
    out.push_str(&format!("|{}\n", "---|".repeat(COLUMNS.len())));
    for (i, e) in entries.iter().enumerate() {
        let cells: Vec<String> = row(first_serial + i, e, extras).iter().map(|c| md_cell(c)).collect();
        out.push_str(&format!("| {} |\n", cells.join(" | ")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_cells_cannot_break_the_table() {
        assert_eq!(md_cell("a|b\nc"), "a\\|b c");
    }
}
