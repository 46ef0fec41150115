//! The resource graph of one tenant: spec + catalog → one node per resource, edges for
//! dependencies, every node tagged with its phase.
//!
//! **Invariant:** no I/O. Knows nothing of state, plans or providers; knows the Kubernetes object
//! shapes only as data (attribute maps) that the Kubernetes provider will send as they are.

use std::collections::{BTreeMap, BTreeSet};

use petgraph::stable_graph::{NodeIndex, StableDiGraph};

use crate::addr::ResourceAddr;
use crate::diag::Location;
use crate::phase::Phase;
use crate::value::Value;

/// One desired resource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resource {
    pub addr: ResourceAddr,
    pub phase: Phase,
    /// Desired attributes. For Kubernetes kinds this is the object manifest (`apiVersion`, `kind`,
    /// `metadata`, `spec`/`data`) exactly as it will be server-side applied.
    pub attrs: BTreeMap<String, Value>,
    /// Resources this one waits for: explicit dependencies plus every resource it references.
    pub depends_on: BTreeSet<ResourceAddr>,
    /// Attribute paths (dotted, e.g. `metadata.name`) whose change forces replacement.
    pub force_new: BTreeSet<String>,
    /// Where the thing that caused this resource is written (tenant block, service override, or
    /// catalog entry), so that later errors can point at it.
    pub origin: Option<Location>,
}

/// What the graph knows of the tenant it was compiled from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TenantMeta {
    pub slug: String,
    pub id: String,
    pub tier: String,
    pub region: String,
    pub source: Option<Location>,
}

/// The desired resources of one tenant. Edges run from a dependency to its dependent, so a
/// topological order is an order in which the resources can be created.
#[derive(Clone, Debug)]
pub struct ResourceGraph {
    pub tenant: TenantMeta,
    pub graph: StableDiGraph<Resource, ()>,
    pub index: BTreeMap<ResourceAddr, NodeIndex>,
}
