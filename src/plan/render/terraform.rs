//! The plan in the shape of Terraform's plan JSON (`terraform show -json`), for tools and policies
//! written for Terraform plans: `matih plan --format json --json-shape terraform`, and the `input`
//! of `matih plan --policy DIR --json-shape terraform`.
//!
//! # Format
//!
//! A fleet is a root module calling one module instance per tenant, as Terraform writes a
//! `module "tenant" { for_each = … }`: tenant `acme`'s resources are `module.tenant["acme"].KIND.NAME`.
//!
//! ```json
//! {
//!   "format_version": "1.2",
//!   "applyable": true,
//!   "complete": true,
//!   "errored": false,
//!   "planned_values": {
//!     "root_module": {
//!       "child_modules": [
//!         {
//!           "address": "module.tenant[\"acme\"]",
//!           "resources": [
//!             { "address": "module.tenant[\"acme\"].kubernetes_namespace.tenant", "mode": "managed",
//!               "type": "kubernetes_namespace", "name": "tenant", "provider_name": "matih.ai/matih/kubernetes",
//!               "schema_version": 0, "values": { … }, "sensitive_values": { … } }
//!           ]
//!         }
//!       ]
//!     }
//!   },
//!   "resource_changes": [
//!     {
//!       "address": "module.tenant[\"acme\"].kubernetes_namespace.tenant",
//!       "module_address": "module.tenant[\"acme\"]",
//!       "mode": "managed",
//!       "type": "kubernetes_namespace",
//!       "name": "tenant",
//!       "provider_name": "matih.ai/matih/kubernetes",
//!       "change": {
//!         "actions": ["create"],
//!         "before": null,
//!         "after": { "metadata": { "name": "matih-acme" } },
//!         "after_unknown": {},
//!         "before_sensitive": false,
//!         "after_sensitive": {}
//!       }
//!     }
//!   ]
//! }
//! ```
//!
//! As Terraform writes them:
//! - `change.actions`: `["no-op"]`, `["create"]`, `["update"]`, `["delete"]`, and `["delete",
//!   "create"]` for a replace (matih deletes first). An adoption is Terraform's import:
//!   `["update"]` (or `["no-op"]` when adopting changes nothing) with `"importing": { "id": ADDRESS }`.
//! - `after` leaves out the values known only after apply (`null` in their place in a list);
//!   `after_unknown` has the shape of `after` with `true` where a value is unknown, known leaves
//!   left out of objects (and `false` in lists); `{}` when everything is known.
//! - `before_sensitive`, `after_sensitive`: the same shape with `true` where a secret is; `false`
//!   for an absent side. Unlike Terraform's, a secret's value is never written: `before` and
//!   `after` hold `"(sensitive value)"` there, as matih's own JSON does.
//! - A replace has `replace_paths` (the attributes that force it, as lists of keys and indexes)
//!   and `action_reason`: `replace_because_cannot_update`, or `replace_by_request` when nothing
//!   forces it (`--replace`, a rotation).
//! - `complete` is `false` for a partial plan (`--target`, `--exclude`); `applyable` says whether
//!   anything changes.
//! - Every desired resource is listed, in matih's apply order per tenant, tenants in plan order.
//!
//! Not written: `terraform_version` (this is no Terraform), `configuration`, `prior_state`,
//! `variables`, `output_changes`, `relevant_attributes`; matih's own JSON has what they would say.
//!
//! **Invariant:** a view of the plan; adds nothing a plan does not hold, removes only secrets.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value as J};

use super::json::value as plain;
use super::stream::{Fleet, Spill};
use super::SENSITIVE;
use crate::kind::Family;
use crate::plan::{path, Action, Plan, ResourceChange, TenantPlan};
use crate::value::{Secret, Value};

/// The version of Terraform's plan JSON format this shape follows.
pub const TERRAFORM_FORMAT_VERSION: &str = "1.2";

/// `module.tenant["acme"]`: the module instance a tenant's resources are in.
pub fn module_address(slug: &str) -> String {
    let mut quoted = String::new();
    path::push_quoted(&mut quoted, slug);
    format!("module.tenant[{quoted}]")
}

/// The Terraform-shaped document of `tenants`, whole (a policy's `input`).
pub fn terraform_document<'t>(tenants: impl IntoIterator<Item = &'t TenantPlan>) -> J {
    let mut fleet = Fleet::default();
    let (mut changes, mut modules) = (Vec::new(), Vec::new());
    for t in tenants {
        fleet.push(t);
        let (c, m) = tenant_parts(t);
        changes.extend(c);
        modules.push(m);
    }
    let mut doc = header(&fleet);
    doc.insert("planned_values".into(), json!({ "root_module": { "child_modules": modules } }));
    doc.insert("resource_changes".into(), J::Array(changes));
    J::Object(doc)
}

