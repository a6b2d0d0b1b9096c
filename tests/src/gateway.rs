//! A real gateway for tests: `safeguard::roles::gateway::run` on a free port, with
//! its own principals, keys and settings, pointed at a test NATS.

use ed25519_dalek::VerifyingKey;
use platform::config::{GatewaySettings, NatsArgs};
use std::path::PathBuf;
use std::time::Duration;
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Tokens of the principals every gateway test starts with.
pub mod tokens {
    /// publish + admin, every council and type.
    pub const ADMIN: &str = "test-admin-token";
    /// publish + practitioner for Haringey (E09000014), every type.
    pub const HARINGEY: &str = "test-haringey-token";
    /// publish for Haringey, only concerns, sightings and information sharing.
    pub const POLICE: &str = "test-police-token";
    /// publish for Islington (E09000019) only.
    pub const ISLINGTON: &str = "test-islington-token";
    /// publish for Haringey, only concerns, sightings and information sharing: a health trust.
    pub const HEALTH: &str = "test-health-token";
    /// dashboard only.
    pub const DASHBOARD: &str = "test-dashboard-token";
    /// reviewer only, named `panel-reviewer` (reviews name it), every council.
    pub const REVIEWER: &str = "test-reviewer-token";
    /// auditor for Haringey only.
    pub const AUDITOR: &str = "test-auditor-token";
    /// auditor of every council.
    pub const NATIONAL_AUDITOR: &str = "test-national-auditor-token";
}

