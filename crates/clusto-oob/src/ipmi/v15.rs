//! IPMI 1.5 sessions (and the pre-session discovery both kinds start
//! with): the challenge, the activation, and every message signed with an
//! MD5 code over the password (or carrying the password, "straight").

use md5::{Digest, Md5};

use super::link::Link;
use super::wire::{self, NETFN_APP, RMCP_HEADER, Request};
use super::{Bmc, IpmiError, Protocol, random_u32};

const AUTH_NONE: u8 = 0;
const AUTH_MD5: u8 = 2;
const AUTH_STRAIGHT: u8 = 4;

/// Get Channel Authentication Capabilities, as far as choosing goes.
pub struct Caps {
    /// Authentication types offered (bit n = type n).
    auth_types: u8,
    /// RMCP+ (IPMI 2.0) sessions offered.
    pub rmcpp: bool,
}

pub struct V15 {
    auth: u8,
    session_id: u32,
    seq: u32,
    password: [u8; 16],
}

/// One 1.5-format datagram, read.
struct Frame<'d> {
    auth: u8,
    seq: u32,
    session_id: u32,
    code: &'d [u8],
    msg: &'d [u8],
}

fn parse(d: &[u8]) -> Option<Frame<'_>> {
    let rest = d.strip_prefix(&RMCP_HEADER[..2])?;
    let [_seq, 0x07, auth, rest @ ..] = rest else {
        return None;
    };
    let (seq, rest) = rest.split_first_chunk::<4>()?;
    let (sid, rest) = rest.split_first_chunk::<4>()?;
    let (code, rest) = rest.split_at_checked(if *auth == AUTH_NONE { 0 } else { 16 })?;
    let (len, msg) = rest.split_first()?;
    Some(Frame {
        auth: *auth,
        seq: u32::from_le_bytes(*seq),
        session_id: u32::from_le_bytes(*sid),
        code,
        msg: msg.get(..*len as usize)?,
    })
}

fn frame(auth: u8, seq: u32, session_id: u32, code: &[u8], msg: &[u8]) -> Vec<u8> {
    let mut d = RMCP_HEADER.to_vec();
    d.push(auth);
    d.extend_from_slice(&seq.to_le_bytes());
    d.extend_from_slice(&session_id.to_le_bytes());
    d.extend_from_slice(code);
    d.push(msg.len() as u8);
    d.extend_from_slice(msg);
    d
}

/// A command outside any session (discovery, the challenge).
async fn presession(
    link: &Link,
    step: &'static str,
    req: &Request<'_>,
) -> Result<(u8, Vec<u8>), IpmiError> {
    let datagram = frame(AUTH_NONE, 0, 0, &[], &wire::message(req, 0));
    link.exchange(step, &datagram, |d| {
        let f = parse(d)?;
        let (code, data) = wire::response(f.msg, req, 0)?;
        Some((code, data.to_vec()))
    })
    .await
}

pub async fn capabilities(link: &Link) -> Result<Caps, IpmiError> {
    let step = "Get Channel Authentication Capabilities";
    // Bit 7 asks for the IPMI 2.0 extended data; a 1.5-only BMC refuses
    // that, and is asked again without it.
    let mut answer = (0xff, Vec::new());
    for channel in [0x8e, 0x0e] {
        let req = Request {
            netfn: NETFN_APP,
            cmd: 0x38,
            data: &[channel, super::PRIV_OPERATOR],
        };
        answer = presession(link, step, &req).await?;
        if answer.0 == 0 {
            break;
        }
    }
    match answer {
        (0, data) if data.len() >= 4 => Ok(Caps {
            auth_types: data[1] & 0x3f,
            rmcpp: data[1] & 0x80 != 0 && data[3] & 0x02 != 0,
        }),
        (0, _) => Err(IpmiError::Malformed {
            addr: link.addr,
            step,
        }),
        (code, _) => Err(completion(link, step, code)),
    }
}

fn completion(link: &Link, step: &'static str, code: u8) -> IpmiError {
    IpmiError::Completion {
        addr: link.addr,
        step,
        code,
        text: wire::completion_text(code),
    }
}

fn padded16(s: &str) -> [u8; 16] {
    let mut b = [0u8; 16];
    let n = s.len().min(16);
    b[..n].copy_from_slice(&s.as_bytes()[..n]);
    b
}

pub async fn establish(
    link: &Link,
    bmc: &Bmc,
    caps: &Caps,
    privilege: u8,
) -> Result<V15, IpmiError> {
    let auth = if caps.auth_types & (1 << AUTH_MD5) != 0 {
        AUTH_MD5
    } else if caps.auth_types & (1 << AUTH_STRAIGHT) != 0 {
        AUTH_STRAIGHT
    } else {
        return Err(IpmiError::NoCommonAuth {
            addr: link.addr,
            offered: offered(caps.auth_types),
        });
    };
    let (temp_id, challenge) = challenge(link, bmc, auth).await?;
    let mut s = V15 {
        auth,
        session_id: temp_id,
        seq: 0,
        password: padded16(&bmc.password),
    };
    let outbound = random_u32();
    let mut data = vec![auth, privilege];
    data.extend_from_slice(&challenge);
    data.extend_from_slice(&outbound.to_le_bytes());
    let req = Request {
        netfn: NETFN_APP,
        cmd: 0x3a,
        data: &data,
    };
    let step = "Activate Session";
    let datagram = s.wrap(&wire::message(&req, 0));
    let answer = link.exchange(step, &datagram, |d| {
        let f = parse(d)?;
        let (code, data) = wire::response(f.msg, &req, 0)?;
        Some((code, data.to_vec()))
    });
    let denied = |why: &str| IpmiError::Authentication {
        addr: link.addr,
        user: bmc.user.clone(),
        why: why.to_string(),
    };
    match answer.await {
        Ok((0, d)) if d.len() >= 9 => {
            s.session_id = u32::from_le_bytes([d[1], d[2], d[3], d[4]]);
            s.seq = u32::from_le_bytes([d[5], d[6], d[7], d[8]]).max(1);
            Ok(s)
        }
        Ok((0, _)) => Err(IpmiError::Malformed {
            addr: link.addr,
            step,
        }),
        Ok((code, _)) => Err(completion(link, step, code)),
        // A BMC that answered the challenge drops an activation whose
        // code does not check out: the password is wrong.
        Err(IpmiError::Timeout { .. }) => {
            Err(denied("no answer to Activate Session: wrong password"))
        }
        Err(e) => Err(e),
    }
}

