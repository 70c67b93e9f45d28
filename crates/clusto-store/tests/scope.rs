//! Point operations on a partial view decide exactly as on the whole
//! inventory, and what a partial view cannot see the database refuses.
//! Run against SQLite and PostgreSQL alike.

use clusto_core::{ChangeSet, CoreError, Inventory, Kind, NumberSpec, Value};
use clusto_store::testing::{BACKENDS, fresh, write};
use clusto_store::{RevisionMeta, Scope, Store, StoreError};

use clusto_store::testing::Failure as E;

/// Two racks in a datacenter, servers cabled to a switch, plain, exclusive
/// and grouped unique pools, an IPManager with a reserved range, a
/// NameManager, a reference attribute and a user driver.
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
        let drv = inv.create(Kind::Driver, "big-box", None)?;
        inv.configure(drv, "base", "server")?;
        inv.configure(drv, "rackUnits", "2")?;
        inv.attr_set(
            drv,
            "vendor",
            None,
            NumberSpec::None,
            Value::String("acme".into()),
        )?;
        let net = inv.create(Kind::IpManager, "net1", None)?;
        inv.configure(net, "cidr", "10.0.0.0/28")?;
        inv.configure(net, "gateway", "10.0.0.1")?;
        inv.configure(net, "reserved", "10.0.0.2-10.0.0.3")?;
        let nm = inv.create(Kind::NameManager, "names", None)?;
        inv.configure(nm, "basename", "s")?;
        inv.configure(nm, "digits", "2")?;
        let web = inv.create(Kind::Pool, "web", None)?;
        let outer = inv.create(Kind::Pool, "outer", None)?;
        inv.insert(outer, web, None)?;
        inv.attr_set(
            web,
            "role",
            None,
            NumberSpec::None,
            Value::String("web".into()),
        )?;
        inv.create(Kind::Pool, "spare", Some("exclusivepool"))?;
        for u in ["u1", "u2"] {
            let p = inv.create(Kind::Pool, u, Some("uniquepool"))?;
            inv.configure(p, "group", "env")?;
        }
        for r in 0..2 {
            let rack = inv.create(Kind::Rack, &format!("r{r}"), None)?;
            inv.insert(dc, rack, None)?;
            let sw = inv.create(Kind::NetworkSwitch, &format!("sw{r}"), None)?;
            inv.insert(rack, sw, Some("40".parse()?))?;
            for i in 0..3 {
                let id = inv.name_allocate(nm, Kind::Server, None)?;
                inv.insert(rack, id, Some(format!("{}", i + 1).parse()?))?;
                inv.insert(web, id, None)?;
                inv.ip_allocate(net, id, None, Some("eth0"), None)?;
                let port = format!("nic-eth:{}", i + 1).parse()?;
                inv.connect(id, &"nic-eth:1".parse()?, sw, &port)?;
                inv.attr_set(id, "owner", None, NumberSpec::None, Value::Ref(dc))?;
            }
        }
        let u1 = inv.id_of("u1")?;
        let s00 = inv.id_of("s00")?;
        inv.insert(u1, s00, None)?;
        let big = inv.create(Kind::Server, "big1", Some("big-box"))?;
        let r1 = inv.id_of("r1")?;
        inv.insert(r1, big, Some("10".parse()?))?;
        Ok(())
    })
    .await
    .unwrap();
}

/// What a change set says, ids included: a scoped write must persist
/// exactly the rows the whole-inventory write would.
fn rows(ch: &ChangeSet) -> String {
    format!("{:?} / {:?}", ch.added, ch.removed)
}

type Op = fn(&mut Inventory) -> Result<String, CoreError>;
type Step = fn(&mut Inventory) -> Result<(), CoreError>;

/// Runs `op` on the whole inventory and on `scope`'s partial view (neither
/// is written) and asserts the same outcome and the same rows.
async fn same(s: &Store, b: &str, what: &str, scope: Scope, op: Op) {
    let mut whole = s.load(None).await.unwrap();
    let (_, mut part) = s.load_scope(&scope, None).await.unwrap();
    let want = op(&mut whole).map_err(|e| e.to_string());
    let got = op(&mut part).map_err(|e| e.to_string());
    assert_eq!(got, want, "{b}: {what}: outcome");
    if want.is_ok() {
        assert_eq!(
            rows(&part.take_changes()),
            rows(&whole.take_changes()),
            "{b}: {what}: rows"
        );
    }
}

