//! Several `matih apply` runners over one fleet, sharing a PostgreSQL state as runners on several
//! machines would (each with its own local state directory): they divide the tenants through the
//! tenants' locks and apply each exactly once (counted from the audit log); a runner killed with
//! SIGKILL leaves nothing stuck, the next one finishes its tenants; `--shard K/N` divides a fleet
//! explicitly. Real servers: the real Kubernetes control plane, PostgreSQL and PowerDNS.

use crate::support as common;
use crate::support::fleet;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::process::{Child, Output, Stdio};

use common::text;
use fleet::Fleet;
use matih::state::{StateStore, TenantStatus};

/// Kubernetes objects become ready at once: these tests are about dividing work, not waiting.
/// The tenants whose phase 1 a runner's output shows it starting.
fn applied_by(out: &str) -> BTreeSet<String> {
    out.lines().filter_map(|l| l.strip_suffix(": Phase 1/10 CREATE_NAMESPACE started")).map(str::to_string).collect()
}

/// Every tenant ACTIVE with exactly one run in its audit log; returns the runs' count per tenant.
fn assert_each_applied_once(fleet: &Fleet) {
    let store = fleet.store();
    for slug in &fleet.slugs {
        let st = store.get(slug).unwrap().unwrap_or_else(|| panic!("{slug} has no state"));
        assert_eq!(st.status, TenantStatus::Active, "{slug}");
        assert!(st.in_flight.is_empty(), "{slug}");
        let audit = store.audit(slug).unwrap();
        let runs = audit.iter().filter(|e| e.action == "run" && e.outcome == "started").count();
        assert_eq!(runs, 1, "{slug} was applied {runs} times");
    }
    assert!(store.locks().unwrap().is_empty(), "no lock left behind");
    let namespaces = fleet.kube.kubectl(&["get", "namespaces", "-o", "name"]);
    let namespaces = String::from_utf8_lossy(&namespaces.stdout);
    for slug in &fleet.slugs {
        assert!(namespaces.contains(&format!("namespace/matih-{slug}")), "{slug}'s namespace: {namespaces}");
    }
}

#[test]
fn four_runners_divide_forty_tenants_and_apply_each_exactly_once() {
    let fleet = Fleet::new("fa", 40);
    let runners: Vec<Child> = (0..4)
        .map(|r| {
            fleet
                .command(&["apply", "tenants", "--auto-approve", "--progress", "plain", "--tenant-parallelism", "4"])
                .env("MATIH_STATE_DIR", fleet.path().join(format!("runner-{r}")))
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    // Each runner's output read on a thread of its own: a full pipe would stall it.
    let readers: Vec<_> =
        runners.into_iter().map(|c| std::thread::spawn(move || c.wait_with_output().unwrap())).collect();
    let outputs: Vec<Output> = readers.into_iter().map(|t| t.join().unwrap()).collect();
    let mut by_runner = BTreeMap::new();
    for (r, out) in outputs.iter().enumerate() {
        assert!(out.status.success(), "runner {r}:\n{}", text(out));
        assert!(text(out).contains("Apply complete!"), "runner {r}:\n{}", text(out));
        by_runner.insert(r, applied_by(&text(out)));
    }
    // Each tenant started by exactly one runner; together they cover the fleet.
    let mut all = BTreeSet::new();
    for (r, slugs) in &by_runner {
        for s in slugs {
            assert!(all.insert(s.clone()), "{s} applied by runner {r} and another");
        }
    }
    assert_eq!(all, fleet.slugs.iter().cloned().collect(), "{by_runner:?}");
    let busy = by_runner.values().filter(|s| !s.is_empty()).count();
    let notes: Vec<String> = outputs
        .iter()
        .map(|o| {
            text(o)
                .lines()
                .filter(|l| l.starts_with("fa") || l.starts_with("Apply"))
                .take(40)
                .collect::<Vec<_>>()
                .join("\n")
        })
        .collect();
    assert!(
        busy >= 2,
        "the work was divided: {:?}\n{}",
        by_runner.values().map(BTreeSet::len).collect::<Vec<_>>(),
        notes.join("\n----\n")
    );
    assert_each_applied_once(&fleet);

    // The fleet is up to date: a fifth runner has nothing to do.
    let out = fleet.command(&["apply", "tenants", "--auto-approve"]).output().unwrap();
    assert!(out.status.success() && text(&out).contains("No changes."), "{}", text(&out));
}

#[test]
fn a_runner_killed_mid_fleet_leaves_nothing_stuck_and_the_next_one_finishes_its_tenants() {
    let fleet = Fleet::new("fb", 6);
    // Slow API calls, so the kill lands in the middle of tenants.
    fleet.kube.latency(15);
    let mut first = fleet
        .command(&["apply", "tenants", "--auto-approve", "--progress", "plain", "--tenant-parallelism", "3"])
        .env("MATIH_STATE_DIR", fleet.path().join("runner-0"))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(first.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    loop {
        let line = lines.next().expect("the first runner reaches phase 3").unwrap();
        let hit = line.starts_with("fb") && line.contains(": Phase 3/10");
        seen.push(line);
        if hit {
            break;
        }
    }
    first.kill().unwrap();
    first.wait().unwrap();
    let store = fleet.store();
    assert!(!store.tenants().unwrap().is_empty(), "the first runner had started: {seen:?}");
    drop(store);
    fleet.kube.latency(0);

    // The next runner takes over at once: the killed runner's locks went with its session.
    let out = fleet
        .command(&["apply", "tenants", "--auto-approve", "--progress", "plain"])
        .env("MATIH_STATE_DIR", fleet.path().join("runner-1"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let store = fleet.store();
    for slug in &fleet.slugs {
        let st = store.get(slug).unwrap().unwrap();
        assert_eq!(st.status, TenantStatus::Active, "{slug}");
        assert!(st.in_flight.is_empty(), "{slug}: the killed run's write-ahead records were resolved");
    }
    assert!(store.locks().unwrap().is_empty());
    // Nothing duplicated or orphaned: one Deployment per desired one, and nothing left to do.
    let out = fleet.command(&["plan", "tenants", "--detailed-exitcode"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

#[test]
fn shards_divide_a_fleet_between_runners_explicitly() {
    let fleet = Fleet::new("fc", 6);
    let mut shards = Vec::new();
    for k in 1..=2 {
        let shard = format!("{k}/2");
        let out = fleet
            .command(&["apply", "tenants", "--auto-approve", "--progress", "plain", "--shard", &shard])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out));
        let picked = applied_by(&text(&out));
        assert!(text(&out).contains(&format!("shard {shard}: {} of 6 tenant(s)", picked.len())), "{}", text(&out));
        shards.push(picked);
    }
    assert!(shards[0].is_disjoint(&shards[1]));
    let all: BTreeSet<String> = shards.iter().flatten().cloned().collect();
    assert_eq!(all, fleet.slugs.iter().cloned().collect());
    assert_each_applied_once(&fleet);

    let bad = fleet.command(&["apply", "tenants", "--auto-approve", "--shard", "3/2"]).output().unwrap();
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad));
    assert!(text(&bad).contains("not a shard: expected K/N"), "{}", text(&bad));
}
