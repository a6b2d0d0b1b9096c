//! Late facts: the same facts recorded in business order in one system, and
//! in reverse (each child's latest facts first, children interleaved
//! differently) in another, leave the same read models: the same
//! chronology order, caseloads, indicators and casework rows. Only recorded
//! times, stream positions and hashes may differ.

use chrono::NaiveDate;
use serde_json::Value;
use sqlx::PgPool;
use tests::gateway::{TestGateway, tokens};
use tests::projector::LiveProjector;
use tests::tables::{ARRIVAL_KEYS, CASEWORK, checksum_without};
use tests::{NatsServer, TestDatabase};

struct System {
    _nats: NatsServer,
    gateway: TestGateway,
    _db: TestDatabase,
    pool: PgPool,
    projector: LiveProjector,
}

impl System {
    async fn start() -> Self {
        let nats = NatsServer::start().await;
        let gateway = TestGateway::start(&nats.url()).await;
        let db = TestDatabase::create().await;
        let pool = db.pool().await;
        let projector = LiveProjector::start(&gateway, &nats.url(), &pool).await;
        Self { _nats: nats, gateway, _db: db, pool, projector }
    }

    async fn publish_all(&self, events: &[Value]) {
        let mut last = 0;
        for chunk in events.chunks(500) {
            let r = self.gateway.post(tokens::ADMIN, &Value::Array(chunk.to_vec())).await;
            assert_eq!(r.status, 201, "{}", &r.text[..r.text.len().min(500)]);
            let results = r.json["results"].as_array().expect("results");
            last = results.iter().filter_map(|x| x["stream_sequence"].as_u64()).max().unwrap_or(last);
        }
        self.projector.wait_for(last).await;
    }
}

/// A child's chronology in read order, without what only says when it was recorded.
async fn chronology(pool: &PgPool, child: uuid::Uuid) -> Vec<(String, String, String, String)> {
    let q = projections::chronology::Query {
        child,
        as_of: chrono::Utc::now(),
        from: None,
        to: None,
        limit: 100_000,
        after: None,
    };
    projections::chronology::read(pool, &q)
        .await
        .expect("chronology")
        .into_iter()
        .map(|e| {
            (
                e.id.as_str().to_owned(),
                e.event_type.name().to_owned(),
                e.occurred_at.to_rfc3339(),
                format!("{} {}", e.summary, e.status),
            )
        })
        .collect()
}

#[tokio::test]
async fn facts_recorded_late_and_out_of_order_give_the_same_read_models() {
    let until = NaiveDate::from_ymd_opt(2026, 3, 31).expect("date");
    let groups = safeguard::cli::seed::generate(13, 2, 25, until).expect("seed");
    let in_order: Vec<Value> = groups.iter().flatten().cloned().collect();
    // The other system learns everything backwards: councils and workers
    // (whose events are few) as they are, every child registered, then all
    // the children's other facts newest first, so each child's earliest
    // facts arrive last and the children interleave.
    let (people, children): (Vec<&Vec<Value>>, Vec<&Vec<Value>>) =
        groups.iter().partition(|g| g.first().is_some_and(|e| e["type"] != "child.registered"));
    let mut backwards: Vec<Value> = people.into_iter().flatten().cloned().collect();
    backwards.extend(children.iter().filter_map(|g| g.first()).cloned());
    let mut rest: Vec<Value> = children.iter().flat_map(|g| g.iter().skip(1)).cloned().collect();
    rest.reverse();
    // An amendment can only name an event already stored (CONTRACT.md), so
    // corrections and retractions still come after what they amend.
    let amends = |e: &Value| matches!(e["type"].as_str(), Some("record.corrected" | "record.retracted"));
    let (amendments, facts): (Vec<Value>, Vec<Value>) = rest.into_iter().partition(amends);
    backwards.extend(facts);
    backwards.extend(amendments);
    assert_eq!(backwards.len(), in_order.len());
    assert!(in_order.len() > 500, "a fixture big enough to matter: {}", in_order.len());

    let (a, b) = tokio::join!(System::start(), System::start());
    tokio::join!(a.publish_all(&in_order), b.publish_all(&backwards));

    for (table, order) in CASEWORK {
        let left_out = ARRIVAL_KEYS.iter().find(|(t, _)| *t == table).map_or("", |(_, c)| *c);
        assert_eq!(
            checksum_without(&a.pool, table, order, left_out).await,
            checksum_without(&b.pool, table, order, left_out).await,
            "{table} differs"
        );
    }
    let plans: i64 = sqlx::query_scalar("select count(*) from cp_plan").fetch_one(&a.pool).await.expect("count");
    assert!(plans > 0, "the fixture has plans");

    for group in &children {
        let child: uuid::Uuid = group[0]["subject"].as_str().and_then(|s| s.parse().ok()).expect("child id");
        assert_eq!(chronology(&a.pool, child).await, chronology(&b.pool, child).await, "chronology of {child}");
    }

    let today = NaiveDate::from_ymd_opt(2026, 3, 31).expect("date");
    for (code, _, _) in safeguard::cli::seed::COUNCILS.iter().take(2) {
        let council = &events::ids::CouncilCode::parse(code).expect("a council");
        for year in ["2023-24", "2024-25", "2025-26"] {
            let period = casework::indicators::Period::financial_year(year).expect("period");
            let ia = projections::indicators::document(&a.pool, council, period, today).await.expect("indicators");
            let ib = projections::indicators::document(&b.pool, council, period, today).await.expect("indicators");
            assert_eq!(ia, ib, "indicators of {council} in {year}");
        }
        let ca = projections::caseload::council(&a.pool, council, today).await.expect("caseload");
        let cb = projections::caseload::council(&b.pool, council, today).await.expect("caseload");
        assert_eq!(ca, cb, "caseloads of {council}");
        assert!(ca.workers.iter().any(|w| w.open_cases > 0), "someone holds a case");
    }
}
