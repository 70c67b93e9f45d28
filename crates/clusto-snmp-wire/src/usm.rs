//! SNMPv3's User-based Security Model (RFC 3414, RFC 7860, RFC 3826) as a
//! notification receiver needs it: users from a file the inventory never
//! sees, keys localised to the engine that is authoritative for each
//! message, HMAC digests checked, AES-128-CFB scoped PDUs decrypted, and
//! replies (INFORM acknowledgements, reports) authenticated and encrypted.

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use aes::Aes128;
use cfb_mode::cipher::KeyIvInit;
use hmac::{KeyInit, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthProtocol {
    /// usmHMACSHAAuthProtocol: HMAC-SHA-1-96.
    Sha1,
    /// usmHMAC192SHA256AuthProtocol: HMAC-SHA-256-192.
    Sha256,
}

impl AuthProtocol {
    /// Octets of msgAuthenticationParameters.
    pub fn digest_len(self) -> usize {
        match self {
            AuthProtocol::Sha1 => 12,
            AuthProtocol::Sha256 => 24,
        }
    }

    fn hash(self, parts: &[&[u8]]) -> Vec<u8> {
        match self {
            AuthProtocol::Sha1 => {
                let mut h = Sha1::new();
                parts.iter().for_each(|p| h.update(p));
                h.finalize().to_vec()
            }
            AuthProtocol::Sha256 => {
                let mut h = Sha256::new();
                parts.iter().for_each(|p| h.update(p));
                h.finalize().to_vec()
            }
        }
    }

    fn hmac(self, key: &[u8], msg: &[u8]) -> Vec<u8> {
        let mut out = match self {
            AuthProtocol::Sha1 => {
                let mut m = <hmac::Hmac<Sha1> as KeyInit>::new_from_slice(key).expect("any key");
                m.update(msg);
                m.finalize().into_bytes().to_vec()
            }
            AuthProtocol::Sha256 => {
                let mut m = <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("any key");
                m.update(msg);
                m.finalize().into_bytes().to_vec()
            }
        };
        out.truncate(self.digest_len());
        out
    }

    /// RFC 3414 A.2: the password stretched over one megabyte.
    fn password_key(self, password: &[u8]) -> Vec<u8> {
        const MEGABYTE: usize = 1 << 20;
        let mut stretched = Vec::with_capacity(MEGABYTE);
        while stretched.len() < MEGABYTE {
            let take = password.len().min(MEGABYTE - stretched.len());
            stretched.extend_from_slice(&password[..take]);
        }
        self.hash(&[&stretched])
    }

    /// The key localised to one engine: H(Ku || engineID || Ku).
    fn localise(self, ku: &[u8], engine: &[u8]) -> Vec<u8> {
        self.hash(&[ku, engine, ku])
    }
}

/// A v3 user: its name, how it authenticates, and its password keys (not
/// yet localised: that depends on the engine of each message).
#[derive(Clone)]
pub struct User {
    pub name: String,
    pub auth: AuthProtocol,
    auth_ku: Vec<u8>,
    /// AES-128's password key, when the user has privacy.
    priv_ku: Option<Vec<u8>>,
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Keys never reach logs.
        f.debug_struct("User")
            .field("name", &self.name)
            .field("auth", &self.auth)
            .field("privacy", &self.priv_ku.is_some())
            .finish()
    }
}

/// Keys localised to one engine.
#[derive(Clone)]
pub struct Keys {
    pub protocol: AuthProtocol,
    auth: Vec<u8>,
    privacy: Option<[u8; 16]>,
}

impl Keys {
    pub fn has_privacy(&self) -> bool {
        self.privacy.is_some()
    }

    /// The digest of a whole message whose msgAuthenticationParameters
    /// are zeroed.
    pub fn digest(&self, message: &[u8]) -> Vec<u8> {
        self.protocol.hmac(&self.auth, message)
    }

    /// Decrypts an AES-128-CFB scoped PDU (RFC 3826: the IV is the
    /// authoritative engine's boots and time, then the 8-octet salt).
    pub fn decrypt(&self, boots: u32, time: u32, salt: &[u8], data: &[u8]) -> Option<Vec<u8>> {
        let key = self.privacy?;
        let iv = aes_iv(boots, time, salt.try_into().ok()?);
        let mut out = data.to_vec();
        cfb_mode::Decryptor::<Aes128>::new(&key.into(), &iv.into()).decrypt(&mut out);
        Some(out)
    }

