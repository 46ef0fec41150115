//! A run over the fleet, as `apply` and `destroy` carry it out once the plan is confirmed: the
//! destroy plan, the refusals made before anything changes (protected data, a saved plan the
//! real world has moved away from), then every tenant plan with changes applied, with progress
//! to the hooks and to the feed `matih serve` reads, and completion to the notifications.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use super::connect::require_providers;
use super::store::{StateLocation, StoreUse};
use crate::apply::{
    self, ApplyError, ApplyOptions, ApplyReport, EventHooks, FleetOptions, HookList, Hooks, Operation, Providers,
};
use crate::catalog::Catalog;
use crate::diag::Location;
use crate::graph::ResourceGraph;
use crate::notify::NotifyHooks;
use crate::plan::{self, Action, Plan, TenantPlan};
use crate::spec::{PlatformConfig, TenantSpec};
use crate::state::{StateError, StateStore, TenantState};

/// The plan of one tenant's destroy: every recorded resource deleted (the diff of an empty graph).
pub fn destroy_tenant(
    graph: &ResourceGraph,
    recorded: Option<&TenantState>,
    source: Option<std::path::PathBuf>,
) -> TenantPlan {
    plan::diff(&ResourceGraph::new(graph.tenant.clone()), recorded, source)
}

/// The plan of `matih destroy`: for each tenant, everything its recorded state holds, deleted.
pub fn destroy_plan(
    specs: &[TenantSpec],
    graphs: &[ResourceGraph],
    store: &dyn StateStore,
) -> Result<Plan, StateError> {
    let mut tenants = Vec::with_capacity(graphs.len());
    for (spec, graph) in specs.iter().zip(graphs) {
        let recorded = store.get(&graph.tenant.slug)?;
        tenants.push(destroy_tenant(graph, recorded.as_ref(), Some(spec.location.file.clone())));
    }
    Ok(Plan::new(tenants))
}

/// Slugs whose spec sets `protect_database = true`, with where it is written.
pub fn protected_specs(specs: &[TenantSpec]) -> BTreeMap<String, Location> {
    specs.iter().filter_map(|s| Some((s.slug.value.clone(), s.database_protection()?.clone()))).collect()
}

