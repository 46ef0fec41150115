//! The resource graph of one tenant: spec + catalog → one node per resource, edges for
//! dependencies, every node tagged with its phase.
//!
//! **Invariant:** no I/O. Knows nothing of state, plans or providers; knows the Kubernetes object
//! shapes only as data (attribute maps) that the Kubernetes provider will send as they are.

mod compile;
#[cfg(test)]
mod compile_tests;
mod dot;
mod k8s;
mod lifecycle;

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet};

pub use compile::{compile, DATABASE_SECRET};
pub use dot::to_dot;

use petgraph::stable_graph::{NodeIndex, StableDiGraph};

use crate::addr::{AttrPath, ResourceAddr};
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
    /// The attribute paths whose differences plan and drift leave alone, by resource
    /// (`ignore_changes` of the catalog and of the tenant's spec).
    pub ignore_changes: BTreeMap<ResourceAddr, Vec<IgnoreRule>>,
    /// The catalog's `moved` blocks: a record of `from` is moved to `to` (which the graph has).
    pub moved: Vec<MoveRule>,
}

/// One `moved` block of the catalog, with where it is declared (`file:line:col`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MoveRule {
    pub from: ResourceAddr,
    pub to: ResourceAddr,
    pub declared_at: String,
}

/// One `ignore_changes` path of one resource, with where it is declared (`file:line:col`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IgnoreRule {
    pub path: AttrPath,
    pub declared_at: String,
}

thread_local! {
    /// Nodes and edges of the last graph this thread connected: the next tenant's graph starts
    /// with room for as many (a fleet's tenants have about the same resources), rather than
    /// growing its node list by doubling, a copy of every resource each time.
    static LAST_SIZE: Cell<(usize, usize)> = const { Cell::new((0, 0)) };
}

impl ResourceGraph {
    pub fn new(tenant: TenantMeta) -> Self {
        let (index, ignore_changes, moved) = (BTreeMap::new(), BTreeMap::new(), Vec::new());
        let (nodes, edges) = LAST_SIZE.get();
        ResourceGraph { tenant, graph: StableDiGraph::with_capacity(nodes, edges), index, ignore_changes, moved }
    }

    /// Adds a resource; returns `false` (and adds nothing) if its address is taken.
    pub fn add(&mut self, resource: Resource) -> bool {
        if self.index.contains_key(&resource.addr) {
            return false;
        }
        let addr = resource.addr.clone();
        let ix = self.graph.add_node(resource);
        self.index.insert(addr, ix);
        true
    }

    pub fn get(&self, addr: &ResourceAddr) -> Option<&Resource> {
        self.index.get(addr).map(|&ix| &self.graph[ix])
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Adds every resource referenced by a resource's attributes to its `depends_on`, then makes
    /// one edge per dependency (dependency → dependent). Returns the dependencies that name no
    /// resource of the graph, as `(dependent, missing)`.
    pub fn connect(&mut self) -> Vec<(ResourceAddr, ResourceAddr)> {
        let mut missing = Vec::new();
        let nodes: Vec<NodeIndex> = self.graph.node_indices().collect();
        self.graph.clear_edges();
        for ix in nodes {
            let refs: Vec<ResourceAddr> =
                self.graph[ix].attrs.values().flat_map(|v| v.refs()).map(|(r, _)| r.clone()).collect();
            self.graph[ix].depends_on.extend(refs);
            let deps: Vec<ResourceAddr> = self.graph[ix].depends_on.iter().cloned().collect();
            for dep in deps {
                match self.index.get(&dep) {
                    Some(&from) => {
                        self.graph.add_edge(from, ix, ());
                    }
                    None => missing.push((self.graph[ix].addr.clone(), dep)),
                }
            }
        }
        LAST_SIZE.set((self.graph.node_count(), self.graph.edge_count()));
        missing
    }

    /// Every resource in apply order: by phase, and inside a phase in topological order (ties
    /// broken by address, so the order is deterministic). Resources on a dependency cycle, which
    /// validation reports, come last in their phase, by address.
    pub fn apply_order(&self) -> Vec<&Resource> {
        let mut by_phase: BTreeMap<Phase, Vec<NodeIndex>> = BTreeMap::new();
        for (_, &ix) in self.index.iter() {
            by_phase.entry(self.graph[ix].phase).or_default().push(ix);
        }
        let mut out = Vec::with_capacity(self.index.len());
        for (phase, members) in by_phase {
            // Kahn's algorithm restricted to the phase, always taking the smallest address ready.
            let mut indegree: BTreeMap<NodeIndex, usize> = members.iter().map(|&ix| (ix, 0)).collect();
            for &ix in &members {
                for dep in self.graph.neighbors_directed(ix, petgraph::Direction::Incoming) {
                    if self.graph[dep].phase == phase {
                        *indegree.get_mut(&ix).expect("member") += 1;
                    }
                }
            }
            let mut ready: BTreeSet<(&ResourceAddr, NodeIndex)> =
                indegree.iter().filter(|(_, &d)| d == 0).map(|(&ix, _)| (&self.graph[ix].addr, ix)).collect();
            let mut done = BTreeSet::new();
            while let Some(first) = ready.pop_first() {
                let ix = first.1;
                done.insert(ix);
                out.push(&self.graph[ix]);
                for next in self.graph.neighbors_directed(ix, petgraph::Direction::Outgoing) {
                    if let Some(d) = indegree.get_mut(&next) {
                        *d -= 1;
                        if *d == 0 {
                            ready.insert((&self.graph[next].addr, next));
                        }
                    }
                }
            }
            let mut rest: Vec<&Resource> =
                members.iter().filter(|ix| !done.contains(*ix)).map(|&ix| &self.graph[ix]).collect();
            rest.sort_by(|a, b| a.addr.cmp(&b.addr));
            out.extend(rest);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(addr: &str, phase: u8, deps: &[&str]) -> Resource {
        Resource {
            addr: addr.parse().unwrap(),
            phase: Phase::from_number(phase).unwrap(),
            attrs: BTreeMap::new(),
            depends_on: deps.iter().map(|d| d.parse().unwrap()).collect(),
            force_new: BTreeSet::new(),
            origin: None,
        }
    }

    #[test]
    fn apply_order_is_phase_then_topological() {
        let meta =
            TenantMeta { slug: "a".into(), id: "x".into(), tier: "free".into(), region: "r".into(), source: None };
        let mut g = ResourceGraph::new(meta);
        assert!(g.add(res("k.c", 2, &["k.b"])));
        assert!(g.add(res("k.b", 2, &["k.a"])));
        assert!(g.add(res("k.a", 1, &[])));
        assert!(g.add(res("k.z", 2, &[])));
        assert!(!g.add(res("k.z", 2, &[])), "duplicate address");
        let mut r = res("k.d", 3, &[]);
        r.attrs.insert("ip".into(), Value::Ref { resource: "k.c".parse().unwrap(), output: "ip".into() });
        r.depends_on.insert("k.missing".parse().unwrap());
        g.add(r);
        let missing = g.connect();
        assert_eq!(missing, vec![("k.d".parse().unwrap(), "k.missing".parse().unwrap())]);
        assert!(g.get(&"k.d".parse().unwrap()).unwrap().depends_on.contains(&"k.c".parse().unwrap()));
        let order: Vec<String> = g.apply_order().iter().map(|r| r.addr.to_string()).collect();
        assert_eq!(order, ["k.a", "k.b", "k.c", "k.z", "k.d"]);
    }
}
