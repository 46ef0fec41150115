//! The DNS provider's Azure backend (`azure_mgmt_dns`, API 2018-05-01) against a local HTTP server
//! that checks the Azure DNS REST contract and answers like Azure: paths, `api-version`, methods,
//! the bearer token, JSON bodies (`location`, `properties.TTL`, `ARecords[].ipv4Address`,
//! `NSRecords[].nsdname`), 201/200 on PUT, `properties.nameServers` on zones, 404
//! `ResourceNotFound` / `ParentResourceNotFound` bodies, 202 on zone deletion, injected 429/503.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use azure_core::auth::{AccessToken, Secret, TokenCredential};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use serde_json::{json, Value as Json};

use matih::provider::dns::{AzureBackend, DnsBackend, DnsProvider, RecordSet};
use matih::provider::{Provider, ResourceObject, TenantRef};
use matih::value::Value;

const SUB: &str = "11111111-2222-3333-4444-555555555555";
const RG: &str = "matih-dns";
const TOKEN: &str = "test-token-not-a-secret-0123";
const AZURE_NS: [&str; 4] =
    ["ns1-01.azure-dns.com.", "ns2-01.azure-dns.net.", "ns3-01.azure-dns.org.", "ns4-01.azure-dns.info."];

/// A token credential that returns a fixed token.
#[derive(Debug)]
struct FixedToken;

#[async_trait::async_trait]
impl TokenCredential for FixedToken {
    async fn get_token(&self, _scopes: &[&str]) -> azure_core::Result<AccessToken> {
        Ok(AccessToken::new(Secret::new(TOKEN.to_string()), time::OffsetDateTime::now_utc() + time::Duration::hours(1)))
    }

    async fn clear_cache(&self) -> azure_core::Result<()> {
        Ok(())
    }
}

