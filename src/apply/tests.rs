//! Apply engine tests against an in-memory store and a scripted provider.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;
use crate::graph::{Resource, ResourceGraph, TenantMeta};
use crate::plan::diff;
use crate::provider::ProviderFuture;
use crate::state::MemoryStore;
use crate::value::{fingerprint, Secret};

/// A writer whose bytes the test can read afterwards (the hooks' tests write to it).
#[derive(Clone, Default)]
pub(super) struct Buf(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Buf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Buf {
    pub(super) fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

/// A provider that records calls, gives every `kubernetes_service` an IP, fingerprints generated
/// secrets, and fails as scripted.
#[derive(Default)]
struct Scripted {
    calls: Mutex<Vec<String>>,
    /// Address → (remaining transient failures, permanent failure).
    failures: Mutex<BTreeMap<String, (u32, bool)>>,
    live: Mutex<BTreeSet<String>>,
    /// An address whose apply creates the object, then never returns (a process killed there).
    hang: Mutex<Option<String>>,
}

impl Scripted {
    fn fail(&self, addr: &str, transient: u32, permanent: bool) {
        self.failures.lock().unwrap().insert(addr.into(), (transient, permanent));
    }

    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }

    fn check(&self, addr: &ResourceAddr) -> Result<(), ProviderError> {
        let mut f = self.failures.lock().unwrap();
        if let Some((transient, permanent)) = f.get_mut(&addr.to_string()) {
            if *transient > 0 {
                *transient -= 1;
                return Err(ProviderError {
                    address: addr.clone(),
                    path: None,
                    message: "503 busy".into(),
                    transient: true,
                });
            }
            if *permanent {
                return Err(ProviderError {
                    address: addr.clone(),
                    path: Some("spec".into()),
                    message: "422 invalid".into(),
                    transient: false,
                });
            }
        }
        Ok(())
    }
}

fn fill(v: &Value) -> Value {
    match v {
        Value::Computed { .. } => Value::str("2026-02-12T10:00:00Z"),
        Value::Secret(s) if s.fingerprint.is_none() => {
            Value::Secret(Secret { source: s.source.clone(), fingerprint: Some(fingerprint("generated")) })
        }
        Value::Map(m) => Value::Map(m.iter().map(|(k, v)| (k.clone(), fill(v))).collect()),
        Value::List(l) => Value::List(l.iter().map(fill).collect()),
        other => other.clone(),
    }
}

impl Provider for Scripted {
    fn handles(&self, kind: &str) -> bool {
        kind.starts_with("k")
    }

    fn read<'a>(&'a self, _t: &'a TenantRef, r: &'a ResourceObject) -> ProviderFuture<'a, Option<Observed>> {
        Box::pin(async move {
            self.calls.lock().unwrap().push(format!("read {}", r.addr));
            Ok(self.live.lock().unwrap().contains(&r.addr.to_string()).then(|| Observed {
                attrs: r.attrs.iter().map(|(k, v)| (k.clone(), fill(v))).collect(),
                ..Observed::default()
            }))
        })
    }

    fn apply<'a>(&'a self, _t: &'a TenantRef, r: &'a ResourceObject) -> ProviderFuture<'a, Observed> {
        Box::pin(async move {
            assert!(!r.attrs.values().any(|v| matches!(v, Value::Ref { .. })), "refs resolved before apply");
            self.calls.lock().unwrap().push(format!("apply {}", r.addr));
            tokio::time::sleep(Duration::from_millis(2)).await;
            self.check(&r.addr)?;
            self.live.lock().unwrap().insert(r.addr.to_string());
            if self.hang.lock().unwrap().as_deref() == Some(&r.addr.to_string()) {
                std::future::pending::<()>().await;
            }
            let mut outputs = BTreeMap::new();
            if r.addr.kind == "kubernetes_service" {
                outputs.insert("ip".to_string(), Value::str("10.0.0.7"));
            }
            Ok(Observed {
                attrs: r.attrs.iter().map(|(k, v)| (k.clone(), fill(v))).collect(),
                outputs,
                ..Observed::default()
            })
        })
    }

    fn delete<'a>(&'a self, _t: &'a TenantRef, r: &'a ResourceObject) -> ProviderFuture<'a, ()> {
        Box::pin(async move {
            self.calls.lock().unwrap().push(format!("delete {}", r.addr));
            self.live.lock().unwrap().remove(&r.addr.to_string());
            Ok(())
        })
    }
}

