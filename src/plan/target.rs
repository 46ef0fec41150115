//! Acting on part of the fleet: `--target`, `--exclude` and `--replace` addresses.
//!
//! An address is `[TENANT/]KIND.NAME`; each of the three parts may hold the wildcards `*` (any
//! run of characters) and `?` (one character), so `*/postgresql_role.tenant` is the role of every
//! tenant and `acme/kubernetes_deployment.*` every Deployment of acme. Without `TENANT/` an
//! address names the resource in every tenant of the run.
//!
//! - `--target`: only the matching resources and what they need: for a resource created or
//!   changed, what it depends on (transitively), as Terraform does; for a resource deleted, the
//!   deleted resources that depend on it (they go first).
//! - `--exclude`: everything but the matching resources and what needs them (OpenTofu's
//!   `-exclude`): a resource that depends on an excluded one is left out too.
//! - `--replace`: the matching recorded resources are replaced even though nothing forces it
//!   (Terraform's `-replace`); it is given to the diff, so that generated secrets follow the
//!   replacement rules.
//!
//! A plan made with `--target` or `--exclude` is *partial*: each tenant's plan carries
//! [`Partial`] (the addresses asked for, and how many changes were left out), the renderers say
//! so, and a saved partial plan applies only what it lists. Tenants none of whose resources are
//! selected are left out of the plan. An address that matches nothing in any tenant of the run is
//! an error, never an empty plan.
//!
//! **Invariant:** pure: selects from a plan already made; decides no action but `--replace`'s.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::{Action, TenantPlan};
use crate::addr::ResourceAddr;

/// A `[TENANT/]KIND.NAME` pattern, with `*` and `?` wildcards in each part.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddrPattern {
    /// `None`: every tenant.
    pub tenant: Option<String>,
    pub kind: String,
    pub name: String,
}

impl fmt::Display for AddrPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(t) = &self.tenant {
            write!(f, "{t}/")?;
        }
        write!(f, "{}.{}", self.kind, self.name)
    }
}

impl FromStr for AddrPattern {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |why: &str| {
            format!(
                "invalid resource address {s:?}: {why} (expected [TENANT/]KIND.NAME, e.g. acme/kubernetes_deployment.query_engine \
                 or */postgresql_role.tenant)"
            )
        };
        let (tenant, rest) = match s.split_once('/') {
            Some((t, rest)) => (Some(t), rest),
            None => (None, s),
        };
        if let Some(t) = tenant {
            let ok = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'*' | b'?');
            if t.is_empty() || !t.bytes().all(ok) {
                return Err(bad("the tenant is a slug (lowercase letters, digits, '-'), with * and ? as wildcards"));
            }
        }
        let ok = |p: &str| {
            !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_*?".contains(&b))
        };
        match rest.split_once('.') {
            Some((kind, name)) if ok(kind) && ok(name) => {
                Ok(AddrPattern { tenant: tenant.map(str::to_string), kind: kind.to_string(), name: name.to_string() })
            }
            _ => Err(bad("KIND and NAME are lowercase letters, digits and '_', with * and ? as wildcards")),
        }
    }
}

impl AddrPattern {
    /// Whether the pattern names tenant `slug` (any tenant without `TENANT/`).
    pub fn matches_tenant(&self, slug: &str) -> bool {
        self.tenant.as_deref().is_none_or(|t| wildcard(t, slug))
    }

    /// Whether the pattern names resource `addr` of tenant `slug`.
    pub fn matches(&self, slug: &str, addr: &ResourceAddr) -> bool {
        self.matches_tenant(slug) && wildcard(&self.kind, &addr.kind) && wildcard(&self.name, &addr.name)
    }
}

/// Shell-style matching of `text` against `pattern` with `*` and `?` (no classes, no escapes: the
/// parts of an address have no other special characters). Iterative, with one backtrack point,
/// so it is linear for patterns with one `*` and never exponential.
fn wildcard(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&b| b == b'*')
}

