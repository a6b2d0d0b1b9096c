//! Identifiers and small value types, each parsed once at the edge so inner
//! code cannot hold an invalid one.

use crate::fields::{FromJson, expect_str, scalar};
use crate::problem::Problems;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::borrow::Cow;
use std::fmt;
use uuid::Uuid;

/// The JSON Schema of a value type, written beside its `parse`: as much of
/// the rule as a schema can say (a check digit or letter it cannot, and the
/// description says so). `events::schema`'s tests hold each to its parser.
macro_rules! value_schema {
    ($t:ty, $schema:tt) => {
        impl JsonSchema for $t {
            fn schema_name() -> Cow<'static, str> {
                stringify!($t).into()
            }
            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                json_schema!($schema)
            }
        }
    };
}

/// Implements `FromJson` and `TryFrom<String>` for a type with
/// `fn parse(&str) -> Result<Self, String>`: JSON at the edge and serde
/// (`try_from = "String"`: our own API's answers, configuration) check a
/// value the same way, so an id that would not parse does not deserialise.
macro_rules! from_json_via_parse {
    ($($t:ty),+) => {$(
        impl FromJson for $t {
            fn from_json(value: &Value, at: &str, problems: &mut Problems) -> Option<Self> {
                let s = expect_str(value, at, problems)?;
                scalar(at, problems, <$t>::parse(s))
            }
        }

        impl TryFrom<String> for $t {
            type Error = String;
            fn try_from(s: String) -> Result<Self, String> {
                <$t>::parse(&s)
            }
        }
    )+};
}

/// A UUID in its one canonical text form. Subjects name NATS subjects and
/// chains, so `7D1C…` and `7d1c…` must not become two children: anything but
/// lowercase hyphenated form is refused rather than rewritten.
pub fn parse_canonical_uuid(s: &str, what: &str) -> Result<Uuid, String> {
    let uuid = Uuid::try_parse(s)
        .map_err(|_| format!("must be a {what} UUID, for example 7d1c9c1e-8a4e-4c5e-9f3f-0c9f6f3f2b11"))?;
    if uuid.is_nil() {
        return Err(format!("must be a {what} UUID other than the nil UUID"));
    }
    if uuid.hyphenated().to_string() != s {
        return Err(format!("must be a {what} UUID in lowercase hyphenated form"));
    }
    Ok(uuid)
}

macro_rules! uuid_id {
    ($(#[$m:meta])* $name:ident, $what:literal) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            pub fn parse(s: &str) -> Result<Self, String> {
                parse_canonical_uuid(s, $what).map(Self)
            }
            pub const fn from_uuid(uuid: Uuid) -> Self {
                Self(uuid)
            }
            pub const fn as_uuid(&self) -> &Uuid {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.hyphenated().fmt(f)
            }
        }

        impl JsonSchema for $name {
            fn schema_name() -> Cow<'static, str> {
                stringify!($name).into()
            }
            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                json_schema!({
                    "type": "string",
                    "format": "uuid",
                    "pattern": canonical_uuid_pattern(),
                    "description": concat!("A ", $what, " id: a UUID in lowercase hyphenated form, not the nil UUID"),
                })
            }
        }
    };
}

/// The one form [`parse_canonical_uuid`] takes, as a regular expression:
/// lowercase hyphenated, and not the nil UUID. Without look-ahead (not
/// every generator of test data has it), "not all zeros" is written out as
/// one alternative per place the first non-zero digit can be.
fn canonical_uuid_pattern() -> String {
    const GROUPS: [usize; 5] = [8, 4, 4, 4, 12];
    let mut alternatives = Vec::new();
    for (first, &len) in GROUPS.iter().enumerate() {
        for zeros in 0..len {
            let groups: Vec<String> = GROUPS
                .iter()
                .enumerate()
                .map(|(i, &l)| match i.cmp(&first) {
                    std::cmp::Ordering::Less => format!("0{{{l}}}"),
                    std::cmp::Ordering::Equal => format!("0{{{zeros}}}[1-9a-f][0-9a-f]{{{}}}", len - zeros - 1),
                    std::cmp::Ordering::Greater => format!("[0-9a-f]{{{l}}}"),
                })
                .collect();
            alternatives.push(groups.join("-"));
        }
    }
    format!("^(?:{})$", alternatives.join("|"))
}

