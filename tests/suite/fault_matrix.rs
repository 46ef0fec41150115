//! The fault matrix (issue 19, item 2): for each of the ten phases, one operation in the middle of
//! the phase fails, under `--on-failure rollback` and under `--on-failure halt`, through the real
//! `matih` binary against the real Kubernetes control plane, PostgreSQL and PowerDNS.
//!
//! The faults: Kubernetes answers an error (403, 409, 422, 429 or 500) or drops the connection,
//! through this test's fault proxy (`controlplane/testcloud`), for the server-side apply of one
//! object; PostgreSQL kills the session (`pg_terminate_backend`) of the migrations every time it
//! waits for its migrator's login lock, which the test holds (the tenant's own lock: no other test
//! is touched); PowerDNS answers 500 for one record set's change, through a loopback proxy in front
//! of its API (`support::http_fault`, a stand-in: PowerDNS cannot be told to fail one request).
//!
//! Each case has a tenant of its own (`fx{phase}r`, `fx{phase}h`). It is first applied up to the
//! phase before the faulty one (`--target` on the earlier phases' resources), then the world is
//! read: every object of the tenant's namespaces and its cluster-scoped objects (`kubectl get -o
//! json`), its roles, rights, schema, tables and their rows (`psql` on the catalogs), its DNS zone
//! and its delegation in the parent zone (PowerDNS's API). Then the faulty apply, and checks:
//! - the run fails, and the tenant is FAILED naming the phase and the resource (output, state,
//!   `matih status`);
//! - rollback: the world is exactly as it was before the phase; halt: nothing was rolled back, what
//!   the phase recorded is still there and unchanged (the plan reads it back as no-op);
//! - the objects of the earlier phases are untouched (same uid, same content; only what the server
//!   changes by itself is left out: resourceVersion, managedFields timestamps, quota usage);
//! - the next apply resumes at that phase (no earlier phase runs) and reaches ACTIVE, leaving the
//!   earlier phases untouched again;
//! - the plan after it is a no-op.
//!
//! The cases run concurrently (a few at a time); the results table is printed at the end (see it
//! with `--nocapture`), and the test fails naming every check that did not hold.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{json, Value as Json};
use sha2::{Digest, Sha256};

use crate::support as common;
use crate::support::http_fault::HttpFaultProxy;
use crate::support::kube::{self, Kube};
use crate::support::pg as postgres;
use crate::support::powerdns;
use common::{text, Backend, TestState};
use matih::phase::Phase;
use matih::state::{PhaseState, TenantStatus};

const PARENT: &str = "matih.test";

/// Cases run at once: the shared control plane and the two cores of CI set the bound (a case
/// spends much of its time waiting: readiness, the engine's backoff between attempts).
const CONCURRENT_CASES: usize = 6;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Rollback,
    Halt,
}

impl Mode {
    fn arg(self) -> &'static str {
        match self {
            Mode::Rollback => "rollback",
            Mode::Halt => "halt",
        }
    }
}

/// What goes wrong.
#[derive(Clone, Copy, Debug)]
enum Fault {
    /// Every server-side apply of one object (resource, name; in the edge namespace or the
    /// tenant's) is answered with `status` by the fault proxy (a 429 or 5xx is retried by the
    /// engine, then fails).
    KubeStatus { resource: &'static str, name: &'static str, edge: bool, status: u16 },
    /// Every server-side apply of one object has its connection closed without an answer.
    KubeDrop { resource: &'static str, name: &'static str, edge: bool },
    /// The session of the migrations is killed while it waits for the migrator's login lock.
    PgKilledSession,
    /// PowerDNS answers 500 to every change of the record set `NAME.{zone}`.
    Dns500 { record: &'static str },
}

impl Fault {
    /// Whether the engine retries the error (429, 5xx, a lost connection or session).
    fn transient(self) -> bool {
        match self {
            Fault::KubeStatus { status, .. } => status == 429 || status >= 500,
            Fault::KubeDrop { .. } | Fault::PgKilledSession | Fault::Dns500 { .. } => true,
        }
    }

