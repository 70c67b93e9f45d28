//! Resource managers (IPManager, NameManager) and kind-specific settings.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::driver::PoolType;
use crate::error::CoreError;
use crate::inventory::{Inventory, SPEC_KEY};
use crate::kind::Kind;
use crate::model::*;
use crate::names;
use crate::value::Value;

/// An IPManager's settings, parsed.
#[derive(Clone, Debug, PartialEq)]
pub struct IpRange {
    pub cidr: IpNet,
    pub gateway: Option<IpAddr>,
    pub reserved: Vec<(IpAddr, IpAddr)>,
}

fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u32::from(a) as u128,
        IpAddr::V6(a) => u128::from(a),
    }
}

fn from_u128(v: u128, v4: bool) -> IpAddr {
    if v4 {
        IpAddr::V4((v as u32).into())
    } else {
        IpAddr::V6(v.into())
    }
}

impl IpRange {
    /// Network and broadcast addresses are not host addresses (except on
    /// point-to-point /31 and /32 networks).
    pub fn is_host_address(&self, ip: IpAddr) -> bool {
        if !self.cidr.contains(&ip) {
            return false;
        }
        match self.cidr {
            IpNet::V4(n) if n.prefix_len() < 31 => {
                ip != IpAddr::V4(n.network()) && ip != IpAddr::V4(n.broadcast())
            }
            IpNet::V6(n) if n.prefix_len() < 127 => ip != IpAddr::V6(n.network()),
            _ => true,
        }
    }

    pub fn is_reserved(&self, ip: IpAddr) -> bool {
        self.reserved.iter().any(|(a, b)| {
            let v = to_u128(ip);
            a.is_ipv4() == ip.is_ipv4() && to_u128(*a) <= v && v <= to_u128(*b)
        })
    }

    /// Usable for automatic allocation (ignoring who holds it).
    pub fn is_allocatable(&self, ip: IpAddr) -> bool {
        self.is_host_address(ip) && Some(ip) != self.gateway && !self.is_reserved(ip)
    }

    pub fn broadcast(&self) -> IpAddr {
        self.cidr.broadcast()
    }

    /// The first and last host address, as numbers.
    fn host_bounds(&self) -> (u128, u128) {
        let (lo, hi) = (to_u128(self.cidr.network()), to_u128(self.broadcast()));
        match self.cidr {
            IpNet::V4(n) if n.prefix_len() < 31 => (lo + 1, hi - 1),
            IpNet::V6(n) if n.prefix_len() < 127 => (lo + 1, hi),
            _ => (lo, hi),
        }
    }

    /// How many addresses allocation can hand out: the host addresses
    /// less the gateway and the reserved ranges (which may overlap).
    pub fn capacity(&self) -> u128 {
        let (lo, hi) = self.host_bounds();
        let mut reserved: Vec<(u128, u128)> = self
            .reserved
            .iter()
            .filter(|(a, _)| a.is_ipv4() == self.cidr.addr().is_ipv4())
            .map(|(a, b)| (to_u128(*a).max(lo), to_u128(*b).min(hi)))
            .filter(|(a, b)| a <= b)
            .collect();
        reserved.sort_unstable();
        let mut taken = 0u128;
        let mut covered_to: Option<u128> = None;
        for (a, b) in reserved {
            let start = covered_to.map_or(a, |c| a.max(c.saturating_add(1)));
            if start <= b {
                taken = taken.saturating_add(b - start + 1);
            }
            covered_to = Some(covered_to.map_or(b, |c| c.max(b)));
        }
        let gateway = self
            .gateway
            .filter(|g| self.is_host_address(*g) && !self.is_reserved(*g))
            .map_or(0, |_| 1);
        (hi - lo).saturating_add(1).saturating_sub(taken + gateway)
    }

    pub fn netmask(&self) -> IpAddr {
        self.cidr.netmask()
    }
}

