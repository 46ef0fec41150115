//! `--refresh-only` (Terraform's): accepting drift. The plan lists what changed outside matih
//! (an update from the recorded attributes to the live ones) and what was deleted outside matih
//! (a delete, which only forgets the record); applying it writes that to the state and changes
//! nothing in the real world. Reviewed and saved like any plan.
//!
//! **Invariant:** providers are only read; the state store is written once per tenant, under the
//! tenant's lock, and only when its lineage and serial are still those the plan was made against.

use anyhow::{bail, Result};

use crate::apply::{refresh, Providers};
use crate::graph::ResourceGraph;
use crate::plan::{self, Action, Plan, TenantPlan};
use crate::provider::ProviderError;
use crate::state::{self, LockInfo, StateStore};

/// The refresh-only plan of the tenants of `graphs` that have a recorded state (the others have
/// nothing to record), and the resources that could not be read (the plan is then incomplete).
pub fn plan_refresh_only(
    graphs: &[ResourceGraph],
    sources: &[Option<std::path::PathBuf>],
    store: &dyn StateStore,
    providers: &Providers,
    rt: &tokio::runtime::Runtime,
    parallelism: usize,
) -> Result<(Plan, Vec<ProviderError>)> {
    let mut tenants = Vec::new();
    let mut errors = Vec::new();
    for (graph, source) in graphs.iter().zip(sources) {
        let Some(recorded) = store.get(&graph.tenant.slug)? else { continue };
        let found = rt.block_on(refresh(&recorded, providers, parallelism));
        errors.extend(found.errors);
        let live_state = found.state.unwrap_or_else(|| recorded.clone());
        // The live objects as the desired side: `before` is then what matih recorded and `after`
        // what is live, path by path, with the plan's rules (secrets by fingerprint); a recorded
        // resource that is gone is a delete.
        let live = super::graph_of_record(graph.tenant.clone(), &live_state.resources);
        let mut tp: TenantPlan = plan::diff(&live, Some(&recorded), source.clone());
        for c in &mut tp.resource_changes {
            match c.action {
                Action::Update => c.notes.push("changed outside matih: the live values are recorded".into()),
                Action::Delete => c.notes.push("deleted outside matih: its record is forgotten".into()),
                _ => {}
            }
        }
        tenants.push(tp);
    }
    let mut plan = Plan::new(tenants);
    plan.refresh_only = true;
    Ok((plan, errors))
}

/// Writes a refresh-only plan to the state: each tenant's updates (`after`) and deletes, under its
/// lock, refused for a tenant whose state moved since the plan. Returns `(slug, recorded,
/// forgotten)` for each tenant written.
pub fn record_refreshed(plan: &Plan, store: &dyn StateStore) -> Result<Vec<(String, usize, usize)>> {
    if !plan.refresh_only {
        bail!("not a refresh-only plan");
    }
    let mut out = Vec::new();
    for tp in plan.tenants.iter().filter(|t| t.has_changes()) {
        let lock = LockInfo::new(&tp.slug, "refresh-only");
        store.lock(&lock)?;
        let written = (|| -> Result<(usize, usize)> {
            let Some(mut st) = store.get(&tp.slug)? else {
                bail!("tenant {:?} has no recorded state any more; nothing was recorded for it", tp.slug)
            };
            let planned = tp.prior_state.as_ref();
            if planned.is_none_or(|p| p.lineage != st.lineage || p.serial != st.serial) {
                bail!(
                    "the state of tenant {:?} changed since the plan was made (serial {}); nothing was recorded for it: \
                     plan again",
                    tp.slug,
                    st.serial
                );
            }
            let (mut recorded, mut forgotten) = (0, 0);
            for c in &tp.resource_changes {
                match (c.action, &c.after) {
                    (Action::Update, Some(after)) => {
                        if let Some(r) = st.resources.get_mut(&c.address) {
                            r.attrs = after.clone();
                            recorded += 1;
                        }
                    }
                    (Action::Delete, _) => {
                        forgotten += usize::from(st.resources.remove(&c.address).is_some());
                    }
                    _ => {}
                }
            }
            let expected = st.serial;
            st.serial += 1;
            st.updated_at = state::now_rfc3339();
            st.run_id = None;
            store.put(&st, Some(expected), "refresh-only")?;
            Ok((recorded, forgotten))
        })();
        let _ = store.unlock(&tp.slug, &lock.id);
        let (recorded, forgotten) = written?;
        out.push((tp.slug.clone(), recorded, forgotten));
    }
    Ok(out)
}