fn id(inv: &Inventory, n: &str) -> Result<clusto_core::EntityId, CoreError> {
    inv.id_of(n)
}

#[tokio::test]
async fn point_reads_match_the_whole_inventory() {
    for b in BACKENDS {
        let s = fresh(b).await.unwrap();
        build(&s).await;
        let whole = s.load(None).await.unwrap();
        for e in whole.entities() {
            let (_, part) = s.load_scope(&Scope::read([&e.name]), None).await.unwrap();
            let pid = part.id_of(&e.name).unwrap();
            let what = format!("{b}: {}", e.name);
            assert_eq!(
                part.resource(pid, true),
                whole.resource(e.id, true),
                "{what}"
            );
            let merged = |inv: &Inventory, id| -> Vec<String> {
                inv.merged_attrs(id, None, None, true)
                    .iter()
                    .map(|m| {
                        format!(
                            "{} {:?} {}",
                            m.attr.path(),
                            m.attr.value,
                            inv.name_of(m.source)
                        )
                    })
                    .collect()
            };
            assert_eq!(merged(&part, pid), merged(&whole, e.id), "{what}: merged");
            let names = |inv: &Inventory, v: Vec<clusto_core::EntityId>| -> Vec<String> {
                v.iter().map(|i| inv.name_of(*i).to_string()).collect()
            };
            assert_eq!(
                names(&part, part.ancestors(pid)),
                names(&whole, whole.ancestors(e.id)),
                "{what}: ancestors"
            );
            assert_eq!(
                names(&part, part.contents(pid)),
                names(&whole, whole.contents(e.id)),
                "{what}: contents"
            );
            assert_eq!(
                format!("{:?}", part.ports(pid)),
                format!("{:?}", whole.ports(e.id)),
                "{what}: ports"
            );
            let addrs = |inv: &Inventory, id| -> Vec<String> {
                inv.addresses_of(id)
                    .iter()
                    .map(|a| {
                        format!(
                            "{} {:?}",
                            a.address,
                            a.manager.map(|m| inv.name_of(m).to_string())
                        )
                    })
                    .collect()
            };
            assert_eq!(addrs(&part, pid), addrs(&whole, e.id), "{what}: addresses");
        }
        // Recursive contents and allocations when asked for.
        let (_, part) = s
            .load_scope(&Scope::read(["dc1"]).with_descendants_of("dc1"), None)
            .await
            .unwrap();
        assert_eq!(
            part.contents_recursive(part.id_of("dc1").unwrap()).len(),
            whole.contents_recursive(whole.id_of("dc1").unwrap()).len()
        );
        let (_, part) = s.load_scope(&Scope::read(["net1"]), None).await.unwrap();
        assert_eq!(
            part.allocations(part.id_of("net1").unwrap()).len(),
            6,
            "{b}"
        );
        // A name that does not exist is reported by the rule, not the loader.
        let (_, part) = s.load_scope(&Scope::read(["nope"]), None).await.unwrap();
        assert!(matches!(part.id_of("nope"), Err(CoreError::NotFound(_))));
    }
}

#[tokio::test]
async fn point_reads_at_a_revision_see_that_revision() {
    for b in BACKENDS {
        let s = fresh(b).await.unwrap();
        build(&s).await;
        let before = s.head().await.unwrap();
        s.write_scope(
            &RevisionMeta::new("move"),
            &Scope::write(["s00", "r0"]),
            |inv| -> Result<(), E> {
                let (r, s) = (inv.id_of("r0")?, inv.id_of("s00")?);
                inv.remove(r, s)?;
                inv.rename(s, "moved")?;
                Ok(())
            },
        )
        .await
        .unwrap();
        let (rev, old) = s
            .load_scope(&Scope::read(["s00"]), Some(before))
            .await
            .unwrap();
        assert_eq!(rev, before);
        let id = old.id_of("s00").unwrap();
        assert_eq!(
            old.rack_of(id).map(|r| old.name_of(r.0).to_string()),
            Some("r0".into())
        );
        let (_, now) = s.load_scope(&Scope::read(["moved"]), None).await.unwrap();
        assert_eq!(now.rack_of(now.id_of("moved").unwrap()), None, "{b}");
        let err = s.load_scope(&Scope::read(["s00"]), Some(before + 5)).await;
        assert!(matches!(err, Err(StoreError::NoSuchRevision(..))), "{b}");
    }
}

