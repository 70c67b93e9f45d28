//! The responder's view of the inventory: every NIC MAC the inventory knows,
//! resolved once to the reply it gets. Built off the request path, swapped
//! in whole; answering never touches the store.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use clusto_core::{Address, EntityId, Inventory, PortId, Value};

/// Default lease when the inventory names none (seconds).
pub const DEFAULT_LEASE: u32 = 3600;

/// What a known MAC is answered with.
#[derive(Clone, Debug, PartialEq)]
pub struct Host {
    pub device: String,
    /// The address bound to the NIC (one), or every IPv4 address the device
    /// holds; the request path picks the one in the asking subnet.
    pub leases: Vec<Lease>,
    pub lease: u32,
    pub hostname: String,
    pub settings: Arc<Settings>,
}

/// The options a host is answered with beyond its own address and names:
/// mostly inherited from its rack, network or datacenter, so thousands of
/// hosts share one value, kept once (a copy per host made a million-host
/// index 100+ MiB larger).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Settings {
    pub domain: Option<String>,
    pub dns: Vec<Ipv4Addr>,
    pub ntp: Vec<Ipv4Addr>,
    /// `tftp_server`: siaddr and option 66.
    pub next_server: Option<Ipv4Addr>,
    /// `tftp_filename`: file and option 67.
    pub boot_file: Option<String>,
    /// Any other option, code → wire bytes (`dhcp.option-N`, PXELINUX 208–211).
    pub extra: Vec<(u8, Vec<u8>)>,
}

/// Distinct [`Settings`] met while resolving, each kept once.
type SharedSettings = std::collections::HashSet<Arc<Settings>>;

fn shared(pool: &mut SharedSettings, s: Settings) -> Arc<Settings> {
    if let Some(kept) = pool.get(&s) {
        return kept.clone();
    }
    let s = Arc::new(s);
    pool.insert(s.clone());
    s
}

/// An address with its network's settings.
#[derive(Clone, Debug, PartialEq)]
pub struct Lease {
    pub address: Ipv4Addr,
    pub mask: Ipv4Addr,
    pub broadcast: Ipv4Addr,
    pub router: Option<Ipv4Addr>,
}

impl Lease {
    pub fn contains(&self, other: Ipv4Addr) -> bool {
        let m = u32::from(self.mask);
        u32::from(self.address) & m == u32::from(other) & m
    }
}

/// Why a MAC gets no answer.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Skip {
    /// `dhcp.enabled` is off (or unset) for the device.
    Disabled(String),
    /// The device holds no IPv4 address DHCP could hand out.
    NoAddress(String),
    /// Several devices carry this MAC.
    Ambiguous(Vec<String>),
}

#[derive(Clone, Debug, PartialEq)]
pub enum Entry {
    Serve(Box<Host>),
    Skip(Skip),
}

#[derive(Clone, Debug, Default)]
pub struct DhcpIndex {
    pub by_mac: HashMap<[u8; 6], Entry>,
    /// Devices waiting to learn their NIC: `bootstrap.mac` → device name
    /// (asked only for MACs `by_mac` does not know).
    pub bootstrap: HashMap<[u8; 6], String>,
    /// Revision the index is as of.
    pub revision: i64,
    /// The devices carrying each MAC and each device's MACs and bootstrap
    /// MAC: what lets a change to a few devices re-resolve just their MACs.
    owners: HashMap<[u8; 6], Vec<EntityId>>,
    macs_of: HashMap<EntityId, Vec<[u8; 6]>>,
    bootstrap_of: HashMap<EntityId, [u8; 6]>,
}

/// A device waiting to learn its NIC: its `bootstrap.mac` and name.
type Waiting = ([u8; 6], String);

/// What re-resolving some devices changes in an index: computed beside the
/// serving index, then applied in one short write.
#[derive(Debug, Default)]
pub struct Patch {
    revision: i64,
    macs_of: Vec<(EntityId, Vec<[u8; 6]>)>,
    bootstrap_of: Vec<(EntityId, Option<Waiting>)>,
    owners: Vec<([u8; 6], Vec<EntityId>)>,
    entries: Vec<([u8; 6], Option<Entry>)>,
}

impl Patch {
    /// MACs whose answer this patch sets or removes.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

fn mac_bytes(s: &str) -> Option<[u8; 6]> {
    let n = clusto_core::names::normalize_mac(s)?;
    let mut out = [0u8; 6];
    for (i, part) in n.split(':').enumerate() {
        out[i] = u8::from_str_radix(part, 16).ok()?;
    }
    Some(out)
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_text().unwrap_or_default(),
    }
}

