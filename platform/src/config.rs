//! Configuration: each flag has an environment variable (CONTRACT.md).

use std::path::PathBuf;
use std::time::Duration;

/// Where NATS is and how the streams are made.
#[derive(Debug, Clone, clap::Args)]
pub struct NatsArgs {
    /// NATS server(s), comma-separated.
    #[arg(long = "nats-url", env = "NATS_URL", default_value = "nats://127.0.0.1:4222")]
    pub url: String,
    /// NATS credentials file for this role: a `.creds` file (JWT and
    /// seed, for servers run in operator mode) or a file holding only the
    /// role's nkey seed (`safeguard nkey`, for the static accounts in
    /// `ops/nats/cluster/accounts.conf`).
    #[arg(long = "nats-creds", env = "NATS_CREDS")]
    pub creds: Option<PathBuf>,
    /// PEM file of the CA that signed the NATS servers' certificates: with
    /// it, the connection requires TLS and trusts that CA.
    #[arg(long = "nats-ca", env = "NATS_CA")]
    pub ca: Option<PathBuf>,
    /// Replicas of each stream: 1 on one server, 3 in a cluster.
    #[arg(long, env = "SAFEGUARD_REPLICAS", default_value_t = 1)]
    pub replicas: usize,
    /// JetStream's duplicate window in seconds (ids stay unique forever regardless).
    #[arg(long, env = "SAFEGUARD_DUPLICATE_WINDOW_SECS", default_value_t = 120)]
    pub duplicate_window_secs: u64,
}

/// How the streams are made.
#[derive(Debug, Clone)]
pub struct StreamSettings {
    /// 1 on a single server, 3 in a cluster.
    pub replicas: usize,
    /// JetStream's own duplicate window. The backbone does not depend on it
    /// (the id index makes ids permanent), but it bounds JetStream's memory.
    pub duplicate_window: Duration,
}

impl NatsArgs {
    /// Plain connection to `url` with one replica and the default window.
    pub fn for_url(url: &str) -> Self {
        Self { url: url.to_owned(), creds: None, ca: None, replicas: 1, duplicate_window_secs: 120 }
    }

    pub fn stream_settings(&self) -> StreamSettings {
        StreamSettings { replicas: self.replicas, duplicate_window: Duration::from_secs(self.duplicate_window_secs) }
    }
}

/// The gateway role's settings.
#[derive(Debug, Clone, clap::Args)]
pub struct GatewayArgs {
    /// HTTP address.
    #[arg(long, env = "SAFEGUARD_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// Who may do what; reloaded on SIGHUP.
    #[arg(long, env = "SAFEGUARD_PRINCIPALS", default_value = "principals.toml")]
    pub principals: PathBuf,
    /// Ed25519 key the gateway signs events with.
    #[arg(long, env = "SAFEGUARD_SIGNING_KEY", default_value = "signing.key")]
    pub signing_key: PathBuf,
    /// Key that wraps children's data keys. Keep it apart from backups of the streams.
    #[arg(long, env = "SAFEGUARD_MASTER_KEY", default_value = "master.key")]
    pub master_key: PathBuf,
    /// Make the signing and master keys if they are missing (the first
    /// start of a new deployment). Without it a missing key stops the
    /// gateway: a wrong path must not quietly make a new master key, under
    /// which no stored child's personal data would open.
    #[arg(long = "create-keys", env = "SAFEGUARD_CREATE_KEYS", value_parser = clap::builder::BoolishValueParser::new())]
    pub create_keys: bool,
    /// How long a request may wait for JetStream before it is answered 503, in milliseconds.
    #[arg(long, env = "SAFEGUARD_PUBLISH_TIMEOUT_MS", default_value_t = 5000)]
    pub publish_timeout_ms: u64,
    /// How often a signed checkpoint is published when the stream has moved, in milliseconds; 0 for never.
    #[arg(long, env = "SAFEGUARD_CHECKPOINT_INTERVAL_MS", default_value_t = 300_000)]
    pub checkpoint_interval_ms: u64,
}

/// Everything the gateway needs, resolved.
#[derive(Debug, Clone)]
pub struct GatewaySettings {
    pub nats: NatsArgs,
    pub listen: String,
    pub principals: PathBuf,
    pub signing_key: PathBuf,
    pub master_key: PathBuf,
    /// Make missing keys (`--create-keys`) rather than refuse to start.
    pub create_keys: bool,
    pub publish_timeout: Duration,
    /// None: no checkpoints.
    pub checkpoint_interval: Option<Duration>,
    /// What one client, or all of them, may hold of the gateway.
    pub http: crate::http::Limits,
}

impl GatewaySettings {
    pub fn new(nats: NatsArgs, gateway: GatewayArgs, http: crate::http::Limits) -> Self {
        Self {
            nats,
            listen: gateway.listen,
            principals: gateway.principals,
            signing_key: gateway.signing_key,
            master_key: gateway.master_key,
            create_keys: gateway.create_keys,
            publish_timeout: Duration::from_millis(gateway.publish_timeout_ms),
            checkpoint_interval: (gateway.checkpoint_interval_ms > 0)
                .then(|| Duration::from_millis(gateway.checkpoint_interval_ms)),
            http,
        }
    }
}

/// Everything the query role needs, resolved.
#[derive(Debug, Clone)]
pub struct QuerySettings {
    pub nats: NatsArgs,
    pub database: DatabaseArgs,
    /// The principals (shared with the gateway: `SAFEGUARD_PRINCIPALS`).
    pub principals: PathBuf,
    /// The master key, which the gateway makes (`SAFEGUARD_MASTER_KEY`).
    pub master_key: PathBuf,
    pub query: QueryArgs,
    /// What one client, or all of them, may hold of the query role.
    pub http: crate::http::Limits,
    /// The time of reading: what alerts are raised, open or escalated is
    /// read against it (`chrono::Utc::now` but in tests of time's passing).
    pub clock: fn() -> chrono::DateTime<chrono::Utc>,
}

