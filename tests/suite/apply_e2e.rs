//! The apply issue's "done when", with the real `matih` binary against the real Kubernetes control plane,
//! a real PostgreSQL and a real PowerDNS (setup as in tests/e2e.rs): a run killed with SIGKILL in
//! the middle of phase 3 converges on the next apply without duplicating or orphaning anything;
//! destroy leaves nothing behind and removes the tenant's state (history and audit log kept);
//! two concurrent applies, one refused naming the holder; saved plans applied without a prompt,
//! refused when stale, tampered with, or when a resource changed in the real world.
//!
//! PostgreSQL and PowerDNS are shared by the tests of this binary, so each test uses its own tenant
//! (acme, globex, initech) and its own proxy to the real Kubernetes control plane and state. Every test runs on
//! both state backends (`…::sled`, `…::postgres`); the two variants of a test take turns.

use crate::support as common;
use crate::support::kube;
use crate::support::powerdns;

use common::pg as postgres;
use common::{psql, text, Backend, TestState};
use kube::Kube;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use base64::Engine as _;
use matih::provider::dns::{DnsBackend, PowerDnsBackend, RecordSet};
use matih::state::TenantStatus;

const PARENT: &str = "matih.test";

fn command(dir: &Path, state: &TestState, args: &[&str]) -> Command {
    let (pg, dns) = (postgres::server(), powerdns::server());
    let mut c = crate::support::matih_command();
    c.args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .env("MATIH_POSTGRES_ADMIN_URL", &pg.admin_url)
        .env("PDNS_API_KEY", &dns.api_key)
        .env("ACME_SLACK_WEBHOOK", "https://hooks.slack.example/services/T0/B0/acme")
        .env("INITECH_SLACK_WEBHOOK", "https://hooks.slack.example/services/T0/B0/initech")
        .env_remove("MATIH_LOG")
        .stdin(Stdio::null());
    state.configure(&mut c, dir);
    c
}

fn matih(dir: &Path, state: &TestState, args: &[&str]) -> Output {
    command(dir, state, args).output().unwrap()
}

/// Starts matih with stdout piped; its lines arrive on the returned channel.
fn spawn(dir: &Path, state: &TestState, args: &[&str]) -> (Child, mpsc::Receiver<String>) {
    let mut child = command(dir, state, args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let (tx, rx) = mpsc::channel();
    let out = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

/// Waits for a line containing `needle` (panics after 120 s), returning every line seen so far.
fn wait_for(rx: &mpsc::Receiver<String>, needle: &str, seen: &mut Vec<String>) {
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                let hit = line.contains(needle);
                seen.push(line);
                if hit {
                    return;
                }
            }
            Err(e) => panic!("no line with {needle:?} ({e}); output so far:\n{}", seen.join("\n")),
        }
    }
}

/// The admin URL pointed at another database.
fn db_url(db: &str) -> String {
    let admin = &postgres::server().admin_url;
    format!("{}/{db}", &admin[..admin.rfind('/').unwrap()])
}

fn pdns() -> PowerDnsBackend {
    let dns = powerdns::server();
    PowerDnsBackend::new(&dns.api_url, "localhost", dns.api_key.clone(), vec!["ns1.matih.test.".into()]).unwrap()
}

/// The parent zone with one record of its own (created once per test binary).
fn parent_zone() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let b = powerdns::server().parent_zone(&rt, PARENT);
        let www = RecordSet { ttl: 300, records: vec!["198.51.100.7".into()] };
        rt.block_on(b.replace_rrset(PARENT, "www", "A", &www)).unwrap();
    });
}

/// A working directory with `tenant`'s spec and a platform file for the three servers.
fn workdir(kube: &Kube, state: &TestState, tenant: &str) -> tempfile::TempDir {
    parent_zone();
    let (pg, dns) = (postgres::server(), powerdns::server());
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("tenants")).unwrap();
    let spec = format!("tenants/{tenant}.hcl");
    std::fs::copy(common::root().join(&spec), dir.path().join(&spec)).unwrap();
    state.write_platform(dir.path(), &common::platform_hcl(PARENT, &dns.api_url, pg.port, &kube.url));
    dir
}