#[tokio::test]
async fn point_writes_decide_as_the_whole_inventory_does() {
    for b in BACKENDS {
        let s = fresh(b).await.unwrap();
        build(&s).await;
        let cases: Vec<(&str, Scope, Op)> = vec![
            ("attr set", Scope::write(["s00"]), |inv| {
                let e = id(inv, "s00")?;
                inv.attr_set(
                    e,
                    "owner",
                    None,
                    NumberSpec::None,
                    Value::String("alice".into()),
                )?;
                Ok(String::new())
            }),
            ("attr add auto", Scope::write(["s00"]), |inv| {
                let e = id(inv, "s00")?;
                Ok(format!(
                    "{:?}",
                    inv.attr_add(e, "tag", None, NumberSpec::Auto, Value::Int(1))?
                ))
            }),
            ("attr del", Scope::write(["s01"]), |inv| {
                let e = id(inv, "s01")?;
                Ok(inv.attr_del(e, "owner", None, None, None)?.to_string())
            }),
            (
                "insert overlapping RU",
                Scope::write(["big1"])
                    .with_descendants_of("big1")
                    .with_container("r0"),
                |inv| {
                    let (r, e) = (id(inv, "r0")?, id(inv, "big1")?);
                    inv.insert(r, e, Some("2".parse()?)).map(|_| String::new())
                },
            ),
            (
                "create in a rack",
                Scope::write(["new1"]).with_container("r0"),
                |inv| {
                    let r = id(inv, "r0")?;
                    let e = inv.create(Kind::Server, "new1", None)?;
                    inv.insert(r, e, Some("20".parse()?))?;
                    Ok(String::new())
                },
            ),
            ("create an existing name", Scope::write(["s03"]), |inv| {
                inv.create(Kind::Server, "s03", None).map(|_| String::new())
            }),
            (
                "second unique pool of a group",
                Scope::write(["s00"])
                    .with_descendants_of("s00")
                    .with_container("u2"),
                |inv| {
                    let (p, e) = (id(inv, "u2")?, id(inv, "s00")?);
                    inv.insert(p, e, None).map(|_| String::new())
                },
            ),
            (
                "rack into a unique pool its server is in",
                Scope::write(["r0"])
                    .with_descendants_of("r0")
                    .with_container("u2"),
                |inv| {
                    let (p, e) = (id(inv, "u2")?, id(inv, "r0")?);
                    inv.insert(p, e, None).map(|_| String::new())
                },
            ),
            (
                "exclusive pool of a pooled server",
                Scope::write(["s01"])
                    .with_descendants_of("s01")
                    .with_container("spare"),
                |inv| {
                    let (p, e) = (id(inv, "spare")?, id(inv, "s01")?);
                    inv.insert(p, e, None).map(|_| String::new())
                },
            ),
            (
                "remove from pool",
                Scope::write(["s02"]).with_container("web"),
                |inv| {
                    let (p, e) = (id(inv, "web")?, id(inv, "s02")?);
                    inv.remove(p, e).map(|_| String::new())
                },
            ),
            (
                "connect a taken port",
                Scope::write(["s00", "sw0"]),
                |inv| {
                    let (a, w) = (id(inv, "s00")?, id(inv, "sw0")?);
                    inv.connect(a, &"nic-eth:2".parse()?, w, &"nic-eth:2".parse()?)
                        .map(|_| String::new())
                },
            ),
            ("disconnect", Scope::write(["sw1"]), |inv| {
                let w = id(inv, "sw1")?;
                inv.disconnect(w, &"nic-eth:2".parse()?)
                    .map(|_| String::new())
            }),
            ("port attr", Scope::write(["s04"]), |inv| {
                let e = id(inv, "s04")?;
                inv.port_attr_set(e, &"nic-eth:1".parse()?, "mac", "02:00:00:00:00:04")
                    .map(|_| String::new())
            }),
            (
                "a pool into a pool inside it",
                Scope::write(["outer"])
                    .with_descendants_of("outer")
                    .with_container("web"),
                |inv| {
                    let (p, e) = (id(inv, "web")?, id(inv, "outer")?);
                    inv.insert(p, e, None).map(|_| String::new())
                },
            ),
            (
                "a free rack unit",
                Scope::write(["big1"])
                    .with_descendants_of("big1")
                    .with_container("r0"),
                |inv| {
                    let (r, e) = (id(inv, "r0")?, id(inv, "big1")?);
                    inv.insert(r, e, Some("20".parse()?)).map(|_| String::new())
                },
            ),
            (
                "rename onto a taken name",
                Scope::write(["s05", "s04"]),
                |inv| {
                    let e = id(inv, "s05")?;
                    inv.rename(e, "s04").map(|_| String::new())
                },
            ),
            ("rename", Scope::write(["s05", "web5"]), |inv| {
                let e = id(inv, "s05")?;
                inv.rename(e, "web5").map(|_| String::new())
            }),
            (
                "delete a cabled, addressed, pooled server",
                Scope::write(["s03"]),
                |inv| {
                    let e = id(inv, "s03")?;
                    inv.delete(e).map(|_| String::new())
                },
            ),
            (
                "delete a referenced datacenter",
                Scope::write(["dc1"]),
                |inv| {
                    let e = id(inv, "dc1")?;
                    inv.delete(e).map(|_| String::new())
                },
            ),
            (
                "delete an IPManager with allocations",
                Scope::write(["net1"]),
                |inv| {
                    let e = id(inv, "net1")?;
                    inv.delete(e).map(|_| String::new())
                },
            ),
            ("delete a driver in use", Scope::write(["big-box"]), |inv| {
                let e = id(inv, "big-box")?;
                inv.delete(e).map(|_| String::new())
            }),
            (
                "ip allocate next",
                Scope::write(["big1"]).with_next_address("net1"),
                |inv| {
                    let (m, e) = (id(inv, "net1")?, id(inv, "big1")?);
                    Ok(inv.ip_allocate(m, e, None, None, None)?.to_string())
                },
            ),
            (
                "ip allocate a held address",
                Scope::write(["net1", "big1"]).with_address("10.0.0.5".parse().unwrap()),
                |inv| {
                    let (m, e) = (id(inv, "net1")?, id(inv, "big1")?);
                    Ok(inv
                        .ip_allocate(m, e, Some("10.0.0.5".parse().unwrap()), None, None)?
                        .to_string())
                },
            ),
            ("ip release", Scope::write(["s02"]), |inv| {
                let e = id(inv, "s02")?;
                Ok(format!("{:?}", inv.ip_release(e, None)?))
            }),
            (
                "name allocate",
                Scope::write(["names"]).with_next_name("names"),
                |inv| {
                    let m = id(inv, "names")?;
                    let e = inv.name_allocate(m, Kind::Server, None)?;
                    Ok(inv.name_of(e).to_string())
                },
            ),
            (
                "merged value through a user driver",
                Scope::read(["big1"]),
                |inv| {
                    let e = id(inv, "big1")?;
                    Ok(format!("{:?}", inv.merged_value(e, "vendor", None)))
                },
            ),
        ];
        for (what, scope, op) in cases {
            same(&s, b, what, scope, op).await;
        }
    }
}

