//! The projector: a durable JetStream pull consumer whose batches are applied
//! in one Postgres transaction each and acknowledged only after commit.
//!
//! PostgreSQL holds the truth about how far the read models have got
//! (`projector_position`, written in each batch's transaction). At start the
//! consumer is made afresh from that position, so a database restored from
//! an older backup, or a fresh one, replays exactly what it lacks; a crash
//! between commit and acknowledgement only redelivers messages the
//! position already covers, which [`crate::store::apply_batch`] skips.

use crate::kept::Kept;
use crate::notify::Notifier;
use crate::store::{self, Incoming};
use async_nats::jetstream::{self, consumer};
use events::chain::Signers;
use events::privacy::ChildKeys;
use events::subjects::Partitions;
use futures::StreamExt;
use sqlx::PgPool;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// The stream the projector reads.
use events::subjects::EVENTS_STREAM;

#[derive(Debug, Clone)]
pub struct Settings {
    /// Names the durable consumer and the row in `projector_position`.
    pub name: String,
    /// Messages applied per transaction at most.
    pub batch: usize,
    /// The partitions this projector owns: all, or some. A subject lives
    /// in one partition, so each child's events still arrive in order, and
    /// only its partition's projector writes its rows.
    pub partitions: Partitions,
    /// Children's data keys, for the NHS-number index; without them that
    /// index is left empty.
    pub keys: Option<Arc<dyn ChildKeys>>,
    /// The histories of the children folded last, kept between batches
    /// (see [`crate::kept`]); shared by clones of these settings.
    pub kept: Arc<Kept>,
    /// The gateway's public keys: a message on the event subjects that
    /// they do not verify is a dead letter, never history. There is no
    /// default: a projector that trusted anything would apply forgeries.
    pub signers: Arc<dyn Signers>,
    /// How often the stream's real state is looked at for the metrics and
    /// `projector_health`, whether or not batches arrive.
    pub health_interval: Duration,
    /// No progress for this long while the oldest unapplied event is at
    /// least this old is a stall.
    pub stall_after: Duration,
}

impl Settings {
    /// The usual settings (the projector `main`, every partition, batches
    /// of 1,000), taking events signed by `signers`.
    pub fn new(signers: Arc<dyn Signers>) -> Self {
        Self {
            name: "main".into(),
            batch: 1000,
            partitions: Partitions::all(),
            keys: None,
            kept: Arc::new(Kept::default()),
            signers,
            health_interval: Duration::from_secs(5),
            stall_after: Duration::from_secs(60),
        }
    }
}

/// Counters the projector keeps for its metrics.
#[derive(Debug, Default)]
pub struct Stats {
    pub applied: AtomicU64,
    pub dead_letters: AtomicU64,
    pub position: AtomicU64,
    /// The stream's last sequence when last looked at (on a timer, see [`watch`]).
    pub stream_last: AtomicU64,
    /// Stream head minus applied position when something this projector
    /// applies is waiting, else 0 (the stream also holds id-index messages,
    /// so while behind this is an upper bound).
    pub lag: AtomicU64,
    /// The age of the oldest event this projector has not applied, in
    /// milliseconds (0 when none waits).
    pub lag_ms: AtomicU64,
    /// 1 while stalled: no progress for `stall_after` with an event waiting at least that long.
    pub stalled: AtomicBool,
    /// Children of its partitions waiting to be folded again after their
    /// council's settings changed (`refold_pending`).
    pub refolds_pending: AtomicU64,
    /// Children the next drain transaction folds (0 before the first; see `DRAIN_BUDGET`).
    pub drain_chunk: std::sync::atomic::AtomicUsize,
    /// Subjects this projector has parked, as the database holds them.
    pub parked: AtomicU64,
    /// Subjects parked since start.
    pub parkings: AtomicU64,
    /// Sessions ended by a NATS or PostgreSQL failure (each followed by a retry).
    pub interruptions: AtomicU64,
    /// Times the stream was found to have gone back on messages it had
    /// delivered, and the read models were corrected (see [`crate::reconcile`]).
    pub reconciliations: AtomicU64,
    /// Events the read models hold at positions the stream has deleted
    /// (which it denies: someone changed it), counted at each check that
    /// finds them; the rows are kept (see [`crate::reconcile`]).
    pub deletions: AtomicU64,
    /// Set by the watcher when the stream elected a leader: the positions
    /// after this one are read back and checked before the next batch,
    /// and it is cleared only once they have been.
    pub recheck_after: std::sync::Mutex<Option<u64>>,
    /// Looks the watcher has completed at the stream's state.
    pub looks: AtomicU64,
    /// When the position last moved, and when the last failure was, in Unix milliseconds (0: never).
    pub progress_at_ms: AtomicU64,
    pub last_error_at_ms: AtomicU64,
}

impl Stats {
    pub fn lag(&self) -> u64 {
        self.lag.load(Ordering::Relaxed)
    }

    pub fn lag_seconds(&self) -> f64 {
        self.lag_ms.load(Ordering::Relaxed) as f64 / 1000.0
    }

    pub fn stalled(&self) -> bool {
        self.stalled.load(Ordering::Relaxed)
    }

    fn failed_now(&self) {
        self.last_error_at_ms.store(now_ms(), Ordering::Relaxed);
    }

