//! The pull-request review comment, from the real binary: `matih plan tenants/ --format markdown`
//! over recorded tenants whose specs changed. Risks come first after the summary table; the comment
//! is deterministic, grouped by tenant then phase, and never shows a secret.

use crate::support as common;

use std::fs;
use std::path::Path;

use common::{matih, record, root, stderr, stdout, Backend, TestState, CLEAR_SECRET};

fn scratch(dir: &Path) {
    fs::create_dir_all(dir.join("tenants")).unwrap();
    for name in ["acme.hcl", "globex.hcl", "initech.hcl"] {
        fs::copy(root().join("tenants").join(name), dir.join("tenants").join(name)).unwrap();
    }
}

fn a_tier_change_is_reviewed_with_its_data_loss_and_isolation_risks_first(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    scratch(d);
    let state = TestState::new(backend);
    for t in ["acme", "globex", "initech"] {
        record(&state, &d.join(format!("tenants/{t}.hcl")));
    }
    // acme moves from professional (a schema in the shared database) to enterprise (its own
    // database, no ResourceQuota).
    let acme = fs::read_to_string(d.join("tenants/acme.hcl")).unwrap();
    fs::write(d.join("tenants/acme.hcl"), acme.replace("\"professional\"", "\"enterprise\"")).unwrap();

    let out = matih(d, &state, &["plan", "tenants", "--format", "markdown", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let md = stdout(&out);
    assert!(md.len() <= 65_536);
    assert!(!md.contains(CLEAR_SECRET) && !md.contains("sha256:"), "a secret or fingerprint leaked");
    assert!(md.starts_with("### matih plan: "), "{md}");

    // Summary table first, then risks, then one collapsible section per changed tenant.
    let table = md.find("| Tenant | Add | Change | Replace | Destroy |").unwrap();
    let risks = md.find("#### Risks").unwrap();
    let details = md.find("<details>").unwrap();
    assert!(table < risks && risks < details, "{md}");
    assert!(md.contains("| `acme` |"), "{md}");
    assert!(md.contains("2 tenants without changes not listed."), "{md}");
    let r = &md[risks..details];
    assert!(r.contains("**Data loss**"), "{r}");
    assert!(r.contains("`acme`: `postgresql_schema.tenant` will be destroyed (drops the tenant's schema"), "{r}");
    assert!(r.contains("**Network isolation, access control and quotas**"), "{r}");
    assert!(r.contains("`acme`: `kubernetes_resource_quota.tenant` will be destroyed"), "{r}");
    assert_eq!(md.matches("<details>").count(), 1, "only acme changes");
    assert!(md.contains("<details><summary>Tenant \"acme\" (tenants/acme.hcl): "), "{md}");

    // Phases in order inside the tenant.
    let body = &md[details..];
    let mut last = 0;
    for p in matih::phase::Phase::ALL {
        if let Some(at) = body.find(&format!("**Phase {}/10: {}**", p.number(), p.name())) {
            assert!(at > last, "phase {p} out of order");
            last = at;
        }
    }

    // Deterministic: the same input gives the same bytes.
    let again = stdout(&matih(d, &state, &["plan", "tenants", "--format", "markdown"]));
    assert_eq!(md, again);
}
on_both_backends!(a_tier_change_is_reviewed_with_its_data_loss_and_isolation_risks_first);
