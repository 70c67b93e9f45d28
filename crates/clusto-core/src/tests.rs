//! Rule tests on the in-memory inventory, no database involved.

use crate::*;

fn inv() -> Inventory {
    Inventory::new()
}

fn rule(e: CoreError) -> String {
    e.to_string()
}

#[test]
fn names_are_unique_case_sensitive_and_validated() {
    let mut i = inv();
    i.create(Kind::Server, "s1", None).unwrap();
    i.create(Kind::Server, "S1", None).unwrap();
    assert_eq!(
        rule(i.create(Kind::Rack, "s1", None).unwrap_err()),
        "Server s1 already exists"
    );
    assert!(matches!(
        i.create(Kind::Server, "-bad", None),
        Err(CoreError::InvalidName(_))
    ));
    assert!(matches!(
        i.create(Kind::Server, "s2", Some("basicrack")),
        Err(CoreError::DriverKindMismatch { .. })
    ));
    assert!(matches!(
        i.create(Kind::Server, "s2", Some("nosuch")),
        Err(CoreError::UnknownDriver(_))
    ));
    assert_eq!(i.get("s1").unwrap().driver, "basicserver");
}

#[test]
fn attributes_add_set_del_and_auto_numbers() {
    let mut i = inv();
    let s = i.create(Kind::Server, "s1", None).unwrap();
    i.attr_add(s, "ip", None, NumberSpec::None, Value::String("a".into()))
        .unwrap();
    i.attr_add(s, "ip", None, NumberSpec::None, Value::String("b".into()))
        .unwrap();
    assert_eq!(i.attrs_matching(s, "ip", None, None).len(), 2);
    // set with two matching rows is an error naming the entity
    let e = i
        .attr_set(s, "ip", None, NumberSpec::None, Value::Int(1))
        .unwrap_err();
    assert!(
        matches!(e, CoreError::AmbiguousAttr { count: 2, .. }),
        "{e}"
    );
    // set replaces exactly one row; equal value changes nothing
    i.attr_set(
        s,
        "system",
        Some("memory"),
        NumberSpec::None,
        Value::Int(1024),
    )
    .unwrap();
    i.take_changes();
    i.attr_set(
        s,
        "system",
        Some("memory"),
        NumberSpec::None,
        Value::Int(1024),
    )
    .unwrap();
    assert!(i.changes().is_empty());
    i.attr_set(
        s,
        "system",
        Some("memory"),
        NumberSpec::None,
        Value::Int(2048),
    )
    .unwrap();
    assert_eq!(
        i.attr_value(s, "system", Some("memory")),
        Some(&Value::Int(2048))
    );
    assert_eq!(i.attrs_matching(s, "system", Some("memory"), None).len(), 1);
    // auto numbers start at 0 and are never reused
    assert_eq!(
        i.attr_add(s, "disk", None, NumberSpec::Auto, Value::Int(1))
            .unwrap(),
        Some(0)
    );
    assert_eq!(
        i.attr_add(s, "disk", None, NumberSpec::Auto, Value::Int(2))
            .unwrap(),
        Some(1)
    );
    assert_eq!(i.attr_del(s, "disk", None, Some(1), None).unwrap(), 1);
    assert_eq!(
        i.attr_add(s, "disk", None, NumberSpec::Auto, Value::Int(3))
            .unwrap(),
        Some(2)
    );
    assert_eq!(
        i.attr_add(s, "disk", None, NumberSpec::Fixed(7), Value::Int(3))
            .unwrap(),
        Some(7)
    );
    assert_eq!(
        i.attr_add(s, "disk", None, NumberSpec::Auto, Value::Int(3))
            .unwrap(),
        Some(8)
    );
    // invalid keys
    assert!(matches!(
        i.attr_add(s, "9x", None, NumberSpec::None, Value::Int(1)),
        Err(CoreError::InvalidKey(_))
    ));
    assert!(matches!(
        i.attr_add(s, "x", Some("a.b"), NumberSpec::None, Value::Int(1)),
        Err(CoreError::InvalidKey(_))
    ));
    // hidden keys are not listed unless asked for
    i.attr_add(s, "_secret", None, NumberSpec::None, Value::Bool(true))
        .unwrap();
    assert!(i.attrs(s, false).iter().all(|a| !a.key.starts_with('_')));
    assert!(i.attrs(s, true).iter().any(|a| a.key == "_secret"));
    // del by value
    assert_eq!(
        i.attr_del(s, "ip", None, None, Some(&Value::String("a".into())))
            .unwrap(),
        1
    );
    assert_eq!(i.attr_del(s, "ip", None, None, None).unwrap(), 1);
    assert_eq!(i.attr_del(s, "ip", None, None, None).unwrap(), 0);
}

