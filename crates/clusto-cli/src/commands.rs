//! One function per verb. Point reads and writes load what they name and
//! its neighbourhood (`Store::load_scope`, `Store::write_scope`); lists
//! query SQL or load the inventory. A write makes exactly one revision or none.

use std::io::Write;
use std::net::IpAddr;
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use clusto_core::{
    CoreError, EntityId, Inventory, Kind, NumberSpec, PortId, RuRange, Value, ValueType, model,
};
use clusto_store::{HistoryItem, RevisionMeta, Scope, Store, StoreError, revision_json};
use serde_json::{Value as Json, json};

use crate::declarative;
use crate::output::{Format, ListWriter, emit, paint};
use crate::{AttrOp, AttrWrite, Cli, Command, IpOp, NameOp, PortOp, RackOp, VmOp};

/// Errors from a write closure: a rule broken, or the store failing.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WriteError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Core(#[from] CoreError),
    #[error("{0}")]
    Usage(String),
}

fn default_store() -> Result<String> {
    let base = std::env::var_os("XDG_DATA_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".local/share"))
        })
        .ok_or_else(|| anyhow!("no --store given and no HOME to put the default store in"))?;
    let dir = base.join("clusto");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(format!("sqlite://{}", dir.join("clusto.db").display()))
}

fn store_url(cli: &Cli) -> Result<String> {
    match &cli.store {
        Some(u) => Ok(u.clone()),
        None => default_store(),
    }
}

async fn open(cli: &Cli) -> Result<Store> {
    let url = store_url(cli)?;
    Store::open(&url)
        .await
        .with_context(|| format!("opening store {url}"))
}

fn parse_ru(s: Option<&str>) -> Result<Option<RuRange>, CoreError> {
    s.map(str::parse).transpose()
}

pub(crate) fn split_key<'a>(
    key: &'a str,
    subkey: Option<&'a str>,
) -> Result<(&'a str, Option<&'a str>), WriteError> {
    match key.split_once('.') {
        Some(_) if subkey.is_some() => Err(WriteError::Usage(format!(
            "give the subkey either in {key:?} or with --subkey, not both"
        ))),
        Some((k, s)) => Ok((k, Some(s))),
        None => Ok((key, subkey)),
    }
}

/// Parses a CLI value; `ref` values name an entity.
fn parse_value(inv: &Inventory, text: &str, ty: Option<&str>) -> Result<Value, WriteError> {
    match ty {
        None => Ok(Value::infer(text)),
        Some(t) => {
            let ty: ValueType = t.parse()?;
            if ty == ValueType::Ref {
                Ok(Value::Ref(inv.id_of(text)?))
            } else {
                Ok(Value::parse_as(ty, text)?)
            }
        }
    }
}

fn parse_number(n: Option<&str>) -> Result<NumberSpec, WriteError> {
    match n {
        None => Ok(NumberSpec::None),
        Some("auto") => Ok(NumberSpec::Auto),
        Some(s) => s.parse::<i64>().map(NumberSpec::Fixed).map_err(|_| {
            WriteError::Usage(format!("--number must be a number or auto, not {s:?}"))
        }),
    }
}

pub(crate) fn kind_arg(s: &str) -> Result<Kind> {
    s.parse::<Kind>()
        .map_err(|e| anyhow!("{e}; kinds: {}", kinds_list()))
}

fn kinds_list() -> String {
    Kind::ALL
        .iter()
        .map(|k| k.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn done(store_rev: Option<i64>, what: &str) {
    match store_rev {
        Some(r) => eprintln!("{what} (revision {r})"),
        None => eprintln!("{what} (no change)"),
    }
}

/// Runs a command; a full disk is reported with the store it holds.
pub async fn run(cli: Cli) -> Result<ExitCode> {
    if let Some(server) = &cli.server {
        let remote = crate::remote::Remote::new(server, cli.token.as_deref())?;
        return crate::remote::run(&cli, &remote).await;
    }
    let url = store_url(&cli)?;
    run_command(cli).await.map_err(|e| {
        if !is_disk_full(&e) {
            return e;
        }
        let place = match url.strip_prefix("sqlite://") {
            Some(path) => format!("the disk holding {path}"),
            None => "the database server's disk".to_string(),
        };
        anyhow!("{place} is full; nothing was changed (free space and run again)")
    })
}

fn is_disk_full(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        matches!(c.downcast_ref::<StoreError>(), Some(StoreError::DiskFull))
            || matches!(
                c.downcast_ref::<clusto_api::engine::ApplyFailure>(),
                Some(clusto_api::engine::ApplyFailure::Store(
                    StoreError::DiskFull
                ))
            )
    })
}

