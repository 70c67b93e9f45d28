//! A rack's elevation: which device sits at which units, and which units
//! are empty. One description for every view (the CLI's text, the web UI's
//! drawing).

use serde_json::{Value as Json, json};

use crate::inventory::Inventory;
use crate::kind::Kind;
use crate::model::{EntityId, RuRange};

/// A side of a rack.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Face {
    Front,
    Rear,
}

/// How a device looks from one side of its rack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seen {
    /// Mounted on this side.
    Face,
    /// Mounted on the other side and full depth: its back shows here.
    Back,
}

/// A device at its units. The side it is mounted on is its attribute
/// `rack.face` (`front` unless it says `rear`); it fills the rack's depth
/// unless `rack.depth` says `half`, as PDUs and patch panels often do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mounted {
    pub name: String,
    pub kind: Kind,
    pub driver: String,
    pub ru: RuRange,
    pub face: Face,
    pub full_depth: bool,
}

impl Mounted {
    /// How it shows from `side`; None when it cannot be seen from there.
    pub fn seen_from(&self, side: Face) -> Option<Seen> {
        match (self.face == side, self.full_depth) {
            (true, _) => Some(Seen::Face),
            (false, true) => Some(Seen::Back),
            (false, false) => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Elevation {
    /// The rack's lowest and highest unit (`minU`, `maxU`).
    pub min: u32,
    pub max: u32,
    /// Devices at units, lowest first.
    pub mounted: Vec<Mounted>,
    /// Things in the rack at no unit (0U PDUs, cable managers), by name.
    pub unplaced: Vec<String>,
}

impl Elevation {
    /// The device at unit `u` as seen from `side`, if one shows there.
    pub fn at(&self, u: u32, side: Face) -> Option<(&Mounted, Seen)> {
        self.mounted
            .iter()
            .filter(|m| m.ru.start <= u && u <= m.ru.end)
            .find_map(|m| Some((m, m.seen_from(side)?)))
    }

    /// The data every view draws from: `clusto rack show -o json` and the
    /// API's `racks/NAME/elevation` answer with exactly this.
    pub fn to_json(&self, rack: &str) -> Json {
        let mounted: Vec<Json> = self
            .mounted
            .iter()
            .map(|m| {
                json!({"name": m.name, "kind": m.kind.as_str(), "driver": m.driver,
                    "ru": {"start": m.ru.start, "end": m.ru.end},
                    "face": m.face, "fullDepth": m.full_depth})
            })
            .collect();
        json!({"rack": rack, "minU": self.min, "maxU": self.max, "mounted": mounted, "unplaced": self.unplaced})
    }

    /// Back from `to_json` (what `clusto --server` reads from the API);
    /// None when the document is not an elevation.
    pub fn from_json(j: &Json) -> Option<Elevation> {
        let unit = |v: &Json| v.as_u64().and_then(|u| u32::try_from(u).ok());
        let mounted = j["mounted"]
            .as_array()?
            .iter()
            .map(|m| {
                Some(Mounted {
                    name: m["name"].as_str()?.to_string(),
                    kind: m["kind"].as_str()?.parse().ok()?,
                    driver: m["driver"].as_str().unwrap_or_default().to_string(),
                    ru: RuRange {
                        start: unit(&m["ru"]["start"])?,
                        end: unit(&m["ru"]["end"])?,
                    },
                    face: match m["face"].as_str()? {
                        "rear" => Face::Rear,
                        _ => Face::Front,
                    },
                    full_depth: m["fullDepth"].as_bool()?,
                })
            })
            .collect::<Option<Vec<_>>>()?;
        Some(Elevation {
            min: unit(&j["minU"])?,
            max: unit(&j["maxU"])?,
            mounted,
            unplaced: j["unplaced"]
                .as_array()?
                .iter()
                .filter_map(|n| Some(n.as_str()?.to_string()))
                .collect(),
        })
    }
}

impl Inventory {
    /// A device's `rack.SUBKEY` text, lower-cased.
    fn rack_word(&self, id: EntityId, subkey: &str) -> Option<&'static str> {
        let v = self.attr_value(id, "rack", Some(subkey))?.as_str()?;
        ["front", "rear", "full", "half"]
            .into_iter()
            .find(|w| v.trim().eq_ignore_ascii_case(w))
    }

    /// The elevation of `rack` (its contents must be loaded).
    pub fn elevation(&self, rack: EntityId) -> Elevation {
        let (min, max) = self.rack_bounds(rack);
        let mut mounted = Vec::new();
        let mut unplaced = Vec::new();
        for c in self.child_rows(rack) {
            let name = self.name_of(c.child).to_string();
            match c.ru {
                Some(ru) => mounted.push(Mounted {
                    kind: self.kind_of(c.child).unwrap_or(Kind::Server),
                    driver: self
                        .entity(c.child)
                        .map(|e| e.driver.clone())
                        .unwrap_or_default(),
                    name,
                    ru,
                    face: match self.rack_word(c.child, "face") {
                        Some("rear") => Face::Rear,
                        _ => Face::Front,
                    },
                    full_depth: self.rack_word(c.child, "depth") != Some("half"),
                }),
                None => unplaced.push(name),
            }
        }
        unplaced.sort();
        Elevation {
            min,
            max,
            mounted,
            unplaced,
        }
    }
}
