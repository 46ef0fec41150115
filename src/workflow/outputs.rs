//! `matih output`: what a tenant's users and the platform need to reach it, read from the
//! tenant's recorded state (as Terraform's `output` reads its state): the LoadBalancer IP, the
//! DNS zone and its nameservers, the public URLs, and the database's host, port, name, schema and
//! user. Never a password: secrets are not in state, and nothing here reads a secret's path.
//!
//! **Invariant:** pure: a view of a recorded state; values not recorded yet are absent.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde_json::{json, Value as J};

use crate::addr::ResourceAddr;
use crate::state::TenantState;
use crate::value::Value;

/// Every output name, with what it is, in the order `matih output --help` lists them.
pub const OUTPUTS: &[(&str, &str)] = &[
    ("database_host", "the PostgreSQL host the tenant's services connect to"),
    ("database_name", "the tenant's database"),
    ("database_port", "the PostgreSQL port"),
    ("database_schema", "the tenant's schema in it"),
    ("database_user", "the tenant's login role (its password is never shown)"),
    ("load_balancer_ip", "the IP of the tenant's ingress controller (LoadBalancer Service)"),
    ("namespace", "the tenant's Kubernetes namespace"),
    ("nameservers", "the nameservers of the tenant's DNS zone"),
    ("urls", "the public URLs the tenant's Ingress serves"),
    ("zone", "the tenant's DNS zone"),
];

fn attr<'a>(st: &'a TenantState, addr: &str, path: &str) -> Option<&'a Value> {
    let addr: ResourceAddr = addr.parse().ok()?;
    let r = st.resources.get(&addr)?;
    let (first, rest) = path.split_once('.').map_or((path, None), |(f, r)| (f, Some(r)));
    let v = r.attrs.get(first)?;
    match rest {
        Some(rest) => v.get_path(rest),
        None => Some(v),
    }
}

fn output<'a>(st: &'a TenantState, addr: &str, name: &str) -> Option<&'a Value> {
    let addr: ResourceAddr = addr.parse().ok()?;
    st.resources.get(&addr)?.outputs.get(name)
}

/// A plain (non-secret) value of the credentials Secret's `data`, decoded from base64.
fn secret_data(st: &TenantState, key: &str) -> Option<String> {
    let v = attr(st, "kubernetes_secret.database_credentials", "data")?.as_map()?.get(key)?.as_str()?;
    String::from_utf8(base64::engine::general_purpose::STANDARD.decode(v).ok()?).ok()
}

fn strings(v: &Value) -> Option<J> {
    match v {
        Value::String(s) => Some(J::String(s.clone())),
        Value::List(items) => items.iter().map(|i| i.as_str().map(|s| J::String(s.to_string()))).collect(),
        _ => None,
    }
}

/// The outputs recorded for a tenant, by name (those not recorded yet are absent).
pub fn tenant_outputs(st: &TenantState) -> BTreeMap<&'static str, J> {
    let mut out = BTreeMap::new();
    let mut put = |name: &'static str, v: Option<J>| {
        if let Some(v) = v {
            out.insert(name, v);
        }
    };
    put("namespace", attr(st, "kubernetes_namespace.tenant", "metadata.name").and_then(strings));
    // The controller's Service, or with `delivery = "helm"` its release (which reads the chart's Service).
    let lb = output(st, "kubernetes_service.ingress_controller", "load_balancer_ip")
        .or_else(|| output(st, "helm_release.ingress_controller", "load_balancer_ip"));
    put("load_balancer_ip", lb.and_then(strings));
    put("zone", attr(st, "dns_zone.tenant", "name").and_then(strings));
    put("nameservers", output(st, "dns_zone.tenant", "nameservers").and_then(strings));
    let hosts = attr(st, "kubernetes_ingress.tenant", "spec.rules").and_then(Value::as_list).map(|rules| {
        let hosts = rules.iter().filter_map(|r| r.get_path("host")?.as_str());
        J::Array(hosts.map(|h| json!(format!("https://{h}"))).collect())
    });
    put("urls", hosts);
    put("database_host", secret_data(st, "POSTGRES_HOST").map(J::String));
    put("database_port", secret_data(st, "POSTGRES_PORT").map(|p| p.parse::<u16>().map_or(J::String(p), |n| json!(n))));
    put("database_name", secret_data(st, "POSTGRES_DB").map(J::String));
    put("database_user", secret_data(st, "POSTGRES_USER").map(J::String));
    put("database_schema", attr(st, "postgresql_role.tenant", "schema").and_then(strings));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::phase::Phase;
    use crate::state::ResourceState;
    use crate::value::{fingerprint, Secret};

    fn resource(attrs: Value, outputs: &[(&str, Value)]) -> ResourceState {
        ResourceState {
            phase: Phase::CreateNamespace,
            attrs: attrs.as_map().unwrap().clone(),
            outputs: outputs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect(),
            depends_on: Default::default(),
        }
    }

    #[test]
    fn outputs_come_from_the_record_and_never_hold_a_secret() {
        let b64 = |s: &str| Value::str(base64::engine::general_purpose::STANDARD.encode(s));
        let mut st = TenantState::new("acme", "id");
        let secret = Value::Secret(Secret { source: "generated".into(), fingerprint: Some(fingerprint("pw")) });
        let data = Value::map([
            ("POSTGRES_HOST", b64("db.local")),
            ("POSTGRES_PORT", b64("5432")),
            ("POSTGRES_DB", b64("matih_tenants")),
            ("POSTGRES_PASSWORD", secret.clone()),
        ]);
        st.resources.insert(
            "kubernetes_secret.database_credentials".parse().unwrap(),
            resource(Value::map([("data", data)]), &[]),
        );
        let zone = resource(
            Value::map([("name", Value::str("acme.matih.ai"))]),
            &[("nameservers", Value::list([Value::str("ns1.")]))],
        );
        st.resources.insert("dns_zone.tenant".parse().unwrap(), zone);
        let role = Value::map([("schema", Value::str("tenant_acme")), ("password", secret)]);
        st.resources.insert("postgresql_role.tenant".parse().unwrap(), resource(role, &[]));
        let out = tenant_outputs(&st);
        assert_eq!(out["database_host"], "db.local");
        assert_eq!(out["database_port"], 5432);
        assert_eq!(out["database_name"], "matih_tenants");
        assert_eq!(out["database_schema"], "tenant_acme");
        assert_eq!(out["zone"], "acme.matih.ai");
        assert_eq!(out["nameservers"], json!(["ns1."]));
        assert!(!out.contains_key("load_balancer_ip"), "not recorded yet");
        let text = serde_json::to_string(&out).unwrap();
        assert!(!text.contains("sha256:") && !text.contains("sensitive"), "{text}");
        assert!(out.keys().all(|k| OUTPUTS.iter().any(|(n, _)| n == k)));
    }
}
