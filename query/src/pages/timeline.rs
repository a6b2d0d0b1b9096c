//! A child's chronology as swimlanes: one lane per agency along business
//! time, so that what each agency knew, and when the others knew it, sits
//! side by side. Corrections and retractions are drawn as links from the
//! entry they amend. Below the lanes, the same entries as a list whose
//! every item opens to its detail: the lanes are for the eye, the list for
//! the keyboard and the screen reader, and each marker leads to its item.
//! Pure: items in, markup out.

use super::layout::{london, london_date};
use chrono::{DateTime, Duration, Utc};
use maud::{Markup, html};
use projections::chronology::Status;
use std::collections::HashMap;

/// One entry of the timeline.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    /// 1-based position in business order: the entry's anchor and its name in links.
    pub serial: usize,
    /// The entry's lasting reference (`E` and its sequence), where shown.
    pub reference: Option<String>,
    /// Business time (when it happened).
    pub at: DateTime<Utc>,
    /// Only dates are published in the anonymised view.
    pub date_only: bool,
    /// When it was recorded, where the view shows it.
    pub recorded_at: Option<DateTime<Utc>>,
    /// The agency: the lane.
    pub lane: String,
    /// The source as people name it (agency, kind, author's role), where known.
    pub source: Option<String>,
    /// Significant in the Public Law Outline's sense.
    pub significant: bool,
    pub kind: String,
    pub summary: String,
    pub detail: Option<String>,
    pub status: Status,
    pub corrected_by: Option<usize>,
    pub retracted_by: Option<usize>,
}

const WIDTH: f64 = 1000.0;
const LABEL: f64 = 170.0;
const LANE: f64 = 54.0;
const AXIS: f64 = 34.0;

fn when(item: &Item) -> String {
    if item.date_only { london_date(&item.at) } else { london(&item.at) }
}

