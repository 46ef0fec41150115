//! `ignore_changes` (issue 18, item 4) and the catalog's `moved` blocks (item 8) through the real
//! binary: what plans and drift leave alone and list as ignored, what moves, and the located errors
//! of both in the catalog and the spec. The drift test runs against the real Kubernetes control
//! plane (kubectl makes the drift), PostgreSQL and PowerDNS.

use crate::support as common;

use std::fs;
use std::path::{Path, PathBuf};

use common::{matih, record, root, stderr, stdout, Backend, TestState};

/// A copy of the catalog in `dir/schemas` whose `lifecycle.hcl` is `lifecycle`.
fn schemas_with(dir: &Path, lifecycle: &str) -> PathBuf {
    let schemas = dir.join("schemas");
    common::copy_dir(&root().join("schemas"), &schemas);
    fs::write(schemas.join("lifecycle.hcl"), lifecycle).unwrap();
    schemas
}

/// acme's spec with `replicas` for ai_service and `extra` added to the tenant block.
fn acme(dir: &Path, replicas: u32, extra: &str) -> String {
    let spec = fs::read_to_string(root().join("tenants/acme.hcl")).unwrap();
    let spec = spec.replace("replicas = 2", &format!("replicas = {replicas}"));
    let end = spec.trim_end().rfind('}').unwrap();
    let path = dir.join("acme.hcl");
    fs::write(&path, format!("{}{extra}}}\n", &spec[..end])).unwrap();
    path.display().to_string()
}

const IGNORE_REPLICAS: &str =
    "  lifecycle {\n    ignore_changes = [\"kubernetes_deployment.ai_service:spec.replicas\"]\n  }\n";

