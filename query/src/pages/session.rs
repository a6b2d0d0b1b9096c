//! Sign-in for the pages. People sign in through their identity provider
//! (OpenID Connect, authorization code with PKCE): the state, nonce and
//! code verifier of a sign-in travel in a short-lived sealed cookie of
//! their own (`__Host-sg_login`, `SameSite=Lax`, since the provider sends
//! the browser back from another site), and the verified ID token opens a
//! session bound to the issuer and the person's subject. Operators may
//! still present a principal's token (when `[pages] token_sign_in` allows),
//! once, in the body of a same-origin POST. Either way the browser then
//! holds a session cookie:
//!
//! - `__Host-` prefixed, `HttpOnly`, `Secure`, `SameSite=Strict`, `Path=/`:
//!   scripts cannot read it, other sites cannot make the browser send it,
//!   and no other host or path can overwrite it.
//! - Its value is the session (principal, acting user, purpose, expiry,
//!   nonce, and a keyed digest of the credential it was opened with) with an
//!   HMAC-SHA256 tag under the session key. Nothing about a live session is
//!   stored server-side, so every query role sharing the session key
//!   accepts it; the principal and its credential are looked up again on
//!   every request, so removing a principal from `principals.toml` or
//!   rotating its token (and SIGHUP) ends its sessions at once. Signing out records the
//!   session's nonce in the `sg_signed_out` bucket (until the cookie would
//!   have expired), so a copy of the cookie dies with it.
//! - Anything that changes state (sign-in, sign-out) must come from our own
//!   origin (`Origin`, else `Sec-Fetch-Site`); sign-out also carries a CSRF
//!   token, an HMAC of the session's nonce.
//!
//! The token itself is never in a URL, a cookie or a log.

use axum::http::{HeaderMap, HeaderValue, header};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac as _};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use subtle::ConstantTimeEq as _;

pub const COOKIE: &str = "__Host-sg_session";
/// A working day: after it the person signs in again.
pub const LIFETIME_SECS: i64 = 8 * 60 * 60;

/// Who is using the browser, on whose authority.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    #[serde(rename = "p")]
    pub principal: String,
    /// The person at the keyboard, recorded with every child-level read.
    #[serde(rename = "u")]
    pub acting_user: String,
    #[serde(rename = "r", default, skip_serializing_if = "Option::is_none")]
    pub purpose: Option<String>,
    /// Unix seconds.
    #[serde(rename = "e")]
    pub expires: i64,
    /// Random, so two sessions of one person differ and each has its own CSRF token.
    #[serde(rename = "n")]
    pub nonce: String,
    /// Which of the principal's credentials the session was opened with
    /// ([`SessionKey::credential`]): a session outlives neither a rotated
    /// token nor a removed principal.
    #[serde(rename = "c")]
    pub credential: String,
    /// The identity provider the person signed in through (its name in
    /// `principals.toml`); none for a token sign-in.
    #[serde(rename = "i", default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// Their group that mapped to the principal: the session lasts only
    /// while the issuer maps it so.
    #[serde(rename = "g", default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

impl Session {
    pub fn new(
        principal: String,
        credential: String,
        acting_user: String,
        purpose: Option<String>,
        now: DateTime<Utc>,
    ) -> Self {
        Self {
            principal,
            acting_user,
            purpose,
            expires: now.timestamp() + LIFETIME_SECS,
            nonce: hex::encode(rand::random::<[u8; 16]>()),
            credential,
            issuer: None,
            group: None,
        }
    }

    /// A session for a person an identity provider vouched for.
    pub fn for_person(key: &SessionKey, signed_in: &platform::oidc::SignedIn, now: DateTime<Utc>) -> Self {
        let person = &signed_in.person;
        Self {
            issuer: Some(person.issuer.clone()),
            group: Some(signed_in.group.clone()),
            ..Self::new(
                signed_in.principal.name.as_str().to_owned(),
                key.person_credential(&person.issuer, &person.subject),
                person.acting_user(),
                None,
                now,
            )
        }
    }
}

/// A sign-in under way at an identity provider: what the callback checks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Login {
    #[serde(rename = "i")]
    pub issuer: String,
    /// Sent to the provider and back: the callback is this sign-in's answer.
    #[serde(rename = "s")]
    pub state: String,
    /// Sent to the provider, which puts it in the ID token.
    #[serde(rename = "n")]
    pub nonce: String,
    /// The PKCE code verifier: only its hash went to the provider.
    #[serde(rename = "v")]
    pub verifier: String,
    #[serde(rename = "e")]
    pub expires: i64,
}