fn status_words(item: &Item, serial_of_amended: &HashMap<usize, (usize, &'static str)>) -> String {
    match (item.status, item.corrected_by, item.retracted_by) {
        (Status::Retracted, _, Some(by)) => format!("retracted by entry {by}"),
        (Status::Corrected, Some(by), _) => format!("corrected by entry {by}"),
        _ => match serial_of_amended.get(&item.serial) {
            Some((amended, verb)) => format!("{verb} entry {amended}"),
            None => String::new(),
        },
    }
}

/// The lanes and the list.
pub fn render(items: &[Item]) -> Markup {
    // Which entry each correction or retraction amends (the inverse of corrected_by / retracted_by).
    let mut amends: HashMap<usize, (usize, &'static str)> = HashMap::new();
    for item in items {
        if let Some(by) = item.corrected_by {
            amends.insert(by, (item.serial, "corrects"));
        }
        if let Some(by) = item.retracted_by {
            amends.insert(by, (item.serial, "retracts"));
        }
    }
    let mut lanes: Vec<&str> = Vec::new();
    for item in items {
        if !lanes.contains(&item.lane.as_str()) {
            lanes.push(&item.lane);
        }
    }
    let (Some(first), Some(last)) = (items.iter().map(|i| i.at).min(), items.iter().map(|i| i.at).max()) else {
        return html! { p class="empty" { "Nothing had been recorded about this child by then." } };
    };
    // A day either side, so the first and last markers are not on the edge.
    let (start, end) = (first - Duration::days(1), last + Duration::days(1));
    let span = (end - start).num_seconds().max(1) as f64;
    let x = |t: DateTime<Utc>| LABEL + (WIDTH - LABEL - 20.0) * ((t - start).num_seconds() as f64 / span);
    let lane_of: HashMap<&str, usize> = lanes.iter().enumerate().map(|(i, l)| (*l, i)).collect();
    // Entries close together in one lane are staggered so each stays visible and clickable.
    let mut last_x: HashMap<usize, (f64, usize)> = HashMap::new();
    let mut position: HashMap<usize, (f64, f64)> = HashMap::new();
    for item in items {
        let lane = lane_of.get(item.lane.as_str()).copied().unwrap_or(0);
        let px = x(item.at);
        let step = match last_x.get(&lane) {
            Some((prev, step)) if px - prev < 12.0 => (step + 1) % 3,
            _ => 0,
        };
        last_x.insert(lane, (px, step));
        let py = AXIS + LANE * lane as f64 + LANE / 2.0 + (step as f64 - 1.0) * 12.0 * f64::from(step != 0);
        position.insert(item.serial, (px, py));
    }
    // An entry outside the dates shown is named, not linked.
    let shown: std::collections::HashSet<usize> = items.iter().map(|i| i.serial).collect();
    let entry_link = |serial: usize| {
        html! {
            @if shown.contains(&serial) { a href=(format!("#entry-{serial}")) { "entry " (serial) } }
            @else { "entry " (serial) " (outside the dates shown)" }
        }
    };
    let height = AXIS + LANE * lanes.len() as f64 + 8.0;
    let ticks: Vec<DateTime<Utc>> =
        (0..=4).map(|i| start + Duration::seconds((span * i as f64 / 4.0) as i64)).collect();
    let link = |from: usize, to: usize| -> Option<String> {
        let ((x1, y1), (x2, y2)) = (position.get(&from)?, position.get(&to)?);
        let lift = (y1.min(*y2) - 22.0).max(AXIS - 6.0);
        Some(format!("M{x1:.1},{y1:.1} C{x1:.1},{lift:.1} {x2:.1},{lift:.1} {x2:.1},{y2:.1}"))
    };
    html! {
        figure class="timeline" {
            figcaption class="legend" {
                span class="key current" { "current" }
                span class="key corrected" { "corrected (hollow), linked to its correction" }
                span class="key retracted" { "retracted (crossed), linked to its retraction" }
            }
            div class="lanes-scroll" {
                svg class="lanes" viewBox=(format!("0 0 {WIDTH} {height:.0}")) xmlns="http://www.w3.org/2000/svg"
                    role="group" aria-label="Entries by agency along business time; each marker opens its entry below" {
                    @for (i, lane) in lanes.iter().enumerate() {
                        rect class=(if i % 2 == 0 { "lane even" } else { "lane odd" }) x="0" y=(AXIS + LANE * i as f64)
                            width=(WIDTH) height=(LANE) {}
                        text class="lane-label" x="8" y=(format!("{:.1}", AXIS + LANE * i as f64 + LANE / 2.0 + 4.0)) { (lane) }
                    }
                    @for (i, t) in ticks.iter().enumerate() {
                        line class="tick" x1=(format!("{:.1}", x(*t))) x2=(format!("{:.1}", x(*t))) y1=(AXIS - 6.0) y2=(height - 8.0) {}
                        // The last date ends at its tick, so it is not cut off at the edge.
                        text class="axis" x=(format!("{:.1}", x(*t))) y=(AXIS - 12.0)
                            text-anchor=(if i + 1 == ticks.len() { "end" } else { "middle" }) { (london_date(t)) }
                    }
                    @for item in items {
                        @if let Some(by) = item.corrected_by {
                            @if let Some(d) = link(item.serial, by) { path class="link corrected" d=(d) {} }
                        }
                        @if let Some(by) = item.retracted_by {
                            @if let Some(d) = link(item.serial, by) { path class="link retracted" d=(d) {} }
                        }
                    }
                    @for item in items {
                        @if let Some((px, py)) = position.get(&item.serial) {
                            a class=(format!("marker {}", item.status)) href=(format!("#entry-{}", item.serial))
                                data-serial=(item.serial)
                                aria-label=(format!("Entry {}: {}, {}, {}", item.serial, when(item), item.lane, item.summary)) {
                                circle cx=(format!("{px:.1}")) cy=(format!("{py:.1}")) r="7" {}
                                @if item.status == Status::Retracted {
                                    path class="cross" d=(format!("M{:.1},{:.1} l10,10 m0,-10 l-10,10", px - 5.0, py - 5.0)) {}
                                }
                                title { "Entry " (item.serial) ": " (item.summary) }
                            }
                        }
                    }
                }
            }
        }
        h2 id="entries-heading" { "Entries" }
        ol class="entries" aria-labelledby="entries-heading" {
            @for item in items {
                li id=(format!("entry-{}", item.serial)) class=(format!("entry {}", item.status)) {
                    // The lasting reference is an anchor too: alerts link to the entry that raised them.
                    details id=[item.reference.as_deref()] {
                        summary {
                            span class="serial" { (item.serial) }
                            span class="when" { (when(item)) }
                            span class="agency" { (item.lane) }
                            span class="what" { (item.summary) }
                            @let words = status_words(item, &amends);
                            @if !words.is_empty() { span class=(format!("badge {}", item.status)) { (words) } }
                            @if item.significant { span class="badge significant" { "significant" } }
                        }
                        dl {
                            @if let Some(r) = &item.reference { dt { "Reference" } dd { (r) } }
                            dt { "Event" } dd { (item.kind) }
                            dt { "Happened" } dd { (when(item)) }
                            @if let Some(r) = &item.recorded_at { dt { "Recorded" } dd { (london(r)) } }
                            dt { "Agency" } dd { (item.source.as_deref().unwrap_or(&item.lane)) }
                            @if item.significant { dt { "Significance" } dd { "significant" } }
                            dt { "Status" } dd { (item.status) }
                            @if let Some(by) = item.corrected_by { dt { "Corrected by" } dd { (entry_link(by)) } }
                            @if let Some(by) = item.retracted_by { dt { "Retracted by" } dd { (entry_link(by)) } }
                            @if let Some((amended, verb)) = amends.get(&item.serial) {
                                dt { (if *verb == "corrects" { "Corrects" } else { "Retracts" }) }
                                dd { (entry_link(*amended)) }
                            }
                            @if let Some(detail) = &item.detail { dt { "Detail" } dd class="detail" { (detail) } }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(serial: usize, day: u32, lane: &str, status: Status) -> Item {
        Item {
            serial,
            reference: None,
            source: None,
            significant: false,
            at: DateTime::parse_from_rfc3339(&format!("2025-01-{day:02}T10:00:00Z"))
                .map(|t| t.to_utc())
                .unwrap_or_default(),
            date_only: false,
            recorded_at: None,
            lane: lane.into(),
            kind: "child.seen".into(),
            summary: format!("entry {serial} <b>"),
            detail: None,
            status,
            corrected_by: None,
            retracted_by: None,
        }
    }

    #[test]
    fn one_lane_per_agency_and_corrections_are_linked_both_ways() {
        let mut seen = item(1, 3, "met-police", Status::Corrected);
        seen.corrected_by = Some(3);
        let items = vec![seen, item(2, 4, "haringey-csc", Status::Current), item(3, 5, "met-police", Status::Current)];
        let html = render(&items).into_string();
        assert_eq!(html.matches(r#"class="lane-label""#).count(), 2);
        assert_eq!(html.matches(r#"class="link corrected""#).count(), 1);
        assert!(html.contains("corrected by entry 3"), "{html}");
        assert!(html.contains("corrects entry 1"), "{html}");
        assert!(html.contains(r##"href="#entry-3""##));
        assert!(!html.contains("<b>"), "summaries are escaped");
    }

    #[test]
    fn a_retraction_is_crossed_and_linked() {
        let mut concern = item(1, 3, "met-police", Status::Retracted);
        concern.retracted_by = Some(2);
        let html = render(&[concern, item(2, 9, "met-police", Status::Current)]).into_string();
        assert_eq!(html.matches(r#"class="link retracted""#).count(), 1, "{html}");
        assert_eq!(html.matches(r#"class="cross""#).count(), 1);
        assert!(html.contains("retracted by entry 2") && html.contains("retracts entry 1"), "{html}");
    }

    #[test]
    fn an_amendment_outside_the_dates_shown_is_named_not_linked() {
        let mut seen = item(1, 3, "met-police", Status::Corrected);
        seen.corrected_by = Some(7);
        let html = render(&[seen]).into_string();
        assert!(html.contains("entry 7 (outside the dates shown)"), "{html}");
        assert!(!html.contains(r##"href="#entry-7""##));
    }

    #[test]
    fn an_empty_history_says_so() {
        assert!(render(&[]).into_string().contains("Nothing had been recorded"));
    }
}
