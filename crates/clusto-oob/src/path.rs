//! Where a server's power and console are, read from an inventory view.
//! Pure: `clusto power`, `clusto console` and the controller agree on it,
//! and it is tested without a network.
//!
//! - BMC: the address the server holds on OS port `ipmi`, UDP port merged
//!   `ipmi.port` (623), credentials named by merged `ipmi.credentials`
//!   (`file:PATH` or `env:NAME`), session kind merged `ipmi.interface`.
//! - PDU: every `pwr-*` port cabled to a power strip whose driver declares
//!   outlet control; the strip's first address, merged `snmp.community`
//!   and `snmp.port` (161).
//! - Console: the `console-serial` port cabled to a console server whose
//!   driver declares a console command; the server's first address.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use clusto_core::outofband::{ConsoleAccess, OutletControl};
use clusto_core::{EntityId, Inventory, PortId, Value};

use crate::ipmi::Prefer;

/// Why a path is unknown, naming the cable or attribute that is missing.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Missing {
    #[error("no address on OS port ipmi (clusto ip allocate MANAGER {server} --osport ipmi)")]
    BmcAddress { server: String },
    #[error("merged attribute ipmi.credentials is not set (file:PATH or env:NAME)")]
    BmcCredentials,
    #[error("merged attribute {key} = {value:?}: {rule}")]
    BadAttr {
        key: &'static str,
        value: String,
        rule: &'static str,
    },
    #[error("no pwr-* port is cabled to a power strip")]
    PowerCable,
    #[error(
        "{port} is cabled to {device}, whose driver {driver} declares no outlet control (spec.power)"
    )]
    NoOutletControl {
        port: PortId,
        device: String,
        driver: String,
    },
    #[error("power strip {strip} holds no address")]
    StripAddress { strip: String },
    #[error("power strip {strip} has no merged attribute snmp.community")]
    Community { strip: String },
    #[error("no console-serial port is cabled to a console server")]
    ConsoleCable,
    #[error(
        "{port} is cabled to {device}, whose driver {driver} declares no console command (spec.console)"
    )]
    NoConsoleCommand {
        port: PortId,
        device: String,
        driver: String,
    },
    #[error("console server {device} holds no address")]
    ConsoleAddress { device: String },
}

/// Where an account's user and password are kept (never in the inventory).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Credentials {
    /// A file of one line `USER:PASSWORD`.
    File(PathBuf),
    /// An environment variable holding `USER:PASSWORD`.
    Env(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BmcPath {
    pub addr: SocketAddr,
    pub credentials: Credentials,
    pub prefer: Prefer,
}

#[derive(Clone, PartialEq, Eq)]
pub struct Outlet {
    pub strip: String,
    /// The strip's power port (its number is the outlet number).
    pub outlet: PortId,
    /// The server's port cabled to it.
    pub server_port: PortId,
    pub agent: SocketAddr,
    pub community: String,
    pub control: OutletControl,
}

impl std::fmt::Debug for Outlet {
    // The community is a password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outlet")
            .field("strip", &self.strip)
            .field("outlet", &self.outlet)
            .field("server_port", &self.server_port)
            .field("agent", &self.agent)
            .finish_non_exhaustive()
    }
}

/// Both ways to a server's power, each known or missing something.
#[derive(Clone, Debug)]
pub struct PowerPaths {
    pub bmc: Result<BmcPath, Missing>,
    pub pdu: Result<Vec<Outlet>, Missing>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsolePath {
    pub device: String,
    pub port: u32,
    pub address: IpAddr,
    pub access: ConsoleAccess,
}

/// The devices a server's power and console cables lead to: what a point
/// read must load (with their addresses and attributes) before
/// [`power_paths`] and [`console_path`] can answer.
pub fn peers(inv: &Inventory, id: EntityId) -> Vec<String> {
    inv.connected_ports(id)
        .into_iter()
        .filter(|(p, _)| p.ptype.starts_with("pwr-") || p.ptype == "console-serial")
        .map(|(_, (peer, _))| inv.name_of(peer).to_string())
        .collect()
}

pub fn power_paths(inv: &Inventory, id: EntityId) -> PowerPaths {
    PowerPaths {
        bmc: bmc_path(inv, id),
        pdu: outlets(inv, id),
    }
}

fn merged<'a>(inv: &'a Inventory, id: EntityId, key: &str, sub: &str) -> Option<&'a Value> {
    inv.merged_value(id, key, Some(sub)).map(|(v, _)| v)
}

/// An attribute's text (references have none).
fn text(v: &Value) -> String {
    v.to_text().unwrap_or_default()
}

fn udp_port(
    inv: &Inventory,
    id: EntityId,
    key: &'static str,
    default: u16,
) -> Result<u16, Missing> {
    let (k, sub) = key.split_once('.').unwrap_or((key, ""));
    match merged(inv, id, k, sub) {
        None => Ok(default),
        Some(v) => v
            .as_int()
            .and_then(|n| u16::try_from(n).ok())
            .filter(|n| *n > 0)
            .ok_or_else(|| Missing::BadAttr {
                key,
                value: text(v),
                rule: "a UDP port is a number from 1 to 65535",
            }),
    }
}

