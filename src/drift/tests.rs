//! Drift engine tests with fake providers: classification, redaction, ownership, busy tenants,
//! bounded concurrency and the renderers.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;
use crate::graph::{Resource, ResourceGraph, TenantMeta};
use crate::provider::{Observed, Provider, ProviderFuture, YieldedField};
use crate::state::{ResourceState, TenantState, TenantStatus};
use crate::value::{fingerprint, Secret};

/// What the fake provider answers for each address: live attributes, gone, or an error.
#[derive(Clone)]
enum Live {
    Attrs(BTreeMap<String, Value>),
    Gone,
    Fails(&'static str),
    Hangs,
    /// Live attributes, with one field a controller (`kube-controller-manager`) took over.
    Yielded(BTreeMap<String, Value>, &'static str),
}

#[derive(Default)]
struct Fake {
    family: &'static str,
    live: Mutex<BTreeMap<String, Live>>,
    writes: AtomicUsize,
    running: AtomicUsize,
    max_running: AtomicUsize,
}

impl Provider for Fake {
    fn handles(&self, kind: &str) -> bool {
        kind.starts_with(self.family)
    }

    fn read<'a>(&'a self, _t: &'a TenantRef, r: &'a ResourceObject) -> ProviderFuture<'a, Option<Observed>> {
        Box::pin(async move {
            let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
            self.max_running.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(5)).await;
            self.running.fetch_sub(1, Ordering::SeqCst);
            let answer = self.live.lock().unwrap().get(&r.addr.to_string()).cloned();
            match answer {
                None => Ok(Some(Observed { attrs: r.attrs.clone(), ..Observed::default() })),
                Some(Live::Attrs(a)) => Ok(Some(Observed { attrs: a, ..Observed::default() })),
                Some(Live::Yielded(a, path)) => Ok(Some(Observed {
                    attrs: a,
                    yielded: vec![YieldedField { path: path.into(), manager: "kube-controller-manager".into() }],
                    ..Observed::default()
                })),
                Some(Live::Gone) => Ok(None),
                Some(Live::Fails(m)) => {
                    Err(ProviderError { address: r.addr.clone(), path: None, message: m.into(), transient: true })
                }
                Some(Live::Hangs) => {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    Ok(None)
                }
            }
        })
    }

    fn apply<'a>(&'a self, _t: &'a TenantRef, _r: &'a ResourceObject) -> ProviderFuture<'a, Observed> {
        self.writes.fetch_add(1, Ordering::SeqCst);
        Box::pin(async { panic!("drift must never apply") })
    }

    fn delete<'a>(&'a self, _t: &'a TenantRef, _r: &'a ResourceObject) -> ProviderFuture<'a, ()> {
        self.writes.fetch_add(1, Ordering::SeqCst);
        Box::pin(async { panic!("drift must never delete") })
    }
}

fn attrs(v: Value) -> BTreeMap<String, Value> {
    v.as_map().unwrap().clone()
}

fn namespace(region: &str) -> Value {
    Value::map([
        ("kind", Value::str("Namespace")),
        (
            "metadata",
            Value::map([
                ("name", Value::str("matih-acme")),
                ("labels", Value::map([("matih.ai/region", Value::str(region))])),
            ]),
        ),
    ])
}

fn deployment(replicas: i64, image: &str) -> Value {
    Value::map([("spec", Value::map([("replicas", Value::Int(replicas)), ("image", Value::str(image))]))])
}

fn secret(clear: &str) -> Value {
    Value::map([(
        "data",
        Value::map([(
            "PASSWORD",
            Value::Secret(Secret { source: "generated".into(), fingerprint: Some(fingerprint(clear)) }),
        )]),
    )])
}

const RESOURCES: [(&str, u8); 5] = [
    ("kubernetes_namespace.tenant", 1),
    ("kubernetes_secret.db", 2),
    ("postgresql_schema.tenant", 2),
    ("kubernetes_deployment.bi", 5),
    ("dns_a_record.api", 7),
];