fn res(addr: &str, phase: u8, deps: &[&str], attrs: &[(&str, Value)]) -> Resource {
    Resource {
        addr: addr.parse().unwrap(),
        phase: Phase::from_number(phase).unwrap(),
        attrs: attrs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect(),
        depends_on: deps.iter().map(|d| d.parse().unwrap()).collect(),
        force_new: ["name".to_string()].into_iter().collect(),
        origin: None,
    }
}

fn graph(replicas: i64) -> ResourceGraph {
    let meta = TenantMeta {
        slug: "acme".into(),
        id: "id-1".into(),
        tier: "free".into(),
        region: "eastus".into(),
        source: None,
    };
    let mut g = ResourceGraph::new(meta);
    g.add(res(
        "k_namespace.tenant",
        1,
        &[],
        &[("name", "matih-acme".into()), ("at", Value::Computed { note: "t".into() })],
    ));
    g.add(res(
        "k_secret.db",
        2,
        &["k_namespace.tenant"],
        &[("pw", Value::Secret(Secret { source: "generated".into(), fingerprint: None }))],
    ));
    g.add(res("k_deployment.a", 3, &["k_secret.db"], &[("replicas", Value::Int(replicas))]));
    g.add(res("k_deployment.b", 3, &["k_deployment.a"], &[("replicas", Value::Int(1))]));
    g.add(res("k_deployment.c", 3, &[], &[("replicas", Value::Int(1))]));
    g.add(res("kubernetes_service.lb", 6, &[], &[("type", "LoadBalancer".into())]));
    g.add(res(
        "k_record.api",
        7,
        &[],
        &[("ip", Value::Ref { resource: "kubernetes_service.lb".parse().unwrap(), output: "ip".into() })],
    ));
    assert!(g.connect().is_empty());
    g
}

fn fast() -> ApplyOptions {
    ApplyOptions {
        initial_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(4),
        ..ApplyOptions::default()
    }
}

