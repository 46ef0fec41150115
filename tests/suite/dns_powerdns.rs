//! The DNS provider against a real PowerDNS (started by `support/powerdns.rs`): zones, the NS
//! delegation in the parent and the tenant's A records, checked with the API and with `dig`.

use crate::support::fake::{self, Scripted};
use crate::support::powerdns;

use std::collections::BTreeMap;
use std::sync::Arc;

use matih::provider::dns::{DnsBackend, DnsProvider, PowerDnsBackend};
use matih::provider::{Provider, ResourceObject, TenantRef};
use matih::value::Value;

const NAMESERVERS: [&str; 2] = ["ns1.matih.test.", "ns2.matih.test."];
/// The ingress controller's LoadBalancer IP, as the scripted provider gives it.
const IP: &str = fake::LOAD_BALANCER_IP;

fn backend() -> PowerDnsBackend {
    let s = powerdns::server();
    let ns = NAMESERVERS.iter().map(|n| n.to_string()).collect();
    PowerDnsBackend::new(&s.api_url, "localhost", s.api_key.clone(), ns).unwrap()
}

fn provider() -> DnsProvider {
    DnsProvider::new(Arc::new(backend()))
}

fn tenant() -> TenantRef {
    TenantRef { slug: "acme".into(), id: "550e8400-e29b-41d4-a716-446655440000".into() }
}

fn obj(addr: &str, attrs: Vec<(&str, Value)>) -> ResourceObject {
    let attrs: BTreeMap<String, Value> = attrs.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    ResourceObject::new(addr.parse().unwrap(), attrs)
}

/// The resources `graph::compile` makes for tenant `slug` under `parent`.
fn zone(slug: &str, parent: &str) -> ResourceObject {
    obj("dns_zone.tenant", vec![("name", Value::str(format!("{slug}.{parent}")))])
}

fn delegation(slug: &str, parent: &str, records: Value) -> ResourceObject {
    obj(
        "dns_ns_delegation.tenant",
        vec![("zone", Value::str(parent)), ("name", Value::str(slug)), ("ttl", Value::Int(3600)), ("records", records)],
    )
}

fn a_record(resource: &str, name: &str, slug: &str, parent: &str, ip: &str) -> ResourceObject {
    obj(
        &format!("dns_a_record.{resource}"),
        vec![
            ("zone", Value::str(format!("{slug}.{parent}"))),
            ("name", Value::str(name)),
            ("type", Value::str("A")),
            ("ttl", Value::Int(300)),
            ("records", Value::list([Value::str(ip)])),
        ],
    )
}

const RECORDS: [(&str, &str); 4] = [("apex", "@"), ("wildcard", "*"), ("api", "api"), ("bi", "bi")];

/// Edits the server behind matih's back, through the PowerDNS API.
async fn pdns_patch(zone: &str, rrset: serde_json::Value) {
    let s = powerdns::server();
    let rsp = reqwest::Client::new()
        .patch(format!("{}/api/v1/servers/localhost/zones/{zone}.", s.api_url))
        .header("X-API-Key", &s.api_key)
        .body(serde_json::json!({ "rrsets": [rrset] }).to_string())
        .send()
        .await
        .unwrap();
    assert!(rsp.status().is_success(), "{:?}", rsp.text().await);
}

