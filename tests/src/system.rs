//! A whole backbone for the end-to-end suites: its own NATS server, a
//! gateway, a database, a projector left running and a query role, with
//! the test principals of [`crate::gateway::tokens`].

use crate::gateway::{Options, TestGateway};
use crate::projector::LiveProjector;
use crate::query::TestQuery;
use crate::{NatsServer, TestDatabase};
use serde_json::Value;
use sqlx::PgPool;

#[derive(Debug)]
pub struct System {
    pub nats: NatsServer,
    pub gateway: TestGateway,
    pub db: TestDatabase,
    pub pool: PgPool,
    pub projector: LiveProjector,
    pub query: TestQuery,
}

impl System {
    pub async fn start() -> Self {
        Self::start_with(NatsServer::start().await, Options::default()).await
    }

    /// A backbone whose gateway signs a checkpoint every 200 ms, so what is
    /// published is soon under a signed root (certified exports).
    pub async fn certifying() -> Self {
        let options =
            Options { checkpoint_interval: Some(std::time::Duration::from_millis(200)), ..Options::default() };
        Self::start_with(NatsServer::start().await, options).await
    }

    /// On a server the test has prepared, with a gateway of its own settings.
    pub async fn start_with(nats: NatsServer, options: Options) -> Self {
        Self::start_on(nats, options, crate::query::Limits::default()).await
    }

    /// With a query role of the limits (and clock) given.
    pub async fn start_limited(limits: crate::query::Limits) -> Self {
        Self::start_on(NatsServer::start().await, Options::default(), limits).await
    }

    async fn start_on(nats: NatsServer, options: Options, limits: crate::query::Limits) -> Self {
        let gateway = TestGateway::start_with(&nats.url(), options).await;
        let db = TestDatabase::create().await;
        let pool = db.pool().await;
        let projector = LiveProjector::start_for(&gateway, &nats.url(), &pool).await;
        let query = TestQuery::start_limited(&nats.url(), db.url(), &gateway, limits).await;
        Self { nats, gateway, db, pool, projector, query }
    }

    /// Waits, up to 30 s, until a signed checkpoint covering stream position
    /// `position` has reached the read side (`audit.checkpoint`).
    #[allow(clippy::expect_used)]
    pub async fn wait_for_checkpoint(&self, position: u64) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            self.projector.wait_for_audit().await;
            let covers: Option<i64> = sqlx::query_scalar("select max(covers) from audit.checkpoint")
                .fetch_one(&self.pool)
                .await
                .expect("read the checkpoints");
            if covers.is_some_and(|c| c >= 0 && c as u64 >= position) {
                return;
            }
            assert!(std::time::Instant::now() < deadline, "no checkpoint covered stream position {position}");
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    /// Publishes `events` as `token`, which must be answered 201, waits until
    /// the projector has applied the last, and returns every result.
    #[allow(clippy::expect_used)]
    pub async fn publish(&self, token: &str, events: Vec<Value>) -> Vec<Value> {
        let r = self.gateway.post(token, &Value::Array(events)).await;
        assert_eq!(r.status, 201, "{}", r.text);
        let results = r.json["results"].as_array().cloned().unwrap_or_default();
        let last = results.last().and_then(|l| l["stream_sequence"].as_u64()).expect("stream sequence");
        self.projector.wait_for(last).await;
        results
    }
}
