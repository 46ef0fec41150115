//! Tenant specs and the platform file: HCL → [`TenantSpec`] / [`PlatformConfig`] with source
//! locations, then validation against the catalog.
//!
//! **Invariant:** this module knows nothing of graphs, plans, state or providers. It reads the
//! files it is given and returns specs plus diagnostics; it never fails on the first problem.

use std::collections::BTreeMap;

use crate::diag::Location;

mod parse;
mod platform;
mod schema;
mod validate;

#[cfg(test)]
mod tests;

pub use parse::{
    load_tenants, parse_tenants, read_tenant_file, tenant_files, Admission, FileTenants, MAX_REPLICAS, PLATFORM_FILE,
};
pub use platform::{load_platform, parse_platform};
pub use validate::{is_dns_label, namespaces, MAX_SLUG};

/// A value together with where it was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spanned<T> {
    pub value: T,
    pub location: Location,
}

impl<T> Spanned<T> {
    pub fn new(value: T, location: Location) -> Self {
        Spanned { value, location }
    }
}

/// One `tenant "slug" { … }` block, parsed and validated.
///
/// Every string that reaches a Kubernetes, SQL or DNS name (the slug above all) has been checked
/// by validation before a `TenantSpec` is returned without errors.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TenantSpec {
    /// The block label: a DNS-1123 label such that `matih-{slug}` is at most 63 characters.
    pub slug: Spanned<String>,
    /// A UUID, in lower-case hyphenated form.
    pub id: Spanned<String>,
    /// A tier of the catalog (`free`, `professional`, `enterprise`).
    pub tier: Spanned<String>,
    /// A region of the catalog (`eastus`, …).
    pub region: Spanned<String>,
    pub admin_email: Spanned<String>,
    pub display_name: Option<Spanned<String>>,
    /// Per-service overrides of the catalog, keyed by catalog service name (`ai_service`).
    pub services: BTreeMap<String, ServiceOverride>,
    pub monitoring: MonitoringSpec,
    /// `protect_database = true`: `matih destroy`, and any apply that would delete or replace the
    /// tenant's PostgreSQL database or schema, is refused unless `--allow-data-loss` is given.
    pub protect_database: Option<Spanned<bool>>,
    /// `lifecycle { ignore_changes = ["KIND.NAME:PATH", …] }`: differences plan and drift leave
    /// alone for this tenant (the graph checks that each resource and path exists).
    pub ignore_changes: Vec<IgnoreEntry>,
    /// Where the `tenant` block starts.
    pub location: Location,
}

/// One entry of a tenant's `lifecycle { ignore_changes }`, with where it is written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IgnoreEntry {
    pub address: crate::addr::ResourceAddr,
    pub path: crate::addr::AttrPath,
    pub location: Location,
}

impl TenantSpec {
    /// Where `protect_database = true` is written, when it is.
    pub fn database_protection(&self) -> Option<&Location> {
        self.protect_database.as_ref().filter(|p| p.value).map(|p| &p.location)
    }
}

/// `services { ai_service { replicas = 2 } }`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceOverride {
    pub replicas: Option<Spanned<i64>>,
    /// `enabled = false` leaves an optional service out (a service others depend on cannot be disabled).
    pub enabled: Option<Spanned<bool>>,
    pub image_tag: Option<Spanned<String>>,
    /// Extra dependencies on other catalog services, by catalog name.
    pub depends_on: Vec<Spanned<String>>,
    /// Where the override block starts.
    pub location: Option<Location>,
}

/// `monitoring { notify_email = [...]; notify_slack_webhook_env = "ACME_SLACK_WEBHOOK" }`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MonitoringSpec {
    pub notify_email: Vec<Spanned<String>>,
    /// The name of an environment variable holding the Slack webhook URL. The URL itself never
    /// appears in a spec file.
    pub notify_slack_webhook_env: Option<Spanned<String>>,
}

