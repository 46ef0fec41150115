//! Plans: the desired graph of each tenant diffed against its recorded state, rendered for people
//! (text, markdown) and machines (JSON), and saved as sealed plan files.
//!
//! **Invariant:** never calls a provider and never writes state. A plan is data: what will be
//! done, to which resource, with which attribute changes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::addr::ResourceAddr;
use crate::phase::Phase;
use crate::value::Value;

mod conform;
mod diff;
mod moved;
mod notes;
pub(crate) mod path;
mod planfile;
mod render;
mod target;

pub use conform::nonconforming;
pub use diff::{diff, diff_adopting, diff_refreshed, diff_replacing, diff_replacing_owned, Unrecorded};
pub use moved::{move_conflicts, moved_state};
pub use planfile::{
    decode_plan, file_digest, load_plan, load_plan_digest, load_plan_keyed, parse_digest, save_plan, save_plan_keyed,
    PlanFileError, PlanKey, PLAN_FILE_FORMAT, PLAN_KEY_ENV,
};
pub use render::{
    json_document, module_address, render_json, render_json_saved, render_json_with, render_markdown,
    render_markdown_saved, render_markdown_with, render_terraform, render_text, render_text_with, terraform_document,
    JsonStream, MarkdownStream, Prepared, Preparer, Spill, TerraformStream, TextOptions, TextStream,
    TERRAFORM_FORMAT_VERSION,
};
pub use target::{AddrPattern, Partial, Targeting};

/// The version of the JSON plan format (`matih plan --format json`, plan files). Bumped on any
/// incompatible change.
/// 1.1: `partial` (plans made with `--target`/`--exclude`), which a 1.0 reader would drop.
/// 1.2: the `adopt` action (an existing object matih has no record of, taken over) and its count;
/// `refresh_only` plans.
pub const FORMAT_VERSION: &str = "1.2";

/// What will be done to one resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    NoOp,
    Create,
    /// Take over an object that exists but that matih has no record of (made by hand, by another
    /// tool, or by a run whose state was lost), changing it to match the spec: `before` is what
    /// was read, `changes` the differences. Never a plain create; nothing is deleted on failure.
    Adopt,
    Update,
    /// Delete, then create again (an attribute that cannot change in place changed).
    Replace,
    Delete,
}

impl Action {
    /// The name in JSON plans, progress events and the audit log (its serde name).
    pub fn name(self) -> &'static str {
        match self {
            Action::NoOp => "no-op",
            Action::Create => "create",
            Action::Adopt => "adopt",
            Action::Update => "update",
            Action::Replace => "replace",
            Action::Delete => "delete",
        }
    }

    /// Terraform's symbols: `+`, `~`, `-/+`, `-`, and a space for no-op; `<=` (Terraform's
    /// "read") for an adoption.
    pub fn symbol(self) -> &'static str {
        match self {
            Action::NoOp => " ",
            Action::Create => "+",
            Action::Adopt => "<=",
            Action::Update => "~",
            Action::Replace => "-/+",
            Action::Delete => "-",
        }
    }
}

/// The change of one attribute (a dotted path into the attribute tree).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttrChange {
    /// `metadata.labels["matih.ai/tier"]`-style path.
    pub path: String,
    pub before: Option<Value>,
    pub after: Option<Value>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub forces_replacement: bool,
}

/// What will be done to one resource, with the full before and after attribute sets.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceChange {
    pub address: ResourceAddr,
    pub phase: Phase,
    pub action: Action,
    /// Recorded attributes (none for a create).
    pub before: Option<BTreeMap<String, Value>>,
    /// Desired attributes, references resolved where state already knows them (none for a delete).
    pub after: Option<BTreeMap<String, Value>>,
    /// Attribute-level changes for updates and replaces.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<AttrChange>,
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub depends_on: BTreeSet<ResourceAddr>,
    /// Why the change happens or what it will do, for reviewers, when the attribute diff alone does
    /// not say it: `password rotated: kubernetes_secret.database_credentials is missing`,
    /// `pending migrations: V3__orders.sql`. One line each, no trailing period.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// For a Helm release: the objects its rendered chart changes against the release's live
    /// manifest (helm-diff's view), found while planning with the providers at hand. For review
    /// only: apply does not read it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub manifest_changes: Vec<ManifestChange>,
}

/// One Kubernetes object of a Helm release's rendered manifest that the change adds, removes or
/// changes; secret values never appear (`(sensitive value)`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestChange {
    /// `Deployment ai-service`.
    pub object: String,
    /// `added`, `removed` or `changed`.
    pub change: String,
    /// For `changed`: the unified diff of the object's YAML, live (`-`) to desired (`+`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diff: Option<String>,
}