/// The read-model database.
#[derive(Debug, Clone, clap::Args)]
pub struct DatabaseArgs {
    /// Read-model database (created if missing).
    #[arg(long = "database-url", env = "DATABASE_URL", default_value = "postgres://postgres@127.0.0.1:5432/safeguard")]
    pub database_url: String,
}

/// The projector role's settings.
#[derive(Debug, Clone, clap::Args)]
pub struct ProjectorArgs {
    /// Names this projector's durable consumer and its position row.
    #[arg(long = "projector-name", env = "SAFEGUARD_PROJECTOR", default_value = "main")]
    pub name: String,
    /// Stream messages applied per transaction at most.
    #[arg(long = "projector-batch", env = "SAFEGUARD_PROJECTOR_BATCH", default_value_t = 1000)]
    pub batch: usize,
    /// HTTP address for the projector's /healthz, /readyz and /metrics (lag, dead letters).
    #[arg(
        id = "projector_listen",
        long = "projector-listen",
        env = "SAFEGUARD_PROJECTOR_LISTEN",
        default_value = "127.0.0.1:8082"
    )]
    pub listen: String,
    /// How often change notifications for dashboards are flushed, in milliseconds.
    #[arg(long = "notify-interval-ms", env = "SAFEGUARD_NOTIFY_INTERVAL_MS", default_value_t = 1000)]
    pub notify_interval_ms: u64,
    /// The partitions (0 to 31) this projector applies, such as `0-15`; all
    /// by default. Projectors sharing a database take disjoint shares under
    /// distinct names; the one holding partition 0 also applies the audit
    /// stream.
    #[arg(long = "partitions", env = "SAFEGUARD_PROJECTOR_PARTITIONS", value_parser = parse_partitions)]
    pub partitions: Option<events::subjects::Partitions>,
    /// How often the projector looks at the stream's real state (lag, lag
    /// in seconds, stall) for its metrics and `projector_health`, in milliseconds.
    #[arg(long = "health-interval-ms", env = "SAFEGUARD_PROJECTOR_HEALTH_INTERVAL_MS", default_value_t = 5000)]
    pub health_interval_ms: u64,
    /// No progress for this long, with an event waiting at least as long,
    /// is a stall: `safeguard_projector_stalled` is 1 and `/readyz` fails.
    #[arg(long = "stall-after-ms", env = "SAFEGUARD_PROJECTOR_STALL_AFTER_MS", default_value_t = 60_000)]
    pub stall_after_ms: u64,
}

/// `--partitions`, for the projector and `safeguard rebuild`.
pub fn parse_partitions(text: &str) -> Result<events::subjects::Partitions, String> {
    events::subjects::Partitions::parse(text)
}

/// The query role's settings (principals come from `SAFEGUARD_PRINCIPALS`).
#[derive(Debug, Clone, clap::Args)]
pub struct QueryArgs {
    /// HTTP address of the query role (the gateway has SAFEGUARD_LISTEN).
    #[arg(
        id = "query_listen",
        long = "query-listen",
        env = "SAFEGUARD_QUERY_LISTEN",
        default_value = "127.0.0.1:8081"
    )]
    pub listen: String,
    /// How long a read may wait for its access event to be stored before it is answered 503, in milliseconds.
    #[arg(long = "access-timeout-ms", env = "SAFEGUARD_ACCESS_TIMEOUT_MS", default_value_t = 5000)]
    pub access_timeout_ms: u64,
    /// The gateway's public keys (one base64 key per line), for `GET /v1/verify`.
    /// The gateway keeps them beside its signing key as `<signing key>.pub`,
    /// which is the default.
    #[arg(long = "public-key", env = "SAFEGUARD_PUBLIC_KEY")]
    pub public_key: Option<PathBuf>,
    /// The key that signs page session cookies (made if missing; its own,
    /// not derived from the master key). Query roles behind one address share it.
    #[arg(long = "session-key", env = "SAFEGUARD_SESSION_KEY", default_value = "session.key")]
    pub session_key: PathBuf,
    /// The key that signs certified exports (made if missing). Its public
    /// keys are kept beside it as `<export key>.pub`, one per line, every
    /// key it has signed with: what `safeguard verify --export` needs.
    #[arg(long = "export-key", env = "SAFEGUARD_EXPORT_KEY", default_value = "export.key")]
    pub export_key: PathBuf,
    /// How long a read with `min_position` may wait for the read models to
    /// apply it before it is answered 503 with their position, in milliseconds.
    #[arg(long = "read-wait-ms", env = "SAFEGUARD_READ_WAIT_MS", default_value_t = 5000)]
    pub read_wait_ms: u64,
    /// Event streams (Server-Sent Events) open at once on this query role.
    #[arg(long = "max-streams", env = "SAFEGUARD_MAX_STREAMS", default_value_t = 200)]
    pub max_streams: usize,
    /// Event streams one principal may hold open at once.
    #[arg(long = "max-streams-per-principal", env = "SAFEGUARD_MAX_STREAMS_PER_PRINCIPAL", default_value_t = 8)]
    pub max_streams_per_principal: usize,
    /// How often an open stream's credential and scope are checked again,
    /// in milliseconds: a stream ends within this long of a sign-out, a
    /// rotated token or a narrowed scope.
    #[arg(long = "stream-recheck-ms", env = "SAFEGUARD_STREAM_RECHECK_MS", default_value_t = 10_000)]
    pub stream_recheck_ms: u64,
}
