//! The query role's one error type: its `IntoResponse` alone decides status
//! codes, and every rejection names the parameter at fault and why, as
//! problem+json.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// A parameter (query string, path or body field) and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ParamError {
    pub parameter: String,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("unauthorized")]
    Unauthorized,
    /// An identity provider's token that did not verify, and why.
    #[error("the bearer token was refused: {0}")]
    TokenRefused(String),
    /// The principal may not read this.
    #[error("forbidden: {0}")]
    Forbidden(String),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("invalid parameter")]
    Invalid(Vec<ParamError>),
    /// The request is well formed, but what it asks for needs something the
    /// stream does not yet hold (a council's DfE code for its census).
    #[error("not configured: {0}")]
    NotConfigured(String),
    /// A `min_position` past the end of the stream: no 201 gave it, so
    /// waiting would not bring it.
    #[error("beyond the stream: {0}")]
    BeyondStream(u64),
    /// Something the answer needs is not there just now (the access log,
    /// the key store, a parked registration). `detail` is ours, for the
    /// caller; `cause`, if any, is for the log only.
    #[error("unavailable: {detail}")]
    Unavailable { detail: String, cause: Option<anyhow::Error> },
    /// The read models had not applied `wanted` (a `min_position`) within
    /// the wait allowed; `position` is where they are.
    #[error("behind: at {position}, not yet {wanted}")]
    Behind { position: u64, wanted: u64 },
    /// The body is larger than this endpoint ever needs.
    #[error("too large: {0}")]
    TooLarge(String),
    /// The caller holds as many event streams as it may, or the role does.
    #[error("too many streams: {0}")]
    TooManyStreams(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl QueryError {
    pub fn invalid(parameter: &str, message: impl Into<String>) -> Self {
        Self::Invalid(vec![ParamError { parameter: parameter.to_owned(), message: message.into() }])
    }

    /// Unavailable, for a reason the caller may be told in full.
    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::Unavailable { detail: detail.into(), cause: None }
    }

    /// Unavailable because a dependency failed: `detail` for the caller,
    /// the cause for the log.
    pub fn dependency(detail: impl Into<String>, cause: impl Into<anyhow::Error>) -> Self {
        Self::Unavailable { detail: detail.into(), cause: Some(cause.into()) }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::Unauthorized | Self::TokenRefused(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::NotConfigured(_) | Self::BeyondStream(_) => StatusCode::CONFLICT,
            Self::Unavailable { .. } | Self::Behind { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::TooManyStreams(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<projections::ReadError> for QueryError {
    fn from(e: projections::ReadError) -> Self {
        Self::Internal(anyhow::Error::new(e).context("the read-model database failed"))
    }
}

/// An RFC 9457 problem, as every error of the query role answers it.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct Problem {
    #[serde(rename = "type")]
    kind: String,
    title: &'static str,
    status: u16,
    detail: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    errors: Vec<ParamError>,
    /// On a read that waited for a position: where the read models are.
    #[serde(skip_serializing_if = "Option::is_none")]
    position: Option<u64>,
    /// On a server error: the id its cause is logged under.
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<String>,
}

impl IntoResponse for QueryError {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut request_id = None;
        let mut position = None;
        let (slug, title, detail, errors) = match self {
            Self::Unauthorized => (
                "unauthorized",
                "No valid bearer token",
                "send Authorization: Bearer TOKEN with a token from principals.toml".to_owned(),
                vec![],
            ),
            Self::TokenRefused(reason) => ("unauthorized", "No valid bearer token", reason, vec![]),
            Self::Forbidden(detail) => ("forbidden", "Not allowed for this principal", detail, vec![]),
            Self::NotFound(detail) => ("not-found", "Not found", detail, vec![]),
            Self::NotConfigured(detail) => ("not-configured", "Not configured", detail, vec![]),
            Self::BeyondStream(wanted) => {
                let detail = format!("min_position {wanted} is beyond the end of the stream: no 201 has returned it");
                ("beyond-stream", "Beyond the end of the stream", detail, vec![])
            }
            Self::Invalid(errors) => {
                let detail = errors.iter().map(|e| format!("{}: {}", e.parameter, e.message)).collect::<Vec<_>>();
                ("invalid-parameter", "Invalid parameter", detail.join("; "), errors)
            }
            Self::Unavailable { detail, cause } => {
                request_id = platform::telemetry::report(&detail, cause.as_ref()).map(|id| id.to_string());
                ("unavailable", "Unavailable", detail, vec![])
            }
            Self::Behind { position: at, wanted } => {
                position = Some(at);
                let detail = format!(
                    "the read models have applied the stream up to {at}, not yet min_position {wanted}; retry shortly"
                );
                ("behind", "Read models behind", detail, vec![])
            }
            Self::TooLarge(detail) => ("too-large", "Body too large", detail, vec![]),
            Self::TooManyStreams(detail) => ("too-many-streams", "Too many open streams", detail, vec![]),
            Self::Internal(cause) => {
                request_id = platform::telemetry::report("internal error", Some(&cause)).map(|id| id.to_string());
                let detail = "the query role failed; its log has the cause under this request_id".to_owned();
                ("internal", "Internal error", detail, vec![])
            }
        };
        let body = Problem {
            kind: format!("/problems/{slug}"),
            title,
            status: status.as_u16(),
            detail,
            errors,
            position,
            request_id,
        };
        let mut response = (status, axum::Json(body)).into_response();
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        if let Some(at) = position {
            response.headers_mut().insert("x-read-position", HeaderValue::from(at));
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if status == StatusCode::TOO_MANY_REQUESTS {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("10"));
        }
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}