#[tokio::test]
async fn allocation_probes_find_free_rows_past_taken_ones() {
    for b in BACKENDS {
        let s = fresh(b).await.unwrap();
        build(&s).await;
        // s06..s09 are taken by hand: the NameManager skips them; the
        // IPManager's /28 has 14 hosts, 2 reserved, gateway and 6 taken.
        s.write(&RevisionMeta::new("by hand"), |inv| -> Result<(), E> {
            for n in ["s06", "s07", "s09"] {
                inv.create(Kind::Server, n, None)?;
            }
            Ok(())
        })
        .await
        .unwrap();
        let mut got = Vec::new();
        loop {
            let w = s
                .write_scope(
                    &RevisionMeta::new("alloc"),
                    &Scope::write(["big1"]).with_next_address("net1"),
                    |inv| -> Result<_, E> {
                        let (m, e) = (inv.id_of("net1")?, inv.id_of("big1")?);
                        Ok(inv.ip_allocate(m, e, None, None, None)?)
                    },
                )
                .await;
            match w {
                Ok(w) => got.push(w.value.to_string()),
                Err(E::Core(CoreError::Exhausted(m))) => {
                    assert_eq!(m, "net1");
                    break;
                }
                Err(e) => panic!("{b}: {e}"),
            }
        }
        assert_eq!(
            got,
            [
                "10.0.0.10",
                "10.0.0.11",
                "10.0.0.12",
                "10.0.0.13",
                "10.0.0.14"
            ],
            "{b}: after the last handed out, then exhausted"
        );
        let w = s
            .write_scope(
                &RevisionMeta::new("name"),
                &Scope::write(["names"]).with_next_name("names"),
                |inv| -> Result<_, E> {
                    let m = inv.id_of("names")?;
                    let e = inv.name_allocate(m, Kind::Server, None)?;
                    Ok(inv.name_of(e).to_string())
                },
            )
            .await
            .unwrap();
        assert_eq!(w.value, "s08", "{b}");
    }
}

