//! Field ownership (`metadata.managedFields`) and server-side apply.
//!
//! A field set is a set of paths to leaves. Maps are walked key by key; every other value, lists included, is a
//! leaf: lists are treated as atomic, as they are for custom resources without list-type markers. Field sets are
//! stored in the `FieldsV1` format (`{"f:spec": {"f:replicas": {}}}`, with `"."` marking a node that is itself
//! owned when deeper paths under it are owned too).

use serde_json::{json, Map, Value};
use std::collections::BTreeSet;

/// A path of object keys from the root of an object to an owned field.
pub type Path = Vec<String>;
/// The fields one manager owns.
pub type FieldSet = BTreeSet<Path>;

/// One entry of `metadata.managedFields`.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub manager: String,
    pub operation: String,
    pub subresource: String,
    pub api_version: String,
    pub time: String,
    pub fields: FieldSet,
}

impl Entry {
    fn same_owner(&self, manager: &str, operation: &str, subresource: &str) -> bool {
        self.manager == manager && self.operation == operation && self.subresource == subresource
    }
}

/// Which part of an object a write may touch.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Scope {
    /// Everything but `status` (for kinds with a status subresource) and system metadata.
    Main { status_subresource: bool },
    /// Only `status`.
    Status,
}

const MANAGED_METADATA: &[&str] = &["labels", "annotations", "finalizers", "ownerReferences"];

/// The owned leaf paths of `obj` within `scope`.
pub fn leaf_paths(obj: &Value, scope: Scope) -> FieldSet {
    let mut out = FieldSet::new();
    let Some(map) = obj.as_object() else { return out };
    for (k, v) in map {
        let include = match (k.as_str(), scope) {
            ("apiVersion" | "kind", _) => false,
            ("status", Scope::Status) => true,
            (_, Scope::Status) => false,
            ("status", Scope::Main { status_subresource }) => !status_subresource,
            ("metadata", Scope::Main { .. }) => {
                if let Some(meta) = v.as_object() {
                    for key in MANAGED_METADATA {
                        if let Some(val) = meta.get(*key) {
                            walk(val, vec!["metadata".into(), (*key).into()], &mut out);
                        }
                    }
                }
                false
            }
            _ => true,
        };
        if include {
            walk(v, vec![k.clone()], &mut out);
        }
    }
    out
}

fn walk(v: &Value, path: Path, out: &mut FieldSet) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, child) in m {
                let mut p = path.clone();
                p.push(k.clone());
                walk(child, p, out);
            }
        }
        _ => {
            out.insert(path);
        }
    }
}

/// The value at `path`, if there is one.
pub fn get_path<'a>(v: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(v, |cur, k| cur.as_object()?.get(k))
}

/// Removes the value at `path`, then any maps left empty along it below the top level.
pub fn remove_path(v: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else { return };
    let mut cur = &mut *v;
    for k in parents {
        match cur.as_object_mut().and_then(|m| m.get_mut(k)) {
            Some(next) => cur = next,
            None => return,
        }
    }
    if let Some(m) = cur.as_object_mut() {
        m.shift_remove(last);
    }
    if parents.len() >= 2 && get_path(v, parents).and_then(Value::as_object).is_some_and(Map::is_empty) {
        remove_path(v, parents);
    }
}

/// Whether one path is a prefix of the other (they overlap in ownership).
fn overlaps(a: &[String], b: &[String]) -> bool {
    let n = a.len().min(b.len());
    a[..n] == b[..n]
}

/// Renders a path the way conflict messages do (`.spec.replicas`, `.metadata.labels.app`).
pub fn render_path(p: &[String]) -> String {
    p.iter().map(|k| format!(".{k}")).collect()
}

/// Encodes a field set as a `FieldsV1` object.
pub fn encode(fields: &FieldSet) -> Value {
    let mut root = Value::Object(Map::new());
    for p in fields {
        let mut cur = &mut root;
        for k in p {
            let m = cur.as_object_mut().expect("field set nodes are objects");
            cur = m.entry(format!("f:{k}")).or_insert_with(|| Value::Object(Map::new()));
        }
        // A node that is owned and also has owned children carries the "." marker; a leaf stays `{}`.
        if cur.as_object().is_some_and(|m| !m.is_empty()) {
            cur.as_object_mut().expect("checked").insert(".".into(), json!({}));
        }
    }
    // A leaf encoded before its children were added needs the "." marker too; mark those nodes.
    fn mark(node: &mut Value, path: &mut Path, fields: &FieldSet) {
        if let Some(m) = node.as_object_mut() {
            if !m.is_empty() && !path.is_empty() && fields.contains(path) && !m.contains_key(".") {
                m.insert(".".into(), json!({}));
            }
            for (k, child) in m.iter_mut() {
                if let Some(name) = k.strip_prefix("f:") {
                    path.push(name.to_string());
                    mark(child, path, fields);
                    path.pop();
                }
            }
        }
    }
    mark(&mut root, &mut Vec::new(), fields);
    root
}

