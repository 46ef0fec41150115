//! Tests of the graph compiler against the embedded catalog and the guide's examples.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde_json::json;

use super::{compile, to_dot, Resource, ResourceGraph};
use crate::addr::ResourceAddr;
use crate::catalog::Catalog;
use crate::diag::Location;
use crate::kind::outputs_of;
use crate::phase::Phase;
use crate::spec::{MonitoringSpec, PlatformConfig, ServiceOverride, Spanned, TenantSpec};
use crate::value::{Secret, Value};

fn catalog() -> &'static Catalog {
    static CATALOG: OnceLock<Catalog> = OnceLock::new();
    CATALOG.get_or_init(|| Catalog::embedded().expect("the embedded catalog loads"))
}

fn at(line: usize, column: usize) -> Location {
    Location { file: "tenants/acme.hcl".into(), line, column }
}

fn sp<T>(value: T, line: usize, column: usize) -> Spanned<T> {
    Spanned::new(value, at(line, column))
}

/// The guide's example tenant.
fn acme(tier: &str) -> TenantSpec {
    TenantSpec {
        slug: sp("acme".into(), 1, 9),
        id: sp("550e8400-e29b-41d4-a716-446655440000".into(), 2, 17),
        tier: sp(tier.into(), 3, 17),
        region: sp("eastus".into(), 4, 17),
        admin_email: sp("admin@acme.example".into(), 5, 17),
        display_name: None,
        services: BTreeMap::new(),
        monitoring: MonitoringSpec::default(),
        protect_database: None,
        ignore_changes: Vec::new(),
        location: at(1, 1),
    }
}

fn build(spec: &TenantSpec) -> ResourceGraph {
    let (graph, diags) = compile(spec, catalog(), &PlatformConfig::default());
    assert!(diags.is_empty(), "{}", diags.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("\n"));
    graph.expect("a graph when there are no errors")
}

fn errors(spec: &TenantSpec) -> Vec<String> {
    let (graph, diags) = compile(spec, catalog(), &PlatformConfig::default());
    assert!(graph.is_none(), "no graph when there are errors");
    diags.iter().map(|d| d.to_string()).collect()
}

fn get<'g>(g: &'g ResourceGraph, address: &str) -> &'g Resource {
    g.get(&address.parse().unwrap()).unwrap_or_else(|| panic!("{address} exists"))
}

fn json_of(r: &Resource) -> serde_json::Value {
    serde_json::Value::from(Value::Map(r.attrs.clone()))
}

fn path<'r>(r: &'r Resource, dotted: &str) -> &'r Value {
    let (first, rest) = dotted.split_once('.').unwrap_or((dotted, ""));
    let v = &r.attrs[first];
    if rest.is_empty() {
        v
    } else {
        v.get_path(rest).unwrap_or_else(|| panic!("{} has {dotted}", r.addr))
    }
}

fn per_phase(g: &ResourceGraph) -> Vec<usize> {
    let mut counts = vec![0; 10];
    for r in g.graph.node_weights() {
        counts[usize::from(r.phase.number()) - 1] += 1;
    }
    counts
}

#[test]
fn resource_counts_per_tier() {
    let free = build(&acme("free"));
    let pro = build(&acme("professional"));
    let ent = build(&acme("enterprise"));
    // Phase 6: the edge namespace, its quota and five policies beside the controller's eight objects;
    // phase 8: the Certificate, the Ingress and its two ExternalName Services.
    assert_eq!(per_phase(&pro), [5, 6, 6, 13, 14, 15, 6, 4, 8, 6]);
    assert_eq!(per_phase(&free), per_phase(&pro), "free and professional differ in values, not in resources");
    assert_eq!(per_phase(&ent), [4, 6, 6, 13, 14, 15, 6, 4, 8, 6], "enterprise has no ResourceQuota");
    assert_eq!(pro.len(), 83);

    let has = |g: &ResourceGraph, a: &str| g.get(&a.parse().unwrap()).is_some();
    assert!(has(&free, "kubernetes_resource_quota.tenant") && has(&pro, "kubernetes_resource_quota.tenant"));
    assert!(!has(&ent, "kubernetes_resource_quota.tenant"));
    assert!(has(&pro, "postgresql_schema.tenant") && !has(&pro, "postgresql_database.tenant"));
    assert!(has(&ent, "postgresql_database.tenant") && !has(&ent, "postgresql_schema.tenant"));
    assert_eq!(path(get(&free, "postgresql_role.tenant"), "connection_limit"), &Value::Int(10));
    assert_eq!(path(get(&pro, "postgresql_role.tenant"), "connection_limit"), &Value::Int(40));
}

#[test]
fn namespace_is_labelled_exactly_as_the_seed() {
    let g = build(&acme("professional"));
    let ns = get(&g, "kubernetes_namespace.tenant");
    assert_eq!(ns.phase, Phase::CreateNamespace);
    let mut meta = json_of(ns)["metadata"].clone();
    assert_eq!(
        meta["annotations"]["matih.ai/provisioned-at"],
        json!({ "$computed": "set when the namespace is created" })
    );
    meta["annotations"].as_object_mut().unwrap().remove("matih.ai/provisioned-at");
    assert_eq!(
        meta,
        json!({
            "name": "matih-acme",
            "labels": {
                "matih.ai/tenant-id": "550e8400-e29b-41d4-a716-446655440000",
                "matih.ai/tenant-slug": "acme",
                "matih.ai/tier": "professional",
                "matih.ai/region": "eastus",
                "matih.ai/managed-by": "tenant-service",
                "pod-security.kubernetes.io/enforce": "restricted",
                "pod-security.kubernetes.io/enforce-version": "v1.30",
                "pod-security.kubernetes.io/audit": "restricted",
                "pod-security.kubernetes.io/audit-version": "v1.30",
                "pod-security.kubernetes.io/warn": "restricted",
                "pod-security.kubernetes.io/warn-version": "v1.30",
            },
            "annotations": { "matih.ai/provisioned-by": "admin@matih.ai" },
        })
    );
    assert_eq!(json_of(ns)["apiVersion"], "v1");
    assert_eq!(json_of(ns)["kind"], "Namespace");
    // The edge namespace: the same labels (and Pod Security level), no annotations.
    let edge = get(&g, "kubernetes_namespace.edge");
    assert_eq!(edge.phase, Phase::DeployIngressController);
    let mut edge_meta = meta.clone();
    edge_meta["name"] = "matih-acme-edge".into();
    edge_meta.as_object_mut().unwrap().remove("annotations");
    assert_eq!(json_of(edge)["metadata"], edge_meta);
    // Every namespaced object of the tenant carries the same labels and lives in the namespace, but
    // the ingress controller's, the Ingress's and theirs, which live in the edge namespace.
    let in_edge = |r: &Resource| {
        r.addr.name == "ingress_controller"
            || r.addr.name.starts_with("edge")
            || ["kubernetes_ingress.tenant", "kubernetes_certificate.tenant"].contains(&r.addr.to_string().as_str())
    };
    for r in g.graph.node_weights().filter(|r| r.addr.kind.starts_with("kubernetes_")) {
        let j = json_of(r);
        for (k, v) in meta["labels"].as_object().unwrap().iter().filter(|(k, _)| k.starts_with("matih.ai/")) {
            assert_eq!(&j["metadata"]["labels"][k], v, "{} label {k}", r.addr);
        }
        let cluster_scoped = ["Namespace", "IngressClass", "ClusterRole", "ClusterRoleBinding"];
        if !cluster_scoped.contains(&j["kind"].as_str().unwrap()) {
            let want = if in_edge(r) { "matih-acme-edge" } else { "matih-acme" };
            assert_eq!(j["metadata"]["namespace"], want, "{}", r.addr);
            assert!(r.force_new.contains("metadata.namespace"));
            let edge_dep = r.depends_on.contains(&"kubernetes_namespace.edge".parse().unwrap());
            assert_eq!(edge_dep, in_edge(r), "{}", r.addr);
        } else {
            assert!(j["metadata"].get("namespace").is_none(), "{}", r.addr);
        }
        assert!(r.force_new.contains("metadata.name"), "{}", r.addr);
    }
}

