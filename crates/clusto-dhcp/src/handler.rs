//! The request path: a short pipeline of pure steps, each of which either
//! continues, answers or drops. Nothing here does I/O.

use std::net::Ipv4Addr;

use dhcproto::v4::{
    DhcpOption, Flags, HType, Message, MessageType, Opcode, OptionCode, UnknownOption,
};

use crate::index::{DhcpIndex, Entry, Host, Lease, Skip};

/// What the responder knows about itself and where a request came in.
#[derive(Clone, Debug)]
pub struct Context {
    pub server_id: Ipv4Addr,
    /// Record the MACs of devices that announce their `bootstrap.mac`.
    pub learn: bool,
}

/// Where a reply goes (RFC 2131 §4.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Destination {
    /// To the relay agent, port 67.
    Relay(Ipv4Addr),
    /// To a client that has an address (renewing), port 68.
    Unicast(Ipv4Addr),
    /// 255.255.255.255:68.
    Broadcast,
}

/// Why a request got no answer; logged (rate-limited) and counted.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Ignored {
    NotRequest,
    NotEthernet,
    NoMessageType,
    UnsupportedType(String),
    UnknownMac(String),
    Skipped(Skip),
    /// The device holds several addresses, none in the asking subnet.
    NoAddressInSubnet {
        device: String,
        subnet_of: Ipv4Addr,
    },
    /// A REQUEST that chose another server.
    OtherServer(Ipv4Addr),
    /// RELEASE: logged, nothing to do (no lease state).
    Released {
        mac: String,
        address: Ipv4Addr,
    },
    /// DECLINE: the client found the address in use; worth a warning.
    Declined {
        mac: String,
        device: Option<String>,
        address: Option<Ipv4Addr>,
    },
}

impl Ignored {
    /// A short label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Ignored::NotRequest => "not_request",
            Ignored::NotEthernet => "not_ethernet",
            Ignored::NoMessageType => "no_message_type",
            Ignored::UnsupportedType(_) => "unsupported_type",
            Ignored::UnknownMac(_) => "unknown_mac",
            Ignored::Skipped(Skip::Disabled(_)) => "disabled",
            Ignored::Skipped(Skip::NoAddress(_)) => "no_address",
            Ignored::Skipped(Skip::Ambiguous(_)) => "ambiguous_mac",
            Ignored::OtherServer(_) => "other_server",
            Ignored::NoAddressInSubnet { .. } => "no_address_in_subnet",
            Ignored::Released { .. } => "release",
            Ignored::Declined { .. } => "decline",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Reply(Box<Message>, Destination),
    Ignore(Ignored),
    /// A device's `bootstrap.mac` asked: record `mac` on its NIC 1, as
    /// `ipmi-mac` when the vendor class says the client is a BMC.
    Learn {
        device: String,
        mac: String,
        bmc: bool,
    },
}

/// Vendor classes (option 60) that mark a BMC.
fn is_bmc(req: &Message) -> bool {
    match req.opts().get(OptionCode::ClassIdentifier) {
        Some(DhcpOption::ClassIdentifier(v)) => {
            let t = String::from_utf8_lossy(v).to_ascii_lowercase();
            ["ipmi", "bmc", "idrac", "ilo"]
                .iter()
                .any(|k| t.contains(k))
        }
        _ => false,
    }
}

fn mac_text(m: &[u8; 6]) -> String {
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        m[0], m[1], m[2], m[3], m[4], m[5]
    )
}

fn mac_of(req: &Message) -> Result<[u8; 6], Ignored> {
    if req.opcode() != Opcode::BootRequest {
        return Err(Ignored::NotRequest);
    }
    // Check hlen before touching chaddr: dhcproto slices chaddr by hlen
    // and a forged hlen above 16 would panic inside it.
    if req.htype() != HType::Eth || req.hlen() != 6 {
        return Err(Ignored::NotEthernet);
    }
    let mut m = [0u8; 6];
    m.copy_from_slice(&req.chaddr()[..6]);
    Ok(m)
}

/// The first step, on the raw datagram: a request from an Ethernet client
/// whose MAC the index does not know is dropped before it is decoded, so
/// a flood of strangers costs a header check and a lookup, not a parse.
/// Anything else (including what will turn out malformed) goes on to
/// [`crate::decode`] and [`handle`].
pub fn screen(idx: &DhcpIndex, datagram: &[u8]) -> Option<Ignored> {
    const MAGIC: [u8; 4] = [0x63, 0x82, 0x53, 0x63];
    let header = datagram.get(..240)?;
    // op BOOTREQUEST, htype Ethernet, hlen 6, the options' magic cookie
    if header[..3] != [1, 1, 6] || header[236..240] != MAGIC {
        return None;
    }
    let mac: [u8; 6] = header[28..34].try_into().ok()?;
    if idx.by_mac.contains_key(&mac) || idx.bootstrap.contains_key(&mac) {
        return None;
    }
    Some(Ignored::UnknownMac(mac_text(&mac)))
}