/// Decodes a `FieldsV1` object into a field set (keys other than `f:` and `.` are ignored).
pub fn decode(v: &Value) -> FieldSet {
    fn go(v: &Value, path: &mut Path, out: &mut FieldSet) {
        let Some(m) = v.as_object() else { return };
        if (m.is_empty() || m.contains_key(".")) && !path.is_empty() {
            out.insert(path.clone());
        }
        for (k, child) in m {
            if let Some(name) = k.strip_prefix("f:") {
                path.push(name.to_string());
                go(child, path, out);
                path.pop();
            }
        }
    }
    let mut out = FieldSet::new();
    go(v, &mut Vec::new(), &mut out);
    out
}

/// Reads `metadata.managedFields` of an object.
pub fn read_entries(obj: &Value) -> Vec<Entry> {
    obj["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| Entry {
            manager: e["manager"].as_str().unwrap_or_default().to_string(),
            operation: e["operation"].as_str().unwrap_or_default().to_string(),
            subresource: e["subresource"].as_str().unwrap_or_default().to_string(),
            api_version: e["apiVersion"].as_str().unwrap_or_default().to_string(),
            time: e["time"].as_str().unwrap_or_default().to_string(),
            fields: decode(&e["fieldsV1"]),
        })
        .collect()
}

/// Writes entries to `metadata.managedFields`, dropping entries that own nothing.
pub fn write_entries(obj: &mut Value, entries: &[Entry]) {
    let list: Vec<Value> = entries
        .iter()
        .filter(|e| !e.fields.is_empty())
        .map(|e| {
            let mut v = json!({
                "manager": e.manager,
                "operation": e.operation,
                "apiVersion": e.api_version,
                "time": e.time,
                "fieldsType": "FieldsV1",
                "fieldsV1": encode(&e.fields),
            });
            if !e.subresource.is_empty() {
                v["subresource"] = json!(e.subresource);
            }
            v
        })
        .collect();
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        if list.is_empty() {
            meta.shift_remove("managedFields");
        } else {
            meta.insert("managedFields".into(), Value::Array(list));
        }
    }
}

/// Records an Update operation (create, replace, patch, or a controller's status write) by `manager`:
/// it takes every field whose value it changed, and fields it removed are dropped from every owner.
pub fn record_update(
    entries: &mut Vec<Entry>,
    old: Option<&Value>,
    new: &Value,
    manager: &str,
    api_version: &str,
    scope: Scope,
    now: &str,
) {
    let subresource = if scope == Scope::Status { "status" } else { "" };
    let new_paths = leaf_paths(new, scope);
    let (changed, removed): (FieldSet, FieldSet) = match old {
        None => (new_paths.clone(), FieldSet::new()),
        Some(old) => {
            let changed = new_paths.iter().filter(|p| get_path(old, p) != get_path(new, p)).cloned().collect();
            let removed = leaf_paths(old, scope).into_iter().filter(|p| get_path(new, p).is_none()).collect();
            (changed, removed)
        }
    };
    if changed.is_empty() && removed.is_empty() {
        return;
    }
    for e in entries.iter_mut() {
        let mine = e.same_owner(manager, "Update", subresource);
        e.fields
            .retain(|q| !removed.iter().any(|p| overlaps(p, q)) && (mine || !changed.iter().any(|p| overlaps(p, q))));
    }
    let idx = match entries.iter().position(|e| e.same_owner(manager, "Update", subresource)) {
        Some(i) => i,
        None => {
            entries.push(Entry {
                manager: manager.into(),
                operation: "Update".into(),
                subresource: subresource.into(),
                api_version: api_version.into(),
                time: now.into(),
                fields: FieldSet::new(),
            });
            entries.len() - 1
        }
    };
    let e = &mut entries[idx];
    e.fields.retain(|q| !changed.iter().any(|p| overlaps(p, q) && p != q));
    e.fields.extend(changed);
    e.time = now.into();
    e.api_version = api_version.into();
    entries.retain(|e| !e.fields.is_empty());
}

/// The outcome of a server-side apply: the merged object and the new managedFields entries.
pub struct Applied {
    pub object: Value,
    pub entries: Vec<Entry>,
}

/// Drops `null` values from an apply configuration: they mean "not specified".
fn strip_nulls(v: &mut Value) {
    if let Some(m) = v.as_object_mut() {
        m.retain(|_, child| !child.is_null());
        for child in m.values_mut() {
            strip_nulls(child);
        }
    }
}

