//! Bearer tokens from a file (`token,user,role` lines). Tokens are compared
//! in constant time and never logged; only the user name reaches logs and
//! revisions.

use std::path::Path;

/// What a caller may do. `viewer` reads and plans; `editor` also applies;
/// `admin` also prunes and takes objects over from other apply sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Viewer,
    Editor,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Editor => "editor",
            Role::Admin => "admin",
        }
    }
}

/// Who is calling: a token's user, or anonymous (reads only, when allowed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub user: String,
    pub role: Role,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    #[error("{path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}: {why} (lines are token,user,role with role viewer, editor or admin)")]
    Line {
        path: String,
        line: usize,
        why: String,
    },
}

/// The tokens a server accepts.
#[derive(Default)]
pub struct Tokens(Vec<(Vec<u8>, Caller)>);

impl Tokens {
    pub fn load(path: &Path) -> Result<Tokens, TokenFileError> {
        let p = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| TokenFileError::Read {
            path: p.clone(),
            source,
        })?;
        Tokens::parse(&p, &text)
    }

    pub fn parse(path: &str, text: &str) -> Result<Tokens, TokenFileError> {
        let mut out = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |why: &str| TokenFileError::Line {
                path: path.to_string(),
                line: i + 1,
                why: why.to_string(),
            };
            let f: Vec<&str> = line.split(',').map(str::trim).collect();
            let [token, user, role] = f[..] else {
                return Err(bad("expected three comma-separated fields"));
            };
            if token.len() < 16 {
                return Err(bad("token shorter than 16 characters"));
            }
            if user.is_empty() {
                return Err(bad("empty user"));
            }
            let role = match role {
                "viewer" => Role::Viewer,
                "editor" => Role::Editor,
                "admin" => Role::Admin,
                _ => return Err(bad("unknown role")),
            };
            out.push((
                token.as_bytes().to_vec(),
                Caller {
                    user: user.to_string(),
                    role,
                },
            ));
        }
        Ok(Tokens(out))
    }

    /// The caller a presented token belongs to. Every entry is compared, and
    /// each comparison takes the same time wherever the bytes differ.
    pub fn check(&self, presented: &str) -> Option<Caller> {
        let mut found = None;
        for (t, c) in &self.0 {
            if constant_time_eq(t, presented.as_bytes()) && found.is_none() {
                found = Some(c.clone());
            }
        }
        found
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_files_are_checked_line_by_line() {
        let t = Tokens::parse(
            "t",
            "# ops\n0123456789abcdef,alice,admin\n\nfedcba9876543210,bob,viewer\n",
        )
        .unwrap();
        assert_eq!(t.check("0123456789abcdef").unwrap().user, "alice");
        assert_eq!(t.check("fedcba9876543210").unwrap().role, Role::Viewer);
        assert!(t.check("0123456789abcdeF").is_none());
        assert!(t.check("").is_none());
        for (text, why) in [
            ("short,a,admin", "shorter than 16"),
            ("0123456789abcdef,a", "three comma-separated"),
            ("0123456789abcdef,a,root", "unknown role"),
            ("0123456789abcdef,,admin", "empty user"),
        ] {
            let e = Tokens::parse("tokens.csv", text).err().unwrap().to_string();
            assert!(e.contains(why) && e.starts_with("tokens.csv:1:"), "{e}");
        }
    }
}
