//! `matih state mv FROM TO`: give a recorded resource a new address, in one tenant or in every
//! tenant that records it, so that renaming a resource is not a destroy and a create.
//!
//! Addresses are written as `--target` takes them (`[TENANT/]KIND.NAME`) but without wildcards.
//! The kind never changes (a resource of another kind belongs to another provider) and the new
//! address must be free. Every tenant is checked before any is written; each tenant is then moved
//! under its state lock in one write that also appends an audit entry, and the replaced state goes
//! to the history (so `state history` shows the serial before the move).
//!
//! **Invariant:** the attributes and outputs of a moved resource are unchanged; only its address
//! and the `depends_on` entries of other resources that named it change.

use anyhow::{bail, Context, Result};

use crate::addr::ResourceAddr;
use crate::plan::AddrPattern;
use crate::state::{self, AuditEntry, LockInfo, StateStore, TenantState};

/// The operation name recorded in locks, history and the audit log.
pub const OPERATION: &str = "state mv";

/// A move asked for: `from` becomes `to` in `tenant` (every tenant recording `from` when `None`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Move {
    pub tenant: Option<String>,
    pub from: ResourceAddr,
    pub to: ResourceAddr,
}

/// One tenant's move, as done or as it would be done (`--dry-run`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Moved {
    pub slug: String,
    /// The serial the move wrote (the current serial for a dry run).
    pub serial: u64,
    /// Other resources whose `depends_on` named `from`.
    pub dependents: usize,
}

fn exact(s: &str, which: &str) -> Result<AddrPattern> {
    let p: AddrPattern = s.parse().map_err(|e: String| anyhow::anyhow!("{which}: {e}"))?;
    let text = p.to_string();
    if text.contains(['*', '?']) {
        bail!("{which}: {s:?} has a wildcard; state mv moves one resource address (a tenant may be left out for every tenant)");
    }
    Ok(p)
}

impl Move {
    /// Parses `FROM` and `TO`. `TO` may leave out the tenant `FROM` names; the tenant and the kind
    /// must be the same on both sides, and the addresses must differ.
    pub fn parse(from: &str, to: &str) -> Result<Move> {
        let f = exact(from, "FROM")?;
        let t = exact(to, "TO")?;
        let tenant = match (&f.tenant, &t.tenant) {
            (a, None) => a.clone(),
            (Some(a), Some(b)) if a == b => Some(a.clone()),
            (None, Some(b)) => {
                bail!("TO names tenant {b:?} but FROM does not; qualify both (or neither) with the same tenant")
            }
            (Some(a), Some(b)) => {
                bail!("FROM is in tenant {a:?} and TO in {b:?}; state mv never moves between tenants")
            }
        };
        if f.kind != t.kind {
            bail!(
                "{from} is a {} and {to} a {}; state mv never changes a resource's kind (remove it with `state rm` \
                 and import the new one)",
                f.kind,
                t.kind
            );
        }
        if f.name == t.name {
            bail!("FROM and TO are the same address {}.{}; nothing to move", f.kind, f.name);
        }
        Ok(Move { tenant, from: ResourceAddr::new(f.kind, f.name), to: ResourceAddr::new(t.kind, t.name) })
    }
}

/// Checks that `from` can move to `to` in `st`; returns how many other resources depend on it.
/// `Ok(None)`: `st` records no `from` (only an error when the tenant was named).
fn check(st: &TenantState, mv: &Move) -> Result<Option<usize>> {
    if !st.resources.contains_key(&mv.from) {
        return Ok(None);
    }
    if st.resources.contains_key(&mv.to) {
        bail!(
            "tenant {:?} already records {}; nothing was moved (remove it first with `matih state rm`)",
            st.slug,
            mv.to
        );
    }
    Ok(Some(st.resources.values().filter(|r| r.depends_on.contains(&mv.from)).count()))
}

/// Applies the move to a copy of the state: the resource under its new address, dependents
/// pointing at it, serial and time advanced.
pub fn moved_state(st: &TenantState, mv: &Move) -> TenantState {
    let mut new = st.clone();
    if let Some(r) = new.resources.remove(&mv.from) {
        new.resources.insert(mv.to.clone(), r);
    }
    for r in new.resources.values_mut() {
        if r.depends_on.remove(&mv.from) {
            r.depends_on.insert(mv.to.clone());
        }
    }
    new.serial = st.serial + 1;
    new.updated_at = state::now_rfc3339();
    // Not part of any run: the state it replaces goes to history.
    new.run_id = None;
    new
}

/// The tenants the move touches, each checked: every tenant recording `from` when none is named.
fn plan_moves(store: &dyn StateStore, mv: &Move) -> Result<Vec<Moved>> {
    let slugs = match &mv.tenant {
        Some(t) => vec![t.clone()],
        None => store.tenants()?,
    };
    let mut out = Vec::new();
    for slug in slugs {
        let st = store.get(&slug)?.with_context(|| format!("no tenant {slug:?} in the state store"))?;
        match check(&st, mv)? {
            Some(dependents) => out.push(Moved { slug, serial: st.serial, dependents }),
            None if mv.tenant.is_some() => bail!("tenant {slug:?} has no resource {}; nothing was moved", mv.from),
            None => {}
        }
    }
    if out.is_empty() {
        bail!("no tenant in the state store records {}; nothing was moved", mv.from);
    }
    Ok(out)
}

