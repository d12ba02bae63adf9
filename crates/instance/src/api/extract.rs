//! Extractors whose rejections speak the API's error format and name the problem
//! (axum's own answer with plain text).

use super::error::ApiError;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

/// The small body a route before authentication accepts: at most `limit` bytes,
/// all of them within `deadline`.
#[derive(Clone, Copy)]
pub struct BodyCap {
    /// Largest body, bytes.
    pub limit: usize,
    /// Longest time to receive it, so a client trickling a body cannot hold a
    /// connection slot without ever authenticating.
    pub deadline: std::time::Duration,
}

/// Middleware for a route with its own small body cap: a declared `Content-Length`
/// over the limit is refused 413 before a byte of the body is read; the route's
/// `DefaultBodyLimit` stops a chunked body at the same size, and [`ApiJson`] stops
/// waiting for it at the deadline (408).
pub async fn cap_body(State(cap): State<BodyCap>, mut req: Request, next: Next) -> Response {
    let limit = cap.limit;
    let declared = req
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(declared) = declared
        && declared > limit as u64
    {
        return too_large(Some(limit)).into_response();
    }
    req.extensions_mut().insert(cap);
    next.run(req).await
}

fn too_large(route_cap: Option<usize>) -> ApiError {
    let message = match route_cap {
        Some(limit) => format!("request body is larger than this route accepts ({limit} bytes)"),
        None => "request body is larger than this instance accepts (max_request_bytes)".into(),
    };
    ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", message)
}

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
        let cap = req.extensions().get::<BodyCap>().copied();
        let route = req
            .extensions()
            .get::<axum::extract::MatchedPath>()
            .map(|m| m.as_str().to_string());
        let read = Bytes::from_request(req, state);
        let read = match cap {
            Some(cap) => tokio::time::timeout(cap.deadline, read)
                .await
                .map_err(|_| {
                    ApiError::new(
                        StatusCode::REQUEST_TIMEOUT,
                        "body_timeout",
                        format!(
                            "the request body did not arrive within {} ms",
                            cap.deadline.as_millis()
                        ),
                    )
                })?,
            None => read.await,
        };
        let bytes = read.map_err(|r| bytes_rejection(r, cap.map(|c| c.limit)))?;
        let value = parse_json(&bytes)?;
        // The MID's own reports (results, polls, heartbeats) carry no labels people
        // read, and are the hot path: only bodies people write are scanned.
        let scan = route.is_none_or(|r| !r.starts_with("/mid/v1/") || r == "/mid/v1/enroll");
        if scan {
            check_labels(&bytes)?;
        }
        Ok(ApiJson(value))
    }
}

/// Top-level body fields that are labels people read — names, descriptions, notes,
/// correlators, user names — and so must hold no control characters (a NUL breaks
/// terminals, logs and every C string it reaches). `true`: free text, where line
/// breaks and tabs are fine.
const LABEL_FIELDS: &[(&str, bool)] = &[
    ("name", false),
    ("description", true),
    ("note", true),
    ("correlator", false),
    ("username", false),
    ("source", false),
    ("hostname", false),
];

/// Refuses `value` for `field` when it holds control characters (free text may hold
/// line breaks and tabs) or, with `max_chars`, is longer: 422 naming the field. The
/// one check every text field people read goes through.
pub fn check_text(
    field: &str,
    value: &str,
    free_text: bool,
    max_chars: Option<usize>,
) -> Result<(), ApiError> {
    let allowed = |c: char| free_text && matches!(c, '\n' | '\r' | '\t');
    if let Some((at, c)) = value
        .chars()
        .enumerate()
        .find(|&(_, c)| c.is_control() && !allowed(c))
    {
        return Err(ApiError::invalid_field(
            field,
            format!(
                "must not contain control characters (U+{:04X} at character {at})",
                c as u32
            ),
        ));
    }
    if let Some(max) = max_chars {
        let len = value.chars().count();
        if len > max {
            return Err(ApiError::invalid_field(
                field,
                format!("at most {max} characters, got {len}"),
            ));
        }
    }
    Ok(())
}

