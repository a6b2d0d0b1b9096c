//! Trend charts, drawn on the server as SVG: a handful of points per
//! indicator needs no chart library, loads with the page, and prints.
//! Every chart is also given as a table (see the dashboard), so nothing is
//! only visual. Pure: points in, markup out.

use super::layout::format_value;
use casework::indicators::Unit;
use maud::{Markup, html};

/// One point: its label ("year to Jun 2025") and the value, if it could be computed.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub label: String,
    pub value: Option<f64>,
}

const WIDTH: f64 = 340.0;
const HEIGHT: f64 = 150.0;
const LEFT: f64 = 48.0;
const RIGHT: f64 = 10.0;
const TOP: f64 = 12.0;
const BOTTOM: f64 = 28.0;

/// A line chart of `points` with the national figure as a dashed line.
/// `id` names the chart for `aria-labelledby`.
pub fn trend(id: &str, title: &str, unit: Unit, points: &[Point], national: Option<f64>) -> Markup {
    let values: Vec<f64> = points.iter().filter_map(|p| p.value).chain(national).collect();
    let top = nice_ceiling(values.iter().copied().fold(0.0, f64::max), unit);
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let x = |i: usize| {
        if points.len() <= 1 { LEFT + plot_w / 2.0 } else { LEFT + plot_w * i as f64 / (points.len() - 1) as f64 }
    };
    let y = |v: f64| TOP + plot_h * (1.0 - if top > 0.0 { v / top } else { 0.0 });
    // A gap where a value is missing, rather than a line drawn through nothing.
    let mut runs: Vec<Vec<(f64, f64)>> = vec![vec![]];
    for (i, p) in points.iter().enumerate() {
        match p.value {
            Some(v) => runs.last_mut().map_or((), |r| r.push((x(i), y(v)))),
            None => runs.push(vec![]),
        }
    }
    let path = |run: &[(f64, f64)]| run.iter().map(|(a, b)| format!("{a:.1},{b:.1}")).collect::<Vec<_>>().join(" ");
    let described = points
        .iter()
        .map(|p| format!("{}: {}", p.label, p.value.map_or("not computable".into(), |v| format_value(v, unit))))
        .collect::<Vec<_>>()
        .join("; ");
    html! {
        svg class="trend" viewBox=(format!("0 0 {WIDTH} {HEIGHT}")) role="img"
            aria-labelledby=(format!("{id}-title {id}-desc")) xmlns="http://www.w3.org/2000/svg" {
            title id=(format!("{id}-title")) { (title) ", trend" }
            desc id=(format!("{id}-desc")) {
                (described)
                @if let Some(n) = national { ". England: " (format_value(n, unit)) }
            }
            @for tick in [0.0, top / 2.0, top] {
                line class="grid" x1=(LEFT) x2=(WIDTH - RIGHT) y1=(format!("{:.1}", y(tick))) y2=(format!("{:.1}", y(tick))) {}
                text class="axis" x=(LEFT - 4.0) y=(format!("{:.1}", y(tick) + 4.0)) text-anchor="end" { (format_value(tick, unit)) }
            }
            @if let Some(n) = national {
                line class="national" x1=(LEFT) x2=(WIDTH - RIGHT) y1=(format!("{:.1}", y(n))) y2=(format!("{:.1}", y(n))) {}
            }
            @for run in &runs {
                @if run.len() > 1 { polyline class="line" points=(path(run)) {} }
            }
            @for (i, p) in points.iter().enumerate() {
                @if let Some(v) = p.value {
                    circle class="point" cx=(format!("{:.1}", x(i))) cy=(format!("{:.1}", y(v))) r="3.5" {
                        title { (p.label) ": " (format_value(v, unit)) }
                    }
                }
            }
            @if let (Some(first), Some(last)) = (points.first(), points.last()) {
                text class="axis" x=(LEFT) y=(HEIGHT - 8.0) { (first.label) }
                text class="axis" x=(WIDTH - RIGHT) y=(HEIGHT - 8.0) text-anchor="end" { (last.label) }
            }
        }
    }
}

/// A round top for the axis: shares run to 100% at most, others to a
/// 1, 2 or 5 times a power of ten above the largest value.
fn nice_ceiling(max: f64, unit: Unit) -> f64 {
    if max <= 0.0 || !max.is_finite() {
        return if unit == Unit::Share { 1.0 } else { 10.0 };
    }
    let magnitude = 10f64.powf(max.log10().floor());
    let top = [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * magnitude).find(|t| *t >= max * 1.05).unwrap_or(max);
    if unit == Unit::Share { top.min(1.0) } else { top }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn points(values: &[Option<f64>]) -> Vec<Point> {
        values.iter().enumerate().map(|(i, v)| Point { label: format!("Q{i}"), value: *v }).collect()
    }

    #[test]
    fn axis_tops_are_round() {
        assert_eq!(nice_ceiling(0.814, Unit::Share), 1.0);
        assert_eq!(nice_ceiling(0.3, Unit::Share), 0.5);
        assert_eq!(nice_ceiling(41.0, Unit::Per10000), 50.0);
        assert_eq!(nice_ceiling(525.0, Unit::Per10000), 1000.0);
        assert_eq!(nice_ceiling(0.0, Unit::PerFte), 10.0);
    }

    #[test]
    fn a_missing_value_breaks_the_line_and_is_described() {
        let svg = trend(
            "c",
            "ICPCs",
            Unit::Share,
            &points(&[Some(0.5), Some(0.75), None, Some(1.0), Some(0.9)]),
            Some(0.814),
        )
        .into_string();
        assert_eq!(svg.matches("<polyline").count(), 2, "{svg}");
        assert_eq!(svg.matches("<circle").count(), 4);
        assert!(svg.contains("Q2: not computable"), "{svg}");
        assert!(svg.contains("England: 81.4%"), "{svg}");
        assert!(svg.contains(r#"aria-labelledby="c-title c-desc""#));
    }

    #[test]
    fn text_is_escaped() {
        let svg = trend("c", "<script>", Unit::Share, &points(&[Some(0.5)]), None).into_string();
        assert!(!svg.contains("<script>"));
    }
}
