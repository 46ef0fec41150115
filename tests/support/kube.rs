//! The Kubernetes API test server for end-to-end tests: started on a free loopback port, killed
//! when dropped, with the real `kubectl` pointed at it and a client for its admin API.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Output, Stdio};

pub struct Kube {
    child: Child,
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

impl Kube {
    /// A server whose controllers make objects ready quickly (100–200 ms).
    pub fn start() -> Kube {
        Kube::start_with(&[
            "--deployment-ready-delay-ms",
            "100",
            "--lb-ip-delay-ms",
            "200",
            "--certificate-ready-delay-ms",
            "100",
        ])
    }

    pub fn start_with(args: &[&str]) -> Kube {
        let mut child = Command::new(env!("CARGO_BIN_EXE_kube-test-server"))
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start kube-test-server");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let url = line.trim().strip_prefix("listening on ").expect("the server's first line").to_string();
        Kube { child, url, home: tempfile::tempdir().unwrap() }
    }

    /// Runs the real kubectl against the server. A missing kubectl fails the test.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        Command::new("kubectl")
            .arg(format!("--server={}", self.url))
            .args(args)
            .env("HOME", self.home.path())
            .env_remove("KUBECONFIG")
            .output()
            .expect("kubectl must be installed")
    }

    /// A JSON request to the admin API (`/_admin/…`); panics unless it answers 2xx.
    pub fn admin(&self, method: &str, path: &str, body: serde_json::Value) {
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
    }

    /// Every request to the API answers after `ms` milliseconds.
    pub fn latency(&self, ms: u64) {
        self.admin("PATCH", "/_admin/config", serde_json::json!({ "latencyMs": ms }));
    }
}
