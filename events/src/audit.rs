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

/// Why a read was made, as the audit stream keeps it. A purpose is free
/// text a person typed, and may say anything about the child ("bruising
/// seen by the school"), so it is personal data: it is sealed under the
/// child's data key, and erasing the key erases it, though the stream that
/// holds it can never be changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Purpose {
    /// Sealed under the child's data key, bound to the access event
    /// ([`Purpose::place`]).
    Sealed(crate::privacy::Sealed),
    /// Given, but not kept: there was no child to seal it for (a lookup
    /// that found nobody), or the child has no data key (erased).
    Withheld,
    /// Kept in clear by a version before purposes were sealed; the stream
    /// cannot be changed, so it is read as it was written.
    Legacy(String),
}

impl Purpose {
    /// What a sealed purpose is bound to: the child, the access event and the field.
    pub fn place(child: uuid::Uuid, access_event: uuid::Uuid) -> String {
        crate::privacy::associated_data(&child.to_string(), "sg.audit.access", &access_event.to_string(), "/purpose")
    }

    /// `text` sealed under `key` for `child`'s access event `access_event`.
    pub fn seal(
        key: &crate::privacy::DataKey,
        nonce: [u8; 24],
        child: uuid::Uuid,
        access_event: uuid::Uuid,
        text: &str,
    ) -> Self {
        let sealed =
            crate::privacy::seal_value(key, nonce, &Self::place(child, access_event), &serde_json::json!(text));
        crate::privacy::Sealed::from_value(&sealed).map_or(Self::Withheld, Self::Sealed)
    }
}

impl Serialize for Purpose {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Sealed(sealed) => sealed.to_value().serialize(serializer),
            Self::Withheld => serde_json::json!({ "withheld": true }).serialize(serializer),
            Self::Legacy(text) => text.serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for Purpose {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(deserializer)?;
        if let serde_json::Value::String(text) = value {
            return Ok(Self::Legacy(text));
        }
        if value == serde_json::json!({ "withheld": true }) {
            return Ok(Self::Withheld);
        }
        crate::privacy::Sealed::from_value(&value)
            .map(Self::Sealed)
            .ok_or_else(|| serde::de::Error::custom("a purpose is sealed, withheld or (before sealing) text"))
    }
}

/// Why a child's data key was erased: a code, never free text, because
/// the erasure record outlives the key and anything written about the
/// child in it would outlive the erasure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErasureBasis {
    /// The records' retention period has ended.
    RetentionEnded,
    /// An erasure request by the person (UK GDPR Article 17) was upheld.
    SubjectRequest,
    /// A court ordered it.
    CourtOrder,
    /// The child was recorded in error (a duplicate, or the wrong person).
    RecordedInError,
}

impl ErasureBasis {
    pub const ALL: [Self; 4] = [Self::RetentionEnded, Self::SubjectRequest, Self::CourtOrder, Self::RecordedInError];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::RetentionEnded => "retention_ended",
            Self::SubjectRequest => "subject_request",
            Self::CourtOrder => "court_order",
            Self::RecordedInError => "recorded_in_error",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|b| b.as_str() == text)
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
    /// Absent when none was given.
    pub purpose: Option<Purpose>,
    pub endpoint: String,
    pub at: DateTime<Utc>,
    pub outcome: Outcome,
    /// Why it was refused, for the access log's auditors only (the caller
    /// is told no more than that it may not read the record).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The erasure of a child's data key, recorded before the key goes.
/// (Records written before erasure had a basis carried free text in
/// `purpose`; it is not read.)
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Erasure {
    pub id: uuid::Uuid,
    pub child: uuid::Uuid,
    pub principal: String,
    pub acting_user: Option<String>,
    #[serde(default)]
    pub basis: Option<ErasureBasis>,
    pub at: DateTime<Utc>,
}

/// A statutory return made: which, for which council and year, by whom,
/// and its serial number (the CIN census's `SerialNo`): one more than the
/// last made of the same return, council and year, so a council's
/// resubmissions are told apart. Published on
/// [`crate::subjects::return_subject`], expecting the last one there, so
/// two query roles never hand out one number twice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReturnMade {
    pub kind: String,
    pub council: String,
    pub year: String,
    pub serial: u32,
    pub principal: String,
    pub acting_user: Option<String>,
    pub at: DateTime<Utc>,
}

/// An audit message, by the subject it was published on.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    Access(AccessEvent),
    Erasure(Erasure),
    Checkpoint { covers: i64, root: String, document: serde_json::Value },
    Return(ReturnMade),
}

/// Reads the audit message published on `subject`. The reason for a
/// refusal names fields, never values.
pub fn decode(subject: &str, payload: &[u8]) -> Result<Record, String> {
    if subject.starts_with("sg.audit.access.") || subject == crate::subjects::LOOKUP {
        serde_json::from_slice(payload).map(Record::Access).map_err(|e| e.to_string())
    } else if subject.starts_with("sg.audit.erasure.") {
        serde_json::from_slice(payload).map(Record::Erasure).map_err(|e| e.to_string())
    } else if subject.starts_with("sg.audit.return.") {
        serde_json::from_slice(payload).map(Record::Return).map_err(|e| e.to_string())
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

    #[test]
    fn a_purpose_is_sealed_for_its_child_and_event_and_reads_back_in_each_form() {
        let key = crate::privacy::DataKey::from_bytes([3; 32]);
        let (child, event) = (uuid::Uuid::from_u128(1), uuid::Uuid::from_u128(2));
        let sealed = Purpose::seal(&key, [9; 24], child, event, "bruising seen at school");
        let text = serde_json::to_string(&sealed).expect("encodes");
        assert!(!text.contains("bruising"), "{text}");
        let Purpose::Sealed(back) = serde_json::from_str(&text).expect("decodes") else { panic!("sealed") };
        assert_eq!(
            back.open_json(&key, &Purpose::place(child, event)),
            Ok(serde_json::json!("bruising seen at school"))
        );
        assert!(back.open_json(&key, &Purpose::place(child, uuid::Uuid::from_u128(3))).is_err(), "bound to its event");
        for purpose in [Purpose::Withheld, Purpose::Legacy("visit preparation".into())] {
            let text = serde_json::to_string(&purpose).expect("encodes");
            assert_eq!(serde_json::from_str::<Purpose>(&text).expect("decodes"), purpose);
        }
        assert!(serde_json::from_str::<Purpose>("{\"other\": 1}").is_err());
    }

    #[test]
    fn an_erasure_names_a_basis_code_and_an_older_free_text_purpose_is_not_read() {
        let old = r#"{"id":"00000000-0000-0000-0000-000000000000","child":"00000000-0000-0000-0000-000000000001",
            "principal":"admin","acting_user":null,"purpose":"mother asked, Jane Doe","at":"2025-01-01T00:00:00Z"}"#;
        let Ok(Record::Erasure(e)) = decode("sg.audit.erasure.x", old.as_bytes()) else { panic!("an erasure") };
        assert_eq!(e.basis, None);
        assert!(!serde_json::to_string(&e).expect("encodes").contains("Jane"));
        assert_eq!(ErasureBasis::parse("court_order"), Some(ErasureBasis::CourtOrder));
        assert_eq!(ErasureBasis::parse("because"), None);
    }
}