#[tokio::test]
async fn applies_every_phase_in_order_and_records_outputs() {
    let store = MemoryStore::default();
    let p = Arc::new(Scripted::default());
    let providers = Providers::new().with(p.clone());
    let plan = diff(&graph(1), None, None);
    let report = apply_tenant(&plan, &store, &providers, &NoHooks, &fast()).await.unwrap();
    assert_eq!(report.status, TenantStatus::Active);
    let calls = p.calls();
    let pos = |s: &str| calls.iter().position(|c| c == s).unwrap_or_else(|| panic!("{s} in {calls:?}"));
    assert!(pos("apply k_namespace.tenant") < pos("apply k_secret.db"));
    assert!(pos("apply k_secret.db") < pos("apply k_deployment.a"));
    assert!(pos("apply k_deployment.a") < pos("apply k_deployment.b"));
    assert!(pos("apply k_deployment.b") < pos("apply kubernetes_service.lb"));
    let st = store.get("acme").unwrap().unwrap();
    assert_eq!(st.status, TenantStatus::Active);
    assert!(st.provisioning_completed_at.is_some());
    let api = &st.resources[&"k_record.api".parse().unwrap()];
    assert_eq!(api.attrs["ip"], Value::str("10.0.0.7"), "the LoadBalancer IP flowed to the record");
    // One write per operation and per phase boundary: the state is never behind the real world.
    assert!(st.serial >= 7 + 5, "serial {}", st.serial);
    // A second plan against the recorded state has nothing to do.
    let again = diff(&graph(1), Some(&st), None);
    assert!(
        !again.has_changes(),
        "{:?}",
        again.resource_changes.iter().filter(|c| c.action != Action::NoOp).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn transient_errors_are_retried_and_permanent_ones_roll_back_the_phase() {
    let store = MemoryStore::default();
    let p = Arc::new(Scripted::default());
    p.fail("k_deployment.a", 2, false);
    p.fail("k_deployment.b", 0, true);
    let providers = Providers::new().with(p.clone());
    let plan = diff(&graph(1), None, None);
    let err = apply_tenant(&plan, &store, &providers, &NoHooks, &fast()).await.unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("phase 3/10 DEPLOY_CORE_SERVICES"), "{msg}");
    assert!(msg.contains("k_deployment.b (spec): 422 invalid"), "{msg}");
    let calls = p.calls();
    assert_eq!(calls.iter().filter(|c| *c == "apply k_deployment.a").count(), 3, "two retries: {calls:?}");
    assert!(calls.contains(&"delete k_deployment.a".to_string()), "rolled back: {calls:?}");
    assert!(!calls.iter().any(|c| c == "apply kubernetes_service.lb"), "later phases never start");
    let st = store.get("acme").unwrap().unwrap();
    assert_eq!(st.status, TenantStatus::Failed);
    assert_eq!(st.current_phase, Some(Phase::DeployCoreServices));
    assert!(st.provisioning_error.as_deref().unwrap().contains("422 invalid"));
    assert!(st.resources.contains_key(&"k_secret.db".parse().unwrap()), "earlier phases stay");
    assert!(!st.resources.contains_key(&"k_deployment.a".parse().unwrap()), "the failed phase was rolled back");
    assert!(store.locks().unwrap().is_empty(), "the lock is released after a failure");

    // Resume: the next plan against the recorded state re-creates only phase 3 onwards.
    p.fail("k_deployment.b", 0, false);
    let plan = diff(&graph(1), Some(&st), None);
    let report = apply_tenant(&plan, &store, &providers, &NoHooks, &fast()).await.unwrap();
    assert_eq!(report.status, TenantStatus::Active);
    assert!(!report.operations.iter().any(|(a, _)| a.to_string() == "k_namespace.tenant"));
}

#[tokio::test]
async fn a_plan_made_against_an_older_state_is_refused() {
    let store = MemoryStore::default();
    let providers = Providers::new().with(Arc::new(Scripted::default()));
    let plan = diff(&graph(1), None, None);
    apply_tenant(&plan, &store, &providers, &NoHooks, &fast()).await.unwrap();
    let err = apply_tenant(&plan, &store, &providers, &NoHooks, &fast()).await.unwrap_err();
    assert!(matches!(err, ApplyError::StateMoved { .. }), "{err}");
}

#[tokio::test]
async fn removed_resources_are_deleted_in_reverse_order_and_a_missing_provider_is_named() {
    let store = MemoryStore::default();
    let p = Arc::new(Scripted::default());
    let providers = Providers::new().with(p.clone());
    apply_tenant(&diff(&graph(1), None, None), &store, &providers, &NoHooks, &fast()).await.unwrap();
    let st = store.get("acme").unwrap().unwrap();
    let meta = TenantMeta {
        slug: "acme".into(),
        id: "id-1".into(),
        tier: "free".into(),
        region: "eastus".into(),
        source: None,
    };
    let empty = ResourceGraph::new(meta);
    let plan = diff(&empty, Some(&st), None);
    let report =
        apply_tenant(&plan, &store, &providers, &NoHooks, &ApplyOptions { operation: Operation::Destroy, ..fast() })
            .await
            .unwrap();
    assert_eq!(report.status, TenantStatus::Destroyed);
    let calls = p.calls();
    let pos = |s: &str| calls.iter().position(|c| c == s).unwrap_or_else(|| panic!("{s} in {calls:?}"));
    assert!(pos("delete k_record.api") < pos("delete kubernetes_service.lb"));
    assert!(pos("delete k_deployment.b") < pos("delete k_deployment.a"));
    assert!(pos("delete k_secret.db") < pos("delete k_namespace.tenant"));
    // The destroyed tenant's state is removed; its last state (DESTROYED) is history, and the
    // audit log stays.
    assert_eq!(store.get("acme").unwrap(), None);
    let history = store.history("acme").unwrap();
    let last = history.last().unwrap();
    assert_eq!((last.state.status, last.operation.as_str()), (TenantStatus::Destroyed, "destroy"));
    assert!(last.state.resources.is_empty());
    let audit = store.audit("acme").unwrap();
    assert!(audit.iter().any(|e| e.action == "run" && e.outcome == "destroyed"), "{audit:?}");

    let nobody = Providers::new();
    let err = apply_tenant(&diff(&graph(1), None, None), &MemoryStore::default(), &nobody, &NoHooks, &fast())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no provider handles"), "{err}");
}

/// Hooks that record every event as a line.
#[derive(Default)]
struct Recorder(Mutex<Vec<String>>);

impl Hooks for Recorder {
    fn tenant_started(&self, tenant: &str, changes: usize) {
        self.0.lock().unwrap().push(format!("start {tenant} {changes}"));
    }
    fn tenant_finished(&self, tenant: &str, outcome: &RunOutcome) {
        self.0.lock().unwrap().push(format!("finish {tenant} {:?} {}", outcome.status, outcome.error.is_some()));
    }
}

#[tokio::test]
async fn a_run_killed_mid_operation_leaves_write_ahead_records_that_refresh_and_apply_adopt() {
    let store = MemoryStore::default();
    let p = Arc::new(Scripted::default());
    *p.hang.lock().unwrap() = Some("k_deployment.a".into());
    let providers = Providers::new().with(p.clone());
    let plan = diff(&graph(1), None, None);
    // The run is dropped while k_deployment.a hangs after creating its object: a kill -9 as far
    // as the state store can tell.
    let killed = tokio::time::timeout(
        Duration::from_millis(300),
        apply_tenant(&plan, &store, &providers, &NoHooks, &ApplyOptions { parallelism: 1, ..fast() }),
    )
    .await;
    assert!(killed.is_err(), "the run hangs");
    let st = store.get("acme").unwrap().unwrap();
    assert!(st.resources.contains_key(&"k_secret.db".parse().unwrap()), "finished work is recorded");
    let wal = &st.in_flight[&"k_deployment.a".parse().unwrap()];
    assert_eq!((wal.action.as_str(), wal.phase), ("create", Phase::DeployCoreServices));
    assert_eq!(wal.attrs["replicas"], Value::Int(1));
    assert!(!st.resources.contains_key(&"k_deployment.a".parse().unwrap()));
    assert!(p.live.lock().unwrap().contains("k_deployment.a"), "the object exists");
    let (_, killed_lock) = (store.locks().unwrap().len(), store.locks().unwrap()[0].clone());
    store.unlock("acme", &killed_lock.id).unwrap(); // the dead process's lock (taken over when stale)

    // Refresh adopts the object, so the plan does not create it again.
    *p.hang.lock().unwrap() = None;
    let r = refresh(&st, &providers, 4).await;
    assert_eq!(r.adopted, vec!["k_deployment.a".parse().unwrap()]);
    let refreshed = r.state.unwrap();
    assert!(refreshed.in_flight.is_empty());
    let plan = diff(&graph(1), Some(&refreshed), None);
    let a = plan.resource_changes.iter().find(|c| c.address.to_string() == "k_deployment.a").unwrap();
    assert_eq!(a.action, Action::NoOp);

    // The apply records it too (from its own read of the write-ahead record) and finishes the rest.
    let calls_before = p.calls().len();
    let report = apply_tenant(&plan, &store, &providers, &NoHooks, &fast()).await.unwrap();
    assert_eq!(report.status, TenantStatus::Active);
    let calls = p.calls()[calls_before..].to_vec();
    assert!(!calls.contains(&"apply k_deployment.a".to_string()), "not created twice: {calls:?}");
    assert!(calls.contains(&"apply k_deployment.b".to_string()), "{calls:?}");
    let st = store.get("acme").unwrap().unwrap();
    assert!(st.in_flight.is_empty());
    assert!(st.resources.contains_key(&"k_deployment.a".parse().unwrap()));
    assert!(!diff(&graph(1), Some(&st), None).has_changes());
    let audit = store.audit("acme").unwrap();
    assert!(
        audit.iter().any(|e| e.action == "recover" && e.outcome == "adopted"),
        "{:?}",
        audit.iter().map(|e| (&e.action, &e.outcome)).collect::<Vec<_>>()
    );
}

/// A store that keeps every state written to it, in order, to check the write discipline.
#[derive(Default)]
struct Writes {
    inner: MemoryStore,
    log: Mutex<Vec<TenantState>>,
}

impl StateStore for Writes {
    fn tenants(&self) -> Result<Vec<String>, StateError> {
        self.inner.tenants()
    }
    fn get(&self, slug: &str) -> Result<Option<TenantState>, StateError> {
        self.inner.get(slug)
    }
    fn put_audited(
        &self,
        state: &TenantState,
        expected: Option<u64>,
        operation: &str,
        audit: &[crate::state::AuditEntry],
    ) -> Result<(), StateError> {
        self.log.lock().unwrap().push(state.clone());
        self.inner.put_audited(state, expected, operation, audit)
    }
    fn remove(&self, slug: &str, expected: u64, operation: &str) -> Result<(), StateError> {
        self.inner.remove(slug, expected, operation)
    }
    fn history(&self, slug: &str) -> Result<Vec<crate::state::HistoryEntry>, StateError> {
        self.inner.history(slug)
    }
    fn lock(&self, info: &crate::state::LockInfo) -> Result<(), StateError> {
        self.inner.lock(info)
    }
    fn unlock(&self, slug: &str, id: &str) -> Result<(), StateError> {
        self.inner.unlock(slug, id)
    }
    fn locks(&self) -> Result<Vec<crate::state::LockInfo>, StateError> {
        self.inner.locks()
    }
    fn append_audit(&self, slug: &str, entries: &[crate::state::AuditEntry]) -> Result<(), StateError> {
        self.inner.append_audit(slug, entries)
    }
    fn audit(&self, slug: &str) -> Result<Vec<crate::state::AuditEntry>, StateError> {
        self.inner.audit(slug)
    }
}

#[tokio::test]
async fn every_operation_is_written_ahead_and_the_audit_log_follows_each_write() {
    let store = Writes::default();
    let p = Arc::new(Scripted::default());
    let providers = Providers::new().with(p.clone());
    let hooks = Recorder::default();
    apply_tenant(&diff(&graph(1), None, None), &store, &providers, &hooks, &fast()).await.unwrap();
    // A run's intermediate states are not history: one run leaves no history for a new tenant.
    assert!(store.history("acme").unwrap().is_empty());
    let history: Vec<crate::state::HistoryEntry> = store
        .log
        .lock()
        .unwrap()
        .iter()
        .map(|s| crate::state::HistoryEntry {
            serial: s.serial,
            at: String::new(),
            operation: String::new(),
            state: s.clone(),
        })
        .collect();
    // Every resource appears in flight in some earlier serial, before it is recorded.
    for addr in ["k_namespace.tenant", "k_deployment.b", "k_record.api"] {
        let addr: ResourceAddr = addr.parse().unwrap();
        let first_in_flight = history.iter().position(|h| h.state.in_flight.contains_key(&addr)).unwrap();
        let first_recorded = history.iter().position(|h| h.state.resources.contains_key(&addr));
        assert!(first_recorded.is_none_or(|r| r > first_in_flight), "{addr}");
    }
    let st = store.get("acme").unwrap().unwrap();
    assert!(st.in_flight.is_empty());
    assert!(st.provisioning_duration_ms.is_some(), "total duration recorded");
    let audit = store.audit("acme").unwrap();
    let ops: Vec<_> = audit.iter().filter(|e| e.resource.is_some()).collect();
    assert_eq!(ops.len(), 7, "one entry per resource operation");
    assert!(ops.iter().all(|e| e.outcome == "ok" && e.duration_ms.is_some() && e.phase.is_some()));
    let phases = audit.iter().filter(|e| e.action == "phase" && e.outcome == "completed").count();
    assert_eq!(phases, 5, "phases 1, 2, 3, 6, 7 have resources");
    assert_eq!(audit.first().map(|e| (e.action.as_str(), e.outcome.as_str())), Some(("run", "started")));
    assert_eq!(audit.last().map(|e| (e.action.as_str(), e.outcome.as_str())), Some(("run", "ok")));
    assert!(audit.iter().all(|e| e.tenant == "acme" && e.operation == "apply" && !e.run_id.is_empty()));
    let text = serde_json::to_string(&audit).unwrap();
    assert!(!text.contains("sha256:"), "no attribute values in the audit log");
    assert_eq!(*hooks.0.lock().unwrap(), ["start acme 7", "finish acme Active false"]);

    // A second run files the state the first one left, once, however many writes it makes.
    let first = store.get("acme").unwrap().unwrap();
    apply_tenant(&diff(&graph(2), Some(&first), None), &store, &providers, &NoHooks, &fast()).await.unwrap();
    let history = store.history("acme").unwrap();
    assert_eq!(history.iter().map(|h| h.serial).collect::<Vec<_>>(), [first.serial]);
    assert_eq!(history[0].state.status, TenantStatus::Active);
}

#[tokio::test]
async fn halt_leaves_the_failed_phase_as_it_is() {
    let store = MemoryStore::default();
    let p = Arc::new(Scripted::default());
    p.fail("k_deployment.b", 0, true);
    let providers = Providers::new().with(p.clone());
    let hooks = Recorder::default();
    let opts = ApplyOptions { on_failure: OnFailure::Halt, ..fast() };
    let err = apply_tenant(&diff(&graph(1), None, None), &store, &providers, &hooks, &opts).await.unwrap_err();
    assert!(matches!(err, ApplyError::Failed { ref rolled_back, .. } if rolled_back.is_empty()), "{err}");
    assert!(!p.calls().iter().any(|c| c.starts_with("delete")), "nothing rolled back: {:?}", p.calls());
    let st = store.get("acme").unwrap().unwrap();
    assert_eq!(st.status, TenantStatus::Failed);
    assert!(st.resources.contains_key(&"k_deployment.a".parse().unwrap()), "kept for debugging");
    assert_eq!(st.phases[&Phase::DeployCoreServices].state, crate::state::PhaseState::Halted);
    let e = st.provisioning_error.unwrap();
    assert!(e.starts_with("phase 3/10 DEPLOY_CORE_SERVICES: k_deployment.b (spec): 422 invalid"), "{e}");
    assert!(st.in_flight.is_empty(), "the failed operation's record went with its outcome");
    assert_eq!(hooks.0.lock().unwrap().last().unwrap(), "finish acme Failed true");
    let audit = store.audit("acme").unwrap();
    assert!(audit.iter().any(|e| e.resource.as_ref().is_some_and(|r| r.to_string() == "k_deployment.b")
        && e.outcome == "failed"
        && e.message.as_deref().is_some_and(|m| m.contains("422 invalid"))));
}

#[tokio::test]
async fn a_second_run_waits_for_the_lock_up_to_the_timeout_and_names_the_holder() {
    let store = MemoryStore::default();
    let providers = Providers::new().with(Arc::new(Scripted::default()));
    let holder = LockInfo::new("acme", "apply");
    store.lock(&holder).unwrap();
    let plan = diff(&graph(1), None, None);
    let err = apply_tenant(&plan, &store, &providers, &NoHooks, &fast()).await.unwrap_err();
    assert!(err.to_string().contains(&format!("lock id {}", holder.id)), "{err}");
    assert!(err.to_string().contains("nothing was changed (use --lock-timeout to wait for it)"), "{err}");
    let started = std::time::Instant::now();
    let opts = ApplyOptions { lock_timeout: Duration::from_millis(300), ..fast() };
    let err = apply_tenant(&plan, &store, &providers, &NoHooks, &opts).await.unwrap_err();
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert!(err.to_string().contains("still locked after waiting 300ms"), "{err}");
    // Released while the second run waits: it goes ahead.
    let store = Arc::new(store);
    let s2 = store.clone();
    let id = holder.id.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        s2.unlock("acme", &id).unwrap();
    });
    let opts = ApplyOptions { lock_timeout: Duration::from_secs(5), ..fast() };
    let report = apply_tenant(&plan, store.as_ref(), &providers, &NoHooks, &opts).await.unwrap();
    assert_eq!(report.status, TenantStatus::Active);
}