async fn run_command(cli: Cli) -> Result<ExitCode> {
    let store = open(&cli).await?;
    if let Some(r) = crate::views::run(&cli, &crate::views::Source::Store(&store)).await {
        return r;
    }
    let fmt = cli.output;
    let meta = |default: String| RevisionMeta::new(cli.message.clone().unwrap_or(default));
    match &cli.command {
        Command::Completions { .. } | Command::Schema { .. } | Command::Generate { .. } => {
            unreachable!("handled before the store is opened")
        }
        Command::Locate { .. }
        | Command::Contents { .. }
        | Command::Parents { .. }
        | Command::Pool { .. }
        | Command::Fsck { .. }
        | Command::Export { .. }
        | Command::Vm {
            op: VmOp::Explain { .. } | VmOp::List { .. },
        } => unreachable!("a view: handled by views::run"),
        Command::Power { op } => return crate::oob::power(&store, fmt, op).await,
        Command::Console { name, print } => return crate::oob::console(&store, name, *print).await,
        Command::Plan {
            manifests,
            detailed_exitcode,
            out,
        } => {
            return declarative::plan(&store, fmt, manifests, out.as_deref(), *detailed_exitcode)
                .await;
        }
        Command::Apply {
            plan,
            manifests,
            dry_run,
        } => {
            return declarative::apply_cmd(
                &store,
                fmt,
                manifests.as_ref(),
                plan.as_deref(),
                *dry_run,
                cli.message.clone(),
            )
            .await;
        }
        Command::Serve {
            listen,
            token_file,
            anonymous_read,
            bookmark_seconds,
            watch_window,
            tls_cert,
            tls_key,
        } => {
            let tls = match (tls_cert, tls_key) {
                (Some(c), Some(k)) => Some(clusto_http::tls::Tls::load(c, k)?),
                _ => None,
            };
            serve(
                &store,
                *listen,
                token_file.as_deref(),
                *anonymous_read,
                clusto_api::watch::WatchOptions {
                    bookmark: std::time::Duration::from_secs((*bookmark_seconds).max(1)),
                    window: (*watch_window).max(0),
                    ..Default::default()
                },
                tls,
            )
            .await?;
        }
        Command::Snmptrapd {
            listen,
            metrics,
            v3_users,
            engine_id,
            user,
        } => {
            let usm = snmp_engine(v3_users.as_deref(), engine_id.as_deref())?;
            clusto_snmp::server::run(
                store.clone(),
                usm,
                clusto_snmp::server::Options {
                    listen: *listen,
                    metrics: *metrics,
                    run_as: run_as(user.as_deref())?,
                },
            )
            .await?;
        }
        Command::Dhcpd {
            listen,
            interface,
            server_id,
            metrics,
            refresh_ms,
            learn_ipmi,
            user,
        } => {
            let server_id = match (server_id, listen) {
                (Some(s), _) => *s,
                (None, std::net::SocketAddr::V4(a)) if !a.ip().is_unspecified() => *a.ip(),
                _ => bail!("give --server-id: the address clients should reach this server at"),
            };
            clusto_dhcp::server::run(
                store.clone(),
                clusto_dhcp::server::Options {
                    listen: *listen,
                    interface: interface.clone(),
                    server_id,
                    refresh: std::time::Duration::from_millis(*refresh_ms),
                    metrics: *metrics,
                    learn: *learn_ipmi,
                    run_as: run_as(user.as_deref())?,
                },
            )
            .await?;
        }
        Command::Controller {
            metrics,
            resync,
            rate,
            workers,
            poll_ms,
            lease_ttl,
            once,
            kube,
        } => {
            return crate::vm::controller(
                &store,
                crate::vm::ControllerArgs {
                    metrics: *metrics,
                    resync: std::time::Duration::from_secs(*resync),
                    rate: *rate,
                    workers: *workers,
                    poll: std::time::Duration::from_millis(*poll_ms),
                    lease_ttl: std::time::Duration::from_secs(*lease_ttl),
                    once: *once,
                    kube: kube.clone(),
                },
            )
            .await;
        }
        Command::Vm {
            op:
                VmOp::Create {
                    manager,
                    name,
                    memory,
                    disk,
                    cpus,
                    image,
                    instance_type,
                    host,
                    force,
                    stopped,
                },
        } => {
            crate::vm::create(
                &store,
                &meta(format!("vm create on {manager}")),
                fmt,
                crate::vm::CreateArgs {
                    manager,
                    name: name.as_deref(),
                    memory: *memory,
                    disk: *disk,
                    cpus: *cpus,
                    image: image.as_deref(),
                    instance_type: instance_type.as_deref(),
                    host: host.as_deref(),
                    force: *force,
                    stopped: *stopped,
                },
            )
            .await?
        }
        Command::Vm {
            op: VmOp::Start { name },
        } => {
            let m = meta(format!("vm start {name}"));
            crate::vm::power(&store, &m, name, clusto_core::vm::Power::Running).await?
        }
        Command::Vm {
            op: VmOp::Stop { name },
        } => {
            let m = meta(format!("vm stop {name}"));
            crate::vm::power(&store, &m, name, clusto_core::vm::Power::Stopped).await?
        }
        Command::Vm {
            op: VmOp::Set { name, field, value },
        } => {
            let m = meta(format!("vm set {name} {field}"));
            crate::vm::set(&store, &m, name, field, value).await?
        }
        Command::Vm {
            op:
                VmOp::Delete {
                    name,
                    wait,
                    timeout,
                },
        } => {
            crate::vm::delete(
                &store,
                &meta(format!("vm delete {name}")),
                name,
                *wait,
                std::time::Duration::from_secs(*timeout),
            )
            .await?
        }
        Command::Vm {
            op: VmOp::Console { name },
        } => return crate::vm::console(&store, name).await,
        Command::Import {
            from:
                crate::ImportFrom::Clusto {
                    url,
                    out,
                    apply_set,
                    with_history,
                },
        } => {
            let args = crate::import::ImportArgs {
                url,
                out: out.as_deref(),
                apply_set,
                with_history: *with_history,
                message: cli.message.clone(),
            };
            return crate::import::from_clusto(&store, fmt, args).await;
        }
        Command::Rack {
            op: RackOp::Show { rack, rear, at },
        } => {
            let side = if *rear {
                clusto_core::elevation::Face::Rear
            } else {
                clusto_core::elevation::Face::Front
            };
            rack_show(&store, fmt, rack, at.at, side).await?
        }
        Command::Rack {
            op:
                RackOp::AddServer {
                    rack,
                    switch_port,
                    switch,
                    name,
                    name_manager,
                },
        } => {
            declarative::rack_add_server(
                &store,
                &meta(format!("rack add-server {rack} port {switch_port}")),
                rack,
                switch.as_deref(),
                *switch_port,
                name.as_deref(),
                name_manager.as_deref(),
            )
            .await?
        }
        Command::Create {
            kind,
            name,
            driver,
            container,
            ru,
            set,
        } => {
            let kind = kind_arg(kind)?;
            let mut settings = Vec::new();
            for s in set {
                let (f, v) = s
                    .split_once('=')
                    .ok_or_else(|| anyhow!("--set {s:?}: expected FIELD=VALUE"))?;
                settings.push((f.to_string(), v.to_string()));
            }
            let ru = parse_ru(ru.as_deref())?;
            let mut scope = Scope::write([name]);
            if let Some(c) = container {
                scope = scope.with_container(c);
            }
            let w = store
                .write_scope(
                    &meta(format!("create {kind} {name}")),
                    &scope,
                    |inv| -> Result<(), WriteError> {
                        let id = inv.create(kind, name, driver.as_deref())?;
                        for (f, v) in &settings {
                            inv.configure(id, f, v)?;
                        }
                        if let Some(c) = container {
                            let c = inv.id_of(c)?;
                            inv.insert(c, id, ru)?;
                        } else if ru.is_some() {
                            return Err(WriteError::Usage("--ru needs --in RACK".into()));
                        }
                        Ok(())
                    },
                )
                .await?;
            done(w.revision, &format!("{kind} {name} created"));
        }
        Command::Get {
            kind,
            name,
            at,
            show_hidden,
        } => {
            let Some(n) = name else {
                let kind = (kind != "all").then(|| kind_arg(kind)).transpose()?;
                get_list(&store, fmt, kind, at.at, *show_hidden).await?;
                return Ok(ExitCode::SUCCESS);
            };
            let inv = read(&store, Scope::read([n]), at.at).await?;
            let e = inv.get(n)?;
            if kind != "all" && kind_arg(kind)? != e.kind {
                bail!("{n} is a {}, not a {kind}", e.kind);
            }
            let item = inv.resource(e.id, *show_hidden);
            emit(fmt, &item, GET_HEADER, vec![get_row(&inv, e.id)])?;
        }
        Command::Describe { name, at } => {
            let inv = read(&store, Scope::read([name]), at.at).await?;
            let r = inv.resource(inv.id_of(name)?, false);
            emit(fmt, &r, &[], vec![vec![name.clone()]])?
        }
        Command::Delete { names } => {
            let w = store
                .write_scope(
                    &meta(format!("delete {}", names.join(" "))),
                    &Scope::write(names),
                    |inv| -> Result<Vec<String>, WriteError> {
                        let mut terminating = Vec::new();
                        for n in names {
                            let id = inv.id_of(n)?;
                            inv.delete(id)?;
                            if inv.entity(id).is_some() {
                                terminating.push(n.clone());
                            }
                        }
                        Ok(terminating)
                    },
                )
                .await?;
            let gone: Vec<&str> = names
                .iter()
                .filter(|n| !w.value.contains(n))
                .map(String::as_str)
                .collect();
            let mut what = Vec::new();
            if !gone.is_empty() {
                what.push(format!("deleted {}", gone.join(", ")));
            }
            if !w.value.is_empty() {
                what.push(format!(
                    "{} terminating: the controller removes {} once the backend has let go",
                    w.value.join(", "),
                    if w.value.len() == 1 { "it" } else { "them" }
                ));
            }
            done(w.revision, &what.join("; "));
        }
        Command::Rename { old, new } => {
            let w = store
                .write_scope(
                    &meta(format!("rename {old} {new}")),
                    &Scope::write([old, new]),
                    |inv| -> Result<(), WriteError> {
                        let id = inv.id_of(old)?;
                        inv.rename(id, new)?;
                        Ok(())
                    },
                )
                .await?;
            done(w.revision, &format!("{old} renamed to {new}"));
        }
        Command::Attr { op } => attr(&store, fmt, op, &meta).await?,
        Command::Insert {
            container,
            name,
            ru,
        } => {
            let ru = parse_ru(ru.as_deref())?;
            let w = store
                .write_scope(
                    &meta(format!("insert {container} {name}")),
                    &Scope::write([name])
                        .with_descendants_of(name)
                        .with_container(container),
                    |inv| -> Result<(), WriteError> {
                        let c = inv.id_of(container)?;
                        let t = inv.id_of(name)?;
                        inv.insert(c, t, ru)?;
                        Ok(())
                    },
                )
                .await?;
            done(w.revision, &format!("{name} inserted into {container}"));
        }
        Command::Remove { container, name } => {
            let w = store
                .write_scope(
                    &meta(format!("remove {container} {name}")),
                    &Scope::write([name]).with_container(container),
                    |inv| -> Result<(), WriteError> {
                        let c = inv.id_of(container)?;
                        let t = inv.id_of(name)?;
                        inv.remove(c, t)?;
                        Ok(())
                    },
                )
                .await?;
            done(w.revision, &format!("{name} removed from {container}"));
        }
        Command::Connect { a, b } => {
            let (an, ap) = model::split_port_ref(a)?;
            let (bn, bp) = model::split_port_ref(b)?;
            let w = store
                .write_scope(
                    &meta(format!("connect {a} {b}")),
                    &Scope::write([an, bn]),
                    |inv| -> Result<(), WriteError> {
                        let ai = inv.id_of(an)?;
                        let bi = inv.id_of(bn)?;
                        inv.connect(ai, &ap, bi, &bp)?;
                        Ok(())
                    },
                )
                .await?;
            done(w.revision, &format!("{a} connected to {b}"));
        }
        Command::Disconnect { port } => {
            let (n, p) = model::split_port_ref(port)?;
            let w = store
                .write_scope(
                    &meta(format!("disconnect {port}")),
                    &Scope::write([n]),
                    |inv| -> Result<(), WriteError> {
                        let id = inv.id_of(n)?;
                        inv.disconnect(id, &p)?;
                        Ok(())
                    },
                )
                .await?;
            done(w.revision, &format!("{port} disconnected"));
        }
        Command::Port { op } => port(&store, op, &meta).await?,
        Command::Ip { op } => ip(&store, fmt, op, &meta).await?,
        Command::Name {
            op:
                NameOp::Allocate {
                    manager,
                    kind,
                    driver,
                },
        } => {
            let kind = kind_arg(kind)?;
            let w = store
                .write_scope(
                    &meta(format!("name allocate {manager}")),
                    &Scope::write([manager]).with_next_name(manager),
                    |inv| -> Result<String, WriteError> {
                        let m = inv.id_of(manager)?;
                        let id = inv.name_allocate(m, kind, driver.as_deref())?;
                        Ok(inv.name_of(id).to_string())
                    },
                )
                .await?;
            match fmt {
                Format::Json | Format::Yaml => emit(
                    fmt,
                    &json!({"name": w.value, "kind": kind.as_str()}),
                    &[],
                    vec![],
                )?,
                _ => println!("{}", w.value),
            }
        }
        Command::Query { expr, at, explain } => {
            let q = clusto_core::query::parse(expr)?;
            if *explain {
                let (sql, params, _) = clusto_store::compile_query(&q, store.backend(), at.at);
                println!("{sql}");
                for (i, p) in params.iter().enumerate() {
                    println!("  ${} = {p:?}", i + 1);
                }
                return Ok(ExitCode::SUCCESS);
            }
            let mut list = ListWriter::bare(fmt, &["NAME"]);
            let mut page: Vec<String> = Vec::new();
            store
                .query_each(&q, at.at, |n| {
                    page.push(n);
                    if page.len() == LIST_PAGE as usize {
                        flush_names(&mut list, &mut page)?;
                    }
                    anyhow::Ok(())
                })
                .await?;
            flush_names(&mut list, &mut page)?;
            list.finish()?;
        }
        Command::History { name, limit, since } => {
            let q = clusto_store::HistoryQuery {
                name: name.clone(),
                limit: (*limit != 0).then_some(*limit),
                since: *since,
            };
            let mut out = HistoryWriter::new(fmt);
            store
                .history_stream(&q, |item| match item {
                    HistoryItem::Revision(r) => out.revision(&revision_json(&r)),
                    HistoryItem::Change(c) => out.change(&serde_json::to_value(c)?),
                })
                .await?;
            out.finish()?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) const GET_HEADER: &[&str] = &["NAME", "KIND", "DRIVER", "LOCATION", "ADDRESSES"];
pub(crate) const ATTR_HEADER: &[&str] = &["KEY", "SUBKEY", "NUMBER", "VALUE", "TYPE", "SOURCE"];

/// One line of `clusto attr get` from an attribute row as the JSON output
/// (and the API) has it: values as a person reads them, the type named.
pub(crate) fn attr_table_row(row: &Json) -> Vec<String> {
    let text = |v: &Json| match v {
        Json::String(s) => s.clone(),
        Json::Null => String::new(),
        other => other.to_string(),
    };
    let ty = match (&row["type"], &row["value"]) {
        (Json::String(t), _) => t.clone(),
        (_, Json::Bool(_)) => "bool".into(),
        (_, Json::Number(_)) => "int".into(),
        _ => "string".into(),
    };
    vec![
        text(&row["key"]),
        text(&row["subkey"]),
        text(&row["number"]),
        text(&row["value"]),
        ty,
        text(&row["source"]),
    ]
}

/// One line of `clusto get`.
fn get_row(inv: &Inventory, id: EntityId) -> Vec<String> {
    let Some(e) = inv.entity(id) else {
        return Vec::new();
    };
    let place = match inv.rack_of(id) {
        Some((r, ru)) => format!("{} RU {ru}", inv.name_of(r)),
        None => inv
            .parents_of(id)
            .into_iter()
            .find(|p| inv.kind_of(*p).is_some_and(|k| k.is_location()))
            .map(|p| inv.name_of(p).to_string())
            .unwrap_or_default(),
    };
    let addrs: Vec<String> = inv
        .addresses_of(id)
        .iter()
        .map(|a| a.address.to_string())
        .collect();
    vec![
        e.name.clone(),
        e.kind.to_string(),
        e.driver.clone(),
        place,
        addrs.join(","),
    ]
}

/// Entities per page of a listing.
const LIST_PAGE: i64 = 1000;

/// `clusto get KIND`: page after page of one snapshot, each page loaded
/// with just what its rows show, printed before the next is read.
async fn get_list(
    store: &Store,
    fmt: Format,
    kind: Option<Kind>,
    at: Option<i64>,
    show_hidden: bool,
) -> Result<()> {
    let mut snap = store.snapshot(at).await?;
    let mut list = ListWriter::new(fmt, GET_HEADER);
    let mut after: Option<String> = None;
    loop {
        let names = snap.names(kind, after.as_deref(), LIST_PAGE).await?;
        let Some(last) = names.last().cloned() else {
            break;
        };
        let inv = snap.load(&Scope::read(&names)).await?;
        let ids: Vec<EntityId> = names.iter().filter_map(|n| inv.id_of(n).ok()).collect();
        let items = match fmt {
            Format::Json | Format::Yaml => ids
                .iter()
                .map(|id| inv.resource(*id, show_hidden))
                .collect(),
            _ => Vec::new(),
        };
        let rows = ids.iter().map(|id| get_row(&inv, *id)).collect();
        list.page(items, rows)?;
        if (names.len() as i64) < LIST_PAGE {
            break;
        }
        after = Some(last);
    }
    list.finish()
}

/// A page of names as `query` prints them: a list of names in JSON/YAML.
fn flush_names(list: &mut ListWriter, page: &mut Vec<String>) -> Result<()> {
    let items = page.iter().map(|n| json!(n)).collect();
    let rows = page.drain(..).map(|n| vec![n]).collect();
    list.page(items, rows)
}

/// `clusto history` written as it is read: each revision's header, then
/// its changes one at a time, so a revision of a million rows streams in
/// constant memory. Fed from the store, or from the API's entries with
/// `--server`; JSON and YAML entries are a revision's fields, then
/// `changes`.
pub(crate) struct HistoryWriter {
    fmt: Format,
    list: ListWriter,
    /// Changes written so far in the open entry.
    open: Option<usize>,
}

impl HistoryWriter {
    pub(crate) fn new(fmt: Format) -> HistoryWriter {
        HistoryWriter {
            fmt,
            list: ListWriter::new(fmt, &[]),
            open: None,
        }
    }

    /// A revision's header (`revision`, `time`, `user`, `manager`, `message`).
    pub(crate) fn revision(&mut self, head: &Json) -> Result<()> {
        self.close()?;
        let text = |k: &str| head[k].as_str().unwrap_or_default().to_string();
        let mut out = std::io::stdout().lock();
        match self.fmt {
            Format::Table => writeln!(
                out,
                "{} {} {} [{}] {}",
                paint("33", &format!("revision {}", head["revision"])),
                text("time"),
                text("user"),
                text("manager"),
                text("message")
            )?,
            Format::Name => writeln!(out, "{}", head["revision"])?,
            Format::Json => {
                self.list.begin_item()?;
                let fields = serde_json::to_string(head)?;
                let fields = fields.strip_suffix('}').unwrap_or(&fields);
                write!(out, "{fields},\"changes\":[")?;
            }
            Format::Yaml => {
                self.list.begin_item()?;
                out.write_all(indented(&serde_saphyr::to_string(head)?, "- ", "  ").as_bytes())?;
            }
        }
        self.open = Some(0);
        Ok(())
    }

    /// One change (`op`, `text`) of the open revision.
    pub(crate) fn change(&mut self, c: &Json) -> Result<()> {
        let Some(n) = self.open.as_mut() else {
            return Ok(());
        };
        let mut out = std::io::stdout().lock();
        match self.fmt {
            Format::Table => {
                let op = c["op"].as_str().unwrap_or_default();
                let code = match op {
                    "+" => "32",
                    "-" => "31",
                    _ => "33",
                };
                let text = c["text"].as_str().unwrap_or_default();
                writeln!(out, "  {} {text}", paint(code, op))?;
            }
            Format::Name => {}
            Format::Json => {
                if *n > 0 {
                    out.write_all(b",")?;
                }
                serde_json::to_writer(&mut out, c)?;
            }
            Format::Yaml => {
                if *n == 0 {
                    out.write_all(b"  changes:\n")?;
                }
                out.write_all(indented(&serde_saphyr::to_string(c)?, "  - ", "    ").as_bytes())?;
            }
        }
        *n += 1;
        Ok(())
    }

    /// An entry as the API answers it: its header, then its changes.
    pub(crate) fn entry(&mut self, e: &Json) -> Result<()> {
        let mut head = e.clone();
        let changes = head.as_object_mut().and_then(|o| o.remove("changes"));
        self.revision(&head)?;
        for c in changes
            .as_ref()
            .and_then(Json::as_array)
            .into_iter()
            .flatten()
        {
            self.change(c)?;
        }
        Ok(())
    }

    fn close(&mut self) -> Result<()> {
        let mut out = std::io::stdout().lock();
        match (self.open.take(), self.fmt) {
            (Some(_), Format::Json) => out.write_all(b"]}")?,
            (Some(0), Format::Yaml) => out.write_all(b"  changes: []\n")?,
            _ => {}
        }
        Ok(())
    }

    pub(crate) fn finish(mut self) -> Result<()> {
        self.close()?;
        self.list.finish()
    }
}

/// YAML text as a list item: `first` before its first line, `rest`
/// before the others.
fn indented(yaml: &str, first: &str, rest: &str) -> String {
    let mut s = String::with_capacity(yaml.len() + 16);
    for (i, line) in yaml.lines().enumerate() {
        s.push_str(if i == 0 { first } else { rest });
        s.push_str(line);
        s.push('\n');
    }
    s
}

/// The account a daemon drops root to, looked up before anything starts.
fn run_as(user: Option<&str>) -> Result<Option<clusto_http::account::Account>> {
    Ok(user
        .map(clusto_http::account::Account::lookup)
        .transpose()?)
}

/// A point read: what `scope` names and its neighbourhood, one revision.
async fn read(store: &Store, scope: Scope, at: Option<i64>) -> Result<Inventory> {
    Ok(store.load_scope(&scope, at).await?.1)
}

/// An attribute write touches the entity, and the entity a `--type ref`
/// value names.
fn attr_scope(name: &str, value: Option<&str>, ty: Option<&str>) -> Scope {
    let scope = Scope::write([name]);
    match (value, ty) {
        (Some(v), Some("ref")) => scope.name(v),
        _ => scope,
    }
}

async fn attr(
    store: &Store,
    fmt: Format,
    op: &AttrOp,
    meta: &dyn Fn(String) -> RevisionMeta,
) -> Result<()> {
    match op {
        AttrOp::Add(w) | AttrOp::Set(w) => {
            let set = matches!(op, AttrOp::Set(_));
            let AttrWrite {
                name,
                key,
                value,
                subkey,
                number,
                value_type,
            } = w;
            let verb = if set { "set" } else { "add" };
            let r = store
                .write_scope(
                    &meta(format!("attr {verb} {name} {key}")),
                    &attr_scope(name, Some(value), value_type.as_deref()),
                    |inv| -> Result<Option<i64>, WriteError> {
                        let id = inv.id_of(name)?;
                        let (k, sk) = split_key(key, subkey.as_deref())?;
                        let v = parse_value(inv, value, value_type.as_deref())?;
                        let n = parse_number(number.as_deref())?;
                        Ok(if set {
                            inv.attr_set(id, k, sk, n, v)?
                        } else {
                            inv.attr_add(id, k, sk, n, v)?
                        })
                    },
                )
                .await?;
            let num = r.value.map(|n| format!(" number {n}")).unwrap_or_default();
            done(r.revision, &format!("{name} {key}{num} {verb}"));
        }
        AttrOp::Get {
            name,
            key,
            subkey,
            number,
            merged,
            show_hidden,
            at,
        } => {
            let inv = read(store, Scope::read([name]), at.at).await?;
            let id = inv.id_of(name)?;
            let (k, sk) = match key {
                Some(k) => {
                    let (k, s) = split_key(k, subkey.as_deref())?;
                    (Some(k), s)
                }
                None => (None, subkey.as_deref()),
            };
            let rows: Vec<(clusto_core::Attr, EntityId)> = if *merged {
                inv.merged_attrs(id, k, sk, *show_hidden)
                    .into_iter()
                    .filter(|m| number.is_none_or(|n| m.attr.number == Some(n)))
                    .map(|m| (m.attr.clone(), m.source))
                    .collect()
            } else {
                inv.attrs(id, *show_hidden)
                    .into_iter()
                    .filter(|a| k.is_none_or(|k| a.key == k))
                    .filter(|a| sk.is_none_or(|s| a.subkey.as_deref() == Some(s)))
                    .filter(|a| number.is_none_or(|n| a.number == Some(n)))
                    .map(|a| (a.clone(), id))
                    .collect()
            };
            let data = Json::Array(
                rows.iter()
                    .map(|(a, src)| inv.attr_row_json(a, *src))
                    .collect(),
            );
            let table_rows = data
                .as_array()
                .map(|rows| rows.iter().map(attr_table_row).collect())
                .unwrap_or_default();
            if key.is_some() && rows.is_empty() {
                bail!(
                    "{name} has no attribute {}",
                    key.as_deref().unwrap_or_default()
                );
            }
            emit(fmt, &data, ATTR_HEADER, table_rows)?;
        }
        AttrOp::Del {
            name,
            key,
            value,
            subkey,
            number,
            value_type,
        } => {
            let r = store
                .write_scope(
                    &meta(format!("attr del {name} {key}")),
                    &attr_scope(name, value.as_deref(), value_type.as_deref()),
                    |inv| -> Result<usize, WriteError> {
                        let id = inv.id_of(name)?;
                        let (k, sk) = split_key(key, subkey.as_deref())?;
                        let v = value
                            .as_deref()
                            .map(|v| parse_value(inv, v, value_type.as_deref()))
                            .transpose()?;
                        Ok(inv.attr_del(id, k, sk, *number, v.as_ref())?)
                    },
                )
                .await?;
            done(
                r.revision,
                &format!("{} attribute row(s) deleted from {name}", r.value),
            );
        }
    }
    Ok(())
}

async fn port(store: &Store, op: &PortOp, meta: &dyn Fn(String) -> RevisionMeta) -> Result<()> {
    match op {
        PortOp::List { .. } => unreachable!("a view: handled by views::run"),
        PortOp::Set {
            name,
            port,
            key,
            value,
        } => {
            let p: PortId = port.parse()?;
            let w = store
                .write_scope(
                    &meta(format!("port set {name} {port} {key}")),
                    &Scope::write([name]),
                    |inv| -> Result<(), WriteError> {
                        let id = inv.id_of(name)?;
                        inv.port_attr_set(id, &p, key, value)?;
                        Ok(())
                    },
                )
                .await?;
            done(w.revision, &format!("{name} {port} {key} set"));
        }
        PortOp::Unset { name, port, key } => {
            let p: PortId = port.parse()?;
            let w = store
                .write_scope(
                    &meta(format!("port unset {name} {port} {key}")),
                    &Scope::write([name]),
                    |inv| -> Result<usize, WriteError> {
                        let id = inv.id_of(name)?;
                        Ok(inv.port_attr_del(id, &p, key)?)
                    },
                )
                .await?;
            done(w.revision, &format!("{name} {port} {key} unset"));
        }
    }
    Ok(())
}

async fn ip(
    store: &Store,
    fmt: Format,
    op: &IpOp,
    meta: &dyn Fn(String) -> RevisionMeta,
) -> Result<()> {
    match op {
        IpOp::List { .. } => unreachable!("a view: handled by views::run"),
        IpOp::Allocate {
            manager,
            name,
            address,
            osport,
            port,
        } => {
            let address: Option<IpAddr> = address
                .as_deref()
                .map(|a| {
                    a.parse()
                        .map_err(|_| anyhow!("--address {a:?} is not an IP address"))
                })
                .transpose()?;
            let port: Option<PortId> = port.as_deref().map(str::parse).transpose()?;
            let scope = match address {
                Some(ip) => Scope::write([manager, name]).with_address(ip),
                None => Scope::write([name]).with_next_address(manager),
            };
            let w = store
                .write_scope(
                    &meta(format!("ip allocate {manager} {name}")),
                    &scope,
                    |inv| -> Result<IpAddr, WriteError> {
                        let m = inv.id_of(manager)?;
                        let t = inv.id_of(name)?;
                        Ok(inv.ip_allocate(m, t, address, osport.as_deref(), port.as_ref())?)
                    },
                )
                .await?;
            match fmt {
                Format::Json | Format::Yaml => emit(
                    fmt,
                    &json!({"address": w.value.to_string(), "holder": name, "manager": manager, "revision": w.revision}),
                    &[],
                    vec![],
                )?,
                _ => println!("{}", w.value),
            }
        }
        IpOp::Release { name, address } => {
            let address: Option<IpAddr> = address
                .as_deref()
                .map(|a| a.parse().map_err(|_| anyhow!("{a:?} is not an IP address")))
                .transpose()?;
            let w = store
                .write_scope(
                    &meta(format!("ip release {name}")),
                    &Scope::write([name]),
                    |inv| -> Result<Vec<IpAddr>, WriteError> {
                        let t = inv.id_of(name)?;
                        Ok(inv.ip_release(t, address)?)
                    },
                )
                .await?;
            let list: Vec<String> = w.value.iter().map(|a| a.to_string()).collect();
            done(
                w.revision,
                &format!("released {} from {name}", list.join(", ")),
            );
        }
    }
    Ok(())
}

/// `clusto serve`: the API and the probes/metrics on one listener, until
/// SIGINT/SIGTERM.
async fn serve(
    store: &Store,
    listen: std::net::SocketAddr,
    token_file: Option<&std::path::Path>,
    anonymous_read: bool,
    watch: clusto_api::watch::WatchOptions,
    tls: Option<clusto_http::tls::Tls>,
) -> Result<()> {
    let tokens = match token_file {
        Some(p) => clusto_api::auth::Tokens::load(p)?,
        None if anonymous_read => clusto_api::auth::Tokens::default(),
        None => bail!("give --token-file FILE (lines token,user,role), --anonymous-read, or both"),
    };
    let api = clusto_api::Api::new(store.clone(), tokens, anonymous_read, watch).await?;
    let mut registry = clusto_http::prometheus_client::registry::Registry::default();
    api.metrics.register(&mut registry);
    let ready = clusto_http::Readiness::default();
    let app = clusto_http::routes(std::sync::Arc::new(registry), ready.clone())
        .merge(clusto_api::router(api));
    let (bound, scheme) = match tls {
        Some(tls) => (
            clusto_http::tls::serve_tls(listen, app, tls).await?,
            "https",
        ),
        None => (clusto_http::serve(listen, app).await?, "http"),
    };
    ready.set(true);
    eprintln!("clusto serve: listening on {scheme}://{bound}");
    crate::vm::shutdown_signal().await;
    Ok(())
}

/// `clusto rack show RACK`: the elevation as text (or its data as JSON/YAML).
async fn rack_show(
    store: &Store,
    fmt: Format,
    rack: &str,
    at: Option<i64>,
    side: clusto_core::elevation::Face,
) -> Result<()> {
    // The devices' own attributes say which side they are on.
    let inv = read(store, Scope::read([rack]).with_descendants_of(rack), at).await?;
    let id = inv.id_of(rack)?;
    if inv.kind_of(id) != Some(Kind::Rack) {
        bail!(
            "{rack} is a {}, not a rack",
            inv.kind_of(id).map(|k| k.as_str()).unwrap_or("?")
        );
    }
    let el = inv.elevation(id);
    match fmt {
        Format::Json | Format::Yaml => emit(fmt, &el.to_json(rack), &[], vec![]),
        _ => {
            print!("{}", elevation_text(rack, &el, side));
            Ok(())
        }
    }
}

/// Units top to bottom; a device's name on its top unit, its other units
/// marked as continued; empty units left blank.
pub(crate) fn elevation_text(
    rack: &str,
    el: &clusto_core::elevation::Elevation,
    side: clusto_core::elevation::Face,
) -> String {
    use clusto_core::elevation::{Face, Seen};
    const W: usize = 32;
    let view = match side {
        Face::Front => "front",
        Face::Rear => "rear",
    };
    let mut out = format!(
        "{rack} ({}U, {}-{}), {view}\n",
        el.max.saturating_sub(el.min) + 1,
        el.min,
        el.max
    );
    let rule = format!("     +{}+\n", "-".repeat(W + 2));
    out.push_str(&rule);
    let mut behind = false;
    for u in (el.min..=el.max).rev() {
        let cell = match el.at(u, side) {
            Some((m, seen)) if m.ru.end == u => {
                let mut label = m.name.clone();
                if m.ru.start != m.ru.end {
                    label = format!("{label} ({}U)", m.ru.end - m.ru.start + 1);
                }
                if seen == Seen::Back {
                    behind = true;
                    label = format!("[{label}]");
                }
                label.chars().take(W).collect::<String>()
            }
            Some(_) => "  |".to_string(),
            None => String::new(),
        };
        out.push_str(&format!("{u:>4} | {cell:<W$} |\n"));
    }
    out.push_str(&rule);
    if behind {
        out.push_str("[name]: a full-depth device mounted on the other side\n");
    }
    if !el.unplaced.is_empty() {
        out.push_str(&format!("at no unit: {}\n", el.unplaced.join(", ")));
    }
    out
}

/// The SNMPv3 engine: its ID (given, or from the host name) and its users.
fn snmp_engine(
    users: Option<&std::path::Path>,
    engine_id: Option<&str>,
) -> Result<clusto_snmp::usm::Usm> {
    let users = match users {
        Some(p) => clusto_snmp::usm::read_users(p)?,
        None => vec![],
    };
    let id = match engine_id {
        Some(hex) => {
            let hex = hex.trim_start_matches("0x");
            let bytes: Option<Vec<u8>> = (0..hex.len())
                .step_by(2)
                .map(|i| {
                    hex.get(i..i + 2)
                        .and_then(|b| u8::from_str_radix(b, 16).ok())
                })
                .collect();
            match bytes {
                Some(b) if (5..=32).contains(&b.len()) => b,
                _ => bail!("--engine-id {hex:?}: give 5 to 32 octets in hex"),
            }
        }
        None => {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
            clusto_snmp::usm::engine_id_for(host.trim())
        }
    };
    Ok(clusto_snmp::usm::Usm::new(id, users))
}
