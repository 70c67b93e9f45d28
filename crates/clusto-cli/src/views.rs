//! The point reads (`clusto_store::reads`) as commands: `describe`,
//! `locate`, `contents`, `parents`, `pool members`, `port list`, `ip list`,
//! `vm explain` and `fsck`. Each view is read from the database
//! (`--store`) or from `clusto serve` (`--server`) as the same JSON, and
//! printed by the same code, so both show the same thing.

use std::process::ExitCode;

use anyhow::Result;
use clusto_core::Kind;
use clusto_core::views::{AddressBook, Description, Named, Place, PlacementView, PortView};
use clusto_store::Store;
use clusto_store::reads::Read;
use serde::de::DeserializeOwned;
use serde_json::{Value as Json, json};

use crate::output::{Format, emit};
use crate::remote::Remote;
use crate::{Cli, Command, IpOp, PoolOp, PortOp, VmOp};

/// Objects per page of a list read.
const PAGE: usize = 500;

/// What a list read selects.
#[derive(Clone, Copy)]
enum Selection<'a> {
    Kind(Kind),
    Query(&'a str),
}

/// The objects of `names`, from one load of just them.
async fn objects(snap: &mut clusto_store::Snapshot, names: &[String]) -> Result<Vec<Json>> {
    let inv = snap.load(&clusto_store::Scope::read(names)).await?;
    names
        .iter()
        .map(|n| Ok(inv.resource(inv.id_of(n)?, false)))
        .collect()
}

/// Where the views come from.
pub enum Source<'a> {
    Store(&'a Store),
    Server(&'a Remote),
}

impl Source<'_> {
    async fn view<T: DeserializeOwned>(&self, read: Read<'_>, at: Option<i64>) -> Result<T> {
        let json = match self {
            Source::Store(s) => s.read_view(&read, at).await?,
            Source::Server(r) => r.view(&read, at).await?,
        };
        Ok(serde_json::from_value(json)?)
    }

    /// The revision `at` names, or the head: what every page of a
    /// multi-list read (`export`) is read at.
    async fn pin(&self, at: Option<i64>) -> Result<i64> {
        match (at, self) {
            (Some(r), _) => Ok(r),
            (None, Source::Store(s)) => Ok(s.head().await?),
            (None, Source::Server(r)) => r.head().await,
        }
    }

    /// Objects as `clusto get -o json` prints them, a page at a time: of
    /// one kind, or those a query selects.
    async fn each_object(
        &self,
        sel: Selection<'_>,
        at: Option<i64>,
        mut each: impl FnMut(Vec<Json>) -> Result<()>,
    ) -> Result<()> {
        let s = match self {
            Source::Server(r) => {
                let (plural, expr) = match sel {
                    Selection::Kind(k) => crate::remote::listing(Some(k)),
                    Selection::Query(q) => (crate::remote::listing(None).0, Some(q)),
                };
                return crate::remote::each_page(r, &plural, expr, at, each).await;
            }
            Source::Store(s) => s,
        };
        let mut snap = s.snapshot(at).await?;
        match sel {
            Selection::Query(q) => {
                let names = s
                    .query(&clusto_core::query::parse(q)?, Some(snap.rev()))
                    .await?;
                for page in names.chunks(PAGE) {
                    each(objects(&mut snap, page).await?)?;
                }
            }
            Selection::Kind(kind) => {
                let mut after: Option<String> = None;
                loop {
                    let page = snap
                        .names(Some(kind), after.as_deref(), PAGE as i64)
                        .await?;
                    let full = page.len() == PAGE;
                    after = page.last().cloned();
                    each(objects(&mut snap, &page).await?)?;
                    if !full {
                        break;
                    }
                }
            }
        }
        Ok(())
    }

    async fn fsck(&self, at: Option<i64>) -> Result<Json> {
        Ok(match self {
            Source::Store(s) => json!({ "violations": s.fsck(at).await? }),
            Source::Server(r) => r.fsck(at).await?,
        })
    }
}

