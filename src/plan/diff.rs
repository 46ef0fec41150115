//! The diff: one tenant's desired [`ResourceGraph`] against its recorded [`TenantState`].
//!
//! Rules, in the order they apply:
//!
//! - **Order.** Desired resources come in [`ResourceGraph::apply_order`] (phase, then topological
//!   inside the phase). Every desired resource gets a [`ResourceChange`], no-ops included. A
//!   resource recorded in state but no longer desired becomes a `Delete` placed in its *recorded*
//!   phase, after the other changes of that phase, by address.
//! - **References.** `Value::Ref { resource, output }` is resolved from the recorded `outputs` of
//!   `resource` when those outputs will still hold after apply, which is when `resource` is
//!   unchanged or updated in place. The outputs of a resource that is created or replaced are
//!   unknown until apply, and so is every value that refers to them: such a `Ref` stays in
//!   `after` and renders as `(known after apply)`. A reference to a resource that is being
//!   deleted, that appears later in apply order (a cycle, which validation reports) or whose
//!   recorded outputs lack the output, is unknown too.
//! - **Computed values.** `Value::Computed` against a recorded value is no change; `after` carries
//!   the recorded value.
//! - **Secrets.** A secret generated at apply (`fingerprint: None`) against a recorded secret is no
//!   change; `after` keeps the recorded secret. A secret with a fingerprint is unchanged when the
//!   recorded fingerprint is the same, and changed otherwise.
//! - **Structure.** Maps are compared key by key, lists element by element when their lengths
//!   match; a list whose length changed is one change as a whole. Anything else is compared as a
//!   value. Each difference is an [`AttrChange`] with a path like `metadata.labels["matih.ai/tier"]`.
//! - **Replacement.** A change at or under one of the resource's `force_new` paths (dotted, e.g.
//!   `metadata.name`; a list index is written as its number), or a change of an ancestor that
//!   alters the value at such a path, forces replacement: the action is `Replace` and the change
//!   has `forces_replacement: true`. A replaced resource is created anew, so its computed values
//!   and generated secrets are not carried over from state: they show as changes to
//!   `(known after apply)` and `(sensitive value)`.
//!
//! After the diff, for updates and replaces, a subtree of `after` is equal to the same subtree of
//! `before` exactly when the diff found no change there; the renderers rely on this.
//!
//! **Invariant:** pure: reads the graph and the state it is given, performs no I/O and knows no
//! provider. It does not refresh: what state recorded is taken as what exists.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use crate::addr::ResourceAddr;
use crate::graph::{Resource, ResourceGraph};
use crate::state::{ResourceState, TenantState};
use crate::value::{Secret, Value};

use super::path::{format_path, Seg};
use super::{Action, AttrChange, PriorState, ResourceChange, TenantPlan};

/// Recorded outputs of the resources whose outputs will still hold after apply.
type KnownOutputs<'a> = HashMap<&'a ResourceAddr, &'a BTreeMap<String, Value>>;

/// Diffs one tenant's desired graph against its recorded state (`None`: nothing recorded yet).
/// `source` is the spec file the tenant came from, for the plan's heading.
pub fn diff(graph: &ResourceGraph, prior: Option<&TenantState>, source: Option<PathBuf>) -> TenantPlan {
    let empty = BTreeMap::new();
    let recorded = prior.map_or(&empty, |s| &s.resources);
    let order = graph.apply_order();

    let mut known: KnownOutputs<'_> = HashMap::with_capacity(order.len());
    let mut desired = Vec::with_capacity(order.len());
    for res in order {
        let change = match recorded.get(&res.addr) {
            None => create(res, &known),
            Some(state) => {
                let change = compare(res, state, &known);
                if matches!(change.action, Action::NoOp | Action::Update) {
                    known.insert(&res.addr, &state.outputs);
                }
                change
            }
        };
        desired.push(change);
    }

    // `recorded` is sorted by address; a stable sort by phase keeps that order inside a phase.
    let mut deletes: Vec<ResourceChange> = recorded
        .iter()
        .filter(|(addr, _)| graph.get(addr).is_none())
        .map(|(addr, state)| ResourceChange {
            address: addr.clone(),
            phase: state.phase,
            action: Action::Delete,
            before: Some(state.attrs.clone()),
            after: None,
            changes: Vec::new(),
            depends_on: state.depends_on.clone(),
        })
        .collect();
    deletes.sort_by_key(|c| c.phase);

    // Apply order groups desired changes by phase, so each phase's deletes go right after them.
    let mut resource_changes = Vec::with_capacity(desired.len() + deletes.len());
    let mut deletes = deletes.into_iter().peekable();
    for change in desired {
        while let Some(delete) = deletes.next_if(|d| d.phase < change.phase) {
            resource_changes.push(delete);
        }
        resource_changes.push(change);
    }
    resource_changes.extend(deletes);

    TenantPlan {
        slug: graph.tenant.slug.clone(),
        tenant_id: graph.tenant.id.clone(),
        tier: graph.tenant.tier.clone(),
        source,
        prior_state: prior.map(|s| PriorState { lineage: s.lineage.clone(), serial: s.serial }),
        resource_changes,
    }
}

