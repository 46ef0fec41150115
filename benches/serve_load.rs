//! Benchmark (issue 19, item 4): `matih serve` under load while a fleet is applied. 200 WebSocket
//! clients follow the tenants (spread over them) and a load generator sends 1,000 status requests
//! per second, on loopback, while one `matih apply` provisions 20 tenants on the PostgreSQL state.
//! Prints the requests' p50/p99/max latency, the rate reached, errors, serve's memory, and checks
//! that every client received every event of its tenant's run, in order (rising `seq`, phases 1 to
//! 10 each started and finished once), or counts it as lagged when serve had to send it a snapshot
//! instead (a client more than the channel's capacity behind).
//!
//! `cargo bench --bench serve_load` runs 20 tenants, 200 clients, 1,000 requests/s
//! (`SERVE_LOAD_TENANTS`, `SERVE_LOAD_CLIENTS`, `SERVE_LOAD_RPS` change them). Under
//! `cargo test --all-targets` it runs 2 tenants, 20 clients and 100 requests/s as a smoke test.
//! Every loop is bounded: the load stops when the apply ends or after 10 minutes.

#[path = "../tests/suite/support/mod.rs"]
mod support;
use support::fleet;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap_or("VmRSS: 0 kB");
    line.split_whitespace().nth(1).and_then(|n| n.parse().ok()).unwrap_or(0)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// What one client saw: its events after the first snapshot.
type Seen = Arc<Mutex<Vec<serde_json::Value>>>;

