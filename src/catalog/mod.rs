//! The catalog: tiers, regions, services, alert rules, network policies, DNS records and
//! migrations, loaded from `schemas/` (embedded in the binary; `--schemas DIR` reads another copy).
//!
//! Every `.hcl` file of the directory is read and its top-level blocks are dispatched by type
//! (`tier`, `service`, `alert`, …), so the split into files is for people only. SQL migrations live in
//! `migrations/` (Flyway names), reference data in `seed/`, Grafana dashboards in `dashboards/`.
//! Errors in any of them are [`Diagnostic`]s located at `path:line:col`.
//!
//! **Invariant:** pure data. Knows nothing of specs, graphs, state or providers; it never sees a
//! tenant. Per-tenant values appear in the data only as `{placeholder}`s, which [`template`] fills in.

mod embedded;
pub mod flyway;
pub mod flyway_validate;
mod load;
mod reader;
pub mod template;

use std::collections::BTreeMap;
use std::path::Path;

use crate::addr::{AttrPath, ResourceAddr};
use crate::diag::{Diagnostic, Location};
use crate::phase::Phase;
use crate::value::Value;

pub use flyway::{flyway_checksum, Migration, MigrationKind};
pub(crate) use load::shortest_cycle;

/// How a tier isolates a tenant's data (the guide's "Database Isolation Strategy").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DatabaseIsolation {
    /// A schema per tenant in the shared database (free, professional).
    #[default]
    Schema,
    /// A database per tenant (enterprise).
    Database,
}

impl DatabaseIsolation {
    pub fn as_str(self) -> &'static str {
        match self {
            DatabaseIsolation::Schema => "schema",
            DatabaseIsolation::Database => "database",
        }
    }
}

/// A tier of service: quotas and database isolation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TierDef {
    pub name: String,
    /// The `spec.hard` of the tenant's ResourceQuota (`requests.cpu` → `"2"`, …); `None` for an
    /// unlimited tier, which gets no ResourceQuota object at all.
    pub quota: Option<BTreeMap<String, String>>,
    pub database_isolation: DatabaseIsolation,
    /// The PostgreSQL `CONNECTION LIMIT` of the tenant's role.
    pub connection_limit: i64,
    /// `shared` or `dedicated` connection pool (for people; the limit above is what is enforced).
    pub pool: String,
    /// The size of a dedicated connection pool, when the tier has one.
    pub pool_size: Option<i64>,
    /// Tempo block retention of the tenant's traces (`72h`).
    pub trace_retention: String,
    /// Container resources that replace every service's own in this tier (so that a tier's
    /// services fit its quota).
    pub service_resources: Option<ComputeResources>,
    /// PostgreSQL settings of the tenant's role (`ALTER ROLE … SET`): `statement_timeout` (`30s`)
    /// and `temp_file_limit` (`1GB`), in PostgreSQL's own units.
    pub role_settings: BTreeMap<String, String>,
    pub location: Option<Location>,
}

/// The role settings a tier may set, with the units PostgreSQL accepts for each.
pub const ROLE_SETTINGS: &[(&str, &[&str])] =
    &[("statement_timeout", &["ms", "s", "min", "h", "d"]), ("temp_file_limit", &["kB", "MB", "GB", "TB"])];

/// A dependency named in the catalog, with where it is written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dependency {
    pub service: String,
    pub location: Option<Location>,
}

/// CPU and memory requests and limits of a container, as Kubernetes quantities.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ComputeResources {
    pub requests_cpu: String,
    pub requests_memory: String,
    pub limits_cpu: String,
    pub limits_memory: String,
}

impl ComputeResources {
    /// The container `resources` object.
    pub fn to_value(&self) -> Value {
        Value::map([
            (
                "limits",
                Value::map([("cpu", Value::str(&self.limits_cpu)), ("memory", Value::str(&self.limits_memory))]),
            ),
            (
                "requests",
                Value::map([("cpu", Value::str(&self.requests_cpu)), ("memory", Value::str(&self.requests_memory))]),
            ),
        ])
    }
}

