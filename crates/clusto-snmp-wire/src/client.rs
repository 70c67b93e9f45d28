//! A small SNMP v2c manager: GET and SET of single scalars, one request
//! in flight, retried on silence. It is what switching a PDU outlet needs
//! (`clusto power`), not a general SNMP library.

use std::net::SocketAddr;
use std::time::Duration;

use snmp_parser::{PduType, SnmpPdu, VarBindValue};
use tokio::net::UdpSocket;

use crate::ber;
use crate::message::{MAX_DATAGRAM, Value, varbind};

const SET_REQUEST: u8 = 0xa3;

/// One agent and how to talk to it.
#[derive(Clone)]
pub struct Agent {
    pub addr: SocketAddr,
    pub community: String,
    /// How long to wait for each attempt.
    pub timeout: Duration,
    /// Attempts after the first (an unanswered SET is resent as is: a
    /// repeated SET of the same value is harmless).
    pub retries: u32,
}

impl std::fmt::Debug for Agent {
    // The community is a password: never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("addr", &self.addr)
            .field("timeout", &self.timeout)
            .field("retries", &self.retries)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "no answer from {addr} after {attempts} attempt(s) of {timeout:?} (unreachable, or the community is wrong: agents drop those silently)"
    )]
    Timeout {
        addr: SocketAddr,
        attempts: u32,
        timeout: Duration,
    },
    #[error("{addr} refused {oid}: {status}")]
    Refused {
        addr: SocketAddr,
        oid: String,
        status: ErrorStatus,
    },
    #[error("{addr} has no {oid} ({what})")]
    NoSuch {
        addr: SocketAddr,
        oid: String,
        what: &'static str,
    },
    #[error("{addr} answered with something that is not an SNMP v2c response to the request")]
    Malformed { addr: SocketAddr },
    #[error("talking to {addr}: {source}")]
    Io {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// RFC 3416's error-status, named.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ErrorStatus(pub u32);

impl std::fmt::Display for ErrorStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const NAMES: [&str; 19] = [
            "noError",
            "tooBig",
            "noSuchName",
            "badValue",
            "readOnly",
            "genErr",
            "noAccess",
            "wrongType",
            "wrongLength",
            "wrongEncoding",
            "wrongValue",
            "noCreation",
            "inconsistentValue",
            "resourceUnavailable",
            "commitFailed",
            "undoFailed",
            "authorizationError",
            "notWritable",
            "inconsistentName",
        ];
        match NAMES.get(self.0 as usize) {
            Some(n) => write!(f, "{n} ({})", self.0),
            None => write!(f, "error-status {}", self.0),
        }
    }
}

/// Dotted text of an OID (`1.3.6.1…`), for messages and parsing drivers.
pub fn oid_text(arcs: &[u64]) -> String {
    arcs.iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(".")
}

/// Parses dotted text (a leading dot allowed); `None` on anything else.
pub fn parse_oid(text: &str) -> Option<Vec<u64>> {
    let t = text.strip_prefix('.').unwrap_or(text);
    let arcs: Option<Vec<u64>> = t.split('.').map(|a| a.parse().ok()).collect();
    arcs.filter(|a| a.len() >= 2 && a[0] <= 2)
}

impl Agent {
    /// The value of one scalar.
    pub async fn get(&self, oid: &[u64]) -> Result<Value, ClientError> {
        let vb = ber::seq(&[&ber::oid(oid), &ber::tlv(ber::NULL, &[])]);
        self.request(ber::GET_REQUEST, oid, &vb).await
    }

    /// Sets one INTEGER scalar; answers what the agent says it now holds.
    pub async fn set_int(&self, oid: &[u64], value: i64) -> Result<Value, ClientError> {
        let vb = ber::seq(&[&ber::oid(oid), &ber::int(ber::INTEGER, value)]);
        self.request(SET_REQUEST, oid, &vb).await
    }

    async fn request(&self, pdu: u8, oid: &[u64], varbind: &[u8]) -> Result<Value, ClientError> {
        let addr = self.addr;
        let io = |source| ClientError::Io { addr, source };
        let sock = connected_udp(addr).await.map_err(io)?;
        let request_id = request_id();
        let datagram = self.message(pdu, request_id, varbind);
        let mut buf = vec![0u8; MAX_DATAGRAM];
        for _ in 0..=self.retries {
            sock.send(&datagram).await.map_err(io)?;
            let deadline = tokio::time::Instant::now() + self.timeout;
            // Late answers to an earlier attempt carry the same id; anything
            // else on the socket is ignored until the deadline.
            while let Ok(got) = tokio::time::timeout_at(deadline, sock.recv(&mut buf)).await {
                let n = got.map_err(io)?;
                if let Some(answer) = self.answer(&buf[..n], request_id, oid)? {
                    return Ok(answer);
                }
            }
        }
        Err(ClientError::Timeout {
            addr,
            attempts: self.retries + 1,
            timeout: self.timeout,
        })
    }

    fn message(&self, pdu: u8, request_id: i32, varbind: &[u8]) -> Vec<u8> {
        let pdu = ber::tlv(
            pdu,
            &[
                ber::int(ber::INTEGER, request_id.into()),
                ber::int(ber::INTEGER, 0),
                ber::int(ber::INTEGER, 0),
                ber::seq(&[varbind]),
            ]
            .concat(),
        );
        ber::seq(&[
            &ber::int(ber::INTEGER, 1),
            &ber::octets(self.community.as_bytes()),
            &pdu,
        ])
    }

