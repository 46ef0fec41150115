//! The steps that `validate`, `plan`, `apply` and the benchmark share, from files to a plan:
//! read and compile every tenant (one per core), then read, refresh and diff each against its
//! recorded state (one per core).
//!
//! **Invariant:** prints nothing and reads no terminal; the CLI decides what to show. The only
//! outside world it touches is what it is handed: the files named, the state store, providers.

pub mod connect;
pub mod import;
pub mod outputs;
pub mod refresh_only;
pub mod run;
pub mod state_mv;
pub mod state_restore;
pub mod store;
pub mod stream;

use std::borrow::Cow;
use std::path::PathBuf;

use rayon::prelude::*;

use crate::apply::{fill_env_fingerprints, read_unrecorded, refresh, Providers};
use crate::catalog::flyway_validate;
use crate::catalog::Catalog;
use crate::diag::{self, Diagnostic, Location};
use crate::graph::{self, ResourceGraph};
use crate::plan::{self, Plan, Targeting};
use crate::provider::ProviderError;
use crate::spec::{self, PlatformConfig, TenantSpec};
use crate::state::{StateError, StateStore, TenantState, TenantStatus};

/// Every tenant read from the paths, compiled.
#[derive(Debug, Default)]
pub struct Compiled {
    pub specs: Vec<TenantSpec>,
    /// One per spec, in the same order (empty when there are errors).
    pub graphs: Vec<ResourceGraph>,
    /// Sorted by position; the compile failed if any is an error.
    pub diagnostics: Vec<Diagnostic>,
    /// `(tenant slug, variable)` for secrets taken from environment variables that are not set.
    pub unset_env: Vec<(String, String)>,
}

/// Reads, validates and compiles the tenants in `paths`. Environment secrets get the fingerprint of
/// their variable's current value, so that a changed webhook URL shows in the plan.
pub fn compile_tenants(paths: &[PathBuf], catalog: &Catalog, platform: &PlatformConfig) -> Compiled {
    let (specs, mut diagnostics) = spec::load_tenants(paths, catalog);
    let mut out = Compiled::default();
    if !diag::has_errors(&diagnostics) {
        let compiled: Vec<_> = specs.par_iter().map(|s| graph::compile(s, catalog, platform)).collect();
        for (g, d) in compiled {
            diagnostics.extend(d);
            if let Some(mut g) = g {
                for var in fill_env_fingerprints(&mut g) {
                    out.unset_env.push((g.tenant.slug.clone(), var));
                }
                out.graphs.push(g);
            }
        }
    }
    diag::sort(&mut diagnostics);
    if diag::has_errors(&diagnostics) {
        out.graphs.clear();
    }
    out.specs = specs;
    out.diagnostics = diagnostics;
    out
}

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error(
        "{location}: tenant {slug:?} is recorded with id {recorded} but the spec says {spec}; a tenant's id cannot \
         change (remove its state with `matih state rm` only if you know what you are doing)"
    )]
    IdChanged { location: Location, slug: String, recorded: String, spec: String },
    #[error(
        "migrations/{script}: {message} (tenant {slug:?}); the plan cannot be made until the file is restored as it \
         was applied"
    )]
    AppliedMigrationChanged { slug: String, script: String, message: String },
    #[error("{}; nothing was planned", .0.join("; "))]
    Unmatched(Vec<String>),
    /// A `moved` block of the catalog that cannot apply to a tenant's record (`plan::move_conflicts`).
    #[error("{}\nnothing was planned", .0.join("\n"))]
    MoveConflict(Vec<String>),
}

/// Providers to read live objects through before diffing, and the runtime to do it on.
pub struct Refresh<'a> {
    pub providers: &'a Providers,
    pub runtime: &'a tokio::runtime::Runtime,
    /// Reads at once per tenant.
    pub parallelism: usize,
}

/// Tenants a plan refreshes at once. Their reads wait on the network, not on the CPU, so more run
/// than there are cores.
pub const TENANTS_REFRESHED_AT_ONCE: usize = 16;