/// Refuses, before anything is asked or changed, a plan that would lose the data of a tenant whose
/// spec sets `protect_database = true`, pointing at that line. `protected` maps slugs to where the
/// flag is written.
pub fn check_protection(plan: &Plan, protected: &BTreeMap<String, Location>, allow_data_loss: bool) -> Result<()> {
    if allow_data_loss {
        return Ok(());
    }
    let mut problems = Vec::new();
    for tp in &plan.tenants {
        let Some(at) = protected.get(&tp.slug) else { continue };
        let lost = apply::data_loss(tp);
        if !lost.is_empty() {
            let what: Vec<String> = lost.iter().map(|c| format!("{} {}", c.action.name(), c.address)).collect();
            problems.push(format!(
                "{at}: tenant {:?} has protect_database = true, and this plan would {} (its data would be lost)",
                tp.slug,
                what.join(", ")
            ));
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    bail!("{}\nnothing was changed; pass --allow-data-loss if you really mean it", problems.join("\n"))
}

/// The operation name of a move written by a plan (the catalog's `moved` blocks).
pub const MOVED_OPERATION: &str = "moved";

/// Writes the moves of each tenant's plan (`TenantPlan::moved`) before its run: under the
/// tenant's lock, one audited write that only renames records, checked against the state the plan
/// was made against; the plan is then bound to the serial written, so its changes apply to the
/// moved records. Every tenant is checked before any is written.
fn record_moves(tenants: &mut [TenantPlan], store: &dyn StateStore) -> Result<()> {
    use crate::state::{AuditEntry, LockInfo};
    let moving: Vec<usize> = (0..tenants.len()).filter(|&i| !tenants[i].moved.is_empty()).collect();
    for &i in &moving {
        let tp = &tenants[i];
        let st = store.get(&tp.slug)?;
        let current = st.as_ref().map(|s| (s.lineage.as_str(), s.serial));
        if current != tp.prior_state.as_ref().map(|p| (p.lineage.as_str(), p.serial)) {
            bail!(
                "the state of tenant {:?} changed since the plan was made; its moves and changes were not applied: \
                 plan again",
                tp.slug
            );
        }
    }
    for i in moving {
        let tp = &mut tenants[i];
        let lock = LockInfo::new(&tp.slug, MOVED_OPERATION);
        store.lock(&lock)?;
        let written = (|| -> Result<u64> {
            let st = store.get(&tp.slug)?.ok_or_else(|| anyhow::anyhow!("tenant {:?} has no state", tp.slug))?;
            let prior = tp.prior_state.as_ref().filter(|p| p.lineage == st.lineage && p.serial == st.serial);
            if prior.is_none() {
                bail!("the state of tenant {:?} changed since the plan was made: plan again", tp.slug);
            }
            let mut new = plan::moved_state(&st, &tp.moved);
            new.serial = st.serial + 1;
            new.updated_at = crate::state::now_rfc3339();
            new.run_id = None;
            let entries: Vec<AuditEntry> = tp
                .moved
                .iter()
                .map(|m| {
                    let mut e = AuditEntry::new(&tp.slug, MOVED_OPERATION, "move", "ok");
                    e.resource = Some(m.to.clone());
                    e.message = Some(format!("{} moved to {} (moved block at {})", m.from, m.to, m.declared_at));
                    e
                })
                .collect();
            store.put_audited(&new, Some(st.serial), MOVED_OPERATION, &entries)?;
            Ok(new.serial)
        })();
        store.unlock(&tp.slug, &lock.id)?;
        let serial = written?;
        if let Some(p) = tp.prior_state.as_mut() {
            p.serial = serial;
        }
        tp.moved.clear();
    }
    Ok(())
}

/// A plan saved by `matih plan -out FILE`, read back with what protects its tenants.
pub struct SavedPlan {
    pub plan: Plan,
    /// Slugs of its tenants whose spec sets `protect_database = true`.
    pub protected: BTreeSet<String>,
}

impl SavedPlan {
    /// A saved plan (read with [`plan::load_plan`]), refused when what it would create or change is
    /// not what its tenants' spec files compile to now (with this catalog and platform file), or
    /// when it would lose protected data. Protection comes from the spec files the plan was made
    /// from, as they are now, never from the plan.
    pub fn new(plan: Plan, catalog: &Catalog, platform: &PlatformConfig, allow_data_loss: bool) -> Result<SavedPlan> {
        let sources: Vec<_> = plan.tenants.iter().filter_map(|t| t.source.clone()).filter(|p| p.is_file()).collect();
        let compiled = super::compile_tenants(&sources, catalog, platform);
        if let Some(e) = compiled.diagnostics.iter().find(|d| d.is_error()) {
            bail!("refusing the saved plan: its spec files no longer compile ({e}); run matih plan again");
        }
        let graphs: BTreeMap<&str, &ResourceGraph> =
            compiled.graphs.iter().map(|g| (g.tenant.slug.as_str(), g)).collect();
        let mut problems = Vec::new();
        for tp in &plan.tenants {
            match graphs.get(tp.slug.as_str()) {
                Some(g) => problems.extend(plan::nonconforming(tp, g).into_iter().map(|p| format!("{}/{p}", tp.slug))),
                // A tenant whose spec is gone may only be deleted.
                None if tp.resource_changes.iter().any(|c| c.after.is_some() && c.action != Action::NoOp) => problems
                    .push(format!("{}: the plan creates or changes resources, but no spec file names it", tp.slug)),
                None => {}
            }
        }
        if !problems.is_empty() {
            bail!(
                "refusing the saved plan: it is not what the tenants' spec files compile to now (edited, or made from \
                 other specs or another catalog):\n  {}\nrun matih plan again",
                problems.join("\n  ")
            );
        }
        let protected = protected_specs(&compiled.specs);
        check_protection(&plan, &protected, allow_data_loss)?;
        Ok(SavedPlan { plan, protected: protected.into_keys().collect() })
    }
}

/// A saved plan is applied exactly as reviewed: refused when what it changes moved in the real
/// world since it was made.
pub fn check_saved_plan_current(
    saved: &SavedPlan,
    path: &Path,
    providers: &Providers,
    platform: &PlatformConfig,
    rt: &tokio::runtime::Runtime,
) -> Result<()> {
    require_providers(&saved.plan, providers, platform)?;
    for tp in saved.plan.tenants.iter().filter(|t| t.has_changes()) {
        let changed = rt.block_on(apply::changed_since_planned(tp, providers))?;
        if !changed.is_empty() {
            bail!(
                "refusing to apply {}: {} changed in the real world since the plan was made ({}); run matih plan again",
                path.display(),
                changed.len(),
                changed.iter().map(|a| format!("{}: {a}", tp.slug)).collect::<Vec<_>>().join(", ")
            );
        }
    }
    Ok(())
}

/// What a run over the fleet is asked to do.
pub struct FleetRun<'a> {
    pub plan: &'a Plan,
    pub providers: &'a Providers,
    pub opts: ApplyOptions,
    pub fleet: FleetOptions,
    /// Where progress is shown to people (the terminal); the events and notifications are added here.
    pub progress: Arc<dyn Hooks>,
    /// Where the event stream goes (`--progress json`: standard output), if anywhere.
    pub events: Option<Box<dyn std::io::Write + Send>>,
    /// Where warnings go (a notification not delivered yet); they never fail the run.
    pub warn: Arc<dyn Fn(&str) + Send + Sync>,
}

/// What a run over the fleet did: per tenant with changes, its report or error.
pub struct FleetOutcome {
    pub results: Vec<(String, Result<ApplyReport, ApplyError>)>,
    pub elapsed: Duration,
}

/// Counts over a [`FleetOutcome`], as the summary line says them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub failed: usize,
    /// Failed tenants for which nothing was changed (refused before the first operation).
    pub refused: usize,
    /// Existing objects taken over (`Action::Adopt`).
    pub adopted: usize,
    pub added: usize,
    pub changed: usize,
    pub destroyed: usize,
    /// Tenants another run had applied already.
    pub overtaken: usize,
}