/// A write whose view lacks the conflicting row (here: a scope too narrow
/// on purpose, as a racing writer's would be) is refused by the database
/// and changes nothing.
#[tokio::test]
async fn the_database_refuses_what_a_partial_view_missed() {
    for b in BACKENDS {
        let s = fresh(b).await.unwrap();
        build(&s).await;
        let other = Store::open(&url_of(&s, b).await).await.unwrap();
        let head = s.head().await.unwrap();
        let dup_name = other
            .write_scope(
                &RevisionMeta::new("rename"),
                &Scope::write(["s00"]),
                |inv| -> Result<(), E> {
                    let e = inv.id_of("s00")?;
                    inv.rename(e, "s01")?; // s01 is not in this view
                    Ok(())
                },
            )
            .await;
        assert!(
            matches!(dup_name, Err(E::Store(StoreError::Db(_)))),
            "{b}: {dup_name:?}"
        );
        let dup_addr = other
            .write_scope(
                &RevisionMeta::new("bind"),
                &Scope::write(["big1"]),
                |inv| -> Result<(), E> {
                    let (m, e) = (inv.id_of("net1")?, inv.id_of("big1")?);
                    // 10.0.0.4 is s00's; this view did not load it.
                    inv.ip_allocate(m, e, Some("10.0.0.4".parse().unwrap()), None, None)?;
                    Ok(())
                },
            )
            .await;
        assert!(
            matches!(dup_addr, Err(E::Store(StoreError::Db(_)))),
            "{b}: {dup_addr:?}"
        );
        // r1's context is loaded for big1 (its rack), but not r1's other
        // rows: unit 2 looks free to this view; s04 holds it.
        let unit_taken = other
            .write_scope(
                &RevisionMeta::new("place"),
                &Scope::write(["big1"]),
                |inv| -> Result<(), E> {
                    let r1 = inv.id_of("r1")?;
                    let n = inv.create(Kind::Server, "n1", None)?;
                    inv.insert(r1, n, Some("2".parse()?))?;
                    Ok(())
                },
            )
            .await;
        assert!(
            matches!(&unit_taken, Err(E::Store(StoreError::Refused { object, rule }))
                if object == "n1" && rule.contains("overlaps s04")),
            "{b}: {unit_taken:?}"
        );
        assert_eq!(s.head().await.unwrap(), head, "{b}: nothing written");
        // big1 in exclusive pool `spare`; a view that holds big1 only as the
        // target of s00's `buddy` reference does not see that membership.
        write(&s, "big1 spare", |inv| {
            let (spare, big, s00) = (inv.id_of("spare")?, inv.id_of("big1")?, inv.id_of("s00")?);
            inv.insert(spare, big, None)?;
            inv.attr_set(s00, "buddy", None, NumberSpec::None, Value::Ref(big))?;
            Ok(())
        })
        .await;
        let head = s.head().await.unwrap();
        let two_pools = other
            .write_scope(
                &RevisionMeta::new("join"),
                &Scope::write(["s00"]),
                |inv| -> Result<(), E> {
                    let (web, big) = (inv.id_of("web")?, inv.id_of("big1")?);
                    inv.insert(web, big, None)?;
                    Ok(())
                },
            )
            .await;
        assert!(
            matches!(&two_pools, Err(E::Store(StoreError::Refused { object, rule }))
                if object == "big1" && rule.contains("exclusive pool spare and in pool web")),
            "{b}: {two_pools:?}"
        );
        assert_eq!(s.head().await.unwrap(), head, "{b}: nothing written");
        let whole = s.load(None).await.unwrap();
        assert_eq!(
            whole
                .address("10.0.0.4".parse().unwrap())
                .map(|a| whole.name_of(a.holder)),
            Some("s00")
        );
    }
}

