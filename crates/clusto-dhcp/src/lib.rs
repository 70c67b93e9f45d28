//! `clusto dhcpd`: a DHCPv4 responder that answers only hosts the inventory
//! binds. No lease state: the inventory is the truth, so any number of
//! replicas can answer for the same hosts.

pub mod handler;
pub mod index;
pub mod names;
pub mod server;

pub use handler::{Context, Destination, Ignored, Outcome, handle};
pub use index::DhcpIndex;

/// Decodes a packet; None when it is not a DHCP message. dhcproto asserts on
/// some malformed options, so a panic in the decoder is caught here and
/// counts as garbage: no input may take the responder down.
pub fn decode(buf: &[u8]) -> Option<dhcproto::v4::Message> {
    use dhcproto::Decodable;
    std::panic::catch_unwind(|| {
        dhcproto::v4::Message::decode(&mut dhcproto::Decoder::new(buf)).ok()
    })
    .ok()
    .flatten()
}