/// The threads a plan refreshes tenants on: a pool of [`TENANTS_REFRESHED_AT_ONCE`] threads,
/// built once per plan, when the plan reads live objects (some provider is configured): rayon's
/// global pool has one thread per core, and a tenant's refresh blocks its thread, so a 2-core
/// machine would refresh two tenants at a time. Otherwise (or with `MATIH_READ_ONE_BY_ONE=1`, the
/// benchmark's "before"), the global pool: planning alone is work for the CPU, and a pool built per
/// batch cost a 20-tenant plan more than planning it (sixteen new threads, each with a heap of its
/// own, every 32 tenants).
pub(crate) struct RefreshPool(Option<rayon::ThreadPool>);

impl RefreshPool {
    pub(crate) fn new(refresh: Option<&Refresh<'_>>) -> RefreshPool {
        let reads = refresh.is_some_and(|r| !r.providers.is_empty()) && !crate::provider::read_one_by_one_forced();
        RefreshPool(
            reads
                .then(|| rayon::ThreadPoolBuilder::new().num_threads(TENANTS_REFRESHED_AT_ONCE).build().ok())
                .flatten(),
        )
    }

    /// The threads of this pool (the global one when there are no reads).
    pub(crate) fn threads(&self) -> usize {
        self.0.as_ref().map_or_else(rayon::current_num_threads, rayon::ThreadPool::current_num_threads)
    }

    /// A FIFO scope of this pool (the global one when there are no reads), run on this thread.
    pub(crate) fn in_place_scope_fifo<'s, R>(&self, f: impl FnOnce(&rayon::ScopeFifo<'s>) -> R) -> R {
        match &self.0 {
            Some(pool) => pool.in_place_scope_fifo(f),
            None => rayon::in_place_scope_fifo(f),
        }
    }

    /// Runs `f` (which plans tenants with rayon) on this pool (the global one when there are no
    /// reads).
    pub(crate) fn install<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        match &self.0 {
            Some(pool) => pool.install(f),
            None => f(),
        }
    }
}

/// A record's resources as the desired side of a diff (`refresh-only`: what is live; `state
/// restore`: an earlier serial), so that the plan's own rules say what recording it changes.
pub(crate) fn graph_of_record(
    meta: crate::graph::TenantMeta,
    resources: &std::collections::BTreeMap<crate::addr::ResourceAddr, crate::state::ResourceState>,
) -> ResourceGraph {
    let mut graph = ResourceGraph::new(meta);
    for (addr, r) in resources {
        graph.add(crate::graph::Resource {
            addr: addr.clone(),
            phase: r.phase,
            attrs: r.attrs.clone(),
            depends_on: r.depends_on.clone(),
            force_new: std::collections::BTreeSet::new(),
            origin: None,
        });
    }
    graph
}

/// The plan of every compiled tenant against its recorded (and, with `refresh`, re-read) state.
/// Also returns the resources that could not be read; a plan made despite them is incomplete.
pub fn plan_tenants(
    specs: &[TenantSpec],
    graphs: &[ResourceGraph],
    store: &dyn StateStore,
    refresh_with: Option<&Refresh<'_>>,
) -> Result<(Plan, Vec<ProviderError>), PlanError> {
    plan_tenants_targeted(specs, graphs, store, refresh_with, &Targeting::default())
}

/// [`plan_tenants`] of what `targeting` selects (`--target`, `--exclude`, `--replace`): see
/// `plan::Targeting`. An address that matches nothing is [`PlanError::Unmatched`].
pub fn plan_tenants_targeted(
    specs: &[TenantSpec],
    graphs: &[ResourceGraph],
    store: &dyn StateStore,
    refresh_with: Option<&Refresh<'_>>,
    targeting: &Targeting,
) -> Result<(Plan, Vec<ProviderError>), PlanError> {
    let planned: Vec<Result<_, PlanError>> = RefreshPool::new(refresh_with).install(|| {
        specs
            .par_iter()
            .zip(graphs.par_iter())
            .map(|(spec, graph)| {
                let replace = targeting.replace_in(&graph.tenant.slug, graph.index.keys());
                plan_tenant(spec, Cow::Borrowed(graph), store, refresh_with, &replace)
            })
            .collect()
    });
    let mut tenants = Vec::with_capacity(planned.len());
    let mut read_errors = Vec::new();
    for p in planned {
        let (tp, errors) = p?;
        tenants.push(tp);
        read_errors.extend(errors);
    }
    Ok((select(Plan::new(tenants), targeting)?, read_errors))
}

