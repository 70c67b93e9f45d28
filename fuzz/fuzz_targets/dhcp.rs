//! DHCP: a datagram decoded and answered from an index of a small
//! inventory (a bound server, a disabled one, a device announcing its
//! bootstrap MAC), the reply encoded as the server sends it and decoded
//! back.
#![no_main]

use std::net::Ipv4Addr;
use std::sync::OnceLock;

use clusto_core::{Inventory, Kind, NumberSpec, Value};
use clusto_dhcp::handler::encode_reply;
use clusto_dhcp::{Context, DhcpIndex, Outcome, decode, handle};
use libfuzzer_sys::fuzz_target;

fn inventory() -> Inventory {
    let mut i = Inventory::new();
    let dc = i.create(Kind::Datacenter, "dc1", None).unwrap();
    let net = i.create(Kind::IpManager, "net", None).unwrap();
    i.configure(net, "cidr", "10.77.0.0/24").unwrap();
    i.configure(net, "gateway", "10.77.0.1").unwrap();
    let set = |i: &mut Inventory, e, sk: &str, v: &str| {
        i.attr_set(
            e,
            "dhcp",
            Some(sk),
            NumberSpec::None,
            Value::String(v.into()),
        )
        .unwrap();
    };
    i.attr_set(
        dc,
        "dhcp",
        Some("enabled"),
        NumberSpec::None,
        Value::Bool(true),
    )
    .unwrap();
    set(&mut i, dc, "dns-servers", "10.77.0.53, 10.77.0.54");
    set(&mut i, dc, "domain-name", "example.test");
    set(&mut i, dc, "tftp_server", "10.77.0.9");
    set(&mut i, dc, "tftp_filename", "pxelinux.0");
    set(&mut i, dc, "option-119", "hex:0102");
    for (n, name) in ["s1", "s2"].into_iter().enumerate() {
        let s = i.create(Kind::Server, name, None).unwrap();
        i.insert(dc, s, None).unwrap();
        let mac = format!("02:00:00:00:00:0{}", n + 1);
        i.port_attr_set(s, &"nic-eth:1".parse().unwrap(), "mac", &mac)
            .unwrap();
        let ip = format!("10.77.0.{}", 20 + n).parse().unwrap();
        i.ip_allocate(
            net,
            s,
            Some(ip),
            Some("eth0"),
            Some(&"nic-eth:1".parse().unwrap()),
        )
        .unwrap();
        if name == "s2" {
            i.attr_set(
                s,
                "dhcp",
                Some("enabled"),
                NumberSpec::None,
                Value::Bool(false),
            )
            .unwrap();
        }
    }
    let new = i.create(Kind::Server, "s3", None).unwrap();
    i.insert(dc, new, None).unwrap();
    i.attr_set(
        new,
        "bootstrap",
        Some("mac"),
        NumberSpec::None,
        Value::String("02:00:00:00:00:03".into()),
    )
    .unwrap();
    i
}

fn index() -> &'static DhcpIndex {
    static IDX: OnceLock<DhcpIndex> = OnceLock::new();
    IDX.get_or_init(|| {
        // dhcproto panics on some malformed input and the responder catches
        // it (clusto_dhcp::decode); keep those caught panics quiet here.
        // A panic anywhere else still reaches the fuzzer and is a crash.
        std::panic::set_hook(Box::new(|_| {}));
        DhcpIndex::build(&inventory(), 1)
    })
}

fuzz_target!(|data: &[u8]| {
    let idx = index();
    let ctx = Context {
        server_id: Ipv4Addr::new(10, 77, 0, 2),
        learn: true,
    };
    let Some(req) = decode(data) else {
        return;
    };
    if let Outcome::Reply(reply, _) = handle(idx, &ctx, &req) {
        let mut out = Vec::new();
        if encode_reply(&reply, &req, &mut out).is_ok() {
            assert!(decode(&out).is_some(), "a reply we send must decode");
        }
    }
});