/// The `principals.toml` of the test principals (see [`tokens`]).
pub fn principals_toml() -> String {
    let entry = |name: &str, token: &str, roles: &str, councils: &str, types: &str| {
        format!(
            "[[principal]]\nname = \"{name}\"\ntoken_sha256 = \"{}\"\nroles = {roles}\ncouncils = {councils}\nevent_types = {types}\n\n",
            platform::principals::token_sha256(token)
        )
    };
    // Two publishers say who they are, as people would name them.
    let named = |entry: String, display: &str, agency: &str| {
        entry.replacen(
            "\ntoken_sha256",
            &format!("\ndisplay_name = \"{display}\"\nagency = \"{agency}\"\ntoken_sha256"),
            1,
        )
    };
    [
        entry("safeguard-admin", tokens::ADMIN, r#"["publish", "admin"]"#, r#"["*"]"#, r#"["*"]"#),
        named(
            entry("haringey-csc", tokens::HARINGEY, r#"["publish", "practitioner"]"#, r#"["E09000014"]"#, r#"["*"]"#),
            "Haringey children's services",
            "council_childrens_services",
        ),
        named(
            entry(
                "met-police",
                tokens::POLICE,
                r#"["publish"]"#,
                r#"["E09000014"]"#,
                r#"["concern.raised", "child.seen", "information.shared"]"#,
            ),
            "Metropolitan Police",
            "police",
        ),
        named(
            entry(
                "whittington-health",
                tokens::HEALTH,
                r#"["publish"]"#,
                r#"["E09000014"]"#,
                r#"["concern.raised", "child.seen", "information.shared"]"#,
            ),
            "Whittington Health",
            "health",
        ),
        entry("islington-csc", tokens::ISLINGTON, r#"["publish"]"#, r#"["E09000019"]"#, r#"["*"]"#),
        entry("partnership-dashboard", tokens::DASHBOARD, r#"["dashboard"]"#, r#"["*"]"#, r#"["*"]"#),
        entry("panel-reviewer", tokens::REVIEWER, r#"["reviewer"]"#, r#"["*"]"#, r#"["*"]"#),
        entry("haringey-auditor", tokens::AUDITOR, r#"["auditor"]"#, r#"["E09000014"]"#, r#"["*"]"#),
        entry("national-auditor", tokens::NATIONAL_AUDITOR, r#"["auditor"]"#, r#"["*"]"#, r#"["*"]"#),
    ]
    .concat()
}

fn new_dir() -> TempDir {
    #[allow(clippy::expect_used)]
    tempfile::Builder::new().prefix("sg-gateway-").tempdir().expect("temporary directory")
}

/// Settings a test may change before starting a gateway.
#[derive(Debug, Clone)]
pub struct Options {
    pub publish_timeout: Duration,
    pub duplicate_window: Duration,
    pub replicas: usize,
    /// Signed checkpoints every so often (none by default).
    pub checkpoint_interval: Option<Duration>,
    /// NATS credentials and CA (the secured cluster's gateway role).
    pub creds: Option<PathBuf>,
    pub ca: Option<PathBuf>,
    /// Timeouts and caps on the gateway's HTTP.
    pub http: platform::http::Limits,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            publish_timeout: Duration::from_secs(10),
            duplicate_window: Duration::from_secs(120),
            replicas: 1,
            checkpoint_interval: None,
            creds: None,
            ca: None,
            http: platform::http::Limits::default(),
        }
    }
}

/// A running gateway. Its keys and principals live in a directory that
/// outlives restarts of the gateway itself.
#[derive(Debug)]
pub struct TestGateway {
    dir: TempDir,
    nats_url: String,
    options: Options,
    base: String,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
    http: reqwest::Client,
}

impl TestGateway {
    pub async fn start(nats_url: &str) -> Self {
        Self::start_with(nats_url, Options::default()).await
    }

    pub async fn start_with(nats_url: &str, options: Options) -> Self {
        let dir = new_dir();
        #[allow(clippy::expect_used)]
        std::fs::write(dir.path().join("principals.toml"), principals_toml()).expect("write principals");
        Self::launch_in(dir, nats_url, options).await
    }

    /// A second gateway sharing this one's keys and principals (two
    /// instances behind one load balancer).
    pub async fn sibling(&self) -> Self {
        self.sibling_on(&self.nats_url.clone()).await
    }

    /// A gateway with this one's keys and principals on another NATS (a
    /// restored one, say).
    pub async fn sibling_on(&self, nats_url: &str) -> Self {
        let dir = new_dir();
        for file in ["principals.toml", "signing.key", "master.key"] {
            #[allow(clippy::expect_used)]
            std::fs::copy(self.dir.path().join(file), dir.path().join(file)).expect("copy");
        }
        Self::launch_in(dir, nats_url, self.options.clone()).await
    }

    async fn launch_in(dir: TempDir, nats_url: &str, options: Options) -> Self {
        let mut gateway = Self {
            dir,
            nats_url: nats_url.to_owned(),
            options,
            base: String::new(),
            stop: None,
            task: None,
            http: reqwest::Client::new(),
        };
        gateway.launch().await;
        gateway
    }

    fn settings(&self) -> GatewaySettings {
        GatewaySettings {
            nats: NatsArgs {
                url: self.nats_url.clone(),
                creds: self.options.creds.clone(),
                ca: self.options.ca.clone(),
                replicas: self.options.replicas,
                duplicate_window_secs: self.options.duplicate_window.as_secs().max(1),
            },
            listen: "127.0.0.1:0".into(),
            principals: self.path("principals.toml"),
            signing_key: self.path("signing.key"),
            master_key: self.path("master.key"),
            create_keys: true,
            publish_timeout: self.options.publish_timeout,
            checkpoint_interval: self.options.checkpoint_interval,
            http: self.options.http,
        }
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    async fn launch(&mut self) {
        let settings = self.settings();
        let running = crate::start_role("gateway", |stopped, bound| async move {
            safeguard::roles::gateway::run(settings, stopped, Some(bound)).await
        })
        .await;
        self.base = running.base;
        self.stop = Some(running.stop);
        self.task = Some(running.task);
    }

    /// Stops the gateway (graceful) and starts a new one on the same keys:
    /// a restart with a cold cache.
    pub async fn restart(&mut self) {
        self.shutdown().await;
        self.launch().await;
    }

    /// Rotates the signing key: stops the gateway, retires its key (kept
    /// as `signing.key.retired`) and starts it again, which makes a new key
    /// and adds its public key to `signing.key.pub`.
    pub async fn rotate_signing_key(&mut self) {
        self.shutdown().await;
        #[allow(clippy::expect_used)]
        std::fs::rename(self.path("signing.key"), self.path("signing.key.retired")).expect("retire the key");
        self.launch().await;
    }

    pub async fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Asks this gateway to erase `child`'s data key as `token`, with
    /// `headers` (`x-purpose`, the basis; `x-acting-user`).
    pub async fn erase(&self, token: &str, child: &str, headers: &[(&str, &str)]) -> Response {
        let mut request = self.http.post(self.url(&format!("/v1/children/{child}/erasure"))).bearer_auth(token);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        #[allow(clippy::expect_used)]
        Response::read(request.send().await.expect("the gateway answers")).await
    }

    /// The public key events are signed with.
    pub fn verifying_key(&self) -> VerifyingKey {
        #[allow(clippy::expect_used)]
        let text = std::fs::read_to_string(self.path("signing.key")).expect("signing key");
        #[allow(clippy::expect_used)]
        events::chain::decode_signing_key(&text).expect("key").verifying_key()
    }

    /// POSTs `body` (JSON) to `/v1/events` with `token`.
    pub async fn post(&self, token: &str, body: &serde_json::Value) -> Response {
        self.post_raw(Some(token), "application/cloudevents+json", body.to_string().into_bytes()).await
    }

    /// POSTs `body` to `/v1/events` with `token` and these headers (a
    /// content type among them, or none), as a CloudEvents SDK sends.
    pub async fn post_with(&self, token: &str, headers: &[(&str, &str)], body: Vec<u8>) -> Response {
        let mut request = self.http.post(self.url("/v1/events")).bearer_auth(token).body(body);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        #[allow(clippy::expect_used)]
        Response::read(request.send().await.expect("the gateway answers")).await
    }

    pub async fn post_raw(&self, token: Option<&str>, content_type: &str, body: Vec<u8>) -> Response {
        let mut request = self.http.post(self.url("/v1/events")).header("content-type", content_type).body(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        #[allow(clippy::expect_used)]
        Response::read(request.send().await.expect("the gateway answers")).await
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// What a role answered over HTTP.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub content_type: String,
    pub json: serde_json::Value,
    pub text: String,
    pub headers: reqwest::header::HeaderMap,
}

impl Response {
    /// Reads status, content type and body (parsed as JSON when it is).
    pub async fn read(response: reqwest::Response) -> Self {
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let content_type =
            response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        let text = response.text().await.unwrap_or_default();
        let json = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
        Self { status, content_type, json, text, headers }
    }

    /// The `index`-th result of a 201.
    pub fn result(&self, index: usize) -> &serde_json::Value {
        &self.json["results"][index]
    }

    /// The highest stream sequence among a 201's results (0 if none).
    pub fn last_stream_sequence(&self) -> u64 {
        self.json["results"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|x| x["stream_sequence"].as_u64())
            .max()
            .unwrap_or(0)
    }
}

/// Every message of the event stream, in order, as (NATS subject, payload).
pub async fn stream_messages(nats_url: &str) -> Vec<(String, Vec<u8>)> {
    #[allow(clippy::expect_used)]
    let client = crate::connect(nats_url).await;
    let js = async_nats::jetstream::new(client);
    #[allow(clippy::expect_used)]
    let mut stream = js.get_stream(platform::bus::EVENTS_STREAM).await.expect("stream");
    #[allow(clippy::expect_used)]
    let last = stream.info().await.expect("info").state.last_sequence;
    let mut out = Vec::new();
    for seq in 1..=last {
        if let Ok(m) = stream.get_raw_message(seq).await {
            out.push((m.subject.to_string(), m.payload.to_vec()));
        }
    }
    out
}

/// The stored events of one subject, in stream order.
pub async fn subject_history(nats_url: &str, subject: &events::Subject) -> Vec<Vec<u8>> {
    let wanted = events::subjects::event_subject(subject);
    stream_messages(nats_url).await.into_iter().filter(|(s, _)| *s == wanted).map(|(_, p)| p).collect()
}

/// The number of messages in the event stream.
pub async fn stream_count(nats_url: &str) -> u64 {
    #[allow(clippy::expect_used)]
    let client = crate::connect(nats_url).await;
    let js = async_nats::jetstream::new(client);
    match js.get_stream(platform::bus::EVENTS_STREAM).await {
        Ok(mut s) => s.info().await.map(|i| i.state.messages).unwrap_or(0),
        Err(_) => 0,
    }
}

/// Loads seeded groups (`safeguard::cli::seed::generate`) through `gateway` as
/// admin, workers and councils first, in batches of 1,000 that never split
/// a subject, four requests at a time. Returns the highest stream sequence stored.
pub async fn load_groups(gateway: &std::sync::Arc<TestGateway>, groups: Vec<Vec<serde_json::Value>>) -> u64 {
    use futures::StreamExt as _;
    let (people, children): (Vec<_>, Vec<_>) =
        groups.into_iter().partition(|g| g.first().is_some_and(|e| e["type"] != "child.registered"));
    let mut last = 0;
    for part in [people, children] {
        let mut sends = futures::stream::iter(safeguard::cli::seed::batches(&part, 1000).into_iter().map(|batch| {
            let gw = gateway.clone();
            async move {
                let r = gw.post(tokens::ADMIN, &serde_json::Value::Array(batch)).await;
                assert_eq!(r.status, 201, "{}", &r.text[..r.text.len().min(300)]);
                r.last_stream_sequence()
            }
        }))
        .buffer_unordered(4);
        while let Some(seq) = sends.next().await {
            last = last.max(seq);
        }
    }
    last
}