/// The plan of one tenant against its recorded (and, with `refresh_with`, re-read) state, with
/// the resources that could not be read: what [`plan_tenants`] does for each tenant, and
/// `stream::stream_tenants` too. A graph handed over (`Cow::Owned`) gives its attributes to the
/// plan's creates instead of a copy, unless a refresh may adopt objects (which reads the graph
/// after the diff).
pub(crate) fn plan_tenant(
    spec: &TenantSpec,
    graph: Cow<'_, ResourceGraph>,
    store: &dyn StateStore,
    refresh_with: Option<&Refresh<'_>>,
    replace: &std::collections::BTreeSet<crate::addr::ResourceAddr>,
) -> Result<(plan::TenantPlan, Vec<ProviderError>), PlanError> {
    let recorded: Option<TenantState> = store.get(&graph.tenant.slug)?;
    if let Some(id) = changed_id(&graph, recorded.as_ref()) {
        return Err(PlanError::IdChanged {
            location: spec.id.location.clone(),
            slug: graph.tenant.slug.clone(),
            recorded: id.to_string(),
            spec: graph.tenant.id.clone(),
        });
    }
    let mut errors = Vec::new();
    // Refreshed: what the providers read back; the recorded state is kept beside it, so
    // that the diff sees secrets changed outside matih.
    let mut refreshed = None;
    if let (Some(r), Some(p)) = (refresh_with, &recorded) {
        let found = r.runtime.block_on(refresh(p, r.providers, r.parallelism));
        errors = found.errors;
        refreshed = Some(found.state);
    }
    let prior = refreshed.as_ref().map_or(recorded.as_ref(), Option::as_ref);
    // Against matih's record, never the refreshed history: a tenant can write its own table,
    // and what it writes there must not stop the plan of every tenant. A table that
    // disagrees with the record is drift of that tenant's resource; its apply refuses it.
    check_applied_migrations(&graph, recorded.as_ref())?;
    let conflicts = plan::move_conflicts(&graph, recorded.as_ref());
    if !conflicts.is_empty() {
        return Err(PlanError::MoveConflict(conflicts));
    }
    let source = Some(spec.location.file.clone());
    // Without providers there is nothing to adopt or preview.
    let Some(r) = refresh_with.filter(|r| !r.providers.is_empty()) else {
        let planned = match graph {
            Cow::Owned(graph) => plan::diff_replacing_owned(graph, prior, recorded.as_ref(), source, replace),
            Cow::Borrowed(graph) => plan::diff_replacing(graph, prior, recorded.as_ref(), source, replace),
        };
        return Ok((planned, errors));
    };
    let planned = plan::diff_replacing(&graph, prior, recorded.as_ref(), source, replace);
    let (mut planned, unreadable) = r.runtime.block_on(adopt_existing(
        planned,
        &graph,
        prior,
        recorded.as_ref(),
        replace,
        r.providers,
        r.parallelism,
    ));
    errors.extend(unreadable);
    r.runtime.block_on(preview_rendered(&mut planned, r.providers));
    Ok((planned, errors))
}

/// Adds to each create, update or replace the objects its provider says it would change
/// (`Provider::preview`: a Helm release's rendered manifests against its live manifest), all
/// resources at once. One that cannot be compared gets a note saying why; the plan stands.
async fn preview_rendered(tenant_plan: &mut plan::TenantPlan, providers: &Providers) {
    use crate::provider::{ResourceObject, TenantRef};
    let tenant = TenantRef { slug: tenant_plan.slug.clone(), id: tenant_plan.tenant_id.clone() };
    let asked: Vec<(usize, &std::sync::Arc<dyn crate::provider::Provider>, ResourceObject)> = tenant_plan
        .resource_changes
        .iter()
        .enumerate()
        .filter(|(_, c)| matches!(c.action, plan::Action::Create | plan::Action::Update | plan::Action::Replace))
        .filter_map(|(i, c)| {
            let provider = providers.for_kind(&c.address.kind).filter(|p| p.previews())?;
            Some((i, provider, ResourceObject::new(c.address.clone(), c.after.clone()?)))
        })
        .collect();
    if asked.is_empty() {
        return;
    }
    let found =
        futures_util::future::join_all(asked.iter().map(|(_, provider, resource)| provider.preview(&tenant, resource)))
            .await;
    for ((i, _, _), result) in asked.iter().zip(found) {
        let change = &mut tenant_plan.resource_changes[*i];
        match result {
            Ok(objects) => {
                change.manifest_changes = objects
                    .into_iter()
                    .map(|o| plan::ManifestChange { object: o.object, change: o.change.to_string(), diff: o.diff })
                    .collect()
            }
            Err(e) => change.notes.push(format!("rendered manifests not compared: {}", e.message)),
        }
    }
}

