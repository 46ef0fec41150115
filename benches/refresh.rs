//! Benchmark: a fleet of N generated tenants applied from nothing to ACTIVE, then a refreshed
//! no-op plan and a drift check over it, against the real servers (the real Kubernetes control
//! plane through a proxy of its own, PostgreSQL, PowerDNS; state in PostgreSQL), each a real
//! `matih` process.
//!
//! For each N it prints:
//! - apply: wall time, tenants per minute, peak RSS, and the ratio of wall time to the
//!   critical-path lower bound computed from the measured operation times (`--progress json`'s
//!   `resource_finished` durations; the dependency edges and phases from the recorded state): a
//!   tenant cannot finish before the longest dependency chain of each of its phases, one after
//!   another; a runner applying P tenants at once cannot finish before the largest tenant's
//!   bound nor before the sum of all tenants' bounds divided by P.
//! - the refreshed plan (`matih plan --detailed-exitcode`, which must find no changes) and
//!   `matih drift` (which must find none): wall time, live objects read per second, peak RSS, once
//!   with one read per object (`MATIH_READ_ONE_BY_ONE=1`, as before `Provider::read_many`) and
//!   once with bulk reads.
//!
//! `cargo bench --bench refresh` runs 10, 50 and 100 tenants (`REFRESH_TENANTS=10,50` to change
//! them; `REFRESH_TENANT_PARALLELISM`, 10 by default, tenants applied at once; `REFRESH_LATENCY_MS`,
//! 0 by default, added to every Kubernetes API request by the proxy; `REFRESH_REPEAT`, 1 by default,
//! runs each read command that many times and prints the run of median wall time with the fastest
//! and slowest, for machines whose other load makes one run noisy). Under `cargo test
//! --all-targets` (no `--bench` argument) it runs 1 tenant, as a smoke test. Needs what the tests
//! need: the control plane that `scripts/test` starts (`MATIH_TEST_CONTROLPLANE`), PostgreSQL's
//! initdb and pdns_server. Peak RSS is the child's `VmHWM`, sampled every 20 ms.

#[path = "../tests/suite/support/mod.rs"]
mod support;
use support::fleet;

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fleet::Fleet;
use matih::events::{Event, EventKind};
use matih::state::{StateStore, TenantState, TenantStatus};

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// What one `matih` process took.
struct Ran {
    seconds: f64,
    /// CPU time (user + system) of the process.
    cpu_seconds: f64,
    peak_kib: u64,
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// The CPU time (user + system) a process has used so far, from `/proc/PID/stat` (100 ticks a second).
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

fn hwm_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix("VmHWM:"))?.trim().trim_end_matches("kB").trim().parse().ok()
}

