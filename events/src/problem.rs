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

/// Which form of an event is being read. A publisher sends personal fields
/// in clear; the stream stores them sealed (see [`crate::privacy`]). The
/// same catalogue types read both, so each [`crate::Personal`] field must be
/// in the form being read: clear text where a sealed value belongs is a
/// leak, and a sealed value from a publisher is not theirs to make.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Form {
    /// As a publisher sends it to the gateway.
    #[default]
    Received,
    /// As the gateway stored it on the stream.
    Stored,
}

/// Every problem found in one event. Parsing never stops at the first.
/// It also carries the [`Form`] being read, since every parser is handed it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Problems {
    list: Vec<Problem>,
    form: Form,
}

impl Problems {
    /// Problems of an event as a publisher sends it.
    pub fn new() -> Self {
        Self::default()
    }

    /// Problems of an event in the form `form`.
    pub fn reading(form: Form) -> Self {
        Self { list: Vec::new(), form }
    }

    pub fn form(&self) -> Form {
        self.form
    }

    pub fn push(&mut self, pointer: impl Into<String>, message: impl Into<String>) {
        self.list.push(Problem { pointer: pointer.into(), message: message.into() });
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Problem> {
        self.list.iter()
    }

    pub fn into_vec(self) -> Vec<Problem> {
        self.list
    }
}

impl IntoIterator for Problems {
    type Item = Problem;
    type IntoIter = std::vec::IntoIter<Problem>;
    fn into_iter(self) -> Self::IntoIter {
        self.list.into_iter()
    }
}

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.list.iter().enumerate() {
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