fn ip_list(v: &Value) -> Vec<Ipv4Addr> {
    match v {
        Value::Ip(IpAddr::V4(a)) => vec![*a],
        Value::Json(serde_json::Value::Array(a)) => {
            a.iter().filter_map(|x| x.as_str()?.parse().ok()).collect()
        }
        other => text(other)
            .split([',', ' '])
            .filter_map(|x| x.trim().parse().ok())
            .collect(),
    }
}

/// `dhcp.option-N` values: an IP list, `hex:0a0b` / `0a:0b`, or text.
pub fn option_bytes(v: &Value) -> Vec<u8> {
    let t = text(v);
    let ips: Vec<Ipv4Addr> = t
        .split([',', ' '])
        .filter_map(|x| x.trim().parse().ok())
        .collect();
    if !ips.is_empty() && ips.len() == t.split([',', ' ']).filter(|x| !x.trim().is_empty()).count()
    {
        return ips.iter().flat_map(|a| a.octets()).collect();
    }
    let hex = t.strip_prefix("hex:").unwrap_or(&t);
    let digits: String = hex.chars().filter(|c| *c != ':').collect();
    if (t.starts_with("hex:") || (t.contains(':') && digits.len().is_multiple_of(2)))
        && !digits.is_empty()
        && digits.chars().all(|c| c.is_ascii_hexdigit())
    {
        return (0..digits.len() / 2)
            .filter_map(|i| u8::from_str_radix(&digits[i * 2..i * 2 + 2], 16).ok())
            .collect();
    }
    t.into_bytes()
}

/// The addresses DHCP may hand to `port`: the one bound to that NIC (or to
/// its OS interface), else all the device's IPv4 addresses.
fn addresses_for<'a>(inv: &'a Inventory, dev: EntityId, port: &PortId) -> Vec<&'a Address> {
    let v4: Vec<&Address> = inv
        .addresses_of(dev)
        .into_iter()
        .filter(|a| a.address.is_ipv4())
        .collect();
    let os = inv.port_attr(dev, port, "osportname");
    match v4
        .iter()
        .find(|a| a.port.as_ref() == Some(port))
        .or_else(|| v4.iter().find(|a| os.is_some() && a.os_port == os))
    {
        Some(bound) => vec![*bound],
        None => v4,
    }
}

/// A device and its containers in merge order, walked once per host and
/// then read for every option (the core's merge rules, without redoing the
/// walk per key).
struct Chain<'a> {
    inv: &'a Inventory,
    ids: Vec<EntityId>,
}

impl<'a> Chain<'a> {
    fn new(inv: &'a Inventory, dev: EntityId) -> Chain<'a> {
        let mut ids = vec![dev];
        ids.extend(inv.merge_levels(dev).into_iter().flatten());
        Chain { inv, ids }
    }

    fn get(&self, key: &str, sub: Option<&str>) -> Option<&'a Value> {
        self.ids
            .iter()
            .find_map(|id| self.inv.attr_value(*id, key, sub))
    }

    /// `dhcp.<sub>`, or the original clusto's name for it, nearest first
    /// whichever spelling a level uses.
    fn dhcp(&self, sub: &str) -> Option<&'a Value> {
        let aliases = crate::names::aliases_of(sub);
        self.ids.iter().find_map(|id| {
            std::iter::once(sub)
                .chain(aliases.iter().copied())
                .find_map(|s| self.inv.attr_value(*id, "dhcp", Some(s)))
        })
    }

    /// Every `dhcp.*` row, nearest first.
    fn dhcp_rows(&self) -> impl Iterator<Item = &'a clusto_core::Attr> + '_ {
        self.ids.iter().flat_map(|id| {
            self.inv
                .attr_rows(*id)
                .iter()
                .map(|(_, a)| a)
                .filter(|a| a.key == "dhcp")
        })
    }
}

type Ranges = HashMap<EntityId, Option<clusto_core::resources::IpRange>>;