/// The platform file (`matih.hcl`, optional): where things live. Every field has a default so
/// that `matih plan` works with no platform file at all.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlatformConfig {
    /// Parent DNS zone; tenant zones are `{slug}.{parent_zone}`.
    pub parent_zone: String,
    /// PostgreSQL host and port the tenants' services connect to (credentials Secret).
    pub postgres_host: String,
    pub postgres_port: u16,
    /// The name of the environment variable holding matih's own (admin) PostgreSQL connection URL
    /// (`postgresql://USER:PASSWORD@HOST:PORT/DB`). The URL itself never appears in a file.
    pub postgres_admin_url_env: String,
    /// How long matih waits for a PostgreSQL connection.
    pub postgres_connect_timeout_ms: u64,
    /// Recorded in the `matih.ai/provisioned-by` annotation.
    pub provisioned_by: String,
    /// Container registry for the MATIH services, e.g. `matih.azurecr.io`.
    pub image_registry: String,
    /// The default image tag of the MATIH services.
    pub image_tag: String,
    /// `images { digests = ["REPOSITORY@sha256:HEX", …] }`: repository → `sha256:HEX`. An image of a
    /// pinned repository is rendered by digest (`REPOSITORY@sha256:HEX`), whatever its tag.
    pub image_digests: std::collections::BTreeMap<String, String>,
    /// cert-manager ClusterIssuer for tenant certificates.
    pub cluster_issuer: String,
    /// The namespace of the control plane (egress allowed to it).
    pub control_plane_namespace: String,
    /// `network { database_cidrs }`: the PostgreSQL server's addresses, the only ones tenant pods
    /// may reach on its port (empty: derived from `postgres_host`).
    pub database_cidrs: Vec<String>,
    /// `network { api_server_cidrs }`: the Kubernetes API server's endpoints, the only addresses the
    /// tenant's API watchers may reach (empty: derived from `kubernetes { api_url }`).
    pub api_server_cidrs: Vec<String>,
    /// The Kubernetes cluster, when the platform file has a `kubernetes` block.
    pub kubernetes: Option<KubernetesPlatform>,
    /// The DNS service, when the `dns` block names a `provider`.
    pub dns: Option<DnsPlatform>,
    /// Provisioning notifications and events (`notifications` and `events` blocks).
    pub notify: NotifyPlatform,
    /// Where matih keeps tenant state (`state { … }`).
    pub state: StatePlatform,
    /// How the MATIH services are shipped (`services { delivery = … }`).
    pub delivery: Delivery,
    /// Where matih finds `helm` and the charts (`helm { … }`), for `delivery = "helm"`.
    pub helm: HelmPlatform,
    /// How each tenant's OpenTelemetry collector reaches Tempo (`observability { … }`).
    pub observability: ObservabilityPlatform,
    /// Where the platform file was read from, when there was one.
    pub source: Option<Location>,
}

/// `observability { … }` in the platform file: the TLS of the tenant collectors' export to Tempo,
/// which carries each tenant's ingest credentials.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObservabilityPlatform {
    /// `otlp_ca_file`: the PEM certificates (read when the platform file is loaded) of the CA that
    /// signs the gateway in front of Tempo. `None`: the collector image's system roots.
    pub otlp_ca: Option<String>,
    /// `otlp_insecure = true`: no TLS on that hop (the credentials cross the pod network in clear
    /// text; warned about each time the platform file is loaded).
    pub otlp_insecure: bool,
}

/// `notifications { … }` and `events { … }` in the platform file: where completion and failure of a
/// tenant's provisioning are announced. Secrets (SMTP password, webhook URL) are named by the
/// environment variable that holds them, never written in the file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NotifyPlatform {
    pub smtp: Option<SmtpPlatform>,
    /// The variable holding a Slack-compatible incoming-webhook URL.
    pub webhook_url_env: Option<String>,
    pub kafka: Option<KafkaPlatform>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SmtpPlatform {
    pub host: String,
    pub port: u16,
    /// `none`, `starttls` or `tls`.
    pub tls: String,
    pub from: String,
    pub username_env: Option<String>,
    pub password_env: Option<String>,
}

impl Default for SmtpPlatform {
    fn default() -> Self {
        SmtpPlatform {
            host: String::new(),
            port: 587,
            tls: "starttls".into(),
            from: "matih@matih.ai".into(),
            username_env: None,
            password_env: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KafkaPlatform {
    /// `host:port` of the bootstrap brokers.
    pub brokers: Vec<String>,
    pub topic: String,
}

impl Default for KafkaPlatform {
    fn default() -> Self {
        KafkaPlatform { brokers: Vec::new(), topic: "tenant-events".into() }
    }
}

/// How the MATIH services reach the cluster (`services { delivery = … }` in the platform file).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Delivery {
    /// matih renders each service's Deployment and Service and server-side applies them.
    #[default]
    Manifests,
    /// Each service is a Helm release (`helm_release`) of the catalog's chart, installed by `helm`.
    Helm,
}

impl Delivery {
    pub const NAMES: &'static [&'static str] = &["manifests", "helm"];
}

/// `helm { … }` in the platform file: the `helm` binary and where the catalog's charts live.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HelmPlatform {
    /// The `helm` binary; `None`: `helm` on the PATH.
    pub binary: Option<String>,
    /// A directory holding the charts (`DIR/CHART`), an HTTP(S) chart repository (its
    /// `index.yaml`) or an OCI registry namespace (`oci://HOST/PATH`, the chart `oci://HOST/PATH/CHART`).
    pub chart_repository: String,
    /// How long `helm upgrade --install --wait` may take per release.
    pub timeout_ms: u64,
    /// An OCI registry reached over plain HTTP (`registry_transport = "http"`: helm's `--plain-http`).
    pub plain_http: bool,
}

impl Default for HelmPlatform {
    fn default() -> Self {
        HelmPlatform { binary: None, chart_repository: "charts".into(), timeout_ms: 600_000, plain_http: false }
    }
}

/// `kubernetes { … }` in the platform file: which cluster, and the readiness gates' patience.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KubernetesPlatform {
    /// A kubeconfig context (default: the current context).
    pub context: Option<String>,
    /// An explicit API server URL instead of the kubeconfig (the local test server).
    pub api_url: Option<String>,
    /// The guide's LoadBalancer IP wait: 60 attempts, 10 s apart.
    pub load_balancer_ip_attempts: u32,
    pub load_balancer_ip_interval_ms: u64,
    pub deployment_timeout_ms: u64,
    pub certificate_timeout_ms: u64,
    pub poll_interval_ms: u64,
}