pub fn bmc_path(inv: &Inventory, id: EntityId) -> Result<BmcPath, Missing> {
    let server = inv.name_of(id).to_string();
    let ip = inv
        .addresses_of(id)
        .into_iter()
        .find(|a| a.os_port.as_deref() == Some("ipmi"))
        .map(|a| a.address)
        .ok_or(Missing::BmcAddress { server })?;
    let port = udp_port(inv, id, "ipmi.port", 623)?;
    let named = merged(inv, id, "ipmi", "credentials")
        .map(text)
        .ok_or(Missing::BmcCredentials)?;
    let credentials = parse_credentials(&named).ok_or(Missing::BadAttr {
        key: "ipmi.credentials",
        value: named.clone(),
        rule: "file:PATH or env:NAME",
    })?;
    let prefer = match merged(inv, id, "ipmi", "interface") {
        None => Prefer::Auto,
        Some(v) => Prefer::parse(&text(v)).ok_or_else(|| Missing::BadAttr {
            key: "ipmi.interface",
            value: text(v),
            rule: "auto, lan (IPMI 1.5) or lanplus (RMCP+)",
        })?,
    };
    Ok(BmcPath {
        addr: SocketAddr::new(ip, port),
        credentials,
        prefer,
    })
}

fn parse_credentials(text: &str) -> Option<Credentials> {
    match text.split_once(':')? {
        ("file", p) if !p.is_empty() => Some(Credentials::File(PathBuf::from(p))),
        ("env", n) if !n.is_empty() && !n.contains('=') => Some(Credentials::Env(n.to_string())),
        _ => None,
    }
}

fn outlets(inv: &Inventory, id: EntityId) -> Result<Vec<Outlet>, Missing> {
    let cabled: Vec<_> = inv
        .connected_ports(id)
        .into_iter()
        .filter(|(p, _)| p.ptype.starts_with("pwr-"))
        .collect();
    if cabled.is_empty() {
        return Err(Missing::PowerCable);
    }
    cabled
        .into_iter()
        .map(|(server_port, (strip, outlet))| outlet_path(inv, strip, outlet, server_port))
        .collect()
}

fn outlet_path(
    inv: &Inventory,
    strip: EntityId,
    outlet: PortId,
    server_port: PortId,
) -> Result<Outlet, Missing> {
    let name = inv.name_of(strip).to_string();
    let driver = inv.driver_of(strip);
    let Some(control) = driver.and_then(|d| d.outlets.clone()) else {
        return Err(Missing::NoOutletControl {
            port: server_port,
            device: name,
            driver: driver.map(|d| d.name.clone()).unwrap_or_default(),
        });
    };
    let ip = first_address(inv, strip).ok_or(Missing::StripAddress {
        strip: name.clone(),
    })?;
    let community =
        merged(inv, strip, "snmp", "community")
            .map(text)
            .ok_or(Missing::Community {
                strip: name.clone(),
            })?;
    let port = udp_port(inv, strip, "snmp.port", 161)?;
    Ok(Outlet {
        strip: name,
        outlet,
        server_port,
        agent: SocketAddr::new(ip, port),
        community,
        control,
    })
}

fn first_address(inv: &Inventory, id: EntityId) -> Option<IpAddr> {
    inv.addresses_of(id).first().map(|a| a.address)
}

pub fn console_path(inv: &Inventory, id: EntityId) -> Result<ConsolePath, Missing> {
    let (port, (cs, cs_port)) = inv
        .connected_ports(id)
        .into_iter()
        .find(|(p, _)| p.ptype == "console-serial")
        .ok_or(Missing::ConsoleCable)?;
    let device = inv.name_of(cs).to_string();
    let driver = inv.driver_of(cs);
    let Some(access) = driver.and_then(|d| d.console.clone()) else {
        return Err(Missing::NoConsoleCommand {
            port,
            device,
            driver: driver.map(|d| d.name.clone()).unwrap_or_default(),
        });
    };
    let address = first_address(inv, cs).ok_or(Missing::ConsoleAddress {
        device: device.clone(),
    })?;
    Ok(ConsolePath {
        device,
        port: cs_port.num,
        address,
        access,
    })
}

/// How to reach a server's console.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Console {
    /// Through the console server its console-serial port is cabled to.
    Serial(ConsolePath),
    /// Serial over LAN through its BMC (when no console cable is known).
    Sol(BmcPath),
}

