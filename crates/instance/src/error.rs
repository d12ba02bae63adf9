//! The error of the instance's operations — dispatch (submit, poll, results, admin
//! actions) and connections (credentials, aliases, sealing) alike — mapped once to API
//! answers in `api/error.rs`. Its own module so the two, which use each other's work,
//! do not import each other for it.

use crate::ecc::StoreError;

/// Errors of dispatch operations.
#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    /// A request field is wrong.
    #[error("{field}: {message}")]
    Invalid {
        /// The field.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// A named thing does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The request conflicts with the current state.
    #[error("{0}")]
    Conflict(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The blob store failed.
    #[error("blob store: {0}")]
    Blob(String),
    /// A stored credential could not be encrypted or decrypted.
    #[error(transparent)]
    Vault(#[from] crate::vault::VaultError),
    /// An `Idempotency-Key` already used for a different request.
    #[error(
        "Idempotency-Key `{0}` was used for a different request within the last 24 hours: use a new key for a new request"
    )]
    IdempotencyKeyReused(String),
}

/// A [`DispatchError::Invalid`] for `field`.
pub(crate) fn invalid(field: &str, message: impl Into<String>) -> DispatchError {
    DispatchError::Invalid {
        field: field.to_string(),
        message: message.into(),
    }
}
