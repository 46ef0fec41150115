//! A fleet in bounded memory: `validate` and `plan` of any number of tenants, one small batch of
//! files at a time (read, check, compile, read state, refresh, diff, render ahead), each tenant's
//! plan handed to the caller in file order with its rendering, and dropped. What is held across the fleet is what a summary
//! needs: one slug and one id per tenant (the duplicate checks), the diagnostics, the unset
//! environment variables counted by name, and the resources that could not be read.
//!
//! It does what [`super::compile_tenants`] followed by [`super::plan_tenants`] does, with the
//! same diagnostics and the same plans in the same order; a batch is worked on by every core.

use std::collections::BTreeMap;
use std::path::PathBuf;

use rayon::prelude::*;

use super::{plan_tenant, PlanError, Refresh};
use crate::apply::fill_env_fingerprints;
use crate::catalog::Catalog;
use crate::diag::{self, Diagnostic};
use crate::graph;
use crate::plan::{Prepared, Preparer, TenantPlan};
use crate::provider::ProviderError;
use crate::spec::{self, PlatformConfig, TenantSpec};
use crate::state::StateStore;

/// Files read at once: enough to keep every core busy, few enough that a batch's graphs and
/// plans are a few megabytes.
const BATCH: usize = 32;
/// The first batch: small, so that this thread starts handing plans over (rendering, writing,
/// dropping them) while the pool works on the next, even in a plan of a few tenants; each batch
/// after it is twice the one before, up to [`BATCH`].
const FIRST_BATCH: usize = 4;

/// `files` in batches of [`FIRST_BATCH`], twice that, and so on up to [`BATCH`].
fn batches<T>(files: &[T]) -> impl Iterator<Item = &[T]> {
    let mut rest = files;
    let mut size = FIRST_BATCH;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let (batch, after) = rest.split_at(size.min(rest.len()));
        rest = after;
        size = (size * 2).min(BATCH);
        Some(batch)
    })
}

/// What [`stream_tenants`] does with each tenant.
pub struct Stream<'a> {
    /// The recorded state to diff against; `None` to validate only (read, check, compile).
    pub store: Option<&'a dyn StateStore>,
    /// Read live objects through providers before diffing.
    pub refresh: Option<&'a Refresh<'a>>,
    /// Plans only the tenants whose slug it accepts (`--shard`); the others are read, checked and
    /// compiled (for their diagnostics) but not planned.
    pub keep: &'a (dyn Fn(&str) -> bool + Sync),
    /// Renders each plan ahead, on the core that made it (`Preparer::Nothing` when the plans are
    /// not rendered): the caller's renderer then takes it in file order.
    pub prepare: Preparer,
}

/// What is left of a fleet once every tenant went through.
#[derive(Debug, Default)]
pub struct Streamed {
    /// Sorted; the tenants were planned (and handed over) only if none is an error.
    pub diagnostics: Vec<Diagnostic>,
    /// Environment variables named by secrets that are not set, with how many tenants use each
    /// and the first of them.
    pub unset_env: BTreeMap<String, (usize, String)>,
    /// Tenants read and compiled.
    pub tenants: usize,
    /// Tenants kept (planned, when there is a store).
    pub kept: usize,
    /// Resources of the tenants' graphs.
    pub resources: usize,
    /// Resources that could not be read (refresh); a plan made despite them is incomplete.
    pub read_errors: Vec<ProviderError>,
    /// The first tenant (in file order) whose plan could not be made; `None` when there are
    /// error diagnostics, which come first.
    pub failed: Option<PlanError>,
}

/// A tenant's plan, rendered ahead, and the resources its refresh could not read.
type Planned = (TenantPlan, Prepared, Vec<ProviderError>);

/// One tenant of a batch after compile (and diff).
struct Done {
    slug: String,
    kept: bool,
    compile_diags: Vec<Diagnostic>,
    unset: Vec<String>,
    resources: usize,
    planned: Option<Result<Planned, PlanError>>,
}

