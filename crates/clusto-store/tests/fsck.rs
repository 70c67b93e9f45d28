//! `Store::fsck` finds each kind of damage a crash, a bug or a hand edit
//! could leave, on SQLite and PostgreSQL, and a healthy store is clean.

use clusto_core::{Kind, RuRange};
use clusto_store::Store;
use clusto_store::testing::{BACKENDS, fresh, write};

async fn build(s: &Store) {
    write(s, "build", |inv| {
        let rack = inv.create(Kind::Rack, "r1", None)?;
        for (name, ru) in [("a", 1), ("b", 2)] {
            let e = inv.create(Kind::Server, name, None)?;
            inv.insert(rack, e, Some(RuRange { start: ru, end: ru }))?;
        }
        let sw = inv.create(Kind::NetworkSwitch, "sw", None)?;
        let a = inv.id_of("a")?;
        inv.connect(
            a,
            &"nic-eth:1".parse().unwrap(),
            sw,
            &"nic-eth:1".parse().unwrap(),
        )?;
        let m = inv.create(Kind::IpManager, "net", None)?;
        inv.configure(m, "cidr", "10.0.0.0/24")?;
        inv.ip_bind(a, "10.0.0.5".parse().unwrap(), None, None)?;
        Ok(())
    })
    .await;
}

async fn sql(s: &Store, q: &str) {
    sqlx::query(sqlx::AssertSqlSafe(q.to_string()))
        .execute(s.pool())
        .await
        .unwrap_or_else(|e| panic!("{q}: {e}"));
}

fn rules(v: &[clusto_core::fsck::Violation]) -> Vec<&'static str> {
    v.iter().map(|v| v.rule).collect()
}

#[tokio::test]
async fn a_healthy_store_is_clean_and_each_damage_is_found() {
    for b in BACKENDS {
        let s = fresh(b).await.unwrap();
        build(&s).await;
        assert_eq!(s.fsck(None).await.unwrap(), vec![], "{b}");

        // Two devices on one unit.
        sql(
            &s,
            "UPDATE containment SET ru_start = 1, ru_end = 1 WHERE rev_to IS NULL AND ru_start = 2",
        )
        .await;
        let v = s.fsck(None).await.unwrap();
        assert_eq!(rules(&v), ["ru-overlap"], "{b}: {v:?}");
        assert_eq!(v[0].objects, ["a", "b"], "{b}");
        sql(&s, "UPDATE containment SET ru_start = 2, ru_end = 2 WHERE rev_to IS NULL AND child = (SELECT eid FROM entities WHERE name = 'b')").await;
        assert_eq!(s.fsck(None).await.unwrap(), vec![], "{b}: repaired");

        // A second cable on a port that has one.
        sql(&s, "INSERT INTO links (id, a, a_port, b, b_port, rev_from) SELECT id + 1000, b, a_port, a, b_port, rev_from FROM links").await;
        let v = s.fsck(None).await.unwrap();
        assert!(rules(&v).contains(&"port-cabled-twice"), "{b}: {v:?}");
        sql(&s, "DELETE FROM links WHERE id > 1000").await;

        // An entity deleted while rows still point at it.
        sql(
            &s,
            "UPDATE entities SET rev_to = rev_from + 1 WHERE name = 'sw'",
        )
        .await;
        let v = s.fsck(None).await.unwrap();
        assert!(rules(&v).contains(&"dangling-row"), "{b}: {v:?}");
        assert!(
            v.iter().any(|x| x.detail.contains("cable end")),
            "{b}: {v:?}"
        );
        sql(&s, "UPDATE entities SET rev_to = NULL WHERE name = 'sw'").await;

        // An address outside its manager's network.
        sql(
            &s,
            "UPDATE addresses SET address = '192.168.9.9' WHERE address = '10.0.0.5'",
        )
        .await;
        let v = s.fsck(None).await.unwrap();
        assert_eq!(rules(&v), ["address-outside-network"], "{b}: {v:?}");
        sql(
            &s,
            "UPDATE addresses SET address = '10.0.0.5' WHERE address = '192.168.9.9'",
        )
        .await;

        // A revision lost in the middle; then the newest one, so rows are
        // from past the head.
        write(&s, "second", |inv| {
            let e = inv.id_of("a")?;
            inv.attr_set(
                e,
                "owner",
                None,
                clusto_core::NumberSpec::None,
                clusto_core::Value::String("x".into()),
            )?;
            Ok(())
        })
        .await;
        sql(&s, "DELETE FROM revisions WHERE rev = 1").await;
        let v = s.fsck(None).await.unwrap();
        assert_eq!(rules(&v), ["revisions-not-contiguous"], "{b}: {v:?}");
        sql(&s, "DELETE FROM revisions WHERE rev = 2").await;
        let v = s.fsck(None).await.unwrap();
        assert!(rules(&v).contains(&"row-revisions"), "{b}: {v:?}");
        // As of an old revision, the checks see that revision.
        assert!(
            s.fsck(Some(0))
                .await
                .unwrap()
                .iter()
                .all(|x| x.rule != "dangling-row"),
            "{b}"
        );
    }
}
