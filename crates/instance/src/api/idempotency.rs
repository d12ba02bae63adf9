//! The `Idempotency-Key` request header of submissions (`POST /api/v1/ecc`,
//! `POST /api/v1/actions/…`). A client whose request got no answer — the connection
//! dropped, the instance died after committing — retries with the same key and gets the
//! first output instead of running the job twice. The key is remembered for
//! [`IDEMPOTENCY_WINDOW`](crate::dispatch::IDEMPOTENCY_WINDOW) with a hash of the
//! request, so the same key on a different request is refused rather than answered with
//! someone else's output.

use super::error::ApiError;
use crate::dispatch::Idempotency;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;

/// The request header.
pub const HEADER: &str = "idempotency-key";
/// Set on an answer that is a replay of an earlier submission.
pub const REPLAYED_HEADER: &str = "idempotent-replayed";
/// Longest key accepted.
const MAX_KEY_LEN: usize = 255;

/// Reads the key from the headers; `what` (the route and the request as JSON) is
/// hashed with it. `None` when the client sent no key.
pub fn from_headers(
    headers: &HeaderMap,
    route: &str,
    request: &impl serde::Serialize,
) -> Result<Option<Idempotency>, ApiError> {
    let mut values = headers.get_all(HEADER).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    let bad = |why: &str| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_header",
            format!("Idempotency-Key: {why}"),
        )
    };
    if values.next().is_some() {
        return Err(bad("given more than once"));
    }
    let key = value
        .to_str()
        .ok()
        .filter(|k| k.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or_else(|| bad("must be printable ASCII without spaces"))?;
    if key.is_empty() || key.len() > MAX_KEY_LEN {
        return Err(bad(&format!("must be 1–{MAX_KEY_LEN} characters")));
    }
    let body = serde_json::to_string(request).unwrap_or_default();
    Ok(Some(Idempotency {
        key: key.to_string(),
        request_hash: crate::auth::hash_token(&format!("{route}\n{body}")),
    }))
}

/// Marks `response` as a replay when it is one.
pub fn mark(mut response: Response, replayed: bool) -> Response {
    if replayed {
        response
            .headers_mut()
            .insert(REPLAYED_HEADER, HeaderValue::from_static("true"));
    }
    response
}
