//! The chronology as CSV and Markdown, with the columns courts expect of a
//! care-proceedings chronology (`serial`, `date`, `event`,
//! `source_reference`, ISO dates), the entry's lasting `reference` and its
//! `narrative` (what was written, opened for the reader), and then the
//! backbone's own.

use crate::chronology::{Entry, Status};
use crate::narrative::{self, Narratives};
use chrono::{DateTime, SecondsFormat, Utc};

/// How a chronology is answered (`format=`): JSON, CSV or Markdown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Csv,
    Markdown,
}

impl Format {
    /// The `format` parameter's value, if it is one.
    pub fn from_param(text: &str) -> Option<Self> {
        match text {
            "json" => Some(Self::Json),
            "csv" => Some(Self::Csv),
            "md" => Some(Self::Markdown),
            _ => None,
        }
    }
}

const COLUMNS: [&str; 12] = [
    "serial",
    "date",
    "event",
    "source_reference",
    "reference",
    "narrative",
    "type",
    "occurred_at",
    "recorded_at",
    "status",
    "corrected_by",
    "retracted_by",
];

fn row(serial: usize, e: &Entry, narratives: &Narratives) -> [String; 12] {
    let iso = |t: &DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::AutoSi, true);
    let event = match e.status {
        Status::Corrected => format!("{} [corrected]", e.summary),
        Status::Retracted => format!("{} [retracted]", e.summary),
        Status::Current => e.summary.clone(),
    };
    [
        serial.to_string(),
        events::calendar::business_date(&e.occurred_at).to_string(),
        event,
        format!("{} {}", e.source.as_str(), e.id.as_str()),
        narrative::reference(e),
        narrative::of(narratives, e).map(narrative::Narrative::line).unwrap_or_default(),
        e.event_type.name().to_owned(),
        iso(&e.occurred_at),
        iso(&e.recorded_at),
        e.status.to_string(),
        e.corrected_by.as_ref().map(|id| id.as_str().to_owned()).unwrap_or_default(),
        e.retracted_by.as_ref().map(|id| id.as_str().to_owned()).unwrap_or_default(),
    ]
}

/// `first_serial` numbers the first row, so pages continue each other.
pub fn csv(entries: &[Entry], first_serial: usize, narratives: &Narratives) -> String {
    let mut out = crate::csv::line(&COLUMNS);
    for (i, e) in entries.iter().enumerate() {
        out.push_str(&crate::csv::line(&row(first_serial + i, e, narratives)));
    }
    out
}

pub(crate) fn md_cell(value: &str) -> String {
    value.replace('\\', "\\\\").replace('|', "\\|").replace(['\n', '\r'], " ")
}

pub fn markdown(
    child: &uuid::Uuid,
    as_of: &DateTime<Utc>,
    entries: &[Entry],
    first_serial: usize,
    narratives: &Narratives,
) -> String {
    let mut out = format!(
        "# Chronology of child {child}\n\nAs recorded by {}. Dates are business dates (Europe/London).\n\n",
        as_of.to_rfc3339_opts(SecondsFormat::Secs, true)
    );
    out.push_str(&format!("| {} |\n", COLUMNS.join(" | ")));
    out.push_str(&format!("|{}\n", "---|".repeat(COLUMNS.len())));
    for (i, e) in entries.iter().enumerate() {
        let cells: Vec<String> = row(first_serial + i, e, narratives).iter().map(|c| md_cell(c)).collect();
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
