//! Apply: executes a tenant's plan through the providers, phase by phase, recording every finished
//! operation in the state store at once.
//!
//! Order. Creates, updates and replaces run in phase order 1 → 10; inside a phase, in waves: a change
//! starts once every change it depends on has finished, with at most `parallelism` running at once.
//! Deletes of resources no longer desired run after that, in reverse: phase 10 → 1, dependents
//! before their dependencies. A replace deletes the old object, then creates the new one.
//!
//! Failure. A transient provider error is retried with exponential backoff. When a change of a
//! phase still fails, the changes already running finish and are recorded, then the phase is rolled
//! back: what this run created in that phase is deleted again, newest first (updates of objects that
//! existed before are not undone: the previous object is gone). With [`OnFailure::Halt`] the phase is
//! left as it is, for debugging. The tenant is marked FAILED with the error and the phase; a later
//! apply resumes from what the state records.
//!
//! Crash safety. Before an operation starts, a write-ahead record (`in_flight`: action, phase, start
//! time, the attributes asked for) is written to the tenant's state; the outcome replaces it in one
//! write. A run killed in between leaves the record: the next refresh and the next apply read the
//! object it names and adopt it into the state when it exists ([`recover_in_flight`]), so nothing is
//! created twice or left unrecorded. Every write also appends to the tenant's audit log (runs,
//! phases, operations, with outcome and duration; never attribute values) in the same transaction.
//!
//! Finalization. A run that reaches the end records its total duration, logs it, and calls
//! [`Hooks::tenant_finished`] (also on failure); a destroy that deleted everything removes the
//! tenant's state (its history and audit log stay).
//!
//! **Invariant:** knows nothing of Kubernetes, PostgreSQL or DNS: it talks to providers through the
//! [`Provider`] trait and to the state through [`StateStore`]. The only writer of a tenant's state
//! during an apply is the loop in [`apply_tenant`]; operations run concurrently but report back to it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

mod console;
mod events;
pub mod feed;
mod fleet;
mod progress;
mod refresh;
mod waves;
pub use console::ConsoleHooks;
pub use events::{write_event, EventHooks, SHARED_FLUSH_TIMEOUT};
pub use fleet::{apply_fleet, BoxFuture, FleetOptions, Replan};
pub use progress::LiveHooks;
pub use refresh::{changed_since_planned, read_unrecorded, recover_in_flight, refresh, Refreshed};
pub(crate) use refresh::{read_batch, read_each};
use waves::Waves;

use crate::addr::ResourceAddr;
use crate::kind;
use crate::phase::Phase;
use crate::plan::{Action, PriorState, ResourceChange, TenantPlan};
use crate::provider::{Observed, Provider, ProviderError, ResourceObject, TenantRef};
use crate::state::{
    self, AuditEntry, InFlight, LockInfo, PhaseRun, PhaseState, ResourceState, StateError, StateStore, TenantState,
    TenantStatus,
};
use crate::value::Value;

/// How an apply behaves. `Default` gives the CLI's defaults.
#[derive(Clone, Debug)]
pub struct ApplyOptions {
    /// Operations running at once inside one tenant's phase.
    pub parallelism: usize,
    /// Attempts per operation for transient errors (1 = no retry).
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// What this run does; the history and the lock call it by [`Operation::name`].
    pub operation: Operation,
    /// How long to keep trying for a tenant's lock held by another run (zero: fail at once).
    pub lock_timeout: Duration,
    /// What to do with a phase that failed.
    pub on_failure: OnFailure,
    /// Slugs whose spec sets `protect_database = true`: a plan that deletes or replaces their
    /// database or schema is refused unless `allow_data_loss`.
    pub protected: BTreeSet<String>,
    pub allow_data_loss: bool,
}

/// Operations running at once inside one tenant's phase, unless `--parallelism` says otherwise;
/// also the reads at once per tenant of a refresh.
pub const DEFAULT_PARALLELISM: usize = 10;

/// What a run over a tenant does: make it match its plan, or delete all of it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Operation {
    #[default]
    Apply,
    Destroy,
}

impl Operation {
    /// How the history, the audit log and the locks name it.
    pub fn name(self) -> &'static str {
        match self {
            Operation::Apply => "apply",
            Operation::Destroy => "destroy",
        }
    }
}

impl Default for ApplyOptions {
    fn default() -> Self {
        ApplyOptions {
            parallelism: DEFAULT_PARALLELISM,
            max_attempts: 5,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            operation: Operation::Apply,
            lock_timeout: Duration::ZERO,
            on_failure: OnFailure::Rollback,
            protected: BTreeSet::new(),
            allow_data_loss: false,
        }
    }
}

/// What an apply does with a phase in which an operation failed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OnFailure {
    /// Delete what this run created in the phase, newest first (the guide's phase rollback).
    #[default]
    Rollback,
    /// Leave everything as it is, for debugging; the next apply resumes from it.
    Halt,
}

/// The changes of `plan` that would lose the tenant's data (delete or replace a database or schema).
pub fn data_loss(plan: &TenantPlan) -> Vec<&ResourceChange> {
    plan.resource_changes
        .iter()
        .filter(|c| matches!(c.action, Action::Delete | Action::Replace))
        .filter(|c| kind::holds_data(&c.address.kind))
        .collect()
}

/// How one tenant's run ended, for [`Hooks::tenant_finished`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunOutcome {
    /// `Active`, `Destroyed` or `Failed` (or the status kept when there was nothing to do).
    pub status: TenantStatus,
    pub duration: Duration,
    /// Operations that finished.
    pub operations: usize,
    pub error: Option<String>,
}

