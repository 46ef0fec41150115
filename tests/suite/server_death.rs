//! Servers that die mid-apply (issue 19, item 3): the kube-apiserver, etcd, PostgreSQL as the
//! provider's server, PostgreSQL as the state store and PowerDNS are killed with SIGKILL while the
//! real `matih apply` works on a tenant (and the apiserver and the state store while two runners
//! apply a fleet with the PostgreSQL state), and started again on the same port and data after a
//! short outage. Whatever the apply did then (retried through the outage and reached ACTIVE, or
//! failed: exit 1, the tenant FAILED naming the error), these must hold:
//!
//! * it ended on its own (bounded waits; a run still going after [`RUN_DEADLINE`] fails the test),
//!   without a panic, its lock released (`locks()` empty; the next apply is not refused);
//! * nothing committed was lost: every resource it reported done (`resource_finished` ok), and
//!   every resource the state held just before the kill, is still recorded, or was deleted
//!   again by a rollback the audit log shows; the serial never went back;
//! * nothing was created twice: along the audit log, no resource is created (or adopted) while
//!   it is already there;
//! * the next apply converges: exit 0, ACTIVE, and a plan after it has nothing to do.
//!
//! The killed server belongs to its test alone ([`mortal`]): the binary's shared servers serve the
//! other tests, running at the same time. The kill happens at a chosen point of the run, when its
//! `--progress json` stream shows a given event (not after a sleep), and the server is started
//! again once a run reports a retry (so the outage was met), or after [`OUTAGE`]; it is down that
//! long plus the time it takes to start. Each test prints a `RESULT` line per case. A last test
//! checks the state store's locks through a restart of its server directly, two stores as two runners.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::support::{self as common, kube, mortal, pg as postgres, powerdns};
use common::text;
use matih::events::{Event, EventKind};
use matih::state::{PostgresStore, StateStore, TenantStatus};
use mortal::Server;

/// The parent zone of the tenants of these tests on the shared PowerDNS.
const PARENT: &str = "deaths.test";
/// How long a killed server stays down at most before it is started again: it is started again
/// as soon as a run reports that it met the outage (a `resource_retrying` event), or after this.
const OUTAGE: Duration = Duration::from_secs(5);
/// A run of matih that has not ended after this long is a hang: the test fails.
const RUN_DEADLINE: Duration = Duration::from_secs(300);

/// Where the servers of one case are: the shared ones or a private one each.
struct Servers {
    /// The Kubernetes API: a proxy of the test's own to the shared control plane (`api_url`), or a
    /// private control plane's kubeconfig.
    kube: Kube,
    pg_port: u16,
    pg_admin_url: String,
    pdns_url: String,
    pdns_key: String,
    state_url: String,
}

enum Kube {
    Shared(kube::Kube),
    Private(std::path::PathBuf),
}

impl Servers {
    /// The shared servers, with a fresh state database on the shared PostgreSQL.
    fn shared() -> Servers {
        let (pg, dns) = (postgres::server(), powerdns::server());
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            let rt = tokio::runtime::Runtime::new().unwrap();
            dns.parent_zone(&rt, PARENT);
        });
        Servers {
            kube: Kube::Shared(kube::Kube::start()),
            pg_port: pg.port,
            pg_admin_url: pg.admin_url.clone(),
            pdns_url: dns.api_url.clone(),
            pdns_key: dns.api_key.clone(),
            state_url: common::fresh_database(),
        }
    }

    fn with_private_postgres(mut self, pg: &mortal::Postgres) -> Servers {
        self.pg_port = pg.port;
        self.pg_admin_url = pg.admin_url.clone();
        self
    }

    fn with_private_state(mut self, pg: &mortal::Postgres) -> Servers {
        self.state_url = pg.database(&format!("matih_state_{}", uuid::Uuid::new_v4().simple()));
        self
    }

    /// The private PowerDNS, its parent zone made by an earlier case.
    fn with_private_powerdns_zone(mut self, dns: &mortal::PowerDns) -> Servers {
        self.pdns_url = dns.api_url.clone();
        self.pdns_key = dns.api_key.clone();
        self
    }

    fn with_private_powerdns(mut self, dns: &mortal::PowerDns) -> Servers {
        let b = matih::provider::dns::PowerDnsBackend::new(
            &dns.api_url,
            "localhost",
            dns.api_key.clone(),
            vec![format!("ns1.{PARENT}.")],
        )
        .unwrap();
        use matih::provider::dns::DnsBackend as _;
        tokio::runtime::Runtime::new().unwrap().block_on(b.create_zone(PARENT)).unwrap();
        self.pdns_url = dns.api_url.clone();
        self.pdns_key = dns.api_key.clone();
        self
    }

    fn with_private_kube(mut self, cp: &mortal::ControlPlane) -> Servers {
        self.kube = Kube::Private(cp.kubeconfig());
        self
    }

    fn platform(&self) -> String {
        let kube = match &self.kube {
            Kube::Shared(k) => format!("  api_url = \"{}\"\n", k.url),
            // The kubeconfig's API server and client certificate; the NetworkPolicies' API
            // server address cannot be read from a URL then.
            Kube::Private(_) => String::new(),
        };
        let network = match &self.kube {
            Kube::Shared(_) => "",
            Kube::Private(_) => "network {\n  api_server_cidrs = [\"127.0.0.1/32\"]\n}\n",
        };
        format!(
            "state {{\n  backend = \"postgres\"\n}}\n\
             dns {{\n  parent_zone = \"{PARENT}\"\n  provider = \"powerdns\"\n  api_url = \"{}\"\n  api_key_env = \"PDNS_API_KEY\"\n  \
             nameservers = [\"ns1.{PARENT}.\", \"ns2.{PARENT}.\"]\n}}\n\
             postgres {{\n  host = \"127.0.0.1\"\n  port = {}\n}}\n\
             kubernetes {{\n{kube}  load_balancer_ip_interval_ms = 50\n  poll_interval_ms = 50\n  \
             deployment_timeout_ms = 120000\n  certificate_timeout_ms = 120000\n}}\n{network}",
            self.pdns_url, self.pg_port
        )
    }
}