fn parse_reserved(text: &str) -> Result<Vec<(IpAddr, IpAddr)>, String> {
    let mut out = Vec::new();
    for part in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let a: IpAddr = a
            .trim()
            .parse()
            .map_err(|_| format!("{part:?} is not an address or a-b range"))?;
        let b: IpAddr = b
            .trim()
            .parse()
            .map_err(|_| format!("{part:?} is not an address or a-b range"))?;
        if a.is_ipv4() != b.is_ipv4() || to_u128(a) > to_u128(b) {
            return Err(format!(
                "reserved range {part:?} is backwards or mixes address families"
            ));
        }
        out.push((a, b));
    }
    Ok(out)
}

fn format_reserved(r: &[(IpAddr, IpAddr)]) -> Vec<String> {
    r.iter()
        .map(|(a, b)| {
            if a == b {
                a.to_string()
            } else {
                format!("{a}-{b}")
            }
        })
        .collect()
}

impl Inventory {
    fn rule_err(&self, id: EntityId, rule: impl Into<String>) -> CoreError {
        CoreError::Rule {
            object: self.name_of(id).to_string(),
            rule: rule.into(),
        }
    }

    pub(crate) fn expect_kind(&self, id: EntityId, kind: Kind) -> Result<(), CoreError> {
        let e = self.entity(id).ok_or(CoreError::Gone)?;
        if e.kind == kind {
            Ok(())
        } else {
            Err(CoreError::WrongKind {
                name: e.name.clone(),
                kind: e.kind,
                expected: kind,
            })
        }
    }

    pub fn ip_range(&self, mgr: EntityId) -> Result<IpRange, CoreError> {
        self.expect_kind(mgr, Kind::IpManager)?;
        let cidr = self
            .spec(mgr, "cidr")
            .and_then(Value::as_str)
            .and_then(|s| s.parse::<IpNet>().ok())
            .ok_or_else(|| self.rule_err(mgr, "IPManager has no cidr"))?;
        let gateway = match self.spec(mgr, "gateway") {
            Some(Value::Ip(ip)) => Some(*ip),
            _ => None,
        };
        let reserved = match self.spec(mgr, "reserved") {
            Some(Value::Json(serde_json::Value::Array(a))) => {
                let text: Vec<&str> = a.iter().filter_map(|v| v.as_str()).collect();
                parse_reserved(&text.join(",")).unwrap_or_default()
            }
            _ => Vec::new(),
        };
        Ok(IpRange {
            cidr,
            gateway,
            reserved,
        })
    }

    /// Addresses held by `id`, sorted.
    pub fn addresses_of(&self, id: EntityId) -> Vec<&Address> {
        self.held
            .get(&id)
            .into_iter()
            .flatten()
            .filter_map(|ip| self.addresses.get(ip).map(|(_, a)| a))
            .collect()
    }

    pub fn address(&self, ip: IpAddr) -> Option<&Address> {
        self.addresses.get(&ip).map(|(_, a)| a)
    }

    /// Addresses an IPManager has handed out.
    pub fn allocations(&self, mgr: EntityId) -> Vec<&Address> {
        self.managed
            .get(&mgr)
            .into_iter()
            .flatten()
            .filter_map(|ip| self.addresses.get(ip).map(|(_, a)| a))
            .collect()
    }

    /// The most specific IPManager whose network holds `ip`.
    pub fn manager_for(&self, ip: IpAddr) -> Option<EntityId> {
        self.entities_of_kind(Kind::IpManager)
            .into_iter()
            .filter_map(|m| Some((m.id, self.ip_range(m.id).ok()?)))
            .filter(|(_, r)| r.cidr.contains(&ip))
            .max_by_key(|(_, r)| r.cidr.prefix_len())
            .map(|(m, _)| m)
    }

    fn check_binding(
        &self,
        thing: EntityId,
        port: Option<&PortId>,
        os_port: Option<&str>,
    ) -> Result<(), CoreError> {
        if let Some(p) = port {
            let e = self.entity(thing).ok_or(CoreError::Gone)?;
            if !self.driver(&e.driver)?.has_port(&p.ptype, p.num) {
                return Err(
                    self.rule_err(thing, format!("{} ({}) has no port {p}", e.name, e.driver))
                );
            }
        }
        if let Some(o) = os_port
            && (o.is_empty()
                || o.len() > 64
                || o.chars().any(|c| c.is_whitespace() || c.is_control()))
        {
            return Err(self.rule_err(thing, format!("{o:?} is not an OS interface name")));
        }
        Ok(())
    }