/// Streams the tenants of `paths` through `with` (see the module doc), calling `each` with every
/// tenant's plan in file order. When a diagnostic is an error, nothing more is handed to `each`
/// (what was handed is to be discarded: callers print nothing of it); the first error of a
/// tenant's plan (a changed id, an applied migration changed, a state that cannot be read) is
/// in [`Streamed::failed`] once everything was read, unless a diagnostic is an error.
pub fn stream_tenants(
    paths: &[PathBuf],
    catalog: &Catalog,
    platform: &PlatformConfig,
    with: &Stream<'_>,
    each: &mut dyn FnMut(TenantPlan, Prepared),
) -> Streamed {
    let mut spec_diags = Vec::new();
    let files = spec::tenant_files(paths, &mut spec_diags);
    let mut admission = spec::Admission::default();
    let mut taken = Taken::default();
    // The batch compiled and planned last, not yet handed over: the next batch is worked on by
    // the pool while this thread hands this one over (renders, writes, drops), so neither waits.
    let mut ready: Vec<Done> = Vec::new();
    let pool = super::RefreshPool::new(with.refresh);
    for batch in batches(&files) {
        let read: Vec<_> = batch.par_iter().map(|f| spec::read_tenant_file(f, catalog)).collect();
        let mut specs: Vec<TenantSpec> = Vec::new();
        for (found, diags) in read {
            spec_diags.extend(diags);
            specs.extend(admission.admit(found, &mut spec_diags));
        }
        // As in `compile_tenants`: an error in any spec means no graph is compiled at all.
        if diag::has_errors(&spec_diags) {
            continue;
        }
        // Plans are made while nothing failed (as far as the batches handed over show; a plan
        // made after a failure in the batch before is dropped unseen); after a failure the
        // tenants are still compiled, for their diagnostics.
        let planning = taken.planning();
        let refreshing = planning && with.refresh.is_some() && with.store.is_some();
        let mut next = Vec::new();
        rayon::in_place_scope(|scope| {
            scope.spawn(|_| {
                next = pool.install(refreshing, || {
                    specs.par_iter().map(|s| one(s, catalog, platform, with, planning)).collect()
                });
            });
            taken.take(std::mem::take(&mut ready), each);
        });
        ready = next;
    }
    taken.take(ready, each);
    let Taken { mut out, compile_diags, first_error } = taken;
    if diag::has_errors(&spec_diags) {
        out.unset_env.clear();
    } else {
        spec_diags.extend(compile_diags);
    }
    diag::sort(&mut spec_diags);
    out.failed = first_error.filter(|_| !diag::has_errors(&spec_diags));
    out.diagnostics = spec_diags;
    out
}

/// What the tenants handed over so far left.
#[derive(Default)]
struct Taken {
    out: Streamed,
    compile_diags: Vec<Diagnostic>,
    first_error: Option<PlanError>,
}

impl Taken {
    fn planning(&self) -> bool {
        self.first_error.is_none() && !diag::has_errors(&self.compile_diags)
    }

    /// Counts a batch and hands its plans to `each`, in order, while nothing failed.
    fn take(&mut self, done: Vec<Done>, each: &mut dyn FnMut(TenantPlan, Prepared)) {
        for d in done {
            self.compile_diags.extend(d.compile_diags);
            for var in d.unset {
                self.out.unset_env.entry(var).or_insert_with(|| (0, d.slug.clone())).0 += 1;
            }
            self.out.tenants += 1;
            self.out.kept += usize::from(d.kept);
            self.out.resources += d.resources;
            match d.planned {
                Some(Ok((plan, prepared, errors))) if self.planning() => {
                    self.out.read_errors.extend(errors);
                    each(plan, prepared);
                }
                Some(Err(e)) if self.first_error.is_none() => self.first_error = Some(e),
                _ => {}
            }
        }
    }
}

/// Compiles one tenant and, when `planning` with a store, plans it.
fn one(spec: &TenantSpec, catalog: &Catalog, platform: &PlatformConfig, with: &Stream<'_>, planning: bool) -> Done {
    let (graph, compile_diags) = graph::compile(spec, catalog, platform);
    let Some(mut graph) = graph else {
        return Done {
            slug: spec.slug.value.clone(),
            kept: false,
            compile_diags,
            unset: Vec::new(),
            resources: 0,
            planned: None,
        };
    };
    let unset = fill_env_fingerprints(&mut graph);
    let resources = graph.len();
    let kept = (with.keep)(&graph.tenant.slug);
    let planned = match with.store {
        Some(store) if kept && planning && !diag::has_errors(&compile_diags) => {
            let planned = plan_tenant(spec, &graph, store, with.refresh, &Default::default());
            Some(planned.map(|(plan, errors)| {
                let prepared = with.prepare.prepare(&plan);
                (plan, prepared, errors)
            }))
        }
        _ => None,
    };
    Done { slug: graph.tenant.slug.clone(), kept, compile_diags, unset, resources, planned }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_start_small_double_and_cover_every_file_once_in_order() {
        let files: Vec<usize> = (0..100).collect();
        let sizes: Vec<usize> = batches(&files).map(<[usize]>::len).collect();
        assert_eq!(sizes, [4, 8, 16, 32, 32, 8]);
        assert_eq!(batches(&files).flatten().copied().collect::<Vec<_>>(), files);
        assert_eq!(batches(&files[..3]).map(<[usize]>::len).collect::<Vec<_>>(), [3]);
        assert_eq!(batches::<usize>(&[]).count(), 0);
    }
}
