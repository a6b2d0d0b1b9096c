//! Who may do what: `principals.toml`, loaded at start and again on SIGHUP.
//!
//! Tokens are never stored: the file holds each token's SHA-256, and a
//! presented token is hashed and compared in constant time against every
//! entry, so neither timing nor an early exit tells an attacker how close a
//! guess was.

use events::EventType;
use events::ids::{CouncilCode, PrincipalName};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::path::Path;
use std::sync::{Arc, RwLock};
use subtle::ConstantTimeEq;

/// A role of `principals.toml`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Publish,
    Practitioner,
    Reviewer,
    Dashboard,
    Auditor,
    Admin,
}

/// `["*"]` or a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope<T> {
    All,
    Only(Vec<T>),
}

impl<T: PartialEq> Scope<T> {
    pub fn allows(&self, item: &T) -> bool {
        match self {
            Self::All => true,
            Self::Only(items) => items.contains(item),
        }
    }
}

/// One principal, checked when the file is read.
#[derive(Debug, Clone)]
pub struct Principal {
    pub name: PrincipalName,
    /// The organisation as people name it ("Haringey children's services");
    /// the principal's name when none is given.
    pub display_name: String,
    pub agency: events::codes::AgencyKind,
    token_sha256: [u8; 32],
    pub roles: Vec<Role>,
    pub councils: Scope<CouncilCode>,
    pub event_types: Scope<EventType>,
}

impl Principal {
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role) || self.roles.contains(&Role::Admin)
    }

    /// The SHA-256 of the token this principal holds now (what
    /// `principals.toml` stores): what a session is bound to.
    pub fn token_sha256(&self) -> &[u8; 32] {
        &self.token_sha256
    }

    pub fn is_admin(&self) -> bool {
        self.roles.contains(&Role::Admin)
    }

    /// Whether this principal may publish events of this type at all
    /// (council scope is checked against the subject later).
    pub fn may_publish(&self, event_type: EventType) -> Result<(), &'static str> {
        if !self.has(Role::Publish) {
            return Err("this principal does not have the publish role");
        }
        if event_type.admin_only() && !self.is_admin() {
            return Err("this event type needs the admin role");
        }
        if !self.event_types.allows(&event_type) {
            return Err("this principal may not publish this event type");
        }
        Ok(())
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    principal: Vec<Entry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    name: String,
    #[serde(default)]
    display_name: Option<String>,
    /// council_childrens_services, police, health, education or other.
    #[serde(default)]
    agency: Option<String>,
    token_sha256: String,
    roles: Vec<Role>,
    #[serde(default)]
    councils: Vec<String>,
    #[serde(default)]
    event_types: Vec<String>,
}

/// The principals in force. Cheap to clone; reloads replace the whole set.
#[derive(Debug, Clone, Default)]
pub struct Principals {
    inner: Arc<RwLock<Arc<Vec<Principal>>>>,
}

/// Why a principals file was refused. The old set stays in force.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("could not read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path} is not valid: {message}")]
    Invalid { path: String, message: String },
}

impl Principals {
    pub fn load(path: &Path) -> Result<Self, LoadError> {
        let principals = Self::default();
        principals.reload(path)?;
        Ok(principals)
    }

    /// Reads the file again; on any error the current set stays.
    pub fn reload(&self, path: &Path) -> Result<usize, LoadError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| LoadError::Read { path: path.display().to_string(), source })?;
        let parsed =
            parse(&text).map_err(|message| LoadError::Invalid { path: path.display().to_string(), message })?;
        let n = parsed.len();
        if let Ok(mut guard) = self.inner.write() {
            *guard = Arc::new(parsed);
        }
        Ok(n)
    }

    pub fn from_text(text: &str) -> Result<Self, String> {
        let principals = Self::default();
        let parsed = parse(text)?;
        if let Ok(mut guard) = principals.inner.write() {
            *guard = Arc::new(parsed);
        }
        Ok(principals)
    }

    /// The principal holding `token`, if any.
    pub fn authenticate(&self, token: &str) -> Option<Principal> {
        let presented: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let all = self.inner.read().ok()?.clone();
        // Compare against every entry without stopping early.
        let mut found = None;
        for p in all.iter() {
            if bool::from(p.token_sha256.ct_eq(&presented)) {
                found = Some(p.clone());
            }
        }
        found
    }

    /// The principal of this name as it stands now (a page session names its
    /// principal, which may since have been removed or changed).
    pub fn named(&self, name: &str) -> Option<Principal> {
        let all = self.inner.read().ok()?.clone();
        all.iter().find(|p| p.name.as_str() == name).cloned()
    }

    /// The principal whose token an `Authorization: Bearer TOKEN` header
    /// value carries, if any.
    pub fn authenticate_header(&self, authorization: Option<&str>) -> Option<Principal> {
        let token = authorization?.strip_prefix("Bearer ")?.trim();
        if token.is_empty() { None } else { self.authenticate(token) }
    }
}

