//! Shared by the `serve*` tests: the three real servers and a tenant workspace (as in `e2e.rs`),
//! `matih serve` and `matih apply` as child processes, an HTTP and a WebSocket client, an SMTP sink
//! and a webhook receiver (both on loopback, written here).

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

pub use super::kube;
pub use super::pg as postgres;
pub use super::powerdns;

pub const PARENT: &str = "matih.test";
pub const SLACK: &str = "https://hooks.slack.example/services/T0/B0/serve-secret-webhook";

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A workspace with tenants/acme.hcl and a matih.hcl pointing at the three servers, plus `extra`
/// platform blocks. The parent zone exists in PowerDNS.
pub struct Workspace {
    pub dir: tempfile::TempDir,
    pub kube: kube::Kube,
    pub pg: &'static postgres::PgServer,
    pub dns: &'static powerdns::PowerDns,
    pub env: Vec<(String, String)>,
    _claim: Vec<kube::TenantClaim>,
}

impl Workspace {
    pub fn new(ready_ms: u64, extra: &str) -> Workspace {
        Workspace::with_tenants(ready_ms, extra, &["acme"])
    }

    /// As [`Workspace::new`], with `tenants/{slug}.hcl` of the repository for each of `slugs`.
    pub fn with_tenants(ready_ms: u64, extra: &str, slugs: &[&str]) -> Workspace {
        // `ready_ms`: how long Deployments take to become ready (makes the apply last long enough to watch).
        // On the real control plane readiness takes what it takes; added latency on every request
        // through this test's proxy stretches the apply instead.
        let claim = kube::claim_tenants(slugs);
        let kube = kube::Kube::start();
        kube.latency(ready_ms / 30);
        let pg = postgres::server();
        let dns = powerdns::server();
        // On a thread of its own: the caller may be inside a runtime already.
        std::thread::spawn(move || {
            let rt = tokio::runtime::Runtime::new().unwrap();
            dns.parent_zone(&rt, PARENT);
        })
        .join()
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("tenants")).unwrap();
        for slug in slugs {
            let file = format!("tenants/{slug}.hcl");
            std::fs::copy(root().join(&file), dir.path().join(&file)).unwrap();
        }
        std::fs::write(
            dir.path().join("matih.hcl"),
            format!("{}{extra}\n", super::platform_hcl(PARENT, &dns.api_url, pg.port, &kube.url)),
        )
        .unwrap();
        let env = vec![
            ("MATIH_POSTGRES_ADMIN_URL".to_string(), pg.admin_url.clone()),
            ("PDNS_API_KEY".to_string(), dns.api_key.clone()),
            ("ACME_SLACK_WEBHOOK".to_string(), SLACK.to_string()),
            ("INITECH_SLACK_WEBHOOK".to_string(), SLACK.to_string()),
        ];
        Workspace { dir, kube, pg, dns, env, _claim: claim }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = super::matih_command();
        c.args(args)
            .current_dir(self.path())
            .env("MATIH_STATE_DIR", self.path().join("state"))
            .env("NO_COLOR", "1")
            .env_remove("MATIH_PLATFORM_FILE")
            .env_remove("MATIH_SERVE_TOKEN")
            .stdin(Stdio::null());
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c
    }

    /// Starts `matih apply tenants/acme.hcl --auto-approve` in the background, its output going to
    /// `apply.log` in the workspace (a pipe nobody reads would fill up and stop it).
    pub fn spawn_apply(&self) -> Child {
        self.spawn_apply_of(&["tenants/acme.hcl"])
    }

    /// `matih apply PATHS --auto-approve` in the background (output to `apply.log`).
    pub fn spawn_apply_of(&self, paths: &[&str]) -> Child {
        let log = std::fs::File::create(self.path().join("apply.log")).unwrap();
        let mut args = vec!["apply"];
        args.extend_from_slice(paths);
        args.push("--auto-approve");
        self.command(&args).stdout(log.try_clone().unwrap()).stderr(log).spawn().unwrap()
    }

    pub fn apply_log(&self) -> String {
        std::fs::read_to_string(self.path().join("apply.log")).unwrap_or_default()
    }

    pub fn serve(&self, listen: &str, token: Option<&str>) -> Serve {
        self.serve_with(listen, token, &[])
    }

    /// `matih serve --listen LISTEN EXTRA…`.
    pub fn serve_with(&self, listen: &str, token: Option<&str>, extra: &[&str]) -> Serve {
        let mut c = self.command(&["serve", "--listen", listen]);
        c.args(extra);
        if let Some(t) = token {
            c.env("MATIH_SERVE_TOKEN", t);
        }
        Serve::start(c)
    }
}

