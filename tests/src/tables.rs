//! Comparing read-model tables between databases or schemas, row for row.

use sqlx::PgPool;

/// The casework tables: what late facts must leave as if they came in business order.
pub const CASEWORK: [(&str, &str); 14] = [
    ("quality_flag", "child_id, ordinal"),
    ("child_review", "child_id, review_id"),
    ("child_status", "child_id"),
    ("referral", "child_id, referral_id"),
    ("assessment", "child_id, assessment_id"),
    ("icpc", "child_id, conference_id"),
    ("cp_plan", "child_id, plan_id"),
    ("allocation", "child_id, ordinal"),
    ("sighting", "child_id, seen_at, statutory, alone, ordinal"),
    ("worker_spell", "worker_id, ordinal"),
    ("council_setting", "council, effective_from"),
    ("section_47", "child_id, s47_id"),
    ("indicator_part", "child_id, council, measure, day, key"),
    ("indicator_tally", "council, measure, day, key"),
];

/// Columns that are keys of arrival, not facts: `sighting.ordinal` is the
/// sequence of the visit's own event, so two systems told the same visits
/// in different orders number them differently. Left out where such
/// systems are compared (the late-facts test); live and rebuilt read
/// models, told the same order, must still agree on them.
pub const ARRIVAL_KEYS: [(&str, &str); 1] = [("sighting", "ordinal")];

/// As [`checksum`], without the column `left_out`.
pub async fn checksum_without(pool: &PgPool, table: &str, order: &str, left_out: &str) -> String {
    let sql = format!(
        "select coalesce(md5(string_agg((row_to_json(t)::jsonb - 'received_at' - '{left_out}')::text, '\n' order by {order})), '')
           from {table} t"
    );
    #[allow(clippy::expect_used)]
    sqlx::query_scalar(&sql).fetch_one(pool).await.expect("checksum")
}

/// The read-model tables left out of comparisons, and why: what they hold
/// is when or how a projector ran, not what the stream says.
pub const NOT_COMPARED: [(&str, &str); 6] = [
    ("projector_position", "when each projector ran"),
    ("projector_health", "what each projector last saw, on its timer"),
    ("parked_subject", "the error a projector met, in its words"),
    ("child_fold", "which writing of a child's rows a projector last made"),
    ("_sqlx_migrations", "when the schema was migrated"),
    ("indicator_backfill", "whether the schema was migrated over read models older than tallies"),
];

/// Every read-model table with the order that makes its rows comparable.
/// `projector_position` is left out: it records when the projector ran.
pub fn read_models() -> Vec<(&'static str, &'static str)> {
    let mut all = vec![
        ("stored_event", "stream_seq"),
        // Empty once a projector has settled: compared, so an undrained queue shows.
        ("refold_pending", "child_id"),
        ("chronology_entry", "child_id, sequence"),
        ("dead_letter", "stream_seq"),
        ("parked_message", "stream_seq"),
        ("child_identifier", "child_id, kind, digest"),
        // Not in CASEWORK: an alert is raised when the backbone learns a
        // fact (its recorded_at), so two systems told the same facts at
        // different times raise them at different times, by design. A
        // rebuild replays the same recorded times and must equal live.
        ("alert", "alert_id"),
    ];
    all.extend(CASEWORK);
    all
}

/// An md5 of `table`'s rows in `order`, as JSON, leaving out `received_at`
/// (when a dead letter was kept, not what it holds). `table` may be
/// schema-qualified.
pub async fn checksum(pool: &PgPool, table: &str, order: &str) -> String {
    let sql = format!(
        "select coalesce(md5(string_agg((row_to_json(t)::jsonb - 'received_at')::text, '\n' order by {order})), '')
           from {table} t"
    );
    #[allow(clippy::expect_used)]
    sqlx::query_scalar(&sql).fetch_one(pool).await.expect("checksum")
}

/// The number of rows in `table`.
pub async fn count(pool: &PgPool, table: &str) -> i64 {
    #[allow(clippy::expect_used)]
    sqlx::query_scalar(&format!("select count(*) from {table}")).fetch_one(pool).await.expect("count")
}

/// The read-model tables whose rows differ between two databases.
pub async fn differences(a: &PgPool, b: &PgPool) -> Vec<&'static str> {
    let mut differ = Vec::new();
    for (table, order) in read_models() {
        if checksum(a, table, order).await != checksum(b, table, order).await {
            differ.push(table);
        }
    }
    differ
}

/// Every row of every read-model and audit table, as text.
#[allow(clippy::expect_used)]
pub async fn every_table_as_text(pool: &PgPool) -> String {
    let tables: Vec<(String, String)> = sqlx::query_as(
        "select table_schema::text, table_name::text from information_schema.tables
          where table_schema in ('projection', 'audit') and table_type = 'BASE TABLE'",
    )
    .fetch_all(pool)
    .await
    .expect("tables");
    let mut out = String::new();
    for (schema, table) in tables {
        let rows: Vec<String> =
            sqlx::query_scalar(&format!("select t::text from {schema}.{table} t")).fetch_all(pool).await.expect("rows");
        out.push_str(&rows.join("\n"));
    }
    out
}
