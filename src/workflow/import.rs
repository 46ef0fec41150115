//! `matih import`: record objects that already exist (made by hand, by another tool, or by a run
//! whose state was lost) as the tenant's resources, after reading them through their provider, so
//! that the next plan shows the differences as updates instead of creating them again.
//!
//! **Invariant:** the real world is only read; the state store is written once per tenant, under
//! the tenant's lock, with a compare-and-swap on its serial.

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};

use crate::addr::ResourceAddr;
use crate::apply::Providers;
use crate::graph::ResourceGraph;
use crate::plan::AddrPattern;
use crate::provider::{ResourceObject, TenantRef};
use crate::state::{self, LockInfo, ResourceState, StateStore, TenantState};
use crate::value::Value;

/// What was imported: `(tenant, address)`, in apply order per tenant.
pub type Imported = Vec<(String, ResourceAddr)>;

/// `v` with references resolved from the recorded outputs of `st`; `Err(resource)` names the
/// first resource whose output is not recorded yet.
fn resolve(v: &Value, st: &TenantState) -> Result<Value, ResourceAddr> {
    Ok(match v {
        Value::Ref { resource, output } => {
            let r = st.resources.get(resource).ok_or_else(|| resource.clone())?;
            r.outputs.get(output).or_else(|| r.attrs.get(output)).cloned().ok_or_else(|| resource.clone())?
        }
        Value::List(items) => Value::List(items.iter().map(|i| resolve(i, st)).collect::<Result<_, _>>()?),
        Value::Map(m) => {
            Value::Map(m.iter().map(|(k, v)| Ok((k.clone(), resolve(v, st)?))).collect::<Result<_, ResourceAddr>>()?)
        }
        other => other.clone(),
    })
}

/// Imports the resources of `graphs` that `patterns` name: each must be desired by its tenant's
/// spec, not recorded yet, and exist. Nothing is recorded unless every one of them is found.
pub fn import_resources(
    graphs: &[ResourceGraph],
    patterns: &[AddrPattern],
    store: &dyn StateStore,
    providers: &Providers,
    rt: &tokio::runtime::Runtime,
) -> Result<Imported> {
    let mut plan: Vec<(&ResourceGraph, Vec<ResourceAddr>)> = Vec::new();
    for p in patterns {
        let found = graphs.iter().any(|g| g.index.keys().any(|a| p.matches(&g.tenant.slug, a)));
        if !found {
            bail!("{p}: no such resource in the specs of this run; nothing was imported");
        }
    }
    for g in graphs {
        let chosen: Vec<ResourceAddr> = g
            .apply_order()
            .into_iter()
            .map(|r| r.addr.clone())
            .filter(|a| patterns.iter().any(|p| p.matches(&g.tenant.slug, a)))
            .collect();
        if !chosen.is_empty() {
            plan.push((g, chosen));
        }
    }
    let mut imported = Vec::new();
    let mut staged: Vec<(TenantState, Option<u64>, LockInfo)> = Vec::new();
    let release = |staged: &[(TenantState, Option<u64>, LockInfo)]| {
        for (st, _, lock) in staged {
            let _ = store.unlock(&st.slug, &lock.id);
        }
    };
    for (g, addrs) in plan {
        let slug = &g.tenant.slug;
        let lock = LockInfo::new(slug, "import");
        store.lock(&lock)?;
        let recorded = match store.get(slug) {
            Ok(r) => r,
            Err(e) => {
                let _ = store.unlock(slug, &lock.id);
                release(&staged);
                return Err(e.into());
            }
        };
        let expected = recorded.as_ref().map(|s| s.serial);
        let mut st = recorded.unwrap_or_else(|| TenantState::new(slug, &g.tenant.id));
        staged.push((TenantState::new(slug, &g.tenant.id), None, lock));
        let tenant = TenantRef { slug: slug.clone(), id: g.tenant.id.clone() };
        let result = (|| -> Result<()> {
            for addr in addrs {
                if st.resources.contains_key(&addr) {
                    bail!("{slug}/{addr} is already managed by matih; nothing was imported");
                }
                let res = g.get(&addr).expect("chosen from the graph");
                let attrs: BTreeMap<String, Value> = res
                    .attrs
                    .iter()
                    .map(|(k, v)| Ok((k.clone(), resolve(v, &st)?)))
                    .collect::<Result<_, ResourceAddr>>()
                    .map_err(|from| {
                        anyhow::anyhow!(
                            "{slug}/{addr} uses outputs of {from}, which is not recorded: import or apply {slug}/{from} \
                             first; nothing was imported"
                        )
                    })?;
                let provider = providers.for_kind(&addr.kind).with_context(|| {
                    format!("{slug}/{addr}: no provider reaches {} resources (see the platform file)", addr.kind)
                })?;
                let obj = ResourceObject::new(addr.clone(), attrs);
                let observed = rt
                    .block_on(provider.read(&tenant, &obj))
                    .with_context(|| format!("reading {slug}/{addr}; nothing was imported"))?
                    .with_context(|| format!("{slug}/{addr} does not exist; nothing was imported"))?;
                st.resources.insert(
                    addr.clone(),
                    ResourceState {
                        phase: res.phase,
                        attrs: observed.attrs,
                        outputs: observed.outputs,
                        depends_on: res.depends_on.clone(),
                    },
                );
                imported.push((slug.clone(), addr));
            }
            Ok(())
        })();
        if let Err(e) = result {
            release(&staged);
            return Err(e);
        }
        let last = staged.last_mut().expect("pushed above");
        last.0 = st;
        last.1 = expected;
    }
    let written = (|| -> Result<()> {
        for (st, expected, _) in &mut staged {
            st.serial = expected.map_or(1, |s| s + 1);
            st.updated_at = state::now_rfc3339();
            st.run_id = None;
            store.put(st, *expected, "import")?;
        }
        Ok(())
    })();
    release(&staged);
    written?;
    Ok(imported)
}
