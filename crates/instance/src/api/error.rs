//! API errors: every failure becomes `{"error":{"code","message"}}` with a 4xx/5xx
//! status, mapped here once from the library errors.

use crate::blobs::BlobError;
use crate::dispatch::DispatchError;
use crate::ecc::{EnrollError, StoreError};
use crate::registry::RegistryError;
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use openmid_proto::api::{ErrorBody, ErrorDetail};

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable code.
    pub code: &'static str,
    /// Message naming the problem.
    pub message: String,
}

impl ApiError {
    /// A new error.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 422 for a field with a bad value.
    pub fn invalid_field(field: &str, message: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            format!("{field}: {message}"),
        )
    }

    /// 401.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    fn internal(err: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %err, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; the instance log has the details",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_string(),
                message: self.message,
            },
        };
        (self.status, Json(body)).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::InUse(m) => Self::new(StatusCode::CONFLICT, "in_use", m),
            e @ StoreError::MissingCredential(_) => Self::invalid_field("credential", e),
            e => Self::internal(&e),
        }
    }
}

impl From<DispatchError> for ApiError {
    fn from(e: DispatchError) -> Self {
        match e {
            DispatchError::Invalid { field, message } => Self::invalid_field(&field, message),
            DispatchError::NotFound(m) => Self::not_found(m),
            DispatchError::Conflict(m) => Self::new(StatusCode::CONFLICT, "conflict", m),
            DispatchError::Store(e) => e.into(),
            // Says which key is wrong, never anything secret.
            DispatchError::Vault(e) => {
                tracing::error!(error = %e, "credential vault");
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, "vault", e.to_string())
            }
            e @ DispatchError::Blob(_) => Self::internal(&e),
            e @ DispatchError::IdempotencyKeyReused(_) => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                e.to_string(),
            ),
        }
    }
}

impl From<BlobError> for ApiError {
    fn from(e: BlobError) -> Self {
        match e {
            e @ BlobError::TooLarge { .. } => {
                Self::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", e.to_string())
            }
            e @ BlobError::Empty => Self::invalid_field("body", e),
            e @ BlobError::Body(_) => Self::new(StatusCode::BAD_REQUEST, "bad_body", e.to_string()),
            e @ BlobError::Io(_) => Self::internal(&e),
        }
    }
}

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> Self {
        match e {
            RegistryError::Invalid { field, message } => Self::invalid_field(field, message),
            e @ RegistryError::ProtocolMismatch { .. } => Self::new(
                StatusCode::UPGRADE_REQUIRED,
                "protocol_mismatch",
                e.to_string(),
            ),
            RegistryError::Enroll(EnrollError::Store(e)) | RegistryError::Store(e) => e.into(),
            RegistryError::Enroll(e @ EnrollError::TokenInvalid) => {
                Self::new(StatusCode::FORBIDDEN, "enrollment_refused", e.to_string())
            }
            RegistryError::Enroll(e @ EnrollError::NameTaken(_)) => {
                Self::new(StatusCode::CONFLICT, "name_taken", e.to_string())
            }
            RegistryError::Unauthorized(m) => Self::unauthorized(m),
            e @ RegistryError::Invalidated => {
                Self::new(StatusCode::FORBIDDEN, "invalidated", e.to_string())
            }
        }
    }
}

/// Largest error body of a layer or extractor outside our control that is carried
/// over as the message; longer ones are replaced by the status's reason.
const FOREIGN_MESSAGE_LIMIT: usize = 4 * 1024;

/// The last line of defence for the error format: an error answer made by something
/// other than [`ApiError`] — a rejection of an axum extractor a handler uses directly,
/// a tower layer — is rewritten as `{"error":{"code","message"}}`, keeping its status
/// and its text as the message. Answers already in JSON pass untouched.
pub async fn json_errors(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        // The dashboard's error pages are HTML for people, and stay so.
        .is_some_and(|v| v.starts_with("application/json") || v.starts_with("text/html"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, FOREIGN_MESSAGE_LIMIT)
        .await
        .ok()
        .and_then(|b| String::from_utf8(b.to_vec()).ok())
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_string());
    let code = match status {
        StatusCode::BAD_REQUEST => "bad_request",
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "body_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::UNPROCESSABLE_ENTITY => "invalid_body",
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => "headers_too_large",
        s if s.is_server_error() => "internal",
        _ => "error",
    };
    let mut rewritten = ApiError::new(status, code, text).into_response();
    for (name, value) in &parts.headers {
        if name != axum::http::header::CONTENT_TYPE && name != axum::http::header::CONTENT_LENGTH {
            rewritten.headers_mut().append(name, value.clone());
        }
    }
    rewritten
}