    fn describe(self) -> String {
        match self {
            Fault::KubeStatus { status, .. } => {
                let reason = match status {
                    403 => "Forbidden",
                    409 => "Conflict",
                    422 => "Invalid",
                    429 => "TooManyRequests",
                    500 => "InternalError",
                    _ => "",
                };
                format!("k8s {status} {reason}")
            }
            Fault::KubeDrop { .. } => "k8s connection dropped".into(),
            Fault::PgKilledSession => "pg session killed".into(),
            Fault::Dns500 { .. } => "PowerDNS 500".into(),
        }
    }
}

/// One row of the matrix: the phase and the operation that fails in its middle (it has
/// dependencies of its own phase done before it, or dependents of its phase waiting on it).
struct Case {
    phase: u8,
    address: &'static str,
    fault: Fault,
}

const CASES: [Case; 10] = [
    // After the namespace; before the RoleBinding that needs it.
    Case {
        phase: 1,
        address: "kubernetes_role.tenant",
        fault: Fault::KubeStatus { resource: "roles", name: "tenant-role", edge: false, status: 403 },
    },
    // After the role and the schema; before the seed data and the connectivity check.
    Case { phase: 2, address: "postgresql_migrations.tenant", fault: Fault::PgKilledSession },
    // Beside the other two Deployments; before the Services.
    Case {
        phase: 3,
        address: "kubernetes_deployment.catalog_service",
        fault: Fault::KubeStatus { resource: "deployments", name: "catalog-service", edge: false, status: 500 },
    },
    // The fourth of thirteen policies, in the first wave of ten.
    Case {
        phase: 4,
        address: "kubernetes_network_policy.allow_database_egress",
        fault: Fault::KubeStatus {
            resource: "networkpolicies",
            name: "allow-database-egress",
            edge: false,
            status: 422,
        },
    },
    // Beside three other Deployments; before bi-service and render-service that need it.
    Case {
        phase: 5,
        address: "kubernetes_deployment.semantic_layer",
        fault: Fault::KubeDrop { resource: "deployments", name: "semantic-layer", edge: false },
    },
    // After the edge namespace, its Role and ServiceAccount; before the controller's Deployment.
    Case {
        phase: 6,
        address: "kubernetes_role_binding.ingress_controller",
        fault: Fault::KubeStatus { resource: "rolebindings", name: "ingress-nginx", edge: true, status: 403 },
    },
    // After the zone; beside the delegation and the other records.
    Case { phase: 7, address: "dns_a_record.api", fault: Fault::Dns500 { record: "api" } },
    // Beside the Certificate and the other edge Service; before the Ingress.
    Case {
        phase: 8,
        address: "kubernetes_service.edge_bi_workbench",
        fault: Fault::KubeStatus { resource: "services", name: "bi-workbench", edge: true, status: 409 },
    },
    // After Prometheus's Role and ServiceAccount; before Prometheus.
    Case {
        phase: 9,
        address: "kubernetes_role_binding.prometheus",
        fault: Fault::KubeStatus { resource: "rolebindings", name: "prometheus", edge: false, status: 429 },
    },
    // After the credentials Secret; before the pipeline check Job.
    Case {
        phase: 10,
        address: "kubernetes_open_telemetry_collector.tenant",
        fault: Fault::KubeStatus { resource: "opentelemetrycollectors", name: "tenant", edge: false, status: 403 },
    },
];

/// A check's outcome: not reached (an earlier step failed), held, or did not.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Check {
    #[default]
    NotReached,
    Yes,
    No,
}

impl Check {
    fn of(ok: bool) -> Check {
        if ok {
            Check::Yes
        } else {
            Check::No
        }
    }
    fn show(self) -> &'static str {
        match self {
            Check::NotReached => "-",
            Check::Yes => "yes",
            Check::No => "NO",
        }
    }
}

/// One case's results.
#[derive(Default)]
struct Row {
    /// How many times the fault fired (once per attempt of the operation).
    attempts: usize,
    status_named: Check,
    /// Rollback: the world is as before the phase. Halt: the phase's objects are kept as recorded.
    phase_left_right: Check,
    earlier_untouched: Check,
    resumed_active: Check,
    plan_noop: Check,
    problems: Vec<String>,
}

impl Row {
    fn check(&mut self, ok: bool, what: impl FnOnce() -> String) -> Check {
        if !ok {
            self.problems.push(what());
        }
        Check::of(ok)
    }
}

