//! BENCHMARKS.md is written by two runs: `ops/bench` writes the whole file,
//! and the long `ops/bench --scale` run writes one marked section of it.
//! Each keeps what the other wrote.

const BEGIN: &str = "<!-- scale -->";
const END: &str = "<!-- /scale -->";
/// The marked section goes before the prose that reads the figures.
const BEFORE: &str = "## Reading the figures";

/// `document` with its marked section replaced by `section` (which carries
/// its own markers), or with `section` added before the prose if it has none.
pub fn with_scale_section(document: &str, section: &str) -> String {
    match (document.find(BEGIN), document.find(END)) {
        (Some(b), Some(e)) if b < e => format!("{}{section}{}", &document[..b], &document[e + END.len()..]),
        _ => match document.find(BEFORE) {
            Some(at) => format!("{}{section}\n\n{}", &document[..at], &document[at..]),
            None => format!("{}\n\n{section}\n", document.trim_end()),
        },
    }
}

/// The marked section of `document`, markers included, if it has one.
pub fn scale_section(document: &str) -> Option<&str> {
    let (b, e) = (document.find(BEGIN)?, document.find(END)?);
    (b < e).then(|| &document[b..e + END.len()])
}

/// The bytes every read-model table takes, indexes and TOAST included.
pub async fn read_model_bytes(pool: &sqlx::PgPool) -> i64 {
    #[allow(clippy::expect_used)]
    sqlx::query_scalar(
        "select coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint from pg_class c join pg_namespace n on n.oid = c.relnamespace
          where n.nspname = 'projection' and c.relkind = 'r'",
    )
    .fetch_one(pool)
    .await
    .expect("the read models' size")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_section_is_replaced_in_place_and_added_before_the_prose_once() {
        let fresh = "# Benchmarks\n\n| a |\n\n## Reading the figures\n\nprose\n";
        let one = with_scale_section(fresh, "<!-- scale -->\nfirst\n<!-- /scale -->");
        assert_eq!(
            one,
            "# Benchmarks\n\n| a |\n\n<!-- scale -->\nfirst\n<!-- /scale -->\n\n## Reading the figures\n\nprose\n"
        );
        let two = with_scale_section(&one, "<!-- scale -->\nsecond\n<!-- /scale -->");
        assert_eq!(two, one.replace("first", "second"));
        assert_eq!(scale_section(&two), Some("<!-- scale -->\nsecond\n<!-- /scale -->"));
        assert_eq!(scale_section(fresh), None);
        // What ops/bench writes afresh gets the kept section back unchanged.
        assert_eq!(with_scale_section(fresh, scale_section(&two).unwrap_or_default()), two);
    }
}