#[test]
fn references_survive_rename_and_vanish_on_delete() {
    let mut i = inv();
    let s = i.create(Kind::Server, "s1", None).unwrap();
    let o = i.create(Kind::Entity, "owner1", None).unwrap();
    i.attr_set(s, "owner", None, NumberSpec::None, Value::Ref(o))
        .unwrap();
    i.rename(o, "owner2").unwrap();
    assert_eq!(i.attr_value(s, "owner", None), Some(&Value::Ref(o)));
    assert_eq!(i.name_of(o), "owner2");
    assert!(i.get("owner1").is_err());
    i.delete(o).unwrap();
    assert_eq!(i.attr_value(s, "owner", None), None);
}

fn rack_setup() -> (Inventory, EntityId, EntityId) {
    let mut i = inv();
    let dc = i.create(Kind::Datacenter, "dc1", None).unwrap();
    let r = i.create(Kind::Rack, "r1", None).unwrap();
    i.insert(dc, r, None).unwrap();
    (i, dc, r)
}

fn ru(s: &str) -> Option<RuRange> {
    Some(s.parse().unwrap())
}

#[test]
fn racks_hold_devices_in_contiguous_free_units() {
    let (mut i, dc, r) = rack_setup();
    let s1 = i.create(Kind::Server, "s1", None).unwrap();
    let s2 = i.create(Kind::Server, "s2", None).unwrap();
    let p = i.create(Kind::Pool, "p", None).unwrap();
    i.insert(r, s1, ru("10")).unwrap();
    assert!(rule(i.insert(r, s2, ru("10")).unwrap_err()).contains("overlaps s1 at RU 10"));
    assert!(rule(i.insert(r, s2, ru("10-11")).unwrap_err()).contains("is 1U but RU 10-11 is 2U"));
    assert!(rule(i.insert(r, s2, ru("46")).unwrap_err()).contains("outside rack r1's units 1-45"));
    assert!(rule(i.insert(r, s2, None).unwrap_err()).contains("needs --ru"));
    assert!(rule(i.insert(r, p, ru("3")).unwrap_err()).contains("a Rack cannot contain a Pool"));
    // a 2U user-defined driver, as data
    let d = i.create(Kind::Driver, "penguinserver2u", None).unwrap();
    i.configure(d, "base", "server").unwrap();
    i.configure(d, "rackUnits", "2").unwrap();
    i.configure(d, "ports", "pwr-nema-5=2").unwrap();
    let big = i
        .create(Kind::Server, "big", Some("penguinserver2u"))
        .unwrap();
    assert!(rule(i.insert(r, big, ru("9-10")).unwrap_err()).contains("overlaps s1"));
    i.insert(r, big, ru("11")).unwrap();
    assert_eq!(i.rack_of(big).unwrap().1, RuRange { start: 11, end: 12 });
    assert!(
        i.driver("penguinserver2u")
            .unwrap()
            .has_port("pwr-nema-5", 2)
    );
    assert!(!i.driver("penguinserver2u").unwrap().has_port("nic-eth", 1));
    // one rack per thing
    let r2 = i.create(Kind::Rack, "r2", None).unwrap();
    assert!(rule(i.insert(r2, s1, ru("1")).unwrap_err()).contains("already in rack r1"));
    // containment queries
    assert_eq!(i.contents(r), vec![s1, big]);
    assert_eq!(i.contents_recursive(dc), vec![r, s1, big]);
    assert_eq!(i.ancestors(s1), vec![r, dc]);
    // rack bounds
    i.configure(r2, "maxU", "10").unwrap();
    assert!(rule(i.insert(r2, s2, ru("11")).unwrap_err()).contains("units 1-10"));
    assert!(
        rule(i.configure(r, "maxU", "11").unwrap_err())
            .contains("big at RU 11-12 would fall outside")
    );
    // remove
    i.remove(r, s1).unwrap();
    assert!(rule(i.remove(r, s1).unwrap_err()).contains("s1 is not in r1"));
    // driver with no height
    let v = i.create(Kind::VirtualServer, "v1", None).unwrap();
    assert!(rule(i.insert(r, v, ru("1")).unwrap_err()).contains("no rack height"));
}

#[test]
fn one_location_of_each_kind_and_no_cycles() {
    let (mut i, dc, r) = rack_setup();
    let dc2 = i.create(Kind::Datacenter, "dc2", None).unwrap();
    assert!(rule(i.insert(dc2, r, None).unwrap_err()).contains("already in Datacenter dc1"));
    let cage = i.create(Kind::Cage, "c1", None).unwrap();
    i.insert(cage, r, None).unwrap();
    assert!(rule(i.insert(dc, dc2, None).unwrap_err()).contains("cannot contain a Datacenter"));
    let p1 = i.create(Kind::Pool, "p1", None).unwrap();
    let p2 = i.create(Kind::Pool, "p2", None).unwrap();
    let p3 = i.create(Kind::Pool, "p3", None).unwrap();
    assert!(rule(i.insert(p1, p1, None).unwrap_err()).contains("cannot contain itself"));
    i.insert(p1, p2, None).unwrap();
    i.insert(p2, p3, None).unwrap();
    assert!(rule(i.insert(p3, p1, None).unwrap_err()).contains("cycle"));
    assert!(rule(i.insert(p1, p2, None).unwrap_err()).contains("already in p1"));
}

