//! The resource kinds the server knows: a built-in table, pre-registered custom resources, and kinds derived
//! from CustomResourceDefinition objects, plus the discovery documents that describe them.

use serde_json::{json, Value};

/// How object names of a kind are validated, as in the real API server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameRule {
    /// A DNS-1123 label (namespaces, services).
    Label,
    /// A DNS-1123 subdomain (most kinds).
    Subdomain,
    /// Any path segment: no '/' or '%', not '.' or '..' (RBAC kinds, whose names may contain ':').
    PathSegment,
}

/// One served resource: group, version, kind and REST naming.
#[derive(Clone, Debug)]
pub struct Kind {
    pub group: String,
    pub version: String,
    pub kind: String,
    pub plural: String,
    pub singular: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    /// Whether the kind has a `status` subresource: writes to the main resource then keep the stored status.
    pub status_subresource: bool,
    pub name_rule: NameRule,
}

impl Kind {
    /// The `apiVersion` of objects of this kind (`v1`, `apps/v1`).
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The group-qualified resource used in error messages (`deployments.apps`, `namespaces`).
    pub fn group_resource(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// The group-qualified kind used in validation messages (`Deployment.apps`).
    pub fn group_kind(&self) -> String {
        if self.group.is_empty() {
            self.kind.clone()
        } else {
            format!("{}.{}", self.kind, self.group)
        }
    }

    /// The key under which objects of this kind are stored, shared by all versions of a group.
    pub fn store_key(&self) -> (String, String) {
        (self.group.clone(), self.plural.clone())
    }
}

/// One row of the built-in table: group, version, kind, plural, short names (comma-separated), namespaced,
/// status subresource, name rule.
type BuiltinRow = (&'static str, &'static str, &'static str, &'static str, &'static str, bool, bool, NameRule);

/// One pre-registered custom resource: group, version, kind, plural, short names, namespaced, status subresource.
pub type CrdRow = (&'static str, &'static str, &'static str, &'static str, &'static str, bool, bool);

/// Built-in kinds.
const BUILTIN: &[BuiltinRow] = &[
    ("", "v1", "Namespace", "namespaces", "ns", false, true, NameRule::Label),
    ("", "v1", "ResourceQuota", "resourcequotas", "quota", true, true, NameRule::Subdomain),
    ("", "v1", "ServiceAccount", "serviceaccounts", "sa", true, false, NameRule::Subdomain),
    ("", "v1", "Secret", "secrets", "", true, false, NameRule::Subdomain),
    ("", "v1", "ConfigMap", "configmaps", "cm", true, false, NameRule::Subdomain),
    ("", "v1", "Service", "services", "svc", true, true, NameRule::Label),
    ("", "v1", "Pod", "pods", "po", true, true, NameRule::Subdomain),
    ("", "v1", "LimitRange", "limitranges", "limits", true, false, NameRule::Subdomain),
    ("apps", "v1", "Deployment", "deployments", "deploy", true, true, NameRule::Subdomain),
    ("apps", "v1", "StatefulSet", "statefulsets", "sts", true, true, NameRule::Subdomain),
    ("batch", "v1", "Job", "jobs", "", true, true, NameRule::Subdomain),
    ("networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies", "netpol", true, false, NameRule::Subdomain),
    ("networking.k8s.io", "v1", "Ingress", "ingresses", "ing", true, true, NameRule::Subdomain),
    ("networking.k8s.io", "v1", "IngressClass", "ingressclasses", "", false, false, NameRule::Subdomain),
    ("rbac.authorization.k8s.io", "v1", "Role", "roles", "", true, false, NameRule::PathSegment),
    ("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings", "", true, false, NameRule::PathSegment),
    ("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", "", false, false, NameRule::PathSegment),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRoleBinding",
        "clusterrolebindings",
        "",
        false,
        false,
        NameRule::PathSegment,
    ),
    (
        "apiextensions.k8s.io",
        "v1",
        "CustomResourceDefinition",
        "customresourcedefinitions",
        "crd,crds",
        false,
        true,
        NameRule::Subdomain,
    ),
];

/// Custom resources registered at start as CustomResourceDefinition objects:
/// group, version, kind, plural, short names, namespaced, status subresource. Adding one is a line.
pub const PREREGISTERED_CRDS: &[CrdRow] = &[
    ("cert-manager.io", "v1", "Certificate", "certificates", "cert,certs", true, true),
    ("cert-manager.io", "v1", "Issuer", "issuers", "", true, true),
    ("cert-manager.io", "v1", "ClusterIssuer", "clusterissuers", "", false, true),
    ("monitoring.coreos.com", "v1", "Prometheus", "prometheuses", "prom", true, true),
    ("monitoring.coreos.com", "v1", "PrometheusRule", "prometheusrules", "promrule", true, false),
    ("monitoring.coreos.com", "v1", "ServiceMonitor", "servicemonitors", "smon", true, false),
    ("monitoring.coreos.com", "v1alpha1", "AlertmanagerConfig", "alertmanagerconfigs", "amcfg", true, false),
    (
        "opentelemetry.io",
        "v1beta1",
        "OpenTelemetryCollector",
        "opentelemetrycollectors",
        "otelcol,otelcols",
        true,
        true,
    ),
];

fn split_names(s: &str) -> Vec<String> {
    s.split(',').filter(|n| !n.is_empty()).map(str::to_string).collect()
}

/// The built-in kinds, in discovery order.
pub fn builtin_kinds() -> Vec<Kind> {
    BUILTIN
        .iter()
        .map(|&(group, version, kind, plural, short, namespaced, status, name_rule)| Kind {
            group: group.into(),
            version: version.into(),
            kind: kind.into(),
            plural: plural.into(),
            singular: kind.to_lowercase(),
            namespaced,
            short_names: split_names(short),
            categories: if matches!(kind, "Pod" | "Service" | "Deployment" | "StatefulSet") {
                vec!["all".into()]
            } else {
                vec![]
            },
            status_subresource: status,
            name_rule,
        })
        .collect()
}

/// Builds the CustomResourceDefinition object for one pre-registered custom resource.
pub fn preregistered_crd(entry: &CrdRow) -> Value {
    let &(group, version, kind, plural, short, namespaced, status) = entry;
    let mut version_doc = json!({
        "name": version,
        "served": true,
        "storage": true,
        "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}},
    });
    if status {
        version_doc["subresources"] = json!({"status": {}});
    }
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("{plural}.{group}")},
        "spec": {
            "group": group,
            "names": {
                "kind": kind,
                "listKind": format!("{kind}List"),
                "plural": plural,
                "singular": kind.to_lowercase(),
                "shortNames": split_names(short),
            },
            "scope": if namespaced { "Namespaced" } else { "Cluster" },
            "versions": [version_doc],
        },
    })
}

