//! The PostgreSQL state backend against a real PostgreSQL 15: the CLI on the postgres backend,
//! migration between backends with digests, a newer schema refused, locks across processes (a
//! live holder named, a kill -9'd holder's lock gone with its session). Runners of `matih apply`
//! dividing a fleet through the locks: tests/fleet.rs.

use crate::support as common;
use crate::support::kube;

use common::pg as pg_support;
use kube::Kube;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{applied_state, compile_file, fresh_database, root, stderr, stdout};
use matih::state::{AuditEntry, LockInfo, PostgresStore, SledStore, StateError, StateStore, TenantState};

/// A scratch directory with a platform file selecting `backend`.
fn scratch(backend: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("matih.hcl"), format!("state {{\n  backend = \"{backend}\"\n}}\n")).unwrap();
    dir
}

/// Runs `matih ARGS` in `dir` (its platform file decides the backend), state URL in the environment.
fn matih(dir: &Path, url: &str, args: &[&str]) -> Output {
    crate::support::matih_command()
        .args(args)
        .current_dir(dir)
        .env("MATIH_STATE_URL", url)
        .env("MATIH_SCHEMAS_DIR", root().join("schemas"))
        .env_remove("MATIH_STATE_DIR")
        .env_remove("MATIH_PLATFORM_FILE")
        .env("NO_COLOR", "1")
        .output()
        .expect("run matih")
}

fn ok(out: &Output) -> String {
    assert!(out.status.success(), "stdout:\n{}\nstderr:\n{}", stdout(out), stderr(out));
    stdout(out)
}

/// Records two tenants (one of them destroyed and created again, one with an audit log) in `store`.
fn record_fleet(store: &dyn StateStore) {
    for name in ["acme", "globex"] {
        let graph = compile_file(&root().join(format!("tenants/{name}.hcl")));
        let mut st = applied_state(&graph);
        st.serial = 1;
        store.put(&st, None, "apply").unwrap();
        let mut next = st.clone();
        next.serial = 2;
        next.resources.pop_last();
        store.put_audited(&next, Some(1), "apply", &[AuditEntry::new(name, "apply", "run", "ok")]).unwrap();
    }
    store.remove("globex", 2, "destroy").unwrap();
    let again = TenantState { serial: 1, ..TenantState::new("globex", "x") };
    store.put(&again, None, "apply").unwrap();
    store.append_audit("initech", &[AuditEntry::new("initech", "destroy", "run", "destroyed")]).unwrap();
}

#[test]
fn the_cli_works_on_the_postgres_backend_and_migrates_both_ways_with_equal_digests() {
    let url = fresh_database();
    let dir = scratch("postgres");
    // sled → postgres: the sled store sits in the platform file's default directory.
    {
        let sled = SledStore::open(&dir.path().join("state")).unwrap();
        record_fleet(&sled);
    }
    let there = ok(&matih(dir.path(), &url, &["state", "migrate", "--from", "sled", "--to", "postgres"]));
    assert!(there.contains("every digest matches"), "{there}");
    assert_eq!(there.matches("sha256 ").count(), 3, "acme, globex and initech (audit only): {there}");

    let list = ok(&matih(dir.path(), &url, &["state", "list"]));
    assert!(list.contains("acme") && list.contains("globex") && !list.contains("initech"), "{list}");
    let history = ok(&matih(dir.path(), &url, &["state", "history", "globex"]));
    assert_eq!(history.lines().count(), 3, "{history}");
    assert!(history.contains("by destroy"), "{history}");
    let show = ok(&matih(dir.path(), &url, &["state", "show", "acme"]));
    assert!(show.contains("\"serial\": 2"), "{show}");
    let status = ok(&matih(dir.path(), &url, &["status", "initech", "--history"]));
    assert!(status.contains("destroyed"), "{status}");
    assert_eq!(ok(&matih(dir.path(), &url, &["lock", "list"])), "");
    let rm = ok(&matih(dir.path(), &url, &["state", "rm", "acme", "kubernetes_namespace.tenant"]));
    assert!(rm.contains("serial 3"), "{rm}");

    // Migrating into a non-empty store is refused.
    let refused = matih(dir.path(), &url, &["state", "migrate", "--from", "sled", "--to", "postgres"]);
    assert!(!refused.status.success());
    assert!(stderr(&refused).contains("not empty"), "{}", stderr(&refused));

    // postgres → a fresh sled directory (the state block's path), then the digests of both runs.
    let back_dir = tempfile::tempdir().unwrap();
    std::fs::write(back_dir.path().join("matih.hcl"), "state {\n  backend = \"postgres\"\n  path = \"copy/\"\n}\n")
        .unwrap();
    let back = ok(&matih(back_dir.path(), &url, &["state", "migrate", "--from", "postgres", "--to", "sled"]));
    let pg = PostgresStore::connect(&url).unwrap();
    let sled = SledStore::open(&back_dir.path().join("copy")).unwrap();
    assert_eq!(matih::state::digests(&pg).unwrap(), matih::state::digests(&sled).unwrap());
    for (slug, digest) in matih::state::digests(&sled).unwrap() {
        assert!(back.contains(&format!("{slug:<24} sha256 {digest}")), "{back}");
    }
    assert_eq!(sled.get("acme").unwrap(), pg.get("acme").unwrap());
    assert_eq!(sled.history("globex").unwrap().len(), 2);
}

