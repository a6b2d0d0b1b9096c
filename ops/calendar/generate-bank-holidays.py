#!/usr/bin/env python3
"""Writes events/data/bank-holidays-england-and-wales.txt.

The rules are those of the Banking and Financial Dealings Act 1971 and the
royal proclamations made under it: New Year's Day, Good Friday, Easter Monday,
the first and last Mondays of May, the last Monday of August, Christmas Day
and Boxing Day, each moved to the next weekday when it falls at a weekend.
One-off changes by proclamation are listed in SPECIAL below. Years after the
last one announced on GOV.UK follow the rules and must be checked (and this
script re-run with any new proclamation) when they are announced.

Usage: python3 ops/calendar/generate-bank-holidays.py [FIRST_YEAR LAST_YEAR]
"""
import datetime as dt
import pathlib
import sys

FIRST, LAST = 1990, 2035

# Proclamations that moved or added days: year -> (days removed, days added).
SPECIAL = {
    1995: ({dt.date(1995, 5, 1)}, {dt.date(1995, 5, 8)}),            # VE Day 50th anniversary
    1999: (set(), {dt.date(1999, 12, 31)}),                          # Millennium
    2002: ({dt.date(2002, 5, 27)}, {dt.date(2002, 6, 3), dt.date(2002, 6, 4)}),  # Golden Jubilee
    2011: (set(), {dt.date(2011, 4, 29)}),                           # Royal wedding
    2012: ({dt.date(2012, 5, 28)}, {dt.date(2012, 6, 4), dt.date(2012, 6, 5)}),  # Diamond Jubilee
    2020: ({dt.date(2020, 5, 4)}, {dt.date(2020, 5, 8)}),            # VE Day 75th anniversary
    2022: ({dt.date(2022, 5, 30)}, {dt.date(2022, 6, 2), dt.date(2022, 6, 3),   # Platinum Jubilee
                                     dt.date(2022, 9, 19)}),          # State funeral
    2023: (set(), {dt.date(2023, 5, 8)}),                            # Coronation
}


def easter(year):
    """Gregorian Easter Sunday (the anonymous Gregorian algorithm)."""
    a = year % 19
    b, c = divmod(year, 100)
    d, e = divmod(b, 4)
    f = (b + 8) // 25
    g = (b - f + 1) // 3
    h = (19 * a + b - d - g + 15) % 30
    i, k = divmod(c, 4)
    l = (32 + 2 * e + 2 * i - h - k) % 7
    m = (a + 11 * h + 22 * l) // 451
    month, day = divmod(h + l - 7 * m + 114, 31)
    return dt.date(year, month, day + 1)


def first_monday(year, month):
    d = dt.date(year, month, 1)
    return d + dt.timedelta(days=(7 - d.weekday()) % 7)


def last_monday(year, month):
    d = dt.date(year + (month == 12), month % 12 + 1, 1) - dt.timedelta(days=1)
    return d - dt.timedelta(days=d.weekday())


def holidays(year):
    days = set()
    new_year = dt.date(year, 1, 1)
    days.add(new_year + dt.timedelta(days={5: 2, 6: 1}.get(new_year.weekday(), 0)))
    e = easter(year)
    days.add(e - dt.timedelta(days=2))
    days.add(e + dt.timedelta(days=1))
    days.add(first_monday(year, 5))
    days.add(last_monday(year, 5))
    days.add(last_monday(year, 8))
    christmas, boxing = dt.date(year, 12, 25), dt.date(year, 12, 26)
    # Each of the two days that falls at a weekend is replaced by the next
    # weekday not already a holiday.
    for d in (christmas, boxing):
        while d.weekday() >= 5 or d in days:
            d += dt.timedelta(days=1)
        days.add(d)
    removed, added = SPECIAL.get(year, (set(), set()))
    return (days - removed) | added


def main():
    first, last = (int(sys.argv[1]), int(sys.argv[2])) if len(sys.argv) == 3 else (FIRST, LAST)
    root = pathlib.Path(__file__).resolve().parents[2]
    out = root / "events" / "data" / "bank-holidays-england-and-wales.txt"
    lines = [
        "# Bank holidays in England and Wales, one ISO date a line.",
        "# Written by ops/calendar/generate-bank-holidays.py from the statutory rules and",
        "# the proclamations it lists; years after the last announced on GOV.UK are",
        "# projections from the rules. Extend by re-running the script or adding lines.",
        f"# coverage: {first}-01-01 {last}-12-31",
    ]
    for year in range(first, last + 1):
        lines.extend(d.isoformat() for d in sorted(holidays(year)))
    out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
