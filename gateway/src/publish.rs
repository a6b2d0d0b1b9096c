//! Writing to JetStream: one message as a plain publish, several as an
//! atomic batch (NATS 2.12+) in which every message is stored or none is.
//!
//! A plain publish is the cheapest durable write JetStream has. An atomic
//! batch costs a fixed amount on top (on one server JetStream stages it on
//! disk before committing it, and commits a stream's batches one after
//! another: see BENCHMARKS.md), which a batch of hundreds amortises and a
//! batch of two does not. So [`Committer::commit`] sends a single message
//! on its own, and group-commits the rest: while commits are in flight,
//! the chunks of other requests queue, and the next commit takes all of
//! them at once (up to the server's limit), each chunk's messages kept
//! together and in order. A merged commit refused for one chunk's
//! expectation is retried chunk by chunk, so each request gets exactly its
//! own answer.
//!
//! What is written, and why in which order, is `crate::ingest`'s business:
//! every message may carry the expected last sequence of its subject, and
//! JetStream checks it against the state before the message (or the whole
//! batch) and refuses the write if another writer got there first.

use async_nats::HeaderMap;
use bytes::Bytes;
use std::sync::Arc;
use std::time::Duration;

/// The server's limit on messages in one atomic batch.
pub const MAX_BATCH_MESSAGES: usize = 1000;

/// One message to store.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub subject: String,
    pub payload: Bytes,
    /// JetStream's `Nats-Expected-Last-Subject-Sequence` for this message.
    pub expect_last_subject_seq: Option<u64>,
    /// The publisher's trace, kept as `traceparent` and `tracestate`
    /// headers of the stored message, beside the event rather than in it.
    pub trace: Option<events::TraceContext>,
}

/// What a committed batch tells us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Committed {
    /// Stream sequence of the first message of the batch.
    pub first_stream_seq: u64,
    pub count: u64,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum PublishError {
    /// An expectation failed: another writer changed a subject first.
    #[error("a subject moved on: {0}")]
    WrongLastSequence(String),
    /// No answer within the timeout: the batch may or may not be stored.
    #[error("no answer from JetStream within {0:?}")]
    TimedOut(Duration),
    /// The client is not connected to NATS, so nothing was sent.
    #[error("not connected to NATS")]
    NotConnected,
    /// NATS failed while sending; the batch was not committed.
    #[error("NATS failed while {doing}")]
    Nats {
        doing: &'static str,
        /// Shared, so one failure can answer every chunk of a group commit.
        #[source]
        cause: Arc<dyn std::error::Error + Send + Sync>,
    },
    /// JetStream answered the commit with an error of its own.
    #[error("JetStream refused the batch: {description} (code {code})")]
    Refused { code: u64, description: String },
    /// JetStream's answer is not an acknowledgement we can read.
    #[error("JetStream's answer could not be read: {0}")]
    Unreadable(String),
    /// The gateway is stopping: the committer no longer takes work.
    #[error("the gateway is shutting down")]
    ShuttingDown,
}

/// JetStream's error code for a failed expected-sequence check.
const WRONG_LAST_SEQUENCE: u64 = 10071;

/// Stores `messages` as one atomic batch.
pub async fn publish_atomic(
    client: &async_nats::Client,
    messages: &[Outgoing],
    timeout: Duration,
) -> Result<Committed, PublishError> {
    // While disconnected the client would buffer these messages and send them
    // on reconnect, long after the request was answered 503. That would still
    // be safe (ids and expectations hold), but a publisher should not find a
    // refused write appearing minutes later, so a known outage sends nothing.
    if client.connection_state() != async_nats::connection::State::Connected {
        return Err(PublishError::NotConnected);
    }
    let batch_id = uuid::Uuid::new_v4().simple().to_string();
    let last = messages.len();
    let work = async {
        for (i, message) in messages.iter().enumerate() {
            let mut headers = headers_of(message);
            headers.insert("Nats-Batch-Id", batch_id.as_str());
            headers.insert("Nats-Batch-Sequence", (i + 1).to_string().as_str());
            if i + 1 == last {
                headers.insert("Nats-Batch-Commit", "1");
                let reply = client
                    .request_with_headers(message.subject.clone(), headers, message.payload.clone())
                    .await
                    .map_err(|e| PublishError::Nats { doing: "committing the batch", cause: Arc::new(e) })?;
                return parse_ack(&reply.payload);
            }
            client
                .publish_with_headers(message.subject.clone(), headers, message.payload.clone())
                .await
                .map_err(|e| PublishError::Nats { doing: "sending the batch", cause: Arc::new(e) })?;
        }
        Err(PublishError::Unreadable("an empty batch has nothing to commit".into()))
    };
    match tokio::time::timeout(timeout, work).await {
        Ok(result) => result,
        Err(_) => Err(PublishError::TimedOut(timeout)),
    }
}