async fn url_of(s: &Store, b: &str) -> String {
    match b {
        "sqlite" => {
            let file: String =
                sqlx::query_scalar("SELECT file FROM pragma_database_list WHERE name = 'main'")
                    .fetch_one(s.pool())
                    .await
                    .unwrap();
            format!("sqlite://{file}")
        }
        _ => {
            let db: String = sqlx::query_scalar("SELECT CAST(current_database() AS TEXT)")
                .fetch_one(s.pool())
                .await
                .unwrap();
            let admin = clusto_store::testing::pg_admin_url();
            format!("{}/{db}", admin.rsplit_once('/').unwrap().0)
        }
    }
}

/// Asserts that every entity a fresh load of `scope` holds reads the same
/// in the followed `view`; returns the fresh load.
async fn reads_as_fresh(s: &Store, view: &Inventory, scope: &Scope, what: &str) -> Inventory {
    let (_, fresh) = s.load_scope(scope, None).await.unwrap();
    for e in fresh.entities() {
        let mine = view
            .id_of(&e.name)
            .unwrap_or_else(|_| panic!("{what}: {} missing", e.name));
        assert_eq!(
            view.resource(mine, true),
            fresh.resource(e.id, true),
            "{what}: {}",
            e.name
        );
    }
    fresh
}

/// A view loaded once and then kept current from the changed rows reads
/// the same as one loaded afresh, step after step; rows about entities it
/// does not hold are not read into it.
#[tokio::test]
async fn a_followed_view_matches_a_fresh_load() {
    for b in BACKENDS {
        let s = fresh(b).await.unwrap();
        build(&s).await;
        write(&s, "vm manager", |inv| {
            let m = inv.create(Kind::VmManager, "m1", None)?;
            let h = inv.id_of("s00")?;
            inv.insert(m, h, None)?;
            let v = inv.create(Kind::VirtualMachine, "v1", None)?;
            inv.configure(v, "manager", "m1")?;
            Ok(())
        })
        .await;
        // A write about a plain server does not read the VMs; one about a
        // host (or a VM, or a manager) reads them all, with the hosts.
        let (_, plain) = s.load_scope(&Scope::write(["s03"]), None).await.unwrap();
        assert!(plain.id_of("v1").is_err(), "{b}");
        let (_, host) = s.load_scope(&Scope::write(["s00"]), None).await.unwrap();
        assert!(host.id_of("v1").is_ok(), "{b}");
        let (_, vm) = s.load_scope(&Scope::write(["v1"]), None).await.unwrap();
        let m1 = vm.id_of("m1").unwrap();
        assert_eq!(vm.contents(m1).len(), 1, "{b}: the manager's hosts");
        let scope = Scope::write(Vec::<String>::new()).with_vms();
        let (mut rev, mut view) = s.load_scope(&scope, None).await.unwrap();
        assert!(
            view.id_of("s03").is_err(),
            "{b}: servers outside the VM world are not loaded"
        );
        let steps: Vec<(&'static str, Step)> = vec![
            ("vm attr", |inv| {
                let v = inv.id_of("v1")?;
                inv.attr_set(
                    v,
                    "owner",
                    None,
                    NumberSpec::None,
                    Value::String("bob".into()),
                )?;
                Ok(())
            }),
            ("unrelated server", |inv| {
                let e = inv.id_of("s03")?;
                inv.attr_set(
                    e,
                    "owner",
                    None,
                    NumberSpec::None,
                    Value::String("eve".into()),
                )?;
                Ok(())
            }),
            ("new vm", |inv| {
                let v = inv.create(Kind::VirtualMachine, "v2", None)?;
                inv.configure(v, "manager", "m1")?;
                inv.configure(v, "cpus", "2")?;
                Ok(())
            }),
            ("rename vm", |inv| {
                let v = inv.id_of("v1")?;
                inv.rename(v, "v1b")
            }),
            ("host attr", |inv| {
                let h = inv.id_of("s00")?;
                inv.attr_set(
                    h,
                    "system",
                    Some("memory"),
                    NumberSpec::None,
                    Value::Int(65536),
                )?;
                Ok(())
            }),
            ("a server becomes a host", |inv| {
                let (m, h) = (inv.id_of("m1")?, inv.id_of("s04")?);
                inv.insert(m, h, None)
            }),
            // Found by `controller --kube`: both new in one revision, the
            // manager's kind known only from the change itself.
            ("a new manager with a new host", |inv| {
                let m = inv.create(Kind::VmManager, "m2", None)?;
                let h = inv.create(Kind::Server, "hv9", None)?;
                inv.insert(m, h, None)
            }),
            ("delete vm", |inv| {
                let v = inv.id_of("v2")?;
                inv.delete(v)
            }),
        ];
        for (what, f) in steps {
            write(&s, what, f).await;
            let (now, changed) = s.follow(&mut view, rev, &scope).await.unwrap();
            assert!(now > rev, "{b}: {what}");
            assert_eq!(changed, what != "unrelated server", "{b}: {what}");
            rev = now;
            let fresh = reads_as_fresh(&s, &view, &scope, &format!("{b}: {what}")).await;
            let vms = |inv: &Inventory| -> Vec<String> {
                inv.entities_of_kind(Kind::VirtualMachine)
                    .iter()
                    .map(|e| e.name.clone())
                    .collect()
            };
            assert_eq!(vms(&view), vms(&fresh), "{b}: {what}");
        }
        assert!(view.id_of("s03").is_err(), "{b}");
        // Changes since a revision: exactly the rows of the revisions after it.
        let ch = s.changes_since(rev - 1).await.unwrap();
        assert_eq!((ch.from, ch.to), (rev - 1, rev));
        assert!(ch.added.is_empty(), "{b}: a delete adds nothing");
        assert!(
            ch.retired
                .iter()
                .any(|(_, f)| matches!(f, clusto_core::Fact::Entity(e) if e.name == "v2"))
        );
        assert!(s.changes_since(rev).await.unwrap().is_empty());
    }
}