    pub fn encrypt(&self, boots: u32, time: u32, salt: [u8; 8], data: &[u8]) -> Option<Vec<u8>> {
        let key = self.privacy?;
        let iv = aes_iv(boots, time, salt);
        let mut out = data.to_vec();
        cfb_mode::Encryptor::<Aes128>::new(&key.into(), &iv.into()).encrypt(&mut out);
        Some(out)
    }
}

fn aes_iv(boots: u32, time: u32, salt: [u8; 8]) -> [u8; 16] {
    let mut iv = [0u8; 16];
    iv[..4].copy_from_slice(&boots.to_be_bytes());
    iv[4..8].copy_from_slice(&time.to_be_bytes());
    iv[8..].copy_from_slice(&salt);
    iv
}

#[derive(Debug, thiserror::Error)]
pub enum UsersError {
    #[error("{file}: {source}")]
    Read {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}:{line}: {rule}")]
    Line {
        file: String,
        line: usize,
        rule: String,
    },
}

/// This receiver's engine and the users it accepts.
pub struct Usm {
    /// Authoritative for INFORMs sent to it.
    pub engine_id: Vec<u8>,
    pub boots: u32,
    started: Instant,
    users: HashMap<String, User>,
    /// Localised keys by (user, engine): localising costs one hash, but a
    /// trap storm asks for the same few over and over.
    localised: HashMap<(String, Vec<u8>), Keys>,
    reports: i64,
    salt: u64,
}

impl Usm {
    pub fn new(engine_id: Vec<u8>, users: Vec<User>) -> Usm {
        Usm {
            engine_id,
            boots: 1,
            started: Instant::now(),
            users: users.into_iter().map(|u| (u.name.clone(), u)).collect(),
            localised: HashMap::new(),
            reports: 0,
            salt: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1),
        }
    }

    /// Counts a report sent; the value reports carry.
    pub fn count_report(&mut self) -> i64 {
        self.reports = (self.reports + 1) % (1 << 32);
        self.reports
    }

    /// A salt never used before by this engine (RFC 3826 §3.1.2.1).
    pub fn next_salt(&mut self) -> [u8; 8] {
        self.salt = self.salt.wrapping_add(1);
        self.salt.to_be_bytes()
    }

    /// Seconds since this engine (re)booted.
    pub fn time(&self) -> u32 {
        self.started.elapsed().as_secs().min(i32::MAX as u64) as u32
    }

    pub fn has_users(&self) -> bool {
        !self.users.is_empty()
    }

    /// `user`'s keys localised to `engine`, or None for an unknown user.
    pub fn keys(&mut self, user: &str, engine: &[u8]) -> Option<Keys> {
        let u = self.users.get(user)?;
        let slot = (user.to_string(), engine.to_vec());
        if let Some(k) = self.localised.get(&slot) {
            return Some(k.clone());
        }
        let privacy = u.priv_ku.as_ref().map(|ku| {
            let mut k = [0u8; 16];
            k.copy_from_slice(&u.auth.localise(ku, engine)[..16]);
            k
        });
        let keys = Keys {
            protocol: u.auth,
            auth: u.auth.localise(&u.auth_ku, engine),
            privacy,
        };
        if self.localised.len() > 4096 {
            // Spoofed engine ids must not grow this without bound.
            self.localised.clear();
        }
        self.localised.insert(slot, keys.clone());
        Some(keys)
    }
}

/// A stable engine ID for this receiver (RFC 3411 format 4, text): the
/// enterprise is net-snmp's (8072), the text names the host.
pub fn engine_id_for(host: &str) -> Vec<u8> {
    let mut id = vec![0x80, 0x00, 0x1f, 0x88, 0x04];
    id.extend(host.bytes().take(27));
    id
}

/// Reads the `--v3-users` file: one user per line,
/// `[createUser] NAME SHA|SHA-256 AUTHPASS [AES|AES-128 PRIVPASS]`, the
/// same words net-snmp's `snmptrapd.conf` uses; `#` starts a comment.
pub fn read_users(path: &Path) -> Result<Vec<User>, UsersError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| UsersError::Read {
        file: file.clone(),
        source,
    })?;
    parse_users(&file, &text)
}