/// The state a tenant's plan was computed against.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PriorState {
    pub lineage: String,
    pub serial: u64,
}

/// The plan of one tenant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantPlan {
    pub slug: String,
    pub tenant_id: String,
    pub tier: String,
    /// The spec file the tenant came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<PathBuf>,
    /// `None` when the tenant has no recorded state yet.
    pub prior_state: Option<PriorState>,
    /// In apply order: phase, then topological order inside the phase. Deletes of resources no
    /// longer desired are listed in their phase too; apply runs deletes in reverse order.
    pub resource_changes: Vec<ResourceChange>,
    /// Set when the plan covers only part of the tenant (`--target`, `--exclude`): it then lists
    /// only the selected resources, and applying it does only that.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partial: Option<Partial>,
    /// Differences the plan leaves alone because an `ignore_changes` path covers them (the
    /// catalog's or the tenant's), in plan order: `after` keeps the recorded (or live) value there.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignored: Vec<IgnoredChange>,
    /// Recorded resources the catalog's `moved` blocks give a new address: applying the plan
    /// moves their records (never a destroy and a create); their changes are under the new one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub moved: Vec<PlannedMove>,
}

/// A record moved to a new address by a `moved` block of the catalog.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedMove {
    pub from: ResourceAddr,
    pub to: ResourceAddr,
    /// Where the `moved` block is written (`file:line:col`).
    pub declared_at: String,
}

/// A difference left alone by `ignore_changes`: `before` is the recorded value (the live one after
/// a refresh), `after` what the spec says; `None` where the attribute is absent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IgnoredChange {
    pub address: ResourceAddr,
    pub path: String,
    pub before: Option<Value>,
    pub after: Option<Value>,
    /// Where the `ignore_changes` path is written (`file:line:col`).
    pub declared_at: String,
}

/// A plan for one or more tenants.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub format_version: String,
    pub tenants: Vec<TenantPlan>,
    /// A refresh-only plan (`--refresh-only`): its updates are attributes changed outside matih
    /// (`before` recorded, `after` live) and its deletes objects deleted outside matih. Applying it
    /// records them in the state and changes nothing in the real world.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub refresh_only: bool,
    /// A restore plan (`matih state restore SLUG --serial N`): its changes are to the record only
    /// (`before` the current record, `after` serial N's); applying it writes serial N's resources
    /// as a new serial and changes nothing in the real world.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_of: Option<u64>,
}

/// Counts of each action, for the summary line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// Existing objects taken over (`Action::Adopt`); Terraform counts none of them as added.
    #[serde(default)]
    pub adopt: usize,
    /// Records moved to a new address (the catalog's `moved` blocks).
    #[serde(default)]
    pub moved: usize,
    pub add: usize,
    pub change: usize,
    pub replace: usize,
    pub destroy: usize,
}

impl Summary {
    /// Resources to add, counted the way Terraform does: creates plus replaces.
    pub fn to_add(&self) -> usize {
        self.add + self.replace
    }

    /// Resources to destroy, counted the way Terraform does: deletes plus replaces.
    pub fn to_destroy(&self) -> usize {
        self.destroy + self.replace
    }

    pub fn is_empty(&self) -> bool {
        self.adopt + self.moved + self.add + self.change + self.replace + self.destroy == 0
    }

    fn count(&mut self, action: Action) {
        match action {
            Action::NoOp => {}
            Action::Create => self.add += 1,
            Action::Adopt => self.adopt += 1,
            Action::Update => self.change += 1,
            Action::Replace => self.replace += 1,
            Action::Delete => self.destroy += 1,
        }
    }

    pub(crate) fn absorb(&mut self, other: Summary) {
        self.adopt += other.adopt;
        self.moved += other.moved;
        self.add += other.add;
        self.change += other.change;
        self.replace += other.replace;
        self.destroy += other.destroy;
    }
}

impl TenantPlan {
    /// Counts of each action in this tenant's plan (`add` counts creates only, `replace` replaces).
    pub fn summary(&self) -> Summary {
        let mut summary = Summary { moved: self.moved.len(), ..Summary::default() };
        for change in &self.resource_changes {
            summary.count(change.action);
        }
        summary
    }

    /// True when anything other than a no-op is planned (a move included).
    pub fn has_changes(&self) -> bool {
        !self.moved.is_empty() || self.resource_changes.iter().any(|c| c.action != Action::NoOp)
    }
}

