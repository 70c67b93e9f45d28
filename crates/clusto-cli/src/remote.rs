//! `clusto --server URL --token T VERB`: reads, plan and apply through
//! `clusto serve` instead of the database, so operators need no database
//! credentials. Output is the same as with `--store`: JSON and YAML are the
//! API's objects (which are what `clusto get -o json` prints), tables and
//! text are drawn by the same functions.

use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use clusto_core::{Kind, PoolType};
use clusto_manifest::plan::Plan;
use clusto_manifest::{Source, read_sources};
use clusto_store::reads::Read;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request};
use serde_json::{Value as Json, json};

use crate::commands::{ATTR_HEADER, GET_HEADER, HistoryWriter, attr_table_row, elevation_text};
use crate::declarative::{ManifestArgs, options, parse, print_applied, print_plan, report};
use crate::output::{Format, ListWriter, emit};
use crate::{AttrOp, Cli, Command, RackOp};

const API: &str = "/apis/clusto.dev/v1alpha1";
/// Items per page while listing.
const PAGE: usize = 1000;

/// The commands `--server` serves, as their command paths.
pub const COMMANDS: &[&str] = &[
    "get",
    "describe",
    "attr get",
    "query",
    "history",
    "rack show",
    "locate",
    "contents",
    "parents",
    "pool members",
    "port list",
    "ip list",
    "vm list",
    "vm explain",
    "export",
    "fsck",
    "plan",
    "apply",
];

/// A refusal from the server: its `Status`.
#[derive(Debug, thiserror::Error)]
#[error("{server}: {message}")]
pub struct Refused {
    server: String,
    code: u16,
    reason: String,
    message: String,
    /// One entry per broken rule (422 Invalid).
    causes: Vec<String>,
    /// The name a 404 did not find.
    missing: Option<String>,
}

pub struct Remote {
    base: String,
    token: Option<String>,
    http: hyper_util::client::legacy::Client<clusto_http::client::Https, Full<Bytes>>,
}

impl Remote {
    pub fn new(url: &str, token: Option<&str>) -> Result<Remote> {
        let base = url.trim_end_matches('/').to_string();
        let uri: hyper::Uri = base
            .parse()
            .map_err(|e| anyhow!("--server {url}: not a URL ({e})"))?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
            bail!("--server {url}: give http://HOST:PORT or https://HOST:PORT");
        }
        Ok(Remote {
            base,
            token: token.map(str::to_string),
            http: clusto_http::client::client(),
        })
    }

    /// One request; a non-2xx answer becomes `Refused` with the server's words.
    async fn send(&self, method: Method, path: &str, body: Option<String>) -> Result<Bytes> {
        let url = format!("{}{API}{path}", self.base);
        let mut req = Request::builder()
            .method(method)
            .uri(&url)
            .header("Accept", "application/json");
        if let Some(t) = &self.token {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        if body.is_some() {
            req = req.header("Content-Type", "application/yaml");
        }
        let req = req.body(Full::new(Bytes::from(body.unwrap_or_default())))?;
        let res = self
            .http
            .request(req)
            .await
            .map_err(|e| anyhow!("{}: {}", self.base, transport(&e)))?;
        let status = res.status();
        let bytes = res
            .into_body()
            .collect()
            .await
            .with_context(|| format!("{}: reading the answer", self.base))?
            .to_bytes();
        if status.is_success() {
            return Ok(bytes);
        }
        let st: Json = serde_json::from_slice(&bytes).unwrap_or(Json::Null);
        let message = st["message"]
            .as_str()
            .and_then(|m| m.lines().next())
            .map(str::to_string)
            .unwrap_or_else(|| format!("HTTP {status}"));
        Err(Refused {
            server: self.base.clone(),
            code: status.as_u16(),
            reason: st["reason"].as_str().unwrap_or_default().to_string(),
            message,
            causes: st["details"]["causes"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| Some(c["message"].as_str()?.to_string()))
                .collect(),
            missing: st["details"]["name"].as_str().map(str::to_string),
        }
        .into())
    }

    async fn get(&self, path: &str) -> Result<Json> {
        let bytes = self.send(Method::GET, path, None).await?;
        serde_json::from_slice(&bytes)
            .with_context(|| format!("{}: the answer to {path}", self.base))
    }

    /// A point read (`clusto_store::reads`): the server's
    /// `…/{plural}/{name}/{view}`.
    pub async fn view(&self, read: &Read<'_>, rev: Option<i64>) -> Result<Json> {
        let flag = |on: bool| ("recursive", on.then(|| "true".to_string()));
        let (plural, name, view, extra) = match *read {
            Read::Description(n) => ("entities", n, "description", ("", None)),
            Read::Locate(n) => ("entities", n, "locate", ("", None)),
            Read::Contents { name, recursive } => ("entities", name, "contents", flag(recursive)),
            Read::Parents { name, recursive } => ("entities", name, "parents", flag(recursive)),
            Read::Ports(n) => ("entities", n, "ports", ("", None)),
            Read::Addresses(n) => ("ipmanagers", n, "addresses", ("", None)),
            Read::Placement(n) => ("virtualmachines", n, "placement", ("", None)),
            Read::Members(pools) => {
                let (first, rest) = pools
                    .split_first()
                    .ok_or_else(|| anyhow!("name at least one pool"))?;
                let and = (!rest.is_empty()).then(|| rest.join(","));
                ("pools", first.as_str(), "members", ("and", and))
            }
        };
        let path = format!(
            "/{plural}/{}/{view}{}",
            encode(name),
            query(&[at(rev), extra])
        );
        self.get(&path).await.map_err(|e| not_found(e, name))
    }

    /// The server's head revision.
    pub async fn head(&self) -> Result<i64> {
        let log = self.get("/revisions?limit=1").await?;
        Ok(log["items"][0]["revision"].as_i64().unwrap_or(0))
    }

    /// `clusto fsck` on the server's store (an admin's token).
    pub async fn fsck(&self, rev: Option<i64>) -> Result<Json> {
        self.get(&format!("/fsck{}", query(&[at(rev)]))).await
    }
}

