//! The dashboard's static files, compiled into the binary: htmx (vendored from its
//! release, 0BSD, see `assets/htmx.LICENSE`) and the stylesheet.

use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

/// The vendored htmx release; its URL names the version, so it can be cached for good.
pub(super) const HTMX_PATH: &str = "/ui/assets/htmx-2.0.11.min.js";
/// The stylesheet; its URL names the crate's version.
pub(super) const CSS_PATH: &str =
    concat!("/ui/assets/dashboard-", env!("CARGO_PKG_VERSION"), ".css");

const HTMX: &[u8] = include_bytes!("../../assets/htmx.min.js");
const CSS: &[u8] = include_bytes!("../../assets/dashboard.css");

pub(super) async fn serve(Path(file): Path<String>) -> Response {
    let path = format!("/ui/assets/{file}");
    let (body, content_type, cache) = if path == HTMX_PATH {
        (
            HTMX,
            "text/javascript; charset=utf-8",
            "public, max-age=31536000, immutable",
        )
    } else if path == CSS_PATH {
        // The version in the URL changes at a release, not at every build: cached for
        // an hour, so a rebuilt instance's new style is seen soon.
        (CSS, "text/css; charset=utf-8", "public, max-age=3600")
    } else {
        return super::page::DashError::NotFound(format!("no dashboard asset `{file}`"))
            .into_response();
    };
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, cache),
        ],
        body,
    )
        .into_response()
}
