//! The request pipeline against an in-memory inventory: no sockets.

use std::net::Ipv4Addr;

use clusto_core::{Inventory, Kind, NumberSpec, Value};
use clusto_dhcp::index::{Entry, Skip};
use clusto_dhcp::{Context, Destination, DhcpIndex, Ignored, Outcome, handle};
use dhcproto::v4::{DhcpOption, Flags, Message, MessageType, Opcode, OptionCode};

const MAC1: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];

fn inventory() -> Inventory {
    let mut i = Inventory::new();
    let dc = i.create(Kind::Datacenter, "dc1", None).unwrap();
    let net = i.create(Kind::IpManager, "net", None).unwrap();
    i.configure(net, "cidr", "10.77.0.0/24").unwrap();
    i.configure(net, "gateway", "10.77.0.1").unwrap();
    let set = |i: &mut Inventory, e, sk: &str, v: Value| {
        i.attr_set(e, "dhcp", Some(sk), NumberSpec::None, v)
            .unwrap();
    };
    set(&mut i, dc, "enabled", Value::Bool(true));
    set(
        &mut i,
        dc,
        "dns-servers",
        Value::String("10.77.0.53, 10.77.0.54".into()),
    );
    set(
        &mut i,
        dc,
        "domain-name",
        Value::String("example.test".into()),
    );
    set(&mut i, dc, "tftp_server", Value::String("10.77.0.9".into()));
    set(
        &mut i,
        dc,
        "tftp_filename",
        Value::String("pxelinux.0".into()),
    );
    set(&mut i, dc, "option-119", Value::String("hex:0102".into()));
    set(
        &mut i,
        dc,
        "pxelinux-configfile",
        Value::String("pxelinux.cfg/s1".into()),
    );
    let s1 = i.create(Kind::Server, "s1", None).unwrap();
    i.insert(dc, s1, None).unwrap();
    // NIC 2 carries the MAC; the address is bound to NIC 2.
    i.port_attr_set(
        s1,
        &"nic-eth:2".parse().unwrap(),
        "mac",
        "02:00:00:00:00:01",
    )
    .unwrap();
    i.ip_allocate(
        net,
        s1,
        Some("10.77.0.20".parse().unwrap()),
        Some("eth1"),
        Some(&"nic-eth:2".parse().unwrap()),
    )
    .unwrap();
    i.ip_allocate(
        net,
        s1,
        Some("10.77.0.21".parse().unwrap()),
        Some("eth0"),
        Some(&"nic-eth:1".parse().unwrap()),
    )
    .unwrap();
    // no dhcp for s2: disabled on the host itself
    let s2 = i.create(Kind::Server, "s2", None).unwrap();
    i.insert(dc, s2, None).unwrap();
    set(&mut i, s2, "enabled", Value::Bool(false));
    i.port_attr_set(
        s2,
        &"nic-eth:1".parse().unwrap(),
        "mac",
        "02:00:00:00:00:02",
    )
    .unwrap();
    i.ip_allocate(net, s2, None, None, None).unwrap();
    // two devices with one MAC
    for n in ["a", "b"] {
        let d = i.create(Kind::Server, n, None).unwrap();
        i.insert(dc, d, None).unwrap();
        i.port_attr_set(d, &"nic-eth:1".parse().unwrap(), "mac", "02:00:00:00:00:03")
            .unwrap();
    }
    // a BMC answers by its ipmi-mac, with no address
    let s4 = i.create(Kind::Server, "s4", None).unwrap();
    i.insert(dc, s4, None).unwrap();
    i.port_attr_set(
        s4,
        &"nic-eth:1".parse().unwrap(),
        "ipmi-mac",
        "02:00:00:00:00:04",
    )
    .unwrap();
    i
}

fn request(t: MessageType, mac: [u8; 6]) -> Message {
    let mut m = Message::default();
    m.set_opcode(Opcode::BootRequest)
        .set_xid(42)
        .set_chaddr(&mac)
        .set_flags(Flags::default().set_broadcast());
    m.opts_mut().insert(DhcpOption::MessageType(t));
    m
}

fn ctx() -> Context {
    Context {
        server_id: "10.77.0.1".parse().unwrap(),
        learn: false,
    }
}

