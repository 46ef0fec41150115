//! PowerDNS Authoritative through its HTTP API (`/api/v1/servers/{server_id}/zones`).
//!
//! Zones are created `Native` with the platform's name servers; record sets are written with
//! `PATCH …/zones/{zone}.` and `changetype: REPLACE` / `DELETE` (deleting an absent record set is
//! a no-op for PowerDNS). The API key goes in the `X-API-Key` header and nowhere else.

use std::time::Duration;

use serde_json::json;

use super::{fqdn, BackendError, BackendFuture, DnsBackend, RecordSet, ZoneRecordSets};

/// The API key; `Debug` never shows it.
#[derive(Clone)]
struct ApiKey(String);

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

#[derive(Clone, Debug)]
pub struct PowerDnsBackend {
    http: reqwest::Client,
    /// `{api_url}/api/v1/servers/{server_id}`.
    base: String,
    api_key: ApiKey,
    /// The NS set of zones this backend creates, fully qualified.
    nameservers: Vec<String>,
}

/// A zone id in API paths: the name with its trailing dot.
fn zone_id(zone: &str) -> String {
    format!("{}.", zone.trim_end_matches('.'))
}

fn absolute(name: &str) -> String {
    format!("{}.", name.trim_end_matches('.'))
}

impl PowerDnsBackend {
    /// `api_url` is the web server's base URL (`http://127.0.0.1:8081`); `nameservers` the NS set
    /// of new zones.
    pub fn new(api_url: &str, server_id: &str, api_key: String, nameservers: Vec<String>) -> Result<Self, String> {
        // The client carries a credential: it never follows a redirect.
        let http = crate::transport::http_client(Duration::from_secs(10), Duration::from_secs(60))
            .map_err(|e| format!("cannot create an HTTP client for PowerDNS: {e}"))?;
        let base = format!("{}/api/v1/servers/{server_id}", api_url.trim_end_matches('/'));
        let nameservers = nameservers.iter().map(|n| absolute(n)).collect();
        Ok(PowerDnsBackend { http, base, api_key: ApiKey(api_key), nameservers })
    }

    /// Sends one request; returns the status and body of a 2xx or 404 answer, an error otherwise.
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<(u16, serde_json::Value), BackendError> {
        let url = format!("{}{path}", self.base);
        let mut req = self.http.request(method, &url).header("X-API-Key", &self.api_key.0);
        if let Some(body) = body {
            req = req.header("content-type", "application/json").body(body.to_string());
        }
        let rsp = req.send().await.map_err(|e| transport_error(&e))?;
        let status = rsp.status().as_u16();
        let retry_after = rsp.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_string);
        let text = rsp.text().await.map_err(|e| transport_error(&e))?;
        if (200..300).contains(&status) || status == 404 {
            let value = if text.trim().is_empty() {
                serde_json::Value::Null
            } else {
                serde_json::from_str(&text).unwrap_or(serde_json::Value::Null)
            };
            return Ok((status, value));
        }
        Err(status_error(status, &text, retry_after.as_deref()))
    }
}

impl PowerDnsBackend {
    /// Record set `name` of `zone`: `None` when the zone does not exist, `Some(None)` when the
    /// record set does not.
    async fn fetch_rrset(
        &self,
        zone: &str,
        name: &str,
        rtype: &str,
    ) -> Result<Option<Option<RecordSet>>, BackendError> {
        let name = absolute(&fqdn(zone, name));
        let path = format!("/zones/{}?rrset_name={name}&rrset_type={rtype}", zone_id(zone));
        let (status, body) = self.call(reqwest::Method::GET, &path, None).await?;
        if status == 404 {
            return Ok(None);
        }
        let rrset = body.get("rrsets").and_then(|r| r.as_array()).and_then(|sets| {
            sets.iter().find(|s| {
                s["type"].as_str() == Some(rtype) && s["name"].as_str().is_some_and(|n| n.eq_ignore_ascii_case(&name))
            })
        });
        Ok(Some(rrset.and_then(parse_rrset)))
    }
}

