//! Reading manifests: files, directories (recursively), or stdin; many
//! documents per file; every error carries file, line and column.

use std::fmt;
use std::path::{Path, PathBuf};

use clusto_core::Kind;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::types::*;

/// Where something was written.
#[derive(
    Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct Loc {
    pub file: String,
    pub line: u64,
    pub column: u64,
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

/// One problem with the manifests: where, which object, which rule.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, thiserror::Error, serde::Serialize)]
pub struct ManifestError {
    pub loc: Loc,
    /// `Server s1`, when known.
    pub object: Option<String>,
    pub rule: String,
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.object {
            Some(o) => write!(f, "{}: {o}: {}", self.loc, self.rule),
            None => write!(f, "{}: {}", self.loc, self.rule),
        }
    }
}

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Spec {
    Location(LocationSpec),
    Rack(RackSpec),
    Device(DeviceSpec),
    Pool(PoolSpec),
    IpManager(IpManagerSpec),
    NameManager(NameManagerSpec),
    Driver(DriverSpec),
    RackLayout(RackLayoutSpec),
    VmManager(VmManagerSpec),
    VirtualMachine(VirtualMachineSpec),
    Entity(EntitySpec),
}

/// A parsed manifest object.
#[derive(Clone, Debug, PartialEq)]
pub struct Object {
    pub kind: Kind,
    pub metadata: Metadata,
    pub spec: Spec,
    pub loc: Loc,
    /// The document's text, to point rule errors at the field they concern.
    pub text: std::sync::Arc<str>,
}

impl Object {
    pub fn name(&self) -> &str {
        &self.metadata.name
    }

    /// Where `needle` (a value or key) first appears as a whole token in
    /// the document; the document's start when it does not.
    pub fn locate(&self, needle: &str) -> Loc {
        let ident = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | '/');
        if !needle.is_empty() {
            for (i, line) in self.text.lines().enumerate() {
                let mut from = 0;
                while let Some(pos) = line[from..].find(needle).map(|p| p + from) {
                    let before = line[..pos].chars().next_back();
                    let after = line[pos + needle.len()..].chars().next();
                    let whole =
                        !before.is_some_and(ident) && !after.is_some_and(|c| ident(c) && c != ':');
                    if whole {
                        return Loc {
                            file: self.loc.file.clone(),
                            line: self.loc.line + i as u64,
                            column: line[..pos].chars().count() as u64 + 1,
                        };
                    }
                    from = pos + needle.len();
                }
            }
        }
        self.loc.clone()
    }

    /// `Server s1`, as errors name it.
    pub fn label(&self) -> String {
        match (&self.metadata.claim, self.metadata.name.as_str()) {
            (Some(c), "") => format!("{} (claim {c})", self.kind),
            (_, n) => format!("{} {n}", self.kind),
        }
    }
}

/// A manifest source: a file name (or `-`) and its text.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Source {
    pub file: String,
    pub text: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{path}: {err}")]
    Io { path: String, err: std::io::Error },
    #[error("{0}: no *.yaml or *.yml files found")]
    Empty(String),
    /// `bytes` is the file's size; a pipe has none, it is cut off at the limit.
    #[error(
        "{path}: {} the {limit} a manifest file may be; \
         split it into several files and pass the directory (clusto apply -f DIR)",
        bytes.map_or("larger than".to_string(), |b| format!("{} is larger than", mib(b))),
        limit = mib(MAX_SOURCE_BYTES)
    )]
    TooLarge { path: String, bytes: Option<u64> },
    #[error("{path}:{line}:{column}: not UTF-8 text (byte 0x{byte:02X}); manifests must be UTF-8")]
    NotUtf8 {
        path: String,
        line: u64,
        column: u64,
        byte: u8,
    },
}

/// The largest manifest file (or standard input) clusto reads: four times
/// the 100,000-server datacenter `clusto generate` writes (29 MB). The cap
/// stops a runaway or hostile file before it is read into memory, so even
/// a pipe that never ends costs at most this much.
pub const MAX_SOURCE_BYTES: u64 = 128 << 20;

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / f64::from(1u32 << 20))
}

