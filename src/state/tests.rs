//! One test suite for the [`StateStore`] contract, written against `&dyn StateStore` and run for
//! every backend, plus tests of the helpers in `state`.

use std::collections::{BTreeMap, BTreeSet};

use super::*;
use crate::value::{fingerprint, Secret};

/// A tenant state with one resource holding every kind of value a state records.
pub(crate) fn sample_state(slug: &str, serial: u64) -> TenantState {
    let mut state = TenantState::new(slug, "550e8400-e29b-41d4-a716-446655440000");
    state.serial = serial;
    state.status = TenantStatus::Provisioning;
    state.current_phase = Some(Phase::SetupDatabase);
    let namespace = ResourceAddr::new("kubernetes_namespace", "tenant");
    let password = Value::Secret(Secret { source: "generated".into(), fingerprint: Some(fingerprint("hunter2")) });
    state.resources.insert(
        ResourceAddr::new("kubernetes_secret", "database_credentials"),
        ResourceState {
            phase: Phase::SetupDatabase,
            attrs: BTreeMap::from([
                ("name".to_string(), Value::str("tenant-database-credentials")),
                ("password".to_string(), password),
                ("serial".to_string(), Value::Int(serial as i64)),
            ]),
            outputs: BTreeMap::from([("uid".to_string(), Value::str("abc"))]),
            depends_on: BTreeSet::from([namespace]),
        },
    );
    state
}

/// A pid that belonged to a process that has exited and been reaped, so no process has it now
/// (barring pid reuse within the test's few microseconds).
fn dead_pid() -> u32 {
    let mut child = std::process::Command::new("true").spawn().expect("spawn `true`");
    let pid = child.id();
    child.wait().expect("wait for `true`");
    pid
}

fn round_trip(store: &dyn StateStore) {
    assert_eq!(store.tenants().unwrap(), Vec::<String>::new());
    assert_eq!(store.get("acme").unwrap(), None);
    let zeta = sample_state("zeta", 1);
    let acme = sample_state("acme", 1);
    store.put(&zeta, None, "apply").unwrap();
    store.put(&acme, None, "apply").unwrap();
    assert_eq!(store.get("acme").unwrap(), Some(acme));
    assert_eq!(store.get("zeta").unwrap(), Some(zeta));
    assert_eq!(store.get("acm").unwrap(), None);
    assert_eq!(store.tenants().unwrap(), vec!["acme".to_string(), "zeta".to_string()]);
    // Creating a tenant leaves no history: nothing was replaced.
    assert!(store.history("acme").unwrap().is_empty());
}