/// Progress callbacks, so that the engine does not know whether it is watched by a terminal, the
/// event stream and feed ([`EventHooks`]) or the notifications. Every method has an empty default;
/// several hooks watch one run through a [`HookList`]. Each method is the event of the same name
/// (`crate::events`).
pub trait Hooks: Send + Sync {
    /// A run over `tenant` begins, with `changes` operations planned.
    fn tenant_started(&self, _tenant: &str, _changes: usize) {}
    /// A run over `tenant` that had changes to make ended (successfully or not), with how.
    fn tenant_finished(&self, _tenant: &str, _outcome: &RunOutcome) {}
    fn phase_started(&self, _tenant: &str, _phase: Phase) {}
    fn phase_finished(&self, _tenant: &str, _phase: Phase, _ok: bool, _elapsed: Duration) {}
    fn resource_started(&self, _tenant: &str, _addr: &ResourceAddr, _action: Action) {}
    fn resource_retrying(&self, _tenant: &str, _err: &ProviderError, _attempt: u32, _delay: Duration) {}
    fn resource_finished(
        &self,
        _tenant: &str,
        _addr: &ResourceAddr,
        _action: Action,
        _result: Result<Duration, &ProviderError>,
    ) {
    }
    fn rollback_started(&self, _tenant: &str, _phase: Phase, _resources: usize) {}
    /// Something a person watching the run should know about a tenant that is neither a phase nor
    /// a resource: set aside because another run holds it, planned again, nothing left to do.
    fn tenant_note(&self, _tenant: &str, _note: &str) {}
}

/// Hooks that do nothing.
pub struct NoHooks;

impl Hooks for NoHooks {}

/// Several hooks watching one run, each told every event in turn (as OpenTofu's operations hold
/// a list of hooks).
#[derive(Clone, Default)]
pub struct HookList(Vec<Arc<dyn Hooks>>);

impl HookList {
    pub fn new(hooks: Vec<Arc<dyn Hooks>>) -> HookList {
        HookList(hooks)
    }
}

impl Hooks for HookList {
    fn tenant_started(&self, tenant: &str, changes: usize) {
        self.0.iter().for_each(|h| h.tenant_started(tenant, changes));
    }
    fn tenant_finished(&self, tenant: &str, outcome: &RunOutcome) {
        self.0.iter().for_each(|h| h.tenant_finished(tenant, outcome));
    }
    fn phase_started(&self, tenant: &str, phase: Phase) {
        self.0.iter().for_each(|h| h.phase_started(tenant, phase));
    }
    fn phase_finished(&self, tenant: &str, phase: Phase, ok: bool, elapsed: Duration) {
        self.0.iter().for_each(|h| h.phase_finished(tenant, phase, ok, elapsed));
    }
    fn resource_started(&self, tenant: &str, addr: &ResourceAddr, action: Action) {
        self.0.iter().for_each(|h| h.resource_started(tenant, addr, action));
    }
    fn resource_retrying(&self, tenant: &str, err: &ProviderError, attempt: u32, delay: Duration) {
        self.0.iter().for_each(|h| h.resource_retrying(tenant, err, attempt, delay));
    }
    fn resource_finished(
        &self,
        tenant: &str,
        addr: &ResourceAddr,
        action: Action,
        result: Result<Duration, &ProviderError>,
    ) {
        self.0.iter().for_each(|h| h.resource_finished(tenant, addr, action, result));
    }
    fn rollback_started(&self, tenant: &str, phase: Phase, resources: usize) {
        self.0.iter().for_each(|h| h.rollback_started(tenant, phase, resources));
    }
    fn tenant_note(&self, tenant: &str, note: &str) {
        self.0.iter().for_each(|h| h.tenant_note(tenant, note));
    }
}

/// The providers an apply may use, asked in order which one handles a kind.
#[derive(Clone, Default)]
pub struct Providers {
    list: Vec<Arc<dyn Provider>>,
}

impl Providers {
    pub fn new() -> Self {
        Providers::default()
    }

    /// No provider configured: nothing can be read or changed in the real world.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    pub fn with(mut self, provider: Arc<dyn Provider>) -> Self {
        self.list.push(provider);
        self
    }

    pub fn for_kind(&self, kind: &str) -> Option<&Arc<dyn Provider>> {
        self.list.iter().find(|p| p.handles(kind))
    }

    /// The kinds a plan needs that no provider handles, sorted.
    pub fn missing(&self, plan: &TenantPlan) -> BTreeSet<String> {
        plan.resource_changes
            .iter()
            .filter(|c| c.action != Action::NoOp)
            .map(|c| c.address.kind.clone())
            .filter(|k| self.for_kind(k).is_none())
            .collect()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(
        "the state of tenant {slug:?} changed since the plan was made (planned against {}, found {}); run matih plan again",
        show_prior(.planned),
        show_prior(.found)
    )]
    StateMoved { slug: String, planned: Option<PriorState>, found: Option<PriorState> },
    #[error("no provider handles the resource kinds {kinds:?} (tenant {slug:?})")]
    NoProvider { slug: String, kinds: Vec<String> },
    #[error("tenant {slug:?} failed in phase {}/10 {}: {}{}", .phase.number(), .phase.name(), join_errors(.errors), rollback_note(.rolled_back, .rollback_errors))]
    Failed {
        slug: String,
        phase: Phase,
        errors: Vec<ProviderError>,
        rolled_back: Vec<ResourceAddr>,
        rollback_errors: Vec<ProviderError>,
    },
    #[error(
        "environment variable{} {} not set (tenant {slug:?} needs {} for a secret); nothing was changed",
        if .vars.len() == 1 { "" } else { "s" },
        .vars.join(", "),
        if .vars.len() == 1 { "it" } else { "them" }
    )]
    MissingEnv { slug: String, vars: Vec<String> },
    #[error(
        "tenant {slug:?} protects its database (protect_database = true) and this run would delete or replace {}; \
         nothing was changed (pass --allow-data-loss to go ahead)",
        .resources.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
    )]
    Protected { slug: String, resources: Vec<ResourceAddr> },
    /// The tenant's lock is held by another run (`waited` zero: no `--lock-timeout` was given).
    #[error("{source}; nothing was changed ({})", lock_wait_note(*.waited))]
    LockTimeout { waited: Duration, source: StateError },
    #[error(
        "tenant {slug:?}: another run changed its state, and planning it again failed: {message}; nothing was changed"
    )]
    Replan { slug: String, message: String },
    #[error(transparent)]
    State(#[from] StateError),
}