fn is_manifest(p: &Path) -> bool {
    matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"))
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), ReadError> {
    let io = |err| ReadError::Io {
        path: dir.display().to_string(),
        err,
    };
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .map_err(io)?;
    entries.sort();
    for p in entries {
        if p.is_dir() {
            walk(&p, out)?;
        } else if is_manifest(&p) {
            out.push(p);
        }
    }
    Ok(())
}

/// Reads files, directories (recursively, `*.yaml|*.yml`, sorted) or `-`.
pub fn read_sources(paths: &[String]) -> Result<Vec<Source>, ReadError> {
    let mut out = Vec::new();
    for p in paths {
        if p == "-" {
            out.push(read_source("-", std::io::stdin().lock())?);
            continue;
        }
        let path = Path::new(p);
        let files = if path.is_dir() {
            let mut v = Vec::new();
            walk(path, &mut v)?;
            if v.is_empty() {
                return Err(ReadError::Empty(p.clone()));
            }
            v
        } else {
            vec![path.to_path_buf()]
        };
        for f in files {
            let name = f.display().to_string();
            let io = |err| ReadError::Io {
                path: name.clone(),
                err,
            };
            let file = std::fs::File::open(&f).map_err(io)?;
            // Refuse by size before reading a byte (a pipe is checked as it is read).
            let bytes = file.metadata().map_err(io)?.len();
            if bytes > MAX_SOURCE_BYTES {
                return Err(ReadError::TooLarge {
                    path: name,
                    bytes: Some(bytes),
                });
            }
            out.push(read_source(&name, file)?);
        }
    }
    Ok(out)
}

/// One source, at most [`MAX_SOURCE_BYTES`], checked to be UTF-8.
fn read_source(name: &str, from: impl std::io::Read) -> Result<Source, ReadError> {
    let mut buf = Vec::new();
    std::io::Read::read_to_end(&mut from.take(MAX_SOURCE_BYTES + 1), &mut buf).map_err(|err| {
        ReadError::Io {
            path: name.to_string(),
            err,
        }
    })?;
    if buf.len() as u64 > MAX_SOURCE_BYTES {
        return Err(ReadError::TooLarge {
            path: name.to_string(),
            bytes: None,
        });
    }
    let text = String::from_utf8(buf).map_err(|e| not_utf8(name, e.as_bytes(), e.utf8_error()))?;
    Ok(Source {
        file: name.to_string(),
        text,
    })
}

/// Where the first byte that is not UTF-8 is, as a line and column.
fn not_utf8(name: &str, bytes: &[u8], e: std::str::Utf8Error) -> ReadError {
    let good = &bytes[..e.valid_up_to()];
    let line_start = good.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let column = std::str::from_utf8(&good[line_start..]).map_or(1, |s| s.chars().count() + 1);
    ReadError::NotUtf8 {
        path: name.to_string(),
        line: good.iter().filter(|&&b| b == b'\n').count() as u64 + 1,
        column: column as u64,
        byte: bytes[e.valid_up_to()],
    }
}

/// Splits a YAML stream into documents with the line each starts on.
fn split_documents(text: &str) -> Vec<(u64, String)> {
    let mut docs = Vec::new();
    let mut cur = String::new();
    let mut start = 1u64;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let ln = i as u64 + 1;
        let bare = line.trim_end_matches(['\n', '\r']);
        let marker = |m: &str| {
            bare.strip_prefix(m)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t']))
        };
        if marker("---") || marker("...") {
            docs.push((start, std::mem::take(&mut cur)));
            let rest = &bare[3..];
            if marker("...") || rest.trim().is_empty() || rest.trim_start().starts_with('#') {
                start = ln + 1;
            } else {
                // Content after `--- ` belongs to the new document; blank
                // the marker so columns stay right.
                start = ln;
                cur.push_str("   ");
                cur.push_str(rest);
                cur.push('\n');
            }
            continue;
        }
        cur.push_str(line);
    }
    docs.push((start, cur));
    docs.into_iter()
        .filter(|(_, d)| {
            d.lines()
                .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        })
        .collect()
}

#[derive(Deserialize)]
struct Head {
    #[serde(rename = "apiVersion")]
    api_version: Option<String>,
    kind: Option<String>,
    metadata: Option<HeadMeta>,
}

#[derive(Deserialize)]
struct HeadMeta {
    name: Option<serde_json::Value>,
    #[serde(rename = "nameFrom")]
    name_from: Option<String>,
    claim: Option<String>,
}

