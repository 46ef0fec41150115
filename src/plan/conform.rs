//! Whether a saved plan still carries what its tenant's spec compiles to (README, "Security
//! model"): every resource it creates, updates or replaces must be in the graph compiled now, and
//! its planned attributes (`after`) must be the graph's desired attributes, value for value.
//!
//! What the diff fills in at plan time from state is not compared: a reference (`Value::Ref`)
//! resolved to a recorded output, a computed value taken from state, a secret (only its presence:
//! sensitive values never travel in a plan). Everything else, manifests and SQL above all, must be
//! equal, so a plan file edited by hand (or made from other specs, or an older catalog) is refused
//! even without a keyed seal.
//!
//! Deletes are not compared: a destroy plan deletes what the spec still describes, and a delete
//! carries nothing that could be applied.
//!
//! **Invariant:** pure, like the diff.

use std::collections::BTreeMap;

use crate::addr::PathPart;
use crate::graph::ResourceGraph;
use crate::value::Value;

use super::path::{format_path, Seg};
use super::{Action, TenantPlan};

/// The ways `tp` departs from `graph` (compiled from the same tenant's spec now), one line each:
/// `ADDR: not in what the spec compiles to` or `ADDR: PATH differs`. Empty when it conforms.
pub fn nonconforming(tp: &TenantPlan, graph: &ResourceGraph) -> Vec<String> {
    let mut out = Vec::new();
    for c in &tp.resource_changes {
        if !matches!(c.action, Action::Create | Action::Adopt | Action::Update | Action::Replace) {
            continue;
        }
        let Some(after) = &c.after else { continue };
        let Some(res) = graph.get(&c.address) else {
            out.push(format!("{}: not in what the spec compiles to", c.address));
            continue;
        };
        let mut path = Vec::new();
        let differs = match graph.ignore_changes.get(&c.address) {
            // At an `ignore_changes` path the plan keeps the recorded value: compare that there.
            Some(rules) => {
                let mut desired = res.attrs.clone();
                for rule in rules {
                    overlay(&mut desired, after, &rule.path.0);
                }
                map_differs(&desired, after, &mut path)
            }
            None => map_differs(&res.attrs, after, &mut path),
        };
        if let Some(at) = differs {
            out.push(format!("{}: {at} differs", c.address));
        }
    }
    out
}

/// Sets the value of `desired` at `path` to the planned one (removes it where the plan has none).
fn overlay(desired: &mut BTreeMap<String, Value>, planned: &BTreeMap<String, Value>, path: &[PathPart]) {
    let Some((PathPart::Key(first), rest)) = path.split_first() else { return };
    if rest.is_empty() {
        match planned.get(first) {
            Some(v) => desired.insert(first.clone(), v.clone()),
            None => desired.remove(first),
        };
        return;
    }
    let (Some(d), Some(p)) = (desired.get_mut(first), planned.get(first)) else { return };
    overlay_value(d, p, rest);
}

fn overlay_value(desired: &mut Value, planned: &Value, path: &[PathPart]) {
    let Some((part, rest)) = path.split_first() else {
        *desired = planned.clone();
        return;
    };
    match (desired, planned, part) {
        (Value::Map(d), Value::Map(p), PathPart::Key(k)) if rest.is_empty() => {
            match p.get(k) {
                Some(v) => d.insert(k.clone(), v.clone()),
                None => d.remove(k),
            };
        }
        (Value::Map(d), Value::Map(p), PathPart::Key(k)) => {
            if let (Some(d), Some(p)) = (d.get_mut(k), p.get(k)) {
                overlay_value(d, p, rest);
            }
        }
        (Value::List(d), Value::List(p), PathPart::Index(n)) => {
            if let (Some(d), Some(p)) = (d.get_mut(*n), p.get(*n)) {
                overlay_value(d, p, rest);
            }
        }
        _ => {}
    }
}

fn map_differs<'a>(
    desired: &'a BTreeMap<String, Value>,
    planned: &'a BTreeMap<String, Value>,
    path: &mut Vec<Seg<'a>>,
) -> Option<String> {
    for (k, d) in desired {
        path.push(Seg::Key(k));
        let found = match planned.get(k) {
            None => Some(format_path(path)),
            Some(p) => differs(d, p, path),
        };
        path.pop();
        if found.is_some() {
            return found;
        }
    }
    planned.keys().find(|k| !desired.contains_key(*k)).map(|k| {
        path.push(Seg::Key(k));
        let at = format_path(path);
        path.pop();
        at
    })
}

