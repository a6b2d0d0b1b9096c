//! Sealing personal data under a child's data key.
//!
//! Each personal field (found by [`crate::personal_pointers`]) is replaced in
//! the stored event by `{"enc": "xchacha20poly1305", "ct": "<base64>"}`,
//! where the ciphertext is the field's JSON bytes sealed with
//! XChaCha20-Poly1305 under the child's 32-byte data key, the 24-byte nonce
//! first. The associated data binds each ciphertext to its place (subject,
//! publisher, event id and JSON pointer), so sealed values cannot be moved
//! between events or fields. Without the key (after erasure) the field is
//! unreadable, while the event's hash, which covers the sealed form, still
//! verifies.
//!
//! No randomness here: callers pass the nonces in.

use crate::fields::FromJson;
use crate::problem::Problems;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde_json::{Value, json};

/// The algorithm name written into each sealed value.
pub const ALGORITHM: &str = "xchacha20poly1305";

/// A child's data key. Its `Debug` form never shows the bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct DataKey([u8; 32]);

impl DataKey {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(<secret>)")
    }
}

/// Why a sealed value could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    #[error("the value is not a sealed field")]
    NotSealed,
    #[error("the sealed field does not open with this key and place")]
    Rejected,
    #[error("the sealed field opened but does not hold a value of its field's type")]
    NotItsType,
}

/// What a sealed value is bound to.
pub fn associated_data(subject: &str, source: &str, id: &str, pointer: &str) -> String {
    format!("{subject}\n{source}\n{id}\n{pointer}")
}

/// Seals one JSON value.
pub fn seal_value(key: &DataKey, nonce: [u8; 24], aad: &str, value: &Value) -> Value {
    let cipher = XChaCha20Poly1305::new(key.0.as_slice().into());
    let plaintext = serde_json::to_vec(value).unwrap_or_default();
    // Encryption with a valid key and nonce cannot fail for inputs this size.
    let ciphertext = cipher
        .encrypt(XNonce::from_slice(&nonce), Payload { msg: &plaintext, aad: aad.as_bytes() })
        .unwrap_or_default();
    let mut sealed = Vec::with_capacity(24 + ciphertext.len());
    sealed.extend_from_slice(&nonce);
    sealed.extend_from_slice(&ciphertext);
    json!({ "enc": ALGORITHM, "ct": BASE64.encode(sealed) })
}

/// Whether a value has the sealed form.
pub fn is_sealed(value: &Value) -> bool {
    Sealed::from_value(value).is_some()
}

/// Opens one sealed value.
pub fn open_value(key: &DataKey, aad: &str, sealed: &Value) -> Result<Value, OpenError> {
    Sealed::from_value(sealed).ok_or(OpenError::NotSealed)?.open_json(key, aad)
}

/// A personal field as the stream stores it: sealed under the child's data
/// key, bound to its place. What it holds is known only to a reader with
/// the key; its `Debug` form shows nothing of it.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Sealed {
    /// Base64 of the 24-byte nonce and the ciphertext with its tag.
    ct: String,
}

/// The shortest sealed value: a nonce and an authentication tag.
const SEALED_MIN_BYTES: usize = 24 + 16;

impl Sealed {
    /// The sealed value `value` is, if it has the sealed form.
    pub fn from_value(value: &Value) -> Option<Self> {
        let Value::Object(map) = value else { return None };
        if map.len() != 2 || map.get("enc").and_then(Value::as_str) != Some(ALGORITHM) {
            return None;
        }
        let ct = map.get("ct").and_then(Value::as_str)?;
        let bytes = BASE64.decode(ct).ok()?;
        (bytes.len() >= SEALED_MIN_BYTES).then(|| Self { ct: ct.to_owned() })
    }

    pub fn to_value(&self) -> Value {
        json!({ "enc": ALGORITHM, "ct": self.ct })
    }

    /// The JSON value sealed here, opened with `key` in the place `aad`.
    pub fn open_json(&self, key: &DataKey, aad: &str) -> Result<Value, OpenError> {
        let bytes = BASE64.decode(&self.ct).map_err(|_| OpenError::NotSealed)?;
        let (nonce, ciphertext) = bytes.split_at(24);
        let cipher = XChaCha20Poly1305::new(key.0.as_slice().into());
        let plaintext = cipher
            .decrypt(XNonce::from_slice(nonce), Payload { msg: ciphertext, aad: aad.as_bytes() })
            .map_err(|_| OpenError::Rejected)?;
        serde_json::from_slice(&plaintext).map_err(|_| OpenError::Rejected)
    }

    /// The field's value, opened and read as the catalogue type it was
    /// sealed from.
    pub fn open<T: FromJson>(&self, key: &DataKey, aad: &str) -> Result<T, OpenError> {
        let value = self.open_json(key, aad)?;
        T::from_json(&value, "", &mut Problems::new()).ok_or(OpenError::NotItsType)
    }
}

impl std::fmt::Debug for Sealed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealed(..)")
    }
}

impl serde::Serialize for Sealed {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap as _;
        let mut map = s.serialize_map(Some(2))?;
        map.serialize_entry("enc", ALGORITHM)?;
        map.serialize_entry("ct", &self.ct)?;
        map.end()
    }
}

impl FromJson for Sealed {
    fn from_json(value: &Value, at: &str, problems: &mut Problems) -> Option<Self> {
        let found = Self::from_value(value);
        if found.is_none() {
            problems.push(at, format!("must be a sealed value ({{\"enc\": \"{ALGORITHM}\", \"ct\": base64}}): personal data is stored only sealed"));
        }
        found
    }
}

