//! `matih serve` and its bearer token: loopback needs none; any other address is refused without
//! `MATIH_SERVE_TOKEN`; with the token set, every request and WebSocket upgrade must carry it.
//! Off-loopback is tested by binding the wildcard address 0.0.0.0 (not loopback) and connecting
//! through 127.0.0.1: no traffic leaves the loopback interface. Each test runs on both state
//! backends.

#[macro_use]
mod common;
mod serve_support;

use std::process::{Command, Stdio};

use common::{Backend, TestState};
use matih::state::TenantState;
use serve_support::{get, Serve};

/// A working directory and a state (on `backend`) that records the tenant acme.
fn state_with_acme(backend: Backend) -> (tempfile::TempDir, TestState) {
    let dir = tempfile::tempdir().unwrap();
    let state = TestState::new(backend);
    let mut st = TenantState::new("acme", "550e8400-e29b-41d4-a716-446655440000");
    st.serial = 1;
    state.store().put(&st, None, "test").unwrap();
    (dir, state)
}

fn serve(dir: &std::path::Path, state: &TestState, listen: &str, token: Option<&str>) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_matih"));
    c.args(["serve", "--listen", listen]).current_dir(dir).env_remove("MATIH_SERVE_TOKEN").stdin(Stdio::null());
    state.configure(&mut c, dir);
    if let Some(t) = token {
        c.env("MATIH_SERVE_TOKEN", t);
    }
    c
}

on_both_backends!(
    off_loopback_without_a_token_is_refused,
    with_a_token_every_request_and_upgrade_needs_it,
    malformed_requests_get_json_errors_and_the_server_stays_up
);

fn off_loopback_without_a_token_is_refused(backend: Backend) {
    let (dir, state) = state_with_acme(backend);
    let out = serve(dir.path(), &state, "0.0.0.0:0", None).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("refusing to listen on 0.0.0.0:0 without a token: set MATIH_SERVE_TOKEN"), "{err}");
}

fn with_a_token_every_request_and_upgrade_needs_it(backend: Backend) {
    let (dir, state) = state_with_acme(backend);
    let token = "t0k3n-with/odd+chars";
    let s = Serve::start(serve(dir.path(), &state, "0.0.0.0:0", Some(token)));
    let port = s.addr.rsplit_once(':').unwrap().1;
    let base = format!("127.0.0.1:{port}");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        for path in ["/", "/app.js", "/api/v1/tenants", "/api/v1/tenants/acme/provisioning/status", "/nope"] {
            let url = format!("http://{base}{path}");
            let (code, body) = get(&url, None).await;
            assert_eq!(code, 401, "{path}: {body}");
            assert_eq!(body["error"], "unauthorized");
            assert_eq!(get(&url, Some("wrong")).await.0, 401, "{path}");
            let (code, _) = get(&url, Some(token)).await;
            assert_eq!(code, if path == "/nope" { 404 } else { 200 }, "{path}");
        }
        let q = "access_token=t0k3n-with%2Fodd%2Bchars";
        let (code, body) = get(&format!("http://{base}/api/v1/tenants/acme/provisioning/status?{q}"), None).await;
        assert_eq!((code, body["slug"].as_str()), (200, Some("acme")), "{body}");

        // The WebSocket upgrade: refused without the token, streams with it.
        let err = tokio_tungstenite::connect_async(format!("ws://{base}/ws/provisioning/acme")).await.unwrap_err();
        assert!(err.to_string().contains("401"), "{err}");
        let log = serve_support::ws_connect(&format!("ws://{base}/ws/provisioning/acme?{q}")).await;
        log.wait_for("the snapshot", std::time::Duration::from_secs(10), |e| e["type"] == "snapshot").await;
        assert_eq!(log.snapshot()[0]["status"]["slug"], "acme");
    });
}

fn malformed_requests_get_json_errors_and_the_server_stays_up(backend: Backend) {
    let (dir, state) = state_with_acme(backend);
    let s = Serve::start(serve(dir.path(), &state, "127.0.0.1:0", None));
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let u = |p: &str| format!("http://{}{p}", s.addr);
        for (path, code) in [
            ("/api/v1/tenants/..%2F..%2Fetc/provisioning/status", 400),
            ("/api/v1/tenants/%00/provisioning/status", 400),
            ("/api/v1/tenants/ACME/provisioning/status", 400),
            ("/api/v1/tenants/globex/provisioning/status", 404),
            ("/api/v1/tenants/00000000-0000-0000-0000-000000000000/provisioning/status", 404),
            ("/api/v1/tenants/550E8400-E29B-41D4-A716-446655440000/provisioning/status", 200),
            ("/api/v1/tenants/acme/provisioning/audit?page=-1", 400),
            ("/api/v1/tenants/acme/provisioning/audit?pageSize=abc", 400),
            ("/api/v1/tenants/acme/provisioning/audit", 200),
            ("/api/v1/tenants/acme/provisioning/other", 404),
            ("/ws/provisioning/acme", 400),
            ("/ws/provisioning/", 400),
            ("/api/v1/tenants/", 404),
            ("//", 404),
        ] {
            let (got, body) = get(&u(path), None).await;
            assert_eq!(got, code, "{path}: {body}");
            assert!(body["error"].is_string() || code == 200, "{path}: {body}");
        }
        let resp = reqwest::Client::new().post(u("/api/v1/tenants")).body("x").send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 405);
        // Raw garbage on the socket does not bring the server down.
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut c = tokio::net::TcpStream::connect(&s.addr).await.unwrap();
        c.write_all(b"\x00\xff GARBAGE / HTTP/9.9\r\n\r\n").await.unwrap();
        let mut buf = Vec::new();
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), c.read_to_end(&mut buf)).await;
        let (code, body) = get(&u("/api/v1/tenants"), None).await;
        assert_eq!(code, 200);
        assert_eq!(body["tenants"][0]["slug"], "acme");
        assert_eq!(body["source"], "store");
    });
}
