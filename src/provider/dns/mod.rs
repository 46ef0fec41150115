//! The DNS provider (phase 7, CREATE_DNS_ZONE): every `dns_*` resource is one zone or one record
//! set, written through a small [`DnsBackend`] with two implementations, PowerDNS (HTTP API) and
//! Azure DNS (Resource Manager, `azure_mgmt_dns`).
//!
//! | kind | attributes | what it is |
//! |---|---|---|
//! | `dns_zone` | `name` | the tenant's child zone `{slug}.{parent}`; output `nameservers` |
//! | `dns_ns_delegation` | `zone` (parent), `name` (slug), `ttl`, `records` | the NS record set `{slug}` in the parent zone |
//! | `dns_a_record` | `zone`, `name` (`@` = apex, `*`, `api`, `bi`), `type` (`A`), `ttl`, `records` | an A record set in the child zone |
//!
//! Creating a zone that exists is fine; deleting a zone or a record set that is gone (or whose zone
//! is gone) succeeds. A delegation's delete removes only the `{slug}` NS record set of the parent:
//! other tenants' records there are never touched. Reads report what is live (`None` when gone);
//! record lists are compared as sets, so a server's ordering is not drift.
//!
//! Errors name the zone or record set and carry the service's message; 429, 5xx and connection
//! failures are transient (the engine retries them with backoff), other 4xx are permanent.
//!
//! Refresh reads a tenant's zone and its records with one request for the whole zone where the
//! backend can (PowerDNS; [`DnsBackend::get_zone_rrsets`]); the answers are the same as one read
//! per record set.
//!
//! **Invariant:** knows nothing of graphs, plans or state; one zone or record set per call. The
//! PowerDNS API key and Azure credentials never appear in errors, logs or `Debug` output.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use super::{Observed, Provider, ProviderError, ProviderFuture, ReadMany, ResourceObject, TenantRef};
use crate::spec::{DnsPlatform, DnsProviderKind};
use crate::value::Value;

pub mod azure;
pub mod powerdns;

pub use azure::AzureBackend;
pub use powerdns::PowerDnsBackend;

/// The TTL of record sets whose resource and platform file say none.
pub const DEFAULT_TTL: i64 = 300;

/// One record set as a DNS service holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordSet {
    pub ttl: i64,
    /// Record data as the service reports it: IPv4 addresses for `A`, host names for `NS`.
    pub records: Vec<String>,
}

/// A failed call to a DNS service: the service's message (with the HTTP status when there was
/// one), and whether trying again may help (429, 5xx, connection failures).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendError {
    pub status: Option<u16>,
    pub message: String,
    pub transient: bool,
}

impl BackendError {
    /// An error for an HTTP status: 429 and 5xx are transient.
    pub fn http(status: u16, message: impl Into<String>) -> Self {
        BackendError { status: Some(status), message: message.into(), transient: status == 429 || status >= 500 }
    }

    /// The service could not be reached (refused, reset, timed out): transient.
    pub fn unreachable(message: impl Into<String>) -> Self {
        BackendError { status: None, message: message.into(), transient: true }
    }

    pub fn permanent(message: impl Into<String>) -> Self {
        BackendError { status: None, message: message.into(), transient: false }
    }
}

impl std::fmt::Display for BackendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

pub type BackendFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, BackendError>> + Send + 'a>>;

/// What the provider needs of a DNS service. Zones are named without a trailing dot
/// (`acme.matih.ai`); record set names are relative to their zone, `@` being the apex; record
/// types are `A` or `NS`.
pub trait DnsBackend: Send + Sync + std::fmt::Debug {
    /// The service's name in messages (`PowerDNS`, `Azure DNS`).
    fn service(&self) -> &'static str;

    /// Creates the zone; a zone that already exists is left as it is.
    fn create_zone<'a>(&'a self, zone: &'a str) -> BackendFuture<'a, ()>;

    /// The zone's name servers as the service reports them; `None` when the zone does not exist.
    fn get_zone<'a>(&'a self, zone: &'a str) -> BackendFuture<'a, Option<Vec<String>>>;

    /// Deletes the zone and everything in it; an absent zone is fine.
    fn delete_zone<'a>(&'a self, zone: &'a str) -> BackendFuture<'a, ()>;

    /// One record set; `None` when it (or its zone) does not exist.
    fn get_rrset<'a>(&'a self, zone: &'a str, name: &'a str, rtype: &'a str) -> BackendFuture<'a, Option<RecordSet>>;