fn reply(o: Outcome) -> (Message, Destination) {
    match o {
        Outcome::Reply(m, d) => (*m, d),
        other => panic!("no reply: {other:?}"),
    }
}

#[test]
fn index_resolves_bindings_and_reasons() {
    let idx = DhcpIndex::build(&inventory(), 1);
    let Entry::Serve(h) = &idx.by_mac[&MAC1] else {
        panic!()
    };
    assert_eq!(
        h.leases[0].address,
        Ipv4Addr::new(10, 77, 0, 20),
        "the address bound to the NIC with the MAC"
    );
    assert_eq!(h.leases[0].mask, Ipv4Addr::new(255, 255, 255, 0));
    assert_eq!(h.leases[0].router, Some(Ipv4Addr::new(10, 77, 0, 1)));
    assert_eq!(
        h.settings.dns,
        vec![Ipv4Addr::new(10, 77, 0, 53), Ipv4Addr::new(10, 77, 0, 54)]
    );
    assert_eq!(h.hostname, "s1");
    assert!(h.settings.extra.contains(&(119, vec![1, 2])));
    assert!(
        h.settings
            .extra
            .contains(&(208, vec![0xF1, 0x00, 0x74, 0x7E]))
    );
    assert_eq!(
        idx.by_mac[&[2, 0, 0, 0, 0, 2]],
        Entry::Skip(Skip::Disabled("s2".into()))
    );
    assert_eq!(
        idx.by_mac[&[2, 0, 0, 0, 0, 3]],
        Entry::Skip(Skip::Ambiguous(vec!["a".into(), "b".into()]))
    );
    assert_eq!(
        idx.by_mac[&[2, 0, 0, 0, 0, 4]],
        Entry::Skip(Skip::NoAddress("s4".into()))
    );
}

#[test]
fn discover_gets_an_offer_with_the_inventory_options() {
    let idx = DhcpIndex::build(&inventory(), 1);
    let (m, d) = reply(handle(&idx, &ctx(), &request(MessageType::Discover, MAC1)));
    assert_eq!(d, Destination::Broadcast);
    assert_eq!(m.opts().msg_type(), Some(MessageType::Offer));
    assert_eq!(m.yiaddr(), Ipv4Addr::new(10, 77, 0, 20));
    assert_eq!(m.xid(), 42);
    assert_eq!(m.siaddr(), Ipv4Addr::new(10, 77, 0, 9));
    assert_eq!(m.fname_str().unwrap().unwrap(), "pxelinux.0");
    assert_eq!(
        m.opts().get(OptionCode::AddressLeaseTime),
        Some(&DhcpOption::AddressLeaseTime(3600))
    );
    assert_eq!(
        m.opts().get(OptionCode::Renewal),
        Some(&DhcpOption::Renewal(1800))
    );
    assert_eq!(
        m.opts().get(OptionCode::Router),
        Some(&DhcpOption::Router(vec![Ipv4Addr::new(10, 77, 0, 1)]))
    );
    assert_eq!(
        m.opts().get(OptionCode::DomainName),
        Some(&DhcpOption::DomainName("example.test".into()))
    );
    assert_eq!(
        m.opts().get(OptionCode::ServerIdentifier),
        Some(&DhcpOption::ServerIdentifier(ctx().server_id))
    );
    // the reply survives a wire round trip
    let mut buf = Vec::new();
    dhcproto::Encodable::encode(&m, &mut dhcproto::Encoder::new(&mut buf)).unwrap();
    let back = <Message as dhcproto::Decodable>::decode(&mut dhcproto::Decoder::new(&buf)).unwrap();
    assert_eq!(back.yiaddr(), m.yiaddr());
}