fn desired(addr: &str) -> Value {
    match addr {
        "kubernetes_namespace.tenant" => namespace("eastus"),
        "kubernetes_secret.db" => secret("hunter2-the-password"),
        "kubernetes_deployment.bi" => deployment(2, "bi:1"),
        "postgresql_schema.tenant" => Value::map([("name", Value::str("tenant_acme"))]),
        _ => Value::map([("name", Value::str("api")), ("ip", Value::str("20.0.0.1"))]),
    }
}

fn graph(slug: &str, changed: &[(&str, Value)]) -> ResourceGraph {
    let mut g = ResourceGraph::new(TenantMeta {
        slug: slug.into(),
        id: "550e8400-e29b-41d4-a716-446655440000".into(),
        tier: "professional".into(),
        region: "eastus".into(),
        source: None,
    });
    for (addr, phase) in RESOURCES {
        let v = changed.iter().find(|(a, _)| *a == addr).map_or_else(|| desired(addr), |(_, v)| v.clone());
        g.add(Resource {
            addr: addr.parse().unwrap(),
            phase: Phase::from_number(phase).unwrap(),
            attrs: attrs(v),
            depends_on: BTreeSet::new(),
            force_new: BTreeSet::new(),
            origin: None,
        });
    }
    assert!(g.connect().is_empty());
    g
}

fn state(slug: &str) -> TenantState {
    let mut st = TenantState::new(slug, "550e8400-e29b-41d4-a716-446655440000");
    st.serial = 3;
    st.status = TenantStatus::Active;
    for (addr, phase) in RESOURCES {
        st.resources.insert(
            addr.parse().unwrap(),
            ResourceState {
                phase: Phase::from_number(phase).unwrap(),
                attrs: attrs(desired(addr)),
                outputs: BTreeMap::new(),
                depends_on: BTreeSet::new(),
            },
        );
    }
    st
}

struct World {
    kube: Arc<Fake>,
    pg: Arc<Fake>,
    dns: Arc<Fake>,
}

impl World {
    fn new() -> World {
        let f = |family| Arc::new(Fake { family, ..Fake::default() });
        World { kube: f("kubernetes_"), pg: f("postgresql_"), dns: f("dns_") }
    }

    fn providers(&self) -> Providers {
        Providers::new().with(self.kube.clone()).with(self.pg.clone()).with(self.dns.clone())
    }

    fn set(&self, fake: &Fake, addr: &str, live: Live) {
        fake.live.lock().unwrap().insert(addr.into(), live);
    }
}

fn input(slug: &str, changed: &[(&str, Value)], recorded: Recorded) -> TenantInput {
    TenantInput { graph: graph(slug, changed), source: Some(format!("tenants/{slug}.hcl").into()), recorded }
}

fn run(inputs: Vec<TenantInput>, providers: &Providers) -> Report {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let opts = DriftOptions {
        tenant_concurrency: 2,
        read_parallelism: 3,
        read_timeout: Duration::from_millis(500),
        unavailable: BTreeMap::from([("postgresql_".to_string(), "PostgreSQL is down".to_string())]),
    };
    rt.block_on(check(inputs, providers, &opts))
}

fn kinds(t: &TenantReport) -> Vec<(String, &'static str)> {
    t.findings.iter().map(|f| (f.address.to_string(), f.kind.name())).collect()
}

#[test]
fn nothing_changed_is_in_sync() {
    let w = World::new();
    let report = run(vec![input("acme", &[], Recorded::State(Some(state("acme"))))], &w.providers());
    assert!(!report.has_drift());
    assert_eq!(report.tenants[0].status, TenantStatusKind::InSync);
    assert_eq!(report.tenants[0].read, 5);
    assert!(render_text(&report).starts_with("No drift."));
    assert!(render_markdown(&report).starts_with("### matih drift: none"));
}