#[test]
fn every_phase_fails_in_its_middle_rolls_back_or_halts_and_resumes_to_active() {
    let (pg, dns) = (postgres::server(), powerdns::server());
    dns.parent_zone(&tokio::runtime::Runtime::new().unwrap(), PARENT);
    // The later phases first: they take longest (everything before them is applied first).
    let jobs: Vec<(usize, Mode)> =
        (0..CASES.len()).rev().flat_map(|i| [(i, Mode::Rollback), (i, Mode::Halt)]).collect();
    let next = AtomicUsize::new(0);
    let results: Mutex<BTreeMap<(usize, u8), Row>> = Mutex::new(BTreeMap::new());
    let started = std::time::Instant::now();
    std::thread::scope(|s| {
        for _ in 0..CONCURRENT_CASES {
            s.spawn(|| loop {
                let n = next.fetch_add(1, Ordering::SeqCst);
                let Some(&(i, mode)) = jobs.get(n) else { return };
                let row = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_case(&CASES[i], mode, pg, dns)))
                    .unwrap_or_else(|panic| {
                        let msg = panic
                            .downcast_ref::<String>()
                            .cloned()
                            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                            .unwrap_or_default();
                        Row { problems: vec![format!("the case panicked: {msg}")], ..Row::default() }
                    });
                results.lock().unwrap().insert((i, mode as u8), row);
            });
        }
    });
    let results = results.into_inner().unwrap();
    let table = render_table(&results);
    println!("{table}\n{} cases in {:.0} s", results.len(), started.elapsed().as_secs_f64());
    let problems: Vec<String> = results
        .iter()
        .flat_map(|((i, mode), row)| {
            let name = format!("phase {} ({})", CASES[*i].phase, if *mode == 0 { "rollback" } else { "halt" });
            row.problems.iter().map(move |p| format!("{name}: {p}"))
        })
        .collect();
    assert!(problems.is_empty(), "{table}\n{}", problems.join("\n\n"));
}

fn render_table(results: &BTreeMap<(usize, u8), Row>) -> String {
    let mut out = String::from(
        "| phase | failed operation | fault | mode | FAILED names phase + resource | rollback exact / halt kept | earlier phases untouched | resumed to ACTIVE | plan after no-op |\n\
         |---|---|---|---|---|---|---|---|---|\n",
    );
    for ((i, mode), row) in results {
        let case = &CASES[*i];
        let phase = Phase::ALL[case.phase as usize - 1];
        out.push_str(&format!(
            "| {} {} | `{}` | {}, {} attempt(s) | {} | {} | {} | {} | {} | {} |\n",
            case.phase,
            phase.name(),
            case.address,
            case.fault.describe(),
            row.attempts,
            if *mode == 0 { "rollback" } else { "halt" },
            row.status_named.show(),
            row.phase_left_right.show(),
            row.earlier_untouched.show(),
            row.resumed_active.show(),
            row.plan_noop.show(),
        ));
    }
    out
}

/// One tenant's workspace: its spec, platform file, state and proxies.
struct Workspace {
    slug: String,
    dir: tempfile::TempDir,
    state: TestState,
    kube: Kube,
    dns_proxy: Option<HttpFaultProxy>,
    pg: &'static postgres::PgServer,
    dns: &'static powerdns::PowerDns,
}

impl Workspace {
    fn spec(&self) -> PathBuf {
        self.dir.path().join(format!("tenants/{}.hcl", self.slug))
    }

    fn matih(&self, args: &[&str]) -> Output {
        let mut cmd = common::matih_command();
        cmd.args(args)
            .current_dir(self.dir.path())
            .env("NO_COLOR", "1")
            .env("MATIH_POSTGRES_ADMIN_URL", &self.pg.admin_url)
            .env("PDNS_API_KEY", &self.dns.api_key)
            .env_remove("MATIH_LOG")
            .stdin(Stdio::null());
        self.state.configure(&mut cmd, self.dir.path());
        cmd.output().expect("run matih")
    }

    fn spec_arg(&self) -> String {
        format!("tenants/{}.hcl", self.slug)
    }

    /// The tenant's state as recorded (the sled store is opened only while nothing runs).
    fn recorded(&self) -> matih::state::TenantState {
        self.state.store().get(&self.slug).unwrap().expect("the tenant's state")
    }
}

fn run_case(case: &Case, mode: Mode, pg: &'static postgres::PgServer, dns: &'static powerdns::PowerDns) -> Row {
    let slug = format!("fx{}{}", case.phase, if mode == Mode::Rollback { "r" } else { "h" });
    let _claim = kube::claim_tenant(&slug);
    let ws = workspace(&slug, case, pg, dns);
    let mut row = Row::default();

    // The phases before this one, applied (a partial plan: the tenant stays PROVISIONING).
    let graph = common::compile_file(&ws.spec());
    let earlier: Vec<String> =
        graph.apply_order().into_iter().filter(|r| r.phase.number() < case.phase).map(|r| r.addr.to_string()).collect();
    if !earlier.is_empty() {
        let spec = ws.spec_arg();
        let mut args = vec!["apply", spec.as_str(), "--auto-approve"];
        for a in &earlier {
            args.extend(["--target", a.as_str()]);
        }
        let out = ws.matih(&args);
        assert!(out.status.success(), "applying the phases before phase {}: {}", case.phase, text(&out));
    }
    let before = snapshot(&ws);
    check_failed_run(&ws, case, mode, &before, &earlier, &mut row);
    check_resumed(&ws, case, &before, &mut row);
    row
}

