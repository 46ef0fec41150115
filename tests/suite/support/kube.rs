//! The real Kubernetes control plane for end-to-end tests (kube-apiserver, controller-manager,
//! scheduler, etcd, kwok's fake nodes; see scripts/lib/controlplane.sh), started once per
//! `scripts/test` run and shared by every test. Each test gets a fault-injecting proxy of its
//! own in front of the API server (controlplane/testcloud), on a free loopback port, killed
//! when dropped: plain HTTP to the test, the cluster admin's client certificate to the server.
//! The real `kubectl` is pointed at the proxy.
//!
//! Tests share one cluster, so a test that provisions a tenant first claims its slug
//! ([`claim_tenant`]): one test at a time per slug, and what an earlier test left of that
//! tenant is deleted (through the real namespace controller) before the test starts.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

pub struct Kube {
    child: Child,
    /// The proxy's URL (`http://127.0.0.1:PORT`).
    pub url: String,
    /// kubectl's HOME, so that no discovery cache is shared between tests.
    home: tempfile::TempDir,
}

impl Drop for Kube {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The running control plane's directory (`MATIH_TEST_CONTROLPLANE`). Its absence fails the test:
/// the tests never skip a server they need.
pub fn controlplane_dir() -> PathBuf {
    match std::env::var_os("MATIH_TEST_CONTROLPLANE") {
        Some(dir) if Path::new(&dir).join("kubeconfig").is_file() => PathBuf::from(dir),
        _ => panic!(
            "these tests need the Kubernetes control plane: run them through scripts/test, or start it with \
             `scripts/dev-env up && source .dev-env/env` (MATIH_TEST_CONTROLPLANE names its directory)"
        ),
    }
}

/// kubectl as the cluster admin, straight to the API server (not through a test's proxy).
pub fn admin_kubectl(args: &[&str]) -> Output {
    let dir = controlplane_dir();
    Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(dir.join("kubeconfig"))
        .arg("--cache-dir")
        .arg(dir.join(".kube-cache"))
        .args(args)
        .env_remove("KUBECONFIG")
        .output()
        .expect("kubectl must be installed")
}

/// Claims tenant `slug` on the shared cluster for the rest of the test: waits for any other test
/// (in any test process) holding it, then deletes what an earlier test left of it (its namespace
/// and its edge namespace through the namespace controller, and its cluster-scoped objects) and waits until it is gone.
pub fn claim_tenant(slug: &str) -> TenantClaim {
    let dir = controlplane_dir().join("claims");
    std::fs::create_dir_all(&dir).unwrap();
    let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(dir.join(slug)).unwrap();
    file.lock().unwrap();
    let (ns, edge) = (format!("matih-{slug}"), format!("matih-{slug}-edge"));
    let out =
        admin_kubectl(&["delete", "namespace", &ns, &edge, "--ignore-not-found", "--wait=true", "--timeout=180s"]);
    assert!(out.status.success(), "deleting {ns} and {edge}: {}", String::from_utf8_lossy(&out.stderr));
    let selector = format!("matih.ai/tenant-slug={slug}");
    let out = admin_kubectl(&[
        "delete",
        "clusterrole,clusterrolebinding,ingressclass",
        "-l",
        &selector,
        "--ignore-not-found",
        "--wait=true",
    ]);
    assert!(out.status.success(), "deleting {slug}'s cluster objects: {}", String::from_utf8_lossy(&out.stderr));
    TenantClaim { _file: file }
}

/// Claims several tenants, in sorted order (so that two tests never wait on each other).
pub fn claim_tenants(slugs: &[&str]) -> Vec<TenantClaim> {
    let mut sorted = slugs.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    sorted.into_iter().map(claim_tenant).collect()
}

/// Held while a test owns a tenant slug on the shared cluster; released when dropped.
pub struct TenantClaim {
    _file: std::fs::File,
}

impl Kube {
    /// A proxy of this test's own in front of the shared control plane.
    pub fn start() -> Kube {
        let dir = controlplane_dir();
        let bin = std::fs::read_to_string(dir.join("testcloud.path")).expect("the control plane's testcloud.path");
        let mut child = Command::new(bin.trim())
            .args(["proxy", "--listen", "127.0.0.1:0", "--dir"])
            .arg(&dir)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the testcloud proxy");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let url = line.trim().strip_prefix("listening on ").expect("the proxy's first line").to_string();
        Kube { child, url, home: tempfile::tempdir().unwrap() }
    }

    /// Runs the real kubectl through this test's proxy. A missing kubectl fails the test.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        Command::new("kubectl")
            .arg(format!("--server={}", self.url))
            .args(args)
            .env("HOME", self.home.path())
            .env_remove("KUBECONFIG")
            .output()
            .expect("kubectl must be installed")
    }

    /// A JSON request to the proxy's admin API (`/_admin/…`); panics unless it answers 2xx.
    /// Returns the answer's JSON body.
    pub fn admin(&self, method: &str, path: &str, body: serde_json::Value) -> serde_json::Value {
        let addr = self.url.strip_prefix("http://").unwrap();
        let body = body.to_string();
        let mut s = TcpStream::connect(addr).unwrap();
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut reply = String::new();
        s.read_to_string(&mut reply).unwrap();
        assert!(reply.starts_with("HTTP/1.1 2"), "{method} {path}: {reply}");
        let body = reply.split_once("\r\n\r\n").map_or("", |(_, b)| b).trim();
        serde_json::from_str(body).unwrap_or(serde_json::Value::Null)
    }

    /// Every request through this proxy answers `ms` milliseconds later.
    pub fn latency(&self, ms: u64) {
        self.admin("PATCH", "/_admin/config", serde_json::json!({ "latencyMs": ms }));
    }
}