/// The console server when the cable is known, else the BMC's SOL.
pub fn console(inv: &Inventory, id: EntityId) -> Result<Console, String> {
    match console_path(inv, id) {
        Ok(p) => Ok(Console::Serial(p)),
        Err(Missing::ConsoleCable) => bmc_path(inv, id).map(Console::Sol).map_err(|m| {
            format!(
                "{}; and no BMC for serial over LAN: {m}",
                Missing::ConsoleCable
            )
        }),
        Err(m) => Err(m.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use clusto_core::{Kind, NumberSpec};

    fn port(p: &str) -> PortId {
        p.parse().unwrap()
    }

    fn attr(i: &mut Inventory, id: EntityId, key: &str, sub: &str, v: Value) {
        i.attr_set(id, key, Some(sub), NumberSpec::None, v).unwrap();
    }

    /// A rack with a PDU, a console server and a server with two supplies.
    fn rack() -> (Inventory, EntityId) {
        let mut i = Inventory::new();
        let dc = i.create(Kind::Datacenter, "dc", None).unwrap();
        let pdu = i
            .create(Kind::PowerStrip, "pdu1", Some("powertowerxm"))
            .unwrap();
        let ts = i
            .create(Kind::ConsoleServer, "ts1", Some("opengearcm4148"))
            .unwrap();
        let s = i.create(Kind::Server, "s1", None).unwrap();
        i.insert(dc, pdu, None).unwrap();
        i.ip_bind(pdu, "10.0.0.5".parse().unwrap(), None, None)
            .unwrap();
        i.ip_bind(ts, "10.0.0.6".parse().unwrap(), None, None)
            .unwrap();
        // The community is the datacenter's, merged down to the strip.
        attr(
            &mut i,
            dc,
            "snmp",
            "community",
            Value::String("private".into()),
        );
        i.connect(s, &port("pwr-nema-5:1"), pdu, &port("pwr-nema-5:7"))
            .unwrap();
        i.connect(s, &port("console-serial:1"), ts, &port("console-serial:12"))
            .unwrap();
        (i, s)
    }

    #[test]
    fn power_follows_cables_and_merged_attributes() {
        let (mut i, s) = rack();
        let p = power_paths(&i, s);
        assert_eq!(
            p.bmc,
            Err(Missing::BmcAddress {
                server: "s1".into()
            })
        );
        let outlets = p.pdu.unwrap();
        assert_eq!(outlets.len(), 1);
        assert_eq!(
            (outlets[0].strip.as_str(), outlets[0].outlet.num),
            ("pdu1", 7)
        );
        assert_eq!(outlets[0].agent, "10.0.0.5:161".parse().unwrap());
        assert_eq!(outlets[0].community, "private");
        let mut around = peers(&i, s);
        around.sort();
        assert_eq!(around, ["pdu1", "ts1"]);
        // A BMC: address on OS port ipmi, its port and credentials merged.
        i.ip_bind(s, "10.0.0.9".parse().unwrap(), Some("ipmi"), None)
            .unwrap();
        assert_eq!(bmc_path(&i, s), Err(Missing::BmcCredentials));
        attr(
            &mut i,
            s,
            "ipmi",
            "credentials",
            Value::String("env:BMC".into()),
        );
        attr(&mut i, s, "ipmi", "port", Value::Int(6230));
        let b = bmc_path(&i, s).unwrap();
        assert_eq!(
            (b.addr, b.credentials, b.prefer),
            (
                "10.0.0.9:6230".parse().unwrap(),
                Credentials::Env("BMC".into()),
                Prefer::Auto
            )
        );
        attr(&mut i, s, "ipmi", "port", Value::Int(70000));
        assert!(matches!(
            bmc_path(&i, s),
            Err(Missing::BadAttr {
                key: "ipmi.port",
                ..
            })
        ));
    }

    #[test]
    fn missing_pieces_are_named() {
        let (mut i, s) = rack();
        let pdu = i.id_of("pdu1").unwrap();
        let dc = i.id_of("dc").unwrap();
        i.remove(dc, pdu).unwrap();
        assert_eq!(
            power_paths(&i, s).pdu.unwrap_err(),
            Missing::Community {
                strip: "pdu1".into()
            }
        );
        let bare = i.create(Kind::Server, "bare", None).unwrap();
        assert_eq!(power_paths(&i, bare).pdu.unwrap_err(), Missing::PowerCable);
        assert_eq!(console_path(&i, bare).unwrap_err(), Missing::ConsoleCable);
        let plain = i.create(Kind::PowerStrip, "plain", None).unwrap();
        i.connect(bare, &port("pwr-nema-5:1"), plain, &port("pwr-nema-5:1"))
            .unwrap();
        let e = power_paths(&i, bare).pdu.unwrap_err();
        assert_eq!(
            e.to_string(),
            "pwr-nema-5:1 is cabled to plain, whose driver basicpowerstrip declares no outlet control (spec.power)"
        );
    }

    #[test]
    fn the_console_is_the_cabled_port_on_the_console_server() {
        let (i, s) = rack();
        let c = console_path(&i, s).unwrap();
        assert_eq!(
            (c.device.as_str(), c.port, c.address),
            ("ts1", 12, "10.0.0.6".parse().unwrap())
        );
        assert_eq!(console(&i, s), Ok(Console::Serial(c)));
    }

    #[test]
    fn credentials_name_a_file_or_a_variable() {
        assert_eq!(
            parse_credentials("file:/etc/clusto/bmc"),
            Some(Credentials::File("/etc/clusto/bmc".into()))
        );
        assert_eq!(
            parse_credentials("env:BMC"),
            Some(Credentials::Env("BMC".into()))
        );
        for bad in ["admin:secret", "file:", "env:", "env:A=B", "plain"] {
            assert_eq!(parse_credentials(bad), None, "{bad}");
        }
    }
}