pub struct Serve {
    child: Child,
    pub addr: String,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Serve {
    pub fn start(mut c: Command) -> Serve {
        let mut child = c.stdout(Stdio::piped()).spawn().expect("start matih serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let line = line.trim();
        let addr = line
            .strip_prefix("listening on http://")
            .or_else(|| line.strip_prefix("listening on https://"))
            .unwrap_or_else(|| panic!("serve said {line:?}"));
        Serve { addr: addr.to_string(), child }
    }

    /// The server process's resident memory, in KiB (Linux: `/proc/PID/status`).
    #[allow(dead_code)]
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

/// GET → (status, body as JSON or Null).
pub async fn get(url: &str, token: Option<&str>) -> (u16, serde_json::Value) {
    let mut r = reqwest::Client::new().get(url);
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    let resp = r.send().await.unwrap();
    let code = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (code, serde_json::from_str(&text).unwrap_or(serde_json::Value::Null))
}

/// A WebSocket client collecting every message it receives.
#[derive(Clone, Default)]
pub struct WsLog(pub Arc<Mutex<Vec<serde_json::Value>>>);

impl WsLog {
    pub fn snapshot(&self) -> Vec<serde_json::Value> {
        self.0.lock().unwrap().clone()
    }

    pub async fn wait_for(&self, what: &str, timeout: Duration, pred: impl Fn(&serde_json::Value) -> bool) {
        let deadline = Instant::now() + timeout;
        loop {
            if self.snapshot().iter().any(&pred) {
                return;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}; got {:#?}", self.snapshot());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

pub async fn ws_connect(url: &str) -> WsLog {
    let (ws, _) = tokio_tungstenite::connect_async(url).await.unwrap_or_else(|e| panic!("connect {url}: {e}"));
    let log = WsLog::default();
    let l = log.clone();
    tokio::spawn(async move {
        let (_tx, mut rx) = ws.split();
        while let Some(Ok(m)) = rx.next().await {
            if let tokio_tungstenite::tungstenite::Message::Text(t) = m {
                l.0.lock().unwrap().push(serde_json::from_str(t.as_str()).unwrap());
            }
        }
    });
    log
}

/// A minimal SMTP server on loopback that accepts every message and keeps it.
#[derive(Clone, Default)]
pub struct SmtpSink {
    pub port: u16,
    pub messages: Arc<Mutex<Vec<String>>>,
}

impl SmtpSink {
    pub async fn start() -> SmtpSink {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let sink = SmtpSink { port: listener.local_addr().unwrap().port(), messages: Default::default() };
        let msgs = sink.messages.clone();
        tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                let msgs = msgs.clone();
                tokio::spawn(async move {
                    let (r, mut w) = s.into_split();
                    let mut r = tokio::io::BufReader::new(r);
                    let _ = w.write_all(b"220 sink ESMTP\r\n").await;
                    let mut envelope = String::new();
                    let mut line = String::new();
                    loop {
                        line.clear();
                        if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        let cmd = line.to_ascii_uppercase();
                        let reply: &[u8] = if cmd.starts_with("EHLO") {
                            b"250-sink\r\n250 8BITMIME\r\n"
                        } else if cmd.starts_with("DATA") {
                            let _ = w.write_all(b"354 go ahead\r\n").await;
                            let mut data = String::new();
                            loop {
                                line.clear();
                                if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                                    return;
                                }
                                if line == ".\r\n" {
                                    break;
                                }
                                data.push_str(&line);
                            }
                            msgs.lock().unwrap().push(format!("{envelope}{data}"));
                            envelope.clear();
                            b"250 queued\r\n"
                        } else if cmd.starts_with("QUIT") {
                            let _ = w.write_all(b"221 bye\r\n").await;
                            return;
                        } else {
                            if cmd.starts_with("MAIL") || cmd.starts_with("RCPT") {
                                envelope.push_str(&line);
                            }
                            b"250 ok\r\n"
                        };
                        let _ = w.write_all(reply).await;
                    }
                });
            }
        });
        sink
    }
}

/// An HTTP receiver on loopback that keeps every request body; answers the first `fail_first`
/// requests with 500, then 200.
#[derive(Clone, Default)]
pub struct Webhook {
    pub port: u16,
    pub bodies: Arc<Mutex<Vec<(u16, serde_json::Value)>>>,
}

impl Webhook {
    pub async fn start(fail_first: usize) -> Webhook {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let hook = Webhook { port: listener.local_addr().unwrap().port(), bodies: Default::default() };
        let bodies = hook.bodies.clone();
        tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                let bodies = bodies.clone();
                tokio::spawn(async move {
                    let (r, mut w) = s.into_split();
                    let mut r = tokio::io::BufReader::new(r);
                    let mut len = 0usize;
                    let mut line = String::new();
                    loop {
                        line.clear();
                        if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        if line == "\r\n" {
                            break;
                        }
                        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                            len = v.trim().parse().unwrap_or(0);
                        }
                    }
                    let mut body = vec![0; len];
                    if r.read_exact(&mut body).await.is_err() {
                        return;
                    }
                    let code = {
                        let mut b = bodies.lock().unwrap();
                        let code = if b.len() < fail_first { 500 } else { 200 };
                        b.push((code, serde_json::from_slice(&body).unwrap_or_default()));
                        code
                    };
                    let resp = format!("HTTP/1.1 {code} X\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
                    let _ = w.write_all(resp.as_bytes()).await;
                });
            }
        });
        hook
    }
}