pub fn parse_users(file: &str, text: &str) -> Result<Vec<User>, UsersError> {
    let mut out: Vec<User> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let fail = |rule: String| UsersError::Line {
            file: file.to_string(),
            line: n + 1,
            rule,
        };
        let line = line.split('#').next().unwrap_or("").trim();
        let mut words: Vec<&str> = line.split_whitespace().collect();
        if words.first() == Some(&"createUser") {
            words.remove(0);
        }
        let (name, auth, auth_pass, privacy) = match words.as_slice() {
            [] => continue,
            [name, auth, pass] => (*name, *auth, *pass, None),
            [name, auth, pass, p, ppass] => (*name, *auth, *pass, Some((*p, *ppass))),
            _ => {
                return Err(fail(
                    "expected: NAME SHA|SHA-256 AUTHPASS [AES PRIVPASS]".into(),
                ));
            }
        };
        let auth = match auth.to_ascii_uppercase().as_str() {
            "SHA" | "SHA1" | "SHA-1" => AuthProtocol::Sha1,
            "SHA-256" | "SHA256" => AuthProtocol::Sha256,
            other => {
                return Err(fail(format!(
                    "user {name}: authentication {other:?} is not SHA or SHA-256"
                )));
            }
        };
        for pass in std::iter::once(auth_pass).chain(privacy.map(|p| p.1)) {
            if pass.len() < 8 {
                return Err(fail(format!(
                    "user {name}: passwords need at least 8 characters (RFC 3414)"
                )));
            }
        }
        let priv_ku = match privacy {
            None => None,
            Some((p, pass)) => match p.to_ascii_uppercase().as_str() {
                "AES" | "AES128" | "AES-128" => Some(auth.password_key(pass.as_bytes())),
                other => {
                    return Err(fail(format!(
                        "user {name}: privacy {other:?} is not AES (AES-128)"
                    )));
                }
            },
        };
        if out.iter().any(|u| u.name == name) {
            return Err(fail(format!("user {name} is listed twice")));
        }
        out.push(User {
            name: name.to_string(),
            auth,
            auth_ku: auth.password_key(auth_pass.as_bytes()),
            priv_ku,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// RFC 3414 A.3.2: "maplesyrup" localised to engine 00…02 with SHA.
    #[test]
    fn sha1_key_localisation_matches_rfc_3414() {
        let ku = AuthProtocol::Sha1.password_key(b"maplesyrup");
        assert_eq!(ku, hex("9fb5cc0381497b3793528939ff788d5d79145211"));
        let kul = AuthProtocol::Sha1.localise(&ku, &hex("000000000000000000000002"));
        assert_eq!(kul, hex("6695febc9288e36282235fc7151f128497b38f3f"));
    }

    #[test]
    fn aes_round_trip_and_users_file() {
        let users = parse_users(
            "users",
            "# comment\ncreateUser alice SHA-256 alicepass1 AES alicepriv1\nbob SHA bobpass12\n",
        )
        .unwrap();
        assert_eq!(users.len(), 2);
        let mut usm = Usm::new(engine_id_for("t"), users);
        let k = usm.keys("alice", b"engine").unwrap();
        assert!(k.has_privacy());
        let sealed = k.encrypt(3, 99, [1; 8], b"scoped pdu bytes").unwrap();
        assert_ne!(sealed, b"scoped pdu bytes");
        assert_eq!(
            k.decrypt(3, 99, &[1; 8], &sealed).unwrap(),
            b"scoped pdu bytes"
        );
        assert!(!usm.keys("bob", b"engine").unwrap().has_privacy());
        assert!(usm.keys("carol", b"engine").is_none());
        assert!(format!("{:?}", usm.users["alice"]).contains("privacy: true"));
    }

    #[test]
    fn users_file_errors_name_the_line_and_rule() {
        for (text, needle) in [
            (
                "alice MD5 alicepass1",
                "users:1: user alice: authentication \"MD5\"",
            ),
            (
                "\nalice SHA short",
                "users:2: user alice: passwords need at least 8",
            ),
            (
                "alice SHA alicepass1 DES alicepass1",
                "privacy \"DES\" is not AES",
            ),
            ("alice SHA", "users:1: expected: NAME"),
            (
                "a SHA alicepass1\na SHA alicepass1",
                "users:2: user a is listed twice",
            ),
        ] {
            let e = parse_users("users", text).unwrap_err().to_string();
            assert!(e.contains(needle), "{e}");
        }
    }
}
