//! Entity kinds and the containment rules that depend only on kinds.

use std::fmt;
use std::str::FromStr;

use crate::error::CoreError;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Datacenter,
    Cage,
    Zone,
    Rack,
    Server,
    VirtualServer,
    NetworkSwitch,
    PowerStrip,
    ConsoleServer,
    Appliance,
    Pool,
    IpManager,
    NameManager,
    Entity,
    /// A user-defined driver, stored as data so new models need no recompile.
    Driver,
    /// What every rack of a model holds, as data (the original's rack factory).
    RackLayout,
    /// A backend that runs virtual machines (libvirt, EC2).
    VmManager,
    VirtualMachine,
}

impl Kind {
    pub const ALL: [Kind; 18] = [
        Kind::Datacenter,
        Kind::Cage,
        Kind::Zone,
        Kind::Rack,
        Kind::Server,
        Kind::VirtualServer,
        Kind::NetworkSwitch,
        Kind::PowerStrip,
        Kind::ConsoleServer,
        Kind::Appliance,
        Kind::Pool,
        Kind::IpManager,
        Kind::NameManager,
        Kind::Entity,
        Kind::Driver,
        Kind::RackLayout,
        Kind::VmManager,
        Kind::VirtualMachine,
    ];

    /// The manifest spelling (`IPManager`, `NetworkSwitch`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Datacenter => "Datacenter",
            Kind::Cage => "Cage",
            Kind::Zone => "Zone",
            Kind::Rack => "Rack",
            Kind::Server => "Server",
            Kind::VirtualServer => "VirtualServer",
            Kind::NetworkSwitch => "NetworkSwitch",
            Kind::PowerStrip => "PowerStrip",
            Kind::ConsoleServer => "ConsoleServer",
            Kind::Appliance => "Appliance",
            Kind::Pool => "Pool",
            Kind::IpManager => "IPManager",
            Kind::NameManager => "NameManager",
            Kind::Entity => "Entity",
            Kind::Driver => "Driver",
            Kind::RackLayout => "RackLayout",
            Kind::VmManager => "VMManager",
            Kind::VirtualMachine => "VirtualMachine",
        }
    }

    /// The lower-case plural naming a kind's collection (API paths, CRDs):
    /// `servers`, `ipmanagers`, `networkswitches`.
    pub fn plural(self) -> String {
        let s = self.as_str().to_ascii_lowercase();
        if s.ends_with("ch") {
            format!("{s}es")
        } else if s.ends_with('y') {
            format!("{}ies", &s[..s.len() - 1])
        } else {
            format!("{s}s")
        }
    }

    /// Kinds that describe other things rather than being things themselves.
    pub fn is_definition(self) -> bool {
        matches!(self, Kind::Driver | Kind::RackLayout)
    }

    /// Datacenters, cages and zones: a thing is directly in at most one of each.
    pub fn is_location(self) -> bool {
        matches!(self, Kind::Datacenter | Kind::Cage | Kind::Zone)
    }

    /// Things that occupy rack units and have ports.
    pub fn is_device(self) -> bool {
        matches!(
            self,
            Kind::Server
                | Kind::VirtualServer
                | Kind::NetworkSwitch
                | Kind::PowerStrip
                | Kind::ConsoleServer
                | Kind::Appliance
                | Kind::VirtualMachine
        )
    }

    /// Whether `self` may directly contain a thing of kind `child`.
    pub fn may_contain(self, child: Kind) -> bool {
        if child.is_definition() {
            return false;
        }
        match self {
            Kind::Rack => child.is_device(),
            Kind::Pool => true,
            // Hypervisors join their VM manager.
            Kind::VmManager => matches!(child, Kind::Server | Kind::VirtualServer),
            Kind::Datacenter | Kind::Cage | Kind::Zone | Kind::Entity => child != Kind::Datacenter,
            _ => false,
        }
    }

    /// Order of container levels in merged attributes: locations nearest the
    /// thing first, then pools, then anything else.
    pub fn merge_rank(self) -> u8 {
        match self {
            Kind::Rack => 0,
            Kind::Zone => 1,
            Kind::Cage => 2,
            Kind::Datacenter => 3,
            Kind::Pool => 4,
            _ => 5,
        }
    }

    /// The driver a thing of this kind gets when none is named.
    pub fn default_driver(self) -> &'static str {
        match self {
            Kind::Datacenter => "basicdatacenter",
            Kind::Cage => "basiccage",
            Kind::Zone => "basiczone",
            Kind::Rack => "basicrack",
            Kind::Server => "basicserver",
            Kind::VirtualServer => "basicvirtualserver",
            Kind::NetworkSwitch => "basicnetworkswitch",
            Kind::PowerStrip => "basicpowerstrip",
            Kind::ConsoleServer => "basicconsoleserver",
            Kind::Appliance => "basicappliance",
            Kind::Pool => "pool",
            Kind::IpManager => "ipmanager",
            Kind::NameManager => "simplenamemanager",
            Kind::Entity => "entity",
            Kind::Driver => "driver",
            Kind::RackLayout => "racklayout",
            Kind::VmManager => "vmmanager",
            Kind::VirtualMachine => "basicvirtualmachine",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Kind {
    type Err = CoreError;

    /// Case-insensitive, singular or plural, with the short forms operators type.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let l = s.to_ascii_lowercase();
        let k = match l.as_str() {
            "datacenter" | "datacenters" | "dc" | "dcs" => Kind::Datacenter,
            "cage" | "cages" => Kind::Cage,
            "zone" | "zones" => Kind::Zone,
            "rack" | "racks" => Kind::Rack,
            "server" | "servers" => Kind::Server,
            "virtualserver" | "virtualservers" | "vs" => Kind::VirtualServer,
            "networkswitch" | "networkswitches" | "switch" | "switches" => Kind::NetworkSwitch,
            "powerstrip" | "powerstrips" | "pdu" | "pdus" => Kind::PowerStrip,
            "consoleserver" | "consoleservers" => Kind::ConsoleServer,
            "appliance" | "appliances" => Kind::Appliance,
            "pool" | "pools" => Kind::Pool,
            "ipmanager" | "ipmanagers" => Kind::IpManager,
            "namemanager" | "namemanagers" => Kind::NameManager,
            "entity" | "entities" => Kind::Entity,
            "driver" | "drivers" => Kind::Driver,
            "racklayout" | "racklayouts" | "layout" | "layouts" => Kind::RackLayout,
            "vmmanager" | "vmmanagers" => Kind::VmManager,
            "virtualmachine" | "virtualmachines" | "vm" | "vms" => Kind::VirtualMachine,
            _ => return Err(CoreError::UnknownKind(s.to_string())),
        };
        Ok(k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_plural_parses_back_to_its_kind() {
        for k in Kind::ALL {
            assert_eq!(k.plural().parse::<Kind>().unwrap(), k, "{}", k.plural());
        }
        assert_eq!(Kind::NetworkSwitch.plural(), "networkswitches");
        assert_eq!(Kind::Entity.plural(), "entities");
    }

    #[test]
    fn parses_case_insensitive_singular_and_plural() {
        assert_eq!("IPManager".parse::<Kind>().unwrap(), Kind::IpManager);
        assert_eq!("ipmanagers".parse::<Kind>().unwrap(), Kind::IpManager);
        assert_eq!("Servers".parse::<Kind>().unwrap(), Kind::Server);
        assert_eq!("switches".parse::<Kind>().unwrap(), Kind::NetworkSwitch);
        assert!("spaceship".parse::<Kind>().is_err());
        for k in Kind::ALL {
            assert_eq!(k.as_str().parse::<Kind>().unwrap(), k);
        }
    }

    #[test]
    fn racks_hold_devices_only() {
        assert!(Kind::Rack.may_contain(Kind::Server));
        assert!(!Kind::Rack.may_contain(Kind::Rack));
        assert!(!Kind::Rack.may_contain(Kind::Pool));
        assert!(Kind::Pool.may_contain(Kind::Pool));
        assert!(!Kind::Server.may_contain(Kind::Server));
        assert!(!Kind::Datacenter.may_contain(Kind::Datacenter));
    }
}