#[cfg(test)]
impl TenantPlan {
    /// The plan of tenant `slug` (id `id`, tier `free`, nothing recorded) with these changes and
    /// nothing else: what the unit tests of the renderers and policies build on.
    pub(crate) fn with_changes(slug: &str, resource_changes: Vec<ResourceChange>) -> TenantPlan {
        TenantPlan {
            slug: slug.into(),
            tenant_id: "id".into(),
            tier: "free".into(),
            source: None,
            prior_state: None,
            resource_changes,
            partial: None,
            ignored: Vec::new(),
            moved: Vec::new(),
        }
    }
}

impl Plan {
    /// A plan of the current [`FORMAT_VERSION`] over `tenants`, in the order given.
    pub fn new(tenants: Vec<TenantPlan>) -> Plan {
        Plan { format_version: FORMAT_VERSION.to_string(), tenants, refresh_only: false, restore_of: None }
    }

    /// Counts of each action over every tenant.
    pub fn summary(&self) -> Summary {
        let mut summary = Summary::default();
        for tenant in &self.tenants {
            summary.absorb(tenant.summary());
        }
        summary
    }

    /// True when any tenant has anything other than a no-op planned.
    pub fn has_changes(&self) -> bool {
        self.tenants.iter().any(TenantPlan::has_changes)
    }

    /// The targeting of a partial plan (that of its first partial tenant: one run gives every
    /// tenant the same), and the changes left out over every tenant.
    pub fn partial(&self) -> Option<(&Partial, usize)> {
        let first = self.tenants.iter().find_map(|t| t.partial.as_ref())?;
        Some((first, self.tenants.iter().filter_map(|t| t.partial.as_ref()).map(|p| p.left_out).sum()))
    }
}

impl ResourceChange {
    /// Paths in `after` whose value is known only after apply (references to outputs not yet
    /// known, computed values, secrets generated at apply), in attribute order. Empty for a delete.
    pub fn after_unknown(&self) -> Vec<String> {
        let unknown = |v: &Value| {
            path::is_unknown_leaf(v) || matches!(v, Value::Secret(crate::value::Secret { fingerprint: None, .. }))
        };
        self.after.as_ref().map_or_else(Vec::new, |after| path::paths_where(after, &unknown))
    }

    /// Paths holding a secret in `before` or `after`, sorted and without duplicates.
    pub fn sensitive_paths(&self) -> Vec<String> {
        let is_secret = |v: &Value| matches!(v, Value::Secret(_));
        let mut paths: BTreeSet<String> = BTreeSet::new();
        for side in [&self.before, &self.after].into_iter().flatten() {
            paths.extend(path::paths_where(side, &is_secret));
        }
        paths.into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(action: Action) -> ResourceChange {
        ResourceChange {
            address: "k.a".parse().unwrap(),
            phase: Phase::CreateNamespace,
            action,
            before: None,
            after: None,
            changes: Vec::new(),
            depends_on: BTreeSet::new(),
            notes: Vec::new(),
            manifest_changes: Vec::new(),
        }
    }

    fn tenant(actions: &[Action]) -> TenantPlan {
        TenantPlan::with_changes("acme", actions.iter().map(|&a| change(a)).collect())
    }

    #[test]
    fn summaries_count_replaces_once_and_terraform_style_twice() {
        let plan = Plan::new(vec![
            tenant(&[Action::NoOp, Action::Create, Action::Replace]),
            tenant(&[Action::Update, Action::Delete, Action::Create]),
            tenant(&[Action::NoOp]),
        ]);
        assert_eq!(plan.format_version, FORMAT_VERSION);
        let s = plan.summary();
        assert_eq!(s, Summary { adopt: 0, moved: 0, add: 2, change: 1, replace: 1, destroy: 1 });
        assert_eq!((s.to_add(), s.to_destroy()), (3, 2));
        assert!(plan.has_changes());
        assert!(!plan.tenants[2].has_changes());
        assert!(plan.tenants[2].summary().is_empty());
        assert!(!Plan::new(vec![tenant(&[Action::NoOp])]).has_changes());
    }

    #[test]
    fn unknown_and_sensitive_paths_come_from_both_sides() {
        use crate::value::Secret;
        let mut c = change(Action::Update);
        let secret = Value::Secret(Secret { source: "generated".into(), fingerprint: None });
        c.before = Some(BTreeMap::from([("data".to_string(), Value::map([("password", secret.clone())]))]));
        c.after = Some(BTreeMap::from([
            ("data".to_string(), Value::map([("password", secret.clone()), ("url", secret)])),
            ("ip".to_string(), Value::Computed { note: String::new() }),
        ]));
        assert_eq!(c.sensitive_paths(), ["data.password", "data.url"]);
        assert_eq!(c.after_unknown(), ["data.password", "data.url", "ip"]);
    }
}
