//! AWS Signature Version 4, as the EC2 Query API needs it: one POST to `/`
//! with a form body. Pure: the caller supplies the time.

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

/// Access keys. `Debug` leaves the secret and token out, so they never
/// reach a log line.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub access_key: String,
    pub secret_key: String,
    pub session_token: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key", &self.access_key)
            .finish_non_exhaustive()
    }
}

/// The content type every Query API request carries (and signs).
pub const FORM: &str = "application/x-www-form-urlencoded; charset=utf-8";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

/// `20150830T123600Z` for a Unix time in seconds.
pub fn amz_date(unix_secs: i64) -> String {
    let t = clusto_core::time::format_unix_ms(unix_secs * 1000);
    // 2015-08-30T12:36:00.000Z → 20150830T123600Z
    let digits: String = t[..19]
        .chars()
        .filter(|c| c.is_ascii_digit() || *c == 'T')
        .collect();
    format!("{digits}Z")
}

/// The headers that sign a POST of `body` to `host` (with its port when
/// not the scheme's default): `x-amz-date`, `authorization`, and
/// `x-amz-security-token` for temporary credentials.
pub fn sign(
    creds: &Credentials,
    region: &str,
    service: &str,
    host: &str,
    body: &[u8],
    unix_secs: i64,
) -> Vec<(&'static str, String)> {
    let date = amz_date(unix_secs);
    let day = &date[..8];
    let mut headers: Vec<(&str, String)> = vec![
        ("content-type", FORM.to_string()),
        ("host", host.to_string()),
        ("x-amz-date", date.clone()),
    ];
    if let Some(t) = &creds.session_token {
        headers.push(("x-amz-security-token", t.clone()));
    }
    let canonical_headers: String = headers
        .iter()
        .map(|(k, v)| format!("{k}:{}\n", v.trim()))
        .collect();
    let signed: Vec<&str> = headers.iter().map(|(k, _)| *k).collect();
    let signed = signed.join(";");
    let canonical = format!(
        "POST\n/\n\n{canonical_headers}\n{signed}\n{}",
        hex(&Sha256::digest(body))
    );
    let scope = format!("{day}/{region}/{service}/aws4_request");
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{date}\n{scope}\n{}",
        hex(&Sha256::digest(canonical.as_bytes()))
    );
    let k_date = hmac(
        format!("AWS4{}", creds.secret_key).as_bytes(),
        day.as_bytes(),
    );
    let k_region = hmac(&k_date, region.as_bytes());
    let k_service = hmac(&k_region, service.as_bytes());
    let k_signing = hmac(&k_service, b"aws4_request");
    let signature = hex(&hmac(&k_signing, to_sign.as_bytes()));
    let mut out = vec![
        ("x-amz-date", date),
        (
            "authorization",
            format!(
                "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed}, Signature={signature}",
                creds.access_key
            ),
        ),
    ];
    if let Some(t) = &creds.session_token {
        out.push(("x-amz-security-token", t.clone()));
    }
    out
}

/// `application/x-www-form-urlencoded` as AWS signs it: RFC 3986
/// unreserved characters stay, everything else is `%XX`.
pub fn form(params: &[(String, String)]) -> String {
    let enc = clusto_http::client::percent_encode;
    params
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same request signed by botocore (the AWS CLI's signer), with
    /// and without a session token.
    #[test]
    fn signatures_match_botocore() {
        let body =
            b"Action=DescribeInstances&Version=2016-11-15&Filter.1.Name=tag%3Aclusto%3Astore";
        let mut creds = Credentials {
            access_key: "AKIDEXAMPLE".into(),
            secret_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
            session_token: None,
        };
        let auth = |c: &Credentials| {
            sign(c, "us-east-1", "ec2", "127.0.0.1:5000", body, 1_796_031_096)
                .into_iter()
                .find(|(k, _)| *k == "authorization")
                .unwrap()
                .1
        };
        assert_eq!(
            auth(&creds),
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261130/us-east-1/ec2/aws4_request, \
             SignedHeaders=content-type;host;x-amz-date, \
             Signature=af91cef8e2cdc50ee9c33200c2ff6e62edfc0a5777fe5319bd70ae89f2e2aefd"
        );
        creds.session_token = Some("SESSIONTOKEN".into());
        assert!(auth(&creds).ends_with(
            "SignedHeaders=content-type;host;x-amz-date;x-amz-security-token, \
             Signature=fd1947fb58dac92fcd3f7539a7039c2f18e6daa34ff4a0168eb0fb330816e0c1"
        ));
    }

    #[test]
    fn dates_are_basic_iso8601() {
        assert_eq!(amz_date(1_440_938_160), "20150830T123600Z");
    }

    #[test]
    fn form_encoding_escapes_all_but_unreserved() {
        let p = vec![
            ("Action".to_string(), "RunInstances".to_string()),
            (
                "TagSpecification.1.Tag.1.Value".to_string(),
                "a b/c:d=e".to_string(),
            ),
        ];
        assert_eq!(
            form(&p),
            "Action=RunInstances&TagSpecification.1.Tag.1.Value=a%20b%2Fc%3Ad%3De"
        );
    }

    #[test]
    fn secrets_stay_out_of_debug() {
        let c = Credentials {
            access_key: "AKID".into(),
            secret_key: "topsecret".into(),
            session_token: Some("tok".into()),
        };
        let d = format!("{c:?}");
        assert!(
            d.contains("AKID") && !d.contains("topsecret") && !d.contains("tok\""),
            "{d}"
        );
    }
}
