//! What a driver says about reaching things out of band: how a power
//! strip's outlets are switched over SNMP, and how to open a console
//! through a console server. Data, so operators add their vendors' as
//! `Driver` entities without recompiling; the I/O is `clusto-oob`'s.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::inventory::Inventory;
use crate::model::EntityId;
use crate::placement::STATUS_KEY;
use crate::value::Value;
use crate::vm::{Condition, conditions_from, conditions_json};

/// A physical device's power, declared (`spec.powerState`) or observed
/// (`status.powerState`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize, Serialize, JsonSchema)]
pub enum PowerState {
    On,
    Off,
}

impl PowerState {
    pub fn as_str(self) -> &'static str {
        match self {
            PowerState::On => "On",
            PowerState::Off => "Off",
        }
    }

    pub fn parse(s: &str) -> Option<PowerState> {
        match s {
            "On" | "on" => Some(PowerState::On),
            "Off" | "off" => Some(PowerState::Off),
            _ => None,
        }
    }

    pub fn from_on(on: bool) -> PowerState {
        if on { PowerState::On } else { PowerState::Off }
    }
}

/// The way to a device's power.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PowerVia {
    /// IPMI to its BMC.
    Bmc,
    /// SNMP to the PDU outlets it is cabled to.
    Pdu,
}

impl PowerVia {
    pub fn as_str(self) -> &'static str {
        match self {
            PowerVia::Bmc => "bmc",
            PowerVia::Pdu => "pdu",
        }
    }

    pub fn parse(s: &str) -> Option<PowerVia> {
        match s {
            "bmc" => Some(PowerVia::Bmc),
            "pdu" => Some(PowerVia::Pdu),
            _ => None,
        }
    }
}

/// What the power controller last wrote under `status`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PowerStatus {
    /// As last observed (after any switch the controller made).
    pub power_state: Option<PowerState>,
    pub via: Option<PowerVia>,
    /// `PowerPath` (is there a known way to the power) and `Ready` (is it
    /// as declared).
    pub conditions: Vec<Condition>,
    pub last_error: Option<String>,
    /// The store revision the controller acted on.
    pub observed_revision: Option<i64>,
}

impl PowerStatus {
    pub fn condition(&self, kind: &str) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.kind == kind)
    }
}

/// Device kinds whose power can be declared: the physical ones (a VM's
/// power is its own `powerState`, Running or Stopped).
pub fn has_power(kind: crate::kind::Kind) -> bool {
    use crate::kind::Kind;
    matches!(
        kind,
        Kind::Server
            | Kind::NetworkSwitch
            | Kind::PowerStrip
            | Kind::ConsoleServer
            | Kind::Appliance
    )
}

impl Inventory {
    /// `spec.powerState`, if declared.
    pub fn power_desired(&self, id: EntityId) -> Option<PowerState> {
        self.spec(id, "powerState")
            .and_then(Value::as_str)
            .and_then(PowerState::parse)
    }

    pub fn power_status(&self, id: EntityId) -> PowerStatus {
        let s = |k: &str| {
            self.attr_value(id, STATUS_KEY, Some(k))
                .and_then(Value::as_str)
        };
        PowerStatus {
            power_state: s("powerState").and_then(PowerState::parse),
            via: s("powerVia").and_then(PowerVia::parse),
            conditions: conditions_from(
                self.attr_value(id, STATUS_KEY, Some("conditions")),
                &["PowerPath", "Ready"],
            ),
            last_error: s("lastError").map(str::to_string),
            observed_revision: self
                .attr_value(id, STATUS_KEY, Some("observedRevision"))
                .and_then(Value::as_int),
        }
    }

    /// Records a device's power status; writes only the fields that changed.
    pub fn set_power_status(&mut self, id: EntityId, st: &PowerStatus) {
        let text = |v: Option<&str>| v.map(|t| Value::String(t.to_string()));
        let fields = [
            ("powerState", text(st.power_state.map(PowerState::as_str))),
            ("powerVia", text(st.via.map(PowerVia::as_str))),
            (
                "conditions",
                Some(Value::Json(conditions_json(&st.conditions))),
            ),
            ("lastError", text(st.last_error.as_deref())),
            ("observedRevision", st.observed_revision.map(Value::Int)),
        ];
        for (k, v) in fields {
            match v {
                Some(v) => self.put_internal(id, STATUS_KEY, k, v),
                None => self.clear_internal(id, STATUS_KEY, k),
            }
        }
    }

