//! The state store: what matih last recorded of each tenant, behind the [`StateStore`] trait.
//! sled is the default backend ([`SledStore`]); [`PostgresStore`] keeps the state of a team's
//! runners in one PostgreSQL database; [`MemoryStore`] has the same semantics in memory for tests
//! and benchmarks.
//!
//! Both backends share the rules written down here: a write is a compare-and-swap on the tenant's
//! serial, the state it replaces is appended to the tenant's history, and a lock whose holder
//! process is known to be dead (same host, no such pid) may be taken over.
//!
//! **Invariant:** knows nothing of providers, graphs or plans; stores and returns
//! [`TenantState`] records. Never holds a secret in clear (values are [`crate::value::Secret`]
//! fingerprints).

mod memory;
mod migrate;
mod postgres;
pub mod private;
mod sled_store;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::addr::ResourceAddr;
use crate::phase::Phase;
use crate::value::Value;

/// Where provisioning of a tenant stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TenantStatus {
    /// Known to matih, nothing applied yet.
    #[default]
    Pending,
    Provisioning,
    Active,
    Failed,
    Destroying,
    Destroyed,
}

/// What was recorded of one resource after it was applied.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceState {
    pub phase: Phase,
    /// The attributes as applied (references resolved, secrets as fingerprints).
    pub attrs: BTreeMap<String, Value>,
    /// Values the provider returned (e.g. `load_balancer_ip`), for resources that reference them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub outputs: BTreeMap<String, Value>,
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub depends_on: BTreeSet<ResourceAddr>,
}

/// The recorded state of one tenant. `Default` is for test literals (`..Default::default()`);
/// real states start from [`TenantState::new`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantState {
    pub slug: String,
    pub tenant_id: String,
    /// A UUID fixed when the tenant's state is first created; a plan is bound to it.
    pub lineage: String,
    /// Incremented by every write; a plan is bound to it too.
    pub serial: u64,
    pub status: TenantStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_phase: Option<Phase>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisioning_error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisioning_completed_at: Option<String>,
    /// RFC 3339 time of the last write.
    pub updated_at: String,
    /// When each phase of the last apply (or destroy) ran, and how it ended.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub phases: BTreeMap<Phase, PhaseRun>,
    pub resources: BTreeMap<ResourceAddr, ResourceState>,
    /// Write-ahead records: operations started but whose outcome is not recorded yet. An apply
    /// writes the record before it calls the provider and removes it in the same write as the
    /// outcome, so after a crash these name the objects that may exist without being recorded.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub in_flight: BTreeMap<ResourceAddr, InFlight>,
    /// How long the last complete run (every phase up to 10, or the whole destroy) took.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisioning_duration_ms: Option<u64>,
    /// The apply or destroy run that wrote this state, if one did. A run writes after every
    /// operation; only the state before it and the state it leaves become history, not each step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
}

impl TenantState {
    /// A copy of everything but the resources (which a store may keep apart), without cloning them.
    pub fn without_resources(&self) -> TenantState {
        let TenantState {
            slug,
            tenant_id,
            lineage,
            serial,
            status,
            current_phase,
            provisioning_error,
            provisioning_completed_at,
            updated_at,
            phases,
            resources: _,
            in_flight,
            provisioning_duration_ms,
            run_id,
        } = self;
        TenantState {
            slug: slug.clone(),
            tenant_id: tenant_id.clone(),
            lineage: lineage.clone(),
            serial: *serial,
            status: *status,
            current_phase: *current_phase,
            provisioning_error: provisioning_error.clone(),
            provisioning_completed_at: provisioning_completed_at.clone(),
            updated_at: updated_at.clone(),
            phases: phases.clone(),
            resources: BTreeMap::new(),
            in_flight: in_flight.clone(),
            provisioning_duration_ms: *provisioning_duration_ms,
            run_id: run_id.clone(),
        }
    }
}