/// What a run is asked to act on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Targeting {
    pub target: Vec<AddrPattern>,
    pub exclude: Vec<AddrPattern>,
    pub replace: Vec<AddrPattern>,
}

/// Marks a tenant's plan that covers only part of its configuration.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Partial {
    /// The `--target` addresses the plan was made with, as given.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub target: Vec<String>,
    /// The `--exclude` addresses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
    /// Changes (other than no-ops) of this tenant that the full plan has and this one leaves out.
    pub left_out: usize,
}

impl Targeting {
    /// True when the plan is to cover only part of the configuration.
    pub fn is_partial(&self) -> bool {
        !self.target.is_empty() || !self.exclude.is_empty()
    }

    /// The `--replace` addresses of tenant `slug` among `addrs` (the tenant's desired resources).
    pub fn replace_in<'a>(&self, slug: &str, addrs: impl Iterator<Item = &'a ResourceAddr>) -> BTreeSet<ResourceAddr> {
        if self.replace.is_empty() {
            return BTreeSet::new();
        }
        addrs.filter(|a| self.replace.iter().any(|p| p.matches(slug, a))).cloned().collect()
    }

    /// Every pattern that matches no resource of `tenants` (desired or recorded), with why, so
    /// that a misspelt address is an error and not a plan that does nothing.
    pub fn unmatched(&self, tenants: &[TenantPlan]) -> Vec<String> {
        let mut out = Vec::new();
        for (flag, patterns) in [("--target", &self.target), ("--exclude", &self.exclude), ("--replace", &self.replace)]
        {
            for p in patterns {
                let in_tenants: Vec<&TenantPlan> = tenants.iter().filter(|t| p.matches_tenant(&t.slug)).collect();
                if in_tenants.is_empty() {
                    let slugs: Vec<&str> = tenants.iter().map(|t| t.slug.as_str()).collect();
                    out.push(format!(
                        "{flag} {p}: no tenant {:?} among the specs of this run ({})",
                        p.tenant.as_deref().unwrap_or(""),
                        slugs.join(", ")
                    ));
                    continue;
                }
                let any = in_tenants.iter().any(|t| t.resource_changes.iter().any(|c| p.matches(&t.slug, &c.address)));
                if !any {
                    let hint = suggestion(p, &in_tenants).map(|s| format!("; did you mean {s}?")).unwrap_or_default();
                    out.push(format!("{flag} {p}: no such resource in the plan{hint}"));
                }
            }
        }
        out
    }

    /// Keeps, in `plan`, what `--target` and `--exclude` select (see the module's rules) and
    /// marks it partial. Returns false when nothing of the tenant is selected.
    pub fn select(&self, plan: &mut TenantPlan) -> bool {
        if !self.is_partial() {
            return true;
        }
        let slug = plan.slug.clone();
        let changes = &plan.resource_changes;
        let index: HashMap<&ResourceAddr, usize> = changes.iter().enumerate().map(|(i, c)| (&c.address, i)).collect();
        // What each change needs done with it: its dependencies (or, for a delete, the deletes
        // of what depends on it).
        let mut needs: Vec<Vec<usize>> = vec![Vec::new(); changes.len()];
        for (i, c) in changes.iter().enumerate() {
            if c.action == Action::Delete {
                for (j, d) in changes.iter().enumerate() {
                    if d.action == Action::Delete && d.depends_on.contains(&c.address) {
                        needs[i].push(j);
                    }
                }
            } else {
                needs[i].extend(c.depends_on.iter().filter_map(|a| index.get(a).copied()));
            }
        }
        let mut keep = vec![self.target.is_empty(); changes.len()];
        let mut stack: Vec<usize> = Vec::new();
        for (i, c) in changes.iter().enumerate() {
            if self.target.iter().any(|p| p.matches(&slug, &c.address)) {
                stack.push(i);
            }
        }
        while let Some(i) = stack.pop() {
            if !std::mem::replace(&mut keep[i], true) {
                stack.extend(needs[i].iter().copied());
            }
        }
        // Excluded: the matches and, transitively, whatever needs one of them.
        let mut out = vec![false; changes.len()];
        let mut stack: Vec<usize> = (0..changes.len())
            .filter(|&i| self.exclude.iter().any(|p| p.matches(&slug, &changes[i].address)))
            .collect();
        while let Some(i) = stack.pop() {
            if !std::mem::replace(&mut out[i], true) {
                stack.extend((0..changes.len()).filter(|&j| needs[j].contains(&i)));
            }
        }
        let selected: Vec<bool> = keep.iter().zip(&out).map(|(k, o)| *k && !*o).collect();
        let left_out = changes.iter().zip(&selected).filter(|(c, s)| !**s && c.action != Action::NoOp).count();
        let mut it = selected.iter();
        plan.resource_changes.retain(|_| *it.next().expect("one per change"));
        plan.partial = Some(Partial {
            target: self.target.iter().map(ToString::to_string).collect(),
            exclude: self.exclude.iter().map(ToString::to_string).collect(),
            left_out,
        });
        !plan.resource_changes.is_empty()
    }
}

