//! Manifest types. Field names are the contract; every struct refuses
//! unknown fields so a typo is an error, not a silent no-op.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub const API_VERSION: &str = clusto_core::resource::API_VERSION;

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Metadata {
    /// The object's name. May be left out when `nameFrom` names it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// A NameManager that names the object at its first apply (`s0042`).
    #[serde(default, rename = "nameFrom", skip_serializing_if = "Option::is_none")]
    pub name_from: Option<String>,
    /// With `nameFrom`: a key, unique in the apply set, that ties this
    /// manifest to the name it got, so re-applies find the same object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Accepted so one file serves `kubectl apply` (as a custom resource)
    /// and `clusto plan|apply` alike. The inventory has one namespace: it
    /// is not part of the name; `clusto controller --kube` applies a
    /// namespace's resources as apply set `k8s:<namespace>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// One attribute row. `type` is needed only where the YAML value does not
/// say it: `ip`, `datetime`, `ref` (value names an entity), `json`, `float`.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AttrItem {
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subkey: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number: Option<i64>,
    pub value: serde_json::Value,
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub value_type: Option<String>,
}

/// A list of `{key, subkey, number, value}` rows, or the shorthand map
/// `{key: value}` / `{key: {subkey: value}}`.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum Attrs {
    List(Vec<AttrItem>),
    Map(BTreeMap<String, serde_json::Value>),
}

// By hand rather than `untagged`: the input's shape (sequence or mapping)
// picks the variant, so nothing is buffered and errors keep their position.
impl<'de> Deserialize<'de> for Attrs {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Attrs, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Attrs;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str(
                    "a list of {key, subkey, number, value} or a map {key: {subkey: value}}",
                )
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, seq: A) -> Result<Attrs, A::Error> {
                Vec::deserialize(serde::de::value::SeqAccessDeserializer::new(seq)).map(Attrs::List)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Attrs, A::Error> {
                BTreeMap::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(Attrs::Map)
            }
        }
        d.deserialize_any(V)
    }
}

impl Default for Attrs {
    fn default() -> Attrs {
        Attrs::List(Vec::new())
    }
}

impl Attrs {
    pub fn is_empty(&self) -> bool {
        match self {
            Attrs::List(v) => v.is_empty(),
            Attrs::Map(m) => m.is_empty(),
        }
    }

    /// The rows, with the map shorthand expanded.
    pub fn items(&self) -> Vec<AttrItem> {
        match self {
            Attrs::List(v) => v.clone(),
            Attrs::Map(m) => {
                let mut out = Vec::new();
                for (k, v) in m {
                    match v {
                        serde_json::Value::Object(sub) => {
                            for (sk, sv) in sub {
                                out.push(AttrItem {
                                    key: k.clone(),
                                    subkey: Some(sk.clone()),
                                    number: None,
                                    value: sv.clone(),
                                    value_type: None,
                                });
                            }
                        }
                        other => out.push(AttrItem {
                            key: k.clone(),
                            subkey: None,
                            number: None,
                            value: other.clone(),
                            value_type: None,
                        }),
                    }
                }
                out
            }
        }
    }
}

/// Rack units: `12` or `"12-13"`.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum Ru {
    Unit(u32),
    Range(String),
}

impl<'de> Deserialize<'de> for Ru {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Ru, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Ru;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a rack unit (12) or range (\"12-13\")")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Ru, E> {
                u32::try_from(v)
                    .map(Ru::Unit)
                    .map_err(|_| E::custom("rack unit too large"))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Ru, E> {
                u32::try_from(v)
                    .map(Ru::Unit)
                    .map_err(|_| E::custom("rack unit must be positive"))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Ru, E> {
                Ok(match v.parse::<u32>() {
                    Ok(n) => Ru::Unit(n),
                    Err(_) => Ru::Range(v.to_string()),
                })
            }
        }
        d.deserialize_any(V)
    }
}

impl Ru {
    pub fn text(&self) -> String {
        match self {
            Ru::Unit(n) => n.to_string(),
            Ru::Range(s) => s.clone(),
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PortItem {
    /// `nic-eth:1`
    pub port: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// The OS interface name (`eth0`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os_port: Option<String>,
    /// `sw1:nic-eth:10`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connected_to: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attrs: BTreeMap<String, String>,
}

/// `{manager, osPort, port}` allocates from an IPManager (stable across
/// re-applies); `{address, osPort, port}` binds a fixed address.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AddressItem {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manager: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os_port: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<String>,
}

/// Datacenter, Cage, Zone.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LocationSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    /// For cages and zones: the datacenter they are in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datacenter: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cage: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pools: Vec<String>,
    #[serde(default, skip_serializing_if = "Attrs::is_empty")]
    pub attrs: Attrs,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RackSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datacenter: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cage: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    /// Lowest usable unit (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "minU")]
    pub min_u: Option<u32>,
    /// Highest usable unit (default 45).
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "maxU")]
    pub max_u: Option<u32>,
    /// A RackLayout whose devices and cabling this rack gets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layout: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pools: Vec<String>,
    #[serde(default, skip_serializing_if = "Attrs::is_empty")]
    pub attrs: Attrs,
}