/// A workspace for tenant `slug` (free tier): spec, platform file (PowerDNS behind a fault proxy
/// for the DNS case), sled state, a Kubernetes proxy of its own.
fn workspace(slug: &str, case: &Case, pg: &'static postgres::PgServer, dns: &'static powerdns::PowerDns) -> Workspace {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("tenants")).unwrap();
    let dns_proxy = matches!(case.fault, Fault::Dns500 { .. })
        .then(|| HttpFaultProxy::start(dns.api_url.strip_prefix("http://").unwrap()));
    let ws = Workspace {
        slug: slug.to_string(),
        dir,
        state: TestState::new(Backend::Sled),
        kube: Kube::start(),
        dns_proxy,
        pg,
        dns,
    };
    std::fs::write(
        ws.spec(),
        format!(
            "tenant \"{slug}\" {{\n  id           = \"{}\"\n  tier         = \"free\"\n  region       = \"westeurope\"\n  \
             admin_email  = \"it@{slug}.example\"\n  display_name = \"Fault matrix {slug}\"\n\n  monitoring {{\n    \
             notify_email = [\"it@{slug}.example\"]\n  }}\n}}\n",
            uuid::Uuid::new_v4()
        ),
    )
    .unwrap();
    let api_url = ws.dns_proxy.as_ref().map_or(dns.api_url.as_str(), |p| p.url.as_str());
    ws.state.write_platform(ws.dir.path(), &common::platform_hcl(PARENT, api_url, pg.port, &ws.kube.url));
    ws
}

/// The apply with the fault in place, and what it must leave: FAILED naming the phase and the
/// resource, each attempt failed once, the world as before the phase (rollback) or the phase as
/// recorded (halt), the earlier phases untouched.
fn check_failed_run(ws: &Workspace, case: &Case, mode: Mode, before: &World, earlier: &[String], row: &mut Row) {
    let phase = Phase::ALL[case.phase as usize - 1];
    let (out, fired) = with_fault(ws, case.fault, || {
        ws.matih(&["apply", &ws.spec_arg(), "--auto-approve", "--on-failure", mode.arg()])
    });
    // A transient fault is retried by the engine, and only by it: once per attempt (the CLI's
    // default, 5); a permanent one is not retried.
    let attempts = if case.fault.transient() { matih::apply::ApplyOptions::default().max_attempts as usize } else { 1 };
    row.attempts = fired;
    row.check(fired == attempts, || format!("the fault fired {fired} times, not once per attempt ({attempts})"));
    let log = text(&out);
    let named = format!("phase {}/10 {}", phase.number(), phase.name());
    let st = ws.recorded();
    let status = text(&ws.matih(&["status", &ws.slug]));
    row.status_named = row.check(
        !out.status.success()
            && log.contains(&named)
            && log.contains(case.address)
            && st.status == TenantStatus::Failed
            && st.current_phase == Some(phase)
            && st.provisioning_error.as_deref().is_some_and(|e| e.contains(&named) && e.contains(case.address))
            && status.contains("FAILED")
            && status.contains(&named)
            && status.contains(case.address),
        || {
            format!(
                "the failed run does not name {named} and {}: exit {:?}, state {:?} {:?} {:?}\n{log}\n{status}",
                case.address,
                out.status.code(),
                st.status,
                st.current_phase,
                st.provisioning_error
            )
        },
    );
    let in_phase: Vec<String> =
        st.resources.iter().filter(|(_, r)| r.phase == phase).map(|(a, _)| a.to_string()).collect();
    let phase_state = st.phases.get(&phase).map(|p| p.state);
    let after = snapshot(ws);
    let touched = diff(before, &after, false);
    row.earlier_untouched = row.check(touched.is_empty(), || {
        format!("the failed run changed what the earlier phases made:\n{}", touched.join("\n"))
    });
    row.phase_left_right = match mode {
        Mode::Rollback => {
            let changes = diff(before, &after, true);
            let rolled_back = phase_state == Some(PhaseState::RolledBack) && log.contains("rolled back");
            row.check(changes.is_empty() && in_phase.is_empty() && rolled_back, || {
                format!(
                    "the rollback did not leave the world as it was before {named} (still recorded: {in_phase:?}, \
                     phase {phase_state:?}):\n{}\n{log}",
                    changes.join("\n")
                )
            })
        }
        Mode::Halt => {
            // Nothing rolled back: what the phase recorded is still there, exactly as recorded
            // (the plan reads it back as no-op), and the failed operation is still to do.
            let plan = plan_actions(ws);
            let kept = in_phase.iter().all(|a| plan.get(a).map(String::as_str) == Some("no-op"));
            // Still to do: a create, or an adoption where the provider reads something of it
            // back already (a phase 2 object over the halted schema), which applies it too.
            let failed_todo = matches!(plan.get(case.address).map(String::as_str), Some("create" | "adopt"));
            let earlier_noop = earlier.iter().all(|a| plan.get(a).map(String::as_str) == Some("no-op"));
            let grown = after != *before || in_phase.is_empty();
            let halted = phase_state == Some(PhaseState::Halted) && !log.contains("rolled back");
            row.check(kept && failed_todo && earlier_noop && grown && halted, || {
                format!(
                    "the halted phase was not left as it was: recorded {in_phase:?}, phase {phase_state:?}, \
                     plan {plan:?}\n{log}"
                )
            })
        }
    };
}

