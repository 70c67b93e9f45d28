//! IPMI over LAN to a server's BMC, written here (no maintained Rust
//! client speaks both session kinds): RMCP+ (IPMI 2.0, cipher suite 17 —
//! HMAC-SHA256, HMAC-SHA256-128, AES-CBC-128 — falling back to suite 3 with
//! SHA-1) when the BMC offers it, else an IPMI 1.5 session with MD5 or
//! straight-password authentication. Only what power control needs:
//! chassis status and chassis control, at operator privilege.

mod link;
mod v15;
mod v20;
pub mod wire;

use std::net::SocketAddr;
use std::time::Duration;

use link::Link;
use wire::{NETFN_APP, NETFN_CHASSIS, Request};

/// Operator may read and switch power; nothing here needs more.
const PRIV_OPERATOR: u8 = 3;

#[derive(Debug, thiserror::Error)]
pub enum IpmiError {
    #[error(
        "no answer from the BMC at {addr} to {step} after {attempts} attempt(s) of {timeout:?}"
    )]
    Timeout {
        addr: SocketAddr,
        step: &'static str,
        attempts: u32,
        timeout: Duration,
    },
    #[error("talking to the BMC at {addr}: {source}")]
    Io {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("the BMC at {addr} refused {step}: {text} (completion code {code:#04x})")]
    Completion {
        addr: SocketAddr,
        step: &'static str,
        code: u8,
        text: &'static str,
    },
    #[error("the BMC at {addr} did not accept the credentials of user {user:?} ({why})")]
    Authentication {
        addr: SocketAddr,
        user: String,
        why: String,
    },
    #[error("the BMC at {addr} offers no authentication this client speaks (it offers {offered})")]
    NoCommonAuth { addr: SocketAddr, offered: String },
    #[error("the BMC at {addr} answered {step} with a malformed message")]
    Malformed {
        addr: SocketAddr,
        step: &'static str,
    },
}

/// A BMC and the account to use on it.
#[derive(Clone)]
pub struct Bmc {
    pub addr: SocketAddr,
    pub user: String,
    pub password: String,
    /// Per attempt; each step is tried three times.
    pub timeout: Duration,
    pub prefer: Prefer,
}

/// Which session kind to use: what the BMC offers (RMCP+ when it can), or
/// one forced as `ipmitool -I lan|lanplus` would (merged `ipmi.interface`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Prefer {
    #[default]
    Auto,
    /// IPMI 1.5 even if the BMC offers RMCP+ (some offer it broken).
    Lan,
    /// RMCP+ only.
    Lanplus,
}

impl Prefer {
    pub fn parse(s: &str) -> Option<Prefer> {
        match s {
            "auto" => Some(Prefer::Auto),
            "lan" => Some(Prefer::Lan),
            "lanplus" => Some(Prefer::Lanplus),
            _ => None,
        }
    }
}

impl std::fmt::Debug for Bmc {
    // The password never reaches a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bmc")
            .field("addr", &self.addr)
            .field("user", &self.user)
            .field("prefer", &self.prefer)
            .finish_non_exhaustive()
    }
}

/// Which session kind a connection ended up with (for `-v` and tests).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// IPMI 1.5 with MD5 authentication codes.
    V15Md5,
    /// IPMI 1.5 with the password in every message.
    V15Straight,
    /// RMCP+ with this cipher suite.
    Rmcpp(u8),
}

/// Chassis Control's actions used here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Chassis {
    Off = 0,
    On = 1,
}

impl Bmc {
    /// Opens a session at operator privilege.
    pub async fn session(&self) -> Result<Session, IpmiError> {
        let link = Link::connect(self.addr, self.timeout).await?;
        let caps = v15::capabilities(&link).await?;
        let rmcpp = match self.prefer {
            Prefer::Auto => caps.rmcpp,
            Prefer::Lan => false,
            Prefer::Lanplus if caps.rmcpp => true,
            Prefer::Lanplus => {
                return Err(IpmiError::NoCommonAuth {
                    addr: self.addr,
                    offered: "IPMI 1.5 only, and ipmi.interface is lanplus".into(),
                });
            }
        };
        let kind = if rmcpp {
            Kind::V20(v20::establish(&link, self, PRIV_OPERATOR).await?)
        } else {
            Kind::V15(v15::establish(&link, self, &caps, PRIV_OPERATOR).await?)
        };
        let mut s = Session {
            link,
            kind,
            rq_seq: 0,
        };
        s.command(
            "Set Session Privilege Level",
            NETFN_APP,
            0x3b,
            &[PRIV_OPERATOR],
        )
        .await?;
        Ok(s)
    }
}