/// The innermost reason a connection failed (refused, unknown host, TLS).
fn transport(e: &(dyn std::error::Error + 'static)) -> String {
    let mut last = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        last = c.to_string();
        cur = c.source();
    }
    last
}

/// A query string from pairs, each value percent-encoded.
fn query(pairs: &[(&str, Option<String>)]) -> String {
    let parts: Vec<String> = pairs
        .iter()
        .filter_map(|(k, v)| Some(format!("{k}={}", encode(v.as_deref()?))))
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

use clusto_http::client::percent_encode as encode;

fn at(rev: Option<i64>) -> (&'static str, Option<String>) {
    ("resourceVersion", rev.map(|r| r.to_string()))
}

/// Runs a command against the server; the commands outside `COMMANDS`
/// need the database.
pub async fn run(cli: &Cli, remote: &Remote) -> Result<ExitCode> {
    if let Some(r) = crate::views::run(cli, &crate::views::Source::Server(remote)).await {
        return r;
    }
    let fmt = cli.output;
    match &cli.command {
        Command::Get {
            kind,
            name,
            at,
            show_hidden,
        } => {
            if *show_hidden {
                bail!("--show-hidden needs the database (--store); the API leaves hidden keys out");
            }
            get(remote, fmt, kind, name.as_deref(), at.at).await?
        }
        Command::Describe { name, at } => describe(remote, fmt, name, at.at).await?,
        Command::Attr {
            op:
                AttrOp::Get {
                    name,
                    key,
                    subkey,
                    number,
                    merged,
                    show_hidden,
                    at,
                },
        } => {
            if *show_hidden {
                bail!("--show-hidden needs the database (--store); the API leaves hidden keys out");
            }
            let filter = AttrFilter::new(key.as_deref(), subkey.as_deref(), *number)?;
            attr_get(remote, fmt, name, filter, *merged, at.at).await?
        }
        Command::Query { expr, at, explain } => {
            if *explain {
                bail!("--explain needs the database (--store): the SQL depends on its backend");
            }
            query_names(remote, fmt, expr, at.at).await?
        }
        Command::History { name, limit, since } => {
            history(remote, fmt, name.as_deref(), *limit, *since).await?
        }
        Command::Rack {
            op: RackOp::Show { rack, rear, at },
        } => rack_show(remote, fmt, rack, *rear, at.at).await?,
        Command::Plan {
            manifests,
            detailed_exitcode,
            out,
        } => {
            if out.is_some() {
                bail!("--out needs the database (--store); through --server, apply the manifests");
            }
            return plan(remote, fmt, manifests, *detailed_exitcode).await;
        }
        Command::Apply {
            plan: plan_file,
            manifests,
            dry_run,
        } => {
            let Some(args) = manifests.as_ref().filter(|a| !a.files.is_empty()) else {
                if plan_file.is_some() {
                    bail!(
                        "applying a saved plan needs the database (--store); through --server, apply the manifests with -f"
                    );
                }
                bail!("give the manifests with -f FILE|DIR|-");
            };
            return apply(remote, fmt, args, *dry_run).await;
        }
        _ => bail!(
            "this command needs the database (--store); through --server: {}",
            COMMANDS.join(", ")
        ),
    }
    Ok(ExitCode::SUCCESS)
}

/// The collection a `get KIND` names (`all` is every kind).
fn plural(kind: &str) -> Result<String> {
    if kind == "all" {
        return Ok("entities".into());
    }
    Ok(crate::commands::kind_arg(kind)?.plural())
}

/// How to list one kind (`None`: every kind): a collection and a query.
/// The generic kind Entity's plural is also the every-kind collection's
/// name, so its objects are those of kind entity there.
pub(crate) fn listing(kind: Option<Kind>) -> (String, Option<&'static str>) {
    match kind {
        None => ("entities".into(), None),
        Some(Kind::Entity) => ("entities".into(), Some("kind:entity")),
        Some(k) => (k.plural(), None),
    }
}

/// One line of `clusto get` from an object.
fn get_row(o: &Json) -> Vec<String> {
    let text = |v: &Json| v.as_str().unwrap_or_default().to_string();
    let kind = text(&o["kind"]);
    // The object leaves out a kind's default driver, and a pool's is its type.
    let driver = match (o["spec"]["driver"].as_str(), o["spec"]["type"].as_str()) {
        (Some(d), _) => d.to_string(),
        (None, Some(t)) if kind == "Pool" => PoolType::parse(t)
            .unwrap_or(PoolType::Plain)
            .driver()
            .to_string(),
        _ => kind
            .parse::<Kind>()
            .map(|k| k.default_driver().to_string())
            .unwrap_or_default(),
    };
    let place = match (&o["spec"]["rack"], &o["spec"]["ru"]) {
        (Json::String(r), Json::Null) => r.clone(),
        (Json::String(r), ru) => format!(
            "{r} RU {}",
            ru.as_str().map_or(ru.to_string(), str::to_string)
        ),
        _ => text(&o["spec"]["datacenter"]),
    };
    let addrs: Vec<String> = o["status"]["addresses"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| Some(a["address"].as_str()?.to_string()))
        .collect();
    vec![
        text(&o["metadata"]["name"]),
        kind,
        driver,
        place,
        addrs.join(","),
    ]
}

async fn get(
    remote: &Remote,
    fmt: Format,
    kind: &str,
    name: Option<&str>,
    rev: Option<i64>,
) -> Result<()> {
    let coll = plural(kind)?;
    let Some(name) = name else {
        let of = (kind != "all")
            .then(|| crate::commands::kind_arg(kind))
            .transpose()?;
        return list(remote, fmt, of, rev).await;
    };
    let o = remote
        .get(&format!("/entities/{}{}", encode(name), query(&[at(rev)])))
        .await
        .map_err(|e| not_found(e, name))?;
    let is = o["kind"].as_str().unwrap_or("?");
    if kind != "all" && plural(is).ok().as_deref() != Some(coll.as_str()) {
        bail!("{name} is a {is}, not a {kind}");
    }
    emit(fmt, &o, GET_HEADER, vec![get_row(&o)])
}

/// A 404 from the server in the CLI's words.
fn not_found(e: anyhow::Error, name: &str) -> anyhow::Error {
    match e.downcast_ref::<Refused>() {
        Some(r) if r.code == 404 => anyhow!("{} not found", r.missing.as_deref().unwrap_or(name)),
        _ => e,
    }
}

/// Page after page of a collection (every page the revision of the
/// first), each page's items handed to `each`.
pub(crate) async fn each_page(
    remote: &Remote,
    coll: &str,
    expr: Option<&str>,
    rev: Option<i64>,
    mut each: impl FnMut(Vec<Json>) -> Result<()>,
) -> Result<()> {
    let mut token: Option<String> = None;
    loop {
        let params = [
            ("query", expr.map(str::to_string)),
            ("limit", Some(PAGE.to_string())),
            ("continue", token.take()),
            at(rev),
        ];
        let mut page = remote.get(&format!("/{coll}{}", query(&params))).await?;
        each(match page["items"].take() {
            Json::Array(items) => items,
            _ => Vec::new(),
        })?;
        token = page["metadata"]["continue"].as_str().map(str::to_string);
        if token.is_none() {
            return Ok(());
        }
    }
}

async fn list(remote: &Remote, fmt: Format, kind: Option<Kind>, rev: Option<i64>) -> Result<()> {
    let mut out = ListWriter::new(fmt, GET_HEADER);
    let (coll, expr) = listing(kind);
    each_page(remote, &coll, expr, rev, |items| {
        let rows = items.iter().map(get_row).collect();
        let items = if matches!(fmt, Format::Json | Format::Yaml) {
            items
        } else {
            Vec::new()
        };
        out.page(items, rows)
    })
    .await?;
    out.finish()
}

/// `describe -o json|yaml`: the object (the table is a view, `crate::views`).
async fn describe(remote: &Remote, fmt: Format, name: &str, rev: Option<i64>) -> Result<()> {
    let path = format!("/entities/{}{}", encode(name), query(&[at(rev)]));
    let o = remote.get(&path).await.map_err(|e| not_found(e, name))?;
    emit(fmt, &o, &[], vec![vec![name.to_string()]])
}

struct AttrFilter<'a> {
    /// The key as given, for the error when nothing matches.
    asked: Option<&'a str>,
    key: Option<&'a str>,
    subkey: Option<&'a str>,
    number: Option<i64>,
}