#[test]
fn request_acks_the_bound_address_and_naks_others() {
    let idx = DhcpIndex::build(&inventory(), 1);
    let mut r = request(MessageType::Request, MAC1);
    r.opts_mut().insert(DhcpOption::RequestedIpAddress(
        "10.77.0.20".parse().unwrap(),
    ));
    r.opts_mut()
        .insert(DhcpOption::ServerIdentifier(ctx().server_id));
    let (m, _) = reply(handle(&idx, &ctx(), &r));
    assert_eq!(m.opts().msg_type(), Some(MessageType::Ack));
    r.opts_mut().insert(DhcpOption::RequestedIpAddress(
        "10.77.0.99".parse().unwrap(),
    ));
    let (m, d) = reply(handle(&idx, &ctx(), &r));
    assert_eq!(m.opts().msg_type(), Some(MessageType::Nak));
    assert_eq!(d, Destination::Broadcast);
    // a request addressed to another server is not ours
    r.opts_mut()
        .insert(DhcpOption::ServerIdentifier("10.77.0.2".parse().unwrap()));
    assert!(matches!(
        handle(&idx, &ctx(), &r),
        Outcome::Ignore(Ignored::OtherServer(_))
    ));
    // renewal: ciaddr set, unicast back
    let mut renew = request(MessageType::Request, MAC1);
    renew
        .set_ciaddr(Ipv4Addr::new(10, 77, 0, 20))
        .set_flags(Flags::default());
    let (m, d) = reply(handle(&idx, &ctx(), &renew));
    assert_eq!(m.opts().msg_type(), Some(MessageType::Ack));
    assert_eq!(d, Destination::Unicast(Ipv4Addr::new(10, 77, 0, 20)));
}

#[test]
fn inform_relay_and_ignores() {
    let idx = DhcpIndex::build(&inventory(), 1);
    let (m, _) = reply(handle(&idx, &ctx(), &request(MessageType::Inform, MAC1)));
    assert_eq!(m.opts().msg_type(), Some(MessageType::Ack));
    assert!(m.yiaddr().is_unspecified(), "INFORM hands out no address");
    assert!(m.opts().get(OptionCode::AddressLeaseTime).is_none());
    // relayed: answered to the relay if it sits on the host's subnet
    let mut relayed = request(MessageType::Discover, MAC1);
    relayed.set_giaddr(Ipv4Addr::new(10, 77, 0, 254));
    let (_, d) = reply(handle(&idx, &ctx(), &relayed));
    assert_eq!(d, Destination::Relay(Ipv4Addr::new(10, 77, 0, 254)));
    relayed.set_giaddr(Ipv4Addr::new(10, 99, 0, 1));
    let (_, d) = reply(handle(&idx, &ctx(), &relayed));
    assert_eq!(
        d,
        Destination::Relay(Ipv4Addr::new(10, 99, 0, 1)),
        "a relay on a transit network"
    );
    // unknown, disabled, ambiguous
    let o = handle(
        &idx,
        &ctx(),
        &request(MessageType::Discover, [2, 9, 9, 9, 9, 9]),
    );
    assert_eq!(
        o,
        Outcome::Ignore(Ignored::UnknownMac("02:09:09:09:09:09".into()))
    );
    let o = handle(
        &idx,
        &ctx(),
        &request(MessageType::Discover, [2, 0, 0, 0, 0, 2]),
    );
    assert!(matches!(
        o,
        Outcome::Ignore(Ignored::Skipped(Skip::Disabled(_)))
    ));
    let o = handle(
        &idx,
        &ctx(),
        &request(MessageType::Discover, [2, 0, 0, 0, 0, 3]),
    );
    assert_eq!(
        o.clone(),
        Outcome::Ignore(Ignored::Skipped(Skip::Ambiguous(vec![
            "a".into(),
            "b".into()
        ])))
    );
    // decline names the device
    let mut dec = request(MessageType::Decline, MAC1);
    dec.opts_mut().insert(DhcpOption::RequestedIpAddress(
        "10.77.0.20".parse().unwrap(),
    ));
    match handle(&idx, &ctx(), &dec) {
        Outcome::Ignore(Ignored::Declined {
            device, address, ..
        }) => {
            assert_eq!(device.as_deref(), Some("s1"));
            assert_eq!(address, Some(Ipv4Addr::new(10, 77, 0, 20)));
        }
        other => panic!("{other:?}"),
    }
    // replies are not requests
    let mut bogus = request(MessageType::Discover, MAC1);
    bogus.set_opcode(Opcode::BootReply);
    assert_eq!(
        handle(&idx, &ctx(), &bogus),
        Outcome::Ignore(Ignored::NotRequest)
    );
}