#[tokio::test]
async fn zone_delegation_and_records_round_trip_through_powerdns() {
    let parent = "lifecycle.matih.test";
    let child = format!("acme.{parent}");
    let (p, b, t) = (provider(), backend(), tenant());
    b.create_zone(parent).await.unwrap();
    // Other tenants' records in the parent zone, which acme's delete must leave alone.
    let other_ns = matih::provider::dns::RecordSet { ttl: 3600, records: vec!["ns9.other.test.".into()] };
    b.replace_rrset(parent, "globex", "NS", &other_ns).await.unwrap();
    let www = matih::provider::dns::RecordSet { ttl: 60, records: vec!["198.51.100.7".into()] };
    b.replace_rrset(parent, "www", "A", &www).await.unwrap();

    // Phase 7 in the engine's order: the zone, its delegation, the A records.
    let z = zone("acme", parent);
    assert_eq!(p.read(&t, &z).await.unwrap(), None, "nothing exists yet");
    let created = p.apply(&t, &z).await.unwrap();
    let nameservers = created.outputs["nameservers"].clone();
    assert_eq!(nameservers, Value::list(NAMESERVERS.map(Value::str)));
    assert_eq!(p.apply(&t, &z).await.unwrap(), created, "creating an existing zone is fine");

    let d = delegation("acme", parent, nameservers.clone());
    let applied = p.apply(&t, &d).await.unwrap();
    assert_eq!(applied.attrs, d.attrs);
    let records: Vec<ResourceObject> =
        RECORDS.iter().map(|(res, name)| a_record(res, name, "acme", parent, IP)).collect();
    for r in &records {
        assert_eq!(p.apply(&t, r).await.unwrap().attrs, r.attrs);
    }

    // The real DNS server answers.
    let s = powerdns::server();
    assert_eq!(s.dig(&format!("api.{child}"), "A"), [IP]);
    assert_eq!(s.dig(&format!("bi.{child}"), "A"), [IP]);
    assert_eq!(s.dig(&child, "A"), [IP]);
    assert_eq!(s.dig(&format!("anything.{child}"), "A"), [IP], "the wildcard");
    assert_eq!(s.dig(&child, "NS"), NAMESERVERS);
    // The parent holds the delegation.
    let ns = b.get_rrset(parent, "acme", "NS").await.unwrap().unwrap();
    assert_eq!((ns.ttl, ns.records.len()), (3600, 2));

    // Read back: no drift.
    assert_eq!(p.read(&t, &z).await.unwrap().unwrap().outputs["nameservers"], nameservers);
    assert_eq!(p.read(&t, &d).await.unwrap().unwrap().attrs, d.attrs);
    for r in &records {
        assert_eq!(p.read(&t, r).await.unwrap().unwrap().attrs, r.attrs, "{}", r.addr);
    }

    // Edited behind matih's back: drift shows the live values; deleted: gone.
    pdns_patch(
        &child,
        serde_json::json!({"name": format!("api.{child}."), "type": "A", "ttl": 60, "changetype": "REPLACE",
            "records": [{"content": "192.0.2.99", "disabled": false}]}),
    )
    .await;
    let api = p.read(&t, &records[2]).await.unwrap().unwrap();
    assert_eq!(api.attrs["records"], Value::list([Value::str("192.0.2.99")]));
    assert_eq!(api.attrs["ttl"], Value::Int(60));
    pdns_patch(&child, serde_json::json!({"name": format!("bi.{child}."), "type": "A", "changetype": "DELETE"})).await;
    assert_eq!(p.read(&t, &records[3]).await.unwrap(), None);
    pdns_patch(
        parent,
        serde_json::json!({"name": format!("acme.{parent}."), "type": "NS", "ttl": 3600, "changetype": "REPLACE",
            "records": [{"content": "ns.hijack.test.", "disabled": false}]}),
    )
    .await;
    let live = p.read(&t, &d).await.unwrap().unwrap();
    assert_eq!(live.attrs["records"], Value::list([Value::str("ns.hijack.test.")]));
    // Applying again repairs both.
    p.apply(&t, &records[2]).await.unwrap();
    p.apply(&t, &d).await.unwrap();
    assert_eq!(s.dig(&format!("api.{child}"), "A"), [IP]);
    assert_eq!(p.read(&t, &d).await.unwrap().unwrap().attrs, d.attrs);

    // Destroy in the engine's order: records, delegation, zone.
    for r in &records {
        p.delete(&t, r).await.unwrap();
        assert_eq!(p.read(&t, r).await.unwrap(), None);
    }
    assert_eq!(s.dig(&format!("api.{child}"), "A"), Vec::<String>::new());
    p.delete(&t, &d).await.unwrap();
    p.delete(&t, &d).await.unwrap();
    assert_eq!(p.read(&t, &d).await.unwrap(), None);
    p.delete(&t, &z).await.unwrap();
    assert_eq!(p.read(&t, &z).await.unwrap(), None);
    assert_eq!(b.get_zone(&child).await.unwrap(), None);
    // Deleting what is already gone succeeds, including records of a deleted zone.
    p.delete(&t, &z).await.unwrap();
    p.delete(&t, &records[0]).await.unwrap();
    assert_eq!(p.read(&t, &records[0]).await.unwrap(), None);

    // The rest of the parent zone is untouched.
    assert_eq!(b.get_rrset(parent, "globex", "NS").await.unwrap(), Some(other_ns));
    assert_eq!(b.get_rrset(parent, "www", "A").await.unwrap(), Some(www));
    assert_eq!(s.dig(&format!("www.{parent}"), "A"), ["198.51.100.7"]);
}

#[tokio::test]
async fn a_delegation_whose_parent_rrset_or_zone_is_gone_deletes_fine() {
    let parent = "gone.matih.test";
    let (p, b, t) = (provider(), backend(), tenant());
    b.create_zone(parent).await.unwrap();
    let d = delegation("acme", parent, Value::list([Value::str("ns1.matih.test.")]));
    p.delete(&t, &d).await.unwrap();
    let elsewhere = delegation("acme", "no-such-parent.matih.test", Value::list([Value::str("ns1.matih.test.")]));
    p.delete(&t, &elsewhere).await.unwrap();
    assert_eq!(p.read(&t, &elsewhere).await.unwrap(), None);
}

