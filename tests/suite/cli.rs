//! End-to-end tests of the `matih` binary: validate, plan, show, graph, state and status. Every
//! test that touches state runs on both backends (`NAME::sled`, `NAME::postgres`).

use crate::support as common;

use std::fs;
use std::path::Path;

use common::{applied_state, compile_file, matih, record, root, stderr, stdout, Backend, TestState, CLEAR_SECRET};
use matih::value::fingerprint;
use sha2::{Digest, Sha256};

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

/// Copies the example tenants into a scratch directory, so tests can edit them.
fn scratch_tenants(dir: &Path) {
    fs::create_dir_all(dir.join("tenants")).unwrap();
    for name in ["acme.hcl", "globex.hcl", "initech.hcl"] {
        fs::copy(root().join("tenants").join(name), dir.join("tenants").join(name)).unwrap();
    }
}

fn plan_of_a_new_tenant_creates_every_resource_of_the_ten_phases(backend: Backend) {
    let state = TestState::new(backend);
    let out = matih(&root(), &state, &["plan", "tenants/acme.hcl"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let mut last = 0;
    for (i, phase) in matih::phase::Phase::ALL.iter().enumerate() {
        let heading = format!("Phase {}/10: {}", i + 1, phase.name());
        let at = text.find(&heading).unwrap_or_else(|| panic!("missing {heading}"));
        assert!(at > last, "phases in order");
        last = at;
    }
    assert!(text.contains("# kubernetes_namespace.tenant will be created"));
    assert!(text.contains("\"matih-acme\""));
    assert!(text.contains("(known after apply)"), "the DNS records' IP is unknown until phase 6 ran");
    let graph = compile_file(&root().join("tenants/acme.hcl"));
    let summary = format!("Plan: {} to add, 0 to change, 0 to destroy.", graph.len());
    assert!(text.trim_end().ends_with(&summary), "summary line: {}", text.lines().last().unwrap_or(""));
    assert!(graph.len() >= 45, "roughly 50 resources per tenant, got {}", graph.len());
    state.assert_nothing_recorded();
}
on_both_backends!(plan_of_a_new_tenant_creates_every_resource_of_the_ten_phases);

fn plan_output_is_deterministic(backend: Backend) {
    let state = TestState::new(backend);
    record(&state, &root().join("tenants/globex.hcl"));
    let a = matih(&root(), &state, &["plan", "tenants/"]);
    let b = matih(&root(), &state, &["plan", "tenants/"]);
    assert!(a.status.success(), "{}", stderr(&a));
    assert!(
        stdout(&a).contains("1 tenant has no changes: \"globex\"."),
        "globex is read from the store: {}",
        stdout(&a)
    );
    assert_eq!(a.stdout, b.stdout);
    let j1 = matih(&root(), &state, &["plan", "tenants", "--format", "json"]);
    let j2 = matih(&root(), &state, &["plan", "tenants", "--format", "json"]);
    assert_eq!(j1.stdout, j2.stdout);
}
on_both_backends!(plan_output_is_deterministic);

/// Writes `n` generated tenants into `dir/tenants` (`t00`…): every tier, some with Slack webhooks
/// taken from environment variables that the tests leave unset (`FLEET_WEBHOOK` for every tenth
/// tenant, `ONE_WEBHOOK` for `t07`).
fn generated_fleet(dir: &Path, n: usize) {
    let tenants = dir.join("tenants");
    fs::create_dir_all(&tenants).unwrap();
    for i in 0..n {
        let webhook = match i {
            7 => "\n    notify_slack_webhook_env = \"ONE_WEBHOOK\"",
            i if i % 10 == 0 => "\n    notify_slack_webhook_env = \"FLEET_WEBHOOK\"",
            _ => "",
        };
        let spec = format!(
            "tenant \"t{i:02}\" {{\n  id          = \"{i:08x}-0000-4000-8000-{i:012x}\"\n  tier        = \"{}\"\n  \
             region      = \"eastus\"\n  admin_email = \"admin@t{i:02}.example\"\n  services {{\n    \
             ai_service {{ replicas = {} }}\n  }}\n  monitoring {{\n    notify_email = [\"ops@t{i:02}.example\"]{webhook}\n  }}\n}}\n",
            ["free", "professional", "enterprise"][i % 3],
            1 + i % 3
        );
        fs::write(tenants.join(format!("t{i:02}.hcl")), spec).unwrap();
    }
}

/// `matih ARGS` in `dir` with the generated fleet's webhook variables unset.
fn matih_unset(dir: &Path, state: &TestState, args: &[&str]) -> std::process::Output {
    let mut cmd = crate::support::matih_command();
    cmd.args(args).current_dir(dir).env("NO_COLOR", "1").env_remove("FLEET_WEBHOOK").env_remove("ONE_WEBHOOK");
    state.configure(&mut cmd, dir);
    cmd.output().expect("run matih")
}

/// Issue 16, items 1 and 6: `matih plan DIR` streams the fleet (a few tenants at a time read,
/// compiled, diffed and rendered by the pool, then dropped), and prints the same bytes, in file
/// order, as the whole plan held at once (a saved plan shown), in every format; the
/// note on unset variables names each variable once, with how many tenants need it.
fn a_streamed_fleet_plan_is_the_whole_plan_in_file_order(backend: Backend) {
    let dir = tmp();
    let state = TestState::new(backend);
    // Many more tenants than are in flight at once; one recorded unchanged, one recorded and then changed.
    generated_fleet(dir.path(), 40);
    record(&state, &dir.path().join("tenants/t03.hcl"));
    record(&state, &dir.path().join("tenants/t35.hcl"));
    let t35 = dir.path().join("tenants/t35.hcl");
    fs::write(&t35, fs::read_to_string(&t35).unwrap().replace("replicas = 3", "replicas = 5")).unwrap();

    let saved = matih_unset(dir.path(), &state, &["plan", "tenants", "-out", "whole.tfplan"]);
    assert!(saved.status.success(), "{}", stderr(&saved));
    // Markdown groups tenants with the same changes by default; text and JSON with --group.
    let grouped = |format: &str, group: &[&'static str]| {
        let args = |first: &[&'static str]| -> Vec<String> {
            first.iter().chain(["--format", format].iter()).chain(group).map(|s| s.to_string()).collect()
        };
        (args(&["plan", "tenants"]), args(&["show", "whole.tfplan"]))
    };
    for (format, group) in [
        ("text", &[][..]),
        ("json", &[][..]),
        ("markdown", &[][..]),
        ("text", &["--group"][..]),
        ("json", &["--group"][..]),
        ("markdown", &["--no-group"][..]),
    ] {
        let (plan, show) = grouped(format, group);
        let plan: Vec<&str> = plan.iter().map(String::as_str).collect();
        let show: Vec<&str> = show.iter().map(String::as_str).collect();
        let marker = match format {
            "text" => "tenants with the same changes, shown once",
            "json" => "\n  \"groups\": [",
            _ => "Shown once: `${slug}`",
        };
        let expect_groups = group == ["--group"] || (format == "markdown" && group.is_empty());
        let format = format!("{format} {group:?}");
        let streamed = matih_unset(dir.path(), &state, &plan);
        assert!(streamed.status.success(), "{}", stderr(&streamed));
        assert_eq!(stdout(&streamed).contains(marker), expect_groups, "{format}: {}", stdout(&streamed));
        let shown = matih_unset(dir.path(), &state, &show);
        assert!(shown.status.success(), "{}", stderr(&shown));
        // The saved plan's rendering names the file's digest; the rest is the same.
        let d = sha256_of(&dir.path().join("whole.tfplan"));
        let whole = stdout(&shown)
            .replace(&format!("Plan file digest: {d}\n"), "")
            .replace(&format!("  \"digest\": \"{d}\",\n"), "")
            .replace(&format!("Plan file digest: `{d}` (apply exactly this file with `--expect-digest {d}`)\n\n"), "");
        assert_ne!(whole, stdout(&shown), "{format}: the digest is named");
        assert_eq!(stdout(&streamed), whole, "{format}");
    }
    let text = stdout(&matih_unset(dir.path(), &state, &["plan", "tenants"]));
    let order: Vec<&str> =
        text.lines().filter_map(|l| l.strip_prefix("Tenant \"")?.split_once("\" (").map(|(slug, _)| slug)).collect();
    let mut sorted = order.clone();
    sorted.sort();
    assert_eq!(order.len(), 39, "every tenant but the unchanged one has a section");
    assert_eq!(order, sorted, "file order");
    assert!(text.contains("1 tenant has no changes: \"t03\"."), "{text}");

    let err = stderr(&matih_unset(dir.path(), &state, &["plan", "tenants"]));
    let note = err.lines().find(|l| l.starts_with("Note: not set in the environment: ")).expect("the note");
    assert!(
        note.starts_with("Note: not set in the environment: FLEET_WEBHOOK (4 tenants), ONE_WEBHOOK (tenant \"t07\")."),
        "{note}"
    );
    assert_eq!(err.matches("FLEET_WEBHOOK").count(), 1, "{err}");
}
on_both_backends!(a_streamed_fleet_plan_is_the_whole_plan_in_file_order);

fn json_plan_is_versioned_and_lists_every_tenant(backend: Backend) {
    let state = TestState::new(backend);
    let out = matih(&root(), &state, &["plan", "tenants", "--format", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("valid JSON");
    assert_eq!(v["format_version"], matih::plan::FORMAT_VERSION);
    let slugs: Vec<&str> = v["tenants"].as_array().unwrap().iter().map(|t| t["slug"].as_str().unwrap()).collect();
    assert_eq!(slugs, ["acme", "globex", "initech"]);
}
on_both_backends!(json_plan_is_versioned_and_lists_every_tenant);

fn detailed_exitcode_is_2_with_changes_and_0_without(backend: Backend) {
    let state = TestState::new(backend);
    let out = matih(&root(), &state, &["plan", "tenants/acme.hcl", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    record(&state, &root().join("tenants/acme.hcl"));
    let out = matih(&root(), &state, &["plan", "tenants/acme.hcl", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(0), "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("No changes."), "{}", stdout(&out));
}
on_both_backends!(detailed_exitcode_is_2_with_changes_and_0_without);

fn a_changed_spec_shows_attribute_level_updates_only(backend: Backend) {
    let dir = tmp();
    let state = TestState::new(backend);
    scratch_tenants(dir.path());
    let spec = dir.path().join("tenants/acme.hcl");
    record(&state, &spec);
    let text = fs::read_to_string(&spec).unwrap().replace("replicas = 2", "replicas = 3");
    fs::write(&spec, text).unwrap();
    let out = matih(dir.path(), &state, &["plan", "tenants/acme.hcl"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("# kubernetes_deployment.ai_service will be updated in place"), "{text}");
    assert!(text.contains("2 -> 3"), "{text}");
    assert!(text.contains("Plan: 0 to add, 1 to change, 0 to destroy."), "{text}");
}
on_both_backends!(a_changed_spec_shows_attribute_level_updates_only);

fn a_removed_resource_is_destroyed_and_a_renamed_one_replaced(backend: Backend) {
    let dir = tmp();
    let state = TestState::new(backend);
    scratch_tenants(dir.path());
    let spec = dir.path().join("tenants/acme.hcl");
    let graph = compile_file(&spec);
    let mut st = applied_state(&graph);
    // A resource the spec no longer produces, and a namespace recorded under another name.
    let extra: matih::addr::ResourceAddr = "kubernetes_config_map.legacy".parse().unwrap();
    let ns: matih::addr::ResourceAddr = "kubernetes_namespace.tenant".parse().unwrap();
    let mut legacy = st.resources[&ns].clone();
    legacy.phase = matih::phase::Phase::DeployMonitoring;
    st.resources.insert(extra, legacy);
    let ns_state = st.resources.get_mut(&ns).unwrap();
    if let Some(matih::value::Value::Map(meta)) = ns_state.attrs.get_mut("metadata") {
        meta.insert("name".into(), "matih-acme-old".into());
    }
    state.store().put(&st, None, "test").unwrap();
    let out = matih(dir.path(), &state, &["plan", "tenants/acme.hcl"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("# kubernetes_config_map.legacy will be destroyed"), "{text}");
    assert!(text.contains("# kubernetes_namespace.tenant must be replaced"), "{text}");
    assert!(text.contains("# forces replacement"), "{text}");
    assert!(text.contains("Plan: 1 to add, 0 to change, 2 to destroy."), "{text}");
}
on_both_backends!(a_removed_resource_is_destroyed_and_a_renamed_one_replaced);

fn secrets_never_appear_in_plans_or_plan_files(backend: Backend) {
    let dir = tmp();
    let state = TestState::new(backend);
    scratch_tenants(dir.path());
    let spec = dir.path().join("tenants/acme.hcl");
    let graph = compile_file(&spec);
    let mut st = applied_state(&graph);
    // Change a label so the plan shows the Secret resource in full (as an update).
    let addr: matih::addr::ResourceAddr = "kubernetes_secret.database_credentials".parse().unwrap();
    if let Some(matih::value::Value::Map(meta)) = st.resources.get_mut(&addr).unwrap().attrs.get_mut("metadata") {
        meta.insert("labels".into(), matih::value::Value::map([("stale", "yes".into())]));
    }
    state.store().put(&st, None, "test").unwrap();
    let fp = fingerprint(CLEAR_SECRET);
    let fp_hex = fp.trim_start_matches("sha256:");
    let planfile = dir.path().join("acme.plan");
    for args in [
        vec!["plan", "tenants/acme.hcl"],
        vec!["plan", "tenants/acme.hcl", "--format", "json"],
        vec!["plan", "tenants/acme.hcl", "--format", "markdown"],
        vec!["plan", "tenants/acme.hcl", "-o", planfile.to_str().unwrap()],
    ] {
        let out = matih(dir.path(), &state, &args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        let all = format!("{}{}", stdout(&out), stderr(&out));
        assert!(all.contains("kubernetes_secret.database_credentials"), "{args:?} shows the secret resource");
        if args.len() == 2 {
            assert!(all.contains("# kubernetes_secret.database_credentials will be updated in place"), "{all}");
        }
        assert!(!all.contains(CLEAR_SECRET), "{args:?} leaks the clear text");
        assert!(!all.contains(fp_hex), "{args:?} shows a fingerprint");
    }
    let file = fs::read_to_string(&planfile).unwrap();
    assert!(!file.contains(CLEAR_SECRET));
    let shown = matih(dir.path(), &state, &["show", planfile.to_str().unwrap()]);
    assert!(shown.status.success(), "{}", stderr(&shown));
    assert!(!stdout(&shown).contains(fp_hex));
    let stored = String::from_utf8_lossy(&state.contents()).into_owned();
    assert!(stored.contains("kubernetes_secret.database_credentials"), "the store's contents were read");
    assert!(!stored.contains(CLEAR_SECRET));
}
on_both_backends!(secrets_never_appear_in_plans_or_plan_files);

fn saved_plan_shows_the_same_and_a_tampered_one_is_refused(backend: Backend) {
    let dir = tmp();
    let state = TestState::new(backend);
    let planfile = dir.path().join("acme.plan");
    let out = matih(&root(), &state, &["plan", "tenants/acme.hcl", "-out", planfile.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("matih apply"), "tells how to apply the saved plan");
    let shown = matih(&root(), &state, &["show", planfile.to_str().unwrap()]);
    assert!(shown.status.success(), "{}", stderr(&shown));
    let planned = stdout(&out);
    assert!(planned.starts_with(&stdout(&shown)), "show renders the saved plan as plan did");

    let text = fs::read_to_string(&planfile).unwrap();
    let tampered = text.replacen("matih-acme", "matih-evil", 1);
    assert_ne!(text, tampered);
    fs::write(&planfile, tampered).unwrap();
    let shown = matih(&root(), &state, &["show", planfile.to_str().unwrap()]);
    assert_eq!(shown.status.code(), Some(1));
    assert!(stderr(&shown).contains("modified"), "{}", stderr(&shown));
}
on_both_backends!(saved_plan_shows_the_same_and_a_tampered_one_is_refused);

/// Issue 21, item 3: without a key anyone who can write a plan file can re-seal it, so apply checks
/// what the plan would create or change against what the spec files compile to now. A re-sealed
/// edit and a spec changed since the plan are both refused before anything is contacted.
fn a_saved_plan_must_be_what_the_specs_compile_to(backend: Backend) {
    let dir = tmp();
    let state = TestState::new(backend);
    scratch_tenants(dir.path());
    let out = matih(dir.path(), &state, &["plan", "tenants/acme.hcl", "-out", "acme.plan"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let sealed = fs::read_to_string(dir.path().join("acme.plan")).unwrap();

    // Edited and re-sealed: the SHA-256 checks out, the manifests do not.
    let mut file: serde_json::Value = serde_json::from_str(&sealed).unwrap();
    let inner = file["plan"].as_str().unwrap().replace("matih-acme", "matih-evil");
    let digest: String = Sha256::digest(inner.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
    file["plan"] = inner.into();
    file["sha256"] = digest.into();
    fs::write(dir.path().join("resealed.plan"), file.to_string()).unwrap();
    let out = matih(dir.path(), &state, &["apply", "resealed.plan"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(err.contains("not what the tenants' spec files compile to now"), "{err}");
    assert!(err.contains("acme/kubernetes_namespace.tenant: metadata.name differs"), "{err}");
    assert!(!err.contains("no provider can reach"), "refused before connecting: {err}");

    // The spec changed after the plan was made: the plan no longer says what would be applied.
    let spec = dir.path().join("tenants/acme.hcl");
    let text = fs::read_to_string(&spec).unwrap();
    fs::write(&spec, text.replacen("replicas = 2", "replicas = 3", 1)).unwrap();
    let out = matih(dir.path(), &state, &["apply", "acme.plan"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(err.contains("spec.replicas differs"), "{err}");
    // As it was: the check passes and apply goes on to the providers (none configured here).
    fs::write(&spec, text).unwrap();
    let out = matih(dir.path(), &state, &["apply", "acme.plan"]);
    assert!(stderr(&out).contains("no provider can reach"), "{}", stderr(&out));
    state.assert_nothing_recorded();
}
on_both_backends!(a_saved_plan_must_be_what_the_specs_compile_to);

// No state is read or written: runs once.
#[test]
fn validate_reports_every_error_with_file_line_and_column() {
    let dir = tmp();
    fs::create_dir_all(dir.path().join("tenants")).unwrap();
    fs::write(
        dir.path().join("tenants/bad.hcl"),
        "tenant \"Bad_Slug\" {\n  id = \"not-a-uuid\"\n  tier = \"gold\"\n  region = \"eastus\"\n  admin_email = \"a@b.example\"\n}\n",
    )
    .unwrap();
    let out = matih(dir.path(), &TestState::new(Backend::Sled), &["validate", "tenants"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("tenants/bad.hcl:")).collect();
    assert!(lines.len() >= 3, "{err}");
    assert!(lines[0].starts_with("tenants/bad.hcl:1:8: "), "{err}");
    assert!(err.contains("tenants/bad.hcl:2:8: "), "{err}");
    assert!(
        err.contains("tenants/bad.hcl:3:10: unknown tier \"gold\" (expected free, professional, enterprise)"),
        "{err}"
    );
    assert!(stdout(&out).is_empty());
}

fn a_syntax_error_is_located_and_nothing_is_written(backend: Backend) {
    let dir = tmp();
    fs::create_dir_all(dir.path().join("tenants")).unwrap();
    fs::write(dir.path().join("tenants/broken.hcl"), "tenant \"x\" {\n  id = \n}\n").unwrap();
    let planfile = dir.path().join("x.plan");
    let state = TestState::new(backend);
    let out = matih(dir.path(), &state, &["plan", "tenants", "-out", planfile.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("tenants/broken.hcl:"), "{}", stderr(&out));
    assert!(!planfile.exists(), "a plan with errors is never saved");
    state.assert_nothing_recorded();
}
on_both_backends!(a_syntax_error_is_located_and_nothing_is_written);

// No state is read or written: runs once.
#[test]
fn valid_examples_validate() {
    let out = matih(&root(), &TestState::new(Backend::Sled), &["validate"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("3 tenants valid"), "{}", stdout(&out));
}

// No state is read or written: runs once.
#[test]
fn graph_prints_dot_with_one_cluster_per_phase() {
    let out = matih(&root(), &TestState::new(Backend::Sled), &["graph", "tenants/acme.hcl"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let dot = stdout(&out);
    assert!(dot.trim_start().starts_with("digraph"));
    for p in matih::phase::Phase::ALL {
        assert!(dot.contains(p.name()), "cluster for {p}");
    }
    assert_eq!(dot.matches("subgraph \"cluster_acme_").count(), 10, "{dot}");
}

fn state_list_show_status_and_rm(backend: Backend) {
    let state = TestState::new(backend);
    record(&state, &root().join("tenants/acme.hcl"));
    let out = matih(&root(), &state, &["state", "list"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).starts_with("acme "), "{}", stdout(&out));
    assert!(stdout(&out).contains("ACTIVE"));

    let out = matih(&root(), &state, &["status", "acme"]);
    assert!(stdout(&out).contains("Status:     ACTIVE"), "{}", stdout(&out));

    let out = matih(&root(), &state, &["state", "show", "acme", "kubernetes_namespace.tenant"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("matih-acme"));

    let out = matih(&root(), &state, &["state", "rm", "acme", "kubernetes_namespace.tenant"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = matih(&root(), &state, &["plan", "tenants/acme.hcl"]);
    assert!(stdout(&out).contains("Plan: 1 to add, 0 to change, 0 to destroy."), "{}", stdout(&out));
    let out = matih(&root(), &state, &["state", "history", "acme"]);
    assert!(stdout(&out).contains("state rm"), "{}", stdout(&out));

    let out = matih(&root(), &state, &["status", "nobody"]);
    assert_eq!(out.status.code(), Some(1));
}
on_both_backends!(state_list_show_status_and_rm);

/// `state mv` renames a recorded resource in place: a dry run writes nothing, the move is in the
/// history and audit log, the next plan sees the old name gone, and moving back restores "No
/// changes."; a kind change, an occupied target and an unknown address are refused.
fn state_mv_renames_a_recorded_resource(backend: Backend) {
    let state = TestState::new(backend);
    record(&state, &root().join("tenants/acme.hcl"));
    let (from, to) = ("kubernetes_namespace.tenant", "kubernetes_namespace.renamed");
    let out = matih(&root(), &state, &["state", "mv", "-dry-run", from, to]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("acme") && stdout(&out).contains("would move"), "{}", stdout(&out));
    assert_eq!(state.store().get("acme").unwrap().unwrap().serial, 1, "a dry run writes nothing");

    let out = matih(&root(), &state, &["state", "mv", &format!("acme/{from}"), to]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("Moved kubernetes_namespace.tenant to kubernetes_namespace.renamed in 1 tenant(s)."));
    let st = state.store().get("acme").unwrap().unwrap();
    assert_eq!(st.serial, 2);
    assert!(st.resources.contains_key(&to.parse().unwrap()) && !st.resources.contains_key(&from.parse().unwrap()));
    assert!(stdout(&matih(&root(), &state, &["state", "history", "acme"])).contains("state mv"));
    assert!(state.store().audit("acme").unwrap().iter().any(|a| a.operation == "state mv"));
    let out = matih(&root(), &state, &["plan", "tenants/acme.hcl", "--refresh=false"]);
    assert!(stdout(&out).contains("1 to add") && stdout(&out).contains("1 to destroy"), "{}", stdout(&out));

    for (args, why) in [
        (&["state", "mv", to, "kubernetes_service.renamed"][..], "never changes a resource's kind"),
        (&["state", "mv", "acme/kubernetes_namespace.nothing", to], "has no resource"),
        (&["state", "mv", "acme/*.x", to], "wildcard"),
    ] {
        let out = matih(&root(), &state, args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stdout(&out));
        assert!(stderr(&out).contains(why), "{args:?}: {}", stderr(&out));
    }
    let out = matih(&root(), &state, &["state", "mv", to, from]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = matih(&root(), &state, &["plan", "tenants/acme.hcl", "--refresh=false"]);
    assert!(stdout(&out).contains("No changes."), "{}", stdout(&out));
    let out = matih(
        &root(),
        &state,
        &["state", "mv", "acme/kubernetes_deployment.query_engine", "kubernetes_deployment.ai_service"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stderr(&out).contains("already records kubernetes_deployment.ai_service"), "{}", stderr(&out));
    assert_eq!(state.store().get("acme").unwrap().unwrap().serial, 3);
}
on_both_backends!(state_mv_renames_a_recorded_resource);

/// `state restore` brings an earlier record back through a plan: the record's changes are shown
/// with what the next plan will do, nothing is written without approval, the restore is a new
/// serial (history kept), and unknown serials, the current one, another lineage's and a locked
/// tenant are refused.
fn state_restore_brings_an_earlier_record_back(backend: Backend) {
    let state = TestState::new(backend);
    record(&state, &root().join("tenants/acme.hcl"));
    let ns = "kubernetes_namespace.tenant";
    assert!(matih(&root(), &state, &["state", "rm", "acme", ns]).status.success());
    let restore = |serial: &str, extra: &[&str]| {
        let mut args = vec!["state", "restore", "acme", "--serial", serial, "--path", "tenants/acme.hcl"];
        args.extend_from_slice(extra);
        matih(&root(), &state, &args)
    };

    // No answer (standard input closed): nothing is written.
    let out = restore("1", &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stdout(&out).contains("+ resource \"kubernetes_namespace\" \"tenant\""), "{}", stdout(&out));
    assert!(stdout(&out).contains("recorded again: serial 1 recorded it"), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("Plan: 1 to record again, 0 to change in the record, 0 to forget (restore of serial 1"),
        "{}",
        stdout(&out)
    );
    assert!(stdout(&out).contains("the next `matih plan` of \"acme\" shows no changes"), "{}", stdout(&out));
    assert!(stderr(&out).contains("standard input is closed"), "{}", stderr(&out));
    let out = restore("1", &["-input=false"]);
    assert!(stderr(&out).contains("would need the confirmation prompt; nothing was restored"), "{}", stderr(&out));
    assert_eq!(state.store().get("acme").unwrap().unwrap().serial, 2, "nothing restored without approval");

    let out = restore("1", &["-auto-approve"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("are recorded as serial 3"), "{}", stdout(&out));
    let st = state.store().get("acme").unwrap().unwrap();
    assert_eq!(st.serial, 3);
    assert!(st.resources.contains_key(&ns.parse().unwrap()));
    let history = stdout(&matih(&root(), &state, &["state", "history", "acme"]));
    assert!(history.contains("serial 1 ") && history.contains("serial 2 "), "{history}");
    assert!(history.contains("by state restore"), "{history}");
    let out = matih(&root(), &state, &["plan", "tenants/acme.hcl", "--refresh=false"]);
    assert!(stdout(&out).contains("No changes."), "{}", stdout(&out));

    // Serial 2 forgot the namespace: restoring it says the next plan creates it again.
    let out = restore("2", &["-auto-approve"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("forgotten: serial 2 did not record it"), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("with the restored record: 1 to add, 0 to change, 0 to destroy."),
        "{}",
        stdout(&out)
    );

    for (serial, why) in [("9", "has no serial 9 in its history"), ("4", "serial 4 is the current record")] {
        let out = restore(serial, &["-auto-approve"]);
        assert_eq!(out.status.code(), Some(1), "{serial}: {}", stdout(&out));
        assert!(stderr(&out).contains(why), "{serial}: {}", stderr(&out));
    }
    let (lock, _holder) = state.hold_lock("acme", "apply");
    let out = restore("1", &["-auto-approve"]);
    assert!(stderr(&out).contains("tenant \"acme\" is locked by"), "{}", stderr(&out));
    state.store().unlock("acme", &lock.id).unwrap();
    drop(_holder);

    // Destroyed and applied again: a new lineage, whose record the earlier life's serials never enter.
    state.store().remove("acme", 4, "destroy").unwrap();
    record(&state, &root().join("tenants/acme.hcl"));
    let out = restore("3", &["-auto-approve"]);
    assert!(stderr(&out).contains("belongs to another lineage"), "{}", stderr(&out));
    assert_eq!(state.store().get("acme").unwrap().unwrap().serial, 1);
}
on_both_backends!(state_restore_brings_an_earlier_record_back);

fn a_state_store_from_a_newer_matih_is_refused_not_reset(backend: Backend) {
    let state = TestState::new(backend);
    record(&state, &root().join("tenants/acme.hcl"));
    state.set_format_version(999);
    for args in
        [&["plan", "tenants/acme.hcl"][..], &["state", "list"], &["state", "rm", "acme", "kubernetes_namespace.tenant"]]
    {
        let out = matih(&root(), &state, args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stdout(&out));
        assert!(stderr(&out).contains("version 999"), "{args:?}: {}", stderr(&out));
    }
    // Not reset: back at the supported version, the recorded tenant is still there, untouched.
    state.set_format_version(match backend {
        Backend::Sled => matih::state::FORMAT_VERSION,
        Backend::Postgres => matih::state::SCHEMA_VERSION as u32,
    });
    let st = state.store().get("acme").unwrap().expect("the tenant's state survives");
    assert_eq!(st.serial, 1);
    assert!(st.resources.contains_key(&"kubernetes_namespace.tenant".parse().unwrap()));
}
on_both_backends!(a_state_store_from_a_newer_matih_is_refused_not_reset);

/// `matih lock list` names a held lock, `state rm` is refused while it is held, `lock
/// force-unlock` needs the lock's id and then releases it.
fn locks_are_listed_refused_and_force_unlocked(backend: Backend) {
    let state = TestState::new(backend);
    record(&state, &root().join("tenants/acme.hcl"));
    let (lock, _holder) = state.hold_lock("acme", "apply");

    let out = matih(&root(), &state, &["lock", "list"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let listed = stdout(&out);
    assert_eq!(listed.lines().count(), 1, "{listed}");
    assert!(listed.starts_with("acme ") && listed.contains("apply"), "{listed}");
    assert!(listed.contains(&format!("(pid {})", std::process::id())) && listed.contains(&lock.id), "{listed}");

    let out = matih(&root(), &state, &["state", "rm", "acme", "kubernetes_namespace.tenant"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("tenant \"acme\" is locked by") && stderr(&out).contains(&lock.id),
        "{}",
        stderr(&out)
    );

    let out = matih(&root(), &state, &["lock", "force-unlock", "acme", "not-the-id"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stderr(&out).contains("has no lock with id \"not-the-id\""), "{}", stderr(&out));
    assert_eq!(stdout(&matih(&root(), &state, &["lock", "list"])).lines().count(), 1, "still held");

    let out = matih(&root(), &state, &["lock", "force-unlock", "acme", &lock.id]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains(&format!("Released the lock {} of tenant \"acme\".", lock.id)), "{}", stdout(&out));
    assert_eq!(stdout(&matih(&root(), &state, &["lock", "list"])), "");
    let out = matih(&root(), &state, &["state", "rm", "acme", "kubernetes_namespace.tenant"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(state.store().get("acme").unwrap().unwrap().serial, 2);
}
on_both_backends!(locks_are_listed_refused_and_force_unlocked);

fn plan_and_drift_shards_partition_the_fleet(backend: Backend) {
    let state = TestState::new(backend);
    let mut planned = Vec::new();
    for k in 1..=3 {
        let shard = format!("{k}/3");
        let out = matih(&root(), &state, &["plan", "tenants", "--refresh=false", "--shard", &shard]);
        assert!(out.status.success(), "{}", stderr(&out));
        let tenants: Vec<String> = stdout(&out)
            .lines()
            .filter_map(|l| l.strip_prefix("Tenant \"")?.split_once("\" (").map(|(slug, _)| slug.to_string()))
            .collect();
        assert!(stderr(&out).contains(&format!("shard {shard}: {} of 3 tenant(s)", tenants.len())), "{}", stderr(&out));
        planned.extend(tenants);
    }
    planned.sort();
    assert_eq!(planned, ["acme", "globex", "initech"], "every tenant in exactly one shard");
    let out = matih(&root(), &state, &["drift", "tenants", "--shard", "0/3"]);
    assert_eq!(out.status.code(), Some(2), "a usage error");
    assert!(stderr(&out).contains("not a shard: expected K/N"), "{}", stderr(&out));
    state.assert_nothing_recorded();
}
on_both_backends!(plan_and_drift_shards_partition_the_fleet);

/// Issue 21, item 3: with `MATIH_PLAN_KEY` set, a plan file sealed with another key, or with none,
/// is refused; a keyed one is refused where the key is not set. On sled only: no state is involved
/// beyond planning a new tenant.
#[test]
fn keyed_plan_files_are_refused_under_another_key_or_none() {
    let dir = tmp();
    let state = TestState::new(Backend::Sled);
    let planfile = dir.path().join("acme.plan");
    let path = planfile.to_str().unwrap();
    let run = |key: Option<&str>, args: &[&str]| {
        let mut cmd = crate::support::matih_command();
        cmd.args(args).current_dir(root()).env_remove("MATIH_SCHEMAS_DIR").env_remove("MATIH_PLAN_KEY");
        cmd.env("NO_COLOR", "1");
        if let Some(k) = key {
            cmd.env("MATIH_PLAN_KEY", k);
        }
        state.configure(&mut cmd, &root());
        cmd.output().expect("run matih")
    };
    let (key, other) = ("k".repeat(40), "o".repeat(40));
    let out = run(Some(&key), &["plan", "tenants/acme.hcl", "-out", path]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = fs::read_to_string(&planfile).unwrap();
    assert!(text.contains("\"hmac_sha256\""), "sealed with the key");
    assert!(!text.contains(&key), "the key is never written");
    assert!(run(Some(&key), &["show", path]).status.success());
    let out = run(Some(&other), &["show", path]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("was not sealed with this MATIH_PLAN_KEY"), "{}", stderr(&out));
    let out = run(None, &["show", path]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("cannot be checked without it: set MATIH_PLAN_KEY"), "{}", stderr(&out));

    let out = run(None, &["plan", "tenants/acme.hcl", "-out", path]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run(Some(&key), &["show", path]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("is not sealed with a key, but MATIH_PLAN_KEY is set"), "{}", stderr(&out));
    let out = run(Some("short"), &["plan", "tenants/acme.hcl", "-out", path]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("use at least 32 random characters"), "{}", stderr(&out));
    assert!(!stderr(&out).contains("short\""), "the key is not echoed");
}

/// A Terraform user's muscle memory: single-dash long options, `-opt=value`, and `--refresh false`.
fn terraform_spellings_are_accepted(backend: Backend) {
    let dir = tmp();
    let state = TestState::new(backend);
    let planfile = dir.path().join("p.tfplan");
    let out_arg = format!("-out={}", planfile.display());
    let out = matih(&root(), &state, &["plan", &out_arg, "-detailed-exitcode", "-refresh=false", "tenants/acme.hcl"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(planfile.is_file());
    let out = matih(&root(), &state, &["-no-color", "plan", "-input=false", "-json", "--refresh", "false", "tenants"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("-json is --format json");
    assert_eq!(v["tenants"].as_array().unwrap().len(), 3, "`tenants` is not taken as --refresh's value");
    let out = matih(&root(), &state, &["show", "-json", planfile.to_str().unwrap()]);
    assert!(serde_json::from_slice::<serde_json::Value>(&out.stdout).is_ok(), "{}", stderr(&out));

    // An option matih does not have is named as such, not as a cluster of short options.
    let out = matih(&root(), &state, &["plan", "-var-file=prod.tfvars", "tenants/acme.hcl"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--var-file"), "{}", stderr(&out));

    // apply: nothing to do once the tenant is recorded; every spelling parses.
    record(&state, &root().join("tenants/acme.hcl"));
    let args = [
        "apply",
        "-auto-approve",
        "-lock-timeout=10s",
        "-parallelism=3",
        "-refresh=false",
        "-no-color",
        "tenants/acme.hcl",
    ];
    let out = matih(&root(), &state, &args);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("No changes."), "{}", stdout(&out));
    let out = matih(&root(), &state, &["plan", "-out", planfile.to_str().unwrap(), "tenants/acme.hcl"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = matih(&root(), &state, &["apply", "-auto-approve", planfile.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));

    // -input=false never prompts: a run that would need the prompt is refused.
    let out = matih(&root(), &state, &["apply", "-input=false", "tenants/globex.hcl"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("--input=false"), "{}", stderr(&out));
    assert!(!stdout(&out).contains("Enter a value"));
    assert!(state.store().get("globex").unwrap().is_none());
}
on_both_backends!(terraform_spellings_are_accepted);

fn sha256_of(path: &Path) -> String {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(fs::read(path).unwrap());
    format!("sha256:{}", d.iter().map(|b| format!("{b:02x}")).collect::<String>())
}

/// The reviewed plan is the applied plan: every rendering of a saved plan names the SHA-256 of the
/// file, and `apply FILE --expect-digest` refuses any other file.
fn saved_plans_show_their_digest_and_apply_checks_it(backend: Backend) {
    let dir = tmp();
    let state = TestState::new(backend);
    let planfile = dir.path().join("p.tfplan");
    let file = planfile.to_str().unwrap();
    for format in ["text", "markdown", "json"] {
        let out = matih(&root(), &state, &["plan", "tenants/acme.hcl", "-out", file, "--format", format]);
        assert!(out.status.success(), "{}", stderr(&out));
        let digest = sha256_of(&planfile);
        assert!(stdout(&out).contains(&digest), "{format}: {}", stdout(&out));
        let shown = matih(&root(), &state, &["show", file, "--format", format]);
        assert!(stdout(&shown).contains(&digest), "show --format {format}: {}", stdout(&shown));
        if format == "json" {
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            assert_eq!(v["digest"], digest.as_str());
        }
    }
    let plain = matih(&root(), &state, &["plan", "tenants/acme.hcl", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&plain.stdout).unwrap();
    assert!(v.get("digest").is_none(), "a plan not saved has no digest");

    // A plan with nothing to do, so that applying it needs no provider.
    record(&state, &root().join("tenants/acme.hcl"));
    let out = matih(&root(), &state, &["plan", "tenants/acme.hcl", "-out", file]);
    assert!(out.status.success(), "{}", stderr(&out));
    let digest = sha256_of(&planfile);
    assert!(stdout(&out).contains(&format!("matih apply {file} --expect-digest {digest}")), "{}", stdout(&out));

    let other = format!("sha256:{}", "0".repeat(64));
    let out = matih(&root(), &state, &["apply", file, "--expect-digest", &other]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains(&format!("has digest {digest}, not the expected {other}")), "{}", stderr(&out));
    assert!(stderr(&out).contains("nothing was changed"));

    // Another file (an identical plan made again would be the same bytes: change the spec).
    let before = fs::read(&planfile).unwrap();
    record(&state, &root().join("tenants/globex.hcl"));
    let out = matih(&root(), &state, &["plan", "tenants/", "-out", file]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_ne!(fs::read(&planfile).unwrap(), before);
    let out = matih(&root(), &state, &["apply", file, "-expect-digest", &digest]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stderr(&out).contains("not the plan that was reviewed"), "{}", stderr(&out));

    fs::write(&planfile, &before).unwrap();
    let out = matih(
        &root(),
        &state,
        &["apply", file, "--expect-digest", &digest.to_uppercase().replace("SHA256:", "sha256:")],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains(&digest), "{}", stdout(&out));

    let out = matih(&root(), &state, &["apply", "tenants/acme.hcl", "--expect-digest", &digest]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("checks a saved plan file"), "{}", stderr(&out));
    let out = matih(&root(), &state, &["apply", file, "--expect-digest", "sha256:abc"]);
    assert_eq!(out.status.code(), Some(2), "a malformed digest is a usage error");
    assert!(stderr(&out).contains("64 hex digits"), "{}", stderr(&out));
}
on_both_backends!(saved_plans_show_their_digest_and_apply_checks_it);

fn addresses(plan_json: &serde_json::Value, tenant: usize) -> Vec<String> {
    plan_json["tenants"][tenant]["resource_changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["address"].as_str().unwrap().to_string())
        .collect()
}

/// `--target` (what it depends on comes along), `--exclude` (what depends on it goes too),
/// tenant-qualified addresses and globs over tenants; a partial plan says so.
fn targeted_plans_select_part_of_the_fleet_and_say_so(backend: Backend) {
    let state = TestState::new(backend);
    let out = matih(&root(), &state, &["plan", "tenants/", "--target", "acme/kubernetes_role_binding.tenant"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.starts_with("Partial plan (--target acme/kubernetes_role_binding.tenant)"), "{text}");
    assert!(text.contains("Plan: 4 to add, 0 to change, 0 to destroy."), "{text}");
    assert!(!text.contains("globex") && !text.contains("dns_zone"), "{text}");

    let out = matih(
        &root(),
        &state,
        &["plan", "tenants/", "-target=acme/kubernetes_role_binding.tenant", "--format", "json"],
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["tenants"].as_array().unwrap().len(), 1, "tenants with nothing selected are left out");
    let mut got = addresses(&v, 0);
    got.sort();
    let want = [
        "kubernetes_namespace.tenant",
        "kubernetes_role.tenant",
        "kubernetes_role_binding.tenant",
        "kubernetes_service_account.tenant",
    ];
    assert_eq!(got, want, "the target and what it depends on");
    let acme = compile_file(&root().join("tenants/acme.hcl")).len();
    assert_eq!(v["partial"]["target"][0], "acme/kubernetes_role_binding.tenant");
    assert_eq!(v["partial"]["left_out"], acme - 4);
    assert_eq!(v["tenants"][0]["partial"]["left_out"], acme - 4);

    // A glob over tenants.
    let out = matih(&root(), &state, &["plan", "tenants/", "--target", "*/postgresql_role.tenant", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let slugs: Vec<&str> = v["tenants"].as_array().unwrap().iter().map(|t| t["slug"].as_str().unwrap()).collect();
    assert_eq!(slugs, ["acme", "globex", "initech"]);
    assert!((0..3).all(|i| addresses(&v, i) == ["postgresql_role.tenant"]));

    // --exclude: what depends on the excluded resource is left out too.
    let out = matih(&root(), &state, &["plan", "tenants/acme.hcl", "--exclude", "postgresql_role.tenant", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let got = addresses(&v, 0);
    for gone in ["postgresql_role.tenant", "postgresql_schema.tenant", "kubernetes_deployment.query_engine"] {
        assert!(!got.contains(&gone.to_string()), "{gone} depends on the role: {got:?}");
    }
    assert!(got.contains(&"kubernetes_network_policy.default_deny_ingress".to_string()), "{got:?}");
    assert_eq!(v["partial"]["exclude"][0], "postgresql_role.tenant");

    // Unknown addresses are errors, and no plan file is written.
    let dir = tmp();
    let planfile = dir.path().join("p.tfplan");
    let out = matih(
        &root(),
        &state,
        &[
            "plan",
            "tenants/",
            "--target",
            "acme/kubernetes_deployment.query_engin",
            "--target",
            "umbrella/kubernetes_namespace.tenant",
            "-out",
            planfile.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("--target acme/kubernetes_deployment.query_engin: no such resource in the plan"), "{err}");
    assert!(err.contains("did you mean"), "{err}");
    assert!(err.contains("no tenant \"umbrella\" among the specs of this run (acme, globex, initech)"), "{err}");
    assert!(!planfile.exists());
    let out = matih(&root(), &state, &["plan", "--target", "Acme/x", "tenants/"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("[TENANT/]KIND.NAME"), "{}", stderr(&out));
}
on_both_backends!(targeted_plans_select_part_of_the_fleet_and_say_so);

/// `--replace`: a recorded resource replaced though nothing forces it, with a note.
fn replace_forces_a_replacement(backend: Backend) {
    let state = TestState::new(backend);
    record(&state, &root().join("tenants/acme.hcl"));
    let out = matih(&root(), &state, &["plan", "tenants/acme.hcl", "-replace=acme/kubernetes_service.query_engine"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("# kubernetes_service.query_engine must be replaced"), "{text}");
    assert!(text.contains("replaced on request (--replace)"), "{text}");
    assert!(text.contains("Plan: 1 to add, 0 to change, 1 to destroy."), "{text}");
    assert!(!text.contains("Partial plan"), "--replace alone plans everything");

    // A replaced role gets a new password, and the Secret holding it takes the new one (the
    // replacement rules of the diff, not a relabelled action).
    let out = matih(&root(), &state, &["plan", "tenants/acme.hcl", "--replace", "postgresql_role.tenant", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let change = |a: &str| {
        v["tenants"][0]["resource_changes"].as_array().unwrap().iter().find(|c| c["address"] == a).unwrap().clone()
    };
    let role = change("postgresql_role.tenant");
    assert_eq!(role["action"], "replace");
    assert!(role["after_unknown"].as_array().unwrap().contains(&"password".into()), "{role}");
    let secret = change("kubernetes_secret.database_credentials");
    assert_eq!(secret["action"], "update", "{secret}");
    assert_eq!(secret["notes"][0], "takes the new secret values of postgresql_role.tenant (rotated)", "{secret}");
}
on_both_backends!(replace_forces_a_replacement);

/// `matih output`: what the recorded state says of a tenant, never a password.
fn output_prints_the_recorded_outputs_and_no_secret(backend: Backend) {
    let state = TestState::new(backend);
    record(&state, &root().join("tenants/acme.hcl"));
    let out = matih(&root(), &state, &["output", "acme", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["load_balancer_ip"], "20.85.123.45", "the recorded output: {v}");
    assert_eq!(v["namespace"], "matih-acme");
    assert_eq!(v["zone"], "acme.matih.ai");
    assert_eq!(v["urls"][0], "https://acme.matih.ai");
    assert_eq!(v["database_name"], "matih_tenants");
    assert_eq!(v["database_schema"], "tenant_acme");
    assert_eq!(v["database_port"], 5432);
    let text = matih(&root(), &state, &["output", "acme"]);
    let text = stdout(&text);
    assert!(text.contains("load_balancer_ip = \"20.85.123.45\"\n"), "{text}");
    for out in [stdout(&out), text] {
        assert!(!out.contains(CLEAR_SECRET) && !out.contains("sha256:") && !out.to_lowercase().contains("password"));
    }
    let raw = matih(&root(), &state, &["output", "acme", "load_balancer_ip", "-raw"]);
    assert_eq!(stdout(&raw), "20.85.123.45\n");
    let one = matih(&root(), &state, &["output", "acme", "urls", "--json"]);
    assert!(serde_json::from_slice::<serde_json::Value>(&one.stdout).unwrap().is_array());

    let out = matih(&root(), &state, &["output", "acme", "password"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no output \"password\"; the outputs are database_host"), "{}", stderr(&out));
    let out = matih(&root(), &state, &["output", "globex"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no tenant \"globex\" in the state store"), "{}", stderr(&out));
    let out = matih(&root(), &state, &["output", "acme", "--raw"]);
    assert_eq!(out.status.code(), Some(2), "--raw needs a NAME");
}
on_both_backends!(output_prints_the_recorded_outputs_and_no_secret);

// Reads no state: runs once.
#[test]
fn completion_scripts_and_manual_pages_come_from_the_clap_definition() {
    let state = TestState::new(Backend::Sled);
    let dir = tmp();
    let out = matih(&root(), &state, &["completion", "bash"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let script = stdout(&out);
    assert!(script.contains("_matih()") && script.contains("--target") && script.contains("--expect-digest"));
    let file = dir.path().join("matih.bash");
    fs::write(&file, &script).unwrap();
    let check = std::process::Command::new("bash").arg("-n").arg(&file).output().expect("bash");
    assert!(check.status.success(), "bash -n: {}", String::from_utf8_lossy(&check.stderr));
    // Sourced in a real bash, completing `matih pl` offers `plan`.
    let probe = format!(
        "source {}; COMP_WORDS=(matih pl); COMP_CWORD=1; COMP_LINE='matih pl'; COMP_POINT=8; _matih matih pl matih; \
         printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        file.display()
    );
    let offered = std::process::Command::new("bash").args(["-c", &probe]).output().unwrap();
    assert!(String::from_utf8_lossy(&offered.stdout).lines().any(|l| l == "plan"), "{}", stdout(&offered));
    for shell in ["zsh", "fish", "powershell"] {
        let out = matih(&root(), &state, &["completion", shell]);
        assert!(out.status.success() && stdout(&out).contains("matih"), "{shell}: {}", stderr(&out));
    }
    let out = matih(&root(), &state, &["completion", "tcsh"]);
    assert_eq!(out.status.code(), Some(2));

    let out = matih(&root(), &state, &["man"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let page = stdout(&out);
    assert!(page.starts_with(".ie \\n(.g .ds Aq") || page.contains(".TH matih"), "{}", &page[..200.min(page.len())]);
    assert!(page.contains("completion") && page.contains("output"), "the commands are listed");
    let pages = dir.path().join("man1");
    let out = matih(&root(), &state, &["man", "--out-dir", pages.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    for name in ["matih.1", "matih-plan.1", "matih-apply.1", "matih-state-rm.1", "matih-output.1"] {
        assert!(pages.join(name).is_file(), "{name}");
    }
    let plan_page = fs::read_to_string(pages.join("matih-plan.1")).unwrap();
    assert!(plan_page.contains("target") && plan_page.contains("Examples:"), "{plan_page}");

    for command in [&["plan", "--help"][..], &["state", "rm", "--help"], &["output", "--help"]] {
        let out = matih(&root(), &state, command);
        assert!(stdout(&out).contains("Examples:\n  "), "{command:?}: {}", stdout(&out));
    }
}

// Reads no state: runs once.
#[test]
fn validate_json_is_shaped_like_terraforms() {
    let dir = tmp();
    fs::create_dir_all(dir.path().join("tenants")).unwrap();
    fs::write(
        dir.path().join("tenants/bad.hcl"),
        "tenant \"Bad_Slug\" {\n  id = \"not-a-uuid\"\n  tier = \"gold\"\n  region = \"eastus\"\n  admin_email = \"a@b.example\"\n}\n",
    )
    .unwrap();
    let state = TestState::new(Backend::Sled);
    let out = matih(dir.path(), &state, &["validate", "tenants", "--format", "json"]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON document on stdout");
    assert_eq!(v["valid"], false);
    let diags = v["diagnostics"].as_array().unwrap();
    assert!(diags.len() >= 3 && v["error_count"] == diags.len() && v["warning_count"] == 0, "{v}");
    let tier = diags.iter().find(|d| d["summary"].as_str().unwrap().starts_with("unknown tier \"gold\"")).unwrap();
    assert_eq!(tier["severity"], "error");
    assert_eq!(tier["range"]["filename"], "tenants/bad.hcl");
    assert_eq!(tier["range"]["start"], serde_json::json!({ "line": 3, "column": 10 }));
    assert!(stderr(&out).is_empty(), "{}", stderr(&out));

    let out = matih(&root(), &state, &["validate", "-json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v,
        serde_json::json!({ "format_version": "1.0", "valid": true, "error_count": 0, "warning_count": 0, "diagnostics": [] })
    );
}

// Reads no state it did not write: runs once.
#[test]
fn in_automation_the_next_step_hints_are_left_out() {
    let dir = tmp();
    let state = TestState::new(Backend::Sled);
    let planfile = dir.path().join("p.tfplan");
    let run = |automation: bool| {
        let mut cmd = crate::support::matih_command();
        cmd.args(["plan", "tenants/acme.hcl", "-out", planfile.to_str().unwrap()]).current_dir(root());
        state.configure(&mut cmd, &root());
        cmd.env_remove("MATIH_SCHEMAS_DIR").env("NO_COLOR", "1").env_remove("MATIH_IN_AUTOMATION");
        if automation {
            cmd.env("MATIH_IN_AUTOMATION", "1");
        }
        cmd.output().unwrap()
    };
    let out = run(false);
    assert!(stdout(&out).contains("To perform exactly these actions, run: matih apply"), "{}", stdout(&out));
    assert!(stderr(&out).contains("Note: no platform file"));
    let out = run(true);
    assert!(out.status.success());
    assert!(stdout(&out).contains("Saved the plan to:"), "{}", stdout(&out));
    assert!(!stdout(&out).contains("To perform exactly"), "{}", stdout(&out));
    assert!(!stderr(&out).contains("Note: no platform file"), "{}", stderr(&out));
}

/// The collectors' export to Tempo: `otlp_insecure` is warned about at its line by every plan,
/// validate and apply (which then stops here, having no provider); `otlp_ca_file` is rendered as a
/// ConfigMap the collector mounts, without a warning. Reads no state it did not write: runs once.
#[test]
fn the_otlp_opt_out_is_warned_about_each_time_and_a_ca_is_mounted() {
    let dir = tmp();
    let state = TestState::new(Backend::Sled);
    fs::write(dir.path().join("acme.hcl"), fs::read(root().join("tenants/acme.hcl")).unwrap()).unwrap();
    fs::write(dir.path().join("insecure.hcl"), "observability {\n  otlp_insecure = true\n}\n").unwrap();
    fs::create_dir(dir.path().join("platform")).unwrap();
    fs::copy(root().join("tests/fixtures/platform/tempo-ca.pem"), dir.path().join("platform/ca.pem")).unwrap();
    fs::write(dir.path().join("platform/ca.hcl"), "observability {\n  otlp_ca_file = \"ca.pem\"\n}\n").unwrap();
    let warning = "insecure.hcl:2:19: warning: otlp_insecure = true: each tenant's OpenTelemetry collector sends its \
                   credentials to Tempo in clear text";
    let runs: [&[&str]; 5] = [
        &["plan", "acme.hcl"],
        &["plan", "acme.hcl", "-out", "p.tfplan"],
        &["validate", "acme.hcl"],
        &["apply", "p.tfplan"],
        &["apply", "-auto-approve", "acme.hcl"],
    ];
    for args in runs {
        let out = matih(dir.path(), &state, &[&["--platform", "insecure.hcl"], args].concat());
        assert!(stderr(&out).contains(warning), "{args:?}: {}", stderr(&out));
        if args[0] == "plan" {
            assert!(out.status.success(), "{}", stderr(&out));
            assert!(stdout(&out).contains("insecure = true"), "{}", stdout(&out));
        }
    }
    // The CA, relative to the platform file: the ConfigMap, the mount and ca_file; one more resource.
    let out = matih(dir.path(), &state, &["--platform", "platform/ca.hcl", "plan", "acme.hcl"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stderr(&out).contains("warning"), "{}", stderr(&out));
    let plan = stdout(&out);
    for expected in [
        "# kubernetes_config_map.observability_ca will be created",
        "-----BEGIN CERTIFICATE-----",
        "ca_file  = \"/etc/matih/observability-ca/ca.crt\"",
        "mountPath = \"/etc/matih/observability-ca\"",
        "Plan: 85 to add, 0 to change, 0 to destroy.",
    ] {
        assert!(plan.contains(expected), "{expected} in {plan}");
    }
    assert!(!plan.contains("insecure = true"), "{plan}");
}

// The bad-input survey (README "Bad input"): state records, plan files and environment variables
// that are malformed give a clear refusal naming what is wrong, never a panic, and change nothing.

/// A record that no longer decodes (a torn write, a hand edit, a newer matih's field types): every
/// command that reads it refuses, naming the tenant, and nothing is rewritten.
fn corrupt_state_records_are_reported_and_kept(backend: Backend) {
    let state = TestState::new(backend);
    record(&state, &root().join("tenants/acme.hcl"));
    // The tenant's own record: JSON of the wrong shape.
    match backend {
        Backend::Sled => {
            let db = sled::open(&state.dir).unwrap();
            db.open_tree("tenants").unwrap().insert("acme", &br#"{"slug": 7, "resources": []}"#[..]).unwrap();
            db.flush().unwrap();
        }
        Backend::Postgres => {
            let url = state.url.as_ref().unwrap();
            common::psql(url, r#"UPDATE matih_tenants SET state = '{"slug": 7' WHERE slug = 'acme'"#);
        }
    }
    let before = records(&state);
    let commands: [&[&str]; 5] = [
        &["plan", "tenants/acme.hcl"],
        &["status", "acme"],
        &["state", "show", "acme"],
        &["output", "acme"],
        &["state", "rm", "acme", "kubernetes_namespace.tenant"],
    ];
    for args in commands {
        let out = matih(&root(), &state, args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}{err}", stdout(&out));
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(err.contains("acme") && (err.contains("corrupt") || err.contains("not valid")), "{args:?}: {err}");
    }
    assert!(records(&state) == before, "a command rewrote the unreadable state");

    // PostgreSQL keeps each resource in a row of its own: a bad row is reported with its address.
    if backend == Backend::Postgres {
        let url = state.url.as_ref().unwrap();
        let good = state.store().get("globex").unwrap();
        assert!(good.is_none());
        record(&state, &root().join("tenants/globex.hcl"));
        common::psql(
            url,
            "UPDATE matih_resources SET record = '{\"phase\": 11}' \
             WHERE slug = 'globex' AND address = 'kubernetes_namespace.tenant'",
        );
        let before = records(&state);
        let out = matih(&root(), &state, &["plan", "tenants/globex.hcl"]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains("kubernetes_namespace.tenant") && err.contains("globex"), "{err}");
        assert!(records(&state) == before);
    }
}

/// What the store records: every key and value of the sled trees (its files change on every open),
/// the rows of the PostgreSQL database.
fn records(state: &TestState) -> Vec<u8> {
    match state.backend {
        Backend::Sled => {
            let db = sled::open(&state.dir).unwrap();
            let mut out = Vec::new();
            for name in ["meta", "tenants", "history", "locks", "audit"] {
                for kv in db.open_tree(name).unwrap().iter() {
                    let (k, v) = kv.unwrap();
                    out.extend([name.as_bytes(), &k, &v, b"\n"].concat());
                }
            }
            out
        }
        Backend::Postgres => state.contents(),
    }
}
on_both_backends!(corrupt_state_records_are_reported_and_kept);

/// Plan files that are not what `plan -out` wrote: refused by `show` and `apply`, naming the file;
/// nothing is recorded. (A tampered plan and a keyed one are tested above.)
#[test]
fn malformed_plan_files_are_refused() {
    let dir = tmp();
    let state = TestState::new(Backend::Sled);
    let good = dir.path().join("good.tfplan");
    assert!(matih(&root(), &state, &["plan", "tenants/acme.hcl", "-out", good.to_str().unwrap()]).status.success());
    let text = fs::read(&good).unwrap();
    let cases: [(&str, &[u8], &str); 5] = [
        ("empty.tfplan", b"", "is not a matih plan file"),
        ("truncated.tfplan", &text[..text.len() / 2], "is not a matih plan file"),
        ("other.tfplan", br#"{"format_version": "1.1", "terraform_version": "1.9.0"}"#, "no \"format\""),
        ("binary.tfplan", &[0xff, 0xfe, 0, 1, 2], "invalid JSON"),
        ("newer.tfplan", br#"{"format":"matih-plan","format_version":"1.99","sha256":"","plan":""}"#, "version 1.99"),
    ];
    for (name, bytes, expect) in cases {
        let path = dir.path().join(name);
        fs::write(&path, bytes).unwrap();
        for args in [&["show", path.to_str().unwrap()][..], &["apply", "-auto-approve", path.to_str().unwrap()]] {
            let out = matih(&root(), &state, args);
            let err = stderr(&out);
            assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
            assert!(err.contains(name) && err.contains(expect), "{args:?}: {err}");
            assert!(!err.contains("panicked"), "{err}");
        }
    }
    let out = matih(&root(), &state, &["show", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("cannot read plan file"), "{}", stderr(&out));
    state.assert_nothing_recorded();
}

/// Environment variables that are malformed or name what cannot be read: refused before anything
/// is connected to or written, the password of a URL never echoed.
#[test]
fn a_bad_environment_is_refused_before_anything_is_written() {
    let dir = tmp();
    let state = TestState::new(Backend::Sled);
    fs::write(dir.path().join("acme.hcl"), fs::read(root().join("tenants/acme.hcl")).unwrap()).unwrap();
    fs::write(dir.path().join("pg.hcl"), "postgres {\n  host = \"127.0.0.1\"\n}\n").unwrap();
    fs::write(dir.path().join("pgstate.hcl"), "state {\n  backend = \"postgres\"\n  url_env = \"BAD_STATE_URL\"\n}\n")
        .unwrap();
    let password = "hunter22-never-shown";
    let url = |rest: &str| format!("postgresql://matih:{password}@db.example:5432/postgres{rest}");
    let pg = ["--platform", "pg.hcl", "plan", "acme.hcl"];
    // (environment, arguments, what the refusal says)
    type Case<'a> = (Vec<(&'a str, String)>, &'a [&'a str], &'a str);
    let cases: Vec<Case> = vec![
        (
            vec![("MATIH_POSTGRES_ADMIN_URL", format!("postgresql://matih:{password}@[::1"))],
            &pg,
            "not a valid connection string",
        ),
        (
            vec![("MATIH_POSTGRES_ADMIN_URL", url("?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem"))],
            &pg,
            "cannot read the root certificates in /nonexistent/ca.pem",
        ),
        (
            vec![("MATIH_POSTGRES_ADMIN_URL", url("?sslmode=verify-ca&sslrootcert=/etc/hostname"))],
            &pg,
            "holds no PEM certificate",
        ),
        (
            vec![("MATIH_POSTGRES_ADMIN_URL", url("")), ("PGSSLROOTCERT", "/nonexistent/root.crt".into())],
            &pg,
            "cannot read the root certificates in /nonexistent/root.crt",
        ),
        (
            vec![("BAD_STATE_URL", format!("postgres://matih:{password}@/x?sslmode=sometimes"))],
            &["--platform", "pgstate.hcl", "plan", "acme.hcl"],
            "state URL",
        ),
        (vec![("MATIH_PLAN_KEY", "short".into())], &["plan", "acme.hcl", "-out", "k.tfplan"], "MATIH_PLAN_KEY"),
        (vec![("MATIH_LOG_PATH", dir.path().display().to_string())], &["plan", "acme.hcl"], "MATIH_LOG_PATH"),
        (
            vec![("MATIH_STATE_DIR", dir.path().join("acme.hcl").display().to_string())],
            &["plan", "acme.hcl"],
            "is not a directory",
        ),
    ];
    for (env, args, expect) in cases {
        let mut cmd = crate::support::matih_command();
        cmd.args(args).current_dir(dir.path());
        state.configure(&mut cmd, dir.path());
        cmd.env_remove("MATIH_SCHEMAS_DIR").env("NO_COLOR", "1").env_remove("PGSSLROOTCERT");
        cmd.env_remove("MATIH_POSTGRES_ADMIN_URL").env_remove("MATIH_PLAN_KEY").env_remove("MATIH_LOG_PATH");
        for (k, v) in &env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{env:?}: {}{err}", stdout(&out));
        assert!(err.contains(expect), "{env:?}: {err}");
        assert!(!err.contains(password) && !stdout(&out).contains(password), "{env:?} echoed the password: {err}");
        assert!(!err.contains("panicked"), "{err}");
        assert!(!dir.path().join("k.tfplan").exists(), "{env:?}: a plan file was written");
    }
    state.assert_nothing_recorded();
}