    /// Hands an address from `mgr` to `thing`: the given one, or the next
    /// free one after the last handed out, wrapping around once.
    pub fn ip_allocate(
        &mut self,
        mgr: EntityId,
        thing: EntityId,
        address: Option<IpAddr>,
        os_port: Option<&str>,
        port: Option<&PortId>,
    ) -> Result<IpAddr, CoreError> {
        let range = self.ip_range(mgr)?;
        self.entity(thing).ok_or(CoreError::Gone)?;
        self.check_binding(thing, port, os_port)?;
        let ip = match address {
            Some(ip) => {
                if !range.is_host_address(ip) {
                    return Err(self.rule_err(
                        mgr,
                        format!(
                            "{ip} is not a host address of IPManager {} ({})",
                            self.name_of(mgr),
                            range.cidr
                        ),
                    ));
                }
                ip
            }
            None => self.next_free(mgr, &range)?,
        };
        let wanted = Address {
            address: ip,
            holder: thing,
            manager: Some(mgr),
            os_port: os_port.map(str::to_string),
            port: port.cloned(),
        };
        if let Some(held) = self.address(ip) {
            if held.holder != thing {
                return Err(self.rule_err(
                    thing,
                    format!(
                        "address {ip} is already held by {}",
                        self.name_of(held.holder)
                    ),
                ));
            }
            if *held == wanted {
                return Ok(ip);
            }
            self.remove_address(ip);
        }
        if address.is_none() {
            self.put_internal(mgr, SPEC_KEY, "last", Value::Ip(ip));
        }
        self.add_fact(Fact::Address(wanted));
        Ok(ip)
    }

    fn next_free(&self, mgr: EntityId, range: &IpRange) -> Result<IpAddr, CoreError> {
        self.allocation_walk(mgr, range)
            .find(|ip| !self.addresses.contains_key(ip))
            .ok_or_else(|| CoreError::Exhausted(self.name_of(mgr).to_string()))
    }

    /// The allocatable addresses of `mgr` in the order `ip allocate` tries
    /// them: after its cursor (the last address it handed out), wrapping
    /// around once. A store that loads only part of the inventory reads which
    /// of the first few are taken, so that [`Inventory::ip_allocate`] decides
    /// with the rows that matter and no others.
    pub fn allocation_walk(
        &self,
        mgr: EntityId,
        range: &IpRange,
    ) -> impl Iterator<Item = IpAddr> + use<> {
        let v4 = range.cidr.network().is_ipv4();
        let lo = to_u128(range.cidr.network());
        let hi = to_u128(range.cidr.broadcast());
        let start = match self.spec(mgr, "last") {
            Some(Value::Ip(last)) if range.cidr.contains(last) => to_u128(*last).wrapping_add(1),
            _ => lo,
        };
        let start = if start > hi || start < lo { lo } else { start };
        let range = range.clone();
        let (span, first) = (hi - lo, start - lo);
        (0..=span)
            .map(move |i| {
                // first + i, wrapped into 0..=span without overflowing u128.
                let off = if i <= span - first {
                    first + i
                } else {
                    i - (span - first) - 1
                };
                from_u128(lo + off, v4)
            })
            .filter(move |ip| range.is_allocatable(*ip))
    }

    /// Binds a fixed address to `thing`, through the IPManager that covers
    /// it if there is one.
    pub fn ip_bind(
        &mut self,
        thing: EntityId,
        ip: IpAddr,
        os_port: Option<&str>,
        port: Option<&PortId>,
    ) -> Result<(), CoreError> {
        if let Some(mgr) = self.manager_for(ip) {
            self.ip_allocate(mgr, thing, Some(ip), os_port, port)?;
            return Ok(());
        }
        self.check_binding(thing, port, os_port)?;
        let wanted = Address {
            address: ip,
            holder: thing,
            manager: None,
            os_port: os_port.map(str::to_string),
            port: port.cloned(),
        };
        if let Some(held) = self.address(ip) {
            if held.holder != thing {
                return Err(self.rule_err(
                    thing,
                    format!(
                        "address {ip} is already held by {}",
                        self.name_of(held.holder)
                    ),
                ));
            }
            if *held == wanted {
                return Ok(());
            }
            self.remove_address(ip);
        }
        self.add_fact(Fact::Address(wanted));
        Ok(())
    }