#[test]
fn requested_options_are_honoured() {
    let idx = DhcpIndex::build(&inventory(), 1);
    let mut r = request(MessageType::Discover, MAC1);
    r.opts_mut().insert(DhcpOption::ParameterRequestList(vec![
        OptionCode::Router,
        OptionCode::SubnetMask,
    ]));
    let (m, _) = reply(handle(&idx, &ctx(), &r));
    assert!(m.opts().get(OptionCode::Router).is_some());
    assert!(
        m.opts().get(OptionCode::DomainNameServer).is_none(),
        "not asked for"
    );
    assert!(
        m.opts().get(OptionCode::Unknown(208)).is_some(),
        "PXELINUX magic always goes"
    );
}

#[test]
fn arbitrary_packets_never_panic() {
    let idx = DhcpIndex::build(&inventory(), 1);
    let mut seed: u64 = 99;
    let mut next = || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) as u32
    };
    let mut valid = Vec::new();
    dhcproto::Encodable::encode(
        &request(MessageType::Discover, MAC1),
        &mut dhcproto::Encoder::new(&mut valid),
    )
    .unwrap();
    for i in 0..20_000 {
        let mut pkt = if i % 2 == 0 {
            valid.clone()
        } else {
            vec![0u8; (next() % 600) as usize]
        };
        for _ in 0..(next() % 12) {
            if pkt.is_empty() {
                break;
            }
            let at = (next() as usize) % pkt.len();
            pkt[at] = next() as u8;
        }
        if next() % 5 == 0 {
            let cut = (next() as usize) % (pkt.len() + 1);
            pkt.truncate(cut);
        }
        if let Some(m) = clusto_dhcp::decode(&pkt) {
            let _ = handle(&idx, &ctx(), &m);
        }
    }
}

#[test]
fn bootstrap_macs_are_learnt_when_asked() {
    let mut inv = inventory();
    let s5 = inv.create(Kind::Server, "s5", None).unwrap();
    inv.attr_set(
        s5,
        "bootstrap",
        Some("mac"),
        NumberSpec::None,
        Value::String("02:00:00:00:00:55".into()),
    )
    .unwrap();
    let idx = DhcpIndex::build(&inv, 1);
    let mac = [2, 0, 0, 0, 0, 0x55];
    // without --learn-ipmi it is just unknown
    assert!(matches!(
        handle(&idx, &ctx(), &request(MessageType::Discover, mac)),
        Outcome::Ignore(Ignored::UnknownMac(_))
    ));
    let learning = Context {
        learn: true,
        ..ctx()
    };
    let mut bmc = request(MessageType::Discover, mac);
    bmc.opts_mut()
        .insert(DhcpOption::ClassIdentifier(b"Dell iDRAC BMC".to_vec()));
    let mut wire = Vec::new();
    dhcproto::Encodable::encode(&bmc, &mut dhcproto::Encoder::new(&mut wire)).unwrap();
    assert_eq!(
        clusto_dhcp::handler::screen(&idx, &wire),
        None,
        "a bootstrap MAC passes the screen"
    );
    assert_eq!(
        handle(&idx, &learning, &bmc),
        Outcome::Learn {
            device: "s5".into(),
            mac: "02:00:00:00:00:55".into(),
            bmc: true
        }
    );
    assert_eq!(
        handle(&idx, &learning, &request(MessageType::Discover, mac)),
        Outcome::Learn {
            device: "s5".into(),
            mac: "02:00:00:00:00:55".into(),
            bmc: false
        }
    );
}

#[tokio::test]
async fn learning_records_one_revision_by_dhcpd() {
    let store = clusto_store::testing::fresh("sqlite").await.unwrap();
    store
        .write(
            &clusto_store::RevisionMeta::new("setup"),
            |inv| -> Result<(), clusto_store::StoreError> {
                inv.create(Kind::Server, "s5", None)?;
                Ok(())
            },
        )
        .await
        .unwrap();
    let rev = clusto_dhcp::server::learn(&store, "s5", "02:00:00:00:00:55", true)
        .await
        .unwrap();
    assert_eq!(rev, Some(2));
    assert_eq!(
        clusto_dhcp::server::learn(&store, "s5", "02:00:00:00:00:55", true)
            .await
            .unwrap(),
        None,
        "no-op"
    );
    let inv = store.load(None).await.unwrap();
    let id = inv.id_of("s5").unwrap();
    assert_eq!(
        inv.port_attr(id, &"nic-eth:1".parse().unwrap(), "ipmi-mac")
            .as_deref(),
        Some("02:00:00:00:00:55")
    );
    assert_eq!(
        store.revisions(Some(1), None).await.unwrap()[0].manager,
        "dhcpd"
    );
}