fn cas_conflicts(store: &dyn StateStore) {
    // Updating a tenant that does not exist.
    match store.put(&sample_state("acme", 2), Some(1), "apply") {
        Err(StateError::SerialConflict { slug, expected: Some(1), found: None }) => assert_eq!(slug, "acme"),
        other => panic!("expected a conflict, got {other:?}"),
    }
    let first = sample_state("acme", 1);
    store.put(&first, None, "apply").unwrap();
    // Creating a tenant that already exists.
    match store.put(&sample_state("acme", 1), None, "apply") {
        Err(StateError::SerialConflict { expected: None, found: Some(1), .. }) => {}
        other => panic!("expected a conflict, got {other:?}"),
    }
    // Two writers both read serial 1; the second one to write loses.
    let mut one = first.clone();
    one.serial = 2;
    one.status = TenantStatus::Active;
    let mut other = first.clone();
    other.serial = 2;
    other.status = TenantStatus::Failed;
    store.put(&one, Some(1), "apply").unwrap();
    match store.put(&other, Some(1), "apply") {
        Err(StateError::SerialConflict { expected: Some(1), found: Some(2), .. }) => {}
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(store.get("acme").unwrap(), Some(one.clone()));
    // A serial that does not follow the expected one is the caller's bug, and changes nothing.
    let mut skipped = one.clone();
    skipped.serial = 5;
    assert!(matches!(store.put(&skipped, Some(2), "apply"), Err(StateError::Invalid { .. })));
    assert!(matches!(store.put(&sample_state("new", 2), None, "apply"), Err(StateError::Invalid { .. })));
    assert!(matches!(store.put(&sample_state("", 1), None, "apply"), Err(StateError::Invalid { .. })));
    assert!(matches!(store.put(&sample_state("a\0b", 1), None, "apply"), Err(StateError::Invalid { .. })));
    assert_eq!(store.get("acme").unwrap(), Some(one));
    assert_eq!(store.tenants().unwrap(), vec!["acme".to_string()]);
    assert_eq!(store.history("acme").unwrap().len(), 1);
}

fn history_order(store: &dyn StateStore) {
    let mut state = sample_state("acme", 1);
    store.put(&state, None, "apply 1").unwrap();
    let mut written = vec![state.clone()];
    for serial in 2..=4 {
        state = sample_state("acme", serial);
        store.put(&state, Some(serial - 1), &format!("apply {serial}")).unwrap();
        written.push(state.clone());
    }
    // Another tenant's history must not mix in, even one whose slug extends this one.
    store.put(&sample_state("acme2", 1), None, "apply").unwrap();
    store.put(&sample_state("acme2", 2), Some(1), "apply").unwrap();

    let history = store.history("acme").unwrap();
    let serials: Vec<u64> = history.iter().map(|h| h.serial).collect();
    assert_eq!(serials, vec![1, 2, 3]);
    // Each replaced state is filed under the operation that replaced it.
    let operations: Vec<&str> = history.iter().map(|h| h.operation.as_str()).collect();
    assert_eq!(operations, vec!["apply 2", "apply 3", "apply 4"]);
    for (entry, original) in history.iter().zip(&written) {
        assert_eq!(&entry.state, original);
        assert_eq!(entry.at.len(), "2026-02-12T10:00:00Z".len());
    }
    assert_eq!(store.get("acme").unwrap(), Some(state));
    assert_eq!(store.history("acme2").unwrap().len(), 1);
    assert!(store.history("nobody").unwrap().is_empty());
}

fn remove(store: &dyn StateStore) {
    match store.remove("acme", 1, "state rm") {
        Err(StateError::SerialConflict { expected: Some(1), found: None, .. }) => {}
        other => panic!("expected a conflict, got {other:?}"),
    }
    let first = sample_state("acme", 1);
    store.put(&first, None, "apply").unwrap();
    let second = sample_state("acme", 2);
    store.put(&second, Some(1), "apply").unwrap();
    match store.remove("acme", 1, "state rm") {
        Err(StateError::SerialConflict { expected: Some(1), found: Some(2), .. }) => {}
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(store.get("acme").unwrap(), Some(second.clone()));

    store.remove("acme", 2, "state rm").unwrap();
    assert_eq!(store.get("acme").unwrap(), None);
    assert!(store.tenants().unwrap().is_empty());
    let history = store.history("acme").unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!((history[1].serial, history[1].operation.as_str()), (2, "state rm"));
    assert_eq!(history[1].state, second);

    // A tenant created again starts over at serial 1 and keeps its earlier history.
    let again = sample_state("acme", 1);
    store.put(&again, None, "apply").unwrap();
    store.put(&sample_state("acme", 2), Some(1), "apply again").unwrap();
    let history = store.history("acme").unwrap();
    let trail: Vec<(u64, &str, &str)> =
        history.iter().map(|h| (h.serial, h.operation.as_str(), h.state.lineage.as_str())).collect();
    assert_eq!(
        trail,
        vec![
            (1, "apply", first.lineage.as_str()),
            (2, "state rm", second.lineage.as_str()),
            (1, "apply again", again.lineage.as_str()),
        ]
    );
}

fn locks(store: &dyn StateStore) {
    let acme = LockInfo::new("acme", "apply");
    let beta = LockInfo::new("beta", "destroy");
    store.lock(&beta).unwrap();
    store.lock(&acme).unwrap();
    assert_eq!(store.locks().unwrap(), vec![acme.clone(), beta.clone()]);

    // A holder that is alive (this very process) blocks everyone else, and is named.
    let intruder = LockInfo::new("acme", "plan");
    match store.lock(&intruder) {
        Err(StateError::Locked { slug, holder }) => {
            assert_eq!(slug, "acme");
            assert_eq!(*holder, acme);
        }
        other => panic!("expected Locked, got {other:?}"),
    }

    // A foreign id cannot unlock, and leaves the lock in place.
    match store.unlock("acme", &intruder.id) {
        Err(StateError::NoSuchLock { slug, id }) => {
            assert_eq!((slug.as_str(), id.as_str()), ("acme", intruder.id.as_str()))
        }
        other => panic!("expected NoSuchLock, got {other:?}"),
    }
    assert!(matches!(store.unlock("nobody", &acme.id), Err(StateError::NoSuchLock { .. })));
    assert_eq!(store.locks().unwrap(), vec![acme.clone(), beta.clone()]);

    store.unlock("acme", &acme.id).unwrap();
    assert_eq!(store.locks().unwrap(), vec![beta.clone()]);
    assert!(matches!(store.unlock("acme", &acme.id), Err(StateError::NoSuchLock { .. })));
    store.lock(&intruder).unwrap();
    assert_eq!(store.locks().unwrap(), vec![intruder, beta]);
}

fn stale_lock_takeover(store: &dyn StateStore) {
    let dead = dead_pid();
    let mut crashed = LockInfo::new("acme", "apply");
    crashed.pid = dead;
    store.lock(&crashed).unwrap();
    let next = LockInfo::new("acme", "apply");
    store.lock(&next).unwrap();
    assert_eq!(store.locks().unwrap(), vec![next.clone()]);
    // The crashed holder's id no longer unlocks anything.
    assert!(matches!(store.unlock("acme", &crashed.id), Err(StateError::NoSuchLock { .. })));

    // A dead pid on another host proves nothing: that lock stays.
    let mut remote = LockInfo::new("beta", "apply");
    remote.pid = dead;
    remote.host = format!("not-{}", hostname());
    store.lock(&remote).unwrap();
    match store.lock(&LockInfo::new("beta", "apply")) {
        Err(StateError::Locked { holder, .. }) => assert_eq!(*holder, remote),
        other => panic!("expected Locked, got {other:?}"),
    }
}

fn live_child_holder_blocks(store: &dyn StateStore) {
    let mut child = std::process::Command::new("sleep").arg("30").spawn().expect("spawn `sleep`");
    let mut holder = LockInfo::new("acme", "apply");
    holder.pid = child.id();
    store.lock(&holder).unwrap();
    let blocked = store.lock(&LockInfo::new("acme", "apply"));
    child.kill().expect("kill `sleep`");
    child.wait().expect("wait for `sleep`");
    assert!(matches!(blocked, Err(StateError::Locked { .. })), "got {blocked:?}");
    // Once the holder has died, its lock is stale and can be taken over.
    store.lock(&LockInfo::new("acme", "apply")).unwrap();
}

fn audit_log(store: &dyn StateStore) {
    assert!(store.audit("acme").unwrap().is_empty());
    let entry = |action: &str, outcome: &str| {
        let mut e = AuditEntry::new("acme", "apply", action, outcome);
        e.phase = Some(Phase::CreateNamespace);
        e.duration_ms = Some(12);
        e
    };
    store.append_audit("acme", &[entry("run", "started")]).unwrap();
    store.put_audited(&sample_state("acme", 1), None, "apply", &[entry("create", "ok"), entry("phase", "ok")]).unwrap();
    store.append_audit("zeta", &[entry("run", "started")]).unwrap();
    // A refused write appends nothing.
    assert!(store.put_audited(&sample_state("acme", 1), None, "apply", &[entry("lost", "x")]).is_err());
    let log = store.audit("acme").unwrap();
    assert_eq!(
        log.iter().map(|e| (e.action.as_str(), e.outcome.as_str())).collect::<Vec<_>>(),
        [("run", "started"), ("create", "ok"), ("phase", "ok")]
    );
    assert_eq!(log[1], entry("create", "ok").with_at(&log[1].at));
    // The log outlives the tenant's state.
    store.remove("acme", 1, "destroy").unwrap();
    store.append_audit("acme", &[entry("run", "destroyed")]).unwrap();
    assert_eq!(store.audit("acme").unwrap().len(), 4);
    assert_eq!(store.audit("zeta").unwrap().len(), 1);
}

impl AuditEntry {
    fn with_at(mut self, at: &str) -> Self {
        self.at = at.to_string();
        self
    }
}

/// Runs every contract test against a fresh store of one backend.
macro_rules! contract_tests {
    ($backend:ident, $with_store:expr) => {
        mod $backend {
            use super::*;

            #[test]
            fn round_trip() {
                $with_store(super::round_trip)
            }
            #[test]
            fn cas_conflicts() {
                $with_store(super::cas_conflicts)
            }
            #[test]
            fn history_order() {
                $with_store(super::history_order)
            }
            #[test]
            fn remove() {
                $with_store(super::remove)
            }
            #[test]
            fn locks() {
                $with_store(super::locks)
            }
            #[test]
            fn audit_log() {
                $with_store(super::audit_log)
            }
            #[test]
            fn stale_lock_takeover() {
                $with_store(super::stale_lock_takeover)
            }
            #[test]
            fn live_child_holder_blocks() {
                $with_store(super::live_child_holder_blocks)
            }
        }
    };
}

fn with_memory(test: fn(&dyn StateStore)) {
    test(&MemoryStore::new())
}

fn with_sled(test: fn(&dyn StateStore)) {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(&dir.path().join("state")).unwrap();
    test(&store)
}

#[path = "../../tests/suite/support/postgres.rs"]
mod pg_support;

/// A fresh database on the test binary's throwaway PostgreSQL server, and its URL.
pub(crate) fn fresh_pg_database() -> String {
    let server = pg_support::server();
    let name = format!("matih_state_{}", uuid::Uuid::new_v4().simple());
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let (client, conn) = tokio_postgres::connect(&server.admin_url, tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(conn);
        client.batch_execute(&format!("CREATE DATABASE {name}")).await.unwrap();
    });
    format!("postgresql://postgres:{}@127.0.0.1:{}/{name}", server.admin_password, server.port)
}

fn with_postgres(test: fn(&dyn StateStore)) {
    let store = PostgresStore::connect(&fresh_pg_database()).unwrap();
    test(&store)
}

contract_tests!(memory_store, with_memory);
contract_tests!(sled_store, with_sled);
contract_tests!(postgres_store, with_postgres);

#[test]
fn now_is_rfc3339_utc_seconds() {
    let now = now_rfc3339();
    assert_eq!(now.len(), "2026-02-12T10:00:00Z".len(), "{now}");
    assert!(now.ends_with('Z'), "{now}");
    assert_eq!(&now[10..11], "T", "{now}");
    let parsed = humantime::parse_rfc3339(&now).unwrap();
    let age = std::time::SystemTime::now().duration_since(parsed).unwrap();
    assert!(age.as_secs() < 5, "{now} is {age:?} old");
}

#[test]
fn new_values_are_fresh_and_filled() {
    assert_ne!(new_lineage(), new_lineage());
    assert_eq!(uuid::Uuid::parse_str(&new_lineage()).unwrap().get_version_num(), 4);

    let state = TenantState::new("acme", "550e8400-e29b-41d4-a716-446655440000");
    assert_eq!((state.slug.as_str(), state.serial, state.status), ("acme", 0, TenantStatus::Pending));
    assert!(state.resources.is_empty());
    assert_ne!(state.lineage, TenantState::new("acme", "x").lineage);

    let lock = LockInfo::new("acme", "apply");
    assert_eq!((lock.slug.as_str(), lock.operation.as_str()), ("acme", "apply"));
    assert_eq!(lock.pid, std::process::id());
    assert_eq!(lock.host, hostname());
    assert!(!lock.host.is_empty() && !lock.who.is_empty());
    assert_ne!(lock.id, LockInfo::new("acme", "apply").id);
}

#[test]
fn this_process_is_alive_and_a_reaped_one_is_not() {
    let me = LockInfo::new("acme", "apply");
    assert!(!lock_is_stale(&me, &hostname()));
    let mut gone = me.clone();
    gone.pid = dead_pid();
    assert!(lock_is_stale(&gone, &hostname()));
    assert!(!lock_is_stale(&gone, "some-other-host"));
}

/// `(address, xmin)` of every resource row of `slug`: the transaction that last wrote each row.
fn pg_resource_rows(url: &str, slug: &str) -> BTreeMap<String, String> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(conn);
        let rows =
            client.query("SELECT address, xmin::text FROM matih_resources WHERE slug = $1", &[&slug]).await.unwrap();
        rows.iter().map(|r| (r.get(0), r.get(1))).collect()
    })
}

