//! The gateway's one error type. Its `IntoResponse` alone decides status
//! codes and writes RFC 9457 `application/problem+json`. A 5xx cause is
//! logged once here, with the request id, and never sent to the caller: the
//! answer has our own words and the `request_id` to quote.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// One thing wrong, located in the request: the batch index (0 for a single
/// event) and a JSON pointer into that event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    pub index: usize,
    pub pointer: String,
    pub message: String,
}

impl FieldError {
    pub fn new(index: usize, pointer: impl Into<String>, message: impl Into<String>) -> Self {
        Self { index, pointer: pointer.into(), message: message.into() }
    }
}

/// An event known to be stored when a request fails part-way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct KnownStored {
    pub index: usize,
    pub id: String,
    pub sequence: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("the body is not JSON")]
    BadJson { detail: String },
    #[error("no valid bearer token")]
    Unauthorized,
    /// An identity provider's token that did not verify, and why.
    #[error("the bearer token was refused: {0}")]
    TokenRefused(String),
    #[error("not allowed")]
    Forbidden { errors: Vec<FieldError> },
    #[error("conflict with what is stored")]
    Conflict { errors: Vec<FieldError>, current_sequence: Option<u64> },
    #[error("too large")]
    TooLarge { detail: String, errors: Vec<FieldError> },
    #[error("unsupported content type")]
    UnsupportedMediaType { detail: String },
    #[error("invalid event")]
    Invalid { errors: Vec<FieldError> },
    /// `detail` is ours, for the caller; `cause` is for the log only.
    #[error("storage unavailable: {detail}")]
    Unavailable { detail: String, stored: Vec<KnownStored>, cause: Option<anyhow::Error> },
    #[error("not found")]
    NotFound { detail: String },
    #[error("internal error: {0:#}")]
    Internal(anyhow::Error),
}

impl ApiError {
    /// A dependency (JetStream, the key store) failed: `detail` in our words,
    /// the cause kept for the log.
    pub fn unavailable(detail: impl Into<String>, cause: impl Into<anyhow::Error>) -> Self {
        Self::Unavailable { detail: detail.into(), stored: Vec::new(), cause: Some(cause.into()) }
    }
}

/// An RFC 9457 problem, as every error of the gateway answers it.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct Problem {
    /// `/problems/<slug>`: what kind of problem.
    #[serde(rename = "type")]
    kind: String,
    title: &'static str,
    status: u16,
    detail: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    errors: Vec<FieldError>,
    #[serde(skip_serializing_if = "Option::is_none")]
    current_sequence: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    index: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stored: Option<Vec<KnownStored>>,
    /// On a server error: the id its cause is logged under.
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<String>,
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadJson { .. } => StatusCode::BAD_REQUEST,
            Self::Unauthorized | Self::TokenRefused(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden { .. } => StatusCode::FORBIDDEN,
            Self::Conflict { .. } => StatusCode::CONFLICT,
            Self::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::NotFound { .. } => StatusCode::NOT_FOUND,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn slug_and_title(&self) -> (&'static str, &'static str) {
        match self {
            Self::BadJson { .. } => ("malformed-json", "The body is not JSON"),
            Self::Unauthorized | Self::TokenRefused(_) => ("unauthorized", "No valid bearer token"),
            Self::Forbidden { .. } => ("forbidden", "Not allowed for this principal"),
            Self::Conflict { .. } => ("conflict", "Conflicts with what is stored"),
            Self::TooLarge { .. } => ("too-large", "Too large"),
            Self::UnsupportedMediaType { .. } => ("unsupported-media-type", "Unsupported content type"),
            Self::Invalid { .. } => ("invalid-event", "Invalid event"),
            Self::Unavailable { .. } => ("storage-unavailable", "Storage unavailable"),
            Self::NotFound { .. } => ("not-found", "Not found"),
            Self::Internal(_) => ("internal", "Internal error"),
        }
    }
}

fn summarise(errors: &[FieldError]) -> String {
    match errors {
        [] => String::new(),
        [only] => format!("event {} {}: {}", only.index, only.pointer, only.message),
        [first, rest @ ..] => {
            format!("event {} {}: {} (and {} more)", first.index, first.pointer, first.message, rest.len())
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let (slug, title) = self.slug_and_title();
        let mut body = Problem {
            kind: format!("/problems/{slug}"),
            title,
            status: status.as_u16(),
            detail: String::new(),
            errors: Vec::new(),
            current_sequence: None,
            index: None,
            stored: None,
            request_id: None,
        };
        match self {
            Self::BadJson { detail } | Self::UnsupportedMediaType { detail } | Self::NotFound { detail } => {
                body.detail = detail;
            }
            Self::Unauthorized => {
                body.detail = "send Authorization: Bearer TOKEN with a token from principals.toml".into()
            }
            Self::TokenRefused(reason) => body.detail = reason,
            Self::Forbidden { errors } | Self::Invalid { errors } => {
                body.detail = summarise(&errors);
                body.errors = errors;
            }
            Self::Conflict { errors, current_sequence } => {
                body.detail = summarise(&errors);
                body.index = errors.first().map(|e| e.index);
                body.current_sequence = current_sequence;
                body.errors = errors;
            }
            Self::TooLarge { detail, errors } => {
                body.detail = detail;
                body.errors = errors;
            }
            Self::Unavailable { detail, stored, cause } => {
                body.request_id = platform::telemetry::report(&detail, cause.as_ref()).map(|id| id.to_string());
                body.detail = detail;
                body.stored = Some(stored);
            }
            Self::Internal(cause) => {
                body.request_id = platform::telemetry::report("internal error", Some(&cause)).map(|id| id.to_string());
                body.detail = "the gateway failed; its log has the cause under this request_id".into();
            }
        }
        let mut response = (status, axum::Json(body)).into_response();
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}