/// One MATIH service of the catalog.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceDef {
    /// Catalog name, `snake_case` (`ai_service`); the Kubernetes name is derived from it.
    pub name: String,
    /// Phase 3 (core) or 5 (data).
    pub phase: Phase,
    /// The guide's Helm chart (`matih/ai-service`), for people.
    pub chart: String,
    /// The chart installed for the service with `delivery = "helm"` (a chart of the platform's
    /// chart repository, `matih-service`) and its version.
    pub helm_chart: String,
    pub chart_version: String,
    pub description: String,
    /// Container image template: `{registry}/{name}:{tag}`.
    pub image: String,
    /// Container and Service port.
    pub port: i64,
    pub replicas: i64,
    pub resources: ComputeResources,
    /// HTTP path of the readiness probe.
    pub health_path: String,
    /// Catalog services this one waits for (the guide's deployment order).
    pub depends_on: Vec<Dependency>,
    /// A connector service, allowed to reach the internet.
    pub internet_egress: bool,
    pub location: Option<Location>,
}

impl Default for ServiceDef {
    fn default() -> Self {
        ServiceDef {
            name: String::new(),
            phase: Phase::DeployCoreServices,
            chart: String::new(),
            helm_chart: "matih-service".into(),
            chart_version: "0.1.0".into(),
            description: String::new(),
            image: "{registry}/{name}:{tag}".into(),
            port: 8080,
            replicas: 1,
            resources: ComputeResources::default(),
            health_path: "/health".into(),
            depends_on: Vec::new(),
            internet_egress: false,
            location: None,
        }
    }
}

impl ServiceDef {
    /// The Kubernetes name: the catalog name with '-' for '_' (`ai-service`).
    pub fn k8s_name(&self) -> String {
        kebab(&self.name)
    }
}

/// A Service with the guide's Ingress backend name that selects the pods of a catalog service
/// (`api_gateway` → `query_engine`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrontendDef {
    pub name: String,
    pub phase: Phase,
    pub port: i64,
    pub target: Dependency,
    pub description: String,
    pub location: Option<Location>,
}

impl FrontendDef {
    pub fn k8s_name(&self) -> String {
        kebab(&self.name)
    }
}

/// One default alert rule; `expr` contains `{namespace}`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AlertRule {
    /// The Prometheus alert name (`TenantHighCPU`).
    pub name: String,
    /// The guide's name of the alert (`High CPU`).
    pub summary: String,
    pub severity: String,
    /// How long the condition must hold (`5m`); `None` fires on the first evaluation.
    pub for_: Option<String>,
    pub expr: String,
    pub description: String,
    pub location: Option<Location>,
}

/// One NetworkPolicy of the tenant namespace, or with `namespace = "edge"` of the edge namespace
/// (the ingress controller's, created in phase 6); `spec` is a template (see [`template`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetworkPolicyDef {
    pub name: String,
    pub spec: Value,
    /// A template list variable that must be non-empty for the policy to exist.
    pub only_if: Option<String>,
    /// In the edge namespace (phase 6) rather than the tenant's (phase 4).
    pub edge: bool,
    pub location: Option<Location>,
}

/// One record set of the tenant's child zone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsRecordDef {
    /// The matih resource name (`apex`).
    pub resource: String,
    /// The name inside the zone (`@`).
    pub name: String,
    pub record_type: String,
    pub ttl: i64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DnsDef {
    pub ns_delegation_ttl: i64,
    pub records: Vec<DnsRecordDef>,
}

/// One file of reference data: rows for one table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeedFile {
    /// File name (`system_roles.json`).
    pub name: String,
    pub table: String,
    /// Columns identifying a row (upserts use them).
    pub key: Vec<String>,
    /// Rows as maps of column → value.
    pub rows: Value,
    /// `sha256:<hex>` of the file's content.
    pub sha256: String,
}