/// The TTL of the NS set [`PowerDnsBackend::complete_zone`] writes (PowerDNS's own for a new zone's).
const ZONE_NS_TTL: i64 = 3600;

impl PowerDnsBackend {
    /// A zone that exists already: made by an earlier attempt, perhaps one cut off after the zone
    /// was stored but before its NS set was (PowerDNS killed mid-request leaves such a zone), and
    /// a zone without an NS set gives a delegation nothing to point at. Writes the NS set then.
    async fn complete_zone(&self, zone: &str) -> Result<(), BackendError> {
        if self.nameservers.is_empty() {
            return Ok(());
        }
        if let Some(None) = self.fetch_rrset(zone, "@", "NS").await? {
            let ns = RecordSet { ttl: ZONE_NS_TTL, records: self.nameservers.clone() };
            self.replace_rrset(zone, "@", "NS", &ns).await?;
        }
        Ok(())
    }
}

/// A record set of the API's answer: its enabled records; `None` when it has none.
fn parse_rrset(rrset: &serde_json::Value) -> Option<RecordSet> {
    let records: Vec<String> = rrset["records"]
        .as_array()
        .map(|rs| {
            rs.iter()
                .filter(|r| !r["disabled"].as_bool().unwrap_or(false))
                .filter_map(|r| r["content"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    if records.is_empty() {
        return None;
    }
    Some(RecordSet { ttl: rrset["ttl"].as_i64().unwrap_or(0), records })
}

/// The message of a PowerDNS error answer: `{"error": "…"}`, or the text itself.
fn service_message(text: &str) -> String {
    serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
        .unwrap_or_else(|| text.trim().chars().take(300).collect())
}

fn status_error(status: u16, text: &str, retry_after: Option<&str>) -> BackendError {
    let reason = reqwest::StatusCode::from_u16(status).ok().and_then(|s| s.canonical_reason()).unwrap_or("");
    let mut message = format!("HTTP {status} {reason}: {}", service_message(text));
    if let Some(after) = retry_after {
        message.push_str(&format!(" (Retry-After: {after})"));
    }
    BackendError::http(status, message)
}

fn transport_error(e: &reqwest::Error) -> BackendError {
    let mut message = format!("cannot reach the PowerDNS API: {e}");
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        message.push_str(&format!(": {s}"));
        source = s.source();
    }
    if e.is_decode() || e.is_builder() {
        BackendError::permanent(message)
    } else {
        BackendError::unreachable(message)
    }
}

fn not_found(status: u16, what: &str, body: &serde_json::Value) -> BackendError {
    let msg = body.get("error").and_then(|e| e.as_str()).unwrap_or("Not Found");
    BackendError::http(status, format!("HTTP 404 Not Found: {what}: {msg}"))
}

impl DnsBackend for PowerDnsBackend {
    fn service(&self) -> &'static str {
        "PowerDNS"
    }

    fn create_zone<'a>(&'a self, zone: &'a str) -> BackendFuture<'a, ()> {
        Box::pin(async move {
            let body = json!({ "name": zone_id(zone), "kind": "Native", "nameservers": self.nameservers });
            match self.call(reqwest::Method::POST, "/zones", Some(body)).await {
                Ok((404, body)) => Err(not_found(404, "server", &body)),
                Ok(_) => Ok(()),
                Err(e) if e.status == Some(409) => self.complete_zone(zone).await,
                Err(e) if e.status == Some(422) && e.message.contains("already exists") => {
                    self.complete_zone(zone).await
                }
                Err(e) => Err(e),
            }
        })
    }

    fn get_zone<'a>(&'a self, zone: &'a str) -> BackendFuture<'a, Option<Vec<String>>> {
        Box::pin(async move {
            let zone_ns = self.fetch_rrset(zone, "@", "NS").await?;
            Ok(zone_ns.map(|ns| ns.map(|rrset| rrset.records).unwrap_or_default()))
        })
    }

    fn delete_zone<'a>(&'a self, zone: &'a str) -> BackendFuture<'a, ()> {
        Box::pin(async move {
            self.call(reqwest::Method::DELETE, &format!("/zones/{}", zone_id(zone)), None).await?;
            Ok(())
        })
    }

    /// `GET /zones/{zone}`: every record set at once.
    fn get_zone_rrsets<'a>(&'a self, zone: &'a str) -> Option<BackendFuture<'a, Option<ZoneRecordSets>>> {
        Some(Box::pin(async move {
            let (status, body) = self.call(reqwest::Method::GET, &format!("/zones/{}", zone_id(zone)), None).await?;
            if status == 404 {
                return Ok(None);
            }
            let sets = body.get("rrsets").and_then(|r| r.as_array()).into_iter().flatten();
            let mut out = ZoneRecordSets::new();
            for s in sets {
                let (Some(name), Some(rtype)) = (s["name"].as_str(), s["type"].as_str()) else { continue };
                if let Some(rrset) = parse_rrset(s) {
                    out.insert((name.trim_end_matches('.').to_ascii_lowercase(), rtype.to_string()), rrset);
                }
            }
            Ok(Some(out))
        }))
    }

    fn get_rrset<'a>(&'a self, zone: &'a str, name: &'a str, rtype: &'a str) -> BackendFuture<'a, Option<RecordSet>> {
        Box::pin(async move { Ok(self.fetch_rrset(zone, name, rtype).await?.flatten()) })
    }

    fn replace_rrset<'a>(
        &'a self,
        zone: &'a str,
        name: &'a str,
        rtype: &'a str,
        rrset: &'a RecordSet,
    ) -> BackendFuture<'a, ()> {
        Box::pin(async move {
            let records: Vec<serde_json::Value> = rrset
                .records
                .iter()
                .map(|r| {
                    let content = if rtype == "NS" { absolute(r) } else { r.clone() };
                    json!({ "content": content, "disabled": false })
                })
                .collect();
            let body = json!({ "rrsets": [{
                "name": absolute(&fqdn(zone, name)),
                "type": rtype,
                "ttl": rrset.ttl,
                "changetype": "REPLACE",
                "records": records,
            }]});
            let (status, body) =
                self.call(reqwest::Method::PATCH, &format!("/zones/{}", zone_id(zone)), Some(body)).await?;
            if status == 404 {
                return Err(not_found(status, &format!("zone {zone} does not exist"), &body));
            }
            Ok(())
        })
    }

    fn delete_rrset<'a>(&'a self, zone: &'a str, name: &'a str, rtype: &'a str) -> BackendFuture<'a, ()> {
        Box::pin(async move {
            let body = json!({ "rrsets": [{
                "name": absolute(&fqdn(zone, name)),
                "type": rtype,
                "changetype": "DELETE",
            }]});
            // 404: the zone is gone, and the record set with it.
            self.call(reqwest::Method::PATCH, &format!("/zones/{}", zone_id(zone)), Some(body)).await?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_api_key_is_never_in_debug_output() {
        let b = PowerDnsBackend::new("http://127.0.0.1:1", "localhost", "s3cr3t-key".into(), vec!["ns1.x.ai".into()])
            .unwrap();
        let shown = format!("{b:?}");
        assert!(!shown.contains("s3cr3t-key"), "{shown}");
        assert!(shown.contains("ns1.x.ai."), "{shown}");
    }

    #[test]
    fn error_answers_carry_the_service_message() {
        let e = status_error(422, r#"{"error": "RRset x.ai. IN A: Name is out of zone"}"#, None);
        assert_eq!(e.message, "HTTP 422 Unprocessable Entity: RRset x.ai. IN A: Name is out of zone");
        assert!(!e.transient);
        let e = status_error(503, "busy", Some("7"));
        assert!(e.transient);
        assert!(e.message.ends_with("(Retry-After: 7)"), "{}", e.message);
        assert!(status_error(429, "", None).transient);
    }
}