impl<'a> AttrFilter<'a> {
    /// KEY.SUBKEY splits as with `--store` (`split_key`).
    fn new(key: Option<&'a str>, subkey: Option<&'a str>, number: Option<i64>) -> Result<Self> {
        let key_given = key;
        let (key, subkey) = match key {
            Some(k) => {
                let (k, s) = crate::commands::split_key(k, subkey)?;
                (Some(k), s)
            }
            None => (None, subkey),
        };
        Ok(AttrFilter {
            asked: key_given,
            key,
            subkey,
            number,
        })
    }

    fn keeps(&self, row: &Json) -> bool {
        self.key.is_none_or(|k| row["key"] == k)
            && self.subkey.is_none_or(|s| row["subkey"] == s)
            && self.number.is_none_or(|n| row["number"] == n)
    }
}

async fn attr_get(
    remote: &Remote,
    fmt: Format,
    name: &str,
    filter: AttrFilter<'_>,
    merged: bool,
    rev: Option<i64>,
) -> Result<()> {
    let merged = merged.then(|| "true".to_string());
    let answer = remote
        .get(&format!(
            "/entities/{}/attributes{}",
            encode(name),
            query(&[("merged", merged), at(rev)])
        ))
        .await
        .map_err(|e| not_found(e, name))?;
    let rows: Vec<Json> = answer["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| filter.keeps(r))
        .cloned()
        .collect();
    if let Some(k) = filter.asked
        && rows.is_empty()
    {
        bail!("{name} has no attribute {k}");
    }
    let table = rows.iter().map(attr_table_row).collect();
    emit(fmt, &Json::Array(rows), ATTR_HEADER, table)
}

async fn query_names(remote: &Remote, fmt: Format, expr: &str, rev: Option<i64>) -> Result<()> {
    let mut out = ListWriter::bare(fmt, &["NAME"]);
    each_page(remote, "entities", Some(expr), rev, |items| {
        let names: Vec<String> = items
            .iter()
            .filter_map(|o| Some(o["metadata"]["name"].as_str()?.to_string()))
            .collect();
        let rows = names.iter().map(|n| vec![n.clone()]).collect();
        out.page(names.into_iter().map(Json::String).collect(), rows)
    })
    .await?;
    out.finish()
}

async fn history(
    remote: &Remote,
    fmt: Format,
    name: Option<&str>,
    limit: i64,
    since: Option<i64>,
) -> Result<()> {
    let params = [
        ("limit", Some(limit.max(0).to_string())),
        ("since", since.map(|s| s.max(0).to_string())),
    ];
    let path = match name {
        Some(n) => format!("/entities/{}/history{}", encode(n), query(&params)),
        None => format!("/revisions{}", query(&params)),
    };
    let answer = remote.get(&path).await.map_err(|e| match name {
        Some(n) => not_found(e, n),
        None => e,
    })?;
    let mut out = HistoryWriter::new(fmt);
    for e in answer["items"].as_array().into_iter().flatten() {
        out.entry(e)?;
    }
    out.finish()
}

async fn rack_show(
    remote: &Remote,
    fmt: Format,
    rack: &str,
    rear: bool,
    rev: Option<i64>,
) -> Result<()> {
    let el = remote
        .get(&format!(
            "/racks/{}/elevation{}",
            encode(rack),
            query(&[at(rev)])
        ))
        .await
        .map_err(|e| not_found(e, rack))?;
    if matches!(fmt, Format::Json | Format::Yaml) {
        return emit(fmt, &el, &[], vec![]);
    }
    let parsed = clusto_core::elevation::Elevation::from_json(&el)
        .ok_or_else(|| anyhow!("{}: the elevation of {rack} is not readable", remote.base))?;
    let side = if rear {
        clusto_core::elevation::Face::Rear
    } else {
        clusto_core::elevation::Face::Front
    };
    print!("{}", elevation_text(rack, &parsed, side));
    Ok(())
}

/// The manifests as one request body (YAML documents, file after file),
/// and where each file starts in it, so the server's `request:LINE`
/// errors can be said as `FILE:LINE` again.
struct Body {
    text: String,
    /// (file, first line in the body, lines)
    files: Vec<(String, u64, u64)>,
}

impl Body {
    fn of(sources: &[Source]) -> Body {
        let mut text = String::new();
        let mut files = Vec::new();
        let mut line = 1u64;
        for s in sources {
            if !text.is_empty() {
                text.push_str("---\n");
                line += 1;
            }
            let lines = s.text.lines().count() as u64;
            files.push((s.file.clone(), line, lines));
            text.push_str(&s.text);
            if !s.text.ends_with('\n') {
                text.push('\n');
            }
            line += lines;
        }
        Body { text, files }
    }

    /// `request:L:C: …` → `FILE:l:C: …`.
    fn locate(&self, message: &str) -> String {
        let Some(rest) = message.strip_prefix("request:") else {
            return message.to_string();
        };
        let (num, tail) = rest.split_at(
            rest.find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len()),
        );
        let Ok(line) = num.parse::<u64>() else {
            return message.to_string();
        };
        match self
            .files
            .iter()
            .find(|(_, first, n)| line >= *first && line < first + n.max(&1))
        {
            Some((file, first, _)) => format!("{file}:{}{tail}", line - first + 1),
            None => message.to_string(),
        }
    }
}