/// A spec change at a path the tenant's `lifecycle { ignore_changes }` names is left alone and
/// listed as ignored in text, JSON and Markdown; the same from a catalog `ignore_changes` block;
/// an unignored change is still planned.
fn ignored_spec_changes_are_listed_not_planned(backend: Backend) {
    let state = TestState::new(backend);
    record(&state, &root().join("tenants/acme.hcl"));
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    let spec = acme(d, 3, IGNORE_REPLICAS);
    let out = matih(d, &state, &["plan", &spec, "--refresh=false", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(0), "{}{}", stdout(&out), stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("Differences left alone (ignore_changes): the recorded value is kept:"), "{text}");
    assert!(
        text.contains("  acme: kubernetes_deployment.ai_service spec.replicas: 2 -> 3 (ignore_changes at ")
            && text.contains("acme.hcl:20:23)"),
        "{text}"
    );
    assert!(text.trim_end().ends_with("No changes. The tenants match the configuration."), "{text}");

    let out = matih(d, &state, &["plan", &spec, "--refresh=false", "--format", "json"]);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ignored = &doc["tenants"][0]["ignored"][0];
    assert_eq!(ignored["address"], "kubernetes_deployment.ai_service");
    assert_eq!(ignored["path"], "spec.replicas");
    assert_eq!((ignored["before"].as_i64(), ignored["after"].as_i64()), (Some(2), Some(3)));
    assert!(ignored["declared_at"].as_str().unwrap().ends_with("acme.hcl:20:23"), "{ignored}");
    let md = stdout(&matih(d, &state, &["plan", &spec, "--refresh=false", "--format", "markdown"]));
    assert!(md.contains("**Differences left alone (ignore_changes): the recorded value is kept:**"), "{md}");
    assert!(md.contains("- `acme`: ``` kubernetes_deployment.ai_service spec.replicas: 2 -> 3"), "{md}");

    // The same from the catalog, for every tenant: the spec without its own entry.
    let schemas = schemas_with(d, "ignore_changes \"kubernetes_deployment\" {\n  paths = [\"spec.replicas\"]\n}\n");
    let schemas = schemas.display().to_string();
    let spec = acme(d, 3, "");
    let out = matih(d, &state, &["--schemas", &schemas, "plan", &spec, "--refresh=false"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("spec.replicas: 2 -> 3 (ignore_changes at "), "{}", stdout(&out));
    assert!(stdout(&out).contains("lifecycle.hcl:2:12)"), "{}", stdout(&out));
    assert!(stdout(&out).contains("No changes."), "{}", stdout(&out));
    // Without it, the change is planned.
    let out = matih(d, &state, &["plan", &spec, "--refresh=false"]);
    assert!(stdout(&out).contains("Plan: 0 to add, 1 to change, 0 to destroy."), "{}", stdout(&out));
    assert!(!stdout(&out).contains("ignore_changes"), "{}", stdout(&out));
}
on_both_backends!(ignored_spec_changes_are_listed_not_planned);

/// Every mistake in a spec's `lifecycle` block or the catalog's `ignore_changes` and `moved` blocks
/// is reported at its file, line and column, and nothing is planned.
#[test]
fn lifecycle_mistakes_are_located() {
    let state = TestState::new(Backend::Sled);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let spec = acme(
        d,
        2,
        "  lifecycle {\n    ignore_changes = [\n      \"kubernetes_deployment.nope:spec.replicas\",\n      \
         \"kubernetes_deployment.ai_service:spec.replica\",\n    ]\n  }\n",
    );
    let out = matih(d, &state, &["validate", &spec]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(
        err.contains("acme.hcl:21:7: ignore_changes: tenant \"acme\" has no resource kubernetes_deployment.nope"),
        "{err}"
    );
    assert!(
        err.contains("acme.hcl:22:7: ignore_changes: kubernetes_deployment.ai_service has no attribute spec.replica"),
        "{err}"
    );
    let spec = acme(
        d,
        2,
        "  lifecycle {\n    ignore_changes = [\"no colon\", \"kubernetes_deployment.ai_service:spec..x\"]\n  }\n",
    );
    let err = stderr(&matih(d, &state, &["validate", &spec]));
    assert!(err.contains("acme.hcl:20:23: \"no colon\" is not KIND.NAME:PATH"), "{err}");
    assert!(err.contains("acme.hcl:20:35: invalid attribute path \"spec..x\": an empty step"), "{err}");

    let schemas = schemas_with(
        d,
        "ignore_changes \"nothing_at_all\" {\n  paths = [\"spec.x\"]\n}\n\
         ignore_changes \"kubernetes_deployment\" {\n  paths = [\"spec[x]\"]\n}\n\
         moved {\n  from = \"kubernetes_config_map.a\"\n  to   = \"kubernetes_secret.b\"\n}\n\
         moved {\n  from = \"kubernetes_config_map.a\"\n  to   = \"kubernetes_config_map.b\"\n}\n\
         moved {\n  from = \"kubernetes_config_map.b\"\n  to   = \"kubernetes_config_map.c\"\n}\n",
    );
    let out = matih(d, &state, &["--schemas", &schemas.display().to_string(), "validate", &acme(d, 2, "")]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let err = stderr(&out);
    for expected in [
        "lifecycle.hcl:1:1: ignore_changes \"nothing_at_all\": \"nothing_at_all\" is not a resource kind",
        "lifecycle.hcl:5:12: ignore_changes \"kubernetes_deployment\": invalid attribute path \"spec[x]\"",
        "lifecycle.hcl:7:1: moved: kubernetes_config_map.a to kubernetes_secret.b changes the resource kind",
        "lifecycle.hcl:15:1: moved: kubernetes_config_map.b to kubernetes_config_map.c chains with the move \
         kubernetes_config_map.a to kubernetes_config_map.b at ",
    ] {
        assert!(err.contains(expected), "{expected}\nnot in\n{err}");
    }
    state.assert_nothing_recorded();
}

/// Against the real servers: drift made with kubectl at a path the tenant's spec ignores (a
/// Deployment's replicas) and at one the catalog ignores (a namespace label) is listed as ignored,
/// not drift; an unignored label change still is. The plan repairs only the latter, and the apply
/// leaves the ignored live values as they are.
#[test]
fn drift_at_ignored_paths_is_listed_as_ignored_on_the_real_control_plane() {
    use crate::support::{kube, pg, powerdns};
    const SLUG: &str = "lcycle";
    let _claim = kube::claim_tenant(SLUG);
    let state = TestState::new(Backend::Sled);
    let kube = kube::Kube::start();
    let (pg, dns) = (pg::server(), powerdns::server());
    let rt = tokio::runtime::Runtime::new().unwrap();
    dns.parent_zone(&rt, "matih.test");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fs::create_dir_all(d.join("tenants")).unwrap();
    fs::write(
        d.join("tenants/lcycle.hcl"),
        format!(
            "tenant \"{SLUG}\" {{\n  id          = \"3f2b8e4a-6c1d-4a7e-9b5f-0d8c2e6a1b73\"\n  tier        = \"free\"\n  \
             region      = \"westeurope\"\n  admin_email = \"it@lcycle.example\"\n{IGNORE_REPLICAS}}}\n"
        ),
    )
    .unwrap();
    let schemas = schemas_with(
        d,
        "ignore_changes \"kubernetes_namespace\" {\n  paths = [\"metadata.labels[\\\"matih.ai/region\\\"]\"]\n}\n",
    );
    fs::write(d.join("matih.hcl"), common::platform_hcl("matih.test", &dns.api_url, pg.port, &kube.url)).unwrap();
    let run = |args: &[&str]| {
        let mut cmd = common::matih_command();
        cmd.arg("--schemas").arg(&schemas).args(args).current_dir(d).env("NO_COLOR", "1");
        cmd.env("MATIH_POSTGRES_ADMIN_URL", &pg.admin_url).env("PDNS_API_KEY", &dns.api_key);
        cmd.stdin(std::process::Stdio::null());
        state.configure(&mut cmd, d);
        cmd.output().unwrap()
    };
    let out = run(&["apply", "tenants/lcycle.hcl", "--auto-approve"]);
    assert!(out.status.success(), "{}", common::text(&out));

    let ns = format!("matih-{SLUG}");
    let replicas = |kube: &kube::Kube| {
        let out = kube.kubectl(&["get", "deployment", "ai-service", "-n", &ns, "-o", "jsonpath={.spec.replicas}"]);
        String::from_utf8(out.stdout).unwrap()
    };
    let applied = replicas(&kube);
    let scaled = (applied.parse::<i64>().unwrap() + 1).to_string();
    let patch = format!("{{\"spec\":{{\"replicas\":{scaled}}}}}");
    for args in [
        &["patch", "deployment", "ai-service", "-n", &ns, "--type=merge", "-p", &patch][..],
        &["label", "ns", &ns, "matih.ai/region=eastus", "--overwrite"],
        &["label", "ns", &ns, "matih.ai/tier=enterprise", "--overwrite"],
    ] {
        let out = kube.kubectl(args);
        assert!(out.status.success(), "kubectl {args:?}: {}", common::text(&out));
    }

    let out = run(&["drift", "tenants/lcycle.hcl", "--format", "json", "--detailed-exitcode"]);
    let all = common::text(&out);
    assert_eq!(out.status.code(), Some(2), "{all}");
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {all}"));
    let findings = doc["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 1, "{all}");
    assert_eq!(findings[0]["address"], "kubernetes_namespace.tenant", "{all}");
    assert_eq!(
        findings[0]["attributes"],
        serde_json::json!([{ "path": "metadata.labels[\"matih.ai/tier\"]", "before": "free", "after": "enterprise" }]),
        "{all}"
    );
    let ignored: Vec<(String, String, String, serde_json::Value)> = doc["ignored"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            let at = i["declared_at"].as_str().unwrap_or("").rsplit('/').next().unwrap().to_string();
            (i["address"].as_str().unwrap().into(), i["path"].as_str().unwrap().into(), at, i["after"].clone())
        })
        .collect();
    assert_eq!(
        ignored,
        [
            (
                "kubernetes_namespace.tenant".into(),
                "metadata.labels[\"matih.ai/region\"]".into(),
                "lifecycle.hcl:2:12".into(),
                "eastus".into()
            ),
            (
                "kubernetes_deployment.ai_service".into(),
                "spec.replicas".into(),
                "lcycle.hcl:7:23".into(),
                scaled.parse::<i64>().unwrap().into()
            ),
        ],
        "{all}"
    );
    assert!(doc["ignored"].as_array().unwrap().iter().all(|i| i["difference"] == "live"), "{all}");
    let text = common::text(&run(&["drift", "tenants/lcycle.hcl"]));
    assert!(
        text.contains(&format!(
            "(ignored: kubernetes_deployment.ai_service spec.replicas: {applied} -> {scaled} live, ignore_changes at "
        )),
        "{text}"
    );

    // The plan repairs the tier label only, and says what it leaves alone.
    let out = run(&["plan", "tenants/lcycle.hcl"]);
    let plan = common::text(&out);
    assert!(plan.contains("# kubernetes_namespace.tenant will be updated in place"), "{plan}");
    assert!(!plan.contains("# kubernetes_deployment.ai_service will be updated"), "{plan}");
    assert!(
        plan.contains(&format!(
            "{SLUG}: kubernetes_deployment.ai_service spec.replicas: {scaled} -> {applied} (ignore_changes at "
        )),
        "{plan}"
    );
    assert!(plan.contains("Plan: 0 to add, 1 to change, 0 to destroy."), "{plan}");
    let out = run(&["apply", "tenants/lcycle.hcl", "--auto-approve"]);
    assert!(out.status.success(), "{}", common::text(&out));
    assert_eq!(replicas(&kube), scaled, "the ignored live replicas are left as they are");
    let labels = kube.kubectl(&["get", "ns", &ns, "-o", "jsonpath={.metadata.labels}"]);
    let labels: serde_json::Value = serde_json::from_slice(&labels.stdout).unwrap();
    assert_eq!((labels["matih.ai/region"].as_str(), labels["matih.ai/tier"].as_str()), (Some("eastus"), Some("free")));
    let out = run(&["drift", "tenants/lcycle.hcl", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(0), "{}", common::text(&out));
    assert!(stdout(&out).starts_with("No drift."), "{}", stdout(&out));
    let out = run(&["destroy", "tenants/lcycle.hcl", "--auto-approve"]);
    assert!(out.status.success(), "{}", common::text(&out));
}

const OLD: &str = "kubernetes_config_map.tempo_old";
const NEW: &str = "kubernetes_config_map.tempo_overrides";

/// A catalog `moved` block: the plan shows the record moving (`# OLD has moved to NEW`, in text,
/// JSON and Markdown), never a destroy and a create; a saved plan applies the move (an audited
/// write, history kept) and the next plan has no changes. A target the tenant does not have, both
/// addresses recorded and a `from` the catalog still makes are errors at the block.
fn catalog_moves_rename_records_instead_of_destroying_them(backend: Backend) {
    let state = TestState::new(backend);
    record(&state, &root().join("tenants/acme.hcl"));
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let spec = root().join("tenants/acme.hcl").display().to_string();
    // The record as a catalog that called it tempo_old left it.
    let out = matih(d, &state, &["state", "mv", &format!("acme/{NEW}"), OLD]);
    assert!(out.status.success(), "{}", stderr(&out));
    let moved = format!("moved {{\n  from = \"{OLD}\"\n  to   = \"{NEW}\"\n}}\n");
    let schemas = schemas_with(d, &moved).display().to_string();
    let plan = |args: &[&str]| {
        let mut all = vec!["--schemas", schemas.as_str(), "plan", spec.as_str(), "--refresh=false"];
        all.extend_from_slice(args);
        matih(d, &state, &all)
    };

    let out = plan(&["--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(2), "{}{}", stdout(&out), stderr(&out));
    let text = stdout(&out);
    assert!(text.contains(&format!("# {OLD} has moved to {NEW}")), "{text}");
    assert!(text.contains("lifecycle.hcl:1:1)"), "{text}");
    assert!(!text.contains("will be created") && !text.contains("will be destroyed"), "{text}");
    assert!(text.contains("Plan: 1 to move, 0 to add, 0 to change, 0 to destroy."), "{text}");
    let doc: serde_json::Value = serde_json::from_slice(&plan(&["--format", "json"]).stdout).unwrap();
    assert_eq!(doc["tenants"][0]["moved"][0]["from"], OLD);
    assert_eq!(doc["tenants"][0]["moved"][0]["to"], NEW);
    assert!(doc["tenants"][0]["moved"][0]["declared_at"].as_str().unwrap().ends_with("lifecycle.hcl:1:1"));
    assert_eq!(doc["summary"]["moved"], 1);
    let md = stdout(&plan(&["--format", "markdown"]));
    assert!(md.contains(&format!("# {OLD} has moved to {NEW} (moved block at ")), "{md}");

    // Saved, then applied: the record moves, in one audited write; nothing is created or destroyed.
    let saved = d.join("moved.tfplan").display().to_string();
    assert!(plan(&["-out", &saved]).status.success());
    let out = matih(d, &state, &["--schemas", &schemas, "apply", &saved]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let st = state.store().get("acme").unwrap().unwrap();
    assert!(st.resources.contains_key(&NEW.parse().unwrap()) && !st.resources.contains_key(&OLD.parse().unwrap()));
    assert!(state.store().audit("acme").unwrap().iter().any(|a| a.operation == "moved"));
    assert!(stdout(&matih(d, &state, &["state", "history", "acme"])).contains("by moved"));
    let out = plan(&["--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(0), "{}{}", stdout(&out), stderr(&out));

    // A target the tenant does not have; both addresses recorded; a `from` the catalog still makes.
    let out = matih(d, &state, &["state", "mv", &format!("acme/{NEW}"), OLD]);
    assert!(out.status.success(), "{}", stderr(&out));
    let nowhere = schemas_with(d, &moved.replace(NEW, "kubernetes_config_map.nowhere")).display().to_string();
    let out = matih(d, &state, &["--schemas", &nowhere, "plan", &spec, "--refresh=false"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stderr(&out).contains(
            "lifecycle.hcl:1:1: moved: kubernetes_config_map.nowhere is not a resource tenant \"acme\"'s spec compiles to"
        ),
        "{}",
        stderr(&out)
    );
    {
        let store = state.store();
        let mut st = store.get("acme").unwrap().unwrap();
        let r = st.resources[&OLD.parse().unwrap()].clone();
        st.resources.insert(NEW.parse().unwrap(), r);
        st.serial += 1;
        store.put(&st, Some(st.serial - 1), "test").unwrap();
    }
    schemas_with(d, &moved); // the catalog copy is shared: back to the first move
    let out = plan(&[]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stderr(&out).contains(&format!("lifecycle.hcl:1:1: moved: tenant \"acme\" records both {OLD} and {NEW}")),
        "{}",
        stderr(&out)
    );
    let still = schemas_with(d, &format!("moved {{\n  from = \"{NEW}\"\n  to   = \"kubernetes_config_map.x\"\n}}\n"));
    let out = matih(d, &state, &["--schemas", &still.display().to_string(), "plan", &spec, "--refresh=false"]);
    assert!(
        stderr(&out).contains(&format!("lifecycle.hcl:1:1: moved: {NEW} is still a resource of tenant \"acme\"")),
        "{}",
        stderr(&out)
    );
}
on_both_backends!(catalog_moves_rename_records_instead_of_destroying_them);