/// The next apply resumes at the failed phase and reaches ACTIVE, leaving the earlier phases
/// untouched; the plan after it has nothing to do.
fn check_resumed(ws: &Workspace, case: &Case, before: &World, row: &mut Row) {
    let out = ws.matih(&["apply", &ws.spec_arg(), "--auto-approve"]);
    let log = text(&out);
    let ran: Vec<u8> = Phase::ALL
        .iter()
        .filter(|p| log.contains(&format!("Phase {}/10 {} complete", p.number(), p.name())))
        .map(|p| p.number())
        .collect();
    let st = ws.recorded();
    let resumed = out.status.success()
        && st.status == TenantStatus::Active
        && ran.first() == Some(&case.phase)
        && ran.last() == Some(&10);
    row.resumed_active = row.check(resumed, || {
        format!(
            "the next apply did not resume at phase {} and reach ACTIVE (phases run: {ran:?}, {:?}):\n{log}",
            case.phase, st.status
        )
    });
    let touched = diff(before, &snapshot(ws), false);
    if row.earlier_untouched == Check::Yes {
        row.earlier_untouched = row.check(touched.is_empty(), || {
            format!("the resumed apply changed what the earlier phases made:\n{}", touched.join("\n"))
        });
    }
    let out = ws.matih(&["plan", &ws.spec_arg(), "--detailed-exitcode"]);
    row.plan_noop = row.check(out.status.code() == Some(0) && text(&out).contains("No changes."), || {
        format!("the plan after the resumed apply is not a no-op:\n{}", text(&out))
    });
}

/// Runs `apply` with `fault` in place, and takes it away again. Returns the apply's output and
/// how many times the fault fired (panics when it never did).
fn with_fault(ws: &Workspace, fault: Fault, apply: impl FnOnce() -> Output) -> (Output, usize) {
    let (ns, edge) = (format!("matih-{}", ws.slug), format!("matih-{}-edge", ws.slug));
    match fault {
        Fault::KubeStatus { resource, name, edge: in_edge, status } => {
            let namespace = if in_edge { &edge } else { &ns };
            ws.kube.admin(
                "POST",
                "/_admin/faults",
                json!({"verb": "apply", "resource": resource, "namespace": namespace, "name": name,
                       "times": 0, "status": status, "retryAfterSeconds": 0,
                       "message": format!("injected fault: {status} for {resource}/{name}")}),
            );
            let out = apply();
            let fired = ws.kube.admin("GET", "/_admin/faults", json!({}))[0]["fired"].as_u64().unwrap_or(0);
            ws.kube.admin("DELETE", "/_admin/faults", json!({}));
            assert!(fired > 0, "the fault on {resource}/{name} never fired:\n{}", text(&out));
            (out, fired as usize)
        }
        Fault::KubeDrop { resource, name, edge: in_edge } => {
            let namespace = if in_edge { &edge } else { &ns };
            ws.kube.admin(
                "POST",
                "/_admin/faults",
                json!({"verb": "apply", "resource": resource, "namespace": namespace, "name": name,
                       "times": 0, "drop": true}),
            );
            let out = apply();
            let fired = ws.kube.admin("GET", "/_admin/faults", json!({}))[0]["fired"].as_u64().unwrap_or(0);
            ws.kube.admin("DELETE", "/_admin/faults", json!({}));
            assert!(fired > 0, "the fault on {resource}/{name} never fired:\n{}", text(&out));
            (out, fired as usize)
        }
        Fault::Dns500 { record } => {
            let proxy = ws.dns_proxy.as_ref().expect("the DNS cases have a proxy");
            let name = format!("\"{record}.{}.{PARENT}.\"", ws.slug);
            proxy.fail("PATCH", &[&name, "REPLACE"]);
            let out = apply();
            proxy.clear();
            assert!(proxy.fired() > 0, "PowerDNS's fault never fired:\n{}", text(&out));
            (out, proxy.fired())
        }
        Fault::PgKilledSession => {
            let killed = Arc::new(AtomicUsize::new(0));
            let done = Arc::new(AtomicBool::new(false));
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let role = format!("tenant_{}", ws.slug);
            let (holder, holder_pid) = rt.block_on(hold_migrator_lock(&ws.pg.admin_url, &role));
            let killer = {
                let (url, killed, done) = (ws.pg.admin_url.clone(), Arc::clone(&killed), Arc::clone(&done));
                std::thread::spawn(move || kill_waiters(&url, holder_pid, &killed, &done))
            };
            let out = apply();
            done.store(true, Ordering::SeqCst);
            killer.join().unwrap();
            drop(holder);
            let killed = killed.load(Ordering::SeqCst);
            assert!(killed > 0, "no session waiting for the migrator's lock was killed:\n{}", text(&out));
            (out, killed)
        }
    }
}

