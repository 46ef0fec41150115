//! Drift detection (`matih drift`): every recorded resource of every tenant is read back through
//! its provider and compared with the state (was it changed or deleted outside matih?), and the
//! spec is compared with the state (was a change written but never applied?).
//!
//! Findings, one per resource:
//!
//! | kind | meaning | attributes |
//! |---|---|---|
//! | `changed` | the live object differs from what matih recorded | paths, recorded → live |
//! | `deleted` | the object is gone | none |
//! | `read_failed` | the object could not be read (the system is unreachable, no provider is configured, …) | none; `error` says why |
//! | `pending` | the spec differs from the recorded state (diffed without refresh) | the plan's attribute changes |
//!
//! A field of a Kubernetes object whose `metadata.managedFields` ownership moved from matih to a
//! *controller* (any field manager whose name does not start with `kubectl`, e.g. the HPA's
//! `kube-controller-manager` owning `spec.replicas`) is not drift: the Kubernetes provider keeps
//! matih's value for it when it reads the object back and reports it as yielded
//! ([`crate::provider::Observed::yielded`]); drift lists it as `ignored`, with the manager that owns
//! it. A field a person changed with `kubectl` is drift, unless an `ignore_changes` path of the
//! catalog or of the tenant's spec covers it: such a difference (live, or a spec change not
//! applied) is listed as `ignored` too, with where the path is declared.
//!
//! A tenant whose lock is held (an apply or destroy running, or one that crashed) is reported as
//! `busy` and not read.
//!
//! **Invariant:** strictly read-only. Providers are only asked to `read`; nothing is written to the
//! real world; the state store is read from a private copy ([`read_recorded`]), so not even sled's
//! housekeeping touches it.

mod render;
mod store;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::addr::ResourceAddr;
use crate::apply::{read_batch, read_each, Providers};
use crate::graph::{Resource, ResourceGraph};
use crate::phase::Phase;
use crate::plan::{self, Action};
use crate::provider::{ProviderError, ResourceObject, TenantRef};
use crate::state::TenantState;
use crate::value::Value;

pub use render::{render_json, render_markdown, render_text};
pub use store::{read_recorded, recorded_in};

/// The version of the JSON drift report (`matih drift --format json`).
pub const FORMAT_VERSION: &str = "1.0";

/// What a finding says about one resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    /// Changed outside matih.
    Changed,
    /// Deleted outside matih.
    Deleted,
    /// Could not be read.
    ReadFailed,
    /// The spec changed but the change was not applied.
    Pending,
}

impl FindingKind {
    pub fn name(self) -> &'static str {
        match self {
            FindingKind::Changed => "changed",
            FindingKind::Deleted => "deleted",
            FindingKind::ReadFailed => "read_failed",
            FindingKind::Pending => "pending",
        }
    }
}

/// One attribute of a finding: `before` is what matih recorded, `after` what is live (`changed`)
/// or what the spec wants (`pending`). `None`: the attribute is absent on that side.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttrDrift {
    pub path: String,
    pub before: Option<Value>,
    pub after: Option<Value>,
}

/// One finding about one resource of one tenant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub address: ResourceAddr,
    pub phase: Phase,
    pub kind: FindingKind,
    pub attributes: Vec<AttrDrift>,
    /// Why the resource could not be read (`read_failed` only).
    pub error: Option<String>,
    /// What `matih apply` would do (`pending` only).
    pub action: Option<Action>,
}

/// A difference that is not drift: a live field that belongs to another controller, or one an
/// `ignore_changes` path covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ignored {
    pub address: ResourceAddr,
    pub path: String,
    pub why: IgnoredWhy,
}

/// Why a difference is not drift.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IgnoredWhy {
    /// The live field is owned by another controller (its field manager).
    Controller { manager: String },
    /// An `ignore_changes` path of the catalog or the tenant's spec covers it: where it is
    /// declared, the recorded value (`before`) and the live one, or the spec's when `spec` is set
    /// (a spec change left alone).
    Declared { at: String, before: Option<Value>, after: Option<Value>, spec: bool },
}

impl Ignored {
    fn declared(c: plan::IgnoredChange, spec: bool) -> Ignored {
        let plan::IgnoredChange { address, path, before, after, declared_at } = c;
        Ignored { address, path, why: IgnoredWhy::Declared { at: declared_at, before, after, spec } }
    }
}

/// How a tenant's check went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TenantStatusKind {
    /// Checked; no findings.
    InSync,
    /// Checked; at least one finding.
    Drifted,
    /// Not read: its lock is held, or the state store is in use by another matih process.
    Busy(String),
}

/// The drift report of one tenant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TenantReport {
    pub slug: String,
    pub tenant_id: String,
    pub source: Option<PathBuf>,
    /// The serial of the recorded state compared with (`None`: nothing recorded).
    pub serial: Option<u64>,
    pub status: TenantStatusKind,
    /// Sorted by phase, then address, then kind.
    pub findings: Vec<Finding>,
    pub ignored: Vec<Ignored>,
    /// Resources read back.
    pub read: usize,
}