fn create(res: &Resource, known: &KnownOutputs<'_>) -> ResourceChange {
    let after = res.attrs.iter().map(|(k, v)| (k.clone(), resolve(v, known))).collect();
    ResourceChange {
        address: res.addr.clone(),
        phase: res.phase,
        action: Action::Create,
        before: None,
        after: Some(after),
        changes: Vec::new(),
        depends_on: res.depends_on.clone(),
    }
}

fn compare(res: &Resource, state: &ResourceState, known: &KnownOutputs<'_>) -> ResourceChange {
    // Most resources of most plans are unchanged: find that out without allocating, then copy
    // the recorded attributes in bulk (for a no-op `after` equals `before`).
    if same_map(&res.attrs, &state.attrs, known) {
        debug_assert!(
            Walker::new(known, &[], false).walk_map_and_changes(&res.attrs, &state.attrs).is_empty(),
            "the fast path and the walk disagree on {}",
            res.addr
        );
        return ResourceChange {
            address: res.addr.clone(),
            phase: res.phase,
            action: Action::NoOp,
            before: Some(state.attrs.clone()),
            after: Some(state.attrs.clone()),
            changes: Vec::new(),
            depends_on: res.depends_on.clone(),
        };
    }
    let force_new: Vec<Vec<&str>> = res.force_new.iter().map(|p| p.split('.').collect()).collect();
    let mut walker = Walker::new(known, &force_new, false);
    let mut after = walker.walk_map(&res.attrs, &state.attrs);
    let action = if walker.forces {
        // The resource is created anew: walk again without carrying computed values and
        // generated secrets over from state.
        walker = Walker::new(known, &force_new, true);
        after = walker.walk_map(&res.attrs, &state.attrs);
        Action::Replace
    } else if walker.changes.is_empty() {
        Action::NoOp
    } else {
        Action::Update
    };
    ResourceChange {
        address: res.addr.clone(),
        phase: res.phase,
        action,
        before: Some(state.attrs.clone()),
        after: Some(after),
        changes: walker.changes,
        depends_on: res.depends_on.clone(),
    }
}

/// Whether the walk would find no change between `desired` and `prior`, with the same rules,
/// without building anything.
fn same_map(desired: &BTreeMap<String, Value>, prior: &BTreeMap<String, Value>, known: &KnownOutputs<'_>) -> bool {
    desired.len() == prior.len()
        && desired.iter().zip(prior).all(|((dk, dv), (pk, pv))| dk == pk && same(dv, pv, known))
}

fn same(desired: &Value, prior: &Value, known: &KnownOutputs<'_>) -> bool {
    match (desired, prior) {
        (Value::Computed { .. }, _) => true,
        (Value::Secret(Secret { fingerprint: None, .. }), Value::Secret(_)) => true,
        (Value::Secret(Secret { fingerprint: Some(want), .. }), Value::Secret(have)) => {
            have.fingerprint.as_ref() == Some(want)
        }
        (Value::Map(d), Value::Map(p)) => same_map(d, p, known),
        (Value::List(d), Value::List(p)) => d.len() == p.len() && d.iter().zip(p).all(|(d, p)| same(d, p, known)),
        (Value::Ref { resource, output }, _) => {
            known.get(resource).and_then(|outputs| outputs.get(output)).is_some_and(|v| v == prior)
        }
        // Containers holding references need resolving before they can be compared as values;
        // the walk does that (only a map against a non-map, or lists of other lengths, get here).
        _ => desired == prior,
    }
}