/// What the fake Azure holds and saw.
#[derive(Default)]
struct Azure {
    /// zone → (type, relative name) → record set resource.
    zones: BTreeMap<String, BTreeMap<(String, String), Json>>,
    /// `METHOD path` of every request, in order.
    log: Vec<String>,
    /// Broken contract rules, with the request that broke them.
    violations: Vec<String>,
    /// Answers to give instead of handling the next requests: (status, Retry-After).
    faults: Vec<(u16, Option<&'static str>)>,
    /// Makes each record set write a new etag.
    etag_counter: u64,
    /// Simulates a concurrent writer: after answering the next GET of this record set, its etag changes.
    change_after_get: Option<(String, String, String)>,
}

type Shared = Arc<Mutex<Azure>>;

fn reply(status: u16, body: Json, headers: &[(&str, &str)]) -> Response<Full<Bytes>> {
    let mut b = Response::builder().status(status).header("content-type", "application/json; charset=utf-8");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let text = if body.is_null() { String::new() } else { body.to_string() };
    b.body(Full::new(Bytes::from(text))).unwrap()
}

fn error(status: u16, code: &str, message: String) -> Response<Full<Bytes>> {
    reply(status, json!({ "error": { "code": code, "message": message } }), &[])
}

fn zone_json(zone: &str, sets: usize) -> Json {
    json!({
        "id": format!("/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Network/dnszones/{zone}"),
        "name": zone,
        "type": "Microsoft.Network/dnszones",
        "etag": "00000002-0000-0000-0000-000000000000",
        "location": "global",
        "tags": {},
        "properties": {
            "maxNumberOfRecordSets": 10000,
            "maxNumberOfRecordsPerRecordSet": null,
            "nameServers": AZURE_NS,
            "numberOfRecordSets": sets,
            "zoneType": "Public"
        }
    })
}

fn rrset_json(zone: &str, rtype: &str, name: &str, ttl: i64, records: Json) -> Json {
    let fqdn = if name == "@" { format!("{zone}.") } else { format!("{name}.{zone}.") };
    let key = if rtype == "NS" { "NSRecords" } else { "ARecords" };
    json!({
        "id": format!("/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Network/dnszones/{zone}/{rtype}/{name}"),
        "name": name,
        "type": format!("Microsoft.Network/dnszones/{rtype}"),
        "etag": "7a5d0d2a-0000-0000-0000-000000000000",
        "properties": { "TTL": ttl, "fqdn": fqdn, "provisioningState": "Succeeded", key: records }
    })
}

/// Checks a record set body against the contract; returns the records or what is wrong.
fn check_rrset_body(rtype: &str, body: &Json) -> Result<(i64, Json), String> {
    let props = body.get("properties").and_then(Json::as_object).ok_or("no properties object")?;
    let ttl = props.get("TTL").and_then(Json::as_i64).ok_or("properties.TTL missing or not a number")?;
    let (key, field, other) = match rtype {
        "A" => ("ARecords", "ipv4Address", "NSRecords"),
        "NS" => ("NSRecords", "nsdname", "ARecords"),
        t => return Err(format!("record type {t} is not used by matih")),
    };
    if props.contains_key(other) {
        return Err(format!("{other} in a {rtype} record set"));
    }
    let records = props.get(key).and_then(Json::as_array).ok_or(format!("properties.{key} missing"))?;
    if records.is_empty() {
        return Err(format!("properties.{key} is empty"));
    }
    for r in records {
        let v = r.get(field).and_then(Json::as_str).ok_or(format!("{key}[] without {field}"))?;
        if rtype == "A" && v.parse::<std::net::Ipv4Addr>().is_err() {
            return Err(format!("{v:?} is not an IPv4 address"));
        }
    }
    Ok((ttl, Json::Array(records.clone())))
}

async fn handle(state: Shared, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    let method = req.method().as_str().to_string();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let auth = req.headers().get("authorization").and_then(|v| v.to_str().ok()).map(str::to_string);
    let content_type = req.headers().get("content-type").and_then(|v| v.to_str().ok()).map(str::to_string);
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    let (if_match, if_none_match) = (header("if-match"), header("if-none-match"));
    let bytes = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let mut guard = state.lock().unwrap();
    // Through a plain reference, so that fields can be borrowed one by one.
    let az = &mut *guard;
    let what = format!("{method} {path}");
    az.log.push(what.clone());
    if !az.faults.is_empty() {
        let (status, retry_after) = az.faults.remove(0);
        let headers: Vec<(&str, &str)> = retry_after.map(|r| ("retry-after", r)).into_iter().collect();
        return Ok(reply(status, json!({"error": {"code": "TooManyRequests", "message": "slow down"}}), &headers));
    }
    if auth.as_deref() != Some(&format!("Bearer {TOKEN}")) {
        az.violations.push(format!("{what}: Authorization header is {auth:?}"));
        return Ok(error(401, "AuthenticationFailed", "Authentication failed.".into()));
    }
    if !query.split('&').any(|kv| kv == "api-version=2018-05-01") {
        az.violations.push(format!("{what}: query {query:?} lacks api-version=2018-05-01"));
        return Ok(error(400, "InvalidApiVersionParameter", format!("api-version missing in {query:?}")));
    }
    let prefix = format!("/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Network/dnsZones/");
    let Some(rest) = path.strip_prefix(&prefix) else {
        az.violations.push(format!("{what}: not under {prefix}"));
        return Ok(error(404, "InvalidResourceType", format!("no route for {path}")));
    };
    let parts: Vec<&str> = rest.split('/').collect();
    let body: Json = if bytes.is_empty() { Json::Null } else { serde_json::from_slice(&bytes).unwrap_or(Json::Null) };
    if method == "PUT" && !content_type.as_deref().is_some_and(|c| c.starts_with("application/json")) {
        az.violations.push(format!("{what}: content-type {content_type:?}"));
    }
    let not_found = |kind: &str, name: &str| {
        error(
            404,
            "ResourceNotFound",
            format!(
                "The Resource 'Microsoft.Network/dnszones/{kind}{name}' under resource group '{RG}' was not found."
            ),
        )
    };
    match (method.as_str(), parts.as_slice()) {
        ("PUT", [zone]) => {
            if body.get("location").and_then(Json::as_str) != Some("global") {
                az.violations.push(format!("{what}: zone body without location \"global\": {body}"));
                return Ok(error(400, "LocationRequired", "The location property is required.".into()));
            }
            let created = !az.zones.contains_key(*zone);
            let sets = az.zones.entry(zone.to_string()).or_insert_with(|| {
                let ns = json!(AZURE_NS.iter().map(|n| json!({ "nsdname": n })).collect::<Vec<_>>());
                BTreeMap::from([(("NS".to_string(), "@".to_string()), rrset_json(zone, "NS", "@", 172800, ns))])
            });
            let n = sets.len();
            Ok(reply(if created { 201 } else { 200 }, zone_json(zone, n), &[]))
        }
        ("GET", [zone]) => match az.zones.get(*zone) {
            Some(sets) => Ok(reply(200, zone_json(zone, sets.len()), &[])),
            None => Ok(not_found("", zone)),
        },
        ("DELETE", [zone]) => {
            if az.zones.remove(*zone).is_some() {
                let op = format!("/subscriptions/{SUB}/providers/Microsoft.Network/locations/global/dnsOperationStatuses/op1?api-version=2018-05-01");
                Ok(reply(202, Json::Null, &[("azure-asyncoperation", &op), ("location", &op)]))
            } else {
                Ok(reply(204, Json::Null, &[]))
            }
        }
        (m, [zone, rtype, name]) => {
            if !matches!(*rtype, "A" | "NS") {
                az.violations.push(format!("{what}: record type {rtype}"));
            }
            let key = (rtype.to_string(), name.to_string());
            let Some(sets) = az.zones.get_mut(*zone) else {
                return Ok(error(
                    404,
                    "ParentResourceNotFound",
                    format!(
                        "Can not perform requested operation on nested resource. Parent resource '{zone}' not found."
                    ),
                ));
            };
            match m {
                "PUT" => match check_rrset_body(rtype, &body) {
                    Ok((ttl, records)) => {
                        // Optimistic concurrency, as Azure does it: If-None-Match: * creates only, If-Match: ETAG
                        // updates only that version. matih must send one of them, so no write is blind.
                        let current = sets.get(&key).and_then(|rs| rs["etag"].as_str()).map(str::to_string);
                        if if_match.is_none() && if_none_match.is_none() {
                            az.violations.push(format!("{what}: neither If-Match nor If-None-Match"));
                        }
                        let precondition_failed = match (&if_match, &if_none_match, &current) {
                            (_, Some(star), Some(_)) if star == "*" => true,
                            (Some(want), _, Some(have)) => want != have,
                            (Some(_), _, None) => true,
                            _ => false,
                        };
                        if precondition_failed {
                            return Ok(error(
                                412,
                                "PreconditionFailed",
                                format!("The condition '{if_match:?}/{if_none_match:?}' in the request is not met."),
                            ));
                        }
                        az.etag_counter += 1;
                        let mut rs = rrset_json(zone, rtype, name, ttl, records);
                        rs["etag"] = json!(format!("{:08x}-0000-0000-0000-000000000000", az.etag_counter));
                        let created = sets.insert(key, rs.clone()).is_none();
                        Ok(reply(if created { 201 } else { 200 }, rs, &[]))
                    }
                    Err(problem) => {
                        az.violations.push(format!("{what}: {problem}: {body}"));
                        Ok(error(400, "BadRequest", problem))
                    }
                },
                "GET" => match sets.get(&key) {
                    Some(rs) => {
                        let answer = reply(200, rs.clone(), &[]);
                        if az.change_after_get == Some((zone.to_string(), rtype.to_string(), name.to_string())) {
                            az.change_after_get = None;
                            az.etag_counter += 1;
                            let etag = format!("{:08x}-0000-0000-0000-000000000000", az.etag_counter);
                            az.zones.get_mut(*zone).unwrap().get_mut(&key).unwrap()["etag"] = json!(etag);
                        }
                        Ok(answer)
                    }
                    None => Ok(not_found(&format!("{zone}/{rtype}/"), name)),
                },
                "DELETE" => match sets.remove(&key) {
                    Some(_) => Ok(reply(200, Json::Null, &[])),
                    None => Ok(reply(204, Json::Null, &[])),
                },
                _ => {
                    az.violations.push(format!("{what}: method not used by matih"));
                    Ok(error(405, "MethodNotAllowed", format!("{m} is not supported")))
                }
            }
        }
        _ => {
            az.violations.push(format!("{what}: unexpected request"));
            Ok(error(400, "BadRequest", format!("unexpected {what}")))
        }
    }
}

/// Starts the fake Azure on a free loopback port; returns its URL and state.
async fn fake_azure() -> (String, Shared) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let state: Shared = Arc::default();
    let s = state.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            let s = s.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| handle(s.clone(), req));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (url, state)
}

