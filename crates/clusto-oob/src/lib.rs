//! Out-of-band control with no database: IPMI to BMCs ([`ipmi`]), SNMP
//! sets to PDU outlets ([`pdu`]), console commands ([`console`]), and the
//! power path of a server read from an inventory view ([`path`]).

pub mod ipmi;
pub mod path;
pub mod power;