#[test]
fn quotas_are_exactly_the_seeds() {
    let hard =
        |tier: &str| json_of(get(&build(&acme(tier)), "kubernetes_resource_quota.tenant"))["spec"]["hard"].clone();
    assert_eq!(
        hard("free"),
        json!({ "requests.cpu": "2", "limits.cpu": "4", "requests.memory": "4Gi", "limits.memory": "8Gi", "pods": "20" })
    );
    assert_eq!(
        hard("professional"),
        json!({ "requests.cpu": "8", "limits.cpu": "16", "requests.memory": "16Gi", "limits.memory": "32Gi", "pods": "50" })
    );
}

#[test]
fn ingress_is_exactly_the_seeds() {
    let g = build(&acme("professional"));
    let ingress = get(&g, "kubernetes_ingress.tenant");
    assert_eq!(ingress.phase, Phase::CreateTenantIngress);
    let mut j = json_of(ingress);
    j["metadata"].as_object_mut().unwrap().remove("labels");
    assert_eq!(
        j,
        json!({
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "metadata": {
                "name": "tenant-ingress",
                "namespace": "matih-acme-edge",
                "annotations": { "cert-manager.io/cluster-issuer": "letsencrypt-prod-dns01" },
            },
            "spec": {
                "ingressClassName": "nginx-acme",
                "tls": [{ "hosts": ["acme.matih.ai", "*.acme.matih.ai"], "secretName": "acme-tls-certificate" }],
                "rules": [
                    {
                        "host": "acme.matih.ai",
                        "http": { "paths": [{
                            "path": "/api",
                            "pathType": "Prefix",
                            "backend": { "service": { "name": "api-gateway", "port": { "number": 8080 } } },
                        }] },
                    },
                    {
                        "host": "bi.acme.matih.ai",
                        "http": { "paths": [{
                            "path": "/",
                            "pathType": "Prefix",
                            "backend": { "service": { "name": "bi-workbench", "port": { "number": 3000 } } },
                        }] },
                    },
                ],
            },
        })
    );
    // The backends exist, and the Ingress waits for them, its certificate and the DNS records.
    for dep in [
        "kubernetes_service.edge_api_gateway",
        "kubernetes_service.edge_bi_workbench",
        "kubernetes_certificate.tenant",
        "kubernetes_ingress_class.tenant",
        "dns_a_record.apex",
        "dns_a_record.wildcard",
        "dns_a_record.api",
        "dns_a_record.bi",
    ] {
        assert!(ingress.depends_on.contains(&dep.parse().unwrap()), "ingress depends on {dep}");
    }
    let api = json_of(get(&g, "kubernetes_service.api_gateway"));
    assert_eq!(api["metadata"]["name"], "api-gateway");
    assert_eq!(api["spec"]["ports"][0]["port"], 8080);
    assert_eq!(api["spec"]["selector"], json!({ "app.kubernetes.io/name": "query-engine" }));
    let bi = json_of(get(&g, "kubernetes_service.bi_workbench"));
    assert_eq!(
        (bi["metadata"]["name"].clone(), bi["spec"]["ports"][0]["port"].clone()),
        (json!("bi-workbench"), json!(3000))
    );
    // In the edge namespace the backends are ExternalName Services of the same names and ports that
    // name the tenant namespace's, which they wait for.
    for (name, port) in [("api_gateway", 8080), ("bi_workbench", 3000)] {
        let edge = get(&g, &format!("kubernetes_service.edge_{name}"));
        assert_eq!(edge.phase, Phase::CreateTenantIngress);
        assert!(edge.depends_on.contains(&format!("kubernetes_service.{name}").parse().unwrap()));
        let j = json_of(edge);
        let k8s_name = name.replace('_', "-");
        assert_eq!(
            (&j["metadata"]["name"], &j["metadata"]["namespace"]),
            (&json!(k8s_name), &json!("matih-acme-edge"))
        );
        assert_eq!(
            j["spec"],
            json!({
                "type": "ExternalName",
                "externalName": format!("{k8s_name}.matih-acme.svc.cluster.local"),
                "ports": [{ "name": "http", "port": port, "targetPort": port, "protocol": "TCP" }],
            })
        );
    }

    let cert = json_of(get(&g, "kubernetes_certificate.tenant"));
    assert_eq!(cert["apiVersion"], "cert-manager.io/v1");
    assert_eq!(
        cert["spec"],
        json!({
            "secretName": "acme-tls-certificate",
            "dnsNames": ["acme.matih.ai", "*.acme.matih.ai"],
            "issuerRef": { "name": "letsencrypt-prod-dns01", "kind": "ClusterIssuer", "group": "cert-manager.io" },
        })
    );
}

