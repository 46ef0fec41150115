//! A fleet in bounded memory: `validate` and `plan` of any number of tenants, each file a job of
//! the pool (read, check, compile, read state, refresh, diff, render ahead; [`CHECKED_PER_JOB`]
//! files a job when nothing is planned), at most [`IN_FLIGHT_PER_THREAD`] jobs per thread of the
//! pool ahead of the one handed over; each tenant's plan is handed to the caller in file order
//! with its rendering as soon as it and every file before it are done, and dropped. No batch
//! waits for its slowest tenant. What is held across the fleet is what a summary needs: one slug and one id per tenant (the
//! duplicate checks), the diagnostics, the unset environment variables counted by name, and the
//! resources that could not be read.
//!
//! It does what [`super::compile_tenants`] followed by [`super::plan_tenants`] does, with the
//! same diagnostics and the same plans in the same order. A job compiles its file's tenants
//! before the checks across files (duplicate slugs and ids, made in file order by this thread)
//! saw them: what they reject is dropped unseen, as is a plan made after a failure.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;

use super::{plan_tenant, PlanError, Refresh};
use crate::apply::fill_env_fingerprints;
use crate::catalog::Catalog;
use crate::diag::{self, Diagnostic};
use crate::graph;
use crate::plan::{Prepared, Preparer, TenantPlan};
use crate::provider::ProviderError;
use crate::spec::{self, FileTenants, PlatformConfig, TenantSpec};
use crate::state::StateStore;

/// Jobs worked on ahead of the one handed over, per thread of the pool: enough to keep every
/// thread busy while one tenant takes longer than the others (a refresh waits for servers), few
/// enough that their graphs and plans are a few megabytes. More costs time as well as memory: a
/// 20-tenant plan all at once took 18.3 ms, against 16.0 ms four at a time on two cores.
const IN_FLIGHT_PER_THREAD: usize = 2;
/// Files per job when nothing is planned (`validate`): a job then holds only diagnostics, and one
/// file is so little work that handing each over on its own cost a 1,000-tenant check 8%.
const CHECKED_PER_JOB: usize = 16;

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

/// One tenant of a file after compile (and diff).
struct Done {
    slug: String,
    kept: bool,
    compile_diags: Vec<Diagnostic>,
    unset: Vec<String>,
    resources: usize,
    planned: Option<Result<Planned, PlanError>>,
}

/// One file after its job: its tenants as read, their diagnostics, and each valid spec compiled
/// (and planned), in the order of `FileTenants::specs`; nothing compiled when the file has errors.
struct FileDone {
    found: FileTenants,
    diags: Vec<Diagnostic>,
    done: Vec<Done>,
}

/// What the jobs are told by the thread that hands their tenants over.
#[derive(Default)]
struct Told {
    /// A spec error was found: nothing is compiled any more (the diagnostics are all that count).
    no_compile: AtomicBool,
    /// A plan failed or a diagnostic is an error: tenants are compiled (for their diagnostics),
    /// not planned.
    no_plan: AtomicBool,
}