#[test]
fn every_kind_of_finding_is_classified_and_secrets_are_redacted() {
    let w = World::new();
    w.set(&w.kube, "kubernetes_namespace.tenant", Live::Attrs(attrs(namespace("westus"))));
    w.set(&w.kube, "kubernetes_secret.db", Live::Attrs(attrs(secret("changed-by-someone"))));
    w.set(&w.pg, "postgresql_schema.tenant", Live::Gone);
    w.set(&w.dns, "dns_a_record.api", Live::Fails("cannot reach PowerDNS: connection refused"));
    let spec_change = [("kubernetes_deployment.bi", deployment(3, "bi:1"))];
    let report = run(vec![input("acme", &spec_change, Recorded::State(Some(state("acme"))))], &w.providers());
    let t = &report.tenants[0];
    assert_eq!(t.status, TenantStatusKind::Drifted);
    assert_eq!(
        kinds(t),
        [
            ("kubernetes_namespace.tenant".to_string(), "changed"),
            ("kubernetes_secret.db".to_string(), "changed"),
            ("postgresql_schema.tenant".to_string(), "deleted"),
            ("kubernetes_deployment.bi".to_string(), "pending"),
            ("dns_a_record.api".to_string(), "read_failed"),
        ]
    );
    let ns = &t.findings[0];
    assert_eq!(ns.attributes.len(), 1);
    assert_eq!(ns.attributes[0].path, "metadata.labels[\"matih.ai/region\"]");
    assert_eq!(ns.attributes[0].before, Some(Value::str("eastus")));
    assert_eq!(ns.attributes[0].after, Some(Value::str("westus")));
    assert_eq!(t.findings[3].action, Some(Action::Update));
    assert_eq!(t.findings[3].attributes[0].path, "spec.replicas");
    assert_eq!(t.findings[4].error.as_deref(), Some("cannot reach PowerDNS: connection refused"));
    assert_eq!(w.kube.writes.load(Ordering::SeqCst) + w.pg.writes.load(Ordering::SeqCst), 0);

    let json = render_json(&report);
    let doc: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(doc["format_version"], FORMAT_VERSION);
    assert_eq!(doc["drift"], true);
    assert_eq!(doc["summary"]["changed"], 2);
    assert_eq!(doc["findings"].as_array().unwrap().len(), 5);
    assert_eq!(doc["findings"][1]["attributes"][0]["path"], "data.PASSWORD");
    assert_eq!(doc["findings"][1]["attributes"][0]["before"], "(sensitive value)");
    assert_eq!(doc["findings"][1]["attributes"][0]["after"], "(sensitive value)");
    assert_eq!(doc["findings"][3]["action"], "update");
    for out in [json, render_text(&report), render_markdown(&report)] {
        for leak in ["hunter2", "changed-by-someone", "sha256:"] {
            assert!(!out.contains(leak), "{leak} leaked:\n{out}");
        }
    }
    let text = render_text(&report);
    assert!(text.contains("    ~ kubernetes_namespace.tenant changed outside matih\n"), "{text}");
    assert!(text.contains("        metadata.labels[\"matih.ai/region\"]: \"eastus\" -> \"westus\"\n"), "{text}");
    assert!(text.contains("    ? dns_a_record.api could not be read: cannot reach PowerDNS"), "{text}");
    assert!(text.ends_with("Drift: 2 changed, 1 deleted, 1 unreadable, 1 pending in 1 of 1 tenant.\n"), "{text}");
}

#[test]
fn fields_a_controller_took_over_are_listed_as_ignored_not_as_drift() {
    let w = World::new();
    // The provider keeps matih's value for a field an autoscaler owns and reports it as yielded.
    w.set(&w.kube, "kubernetes_deployment.bi", Live::Yielded(attrs(deployment(2, "bi:1")), "spec.replicas"));
    let hpa = run(vec![input("acme", &[], Recorded::State(Some(state("acme"))))], &w.providers());
    assert!(!hpa.has_drift(), "{hpa:?}");
    assert_eq!(hpa.tenants[0].ignored.len(), 1);
    assert_eq!(
        hpa.tenants[0].ignored[0].why,
        super::IgnoredWhy::Controller { manager: "kube-controller-manager".into() }
    );
    assert_eq!(hpa.tenants[0].ignored[0].path, "spec.replicas");
    assert!(render_json(&hpa).contains("\"manager\": \"kube-controller-manager\""));

    // Another field of the same object still counts.
    w.set(&w.kube, "kubernetes_deployment.bi", Live::Yielded(attrs(deployment(2, "bi:evil")), "spec.replicas"));
    let both = run(vec![input("acme", &[], Recorded::State(Some(state("acme"))))], &w.providers());
    let f = &both.tenants[0].findings[0];
    assert_eq!(f.attributes.iter().map(|a| a.path.as_str()).collect::<Vec<_>>(), ["spec.image"]);
}