/// Moves `mv.from` to `mv.to` (see the module docs). With `dry_run`, checks and reports without
/// writing or locking.
pub fn move_resource(store: &dyn StateStore, mv: &Move, dry_run: bool) -> Result<Vec<Moved>> {
    let planned = plan_moves(store, mv)?;
    if dry_run {
        return Ok(planned);
    }
    let mut done = Vec::new();
    for p in planned {
        done.push(move_one(store, &p.slug, mv)?);
    }
    Ok(done)
}

fn move_one(store: &dyn StateStore, slug: &str, mv: &Move) -> Result<Moved> {
    let lock = LockInfo::new(slug, OPERATION);
    store.lock(&lock)?;
    let result = (|| -> Result<Moved> {
        // Read again under the lock: another run may have written since the check.
        let st = store.get(slug)?.with_context(|| format!("no tenant {slug:?} in the state store"))?;
        let dependents = check(&st, mv)?
            .with_context(|| format!("tenant {slug:?} has no resource {}; nothing was moved", mv.from))?;
        let new = moved_state(&st, mv);
        let mut entry = AuditEntry::new(slug, OPERATION, "move", "ok");
        entry.resource = Some(mv.to.clone());
        entry.message = Some(format!("{} moved to {}", mv.from, mv.to));
        store.put_audited(&new, Some(st.serial), OPERATION, &[entry])?;
        Ok(Moved { slug: slug.to_string(), serial: new.serial, dependents })
    })();
    store.unlock(slug, &lock.id)?;
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{MemoryStore, ResourceState};

    fn res(deps: &[&str]) -> ResourceState {
        ResourceState {
            phase: crate::phase::Phase::ALL[0],
            attrs: Default::default(),
            outputs: Default::default(),
            depends_on: deps.iter().map(|d| d.parse().unwrap()).collect(),
        }
    }

    fn tenant(store: &MemoryStore, slug: &str, addrs: &[(&str, &[&str])]) {
        let mut st = TenantState::new(slug, slug);
        st.serial = 1;
        for (a, deps) in addrs {
            st.resources.insert(a.parse().unwrap(), res(deps));
        }
        store.put(&st, None, "apply").unwrap();
    }

    #[test]
    fn parse_refuses_kind_change_tenant_change_wildcards_and_same_address() {
        assert!(Move::parse("acme/a_b.c", "a_b.d").unwrap().tenant.as_deref() == Some("acme"));
        assert!(Move::parse("a_b.c", "a_b.d").unwrap().tenant.is_none());
        let err = |f: &str, t: &str| Move::parse(f, t).unwrap_err().to_string();
        assert!(err("a_b.c", "x_y.c").contains("never changes a resource's kind"), "{}", err("a_b.c", "x_y.c"));
        assert!(err("acme/a_b.c", "beta/a_b.d").contains("never moves between tenants"));
        assert!(err("a_b.c", "acme/a_b.d").contains("FROM does not"));
        assert!(err("*/a_b.c", "a_b.d").contains("wildcard"));
        assert!(err("a_b.c", "a_b.c").contains("nothing to move"));
        assert!(err("A.c", "a_b.d").contains("FROM: invalid resource address"));
    }

    #[test]
    fn moves_in_every_tenant_and_rewrites_dependents() {
        let store = MemoryStore::new();
        tenant(&store, "acme", &[("k_d.old", &[]), ("k_s.svc", &["k_d.old"])]);
        tenant(&store, "beta", &[("k_d.old", &[])]);
        tenant(&store, "gamma", &[("k_d.other", &[])]);
        let mv = Move::parse("k_d.old", "k_d.new").unwrap();
        let dry = move_resource(&store, &mv, true).unwrap();
        assert_eq!(dry.iter().map(|m| m.slug.as_str()).collect::<Vec<_>>(), ["acme", "beta"]);
        assert!(store.get("acme").unwrap().unwrap().resources.contains_key(&mv.from), "a dry run writes nothing");
        let done = move_resource(&store, &mv, false).unwrap();
        assert_eq!(done[0], Moved { slug: "acme".into(), serial: 2, dependents: 1 });
        let acme = store.get("acme").unwrap().unwrap();
        assert!(!acme.resources.contains_key(&mv.from) && acme.resources.contains_key(&mv.to));
        assert!(acme.resources[&"k_s.svc".parse().unwrap()].depends_on.contains(&mv.to));
        assert_eq!(store.history("acme").unwrap().last().unwrap().state.serial, 1);
        let audit = store.audit("beta").unwrap();
        assert_eq!(audit.last().unwrap().operation, OPERATION);
        assert_eq!(store.get("gamma").unwrap().unwrap().serial, 1, "a tenant without FROM is left alone");
        assert!(store.locks().unwrap().is_empty());
    }

    #[test]
    fn an_occupied_target_in_any_tenant_moves_nothing() {
        let store = MemoryStore::new();
        tenant(&store, "acme", &[("k_d.old", &[])]);
        tenant(&store, "beta", &[("k_d.old", &[]), ("k_d.new", &[])]);
        let mv = Move::parse("k_d.old", "k_d.new").unwrap();
        let e = move_resource(&store, &mv, false).unwrap_err().to_string();
        assert!(e.contains("already records k_d.new"), "{e}");
        assert_eq!(store.get("acme").unwrap().unwrap().serial, 1);
        let e = move_resource(&store, &Move::parse("k_d.gone", "k_d.x").unwrap(), false).unwrap_err().to_string();
        assert!(e.contains("no tenant in the state store records k_d.gone"), "{e}");
        let e = move_resource(&store, &Move::parse("zeta/k_d.old", "k_d.x").unwrap(), false).unwrap_err().to_string();
        assert!(e.contains("no tenant \"zeta\""), "{e}");
    }
}
