//! The status console in a real browser: headless Chromium (Debian's `chromium`, installed with
//! apt-get when missing) driven over the DevTools protocol. The fleet view during a real apply of
//! three tenants (filtered with the keyboard and from a shared URL), a tenant's page followed live
//! over its WebSocket until its timeline shows ACTIVE; a failed phase's error and rollback; and
//! 1,000 tenants in the state store, whose first render and filter times are printed. Screenshots
//! are saved as test artifacts in `target/tmp/console/`.

use crate::support as common;
use crate::support::serve as serve_support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use serve_support::*;
use tokio_tungstenite::tungstenite::Message;

fn chromium() -> PathBuf {
    let find = || {
        ["chromium", "chromium-browser"].iter().find_map(|n| {
            std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
                .map(|d| d.join(n))
                .find(|p| p.is_file())
        })
    };
    if let Some(p) = find() {
        return p;
    }
    let st = Command::new("apt-get")
        .args(["install", "-y", "-qq", "--no-install-recommends", "chromium", "fonts-dejavu-core"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status();
    if !st.is_ok_and(|s| s.success()) {
        let _ = Command::new("apt-get").args(["update", "-qq"]).status();
        let _ = Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends", "chromium", "fonts-dejavu-core"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status();
    }
    find().expect("chromium is not installed and apt-get install chromium failed")
}

struct Browser {
    child: Child,
    _profile: tempfile::TempDir,
    port: u16,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Browser {
    fn start(url: &str) -> Browser {
        let profile = tempfile::tempdir().unwrap();
        let child = Command::new(chromium())
            .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
            .args(["--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1440,1000"])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("--remote-debugging-port=0")
            .arg(url)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromium");
        let file = profile.path().join("DevToolsActivePort");
        let deadline = Instant::now() + Duration::from_secs(60);
        let port = loop {
            if let Some(p) = std::fs::read_to_string(&file).ok().and_then(|s| s.lines().next()?.parse().ok()) {
                break p;
            }
            assert!(Instant::now() < deadline, "chromium did not open its DevTools port");
            std::thread::sleep(Duration::from_millis(100));
        };
        Browser { child, _profile: profile, port }
    }
}

/// A DevTools protocol session with the page.
struct Page {
    ws: tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    id: u64,
}

impl Page {
    async fn attach(port: u16) -> Page {
        let deadline = Instant::now() + Duration::from_secs(30);
        let url = loop {
            if let Ok(r) = reqwest::get(format!("http://127.0.0.1:{port}/json/list")).await {
                let targets: Value = r.json().await.unwrap_or_default();
                if let Some(u) = targets.as_array().into_iter().flatten().find_map(|t| {
                    (t["type"] == "page").then(|| t["webSocketDebuggerUrl"].as_str().map(str::to_string)).flatten()
                }) {
                    break u;
                }
            }
            assert!(Instant::now() < deadline, "no page target in chromium");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let (ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        Page { ws, id: 0 }
    }

    async fn call(&mut self, method: &str, params: Value) -> Value {
        self.id += 1;
        let id = self.id;
        self.ws.send(Message::text(json!({"id": id, "method": method, "params": params}).to_string())).await.unwrap();
        loop {
            let m = tokio::time::timeout(Duration::from_secs(30), self.ws.next()).await.unwrap().unwrap().unwrap();
            if let Message::Text(t) = m {
                let v: Value = serde_json::from_str(t.as_str()).unwrap();
                if v["id"] == id {
                    assert!(v["error"].is_null(), "{method}: {v}");
                    return v["result"].clone();
                }
            }
        }
    }

    async fn eval(&mut self, expr: &str) -> Value {
        let r = self.call("Runtime.evaluate", json!({"expression": expr, "returnByValue": true})).await;
        r["result"]["value"].clone()
    }

    async fn screenshot(&mut self, path: &Path) {
        let r = self.call("Page.captureScreenshot", json!({"format": "png"})).await;
        let png = base64::engine::general_purpose::STANDARD.decode(r["data"].as_str().unwrap()).unwrap();
        assert!(png.starts_with(b"\x89PNG"));
        std::fs::write(path, png).unwrap();
        eprintln!("screenshot saved: {}", path.display());
    }
}

impl Page {
    /// Polls `expr` until it is truthy (or, when it returns a string, a non-empty one); returns it.
    async fn wait_for(&mut self, what: &str, expr: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let v = self.eval(expr).await;
            let ok = match &v {
                Value::Null | Value::Bool(false) => false,
                Value::String(s) => !s.is_empty(),
                Value::Number(n) => n.as_f64() != Some(0.0),
                _ => true,
            };
            if ok {
                return v;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}: {expr} is {v}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Loads `url` and waits until the page has rendered its data (`body[data-ready]`).
    async fn goto(&mut self, url: &str) {
        self.call("Page.navigate", json!({"url": url})).await;
        self.wait_for(
            &format!("{url} to render"),
            "document.readyState === 'complete' && document.body.dataset.ready === '1'",
            Duration::from_secs(30),
        )
        .await;
    }

    /// A key pressed on the keyboard (`/`), as Chromium delivers it to the page.
    async fn press(&mut self, key: &str) {
        for kind in ["keyDown", "keyUp"] {
            let mut p = json!({"type": kind, "key": key});
            if kind == "keyDown" {
                p["text"] = json!(key);
            }
            self.call("Input.dispatchKeyEvent", p).await;
        }
    }

    /// Text typed into the focused element.
    async fn type_text(&mut self, text: &str) {
        self.call("Input.insertText", json!({"text": text})).await;
    }

    /// A screenshot of the whole page (not only the window), saved as `name` in the artifacts.
    async fn full_screenshot(&mut self, name: &str) -> PathBuf {
        let h = self
            .eval("Math.ceil(document.documentElement.scrollHeight)")
            .await
            .as_u64()
            .unwrap_or(900)
            .clamp(600, 4000);
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": 1440, "height": h, "deviceScaleFactor": 1, "mobile": false}),
        )
        .await;
        tokio::time::sleep(Duration::from_millis(150)).await;
        let path = artifacts().join(name);
        self.screenshot(&path).await;
        self.call("Emulation.clearDeviceMetricsOverride", json!({})).await;
        path
    }
}

/// Where the screenshots go: `target/tmp/console/`.
fn artifacts() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

const ROWS: &str = "JSON.stringify([...document.querySelectorAll('#tenants tbody tr')].map(r => [r.id.replace('tenant-', ''), r.dataset.status]))";

fn rows(v: &Value) -> Vec<(String, String)> {
    serde_json::from_str::<Vec<(String, String)>>(v.as_str().unwrap()).unwrap()
}

/// The tenant page's state: status badge, timeline rows' states, events seen.
const TENANT: &str = r#"JSON.stringify({
  status: document.getElementById('t-status').dataset.status || null,
  timeline: [...document.querySelectorAll('#timeline .tl-row')].map(g => g.dataset.state),
  seen: (window.matihSeen || []).map(e => e.type + ':' + (e.phase || '')),
  ops: document.querySelectorAll('#ops tbody tr').length,
  outputs: [...document.querySelectorAll('#outputs tbody tr')].map(r => r.cells[0].textContent),
  runs: [...document.querySelectorAll('#runs tbody tr')].map(r => r.cells[2].textContent),
})"#;

#[test]
fn the_console_follows_a_fleet_apply_live_from_the_fleet_to_a_tenant() {
    let ws = Workspace::with_tenants(1500, "", &["acme", "globex", "initech"]);
    // Where a nightly `matih drift --format json` would write its report; nothing there yet.
    let report = ws.path().join("drift.json");
    let serve = ws.serve_with("127.0.0.1:0", None, &["--drift-report", report.to_str().unwrap()]);
    let browser = Browser::start(&serve.url("/"));
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut page = Page::attach(browser.port).await;
        page.wait_for("the fleet view", "document.body.dataset.ready === '1'", Duration::from_secs(30)).await;
        assert_eq!(page.eval("document.getElementById('empty').hidden").await, json!(false), "no tenants yet");

        let mut apply = ws.spawn_apply_of(&["tenants"]);
        // The fleet view (refreshed every 2 s) shows the tenants being provisioned.
        page.wait_for(
            "a tenant PROVISIONING in the fleet view",
            "document.querySelectorAll('#tenants tbody tr[data-status=PROVISIONING]').length > 0",
            Duration::from_secs(120),
        )
        .await;
        page.full_screenshot("console_fleet_during_apply.png").await;

        // Keyboard: `/` focuses the search box; typing filters, and the filter goes into the URL.
        page.press("/").await;
        assert_eq!(page.eval("document.activeElement.id").await, json!("f-q"));
        page.type_text("glob").await;
        page.wait_for(
            "the search to leave globex alone",
            "[...document.querySelectorAll('#tenants tbody tr')].map(r => r.id).join() === 'tenant-globex'",
            Duration::from_secs(10),
        )
        .await;
        assert!(page.eval("location.search").await.as_str().unwrap().contains("q=glob"));
        // The tier filter (choices from the fleet) combines with it; a shared URL restores both.
        page.eval("(s => { s.value = 'enterprise'; s.dispatchEvent(new Event('change')); })(document.getElementById('f-tier'))")
            .await;
        page.wait_for("no tenant", "document.querySelectorAll('#tenants tbody tr').length === 0 && !document.getElementById('empty').hidden", Duration::from_secs(10)).await;
        let shared = page.eval("location.href").await.as_str().unwrap().to_string();
        assert!(shared.contains("tier=enterprise") && shared.contains("q=glob"), "{shared}");
        page.goto(&serve.url("/?tier=enterprise")).await;
        assert_eq!(page.eval("document.getElementById('f-tier').value").await, json!("enterprise"));
        let only = rows(&page.eval(ROWS).await);
        assert_eq!(only.iter().map(|r| r.0.as_str()).collect::<Vec<_>>(), ["initech"], "{only:?}");
        page.goto(&serve.url("/")).await;

        // Open the tenant furthest behind (still provisioning) from its link in the table.
        let slug = page
            .wait_for(
                "a tenant still provisioning",
                "(() => { const r = [...document.querySelectorAll('#tenants tbody tr[data-status=PROVISIONING]')]
                   .sort((a, b) => a.querySelectorAll('.seg.COMPLETED').length - b.querySelectorAll('.seg.COMPLETED').length)[0];
                   return r ? r.id.replace('tenant-', '') : null; })()",
                Duration::from_secs(10),
            )
            .await
            .as_str()
            .unwrap()
            .to_string();
        page.eval(&format!("document.querySelector('#tenant-{slug} a.slug').click()")).await;
        page.wait_for("the tenant page", &format!("location.pathname === '/tenants/{slug}' && document.body.dataset.ready === '1'"), Duration::from_secs(30)).await;

        // Its timeline follows the run over the WebSocket until ACTIVE.
        let deadline = Instant::now() + Duration::from_secs(300);
        let (mut statuses, mut running_seen, mut mid_shot) = (Vec::<String>::new(), false, false);
        let last = loop {
            let probe: Value = serde_json::from_str(page.eval(TENANT).await.as_str().unwrap()).unwrap();
            let status = probe["status"].as_str().unwrap_or("").to_string();
            if statuses.last() != Some(&status) {
                statuses.push(status.clone());
            }
            let timeline: Vec<&str> = probe["timeline"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
            running_seen |= timeline.contains(&"RUNNING");
            let done = timeline.iter().filter(|s| **s == "COMPLETED").count();
            if status == "PROVISIONING" && done >= 3 && !mid_shot {
                page.full_screenshot("console_tenant_running.png").await;
                mid_shot = true;
            }
            let finished = probe["seen"].as_array().unwrap().iter().any(|e| e == "tenant_finished:");
            if status == "ACTIVE" && finished && done == 10 && probe["runs"].as_array().is_some_and(|r| r.first() == Some(&json!("ok"))) {
                break probe;
            }
            if let Ok(Some(st)) = apply.try_wait() {
                assert!(st.success(), "{}", ws.apply_log());
            }
            assert!(Instant::now() < deadline, "{slug} never reached ACTIVE on its page: {statuses:?} {probe}");
            tokio::time::sleep(Duration::from_millis(150)).await;
        };
        assert!(running_seen, "the timeline showed a running phase: {statuses:?}");
        assert_eq!(statuses.first().map(String::as_str), Some("PROVISIONING"), "{statuses:?}");
        let seen: Vec<&str> = last["seen"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
        assert!(seen.iter().filter(|s| s.starts_with("phase_finished")).count() >= 3, "live phase events: {seen:?}");
        // Every resource of this first apply is one operation on the page, none lost between the
        // page's first read and its WebSocket.
        let (_, status) = get(&serve.url(&format!("/api/v1/tenants/{slug}/provisioning/status")), None).await;
        let ops = page.wait_for("every operation", &format!("(n => n === {} ? n : 0)(document.querySelectorAll('#ops tbody tr').length)", status["resources"]["total"]), Duration::from_secs(10)).await;
        assert!(ops.as_u64().unwrap() > 20, "operations per phase: {last}");
        page.wait_for("the outputs", "[...document.querySelectorAll('#outputs tbody tr')].some(r => r.cells[0].textContent === 'load_balancer_ip')", Duration::from_secs(10)).await;
        page.full_screenshot("console_tenant_active.png").await;
        assert!(apply.wait().unwrap().success(), "{}", ws.apply_log());

        // After the apply: the fleet's counts, and the duration plot made of the three runs.
        page.goto(&serve.url("/")).await;
        page.wait_for(
            "three ACTIVE tenants",
            "document.querySelector('[data-count=ACTIVE] .n').textContent === '3'",
            Duration::from_secs(15),
        )
        .await;
        let runs = page.eval("[...document.querySelectorAll('#dur-table tbody tr')].map(r => r.cells[1].textContent).join()").await;
        assert_eq!(runs, json!("3,3,3,3,3,3,3,3,3,3"), "every phase measured over the three tenants");
        page.full_screenshot("console_fleet_after_apply.png").await;

        // The API pages, filters and sorts the same way, and says clearly what it refuses.
        let (code, body) = get(&serve.url("/api/v1/tenants?status=ACTIVE&tier=free"), None).await;
        assert_eq!(code, 200, "{body}");
        assert_eq!(body["tenants"].as_array().unwrap().iter().map(|t| t["slug"].clone()).collect::<Vec<_>>(), [json!("globex")]);
        assert_eq!((body["total"].clone(), body["counts"]["ACTIVE"].clone()), (json!(1), json!(3)), "{body}");
        let (_, body) = get(&serve.url("/api/v1/tenants?sort=-duration&pageSize=2&page=2"), None).await;
        assert_eq!((body["total"].clone(), body["pages"].clone()), (json!(3), json!(2)), "{body}");
        assert_eq!(body["tenants"].as_array().unwrap().len(), 1, "{body}");
        let (_, all) = get(&serve.url("/api/v1/tenants?sort=duration&order=desc"), None).await;
        let d: Vec<u64> = all["tenants"].as_array().unwrap().iter().map(|t| t["durationMs"].as_u64().unwrap()).collect();
        assert!(d.windows(2).all(|w| w[0] >= w[1]) && d[2] == body["tenants"][0]["durationMs"].as_u64().unwrap(), "{d:?} {body}");
        for (q, says) in [
            ("pageSize=0", "pageSize must be a whole number from 1 to 1000"),
            ("status=BROKEN", "status must be one or more"),
            ("sort=colour", "sort must be one of"),
            ("colour=red", "unknown query parameter \"colour\""),
        ] {
            let (code, body) = get(&serve.url(&format!("/api/v1/tenants?{q}")), None).await;
            assert_eq!(code, 400, "{q}: {body}");
            assert!(body["message"].as_str().unwrap().contains(says), "{q}: {body}");
        }
        let (code, body) = get(&serve.url("/api/v1/phases/durations?tier=professional"), None).await;
        assert_eq!(code, 200, "{body}");
        assert_eq!(body["tenants"], 1, "{body}");
        assert_eq!(body["phases"][0]["expectedMinMs"], 5000, "{body}");
        assert_eq!(body["phases"][2]["expectedMaxMs"], 300000, "{body}");

        // Drift: globex's namespace is relabelled with kubectl; the real `matih drift` report lands
        // in the file serve watches, and the console shows it without a restart.
        let (_, body) = get(&serve.url("/api/v1/tenants/globex/drift"), None).await;
        assert_eq!(body["available"], json!(false), "{body}");
        let out = ws.kube.kubectl(&["label", "ns", "matih-globex", "matih.ai/region=westus", "--overwrite"]);
        assert!(out.status.success(), "{}", common::text(&out));
        let out = ws.command(&["drift", "tenants", "--format", "json"]).output().unwrap();
        assert!(out.status.success(), "{}", common::text(&out));
        std::fs::write(&report, &out.stdout).unwrap();
        page.goto(&serve.url("/")).await;
        page.wait_for(
            "the drift badges",
            "document.querySelector('[data-count=drifted] .n') && document.querySelector('[data-count=drifted] .n').textContent === '1'",
            Duration::from_secs(10),
        )
        .await;
        let badges = page.eval("[...document.querySelectorAll('#tenants tbody tr')].map(r => r.id + '=' + (r.querySelector('[data-role=drift]') || {}).textContent).join()").await;
        assert_eq!(badges, json!("tenant-acme=in sync,tenant-globex=1 drifted,tenant-initech=in sync"));
        page.goto(&serve.url("/tenants/globex")).await;
        let findings = page
            .wait_for(
                "globex's findings",
                "document.getElementById('drift-findings').hidden ? '' : document.querySelector('#drift-findings tbody').textContent",
                Duration::from_secs(10),
            )
            .await;
        let findings = findings.as_str().unwrap();
        assert!(findings.contains("kubernetes_namespace.tenant") && findings.contains("\"westeurope\" → \"westus\""), "{findings}");
        page.full_screenshot("console_tenant_drift.png").await;
    });
}

#[test]
fn a_failed_phase_shows_its_error_and_what_was_rolled_back() {
    let ws = Workspace::with_tenants(300, "", &[]);
    let _claim = serve_support::kube::claim_tenant("umbrella");
    std::fs::write(
        ws.path().join("tenants/umbrella.hcl"),
        r#"tenant "umbrella" {
  id          = "0b8c6f3e-3a4c-4f55-9d2e-5a9a7f1c2b10"
  tier        = "free"
  region      = "eastus"
  admin_email = "ops@umbrella.example"
}
"#,
    )
    .unwrap();
    // The ingress controller's LoadBalancer never gets an IP: phase 6 fails after its attempts.
    ws.kube.admin("PATCH", "/_admin/config", json!({"neverAssignLbIp": true}));
    let serve = ws.serve("127.0.0.1:0", None);
    let browser = Browser::start(&serve.url("/"));
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut page = Page::attach(browser.port).await;
        page.wait_for("the fleet view", "document.body.dataset.ready === '1'", Duration::from_secs(30)).await;
        let mut apply = ws.spawn_apply_of(&["tenants/umbrella.hcl"]);
        page.wait_for("umbrella in the fleet", "!!document.getElementById('tenant-umbrella')", Duration::from_secs(60)).await;
        page.eval("document.querySelector('#tenant-umbrella a.slug').click()").await;
        page.wait_for("the tenant page", "location.pathname === '/tenants/umbrella' && document.body.dataset.ready === '1'", Duration::from_secs(30)).await;
        let status = apply.wait().unwrap();
        assert!(!status.success(), "the apply fails: {}", ws.apply_log());
        // The page learns the failure live, then reads the run from the audit log.
        page.wait_for("FAILED", "document.getElementById('t-status').dataset.status === 'FAILED'", Duration::from_secs(30)).await;
        let error = page.wait_for("the error", "document.getElementById('failure').hidden ? '' : document.getElementById('fail-error').textContent", Duration::from_secs(10)).await;
        let error = error.as_str().unwrap();
        assert!(error.contains("phase 6/10 DEPLOY_INGRESS_CONTROLLER"), "{error}");
        assert!(error.contains("no external IP assigned to LoadBalancer Service"), "{error}");
        let rolled_back = page
            .wait_for(
                "the rollback",
                "[...document.querySelectorAll('[data-role=rollback]')].map(li => li.textContent).join('\\n')",
                Duration::from_secs(15),
            )
            .await;
        let rolled_back = rolled_back.as_str().unwrap();
        assert!(rolled_back.contains("kubernetes_deployment.ingress_controller") && rolled_back.contains("deleted again"), "{rolled_back}");
        let p6 = page.eval("document.querySelector('#timeline .tl-row[data-phase=\"6\"]').dataset.state").await;
        assert_eq!(p6, json!("ROLLED_BACK"));
        // Phase 6's operations are open, with the failed one and its error.
        let failed_op = page
            .wait_for(
                "the failed operation",
                "(r => r ? r.cells[0].textContent + ' ' + r.cells[4].textContent : '')(document.querySelector('details[data-phase=\"6\"][open] tr[data-outcome=failed]'))",
                Duration::from_secs(10),
            )
            .await;
        assert!(failed_op.as_str().unwrap().starts_with("kubernetes_service.ingress_controller"), "{failed_op}");
        page.full_screenshot("console_tenant_failed.png").await;

        // The fleet counts it as failed, with its error in the row.
        page.goto(&serve.url("/?status=FAILED")).await;
        assert_eq!(page.eval("document.querySelector('[data-count=FAILED] .n').textContent").await, json!("1"));
        let row = page.eval("document.querySelector('#tenant-umbrella .err').textContent").await;
        assert!(row.as_str().unwrap().contains("phase 6/10"), "{row}");

        // The LoadBalancer gets its IP now: the next apply finishes. The earlier run stays on the
        // page, and showing it brings back its timeline, error and rollback.
        ws.kube.admin("PATCH", "/_admin/config", json!({"neverAssignLbIp": false}));
        let st = ws.spawn_apply_of(&["tenants/umbrella.hcl"]).wait().unwrap();
        assert!(st.success(), "{}", ws.apply_log());
        page.goto(&serve.url("/tenants/umbrella")).await;
        page.wait_for(
            "two runs",
            "[...document.querySelectorAll('#runs tbody tr')].map(r => r.cells[2].textContent).join() === 'ok,failed'",
            Duration::from_secs(15),
        )
        .await;
        assert_eq!(page.eval("document.getElementById('t-status').dataset.status").await, json!("ACTIVE"));
        assert_eq!(page.eval("document.getElementById('failure').hidden").await, json!(true));
        page.eval("document.querySelectorAll('#runs tbody tr')[1].querySelector('button').click()").await;
        page.wait_for(
            "the earlier run on the timeline",
            "document.querySelector('#timeline .tl-row[data-phase=\"6\"]').dataset.state === 'ROLLED_BACK' && !document.getElementById('failure').hidden",
            Duration::from_secs(10),
        )
        .await;
        assert!(page.eval("document.querySelectorAll('[data-role=rollback]').length").await.as_u64().unwrap() >= 1);
        page.full_screenshot("console_tenant_earlier_run.png").await;
        let (_, body) = get(&serve.url("/api/v1/tenants/umbrella/runs?pageSize=1&page=2"), None).await;
        assert_eq!((body["total"].clone(), body["items"][0]["outcome"].clone()), (json!(2), json!("failed")), "{body}");
    });
}

