//! Graphviz DOT output for `matih graph`: one cluster per tenant, inside it one cluster per phase
//! (labelled `1 CREATE_NAMESPACE`), and one edge per dependency (dependency → dependent).
//!
//! **Invariant:** renders graphs it is given; output depends only on them (sorted, deterministic).

use std::collections::BTreeMap;
use std::fmt::Write;

use super::ResourceGraph;
use crate::phase::Phase;

/// A DOT string literal.
fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// DOT for `matih graph`: one `subgraph cluster_…` per phase (labelled `1 CREATE_NAMESPACE`), per
/// tenant. Node ids are `slug/address`, so several tenants can share one drawing.
pub fn to_dot(graphs: &[ResourceGraph]) -> String {
    let mut out = String::new();
    out.push_str("digraph matih {\n  rankdir=LR;\n  compound=true;\n  node [shape=box, fontname=\"monospace\"];\n");
    let mut sorted: Vec<&ResourceGraph> = graphs.iter().collect();
    sorted.sort_by(|a, b| a.tenant.slug.cmp(&b.tenant.slug));
    for g in sorted {
        let slug = &g.tenant.slug;
        let id = |addr: &crate::addr::ResourceAddr| quote(&format!("{slug}/{addr}"));
        let _ = writeln!(out, "  subgraph {} {{", quote(&format!("cluster_{slug}")));
        let _ =
            writeln!(out, "    label={};", quote(&format!("tenant {slug} ({}, {})", g.tenant.tier, g.tenant.region)));
        let mut by_phase: BTreeMap<Phase, Vec<&crate::addr::ResourceAddr>> = BTreeMap::new();
        for (addr, &ix) in &g.index {
            by_phase.entry(g.graph[ix].phase).or_default().push(addr);
        }
        for (phase, addrs) in by_phase {
            let _ = writeln!(out, "    subgraph {} {{", quote(&format!("cluster_{slug}_{}", phase.number())));
            let _ = writeln!(out, "      label={};", quote(&format!("{} {}", phase.number(), phase.name())));
            for addr in addrs {
                let _ = writeln!(out, "      {} [label={}];", id(addr), quote(&addr.to_string()));
            }
            out.push_str("    }\n");
        }
        out.push_str("  }\n");
        let mut edges: Vec<(String, String)> = g
            .graph
            .edge_indices()
            .filter_map(|e| g.graph.edge_endpoints(e))
            .map(|(from, to)| (id(&g.graph[from].addr), id(&g.graph[to].addr)))
            .collect();
        edges.sort();
        edges.dedup();
        for (from, to) in edges {
            let _ = writeln!(out, "  {from} -> {to};");
        }
    }
    out.push_str("}\n");
    out
}
