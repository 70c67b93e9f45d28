//! Typed attribute values.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use crate::error::CoreError;
use crate::model::EntityId;
use crate::time;

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    String(String),
    Int(i64),
    Bool(bool),
    Float(f64),
    Ip(IpAddr),
    /// Normalised to UTC milliseconds; printed as RFC 3339.
    DateTime(i64),
    Json(serde_json::Value),
    /// A reference survives renames because it points at the entity id.
    Ref(EntityId),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ValueType {
    String,
    Int,
    Bool,
    Float,
    Ip,
    DateTime,
    Json,
    Ref,
}

impl ValueType {
    pub fn as_str(self) -> &'static str {
        match self {
            ValueType::String => "string",
            ValueType::Int => "int",
            ValueType::Bool => "bool",
            ValueType::Float => "float",
            ValueType::Ip => "ip",
            ValueType::DateTime => "datetime",
            ValueType::Json => "json",
            ValueType::Ref => "ref",
        }
    }
}

impl fmt::Display for ValueType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ValueType {
    type Err = CoreError;
    fn from_str(s: &str) -> Result<Self, CoreError> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "string" | "str" => ValueType::String,
            "int" | "integer" => ValueType::Int,
            "bool" | "boolean" => ValueType::Bool,
            "float" | "number" => ValueType::Float,
            "ip" | "ipaddress" | "address" => ValueType::Ip,
            "datetime" | "time" | "timestamp" => ValueType::DateTime,
            "json" => ValueType::Json,
            "ref" | "reference" | "entity" => ValueType::Ref,
            _ => return Err(CoreError::UnknownValueType(s.to_string())),
        })
    }
}

impl Value {
    pub fn value_type(&self) -> ValueType {
        match self {
            Value::String(_) => ValueType::String,
            Value::Int(_) => ValueType::Int,
            Value::Bool(_) => ValueType::Bool,
            Value::Float(_) => ValueType::Float,
            Value::Ip(_) => ValueType::Ip,
            Value::DateTime(_) => ValueType::DateTime,
            Value::Json(_) => ValueType::Json,
            Value::Ref(_) => ValueType::Ref,
        }
    }

    /// Parses text as the given type. References are resolved by the caller
    /// (they need the inventory), so `Ref` is refused here.
    pub fn parse_as(ty: ValueType, text: &str) -> Result<Value, CoreError> {
        let bad = || CoreError::BadValue {
            value: text.to_string(),
            ty,
        };
        Ok(match ty {
            ValueType::String => Value::String(text.to_string()),
            ValueType::Int => Value::Int(text.trim().parse().map_err(|_| bad())?),
            ValueType::Bool => match text.trim().to_ascii_lowercase().as_str() {
                "true" | "yes" | "1" | "on" => Value::Bool(true),
                "false" | "no" | "0" | "off" => Value::Bool(false),
                _ => return Err(bad()),
            },
            ValueType::Float => {
                let f: f64 = text.trim().parse().map_err(|_| bad())?;
                if !f.is_finite() {
                    return Err(bad());
                }
                Value::Float(f)
            }
            ValueType::Ip => Value::Ip(text.trim().parse().map_err(|_| bad())?),
            ValueType::DateTime => {
                Value::DateTime(time::parse_rfc3339_ms(text.trim()).ok_or_else(bad)?)
            }
            ValueType::Json => Value::Json(serde_json::from_str(text).map_err(|_| bad())?),
            ValueType::Ref => return Err(bad()),
        })
    }

    /// What the CLI does without `--type`: canonical integers, floats and
    /// booleans become typed, everything else stays a string (so `0123`
    /// keeps its leading zero).
    pub fn infer(text: &str) -> Value {
        if text == "true" || text == "false" {
            return Value::Bool(text == "true");
        }
        if let Ok(i) = text.parse::<i64>()
            && i.to_string() == text
        {
            return Value::Int(i);
        }
        if is_plain_decimal(text)
            && let Ok(f) = text.parse::<f64>()
        {
            return Value::Float(f);
        }
        Value::String(text.to_string())
    }