#[test]
fn pool_kinds() {
    let mut i = inv();
    let s = i.create(Kind::Server, "s1", None).unwrap();
    let s2 = i.create(Kind::Server, "s2", None).unwrap();
    let web = i.create(Kind::Pool, "web", None).unwrap();
    let unalloc = i
        .create(Kind::Pool, "unallocated", Some("exclusivepool"))
        .unwrap();
    let prod = i
        .create(Kind::Pool, "production", Some("uniquepool"))
        .unwrap();
    let dev = i
        .create(Kind::Pool, "development", Some("uniquepool"))
        .unwrap();
    let team = i.create(Kind::Pool, "team-a", Some("uniquepool")).unwrap();
    i.configure(prod, "group", "environment").unwrap();
    i.configure(dev, "group", "environment").unwrap();
    i.configure(team, "group", "team").unwrap();

    // exclusive: only things in no pool
    i.insert(web, s, None).unwrap();
    assert!(
        rule(i.insert(unalloc, s, None).unwrap_err())
            .contains("exclusive pool unallocated only takes things in no pool, but s1 is in web")
    );
    i.insert(unalloc, s2, None).unwrap();
    assert!(
        rule(i.insert(web, s2, None).unwrap_err()).contains("s2 is in exclusive pool unallocated")
    );
    // counting nested pools
    let outer = i.create(Kind::Pool, "outer", None).unwrap();
    i.insert(outer, web, None).unwrap();
    i.remove(web, s).unwrap();
    let s3 = i.create(Kind::Server, "s3", None).unwrap();
    let inner = i.create(Kind::Pool, "inner", None).unwrap();
    i.insert(outer, inner, None).unwrap();
    i.insert(inner, s3, None).unwrap();
    assert!(rule(i.insert(unalloc, s3, None).unwrap_err()).contains("inner, outer"));

    // unique: one per group; groups are independent
    i.insert(prod, s, None).unwrap();
    assert!(
        rule(i.insert(dev, s, None).unwrap_err())
            .contains("unique pools production and development of group environment")
    );
    i.insert(team, s, None).unwrap();
    // ungrouped unique pools share one group
    let u1 = i.create(Kind::Pool, "u1", Some("uniquepool")).unwrap();
    let u2 = i.create(Kind::Pool, "u2", Some("uniquepool")).unwrap();
    i.insert(u1, s3, None).unwrap();
    assert!(rule(i.insert(u2, s3, None).unwrap_err()).contains("default group"));
    // nesting a pool into a unique pool checks its members too
    let holder = i.create(Kind::Pool, "holder", None).unwrap();
    i.insert(holder, s, None).unwrap();
    assert!(rule(i.insert(dev, holder, None).unwrap_err()).contains("s1 would be in unique pools"));

    // intersection is recursive
    let a = i.create(Kind::Pool, "a", None).unwrap();
    let b = i.create(Kind::Pool, "b", None).unwrap();
    let sa = i.create(Kind::Server, "sa", None).unwrap();
    let sb = i.create(Kind::Server, "sb", None).unwrap();
    let nested = i.create(Kind::Pool, "nested", None).unwrap();
    i.insert(a, nested, None).unwrap();
    i.insert(nested, sa, None).unwrap();
    i.insert(b, sa, None).unwrap();
    i.insert(a, sb, None).unwrap();
    assert_eq!(i.pool_intersection(&[a, b]), vec![sa]);
    assert_eq!(i.pools_of(sa), vec![b, nested, a]);
}