/// Reads and checks the manifests here (so syntax errors name the file as
/// without --server), then sends them. None: errors were reported.
fn manifests(args: &ManifestArgs) -> Result<std::result::Result<Body, ExitCode>> {
    if args.files.is_empty() {
        bail!("give the manifests with -f FILE|DIR|-");
    }
    let sources = read_sources(&args.files)?;
    if let Err(e) = parse(&sources) {
        return Ok(Err(report(&e)));
    }
    Ok(Ok(Body::of(&sources)))
}

/// The apply set and flags as the API's parameters (a dry run is a plan).
fn write_query(args: &ManifestArgs) -> String {
    let opts = options(args);
    let yes = |b: bool| b.then(|| "true".to_string());
    query(&[
        ("applySet", Some(opts.apply_set)),
        ("prune", yes(opts.prune)),
        ("forceConflicts", yes(opts.force_conflicts)),
    ])
}

/// A 422 answer's causes, each said against the user's files.
fn refused_manifests(e: anyhow::Error, body: &Body) -> Result<ExitCode> {
    match e.downcast_ref::<Refused>() {
        Some(r) if r.reason == "Invalid" && !r.causes.is_empty() => {
            let located: Vec<String> = r.causes.iter().map(|c| body.locate(c)).collect();
            Ok(report(&located))
        }
        _ => Err(e),
    }
}

