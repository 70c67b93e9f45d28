//! Errors as Kubernetes `Status` objects: a code, a machine-readable
//! reason and a message naming the rule broken, so `kubectl`-minded
//! clients and scripts branch on `reason`, people read `message`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use clusto_core::CoreError;
use clusto_manifest::ManifestError;
use clusto_store::StoreError;
use serde_json::json;

use crate::engine::ApplyFailure;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{plural} \"{name}\" not found")]
    NotFound { plural: String, name: String },
    #[error("the server could not find the requested resource: {0}")]
    NoSuchPath(String),
    #[error("{method} is not allowed on {path}")]
    MethodNotAllowed { method: String, path: String },
    #[error("{0}")]
    BadRequest(String),
    #[error("a bearer token is required (Authorization: Bearer TOKEN)")]
    Unauthorized,
    #[error("user {user:?} (role {role}) may not {what}")]
    Forbidden {
        user: String,
        role: &'static str,
        what: &'static str,
    },
    #[error(
        "too old resource version: {asked} (oldest a watch may start from: {oldest}); list again"
    )]
    Gone { asked: i64, oldest: i64 },
    #[error("{} error(s) in the manifests; nothing was changed", .0.len())]
    Invalid(Vec<ManifestError>),
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::Core(c) => c.into(),
            StoreError::NoSuchRevision(..) => ApiError::BadRequest(e.to_string()),
            StoreError::Stale { .. } | StoreError::Refused { .. } => {
                ApiError::Conflict(e.to_string())
            }
            other => ApiError::Store(other),
        }
    }
}

impl From<CoreError> for ApiError {
    fn from(e: CoreError) -> ApiError {
        match e {
            CoreError::NotFound(n) => ApiError::NotFound {
                plural: "entities".into(),
                name: n,
            },
            other => ApiError::BadRequest(other.to_string()),
        }
    }
}

impl From<ApplyFailure> for ApiError {
    fn from(e: ApplyFailure) -> ApiError {
        match e {
            ApplyFailure::Manifest(errors) => ApiError::Invalid(errors),
            ApplyFailure::Store(s) => s.into(),
            ApplyFailure::PlanDiffers => ApiError::Conflict(e.to_string()),
        }
    }
}

/// The answer to a method a path does not take (a `Status`, as every error).
pub async fn method_not_allowed(req: axum::extract::Request) -> ApiError {
    ApiError::MethodNotAllowed {
        method: req.method().to_string(),
        path: req.uri().path().to_string(),
    }
}

impl ApiError {
    fn code_reason(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::NotFound { .. } | ApiError::NoSuchPath(_) => {
                (StatusCode::NOT_FOUND, "NotFound")
            }
            ApiError::MethodNotAllowed { .. } => {
                (StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed")
            }
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "BadRequest"),
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "Unauthorized"),
            ApiError::Forbidden { .. } => (StatusCode::FORBIDDEN, "Forbidden"),
            ApiError::Gone { .. } => (StatusCode::GONE, "Expired"),
            ApiError::Invalid(_) => (StatusCode::UNPROCESSABLE_ENTITY, "Invalid"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "Conflict"),
            ApiError::Store(_) => (StatusCode::INTERNAL_SERVER_ERROR, "InternalError"),
        }
    }

    /// The `Status` object (also what a watch sends as an ERROR event).
    pub fn status(&self) -> serde_json::Value {
        let (code, reason) = self.code_reason();
        let mut s = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.to_string(),
            "reason": reason,
            "code": code.as_u16(),
        });
        match self {
            ApiError::NotFound { plural, name } => {
                s["details"] = json!({"name": name, "kind": plural});
            }
            ApiError::Invalid(errors) => {
                let causes: Vec<_> = errors
                    .iter()
                    .map(|e| json!({"reason": "FieldValueInvalid", "message": e.to_string()}))
                    .collect();
                s["details"] = json!({"causes": causes});
                // The whole list in the message too: clients that show one line.
                let all: Vec<String> = errors.iter().map(ToString::to_string).collect();
                s["message"] = json!(format!("{self}:\n{}", all.join("\n")));
            }
            _ => {}
        }
        s
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (code, _) = self.code_reason();
        if let ApiError::Store(e) = &self {
            tracing::error!(error = %e, "request failed");
        }
        let mut r = (code, Json(self.status())).into_response();
        if code == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        r
    }
}

/// Query parameters and path segments whose rejections are `Status`
/// objects like every other error (axum's own answer plain text).
pub struct Params<T>(pub T);
pub struct Segments<T>(pub T);
/// A request body as UTF-8 text (manifests are text; YAML or JSON).
pub struct Text(pub String);

impl<S: Send + Sync, T: serde::de::DeserializeOwned + Send> axum::extract::FromRequestParts<S>
    for Params<T>
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, ApiError> {
        // As in Kubernetes, `?continue=` or `?dryRun=` with no value is the
        // parameter left out.
        let given: Vec<&str> = parts
            .uri
            .query()
            .unwrap_or("")
            .split('&')
            .filter(|pair| pair.split_once('=').is_some_and(|(_, v)| !v.is_empty()))
            .collect();
        let uri: axum::http::Uri = format!("/?{}", given.join("&"))
            .parse()
            .map_err(|e: axum::http::uri::InvalidUri| ApiError::BadRequest(e.to_string()))?;
        axum::extract::Query::<T>::try_from_uri(&uri)
            .map(|q| Params(q.0))
            .map_err(|e| ApiError::BadRequest(e.body_text()))
    }
}

impl<S: Send + Sync, T: serde::de::DeserializeOwned + Send> axum::extract::FromRequestParts<S>
    for Segments<T>
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| Segments(p.0))
            .map_err(|e| ApiError::BadRequest(e.body_text()))
    }
}

impl<S: Send + Sync> axum::extract::FromRequest<S> for Text {
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        String::from_request(req, state)
            .await
            .map(Text)
            .map_err(|e| ApiError::BadRequest(e.body_text()))
    }
}
