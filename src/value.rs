//! Attribute values, including the two kinds a plan cannot know in full: values known only after
//! apply, and secrets (which are never held in clear anywhere matih writes).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::addr::ResourceAddr;

/// An attribute value of a resource.
///
/// Known values are plain JSON-like data. `Ref` and `Computed` are "(known after apply)";
/// `Secret` is a sensitive value of which only a SHA-256 fingerprint is ever stored or shown.
///
/// Serialized (state, plan files) as plain JSON for known values; the special variants are objects
/// with a single `$ref`, `$computed` or `$secret` key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    String(String),
    List(Vec<Value>),
    Map(BTreeMap<String, Value>),
    /// The output `output` of another resource of the same tenant (e.g. the LoadBalancer IP of the
    /// ingress controller's Service). Known once that resource has been applied.
    Ref {
        resource: ResourceAddr,
        output: String,
    },
    /// A value the provider sets when the resource is created (e.g. a `provisioned-at` timestamp).
    /// Once recorded in state it is kept as it is: it never causes a change by itself.
    Computed {
        note: String,
    },
    /// A sensitive value: a generated password, a webhook URL from the environment.
    Secret(Secret),
}

/// A sensitive value. The clear text never leaves the provider that uses it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Secret {
    /// Where the value comes from, for people: `generated`, `env:ACME_SLACK_WEBHOOK`.
    pub source: String,
    /// `sha256:<hex>` of the clear value when it is known (from the environment at plan time, or
    /// recorded in state after apply); `None` for a value that will be generated at apply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
}