fn parse(text: &str) -> Result<Vec<Principal>, String> {
    let file: File = toml::from_str(text).map_err(|e| e.message().to_owned())?;
    let mut out = Vec::with_capacity(file.principal.len());
    for (i, e) in file.principal.into_iter().enumerate() {
        let at = format!("principal {} ({})", i + 1, e.name);
        let name = PrincipalName::parse(&e.name).map_err(|m| format!("{at}: name {m}"))?;
        let mut token_sha256 = [0u8; 32];
        hex::decode_to_slice(e.token_sha256.trim(), &mut token_sha256)
            .map_err(|_| format!("{at}: token_sha256 must be 64 hex characters"))?;
        let councils = if e.councils.iter().any(|c| c == "*") {
            Scope::All
        } else {
            Scope::Only(
                e.councils
                    .iter()
                    .map(|c| CouncilCode::parse(c).map_err(|m| format!("{at}: council {m}")))
                    .collect::<Result<_, _>>()?,
            )
        };
        let event_types = if e.event_types.is_empty() || e.event_types.iter().any(|t| t == "*") {
            Scope::All
        } else {
            Scope::Only(
                e.event_types
                    .iter()
                    .map(|t| EventType::from_name(t).ok_or_else(|| format!("{at}: {t:?} is not an event type")))
                    .collect::<Result<_, _>>()?,
            )
        };
        if out.iter().any(|p: &Principal| p.name == name) {
            return Err(format!("{at}: the name is used twice"));
        }
        // An admin reads, looks up, returns and erases children anywhere:
        // a narrower list would promise a limit that no read enforces.
        if e.roles.contains(&Role::Admin) && councils != Scope::All {
            return Err(format!(
                "{at}: the admin role covers every council, so its councils must be [\"*\"]; \
                 for one council's operator give the practitioner and auditor roles instead"
            ));
        }
        let display_name = match e.display_name.as_deref().map(str::trim) {
            None => name.as_str().to_owned(),
            Some(d) if !d.is_empty() && d.chars().count() <= 100 && !d.chars().any(char::is_control) => d.to_owned(),
            Some(_) => return Err(format!("{at}: display_name must be 1 to 100 printable characters")),
        };
        let agency = match e.agency.as_deref() {
            None => events::codes::AgencyKind::Other,
            Some(code) => events::codes::AgencyKind::from_code(code).ok_or_else(|| {
                let codes: Vec<&str> = events::codes::AgencyKind::ALL.iter().map(|k| k.code()).collect();
                format!("{at}: agency {code:?} is not one of {}", codes.join(", "))
            })?,
        };
        out.push(Principal { name, display_name, agency, token_sha256, roles: e.roles, councils, event_types });
    }
    Ok(out)
}

/// The SHA-256 of a token, as written in the file.
pub fn token_sha256(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_authenticate_by_hash_and_scopes_parse() {
        let text = format!(
            "[[principal]]\nname = \"haringey-csc\"\ntoken_sha256 = \"{}\"\nroles = [\"publish\"]\ncouncils = [\"E09000014\"]\nevent_types = [\"child.seen\"]\n",
            token_sha256("secret")
        );
        let p = Principals::from_text(&text).expect("valid");
        let who = p.authenticate("secret").expect("known");
        assert_eq!(who.name.as_str(), "haringey-csc");
        assert!(p.authenticate("Secret").is_none());
        assert!(who.may_publish(EventType::ChildSeen).is_ok());
        assert!(who.may_publish(EventType::ReferralReceived).is_err());
        assert!(who.councils.allows(&CouncilCode::parse("E09000014").expect("code")));
        assert!(Principals::from_text("[[principal]]\nname = \"x\"\n").is_err());
    }

    #[test]
    fn admin_only_types_need_admin() {
        let text = format!(
            "[[principal]]\nname = \"a\"\ntoken_sha256 = \"{}\"\nroles = [\"publish\"]\ncouncils = [\"*\"]\nevent_types = [\"*\"]\n",
            token_sha256("t")
        );
        let p = Principals::from_text(&text).expect("valid").authenticate("t").expect("known");
        assert!(p.may_publish(EventType::RecordSealed).is_err());
        assert!(p.may_publish(EventType::ContactRecorded).is_ok());
    }

    #[test]
    fn an_admin_limited_to_some_councils_is_refused_by_name() {
        let text = format!(
            "[[principal]]\nname = \"haringey-admin\"\ntoken_sha256 = \"{}\"\nroles = [\"admin\"]\ncouncils = [\"E09000014\"]\n",
            token_sha256("t")
        );
        let refused = Principals::from_text(&text).expect_err("refused");
        assert!(refused.contains("principal 1 (haringey-admin)") && refused.contains("admin"), "{refused}");
    }
}
