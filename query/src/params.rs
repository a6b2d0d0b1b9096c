//! The query string of an API request, read into a handler's parameters
//! with every refusal in problem+json naming the parameter (axum's own
//! `Query` answers a repeated parameter with a bare 400 in plain text).

use crate::error::QueryError;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

/// `T` from the request's query string.
#[derive(Debug)]
pub struct Params<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Params<T> {
    type Rejection = QueryError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, QueryError> {
        let query = parts.uri.query().unwrap_or_default();
        serde_urlencoded::from_str(query).map(Params).map_err(|e| refusal(&e.to_string()))
    }
}

/// serde names the field at fault between backticks ("duplicate field
/// `council`"); the parameter is named so, or the query string as a whole.
fn refusal(error: &str) -> QueryError {
    let named = error.split('`').nth(1).filter(|name| !name.is_empty());
    match named {
        Some(name) if error.starts_with("duplicate field") => QueryError::invalid(name, "must be given once"),
        Some(name) => QueryError::invalid(name, error.to_owned()),
        None => QueryError::invalid("query", error.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_parameter_is_named() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct P {
            council: Option<String>,
        }
        let error = serde_urlencoded::from_str::<P>("council=a&council=b").expect_err("a repeat");
        let QueryError::Invalid(problems) = refusal(&error.to_string()) else { panic!("not invalid") };
        assert_eq!(problems[0].parameter, "council");
        assert_eq!(problems[0].message, "must be given once");
    }
}
