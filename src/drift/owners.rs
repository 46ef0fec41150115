//! Field ownership of Kubernetes objects (`metadata.managedFields`), so that a field another
//! controller took over (an HPA's `spec.replicas`) is not reported as drift.
//!
//! matih applies with the field manager `matih`. When someone else changes a field matih set,
//! the API server moves the field's ownership to them. [`foreign_fields`] lists the fields owned
//! by managers other than `matih` (and not shared with it), as attribute paths in the plan's
//! spelling. Whether that owner is a controller or a person is decided by [`is_controller`]:
//! managers named `kubectl…` (`kubectl`, `kubectl-edit`, `kubectl-label`, `kubectl-patch`,
//! `kubectl-client-side-apply`, …) are people; every other manager is a controller.
//!
//! Lists are owned item by item (`k:{…}`, `v:…`, `i:n` in FieldsV1); only fields reached by
//! object keys alone are considered, so ownership of one list item never hides a change.
//!
//! The Kubernetes provider does not expose `managedFields` (its reads project live objects onto
//! the fields matih sets), so [`KubeFieldOwners`] reads them itself, only for objects that
//! differ from the state. The hook that would let it go: `Observed` carrying the foreign fields
//! of the object the provider has just read.
//!
//! **Invariant:** read-only: only GETs.

use std::collections::BTreeSet;

use kube::api::{Api, DynamicObject};
use kube::core::{ApiResource, GroupVersionKind};
use kube::{Client, Config};

use crate::plan::path::{format_path, Seg};
use crate::provider::kubernetes::{KubeTarget, FIELD_MANAGER};
use crate::provider::{ProviderError, ProviderFuture, ResourceObject, TenantRef};
use crate::value::Value;

/// A field of a live object owned by a manager other than matih.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ForeignField {
    /// In the plan's spelling: `spec.replicas`, `metadata.labels["matih.ai/tier"]`.
    pub path: String,
    pub manager: String,
}

/// Who owns the fields of live objects.
pub trait FieldOwners: Send + Sync {
    /// Whether this reader knows objects of `kind`.
    fn handles(&self, kind: &str) -> bool;

    /// The fields of the live object `obj` (identified by its recorded attributes) that managers
    /// other than matih own. An absent object has none.
    fn foreign_fields<'a>(
        &'a self,
        tenant: &'a TenantRef,
        obj: &'a ResourceObject,
    ) -> ProviderFuture<'a, Vec<ForeignField>>;
}

/// True when `manager` is a controller rather than a person at a terminal (see the module docs).
pub fn is_controller(manager: &str) -> bool {
    manager != FIELD_MANAGER && !manager.starts_with("kubectl")
}

/// The fields of `live` (a Kubernetes object as JSON) owned by managers other than matih and not
/// also owned by matih, sorted.
pub fn foreign_fields(live: &serde_json::Value) -> Vec<ForeignField> {
    let entries = live.pointer("/metadata/managedFields").and_then(|v| v.as_array()).cloned().unwrap_or_default();
    let mut mine = BTreeSet::new();
    let mut others = BTreeSet::new();
    for e in &entries {
        let manager = e.get("manager").and_then(|m| m.as_str()).unwrap_or_default();
        let mut paths = Vec::new();
        if let Some(fields) = e.get("fieldsV1") {
            walk(fields, &mut Vec::new(), &mut paths);
        }
        for p in paths {
            if manager == FIELD_MANAGER {
                mine.insert(p);
            } else {
                others.insert(ForeignField { path: p, manager: manager.to_string() });
            }
        }
    }
    others.into_iter().filter(|f| !mine.contains(&f.path)).collect()
}

/// Collects the owned paths of a FieldsV1 tree: a node is owned when it has no children or holds
/// the `"."` marker.
fn walk<'a>(node: &'a serde_json::Value, at: &mut Vec<&'a str>, out: &mut Vec<String>) {
    let Some(map) = node.as_object() else { return };
    if !at.is_empty() && (map.is_empty() || map.contains_key(".")) {
        let segs: Vec<Seg<'_>> = at.iter().map(|k| Seg::Key(k)).collect();
        out.push(format_path(&segs));
    }
    for (k, child) in map {
        if let Some(field) = k.strip_prefix("f:") {
            at.push(field);
            walk(child, at, out);
            at.pop();
        }
    }
}

/// Reads `managedFields` straight from the Kubernetes API (GET only).
pub struct KubeFieldOwners {
    client: Client,
}

impl KubeFieldOwners {
    pub async fn connect(target: &KubeTarget) -> Result<Self, String> {
        let config = match target {
            KubeTarget::Url(url) => {
                let uri = url.parse().map_err(|e| format!("invalid Kubernetes API URL {url:?}: {e}"))?;
                Config::new(uri)
            }
            KubeTarget::Kubeconfig { context } => {
                let opts = kube::config::KubeConfigOptions { context: context.clone(), ..Default::default() };
                Config::from_kubeconfig(&opts).await.map_err(|e| format!("cannot load kubeconfig: {e}"))?
            }
        };
        let client = Client::try_from(config).map_err(|e| format!("cannot create a Kubernetes client: {e}"))?;
        Ok(KubeFieldOwners { client })
    }
}

impl FieldOwners for KubeFieldOwners {
    fn handles(&self, kind: &str) -> bool {
        kind.starts_with("kubernetes_")
    }

    fn foreign_fields<'a>(
        &'a self,
        _tenant: &'a TenantRef,
        obj: &'a ResourceObject,
    ) -> ProviderFuture<'a, Vec<ForeignField>> {
        Box::pin(async move {
            let error =
                |message: String| ProviderError { address: obj.addr.clone(), path: None, message, transient: false };
            let s = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_string);
            let meta = obj.attrs.get("metadata").and_then(Value::as_map);
            let (Some(api_version), Some(kind), Some(name)) =
                (s(obj.attrs.get("apiVersion")), s(obj.attrs.get("kind")), s(meta.and_then(|m| m.get("name"))))
            else {
                return Err(error("not a Kubernetes manifest (apiVersion, kind, metadata.name)".into()));
            };
            let namespace = s(meta.and_then(|m| m.get("namespace")));
            let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version.as_str()));
            let ar = ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, &kind));
            let api: Api<DynamicObject> = match &namespace {
                Some(ns) => Api::namespaced_with(self.client.clone(), ns, &ar),
                None => Api::all_with(self.client.clone(), &ar),
            };
            let live = api.get_opt(&name).await.map_err(|e| error(format!("read managedFields: {e}")))?;
            let Some(live) = live else { return Ok(Vec::new()) };
            let json = serde_json::to_value(live).map_err(|e| error(e.to_string()))?;
            Ok(foreign_fields(&json))
        })
    }
}
