//! A rack's elevation: which device sits at which units, and which units
//! are empty. One description for every view (the CLI's text, the web UI's
//! drawing).

use crate::inventory::Inventory;
use crate::model::{EntityId, RuRange};

/// A device at its units.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mounted {
    pub id: EntityId,
    pub name: String,
    pub driver: String,
    pub ru: RuRange,
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
    /// The device at unit `u`, if any.
    pub fn at(&self, u: u32) -> Option<&Mounted> {
        self.mounted
            .iter()
            .find(|m| m.ru.start <= u && u <= m.ru.end)
    }
}

impl Inventory {
    /// The elevation of `rack` (its contents must be loaded).
    pub fn elevation(&self, rack: EntityId) -> Elevation {
        let (min, max) = self.rack_bounds(rack);
        let mut mounted = Vec::new();
        let mut unplaced = Vec::new();
        for c in self.child_rows(rack) {
            let name = self.name_of(c.child).to_string();
            match c.ru {
                Some(ru) => mounted.push(Mounted {
                    id: c.child,
                    driver: self
                        .entity(c.child)
                        .map(|e| e.driver.clone())
                        .unwrap_or_default(),
                    name,
                    ru,
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
