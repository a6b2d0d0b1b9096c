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

use sqlx::PgPool;

/// The schemas whose tables the projector writes.
const SCHEMAS: [&str; 3] = [crate::LIVE_SCHEMA, crate::REBUILD_SCHEMA, "audit"];

/// Analyses every table of the read models that has grown or changed past
/// autoanalyze's threshold since its statistics were gathered; returns the
/// tables analysed.
pub async fn analyze_grown(pool: &PgPool) -> Result<Vec<String>, sqlx::Error> {
    let grown: Vec<(String, String)> = sqlx::query_as(
        "select s.schemaname::text, s.relname::text
           from pg_stat_user_tables s join pg_class c on c.oid = s.relid
          where s.schemaname = any($1)
            and s.n_mod_since_analyze > 50 + 0.1 * greatest(c.reltuples, 0)
          order by s.n_mod_since_analyze desc",
    )
    .bind(SCHEMAS.as_slice())
    .fetch_all(pool)
    .await?;
    let mut analysed = Vec::with_capacity(grown.len());
    for (schema, table) in grown {
        let name = format!("{}.{}", quoted(&schema), quoted(&table));
        // A table dropped meanwhile (a rebuild's swap) is no failure.
        match sqlx::query(&format!("analyze {name}")).execute(pool).await {
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
