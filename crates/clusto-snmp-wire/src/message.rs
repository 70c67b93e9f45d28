//! One datagram in, one verdict out: a notification to act on (with the
//! acknowledgement an INFORM is owed), a report to send straight back
//! (SNMPv3 engine discovery and time synchronisation), or a drop with its
//! reason. The typed decoding is `snmp-parser`'s; USM is [`crate::usm`].

use std::net::Ipv4Addr;

use snmp_parser::{
    NetworkAddress, ObjectSyntax, PduType, SecurityParameters, SnmpPdu, SnmpVariable,
    UsmSecurityParameters, VarBindValue,
};

use crate::ber;
use crate::usm::{Keys, Usm};

/// Datagrams longer than this are dropped unread (the largest UDP payload
/// over IPv4).
pub const MAX_DATAGRAM: usize = 65507;

/// snmpTrapOID.0: the varbind naming a v2 notification.
const SNMP_TRAP_OID: [u64; 11] = [1, 3, 6, 1, 6, 3, 1, 1, 4, 1, 0];
const UNKNOWN_ENGINE_IDS: [u64; 11] = [1, 3, 6, 1, 6, 3, 15, 1, 1, 4, 0];
const NOT_IN_TIME_WINDOWS: [u64; 11] = [1, 3, 6, 1, 6, 3, 15, 1, 1, 2, 0];
/// RFC 3414's window: 150 seconds either side of the engine's clock.
const TIME_WINDOW: i64 = 150;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    V1,
    V2c,
    V3,
}

/// Who a notification says it is from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Principal {
    Community(String),
    /// A v3 user whose digest checked out.
    User(String),
}

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Octets(Vec<u8>),
    Integer(i64),
    Unsigned(u64),
    Oid(Vec<u64>),
    Ip(Ipv4Addr),
    Other,
}

#[derive(Clone, Debug)]
pub struct Notification {
    pub version: Version,
    pub principal: Principal,
    pub inform: bool,
    /// snmpTrapOID.0; for v1, enterprise.0.specific (RFC 3584 §3.1).
    pub trap_oid: Vec<u64>,
    /// A v1 trap's agent-addr.
    pub agent_addr: Option<Ipv4Addr>,
    pub varbinds: Vec<(Vec<u64>, Value)>,
    /// The Response an INFORM is owed, to send once it is handled.
    pub ack: Option<Vec<u8>>,
}

/// Why a datagram was not acted on; also the metric label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dropped {
    Malformed,
    Oversized,
    /// Well formed, but not a trap or inform (a GET sent to a trap port).
    NotANotification,
    /// v3 without authentication.
    Unauthenticated,
    UnknownUser,
    WrongDigest,
    /// Encrypted for a user without privacy, or it decrypted to garbage.
    Undecryptable,
    /// A v3 INFORM for another engine, or outside the time window, that
    /// did not ask for a report.
    NotForThisEngine,
}

impl Dropped {
    pub fn label(self) -> &'static str {
        match self {
            Dropped::Malformed => "malformed",
            Dropped::Oversized => "oversized",
            Dropped::NotANotification => "not_a_notification",
            Dropped::Unauthenticated => "unauthenticated",
            Dropped::UnknownUser => "unknown_user",
            Dropped::WrongDigest => "wrong_digest",
            Dropped::Undecryptable => "undecryptable",
            Dropped::NotForThisEngine => "not_for_this_engine",
        }
    }
}

#[derive(Debug)]
pub enum Received {
    Notification(Box<Notification>),
    /// A USM report to send back at once; nothing else to do.
    Report(Vec<u8>),
    Dropped(Dropped),
}

/// Decodes one datagram. Never panics, whatever the bytes.
pub fn receive(datagram: &[u8], usm: &mut Usm) -> Received {
    if datagram.len() > MAX_DATAGRAM {
        return Received::Dropped(Dropped::Oversized);
    }
    let Some((ber::SEQUENCE, body, _)) = ber::read(datagram) else {
        return Received::Dropped(Dropped::Malformed);
    };
    let version = match ber::read(body) {
        Some((ber::INTEGER, [v], _)) => *v,
        _ => return Received::Dropped(Dropped::Malformed),
    };
    let got = match version {
        0 | 1 => community(datagram, body),
        3 => v3(datagram, body, usm),
        _ => Err(Dropped::Malformed),
    };
    got.unwrap_or_else(Received::Dropped)
}