#[test]
fn ports_connect_disconnect_and_delete_frees_peers() {
    let mut i = inv();
    let s = i.create(Kind::Server, "s1", None).unwrap();
    let sw = i.create(Kind::NetworkSwitch, "sw1", None).unwrap();
    let pdu = i.create(Kind::PowerStrip, "pdu1", None).unwrap();
    let nic1: PortId = "nic-eth:1".parse().unwrap();
    let p10: PortId = "nic-eth:10".parse().unwrap();
    let pwr: PortId = "pwr-nema-5:1".parse().unwrap();
    i.connect(s, &nic1, sw, &p10).unwrap();
    assert_eq!(i.port_peer(sw, &p10), Some((s, nic1.clone())));
    assert!(
        rule(
            i.connect(s, &pwr, sw, &"nic-eth:11".parse().unwrap())
                .unwrap_err()
        )
        .contains("cannot connect pwr-nema-5")
    );
    assert!(
        rule(
            i.connect(s, &"nic-eth:3".parse().unwrap(), sw, &p10)
                .unwrap_err()
        )
        .contains("has no port nic-eth:3")
    );
    let s2 = i.create(Kind::Server, "s2", None).unwrap();
    assert!(
        rule(i.connect(s2, &nic1, sw, &p10).unwrap_err())
            .contains("port sw1:nic-eth:10 is already connected to s1:nic-eth:1")
    );
    i.connect(s, &pwr, pdu, &"pwr-nema-5:3".parse().unwrap())
        .unwrap();
    i.port_attr_set(s, &nic1, "mac", "00-11-22-AA-BB-CC")
        .unwrap();
    assert_eq!(i.port_attr(s, &nic1, "mac").unwrap(), "00:11:22:aa:bb:cc");
    assert!(rule(i.port_attr_set(s, &nic1, "mac", "nope").unwrap_err()).contains("not a MAC"));
    assert_eq!(i.find_by_mac("00:11:22:aa:bb:cc"), vec![(s, nic1.clone())]);
    let ports = i.ports(s);
    assert_eq!(ports.len(), 4);
    assert_eq!(ports.iter().filter(|p| p.peer.is_none()).count(), 2);
    // disconnect from the far end
    i.disconnect(sw, &p10).unwrap();
    assert_eq!(i.port_peer(s, &nic1), None);
    assert!(rule(i.disconnect(sw, &p10).unwrap_err()).contains("not connected"));
    i.connect(s, &nic1, sw, &p10).unwrap();
    i.delete(s).unwrap();
    assert!(i.connected_ports(sw).is_empty());
    assert!(i.connected_ports(pdu).is_empty());
    i.connect(s2, &nic1, sw, &p10).unwrap();
}

#[test]
fn ip_manager_allocation_order_skips_and_wraps() {
    let mut i = inv();
    let m = i.create(Kind::IpManager, "net1", None).unwrap();
    i.configure(m, "cidr", "10.0.0.0/29").unwrap();
    i.configure(m, "gateway", "10.0.0.1").unwrap();
    i.configure(m, "reserved", "10.0.0.3-10.0.0.4").unwrap();
    let mut things = Vec::new();
    for n in 0..4 {
        things.push(i.create(Kind::Server, &format!("s{n}"), None).unwrap());
    }
    let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
    // usable: .2 .5 .6 (.0 network, .1 gateway, .3-.4 reserved, .7 broadcast)
    assert_eq!(
        i.ip_allocate(
            m,
            things[0],
            None,
            Some("eth0"),
            Some(&"nic-eth:1".parse().unwrap())
        )
        .unwrap(),
        ip("10.0.0.2")
    );
    assert_eq!(
        i.ip_allocate(m, things[1], None, None, None).unwrap(),
        ip("10.0.0.5")
    );
    assert_eq!(
        i.ip_allocate(m, things[2], None, None, None).unwrap(),
        ip("10.0.0.6")
    );
    assert_eq!(
        rule(i.ip_allocate(m, things[3], None, None, None).unwrap_err()),
        "IPManager net1 is exhausted"
    );
    // releasing .2 then allocating wraps around to it (next after last handed out = .6)
    i.ip_release(things[0], None).unwrap();
    assert_eq!(
        i.ip_allocate(m, things[3], None, None, None).unwrap(),
        ip("10.0.0.2")
    );
    // releasing .5: the next allocation continues after .2, so .5
    i.ip_release(things[1], Some(ip("10.0.0.5"))).unwrap();
    assert_eq!(
        i.ip_allocate(m, things[0], None, None, None).unwrap(),
        ip("10.0.0.5")
    );
    // explicit: any host address in range, even reserved, never one held by another thing
    assert_eq!(
        i.ip_allocate(m, things[1], Some(ip("10.0.0.3")), None, None)
            .unwrap(),
        ip("10.0.0.3")
    );
    assert!(
        rule(
            i.ip_allocate(m, things[1], Some(ip("10.0.0.2")), None, None)
                .unwrap_err()
        )
        .contains("already held by s3")
    );
    assert!(
        rule(
            i.ip_allocate(m, things[1], Some(ip("10.0.0.7")), None, None)
                .unwrap_err()
        )
        .contains("not a host address")
    );
    assert!(
        rule(
            i.ip_allocate(m, things[1], Some(ip("10.1.0.7")), None, None)
                .unwrap_err()
        )
        .contains("not a host address")
    );
    // across managers: one holder per address
    let m2 = i.create(Kind::IpManager, "net2", None).unwrap();
    i.configure(m2, "cidr", "10.0.0.0/24").unwrap();
    assert!(
        rule(
            i.ip_allocate(m2, things[1], Some(ip("10.0.0.2")), None, None)
                .unwrap_err()
        )
        .contains("already held by s3")
    );
    // bindings are checked
    assert!(
        rule(
            i.ip_allocate(
                m2,
                things[1],
                None,
                None,
                Some(&"nic-eth:9".parse().unwrap())
            )
            .unwrap_err()
        )
        .contains("has no port nic-eth:9")
    );
    // deleting a manager with allocations is refused
    assert!(rule(i.delete(m).unwrap_err()).contains("still has"));
    // bad settings
    assert!(rule(i.configure(m2, "cidr", "10.0.0.5/24").unwrap_err()).contains("host bits"));
    assert!(rule(i.configure(m2, "gateway", "192.168.0.1").unwrap_err()).contains("outside"));
    assert!(
        rule(
            i.configure(m2, "reserved", "10.0.0.9-10.0.0.2")
                .unwrap_err()
        )
        .contains("backwards")
    );
    assert!(rule(i.configure(m2, "colour", "red").unwrap_err()).contains("settings: driver, cidr"));
    // a fixed address is bound through the most specific manager
    i.ip_bind(things[2], ip("10.0.0.200"), Some("eth1"), None)
        .unwrap();
    assert_eq!(i.address(ip("10.0.0.200")).unwrap().manager, Some(m2));
    i.ip_bind(things[2], ip("192.0.2.1"), None, None).unwrap();
    assert_eq!(i.address(ip("192.0.2.1")).unwrap().manager, None);
}

