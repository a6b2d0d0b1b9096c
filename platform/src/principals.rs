//! Who may do what: `principals.toml`, loaded at start and again on SIGHUP.
//!
//! Tokens are never stored: the file holds each token's SHA-256, and a
//! presented token is hashed and compared in constant time against every
//! entry, so neither timing nor an early exit tells an attacker how close a
//! guess was.
//!
//! The file also names identity providers (`[[issuer]]`): which of their
//! clients and groups act as which principal. Tokens they issue are
//! verified by [`crate::oidc`].

use events::EventType;
use events::ids::{CouncilCode, PrincipalName};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
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
    /// None for a principal reached only through an identity provider.
    token_sha256: Option<[u8; 32]>,
    pub roles: Vec<Role>,
    pub councils: Scope<CouncilCode>,
    pub event_types: Scope<EventType>,
}

impl Principal {
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role) || self.roles.contains(&Role::Admin)
    }

    /// The SHA-256 of the token this principal holds now (what
    /// `principals.toml` stores): what a session is bound to. None for a
    /// principal reached only through an identity provider.
    pub fn token_sha256(&self) -> Option<&[u8; 32]> {
        self.token_sha256.as_ref()
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

/// An identity provider whose tokens are taken, and what they map to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issuer {
    /// How logs and the access log name it ("haringey-entra").
    pub name: String,
    /// Its issuer identifier: the `iss` of its tokens, exactly, and where
    /// its discovery document lives.
    pub url: String,
    /// The `aud` its access tokens for Safeguard carry.
    pub audience: String,
    /// Client ids (`client_id` or `azp`) acting as a principal.
    pub clients: HashMap<String, PrincipalName>,
    /// Values of a person's `groups` or `roles` claim acting as a principal.
    pub groups: HashMap<String, PrincipalName>,
    /// How people sign in to the pages through this provider, if they do.
    pub sign_in: Option<SignIn>,
}

/// The pages' client at an identity provider (`[issuer.sign_in]`): people
/// sign in with the authorization code flow and PKCE, and their ID token
/// names them and their groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignIn {
    pub client_id: String,
    /// Without one, the client is public and PKCE alone protects the code
    /// (Keycloak's public clients); Entra ID's web platform wants one.
    pub client_secret: Option<Secret>,
    /// Where the provider sends the browser back; by default the query
    /// role's own `/ui/sign-in/callback` on the host the browser asked for.
    pub redirect_url: Option<String>,
    pub scopes: Vec<String>,
    /// The sign-in button's words.
    pub label: String,
}

/// A secret read from a file, never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    principal: Vec<Entry>,
    #[serde(default)]
    issuer: Vec<IssuerEntry>,
    #[serde(default)]
    pages: PagesEntry,
}

/// `[pages]`: how people sign in to the pages.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PagesEntry {
    /// Whether a principal's token may still open a page session (for
    /// operators); people sign in through their identity provider.
    #[serde(default = "yes")]
    token_sign_in: bool,
}

