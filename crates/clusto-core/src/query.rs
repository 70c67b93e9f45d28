//! The query language: `kind:server and in:dc1 and not attr:system.disk=0`.
//! Parsed here into an AST; the store compiles it to SQL.

use crate::error::CoreError;
use crate::kind::Kind;

#[derive(Clone, Debug, PartialEq)]
pub enum Query {
    /// Shell-style glob (`*`, `?`), case-sensitive.
    Name(String),
    Driver(String),
    Kind(Kind),
    HasAttr {
        key: String,
        subkey: Option<String>,
    },
    AttrEq {
        key: String,
        subkey: Option<String>,
        value: String,
    },
    /// Recursive containment.
    In(String),
    ConnectedTo(String),
    Not(Box<Query>),
    And(Vec<Query>),
    Or(Vec<Query>),
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Open,
    Close,
    Word(String),
}

fn tokenize(s: &str) -> Result<Vec<Tok>, CoreError> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '(' => {
                chars.next();
                out.push(Tok::Open);
            }
            ')' => {
                chars.next();
                out.push(Tok::Close);
            }
            _ => {
                let mut w = String::new();
                while let Some(&c) = chars.peek() {
                    if c.is_whitespace() || c == '(' || c == ')' {
                        break;
                    }
                    chars.next();
                    if c == '"' || c == '\'' {
                        let q = c;
                        loop {
                            match chars.next() {
                                Some(c) if c == q => break,
                                Some('\\') => {
                                    if let Some(n) = chars.next() {
                                        w.push(n);
                                    }
                                }
                                Some(c) => w.push(c),
                                None => {
                                    return Err(CoreError::Query(format!(
                                        "unterminated quote in {s:?}"
                                    )));
                                }
                            }
                        }
                    } else {
                        w.push(c);
                    }
                }
                out.push(Tok::Word(w));
            }
        }
    }
    Ok(out)
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
}

impl Parser {
    fn peek_word(&self, w: &str) -> bool {
        matches!(self.toks.get(self.pos), Some(Tok::Word(x)) if x.eq_ignore_ascii_case(w))
    }

    fn or(&mut self) -> Result<Query, CoreError> {
        let mut v = vec![self.and()?];
        while self.peek_word("or") {
            self.pos += 1;
            v.push(self.and()?);
        }
        Ok(if v.len() == 1 {
            v.pop().unwrap()
        } else {
            Query::Or(v)
        })
    }

    fn and(&mut self) -> Result<Query, CoreError> {
        let mut v = vec![self.not()?];
        while self.peek_word("and") {
            self.pos += 1;
            v.push(self.not()?);
        }
        Ok(if v.len() == 1 {
            v.pop().unwrap()
        } else {
            Query::And(v)
        })
    }

    fn not(&mut self) -> Result<Query, CoreError> {
        if self.peek_word("not") {
            self.pos += 1;
            return Ok(Query::Not(Box::new(self.not()?)));
        }
        self.atom()
    }

    fn atom(&mut self) -> Result<Query, CoreError> {
        match self.toks.get(self.pos).cloned() {
            Some(Tok::Open) => {
                self.pos += 1;
                let q = self.or()?;
                if self.toks.get(self.pos) != Some(&Tok::Close) {
                    return Err(CoreError::Query("missing ')'".into()));
                }
                self.pos += 1;
                Ok(q)
            }
            Some(Tok::Close) => Err(CoreError::Query("unexpected ')'".into())),
            Some(Tok::Word(w)) => {
                self.pos += 1;
                term(&w)
            }
            None => Err(CoreError::Query("expression ends too early".into())),
        }
    }
}

fn split_key(k: &str) -> Result<(String, Option<String>), CoreError> {
    let (key, sub) = match k.split_once('.') {
        Some((a, b)) => (a, Some(b)),
        None => (k, None),
    };
    crate::names::check_key(key).map_err(|e| CoreError::Query(e.to_string()))?;
    if let Some(s) = sub {
        crate::names::check_key(s).map_err(|e| CoreError::Query(e.to_string()))?;
    }
    Ok((key.to_string(), sub.map(str::to_string)))
}