#[test]
fn encoded_options_follow_the_request_order() {
    let idx = DhcpIndex::build(&inventory(), 1);
    let mut r = request(MessageType::Discover, MAC1);
    r.opts_mut().insert(DhcpOption::ParameterRequestList(vec![
        OptionCode::DomainNameServer,
        OptionCode::Router,
        OptionCode::SubnetMask,
    ]));
    let (m, _) = reply(handle(&idx, &ctx(), &r));
    let mut buf = Vec::new();
    clusto_dhcp::handler::encode_reply(&m, &r, &mut buf).unwrap();
    // walk the TLVs after the 240-byte header
    let mut codes = Vec::new();
    let mut i = 240;
    while buf[i] != 255 {
        codes.push(buf[i]);
        i += 2 + buf[i + 1] as usize;
    }
    assert_eq!(&codes[..5], &[53, 54, 6, 3, 1], "{codes:?}");
    // and it still decodes to the same message
    let back = clusto_dhcp::decode(&buf).unwrap();
    assert_eq!(
        back.opts().get(OptionCode::Router),
        m.opts().get(OptionCode::Router)
    );
    assert_eq!(back.yiaddr(), m.yiaddr());
}

#[test]
fn several_addresses_answer_from_the_asking_subnet() {
    let mut inv = inventory();
    let other = inv.create(Kind::IpManager, "other", None).unwrap();
    inv.configure(other, "cidr", "10.88.0.0/24").unwrap();
    inv.configure(other, "gateway", "10.88.0.1").unwrap();
    let dc = inv.id_of("dc1").unwrap();
    let s6 = inv.create(Kind::Server, "s6", None).unwrap();
    inv.insert(dc, s6, None).unwrap();
    inv.port_attr_set(
        s6,
        &"nic-eth:1".parse().unwrap(),
        "mac",
        "02:00:00:00:00:66",
    )
    .unwrap();
    let net = inv.id_of("net").unwrap();
    inv.ip_allocate(net, s6, Some("10.77.0.66".parse().unwrap()), None, None)
        .unwrap();
    inv.ip_allocate(other, s6, Some("10.88.0.66".parse().unwrap()), None, None)
        .unwrap();
    let idx = DhcpIndex::build(&inv, 1);
    let mac = [2, 0, 0, 0, 0, 0x66];
    // direct: the subnet of this server's address
    let (m, _) = reply(handle(&idx, &ctx(), &request(MessageType::Discover, mac)));
    assert_eq!(m.yiaddr(), Ipv4Addr::new(10, 77, 0, 66));
    // relayed from 10.88.0.0/24: that subnet's address and router
    let mut r = request(MessageType::Discover, mac);
    r.set_giaddr(Ipv4Addr::new(10, 88, 0, 1));
    let (m, _) = reply(handle(&idx, &ctx(), &r));
    assert_eq!(m.yiaddr(), Ipv4Addr::new(10, 88, 0, 66));
    assert_eq!(
        m.opts().get(OptionCode::Router),
        Some(&DhcpOption::Router(vec![Ipv4Addr::new(10, 88, 0, 1)]))
    );
    // from a subnet it has no address in: no answer, and the reason says so
    r.set_giaddr(Ipv4Addr::new(10, 99, 0, 1));
    assert!(matches!(
        handle(&idx, &ctx(), &r),
        Outcome::Ignore(Ignored::NoAddressInSubnet { .. })
    ));
}

