use crate::kind::Kind;
use crate::value::ValueType;

/// Every rule the inventory enforces fails with one of these; messages name
/// the object and the rule so a one-line CLI error is enough.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CoreError {
    #[error("{0} not found")]
    NotFound(String),
    #[error("{kind} {name} already exists")]
    Exists { name: String, kind: Kind },
    #[error(
        "invalid name {0:?}: names use letters, digits, '.', '_' and '-' and start with a letter or digit"
    )]
    InvalidName(String),
    #[error("invalid key {0:?}: keys and subkeys match ^[A-Za-z_][0-9A-Za-z_-]*$")]
    InvalidKey(String),
    #[error("unknown kind {0:?}")]
    UnknownKind(String),
    #[error("unknown driver {0:?}")]
    UnknownDriver(String),
    #[error("driver {driver} is for {driver_kind}, not {kind}")]
    DriverKindMismatch {
        driver: String,
        driver_kind: Kind,
        kind: Kind,
    },
    #[error("unknown value type {0:?} (string, int, bool, float, ip, datetime, json, ref)")]
    UnknownValueType(String),
    #[error("{value:?} is not a valid {ty}")]
    BadValue { value: String, ty: ValueType },
    #[error("{0:?} is not a port like nic-eth:1")]
    BadPort(String),
    #[error("{0:?} is not a rack unit or range like 12 or 12-13")]
    BadRu(String),
    #[error("{name} is {}, not {}", a(*kind), a(*expected))]
    WrongKind {
        name: String,
        kind: Kind,
        expected: Kind,
    },
    #[error(
        "{entity}: {count} attributes match {path}; name one with --subkey/--number or use add/del"
    )]
    AmbiguousAttr {
        entity: String,
        path: String,
        count: usize,
    },
    #[error("IPManager {0} is exhausted")]
    Exhausted(String),
    #[error("{object}: {rule}")]
    Rule { object: String, rule: String },
    #[error("query: {0}")]
    Query(String),
    #[error("the entity was deleted")]
    Gone,
}

/// "a Server", "an IPManager".
fn a(kind: Kind) -> String {
    let s = kind.as_str();
    match s.as_bytes().first() {
        Some(b'A' | b'E' | b'I' | b'O' | b'U') => format!("an {s}"),
        _ => format!("a {s}"),
    }
}