/// The drift report of every tenant checked, in the order of the specs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    pub tenants: Vec<TenantReport>,
}

/// Counts over a report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub tenants: usize,
    pub in_sync: usize,
    pub drifted: usize,
    pub busy: usize,
    pub changed: usize,
    pub deleted: usize,
    pub read_failed: usize,
    pub pending: usize,
    pub ignored: usize,
}

impl Report {
    pub fn counts(&self) -> Counts {
        let mut c = Counts { tenants: self.tenants.len(), ..Counts::default() };
        for t in &self.tenants {
            match t.status {
                TenantStatusKind::InSync => c.in_sync += 1,
                TenantStatusKind::Drifted => c.drifted += 1,
                TenantStatusKind::Busy(_) => c.busy += 1,
            }
            c.ignored += t.ignored.len();
            for f in &t.findings {
                match f.kind {
                    FindingKind::Changed => c.changed += 1,
                    FindingKind::Deleted => c.deleted += 1,
                    FindingKind::ReadFailed => c.read_failed += 1,
                    FindingKind::Pending => c.pending += 1,
                }
            }
        }
        c
    }

    /// True when any tenant has a finding (what `--detailed-exitcode` turns into exit 2).
    pub fn has_drift(&self) -> bool {
        self.tenants.iter().any(|t| !t.findings.is_empty())
    }
}

/// What is known of a tenant before its resources are read.
pub struct TenantInput {
    pub graph: ResourceGraph,
    pub source: Option<PathBuf>,
    pub recorded: Recorded,
}

/// The recorded state of a tenant, as the CLI read it from the store.
// One value per tenant, moved once: the size difference costs nothing worth a Box.
#[allow(clippy::large_enum_variant)]
pub enum Recorded {
    /// Nothing recorded yet, or the recorded state.
    State(Option<TenantState>),
    /// Not to be read; the reason (who holds the lock).
    Busy(String),
}

/// Limits of a drift run.
#[derive(Clone, Debug)]
pub struct DriftOptions {
    /// Tenants checked at once.
    pub tenant_concurrency: usize,
    /// Reads at once inside one tenant.
    pub read_parallelism: usize,
    /// One read that takes longer than this fails (`read_failed`) instead of holding up the run.
    pub read_timeout: Duration,
    /// Providers that could not be set up, by kind prefix (`postgresql_`), with the reason: their
    /// resources are `read_failed` with that reason.
    pub unavailable: BTreeMap<String, String>,
}

impl Default for DriftOptions {
    fn default() -> Self {
        DriftOptions {
            tenant_concurrency: 4,
            read_parallelism: 8,
            read_timeout: Duration::from_secs(60),
            unavailable: BTreeMap::new(),
        }
    }
}

/// Checks every tenant, at most `opts.tenant_concurrency` at once. Never fails as a whole: what
/// cannot be read becomes a `read_failed` finding of its tenant.
pub async fn check(inputs: Vec<TenantInput>, providers: &Providers, opts: &DriftOptions) -> Report {
    let limit = Arc::new(Semaphore::new(opts.tenant_concurrency.max(1)));
    let mut set = JoinSet::new();
    for (i, input) in inputs.into_iter().enumerate() {
        let (limit, providers, opts) = (limit.clone(), providers.clone(), opts.clone());
        set.spawn(async move {
            let _permit = limit.acquire_owned().await.expect("never closed");
            (i, check_tenant(input, &providers, &opts).await)
        });
    }
    let mut done = Vec::new();
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok(r) => done.push(r),
            Err(panic) => std::panic::resume_unwind(panic.into_panic()),
        }
    }
    done.sort_by_key(|(i, _)| *i);
    Report { tenants: done.into_iter().map(|(_, r)| r).collect() }
}

/// Checks one tenant: pending changes from the spec, then every recorded resource read back.
pub async fn check_tenant(input: TenantInput, providers: &Providers, opts: &DriftOptions) -> TenantReport {
    let TenantInput { graph, source, recorded } = input;
    let mut report = TenantReport {
        slug: graph.tenant.slug.clone(),
        tenant_id: graph.tenant.id.clone(),
        source: source.clone(),
        serial: None,
        status: TenantStatusKind::InSync,
        findings: Vec::new(),
        ignored: Vec::new(),
        read: 0,
    };
    let state = match recorded {
        Recorded::Busy(reason) => {
            report.status = TenantStatusKind::Busy(reason);
            return report;
        }
        Recorded::State(state) => state,
    };
    report.serial = state.as_ref().map(|s| s.serial);

    // Spec changed but not applied: the plan against the recorded state, without refresh.
    let mut pending = plan::diff(&graph, state.as_ref(), source);
    report.ignored.extend(pending.ignored.drain(..).map(|c| Ignored::declared(c, true)));
    for c in pending.resource_changes.iter().filter(|c| c.action != Action::NoOp) {
        report.findings.push(Finding {
            address: c.address.clone(),
            phase: c.phase,
            kind: FindingKind::Pending,
            attributes: c
                .changes
                .iter()
                .map(|a| AttrDrift { path: a.path.clone(), before: a.before.clone(), after: a.after.clone() })
                .collect(),
            error: None,
            action: Some(c.action),
        });
    }

    if let Some(state) = &state {
        read_back(&mut report, &graph, state, providers, opts).await;
    }
    report.findings.sort_by(|a, b| (a.phase, &a.address, a.kind).cmp(&(b.phase, &b.address, b.kind)));
    if !report.findings.is_empty() {
        report.status = TenantStatusKind::Drifted;
    }
    report
}

