//! Per-tenant placeholders in catalog data: `{namespace}`, `{slug}`, ….
//!
//! A placeholder is `{` + a lower-case identifier + `}`; any other brace (PromQL label matchers,
//! JSON, Go templates such as `{{ $labels.pod }}`) is left alone. Inside a longer string a
//! placeholder is replaced by its value as text; a string that is exactly one placeholder becomes
//! the variable's value itself, so that a number stays a number and a list a list.
//!
//! **Invariant:** knows nothing of tenants; the caller supplies the variables. The loader checks
//! that every template only uses the variables its kind allows, so filling never meets an unknown one.

use std::collections::BTreeMap;

use crate::value::Value;

/// Variables of image templates in `services.hcl`.
pub const IMAGE_VARS: &[&str] = &["name", "registry", "tag"];
/// Variables of NetworkPolicy specs in `network.hcl`.
pub const NETWORK_VARS: &[&str] = &[
    "api_server_peers",
    "connector_services",
    "control_plane_namespace",
    "database_peers",
    "edge_namespace",
    "ingress_backend_ports",
    "ingress_backends",
    "namespace",
    "observability_namespace",
    "postgres_port",
    "slug",
];
/// Variables of alert expressions in `alerts.hcl`.
pub const ALERT_VARS: &[&str] = &["namespace", "slug"];
/// Variables of Grafana dashboards in `dashboards/`.
pub const DASHBOARD_VARS: &[&str] = &["namespace", "slug"];

/// Variables for filling templates.
pub type Vars = BTreeMap<&'static str, Value>;

/// The placeholders of a string: `(byte offset of '{', name)`.
pub fn placeholders(s: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let bytes = s.as_bytes();
    let mut i = 0;
    while let Some(pos) = s[i..].find('{') {
        let start = i + pos;
        let name_start = start + 1;
        let mut end = name_start;
        while end < bytes.len() && (bytes[end].is_ascii_lowercase() || bytes[end] == b'_') {
            end += 1;
        }
        if end > name_start && end < bytes.len() && bytes[end] == b'}' && bytes[name_start] != b'_' {
            out.push((start, &s[name_start..end]));
            i = end + 1;
        } else {
            i = name_start;
        }
    }
    out
}

/// The placeholders of a string that are not in `allowed`.
pub fn unknown_placeholders<'a>(s: &'a str, allowed: &[&str]) -> Vec<&'a str> {
    placeholders(s).into_iter().map(|(_, name)| name).filter(|name| !allowed.contains(name)).collect()
}

/// Every string inside a value (map keys too), for checking placeholders.
pub fn strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::List(items) => items.iter().for_each(|i| strings(i, out)),
        Value::Map(m) => {
            for (k, v) in m {
                out.push(k.clone());
                strings(v, out);
            }
        }
        _ => {}
    }
}

/// Fills the placeholders of a string. Unknown placeholders and variables that are not text or
/// numbers are left as written.
pub fn fill_str(s: &str, vars: &Vars) -> String {
    if !s.contains('{') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 16);
    let mut last = 0;
    for (start, name) in placeholders(s) {
        let text = match vars.get(name) {
            Some(Value::String(v)) => v.clone(),
            Some(Value::Int(n)) => n.to_string(),
            _ => continue,
        };
        out.push_str(&s[last..start]);
        out.push_str(&text);
        last = start + name.len() + 2;
    }
    out.push_str(&s[last..]);
    out
}

/// Fills the placeholders of every string (and map key) inside a value.
pub fn fill(v: &Value, vars: &Vars) -> Value {
    match v {
        Value::String(s) => {
            if let Some(name) = s.strip_prefix('{').and_then(|r| r.strip_suffix('}')) {
                if let Some(value) = vars.get(name) {
                    return value.clone();
                }
            }
            Value::String(fill_str(s, vars))
        }
        Value::List(items) => Value::List(items.iter().map(|i| fill(i, vars)).collect()),
        Value::Map(m) => Value::Map(m.iter().map(|(k, v)| (fill_str(k, vars), fill(v, vars))).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> Vars {
        Vars::from([
            ("namespace", Value::str("matih-acme")),
            ("port", Value::Int(5432)),
            ("list", Value::list([Value::str("a")])),
        ])
    }

    #[test]
    fn finds_only_identifier_placeholders() {
        let s = r#"rate(x{namespace="{namespace}"}[5m]) {{ $labels.pod }} {a_b} {_x} {A} {}"#;
        let names: Vec<&str> = placeholders(s).into_iter().map(|(_, n)| n).collect();
        assert_eq!(names, ["namespace", "a_b"]);
        assert_eq!(unknown_placeholders(s, &["namespace"]), ["a_b"]);
    }

    #[test]
    fn fills_text_and_whole_values() {
        let v = vars();
        assert_eq!(
            fill_str(r#"x{namespace="{namespace}"} {port} {other}"#, &v),
            r#"x{namespace="matih-acme"} 5432 {other}"#
        );
        assert_eq!(fill(&Value::str("{port}"), &v), Value::Int(5432));
        assert_eq!(fill(&Value::str("{list}"), &v), Value::list([Value::str("a")]));
        let m = Value::map([("ns-{namespace}", Value::list([Value::str("{namespace}")]))]);
        assert_eq!(fill(&m, &v), Value::map([("ns-matih-acme", Value::list([Value::str("matih-acme")]))]));
    }
}