/// v1 and v2c: the community travels in clear.
fn community(datagram: &[u8], body: &[u8]) -> Result<Received, Dropped> {
    let msg = snmp_parser::parse_snmp_v2c(datagram)
        .or_else(|_| snmp_parser::parse_snmp_v1(datagram))
        .map_err(|_| Dropped::Malformed)?
        .1;
    let version = if msg.version == 0 {
        Version::V1
    } else {
        Version::V2c
    };
    let pdu_raw = ber::children(body)
        .and_then(|c| c.get(2).copied())
        .ok_or(Dropped::Malformed)?;
    let mut n = notification(
        version,
        Principal::Community(msg.community.clone()),
        &msg.pdu,
    )?;
    if n.inform {
        let response = response_pdu(pdu_raw)?;
        n.ack = Some(ber::seq(&[
            &ber::int(ber::INTEGER, 1),
            &ber::octets(msg.community.as_bytes()),
            &response,
        ]));
    }
    Ok(Received::Notification(Box::new(n)))
}

fn notification(
    version: Version,
    principal: Principal,
    pdu: &SnmpPdu,
) -> Result<Notification, Dropped> {
    match pdu {
        SnmpPdu::TrapV1(t) => {
            let NetworkAddress::IPv4(addr) = t.agent_addr;
            let mut trap_oid = arcs(&t.enterprise).ok_or(Dropped::Malformed)?;
            if t.generic_trap.0 == 6 {
                trap_oid.extend([0, t.specific_trap as u64]);
            } else {
                // The generic traps' v2 names: snmpTraps.(generic + 1).
                trap_oid = vec![1, 3, 6, 1, 6, 3, 1, 1, 5, t.generic_trap.0 as u64 + 1];
            }
            Ok(Notification {
                version,
                principal,
                inform: false,
                trap_oid,
                agent_addr: Some(addr),
                varbinds: t.var.iter().filter_map(varbind).collect(),
                ack: None,
            })
        }
        SnmpPdu::Generic(g) if matches!(g.pdu_type, PduType::TrapV2 | PduType::InformRequest) => {
            let varbinds: Vec<(Vec<u64>, Value)> = g.var.iter().filter_map(varbind).collect();
            let trap_oid = varbinds
                .iter()
                .find_map(|(o, v)| match v {
                    Value::Oid(t) if o[..] == SNMP_TRAP_OID => Some(t.clone()),
                    _ => None,
                })
                .ok_or(Dropped::Malformed)?;
            Ok(Notification {
                version,
                principal,
                inform: g.pdu_type == PduType::InformRequest,
                trap_oid,
                agent_addr: None,
                varbinds,
                ack: None,
            })
        }
        _ => Err(Dropped::NotANotification),
    }
}

fn arcs(oid: &snmp_parser::Oid) -> Option<Vec<u64>> {
    Some(oid.iter()?.collect())
}

pub(crate) fn varbind(v: &SnmpVariable) -> Option<(Vec<u64>, Value)> {
    let value = match &v.val {
        VarBindValue::Value(s) => match s {
            ObjectSyntax::Number(n) => Value::Integer(*n as i64),
            ObjectSyntax::String(s) | ObjectSyntax::Opaque(s) => Value::Octets(s.to_vec()),
            ObjectSyntax::Object(o) => Value::Oid(arcs(o)?),
            ObjectSyntax::IpAddress(NetworkAddress::IPv4(a)) => Value::Ip(*a),
            ObjectSyntax::Counter32(n)
            | ObjectSyntax::Gauge32(n)
            | ObjectSyntax::TimeTicks(n)
            | ObjectSyntax::UInteger32(n) => Value::Unsigned(*n as u64),
            ObjectSyntax::Counter64(n) => Value::Unsigned(*n),
            _ => Value::Other,
        },
        _ => Value::Other,
    };
    Some((arcs(&v.oid)?, value))
}

/// The Response a received INFORM is owed: its request-id and varbinds
/// echoed verbatim (RFC 3416 §4.2.7).
fn response_pdu((_, pdu): (u8, &[u8])) -> Result<Vec<u8>, Dropped> {
    match ber::children(pdu).as_deref() {
        Some([(ber::INTEGER, req), _, _, (ber::SEQUENCE, vbs)]) => Ok(ber::tlv(
            ber::RESPONSE,
            &[
                ber::tlv(ber::INTEGER, req),
                ber::int(ber::INTEGER, 0),
                ber::int(ber::INTEGER, 0),
                ber::tlv(ber::SEQUENCE, vbs),
            ]
            .concat(),
        )),
        _ => Err(Dropped::Malformed),
    }
}

