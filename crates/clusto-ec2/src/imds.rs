//! An EC2 instance's role credentials through IMDSv2: a session token
//! (PUT), the role's name, then its keys. The endpoint is
//! `AWS_EC2_METADATA_SERVICE_ENDPOINT` or the link-local default; each
//! request gets one second, so off EC2 the chain fails fast.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;

use crate::sigv4::Credentials;

const DEFAULT_ENDPOINT: &str = "http://169.254.169.254";
const STEP: Duration = Duration::from_secs(1);

async fn fetch<C>(
    http: &Client<C, Full<Bytes>>,
    req: hyper::Request<Full<Bytes>>,
) -> Result<String, String>
where
    C: hyper_util::client::legacy::connect::Connect + Clone + Send + Sync + 'static,
{
    let resp = tokio::time::timeout(STEP, http.request(req))
        .await
        .map_err(|_| "no answer".to_string())?
        .map_err(|e| e.to_string())?;
    let status = resp.status();
    let body = tokio::time::timeout(STEP, resp.into_body().collect())
        .await
        .map_err(|_| "answer cut off".to_string())?
        .map_err(|e| e.to_string())?
        .to_bytes();
    if !status.is_success() {
        return Err(format!("HTTP {status}"));
    }
    Ok(String::from_utf8_lossy(&body).trim().to_string())
}

/// Where IMDS answers: `AWS_EC2_METADATA_SERVICE_ENDPOINT`, else the
/// link-local default.
pub fn endpoint() -> String {
    std::env::var("AWS_EC2_METADATA_SERVICE_ENDPOINT").unwrap_or_else(|_| DEFAULT_ENDPOINT.into())
}

/// The role's credentials and when they expire (Unix seconds).
pub async fn role_credentials<C>(
    http: &Client<C, Full<Bytes>>,
    base: &str,
) -> Result<(Credentials, Option<i64>), String>
where
    C: hyper_util::client::legacy::connect::Connect + Clone + Send + Sync + 'static,
{
    let base = base.trim_end_matches('/');
    let req = |method: &str, path: &str, token: Option<&str>| {
        let mut r = hyper::Request::builder()
            .method(method)
            .uri(format!("{base}{path}"));
        r = match token {
            Some(t) => r.header("x-aws-ec2-metadata-token", t),
            None => r.header("x-aws-ec2-metadata-token-ttl-seconds", "21600"),
        };
        r.body(Full::new(Bytes::new())).map_err(|e| e.to_string())
    };
    let token = fetch(http, req("PUT", "/latest/api/token", None)?).await?;
    let path = "/latest/meta-data/iam/security-credentials/";
    let roles = fetch(http, req("GET", path, Some(&token))?).await?;
    let role = roles
        .lines()
        .next()
        .filter(|r| !r.is_empty())
        .ok_or("no role attached")?;
    let text = fetch(http, req("GET", &format!("{path}{role}"), Some(&token))?).await?;
    parse(&text)
}

/// IMDS's credentials document.
pub fn parse(text: &str) -> Result<(Credentials, Option<i64>), String> {
    let j: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let s = |k: &str| j[k].as_str().map(str::to_string).ok_or(format!("no {k}"));
    let creds = Credentials {
        access_key: s("AccessKeyId")?,
        secret_key: s("SecretAccessKey")?,
        session_token: s("Token").ok(),
    };
    let expires = j["Expiration"]
        .as_str()
        .and_then(clusto_core::time::parse_rfc3339_ms)
        .map(|ms| ms / 1000);
    Ok((creds, expires))
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A fake IMDS (no real one can run off EC2) on loopback: a session
    /// token for PUT, then role and keys only for that token.
    async fn fake_imds() -> String {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let mut buf = vec![0u8; 4096];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let req = String::from_utf8_lossy(&buf[..n]).to_lowercase();
                let authed = req.contains("x-aws-ec2-metadata-token: tok-1");
                let (code, body) = if req.starts_with("put /latest/api/token")
                    && req.contains("x-aws-ec2-metadata-token-ttl-seconds")
                {
                    ("200 OK", "tok-1".to_string())
                } else if !authed {
                    ("401 Unauthorized", String::new())
                } else if req.starts_with("get /latest/meta-data/iam/security-credentials/ ") {
                    ("200 OK", "web-role\n".to_string())
                } else if req
                    .starts_with("get /latest/meta-data/iam/security-credentials/web-role ")
                {
                    ("200 OK", r#"{"AccessKeyId":"ASIAFAKE","SecretAccessKey":"s","Token":"t","Expiration":"2026-12-01T00:00:00Z"}"#.to_string())
                } else {
                    ("404 Not Found", String::new())
                };
                let resp = format!(
                    "HTTP/1.1 {code}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
            }
        });
        format!("http://{addr}")
    }

    fn client() -> hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        http_body_util::Full<bytes::Bytes>,
    > {
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http()
    }

    #[tokio::test]
    async fn an_instance_role_gives_its_keys_through_imdsv2() {
        let base = fake_imds().await;
        let (c, exp) = super::role_credentials(&client(), &base).await.unwrap();
        assert_eq!(c.access_key, "ASIAFAKE");
        assert_eq!(c.session_token.as_deref(), Some("t"));
        assert_eq!(exp, Some(1_796_083_200));
    }

    #[tokio::test]
    async fn no_metadata_service_fails_fast() {
        // A loopback port nothing listens on: refused at once, not hung.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", l.local_addr().unwrap());
        drop(l);
        let t = std::time::Instant::now();
        assert!(super::role_credentials(&client(), &base).await.is_err());
        assert!(t.elapsed() < std::time::Duration::from_secs(3));
    }

    #[test]
    fn the_credentials_document_is_read() {
        let (c, exp) = super::parse(
            r#"{"Code":"Success","AccessKeyId":"ASIA1","SecretAccessKey":"s","Token":"t",
                "Expiration":"2026-12-01T00:00:00Z"}"#,
        )
        .unwrap();
        assert_eq!(c.access_key, "ASIA1");
        assert_eq!(c.session_token.as_deref(), Some("t"));
        assert_eq!(exp, Some(1_796_083_200));
        assert!(super::parse("{}").is_err());
    }
}
