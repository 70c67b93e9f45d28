//! The discovery rule on an in-memory inventory built from the test
//! manifest (no database, no sockets).

use clusto_core::{Inventory, PortId};
use clusto_manifest::apply::{ApplyOptions, apply};
use clusto_manifest::parse::{Source, parse_source};
use clusto_snmp::cmn::{MacRecord, Operation};
use clusto_snmp::discover::{Outcome, Refused, admit, discover, slot_to_fill, switch_for};
use clusto_snmp::message::Principal;

fn world() -> Inventory {
    let src = Source {
        file: "discovery.yaml".into(),
        text: include_str!("data/discovery.yaml").into(),
    };
    let (objects, errors) = parse_source(&src);
    assert!(errors.is_empty(), "{errors:?}");
    let mut inv = Inventory::new();
    let opts = ApplyOptions {
        apply_set: "test".into(),
        ..Default::default()
    };
    let errors = apply(&mut inv, &objects, &opts);
    assert!(errors.is_empty(), "{errors:?}");
    inv.take_changes();
    inv
}

fn learnt(port: u16, mac: u8) -> MacRecord {
    MacRecord {
        operation: Operation::Learnt,
        vlan: 10,
        mac: [2, 0x77, 0, 0, 0, mac],
        port,
    }
}

fn nic(n: u32) -> PortId {
    format!("nic-eth:{n}").parse().unwrap()
}

#[test]
fn the_switch_is_whoever_holds_the_source_address() {
    let inv = world();
    let sw = switch_for(&inv, "10.0.0.2".parse().unwrap()).unwrap();
    assert_eq!(inv.name_of(sw), "r1-sw1");
    assert_eq!(switch_for(&inv, "10.0.0.99".parse().unwrap()), None);
}

#[test]
fn community_and_discovery_come_from_merged_attributes() {
    let inv = world();
    let r1 = inv.id_of("r1-sw1").unwrap();
    let r2 = inv.id_of("r2-sw1").unwrap();
    let community = |c: &str| Principal::Community(c.into());
    assert_eq!(admit(&inv, r1, &community("s3cret")), Ok(()));
    assert_eq!(
        admit(&inv, r1, &community("public")),
        Err(Refused::CommunityMismatch)
    );
    // A v3 user is authenticated by its keys, not by a community.
    assert_eq!(admit(&inv, r1, &Principal::User("alice".into())), Ok(()));
    // r2-sw1 sets no community (any is accepted) and discovery is off.
    assert_eq!(
        admit(&inv, r2, &community("any")),
        Err(Refused::DiscoveryOff)
    );
}

#[test]
fn a_learnt_mac_on_an_empty_slot_creates_a_placed_addressed_server() {
    let mut inv = world();
    let sw = inv.id_of("r1-sw1").unwrap();
    let slot = slot_to_fill(&inv, sw, &learnt(2, 1)).unwrap();
    assert_eq!(slot.name_manager(), "servernames");
    assert_eq!(slot.address_managers().collect::<Vec<_>>(), ["prod"]);
    let out = discover(&mut inv, sw, &learnt(2, 1));
    assert_eq!(
        out,
        Outcome::Created {
            server: "s0000".into()
        }
    );
    let s = inv.id_of("s0000").unwrap();
    let (rack, ru) = inv.rack_of(s).unwrap();
    assert_eq!((inv.name_of(rack), ru.to_string().as_str()), ("r1", "2"));
    assert_eq!(inv.port_peer(s, &nic(1)), Some((sw, nic(2))));
    assert_eq!(
        inv.port_attr(s, &nic(1), "mac").unwrap(),
        "02:77:00:00:00:01"
    );
    assert_eq!(
        inv.attr_value(s, "bootstrap", Some("mac"))
            .unwrap()
            .to_text()
            .unwrap(),
        "02:77:00:00:00:01"
    );
    let addrs = inv.addresses_of(s);
    assert_eq!(addrs.len(), 1);
    assert_eq!(addrs[0].address.to_string(), "10.1.0.10");
    let pdu = inv.id_of("r1-pdu1").unwrap();
    assert_eq!(
        inv.port_peer(s, &"pwr-nema-5:1".parse().unwrap())
            .unwrap()
            .0,
        pdu
    );
    assert_eq!(inv.port_attr(sw, &nic(2), "vlan").unwrap(), "10");
    // The same record again changes nothing.
    inv.take_changes();
    let again = discover(&mut inv, sw, &learnt(2, 1));
    assert_eq!(again.label(), "known");
    assert!(inv.changes().is_empty());
}

#[test]
fn a_cabled_device_gets_missing_macs_and_keeps_a_different_one() {
    let mut inv = world();
    let sw = inv.id_of("r1-sw1").unwrap();
    let old = inv.id_of("old1").unwrap();
    // old1's recorded MAC is 02:00:00:00:00:05; something else appears.
    let out = discover(&mut inv, sw, &learnt(5, 9));
    assert_eq!(
        out,
        Outcome::Conflict {
            device: "old1".into(),
            recorded: "02:00:00:00:00:05".into()
        }
    );
    assert_eq!(
        inv.port_attr(old, &nic(1), "mac").unwrap(),
        "02:00:00:00:00:05"
    );
    let seen = inv
        .attr_value(old, "discovery", Some("observed-mac"))
        .unwrap();
    assert_eq!(seen.to_text().unwrap(), "02:77:00:00:00:09");
    // Its own MAC: bootstrap.mac was missing, so it is recorded once.
    let own = MacRecord {
        mac: [2, 0, 0, 0, 0, 5],
        ..learnt(5, 0)
    };
    assert_eq!(discover(&mut inv, sw, &own).label(), "recorded");
    assert_eq!(discover(&mut inv, sw, &own).label(), "known");
}

#[test]
fn removals_unmapped_ports_and_failures_write_nothing() {
    let mut inv = world();
    let sw = inv.id_of("r1-sw1").unwrap();
    let removed = MacRecord {
        operation: Operation::Removed,
        ..learnt(5, 5)
    };
    assert_eq!(discover(&mut inv, sw, &removed), Outcome::Removed);
    assert_eq!(discover(&mut inv, sw, &learnt(30, 1)).label(), "no_slot");
    assert_eq!(discover(&mut inv, sw, &learnt(999, 1)).label(), "no_slot");
    assert!(inv.changes().is_empty());
    // Without the NameManager the placement fails as a whole.
    let m = inv.id_of("servernames").unwrap();
    inv.delete(m).unwrap();
    inv.take_changes();
    let out = discover(&mut inv, sw, &learnt(3, 3));
    assert_eq!(out.label(), "failed", "{out:?}");
    assert!(inv.changes().is_empty(), "nothing half placed");
}