/// The whole plan as [`terraform_document`], pretty-printed with a trailing newline.
pub fn render_terraform(plan: &Plan) -> String {
    let mut r = TerraformStream::new(Spill::memory(), Spill::memory());
    for t in &plan.tenants {
        r.push(t).expect("writing to memory cannot fail");
    }
    let mut out = Vec::new();
    r.finish(&mut out).expect("writing to memory cannot fail");
    String::from_utf8(out).expect("the renderer writes UTF-8")
}

/// [`terraform_document`] one tenant at a time, in bounded memory: the tenants' resource changes
/// and planned values wait in two spills until the end, pretty-printed as they stand in the
/// whole document.
pub struct TerraformStream {
    fleet: Fleet,
    /// Whether a resource change was written (a tenant may have none: a partial plan's).
    any_change: bool,
    changes: Spill,
    modules: Spill,
}

impl TerraformStream {
    pub fn new(changes: Spill, modules: Spill) -> TerraformStream {
        TerraformStream { fleet: Fleet::default(), any_change: false, changes, modules }
    }

    pub fn push(&mut self, t: &TenantPlan) -> std::io::Result<()> {
        let first_tenant = self.fleet.tenants == 0;
        self.fleet.push(t);
        let (changes, module) = tenant_parts(t);
        for c in &changes {
            self.changes.write(if self.any_change { ",\n    " } else { "\n    " })?;
            self.changes.write(&indented(c, "\n    "))?;
            self.any_change = true;
        }
        self.modules.write(if first_tenant { "\n        " } else { ",\n        " })?;
        self.modules.write(&indented(&module, "\n        "))
    }

    pub fn finish(self, out: &mut dyn std::io::Write) -> std::io::Result<()> {
        let mut doc = header(&self.fleet);
        doc.insert("planned_values".into(), json!({ "root_module": { "child_modules": [] } }));
        doc.insert("resource_changes".into(), J::Array(Vec::new()));
        let skeleton = serde_json::to_string_pretty(&J::Object(doc)).expect("a JSON tree always serializes");
        // The only raw newlines followed by these keys at these depths: strings escape theirs.
        let (modules_key, changes_key) = ("\n      \"child_modules\": []", "\n  \"resource_changes\": []");
        let m = skeleton.find(modules_key).expect("the skeleton has child_modules") + modules_key.len() - 1;
        let c = skeleton.find(changes_key).expect("the skeleton has resource_changes") + changes_key.len() - 1;
        let bytes = skeleton.as_bytes();
        out.write_all(&bytes[..m])?;
        let any_tenant = self.fleet.tenants > 0;
        self.modules.copy_to(out)?;
        if any_tenant {
            out.write_all(b"\n      ")?;
        }
        out.write_all(&bytes[m..c])?;
        self.changes.copy_to(out)?;
        if self.any_change {
            out.write_all(b"\n  ")?;
        }
        out.write_all(&bytes[c..])?;
        out.write_all(b"\n")
    }
}

/// `value` pretty-printed as an element of an array whose elements start at `indent`.
fn indented(value: &J, indent: &str) -> String {
    serde_json::to_string_pretty(value).expect("a JSON tree always serializes").replace('\n', indent)
}

fn header(fleet: &Fleet) -> Map<String, J> {
    let mut doc = Map::new();
    doc.insert("format_version".into(), json!(TERRAFORM_FORMAT_VERSION));
    doc.insert("applyable".into(), json!(!fleet.summary.is_empty()));
    doc.insert("complete".into(), json!(fleet.partial().is_none()));
    doc.insert("errored".into(), json!(false));
    doc
}

/// A tenant's resource changes and its module of `planned_values`.
fn tenant_parts(t: &TenantPlan) -> (Vec<J>, J) {
    let module = module_address(&t.slug);
    let changes = t
        .resource_changes
        .iter()
        .map(|c| {
            let mut j = resource_change(&module, c);
            // A record the catalog's `moved` blocks rename: Terraform's `previous_address`.
            if let Some(m) = t.moved.iter().find(|m| m.to == c.address) {
                j["previous_address"] = json!(format!("{module}.{}", m.from));
            }
            j
        })
        .collect();
    let resources: Vec<J> =
        t.resource_changes.iter().filter_map(|c| c.after.as_ref().map(|after| planned(&module, c, after))).collect();
    (changes, json!({ "address": module, "resources": resources }))
}

/// What every resource entry starts with.
fn identity(module: &str, c: &ResourceChange) -> Map<String, J> {
    let mut m = Map::new();
    m.insert("address".into(), json!(format!("{module}.{}", c.address)));
    m.insert("mode".into(), json!("managed"));
    m.insert("type".into(), json!(c.address.kind));
    m.insert("name".into(), json!(c.address.name));
    m.insert("provider_name".into(), json!(provider_name(&c.address.kind)));
    m
}