/// A desired value with references resolved where their outputs are known.
fn resolve(v: &Value, known: &KnownOutputs<'_>) -> Value {
    match v {
        Value::Ref { resource, output } => match known.get(resource).and_then(|outputs| outputs.get(output)) {
            Some(value) => value.clone(),
            None => v.clone(),
        },
        Value::List(items) => Value::List(items.iter().map(|item| resolve(item, known)).collect()),
        Value::Map(m) => Value::Map(m.iter().map(|(k, item)| (k.clone(), resolve(item, known))).collect()),
        _ => v.clone(),
    }
}

/// Walks a desired tree and its recorded counterpart together, building `after` and collecting
/// the attribute changes.
struct Walker<'a, 'k> {
    known: &'k KnownOutputs<'k>,
    force_new: &'k [Vec<&'k str>],
    /// The resource will be created anew: computed values and generated secrets are not kept.
    fresh: bool,
    path: Vec<Seg<'a>>,
    changes: Vec<AttrChange>,
    forces: bool,
}

impl<'a, 'k> Walker<'a, 'k> {
    fn new(known: &'k KnownOutputs<'k>, force_new: &'k [Vec<&'k str>], fresh: bool) -> Self {
        Walker { known, force_new, fresh, path: Vec::new(), changes: Vec::new(), forces: false }
    }

    fn walk_map(
        &mut self,
        desired: &'a BTreeMap<String, Value>,
        prior: &'a BTreeMap<String, Value>,
    ) -> BTreeMap<String, Value> {
        let mut after = BTreeMap::new();
        let mut d = desired.iter().peekable();
        let mut p = prior.iter().peekable();
        loop {
            // Merge the two sorted key sequences.
            let (key, dv, pv) = match (d.peek(), p.peek()) {
                (None, None) => break,
                (Some((dk, _)), Some((pk, _))) if dk == pk => {
                    let (k, dv) = d.next().expect("peeked");
                    (k, Some(dv), Some(p.next().expect("peeked").1))
                }
                (Some((dk, _)), Some((pk, _))) if dk > pk => {
                    let (k, pv) = p.next().expect("peeked");
                    (k, None, Some(pv))
                }
                (Some(_), _) => {
                    let (k, dv) = d.next().expect("peeked");
                    (k, Some(dv), None)
                }
                (None, Some(_)) => {
                    let (k, pv) = p.next().expect("peeked");
                    (k, None, Some(pv))
                }
            };
            self.path.push(Seg::Key(key));
            match (dv, pv) {
                (Some(dv), Some(pv)) => {
                    after.insert(key.clone(), self.walk(dv, pv));
                }
                (Some(dv), None) => {
                    let value = resolve(dv, self.known);
                    self.change(None, Some(&value));
                    after.insert(key.clone(), value);
                }
                (None, Some(pv)) => self.change(Some(pv), None),
                (None, None) => unreachable!("one side always has the key"),
            }
            self.path.pop();
        }
        after
    }

    /// The changes alone (for the fast path's debug check).
    fn walk_map_and_changes(
        mut self,
        desired: &'a BTreeMap<String, Value>,
        prior: &'a BTreeMap<String, Value>,
    ) -> Vec<AttrChange> {
        self.walk_map(desired, prior);
        self.changes
    }

    fn walk(&mut self, desired: &'a Value, prior: &'a Value) -> Value {
        match (desired, prior) {
            (Value::Computed { .. }, _) if !self.fresh => return prior.clone(),
            (Value::Secret(Secret { fingerprint: None, .. }), Value::Secret(_)) if !self.fresh => {
                return prior.clone();
            }
            (Value::Secret(Secret { fingerprint: Some(want), .. }), Value::Secret(have))
                if have.fingerprint.as_ref() == Some(want) =>
            {
                return prior.clone();
            }
            (Value::Map(d), Value::Map(p)) => return Value::Map(self.walk_map(d, p)),
            (Value::List(d), Value::List(p)) if d.len() == p.len() => {
                let mut items = Vec::with_capacity(d.len());
                for (i, (dv, pv)) in d.iter().zip(p).enumerate() {
                    self.path.push(Seg::Index(i));
                    items.push(self.walk(dv, pv));
                    self.path.pop();
                }
                return Value::List(items);
            }
            _ => {}
        }
        let after = resolve(desired, self.known);
        if after != *prior {
            self.change(Some(prior), Some(&after));
        }
        after
    }

    fn change(&mut self, before: Option<&Value>, after: Option<&Value>) {
        let forces = self.force_new.iter().any(|f| forces_replacement(f, &self.path, before, after));
        self.forces |= forces;
        self.changes.push(AttrChange {
            path: format_path(&self.path),
            before: before.cloned(),
            after: after.cloned(),
            forces_replacement: forces,
        });
    }
}