/// A working directory: tenants `slugs` and a platform file for `servers`.
struct Case {
    dir: tempfile::TempDir,
    servers: Servers,
    slugs: Vec<String>,
}

impl Case {
    fn new(servers: Servers, slugs: &[&str]) -> Case {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("tenants")).unwrap();
        for (i, slug) in slugs.iter().enumerate() {
            let spec = format!(
                "tenant \"{slug}\" {{\n  id          = \"{}\"\n  tier        = \"{}\"\n  region      = \"eastus\"\n  \
                 admin_email = \"admin@{slug}.example\"\n  monitoring {{\n    notify_email = [\"ops@{slug}.example\"]\n  }}\n}}\n",
                uuid::Uuid::new_v4(),
                ["free", "professional"][i % 2],
            );
            std::fs::write(dir.path().join(format!("tenants/{slug}.hcl")), spec).unwrap();
        }
        std::fs::write(dir.path().join("matih.hcl"), servers.platform()).unwrap();
        Case { dir, servers, slugs: slugs.iter().map(|s| s.to_string()).collect() }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn command(&self, args: &[&str]) -> Command {
        let s = &self.servers;
        let mut c = common::fleet::command_in(self.path(), args, &s.state_url, &s.pg_admin_url, &s.pdns_key);
        if let Kube::Private(kubeconfig) = &s.kube {
            c.env("KUBECONFIG", kubeconfig);
        }
        c
    }

    fn store(&self) -> PostgresStore {
        PostgresStore::connect(&self.servers.state_url).expect("connect the state store")
    }
}

/// One `matih apply` run: how it ended, and its events.
struct Run {
    code: Option<i32>,
    events: Vec<Event>,
    stderr: String,
}

impl Run {
    fn describe(&self) -> String {
        let lines: Vec<String> = self.events.iter().map(|e| serde_json::to_string(e).unwrap()).collect();
        format!("exit {:?}\n{}\n{}", self.code, lines.join("\n"), self.stderr)
    }
}

/// The state's view of the tenants just before the kill: each tenant's serial and resources.
type Before = Vec<(String, u64, Vec<String>)>;

/// When a killed server is started again.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Restart {
    /// Once a run reports a retry (the outage was met), or after [`OUTAGE`].
    OnRetry,
    /// Once the first runner reports its tenant finished: an outage longer than the run's patience,
    /// which must then fail cleanly.
    WhenTheRunEnded,
}