/// `matih.ai/matih/kubernetes`: a provider source address (host/namespace/type) naming the
/// provider family that handles the kind.
fn provider_name(kind: &str) -> String {
    let family = match Family::of(kind) {
        Some(Family::Kubernetes) => "kubernetes",
        Some(Family::Postgresql) => "postgresql",
        Some(Family::Dns) => "dns",
        Some(Family::Helm) => "helm",
        None => "matih",
    };
    format!("matih.ai/matih/{family}")
}

fn planned(module: &str, c: &ResourceChange, after: &BTreeMap<String, Value>) -> J {
    let mut m = identity(module, c);
    m.insert("schema_version".into(), json!(0));
    m.insert("values".into(), known_attrs(after));
    m.insert("sensitive_values".into(), attrs_as_bool(after, &is_secret));
    J::Object(m)
}

fn resource_change(module: &str, c: &ResourceChange) -> J {
    let mut m = identity(module, c);
    m.insert("module_address".into(), json!(module));
    let actions: &[&str] = match c.action {
        Action::NoOp => &["no-op"],
        Action::Create => &["create"],
        Action::Adopt if c.changes.is_empty() => &["no-op"],
        Action::Adopt | Action::Update => &["update"],
        Action::Replace => &["delete", "create"],
        Action::Delete => &["delete"],
    };
    let mut change = Map::new();
    change.insert("actions".into(), json!(actions));
    change.insert("before".into(), c.before.as_ref().map_or(J::Null, all_attrs));
    change.insert("after".into(), c.after.as_ref().map_or(J::Null, known_attrs));
    change
        .insert("after_unknown".into(), c.after.as_ref().map_or_else(|| json!({}), |a| attrs_as_bool(a, &is_unknown)));
    change
        .insert("before_sensitive".into(), c.before.as_ref().map_or(J::Bool(false), |b| attrs_as_bool(b, &is_secret)));
    change.insert("after_sensitive".into(), c.after.as_ref().map_or(J::Bool(false), |a| attrs_as_bool(a, &is_secret)));
    if c.action == Action::Replace {
        let forced: Vec<J> = c.changes.iter().filter(|a| a.forces_replacement).map(|a| path_steps(&a.path)).collect();
        let reason = if forced.is_empty() { "replace_by_request" } else { "replace_because_cannot_update" };
        change.insert("replace_paths".into(), J::Array(forced));
        m.insert("action_reason".into(), json!(reason));
    }
    if c.action == Action::Adopt {
        change.insert("importing".into(), json!({ "id": c.address.to_string() }));
    }
    m.insert("change".into(), J::Object(change));
    J::Object(m)
}

/// Known only after apply: a reference, a computed value, a secret generated at apply.
fn is_unknown(v: &Value) -> bool {
    path::is_unknown_leaf(v) || matches!(v, Value::Secret(Secret { fingerprint: None, .. }))
}

fn is_secret(v: &Value) -> bool {
    matches!(v, Value::Secret(_))
}

/// Every attribute, as matih's JSON writes it (markers for unknown and sensitive values).
fn all_attrs(attrs: &BTreeMap<String, Value>) -> J {
    J::Object(attrs.iter().map(|(k, v)| (k.clone(), plain(v))).collect())
}

/// The attributes without the values known only after apply (Terraform's `after`): left out of
/// objects, `null` in lists, where their position is what ties them to `after_unknown`.
fn known_attrs(attrs: &BTreeMap<String, Value>) -> J {
    J::Object(attrs.iter().filter(|(_, v)| !is_unknown(v)).map(|(k, v)| (k.clone(), known(v))).collect())
}

fn known(v: &Value) -> J {
    match v {
        _ if is_unknown(v) => J::Null,
        Value::Map(m) => {
            J::Object(m.iter().filter(|(_, v)| !is_unknown(v)).map(|(k, v)| (k.clone(), known(v))).collect())
        }
        Value::List(items) => J::Array(items.iter().map(known).collect()),
        Value::Secret(_) => J::String(SENSITIVE.to_string()),
        other => plain(other),
    }
}

/// Terraform's `unknownAsBool`/`SensitiveAsBool` over an attribute set: `true` where `pred`
/// holds, objects without their `false` members, lists element by element.
fn attrs_as_bool(attrs: &BTreeMap<String, Value>, pred: &dyn Fn(&Value) -> bool) -> J {
    J::Object(attrs.iter().map(|(k, v)| (k.clone(), as_bool(v, pred))).filter(|(_, b)| *b != J::Bool(false)).collect())
}