    /// Creates the record set or replaces its TTL and records.
    fn replace_rrset<'a>(
        &'a self,
        zone: &'a str,
        name: &'a str,
        rtype: &'a str,
        rrset: &'a RecordSet,
    ) -> BackendFuture<'a, ()>;

    /// Deletes the record set; an absent record set or zone is fine.
    fn delete_rrset<'a>(&'a self, zone: &'a str, name: &'a str, rtype: &'a str) -> BackendFuture<'a, ()>;

    /// Every record set of the zone in one request, when the service can answer so: by (fully
    /// qualified name in lower case without the trailing dot, type), each as
    /// [`DnsBackend::get_rrset`] would answer it (record sets it would call absent left out);
    /// `None` inside when the zone does not exist. `None` (the default): read one by one.
    fn get_zone_rrsets<'a>(&'a self, _zone: &'a str) -> Option<BackendFuture<'a, Option<ZoneRecordSets>>> {
        None
    }
}

/// A zone's record sets by (lower-case fully qualified name without the trailing dot, type).
pub type ZoneRecordSets = BTreeMap<(String, String), RecordSet>;

/// The fully qualified name of record set `name` of `zone` (`@` is the apex), without a trailing dot.
pub fn fqdn(zone: &str, name: &str) -> String {
    if name == "@" || name.is_empty() {
        zone.to_string()
    } else {
        format!("{name}.{zone}")
    }
}

/// The provider for `dns_zone`, `dns_ns_delegation` and `dns_a_record`.
#[derive(Clone, Debug)]
pub struct DnsProvider {
    backend: Arc<dyn DnsBackend>,
    default_ttl: i64,
}

impl DnsProvider {
    pub fn new(backend: Arc<dyn DnsBackend>) -> Self {
        DnsProvider { backend, default_ttl: DEFAULT_TTL }
    }

    /// The TTL used when a record resource has no `ttl` attribute.
    pub fn with_default_ttl(mut self, ttl: i64) -> Self {
        self.default_ttl = ttl;
        self
    }

    /// The provider the platform file's `dns` block describes. Reads the PowerDNS API key from the
    /// variable `api_key_env` names, or finds Azure credentials the way Azure tools do
    /// (`AZURE_CLIENT_ID`/`AZURE_TENANT_ID`/`AZURE_CLIENT_SECRET`, workload identity, managed
    /// identity, Azure CLI).
    pub fn from_platform(cfg: &DnsPlatform) -> Result<Self, String> {
        let backend: Arc<dyn DnsBackend> = match cfg.provider {
            DnsProviderKind::PowerDns => {
                let url = cfg.api_url.as_deref().ok_or("the dns block sets no api_url for PowerDNS")?;
                let var = cfg.api_key_env.as_deref().ok_or("the dns block sets no api_key_env for PowerDNS")?;
                let key = std::env::var(var).map_err(|_| {
                    format!("the PowerDNS API key is read from the environment variable {var}, which is not set")
                })?;
                Arc::new(PowerDnsBackend::new(url, &cfg.server_id, key, cfg.nameservers.clone())?)
            }
            DnsProviderKind::Azure => {
                let sub = cfg.subscription_id.as_deref().ok_or("the dns block sets no subscription_id for Azure")?;
                let rg = cfg.resource_group.as_deref().ok_or("the dns block sets no resource_group for Azure")?;
                Arc::new(AzureBackend::from_environment(cfg.endpoint.as_deref(), sub, rg)?)
            }
        };
        let provider = DnsProvider::new(backend);
        Ok(match cfg.ttl {
            Some(ttl) => provider.with_default_ttl(ttl),
            None => provider,
        })
    }

    pub fn backend(&self) -> &Arc<dyn DnsBackend> {
        &self.backend
    }
}

fn err(obj: &ResourceObject, path: Option<&str>, message: impl Into<String>) -> ProviderError {
    ProviderError {
        address: obj.addr.clone(),
        path: path.map(str::to_string),
        message: message.into(),
        transient: false,
    }
}

/// What one resource is, read from its attributes.
enum Target {
    Zone { name: String },
    RecordSet { zone: String, name: String, rtype: &'static str, ttl: Option<i64>, records: Vec<String> },
}

fn str_attr(obj: &ResourceObject, key: &str) -> Result<String, ProviderError> {
    match obj.attrs.get(key) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.trim_end_matches('.').to_string()),
        Some(other) if other.is_unknown() => Err(err(obj, Some(key), "value not known yet")),
        Some(_) => Err(err(obj, Some(key), format!("{key} must be a non-empty string"))),
        None => Err(err(obj, Some(key), format!("missing {key}"))),
    }
}