impl ApplyError {
    /// Whether the tenant was refused before anything was done to it (a lock held elsewhere, a
    /// stale plan, a missing variable or provider, protection), as opposed to a run that failed.
    pub fn changed_nothing(&self) -> bool {
        !matches!(self, ApplyError::Failed { .. } | ApplyError::State(_))
    }
}

/// How a refused lock says what to do: wait for it, or that the wait ran out.
fn lock_wait_note(waited: Duration) -> String {
    if waited.is_zero() {
        "use --lock-timeout to wait for it".to_string()
    } else {
        format!("still locked after waiting {}", humantime::format_duration(waited))
    }
}

/// Every `env:NAME` secret source inside a value.
fn env_sources<'a>(v: &'a Value, out: &mut std::collections::BTreeSet<&'a str>) {
    match v {
        Value::Secret(s) => {
            if let Some(var) = s.source.strip_prefix("env:") {
                out.insert(var);
            }
        }
        Value::List(items) => items.iter().for_each(|x| env_sources(x, out)),
        Value::Map(m) => m.values().for_each(|x| env_sources(x, out)),
        _ => {}
    }
}

/// Fills the fingerprint of every secret taken from the environment (`env:NAME`) with the
/// fingerprint of the variable's current value, so that a plan sees a changed webhook URL as a
/// change. Returns the names of the variables that are not set (their secrets keep no fingerprint,
/// which the plan treats as "keep what is recorded").
pub fn fill_env_fingerprints(graph: &mut crate::graph::ResourceGraph) -> Vec<String> {
    fn fill(v: &mut Value, missing: &mut std::collections::BTreeSet<String>) {
        match v {
            Value::Secret(s) => {
                if let Some(var) = s.source.strip_prefix("env:") {
                    match std::env::var(var) {
                        Ok(clear) => s.fingerprint = Some(crate::value::fingerprint(&clear)),
                        Err(_) => {
                            missing.insert(var.to_string());
                        }
                    }
                }
            }
            Value::List(items) => items.iter_mut().for_each(|x| fill(x, missing)),
            Value::Map(m) => m.values_mut().for_each(|x| fill(x, missing)),
            _ => {}
        }
    }
    let mut missing = std::collections::BTreeSet::new();
    for r in graph.graph.node_weights_mut() {
        r.attrs.values_mut().for_each(|v| fill(v, &mut missing));
    }
    missing.into_iter().collect()
}

fn show_prior(p: &Option<PriorState>) -> String {
    match p {
        Some(p) => format!("serial {} of lineage {}", p.serial, p.lineage),
        None => "no state".into(),
    }
}

fn join_errors(errors: &[ProviderError]) -> String {
    errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

fn rollback_note(rolled_back: &[ResourceAddr], errors: &[ProviderError]) -> String {
    let mut s = String::new();
    if !rolled_back.is_empty() {
        s.push_str(&format!(" (rolled back {} resource(s) created in this phase)", rolled_back.len()));
    }
    if !errors.is_empty() {
        s.push_str(&format!("; rollback failed too: {}", join_errors(errors)));
    }
    s
}

/// What an apply did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ApplyReport {
    pub slug: String,
    /// Each finished operation, in the order it finished.
    pub operations: Vec<(ResourceAddr, Action)>,
    pub serial: u64,
    pub status: TenantStatus,
    /// The tenant's state had moved when this run got its lock (another run applied it), so it
    /// was planned again against what it found.
    pub replanned: bool,
}

impl ApplyReport {
    /// Another run had already done what this run planned: nothing was left to do.
    pub fn overtaken(&self) -> bool {
        self.replanned && self.operations.is_empty()
    }
}

/// The state of one apply: the tenant's state and the serial the store holds.
struct Run<'a> {
    store: &'a dyn StateStore,
    st: TenantState,
    stored_serial: Option<u64>,
    operation: &'static str,
    /// Sensitive outputs of this run in clear (`output:KIND.NAME.OUTPUT` → value); memory only.
    sensitive: BTreeMap<String, String>,
    /// The id of the lock this run holds, recorded with its audit entries.
    run_id: String,
    /// Audit entries written with the next state write.
    audit: Vec<AuditEntry>,
    /// Progress events about outcomes recorded in `st` but not yet written; told to the hooks by
    /// [`Run::write_and_notify`] once they are durable.
    deferred: Vec<Deferred>,
}

enum Deferred {
    Resource(ResourceAddr, Action, Result<Duration, ProviderError>),
    /// A phase started: told with the first write of the phase, after the end of the one before.
    PhaseStarted(Phase),
    Phase(Phase, bool, Duration),
}

/// The clear text of every secret that `attrs` name and this run can supply: environment variables
/// (`env:NAME`) and sensitive outputs of resources applied earlier in the run.
fn secrets_for(attrs: &BTreeMap<String, Value>, sensitive: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    fn walk(v: &Value, sensitive: &BTreeMap<String, String>, out: &mut BTreeMap<String, String>) {
        match v {
            Value::Secret(s) => {
                let clear = match s.source.strip_prefix("env:") {
                    Some(var) => std::env::var(var).ok(),
                    None => sensitive.get(&s.source).cloned(),
                };
                if let Some(c) = clear {
                    out.insert(s.source.clone(), c);
                }
            }
            Value::List(items) => items.iter().for_each(|x| walk(x, sensitive, out)),
            Value::Map(m) => m.values().for_each(|x| walk(x, sensitive, out)),
            _ => {}
        }
    }
    let mut out = BTreeMap::new();
    attrs.values().for_each(|v| walk(v, sensitive, &mut out));
    out
}

