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
//!
//! People sign in to the pages with the authorization code flow and PKCE
//! (the pages hold the state, nonce and verifier, see the query role's
//! `pages::session`); [`Verifier::redeem`] exchanges the code at the
//! provider's token endpoint and verifies the ID token it answers with:
//! the same keys and rules, the pages' client as audience, and the nonce
//! of this very sign-in.

use crate::principals::{Issuer, Principal, Principals, SignIn};
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
    #[error("the ID token was not issued for this sign-in (its nonce differs)")]
    Nonce,
}

/// Why a sign-in through an identity provider did not complete. Each says
/// what went wrong, never what a token held.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignInFailed {
    #[error("the identity provider could not be reached")]
    Unreachable,
    #[error("the identity provider's discovery document names no authorization or token endpoint")]
    NoEndpoints,
    #[error("the identity provider refused to redeem the sign-in: {0}")]
    Redeem(String),
    #[error("the identity provider's answer held no ID token")]
    NoIdToken,
    #[error("{0}")]
    IdToken(Refused),
}

/// A provider's answer to one sign-in, with what that sign-in kept.
#[derive(Debug, Clone, Copy)]
pub struct Answer<'a> {
    /// The authorization code the provider sent back.
    pub code: &'a str,
    /// The PKCE verifier whose challenge went out with the request.
    pub code_verifier: &'a str,
    /// The redirect address the request named, exactly.
    pub redirect_uri: &'a str,
    /// The nonce the request carried, which the ID token must name.
    pub nonce: &'a str,
}

/// A person signed in through their identity provider.
#[derive(Debug, Clone)]
pub struct SignedIn {
    pub principal: Principal,
    pub person: Person,
    /// The group (or role) of theirs that mapped to the principal: a
    /// session lasts only while the issuer still maps it so.
    pub group: String,
}

/// Where an issuer's endpoints are, from its discovery document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    pub authorization: String,
    pub token: String,
    /// Where a person is signed out at the provider too (RP-initiated logout), if it offers it.
    pub end_session: Option<String>,
}

/// The token endpoint's answer to a code.
#[derive(Debug, Deserialize)]
struct TokenAnswer {
    id_token: Option<String>,
    error: Option<String>,
}