enum Kind {
    V15(v15::V15),
    V20(v20::V20),
}

/// An open session; close it with [`Session::close`] (a dropped session
/// times out on the BMC).
pub struct Session {
    link: Link,
    kind: Kind,
    rq_seq: u8,
}

impl Session {
    pub fn protocol(&self) -> Protocol {
        match &self.kind {
            Kind::V15(s) => s.protocol(),
            Kind::V20(s) => s.protocol(),
        }
    }

    /// Whether the chassis reports power on (Get Chassis Status).
    pub async fn power_is_on(&mut self) -> Result<bool, IpmiError> {
        let data = self
            .command("Get Chassis Status", NETFN_CHASSIS, 0x01, &[])
            .await?;
        match data.first() {
            Some(state) => Ok(state & 1 == 1),
            None => Err(IpmiError::Malformed {
                addr: self.link.addr,
                step: "Get Chassis Status",
            }),
        }
    }

    pub async fn chassis(&mut self, action: Chassis) -> Result<(), IpmiError> {
        self.command("Chassis Control", NETFN_CHASSIS, 0x02, &[action as u8])
            .await
            .map(drop)
    }

    /// Ends the session on the BMC (best effort: the BMC times it out
    /// anyway).
    pub async fn close(mut self) {
        let id = match &self.kind {
            Kind::V15(s) => s.session_id(),
            Kind::V20(s) => s.session_id(),
        };
        let _ = self
            .command("Close Session", NETFN_APP, 0x3c, &id.to_le_bytes())
            .await;
    }

    /// One command in the session: its response data, or the refusal.
    async fn command(
        &mut self,
        step: &'static str,
        netfn: u8,
        cmd: u8,
        data: &[u8],
    ) -> Result<Vec<u8>, IpmiError> {
        let req = Request { netfn, cmd, data };
        self.rq_seq = (self.rq_seq + 1) & 0x3f;
        let seq = self.rq_seq;
        let datagram = match &mut self.kind {
            Kind::V15(s) => s.wrap(&wire::message(&req, seq)),
            Kind::V20(s) => s.wrap(&wire::message(&req, seq)),
        };
        let kind = &self.kind;
        let (code, data) = self
            .link
            .exchange(step, &datagram, |d| {
                let msg = match kind {
                    Kind::V15(s) => s.unwrap(d)?,
                    Kind::V20(s) => s.unwrap(d)?,
                };
                let (code, data) = wire::response(&msg, &req, seq)?;
                Some((code, data.to_vec()))
            })
            .await?;
        if code != 0 {
            return Err(IpmiError::Completion {
                addr: self.link.addr,
                step,
                code,
                text: wire::completion_text(code),
            });
        }
        Ok(data)
    }
}

/// Random bytes for session ids, sequence starts and RAKP nonces.
fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    // The OS's generator does not fail on Linux once booted; if it ever
    // did, a time-derived value still makes ids unique per process.
    if getrandom::fill(&mut b).is_err() {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(1)
            .to_le_bytes();
        for (i, x) in b.iter_mut().enumerate() {
            *x = t[i % t.len()] ^ (i as u8);
        }
    }
    b
}

/// A nonzero random u32 (session ids and sequence numbers must not be 0).
fn random_u32() -> u32 {
    u32::from_le_bytes(random::<4>()).max(1)
}

/// Seeded mutations of a valid datagram (flips, truncations, insertions,
/// length bytes set to extremes), for the no-panic tests of each layer.
#[cfg(test)]
pub(crate) fn mutations(base: &[u8], seed: u64, n: usize) -> Vec<Vec<u8>> {
    let mut rng = clusto_core::testing::Rng(seed);
    (0..n)
        .map(|_| {
            let mut d = base.to_vec();
            for _ in 0..=rng.below(4) {
                let at = rng.below(d.len());
                match rng.below(5) {
                    0 => d.truncate(at),
                    1 => d.insert(at, rng.next_u64() as u8),
                    2 if !d.is_empty() => d[at] = [0x00, 0xff, 0x80, 0x7f][rng.below(4)],
                    _ if !d.is_empty() => d[at] ^= 1 << rng.below(8),
                    _ => {}
                }
            }
            d
        })
        .collect()
}
