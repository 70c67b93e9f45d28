//! The EC2 Query API over HTTPS: a signed form POST per action, an XML
//! answer or an `<Errors>` document. Only what the backend calls.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;

use crate::credentials;
use crate::sigv4::{self, Credentials, FORM};
use crate::xml::{self, Node};

/// The API version the actions below are written against.
const VERSION: &str = "2016-11-15";
const TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// EC2 refused the request: its error code and message.
    #[error("{code}: {message}")]
    Aws { code: String, message: String },
    #[error("EC2 endpoint {endpoint}: {reason}")]
    Transport { endpoint: String, reason: String },
    #[error("AWS credentials: {0}")]
    Credentials(String),
    #[error("EC2 answered something unreadable: {0}")]
    Malformed(String),
}

pub struct Api {
    endpoint: hyper::Uri,
    host: String,
    region: String,
    file: Option<String>,
    profile: Option<String>,
    http: Client<clusto_http::client::Https, Full<Bytes>>,
    creds: tokio::sync::Mutex<Option<Cached>>,
}

/// Credentials and, for an instance role's, when they expire (Unix s).
struct Cached {
    creds: Credentials,
    expires: Option<i64>,
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl Api {
    pub fn new(
        region: &str,
        endpoint: Option<&str>,
        file: Option<&str>,
        profile: Option<&str>,
    ) -> Result<Api, ApiError> {
        let text = endpoint
            .map(str::to_string)
            .unwrap_or_else(|| format!("https://ec2.{region}.amazonaws.com"));
        let endpoint: hyper::Uri = text.parse().map_err(|e| ApiError::Transport {
            endpoint: text.clone(),
            reason: format!("not a URL: {e}"),
        })?;
        let host = endpoint
            .authority()
            .map(|a| a.as_str().to_string())
            .ok_or_else(|| ApiError::Transport {
                endpoint: text.clone(),
                reason: "no host".into(),
            })?;
        Ok(Api {
            endpoint,
            host,
            region: region.to_string(),
            file: file.map(str::to_string),
            profile: profile.map(str::to_string),
            // HTTPS with the system's roots; plain HTTP for moto.
            http: clusto_http::client::client(),
            creds: tokio::sync::Mutex::new(None),
        })
    }

    async fn credentials(&self) -> Result<Credentials, ApiError> {
        let mut cached = self.creds.lock().await;
        if let Some(c) = cached.as_ref()
            && c.expires.is_none_or(|t| t - 300 > now_secs())
        {
            return Ok(c.creds.clone());
        }
        let fresh = match credentials::static_chain(self.file.as_deref(), self.profile.as_deref()) {
            Ok(c) => Cached {
                creds: c,
                expires: None,
            },
            // On EC2 the instance's role; never when a file was named or
            // when turned off (AWS_EC2_METADATA_DISABLED, as the AWS tools).
            Err(why) if self.file.is_none() && !imds_disabled() => {
                let (creds, expires) =
                    crate::imds::role_credentials(&self.http, &crate::imds::endpoint())
                        .await
                        .map_err(|e| ApiError::Credentials(format!("{why}; instance role: {e}")))?;
                Cached { creds, expires }
            }
            Err(why) => return Err(ApiError::Credentials(why)),
        };
        let out = fresh.creds.clone();
        *cached = Some(fresh);
        Ok(out)
    }

    /// Sends `action` with `params` and returns the answer's root element.
    pub async fn call(&self, action: &str, params: &[(String, String)]) -> Result<Node, ApiError> {
        let creds = self.credentials().await?;
        let mut all = vec![
            ("Action".to_string(), action.to_string()),
            ("Version".to_string(), VERSION.to_string()),
        ];
        all.extend_from_slice(params);
        let body = sigv4::form(&all);
        let mut req = hyper::Request::post(self.endpoint.clone())
            .header("content-type", FORM)
            .header("host", &self.host);
        for (k, v) in sigv4::sign(
            &creds,
            &self.region,
            "ec2",
            &self.host,
            body.as_bytes(),
            now_secs(),
        ) {
            req = req.header(k, v);
        }
        let transport = |reason: String| ApiError::Transport {
            endpoint: self.endpoint.to_string(),
            reason,
        };
        let req = req
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| transport(e.to_string()))?;
        let resp = tokio::time::timeout(TIMEOUT, self.http.request(req))
            .await
            .map_err(|_| transport(format!("no answer in {}s", TIMEOUT.as_secs())))?
            .map_err(|e| transport(e.to_string()))?;
        let status = resp.status();
        let bytes = tokio::time::timeout(TIMEOUT, resp.into_body().collect())
            .await
            .map_err(|_| transport("answer cut off".into()))?
            .map_err(|e| transport(e.to_string()))?
            .to_bytes();
        let text = String::from_utf8_lossy(&bytes);
        let doc = xml::parse(&text);
        if status.is_success() {
            return doc.map_err(ApiError::Malformed);
        }
        match doc.ok().as_ref().and_then(aws_error) {
            Some((code, message)) => Err(ApiError::Aws { code, message }),
            None => Err(transport(format!("HTTP {status}"))),
        }
    }
}

fn imds_disabled() -> bool {
    std::env::var("AWS_EC2_METADATA_DISABLED").is_ok_and(|v| v.eq_ignore_ascii_case("true"))
}

/// An `<Errors>` document's first error: (code, message).
fn aws_error(doc: &Node) -> Option<(String, String)> {
    let e = doc.at(&["Errors", "Error"])?;
    Some((
        e.text_at(&["Code"])?.to_string(),
        e.text_at(&["Message"]).unwrap_or_default().to_string(),
    ))
}
