//! The store's behaviour, run against SQLite and PostgreSQL alike.

use clusto_core::query::parse;
use clusto_core::{CoreError, Inventory, Kind, NumberSpec, Value};
use clusto_store::testing::{BACKENDS, fresh, write as w};
use clusto_store::{RevisionMeta, Store, StoreError};

#[derive(Debug, thiserror::Error)]
enum E {
    #[error(transparent)]
    S(#[from] StoreError),
    #[error(transparent)]
    C(#[from] CoreError),
}

fn m(msg: &str) -> RevisionMeta {
    RevisionMeta::new(msg)
}

fn snapshot(inv: &Inventory) -> Vec<serde_json::Value> {
    inv.entities()
        .iter()
        .map(|e| inv.resource(e.id, true))
        .collect()
}

/// A small but complete inventory: every fact type and value type.
async fn build(s: &Store) {
    w(s, "build", |inv| {
        let dc = inv.create(Kind::Datacenter, "dc1", None)?;
        let r = inv.create(Kind::Rack, "r1", None)?;
        inv.insert(dc, r, None)?;
        let sw = inv.create(Kind::NetworkSwitch, "sw1", None)?;
        inv.insert(r, sw, Some("45".parse()?))?;
        let net = inv.create(Kind::IpManager, "net1", None)?;
        inv.configure(net, "cidr", "10.0.0.0/24")?;
        inv.configure(net, "gateway", "10.0.0.1")?;
        inv.configure(net, "reserved", "10.0.0.2-10.0.0.9")?;
        let web = inv.create(Kind::Pool, "web", None)?;
        let un = inv.create(Kind::Pool, "unallocated", Some("exclusivepool"))?;
        for i in 0..4 {
            let s = inv.create(Kind::Server, &format!("s{i}"), None)?;
            inv.insert(r, s, Some(format!("{}", i + 1).parse()?))?;
            inv.insert(if i % 2 == 0 { web } else { un }, s, None)?;
            inv.ip_allocate(net, s, None, Some("eth0"), Some(&"nic-eth:1".parse()?))?;
            inv.connect(
                s,
                &"nic-eth:1".parse()?,
                sw,
                &format!("nic-eth:{}", i + 1).parse()?,
            )?;
            inv.port_attr_set(
                s,
                &"nic-eth:1".parse()?,
                "mac",
                &format!("02:00:00:00:00:0{i}"),
            )?;
            inv.attr_set(
                s,
                "system",
                Some("disk"),
                NumberSpec::None,
                Value::Int(i * 100),
            )?;
        }
        let s0 = inv.id_of("s0")?;
        inv.attr_add(s0, "f", None, NumberSpec::None, Value::Float(1.5))?;
        inv.attr_add(s0, "b", None, NumberSpec::None, Value::Bool(true))?;
        inv.attr_add(
            s0,
            "ip",
            None,
            NumberSpec::Auto,
            Value::Ip("192.0.2.1".parse().unwrap()),
        )?;
        inv.attr_add(
            s0,
            "t",
            None,
            NumberSpec::None,
            Value::parse_as(clusto_core::ValueType::DateTime, "2024-01-02T03:04:05Z")?,
        )?;
        inv.attr_add(
            s0,
            "j",
            None,
            NumberSpec::None,
            Value::Json(serde_json::json!({"a": [1, "x"]})),
        )?;
        inv.attr_add(s0, "owner", None, NumberSpec::None, Value::Ref(dc))?;
        inv.attr_set(
            dc,
            "dhcp",
            Some("enabled"),
            NumberSpec::None,
            Value::Bool(true),
        )?;
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn facts_round_trip_through_the_store() {
    for b in BACKENDS {
        let s = fresh(b).await.unwrap();
        build(&s).await;
        let loaded = s.load(None).await.unwrap();
        assert_eq!(loaded.len(), 10, "{b}");
        let s0 = loaded.id_of("s0").unwrap();
        assert_eq!(
            loaded.attr_value(s0, "f", None),
            Some(&Value::Float(1.5)),
            "{b}"
        );
        assert_eq!(
            loaded.attr_value(s0, "owner", None),
            Some(&Value::Ref(loaded.id_of("dc1").unwrap()))
        );
        assert_eq!(loaded.rack_of(s0).unwrap().1.start, 1);
        assert_eq!(
            loaded.addresses_of(s0)[0].address.to_string(),
            "10.0.0.10",
            "{b}: reserved range skipped"
        );
        assert_eq!(
            loaded
                .port_peer(s0, &"nic-eth:1".parse().unwrap())
                .unwrap()
                .1
                .to_string(),
            "nic-eth:1"
        );
        assert_eq!(
            loaded.find_by_mac("02:00:00:00:00:00"),
            vec![(s0, "nic-eth:1".parse().unwrap())]
        );
        assert_eq!(
            loaded.merged_value(s0, "dhcp", Some("enabled")).unwrap().0,
            &Value::Bool(true)
        );
        // A second load is identical, and writing nothing makes no revision.
        assert_eq!(snapshot(&loaded), snapshot(&s.load(None).await.unwrap()));
        let head = s.head().await.unwrap();
        assert_eq!(w(&s, "noop", |_| Ok(())).await, None);
        let again = w(&s, "same", |inv| {
            let id = inv.id_of("s1")?;
            inv.attr_set(
                id,
                "system",
                Some("disk"),
                NumberSpec::None,
                Value::Int(100),
            )?;
            Ok(())
        })
        .await;
        assert_eq!(again, None, "{b}: setting an equal value changes nothing");
        assert_eq!(s.head().await.unwrap(), head);
    }
}

#[tokio::test]
async fn failed_writes_change_nothing() {
    for b in BACKENDS {
        let s = fresh(b).await.unwrap();
        build(&s).await;
        let before = snapshot(&s.load(None).await.unwrap());
        let head = s.head().await.unwrap();
        let r = s
            .write(&m("bad"), |inv| -> Result<(), E> {
                let x = inv.create(Kind::Server, "half", None)?;
                let r = inv.id_of("r1")?;
                inv.insert(r, x, Some("1".parse()?))?; // RU 1 is taken: fails after a create
                Ok(())
            })
            .await;
        let err = r.unwrap_err().to_string();
        assert!(err.contains("overlaps s0"), "{b}: {err}");
        assert_eq!(s.head().await.unwrap(), head);
        assert_eq!(snapshot(&s.load(None).await.unwrap()), before);
    }
}

#[tokio::test]
async fn history_and_reads_at_a_revision() {
    for b in BACKENDS {
        let s = fresh(b).await.unwrap();
        let r1 = w(&s, "create", |inv| {
            let id = inv.create(Kind::Server, "s1", None)?;
            inv.attr_set(
                id,
                "role",
                None,
                NumberSpec::None,
                Value::String("web".into()),
            )?;
            Ok(())
        })
        .await
        .unwrap();
        let r2 = w(&s, "change", |inv| {
            let id = inv.id_of("s1")?;
            inv.attr_set(
                id,
                "role",
                None,
                NumberSpec::None,
                Value::String("db".into()),
            )?;
            Ok(())
        })
        .await
        .unwrap();
        let r3 = w(&s, "rename", |inv| {
            let id = inv.id_of("s1")?;
            inv.rename(id, "db1")
        })
        .await
        .unwrap();
        let r4 = w(&s, "delete", |inv| {
            let id = inv.id_of("db1")?;
            inv.delete(id)
        })
        .await
        .unwrap();
        assert_eq!((r1, r2, r3, r4), (1, 2, 3, 4), "{b}");
        let at1 = s.load(Some(1)).await.unwrap();
        let id = at1.id_of("s1").unwrap();
        assert_eq!(
            at1.attr_value(id, "role", None),
            Some(&Value::String("web".into()))
        );
        let at2 = s.load(Some(2)).await.unwrap();
        assert_eq!(
            at2.attr_value(id, "role", None),
            Some(&Value::String("db".into()))
        );
        assert!(s.load(Some(3)).await.unwrap().get("db1").is_ok());
        assert!(s.load(None).await.unwrap().is_empty());
        assert!(matches!(
            s.load(Some(9)).await,
            Err(StoreError::NoSuchRevision(9, 4))
        ));
        // Deleted things stay in history, under every name they had.
        let h = s.history(Some("s1"), None).await.unwrap();
        assert_eq!(
            h.iter().map(|e| e.revision.rev).collect::<Vec<_>>(),
            vec![4, 3, 2, 1]
        );
        assert_eq!(h[1].changes[0].op, '~');
        assert!(
            h[1].changes[0].text.contains("renamed to db1"),
            "{:?}",
            h[1].changes
        );
        assert!(
            h[2].changes
                .iter()
                .any(|c| c.op == '~' && c.text.contains("web → db")),
            "{:?}",
            h[2].changes
        );
        assert_eq!(s.history(Some("db1"), None).await.unwrap().len(), 4);
        assert!(h[0].changes.iter().all(|c| c.op == '-'));
        assert_eq!(h[3].revision.message, "create");
        assert!(matches!(
            s.history(Some("nope"), None).await,
            Err(StoreError::Core(CoreError::NotFound(_)))
        ));
        assert_eq!(s.history(None, Some(2)).await.unwrap().len(), 2);
        // queries at a revision
        let q = parse("name:s*").unwrap();
        assert_eq!(s.query(&q, Some(1)).await.unwrap(), vec!["s1"]);
        assert!(s.query(&q, None).await.unwrap().is_empty());
    }
}

#[tokio::test]
async fn queries_run_in_sql() {
    for b in BACKENDS {
        let s = fresh(b).await.unwrap();
        build(&s).await;
        let q = |e: &'static str| {
            let s = s.clone();
            async move { s.query(&parse(e).unwrap(), None).await }
        };
        assert_eq!(
            q("kind:server").await.unwrap(),
            ["s0", "s1", "s2", "s3"],
            "{b}"
        );
        assert_eq!(q("kind:server and in:web").await.unwrap(), ["s0", "s2"]);
        assert_eq!(
            q("kind:server and in:dc1 and in:unallocated")
                .await
                .unwrap(),
            ["s1", "s3"]
        );
        assert_eq!(
            q("in:dc1 and not kind:server").await.unwrap(),
            ["r1", "sw1"]
        );
        assert_eq!(q("attr:system.disk=0").await.unwrap(), ["s0"]);
        assert_eq!(q("attr:system.disk,200").await.unwrap(), ["s2"]);
        assert_eq!(
            q("kind:server and not attr:system.disk=0").await.unwrap(),
            ["s1", "s2", "s3"]
        );
        assert_eq!(q("attr:b=true").await.unwrap(), ["s0"]);
        assert_eq!(q("attr:b=yes").await.unwrap(), ["s0"], "typed bool compare");
        assert_eq!(
            q("attr:owner=dc1").await.unwrap(),
            ["s0"],
            "references compare by name"
        );
        assert_eq!(q("attr:dhcp").await.unwrap(), ["dc1"]);
        assert_eq!(q("attr:dhcp.nothing").await.unwrap(), Vec::<String>::new());
        assert_eq!(
            q("connected-to:sw1").await.unwrap(),
            ["s0", "s1", "s2", "s3"]
        );
        assert_eq!(q("connected-to:s2").await.unwrap(), ["sw1"]);
        assert_eq!(
            q("name:s? and (in:web or attr:system.disk=300)")
                .await
                .unwrap(),
            ["s0", "s2", "s3"]
        );
        assert_eq!(
            q("name:*1").await.unwrap(),
            ["dc1", "net1", "r1", "s1", "sw1"]
        );
        assert_eq!(
            q("name:S*").await.unwrap(),
            Vec::<String>::new(),
            "globs are case-sensitive"
        );
        assert_eq!(q("driver:exclusivepool").await.unwrap(), ["unallocated"]);
        let e = q("in:dc9").await.unwrap_err();
        assert_eq!(e.to_string(), "dc9 not found");
        // the query is SQL, not an in-memory filter
        let (sql, _, _) =
            clusto_store::compile_query(&parse("in:dc1 and attr:x=1").unwrap(), s.backend(), None);
        assert!(
            sql.contains("WITH RECURSIVE") && sql.contains("FROM attrs"),
            "{sql}"
        );
        // nested pools are followed by in:
        w(&s, "nest", |inv| {
            let all = inv.create(Kind::Pool, "all", None)?;
            let web = inv.id_of("web")?;
            inv.insert(all, web, None)
        })
        .await;
        assert_eq!(q("kind:server and in:all").await.unwrap(), ["s0", "s2"]);
    }
}

#[tokio::test]
async fn concurrent_allocations_never_collide() {
    for b in BACKENDS {
        let s = fresh(b).await.unwrap();
        w(&s, "setup", |inv| {
            let n = inv.create(Kind::IpManager, "net", None)?;
            inv.configure(n, "cidr", "10.1.0.0/24")?;
            for i in 0..8 {
                inv.create(Kind::Server, &format!("h{i}"), None)?;
            }
            Ok(())
        })
        .await;
        let mut tasks = Vec::new();
        for i in 0..8 {
            let s = s.clone();
            tasks.push(tokio::spawn(async move {
                let mut got = Vec::new();
                for _ in 0..5 {
                    let r = s
                        .write(&m("alloc"), |inv| -> Result<_, E> {
                            let n = inv.id_of("net")?;
                            let h = inv.id_of(&format!("h{i}"))?;
                            Ok(inv.ip_allocate(n, h, None, None, None)?)
                        })
                        .await
                        .unwrap();
                    got.push(r.value);
                }
                got
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        let n = all.len();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), n, "{b}: duplicate addresses handed out");
        assert_eq!(
            s.load(None)
                .await
                .unwrap()
                .allocations(s.load(None).await.unwrap().id_of("net").unwrap())
                .len(),
            40
        );
    }
}

#[tokio::test]
async fn bad_urls_are_refused() {
    assert!(matches!(
        Store::open("mysql://x").await,
        Err(StoreError::UnsupportedUrl(_))
    ));
    assert!(matches!(
        Store::open("sqlite://").await,
        Err(StoreError::UnsupportedUrl(_))
    ));
}

#[tokio::test]
async fn two_handles_see_each_others_writes() {
    for b in BACKENDS {
        let url = clusto_store::testing::fresh_url(b).await.unwrap();
        let a = Store::open(&url).await.unwrap();
        let c = Store::open(&url).await.unwrap();
        w(&a, "a1", |inv| {
            inv.create(Kind::Server, "s1", None).map(|_| ())
        })
        .await;
        assert!(c.load(None).await.unwrap().get("s1").is_ok(), "{b}");
        w(&c, "c1", |inv| {
            inv.create(Kind::Server, "s2", None).map(|_| ())
        })
        .await;
        // `a` still holds its copy from before c's write; it must notice.
        assert!(a.load(None).await.unwrap().get("s2").is_ok(), "{b}");
        w(&a, "a2", |inv| {
            let s2 = inv.id_of("s2")?;
            inv.rename(s2, "s3")
        })
        .await;
        let inv = c.load(None).await.unwrap();
        assert!(inv.get("s3").is_ok() && inv.get("s2").is_err(), "{b}");
        // a failed write leaves no trace in the writer's copy either
        let r = a
            .write(&m("bad"), |inv| -> Result<(), E> {
                inv.create(Kind::Server, "ghost", None)?;
                Err(CoreError::Gone.into())
            })
            .await;
        assert!(r.is_err());
        assert!(a.load(None).await.unwrap().get("ghost").is_err(), "{b}");
        assert_eq!(a.head().await.unwrap(), 3);
    }
}

/// `head` is exact the moment another writer's commit returns, whether it
/// is answered by a query or (SQLite) by the unchanged wal-index header:
/// a second `Store` on the same database stands for another process, and
/// a writer on its own connection that closes between writes makes SQLite
/// delete and recreate the `-shm` file.
#[tokio::test]
async fn head_follows_every_commit_of_every_writer() {
    for b in BACKENDS {
        let url = clusto_store::testing::fresh_url(b).await.unwrap();
        let reader = Store::open(&url).await.unwrap();
        let writer = Store::open(&url).await.unwrap();
        for i in 0..40 {
            // Asked twice: the second may come from the probe.
            let before = reader.head().await.unwrap();
            assert_eq!(reader.head().await.unwrap(), before, "{b}");
            let rev = if i % 10 == 9 {
                let once = Store::open(&url).await.unwrap();
                let r = w(&once, "one-off", |inv| {
                    inv.create(Kind::Server, &format!("o{i}"), None).map(|_| ())
                })
                .await;
                drop(once);
                r
            } else {
                w(&writer, "write", |inv| {
                    inv.create(Kind::Server, &format!("s{i}"), None).map(|_| ())
                })
                .await
            };
            let rev = rev.expect("a revision");
            assert_eq!(reader.head().await.unwrap(), rev, "{b}: write {i}");
            assert_eq!(
                reader.head().await.unwrap(),
                rev,
                "{b}: write {i}, asked again"
            );
        }
    }
}

/// A revision of thousands of rows streams: the revision first, then each
/// change as read, every name resolved; a later revision that changes
/// some of them in place reads `~` for those alone.
#[tokio::test]
async fn a_large_revision_streams_change_by_change() {
    use clusto_store::{HistoryItem, HistoryQuery};
    for b in BACKENDS {
        let s = fresh(b).await.unwrap();
        w(&s, "many", |inv| {
            let r = inv.create(Kind::Pool, "r1", None)?;
            for i in 0..1500 {
                let id = inv.create(Kind::Server, &format!("s{i:04}"), None)?;
                inv.insert(r, id, None)?;
                inv.attr_set(id, "n", None, NumberSpec::None, Value::Int(i))?;
            }
            Ok(())
        })
        .await
        .unwrap();
        w(&s, "some", |inv| {
            for i in 0..3 {
                let id = inv.id_of(&format!("s{i:04}"))?;
                inv.attr_set(id, "n", None, NumberSpec::None, Value::Int(-1))?;
            }
            Ok(())
        })
        .await
        .unwrap();
        let mut items = Vec::new();
        s.history_stream(&HistoryQuery::default(), |i| {
            items.push(i);
            Ok::<(), StoreError>(())
        })
        .await
        .unwrap();
        let texts = |from: usize, to: usize| -> Vec<String> {
            items[from..to]
                .iter()
                .map(|i| match i {
                    HistoryItem::Change(c) => format!("{} {}", c.op, c.text),
                    HistoryItem::Revision(r) => format!("revision {}", r.rev),
                })
                .collect()
        };
        assert_eq!(
            texts(0, 4),
            vec![
                "revision 2",
                "~ s0000 attr n: 0 → -1",
                "~ s0001 attr n: 1 → -1",
                "~ s0002 attr n: 2 → -1",
            ],
            "{b}"
        );
        assert_eq!(texts(4, 5), vec!["revision 1"], "{b}");
        let first = texts(5, items.len());
        assert_eq!(
            first.len(),
            1 + 1500 * 3,
            "{b}: an entity, an attr, a containment each"
        );
        assert!(
            first
                .iter()
                .all(|t| t.starts_with("+ ") && !t.contains('?')),
            "{b}"
        );
        assert!(first.contains(&"+ s1499 in r1".to_string()), "{b}");
        assert!(first.contains(&"+ s0007 attr n = 7".to_string()), "{b}");
        // history_each gathers the same into entries.
        let h = s.history(None, None).await.unwrap();
        assert_eq!(h.len(), 2, "{b}");
        assert_eq!(h[1].changes.len(), first.len(), "{b}");
    }
}

/// Queries at the head (on SQLite answered by the store's own read-only
/// connection, on the caller's thread) see another writer's commit the
/// moment it returns, and answer exactly what the same query answers in a
/// snapshot of that revision.
#[tokio::test]
async fn head_queries_see_every_commit_and_match_snapshots() {
    for b in BACKENDS {
        let url = clusto_store::testing::fresh_url(b).await.unwrap();
        let reader = Store::open(&url).await.unwrap();
        let writer = Store::open(&url).await.unwrap();
        build(&writer).await;
        let queries = [
            "kind:server",
            "kind:server and in:web",
            "attr:system.disk=0",
            "name:s? and (in:web or attr:system.disk=300)",
            "connected-to:sw1",
            "attr:nothing=here",
        ];
        for round in 0..3 {
            let head = reader.head().await.unwrap();
            for e in queries {
                let q = parse(e).unwrap();
                assert_eq!(
                    reader.query(&q, None).await.unwrap(),
                    reader.query(&q, Some(head)).await.unwrap(),
                    "{b} round {round}: {e}"
                );
            }
            let name = format!("t{round}");
            w(&writer, "add", |inv| {
                let s = inv.create(Kind::Server, &name, None)?;
                let web = inv.id_of("web")?;
                inv.insert(web, s, None)
            })
            .await;
            let q = parse("kind:server and in:web").unwrap();
            assert!(
                reader.query(&q, None).await.unwrap().contains(&name),
                "{b}: {name} written by another handle is seen at once"
            );
        }
    }
}