/// Stores one message with a plain publish.
pub async fn publish_one(
    client: &async_nats::Client,
    message: &Outgoing,
    timeout: Duration,
) -> Result<Committed, PublishError> {
    if client.connection_state() != async_nats::connection::State::Connected {
        return Err(PublishError::NotConnected);
    }
    let request = client.request_with_headers(message.subject.clone(), headers_of(message), message.payload.clone());
    match tokio::time::timeout(timeout, request).await {
        Ok(Ok(reply)) => parse_ack(&reply.payload),
        Ok(Err(e)) => Err(PublishError::Nats { doing: "publishing", cause: Arc::new(e) }),
        Err(_) => Err(PublishError::TimedOut(timeout)),
    }
}

/// The headers every stored message carries: its expectation and its trace.
fn headers_of(message: &Outgoing) -> HeaderMap {
    let mut headers = HeaderMap::new();
    if let Some(seq) = message.expect_last_subject_seq {
        headers.insert("Nats-Expected-Last-Subject-Sequence", seq.to_string().as_str());
    }
    if let Some(trace) = &message.trace {
        headers.insert("traceparent", trace.traceparent());
        if let Some(state) = trace.tracestate() {
            headers.insert("tracestate", state);
        }
    }
    headers
}

/// Commits running at once. More than one lets a commit's round trip
/// overlap the next one's sending; beyond a few they only queue at the server.
const IN_FLIGHT: usize = 2;

/// A chunk waiting to be committed, and where its answer goes.
struct Job {
    messages: Vec<Outgoing>,
    reply: tokio::sync::oneshot::Sender<Result<Committed, PublishError>>,
}

/// The gateway's group-committing writer (see the module documentation).
#[derive(Debug, Clone)]
pub struct Committer {
    jobs: tokio::sync::mpsc::UnboundedSender<Job>,
    client: async_nats::Client,
    timeout: Duration,
    /// Writes asked for and not yet answered, plain or batched.
    pending: Arc<std::sync::atomic::AtomicUsize>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job").field("messages", &self.messages.len()).finish_non_exhaustive()
    }
}

impl Committer {
    /// Starts the committing task; it ends when the last `Committer` is dropped.
    pub fn start(client: async_nats::Client, timeout: Duration) -> Self {
        let (jobs, queue) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(run_committer(client.clone(), timeout, queue));
        Self { jobs, client, timeout, pending: Arc::default() }
    }

    /// Stores `messages` as one atomic unit: a single message by a plain
    /// publish, several in an atomic batch, alone or with other chunks.
    #[tracing::instrument(name = "commit", skip_all, fields(messages = messages.len()))]
    pub async fn commit(&self, messages: Vec<Outgoing>) -> Result<Committed, PublishError> {
        let _pending = Pending::count(&self.pending);
        if let [message] = messages.as_slice() {
            return publish_one(&self.client, message, self.timeout).await;
        }
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.jobs.send(Job { messages, reply }).map_err(|_| PublishError::ShuttingDown)?;
        answer.await.map_err(|_| PublishError::ShuttingDown)?
    }

    /// Whether nothing is being written: a writer that finds the committer
    /// idle has no one to share an atomic commit with.
    pub fn is_idle(&self) -> bool {
        self.pending.load(std::sync::atomic::Ordering::Relaxed) == 0
    }
}

/// One write counted in `Committer::pending` while it lasts, however it ends
/// (answered, failed, or its request dropped).
struct Pending<'a>(&'a std::sync::atomic::AtomicUsize);

