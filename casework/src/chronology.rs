//! A line of a child's chronology, as the read models give it: every
//! agency's entries in business-time order, each with its status as it
//! stood at the time asked about. (The lines are written by the projector
//! from [`crate::summary`] and read by `projections::chronology`.)

use chrono::{DateTime, Utc};
use events::EventType;
use events::ids::{EventId, PrincipalName};
use serde::{Deserialize, Serialize};

/// One line of a chronology.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub sequence: i64,
    pub id: EventId,
    #[serde(rename = "type")]
    pub event_type: EventType,
    pub occurred_at: DateTime<Utc>,
    pub recorded_at: DateTime<Utc>,
    pub source: PrincipalName,
    pub summary: String,
    pub status: Status,
    /// The amendments (their publisher's event ids) that changed it.
    pub corrected_by: Option<EventId>,
    pub retracted_by: Option<EventId>,
}

/// Where an entry stands, from the amendments recorded by the time asked about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Current,
    Corrected,
    Retracted,
}

impl Status {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Current => "current",
            Self::Corrected => "corrected",
            Self::Retracted => "retracted",
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TryFrom<String> for Status {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        match s.as_str() {
            "current" => Ok(Self::Current),
            "corrected" => Ok(Self::Corrected),
            "retracted" => Ok(Self::Retracted),
            _ => Err("is not an entry status".to_owned()),
        }
    }
}