/// The original clusto's scapy option names: aliases of this project's
/// settings (`domain`, `name_server`, `NTP_server`, `lease_time`) merge like
/// them, nearest level first whatever the spelling; the others become their
/// option, typed (`router`, `renewal_time`, `NIS_domain`, `interface-mtu`).
#[test]
fn the_original_option_names_are_understood() {
    let mut i = inventory();
    let s1 = i.id_of("s1").unwrap();
    let set = |i: &mut Inventory, sk: &str, v: &str| {
        i.attr_set(
            s1,
            "dhcp",
            Some(sk),
            NumberSpec::None,
            Value::String(v.into()),
        )
        .unwrap();
    };
    set(&mut i, "domain", "bar.example");
    set(&mut i, "name_server", "10.77.0.99");
    set(&mut i, "NTP_server", "10.77.0.123");
    set(&mut i, "lease_time", "600");
    set(&mut i, "router", "10.77.0.254");
    set(&mut i, "renewal_time", "200");
    set(&mut i, "NIS_domain", "nis.example");
    set(&mut i, "interface-mtu", "9000");
    set(&mut i, "default_ttl", "not-a-number");
    let idx = DhcpIndex::build(&i, 1);
    let (m, _) = reply(handle(&idx, &ctx(), &request(MessageType::Discover, MAC1)));
    let o = m.opts();
    assert_eq!(
        o.get(OptionCode::DomainName),
        Some(&DhcpOption::DomainName("bar.example".into())),
        "nearer than the datacenter's domain-name"
    );
    assert_eq!(
        o.get(OptionCode::DomainNameServer),
        Some(&DhcpOption::DomainNameServer(vec![Ipv4Addr::new(
            10, 77, 0, 99
        )]))
    );
    assert_eq!(
        o.get(OptionCode::NtpServers),
        Some(&DhcpOption::NtpServers(vec![Ipv4Addr::new(10, 77, 0, 123)]))
    );
    assert_eq!(
        o.get(OptionCode::AddressLeaseTime),
        Some(&DhcpOption::AddressLeaseTime(600))
    );
    // Encoded and decoded as the clients see them.
    let mut buf = Vec::new();
    dhcproto::Encodable::encode(&m, &mut dhcproto::Encoder::new(&mut buf)).unwrap();
    let back = <Message as dhcproto::Decodable>::decode(&mut dhcproto::Decoder::new(&buf)).unwrap();
    let o = back.opts();
    assert_eq!(
        o.get(OptionCode::Router),
        Some(&DhcpOption::Router(vec![Ipv4Addr::new(10, 77, 0, 254)]))
    );
    assert_eq!(o.get(OptionCode::Renewal), Some(&DhcpOption::Renewal(200)));
    assert_eq!(
        o.get(OptionCode::NisDomain),
        Some(&DhcpOption::NisDomain("nis.example".into()))
    );
    assert_eq!(
        o.get(OptionCode::InterfaceMtu),
        Some(&DhcpOption::InterfaceMtu(9000))
    );
    assert!(
        o.get(OptionCode::DefaultIpTtl).is_none(),
        "a value that does not fit its option is left out"
    );
}

/// The screen drops strangers on the raw bytes and passes everything it
/// cannot rule out to the full pipeline, which then decides as before.
#[test]
fn the_screen_drops_only_unknown_macs() {
    let idx = DhcpIndex::build(&inventory(), 1);
    let wire = |m: &Message| {
        let mut b = Vec::new();
        dhcproto::Encodable::encode(m, &mut dhcproto::Encoder::new(&mut b)).unwrap();
        b
    };
    let stranger = [0x02, 0xbe, 0xef, 0, 0, 9];
    let d = wire(&request(MessageType::Discover, stranger));
    assert_eq!(
        clusto_dhcp::handler::screen(&idx, &d),
        Some(Ignored::UnknownMac("02:be:ef:00:00:09".into()))
    );
    // and the full pipeline agrees
    let full = handle(&idx, &ctx(), &clusto_dhcp::decode(&d).unwrap());
    assert_eq!(
        full,
        Outcome::Ignore(Ignored::UnknownMac("02:be:ef:00:00:09".into()))
    );
    // a known MAC, a short datagram, a reply, another hardware type: passed on
    assert_eq!(
        clusto_dhcp::handler::screen(&idx, &wire(&request(MessageType::Discover, MAC1))),
        None
    );
    assert_eq!(clusto_dhcp::handler::screen(&idx, &d[..239]), None);
    let mut reply = d.clone();
    reply[0] = 2;
    assert_eq!(clusto_dhcp::handler::screen(&idx, &reply), None);
    let mut token_ring = d.clone();
    token_ring[1] = 6;
    assert_eq!(clusto_dhcp::handler::screen(&idx, &token_ring), None);
}
