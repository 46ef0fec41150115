//! `matih apply` and `matih destroy` through the real binary: what they refuse, the confirmation
//! prompt, and a destroy against the real Kubernetes control plane.

use crate::support as common;
use crate::support::kube;

use std::io::Write;
use std::path::Path;
use std::process::{Output, Stdio};

use common::{applied_state, compile_file, root, stderr, stdout, Backend, TestState};
use kube::Kube;
use matih::state::TenantStatus;
use serde_json::json;

/// Runs matih in `dir` on `state` with `stdin` as its standard input (None: closed).
fn matih_with_stdin(dir: &Path, state: &TestState, args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = crate::support::matih_command();
    cmd.args(args).current_dir(dir).env("NO_COLOR", "1");
    state.configure(&mut cmd, dir);
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(s) = stdin {
        input.write_all(s.as_bytes()).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

fn setup(dir: &Path, state: &TestState, platform: Option<&str>) {
    std::fs::create_dir_all(dir.join("tenants")).unwrap();
    std::fs::copy(root().join("tenants/acme.hcl"), dir.join("tenants/acme.hcl")).unwrap();
    if let Some(p) = platform {
        state.write_platform(dir, p);
    }
}

fn apply_without_providers_explains_what_is_missing_and_changes_nothing(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let state = TestState::new(backend);
    setup(dir.path(), &state, None);
    let out = matih_with_stdin(dir.path(), &state, &["apply", "tenants/acme.hcl"], Some("yes\n"));
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(err.contains("no provider can reach"), "{err}");
    assert!(err.contains("add a `kubernetes` block to the platform file"), "{err}");
    assert!(!stdout(&out).contains("Enter a value"), "it fails before asking");
    state.assert_nothing_recorded();
}
on_both_backends!(apply_without_providers_explains_what_is_missing_and_changes_nothing);

/// State that records acme's Kubernetes resources only (as if the other providers' resources had
/// been removed), so a destroy needs nothing but the Kubernetes provider.
fn record_kubernetes_only(dir: &Path, state: &TestState) {
    let graph = compile_file(&dir.join("tenants/acme.hcl"));
    let mut st = applied_state(&graph);
    st.resources.retain(|a, _| a.kind.starts_with("kubernetes_"));
    state.store().put(&st, None, "test").unwrap();
}

fn destroy_asks_first_and_only_yes_goes_ahead(backend: Backend) {
    let _claim = kube::claim_tenant("acme");
    let server = Kube::start();
    let dir = tempfile::tempdir().unwrap();
    let state = TestState::new(backend);
    let platform = format!("kubernetes {{\n  api_url = \"{}\"\n  poll_interval_ms = 20\n}}\n", server.url);
    setup(dir.path(), &state, Some(&platform));
    record_kubernetes_only(dir.path(), &state);
    let serial = || state.store().get("acme").unwrap().unwrap().serial;
    let before = serial();

    let out = matih_with_stdin(dir.path(), &state, &["destroy", "tenants/acme.hcl"], Some("no\n"));
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("Do you really want to destroy these tenants?"), "{}", stdout(&out));
    assert!(stdout(&out).contains("Only 'yes' will be accepted"));
    assert!(stderr(&out).contains("Destroy cancelled; nothing was changed."), "{}", stderr(&out));
    assert_eq!(serial(), before);

    let out = matih_with_stdin(dir.path(), &state, &["destroy", "tenants/acme.hcl"], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("standard input is closed"), "{}", stderr(&out));
    assert_eq!(serial(), before);

    let out = matih_with_stdin(dir.path(), &state, &["destroy", "tenants/acme.hcl"], Some("yes\n"));
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("acme: kubernetes_namespace.tenant: Destruction complete"), "{text}");
    assert!(text.contains("Destroy complete! Resources: 0 added, 0 changed,"), "{text}");
    // The tenant's state is removed; its history says it was destroyed.
    let store = state.store();
    assert_eq!(store.get("acme").unwrap(), None);
    let last = store.history("acme").unwrap().pop().unwrap();
    assert_eq!(last.state.status, TenantStatus::Destroyed);
    assert!(last.state.resources.is_empty());
    drop(store);
    let status = matih_with_stdin(dir.path(), &state, &["status", "acme"], None);
    assert!(stdout(&status).contains("Status:     DESTROYED"), "{}", stdout(&status));
    // The namespace went last: every phase ran in reverse order.
    let ns = text.find("kubernetes_namespace.tenant: Destroying").unwrap();
    let ingress = text.find("kubernetes_ingress.tenant: Destroying").unwrap();
    assert!(ingress < ns);
}
on_both_backends!(destroy_asks_first_and_only_yes_goes_ahead);