fn term(w: &str) -> Result<Query, CoreError> {
    let (field, arg) = w.split_once(':').ok_or_else(|| {
        CoreError::Query(format!(
            "{w:?} is not a term; use name:, driver:, kind:, attr:, in:, connected-to:, not, and, or"
        ))
    })?;
    if arg.is_empty() {
        return Err(CoreError::Query(format!("{field}: needs a value")));
    }
    Ok(match field.to_ascii_lowercase().as_str() {
        "name" => Query::Name(arg.to_string()),
        "driver" => Query::Driver(arg.to_string()),
        "kind" | "type" => Query::Kind(
            arg.parse()
                .map_err(|e: CoreError| CoreError::Query(e.to_string()))?,
        ),
        "attr" => {
            // `attr:key.sub=value`, or the original's `attr:key,value`.
            let split = arg.split_once('=').or_else(|| arg.split_once(','));
            match split {
                Some((k, v)) => {
                    let (key, subkey) = split_key(k)?;
                    Query::AttrEq {
                        key,
                        subkey,
                        value: v.to_string(),
                    }
                }
                None => {
                    let (key, subkey) = split_key(arg)?;
                    Query::HasAttr { key, subkey }
                }
            }
        }
        "in" | "pool" => Query::In(arg.to_string()),
        "connected-to" | "connectedto" => Query::ConnectedTo(arg.to_string()),
        other => {
            return Err(CoreError::Query(format!(
                "unknown field {other:?} in {w:?}"
            )));
        }
    })
}

pub fn parse(s: &str) -> Result<Query, CoreError> {
    let toks = tokenize(s)?;
    if toks.is_empty() {
        return Err(CoreError::Query("empty expression".into()));
    }
    let mut p = Parser { toks, pos: 0 };
    let q = p.or()?;
    if p.pos != p.toks.len() {
        return Err(CoreError::Query(format!(
            "unexpected {:?} after a complete expression; join terms with and/or",
            match &p.toks[p.pos] {
                Tok::Word(w) => w.as_str(),
                Tok::Open => "(",
                Tok::Close => ")",
            }
        )));
    }
    Ok(q)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precedence_and_forms() {
        let q =
            parse("kind:server and in:dc1 and in:unallocated and not attr:system.disk=0").unwrap();
        assert_eq!(
            q,
            Query::And(vec![
                Query::Kind(Kind::Server),
                Query::In("dc1".into()),
                Query::In("unallocated".into()),
                Query::Not(Box::new(Query::AttrEq {
                    key: "system".into(),
                    subkey: Some("disk".into()),
                    value: "0".into()
                })),
            ])
        );
        let q = parse("name:s* or driver:basicserver and attr:foo,12").unwrap();
        assert!(matches!(q, Query::Or(ref v) if v.len() == 2 && matches!(v[1], Query::And(_))));
        let q = parse("(name:a or name:b) and attr:owner=\"team a\"").unwrap();
        match q {
            Query::And(v) => assert_eq!(
                v[1],
                Query::AttrEq {
                    key: "owner".into(),
                    subkey: None,
                    value: "team a".into()
                }
            ),
            _ => panic!("{q:?}"),
        }
        assert_eq!(
            parse("NOT not kind:rack").unwrap(),
            Query::Not(Box::new(Query::Not(Box::new(Query::Kind(Kind::Rack)))))
        );
    }

    #[test]
    fn errors_are_clear() {
        for bad in [
            "",
            "kind:spaceship",
            "(kind:server",
            "kind:server)",
            "kind:server kind:rack",
            "bogus",
            "attr:9x",
            "color:red",
            "name:",
            "and",
            "attr:a=\"x",
        ] {
            let e = parse(bad).unwrap_err();
            assert!(matches!(e, CoreError::Query(_)), "{bad}: {e:?}");
        }
    }
}