/// What a v3 reply is built from.
struct Reply<'a> {
    msg_id: u32,
    user: &'a str,
    keys: Option<&'a Keys>,
    encrypt: bool,
    context: Context<'a>,
    pdu: Vec<u8>,
}

fn v3(datagram: &[u8], body: &[u8], usm: &mut Usm) -> Result<Received, Dropped> {
    let msg = snmp_parser::parse_snmp_v3(datagram)
        .map_err(|_| Dropped::Malformed)?
        .1;
    let SecurityParameters::USM(sp) = &msg.security_params else {
        return Err(Dropped::Malformed);
    };
    let hdr = msg.header_data;
    let scoped_raw = ber::children(body)
        .and_then(|c| c.get(3).copied())
        .ok_or(Dropped::Malformed)?;
    if !hdr.is_authenticated() {
        // The one unauthenticated exchange: a sender learning this
        // engine's ID before it sends INFORMs.
        if hdr.is_reportable() && *sp.msg_authoritative_engine_id != usm.engine_id[..] {
            let (ctx, pdu) = scoped_pdu(scoped_raw.1).ok_or(Dropped::Malformed)?;
            let req = request_id(pdu).ok_or(Dropped::Malformed)?;
            return Ok(Received::Report(report(
                usm,
                &hdr,
                sp,
                None,
                ctx,
                req,
                &UNKNOWN_ENGINE_IDS,
            )));
        }
        return Err(Dropped::Unauthenticated);
    }
    let keys = usm
        .keys(&sp.msg_user_name, sp.msg_authoritative_engine_id)
        .ok_or(Dropped::UnknownUser)?;
    check_digest(datagram, sp.msg_authentication_parameters, &keys)?;
    let plain;
    let scoped: &[u8] = match scoped_raw {
        (ber::SEQUENCE, s) if !hdr.is_encrypted() => s,
        (ber::OCTET_STRING, sealed) if hdr.is_encrypted() => {
            plain = keys
                .decrypt(
                    sp.msg_authoritative_engine_boots,
                    sp.msg_authoritative_engine_time,
                    sp.msg_privacy_parameters,
                    sealed,
                )
                .ok_or(Dropped::Undecryptable)?;
            match ber::read(&plain) {
                Some((ber::SEQUENCE, s, _)) => s,
                _ => return Err(Dropped::Undecryptable),
            }
        }
        _ => return Err(Dropped::Malformed),
    };
    let (ctx, pdu_raw) = scoped_pdu(scoped).ok_or(Dropped::Malformed)?;
    // snmp-parser reads a PDU inside a v2c message; give it one.
    let wrapped = ber::seq(&[
        &ber::int(ber::INTEGER, 1),
        &ber::octets(b""),
        &ber::tlv(pdu_raw.0, pdu_raw.1),
    ]);
    let parsed = snmp_parser::parse_snmp_v2c(&wrapped)
        .map_err(|_| Dropped::Malformed)?
        .1;
    let principal = Principal::User(sp.msg_user_name.clone());
    let mut n = notification(Version::V3, principal, &parsed.pdu)?;
    if n.inform {
        // This engine is authoritative for INFORMs sent to it.
        let req = request_id(pdu_raw).ok_or(Dropped::Malformed)?;
        if *sp.msg_authoritative_engine_id != usm.engine_id[..] {
            return Err(Dropped::NotForThisEngine);
        }
        let skew = sp.msg_authoritative_engine_time as i64 - usm.time() as i64;
        if sp.msg_authoritative_engine_boots != usm.boots || skew.abs() > TIME_WINDOW {
            let r = report(usm, &hdr, sp, Some(&keys), ctx, req, &NOT_IN_TIME_WINDOWS);
            return Ok(Received::Report(r));
        }
        n.ack = Some(seal(
            usm,
            Reply {
                msg_id: hdr.msg_id,
                user: &sp.msg_user_name,
                keys: Some(&keys),
                encrypt: hdr.is_encrypted(),
                context: ctx,
                pdu: response_pdu(pdu_raw)?,
            },
        ));
    }
    Ok(Received::Notification(Box::new(n)))
}

