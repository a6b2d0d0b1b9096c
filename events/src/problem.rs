//! Validation problems: where in the event a problem is (a JSON pointer) and
//! what a person should do about it.
//!
//! Messages never repeat the offending value. A value in the wrong field may be
//! a name or an address, and problems travel into HTTP responses and logs,
//! where personal data must never appear.

use std::fmt;

/// One thing wrong with an event, located by an RFC 6901 JSON pointer.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    pub pointer: String,
    pub message: String,
}

/// Every problem found in one event. Parsing never stops at the first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Problems(Vec<Problem>);

impl Problems {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, pointer: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem { pointer: pointer.into(), message: message.into() });
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Problem> {
        self.0.iter()
    }

    pub fn into_vec(self) -> Vec<Problem> {
        self.0
    }
}

impl IntoIterator for Problems {
    type Item = Problem;
    type IntoIter = std::vec::IntoIter<Problem>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{}: {}", if p.pointer.is_empty() { "/" } else { &p.pointer }, p.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for Problems {}

/// Appends one reference token to a JSON pointer, escaping `~` and `/`.
pub fn child_pointer(parent: &str, token: &str) -> String {
    let mut out = String::with_capacity(parent.len() + token.len() + 1);
    out.push_str(parent);
    out.push('/');
    for c in token.chars() {
        match c {
            '~' => out.push_str("~0"),
            '/' => out.push_str("~1"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointers_escape_tilde_and_slash() {
        assert_eq!(child_pointer("/data", "a/b~c"), "/data/a~1b~0c");
        assert_eq!(child_pointer("", "id"), "/id");
    }
}