/// A Terraform user's muscle memory against the real control plane: `plan -target=… -out=…
/// -detailed-exitcode`, then `apply -auto-approve FILE` applies that partial plan and nothing
/// else; `apply --target` on specs does the same without a file; a destroy of what was recorded
/// leaves nothing behind.
fn a_saved_partial_plan_applies_only_what_it_lists(backend: Backend) {
    let _claim = kube::claim_tenant("acme");
    let server = Kube::start();
    let dir = tempfile::tempdir().unwrap();
    let state = TestState::new(backend);
    let platform = format!("kubernetes {{\n  api_url = \"{}\"\n  poll_interval_ms = 20\n}}\n", server.url);
    setup(dir.path(), &state, Some(&platform));
    let run = |args: &[&str]| matih_with_stdin(dir.path(), &state, args, None);

    let out = run(&["plan", "-target=acme/kubernetes_role_binding.tenant", "-out=p.tfplan", "-detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(2), "{}\n{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).starts_with("Partial plan"), "{}", stdout(&out));
    let out = run(&["apply", "-auto-approve", "p.tfplan"]);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    let recorded = || {
        let st = state.store().get("acme").unwrap().unwrap();
        (st.status, st.resources.keys().map(ToString::to_string).collect::<Vec<_>>())
    };
    let (status, resources) = recorded();
    assert_eq!(
        resources,
        [
            "kubernetes_namespace.tenant",
            "kubernetes_role.tenant",
            "kubernetes_role_binding.tenant",
            "kubernetes_service_account.tenant"
        ]
    );
    assert_eq!(status, TenantStatus::Provisioning, "part of a new tenant is not a provisioned tenant");
    let got = server.kubectl(&["get", "-n", "matih-acme", "rolebinding,serviceaccount,role", "-o", "name"]);
    let names = String::from_utf8_lossy(&got.stdout).into_owned();
    assert!(names.contains("rolebinding.rbac.authorization.k8s.io/"), "{names}");
    let got = server.kubectl(&["get", "-n", "matih-acme", "resourcequota,networkpolicy", "-o", "name"]);
    assert_eq!(String::from_utf8_lossy(&got.stdout).trim(), "", "nothing outside the plan was applied");

    // On specs, with a prompt-free run: only the quota comes on top (its namespace is there). As
    // the event stream: the same versioned events the change feed holds.
    let target = ["apply", "-auto-approve", "--target", "*/kubernetes_resource_quota.tenant", "tenants/acme.hcl"];
    let out = run(&[&target[..], &["--progress", "json"]].concat());
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert_eq!(recorded().1.len(), 5);
    let events: Vec<serde_json::Value> = stdout(&out).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    let expected = ["plan", "tenant_started", "phase_started", "resource_started", "resource_finished"];
    assert_eq!(kinds, [&expected[..], &["phase_finished", "tenant_finished", "summary"]].concat());
    assert!(events.iter().all(|e| e["version"] == 1 && e.get("event").is_none()), "{events:?}");
    assert_eq!((events[0]["toAdd"].as_u64(), events[0]["toChange"].as_u64()), (Some(1), Some(0)));
    assert_eq!(events[2]["phaseName"], "CREATE_NAMESPACE");
    assert_eq!(events[4]["resource"], "kubernetes_resource_quota.tenant");
    assert_eq!(events[4]["outcome"], "ok");
    assert!(events[4]["durationMs"].is_u64() && events[5]["durationMs"].is_u64());
    assert_eq!((&events[6]["tenantStatus"], &events[6]["operations"]), (&serde_json::json!("PROVISIONING"), &1.into()));
    assert_eq!((&events[7]["outcome"], &events[7]["added"]), (&serde_json::json!("ok"), &1.into()));
    // The change feed (the file on sled, the shared table on PostgreSQL) holds the same events.
    let feed = match &state.url {
        None => std::fs::read_to_string(state.dir.join("feed/acme.jsonl")).unwrap(),
        Some(url) => common::psql(url, "SELECT event FROM matih_feed WHERE slug = 'acme' ORDER BY seq"),
    };
    let fed: Vec<serde_json::Value> = feed.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    for e in &events[2..7] {
        assert!(fed.contains(e), "{e} is in the feed");
    }
    let got = server.kubectl(&["get", "-n", "matih-acme", "resourcequota", "-o", "name"]);
    assert!(!String::from_utf8_lossy(&got.stdout).trim().is_empty());

    // A saved plan is applied whole: targeting belongs to `plan`.
    let out = run(&["plan", "-out=p.tfplan", "--target", "acme/kubernetes_resource_quota.tenant"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run(&["apply", "--target", "acme/kubernetes_namespace.tenant", "p.tfplan"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("a saved plan is applied exactly as saved"), "{}", stderr(&out));

    // A destroy reviewed and applied like any plan, logged to a file instead of the terminal.
    let out = run(&["plan", "--destroy", "-out=d.tfplan", "-detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stdout(&out).contains("Plan: 0 to add, 0 to change, 5 to destroy."), "{}", stdout(&out));
    let shown = run(&["show", "d.tfplan"]);
    assert!(stdout(&shown).contains("# kubernetes_namespace.tenant will be destroyed"), "{}", stdout(&shown));
    assert_eq!(state.store().get("acme").unwrap().unwrap().resources.len(), 5, "planning changed nothing");
    let log = dir.path().join("matih.log");
    let mut cmd = crate::support::matih_command();
    cmd.args(["apply", "d.tfplan"]).current_dir(dir.path()).env("NO_COLOR", "1").env("MATIH_LOG_PATH", &log);
    state.configure(&mut cmd, dir.path());
    let out = cmd.env_remove("MATIH_LOG").stdin(Stdio::null()).output().unwrap();
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert!(state.store().get("acme").unwrap().is_none());
    let got = server.kubectl(&["get", "namespace", "matih-acme", "-o", "name", "--ignore-not-found"]);
    assert_eq!(String::from_utf8_lossy(&got.stdout).trim(), "", "the namespace is gone");
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("tenant destroyed in"), "{logged}");
    assert!(!stderr(&out).contains("tenant destroyed in"), "logs stay off the terminal: {}", stderr(&out));
}
on_both_backends!(a_saved_partial_plan_applies_only_what_it_lists);

/// `matih import`: an object made outside matih is read and recorded, so the next plan updates it
/// instead of creating it; nothing is recorded for an object that does not exist.
fn import_records_an_existing_object_after_reading_it(backend: Backend) {
    let _claim = kube::claim_tenant("acme");
    let server = Kube::start();
    let dir = tempfile::tempdir().unwrap();
    let state = TestState::new(backend);
    let platform = format!("kubernetes {{\n  api_url = \"{}\"\n  poll_interval_ms = 20\n}}\n", server.url);
    setup(dir.path(), &state, Some(&platform));
    let run = |args: &[&str]| matih_with_stdin(dir.path(), &state, args, None);
    let made = server.kubectl(&["create", "namespace", "matih-acme"]);
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));

    let out = run(&["import", "acme/kubernetes_namespace.tenant", "acme/kubernetes_resource_quota.tenant"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("acme/kubernetes_resource_quota.tenant does not exist; nothing was imported"),
        "{}",
        stderr(&out)
    );
    assert!(state.store().get("acme").unwrap().is_none(), "nothing recorded");
    let out = run(&["import", "acme/kubernetes_nothing.tenant"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no such resource in the specs of this run"), "{}", stderr(&out));

    let out = run(&["import", "acme/kubernetes_namespace.tenant"]);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("acme/kubernetes_namespace.tenant: Import complete"), "{}", stdout(&out));
    let st = state.store().get("acme").unwrap().unwrap();
    assert_eq!(st.resources.keys().map(ToString::to_string).collect::<Vec<_>>(), ["kubernetes_namespace.tenant"]);

    let out = run(&["plan", "-target=acme/kubernetes_namespace.tenant"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("# kubernetes_namespace.tenant will be updated in place"), "{text}");
    assert!(
        text.lines().any(|l| l.trim_start().starts_with("+ \"matih.ai/tenant-slug\"") && l.ends_with("= \"acme\"")),
        "the differences are shown: {text}"
    );
    assert!(!text.contains("will be created"), "{text}");
    let out = run(&["import", "acme/kubernetes_namespace.tenant"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("already managed by matih"), "{}", stderr(&out));
}
on_both_backends!(import_records_an_existing_object_after_reading_it);

/// Adoption: a namespace made by hand is not a plain create. The plan shows it adopted (`<=`, its
/// own line in the summary, `adopt` in JSON, its own risk section in markdown) with the labels
/// matih adds, and applying that plan takes it over without deleting anything.
fn an_existing_object_is_adopted_visibly_not_created(backend: Backend) {
    let _claim = kube::claim_tenant("acme");
    let server = Kube::start();
    let dir = tempfile::tempdir().unwrap();
    let state = TestState::new(backend);
    let platform = format!("kubernetes {{\n  api_url = \"{}\"\n  poll_interval_ms = 20\n}}\n", server.url);
    setup(dir.path(), &state, Some(&platform));
    let run = |args: &[&str]| matih_with_stdin(dir.path(), &state, args, None);
    let made = server.kubectl(&["create", "namespace", "matih-acme"]);
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let target = "-target=acme/kubernetes_resource_quota.tenant";

    let out = run(&["plan", target, "-out=a.tfplan", "-detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(2), "{}\n{}", stdout(&out), stderr(&out));
    let text = stdout(&out);
    assert!(text.contains(" <= adopt (exists, not recorded: taken over)\n"), "the legend: {text}");
    assert!(
        text.contains(
            "  # kubernetes_namespace.tenant will be adopted\n  \
             # exists and matih has no record of it (written by kubectl-create): adopted, not created\n \
             <= resource \"kubernetes_namespace\" \"tenant\" {\n"
        ),
        "{text}"
    );
    assert!(
        text.lines().any(|l| l.trim_start().starts_with("+ \"matih.ai/tenant-slug\"") && l.ends_with("= \"acme\"")),
        "the differences are shown: {text}"
    );
    assert!(text.contains("# kubernetes_resource_quota.tenant will be created"), "{text}");
    assert!(text.contains("Plan: 1 to adopt, 1 to add, 0 to change, 0 to destroy."), "{text}");
    let json: serde_json::Value = serde_json::from_slice(&run(&["show", "-json", "a.tfplan"]).stdout).unwrap();
    assert_eq!(json["summary"]["adopt"], 1, "{json}");
    let ns = &json["tenants"][0]["resource_changes"][0];
    assert_eq!((ns["address"].as_str(), ns["action"].as_str()), (Some("kubernetes_namespace.tenant"), Some("adopt")));
    assert_eq!(ns["before"]["metadata"]["name"], "matih-acme", "before is what was read: {ns}");
    let md = stdout(&run(&["show", "--format", "markdown", "a.tfplan"]));
    assert!(md.contains("Existing objects taken over (adopted)"), "{md}");
    assert!(md.contains("kubernetes_namespace.tenant` will be adopted"), "{md}");

    let out = run(&["apply", "-auto-approve", "a.tfplan"]);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("kubernetes_namespace.tenant: Adoption complete"), "{}", stdout(&out));
    assert!(stdout(&out).contains("Resources: 1 adopted, 1 added, 0 changed"), "{}", stdout(&out));
    let got = server.kubectl(&["get", "namespace", "matih-acme", "-o", "jsonpath={.metadata.labels}"]);
    assert!(String::from_utf8_lossy(&got.stdout).contains("\"matih.ai/tenant-slug\":\"acme\""), "taken over");
    let out = run(&["plan", target, "-detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(0), "settled: {}", stdout(&out));
    // Without refresh nothing is read, so nothing can be adopted: the plan says create (as before).
    run(&["state", "rm", "acme", "kubernetes_namespace.tenant"]);
    let text = stdout(&run(&["plan", target, "-refresh=false"]));
    assert!(text.contains("# kubernetes_namespace.tenant will be created"), "{text}");
    let text = stdout(&run(&["plan", target]));
    assert!(text.contains("(written by kubectl-create, matih): adopted, not created"), "{text}");
}
on_both_backends!(an_existing_object_is_adopted_visibly_not_created);

/// Accepting drift (Terraform's -refresh-only): a label edited with kubectl and a quota deleted by
/// hand are planned as "record" and "forget", reviewed, saved and applied; the state then holds
/// what is live, nothing in the cluster changed, drift is quiet, and a stale saved refresh-only
/// plan is refused.
fn refresh_only_records_what_is_live_and_changes_nothing(backend: Backend) {
    let _claim = kube::claim_tenant("acme");
    let server = Kube::start();
    let dir = tempfile::tempdir().unwrap();
    let state = TestState::new(backend);
    let platform = format!("kubernetes {{\n  api_url = \"{}\"\n  poll_interval_ms = 20\n}}\n", server.url);
    setup(dir.path(), &state, Some(&platform));
    let run = |args: &[&str]| matih_with_stdin(dir.path(), &state, args, None);
    let out = run(&["apply", "-auto-approve", "-target=acme/kubernetes_resource_quota.tenant", "tenants/acme.hcl"]);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    let tier = |s: &TestState| {
        let st = s.store().get("acme").unwrap().unwrap();
        let ns = &st.resources[&"kubernetes_namespace.tenant".parse().unwrap()];
        let labels = ns.attrs["metadata"].as_map().unwrap()["labels"].clone();
        (labels.as_map().unwrap()["matih.ai/tier"].as_str().unwrap().to_string(), st.resources.len())
    };
    assert_eq!(tier(&state), ("professional".to_string(), 2));
    let label = |v: &str| {
        let out = server.kubectl(&["label", "--overwrite", "namespace", "matih-acme", &format!("matih.ai/tier={v}")]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    label("enterprise");
    assert!(server.kubectl(&["delete", "resourcequota", "--all", "-n", "matih-acme"]).status.success());

    let out = run(&["plan", "--refresh-only", "-out=r.tfplan", "-detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(2), "{}\n{}", stdout(&out), stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("# kubernetes_namespace.tenant will be updated in place\n  # changed outside matih: the live values are recorded"),
        "{text}"
    );
    assert!(text.contains("~ \"matih.ai/tier\" = \"professional\" -> \"enterprise\""), "{text}");
    assert!(text.contains("# deleted outside matih: its record is forgotten"), "{text}");
    assert!(text.contains("Plan: 1 to record, 1 to forget (refresh-only"), "{text}");
    let json: serde_json::Value = serde_json::from_slice(&run(&["show", "-json", "r.tfplan"]).stdout).unwrap();
    assert_eq!(json["refresh_only"], true, "{json}");
    assert_eq!(tier(&state).0, "professional", "planning recorded nothing");

    let out = run(&["apply", "r.tfplan"]);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("acme: recorded the live values of 1 resource(s), forgot 1"), "{}", stdout(&out));
    assert_eq!(tier(&state), ("enterprise".to_string(), 1), "the live label is recorded, the quota forgotten");
    let got = server.kubectl(&["get", "resourcequota", "-n", "matih-acme", "-o", "name"]);
    assert_eq!(String::from_utf8_lossy(&got.stdout).trim(), "", "nothing was changed in the cluster");
    // Drift finds nothing changed outside matih any more, only what the spec still wants.
    let drift: serde_json::Value = serde_json::from_slice(&run(&["drift", "--format", "json"]).stdout).unwrap();
    let s = &drift["summary"];
    assert_eq!((&s["changed"], &s["deleted"]), (&json!(0), &json!(0)), "{s}");
    let ns = drift["findings"].as_array().unwrap().iter().find(|f| f["address"] == "kubernetes_namespace.tenant");
    assert_eq!(ns.map(|f| (&f["kind"], &f["action"])), Some((&json!("pending"), &json!("update"))));
    let out = run(&["plan", "--refresh-only", "-detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(stdout(&out).contains("No changes. The state matches what is live."), "{}", stdout(&out));

    // A saved refresh-only plan is refused once the state moved on.
    label("free");
    assert!(run(&["plan", "--refresh-only", "-out=old.tfplan"]).status.success());
    let out = run(&["apply", "--refresh-only", "-auto-approve", "tenants/acme.hcl"]);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("Refresh complete!"), "{}", stdout(&out));
    assert_eq!(tier(&state).0, "free");
    let out = run(&["apply", "old.tfplan"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("changed since the plan was made"), "{}", stderr(&out));
    let out = run(&["plan", "--refresh-only", "--target=acme/kubernetes_namespace.tenant"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("--refresh-only reads every recorded resource"), "{}", stderr(&out));
}
on_both_backends!(refresh_only_records_what_is_live_and_changes_nothing);
