//! A tenant spec file: parse, validate, and compile what validates into its graph, then plan it
//! against an empty state. Every diagnostic must point inside the file; nothing may panic.

use super::{catalog, check_locations};
use matih::diag::SourceFile;
use matih::spec::PlatformConfig;

/// One input.
pub fn run(data: &[u8]) {
    // Spec files are read as UTF-8 (anything else is refused with the file's name before parsing).
    let Ok(text) = std::str::from_utf8(data) else { return };
    let src = SourceFile::new("fuzz.hcl", text);
    let (specs, diags) = matih::spec::parse_tenants(&src, catalog());
    check_locations(&src, &diags);
    for spec in &specs {
        let (graph, diags) = matih::graph::compile(spec, catalog(), &PlatformConfig::default());
        check_locations(&src, &diags);
        if let Some(graph) = graph {
            let plan = matih::plan::diff(&graph, None, None);
            assert_eq!(plan.resource_changes.len(), graph.len(), "a plan against no state creates every resource");
        }
    }
}