fn kube_count(kube: &Kube, kind: &str, ns: &str) -> usize {
    let out = kube.kubectl(&["get", kind, "-n", ns, "-o", "json"]);
    assert!(out.status.success(), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["items"].as_array().unwrap().len()
}

fn a_run_killed_in_phase_3_converges_on_the_next_apply_and_destroy_leaves_nothing_behind(backend: Backend) {
    let _one = common::one_variant_at_a_time("acme");
    let _claim = kube::claim_tenant("acme");
    let state = &TestState::new(backend);
    let kube = Kube::start();
    let dir = workdir(&kube, state, "acme");
    let graph = common::compile_file(&dir.path().join("tenants/acme.hcl"));
    // The objects of a kind in a namespace (the tenant's, or its edge namespace).
    let count = |kind: &str, ns: &str| {
        let in_ns =
            |r: &matih::graph::Resource| r.attrs["metadata"].get_path("namespace").and_then(|n| n.as_str()) == Some(ns);
        graph.apply_order().iter().filter(|r| r.addr.kind == kind && in_ns(r)).count()
    };

    let mut created_before_kill = Vec::new();
    // Slow API, so the kill lands while phase 3's deployments are being created.
    kube.latency(40);
    let (mut child, rx) =
        spawn(dir.path(), state, &["apply", "tenants/acme.hcl", "--auto-approve", "--parallelism", "2"]);
    let mut seen = Vec::new();
    wait_for(&rx, "acme: Phase 3/10 DEPLOY_CORE_SERVICES started", &mut seen);
    wait_for(&rx, "Creating...", &mut seen);
    std::thread::sleep(Duration::from_millis(150)); // the object is created, its readiness awaited
    child.kill().unwrap(); // SIGKILL: no cleanup of any kind
    child.wait().unwrap();
    kube.latency(0);

    {
        let store = state.store();
        let st = store.get("acme").unwrap().expect("state written before the kill");
        assert_eq!(st.status, TenantStatus::Provisioning);
        assert!(st.resources.contains_key(&"kubernetes_namespace.tenant".parse().unwrap()));
        assert!(st.resources.contains_key(&"postgresql_role.tenant".parse().unwrap()), "{:?}", st.resources.keys());
        assert!(st.resources.values().all(|r| r.phase.number() <= 3), "nothing after phase 3 was done");
        assert!(!st.in_flight.is_empty(), "the operations running at the kill are recorded as in flight");
        assert!(st.in_flight.values().all(|r| r.phase.number() == 3 && r.action == "create"), "{:?}", st.in_flight);
        // Which of them made their object before the kill (those must be adopted, not created again).
        for addr in st.in_flight.keys() {
            let name = st.in_flight[addr].attrs["metadata"].as_map().unwrap()["name"].as_str().unwrap().to_string();
            let kind = if addr.kind == "kubernetes_deployment" { "deployment" } else { "service" };
            let exists = kube.kubectl(&["get", kind, &name, "-n", "matih-acme"]).status.success();
            created_before_kill.push((addr.to_string(), exists));
        }
        match backend {
            // The dead run's lock is still there; the next run takes it over (its pid is gone).
            Backend::Sled => assert_eq!(store.locks().unwrap().len(), 1),
            // The dead run's session ended and PostgreSQL released its advisory lock with it.
            Backend::Postgres => assert_eq!(store.locks().unwrap(), []),
        }
    }
    let status = text(&matih(dir.path(), state, &["status", "acme"]));
    assert!(status.contains("In flight:"), "{status}");

    // Re-run: converges to ACTIVE, nothing duplicated, and a plan afterwards has nothing to do.
    let out = matih(dir.path(), state, &["apply", "tenants/acme.hcl", "--auto-approve"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = matih(dir.path(), state, &["plan", "tenants/acme.hcl", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let status = text(&matih(dir.path(), state, &["status", "acme"]));
    assert!(status.contains("Status:     ACTIVE") && !status.contains("In flight"), "{status}");
    for ns in ["matih-acme", "matih-acme-edge"] {
        assert_eq!(kube_count(&kube, "deployments", ns), count("kubernetes_deployment", ns), "{ns}");
        assert_eq!(kube_count(&kube, "services", ns), count("kubernetes_service", ns), "{ns}");
        assert_eq!(kube_count(&kube, "networkpolicies", ns), count("kubernetes_network_policy", ns), "{ns}");
    }
    assert_eq!(psql(&postgres::server().admin_url, "SELECT count(*) FROM pg_roles WHERE rolname = 'tenant_acme'"), "1");
    let dns = powerdns::server();
    assert_eq!(dns.dig(&format!("api.acme.{PARENT}"), "A").len(), 1);
    assert_eq!(dns.dig(&format!("acme.{PARENT}"), "NS").len(), 2);
    let secret: serde_json::Value = serde_json::from_slice(
        &kube.kubectl(&["get", "secret", "tenant-database-credentials", "-n", "matih-acme", "-o", "json"]).stdout,
    )
    .unwrap();
    let db = String::from_utf8(
        base64::engine::general_purpose::STANDARD.decode(secret["data"]["POSTGRES_DB"].as_str().unwrap()).unwrap(),
    )
    .unwrap();
    let schemas = "SELECT count(*) FROM pg_namespace WHERE nspname = 'tenant_acme'";
    assert_eq!(psql(&db_url(&db), schemas), "1");
    let history = text(&matih(dir.path(), state, &["status", "acme", "--history"]));
    for (addr, existed) in &created_before_kill {
        let outcome = if *existed { "adopted" } else { "gone" };
        assert!(
            history.lines().any(|l| l.contains(addr.as_str()) && l.contains("recover") && l.contains(outcome)),
            "{addr} should be {outcome}: {history}"
        );
    }

    // Destroy: nothing is left, the parent zone keeps its own records, the state is gone.
    let out = matih(dir.path(), state, &["destroy", "tenants/acme.hcl", "--auto-approve"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!kube.kubectl(&["get", "ns", "matih-acme"]).status.success(), "the namespace is gone");
    assert!(!kube.kubectl(&["get", "ns", "matih-acme-edge"]).status.success(), "the edge namespace is gone");
    assert_eq!(psql(&postgres::server().admin_url, "SELECT count(*) FROM pg_roles WHERE rolname = 'tenant_acme'"), "0");
    assert_eq!(psql(&db_url(&db), schemas), "0");
    assert!(dns.dig(&format!("api.acme.{PARENT}"), "A").is_empty());
    assert!(dns.dig(&format!("acme.{PARENT}"), "NS").is_empty(), "the delegation is gone");
    let rt = tokio::runtime::Runtime::new().unwrap();
    assert_eq!(rt.block_on(pdns().get_zone(&format!("acme.{PARENT}"))).unwrap(), None, "the zone is gone");
    assert_eq!(dns.dig(&format!("www.{PARENT}"), "A"), ["198.51.100.7"], "the parent's own records stay");
    let list = text(&matih(dir.path(), state, &["state", "list"]));
    assert!(!list.contains("acme"), "{list}");
    let status = matih(dir.path(), state, &["status", "acme"]);
    assert!(status.status.success() && text(&status).contains("DESTROYED"), "{}", text(&status));
    let audit = matih(dir.path(), state, &["status", "acme", "--history", "--json"]);
    let audit: Vec<serde_json::Value> = serde_json::from_slice(&audit.stdout).unwrap();
    assert!(audit.iter().any(|e| e["operation"] == "destroy" && e["outcome"] == "destroyed"), "{audit:?}");
    assert!(!serde_json::to_string(&audit).unwrap().contains("hooks.slack.example"), "no secrets in the audit log");
}
on_both_backends!(a_run_killed_in_phase_3_converges_on_the_next_apply_and_destroy_leaves_nothing_behind);

fn a_second_apply_is_refused_naming_the_holder_or_waits_with_lock_timeout(backend: Backend) {
    let _one = common::one_variant_at_a_time("globex");
    let _claim = kube::claim_tenant("globex");
    let state = &TestState::new(backend);
    let kube = Kube::start();
    let dir = workdir(&kube, state, "globex");
    kube.latency(30);
    let (mut first, rx) = spawn(dir.path(), state, &["apply", "tenants/globex.hcl", "--auto-approve"]);
    let mut seen = Vec::new();
    wait_for(&rx, "globex: Phase 2/10 SETUP_DATABASE started", &mut seen);

    let out = matih(dir.path(), state, &["apply", "tenants/globex.hcl", "--auto-approve"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("tenant \"globex\" is locked by"), "{err}");
    assert!(err.contains(&format!("pid {}", first.id())), "names the holder's pid: {err}");
    assert!(err.contains("apply on"), "{err}");
    assert!(err.contains("nothing was changed"), "{err}");

    // With --lock-timeout the second run waits for the first, then finds nothing left to do.
    let out = matih(dir.path(), state, &["apply", "tenants/globex.hcl", "--auto-approve", "--lock-timeout", "3m"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("No changes."), "{}", text(&out));
    let status = first.wait().unwrap();
    assert!(status.success());
    assert!(text(&matih(dir.path(), state, &["status", "globex"])).contains("ACTIVE"));
    let out = matih(dir.path(), state, &["destroy", "tenants/globex.hcl", "--auto-approve"]);
    assert!(out.status.success(), "{}", text(&out));
}
on_both_backends!(a_second_apply_is_refused_naming_the_holder_or_waits_with_lock_timeout);

fn saved_plans_apply_without_a_prompt_and_are_refused_when_stale_tampered_or_overtaken(backend: Backend) {
    let _one = common::one_variant_at_a_time("initech");
    let _claim = kube::claim_tenant("initech");
    let state = &TestState::new(backend);
    let kube = Kube::start();
    let dir = workdir(&kube, state, "initech");
    let d = dir.path();
    let spec = d.join("tenants/initech.hcl");
    let plan = |out: &str| {
        let o = matih(d, state, &["plan", "tenants/initech.hcl", "-out", out]);
        assert!(o.status.success(), "{}", text(&o));
    };

    // Applied exactly, with stdin closed: no prompt.
    plan("p1");
    let out = matih(d, state, &["apply", "p1"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!text(&out).contains("Enter a value"), "{}", text(&out));
    assert!(text(&matih(d, state, &["status", "initech"])).contains("ACTIVE"));

    // Stale: two plans made from the same state; once one is applied, the other is refused even
    // though the resource it changes is untouched in the real world. (Each is applied with the
    // spec it was made from: a plan that is not what the spec compiles to now is refused for that
    // already, tests/cli.rs.)
    let original = std::fs::read_to_string(&spec).unwrap();
    let services = |query: u32, bi: u32| {
        let block = "query_engine {\n      replicas = 3\n    }\n    bi_service {\n      replicas = 2";
        assert!(original.contains(block));
        let now =
            format!("query_engine {{\n      replicas = {query}\n    }}\n    bi_service {{\n      replicas = {bi}");
        std::fs::write(&spec, original.replace(block, &now)).unwrap();
    };
    services(3, 3);
    plan("p2");
    services(4, 2);
    plan("p3");
    services(3, 3);
    let out = matih(d, state, &["apply", "p2"]);
    assert!(out.status.success(), "{}", text(&out));
    services(4, 2);
    let out = matih(d, state, &["apply", "p3"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("state of tenant \"initech\" changed since the plan was made"), "{}", text(&out));

    // Tampered: one value inside the sealed plan changed.
    let sealed = std::fs::read_to_string(d.join("p3")).unwrap();
    let tampered = sealed.replacen("\\\"replicas\\\":4", "\\\"replicas\\\":9", 1);
    assert_ne!(sealed, tampered, "the edit applied");
    std::fs::write(d.join("p3-tampered"), tampered).unwrap();
    let out = matih(d, state, &["apply", "p3-tampered"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("has been modified since it was written"), "{}", text(&out));

    services(4, 3);
    plan("p4");
    // Overtaken by the real world: the deployment the plan changes was scaled by hand.
    let deployments: serde_json::Value =
        serde_json::from_slice(&kube.kubectl(&["get", "deployments", "-n", "matih-initech", "-o", "json"]).stdout)
            .unwrap();
    let query = deployments["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["metadata"]["name"].as_str().unwrap().to_string())
        .find(|n| n.contains("query"))
        .expect("a query-engine deployment");
    let patch = r#"{"spec":{"replicas":7}}"#;
    let scaled = kube.kubectl(&["patch", "deployment", &query, "-n", "matih-initech", "--type=merge", "-p", patch]);
    assert!(scaled.status.success(), "{}", text(&scaled));
    let out = matih(d, state, &["apply", "p4"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("changed in the real world since the plan was made"), "{}", text(&out));
    let st = state.store().get("initech").unwrap().unwrap();
    assert_eq!(st.status, TenantStatus::Active, "nothing was applied");
    drop(st);

    // protect_database: destroy is refused at the flag's line unless --allow-data-loss.
    let protected =
        std::fs::read_to_string(&spec).unwrap().replace("  display_name", "  protect_database = true\n  display_name");
    std::fs::write(&spec, protected).unwrap();
    let out = matih(d, state, &["destroy", "tenants/initech.hcl", "--auto-approve"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("tenants/initech.hcl:7:22: tenant \"initech\" has protect_database = true"), "{err}");
    assert!(err.contains("delete postgresql_database.tenant"), "{err}");
    assert!(text(&matih(d, state, &["status", "initech"])).contains("ACTIVE"), "nothing was destroyed");
    let out = matih(d, state, &["destroy", "tenants/initech.hcl", "--auto-approve", "--allow-data-loss"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        psql(&postgres::server().admin_url, "SELECT count(*) FROM pg_database WHERE datname LIKE '%initech%'"),
        "0"
    );
}
on_both_backends!(saved_plans_apply_without_a_prompt_and_are_refused_when_stale_tampered_or_overtaken);
