//! Prometheus metrics. Labels are kinds of subject and outcomes, never
//! event types, subjects, ids or anything a person wrote: `/metrics`
//! answers whoever reaches it, and a count by type would tell them how many
//! children's deaths, or sealed records, were recorded this week.

use events::{EventType, SubjectKind};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub subject_kind: &'static str,
}

impl KindLabel {
    pub fn of(t: EventType) -> Self {
        let subject_kind = match t.subject_kind() {
            SubjectKind::Child => "child",
            SubjectKind::Worker => "worker",
            SubjectKind::Council => "council",
        };
        Self { subject_kind }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabel {
    pub status: u16,
}

#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub stored: Family<KindLabel, Counter>,
    pub duplicates: Counter,
    pub retries: Counter,
    pub unavailable: Counter,
    pub requests: Family<StatusLabel, Counter>,
    pub commit_seconds: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("safeguard_gateway");
        let stored = Family::<KindLabel, Counter>::default();
        registry.register("events_stored", "Events stored, by kind of subject", stored.clone());
        let duplicates = Counter::default();
        registry.register(
            "events_duplicate",
            "Events received again and answered with the original",
            duplicates.clone(),
        );
        let retries = Counter::default();
        registry.register(
            "write_retries",
            "Requests planned again because another writer moved a subject on",
            retries.clone(),
        );
        let unavailable = Counter::default();
        registry.register("storage_unavailable", "Requests answered 503", unavailable.clone());
        let requests = Family::<StatusLabel, Counter>::default();
        registry.register("requests", "POST /v1/events requests by status", requests.clone());
        let commit_seconds = Histogram::new(exponential_buckets(0.0005, 2.0, 16));
        registry.register("commit_seconds", "Time from sending an atomic batch to its commit", commit_seconds.clone());
        Self { registry, stored, duplicates, retries, unavailable, requests, commit_seconds }
    }
}

impl Metrics {
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
