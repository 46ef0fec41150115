//! `matih drift` end to end: the real binary against the real Kubernetes control plane, a real
//! PostgreSQL and a real PowerDNS (the last two started here). After an apply there is no drift; then a label
//! changed with kubectl, a DNS record deleted through the PowerDNS API and the tenant schema dropped
//! in PostgreSQL are reported exactly, as JSON with exit code 2; an unreachable PowerDNS fails only
//! the DNS resources; a field a controller took over is not drift; a spec change is pending; busy
//! tenants are not read; the state store's bytes never change; `matih plan` shows the repair and
//! `matih apply` performs it. Runs on both state backends (`…::sled`, `…::postgres`).

use crate::support as common;
use crate::support::kube;
use crate::support::powerdns;

use common::pg as postgres;
use common::{text, Backend, TestState};
use kube::Kube;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use matih::provider::dns::DnsBackend;
use serde_json::Value as J;

const PARENT: &str = "matih.test";
const WEBHOOK: &str = "https://hooks.slack.example/services/T0/B0/drift-secret-webhook";

/// What one test runs against: the state, PostgreSQL, PowerDNS.
struct Env<'a> {
    state: &'a TestState,
    pg: &'a postgres::PgServer,
    dns: &'a powerdns::PowerDns,
}

fn matih(dir: &Path, args: &[&str], env: &Env) -> Output {
    let mut cmd = crate::support::matih_command();
    cmd.args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .env("MATIH_POSTGRES_ADMIN_URL", &env.pg.admin_url)
        .env("PDNS_API_KEY", &env.dns.api_key)
        .env("ACME_SLACK_WEBHOOK", WEBHOOK)
        .stdin(Stdio::null());
    env.state.configure(&mut cmd, dir);
    cmd.output().unwrap()
}

/// Runs `sql` as the admin in the shared tenant database `matih_tenants`.
fn psql(pg: &postgres::PgServer, sql: &str) -> String {
    let url = format!("{}/matih_tenants", pg.admin_url.rsplit_once('/').unwrap().0);
    common::psql(&url, sql)
}

/// Every file of the state store and its bytes, except `matih.lock` (the process lock, which
/// records the pid of whoever opened the store last).
fn state_bytes(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(state_bytes(&p));
        } else if p.file_name().unwrap() != "matih.lock" {
            out.push((p.display().to_string(), std::fs::read(&p).unwrap()));
        }
    }
    out.sort();
    out
}

/// The state store's contents: sled's files (as above); the postgres database's rows (`pg_dump`).
fn snapshot(state: &TestState) -> Vec<(String, Vec<u8>)> {
    match state.backend {
        Backend::Sled => state_bytes(&state.dir),
        Backend::Postgres => vec![("pg_dump --data-only".to_string(), state.contents())],
    }
}

/// Fails, naming the files, when the state store's contents differ from `before`.
fn assert_unchanged(state: &TestState, before: &[(String, Vec<u8>)]) {
    let now = snapshot(state);
    if now != before {
        let names =
            |v: &[(String, Vec<u8>)]| v.iter().map(|(n, b)| format!("{n} ({} bytes)", b.len())).collect::<Vec<_>>();
        // Lines (of a pg_dump) that are new, cut short: what was written.
        let lines = |v: &[(String, Vec<u8>)]| -> BTreeSet<String> {
            v.iter()
                .flat_map(|(_, b)| String::from_utf8_lossy(b).lines().map(str::to_string).collect::<Vec<_>>())
                .collect()
        };
        let new: Vec<String> =
            lines(&now).difference(&lines(before)).map(|l| l.chars().take(300).collect()).take(20).collect();
        panic!(
            "drift changed the state store:\nbefore: {:#?}\nafter: {:#?}\nnew lines: {new:#?}",
            names(before),
            names(&now)
        );
    }
}

fn platform(api_url: &str, pg: &postgres::PgServer, kube: &Kube) -> String {
    common::platform_hcl(PARENT, api_url, pg.port, &kube.url)
}

/// Runs `matih drift --format json --detailed-exitcode` (plus `extra`) and returns the exit code
/// and the report.
fn drift(dir: &Path, extra: &[&str], env: &Env) -> (i32, J, String) {
    let mut args = vec!["drift", "tenants/acme.hcl", "--format", "json", "--detailed-exitcode"];
    args.extend(extra);
    let out = matih(dir, &args, env);
    let all = text(&out);
    let doc: J = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {all}"));
    for secret in [WEBHOOK, "sha256:"] {
        assert!(!all.contains(secret), "{secret} in the drift report:\n{all}");
    }
    (out.status.code().unwrap(), doc, all)
}

/// `(address, kind)` of every finding.
fn findings(doc: &J) -> BTreeSet<(String, String)> {
    doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["address"].as_str().unwrap().to_string(), f["kind"].as_str().unwrap().to_string()))
        .collect()
}

