//! The graph compiler: one validated tenant spec + the catalog + the platform file → the tenant's
//! resource graph, phase by phase as the platform guide describes them.
//!
//! Every resource is built directly as data (no catalog text is parsed per tenant), so compiling
//! a thousand tenants stays well inside the plan's time budget.
//!
//! **Invariant:** no I/O, no clock, no environment. Values known only at apply are
//! [`Value::Computed`], [`Value::Ref`] or [`Value::Secret`] (a Slack webhook is `env:NAME`: the
//! provider reads the variable at apply). The compiler trusts spec validation for names and
//! re-checks only what the graph itself can get wrong: references, phases and cycles.

use std::collections::{BTreeMap, BTreeSet};

use petgraph::algo::tarjan_scc;

use super::k8s::{base64, binding_fields, l, m, rule, rule_named, s, strs, Obj};
use super::{Resource, ResourceGraph, TenantMeta};
use crate::addr::ResourceAddr;
use crate::catalog::{self, template, Catalog, DatabaseIsolation, ServiceDef, TierDef};
use crate::diag::{self, Diagnostic, Location};
use crate::kind::outputs_of;
use crate::phase::Phase;
use crate::spec::{Delivery, PlatformConfig, TenantSpec};
use crate::value::{Secret, Value};

/// The kind of a service's Helm release (`delivery = "helm"`).
pub const HELM_RELEASE: &str = "helm_release";

/// The name of the tenant's credentials Secret (the platform guide's `tenant-database-credentials`).
pub const DATABASE_SECRET: &str = "tenant-database-credentials";

/// The Secret of the tenant's credentials for the shared observability backends (phase 10).
pub const OBSERVABILITY_SECRET: &str = "observability-credentials";

/// The ConfigMap holding the CA of `observability { otlp_ca_file }` (certificates are not secret),
/// and where the collector mounts it.
pub const OBSERVABILITY_CA: &str = "observability-ca";
const OBSERVABILITY_CA_DIR: &str = "/etc/matih/observability-ca";

/// The version of the Pod Security Standards the tenant namespace enforces (`restricted`), pinned
/// so that a Kubernetes upgrade does not change which pods are admitted.
pub const POD_SECURITY_VERSION: &str = "v1.30";

/// Where an address the platform file does not state may be: the private ranges (RFC 1918, CGNAT,
/// IPv6 unique-local), never the internet.
const PRIVATE_RANGES: &[&str] = &["10.0.0.0/8", "100.64.0.0/10", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"];

/// `10.0.0.5/32` for `10.0.0.5`, `fd00::5/128` for `fd00::5`; `None` for a name.
fn host_cidr(host: &str) -> Option<String> {
    match host.parse::<std::net::IpAddr>().ok()? {
        std::net::IpAddr::V4(a) => Some(format!("{a}/32")),
        std::net::IpAddr::V6(a) => Some(format!("{a}/128")),
    }
}

/// The repository of an image reference: without its tag (`:tag` after the last '/') or digest.
fn repository(image: &str) -> &str {
    let image = image.split('@').next().unwrap_or(image);
    match image.rsplit_once(':') {
        Some((r, tag)) if !tag.contains('/') => r,
        _ => image,
    }
}

/// `image` as the platform pins it: `REPOSITORY@sha256:HEX` when `images { digests }` pins its
/// repository, else unchanged.
fn pinned(platform: &PlatformConfig, image: &str) -> String {
    let repo = repository(image);
    match platform.image_digests.get(repo) {
        Some(digest) => format!("{repo}@{digest}"),
        None => image.to_string(),
    }
}

/// NetworkPolicy peers, one `ipBlock` per CIDR.
fn ip_blocks<S: AsRef<str>>(cidrs: &[S]) -> Value {
    l(cidrs.iter().map(|c| m([("ipBlock", m([("cidr", s(c.as_ref()))]))])))
}

/// The UID and GID the MATIH services run as (any non-root ID: the images must not need root).
const SERVICE_UID: i64 = 10001;

/// The user of the check image (curlimages/curl's `curl_user`).
const CHECK_UID: i64 = 100;

/// A pod `securityContext` meeting the `restricted` Pod Security Standard: a non-root user and the
/// runtime's default seccomp profile.
fn pod_security(uid: i64) -> Value {
    m([
        ("runAsNonRoot", true.into()),
        ("runAsUser", Value::Int(uid)),
        ("runAsGroup", Value::Int(uid)),
        ("fsGroup", Value::Int(uid)),
        ("seccompProfile", m([("type", s("RuntimeDefault"))])),
    ])
}

/// A container `securityContext` meeting the `restricted` Pod Security Standard: no privilege
/// escalation, every capability dropped, and a read-only root filesystem when `read_only`.
fn container_security(read_only: bool) -> Value {
    m([
        ("allowPrivilegeEscalation", false.into()),
        ("capabilities", m([("drop", strs(["ALL"]))])),
        ("readOnlyRootFilesystem", read_only.into()),
        ("runAsNonRoot", true.into()),
        ("seccompProfile", m([("type", s("RuntimeDefault"))])),
    ])
}

/// A Namespace whose pods Pod Security Admission holds to the `restricted` profile: the API server
/// refuses any pod that does not meet it (every workload matih renders does, see `pod_security`).
fn restricted_namespace(name: &str) -> Obj {
    Obj::new("v1", "Namespace", name)
        .cluster_scoped()
        .label("pod-security.kubernetes.io/enforce", s("restricted"))
        .label("pod-security.kubernetes.io/enforce-version", s(POD_SECURITY_VERSION))
        .label("pod-security.kubernetes.io/audit", s("restricted"))
        .label("pod-security.kubernetes.io/audit-version", s(POD_SECURITY_VERSION))
        .label("pod-security.kubernetes.io/warn", s("restricted"))
        .label("pod-security.kubernetes.io/warn-version", s(POD_SECURITY_VERSION))
}

/// Compiles one validated tenant into its resource graph; diagnostics for cycles (the whole cycle
/// is printed) and for a dependency on a resource of a later phase, located at the `depends_on`
/// element (spec override or catalog entry). Returns `None` when there are errors.
pub fn compile(
    spec: &TenantSpec,
    catalog: &Catalog,
    platform: &PlatformConfig,
) -> (Option<ResourceGraph>, Vec<Diagnostic>) {
    let Some(tier) = catalog.tier(&spec.tier.value) else {
        let d = Diagnostic::error(format!("unknown tier {:?}", spec.tier.value)).at(spec.tier.location.clone());
        return (None, vec![d]);
    };
    let mut b = Builder::new(spec, catalog, platform, tier);
    b.namespace();
    b.database();
    b.services();
    b.network();
    b.ingress_controller();
    b.dns();
    b.tenant_ingress();
    b.monitoring();
    b.observability();
    b.finish()
}

/// Addresses of resources other phases refer to.
fn addr(kind: &str, name: &str) -> ResourceAddr {
    ResourceAddr::new(kind, name)
}

struct Builder<'a> {
    spec: &'a TenantSpec,
    catalog: &'a Catalog,
    platform: &'a PlatformConfig,
    tier: &'a TierDef,
    slug: &'a str,
    ns: String,
    /// The edge namespace: the ingress controller, the tenant Ingress and its TLS Secret.
    edge_ns: String,
    zone: String,
    graph: ResourceGraph,
    diags: Vec<Diagnostic>,
    /// Where a dependency `(dependent, dependency)` is written, for diagnostics about it.
    dep_origins: BTreeMap<(ResourceAddr, ResourceAddr), Location>,
    /// Enabled services in catalog order.
    enabled: Vec<&'a ServiceDef>,
}

impl<'a> Builder<'a> {
    fn new(spec: &'a TenantSpec, catalog: &'a Catalog, platform: &'a PlatformConfig, tier: &'a TierDef) -> Self {
        let slug = spec.slug.value.as_str();
        let meta = TenantMeta {
            slug: slug.to_string(),
            id: spec.id.value.clone(),
            tier: spec.tier.value.clone(),
            region: spec.region.value.clone(),
            source: Some(spec.location.clone()),
        };
        let enabled = catalog
            .services
            .iter()
            .filter(|svc| spec.services.get(&svc.name).and_then(|o| o.enabled.as_ref()).is_none_or(|e| e.value))
            .collect();
        let (ns, edge_ns) = crate::spec::namespaces(slug);
        Builder {
            spec,
            catalog,
            platform,
            tier,
            slug,
            ns,
            edge_ns,
            zone: format!("{slug}.{}", platform.parent_zone),
            graph: ResourceGraph::new(meta),
            diags: Vec::new(),
            dep_origins: BTreeMap::new(),
            enabled,
        }
    }

    fn namespace_addr() -> ResourceAddr {
        addr("kubernetes_namespace", "tenant")
    }

    fn edge_namespace_addr() -> ResourceAddr {
        addr("kubernetes_namespace", "edge")
    }

    /// What runs a service's pods: its Deployment, or with `delivery = "helm"` its Helm release.
    fn workload_addr(&self, service: &str) -> ResourceAddr {
        match self.platform.delivery {
            Delivery::Manifests => addr("kubernetes_deployment", service),
            Delivery::Helm => addr(HELM_RELEASE, service),
        }
    }