/// `sha256:<hex>` of a secret's clear text: what state records so that drift can still be seen.
pub fn fingerprint(clear: &str) -> String {
    let digest = Sha256::digest(clear.as_bytes());
    let mut s = String::with_capacity(7 + 64);
    s.push_str("sha256:");
    for b in digest {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

impl Value {
    pub fn str(s: impl Into<String>) -> Value {
        Value::String(s.into())
    }

    /// A map of `pairs` (a later pair replaces an earlier one with the same key). Inserted one by
    /// one: the maps built here are small, and collecting them first sorted a copy of each (5% of
    /// the CPU time of compiling a tenant).
    pub fn map<K: Into<String>>(pairs: impl IntoIterator<Item = (K, Value)>) -> Value {
        let mut map = BTreeMap::new();
        for (k, v) in pairs {
            map.insert(k.into(), v);
        }
        Value::Map(map)
    }

    pub fn list(items: impl IntoIterator<Item = Value>) -> Value {
        Value::List(items.into_iter().collect())
    }

    /// The value and everything inside it, depth first: a list's items in order, a map's values
    /// by key. `is_unknown`, `is_sensitive` and `refs` walk in the same order, recursively.
    pub fn descendants(&self) -> impl Iterator<Item = &Value> {
        // The value itself waits apart, so that a leaf (most attributes) allocates no stack.
        let mut first = Some(self);
        let mut stack = Vec::new();
        std::iter::from_fn(move || {
            let v = first.take().or_else(|| stack.pop())?;
            match v {
                Value::List(items) => stack.extend(items.iter().rev()),
                Value::Map(m) => stack.extend(m.values().rev()),
                _ => {}
            }
            Some(v)
        })
    }

    /// Whether `pred` holds for the value or anything inside it. Recursive rather than through
    /// [`Value::descendants`]: the plan asks this of every attribute, and a walk on the call stack
    /// allocates nothing (a value nests as deep as its parser allows, 64 levels for a spec).
    fn any(&self, pred: &impl Fn(&Value) -> bool) -> bool {
        pred(self)
            || match self {
                Value::List(items) => items.iter().any(|v| v.any(pred)),
                Value::Map(m) => m.values().any(|v| v.any(pred)),
                _ => false,
            }
    }

    /// True when the value (or anything inside it) is only known after apply.
    pub fn is_unknown(&self) -> bool {
        self.any(&|v| matches!(v, Value::Ref { .. } | Value::Computed { .. }))
    }

    /// True when the value (or anything inside it) is a secret.
    pub fn is_sensitive(&self) -> bool {
        self.any(&|v| matches!(v, Value::Secret(_)))
    }

    /// Every reference inside the value, in the order of [`Value::descendants`].
    pub fn refs(&self) -> Vec<(&ResourceAddr, &str)> {
        fn push<'v>(v: &'v Value, out: &mut Vec<(&'v ResourceAddr, &'v str)>) {
            match v {
                Value::Ref { resource, output } => out.push((resource, output)),
                Value::List(items) => items.iter().for_each(|v| push(v, out)),
                Value::Map(m) => m.values().for_each(|v| push(v, out)),
                _ => {}
            }
        }
        let mut out = Vec::new();
        push(self, &mut out);
        out
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_list(&self) -> Option<&[Value]> {
        match self {
            Value::List(l) => Some(l),
            _ => None,
        }
    }

    pub fn as_map(&self) -> Option<&BTreeMap<String, Value>> {
        match self {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    /// Looks up a dotted path of map keys (`metadata.labels`); keys cannot contain dots here.
    pub fn get_path(&self, path: &str) -> Option<&Value> {
        path.split('.').try_fold(self, |v, key| v.as_map()?.get(key))
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::String(s.to_string())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Value {
        Value::String(s)
    }
}

impl From<i64> for Value {
    fn from(n: i64) -> Value {
        Value::Int(n)
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Value {
        Value::Bool(b)
    }
}

impl Serialize for Value {
    /// Written directly (no intermediate `serde_json::Value`): state and plan files of a thousand
    /// tenants hold tens of megabytes of values.
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        match self {
            Value::Null => ser.serialize_unit(),
            Value::Bool(b) => ser.serialize_bool(*b),
            Value::Int(n) => ser.serialize_i64(*n),
            Value::String(s) => ser.serialize_str(s),
            Value::List(items) => {
                let mut seq = ser.serialize_seq(Some(items.len()))?;
                for v in items {
                    seq.serialize_element(v)?;
                }
                seq.end()
            }
            Value::Map(m) => {
                let mut map = ser.serialize_map(Some(m.len()))?;
                for (k, v) in m {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
            Value::Ref { resource, output } => {
                let mut map = ser.serialize_map(Some(1))?;
                map.serialize_entry("$ref", &format!("{resource}.{output}"))?;
                map.end()
            }
            Value::Computed { note } => {
                let mut map = ser.serialize_map(Some(1))?;
                map.serialize_entry("$computed", note)?;
                map.end()
            }
            Value::Secret(secret) => {
                let mut map = ser.serialize_map(Some(1))?;
                map.serialize_entry("$secret", secret)?;
                map.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Value, D::Error> {
        de.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> serde::de::Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }

    fn visit_i64<E>(self, n: i64) -> Result<Value, E> {
        Ok(Value::Int(n))
    }

    fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<Value, E> {
        i64::try_from(n).map(Value::Int).map_err(|_| E::custom(format!("number {n} is not a 64-bit integer")))
    }

    fn visit_f64<E: serde::de::Error>(self, n: f64) -> Result<Value, E> {
        Err(E::custom(format!("number {n} is not a 64-bit integer")))
    }

    fn visit_str<E>(self, s: &str) -> Result<Value, E> {
        Ok(Value::String(s.to_string()))
    }

    fn visit_string<E>(self, s: String) -> Result<Value, E> {
        Ok(Value::String(s))
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(v) = seq.next_element()? {
            items.push(v);
        }
        Ok(Value::List(items))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        use serde::de::Error;
        let mut out = BTreeMap::new();
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "$ref" | "$computed" | "$secret" if out.is_empty() => {
                    let special = match key.as_str() {
                        "$ref" => {
                            let r: String = map.next_value()?;
                            let (res, output) =
                                r.rsplit_once('.').ok_or_else(|| A::Error::custom(format!("invalid $ref {r:?}")))?;
                            Value::Ref { resource: res.parse().map_err(A::Error::custom)?, output: output.to_string() }
                        }
                        "$computed" => Value::Computed { note: map.next_value()? },
                        _ => Value::Secret(map.next_value()?),
                    };
                    if map.next_key::<String>()?.is_some() {
                        return Err(A::Error::custom(format!("{key} must be the only key of its object")));
                    }
                    return Ok(special);
                }
                _ => {
                    let v: Value = map.next_value()?;
                    out.insert(key, v);
                }
            }
        }
        Ok(Value::Map(out))
    }
}

impl From<Value> for serde_json::Value {
    fn from(v: Value) -> serde_json::Value {
        use serde_json::{json, Value as J};
        match v {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(b),
            Value::Int(n) => J::from(n),
            Value::String(s) => J::String(s),
            Value::List(items) => J::Array(items.into_iter().map(Into::into).collect()),
            Value::Map(m) => J::Object(m.into_iter().map(|(k, v)| (k, v.into())).collect()),
            Value::Ref { resource, output } => json!({ "$ref": format!("{resource}.{output}") }),
            Value::Computed { note } => json!({ "$computed": note }),
            Value::Secret(s) => json!({ "$secret": s }),
        }
    }
}

impl TryFrom<serde_json::Value> for Value {
    type Error = String;

    fn try_from(j: serde_json::Value) -> Result<Value, String> {
        use serde_json::Value as J;
        Ok(match j {
            J::Null => Value::Null,
            J::Bool(b) => Value::Bool(b),
            J::Number(n) => Value::Int(n.as_i64().ok_or_else(|| format!("number {n} is not a 64-bit integer"))?),
            J::String(s) => Value::String(s),
            J::Array(items) => Value::List(items.into_iter().map(Value::try_from).collect::<Result<_, _>>()?),
            J::Object(mut m) => {
                if m.len() == 1 {
                    if let Some(J::String(r)) = m.get("$ref") {
                        let (res, output) = r.rsplit_once('.').ok_or_else(|| format!("invalid $ref {r:?}"))?;
                        return Ok(Value::Ref { resource: res.parse()?, output: output.to_string() });
                    }
                    if let Some(J::String(note)) = m.get("$computed") {
                        return Ok(Value::Computed { note: note.clone() });
                    }
                    if let Some(s) = m.remove("$secret") {
                        return serde_json::from_value(s).map(Value::Secret).map_err(|e| e.to_string());
                    }
                }
                Value::Map(m.into_iter().map(|(k, v)| Ok((k, Value::try_from(v)?))).collect::<Result<_, String>>()?)
            }
        })
    }
}

impl fmt::Display for Value {
    /// HCL-like rendering for plans: strings quoted, unknowns as `(known after apply)`, secrets as
    /// `(sensitive)`. Lists and maps print on one line; renderers that want them spread out walk them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => f.write_str("null"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Int(n) => write!(f, "{n}"),
            Value::String(s) => write!(f, "{s:?}"),
            Value::List(items) => {
                f.write_str("[")?;
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{v}")?;
                }
                f.write_str("]")
            }
            Value::Map(m) => {
                f.write_str("{")?;
                for (i, (k, v)) in m.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, " {k:?} = {v}")?;
                }
                f.write_str(if m.is_empty() { "}" } else { " }" })
            }
            Value::Ref { .. } | Value::Computed { .. } => f.write_str("(known after apply)"),
            Value::Secret(_) => f.write_str("(sensitive value)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trip_keeps_special_values() {
        let v = Value::map([
            ("ip", Value::Ref { resource: "kubernetes_service.ingress".parse().unwrap(), output: "ip".into() }),
            ("at", Value::Computed { note: "creation time".into() }),
            ("pw", Value::Secret(Secret { source: "generated".into(), fingerprint: Some(fingerprint("x")) })),
            ("n", Value::Int(3)),
            ("l", Value::list([Value::str("a"), Value::Bool(true), Value::Null])),
        ]);
        let json = serde_json::to_string(&v).unwrap();
        assert!(!json.contains("\"x\""));
        let back: Value = serde_json::from_str(&json).unwrap();
        assert_eq!(back, v);
        assert!(v.is_unknown());
        assert!(v.is_sensitive());
        assert_eq!(v.refs().len(), 1);
    }

    #[test]
    fn fingerprint_is_sha256_hex() {
        assert_eq!(fingerprint(""), "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    }

    #[test]
    fn descendants_walk_depth_first_in_order() {
        let v = Value::map([("a", Value::list([Value::Int(1), Value::Int(2)])), ("b", Value::Int(3))]);
        let ints: Vec<i64> =
            v.descendants().filter_map(|x| if let Value::Int(n) = x { Some(*n) } else { None }).collect();
        assert_eq!(ints, [1, 2, 3]);
        assert_eq!(v.descendants().count(), 5);
    }

    #[test]
    fn the_recursive_questions_answer_what_the_walk_finds_at_any_depth() {
        let r = |name: &str| Value::Ref {
            resource: format!("kubernetes_service.{name}").parse().unwrap(),
            output: "ip".into(),
        };
        let secret = Value::Secret(Secret { source: "generated".into(), fingerprint: None });
        let deep = Value::map([
            ("z", r("last")),
            ("a", Value::list([Value::Int(1), Value::map([("m", r("first")), ("n", r("second"))])])),
            ("s", Value::list([Value::list([secret])])),
        ]);
        let walked: Vec<_> = deep
            .descendants()
            .filter_map(|v| match v {
                Value::Ref { resource, output } => Some((resource, output.as_str())),
                _ => None,
            })
            .collect();
        assert_eq!(deep.refs(), walked);
        let names: Vec<&str> = deep.refs().iter().map(|(a, _)| a.name.as_str()).collect();
        assert_eq!(names, ["first", "second", "last"]);
        assert!(deep.is_unknown() && deep.is_sensitive());
        let plain = Value::map([("a", Value::list([Value::map([("b", Value::str("x"))])]))]);
        assert!(!plain.is_unknown() && !plain.is_sensitive() && plain.refs().is_empty());
        assert!(Value::Computed { note: String::new() }.is_unknown());
    }

    #[test]
    fn display_hides_secrets_and_unknowns() {
        let v = Value::Secret(Secret { source: "generated".into(), fingerprint: Some(fingerprint("hunter2")) });
        assert_eq!(v.to_string(), "(sensitive value)");
        assert_eq!(Value::Computed { note: String::new() }.to_string(), "(known after apply)");
        assert_eq!(Value::map([("a", Value::Int(1))]).to_string(), "{ \"a\" = 1 }");
    }
}