/// The verdict on one client's events: `Ok(())` when complete and in order, `Err(why)` otherwise;
/// `lagged` when serve sent it a snapshot mid-run.
fn check(events: &[serde_json::Value]) -> (Result<(), String>, bool) {
    let mut last_seq = 0;
    let mut phases = Vec::new();
    let mut lagged = false;
    for (i, e) in events.iter().enumerate() {
        if e["type"] == "snapshot" {
            lagged |= i > 0 && e["seq"].as_u64().unwrap_or(0) == 0;
            continue;
        }
        let seq = e["seq"].as_u64().unwrap_or(0);
        if seq <= last_seq {
            return (Err(format!("seq {seq} after {last_seq}")), lagged);
        }
        last_seq = seq;
        match e["type"].as_str() {
            Some("phase_started") => phases.push(("s", e["phase"].as_u64().unwrap_or(0))),
            Some("phase_finished") => phases.push(("f", e["phase"].as_u64().unwrap_or(0))),
            _ => {}
        }
    }
    let want: Vec<(&str, u64)> = (1..=10).flat_map(|n| [("s", n), ("f", n)]).collect();
    if !lagged && phases != want {
        return (Err(format!("phases {phases:?}")), lagged);
    }
    if !events.iter().any(|e| e["type"] == "tenant_finished") {
        return (Err("no tenant_finished".into()), lagged);
    }
    (Ok(()), lagged)
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let tenants = if full { env_or("SERVE_LOAD_TENANTS", 20) } else { 2 };
    let clients = if full { env_or("SERVE_LOAD_CLIENTS", 200) } else { 20 };
    let rps = if full { env_or("SERVE_LOAD_RPS", 1000) } else { 100 };
    let fleet = fleet::Fleet::new(if full { "slf" } else { "sls" }, tenants);

    let mut serve = fleet
        .command(&["serve", "tenants", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start matih serve");
    let mut line = String::new();
    BufReader::new(serve.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let addr =
        line.trim().strip_prefix("listening on http://").unwrap_or_else(|| panic!("serve said {line:?}")).to_string();
    let serve_pid = serve.id();
    let rss_start = rss_kib(serve_pid);

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let (latencies, errors, sent, shed, seen, rss_peak, seconds) = rt.block_on(async {
        // The clients connect before the apply starts, so each sees the whole run.
        let mut seen: Vec<Seen> = Vec::new();
        for i in 0..clients {
            let slug = &fleet.slugs[i % tenants];
            let (ws, _) =
                tokio_tungstenite::connect_async(format!("ws://{addr}/ws/provisioning/{slug}")).await.unwrap();
            let log: Seen = Arc::default();
            let l = log.clone();
            tokio::spawn(async move {
                let (_tx, mut rx) = ws.split();
                while let Some(Ok(m)) = rx.next().await {
                    if let Message::Text(t) = m {
                        let ev: serde_json::Value = serde_json::from_str(t.as_str()).unwrap_or_default();
                        let done = ev["type"] == "tenant_finished";
                        l.lock().unwrap().push(ev);
                        if done {
                            break;
                        }
                    }
                }
            });
            seen.push(log);
        }

        let mut apply = fleet
            .command(&["apply", "tenants", "--auto-approve", "--progress", "plain", "--tenant-parallelism", "10"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start matih apply");
        let started = Instant::now();
        let client = reqwest::Client::builder().pool_max_idle_per_host(64).build().unwrap();
        let latencies: Arc<Mutex<Vec<f64>>> = Arc::default();
        let errors = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        // Ticks skipped because 256 requests were already waiting: the rate serve did not keep up with.
        let mut shed = 0usize;
        let mut sent = 0usize;
        let mut rss_peak = rss_start;
        let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rps as u64));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let deadline = started + Duration::from_secs(600);
        let in_flight = Arc::new(tokio::sync::Semaphore::new(256));
        while Instant::now() < deadline && apply.try_wait().unwrap().is_none() {
            tick.tick().await;
            let Ok(permit) = in_flight.clone().try_acquire_owned() else {
                shed += 1;
                continue;
            };
            let url = format!("http://{addr}/api/v1/tenants/{}/provisioning/status", fleet.slugs[sent % tenants]);
            sent += 1;
            let (client, latencies, errors) = (client.clone(), latencies.clone(), errors.clone());
            tokio::spawn(async move {
                let t = Instant::now();
                let ok = match client.get(&url).send().await {
                    Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
                    Err(_) => false,
                };
                if ok {
                    latencies.lock().unwrap().push(t.elapsed().as_secs_f64() * 1000.0);
                } else {
                    errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                drop(permit);
            });
            if sent.is_multiple_of(rps) {
                rss_peak = rss_peak.max(rss_kib(serve_pid));
            }
        }
        let seconds = started.elapsed().as_secs_f64();
        let out = apply.wait_with_output().unwrap();
        assert!(out.status.success(), "apply failed:\n{}", String::from_utf8_lossy(&out.stderr));
        // Let the last events and requests arrive (bounded).
        let settle = Instant::now() + Duration::from_secs(20);
        while Instant::now() < settle
            && !seen.iter().all(|s| s.lock().unwrap().iter().any(|e| e["type"] == "tenant_finished"))
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(10), in_flight.acquire_many(256)).await;
        let latencies = latencies.lock().unwrap().clone();
        let errors = errors.load(std::sync::atomic::Ordering::Relaxed);
        (latencies, errors, sent, shed, seen, rss_peak, seconds)
    });
    let rss_end = rss_kib(serve_pid);
    let _ = serve.kill();
    let _ = serve.wait();

    let mut sorted = latencies.clone();
    sorted.sort_by(f64::total_cmp);
    let (mut complete, mut lagged, mut bad) = (0, 0, Vec::new());
    for (i, s) in seen.iter().enumerate() {
        let events = s.lock().unwrap().clone();
        match check(&events) {
            (Ok(()), false) => complete += 1,
            (Ok(()), true) => lagged += 1,
            (Err(why), _) => bad.push(format!("client {i} ({}): {why}", fleet.slugs[i % tenants])),
        }
    }
    println!(
        "serve_load: {tenants} tenants applied in {seconds:.1} s; {clients} WebSocket clients; {rps} status requests/s asked"
    );
    println!(
        "status requests: {sent} sent ({:.0}/s reached), {} answered, {errors} failed, {shed} not sent (256 already waiting); \
         latency ms p50 {:.2}  p99 {:.2}  max {:.2}",
        sent as f64 / seconds,
        sorted.len(),
        percentile(&sorted, 0.50),
        percentile(&sorted, 0.99),
        sorted.last().copied().unwrap_or(0.0)
    );
    println!(
        "websocket: {complete} of {clients} clients got every event of the run in order, {lagged} lagged (resynced by a snapshot), {} wrong",
        bad.len()
    );
    println!("serve RSS: {rss_start} KiB at start, {rss_peak} KiB peak, {rss_end} KiB at the end");
    assert!(bad.is_empty(), "{}", bad.join("\n"));
    assert_eq!(complete + lagged, clients);
    assert_eq!(errors, 0, "every status request sent was answered");
}
