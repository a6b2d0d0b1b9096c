//! Long-lived answers (Server-Sent Events), held within limits and kept
//! honest: at most so many open on the role and so many per principal,
//! and each one's caller re-authorised every so often, so a stream ends
//! soon after a sign-out, a rotated token, a removed principal or a
//! narrowed scope instead of streaming for as long as the client likes.

use crate::error::QueryError;
use futures::{Stream, StreamExt as _};
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The role's open streams.
#[derive(Debug)]
pub struct Streams {
    all: Arc<Semaphore>,
    max: usize,
    per_principal: usize,
    held: Mutex<HashMap<String, usize>>,
    /// How often an open stream's caller is checked again.
    pub recheck: Duration,
}

impl Streams {
    pub fn new(max: usize, per_principal: usize, recheck: Duration) -> Arc<Self> {
        Arc::new(Self {
            all: Arc::new(Semaphore::new(max)),
            max,
            per_principal,
            held: Mutex::new(HashMap::new()),
            recheck: recheck.max(Duration::from_millis(10)),
        })
    }

    /// A place for one more stream of `principal`, or why there is none.
    pub fn admit(self: &Arc<Self>, principal: &str) -> Result<Ticket, QueryError> {
        let mut held = self.held.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mine = held.get(principal).copied().unwrap_or(0);
        if mine >= self.per_principal {
            return Err(QueryError::TooManyStreams(format!(
                "this principal has {mine} streams open, the most it may; close one first"
            )));
        }
        let Ok(permit) = self.all.clone().try_acquire_owned() else {
            return Err(QueryError::TooManyStreams(format!(
                "this service has {} streams open, the most it serves; try again later",
                self.max
            )));
        };
        held.insert(principal.to_owned(), mine + 1);
        Ok(Ticket { streams: self.clone(), principal: principal.to_owned(), _permit: permit })
    }

    /// Streams open now, in all.
    pub fn open(&self) -> usize {
        self.max - self.all.available_permits()
    }
}

/// One open stream's place; given back when the stream is dropped.
#[derive(Debug)]
pub struct Ticket {
    streams: Arc<Streams>,
    principal: String,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut held = self.streams.held.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = held.get_mut(&self.principal) {
            *n -= 1;
            if *n == 0 {
                held.remove(&self.principal);
            }
        }
    }
}

enum Tick<T> {
    Item(T),
    Check,
}

/// `items`, for as long as `still_allowed` says yes when asked every
/// `ticket`'s recheck interval; the ticket is held until the stream is dropped.
pub fn guarded<S, F, Fut>(items: S, ticket: Ticket, still_allowed: F) -> impl Stream<Item = S::Item> + Send
where
    S: Stream + Send + 'static,
    S::Item: Send + 'static,
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = bool> + Send + 'static,
{
    let every = ticket.streams.recheck;
    let checks = futures::stream::unfold((), move |()| async move {
        tokio::time::sleep(every).await;
        Some((Tick::Check, ()))
    });
    let ticks = futures::stream::select(items.map(Tick::Item), checks);
    ticks
        .take_while(move |tick| {
            let check = matches!(tick, Tick::Check).then(&still_allowed);
            async move {
                match check {
                    Some(allowed) => allowed.await,
                    None => true,
                }
            }
        })
        .filter_map(move |tick| {
            let _held = &ticket;
            async move {
                match tick {
                    Tick::Item(item) => Some(item),
                    Tick::Check => None,
                }
            }
        })
}

/// Change notices kept on the change stream (`SG_CHANGES`), for event
/// streams that resume: a client that sends `Last-Event-ID` gets every
/// notice after it that the stream still holds, in order, then the new
/// ones; each notice's id is its stream sequence.
#[derive(Debug)]
pub struct Notices {
    stream: async_nats::jetstream::stream::Stream,
    /// The stream's last sequence when opened: a reader's "now".
    pub last: u64,
    /// Its first sequence still held: a `Last-Event-ID` before it has
    /// missed notices that aged out, and must start from the documents.
    pub first: u64,
}

impl Notices {
    pub async fn open(client: &async_nats::Client) -> Result<Self, QueryError> {
        let js = async_nats::jetstream::new(client.clone());
        let mut stream = js
            .get_stream(events::subjects::CHANGES_STREAM)
            .await
            .map_err(|e| QueryError::dependency("the change stream is unavailable", e))?;
        let info = stream.info().await.map_err(|e| QueryError::dependency("the change stream is unavailable", e))?;
        let (last, first) = (info.state.last_sequence, info.state.first_sequence);
        Ok(Self { stream, last, first })
    }

    /// Whether a client last given `id` can resume from the stream without a gap.
    pub fn resumes(&self, id: u64) -> bool {
        id <= self.last && id + 1 >= self.first
    }

    /// The notices on `filter` after stream position `after`, as they come.
    pub async fn after(
        self,
        filter: String,
        after: u64,
    ) -> Result<impl Stream<Item = (u64, bytes::Bytes)> + Send + 'static, QueryError> {
        use async_nats::jetstream::consumer::{DeliverPolicy, pull::OrderedConfig};
        let consumer = self
            .stream
            .create_consumer(OrderedConfig {
                filter_subject: filter,
                deliver_policy: DeliverPolicy::ByStartSequence { start_sequence: after + 1 },
                ..Default::default()
            })
            .await
            .map_err(|e| QueryError::dependency("the change stream is unavailable", e))?;
        let messages =
            consumer.messages().await.map_err(|e| QueryError::dependency("the change stream is unavailable", e))?;
        Ok(messages.filter_map(|m| async move {
            let m = m.ok()?;
            let sequence = m.info().ok()?.stream_sequence;
            Some((sequence, m.payload.clone()))
        }))
    }
}

/// The `Last-Event-ID` a reconnecting event-stream client sent, if any.
pub fn last_event_id(headers: &axum::http::HeaderMap) -> Result<Option<u64>, QueryError> {
    headers
        .get("last-event-id")
        .map(|v| {
            v.to_str()
                .ok()
                .and_then(|t| t.trim().parse::<u64>().ok())
                .ok_or_else(|| QueryError::invalid("Last-Event-ID", "must be the id of an event this stream sent"))
        })
        .transpose()
}
