//! Policy checks from the real binary: `matih plan --policy DIR` over recorded tenants whose specs
//! (or catalog) changed, with the example policy sets of `examples/policies/` (matih's JSON plan)
//! and `examples/policies-terraform/` (a policy written for Terraform plans, on `--json-shape
//! terraform`). A deny fails the plan and keeps `-out` from writing a plan file; a warn is printed;
//! a Rego syntax error is located. The state is sled's (nothing here is about the backend).

use crate::support as common;

use std::fs;
use std::path::{Path, PathBuf};

use common::{matih, record, root, stderr, stdout, Backend, TestState, CLEAR_SECRET};
use matih::value::fingerprint;

/// The three example tenants recorded as applied, and a copy of `examples/policies` in `d/policies`.
fn recorded_fleet(d: &Path) -> TestState {
    fs::create_dir_all(d.join("tenants")).unwrap();
    let state = TestState::new(Backend::Sled);
    for t in ["acme", "globex", "initech"] {
        let spec = d.join(format!("tenants/{t}.hcl"));
        fs::copy(root().join(format!("tenants/{t}.hcl")), &spec).unwrap();
        record(&state, &spec);
    }
    common::copy_dir(&root().join("examples/policies"), &d.join("policies"));
    state
}

fn to_enterprise(d: &Path, tenant: &str, from: &str) {
    let spec = d.join(format!("tenants/{tenant}.hcl"));
    let text = fs::read_to_string(&spec).unwrap();
    fs::write(&spec, text.replace(&format!("\"{from}\""), "\"enterprise\"")).unwrap();
}

#[test]
fn a_data_loss_change_is_denied_until_approved_and_isolation_changes_warn() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let state = recorded_fleet(d);

    // Nothing changed: every policy passes, and says so.
    let out = matih(d, &state, &["plan", "tenants", "--policy", "policies"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("Policy check passed: 0 failures, 0 warnings in 3 tenants checked against 3 policy files."),
        "{err}"
    );
    assert!(!err.contains("FAIL") && !err.contains("WARN"), "{err}");

    // acme moves from professional (a schema in the shared database) to enterprise (its own
    // database): its schema would be deleted, and its ResourceQuota too.
    to_enterprise(d, "acme", "professional");
    for saved in [true, false] {
        let mut args = vec!["plan", "tenants", "--policy", "policies"];
        if saved {
            args.extend(["-out", "p.tfplan"]);
        }
        let out = matih(d, &state, &args);
        assert_eq!(out.status.code(), Some(1), "saved {saved}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains(
                "FAIL acme: policies/data_loss.rego: main.deny_data_loss: acme: postgresql_schema.tenant would be \
                 deleted, dropping the tenant's data; approve it in approvals.json"
            ),
            "{err}"
        );
        assert!(
            err.contains(
                "WARN acme: policies/isolation.rego: main.warn_isolation: acme: kubernetes_resource_quota.tenant \
                 will be deleted"
            ),
            "{err}"
        );
        assert_eq!(err.matches("FAIL ").count(), 1, "only acme's schema: {err}");
        assert!(err.contains("Policy check failed: 1 failure,"), "{err}");
        assert!(err.contains("error: the plan was denied by policy (1 failure)"), "{err}");
        assert_eq!(err.contains("no plan file was written"), saved, "{err}");
        // The plan itself is still shown, for the reviewer.
        assert!(stdout(&out).contains("postgresql_schema.tenant will be destroyed"), "{}", stdout(&out));
        assert!(!d.join("p.tfplan").exists(), "a denied plan must not be saved");
    }

    // Approved in the data file (as a reviewed change would add it): the plan passes, is saved,
    // and the approval is printed.
    let approvals = r#"{ "approvals": { "data_loss": { "acme": { "postgresql_schema.tenant": "CHG-42" } } } }"#;
    fs::write(d.join("policies/approvals.json"), approvals).unwrap();
    let out = matih(d, &state, &["plan", "tenants", "--policy", "policies", "-out", "p.tfplan", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(
            "WARN acme: policies/data_loss.rego: main.warn_data_loss_approved: acme: postgresql_schema.tenant will \
             be deleted (approved: CHG-42)"
        ),
        "{err}"
    );
    // (acme's tier label changes on every object: each isolation object is warned about.)
    assert!(err.contains("Policy check passed: 0 failures, "), "{err}");
    assert!(d.join("p.tfplan").is_file());
    assert!(stdout(&out).contains("Saved the plan to: p.tfplan"), "{}", stdout(&out));
}