#[test]
fn service_deployments_carry_the_seeds_tenant_values() {
    let g = build(&acme("professional"));
    let d = json_of(get(&g, "kubernetes_deployment.ai_service"));
    assert_eq!(d["metadata"]["name"], "ai-service");
    assert_eq!(d["spec"]["replicas"], 1);
    let c = &d["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["image"], "matih.azurecr.io/ai-service:latest");
    assert_eq!(
        c["env"],
        json!([
            { "name": "TENANT_ID", "value": "550e8400-e29b-41d4-a716-446655440000" },
            { "name": "DATABASE_URL", "valueFrom": { "secretKeyRef": { "name": "tenant-database-credentials", "key": "DATABASE_URL" } } },
        ])
    );
    assert_eq!(
        c["resources"],
        json!({ "requests": { "cpu": "250m", "memory": "512Mi" }, "limits": { "cpu": "1000m", "memory": "1Gi" } })
    );
    let r = get(&g, "kubernetes_deployment.ai_service");
    assert!(r.force_new.contains("spec.selector"));
    assert_eq!(r.phase, Phase::DeployCoreServices);
    assert_eq!(get(&g, "kubernetes_deployment.render_service").phase, Phase::DeployDataServices);
    // Pods match their own selector.
    let labels = d["spec"]["template"]["metadata"]["labels"].as_object().unwrap();
    for (k, v) in d["spec"]["selector"]["matchLabels"].as_object().unwrap() {
        assert_eq!(&labels[k], v);
    }
}

#[test]
fn overrides_change_replicas_and_image_tag() {
    let mut spec = acme("professional");
    spec.services.insert(
        "ai_service".into(),
        ServiceOverride {
            replicas: Some(sp(2, 8, 20)),
            image_tag: Some(sp("1.4.2".into(), 8, 40)),
            location: Some(at(8, 5)),
            ..ServiceOverride::default()
        },
    );
    let g = build(&spec);
    let d = json_of(get(&g, "kubernetes_deployment.ai_service"));
    assert_eq!(d["spec"]["replicas"], 2);
    assert_eq!(d["spec"]["template"]["spec"]["containers"][0]["image"], "matih.azurecr.io/ai-service:1.4.2");
    assert_eq!(get(&g, "kubernetes_deployment.ai_service").origin, Some(at(8, 5)));
    let other = json_of(get(&g, "kubernetes_deployment.query_engine"));
    assert_eq!(other["spec"]["template"]["spec"]["containers"][0]["image"], "matih.azurecr.io/query-engine:latest");
}

#[test]
fn database_phase_matches_the_seed() {
    let g = build(&acme("professional"));
    let role = get(&g, "postgresql_role.tenant");
    assert_eq!(path(role, "name"), &Value::str("tenant_acme"));
    assert_eq!(path(role, "password"), &Value::Secret(Secret { source: "generated".into(), fingerprint: None }));
    let secret = json_of(get(&g, "kubernetes_secret.database_credentials"));
    assert_eq!(secret["metadata"]["name"], "tenant-database-credentials");
    assert_eq!(secret["type"], "Opaque");
    let data = secret["data"].as_object().unwrap();
    assert_eq!(
        data.keys().collect::<Vec<_>>(),
        ["DATABASE_URL", "POSTGRES_DB", "POSTGRES_HOST", "POSTGRES_PASSWORD", "POSTGRES_PORT", "POSTGRES_USER"]
    );
    assert_eq!(data["POSTGRES_PORT"], "NTQzMg==", "base64 of 5432");
    assert_eq!(data["POSTGRES_USER"], "dGVuYW50X2FjbWU=", "base64 of tenant_acme");
    assert_eq!(data["POSTGRES_DB"], "bWF0aWhfdGVuYW50cw==", "base64 of the shared database matih_tenants");
    // The role generates the password; the Secret takes it from the role's sensitive outputs.
    assert_eq!(data["POSTGRES_PASSWORD"], json!({ "$secret": { "source": "output:postgresql_role.tenant.password" } }));
    assert_eq!(data["DATABASE_URL"], json!({ "$secret": { "source": "output:postgresql_role.tenant.database_url" } }));
    let migrations = json_of(get(&g, "postgresql_migrations.tenant"));
    assert_eq!(migrations["schema"], "tenant_acme");
    let list = migrations["migrations"].as_array().unwrap();
    assert_eq!(
        list.iter().map(|m| m["script"].as_str().unwrap()).collect::<Vec<_>>(),
        ["V1__init.sql", "V2__reference_tables.sql", "R__views.sql"]
    );
    assert_eq!(list[0]["version"], "1");
    assert_eq!(list[0]["description"], "init");
    assert_eq!(list[2]["version"], serde_json::Value::Null);
    assert_eq!(list[0]["checksum"], json!(crate::catalog::flyway_checksum(catalog().migrations[0].sql.as_str())));
    let seed = json_of(get(&g, "postgresql_seed_data.tenant"));
    assert!(seed["files"].as_array().unwrap().iter().all(|f| f["sha256"].as_str().unwrap().starts_with("sha256:")));
    let check = get(&g, "postgresql_connectivity_check.tenant");
    assert!(check.depends_on.contains(&"kubernetes_secret.database_credentials".parse().unwrap()));

    let ent = build(&acme("enterprise"));
    let db = get(&ent, "postgresql_database.tenant");
    assert_eq!(path(db, "name"), &Value::str("tenant_acme"));
    assert!(db.force_new.contains("name"));
    assert_eq!(json_of(get(&ent, "kubernetes_secret.database_credentials"))["data"]["POSTGRES_DB"], "dGVuYW50X2FjbWU=");
}

#[test]
fn ingress_controller_and_dns_follow_the_seed() {
    let g = build(&acme("professional"));
    let class = json_of(get(&g, "kubernetes_ingress_class.tenant"));
    assert_eq!(class["metadata"]["name"], "nginx-acme");
    assert_eq!(class["spec"]["controller"], "k8s.io/ingress-nginx-acme");
    assert!(get(&g, "kubernetes_ingress_class.tenant").force_new.contains("spec.controller"));
    let d = json_of(get(&g, "kubernetes_deployment.ingress_controller"));
    assert_eq!(d["spec"]["replicas"], 2);
    let c = &d["spec"]["template"]["spec"]["containers"][0];
    let args: Vec<&str> = c["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    for arg in [
        "--ingress-class=nginx-acme",
        "--controller-class=k8s.io/ingress-nginx-acme",
        "--watch-namespace=matih-acme-edge",
    ] {
        assert!(args.contains(&arg), "{arg} in {args:?}");
    }
    assert_eq!(
        c["resources"],
        json!({ "requests": { "cpu": "100m", "memory": "128Mi" }, "limits": { "cpu": "500m", "memory": "256Mi" } })
    );
    assert_eq!(
        d["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"], "ingress-nginx",
        "the guide's policy selects it"
    );
    let binding = json_of(get(&g, "kubernetes_cluster_role_binding.ingress_controller"));
    assert_eq!(binding["subjects"][0]["namespace"], "matih-acme-edge");
    // The edge namespace's quota: the controller's replicas twice over (a rolling update), one
    // LoadBalancer; the tenant's quota no longer counts the controller.
    assert_eq!(
        json_of(get(&g, "kubernetes_resource_quota.edge"))["spec"]["hard"],
        json!({ "pods": "4", "services.loadbalancers": "1", "requests.cpu": "400m", "requests.memory": "512Mi",
                "limits.cpu": "2", "limits.memory": "1Gi" })
    );
    let svc = json_of(get(&g, "kubernetes_service.ingress_controller"));
    assert_eq!(svc["spec"]["type"], "LoadBalancer");
    assert_eq!(
        svc["metadata"]["annotations"]["service.beta.kubernetes.io/azure-load-balancer-health-probe-request-path"],
        "/healthz"
    );

    let zone = get(&g, "dns_zone.tenant");
    assert_eq!(path(zone, "name"), &Value::str("acme.matih.ai"));
    assert!(zone.force_new.contains("name"));
    let ns = get(&g, "dns_ns_delegation.tenant");
    assert_eq!((path(ns, "zone"), path(ns, "name")), (&Value::str("matih.ai"), &Value::str("acme")));
    assert_eq!(path(ns, "records"), &Value::Ref { resource: zone.addr.clone(), output: "nameservers".into() });
    let lb = Value::Ref {
        resource: "kubernetes_service.ingress_controller".parse().unwrap(),
        output: "load_balancer_ip".into(),
    };
    for (name, record) in [("apex", "@"), ("wildcard", "*"), ("api", "api"), ("bi", "bi")] {
        let r = get(&g, &format!("dns_a_record.{name}"));
        assert_eq!(path(r, "name"), &Value::str(record));
        assert_eq!(path(r, "ttl"), &Value::Int(300));
        assert_eq!(path(r, "records"), &Value::list([lb.clone()]));
    }
}

#[test]
fn network_policies_include_the_seeds_three_and_select_namespaces_by_name() {
    let g = build(&acme("professional"));
    let spec_of = |name: &str| json_of(get(&g, &format!("kubernetes_network_policy.{name}")))["spec"].clone();
    assert_eq!(spec_of("default_deny_ingress"), json!({ "podSelector": {}, "policyTypes": ["Ingress"] }));
    assert_eq!(
        spec_of("allow_same_namespace"),
        json!({ "podSelector": {}, "ingress": [{ "from": [{ "podSelector": {} }] }] })
    );
    // The controller's pods of the edge namespace, only to the Ingress's backends on their ports.
    let backends = json!({ "matchExpressions": [
        { "key": "app.kubernetes.io/name", "operator": "In", "values": ["bi-service", "query-engine"] },
    ] });
    let ports = json!([{ "protocol": "TCP", "port": 3000 }, { "protocol": "TCP", "port": 8080 }]);
    assert_eq!(
        spec_of("allow_ingress_controller"),
        json!({ "podSelector": backends, "policyTypes": ["Ingress"], "ingress": [{ "from": [{
            "namespaceSelector": { "matchLabels": { "kubernetes.io/metadata.name": "matih-acme-edge" } },
            "podSelector": { "matchLabels": { "app.kubernetes.io/name": "ingress-nginx" } },
        }], "ports": ports }] })
    );
    // The edge namespace: everything denied, then the LoadBalancer in, DNS, the API server and the
    // backends out, for the controller's pods only; created with the namespace in phase 6.
    let edge: Vec<String> = g
        .graph
        .node_weights()
        .filter(|r| {
            r.addr.kind == "kubernetes_network_policy" && json_of(r)["metadata"]["namespace"] == "matih-acme-edge"
        })
        .map(|r| {
            assert_eq!(r.phase, Phase::DeployIngressController, "{}", r.addr);
            r.addr.name.clone()
        })
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(
        edge,
        [
            "edge_allow_backends_egress",
            "edge_allow_dns_egress",
            "edge_allow_kubernetes_api_egress",
            "edge_allow_loadbalancer",
            "edge_default_deny"
        ]
    );
    assert_eq!(spec_of("edge_default_deny"), json!({ "podSelector": {}, "policyTypes": ["Ingress", "Egress"] }));
    assert_eq!(
        spec_of("edge_allow_backends_egress")["egress"],
        json!([{ "to": [{
            "namespaceSelector": { "matchLabels": { "kubernetes.io/metadata.name": "matih-acme" } },
            "podSelector": backends,
        }], "ports": ports }])
    );
    // Only Prometheus reaches the API server from the tenant namespace now.
    assert_eq!(
        spec_of("allow_kubernetes_api_egress")["podSelector"],
        json!({ "matchLabels": { "app.kubernetes.io/name": "prometheus" } })
    );
    // The internet only, for IPv4 and IPv6: no private, CGNAT, loopback or link-local range.
    let to = &spec_of("allow_connector_internet_egress")["egress"][0]["to"];
    assert_eq!(
        to[0]["ipBlock"]["except"],
        json!(["10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12", "192.168.0.0/16"])
    );
    assert_eq!(to[1]["ipBlock"], json!({ "cidr": "::/0", "except": ["::1/128", "fc00::/7", "fe80::/10"] }));
    assert_eq!(spec_of("allow_database_egress")["egress"][0]["ports"][0]["port"], 5432, "a number, not a named port");
    assert_eq!(
        spec_of("allow_control_plane_egress")["egress"][0]["to"][0]["namespaceSelector"]["matchLabels"]
            ["kubernetes.io/metadata.name"],
        "matih-system"
    );
    assert_eq!(
        spec_of("allow_connector_internet_egress")["podSelector"]["matchExpressions"][0]["values"],
        json!(["pipeline-service"])
    );

    // Without the connector service, nothing may reach the internet.
    let mut spec = acme("professional");
    spec.services.insert(
        "pipeline_service".into(),
        ServiceOverride { enabled: Some(sp(false, 9, 15)), ..ServiceOverride::default() },
    );
    let g = build(&spec);
    assert!(g.get(&"kubernetes_network_policy.allow_connector_internet_egress".parse().unwrap()).is_none());
    assert!(g.get(&"kubernetes_deployment.pipeline_service".parse().unwrap()).is_none());
    assert!(g.get(&"kubernetes_service.pipeline_service".parse().unwrap()).is_none());
}

#[test]
fn monitoring_and_observability_are_tenant_scoped() {
    let mut spec = acme("professional");
    spec.monitoring.notify_email = vec![sp("ops@acme.example".into(), 12, 20), sp("admin@acme.example".into(), 12, 40)];
    spec.monitoring.notify_slack_webhook_env = Some(sp("ACME_SLACK_WEBHOOK".into(), 13, 32));
    let g = build(&spec);
    assert_eq!(per_phase(&g)[8], 9, "the Slack webhook Secret is added");
    let rules = json_of(get(&g, "kubernetes_prometheus_rule.tenant"));
    let rules = rules["spec"]["groups"][0]["rules"].as_array().unwrap();
    assert_eq!(rules.len(), 6);
    for r in rules {
        assert!(r["expr"].as_str().unwrap().contains(r#"namespace="matih-acme""#), "{r}");
        assert!(!r["expr"].as_str().unwrap().contains("{namespace}"));
    }
    assert_eq!(rules[2]["labels"]["severity"], "critical");
    let am = json_of(get(&g, "kubernetes_alertmanager_config.tenant"));
    let to: Vec<&str> = am["spec"]["receivers"][0]["emailConfigs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["to"].as_str().unwrap())
        .collect();
    assert_eq!(to, ["admin@acme.example", "ops@acme.example"], "admin first, duplicates once");
    assert_eq!(am["spec"]["receivers"][1]["name"], "slack");
    let webhook = get(&g, "kubernetes_secret.slack_webhook");
    assert_eq!(
        webhook.attrs["data"],
        Value::map([("url", Value::Secret(Secret { source: "env:ACME_SLACK_WEBHOOK".into(), fingerprint: None }))])
    );
    assert_eq!(webhook.origin, Some(at(13, 32)));
    let dashboards = json_of(get(&g, "kubernetes_config_map.grafana_dashboards"));
    assert_eq!(dashboards["metadata"]["labels"]["grafana_dashboard"], "1");
    let board = dashboards["data"]["tenant-overview.json"].as_str().unwrap();
    assert!(board.contains(r#"namespace=\"matih-acme\""#) && !board.contains("{namespace}"));
    serde_json::from_str::<serde_json::Value>(board).expect("the dashboard stays valid JSON");

    let otel = json_of(get(&g, "kubernetes_open_telemetry_collector.tenant"));
    assert_eq!(otel["apiVersion"], "opentelemetry.io/v1beta1");
    assert_eq!(
        otel["spec"]["config"]["processors"]["resource"]["attributes"][0],
        json!({ "key": "tenant_id", "value": "acme", "action": "upsert" })
    );
    let loki = json_of(get(&g, "kubernetes_config_map.loki_collection"));
    assert!(loki["data"]["collection.json"].as_str().unwrap().contains("matih-acme"));
    let tempo = json_of(get(&g, "kubernetes_config_map.tempo_overrides"));
    assert!(tempo["data"]["overrides.json"].as_str().unwrap().contains("336h"));
    assert!(get(&g, "kubernetes_job.observability_check").force_new.contains("spec.template"));

    let without = build(&acme("professional"));
    assert_eq!(
        json_of(get(&without, "kubernetes_alertmanager_config.tenant"))["spec"]["receivers"].as_array().unwrap().len(),
        1
    );
}

#[test]
fn references_resolve_to_declared_outputs_and_phases_only_look_back() {
    for tier in ["free", "professional", "enterprise"] {
        let mut g = build(&acme(tier));
        assert!(g.connect().is_empty(), "every dependency names a resource");
        let mut refs = 0;
        for r in g.graph.node_weights() {
            for v in r.attrs.values() {
                for (target, output) in v.refs() {
                    refs += 1;
                    let t = g.get(target).unwrap_or_else(|| panic!("{} refers to missing {target}", r.addr));
                    assert!(
                        outputs_of(&t.addr.kind).contains(&output),
                        "{} refers to undeclared {target}.{output}",
                        r.addr
                    );
                    assert!(r.depends_on.contains(target), "a reference is a dependency");
                }
            }
            for dep in &r.depends_on {
                let d = g.get(dep).unwrap();
                assert!(d.phase <= r.phase, "{} ({}) depends on {dep} ({})", r.addr, r.phase, d.phase);
            }
            assert!(r.origin.is_some(), "{} has an origin", r.addr);
        }
        assert_eq!(refs, 5, "the NS delegation and the four A records");
    }
}

#[test]
fn apply_order_respects_the_seeds_service_order() {
    let g = build(&acme("professional"));
    let order: Vec<String> = g.apply_order().iter().map(|r| r.addr.to_string()).collect();
    let pos = |name: &str| {
        order
            .iter()
            .position(|a| a == &format!("kubernetes_deployment.{name}"))
            .unwrap_or_else(|| panic!("{name} deployed"))
    };
    for (before, after) in [
        ("catalog_service", "semantic_layer"),
        ("semantic_layer", "bi_service"),
        ("query_engine", "bi_service"),
        ("catalog_service", "data_quality_service"),
        ("query_engine", "ml_service"),
        ("bi_service", "render_service"),
        ("ai_service", "pipeline_service"),
    ] {
        assert!(pos(before) < pos(after), "{before} before {after}");
    }
    assert_eq!(order[0], "kubernetes_namespace.tenant");
    let phases: Vec<Phase> = g.apply_order().iter().map(|r| r.phase).collect();
    assert!(phases.windows(2).all(|w| w[0] <= w[1]), "phases in order");
    let secret = order.iter().position(|a| a == "kubernetes_secret.database_credentials").unwrap();
    let check = order.iter().position(|a| a == "postgresql_connectivity_check.tenant").unwrap();
    assert!(secret < check);
}

#[test]
fn a_cycle_in_overrides_is_printed_whole() {
    let mut spec = acme("professional");
    spec.services.insert(
        "semantic_layer".into(),
        ServiceOverride {
            depends_on: vec![sp("render_service".into(), 20, 18)],
            location: Some(at(19, 5)),
            ..ServiceOverride::default()
        },
    );
    assert_eq!(
        errors(&spec),
        ["tenants/acme.hcl:20:18: dependency cycle: kubernetes_deployment.bi_service -> kubernetes_deployment.semantic_layer -> kubernetes_deployment.render_service -> kubernetes_deployment.bi_service\n    each resource depends on the next one"]
    );
}

#[test]
fn a_dependency_on_a_later_phase_is_located_at_the_element() {
    let mut spec = acme("professional");
    spec.services.insert(
        "query_engine".into(),
        ServiceOverride {
            depends_on: vec![sp("ai_service".into(), 7, 18), sp("pipeline_service".into(), 7, 32)],
            location: Some(at(6, 5)),
            ..ServiceOverride::default()
        },
    );
    assert_eq!(
        errors(&spec),
        ["tenants/acme.hcl:7:32: kubernetes_deployment.query_engine (phase 3 DEPLOY_CORE_SERVICES) depends on kubernetes_deployment.pipeline_service of a later phase (5 DEPLOY_DATA_SERVICES)"]
    );
    // Depending on a later service that depends back is both a phase error and a cycle.
    spec.services.get_mut("query_engine").unwrap().depends_on = vec![sp("bi_service".into(), 7, 18)];
    assert_eq!(
        errors(&spec),
        [
            "tenants/acme.hcl:7:18: kubernetes_deployment.query_engine (phase 3 DEPLOY_CORE_SERVICES) depends on kubernetes_deployment.bi_service of a later phase (5 DEPLOY_DATA_SERVICES)",
            "tenants/acme.hcl:7:18: dependency cycle: kubernetes_deployment.bi_service -> kubernetes_deployment.query_engine -> kubernetes_deployment.bi_service\n    each resource depends on the next one",
        ]
    );
}

#[test]
fn a_service_others_need_cannot_be_disabled() {
    let mut spec = acme("professional");
    spec.services.insert(
        "query_engine".into(),
        ServiceOverride { enabled: Some(sp(false, 6, 15)), ..ServiceOverride::default() },
    );
    let errs = errors(&spec);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(
        errs[0],
        "tenants/acme.hcl:6:15: service \"query_engine\" cannot be disabled\n    service \"bi_service\" depends on it\n    service \"ml_service\" depends on it\n    \"api-gateway\" (an Ingress backend) selects its pods"
    );
    // A leaf service can go.
    let mut spec = acme("professional");
    spec.services
        .insert("ml_service".into(), ServiceOverride { enabled: Some(sp(false, 6, 15)), ..ServiceOverride::default() });
    assert_eq!(build(&spec).len(), 81);
}

#[test]
fn a_slug_too_long_for_postgresql_is_reported() {
    let mut spec = acme("free");
    spec.slug = sp("a".repeat(57), 1, 9);
    let errs = errors(&spec);
    assert_eq!(errs.len(), 1);
    assert!(errs[0].starts_with("tenants/acme.hcl:1:9: the PostgreSQL name \"tenant_aaaa"), "{errs:?}");
}

#[test]
fn platform_settings_reach_the_manifests() {
    let platform = PlatformConfig {
        parent_zone: "example.net".into(),
        image_registry: "registry.local:5000".into(),
        image_tag: "2.0.0".into(),
        cluster_issuer: "staging".into(),
        postgres_port: 6432,
        ..PlatformConfig::default()
    };
    let (g, diags) = compile(&acme("free"), catalog(), &platform);
    assert!(diags.is_empty());
    let g = g.unwrap();
    assert_eq!(path(get(&g, "dns_zone.tenant"), "name"), &Value::str("acme.example.net"));
    let d = json_of(get(&g, "kubernetes_deployment.bi_service"));
    assert_eq!(d["spec"]["template"]["spec"]["containers"][0]["image"], "registry.local:5000/bi-service:2.0.0");
    let ingress = json_of(get(&g, "kubernetes_ingress.tenant"));
    assert_eq!(ingress["metadata"]["annotations"]["cert-manager.io/cluster-issuer"], "staging");
    assert_eq!(ingress["spec"]["rules"][1]["host"], "bi.acme.example.net");
    let policy = json_of(get(&g, "kubernetes_network_policy.allow_database_egress"));
    assert_eq!(policy["spec"]["egress"][0]["ports"][0]["port"], 6432);
}

#[test]
fn helm_delivery_makes_each_service_a_release_with_the_seeds_values() {
    let platform = PlatformConfig {
        delivery: crate::spec::Delivery::Helm,
        image_registry: "registry.local:5000".into(),
        image_tag: "2.0.0".into(),
        ..PlatformConfig::default()
    };
    let (g, diags) = compile(&acme("free"), catalog(), &platform);
    assert!(diags.is_empty(), "{diags:?}");
    let g = g.unwrap();
    let manifests = build(&acme("free"));
    for svc in &catalog().services {
        let at = |kind: &str| ResourceAddr::new(kind, &svc.name);
        assert!(g.get(&at("kubernetes_deployment")).is_none() && g.get(&at("kubernetes_service")).is_none());
        let r = g.get(&at("helm_release")).unwrap_or_else(|| panic!("{} is a release", svc.name));
        assert_eq!(r.phase, svc.phase);
        // The release depends on what the Deployment depended on, releases in place of Deployments.
        let deployment = manifests.get(&at("kubernetes_deployment")).unwrap();
        let want: std::collections::BTreeSet<String> = deployment
            .depends_on
            .iter()
            .map(|d| d.to_string().replace("kubernetes_deployment.", "helm_release."))
            .collect();
        let have: std::collections::BTreeSet<String> = r.depends_on.iter().map(ToString::to_string).collect();
        assert_eq!(have, want, "{}", svc.name);
    }
    let bi = json_of(get(&g, "helm_release.bi_service"));
    assert_eq!(bi["name"], "bi-service");
    assert_eq!(bi["namespace"], "matih-acme");
    assert_eq!((bi["chart"].as_str(), bi["version"].as_str()), (Some("matih-service"), Some("0.1.0")));
    assert_eq!(bi["status"], "deployed");
    let values = &bi["values"];
    assert_eq!(values["replicaCount"], 1);
    assert_eq!(values["image"], json!({"repository": "registry.local:5000/bi-service", "tag": "2.0.0"}));
    assert_eq!(values["port"], 3000);
    assert_eq!(values["env"][0]["name"], "TENANT_ID");
    assert_eq!(
        values["env"][1]["valueFrom"],
        json!({"secretKeyRef": {"name": "tenant-database-credentials", "key": "DATABASE_URL"}})
    );
    // The free tier's smaller resources, as the manifests delivery has them.
    let d = json_of(get(&manifests, "kubernetes_deployment.bi_service"));
    assert_eq!(values["resources"], d["spec"]["template"]["spec"]["containers"][0]["resources"]);
    assert_eq!(values["podLabels"]["matih.ai/tenant-slug"], "acme");
    // Ingress backends stay manifests, after the releases they route to.
    let gateway = get(&g, "kubernetes_service.api_gateway");
    assert!(gateway.depends_on.contains(&"helm_release.query_engine".parse().unwrap()));

    // Phase 6 is one release of the controller's chart with the platform guide's values, in place of the
    // manifests' eight objects; phase 7 publishes the IP its Service gets, phase 8 uses its class.
    for kind in ["kubernetes_deployment", "kubernetes_service", "kubernetes_role", "kubernetes_service_account"] {
        assert!(g.get(&ResourceAddr::new(kind, "ingress_controller")).is_none(), "{kind}");
    }
    assert!(g.get(&"kubernetes_ingress_class.tenant".parse().unwrap()).is_none());
    let release = get(&g, "helm_release.ingress_controller");
    assert_eq!(release.phase, Phase::DeployIngressController);
    let r = json_of(release);
    assert_eq!((r["name"].as_str(), r["namespace"].as_str()), (Some("ingress-nginx"), Some("matih-acme-edge")));
    assert_eq!((r["chart"].as_str(), r["version"].as_str()), (Some("matih-ingress-nginx"), Some("0.2.0")));
    assert!(release.depends_on.contains(&"kubernetes_namespace.edge".parse().unwrap()));
    assert!(g.get(&"kubernetes_resource_quota.edge".parse().unwrap()).is_some(), "the edge namespace is matih's");
    let c = &r["values"]["controller"];
    assert_eq!(
        c["ingressClassResource"],
        json!({"name": "nginx-acme", "controllerValue": "k8s.io/ingress-nginx-acme"})
    );
    assert_eq!(c["ingressClass"], "nginx-acme");
    assert_eq!(c["replicaCount"], 2);
    assert_eq!(
        c["service"],
        json!({"type": "LoadBalancer", "annotations": {
            "service.beta.kubernetes.io/azure-load-balancer-health-probe-request-path": "/healthz"}})
    );
    assert_eq!(c["admissionWebhooks"]["enabled"], false);
    assert_eq!(c["image"], json!({"repository": "registry.k8s.io/ingress-nginx/controller", "tag": "v1.11.3"}));
    assert_eq!(c["resources"]["limits"], json!({"cpu": "500m", "memory": "256Mi"}));
    assert!(c.get("tlsSecrets").is_none(), "the chart's Role reads its own namespace's Secrets");
    let lb = Value::Ref { resource: release.addr.clone(), output: "load_balancer_ip".into() };
    assert_eq!(path(get(&g, "dns_a_record.wildcard"), "records"), &Value::List(vec![lb]));
    let ingress = get(&g, "kubernetes_ingress.tenant");
    assert!(ingress.depends_on.contains(&"helm_release.ingress_controller".parse().unwrap()));
}

#[test]
fn dot_has_one_cluster_per_phase_per_tenant() {
    let a = build(&acme("professional"));
    let mut other = acme("enterprise");
    other.slug = sp("globex".into(), 1, 9);
    other.id = sp("9b2d3c1e-0000-4000-8000-000000000001".into(), 2, 17);
    let b = build(&other);
    let dot = to_dot(&[b, a]);
    assert!(dot.starts_with("digraph matih {\n"));
    assert!(dot.ends_with("}\n"));
    for slug in ["acme", "globex"] {
        assert!(dot.contains(&format!("subgraph \"cluster_{slug}\" {{")));
        for p in Phase::ALL {
            assert!(dot.contains(&format!("subgraph \"cluster_{slug}_{}\" {{", p.number())), "{slug} phase {p}");
        }
    }
    assert!(dot.contains("label=\"1 CREATE_NAMESPACE\";"));
    assert!(dot.contains("label=\"10 SETUP_OBSERVABILITY\";"));
    assert!(dot.contains("\"acme/kubernetes_namespace.tenant\" [label=\"kubernetes_namespace.tenant\"];"));
    assert!(dot.contains("\"acme/dns_zone.tenant\" -> \"acme/dns_ns_delegation.tenant\";"));
    assert!(dot.contains("\"acme/kubernetes_deployment.semantic_layer\" -> \"acme/kubernetes_deployment.bi_service\";"));
    assert!(dot.find("cluster_acme").unwrap() < dot.find("cluster_globex").unwrap(), "tenants sorted by slug");
    let acme_quota = "\"acme/kubernetes_resource_quota.tenant\"";
    assert!(dot.contains(acme_quota) && !dot.contains("\"globex/kubernetes_resource_quota.tenant\""));
    assert_eq!(dot, to_dot(&[build(&other), build(&acme("professional"))]), "deterministic");
}

#[test]
fn compiled_graphs_hold_no_clear_secret() {
    let mut spec = acme("professional");
    spec.monitoring.notify_slack_webhook_env = Some(sp("ACME_SLACK_WEBHOOK".into(), 13, 32));
    let g = build(&spec);
    let mut secrets = Vec::new();
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Secret(s) => out.push(s.source.clone()),
            Value::List(items) => items.iter().for_each(|i| walk(i, out)),
            Value::Map(m) => m.values().for_each(|i| walk(i, out)),
            _ => {}
        }
    }
    for r in g.apply_order() {
        r.attrs.values().for_each(|v| walk(v, &mut secrets));
    }
    secrets.sort();
    assert_eq!(
        secrets,
        [
            "env:ACME_SLACK_WEBHOOK",
            "generated",
            "generated",
            "output:postgresql_role.tenant.database_url",
            "output:postgresql_role.tenant.password",
            "output:postgresql_role.tenant.password"
        ]
    );
    let addr: ResourceAddr = "kubernetes_secret.slack_webhook".parse().unwrap();
    assert!(g.get(&addr).unwrap().attrs.values().any(Value::is_sensitive));
}

#[test]
fn a_thousand_tenants_compile_each_into_its_own_graph() {
    let specs: Vec<TenantSpec> = (0..1000)
        .map(|i| {
            let mut s = acme(["free", "professional", "enterprise"][i % 3]);
            s.slug = sp(format!("tenant-{i}"), 1, 9);
            s
        })
        .collect();
    // How fast is the benchmarks' business (`cargo bench --bench plan`), never a timed test.
    let graphs: Vec<ResourceGraph> = specs.iter().map(build).collect();
    assert!(graphs.iter().map(ResourceGraph::len).sum::<usize>() > 70_000);
    let namespaces: std::collections::BTreeSet<String> =
        graphs.iter().map(|g| json_of(get(g, "kubernetes_namespace.tenant"))["metadata"]["name"].to_string()).collect();
    assert_eq!(namespaces.len(), 1000, "one namespace each");
}

#[test]
fn workloads_that_do_not_fit_the_tiers_quota_are_an_error_at_the_tier() {
    // Every tier's own services fit its quota (the free tier runs them smaller).
    for tier in ["free", "professional", "enterprise"] {
        build(&acme(tier));
    }
    let free = build(&acme("free"));
    let d = json_of(get(&free, "kubernetes_deployment.ai_service"));
    assert_eq!(d["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"], "250m");
    // Ten replicas of one service do not.
    let mut spec = acme("free");
    spec.services.insert(
        "ai_service".into(),
        ServiceOverride { replicas: Some(sp(10, 8, 20)), location: Some(at(8, 5)), ..ServiceOverride::default() },
    );
    let errs = errors(&spec);
    assert!(
        errs.iter().any(|e| e.starts_with(
            "tenants/acme.hcl:3:17: tenant \"acme\" needs limits.cpu 4600m for its workloads, more than tier \"free\"'s quota of 4: the API server would refuse the pods past it"
        )),
        "{errs:?}"
    );
}

/// Every pod template of a graph (Deployments, Jobs, and the operators' custom resources' pod
/// settings), for the Pod Security checks.
fn pod_specs(g: &ResourceGraph) -> Vec<(String, serde_json::Value)> {
    g.apply_order()
        .into_iter()
        .filter_map(|r| {
            let j = json_of(r);
            let spec = j["spec"]["template"]["spec"].clone();
            (!spec.is_null()).then(|| (r.addr.to_string(), spec))
        })
        .collect()
}

#[test]
fn every_pod_meets_the_restricted_pod_security_standard() {
    let g = build(&acme("professional"));
    let specs = pod_specs(&g);
    let names: Vec<&str> = specs.iter().map(|(at, _)| at.as_str()).collect();
    assert_eq!(names.len(), 11, "nine services, the ingress controller and the pipeline check: {names:?}");
    for (at, spec) in specs {
        let pod = &spec["securityContext"];
        assert_eq!(pod["runAsNonRoot"], true, "{at}");
        assert_eq!(pod["seccompProfile"]["type"], "RuntimeDefault", "{at}");
        for c in spec["containers"].as_array().unwrap() {
            let sc = &c["securityContext"];
            assert_eq!(sc["allowPrivilegeEscalation"], false, "{at}");
            assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]), "{at}");
            let added = sc["capabilities"]["add"].as_array().cloned().unwrap_or_default();
            assert!(added.iter().all(|a| a == "NET_BIND_SERVICE"), "{at}: only NET_BIND_SERVICE may be added");
            let nginx = at.contains("ingress_controller");
            assert_eq!(sc["readOnlyRootFilesystem"], !nginx, "{at}: read-only but for nginx");
        }
    }
    let collector = json_of(get(&g, "kubernetes_open_telemetry_collector.tenant"));
    assert_eq!(collector["spec"]["podSecurityContext"]["seccompProfile"]["type"], "RuntimeDefault");
    assert_eq!(collector["spec"]["securityContext"]["capabilities"]["drop"], json!(["ALL"]));
    let prometheus = json_of(get(&g, "kubernetes_prometheus.tenant"));
    assert_eq!(prometheus["spec"]["securityContext"]["seccompProfile"]["type"], "RuntimeDefault");
}

#[test]
fn egress_reaches_the_database_and_api_server_addresses_only() {
    let spec_with = |platform: &PlatformConfig, name: &str| {
        let (g, diags) = compile(&acme("professional"), catalog(), platform);
        assert!(diags.is_empty(), "{diags:?}");
        json_of(get(&g.unwrap(), &format!("kubernetes_network_policy.{name}")))["spec"]["egress"].clone()
    };
    // No rule opens a port to any address: each egress rule names its peers.
    let g = build(&acme("professional"));
    for r in g.apply_order().into_iter().filter(|r| r.addr.kind == "kubernetes_network_policy") {
        for rule in json_of(r)["spec"]["egress"].as_array().into_iter().flatten() {
            assert!(rule["to"].as_array().is_some_and(|t| !t.is_empty()), "{}: {rule}", r.addr);
        }
    }
    // The default host is a Service of the control plane's namespace: that namespace, port 5432.
    let default = PlatformConfig::default();
    let db = spec_with(&default, "allow_database_egress");
    assert_eq!(
        db,
        json!([{ "to": [{ "namespaceSelector": { "matchLabels": { "kubernetes.io/metadata.name": "matih-system" } } }],
                 "ports": [{ "protocol": "TCP", "port": 5432 }] }])
    );
    // An IP address host is itself; written CIDRs win; a name outside the cluster is the private ranges.
    let ip = PlatformConfig { postgres_host: "10.1.2.3".into(), ..PlatformConfig::default() };
    assert_eq!(spec_with(&ip, "allow_database_egress")[0]["to"], json!([{ "ipBlock": { "cidr": "10.1.2.3/32" } }]));
    let cidrs = PlatformConfig { database_cidrs: vec!["10.9.0.0/16".into()], ..ip };
    assert_eq!(spec_with(&cidrs, "allow_database_egress")[0]["to"], json!([{ "ipBlock": { "cidr": "10.9.0.0/16" } }]));
    let name = PlatformConfig { postgres_host: "pg.internal".into(), ..PlatformConfig::default() };
    let to = spec_with(&name, "allow_database_egress")[0]["to"].clone();
    assert_eq!(to.as_array().unwrap().len(), 5);
    assert!(!to.to_string().contains("0.0.0.0/0"));
    // The API server: its URL's address, or the written CIDRs.
    let kube = PlatformConfig {
        kubernetes: Some(crate::spec::KubernetesPlatform {
            api_url: Some("https://[fd00::1]:6443".into()),
            ..Default::default()
        }),
        ..PlatformConfig::default()
    };
    let api = spec_with(&kube, "allow_kubernetes_api_egress");
    assert_eq!(api[0]["to"], json!([{ "ipBlock": { "cidr": "fd00::1/128" } }]));
    assert_eq!(api[0]["ports"], json!([{ "protocol": "TCP", "port": 443 }, { "protocol": "TCP", "port": 6443 }]));
    let kube = PlatformConfig { api_server_cidrs: vec!["10.0.0.1/32".into()], ..kube };
    assert_eq!(
        spec_with(&kube, "allow_kubernetes_api_egress")[0]["to"],
        json!([{ "ipBlock": { "cidr": "10.0.0.1/32" } }])
    );
    // The control plane's namespace on its service ports only.
    assert_eq!(
        spec_with(&default, "allow_control_plane_egress")[0]["ports"],
        json!([{ "protocol": "TCP", "port": 443 }, { "protocol": "TCP", "port": 8080 }])
    );
    // The observability backends: the collector alone, on Tempo's OTLP port.
    let obs = json_of(get(&g, "kubernetes_network_policy.allow_observability_egress"));
    assert_eq!(obs["spec"]["podSelector"], json!({ "matchLabels": { "app.kubernetes.io/name": "tenant-collector" } }));
    assert_eq!(obs["spec"]["egress"][0]["ports"], json!([{ "protocol": "TCP", "port": 4317 }]));
}

#[test]
fn the_collector_authenticates_with_generated_credentials_and_sets_no_tenancy_header() {
    let g = build(&acme("professional"));
    let secret = get(&g, "kubernetes_secret.observability_credentials");
    assert_eq!(path(secret, "data.password"), &Value::Secret(Secret { source: "generated".into(), fingerprint: None }));
    let collector = json_of(get(&g, "kubernetes_open_telemetry_collector.tenant"));
    let config = &collector["spec"]["config"];
    assert!(!config.to_string().contains("X-Scope-OrgID"), "no tenancy header chosen by the client: {config}");
    assert_eq!(config["exporters"]["otlp/tempo"]["auth"]["authenticator"], "basicauth/client");
    assert_eq!(config["service"]["extensions"], json!(["basicauth/client"]));
    assert_eq!(
        collector["spec"]["env"][1]["valueFrom"]["secretKeyRef"],
        json!({ "name": "observability-credentials", "key": "password" })
    );
    assert!(get(&g, "kubernetes_open_telemetry_collector.tenant")
        .depends_on
        .contains(&"kubernetes_secret.observability_credentials".parse().unwrap()));
}

#[test]
fn the_collectors_export_to_tempo_verifies_tls_unless_the_platform_opts_out() {
    let with = |observability: crate::spec::ObservabilityPlatform| {
        let platform = PlatformConfig { observability, ..PlatformConfig::default() };
        let (g, diags) = compile(&acme("professional"), catalog(), &platform);
        assert!(diags.is_empty(), "{diags:?}");
        g.unwrap()
    };
    let exporter = |g: &ResourceGraph| {
        json_of(get(g, "kubernetes_open_telemetry_collector.tenant"))["spec"]["config"]["exporters"]["otlp/tempo"]
            .clone()
    };
    let ca_map: ResourceAddr = "kubernetes_config_map.observability_ca".parse().unwrap();
    // By default: TLS verified against the collector image's system roots, nothing mounted, nothing more.
    let g = build(&acme("professional"));
    assert_eq!(exporter(&g)["tls"], json!({ "insecure": false }));
    assert!(g.get(&ca_map).is_none());
    let collector = json_of(get(&g, "kubernetes_open_telemetry_collector.tenant"));
    assert!(collector["spec"].get("volumes").is_none() && collector["spec"].get("volumeMounts").is_none());
    // The platform's CA: a ConfigMap in the collector's phase, mounted, named by ca_file.
    let pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    let g = with(crate::spec::ObservabilityPlatform { otlp_ca: Some(pem.into()), otlp_insecure: false });
    assert_eq!(exporter(&g)["tls"], json!({ "insecure": false, "ca_file": "/etc/matih/observability-ca/ca.crt" }));
    let map = get(&g, "kubernetes_config_map.observability_ca");
    assert_eq!(map.phase, Phase::SetupObservability);
    let map = json_of(map);
    assert_eq!(map["metadata"]["name"], "observability-ca");
    assert_eq!(map["metadata"]["namespace"], "matih-acme");
    assert_eq!(map["data"], json!({ "ca.crt": pem }));
    let collector = get(&g, "kubernetes_open_telemetry_collector.tenant");
    assert!(collector.depends_on.contains(&ca_map));
    let spec = &json_of(collector)["spec"];
    assert_eq!(spec["volumes"], json!([{ "name": "observability-ca", "configMap": { "name": "observability-ca" } }]));
    assert_eq!(
        spec["volumeMounts"],
        json!([{ "name": "observability-ca", "mountPath": "/etc/matih/observability-ca", "readOnly": true }])
    );
    // The opt-out: as before this setting existed (the platform file warns about it).
    let g = with(crate::spec::ObservabilityPlatform { otlp_ca: None, otlp_insecure: true });
    assert_eq!(exporter(&g)["tls"], json!({ "insecure": true }));
    assert!(g.get(&ca_map).is_none());
}

#[test]
fn images_pinned_by_digest_are_rendered_by_digest() {
    let digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    let platform = PlatformConfig {
        image_digests: [
            ("matih.azurecr.io/ai-service".to_string(), digest.to_string()),
            ("registry.k8s.io/ingress-nginx/controller".to_string(), digest.to_string()),
        ]
        .into(),
        ..PlatformConfig::default()
    };
    let (g, diags) = compile(&acme("professional"), catalog(), &platform);
    assert!(diags.is_empty(), "{diags:?}");
    let g = g.unwrap();
    let image = |at: &str| json_of(get(&g, at))["spec"]["template"]["spec"]["containers"][0]["image"].clone();
    assert_eq!(image("kubernetes_deployment.ai_service"), format!("matih.azurecr.io/ai-service@{digest}"));
    assert_eq!(image("kubernetes_deployment.query_engine"), "matih.azurecr.io/query-engine:latest", "not pinned");
    assert_eq!(
        image("kubernetes_deployment.ingress_controller"),
        format!("registry.k8s.io/ingress-nginx/controller@{digest}")
    );
    // Helm delivery: the chart's `repository:tag` runs the digest.
    let helm = PlatformConfig { delivery: crate::spec::Delivery::Helm, ..platform };
    let (g, _) = compile(&acme("professional"), catalog(), &helm);
    let release = json_of(get(&g.unwrap(), "helm_release.ai_service"));
    assert_eq!(
        release["values"]["image"],
        json!({ "repository": "matih.azurecr.io/ai-service", "tag": format!("latest@{digest}") })
    );
}