#[tokio::test]
async fn a_protected_database_is_not_deleted_without_allow_data_loss() {
    let store = MemoryStore::default();
    let p = Arc::new(Scripted::default());
    let providers = Providers::new().with(p.clone()).with(Arc::new(Pg));
    let mut g = graph(1);
    g.add(res("postgresql_schema.tenant", 2, &[], &[("name", "tenant_acme".into())]));
    assert!(g.connect().is_empty());
    apply_tenant(&diff(&g, None, None), &store, &providers, &NoHooks, &fast()).await.unwrap();
    let st = store.get("acme").unwrap().unwrap();
    let empty = ResourceGraph::new(g.tenant.clone());
    let destroy = diff(&empty, Some(&st), None);
    assert_eq!(data_loss(&destroy).len(), 1);
    let protected =
        ApplyOptions { operation: Operation::Destroy, protected: ["acme".to_string()].into_iter().collect(), ..fast() };
    let err = apply_tenant(&destroy, &store, &providers, &NoHooks, &protected).await.unwrap_err();
    assert!(matches!(err, ApplyError::Protected { .. }), "{err}");
    assert!(err.to_string().contains("postgresql_schema.tenant"), "{err}");
    assert_eq!(store.get("acme").unwrap().unwrap().serial, st.serial, "nothing was changed");
    let allowed = ApplyOptions { allow_data_loss: true, ..protected };
    let report = apply_tenant(&destroy, &store, &providers, &NoHooks, &allowed).await.unwrap();
    assert_eq!(report.status, TenantStatus::Destroyed);
}