#[test]
fn ipv6_and_point_to_point() {
    let mut i = inv();
    let m = i.create(Kind::IpManager, "v6", None).unwrap();
    i.configure(m, "cidr", "2001:db8::/126").unwrap();
    let s = i.create(Kind::Server, "s", None).unwrap();
    let got: Vec<_> = (0..3)
        .map(|_| i.ip_allocate(m, s, None, None, None).unwrap().to_string())
        .collect();
    assert_eq!(got, ["2001:db8::1", "2001:db8::2", "2001:db8::3"]);
    assert!(matches!(
        i.ip_allocate(m, s, None, None, None),
        Err(CoreError::Exhausted(_))
    ));
    let p2p = i.create(Kind::IpManager, "p2p", None).unwrap();
    i.configure(p2p, "cidr", "10.9.9.0/31").unwrap();
    assert_eq!(
        i.ip_allocate(p2p, s, None, None, None).unwrap().to_string(),
        "10.9.9.0"
    );
}

#[test]
fn name_manager() {
    let mut i = inv();
    let m = i.create(Kind::NameManager, "servernames", None).unwrap();
    i.configure(m, "basename", "s").unwrap();
    i.configure(m, "digits", "1").unwrap();
    let a = i.name_allocate(m, Kind::Server, None).unwrap();
    assert_eq!(i.name_of(a), "s0");
    // an explicit name does not advance it, and is skipped
    i.create(Kind::Server, "s1", None).unwrap();
    let b = i.name_allocate(m, Kind::Server, None).unwrap();
    assert_eq!(i.name_of(b), "s2");
    i.configure(m, "next", "9").unwrap();
    i.name_allocate(m, Kind::Server, None).unwrap();
    assert!(rule(i.name_allocate(m, Kind::Server, None).unwrap_err()).contains("out of digits"));
    assert!(rule(i.configure(m, "digits", "0").unwrap_err()).contains("1 to 18"));
    assert!(rule(i.configure(m, "basename", "a b").unwrap_err()).contains("valid names"));
    let s = i.get("s0").unwrap().id;
    assert!(matches!(
        i.name_allocate(s, Kind::Server, None),
        Err(CoreError::WrongKind { .. })
    ));
}