/// The `records` attribute: a list of strings. Absent (a delete or a read of an old record) is empty.
fn records_attr(obj: &ResourceObject) -> Result<Vec<String>, ProviderError> {
    match obj.attrs.get("records") {
        None => Ok(Vec::new()),
        Some(Value::List(items)) => items
            .iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::String(s) => Ok(s.clone()),
                other if other.is_unknown() => {
                    Err(err(obj, Some(&format!("records[{i}]")), "value not known yet (known after apply)"))
                }
                _ => Err(err(obj, Some(&format!("records[{i}]")), "records must be strings")),
            })
            .collect(),
        Some(other) if other.is_unknown() => Err(err(obj, Some("records"), "value not known yet (known after apply)")),
        Some(_) => Err(err(obj, Some("records"), "records must be a list of strings")),
    }
}

fn target(obj: &ResourceObject) -> Result<Target, ProviderError> {
    match obj.addr.kind.as_str() {
        "dns_zone" => Ok(Target::Zone { name: str_attr(obj, "name")? }),
        kind @ ("dns_ns_delegation" | "dns_a_record") => {
            let rtype = if kind == "dns_ns_delegation" {
                "NS"
            } else {
                match obj.attrs.get("type").and_then(Value::as_str) {
                    None | Some("A") => "A",
                    Some(other) => {
                        return Err(err(
                            obj,
                            Some("type"),
                            format!("unsupported record type {other:?} (expected \"A\")"),
                        ))
                    }
                }
            };
            let ttl = match obj.attrs.get("ttl") {
                None => None,
                Some(Value::Int(n)) if *n > 0 => Some(*n),
                Some(_) => return Err(err(obj, Some("ttl"), "ttl must be a positive whole number of seconds")),
            };
            let name = match obj.attrs.get("name") {
                Some(Value::String(s)) if s == "@" => "@".to_string(),
                _ => str_attr(obj, "name")?,
            };
            Ok(Target::RecordSet { zone: str_attr(obj, "zone")?, name, rtype, ttl, records: records_attr(obj)? })
        }
        other => Err(err(obj, None, format!("the DNS provider does not handle {other}"))),
    }
}

/// A record's data in comparable form: host names lower-case without the trailing dot.
fn normalize(rtype: &str, records: &[String]) -> BTreeSet<String> {
    records
        .iter()
        .map(|r| if rtype == "NS" { r.trim_end_matches('.').to_ascii_lowercase() } else { r.trim().to_string() })
        .collect()
}

fn strings(items: &[String]) -> Value {
    Value::List(items.iter().map(Value::str).collect())
}

impl DnsProvider {
    fn describe(&self, rtype: &str, zone: &str, name: &str) -> String {
        format!("{rtype} record set {} (zone {zone}) on {}", fqdn(zone, name), self.backend.service())
    }

    fn fail(obj: &ResourceObject, what: String, e: BackendError) -> ProviderError {
        ProviderError { address: obj.addr.clone(), path: None, message: format!("{what}: {e}"), transient: e.transient }
    }

    async fn zone_nameservers(&self, obj: &ResourceObject, zone: &str) -> Result<Option<Vec<String>>, ProviderError> {
        self.backend
            .get_zone(zone)
            .await
            .map_err(|e| Self::fail(obj, format!("read zone {zone} on {}", self.backend.service()), e))
    }

    /// The attributes as they are live: `ttl` and `records` from the service, the rest as given.
    /// Records equal to the given ones as a set keep the given order.
    fn observed_rrset(obj: &ResourceObject, rtype: &str, given: &[String], live: RecordSet) -> Observed {
        let mut attrs = obj.attrs.clone();
        if attrs.contains_key("ttl") {
            attrs.insert("ttl".into(), Value::Int(live.ttl));
        }
        let records = if normalize(rtype, given) == normalize(rtype, &live.records) {
            given.to_vec()
        } else {
            let mut live = live.records;
            live.sort();
            live
        };
        attrs.insert("records".into(), strings(&records));
        Observed { attrs, ..Observed::default() }
    }
}