fn options() -> serde_saphyr::Options {
    // Untyped values (attribute values) must not turn `NO` into false.
    serde_saphyr::options! { strict_booleans: true }
}

fn yaml_error(
    file: &str,
    doc_line: u64,
    object: Option<String>,
    e: &serde_saphyr::Error,
) -> ManifestError {
    let (line, column) = e
        .location()
        .map(|l| (l.line() + doc_line - 1, l.column()))
        .unwrap_or((doc_line, 1));
    ManifestError {
        loc: Loc {
            file: file.to_string(),
            line,
            column,
        },
        object,
        rule: yaml_rule(e),
    }
}

/// What a YAML error says, in words and without the parser's own position.
fn yaml_rule(e: &serde_saphyr::Error) -> String {
    if let Some(breach) = budget_breach(e) {
        return budget_rule(breach);
    }
    let rendered = e.without_snippet().to_string();
    if rendered.contains("recursion limit exceeded") {
        // The scanner's own nesting guard, before any budget is counted.
        return too_large(
            "it nests deeper than the 256 levels of brackets or indented blocks YAML is read to",
        );
    }
    // The message carries its own "at line X column Y"; ours is in front.
    let rule = rendered
        .split(" at line ")
        .next()
        .unwrap_or(&rendered)
        .trim()
        .trim_start_matches("error: ")
        .to_string();
    match rule.split_once(": ") {
        Some((pre, rest)) if pre.starts_with("line ") => rest.to_string(),
        _ => rule,
    }
}

/// The parser limit behind an error, through the wrappers that add a
/// snippet or the alias's location.
fn budget_breach(e: &serde_saphyr::Error) -> Option<&serde_saphyr::budget::BudgetBreach> {
    match e {
        serde_saphyr::Error::Budget { breach, .. } => Some(breach),
        serde_saphyr::Error::WithSnippet { error, .. }
        | serde_saphyr::Error::AliasError { error, .. } => budget_breach(error),
        _ => None,
    }
}

/// A parser limit, said as a sentence. The limits are the parser's defaults
/// and deliberately not configurable: they stop alias bombs and runaway
/// nesting from exhausting memory, and no real inventory comes near them.
fn budget_rule(breach: &serde_saphyr::budget::BudgetBreach) -> String {
    use serde_saphyr::budget::BudgetBreach as B;
    let what = match breach {
        B::Nodes { nodes } => format!(
            "the document expands to more than {} YAML nodes (reached {nodes}); anchors \
             referenced many times (`*name`) multiply, which is how an alias bomb works",
            nodes - 1
        ),
        B::Aliases { aliases } => format!("it uses more than {} aliases (`*name`)", aliases - 1),
        B::Anchors { anchors } => format!("it defines more than {} anchors (`&name`)", anchors - 1),
        B::Depth { depth } => format!("it nests deeper than {} levels", depth - 1),
        B::Documents { documents } => {
            format!("it holds more than {} documents", documents - 1)
        }
        B::Events { events } => format!("it is longer than {} parser events", events - 1),
        B::ScalarBytes { total_scalar_bytes } => {
            format!("its values add up to more than {total_scalar_bytes} bytes")
        }
        B::MergeKeys { merge_keys } => {
            format!("it uses more than {} merge keys (`<<`)", merge_keys - 1)
        }
        B::AliasAnchorRatio { aliases, anchors } => format!(
            "it references its {anchors} anchors {aliases} times, which only an alias bomb needs"
        ),
        other => format!("it breaks a parser limit ({other:?})"),
    };
    too_large(&what)
}

fn too_large(what: &str) -> String {
    format!(
        "manifest too large to read safely: {what}. This limit cannot be raised; \
         split the file, or write the repeated parts out instead of aliasing them"
    )
}

fn typed<S: DeserializeOwned + Default>(
    file: &str,
    line: u64,
    text: &str,
    label: &str,
    wrap: fn(S) -> Spec,
) -> Result<(Metadata, Spec), ManifestError> {
    serde_saphyr::from_str_with_options::<Document<S>>(text, options())
        .map(|d| (d.metadata, wrap(d.spec)))
        .map_err(|e| yaml_error(file, line, Some(label.to_string()), &e))
}

