//! Bearer tokens from the identity providers `principals.toml` names:
//! OAuth 2 access tokens (JWTs) that an agency system obtains with its
//! client credentials, or that a person's sign-in obtains on their behalf.
//!
//! A token is checked with the `jsonwebtoken` crate against its issuer's
//! published keys (the discovery document's `jwks_uri`, fetched again when
//! a token names a key the cache lacks, at most every
//! [`REFRESH_AT_MOST_EVERY`]): signature, issuer, audience, expiry and
//! not-before. Only asymmetric algorithms are taken, and only the one the
//! issuer's key is for, so neither `alg: none` nor an HMAC keyed with a
//! public key passes. The issuer is looked up by the token's `iss` among
//! those configured, and each issuer maps only its own clients and groups
//! to principals: a group of the same name at another provider maps to
//! nothing, so a police officer can never take a council's role by a
//! group name.

use crate::principals::{Issuer, Principal, Principals};
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// The least time between two fetches of one issuer's keys, so tokens
/// naming made-up key ids cannot make us hammer the provider.
pub const REFRESH_AT_MOST_EVERY: Duration = Duration::from_secs(2);

/// Clock skew allowed on `exp` and `nbf`.
const LEEWAY_SECONDS: u64 = 30;

/// The algorithms a token may be signed with: public-key ones only.
const ASYMMETRIC: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// A person a token was issued to, as their identity provider vouches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    /// The issuer's name in `principals.toml`.
    pub issuer: String,
    /// The `sub` claim: the provider's stable identifier of the person.
    pub subject: String,
    /// `name`, else `preferred_username`, else `email`, else the subject.
    pub name: String,
    pub email: Option<String>,
}

impl Person {
    /// How the access log names them: the name the provider gives, and
    /// which provider's which subject it is, so two people of one name
    /// stay two.
    pub fn acting_user(&self) -> String {
        let name: String = self.name.chars().filter(|c| !c.is_control()).take(100).collect();
        let subject: String = self.subject.chars().filter(|c| !c.is_control()).take(80).collect();
        format!("{name} ({}:{subject})", self.issuer)
    }
}

/// Who a verified bearer token speaks for.
#[derive(Debug, Clone)]
pub struct Verified {
    pub principal: Principal,
    /// The person, when the token was obtained on a person's behalf.
    pub person: Option<Person>,
}

/// Why a token was not taken. Each says what was wrong with the token,
/// never what it held.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("no bearer token was sent")]
    Missing,
    #[error("the bearer token is neither one of principals.toml nor an access token of a configured identity provider")]
    Unknown,
    #[error("the bearer token is not a signed JWT")]
    Malformed,
    #[error("the token's algorithm is not one of the public-key algorithms taken (RS*, PS*, ES256, ES384, EdDSA)")]
    Algorithm,
    #[error("the token's issuer is not one configured in principals.toml")]
    UnknownIssuer,
    #[error("the token's issuer could not be reached to fetch its keys")]
    IssuerUnreachable,
    #[error("the token is signed with a key its issuer does not publish")]
    UnknownKey,
    #[error("the token's signature does not verify")]
    Signature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token is for another audience")]
    Audience,
    #[error("the token lacks a required claim or has one of the wrong type")]
    Claims,
    #[error("the token's client and groups map to no principal of its issuer")]
    Unmapped,
}

/// The claims read from a verified token.
#[derive(Debug, Deserialize)]
struct Claims {
    sub: Option<String>,
    client_id: Option<String>,
    azp: Option<String>,
    name: Option<String>,
    preferred_username: Option<String>,
    email: Option<String>,
    #[serde(default)]
    groups: Vec<String>,
    #[serde(default)]
    roles: Vec<String>,
}

/// The unverified part read first, to find the issuer.
#[derive(Debug, Deserialize)]
struct IssuerOnly {
    iss: String,
}

#[derive(Debug, Deserialize)]
struct Discovery {
    issuer: String,
    jwks_uri: String,
}

/// One issuer's keys as last fetched.
#[derive(Debug)]
struct Keys {
    set: JwkSet,
    fetched: Instant,
}

/// Verifies bearer tokens, keeping each issuer's keys. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Verifier {
    http: reqwest::Client,
    /// Keys by issuer: read by every request, written after a fetch.
    keys: Arc<RwLock<HashMap<String, Arc<Keys>>>>,
    /// Held while fetching, so a burst of tokens naming a new key fetches
    /// once; requests whose key is cached never wait for it.
    fetching: Arc<Mutex<()>>,
}

impl Default for Verifier {
    fn default() -> Self {
        Self::new()
    }
}