/// Answers one request from the index.
pub fn handle(idx: &DhcpIndex, ctx: &Context, req: &Message) -> Outcome {
    let mac = match mac_of(req) {
        Ok(m) => m,
        Err(e) => return Outcome::Ignore(e),
    };
    let Some(mtype) = req.opts().msg_type() else {
        return Outcome::Ignore(Ignored::NoMessageType);
    };
    let entry = idx.by_mac.get(&mac);
    let host = match entry {
        Some(Entry::Serve(h)) => Some(h.as_ref()),
        _ => None,
    };
    match mtype {
        MessageType::Release => {
            return Outcome::Ignore(Ignored::Released {
                mac: mac_text(&mac),
                address: req.ciaddr(),
            });
        }
        MessageType::Decline => {
            let address = match req.opts().get(OptionCode::RequestedIpAddress) {
                Some(DhcpOption::RequestedIpAddress(a)) => Some(*a),
                _ => None,
            };
            return Outcome::Ignore(Ignored::Declined {
                mac: mac_text(&mac),
                device: host.map(|h| h.device.clone()),
                address,
            });
        }
        MessageType::Discover | MessageType::Request | MessageType::Inform => {}
        other => return Outcome::Ignore(Ignored::UnsupportedType(format!("{other:?}"))),
    }
    let host = match entry {
        Some(Entry::Serve(h)) => h.as_ref(),
        Some(Entry::Skip(s)) => return Outcome::Ignore(Ignored::Skipped(s.clone())),
        None => {
            if ctx.learn
                && mtype == MessageType::Discover
                && let Some(device) = idx.bootstrap.get(&mac)
            {
                return Outcome::Learn {
                    device: device.clone(),
                    mac: mac_text(&mac),
                    bmc: is_bmc(req),
                };
            }
            return Outcome::Ignore(Ignored::UnknownMac(mac_text(&mac)));
        }
    };
    // The index already chose the host's address (the one bound to the
    // NIC, else its only one); the relay's subnet does not veto it, since
    // relays often sit on a transit network.
    let giaddr = req.giaddr();
    // One bound address is the answer; among several, the one in the subnet
    // the request came from (the relay's, else this server's own).
    let near = if giaddr.is_unspecified() {
        ctx.server_id
    } else {
        giaddr
    };
    let lease = match host.leases.as_slice() {
        [only] => only,
        many => match many.iter().find(|l| l.contains(near)) {
            Some(l) => l,
            None => {
                return Outcome::Ignore(Ignored::NoAddressInSubnet {
                    device: host.device.clone(),
                    subnet_of: near,
                });
            }
        },
    };
    let reply_type = match mtype {
        MessageType::Discover => MessageType::Offer,
        MessageType::Inform => MessageType::Ack,
        _ => {
            if let Some(DhcpOption::ServerIdentifier(sid)) =
                req.opts().get(OptionCode::ServerIdentifier)
                && *sid != ctx.server_id
            {
                return Outcome::Ignore(Ignored::OtherServer(*sid));
            }
            let wanted = match req.opts().get(OptionCode::RequestedIpAddress) {
                Some(DhcpOption::RequestedIpAddress(a)) => *a,
                _ => req.ciaddr(),
            };
            if wanted == lease.address {
                MessageType::Ack
            } else {
                MessageType::Nak
            }
        }
    };
    let reply = build(
        req,
        ctx,
        host,
        lease,
        reply_type,
        mtype == MessageType::Inform,
    );
    let dest = if !giaddr.is_unspecified() {
        Destination::Relay(giaddr)
    } else if reply_type == MessageType::Nak {
        Destination::Broadcast
    } else if !req.ciaddr().is_unspecified() {
        Destination::Unicast(req.ciaddr())
    } else {
        // Without raw sockets we cannot unicast to an unconfigured client;
        // broadcasting is what RFC 2131 allows in that case.
        Destination::Broadcast
    };
    Outcome::Reply(Box::new(reply), dest)
}

