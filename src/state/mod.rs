//! The state store: what matih last recorded of each tenant, behind the [`StateStore`] trait.
//! sled is the default backend.
//!
//! **Invariant:** knows nothing of providers, graphs or plans; stores and returns
//! [`TenantState`] records. Never holds a secret in clear (values are [`crate::value::Secret`]
//! fingerprints).

use std::collections::{BTreeMap, BTreeSet};

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

/// The recorded state of one tenant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
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
    pub resources: BTreeMap<ResourceAddr, ResourceState>,
}

/// One earlier serial of a tenant's state, kept for `matih state history`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub serial: u64,
    pub at: String,
    /// What wrote it (`apply`, `state rm`, …).
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
}

/// A store of tenant states. Every write is atomic and durable when it returns.
pub trait StateStore: Send + Sync {
    /// Slugs of every tenant with recorded state, sorted.
    fn tenants(&self) -> Result<Vec<String>, StateError>;

    fn get(&self, slug: &str) -> Result<Option<TenantState>, StateError>;

    /// Writes `state` (with `state.serial` = `expected_serial + 1`, or 1 for a new tenant) only if
    /// the stored serial is still `expected_serial` (`None`: the tenant must have no state yet).
    /// The replaced state is appended to the tenant's history under `operation`.
    fn put(&self, state: &TenantState, expected_serial: Option<u64>, operation: &str) -> Result<(), StateError>;

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
}
