//! The audit stream's records as they travel: written by the query role
//! (access events) and the gateway (erasures), read by the projector's
//! audit consumer. One definition for both ends, so a renamed field fails
//! to compile instead of silently emptying the access log. (Checkpoints
//! have their own module, [`crate::checkpoint`].)

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Whether a read was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Allowed,
    Refused,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allowed => "allowed",
            Self::Refused => "refused",
        }
    }
}

impl TryFrom<String> for Outcome {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        match s.as_str() {
            "allowed" => Ok(Self::Allowed),
            "refused" => Ok(Self::Refused),
            _ => Err("is not an access outcome".to_owned()),
        }
    }
}

/// One read of a child's record (or a lookup that found nobody, with no
/// child), recorded before the answer is sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessEvent {
    pub id: uuid::Uuid,
    pub child: Option<uuid::Uuid>,
    pub principal: String,
    pub acting_user: Option<String>,
    pub purpose: Option<String>,
    pub endpoint: String,
    pub at: DateTime<Utc>,
    pub outcome: Outcome,
    /// Why it was refused, for the access log's auditors only (the caller
    /// is told no more than that it may not read the record).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The erasure of a child's data key, recorded before the key goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Erasure {
    pub id: uuid::Uuid,
    pub child: uuid::Uuid,
    pub principal: String,
    pub acting_user: Option<String>,
    pub purpose: Option<String>,
    pub at: DateTime<Utc>,
}

/// An audit message, by the subject it was published on.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    Access(AccessEvent),
    Erasure(Erasure),
    Checkpoint { covers: i64, root: String, document: serde_json::Value },
}

/// Reads the audit message published on `subject`. The reason for a
/// refusal names fields, never values.
pub fn decode(subject: &str, payload: &[u8]) -> Result<Record, String> {
    if subject.starts_with("sg.audit.access.") || subject == crate::subjects::LOOKUP {
        serde_json::from_slice(payload).map(Record::Access).map_err(|e| e.to_string())
    } else if subject.starts_with("sg.audit.erasure.") {
        serde_json::from_slice(payload).map(Record::Erasure).map_err(|e| e.to_string())
    } else if subject == crate::subjects::CHECKPOINT {
        let document: serde_json::Value = serde_json::from_slice(payload).map_err(|e| e.to_string())?;
        let covers = document["covers"].as_i64().ok_or("no covers")?;
        let root = document["root"].as_str().ok_or("no root")?.to_owned();
        Ok(Record::Checkpoint { covers, root, document })
    } else {
        Err("not an audit subject this version knows".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_access_event_reads_back_as_written_and_an_unknown_outcome_is_refused() {
        let event = AccessEvent {
            id: uuid::Uuid::nil(),
            child: None,
            principal: "haringey-csc".into(),
            acting_user: Some("j.smith".into()),
            purpose: None,
            endpoint: "POST /v1/children/lookup".into(),
            at: DateTime::UNIX_EPOCH,
            outcome: Outcome::Refused,
            reason: Some("lookups need the practitioner or admin role".into()),
        };
        let bytes = serde_json::to_vec(&event).expect("encodes");
        assert_eq!(decode(crate::subjects::LOOKUP, &bytes), Ok(Record::Access(event)));
        let text = String::from_utf8(bytes).expect("UTF-8").replace("\"refused\"", "\"maybe\"");
        assert!(decode(crate::subjects::LOOKUP, text.as_bytes()).is_err());
        assert!(decode("sg.audit.other", b"{}").is_err());
    }
}