/// Streams the tenants of `paths` through `with` (see the module doc), calling `each` with every
/// tenant's plan in file order. When a diagnostic is an error, nothing more is handed to `each`
/// (what was handed is to be discarded: callers print nothing of it); the first error of a
/// tenant's plan (a changed id, an applied migration changed, a state that cannot be read) is
/// in [`Streamed::failed`] once everything was read, unless a diagnostic is an error. To be
/// called from outside the pool: this thread waits for the jobs, it does not run them.
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
    let told = Told::default();
    let mut spec_failed = diag::has_errors(&spec_diags);
    told.no_compile.store(spec_failed, Ordering::Relaxed);
    let pool = super::RefreshPool::new(with.refresh);
    let (tx, rx) = mpsc::channel();
    let per_job = if with.store.is_some() { 1 } else { CHECKED_PER_JOB };
    let jobs: Vec<&[PathBuf]> = files.chunks(per_job).collect();
    pool.in_place_scope_fifo(|scope| {
        let (jobs, told) = (&jobs, &told);
        let start = |i: usize| {
            let tx = tx.clone();
            scope.spawn_fifo(move |_| {
                let work = || jobs[i].iter().map(|f| work(f, catalog, platform, with, told)).collect::<Vec<_>>();
                // A panic is resumed by the thread that waits for this job, not lost with it.
                let _ = tx.send((i, std::panic::catch_unwind(std::panic::AssertUnwindSafe(work))));
            });
        };
        let mut started = jobs.len().min(IN_FLIGHT_PER_THREAD * pool.threads());
        (0..started).for_each(start);
        // Jobs done ahead of the one to hand over next.
        let mut ahead = BTreeMap::new();
        for i in 0..jobs.len() {
            let job = loop {
                if let Some(job) = ahead.remove(&i) {
                    break job;
                }
                let (j, job) = rx.recv().expect("a job sends before it ends");
                ahead.insert(j, job);
            };
            if started < jobs.len() {
                start(started);
                started += 1;
            }
            for FileDone { found, diags, done } in job.unwrap_or_else(|panic| std::panic::resume_unwind(panic)) {
                let seen = spec_diags.len();
                spec_diags.extend(diags);
                let admitted = admission.admit_each(found, &mut spec_diags);
                spec_failed |= diag::has_errors(&spec_diags[seen..]);
                // As in `compile_tenants`: an error in any spec means no graph is compiled at all.
                if spec_failed {
                    told.no_compile.store(true, Ordering::Relaxed);
                    continue;
                }
                debug_assert_eq!(done.len(), admitted.len());
                let done = done.into_iter().zip(admitted).filter_map(|(d, a)| a.then_some(d));
                taken.take(done, each);
                if !taken.planning() {
                    told.no_plan.store(true, Ordering::Relaxed);
                }
            }
        }
    });
    let Taken { mut out, compile_diags, first_error, .. } = taken;
    if spec_failed {
        out.unset_env.clear();
    } else {
        spec_diags.extend(compile_diags);
    }
    diag::sort(&mut spec_diags);
    out.failed = first_error.filter(|_| !diag::has_errors(&spec_diags));
    out.diagnostics = spec_diags;
    out
}

/// The job of one file: reads it and compiles (and plans) each valid spec, unless told not to.
fn work(
    file: &std::path::Path,
    catalog: &Catalog,
    platform: &PlatformConfig,
    with: &Stream<'_>,
    told: &Told,
) -> FileDone {
    let (found, diags) = spec::read_tenant_file(file, catalog);
    let compile = !diag::has_errors(&diags) && !told.no_compile.load(Ordering::Relaxed);
    let done = if compile {
        let planning = !told.no_plan.load(Ordering::Relaxed);
        found.specs().map(|s| one(s, catalog, platform, with, planning)).collect()
    } else {
        Vec::new()
    };
    FileDone { found, diags, done }
}

/// What the tenants handed over so far left.
#[derive(Default)]
struct Taken {
    out: Streamed,
    compile_diags: Vec<Diagnostic>,
    /// Whether one of `compile_diags` is an error, kept as they come: asked after every tenant.
    compile_failed: bool,
    first_error: Option<PlanError>,
}

impl Taken {
    fn planning(&self) -> bool {
        self.first_error.is_none() && !self.compile_failed
    }

