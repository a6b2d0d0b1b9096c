//! Strict JSON decoding.
//!
//! `serde_json` silently keeps the last of two equal keys. Two verifiers that
//! disagree on which duplicate wins would disagree on an event's meaning while
//! agreeing on its hash, so the backbone refuses duplicate keys outright
//! (RFC 8785 and I-JSON require unique names too). Numbers that an IEEE double
//! cannot hold exactly are refused for the same reason: RFC 8785 canonical
//! bytes are defined over doubles.

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use std::fmt;

/// The largest integer every JSON implementation reads exactly (2^53 - 1).
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// Why a body is not acceptable JSON, with the byte position where it is known.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct JsonError {
    pub message: String,
    pub line: usize,
    pub column: usize,
}

/// Parses `bytes` as one JSON value, refusing duplicate keys and numbers that
/// cannot be represented exactly as an IEEE double.
pub fn parse_strict(bytes: &[u8]) -> Result<Value, JsonError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = StrictValue.deserialize(&mut de).map_err(to_json_error)?;
    de.end().map_err(to_json_error)?;
    Ok(value)
}

fn to_json_error(e: serde_json::Error) -> JsonError {
    // serde_json appends " at line L column C"; we report those separately.
    let text = e.to_string();
    let message = match text.rfind(" at line ") {
        Some(i) => text[..i].to_string(),
        None => text,
    };
    JsonError { message, line: e.line(), column: e.column() }
}

struct StrictValue;

impl<'de> DeserializeSeed<'de> for StrictValue {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(StrictVisitor)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        if v.unsigned_abs() > MAX_SAFE_INTEGER {
            return Err(E::custom("integer is too large to be exact in every JSON reader (over 2^53 - 1)"));
        }
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        if v > MAX_SAFE_INTEGER {
            return Err(E::custom("integer is too large to be exact in every JSON reader (over 2^53 - 1)"));
        }
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        // A fraction or exponent does not make a big number safe: RFC 8785
        // writes 6.59e16 as the integer 65900000000000000, which some
        // readers would then hold inexactly (found by fuzzing).
        if v.abs() > MAX_SAFE_INTEGER as f64 {
            return Err(E::custom("number is too large to be exact in every JSON reader (over 2^53 - 1)"));
        }
        Number::from_f64(v).map(Value::Number).ok_or_else(|| E::custom("number is not finite"))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(StrictValue)? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(de::Error::custom(format_args!("duplicate key {key:?} in an object")));
            }
            let value = map.next_value_seed(StrictValue)?;
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_json() {
        let v = parse_strict(br#"{"a":[1,2.5,"x",null,true]}"#).expect("valid");
        assert_eq!(v["a"][1], 2.5);
    }

    #[test]
    fn refuses_duplicate_keys_at_any_depth() {
        let e = parse_strict(br#"{"a":{"b":1,"b":2}}"#).expect_err("duplicate");
        assert!(e.message.contains("duplicate key"), "{}", e.message);
    }

    #[test]
    fn refuses_unsafe_integers_and_trailing_bytes() {
        assert!(parse_strict(b"9007199254740992").is_err());
        assert!(parse_strict(b"9007199254740991").is_ok());
        // Found by fuzzing: a float whose canonical form is an unsafe integer.
        assert!(parse_strict(b"65900000000000000E00000000000000000").is_err());
        assert!(parse_strict(b"-1e300").is_err());
        assert!(parse_strict(b"0.5").is_ok());
        assert!(parse_strict(b"{} x").is_err());
        assert!(parse_strict(b"").is_err());
    }
}