/// The claims read from a verified token (an access token, or an ID token,
/// which also carries its sign-in's `nonce`).
#[derive(Debug, Deserialize)]
struct Claims {
    sub: Option<String>,
    nonce: Option<String>,
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
    authorization_endpoint: Option<String>,
    token_endpoint: Option<String>,
    end_session_endpoint: Option<String>,
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
    /// Endpoints by issuer, from the discovery document last fetched.
    endpoints: Arc<RwLock<HashMap<String, Arc<Endpoints>>>>,
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
        Self { http, keys: Arc::default(), fetching: Arc::default(), endpoints: Arc::default() }
    }

    /// The issuer's endpoints, from its discovery document (fetched once,
    /// and again with its keys).
    pub async fn endpoints(&self, issuer: &Issuer) -> Result<Arc<Endpoints>, SignInFailed> {
        let cached = || self.endpoints.read().ok().and_then(|e| e.get(&issuer.url).cloned());
        if let Some(found) = cached() {
            return Ok(found);
        }
        let _fetching = self.fetching.lock().await;
        if let Some(found) = cached() {
            return Ok(found);
        }
        let set = self.fetch(issuer).await.map_err(|e| {
            tracing::warn!(issuer = %issuer.name, error = %e, "could not fetch an identity provider's discovery document");
            SignInFailed::Unreachable
        })?;
        if let Ok(mut keys) = self.keys.write() {
            keys.insert(issuer.url.clone(), Arc::new(Keys { set, fetched: Instant::now() }));
        }
        cached().ok_or(SignInFailed::NoEndpoints)
    }

    /// Completes a person's sign-in: redeems `code` at the issuer's token
    /// endpoint with the PKCE `code_verifier`, verifies the ID token it
    /// answers with (signature, issuer, the pages' client as audience,
    /// expiry, and `nonce`), and maps the person's groups to a principal
    /// of this issuer. A client mapping never applies: the pages' client
    /// is no agency system.
    pub async fn redeem(
        &self,
        principals: &Principals,
        issuer: &Issuer,
        sign_in: &SignIn,
        answer: &Answer<'_>,
    ) -> Result<SignedIn, SignInFailed> {
        let endpoints = self.endpoints(issuer).await?;
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", answer.code),
            ("redirect_uri", answer.redirect_uri),
            ("code_verifier", answer.code_verifier),
        ];
        let mut request = self.http.post(&endpoints.token);
        match &sign_in.client_secret {
            // client_secret_basic: both parts form-encoded first (RFC 6749, 2.3.1).
            Some(secret) => {
                request = request.basic_auth(form_encode(&sign_in.client_id), Some(form_encode(secret.expose())));
            }
            None => form.push(("client_id", sign_in.client_id.as_str())),
        }
        let response = request.form(&form).send().await.map_err(|e| {
            tracing::warn!(issuer = %issuer.name, error = %e, "could not reach an identity provider's token endpoint");
            SignInFailed::Unreachable
        })?;
        let status = response.status();
        let tokens: TokenAnswer =
            response.json().await.map_err(|_| SignInFailed::Redeem(format!("status {status}")))?;
        if let Some(error) = tokens.error {
            // The error code only (invalid_grant and the like): its description may echo what was sent.
            let code: String = error.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_').take(40).collect();
            return Err(SignInFailed::Redeem(code));
        }
        if !status.is_success() {
            return Err(SignInFailed::Redeem(format!("status {status}")));
        }
        let id_token = tokens.id_token.ok_or(SignInFailed::NoIdToken)?;
        self.verify_id_token(principals, issuer, sign_in, &id_token, answer.nonce).await.map_err(SignInFailed::IdToken)
    }

    /// Verifies an ID token issued to the pages' client for the sign-in
    /// that sent `nonce`, and maps the person it names.
    async fn verify_id_token(
        &self,
        principals: &Principals,
        issuer: &Issuer,
        sign_in: &SignIn,
        token: &str,
        nonce: &str,
    ) -> Result<SignedIn, Refused> {
        let header = asymmetric_header(token)?;
        let claims = self.decode(issuer, token, &header, &sign_in.client_id).await?;
        let sub = claims.sub.ok_or(Refused::Claims)?;
        let same_nonce = claims.nonce.as_deref().is_some_and(|n| {
            use subtle::ConstantTimeEq as _;
            bool::from(n.as_bytes().ct_eq(nonce.as_bytes()))
        });
        if !same_nonce {
            return Err(Refused::Nonce);
        }
        let person = person(issuer, &sub, claims.name, claims.preferred_username, claims.email);
        let (group, name) = claims
            .groups
            .iter()
            .chain(&claims.roles)
            .find_map(|g| issuer.groups.get(g.as_str()).map(|p| (g.clone(), p)))
            .ok_or(Refused::Unmapped)?;
        let principal = principals.named(name.as_str()).ok_or(Refused::Unmapped)?;
        Ok(SignedIn { principal, person, group })
    }

    /// Verifies `token` against the issuers `principals` holds now.
    pub async fn verify(&self, principals: &Principals, token: &str) -> Result<Verified, Refused> {
        let header = asymmetric_header(token)?;
        let iss = unverified_issuer(token)?;
        let issuer = principals.issuer(&iss).ok_or(Refused::UnknownIssuer)?;
        let claims = self.decode(&issuer, token, &header, &issuer.audience).await?;
        resolve(principals, &issuer, claims)
    }

    /// Verifies `token` with `issuer`'s key for it: the algorithm the key
    /// is for, the signature, `iss`, `aud` (`audience`), `exp` and `nbf`.
    async fn decode(
        &self,
        issuer: &Issuer,
        token: &str,
        header: &jsonwebtoken::Header,
        audience: &str,
    ) -> Result<Claims, Refused> {
        let jwk = self.key(issuer, header.kid.as_deref()).await?;
        // The key says what it is for; a token naming another algorithm is refused.
        if let Some(algorithm) = jwk.common.key_algorithm
            && Algorithm::try_from(algorithm).ok() != Some(header.alg)
        {
            return Err(Refused::Algorithm);
        }
        let key = DecodingKey::from_jwk(&jwk).map_err(|_| Refused::UnknownKey)?;
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[issuer.url.as_str()]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.leeway = LEEWAY_SECONDS;
        validation.validate_nbf = true;
        Ok(jsonwebtoken::decode::<Claims>(token, &key, &validation).map_err(|e| refusal(&e))?.claims)
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
        if let (Some(authorization), Some(token)) = (discovery.authorization_endpoint, discovery.token_endpoint) {
            // The browser is sent to one and the code to the other: both must be the provider's own kind of URL.
            crate::principals::check_issuer_url(&authorization).map_err(|m| format!("authorization_endpoint {m}"))?;
            crate::principals::check_issuer_url(&token).map_err(|m| format!("token_endpoint {m}"))?;
            let end_session = discovery.end_session_endpoint.filter(|u| crate::principals::check_issuer_url(u).is_ok());
            if let Ok(mut endpoints) = self.endpoints.write() {
                endpoints.insert(issuer.url.clone(), Arc::new(Endpoints { authorization, token, end_session }));
            }
        }
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

/// A token's header, if it names a public-key algorithm: `alg: none` and
/// HMACs are refused before any key is looked at.
fn asymmetric_header(token: &str) -> Result<jsonwebtoken::Header, Refused> {
    let header = jsonwebtoken::decode_header(token).map_err(|_| Refused::Malformed)?;
    if !ASYMMETRIC.contains(&header.alg) {
        return Err(Refused::Algorithm);
    }
    Ok(header)
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

/// Where to send the browser to sign in: the authorization endpoint with
/// a code request for the pages' client, this sign-in's `state` and
/// `nonce`, and the PKCE challenge of its verifier (S256).
pub fn authorization_url(
    endpoints: &Endpoints,
    sign_in: &SignIn,
    redirect_uri: &str,
    state: &str,
    nonce: &str,
    code_verifier: &str,
) -> String {
    use base64::Engine as _;
    use sha2::Digest as _;
    let challenge =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(code_verifier.as_bytes()));
    let scope = sign_in.scopes.join(" ");
    let query = [
        ("response_type", "code"),
        ("client_id", sign_in.client_id.as_str()),
        ("redirect_uri", redirect_uri),
        ("scope", scope.as_str()),
        ("state", state),
        ("nonce", nonce),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
    ]
    .iter()
    .map(|(k, v)| format!("{k}={}", form_encode(v)))
    .collect::<Vec<_>>()
    .join("&");
    let joiner = if endpoints.authorization.contains('?') { '&' } else { '?' };
    format!("{}{joiner}{query}", endpoints.authorization)
}

/// Where to send the browser to sign out at the provider too, coming back
/// to `post_logout_redirect_uri`; none if the provider offers no such endpoint.
pub fn end_session_url(endpoints: &Endpoints, sign_in: &SignIn, post_logout_redirect_uri: &str) -> Option<String> {
    let end = endpoints.end_session.as_ref()?;
    let joiner = if end.contains('?') { '&' } else { '?' };
    Some(format!(
        "{end}{joiner}client_id={}&post_logout_redirect_uri={}",
        form_encode(&sign_in.client_id),
        form_encode(post_logout_redirect_uri)
    ))
}

/// A person as their provider names them: `name`, else
/// `preferred_username`, else `email`, else the subject.
fn person(
    issuer: &Issuer,
    sub: &str,
    name: Option<String>,
    preferred_username: Option<String>,
    email: Option<String>,
) -> Person {
    Person {
        issuer: issuer.name.clone(),
        subject: sub.to_owned(),
        name: name.or(preferred_username).or_else(|| email.clone()).unwrap_or_else(|| sub.to_owned()),
        email,
    }
}

/// `application/x-www-form-urlencoded` of one value: unreserved characters
/// as they are, every other byte percent-encoded.
fn form_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The principal (and person) a verified token's claims map to under its issuer.
fn resolve(principals: &Principals, issuer: &Issuer, claims: Claims) -> Result<Verified, Refused> {
    let client = claims.client_id.as_deref().or(claims.azp.as_deref());
    // A token a client obtained for itself has the client as its subject.
    let person = match (&claims.sub, client) {
        (Some(sub), Some(client)) if sub == client => None,
        (Some(sub), _) => {
            Some(person(issuer, sub, claims.name.clone(), claims.preferred_username.clone(), claims.email.clone()))
        }
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