fn unquote(v: &str) -> String {
    let v = v.split(" #").next().unwrap_or(v).trim();
    let v = v
        .strip_prefix('"')
        .and_then(|x| x.strip_suffix('"'))
        .or_else(|| v.strip_prefix('\'').and_then(|x| x.strip_suffix('\'')))
        .unwrap_or(v);
    v.to_string()
}

/// Reads `apiVersion`, `kind` and `metadata.name` off a document's lines
/// when they are written the usual block way; None sends the document
/// through a full parse of its head instead.
fn scan_head(text: &str) -> Option<(String, String, String)> {
    let (mut api, mut kind, mut name) = (None, None, None);
    let mut in_meta = false;
    for line in text.lines() {
        if line.starts_with(|c: char| c.is_ascii_alphabetic()) {
            in_meta = false;
            if let Some(v) = line.strip_prefix("apiVersion:") {
                api = Some(unquote(v));
            } else if let Some(v) = line.strip_prefix("kind:") {
                kind = Some(unquote(v));
            } else if let Some(v) = line.strip_prefix("metadata:") {
                let v = v.trim();
                if v.is_empty() {
                    in_meta = true;
                } else {
                    let inner = v.strip_prefix('{')?.strip_suffix('}')?;
                    for part in inner.split(',') {
                        if let Some(n) = part.trim().strip_prefix("name:") {
                            name = Some(unquote(n));
                        }
                    }
                }
            }
        } else if in_meta
            && let Some(v) = line.trim_start().strip_prefix("name:")
            && line.len() - line.trim_start().len() == 2
        {
            name = Some(unquote(v));
            in_meta = false;
        }
    }
    let (api, kind, name) = (api?, kind?, name?);
    if [&api, &kind, &name]
        .iter()
        .any(|v| v.is_empty() || v.contains(['{', '[', '&', '*', '!', '|', '>']))
    {
        return None;
    }
    Some((api, kind, name))
}

/// Parses one document (starting at `line` of `file`).
fn parse_document(file: &str, line: u64, text: &str) -> Result<Object, ManifestError> {
    let at = |column| Loc {
        file: file.to_string(),
        line,
        column,
    };
    let (api_version, kind_text, name) = match scan_head(text) {
        Some(h) => (Some(h.0), h.1, h.2),
        None => {
            let head: Head = serde_saphyr::from_str_with_options(text, options())
                .map_err(|e| yaml_error(file, line, None, &e))?;
            let (name, generated) = match head.metadata {
                Some(m) => (m.name, m.name_from.zip(m.claim)),
                None => (None, None),
            };
            let name = match (name, generated) {
                (Some(serde_json::Value::String(s)), _) => s,
                (Some(other), _) => other.to_string(),
                (None, Some((from, claim))) => format!("(claim {claim} from {from})"),
                (None, None) => {
                    return Err(ManifestError {
                        loc: at(1),
                        object: head.kind.clone(),
                        rule: "metadata.name is required (or nameFrom with claim)".into(),
                    });
                }
            };
            let Some(kind_text) = head.kind else {
                return Err(ManifestError {
                    loc: at(1),
                    object: Some(name),
                    rule: "kind is required".into(),
                });
            };
            (head.api_version, kind_text, name)
        }
    };
    let label = format!("{kind_text} {name}");
    if api_version.as_deref() != Some(API_VERSION) {
        return Err(ManifestError {
            loc: at(1),
            object: Some(label),
            rule: format!(
                "apiVersion must be {API_VERSION}, not {}",
                api_version.as_deref().unwrap_or("missing")
            ),
        });
    }
    // Kinds are spelt exactly as in the contract (`IPManager`), as in Kubernetes.
    let Some(kind) = clusto_core::Kind::ALL
        .into_iter()
        .find(|k| k.as_str() == kind_text)
    else {
        return Err(ManifestError {
            loc: at(1),
            object: Some(label),
            rule: format!(
                "unknown kind {kind_text:?}; kinds: {}",
                clusto_core::Kind::ALL.map(|k| k.as_str()).join(", ")
            ),
        });
    };
    let (metadata, spec) = match kind {
        Kind::Datacenter | Kind::Cage | Kind::Zone => {
            typed(file, line, text, &label, Spec::Location)
        }
        Kind::Rack => typed(file, line, text, &label, Spec::Rack),
        Kind::Server
        | Kind::VirtualServer
        | Kind::NetworkSwitch
        | Kind::PowerStrip
        | Kind::ConsoleServer
        | Kind::Appliance => typed(file, line, text, &label, Spec::Device),
        Kind::Pool => typed(file, line, text, &label, Spec::Pool),
        Kind::IpManager => typed(file, line, text, &label, Spec::IpManager),
        Kind::NameManager => typed(file, line, text, &label, Spec::NameManager),
        Kind::Driver => typed(file, line, text, &label, Spec::Driver),
        Kind::RackLayout => typed(file, line, text, &label, Spec::RackLayout),
        Kind::VmManager => typed(file, line, text, &label, Spec::VmManager),
        Kind::VirtualMachine => typed(file, line, text, &label, Spec::VirtualMachine),
        Kind::Entity => typed(file, line, text, &label, Spec::Entity),
    }?;
    let naming = match (
        metadata.name.is_empty(),
        &metadata.name_from,
        &metadata.claim,
    ) {
        (false, None, None) | (true, Some(_), Some(_)) => None,
        (false, Some(_), _) | (false, None, Some(_)) => {
            Some("give metadata.name or nameFrom with claim, not both")
        }
        (true, None, _) => Some("metadata.name is required (or nameFrom with claim)"),
        (true, Some(_), None) => {
            Some("nameFrom needs a claim: a key that finds the same object on every apply")
        }
    };
    if let Some(rule) = naming {
        return Err(ManifestError {
            loc: at(1),
            object: Some(label),
            rule: rule.into(),
        });
    }
    Ok(Object {
        kind,
        metadata,
        spec,
        loc: at(1),
        text: text.into(),
    })
}

