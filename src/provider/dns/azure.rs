//! Azure DNS through the Resource Manager API (`azure_mgmt_dns`, API version 2018-05-01).
//!
//! Zones are `…/providers/Microsoft.Network/dnsZones/{zone}` (PUT with `location: global`,
//! `zoneType: Public`; the name servers Azure assigns are `properties.nameServers`), record sets
//! `…/dnsZones/{zone}/{A|NS}/{name}` (PUT with `properties.TTL` and `ARecords[].ipv4Address` or
//! `NSRecords[].nsdname`). A 404 (`ResourceNotFound`, `ParentResourceNotFound`) on a read means
//! gone. Zone deletion is a long-running operation: a 202 is followed by polling the zone until it
//! is gone.
//!
//! Record sets are written with optimistic concurrency: a replace reads the set's `etag` first and
//! sends `If-Match: <etag>` (or `If-None-Match: *` when the set does not exist yet), so a change
//! made by someone else in between is never overwritten blindly: Azure answers 412, which is
//! transient here (the engine retries, reading the new etag).
//!
//! The SDK's own retries are switched off: the engine retries transient errors with backoff.
//! Credentials live in the `TokenCredential`; the bearer token is only ever in the request header.

use std::sync::Arc;
use std::time::{Duration, Instant};

use azure_core::auth::TokenCredential;
use azure_core::error::ErrorKind;
use azure_core::{RetryOptions, StatusCode, TransportOptions, Url};
use azure_mgmt_dns::package_2018_05::models::{
    zone_properties::ZoneType, ARecord, NsRecord, RecordSet as AzRecordSet, RecordSetProperties, Resource, Zone,
    ZoneProperties,
};
use azure_mgmt_dns::package_2018_05::Client;

use super::{BackendError, BackendFuture, DnsBackend, RecordSet};

/// The public cloud's Resource Manager endpoint.
pub const DEFAULT_ENDPOINT: &str = "https://management.azure.com";

pub struct AzureBackend {
    client: Client,
    endpoint: String,
    subscription_id: String,
    resource_group: String,
    /// How long a zone deletion (202 Accepted) is waited for, and how often it is polled.
    delete_timeout: Duration,
    poll_interval: Duration,
}

impl std::fmt::Debug for AzureBackend {
    /// Where the zones are; never the credential.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AzureBackend")
            .field("endpoint", &self.endpoint)
            .field("subscription_id", &self.subscription_id)
            .field("resource_group", &self.resource_group)
            .finish_non_exhaustive()
    }
}

impl AzureBackend {
    /// A backend authenticated the way Azure tools do: `AZURE_CLIENT_ID` / `AZURE_TENANT_ID` /
    /// `AZURE_CLIENT_SECRET` (or a workload identity's federated token), then managed identity,
    /// then the Azure CLI's login.
    pub fn from_environment(
        endpoint: Option<&str>,
        subscription_id: &str,
        resource_group: &str,
    ) -> Result<Self, String> {
        let credential = azure_identity::create_default_credential()
            .map_err(|e| format!("no Azure credentials found (set AZURE_CLIENT_ID, AZURE_TENANT_ID and AZURE_CLIENT_SECRET, use a workload or managed identity, or run az login): {}", e.kind()))?;
        Self::with_credential(endpoint, subscription_id, resource_group, credential)
    }