/// What the server answered a plan or apply with: its JSON and the plan in it.
struct Answered {
    json: Json,
    plan: Plan,
}

/// Reads the manifests, posts them to `verb` (`plan` or `apply`) and reads
/// the plan back; Err(code) when the manifests were refused (reported).
async fn post_manifests(
    remote: &Remote,
    verb: &str,
    args: &ManifestArgs,
) -> Result<std::result::Result<Answered, ExitCode>> {
    let body = match manifests(args)? {
        Ok(b) => b,
        Err(code) => return Ok(Err(code)),
    };
    let path = format!("/{verb}{}", write_query(args));
    let answer = match remote
        .send(Method::POST, &path, Some(body.text.clone()))
        .await
    {
        Ok(a) => a,
        Err(e) => return refused_manifests(e, &body).map(Err),
    };
    let json: Json = serde_json::from_slice(&answer)?;
    let plan: Plan =
        serde_json::from_value(json!({"changes": json["changes"], "summary": json["summary"]}))
            .with_context(|| format!("{}: the {verb} answer is not readable", remote.base))?;
    Ok(Ok(Answered { json, plan }))
}

async fn plan(
    remote: &Remote,
    fmt: Format,
    args: &ManifestArgs,
    detailed: bool,
) -> Result<ExitCode> {
    let a = match post_manifests(remote, "plan", args).await? {
        Ok(a) => a,
        Err(code) => return Ok(code),
    };
    let base = a.json["baseRevision"].as_i64().unwrap_or_default();
    print_plan(&a.plan, &[], base, fmt)?;
    Ok(if detailed && !a.plan.is_empty() {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

async fn apply(
    remote: &Remote,
    fmt: Format,
    args: &ManifestArgs,
    dry_run: bool,
) -> Result<ExitCode> {
    if dry_run {
        return plan(remote, fmt, args, false).await;
    }
    match post_manifests(remote, "apply", args).await? {
        Ok(a) => {
            print_applied(fmt, &a.plan, a.json["revision"].as_i64())?;
            Ok(ExitCode::SUCCESS)
        }
        Err(code) => Ok(code),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines_are_said_against_the_files_again() {
        let src = |f: &str, t: &str| Source {
            file: f.into(),
            text: t.into(),
        };
        let b = Body::of(&[src("a.yaml", "x: 1\ny: 2\n"), src("b.yaml", "z: 3\nw: 4")]);
        assert_eq!(b.text, "x: 1\ny: 2\n---\nz: 3\nw: 4\n");
        assert_eq!(
            b.locate("request:2:3: Server s1: rule"),
            "a.yaml:2:3: Server s1: rule"
        );
        assert_eq!(
            b.locate("request:5:1: Server s2: rule"),
            "b.yaml:2:1: Server s2: rule"
        );
        assert_eq!(b.locate("request: no line"), "request: no line");
        assert_eq!(b.locate("other:3:1: x"), "other:3:1: x");
    }

    #[test]
    fn query_values_are_encoded_and_absent_ones_left_out() {
        assert_eq!(
            query(&[
                ("query", Some("in:r1 and attr:a=b&c".into())),
                ("continue", None)
            ]),
            "?query=in%3Ar1%20and%20attr%3Aa%3Db%26c"
        );
        assert_eq!(query(&[("limit", None)]), "");
        assert_eq!(encode("s1/../x"), "s1%2F..%2Fx");
    }
}
