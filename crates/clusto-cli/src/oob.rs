//! `clusto power` and `clusto console`: out-of-band control of physical
//! servers through the BMCs, PDU outlets and console servers the
//! inventory says they are wired to.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use clusto_core::{EntityId, Inventory};
use clusto_oob::ipmi::Prefer;
use clusto_oob::path::{self, BmcPath, Console, ConsolePath};
use clusto_oob::power::{self, Path, Reading, Timing, Via};
use clusto_store::{Scope, Store};
use serde_json::{Value as Json, json};

use crate::output::{Format, emit};
use crate::{PowerHow, PowerOp, ViaArg};

/// The servers and every device their power and console cables lead to,
/// with those devices' addresses and merged attributes: two point reads.
async fn view(store: &Store, names: &[String]) -> Result<Inventory> {
    let first = store.load_scope(&Scope::read(names), None).await?.1;
    let mut all: Vec<String> = names.to_vec();
    for n in names {
        all.extend(path::peers(&first, first.id_of(n)?));
    }
    if all.len() == names.len() {
        return Ok(first);
    }
    Ok(store.load_scope(&Scope::read(&all), None).await?.1)
}

fn server(inv: &Inventory, name: &str) -> Result<EntityId> {
    let id = inv.id_of(name)?;
    match inv.kind_of(id) {
        Some(k) if k.is_device() => Ok(id),
        Some(k) => bail!("{name} ({k}) is not a device with power"),
        None => bail!("{name} not found"),
    }
}

fn via(arg: Option<ViaArg>) -> Option<Via> {
    arg.map(|v| match v {
        ViaArg::Bmc => Via::Bmc,
        ViaArg::Pdu => Via::Pdu,
    })
}

fn state_text(on: Option<bool>) -> &'static str {
    match on {
        Some(true) => "on",
        Some(false) => "off",
        None => "mixed",
    }
}

/// One server's outcome, for the table and `-o json`.
struct Outcome {
    name: String,
    via: Option<Via>,
    result: Result<Option<Reading>, String>,
}

pub async fn power(store: &Store, fmt: Format, op: &PowerOp) -> Result<ExitCode> {
    let (names, how) = op.target();
    let inv = view(store, names).await?;
    let timing = Timing {
        timeout: seconds(how.timeout, "--timeout")?,
        ..Timing::default()
    };
    let wait = match op {
        PowerOp::Cycle { wait, .. } => seconds(*wait, "--wait")?,
        _ => Duration::ZERO,
    };
    let mut outcomes = Vec::new();
    for name in names {
        let id = server(&inv, name)?;
        let chosen = power::choose(name, path::power_paths(&inv, id), via(how.via));
        let (via, result) = match chosen {
            Ok(p) => (Some(p.via()), act(op, &p, wait, &timing).await),
            Err(e) => (None, Err(e.to_string())),
        };
        outcomes.push(Outcome {
            name: name.clone(),
            via,
            result,
        });
    }
    report(fmt, op, &outcomes)?;
    let failed = outcomes.iter().filter(|o| o.result.is_err()).count();
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn seconds(s: f64, flag: &str) -> Result<Duration> {
    Duration::try_from_secs_f64(s)
        .map_err(|_| anyhow!("{flag} must be a number of seconds ≥ 0, not {s}"))
}

async fn act(
    op: &PowerOp,
    p: &Path,
    wait: Duration,
    t: &Timing,
) -> Result<Option<Reading>, String> {
    let done = match op {
        PowerOp::Status { .. } => {
            return power::status(p, t)
                .await
                .map(Some)
                .map_err(|e| e.to_string());
        }
        PowerOp::On { .. } => power::switch(p, true, t).await,
        PowerOp::Off { .. } => power::switch(p, false, t).await,
        PowerOp::Cycle { .. } => power::cycle(p, wait, t).await,
    };
    done.map(|()| None).map_err(|e| e.to_string())
}

fn report(fmt: Format, op: &PowerOp, outcomes: &[Outcome]) -> Result<()> {
    let verb = op.verb();
    let mut rows = Vec::new();
    let mut data = Vec::new();
    for o in outcomes {
        let via = o.via.map(Via::as_str).unwrap_or("-");
        match &o.result {
            Err(e) => {
                eprintln!("error: {e}");
                data.push(json!({"name": o.name, "via": o.via.map(Via::as_str), "error": e}));
            }
            Ok(Some(r)) => {
                let outlets: Vec<String> = r
                    .outlets
                    .iter()
                    .map(|(s, n, on)| format!("{s} outlet {n} {}", state_text(Some(*on))))
                    .collect();
                rows.push(vec![
                    o.name.clone(),
                    state_text(r.on).into(),
                    via.into(),
                    outlets.join(", "),
                ]);
                data.push(json!({
                    "name": o.name,
                    "power": state_text(r.on),
                    "via": via,
                    "outlets": r.outlets.iter().map(|(s, n, on)| json!({
                        "strip": s, "outlet": n, "power": state_text(Some(*on))
                    })).collect::<Vec<_>>(),
                }));
            }
            Ok(None) => {
                rows.push(vec![o.name.clone(), verb.into(), via.into(), String::new()]);
                data.push(json!({"name": o.name, "done": verb, "via": via}));
            }
        }
    }
    let header = if matches!(op, PowerOp::Status { .. }) {
        ["NAME", "POWER", "VIA", "OUTLETS"]
    } else {
        ["NAME", "DONE", "VIA", ""]
    };
    if rows.is_empty() && matches!(fmt, Format::Table) {
        return Ok(());
    }
    emit(fmt, &Json::Array(data), &header, rows)
}

impl PowerOp {
    fn target(&self) -> (&[String], &PowerHow) {
        match self {
            PowerOp::Status { names, how }
            | PowerOp::On { names, how }
            | PowerOp::Off { names, how }
            | PowerOp::Cycle { names, how, .. } => (names, how),
        }
    }

    fn verb(&self) -> &'static str {
        match self {
            PowerOp::Status { .. } => "status",
            PowerOp::On { .. } => "on",
            PowerOp::Off { .. } => "off",
            PowerOp::Cycle { .. } => "cycled",
        }
    }
}

