//! The API's errors and the one place they map to HTTP statuses.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

/// Why an API request failed. Rendered as JSON `{"code": "...", "message": "..."}`.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No or unknown bearer token.
    #[error("missing or invalid bearer token")]
    Unauthorized,
    /// The token does not grant this.
    #[error("{0}")]
    Forbidden(String),
    /// The thing does not exist (or is not visible to the caller).
    #[error("{0} not found")]
    NotFound(String),
    /// The request is invalid.
    #[error("{0}")]
    BadRequest(String),
    /// The request conflicts with the current state (e.g. removing a node that still
    /// holds replicas).
    #[error("{0}")]
    Conflict(String),
    /// The tenant is served by another node; the call must go there.
    #[error("{0}")]
    Misdirected(String),
    /// The store failed.
    #[error("storage unavailable: {0}")]
    Storage(String),
    /// The cluster cannot carry it out now (no leader reachable); retry.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// Anything else.
    #[error("internal error: {0}")]
    Internal(String),
}

#[derive(Serialize)]
struct Body<'a> {
    code: &'a str,
    message: String,
}

impl ApiError {
    /// The stable code string.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Unauthorized => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not_found",
            ApiError::BadRequest(_) => "bad_request",
            ApiError::Conflict(_) => "conflict",
            ApiError::Misdirected(_) => "misdirected",
            ApiError::Storage(_) => "storage_unavailable",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Internal(_) => "internal",
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Misdirected(_) => StatusCode::MISDIRECTED_REQUEST,
            ApiError::Storage(_) | ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status_code()).json(Body { code: self.code(), message: self.to_string() })
    }
}

impl From<switchboard_raft_store::StoreError> for ApiError {
    fn from(e: switchboard_raft_store::StoreError) -> Self {
        ApiError::Storage(e.to_string())
    }
}

impl From<actix_web::error::BlockingError> for ApiError {
    fn from(e: actix_web::error::BlockingError) -> Self {
        ApiError::Internal(e.to_string())
    }
}