impl Run<'_> {
    /// A phase ends with `outcome`, after `took`.
    fn phase_finished(&mut self, phase: Phase, outcome: PhaseState, took: Duration) {
        if let Some(p) = self.st.phases.get_mut(&phase) {
            p.finished_at = Some(state::now_rfc3339());
            p.duration_ms = Some(took.as_millis() as u64);
            p.state = outcome;
        }
        self.log(Some(phase), None, "phase", &outcome.name().to_ascii_lowercase(), Some(took), None);
    }

    /// The tenant failed in `phase` with `err`: recorded in its state and audit log, and told to
    /// the hooks once written.
    fn phase_failed(&mut self, phase: Phase, err: &ApplyError, took: Duration) {
        self.st.status = TenantStatus::Failed;
        let error_text = match err {
            ApplyError::Failed { errors, .. } => join_errors(errors),
            other => other.to_string(),
        };
        self.st.provisioning_error = Some(format!("phase {}/10 {}: {error_text}", phase.number(), phase.name()));
        self.log(Some(phase), None, "run", "failed", None, Some(err.to_string()));
        self.deferred.push(Deferred::Phase(phase, false, took));
    }
    /// A phase begins: recorded as running, written with the first wave's write-ahead records;
    /// its hook is called once that is durable, so that hooks see phase N end before N+1 starts.
    fn phase_started(&mut self, phase: Phase) {
        self.deferred.push(Deferred::PhaseStarted(phase));
        self.st.current_phase = Some(phase);
        let run = PhaseRun {
            started_at: state::now_rfc3339(),
            finished_at: None,
            duration_ms: None,
            state: PhaseState::Running,
            operations: 0,
        };
        self.st.phases.insert(phase, run);
        self.log(Some(phase), None, "phase", "started", None, None);
    }

    /// Before a change starts: its attributes resolved from the run (references to outputs,
    /// secrets), and its write-ahead record (written with its wave, before it starts).
    fn write_ahead(&mut self, change: &ResourceChange, phase: Phase) -> Result<BTreeMap<String, Value>, ProviderError> {
        let attrs = if change.action == Action::Delete { Ok(BTreeMap::new()) } else { resolve_attrs(change, &self.st) };
        let planned = match (&attrs, change.action) {
            (Ok(a), a2) if a2 != Action::Delete => a.clone(),
            _ => change.before.clone().or_else(|| change.after.clone()).unwrap_or_default(),
        };
        let record = InFlight {
            action: change.action.name().to_string(),
            phase,
            started_at: state::now_rfc3339(),
            attrs: planned,
            depends_on: change.depends_on.clone(),
        };
        self.st.in_flight.insert(change.address.clone(), record);
        attrs
    }
    /// Records a change that succeeded: its state (or its absence, after a delete), its
    /// sensitive outputs for later resources of the run, the phase's count, the audit entry and
    /// the hook to call once written.
    fn record_done(
        &mut self,
        phase: Phase,
        change: &ResourceChange,
        observed: Option<Observed>,
        elapsed: Duration,
        retries: usize,
    ) {
        let addr = &change.address;
        match observed {
            Some(o) => {
                for (name, clear) in o.sensitive {
                    self.sensitive.insert(format!("output:{addr}.{name}"), clear);
                }
                let depends_on = change.depends_on.clone();
                let state = ResourceState { phase, attrs: o.attrs, outputs: o.outputs, depends_on };
                self.st.resources.insert(addr.clone(), state);
            }
            None => {
                self.st.resources.remove(addr);
            }
        }
        if let Some(p) = self.st.phases.get_mut(&phase) {
            p.operations += 1;
        }
        let note = (retries > 0).then(|| format!("after {retries} retries"));
        self.log(Some(phase), Some(addr), change.action.name(), "ok", Some(elapsed), note);
        self.deferred.push(Deferred::Resource(addr.clone(), change.action, Ok(elapsed)));
    }
    /// Writes the state (compare-and-swap on the serial, durable) with the audit entries queued.
    fn write(&mut self) -> Result<(), StateError> {
        self.st.serial = self.stored_serial.map_or(1, |s| s + 1);
        self.st.updated_at = state::now_rfc3339();
        self.st.run_id = Some(self.run_id.clone());
        let (store, st, serial, operation, audit) =
            (self.store, &self.st, self.stored_serial, self.operation, &self.audit);
        off_the_runtime(|| store.put_audited(st, serial, operation, audit))?;
        self.audit.clear();
        self.stored_serial = Some(self.st.serial);
        Ok(())
    }

    /// Writes, then tells the hooks about the outcomes that write made durable.
    fn write_and_notify(&mut self, hooks: &dyn Hooks) -> Result<(), StateError> {
        self.write()?;
        for d in std::mem::take(&mut self.deferred) {
            match d {
                Deferred::Resource(addr, action, result) => {
                    hooks.resource_finished(&self.st.slug, &addr, action, result.as_ref().map(|d| *d))
                }
                Deferred::PhaseStarted(phase) => hooks.phase_started(&self.st.slug, phase),
                Deferred::Phase(phase, ok, elapsed) => hooks.phase_finished(&self.st.slug, phase, ok, elapsed),
            }
        }
        Ok(())
    }

    /// Queues an audit entry for the next write.
    fn log(
        &mut self,
        phase: Option<Phase>,
        resource: Option<&ResourceAddr>,
        action: &str,
        outcome: &str,
        duration: Option<Duration>,
        message: Option<String>,
    ) {
        let mut e = AuditEntry::new(&self.st.slug, self.operation, action, outcome);
        e.run_id = self.run_id.clone();
        e.phase = phase;
        e.resource = resource.cloned();
        e.duration_ms = duration.map(|d| d.as_millis() as u64);
        e.message = message;
        self.audit.push(e);
    }
}