/// Whether writing `new` over `replaced` files `replaced` in history: always, except for the
/// intermediate states of one run (both written by the same run).
pub fn goes_to_history(replaced: &TenantState, new: Option<&TenantState>) -> bool {
    replaced.run_id.is_none() || new.is_none_or(|n| n.run_id != replaced.run_id)
}

/// An operation that was started and whose outcome was not recorded yet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InFlight {
    /// `create`, `update`, `replace` or `delete`.
    pub action: String,
    pub phase: Phase,
    pub started_at: String,
    /// The attributes the operation was asked to apply (references resolved, secrets as
    /// fingerprints); for a delete, the recorded ones.
    pub attrs: BTreeMap<String, Value>,
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub depends_on: BTreeSet<ResourceAddr>,
}

/// One line of a tenant's audit log: a run, phase or resource operation and how it ended. Holds
/// names, outcomes and error messages, never attribute values (so never a secret).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// RFC 3339 time the event was recorded.
    pub at: String,
    pub tenant: String,
    /// The run it belongs to (the id of the lock the run held).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub run_id: String,
    /// `apply`, `destroy`, `state rm`, …
    pub operation: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<ResourceAddr>,
    /// What happened: `run`, `phase`, `rollback`, or a resource action (`create`, `update`, …).
    pub action: String,
    /// `started`, `ok`, `failed`, `rolled_back`, `adopted`, `destroyed`, …
    pub outcome: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// One phase of the last run over a tenant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhaseRun {
    pub started_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    pub state: PhaseState,
    /// Resources this phase created, changed or deleted.
    pub operations: usize,
}

/// Where one phase of the last run stands, as state, `matih status` and the API spell it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PhaseState {
    Running,
    Completed,
    /// Failed, and nothing this run created in it was deleted again.
    Failed,
    /// Failed, and what this run created in it was deleted again.
    RolledBack,
    /// Failed and left as it was (`--on-failure halt`).
    Halted,
}

impl PhaseState {
    /// `RUNNING`, `COMPLETED`, `FAILED`, `ROLLED_BACK` or `HALTED`: the one spelling.
    pub fn name(self) -> &'static str {
        match self {
            PhaseState::Running => "RUNNING",
            PhaseState::Completed => "COMPLETED",
            PhaseState::Failed => "FAILED",
            PhaseState::RolledBack => "ROLLED_BACK",
            PhaseState::Halted => "HALTED",
        }
    }
}

impl std::fmt::Display for PhaseState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.name())
    }
}

/// One earlier serial of a tenant's state, kept for `matih state history`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// The serial of the state kept here.
    pub serial: u64,
    /// When this state was replaced.
    pub at: String,
    /// The operation that replaced it (`apply`, `state rm`, …).
    pub operation: String,
    pub state: TenantState,
}

/// Who holds the lock of a tenant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockInfo {
    pub id: String,
    pub slug: String,
    pub operation: String,
    pub who: String,
    pub host: String,
    pub pid: u32,
    pub created_at: String,
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state store at {path}: {message}")]
    Io { path: String, message: String },
    /// Another process has the (sled) store open and did not let go within the wait; the message
    /// names it and the tenant locks it holds.
    #[error("state store at {path}: {message}")]
    Busy { path: String, message: String },
    #[error("state store at {path} is corrupt: {message}")]
    Corrupt { path: String, message: String },
    #[error("state store at {path} has format version {found}; this matih understands version {supported}")]
    Version { path: String, found: u32, supported: u32 },
    #[error("state of tenant {slug:?} moved on: expected serial {expected:?}, found {found:?}")]
    SerialConflict { slug: String, expected: Option<u64>, found: Option<u64> },
    #[error("tenant {slug:?} is locked by {} ({} on {}, pid {}, since {}; lock id {})", .holder.who, .holder.operation, .holder.host, .holder.pid, .holder.created_at, .holder.id)]
    Locked { slug: String, holder: Box<LockInfo> },
    #[error("tenant {slug:?} has no lock with id {id:?}")]
    NoSuchLock { slug: String, id: String },
    /// The caller asked for a write that can never be valid (a slug the store cannot key, a serial
    /// that does not follow the expected one). A bug in the caller, not a race with another writer.
    #[error("invalid write to the state of tenant {slug:?}: {message}")]
    Invalid { slug: String, message: String },
}