fn build(
    req: &Message,
    ctx: &Context,
    h: &Host,
    lease: &Lease,
    t: MessageType,
    inform: bool,
) -> Message {
    let mut m = Message::default();
    m.set_opcode(Opcode::BootReply)
        .set_htype(req.htype())
        .set_xid(req.xid())
        .set_flags(if req.flags().broadcast() {
            Flags::default().set_broadcast()
        } else {
            Flags::default()
        })
        .set_chaddr(req.chaddr())
        .set_giaddr(req.giaddr())
        .set_ciaddr(req.ciaddr());
    let o = m.opts_mut();
    o.insert(DhcpOption::MessageType(t));
    o.insert(DhcpOption::ServerIdentifier(ctx.server_id));
    if t == MessageType::Nak {
        return m;
    }
    if !inform {
        m.set_yiaddr(lease.address);
    }
    if let Some(ns) = h.settings.next_server {
        m.set_siaddr(ns);
    }
    if let Some(f) = &h.settings.boot_file {
        m.set_fname_str(f);
    }
    let requested: Option<Vec<OptionCode>> = match req.opts().get(OptionCode::ParameterRequestList)
    {
        Some(DhcpOption::ParameterRequestList(v)) => Some(v.clone()),
        _ => None,
    };
    let wants = |c: OptionCode| requested.as_ref().is_none_or(|v| v.contains(&c));
    let o = m.opts_mut();
    if !inform {
        o.insert(DhcpOption::AddressLeaseTime(h.lease));
        o.insert(DhcpOption::Renewal(h.lease / 2));
        o.insert(DhcpOption::Rebinding(h.lease / 8 * 7));
    }
    o.insert(DhcpOption::SubnetMask(lease.mask));
    if wants(OptionCode::BroadcastAddr) {
        o.insert(DhcpOption::BroadcastAddr(lease.broadcast));
    }
    if let Some(r) = lease.router
        && wants(OptionCode::Router)
    {
        o.insert(DhcpOption::Router(vec![r]));
    }
    if !h.settings.dns.is_empty() && wants(OptionCode::DomainNameServer) {
        o.insert(DhcpOption::DomainNameServer(h.settings.dns.clone()));
    }
    if let Some(d) = &h.settings.domain
        && wants(OptionCode::DomainName)
    {
        o.insert(DhcpOption::DomainName(d.clone()));
    }
    if wants(OptionCode::Hostname) {
        o.insert(DhcpOption::Hostname(h.hostname.clone()));
    }
    if !h.settings.ntp.is_empty() && wants(OptionCode::NtpServers) {
        o.insert(DhcpOption::NtpServers(h.settings.ntp.clone()));
    }
    if let Some(ns) = h.settings.next_server
        && wants(OptionCode::TFTPServerName)
    {
        o.insert(DhcpOption::TFTPServerName(ns.to_string().into_bytes()));
    }
    if let Some(f) = &h.settings.boot_file
        && wants(OptionCode::BootfileName)
    {
        o.insert(DhcpOption::BootfileName(f.clone().into_bytes()));
    }
    for (code, data) in &h.settings.extra {
        let c = OptionCode::from(*code);
        // PXELINUX clients do not list 208-211; always send them.
        if wants(c) || (208..=211).contains(code) {
            o.insert(DhcpOption::Unknown(UnknownOption::new(c, data.clone())));
        }
    }
    m
}

/// Reorders the encoded options of a reply to follow the client's
/// parameter request list (option 55): message type and server identifier
/// first, then the requested options in the client's order, then the rest.
/// dhcproto encodes options sorted by code; some clients (old PXE ROMs)
/// read only the first options they asked for.
/// The reply as it goes on the wire: encoded, its options in the order the
/// client asked for them.
pub fn encode_reply(
    reply: &Message,
    req: &Message,
    out: &mut Vec<u8>,
) -> Result<(), dhcproto::error::EncodeError> {
    use dhcproto::Encodable;
    out.clear();
    reply.encode(&mut dhcproto::Encoder::new(out))?;
    order_options(out, &requested_codes(req));
    Ok(())
}

fn order_options(encoded: &mut Vec<u8>, requested: &[u8]) {
    const START: usize = 240; // fixed header + magic cookie
    if encoded.len() <= START {
        return;
    }
    let mut opts: Vec<(u8, &[u8])> = Vec::new();
    let mut i = START;
    while i < encoded.len() {
        match encoded[i] {
            0 => i += 1,
            255 => break,
            code => {
                let Some(&len) = encoded.get(i + 1) else {
                    return;
                };
                let end = i + 2 + len as usize;
                if end > encoded.len() {
                    return;
                }
                opts.push((code, &encoded[i..end]));
                i = end;
            }
        }
    }
    let rank = |code: u8| match code {
        53 => 0,
        54 => 1,
        c => {
            2 + requested
                .iter()
                .position(|r| *r == c)
                .unwrap_or(usize::MAX - 2)
        }
    };
    let mut sorted = opts.clone();
    sorted.sort_by_key(|(c, _)| rank(*c));
    let mut out = encoded[..START].to_vec();
    for (_, tlv) in sorted {
        out.extend_from_slice(tlv);
    }
    out.push(255);
    *encoded = out;
}

/// The parameter request list of a request, as codes.
fn requested_codes(req: &Message) -> Vec<u8> {
    match req.opts().get(OptionCode::ParameterRequestList) {
        Some(DhcpOption::ParameterRequestList(v)) => v.iter().map(|c| u8::from(*c)).collect(),
        _ => Vec::new(),
    }
}
