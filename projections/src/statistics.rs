//! Planner statistics the projector keeps current itself. PostgreSQL plans
//! each read from its statistics of the tables, and gathers them in
//! autovacuum's autoanalyze; a server run with autovacuum off (as the
//! benchmark's machine was) never gathers them, and a table it has never
//! analysed is planned as if it were small. Then a kept child's read of its
//! new events (`refold::recorded_after`), an index lookup, ran as a parallel
//! scan of all of `stored_event`: 0.2 to 0.5 s a batch, most of the
//! steady-load latency of one benchmark run (docs/benchmarks.md). So the
//! projector analyses, on its health timer, each of its tables that has
//! changed as much since it was last analysed as autoanalyze's default
//! threshold allows (50 rows and a tenth of the table). Where autovacuum
//! runs, it has usually done so first and this finds nothing.
//!
//! A rebuild does the same for its own schema while it runs
//! (`rebuild::tend`), and once more before it reports its partitions
//! finished: its tables grow from nothing, and no live projector need
//! share its database (the benchmark's rebuilds ran on one with none).
//! Unanalysed, a batch's `delete ... where child_id = any($1)` of
//! thousands of ids was planned as a scan of the whole table, every batch:
//! 3.3 million rows read from `referral` alone in one rebuild of 425,496
//! events (docs/benchmarks.md).

use sqlx::PgConnection;

/// The schemas whose tables the live projector analyses: its own. A
/// rebuild's schema is its own processes' to analyse.
pub const LIVE: [&str; 2] = [crate::LIVE_SCHEMA, "audit"];

/// When a table is analysed again: once it has changed by this share of its
/// rows when last analysed (beyond autoanalyze's base of 50 rows).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Growth {
    /// Autoanalyze's default, a tenth: for the live tables, which grow slowly.
    Live,
    /// Doubled: for a rebuild's tables while they grow from nothing at
    /// thousands of rows a second. A plan goes wrong when an estimate is
    /// orders of magnitude out, not a tenth, and an `ANALYZE` of
    /// `stored_event` takes a second or two: at a tenth a rebuild spent a
    /// seventh of its database time analysing.
    Rebuilding,
    /// A tenth, and every table never analysed: for a rebuild's tables as
    /// its partitions finish. The server's activity counts, which the
    /// thresholds go by, show a session's writes only about a second
    /// later, so a short rebuild's tables could otherwise arrive at the
    /// switch with no statistics at all.
    Rebuilt,
}

impl Growth {
    fn fraction(self) -> f64 {
        match self {
            Self::Live | Self::Rebuilt => 0.1,
            Self::Rebuilding => 1.0,
        }
    }
}

/// [`analyze_grown`], its outcome logged. Statistics only speed the
/// work, so a failure is reported and the work goes on without them.
pub async fn analyse(conn: &mut PgConnection, schemas: &[&str], growth: Growth, projector: &str) {
    match analyze_grown(conn, schemas, growth).await {
        Ok(analysed) if !analysed.is_empty() => {
            tracing::info!(projector, tables = ?analysed, "gathered the statistics of tables that had grown");
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(projector, error = %e, "could not gather table statistics"),
    }
}

/// Analyses every table of `schemas` that has changed past `growth` since
/// its statistics were gathered; returns the tables analysed.
pub async fn analyze_grown(
    conn: &mut PgConnection,
    schemas: &[&str],
    growth: Growth,
) -> Result<Vec<String>, sqlx::Error> {
    let grown: Vec<(String, String)> = sqlx::query_as(
        "select s.schemaname::text, s.relname::text
           from pg_stat_user_tables s join pg_class c on c.oid = s.relid
          where s.schemaname = any($1)
            and (s.n_mod_since_analyze > 50 + $2 * greatest(c.reltuples, 0)
                 or ($3 and s.last_analyze is null and s.last_autoanalyze is null))
          order by s.n_mod_since_analyze desc",
    )
    .bind(schemas)
    .bind(growth.fraction())
    .bind(growth == Growth::Rebuilt)
    .fetch_all(&mut *conn)
    .await?;
    let mut analysed = Vec::with_capacity(grown.len());
    for (schema, table) in grown {
        let name = format!("{}.{}", quoted(&schema), quoted(&table));
        // A table dropped meanwhile (a rebuild's swap) is no failure.
        match sqlx::query(&format!("analyze {name}")).execute(&mut *conn).await {
            Ok(_) => analysed.push(name),
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P01") => {}
            Err(e) => return Err(e),
        }
    }
    Ok(analysed)
}

/// An identifier quoted as PostgreSQL's `quote_ident` would.
fn quoted(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}