#[test]
fn a_newer_schema_is_refused_clearly() {
    let url = fresh_database();
    drop(PostgresStore::connect(&url).unwrap());
    common::psql(&url, "UPDATE matih_schema SET version = 99");
    match PostgresStore::connect(&url) {
        Err(e @ StateError::Version { found: 99, supported: 2, .. }) => {
            let text = e.to_string();
            assert!(text.contains("version 99") && !text.contains(&pg_support::server().admin_password), "{text}");
        }
        other => panic!("expected a version error, got {other:?}"),
    }
    let dir = scratch("postgres");
    let out = matih(dir.path(), &url, &["state", "list"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("format version 99"), "{}", stderr(&out));
}

#[test]
fn a_version_1_database_is_migrated_to_version_2_keeping_its_state() {
    let url = fresh_database();
    {
        let store = PostgresStore::connect(&url).unwrap();
        store.put(&TenantState { serial: 1, ..TenantState::new("acme", "x") }, None, "apply").unwrap();
    }
    // What a version-1 binary left: no progress feed table.
    common::psql(&url, "DROP TABLE matih_feed; UPDATE matih_schema SET version = 1");
    let store = PostgresStore::connect(&url).unwrap();
    assert_eq!(store.get("acme").unwrap().unwrap().serial, 1);
    assert_eq!(store.feed_events("acme").unwrap(), []);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let version: i32 = rt.block_on(async {
        let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(conn);
        client.query_one("SELECT version FROM matih_schema", &[]).await.unwrap().get(0)
    });
    assert_eq!(version, matih::state::SCHEMA_VERSION);
    assert_eq!(version, 2);
}

#[test]
fn the_postgres_backend_needs_its_url_from_the_environment() {
    let dir = scratch("postgres");
    let out = crate::support::matih_command()
        .args(["state", "list"])
        .current_dir(dir.path())
        .env_remove("MATIH_STATE_URL")
        .env_remove("MATIH_PLATFORM_FILE")
        .env_remove("MATIH_STATE_DIR")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("MATIH_STATE_URL is not set"), "{}", stderr(&out));
    std::fs::write(dir.path().join("matih.hcl"), "state {\n  backend = \"postgres\"\n  url = \"postgresql://x\"\n}\n")
        .unwrap();
    let out = matih(dir.path(), "unused", &["validate"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("never from the platform file"), "{}", stderr(&out));
}

/// Not a test of its own: the body of a helper process (run by the tests below through the test
/// binary with `--ignored --exact`). Driven by environment variables.
#[test]
#[ignore = "helper process for the lock tests"]
fn helper_process() {
    // Run by hand (`--ignored`) without the variables: nothing to do.
    let Ok(url) = std::env::var("HELPER_URL") else { return };
    let store = PostgresStore::connect(&url).unwrap();
    match std::env::var("HELPER_MODE").unwrap().as_str() {
        // Take the lock of one tenant, say so, and hold it until killed.
        "hold" => {
            let slug = std::env::var("HELPER_SLUG").unwrap();
            store.lock(&LockInfo::new(&slug, "apply")).unwrap();
            println!("LOCKED");
            std::thread::sleep(Duration::from_secs(120));
        }
        other => panic!("unknown helper mode {other}"),
    }
}

fn helper(url: &str, mode: &str, vars: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--ignored", "--exact", "state_postgres::helper_process", "--nocapture", "--test-threads", "1"])
        .env("HELPER_URL", url)
        .env("HELPER_MODE", mode);
    for (k, v) in vars {
        cmd.env(k, v);
    }
    cmd
}

#[test]
fn a_live_holder_is_named_and_a_killed_holders_lock_is_gone_with_its_session() {
    use std::io::{BufRead, BufReader};
    let url = fresh_database();
    let mut holder = helper(&url, "hold", &[("HELPER_SLUG", "acme")]).stdout(Stdio::piped()).spawn().unwrap();
    let mut lines = BufReader::new(holder.stdout.take().unwrap()).lines();
    loop {
        let line = lines.next().expect("the holder says LOCKED").unwrap();
        if line.contains("LOCKED") {
            break;
        }
    }
    let store = PostgresStore::connect(&url).unwrap();
    let locks = store.locks().unwrap();
    assert_eq!(locks.len(), 1);
    assert_eq!((locks[0].slug.as_str(), locks[0].pid), ("acme", holder.id()));
    match store.lock(&LockInfo::new("acme", "apply")) {
        Err(StateError::Locked { holder: h, .. }) => assert_eq!(h.pid, holder.id()),
        other => panic!("expected Locked, got {other:?}"),
    }
    // The CLI names the holder too, and `lock list` shows it.
    let dir = scratch("postgres");
    let listed = ok(&matih(dir.path(), &url, &["lock", "list"]));
    assert!(listed.contains(&format!("(pid {})", holder.id())), "{listed}");
    let rm = matih(dir.path(), &url, &["state", "rm", "acme", "kubernetes_namespace.tenant"]);
    assert!(!rm.status.success());
    assert!(stderr(&rm).contains(&format!("pid {}", holder.id())), "{}", stderr(&rm));

    // kill -9: the session ends with the process, and the next lock is taken at once.
    holder.kill().unwrap();
    holder.wait().unwrap();
    let started = Instant::now();
    loop {
        match store.lock(&LockInfo::new("acme", "apply")) {
            Ok(()) => break,
            Err(StateError::Locked { .. }) if started.elapsed() < Duration::from_secs(5) => {
                std::thread::sleep(Duration::from_millis(20))
            }
            other => panic!("the killed holder's lock should be gone: {other:?}"),
        }
    }
    assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
    assert_eq!(store.locks().unwrap().len(), 1);
}

#[test]
fn committed_writes_arrive_on_the_change_feed_in_order() {
    let url = fresh_database();
    let store = PostgresStore::connect(&url).unwrap();
    let feed = store.changes().unwrap();
    let writer = PostgresStore::connect(&url).unwrap();
    let st = TenantState { serial: 1, ..TenantState::new("acme", "x") };
    writer.put(&st, None, "apply").unwrap();
    // A refused write notifies nothing.
    assert!(writer.put(&st, None, "apply").is_err());
    writer.put(&TenantState { serial: 2, ..st.clone() }, Some(1), "apply").unwrap();
    writer.remove("acme", 2, "destroy").unwrap();
    let got: Vec<String> = (0..3).filter_map(|_| feed.next(Duration::from_secs(5))).collect();
    assert_eq!(got, ["acme:1", "acme:2", "acme:removed"]);
    assert_eq!(feed.next(Duration::from_millis(200)), None);
}

/// A real run of the engine on the postgres backend: a destroy against the Kubernetes API test
/// server, refused while another process holds the tenant's lock (naming it), then carried out.
#[test]
fn destroy_runs_on_the_postgres_backend_and_a_locked_tenant_fails_naming_the_holder() {
    use std::io::{BufRead, BufReader};
    let url = fresh_database();
    let _claim = kube::claim_tenant("acme");
    let server = Kube::start();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("tenants")).unwrap();
    std::fs::copy(root().join("tenants/acme.hcl"), dir.path().join("tenants/acme.hcl")).unwrap();
    std::fs::write(
        dir.path().join("matih.hcl"),
        format!(
            "state {{\n  backend = \"postgres\"\n}}\nkubernetes {{\n  api_url = \"{}\"\n  poll_interval_ms = 20\n}}\n",
            server.url
        ),
    )
    .unwrap();
    let store = PostgresStore::connect(&url).unwrap();
    let mut st = applied_state(&compile_file(&dir.path().join("tenants/acme.hcl")));
    st.resources.retain(|a, _| a.kind.starts_with("kubernetes_"));
    store.put(&st, None, "test").unwrap();

    let mut holder = helper(&url, "hold", &[("HELPER_SLUG", "acme")]).stdout(Stdio::piped()).spawn().unwrap();
    let mut lines = BufReader::new(holder.stdout.take().unwrap()).lines();
    while !lines.next().expect("the holder says LOCKED").unwrap().contains("LOCKED") {}
    let out = matih(dir.path(), &url, &["destroy", "tenants/acme.hcl", "--auto-approve"]);
    assert!(!out.status.success());
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert!(text.contains(&format!("pid {}", holder.id())), "{text}");
    assert_eq!(store.get("acme").unwrap().unwrap().serial, 1, "nothing was changed");
    holder.kill().unwrap();
    holder.wait().unwrap();

    let text = ok(&matih(dir.path(), &url, &["destroy", "tenants/acme.hcl", "--auto-approve"]));
    assert!(text.contains("Destroy complete!"), "{text}");
    assert_eq!(store.get("acme").unwrap(), None);
    assert_eq!(store.history("acme").unwrap().pop().unwrap().state.status, matih::state::TenantStatus::Destroyed);
    assert!(store.audit("acme").unwrap().iter().any(|e| e.action == "run"), "the run is in the audit log");
    assert!(store.locks().unwrap().is_empty());
    let status = ok(&matih(dir.path(), &url, &["status", "acme"]));
    assert!(status.contains("DESTROYED"), "{status}");
}