/// Runs a blocking state-store call (a flushed sled transaction, a PostgreSQL commit) without
/// holding up the other tenants' tasks: on a multi-threaded runtime the worker hands its other
/// tasks to another thread while it waits (`block_in_place`); elsewhere the call simply runs.
fn off_the_runtime<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// Replaces every `Ref` by the referenced output recorded in `st`, and every `Computed` by the value
/// recorded before (when there is one). Fails when a referenced output is not known.
fn resolve(v: &Value, before: Option<&Value>, st: &TenantState, addr: &ResourceAddr) -> Result<Value, ProviderError> {
    Ok(match v {
        Value::Ref { resource, output } => {
            st.resources.get(resource).and_then(|r| r.outputs.get(output)).cloned().ok_or_else(|| ProviderError {
                address: addr.clone(),
                path: None,
                message: format!("output {output:?} of {resource} is not known (was {resource} applied?)"),
                transient: false,
            })?
        }
        Value::Computed { .. } => before.cloned().unwrap_or_else(|| v.clone()),
        Value::List(items) => Value::List(
            items
                .iter()
                .enumerate()
                .map(|(i, x)| resolve(x, before.and_then(|b| list_item(b, i)), st, addr))
                .collect::<Result<_, _>>()?,
        ),
        Value::Map(m) => Value::Map(
            m.iter()
                .map(|(k, x)| Ok((k.clone(), resolve(x, before.and_then(|b| b.as_map()?.get(k)), st, addr)?)))
                .collect::<Result<_, ProviderError>>()?,
        ),
        other => other.clone(),
    })
}

fn list_item(v: &Value, i: usize) -> Option<&Value> {
    match v {
        Value::List(items) => items.get(i),
        _ => None,
    }
}

fn resolve_attrs(change: &ResourceChange, st: &TenantState) -> Result<BTreeMap<String, Value>, ProviderError> {
    let after = change.after.as_ref().ok_or_else(|| ProviderError {
        address: change.address.clone(),
        path: None,
        message: "plan has no desired attributes for this change".into(),
        transient: false,
    })?;
    let before = change.before.as_ref();
    after
        .iter()
        .map(|(k, v)| Ok((k.clone(), resolve(v, before.and_then(|b| b.get(k)), st, &change.address)?)))
        .collect()
}

