//! SNMP on the wire, with no database: what `clusto snmptrapd` receives
//! ([`message`], [`usm`], [`cmn`]) and what `clusto power` sends to a PDU
//! ([`client`]), over the one small BER writer in [`ber`].

pub mod ber;
pub mod client;
pub mod cmn;
pub mod message;
pub mod usm;