    /// A backend with an explicit credential (tests use one that returns a fixed token).
    pub fn with_credential(
        endpoint: Option<&str>,
        subscription_id: &str,
        resource_group: &str,
        credential: Arc<dyn TokenCredential>,
    ) -> Result<Self, String> {
        let endpoint = endpoint.unwrap_or(DEFAULT_ENDPOINT).trim_end_matches('/').to_string();
        let url = Url::parse(&endpoint).map_err(|e| format!("invalid Azure endpoint {endpoint:?}: {e}"))?;
        // The client carries a credential: it never follows a redirect.
        let http = crate::transport::http_client(Duration::from_secs(10), Duration::from_secs(60))
            .map_err(|e| format!("cannot create an HTTP client for Azure: {e}"))?;
        let client = Client::builder(credential)
            .endpoint(url)
            .retry(RetryOptions::none())
            .transport(TransportOptions::new(Arc::new(http)))
            .build()
            .map_err(|e| format!("cannot create the Azure DNS client: {e}"))?;
        Ok(AzureBackend {
            client,
            endpoint,
            subscription_id: subscription_id.to_string(),
            resource_group: resource_group.to_string(),
            delete_timeout: Duration::from_secs(300),
            poll_interval: Duration::from_secs(2),
        })
    }

    /// How long and how often a zone deletion answered with 202 Accepted is polled.
    pub fn with_delete_polling(mut self, timeout: Duration, interval: Duration) -> Self {
        self.delete_timeout = timeout;
        self.poll_interval = interval;
        self
    }
}

/// An SDK error as a backend error: the HTTP status, Azure's error code and message; 429, 5xx
/// and I/O failures are transient.
fn az_error(e: azure_core::Error) -> BackendError {
    if let Some(http) = e.as_http_error() {
        let status = u16::from(http.status());
        let code = http.error_code().unwrap_or("");
        let message = http.error_message().unwrap_or("");
        return BackendError::http(
            status,
            format!("HTTP {status} {code}: {message}").trim_end_matches([' ', ':']).to_string(),
        );
    }
    match e.kind() {
        ErrorKind::HttpResponse { status, error_code } => {
            let status = u16::from(*status);
            BackendError::http(
                status,
                format!("HTTP {status} {}", error_code.as_deref().unwrap_or("")).trim_end().to_string(),
            )
        }
        ErrorKind::Io => BackendError::unreachable(format!("cannot reach Azure Resource Manager: {}", chain(&e))),
        ErrorKind::Credential => BackendError::permanent(format!("cannot get an Azure access token: {}", chain(&e))),
        _ => BackendError::permanent(format!("Azure DNS: {}", chain(&e))),
    }
}

/// An error and its sources, one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !message.contains(&s_text) {
            message.push_str(&format!(": {s_text}"));
        }
        source = s.source();
    }
    message.replace('\n', " ")
}

fn is_not_found(e: &azure_core::Error) -> bool {
    matches!(e.kind(), ErrorKind::HttpResponse { status: StatusCode::NotFound, .. })
}

