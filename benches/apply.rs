//! Benchmark: apply wall time against the critical-path lower bound, under injected latency.
//!
//! The tenants (acme; then acme, globex and initech at once) are applied from nothing through the
//! apply engine with a sled store in a temp dir: Kubernetes resources against the Kubernetes API
//! test server with `latencyMs` on every request, PostgreSQL and DNS resources through a scripted
//! provider that takes the same latency per call. Every operation's duration is measured (the
//! `resource_finished` hook). The lower bound of one tenant is the sum over phases of the longest
//! dependency chain inside the phase, weighted by those measured durations: no scheduler can do
//! better with these operations, since phases run one after another and a resource starts only
//! after what it depends on. With several tenants the bound is the largest tenant's. The gap
//! between wall time and bound is the engine's own cost: state writes (write-ahead record and
//! outcome, each a flushed sled transaction), scheduling, and waves that wait on each other.
//!
//! `cargo bench --bench apply` runs it with 20 ms latency. Under `cargo test --all-targets` (no
//! `--bench` argument) one tenant runs with 1 ms latency, as a smoke test.

#[path = "../tests/suite/support/fake.rs"]
mod fake;
#[path = "../tests/suite/support/kube.rs"]
mod kube;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kube::Kube;
use matih::addr::ResourceAddr;
use matih::apply::{apply_tenant, ApplyOptions, Hooks, Providers};
use matih::catalog::Catalog;
use matih::phase::Phase;
use matih::plan::{diff, Action, TenantPlan};
use matih::provider::kubernetes::{KubeSettings, KubeTarget, KubernetesProvider};
use matih::provider::ProviderError;
use matih::spec::PlatformConfig;
use matih::state::{MemoryStore, SledStore, StateStore};

/// A proxy in front of the real control plane with `latency_ms` on every request.
fn start_server(latency_ms: u64) -> Kube {
    let kube = Kube::start();
    kube.latency(latency_ms);
    kube
}

/// Records every operation's duration, per tenant.
#[derive(Default)]
struct Durations(Mutex<BTreeMap<(String, ResourceAddr), Duration>>);

impl Hooks for Durations {
    fn resource_finished(
        &self,
        tenant: &str,
        addr: &ResourceAddr,
        _action: Action,
        result: Result<Duration, &ProviderError>,
    ) {
        if let Ok(d) = result {
            self.0.lock().unwrap().insert((tenant.to_string(), addr.clone()), d);
        }
    }
}

/// Sum over phases of the longest chain of measured durations inside the phase.
fn critical_path(plan: &TenantPlan, took: &BTreeMap<(String, ResourceAddr), Duration>) -> Duration {
    let mut total = Duration::ZERO;
    for phase in Phase::ALL {
        let changes: Vec<_> =
            plan.resource_changes.iter().filter(|c| c.phase == phase && c.action != Action::NoOp).collect();
        // Changes are in topological order inside the phase, so one pass computes finish times.
        let mut finish: BTreeMap<&ResourceAddr, Duration> = BTreeMap::new();
        for c in &changes {
            let start = c.depends_on.iter().filter_map(|d| finish.get(d)).max().copied().unwrap_or_default();
            let d = took.get(&(plan.slug.clone(), c.address.clone())).copied().unwrap_or_default();
            finish.insert(&c.address, start + d);
        }
        total += finish.values().max().copied().unwrap_or_default();
    }
    total
}

fn plans(slugs: &[&str]) -> Vec<TenantPlan> {
    std::env::set_var("ACME_SLACK_WEBHOOK", "https://hooks.slack.example/services/T0/B0/acme");
    std::env::set_var("INITECH_SLACK_WEBHOOK", "https://hooks.slack.example/services/T0/B0/initech");
    let catalog = Catalog::embedded().expect("catalog");
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let paths: Vec<_> = slugs.iter().map(|s| root.join(format!("tenants/{s}.hcl"))).collect();
    let compiled = matih::workflow::compile_tenants(&paths, &catalog, &PlatformConfig::default());
    assert!(!matih::diag::has_errors(&compiled.diagnostics), "{:?}", compiled.diagnostics);
    compiled.graphs.iter().map(|g| diff(g, None, None)).collect()
}

fn run_case(
    rt: &tokio::runtime::Runtime,
    slugs: &[&str],
    latency_ms: u64,
    parallelism: usize,
) -> (Duration, Duration, usize) {
    let _claims = kube::claim_tenants(slugs);
    let server = start_server(latency_ms);
    let settings = KubeSettings {
        lb_ip_attempts: 1000,
        lb_ip_interval: Duration::from_millis(5),
        deployment_timeout: Duration::from_secs(60),
        certificate_timeout: Duration::from_secs(60),
        delete_timeout: Duration::from_secs(60),
        poll_interval: Duration::from_millis(5),
    };
    let kube = rt.block_on(KubernetesProvider::connect(&KubeTarget::Url(server.url.clone()), settings)).unwrap();
    let latency = Duration::from_millis(latency_ms);
    let providers =
        Providers::new().with(Arc::new(kube)).with(Arc::new(fake::Scripted::postgres_and_dns().with_latency(latency)));
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn StateStore> = if std::env::var_os("MATIH_BENCH_MEMORY_STORE").is_some() {
        Arc::new(MemoryStore::new())
    } else {
        Arc::new(SledStore::open(&dir.path().join("state")).unwrap())
    };
    let hooks = Arc::new(Durations::default());
    let opts = ApplyOptions { parallelism, ..ApplyOptions::default() };
    let plans = plans(slugs);
    let ops: usize = plans.iter().map(|p| p.resource_changes.len()).sum();
    let started = Instant::now();
    rt.block_on(async {
        let mut set = tokio::task::JoinSet::new();
        for p in plans.clone() {
            let (store, providers, hooks, opts) = (store.clone(), providers.clone(), hooks.clone(), opts.clone());
            set.spawn(async move { apply_tenant(&p, store.as_ref(), &providers, hooks.as_ref(), &opts).await });
        }
        while let Some(r) = set.join_next().await {
            r.unwrap().expect("apply");
        }
    });
    let wall = started.elapsed();
    let took = hooks.0.lock().unwrap().clone();
    let bound = plans.iter().map(|p| critical_path(p, &took)).max().unwrap_or_default();
    (wall, bound, ops)
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    if !full {
        let (wall, bound, _) = run_case(&rt, &["acme"], 1, 64);
        assert!(wall >= bound, "the bound is a lower bound");
        println!("bench smoke: ok (run `cargo bench --bench apply` for the full benchmark)");
        return;
    }
    println!("apply wall time vs critical-path lower bound, 20 ms per request (Kubernetes API test server) and per call (scripted PostgreSQL/DNS)");
    println!("{:<28} {:>11} {:>6} {:>10} {:>10} {:>7}", "tenants", "parallelism", "ops", "wall", "bound", "ratio");
    for (slugs, parallelism) in [(&["acme"][..], 64), (&["acme"][..], 10), (&["acme", "globex", "initech"][..], 64)] {
        let (wall, bound, ops) = run_case(&rt, slugs, 20, parallelism);
        println!(
            "{:<28} {:>11} {:>6} {:>9.2}s {:>9.2}s {:>7.3}",
            slugs.join(","),
            parallelism,
            ops,
            wall.as_secs_f64(),
            bound.as_secs_f64(),
            wall.as_secs_f64() / bound.as_secs_f64()
        );
    }
}