/// A rack's view (its switch, everything inside it) follows servers that
/// arrive: a new one, with every row in the change, joins in place; an
/// existing one moved in brings rows the change lacks, and the view is
/// loaded again. Either way it reads as a fresh load does.
#[tokio::test]
async fn a_rack_view_takes_in_what_enters_the_rack() {
    for b in BACKENDS {
        let s = fresh(b).await.unwrap();
        build(&s).await;
        let scope = Scope::write(["sw0"]).with_descendants_of("r0");
        let (mut rev, mut view) = s.load_scope(&scope, None).await.unwrap();
        assert!(
            view.id_of("s03").is_err(),
            "{b}: r1's servers are not loaded"
        );
        let steps: Vec<(&'static str, Step, bool)> = vec![
            (
                "a new server placed and cabled",
                |inv| {
                    let (r, sw, net) = (inv.id_of("r0")?, inv.id_of("sw0")?, inv.id_of("net1")?);
                    let n = inv.create(Kind::Server, "new1", None)?;
                    inv.insert(r, n, Some("20".parse()?))?;
                    inv.connect(n, &"nic-eth:1".parse()?, sw, &"nic-eth:20".parse()?)?;
                    inv.port_attr_set(n, &"nic-eth:1".parse()?, "mac", "02:00:00:00:00:20")?;
                    inv.ip_allocate(net, n, None, Some("eth0"), None)?;
                    Ok(())
                },
                true,
            ),
            (
                "a server of another rack",
                |inv| {
                    let e = inv.id_of("s04")?;
                    inv.attr_set(
                        e,
                        "owner",
                        None,
                        NumberSpec::None,
                        Value::String("x".into()),
                    )?;
                    Ok(())
                },
                false,
            ),
            (
                "an existing server moved in",
                |inv| {
                    let (r1, r0, e) = (inv.id_of("r1")?, inv.id_of("r0")?, inv.id_of("s05")?);
                    inv.remove(r1, e)?;
                    inv.insert(r0, e, Some("30".parse()?))
                },
                true,
            ),
        ];
        for (what, f, changes) in steps {
            write(&s, what, f).await;
            let (now, changed) = s.follow(&mut view, rev, &scope).await.unwrap();
            assert_eq!(changed, changes, "{b}: {what}");
            rev = now;
            reads_as_fresh(&s, &view, &scope, &format!("{b}: {what}")).await;
        }
        let new1 = view.id_of("new1").unwrap();
        assert_eq!(view.rack_of(new1).unwrap().1.to_string(), "20", "{b}");
        assert!(view.id_of("s05").is_ok(), "{b}");
    }
}