/// Runs `op` until it succeeds, fails permanently, or has used `opts.max_attempts` attempts.
async fn with_retry<T, F, Fut>(
    opts: &ApplyOptions,
    mut op: F,
    mut on_retry: impl FnMut(&ProviderError, u32, Duration),
) -> Result<T, ProviderError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ProviderError>>,
{
    let mut delay = opts.initial_backoff;
    let mut attempt = 1;
    loop {
        match op().await {
            Err(e) if e.transient && attempt < opts.max_attempts.max(1) => {
                on_retry(&e, attempt, delay);
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(opts.max_backoff);
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// The outcome of one operation, reported to the loop that writes state.
struct Done {
    change: ResourceChange,
    /// For a replace: whether the old object was deleted.
    deleted_old: bool,
    result: Result<Option<Observed>, ProviderError>,
    elapsed: Duration,
    retries: Vec<(ProviderError, u32, Duration)>,
}

async fn run_change(
    provider: Arc<dyn Provider>,
    tenant: TenantRef,
    change: ResourceChange,
    attrs: Result<BTreeMap<String, Value>, ProviderError>,
    secrets: BTreeMap<String, String>,
    recorded: Option<BTreeMap<String, Value>>,
    opts: ApplyOptions,
) -> Done {
    let started = Instant::now();
    let mut retries = Vec::new();
    let mut deleted_old = false;
    let result = async {
        if change.action == Action::Replace || change.action == Action::Delete {
            let old = ResourceObject::new(change.address.clone(), change.before.clone().unwrap_or_default());
            with_retry(&opts, || provider.delete(&tenant, &old), |e, a, d| retries.push((e.clone(), a, d))).await?;
            deleted_old = true;
            if change.action == Action::Delete {
                return Ok(None);
            }
        }
        let obj = ResourceObject { addr: change.address.clone(), attrs: attrs?, secrets, recorded };
        with_retry(&opts, || provider.apply(&tenant, &obj), |e, a, d| retries.push((e.clone(), a, d))).await.map(Some)
    }
    .await;
    Done { change, deleted_old, result, elapsed: started.elapsed(), retries }
}

/// The audit log's message for a run of a partial plan (`--target`, `--exclude`).
const PARTIAL_RUN: &str = "partial plan (--target/--exclude): the rest of the tenant was left as it was";

/// Applies one tenant's plan. Takes the tenant's lock for the whole run (waiting up to
/// `opts.lock_timeout` while another run holds it).
pub async fn apply_tenant(
    plan: &TenantPlan,
    store: &dyn StateStore,
    providers: &Providers,
    hooks: &dyn Hooks,
    opts: &ApplyOptions,
) -> Result<ApplyReport, ApplyError> {
    preflight(plan, providers, opts)?;
    let lock = LockInfo::new(&plan.slug, opts.operation.name());
    take_lock(store, &lock, opts.lock_timeout).await?;
    apply_with_lock(plan, store, providers, hooks, opts, &lock, None).await
}

/// What must hold before a tenant's lock is taken: a provider for every kind the plan changes, the
/// environment variables its secrets come from, and no data loss of a protected tenant.
fn preflight(plan: &TenantPlan, providers: &Providers, opts: &ApplyOptions) -> Result<(), ApplyError> {
    let missing = providers.missing(plan);
    if !missing.is_empty() {
        return Err(ApplyError::NoProvider { slug: plan.slug.clone(), kinds: missing.into_iter().collect() });
    }
    let mut needed = std::collections::BTreeSet::new();
    for c in plan
        .resource_changes
        .iter()
        .filter(|c| matches!(c.action, Action::Create | Action::Adopt | Action::Update | Action::Replace))
    {
        c.after.iter().flat_map(|a| a.values()).for_each(|v| env_sources(v, &mut needed));
    }
    let unset: Vec<String> = needed.into_iter().filter(|v| std::env::var_os(v).is_none()).map(str::to_string).collect();
    if !unset.is_empty() {
        return Err(ApplyError::MissingEnv { slug: plan.slug.clone(), vars: unset });
    }
    if opts.protected.contains(&plan.slug) && !opts.allow_data_loss {
        let lost = data_loss(plan);
        if !lost.is_empty() {
            return Err(ApplyError::Protected {
                slug: plan.slug.clone(),
                resources: lost.into_iter().map(|c| c.address.clone()).collect(),
            });
        }
    }
    Ok(())
}

/// Applies `plan` under `lock`, which this run holds, and releases it. With `replan`, a tenant
/// whose state moved since the plan was made (another run applied it meanwhile) is planned again
/// against what the store holds now, and only what is left is done.
async fn apply_with_lock(
    plan: &TenantPlan,
    store: &dyn StateStore,
    providers: &Providers,
    hooks: &dyn Hooks,
    opts: &ApplyOptions,
    lock: &LockInfo,
    replan: Option<&dyn Replan>,
) -> Result<ApplyReport, ApplyError> {
    // The state as this run found it under the lock: read once, for the replan and the run.
    let found_and_plan = async {
        let found = store.get(&plan.slug)?;
        let replanned = match replan {
            Some(r) => replan_if_moved(plan, found.as_ref(), providers, hooks, opts, r).await?,
            None => None,
        };
        Ok::<_, ApplyError>((found, replanned))
    };
    let (found, replanned) = match found_and_plan.await {
        Ok(v) => v,
        Err(e) => {
            let _ = store.unlock(&plan.slug, &lock.id);
            return Err(e);
        }
    };
    let plan = replanned.as_ref().unwrap_or(plan);
    let started = Instant::now();
    let changes = plan.resource_changes.iter().filter(|c| c.action != Action::NoOp).count();
    let mut report = ApplyReport { slug: plan.slug.clone(), replanned: replanned.is_some(), ..ApplyReport::default() };
    if changes > 0 {
        hooks.tenant_started(&plan.slug, changes);
    }
    let result = apply_locked(plan, found, store, providers, hooks, opts, &lock.id, &mut report).await;
    let unlocked = store.unlock(&plan.slug, &lock.id);
    if changes > 0 {
        let outcome = RunOutcome {
            status: match &result {
                Ok(()) => report.status,
                Err(_) => TenantStatus::Failed,
            },
            duration: started.elapsed(),
            operations: report.operations.len(),
            error: result.as_ref().err().map(ToString::to_string),
        };
        hooks.tenant_finished(&plan.slug, &outcome);
    } else if report.replanned {
        hooks.tenant_note(&plan.slug, "nothing left to do: another run applied it first");
    }
    result?;
    unlocked?;
    Ok(report)
}

/// The plan again, when the tenant's state is no longer the one `plan` was made against.
async fn replan_if_moved(
    plan: &TenantPlan,
    found: Option<&TenantState>,
    providers: &Providers,
    hooks: &dyn Hooks,
    opts: &ApplyOptions,
    replan: &dyn Replan,
) -> Result<Option<TenantPlan>, ApplyError> {
    let found_prior = found.map(|s| PriorState { lineage: s.lineage.clone(), serial: s.serial });
    if found_prior == plan.prior_state {
        return Ok(None);
    }
    let again = replan
        .replan(plan, found, providers)
        .await
        .map_err(|message| ApplyError::Replan { slug: plan.slug.clone(), message })?;
    preflight(&again, providers, opts)?;
    if again.has_changes() {
        let n = again.resource_changes.iter().filter(|c| c.action != Action::NoOp).count();
        hooks
            .tenant_note(&plan.slug, &format!("another run changed its state meanwhile; planned again: {n} change(s)"));
    }
    Ok(Some(again))
}

/// Takes the tenant's lock, trying again until `timeout` has passed while another run holds it.
async fn take_lock(store: &dyn StateStore, lock: &LockInfo, timeout: Duration) -> Result<(), ApplyError> {
    let started = Instant::now();
    loop {
        match store.lock(lock) {
            Ok(()) => return Ok(()),
            Err(e @ StateError::Locked { .. }) => {
                let waited = started.elapsed();
                if waited >= timeout {
                    return Err(ApplyError::LockTimeout { waited: timeout, source: e });
                }
                tokio::time::sleep((timeout - waited).min(Duration::from_millis(200))).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Runs `plan` over `found`, the tenant's state as read under its lock.
#[allow(clippy::too_many_arguments)]
async fn apply_locked(
    plan: &TenantPlan,
    found: Option<TenantState>,
    store: &dyn StateStore,
    providers: &Providers,
    hooks: &dyn Hooks,
    opts: &ApplyOptions,
    run_id: &str,
    report: &mut ApplyReport,
) -> Result<(), ApplyError> {
    let started = Instant::now();
    let found_prior = found.as_ref().map(|s| PriorState { lineage: s.lineage.clone(), serial: s.serial });
    if found_prior != plan.prior_state {
        return Err(ApplyError::StateMoved {
            slug: plan.slug.clone(),
            planned: plan.prior_state.clone(),
            found: found_prior,
        });
    }
    let stored_serial = found.as_ref().map(|s| s.serial);
    let st = found.unwrap_or_else(|| TenantState::new(&plan.slug, &plan.tenant_id));
    let mut run = Run {
        store,
        st,
        stored_serial,
        operation: opts.operation.name(),
        sensitive: BTreeMap::new(),
        run_id: run_id.to_string(),
        audit: Vec::new(),
        deferred: Vec::new(),
    };
    let tenant = TenantRef { slug: plan.slug.clone(), id: plan.tenant_id.clone() };

    // A run that was killed left write-ahead records: adopt what they created, forget the rest.
    if !run.st.in_flight.is_empty() {
        let recovered = recover_in_flight(&mut run.st, providers).await;
        for (addr, outcome) in &recovered {
            run.log(None, Some(addr), "recover", outcome, None, None);
        }
        run.write()?;
    }

    let forward: Vec<&ResourceChange> = plan
        .resource_changes
        .iter()
        .filter(|c| matches!(c.action, Action::Create | Action::Adopt | Action::Update | Action::Replace))
        .collect();
    let deletes: Vec<&ResourceChange> = plan.resource_changes.iter().filter(|c| c.action == Action::Delete).collect();
    let only_deletes = forward.is_empty() && !deletes.is_empty();
    if forward.is_empty() && deletes.is_empty() {
        report.serial = run.st.serial;
        report.status = run.st.status;
        return Ok(());
    }

    let was = run.st.status;
    run.st.status = if only_deletes { TenantStatus::Destroying } else { TenantStatus::Provisioning };
    run.st.provisioning_error = None;
    // Written with phase 1's first write-ahead records.
    run.log(None, None, "run", "started", None, Some(format!("{} change(s)", forward.len() + deletes.len())));

    for phase in Phase::ALL {
        let changes: Vec<&ResourceChange> = forward.iter().copied().filter(|c| c.phase == phase).collect();
        if changes.is_empty() {
            continue;
        }
        run_phase(&mut run, report, phase, &changes, false, &tenant, providers, hooks, opts).await?;
    }
    for phase in Phase::ALL.iter().rev().copied() {
        let mut changes: Vec<&ResourceChange> = deletes.iter().copied().filter(|c| c.phase == phase).collect();
        if changes.is_empty() {
            continue;
        }
        changes.reverse();
        run_phase(&mut run, report, phase, &changes, true, &tenant, providers, hooks, opts).await?;
    }

    run.st.current_phase = None;
    run.st.provisioning_error = None;
    let took = started.elapsed();
    run.st.provisioning_duration_ms = Some(took.as_millis() as u64);
    let destroyed = only_deletes && run.st.resources.is_empty();
    if destroyed {
        run.st.status = TenantStatus::Destroyed;
        run.log(None, None, "run", "destroyed", Some(took), None);
    } else if plan.partial.is_some() && was != TenantStatus::Active {
        // Part of a tenant not yet provisioned (`--target`): the rest of its plan is still to do.
        run.st.status = TenantStatus::Provisioning;
        run.log(None, None, "run", "ok", Some(took), Some(PARTIAL_RUN.to_string()));
    } else {
        run.st.status = TenantStatus::Active;
        if plan.partial.is_none() {
            run.st.provisioning_completed_at = Some(state::now_rfc3339());
        }
        run.log(None, None, "run", "ok", Some(took), plan.partial.as_ref().map(|_| PARTIAL_RUN.to_string()));
    }
    run.write_and_notify(hooks)?;
    report.serial = run.st.serial;
    report.status = run.st.status;
    if destroyed {
        // The last state (DESTROYED) goes to history; the audit log stays.
        store.remove(&plan.slug, run.st.serial, opts.operation.name())?;
        tracing::info!(tenant = %plan.slug, duration_ms = took.as_millis() as u64, "tenant destroyed in {}", secs(took));
    } else {
        tracing::info!(
            tenant = %plan.slug,
            duration_ms = took.as_millis() as u64,
            operations = report.operations.len(),
            "tenant {} in {}",
            if plan.partial.is_some() { "partly applied (--target/--exclude)" } else { "provisioned (ACTIVE)" },
            secs(took)
        );
    }
    Ok(())
}

fn secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

/// Deletes what this run created in a failed phase, newest first. Returns what was deleted and
/// the errors of what could not be.
async fn roll_back(
    run: &mut Run<'_>,
    phase: Phase,
    created: &[ResourceChange],
    tenant: &TenantRef,
    providers: &Providers,
    hooks: &dyn Hooks,
    opts: &ApplyOptions,
) -> Result<(Vec<ResourceAddr>, Vec<ProviderError>), ApplyError> {
    let mut rolled_back = Vec::new();
    let mut rollback_errors = Vec::new();
    hooks.rollback_started(&tenant.slug, phase, created.len());
    for change in created.iter().rev() {
        let Some(recorded) = run.st.resources.get(&change.address) else { continue };
        let obj = ResourceObject::new(change.address.clone(), recorded.attrs.clone());
        let provider = providers.for_kind(&change.address.kind).expect("checked before the run");
        let t = Instant::now();
        match with_retry(opts, || provider.delete(tenant, &obj), |_, _, _| {}).await {
            Ok(()) => {
                run.st.resources.remove(&change.address);
                run.log(Some(phase), Some(&change.address), "rollback", "deleted", Some(t.elapsed()), None);
                run.write()?;
                rolled_back.push(change.address.clone());
            }
            Err(e) => {
                run.log(Some(phase), Some(&change.address), "rollback", "failed", Some(t.elapsed()), None);
                rollback_errors.push(e);
            }
        }
    }
    Ok((rolled_back, rollback_errors))
}

/// How a failed phase ends: halted as it was, rolled back (something was deleted again), or failed.
fn failed_state(on_failure: OnFailure, rolled_back: &[ResourceAddr]) -> PhaseState {
    match on_failure {
        OnFailure::Halt => PhaseState::Halted,
        OnFailure::Rollback if rolled_back.is_empty() => PhaseState::Failed,
        OnFailure::Rollback => PhaseState::RolledBack,
    }
}

/// Runs the changes of one phase in dependency waves; on failure rolls back what it created.
#[allow(clippy::too_many_arguments)]
async fn run_phase(
    run: &mut Run<'_>,
    report: &mut ApplyReport,
    phase: Phase,
    changes: &[&ResourceChange],
    reverse: bool,
    tenant: &TenantRef,
    providers: &Providers,
    hooks: &dyn Hooks,
    opts: &ApplyOptions,
) -> Result<(), ApplyError> {
    let started = Instant::now();
    run.phase_started(phase);

    // Dependencies between the changes of this phase. For deletes they run the other way: a
    // resource is deleted only once everything of this phase that depended on it is gone.
    let nodes: Vec<_> = changes.iter().map(|c| (&c.address, &c.depends_on)).collect();
    let mut waves = Waves::new(&nodes, reverse);
    let by_addr: BTreeMap<&ResourceAddr, &ResourceChange> = changes.iter().map(|c| (&c.address, *c)).collect();
    let mut running = JoinSet::new();
    let mut errors: Vec<ProviderError> = Vec::new();
    let mut created: Vec<ResourceChange> = Vec::new();
    // Outcomes recorded in `run.st` but not written yet, and their hooks, called once written.
    let mut unwritten = false;

    // One write per turn of this loop carries the outcomes that arrived together and the
    // write-ahead records of the operations they made ready: an outcome is durable before anything
    // that depends on it starts, a record before its operation starts, and a dependency chain
    // costs one flush per link.
    loop {
        // Start what is ready, in plan order, unless a failure stops new work. Their write-ahead
        // records are written (one write for the wave) before any of them starts.
        if errors.is_empty() {
            let mut ready = Vec::new();
            for addr in waves.take_ready(opts.parallelism.max(1).saturating_sub(running.len())) {
                let change = (*by_addr[addr]).clone();
                let attrs = run.write_ahead(&change, phase);
                ready.push((change, attrs));
            }
            if !ready.is_empty() || unwritten {
                run.write_and_notify(hooks)?;
                unwritten = false;
            }
            for (change, attrs) in ready {
                let provider = providers.for_kind(&change.address.kind).expect("checked before the run").clone();
                let secrets = attrs.as_ref().map(|a| secrets_for(a, &run.sensitive)).unwrap_or_default();
                // matih's own record of the resource, for providers whose live object others can
                // write (see `ResourceObject::recorded`). Only for an update: a resource deleted
                // outside matih (planned as a create) or replaced starts afresh.
                let recorded = (change.action == Action::Update)
                    .then(|| run.st.resources.get(&change.address).map(|r| r.attrs.clone()))
                    .flatten();
                hooks.resource_started(&tenant.slug, &change.address, change.action);
                running.spawn(run_change(provider, tenant.clone(), change, attrs, secrets, recorded, opts.clone()));
            }
        }
        let Some(first) = running.join_next().await else { break };
        let mut batch = vec![first];
        while let Some(more) = running.try_join_next() {
            batch.push(more);
        }
        for joined in batch {
            let done = match joined {
                Ok(done) => done,
                Err(panic) => std::panic::resume_unwind(panic.into_panic()),
            };
            for (e, attempt, delay) in &done.retries {
                hooks.resource_retrying(&tenant.slug, e, *attempt, *delay);
            }
            let addr = done.change.address.clone();
            let action = done.change.action.name();
            run.st.in_flight.remove(&addr);
            unwritten = true;
            match done.result {
                Ok(observed) => {
                    run.record_done(phase, &done.change, observed, done.elapsed, done.retries.len());
                    report.operations.push((addr.clone(), done.change.action));
                    if matches!(done.change.action, Action::Create | Action::Replace) {
                        created.push(done.change.clone());
                    }
                    waves.done(&addr);
                }
                Err(e) => {
                    if done.deleted_old {
                        run.st.resources.remove(&addr);
                    }
                    run.log(Some(phase), Some(&addr), action, "failed", Some(done.elapsed), Some(e.to_string()));
                    run.deferred.push(Deferred::Resource(addr.clone(), done.change.action, Err(e.clone())));
                    errors.push(e);
                }
            }
        }
    }
    if errors.is_empty() {
        // The phase's last outcomes and its end are written with the next phase's first
        // write-ahead records (or the run's final write): nothing runs in between, so they are
        // durable before anything else starts, at one flush less per phase.
        run.phase_finished(phase, PhaseState::Completed, started.elapsed());
        run.deferred.push(Deferred::Phase(phase, true, started.elapsed()));
        return Ok(());
    }
    run.write_and_notify(hooks)?;

    // Roll back what this run created in this phase, newest first (unless told to halt).
    let (rolled_back, rollback_errors) = if !reverse && !created.is_empty() && opts.on_failure == OnFailure::Rollback {
        roll_back(run, phase, &created, tenant, providers, hooks, opts).await?
    } else {
        (Vec::new(), Vec::new())
    };
    run.phase_finished(phase, failed_state(opts.on_failure, &rolled_back), started.elapsed());
    let err = ApplyError::Failed { slug: tenant.slug.clone(), phase, errors, rolled_back, rollback_errors };
    run.phase_failed(phase, &err, started.elapsed());
    run.write_and_notify(hooks)?;
    Err(err)
}

#[cfg(test)]
mod tests;