impl Default for PagesEntry {
    fn default() -> Self {
        Self { token_sign_in: true }
    }
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SignInEntry {
    client_id: String,
    #[serde(default)]
    client_secret_file: Option<std::path::PathBuf>,
    #[serde(default)]
    redirect_url: Option<String>,
    #[serde(default)]
    scopes: Option<Vec<String>>,
    #[serde(default)]
    label: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct IssuerEntry {
    name: String,
    url: String,
    audience: String,
    #[serde(default)]
    client: Vec<ClientEntry>,
    #[serde(default)]
    group: Vec<GroupEntry>,
    #[serde(default)]
    sign_in: Option<SignInEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientEntry {
    client_id: String,
    principal: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupEntry {
    group: String,
    principal: String,
}

/// Everything a file says, swapped whole on reload.
#[derive(Debug, Default)]
struct Set {
    principals: Vec<Principal>,
    issuers: Vec<Issuer>,
    token_sign_in: bool,
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
    #[serde(default)]
    token_sha256: Option<String>,
    roles: Vec<Role>,
    #[serde(default)]
    councils: Vec<String>,
    #[serde(default)]
    event_types: Vec<String>,
}

/// The principals in force. Cheap to clone; reloads replace the whole set.
#[derive(Debug, Clone, Default)]
pub struct Principals {
    inner: Arc<RwLock<Arc<Set>>>,
    /// The identity providers' keys, kept across reloads.
    verifier: crate::oidc::Verifier,
}

/// Who a request's bearer token speaks for.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub principal: Principal,
    /// The person an identity provider vouches for, when the token was
    /// obtained on a person's behalf (never a name the caller typed).
    pub person: Option<crate::oidc::Person>,
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
        let n = parsed.principals.len();
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
        for p in &all.principals {
            if let Some(held) = &p.token_sha256
                && bool::from(held.ct_eq(&presented))
            {
                found = Some(p.clone());
            }
        }
        found
    }

    /// The principal of this name as it stands now (a page session names its
    /// principal, which may since have been removed or changed).
    pub fn named(&self, name: &str) -> Option<Principal> {
        let all = self.inner.read().ok()?.clone();
        all.principals.iter().find(|p| p.name.as_str() == name).cloned()
    }

    /// The identity provider whose issuer identifier is `url`, as configured now.
    pub fn issuer(&self, url: &str) -> Option<Issuer> {
        let all = self.inner.read().ok()?.clone();
        all.issuers.iter().find(|i| i.url == url).cloned()
    }

    /// The identity provider of this name, as configured now.
    pub fn issuer_named(&self, name: &str) -> Option<Issuer> {
        let all = self.inner.read().ok()?.clone();
        all.issuers.iter().find(|i| i.name == name).cloned()
    }

    /// The identity providers people sign in to the pages through, in the file's order.
    pub fn sign_in_issuers(&self) -> Vec<Issuer> {
        let Ok(all) = self.inner.read().map(|all| all.clone()) else { return Vec::new() };
        all.issuers.iter().filter(|i| i.sign_in.is_some()).cloned().collect()
    }

    /// Whether a principal's token may open a page session (`[pages] token_sign_in`).
    pub fn token_sign_in(&self) -> bool {
        self.inner.read().map(|all| all.token_sign_in).unwrap_or(false)
    }

    /// The verifier of the identity providers' tokens, with its cached keys.
    pub fn verifier(&self) -> &crate::oidc::Verifier {
        &self.verifier
    }

    /// Whether any identity provider is configured.
    pub fn has_issuers(&self) -> bool {
        self.inner.read().map(|all| !all.issuers.is_empty()).unwrap_or(false)
    }

    /// Who an `Authorization: Bearer TOKEN` header speaks for: a token of
    /// this file, or an access token of one of its identity providers
    /// ([`crate::oidc`]).
    pub async fn authenticate_bearer(
        &self,
        authorization: Option<&str>,
    ) -> Result<Authenticated, crate::oidc::Refused> {
        use crate::oidc::Refused;
        let token = authorization.and_then(|a| a.strip_prefix("Bearer ")).map(str::trim).unwrap_or_default();
        if token.is_empty() {
            return Err(Refused::Missing);
        }
        if let Some(principal) = self.authenticate(token) {
            return Ok(Authenticated { principal, person: None });
        }
        if token.split('.').count() != 3 || !self.has_issuers() {
            return Err(Refused::Unknown);
        }
        let verified = self.verifier.verify(self, token).await?;
        Ok(Authenticated { principal: verified.principal, person: verified.person })
    }
}

fn parse(text: &str) -> Result<Set, String> {
    let file: File = toml::from_str(text).map_err(|e| e.message().to_owned())?;
    let principals = parse_principals(file.principal)?;
    let issuers = parse_issuers(file.issuer, &principals)?;
    Ok(Set { principals, issuers, token_sign_in: file.pages.token_sign_in })
}

fn parse_principals(entries: Vec<Entry>) -> Result<Vec<Principal>, String> {
    let mut out = Vec::with_capacity(entries.len());
    for (i, e) in entries.into_iter().enumerate() {
        let at = format!("principal {} ({})", i + 1, e.name);
        let name = PrincipalName::parse(&e.name).map_err(|m| format!("{at}: name {m}"))?;
        let token_sha256 = match &e.token_sha256 {
            None => None,
            Some(text) => {
                let mut digest = [0u8; 32];
                hex::decode_to_slice(text.trim(), &mut digest)
                    .map_err(|_| format!("{at}: token_sha256 must be 64 hex characters"))?;
                Some(digest)
            }
        };
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

fn parse_issuers(entries: Vec<IssuerEntry>, principals: &[Principal]) -> Result<Vec<Issuer>, String> {
    let mut out: Vec<Issuer> = Vec::with_capacity(entries.len());
    for (i, e) in entries.into_iter().enumerate() {
        let at = format!("issuer {} ({})", i + 1, e.name);
        if e.name.trim().is_empty() || e.name.len() > 60 || e.name.chars().any(|c| c.is_control() || c == ':') {
            return Err(format!("{at}: name must be 1 to 60 printable characters without ':'"));
        }
        check_issuer_url(&e.url).map_err(|m| format!("{at}: url {m}"))?;
        if e.audience.trim().is_empty() {
            return Err(format!("{at}: audience must not be empty"));
        }
        if out.iter().any(|o| o.name == e.name || o.url == e.url) {
            return Err(format!("{at}: another issuer has the same name or url"));
        }
        let principal = |name: &str, what: &str| -> Result<PrincipalName, String> {
            principals
                .iter()
                .find(|p| p.name.as_str() == name)
                .map(|p| p.name.clone())
                .ok_or_else(|| format!("{at}: {what} maps to {name:?}, which is no principal of this file"))
        };
        let mut clients = HashMap::new();
        for c in &e.client {
            let p = principal(&c.principal, &format!("client {:?}", c.client_id))?;
            if clients.insert(c.client_id.clone(), p).is_some() {
                return Err(format!("{at}: client {:?} is mapped twice", c.client_id));
            }
        }
        let mut groups = HashMap::new();
        for g in &e.group {
            let p = principal(&g.principal, &format!("group {:?}", g.group))?;
            if groups.insert(g.group.clone(), p).is_some() {
                return Err(format!("{at}: group {:?} is mapped twice", g.group));
            }
        }
        let sign_in = match e.sign_in {
            None => None,
            Some(s) => Some(parse_sign_in(s, &e.name).map_err(|m| format!("{at}: sign_in: {m}"))?),
        };
        out.push(Issuer { name: e.name, url: e.url, audience: e.audience, clients, groups, sign_in });
    }
    Ok(out)
}

fn parse_sign_in(s: SignInEntry, issuer: &str) -> Result<SignIn, String> {
    if s.client_id.trim().is_empty() {
        return Err("client_id must not be empty".into());
    }
    let client_secret = match &s.client_secret_file {
        None => None,
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("client_secret_file {} could not be read: {e}", path.display()))?;
            let secret = text.trim();
            if secret.is_empty() {
                return Err(format!("client_secret_file {} is empty", path.display()));
            }
            Some(Secret(secret.to_owned()))
        }
    };
    if let Some(url) = &s.redirect_url {
        check_issuer_url(url).map_err(|m| format!("redirect_url {m}"))?;
        if !url.ends_with("/ui/sign-in/callback") {
            return Err(format!(
                "redirect_url {url:?} must end in /ui/sign-in/callback, where the pages take the answer"
            ));
        }
    }
    let scopes = s.scopes.unwrap_or_else(|| ["openid", "profile", "email"].map(String::from).to_vec());
    if !scopes.iter().any(|s| s == "openid") {
        return Err("scopes must include openid".into());
    }
    if scopes.iter().any(|s| s.is_empty() || s.chars().any(|c| c.is_whitespace() || c.is_control())) {
        return Err("scopes must be words without spaces".into());
    }
    let label = s.label.unwrap_or_else(|| format!("Sign in with {issuer}"));
    if label.trim().is_empty() || label.chars().count() > 80 || label.chars().any(char::is_control) {
        return Err("label must be 1 to 80 printable characters".into());
    }
    Ok(SignIn { client_id: s.client_id, client_secret, redirect_url: s.redirect_url, scopes, label })
}

/// An issuer's URL (and where its keys are) must be `https`, but on this
/// machine's loopback (a demo or test provider).
pub fn check_issuer_url(url: &str) -> Result<(), String> {
    let loopback = ["http://127.0.0.1:", "http://localhost:", "http://[::1]:"];
    if url.starts_with("https://") || loopback.iter().any(|l| url.starts_with(l)) {
        Ok(())
    } else {
        Err(format!("{url:?} must be https (plain http only on this machine's loopback)"))
    }
}

/// The SHA-256 of a token, as written in the file.
pub fn token_sha256(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_in_through_an_issuer_is_checked_when_the_file_is_read() {
        let file = |sign_in: &str, pages: &str| {
            format!(
                "{pages}[[principal]]\nname = \"people\"\nroles = [\"practitioner\"]\ncouncils = [\"E09000014\"]\n\
                 [[issuer]]\nname = \"council\"\nurl = \"https://login.example/council\"\naudience = \"urn:safeguard\"\n\
                 [[issuer.group]]\ngroup = \"staff\"\nprincipal = \"people\"\n[issuer.sign_in]\n{sign_in}"
            )
        };
        let p = Principals::from_text(&file("client_id = \"pages\"\n", "")).expect("valid");
        let sign_in = p.sign_in_issuers()[0].sign_in.clone().expect("sign-in");
        assert_eq!(sign_in.scopes, ["openid", "profile", "email"]);
        assert_eq!(sign_in.label, "Sign in with council");
        assert!(sign_in.client_secret.is_none() && p.token_sign_in());
        let p =
            Principals::from_text(&file("client_id = \"pages\"\n", "[pages]\ntoken_sign_in = false\n")).expect("valid");
        assert!(!p.token_sign_in());
        for (bad, says) in [
            ("client_id = \"\"\n", "client_id"),
            ("client_id = \"p\"\nscopes = [\"profile\"]\n", "openid"),
            ("client_id = \"p\"\nredirect_url = \"http://safeguard.example/ui/sign-in/callback\"\n", "https"),
            ("client_id = \"p\"\nredirect_url = \"https://safeguard.example/elsewhere\"\n", "/ui/sign-in/callback"),
            ("client_id = \"p\"\nclient_secret_file = \"/nonexistent/secret\"\n", "could not be read"),
        ] {
            let refused = Principals::from_text(&file(bad, "")).expect_err(bad);
            assert!(refused.contains("issuer 1 (council): sign_in") && refused.contains(says), "{refused}");
        }
        let dir = std::env::temp_dir().join(format!("sg-secret-{}", std::process::id()));
        std::fs::write(&dir, "s3cret\n").expect("write");
        let p = Principals::from_text(&file(&format!("client_id = \"p\"\nclient_secret_file = {:?}\n", dir), ""))
            .expect("valid");
        let secret = p.sign_in_issuers()[0].sign_in.clone().and_then(|s| s.client_secret).expect("a secret");
        assert_eq!(secret.expose(), "s3cret");
        assert_eq!(format!("{secret:?}"), "Secret(..)", "never printed");
        let _ = std::fs::remove_file(dir);
    }

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
    fn issuers_map_their_own_clients_and_groups_to_principals_of_the_file() {
        let principal = "[[principal]]\nname = \"haringey-practitioners\"\nroles = [\"practitioner\"]\ncouncils = [\"E09000014\"]\n";
        let issuer = |url: &str, maps_to: &str| {
            format!(
                "{principal}[[issuer]]\nname = \"haringey\"\nurl = \"{url}\"\naudience = \"urn:safeguard\"\n\
                 [[issuer.group]]\ngroup = \"leads\"\nprincipal = \"{maps_to}\"\n"
            )
        };
        let p =
            Principals::from_text(&issuer("https://login.example/haringey", "haringey-practitioners")).expect("valid");
        let found = p.issuer("https://login.example/haringey").expect("the issuer");
        assert_eq!(found.groups.get("leads").map(PrincipalName::as_str), Some("haringey-practitioners"));
        assert!(p.issuer("https://login.example/other").is_none());
        // A principal without a token is reached through its issuer only.
        assert!(p.named("haringey-practitioners").expect("named").token_sha256().is_none());

        let refused = Principals::from_text(&issuer("https://login.example/haringey", "nobody")).expect_err("refused");
        assert!(refused.contains("issuer 1 (haringey)") && refused.contains("\"nobody\""), "{refused}");
        let refused = Principals::from_text(&issuer("http://login.example/haringey", "haringey-practitioners"))
            .expect_err("plain http off the loopback");
        assert!(refused.contains("https"), "{refused}");
        assert!(Principals::from_text(&issuer("http://127.0.0.1:8080", "haringey-practitioners")).is_ok());
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
