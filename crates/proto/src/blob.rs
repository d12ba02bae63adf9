//! Blobs: bodies too large to travel inside a JSON payload. They are streamed to the
//! instance on their own (admin upload, or a MID's upload of a response body), kept as
//! files, and named in payloads by id.

use serde::{Deserialize, Serialize};

/// A stored blob, as the instance describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BlobRef {
    /// Unguessable id; knowing it is not enough to read it through the MID session.
    pub id: String,
    /// Length in bytes.
    pub size: u64,
    /// SHA-256 of the content, lower-case hex.
    pub sha256: String,
}

/// True when `id` has the shape the instance gives blob ids (64 lower-case hex
/// characters), so an id can never name a path.
pub fn is_valid_blob_id(id: &str) -> bool {
    id.len() == 64 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        assert!(is_valid_blob_id(&"ab".repeat(32)));
        assert!(!is_valid_blob_id("../etc/passwd"));
        assert!(!is_valid_blob_id(&"AB".repeat(32)));
    }
}