impl DnsProvider {
    /// What [`Provider::read`] answers for `obj` (whose target is known) given every record set of
    /// its zone (`None`: no such zone).
    fn seen_in(obj: &ResourceObject, sets: Option<&ZoneRecordSets>) -> Option<Observed> {
        let sets = sets?;
        match target(obj).ok()? {
            Target::Zone { name } => {
                let key = (name.trim_end_matches('.').to_ascii_lowercase(), "NS".to_string());
                let ns = sets.get(&key).map(|s| s.records.clone()).unwrap_or_default();
                let outputs = BTreeMap::from([("nameservers".to_string(), strings(&ns))]);
                Some(Observed { attrs: obj.attrs.clone(), outputs, ..Observed::default() })
            }
            Target::RecordSet { zone, name, rtype, records, .. } => {
                let key = (fqdn(&zone, &name).trim_end_matches('.').to_ascii_lowercase(), rtype.to_string());
                let live = sets.get(&key)?.clone();
                Some(Self::observed_rrset(obj, rtype, &records, live))
            }
        }
    }
}

impl Provider for DnsProvider {
    fn handles(&self, kind: &str) -> bool {
        kind.starts_with("dns_")
    }

    fn read<'a>(&'a self, _tenant: &'a TenantRef, obj: &'a ResourceObject) -> ProviderFuture<'a, Option<Observed>> {
        Box::pin(async move {
            match target(obj)? {
                Target::Zone { name } => {
                    let Some(ns) = self.zone_nameservers(obj, &name).await? else { return Ok(None) };
                    let outputs = BTreeMap::from([("nameservers".to_string(), strings(&ns))]);
                    Ok(Some(Observed { attrs: obj.attrs.clone(), outputs, ..Observed::default() }))
                }
                Target::RecordSet { zone, name, rtype, records, .. } => {
                    let live = self
                        .backend
                        .get_rrset(&zone, &name, rtype)
                        .await
                        .map_err(|e| Self::fail(obj, format!("read {}", self.describe(rtype, &zone, &name)), e))?;
                    Ok(live.map(|live| Self::observed_rrset(obj, rtype, &records, live)))
                }
            }
        })
    }

    /// The objects of one zone (a tenant's zone and its records) from one request for the whole
    /// zone, when the backend can and more than one object is in the zone; the others (the
    /// delegation in the shared parent zone) one request each, as [`Provider::read`].
    fn read_many<'a>(&'a self, tenant: &'a TenantRef, objs: &'a [ResourceObject], parallelism: usize) -> ReadMany<'a> {
        Box::pin(async move {
            let zone_of = |o: &ResourceObject| match target(o) {
                Ok(Target::Zone { name }) => Some(name),
                Ok(Target::RecordSet { zone, .. }) => Some(zone),
                Err(_) => None,
            };
            let mut per_zone: BTreeMap<String, usize> = BTreeMap::new();
            for z in objs.iter().filter_map(zone_of) {
                *per_zone.entry(z).or_default() += 1;
            }
            let mut whole = BTreeMap::new();
            for (zone, n) in per_zone {
                if n < 2 {
                    continue;
                }
                let Some(read) = self.backend.get_zone_rrsets(&zone) else { break };
                match read.await {
                    Ok(sets) => {
                        whole.insert(zone, sets);
                    }
                    // The reads one by one answer, with their own errors.
                    Err(e) => tracing::debug!("reading zone {zone} whole failed ({e}); reading one by one"),
                }
            }
            let mut out: Vec<Option<Result<Option<Observed>, ProviderError>>> = Vec::with_capacity(objs.len());
            let mut rest = Vec::new();
            for (i, o) in objs.iter().enumerate() {
                let known = zone_of(o).and_then(|z| whole.get(&z));
                out.push(known.map(|sets| Ok(Self::seen_in(o, sets.as_ref()))));
                if out[i].is_none() {
                    rest.push(o.clone());
                }
            }
            let mut read = super::read_one_by_one(self, tenant, &rest, parallelism).await.into_iter();
            out.into_iter().map(|r| r.unwrap_or_else(|| read.next().expect("one read per object left"))).collect()
        })
    }

    fn apply<'a>(&'a self, _tenant: &'a TenantRef, obj: &'a ResourceObject) -> ProviderFuture<'a, Observed> {
        Box::pin(async move {
            match target(obj)? {
                Target::Zone { name } => {
                    let service = self.backend.service();
                    self.backend
                        .create_zone(&name)
                        .await
                        .map_err(|e| Self::fail(obj, format!("create zone {name} on {service}"), e))?;
                    let ns = self.zone_nameservers(obj, &name).await?.ok_or_else(|| ProviderError {
                        address: obj.addr.clone(),
                        path: None,
                        message: format!("zone {name} was created on {service} but cannot be read back"),
                        transient: true,
                    })?;
                    tracing::info!("{}: zone {name} ready, name servers {}", obj.addr, ns.join(", "));
                    let outputs = BTreeMap::from([("nameservers".to_string(), strings(&ns))]);
                    Ok(Observed { attrs: obj.attrs.clone(), outputs, ..Observed::default() })
                }
                Target::RecordSet { zone, name, rtype, ttl, records } => {
                    if records.is_empty() {
                        return Err(err(obj, Some("records"), "a record set needs at least one record"));
                    }
                    let rrset = RecordSet { ttl: ttl.unwrap_or(self.default_ttl), records: records.clone() };
                    self.backend
                        .replace_rrset(&zone, &name, rtype, &rrset)
                        .await
                        .map_err(|e| Self::fail(obj, format!("write {}", self.describe(rtype, &zone, &name)), e))?;
                    tracing::info!("{}: {} → {}", obj.addr, fqdn(&zone, &name), records.join(", "));
                    let mut attrs = obj.attrs.clone();
                    attrs.insert("records".into(), strings(&records));
                    Ok(Observed { attrs, ..Observed::default() })
                }
            }
        })
    }

    fn delete<'a>(&'a self, _tenant: &'a TenantRef, obj: &'a ResourceObject) -> ProviderFuture<'a, ()> {
        Box::pin(async move {
            let service = self.backend.service();
            match target(obj)? {
                Target::Zone { name } => self
                    .backend
                    .delete_zone(&name)
                    .await
                    .map_err(|e| Self::fail(obj, format!("delete zone {name} on {service}"), e)),
                Target::RecordSet { zone, name, rtype, .. } => self
                    .backend
                    .delete_rrset(&zone, &name, rtype)
                    .await
                    .map_err(|e| Self::fail(obj, format!("delete {}", self.describe(rtype, &zone, &name)), e)),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(kind: &str, attrs: Value) -> ResourceObject {
        ResourceObject::new(format!("{kind}.tenant").parse().unwrap(), attrs.as_map().unwrap().clone())
    }

    #[test]
    fn names_and_targets() {
        assert_eq!(fqdn("acme.matih.ai", "@"), "acme.matih.ai");
        assert_eq!(fqdn("acme.matih.ai", "*"), "*.acme.matih.ai");
        let o = obj(
            "dns_a_record",
            Value::map([
                ("zone", Value::str("acme.matih.ai")),
                ("name", Value::str("@")),
                ("type", Value::str("A")),
                ("ttl", Value::Int(60)),
                ("records", Value::list([Value::str("10.0.0.1")])),
            ]),
        );
        let Target::RecordSet { zone, name, rtype, ttl, records } = target(&o).unwrap() else { panic!() };
        assert_eq!((zone.as_str(), name.as_str(), rtype, ttl), ("acme.matih.ai", "@", "A", Some(60)));
        assert_eq!(records, ["10.0.0.1"]);
        let bad = obj(
            "dns_a_record",
            Value::map([("zone", Value::str("z.ai")), ("name", Value::str("x")), ("type", Value::str("MX"))]),
        );
        let e = target(&bad).err().unwrap();
        assert_eq!(e.path.as_deref(), Some("type"));
    }

    #[test]
    fn live_records_equal_as_a_set_are_not_drift() {
        let given = vec!["ns1.matih.ai.".to_string(), "ns2.matih.ai.".to_string()];
        let o = obj(
            "dns_ns_delegation",
            Value::map([("zone", Value::str("matih.ai")), ("name", Value::str("acme")), ("ttl", Value::Int(3600))]),
        );
        let live = RecordSet { ttl: 3600, records: vec!["NS2.matih.ai".into(), "ns1.matih.ai.".into()] };
        let seen = DnsProvider::observed_rrset(&o, "NS", &given, live);
        assert_eq!(seen.attrs["records"], strings(&given));
        let live = RecordSet { ttl: 60, records: vec!["ns9.evil.example.".into()] };
        let seen = DnsProvider::observed_rrset(&o, "NS", &given, live);
        assert_eq!(seen.attrs["records"], strings(&["ns9.evil.example.".to_string()]));
        assert_eq!(seen.attrs["ttl"], Value::Int(60));
    }
}