    /// Counts tenants and hands their plans to `each`, in order, while nothing failed.
    fn take(&mut self, done: impl Iterator<Item = Done>, each: &mut dyn FnMut(TenantPlan, Prepared)) {
        for d in done {
            self.compile_failed |= diag::has_errors(&d.compile_diags);
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
    let slug = graph.tenant.slug.clone();
    let kept = (with.keep)(&slug);
    let planned = match with.store {
        Some(store) if kept && planning && !diag::has_errors(&compile_diags) => {
            let planned = plan_tenant(spec, Cow::Owned(graph), store, with.refresh, &Default::default());
            Some(planned.map(|(plan, errors)| {
                let prepared = with.prepare.prepare(&plan);
                (plan, prepared, errors)
            }))
        }
        _ => None,
    };
    Done { slug, kept, compile_diags, unset, resources, planned }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::ResourceGraph;
    use crate::state::{MemoryStore, TenantState};
    use std::fs;

    /// Many more files than are in flight, even on a pool of 16 threads.
    const FLEET: usize = 71;

    fn catalog() -> Catalog {
        Catalog::embedded().expect("the embedded catalog loads")
    }

    /// `n` tenant files `t000.hcl`…, one tenant each, with file `i`'s text passed through `edit`.
    fn fleet(dir: &std::path::Path, n: usize, edit: impl Fn(usize, String) -> String) -> Vec<PathBuf> {
        for i in 0..n {
            let spec = format!(
                "tenant \"t{i:03}\" {{\n  id          = \"{i:08x}-0000-4000-8000-{i:012x}\"\n  tier        = \"free\"\n  \
                 region      = \"eastus\"\n  admin_email = \"admin@t{i:03}.example\"\n}}\n"
            );
            fs::write(dir.join(format!("t{i:03}.hcl")), edit(i, spec)).unwrap();
        }
        vec![dir.to_path_buf()]
    }

    /// The fleet streamed against `store` (`None`: checked only, many files a job), with the
    /// slugs handed over, in order.
    fn streamed(paths: &[PathBuf], store: Option<&dyn StateStore>) -> (Streamed, Vec<String>) {
        let keep = |_: &str| true;
        let with = Stream { store, refresh: None, keep: &keep, prepare: Preparer::Nothing };
        let mut handed = Vec::new();
        let out = stream_tenants(paths, &catalog(), &PlatformConfig::default(), &with, &mut |t, _| handed.push(t.slug));
        (out, handed)
    }

    fn texts(diags: &[Diagnostic]) -> Vec<String> {
        diags.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn a_fleet_is_handed_over_whole_and_in_file_order_past_the_files_in_flight() {
        let dir = tempfile::tempdir().unwrap();
        let n = FLEET;
        let paths = fleet(dir.path(), n, |_, s| s);
        let (out, handed) = streamed(&paths, Some(&MemoryStore::new()));
        let whole = super::super::compile_tenants(&paths, &catalog(), &PlatformConfig::default());
        assert_eq!(handed, (0..n).map(|i| format!("t{i:03}")).collect::<Vec<_>>());
        assert_eq!((out.tenants, out.kept), (n, n));
        assert_eq!(out.resources, whole.graphs.iter().map(ResourceGraph::len).sum::<usize>());
        assert_eq!(texts(&out.diagnostics), texts(&whole.diagnostics));
        assert!(out.failed.is_none());
        let (checked, handed) = streamed(&paths, None);
        assert!(handed.is_empty(), "nothing planned");
        assert_eq!((checked.tenants, checked.resources), (n, out.resources));
    }

    #[test]
    fn duplicates_and_errors_past_the_files_in_flight_are_reported_as_the_whole_fleet_reports_them() {
        let dir = tempfile::tempdir().unwrap();
        let n = FLEET;
        // A slug taken again near the end, an id taken again, and a spec error after both.
        let paths = fleet(dir.path(), n, |i, s| match i {
            i if i == n - 6 => s.replace(&format!("\"t{i:03}\""), "\"t001\""),
            i if i == n - 4 => {
                s.replace(&format!("{i:08x}-0000-4000-8000-{i:012x}"), "00000002-0000-4000-8000-000000000002")
            }
            i if i == n - 2 => s.replace("tier        = \"free\"", "tier        = \"gold\""),
            _ => s,
        });
        let whole = super::super::compile_tenants(&paths, &catalog(), &PlatformConfig::default());
        for store in [Some(&MemoryStore::new() as &dyn StateStore), None] {
            let (out, _) = streamed(&paths, store);
            let found = texts(&out.diagnostics);
            assert_eq!(found, texts(&whole.diagnostics));
            assert_eq!(found.iter().filter(|d| d.contains("duplicate tenant")).count(), 2, "{found:#?}");
            assert!(found.iter().any(|d| d.contains("gold")), "{found:#?}");
            assert!(out.unset_env.is_empty() && out.failed.is_none());
        }
    }

    #[test]
    fn after_a_tenant_whose_plan_fails_nothing_more_is_handed_over_and_the_first_failure_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let n = FLEET;
        let paths = fleet(dir.path(), n, |_, s| s);
        let store = MemoryStore::new();
        // Recorded under other ids: the plans of t040 and t050 fail, the first one counts.
        for slug in ["t040", "t050"] {
            let mut state = TenantState::new(slug, "99999999-0000-4000-8000-000000000000");
            state.serial = 1;
            store.put(&state, None, "test").unwrap();
        }
        let (out, handed) = streamed(&paths, Some(&store));
        assert_eq!(handed, (0..40).map(|i| format!("t{i:03}")).collect::<Vec<_>>());
        match out.failed {
            Some(PlanError::IdChanged { slug, .. }) => assert_eq!(slug, "t040"),
            other => panic!("{other:?}"),
        }
        assert_eq!(out.tenants, n, "every tenant is still read and compiled");
    }
}
