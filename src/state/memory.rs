//! An in-memory [`StateStore`] with the same semantics as the sled backend, for tests and benchmarks.
//!
//! **Invariant:** knows nothing of files or durability; everything it holds is gone when it is dropped.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::{
    check_put, check_slug, goes_to_history, hostname, lock_is_stale, now_rfc3339, AuditEntry, HistoryEntry, LockInfo,
    StateError, StateStore, TenantState,
};

/// Tenant states, their history and their locks, behind one mutex so that every call is atomic.
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    tenants: BTreeMap<String, TenantState>,
    /// Replaced states per slug, oldest first. Kept when a tenant is removed.
    history: BTreeMap<String, Vec<HistoryEntry>>,
    locks: BTreeMap<String, LockInfo>,
    /// Audit log per slug, oldest first. Kept when a tenant is removed.
    audit: BTreeMap<String, Vec<AuditEntry>>,
}

impl MemoryStore {
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    /// Every method checks before it changes anything, so the data behind a poisoned mutex (a
    /// panic in another thread) is still consistent and can be used as it is.
    fn inner(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl StateStore for MemoryStore {
    fn tenants(&self) -> Result<Vec<String>, StateError> {
        Ok(self.inner().tenants.keys().cloned().collect())
    }

    fn get(&self, slug: &str) -> Result<Option<TenantState>, StateError> {
        Ok(self.inner().tenants.get(slug).cloned())
    }

    fn put_audited(
        &self,
        state: &TenantState,
        expected_serial: Option<u64>,
        operation: &str,
        audit: &[AuditEntry],
    ) -> Result<(), StateError> {
        check_put(state, expected_serial)?;
        let mut inner = self.inner();
        let found = inner.tenants.get(&state.slug).map(|s| s.serial);
        if found != expected_serial {
            return Err(StateError::SerialConflict { slug: state.slug.clone(), expected: expected_serial, found });
        }
        let replaced = inner.tenants.insert(state.slug.clone(), state.clone());
        if let Some(replaced) = replaced.filter(|r| goes_to_history(r, Some(state))) {
            let entry = HistoryEntry {
                serial: replaced.serial,
                at: now_rfc3339(),
                operation: operation.to_string(),
                state: replaced,
            };
            inner.history.entry(state.slug.clone()).or_default().push(entry);
        }
        inner.audit.entry(state.slug.clone()).or_default().extend(audit.iter().cloned());
        Ok(())
    }

    fn remove(&self, slug: &str, expected_serial: u64, operation: &str) -> Result<(), StateError> {
        check_slug(slug)?;
        let mut inner = self.inner();
        let found = inner.tenants.get(slug).map(|s| s.serial);
        if found != Some(expected_serial) {
            return Err(StateError::SerialConflict { slug: slug.to_string(), expected: Some(expected_serial), found });
        }
        if let Some(removed) = inner.tenants.remove(slug) {
            let entry = HistoryEntry {
                serial: removed.serial,
                at: now_rfc3339(),
                operation: operation.to_string(),
                state: removed,
            };
            inner.history.entry(slug.to_string()).or_default().push(entry);
        }
        Ok(())
    }

    fn history(&self, slug: &str) -> Result<Vec<HistoryEntry>, StateError> {
        Ok(self.inner().history.get(slug).cloned().unwrap_or_default())
    }

    fn lock(&self, info: &LockInfo) -> Result<(), StateError> {
        check_slug(&info.slug)?;
        let this_host = hostname();
        let mut inner = self.inner();
        if let Some(holder) = inner.locks.get(&info.slug) {
            if !lock_is_stale(holder, &this_host) {
                return Err(StateError::Locked { slug: info.slug.clone(), holder: Box::new(holder.clone()) });
            }
        }
        inner.locks.insert(info.slug.clone(), info.clone());
        Ok(())
    }

    fn unlock(&self, slug: &str, id: &str) -> Result<(), StateError> {
        let mut inner = self.inner();
        match inner.locks.get(slug) {
            Some(holder) if holder.id == id => {
                inner.locks.remove(slug);
                Ok(())
            }
            _ => Err(StateError::NoSuchLock { slug: slug.to_string(), id: id.to_string() }),
        }
    }

    fn locks(&self) -> Result<Vec<LockInfo>, StateError> {
        Ok(self.inner().locks.values().cloned().collect())
    }

    fn append_audit(&self, slug: &str, entries: &[AuditEntry]) -> Result<(), StateError> {
        check_slug(slug)?;
        self.inner().audit.entry(slug.to_string()).or_default().extend(entries.iter().cloned());
        Ok(())
    }

    fn audit(&self, slug: &str) -> Result<Vec<AuditEntry>, StateError> {
        Ok(self.inner().audit.get(slug).cloned().unwrap_or_default())
    }

    fn all_slugs(&self) -> Result<Vec<String>, StateError> {
        let inner = self.inner();
        let all: std::collections::BTreeSet<&String> =
            inner.tenants.keys().chain(inner.history.keys()).chain(inner.audit.keys()).collect();
        Ok(all.into_iter().cloned().collect())
    }
}