    /// `Ok(None)` for a datagram that is not the answer to this request.
    fn answer(
        &self,
        datagram: &[u8],
        request_id: i32,
        oid: &[u64],
    ) -> Result<Option<Value>, ClientError> {
        let addr = self.addr;
        let Ok((_, msg)) = snmp_parser::parse_snmp_v2c(datagram) else {
            return Ok(None);
        };
        let SnmpPdu::Generic(pdu) = &msg.pdu else {
            return Ok(None);
        };
        if pdu.pdu_type != PduType::Response || pdu.req_id as i32 != request_id {
            return Ok(None);
        }
        let oid_s = oid_text(oid);
        if pdu.err.0 != 0 {
            return Err(ClientError::Refused {
                addr,
                oid: oid_s,
                status: ErrorStatus(pdu.err.0),
            });
        }
        let Some(v) = pdu.var.first() else {
            return Err(ClientError::Malformed { addr });
        };
        let what = match v.val {
            VarBindValue::NoSuchObject => Some("noSuchObject"),
            VarBindValue::NoSuchInstance => Some("noSuchInstance"),
            VarBindValue::EndOfMibView => Some("endOfMibView"),
            _ => None,
        };
        if let Some(what) = what {
            return Err(ClientError::NoSuch {
                addr,
                oid: oid_s,
                what,
            });
        }
        match varbind(v) {
            Some((got, value)) if got == oid => Ok(Some(value)),
            _ => Err(ClientError::Malformed { addr }),
        }
    }
}

/// A UDP socket on an ephemeral port of the right family, connected to
/// `peer` (so only its datagrams arrive, and an absent peer's ICMP
/// port-unreachable ends the wait at once). The IPMI client uses it too.
pub async fn connected_udp(peer: SocketAddr) -> std::io::Result<UdpSocket> {
    let any: SocketAddr = if peer.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let sock = UdpSocket::bind(any).await?;
    sock.connect(peer).await?;
    Ok(sock)
}

/// A fresh request-id: clock nanoseconds are unpredictable enough to tell
/// this request's answer from a stale one, and need no random source.
fn request_id() -> i32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() ^ (d.as_secs() as u32).rotate_left(7))
        .unwrap_or(1);
    (nanos & 0x7fff_ffff) as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oids_round_trip_and_junk_is_refused() {
        let o = parse_oid(".1.3.6.1.4.1.1718.3.2.3.1.11.1.1.3").unwrap();
        assert_eq!(oid_text(&o), "1.3.6.1.4.1.1718.3.2.3.1.11.1.1.3");
        for bad in ["", "1", "1..3", "1.3.x", "7.1", "1.3.-1"] {
            assert_eq!(parse_oid(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_set_request_is_what_snmp_parser_reads_back() {
        let agent = Agent {
            addr: "127.0.0.1:161".parse().unwrap(),
            community: "private".into(),
            timeout: Duration::from_secs(1),
            retries: 0,
        };
        let oid = [1, 3, 6, 1, 4, 1, 1718, 3, 2, 3, 1, 11, 1, 1, 3];
        let vb = ber::seq(&[&ber::oid(&oid), &ber::int(ber::INTEGER, 2)]);
        let bytes = agent.message(SET_REQUEST, 4242, &vb);
        let (_, msg) = snmp_parser::parse_snmp_v2c(&bytes).unwrap();
        assert_eq!(msg.community, "private");
        let SnmpPdu::Generic(pdu) = &msg.pdu else {
            panic!()
        };
        assert_eq!(pdu.pdu_type, PduType::SetRequest);
        assert_eq!(pdu.req_id, 4242);
        assert_eq!(
            varbind(&pdu.var[0]),
            Some((oid.to_vec(), Value::Integer(2)))
        );
        assert!(!format!("{agent:?}").contains("private"));
    }

    #[test]
    fn mutated_answers_are_ignored_or_read_never_a_panic() {
        let agent = Agent {
            addr: "127.0.0.1:161".parse().unwrap(),
            community: "private".into(),
            timeout: Duration::from_secs(1),
            retries: 0,
        };
        let oid = [1, 3, 6, 1, 4, 1, 1718, 3, 2, 3, 1, 10, 1, 1, 3];
        let vb = ber::seq(&[&ber::oid(&oid), &ber::int(ber::INTEGER, 5)]);
        let answer = agent.message(ber::RESPONSE, 77, &vb);
        assert!(matches!(
            agent.answer(&answer, 77, &oid),
            Ok(Some(Value::Integer(5)))
        ));
        let mut r = clusto_core::testing::Rng(0x5eed);
        let mut rng = || r.next_u64();
        for _ in 0..20_000 {
            let mut d = answer.clone();
            for _ in 0..=rng() % 4 {
                let at = (rng() as usize) % d.len().max(1);
                match rng() % 4 {
                    0 => d.truncate(at),
                    1 => d.insert(at, rng() as u8),
                    _ if !d.is_empty() => d[at] ^= 1 << (rng() % 8),
                    _ => {}
                }
            }
            let _ = agent.answer(&d, 77, &oid);
        }
    }

    #[test]
    fn error_statuses_are_named() {
        assert_eq!(ErrorStatus(17).to_string(), "notWritable (17)");
        assert_eq!(ErrorStatus(10).to_string(), "wrongValue (10)");
        assert_eq!(ErrorStatus(99).to_string(), "error-status 99");
    }
}