/// Runs the command if it is one of the views (`describe` only as a
/// table: its JSON and YAML are the object itself).
pub async fn run(cli: &Cli, src: &Source<'_>) -> Option<Result<ExitCode>> {
    let fmt = cli.output;
    let done = |r: Result<()>| Some(r.map(|()| ExitCode::SUCCESS));
    match &cli.command {
        Command::Describe { name, at } if fmt == Format::Table => done(
            src.view(Read::Description(name), at.at)
                .await
                .map(|d| describe(&d)),
        ),
        Command::Locate { name, at } => done(locate(src, fmt, name, at.at).await),
        Command::Contents {
            name,
            recursive,
            at,
        } => {
            let read = Read::Contents {
                name,
                recursive: *recursive,
            };
            done(names(src, fmt, read, at.at).await)
        }
        Command::Parents {
            name,
            recursive,
            at,
        } => {
            let read = Read::Parents {
                name,
                recursive: *recursive,
            };
            done(names(src, fmt, read, at.at).await)
        }
        Command::Pool {
            op: PoolOp::Members { pools, at },
        } => done(names(src, fmt, Read::Members(pools), at.at).await),
        Command::Port {
            op:
                PortOp::List {
                    name,
                    free,
                    connected,
                    at,
                },
        } => done(ports(src, fmt, name, (*free, *connected), at.at).await),
        Command::Ip {
            op: IpOp::List { manager, at },
        } => done(addresses(src, fmt, manager, at.at).await),
        Command::Vm {
            op: VmOp::Explain { name, at },
        } => done(explain(src, fmt, name, at.at).await),
        Command::Fsck { at } => Some(fsck(src, fmt, at.at).await),
        Command::Vm {
            op: VmOp::List { manager, at },
        } => done(vm_list(src, fmt, manager.as_deref(), at.at).await),
        Command::Export {
            query,
            at,
            format,
            namespace,
        } => {
            let ns = (*format == crate::ExportFormat::Crd).then_some(namespace.as_str());
            done(export(src, query.as_deref(), at.at, ns).await)
        }
        _ => None,
    }
}

fn describe(d: &Description) {
    println!("Name:     {}", d.name);
    println!("Kind:     {}", d.kind);
    println!("Driver:   {}", d.driver);
    if let Some((rack, ru)) = &d.rack {
        println!("Rack:     {rack} RU {ru}");
    }
    if !d.parents.is_empty() {
        println!("In:       {}", d.parents.join(", "));
    }
    if !d.pools.is_empty() {
        println!("Pools:    {}", d.pools.join(", "));
    }
    for (k, v) in &d.settings {
        println!("{:<9} {v}", format!("{k}:"));
    }
    if !d.addresses.is_empty() {
        println!("Addresses:");
        let or_dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
        for a in &d.addresses {
            println!(
                "  {}  manager {}  os {}  port {}",
                a.address,
                or_dash(&a.manager),
                or_dash(&a.os_port),
                or_dash(&a.port)
            );
        }
    }
    if !d.ports.is_empty() {
        println!("Ports:");
        for p in &d.ports {
            let peer = p
                .connected_to
                .as_ref()
                .map(|c| format!("-> {c}"))
                .unwrap_or_default();
            println!("  {:<16} {peer} {}", p.port, attrs_text(p));
        }
    }
    if !d.contains.is_empty() {
        println!("Contains:");
        for c in &d.contains {
            match &c.ru {
                Some(ru) => println!("  RU {ru:<6} {}", c.name),
                None => println!("  {}", c.name),
            }
        }
    }
    if !d.attributes.is_empty() {
        println!("Attributes:");
        for a in &d.attributes {
            let t = a
                .value_type
                .as_ref()
                .map(|t| format!(" ({t})"))
                .unwrap_or_default();
            println!("  {} = {}{t}", a.path, a.value);
        }
    }
}

fn attrs_text(p: &PortView) -> String {
    let attrs: Vec<String> = p.attrs.iter().map(|(k, v)| format!("{k}={v}")).collect();
    attrs.join(" ")
}

