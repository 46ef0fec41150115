//! A fleet of generated tenants applied by real `matih` processes against the three test servers
//! (real Kubernetes control plane, PostgreSQL, PowerDNS), with the state in PostgreSQL, as several
//! runners on several machines would share it. Used by the suite's `fleet` tests and by benches/fleet.rs and
//! benches/serve_load.rs (which include `tests/suite/support/` by path).

#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Stdio};

use matih::provider::dns::{DnsBackend, PowerDnsBackend};
use matih::state::PostgresStore;

use super::kube::Kube;
use super::{self as common, pg as postgres, powerdns};

/// The parent zone the fleet's tenants are delegated from.
pub const PARENT: &str = "fleet.test";

pub struct Fleet {
    pub dir: tempfile::TempDir,
    /// The state database (`MATIH_STATE_URL`).
    pub state_url: String,
    pub kube: Kube,
    pub slugs: Vec<String>,
}

const TIERS: [&str; 3] = ["free", "professional", "enterprise"];

fn parent_zone() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let dns = powerdns::server();
        let b = PowerDnsBackend::new(&dns.api_url, "localhost", dns.api_key.clone(), vec![format!("ns1.{PARENT}.")])
            .unwrap();
        tokio::runtime::Runtime::new().unwrap().block_on(b.create_zone(PARENT)).unwrap();
    });
}

impl Fleet {
    /// `n` tenants named `{prefix}000`… (prefixes keep the tenants of different tests apart on the
    /// shared servers), a platform file for the three servers with `state { backend = "postgres" }`,
    /// and a proxy of its own in front of the shared Kubernetes control plane.
    pub fn new(prefix: &str, n: usize) -> Fleet {
        parent_zone();
        let (pg, dns) = (postgres::server(), powerdns::server());
        let kube = Kube::start();
        let dir = tempfile::tempdir().unwrap();
        let tenants = dir.path().join("tenants");
        std::fs::create_dir_all(&tenants).unwrap();
        let mut slugs = Vec::new();
        for i in 0..n {
            let slug = format!("{prefix}{i:03}");
            let spec = format!(
                "tenant \"{slug}\" {{\n  id          = \"{}\"\n  tier        = \"{}\"\n  region      = \"eastus\"\n  \
                 admin_email = \"admin@{slug}.example\"\n  monitoring {{\n    notify_email = [\"ops@{slug}.example\"]\n  }}\n}}\n",
                uuid::Uuid::new_v4(),
                TIERS[i % 3],
            );
            std::fs::write(tenants.join(format!("{slug}.hcl")), spec).unwrap();
            slugs.push(slug);
        }
        let platform = format!(
            "state {{\n  backend = \"postgres\"\n}}\n{}",
            common::platform_hcl(PARENT, &dns.api_url, pg.port, &kube.url)
        );
        std::fs::write(dir.path().join("matih.hcl"), platform).unwrap();
        Fleet { dir, state_url: common::fresh_database(), kube, slugs }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `matih ARGS` in the fleet's directory, with the state URL and the servers' credentials in
    /// the environment; output discarded unless the caller pipes it.
    pub fn command(&self, args: &[&str]) -> Command {
        let (pg, dns) = (postgres::server(), powerdns::server());
        command_in(self.dir.path(), args, &self.state_url, &pg.admin_url, &dns.api_key)
    }

    pub fn store(&self) -> PostgresStore {
        PostgresStore::connect(&self.state_url).unwrap()
    }
}

/// `matih ARGS` in `dir` as a runner of a fleet on the PostgreSQL state runs it: the state URL,
/// the PostgreSQL admin URL and the PowerDNS key in the environment, nothing of the test
/// process's own matih settings, no colours, no input.
pub fn command_in(dir: &Path, args: &[&str], state_url: &str, pg_admin_url: &str, pdns_key: &str) -> Command {
    let mut c = super::matih_command();
    c.args(args)
        .current_dir(dir)
        .env("MATIH_STATE_URL", state_url)
        .env("MATIH_POSTGRES_ADMIN_URL", pg_admin_url)
        .env("PDNS_API_KEY", pdns_key)
        .env("NO_COLOR", "1")
        .env_remove("MATIH_STATE_DIR")
        .env_remove("MATIH_PLATFORM_FILE")
        .env_remove("MATIH_LOG")
        .stdin(Stdio::null());
    c
}
