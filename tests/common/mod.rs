//! Shared support for the end-to-end tests: run the real `matih` binary, and record a tenant's
//! state as if every resource of its graph had been applied.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use matih::catalog::Catalog;
use matih::graph::ResourceGraph;
use matih::spec::PlatformConfig;
use matih::state::{ResourceState, TenantState, TenantStatus};
use matih::value::{fingerprint, Secret, Value};

/// The repository root (tests run with the package root as their working directory).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `matih ARGS` in `dir` with a private state directory and no colour.
pub fn matih(dir: &Path, state: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_matih"))
        .args(args)
        .current_dir(dir)
        .env("MATIH_STATE_DIR", state)
        .env_remove("MATIH_SCHEMAS_DIR")
        .env_remove("MATIH_PLATFORM_FILE")
        .env("NO_COLOR", "1")
        .output()
        .expect("run matih")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The output a provider would have returned for `output` of a resource (deterministic fakes).
pub fn fake_output(output: &str) -> Value {
    match output {
        "load_balancer_ip" => Value::str("20.85.123.45"),
        "nameservers" => Value::list([Value::str("ns1-01.azure-dns.com."), Value::str("ns2-01.azure-dns.net.")]),
        other => Value::str(format!("fake-{other}")),
    }
}

/// The clear text that the recorded secrets stand for; it must never show anywhere.
pub const CLEAR_SECRET: &str = "s3cr3t-Pa55w0rd-that-must-never-leak";

fn resolve(v: &Value) -> Value {
    match v {
        Value::Ref { output, .. } => fake_output(output),
        Value::Computed { .. } => Value::str("2026-02-12T10:00:00Z"),
        Value::Secret(s) => {
            Value::Secret(Secret { source: s.source.clone(), fingerprint: Some(fingerprint(CLEAR_SECRET)) })
        }
        Value::List(items) => Value::List(items.iter().map(resolve).collect()),
        Value::Map(m) => Value::Map(m.iter().map(|(k, v)| (k.clone(), resolve(v))).collect()),
        other => other.clone(),
    }
}

/// The state a successful apply of every resource of `graph` would record.
pub fn applied_state(graph: &ResourceGraph) -> TenantState {
    let mut st = TenantState::new(&graph.tenant.slug, &graph.tenant.id);
    for r in graph.apply_order() {
        let mut outputs = BTreeMap::new();
        for other in graph.graph.node_weights() {
            for v in other.attrs.values() {
                for (res, out) in v.refs() {
                    if *res == r.addr {
                        outputs.insert(out.to_string(), fake_output(out));
                    }
                }
            }
        }
        st.resources.insert(
            r.addr.clone(),
            ResourceState {
                phase: r.phase,
                attrs: r.attrs.iter().map(|(k, v)| (k.clone(), resolve(v))).collect(),
                outputs,
                depends_on: r.depends_on.clone(),
            },
        );
    }
    st.status = TenantStatus::Active;
    st.serial = 1;
    st
}

/// Compiles a tenant spec file with the embedded catalog and default platform.
pub fn compile_file(path: &Path) -> ResourceGraph {
    let catalog = Catalog::embedded().expect("embedded catalog");
    let (specs, diags) = matih::spec::load_tenants(&[path.to_path_buf()], &catalog);
    assert!(diags.iter().all(|d| !d.is_error()), "{diags:?}");
    let (g, diags) = matih::graph::compile(&specs[0], &catalog, &PlatformConfig::default());
    assert!(diags.iter().all(|d| !d.is_error()), "{diags:?}");
    g.expect("graph")
}

/// A platform file (`matih.hcl`) pointing matih at the test servers: PowerDNS (API key in
/// `PDNS_API_KEY`) under `parent`, PostgreSQL on loopback `pg_port`, the Kubernetes API test server
/// at `kube_url` with fast polling.
pub fn platform_hcl(parent: &str, pdns_api_url: &str, pg_port: u16, kube_url: &str) -> String {
    format!(
        r#"dns {{
  parent_zone = "{parent}"
  provider    = "powerdns"
  api_url     = "{pdns_api_url}"
  api_key_env = "PDNS_API_KEY"
  nameservers = ["ns1.{parent}.", "ns2.{parent}."]
}}
postgres {{
  host = "127.0.0.1"
  port = {pg_port}
}}
kubernetes {{
  api_url                      = "{kube_url}"
  load_balancer_ip_interval_ms = 50
  poll_interval_ms             = 50
}}
"#
    )
}

/// Standard output and standard error of a command, together (for assertions and messages).
pub fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// `psql URL -tA -c SQL`: the answer, trimmed. Fails the test when psql fails.
pub fn psql(url: &str, sql: &str) -> String {
    let out = Command::new("psql").args([url, "-tA", "-c", sql]).output().expect("psql must be installed");
    assert!(out.status.success(), "psql: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Every byte of every file under `dir`, to check that a secret appears in none of them.
pub fn all_files(dir: &Path) -> Vec<u8> {
    let mut bytes = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            bytes.extend(all_files(&p));
        } else {
            bytes.extend(std::fs::read(&p).unwrap());
        }
    }
    bytes
}