#[test]
fn busy_tenants_are_not_read_and_an_unreachable_system_fails_only_its_tenant() {
    let w = World::new();
    w.set(&w.dns, "dns_a_record.api", Live::Hangs);
    let report = run(
        vec![
            input("acme", &[], Recorded::State(Some(state("acme")))),
            input("globex", &[], Recorded::Busy("locked by ci (apply on build-7, pid 42)".into())),
            input("initech", &[], Recorded::State(Some(state("initech")))),
        ],
        &w.providers(),
    );
    assert_eq!(report.tenants.iter().map(|t| t.slug.as_str()).collect::<Vec<_>>(), ["acme", "globex", "initech"]);
    assert_eq!(kinds(&report.tenants[0]), [("dns_a_record.api".to_string(), "read_failed")]);
    assert!(report.tenants[0].findings[0].error.as_deref().unwrap().contains("no answer within"));
    assert!(matches!(report.tenants[1].status, TenantStatusKind::Busy(_)));
    assert_eq!(report.tenants[1].read, 0);
    let c = report.counts();
    assert_eq!((c.busy, c.drifted, c.read_failed), (1, 2, 2));
    let text = render_text(&report);
    assert!(text.contains("Tenant \"globex\" (tenants/globex.hcl): busy, not checked: locked by ci"), "{text}");
    assert!(w.dns.max_running.load(Ordering::SeqCst) <= 2 * 3, "bounded");
}

#[test]
fn missing_providers_and_unrecorded_tenants() {
    let w = World::new();
    let only_kube = Providers::new().with(w.kube.clone());
    let report = run(
        vec![input("acme", &[], Recorded::State(Some(state("acme")))), input("new", &[], Recorded::State(None))],
        &only_kube,
    );
    let acme = &report.tenants[0];
    assert_eq!(
        kinds(acme),
        [("postgresql_schema.tenant".to_string(), "read_failed"), ("dns_a_record.api".to_string(), "read_failed")]
    );
    assert!(acme.findings[1].error.as_deref().unwrap().contains("no provider for dns_a_record is configured"));
    assert_eq!(acme.findings[0].error.as_deref(), Some("PostgreSQL is down"));
    let new = &report.tenants[1];
    assert_eq!(new.findings.len(), 5);
    assert!(new.findings.iter().all(|f| f.kind == FindingKind::Pending && f.action == Some(Action::Create)));
}

#[test]
fn reads_are_bounded_per_tenant() {
    let w = World::new();
    let report = run(vec![input("acme", &[], Recorded::State(Some(state("acme"))))], &w.providers());
    assert!(!report.has_drift());
    let max = w.kube.max_running.load(Ordering::SeqCst)
        + w.pg.max_running.load(Ordering::SeqCst)
        + w.dns.max_running.load(Ordering::SeqCst);
    assert!(max <= 5);
}

#[test]
fn markdown_is_cut_to_the_limit_and_says_so() {
    let w = World::new();
    w.set(&w.pg, "postgresql_schema.tenant", Live::Gone);
    let inputs =
        (0..60).map(|i| input(&format!("t{i}"), &[], Recorded::State(Some(state(&format!("t{i}")))))).collect();
    let report = run(inputs, &w.providers());
    let full = render_markdown(&report);
    assert!(full.starts_with("### matih drift: 60 findings in 60 tenant(s)\n"), "{full}");
    let small = render::render_markdown_with_limit(&report, 4_000);
    assert!(small.len() <= 4_000, "{}", small.len());
    assert!(small.contains("finding(s) not shown"), "{small}");
    assert_eq!(small.matches("<details>").count(), small.matches("</details>").count());
    assert_eq!(render_markdown(&report), full, "deterministic");
}