#[tokio::test]
async fn errors_name_the_record_and_carry_the_service_message() {
    let (p, t) = (provider(), tenant());
    // A record in a zone that does not exist: permanent, names the zone.
    let r = a_record("api", "api", "nobody", "missing.matih.test", IP);
    let e = p.apply(&t, &r).await.unwrap_err();
    assert!(!e.transient, "{e}");
    assert!(e.message.contains("api.nobody.missing.matih.test"), "{e}");
    assert!(e.message.contains("404"), "{e}");
    // Data PowerDNS refuses (not an IPv4 address): 422, permanent, with its message.
    let bad = a_record("api", "api", "x", "errors.matih.test", "not-an-ip");
    backend().create_zone("x.errors.matih.test").await.unwrap();
    let e = p.apply(&t, &bad).await.unwrap_err();
    assert!(!e.transient, "{e}");
    assert!(e.message.contains("HTTP 422"), "{e}");
    assert_eq!(e.address.to_string(), "dns_a_record.api");

    // A wrong API key: 401, permanent, and the key is not in the message.
    let s = powerdns::server();
    let wrong = PowerDnsBackend::new(&s.api_url, "localhost", "wrong-key-123".into(), vec![]).unwrap();
    let e = DnsProvider::new(Arc::new(wrong)).read(&t, &zone("acme", "errors.matih.test")).await.unwrap_err();
    assert!(!e.transient, "{e}");
    assert!(e.message.contains("401") && e.message.contains("acme.errors.matih.test"), "{e}");
    assert!(!e.message.contains("wrong-key-123") && !e.message.contains(&s.api_key), "{e}");
}

#[tokio::test]
async fn an_unreachable_server_is_a_transient_error() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let b = PowerDnsBackend::new(&format!("http://127.0.0.1:{port}"), "localhost", "k".into(), vec![]).unwrap();
    let p = DnsProvider::new(Arc::new(b));
    let t = tenant();
    let e = p.read(&t, &zone("acme", "matih.test")).await.unwrap_err();
    assert!(e.transient, "{e}");
    assert!(e.message.contains("acme.matih.test") && e.message.contains("PowerDNS"), "{e}");
    let e = p.apply(&t, &a_record("api", "api", "acme", "matih.test", IP)).await.unwrap_err();
    assert!(e.transient, "{e}");
    let e = p.delete(&t, &delegation("acme", "matih.test", Value::list([]))).await.unwrap_err();
    assert!(e.transient, "{e}");
}

#[tokio::test]
async fn the_platform_file_selects_powerdns_and_reads_the_key_from_the_environment() {
    let s = powerdns::server();
    let var = "MATIH_TEST_PDNS_KEY_FROM_PLATFORM";
    let text = format!(
        "dns {{\n  parent_zone = \"platform.matih.test\"\n  provider = \"powerdns\"\n  api_url = \"{}\"\n  \
         api_key_env = \"{var}\"\n  nameservers = [\"ns1.matih.test\"]\n}}\n",
        s.api_url
    );
    let (config, diags) = matih::spec::parse_platform(&matih::diag::SourceFile::new("matih.hcl", text));
    assert!(diags.is_empty(), "{diags:?}");
    let dns = config.dns.unwrap();
    if !crate::support::is_child() {
        let e = DnsProvider::from_platform(&dns).unwrap_err();
        assert!(e.contains(var), "{e}");
    }
    // The provider reads the variable in this process: the rest runs in a child process with it set.
    let name = "dns_powerdns::the_platform_file_selects_powerdns_and_reads_the_key_from_the_environment";
    if crate::support::rerun_in_child(name, &[(var, &s.api_key)]) {
        return;
    }
    let p = DnsProvider::from_platform(&dns).unwrap();
    assert!(!format!("{p:?}").contains(&s.api_key));
    let created = p.apply(&tenant(), &zone("platform", "matih.test")).await.unwrap();
    assert_eq!(created.outputs["nameservers"], Value::list([Value::str("ns1.matih.test.")]));
    p.delete(&tenant(), &zone("platform", "matih.test")).await.unwrap();
}

