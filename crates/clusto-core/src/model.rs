//! The facts an inventory is made of. Each fact is one row in the store;
//! every change to the inventory is a set of facts added and removed.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use crate::error::CoreError;
use crate::kind::Kind;
use crate::value::Value;

/// Stable identity of an entity across renames.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EntityId(pub i64);

/// Identity of one stored fact (one row).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FactId(pub i64);

#[derive(Clone, Debug, PartialEq)]
pub struct Entity {
    pub id: EntityId,
    pub name: String,
    pub kind: Kind,
    pub driver: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Attr {
    pub key: String,
    pub subkey: Option<String>,
    pub number: Option<i64>,
    pub value: Value,
}

impl Attr {
    pub fn new(
        key: impl Into<String>,
        subkey: Option<&str>,
        number: Option<i64>,
        value: Value,
    ) -> Attr {
        Attr {
            key: key.into(),
            subkey: subkey.map(str::to_string),
            number,
            value,
        }
    }

    pub fn is_hidden(&self) -> bool {
        self.key.starts_with('_')
    }

    /// `key`, `key.subkey`, with `#number` when numbered.
    pub fn path(&self) -> String {
        let mut s = self.key.clone();
        if let Some(sk) = &self.subkey {
            s.push('.');
            s.push_str(sk);
        }
        if let Some(n) = self.number {
            s.push('#');
            s.push_str(&n.to_string());
        }
        s
    }
}

/// A port on a device: `nic-eth:1`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortId {
    pub ptype: String,
    pub num: u32,
}

impl fmt::Display for PortId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.ptype, self.num)
    }
}

impl FromStr for PortId {
    type Err = CoreError;
    fn from_str(s: &str) -> Result<Self, CoreError> {
        let bad = || CoreError::BadPort(s.to_string());
        let (ptype, num) = s.rsplit_once(':').ok_or_else(bad)?;
        if ptype.is_empty() || !crate::names::valid_key(ptype) {
            return Err(bad());
        }
        let num: u32 = num.parse().map_err(|_| bad())?;
        if num == 0 {
            return Err(bad());
        }
        Ok(PortId {
            ptype: ptype.to_string(),
            num,
        })
    }
}

/// `A:TYPE:N` as typed on the command line.
pub fn split_port_ref(s: &str) -> Result<(&str, PortId), CoreError> {
    let bad = || CoreError::BadPort(s.to_string());
    let (name, rest) = s.split_once(':').ok_or_else(bad)?;
    if name.is_empty() {
        return Err(bad());
    }
    Ok((name, rest.parse().map_err(|_| bad())?))
}

/// Rack units `start..=end`, both inclusive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RuRange {
    pub start: u32,
    pub end: u32,
}

impl RuRange {
    pub fn height(self) -> u32 {
        self.end - self.start + 1
    }
}

impl fmt::Display for RuRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.start == self.end {
            write!(f, "{}", self.start)
        } else {
            write!(f, "{}-{}", self.start, self.end)
        }
    }
}

impl FromStr for RuRange {
    type Err = CoreError;
    fn from_str(s: &str) -> Result<Self, CoreError> {
        let bad = || CoreError::BadRu(s.to_string());
        let (a, b) = match s.split_once('-') {
            Some((a, b)) => (a.trim(), b.trim()),
            None => (s.trim(), s.trim()),
        };
        let start: u32 = a.parse().map_err(|_| bad())?;
        let end: u32 = b.parse().map_err(|_| bad())?;
        if start == 0 || end < start {
            return Err(bad());
        }
        Ok(RuRange { start, end })
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Containment {
    pub parent: EntityId,
    pub child: EntityId,
    pub ru: Option<RuRange>,
}

/// A cable between two ports.
#[derive(Clone, Debug, PartialEq)]
pub struct Link {
    pub a: EntityId,
    pub a_port: PortId,
    pub b: EntityId,
    pub b_port: PortId,
}

impl Link {
    /// The far end as seen from `(e, p)`, if this link touches it.
    pub fn other_end(&self, e: EntityId, p: &PortId) -> Option<(EntityId, &PortId)> {
        if self.a == e && &self.a_port == p {
            Some((self.b, &self.b_port))
        } else if self.b == e && &self.b_port == p {
            Some((self.a, &self.a_port))
        } else {
            None
        }
    }
}

/// An address held by a thing, optionally handed out by an IPManager and
/// bound to an OS interface and a NIC port.
#[derive(Clone, Debug, PartialEq)]
pub struct Address {
    pub address: IpAddr,
    pub holder: EntityId,
    pub manager: Option<EntityId>,
    pub os_port: Option<String>,
    pub port: Option<PortId>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Fact {
    Entity(Entity),
    Attr(EntityId, Attr),
    Contains(Containment),
    Link(Link),
    Address(Address),
}

/// Which store table a fact lives in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    Entities,
    Attrs,
    Contains,
    Links,
    Addresses,
}

impl Fact {
    pub fn table(&self) -> Table {
        match self {
            Fact::Entity(_) => Table::Entities,
            Fact::Attr(..) => Table::Attrs,
            Fact::Contains(_) => Table::Contains,
            Fact::Link(_) => Table::Links,
            Fact::Address(_) => Table::Addresses,
        }
    }

    /// Entities this fact is about (for per-entity history).
    pub fn entities(&self) -> Vec<EntityId> {
        match self {
            Fact::Entity(e) => vec![e.id],
            Fact::Attr(e, a) => match a.value {
                Value::Ref(r) => vec![*e, r],
                _ => vec![*e],
            },
            Fact::Contains(c) => vec![c.parent, c.child],
            Fact::Link(l) => vec![l.a, l.b],
            Fact::Address(a) => a.manager.into_iter().chain([a.holder]).collect(),
        }
    }
}