/// A store of tenant states. Every write is atomic and durable when it returns.
pub trait StateStore: Send + Sync {
    /// Slugs of every tenant with recorded state, sorted.
    fn tenants(&self) -> Result<Vec<String>, StateError>;

    fn get(&self, slug: &str) -> Result<Option<TenantState>, StateError>;

    /// Writes `state` (with `state.serial` = `expected_serial + 1`, or 1 for a new tenant) only if
    /// the stored serial is still `expected_serial` (`None`: the tenant must have no state yet).
    /// The replaced state is appended to the tenant's history under `operation`, unless both were
    /// written by the same run ([`goes_to_history`]).
    fn put(&self, state: &TenantState, expected_serial: Option<u64>, operation: &str) -> Result<(), StateError> {
        self.put_audited(state, expected_serial, operation, &[])
    }

    /// Removes a tenant's state (its history is kept).
    fn remove(&self, slug: &str, expected_serial: u64, operation: &str) -> Result<(), StateError>;

    /// Earlier serials of a tenant, oldest first.
    fn history(&self, slug: &str) -> Result<Vec<HistoryEntry>, StateError>;

    /// Takes the tenant's lock, or fails with [`StateError::Locked`] naming the holder.
    fn lock(&self, info: &LockInfo) -> Result<(), StateError>;

    /// Releases the lock with id `id` (force-unlock uses the same call with the holder's id).
    fn unlock(&self, slug: &str, id: &str) -> Result<(), StateError>;

    /// Every lock held, sorted by slug.
    fn locks(&self) -> Result<Vec<LockInfo>, StateError>;

    /// Appends entries to the audit log of `slug`, durably. The log outlives the tenant's state.
    fn append_audit(&self, slug: &str, entries: &[AuditEntry]) -> Result<(), StateError>;

    /// The audit log of `slug`, oldest first (empty when there is none).
    fn audit(&self, slug: &str) -> Result<Vec<AuditEntry>, StateError>;

    /// Slugs of every tenant the store knows anything of (state, history or audit log), sorted:
    /// a destroyed tenant keeps its history and audit log, and `matih state migrate` copies them.
    fn all_slugs(&self) -> Result<Vec<String>, StateError> {
        self.tenants()
    }

    /// [`StateStore::put`] and [`StateStore::append_audit`] at once, in one transaction, so the
    /// log never says more or less than the state. The one write every backend implements.
    fn put_audited(
        &self,
        state: &TenantState,
        expected_serial: Option<u64>,
        operation: &str,
        audit: &[AuditEntry],
    ) -> Result<(), StateError>;

    /// Where progress events go so that other machines can follow a run live: the PostgreSQL
    /// backend's `matih_feed` table ([`FeedPublisher`]). `None` (the default): this backend shares
    /// no feed (sled is process-exclusive; its feed files sit beside the store).
    fn feed_publisher(&self) -> Option<FeedPublisher> {
        None
    }
}

pub use memory::MemoryStore;
pub use migrate::{migrate, MigrateReport};
pub use postgres::{
    digests, lock_key, tenant_digest, ChangeFeed, FeedNews, FeedPublisher, FeedRow, PostgresStore, CHANGE_CHANNEL,
    FEED_CHANNEL, FEED_KEEP_PER_TENANT, SCHEMA_VERSION,
};
pub use sled_store::{SledStore, DEFAULT_OPEN_WAIT, FORMAT_VERSION, HOLDERS_FILE, PROCESS_LOCK_FILE};

/// The current time in UTC as RFC 3339 with seconds precision, e.g. `2026-02-12T10:00:00Z`.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