async fn challenge(link: &Link, bmc: &Bmc, auth: u8) -> Result<(u32, [u8; 16]), IpmiError> {
    let step = "Get Session Challenge";
    let mut data = vec![auth];
    data.extend_from_slice(&padded16(&bmc.user));
    let req = Request {
        netfn: NETFN_APP,
        cmd: 0x39,
        data: &data,
    };
    match presession(link, step, &req).await? {
        (0, d) if d.len() >= 20 => {
            let id = u32::from_le_bytes([d[0], d[1], d[2], d[3]]);
            let mut c = [0u8; 16];
            c.copy_from_slice(&d[4..20]);
            Ok((id, c))
        }
        (0, _) => Err(IpmiError::Malformed {
            addr: link.addr,
            step,
        }),
        (0x81 | 0x82, _) => Err(IpmiError::Authentication {
            addr: link.addr,
            user: bmc.user.clone(),
            why: "no such user".into(),
        }),
        (code, _) => Err(completion(link, step, code)),
    }
}

fn offered(bits: u8) -> String {
    let names = [
        (0, "none"),
        (1, "MD2"),
        (2, "MD5"),
        (4, "straight"),
        (5, "OEM"),
    ];
    let v: Vec<&str> = names
        .iter()
        .filter(|(b, _)| bits & (1 << b) != 0)
        .map(|(_, n)| *n)
        .collect();
    if v.is_empty() {
        "nothing".into()
    } else {
        v.join(", ")
    }
}

impl V15 {
    pub fn protocol(&self) -> Protocol {
        if self.auth == AUTH_MD5 {
            Protocol::V15Md5
        } else {
            Protocol::V15Straight
        }
    }

    pub fn session_id(&self) -> u32 {
        self.session_id
    }

    fn code(&self, seq: u32, session_id: u32, msg: &[u8]) -> [u8; 16] {
        if self.auth == AUTH_STRAIGHT {
            return self.password;
        }
        let mut h = Md5::new();
        h.update(self.password);
        h.update(session_id.to_le_bytes());
        h.update(msg);
        h.update(seq.to_le_bytes());
        h.update(self.password);
        h.finalize().into()
    }

    pub fn wrap(&mut self, msg: &[u8]) -> Vec<u8> {
        let seq = self.seq;
        // Before activation the sequence stays 0; after, it counts up.
        if seq != 0 {
            self.seq = self.seq.wrapping_add(1).max(1);
        }
        let code = self.code(seq, self.session_id, msg);
        frame(self.auth, seq, self.session_id, &code, msg)
    }

    /// The message of a datagram of this session whose code checks out.
    pub fn unwrap(&self, d: &[u8]) -> Option<Vec<u8>> {
        let f = parse(d)?;
        if f.session_id != self.session_id && f.session_id != 0 {
            return None;
        }
        let signed = f.auth == self.auth && f.code == self.code(f.seq, f.session_id, f.msg);
        // Responses to activation may come unsigned; after that the BMC
        // signs every message of the session.
        (signed || f.auth == AUTH_NONE && self.seq == 0).then(|| f.msg.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_codes_bind_the_password() {
        let mut s = V15 {
            auth: AUTH_MD5,
            session_id: 0x01020304,
            seq: 7,
            password: padded16("secret"),
        };
        let d = s.wrap(b"\x20\x18\xc8");
        assert_eq!(s.seq, 8);
        let f = parse(&d).unwrap();
        assert_eq!(
            (f.auth, f.seq, f.session_id, f.msg),
            (AUTH_MD5, 7, 0x01020304, &b"\x20\x18\xc8"[..])
        );
        assert_eq!(s.unwrap(&d).as_deref(), Some(&b"\x20\x18\xc8"[..]));
        let other = V15 {
            password: padded16("wrong"),
            ..s
        };
        assert_eq!(other.unwrap(&d), None, "a code made with another password");
        assert!(parse(&d[..d.len() - 1]).is_none(), "short message");
        assert!(parse(b"\x06\x00\xff\x07\x02").is_none());
        assert_eq!(offered(0x15), "none, MD5, straight");
    }

    #[test]
    fn mutated_datagrams_are_rejected_or_read_never_a_panic() {
        let mut s = V15 {
            auth: AUTH_MD5,
            session_id: 7,
            seq: 3,
            password: padded16("secret"),
        };
        let good = s.wrap(&[0x81, 0x1c, 0x63, 0x20, 0x04, 0x01, 0x00, 0x01, 0xda]);
        let straight = V15 {
            auth: AUTH_STRAIGHT,
            seq: 0,
            ..s
        };
        let req = Request {
            netfn: 0,
            cmd: 1,
            data: &[],
        };
        for d in super::super::mutations(&good, 15, 20_000) {
            let _ = s.unwrap(&d);
            let _ = straight.unwrap(&d);
            if let Some(f) = parse(&d) {
                let _ = wire::response(f.msg, &req, 1);
            }
        }
    }
}
