//! Access events: every child-level read, and every refusal of one, is
//! published to the audit stream and acknowledged by JetStream before the
//! answer is sent. If it cannot be stored, the read fails (503): a read
//! nobody can later account for does not happen.
//!
//! Beside these the query role publishes only the record of each
//! statutory return it makes (`events::audit::ReturnMade`, numbering it). A purpose given for a read is
//! sealed under the child's data key before it is published
//! ([`events::audit::Purpose`]).

use chrono::{DateTime, Utc};
use events::Subject;
use events::ids::ChildId;
use std::time::Duration;

/// Who asked, and why (the `X-Acting-User` and `X-Purpose` headers).
#[derive(Debug, Clone, Default)]
pub struct Asker {
    pub principal: String,
    pub acting_user: Option<String>,
    pub purpose: Option<String>,
}

pub use events::audit::{AccessEvent, Outcome, Purpose};

/// Where access events go.
#[derive(Debug, Clone)]
pub struct AccessLog {
    pub js: async_nats::jetstream::Context,
    pub timeout: Duration,
    /// Children's data keys, to seal each event's purpose for its child.
    pub keys: std::sync::Arc<platform::keystore::KeyStore>,
}

/// Why an access event was not stored (and so the read is refused).
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error("the access event could not be encoded")]
    Encode(#[source] serde_json::Error),
    #[error("JetStream did not take the access event")]
    Publish(#[source] async_nats::jetstream::context::PublishError),
    #[error("JetStream did not answer within {0:?}")]
    TimedOut(std::time::Duration),
    #[error("the child's data key could not be read to seal the purpose")]
    Keys(#[source] platform::keystore::KeyError),
}

impl AccessLog {
    /// Records `outcome` for each child (or one event with no child when
    /// `children` is empty), waiting for JetStream to store every one.
    pub async fn record(
        &self,
        asker: &Asker,
        endpoint: &str,
        children: &[uuid::Uuid],
        outcome: Outcome,
        reason: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<(), AccessError> {
        let targets: Vec<Option<uuid::Uuid>> =
            if children.is_empty() { vec![None] } else { children.iter().copied().map(Some).collect() };
        let mut acks = Vec::with_capacity(targets.len());
        for child in targets {
            let id = uuid::Uuid::new_v4();
            let purpose = match &asker.purpose {
                None => None,
                Some(text) => Some(self.seal(child, id, text).await?),
            };
            let event = AccessEvent {
                id,
                child,
                principal: asker.principal.clone(),
                acting_user: asker.acting_user.clone(),
                purpose,
                endpoint: endpoint.to_owned(),
                at,
                outcome,
                reason: reason.map(str::to_owned),
            };
            let subject = match child {
                Some(c) => events::subjects::access_subject(&Subject::Child(ChildId::from_uuid(c))),
                None => events::subjects::LOOKUP.to_owned(),
            };
            let payload = serde_json::to_vec(&event).map_err(AccessError::Encode)?;
            let ack = tokio::time::timeout(self.timeout, self.js.publish(subject, payload.into()))
                .await
                .map_err(|_| AccessError::TimedOut(self.timeout))?
                .map_err(AccessError::Publish)?;
            acks.push(ack);
        }
        for ack in acks {
            tokio::time::timeout(self.timeout, ack)
                .await
                .map_err(|_| AccessError::TimedOut(self.timeout))?
                .map_err(AccessError::Publish)?;
        }
        Ok(())
    }

    /// The purpose as the stream may keep it: sealed under the child's
    /// data key, or withheld when there is no child or no key to seal it
    /// under (free text about a child must not outlive its erasure).
    async fn seal(&self, child: Option<uuid::Uuid>, event: uuid::Uuid, text: &str) -> Result<Purpose, AccessError> {
        let Some(child) = child else { return Ok(Purpose::Withheld) };
        match self.keys.existing_key(&ChildId::from_uuid(child)).await.map_err(AccessError::Keys)? {
            Some(key) => {
                use rand::RngCore as _;
                let mut nonce = [0u8; 24];
                rand::rngs::OsRng.fill_bytes(&mut nonce);
                Ok(Purpose::seal(&key, nonce, child, event, text))
            }
            None => Ok(Purpose::Withheld),
        }
    }
}
