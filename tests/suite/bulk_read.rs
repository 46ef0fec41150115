//! Bulk reads (`Provider::read_many`) against the real servers: over applied tenants of every
//! tier, with objects deleted and changed behind matih's back in Kubernetes, PostgreSQL and
//! PowerDNS, each provider's `read_many` answers exactly what one `read` per object answers (gone
//! objects absent, drifted ones with their live values), a refreshed `matih plan` is the same
//! bytes with bulk reads and with `MATIH_READ_ONE_BY_ONE=1`, and the Kubernetes reads of a tenant
//! take one LIST per kind and namespace, counted by the test's proxy.

use crate::support as common;
use crate::support::fleet;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use common::{pg as postgres, powerdns, psql, text};
use fleet::Fleet;
use matih::provider::dns::{DnsBackend, DnsProvider, PowerDnsBackend, RecordSet};
use matih::provider::kubernetes::{KubeSettings, KubeTarget, KubernetesProvider};
use matih::provider::postgres::{PostgresProvider, PostgresSettings};
use matih::provider::{read_one_by_one, Provider, ResourceObject, TenantRef};
use matih::state::{StateStore, TenantState};
use matih::value::Value;

fn objects(st: &TenantState, prefix: &str) -> Vec<ResourceObject> {
    st.resources
        .iter()
        .filter(|(a, _)| a.kind.starts_with(prefix))
        .map(|(a, r)| ResourceObject::new(a.clone(), r.attrs.clone()))
        .collect()
}

fn meta<'a>(o: &'a ResourceObject, key: &str) -> &'a str {
    o.attrs["metadata"].get_path(key).and_then(Value::as_str).unwrap()
}

fn by_kind<'a>(objs: &'a [ResourceObject], kind: &str) -> Vec<&'a ResourceObject> {
    objs.iter().filter(|o| o.addr.kind == kind).collect()
}

/// The proxy's request log (`GET /_admin/requests`), asked in HTTP/1.0 so that the (long) answer
/// comes whole rather than chunked.
fn requests(url: &str) -> serde_json::Value {
    use std::io::{Read, Write};
    let addr = url.strip_prefix("http://").unwrap();
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "GET /_admin/requests HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    assert!(reply.starts_with("HTTP/1.0 200") || reply.starts_with("HTTP/1.1 200"), "{reply}");
    serde_json::from_str(reply.split_once("\r\n\r\n").unwrap().1).unwrap()
}

