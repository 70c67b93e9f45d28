//! Drivers: named subtypes of a kind with a port map and a rack height.
//! The basic ones are built in; operators add more as `Driver` entities.

use std::collections::BTreeMap;

use crate::kind::Kind;
use crate::outofband::{ConsoleAccess, OutletControl, opengear_console, sentry_outlets};

#[derive(Clone, Debug, PartialEq)]
pub struct Driver {
    pub name: String,
    pub kind: Kind,
    pub rack_units: u32,
    /// Port type → count; ports are numbered from 1.
    pub ports: BTreeMap<String, u32>,
    pub builtin: bool,
    /// A power strip's outlet control, if it can be switched.
    pub outlets: Option<OutletControl>,
    /// A console server's console command.
    pub console: Option<ConsoleAccess>,
}

impl Driver {
    pub fn has_port(&self, ptype: &str, num: u32) -> bool {
        self.ports.get(ptype).is_some_and(|&n| num >= 1 && num <= n)
    }
}

fn builtin(name: &str, kind: Kind, rack_units: u32, ports: &[(&str, u32)]) -> Driver {
    Driver {
        name: name.to_string(),
        kind,
        rack_units,
        ports: ports.iter().map(|(t, n)| (t.to_string(), *n)).collect(),
        builtin: true,
        outlets: None,
        console: None,
    }
}

/// The drivers every inventory has.
pub fn builtins() -> Vec<Driver> {
    vec![
        builtin("basicdatacenter", Kind::Datacenter, 0, &[]),
        builtin("basiccage", Kind::Cage, 0, &[]),
        builtin("basiczone", Kind::Zone, 0, &[]),
        builtin("basicrack", Kind::Rack, 0, &[]),
        builtin(
            "basicserver",
            Kind::Server,
            1,
            &[("nic-eth", 2), ("pwr-nema-5", 1), ("console-serial", 1)],
        ),
        builtin(
            "basicvirtualserver",
            Kind::VirtualServer,
            0,
            &[("nic-eth", 1)],
        ),
        builtin(
            "basicnetworkswitch",
            Kind::NetworkSwitch,
            1,
            &[("nic-eth", 48), ("pwr-nema-5", 1)],
        ),
        builtin(
            "basicpowerstrip",
            Kind::PowerStrip,
            1,
            &[("pwr-nema-5", 24), ("nic-eth", 1)],
        ),
        builtin(
            "basicconsoleserver",
            Kind::ConsoleServer,
            1,
            &[("console-serial", 24), ("nic-eth", 1), ("pwr-nema-5", 1)],
        ),
        // The original's ServerTech Sentry PowerTower XM and OpenGear
        // CM4148, with what `clusto power` and `clusto console` need.
        Driver {
            outlets: Some(sentry_outlets()),
            ..builtin(
                "powertowerxm",
                Kind::PowerStrip,
                1,
                &[("pwr-nema-5", 16), ("nic-eth", 1), ("console-serial", 1)],
            )
        },
        Driver {
            console: Some(opengear_console()),
            ..builtin(
                "opengearcm4148",
                Kind::ConsoleServer,
                1,
                &[("console-serial", 48), ("nic-eth", 1), ("pwr-nema-5", 1)],
            )
        },
        builtin(
            "basicappliance",
            Kind::Appliance,
            1,
            &[("nic-eth", 1), ("pwr-nema-5", 1)],
        ),
        builtin("pool", Kind::Pool, 0, &[]),
        builtin("exclusivepool", Kind::Pool, 0, &[]),
        builtin("uniquepool", Kind::Pool, 0, &[]),
        builtin("ipmanager", Kind::IpManager, 0, &[]),
        builtin("simplenamemanager", Kind::NameManager, 0, &[]),
        builtin("entity", Kind::Entity, 0, &[]),
        builtin("driver", Kind::Driver, 0, &[]),
        builtin("racklayout", Kind::RackLayout, 0, &[]),
        builtin("vmmanager", Kind::VmManager, 0, &[]),
        builtin(
            "basicvirtualmachine",
            Kind::VirtualMachine,
            0,
            &[("nic-eth", 4)],
        ),
    ]
}

/// The three pool semantics, chosen by the pool's driver as in the original.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolType {
    Plain,
    Exclusive,
    Unique,
}

impl PoolType {
    pub fn from_driver(driver: &str) -> PoolType {
        match driver {
            "exclusivepool" => PoolType::Exclusive,
            "uniquepool" => PoolType::Unique,
            _ => PoolType::Plain,
        }
    }

    pub fn driver(self) -> &'static str {
        match self {
            PoolType::Plain => "pool",
            PoolType::Exclusive => "exclusivepool",
            PoolType::Unique => "uniquepool",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            PoolType::Plain => "plain",
            PoolType::Exclusive => "exclusive",
            PoolType::Unique => "unique",
        }
    }

    pub fn parse(s: &str) -> Option<PoolType> {
        match s.to_ascii_lowercase().as_str() {
            "plain" | "pool" => Some(PoolType::Plain),
            "exclusive" | "exclusivepool" => Some(PoolType::Exclusive),
            "unique" | "uniquepool" => Some(PoolType::Unique),
            _ => None,
        }
    }
}
