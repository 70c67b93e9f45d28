//! The web UI: three files embedded in the binary, served without a token
//! (they hold no inventory data; every figure on a page comes from the API
//! with the user's own token). Every `/ui/…` page is the same document,
//! which routes by its path: `/ui/racks/NAME`, `/ui/entities/NAME`,
//! `/ui/search?q=`, `/ui/plan`.

use axum::Router;
use axum::http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

const INDEX: &str = include_str!("../ui/index.html");
const SCRIPT: &str = include_str!("../ui/app.js");
const STYLE: &str = include_str!("../ui/app.css");

/// Scripts and styles from this server only, no inline code: a name that
/// smuggles markup into a page cannot run.
const POLICY: &str = "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (CONTENT_TYPE, content_type),
            // Assets change with the binary; revalidating is cheap on loopback
            // and never serves a page from an older build.
            (CACHE_CONTROL, "no-cache"),
            (CONTENT_SECURITY_POLICY, POLICY),
        ],
        body,
    )
        .into_response()
}

async fn page() -> Response {
    asset("text/html; charset=utf-8", INDEX)
}

/// The UI's routes; `/` leads to it.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/ui/") }))
        .route("/ui", get(page))
        .route("/ui/", get(page))
        .route(
            "/ui/assets/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", SCRIPT) }),
        )
        .route(
            "/ui/assets/app.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE) }),
        )
        .route("/ui/{*page}", get(page))
        .method_not_allowed_fallback(crate::status::method_not_allowed)
}