impl<'a> Pending<'a> {
    fn count(counter: &'a std::sync::atomic::AtomicUsize) -> Self {
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Self(counter)
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

async fn run_committer(
    client: async_nats::Client,
    timeout: Duration,
    mut queue: tokio::sync::mpsc::UnboundedReceiver<Job>,
) {
    let permits = std::sync::Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
    let mut held: Option<Job> = None;
    loop {
        // Wait for a commit slot first: jobs that arrive meanwhile are merged.
        let Ok(permit) = permits.clone().acquire_owned().await else { return };
        let first = match held.take() {
            Some(job) => job,
            None => match queue.recv().await {
                Some(job) => job,
                None => return,
            },
        };
        let mut group = vec![first];
        let mut size = group[0].messages.len();
        while let Ok(job) = queue.try_recv() {
            if size + job.messages.len() > MAX_BATCH_MESSAGES {
                held = Some(job);
                break;
            }
            size += job.messages.len();
            group.push(job);
        }
        // A request that has already been answered (it timed out) is not
        // written after the fact.
        group.retain(|job| !job.reply.is_closed());
        if group.is_empty() {
            continue;
        }
        let client = client.clone();
        tokio::spawn(async move {
            commit_group(&client, group, timeout).await;
            drop(permit);
        });
    }
}

async fn commit_group(client: &async_nats::Client, group: Vec<Job>, timeout: Duration) {
    if group.len() == 1 {
        for job in group {
            let _ = job.reply.send(publish_atomic(client, &job.messages, timeout).await);
        }
        return;
    }
    let merged: Vec<Outgoing> = group.iter().flat_map(|job| job.messages.iter().cloned()).collect();
    match publish_atomic(client, &merged, timeout).await {
        Ok(done) => {
            let mut first = done.first_stream_seq;
            for job in group {
                let count = job.messages.len() as u64;
                let _ = job.reply.send(Ok(Committed { first_stream_seq: first, count }));
                first += count;
            }
        }
        // One chunk's expectation failed, and with it the whole commit:
        // each chunk alone, so only the one concerned hears of it.
        Err(PublishError::WrongLastSequence(_)) => {
            for job in group {
                let _ = job.reply.send(publish_atomic(client, &job.messages, timeout).await);
            }
        }
        Err(e) => {
            for job in group {
                let _ = job.reply.send(Err(e.clone()));
            }
        }
    }
}

fn parse_ack(payload: &[u8]) -> Result<Committed, PublishError> {
    let value: serde_json::Value =
        serde_json::from_slice(payload).map_err(|_| PublishError::Unreadable("not JSON".into()))?;
    if let Some(error) = value.get("error") {
        let code = error.get("err_code").and_then(|c| c.as_u64()).unwrap_or(0);
        let description = error.get("description").and_then(|d| d.as_str()).unwrap_or("").to_owned();
        if code == WRONG_LAST_SEQUENCE || description.contains("wrong last sequence") {
            return Err(PublishError::WrongLastSequence(description));
        }
        return Err(PublishError::Refused { code, description });
    }
    let seq = value.get("seq").and_then(|s| s.as_u64());
    // A plain publish's acknowledgement names no batch and no count.
    let count = match value.get("batch") {
        None => value.get("count").and_then(|c| c.as_u64()).or(Some(1)),
        Some(_) => value.get("count").and_then(|c| c.as_u64()),
    };
    match (seq, count) {
        (Some(seq), Some(count)) if count >= 1 && seq >= count => {
            Ok(Committed { first_stream_seq: seq - count + 1, count })
        }
        _ => Err(PublishError::Unreadable(format!("neither an error nor a sequence and count: {value}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acks_and_errors_are_read() {
        let ok = parse_ack(br#"{"stream":"SG_EVENTS","seq":12,"batch":"b","count":4}"#).expect("ack");
        assert_eq!(ok, Committed { first_stream_seq: 9, count: 4 });
        let wrong = parse_ack(br#"{"error":{"code":400,"err_code":10071,"description":"wrong last sequence: 3"}}"#);
        assert!(matches!(wrong, Err(PublishError::WrongLastSequence(_))));
        let refused = parse_ack(br#"{"error":{"code":503,"err_code":10077,"description":"batch too large"}}"#);
        assert!(matches!(refused, Err(PublishError::Refused { code: 10077, .. })), "{refused:?}");
        assert!(matches!(parse_ack(b"<html>"), Err(PublishError::Unreadable(_))));
        assert!(matches!(parse_ack(br#"{"seq":3,"count":4}"#), Err(PublishError::Unreadable(_))));
        assert!(matches!(parse_ack(br#"{"stream":"S","seq":3,"batch":"b"}"#), Err(PublishError::Unreadable(_))));
        let plain = parse_ack(br#"{"stream":"SG_EVENTS","seq":7}"#).expect("a plain publish's ack");
        assert_eq!(plain, Committed { first_stream_seq: 7, count: 1 });
    }
}
