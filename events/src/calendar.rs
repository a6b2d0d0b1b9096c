//! Business dates and working days.
//!
//! The business date of an event is the Europe/London calendar date of its
//! `time`. Working days exclude Saturdays, Sundays and bank holidays in
//! England and Wales, which ship as data (`data/bank-holidays-england-and-wales.txt`)
//! and can be extended. The working days from A to B are the working days
//! after A up to and including B, so the same day is 0.

use chrono::{DateTime, Datelike, Days, FixedOffset, Months, NaiveDate, TimeZone, Weekday};
use chrono_tz::Europe::London;
use std::collections::BTreeSet;
use std::ops::Bound;
use std::sync::LazyLock;

/// The Europe/London calendar date of an instant.
pub fn business_date<Tz: TimeZone>(time: &DateTime<Tz>) -> NaiveDate {
    time.with_timezone(&London).date_naive()
}

/// Same as [`business_date`] for the offset times events carry.
pub fn business_date_of(time: &DateTime<FixedOffset>) -> NaiveDate {
    business_date(time)
}

/// The instant a Europe/London calendar day begins: local midnight, or the
/// first instant after it where a clock change skips midnight. A deadline
/// "by the end of day D" is the start of the day after D.
pub fn start_of_day(date: NaiveDate) -> DateTime<chrono::Utc> {
    let midnight = date.and_time(chrono::NaiveTime::MIN);
    match London.from_local_datetime(&midnight) {
        chrono::LocalResult::Single(t) | chrono::LocalResult::Ambiguous(t, _) => t.to_utc(),
        // No day in England has ever skipped midnight, but a rule may change: an hour on.
        chrono::LocalResult::None => London
            .from_local_datetime(&(midnight + chrono::TimeDelta::hours(1)))
            .earliest()
            .map_or_else(|| midnight.and_utc(), |t| t.to_utc()),
    }
}

/// `date` plus whole calendar months, clamped to the month's last day
/// (29 February plus 24 months is 28 February), as DOMAIN.md's "within 12
/// months", "two years or more" and review-timescale rules require.
pub fn add_months(date: NaiveDate, months: u32) -> NaiveDate {
    date.checked_add_months(Months::new(months)).unwrap_or(NaiveDate::MAX)
}

/// `date` minus whole calendar months, clamped the same way.
pub fn sub_months(date: NaiveDate, months: u32) -> NaiveDate {
    date.checked_sub_months(Months::new(months)).unwrap_or(NaiveDate::MIN)
}

const ENGLAND_AND_WALES: &str = include_str!("../data/bank-holidays-england-and-wales.txt");

static SHIPPED: LazyLock<Calendar> = LazyLock::new(|| {
    // The shipped file is checked by a test; a broken one must fail loudly.
    #[allow(clippy::expect_used)]
    Calendar::from_data(ENGLAND_AND_WALES).expect("the shipped bank-holiday data is valid")
});

/// A working-day calendar: weekends plus a set of holidays, with the span of
/// years its data covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Calendar {
    holidays: BTreeSet<NaiveDate>,
    coverage: (NaiveDate, NaiveDate),
}

