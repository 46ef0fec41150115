//! A platform file: parse and check it; when it is accepted, compile tenants/acme.hcl with it.
//! Every diagnostic must point inside the file; nothing may panic.

use super::{acme_spec, catalog, check_locations};
use matih::diag::SourceFile;

/// One input.
pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let src = SourceFile::new("matih.hcl", text);
    let (platform, diags) = matih::spec::parse_platform(&src);
    check_locations(&src, &diags);
    if diags.iter().all(|d| d.severity != matih::diag::Severity::Error) {
        let (_graph, diags) = matih::graph::compile(acme_spec(), catalog(), &platform);
        for d in &diags {
            assert!(!d.message.trim().is_empty(), "{d:?}");
        }
    }
}