/// Checks a CustomResourceDefinition object and returns the kinds it serves, or a list of (field, message) errors.
pub fn kinds_from_crd(crd: &Value) -> Result<Vec<Kind>, Vec<(String, String)>> {
    let mut errors = Vec::new();
    let spec = &crd["spec"];
    let group = spec["group"].as_str().unwrap_or_default();
    let names = &spec["names"];
    let plural = names["plural"].as_str().unwrap_or_default();
    let kind = names["kind"].as_str().unwrap_or_default();
    if group.is_empty() || !group.contains('.') {
        errors.push(("spec.group".into(), "should be a domain with at least one dot".into()));
    }
    if plural.is_empty() {
        errors.push(("spec.names.plural".into(), "Required value".into()));
    }
    if kind.is_empty() {
        errors.push(("spec.names.kind".into(), "Required value".into()));
    }
    let name = crd["metadata"]["name"].as_str().unwrap_or_default();
    if name != format!("{plural}.{group}") {
        errors.push(("metadata.name".into(), format!("must be spec.names.plural+\".\"+spec.group: {name:?}")));
    }
    let scope = spec["scope"].as_str().unwrap_or_default();
    if scope != "Namespaced" && scope != "Cluster" {
        errors.push((
            "spec.scope".into(),
            format!("Unsupported value: {scope:?}: supported values: \"Cluster\", \"Namespaced\""),
        ));
    }
    let versions = spec["versions"].as_array().cloned().unwrap_or_default();
    if versions.is_empty() {
        errors.push(("spec.versions".into(), "must have exactly one version marked as storage version".into()));
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let singular = names["singular"].as_str().map(str::to_string).unwrap_or_else(|| kind.to_lowercase());
    let short_names: Vec<String> =
        names["shortNames"].as_array().into_iter().flatten().filter_map(|s| s.as_str().map(str::to_string)).collect();
    let categories: Vec<String> =
        names["categories"].as_array().into_iter().flatten().filter_map(|s| s.as_str().map(str::to_string)).collect();
    Ok(versions
        .iter()
        .filter(|v| v["served"].as_bool().unwrap_or(true))
        .filter_map(|v| v["name"].as_str().map(|n| (n, v)))
        .map(|(version, v)| Kind {
            group: group.into(),
            version: version.into(),
            kind: kind.into(),
            plural: plural.into(),
            singular: singular.clone(),
            namespaced: scope == "Namespaced",
            short_names: short_names.clone(),
            categories: categories.clone(),
            status_subresource: v["subresources"].get("status").is_some(),
            name_rule: NameRule::Subdomain,
        })
        .collect())
}

/// Orders versions as Kubernetes does: GA before beta before alpha, higher numbers first.
pub fn version_priority(v: &str) -> (u8, i64, i64) {
    let rest = v.strip_prefix('v').unwrap_or(v);
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let major: i64 = digits.parse().unwrap_or(0);
    let tail = &rest[digits.len()..];
    let (level, minor) = if tail.is_empty() {
        (3, 0)
    } else if let Some(n) = tail.strip_prefix("beta") {
        (2, n.parse().unwrap_or(0))
    } else if let Some(n) = tail.strip_prefix("alpha") {
        (1, n.parse().unwrap_or(0))
    } else {
        (0, 0)
    };
    (level, major, minor)
}

/// Groups in discovery order, each with its versions sorted by priority.
pub fn groups(kinds: &[Kind]) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for k in kinds.iter().filter(|k| !k.group.is_empty()) {
        match out.iter_mut().find(|(g, _)| *g == k.group) {
            Some((_, versions)) => {
                if !versions.contains(&k.version) {
                    versions.push(k.version.clone());
                }
            }
            None => out.push((k.group.clone(), vec![k.version.clone()])),
        }
    }
    for (_, versions) in &mut out {
        versions.sort_by_key(|v| std::cmp::Reverse(version_priority(v)));
    }
    out
}

