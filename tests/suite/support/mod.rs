//! Shared support for the end-to-end tests: run the real `matih` binary on either state backend,
//! and record a tenant's state as if every resource of its graph had been applied.
//!
//! **Both backends.** A backend-independent test is written as `fn name(backend: Backend)` and
//! expanded with [`on_both_backends!`] into `name::sled` and `name::postgres`, so one `cargo test`
//! runs it on both. Its state lives in a [`TestState`]: for sled a directory of its own
//! (`MATIH_STATE_DIR`); for postgres a fresh database (`CREATE DATABASE` per test) on the test
//! binary's one PostgreSQL server ([`pg::server`]), selected the way a team selects it: a
//! `state { backend = "postgres", url_env = "MATIH_TEST_STATE_URL" }` block in the platform file
//! (merged into the test's own platform file by [`TestState::platform`], or a platform file of its
//! own when the test has none) and the URL in that variable. Tests that are about sled itself
//! (files in the state directory, its process-exclusive open, `state migrate` from sled) stay plain
//! `#[test]`s with a comment saying so.

#![allow(dead_code)]

pub mod fake;
pub mod fleet;
pub mod http_fault;
pub mod kafka;
pub mod kube;
pub mod mortal;
#[path = "postgres.rs"]
pub mod pg;
pub mod powerdns;
pub mod serve;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use matih::catalog::Catalog;
use matih::graph::ResourceGraph;
use matih::spec::PlatformConfig;
use matih::state::{PostgresStore, ResourceState, SledStore, StateStore, TenantState, TenantStatus};
use matih::value::{fingerprint, Secret, Value};

/// The state backend a test runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sled,
    Postgres,
}

/// Expands each `fn NAME(backend: Backend)` into two tests, `NAME::sled` and `NAME::postgres`.
#[allow(unused_macros)]
macro_rules! on_both_backends {
    ($($name:ident),+ $(,)?) => {
        $(
            mod $name {
                #[test]
                fn sled() {
                    super::$name($crate::support::Backend::Sled)
                }
                #[test]
                fn postgres() {
                    super::$name($crate::support::Backend::Postgres)
                }
            }
        )+
    };
}

/// Runs the two variants of a test one after the other (hold the guard for the whole test). For
/// end-to-end tests whose variants would otherwise collide on the binary's shared servers: the
/// same tenant's namespace, role, schema and DNS zone. A variant that panicked does not block the
/// other.
pub fn one_variant_at_a_time(test: &str) -> std::sync::MutexGuard<'static, ()> {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock, PoisonError};
    static LOCKS: OnceLock<Mutex<HashMap<String, &'static Mutex<()>>>> = OnceLock::new();
    let lock: &'static Mutex<()> = LOCKS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .entry(test.to_string())
        .or_insert_with(|| Box::leak(Box::default()));
    lock.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The variable the postgres variant's platform file names (`url_env`) for the state URL.
pub const STATE_URL_ENV: &str = "MATIH_TEST_STATE_URL";

/// Where one test keeps its state: a sled directory of its own, or a fresh PostgreSQL database.
pub struct TestState {
    pub backend: Backend,
    /// sled: the store's directory (not created until something writes it).
    pub dir: PathBuf,
    /// postgres: the URL of this test's database.
    pub url: Option<String>,
    /// postgres: a platform file holding only the state block, for commands run in a directory
    /// without a platform file of its own.
    platform_file: Option<PathBuf>,
    tmp: tempfile::TempDir,
}

impl TestState {
    /// Fresh, empty state on `backend`.
    pub fn new(backend: Backend) -> TestState {
        let tmp = tempfile::Builder::new().prefix("matih-state-").tempdir().expect("tempdir");
        let dir = tmp.path().join("state");
        let (url, platform_file) = match backend {
            Backend::Sled => (None, None),
            Backend::Postgres => {
                let file = tmp.path().join("matih.hcl");
                std::fs::write(&file, state_block()).unwrap();
                (Some(fresh_database()), Some(file))
            }
        };
        TestState { backend, dir, url, platform_file, tmp }
    }

    /// `rest` (a platform file's other blocks) with this backend's `state` block added.
    pub fn platform(&self, rest: &str) -> String {
        match self.backend {
            Backend::Sled => rest.to_string(),
            Backend::Postgres => format!("{rest}{}", state_block()),
        }
    }