/// Seals every field at `pointers` (relative to the document `doc`, for
/// example `/data/summary`) in place.
pub fn seal_fields(
    doc: &mut Value,
    pointers: &[String],
    key: &DataKey,
    place: (&str, &str, &str),
    mut nonce: impl FnMut() -> [u8; 24],
) {
    let (subject, source, id) = place;
    for pointer in pointers {
        if let Some(slot) = doc.pointer_mut(pointer) {
            let aad = associated_data(subject, source, id, pointer);
            *slot = seal_value(key, nonce(), &aad, slot);
        }
    }
}

/// Opens every sealed field of a stored document in place. With no key
/// (erased), sealed fields are replaced by `null`. Returns the pointers of
/// the fields that could not be opened.
pub fn open_fields(doc: &mut Value, key: Option<&DataKey>) -> Vec<String> {
    let subject = doc["subject"].as_str().unwrap_or_default().to_owned();
    let source = doc["source"].as_str().unwrap_or_default().to_owned();
    let id = doc["id"].as_str().unwrap_or_default().to_owned();
    let mut sealed = Vec::new();
    find_sealed(doc, "", &mut sealed);
    let mut failed = Vec::new();
    for pointer in sealed {
        let Some(slot) = doc.pointer_mut(&pointer) else {
            continue;
        };
        let opened = key.and_then(|k| open_value(k, &associated_data(&subject, &source, &id, &pointer), slot).ok());
        match opened {
            Some(v) => *slot = v,
            None => {
                *slot = Value::Null;
                failed.push(pointer);
            }
        }
    }
    failed
}

fn find_sealed(value: &Value, at: &str, out: &mut Vec<String>) {
    if is_sealed(value) {
        out.push(at.to_owned());
        return;
    }
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                find_sealed(v, &crate::problem::child_pointer(at, k), out);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                find_sealed(v, &format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_fields_open_only_with_the_key_in_their_place() {
        let key = DataKey::from_bytes([3; 32]);
        let mut doc = json!({"subject": "s", "source": "p", "id": "e1",
            "data": {"summary": "Jane said", "person": {"given_name": "Jane"}, "code": "N1"}});
        let mut n = 0u8;
        seal_fields(&mut doc, &["/data/summary".into(), "/data/person".into()], &key, ("s", "p", "e1"), || {
            n += 1;
            [n; 24]
        });
        let text = doc.to_string();
        assert!(!text.contains("Jane"), "{text}");
        assert_eq!(doc["data"]["code"], "N1");

        // Moving a sealed value to another event breaks it.
        let mut moved = doc.clone();
        moved["id"] = json!("e2");
        assert_eq!(open_fields(&mut moved, Some(&key)), vec!["/data/summary", "/data/person"]);

        let mut erased = doc.clone();
        assert_eq!(open_fields(&mut erased, None).len(), 2);
        assert_eq!(erased["data"]["summary"], Value::Null);

        assert!(open_fields(&mut doc, Some(&key)).is_empty());
        assert_eq!(doc["data"]["summary"], "Jane said");
        assert_eq!(doc["data"]["person"]["given_name"], "Jane");
    }
}

/// A keyed digest of an identifier (for example an NHS number), so a read
/// model can find a child by it without holding it: HMAC-SHA-256 under a
/// lookup key derived from the master key, over `kind` and the value, hex.
/// Without the lookup key the digests reveal nothing and cannot be
/// brute-forced from the small space of valid NHS numbers.
pub fn identifier_digest(lookup_key: &[u8; 32], kind: &str, value: &str) -> String {
    use hmac::Mac as _;
    // HMAC accepts a key of any length, so this cannot fail.
    let Ok(mut mac) = <hmac::Hmac<sha2::Sha256> as hmac::Mac>::new_from_slice(lookup_key) else {
        return String::new();
    };
    mac.update(kind.as_bytes());
    mac.update(b"\n");
    mac.update(value.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod identifier_tests {
    use super::identifier_digest;

    #[test]
    fn digests_depend_on_key_kind_and_value() {
        let a = identifier_digest(&[1; 32], "nhs_number", "9434765919");
        assert_eq!(a.len(), 64);
        assert_eq!(a, identifier_digest(&[1; 32], "nhs_number", "9434765919"));
        assert_ne!(a, identifier_digest(&[2; 32], "nhs_number", "9434765919"));
        assert_ne!(a, identifier_digest(&[1; 32], "upn", "9434765919"));
        assert_ne!(a, identifier_digest(&[1; 32], "nhs_number", "9434765927"));
    }
}

/// Why a key store could not answer (its own error, kept whole for the log).
pub type KeyStoreError = Box<dyn std::error::Error + Send + Sync>;

/// A child's data key, if it has one (none after erasure).
pub type KeyFuture<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<Option<DataKey>, KeyStoreError>> + Send + 'a>>;

/// Where a reader that must open sealed fields (the projector's identifier
/// index) gets children's data keys and the lookup key. The trait is here,
/// in the vocabulary, so that the key store (in `platform`, on NATS) and
/// its user (in `projections`, on PostgreSQL) need not know each other.
pub trait ChildKeys: Send + Sync + std::fmt::Debug {
    fn key(&self, child: uuid::Uuid) -> KeyFuture<'_>;
    fn lookup_key(&self) -> &[u8; 32];
}
