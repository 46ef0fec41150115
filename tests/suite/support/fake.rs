//! The one scripted fake provider of the tests and benchmarks: it answers for the resource kinds a
//! test does not run against a real server, the way the real providers answer, without a server.
//! An apply records the attributes as written and adds what the real provider would return: a
//! generated password for a `postgresql_role` (sensitive outputs and a fingerprinted secret
//! attribute), the nameservers of a `dns_zone`, a LoadBalancer IP for a `kubernetes_service`. A
//! read finds the object as recorded (no drift); a delete succeeds.

#![allow(dead_code)]

use std::time::Duration;

use matih::provider::{Observed, Provider, ProviderFuture, ResourceObject, TenantRef};
use matih::value::{fingerprint, Secret, Value};

/// The password a scripted `postgresql_role` gets.
pub const PASSWORD: &str = "pw-of-the-test";
/// The LoadBalancer IP a scripted `kubernetes_service` gets.
pub const LOAD_BALANCER_IP: &str = "203.0.113.10";
/// The nameservers a scripted `dns_zone` gets.
pub const NAMESERVERS: [&str; 2] = ["ns1.example.", "ns2.example."];

pub struct Scripted {
    handles: fn(&str) -> bool,
    latency: Duration,
}

impl Scripted {
    /// Answers for the kinds `handles` accepts.
    pub fn new(handles: fn(&str) -> bool) -> Scripted {
        Scripted { handles, latency: Duration::ZERO }
    }

    /// PostgreSQL and DNS (`postgresql_*`, `dns_*`): for tests of the other providers.
    pub fn postgres_and_dns() -> Scripted {
        Scripted::new(|kind| kind.starts_with("postgresql_") || kind.starts_with("dns_"))
    }

    /// Everything but DNS: for the tests of the DNS providers.
    pub fn all_but_dns() -> Scripted {
        Scripted::new(|kind| !kind.starts_with("dns_"))
    }

    /// Each apply and delete takes `latency` (one round trip of a real provider).
    pub fn with_latency(self, latency: Duration) -> Scripted {
        Scripted { latency, ..self }
    }
}

impl Provider for Scripted {
    fn handles(&self, kind: &str) -> bool {
        (self.handles)(kind)
    }

    fn read<'a>(&'a self, _t: &'a TenantRef, r: &'a ResourceObject) -> ProviderFuture<'a, Option<Observed>> {
        Box::pin(async move { Ok(Some(Observed { attrs: r.attrs.clone(), ..Observed::default() })) })
    }

    fn apply<'a>(&'a self, _t: &'a TenantRef, r: &'a ResourceObject) -> ProviderFuture<'a, Observed> {
        Box::pin(async move {
            tokio::time::sleep(self.latency).await;
            let mut o = Observed { attrs: r.attrs.clone(), ..Observed::default() };
            match r.addr.kind.as_str() {
                "postgresql_role" => {
                    o.sensitive.insert("password".into(), PASSWORD.into());
                    o.sensitive.insert("database_url".into(), format!("postgresql://tenant_acme:{PASSWORD}@db/matih"));
                    let secret = Secret { source: "generated".into(), fingerprint: Some(fingerprint(PASSWORD)) };
                    o.attrs.insert("password".into(), Value::Secret(secret));
                }
                "dns_zone" => {
                    o.outputs.insert("nameservers".into(), Value::list(NAMESERVERS.map(Value::str)));
                }
                "kubernetes_service" => {
                    o.outputs.insert("load_balancer_ip".into(), Value::str(LOAD_BALANCER_IP));
                }
                _ => {}
            }
            Ok(o)
        })
    }

    fn delete<'a>(&'a self, _t: &'a TenantRef, _r: &'a ResourceObject) -> ProviderFuture<'a, ()> {
        Box::pin(async move {
            tokio::time::sleep(self.latency).await;
            Ok(())
        })
    }
}
