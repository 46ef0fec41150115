//! What the fuzz targets share: the embedded catalog, the example tenant `acme` compiled once, and
//! the checks every target makes of what matih reports (a diagnostic points inside its file), and
//! each target's body (`TARGET::run`), so that the normal test suite can replay the committed corpus
//! through the very same code without libFuzzer (tests/suite/fuzz_corpus.rs).

use std::sync::OnceLock;

pub mod addr;
pub mod pgurl;
pub mod planfile;
pub mod platform;
pub mod serve;
pub mod spec;
pub mod state;

use matih::catalog::Catalog;
use matih::diag::{Diagnostic, SourceFile};
use matih::graph::ResourceGraph;
use matih::spec::{PlatformConfig, TenantSpec};

/// The example tenant every target that needs a graph starts from.
pub const ACME: &str = include_str!("../../tenants/acme.hcl");

/// The catalog built into the binary (schemas/).
pub fn catalog() -> &'static Catalog {
    static CATALOG: OnceLock<Catalog> = OnceLock::new();
    CATALOG.get_or_init(|| Catalog::embedded().expect("the embedded catalog loads"))
}

/// `tenants/acme.hcl`, parsed and validated.
pub fn acme_spec() -> &'static TenantSpec {
    static SPEC: OnceLock<TenantSpec> = OnceLock::new();
    SPEC.get_or_init(|| {
        let src = SourceFile::new("tenants/acme.hcl", ACME);
        let (mut specs, diags) = matih::spec::parse_tenants(&src, catalog());
        assert!(diags.is_empty(), "{diags:?}");
        specs.remove(0)
    })
}

/// `acme` compiled with no platform file.
pub fn acme_graph() -> &'static ResourceGraph {
    static GRAPH: OnceLock<ResourceGraph> = OnceLock::new();
    GRAPH.get_or_init(|| {
        let (graph, diags) = matih::graph::compile(acme_spec(), catalog(), &PlatformConfig::default());
        graph.unwrap_or_else(|| panic!("{diags:?}"))
    })
}

/// Every located diagnostic points at a line and column that exist in `src` (or just past its
/// end, where "expected X, found end of file" is reported), and has a message.
pub fn check_locations(src: &SourceFile, diags: &[Diagnostic]) {
    let lines: Vec<&str> = src.text.split('\n').collect();
    for d in diags {
        assert!(!d.message.trim().is_empty(), "a diagnostic without a message: {d:?}");
        let Some(loc) = &d.location else { continue };
        if loc.file != src.path {
            continue;
        }
        assert!(loc.line >= 1 && loc.line <= lines.len(), "line {} outside the file: {d:?}", loc.line);
        let width = lines[loc.line - 1].chars().count();
        assert!(loc.column >= 1 && loc.column <= width + 1, "column {} outside line {}: {d:?}", loc.column, loc.line);
    }
}
