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

/// A provider that records calls, gives every `kubernetes_service` an IP, fingerprints generated
/// secrets, and fails as scripted.
#[derive(Default)]
struct Scripted {
    calls: Mutex<Vec<String>>,
    /// Address → (remaining transient failures, permanent failure).
    failures: Mutex<BTreeMap<String, (u32, bool)>>,
    live: Mutex<BTreeSet<String>>,
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

    fn read<'a>(&'a self, _t: &'a TenantRef, _r: &'a ResourceObject) -> ProviderFuture<'a, Option<Observed>> {
        Box::pin(async { Ok(None) })
    }

    fn apply<'a>(&'a self, _t: &'a TenantRef, r: &'a ResourceObject) -> ProviderFuture<'a, Observed> {
        Box::pin(async move {
            assert!(!r.attrs.values().any(|v| matches!(v, Value::Ref { .. })), "refs resolved before apply");
            self.calls.lock().unwrap().push(format!("apply {}", r.addr));
            tokio::time::sleep(Duration::from_millis(2)).await;
            self.check(&r.addr)?;
            self.live.lock().unwrap().insert(r.addr.to_string());
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
        apply_tenant(&plan, &store, &providers, &NoHooks, &ApplyOptions { operation: "destroy".into(), ..fast() })
            .await
            .unwrap();
    assert_eq!(report.status, TenantStatus::Destroyed);
    let calls = p.calls();
    let pos = |s: &str| calls.iter().position(|c| c == s).unwrap_or_else(|| panic!("{s} in {calls:?}"));
    assert!(pos("delete k_record.api") < pos("delete kubernetes_service.lb"));
    assert!(pos("delete k_deployment.b") < pos("delete k_deployment.a"));
    assert!(pos("delete k_secret.db") < pos("delete k_namespace.tenant"));
    assert!(store.get("acme").unwrap().unwrap().resources.is_empty());

    let nobody = Providers::new();
    let err = apply_tenant(&diff(&graph(1), None, None), &MemoryStore::default(), &nobody, &NoHooks, &fast())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no provider handles"), "{err}");
}
