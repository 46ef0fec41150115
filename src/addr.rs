//! Resource addresses: the stable name of a resource inside one tenant, `kind.name`.

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

#[cfg(test)]
mod tests {
    use super::*;

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