async fn locate(src: &Source<'_>, fmt: Format, name: &str, at: Option<i64>) -> Result<()> {
    let places: Vec<Place> = src.view(Read::Locate(name), at).await?;
    if matches!(fmt, Format::Json | Format::Yaml) {
        return emit(fmt, &serde_json::to_value(&places)?, &[], vec![]);
    }
    if places.is_empty() {
        println!("{name} is not placed anywhere");
    }
    for p in &places {
        println!("{}", p.line(name));
    }
    Ok(())
}

async fn names(src: &Source<'_>, fmt: Format, read: Read<'_>, at: Option<i64>) -> Result<()> {
    let list: Vec<Named> = src.view(read, at).await?;
    let rows = list
        .iter()
        .map(|n| vec![n.name.clone(), n.kind.clone()])
        .collect();
    emit(fmt, &serde_json::to_value(&list)?, &["NAME", "KIND"], rows)
}

/// `(free, connected)`: only ports without a cable, or only with one.
async fn ports(
    src: &Source<'_>,
    fmt: Format,
    name: &str,
    (free, connected): (bool, bool),
    at: Option<i64>,
) -> Result<()> {
    let all: Vec<PortView> = src.view(Read::Ports(name), at).await?;
    let shown: Vec<PortView> = all
        .into_iter()
        .filter(|p| !free || p.connected_to.is_none())
        .filter(|p| !connected || p.connected_to.is_some())
        .collect();
    let rows = shown
        .iter()
        .map(|p| {
            vec![
                p.port.clone(),
                p.connected_to.clone().unwrap_or_default(),
                attrs_text(p),
            ]
        })
        .collect();
    emit(
        fmt,
        &serde_json::to_value(&shown)?,
        &["PORT", "CONNECTED-TO", "ATTRIBUTES"],
        rows,
    )
}

async fn addresses(src: &Source<'_>, fmt: Format, manager: &str, at: Option<i64>) -> Result<()> {
    let book: AddressBook = src.view(Read::Addresses(manager), at).await?;
    if fmt == Format::Table {
        let gateway = book.gateway.as_deref().unwrap_or("-");
        println!("{manager}: {} gateway {gateway}", book.cidr);
    }
    let rows = book
        .items
        .iter()
        .map(|a| {
            vec![
                a.address.clone(),
                a.holder.clone(),
                a.os_port.clone().unwrap_or_default(),
                a.port.clone().unwrap_or_default(),
            ]
        })
        .collect();
    // The JSON is the allocations alone, as it always was.
    let items: Vec<Json> = book
        .items
        .iter()
        .map(|a| json!({"address": a.address, "holder": a.holder, "osPort": a.os_port, "port": a.port}))
        .collect();
    emit(
        fmt,
        &Json::Array(items),
        &["ADDRESS", "HOLDER", "OS-PORT", "PORT"],
        rows,
    )
}

async fn explain(src: &Source<'_>, fmt: Format, name: &str, at: Option<i64>) -> Result<()> {
    let p: PlacementView = src.view(Read::Placement(name), at).await?;
    match fmt {
        Format::Json | Format::Yaml => emit(fmt, &serde_json::to_value(&p)?, &[], vec![]),
        _ => {
            println!("{name} -> {}", p.reason);
            Ok(())
        }
    }
}

/// Every violation, one per line (or as JSON); exit 1 if any.
async fn fsck(src: &Source<'_>, fmt: Format, at: Option<i64>) -> Result<ExitCode> {
    let data = src.fsck(at).await?;
    let found = data["violations"].as_array().cloned().unwrap_or_default();
    if found.is_empty() && fmt == Format::Table {
        eprintln!("fsck: no violations");
        return Ok(ExitCode::SUCCESS);
    }
    let text = |v: &Json| v.as_str().unwrap_or_default().to_string();
    let rows: Vec<Vec<String>> = found
        .iter()
        .map(|v| {
            let objects: Vec<String> = v["objects"]
                .as_array()
                .into_iter()
                .flatten()
                .map(text)
                .collect();
            vec![text(&v["rule"]), objects.join(","), text(&v["detail"])]
        })
        .collect();
    emit(fmt, &data, &["RULE", "OBJECTS", "DETAIL"], rows)?;
    if found.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!("fsck: {} violation(s)", found.len());
    Ok(ExitCode::FAILURE)
}