    /// Writes `dir/matih.hcl`: `rest` plus this backend's `state` block.
    pub fn write_platform(&self, dir: &Path, rest: &str) {
        std::fs::write(dir.join("matih.hcl"), self.platform(rest)).unwrap();
    }

    /// Points `cmd` (run in `cwd`) at this state: `MATIH_STATE_DIR` for sled; for postgres the URL
    /// in `MATIH_TEST_STATE_URL` and, when `cwd` has no platform file, one holding the state block.
    /// Clears `MATIH_PLATFORM_FILE` otherwise, so the test's own platform file is the one read.
    pub fn configure(&self, cmd: &mut Command, cwd: &Path) {
        cmd.env_remove("MATIH_PLATFORM_FILE").env_remove("MATIH_STATE_URL");
        match self.backend {
            Backend::Sled => {
                cmd.env("MATIH_STATE_DIR", &self.dir).env_remove(STATE_URL_ENV);
            }
            Backend::Postgres => {
                cmd.env_remove("MATIH_STATE_DIR").env(STATE_URL_ENV, self.url.as_ref().unwrap());
                let own = cwd.join("matih.hcl");
                if own.is_file() {
                    let text = std::fs::read_to_string(&own).unwrap();
                    assert!(
                        text.contains("backend = \"postgres\""),
                        "{} has no postgres state block: write it with TestState::write_platform",
                        own.display()
                    );
                } else {
                    cmd.env("MATIH_PLATFORM_FILE", self.platform_file.as_ref().unwrap());
                }
            }
        }
    }

    /// Opens the store, as matih would (sled: drop it before running matih, which needs it to itself).
    pub fn store(&self) -> Box<dyn StateStore> {
        match self.backend {
            Backend::Sled => Box::new(SledStore::open(&self.dir).expect("open the sled store")),
            Backend::Postgres => {
                Box::new(PostgresStore::connect(self.url.as_ref().unwrap()).expect("connect the postgres store"))
            }
        }
    }

    /// Holds `slug`'s lock as another run would, until the lock is released (and, on postgres, the
    /// returned store dropped). sled: the lock stays recorded in the store, which matih needs to
    /// itself, so the store is closed; postgres: the lock lives as long as the holder's session,
    /// which the returned store keeps open.
    pub fn hold_lock(&self, slug: &str, operation: &str) -> (matih::state::LockInfo, Option<Box<dyn StateStore>>) {
        let lock = matih::state::LockInfo::new(slug, operation);
        let holder = self.store();
        holder.lock(&lock).unwrap();
        (lock, (self.backend == Backend::Postgres).then_some(holder))
    }

    /// Everything the store holds, as bytes: every file of the sled directory; a data-only
    /// `pg_dump` of the database. For checking that a secret reached neither.
    pub fn contents(&self) -> Vec<u8> {
        match self.backend {
            Backend::Sled => all_files(&self.dir),
            Backend::Postgres => self.pg_dump(),
        }
    }

    /// The database's rows, as `pg_dump --data-only` prints them (the same bytes while nothing is written).
    fn pg_dump(&self) -> Vec<u8> {
        let out = Command::new("pg_dump")
            .args(["--data-only", "--no-owner", self.url.as_ref().unwrap()])
            .output()
            .expect("pg_dump must be installed (PostgreSQL 15 client tools)");
        assert!(out.status.success(), "pg_dump: {}", String::from_utf8_lossy(&out.stderr));
        // Recent pg_dump releases fence the script with a random `\restrict KEY` line pair.
        let text = String::from_utf8(out.stdout).expect("pg_dump prints UTF-8");
        let lines = text.lines().filter(|l| !l.starts_with("\\restrict ") && !l.starts_with("\\unrestrict "));
        lines.flat_map(|l| [l, "\n"]).collect::<String>().into_bytes()
    }

    /// Fails unless nothing was recorded: for sled, no store directory was even created; for
    /// postgres, no tenant state, history, audit entry or lock.
    pub fn assert_nothing_recorded(&self) {
        match self.backend {
            Backend::Sled => assert!(!self.dir.exists(), "the sled store {} was created", self.dir.display()),
            Backend::Postgres => {
                let store = self.store();
                assert_eq!(store.all_slugs().unwrap(), Vec::<String>::new(), "tenants were recorded");
                assert_eq!(store.locks().unwrap(), Vec::new(), "a lock was left");
            }
        }
    }

