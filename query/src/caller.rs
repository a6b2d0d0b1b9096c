//! Who is asking: the one place a request becomes a [`Caller`], for the API
//! and the pages alike. A caller is a principal as it stands in
//! `principals.toml` now, and the [`Asker`] its reads are recorded under.
//! What a caller may read is decided only by [`crate::policy`], through
//! [`crate::admit_child`], [`crate::admit_council`] and [`crate::record`],
//! which take a `Caller` whichever way it signed in.

use crate::QueryState;
use crate::access::Asker;
use crate::error::QueryError;
use crate::pages::session::{self, Session};
use axum::http::{HeaderMap, header};
use platform::principals::Principal;

/// A signed-in principal and what its reads are recorded under.
#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: Principal,
    pub asker: Asker,
}

impl Caller {
    /// An API request: the bearer token names the principal; `X-Acting-User`
    /// and `X-Purpose` say who at the agency asked and why.
    ///
    /// An identity provider's token obtained on a person's behalf names
    /// the person: they, as the provider vouches, are the acting user,
    /// whatever `X-Acting-User` says.
    pub async fn from_bearer(app: &QueryState, headers: &HeaderMap) -> Result<Self, QueryError> {
        use platform::oidc::Refused;
        let authorization = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        let who = match app.principals.authenticate_bearer(authorization).await {
            Ok(who) => who,
            Err(Refused::Missing | Refused::Unknown) => return Err(QueryError::Unauthorized),
            // Nothing is wrong with the token that we know of: try again later.
            Err(refused @ Refused::IssuerUnreachable) => return Err(QueryError::unavailable(refused.to_string())),
            Err(refused) => return Err(QueryError::TokenRefused(refused.to_string())),
        };
        let principal = who.principal;
        let header_text = |name: &str| -> Result<Option<String>, QueryError> {
            match headers.get(name) {
                None => Ok(None),
                Some(v) => {
                    let text = v.to_str().map_err(|_| QueryError::invalid(name, "must be printable ASCII"))?.trim();
                    if text.len() > 200 {
                        return Err(QueryError::invalid(name, "must be at most 200 characters"));
                    }
                    Ok((!text.is_empty()).then(|| text.to_owned()))
                }
            }
        };
        let asker = Asker {
            principal: principal.name.as_str().to_owned(),
            acting_user: match &who.person {
                Some(person) => Some(person.acting_user()),
                None => header_text("x-acting-user")?,
            },
            purpose: header_text("x-purpose")?,
        };
        Ok(Self { principal, asker })
    }

    /// A page request: the session cookie (signed, unexpired, not signed out
    /// elsewhere) names the principal and the acting user and purpose given
    /// at sign-in. The principal is looked up as it stands now, so a
    /// principal removed from `principals.toml` is signed out with it.
    pub async fn from_session(app: &QueryState, headers: &HeaderMap) -> Result<(Self, Session), QueryError> {
        let session = session::cookie(headers)
            .and_then(|value| app.sessions.open(value, (app.now)()))
            .ok_or(QueryError::Unauthorized)?;
        // A session signed out elsewhere (or whose cookie was copied before it was) is over.
        let signed_out = app.signed_out.get(&session.nonce).await.map_err(|e| {
            tracing::error!(error = %e, "could not read the signed-out sessions");
            QueryError::unavailable("sessions cannot be checked just now")
        })?;
        if signed_out.is_some() {
            return Err(QueryError::Unauthorized);
        }
        let principal = app.principals.named(&session.principal).ok_or(QueryError::Unauthorized)?;
        let standing = match (&session.issuer, &session.group) {
            // A person's session lasts while their provider is still one
            // people sign in through and still maps their group to this principal.
            (Some(issuer), Some(group)) => app
                .principals
                .issuer_named(issuer)
                .filter(|i| i.sign_in.is_some())
                .is_some_and(|i| i.groups.get(group).is_some_and(|p| p.as_str() == session.principal)),
            // A token's session lasts while token sign-in is allowed and the
            // principal holds the token still (not rotated, perhaps because it leaked).
            (None, None) => {
                app.principals.token_sign_in()
                    && principal.token_sha256().is_some_and(|held| app.sessions.same_credential(&session, held))
            }
            _ => false,
        };
        if !standing {
            return Err(QueryError::Unauthorized);
        }
        let asker = Asker {
            principal: session.principal.clone(),
            acting_user: Some(session.acting_user.clone()),
            purpose: session.purpose.clone(),
        };
        Ok((Self { principal, asker }, session))
    }
}