fn group_doc(group: &str, versions: &[String]) -> Value {
    let gv = |v: &String| json!({"groupVersion": format!("{group}/{v}"), "version": v});
    json!({
        "name": group,
        "versions": versions.iter().map(gv).collect::<Vec<_>>(),
        "preferredVersion": gv(&versions[0]),
    })
}

/// The `/apis` document.
pub fn api_group_list(kinds: &[Kind]) -> Value {
    let groups: Vec<Value> = groups(kinds).iter().map(|(g, v)| group_doc(g, v)).collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// The `/apis/{group}` document, if the group is served.
pub fn api_group(kinds: &[Kind], group: &str) -> Option<Value> {
    groups(kinds).into_iter().find(|(g, _)| g == group).map(|(g, v)| {
        let mut doc = group_doc(&g, &v);
        doc["kind"] = json!("APIGroup");
        doc["apiVersion"] = json!("v1");
        doc
    })
}

/// The `/api/v1` or `/apis/{group}/{version}` document, if that group version is served.
pub fn api_resource_list(kinds: &[Kind], group: &str, version: &str) -> Option<Value> {
    let served: Vec<&Kind> = kinds.iter().filter(|k| k.group == group && k.version == version).collect();
    if served.is_empty() {
        return None;
    }
    let mut resources = Vec::new();
    for k in served {
        let mut verbs = vec!["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"];
        if k.kind == "Namespace" {
            verbs.retain(|v| *v != "deletecollection");
        }
        let mut doc = json!({
            "name": k.plural,
            "singularName": k.singular,
            "namespaced": k.namespaced,
            "kind": k.kind,
            "verbs": verbs,
        });
        if !k.short_names.is_empty() {
            doc["shortNames"] = json!(k.short_names);
        }
        if !k.categories.is_empty() {
            doc["categories"] = json!(k.categories);
        }
        resources.push(doc);
        if k.status_subresource {
            resources.push(json!({
                "name": format!("{}/status", k.plural),
                "singularName": "",
                "namespaced": k.namespaced,
                "kind": k.kind,
                "verbs": ["get", "patch", "update"],
            }));
        }
    }
    let group_version = if group.is_empty() { version.to_string() } else { format!("{group}/{version}") };
    Some(json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources}))
}

fn group_version_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// The `/openapi/v3` index: one entry per served group version.
pub fn openapi_v3_root(kinds: &[Kind]) -> Value {
    let mut paths = serde_json::Map::new();
    let mut gvs: Vec<(String, String)> = kinds.iter().map(|k| (k.group.clone(), k.version.clone())).collect();
    gvs.sort();
    gvs.dedup();
    for (g, v) in gvs {
        let p = group_version_path(&g, &v);
        paths.insert(p.clone(), json!({"serverRelativeURL": format!("/openapi/v3/{p}?hash=0")}));
    }
    json!({"paths": paths})
}

/// A minimal OpenAPI v3 document for one group version: the object paths with their PATCH operations, tagged
/// with `x-kubernetes-group-version-kind` and declaring `fieldValidation`, `fieldManager`, `force` and `dryRun`.
/// That is what `kubectl` reads to decide that the server validates fields itself, so `kubectl apply` needs
/// no `--validate=false`. Schemas are not served: every object is accepted as it is.
pub fn openapi_v3_group_version(kinds: &[Kind], group: &str, version: &str) -> Option<Value> {
    let served: Vec<&Kind> = kinds.iter().filter(|k| k.group == group && k.version == version).collect();
    if served.is_empty() {
        return None;
    }
    let prefix = group_version_path(group, version);
    let query = |name: &str| json!({"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": true}});
    let mut paths = serde_json::Map::new();
    for k in served {
        let path = if k.namespaced {
            format!("/{prefix}/namespaces/{{namespace}}/{}/{{name}}", k.plural)
        } else {
            format!("/{prefix}/{}/{{name}}", k.plural)
        };
        let gvk = json!({"group": k.group, "version": k.version, "kind": k.kind});
        paths.insert(
            path,
            json!({
                "patch": {
                    "operationId": format!("patch{}", k.kind),
                    "parameters": [query("dryRun"), query("fieldManager"), query("fieldValidation"), query("force")],
                    "responses": {"200": {"description": "OK"}},
                    "x-kubernetes-action": "patch",
                    "x-kubernetes-group-version-kind": gvk,
                },
            }),
        );
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.32.0"},
        "paths": paths,
        "components": {"schemas": {}},
    }))
}