pub async fn console(store: &Store, name: &str, print: bool) -> Result<ExitCode> {
    let inv = view(store, std::slice::from_ref(&name.to_string())).await?;
    let id = server(&inv, name)?;
    let console =
        path::console(&inv, id).map_err(|m| anyhow!("{name} has no console path: {m}"))?;
    let (argv, secret) = match console {
        Console::Serial(cp) => (serial_argv(&cp, name)?, None),
        Console::Sol(b) => {
            let (user, password) = power::read_credentials(&b.credentials)?;
            (sol_argv(&b, &user), Some(password))
        }
    };
    use std::io::IsTerminal;
    if print || !std::io::stdout().is_terminal() {
        println!("{}", shell_words(&argv));
        if secret.is_some() {
            eprintln!("(ipmitool -E reads the password from IPMI_PASSWORD)");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut cmd = std::process::Command::new(&argv[0]);
    cmd.args(&argv[1..]);
    if let Some(p) = secret {
        cmd.env("IPMI_PASSWORD", p);
    }
    match cmd.status() {
        Ok(s) if s.success() => Ok(ExitCode::SUCCESS),
        Ok(_) => Ok(ExitCode::FAILURE),
        Err(e) => bail!("cannot run {}: {e}", argv[0]),
    }
}

/// The console server driver's command for this port.
fn serial_argv(cp: &ConsolePath, name: &str) -> Result<Vec<String>> {
    let user = clusto_store::current_user();
    let address = cp.address.to_string();
    cp.access
        .argv(&clusto_core::outofband::ConsoleTarget {
            address: &address,
            port: cp.port,
            user: &user,
            server: name,
        })
        .map_err(|e| anyhow!("{}'s driver: {e}", cp.device))
}

/// ipmitool's SOL client, the password passed in its environment (`-E`)
/// so it never shows in a process list or a printed command.
fn sol_argv(b: &BmcPath, user: &str) -> Vec<String> {
    let interface = match b.prefer {
        Prefer::Lan => "lan",
        _ => "lanplus",
    };
    [
        "ipmitool",
        "-I",
        interface,
        "-H",
        &b.addr.ip().to_string(),
        "-p",
        &b.addr.port().to_string(),
        "-U",
        user,
        "-E",
        "sol",
        "activate",
    ]
    .map(String::from)
    .to_vec()
}

/// Words quoted for a POSIX shell where they need it, so a printed
/// command can be pasted or `eval`ed as it is.
fn shell_words(argv: &[String]) -> String {
    argv.iter()
        .map(|w| {
            let plain = !w.is_empty()
                && w.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./:=@,+%".contains(c));
            if plain {
                w.clone()
            } else {
                format!("'{}'", w.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    #[test]
    fn printed_commands_survive_a_shell() {
        let argv: Vec<String> = ["ssh", "-p", "3007", "-l", "o'neil", "a b"]
            .map(String::from)
            .to_vec();
        assert_eq!(
            super::shell_words(&argv),
            r"ssh -p 3007 -l 'o'\''neil' 'a b'"
        );
    }
}