/// Adoption (see `plan::diff_adopting`): reads the object of every create of `planned` and, when
/// some exist although matih has no record of them, diffs again adopting them. Also returns what
/// could not be read (whether it exists is then unknown: the plan is incomplete). Planning and
/// apply's replanning both go through here; the reads are `apply::read_unrecorded`'s.
pub async fn adopt_existing(
    planned: plan::TenantPlan,
    graph: &ResourceGraph,
    prior: Option<&TenantState>,
    recorded: Option<&TenantState>,
    replace: &std::collections::BTreeSet<crate::addr::ResourceAddr>,
    providers: &Providers,
    parallelism: usize,
) -> (plan::TenantPlan, Vec<ProviderError>) {
    let (found, errors) = read_unrecorded(&planned, providers, parallelism).await;
    if found.is_empty() {
        return (planned, errors);
    }
    let source = planned.source.clone();
    (plan::diff_adopting(graph, prior, recorded, source, replace, &found), errors)
}

/// The part of `plan` that `targeting` selects: tenants with nothing selected are left out, the
/// others marked partial. Every address must match something in the whole plan.
pub fn select(plan: Plan, targeting: &Targeting) -> Result<Plan, PlanError> {
    let unmatched = targeting.unmatched(&plan.tenants);
    if !unmatched.is_empty() {
        return Err(PlanError::Unmatched(unmatched));
    }
    if !targeting.is_partial() {
        return Ok(plan);
    }
    let mut tenants = plan.tenants;
    tenants.retain_mut(|t| targeting.select(t));
    Ok(Plan::new(tenants))
}

/// The id a tenant is recorded with, when it is not the one its spec gives: a tenant's id never
/// changes, so planning (and checking drift) against that state is refused.
pub fn changed_id<'a>(graph: &ResourceGraph, recorded: Option<&'a TenantState>) -> Option<&'a str> {
    recorded.map(|r| r.tenant_id.as_str()).filter(|id| *id != graph.tenant.id)
}

/// A migration that was applied must never change: when the migrations matih recorded as applied
/// for a tenant hold a checksum that differs from its file's, the plan is an error, not the apply.
/// `prior` is the recorded state (matih's own record), not a refreshed one: the history table is
/// the tenant's to write (see `provider::postgres::migrate::verify_history`).
fn check_applied_migrations(graph: &ResourceGraph, prior: Option<&TenantState>) -> Result<(), PlanError> {
    let Some(prior) = prior else { return Ok(()) };
    let migrations = graph.index.keys().filter(|a| a.kind == "postgresql_migrations").filter_map(|a| graph.get(a));
    for res in migrations {
        let Some(applied) = prior.resources.get(&res.addr) else { continue };
        if let Some((script, message)) = flyway_validate::validate_applied(&res.attrs, &applied.attrs) {
            return Err(PlanError::AppliedMigrationChanged { slug: graph.tenant.slug.clone(), script, message });
        }
    }
    Ok(())
}

/// Plans a tenant again, during an apply, against the state found under its lock: the same steps
/// as [`plan_tenants`] for one tenant (refresh through the providers, migration check, diff), or
/// for a destroy the diff against an empty graph.
pub struct Replanner {
    graphs: std::collections::HashMap<String, ResourceGraph>,
    destroy: bool,
    /// Reads at once while refreshing; `None`: no refresh (the recorded state is diffed).
    refresh_parallelism: Option<usize>,
    /// The run's `--target`/`--exclude`/`--replace`, applied to the new plan as to the first.
    targeting: Targeting,
}

