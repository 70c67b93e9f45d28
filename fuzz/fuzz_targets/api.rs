//! The HTTP API's requests: the real router over a SQLite store holding
//! the repository's example manifests. An input is one request: a first
//! line `METHOD TARGET` (prefix `anon ` to send no token), the rest its
//! body. Every answer must be below 500, and every error a Kubernetes
//! `Status` object.
#![no_main]

use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request};
use clusto_api::auth::Tokens;
use clusto_api::watch::WatchOptions;
use clusto_api::{Api, router};
use clusto_store::Store;
use libfuzzer_sys::fuzz_target;
use tower::ServiceExt;

const TOKEN: &str = "fuzz-admin-token";

struct World {
    rt: tokio::runtime::Runtime,
    app: Router,
}

/// The repository's example manifests, as one stream.
fn manifests() -> String {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../manifests");
    let sources = clusto_manifest::read_sources(&[dir.to_string()]).expect("the examples");
    let texts: Vec<String> = sources.into_iter().map(|s| s.text).collect();
    texts.join("\n---\n")
}

fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| {
        let rt = tokio::runtime::Runtime::new().expect("a runtime");
        let app = rt.block_on(async {
            let url = clusto_store::testing::fresh_url("sqlite")
                .await
                .expect("a store");
            let store = Store::open(&url).await.expect("open the store");
            let tokens = Tokens::parse("tokens", &format!("{TOKEN},fuzzer,admin\n")).unwrap();
            let api: Arc<Api> = Api::new(store, tokens, false, WatchOptions::default())
                .await
                .expect("the API");
            let app = router(api);
            let seed = request(
                Method::POST,
                "/apis/clusto.dev/v1alpha1/apply",
                true,
                manifests(),
            );
            let r = app.clone().oneshot(seed).await.expect("seed apply");
            let status = r.status();
            let body = axum::body::to_bytes(r.into_body(), 1 << 20)
                .await
                .unwrap_or_default();
            assert!(status.is_success(), "seeding the store: {status} {body:?}");
            app
        });
        World { rt, app }
    })
}

fn request(method: Method, target: &str, token: bool, body: String) -> Request<Body> {
    let mut b = Request::builder().method(method).uri(target);
    if token {
        b = b.header("authorization", format!("Bearer {TOKEN}"));
    }
    b.body(Body::from(body)).expect("a request")
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (line, body) = text.split_once('\n').unwrap_or((text, ""));
    let (token, line) = match line.strip_prefix("anon ") {
        Some(rest) => (false, rest),
        None => (true, line),
    };
    let Some((method, target)) = line.split_once(' ') else {
        return;
    };
    let method = match method {
        "GET" => Method::GET,
        "POST" => Method::POST,
        _ => return,
    };
    // A watch streams until the client leaves; not one request's answer.
    if target.to_ascii_lowercase().contains("watch") || target.parse::<axum::http::Uri>().is_err() {
        return;
    }
    let w = world();
    let (status, bytes) = w.rt.block_on(async {
        let r = w
            .app
            .clone()
            .oneshot(request(method, target, token, body.to_string()))
            .await
            .expect("the router answers");
        let status = r.status();
        let bytes = axum::body::to_bytes(r.into_body(), 64 << 20)
            .await
            .expect("a body");
        (status, bytes)
    });
    assert!(
        status.as_u16() < 500,
        "{status} for {line:?}: {}",
        String::from_utf8_lossy(&bytes)
    );
    // `/` redirects to the UI; every error (4xx) is a Status.
    if !status.is_success() && !status.is_redirection() {
        let v: serde_json::Value = serde_json::from_slice(&bytes).expect("an error answer is JSON");
        assert_eq!(v["kind"], "Status", "{v}");
    }
});