// Issue 16, item 5: a fleet's apply locks, writes and unlocks tenant after tenant through one
// store; what the store keeps to write incrementally must go with each tenant's lock, or its
// memory grows with the fleet.
#[test]
fn postgres_forgets_what_it_wrote_of_a_tenant_once_its_lock_is_released() {
    let store = PostgresStore::connect(&fresh_pg_database()).unwrap();
    for (i, slug) in ["acme", "globex", "initech"].into_iter().enumerate() {
        let lock = LockInfo::new(slug, "apply");
        store.lock(&lock).unwrap();
        let st = sample_state(slug, 1);
        store.put(&st, None, "apply").unwrap();
        let mut next = st.clone();
        next.serial = 2;
        store.put(&next, Some(1), "apply").unwrap();
        assert_eq!(store.remembered(), 1, "the tenant being written, after {i} released");
        store.unlock(slug, &lock.id).unwrap();
        assert_eq!(store.remembered(), 0, "{slug} is forgotten with its lock");
        assert_eq!(store.get(slug).unwrap().as_ref(), Some(&next));
    }
}

#[test]
fn postgres_writes_only_the_resources_that_changed_and_stays_exact_after_another_writer() {
    let url = fresh_pg_database();
    let (a, b) = (PostgresStore::connect(&url).unwrap(), PostgresStore::connect(&url).unwrap());
    let deployment = |name: &str, replicas: i64| {
        (
            ResourceAddr::new("kubernetes_deployment", name),
            ResourceState {
                phase: Phase::DeployCoreServices,
                attrs: BTreeMap::from([("replicas".to_string(), Value::Int(replicas))]),
                outputs: BTreeMap::new(),
                depends_on: BTreeSet::new(),
            },
        )
    };
    let mut st = sample_state("acme", 1);
    st.resources.extend((0..4).map(|i| deployment(&format!("d{i}"), 1)));
    a.put(&st, None, "apply").unwrap();
    let before = pg_resource_rows(&url, "acme");
    assert_eq!(before.len(), 5);

    // One changed, one removed, one added: only those rows are written.
    let mut next = st.clone();
    next.serial = 2;
    next.resources.extend([deployment("d0", 3), deployment("d9", 1)]);
    next.resources.remove(&ResourceAddr::new("kubernetes_deployment", "d1"));
    a.put(&next, Some(1), "apply").unwrap();
    assert_eq!(b.get("acme").unwrap().as_ref(), Some(&next));
    let after = pg_resource_rows(&url, "acme");
    assert_eq!(
        after.keys().collect::<Vec<_>>(),
        next.resources.keys().map(ToString::to_string).collect::<Vec<_>>().iter().collect::<Vec<_>>()
    );
    for unchanged in ["kubernetes_deployment.d2", "kubernetes_deployment.d3", "kubernetes_secret.database_credentials"]
    {
        assert_eq!(after[unchanged], before[unchanged], "{unchanged} was not written again");
    }
    assert_ne!(after["kubernetes_deployment.d0"], before["kubernetes_deployment.d0"]);

    // Another store writes serial 3; a write by the first over it cannot trust what it wrote
    // before, and the rows still come out exact.
    let mut third = next.clone();
    third.serial = 3;
    third.resources.remove(&ResourceAddr::new("kubernetes_deployment", "d2"));
    third.resources.extend([deployment("d3", 7)]);
    b.put(&third, Some(2), "apply").unwrap();
    let mut fourth = a.get("acme").unwrap().unwrap();
    assert_eq!(fourth, third);
    fourth.serial = 4;
    fourth.resources.extend([deployment("d9", 2)]);
    a.put(&fourth, Some(3), "apply").unwrap();
    assert_eq!(b.get("acme").unwrap().as_ref(), Some(&fourth));
    assert_eq!(pg_resource_rows(&url, "acme").len(), fourth.resources.len());

    // A failed write (serial conflict) forgets nothing it should not: the next write is exact too.
    assert!(a.put(&fourth, Some(3), "apply").is_err());
    let mut fifth = fourth.clone();
    fifth.serial = 5;
    fifth.resources.remove(&ResourceAddr::new("kubernetes_deployment", "d0"));
    a.put(&fifth, Some(4), "apply").unwrap();
    assert_eq!(b.get("acme").unwrap().as_ref(), Some(&fifth));
}
