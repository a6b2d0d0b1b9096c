//! Continuous ingest for the fault suite: clients that each own a child and
//! post its events one at a time through a real gateway, resending the same
//! event (same id) until it is acknowledged, as an agency system's outbox
//! does. A fault test starts the load, breaks something, mends it, stops
//! the load and then holds the stream and the read models to exactly the
//! events that got a 201.

use crate::gateway::{TestGateway, tokens};
use events::{EventType, examples};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// How long one event may go unacknowledged before the load gives up: a
/// fault the backbone should ride out has lasted too long.
const ACK_DEADLINE: Duration = Duration::from_secs(90);

/// An event the gateway answered 201 for.
#[derive(Debug, Clone)]
pub struct Acked {
    pub id: String,
    pub child: String,
    pub stream_sequence: u64,
}

/// What a load run saw.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Every acknowledged event, in each child's order.
    pub acked: Vec<Acked>,
    /// Answers other than 201 (503s while a fault lasted), each followed by a resend.
    pub refused: u64,
    /// Statuses of the refused answers and how often each came.
    pub refused_by_status: BTreeMap<u16, u64>,
}

impl Outcome {
    /// The highest stream sequence acknowledged.
    pub fn last_sequence(&self) -> u64 {
        self.acked.iter().map(|a| a.stream_sequence).max().unwrap_or(0)
    }
}

/// A running load.
#[derive(Debug)]
pub struct Ingest {
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicU64>,
    clients: Vec<JoinHandle<Outcome>>,
}

impl Ingest {
    /// Starts `clients` clients against `gateway`, each registering a new
    /// Haringey child and then recording visits to it.
    pub fn start(gateway: Arc<TestGateway>, clients: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(AtomicU64::new(0));
        let clients =
            (0..clients).map(|_| tokio::spawn(client(gateway.clone(), stop.clone(), acked.clone()))).collect();
        Self { stop, acked, clients }
    }

    /// Events acknowledged so far.
    pub fn acked(&self) -> u64 {
        self.acked.load(Ordering::Relaxed)
    }

    /// Waits until `more` further events have been acknowledged.
    pub async fn wait_for_more(&self, more: u64) {
        let target = self.acked() + more;
        let deadline = Instant::now() + ACK_DEADLINE;
        while self.acked() < target {
            assert!(Instant::now() < deadline, "ingest stalled at {} acknowledged events", self.acked());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops the clients once each has its current event acknowledged.
    pub async fn stop(self) -> Outcome {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = Outcome::default();
        for c in self.clients {
            #[allow(clippy::expect_used)]
            let outcome = c.await.expect("an ingest client panicked");
            all.acked.extend(outcome.acked);
            all.refused += outcome.refused;
            for (status, n) in outcome.refused_by_status {
                *all.refused_by_status.entry(status).or_default() += n;
            }
        }
        all
    }
}

async fn client(gateway: Arc<TestGateway>, stop: Arc<AtomicBool>, acked: Arc<AtomicU64>) -> Outcome {
    let child = uuid::Uuid::new_v4().to_string();
    let mut outcome = Outcome::default();
    for n in 0u64.. {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let id = format!("load-{}-{n}", &child[..8]);
        let event = if n == 0 {
            crate::fixtures::registered(&id, &child, "E09000014")
        } else {
            let mut e = examples::event(EventType::ChildSeen, &id, "2025-01-14T09:30:00Z");
            e["subject"] = json!(child);
            e
        };
        let deadline = Instant::now() + ACK_DEADLINE;
        loop {
            let r = gateway.post(tokens::HARINGEY, &event).await;
            if r.status == 201 {
                #[allow(clippy::expect_used)]
                let stream_sequence = r.result(0)["stream_sequence"].as_u64().expect("stream_sequence in a 201");
                outcome.acked.push(Acked { id: id.clone(), child: child.clone(), stream_sequence });
                acked.fetch_add(1, Ordering::Relaxed);
                break;
            }
            outcome.refused += 1;
            *outcome.refused_by_status.entry(r.status).or_default() += 1;
            assert_eq!(r.status, 503, "only 503 may come while a fault lasts: {}", r.text);
            assert!(Instant::now() < deadline, "{id} was not acknowledged within {ACK_DEADLINE:?}: {}", r.text);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    outcome
}