/// Runs `matih apply --progress json` in `runners` processes (each with its own local state
/// directory), kills `server` when an event of the first runner matches `trigger`, starts it again
/// once a run retried (or after [`OUTAGE`]), and waits (bounded) for every runner to end. Returns the
/// runs, the state just before the kill, and how long the server was down.
fn apply_through_death(
    case: &Case,
    runners: usize,
    server: &mut dyn Server,
    trigger: impl Fn(&Event) -> bool,
    restart: Restart,
) -> (Vec<Run>, Before, Duration) {
    let mut children = Vec::new();
    let (tx, rx) = mpsc::channel::<(usize, Event)>();
    let mut readers = Vec::new();
    for r in 0..runners {
        let mut child = case
            .command(&["apply", "tenants", "--auto-approve", "--progress", "json", "--tenant-parallelism", "2"])
            .env("MATIH_STATE_DIR", case.path().join(format!("runner-{r}")))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (out, mut err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
        let tx = tx.clone();
        readers.push(std::thread::spawn(move || {
            let mut events = Vec::new();
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let ev: Event = serde_json::from_str(&line).unwrap_or_else(|e| panic!("not an event ({e}): {line}"));
                let _ = tx.send((r, ev.clone()));
                events.push(ev);
            }
            let mut stderr = String::new();
            let _ = err.read_to_string(&mut stderr);
            (events, stderr)
        }));
        children.push(child);
    }
    drop(tx);
    let started = Instant::now();
    // Until the trigger: the first runner's events.
    loop {
        match rx.recv_timeout(RUN_DEADLINE.saturating_sub(started.elapsed())) {
            Ok((0, ev)) if trigger(&ev) => break,
            Ok(_) => {}
            Err(_) => {
                for c in &mut children {
                    let _ = c.kill();
                }
                let runs: Vec<_> = readers.into_iter().map(|r| r.join().unwrap()).collect();
                panic!("the runs ended (or hung) before the moment to kill {}: {:?}", server.name(), runs);
            }
        }
    }
    let before: Before = {
        let store = case.store();
        case.slugs.iter().filter_map(|s| store.get(s).unwrap().map(|st| (s.clone(), st.serial, keys(&st)))).collect()
    };
    let down = Instant::now();
    server.kill();
    let until = down + if restart == Restart::OnRetry { OUTAGE } else { RUN_DEADLINE };
    while let Ok((_, ev)) = rx.recv_timeout(until.saturating_duration_since(Instant::now())) {
        let back = match restart {
            Restart::OnRetry => ev.kind == EventKind::ResourceRetrying,
            Restart::WhenTheRunEnded => ev.kind == EventKind::TenantFinished,
        };
        if back {
            break;
        }
    }
    server.restart();
    let down = down.elapsed();
    // Every runner ends on its own, or the test fails naming the hang.
    let mut runs = Vec::new();
    for (mut child, reader) in children.into_iter().zip(readers) {
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if started.elapsed() > RUN_DEADLINE {
                let _ = child.kill();
                let (events, stderr) = reader.join().unwrap();
                panic!(
                    "matih hung: still running {} s after it started ({} was killed and restarted):\n{}",
                    RUN_DEADLINE.as_secs(),
                    server.name(),
                    Run { code: None, events, stderr }.describe()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let (events, stderr) = reader.join().unwrap();
        runs.push(Run { code: status.code(), events, stderr });
    }
    (runs, before, down)
}

fn keys(st: &matih::state::TenantState) -> Vec<String> {
    st.resources.keys().map(ToString::to_string).collect()
}

/// What a case found, for its `RESULT` line.
struct Outcome {
    /// `ACTIVE (retried 3 times)` or `FAILED: …`, per tenant.
    first: String,
    /// The retries and failures the runs met, and their standard error.
    met: String,
}

/// Checks what the module documentation promises after a run through a server's death; returns
/// how the first run ended.
fn check(case: &Case, runs: &[Run], before: &Before) -> Outcome {
    let all = || runs.iter().map(Run::describe).collect::<Vec<_>>().join("\n----\n");
    for run in runs {
        assert!(matches!(run.code, Some(0 | 1)), "matih ended with {:?} (a panic or a signal):\n{}", run.code, all());
        assert!(!run.stderr.contains("panicked"), "{}", all());
    }
    let store = case.store();
    assert_eq!(store.locks().unwrap(), [], "a lock was left behind:\n{}", all());
    let mut outcomes = Vec::new();
    for slug in &case.slugs {
        let st = store.get(slug).unwrap().unwrap_or_else(|| panic!("{slug} has no state:\n{}", all()));
        let audit = store.audit(slug).unwrap();
        let rolled_back = |addr: &str| {
            audit.iter().any(|e| {
                e.action == "rollback"
                    && e.outcome == "deleted"
                    && e.resource.as_ref().is_some_and(|r| r.to_string() == addr)
            })
        };
        // Nothing committed lost: what the state held before the kill, and what the runs reported done.
        if let Some((_, serial, resources)) = before.iter().find(|(s, ..)| s == slug) {
            assert!(st.serial >= *serial, "{slug}: serial went back from {serial} to {}", st.serial);
            for addr in resources {
                assert!(
                    keys(&st).contains(addr) || rolled_back(addr),
                    "{slug}: {addr} was recorded before the kill and is gone:\n{}",
                    all()
                );
            }
        }
        let retried =
            runs.iter().flat_map(|r| &r.events).filter(|e| e.tenant == *slug && e.kind == EventKind::ResourceRetrying);
        let retried = retried.count();
        for e in runs.iter().flat_map(|r| &r.events) {
            if e.tenant == *slug
                && e.kind == EventKind::ResourceFinished
                && e.outcome.as_deref() == Some("ok")
                && e.action.as_deref() != Some("delete")
            {
                let addr = e.resource.as_deref().unwrap();
                assert!(
                    keys(&st).contains(&addr.to_string()) || rolled_back(addr),
                    "{slug}: {addr} was reported done and is not recorded:\n{}",
                    all()
                );
            }
        }
        let outcome = match st.status {
            TenantStatus::Active => format!("ACTIVE after {retried} retries"),
            TenantStatus::Failed => {
                let error = st.provisioning_error.clone().unwrap_or_default();
                assert!(!error.is_empty(), "{slug} FAILED without saying why:\n{}", all());
                format!("FAILED: {}", error.chars().take(140).collect::<String>())
            }
            // The store itself was down when the run failed: the status could not be written,
            // and the in-flight records are what the next run recovers.
            other => {
                let failed = runs.iter().any(|r| r.code == Some(1));
                assert!(failed, "{slug} is {other:?} after a run that exited 0:\n{}", all());
                format!("{other:?} (the run failed: the store could not record FAILED)")
            }
        };
        outcomes.push(format!("{slug}: {outcome}"));
    }
    // What the runs met: their retries and failures, for the test's output.
    let met: Vec<String> = runs
        .iter()
        .flat_map(|r| &r.events)
        .filter(|e| e.kind == EventKind::ResourceRetrying || e.outcome.as_deref() == Some("failed"))
        .map(|e| {
            format!(
                "  {} {:?} {}: {}",
                e.tenant,
                e.kind,
                e.resource.as_deref().unwrap_or(""),
                e.error.as_deref().unwrap_or("")
            )
        })
        .collect();
    let stderr: Vec<&str> = runs.iter().map(|r| r.stderr.trim()).filter(|s| !s.is_empty()).collect();
    Outcome { first: outcomes.join("; "), met: format!("{}\n{}", met.join("\n"), stderr.join("\n")) }
}

/// The next apply converges: exit 0, every tenant ACTIVE, no lock, a plan after it empty; and along
/// every tenant's audit log nothing was created while it existed already.
fn check_next_apply(case: &Case) {
    let out = case
        .command(&["apply", "tenants", "--auto-approve"])
        .env("MATIH_STATE_DIR", case.path().join("next"))
        .output()
        .unwrap();
    assert!(out.status.success(), "the next apply: {}", text(&out));
    let out = case
        .command(&["plan", "tenants", "--detailed-exitcode"])
        .env("MATIH_STATE_DIR", case.path().join("next"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "a plan after the next apply: {}", text(&out));
    let store = case.store();
    assert_eq!(store.locks().unwrap(), [], "a lock after the next apply");
    for slug in &case.slugs {
        let st = store.get(slug).unwrap().unwrap();
        assert_eq!(st.status, TenantStatus::Active, "{slug}");
        assert!(st.in_flight.is_empty(), "{slug}: {:?}", st.in_flight);
        let mut live: std::collections::BTreeMap<String, i32> = Default::default();
        for e in store.audit(slug).unwrap() {
            let Some(addr) = e.resource.as_ref().map(ToString::to_string) else { continue };
            let n = live.entry(addr.clone()).or_default();
            match (e.action.as_str(), e.outcome.as_str()) {
                ("create" | "adopt", "ok") | ("recover", "adopted") => *n += 1,
                ("delete", "ok") | ("rollback", "deleted") => *n -= 1,
                _ => {}
            }
            assert!(
                *n <= 1,
                "{slug}: {addr} created while it existed ({} {}): {:?}",
                e.action,
                e.outcome,
                store.audit(slug).unwrap()
            );
        }
    }
}

fn result(server: &str, when: &str, down: Duration, outcome: &Outcome) {
    eprintln!(
        "RESULT | {server} | {when} | down {:.1} s | {} | next apply ACTIVE, plan empty | no duplicate | nothing lost | no lock left",
        down.as_secs_f64(),
        outcome.first
    );
    eprintln!("{}", outcome.met);
}

fn started(ev: &Event, phase: u8) -> bool {
    ev.kind == EventKind::ResourceStarted && ev.phase == Some(phase)
}

fn finished_in(ev: &Event, phase: u8) -> bool {
    ev.kind == EventKind::ResourceFinished && ev.phase == Some(phase) && ev.outcome.as_deref() == Some("ok")
}

/// One tenant, one runner: kill `server` at `trigger`, check, apply again, check.
fn single(case: &Case, server: &mut dyn Server, when: &str, trigger: impl Fn(&Event) -> bool) {
    let (runs, before, down) = apply_through_death(case, 1, server, trigger, Restart::OnRetry);
    let outcome = check(case, &runs, &before);
    check_next_apply(case);
    result(server.name(), when, down, &outcome);
}

/// One tenant, one runner, a server down until the run has ended: it must fail (exit 1), cleanly.
fn single_long(case: &Case, server: &mut dyn Server, when: &str, trigger: impl Fn(&Event) -> bool) {
    let (runs, before, down) = apply_through_death(case, 1, server, trigger, Restart::WhenTheRunEnded);
    assert_eq!(
        runs[0].code,
        Some(1),
        "a run that outlived its patience for {}:\n{}",
        server.name(),
        runs[0].describe()
    );
    let outcome = check(case, &runs, &before);
    check_next_apply(case);
    result(server.name(), when, down, &outcome);
}

#[test]
fn postgres_as_the_provider_dies_while_phase_2_sets_up_the_database() {
    let _claim = kube::claim_tenant("dpgp");
    let mut pg = mortal::Postgres::start();
    let case = Case::new(Servers::shared().with_private_postgres(&pg), &["dpgp"]);
    single(&case, &mut pg, "phase 2, first resource started", |e| started(e, 2));
}

/// Down until the run has given up: FAILED, rolled back, the lock released.
#[test]
fn postgres_as_the_provider_stays_down_until_the_run_gave_up() {
    let _claim = kube::claim_tenant("dpgpl");
    let mut pg = mortal::Postgres::start();
    let case = Case::new(Servers::shared().with_private_postgres(&pg), &["dpgpl"]);
    single_long(&case, &mut pg, "phase 2, down until the run ended", |e| started(e, 2));
}

#[test]
fn postgres_as_the_state_store_dies_mid_run() {
    let _claim = kube::claim_tenant("dpgs");
    let mut pg = mortal::Postgres::start();
    let case = Case::new(Servers::shared().with_private_state(&pg), &["dpgs"]);
    single(&case, &mut pg, "phase 3, after a resource finished", |e| finished_in(e, 3));
}

/// Down for longer than the store tries (15 s): the run fails, unable to record FAILED; its
/// in-flight records are what the next apply recovers.
#[test]
fn postgres_as_the_state_store_stays_down_until_the_run_gave_up() {
    let _claim = kube::claim_tenant("dpgsl");
    let mut pg = mortal::Postgres::start();
    let case = Case::new(Servers::shared().with_private_state(&pg), &["dpgsl"]);
    single_long(&case, &mut pg, "phase 3, down until the run ended", |e| finished_in(e, 3));
}

#[test]
fn powerdns_dies_while_phase_7_creates_the_zone() {
    let _claim = kube::claim_tenant("dpdns");
    let mut dns = mortal::PowerDns::start();
    let case = Case::new(Servers::shared().with_private_powerdns(&dns), &["dpdns"]);
    // Down from the start of phase 6, so that phase 7 meets the outage.
    let phase_6 = |e: &Event| e.kind == EventKind::PhaseStarted && e.phase == Some(6);
    single(&case, &mut dns, "phase 6 started (down for phase 7)", phase_6);

    // Killed as the zone's creation starts: perhaps in the middle of it (a zone left without its
    // NS set, which the retry completes), perhaps just after.
    let _claim = kube::claim_tenant("dpdnz");
    let case = Case::new(Servers::shared().with_private_powerdns_zone(&dns), &["dpdnz"]);
    let zone = |e: &Event| started(e, 7) && e.resource.as_deref() == Some("dns_zone.tenant");
    single(&case, &mut dns, "phase 7, the zone's creation started", zone);
}

/// The apiserver alone, then etcd under it, each during a single-tenant apply. One private control
/// plane for both (it takes a while to start), so the cases run one after the other.
#[test]
fn the_apiserver_and_etcd_die_mid_apply() {
    let mut cp = mortal::ControlPlane::start();
    let case = Case::new(Servers::shared().with_private_kube(&cp), &["dkapi"]);
    single(&case, &mut cp.process("kube-apiserver"), "phase 3, first resource started", |e| started(e, 3));

    let case = Case::new(Servers::shared().with_private_kube(&cp), &["dketcd"]);
    single(&case, &mut cp.process("etcd"), "phase 4, first resource started", |e| started(e, 4));
}

#[test]
fn the_apiserver_dies_mid_fleet() {
    let mut cp = mortal::ControlPlane::start();
    let slugs = ["dkf0", "dkf1", "dkf2", "dkf3"];
    let case = Case::new(Servers::shared().with_private_kube(&cp), &slugs);
    let trigger = |e: &Event| started(e, 3);
    let (runs, before, down) =
        apply_through_death(&case, 2, &mut cp.process("kube-apiserver"), trigger, Restart::OnRetry);
    let outcome = check(&case, &runs, &before);
    check_next_apply(&case);
    result("kube-apiserver", "fleet of 4, two runners, a tenant's phase 3", down, &outcome);
}

#[test]
fn postgres_as_the_state_store_dies_mid_fleet() {
    let slugs = ["dpf0", "dpf1", "dpf2", "dpf3"];
    let _claims = kube::claim_tenants(&slugs);
    let mut pg = mortal::Postgres::start();
    let case = Case::new(Servers::shared().with_private_state(&pg), &slugs);
    let (runs, before, down) = apply_through_death(&case, 2, &mut pg, |e| finished_in(e, 3), Restart::OnRetry);
    let outcome = check(&case, &runs, &before);
    check_next_apply(&case);
    result("postgres (state)", "fleet of 4, two runners, a tenant's phase 3", down, &outcome);
}

/// The state store's locks through a restart of its server (the advisory locks die with their
/// sessions): a store that held a lock takes it again before it writes that tenant, so another
/// run is refused; when another run took it first, the write is refused instead, so that two runs
/// never apply one tenant. Two stores of this process stand for two runners.
#[test]
fn a_lock_survives_a_state_store_restart_unless_another_run_takes_it_first() {
    use matih::state::{LockInfo, StateError, TenantState};
    let mut pg = mortal::Postgres::start();
    let url = pg.database("matih_state_locks");
    let (a, b) = (PostgresStore::connect(&url).unwrap(), PostgresStore::connect(&url).unwrap());
    let state = |slug: &str, serial: u64| {
        let mut st = TenantState::new(slug, "550e8400-e29b-41d4-a716-446655440000");
        st.serial = serial;
        st
    };
    let (x, y) = (LockInfo::new("x", "apply"), LockInfo::new("y", "apply"));
    a.lock(&x).unwrap();
    a.lock(&y).unwrap();
    a.put(&state("x", 1), None, "apply").unwrap();
    a.put(&state("y", 1), None, "apply").unwrap();
    pg.kill();
    pg.restart();

    // y: another run takes it before the holder is back; x: the holder writes first (taking
    // back every lock it held that is still free).
    let y2 = LockInfo::new("y", "apply");
    b.lock(&y2).unwrap();
    a.put(&state("x", 2), Some(1), "apply").expect("the write goes through on a new session");
    assert!(matches!(b.lock(&LockInfo::new("x", "apply")), Err(StateError::Locked { .. })));
    let refused = a.put(&state("y", 2), Some(1), "apply");
    assert!(matches!(refused, Err(StateError::Locked { .. })), "{refused:?}");
    assert_eq!(b.get("y").unwrap().unwrap().serial, 1, "the refused write changed nothing");
    let mut held: Vec<String> = b.locks().unwrap().iter().map(|l| l.id.clone()).collect();
    held.sort();
    let mut want = vec![x.id.clone(), y2.id.clone()];
    want.sort();
    assert_eq!(held, want);
    a.unlock("y", &y.id).unwrap();
    a.unlock("x", &x.id).unwrap();
    let held: Vec<String> = b.locks().unwrap().iter().map(|l| l.id.clone()).collect();
    assert_eq!(held, [y2.id.as_str()]);
    b.unlock("y", &y2.id).unwrap();
    assert_eq!(b.locks().unwrap(), []);
}