#[test]
fn merged_attributes_order_and_sources() {
    let (mut i, dc, r) = rack_setup();
    let s = i.create(Kind::Server, "s1", None).unwrap();
    let web = i.create(Kind::Pool, "web", None).unwrap();
    let all = i.create(Kind::Pool, "all", None).unwrap();
    i.insert(r, s, ru("1")).unwrap();
    i.insert(web, s, None).unwrap();
    i.insert(all, web, None).unwrap();
    let set = |i: &mut Inventory, e, k: &str, sk: &str, v: i64| {
        i.attr_set(e, k, Some(sk), NumberSpec::None, Value::Int(v))
            .unwrap();
    };
    set(&mut i, dc, "dhcp", "enabled", 1);
    set(&mut i, web, "dhcp", "enabled", 0);
    set(&mut i, r, "dhcp", "lease", 60);
    set(&mut i, all, "dhcp", "lease", 99);
    i.attr_set(dc, "_hidden", None, NumberSpec::None, Value::Int(1))
        .unwrap();
    // levels: [r, web], [dc, all]
    assert_eq!(i.merge_levels(s), vec![vec![r, web], vec![dc, all]]);
    let m = i.merged_attrs(s, Some("dhcp"), None, false);
    let got: Vec<(String, EntityId)> = m.iter().map(|a| (a.attr.path(), a.source)).collect();
    assert_eq!(
        got,
        vec![
            ("dhcp.lease".into(), r),
            ("dhcp.enabled".into(), web),
            ("dhcp.enabled".into(), dc),
            ("dhcp.lease".into(), all)
        ]
    );
    assert_eq!(
        i.merged_value(s, "dhcp", Some("enabled")),
        Some((&Value::Int(0), web))
    );
    set(&mut i, s, "dhcp", "enabled", 1);
    assert_eq!(
        i.merged_value(s, "dhcp", Some("enabled")),
        Some((&Value::Int(1), s))
    );
    assert!(
        i.merged_attrs(s, None, None, false)
            .iter()
            .all(|a| !a.attr.is_hidden())
    );
    // user-driver defaults come last
    let d = i.create(Kind::Driver, "dell", None).unwrap();
    i.configure(d, "base", "server").unwrap();
    i.attr_set(
        d,
        "vendor",
        None,
        NumberSpec::None,
        Value::String("dell".into()),
    )
    .unwrap();
    let s2 = i.create(Kind::Server, "s2", Some("dell")).unwrap();
    assert_eq!(
        i.merged_value(s2, "vendor", None),
        Some((&Value::String("dell".into()), d))
    );
    assert!(rule(i.delete(d).unwrap_err()).contains("used by s2"));
}

#[test]
fn changes_cancel_out_within_one_write() {
    let mut i = inv();
    let s = i.create(Kind::Server, "s1", None).unwrap();
    i.attr_add(s, "x", None, NumberSpec::None, Value::Int(1))
        .unwrap();
    i.delete(s).unwrap();
    assert!(i.changes().is_empty(), "{:?}", i.changes());
}

#[test]
fn from_facts_round_trip() {
    let (mut i, _, r) = rack_setup();
    let s = i.create(Kind::Server, "s1", None).unwrap();
    i.insert(r, s, ru("5")).unwrap();
    let ch = i.take_changes();
    let j = Inventory::from_facts(ch.added, 0, 0);
    assert_eq!(j.rack_of(s), Some((r, RuRange { start: 5, end: 5 })));
    assert_eq!(j.ancestors(s).len(), 2);
    let mut j = j;
    let t = j.create(Kind::Server, "s2", None).unwrap();
    assert!(t.0 > s.0);
}

fn hypervisors() -> (Inventory, EntityId, Vec<EntityId>) {
    let mut i = inv();
    let mgr = i.create(Kind::VmManager, "xen", None).unwrap();
    let mut hosts = Vec::new();
    for (name, mem, disk, cpu) in [
        ("big", 65536, 4000, 32),
        ("small", 16384, 2000, 8),
        ("tiny", 2048, 100, 2),
    ] {
        let h = i.create(Kind::Server, name, None).unwrap();
        for (k, v) in [("memory", mem), ("disk", disk), ("cpucount", cpu)] {
            i.attr_set(h, "system", Some(k), NumberSpec::None, Value::Int(v))
                .unwrap();
        }
        i.insert(mgr, h, None).unwrap();
        hosts.push(h);
    }
    (i, mgr, hosts)
}

fn vm(i: &mut Inventory, name: &str, mem: i64, disk: i64, cpus: i64) -> EntityId {
    let v = i.create(Kind::VirtualMachine, name, None).unwrap();
    i.configure(v, "memoryMiB", &mem.to_string()).unwrap();
    i.configure(v, "diskGiB", &disk.to_string()).unwrap();
    i.configure(v, "cpus", &cpus.to_string()).unwrap();
    v
}

