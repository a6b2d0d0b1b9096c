//! Reading typed values out of JSON while collecting every problem.
//!
//! `serde`'s derive stops at the first error. A publisher fixing a rejected
//! batch wants the whole list at once, so parsing goes through [`FromJson`],
//! whose implementations record problems and keep going, and [`Fields`], which
//! reads an object field by field and reports the fields nobody asked for.

use crate::problem::{Problems, child_pointer};
use chrono::{DateTime, FixedOffset, NaiveDate};
use serde_json::{Map, Value};

/// A type that can be read from a JSON value, recording what is wrong with it
/// under `at` instead of stopping.
pub trait FromJson: Sized {
    /// Returns `None` when at least one problem was recorded.
    fn from_json(value: &Value, at: &str, problems: &mut Problems) -> Option<Self>;
}

/// Helper for scalar types whose only failure is one message at one place.
pub(crate) fn scalar<T>(at: &str, problems: &mut Problems, result: Result<T, String>) -> Option<T> {
    result.map_err(|m| problems.push(at, m)).ok()
}

/// The value as a string, or a problem saying what it is instead.
pub fn expect_str<'v>(value: &'v Value, at: &str, problems: &mut Problems) -> Option<&'v str> {
    match value {
        Value::String(s) => Some(s),
        _ => {
            problems.push(at, format!("must be a string, not {}", kind_of(value)));
            None
        }
    }
}

/// The JSON kind of a value, for messages ("must be a string, not a number").
pub fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Reads the fields of one JSON object, remembering which were read so that
/// [`Fields::finish`] can refuse the rest.
#[derive(Debug)]
pub struct Fields<'v, 'p> {
    object: &'v Map<String, Value>,
    at: String,
    read: Vec<&'static str>,
    problems: &'p mut Problems,
    before: usize,
}

impl<'v, 'p> Fields<'v, 'p> {
    /// Starts reading `value` as an object; records a problem and returns
    /// `None` when it is not one.
    pub fn open(value: &'v Value, at: &str, problems: &'p mut Problems) -> Option<Self> {
        match value {
            Value::Object(object) => {
                let before = problems.len();
                Some(Self { object, at: at.to_owned(), read: Vec::new(), problems, before })
            }
            other => {
                problems.push(at, format!("must be an object, not {}", kind_of(other)));
                None
            }
        }
    }

    pub fn pointer(&self, name: &str) -> String {
        child_pointer(&self.at, name)
    }

    pub fn problems(&mut self) -> &mut Problems {
        self.problems
    }

    /// A field that must be present and not null.
    pub fn required<T: FromJson>(&mut self, name: &'static str) -> Option<T> {
        self.read.push(name);
        let at = child_pointer(&self.at, name);
        match self.object.get(name) {
            None | Some(Value::Null) => {
                self.problems.push(at, "is required");
                None
            }
            Some(value) => T::from_json(value, &at, self.problems),
        }
    }

    /// A field that may be absent (or null, which means the same). The outer
    /// `None` means the field was present but invalid.
    pub fn optional<T: FromJson>(&mut self, name: &'static str) -> Option<Option<T>> {
        self.read.push(name);
        match self.object.get(name) {
            None | Some(Value::Null) => Some(None),
            Some(value) => T::from_json(value, &child_pointer(&self.at, name), self.problems).map(Some),
        }
    }

    /// Whether the field is present with a non-null value.
    pub fn has(&self, name: &str) -> bool {
        !matches!(self.object.get(name), None | Some(Value::Null))
    }

    /// Refuses every field that was not read, and says whether this object
    /// produced no problems at all.
    pub fn finish(self) -> bool {
        let mut unknown: Vec<&String> = self.object.keys().filter(|k| !self.read.contains(&k.as_str())).collect();
        unknown.sort();
        for key in unknown {
            let expected = self.read.join(", ");
            self.problems
                .push(child_pointer(&self.at, key), format!("is not a known field here; expected only: {expected}"));
        }
        self.problems.len() == self.before
    }
}

impl FromJson for bool {
    fn from_json(value: &Value, at: &str, problems: &mut Problems) -> Option<Self> {
        match value {
            Value::Bool(b) => Some(*b),
            other => {
                problems.push(at, format!("must be true or false, not {}", kind_of(other)));
                None
            }
        }
    }
}

/// Whole numbers: counts, days, sequences. Never negative.
impl FromJson for u64 {
    fn from_json(value: &Value, at: &str, problems: &mut Problems) -> Option<Self> {
        match value.as_u64() {
            Some(n) if n <= crate::json::MAX_SAFE_INTEGER => Some(n),
            _ => {
                problems.push(at, "must be a whole number, zero or more");
                None
            }
        }
    }
}

impl FromJson for u32 {
    fn from_json(value: &Value, at: &str, problems: &mut Problems) -> Option<Self> {
        match value.as_u64().and_then(|n| u32::try_from(n).ok()) {
            Some(n) => Some(n),
            None => {
                problems.push(at, "must be a whole number, zero or more");
                None
            }
        }
    }
}

/// A calendar date, `YYYY-MM-DD`.
impl FromJson for NaiveDate {
    fn from_json(value: &Value, at: &str, problems: &mut Problems) -> Option<Self> {
        let s = expect_str(value, at, problems)?;
        scalar(at, problems, parse_date(s))
    }
}

pub fn parse_date(s: &str) -> Result<NaiveDate, String> {
    // chrono accepts "2025-1-5"; ISO 8601 calendar dates have fixed widths.
    if s.len() != 10 {
        return Err("must be a date written YYYY-MM-DD".into());
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| "must be a real date written YYYY-MM-DD".into())
}

/// An instant with its offset, RFC 3339 (`2025-01-14T09:30:00Z`,
/// `2025-06-01T10:00:00+01:00`). A time without an offset is ambiguous across
/// the clock change, so it is refused.
impl FromJson for DateTime<FixedOffset> {
    fn from_json(value: &Value, at: &str, problems: &mut Problems) -> Option<Self> {
        let s = expect_str(value, at, problems)?;
        scalar(at, problems, parse_time(s))
    }
}

pub(crate) fn parse_time(s: &str) -> Result<DateTime<FixedOffset>, String> {
    DateTime::parse_from_rfc3339(s).map_err(|_| {
        // A well-formed local time that lacks only its offset gets a message
        // saying exactly that.
        let local = chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f").is_ok();
        if local {
            "must carry a UTC offset (for example 2025-01-14T09:30:00Z or +01:00)".to_string()
        } else {
            "must be an RFC 3339 date and time with an offset, for example 2025-01-14T09:30:00Z".to_string()
        }
    })
}

/// A list; every element is checked, and empty lists are refused because every
/// list in the catalogue means "at least one".
impl<T: FromJson> FromJson for Vec<T> {
    fn from_json(value: &Value, at: &str, problems: &mut Problems) -> Option<Self> {
        let Value::Array(items) = value else {
            problems.push(at, format!("must be an array, not {}", kind_of(value)));
            return None;
        };
        if items.is_empty() {
            problems.push(at, "must list at least one item");
            return None;
        }
        let mut out = Vec::with_capacity(items.len());
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            match T::from_json(item, &child_pointer(at, &i.to_string()), problems) {
                Some(v) => out.push(v),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }
}

/// Refuses repeated entries in a list of codes, naming the repeat's place.
pub(crate) fn no_repeats<T: PartialEq>(items: &[T], at: &str, problems: &mut Problems) -> bool {
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        if items[..i].contains(item) {
            problems.push(child_pointer(at, &i.to_string()), "repeats an earlier entry");
            ok = false;
        }
    }
    ok
}