#[tokio::test]
async fn the_engine_provisions_and_destroys_phase_7_of_the_example_tenant() {
    // acme's Slack webhook comes from the environment; apply checks it is there before starting.
    // The engine reads it in this process: rerun in a child process with it set from its start.
    let webhook = ("ACME_SLACK_WEBHOOK", "https://hooks.slack.example/services/T0/B0/dns-test");
    if crate::support::rerun_in_child(
        "dns_powerdns::the_engine_provisions_and_destroys_phase_7_of_the_example_tenant",
        &[webhook],
    ) {
        return;
    }
    use matih::apply::{apply_tenant, refresh, ApplyOptions, NoHooks, Operation, Providers};

    let parent = "engine.matih.test";
    backend().create_zone(parent).await.unwrap();
    let catalog = matih::catalog::Catalog::embedded().unwrap();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let (specs, diags) = matih::spec::load_tenants(&[root.join("tenants/acme.hcl")], &catalog);
    assert!(diags.is_empty(), "{diags:?}");
    let platform = matih::spec::PlatformConfig { parent_zone: parent.into(), ..Default::default() };
    let (graph, diags) = matih::graph::compile(&specs[0], &catalog, &platform);
    assert!(!matih::diag::has_errors(&diags), "{diags:?}");
    let graph = graph.unwrap();
    let store = matih::state::MemoryStore::new();
    let providers = Providers::new().with(Arc::new(provider())).with(Arc::new(Scripted::all_but_dns()));
    let opts = ApplyOptions { initial_backoff: std::time::Duration::from_millis(10), ..ApplyOptions::default() };

    let plan = matih::plan::diff(&graph, None, None);
    apply_tenant(&plan, &store, &providers, &NoHooks, &opts).await.unwrap();
    let s = powerdns::server();
    let child = format!("acme.{parent}");
    for name in [format!("api.{child}"), format!("bi.{child}"), child.clone(), format!("x.{child}")] {
        assert_eq!(s.dig(&name, "A"), [IP], "{name}");
    }
    assert_eq!(s.dig(&child, "NS"), NAMESERVERS);
    let ns = backend().get_rrset(parent, "acme", "NS").await.unwrap().unwrap();
    assert_eq!(ns.records, NAMESERVERS);

    // Refresh (of the DNS resources) finds no drift, then sees a record deleted behind matih's back.
    use matih::state::StateStore;
    let st = store.get("acme").unwrap().unwrap();
    let dns_only = Providers::new().with(Arc::new(provider()));
    let r = refresh(&st, &dns_only, 4).await;
    assert!(r.errors.is_empty() && r.changed.is_empty() && r.gone.is_empty(), "{r:?}");
    pdns_patch(&child, serde_json::json!({"name": format!("bi.{child}."), "type": "A", "changetype": "DELETE"})).await;
    let r = refresh(&st, &dns_only, 4).await;
    assert_eq!(r.gone, ["dns_a_record.bi".parse().unwrap()]);

    // Destroy: the plan against an empty graph deletes everything, DNS in reverse dependency order.
    let st = store.get("acme").unwrap().unwrap();
    let empty = matih::graph::ResourceGraph::new(graph.tenant.clone());
    let plan = matih::plan::diff(&empty, Some(&st), None);
    let opts = ApplyOptions { operation: Operation::Destroy, ..opts };
    apply_tenant(&plan, &store, &providers, &NoHooks, &opts).await.unwrap();
    assert_eq!(backend().get_zone(&child).await.unwrap(), None);
    assert_eq!(backend().get_rrset(parent, "acme", "NS").await.unwrap(), None);
    assert!(backend().get_zone(parent).await.unwrap().is_some(), "the parent zone stays");
}

/// A zone stored without its NS set (what a PowerDNS killed in the middle of creating it can leave):
/// creating it again writes the NS set, so the zone's `nameservers` output is never empty and the
/// delegation in the parent has records to point at.
#[tokio::test]
async fn creating_a_zone_left_without_name_servers_completes_it() {
    let child = "halfmade.deaths-pdns.matih.test";
    let s = powerdns::server();
    let b = backend();
    let _ = b.delete_zone(child).await;
    let rsp = reqwest::Client::new()
        .post(format!("{}/api/v1/servers/localhost/zones", s.api_url))
        .header("X-API-Key", &s.api_key)
        .body(serde_json::json!({ "name": format!("{child}."), "kind": "Native", "nameservers": [] }).to_string())
        .send()
        .await
        .unwrap();
    assert!(rsp.status().is_success(), "{:?}", rsp.text().await);
    assert_eq!(b.get_zone(child).await.unwrap(), Some(vec![]), "the zone exists, without NS records");

    let observed = provider().apply(&tenant(), &zone("halfmade", "deaths-pdns.matih.test")).await.unwrap();
    let ns = Value::list(NAMESERVERS.iter().map(|n| Value::str(*n)));
    assert_eq!(observed.outputs["nameservers"], ns);
    let mut live = b.get_zone(child).await.unwrap().unwrap();
    live.sort();
    assert_eq!(live, NAMESERVERS);
    b.delete_zone(child).await.unwrap();
}