/// A state store of `n` tenants (statuses, tiers, regions and phase durations spread over the
/// fleet), written through matih's own store; and a drift report naming some of them.
fn fill_fleet(state: &Path, n: usize) -> (usize, usize, PathBuf) {
    use matih::addr::ResourceAddr;
    use matih::phase::Phase;
    use matih::state::{PhaseRun, PhaseState, ResourceState, SledStore, StateStore, TenantState, TenantStatus};
    use matih::value::Value as V;

    let store = SledStore::open(state).unwrap();
    let mut rng: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move |m: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % m
    };
    let (tiers, regions) =
        (["free", "professional", "enterprise"], ["eastus", "westeurope", "westus2", "southeastasia"]);
    let (mut failed, mut pending) = (0, 0);
    let mut drift = Vec::new();
    for i in 0..n {
        let slug = format!("tenant-{i:04}");
        let mut st = TenantState::new(&slug, &uuid_of(i));
        let kind = next(20);
        let (status, ran) = match kind {
            0..=13 => (TenantStatus::Active, 10),
            14..=15 => (TenantStatus::Failed, 1 + next(9) as usize),
            16..=17 => (TenantStatus::Provisioning, 1 + next(9) as usize),
            _ => (TenantStatus::Pending, 0),
        };
        st.status = status;
        pending += usize::from(status == TenantStatus::Pending);
        let labels = V::map([
            ("matih.ai/tier", V::str(tiers[next(3) as usize])),
            ("matih.ai/region", V::str(regions[next(4) as usize])),
        ]);
        st.resources.insert(
            ResourceAddr::new("kubernetes_namespace", "tenant"),
            ResourceState {
                phase: Phase::CreateNamespace,
                attrs: [("metadata".to_string(), V::map([("labels", labels)]))].into_iter().collect(),
                outputs: Default::default(),
                depends_on: Default::default(),
            },
        );
        // About as many resources as a real tenant records (~70), each with a few attributes.
        for r in 0..70 {
            let phase = Phase::ALL[r % 10];
            if phase.number() as usize > ran {
                continue;
            }
            let attrs = V::map([
                (
                    "metadata",
                    V::map([("name", V::str(format!("object-{r}"))), ("namespace", V::str(format!("matih-{slug}")))]),
                ),
                ("spec", V::map([("replicas", V::Int(2)), ("image", V::str("matih.azurecr.io/service:latest"))])),
            ]);
            let attrs = match attrs {
                V::Map(m) => m,
                _ => unreachable!(),
            };
            st.resources.insert(
                ResourceAddr::new("kubernetes_deployment", format!("service_{r}")),
                ResourceState { phase, attrs, outputs: Default::default(), depends_on: Default::default() },
            );
        }
        for (k, p) in Phase::ALL.iter().enumerate().take(ran) {
            let last = k + 1 == ran;
            let state = match status {
                TenantStatus::Failed if last => PhaseState::RolledBack,
                TenantStatus::Provisioning if last => PhaseState::Running,
                _ => PhaseState::Completed,
            };
            let ms = 400 + next(4000) * (k as u64 + 1) + if next(15) == 0 { 400_000 } else { 0 };
            st.phases.insert(
                *p,
                PhaseRun {
                    started_at: "2026-12-01T02:00:00Z".into(),
                    finished_at: (state != PhaseState::Running).then(|| "2026-12-01T02:01:00Z".into()),
                    duration_ms: (state != PhaseState::Running).then_some(ms),
                    state,
                    operations: 3,
                },
            );
            if state == PhaseState::Running || state == PhaseState::RolledBack {
                st.current_phase = Some(*p);
            }
        }
        if status == TenantStatus::Failed {
            failed += 1;
            st.provisioning_error = Some(format!("phase {ran}/10: the API server refused the object (tenant {i})"));
        }
        if status == TenantStatus::Active {
            st.provisioning_completed_at = Some("2026-12-01T02:10:00Z".into());
        }
        st.serial = 1;
        store.put(&st, None, "apply").unwrap();
        if status != TenantStatus::Pending {
            let drifted = next(10) == 0;
            drift.push(json!({"slug": slug, "tenant_id": uuid_of(i), "status": if drifted { "drifted" } else { "in_sync" }, "findings": usize::from(drifted)}));
        }
    }
    let findings: Vec<Value> = drift
        .iter()
        .filter(|t| t["status"] == "drifted")
        .map(|t| {
            json!({"tenant": t["slug"], "phase": "DEPLOY_CORE_SERVICES", "phase_number": 3,
            "address": "kubernetes_deployment.query_engine", "kind": "changed", "action": null, "error": null,
            "attributes": [{"path": "spec.replicas", "before": 2, "after": 5}]})
        })
        .collect();
    let report = state.parent().unwrap().join("drift.json");
    let doc = json!({"format_version": "1.0", "drift": true, "summary": {}, "tenants": drift, "findings": findings, "ignored": []});
    std::fs::write(&report, serde_json::to_string_pretty(&doc).unwrap()).unwrap();
    (failed, pending, report)
}