    /// Sets the store's format (sled) or schema (postgres) version, as a newer matih would have
    /// written it. The store must exist already (record something first).
    pub fn set_format_version(&self, version: u32) {
        match self.backend {
            Backend::Sled => {
                let db = sled::open(&self.dir).unwrap();
                db.open_tree("meta").unwrap().insert("format_version", &version.to_be_bytes()).unwrap();
                db.flush().unwrap();
            }
            Backend::Postgres => {
                psql(self.url.as_ref().unwrap(), &format!("UPDATE matih_schema SET version = {version}"));
            }
        }
    }
}

/// The `state` block of the postgres variant's platform files.
fn state_block() -> String {
    format!("state {{\n  backend = \"postgres\"\n  url_env = \"{STATE_URL_ENV}\"\n}}\n")
}

/// A fresh database on the test binary's PostgreSQL server, and its URL.
pub fn fresh_database() -> String {
    let server = pg::server();
    let name = format!("matih_state_{}", uuid::Uuid::new_v4().simple());
    psql(&server.admin_url, &format!("CREATE DATABASE {name}"));
    format!("postgresql://postgres:{}@127.0.0.1:{}/{name}", server.admin_password, server.port)
}

/// Records `spec`'s tenant as fully applied ([`applied_state`]) in `state`.
pub fn record(state: &TestState, spec: &Path) {
    let graph = compile_file(spec);
    state.store().put(&applied_state(&graph), None, "test").unwrap();
}

/// The repository root (tests run with the package root as their working directory).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `matih ARGS` in `dir` on the test's `state` and no colour.
pub fn matih(dir: &Path, state: &TestState, args: &[&str]) -> Output {
    let mut cmd = matih_command();
    cmd.args(args).current_dir(dir).env_remove("MATIH_SCHEMAS_DIR").env("NO_COLOR", "1");
    state.configure(&mut cmd, dir);
    cmd.output().expect("run matih")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The output a provider would have returned for `output` of a resource (deterministic fakes).
pub fn fake_output(output: &str) -> Value {
    match output {
        "load_balancer_ip" => Value::str("20.85.123.45"),
        "nameservers" => Value::list([Value::str("ns1-01.azure-dns.com."), Value::str("ns2-01.azure-dns.net.")]),
        other => Value::str(format!("fake-{other}")),
    }
}

/// The clear text that the recorded secrets stand for; it must never show anywhere.
pub const CLEAR_SECRET: &str = "s3cr3t-Pa55w0rd-that-must-never-leak";

fn resolve(v: &Value) -> Value {
    match v {
        Value::Ref { output, .. } => fake_output(output),
        Value::Computed { .. } => Value::str("2026-02-12T10:00:00Z"),
        Value::Secret(s) => {
            Value::Secret(Secret { source: s.source.clone(), fingerprint: Some(fingerprint(CLEAR_SECRET)) })
        }
        Value::List(items) => Value::List(items.iter().map(resolve).collect()),
        Value::Map(m) => Value::Map(m.iter().map(|(k, v)| (k.clone(), resolve(v))).collect()),
        other => other.clone(),
    }
}

/// The state a successful apply of every resource of `graph` would record.
pub fn applied_state(graph: &ResourceGraph) -> TenantState {
    let mut st = TenantState::new(&graph.tenant.slug, &graph.tenant.id);
    for r in graph.apply_order() {
        let mut outputs = BTreeMap::new();
        for other in graph.graph.node_weights() {
            for v in other.attrs.values() {
                for (res, out) in v.refs() {
                    if *res == r.addr {
                        outputs.insert(out.to_string(), fake_output(out));
                    }
                }
            }
        }
        st.resources.insert(
            r.addr.clone(),
            ResourceState {
                phase: r.phase,
                attrs: r.attrs.iter().map(|(k, v)| (k.clone(), resolve(v))).collect(),
                outputs,
                depends_on: r.depends_on.clone(),
            },
        );
    }
    st.status = TenantStatus::Active;
    st.serial = 1;
    st
}

/// Compiles a tenant spec file with the embedded catalog and default platform.
pub fn compile_file(path: &Path) -> ResourceGraph {
    let catalog = Catalog::embedded().expect("embedded catalog");
    let (specs, diags) = matih::spec::load_tenants(&[path.to_path_buf()], &catalog);
    assert!(diags.iter().all(|d| !d.is_error()), "{diags:?}");
    let (g, diags) = matih::graph::compile(&specs[0], &catalog, &PlatformConfig::default());
    assert!(diags.iter().all(|d| !d.is_error()), "{diags:?}");
    g.expect("graph")
}

/// A platform file (`matih.hcl`) pointing matih at the test servers: PowerDNS (API key in
/// `PDNS_API_KEY`) under `parent`, PostgreSQL on loopback `pg_port`, the real Kubernetes control plane
/// at `kube_url` with fast polling.
pub fn platform_hcl(parent: &str, pdns_api_url: &str, pg_port: u16, kube_url: &str) -> String {
    format!(
        r#"dns {{
  parent_zone = "{parent}"
  provider    = "powerdns"
  api_url     = "{pdns_api_url}"
  api_key_env = "PDNS_API_KEY"
  nameservers = ["ns1.{parent}.", "ns2.{parent}."]
}}
postgres {{
  host = "127.0.0.1"
  port = {pg_port}
}}
kubernetes {{
  api_url                      = "{kube_url}"
  load_balancer_ip_interval_ms = 50
  poll_interval_ms             = 50
}}
"#
    )
}

