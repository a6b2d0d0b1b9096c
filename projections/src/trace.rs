//! The projector's part of a publisher's trace. The gateway keeps an
//! event's W3C trace context as headers of its stored message
//! (`traceparent`, `tracestate`); each traced event of a batch gets a
//! `projector.apply` span in that trace, open while the batch is applied
//! and acknowledged, so "I sent it: when did the read models have it?" is
//! answered in the trace itself. Exported when the process exports spans
//! (`platform::telemetry::init`); without an exporter these spans cost a
//! span each and go nowhere.

use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// An event's trace context as its message carried it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Carried {
    pub stream_seq: u64,
    traceparent: String,
    tracestate: Option<String>,
}

impl Carried {
    /// The context in `headers`, if the message has one.
    pub fn from_headers(stream_seq: u64, headers: Option<&async_nats::HeaderMap>) -> Option<Self> {
        let headers = headers?;
        let value = |name: &str| headers.get(name).map(|v| v.as_str().to_owned());
        Some(Self { stream_seq, traceparent: value("traceparent")?, tracestate: value("tracestate") })
    }
}

/// A span for each traced event, parented to the publisher's context. The
/// same three lines as `platform::telemetry::continue_trace`, which this
/// crate may not reach (tests/tests/workspace.rs: no platform below the
/// read side).
pub fn follow(carried: &[Carried]) -> Vec<tracing::Span> {
    carried
        .iter()
        .map(|c| {
            let span = tracing::info_span!(
                "projector.apply",
                stream_seq = c.stream_seq,
                applied_through = tracing::field::Empty
            );
            let mut carrier = std::collections::HashMap::from([("traceparent".to_owned(), c.traceparent.clone())]);
            if let Some(state) = &c.tracestate {
                carrier.insert("tracestate".to_owned(), state.clone());
            }
            let parent = opentelemetry::global::get_text_map_propagator(|p| p.extract(&carrier));
            let _ = span.set_parent(parent);
            span
        })
        .collect()
}

/// Ends the spans of a batch applied through `position`.
pub fn applied(spans: Vec<tracing::Span>, position: u64) {
    for span in spans {
        span.record("applied_through", position);
    }
}