/// Server, VirtualServer, NetworkSwitch, PowerStrip, ConsoleServer, Appliance.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DeviceSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datacenter: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cage: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rack: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ru: Option<Ru>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pools: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortItem>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<AddressItem>,
    /// Power to keep this device at (not on VirtualServer): the controller
    /// switches it through its BMC, else its PDU outlets, and reports
    /// `status.powerState`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub power_state: Option<clusto_core::outofband::PowerState>,
    #[serde(default, skip_serializing_if = "Attrs::is_empty")]
    pub attrs: Attrs,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PoolKind {
    #[default]
    Plain,
    Exclusive,
    Unique,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PoolSpec {
    #[serde(default, rename = "type", skip_serializing_if = "is_plain")]
    pub pool_type: PoolKind,
    /// Unique pools of one group exclude each other.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Things to put in this pool (they may also list it in their `pools`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pools: Vec<String>,
    #[serde(default, skip_serializing_if = "Attrs::is_empty")]
    pub attrs: Attrs,
}

fn is_plain(k: &PoolKind) -> bool {
    *k == PoolKind::Plain
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct IpManagerSpec {
    pub cidr: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    /// Addresses or `a-b` ranges automatic allocation skips.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reserved: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pools: Vec<String>,
    #[serde(default, skip_serializing_if = "Attrs::is_empty")]
    pub attrs: Attrs,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NameManagerSpec {
    pub basename: String,
    pub digits: u32,
    /// The next number to hand out (default 0). Allocation moves it on;
    /// re-applying a manifest never moves it back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<i64>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DriverSpec {
    /// The kind this driver is a subtype of (`Server`, `NetworkSwitch`, …).
    pub base: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ports: BTreeMap<String, u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rack_units: Option<u32>,
    /// A power strip's outlet control over SNMP (base `PowerStrip`): what
    /// `clusto power` sets and reads for an outlet cabled to a server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub power: Option<clusto_core::outofband::OutletControl>,
    /// A console server's console command (base `ConsoleServer`), for
    /// `clusto console`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub console: Option<clusto_core::outofband::ConsoleAccess>,
    /// Defaults every thing of this driver inherits (merged last).
    #[serde(default, skip_serializing_if = "Attrs::is_empty")]
    pub attrs: Attrs,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LayoutDevice {
    /// Name template: `{rack}-sw1`.
    pub name: String,
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ru: Option<Ru>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<AddressItem>,
    #[serde(default, skip_serializing_if = "Attrs::is_empty")]
    pub attrs: Attrs,
}

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ServerSlot {
    /// The switch (name template); may be omitted when the layout has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub switch: Option<String>,
    pub switch_port: u32,
    pub ru: Ru,
    /// Outlet, e.g. `{rack}-pdu1:pwr-nema-5:3`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub power: Option<String>,
    /// Console port, e.g. `{rack}-ts1:console-serial:3`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub console: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    /// Addresses a server placed in this slot gets (as a manifest's
    /// `addresses`), so `clusto dhcpd` answers it as soon as it exists.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<AddressItem>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RackLayoutSpec {
    /// The NameManager that names servers placed in this layout's slots
    /// (by `clusto snmptrapd`, or `rack add-server` without `--name`);
    /// `servernames` when not given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_manager: Option<String>,
    #[serde(default)]
    pub devices: Vec<LayoutDevice>,
    /// Cables as pairs: `["{rack}-sw1:pwr-nema-5:1", "{rack}-pdu1:pwr-nema-5:24"]`.
    #[serde(default)]
    pub connections: Vec<[String; 2]>,
    #[serde(default)]
    pub server_slots: Vec<ServerSlot>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LibvirtSettings {
    /// Connection URI template: `qemu+ssh://{hostname}/system`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Ec2Settings {
    pub region: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_per_hour: Option<f64>,
    /// Price table: instance type → USD per hour.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub prices: BTreeMap<String, f64>,
    /// A shared-credentials file (AWS format) to read keys from; without
    /// it the usual environment / profile / instance-role chain applies.
    /// Keys are never stored in the inventory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_file: Option<String>,
    /// Profile in that file (or in ~/.aws) to use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    #[default]
    Libvirt,
    Ec2,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct VmManagerSpec {
    pub backend: Backend,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub libvirt: Option<LibvirtSettings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ec2: Option<Ec2Settings>,
    /// Hypervisors (servers) this manager places VMs on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// Hosts that take no new VMs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reserved: Vec<String>,
    /// NameManager that names the VMs `clusto vm create` makes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub names: Option<String>,
    #[serde(default, skip_serializing_if = "Attrs::is_empty")]
    pub attrs: Attrs,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub enum PowerState {
    #[default]
    Running,
    Stopped,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct VirtualMachineSpec {
    pub manager: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<u32>,
    #[serde(default, rename = "memoryMiB", skip_serializing_if = "Option::is_none")]
    pub memory_mib: Option<u64>,
    #[serde(default, rename = "diskGiB", skip_serializing_if = "Option::is_none")]
    pub disk_gib: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub power_state: Option<PowerState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_termination: Option<bool>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pools: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortItem>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<AddressItem>,
    #[serde(default, skip_serializing_if = "Attrs::is_empty")]
    pub attrs: Attrs,
}

/// A generic entity: pools and attributes only.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EntitySpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pools: Vec<String>,
    #[serde(default, skip_serializing_if = "Attrs::is_empty")]
    pub attrs: Attrs,
}

/// A whole document: `apiVersion`, `kind`, `metadata`, `spec`.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Document<S: Default> {
    pub api_version: String,
    pub kind: String,
    pub metadata: Metadata,
    #[serde(default)]
    pub spec: S,
}
