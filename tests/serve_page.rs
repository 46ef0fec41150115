//! The status page in a real browser: headless Chromium (Debian's `chromium`, installed with
//! apt-get when missing) opens `matih serve`'s page before the apply starts; the test then runs a
//! real apply and watches the page, through the DevTools protocol, show acme PROVISIONING with a
//! live progress bar (events received over the page's WebSocket), then ACTIVE. Screenshots of both
//! moments are saved under the Cargo target's tmp directory.

mod common;
mod serve_support;

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
            .args(["--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1280,720"])
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

const PROBE: &str = r#"JSON.stringify({
  status: (document.querySelector('#tenant-acme') || {dataset: {}}).dataset.status || null,
  segments: [...document.querySelectorAll('#tenant-acme .seg')].map(s => s.className.replace('seg ', '')),
  seen: (window.matihSeen || []).map(e => e.type + ':' + (e.phase || '')),
})"#;

#[test]
fn the_status_page_shows_acme_reaching_active_live() {
    let ws = Workspace::new(1500, "");
    let serve = ws.serve("127.0.0.1:0", None);
    let browser = Browser::start(&serve.url("/"));
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut page = Page::attach(browser.port).await;
        let deadline = Instant::now() + Duration::from_secs(30);
        while page
            .eval("document.getElementById('conn').textContent")
            .await
            .as_str()
            .is_none_or(|s| !s.starts_with("updated"))
        {
            assert!(Instant::now() < deadline, "the page never loaded the tenant list");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(page.eval("document.getElementById('empty').hidden").await, json!(false), "no tenants yet");

        let mut apply = ws.spawn_apply();
        let out_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        let mut statuses: Vec<String> = Vec::new();
        let mut mid_shot = false;
        let deadline = Instant::now() + Duration::from_secs(240);
        let last = loop {
            let probe: Value = serde_json::from_str(page.eval(PROBE).await.as_str().unwrap()).unwrap();
            if let Some(s) = probe["status"].as_str() {
                if statuses.last().is_none_or(|l| l != s) {
                    statuses.push(s.to_string());
                }
                let done = probe["segments"].as_array().unwrap().iter().filter(|c| *c == "COMPLETED").count();
                if s == "PROVISIONING" && !mid_shot && done >= 3 {
                    page.screenshot(&out_dir.join("serve_page_provisioning.png")).await;
                    mid_shot = true;
                }
                // The last snapshot already says ACTIVE; the run's `tenant_finished` event follows it.
                let finished = probe["seen"].as_array().unwrap().iter().any(|e| e == "tenant_finished:");
                if s == "ACTIVE" && finished {
                    break probe;
                }
            }
            if let Ok(Some(st)) = apply.try_wait() {
                assert!(st.success(), "{}", ws.apply_log());
            }
            assert!(
                Instant::now() < deadline,
                "the page never showed ACTIVE after tenant_finished: {statuses:?} {probe}"
            );
            tokio::time::sleep(Duration::from_millis(150)).await;
        };
        page.screenshot(&out_dir.join("serve_page_active.png")).await;
        assert!(apply.wait().unwrap().success(), "{}", ws.apply_log());

        // The page went through PROVISIONING to ACTIVE, driven by WebSocket events.
        assert_eq!(statuses.first().map(String::as_str), Some("PROVISIONING"), "{statuses:?}");
        assert_eq!(statuses.last().map(String::as_str), Some("ACTIVE"), "{statuses:?}");
        assert!(mid_shot, "a screenshot while provisioning was taken");
        let seen: Vec<&str> = last["seen"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
        assert!(seen.contains(&"phase_started:10") && seen.contains(&"tenant_finished:"), "{seen:?}");
        assert!(seen.iter().filter(|s| s.starts_with("resource_finished")).count() > 20, "{seen:?}");
        assert_eq!(last["segments"].as_array().unwrap().iter().filter(|c| *c == "COMPLETED").count(), 10, "{last}");
        let badge = page.eval("document.querySelector('#tenant-acme [data-role=status]').textContent").await;
        assert_eq!(badge, json!("ACTIVE"));
    });
}