    /// Releases one address, or all of them; returns what was released.
    pub fn ip_release(
        &mut self,
        thing: EntityId,
        ip: Option<IpAddr>,
    ) -> Result<Vec<IpAddr>, CoreError> {
        let held: Vec<IpAddr> = self
            .held
            .get(&thing)
            .into_iter()
            .flatten()
            .copied()
            .collect();
        let gone = match ip {
            Some(ip) if held.contains(&ip) => vec![ip],
            Some(ip) => {
                return Err(
                    self.rule_err(thing, format!("{} does not hold {ip}", self.name_of(thing)))
                );
            }
            None if held.is_empty() => {
                return Err(
                    self.rule_err(thing, format!("{} holds no addresses", self.name_of(thing)))
                );
            }
            None => held,
        };
        for ip in &gone {
            self.remove_address(*ip);
        }
        Ok(gone)
    }

    /// Creates the next entity a NameManager names (`s0000`, `s0001`, …).
    /// Names taken by hand are skipped.
    pub fn name_allocate(
        &mut self,
        mgr: EntityId,
        kind: Kind,
        driver: Option<&str>,
    ) -> Result<EntityId, CoreError> {
        self.expect_kind(mgr, Kind::NameManager)?;
        let spec = self.name_spec(mgr);
        let free = (spec.next..spec.limit).find(|i| !self.exists(&spec.name(*i)));
        let Some(n) = free else {
            return Err(self.rule_err(
                mgr,
                format!(
                    "NameManager {} is out of digits ({} digits)",
                    self.name_of(mgr),
                    spec.digits
                ),
            ));
        };
        let id = self.create(kind, &spec.name(n), driver)?;
        self.put_internal(mgr, SPEC_KEY, "next", Value::Int(n + 1));
        Ok(id)
    }

    /// The names `name allocate` tries, in order, skipping the first `skip`:
    /// a store that loads only part of the inventory reads which are taken.
    pub fn name_candidates(&self, mgr: EntityId, skip: usize, n: usize) -> Vec<String> {
        let spec = self.name_spec(mgr);
        (spec.next.saturating_add(skip as i64)..spec.limit)
            .take(n)
            .map(|i| spec.name(i))
            .collect()
    }

    pub(crate) fn name_spec(&self, mgr: EntityId) -> NameSpec {
        let digits = self
            .spec(mgr, "digits")
            .and_then(Value::as_int)
            .unwrap_or(4)
            .clamp(1, 18) as u32;
        NameSpec {
            base: self
                .spec(mgr, "basename")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            digits,
            next: self
                .spec(mgr, "next")
                .and_then(Value::as_int)
                .unwrap_or(0)
                .max(0),
            limit: 10i64.pow(digits),
        }
    }