#[test]
fn bulk_reads_answer_as_reads_one_by_one_with_one_list_per_kind_and_namespace() {
    let fleet = Fleet::new("bk", 3);
    let out = fleet.command(&["apply", "tenants", "--auto-approve", "--tenant-parallelism", "3"]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let store = fleet.store();
    let states: Vec<TenantState> = fleet.slugs.iter().map(|s| store.get(s).unwrap().unwrap()).collect();

    let (pg, dns) = (postgres::server(), powerdns::server());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let kube = rt
        .block_on(KubernetesProvider::connect(&KubeTarget::Url(fleet.kube.url.clone()), KubeSettings::default()))
        .unwrap();
    let catalog = matih::catalog::Catalog::embedded().unwrap();
    let settings = PostgresSettings {
        admin_url: pg.admin_url.clone(),
        tenant_host: "127.0.0.1".into(),
        tenant_port: pg.port,
        shared_database: catalog.database.shared_database.clone(),
        connect_timeout: Duration::from_secs(10),
    };
    let postgres = rt.block_on(PostgresProvider::connect(&settings)).unwrap();
    let backend = Arc::new(
        PowerDnsBackend::new(&dns.api_url, "localhost", dns.api_key.clone(), vec![format!("ns1.{}.", fleet::PARENT)])
            .unwrap(),
    );
    let dns_provider = DnsProvider::new(backend.clone());

    // Behind matih's back, in the first tenant: a ConfigMap deleted, another changed, a Deployment
    // relabelled (it leaves the LIST's label selector: read with a GET, and drift), the role's
    // connection limit changed, an A record deleted and another pointed elsewhere.
    let first = &states[0];
    let k8s = objects(first, "kubernetes_");
    let maps = by_kind(&k8s, "kubernetes_config_map");
    let (gone_map, changed_map) = (maps[0], maps[1]);
    let out = fleet.kube.kubectl(&["delete", "configmap", meta(gone_map, "name"), "-n", meta(gone_map, "namespace")]);
    assert!(out.status.success(), "{}", text(&out));
    let key = changed_map.attrs["data"].as_map().unwrap().keys().next().unwrap().clone();
    let patch = serde_json::json!({ "data": { key: "changed by hand" } }).to_string();
    let (name, ns) = (meta(changed_map, "name"), meta(changed_map, "namespace"));
    let out = fleet.kube.kubectl(&["patch", "configmap", name, "-n", ns, "--type", "merge", "-p", &patch]);
    assert!(out.status.success(), "{}", text(&out));
    let deployment = by_kind(&k8s, "kubernetes_deployment")[0];
    let label = "matih.ai/tenant-slug";
    assert!(deployment.attrs["metadata"].get_path("labels").and_then(|l| l.as_map()).unwrap().contains_key(label));
    let (name, ns) = (meta(deployment, "name"), meta(deployment, "namespace"));
    let out =
        fleet.kube.kubectl(&["label", "deployment", name, "-n", ns, &format!("{label}=someone-else"), "--overwrite"]);
    assert!(out.status.success(), "{}", text(&out));
    let pg_objs = objects(first, "postgresql_");
    let role = by_kind(&pg_objs, "postgresql_role")[0].attrs["name"].as_str().unwrap().to_string();
    psql(&pg.admin_url, &format!("ALTER ROLE \"{role}\" CONNECTION LIMIT 3"));
    let dns_objs = objects(first, "dns_");
    let records = by_kind(&dns_objs, "dns_a_record");
    let rr = |o: &ResourceObject, k: &str| o.attrs[k].as_str().unwrap().to_string();
    rt.block_on(backend.delete_rrset(&rr(records[0], "zone"), &rr(records[0], "name"), "A")).unwrap();
    let elsewhere = RecordSet { ttl: 60, records: vec!["198.51.100.99".into()] };
    rt.block_on(backend.replace_rrset(&rr(records[1], "zone"), &rr(records[1], "name"), "A", &elsewhere)).unwrap();

    // Every provider, every tenant: bulk answers equal one-by-one answers.
    let providers: [(&dyn Provider, &str); 3] =
        [(&kube, "kubernetes_"), (&postgres, "postgresql_"), (&dns_provider, "dns_")];
    for st in &states {
        let tenant = TenantRef { slug: st.slug.clone(), id: st.tenant_id.clone() };
        for (provider, prefix) in providers {
            let objs = objects(st, prefix);
            let one = rt.block_on(read_one_by_one(provider, &tenant, &objs, 8));
            let bulk = rt.block_on(provider.read_many(&tenant, &objs, 8));
            for ((o, a), b) in objs.iter().zip(&one).zip(&bulk) {
                assert_eq!(a, b, "{}: {} read one by one and in bulk", st.slug, o.addr);
            }
            assert_eq!(one.len(), bulk.len());
        }
    }
    // …and they do see what was done by hand.
    let tenant = TenantRef { slug: first.slug.clone(), id: first.tenant_id.clone() };
    let read = |p: &dyn Provider, objs: &[ResourceObject]| -> BTreeMap<String, Option<BTreeMap<String, Value>>> {
        let r = rt.block_on(p.read_many(&tenant, objs, 8));
        objs.iter().zip(r).map(|(o, r)| (o.addr.to_string(), r.unwrap().map(|o| o.attrs))).collect()
    };
    let seen = read(&kube, &k8s);
    assert_eq!(seen[&gone_map.addr.to_string()], None);
    assert_ne!(seen[&changed_map.addr.to_string()].as_ref(), Some(&changed_map.attrs));
    assert_ne!(seen[&deployment.addr.to_string()].as_ref(), Some(&deployment.attrs));
    let unchanged = k8s.iter().filter(|o| seen[&o.addr.to_string()].as_ref() == Some(&o.attrs)).count();
    assert_eq!(unchanged, k8s.len() - 3, "only what was changed by hand differs");
    let seen = read(&postgres, &pg_objs);
    let role_addr = by_kind(&pg_objs, "postgresql_role")[0].addr.to_string();
    assert_eq!(seen[&role_addr].as_ref().unwrap()["connection_limit"], Value::Int(3));
    let seen = read(&dns_provider, &dns_objs);
    assert_eq!(seen[&records[0].addr.to_string()], None);
    let moved = seen[&records[1].addr.to_string()].as_ref().unwrap();
    assert_eq!(moved["records"], Value::list([Value::str("198.51.100.99")]));

    // Requests: one LIST per kind and namespace, no GET for an object a LIST answered.
    fleet.kube.admin("DELETE", "/_admin/requests", serde_json::Value::Null);
    let _ = read(&kube, &k8s);
    let log = requests(&fleet.kube.url);
    let log = log.as_array().unwrap();
    let mut lists: BTreeMap<(String, String), usize> = BTreeMap::new();
    let mut gets = 0;
    for r in log {
        let (verb, resource, ns) = (r["verb"].as_str().unwrap(), r["resource"].as_str().unwrap(), &r["namespace"]);
        match verb {
            "list" => *lists.entry((resource.into(), ns.as_str().unwrap_or_default().into())).or_default() += 1,
            "get" => gets += 1,
            other => panic!("a read made a {other} request: {r}"),
        }
    }
    assert!(lists.values().all(|&n| n == 1), "one LIST per kind and namespace: {lists:?}");
    // Objects alone of their kind in their namespace are one GET each, and so are the relabelled
    // Deployment and the deleted ConfigMap: every other object came from a LIST.
    let mut groups: BTreeMap<(String, String), usize> = BTreeMap::new();
    for o in &k8s {
        let ns = o.attrs["metadata"].get_path("namespace").and_then(Value::as_str).unwrap_or_default();
        *groups.entry((o.attrs["kind"].as_str().unwrap().into(), ns.into())).or_default() += 1;
    }
    let alone = groups.values().filter(|&&n| n == 1).count();
    let cluster_scoped = groups.iter().filter(|((_, ns), _)| ns.is_empty()).map(|(_, n)| n).sum::<usize>();
    println!(
        "{} Kubernetes objects in {} kinds × namespaces: {} LISTs and {gets} GETs (one by one: {} GETs)",
        k8s.len(),
        groups.len(),
        lists.len(),
        k8s.len()
    );
    assert!(gets <= alone + cluster_scoped + 2, "{gets} GETs for {alone} objects alone of their kind: {log:?}");
    assert!(lists.len() + gets < k8s.len() / 2, "{} requests for {} objects", lists.len() + gets, k8s.len());

    // The refreshed plan is the same bytes either way (and shows the drift).
    let plan = |one_by_one: bool| {
        let mut c = fleet.command(&["plan", "tenants"]);
        if one_by_one {
            c.env("MATIH_READ_ONE_BY_ONE", "1");
        }
        let out = c.output().unwrap();
        assert!(out.status.success(), "{}", text(&out));
        String::from_utf8(out.stdout).unwrap()
    };
    let (bulk, one) = (plan(false), plan(true));
    assert_eq!(bulk, one);
    assert!(bulk.contains(&gone_map.addr.to_string()) && bulk.contains(&deployment.addr.to_string()), "{bulk}");
}