/// Group commit: several writes under one lock and one commit, each its
/// own revision; one that fails (its closure, or a rule only the database
/// sees) leaves nothing, and the others stand.
#[tokio::test]
async fn writes_grouped_in_one_commit_stand_or_fall_alone() {
    for b in BACKENDS {
        let s = fresh(b).await.unwrap();
        build(&s).await;
        let head = s.head().await.unwrap();
        let set = |v: &'static str| {
            move |inv: &mut Inventory| -> Result<(), E> {
                let e = inv.id_of("s00")?;
                inv.attr_set(e, "note", None, NumberSpec::None, Value::String(v.into()))?;
                Ok(())
            }
        };
        type W = Box<dyn Fn(&mut Inventory) -> Result<(), E>>;
        let note = |inv: &Inventory| {
            inv.attr_value(inv.id_of("s00").unwrap(), "note", None)
                .map(|v| v.to_text().unwrap())
        };
        // All accepted: persisted together; a row the batch's next revision
        // retires is history at once.
        let ok: Vec<(RevisionMeta, W)> = vec![
            (RevisionMeta::new("x"), Box::new(set("x"))),
            (RevisionMeta::new("y"), Box::new(set("y"))),
            (RevisionMeta::new("y again"), Box::new(set("y"))),
        ];
        let out = s
            .write_scope_each(&Scope::write(["s00"]), ok)
            .await
            .unwrap();
        let revs: Vec<Option<i64>> = out.iter().map(|r| r.as_ref().unwrap().revision).collect();
        assert_eq!(revs, [Some(head + 1), Some(head + 2), None], "{b}");
        let (_, at1) = s
            .load_scope(&Scope::read(["s00"]), Some(head + 1))
            .await
            .unwrap();
        assert_eq!(note(&at1).as_deref(), Some("x"), "{b}");
        let (_, now) = s.load_scope(&Scope::read(["s00"]), None).await.unwrap();
        assert_eq!(note(&now).as_deref(), Some("y"), "{b}");
        let head = head + 2;
        let writes: Vec<(RevisionMeta, W)> = vec![
            (RevisionMeta::new("a"), Box::new(set("a"))),
            // s01 exists, but this view never loaded it: the unique index
            // refuses the second s01.
            (
                RevisionMeta::new("b"),
                Box::new(|inv: &mut Inventory| {
                    inv.create(Kind::Server, "s01", None)?;
                    Ok(())
                }),
            ),
            (
                RevisionMeta::new("c"),
                Box::new(|inv: &mut Inventory| {
                    let e = inv.id_of("s00")?;
                    inv.attr_set(e, "half", None, NumberSpec::None, Value::Int(1))?;
                    Err(E::Core(CoreError::Gone))
                }),
            ),
            (RevisionMeta::new("d"), Box::new(set("d"))),
            (RevisionMeta::new("e"), Box::new(set("d"))),
        ];
        let out = s
            .write_scope_each(
                &Scope::write(["s00"]),
                writes
                    .into_iter()
                    .map(|(m, f)| (m, move |inv: &mut Inventory| f(inv))),
            )
            .await
            .unwrap();
        let revs: Vec<Option<Option<i64>>> = out
            .iter()
            .map(|r| r.as_ref().ok().map(|w| w.revision))
            .collect();
        assert_eq!(
            revs,
            [
                Some(Some(head + 1)),
                None,
                None,
                Some(Some(head + 2)),
                Some(None)
            ],
            "{b}"
        );
        assert!(
            matches!(
                &out[1],
                Err(E::Store(StoreError::Refused { .. }) | E::Store(_))
            ),
            "{b}"
        );
        assert_eq!(s.head().await.unwrap(), head + 2, "{b}");
        let msgs: Vec<String> = s
            .revisions(Some(2), None)
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.message)
            .collect();
        assert_eq!(msgs, ["d", "a"], "{b}");
        let (_, inv) = s.load_scope(&Scope::read(["s00"]), None).await.unwrap();
        let e = inv.id_of("s00").unwrap();
        assert_eq!(
            inv.attr_value(e, "note", None).unwrap().to_text().unwrap(),
            "d"
        );
        assert!(
            inv.attr_value(e, "half", None).is_none(),
            "{b}: the failed write left nothing"
        );
        let whole = s.load(None).await.unwrap();
        assert_eq!(
            whole
                .entities_of_kind(Kind::Server)
                .iter()
                .filter(|x| x.name == "s01")
                .count(),
            1
        );
    }
}