    /// The text form stored in SQL and compared by queries. References have
    /// none: they are stored as ids.
    pub fn to_text(&self) -> Option<String> {
        Some(match self {
            Value::String(s) => s.clone(),
            Value::Int(i) => i.to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Float(f) => format_float(*f),
            Value::Ip(ip) => ip.to_string(),
            Value::DateTime(ms) => time::format_unix_ms(*ms),
            Value::Json(j) => j.to_string(),
            Value::Ref(_) => return None,
        })
    }

    /// Rebuilds a value from its stored form.
    pub fn from_stored(
        ty: ValueType,
        text: Option<&str>,
        reference: Option<i64>,
    ) -> Result<Value, CoreError> {
        match ty {
            ValueType::Ref => {
                reference
                    .map(|r| Value::Ref(EntityId(r)))
                    .ok_or_else(|| CoreError::BadValue {
                        value: String::new(),
                        ty,
                    })
            }
            _ => Value::parse_as(ty, text.unwrap_or_default()),
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// Truthiness as operators mean it in attributes like `dhcp.enabled`.
    pub fn is_truthy(&self) -> bool {
        match self {
            Value::Bool(b) => *b,
            Value::Int(i) => *i != 0,
            Value::String(s) => {
                matches!(s.to_ascii_lowercase().as_str(), "true" | "yes" | "1" | "on")
            }
            Value::Float(f) => *f != 0.0,
            _ => true,
        }
    }
}

/// `-?(0|[1-9][0-9]*)\.[0-9]+`: what a person types as a decimal number.
fn is_plain_decimal(text: &str) -> bool {
    let t = text.strip_prefix('-').unwrap_or(text);
    let Some((int, frac)) = t.split_once('.') else {
        return false;
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit());
    digits(int) && digits(frac) && (int == "0" || !int.starts_with('0'))
}

fn format_float(f: f64) -> String {
    let s = f.to_string();
    if s.contains('.') || s.contains('e') || s.contains("inf") || s.contains("NaN") {
        s
    } else {
        format!("{s}.0")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn infer_is_conservative() {
        assert_eq!(Value::infer("1024"), Value::Int(1024));
        assert_eq!(Value::infer("-3"), Value::Int(-3));
        assert_eq!(Value::infer("0123"), Value::String("0123".into()));
        assert_eq!(Value::infer("true"), Value::Bool(true));
        assert_eq!(Value::infer("1.5"), Value::Float(1.5));
        assert_eq!(Value::infer("0.5"), Value::Float(0.5));
        assert_eq!(Value::infer("10.0.0.1"), Value::String("10.0.0.1".into()));
        assert_eq!(Value::infer("yes"), Value::String("yes".into()));
        assert_eq!(Value::infer("1e5"), Value::String("1e5".into()));
    }

    #[test]
    fn typed_parsing_rejects_garbage() {
        assert!(Value::parse_as(ValueType::Int, "ten").is_err());
        assert!(Value::parse_as(ValueType::Ip, "10.0.0.300").is_err());
        assert!(Value::parse_as(ValueType::Json, "{").is_err());
        assert!(Value::parse_as(ValueType::Float, "NaN").is_err());
        assert!(Value::parse_as(ValueType::DateTime, "2024-99-01").is_err());
        assert_eq!(
            Value::parse_as(ValueType::Bool, "no").unwrap(),
            Value::Bool(false)
        );
        let v = Value::parse_as(ValueType::DateTime, "2024-05-01T00:00:00+02:00").unwrap();
        assert_eq!(v.to_text().unwrap(), "2024-04-30T22:00:00.000Z");
    }

    #[test]
    fn stored_round_trip() {
        for v in [
            Value::String("x y".into()),
            Value::Int(-7),
            Value::Bool(false),
            Value::Float(2.0),
            Value::Ip("fe80::1".parse().unwrap()),
            Value::Json(serde_json::json!({"a": [1, 2]})),
        ] {
            let t = v.to_text().unwrap();
            assert_eq!(
                Value::from_stored(v.value_type(), Some(&t), None).unwrap(),
                v
            );
        }
        assert_eq!(
            Value::from_stored(ValueType::Ref, None, Some(4)).unwrap(),
            Value::Ref(EntityId(4))
        );
    }
}