#[test]
fn a_public_load_balancer_without_the_tiers_annotation_is_denied() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let state = recorded_fleet(d);
    // A catalog change moves the ingress controller's health path: the Azure probe annotation of
    // every tenant's public LoadBalancer would no longer be the one the tiers require.
    let schemas = d.join("schemas");
    common::copy_dir(&root().join("schemas"), &schemas);
    let components = fs::read_to_string(schemas.join("components.hcl")).unwrap();
    assert!(components.contains("health_path     = \"/healthz\""));
    fs::write(schemas.join("components.hcl"), components.replace("\"/healthz\"", "\"/ready\"")).unwrap();

    let out = matih(d, &state, &["plan", "tenants/globex.hcl", "--policy", "policies", "--schemas", "schemas"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(
            "FAIL globex: policies/public_load_balancer.rego: main.deny_public_load_balancer: globex: \
             kubernetes_service.ingress_controller is a public LoadBalancer whose annotation \
             service.beta.kubernetes.io/azure-load-balancer-health-probe-request-path is /ready; tier free requires \
             /healthz"
        ),
        "{err}"
    );
    assert!(err.contains("Policy check failed: 1 failure, 0 warnings in 1 tenant checked"), "{err}");

    // The same catalog with the tier's requirement changed with it passes.
    let data = fs::read_to_string(d.join("policies/load_balancer.json")).unwrap();
    fs::write(d.join("policies/load_balancer.json"), data.replace("\"/healthz\"", "\"/ready\"")).unwrap();
    let out = matih(d, &state, &["plan", "tenants/globex.hcl", "--policy", "policies", "--schemas", "schemas"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

/// The value at `address` among the Terraform-shaped document's resource changes.
fn change<'a>(doc: &'a serde_json::Value, address: &str) -> &'a serde_json::Value {
    doc["resource_changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|rc| rc["address"] == address)
        .unwrap_or_else(|| panic!("no {address} in {doc:#}"))
}

#[test]
fn terraform_policies_run_on_the_terraform_shaped_plan() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let state = recorded_fleet(d);
    to_enterprise(d, "acme", "professional");

    // The shape: Terraform's plan JSON, a tenant being a module instance.
    let out = matih(d, &state, &["plan", "tenants", "--format", "json", "--json-shape", "terraform"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        !text.contains(CLEAR_SECRET) && !text.contains(&fingerprint(CLEAR_SECRET)),
        "a secret or fingerprint leaked"
    );
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(doc["format_version"], "1.2");
    assert_eq!((&doc["applyable"], &doc["complete"], &doc["errored"]), (&true.into(), &true.into(), &false.into()));
    let modules = doc["planned_values"]["root_module"]["child_modules"].as_array().unwrap();
    let names: Vec<&str> = modules.iter().map(|m| m["address"].as_str().unwrap()).collect();
    assert_eq!(names, [r#"module.tenant["acme"]"#, r#"module.tenant["globex"]"#, r#"module.tenant["initech"]"#]);

    let schema = change(&doc, r#"module.tenant["acme"].postgresql_schema.tenant"#);
    assert_eq!(schema["module_address"], r#"module.tenant["acme"]"#);
    assert_eq!(
        (&schema["mode"], &schema["type"], &schema["name"]),
        (&"managed".into(), &"postgresql_schema".into(), &"tenant".into())
    );
    assert_eq!(schema["change"]["actions"], serde_json::json!(["delete"]));
    assert!(schema["change"]["after"].is_null() && schema["change"]["before"].is_object(), "{schema:#}");
    assert_eq!(schema["change"]["after_unknown"], serde_json::json!({}));
    assert_eq!(schema["change"]["after_sensitive"], false);
    let database = change(&doc, r#"module.tenant["acme"].postgresql_database.tenant"#);
    assert_eq!(database["change"]["actions"], serde_json::json!(["create"]));
    assert_eq!(database["change"]["before_sensitive"], false);
    let unchanged = change(&doc, r#"module.tenant["globex"].kubernetes_namespace.tenant"#);
    assert_eq!(unchanged["change"]["actions"], serde_json::json!(["no-op"]));
    // A recorded secret is marked sensitive and never written.
    let secrets: Vec<&serde_json::Value> = doc["resource_changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|rc| rc["change"]["after_sensitive"].to_string().contains("true"))
        .collect();
    assert!(!secrets.is_empty(), "some resource holds a secret");
    assert!(secrets.iter().all(|rc| rc["change"]["after"].to_string().contains("(sensitive value)")));

    // The same document whether the fleet is streamed or held whole (with -out).
    let saved = matih(d, &state, &["plan", "tenants", "--format", "json", "--json-shape", "terraform", "-out", "p"]);
    assert_eq!(stdout(&saved), text);

    // A policy written for Terraform plans (Rego v0, conftest's style) runs unchanged.
    common::copy_dir(&root().join("examples/policies-terraform"), &d.join("tf"));
    let args = ["plan", "tenants", "--policy", "tf", "--json-shape", "terraform", "--rego-version", "v0"];
    let out = matih(d, &state, &args);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(
            r#"FAIL acme: tf/destroy.rego: main.deny: module.tenant["acme"].postgresql_schema.tenant: deleting a postgresql_schema is not allowed (actions: ["delete"])"#
        ),
        "{err}"
    );
    assert!(err.contains("Policy check failed: 1 failure,"), "{err}");

    // Read as Rego v1 (the default), its v0 syntax is a located error, before anything is planned.
    let out = matih(d, &state, &["plan", "tenants", "--policy", "tf", "--json-shape", "terraform"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).starts_with("tf/destroy.rego:"), "{}", stderr(&out));
    assert!(stdout(&out).is_empty());

    // The shape has no use with a text plan and no policy.
    let out = matih(d, &state, &["plan", "tenants", "--json-shape", "terraform"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("use it with --format json or --policy DIR"), "{}", stderr(&out));
}

#[test]
fn a_policy_syntax_error_is_located_and_nothing_is_planned_or_saved() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let state = recorded_fleet(d);
    let bad: PathBuf = d.join("policies/broken.rego");
    fs::write(
        &bad,
        "package main\n\nimport rego.v1\n\ndeny contains msg if {\n    msg := sprintf(\"%s\", [input.x]\n}\n",
    )
    .unwrap();
    let out = matih(d, &state, &["plan", "tenants", "--policy", "policies", "-out", "p.tfplan"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    let first = err.lines().next().unwrap_or_default();
    assert!(first.starts_with("policies/broken.rego:6:9: "), "{err}");
    assert!(err.contains("1 error in the policies; nothing was planned."), "{err}");
    assert!(stdout(&out).is_empty(), "{}", stdout(&out));
    assert!(!d.join("p.tfplan").exists());

    // A misspelt namespace would check nothing: it is an error too.
    fs::remove_file(&bad).unwrap();
    let out = matih(d, &state, &["plan", "tenants", "--policy", "policies", "--policy-namespace", "mian"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("no policy in policies is in package mian"), "{}", stderr(&out));
}