    /// Sets one kind-specific setting from text (`--set FIELD=VALUE`), with
    /// the same checks whatever the caller (CLI or manifest).
    pub fn configure(&mut self, id: EntityId, field: &str, text: &str) -> Result<(), CoreError> {
        let e = self.entity(id).ok_or(CoreError::Gone)?.clone();
        let bad = |why: String| CoreError::Rule {
            object: e.name.clone(),
            rule: why,
        };
        let int = |t: &str| -> Result<i64, CoreError> {
            t.trim()
                .parse::<i64>()
                .map_err(|_| bad(format!("{field} must be an integer, not {t:?}")))
        };
        if field == "driver" {
            return self.set_driver(id, text);
        }
        match (e.kind, field) {
            (Kind::IpManager, "cidr") => {
                let net: IpNet = text
                    .trim()
                    .parse()
                    .map_err(|_| bad(format!("cidr {text:?} is not a network like 10.0.0.0/24")))?;
                if net.trunc() != net {
                    return Err(bad(format!(
                        "cidr {net} has host bits set; did you mean {}?",
                        net.trunc()
                    )));
                }
                for a in self.allocations(id) {
                    if !net.contains(&a.address) {
                        return Err(bad(format!(
                            "{} (held by {}) would fall outside {net}",
                            a.address,
                            self.name_of(a.holder)
                        )));
                    }
                }
                self.put_internal(id, SPEC_KEY, "cidr", Value::String(net.to_string()));
            }
            (Kind::IpManager, "gateway") => {
                if text.trim().is_empty() {
                    self.clear_internal(id, SPEC_KEY, "gateway");
                    return Ok(());
                }
                let ip: IpAddr = text
                    .trim()
                    .parse()
                    .map_err(|_| bad(format!("gateway {text:?} is not an address")))?;
                if let Ok(r) = self.ip_range(id)
                    && !r.cidr.contains(&ip)
                {
                    return Err(bad(format!("gateway {ip} is outside {}", r.cidr)));
                }
                self.put_internal(id, SPEC_KEY, "gateway", Value::Ip(ip));
            }
            (Kind::IpManager, "reserved") => {
                let r = parse_reserved(text).map_err(bad)?;
                let list = format_reserved(&r)
                    .into_iter()
                    .map(serde_json::Value::String)
                    .collect();
                self.put_internal(
                    id,
                    SPEC_KEY,
                    "reserved",
                    Value::Json(serde_json::Value::Array(list)),
                );
            }
            (Kind::NameManager, "basename") => {
                if !text.is_empty() && !names::valid_name(&format!("{text}0")) {
                    return Err(bad(format!("basename {text:?} would not make valid names")));
                }
                self.put_internal(id, SPEC_KEY, "basename", Value::String(text.to_string()));
            }
            (Kind::NameManager, "digits") => {
                let d = int(text)?;
                if !(1..=18).contains(&d) {
                    return Err(bad(format!("digits must be 1 to 18, not {d}")));
                }
                self.put_internal(id, SPEC_KEY, "digits", Value::Int(d));
            }
            (Kind::NameManager, "next") => {
                let n = int(text)?;
                if n < 0 {
                    return Err(bad(format!("next must not be negative ({n})")));
                }
                self.put_internal(id, SPEC_KEY, "next", Value::Int(n));
            }
            (Kind::Rack, "minU" | "maxU") => {
                let n = int(text)?;
                let (mut min, mut max) = self.rack_bounds(id);
                if field == "minU" {
                    min = n.clamp(0, u32::MAX as i64) as u32;
                } else {
                    max = n.clamp(0, u32::MAX as i64) as u32;
                }
                if !(1..=1000).contains(&n) || min > max {
                    return Err(bad(format!(
                        "rack units must satisfy 1 <= minU <= maxU <= 1000 (minU {min}, maxU {max})"
                    )));
                }
                for c in self.child_rows(id) {
                    if let Some(ru) = c.ru
                        && (ru.start < min || ru.end > max)
                    {
                        return Err(bad(format!(
                            "{} at RU {ru} would fall outside {min}-{max}",
                            self.name_of(c.child)
                        )));
                    }
                }
                self.put_internal(id, SPEC_KEY, field, Value::Int(n));
            }
            (Kind::Rack, "layout") => {
                if text.is_empty() {
                    self.clear_internal(id, SPEC_KEY, "layout");
                } else {
                    names::check_name(text)?;
                    self.put_internal(id, SPEC_KEY, "layout", Value::String(text.to_string()));
                }
            }
            (Kind::Pool, "type") => {
                let t = PoolType::parse(text).ok_or_else(|| {
                    bad(format!(
                        "pool type must be plain, exclusive or unique, not {text:?}"
                    ))
                })?;
                if t != PoolType::from_driver(&e.driver) && !self.contents(id).is_empty() {
                    return Err(bad("the type of a pool with members cannot change".into()));
                }
                self.set_driver(id, t.driver())?;
            }
            (Kind::Pool, "group") => {
                if text.is_empty() {
                    self.clear_internal(id, SPEC_KEY, "group");
                } else {
                    names::check_key(text)?;
                    self.put_internal(id, SPEC_KEY, "group", Value::String(text.to_string()));
                }
            }
            (Kind::Driver, "base") => {
                let k: Kind = text.parse()?;
                if k.is_definition() {
                    return Err(bad("a driver's base must be a thing's kind".into()));
                }
                self.put_internal(id, SPEC_KEY, "base", Value::String(k.as_str().to_string()));
            }
            (Kind::Driver, "rackUnits") => {
                let n = int(text)?;
                if !(0..=100).contains(&n) {
                    return Err(bad(format!("rackUnits must be 0 to 100, not {n}")));
                }
                self.put_internal(id, SPEC_KEY, "rackUnits", Value::Int(n));
            }
            (Kind::Driver, "ports") => {
                let map = parse_port_map(text).map_err(bad)?;
                self.put_internal(
                    id,
                    SPEC_KEY,
                    "ports",
                    Value::Json(serde_json::Value::Object(map)),
                );
            }
            (Kind::Driver, "power") => {
                let v: crate::outofband::OutletControl =
                    serde_json::from_str(text).map_err(|err| bad(format!("power: {err}")))?;
                v.check().map_err(bad)?;
                self.put_driver_data(id, "power", Kind::PowerStrip, &v)
                    .map_err(bad)?;
            }
            (Kind::Driver, "console") => {
                let v: crate::outofband::ConsoleAccess =
                    serde_json::from_str(text).map_err(|err| bad(format!("console: {err}")))?;
                v.check().map_err(bad)?;
                self.put_driver_data(id, "console", Kind::ConsoleServer, &v)
                    .map_err(bad)?;
            }
            (k, "powerState") if crate::outofband::has_power(k) => {
                let p = crate::outofband::PowerState::parse(text)
                    .ok_or_else(|| bad(format!("powerState must be On or Off, not {text:?}")))?;
                self.put_internal(id, SPEC_KEY, "powerState", Value::String(p.as_str().into()));
            }
            (Kind::VirtualMachine, f) if settings_for(e.kind).contains(&f) => {
                let v = vm_setting(f, text).map_err(bad)?;
                self.put_internal(id, SPEC_KEY, f, v);
            }
            // Kinds whose settings are structured data checked by the
            // manifest layer's types: stored as given.
            (Kind::RackLayout | Kind::VmManager, f) if settings_for(e.kind).contains(&f) => {
                let t = text.trim_start();
                let v = if t.starts_with('{') || t.starts_with('[') {
                    Value::Json(serde_json::from_str(t).map_err(|err| bad(format!("{f}: {err}")))?)
                } else {
                    Value::infer(text)
                };
                self.put_internal(id, SPEC_KEY, f, v);
            }
            (k, f) => {
                return Err(bad(format!("{k} has no setting {f:?}{}", settings_hint(k))));
            }
        }
        Ok(())
    }

