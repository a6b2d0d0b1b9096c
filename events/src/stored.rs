//! The one decoder of stored events: what a reader of the event stream
//! (the gateway folding a subject's state, the projector) accepts as an
//! event. A stream message is a stored event only if it is strict JSON, an
//! object with every attribute the gateway stores, on the NATS subject its
//! own subject maps to, and its bytes match its hash. Anything else is
//! refused with the reason, which names fields and positions, never values.

use crate::envelope::StoredEvent;
use crate::json::{JsonError, parse_strict};
use crate::problem::Problems;
use serde_json::Value;

/// A stream message that is a stored event.
#[derive(Debug, Clone)]
pub struct Decoded {
    pub event: StoredEvent,
    /// The whole document as stored (attributes and data).
    pub document: Value,
}

/// Why a stream message is not a stored event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("not strict JSON: {0}")]
    Json(#[source] JsonError),
    #[error("not a JSON object")]
    NotObject,
    #[error("not a stored event: {0}")]
    NotStored(#[source] Problems),
    #[error("the event names a subject other than the one it was stored under")]
    WrongSubject,
    #[error("the event's bytes do not match its hash")]
    WrongHash,
}

/// Decodes and checks the message stored under NATS subject `stored_under`.
pub fn decode(stored_under: &str, payload: &[u8]) -> Result<Decoded, DecodeError> {
    let document = parse_strict(payload).map_err(DecodeError::Json)?;
    let Value::Object(doc) = &document else { return Err(DecodeError::NotObject) };
    let event = StoredEvent::from_document(doc).map_err(DecodeError::NotStored)?;
    if crate::subjects::event_subject(&event.subject) != stored_under {
        return Err(DecodeError::WrongSubject);
    }
    if crate::chain::content_hash(doc) != event.hash {
        return Err(DecodeError::WrongHash);
    }
    Ok(Decoded { event, document })
}