fn differs<'a>(desired: &'a Value, planned: &'a Value, path: &mut Vec<Seg<'a>>) -> Option<String> {
    match (desired, planned) {
        (Value::Ref { .. } | Value::Computed { .. }, _) => None,
        (Value::Secret(_), Value::Secret(_)) => None,
        (Value::Map(d), Value::Map(p)) => map_differs(d, p, path),
        (Value::List(d), Value::List(p)) if d.len() == p.len() => {
            for (i, (dv, pv)) in d.iter().zip(p).enumerate() {
                path.push(Seg::Index(i));
                let found = differs(dv, pv, path);
                path.pop();
                if found.is_some() {
                    return found;
                }
            }
            None
        }
        (d, p) if d == p => None,
        _ => Some(format_path(path)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::ResourceAddr;
    use crate::graph::{Resource, TenantMeta};
    use crate::phase::Phase;
    use crate::plan::ResourceChange;
    use crate::value::Secret;

    fn addr() -> ResourceAddr {
        "kubernetes_config_map.settings".parse().unwrap()
    }

    fn graph(attrs: BTreeMap<String, Value>) -> ResourceGraph {
        let mut g = empty();
        g.add(Resource {
            addr: addr(),
            phase: Phase::DeployCoreServices,
            attrs,
            depends_on: Default::default(),
            force_new: Default::default(),
            origin: None,
        });
        g
    }

    fn empty() -> ResourceGraph {
        ResourceGraph::new(TenantMeta {
            slug: "acme".into(),
            id: "550e8400-e29b-41d4-a716-446655440000".into(),
            tier: "professional".into(),
            region: "eastus".into(),
            source: None,
        })
    }

    fn generated() -> Value {
        Value::Secret(Secret { source: "generated".into(), fingerprint: None })
    }

    fn plan(action: Action, after: BTreeMap<String, Value>) -> TenantPlan {
        TenantPlan {
            slug: "acme".into(),
            tenant_id: "550e8400-e29b-41d4-a716-446655440000".into(),
            tier: "professional".into(),
            source: None,
            prior_state: None,
            partial: None,
            ignored: Vec::new(),
            moved: Vec::new(),
            resource_changes: vec![ResourceChange {
                address: addr(),
                phase: Phase::DeployCoreServices,
                action,
                before: None,
                after: Some(after),
                changes: Vec::new(),
                depends_on: Default::default(),
                notes: Vec::new(),
                manifest_changes: Vec::new(),
            }],
        }
    }

    fn attrs(data: Value) -> BTreeMap<String, Value> {
        BTreeMap::from([("kind".to_string(), Value::str("ConfigMap")), ("data".to_string(), data)])
    }

    #[test]
    fn what_state_fills_in_is_not_compared_everything_else_is() {
        let desired = attrs(Value::map([
            ("ip", Value::Ref { resource: addr(), output: "ip".into() }),
            ("at", Value::Computed { note: "set at apply".into() }),
            ("password", generated()),
            ("sql", Value::str("GRANT USAGE ON SCHEMA acme TO tenant_acme")),
            ("ports", Value::list([Value::Int(80), Value::Int(443)])),
        ]));
        let planned = attrs(Value::map([
            ("ip", Value::str("203.0.113.1")),
            ("at", Value::str("2026-12-02T00:00:00Z")),
            ("password", generated()),
            ("sql", Value::str("GRANT USAGE ON SCHEMA acme TO tenant_acme")),
            ("ports", Value::list([Value::Int(80), Value::Int(443)])),
        ]));
        let g = graph(desired.clone());
        assert_eq!(nonconforming(&plan(Action::Update, planned.clone()), &g), Vec::<String>::new());

        let mut edited = planned.clone();
        if let Some(Value::Map(data)) = edited.get_mut("data") {
            data.insert("sql".into(), Value::str("ALTER ROLE tenant_acme SUPERUSER"));
        }
        assert_eq!(
            nonconforming(&plan(Action::Create, edited), &g),
            ["kubernetes_config_map.settings: data.sql differs"]
        );
        let mut extra = planned.clone();
        extra.insert("spec".into(), Value::str("x"));
        assert_eq!(nonconforming(&plan(Action::Replace, extra), &g), ["kubernetes_config_map.settings: spec differs"]);
        let mut fewer = planned.clone();
        if let Some(Value::Map(data)) = fewer.get_mut("data") {
            data.insert("ports".into(), Value::list([Value::Int(80)]));
        }
        assert_eq!(
            nonconforming(&plan(Action::Update, fewer), &g),
            ["kubernetes_config_map.settings: data.ports differs"]
        );
        // A clear value where the spec has a secret is a difference.
        let mut clear = planned.clone();
        if let Some(Value::Map(data)) = clear.get_mut("data") {
            data.insert("password".into(), Value::str("hunter2"));
        }
        assert_eq!(
            nonconforming(&plan(Action::Update, clear), &g),
            ["kubernetes_config_map.settings: data.password differs"]
        );
        // Not in the graph at all; a delete is never compared.
        let empty = empty();
        assert_eq!(
            nonconforming(&plan(Action::Create, planned.clone()), &empty),
            ["kubernetes_config_map.settings: not in what the spec compiles to"]
        );
        assert!(nonconforming(&plan(Action::Delete, planned), &empty).is_empty());
    }
}
