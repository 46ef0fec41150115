//! Benchmark: validate + plan for N generated tenants (1, 10, 100, 1000), against an empty state and
//! against a fully recorded one (every resource applied, so the plan is all no-ops).
//!
//! `cargo bench --bench plan` prints, per case, the wall time of each stage and the peak resident
//! memory of the process that did the work. Each case runs in a fresh child process (this binary,
//! re-executed) so that peak memory belongs to that case alone; the recorded state is written by
//! another child beforehand, so writing it is not counted.
//!
//! Under `cargo test --all-targets` (no `--bench` argument) it runs one tiny case as a smoke test.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use matih::catalog::Catalog;
use matih::plan::{self, TextOptions};
use matih::spec::{self, PlatformConfig};
use matih::state::{MemoryStore, ResourceState, SledStore, StateStore, TenantState, TenantStatus};
use matih::value::{fingerprint, Secret, Value};
use matih::workflow;

/// The same allocator as the `matih` binary.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const TIERS: [&str; 3] = ["free", "professional", "enterprise"];
const REGIONS: [&str; 3] = ["eastus", "westeurope", "westus2"];

/// Writes `n` tenant spec files into `dir/tenants`.
fn generate(dir: &Path, n: usize) -> PathBuf {
    let tenants = dir.join("tenants");
    std::fs::create_dir_all(&tenants).unwrap();
    for i in 0..n {
        let spec = format!(
            "tenant \"t{i:05}\" {{\n  id          = \"{:08x}-0000-4000-8000-{:012x}\"\n  tier        = \"{}\"\n  \
             region      = \"{}\"\n  admin_email = \"admin@t{i:05}.example\"\n  services {{\n    ai_service {{ replicas = {} }}\n  }}\n  \
             monitoring {{\n    notify_email = [\"ops@t{i:05}.example\"]\n  }}\n}}\n",
            i,
            i,
            TIERS[i % 3],
            REGIONS[i % 3],
            1 + i % 3
        );
        std::fs::write(tenants.join(format!("t{i:05}.hcl")), spec).unwrap();
    }
    tenants
}

fn resolve(v: &Value) -> Value {
    match v {
        Value::Ref { .. } => Value::str("20.85.123.45"),
        Value::Computed { .. } => Value::str("2026-02-12T10:00:00Z"),
        Value::Secret(s) => Value::Secret(Secret { source: s.source.clone(), fingerprint: Some(fingerprint("x")) }),
        Value::List(items) => Value::List(items.iter().map(resolve).collect()),
        Value::Map(m) => Value::Map(m.iter().map(|(k, v)| (k.clone(), resolve(v))).collect()),
        other => other.clone(),
    }
}

/// Child: records every tenant of `tenants` as fully applied in a sled store at `state`.
fn prepare(tenants: &Path, state: &Path) {
    let catalog = Catalog::embedded().expect("catalog");
    let (specs, diags) = spec::load_tenants(&[tenants.to_path_buf()], &catalog);
    assert!(!matih::diag::has_errors(&diags), "{diags:?}");
    let store = SledStore::open(state).unwrap();
    for s in &specs {
        let (g, _) = matih::graph::compile(s, &catalog, &PlatformConfig::default());
        let g = g.expect("graph");
        let mut st = TenantState::new(&g.tenant.slug, &g.tenant.id);
        for r in g.apply_order() {
            let mut outputs = BTreeMap::new();
            for other in g.graph.node_weights() {
                for v in other.attrs.values() {
                    for (res, out) in v.refs() {
                        if *res == r.addr {
                            outputs.insert(out.to_string(), Value::str("20.85.123.45"));
                        }
                    }
                }
            }
            let attrs = r.attrs.iter().map(|(k, v)| (k.clone(), resolve(v))).collect();
            st.resources.insert(
                r.addr.clone(),
                ResourceState { phase: r.phase, attrs, outputs, depends_on: r.depends_on.clone() },
            );
        }
        st.status = TenantStatus::Active;
        st.serial = 1;
        store.put(&st, None, "bench").unwrap();
    }
}

fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Child: the measured work, exactly what `matih plan DIR` does (through `matih::workflow`, as the
/// CLI calls it). Prints one line of numbers.
fn measure(tenants: &Path, state: Option<&Path>) {
    let t0 = Instant::now();
    let catalog = Catalog::embedded().expect("catalog");
    let platform = PlatformConfig::default();
    let compiled = workflow::compile_tenants(&[tenants.to_path_buf()], &catalog, &platform);
    assert!(!matih::diag::has_errors(&compiled.diagnostics));
    let t_compile = t0.elapsed();

    let t2 = Instant::now();
    let store: Box<dyn StateStore> = match state {
        Some(p) => Box::new(SledStore::open(p).unwrap()),
        None => Box::new(MemoryStore::default()),
    };
    let (plan, errors) = workflow::plan_tenants(&compiled.specs, &compiled.graphs, store.as_ref(), None).unwrap();
    assert!(errors.is_empty());
    let t_diff = t2.elapsed();

    let t3 = Instant::now();
    let text = plan::render_text(&plan, &TextOptions { color: false, ..Default::default() });
    let t_render = t3.elapsed();

    let resources: usize = compiled.graphs.iter().map(|g| g.len()).sum();
    let s = plan.summary();
    println!(
        "RESULT {} {} {} {} {} {} {} {}",
        compiled.specs.len(),
        resources,
        s.add,
        t_compile.as_secs_f64() * 1e3,
        t_diff.as_secs_f64() * 1e3,
        t_render.as_secs_f64() * 1e3,
        text.len(),
        peak_rss_kib()
    );
}

fn child(args: &[&str]) -> String {
    let out = Command::new(std::env::current_exe().unwrap()).args(args).output().expect("spawn child");
    assert!(out.status.success(), "child {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    match argv.get(1..) {
        Some(["--prepare", tenants, state]) => return prepare(Path::new(tenants), Path::new(state)),
        Some(["--measure", tenants]) => return measure(Path::new(tenants), None),
        Some(["--measure", tenants, state]) => return measure(Path::new(tenants), Some(Path::new(state))),
        _ => {}
    }
    let full = argv.contains(&"--bench");
    let sizes: &[usize] = if full { &[1, 10, 100, 1000] } else { &[2] };
    let mut report = String::new();
    writeln!(
        report,
        "{:>7} {:>8} {:>9} {:>7} | {:>16} {:>13} {:>9} | {:>10} | {:>9}",
        "tenants", "state", "resources", "to add", "read+validate+", "state+diff", "render", "total", "peak RSS"
    )
    .unwrap();
    for &n in sizes {
        let dir = tempfile::tempdir().unwrap();
        let tenants = generate(dir.path(), n);
        let state = dir.path().join("state");
        child(&["--prepare", tenants.to_str().unwrap(), state.to_str().unwrap()]);
        for recorded in [false, true] {
            let mut a = vec!["--measure", tenants.to_str().unwrap()];
            if recorded {
                a.push(state.to_str().unwrap());
            }
            let line = child(&a);
            let f: Vec<f64> = line
                .lines()
                .find_map(|l| l.strip_prefix("RESULT "))
                .expect("result line")
                .split(' ')
                .map(|x| x.parse().unwrap())
                .collect();
            let total = f[3] + f[4] + f[5];
            writeln!(
                report,
                "{:>7} {:>8} {:>9} {:>7} | {:>7.1}ms compile {:>11.1}ms {:>7.1}ms | {:>8.1}ms | {:>6.1}MiB",
                f[0],
                if recorded { "recorded" } else { "empty" },
                f[1],
                f[2],
                f[3],
                f[4],
                f[5],
                total,
                f[7] / 1024.0
            )
            .unwrap();
        }
    }
    print!("{report}");
    if !full {
        println!("bench smoke: ok (run `cargo bench --bench plan` for the full benchmark)");
    }
}
