//! The one HTTP client of the commands that call the roles (`seed`,
//! `import`, `chronology`, `return`, `erase`): the bearer token, who is
//! acting and why (for the access log), problem+json answers turned into
//! errors that quote the role's own detail and request id, and resending
//! while the gateway says storage is unavailable (resending the same ids is
//! always safe: nothing is stored twice).

use anyhow::Context as _;
use serde_json::Value;
use std::time::Duration;

/// A role, by its base address, with the caller's credentials.
#[derive(Debug, Clone)]
pub struct RoleClient {
    http: reqwest::Client,
    base: String,
    /// "gateway" or "query role", for messages.
    role: &'static str,
    token: String,
    acting_user: Option<String>,
    purpose: Option<String>,
    /// Reads wait until the read models hold this stream position (`min_position`).
    min_position: Option<u64>,
}

/// A role's answer: its status and body.
#[derive(Debug)]
pub struct Answer {
    pub status: reqwest::StatusCode,
    pub body: bytes::Bytes,
}

impl Answer {
    /// The body as JSON (`null` if it is not).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// The answer if it is a success, else an error quoting the role's detail.
    pub fn success(self, role: &str) -> anyhow::Result<Self> {
        if self.status.is_success() {
            return Ok(self);
        }
        let body = self.json();
        let detail = body["detail"].as_str().unwrap_or("");
        let id = body["request_id"].as_str().map(|id| format!(" (request id {id})")).unwrap_or_default();
        anyhow::bail!("the {role} answered {}: {detail}{id}", self.status)
    }
}

/// How long one request may take: imports send batches of 1,000 events.
const TIMEOUT: Duration = Duration::from_secs(120);

impl RoleClient {
    fn new(role: &'static str, base: &str, token: &str) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder().timeout(TIMEOUT).build().context("could not make an HTTP client")?;
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
            role,
            token: token.to_owned(),
            acting_user: None,
            purpose: None,
            min_position: None,
        })
    }

    pub fn gateway(base: &str, token: &str) -> anyhow::Result<Self> {
        Self::new("gateway", base, token)
    }

    pub fn query(base: &str, token: &str) -> anyhow::Result<Self> {
        Self::new("query role", base, token)
    }

    /// Who is acting and why: `X-Acting-User` and `X-Purpose` on every request.
    pub fn acting(mut self, acting_user: Option<String>, purpose: Option<String>) -> Self {
        self.acting_user = acting_user;
        self.purpose = purpose;
        self
    }

    /// Every read waits until the read models have applied `position` (a
    /// 201's `stream_sequence`): read-your-writes for a script that published.
    pub fn at_least(mut self, position: Option<u64>) -> Self {
        self.min_position = position;
        self
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let mut request = self.http.request(method.clone(), format!("{}{path}", self.base)).bearer_auth(&self.token);
        if method == reqwest::Method::GET
            && let Some(position) = self.min_position
        {
            request = request.query(&[("min_position", position)]);
        }
        if let Some(user) = &self.acting_user {
            request = request.header("x-acting-user", user);
        }
        if let Some(purpose) = &self.purpose {
            request = request.header("x-purpose", purpose);
        }
        request
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> anyhow::Result<Answer> {
        let response = request.send().await.with_context(|| format!("could not reach the {}", self.role))?;
        let status = response.status();
        let body = response.bytes().await.with_context(|| format!("the {}'s answer could not be read", self.role))?;
        Ok(Answer { status, body })
    }

    /// GETs `path` with `query`; an error unless it succeeds.
    pub async fn get(&self, path: &str, query: &[(&str, &str)]) -> anyhow::Result<Answer> {
        self.send(self.request(reqwest::Method::GET, path).query(query)).await?.success(self.role)
    }

    /// POSTs nothing to `path`; an error unless it succeeds.
    pub async fn post_empty(&self, path: &str) -> anyhow::Result<Answer> {
        self.send(self.request(reqwest::Method::POST, path)).await?.success(self.role)
    }

    /// Publishes a batch of events (already encoded) to the gateway,
    /// resending while it is unreachable or answers 503, up to `attempts`
    /// times with a growing wait. The last answer is returned whatever it
    /// is, for the caller to read its refusals.
    pub async fn publish(&self, batch: &[u8], attempts: u32) -> anyhow::Result<Answer> {
        let mut wait = Duration::from_millis(200);
        for attempt in 1..=attempts.max(1) {
            let request = self
                .request(reqwest::Method::POST, "/v1/events")
                .header("content-type", "application/cloudevents-batch+json")
                .body(batch.to_vec());
            match self.send(request).await {
                Ok(answer) if answer.status != reqwest::StatusCode::SERVICE_UNAVAILABLE || attempt == attempts => {
                    return Ok(answer);
                }
                Ok(_) => {}
                Err(e) if attempt == attempts => return Err(e),
                Err(e) => tracing::warn!(error = %e, "the gateway did not answer; sending the batch again"),
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(5));
        }
        anyhow::bail!("the gateway stayed unavailable")
    }
}
