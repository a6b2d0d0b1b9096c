//! The vocabulary of the backbone: what every event looks like, what makes
//! one valid, and how its bytes are fixed so that a hash chain and a signature
//! mean the same thing to us and to an outside verifier.
//!
//! This crate does no IO: no network, no files, no clock. Code that needs the
//! time takes `now` as an argument.
//!
//! # Layout
//!
//! - [`envelope`]: the CloudEvents envelope as received and as stored.
//! - [`catalogue`]: every event type of v1 and its typed data.
//! - [`codes`], [`ids`]: code sets and identifiers, parsed once at the edge.
//! - [`fields`], [`problem`], [`json`]: strict JSON and parsing that reports
//!   every problem with its JSON pointer.
//! - [`personal`]: which fields are personal data, as a property of the types.
//! - [`canonical`], [`chain`]: RFC 8785 bytes, hashes, signatures, and the
//!   verification of a history.
//! - [`calendar`]: business dates and England-and-Wales working days.
//! - [`standing`]: whether a subject is registered and whose it is, one fold
//!   for the gateway and the read side alike.
//! - [`stored`]: the one decoder of stored events, as readers of the stream take them.
//! - [`audit`]: the audit stream's records (access events, erasures), for writer and reader alike.
//! - [`subjects`]: the NATS subject scheme, stream and bucket names.
//! - [`schema`]: JSON Schema of every event type, generated from the catalogue's own types.

/// Arbitrary catalogue-valid histories, for property tests downstream.
#[cfg(feature = "arbitrary")]
pub mod arbitrary;
pub mod audit;
pub mod calendar;
pub mod canonical;
pub mod catalogue;
pub mod chain;
pub mod checkpoint;
pub mod codes;
pub mod envelope;
pub mod examples;
pub mod fields;
pub mod ids;
pub mod json;
pub mod personal;
pub mod privacy;
pub mod problem;
pub mod schema;
pub mod standing;
pub mod stored;
pub mod subjects;

pub use catalogue::{EventData, EventType, SubjectKind};
pub use chain::{Break, BreakKind, Digest, Head};
pub use envelope::{ReceivedEvent, Stamp, StoredEvent, Subject, TraceContext, parse_received};
pub use personal::{Personal, personal_pointers};
pub use problem::{Problem, Problems};

/// What [`code_set!`] expands to refers to, so its users need not depend on
/// serde or serde_json themselves.
#[doc(hidden)]
pub mod __private {
    pub use schemars;
    pub use serde::de::Error as DeError;
    pub use serde::{Deserialize, Deserializer, Serialize, Serializer};
    pub use serde_json::Value;
}