fn host(
    inv: &Inventory,
    dev: EntityId,
    port: &PortId,
    ranges: &mut Ranges,
    settings: &mut SharedSettings,
) -> Result<Host, Skip> {
    let name = inv.name_of(dev).to_string();
    let chain = Chain::new(inv, dev);
    if !chain.dhcp("enabled").is_some_and(Value::is_truthy) {
        return Err(Skip::Disabled(name));
    }
    let addrs = addresses_for(inv, dev, port);
    if addrs.is_empty() {
        return Err(Skip::NoAddress(name));
    }
    let mut leases = Vec::new();
    for addr in addrs {
        let IpAddr::V4(ip) = addr.address else {
            continue;
        };
        let mgr = addr.manager.or_else(|| inv.manager_for(addr.address));
        let range = mgr.and_then(|m| {
            ranges
                .entry(m)
                .or_insert_with(|| inv.ip_range(m).ok())
                .clone()
        });
        leases.push(match &range {
            Some(r) => Lease {
                address: ip,
                mask: match r.netmask() {
                    IpAddr::V4(m) => m,
                    _ => Ipv4Addr::new(255, 255, 255, 255),
                },
                broadcast: match r.broadcast() {
                    IpAddr::V4(b) => b,
                    _ => ip,
                },
                router: match r.gateway {
                    Some(IpAddr::V4(g)) => Some(g),
                    _ => None,
                },
            },
            None => Lease {
                address: ip,
                mask: Ipv4Addr::new(255, 255, 255, 255),
                broadcast: ip,
                router: None,
            },
        });
    }
    let hostname = chain
        .get("hostname", None)
        .map(text)
        .unwrap_or_else(|| name.clone());
    let lease = chain
        .dhcp("lease-time")
        .and_then(|v| text(v).parse::<u32>().ok())
        .unwrap_or(DEFAULT_LEASE)
        .max(60);
    let mut extra: Vec<(u8, Vec<u8>)> = Vec::new();
    // Every dhcp.option-N and every option the original clusto named,
    // nearest first.
    let mut seen = std::collections::HashSet::new();
    for attr in chain.dhcp_rows() {
        let Some(sub) = attr.subkey.as_deref() else {
            continue;
        };
        let option = match crate::names::original(sub) {
            Some(crate::names::Meaning::Option(code, wire)) => {
                crate::names::encode(wire, &text(&attr.value)).map(|b| (code, b))
            }
            _ => sub
                .strip_prefix("option-")
                .and_then(|n| n.parse::<u8>().ok())
                .filter(|c| *c != 0 && *c != 255)
                .map(|c| (c, option_bytes(&attr.value))),
        };
        if let Some((code, bytes)) = option
            && seen.insert(code)
        {
            extra.push((code, bytes));
        }
    }
    // PXELINUX (RFC 5071): magic, config file, path prefix, reboot time.
    let pxe = [
        ("pxelinux-configfile", 209u8),
        ("pxelinux-pathprefix", 210),
        ("pxelinux-reboottime", 211),
    ];
    let mut any_pxe = false;
    for (sub, code) in pxe {
        if let Some(v) = chain.dhcp(sub)
            && seen.insert(code)
        {
            any_pxe = true;
            let bytes = if code == 211 {
                text(v)
                    .parse::<u32>()
                    .map(|n| n.to_be_bytes().to_vec())
                    .unwrap_or_default()
            } else {
                text(v).into_bytes()
            };
            extra.push((code, bytes));
        }
    }
    if any_pxe && seen.insert(208) {
        extra.push((208, vec![0xF1, 0x00, 0x74, 0x7E]));
    }
    // Kept for the index's life: a pushed-to Vec holds room for four.
    leases.shrink_to_fit();
    let own = Settings {
        domain: chain.dhcp("domain-name").map(text),
        dns: chain.dhcp("dns-servers").map(ip_list).unwrap_or_default(),
        ntp: chain.dhcp("ntp-servers").map(ip_list).unwrap_or_default(),
        next_server: chain.dhcp("tftp_server").and_then(|v| text(v).parse().ok()),
        boot_file: chain.dhcp("tftp_filename").map(text),
        extra,
    };
    Ok(Host {
        device: name,
        leases,
        lease,
        hostname,
        settings: shared(settings, own),
    })
}

/// The carriers of `m` being worked out, starting from the index's.
fn carried<'a>(
    work: &'a mut HashMap<[u8; 6], Vec<EntityId>>,
    index: &HashMap<[u8; 6], Vec<EntityId>>,
    m: [u8; 6],
) -> &'a mut Vec<EntityId> {
    work.entry(m)
        .or_insert_with(|| index.get(&m).cloned().unwrap_or_default())
}

impl DhcpIndex {
    /// Resolves every NIC MAC (`mac` or `ipmi-mac` port attribute).
    pub fn build(inv: &Inventory, revision: i64) -> DhcpIndex {
        let devices: Vec<EntityId> = inv
            .entities_unsorted()
            .filter(|e| e.kind.is_device())
            .map(|e| e.id)
            .collect();
        let mut idx = DhcpIndex::default();
        let patch = idx.patch(inv, &devices, revision);
        idx.apply(patch);
        idx
    }

