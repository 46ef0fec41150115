//! Issue 18, item 12: a fleet-wide change reviewed as one comment. 1,000 generated tenants are
//! recorded (sled), the catalog copy changes one alert rule, and `matih plan --format markdown`
//! (the real binary, the fleet streamed) shows the change once for the tenants it changes alike,
//! with their number and members, the tenant that differs in a section of its own, within
//! GitHub's 65,536-character comment limit, nothing cut; the same bytes as the saved plan shown.

use crate::support as common;

use std::fs;
use std::path::Path;

use common::{applied_state, matih, root, stderr, stdout, Backend, TestState};
use matih::catalog::Catalog;
use matih::spec::PlatformConfig;

const TENANTS: usize = 1_000;

fn slug(i: usize) -> String {
    format!("f{i:04}")
}

/// `n` tenants of one tier and region, each with its own slug, id and addresses.
fn generate(dir: &Path, n: usize) {
    let tenants = dir.join("tenants");
    fs::create_dir_all(&tenants).unwrap();
    for i in 0..n {
        let s = slug(i);
        let spec = format!(
            "tenant \"{s}\" {{\n  id          = \"{i:08x}-0000-4000-8000-{i:012x}\"\n  tier        = \"professional\"\n  \
             region      = \"eastus\"\n  admin_email = \"admin@{s}.example\"\n  services {{\n    \
             ai_service {{ replicas = 2 }}\n  }}\n}}\n"
        );
        fs::write(tenants.join(format!("{s}.hcl")), spec).unwrap();
    }
}

/// Every tenant of `dir/tenants` recorded as applied with the built-in catalog, in one store.
fn record_all(state: &TestState, dir: &Path) {
    let catalog = Catalog::embedded().unwrap();
    let (specs, diags) = matih::spec::load_tenants(&[dir.join("tenants")], &catalog);
    assert!(diags.iter().all(|d| !d.is_error()), "{diags:?}");
    let store = state.store();
    for spec in &specs {
        let (graph, diags) = matih::graph::compile(spec, &catalog, &PlatformConfig::default());
        assert!(diags.iter().all(|d| !d.is_error()), "{diags:?}");
        store.put(&applied_state(&graph.unwrap()), None, "test").unwrap();
    }
}

/// A copy of the catalog whose TenantHighCPU alert waits 10 minutes instead of 5.
fn changed_catalog(dir: &Path) -> std::path::PathBuf {
    let schemas = dir.join("schemas");
    common::copy_dir(&root().join("schemas"), &schemas);
    let alerts = fs::read_to_string(schemas.join("alerts.hcl")).unwrap();
    let changed = alerts.replacen("for      = \"5m\"", "for      = \"10m\"", 1);
    assert_ne!(changed, alerts);
    fs::write(schemas.join("alerts.hcl"), changed).unwrap();
    schemas
}

#[test]
fn a_catalog_change_to_a_thousand_tenants_is_one_readable_comment() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let state = TestState::new(Backend::Sled);
    generate(d, TENANTS);
    record_all(&state, d);
    let schemas = changed_catalog(d);
    let schemas = schemas.to_str().unwrap();
    // One tenant also changes its own spec: it differs from the others.
    let odd = d.join("tenants/f0007.hcl");
    fs::write(&odd, fs::read_to_string(&odd).unwrap().replace("replicas = 2", "replicas = 4")).unwrap();

    let plan = ["--schemas", schemas, "plan", "tenants", "--format", "markdown", "--detailed-exitcode"];
    let out = matih(d, &state, &plan);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let md = stdout(&out);
    assert!(md.len() <= 65_536, "{} bytes", md.len());
    assert!(!md.contains("not shown") && !md.contains("comment size limit"), "nothing cut:\n{md}");
    assert!(md.starts_with("### matih plan: 0 to add, 1001 to change, 0 to destroy.\n"), "{md}");
    // The group: its size, its first members in the table, its change once.
    assert!(md.contains("| 999 tenants (`f0000`, `f0001`, `f0002`, and 996 more) | 0 | 1 | 0 | 0 |"), "{md}");
    assert!(md.contains("<summary>999 tenants: `kubernetes_prometheus_rule.tenant` ~ update</summary>"), "{md}");
    assert!(md.contains("Members: `f0000`, `f0001`, "), "{md}");
    assert!(md.contains("and 949 more. Shown once: `${slug}` and `${tenant_id}`"), "{md}");
    // The tenant that differs: a row and a section of its own, after the larger group.
    assert!(md.contains("| `f0007` | 0 | 2 | 0 | 0 |"), "{md}");
    let own = md.find("<details><summary>Tenant \"f0007\"").expect("f0007's own section");
    assert!(md.find("<summary>999 tenants").unwrap() < own, "{md}");
    // The whole diff, once per section: the group's and f0007's.
    assert_eq!(md.matches("# kubernetes_prometheus_rule.tenant will be updated in place").count(), 2, "{md}");
    assert_eq!(md.matches("\"5m\" -> \"10m\"").count(), 2, "{md}");
    assert_eq!(md.matches("<details>").count(), 2, "{md}");

    // The fleet streamed is the whole plan held at once (saved, then shown), byte for byte.
    let saved =
        matih(d, &state, &["--schemas", schemas, "plan", "tenants", "-out", "p.tfplan", "--format", "markdown"]);
    assert!(saved.status.success(), "{}", stderr(&saved));
    let shown = matih(d, &state, &["--schemas", schemas, "show", "p.tfplan", "--format", "markdown"]);
    let digest = stdout(&shown).lines().find(|l| l.starts_with("Plan file digest: ")).unwrap().to_string();
    assert_eq!(stdout(&shown).replace(&format!("{digest}\n\n"), ""), md);

    // Text and JSON group with --group: the change once, every member named.
    let text = stdout(&matih(d, &state, &["--schemas", schemas, "plan", "tenants", "--group"]));
    assert!(text.contains("999 tenants with the same changes, shown once"), "{text}");
    assert_eq!(text.matches("# kubernetes_prometheus_rule.tenant will be updated in place").count(), 2);
    assert!(text.contains("\"f0998\", \"f0999\"") && text.contains("Tenant \"f0007\""), "{text}");
    let json = matih(d, &state, &["--schemas", schemas, "plan", "tenants", "--format", "json", "--group"]);
    let doc: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(doc["tenants"].as_array().unwrap().len(), TENANTS, "every tenant still listed");
    let groups = doc["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 2, "{:#}", doc["groups"]);
    assert_eq!(groups[0]["size"], 999);
    assert_eq!(groups[0]["members"].as_array().unwrap().len(), 999);
    let change = &groups[0]["resource_changes"][0];
    assert_eq!(change["address"], "kubernetes_prometheus_rule.tenant");
    assert!(change["after"].to_string().contains("matih-${slug}"), "{change}");
    assert_eq!(groups[1]["members"], serde_json::json!(["f0007"]));
}
