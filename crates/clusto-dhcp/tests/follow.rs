//! The responder's index follows the store: after each kind of change, an
//! index patched from the changed rows answers exactly as one built afresh.
//! SQLite and PostgreSQL.

use std::sync::RwLock;

use clusto_core::{CoreError, Inventory, Kind, NumberSpec, Value};
use clusto_dhcp::DhcpIndex;
use clusto_dhcp::index::{Entry, Skip};
use clusto_dhcp::server::refresh;
use clusto_store::testing::{BACKENDS, fresh, write};
use clusto_store::{RevisionMeta, Store};

use clusto_store::testing::Failure as E;

type Step = fn(&mut Inventory) -> Result<(), CoreError>;

fn mac(i: usize) -> String {
    format!("02:00:00:00:01:{i:02x}")
}

fn key(i: usize) -> [u8; 6] {
    [2, 0, 0, 0, 1, i as u8]
}

/// Two racks of four servers in a DHCP-enabled datacenter, each with a MAC
/// and an address from one network.
async fn build(s: &Store) {
    s.write(&RevisionMeta::new("build"), |inv| -> Result<(), E> {
        let dc = inv.create(Kind::Datacenter, "dc1", None)?;
        inv.attr_set(
            dc,
            "dhcp",
            Some("enabled"),
            NumberSpec::None,
            Value::Bool(true),
        )?;
        let net = inv.create(Kind::IpManager, "net", None)?;
        inv.configure(net, "cidr", "10.9.0.0/24")?;
        inv.configure(net, "gateway", "10.9.0.1")?;
        for r in 0..2 {
            let rack = inv.create(Kind::Rack, &format!("r{r}"), None)?;
            inv.insert(dc, rack, None)?;
            for u in 0..4 {
                let i = r * 4 + u;
                let srv = inv.create(Kind::Server, &format!("s{i}"), None)?;
                inv.insert(rack, srv, Some(format!("{}", u + 1).parse()?))?;
                inv.port_attr_set(srv, &"nic-eth:1".parse()?, "mac", &mac(i))?;
                inv.ip_allocate(net, srv, None, Some("eth0"), Some(&"nic-eth:1".parse()?))?;
            }
        }
        Ok(())
    })
    .await
    .unwrap();
}

async fn fresh_index(s: &Store) -> DhcpIndex {
    let (head, inv) = s
        .load_slice(&["dhcp", "hostname", "bootstrap"])
        .await
        .unwrap();
    DhcpIndex::build(&inv, head)
}

fn host_of(idx: &DhcpIndex, i: usize) -> Option<&Entry> {
    idx.by_mac.get(&key(i))
}

#[tokio::test]
async fn a_patched_index_answers_as_a_rebuilt_one() {
    for b in BACKENDS {
        let s = fresh(b).await.unwrap();
        build(&s).await;
        let index = RwLock::new(fresh_index(&s).await);
        assert_eq!(index.read().unwrap().len(), 8);
        let steps: Vec<(&str, Step, usize)> = vec![
            // (what, change, MACs it should re-resolve)
            (
                "a host's own option",
                |inv| {
                    let e = inv.id_of("s1")?;
                    inv.attr_set(
                        e,
                        "dhcp",
                        Some("lease-time"),
                        NumberSpec::None,
                        Value::Int(600),
                    )?;
                    Ok(())
                },
                1,
            ),
            (
                "a rack's option reaches its servers",
                |inv| {
                    let e = inv.id_of("r0")?;
                    inv.attr_set(
                        e,
                        "dhcp",
                        Some("domain-name"),
                        NumberSpec::None,
                        Value::String("r0.test".into()),
                    )?;
                    Ok(())
                },
                4,
            ),
            (
                "an unrelated attribute changes nothing",
                |inv| {
                    let e = inv.id_of("s2")?;
                    inv.attr_set(
                        e,
                        "owner",
                        None,
                        NumberSpec::None,
                        Value::String("alice".into()),
                    )?;
                    Ok(())
                },
                0,
            ),
            (
                "dhcp off for one rack",
                |inv| {
                    let e = inv.id_of("r1")?;
                    inv.attr_set(
                        e,
                        "dhcp",
                        Some("enabled"),
                        NumberSpec::None,
                        Value::Bool(false),
                    )?;
                    Ok(())
                },
                4,
            ),
            (
                "a MAC moves to another NIC value",
                |inv| {
                    let e = inv.id_of("s0")?;
                    inv.port_attr_set(e, &"nic-eth:1".parse()?, "mac", "02:00:00:00:02:00")?;
                    Ok(())
                },
                2,
            ),
            (
                "two servers claim one MAC",
                |inv| {
                    let e = inv.id_of("s2")?;
                    inv.port_attr_set(e, &"nic-eth:2".parse()?, "mac", &mac(3))?;
                    Ok(())
                },
                2,
            ),
            (
                "the duplicate goes away",
                |inv| {
                    let e = inv.id_of("s2")?;
                    inv.port_attr_del(e, &"nic-eth:2".parse()?, "mac")?;
                    Ok(())
                },
                2,
            ),
            (
                "an address released",
                |inv| {
                    let e = inv.id_of("s3")?;
                    inv.ip_release(e, None)?;
                    Ok(())
                },
                1,
            ),
            (
                "a server renamed",
                |inv| {
                    let e = inv.id_of("s1")?;
                    inv.rename(e, "web1")
                },
                1,
            ),
            (
                "a server deleted",
                |inv| {
                    let e = inv.id_of("web1")?;
                    inv.delete(e)
                },
                1,
            ),
            (
                "the gateway moves",
                |inv| {
                    let e = inv.id_of("net")?;
                    inv.configure(e, "gateway", "10.9.0.254")
                },
                6,
            ),
            (
                "a server waits to learn its MAC",
                |inv| {
                    let e = inv.create(Kind::Server, "new1", None)?;
                    inv.attr_set(
                        e,
                        "bootstrap",
                        Some("mac"),
                        NumberSpec::None,
                        Value::String("02:00:00:00:03:00".into()),
                    )?;
                    Ok(())
                },
                0,
            ),
        ];
        for (what, f, n) in steps {
            write(&s, what, f).await;
            let got = refresh(&s, &index).await.unwrap();
            assert_eq!(got, Some(n), "{b}: {what}: MACs re-resolved");
            let want = fresh_index(&s).await;
            let idx = index.read().unwrap();
            assert_eq!(idx.revision, want.revision, "{b}: {what}");
            assert_eq!(idx.by_mac, want.by_mac, "{b}: {what}");
            assert_eq!(idx.bootstrap, want.bootstrap, "{b}: {what}");
        }
        {
            let idx = index.read().unwrap();
            assert!(matches!(host_of(&idx, 5), Some(Entry::Skip(Skip::Disabled(n))) if n == "s5"));
            assert!(
                host_of(&idx, 1).is_none(),
                "{b}: the deleted server's MAC is gone"
            );
        }
        assert_eq!(refresh(&s, &index).await.unwrap(), None, "{b}: nothing new");
    }
}