impl Calendar {
    /// England and Wales, as shipped.
    pub fn england_and_wales() -> &'static Calendar {
        &SHIPPED
    }

    /// Reads the data format: one ISO date a line, `#` comments, and a
    /// `# coverage: FIRST LAST` line giving the span the list is complete for.
    pub fn from_data(text: &str) -> Result<Self, String> {
        let mut holidays = BTreeSet::new();
        let mut coverage = None;
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if let Some(rest) = line.strip_prefix("# coverage:") {
                let mut parts = rest.split_whitespace().map(|s| NaiveDate::parse_from_str(s, "%Y-%m-%d"));
                match (parts.next(), parts.next()) {
                    (Some(Ok(a)), Some(Ok(b))) if a <= b => coverage = Some((a, b)),
                    _ => {
                        return Err(format!("line {}: coverage must be two ISO dates, first then last", n + 1));
                    }
                }
            } else if line.is_empty() || line.starts_with('#') {
                continue;
            } else {
                let date = NaiveDate::parse_from_str(line, "%Y-%m-%d")
                    .map_err(|_| format!("line {}: not an ISO date", n + 1))?;
                if is_weekend(date) {
                    return Err(format!("line {}: {date} falls at a weekend", n + 1));
                }
                holidays.insert(date);
            }
        }
        let coverage = coverage.ok_or("the data has no '# coverage:' line")?;
        Ok(Self { holidays, coverage })
    }

    /// This calendar with more holidays, for example a newly proclaimed one,
    /// and its coverage widened to include them.
    pub fn extended(&self, extra: impl IntoIterator<Item = NaiveDate>) -> Self {
        let mut next = self.clone();
        for date in extra {
            next.coverage = (next.coverage.0.min(date), next.coverage.1.max(date));
            next.holidays.insert(date);
        }
        next
    }

    /// Whether the holiday data is complete for `date`. Outside it, only
    /// weekends are known, and counts may be too high.
    pub fn covers(&self, date: NaiveDate) -> bool {
        self.coverage.0 <= date && date <= self.coverage.1
    }

    pub fn is_holiday(&self, date: NaiveDate) -> bool {
        self.holidays.contains(&date)
    }

    pub fn is_working_day(&self, date: NaiveDate) -> bool {
        !is_weekend(date) && !self.is_holiday(date)
    }

    /// Working days after `from` up to and including `to`; negative when `to`
    /// is before `from`. Computed in constant time plus a range count of
    /// holidays, so long spans cost no more than short ones.
    pub fn working_days_between(&self, from: NaiveDate, to: NaiveDate) -> i64 {
        if to < from {
            return -self.working_days_between(to, from);
        }
        let weekdays = weekdays_up_to(to) - weekdays_up_to(from);
        let holidays = self.holidays.range((Bound::Excluded(from), Bound::Included(to))).count() as i64;
        weekdays - holidays
    }

    /// The date `n` working days after `from` (n = 0 gives `from`).
    pub fn add_working_days(&self, from: NaiveDate, n: u32) -> NaiveDate {
        let mut date = from;
        let mut left = n;
        while left > 0 {
            date = date + Days::new(1);
            if self.is_working_day(date) {
                left -= 1;
            }
        }
        date
    }

    /// The date `n` working days before `to` (n = 0 gives `to`): the day
    /// from which `to` is `n` working days on.
    pub fn sub_working_days(&self, to: NaiveDate, n: u32) -> NaiveDate {
        let mut date = to;
        let mut left = n;
        while left > 0 {
            date = date - Days::new(1);
            if self.is_working_day(date) {
                left -= 1;
            }
        }
        date
    }
}

fn is_weekend(date: NaiveDate) -> bool {
    matches!(date.weekday(), Weekday::Sat | Weekday::Sun)
}