/// Runs `cmd` to its end, sampling its peak resident memory.
fn run(mut cmd: Command) -> Ran {
    let started = Instant::now();
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("start matih");
    let pid = child.id();
    let (mut out, mut err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let readers = (
        std::thread::spawn(move || std::io::read_to_string(&mut out).unwrap_or_default()),
        std::thread::spawn(move || std::io::read_to_string(&mut err).unwrap_or_default()),
    );
    let (mut peak, mut cpu) = (0, 0.0f64);
    let status = loop {
        if let Some(kib) = hwm_kib(pid) {
            peak = peak.max(kib);
        }
        if let Some(s) = cpu_seconds(pid) {
            cpu = cpu.max(s);
        }
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let seconds = started.elapsed().as_secs_f64();
    Ran {
        seconds,
        cpu_seconds: cpu,
        peak_kib: peak,
        code: status.code(),
        stdout: readers.0.join().unwrap(),
        stderr: readers.1.join().unwrap(),
    }
}

/// The critical-path bound of one tenant: over its phases, one after another, the longest chain of
/// measured operation times along the recorded dependency edges inside the phase.
fn tenant_bound(st: &TenantState, took: &BTreeMap<String, Duration>) -> Duration {
    let mut finish: BTreeMap<String, Duration> = BTreeMap::new();
    let mut total = Duration::ZERO;
    for phase in matih::phase::Phase::ALL {
        let in_phase: Vec<_> = st.resources.iter().filter(|(_, r)| r.phase == phase).collect();
        // Resources are not stored in dependency order: relax until nothing changes.
        loop {
            let mut changed = false;
            for (addr, r) in &in_phase {
                let start = r.depends_on.iter().filter_map(|d| finish.get(&d.to_string())).max().copied();
                let end = start.unwrap_or_default() + took.get(&addr.to_string()).copied().unwrap_or_default();
                if finish.get(&addr.to_string()) != Some(&end) {
                    finish.insert(addr.to_string(), end);
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
        let longest =
            in_phase.iter().filter_map(|(a, _)| finish.get(&a.to_string())).max().copied().unwrap_or_default();
        total += longest;
        // The next phase starts after this one: its chains start from zero again.
        finish.clear();
    }
    total
}

fn mib(kib: u64) -> String {
    format!("{:.0} MiB", kib as f64 / 1024.0)
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let sizes: Vec<usize> = if full {
        std::env::var("REFRESH_TENANTS")
            .unwrap_or_else(|_| "10,50,100".into())
            .split(',')
            .filter_map(|n| n.trim().parse().ok())
            .collect()
    } else {
        vec![1]
    };
    let parallelism = env_or("REFRESH_TENANT_PARALLELISM", 10);
    let latency = env_or("REFRESH_LATENCY_MS", 0) as u64;
    let repeat = env_or("REFRESH_REPEAT", 1).max(1);
    println!(
        "refresh: fleets of {sizes:?} tenants, {parallelism} applied at once, {latency} ms added per Kubernetes API \
         request; state in PostgreSQL; {} cores",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    for (i, &n) in sizes.iter().enumerate() {
        let fleet = Fleet::new(&format!("rf{i}{}", if full { "b" } else { "s" }), n);
        fleet.kube.latency(latency);
        let p = parallelism.to_string();
        let apply = run(fleet.command(&[
            "apply",
            "tenants",
            "--auto-approve",
            "--progress",
            "json",
            "--tenant-parallelism",
            &p,
        ]));
        assert_eq!(apply.code, Some(0), "apply failed:\n{}", &apply.stderr[apply.stderr.len().saturating_sub(4000)..]);
        let store = fleet.store();
        let states: Vec<TenantState> = fleet.slugs.iter().map(|s| store.get(s).unwrap().expect("a state")).collect();
        assert!(states.iter().all(|s| s.status == TenantStatus::Active));
        let objects: usize = states.iter().map(|s| s.resources.len()).sum();
        let mut took: BTreeMap<String, BTreeMap<String, Duration>> = BTreeMap::new();
        for line in apply.stdout.lines() {
            let Ok(ev) = serde_json::from_str::<Event>(line) else { continue };
            if let (EventKind::ResourceFinished, Some(r), Some(ms)) = (ev.kind, ev.resource, ev.duration_ms) {
                took.entry(ev.tenant).or_default().insert(r, Duration::from_millis(ms));
            }
        }
        let bounds: Vec<Duration> = states.iter().map(|s| tenant_bound(s, &took[&s.slug])).collect();
        let largest = bounds.iter().max().copied().unwrap_or_default();
        let bound = largest.max(bounds.iter().sum::<Duration>() / parallelism.min(n) as u32);
        println!(
            "\n{n} tenants, {objects} live objects\n  apply: {:.1} s ({:.1} s CPU), {:.1} tenants/min, peak RSS {}; \
             critical-path bound {:.1} s (largest tenant {:.1} s), wall/bound {:.2}",
            apply.seconds,
            apply.cpu_seconds,
            n as f64 * 60.0 / apply.seconds,
            mib(apply.peak_kib),
            bound.as_secs_f64(),
            largest.as_secs_f64(),
            apply.seconds / bound.as_secs_f64()
        );
        println!("  {:<42} | {:>8} | {:>10} | {:>9} | {:>9}", "", "wall s", "objects/s", "matih CPU s", "peak RSS");
        let no_refresh = run(fleet.command(&["plan", "tenants", "--detailed-exitcode", "-refresh=false"]));
        assert_eq!(no_refresh.code, Some(0), "{}", no_refresh.stderr);
        println!(
            "  {:<42} | {:>8.2} | {:>10} | {:>11.2} | {:>9}",
            "plan without refresh (no reads)",
            no_refresh.seconds,
            "",
            no_refresh.cpu_seconds,
            mib(no_refresh.peak_kib)
        );
        for (what, args, ok) in [
            ("refreshed no-op plan", &["plan", "tenants", "--detailed-exitcode"][..], 0),
            ("drift", &["drift", "tenants", "--parallelism", "16", "--detailed-exitcode"][..], 0),
        ] {
            for one_by_one in [true, false] {
                let mut runs: Vec<Ran> = (0..repeat)
                    .map(|_| {
                        let mut cmd = fleet.command(args);
                        if one_by_one {
                            cmd.env("MATIH_READ_ONE_BY_ONE", "1");
                        }
                        let r = run(cmd);
                        assert_eq!(
                            r.code,
                            Some(ok),
                            "{what}:\n{}\n{}",
                            r.stdout.chars().take(4000).collect::<String>(),
                            r.stderr
                        );
                        r
                    })
                    .collect();
                runs.sort_by(|a, b| a.seconds.total_cmp(&b.seconds));
                let r = &runs[runs.len() / 2];
                let how = if one_by_one { "one read per object" } else { "bulk reads" };
                let spread = if repeat > 1 {
                    format!(" (of {repeat}: {:.2}–{:.2} s)", runs[0].seconds, runs[runs.len() - 1].seconds)
                } else {
                    String::new()
                };
                println!(
                    "  {:<42} | {:>8.2} | {:>10.0} | {:>11.2} | {:>9}{spread}",
                    format!("{what}, {how}"),
                    r.seconds,
                    objects as f64 / r.seconds,
                    r.cpu_seconds,
                    mib(r.peak_kib)
                );
            }
        }
        // Where a drift check's time goes: the same without PostgreSQL (its resources reported
        // unreadable, not read), bulk reads.
        let mut cmd = fleet.command(&["drift", "tenants", "--parallelism", "16"]);
        cmd.env_remove("MATIH_POSTGRES_ADMIN_URL");
        let r = run(cmd);
        println!(
            "  {:<42} | {:>8.2} | {:>10} | {:>11.2} | {:>9}",
            "drift without PostgreSQL, bulk reads",
            r.seconds,
            "",
            r.cpu_seconds,
            mib(r.peak_kib)
        );
    }
}