uuid_id!(
    /// A child: the subject of every child event.
    ChildId, "child"
);
uuid_id!(
    /// A worker: the subject of `worker.*` events and the holder of cases.
    WorkerId, "worker"
);
uuid_id!(
    /// An alert the read side raised about a child (`casework::alerts`):
    /// derived from the child and what raised it, so a rebuild gives every
    /// alert the id an acknowledgement already names.
    AlertId, "alert"
);

/// A council's 9-character ONS code, such as `E09000014` (Haringey).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String")]
pub struct CouncilCode(String);

impl fmt::Display for CouncilCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl CouncilCode {
    pub fn parse(s: &str) -> Result<Self, String> {
        let b = s.as_bytes();
        if b.len() == 9 && b[0] == b'E' && b[1..].iter().all(u8::is_ascii_digit) {
            Ok(Self(s.to_owned()))
        } else {
            Err("must be a council's 9-character ONS code: E followed by 8 digits, for example E09000014".into())
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A council's 3-digit DfE code (309 for Haringey), used in the CIN census header.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String")]
pub struct DfeLaCode(String);

impl DfeLaCode {
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.len() == 3 && s.bytes().all(|b| b.is_ascii_digit()) {
            Ok(Self(s.to_owned()))
        } else {
            Err("must be a 3-digit DfE local authority code, for example 309".into())
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The council's own case-system id for a child (CIN census `LAchildID`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String")]
pub struct LaChildId(String);

impl LaChildId {
    pub fn parse(s: &str) -> Result<Self, String> {
        if (1..=20).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric()) {
            Ok(Self(s.to_owned()))
        } else {
            Err("must be 1 to 20 letters or digits".into())
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A publisher's own identifier for a referral, assessment, plan, team and so
/// on. These key the read models, so they are restricted to characters that
/// are safe everywhere.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String")]
pub struct LocalId(String);

impl fmt::Display for LocalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl LocalId {
    pub fn parse(s: &str) -> Result<Self, String> {
        if (1..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:/".contains(&b)) {
            Ok(Self(s.to_owned()))
        } else {
            Err("must be 1 to 64 characters of letters, digits and - _ . : /".into())
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The publisher's id for one fact (CloudEvents `id`). It becomes the NATS
/// `Nats-Msg-Id` header, which must not contain white space.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String")]
pub struct EventId(String);

impl EventId {
    pub fn parse(s: &str) -> Result<Self, String> {
        if (1..=128).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_graphic()) {
            Ok(Self(s.to_owned()))
        } else {
            Err("must be 1 to 128 printable ASCII characters without spaces".into())
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A principal's name from `principals.toml`; it becomes the `source` of what
/// that principal publishes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String")]
pub struct PrincipalName(String);

impl PrincipalName {
    pub fn parse(s: &str) -> Result<Self, String> {
        // No dots: a principal's name is one token of a NATS subject (the
        // index of event ids it has published).
        let ok_char = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_';
        if (1..=64).contains(&s.len()) && s.bytes().all(ok_char) {
            Ok(Self(s.to_owned()))
        } else {
            Err("must be a principal name: 1 to 64 lowercase letters, digits, - and _".into())
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An NHS number: 10 digits whose last is a modulus 11 check digit.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String")]
pub struct NhsNumber(String);

impl NhsNumber {
    pub fn parse(s: &str) -> Result<Self, String> {
        let b = s.as_bytes();
        if b.len() != 10 || !b.iter().all(u8::is_ascii_digit) {
            return Err("must be an NHS number of 10 digits without spaces".into());
        }
        let sum: u32 = b[..9].iter().zip((2..=10).rev()).map(|(d, w)| u32::from(d - b'0') * w).sum();
        let check = match 11 - sum % 11 {
            11 => 0,
            10 => {
                return Err("is not a valid NHS number (no check digit is possible for these digits)".into());
            }
            c => c,
        };
        if u32::from(b[9] - b'0') != check {
            return Err("is not a valid NHS number (the modulus 11 check digit does not match)".into());
        }
        Ok(Self(s.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for NhsNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NhsNumber(<redacted>)")
    }
}

/// A Unique Pupil Number: a check letter, 11 digits, and a digit or (for a
/// temporary UPN) a letter. The check letter is the DfE's modulus 23 sum of
/// characters 2 to 13 weighted 2 to 13.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String")]
pub struct Upn(String);

/// The DfE's UPN letters: A to Z without I, O and S.
const UPN_LETTERS: &[u8; 23] = b"ABCDEFGHJKLMNPQRTUVWXYZ";

impl Upn {
    pub fn parse(s: &str) -> Result<Self, String> {
        let b = s.as_bytes();
        let shape_ok = b.len() == 13
            && UPN_LETTERS.contains(&b[0])
            && b[1..12].iter().all(u8::is_ascii_digit)
            && (b[12].is_ascii_digit() || UPN_LETTERS.contains(&b[12]));
        if !shape_ok {
            return Err(
                "must be a UPN: a capital check letter, 11 digits, then a digit or capital letter (not I, O or S)"
                    .into(),
            );
        }
        if Self::check_letter(&b[1..]) != b[0] {
            return Err("is not a valid UPN (the check letter does not match)".into());
        }
        Ok(Self(s.to_owned()))
    }

    /// The check letter for the 12 characters after it.
    pub fn check_letter(rest: &[u8]) -> u8 {
        let value = |c: u8| -> usize {
            if c.is_ascii_digit() {
                usize::from(c - b'0')
            } else {
                UPN_LETTERS.iter().position(|&l| l == c).unwrap_or(0)
            }
        };
        let sum: usize = rest.iter().enumerate().map(|(i, &c)| value(c) * (i + 2)).sum();
        UPN_LETTERS[sum % 23]
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Upn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Upn(<redacted>)")
    }
}

/// Free text: a summary, a reason, a purpose. Always personal data when it
/// appears in an event, because people write names into it.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String")]
pub struct Text(String);

impl Text {
    pub const MAX_CHARS: usize = 20_000;

    pub fn parse(s: &str) -> Result<Self, String> {
        if s.trim().is_empty() {
            return Err("must not be empty".into());
        }
        if s.chars().count() > Self::MAX_CHARS {
            return Err(format!("must be at most {} characters", Self::MAX_CHARS));
        }
        if s.chars().any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t')) {
            return Err("must not contain control characters other than line breaks and tabs".into());
        }
        Ok(Self(s.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Text(<redacted>)")
    }
}

/// A short label: a name, an agency, a court. At most 200 characters, one line.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String")]
pub struct Label(String);

impl Label {
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.trim().is_empty() {
            return Err("must not be empty".into());
        }
        if s.chars().count() > 200 {
            return Err("must be at most 200 characters".into());
        }
        if s.chars().any(char::is_control) {
            return Err("must be one line without control characters".into());
        }
        Ok(Self(s.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Label {
    // Labels include people's names; Debug output reaches logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Label(<redacted>)")
    }
}

/// Full-time equivalent of one worker: more than 0 and at most 1.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Fte(f64);

impl Fte {
    pub fn get(self) -> f64 {
        self.0
    }
}

impl FromJson for Fte {
    fn from_json(value: &Value, at: &str, problems: &mut Problems) -> Option<Self> {
        match value.as_f64() {
            Some(f) if f > 0.0 && f <= 1.0 => Some(Self(f)),
            _ => {
                problems.push(at, "must be a number more than 0 and at most 1 (full-time equivalent of one person)");
                None
            }
        }
    }
}

/// A number of full-time equivalent posts: zero or more.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize, Deserialize)]
#[serde(transparent)]
pub struct FteTotal(f64);

impl FteTotal {
    pub fn get(self) -> f64 {
        self.0
    }
}

impl FromJson for FteTotal {
    fn from_json(value: &Value, at: &str, problems: &mut Problems) -> Option<Self> {
        match value.as_f64() {
            Some(f) if (0.0..=1_000_000.0).contains(&f) => Some(Self(f)),
            _ => {
                problems.push(at, "must be a number of full-time equivalent posts, zero or more");
                None
            }
        }
    }
}

value_schema!(CouncilCode, {
    "type": "string",
    "pattern": "^E[0-9]{8}$",
    "description": "A council's 9-character ONS code: E followed by 8 digits, for example E09000014",
});
value_schema!(DfeLaCode, {
    "type": "string",
    "pattern": "^[0-9]{3}$",
    "description": "A 3-digit DfE local authority code, for example 309",
});
value_schema!(LaChildId, {
    "type": "string",
    "pattern": "^[A-Za-z0-9]{1,20}$",
    "description": "The council's own case-system id for the child (CIN census LAchildID): 1 to 20 letters and digits",
});
value_schema!(LocalId, {
    "type": "string",
    "pattern": "^[A-Za-z0-9._:/-]{1,64}$",
    "description": "A publisher's own identifier: 1 to 64 letters, digits and - _ . : /",
});
value_schema!(EventId, {
    "type": "string",
    "pattern": "^[!-~]{1,128}$",
    "description": "The publisher's id for one fact: 1 to 128 printable ASCII characters without spaces",
});
value_schema!(PrincipalName, {
    "type": "string",
    "pattern": "^[a-z0-9_-]{1,64}$",
    "description": "A principal's name: 1 to 64 lowercase letters, digits, - and _",
});
value_schema!(NhsNumber, {
    "type": "string",
    "pattern": "^[0-9]{10}$",
    "description": "An NHS number: 10 digits, the last a modulus 11 check digit (checked by the gateway)",
});
value_schema!(Upn, {
    "type": "string",
    "pattern": "^[A-HJ-NP-RT-Z][0-9]{11}[0-9A-HJ-NP-RT-Z]$",
    "description": "A Unique Pupil Number: a check letter (checked by the gateway), 11 digits, then a digit or a letter (not I, O or S)",
});
value_schema!(Text, {
    "type": "string",
    "minLength": 1,
    "maxLength": Text::MAX_CHARS,
    "allOf": [{"pattern": "\\S"}, {"pattern": "^[^\\u0000-\\u0008\\u000B\\u000C\\u000E-\\u001F\\u007F-\\u009F]*$"}],
    "description": "Free text: not blank, at most 20,000 characters, no control characters but line breaks and tabs",
});
value_schema!(Label, {
    "type": "string",
    "minLength": 1,
    "maxLength": 200,
    "allOf": [{"pattern": "\\S"}, {"pattern": "^[^\\u0000-\\u001F\\u007F-\\u009F]*$"}],
    "description": "A short label: not blank, at most 200 characters, one line without control characters",
});
value_schema!(Fte, {
    "type": "number",
    "exclusiveMinimum": 0,
    "maximum": 1,
    "description": "Full-time equivalent of one person: more than 0 and at most 1",
});
value_schema!(FteTotal, {
    "type": "number",
    "minimum": 0,
    "maximum": 1_000_000,
    "description": "A number of full-time equivalent posts, zero or more",
});

from_json_via_parse!(
    ChildId,
    WorkerId,
    AlertId,
    CouncilCode,
    DfeLaCode,
    LaChildId,
    LocalId,
    EventId,
    PrincipalName,
    NhsNumber,
    Upn,
    Text,
    Label
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nhs_numbers_need_their_check_digit() {
        assert!(NhsNumber::parse("9434765919").is_ok());
        assert!(NhsNumber::parse("9434765918").is_err());
        assert!(NhsNumber::parse("943 476 5919").is_err());
        // These nine digits sum to 12 under the weights, so the check would be
        // 10: no NHS number starts with them.
        let e = NhsNumber::parse("1000000010").expect_err("no check digit possible");
        assert!(e.contains("no check digit"), "{e}");
    }

    #[test]
    fn upns_need_their_check_letter() {
        let body = b"820200101001";
        let letter = Upn::check_letter(body) as char;
        let upn = format!("{letter}820200101001");
        assert!(Upn::parse(&upn).is_ok(), "{upn}");
        let wrong = if letter == 'A' { 'B' } else { 'A' };
        assert!(Upn::parse(&format!("{wrong}820200101001")).is_err());
        // Temporary UPNs end in a letter.
        let temp_body = b"82020010100A";
        let t = format!("{}82020010100A", Upn::check_letter(temp_body) as char);
        assert!(Upn::parse(&t).is_ok());
        assert!(Upn::parse("A82020010100I").is_err(), "I is never a UPN letter");
    }

    #[test]
    fn child_ids_are_canonical_uuids() {
        assert!(ChildId::parse("7d1c9c1e-8a4e-4c5e-9f3f-0c9f6f3f2b11").is_ok());
        assert!(ChildId::parse("7D1C9C1E-8A4E-4C5E-9F3F-0C9F6F3F2B11").is_err());
        assert!(ChildId::parse("7d1c9c1e8a4e4c5e9f3f0c9f6f3f2b11").is_err());
        assert!(ChildId::parse("00000000-0000-0000-0000-000000000000").is_err());
    }

    #[test]
    fn council_codes_are_ons_codes() {
        assert!(CouncilCode::parse("E09000014").is_ok());
        assert!(CouncilCode::parse("309").is_err());
        assert!(CouncilCode::parse("E0900001").is_err());
    }

    #[test]
    fn debug_output_never_shows_personal_values() {
        let t = Text::parse("Jane Doe said").expect("text");
        assert!(!format!("{t:?}").contains("Jane"));
    }
}
