//! A real query role for tests: `services::run_query` on a free port,
//! reading a test database, with the gateway's principals.

use services::config::{DatabaseArgs, NatsArgs, QueryArgs};
use std::path::Path;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

#[derive(Debug)]
pub struct TestQuery {
    base: String,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
    http: reqwest::Client,
}

/// What the query role answered.
pub type Answer = crate::gateway::Response;

impl TestQuery {
    /// Starts one against `nats_url` and `database_url`, with the principals
    /// and master key of `gateway`.
    pub async fn start(nats_url: &str, database_url: &str, gateway: &crate::gateway::TestGateway) -> Self {
        Self::start_with(
            nats_url,
            database_url,
            &gateway.path("principals.toml"),
            &gateway.path("master.key"),
            &gateway.path("signing.key.pub"),
        )
        .await
    }

    pub async fn start_with(
        nats_url: &str,
        database_url: &str,
        principals: &Path,
        master_key: &Path,
        public_key: &Path,
    ) -> Self {
        Self::start_on(NatsArgs::for_url(nats_url), database_url, principals, master_key, public_key).await
    }

    /// As [`TestQuery::start_with`], with its own NATS settings (credentials, TLS).
    pub async fn start_on(
        nats: NatsArgs,
        database_url: &str,
        principals: &Path,
        master_key: &Path,
        public_key: &Path,
    ) -> Self {
        let database = DatabaseArgs { database_url: database_url.to_owned() };
        let query = QueryArgs {
            listen: "127.0.0.1:0".into(),
            access_timeout_ms: 2000,
            public_key: Some(public_key.to_owned()),
        };
        let (principals, master_key) = (principals.to_owned(), master_key.to_owned());
        let running = crate::start_role("query role", |stopped, bound| async move {
            services::run_query(nats, database, principals, master_key, query, stopped, Some(bound)).await
        })
        .await;
        Self { base: running.base, stop: Some(running.stop), task: Some(running.task), http: reqwest::Client::new() }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// GETs `path` with `token` (if any) and extra headers.
    pub async fn get_with(&self, token: Option<&str>, path: &str, headers: &[(&str, &str)]) -> Answer {
        let mut request = self.http.get(self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        #[allow(clippy::expect_used)]
        Answer::read(request.send().await.expect("the query role answers")).await
    }

    pub async fn get(&self, token: &str, path: &str) -> Answer {
        self.get_with(Some(token), path, &[]).await
    }

    pub async fn post(&self, token: &str, path: &str, body: &serde_json::Value) -> Answer {
        let request = self.http.post(self.url(path)).bearer_auth(token).json(body);
        #[allow(clippy::expect_used)]
        Answer::read(request.send().await.expect("the query role answers")).await
    }
}

impl Drop for TestQuery {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Every access event on the audit stream of the NATS at `nats_url`, in order.
#[allow(clippy::expect_used)]
pub async fn access_events(nats_url: &str) -> Vec<serde_json::Value> {
    let client = async_nats::connect(nats_url).await.expect("connect");
    let js = async_nats::jetstream::new(client);
    let mut stream = js.get_stream(services::bus::AUDIT_STREAM).await.expect("audit stream");
    let last = stream.info().await.expect("info").state.last_sequence;
    let mut out = Vec::new();
    for seq in 1..=last {
        if let Ok(m) = stream.get_raw_message(seq).await {
            out.push(serde_json::from_slice(&m.payload).expect("an access event is JSON"));
        }
    }
    out
}