/// The label fields of a JSON object body, borrowed where they need no unescaping;
/// everything else is skipped without being built.
#[derive(serde::Deserialize)]
struct Labels<'a> {
    #[serde(borrow, default)]
    name: Option<LabelValue<'a>>,
    #[serde(borrow, default)]
    description: Option<LabelValue<'a>>,
    #[serde(borrow, default)]
    note: Option<LabelValue<'a>>,
    #[serde(borrow, default)]
    correlator: Option<LabelValue<'a>>,
    #[serde(borrow, default)]
    username: Option<LabelValue<'a>>,
    #[serde(borrow, default)]
    source: Option<LabelValue<'a>>,
    #[serde(borrow, default)]
    hostname: Option<LabelValue<'a>>,
}

/// A label's value: text, or anything else (left to the body's own type to refuse).
#[derive(serde::Deserialize)]
#[serde(untagged)]
enum LabelValue<'a> {
    Text(#[serde(borrow)] std::borrow::Cow<'a, str>),
    Other(serde::de::IgnoredAny),
}

fn check_labels(bytes: &[u8]) -> Result<(), ApiError> {
    // Not an object (or not a body with labels): nothing to check here.
    let Ok(labels) = serde_json::from_slice::<Labels<'_>>(bytes) else {
        return Ok(());
    };
    let values = [
        &labels.name,
        &labels.description,
        &labels.note,
        &labels.correlator,
        &labels.username,
        &labels.source,
        &labels.hostname,
    ];
    for ((field, free_text), value) in LABEL_FIELDS.iter().zip(values) {
        if let Some(LabelValue::Text(text)) = value {
            check_text(field, text, *free_text, None)?;
        }
    }
    Ok(())
}

/// Parses a JSON body: syntax errors are 400 `invalid_json`, a well-formed body of the
/// wrong shape is 422 `invalid_body`; both name the position or field.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // JSON is UTF-8 (RFC 8259). serde_json checks it only in the strings it keeps, so
    // a bad byte in a skipped string would pass, or come back as a shape error.
    if let Err(e) = std::str::from_utf8(bytes) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!(
                "body is not valid JSON: invalid UTF-8 at byte {}",
                e.valid_up_to()
            ),
        ));
    }
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

fn bytes_rejection(rejection: BytesRejection, cap: Option<usize>) -> ApiError {
    let status = rejection.status();
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        too_large(cap)
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

/// Path parameters; a bad one (not UTF-8, not a number where one is expected) is
/// answered 400 `invalid_path` naming the parameter.
pub struct ApiPath<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(ApiPath(v)),
            Err(rejection) => Err(path_rejection(rejection)),
        }
    }
}

fn path_rejection(rejection: PathRejection) -> ApiError {
    let status = rejection.status();
    let message = match &rejection {
        PathRejection::FailedToDeserializePathParams(e) => match e.kind() {
            axum::extract::path::ErrorKind::InvalidUtf8InPathParam { key } => {
                format!("{key}: the path parameter is not valid UTF-8")
            }
            axum::extract::path::ErrorKind::ParseErrorAtKey {
                key,
                value,
                expected_type,
            } => format!("{key}: `{value}` is not a valid {expected_type}"),
            axum::extract::path::ErrorKind::ParseErrorAtIndex {
                index,
                value,
                expected_type,
            } => format!(
                "path parameter {}: `{value}` is not a valid {expected_type}",
                index + 1
            ),
            _ => e.body_text(),
        },
        other => other.body_text(),
    };
    if status.is_server_error() {
        tracing::error!(%message, "path parameters do not fit the route");
        return ApiError::new(
            status,
            "internal",
            "internal error; the instance log has the details",
        );
    }
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_path", message)
}

/// Where a request came from, for logs: the peer address (absent when the router is
/// served without a socket) and the route pattern (`/mid/v1/poll`, never the raw
/// path a client made up).
pub struct Origin {
    /// The peer's address.
    pub peer: Option<std::net::SocketAddr>,
    /// The matched route, or the path when none matched.
    pub route: String,
}

impl Origin {
    /// The origin of a request with these extensions and URI.
    pub fn of(extensions: &axum::http::Extensions, uri: &axum::http::Uri) -> Self {
        Self {
            peer: extensions
                .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                .map(|c| c.0),
            route: extensions
                .get::<axum::extract::MatchedPath>()
                .map_or_else(|| uri.path(), axum::extract::MatchedPath::as_str)
                .to_string(),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Origin {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self::of(&parts.extensions, &parts.uri))
    }
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