    /// Devices in this view that declare their power.
    pub fn power_declared(&self) -> Vec<EntityId> {
        self.entities()
            .into_iter()
            .filter(|e| has_power(e.kind) && self.power_desired(e.id).is_some())
            .map(|e| e.id)
            .collect()
    }
}

/// A power strip's outlet control over SNMP v2c. `{outlet}` in an OID
/// stands for the outlet number (the power port's number on the strip).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct OutletControl {
    /// OID set to switch an outlet, e.g. `1.3.6.1.4.1.1718.3.2.3.1.11.1.1.{outlet}`.
    pub control: String,
    /// OID read for an outlet's state, e.g. `1.3.6.1.4.1.1718.3.2.3.1.10.1.1.{outlet}`.
    pub status: String,
    /// INTEGER written to `control` to switch on.
    pub on: i64,
    /// INTEGER written to `control` to switch off.
    pub off: i64,
    /// `status` values that mean on.
    pub status_on: Vec<i64>,
    /// `status` values that mean off (anything else is reported as unknown).
    pub status_off: Vec<i64>,
}

impl OutletControl {
    /// The rule a driver's outlet control must follow, as a sentence.
    pub fn check(&self) -> Result<(), String> {
        for (field, t) in [("control", &self.control), ("status", &self.status)] {
            if !t.contains("{outlet}") || outlet_oid(t, 1).is_none() {
                return Err(format!(
                    "power.{field} must be a dotted OID containing {{outlet}}, not {t:?}"
                ));
            }
        }
        if self.status_on.is_empty() || self.status_off.is_empty() {
            return Err("power.statusOn and power.statusOff each need at least one value".into());
        }
        if self.status_on.iter().any(|v| self.status_off.contains(v)) {
            return Err("a value cannot be in both power.statusOn and power.statusOff".into());
        }
        Ok(())
    }

    pub fn control_oid(&self, outlet: u32) -> Option<Vec<u64>> {
        outlet_oid(&self.control, outlet)
    }

    pub fn status_oid(&self, outlet: u32) -> Option<Vec<u64>> {
        outlet_oid(&self.status, outlet)
    }

    /// What a status value means: `Some(true)` on, `Some(false)` off.
    pub fn reading(&self, value: i64) -> Option<bool> {
        if self.status_on.contains(&value) {
            Some(true)
        } else if self.status_off.contains(&value) {
            Some(false)
        } else {
            None
        }
    }
}

fn outlet_oid(template: &str, outlet: u32) -> Option<Vec<u64>> {
    let text = template.replace("{outlet}", &outlet.to_string());
    let text = text.strip_prefix('.').unwrap_or(&text);
    let arcs: Option<Vec<u64>> = text.split('.').map(|a| a.parse().ok()).collect();
    arcs.filter(|a| a.len() >= 2 && a[0] <= 2)
}

/// How a console server opens a console on one of its serial ports: a
/// command template split into words before anything is substituted
/// (so no value can add words). Placeholders: `{address}` (the console
/// server's first address), `{port}`, `{port+N}` or `{N+port}` (its
/// serial port number, offset), `{user}`, `{server}` (whose console).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ConsoleAccess {
    /// e.g. `ssh -p {3000+port} -l {user} {address}`.
    pub command: String,
}

/// The values a console command is made of.
#[derive(Clone, Debug)]
pub struct ConsoleTarget<'a> {
    pub address: &'a str,
    pub port: u32,
    pub user: &'a str,
    pub server: &'a str,
}

impl ConsoleAccess {
    pub fn check(&self) -> Result<(), String> {
        let probe = ConsoleTarget {
            address: "a",
            port: 1,
            user: "u",
            server: "s",
        };
        if self.command.split_whitespace().next().is_none() {
            return Err("console.command is empty".into());
        }
        self.argv(&probe).map(drop)
    }