type ReadResult = Result<Option<crate::provider::Observed>, String>;

/// Reads every recorded resource back and adds `changed`, `deleted` and `read_failed` findings.
async fn read_back(
    report: &mut TenantReport,
    graph: &ResourceGraph,
    state: &TenantState,
    providers: &Providers,
    opts: &DriftOptions,
) {
    let tenant = TenantRef { slug: state.slug.clone(), id: state.tenant_id.clone() };
    let mut results: BTreeMap<ResourceAddr, ReadResult> = BTreeMap::new();
    let mut queue: Vec<ResourceObject> = Vec::new();
    for (addr, r) in &state.resources {
        if providers.for_kind(&addr.kind).is_some() {
            queue.push(ResourceObject::new(addr.clone(), r.attrs.clone()));
        } else {
            let why = opts.unavailable.iter().find(|(prefix, _)| addr.kind.starts_with(prefix.as_str()));
            let error = match why {
                Some((_, reason)) => reason.clone(),
                None => format!("no provider for {} is configured, so it was not read", addr.kind),
            };
            results.insert(addr.clone(), Err(error));
        }
    }
    let timeout = opts.read_timeout;
    if crate::provider::read_one_by_one_forced() {
        let read = read_each(queue, providers, opts.read_parallelism, move |provider, obj| {
            let tenant = tenant.clone();
            async move {
                match tokio::time::timeout(timeout, provider.read(&tenant, &obj)).await {
                    Ok(Ok(observed)) => Ok(observed),
                    Ok(Err(e)) => Err(describe(&e)),
                    Err(_) => Err(format!("no answer within {}s", timeout.as_secs())),
                }
            }
        })
        .await;
        results.extend(read);
    } else {
        // Each provider's objects together (`read_many`); one that does not answer in time is
        // read again object by object, so that only what hangs fails.
        let read = read_batch(&tenant, &queue, providers, opts.read_parallelism, Some(timeout)).await;
        results.extend(queue.iter().zip(read).map(|(obj, r)| (obj.addr.clone(), r.map_err(|e| describe(&e)))));
    }

    // The live attributes of the resources that changed, as a graph to diff the state against:
    // `before` is then what matih recorded and `after` what is live, path by path, with the plan's
    // rules (secrets compared by fingerprint).
    let mut live = ResourceGraph::new(graph.tenant.clone());
    live.ignore_changes = graph.ignore_changes.clone();
    let mut recorded = TenantState { resources: BTreeMap::new(), ..state.clone() };
    for (addr, r) in results {
        let rec = &state.resources[&addr];
        report.read += usize::from(r.is_ok());
        if let Ok(Some(observed)) = &r {
            for y in &observed.yielded {
                report.ignored.push(Ignored {
                    address: addr.clone(),
                    path: y.path.clone(),
                    why: IgnoredWhy::Controller { manager: y.manager.clone() },
                });
            }
        }
        match r {
            Ok(None) => report.findings.push(finding(addr, rec.phase, FindingKind::Deleted)),
            Ok(Some(observed)) if observed.attrs != rec.attrs => {
                live.add(Resource {
                    addr: addr.clone(),
                    phase: rec.phase,
                    attrs: observed.attrs,
                    depends_on: BTreeSet::new(),
                    force_new: BTreeSet::new(),
                    origin: None,
                });
                recorded.resources.insert(addr, rec.clone());
            }
            Ok(Some(_)) => {}
            Err(error) => {
                let mut f = finding(addr, rec.phase, FindingKind::ReadFailed);
                f.error = Some(error);
                report.findings.push(f);
            }
        }
    }
    let mut diffed = plan::diff(&live, Some(&recorded), None);
    report.ignored.extend(diffed.ignored.drain(..).map(|c| Ignored::declared(c, false)));
    for c in diffed.resource_changes.into_iter().filter(|c| c.action != Action::NoOp) {
        let attributes: Vec<AttrDrift> =
            c.changes.into_iter().map(|a| AttrDrift { path: a.path, before: a.before, after: a.after }).collect();
        if !attributes.is_empty() {
            let mut f = finding(c.address, c.phase, FindingKind::Changed);
            f.attributes = attributes;
            report.findings.push(f);
        }
    }
}

fn finding(address: ResourceAddr, phase: Phase, kind: FindingKind) -> Finding {
    Finding { address, phase, kind, attributes: Vec::new(), error: None, action: None }
}

/// The error of a read, without the address (the finding carries it).
fn describe(e: &ProviderError) -> String {
    match &e.path {
        Some(p) => format!("{} ({p})", e.message),
        None => e.message.clone(),
    }
}

#[cfg(test)]
mod tests;
