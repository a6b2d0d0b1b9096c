//! A real query role for tests: `safeguard::roles::query::run` on a free port,
//! reading a test database, with the gateway's principals.

use platform::config::{DatabaseArgs, NatsArgs, QueryArgs};
use std::path::Path;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// What a test query role may serve at once, and how long it waits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub http: platform::http::Limits,
    pub streams: usize,
    pub streams_per_principal: usize,
    pub stream_recheck: std::time::Duration,
    /// How long a read with `min_position` waits.
    pub read_wait: std::time::Duration,
    /// The role's time of reading.
    pub clock: fn() -> chrono::DateTime<chrono::Utc>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            http: platform::http::Limits::default(),
            streams: 200,
            streams_per_principal: 8,
            stream_recheck: std::time::Duration::from_millis(500),
            read_wait: std::time::Duration::from_secs(5),
            clock: chrono::Utc::now,
        }
    }
}

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
        let session_key = principals.with_file_name("session.key");
        Self::launch(nats, database_url, principals, master_key, public_key, &session_key, Limits::default()).await
    }

    /// As [`TestQuery::start`], signing page sessions with the key at `session_key`.
    pub async fn start_with_session_key(
        nats_url: &str,
        database_url: &str,
        gateway: &crate::gateway::TestGateway,
        session_key: &Path,
    ) -> Self {
        Self::beside(nats_url, database_url, gateway, session_key, Limits::default()).await
    }

    /// As [`TestQuery::start`], with the HTTP and stream limits given.
    pub async fn start_limited(
        nats_url: &str,
        database_url: &str,
        gateway: &crate::gateway::TestGateway,
        limits: Limits,
    ) -> Self {
        Self::beside(nats_url, database_url, gateway, &gateway.path("session.key"), limits).await
    }

    /// A query role with `gateway`'s principals and keys.
    async fn beside(
        nats_url: &str,
        database_url: &str,
        gateway: &crate::gateway::TestGateway,
        session_key: &Path,
        limits: Limits,
    ) -> Self {
        Self::launch(
            NatsArgs::for_url(nats_url),
            database_url,
            &gateway.path("principals.toml"),
            &gateway.path("master.key"),
            &gateway.path("signing.key.pub"),
            session_key,
            limits,
        )
        .await
    }

    async fn launch(
        nats: NatsArgs,
        database_url: &str,
        principals: &Path,
        master_key: &Path,
        public_key: &Path,
        session_key: &Path,
        limits: Limits,
    ) -> Self {
        let database = DatabaseArgs { database_url: database_url.to_owned() };
        let query = QueryArgs {
            listen: "127.0.0.1:0".into(),
            access_timeout_ms: 2000,
            public_key: Some(public_key.to_owned()),
            session_key: session_key.to_owned(),
            export_key: session_key.with_file_name("export.key"),
            max_streams: limits.streams,
            max_streams_per_principal: limits.streams_per_principal,
            stream_recheck_ms: limits.stream_recheck.as_millis() as u64,
            read_wait_ms: limits.read_wait.as_millis() as u64,
        };
        let settings = platform::config::QuerySettings {
            nats,
            database,
            principals: principals.to_owned(),
            master_key: master_key.to_owned(),
            query,
            http: limits.http,
            clock: limits.clock,
        };
        let running = crate::start_role("query role", |stopped, bound| async move {
            safeguard::roles::query::run(settings, stopped, Some(bound)).await
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

/// The next Server-Sent Event's data (JSON) from `body`, within 20 s;
/// `buffer` keeps what arrived after it for the next call.
pub async fn next_sse_event(body: &mut reqwest::Response, buffer: &mut String) -> serde_json::Value {
    next_sse_event_with_id(body, buffer).await.1
}

/// As [`next_sse_event`], with the event's `id` (none if it had none).
#[allow(clippy::expect_used)]
pub async fn next_sse_event_with_id(
    body: &mut reqwest::Response,
    buffer: &mut String,
) -> (Option<u64>, serde_json::Value) {
    loop {
        if let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let id = block.lines().find_map(|l| l.strip_prefix("id:")).and_then(|v| v.trim().parse().ok());
            if let Some(data) = block.lines().find_map(|l| l.strip_prefix("data:")) {
                return (id, serde_json::from_str(data.trim()).expect("SSE data is JSON"));
            }
            continue;
        }
        let chunk =
            tokio::time::timeout(std::time::Duration::from_secs(20), body.chunk()).await.expect("an SSE event in time");
        buffer.push_str(&String::from_utf8_lossy(&chunk.expect("stream open").expect("the stream stays open")));
    }
}

/// Every access event on the audit stream of the NATS at `nats_url`, in order.
#[allow(clippy::expect_used)]
pub async fn access_events(nats_url: &str) -> Vec<serde_json::Value> {
    let client = async_nats::connect(nats_url).await.expect("connect");
    let js = async_nats::jetstream::new(client);
    let mut stream = js.get_stream(platform::bus::AUDIT_STREAM).await.expect("audit stream");
    let last = stream.info().await.expect("info").state.last_sequence;
    let mut out = Vec::new();
    for seq in 1..=last {
        if let Ok(m) = stream.get_raw_message(seq).await {
            out.push(serde_json::from_slice(&m.payload).expect("an access event is JSON"));
        }
    }
    out
}

/// A person signed in to the pages of the query role at `base`
/// (`http://host:port`), as a browser would be but over plain HTTP: the
/// session cookie, sent back by hand, and no redirect followed.
#[derive(Debug)]
pub struct PageSession {
    http: reqwest::Client,
    base: String,
    /// `__Host-sg_session=...`, ready for a `Cookie` header.
    pub cookie: String,
}

#[allow(clippy::expect_used)]
impl PageSession {
    /// Signs in through the form with our own `Origin`; the answer must be 303 with a cookie.
    pub async fn sign_in(base: &str, token: &str, acting_user: &str) -> Self {
        let base = base.trim_end_matches('/').to_owned();
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
        let r = http
            .post(format!("{base}/ui/sign-in"))
            .header("origin", &base)
            .form(&[("token", token), ("acting_user", acting_user)])
            .send()
            .await
            .expect("the query role answers");
        assert_eq!(r.status(), 303, "sign-in");
        let set = r.headers().get("set-cookie").and_then(|v| v.to_str().ok()).expect("a session cookie");
        let cookie = set.split(';').next().unwrap_or_default().to_owned();
        Self { http, base, cookie }
    }

    /// GETs a page with the session.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        let url = format!("{}{path}", self.base);
        self.http.get(url).header("cookie", &self.cookie).send().await.expect("the query role answers")
    }

    /// The CSRF token the start page gives this session.
    pub async fn csrf(&self) -> String {
        let html = self.get("/ui").await.text().await.unwrap_or_default();
        let token = html.split("name=\"csrf\" value=\"").nth(1).and_then(|rest| rest.split('"').next());
        token.expect("a CSRF token on the start page").to_owned()
    }

    /// Signs out through the form, with our own `Origin` and `csrf`.
    pub async fn sign_out(&self, csrf: &str) -> reqwest::Response {
        self.http
            .post(format!("{}/ui/sign-out", self.base))
            .header("origin", &self.base)
            .header("cookie", &self.cookie)
            .form(&[("csrf", csrf)])
            .send()
            .await
            .expect("the query role answers")
    }
}
