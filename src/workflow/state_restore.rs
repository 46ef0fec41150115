//! `matih state restore SLUG --serial N`: an earlier record of a tenant brought back, through a
//! plan. The plan lists, resource by resource, how the record changes (a resource serial N had and
//! the current record has not is recorded again, one whose attributes differ takes serial N's,
//! one serial N did not have is forgotten); applying it writes serial N's resources as a **new**
//! serial (the current record goes to the history, which is never rewritten) and changes nothing
//! in the real world. The next `matih plan` then compares the specs and what is live with the
//! restored record.
//!
//! Refused: a serial the tenant's history does not hold, the current serial itself, a serial of
//! another lineage (an earlier life of the tenant, destroyed and created again), a tenant without
//! a current record and a locked tenant.
//!
//! **Invariant:** the state store is written once, under the tenant's lock, only when its lineage
//! and serial are still those the plan was made against; providers are never called.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};

use crate::graph::TenantMeta;
use crate::plan::{self, Action, Plan};
use crate::state::{self, AuditEntry, LockInfo, ResourceState, StateStore, TenantState};

/// The operation name recorded in locks, history and the audit log.
pub const OPERATION: &str = "state restore";

/// A restore planned: the plan to show and what applying it writes.
#[derive(Clone, Debug)]
pub struct Restore {
    /// The record changes, as a plan of one tenant ([`Plan::restore_of`] set).
    pub plan: Plan,
    /// The current record the plan was made against.
    pub current: TenantState,
    /// Serial N's resources, which become the current record's.
    pub resources: std::collections::BTreeMap<crate::addr::ResourceAddr, ResourceState>,
}

/// The serials a tenant's history holds, for messages: `1-4, 6` style ranges.
fn serial_list(serials: &[u64]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < serials.len() {
        let start = serials[i];
        while i + 1 < serials.len() && serials[i + 1] == serials[i] + 1 {
            i += 1;
        }
        out.push(if serials[i] == start { start.to_string() } else { format!("{start}-{}", serials[i]) });
        i += 1;
    }
    out.join(", ")
}

/// Checks the restore of `slug`'s serial `serial` and plans it (see the module docs).
pub fn plan_restore(store: &dyn StateStore, slug: &str, serial: u64, source: Option<PathBuf>) -> Result<Restore> {
    let current = store.get(slug)?.with_context(|| {
        format!("tenant {slug:?} has no current record (never applied, or destroyed); nothing was restored")
    })?;
    if let Some(holder) = store.locks()?.into_iter().find(|l| l.slug == slug) {
        bail!(
            "tenant {slug:?} is locked by {} ({} on {}, pid {}, since {}; lock id {}); nothing was restored",
            holder.who,
            holder.operation,
            holder.host,
            holder.pid,
            holder.created_at,
            holder.id
        );
    }
    if serial == current.serial {
        bail!("serial {serial} is the current record of tenant {slug:?}; nothing to restore");
    }
    let history = store.history(slug)?;
    // A tenant destroyed and created again starts a new lineage at serial 1: the same serial may be
    // in the history twice, and the current lineage's is the one meant.
    let same = |h: &&state::HistoryEntry| h.serial == serial;
    let found = history.iter().rev().filter(same).find(|h| h.state.lineage == current.lineage);
    let Some(entry) = found.or_else(|| history.iter().rev().find(same)) else {
        let mut serials: Vec<u64> = history.iter().map(|h| h.serial).collect();
        serials.sort_unstable();
        serials.dedup();
        bail!(
            "tenant {slug:?} has no serial {serial} in its history (it holds {}; the current record is serial {}); \
             see `matih state history {slug}`",
            if serials.is_empty() { "none".to_string() } else { format!("serial(s) {}", serial_list(&serials)) },
            current.serial
        );
    };
    if entry.state.lineage != current.lineage {
        bail!(
            "serial {serial} of tenant {slug:?} belongs to another lineage ({}, an earlier life of the tenant, \
             replaced at {} by {}) than the current record ({}); restoring it would mix two tenants' records, so \
             nothing was restored",
            entry.state.lineage,
            entry.at,
            entry.operation,
            current.lineage
        );
    }
    // Serial N's resources as the desired side: `before` is the current record, `after` serial N's.
    let meta = TenantMeta {
        slug: current.slug.clone(),
        id: current.tenant_id.clone(),
        tier: String::new(),
        region: String::new(),
        source: None,
    };
    let earlier = super::graph_of_record(meta, &entry.state.resources);
    let mut tp = plan::diff(&earlier, Some(&current), source);
    for c in &mut tp.resource_changes {
        let note = match c.action {
            Action::Create | Action::Replace => format!("recorded again: serial {serial} recorded it"),
            Action::Update => format!("the record takes serial {serial}'s values"),
            Action::Delete => format!("forgotten: serial {serial} did not record it"),
            _ => continue,
        };
        // A record is never replaced, only overwritten: a replace is shown as the update it is.
        if c.action == Action::Replace {
            c.action = Action::Update;
            c.changes.iter_mut().for_each(|a| a.forces_replacement = false);
        }
        c.notes.push(note);
    }
    let mut plan = Plan::new(vec![tp]);
    plan.restore_of = Some(serial);
    Ok(Restore { plan, current, resources: entry.state.resources.clone() })
}