    /// The platform guide's labels of every tenant object.
    fn guide_labels(&self) -> BTreeMap<String, Value> {
        [
            ("matih.ai/managed-by", s("tenant-service")),
            ("matih.ai/region", s(&self.spec.region.value)),
            ("matih.ai/tenant-id", s(&self.spec.id.value)),
            ("matih.ai/tenant-slug", s(self.slug)),
            ("matih.ai/tier", s(&self.spec.tier.value)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// Adds a non-Kubernetes resource.
    fn add(
        &mut self,
        at: ResourceAddr,
        phase: Phase,
        attrs: Vec<(&str, Value)>,
        deps: Vec<ResourceAddr>,
        force_new: &[&str],
        origin: Option<Location>,
    ) -> ResourceAddr {
        let resource = Resource {
            addr: at.clone(),
            phase,
            attrs: attrs.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
            depends_on: deps.into_iter().collect(),
            force_new: force_new.iter().map(|p| p.to_string()).collect(),
            origin: origin.or_else(|| Some(self.spec.location.clone())),
        };
        self.insert(resource);
        at
    }

    fn insert(&mut self, resource: Resource) {
        let at = resource.addr.clone();
        if !self.graph.add(resource) {
            self.diags.push(
                Diagnostic::error(format!("two resources of tenant {:?} have the address {at}", self.slug))
                    .at(self.spec.location.clone()),
            );
        }
    }

    /// Adds a Kubernetes object named `name` in matih addresses: seed labels, the tenant
    /// namespace (for namespaced kinds; or the one the object names) and a dependency on the
    /// namespace (and on the edge namespace for objects in it).
    fn k8s(&mut self, name: &str, phase: Phase, obj: Obj) -> ResourceAddr {
        let at = addr(&obj.matih_kind(), name);
        let mut labels = self.guide_labels();
        labels.extend(obj.labels);
        let mut metadata = BTreeMap::new();
        metadata.insert("name".to_string(), s(&obj.name));
        let mut depends_on: BTreeSet<ResourceAddr> = obj.deps.into_iter().collect();
        if obj.namespaced {
            let ns = obj.namespace.unwrap_or_else(|| self.ns.clone());
            if ns == self.edge_ns {
                depends_on.insert(Self::edge_namespace_addr());
            }
            metadata.insert("namespace".to_string(), s(ns));
        }
        metadata.insert("labels".to_string(), Value::Map(labels));
        if !obj.annotations.is_empty() {
            metadata.insert("annotations".to_string(), Value::Map(obj.annotations));
        }
        let mut attrs = obj.fields;
        attrs.insert("apiVersion".into(), s(obj.api_version));
        attrs.insert("kind".into(), s(obj.kind));
        attrs.insert("metadata".into(), Value::Map(metadata));
        if at != Self::namespace_addr() {
            depends_on.insert(Self::namespace_addr());
        }
        let mut force_new: BTreeSet<String> = obj.force_new.iter().map(|p| p.to_string()).collect();
        force_new.insert("metadata.name".into());
        if obj.namespaced {
            force_new.insert("metadata.namespace".into());
        }
        let resource = Resource {
            addr: at.clone(),
            phase,
            attrs,
            depends_on,
            force_new,
            origin: obj.origin.or_else(|| Some(self.spec.location.clone())),
        };
        self.insert(resource);
        at
    }

    // Phase 1: CREATE_NAMESPACE.

    fn namespace(&mut self) {
        let phase = Phase::CreateNamespace;
        let ns = restricted_namespace(&self.ns)
            .annotation("matih.ai/provisioned-at", Value::Computed { note: "set when the namespace is created".into() })
            .annotation("matih.ai/provisioned-by", s(&self.platform.provisioned_by));
        self.k8s("tenant", phase, ns);
        if let Some(quota) = &self.tier.quota {
            let hard = Value::Map(quota.iter().map(|(k, v)| (k.clone(), s(v))).collect());
            let obj = Obj::new("v1", "ResourceQuota", "tenant-quota")
                .field("spec", m([("hard", hard)]))
                .origin(self.tier.location.clone());
            self.k8s("tenant", phase, obj);
        }
        let sa = Obj::new("v1", "ServiceAccount", "tenant-default").field("automountServiceAccountToken", false.into());
        let sa = self.k8s("tenant", phase, sa);
        let role = Obj::new("rbac.authorization.k8s.io/v1", "Role", "tenant-role").field(
            "rules",
            l([
                rule(&[""], &["configmaps", "endpoints", "pods", "services"], &["get", "list", "watch"]),
                rule_named(&[""], &["secrets"], &[DATABASE_SECRET], &["get"]),
            ]),
        );
        let role = self.k8s("tenant", phase, role);
        let mut binding = Obj::new("rbac.authorization.k8s.io/v1", "RoleBinding", "tenant-role-binding")
            .deps([&sa, &role])
            .force_new("roleRef");
        for (k, v) in binding_fields("Role", "tenant-role", "tenant-default", &self.ns) {
            binding = binding.field(k, v);
        }
        self.k8s("tenant", phase, binding);
    }

    // Phase 2: SETUP_DATABASE.

    /// The tenant's PostgreSQL role (and schema or database) name: `tenant_` + slug, '-' → '_'.
    fn db_name(&self) -> String {
        format!("tenant_{}", self.slug.replace('-', "_"))
    }

    /// The database the tenant's tables live in, and the schema inside it.
    fn db_target(&self) -> (String, String) {
        match self.tier.database_isolation {
            DatabaseIsolation::Schema => (self.catalog.database.shared_database.clone(), self.db_name()),
            DatabaseIsolation::Database => (self.db_name(), "public".to_string()),
        }
    }

    fn database(&mut self) {
        let phase = Phase::SetupDatabase;
        let name = self.db_name();
        if name.len() > 63 {
            self.diags.push(
                Diagnostic::error(format!(
                    "the PostgreSQL name {name:?} derived from slug {:?} is longer than 63 bytes",
                    self.slug
                ))
                .at(self.spec.slug.location.clone()),
            );
        }
        let (database, schema) = self.db_target();
        let role = self.add(
            addr("postgresql_role", "tenant"),
            phase,
            vec![
                ("name", s(&name)),
                ("login", true.into()),
                ("password", Value::Secret(Secret { source: "generated".into(), fingerprint: None })),
                ("connection_limit", Value::Int(self.tier.connection_limit)),
                // The tier's `ALTER ROLE … SET` (statement_timeout, temp_file_limit).
                ("settings", Value::Map(self.tier.role_settings.iter().map(|(k, v)| (k.clone(), s(v))).collect())),
                // Where the tenant's data lives, for the DATABASE_URL the role hands to the Secret.
                ("database", s(&database)),
                ("schema", s(&schema)),
            ],
            vec![],
            &["name"],
            self.tier.location.clone(),
        );
        let container = match self.tier.database_isolation {
            DatabaseIsolation::Schema => self.add(
                addr("postgresql_schema", "tenant"),
                phase,
                vec![("name", s(&schema)), ("database", s(&database)), ("owner", s(&name))],
                vec![role.clone()],
                &["name", "database"],
                self.tier.location.clone(),
            ),
            DatabaseIsolation::Database => self.add(
                addr("postgresql_database", "tenant"),
                phase,
                vec![("name", s(&database)), ("owner", s(&name)), ("encoding", s("UTF8"))],
                vec![role.clone()],
                &["name"],
                self.tier.location.clone(),
            ),
        };
        let migrations = self.add(
            addr("postgresql_migrations", "tenant"),
            phase,
            vec![
                ("database", s(&database)),
                ("schema", s(&schema)),
                ("owner", s(&name)),
                ("history_table", s(&self.catalog.database.history_table)),
                ("migrations", l(self.catalog.migrations.iter().map(|mig| mig.to_value()))),
            ],
            vec![container],
            &["database", "schema"],
            None,
        );
        let files = self.catalog.seed.iter().map(|f| {
            m([
                ("name", s(&f.name)),
                ("table", s(&f.table)),
                ("key", strs(&f.key)),
                ("sha256", s(&f.sha256)),
                ("rows", f.rows.clone()),
            ])
        });
        let seed = self.add(
            addr("postgresql_seed_data", "tenant"),
            phase,
            vec![("database", s(&database)), ("schema", s(&schema)), ("files", l(files))],
            vec![migrations],
            &["database", "schema"],
            None,
        );
        // The password is generated once, by the PostgreSQL provider when it creates the role, and
        // reaches this Secret in memory during the same apply as the role's sensitive outputs.
        let from_role =
            |output: &str| Value::Secret(Secret { source: format!("output:{role}.{output}"), fingerprint: None });
        let data = m([
            ("DATABASE_URL", from_role("database_url")),
            ("POSTGRES_DB", s(base64(&database))),
            ("POSTGRES_HOST", s(base64(&self.platform.postgres_host))),
            ("POSTGRES_PASSWORD", from_role("password")),
            ("POSTGRES_PORT", s(base64(&self.platform.postgres_port.to_string()))),
            ("POSTGRES_USER", s(base64(&name))),
        ]);
        let secret = Obj::new("v1", "Secret", DATABASE_SECRET)
            .field("type", s("Opaque"))
            .field("data", data)
            .dep(&role)
            .force_new("type");
        let secret = self.k8s("database_credentials", phase, secret);
        self.add(
            addr("postgresql_connectivity_check", "tenant"),
            phase,
            vec![
                ("host", s(&self.platform.postgres_host)),
                ("port", Value::Int(i64::from(self.platform.postgres_port))),
                ("database", s(&database)),
                ("schema", s(&schema)),
                ("user", s(&name)),
                // The check logs in as the tenant, with the password the role generated in this run.
                ("password", Value::Secret(Secret { source: format!("output:{role}.password"), fingerprint: None })),
                ("credentials", m([("namespace", s(&self.ns)), ("secret", s(DATABASE_SECRET))])),
            ],
            vec![secret, seed],
            &[],
            None,
        );
    }

    // Phases 3 and 5: DEPLOY_CORE_SERVICES, DEPLOY_DATA_SERVICES.

    fn selector_labels(k8s_name: &str) -> Value {
        m([("app.kubernetes.io/name", s(k8s_name))])
    }

    fn services(&mut self) {
        self.check_disabled_services();
        for svc in self.enabled.clone() {
            let over = self.spec.services.get(&svc.name);
            let k8s_name = svc.k8s_name();
            let deps = self.service_deps(svc);
            let replicas = over.and_then(|o| o.replicas.as_ref()).map_or(svc.replicas, |r| r.value);
            let tag = over.and_then(|o| o.image_tag.as_ref()).map_or(self.platform.image_tag.as_str(), |t| &t.value);
            let vars = template::Vars::from([
                ("registry", s(&self.platform.image_registry)),
                ("name", s(&k8s_name)),
                ("tag", s(tag)),
            ]);
            let image = pinned(self.platform, &template::fill_str(&svc.image, &vars));
            let origin = over.and_then(|o| o.location.clone()).or_else(|| svc.location.clone());
            let component = if svc.phase == Phase::DeployCoreServices { "core" } else { "data" };
            let pod_labels = {
                let mut labels = self.guide_labels();
                labels.insert("app.kubernetes.io/name".into(), s(&k8s_name));
                labels.insert("app.kubernetes.io/part-of".into(), s("matih"));
                Value::Map(labels)
            };
            let container = m([
                ("name", s(&k8s_name)),
                ("image", s(&image)),
                (
                    "ports",
                    l([m([("name", s("http")), ("containerPort", Value::Int(svc.port)), ("protocol", s("TCP"))])]),
                ),
                (
                    "env",
                    l([
                        m([("name", s("TENANT_ID")), ("value", s(&self.spec.id.value))]),
                        m([
                            ("name", s("DATABASE_URL")),
                            (
                                "valueFrom",
                                m([("secretKeyRef", m([("name", s(DATABASE_SECRET)), ("key", s("DATABASE_URL"))]))]),
                            ),
                        ]),
                    ]),
                ),
                ("resources", self.tier.service_resources.as_ref().unwrap_or(&svc.resources).to_value()),
                (
                    "readinessProbe",
                    m([
                        ("httpGet", m([("path", s(&svc.health_path)), ("port", s("http"))])),
                        ("initialDelaySeconds", Value::Int(10)),
                        ("periodSeconds", Value::Int(10)),
                    ]),
                ),
                ("securityContext", container_security(true)),
                // The root filesystem is read-only; /tmp is the one writable place.
                ("volumeMounts", l([m([("name", s("tmp")), ("mountPath", s("/tmp"))])])),
            ]);
            if self.platform.delivery == Delivery::Helm {
                self.helm_release(svc, replicas, &image, container, pod_labels, deps, origin);
                continue;
            }
            let deployment = Obj::new("apps/v1", "Deployment", k8s_name.clone())
                .label("app.kubernetes.io/name", s(&k8s_name))
                .label("app.kubernetes.io/part-of", s("matih"))
                .label("app.kubernetes.io/component", s(component))
                .annotation("matih.ai/helm-chart", s(&svc.chart))
                .field(
                    "spec",
                    m([
                        ("replicas", Value::Int(replicas)),
                        ("selector", m([("matchLabels", Self::selector_labels(&k8s_name))])),
                        (
                            "template",
                            m([
                                ("metadata", m([("labels", pod_labels)])),
                                (
                                    "spec",
                                    m([
                                        ("serviceAccountName", s("tenant-default")),
                                        ("securityContext", pod_security(SERVICE_UID)),
                                        ("containers", l([container])),
                                        ("volumes", l([m([("name", s("tmp")), ("emptyDir", m::<&str>([]))])])),
                                    ]),
                                ),
                            ]),
                        ),
                    ]),
                )
                .deps(&deps)
                .force_new("spec.selector")
                .origin(origin.clone());
            let deployment = self.k8s(&svc.name, svc.phase, deployment);
            let service = Obj::new("v1", "Service", k8s_name.clone())
                .label("app.kubernetes.io/name", s(&k8s_name))
                .label("app.kubernetes.io/part-of", s("matih"))
                .label("app.kubernetes.io/component", s("service"))
                .field("spec", Self::cluster_ip_spec(&k8s_name, svc.port))
                .dep(&deployment)
                .origin(origin);
            self.k8s(&svc.name, svc.phase, service);
        }

        self.frontend_services();
    }

    /// What a service's workload waits for: the tenant's credentials, connectivity check and service
    /// account, and the workloads of the services it depends on (the catalog's and the spec's).
    fn service_deps(&mut self, svc: &'a ServiceDef) -> Vec<ResourceAddr> {
        let spec = self.spec;
        let over = spec.services.get(&svc.name);
        let me = self.workload_addr(&svc.name);
        let mut deps = vec![
            addr("kubernetes_secret", "database_credentials"),
            addr("postgresql_connectivity_check", "tenant"),
            addr("kubernetes_service_account", "tenant"),
        ];
        let catalog_deps = svc.depends_on.iter().map(|d| (d.service.as_str(), d.location.clone()));
        let override_deps =
            over.into_iter().flat_map(|o| o.depends_on.iter().map(|d| (d.value.as_str(), Some(d.location.clone()))));
        for (dep, at) in catalog_deps.chain(override_deps) {
            let Some(target) = self.catalog.service(dep) else {
                let d = Diagnostic::error(format!("service {:?} depends on unknown service {dep:?}", svc.name));
                self.diags.push(match at {
                    Some(at) => d.at(at),
                    None => d,
                });
                continue;
            };
            if !self.enabled.iter().any(|e| e.name == target.name) {
                continue; // Reported above: a disabled service others need.
            }
            let dep_addr = self.workload_addr(&target.name);
            if let Some(at) = at {
                self.dep_origins.entry((me.clone(), dep_addr.clone())).or_insert(at);
            }
            deps.push(dep_addr);
        }
        deps
    }

    /// A disabled service must not be needed by anything that stays.
    fn check_disabled_services(&mut self) {
        for svc in &self.catalog.services {
            let Some(off) = self.spec.services.get(&svc.name).and_then(|o| o.enabled.as_ref()).filter(|e| !e.value)
            else {
                continue;
            };
            let mut needed_by: Vec<String> = Vec::new();
            for other in &self.enabled {
                let by_catalog = other.depends_on.iter().any(|d| d.service == svc.name);
                let by_override = self
                    .spec
                    .services
                    .get(&other.name)
                    .is_some_and(|o| o.depends_on.iter().any(|d| d.value == svc.name));
                if by_catalog || by_override {
                    needed_by.push(format!("service {:?} depends on it", other.name));
                }
            }
            for f in self.catalog.frontends.iter().filter(|f| f.target.service == svc.name) {
                needed_by.push(format!("{:?} (an Ingress backend) selects its pods", f.k8s_name()));
            }
            if !needed_by.is_empty() {
                let mut d =
                    Diagnostic::error(format!("service {:?} cannot be disabled", svc.name)).at(off.location.clone());
                for n in needed_by {
                    d = d.with_note(n);
                }
                self.diags.push(d);
            }
        }
    }

    /// The Ingress backends of the platform guide that no phase deploys (see schemas/services.hcl).
    fn frontend_services(&mut self) {
        for f in &self.catalog.frontends {
            let Some(target) = self.enabled.iter().find(|svc| svc.name == f.target.service) else { continue };
            let target_name = target.k8s_name();
            let service = Obj::new("v1", "Service", f.k8s_name())
                .label("app.kubernetes.io/name", s(f.k8s_name()))
                .label("app.kubernetes.io/part-of", s("matih"))
                .label("app.kubernetes.io/component", s("frontend"))
                .annotation("matih.ai/serves", s(&target_name))
                .field("spec", Self::cluster_ip_spec(&target_name, f.port))
                .dep(&self.workload_addr(&target.name))
                .origin(f.location.clone());
            self.k8s(&f.name, f.phase, service);
        }
    }

    /// A service as a Helm release of its catalog chart (`delivery = "helm"`): the values carry what
    /// the Deployment of the manifests delivery would (the platform guide's "Helm Release Configuration":
    /// `replicaCount`, `image`, `env` with `TENANT_ID` and `DATABASE_URL` from the credentials
    /// Secret, the tier's resources) and the platform guide's labels, so network policies select the same pods.
    #[allow(clippy::too_many_arguments)]
    fn helm_release(
        &mut self,
        svc: &ServiceDef,
        replicas: i64,
        image: &str,
        container: Value,
        pod_labels: Value,
        deps: Vec<ResourceAddr>,
        origin: Option<Location>,
    ) {
        let k8s_name = svc.k8s_name();
        let (repository, tag) = split_image(image, &self.platform.image_tag);
        let component = if svc.phase == Phase::DeployCoreServices { "core" } else { "data" };
        let mut labels = self.guide_labels();
        labels.insert("app.kubernetes.io/part-of".into(), s("matih"));
        labels.insert("app.kubernetes.io/component".into(), s(component));
        let mut pod_labels = pod_labels.as_map().cloned().unwrap_or_default();
        pod_labels.remove("app.kubernetes.io/name"); // the chart sets it from the release name
        let field = |k: &str| container.get_path(k).cloned().unwrap_or(Value::Null);
        let values = m([
            ("replicaCount", Value::Int(replicas)),
            ("image", m([("repository", s(repository)), ("tag", s(&tag))])),
            ("port", Value::Int(svc.port)),
            ("healthPath", s(&svc.health_path)),
            ("serviceAccountName", s("tenant-default")),
            ("env", field("env")),
            ("resources", field("resources")),
            ("labels", Value::Map(labels)),
            ("podLabels", Value::Map(pod_labels)),
            ("annotations", m([("matih.ai/helm-chart", s(&svc.chart))])),
        ]);
        let mut deps = deps;
        deps.push(Self::namespace_addr());
        self.add(
            addr(HELM_RELEASE, &svc.name),
            svc.phase,
            vec![
                ("name", s(&k8s_name)),
                ("namespace", s(&self.ns)),
                ("chart", s(&svc.helm_chart)),
                ("version", s(&svc.chart_version)),
                ("values", values),
                ("status", s("deployed")),
                // What helm reads back of the release's live objects that the chart does not set.
                ("live_changes", Value::List(Vec::new())),
            ],
            deps,
            &["name", "namespace"],
            origin,
        );
    }

    /// A ClusterIP Service spec selecting the pods of `pods` on their `http` port.
    fn cluster_ip_spec(pods: &str, port: i64) -> Value {
        m([
            ("type", s("ClusterIP")),
            ("selector", Self::selector_labels(pods)),
            (
                "ports",
                l([m([
                    ("name", s("http")),
                    ("port", Value::Int(port)),
                    ("targetPort", s("http")),
                    ("protocol", s("TCP")),
                ])]),
            ),
        ])
    }

    // Phase 4: CONFIGURE_NETWORKING.

    /// The services the tenant Ingress reaches (the frontends' enabled targets): their Kubernetes
    /// names, and their container ports as NetworkPolicy ports.
    fn ingress_backends(&self) -> (Vec<Value>, Vec<Value>) {
        let mut names = BTreeSet::new();
        let mut ports = BTreeSet::new();
        for f in &self.catalog.frontends {
            if let Some(target) = self.enabled.iter().find(|svc| svc.name == f.target.service) {
                names.insert(target.k8s_name());
                ports.insert(target.port);
            }
        }
        let ports = ports.into_iter().map(|p| m([("protocol", s("TCP")), ("port", Value::Int(p))]));
        (names.into_iter().map(s).collect(), ports.collect())
    }

    /// The tenant namespace's policies in phase 4; the edge namespace's (`namespace = "edge"`) in
    /// phase 6, which creates that namespace.
    fn network(&mut self) {
        let connectors: Vec<Value> =
            self.enabled.iter().filter(|svc| svc.internet_egress).map(|svc| s(svc.k8s_name())).collect();
        let (backends, backend_ports) = self.ingress_backends();
        let vars = template::Vars::from([
            ("namespace", s(&self.ns)),
            ("edge_namespace", s(&self.edge_ns)),
            ("ingress_backends", Value::List(backends)),
            ("ingress_backend_ports", Value::List(backend_ports)),
            ("slug", s(self.slug)),
            ("control_plane_namespace", s(&self.platform.control_plane_namespace)),
            ("observability_namespace", s(&self.catalog.observability.namespace)),
            ("postgres_port", Value::Int(i64::from(self.platform.postgres_port))),
            ("connector_services", Value::List(connectors.clone())),
            ("database_peers", self.database_peers()),
            ("api_server_peers", self.api_server_peers()),
        ]);
        for p in &self.catalog.network_policies {
            if p.only_if.as_deref() == Some("connector_services") && connectors.is_empty() {
                continue;
            }
            let obj = Obj::new("networking.k8s.io/v1", "NetworkPolicy", p.name.clone())
                .field("spec", template::fill(&p.spec, &vars))
                .origin(p.location.clone());
            let (obj, phase) = match p.edge {
                true => (obj.in_namespace(&self.edge_ns), Phase::DeployIngressController),
                false => (obj, Phase::ConfigureNetworking),
            };
            self.k8s(&p.name.replace('-', "_"), phase, obj);
        }
    }

    /// The NetworkPolicy peers of the PostgreSQL server: the platform's `network { database_cidrs }`;
    /// else the host itself when it is an IP address; else its namespace when it is a cluster
    /// Service (`NAME.NAMESPACE.svc…`); else the private ranges (never the internet).
    fn database_peers(&self) -> Value {
        let p = self.platform;
        if !p.database_cidrs.is_empty() {
            return ip_blocks(&p.database_cidrs);
        }
        if let Some(cidr) = host_cidr(&p.postgres_host) {
            return ip_blocks(&[cidr]);
        }
        let labels: Vec<&str> = p.postgres_host.split('.').collect();
        if labels.len() >= 3 && labels[2] == "svc" {
            let selector = m([("matchLabels", m([("kubernetes.io/metadata.name", s(labels[1]))]))]);
            return l([m([("namespaceSelector", selector)])]);
        }
        ip_blocks(PRIVATE_RANGES)
    }

    /// The NetworkPolicy peers of the API server: `network { api_server_cidrs }`; else the host of
    /// `kubernetes { api_url }` when it is an IP address; else the private ranges.
    fn api_server_peers(&self) -> Value {
        let p = self.platform;
        if !p.api_server_cidrs.is_empty() {
            return ip_blocks(&p.api_server_cidrs);
        }
        let host = p.kubernetes.as_ref().and_then(|k| k.api_url.as_deref()).map(|u| {
            let rest = u.split_once("://").map_or(u, |(_, r)| r);
            let authority = rest.split('/').next().unwrap_or(rest);
            match authority.strip_prefix('[') {
                Some(v6) => v6.split(']').next().unwrap_or(v6).to_string(),
                None => authority.rsplit_once(':').map_or(authority, |(h, _)| h).to_string(),
            }
        });
        match host.as_deref().and_then(host_cidr) {
            Some(cidr) => ip_blocks(&[cidr]),
            None => ip_blocks(PRIVATE_RANGES),
        }
    }

    // Phase 6: DEPLOY_INGRESS_CONTROLLER.

    fn controller_selector(&self) -> Value {
        m([
            ("app.kubernetes.io/component", s("controller")),
            ("app.kubernetes.io/instance", s(format!("ingress-nginx-{}", self.slug))),
            ("app.kubernetes.io/name", s("ingress-nginx")),
        ])
    }

    /// The edge namespace (`restricted`, like the tenant's) and its quota: room for the controller's
    /// replicas twice over (a rolling update) and one LoadBalancer. The guide deploys the controller
    /// in the tenant namespace; it lives here instead because ingress-nginx caches every Secret of
    /// the namespace it watches, and RBAC cannot grant "all Secrets but the database's".
    fn edge_namespace(&mut self) {
        let phase = Phase::DeployIngressController;
        self.k8s("edge", phase, restricted_namespace(&self.edge_ns));
        let ic = &self.catalog.ingress_controller;
        let pods = 2 * ic.replicas;
        let mut hard = vec![("pods", s(pods.to_string())), ("services.loadbalancers", s("1"))];
        let resources = ic.resources.to_value();
        for key in ["requests.cpu", "requests.memory", "limits.cpu", "limits.memory"] {
            if let Some(q) = resources.get_path(key).and_then(Value::as_str).and_then(crate::quantity::nanos) {
                hard.push((key, s(crate::quantity::display(q * i128::from(pods), key.ends_with("memory")))));
            }
        }
        let quota = Obj::new("v1", "ResourceQuota", "edge-quota")
            .in_namespace(&self.edge_ns)
            .field("spec", m([("hard", m(hard))]));
        self.k8s("edge", phase, quota);
    }

    fn ingress_controller(&mut self) {
        let phase = Phase::DeployIngressController;
        let slug = self.slug;
        let class = format!("nginx-{slug}");
        let controller_value = format!("k8s.io/ingress-nginx-{slug}");
        let cluster_name = format!("ingress-nginx-{slug}");
        let edge = self.edge_ns.clone();
        self.edge_namespace();
        let ic = &self.catalog.ingress_controller;
        if self.platform.delivery == Delivery::Helm {
            return self.ingress_controller_release();
        }

        let sa = Obj::new("v1", "ServiceAccount", "ingress-nginx")
            .in_namespace(&edge)
            .field("automountServiceAccountToken", true.into());
        let sa = self.k8s("ingress_controller", phase, sa);
        // Every Secret of the edge namespace: ingress-nginx lists and watches them all. The only ones
        // there are the tenant's TLS certificate (and, with Helm, the release's own records).
        let role = Obj::new("rbac.authorization.k8s.io/v1", "Role", "ingress-nginx").in_namespace(&edge).field(
            "rules",
            l([
                rule(&[""], &["configmaps", "endpoints", "pods", "secrets", "services"], &["get", "list", "watch"]),
                rule(&["discovery.k8s.io"], &["endpointslices"], &["get", "list", "watch"]),
                rule(&["networking.k8s.io"], &["ingresses"], &["get", "list", "watch"]),
                rule(&["networking.k8s.io"], &["ingresses/status"], &["update"]),
                rule_named(&["coordination.k8s.io"], &["leases"], &["ingress-nginx-leader"], &["get", "update"]),
                rule(&["coordination.k8s.io"], &["leases"], &["create"]),
                rule(&[""], &["events"], &["create", "patch"]),
            ]),
        );
        let role = self.k8s("ingress_controller", phase, role);
        let mut binding = Obj::new("rbac.authorization.k8s.io/v1", "RoleBinding", "ingress-nginx")
            .in_namespace(&edge)
            .deps([&sa, &role])
            .force_new("roleRef");
        for (k, v) in binding_fields("Role", "ingress-nginx", "ingress-nginx", &edge) {
            binding = binding.field(k, v);
        }
        let binding = self.k8s("ingress_controller", phase, binding);
        // IngressClasses are cluster-scoped: reading them needs a ClusterRole, limited to that.
        let cluster_role = Obj::new("rbac.authorization.k8s.io/v1", "ClusterRole", cluster_name.clone())
            .cluster_scoped()
            .field("rules", l([rule(&["networking.k8s.io"], &["ingressclasses"], &["get", "list", "watch"])]));
        let cluster_role = self.k8s("ingress_controller", phase, cluster_role);
        let mut cluster_binding = Obj::new("rbac.authorization.k8s.io/v1", "ClusterRoleBinding", cluster_name.clone())
            .cluster_scoped()
            .deps([&sa, &cluster_role])
            .force_new("roleRef");
        for (k, v) in binding_fields("ClusterRole", &cluster_name, "ingress-nginx", &edge) {
            cluster_binding = cluster_binding.field(k, v);
        }
        let cluster_binding = self.k8s("ingress_controller", phase, cluster_binding);

        let ingress_class = Obj::new("networking.k8s.io/v1", "IngressClass", class.clone())
            .cluster_scoped()
            .field("spec", m([("controller", s(&controller_value))]))
            .force_new("spec.controller");
        let ingress_class = self.k8s("tenant", phase, ingress_class);

        let field_env = |name: &str, path: &str| {
            m([("name", s(name)), ("valueFrom", m([("fieldRef", m([("fieldPath", s(path))]))]))])
        };
        let probe = m([
            ("httpGet", m([("path", s(&ic.health_path)), ("port", Value::Int(10254)), ("scheme", s("HTTP"))])),
            ("initialDelaySeconds", Value::Int(10)),
            ("periodSeconds", Value::Int(10)),
        ]);
        let container = m([
            ("name", s("controller")),
            ("image", s(pinned(self.platform, &ic.image))),
            (
                "args",
                strs([
                    "/nginx-ingress-controller".to_string(),
                    "--publish-service=$(POD_NAMESPACE)/ingress-nginx-controller".to_string(),
                    "--election-id=ingress-nginx-leader".to_string(),
                    format!("--controller-class={controller_value}"),
                    format!("--ingress-class={class}"),
                    format!("--watch-namespace={edge}"),
                ]),
            ),
            ("env", l([field_env("POD_NAME", "metadata.name"), field_env("POD_NAMESPACE", "metadata.namespace")])),
            (
                "ports",
                l([
                    m([("name", s("http")), ("containerPort", Value::Int(80)), ("protocol", s("TCP"))]),
                    m([("name", s("https")), ("containerPort", Value::Int(443)), ("protocol", s("TCP"))]),
                    m([("name", s("metrics")), ("containerPort", Value::Int(10254)), ("protocol", s("TCP"))]),
                ]),
            ),
            ("livenessProbe", probe.clone()),
            ("readinessProbe", probe),
            ("resources", ic.resources.to_value()),
            (
                "securityContext",
                m([
                    ("allowPrivilegeEscalation", false.into()),
                    // The one capability `restricted` allows adding: nginx binds ports 80 and 443.
                    ("capabilities", m([("add", strs(["NET_BIND_SERVICE"])), ("drop", strs(["ALL"]))])),
                    // nginx writes its configuration and temporary files under /etc/nginx and /tmp.
                    ("readOnlyRootFilesystem", false.into()),
                    ("runAsNonRoot", true.into()),
                    ("runAsUser", Value::Int(101)),
                    ("seccompProfile", m([("type", s("RuntimeDefault"))])),
                ]),
            ),
        ]);
        let mut pod_labels = self.guide_labels();
        if let Value::Map(sel) = self.controller_selector() {
            pod_labels.extend(sel);
        }
        let deployment = Obj::new("apps/v1", "Deployment", "ingress-nginx-controller")
            .in_namespace(&edge)
            .label("app.kubernetes.io/name", s("ingress-nginx"))
            .label("app.kubernetes.io/component", s("controller"))
            .field(
                "spec",
                m([
                    ("replicas", Value::Int(ic.replicas)),
                    ("selector", m([("matchLabels", self.controller_selector())])),
                    (
                        "template",
                        m([
                            ("metadata", m([("labels", Value::Map(pod_labels))])),
                            (
                                "spec",
                                m([
                                    ("serviceAccountName", s("ingress-nginx")),
                                    ("securityContext", pod_security(101)),
                                    ("terminationGracePeriodSeconds", Value::Int(300)),
                                    ("containers", l([container])),
                                ]),
                            ),
                        ]),
                    ),
                ]),
            )
            .deps([&sa, &binding, &cluster_binding, &ingress_class])
            .force_new("spec.selector");
        let deployment = self.k8s("ingress_controller", phase, deployment);
        let port = |name: &str, number: i64| {
            m([("name", s(name)), ("port", Value::Int(number)), ("targetPort", s(name)), ("protocol", s("TCP"))])
        };
        let service = Obj::new("v1", "Service", "ingress-nginx-controller")
            .in_namespace(&edge)
            .label("app.kubernetes.io/name", s("ingress-nginx"))
            .label("app.kubernetes.io/component", s("controller"))
            .annotation("service.beta.kubernetes.io/azure-load-balancer-health-probe-request-path", s(&ic.health_path))
            .field(
                "spec",
                m([
                    ("type", s("LoadBalancer")),
                    ("selector", self.controller_selector()),
                    ("ports", l([port("http", 80), port("https", 443)])),
                ]),
            )
            .dep(&deployment);
        self.k8s("ingress_controller", phase, service);
    }

    /// The ingress controller as a Helm release of the catalog's chart (`delivery = "helm"`), with
    /// the platform guide's values: `controller.ingressClassResource` (`nginx-{slug}`,
    /// `k8s.io/ingress-nginx-{slug}`), `replicaCount`, a LoadBalancer Service with the Azure
    /// health-probe annotation, admission webhooks off, installed in the edge namespace. The chart
    /// makes the IngressClass, the RBAC (its Role reads the Secrets of the edge namespace only) and
    /// the Service whose IP phase 7 publishes.
    fn ingress_controller_release(&mut self) {
        let slug = self.slug;
        let ic = &self.catalog.ingress_controller;
        let image = pinned(self.platform, &ic.image);
        let (repository, tag) = split_image(&image, &self.platform.image_tag);
        let mut pod_labels = self.guide_labels();
        pod_labels.remove("app.kubernetes.io/name"); // the chart sets its selector labels
        let class = format!("nginx-{slug}");
        let values = m([
            (
                "controller",
                m([
                    ("image", m([("repository", s(repository)), ("tag", s(&tag))])),
                    (
                        "ingressClassResource",
                        m([("name", s(&class)), ("controllerValue", s(format!("k8s.io/ingress-nginx-{slug}")))]),
                    ),
                    ("ingressClass", s(&class)),
                    ("replicaCount", Value::Int(ic.replicas)),
                    (
                        "service",
                        m([
                            ("type", s("LoadBalancer")),
                            (
                                "annotations",
                                m([(
                                    "service.beta.kubernetes.io/azure-load-balancer-health-probe-request-path",
                                    s(&ic.health_path),
                                )]),
                            ),
                        ]),
                    ),
                    ("admissionWebhooks", m([("enabled", false.into())])),
                    ("healthPath", s(&ic.health_path)),
                    ("resources", ic.resources.to_value()),
                ]),
            ),
            ("labels", Value::Map(self.guide_labels())),
            ("podLabels", Value::Map(pod_labels)),
        ]);
        let (chart, version) = (ic.helm_chart.clone(), ic.chart_version.clone());
        self.add(
            addr(HELM_RELEASE, "ingress_controller"),
            Phase::DeployIngressController,
            vec![
                ("name", s("ingress-nginx")),
                ("namespace", s(&self.edge_ns)),
                ("chart", s(chart)),
                ("version", s(version)),
                ("values", values),
                ("status", s("deployed")),
                ("live_changes", Value::List(Vec::new())),
            ],
            vec![Self::namespace_addr(), Self::edge_namespace_addr()],
            &["name", "namespace"],
            None,
        );
    }

    /// The resource whose `load_balancer_ip` output is the tenant's public address: the controller's
    /// Service, or with `delivery = "helm"` its release (which reads the chart's Service).
    fn load_balancer(&self) -> ResourceAddr {
        match self.platform.delivery {
            Delivery::Manifests => addr("kubernetes_service", "ingress_controller"),
            Delivery::Helm => addr(HELM_RELEASE, "ingress_controller"),
        }
    }

    /// What makes the tenant's IngressClass: its own resource, or the controller's release.
    fn ingress_class(&self) -> ResourceAddr {
        match self.platform.delivery {
            Delivery::Manifests => addr("kubernetes_ingress_class", "tenant"),
            Delivery::Helm => addr(HELM_RELEASE, "ingress_controller"),
        }
    }

    // Phase 7: CREATE_DNS_ZONE.

    fn dns(&mut self) {
        let phase = Phase::CreateDnsZone;
        let zone = self.add(addr("dns_zone", "tenant"), phase, vec![("name", s(&self.zone))], vec![], &["name"], None);
        self.add(
            addr("dns_ns_delegation", "tenant"),
            phase,
            vec![
                ("zone", s(&self.platform.parent_zone)),
                ("name", s(self.slug)),
                ("ttl", Value::Int(self.catalog.dns.ns_delegation_ttl)),
                ("records", Value::Ref { resource: zone.clone(), output: "nameservers".into() }),
            ],
            vec![],
            &["zone", "name"],
            None,
        );
        let lb_ip = Value::Ref { resource: self.load_balancer(), output: "load_balancer_ip".into() };
        for r in self.catalog.dns.records.clone() {
            self.add(
                addr("dns_a_record", &r.resource),
                phase,
                vec![
                    ("zone", s(&self.zone)),
                    ("name", s(&r.name)),
                    ("type", s(&r.record_type)),
                    ("ttl", Value::Int(r.ttl)),
                    ("records", l([lb_ip.clone()])),
                ],
                vec![zone.clone()],
                &["zone", "name"],
                None,
            );
        }
    }

    // Phase 8: CREATE_TENANT_INGRESS.

    fn tenant_ingress(&mut self) {
        let phase = Phase::CreateTenantIngress;
        let tls_secret = format!("{}-tls-certificate", self.slug);
        let wildcard = format!("*.{}", self.zone);
        let certificate = Obj::new("cert-manager.io/v1", "Certificate", tls_secret.clone())
            .in_namespace(&self.edge_ns)
            .field(
                "spec",
                m([
                    ("secretName", s(&tls_secret)),
                    ("dnsNames", strs([self.zone.as_str(), wildcard.as_str()])),
                    (
                        "issuerRef",
                        m([
                            ("name", s(&self.platform.cluster_issuer)),
                            ("kind", s("ClusterIssuer")),
                            ("group", s("cert-manager.io")),
                        ]),
                    ),
                ]),
            )
            .deps([&addr("dns_zone", "tenant"), &addr("dns_ns_delegation", "tenant")]);
        let certificate = self.k8s("tenant", phase, certificate);

        // The backends are ExternalName Services of the edge namespace with the frontends' names and
        // ports, naming the frontends of the tenant namespace (ingress-nginx proxies to the name).
        let mut backends = Vec::new();
        for (name, route) in [("api_gateway", "the /api route"), ("bi_workbench", "the bi host")] {
            match self.catalog.frontend(name) {
                Some(f) => {
                    // A frontend whose target is disabled is missing; that is reported with the override.
                    let present = self.enabled.iter().any(|svc| svc.name == f.target.service);
                    let port = m([
                        ("name", s("http")),
                        ("port", Value::Int(f.port)),
                        ("targetPort", Value::Int(f.port)),
                        ("protocol", s("TCP")),
                    ]);
                    let external = Obj::new("v1", "Service", f.k8s_name())
                        .in_namespace(&self.edge_ns)
                        .label("app.kubernetes.io/part-of", s("matih"))
                        .label("app.kubernetes.io/component", s("edge"))
                        .field(
                            "spec",
                            m([
                                ("type", s("ExternalName")),
                                ("externalName", s(format!("{}.{}.svc.cluster.local", f.k8s_name(), self.ns))),
                                ("ports", l([port])),
                            ]),
                        )
                        .deps(present.then(|| addr("kubernetes_service", name)).iter())
                        .origin(f.location.clone());
                    let external = self.k8s(&format!("edge_{name}"), phase, external);
                    backends.push((f.k8s_name(), f.port, present.then_some(external)));
                }
                None => {
                    self.diags.push(Diagnostic::error(format!(
                        "the catalog has no frontend {name:?}, the backend of {route} of the tenant Ingress"
                    )));
                    return;
                }
            }
        }
        let rule_for = |host: String, path: &str, (service, port, _): &(String, i64, Option<ResourceAddr>)| {
            m([
                ("host", s(host)),
                (
                    "http",
                    m([(
                        "paths",
                        l([m([
                            ("path", s(path)),
                            ("pathType", s("Prefix")),
                            (
                                "backend",
                                m([(
                                    "service",
                                    m([("name", s(service)), ("port", m([("number", Value::Int(*port))]))]),
                                )]),
                            ),
                        ])]),
                    )]),
                ),
            ])
        };
        let rules = l([
            rule_for(self.zone.clone(), "/api", &backends[0]),
            rule_for(format!("bi.{}", self.zone), "/", &backends[1]),
        ]);
        let records: Vec<ResourceAddr> =
            self.catalog.dns.records.iter().map(|r| addr("dns_a_record", &r.resource)).collect();
        let ingress = Obj::new("networking.k8s.io/v1", "Ingress", "tenant-ingress")
            .in_namespace(&self.edge_ns)
            .annotation("cert-manager.io/cluster-issuer", s(&self.platform.cluster_issuer))
            .field(
                "spec",
                m([
                    ("ingressClassName", s(format!("nginx-{}", self.slug))),
                    (
                        "tls",
                        l([m([
                            ("hosts", strs([self.zone.as_str(), wildcard.as_str()])),
                            ("secretName", s(&tls_secret)),
                        ])]),
                    ),
                    ("rules", rules),
                ]),
            )
            .dep(&certificate)
            .dep(&self.ingress_class())
            .deps(backends.iter().filter_map(|(_, _, a)| a.as_ref()))
            .deps(&records);
        self.k8s("tenant", phase, ingress);
    }

    // Phase 9: DEPLOY_MONITORING.

    fn monitoring(&mut self) {
        let phase = Phase::DeployMonitoring;
        let mon = &self.catalog.monitoring;
        let own_ns = m([("matchLabels", m([("kubernetes.io/metadata.name", s(&self.ns))]))]);
        let tenant_selector = m([("matchLabels", m([("matih.ai/tenant-slug", s(self.slug))]))]);

        let sa = self.k8s("prometheus", phase, Obj::new("v1", "ServiceAccount", "prometheus"));
        let role = Obj::new("rbac.authorization.k8s.io/v1", "Role", "prometheus").field(
            "rules",
            l([
                rule(&[""], &["endpoints", "pods", "services"], &["get", "list", "watch"]),
                rule(&["discovery.k8s.io"], &["endpointslices"], &["get", "list", "watch"]),
                rule(&[""], &["configmaps"], &["get"]),
            ]),
        );
        let role = self.k8s("prometheus", phase, role);
        let mut binding = Obj::new("rbac.authorization.k8s.io/v1", "RoleBinding", "prometheus")
            .deps([&sa, &role])
            .force_new("roleRef");
        for (k, v) in binding_fields("Role", "prometheus", "prometheus", &self.ns) {
            binding = binding.field(k, v);
        }
        let binding = self.k8s("prometheus", phase, binding);

        let monitor = Obj::new("monitoring.coreos.com/v1", "ServiceMonitor", "matih-services").field(
            "spec",
            m([
                (
                    "selector",
                    m([(
                        "matchLabels",
                        m([("app.kubernetes.io/component", s("service")), ("app.kubernetes.io/part-of", s("matih"))]),
                    )]),
                ),
                ("namespaceSelector", m([("matchNames", strs([self.ns.as_str()]))])),
                (
                    "endpoints",
                    l([m([("port", s("http")), ("path", s("/metrics")), ("interval", s(&mon.scrape_interval))])]),
                ),
            ]),
        );
        let monitor = self.k8s("services", phase, monitor);

        let vars = template::Vars::from([("namespace", s(&self.ns)), ("slug", s(self.slug))]);
        let rules = self.catalog.alerts.iter().map(|a| {
            let mut rule = BTreeMap::from([
                ("alert".to_string(), s(&a.name)),
                ("expr".to_string(), s(template::fill_str(&a.expr, &vars))),
                ("labels".to_string(), m([("severity", s(&a.severity)), ("tenant", s(self.slug))])),
                (
                    "annotations".to_string(),
                    m([("summary", s(&a.summary)), ("description", s(template::fill_str(&a.description, &vars)))]),
                ),
            ]);
            if let Some(f) = &a.for_ {
                rule.insert("for".into(), s(f));
            }
            Value::Map(rule)
        });
        let alert_rules = Obj::new("monitoring.coreos.com/v1", "PrometheusRule", "tenant-alerts").field(
            "spec",
            m([("groups", l([m([("name", s(format!("matih-{}.default", self.slug))), ("rules", l(rules))])]))]),
        );
        let alert_rules = self.k8s("tenant", phase, alert_rules);

        let prometheus = Obj::new("monitoring.coreos.com/v1", "Prometheus", "tenant-prometheus")
            .field(
                "spec",
                m([
                    ("version", s(&mon.prometheus_version)),
                    ("replicas", Value::Int(1)),
                    ("serviceAccountName", s("prometheus")),
                    ("retention", s(&mon.retention)),
                    ("scrapeInterval", s(&mon.scrape_interval)),
                    ("serviceMonitorSelector", tenant_selector.clone()),
                    ("serviceMonitorNamespaceSelector", own_ns.clone()),
                    ("podMonitorSelector", tenant_selector.clone()),
                    ("podMonitorNamespaceSelector", own_ns.clone()),
                    ("ruleSelector", tenant_selector),
                    ("ruleNamespaceSelector", own_ns),
                    ("externalLabels", m([("tenant_id", s(&self.spec.id.value)), ("tenant_slug", s(self.slug))])),
                    (
                        "alerting",
                        m([(
                            "alertmanagers",
                            l([m([
                                ("namespace", s(&self.catalog.observability.namespace)),
                                ("name", s(&mon.alertmanager_service)),
                                ("port", s(&mon.alertmanager_port)),
                            ])]),
                        )]),
                    ),
                    (
                        "securityContext",
                        m([
                            ("runAsNonRoot", true.into()),
                            ("runAsUser", Value::Int(1000)),
                            ("fsGroup", Value::Int(2000)),
                            // The operator's containers drop every capability and escalation; the
                            // seccomp profile is the pod's, so `restricted` admits them.
                            ("seccompProfile", m([("type", s("RuntimeDefault"))])),
                        ]),
                    ),
                ]),
            )
            .deps([&binding, &monitor, &alert_rules]);
        self.k8s("tenant", phase, prometheus);

        let dashboards = Value::Map(
            self.catalog.dashboards.iter().map(|d| (d.name.clone(), s(template::fill_str(&d.json, &vars)))).collect(),
        );
        let dashboards = Obj::new("v1", "ConfigMap", "grafana-dashboards")
            .label("grafana_dashboard", s("1"))
            .field("data", dashboards);
        self.k8s("grafana_dashboards", phase, dashboards);

        // Email goes to the tenant admin and every notify_email address, once each, in that order.
        let mut emails: Vec<&str> = vec![self.spec.admin_email.value.as_str()];
        for e in &self.spec.monitoring.notify_email {
            if !emails.contains(&e.value.as_str()) {
                emails.push(&e.value);
            }
        }
        let mut receivers = vec![m([
            ("name", s("email")),
            ("emailConfigs", l(emails.iter().map(|e| m([("to", s(*e)), ("sendResolved", true.into())])))),
        ])];
        let mut routes = vec![m([("receiver", s("email")), ("continue", true.into())])];
        let mut deps = Vec::new();
        if let Some(env) = &self.spec.monitoring.notify_slack_webhook_env {
            let secret = Obj::new("v1", "Secret", "alertmanager-slack-webhook")
                .field("type", s("Opaque"))
                .field(
                    "data",
                    m([("url", Value::Secret(Secret { source: format!("env:{}", env.value), fingerprint: None }))]),
                )
                .force_new("type")
                .origin(Some(env.location.clone()));
            deps.push(self.k8s("slack_webhook", phase, secret));
            receivers.push(m([
                ("name", s("slack")),
                (
                    "slackConfigs",
                    l([m([
                        ("apiURL", m([("name", s("alertmanager-slack-webhook")), ("key", s("url"))])),
                        ("sendResolved", true.into()),
                    ])]),
                ),
            ]));
            routes.push(m([("receiver", s("slack")), ("continue", true.into())]));
        }
        let config = Obj::new("monitoring.coreos.com/v1alpha1", "AlertmanagerConfig", "tenant-notifications")
            .field(
                "spec",
                m([
                    (
                        "route",
                        m([
                            ("receiver", s("email")),
                            ("groupBy", strs(["alertname", "severity"])),
                            ("routes", l(routes)),
                        ]),
                    ),
                    ("receivers", l(receivers)),
                ]),
            )
            .deps(&deps);
        self.k8s("tenant", phase, config);
    }

    // Phase 10: SETUP_OBSERVABILITY.

    fn observability(&mut self) {
        let phase = Phase::SetupObservability;
        let obs = &self.catalog.observability;
        let slug = self.slug;
        let to_json = |v: Value| serde_json::to_string_pretty(&serde_json::Value::from(v)).unwrap_or_default();

        // Loki: collect the logs of this namespace and its edge namespace (the ingress controller's
        // access logs) only, labelled with the tenant.
        let collection = m([(
            "scrape_configs",
            l([m([
                ("job_name", s(format!("matih-{slug}"))),
                (
                    "kubernetes_sd_configs",
                    l([m([
                        ("role", s("pod")),
                        ("namespaces", m([("names", strs([self.ns.as_str(), self.edge_ns.as_str()]))])),
                    ])]),
                ),
                (
                    "relabel_configs",
                    l([
                        m([("source_labels", strs(["__meta_kubernetes_namespace"])), ("target_label", s("namespace"))]),
                        m([("source_labels", strs(["__meta_kubernetes_pod_name"])), ("target_label", s("pod"))]),
                        m([
                            ("source_labels", strs(["__meta_kubernetes_pod_container_name"])),
                            ("target_label", s("container")),
                        ]),
                        m([("target_label", s("tenant_id")), ("replacement", s(slug))]),
                    ]),
                ),
            ])]),
        )]);
        let loki = Obj::new("v1", "ConfigMap", "loki-collection").label("matih.ai/log-collection", s("true")).field(
            "data",
            m([
                ("collection.json", s(to_json(collection))),
                ("namespace", s(&self.ns)),
                ("tenant", s(slug)),
                ("push_url", s(format!("{}/loki/api/v1/push", obs.loki_url))),
            ]),
        );
        let loki = self.k8s("loki_collection", phase, loki);

        // OpenTelemetry: receive OTLP, add the tenant context, export to Tempo as the tenant.
        let (tls, ca, ca_spec) = self.collector_tls(phase);
        let collector_config = m([
            (
                "receivers",
                m([(
                    "otlp",
                    m([(
                        "protocols",
                        m([
                            ("grpc", m([("endpoint", s("0.0.0.0:4317"))])),
                            ("http", m([("endpoint", s("0.0.0.0:4318"))])),
                        ]),
                    )]),
                )]),
            ),
            (
                "processors",
                m([
                    (
                        "memory_limiter",
                        m([
                            ("check_interval", s("1s")),
                            ("limit_percentage", Value::Int(80)),
                            ("spike_limit_percentage", Value::Int(25)),
                        ]),
                    ),
                    (
                        "resource",
                        m([(
                            "attributes",
                            l([
                                m([("key", s("tenant_id")), ("value", s(slug)), ("action", s("upsert"))]),
                                m([("key", s("k8s.namespace.name")), ("value", s(&self.ns)), ("action", s("upsert"))]),
                            ]),
                        )]),
                    ),
                    ("batch", m::<&str>([])),
                ]),
            ),
            (
                "exporters",
                m([(
                    "otlp/tempo",
                    m([
                        ("endpoint", s(&obs.tempo_otlp_endpoint)),
                        // The backend's gateway finds the tenant from these credentials and sets the
                        // tenancy header itself: no header chosen by the client.
                        ("auth", m([("authenticator", s("basicauth/client"))])),
                        ("tls", tls),
                    ]),
                )]),
            ),
            (
                "extensions",
                m([(
                    "basicauth/client",
                    m([(
                        "client_auth",
                        m([
                            ("username", s("${env:OBSERVABILITY_USERNAME}")),
                            ("password", s("${env:OBSERVABILITY_PASSWORD}")),
                        ]),
                    )]),
                )]),
            ),
            (
                "service",
                m([
                    ("extensions", strs(["basicauth/client"])),
                    (
                        "pipelines",
                        m([(
                            "traces",
                            m([
                                ("receivers", strs(["otlp"])),
                                ("processors", strs(["memory_limiter", "resource", "batch"])),
                                ("exporters", strs(["otlp/tempo"])),
                            ]),
                        )]),
                    ),
                ]),
            ),
        ]);
        // The tenant's own credentials for the shared backends' ingest, generated by matih (state keeps
        // only the password's fingerprint). The platform's gateway in front of Tempo reads the Secrets
        // labelled `matih.ai/observability-credentials` (a ClusterRole limited to that name) and maps
        // each to its tenant.
        let credentials = Obj::new("v1", "Secret", OBSERVABILITY_SECRET)
            .label("matih.ai/observability-credentials", s("true"))
            .field("type", s("kubernetes.io/basic-auth"))
            .field(
                "data",
                m([
                    ("username", s(base64(&self.ns))),
                    ("password", Value::Secret(Secret { source: "generated".into(), fingerprint: None })),
                ]),
            )
            .force_new("type");
        let credentials = self.k8s("observability_credentials", phase, credentials);
        let from_secret = |name: &str, key: &str| {
            m([
                ("name", s(name)),
                ("valueFrom", m([("secretKeyRef", m([("name", s(OBSERVABILITY_SECRET)), ("key", s(key))]))])),
            ])
        };
        let collector =
            Obj::new("opentelemetry.io/v1beta1", "OpenTelemetryCollector", "tenant").dep(&credentials).deps(&ca).field(
                "spec",
                m([
                    (
                        "env",
                        l([
                            from_secret("OBSERVABILITY_USERNAME", "username"),
                            from_secret("OBSERVABILITY_PASSWORD", "password"),
                        ]),
                    ),
                    ("mode", s("deployment")),
                    ("replicas", Value::Int(1)),
                    ("image", s(pinned(self.platform, &obs.otel_collector_image))),
                    ("podSecurityContext", pod_security(SERVICE_UID)),
                    ("securityContext", container_security(true)),
                    ("config", collector_config),
                ]
                .into_iter()
                .chain(ca_spec)),
            );
        let collector = self.k8s("tenant", phase, collector);

        let tempo = Obj::new("v1", "ConfigMap", "tempo-tenant-overrides")
            .label("matih.ai/tempo-overrides", s("true"))
            .field(
                "data",
                m([(
                    "overrides.json",
                    s(to_json(m([(
                        "overrides",
                        m([(slug, m([("block_retention", s(&self.tier.trace_retention))]))]),
                    )]))),
                )]),
            )
            .origin(self.tier.location.clone());
        let tempo = self.k8s("tempo_overrides", phase, tempo);

        let header = |name: &str| {
            (
                m([("httpHeaderName1", s("X-Scope-OrgID"))]),
                m([("httpHeaderValue1", s(slug))]),
                format!("{name} ({slug})"),
            )
        };
        let (loki_json, loki_secure, loki_name) = header("Loki");
        let (tempo_json, tempo_secure, tempo_name) = header("Tempo");
        let datasources = m([
            ("apiVersion", Value::Int(1)),
            (
                "datasources",
                l([
                    m([
                        ("name", s(loki_name)),
                        ("uid", s(format!("loki-{slug}"))),
                        ("type", s("loki")),
                        ("access", s("proxy")),
                        ("url", s(&obs.loki_url)),
                        ("jsonData", loki_json),
                        ("secureJsonData", loki_secure),
                    ]),
                    m([
                        ("name", s(tempo_name)),
                        ("uid", s(format!("tempo-{slug}"))),
                        ("type", s("tempo")),
                        ("access", s("proxy")),
                        ("url", s(&obs.tempo_url)),
                        ("jsonData", tempo_json),
                        ("secureJsonData", tempo_secure),
                    ]),
                ]),
            ),
        ]);
        let datasources = Obj::new("v1", "ConfigMap", "grafana-datasources")
            .label("grafana_datasource", s("1"))
            .field("data", m([("datasources.yaml", s(to_json(datasources)))]));
        let datasources = self.k8s("grafana_datasources", phase, datasources);

        // The pipeline check: one OTLP export to the tenant's collector and Loki's readiness.
        let script = format!(
            "set -e\n\
             curl -fsS -X POST -H 'Content-Type: application/json' -d '{{\"resourceSpans\":[]}}' \
             http://tenant-collector.{ns}.svc:4318/v1/traces\n\
             curl -fsS {loki}/ready\n",
            ns = self.ns,
            loki = obs.loki_url,
        );
        let check = Obj::new("batch/v1", "Job", "observability-pipeline-check")
            .field(
                "spec",
                m([
                    ("backoffLimit", Value::Int(3)),
                    (
                        "template",
                        m([
                            (
                                "metadata",
                                m([("labels", m([("app.kubernetes.io/name", s("observability-pipeline-check"))]))]),
                            ),
                            (
                                "spec",
                                m([
                                    ("restartPolicy", s("Never")),
                                    ("serviceAccountName", s("tenant-default")),
                                    ("securityContext", pod_security(CHECK_UID)),
                                    (
                                        "containers",
                                        l([m([
                                            ("name", s("check")),
                                            ("image", s(pinned(self.platform, &obs.check_image))),
                                            ("command", strs(["sh", "-c", script.as_str()])),
                                            ("securityContext", container_security(true)),
                                            (
                                                "resources",
                                                m([
                                                    ("requests", m([("cpu", s("10m")), ("memory", s("16Mi"))])),
                                                    ("limits", m([("cpu", s("100m")), ("memory", s("64Mi"))])),
                                                ]),
                                            ),
                                        ])]),
                                    ),
                                ]),
                            ),
                        ]),
                    ),
                ]),
            )
            .deps([&loki, &collector, &tempo, &datasources])
            .force_new("spec.template");
        self.k8s("observability_check", phase, check);
    }

    /// The TLS of the collector's export to Tempo, which carries the tenant's credentials: verified
    /// against the system roots, or against the platform's `otlp_ca_file`, rendered here as the
    /// ConfigMap [`OBSERVABILITY_CA`] with the collector's volume and mount of it (the spec entries
    /// returned); off only with the platform's `otlp_insecure` (warned about when it is read).
    fn collector_tls(&mut self, phase: Phase) -> (Value, Option<ResourceAddr>, Vec<(&'static str, Value)>) {
        let settings = &self.platform.observability;
        if settings.otlp_insecure {
            return (m([("insecure", true.into())]), None, Vec::new());
        }
        let Some(pem) = settings.otlp_ca.clone() else {
            return (m([("insecure", false.into())]), None, Vec::new());
        };
        let config_map = Obj::new("v1", "ConfigMap", OBSERVABILITY_CA).field("data", m([("ca.crt", s(pem))]));
        let config_map = self.k8s("observability_ca", phase, config_map);
        let tls = m([("insecure", false.into()), ("ca_file", s(format!("{OBSERVABILITY_CA_DIR}/ca.crt")))]);
        let spec = vec![
            ("volumes", l([m([("name", s(OBSERVABILITY_CA)), ("configMap", m([("name", s(OBSERVABILITY_CA))]))])])),
            (
                "volumeMounts",
                l([m([
                    ("name", s(OBSERVABILITY_CA)),
                    ("mountPath", s(OBSERVABILITY_CA_DIR)),
                    ("readOnly", true.into()),
                ])]),
            ),
        ];
        (tls, Some(config_map), spec)
    }

    // Checks of the whole graph.

    fn finish(mut self) -> (Option<ResourceGraph>, Vec<Diagnostic>) {
        for (dependent, missing) in self.graph.connect() {
            let origin = self.graph.get(&dependent).and_then(|r| r.origin.clone());
            let d = Diagnostic::error(format!(
                "{dependent} depends on {missing}, which tenant {:?} does not have",
                self.slug
            ));
            self.diags.push(match self.dep_origins.get(&(dependent.clone(), missing.clone())).cloned().or(origin) {
                Some(at) => d.at(at),
                None => d,
            });
        }
        self.check_refs();
        super::lifecycle::ignore_rules(&mut self.graph, self.spec, self.catalog, &mut self.diags);
        super::lifecycle::moves(&mut self.graph, self.catalog, &mut self.diags);
        self.check_quota();
        self.check_phases();
        self.check_cycles();
        diag::sort(&mut self.diags);
        if diag::has_errors(&self.diags) {
            (None, self.diags)
        } else {
            (Some(self.graph), self.diags)
        }
    }

    /// The tenant's own workloads fit its tier's ResourceQuota: the API server refuses every pod
    /// past it, so a Deployment would never become available. Counts each Deployment's replicas
    /// and each Job's pod (all at once, as during an apply) with their containers' resources.
    fn check_quota(&mut self) {
        let Some(quota) = &self.tier.quota else { return };
        let mut used: BTreeMap<&str, i128> = BTreeMap::new();
        for r in self.graph.graph.node_weights() {
            // The edge namespace has its own quota (see `edge_namespace`).
            let namespace = r.attrs.get("namespace").or_else(|| r.attrs.get("metadata")?.get_path("namespace"));
            if namespace.and_then(Value::as_str) == Some(self.edge_ns.as_str()) {
                continue;
            }
            let pods = match r.addr.kind.as_str() {
                "kubernetes_deployment" => match r.attrs.get("spec").and_then(|s| s.get_path("replicas")) {
                    Some(Value::Int(n)) => i128::from(*n),
                    _ => 1,
                },
                "kubernetes_job" => 1,
                HELM_RELEASE => match release_values(r).and_then(|v| v.get_path("replicaCount")) {
                    Some(Value::Int(n)) => i128::from(*n),
                    _ => 1,
                },
                _ => continue,
            };
            *used.entry("pods").or_default() += pods;
            let resources: Vec<&Value> = if r.addr.kind == HELM_RELEASE {
                release_values(r).and_then(|v| v.get_path("resources")).into_iter().collect()
            } else {
                let containers = r.attrs.get("spec").and_then(|s| s.get_path("template.spec.containers"));
                containers
                    .and_then(Value::as_list)
                    .into_iter()
                    .flatten()
                    .filter_map(|c| c.get_path("resources"))
                    .collect()
            };
            for res in resources {
                for key in ["requests.cpu", "requests.memory", "limits.cpu", "limits.memory"] {
                    let q = res.get_path(key).and_then(Value::as_str);
                    *used.entry(key).or_default() += pods * q.and_then(crate::quantity::nanos).unwrap_or(0);
                }
            }
        }
        for (key, hard) in quota {
            let (Some(hard_n), Some(&need)) = (crate::quantity::nanos(hard), used.get(key.as_str())) else { continue };
            let need = if key == "pods" { need * 1_000_000_000 } else { need };
            if need > hard_n {
                let binary = key.ends_with("memory");
                let d = Diagnostic::error(format!(
                    "tenant {:?} needs {key} {} for its workloads, more than tier {:?}'s quota of {hard}: the API server would refuse the pods past it",
                    self.slug,
                    crate::quantity::display(need, binary),
                    self.tier.name
                ))
                .with_note("lower the services' replicas or resources (a tier's `service_resources` in schemas/tiers.hcl), or raise the quota")
                .at(self.spec.tier.location.clone());
                self.diags.push(d);
            }
        }
    }

    /// Every reference names an existing resource and an output its kind declares.
    fn check_refs(&mut self) {
        let mut found = Vec::new();
        for r in self.graph.graph.node_weights() {
            for v in r.attrs.values() {
                for (target, output) in v.refs() {
                    let Some(t) = self.graph.get(target) else { continue }; // Reported by connect().
                    if !outputs_of(&t.addr.kind).contains(&output) {
                        let declared = outputs_of(&t.addr.kind).join(", ");
                        found.push((
                            r.addr.clone(),
                            r.origin.clone(),
                            format!(
                                "{} refers to output {output:?} of {target}, which a {} does not have (outputs: {})",
                                r.addr,
                                t.addr.kind,
                                if declared.is_empty() { "none" } else { &declared }
                            ),
                        ));
                    }
                }
            }
        }
        for (_, origin, message) in found {
            let d = Diagnostic::error(message);
            self.diags.push(match origin {
                Some(at) => d.at(at),
                None => d,
            });
        }
    }

    /// No resource depends on a resource of a later phase.
    fn check_phases(&mut self) {
        let mut found = Vec::new();
        for r in self.graph.graph.node_weights() {
            for dep in &r.depends_on {
                let Some(d) = self.graph.get(dep) else { continue };
                if d.phase > r.phase {
                    let at = self.dep_origins.get(&(r.addr.clone(), dep.clone())).cloned().or_else(|| r.origin.clone());
                    found.push((
                        at,
                        format!(
                            "{} (phase {} {}) depends on {} of a later phase ({} {})",
                            r.addr,
                            r.phase.number(),
                            r.phase,
                            dep,
                            d.phase.number(),
                            d.phase
                        ),
                    ));
                }
            }
        }
        for (at, message) in found {
            let d = Diagnostic::error(message);
            self.diags.push(match at {
                Some(at) => d.at(at),
                None => d,
            });
        }
    }

    /// Dependency cycles, each printed in full, located at a `depends_on` element of the spec on
    /// the cycle when there is one (that is what the user can change), else in the catalog.
    fn check_cycles(&mut self) {
        let g = &self.graph.graph;
        for scc in tarjan_scc(g) {
            let looped = scc.len() > 1 || g.contains_edge(scc[0], scc[0]);
            if !looped {
                continue;
            }
            let members: BTreeSet<String> = scc.iter().map(|&ix| g[ix].addr.to_string()).collect();
            let start = members.first().cloned().unwrap_or_default();
            let next = |name: &str| -> Vec<String> {
                let Ok(at) = name.parse::<ResourceAddr>() else { return Vec::new() };
                self.graph
                    .get(&at)
                    .map(|r| r.depends_on.iter().map(|d| d.to_string()).filter(|d| members.contains(d)).collect())
                    .unwrap_or_default()
            };
            let cycle = catalog::shortest_cycle(&start, next);
            let edges: Vec<(ResourceAddr, ResourceAddr)> =
                cycle.windows(2).filter_map(|w| Some((w[0].parse().ok()?, w[1].parse().ok()?))).collect();
            let origins: Vec<Location> = edges.iter().filter_map(|e| self.dep_origins.get(e).cloned()).collect();
            let at = origins
                .iter()
                .find(|l| l.file == self.spec.location.file)
                .or(origins.first())
                .cloned()
                .or_else(|| self.graph.get(&edges[0].0).and_then(|r| r.origin.clone()));
            let d = Diagnostic::error(format!("dependency cycle: {}", cycle.join(" -> ")))
                .with_note("each resource depends on the next one");
            self.diags.push(match at {
                Some(at) => d.at(at),
                None => d,
            });
        }
    }
}

/// `registry/name:tag` as `(registry/name, tag)`: the tag is after the last ':' that follows the
/// last '/' (`latest` when there is none).
fn split_image<'a>(image: &'a str, platform_tag: &str) -> (&'a str, String) {
    // An image pinned by digest (`registry/name@sha256:…`) keeps the platform's tag beside its
    // digest, as a chart writes `repository:tag`: `registry/name:tag@sha256:…` runs the digest.
    if let Some((r, digest)) = image.split_once('@') {
        return (r, format!("{platform_tag}@{digest}"));
    }
    match image.rsplit_once(':') {
        Some((r, t)) if !t.contains('/') => (r, t.to_string()),
        _ => (image, "latest".to_string()),
    }
}

/// The values of a release that hold its pods' `replicaCount` and `resources`: the top level (the
/// services' chart), or `controller` (the ingress controller's chart, as the platform guide spells them).
fn release_values(r: &Resource) -> Option<&Value> {
    let values = r.attrs.get("values")?;
    Some(values.get_path("controller").unwrap_or(values))
}