fn uuid_of(i: usize) -> String {
    format!("00000000-0000-4000-8000-{i:012}")
}

#[test]
fn a_thousand_tenants_keep_the_fleet_view_responsive() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let t = Instant::now();
    let (failed, pending, report) = fill_fleet(&state, 1000);
    eprintln!("wrote 1000 tenants to the state store in {:?}", t.elapsed());
    // Two tenants with a spec and no state: never applied.
    std::fs::create_dir_all(dir.path().join("tenants")).unwrap();
    for (slug, id) in
        [("newco", "11111111-2222-4333-8444-555555555555"), ("startup", "11111111-2222-4333-8444-666666666666")]
    {
        let spec = format!(
            "tenant \"{slug}\" {{\n  id = \"{id}\"\n  tier = \"free\"\n  region = \"eastus\"\n  admin_email = \"ops@{slug}.example\"\n}}\n"
        );
        std::fs::write(dir.path().join(format!("tenants/{slug}.hcl")), spec).unwrap();
    }
    let mut c = crate::support::matih_command();
    c.args(["serve", "tenants", "--listen", "127.0.0.1:0", "--drift-report"])
        .arg(&report)
        .current_dir(dir.path())
        .env("MATIH_STATE_DIR", &state)
        .env("NO_COLOR", "1")
        .env_remove("MATIH_PLATFORM_FILE")
        .env_remove("MATIH_SERVE_TOKEN");
    let serve = Serve::start(c);
    let browser = Browser::start("about:blank");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut page = Page::attach(browser.port).await;
        let mut api_ms = Vec::new();
        for q in ["", "?q=tenant-07", "?status=FAILED&sort=-duration"] {
            let t = Instant::now();
            let (code, _) = get(&serve.url(&format!("/api/v1/tenants{q}")), None).await;
            assert_eq!(code, 200);
            api_ms.push(t.elapsed().as_millis());
        }
        eprintln!("GET /api/v1/tenants with 1000 tenants: {api_ms:?} ms");
        // What the browser relies on: a strict policy on every answer, the tenant page's URL, the runs and drift APIs.
        let resp = reqwest::get(serve.url("/tenants/tenant-0001")).await.unwrap();
        assert_eq!(resp.status(), 200);
        let csp = resp.headers()["content-security-policy"].to_str().unwrap().to_string();
        assert!(csp.starts_with("default-src 'none'; script-src 'self'; style-src 'self'"), "{csp}");
        assert!(resp.text().await.unwrap().contains("<script src=\"/app.js\" defer>"));
        let (code, body) = get(&serve.url("/tenants/Not_A_Slug"), None).await;
        assert_eq!(code, 400, "{body}");
        let (code, body) = get(&serve.url("/api/v1/tenants/tenant-0001/runs?pageSize=0"), None).await;
        assert_eq!((code, body["message"].as_str().unwrap()), (400, "pageSize must be a whole number from 1 to 100, found \"0\""));
        let (code, body) = get(&serve.url("/api/v1/tenants/tenant-0001/runs"), None).await;
        assert_eq!((code, body["source"].as_str(), body["total"].as_u64()), (200, Some("audit"), Some(0)), "{body}");
        let (_, body) = get(&serve.url("/api/v1/tenants/tenant-0001/drift"), None).await;
        assert_eq!(body["available"], json!(true), "{body}");

        // First render: from navigation to the table, the counts and the plot drawn.
        page.goto(&serve.url("/")).await;
        let first = page.eval("window.matihTimings.firstRenderSinceNavigation").await.as_f64().unwrap();
        let first_dom = page.eval("window.matihTimings.lastRenderMs").await.as_f64().unwrap();
        let total = page.eval("document.getElementById('p-info').textContent").await;
        assert!(total.as_str().unwrap().contains("of 1002 tenants"), "{total}");
        assert_eq!(
            page.eval("document.querySelector('[data-count=NEVER_APPLIED] .n').textContent").await,
            json!((pending + 2).to_string()),
            "the tenants with a spec and no state are never applied"
        );
        assert_eq!(page.eval("document.querySelector('[data-count=FAILED] .n').textContent").await, json!(failed.to_string()));
        assert_eq!(page.eval("document.querySelectorAll('#tenants tbody tr').length").await, json!(50));
        assert!(page.eval("document.querySelectorAll('#tenants [data-role=drift]').length").await.as_u64().unwrap() > 0);

        // A free-text filter, typed.
        page.press("/").await;
        page.eval("window.matihTimings.filter = null").await;
        page.type_text("tenant-07").await;
        let filter = page.wait_for("the filtered table", "window.matihTimings.filter", Duration::from_secs(10)).await;
        let filter = filter.as_f64().unwrap();
        let filter_dom = page.eval("window.matihTimings.lastRenderMs").await.as_f64().unwrap();
        let shown = rows(&page.eval(ROWS).await);
        assert!(!shown.is_empty() && shown.iter().all(|r| r.0.starts_with("tenant-07")), "{shown:?}");
        assert!(page.eval("document.getElementById('p-info').textContent").await.as_str().unwrap().contains("of 100 tenants"));
        // The spec-only tenants are found by their tier and region too.
        let (_, body) = get(&serve.url("/api/v1/tenants?status=NEVER_APPLIED&q=newco"), None).await;
        assert_eq!(body["tenants"][0]["tier"], json!("free"), "{body}");

        // A status filter from the counts, and a sort by duration.
        page.eval("document.getElementById('f-clear').click()").await;
        page.wait_for("all again", "document.getElementById('p-info').textContent.includes('of 1002')", Duration::from_secs(10)).await;
        page.eval("window.matihTimings.filter = null; document.querySelector('[data-count=FAILED]').click()").await;
        let status_filter = page.wait_for("failed only", "window.matihTimings.filter", Duration::from_secs(10)).await.as_f64().unwrap();
        let shown = rows(&page.eval(ROWS).await);
        assert!(shown.iter().all(|r| r.1 == "FAILED"), "{shown:?}");
        page.eval("window.matihTimings.filter = null; document.querySelector('th[data-sort=duration] button').click()").await;
        let sort = page.wait_for("sorted", "window.matihTimings.filter", Duration::from_secs(10)).await.as_f64().unwrap();
        assert_eq!(page.eval("document.querySelector('th[data-sort=duration]').getAttribute('aria-sort')").await, json!("ascending"));
        page.goto(&serve.url("/")).await;
        page.full_screenshot("console_fleet_1000.png").await;

        eprintln!(
            "fleet view with 1000 tenants in headless Chromium: first render {first:.0} ms after navigation \
             (building the page {first_dom:.0} ms of it), free-text filter {filter:.0} ms (building {filter_dom:.0} ms), \
             status filter {status_filter:.0} ms, sort {sort:.0} ms"
        );
        // A sanity bound only (a loaded machine is slow); the numbers above are what matters.
        for (what, ms) in [("first render", first), ("filter", filter), ("status filter", status_filter), ("sort", sort)] {
            assert!(ms < 30_000.0, "{what} took {ms} ms");
        }

        // A drifted tenant's page shows its findings.
        let drifted = page.eval("(r => r && r.closest('tr').id.replace('tenant-', ''))(document.querySelector('#tenants .d-drifted'))").await;
        let slug = match drifted.as_str() {
            Some(s) => s.to_string(),
            None => {
                let (_, body) = get(&serve.url("/api/v1/tenants?pageSize=1000"), None).await;
                body["tenants"].as_array().unwrap().iter().find(|t| t["drift"]["status"] == "drifted").unwrap()["slug"]
                    .as_str()
                    .unwrap()
                    .to_string()
            }
        };
        page.goto(&serve.url(&format!("/tenants/{slug}"))).await;
        let findings = page.wait_for("the drift findings", "document.getElementById('drift-findings').hidden ? '' : document.querySelector('#drift-findings tbody').textContent", Duration::from_secs(10)).await;
        assert!(findings.as_str().unwrap().contains("spec.replicas: 2 → 5"), "{findings}");
        assert!(page.eval("document.getElementById('t-drift').textContent").await.as_str().unwrap().starts_with("drifted"));
    });
}
