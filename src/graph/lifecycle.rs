//! `ignore_changes`: the attribute paths of a tenant's resources whose differences plan and drift
//! leave alone, from the catalog (`ignore_changes "KIND"` blocks, every tenant) and from the
//! tenant's spec (`lifecycle { ignore_changes = ["KIND.NAME:PATH"] }`), each with where it is
//! declared. A spec entry must name a resource the tenant has and a path its desired attributes
//! have (a typo would otherwise ignore nothing, silently); a catalog path is checked for syntax
//! only, when the catalog loads (a kind's resources differ between tiers).
//!
//! The catalog's `moved` blocks go to every graph (`ResourceGraph::moved`); a `from` the graph
//! still has is an error at the block (the catalog cannot both make a resource and move it away).
//!
//! **Invariant:** pure, like the rest of the graph.

use std::collections::BTreeMap;

use crate::addr::{AttrPath, PathPart};
use crate::catalog::Catalog;
use crate::diag::Diagnostic;
use crate::spec::TenantSpec;
use crate::value::Value;

use super::{IgnoreRule, MoveRule, ResourceGraph};

/// Fills `graph.moved` from the catalog's `moved` blocks.
pub(super) fn moves(graph: &mut ResourceGraph, catalog: &Catalog, diags: &mut Vec<Diagnostic>) {
    for m in &catalog.moved {
        if graph.get(&m.from).is_some() {
            diags.push(
                Diagnostic::error(format!(
                    "moved: {} is still a resource of tenant {:?}: a moved block's `from` must be an address the \
                     catalog no longer makes",
                    m.from, graph.tenant.slug
                ))
                .at(m.location.clone()),
            );
            continue;
        }
        graph.moved.push(MoveRule { from: m.from.clone(), to: m.to.clone(), declared_at: m.location.to_string() });
    }
}

/// Whether `attrs` hold a value at `path`.
fn has_path(attrs: &BTreeMap<String, Value>, path: &AttrPath) -> bool {
    let mut parts = path.0.iter();
    let Some(PathPart::Key(first)) = parts.next() else { return false };
    let mut at = attrs.get(first);
    for part in parts {
        at = match (at, part) {
            (Some(Value::Map(m)), PathPart::Key(k)) => m.get(k),
            (Some(Value::List(items)), PathPart::Index(n)) => items.get(*n),
            _ => None,
        };
    }
    at.is_some()
}

/// Fills `graph.ignore_changes` from the catalog and the spec; a spec entry naming a resource or
/// a path that does not exist is an error at the entry.
pub(super) fn ignore_rules(
    graph: &mut ResourceGraph,
    spec: &TenantSpec,
    catalog: &Catalog,
    diags: &mut Vec<Diagnostic>,
) {
    let mut rules: BTreeMap<_, Vec<IgnoreRule>> = BTreeMap::new();
    for def in &catalog.ignore_changes {
        for addr in graph.index.keys().filter(|a| def.covers(a)) {
            for (path, at) in &def.paths {
                rules
                    .entry(addr.clone())
                    .or_default()
                    .push(IgnoreRule { path: path.clone(), declared_at: at.to_string() });
            }
        }
    }
    for entry in &spec.ignore_changes {
        let Some(res) = graph.get(&entry.address) else {
            diags.push(
                Diagnostic::error(format!(
                    "ignore_changes: tenant {:?} has no resource {} (see `matih graph` or `matih state list` for its \
                     resources)",
                    spec.slug.value, entry.address
                ))
                .at(entry.location.clone()),
            );
            continue;
        };
        if !has_path(&res.attrs, &entry.path) {
            diags.push(
                Diagnostic::error(format!(
                    "ignore_changes: {} has no attribute {} (paths are spelled as plans print them)",
                    entry.address, entry.path
                ))
                .at(entry.location.clone()),
            );
            continue;
        }
        let rule = IgnoreRule { path: entry.path.clone(), declared_at: entry.location.to_string() };
        rules.entry(entry.address.clone()).or_default().push(rule);
    }
    graph.ignore_changes = rules;
}
