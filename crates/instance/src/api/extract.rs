//! Extractors whose rejections speak the API's error format and name the problem
//! (axum's own answer with plain text).

use super::error::ApiError;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

/// A JSON body; a bad one is answered 400/413/415/422 with the reason and the path of
/// the field at fault (`payload.url: …`).
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let is_json = req
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|mime| {
                let mime = mime.trim();
                mime.eq_ignore_ascii_case("application/json") || mime.ends_with("+json")
            });
        if !is_json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as JSON with `Content-Type: application/json`",
            ));
        }
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(bytes_rejection)?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// Parses a JSON body: syntax errors are 400 `invalid_json`, a well-formed body of the
/// wrong shape is 422 `invalid_body`; both name the position or field.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    match serde_path_to_error::deserialize::<_, T>(&mut de) {
        Ok(v) => match de.end() {
            Ok(()) => Ok(v),
            Err(e) => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_json",
                format!("body is not valid JSON: {e}"),
            )),
        },
        Err(e) => {
            let path = e.path().to_string();
            let inner = e.into_inner();
            if serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_err() {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_json",
                    format!("body is not valid JSON: {inner}"),
                ));
            }
            let message = if path == "." || path.is_empty() {
                inner.to_string()
            } else {
                format!("{path}: {inner}")
            };
            Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_body",
                message,
            ))
        }
    }
}

fn bytes_rejection(rejection: BytesRejection) -> ApiError {
    let status = rejection.status();
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(
            status,
            "body_too_large",
            "request body is larger than this instance accepts (max_request_bytes)",
        )
    } else {
        ApiError::new(status, "invalid_body", rejection.body_text())
    }
}

/// Query parameters; bad ones are answered 400 with the reason.
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(ApiQuery(v)),
            Err(rejection) => Err(query_rejection(rejection)),
        }
    }
}

fn query_rejection(rejection: QueryRejection) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "invalid_query",
        rejection
            .body_text()
            .replace("Failed to deserialize query string: ", "bad query string: "),
    )
}

/// The bearer token of a request, if any.
pub fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

#[cfg(test)]
mod tests {
    use super::*;
    use openmid_proto::api::NewOutput;
    use proptest::prelude::*;

    #[test]
    fn shape_errors_name_the_field() {
        let e = parse_json::<NewOutput>(
            br#"{"agent":"a","topic":"RESTProbe","payload":{},"priority":3}"#,
        )
        .err()
        .map(|e| (e.status, e.message));
        let (status, message) = e.unwrap_or((StatusCode::OK, String::new()));
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(message.starts_with("priority: "), "{message}");
        let e = parse_json::<NewOutput>(b"{} trailing")
            .err()
            .map(|e| e.status);
        assert_eq!(e, Some(StatusCode::BAD_REQUEST));
    }

    proptest! {
        #[test]
        fn any_bytes_give_a_value_or_a_client_error(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Err(e) = parse_json::<NewOutput>(&bytes) {
                prop_assert!(e.status == StatusCode::BAD_REQUEST || e.status == StatusCode::UNPROCESSABLE_ENTITY);
            }
        }

        #[test]
        fn json_shaped_input_never_panics(
            agent in ".{0,20}", topic in "[A-Za-z]{0,12}", n in any::<i64>(), url in ".{0,30}"
        ) {
            let body = serde_json::json!({"agent": agent, "topic": topic, "priority": n, "payload": {"url": url}});
            let _ = parse_json::<NewOutput>(body.to_string().as_bytes());
        }
    }
}