pub async fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls acme's status on `serve` until it shows PROVISIONING (the apply's first state write);
/// fails if the apply ends first or after 60 s. Returns that status.
pub async fn wait_for_provisioning(serve: &Serve, ws: &Workspace, apply: &mut Child) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (code, body) = get(&serve.url("/api/v1/tenants/acme/provisioning/status"), None).await;
        if code == 200 && body["status"] == "PROVISIONING" {
            return body;
        }
        if let Ok(Some(_)) = apply.try_wait() {
            panic!("the apply ended before acme showed PROVISIONING ({code} {body}): {}", ws.apply_log());
        }
        assert!(Instant::now() < deadline, "acme never showed PROVISIONING: {code} {body}\n{}", ws.apply_log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A WebSocket client of acme on `serve` that has seen its snapshot and then phase `phase` finish.
pub async fn watch_acme_through_phase(serve: &Serve, phase: u64) -> WsLog {
    let client = ws_connect(&format!("ws://{}/ws/provisioning/acme", serve.addr)).await;
    client.wait_for("the first snapshot", Duration::from_secs(10), |e| e["type"] == "snapshot").await;
    client
        .wait_for(&format!("phase {phase} finished"), Duration::from_secs(120), |e| {
            e["type"] == "phase_finished" && e["phase"] == phase
        })
        .await;
    client
}

/// A client connecting to `tenant` (slug or id) once phase 3 is done: the first message it gets is
/// a snapshot showing the tenant PROVISIONING with phases 1–3 completed.
pub async fn connect_after_phase_3(serve: &Serve, tenant: &str) -> WsLog {
    let client = ws_connect(&format!("ws://{}/ws/provisioning/{tenant}", serve.addr)).await;
    client.wait_for("a snapshot", Duration::from_secs(10), |e| e["type"] == "snapshot").await;
    let snap = &client.snapshot()[0];
    assert_eq!(snap["type"], "snapshot", "the first message is the snapshot");
    assert_eq!(snap["status"]["status"], "PROVISIONING", "{snap}");
    for n in 0..3 {
        assert_eq!(snap["status"]["phases"][n]["state"], "COMPLETED", "{snap}");
    }
    client
}

/// Every phase event of a whole apply, in order: phase 1 started, finished, phase 2 started, ….
pub fn all_phase_events() -> Vec<(String, u64)> {
    (1..=10).flat_map(|n| [("phase_started".to_string(), n), ("phase_finished".to_string(), n)]).collect()
}

/// The phase events among `events` (a stream or an audit trail), as `(type, phase)`.
pub fn phase_events(events: &[serde_json::Value]) -> Vec<(String, u64)> {
    events
        .iter()
        .filter(|e| e["type"] == "phase_started" || e["type"] == "phase_finished")
        .map(|e| (e["type"].as_str().unwrap().to_string(), e["phase"].as_u64().unwrap()))
        .collect()
}

/// The stream a WebSocket client saw of a whole apply, from its snapshot on: phase events are the
/// tail of "1 started, 1 finished, …, 10 finished" (at least `min_phase_events` of them), resource
/// events fall inside the phase last started (or the snapshot's running phase), more than
/// `min_resources` resources finished, and it ends with `tenant_finished` ACTIVE. Returns the
/// phase events.
pub fn check_stream(events: &[serde_json::Value], min_phase_events: usize, min_resources: usize) -> Vec<(String, u64)> {
    assert_eq!(events[0]["type"], "snapshot", "the first message is the snapshot");
    let phase_events = phase_events(events);
    assert!(all_phase_events().ends_with(&phase_events) && phase_events.len() >= min_phase_events, "{phase_events:?}");
    let mut current = events[0]["status"]["currentPhase"].as_u64().unwrap_or(0);
    for e in &events[1..] {
        match e["type"].as_str().unwrap() {
            "phase_started" => current = e["phase"].as_u64().unwrap(),
            "resource_started" | "resource_finished" if current > 0 => {
                assert_eq!(e["phase"].as_u64(), Some(current), "{e}");
            }
            _ => {}
        }
    }
    let finished = events.iter().filter(|e| e["type"] == "resource_finished").count();
    assert!(finished > min_resources, "{finished} resources finished: {events:#?}");
    let last = events.iter().rfind(|e| e["type"] == "tenant_finished").unwrap();
    assert_eq!(last["tenantStatus"], "ACTIVE", "{last}");
    phase_events
}

/// A client that connected mid-apply saw the remaining phases start in order, up to phase 10.
pub fn check_later_phases(later: &[serde_json::Value]) {
    let started: Vec<u64> =
        later.iter().filter(|e| e["type"] == "phase_started").map(|e| e["phase"].as_u64().unwrap()).collect();
    assert!(started.windows(2).all(|w| w[0] < w[1]) && started.last() == Some(&10), "{started:?}");
}