impl FleetOutcome {
    pub fn tally(&self) -> Tally {
        let mut t = Tally::default();
        for (_, r) in &self.results {
            match r {
                Err(e) => {
                    t.failed += 1;
                    t.refused += usize::from(e.changed_nothing());
                }
                Ok(report) => {
                    t.overtaken += usize::from(report.overtaken());
                    for (_, action) in &report.operations {
                        match action {
                            Action::Create => t.added += 1,
                            Action::Adopt => t.adopted += 1,
                            Action::Update => t.changed += 1,
                            Action::Replace => (t.added, t.destroyed) = (t.added + 1, t.destroyed + 1),
                            Action::Delete => t.destroyed += 1,
                            Action::NoOp => {}
                        }
                    }
                }
            }
        }
        t
    }
}

/// Applies every tenant plan with changes, several tenants at once (see `apply::fleet`), on the
/// state store at `loc`. Its hooks are a list: `run.progress`, the events (the change feed that
/// `matih serve` reads, in the state directory whatever the backend, and `run.events`), and the
/// notifications (not for a destroy).
pub fn run_fleet(
    run: FleetRun<'_>,
    loc: &StateLocation,
    platform: &PlatformConfig,
    rt: &tokio::runtime::Runtime,
) -> Result<FleetOutcome> {
    require_providers(run.plan, run.providers, platform)?;
    let store: Arc<dyn StateStore> = Arc::from(loc.open(StoreUse::Run(run.opts.lock_timeout))?);
    let destroy = run.opts.operation == Operation::Destroy;
    let ids = run.plan.tenants.iter().map(|t| (t.slug.clone(), t.tenant_id.clone())).collect();
    let mut events = EventHooks::new(destroy).feed(&loc.dir, store.clone(), ids);
    if let Some(out) = run.events {
        events = events.stream(out);
    }
    let events = Arc::new(events);
    let mut hooks: Vec<Arc<dyn Hooks>> = vec![run.progress, events.clone()];
    // A destroy notifies no one.
    let notify = crate::notify::Completion::new(&loc.dir, &platform.notify)
        .filter(|_| !destroy)
        .map(|c| Arc::new(NotifyHooks::new(c, &run.plan.tenants)));
    if let Some(n) = &notify {
        hooks.push(n.clone());
    }
    let started = Instant::now();
    let mut tenants: Vec<TenantPlan> = run.plan.tenants.iter().filter(|t| t.has_changes()).cloned().collect();
    record_moves(&mut tenants, store.as_ref())?;
    let slugs: Vec<String> = tenants.iter().map(|t| t.slug.clone()).collect();
    let hooks = Arc::new(HookList::new(hooks));
    let results = rt.block_on(async {
        let results = apply::apply_fleet(tenants, store, run.providers.clone(), hooks, run.opts, run.fleet).await;
        events.flush().await;
        if let Some(n) = &notify {
            for w in n.finish().await {
                (run.warn)(&w);
            }
        }
        results
    });
    Ok(FleetOutcome { results: slugs.into_iter().zip(results).collect(), elapsed: started.elapsed() })
}