impl Verifier {
    pub fn new() -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        Self { http, keys: Arc::default(), fetching: Arc::default() }
    }

    /// Verifies `token` against the issuers `principals` holds now.
    pub async fn verify(&self, principals: &Principals, token: &str) -> Result<Verified, Refused> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| Refused::Malformed)?;
        if !ASYMMETRIC.contains(&header.alg) {
            return Err(Refused::Algorithm);
        }
        let iss = unverified_issuer(token)?;
        let issuer = principals.issuer(&iss).ok_or(Refused::UnknownIssuer)?;
        let jwk = self.key(&issuer, header.kid.as_deref()).await?;
        // The key says what it is for; a token naming another algorithm is refused.
        if let Some(algorithm) = jwk.common.key_algorithm
            && Algorithm::try_from(algorithm).ok() != Some(header.alg)
        {
            return Err(Refused::Algorithm);
        }
        let key = DecodingKey::from_jwk(&jwk).map_err(|_| Refused::UnknownKey)?;
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[issuer.url.as_str()]);
        validation.set_audience(&[issuer.audience.as_str()]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.leeway = LEEWAY_SECONDS;
        validation.validate_nbf = true;
        let data = jsonwebtoken::decode::<Claims>(token, &key, &validation).map_err(|e| refusal(&e))?;
        resolve(principals, &issuer, data.claims)
    }

    /// The issuer's key `kid` (or its only key, for a token naming none),
    /// fetching the keys again if the cache lacks it.
    async fn key(&self, issuer: &Issuer, kid: Option<&str>) -> Result<Jwk, Refused> {
        let cached = || self.keys.read().ok().and_then(|keys| keys.get(&issuer.url).cloned());
        if let Some(jwk) = cached().and_then(|keys| pick(&keys.set, kid).cloned()) {
            return Ok(jwk);
        }
        let _fetching = self.fetching.lock().await;
        // Another request may have fetched while this one waited.
        let now = cached();
        if let Some(jwk) = now.as_ref().and_then(|keys| pick(&keys.set, kid).cloned()) {
            return Ok(jwk);
        }
        if now.is_some_and(|k| k.fetched.elapsed() < REFRESH_AT_MOST_EVERY) {
            return Err(Refused::UnknownKey);
        }
        let set = self.fetch(issuer).await.map_err(|e| {
            tracing::warn!(issuer = %issuer.name, error = %e, "could not fetch an identity provider's keys");
            Refused::IssuerUnreachable
        })?;
        let found = pick(&set, kid).cloned();
        if let Ok(mut keys) = self.keys.write() {
            keys.insert(issuer.url.clone(), Arc::new(Keys { set, fetched: Instant::now() }));
        }
        found.ok_or(Refused::UnknownKey)
    }

    async fn fetch(&self, issuer: &Issuer) -> Result<JwkSet, String> {
        let url = format!("{}/.well-known/openid-configuration", issuer.url.trim_end_matches('/'));
        let discovery: Discovery = self.get_json(&url).await?;
        // The discovery document must be the issuer's own (OpenID Connect Discovery 4.3).
        if discovery.issuer != issuer.url {
            return Err(format!("the discovery document names issuer {:?}", discovery.issuer));
        }
        crate::principals::check_issuer_url(&discovery.jwks_uri).map_err(|m| format!("jwks_uri {m}"))?;
        self.get_json(&discovery.jwks_uri).await
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, url: &str) -> Result<T, String> {
        let response = self.http.get(url).send().await.map_err(|e| format!("{url}: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("{url}: {}", response.status()));
        }
        response.json::<T>().await.map_err(|e| format!("{url}: {e}"))
    }
}

/// A signing key of the set: the one named, or the only signing key.
fn pick<'a>(set: &'a JwkSet, kid: Option<&str>) -> Option<&'a Jwk> {
    let signing = |k: &&Jwk| !matches!(k.common.public_key_use, Some(jsonwebtoken::jwk::PublicKeyUse::Encryption));
    match kid {
        Some(kid) => set.keys.iter().filter(signing).find(|k| k.common.key_id.as_deref() == Some(kid)),
        None => {
            let mut keys = set.keys.iter().filter(signing);
            match (keys.next(), keys.next()) {
                (Some(only), None) => Some(only),
                _ => None,
            }
        }
    }
}

/// The `iss` of a token not yet verified: only to choose which issuer's
/// keys and rules verify it.
fn unverified_issuer(token: &str) -> Result<String, Refused> {
    use base64::Engine;
    let payload = token.split('.').nth(1).ok_or(Refused::Malformed)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).map_err(|_| Refused::Malformed)?;
    let claims: IssuerOnly = serde_json::from_slice(&bytes).map_err(|_| Refused::Malformed)?;
    Ok(claims.iss)
}

fn refusal(e: &jsonwebtoken::errors::Error) -> Refused {
    use jsonwebtoken::errors::ErrorKind;
    match e.kind() {
        ErrorKind::ExpiredSignature => Refused::Expired,
        ErrorKind::ImmatureSignature => Refused::NotYetValid,
        ErrorKind::InvalidAudience => Refused::Audience,
        ErrorKind::InvalidIssuer => Refused::UnknownIssuer,
        ErrorKind::InvalidSignature => Refused::Signature,
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => Refused::Algorithm,
        ErrorKind::MissingRequiredClaim(_) | ErrorKind::Json(_) => Refused::Claims,
        _ => Refused::Malformed,
    }
}

/// The principal (and person) a verified token's claims map to under its issuer.
fn resolve(principals: &Principals, issuer: &Issuer, claims: Claims) -> Result<Verified, Refused> {
    let client = claims.client_id.as_deref().or(claims.azp.as_deref());
    // A token a client obtained for itself has the client as its subject.
    let person = match (&claims.sub, client) {
        (Some(sub), Some(client)) if sub == client => None,
        (Some(sub), _) => Some(Person {
            issuer: issuer.name.clone(),
            subject: sub.clone(),
            name: claims
                .name
                .clone()
                .or_else(|| claims.preferred_username.clone())
                .or_else(|| claims.email.clone())
                .unwrap_or_else(|| sub.clone()),
            email: claims.email.clone(),
        }),
        (None, _) => None,
    };
    // A person's groups first: what they may do is theirs, whichever
    // system asked on their behalf; else the client's own mapping.
    let by_group = person
        .as_ref()
        .and_then(|_| claims.groups.iter().chain(&claims.roles).find_map(|g| issuer.groups.get(g.as_str())));
    let by_client = client.and_then(|c| issuer.clients.get(c));
    let name = by_group.or(by_client).ok_or(Refused::Unmapped)?;
    let principal = principals.named(name.as_str()).ok_or(Refused::Unmapped)?;
    Ok(Verified { principal, person })
}
