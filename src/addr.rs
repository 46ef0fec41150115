//! Resource addresses: the stable name of a resource inside one tenant, `kind.name`; attribute
//! paths into a resource's attributes as people write them (`spec.replicas`,
//! `metadata.labels["matih.ai/tier"]`), for `ignore_changes`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The address of a resource within a tenant, e.g. `kubernetes_namespace.tenant`.
///
/// `kind` says which provider owns the resource (`kubernetes_*`, `postgresql_*`, `dns_*`);
/// `name` is unique among resources of that kind in one tenant. Both are `[a-z0-9_]+`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ResourceAddr {
    pub kind: String,
    pub name: String,
}

impl ResourceAddr {
    pub fn new(kind: impl Into<String>, name: impl Into<String>) -> Self {
        ResourceAddr { kind: kind.into(), name: name.into() }
    }
}

impl fmt::Display for ResourceAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.kind, self.name)
    }
}

fn valid_part(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

impl FromStr for ResourceAddr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once('.') {
            Some((kind, name)) if valid_part(kind) && valid_part(name) => Ok(ResourceAddr::new(kind, name)),
            _ => Err(format!("invalid resource address {s:?} (expected KIND.NAME, e.g. kubernetes_namespace.tenant)")),
        }
    }
}

impl Serialize for ResourceAddr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ResourceAddr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// One step of an [`AttrPath`].
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PathPart {
    Key(String),
    Index(usize),
}

/// An attribute path as plans print them: identifiers joined with `.`, any other key as
/// `["key"]` (JSON string escapes), list indexes as `[n]` (or `.n`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AttrPath(pub Vec<PathPart>);

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

/// `["key"]` or `[n]` at the start of `rest` (which starts with `[`): the part and what follows.
fn bracket(rest: &str) -> Result<(PathPart, &str), String> {
    let inner = &rest[1..];
    if let Some(q) = inner.strip_prefix('"') {
        let mut escaped = false;
        for (i, c) in q.char_indices() {
            match c {
                '\\' if !escaped => escaped = true,
                '"' if !escaped => {
                    let key: String =
                        serde_json::from_str(&inner[..i + 2]).map_err(|e| format!("bad quoted key: {e}"))?;
                    let after = &q[i + 1..];
                    let after = after.strip_prefix(']').ok_or("a quoted key must be followed by `]`")?;
                    return Ok((PathPart::Key(key), after));
                }
                _ => escaped = false,
            }
        }
        Err("an unterminated quoted key".into())
    } else {
        let end = inner.find(']').ok_or("`[` without `]`")?;
        let n = inner[..end].parse::<usize>().map_err(|_| format!("{:?} is not a list index", &inner[..end]))?;
        Ok((PathPart::Index(n), &inner[end + 1..]))
    }
}

impl FromStr for AttrPath {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = |why: &str| {
            format!(
                "invalid attribute path {s:?}: {why} (write it as plans print it: spec.replicas, \
                 metadata.labels[\"matih.ai/tier\"], spec.template.spec.containers[0].image)"
            )
        };
        let mut parts = Vec::new();
        let mut rest = s;
        let mut first = true;
        while !rest.is_empty() || first {
            if rest.starts_with('[') {
                let (part, after) = bracket(rest).map_err(|e| invalid(&e))?;
                parts.push(part);
                rest = after;
            } else {
                let body =
                    if first { rest } else { rest.strip_prefix('.').ok_or_else(|| invalid("expected `.` or `[`"))? };
                let end = body.find(['.', '[']).unwrap_or(body.len());
                let word = &body[..end];
                if let Ok(n) = word.parse::<usize>() {
                    if first {
                        return Err(invalid("a path starts with an attribute name"));
                    }
                    parts.push(PathPart::Index(n));
                } else if word.is_empty() {
                    return Err(invalid("an empty step (two dots, or a dot at an end)"));
                } else if word.starts_with(is_ident_start) && word.chars().all(is_ident) {
                    parts.push(PathPart::Key(word.to_string()));
                } else {
                    return Err(invalid(&format!("{word:?} is not a name (quote it: [\"{word}\"])")));
                }
                rest = &body[end..];
            }
            first = false;
        }
        Ok(AttrPath(parts))
    }
}

impl fmt::Display for AttrPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, part) in self.0.iter().enumerate() {
            match part {
                PathPart::Key(k) if k.starts_with(is_ident_start) && k.chars().all(is_ident) => {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    f.write_str(k)?;
                }
                PathPart::Key(k) => write!(f, "[{}]", serde_json::Value::from(k.as_str()))?,
                PathPart::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// `KIND.NAME:PATH`, a tenant's `ignore_changes` entry: the resource and the attribute path.
pub fn parse_ignore_entry(s: &str) -> Result<(ResourceAddr, AttrPath), String> {
    let (addr, path) = s.split_once(':').ok_or_else(|| {
        format!("{s:?} is not KIND.NAME:PATH (e.g. \"kubernetes_deployment.query_engine:spec.replicas\")")
    })?;
    Ok((addr.parse()?, path.parse()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attribute_paths_parse_and_print_as_plans_spell_them() {
        for (text, printed) in [
            ("spec.replicas", "spec.replicas"),
            ("metadata.labels[\"matih.ai/tier\"]", "metadata.labels[\"matih.ai/tier\"]"),
            ("spec.template.spec.containers[0].image", "spec.template.spec.containers[0].image"),
            ("spec.containers.0.image", "spec.containers[0].image"),
            ("[\"a\\\"b\"]", "[\"a\\\"b\"]"),
        ] {
            let p: AttrPath = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(p.to_string(), printed);
        }
        let p: AttrPath = "spec.containers[1].x".parse().unwrap();
        assert_eq!(p.0[2], PathPart::Index(1));
        for bad in ["", "spec..replicas", "spec.", "0.a", "spec[x]", "metadata.labels[\"x\"", "a b", "spec.repl icas"] {
            assert!(bad.parse::<AttrPath>().is_err(), "{bad:?} parsed");
        }
        let (a, p) = parse_ignore_entry("kubernetes_deployment.query_engine:spec.replicas").unwrap();
        assert_eq!(
            (a.to_string(), p.to_string()),
            ("kubernetes_deployment.query_engine".into(), "spec.replicas".into())
        );
        assert!(parse_ignore_entry("kubernetes_deployment.query_engine").unwrap_err().contains("KIND.NAME:PATH"));
        assert!(parse_ignore_entry("Bad:spec").unwrap_err().contains("invalid resource address"));
    }

    #[test]
    fn parses_and_prints() {
        let a: ResourceAddr = "kubernetes_namespace.tenant".parse().unwrap();
        assert_eq!(a, ResourceAddr::new("kubernetes_namespace", "tenant"));
        assert_eq!(a.to_string(), "kubernetes_namespace.tenant");
        assert!("nodot".parse::<ResourceAddr>().is_err());
        assert!("Bad.name".parse::<ResourceAddr>().is_err());
        assert!("a.".parse::<ResourceAddr>().is_err());
    }
}