/// Handles `postgresql_*` and always succeeds.
struct Pg;

impl Provider for Pg {
    fn handles(&self, kind: &str) -> bool {
        kind.starts_with("postgresql_")
    }
    fn read<'a>(&'a self, _t: &'a TenantRef, _r: &'a ResourceObject) -> ProviderFuture<'a, Option<Observed>> {
        Box::pin(async { Ok(None) })
    }
    fn apply<'a>(&'a self, _t: &'a TenantRef, r: &'a ResourceObject) -> ProviderFuture<'a, Observed> {
        Box::pin(async move { Ok(Observed { attrs: r.attrs.clone(), ..Observed::default() }) })
    }
    fn delete<'a>(&'a self, _t: &'a TenantRef, _r: &'a ResourceObject) -> ProviderFuture<'a, ()> {
        Box::pin(async { Ok(()) })
    }
}

/// The test graph for another tenant.
fn tenant_graph(slug: &str) -> ResourceGraph {
    let mut g = graph(1);
    g.tenant.slug = slug.into();
    g.tenant.id = format!("id-{slug}");
    g
}

/// Plans again from the graphs, as `workflow::Replanner` does (without refresh).
struct FromGraphs(BTreeMap<String, ResourceGraph>);

impl Replan for FromGraphs {
    fn replan<'a>(
        &'a self,
        planned: &'a TenantPlan,
        found: Option<&'a TenantState>,
        _providers: &'a Providers,
    ) -> BoxFuture<'a, Result<TenantPlan, String>> {
        Box::pin(async move { Ok(diff(&self.0[&planned.slug], found, None)) })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_runs_over_one_fleet_apply_each_tenant_exactly_once() {
    let store: Arc<dyn StateStore> = Arc::new(MemoryStore::default());
    let p = Arc::new(Scripted::default());
    let providers = Providers::new().with(p.clone());
    let slugs: Vec<String> = (0..8).map(|i| format!("t{i}")).collect();
    let graphs: BTreeMap<String, ResourceGraph> = slugs.iter().map(|s| (s.clone(), tenant_graph(s))).collect();
    let plans: Vec<TenantPlan> = graphs.values().map(|g| diff(g, None, None)).collect();
    let replan: Arc<dyn Replan> = Arc::new(FromGraphs(graphs.clone()));
    let fleet = FleetOptions {
        tenant_parallelism: 2,
        replan: Some(replan),
        poll: Duration::from_millis(5),
        wait_for_others: None,
    };
    let run = |plans: Vec<TenantPlan>| {
        apply_fleet(plans, store.clone(), providers.clone(), Arc::new(NoHooks), fast(), fleet.clone())
    };
    let (a, b) = tokio::join!(run(plans.clone()), run(plans.clone()));
    let reports: Vec<ApplyReport> = a.into_iter().chain(b).map(Result::unwrap).collect();
    let applied: Vec<&str> = reports.iter().filter(|r| !r.overtaken()).map(|r| r.slug.as_str()).collect();
    let mut sorted = applied.clone();
    sorted.sort();
    assert_eq!(sorted, slugs.iter().map(String::as_str).collect::<Vec<_>>(), "each tenant applied by one run");
    assert_eq!(reports.iter().filter(|r| r.overtaken()).count(), slugs.len(), "the other run found nothing left");
    let creates = p.calls().iter().filter(|c| c.starts_with("apply k_namespace")).count();
    assert_eq!(creates, slugs.len(), "one namespace create per tenant");
    for s in &slugs {
        let st = store.get(s).unwrap().unwrap();
        assert_eq!(st.status, TenantStatus::Active);
        assert_eq!(st.resources.len(), 7);
        // One run recorded per tenant in the audit log.
        let runs = store.audit(s).unwrap().iter().filter(|e| e.action == "run" && e.outcome == "started").count();
        assert_eq!(runs, 1, "{s}");
    }
    assert!(store.locks().unwrap().is_empty());
}