impl Default for KubernetesPlatform {
    fn default() -> Self {
        KubernetesPlatform {
            context: None,
            api_url: None,
            load_balancer_ip_attempts: 60,
            load_balancer_ip_interval_ms: 10_000,
            deployment_timeout_ms: 600_000,
            certificate_timeout_ms: 600_000,
            poll_interval_ms: 2_000,
        }
    }
}

/// Which DNS service holds the zones.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DnsProviderKind {
    /// PowerDNS Authoritative through its HTTP API.
    #[default]
    PowerDns,
    /// Azure DNS through the Azure Resource Manager API.
    Azure,
}

impl DnsProviderKind {
    pub const NAMES: &'static [&'static str] = &["powerdns", "azure"];

    pub fn name(self) -> &'static str {
        match self {
            DnsProviderKind::PowerDns => "powerdns",
            DnsProviderKind::Azure => "azure",
        }
    }
}

/// `dns { provider = … }` in the platform file: the DNS service and how to reach it. Credentials are
/// never here: the PowerDNS API key is read from the variable `api_key_env` names, Azure credentials
/// from the environment the way Azure tools find them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsPlatform {
    pub provider: DnsProviderKind,
    /// PowerDNS: the API base URL (`http://127.0.0.1:8081`), without `/api/v1`.
    pub api_url: Option<String>,
    /// PowerDNS: the NAME of the environment variable holding the API key.
    pub api_key_env: Option<String>,
    /// PowerDNS: the server id in API paths (`localhost`).
    pub server_id: String,
    /// PowerDNS: the NS set of new zones, fully qualified with a trailing dot (`ns1.matih.ai.`).
    pub nameservers: Vec<String>,
    /// Azure: the subscription (a UUID) and resource group that hold the zones.
    pub subscription_id: Option<String>,
    pub resource_group: Option<String>,
    /// Azure: the Resource Manager endpoint (`https://management.azure.com`).
    pub endpoint: Option<String>,
    /// A TTL in seconds for records whose resource does not say one.
    pub ttl: Option<i64>,
}

impl Default for DnsPlatform {
    fn default() -> Self {
        DnsPlatform {
            provider: DnsProviderKind::default(),
            api_url: None,
            api_key_env: None,
            server_id: "localhost".into(),
            nameservers: Vec::new(),
            subscription_id: None,
            resource_group: None,
            endpoint: None,
            ttl: None,
        }
    }
}

impl Default for PlatformConfig {
    fn default() -> Self {
        PlatformConfig {
            parent_zone: "matih.ai".into(),
            postgres_host: "postgres.matih-system.svc.cluster.local".into(),
            postgres_port: 5432,
            postgres_admin_url_env: "MATIH_POSTGRES_ADMIN_URL".into(),
            postgres_connect_timeout_ms: 10_000,
            provisioned_by: "admin@matih.ai".into(),
            image_registry: "matih.azurecr.io".into(),
            image_tag: "latest".into(),
            image_digests: std::collections::BTreeMap::new(),
            cluster_issuer: "letsencrypt-prod-dns01".into(),
            control_plane_namespace: "matih-system".into(),
            database_cidrs: Vec::new(),
            api_server_cidrs: Vec::new(),
            kubernetes: None,
            dns: None,
            notify: NotifyPlatform::default(),
            state: StatePlatform::default(),
            delivery: Delivery::Manifests,
            helm: HelmPlatform::default(),
            observability: ObservabilityPlatform::default(),
            source: None,
        }
    }
}

/// Which state backend holds tenant state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum StateBackend {
    /// A sled database in a local directory (the default).
    #[default]
    Sled,
    /// Tables in a PostgreSQL database shared by a team's runners.
    Postgres,
}

impl StateBackend {
    pub const NAMES: &'static [&'static str] = &["sled", "postgres"];

    pub fn name(self) -> &'static str {
        match self {
            StateBackend::Sled => "sled",
            StateBackend::Postgres => "postgres",
        }
    }

    pub fn parse(s: &str) -> Option<StateBackend> {
        match s {
            "sled" => Some(StateBackend::Sled),
            "postgres" => Some(StateBackend::Postgres),
            _ => None,
        }
    }
}

/// `state { backend = "sled" | "postgres", path = "state/", url_env = "MATIH_STATE_URL" }`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatePlatform {
    pub backend: StateBackend,
    /// The sled directory, when the platform file names one (else `--state`, default `state`).
    pub path: Option<String>,
    /// The NAME of the environment variable holding the PostgreSQL connection URL of the postgres
    /// backend. The URL itself never appears in a file.
    pub url_env: String,
}

impl Default for StatePlatform {
    fn default() -> Self {
        StatePlatform { backend: StateBackend::Sled, path: None, url_env: "MATIH_STATE_URL".into() }
    }
}
