//! Benchmark: 1, 2 and 4 concurrent `matih apply` runner processes dividing one fleet of tenants
//! through a shared PostgreSQL state, against the Kubernetes API test server (with latency on every
//! request, as a real API server has), a real PostgreSQL and a real PowerDNS. Prints total wall
//! time and tenants per second for each case, how the tenants were divided, and checks from the
//! audit log that each tenant was applied exactly once.
//!
//! `cargo bench --bench fleet` runs 200 tenants per case (`FLEET_TENANTS` to change it; each runner
//! applies `FLEET_TENANT_PARALLELISM` tenants at once, 10 by default; `FLEET_LATENCY_MS` per API
//! request, 10 by default). Under `cargo test --all-targets` (no `--bench` argument) it runs 4
//! tenants with 1 and 2 runners, as a smoke test. Needs what the tests need (PostgreSQL's initdb,
//! pdns_server, kubectl): `scripts/test` installs them.

#[path = "../tests/suite/support/mod.rs"]
mod support;
use support as common;
use support::fleet;

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Instant;

use fleet::Fleet;
use matih::state::{StateStore, TenantStatus};

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

struct Case {
    runners: usize,
    seconds: f64,
    divided: Vec<usize>,
}

fn run_case(prefix: &str, tenants: usize, runners: usize, parallelism: usize, latency_ms: u64) -> Case {
    let fleet = Fleet::new(prefix, tenants);
    fleet.kube.latency(latency_ms);
    let parallelism = parallelism.to_string();
    let started = Instant::now();
    let children: Vec<_> = (0..runners)
        .map(|r| {
            let child = fleet
                .command(&[
                    "apply",
                    "tenants",
                    "--auto-approve",
                    "--progress",
                    "plain",
                    "--tenant-parallelism",
                    &parallelism,
                ])
                .env("MATIH_STATE_DIR", fleet.path().join(format!("runner-{r}")))
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start matih");
            std::thread::spawn(move || child.wait_with_output().unwrap())
        })
        .collect();
    let outputs: Vec<_> = children.into_iter().map(|t| t.join().unwrap()).collect();
    let seconds = started.elapsed().as_secs_f64();
    let mut divided = Vec::new();
    for (r, out) in outputs.iter().enumerate() {
        let text = common::text(out);
        assert!(out.status.success(), "runner {r} failed:\n{}", &text[text.len().saturating_sub(4000)..]);
        divided.push(text.lines().filter(|l| l.ends_with(": Phase 1/10 CREATE_NAMESPACE started")).count());
    }
    let store = fleet.store();
    let mut runs = BTreeMap::new();
    for slug in &fleet.slugs {
        let st = store.get(slug).unwrap().expect("every tenant has a state");
        assert_eq!(st.status, TenantStatus::Active, "{slug}");
        let n = store.audit(slug).unwrap().iter().filter(|e| e.action == "run" && e.outcome == "started").count();
        *runs.entry(n).or_insert(0usize) += 1;
    }
    assert_eq!(runs, BTreeMap::from([(1, tenants)]), "runs per tenant (runs → tenants)");
    assert_eq!(divided.iter().sum::<usize>(), tenants);
    Case { runners, seconds, divided }
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let tenants = if full { env_or("FLEET_TENANTS", 200) } else { 4 };
    let parallelism = env_or("FLEET_TENANT_PARALLELISM", 10);
    let latency = env_or("FLEET_LATENCY_MS", 10) as u64;
    let cases: &[usize] = if full { &[1, 2, 4] } else { &[1, 2] };
    println!(
        "fleet: {tenants} tenants per case, each runner {parallelism} tenants at once, {latency} ms per Kubernetes API \
         request; state in PostgreSQL; {} cores",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!("runners |  total s | tenants/s | tenants applied per runner | each applied once (audit log)");
    let mut first = None;
    for (i, &runners) in cases.iter().enumerate() {
        let c = run_case(&format!("z{i}{}", if full { "f" } else { "s" }), tenants, runners, parallelism, latency);
        let speedup = first.map_or(String::new(), |f: f64| format!("  ({:.2}× the 1-runner rate)", f / c.seconds));
        first.get_or_insert(c.seconds);
        println!(
            "{:>7} | {:>8.1} | {:>9.2} | {:<26} | yes{speedup}",
            c.runners,
            c.seconds,
            tenants as f64 / c.seconds,
            format!("{:?}", c.divided)
        );
    }
}