/// Checks msgAuthenticationParameters: the digest of the whole message
/// with those octets zeroed, compared in constant time.
fn check_digest(datagram: &[u8], got: &[u8], keys: &Keys) -> Result<(), Dropped> {
    if got.len() != keys.protocol.digest_len() {
        return Err(Dropped::WrongDigest);
    }
    // The parser's slice points into the datagram: that is where to zero.
    let at = (got.as_ptr() as usize).wrapping_sub(datagram.as_ptr() as usize);
    if at
        .checked_add(got.len())
        .is_none_or(|end| end > datagram.len())
    {
        return Err(Dropped::Malformed);
    }
    let mut zeroed = datagram.to_vec();
    zeroed[at..at + got.len()].fill(0);
    let want = keys.digest(&zeroed);
    let diff = want.iter().zip(got).fold(0u8, |acc, (a, b)| acc | (a ^ b));
    if diff == 0 {
        Ok(())
    } else {
        Err(Dropped::WrongDigest)
    }
}

/// A scoped PDU's context (engine ID and name) and PDU.
fn scoped_pdu(scoped: &[u8]) -> Option<(Context<'_>, (u8, &[u8]))> {
    match ber::children(scoped).as_deref() {
        Some([(ber::OCTET_STRING, engine), (ber::OCTET_STRING, name), pdu]) => {
            Some((Context { engine, name }, *pdu))
        }
        _ => None,
    }
}

/// contextEngineID and contextName: a reply echoes the request's (net-snmp
/// matches them before it takes a Response as the answer).
#[derive(Clone, Copy)]
struct Context<'a> {
    engine: &'a [u8],
    name: &'a [u8],
}

fn request_id((_, pdu): (u8, &[u8])) -> Option<Vec<u8>> {
    match ber::read(pdu)? {
        (ber::INTEGER, req, _) => Some(req.to_vec()),
        _ => None,
    }
}

/// A USM report (RFC 3414 §3.2): unauthenticated for an unknown engine,
/// authenticated (never encrypted) once the user is known.
fn report(
    usm: &mut Usm,
    hdr: &snmp_parser::HeaderData,
    sp: &UsmSecurityParameters,
    keys: Option<&Keys>,
    context: Context,
    req: Vec<u8>,
    counter: &[u64],
) -> Vec<u8> {
    let n = usm.count_report();
    let pdu = ber::tlv(
        ber::REPORT,
        &[
            ber::tlv(ber::INTEGER, &req),
            ber::int(ber::INTEGER, 0),
            ber::int(ber::INTEGER, 0),
            ber::seq(&[&ber::seq(&[
                &ber::oid(counter),
                &ber::int(ber::COUNTER32, n),
            ])]),
        ]
        .concat(),
    );
    seal(
        usm,
        Reply {
            msg_id: hdr.msg_id,
            user: &sp.msg_user_name,
            keys,
            encrypt: false,
            context,
            pdu,
        },
    )
}

/// Encodes a v3 message from this engine, digest and encryption included.
fn seal(usm: &mut Usm, r: Reply) -> Vec<u8> {
    let scoped = ber::seq(&[
        &ber::octets(r.context.engine),
        &ber::octets(r.context.name),
        &r.pdu,
    ]);
    let (boots, time) = (usm.boots, usm.time());
    let sealed = match (r.keys, r.encrypt) {
        (Some(k), true) => {
            let salt = usm.next_salt();
            k.encrypt(boots, time, salt, &scoped).map(|c| (c, salt))
        }
        _ => None,
    };
    let flags = match (r.keys.is_some(), sealed.is_some()) {
        (true, true) => 3,
        (true, false) => 1,
        _ => 0,
    };
    let build = |auth: &[u8]| {
        let usm_params = ber::seq(&[
            &ber::octets(&usm.engine_id),
            &ber::int(ber::INTEGER, boots as i64),
            &ber::int(ber::INTEGER, time as i64),
            &ber::octets(r.user.as_bytes()),
            &ber::octets(auth),
            &ber::octets(sealed.as_ref().map(|(_, s)| &s[..]).unwrap_or(&[])),
        ]);
        let data = match &sealed {
            Some((c, _)) => ber::octets(c),
            None => scoped.clone(),
        };
        ber::seq(&[
            &ber::int(ber::INTEGER, 3),
            &ber::seq(&[
                &ber::int(ber::INTEGER, r.msg_id as i64),
                &ber::int(ber::INTEGER, MAX_DATAGRAM as i64),
                &ber::octets(&[flags]),
                &ber::int(ber::INTEGER, 3),
            ]),
            &ber::octets(&usm_params),
            &data,
        ])
    };
    match r.keys {
        Some(k) => {
            let zero = vec![0u8; k.protocol.digest_len()];
            let digest = k.digest(&build(&zero));
            build(&digest)
        }
        None => build(&[]),
    }
}
