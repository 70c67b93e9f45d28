//! CISCO-MAC-NOTIFICATION-MIB: what a switch's MAC notification says.

use crate::message::{Notification, Value};

/// cmnMacChangedNotification (v2 name; v1 traps map onto it, RFC 3584).
pub const MAC_CHANGED: &[u64] = &[1, 3, 6, 1, 4, 1, 9, 9, 215, 2, 0, 1];
/// cmnHistMacChangedMsg, without its history index.
const HIST_MAC_CHANGED_MSG: &[u64] = &[1, 3, 6, 1, 4, 1, 9, 9, 215, 1, 1, 8, 1, 2];
const RECORD: usize = 11;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operation {
    Learnt,
    Removed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MacRecord {
    pub operation: Operation,
    pub vlan: u16,
    pub mac: [u8; 6],
    /// dot1dBasePort: the switch port, `nic-eth:N`.
    pub port: u16,
}

impl MacRecord {
    pub fn mac_text(&self) -> String {
        let m = self.mac;
        format!(
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

/// The records a notification carries, or None when it is not a MAC
/// notification at all. Records with an unknown operation are skipped;
/// `malformed` counts octet strings that are not whole records.
pub fn records(n: &Notification) -> Option<Decoded> {
    if n.trap_oid[..] != MAC_CHANGED[..] {
        return None;
    }
    let mut out = Decoded::default();
    for (oid, v) in &n.varbinds {
        let is_msg =
            oid.len() == HIST_MAC_CHANGED_MSG.len() + 1 && oid.starts_with(HIST_MAC_CHANGED_MSG);
        match v {
            Value::Octets(bytes) if is_msg => decode(bytes, &mut out),
            _ if is_msg => out.malformed += 1,
            _ => {}
        }
    }
    Some(out)
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Decoded {
    pub records: Vec<MacRecord>,
    pub malformed: usize,
}

/// Records packed back to back; operation 0 ends the list early.
fn decode(bytes: &[u8], out: &mut Decoded) {
    let chunks = bytes.chunks(RECORD);
    for c in chunks {
        if c[0] == 0 {
            return;
        }
        if c.len() < RECORD {
            out.malformed += 1;
            return;
        }
        let operation = match c[0] {
            1 => Operation::Learnt,
            2 => Operation::Removed,
            _ => continue,
        };
        let mut mac = [0u8; 6];
        mac.copy_from_slice(&c[3..9]);
        out.records.push(MacRecord {
            operation,
            vlan: u16::from_be_bytes([c[1], c[2]]),
            mac,
            port: u16::from_be_bytes([c[9], c[10]]),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{Principal, Received, receive};
    use crate::usm::{Usm, engine_id_for};

    fn fixture() -> Vec<u8> {
        let hex = include_str!("../../clusto-snmp/tests/data/cmn-trap-v2c.hex");
        let hex: String = hex.split_whitespace().collect();
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn the_captured_trap_decodes_to_its_record() {
        let mut usm = Usm::new(engine_id_for("t"), vec![]);
        let Received::Notification(n) = receive(&fixture(), &mut usm) else {
            panic!("not a notification")
        };
        assert_eq!(n.principal, Principal::Community("public".into()));
        assert!(!n.inform && n.ack.is_none());
        let d = records(&n).unwrap();
        assert_eq!(
            d.records,
            [MacRecord {
                operation: Operation::Learnt,
                vlan: 100,
                mac: [2, 0x77, 0, 0, 0, 1],
                port: 17
            }]
        );
        assert_eq!(d.records[0].mac_text(), "02:77:00:00:00:01");
    }

    #[test]
    fn packed_records_end_marker_and_short_tails() {
        let mut d = Decoded::default();
        let two = hex_bytes("01000A0277000000010005020014AABBCC001122000700");
        decode(&two, &mut d);
        assert_eq!(d.records.len(), 2);
        assert_eq!(d.records[1].operation, Operation::Removed);
        assert_eq!((d.records[1].vlan, d.records[1].port), (20, 7));
        let mut d = Decoded::default();
        decode(&hex_bytes("01000A027700000001000500"), &mut d);
        assert_eq!((d.records.len(), d.malformed), (1, 0), "0 ends the list");
        let mut d = Decoded::default();
        decode(&hex_bytes("01000A0277000000010005010203"), &mut d);
        assert_eq!((d.records.len(), d.malformed), (1, 1));
        let mut d = Decoded::default();
        decode(&hex_bytes("07000A02770000000100050100"), &mut d);
        assert_eq!(d.records.len(), 0, "unknown operations are skipped");
    }

    #[test]
    fn records_come_from_every_history_varbind_and_only_those() {
        use crate::message::{Notification, Value, Version};
        let msg = |n: u64| {
            let mut oid = HIST_MAC_CHANGED_MSG.to_vec();
            oid.push(n);
            oid
        };
        let n = Notification {
            version: Version::V2c,
            principal: Principal::Community("c".into()),
            inform: false,
            trap_oid: MAC_CHANGED.to_vec(),
            agent_addr: None,
            varbinds: vec![
                (
                    msg(1),
                    Value::Octets(hex_bytes("01000A02770000000100050200140277000000020007")),
                ),
                (vec![1, 3, 6, 1, 2, 1, 1, 3, 0], Value::Unsigned(4242)),
                (msg(2), Value::Octets(hex_bytes("01001E0277000000030009"))),
                (msg(3), Value::Integer(7)),
            ],
            ack: None,
        };
        let d = records(&n).unwrap();
        let ports: Vec<u16> = d.records.iter().map(|r| r.port).collect();
        assert_eq!(ports, [5, 7, 9]);
        assert_eq!(
            d.malformed, 1,
            "a history varbind that is not an octet string"
        );
        let other = Notification {
            trap_oid: vec![1, 3, 6, 1, 6, 3, 1, 1, 5, 4],
            ..n
        };
        assert_eq!(records(&other), None, "linkUp is not a MAC notification");
    }

    fn hex_bytes(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }
}