/// Parses every document of one source; returns the objects and every error.
pub fn parse_source(src: &Source) -> (Vec<Object>, Vec<ManifestError>) {
    parse_sources_unchecked(std::slice::from_ref(src))
}

/// Parses documents on every core; results keep the input order.
fn parse_sources_unchecked(sources: &[Source]) -> (Vec<Object>, Vec<ManifestError>) {
    let docs: Vec<(&str, u64, String)> = sources
        .iter()
        .flat_map(|s| {
            split_documents(&s.text)
                .into_iter()
                .map(move |(l, t)| (s.file.as_str(), l, t))
        })
        .collect();
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(8);
    let per = docs.len().div_ceil(threads).max(256);
    let results: Vec<Result<Object, ManifestError>> = if docs.len() <= per {
        docs.iter()
            .map(|(f, l, t)| parse_document(f, *l, t))
            .collect()
    } else {
        std::thread::scope(|scope| {
            let handles: Vec<_> = docs
                .chunks(per)
                .map(|chunk| {
                    scope.spawn(move || {
                        chunk
                            .iter()
                            .map(|(f, l, t)| parse_document(f, *l, t))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap_or_default())
                .collect()
        })
    };
    let mut objects = Vec::new();
    let mut errors = Vec::new();
    for r in results {
        match r {
            Ok(o) => objects.push(o),
            Err(e) => errors.push(e),
        }
    }
    (objects, errors)
}

/// Files at least this big keep their parse in the cache.
const CACHE_MIN_BYTES: usize = 256 * 1024;

/// Where parsed large files are cached: `CLUSTO_CACHE_DIR`, else the XDG
/// cache directory; None when `CLUSTO_NO_CACHE` is set.
pub fn default_cache_dir() -> Option<std::path::PathBuf> {
    if std::env::var_os("CLUSTO_NO_CACHE").is_some() {
        return None;
    }
    if let Some(d) = std::env::var_os("CLUSTO_CACHE_DIR") {
        return Some(std::path::PathBuf::from(d).join("parsed"));
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".cache")))?;
    Some(base.join("clusto").join("parsed"))
}

/// A document as cached: everything but its position and text, which come
/// from the file as it is now.
#[derive(serde::Serialize, serde::Deserialize)]
struct CachedDoc {
    line: u64,
    kind: String,
    metadata: Metadata,
    spec: Spec,
}

/// 128 bits of two FNV-1a variants over the text: a cache key, not a
/// security boundary (the cache is the user's own directory).
fn content_key(text: &str) -> String {
    let mut a: u64 = 0xcbf2_9ce4_8422_2325;
    let mut b: u64 = 0x6c62_272e_07bb_0142;
    for byte in text.bytes() {
        a = (a ^ byte as u64).wrapping_mul(0x0100_0000_01b3);
        b = (b ^ byte as u64).wrapping_mul(0x0000_0100_0000_01b3 | 0x1_0000);
    }
    format!("{a:016x}{b:016x}{:x}", text.len())
}

fn from_cache(dir: &std::path::Path, src: &Source) -> Option<Vec<Object>> {
    let bytes = std::fs::read(dir.join(format!("{}.json", content_key(&src.text)))).ok()?;
    let cached: Vec<CachedDoc> = serde_json::from_slice(&bytes).ok()?;
    let texts: std::collections::HashMap<u64, String> =
        split_documents(&src.text).into_iter().collect();
    cached
        .into_iter()
        .map(|c| {
            let kind = Kind::ALL.into_iter().find(|k| k.as_str() == c.kind)?;
            Some(Object {
                kind,
                metadata: c.metadata,
                spec: c.spec,
                loc: Loc {
                    file: src.file.clone(),
                    line: c.line,
                    column: 1,
                },
                text: texts.get(&c.line)?.as_str().into(),
            })
        })
        .collect()
}

fn to_cache(dir: &std::path::Path, src: &Source, objects: &[&Object]) {
    let docs: Vec<CachedDoc> = objects
        .iter()
        .map(|o| CachedDoc {
            line: o.loc.line,
            kind: o.kind.as_str().to_string(),
            metadata: o.metadata.clone(),
            spec: o.spec.clone(),
        })
        .collect();
    let Ok(json) = serde_json::to_vec(&docs) else {
        return;
    };
    let path = dir.join(format!("{}.json", content_key(&src.text)));
    let tmp = dir.join(format!(".{}.tmp", std::process::id()));
    // Best effort: a cache that cannot be written only costs speed.
    if std::fs::create_dir_all(dir).is_ok() && std::fs::write(&tmp, json).is_ok() {
        let _ = std::fs::rename(&tmp, &path);
    }
}

/// Parses all sources, reusing the cached parse of large files whose text
/// is unchanged; duplicate objects are errors.
pub fn parse_sources(sources: &[Source]) -> (Vec<Object>, Vec<ManifestError>) {
    parse_sources_cached(sources, default_cache_dir().as_deref())
}

/// [`parse_sources`] with an explicit cache directory (None: no cache).
pub fn parse_sources_cached(
    sources: &[Source],
    cache: Option<&std::path::Path>,
) -> (Vec<Object>, Vec<ManifestError>) {
    let mut hits: Vec<Option<Vec<Object>>> = Vec::with_capacity(sources.len());
    for src in sources {
        hits.push(match cache {
            Some(dir) if src.text.len() >= CACHE_MIN_BYTES => from_cache(dir, src),
            _ => None,
        });
    }
    let misses: Vec<Source> = sources
        .iter()
        .zip(&hits)
        .filter(|(_, h)| h.is_none())
        .map(|(s, _)| s.clone())
        .collect();
    let (parsed, errors) = parse_sources_unchecked(&misses);
    if let Some(dir) = cache {
        for src in misses.iter().filter(|s| s.text.len() >= CACHE_MIN_BYTES) {
            if !errors.iter().any(|e| e.loc.file == src.file) {
                let mine: Vec<&Object> = parsed.iter().filter(|o| o.loc.file == src.file).collect();
                to_cache(dir, src, &mine);
            }
        }
    }
    // Keep the sources' order: cached files' objects where those files stand.
    let mut by_file: std::collections::HashMap<String, Vec<Object>> =
        std::collections::HashMap::new();
    for o in parsed {
        by_file.entry(o.loc.file.clone()).or_default().push(o);
    }
    let mut objects = Vec::new();
    for (src, hit) in sources.iter().zip(hits) {
        match hit {
            Some(v) => objects.extend(v),
            None => objects.extend(by_file.remove(&src.file).unwrap_or_default()),
        }
    }
    check_duplicates(objects, errors)
}

/// Drops and reports objects declared twice (by name, or by claim).
fn check_duplicates(o: Vec<Object>, e: Vec<ManifestError>) -> (Vec<Object>, Vec<ManifestError>) {
    let mut objects: Vec<Object> = Vec::new();
    let mut errors = Vec::new();
    let mut seen: std::collections::HashMap<String, Loc> = std::collections::HashMap::new();
    errors.extend(e);
    {
        for obj in o {
            let key = match (&obj.metadata.claim, obj.name()) {
                (Some(c), "") => format!("claim {c}"),
                (_, n) => n.to_string(),
            };
            if let Some(first) = seen.get(&key) {
                errors.push(ManifestError {
                    loc: obj.loc.clone(),
                    object: Some(obj.label()),
                    rule: format!("{key} is declared twice (first at {first})"),
                });
                continue;
            }
            seen.insert(key, obj.loc.clone());
            objects.push(obj);
        }
    }
    (objects, errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(text: &str) -> Source {
        Source {
            file: "m.yaml".into(),
            text: text.into(),
        }
    }

    #[test]
    fn documents_and_positions() {
        let text = "# leading comment\n---\napiVersion: clusto.dev/v1alpha1\nkind: Datacenter\nmetadata: {name: dc1}\n---\napiVersion: clusto.dev/v1alpha1\nkind: Server\nmetadata:\n  name: s1\nspec:\n  rack: r1\n  rackk: r2\n";
        let (objs, errs) = parse_source(&src(text));
        assert_eq!(objs.len(), 1);
        assert_eq!(objs[0].name(), "dc1");
        assert_eq!(objs[0].loc.line, 3, "the first line after the marker");
        assert_eq!(errs.len(), 1, "{errs:?}");
        let e = &errs[0];
        assert_eq!((e.loc.line, e.loc.column), (13, 3), "{e}");
        assert_eq!(e.object.as_deref(), Some("Server s1"));
        assert!(
            e.rule.contains("unknown field") && e.rule.contains("rackk"),
            "{}",
            e.rule
        );
        assert!(e.to_string().starts_with("m.yaml:13:3: Server s1: "), "{e}");
    }

    #[test]
    fn kinds_versions_names_and_types() {
        let (_, errs) = parse_source(&src("apiVersion: v1\nkind: Server\nmetadata: {name: a}\n"));
        assert!(
            errs[0]
                .rule
                .contains("apiVersion must be clusto.dev/v1alpha1")
        );
        let (_, errs) = parse_source(&src(
            "apiVersion: clusto.dev/v1alpha1\nkind: Spaceship\nmetadata: {name: a}\n",
        ));
        assert!(errs[0].rule.starts_with("unknown kind \"Spaceship\""));
        let (_, errs) = parse_source(&src(
            "apiVersion: clusto.dev/v1alpha1\nkind: Server\nmetadata: {}\n",
        ));
        assert_eq!(
            errs[0].rule,
            "metadata.name is required (or nameFrom with claim)"
        );
        let (_, errs) = parse_source(&src(
            "apiVersion: clusto.dev/v1alpha1\nkind: NameManager\nmetadata: {name: n}\nspec:\n  basename: s\n  digits: four\n",
        ));
        assert_eq!(errs[0].loc.line, 6, "{:?}", errs[0]);
        let (_, errs) = parse_source(&src("a: [\n"));
        assert_eq!(errs.len(), 1);
        let (objs, errs) = parse_source(&src(
            "apiVersion: clusto.dev/v1alpha1\nkind: Server\nmetadata: {name: s}\nspec:\n  attrs:\n    country: {code: NO}\n",
        ));
        assert!(errs.is_empty(), "{errs:?}");
        let Spec::Device(d) = &objs[0].spec else {
            panic!()
        };
        assert_eq!(
            d.attrs.items()[0].value,
            serde_json::json!("NO"),
            "the Norway problem"
        );
    }

    #[test]
    fn duplicates_across_files() {
        let a = src("apiVersion: clusto.dev/v1alpha1\nkind: Pool\nmetadata: {name: p}\n");
        let mut b = a.clone();
        b.file = "n.yaml".into();
        let (objs, errs) = parse_sources(&[a, b]);
        assert_eq!(objs.len(), 1);
        assert_eq!(
            errs[0].to_string(),
            "n.yaml:1:1: Pool p: p is declared twice (first at m.yaml:1:1)"
        );
    }
}