/// Whether a change at `path` (from `before` to `after`) touches the force-new path `parts`:
/// the change is at or under it, or it is above it and the value at it differs.
fn forces_replacement(parts: &[&str], path: &[Seg<'_>], before: Option<&Value>, after: Option<&Value>) -> bool {
    let common = parts.len().min(path.len());
    let prefix_matches = parts[..common].iter().zip(&path[..common]).all(|(part, seg)| match *seg {
        Seg::Key(k) => k == *part,
        Seg::Index(n) => part.parse::<usize>() == Ok(n),
    });
    if !prefix_matches {
        return false;
    }
    if parts.len() <= path.len() {
        return true;
    }
    let rest = &parts[path.len()..];
    lookup(before, rest) != lookup(after, rest)
}

fn lookup<'v>(value: Option<&'v Value>, parts: &[&str]) -> Option<&'v Value> {
    parts.iter().try_fold(value?, |v, part| match v {
        Value::Map(m) => m.get(*part),
        Value::List(items) => items.get(part.parse::<usize>().ok()?),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::graph::TenantMeta;
    use crate::phase::Phase;
    use crate::state::TenantStatus;
    use crate::value::fingerprint;

    fn addr(s: &str) -> ResourceAddr {
        s.parse().unwrap()
    }

    fn attrs(v: Value) -> BTreeMap<String, Value> {
        match v {
            Value::Map(m) => m,
            other => panic!("not a map: {other:?}"),
        }
    }

    fn resource(a: &str, phase: u8, v: Value) -> Resource {
        Resource {
            addr: addr(a),
            phase: Phase::from_number(phase).unwrap(),
            attrs: attrs(v),
            depends_on: BTreeSet::new(),
            force_new: BTreeSet::new(),
            origin: None,
        }
    }

    fn graph(resources: Vec<Resource>) -> ResourceGraph {
        let meta = TenantMeta {
            slug: "acme".into(),
            id: "550e8400-e29b-41d4-a716-446655440000".into(),
            tier: "professional".into(),
            region: "eastus".into(),
            source: None,
        };
        let mut g = ResourceGraph::new(meta);
        for r in resources {
            assert!(g.add(r));
        }
        assert!(g.connect().is_empty());
        g
    }

    fn recorded(phase: u8, v: Value) -> ResourceState {
        ResourceState {
            phase: Phase::from_number(phase).unwrap(),
            attrs: attrs(v),
            outputs: BTreeMap::new(),
            depends_on: BTreeSet::new(),
        }
    }

    fn state(resources: Vec<(&str, ResourceState)>) -> TenantState {
        TenantState {
            phases: Default::default(),
            slug: "acme".into(),
            tenant_id: "550e8400-e29b-41d4-a716-446655440000".into(),
            lineage: "lin".into(),
            serial: 7,
            status: TenantStatus::Active,
            current_phase: None,
            provisioning_error: None,
            provisioning_completed_at: None,
            updated_at: "2024-01-01T00:00:00Z".into(),
            resources: resources.into_iter().map(|(a, s)| (addr(a), s)).collect(),
            ..Default::default()
        }
    }

    fn change<'p>(plan: &'p TenantPlan, a: &str) -> &'p ResourceChange {
        plan.resource_changes.iter().find(|c| c.address == addr(a)).unwrap_or_else(|| panic!("no change for {a}"))
    }

    fn secret(fp: Option<&str>) -> Value {
        Value::Secret(Secret { source: "generated".into(), fingerprint: fp.map(fingerprint) })
    }

    fn computed() -> Value {
        Value::Computed { note: "creation time".into() }
    }

    fn reference(a: &str, output: &str) -> Value {
        Value::Ref { resource: addr(a), output: output.into() }
    }

    #[test]
    fn no_state_creates_everything_in_apply_order() {
        let g = graph(vec![
            resource("k.b", 2, Value::map([("x", Value::Int(1))])),
            resource("k.a", 1, Value::map([("x", Value::Int(1))])),
        ]);
        let plan = diff(&g, None, Some("tenants/acme.hcl".into()));
        assert_eq!(plan.slug, "acme");
        assert_eq!(plan.tier, "professional");
        assert_eq!(plan.prior_state, None);
        assert_eq!(plan.source, Some(PathBuf::from("tenants/acme.hcl")));
        let got: Vec<(String, Action)> =
            plan.resource_changes.iter().map(|c| (c.address.to_string(), c.action)).collect();
        assert_eq!(got, [("k.a".to_string(), Action::Create), ("k.b".to_string(), Action::Create)]);
        assert!(change(&plan, "k.a").before.is_none());
        assert!(change(&plan, "k.a").changes.is_empty());
    }

    #[test]
    fn unchanged_resource_is_a_no_op_with_both_sides() {
        let v = Value::map([("metadata", Value::map([("name", Value::str("matih-acme"))]))]);
        let g = graph(vec![resource("kubernetes_namespace.tenant", 1, v.clone())]);
        let s = state(vec![("kubernetes_namespace.tenant", recorded(1, v.clone()))]);
        let plan = diff(&g, Some(&s), None);
        let c = change(&plan, "kubernetes_namespace.tenant");
        assert_eq!(c.action, Action::NoOp);
        assert_eq!(c.before.as_ref(), Some(&attrs(v.clone())));
        assert_eq!(c.after.as_ref(), Some(&attrs(v)));
        assert_eq!(plan.prior_state, Some(PriorState { lineage: "lin".into(), serial: 7 }));
    }

    #[test]
    fn nested_changes_have_terraform_style_paths() {
        let old = Value::map([
            ("metadata", Value::map([("labels", Value::map([("matih.ai/tier", Value::str("free"))]))])),
            ("spec", Value::map([("containers", Value::list([Value::map([("image", Value::str("q:1"))])]))])),
            ("gone", Value::Bool(true)),
        ]);
        let new = Value::map([
            ("metadata", Value::map([("labels", Value::map([("matih.ai/tier", Value::str("professional"))]))])),
            ("spec", Value::map([("containers", Value::list([Value::map([("image", Value::str("q:2"))])]))])),
            ("added", Value::Int(1)),
        ]);
        let g = graph(vec![resource("kubernetes_deployment.query_engine", 3, new)]);
        let s = state(vec![("kubernetes_deployment.query_engine", recorded(3, old))]);
        let plan = diff(&g, Some(&s), None);
        let c = change(&plan, "kubernetes_deployment.query_engine");
        assert_eq!(c.action, Action::Update);
        let paths: Vec<&str> = c.changes.iter().map(|a| a.path.as_str()).collect();
        assert_eq!(paths, ["added", "gone", r#"metadata.labels["matih.ai/tier"]"#, "spec.containers[0].image"]);
        assert_eq!(c.changes[0].before, None);
        assert_eq!(c.changes[0].after, Some(Value::Int(1)));
        assert_eq!(c.changes[1].before, Some(Value::Bool(true)));
        assert_eq!(c.changes[1].after, None);
        assert_eq!(c.changes[3].before, Some(Value::str("q:1")));
        assert_eq!(c.changes[3].after, Some(Value::str("q:2")));
        assert!(c.changes.iter().all(|a| !a.forces_replacement));
    }

    #[test]
    fn list_of_another_length_is_one_change() {
        let g =
            graph(vec![resource("k.a", 1, Value::map([("args", Value::list([Value::str("a"), Value::str("b")]))]))]);
        let s = state(vec![("k.a", recorded(1, Value::map([("args", Value::list([Value::str("a")]))])))]);
        let plan = diff(&g, Some(&s), None);
        let c = change(&plan, "k.a");
        assert_eq!(c.changes.len(), 1);
        assert_eq!(c.changes[0].path, "args");
        assert_eq!(c.changes[0].after, Some(Value::list([Value::str("a"), Value::str("b")])));
    }

    #[test]
    fn change_under_force_new_path_replaces() {
        let mut r = resource(
            "kubernetes_namespace.tenant",
            1,
            Value::map([
                ("metadata", Value::map([("name", Value::str("matih-acme2")), ("uid", computed())])),
                ("x", Value::Int(1)),
            ]),
        );
        r.force_new.insert("metadata.name".into());
        let g = graph(vec![r]);
        let s = state(vec![(
            "kubernetes_namespace.tenant",
            recorded(
                1,
                Value::map([
                    ("metadata", Value::map([("name", Value::str("matih-acme")), ("uid", Value::str("u-1"))])),
                    ("x", Value::Int(1)),
                ]),
            ),
        )]);
        let plan = diff(&g, Some(&s), None);
        let c = change(&plan, "kubernetes_namespace.tenant");
        assert_eq!(c.action, Action::Replace);
        let name = c.changes.iter().find(|a| a.path == "metadata.name").unwrap();
        assert!(name.forces_replacement);
        // The new namespace gets a new uid: the computed value is unknown again, not kept.
        let uid = c.changes.iter().find(|a| a.path == "metadata.uid").unwrap();
        assert!(!uid.forces_replacement);
        assert_eq!(uid.after, Some(computed()));
        assert_eq!(c.after.as_ref().unwrap()["metadata"].get_path("uid"), Some(&computed()));
    }

    #[test]
    fn force_new_matches_by_prefix_and_through_ancestors() {
        // A change below the force-new path.
        let mut r =
            resource("k.a", 1, Value::map([("spec", Value::map([("selector", Value::map([("app", "b".into())]))]))]));
        r.force_new.insert("spec.selector".into());
        let s = state(vec![(
            "k.a",
            recorded(1, Value::map([("spec", Value::map([("selector", Value::map([("app", "a".into())]))]))])),
        )]);
        let plan = diff(&graph(vec![r]), Some(&s), None);
        assert_eq!(change(&plan, "k.a").action, Action::Replace);
        assert_eq!(change(&plan, "k.a").changes[0].path, "spec.selector.app");

        // `spec.selectorx` is not under `spec.selector`.
        let mut r = resource("k.a", 1, Value::map([("spec", Value::map([("selectorx", Value::Int(2))]))]));
        r.force_new.insert("spec.selector".into());
        let s = state(vec![("k.a", recorded(1, Value::map([("spec", Value::map([("selectorx", Value::Int(1))]))])))]);
        assert_eq!(change(&diff(&graph(vec![r]), Some(&s), None), "k.a").action, Action::Update);

        // A list whose length changed replaces when the element at the force-new path differs...
        let list = |xs: &[i64]| {
            Value::map([("ports", Value::list(xs.iter().map(|&n| Value::map([("port", Value::Int(n))]))))])
        };
        let mut r = resource("k.a", 1, list(&[80, 443]));
        r.force_new.insert("ports.0.port".into());
        let s = state(vec![("k.a", recorded(1, list(&[8080])))]);
        let c = diff(&graph(vec![r.clone()]), Some(&s), None);
        assert_eq!(change(&c, "k.a").action, Action::Replace);
        assert!(change(&c, "k.a").changes[0].forces_replacement);
        // ...and updates in place when it does not.
        let s = state(vec![("k.a", recorded(1, list(&[80])))]);
        assert_eq!(change(&diff(&graph(vec![r]), Some(&s), None), "k.a").action, Action::Update);
    }

    #[test]
    fn computed_keeps_the_recorded_value() {
        let g = graph(vec![resource("k.a", 1, Value::map([("created", computed()), ("n", Value::Int(1))]))]);
        let s = state(vec![(
            "k.a",
            recorded(1, Value::map([("created", Value::str("2024-01-01")), ("n", Value::Int(1))])),
        )]);
        let c = diff(&g, Some(&s), None);
        let c = change(&c, "k.a");
        assert_eq!(c.action, Action::NoOp);
        assert_eq!(c.after.as_ref().unwrap()["created"], Value::str("2024-01-01"));
    }

    #[test]
    fn computed_without_recorded_value_is_a_change() {
        let g = graph(vec![resource("k.a", 1, Value::map([("created", computed())]))]);
        let s = state(vec![("k.a", recorded(1, Value::Map(BTreeMap::new())))]);
        let c = diff(&g, Some(&s), None);
        let c = change(&c, "k.a");
        assert_eq!(c.action, Action::Update);
        assert_eq!(c.changes[0].after, Some(computed()));
    }

    #[test]
    fn secrets_compare_by_fingerprint() {
        let run = |desired: Value, recorded_value: Value| {
            let g = graph(vec![resource("k.a", 2, Value::map([("password", desired)]))]);
            let s = state(vec![("k.a", recorded(2, Value::map([("password", recorded_value)])))]);
            let plan = diff(&g, Some(&s), None);
            change(&plan, "k.a").clone()
        };
        // Generated at apply: keep what state has.
        let c = run(secret(None), secret(Some("hunter2")));
        assert_eq!(c.action, Action::NoOp);
        assert_eq!(c.after.unwrap()["password"], secret(Some("hunter2")));
        // Same fingerprint: nothing to do.
        assert_eq!(run(secret(Some("hunter2")), secret(Some("hunter2"))).action, Action::NoOp);
        // A different value from the environment: a change.
        let c = run(secret(Some("new")), secret(Some("hunter2")));
        assert_eq!(c.action, Action::Update);
        assert_eq!(c.changes[0].path, "password");
        assert_eq!(c.changes[0].after, Some(secret(Some("new"))));
        // A plain value replaced by a secret is a change too.
        assert_eq!(run(secret(None), Value::str("plain")).action, Action::Update);
    }

    #[test]
    fn references_resolve_from_unchanged_resources_only() {
        let svc = Value::map([("type", Value::str("LoadBalancer"))]);
        let mut svc_state = recorded(6, svc.clone());
        svc_state.outputs.insert("ip".into(), Value::str("10.0.0.7"));
        let record = Value::map([("ip", reference("kubernetes_service.ingress", "ip"))]);
        let g = graph(vec![
            resource("kubernetes_service.ingress", 6, svc.clone()),
            resource("dns_a_record.api", 7, record.clone()),
        ]);
        let s = state(vec![
            ("kubernetes_service.ingress", svc_state.clone()),
            ("dns_a_record.api", recorded(7, Value::map([("ip", Value::str("10.0.0.7"))]))),
        ]);
        let plan = diff(&g, Some(&s), None);
        let c = change(&plan, "dns_a_record.api");
        assert_eq!(c.action, Action::NoOp);
        assert_eq!(c.after.as_ref().unwrap()["ip"], Value::str("10.0.0.7"));

        // The Service is replaced: its IP, and the record's, are unknown until apply.
        let mut replaced = resource("kubernetes_service.ingress", 6, Value::map([("type", Value::str("NodePort"))]));
        replaced.force_new.insert("type".into());
        let g = graph(vec![replaced, resource("dns_a_record.api", 7, record.clone())]);
        let plan = diff(&g, Some(&s), None);
        assert_eq!(change(&plan, "kubernetes_service.ingress").action, Action::Replace);
        let c = change(&plan, "dns_a_record.api");
        assert_eq!(c.action, Action::Update);
        assert_eq!(c.changes[0].before, Some(Value::str("10.0.0.7")));
        assert_eq!(c.changes[0].after, Some(reference("kubernetes_service.ingress", "ip")));

        // Nothing recorded: both are created and the reference stays unknown.
        let g = graph(vec![resource("kubernetes_service.ingress", 6, svc), resource("dns_a_record.api", 7, record)]);
        let plan = diff(&g, None, None);
        let c = change(&plan, "dns_a_record.api");
        assert_eq!(c.after.as_ref().unwrap()["ip"], reference("kubernetes_service.ingress", "ip"));
    }

    #[test]
    fn deletes_go_in_their_recorded_phase_after_the_other_changes() {
        let one = Value::map([("n", Value::Int(1))]);
        let g = graph(vec![
            resource("k.p1", 1, one.clone()),
            resource("k.p2", 2, one.clone()),
            resource("k.p5", 5, one.clone()),
        ]);
        let s = state(vec![
            ("k.p1", recorded(1, one.clone())),
            ("k.z_old2", recorded(2, one.clone())),
            ("k.a_old2", recorded(2, one.clone())),
            ("k.old3", recorded(3, one.clone())),
            ("k.old9", recorded(9, one.clone())),
        ]);
        let plan = diff(&g, Some(&s), None);
        let got: Vec<(String, Action)> =
            plan.resource_changes.iter().map(|c| (c.address.to_string(), c.action)).collect();
        let want = [
            ("k.p1", Action::NoOp),
            ("k.p2", Action::Create),
            ("k.a_old2", Action::Delete),
            ("k.z_old2", Action::Delete),
            ("k.old3", Action::Delete),
            ("k.p5", Action::Create),
            ("k.old9", Action::Delete),
        ];
        assert_eq!(got, want.map(|(a, x)| (a.to_string(), x)));
        let d = change(&plan, "k.old9");
        assert_eq!(d.phase, Phase::DeployMonitoring);
        assert!(d.after.is_none());
        assert_eq!(d.before.as_ref(), Some(&attrs(one)));
    }
}