/// A session holding the advisory lock that serializes the logins of `role`'s migrator (the key
/// is derived as `provider::postgres::session` derives it), and its backend pid. The migrations
/// wait for it when they log in.
async fn hold_migrator_lock(admin_url: &str, role: &str) -> (tokio_postgres::Client, i32) {
    let (client, connection) = tokio_postgres::connect(admin_url, tokio_postgres::NoTls).await.unwrap();
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(connection)
    });
    let key = format!("matih migrator login mig_{role}");
    let row = client
        .query_one(
            "SELECT pg_catalog.pg_advisory_lock(('x' || substr(encode(sha256(convert_to($1, 'UTF8')), 'hex'), 1, 16))::bit(64)::bigint), \
             pg_catalog.pg_backend_pid()",
            &[&key],
        )
        .await
        .unwrap();
    (client, row.get(1))
}

/// Until `done`, kills every session blocked by the backend `holder` (the killed session's
/// operation fails with "terminating connection due to administrator command", which the engine
/// retries, and which is killed again, until its attempts are used up).
fn kill_waiters(admin_url: &str, holder: i32, killed: &AtomicUsize, done: &AtomicBool) {
    let sql = format!(
        "SELECT count(*) FILTER (WHERE pg_catalog.pg_terminate_backend(pid)) FROM pg_catalog.pg_stat_activity \
         WHERE {holder} = ANY (pg_catalog.pg_blocking_pids(pid))"
    );
    while !done.load(Ordering::SeqCst) {
        let n: usize = common::psql(admin_url, &sql).parse().unwrap_or(0);
        killed.fetch_add(n, Ordering::SeqCst);
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// The action of every resource of a fresh plan of the tenant (refreshed from the live objects).
fn plan_actions(ws: &Workspace) -> BTreeMap<String, String> {
    let out = ws.matih(&["plan", &ws.spec_arg(), "--json"]);
    assert!(matches!(out.status.code(), Some(0 | 2)), "plan --json: {}", text(&out));
    let plan: Json = serde_json::from_slice(&out.stdout).expect("plan --json prints JSON");
    plan["tenants"][0]["resource_changes"]
        .as_array()
        .map(|changes| {
            changes
                .iter()
                .map(|c| {
                    (c["address"].as_str().unwrap_or("").to_string(), c["action"].as_str().unwrap_or("").to_string())
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The world of one tenant, by key (`k8s …`, `pg …`, `dns …`), each value normalized.
type World = BTreeMap<String, Json>;

/// What differs between `before` and `after`: with `exact`, anything; without, only what `before`
/// had (changed or gone), that is what the earlier phases made.
fn diff(before: &World, after: &World, exact: bool) -> Vec<String> {
    let mut out = Vec::new();
    for (k, v) in before {
        match after.get(k) {
            None => out.push(format!("- gone: {k}")),
            Some(w) if w != v => out.push(format!("- changed: {k}\n    before: {v}\n    after:  {w}")),
            Some(_) => {}
        }
    }
    if exact {
        out.extend(after.keys().filter(|k| !before.contains_key(*k)).map(|k| format!("- new: {k}")));
    }
    out
}

fn snapshot(ws: &Workspace) -> World {
    let mut world = World::new();
    kube_objects(&ws.slug, &mut world);
    pg_objects(ws.pg, &ws.slug, &mut world);
    dns_objects(ws.dns, &ws.slug, &mut world);
    world
}

/// The kinds a tenant's namespaces hold: what matih applies, and what controllers make of it
/// (ReplicaSets, Pods, the namespace's default ServiceAccount and root CA ConfigMap). Endpoints
/// and Events are left out: controllers write them on their own schedule.
const NAMESPACED_KINDS: &str = "configmaps,secrets,serviceaccounts,services,deployments.apps,replicasets.apps,pods,\
    jobs.batch,roles.rbac.authorization.k8s.io,rolebindings.rbac.authorization.k8s.io,\
    networkpolicies.networking.k8s.io,resourcequotas,ingresses.networking.k8s.io,certificates.cert-manager.io,\
    prometheuses.monitoring.coreos.com,prometheusrules.monitoring.coreos.com,servicemonitors.monitoring.coreos.com,\
    alertmanagerconfigs.monitoring.coreos.com,opentelemetrycollectors.opentelemetry.io";

fn kubectl_items(args: &[&str]) -> Vec<Json> {
    let out = kube::admin_kubectl(args);
    assert!(out.status.success(), "kubectl {args:?}: {}", text(&out));
    let list: Json = serde_json::from_slice(&out.stdout).unwrap_or(Json::Null);
    list["items"].as_array().cloned().unwrap_or_default()
}

fn kube_objects(slug: &str, world: &mut World) {
    let (ns, edge) = (format!("matih-{slug}"), format!("matih-{slug}-edge"));
    let selector = format!("matih.ai/tenant-slug={slug}");
    let mut items = kubectl_items(&["get", "namespaces", &ns, &edge, "--ignore-not-found", "-o", "json"]);
    for n in [&ns, &edge] {
        items.extend(kubectl_items(&["get", NAMESPACED_KINDS, "-n", n, "-o", "json"]));
    }
    items.extend(kubectl_items(&[
        "get",
        "clusterroles,clusterrolebindings,ingressclasses",
        "-l",
        &selector,
        "-o",
        "json",
    ]));
    for mut o in items {
        let key = format!(
            "k8s {} {} {}/{}",
            o["apiVersion"].as_str().unwrap_or(""),
            o["kind"].as_str().unwrap_or(""),
            o["metadata"]["namespace"].as_str().unwrap_or(""),
            o["metadata"]["name"].as_str().unwrap_or("")
        );
        normalize(&mut o);
        world.insert(key, o);
    }
}

/// Leaves out what the API server and controllers change on their own, and keeps no secret in
/// clear: resourceVersion, managedFields timestamps, a quota's usage; Secret values as digests.
fn normalize(o: &mut Json) {
    if let Some(meta) = o.get_mut("metadata").and_then(Json::as_object_mut) {
        meta.remove("resourceVersion");
        if let Some(fields) = meta.get_mut("managedFields").and_then(Json::as_array_mut) {
            for f in fields.iter_mut().filter_map(Json::as_object_mut) {
                f.remove("time");
            }
        }
    }
    let kind = o["kind"].as_str().unwrap_or("").to_string();
    if kind == "ResourceQuota" {
        o.as_object_mut().unwrap().remove("status");
    }
    if kind == "Secret" {
        if let Some(data) = o.get_mut("data").and_then(Json::as_object_mut) {
            for v in data.values_mut() {
                let digest = Sha256::digest(v.as_str().unwrap_or("").as_bytes());
                *v = Json::String(digest.iter().map(|b| format!("{b:02x}")).collect());
            }
        }
    }
}

/// `psql` on `db` of the shared server, each row as one string.
fn psql_rows(pg: &postgres::PgServer, db: &str, sql: &str) -> Vec<String> {
    let url = format!("{}{db}", pg.admin_url.strip_suffix("postgres").unwrap());
    let out = common::psql(&url, sql);
    out.lines().map(str::to_string).filter(|l| !l.is_empty()).collect()
}

/// The tenant's roles (and its migrator), their memberships and rights on databases; its schema,
/// tables and the digest of each table's rows in the shared database: one key per row, so that
/// what a phase adds is new, and what an earlier phase made is compared. The migrator's one-use
/// password is left out: matih sets it anew at every login. The shared database itself is not the
/// tenant's (the first tenant's phase 2 creates it, and it stays).
fn pg_objects(pg: &postgres::PgServer, slug: &str, world: &mut World) {
    let role = format!("tenant_{slug}");
    let mig = format!("mig_{role}");
    let roles = format!("('{role}', '{mig}')");
    // Each row is `KEY|VALUE…`: its first column names it.
    let q = |world: &mut World, what: &str, db: &str, sql: &str| {
        for row in psql_rows(pg, db, sql) {
            let (key, value) = row.split_once('|').unwrap_or((&row, ""));
            world.insert(format!("pg {what} {key}"), json!(value));
        }
    };
    q(
        world,
        "role",
        "postgres",
        &format!(
            "SELECT rolname, oid, rolcanlogin, rolinherit, rolconnlimit, rolconfig FROM pg_catalog.pg_roles \
             WHERE rolname IN {roles}"
        ),
    );
    q(
        world,
        "membership",
        "postgres",
        &format!(
            "SELECT r.rolname || ' has ' || m.rolname FROM pg_catalog.pg_auth_members a \
             JOIN pg_catalog.pg_roles r ON r.oid = a.roleid JOIN pg_catalog.pg_roles m ON m.oid = a.member \
             WHERE r.rolname IN {roles} OR m.rolname IN {roles}"
        ),
    );
    q(
        world,
        "right",
        "postgres",
        &format!(
            "SELECT d.datname || ' ' || a::text FROM pg_catalog.pg_database d, unnest(d.datacl) a \
             WHERE split_part(a::text, '=', 1) IN {roles}"
        ),
    );
    let shared = matih::catalog::Catalog::embedded().unwrap().database.shared_database.clone();
    let exists = psql_rows(pg, "postgres", &format!("SELECT 1 FROM pg_catalog.pg_database WHERE datname = '{shared}'"));
    if exists.is_empty() {
        return;
    }
    q(
        world,
        "schema",
        &shared,
        &format!(
            "SELECT n.nspname, n.oid, pg_catalog.pg_get_userbyid(n.nspowner), n.nspacl FROM pg_catalog.pg_namespace n \
             WHERE n.nspname = '{role}'"
        ),
    );
    // Every relation of the schema, and of each table the digest of its rows.
    let rows_digest = "'SELECT md5(coalesce(string_agg(t::text, chr(10) ORDER BY t::text), ''-'')) AS d FROM %I.%I t'";
    q(
        world,
        "relation",
        &shared,
        &format!(
            "SELECT n.nspname || '.' || c.relname, c.oid, c.relkind, pg_catalog.pg_get_userbyid(c.relowner), \
             CASE WHEN c.relkind = 'r' THEN md5(pg_catalog.query_to_xml(format({rows_digest}, n.nspname, c.relname), \
             false, false, '')::text) END \
             FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = '{role}'"
        ),
    );
}

/// A GET on PowerDNS's API (plain HTTP/1.0, straight to the server): the status and JSON body.
fn pdns_get(dns: &powerdns::PowerDns, path: &str) -> (u16, Json) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", dns.api_port)).unwrap();
    let req = format!(
        "GET /api/v1/servers/localhost{path} HTTP/1.0\r\nHost: 127.0.0.1\r\nX-API-Key: {}\r\n\r\n",
        dns.api_key
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, serde_json::from_str(body).unwrap_or(Json::Null))
}

/// Record sets as sorted strings (`NAME TYPE TTL content…`).
fn rrsets(zone: &Json, keep: impl Fn(&str) -> bool) -> Vec<String> {
    let mut sets: Vec<String> = zone["rrsets"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| keep(r["name"].as_str().unwrap_or("")))
        .map(|r| {
            let mut records: Vec<&str> =
                r["records"].as_array().into_iter().flatten().filter_map(|x| x["content"].as_str()).collect();
            records.sort_unstable();
            format!(
                "{} {} {} {}",
                r["name"].as_str().unwrap_or(""),
                r["type"].as_str().unwrap_or(""),
                r["ttl"],
                records.join(" ")
            )
        })
        .collect();
    sets.sort();
    sets
}

/// The tenant's zone (every record set, its SOA too) and what the parent zone holds for it.
fn dns_objects(dns: &powerdns::PowerDns, slug: &str, world: &mut World) {
    let zone = format!("{slug}.{PARENT}.");
    let (status, body) = pdns_get(dns, &format!("/zones/{zone}"));
    assert!(status == 200 || status == 404 || status == 422, "PowerDNS GET zone {zone}: {status} {body}");
    if status == 200 {
        world.insert(format!("dns zone {zone}"), json!(rrsets(&body, |_| true)));
    }
    let (status, parent) = pdns_get(dns, &format!("/zones/{PARENT}."));
    assert_eq!(status, 200, "PowerDNS GET the parent zone: {parent}");
    let dot_zone = format!(".{zone}");
    for set in rrsets(&parent, |n| n == zone || n.ends_with(&dot_zone)) {
        world.insert(format!("dns parent record set {set}"), json!(true));
    }
}