/// The address of the tenants' plans closest to `p` (same kind, or same name), for "did you mean".
fn suggestion(p: &AddrPattern, tenants: &[&TenantPlan]) -> Option<String> {
    let mut seen = BTreeSet::new();
    for t in tenants {
        for c in &t.resource_changes {
            let a = &c.address;
            if wildcard(&p.kind, &a.kind) || wildcard(&p.name, &a.name) {
                seen.insert(a.to_string());
            }
        }
    }
    let mut it = seen.into_iter();
    let first = it.next()?;
    Some(match it.next() {
        None => first,
        Some(second) => format!("{first} or {second}"),
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::phase::Phase;
    use crate::plan::ResourceChange;

    fn addr(s: &str) -> ResourceAddr {
        s.parse().unwrap()
    }

    fn change(a: &str, action: Action, deps: &[&str]) -> ResourceChange {
        ResourceChange {
            address: addr(a),
            phase: Phase::CreateNamespace,
            action,
            before: None,
            after: None,
            changes: Vec::new(),
            depends_on: deps.iter().map(|d| addr(d)).collect(),
            notes: Vec::new(),
            manifest_changes: Vec::new(),
        }
    }

    fn tenant(slug: &str, changes: Vec<ResourceChange>) -> TenantPlan {
        TenantPlan::with_changes(slug, changes)
    }

    fn sample(slug: &str) -> TenantPlan {
        tenant(
            slug,
            vec![
                change("k_namespace.tenant", Action::NoOp, &[]),
                change("k_account.a", Action::Create, &["k_namespace.tenant"]),
                change("k_deployment.q", Action::Create, &["k_account.a"]),
                change("k_deployment.r", Action::Update, &["k_namespace.tenant"]),
                change("k_old.x", Action::Delete, &[]),
                change("k_old.y", Action::Delete, &["k_old.x"]),
            ],
        )
    }

    fn targeting(target: &[&str], exclude: &[&str]) -> Targeting {
        Targeting {
            target: target.iter().map(|s| s.parse().unwrap()).collect(),
            exclude: exclude.iter().map(|s| s.parse().unwrap()).collect(),
            replace: Vec::new(),
        }
    }

    fn kept(t: &TenantPlan) -> BTreeSet<String> {
        t.resource_changes.iter().map(|c| c.address.to_string()).collect()
    }

    #[test]
    fn patterns_parse_and_match_with_wildcards() {
        let p: AddrPattern = "*/postgresql_role.tenant".parse().unwrap();
        assert!(p.matches("acme", &addr("postgresql_role.tenant")));
        assert!(!p.matches("acme", &addr("postgresql_role.other")));
        let p: AddrPattern = "acme/kubernetes_deployment.*".parse().unwrap();
        assert!(p.matches("acme", &addr("kubernetes_deployment.query_engine")));
        assert!(!p.matches("globex", &addr("kubernetes_deployment.query_engine")));
        let p: AddrPattern = "a?me-*/k.n".parse().unwrap();
        assert!(p.matches("acme-eu", &addr("k.n")) && !p.matches("acme", &addr("k.n")));
        assert_eq!(p.to_string(), "a?me-*/k.n");
        for bad in ["nodot", "Acme/k.n", "/k.n", "acme/k.", "k.N", "acme/x/k.n"] {
            let e = bad.parse::<AddrPattern>().unwrap_err();
            assert!(e.contains("[TENANT/]KIND.NAME"), "{bad}: {e}");
        }
        assert!(wildcard("*a*b*", "xxaxxbxx") && !wildcard("*a*b", "xxaxxbxx") && wildcard("**", ""));
    }

    #[test]
    fn a_target_brings_what_it_depends_on_and_nothing_else() {
        let mut t = sample("acme");
        assert!(targeting(&["k_deployment.q"], &[]).select(&mut t));
        assert_eq!(kept(&t), BTreeSet::from(["k_namespace.tenant", "k_account.a", "k_deployment.q"].map(String::from)));
        let partial = t.partial.unwrap();
        assert_eq!((partial.target, partial.left_out), (vec!["k_deployment.q".to_string()], 3));
        // A delete brings the deletes of what depends on it.
        let mut t = sample("acme");
        targeting(&["acme/k_old.x"], &[]).select(&mut t);
        assert_eq!(kept(&t), BTreeSet::from(["k_old.x", "k_old.y"].map(String::from)));
        // Another tenant's address selects nothing here.
        let mut t = sample("globex");
        assert!(!targeting(&["acme/k_old.x"], &[]).select(&mut t));
    }

    #[test]
    fn an_exclude_leaves_out_what_needs_it() {
        let mut t = sample("acme");
        targeting(&[], &["k_account.a", "k_old.y"]).select(&mut t);
        assert_eq!(kept(&t), BTreeSet::from(["k_namespace.tenant", "k_deployment.r"].map(String::from)));
        // Excluding k_old.y keeps k_old.x too: x goes only after what depends on it.
        let mut t = sample("acme");
        targeting(&["*/k_deployment.*"], &["k_deployment.r"]).select(&mut t);
        assert_eq!(kept(&t), BTreeSet::from(["k_namespace.tenant", "k_account.a", "k_deployment.q"].map(String::from)));
        let mut whole = sample("acme");
        assert!(Targeting::default().select(&mut whole));
        assert_eq!((whole.resource_changes.len(), whole.partial), (6, None));
    }

    #[test]
    fn unmatched_addresses_are_named_with_a_suggestion() {
        let tenants = [sample("acme"), sample("globex")];
        let t = Targeting {
            target: vec!["k_deployment.qq".parse().unwrap(), "initech/k_account.a".parse().unwrap()],
            exclude: vec!["*/k_account.a".parse().unwrap()],
            replace: vec!["acme/k_nope.x".parse().unwrap()],
        };
        let errors = t.unmatched(&tenants);
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(errors[0].contains("did you mean k_deployment.q or k_deployment.r?"), "{}", errors[0]);
        assert!(
            errors[1].contains("no tenant \"initech\" among the specs of this run (acme, globex)"),
            "{}",
            errors[1]
        );
        assert!(errors[2].starts_with("--replace acme/k_nope.x: no such resource"), "{}", errors[2]);
        let replace = Targeting { replace: vec!["*/k_deployment.*".parse().unwrap()], ..Targeting::default() };
        let addrs = [addr("k_deployment.q"), addr("k_account.a")];
        assert_eq!(replace.replace_in("acme", addrs.iter()), BTreeSet::from([addr("k_deployment.q")]));
    }
}