/// `clusto export`: the manifests of the inventory, or of what a query
/// selects, all read at one revision.
async fn export(
    src: &Source<'_>,
    query: Option<&str>,
    at: Option<i64>,
    namespace: Option<&str>,
) -> Result<()> {
    let at = Some(src.pin(at).await?);
    let selections: Vec<Selection> = match query {
        Some(q) => vec![Selection::Query(q)],
        None => {
            // Definitions first, so a reader sees drivers and layouts before their users.
            let mut kinds = Kind::ALL.to_vec();
            kinds.sort_by_key(|k| (!k.is_definition(), *k));
            kinds.into_iter().map(Selection::Kind).collect()
        }
    };
    let mut out = std::io::stdout().lock();
    for sel in selections {
        src.each_object(sel, at, |objects| {
            let mut docs: Vec<Json> = objects
                .iter()
                .map(clusto_manifest::export::document)
                .collect();
            if let Some(ns) = namespace {
                for d in &mut docs {
                    d["metadata"]["namespace"] = json!(ns);
                }
            }
            use std::io::Write;
            out.write_all(clusto_manifest::export::to_yaml(&docs)?.as_bytes())?;
            Ok(())
        })
        .await?;
    }
    Ok(())
}

/// `clusto vm list`: each VM's manager, host, power (have/want), phase,
/// backend id and readiness, from its object.
async fn vm_list(
    src: &Source<'_>,
    fmt: Format,
    manager: Option<&str>,
    at: Option<i64>,
) -> Result<()> {
    let mut items = Vec::new();
    src.each_object(Selection::Kind(Kind::VirtualMachine), at, |page| {
        items.extend(
            page.into_iter()
                .filter(|o| manager.is_none_or(|m| o["spec"]["manager"] == m)),
        );
        Ok(())
    })
    .await?;
    let rows = items.iter().map(vm_row).collect();
    emit(
        fmt,
        &clusto_core::resource::list(items),
        &[
            "NAME",
            "MANAGER",
            "HOST",
            "POWER (HAVE/WANT)",
            "PHASE",
            "BACKEND-ID",
            "READY",
        ],
        rows,
    )
}

/// A VM's phase as `vm list` shows it: Terminating as soon as deletion is
/// asked for, Pending until the controller records one.
fn phase(o: &Json) -> String {
    if o["metadata"]["deleting"] == true {
        return "Terminating".into();
    }
    match o["status"]["phase"].as_str() {
        Some(p) if !p.is_empty() => p.to_string(),
        _ => "Pending".into(),
    }
}

fn vm_row(o: &Json) -> Vec<String> {
    let (spec, status) = (&o["spec"], &o["status"]);
    let text = |v: &Json| v.as_str().map(str::to_string);
    let dash = |v: &Json| text(v).unwrap_or_else(|| "-".into());
    let ready = status["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "Ready")
        .map(|c| match c["status"].as_str() {
            Some("True") => "True".to_string(),
            _ => format!("False ({})", c["reason"].as_str().unwrap_or_default()),
        })
        .unwrap_or_else(|| "-".into());
    vec![
        dash(&o["metadata"]["name"]),
        dash(&spec["manager"]),
        text(&spec["host"])
            .or_else(|| text(&status["host"]))
            .unwrap_or_else(|| "-".into()),
        format!(
            "{}/{}",
            dash(&status["powerState"]),
            text(&spec["powerState"]).unwrap_or_else(|| "Running".into())
        ),
        phase(o),
        dash(&status["backendId"]),
        ready,
    ]
}
