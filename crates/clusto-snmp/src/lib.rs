//! `clusto snmptrapd`: the original clusto's SNMP discovery. A switch's
//! MAC notification (CISCO-MAC-NOTIFICATION-MIB) names a port and the MAC
//! learnt on it; the switch's rack layout says which server belongs there.
//!
//! The protocol modules ([`ber`], [`usm`], [`message`], [`cmn`]) live in
//! `clusto-snmp-wire`, which needs no database; [`discover`] is the rule, pure over an inventory view; the
//! daemon keeps one view per switch current from the store's change stream.

pub use clusto_snmp_wire::{ber, cmn, message, usm};

pub mod discover;
pub mod server;