#[test]
fn vm_placement_is_best_fit_and_explains_itself() {
    let (mut i, mgr, hosts) = hypervisors();
    let v1 = vm(&mut i, "v1", 1024, 20, 1);
    // tiny has 2048 MiB but only 100 GiB disk: fits; it is the smallest that fits
    let p = i.place_vm(mgr, v1, None, false).unwrap();
    assert_eq!(p.host, hosts[2]);
    assert_eq!(
        p.reason,
        "tiny: needs 1024 MiB/20 GiB/1 cpu, free 2048/100/2"
    );
    // place it there; the next one no longer fits on tiny's memory
    i.configure(v1, "host", "tiny").unwrap();
    let v2 = vm(&mut i, "v2", 1536, 20, 1);
    let p = i.place_vm(mgr, v2, None, false).unwrap();
    assert_eq!(
        p.reason,
        "small: needs 1536 MiB/20 GiB/1 cpu, free 16384/2000/8"
    );
    assert_eq!(i.host_free(hosts[2], None).memory_mib, 1024);
    // pinned: must be a host of the manager and fit unless forced
    let outsider = i.create(Kind::Server, "outsider", None).unwrap();
    assert!(
        i.place_vm(mgr, v2, Some(outsider), false)
            .unwrap_err()
            .to_string()
            .contains("not a host of VM manager xen")
    );
    let e = i
        .place_vm(mgr, v2, Some(hosts[2]), false)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("tiny: needs 1536 MiB/20 GiB/1 cpu, free 1024/80/1 (does not fit"),
        "{e}"
    );
    assert!(
        i.place_vm(mgr, v2, Some(hosts[2]), true)
            .unwrap()
            .reason
            .starts_with("pinned to tiny")
    );
    // nothing fits
    let huge = vm(&mut i, "huge", 1 << 20, 1, 1);
    assert!(
        i.place_vm(mgr, huge, None, false)
            .unwrap_err()
            .to_string()
            .contains("no host of xen has 1048576 MiB")
    );
    // reserved hosts take no VMs
    i.configure(mgr, "reserved", r#"["tiny", "small"]"#)
        .unwrap();
    let v3 = vm(&mut i, "v3", 512, 10, 1);
    assert_eq!(i.place_vm(mgr, v3, None, false).unwrap().host, hosts[0]);
}

#[test]
fn a_host_with_vms_cannot_leave_its_manager() {
    let (mut i, mgr, hosts) = hypervisors();
    let v1 = vm(&mut i, "v1", 1024, 20, 1);
    i.configure(v1, "host", "small").unwrap();
    let e = i.remove(mgr, hosts[1]).unwrap_err().to_string();
    assert!(e.contains("small still runs v1"), "{e}");
    i.remove(mgr, hosts[2]).unwrap();
}

#[test]
fn attempt_undoes_only_the_failed_step() {
    let mut i = inv();
    let kept = i.create(Kind::Server, "kept", None).unwrap();
    let r: Result<(), CoreError> = i.attempt(|i| {
        i.create(Kind::Server, "half", None)?;
        i.create(Kind::Server, "kept", None)?;
        Ok(())
    });
    assert!(r.is_err());
    assert!(!i.exists("half"), "the failed step left nothing");
    assert!(i.exists("kept"));
    let ok: Result<(), CoreError> = i.attempt(|i| {
        i.delete(kept)?;
        i.create(Kind::Server, "whole", None)?;
        Ok(())
    });
    ok.unwrap();
    // A row added before the step and removed inside it is simply gone.
    let ch = i.take_changes();
    assert_eq!(ch.removed.len(), 0);
    assert!(ch.added.values().all(|f| !f.entities().contains(&kept)));
    assert!(i.exists("whole") && !i.exists("kept"));
}

#[test]
fn an_ip_range_counts_what_allocation_can_hand_out() {
    use crate::resources::IpRange;
    let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
    let range = |cidr: &str, gateway: Option<&str>, reserved: &[(&str, &str)]| IpRange {
        cidr: cidr.parse().unwrap(),
        gateway: gateway.map(ip),
        reserved: reserved.iter().map(|(a, b)| (ip(a), ip(b))).collect(),
    };
    // 1022 hosts, less the gateway, less .2-.9 (8).
    let dmz = range(
        "192.168.20.0/22",
        Some("192.168.20.1"),
        &[("192.168.20.2", "192.168.20.9")],
    );
    assert_eq!(dmz.capacity(), 1022 - 1 - 8);
    // Overlapping reservations count once; a reserved gateway once; parts
    // outside the network not at all.
    let r = range(
        "10.0.0.0/24",
        Some("10.0.0.5"),
        &[
            ("10.0.0.1", "10.0.0.10"),
            ("10.0.0.5", "10.0.0.20"),
            ("9.0.0.0", "10.0.0.0"),
        ],
    );
    assert_eq!(r.capacity(), 254 - 20);
    assert_eq!(range("10.0.0.0/31", None, &[]).capacity(), 2);
    assert_eq!(range("10.0.0.7/32", None, &[]).capacity(), 1);
    assert_eq!(range("2001:db8::/120", None, &[]).capacity(), 255);
    assert_eq!(range("::/0", None, &[]).capacity(), u128::MAX);
}

#[test]
fn an_elevation_reads_back_from_its_json() {
    use crate::elevation::{Elevation, Face, Mounted};
    let el = Elevation {
        min: 1,
        max: 42,
        mounted: vec![Mounted {
            name: "db1".into(),
            kind: Kind::Server,
            driver: "big".into(),
            ru: RuRange { start: 10, end: 11 },
            face: Face::Rear,
            full_depth: false,
        }],
        unplaced: vec!["pdu0".into()],
    };
    assert_eq!(Elevation::from_json(&el.to_json("r1")), Some(el));
    assert_eq!(
        Elevation::from_json(&serde_json::json!({"rack": "r1"})),
        None
    );
}

