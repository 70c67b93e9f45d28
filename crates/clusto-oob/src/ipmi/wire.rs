//! IPMI's framing shared by both session kinds: the RMCP header and the
//! LAN message (addresses, network function, sequence and checksums).

/// RMCP: version 1.0, reserved, no ACK wanted, class IPMI.
pub const RMCP_HEADER: [u8; 4] = [0x06, 0x00, 0xff, 0x07];
/// The BMC's responder address and this console's software id.
const BMC_ADDR: u8 = 0x20;
const CONSOLE_SWID: u8 = 0x81;

pub const NETFN_CHASSIS: u8 = 0x00;
pub const NETFN_APP: u8 = 0x06;

/// One request: network function, command and data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request<'a> {
    pub netfn: u8,
    pub cmd: u8,
    pub data: &'a [u8],
}

/// Two's-complement checksum: the bytes plus it sum to zero.
fn checksum(bytes: &[u8]) -> u8 {
    bytes
        .iter()
        .fold(0u8, |a, b| a.wrapping_add(*b))
        .wrapping_neg()
}

/// The LAN message for `req` with request sequence `seq` (6 bits).
pub fn message(req: &Request, seq: u8) -> Vec<u8> {
    let head = [BMC_ADDR, req.netfn << 2];
    let mut body = vec![CONSOLE_SWID, (seq & 0x3f) << 2, req.cmd];
    body.extend_from_slice(req.data);
    let mut out = Vec::with_capacity(head.len() + body.len() + 2);
    out.extend_from_slice(&head);
    out.push(checksum(&head));
    out.extend_from_slice(&body);
    out.push(checksum(&body));
    out
}

/// A response's completion code and data, if `msg` is the well-formed
/// answer to `req` sent with `seq`; `None` for anything else.
pub fn response<'m>(msg: &'m [u8], req: &Request, seq: u8) -> Option<(u8, &'m [u8])> {
    let [
        rq_addr,
        netfn_lun,
        chk1,
        rs_addr,
        seq_lun,
        cmd,
        code,
        rest @ ..,
    ] = msg
    else {
        return None;
    };
    let (data, [_chk2]) = rest.split_at_checked(rest.len().checked_sub(1)?)? else {
        return None;
    };
    let ok = *rq_addr == CONSOLE_SWID
        && netfn_lun >> 2 == req.netfn | 1
        && checksum(&msg[..2]) == *chk1
        && *rs_addr == BMC_ADDR
        && seq_lun >> 2 == seq & 0x3f
        && *cmd == req.cmd
        && checksum(&msg[3..]) == 0;
    ok.then_some((*code, data))
}

/// What a completion code means, for messages.
pub fn completion_text(code: u8) -> &'static str {
    match code {
        0x00 => "ok",
        0x81 => "invalid user name",
        0x82 => "null user name not enabled",
        0x86 => "requested privilege level exceeds the user's or channel's limit",
        0xc0 => "node busy",
        0xc1 => "command not supported",
        0xc3 => "timed out",
        0xc9 => "parameter out of range",
        0xcc => "invalid data field",
        0xd4 => "insufficient privilege",
        0xd5 => "command not supported in the present state",
        0xff => "unspecified error",
        _ => "error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_and_its_response_frame_as_the_spec_says() {
        let req = Request {
            netfn: NETFN_APP,
            cmd: 0x38,
            data: &[0x8e, 0x04],
        };
        // Get Channel Authentication Capabilities as ipmitool sends it.
        assert_eq!(
            message(&req, 0),
            [0x20, 0x18, 0xc8, 0x81, 0x00, 0x38, 0x8e, 0x04, 0xb5]
        );
        let body = [0x81, 0x00, 0x38, 0x00, 0x01, 0x97];
        let mut resp = vec![0x81, 0x1c, 0x63, 0x20];
        resp.extend_from_slice(&body[1..]);
        let sum: u8 = resp[3..].iter().fold(0u8, |a, b| a.wrapping_add(*b));
        resp.push(sum.wrapping_neg());
        assert_eq!(response(&resp, &req, 0), Some((0x00, &[0x01, 0x97][..])));
        assert_eq!(response(&resp, &req, 1), None, "another sequence");
        let mut bad = resp.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert_eq!(response(&bad, &req, 0), None, "bad checksum");
        assert_eq!(response(&resp[..5], &req, 0), None, "truncated");
    }
}