/// How long a person may take at their provider's sign-in page.
pub const LOGIN_LIFETIME_SECS: i64 = 10 * 60;

impl Login {
    pub fn new(issuer: String, now: DateTime<Utc>) -> Self {
        let random = || URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
        Self {
            issuer,
            state: random(),
            nonce: random(),
            verifier: random(),
            expires: now.timestamp() + LOGIN_LIFETIME_SECS,
        }
    }

    /// Whether the provider's `state` is this sign-in's.
    pub fn same_state(&self, presented: &str) -> bool {
        bool::from(self.state.as_bytes().ct_eq(presented.as_bytes()))
    }
}

/// Signs and opens session cookies.
#[derive(Clone)]
pub struct SessionKey([u8; 32]);

impl std::fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKey(..)")
    }
}

impl SessionKey {
    pub fn new(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    fn tag(&self, label: &[u8], data: &[u8]) -> [u8; 32] {
        // HMAC takes a key of any length, so this cannot fail.
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.0) else { return [0; 32] };
        mac.update(label);
        mac.update(data);
        mac.finalize().into_bytes().into()
    }

    /// The cookie value: `v1.<payload>.<tag>`, both base64url.
    pub fn seal(&self, session: &Session) -> String {
        self.seal_as(b"session\n", session)
    }

    /// The session a cookie value holds, if its tag is ours and it has not expired.
    pub fn open(&self, value: &str, now: DateTime<Utc>) -> Option<Session> {
        let session: Session = self.open_as(b"session\n", value)?;
        (session.expires > now.timestamp()).then_some(session)
    }

    /// A sign-in's cookie value, tagged apart from sessions so one can never pass for the other.
    pub fn seal_login(&self, login: &Login) -> String {
        self.seal_as(b"login\n", login)
    }

    pub fn open_login(&self, value: &str, now: DateTime<Utc>) -> Option<Login> {
        let login: Login = self.open_as(b"login\n", value)?;
        (login.expires > now.timestamp()).then_some(login)
    }

    fn seal_as<T: Serialize>(&self, label: &[u8], value: &T) -> String {
        let payload = serde_json::to_vec(value).unwrap_or_default();
        let tag = self.tag(label, &payload);
        format!("v1.{}.{}", URL_SAFE_NO_PAD.encode(&payload), URL_SAFE_NO_PAD.encode(tag))
    }

    fn open_as<T: serde::de::DeserializeOwned>(&self, label: &[u8], value: &str) -> Option<T> {
        let rest = value.strip_prefix("v1.")?;
        let (payload, tag) = rest.split_once('.')?;
        let payload = URL_SAFE_NO_PAD.decode(payload).ok()?;
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        if !bool::from(self.tag(label, &payload).as_slice().ct_eq(&tag)) {
            return None;
        }
        serde_json::from_slice(&payload).ok()
    }

    /// What a person's session records of who they are: a keyed digest of
    /// their issuer and subject.
    pub fn person_credential(&self, issuer: &str, subject: &str) -> String {
        hex::encode(&self.tag(b"person\n", format!("{issuer}\n{subject}").as_bytes())[..16])
    }

    /// What a session records of the credential it was opened with: a
    /// keyed digest of the token's digest, so the cookie (which its holder
    /// can read) tells nothing about the token, and a token rotated in
    /// `principals.toml` no longer matches it.
    pub fn credential(&self, token_sha256: &[u8; 32]) -> String {
        hex::encode(&self.tag(b"credential\n", token_sha256)[..16])
    }

    /// Whether `session` was opened with the credential the principal holds now.
    pub fn same_credential(&self, session: &Session, token_sha256: &[u8; 32]) -> bool {
        bool::from(self.credential(token_sha256).as_bytes().ct_eq(session.credential.as_bytes()))
    }

    /// The CSRF token of a session, for forms that change state.
    pub fn csrf(&self, session: &Session) -> String {
        hex::encode(self.tag(b"csrf\n", session.nonce.as_bytes()))
    }

    pub fn csrf_ok(&self, session: &Session, presented: &str) -> bool {
        bool::from(self.csrf(session).as_bytes().ct_eq(presented.as_bytes()))
    }
}

/// The session cookie's value among the request's cookies.
pub fn cookie(headers: &HeaderMap) -> Option<&str> {
    cookie_named(headers, COOKIE)
}

/// A sign-in's cookie value among the request's cookies.
pub fn login_cookie(headers: &HeaderMap) -> Option<&str> {
    cookie_named(headers, LOGIN_COOKIE)
}

fn cookie_named<'h>(headers: &'h HeaderMap, wanted: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == wanted)
        .map(|(_, value)| value)
}