/// A Grafana dashboard (JSON text with placeholders).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DashboardDef {
    /// File name, used as the ConfigMap key (`tenant-overview.json`).
    pub name: String,
    pub json: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DatabaseDef {
    pub shared_database: String,
    pub history_table: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IngressControllerDef {
    pub image: String,
    pub replicas: i64,
    pub resources: ComputeResources,
    pub health_path: String,
    /// The chart installed for the controller with `delivery = "helm"` (the platform's chart
    /// repository, like the services' charts) and its version.
    pub helm_chart: String,
    pub chart_version: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MonitoringDef {
    pub prometheus_version: String,
    pub retention: String,
    pub scrape_interval: String,
    pub alertmanager_service: String,
    pub alertmanager_port: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObservabilityDef {
    pub namespace: String,
    pub loki_url: String,
    pub tempo_url: String,
    pub tempo_otlp_endpoint: String,
    pub otel_collector_image: String,
    pub check_image: String,
}

/// `ignore_changes "KIND" { paths = [...] }` (or `"KIND.NAME"`): attribute paths of a resource
/// kind (or of one resource) whose differences plan and drift leave alone and list as ignored
/// (a field another controller owns, say).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IgnoreDef {
    /// A resource kind (`kubernetes_deployment`) or one resource's address.
    pub target: String,
    /// Each path with where it is written.
    pub paths: Vec<(AttrPath, Location)>,
}

impl IgnoreDef {
    /// Whether the rule covers the resource at `addr`.
    pub fn covers(&self, addr: &ResourceAddr) -> bool {
        self.target == addr.kind || self.target.split_once('.').is_some_and(|(k, n)| k == addr.kind && n == addr.name)
    }
}

/// `moved { from = "KIND.OLD"  to = "KIND.NEW" }`: a resource of the catalog renamed, so that a
/// tenant whose record has the old address moves it to the new one instead of destroying and
/// creating it (Terraform's `moved` blocks).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MovedDef {
    pub from: ResourceAddr,
    pub to: ResourceAddr,
    /// Where the block is written.
    pub location: Location,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Catalog {
    pub tiers: BTreeMap<String, TierDef>,
    pub regions: Vec<String>,
    /// In the catalog's order (phase, then the guide's dependency order).
    pub services: Vec<ServiceDef>,
    pub frontends: Vec<FrontendDef>,
    pub alerts: Vec<AlertRule>,
    pub network_policies: Vec<NetworkPolicyDef>,
    pub dns: DnsDef,
    /// Versioned migrations by version, then repeatable ones by description (Flyway's order).
    pub migrations: Vec<Migration>,
    /// By file name.
    pub seed: Vec<SeedFile>,
    /// By file name.
    pub dashboards: Vec<DashboardDef>,
    pub database: DatabaseDef,
    pub ingress_controller: IngressControllerDef,
    pub monitoring: MonitoringDef,
    pub observability: ObservabilityDef,
    /// `ignore_changes` blocks, in file order.
    pub ignore_changes: Vec<IgnoreDef>,
    /// `moved` blocks, in file order (checked: no chains, no kind change, no address twice).
    pub moved: Vec<MovedDef>,
}

impl Catalog {
    pub fn tier(&self, name: &str) -> Option<&TierDef> {
        self.tiers.get(name)
    }

    pub fn service(&self, name: &str) -> Option<&ServiceDef> {
        self.services.iter().find(|s| s.name == name)
    }

    pub fn frontend(&self, name: &str) -> Option<&FrontendDef> {
        self.frontends.iter().find(|f| f.name == name)
    }

    /// The `schemas/` directory compiled into the binary, so that `matih` works from any directory.
    pub fn embedded() -> Result<Catalog, Vec<Diagnostic>> {
        let files = embedded::FILES.iter().map(|(rel, text)| load::CatalogFile {
            path: Path::new("schemas").join(rel),
            rel: rel.to_string(),
            text: text.to_string(),
        });
        load::from_files(files.collect())
    }

    /// Another copy of `schemas/` (the `--schemas DIR` flag). Paths in diagnostics start with `dir`.
    pub fn load_dir(dir: &Path) -> Result<Catalog, Vec<Diagnostic>> {
        let mut files = Vec::new();
        let mut diags = Vec::new();
        load::read_tree(dir, dir, &mut files, &mut diags);
        if !diags.is_empty() {
            return Err(diags);
        }
        load::from_files(files)
    }
}

impl Catalog {
    /// A catalog with just these tier, region and service names and every other field at its
    /// default: for tests of code that only needs names (spec validation).
    pub fn minimal(tiers: &[&str], regions: &[&str], services: &[&str]) -> Catalog {
        let mut c = Catalog::default();
        for t in tiers {
            c.tiers.insert(t.to_string(), TierDef { name: t.to_string(), ..TierDef::default() });
        }
        c.regions = regions.iter().map(|r| r.to_string()).collect();
        c.services = services.iter().map(|s| ServiceDef { name: s.to_string(), ..ServiceDef::default() }).collect();
        c
    }
}

/// `snake_case` → `kebab-case`.
pub fn kebab(name: &str) -> String {
    name.replace('_', "-")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn embedded() -> Catalog {
        match Catalog::embedded() {
            Ok(c) => c,
            Err(diags) => {
                panic!("embedded catalog: {}", diags.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("\n"))
            }
        }
    }

    /// A copy of `schemas/` in a temporary directory, with `edit` applied to one file.
    fn load_edited(
        file: &str,
        edit: impl Fn(String) -> String,
    ) -> (tempfile::TempDir, Result<Catalog, Vec<Diagnostic>>) {
        let dir = tempfile::tempdir().unwrap();
        for (rel, text) in embedded::FILES {
            let path = dir.path().join(rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            let text = if *rel == file { edit(text.to_string()) } else { text.to_string() };
            std::fs::write(path, text).unwrap();
        }
        let result = Catalog::load_dir(dir.path());
        (dir, result)
    }

    fn errors(result: Result<Catalog, Vec<Diagnostic>>, dir: &Path) -> Vec<String> {
        let prefix = format!("{}/", dir.display());
        result.expect_err("the edited catalog is rejected").iter().map(|d| d.to_string().replace(&prefix, "")).collect()
    }

    #[test]
    fn embedded_catalog_loads_without_diagnostics() {
        let c = embedded();
        assert_eq!(c.tiers.keys().collect::<Vec<_>>(), ["enterprise", "free", "professional"]);
        assert_eq!(c.regions, ["eastus", "eastus2", "westus2", "westeurope", "northeurope", "southeastasia"]);
        assert_eq!(c.services.len(), 9);
        assert_eq!(c.alerts.len(), 6);
        assert_eq!(c.dns.records.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(), ["@", "*", "api", "bi"]);
        assert!(c.dns.records.iter().all(|r| r.ttl == 300 && r.record_type == "A"));
        let scripts: Vec<&str> = c.migrations.iter().map(|m| m.script.as_str()).collect();
        assert_eq!(scripts, ["V1__init.sql", "V2__reference_tables.sql", "R__views.sql"]);
        assert_eq!(
            c.seed.iter().map(|s| s.table.as_str()).collect::<Vec<_>>(),
            ["configuration", "dashboard_templates", "system_roles"]
        );
        assert!(c.migrations.iter().all(|m| m.checksum == flyway_checksum(&m.sql)));
        for m in &c.migrations {
            assert!(!m.sql.contains("tenant_"), "{} must not qualify names with a schema", m.script);
        }
    }

    #[test]
    fn quotas_are_exactly_the_seeds() {
        let c = embedded();
        let q = |t: &str| c.tier(t).unwrap().quota.clone().map(|q| q.into_iter().collect::<Vec<_>>());
        let pairs =
            |v: [(&str, &str); 5]| Some(v.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>());
        assert_eq!(
            q("free"),
            pairs([
                ("limits.cpu", "4"),
                ("limits.memory", "8Gi"),
                ("pods", "20"),
                ("requests.cpu", "2"),
                ("requests.memory", "4Gi")
            ])
        );
        assert_eq!(
            q("professional"),
            pairs([
                ("limits.cpu", "16"),
                ("limits.memory", "32Gi"),
                ("pods", "50"),
                ("requests.cpu", "8"),
                ("requests.memory", "16Gi")
            ])
        );
        assert_eq!(q("enterprise"), None, "enterprise is unlimited: no ResourceQuota");
        assert_eq!(c.tier("free").unwrap().database_isolation, DatabaseIsolation::Schema);
        assert_eq!(c.tier("professional").unwrap().database_isolation, DatabaseIsolation::Schema);
        assert_eq!(c.tier("enterprise").unwrap().database_isolation, DatabaseIsolation::Database);
        assert_eq!(c.tier("professional").unwrap().pool_size, Some(40));
    }

    #[test]
    fn services_follow_the_seed() {
        let c = embedded();
        let names: Vec<(String, u8)> = c.services.iter().map(|s| (s.k8s_name(), s.phase.number())).collect();
        let expected = [
            ("query-engine", 3),
            ("ai-service", 3),
            ("catalog-service", 3),
            ("pipeline-service", 5),
            ("semantic-layer", 5),
            ("bi-service", 5),
            ("data-quality-service", 5),
            ("ml-service", 5),
            ("render-service", 5),
        ];
        assert_eq!(names, expected.map(|(n, p)| (n.to_string(), p)));
        let deps = |s: &str| c.service(s).unwrap().depends_on.iter().map(|d| d.service.clone()).collect::<Vec<_>>();
        assert!(deps("pipeline_service").is_empty());
        assert_eq!(deps("semantic_layer"), ["catalog_service"]);
        assert_eq!(deps("bi_service"), ["semantic_layer", "query_engine"]);
        assert_eq!(deps("data_quality_service"), ["catalog_service"]);
        assert_eq!(deps("ml_service"), ["query_engine"]);
        assert_eq!(deps("render_service"), ["bi_service"]);
        let ai = c.service("ai_service").unwrap();
        assert_eq!(ai.chart, "matih/ai-service");
        assert_eq!((ai.replicas, ai.image.as_str()), (1, "{registry}/{name}:{tag}"));
        assert_eq!(
            ai.resources.to_value().to_string(),
            r#"{ "limits" = { "cpu" = "1000m", "memory" = "1Gi" }, "requests" = { "cpu" = "250m", "memory" = "512Mi" } }"#
        );
        let egress: Vec<&str> = c.services.iter().filter(|s| s.internet_egress).map(|s| s.name.as_str()).collect();
        assert_eq!(egress, ["pipeline_service"]);
        let fronts: Vec<(String, i64, &str)> =
            c.frontends.iter().map(|f| (f.k8s_name(), f.port, f.target.service.as_str())).collect();
        assert_eq!(fronts, [("api-gateway".into(), 8080, "query_engine"), ("bi-workbench".into(), 3000, "bi_service")]);
    }

    #[test]
    fn alert_expressions_are_scoped_to_the_tenant_namespace() {
        let c = embedded();
        let seen: Vec<(&str, &str, Option<&str>)> =
            c.alerts.iter().map(|a| (a.summary.as_str(), a.severity.as_str(), a.for_.as_deref())).collect();
        assert_eq!(
            seen,
            [
                ("High CPU", "warning", Some("5m")),
                ("High Memory", "warning", Some("5m")),
                ("Pod Restart", "critical", None),
                ("Error Rate", "critical", Some("5m")),
                ("Latency", "warning", Some("5m")),
                ("Disk Usage", "warning", Some("5m")),
            ]
        );
        for a in &c.alerts {
            assert!(a.expr.contains(r#"namespace="{namespace}""#), "{} is tenant-scoped", a.name);
            assert!(!a.expr.ends_with('\n'));
        }
        assert!(c.alerts[0].expr.ends_with("> 0.80"));
        assert!(c.alerts[2].expr.contains("[15m]) > 3"));
    }

    #[test]
    fn unknown_dependency_is_located_at_the_element() {
        let (dir, r) = load_edited("services.hcl", |t| {
            t.replace(r#"depends_on  = ["bi_service"]"#, r#"depends_on  = ["bi_servce"]"#)
        });
        let errs = errors(r, dir.path());
        assert_eq!(errs, [r#"services.hcl:102:18: service "render_service" depends on unknown service "bi_servce""#]);
    }

    #[test]
    fn dependency_on_a_later_phase_is_an_error() {
        let (dir, r) = load_edited("services.hcl", |t| {
            t.replace(
                "  description = \"SQL query execution and optimization\"\n",
                "  description = \"SQL query execution and optimization\"\n  depends_on = [\"ml_service\"]\n",
            )
        });
        let errs = errors(r, dir.path());
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert_eq!(
            errs[0],
            r#"services.hcl:38:17: service "query_engine" (phase 3 DEPLOY_CORE_SERVICES) depends on "ml_service" of a later phase (5 DEPLOY_DATA_SERVICES)"#
        );
        assert!(errs[1].starts_with(
            "services.hcl:90:1: dependency cycle among catalog services: ml_service -> query_engine -> ml_service"
        ));
    }

    #[test]
    fn cycles_print_every_member() {
        let (dir, r) = load_edited("services.hcl", |t| {
            t.replace(
                "  description = \"Data catalog and metadata management\"\n",
                "  description = \"Data catalog and metadata management\"\n  depends_on = [\"ai_service\"]\n",
            )
            .replace(
                "  description = \"Conversational AI and text-to-SQL\"\n",
                "  description = \"Conversational AI and text-to-SQL\"\n  depends_on = [\"query_engine\"]\n",
            )
            .replace(
                "  description = \"SQL query execution and optimization\"\n",
                "  description = \"SQL query execution and optimization\"\n  depends_on = [\"catalog_service\"]\n",
            )
        });
        let errs = errors(r, dir.path());
        assert_eq!(
            errs,
            ["services.hcl:42:1: dependency cycle among catalog services: ai_service -> query_engine -> catalog_service -> ai_service\n    each service depends on the next one"]
        );
    }

    #[test]
    fn role_settings_need_postgresqls_units() {
        let (dir, r) = load_edited("tiers.hcl", |t| {
            t.replacen("statement_timeout  = \"30s\"", "statement_timeout  = \"30 seconds\"", 1)
        });
        let errs = errors(r, dir.path());
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0].ends_with(
                "tier \"free\": statement_timeout \"30 seconds\" must be a whole number and one of ms, s, min, h, d"
            ),
            "{errs:?}"
        );
    }

    #[test]
    fn syntax_errors_and_unknown_attributes_are_located() {
        let (dir, r) = load_edited("tiers.hcl", |t| t.replace("connection_limit   = 10", "connection_limit   = 10 +"));
        let errs = errors(r, dir.path());
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].starts_with("tiers.hcl:27:28: syntax error: "), "{errs:?}");
        let (dir, r) =
            load_edited("tiers.hcl", |t| t.replace("  pool               = \"shared\"", "  pol = \"shared\""));
        let errs = errors(r, dir.path());
        assert_eq!(
            errs,
            [
                r#"tiers.hcl:25:1: tier "free" has no attribute `pool`"#,
                r#"tiers.hcl:28:3: unknown attribute `pol` in tier "free""#
            ]
        );
        let (dir, r) = load_edited("tiers.hcl", |t| t.replace("\"pods\"            = \"20\"", "\"pods\" = 2.5"));
        let errs = errors(r, dir.path());
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].starts_with("tiers.hcl:40:11: quota: number 2.5 is not an integer"), "{errs:?}");
    }

    #[test]
    fn bad_migration_names_and_placeholders_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        for (rel, text) in embedded::FILES {
            let path = dir.path().join(rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        std::fs::write(dir.path().join("migrations/V3_bad.sql"), "SELECT 1;").unwrap();
        std::fs::write(dir.path().join("migrations/V2__again.sql"), "SELECT 1;").unwrap();
        let alerts = std::fs::read_to_string(dir.path().join("alerts.hcl")).unwrap();
        std::fs::write(
            dir.path().join("alerts.hcl"),
            alerts.replacen("namespace=\"{namespace}\"", "namespace=\"{namespcae}\"", 1),
        )
        .unwrap();
        let errs = errors(Catalog::load_dir(dir.path()), dir.path());
        assert_eq!(errs.len(), 3, "{errs:?}");
        assert!(errs
            .iter()
            .any(|e| e.starts_with("alerts.hcl:7:1: alert \"TenantHighCPU\": unknown placeholder {namespcae}")));
        assert!(errs.iter().any(|e| e.contains("V3_bad.sql") && e.contains("no \"__\"")));
        assert!(errs.iter().any(|e| e.contains("same version")));
    }

    #[test]
    fn minimal_keeps_names() {
        let c = Catalog::minimal(&["free"], &["eastus"], &["ai_service"]);
        assert_eq!(c.tier("free").unwrap().name, "free");
        assert_eq!(c.service("ai_service").unwrap().name, "ai_service");
        assert!(c.service("nope").is_none());
    }
}
