//! Dropping root: a daemon started as root (to bind port 67 or 162, or
//! because a container runtime grants capabilities only to root) switches
//! to an unprivileged account once its sockets are bound (`--user`).

use std::ffi::CString;

/// An OS account to run as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("--user {0:?}: no such user (give a name from /etc/passwd, a UID or UID:GID)")]
    Unknown(String),
    #[error("cannot switch to user {name}: {source} (start as root, or leave out --user)")]
    Switch {
        name: String,
        #[source]
        source: std::io::Error,
    },
    #[error("switched to user {0} but root could be regained; refusing to run")]
    Regained(String),
}

impl Account {
    /// `NAME` (looked up in the passwd database), `UID` (its group is the
    /// passwd entry's, else the same number) or `UID:GID`, which need no
    /// passwd entry (minimal container images have none).
    pub fn lookup(spec: &str) -> Result<Account, AccountError> {
        let unknown = || AccountError::Unknown(spec.to_string());
        if let Some((u, g)) = spec.split_once(':') {
            let (uid, gid) = (
                u.parse().map_err(|_| unknown())?,
                g.parse().map_err(|_| unknown())?,
            );
            return Ok(Account {
                name: spec.to_string(),
                uid,
                gid,
            });
        }
        if let Ok(uid) = spec.parse::<u32>() {
            let gid = passwd(Key::Uid(uid)).map(|a| a.gid).unwrap_or(uid);
            return Ok(Account {
                name: spec.to_string(),
                uid,
                gid,
            });
        }
        passwd(Key::Name(spec)).ok_or_else(unknown)
    }

    /// Switches this whole process (every thread: glibc's set*id apply to
    /// all) to the account for good: supplementary groups, group, user;
    /// then makes sure root cannot be taken back.
    pub fn switch(&self) -> Result<(), AccountError> {
        let fail = |source| AccountError::Switch {
            name: self.name.clone(),
            source,
        };
        let check = |rc: libc::c_int| {
            if rc == 0 {
                Ok(())
            } else {
                Err(fail(std::io::Error::last_os_error()))
            }
        };
        // SAFETY: plain system calls on integers and a one-element array.
        unsafe {
            check(libc::setgroups(1, &self.gid))?;
            check(libc::setresgid(self.gid, self.gid, self.gid))?;
            check(libc::setresuid(self.uid, self.uid, self.uid))?;
        }
        // SAFETY: as above.
        let regained = self.uid != 0 && unsafe { libc::setuid(0) } == 0;
        if regained {
            return Err(AccountError::Regained(self.name.clone()));
        }
        tracing::info!(user = %self.name, uid = self.uid, gid = self.gid, "dropped root");
        Ok(())
    }
}

enum Key<'a> {
    Name(&'a str),
    Uid(u32),
}

/// One passwd entry, read with the reentrant calls.
fn passwd(key: Key) -> Option<Account> {
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 16384];
    let mut out: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is to live memory of the stated size; on
    // success `out` points at `pw`, whose strings live in `buf`.
    let rc = unsafe {
        match key {
            Key::Name(n) => {
                let n = CString::new(n).ok()?;
                libc::getpwnam_r(n.as_ptr(), &mut pw, buf.as_mut_ptr(), buf.len(), &mut out)
            }
            Key::Uid(u) => libc::getpwuid_r(u, &mut pw, buf.as_mut_ptr(), buf.len(), &mut out),
        }
    };
    if rc != 0 || out.is_null() {
        return None;
    }
    // SAFETY: `pw_name` is a NUL-terminated string inside `buf`.
    let name = unsafe { std::ffi::CStr::from_ptr(pw.pw_name) }
        .to_string_lossy()
        .into_owned();
    Some(Account {
        name,
        uid: pw.pw_uid,
        gid: pw.pw_gid,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_numbers_and_pairs() {
        let root = Account::lookup("root").unwrap();
        assert_eq!((root.uid, root.gid), (0, 0));
        let n = Account::lookup("65532").unwrap();
        assert_eq!(
            (n.uid, n.gid),
            (65532, 65532),
            "no passwd entry: the group is the same number"
        );
        let p = Account::lookup("1000:2000").unwrap();
        assert_eq!((p.uid, p.gid), (1000, 2000));
        for bad in ["no-such-user-here", "1:x", "x:1", ""] {
            let e = Account::lookup(bad).unwrap_err().to_string();
            assert!(e.contains("no such user"), "{bad}: {e}");
        }
    }
}