impl DnsBackend for AzureBackend {
    fn service(&self) -> &'static str {
        "Azure DNS"
    }

    fn create_zone<'a>(&'a self, zone: &'a str) -> BackendFuture<'a, ()> {
        Box::pin(async move {
            let mut body = Zone::new(Resource::new("global".into()));
            body.properties = Some(ZoneProperties { zone_type: Some(ZoneType::Public), ..ZoneProperties::default() });
            self.client
                .zones_client()
                .create_or_update(&self.resource_group, zone, body, &self.subscription_id)
                .send()
                .await
                .map_err(az_error)?;
            Ok(())
        })
    }

    fn get_zone<'a>(&'a self, zone: &'a str) -> BackendFuture<'a, Option<Vec<String>>> {
        Box::pin(async move {
            match self.client.zones_client().get(&self.resource_group, zone, &self.subscription_id).await {
                Ok(z) => Ok(Some(z.properties.map(|p| p.name_servers).unwrap_or_default())),
                Err(e) if is_not_found(&e) => Ok(None),
                Err(e) => Err(az_error(e)),
            }
        })
    }

    fn delete_zone<'a>(&'a self, zone: &'a str) -> BackendFuture<'a, ()> {
        Box::pin(async move {
            let rsp =
                match self.client.zones_client().delete(&self.resource_group, zone, &self.subscription_id).send().await
                {
                    Ok(rsp) => rsp.into_raw_response(),
                    Err(e) if is_not_found(&e) => return Ok(()),
                    Err(e) => return Err(az_error(e)),
                };
            if rsp.status() != StatusCode::Accepted {
                return Ok(());
            }
            // A long-running deletion: wait until the zone is gone.
            let deadline = Instant::now() + self.delete_timeout;
            while self.get_zone(zone).await?.is_some() {
                if Instant::now() >= deadline {
                    return Err(BackendError::permanent(format!(
                        "the deletion was accepted but the zone still exists after {}s",
                        self.delete_timeout.as_secs()
                    )));
                }
                tokio::time::sleep(self.poll_interval).await;
            }
            Ok(())
        })
    }

    fn get_rrset<'a>(&'a self, zone: &'a str, name: &'a str, rtype: &'a str) -> BackendFuture<'a, Option<RecordSet>> {
        Box::pin(async move {
            let rs = match self
                .client
                .record_sets_client()
                .get(&self.resource_group, zone, name, rtype, &self.subscription_id)
                .await
            {
                Ok(rs) => rs,
                Err(e) if is_not_found(&e) => return Ok(None),
                Err(e) => return Err(az_error(e)),
            };
            let Some(p) = rs.properties else { return Ok(None) };
            let records: Vec<String> = match rtype {
                "NS" => p.ns_records.into_iter().filter_map(|r| r.nsdname).collect(),
                _ => p.a_records.into_iter().filter_map(|r| r.ipv4_address).collect(),
            };
            if records.is_empty() {
                return Ok(None);
            }
            Ok(Some(RecordSet { ttl: p.ttl.unwrap_or(0), records }))
        })
    }

    fn replace_rrset<'a>(
        &'a self,
        zone: &'a str,
        name: &'a str,
        rtype: &'a str,
        rrset: &'a RecordSet,
    ) -> BackendFuture<'a, ()> {
        Box::pin(async move {
            let mut props = RecordSetProperties { ttl: Some(rrset.ttl), ..RecordSetProperties::default() };
            match rtype {
                "NS" => {
                    props.ns_records = rrset.records.iter().map(|r| NsRecord { nsdname: Some(r.clone()) }).collect();
                }
                _ => {
                    props.a_records = rrset.records.iter().map(|r| ARecord { ipv4_address: Some(r.clone()) }).collect();
                }
            }
            let body = AzRecordSet { properties: Some(props), ..AzRecordSet::default() };
            let etag = match self
                .client
                .record_sets_client()
                .get(&self.resource_group, zone, name, rtype, &self.subscription_id)
                .await
            {
                Ok(current) => current.etag,
                Err(e) if is_not_found(&e) => None,
                Err(e) => return Err(az_error(e)),
            };
            let put = self.client.record_sets_client().create_or_update(
                &self.resource_group,
                zone,
                name,
                rtype,
                body,
                &self.subscription_id,
            );
            let put = match etag {
                Some(etag) => put.if_match(etag),
                None => put.if_none_match("*"),
            };
            match put.send().await {
                Ok(_) => Ok(()),
                Err(e) if e.as_http_error().is_some_and(|h| u16::from(h.status()) == 412) => Err(BackendError {
                    status: Some(412),
                    message: format!(
                        "record set {rtype} {name} in zone {zone} was changed by someone else while matih wrote it \
                         (HTTP 412 PreconditionFailed); it is read again and retried"
                    ),
                    transient: true,
                }),
                Err(e) => Err(az_error(e)),
            }
        })
    }

    fn delete_rrset<'a>(&'a self, zone: &'a str, name: &'a str, rtype: &'a str) -> BackendFuture<'a, ()> {
        Box::pin(async move {
            match self
                .client
                .record_sets_client()
                .delete(&self.resource_group, zone, name, rtype, &self.subscription_id)
                .send()
                .await
            {
                Ok(_) => Ok(()),
                Err(e) if is_not_found(&e) => Ok(()),
                Err(e) => Err(az_error(e)),
            }
        })
    }
}