/// `matih lock force-unlock` of a lock another live process holds: the row goes, the holder's
/// session is ended (it is declared dead), and the tenant can be locked again at once.
#[test]
fn force_unlock_releases_a_lock_held_by_another_live_session() {
    use std::io::{BufRead, BufReader};
    let url = fresh_database();
    let mut holder = helper(&url, "hold", &[("HELPER_SLUG", "acme")]).stdout(Stdio::piped()).spawn().unwrap();
    let mut lines = BufReader::new(holder.stdout.take().unwrap()).lines();
    while !lines.next().expect("the holder says LOCKED").unwrap().contains("LOCKED") {}
    let store = PostgresStore::connect(&url).unwrap();
    let id = store.locks().unwrap()[0].id.clone();
    let dir = scratch("postgres");
    let wrong = matih(dir.path(), &url, &["lock", "force-unlock", "acme", "not-the-id"]);
    assert!(!wrong.status.success());
    assert_eq!(store.locks().unwrap().len(), 1);
    ok(&matih(dir.path(), &url, &["lock", "force-unlock", "acme", &id]));
    assert!(store.locks().unwrap().is_empty());
    store.lock(&LockInfo::new("acme", "apply")).unwrap();
    holder.kill().unwrap();
    holder.wait().unwrap();
}
