//! CSV cells for every CSV the backbone writes (chronologies, exports,
//! Annex A): RFC 4180 quoting, and a leading `=`, `+`, `-` or `@` prefixed
//! with `'` so a spreadsheet never runs a cell as a formula.

/// A cell's value as a CSV reader gets it back: a leading formula
/// character prefixed with `'`.
pub fn defused(value: &str) -> String {
    if value.starts_with(['=', '+', '-', '@']) { format!("'{value}") } else { value.to_owned() }
}

/// One cell.
pub fn field(value: &str) -> String {
    let value = defused(value);
    if value.contains([',', '"', '\n', '\r']) { format!("\"{}\"", value.replace('"', "\"\"")) } else { value }
}

/// One line of cells, CRLF-terminated.
pub fn line<S: AsRef<str>>(cells: &[S]) -> String {
    let mut out = cells.iter().map(|c| field(c.as_ref())).collect::<Vec<_>>().join(",");
    out.push_str("\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_and_defuses_formulas() {
        assert_eq!(field("plain"), "plain");
        assert_eq!(field("a,b"), "\"a,b\"");
        assert_eq!(field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(field("=1+1"), "'=1+1");
        assert_eq!(line(&["a", "b,c"]), "a,\"b,c\"\r\n");
    }
}