/// The record a restore writes over `current`: serial N's resources, everything else (status,
/// phases, write-ahead records) as the current record has it, a new serial.
pub fn restored_state(current: &TenantState, restore: &Restore) -> TenantState {
    let mut new = current.clone();
    new.resources = restore.resources.clone();
    new.serial = current.serial + 1;
    new.updated_at = state::now_rfc3339();
    new.run_id = None;
    new
}

/// Writes a planned restore under the tenant's lock; returns the new serial. Refused when the
/// record moved since the plan was made.
pub fn record_restore(store: &dyn StateStore, restore: &Restore) -> Result<u64> {
    let slug = restore.current.slug.as_str();
    let serial = restore.plan.restore_of.context("not a restore plan")?;
    let lock = LockInfo::new(slug, OPERATION);
    store.lock(&lock)?;
    let result = (|| -> Result<u64> {
        let st = store.get(slug)?.with_context(|| format!("tenant {slug:?} has no current record any more"))?;
        if st.lineage != restore.current.lineage || st.serial != restore.current.serial {
            bail!(
                "the state of tenant {slug:?} changed since the restore was planned (serial {} then, {} now); \
                 nothing was restored: run the restore again",
                restore.current.serial,
                st.serial
            );
        }
        let new = restored_state(&st, restore);
        let mut entry = AuditEntry::new(slug, OPERATION, "restore", "ok");
        entry.message = Some(format!("the resources of serial {serial} recorded as serial {}", new.serial));
        store.put_audited(&new, Some(st.serial), OPERATION, &[entry])?;
        Ok(new.serial)
    })();
    store.unlock(slug, &lock.id)?;
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::MemoryStore;
    use crate::value::Value;

    fn res(v: &str) -> ResourceState {
        ResourceState {
            phase: crate::phase::Phase::ALL[0],
            attrs: [("v".to_string(), Value::from(v))].into_iter().collect(),
            outputs: Default::default(),
            depends_on: Default::default(),
        }
    }

    fn write(store: &MemoryStore, st: &mut TenantState, resources: &[(&str, &str)], expected: Option<u64>) {
        st.resources = resources.iter().map(|(a, v)| (a.parse().unwrap(), res(v))).collect();
        st.serial = expected.map_or(1, |s| s + 1);
        store.put(st, expected, "apply").unwrap();
    }

    #[test]
    fn a_restore_plans_the_record_changes_and_writes_a_new_serial() {
        let store = MemoryStore::new();
        let mut st = TenantState::new("acme", "id");
        write(&store, &mut st, &[("k_a.one", "1"), ("k_a.two", "2")], None);
        write(&store, &mut st, &[("k_a.one", "changed"), ("k_a.three", "3")], Some(1));
        let r = plan_restore(&store, "acme", 1, None).unwrap();
        let actions: Vec<(String, Action)> =
            r.plan.tenants[0].resource_changes.iter().map(|c| (c.address.to_string(), c.action)).collect();
        assert_eq!(
            actions,
            [
                ("k_a.one".to_string(), Action::Update),
                ("k_a.two".to_string(), Action::Create),
                ("k_a.three".to_string(), Action::Delete)
            ]
        );
        assert_eq!(record_restore(&store, &r).unwrap(), 3);
        let now = store.get("acme").unwrap().unwrap();
        assert_eq!(now.resources, store.history("acme").unwrap()[0].state.resources);
        assert_eq!(store.history("acme").unwrap().iter().map(|h| h.serial).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(store.audit("acme").unwrap().last().unwrap().operation, OPERATION);
        assert!(store.locks().unwrap().is_empty());
        // Planned against serial 3: refused once the record moved on.
        let r = plan_restore(&store, "acme", 2, None).unwrap();
        write(&store, &mut st.clone(), &[], Some(3));
        let e = record_restore(&store, &r).unwrap_err().to_string();
        assert!(e.contains("changed since the restore was planned"), "{e}");
    }

    #[test]
    fn unknown_serials_other_lineages_current_and_locked_tenants_are_refused() {
        let store = MemoryStore::new();
        let mut st = TenantState::new("acme", "id");
        write(&store, &mut st, &[("k_a.one", "1")], None);
        write(&store, &mut st, &[("k_a.one", "2")], Some(1));
        let err = |s| plan_restore(&store, "acme", s, None).unwrap_err().to_string();
        assert!(err(7).contains("no serial 7 in its history (it holds serial(s) 1;"), "{}", err(7));
        assert!(err(2).contains("is the current record"), "{}", err(2));
        store.remove("acme", 2, "destroy").unwrap();
        let e = plan_restore(&store, "acme", 1, None).unwrap_err().to_string();
        assert!(e.contains("has no current record"), "{e}");
        let mut reborn = TenantState::new("acme", "id");
        write(&store, &mut reborn, &[("k_a.one", "new")], None);
        assert!(err(2).contains("belongs to another lineage"), "{}", err(2));
        write(&store, &mut reborn, &[("k_a.one", "newer")], Some(1));
        let r = plan_restore(&store, "acme", 1, None).unwrap();
        let after = r.resources[&"k_a.one".parse().unwrap()].attrs["v"].clone();
        assert_eq!(after, Value::from("new"), "serial 1 of the current lineage, not the earlier life's");
        store.lock(&LockInfo::new("acme", "apply")).unwrap();
        assert!(err(1).contains("is locked by"), "{}", err(1));
        assert_eq!(serial_list(&[1, 2, 3, 5, 7, 8]), "1-3, 5, 7-8");
    }
}
