//! The steps that `validate`, `plan`, `apply` and the benchmark share, from files to a plan:
//! read and compile every tenant (one per core), then read, refresh and diff each against its
//! recorded state (one per core).
//!
//! **Invariant:** prints nothing and reads no terminal; the CLI decides what to show. The only
//! outside world it touches is what it is handed: the files named, the state store, providers.

use std::path::PathBuf;

use rayon::prelude::*;

use crate::apply::{fill_env_fingerprints, refresh, Providers};
use crate::catalog::Catalog;
use crate::diag::{self, Diagnostic, Location};
use crate::graph::{self, ResourceGraph};
use crate::plan::{self, Plan};
use crate::provider::ProviderError;
use crate::spec::{self, PlatformConfig, TenantSpec};
use crate::state::{StateError, StateStore, TenantState};

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
}

/// Providers to read live objects through before diffing, and the runtime to do it on.
pub struct Refresh<'a> {
    pub providers: &'a Providers,
    pub runtime: &'a tokio::runtime::Runtime,
    /// Reads at once per tenant.
    pub parallelism: usize,
}

/// The plan of every compiled tenant against its recorded (and, with `refresh`, re-read) state.
/// Also returns the resources that could not be read; a plan made despite them is incomplete.
pub fn plan_tenants(
    specs: &[TenantSpec],
    graphs: &[ResourceGraph],
    store: &dyn StateStore,
    refresh_with: Option<&Refresh<'_>>,
) -> Result<(Plan, Vec<ProviderError>), PlanError> {
    let planned: Vec<Result<_, PlanError>> = specs
        .par_iter()
        .zip(graphs.par_iter())
        .map(|(spec, graph)| {
            let mut prior: Option<TenantState> = store.get(&graph.tenant.slug)?;
            if let Some(p) = &prior {
                if p.tenant_id != graph.tenant.id {
                    return Err(PlanError::IdChanged {
                        location: spec.id.location.clone(),
                        slug: graph.tenant.slug.clone(),
                        recorded: p.tenant_id.clone(),
                        spec: graph.tenant.id.clone(),
                    });
                }
            }
            let mut errors = Vec::new();
            if let (Some(r), Some(p)) = (refresh_with, &prior) {
                let refreshed = r.runtime.block_on(refresh(p, r.providers, r.parallelism));
                errors = refreshed.errors;
                prior = refreshed.state;
            }
            Ok((plan::diff(graph, prior.as_ref(), Some(spec.location.file.clone())), errors))
        })
        .collect();
    let mut tenants = Vec::with_capacity(planned.len());
    let mut read_errors = Vec::new();
    for p in planned {
        let (tp, errors) = p?;
        tenants.push(tp);
        read_errors.extend(errors);
    }
    Ok((Plan::new(tenants), read_errors))
}
