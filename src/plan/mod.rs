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

/// The version of the JSON plan format (`matih plan --format json`, plan files). Bumped on any
/// incompatible change.
pub const FORMAT_VERSION: &str = "1.0";

/// What will be done to one resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    NoOp,
    Create,
    Update,
    /// Delete, then create again (an attribute that cannot change in place changed).
    Replace,
    Delete,
}

impl Action {
    /// Terraform's symbols: `+`, `~`, `-/+`, `-`, and a space for no-op.
    pub fn symbol(self) -> &'static str {
        match self {
            Action::NoOp => " ",
            Action::Create => "+",
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
}

/// A plan for one or more tenants.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub format_version: String,
    pub tenants: Vec<TenantPlan>,
}

/// Counts of each action, for the summary line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub add: usize,
    pub change: usize,
    pub replace: usize,
    pub destroy: usize,
}
