//! Errors: [`Error`] for opening the control plane, [`ApiError`] for the
//! JSON API (`{"error": {"code", "message"}}` with the status of its code).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::dto::{ErrorBody, ErrorDetail};
use crate::host::{HostError, HostErrorKind, ModuleRefusal};

/// Why [`crate::ControlPlane::open`] failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The data directory or a file in it could not be created or read.
    #[error("{what}: {source}")]
    Io {
        /// What was being done, with the path.
        what: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The database could not be opened or migrated.
    #[error("database: {0}")]
    Db(#[from] rusqlite::Error),
    /// The database was written by a newer wasmtap.
    #[error(
        "database schema version {found} is newer than this build knows ({known}); refusing to touch it"
    )]
    SchemaTooNew {
        /// The database's `user_version`.
        found: i64,
        /// The newest version this build migrates to.
        known: i64,
    },
    /// No randomness for a token.
    #[error("random token: {0}")]
    Random(String),
}

/// An API error: HTTP status, stable code and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable machine-readable code (see docs/api.md).
    pub code: &'static str,
    /// What and why, for humans.
    pub message: String,
}

impl ApiError {
    /// An error with an explicit status and code.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }
    /// 401 `unauthorized`.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }
    /// 403 `forbidden`.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }
    /// 404 `not_found`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }
    /// 409 `conflict`.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }
    /// 409 `quota_exceeded`.
    pub fn quota(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "quota_exceeded", message)
    }
    /// 409 `unsupported`.
    pub fn unsupported(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "unsupported", message)
    }
    /// 413 `too_large`.
    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", message)
    }
    /// 400 `invalid_request`, naming the field.
    pub fn invalid(field: &str, message: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            format!("{field}: {message}"),
        )
    }
    /// 400 `invalid_request` without a field (e.g. unparsable JSON).
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }
    /// The data plane refused (`context`: what the API asked of it). The
    /// one place a [`HostErrorKind`] becomes a status and a code.
    pub fn host(context: &str, e: HostError) -> Self {
        let (status, code) = match e.kind {
            HostErrorKind::NotRunning => (StatusCode::CONFLICT, "not_running"),
            HostErrorKind::Busy => (StatusCode::SERVICE_UNAVAILABLE, "busy"),
            HostErrorKind::Conflict => (StatusCode::CONFLICT, "conflict"),
            HostErrorKind::Refused => (StatusCode::UNPROCESSABLE_ENTITY, "refused"),
            HostErrorKind::Limit => (StatusCode::CONFLICT, "quota_exceeded"),
            HostErrorKind::Unsupported => (StatusCode::CONFLICT, "unsupported"),
            HostErrorKind::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "host_error"),
        };
        Self::new(status, code, format!("{context}: {}", e.message))
    }
    /// The host refused a module: 422 with the refusal's code, except 503
    /// for `compiler_busy` (the daemon's state, not the module's fault).
    pub fn refusal(r: ModuleRefusal) -> Self {
        let status = if r.code == "compiler_busy" {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::UNPROCESSABLE_ENTITY
        };
        Self::new(status, r.code, r.message)
    }
    /// 500 `internal`: a bug or an I/O/database failure of the control plane.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}

impl std::error::Error for ApiError {}

impl From<rusqlite::Error> for ApiError {
    fn from(e: rusqlite::Error) -> Self {
        tracing::error!("database: {e}");
        Self::internal(format!("database: {e}"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.into(),
                message: self.message,
            },
        };
        (self.status, axum::Json(body)).into_response()
    }
}