/// Number of Monday-to-Friday days from a fixed Monday up to and including
/// `date`; differences of it count weekdays in a span.
fn weekdays_up_to(date: NaiveDate) -> i64 {
    // 0001-01-01 was a Monday (proleptic Gregorian).
    let days = i64::from(date.num_days_from_ce()) - 1;
    let (weeks, rest) = (days.div_euclid(7), days.rem_euclid(7));
    weeks * 5 + rest.min(4) + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("date")
    }

    fn at(s: &str) -> DateTime<FixedOffset> {
        DateTime::parse_from_rfc3339(s).expect("time")
    }

    #[test]
    fn the_same_day_is_zero_and_the_next_weekday_is_one() {
        let cal = Calendar::england_and_wales();
        assert_eq!(cal.working_days_between(d("2025-01-14"), d("2025-01-14")), 0);
        assert_eq!(cal.working_days_between(d("2025-01-14"), d("2025-01-15")), 1);
        // Friday to Monday.
        assert_eq!(cal.working_days_between(d("2025-01-17"), d("2025-01-20")), 1);
        // Saturday to Sunday, and back.
        assert_eq!(cal.working_days_between(d("2025-01-18"), d("2025-01-19")), 0);
        assert_eq!(cal.working_days_between(d("2025-01-20"), d("2025-01-17")), -1);
    }

    #[test]
    fn easter_christmas_and_new_year_are_not_working_days() {
        let cal = Calendar::england_and_wales();
        // Easter 2025: Good Friday 18 April, Easter Monday 21 April.
        assert_eq!(cal.working_days_between(d("2025-04-17"), d("2025-04-22")), 1);
        // Christmas and New Year 2024-25: 25, 26 December and 1 January.
        assert_eq!(cal.working_days_between(d("2024-12-24"), d("2025-01-02")), 4);
        // Christmas 2021 at a weekend: substitutes on 27 and 28 December,
        // New Year's Day on Saturday gives Monday 3 January 2022.
        assert_eq!(cal.working_days_between(d("2021-12-24"), d("2022-01-04")), 4);
        assert!(!cal.is_working_day(d("2022-01-03")));
        assert!(!cal.is_working_day(d("2022-09-19")), "the state funeral");
    }

    #[test]
    fn a_day_begins_at_london_midnight_and_working_days_count_back_past_holidays() {
        let cal = Calendar::england_and_wales();
        assert_eq!(start_of_day(d("2025-01-14")).to_rfc3339(), "2025-01-14T00:00:00+00:00");
        assert_eq!(start_of_day(d("2025-07-01")).to_rfc3339(), "2025-06-30T23:00:00+00:00", "summer time");
        // The days the clocks change still begin at midnight.
        assert_eq!(start_of_day(d("2025-03-30")).to_rfc3339(), "2025-03-30T00:00:00+00:00");
        assert_eq!(start_of_day(d("2025-10-26")).to_rfc3339(), "2025-10-25T23:00:00+00:00");
        // Tuesday after the spring bank holiday (Monday 26 May 2025): one
        // working day before is Friday.
        assert_eq!(cal.sub_working_days(d("2025-05-27"), 1), d("2025-05-23"));
        assert_eq!(cal.sub_working_days(d("2025-05-27"), 0), d("2025-05-27"));
        for n in 0..40 {
            assert_eq!(cal.add_working_days(cal.sub_working_days(d("2025-04-22"), n), n), d("2025-04-22"));
        }
    }

    #[test]
    fn fifteen_working_days_from_a_strategy_discussion() {
        let cal = Calendar::england_and_wales();
        // Strategy discussion Thursday 10 April 2025: Easter falls inside.
        let due = cal.add_working_days(d("2025-04-10"), 15);
        assert_eq!(due, d("2025-05-06"), "Good Friday, Easter Monday and the early May holiday are skipped");
        assert_eq!(cal.working_days_between(d("2025-04-10"), due), 15);
    }

    #[test]
    fn counting_agrees_with_stepping_day_by_day() {
        let cal = Calendar::england_and_wales();
        let start = d("2019-11-20");
        let mut count = 0;
        let mut day = start;
        for _ in 0..900 {
            day = day + Days::new(1);
            if cal.is_working_day(day) {
                count += 1;
            }
            assert_eq!(cal.working_days_between(start, day), count, "to {day}");
        }
    }

    #[test]
    fn business_dates_follow_london_across_midnight_and_the_clock_change() {
        // Winter: London is UTC.
        assert_eq!(business_date_of(&at("2025-01-14T23:59:59Z")), d("2025-01-14"));
        assert_eq!(business_date_of(&at("2025-01-15T00:00:00Z")), d("2025-01-15"));
        // Summer: 23:30 UTC is already tomorrow in London.
        assert_eq!(business_date_of(&at("2025-06-01T23:30:00Z")), d("2025-06-02"));
        assert_eq!(business_date_of(&at("2025-06-01T22:59:59Z")), d("2025-06-01"));
        // Clocks go forward at 01:00 UTC on 30 March 2025.
        assert_eq!(business_date_of(&at("2025-03-29T23:30:00Z")), d("2025-03-29"));
        assert_eq!(business_date_of(&at("2025-03-30T23:30:00Z")), d("2025-03-31"));
        // Clocks go back at 01:00 UTC on 26 October 2025.
        assert_eq!(business_date_of(&at("2025-10-25T23:30:00Z")), d("2025-10-26"));
        assert_eq!(business_date_of(&at("2025-10-26T23:30:00Z")), d("2025-10-26"));
        // An offset given by the publisher changes nothing but the reading.
        assert_eq!(business_date_of(&at("2025-06-02T00:30:00+01:00")), d("2025-06-02"));
        assert_eq!(business_date_of(&at("2025-06-01T19:30:00-04:00")), d("2025-06-02"));
    }

    #[test]
    fn months_clamp_to_the_end_of_the_month() {
        assert_eq!(add_months(d("2024-02-29"), 24), d("2026-02-28"));
        assert_eq!(sub_months(d("2024-06-01"), 12), d("2023-06-01"));
    }

    #[test]
    fn the_calendar_can_be_extended_and_knows_its_coverage() {
        let cal = Calendar::england_and_wales();
        assert!(cal.covers(d("2025-06-01")));
        assert!(!cal.covers(d("2040-06-01")));
        let extra = cal.extended([d("2040-06-01")]);
        assert!(!extra.is_working_day(d("2040-06-01")));
        assert!(Calendar::from_data("2025-01-04\n# coverage: 2025-01-01 2025-12-31\n").is_err(), "a Saturday");
    }
}