pub const LOGIN_COOKIE: &str = "__Host-sg_login";

/// The sign-in's cookie: `SameSite=Lax`, because the provider sends the
/// browser back to us from its own site, and a strict cookie would stay
/// behind. It holds nothing that opens a session by itself.
pub fn set_login_cookie(value: &str) -> HeaderValue {
    let text = format!("{LOGIN_COOKIE}={value}; Path=/; HttpOnly; Secure; SameSite=Lax; Max-Age={LOGIN_LIFETIME_SECS}");
    HeaderValue::from_str(&text).unwrap_or_else(|_| clear_login_cookie())
}

pub fn clear_login_cookie() -> HeaderValue {
    HeaderValue::from_static("__Host-sg_login=; Path=/; HttpOnly; Secure; SameSite=Lax; Max-Age=0")
}

pub fn set_cookie(value: &str) -> HeaderValue {
    let text = format!("{COOKIE}={value}; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age={LIFETIME_SECS}");
    HeaderValue::from_str(&text).unwrap_or_else(|_| clear_cookie())
}

pub fn clear_cookie() -> HeaderValue {
    HeaderValue::from_static("__Host-sg_session=; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age=0")
}

/// Whether a state-changing request comes from one of our own pages. The
/// browser sets `Origin` on every POST (and `Sec-Fetch-Site`); a request
/// with neither is not from a browser form and is refused.
pub fn same_origin(headers: &HeaderMap) -> bool {
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    // "null" is what a browser sends when it withholds the origin; Sec-Fetch-Site still tells.
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()).filter(|o| *o != "null") {
        // Compare the host part only: a TLS-terminating proxy changes the scheme, not the host.
        let origin_host = origin.split_once("://").map(|(_, h)| h);
        return origin_host.is_some() && origin_host == host;
    }
    headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) == Some("same-origin")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_760_000_000, 0).unwrap_or_default()
    }

    #[test]
    fn a_sealed_session_opens_only_with_its_key_and_before_it_expires() {
        let key = SessionKey::new([7; 32]);
        let session = Session::new("haringey-csc".into(), "c".into(), "A. Worker".into(), None, now());
        let sealed = key.seal(&session);
        assert_eq!(key.open(&sealed, now()), Some(session.clone()));
        assert_eq!(SessionKey::new([8; 32]).open(&sealed, now()), None);
        let later = now() + chrono::Duration::seconds(LIFETIME_SECS);
        assert_eq!(key.open(&sealed, later), None);
        // A changed payload under the old tag is refused.
        let (_, tag) = sealed.rsplit_once('.').unwrap_or_default();
        let mut forged = session.clone();
        forged.principal = "safeguard-admin".into();
        let forged_payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged).unwrap_or_default());
        assert_eq!(key.open(&format!("v1.{forged_payload}.{tag}"), now()), None);
        assert_eq!(key.open("v1.garbage", now()), None);
    }

    #[test]
    fn csrf_tokens_belong_to_one_session() {
        let key = SessionKey::new([7; 32]);
        let a = Session::new("p".into(), "c".into(), "u".into(), None, now());
        let b = Session::new("p".into(), "c".into(), "u".into(), None, now());
        assert!(key.csrf_ok(&a, &key.csrf(&a)));
        assert!(!key.csrf_ok(&b, &key.csrf(&a)));
        assert!(!key.csrf_ok(&a, ""));
    }

    #[test]
    fn only_our_own_origin_may_change_state() {
        let headers = |pairs: &[(&'static str, &'static str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.insert(*k, HeaderValue::from_static(v));
            }
            h
        };
        assert!(same_origin(&headers(&[
            ("host", "safeguard.example:8081"),
            ("origin", "https://safeguard.example:8081")
        ])));
        assert!(!same_origin(&headers(&[("host", "safeguard.example"), ("origin", "https://evil.example")])));
        assert!(!same_origin(&headers(&[("host", "safeguard.example"), ("origin", "null")])));
        assert!(same_origin(&headers(&[("host", "a.example"), ("origin", "null"), ("sec-fetch-site", "same-origin")])));
        assert!(same_origin(&headers(&[("host", "safeguard.example"), ("sec-fetch-site", "same-origin")])));
        assert!(!same_origin(&headers(&[("host", "safeguard.example"), ("sec-fetch-site", "cross-site")])));
        assert!(!same_origin(&headers(&[("host", "safeguard.example")])));
    }

    #[test]
    fn the_cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_static("a=1; __Host-sg_session=v1.x.y; b=2"));
        assert_eq!(cookie(&h), Some("v1.x.y"));
    }
}