    /// Asks the pump to check the positions after `after` against the stream.
    fn recheck(&self, after: u64) {
        let mut recheck = self.recheck_after.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *recheck = Some(recheck.map_or(after, |a| a.min(after)));
    }

    fn recheck_wanted(&self) -> Option<u64> {
        *self.recheck_after.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Clears the request for `after` once it is checked, unless a wider
    /// one came in the meantime.
    fn rechecked(&self, after: u64) {
        let mut recheck = self.recheck_after.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if *recheck == Some(after) {
            *recheck = None;
        }
    }

    /// Whether positions wait to be read back and checked against the stream.
    pub fn recheck_pending(&self) -> bool {
        self.recheck_wanted().is_some()
    }
}

fn now_ms() -> u64 {
    u64::try_from(chrono::Utc::now().timestamp_millis()).unwrap_or(0)
}

#[derive(Debug, thiserror::Error)]
pub enum ProjectorError {
    #[error("the read-model database failed: {0}")]
    Database(#[from] sqlx::Error),
    #[error("could not migrate the read-model database: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("JetStream failed")]
    JetStream(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Another process wrote to the schema a rebuild is building.
    #[error(
        "another process wrote to the rebuild's schema (position {stored}); run one rebuild at a time, or give each share of it its own partitions and projector name"
    )]
    RebuildRaced { stored: u64 },
    /// A rebuild is under way and one of its shares already holds some of
    /// these partitions, or this projector name.
    #[error(
        "a rebuild is under way whose share {projector} holds partitions {partitions}: give each share of a rebuild its own partitions and projector name, or wait for it to finish"
    )]
    RebuildShared { projector: String, partitions: String },
    /// The table of a shared rebuild's shares holds what no share wrote.
    #[error("the rebuild's table of shares is not as its shares left it: {0}")]
    RebuildShares(String),
    #[error("the key store failed")]
    Keys(#[source] events::privacy::KeyStoreError),
    /// A fold failed outside a per-subject application (which parks instead).
    #[error("{0}")]
    Fold(String),
    /// A delivery never reached us (see [`Deliveries`]).
    #[error("delivery {got} arrived where {expected} was due: some messages never reached the projector")]
    Gap { expected: u64, got: u64 },
}

/// Checks that a consumer's deliveries reach us without a gap.
///
/// A pull request whose messages are lost on the way (the connection
/// dropped while they were in flight, as when the whole cluster restarts)
/// leaves them delivered but never seen. The next request carries on after
/// them, and acknowledging its last message (`AckPolicy::All`) would
/// acknowledge the unseen ones too: they would never be applied. The
/// consumer numbers its deliveries 1, 2, 3, ... from its creation, so a
/// number out of turn is a loss; the batch is not applied, and the caller
/// starts again from the position PostgreSQL holds.
///
/// It also holds the batch fetched ahead (see [`pump`]), so that a pump
/// stopping at a position leaves it to the next pump on the same consumer
/// rather than losing what it delivered.
#[derive(Debug)]
pub struct Deliveries {
    next: u64,
    ahead: Option<Ahead>,
}

impl Deliveries {
    /// For a consumer just made: its first delivery is number 1.
    pub fn new() -> Self {
        Self { next: 1, ahead: None }
    }

    pub fn check(&mut self, consumer_sequence: u64) -> Result<(), ProjectorError> {
        if consumer_sequence != self.next {
            return Err(ProjectorError::Gap { expected: self.next, got: consumer_sequence });
        }
        self.next += 1;
        Ok(())
    }
}

impl Default for Deliveries {
    fn default() -> Self {
        Self::new()
    }
}