fn as_bool(v: &Value, pred: &dyn Fn(&Value) -> bool) -> J {
    if pred(v) {
        return J::Bool(true);
    }
    match v {
        Value::Map(m) => J::Object(
            m.iter().map(|(k, v)| (k.clone(), as_bool(v, pred))).filter(|(_, b)| *b != J::Bool(false)).collect(),
        ),
        Value::List(items) => J::Array(items.iter().map(|v| as_bool(v, pred)).collect()),
        _ => J::Bool(false),
    }
}

/// `metadata.labels["matih.ai/tier"]` as Terraform's path steps: `["metadata", "labels",
/// "matih.ai/tier"]`; list indexes are numbers.
fn path_steps(p: &str) -> J {
    let mut steps = Vec::new();
    let mut rest = p;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            rest = r;
        }
        if let Some(r) = rest.strip_prefix('[') {
            if let Some(quoted) = r.strip_prefix('"') {
                // A JSON string: find its closing quote, skipping escaped characters.
                let mut end = None;
                let mut escaped = false;
                for (i, ch) in quoted.char_indices() {
                    match ch {
                        _ if escaped => escaped = false,
                        '\\' => escaped = true,
                        '"' => {
                            end = Some(i);
                            break;
                        }
                        _ => {}
                    }
                }
                let Some(end) = end else { break };
                let key: String = serde_json::from_str(&r[..end + 2]).unwrap_or_else(|_| quoted[..end].to_string());
                steps.push(J::String(key));
                rest = quoted[end + 1..].strip_prefix(']').unwrap_or(&quoted[end + 1..]);
            } else {
                let close = r.find(']').unwrap_or(r.len());
                let index = &r[..close];
                steps.push(index.parse::<u64>().map_or_else(|_| J::String(index.to_string()), J::from));
                rest = r.get(close + 1..).unwrap_or("");
            }
        } else {
            let end = rest.find(['.', '[']).unwrap_or(rest.len());
            steps.push(J::String(rest[..end].to_string()));
            rest = &rest[end..];
        }
    }
    J::Array(steps)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stream_writes_the_document_as_the_pretty_printer_would() {
        use crate::phase::Phase;
        use crate::plan::TenantPlan;
        let attrs = BTreeMap::from([("metadata".to_string(), Value::map([("name", Value::str("x"))]))]);
        let change = |action, before: bool| ResourceChange {
            address: "kubernetes_namespace.tenant".parse().unwrap(),
            phase: Phase::CreateNamespace,
            action,
            before: before.then(|| attrs.clone()),
            after: (action != Action::Delete).then(|| attrs.clone()),
            changes: Vec::new(),
            depends_on: Default::default(),
            notes: Vec::new(),
            manifest_changes: Vec::new(),
        };
        let tenant = TenantPlan::with_changes;
        for tenants in [
            vec![],
            vec![tenant("a", vec![change(Action::Create, false)])],
            vec![tenant("a", vec![]), tenant("b", vec![change(Action::Delete, true), change(Action::NoOp, true)])],
        ] {
            let plan = Plan::new(tenants);
            let whole = serde_json::to_string_pretty(&terraform_document(&plan.tenants)).unwrap() + "\n";
            assert_eq!(render_terraform(&plan), whole);
        }
    }

    #[test]
    fn paths_become_terraform_steps() {
        assert_eq!(path_steps(r#"metadata.labels["matih.ai/tier"]"#), json!(["metadata", "labels", "matih.ai/tier"]));
        assert_eq!(path_steps("spec.containers[0].image"), json!(["spec", "containers", 0, "image"]));
        assert_eq!(path_steps(r#"data["a \"b\"]"].x"#), json!(["data", "a \"b\"]", "x"]));
        assert_eq!(path_steps("data.tenant-db"), json!(["data", "tenant-db"]));
    }

    #[test]
    fn unknown_and_sensitive_values_take_terraforms_shape() {
        let generated = Value::Secret(Secret { source: "generated".into(), fingerprint: None });
        let kept = Value::Secret(Secret { source: "generated".into(), fingerprint: Some("sha256:00".into()) });
        let after = BTreeMap::from([
            ("data".to_string(), Value::map([("password", generated), ("url", kept)])),
            ("ip".to_string(), Value::Computed { note: String::new() }),
            ("ports".to_string(), Value::list([Value::Int(80), Value::Computed { note: String::new() }])),
            ("meta".to_string(), Value::map([("name", Value::str("x"))])),
        ]);
        assert_eq!(
            known_attrs(&after),
            json!({ "data": { "url": SENSITIVE }, "ports": [80, null], "meta": { "name": "x" } })
        );
        assert_eq!(
            attrs_as_bool(&after, &is_unknown),
            json!({ "data": { "password": true }, "ip": true, "ports": [false, true], "meta": {} })
        );
        assert_eq!(
            attrs_as_bool(&after, &is_secret),
            json!({ "data": { "password": true, "url": true }, "ports": [false, false], "meta": {} })
        );
    }
}