    /// The devices `inv` must hold for [`DhcpIndex::patch`] of `devices`:
    /// them, and every other carrier of a MAC they carry now or did.
    pub fn carriers(&self, inv: &Inventory, devices: &[EntityId]) -> Vec<EntityId> {
        let mut out: std::collections::BTreeSet<EntityId> = devices.iter().copied().collect();
        for d in devices {
            let now = inv
                .nic_macs(*d)
                .into_iter()
                .filter_map(|(_, m)| mac_bytes(m));
            let before = self.macs_of.get(d).into_iter().flatten().copied();
            for m in now.chain(before) {
                out.extend(self.owners.get(&m).into_iter().flatten().copied());
            }
        }
        out.into_iter().collect()
    }

    /// Re-resolves `devices` as `inv` has them now (one `inv` lacks, or
    /// that is no longer a device, is gone) and every MAC they carried or
    /// carry; `inv` holds what [`DhcpIndex::carriers`] names.
    pub fn patch(&self, inv: &Inventory, devices: &[EntityId], revision: i64) -> Patch {
        let mut patch = Patch {
            revision,
            ..Patch::default()
        };
        // MAC → carriers, for the MACs these devices touch, after the change.
        let mut owners: HashMap<[u8; 6], Vec<EntityId>> = HashMap::new();
        for d in devices {
            for m in self.macs_of.get(d).into_iter().flatten() {
                carried(&mut owners, &self.owners, *m).retain(|o| o != d);
            }
            let device = inv.entity(*d).filter(|e| e.kind.is_device());
            let mut mine: Vec<[u8; 6]> = Vec::new();
            if device.is_some() {
                for (_, m) in inv.nic_macs(*d) {
                    if let Some(m) = mac_bytes(m)
                        && !mine.contains(&m)
                    {
                        mine.push(m);
                        carried(&mut owners, &self.owners, m).push(*d);
                    }
                }
            }
            patch.macs_of.push((*d, mine));
            let boot = device.and_then(|e| {
                let m = mac_bytes(&text(inv.attr_value(e.id, "bootstrap", Some("mac"))?))?;
                Some((m, e.name.clone()))
            });
            patch.bootstrap_of.push((*d, boot));
        }
        let mut ranges = Ranges::new();
        let mut settings = SharedSettings::new();
        for (m, devs) in owners {
            let entry = match devs.as_slice() {
                [] => None,
                [d] => {
                    let port = inv
                        .nic_macs(*d)
                        .into_iter()
                        .find(|(_, x)| mac_bytes(x) == Some(m))
                        .map(|(p, _)| p);
                    port.map(|p| match host(inv, *d, &p, &mut ranges, &mut settings) {
                        Ok(h) => Entry::Serve(Box::new(h)),
                        Err(s) => Entry::Skip(s),
                    })
                }
                many => {
                    let mut names: Vec<String> =
                        many.iter().map(|d| inv.name_of(*d).to_string()).collect();
                    names.sort();
                    Some(Entry::Skip(Skip::Ambiguous(names)))
                }
            };
            patch.entries.push((m, entry));
            patch.owners.push((m, devs));
        }
        patch
    }

    /// Makes the index say what `patch` computed.
    pub fn apply(&mut self, patch: Patch) {
        for (d, macs) in patch.macs_of {
            if macs.is_empty() {
                self.macs_of.remove(&d);
            } else {
                self.macs_of.insert(d, macs);
            }
        }
        for (d, boot) in patch.bootstrap_of {
            if let Some(old) = self.bootstrap_of.remove(&d) {
                self.bootstrap.remove(&old);
            }
            if let Some((m, name)) = boot {
                self.bootstrap_of.insert(d, m);
                self.bootstrap.insert(m, name);
            }
        }
        for (m, mut devs) in patch.owners {
            if devs.is_empty() {
                self.owners.remove(&m);
            } else {
                devs.shrink_to_fit();
                self.owners.insert(m, devs);
            }
        }
        for (m, entry) in patch.entries {
            match entry {
                Some(e) => self.by_mac.insert(m, e),
                None => self.by_mac.remove(&m),
            };
        }
        self.revision = patch.revision;
    }

    pub fn len(&self) -> usize {
        self.by_mac.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_mac.is_empty()
    }
}
