//! The catalog's `moved` blocks applied to a recorded state before the diff (Terraform's
//! `moved { from, to }`): a record of `from` takes the address `to`, so renaming a resource of
//! the catalog moves it in every tenant instead of destroying and creating it. The diff then
//! compares the spec with the moved record (attribute changes show under the new address) and
//! the plan lists the move ([`super::PlannedMove`]); applying the plan writes the moved record.
//!
//! A move applies only when the record has `from`, not `to`, and the graph has `to`;
//! [`move_conflicts`] says, located at the block, why one that would apply cannot (both recorded,
//! or a target the tenant's graph does not have), and planning refuses such a tenant.
//!
//! **Invariant:** pure, like the diff.

use crate::graph::{MoveRule, ResourceGraph};
use crate::state::TenantState;

use super::PlannedMove;

/// Why the `moved` blocks of `graph` cannot apply to `recorded`, one message each, located at the
/// block. Empty when every move either applies or has nothing to move.
pub fn move_conflicts(graph: &ResourceGraph, recorded: Option<&TenantState>) -> Vec<String> {
    let Some(st) = recorded else { return Vec::new() };
    let slug = &graph.tenant.slug;
    let mut out = Vec::new();
    for m in graph.moved.iter().filter(|m| st.resources.contains_key(&m.from)) {
        if st.resources.contains_key(&m.to) {
            out.push(format!(
                "{}: moved: tenant {slug:?} records both {} and {}; nothing can move onto a recorded address (forget \
                 one of them with `matih state rm {slug} ADDR`, or move it with `matih state mv`)",
                m.declared_at, m.from, m.to
            ));
        } else if graph.get(&m.to).is_none() {
            out.push(format!(
                "{}: moved: {} is not a resource tenant {slug:?}'s spec compiles to, so its record of {} has \
                 nowhere to move",
                m.declared_at, m.to, m.from
            ));
        }
    }
    out
}

/// The moves that apply to `st` (see the module docs).
fn applicable<'g>(graph: &'g ResourceGraph, st: &TenantState) -> Vec<&'g MoveRule> {
    graph
        .moved
        .iter()
        .filter(|m| st.resources.contains_key(&m.from) && !st.resources.contains_key(&m.to))
        .filter(|m| graph.get(&m.to).is_some())
        .collect()
}

/// `st` with each of `moves` done: the record under its new address, other records' `depends_on`
/// following it. Serial, lineage and everything else unchanged.
pub fn moved_state(st: &TenantState, moves: &[PlannedMove]) -> TenantState {
    let mut new = st.clone();
    for m in moves {
        if let Some(r) = new.resources.remove(&m.from) {
            new.resources.insert(m.to.clone(), r);
        }
        for r in new.resources.values_mut() {
            if r.depends_on.remove(&m.from) {
                r.depends_on.insert(m.to.clone());
            }
        }
    }
    new
}

/// The moves of `graph` that apply to `st`, as the plan lists them; `None` when there are none.
pub(super) fn planned(graph: &ResourceGraph, st: Option<&TenantState>) -> Option<Vec<PlannedMove>> {
    let moves: Vec<PlannedMove> = applicable(graph, st?)
        .into_iter()
        .map(|m| PlannedMove { from: m.from.clone(), to: m.to.clone(), declared_at: m.declared_at.clone() })
        .collect();
    (!moves.is_empty()).then_some(moves)
}
