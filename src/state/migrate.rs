//! Copying every tenant from one state store to another (`matih state migrate --from sled --to
//! postgres`, and back), verified by SHA-256 digests.
//!
//! The copy goes through the [`StateStore`] trait only, so it works between any two backends. A
//! tenant's history is replayed write by write: its first state is created, each later state is
//! written over the one before under the operation that replaced it (or the earlier one removed,
//! when the tenant was destroyed and created again), and the audit log is appended as it is. The
//! times at which history entries were written are the copy's (the trait cannot set them), so the
//! digest covers each entry's serial, operation and state, plus the current state and the audit log.
//!
//! **Invariant:** the target must be empty, and nothing may hold a lock on the source: a migration
//! never mixes two histories or copies a half-finished run.

use std::collections::BTreeMap;

use super::{tenant_digest, StateError, StateStore, TenantState};

/// What a migration copied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MigrateReport {
    /// Per-tenant digest (equal in both stores), by slug.
    pub digests: BTreeMap<String, String>,
    /// Tenants with current state.
    pub tenants: usize,
    pub history_entries: usize,
    pub audit_entries: usize,
}

fn refused(message: String) -> StateError {
    StateError::Invalid { slug: String::new(), message }
}

/// Copies every tenant of `from` into the empty store `to`, then compares per-tenant digests.
pub fn migrate(from: &dyn StateStore, to: &dyn StateStore) -> Result<MigrateReport, StateError> {
    if let Some(l) = from.locks()?.first() {
        return Err(refused(format!(
            "the source store has tenant {:?} locked by {} ({} on {}, pid {}); migrate when no run is active",
            l.slug, l.who, l.operation, l.host, l.pid
        )));
    }
    let existing = to.all_slugs()?;
    if !existing.is_empty() {
        return Err(refused(format!(
            "the target store is not empty ({} tenant(s), first {:?}); migrate only into an empty store",
            existing.len(),
            existing[0]
        )));
    }
    let mut report = MigrateReport { digests: BTreeMap::new(), tenants: 0, history_entries: 0, audit_entries: 0 };
    for slug in from.all_slugs()? {
        let history = from.history(&slug)?;
        let current = from.get(&slug)?;
        // The states in the order they were written, each with the operation that replaced it.
        let mut states: Vec<(TenantState, Option<String>)> =
            history.into_iter().map(|h| (h.state, Some(h.operation))).collect();
        report.history_entries += states.len();
        if let Some(c) = current {
            states.push((c, None));
            report.tenants += 1;
        }
        let mut stored: Option<u64> = None;
        for i in 0..states.len() {
            let (state, _) = &states[i];
            to.put(state, stored, states.get(i.wrapping_sub(1)).and_then(|p| p.1.as_deref()).unwrap_or("migrate"))?;
            stored = Some(state.serial);
            let replaced_by_next = states.get(i + 1).is_some_and(|(next, _)| next.serial == state.serial + 1);
            if let (Some(op), false) = (&states[i].1, replaced_by_next) {
                to.remove(&slug, state.serial, op)?;
                stored = None;
            }
        }
        let audit = from.audit(&slug)?;
        report.audit_entries += audit.len();
        if !audit.is_empty() {
            to.append_audit(&slug, &audit)?;
        }
        let want = tenant_digest(from, &slug)?;
        let got = tenant_digest(to, &slug)?;
        if want != got {
            return Err(StateError::Corrupt {
                path: slug.clone(),
                message: format!("after the copy the digests differ: source sha256 {want}, target sha256 {got}"),
            });
        }
        report.digests.insert(slug, want);
    }
    let copied = to.all_slugs()?;
    if copied.len() != report.digests.len() {
        return Err(refused(format!(
            "the target lists {} tenants after the copy, the source {}",
            copied.len(),
            report.digests.len()
        )));
    }
    Ok(report)
}