fn set(items: &[(&str, &str)]) -> BTreeSet<(String, String)> {
    items.iter().map(|(a, k)| (a.to_string(), k.to_string())).collect()
}

fn drift_is_read_only_classifies_what_changed_and_plan_and_apply_repair_it(backend: Backend) {
    // Both variants provision the tenant acme on the same PostgreSQL and PowerDNS.
    let _one = common::one_variant_at_a_time("acme");
    let _claim = kube::claim_tenant("acme");
    let state = &TestState::new(backend);
    let kube = Kube::start();
    let pg = postgres::server();
    let dns = powerdns::server();
    let env = &Env { state, pg, dns };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let pdns = dns.parent_zone(&rt, PARENT);

    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("tenants")).unwrap();
    std::fs::copy(common::root().join("tenants/acme.hcl"), d.join("tenants/acme.hcl")).unwrap();
    state.write_platform(d, &platform(&dns.api_url, pg, &kube));
    // The same platform with PowerDNS where nothing listens.
    std::fs::write(d.join("unreachable-dns.hcl"), state.platform(&platform("http://127.0.0.1:9", pg, &kube))).unwrap();

    let out = matih(d, &["apply", "tenants/acme.hcl", "--auto-approve"], env);
    assert!(out.status.success(), "{}", text(&out));

    // Right after apply: no drift, exit 0.
    let before = snapshot(state);
    let (code, doc, all) = drift(d, &[], env);
    assert_eq!(code, 0, "{all}");
    assert_eq!(doc["format_version"], "1.0");
    assert_eq!(doc["drift"], false);
    assert_eq!(doc["tenants"][0]["status"], "in_sync");
    let resources = doc["tenants"][0]["resources_read"].as_u64().unwrap();
    assert!(resources >= 40, "{all}");
    let text_out = matih(d, &["drift", "tenants/acme.hcl"], env);
    assert!(text(&text_out).starts_with("No drift."), "{}", text(&text_out));

    // Changes outside matih: a label (kubectl), a DNS record (PowerDNS API), the schema (psql).
    assert!(kube.kubectl(&["label", "ns", "matih-acme", "matih.ai/region=westus", "--overwrite"]).status.success());
    rt.block_on(pdns.delete_rrset(&format!("acme.{PARENT}"), "api", "A")).unwrap();
    psql(pg, "DROP SCHEMA tenant_acme CASCADE");
    // A controller (an HPA) scales a Deployment: it owns spec.replicas now, which is not drift.
    let hpa = kube.kubectl(&[
        "patch",
        "deployment",
        "ai-service",
        "-n",
        "matih-acme",
        "--type=merge",
        "--field-manager=kube-controller-manager",
        "-p",
        r#"{"spec":{"replicas":5}}"#,
    ]);
    assert!(hpa.status.success(), "{}", text(&hpa));

    let (code, doc, all) = drift(d, &[], env);
    assert_eq!(code, 2, "{all}");
    assert_eq!(doc["drift"], true);
    // The schema's tables held the migration history and the seed data, and the connectivity check
    // is a query of it: they went with it.
    let expected = set(&[
        ("kubernetes_namespace.tenant", "changed"),
        ("dns_a_record.api", "deleted"),
        ("postgresql_schema.tenant", "deleted"),
        ("postgresql_migrations.tenant", "deleted"),
        ("postgresql_seed_data.tenant", "deleted"),
        ("postgresql_connectivity_check.tenant", "deleted"),
    ]);
    assert_eq!(findings(&doc), expected, "{all}");
    let ns = doc["findings"].as_array().unwrap().iter().find(|f| f["kind"] == "changed").unwrap();
    assert_eq!(ns["tenant"], "acme");
    assert_eq!(ns["phase"], "CREATE_NAMESPACE");
    assert_eq!(ns["phase_number"], 1);
    assert_eq!(
        ns["attributes"],
        serde_json::json!([{ "path": "metadata.labels[\"matih.ai/region\"]", "before": "eastus", "after": "westus" }])
    );
    assert_eq!(
        doc["ignored"],
        serde_json::json!([{
            "tenant": "acme",
            "address": "kubernetes_deployment.ai_service",
            "path": "spec.replicas",
            "manager": "kube-controller-manager"
        }]),
        "{all}"
    );
    assert_unchanged(state, &before);

    // PowerDNS unreachable: the DNS resources fail to read; everything else is still checked.
    let (code, doc, all) = drift(d, &["--platform", "unreachable-dns.hcl"], env);
    assert_eq!(code, 2, "{all}");
    let failed: BTreeSet<String> = doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["kind"] == "read_failed")
        .map(|f| f["address"].as_str().unwrap().to_string())
        .collect();
    assert!(!failed.is_empty() && failed.iter().all(|a| a.starts_with("dns_")), "{all}");
    let dns_resources =
        doc["findings"].as_array().unwrap().iter().filter(|f| f["type"].as_str().unwrap().starts_with("dns_"));
    assert!(dns_resources.clone().all(|f| f["kind"] == "read_failed" && !f["error"].as_str().unwrap().is_empty()));
    let others: BTreeSet<_> = findings(&doc).into_iter().filter(|(a, _)| !a.starts_with("dns_")).collect();
    let expected_others: BTreeSet<_> = expected.iter().filter(|(a, _)| !a.starts_with("dns_")).cloned().collect();
    assert_eq!(others, expected_others, "{all}");
    assert_unchanged(state, &before);

    // Markdown and text for people.
    let md = text(&matih(d, &["drift", "tenants/acme.hcl", "--format", "markdown"], env));
    assert!(md.starts_with("### matih drift: 6 findings in 1 tenant(s)\n"), "{md}");
    assert!(md.contains("| `acme` | 1 | 5 | 0 | 0 |"), "{md}");
    let human = text(&matih(d, &["drift", "tenants/acme.hcl"], env));
    assert!(human.contains("~ kubernetes_namespace.tenant changed outside matih"), "{human}");
    assert!(human.contains("- postgresql_schema.tenant deleted outside matih"), "{human}");

    // sled only: a running apply holds the whole store (sled opens it for one process), so every
    // tenant is busy, reported quickly, nothing hangs. A postgres store is never held whole.
    if backend == Backend::Sled {
        let store = matih::state::SledStore::open(&state.dir).unwrap();
        let started = Instant::now();
        let (code, doc, all) = drift(d, &[], env);
        assert!(started.elapsed() < Duration::from_secs(15), "{:?}", started.elapsed());
        assert_eq!(code, 0, "{all}");
        assert_eq!(doc["tenants"][0]["status"], "busy");
        assert!(doc["tenants"][0]["busy_reason"].as_str().unwrap().contains("in use by another matih process"));
        assert_eq!(doc["summary"]["busy"], 1);
        drop(store);
    }
    // A tenant whose lock is held is busy too.
    {
        let lock = matih::state::LockInfo::new("acme", "apply");
        let mut store = Some(state.store());
        store.as_ref().unwrap().lock(&lock).unwrap();
        if backend == Backend::Sled {
            store = None; // sled: drift needs the store; the lock stays recorded in it
        } // postgres: the lock lives as long as the session that took it
        let (_, doc, all) = drift(d, &[], env);
        assert_eq!(doc["tenants"][0]["status"], "busy", "{all}");
        assert!(doc["tenants"][0]["busy_reason"].as_str().unwrap().contains(&lock.id), "{all}");
        store.unwrap_or_else(|| state.store()).unlock("acme", &lock.id).unwrap();
    }
    let before = snapshot(state);

    // A spec change that was not applied is pending (on top of the drift above).
    let spec = std::fs::read_to_string(d.join("tenants/acme.hcl")).unwrap();
    std::fs::write(d.join("tenants/acme.hcl"), spec.replace("replicas = 2", "replicas = 3")).unwrap();
    let (code, doc, all) = drift(d, &[], env);
    assert_eq!(code, 2, "{all}");
    let pending: Vec<&J> = doc["findings"].as_array().unwrap().iter().filter(|f| f["kind"] == "pending").collect();
    assert_eq!(pending.len(), 1, "{all}");
    assert_eq!(pending[0]["address"], "kubernetes_deployment.ai_service");
    assert_eq!(pending[0]["action"], "update");
    assert_eq!(
        pending[0]["attributes"],
        serde_json::json!([{ "path": "spec.replicas", "before": 2, "after": 3 }]),
        "{all}"
    );
    std::fs::write(d.join("tenants/acme.hcl"), &spec).unwrap();
    assert_unchanged(state, &before);

    // `matih plan` shows the repair, `matih apply` performs it, and then nothing has drifted.
    let out = matih(d, &["plan", "tenants/acme.hcl", "--detailed-exitcode"], env);
    let plan = text(&out);
    assert_eq!(out.status.code(), Some(2), "{plan}");
    for line in [
        "# kubernetes_namespace.tenant will be updated in place",
        "# dns_a_record.api will be created",
        "# postgresql_schema.tenant will be created",
        "# postgresql_migrations.tenant will be created",
        "# postgresql_seed_data.tenant will be created",
    ] {
        assert!(plan.contains(line), "{line} not in\n{plan}");
    }
    let out = matih(d, &["apply", "tenants/acme.hcl", "--auto-approve"], env);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(psql(pg, "SELECT count(*) FROM pg_namespace WHERE nspname = 'tenant_acme'"), "1");
    let (code, doc, all) = drift(d, &[], env);
    assert_eq!(code, 0, "{all}");
    assert_eq!(doc["drift"], false);
}
on_both_backends!(drift_is_read_only_classifies_what_changed_and_plan_and_apply_repair_it);