/// `resource_view` names every entity the object is made from: renaming,
/// configuring or giving an attribute to any entity outside the view
/// leaves the object as it was, and the view holds what it should.
#[test]
fn an_object_is_made_only_from_its_view() {
    let ru = |s: &str| Some(s.parse::<RuRange>().unwrap());
    let mut i = inv();
    let dc = i.create(Kind::Datacenter, "dc1", None).unwrap();
    let r = i.create(Kind::Rack, "r1", None).unwrap();
    i.insert(dc, r, None).unwrap();
    let d = i.create(Kind::Driver, "big2u", None).unwrap();
    i.configure(d, "base", "server").unwrap();
    i.configure(d, "rackUnits", "2").unwrap();
    i.configure(d, "ports", "nic-eth=2").unwrap();
    let s = i.create(Kind::Server, "s1", Some("big2u")).unwrap();
    i.insert(r, s, ru("10")).unwrap();
    let other = i.create(Kind::Server, "s2", None).unwrap();
    i.insert(r, other, ru("20")).unwrap();
    let sw = i.create(Kind::NetworkSwitch, "sw1", None).unwrap();
    i.insert(r, sw, ru("42")).unwrap();
    i.connect(
        s,
        &"nic-eth:1".parse().unwrap(),
        sw,
        &"nic-eth:3".parse().unwrap(),
    )
    .unwrap();
    let net = i.create(Kind::IpManager, "net1", None).unwrap();
    i.configure(net, "cidr", "10.0.0.0/24").unwrap();
    i.ip_allocate(net, s, None, Some("eth0"), None).unwrap();
    let pool = i.create(Kind::Pool, "web", None).unwrap();
    i.insert(pool, s, None).unwrap();
    let owner = i.create(Kind::Pool, "team-a", None).unwrap();
    i.attr_set(s, "owner", None, NumberSpec::None, Value::Ref(owner))
        .unwrap();
    let unrelated = i.create(Kind::Pool, "elsewhere", None).unwrap();
    let view = i.resource_view(s);
    for want in [s, r, dc, d, sw, net, pool, owner] {
        assert!(view.contains(&want), "{} missing", i.name_of(want));
    }
    let before = i.resource(s, false);
    for e in i.entities_unsorted().map(|e| e.id).collect::<Vec<_>>() {
        if view.contains(&e) {
            continue;
        }
        let mut changed = i.clone();
        let name = format!("{}-renamed", changed.name_of(e));
        changed.rename(e, &name).unwrap();
        changed
            .attr_set(e, "note", None, NumberSpec::None, Value::String("x".into()))
            .unwrap();
        assert_eq!(
            changed.resource(s, false),
            before,
            "{} shaped s1 but is not in its view",
            i.name_of(e)
        );
    }
    assert!(!view.contains(&other) && !view.contains(&unrelated));
    // And what is in the view does shape it: a peer's rename shows.
    let mut changed = i.clone();
    changed.rename(sw, "sw9").unwrap();
    assert_ne!(changed.resource(s, false), before);
}

/// What `apply` relies on to see the before-state without a copy: a change
/// set undone and redone leaves the inventory and its pending changes as
/// they were, whatever the change set added and retired.
#[test]
fn revert_then_redo_is_the_identity() {
    let mut i = inv();
    let r = i.create(Kind::Rack, "r1", None).unwrap();
    let s = i.create(Kind::Server, "s1", None).unwrap();
    i.insert(r, s, Some("3".parse().unwrap())).unwrap();
    i.attr_set(
        s,
        "owner",
        None,
        NumberSpec::None,
        Value::String("bob".into()),
    )
    .unwrap();
    i.take_changes();
    let state = |i: &Inventory| {
        i.entities()
            .iter()
            .map(|e| i.resource(e.id, true))
            .collect::<Vec<_>>()
    };
    // Retires a row (owner bob), adds rows (owner alice, a new server placed).
    i.attr_set(
        s,
        "owner",
        None,
        NumberSpec::None,
        Value::String("alice".into()),
    )
    .unwrap();
    let s2 = i.create(Kind::Server, "s2", None).unwrap();
    i.insert(r, s2, Some("5".parse().unwrap())).unwrap();
    let after = state(&i);
    let pending = i.changes().clone();
    assert!(
        !pending.creates_all(&pending.entities()),
        "s1 existed before"
    );
    let changes = i.take_changes();
    i.revert(&changes);
    assert!(i.get("s2").is_err());
    assert_eq!(
        i.attr_value(s, "owner", None),
        Some(&Value::String("bob".into()))
    );
    i.redo(changes);
    assert_eq!(state(&i), after);
    assert_eq!(i.changes().added, pending.added);
    assert_eq!(i.changes().removed, pending.removed);
}