    /// Out-of-band driver data, for drivers of the one base it describes.
    fn put_driver_data<T: serde::Serialize>(
        &mut self,
        id: EntityId,
        field: &str,
        base: Kind,
        v: &T,
    ) -> Result<(), String> {
        let has = self.spec(id, "base").and_then(Value::as_str);
        if has != Some(base.as_str()) {
            return Err(format!(
                "{field} is for drivers of base {base}, and this one's base is {}",
                has.unwrap_or("unset")
            ));
        }
        let j = serde_json::to_value(v).map_err(|e| format!("{field}: {e}"))?;
        self.put_internal(id, SPEC_KEY, field, Value::Json(j));
        Ok(())
    }

    /// Settings of an entity as text, for display and export.
    pub fn settings(&self, id: EntityId) -> Vec<(String, Value)> {
        let mut v: Vec<(String, Value)> = self
            .attr_rows(id)
            .iter()
            .filter(|(_, a)| a.key == SPEC_KEY && a.number.is_none())
            .filter_map(|(_, a)| Some((a.subkey.clone()?, a.value.clone())))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }
}

/// A NameManager's settings: names are `base` + `digits`-wide numbers from
/// `next` up to (not including) `limit`.
pub(crate) struct NameSpec {
    pub(crate) base: String,
    pub(crate) digits: u32,
    pub(crate) next: i64,
    limit: i64,
}