/// Merges an apply configuration into the live object: maps merge key by key, everything else replaces.
fn merge(live: &mut Value, applied: &Value) {
    match (live.as_object_mut(), applied.as_object()) {
        (Some(l), Some(a)) if !a.is_empty() => {
            for (k, v) in a {
                match l.get_mut(k) {
                    Some(existing) => merge(existing, v),
                    None => {
                        l.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (Some(_), Some(_)) => {}
        _ => *live = applied.clone(),
    }
}

/// Server-side apply of `applied` by `manager` onto `live` (an empty object when creating).
/// Returns the conflicts as (manager, rendered path) when another manager owns a field with a different value
/// and `force` is false; with `force` the ownership of those fields moves to `manager`. Fields the manager
/// applied before but no longer applies are removed from the object unless another manager owns them.
pub fn apply(
    live: &Value,
    applied: &Value,
    manager: &str,
    api_version: &str,
    force: bool,
    status_subresource: bool,
    now: &str,
) -> Result<Applied, Vec<(String, String)>> {
    let mut applied = applied.clone();
    strip_nulls(&mut applied);
    let scope = Scope::Main { status_subresource };
    let applied_paths = leaf_paths(&applied, scope);
    let mut entries = read_entries(live);

    let mut conflicts: Vec<(usize, Path)> = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        if e.same_owner(manager, "Apply", "") || !e.subresource.is_empty() {
            continue;
        }
        for q in &e.fields {
            for p in applied_paths.iter().filter(|p| overlaps(p, q)) {
                let longer = if q.len() > p.len() { q } else { p };
                if get_path(live, longer) != get_path(&applied, longer) {
                    conflicts.push((i, q.clone()));
                    break;
                }
            }
        }
    }
    if !conflicts.is_empty() && !force {
        let mut out: Vec<(String, String)> =
            conflicts.iter().map(|(i, q)| (entries[*i].manager.clone(), render_path(q))).collect();
        out.sort();
        out.dedup();
        return Err(out);
    }
    for (i, q) in &conflicts {
        entries[*i].fields.remove(q);
    }

    let mut object = live.clone();
    merge(&mut object, &applied);

    let previous: FieldSet =
        entries.iter().find(|e| e.same_owner(manager, "Apply", "")).map(|e| e.fields.clone()).unwrap_or_default();
    for p in previous.difference(&applied_paths) {
        let still_applied = applied_paths.iter().any(|a| overlaps(a, p));
        let owned_by_other = entries
            .iter()
            .filter(|e| !e.same_owner(manager, "Apply", ""))
            .any(|e| e.fields.iter().any(|q| overlaps(q, p)));
        if !still_applied && !owned_by_other {
            remove_path(&mut object, p);
        }
    }

    match entries.iter_mut().find(|e| e.same_owner(manager, "Apply", "")) {
        Some(e) => {
            if e.fields != applied_paths {
                e.fields = applied_paths;
                e.time = now.into();
            }
            e.api_version = api_version.into();
        }
        None => entries.push(Entry {
            manager: manager.into(),
            operation: "Apply".into(),
            subresource: String::new(),
            api_version: api_version.into(),
            time: now.into(),
            fields: applied_paths,
        }),
    }
    entries.retain(|e| !e.fields.is_empty());
    Ok(Applied { object, entries })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_v1_round_trip() {
        let obj = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "x", "labels": {"a": "1"}}, "data": {"k": "v"}, "list": [1]});
        let set = leaf_paths(&obj, Scope::Main { status_subresource: false });
        let enc = encode(&set);
        assert_eq!(enc, json!({"f:metadata": {"f:labels": {"f:a": {}}}, "f:data": {"f:k": {}}, "f:list": {}}));
        assert_eq!(decode(&enc), set);
    }

    #[test]
    fn apply_conflict_then_force() {
        let live = json!({"metadata": {"name": "x"}, "spec": {"replicas": 1}});
        let a = apply(&live, &json!({"spec": {"replicas": 1}}), "a", "v1", false, true, "t").unwrap();
        let mut live = a.object.clone();
        write_entries(&mut live, &a.entries);
        let err = apply(&live, &json!({"spec": {"replicas": 2}}), "b", "v1", false, true, "t").err().unwrap();
        assert_eq!(err, vec![("a".to_string(), ".spec.replicas".to_string())]);
        let ok = apply(&live, &json!({"spec": {"replicas": 2}}), "b", "v1", true, true, "t").unwrap();
        assert_eq!(ok.object["spec"]["replicas"], 2);
        assert_eq!(ok.entries.len(), 1);
        assert_eq!(ok.entries[0].manager, "b");
    }
}