#[tokio::test]
async fn a_single_tenant_held_by_another_run_fails_at_once_or_waits_for_it_with_a_timeout() {
    let store: Arc<dyn StateStore> = Arc::new(MemoryStore::default());
    let p = Arc::new(Scripted::default());
    let providers = Providers::new().with(p.clone());
    let g = tenant_graph("acme");
    let plan = diff(&g, None, None);
    let replan: Arc<dyn Replan> = Arc::new(FromGraphs([("acme".to_string(), g.clone())].into()));
    let fleet = FleetOptions { replan: Some(replan), poll: Duration::from_millis(5), ..FleetOptions::default() };
    let other = LockInfo::new("acme", "apply");
    store.lock(&other).unwrap();

    let run = |opts: ApplyOptions| {
        apply_fleet(vec![plan.clone()], store.clone(), providers.clone(), Arc::new(NoHooks), opts, fleet.clone())
    };
    let r = run(fast()).await;
    match &r[0] {
        Err(e @ ApplyError::LockTimeout { source: StateError::Locked { holder, .. }, .. }) => {
            assert_eq!(holder.id, other.id);
            assert!(e.to_string().contains("nothing was changed (use --lock-timeout to wait for it)"), "{e}");
        }
        other => panic!("expected the holder to be named: {other:?}"),
    }
    assert!(p.calls().is_empty(), "nothing was changed");

    // With a timeout: the other run applies the tenant and lets go; this one finds nothing left.
    let opts = ApplyOptions { lock_timeout: Duration::from_secs(30), ..fast() };
    let (r, ()) = tokio::join!(run(opts), async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        store.unlock("acme", &other.id).unwrap();
        apply_tenant(&plan, store.as_ref(), &providers, &NoHooks, &fast()).await.unwrap();
    });
    // Either order is possible for who locks after the release; exactly one applies.
    let report = r.into_iter().next().unwrap().unwrap();
    assert!(report.overtaken() || report.operations.len() == 7, "{report:?}");
    assert_eq!(p.calls().iter().filter(|c| c.starts_with("apply k_namespace")).count(), 1);
}

