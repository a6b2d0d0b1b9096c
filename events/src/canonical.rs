//! RFC 8785 JSON Canonicalization Scheme (JCS): the one byte form of a JSON
//! value that hashes and signatures are computed over.
//!
//! Objects have their members sorted by the UTF-16 code units of their names,
//! there is no white space, strings use the minimal ECMAScript escapes, and
//! numbers are written as ECMAScript writes the IEEE double they denote.
//! Anyone with an RFC 8785 library can reproduce our bytes.

use serde_json::{Map, Value};
use std::cmp::Ordering;

/// The canonical bytes of `value`.
pub fn canonical(value: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    write_value(&mut out, value);
    out
}

/// The canonical bytes of an object.
pub fn canonical_object(object: &Map<String, Value>) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    write_object(&mut out, object);
    out
}

fn write_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => write_number(out, n),
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(out, item);
            }
            out.push(b']');
        }
        Value::Object(object) => write_object(out, object),
    }
}

fn write_object(out: &mut Vec<u8>, object: &Map<String, Value>) {
    let mut members: Vec<(&String, &Value)> = object.iter().collect();
    members.sort_by(|a, b| utf16_cmp(a.0, b.0));
    out.push(b'{');
    for (i, (name, value)) in members.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_string(out, name);
        out.push(b':');
        write_value(out, value);
    }
    out.push(b'}');
}

/// Orders names by UTF-16 code units, as RFC 8785 requires. This differs from
/// byte (and char) order only for characters above U+FFFF against those in
/// U+E000..U+FFFF.
fn utf16_cmp(a: &str, b: &str) -> Ordering {
    a.encode_utf16().cmp(b.encode_utf16())
}

fn write_number(out: &mut Vec<u8>, n: &serde_json::Number) {
    // JCS numbers are IEEE doubles. Integers beyond 2^53 are refused when
    // events are parsed, so converting here loses nothing for our events and
    // follows the RFC for any other input.
    let f = if let Some(i) = n.as_i64() {
        i as f64
    } else if let Some(u) = n.as_u64() {
        u as f64
    } else {
        n.as_f64().unwrap_or(0.0)
    };
    if f == 0.0 {
        // Both zeros are written "0".
        out.push(b'0');
        return;
    }
    let mut buffer = ryu_js::Buffer::new();
    out.extend_from_slice(buffer.format_finite(f).as_bytes());
}

fn write_string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: Option<&[u8]> = match b {
            b'"' => Some(b"\\\""),
            b'\\' => Some(b"\\\\"),
            0x08 => Some(b"\\b"),
            0x0c => Some(b"\\f"),
            b'\n' => Some(b"\\n"),
            b'\r' => Some(b"\\r"),
            b'\t' => Some(b"\\t"),
            0x00..=0x1f => None,
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        match escape {
            Some(e) => out.extend_from_slice(e),
            None => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 0xf)]);
            }
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Canonical text of any JSON (numbers our strict parser would refuse
    /// included: these tests are about RFC 8785's number format).
    fn jcs(text: &str) -> String {
        let value: Value = serde_json::from_str(text).expect("json");
        String::from_utf8(canonical(&value)).expect("utf-8")
    }

    #[test]
    fn sorts_names_by_utf16_code_units() {
        // The sorting example of RFC 8785 section 3.2.3.
        let input = r#"{"\u20ac":"Euro Sign","\r":"Carriage Return","\ufb33":"Hebrew Letter Dalet With Dagesh","1":"One","\ud83d\ude00":"Emoji: Grinning Face","\u0080":"Control","\u00f6":"Latin Small Letter O With Diaeresis"}"#;
        let out = jcs(input);
        let names: Vec<String> = {
            let v: Value = serde_json::from_str(&out).expect("json");
            // preserve_order keeps the canonical order when read back.
            v.as_object().expect("object").keys().cloned().collect()
        };
        assert_eq!(names, vec!["\r", "1", "\u{80}", "\u{f6}", "\u{20ac}", "\u{1f600}", "\u{fb33}"]);
    }

    #[test]
    fn writes_numbers_as_ecmascript_does() {
        assert_eq!(
            jcs("[0, -0, 1e-7, 1e21, 1e20, 4.50, 2e-3, 0.000001, 333333333.33333329, 1E30, 123456789012345680000]"),
            "[0,0,1e-7,1e+21,100000000000000000000,4.5,0.002,0.000001,333333333.3333333,1e+30,123456789012345680000]"
        );
    }

    #[test]
    fn escapes_strings_minimally() {
        assert_eq!(jcs(r#""\u0041\u00e9\u2028\u000f\n\"\\/""#), "\"Aé\u{2028}\\u000f\\n\\\"\\\\/\"");
    }

    #[test]
    fn rfc_8785_main_example() {
        let input = r#"{
          "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
          "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
          "literals": [null, true, false]
        }"#;
        assert_eq!(
            jcs(input),
            r#"{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}"#
        );
    }
}
