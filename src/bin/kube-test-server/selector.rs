//! Label selectors (`a=b`, `a==b`, `a!=b`, `a`, `!a`, `a in (x,y)`, `a notin (x,y)`) and the field selectors
//! every resource supports (`metadata.name`, `metadata.namespace`).

use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    Exists(String),
    NotExists(String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
}

/// A parsed label or field selector; the empty selector matches everything.
#[derive(Debug, Clone, Default)]
pub struct Selector {
    labels: Vec<Requirement>,
    fields: Vec<Requirement>,
}

/// Splits on commas that are not inside parentheses.
fn split_top(s: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts.into_iter().map(str::trim).filter(|p| !p.is_empty()).collect()
}

fn valid_key(k: &str) -> bool {
    !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
}

fn parse_requirement(part: &str) -> Result<Requirement, String> {
    let bad = || format!("unable to parse requirement: {part:?}");
    let set = |rest: &str| -> Result<Vec<String>, String> {
        let inner = rest.trim().strip_prefix('(').and_then(|r| r.strip_suffix(')')).ok_or_else(bad)?;
        Ok(inner.split(',').map(|v| v.trim().to_string()).filter(|v| !v.is_empty()).collect())
    };
    let req = if let Some(key) = part.strip_prefix('!') {
        Requirement::NotExists(key.trim().to_string())
    } else if let Some((k, v)) = part.split_once("!=") {
        Requirement::NotEquals(k.trim().into(), v.trim().into())
    } else if let Some((k, v)) = part.split_once("==") {
        Requirement::Equals(k.trim().into(), v.trim().into())
    } else if let Some((k, v)) = part.split_once('=') {
        Requirement::Equals(k.trim().into(), v.trim().into())
    } else if let Some((k, rest)) = part.split_once(" notin ") {
        Requirement::NotIn(k.trim().into(), set(rest)?)
    } else if let Some((k, rest)) = part.split_once(" in ") {
        Requirement::In(k.trim().into(), set(rest)?)
    } else {
        Requirement::Exists(part.trim().to_string())
    };
    let key = match &req {
        Requirement::Equals(k, _)
        | Requirement::NotEquals(k, _)
        | Requirement::Exists(k)
        | Requirement::NotExists(k)
        | Requirement::In(k, _)
        | Requirement::NotIn(k, _) => k,
    };
    if valid_key(key) {
        Ok(req)
    } else {
        Err(bad())
    }
}

impl Selector {
    /// Parses the `labelSelector` and `fieldSelector` query parameters.
    pub fn parse(labels: Option<&str>, fields: Option<&str>) -> Result<Self, String> {
        let labels =
            split_top(labels.unwrap_or_default()).into_iter().map(parse_requirement).collect::<Result<_, _>>()?;
        let fields: Vec<Requirement> =
            split_top(fields.unwrap_or_default()).into_iter().map(parse_requirement).collect::<Result<_, _>>()?;
        for f in &fields {
            match f {
                Requirement::Equals(k, _) | Requirement::NotEquals(k, _)
                    if k == "metadata.name" || k == "metadata.namespace" => {}
                _ => return Err(format!("field label not supported: {f:?}")),
            }
        }
        Ok(Selector { labels, fields })
    }

    /// Whether the object matches every requirement.
    pub fn matches(&self, obj: &Value) -> bool {
        let labels = &obj["metadata"]["labels"];
        let label = |k: &str| labels.get(k).and_then(Value::as_str).map(str::to_string);
        let field = |k: &str| match k {
            "metadata.name" => obj["metadata"]["name"].as_str().map(str::to_string),
            "metadata.namespace" => Some(obj["metadata"]["namespace"].as_str().unwrap_or_default().to_string()),
            _ => None,
        };
        let check = |r: &Requirement, get: &dyn Fn(&str) -> Option<String>| match r {
            Requirement::Equals(k, v) => get(k).as_ref() == Some(v),
            Requirement::NotEquals(k, v) => get(k).as_ref() != Some(v),
            Requirement::Exists(k) => get(k).is_some(),
            Requirement::NotExists(k) => get(k).is_none(),
            Requirement::In(k, vs) => get(k).is_some_and(|x| vs.contains(&x)),
            Requirement::NotIn(k, vs) => get(k).is_none_or(|x| !vs.contains(&x)),
        };
        self.labels.iter().all(|r| check(r, &label)) && self.fields.iter().all(|r| check(r, &field))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn label_requirements() {
        let obj = json!({"metadata": {"name": "a", "labels": {"app": "web", "tier": "db"}}});
        let m = |s: &str| Selector::parse(Some(s), None).unwrap().matches(&obj);
        assert!(m("app=web"));
        assert!(m("app==web,tier"));
        assert!(!m("app!=web"));
        assert!(m("!missing"));
        assert!(!m("!tier"));
        assert!(m("tier in (db, cache),app notin (api)"));
        assert!(!m("tier notin (db)"));
        assert!(Selector::parse(Some("a in b"), None).is_err());
    }
}