pub(crate) fn js_error(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> ProjectorError {
    ProjectorError::JetStream(e.into())
}

/// Applies the stream to the read models until `shutdown` resolves.
pub async fn run(
    pool: PgPool,
    js: jetstream::Context,
    settings: Settings,
    stats: Arc<Stats>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ProjectorError> {
    run_with(pool, js, settings, stats, None, shutdown).await
}

/// [`run`], marking what each batch changed on `notifier`.
pub async fn run_with(
    pool: PgPool,
    js: jetstream::Context,
    settings: Settings,
    stats: Arc<Stats>,
    notifier: Option<Notifier>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ProjectorError> {
    crate::migrate(&pool, crate::LIVE_SCHEMA).await?;
    let durable = format!("sg-projector-{}", settings.name);
    stats.progress_at_ms.store(now_ms(), Ordering::Relaxed);
    // The watcher lives exactly as long as this function, however it returns.
    let _watching = AbortOnDrop(tokio::spawn(watch(pool.clone(), js.clone(), settings.clone(), stats.clone())));
    tokio::pin!(shutdown);
    let mut failures: u32 = 0;
    loop {
        match session(&pool, &js, &durable, &settings, &stats, notifier.as_ref(), &mut shutdown).await {
            Ok(Outcome::Stopped | Outcome::Reached) => return Ok(()),
            Ok(Outcome::Moved { stored }) => {
                failures = 0;
                tracing::info!(projector = %settings.name, from = stored, "read models moved under the projector, resuming from them");
            }
            // NATS or PostgreSQL went away (a restart, a failover): nothing
            // was acknowledged that is not committed, so start again from
            // what PostgreSQL holds, backing off up to 5 s.
            Err(e) => {
                stats.interruptions.fetch_add(1, Ordering::Relaxed);
                stats.failed_now();
                failures = failures.saturating_add(1);
                let wait = Duration::from_millis(200 * u64::from(failures.min(25)));
                tracing::warn!(projector = %settings.name, error = &e as &dyn std::error::Error, retry_in_ms = wait.as_millis() as u64, "projector interrupted");
                tokio::select! {
                    () = &mut shutdown => return Ok(()),
                    () = tokio::time::sleep(wait) => {}
                }
            }
        }
    }
}

/// Aborts a background task when dropped.
pub(crate) struct AbortOnDrop(pub tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One run of the consumer, from the position PostgreSQL holds until
/// shutdown, a move of the read models, or a failure.
async fn session<F: Future<Output = ()> + Unpin>(
    pool: &PgPool,
    js: &jetstream::Context,
    durable: &str,
    settings: &Settings,
    stats: &Stats,
    notifier: Option<&Notifier>,
    shutdown: &mut F,
) -> Result<Outcome, ProjectorError> {
    let stream = js.get_stream(EVENTS_STREAM).await.map_err(js_error)?;
    let mut conn = pool.acquire().await?;
    let from = store::position(&mut conn, &settings.name).await?;
    drop(conn);
    // The stream may have gone back on what it delivered last before this
    // session (a leader lost in an outage): read it back first.
    let from = recheck(pool, &stream, settings, stats, notifier, from.saturating_sub(crate::reconcile::WINDOW), from)
        .await?
        .unwrap_or(from);
    stats.position.store(from, Ordering::Relaxed);
    // The durable is rebuilt from the database's position: Postgres, not the
    // consumer's ack floor, says what the read models hold.
    let _ = stream.delete_consumer(durable).await;
    let consumer = consumer_from(&stream, Some(durable.to_owned()), &settings.partitions.filters(), from).await?;
    tracing::info!(projector = %settings.name, from, "projector started");
    let mut deliveries = Deliveries::new();
    pump(pool, &stream, &consumer, &mut deliveries, settings, stats, from, notifier, Target::Forever(shutdown)).await
}

/// A pull consumer over `filters` that starts after `from`.
pub(crate) async fn consumer_from(
    stream: &jetstream::stream::Stream,
    durable: Option<String>,
    filters: &[String],
    from: u64,
) -> Result<consumer::PullConsumer, ProjectorError> {
    let (filter_subject, filter_subjects) = filter_fields(filters);
    stream
        .create_consumer(consumer::pull::Config {
            durable_name: durable,
            filter_subject,
            filter_subjects,
            deliver_policy: consumer::DeliverPolicy::ByStartSequence { start_sequence: from + 1 },
            ack_policy: consumer::AckPolicy::All,
            ack_wait: Duration::from_secs(60),
            max_ack_pending: 100_000,
            inactive_threshold: Duration::from_secs(300),
            ..Default::default()
        })
        .await
        .map_err(js_error)
}

/// A consumer's `filter_subject` and `filter_subjects` for `filters`: one
/// filter goes in `filter_subject`, which every server version takes.
pub(crate) fn filter_fields(filters: &[String]) -> (String, Vec<String>) {
    match filters {
        [one] => (one.clone(), Vec::new()),
        many => (String::new(), many.to_vec()),
    }
}

/// When [`pump`] stops.
pub(crate) enum Target<'a, F: Future<Output = ()> + Unpin> {
    /// Until the future resolves.
    Forever(&'a mut F),
    /// Until nothing matching the filter is left undelivered (a rebuild
    /// catching up; under live traffic that is a moment, not a state).
    Head,
    /// Until the position reaches at least this stream sequence.
    Until(u64),
}

pub(crate) enum Outcome {
    Stopped,
    Reached,
    /// The stored position is not where this pump left it.
    Moved {
        stored: u64,
    },
}

/// One fetch's messages, decoded, with what [`Deliveries`] checks.
struct Fetched {
    batch: Vec<Incoming>,
    consumer_sequences: Vec<u64>,
    /// The publishers' traces the messages carry (`crate::trace`).
    traces: Vec<crate::trace::Carried>,
    /// The last message, whose acknowledgement acknowledges them all.
    last: Option<jetstream::Message>,
}

/// How long a fetch that does not wait (the batch fetched ahead topped up
/// with what came since) may go unanswered before the session ends.
const TOP_UP_DEADLINE: Duration = Duration::from_secs(5);

/// A fetch (and its decoding) running beside the batch being applied.
struct Ahead(tokio::task::JoinHandle<Result<Fetched, ProjectorError>>);

impl Ahead {
    fn start(consumer: &consumer::PullConsumer, settings: &Settings, wait: Duration) -> Self {
        Self(tokio::spawn(fetch(consumer.clone(), settings.batch, Some(wait), settings.signers.clone())))
    }

    async fn done(mut self) -> Result<Fetched, ProjectorError> {
        (&mut self.0).await.map_err(|e| ProjectorError::JetStream(e.into()))?
    }
}

impl std::fmt::Debug for Ahead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Ahead").field(&self.0.is_finished()).finish()
    }
}

impl Drop for Ahead {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Fetched {
    /// Messages fetched after these, appended: the last of them is then
    /// the one whose acknowledgement acknowledges all.
    fn extend(&mut self, more: Fetched) {
        self.batch.extend(more.batch);
        self.consumer_sequences.extend(more.consumer_sequences);
        self.traces.extend(more.traces);
        if more.last.is_some() {
            self.last = more.last;
        }
    }
}

/// The batch fetched ahead, with what came since, up to a full batch.
///
/// It was fetched when the batch before it began to be applied: under a
/// steady load it holds what had come by then, and what came during that
/// apply would wait behind it for the batch after. So it takes what is
/// there now, without waiting. A request without an expiry is answered at
/// once, but nothing in the client times it out: one lost in an outage
/// (the fault suite stops the whole cluster) would be waited for forever.
/// A deadline ends the session instead, which starts again from the
/// position PostgreSQL holds.
async fn top_up(
    consumer: &consumer::PullConsumer,
    settings: &Settings,
    mut fetched: Fetched,
) -> Result<Fetched, ProjectorError> {
    if fetched.last.is_none() || fetched.batch.len() >= settings.batch {
        return Ok(fetched);
    }
    let rest = settings.batch - fetched.batch.len();
    let more = fetch(consumer.clone(), rest, None, settings.signers.clone());
    let more = tokio::time::timeout(TOP_UP_DEADLINE, more)
        .await
        .map_err(|_| js_error("a fetch of what was waiting went unanswered"))??;
    fetched.extend(more);
    Ok(fetched)
}

/// Fetches up to `max` messages and decodes them: what is there, waiting
/// up to `wait` for the first, or not at all without one.
async fn fetch(
    consumer: consumer::PullConsumer,
    max: usize,
    wait: Option<Duration>,
    signers: Arc<dyn Signers>,
) -> Result<Fetched, ProjectorError> {
    let request = consumer.fetch().max_messages(max);
    let request = match wait {
        Some(wait) => request.expires(wait),
        None => request,
    };
    let mut messages = request.messages().await.map_err(js_error)?;
    let mut raw = Vec::with_capacity(max);
    let mut consumer_sequences = Vec::with_capacity(max);
    let mut traces = Vec::new();
    let mut last = None;
    while let Some(message) = messages.next().await {
        let message = message.map_err(js_error)?;
        let info = message.info().map_err(js_error)?;
        consumer_sequences.push(info.consumer_sequence);
        traces.extend(crate::trace::Carried::from_headers(info.stream_sequence, message.headers.as_ref()));
        raw.push((info.stream_sequence, message.subject.to_string(), message.payload.clone()));
        last = Some(message);
    }
    Ok(Fetched { batch: decode(raw, &signers).await?, consumer_sequences, traces, last })
}

/// Fetches, applies and acknowledges batches. The next batch is fetched
/// and decoded while one is applied: decoding (hashes, signatures) is CPU
/// in this process, applying is mostly PostgreSQL's, and side by side
/// they take the time of the longer.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn pump<F: Future<Output = ()> + Unpin>(
    pool: &PgPool,
    stream: &jetstream::stream::Stream,
    consumer: &consumer::PullConsumer,
    deliveries: &mut Deliveries,
    settings: &Settings,
    stats: &Stats,
    from: u64,
    notifier: Option<&Notifier>,
    mut target: Target<'_, F>,
) -> Result<Outcome, ProjectorError> {
    let mut position = from;
    // Children queued to be folded again (a council reconfigured) are
    // drained a chunk at a time between batches, and while the stream is
    // quiet; after a restart, whatever an earlier run left is found by the
    // first drain.
    let mut pending = true;
    // After a recheck, the batch already fetched ahead is checked too once
    // applied: the old leader may have delivered it.
    let mut recheck_next: Option<u64> = None;
    loop {
        // The watcher saw the stream elect a leader. Should the check
        // fail, the request stands for the next session.
        if let Some(after) = stats.recheck_wanted() {
            let moved = recheck(pool, stream, settings, stats, notifier, after, position).await?;
            stats.rechecked(after);
            if let Some(stored) = moved {
                return Ok(Outcome::Moved { stored });
            }
            recheck_next = Some(position);
        }
        // Queued by this projector's own batches, or found by its watcher.
        pending |= stats.refolds_pending.load(Ordering::Relaxed) > 0;
        if pending {
            pending = drain(pool, settings, stats, notifier).await?;
        }
        let next = match deliveries.ahead.take() {
            Some(ahead) => ahead,
            // While children wait, a fetch that finds nothing returns soon.
            None => Ahead::start(consumer, settings, Duration::from_millis(if pending { 10 } else { 500 })),
        };
        while pending && !next.0.is_finished() {
            pending = drain(pool, settings, stats, notifier).await?;
        }
        let fetched = match &mut target {
            Target::Forever(shutdown) => tokio::select! {
                () = &mut **shutdown => return Ok(Outcome::Stopped),
                f = next.done() => f?,
            },
            Target::Head | Target::Until(_) => next.done().await?,
        };
        let fetched = top_up(consumer, settings, fetched).await?;
        for sequence in &fetched.consumer_sequences {
            deliveries.check(*sequence)?;
        }
        let Some(last) = fetched.last else {
            if let Ok(info) = stream.get_info().await {
                stats.stream_last.store(info.state.last_sequence, Ordering::Relaxed);
            }
            // Nothing came: at the head if nothing matching the filter is
            // left undelivered and no child waits to be folded again.
            if !pending && reached(stream, consumer, settings, position, &target).await? {
                return Ok(Outcome::Reached);
            }
            continue;
        };
        deliveries.ahead = Some(Ahead::start(consumer, settings, Duration::from_millis(500)));
        // One span per traced event, in its publisher's trace, open while
        // the batch is applied and acknowledged.
        let following = crate::trace::follow(&fetched.traces);
        let applied = match apply(pool, settings, &fetched.batch, position).await {
            Ok(applied) => applied,
            Err(store::ApplyError::Moved { stored, .. }) => return Ok(Outcome::Moved { stored }),
            Err(store::ApplyError::Database(e)) => return Err(e.into()),
            Err(store::ApplyError::Keys(e)) => return Err(ProjectorError::Keys(e)),
            // Only a per-subject application can meet a fold's failure, and it parks it.
            Err(e @ store::ApplyError::Fold { .. }) => return Err(ProjectorError::Fold(e.to_string())),
        };
        // Acknowledged only now: AckPolicy::All acknowledges the whole batch
        // (and nothing fetched ahead, which comes after it).
        last.ack().await.map_err(js_error)?;
        crate::trace::applied(following, applied.position);
        if applied.changed.requeued {
            // Before the position moves: whoever waits for both never sees one without the other.
            stats.refolds_pending.fetch_max(1, Ordering::Relaxed);
            pending = true;
        }
        let before = position;
        position = applied.position;
        // A dead letter that looks like the read models, not the message,
        // are wrong (store::Chained::suspect): the stream may have gone
        // back on what it delivered with no election seen yet. It is read
        // back before the position is announced, so whoever waits for the
        // position sees the read models corrected.
        if applied.suspect {
            tracing::warn!(projector = %settings.name, position, "a message does not continue its subject's chain as the read models hold it; checking what was applied last against the stream");
            let after = before.saturating_sub(crate::reconcile::WINDOW);
            if let Some(stored) = recheck(pool, stream, settings, stats, notifier, after, position).await? {
                return Ok(Outcome::Moved { stored });
            }
        }
        stats.applied.fetch_add(applied.events, Ordering::Relaxed);
        stats.dead_letters.fetch_add(applied.dead_letters, Ordering::Relaxed);
        if applied.position > stats.position.swap(applied.position, Ordering::Relaxed) {
            stats.progress_at_ms.store(now_ms(), Ordering::Relaxed);
        }
        if applied.dead_letters > 0 {
            tracing::warn!(count = applied.dead_letters, "kept undecodable messages in dead_letter");
        }
        if applied.parked > 0 {
            stats.parkings.fetch_add(applied.parked, Ordering::Relaxed);
            stats.parked.fetch_add(applied.parked, Ordering::Relaxed);
            stats.failed_now();
        }
        if let Some(notifier) = notifier {
            notifier.mark(&applied.changed, &applied.years);
        }
        if let Some(after) = recheck_next.take() {
            match recheck(pool, stream, settings, stats, notifier, after, position).await {
                Ok(Some(stored)) => return Ok(Outcome::Moved { stored }),
                Ok(None) => {}
                Err(e) => {
                    stats.recheck(after);
                    return Err(e);
                }
            }
        }
        // The batch fetched ahead stays with `deliveries` for whoever pumps
        // this consumer next (a rebuild's switch catches up with it).
        if !pending && reached(stream, consumer, settings, position, &target).await? {
            return Ok(Outcome::Reached);
        }
    }
}

/// Whether a pump at `position` has reached `target` (never a `Forever`).
async fn reached<F: Future<Output = ()> + Unpin>(
    stream: &jetstream::stream::Stream,
    consumer: &consumer::PullConsumer,
    settings: &Settings,
    position: u64,
    target: &Target<'_, F>,
) -> Result<bool, ProjectorError> {
    Ok(match *target {
        Target::Forever(_) => false,
        Target::Head => caught_up(consumer).await?,
        Target::Until(wanted) => {
            position >= wanted || covered_through(stream, &settings.partitions.filters(), position).await? >= wanted
        }
    })
}

/// How far the read models are complete for `filters`: every message of
/// theirs at or below the sequence returned is at or below `position`, so
/// applied. A partitioned projector's position is the last message of its
/// own partitions, which can lie well behind the stream's head while they
/// are quiet: this is the sequence just before their next message, or the
/// stream's last (read first) when none waits.
pub(crate) async fn covered_through(
    stream: &jetstream::stream::Stream,
    filters: &[String],
    position: u64,
) -> Result<u64, ProjectorError> {
    let mut covered = stream.get_info().await.map_err(js_error)?.state.last_sequence.max(position);
    for filter in filters {
        let next = stream.raw_message_builder().sequence(position + 1).next_by_subject(filter.clone()).send().await;
        match next {
            Ok(message) => covered = covered.min(message.sequence.saturating_sub(1)),
            Err(e) if e.kind() == jetstream::stream::RawMessageErrorKind::NoMessageFound => {}
            Err(e) => return Err(js_error(e)),
        }
    }
    Ok(covered.max(position))
}

/// Makes the read models agree with the stream over positions `after + 1
/// ..= upto` ([`crate::reconcile`]), and raises the alarm if they did not.
/// Returns the position the projector was moved back to, if the stream
/// went back on positions at or below `upto`: the session's consumer is
/// past them and must be made again from there.
async fn recheck(
    pool: &PgPool,
    stream: &jetstream::stream::Stream,
    settings: &Settings,
    stats: &Stats,
    notifier: Option<&Notifier>,
    after: u64,
    upto: u64,
) -> Result<Option<u64>, ProjectorError> {
    let done = crate::reconcile::reconcile(pool, stream, settings, after, upto).await?;
    if done.deleted > 0 {
        stats.deletions.fetch_add(done.deleted, Ordering::Relaxed);
        stats.failed_now();
    }
    if !done.corrected() {
        tracing::debug!(projector = %settings.name, after, upto, read = done.read, "the stream holds what the read models applied");
        return Ok(None);
    }
    stats.reconciliations.fetch_add(1, Ordering::Relaxed);
    stats.failed_now();
    tracing::error!(
        projector = %settings.name,
        after,
        upto,
        removed = done.removed,
        added = done.added,
        dead_letters = done.dead_letters,
        moved_back_to = done.moved_back_to,
        "the stream no longer holds what it delivered at positions the projector had applied; the read models now follow the stream"
    );
    if done.changed.requeued {
        stats.refolds_pending.fetch_max(1, Ordering::Relaxed);
    }
    if let Some(notifier) = notifier {
        notifier.mark(&done.changed, &std::collections::BTreeSet::new());
    }
    Ok(done.moved_back_to)
}

/// Fewer messages than this are decoded where they arrived: a thread's
/// start costs more than they do.
const DECODE_ALONE: usize = 64;

/// Decodes a batch's messages, in stream order, on every core. Checking an
/// event's hash and the gateway's signature on it is most of the CPU a
/// batch costs the projector (about 60 µs an event on the benchmark's
/// machine), and nothing else can happen to a batch before it is done.
async fn decode(
    raw: Vec<(u64, String, bytes::Bytes)>,
    signers: &Arc<dyn Signers>,
) -> Result<Vec<Incoming>, ProjectorError> {
    let one = |(seq, subject, payload): &(u64, String, bytes::Bytes), signers: &dyn Signers| {
        Incoming::decode(*seq, subject, payload, signers)
    };
    if raw.len() < DECODE_ALONE {
        return Ok(raw.iter().map(|m| one(m, &**signers)).collect());
    }
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let size = raw.len().div_ceil(cores);
    let mut raw = raw;
    let mut parts = Vec::with_capacity(cores);
    while !raw.is_empty() {
        let rest = raw.split_off(size.min(raw.len()));
        let part = std::mem::replace(&mut raw, rest);
        let signers = signers.clone();
        parts.push(tokio::task::spawn_blocking(move || part.iter().map(|m| one(m, &*signers)).collect::<Vec<_>>()));
    }
    let mut batch = Vec::new();
    for part in parts {
        batch.extend(part.await.map_err(|e| ProjectorError::Fold(format!("decoding a batch failed: {e}")))?);
    }
    Ok(batch)
}

/// About how long one drain transaction may take: the next batch, and so
/// every live event behind it, waits for the one under way. A fixed count
/// of children (250) took about a second a chunk once a council of 100,000
/// was reconfigured, and held every event of every council back as long
/// for the minutes the drain lasted. So the chunk is sized from the last
/// one's time per child.
const DRAIN_BUDGET: Duration = Duration::from_millis(50);
/// The first chunk's size, and the bounds of every later one.
const DRAIN_CHUNK_FIRST: usize = 50;
const DRAIN_CHUNK_MIN: usize = 5;
const DRAIN_CHUNK_MAX: usize = 1000;

/// Folds again one chunk of this projector's children queued by a council's
/// new settings ([`crate::refold::drain`]), in a transaction of its own.
/// Returns whether any are left.
async fn drain(
    pool: &PgPool,
    settings: &Settings,
    stats: &Stats,
    notifier: Option<&Notifier>,
) -> Result<bool, ProjectorError> {
    let chunk = match stats.drain_chunk.load(Ordering::Relaxed) {
        0 => DRAIN_CHUNK_FIRST,
        n => n,
    };
    let started = std::time::Instant::now();
    let mut tx = pool.begin().await?;
    let drained = match crate::refold::drain(&mut tx, settings.partitions.numbers(), chunk, &settings.kept).await {
        Ok(drained) => drained,
        Err(store::ApplyError::Database(e)) => return Err(e.into()),
        Err(store::ApplyError::Keys(e)) => return Err(ProjectorError::Keys(e)),
        // A child's history folded when its events were applied, and its
        // council's settings cannot make a fold fail: a failure here is
        // the projector's fault, retried (and alarmed) like an outage.
        Err(e) => return Err(ProjectorError::Fold(e.to_string())),
    };
    tx.commit().await?;
    // The gauge counts down between the health check's exact counts, and
    // reads 0 only once a chunk found the queue empty: whoever waits for
    // it (a rebuild's switch, an operator) never sees 0 too soon.
    let left = |n: u64| if drained.more { n.saturating_sub(drained.children as u64).max(1) } else { 0 };
    let _ = stats.refolds_pending.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| Some(left(n)));
    if drained.children > 0 {
        stats.drain_chunk.store(next_drain_chunk(started.elapsed(), drained.children), Ordering::Relaxed);
        tracing::debug!(projector = %settings.name, children = drained.children, more = drained.more, "folded children again under their council's new settings");
        if let Some(notifier) = notifier {
            notifier.mark(&drained.changed, &std::collections::BTreeSet::new());
        }
    }
    Ok(drained.more)
}

/// The next drain chunk's size, from the time the last one took for its
/// `children`: as many as fit in [`DRAIN_BUDGET`] at that rate. A fixed
/// cost per chunk shrinks the chunk until the budget covers it, which is
/// why none may grow with the queue (see [`crate::refold::Drained::more`]).
fn next_drain_chunk(took: Duration, children: usize) -> usize {
    let per_child = took.as_nanos() / children.max(1) as u128;
    let next = DRAIN_BUDGET.as_nanos() / per_child.max(1);
    usize::try_from(next).unwrap_or(usize::MAX).clamp(DRAIN_CHUNK_MIN, DRAIN_CHUNK_MAX)
}

/// Applies one batch and commits it. A batch that fails on its content
/// ([`store::ApplyError::is_subject_failure`]) is rolled back and applied
/// again subject by subject, so that only the subjects at fault are parked
/// and the rest of the batch, and of the stream, goes on.
async fn apply(
    pool: &PgPool,
    settings: &Settings,
    batch: &[Incoming],
    position: u64,
) -> Result<store::Applied, store::ApplyError> {
    let keys = settings.keys.as_deref();
    let mut tx = pool.begin().await?;
    match store::apply_batch(
        &mut tx,
        &settings.name,
        batch,
        Some(position),
        keys,
        &settings.kept,
        store::Isolation::Together,
    )
    .await
    {
        Ok(applied) => {
            tx.commit().await?;
            Ok(applied)
        }
        Err(e) if e.is_subject_failure() => {
            drop(tx);
            tracing::warn!(projector = %settings.name, error = &e as &dyn std::error::Error, "a batch failed on its content; applying it subject by subject");
            let mut tx = pool.begin().await?;
            let applied = store::apply_batch(
                &mut tx,
                &settings.name,
                batch,
                Some(position),
                keys,
                &settings.kept,
                store::Isolation::PerSubject,
            )
            .await?;
            tx.commit().await?;
            Ok(applied)
        }
        Err(e) => Err(e),
    }
}

/// Looks at the stream's real state every `health_interval`, whatever the
/// projector's progress: the metrics then tell the truth when the
/// projector is stuck (a batch retried for ever, a lock held on a table),
/// which a figure updated only as batches apply cannot. Writes what it saw
/// to `projector_health` for the query role.
pub async fn watch(pool: PgPool, js: jetstream::Context, settings: Settings, stats: Arc<Stats>) {
    let mut tick = tokio::time::interval(settings.health_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut was_stalled = false;
    // The stream's leader at the last look, and the position then.
    let mut seen: Option<(Leader, u64)> = None;
    loop {
        tick.tick().await;
        let position = stats.position.load(Ordering::Relaxed);
        match look(&pool, &js, &settings, &stats).await {
            Ok(leader) => {
                // A leader that died or stepped down may have delivered what
                // its successor never held: what was applied since a little
                // before the last look is read back (see crate::reconcile).
                // An election is told by when the leader took over, not only
                // by who it is: the same server can be elected again.
                if let (Some((before, at)), Some(now)) = (&seen, &leader)
                    && before != now
                {
                    tracing::warn!(projector = %settings.name, leader = %now.name, "the stream elected a leader; checking what was applied last against the stream");
                    stats.recheck(at.saturating_sub(crate::reconcile::WINDOW));
                }
                if let Some(now) = leader {
                    seen = Some((now, position));
                }
                stats.looks.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                tracing::warn!(projector = %settings.name, error = &e as &dyn std::error::Error, "could not look at the stream's state");
            }
        }
        let stalled = stats.stalled();
        if stalled && !was_stalled {
            tracing::error!(
                projector = %settings.name,
                lag = stats.lag(),
                lag_seconds = stats.lag_seconds(),
                "the projector is stalled: events are waiting and none has been applied"
            );
        } else if !stalled && was_stalled {
            tracing::info!(projector = %settings.name, "the projector is applying the stream again");
        }
        was_stalled = stalled;
        match pool.acquire().await {
            Ok(mut conn) => {
                use crate::statistics::{Growth, LIVE, analyse};
                analyse(&mut conn, &LIVE, Growth::Live, &settings.name).await;
            }
            Err(e) => tracing::warn!(projector = %settings.name, error = %e, "could not gather table statistics"),
        }
    }
}

/// A stream's leader as one look saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Leader {
    name: String,
    /// When it took over, as the server reports it.
    since: Option<async_nats::datetime::DateTime>,
}

async fn look(
    pool: &PgPool,
    js: &jetstream::Context,
    settings: &Settings,
    stats: &Stats,
) -> Result<Option<Leader>, ProjectorError> {
    let mut stream = js.get_stream(EVENTS_STREAM).await.map_err(js_error)?;
    let info = stream.info().await.map_err(js_error)?;
    let last = info.state.last_sequence;
    let leader =
        info.cluster.as_ref().and_then(|c| c.leader.clone().map(|name| Leader { name, since: c.leader_since }));
    stats.stream_last.store(last, Ordering::Relaxed);
    let position = stats.position.load(Ordering::Relaxed);
    // The oldest message this projector applies that lies past its
    // position, one look per filter (a partitioned projector has several).
    let mut oldest: Option<i64> = None;
    if last > position {
        for filter in &settings.partitions.filters() {
            // From the stream's leader, like the last sequence above: a
            // direct get may be answered by a replica that is behind, which
            // would not hold the message yet and report no lag.
            let next = stream.raw_message_builder().sequence(position + 1).next_by_subject(filter.clone()).send().await;
            match next {
                Ok(message) => {
                    let at = i64::try_from(message.time.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX);
                    oldest = Some(oldest.map_or(at, |o| o.min(at)));
                }
                Err(e) if e.kind() == jetstream::stream::RawMessageErrorKind::NoMessageFound => {}
                Err(e) => return Err(js_error(e)),
            }
        }
    }
    let now = now_ms();
    let (lag, lag_ms) = match oldest {
        Some(at) => (last.saturating_sub(position).max(1), now.saturating_sub(u64::try_from(at).unwrap_or(0))),
        None => (0, 0),
    };
    stats.lag.store(lag, Ordering::Relaxed);
    stats.lag_ms.store(lag_ms, Ordering::Relaxed);
    let stall = u64::try_from(settings.stall_after.as_millis()).unwrap_or(u64::MAX);
    let idle = now.saturating_sub(stats.progress_at_ms.load(Ordering::Relaxed));
    stats.stalled.store(lag > 0 && lag_ms >= stall && idle >= stall, Ordering::Relaxed);

    let parked: i64 = sqlx::query_scalar("select count(*) from parked_subject where projector = $1")
        .bind(&settings.name)
        .fetch_one(pool)
        .await?;
    stats.parked.store(u64::try_from(parked).unwrap_or(0), Ordering::Relaxed);
    // Children of this projector's partitions may have been queued by
    // another's batch (the one owning their council): the pump drains
    // them once it sees the count.
    let partitions = crate::refold::partition_numbers(settings.partitions.numbers());
    stats.refolds_pending.store(crate::refold::queued(pool, &partitions).await?, Ordering::Relaxed);
    sqlx::query(
        "insert into projector_health (projector, position, stream_last, lag, lag_seconds, stalled, parked, checked_at)
         values ($1, $2, $3, $4, $5, $6, $7, now())
         on conflict (projector) do update set position = excluded.position, stream_last = excluded.stream_last,
             lag = excluded.lag, lag_seconds = excluded.lag_seconds, stalled = excluded.stalled,
             parked = excluded.parked, checked_at = excluded.checked_at",
    )
    .bind(&settings.name)
    .bind(i64::try_from(position).unwrap_or(i64::MAX))
    .bind(i64::try_from(last).unwrap_or(i64::MAX))
    .bind(i64::try_from(lag).unwrap_or(i64::MAX))
    .bind(stats.lag_seconds())
    .bind(stats.stalled())
    .bind(parked as i32)
    .execute(pool)
    .await?;
    Ok(leader)
}

/// Whether the consumer has delivered everything its filter matches.
async fn caught_up(consumer: &consumer::PullConsumer) -> Result<bool, ProjectorError> {
    let info = consumer.clone().info().await.map_err(js_error)?.clone();
    Ok(info.num_pending == 0)
}

#[cfg(test)]
mod drain_tests {
    use super::*;

    #[test]
    fn a_drain_chunk_is_sized_to_the_budget_at_the_last_ones_rate() {
        assert_eq!(next_drain_chunk(Duration::from_millis(50), 50), 50, "on budget: the same again");
        assert_eq!(next_drain_chunk(Duration::from_millis(10), 50), 250, "five times as fast: five times as many");
        assert_eq!(next_drain_chunk(Duration::from_millis(1), 50), DRAIN_CHUNK_MAX, "bounded above");
        assert_eq!(next_drain_chunk(Duration::from_secs(1), 5), DRAIN_CHUNK_MIN, "bounded below");
        assert_eq!(next_drain_chunk(Duration::ZERO, 5), DRAIN_CHUNK_MAX, "no time measured");
    }
}

#[cfg(test)]
mod deliveries_tests {
    use super::*;

    #[test]
    fn deliveries_must_come_in_turn_from_the_first() {
        let mut d = Deliveries::new();
        assert!(d.check(1).is_ok() && d.check(2).is_ok());
        assert!(matches!(d.check(4), Err(ProjectorError::Gap { expected: 3, got: 4 })));
        let mut fresh = Deliveries::new();
        assert!(
            matches!(fresh.check(21), Err(ProjectorError::Gap { expected: 1, got: 21 })),
            "the first ones were lost"
        );
    }
}