#[tokio::test]
async fn a_reviewed_plan_is_never_planned_again_behind_the_users_back() {
    let store: Arc<dyn StateStore> = Arc::new(MemoryStore::default());
    let providers = Providers::new().with(Arc::new(Scripted::default()));
    let g = tenant_graph("acme");
    let plan = diff(&g, None, None);
    apply_tenant(&plan, store.as_ref(), &providers, &NoHooks, &fast()).await.unwrap();
    let r = apply_fleet(vec![plan], store.clone(), providers, Arc::new(NoHooks), fast(), FleetOptions::default()).await;
    assert!(matches!(&r[0], Err(ApplyError::StateMoved { .. })), "{r:?}");
}

#[tokio::test]
async fn a_reviewed_plan_over_several_tenants_does_not_wait_for_a_held_one_it_could_not_apply_anyway() {
    let store: Arc<dyn StateStore> = Arc::new(MemoryStore::default());
    let providers = Providers::new().with(Arc::new(Scripted::default()));
    let plans = vec![diff(&tenant_graph("a"), None, None), diff(&tenant_graph("b"), None, None)];
    let other = LockInfo::new("b", "apply");
    store.lock(&other).unwrap();
    let fleet = FleetOptions { poll: Duration::from_millis(5), ..FleetOptions::default() };
    let r = tokio::time::timeout(
        Duration::from_secs(10),
        apply_fleet(plans, store.clone(), providers, Arc::new(NoHooks), fast(), fleet),
    )
    .await
    .expect("does not wait for the holder");
    assert_eq!(r[0].as_ref().unwrap().operations.len(), 7);
    assert!(matches!(&r[1], Err(ApplyError::LockTimeout { waited, .. }) if waited.is_zero()), "{:?}", r[1]);
}