    /// The command's words with the placeholders filled in.
    pub fn argv(&self, t: &ConsoleTarget) -> Result<Vec<String>, String> {
        self.command
            .split_whitespace()
            .map(|w| fill(w, t))
            .collect()
    }
}

fn fill(word: &str, t: &ConsoleTarget) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = word;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let close = rest[open..]
            .find('}')
            .ok_or_else(|| format!("console.command has an unclosed {{ in {word:?}"))?;
        out.push_str(&placeholder(&rest[open + 1..open + close], t)?);
        rest = &rest[open + close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn placeholder(name: &str, t: &ConsoleTarget) -> Result<String, String> {
    let offset = |n: &str| n.trim().parse::<u32>().ok();
    let port = match name.split_once('+') {
        Some(("port", n)) => offset(n),
        Some((n, "port")) => offset(n),
        _ => None,
    };
    match (name, port) {
        ("address", _) => Ok(t.address.to_string()),
        ("port", _) => Ok(t.port.to_string()),
        ("user", _) => Ok(t.user.to_string()),
        ("server", _) => Ok(t.server.to_string()),
        (_, Some(n)) => Ok((u64::from(n) + u64::from(t.port)).to_string()),
        _ => Err(format!(
            "console.command: unknown placeholder {{{name}}} (known: address, port, port+N, user, server)"
        )),
    }
}

/// ServerTech Sentry PowerTower XM, as the original clusto drove it.
pub fn sentry_outlets() -> OutletControl {
    OutletControl {
        control: "1.3.6.1.4.1.1718.3.2.3.1.11.1.1.{outlet}".into(),
        status: "1.3.6.1.4.1.1718.3.2.3.1.10.1.1.{outlet}".into(),
        on: 1,
        off: 2,
        status_on: vec![5],
        status_off: vec![4],
    }
}

/// OpenGear CM4148: port N is SSH port 3000 + N on the console server.
pub fn opengear_console() -> ConsoleAccess {
    ConsoleAccess {
        command: "ssh -p {3000+port} -l {user} {address}".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builtin_templates_fill_in_as_the_original_did() {
        let s = sentry_outlets();
        s.check().unwrap();
        assert_eq!(
            s.control_oid(3).unwrap(),
            [1, 3, 6, 1, 4, 1, 1718, 3, 2, 3, 1, 11, 1, 1, 3]
        );
        assert_eq!(
            (s.reading(5), s.reading(4), s.reading(0)),
            (Some(true), Some(false), None)
        );
        let c = opengear_console();
        c.check().unwrap();
        let t = ConsoleTarget {
            address: "10.0.0.5",
            port: 7,
            user: "alice",
            server: "s1",
        };
        assert_eq!(
            c.argv(&t).unwrap(),
            ["ssh", "-p", "3007", "-l", "alice", "10.0.0.5"]
        );
    }

    #[test]
    fn bad_driver_data_is_refused_with_the_rule() {
        let mut s = sentry_outlets();
        s.control = "1.3.6.1.4.1.1718.3.2.3.1.11.1.1".into();
        assert!(
            s.check()
                .unwrap_err()
                .contains("power.control must be a dotted OID containing {outlet}")
        );
        let mut s = sentry_outlets();
        s.status = "iso.3.{outlet}".into();
        assert!(s.check().unwrap_err().contains("power.status"));
        let mut s = sentry_outlets();
        s.status_off = vec![5];
        assert!(s.check().unwrap_err().contains("both"));
        for (cmd, want) in [
            ("", "empty"),
            ("ssh {host}", "unknown placeholder {host}"),
            ("ssh {port", "unclosed"),
            ("ssh {x+port}", "unknown placeholder"),
        ] {
            let err = ConsoleAccess {
                command: cmd.into(),
            }
            .check()
            .unwrap_err();
            assert!(err.contains(want), "{cmd}: {err}");
        }
    }

    #[test]
    fn values_never_add_words() {
        let c = ConsoleAccess {
            command: "telnet {address} {port+2000}".into(),
        };
        let t = ConsoleTarget {
            address: "a b; rm -rf /",
            port: 1,
            user: "u",
            server: "s",
        };
        assert_eq!(c.argv(&t).unwrap(), ["telnet", "a b; rm -rf /", "2001"]);
    }
}