impl Replanner {
    pub fn new(graphs: Vec<ResourceGraph>, destroy: bool, refresh_parallelism: Option<usize>) -> Replanner {
        Replanner {
            graphs: graphs.into_iter().map(|g| (g.tenant.slug.clone(), g)).collect(),
            destroy,
            refresh_parallelism,
            targeting: Targeting::default(),
        }
    }

    /// Plans again only what `targeting` selects, as the run's first plan did.
    pub fn with_targeting(mut self, targeting: Targeting) -> Replanner {
        self.targeting = targeting;
        self
    }

    /// The new plan of one tenant, narrowed as the run's (an empty one when nothing is selected).
    fn narrow(&self, mut plan: plan::TenantPlan) -> plan::TenantPlan {
        if !self.targeting.select(&mut plan) {
            plan.resource_changes.clear();
        }
        plan
    }
}

impl crate::apply::Replan for Replanner {
    fn replan<'a>(
        &'a self,
        planned: &'a plan::TenantPlan,
        found: Option<&'a TenantState>,
        providers: &'a Providers,
    ) -> crate::apply::BoxFuture<'a, Result<plan::TenantPlan, String>> {
        Box::pin(async move {
            let graph = self
                .graphs
                .get(&planned.slug)
                .ok_or_else(|| format!("tenant {:?} is not among the specs of this run", planned.slug))?;
            if self.destroy {
                return Ok(self.narrow(run::destroy_tenant(graph, found, planned.source.clone())));
            }
            if let Some(id) = changed_id(graph, found) {
                return Err(format!(
                    "tenant {:?} is now recorded with id {id} but the spec says {}",
                    planned.slug, graph.tenant.id
                ));
            }
            // A run that finished cleanly recorded what it read back moments ago: reading it all
            // again would only double the load of several runners. One that failed or was killed
            // left write-ahead records or a failed phase, which a refresh settles.
            let settled = found.is_some_and(|p| p.in_flight.is_empty() && p.status == TenantStatus::Active);
            let mut refreshed = None;
            if let (Some(parallelism), Some(p), false) = (self.refresh_parallelism, found, settled) {
                let r = refresh(p, providers, parallelism).await;
                if let Some(e) = r.errors.first() {
                    return Err(format!("{} resource(s) could not be read: {e}", r.errors.len()));
                }
                refreshed = Some(r.state);
            }
            let prior = refreshed.as_ref().map_or(found, Option::as_ref);
            check_applied_migrations(graph, found).map_err(|e| e.to_string())?;
            let replace = self.targeting.replace_in(&planned.slug, graph.index.keys());
            let mut again = plan::diff_replacing(graph, prior, found, planned.source.clone(), &replace);
            // Moves are written before a run starts (`run::run_fleet`), never in the middle of one:
            // a record that needs one now (another run wrote it meanwhile) is left for the next run.
            if let Some(m) = again.moved.first() {
                return Err(format!(
                    "tenant {:?}'s record now has {}, which the catalog moves to {} (moved block at {}): nothing \
                     was applied to it; apply again to move it first",
                    planned.slug, m.from, m.to, m.declared_at
                ));
            }
            if let Some(parallelism) = self.refresh_parallelism {
                let (adopting, unreadable) =
                    adopt_existing(again, graph, prior, found, &replace, providers, parallelism).await;
                if let Some(e) = unreadable.first() {
                    return Err(format!("{} resource(s) could not be read: {e}", unreadable.len()));
                }
                again = adopting;
            }
            Ok(self.narrow(again))
        })
    }
}

/// The shard (0-based, below `of`) a tenant belongs to for `--shard K/N`: from the SHA-256 of its
/// slug, so that a tenant stays in its shard when others are added or removed.
pub fn shard_of(slug: &str, of: usize) -> usize {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(slug.as_bytes());
    let n = u64::from_be_bytes(d[..8].try_into().expect("8 bytes"));
    (n % of.max(1) as u64) as usize
}