/// Standard output and standard error of a command, together (for assertions and messages).
pub fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// `psql URL -tA -c SQL`: the answer, trimmed. Fails the test when psql fails.
pub fn psql(url: &str, sql: &str) -> String {
    let out = Command::new("psql").args([url, "-tA", "-c", sql]).output().expect("psql must be installed");
    assert!(out.status.success(), "psql: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Copies the tree `from` to `to` (a catalog or an example set to change in a test).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        let target = to.join(p.file_name().unwrap());
        if p.is_dir() {
            copy_dir(&p, &target);
        } else {
            std::fs::copy(&p, &target).unwrap();
        }
    }
}

/// Every byte of every file under `dir`, to check that a secret appears in none of them.
pub fn all_files(dir: &Path) -> Vec<u8> {
    let mut bytes = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            bytes.extend(all_files(&p));
        } else {
            bytes.extend(std::fs::read(&p).unwrap());
        }
    }
    bytes
}

/// `matih`, the binary under test: the one place the tests start it. Every other way to run it
/// (`matih` below, the serve workspace's, the fleet's, the tests' own argument lists) starts here.
///
/// Without the variables of the run's environment that point at real servers (`scripts/test` and
/// `.dev-env/env` export `KUBECONFIG`, the dev servers' PostgreSQL URL and PowerDNS key): a test
/// hands matih the servers it means (its platform file, `Command::env`), so a plan in one test
/// never reads the cluster where another test is provisioning the same tenant at the same time.
pub fn matih_command() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_matih"));
    for var in ["KUBECONFIG", "MATIH_POSTGRES_ADMIN_URL", "PDNS_API_KEY", "PDNS_API_URL"] {
        cmd.env_remove(var);
    }
    cmd
}

/// Set in a child process of this test binary to the test it reruns ([`rerun_in_child`]).
const CHILD_VAR: &str = "MATIH_SUITE_CHILD";

/// Whether this process is a child that [`rerun_in_child`] started.
pub fn is_child() -> bool {
    std::env::var_os(CHILD_VAR).is_some()
}

/// For the tests that need variables in this process's own environment (the apply engine and the
/// PostgreSQL connector read them there): every test shares this process, and changing its
/// environment while other tests run is a data race, so such a test runs again in a child process
/// of this binary with `vars` set from its start, sharing the servers already started (their
/// addresses go along in the environment). Returns `true` in the parent once the child passed (the
/// test then returns), `false` in the child, which carries on with the test. `test` is the test's
/// full name (`MODULE::NAME`); a name that matches no test fails.
pub fn rerun_in_child(test: &str, vars: &[(&str, &str)]) -> bool {
    if std::env::var(CHILD_VAR).is_ok_and(|t| t == test) {
        return false;
    }
    let mut cmd = Command::new(std::env::current_exe().expect("the test binary's path"));
    cmd.args(["--exact", test, "--nocapture", "--test-threads", "1"]).env(CHILD_VAR, test);
    cmd.envs(pg::children_env()).envs(powerdns::children_env());
    cmd.envs(vars.iter().copied());
    let out = cmd.output().expect("rerun the test binary");
    let names: Vec<&str> = vars.iter().map(|(k, _)| *k).collect();
    assert!(out.status.success(), "{test}, rerun with {names:?} set, failed:\n{}", text(&out));
    assert!(stdout(&out).contains("1 passed"), "{test} is not the name of one test:\n{}", text(&out));
    true
}