/// A fresh lineage for a tenant's state: a random (v4) UUID.
pub fn new_lineage() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// The name of this machine, as recorded in locks: `/proc/sys/kernel/hostname`, else
/// `/etc/hostname`, else `localhost`.
pub fn hostname() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.trim().to_string())
        .find(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

impl LockInfo {
    /// A lock for `slug` held by this process for `operation` (`apply`, `destroy`, …), with a fresh id.
    pub fn new(slug: &str, operation: &str) -> LockInfo {
        LockInfo {
            id: uuid::Uuid::new_v4().to_string(),
            slug: slug.to_string(),
            operation: operation.to_string(),
            who: std::env::var("USER").ok().filter(|u| !u.is_empty()).unwrap_or_else(|| "unknown".to_string()),
            host: hostname(),
            pid: std::process::id(),
            created_at: now_rfc3339(),
        }
    }
}

impl TenantState {
    /// The state of a tenant matih has never written: a fresh lineage, serial 0 (so its first
    /// [`StateStore::put`] carries serial 1 with `expected_serial` `None`), status `Pending`.
    pub fn new(slug: &str, tenant_id: &str) -> TenantState {
        TenantState {
            slug: slug.to_string(),
            tenant_id: tenant_id.to_string(),
            lineage: new_lineage(),
            serial: 0,
            status: TenantStatus::Pending,
            current_phase: None,
            provisioning_error: None,
            provisioning_completed_at: None,
            updated_at: now_rfc3339(),
            phases: BTreeMap::new(),
            resources: BTreeMap::new(),
            in_flight: BTreeMap::new(),
            provisioning_duration_ms: None,
            run_id: None,
        }
    }
}

impl AuditEntry {
    /// An entry stamped now, with no phase, resource, duration or message.
    pub fn new(tenant: &str, operation: &str, action: &str, outcome: &str) -> AuditEntry {
        AuditEntry {
            at: now_rfc3339(),
            tenant: tenant.to_string(),
            run_id: String::new(),
            operation: operation.to_string(),
            phase: None,
            resource: None,
            action: action.to_string(),
            outcome: outcome.to_string(),
            duration_ms: None,
            message: None,
        }
    }
}

/// Checks a slug before it becomes a key: it must be non-empty and free of NUL bytes, because
/// history keys are `slug`, a 0 byte, then a sequence number.
pub(crate) fn check_slug(slug: &str) -> Result<(), StateError> {
    if slug.is_empty() || slug.contains('\0') {
        return Err(StateError::Invalid {
            slug: slug.to_string(),
            message: "a slug must be non-empty and hold no NUL byte".into(),
        });
    }
    Ok(())
}

/// Checks the arguments of [`StateStore::put`] that do not depend on what is stored: the slug, and
/// that `state.serial` is the one that follows `expected_serial`.
pub(crate) fn check_put(state: &TenantState, expected_serial: Option<u64>) -> Result<(), StateError> {
    check_slug(&state.slug)?;
    let want = match expected_serial {
        None => 1,
        Some(e) => e.checked_add(1).ok_or_else(|| StateError::Invalid {
            slug: state.slug.clone(),
            message: format!("serial {e} cannot be incremented"),
        })?,
    };
    if state.serial != want {
        return Err(StateError::Invalid {
            slug: state.slug.clone(),
            message: format!(
                "the new state has serial {} but a write over serial {} must carry serial {want}",
                state.serial,
                expected_serial.map_or_else(|| "(none)".to_string(), |e| e.to_string())
            ),
        });
    }
    Ok(())
}

/// Whether an existing lock may be taken over: only when its holder ran on this host (`this_host`)
/// and its process no longer exists. A lock from another host is never judged stale, since its
/// process cannot be seen from here.
pub(crate) fn lock_is_stale(holder: &LockInfo, this_host: &str) -> bool {
    holder.host == this_host && !pid_alive(holder.pid)
}

/// Whether a process with this pid exists on this machine. Where that cannot be known (no `/proc`),
/// every process is assumed alive, so that no live lock is ever taken over.
fn pid_alive(pid: u32) -> bool {
    if pid == 0 {
        return false;
    }
    let proc = Path::new("/proc");
    if !proc.join("self").exists() {
        return true;
    }
    proc.join(pid.to_string()).exists()
}