impl NameSpec {
    fn name(&self, i: i64) -> String {
        format!("{}{i:0width$}", self.base, width = self.digits as usize)
    }
}

/// A VirtualMachine setting as the typed value it is stored as: the same
/// types the manifest's `VirtualMachineSpec` takes, so `vm set` refuses
/// what `apply` refuses and no reader parses text back.
fn vm_setting(field: &str, text: &str) -> Result<Value, String> {
    let t = text.trim();
    let whole = |min: i64, max: i64| {
        t.parse::<i64>()
            .ok()
            .filter(|n| (min..=max).contains(n))
            .map(Value::Int)
            .ok_or_else(|| {
                format!("{field} must be a whole number from {min} to {max}, not {text:?}")
            })
    };
    match field {
        "cpus" => whole(1, u32::MAX as i64),
        "memoryMiB" => whole(1, i64::MAX),
        "diskGiB" => whole(0, i64::MAX),
        "powerState" => match t {
            "Running" | "Stopped" => Ok(Value::String(t.to_string())),
            _ => Err(format!(
                "powerState must be Running or Stopped, not {text:?}"
            )),
        },
        "allowTermination" => match t {
            "true" => Ok(Value::Bool(true)),
            "false" => Ok(Value::Bool(false)),
            _ => Err(format!(
                "allowTermination must be true or false, not {text:?}"
            )),
        },
        "manager" | "host" => names::check_name(t)
            .map(|_| Value::String(t.to_string()))
            .map_err(|e| format!("{field}: {e}")),
        _ if t.is_empty() => Err(format!("{field} must not be empty")),
        _ => Ok(Value::String(t.to_string())),
    }
}

/// The settings each kind accepts, for error messages and `--help`.
pub fn settings_for(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::IpManager => &["cidr", "gateway", "reserved"],
        Kind::NameManager => &["basename", "digits", "next"],
        Kind::Rack => &["minU", "maxU", "layout"],
        Kind::Pool => &["type", "group"],
        Kind::Driver => &["base", "rackUnits", "ports", "power", "console"],
        k if crate::outofband::has_power(k) => &["powerState"],
        Kind::RackLayout => &["devices", "connections", "serverSlots", "nameManager"],
        Kind::VmManager => &["backend", "libvirt", "ec2", "prices", "reserved", "names"],
        Kind::VirtualMachine => &[
            "manager",
            "host",
            "cpus",
            "memoryMiB",
            "diskGiB",
            "image",
            "instanceType",
            "powerState",
            "allowTermination",
        ],
        _ => &[],
    }
}

fn settings_hint(kind: Kind) -> String {
    let s = settings_for(kind);
    if s.is_empty() {
        " (it has only driver)".into()
    } else {
        format!(" (settings: driver, {})", s.join(", "))
    }
}

/// `nic-eth=2,pwr-nema-5=1` or a JSON object.
fn parse_port_map(text: &str) -> Result<serde_json::Map<String, serde_json::Value>, String> {
    let mut map = serde_json::Map::new();
    if text.trim_start().starts_with('{') {
        let v: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(text).map_err(|e| format!("ports: {e}"))?;
        for (k, n) in v {
            let n = n
                .as_u64()
                .ok_or_else(|| format!("port count for {k} must be a whole number"))?;
            map.insert(k, n.into());
        }
    } else {
        for part in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (k, n) = part
                .split_once('=')
                .ok_or_else(|| format!("ports item {part:?} is not TYPE=COUNT"))?;
            let n: u64 = n
                .trim()
                .parse()
                .map_err(|_| format!("port count in {part:?} must be a whole number"))?;
            map.insert(k.trim().to_string(), n.into());
        }
    }
    for (k, n) in &map {
        if !names::valid_key(k) {
            return Err(format!("port type {k:?} is not a valid name"));
        }
        if n.as_u64().unwrap_or(0) > 10_000 {
            return Err(format!("port count for {k} is too large"));
        }
    }
    Ok(map)
}
