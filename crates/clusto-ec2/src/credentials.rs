//! Where the EC2 backend's keys come from, in the order the AWS tools use:
//! the environment (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
//! `AWS_SESSION_TOKEN`), then a shared credentials file (the manager's
//! `credentialsFile`, else `AWS_SHARED_CREDENTIALS_FILE`, else
//! `~/.aws/credentials`) and profile (`profile`, else `AWS_PROFILE`, else
//! `default`), then the instance's role through IMDSv2 when running on EC2.
//! Never from the inventory.

use crate::sigv4::Credentials;

/// Keys from an INI-style shared credentials file, section `profile`.
pub fn from_file_text(text: &str, profile: &str) -> Option<Credentials> {
    let mut section = String::new();
    let (mut ak, mut sk, mut tok) = (None, None, None);
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name
                .trim()
                .trim_start_matches("profile ")
                .trim()
                .to_string();
            continue;
        }
        if section != profile {
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            let v = Some(v.trim().to_string());
            match k.trim() {
                "aws_access_key_id" => ak = v,
                "aws_secret_access_key" => sk = v,
                "aws_session_token" => tok = v,
                _ => {}
            }
        }
    }
    Some(Credentials {
        access_key: ak?,
        secret_key: sk?,
        session_token: tok,
    })
}

fn from_env() -> Option<Credentials> {
    let v = |k: &str| std::env::var(k).ok().filter(|s| !s.is_empty());
    Some(Credentials {
        access_key: v("AWS_ACCESS_KEY_ID")?,
        secret_key: v("AWS_SECRET_ACCESS_KEY")?,
        session_token: v("AWS_SESSION_TOKEN"),
    })
}

/// The chain up to (not including) the instance role; `Err` says what was
/// looked at when nothing was found.
pub fn static_chain(file: Option<&str>, profile: Option<&str>) -> Result<Credentials, String> {
    if file.is_none()
        && let Some(c) = from_env()
    {
        return Ok(c);
    }
    let path = file
        .map(str::to_string)
        .or_else(|| std::env::var("AWS_SHARED_CREDENTIALS_FILE").ok())
        .or_else(|| {
            std::env::var("HOME")
                .ok()
                .map(|h| format!("{h}/.aws/credentials"))
        });
    let profile = profile
        .map(str::to_string)
        .or_else(|| std::env::var("AWS_PROFILE").ok())
        .unwrap_or_else(|| "default".into());
    let Some(path) = path else {
        return Err("no AWS credentials in the environment and no credentials file".into());
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => from_file_text(&text, &profile)
            .ok_or_else(|| format!("{path}: no keys for profile {profile}")),
        Err(e) => Err(format!(
            "no AWS credentials in the environment, and {path}: {e}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_are_read_from_the_shared_file() {
        let text = "# keys\n[default]\naws_access_key_id = AK1\naws_secret_access_key=SK1\n\n\
                    [profile ops]\naws_access_key_id=AK2\naws_secret_access_key = SK2\n\
                    aws_session_token = T2\n";
        let d = from_file_text(text, "default").unwrap();
        assert_eq!(
            (d.access_key.as_str(), d.secret_key.as_str()),
            ("AK1", "SK1")
        );
        assert_eq!(d.session_token, None);
        let o = from_file_text(text, "ops").unwrap();
        assert_eq!(o.session_token.as_deref(), Some("T2"));
        assert_eq!(from_file_text(text, "missing"), None);
        assert_eq!(
            from_file_text("[x]\naws_access_key_id=A\n", "x"),
            None,
            "no secret"
        );
    }

    #[test]
    fn a_missing_file_names_itself() {
        let e = static_chain(Some("/nonexistent/creds"), None).unwrap_err();
        assert!(e.contains("/nonexistent/creds"), "{e}");
    }
}