fn backend(url: &str) -> AzureBackend {
    AzureBackend::with_credential(Some(url), SUB, RG, Arc::new(FixedToken))
        .unwrap()
        .with_delete_polling(Duration::from_secs(5), Duration::from_millis(20))
}

fn tenant() -> TenantRef {
    TenantRef { slug: "acme".into(), id: "550e8400-e29b-41d4-a716-446655440000".into() }
}

fn obj(addr: &str, attrs: Vec<(&str, Value)>) -> ResourceObject {
    ResourceObject::new(addr.parse().unwrap(), attrs.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

fn a_record(resource: &str, name: &str, ip: &str) -> ResourceObject {
    obj(
        &format!("dns_a_record.{resource}"),
        vec![
            ("zone", Value::str("acme.matih.ai")),
            ("name", Value::str(name)),
            ("type", Value::str("A")),
            ("ttl", Value::Int(300)),
            ("records", Value::list([Value::str(ip)])),
        ],
    )
}

#[tokio::test]
async fn zone_delegation_and_records_follow_the_azure_dns_contract() {
    let (url, az) = fake_azure().await;
    let b = backend(&url);
    let p = DnsProvider::new(Arc::new(backend(&url)));
    let t = tenant();
    b.create_zone("matih.ai").await.unwrap();
    let other = RecordSet { ttl: 3600, records: vec!["ns1-09.azure-dns.com.".into()] };
    b.replace_rrset("matih.ai", "globex", "NS", &other).await.unwrap();

    let zone = obj("dns_zone.tenant", vec![("name", Value::str("acme.matih.ai"))]);
    assert_eq!(p.read(&t, &zone).await.unwrap(), None);
    let created = p.apply(&t, &zone).await.unwrap();
    let ns = created.outputs["nameservers"].clone();
    assert_eq!(ns, Value::list(AZURE_NS.map(Value::str)), "the name servers Azure assigned");
    assert_eq!(p.apply(&t, &zone).await.unwrap(), created, "PUT on an existing zone is fine");

    let delegation = obj(
        "dns_ns_delegation.tenant",
        vec![
            ("zone", Value::str("matih.ai")),
            ("name", Value::str("acme")),
            ("ttl", Value::Int(3600)),
            ("records", ns.clone()),
        ],
    );
    assert_eq!(p.apply(&t, &delegation).await.unwrap().attrs, delegation.attrs);
    let records: Vec<ResourceObject> = [("apex", "@"), ("wildcard", "*"), ("api", "api"), ("bi", "bi")]
        .iter()
        .map(|(r, n)| a_record(r, n, "20.85.123.45"))
        .collect();
    for r in &records {
        p.apply(&t, r).await.unwrap();
        assert_eq!(p.read(&t, r).await.unwrap().unwrap().attrs, r.attrs);
    }
    {
        let az = az.lock().unwrap();
        let stored = &az.zones["acme.matih.ai"][&("A".to_string(), "api".to_string())];
        assert_eq!(stored["properties"]["ARecords"], json!([{"ipv4Address": "20.85.123.45"}]));
        assert_eq!(stored["properties"]["TTL"], 300);
        let ns = &az.zones["matih.ai"][&("NS".to_string(), "acme".to_string())];
        assert_eq!(ns["properties"]["NSRecords"][0], json!({"nsdname": "ns1-01.azure-dns.com."}));
        let prefix = format!("/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Network/dnsZones");
        for path in [
            format!("PUT {prefix}/acme.matih.ai"),
            format!("PUT {prefix}/matih.ai/NS/acme"),
            format!("PUT {prefix}/acme.matih.ai/A/@"),
            format!("PUT {prefix}/acme.matih.ai/A/*"),
            format!("GET {prefix}/acme.matih.ai/A/api"),
        ] {
            assert!(az.log.contains(&path), "{path} not in {:#?}", az.log);
        }
    }
    assert_eq!(p.read(&t, &delegation).await.unwrap().unwrap().attrs, delegation.attrs);

    // Drift: records edited or deleted in Azure.
    b.replace_rrset("acme.matih.ai", "api", "A", &RecordSet { ttl: 60, records: vec!["10.9.9.9".into()] })
        .await
        .unwrap();
    let live = p.read(&t, &records[2]).await.unwrap().unwrap();
    assert_eq!(live.attrs["records"], Value::list([Value::str("10.9.9.9")]));
    assert_eq!(live.attrs["ttl"], Value::Int(60));
    b.delete_rrset("acme.matih.ai", "bi", "A").await.unwrap();
    assert_eq!(p.read(&t, &records[3]).await.unwrap(), None);
    b.replace_rrset("matih.ai", "acme", "NS", &RecordSet { ttl: 3600, records: vec!["ns.hijack.example.".into()] })
        .await
        .unwrap();
    let live = p.read(&t, &delegation).await.unwrap().unwrap();
    assert_eq!(live.attrs["records"], Value::list([Value::str("ns.hijack.example.")]));

    // Destroy in the engine's order; a delegation already gone deletes fine; the zone deletion is
    // a 202 that is followed until the zone is gone.
    for r in &records {
        p.delete(&t, r).await.unwrap();
    }
    p.delete(&t, &delegation).await.unwrap();
    p.delete(&t, &delegation).await.unwrap();
    p.delete(&t, &zone).await.unwrap();
    assert_eq!(p.read(&t, &zone).await.unwrap(), None);
    p.delete(&t, &zone).await.unwrap();
    p.delete(&t, &records[0]).await.unwrap();
    assert_eq!(p.read(&t, &records[0]).await.unwrap(), None, "a record of a deleted zone reads as gone");

    let az = az.lock().unwrap();
    assert!(az.violations.is_empty(), "{:#?}", az.violations);
    let parent = &az.zones["matih.ai"];
    assert!(parent.contains_key(&("NS".to_string(), "globex".to_string())), "other tenants' delegations stay");
    assert!(!parent.contains_key(&("NS".to_string(), "acme".to_string())));
    assert!(!az.zones.contains_key("acme.matih.ai"));
}

#[tokio::test]
async fn throttling_and_outages_are_transient_and_client_errors_are_not() {
    let (url, az) = fake_azure().await;
    let p = DnsProvider::new(Arc::new(backend(&url)));
    let t = tenant();
    let zone = obj("dns_zone.tenant", vec![("name", Value::str("acme.matih.ai"))]);
    az.lock().unwrap().faults = vec![(429, Some("3")), (503, None)];
    let e = p.apply(&t, &zone).await.unwrap_err();
    assert!(e.transient, "{e}");
    assert!(e.message.contains("acme.matih.ai") && e.message.contains("429"), "{e}");
    let e = p.read(&t, &zone).await.unwrap_err();
    assert!(e.transient && e.message.contains("503"), "{e}");

    // A record set in a zone that does not exist: 404 ParentResourceNotFound, permanent.
    let e = p.apply(&t, &a_record("api", "api", "20.85.123.45")).await.unwrap_err();
    assert!(!e.transient, "{e}");
    assert!(e.message.contains("ParentResourceNotFound") && e.message.contains("api.acme.matih.ai"), "{e}");
    assert!(!e.message.contains(TOKEN), "{e}");

    // Nothing listens: transient.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let e = DnsProvider::new(Arc::new(backend(&dead))).read(&t, &zone).await.unwrap_err();
    assert!(e.transient, "{e}");
    assert!(az.lock().unwrap().violations.is_empty());
    assert!(!format!("{:?}", backend(&url)).contains(TOKEN));
}

#[tokio::test]
async fn record_sets_are_written_with_etags_and_a_concurrent_change_is_not_overwritten() {
    let (url, state) = fake_azure().await;
    let b = backend(&url);
    b.create_zone("etag.matih.ai").await.unwrap();
    let v1 = RecordSet { ttl: 300, records: vec!["203.0.113.1".into()] };
    b.replace_rrset("etag.matih.ai", "api", "A", &v1).await.unwrap();
    let v2 = RecordSet { ttl: 300, records: vec!["203.0.113.2".into()] };
    b.replace_rrset("etag.matih.ai", "api", "A", &v2).await.unwrap();
    assert_eq!(b.get_rrset("etag.matih.ai", "api", "A").await.unwrap(), Some(v2.clone()));
    assert!(state.lock().unwrap().violations.is_empty(), "{:?}", state.lock().unwrap().violations);

    // Someone else writes the set between matih's read of the etag and its write: the stale If-Match
    // is refused with 412, which matih reports as transient (the engine retries with a fresh read).
    state.lock().unwrap().change_after_get = Some(("etag.matih.ai".into(), "A".into(), "api".into()));
    let v3 = RecordSet { ttl: 300, records: vec!["203.0.113.3".into()] };
    let e = b.replace_rrset("etag.matih.ai", "api", "A", &v3).await.unwrap_err();
    assert!(e.transient, "{e:?}");
    assert!(e.message.contains("412") && e.message.contains("changed by someone else"), "{e:?}");
    assert_eq!(b.get_rrset("etag.matih.ai", "api", "A").await.unwrap(), Some(v2), "nothing was overwritten");
    // A retry reads the new etag and succeeds.
    b.replace_rrset("etag.matih.ai", "api", "A", &v3).await.unwrap();
    assert_eq!(b.get_rrset("etag.matih.ai", "api", "A").await.unwrap(), Some(v3));
}
