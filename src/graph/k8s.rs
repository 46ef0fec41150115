//! Building Kubernetes manifests as attribute maps: `apiVersion`, `kind`, `metadata`, then the
//! kind's own fields, exactly as server-side apply will send them.
//!
//! **Invariant:** knows the shape of a Kubernetes object, not which objects a tenant needs.

use std::collections::BTreeMap;

use crate::addr::ResourceAddr;
use crate::diag::Location;
use crate::value::Value;

/// A string value.
pub(super) fn s(text: impl Into<String>) -> Value {
    Value::String(text.into())
}

/// A map value from `(key, value)` pairs.
pub(super) fn m<K: Into<String>>(pairs: impl IntoIterator<Item = (K, Value)>) -> Value {
    Value::map(pairs)
}

/// A list value.
pub(super) fn l(items: impl IntoIterator<Item = Value>) -> Value {
    Value::list(items)
}

/// A list of strings.
pub(super) fn strs<S: AsRef<str>>(items: impl IntoIterator<Item = S>) -> Value {
    Value::list(items.into_iter().map(|i| Value::str(i.as_ref())))
}

/// `Deployment` → `deployment`, `ResourceQuota` → `resource_quota`: the suffix of a matih kind.
pub(super) fn snake_kind(kind: &str) -> String {
    let mut out = String::with_capacity(kind.len() + 4);
    for (i, c) in kind.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// Standard base64 (RFC 4648, with padding), as Secret `data` values are written.
pub(super) fn base64(input: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(input)
}

/// One Kubernetes object to add to the graph.
pub(super) struct Obj {
    pub api_version: &'static str,
    pub kind: &'static str,
    pub name: String,
    /// Cluster-scoped objects (Namespace, IngressClass, ClusterRole…) have no namespace.
    pub namespaced: bool,
    /// The namespace of a namespaced object when it is not the tenant's (the edge namespace).
    pub namespace: Option<String>,
    pub labels: BTreeMap<String, Value>,
    pub annotations: BTreeMap<String, Value>,
    /// Top-level fields besides `apiVersion`, `kind` and `metadata` (`spec`, `data`, `rules`…).
    pub fields: BTreeMap<String, Value>,
    pub deps: Vec<ResourceAddr>,
    /// Paths (besides name and namespace) whose change forces replacement.
    pub force_new: Vec<&'static str>,
    pub origin: Option<Location>,
}

impl Obj {
    pub fn new(api_version: &'static str, kind: &'static str, name: impl Into<String>) -> Obj {
        Obj {
            api_version,
            kind,
            name: name.into(),
            namespaced: true,
            namespace: None,
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
            fields: BTreeMap::new(),
            deps: Vec::new(),
            force_new: Vec::new(),
            origin: None,
        }
    }

    pub fn cluster_scoped(mut self) -> Obj {
        self.namespaced = false;
        self
    }

    /// Puts a namespaced object in `namespace` instead of the tenant's.
    pub fn in_namespace(mut self, namespace: &str) -> Obj {
        self.namespace = Some(namespace.to_string());
        self
    }

    pub fn label(mut self, key: &str, value: impl Into<Value>) -> Obj {
        self.labels.insert(key.to_string(), value.into());
        self
    }

    pub fn annotation(mut self, key: &str, value: impl Into<Value>) -> Obj {
        self.annotations.insert(key.to_string(), value.into());
        self
    }

    pub fn field(mut self, key: &str, value: Value) -> Obj {
        self.fields.insert(key.to_string(), value);
        self
    }

    pub fn dep(mut self, addr: &ResourceAddr) -> Obj {
        self.deps.push(addr.clone());
        self
    }

    pub fn deps<'a>(mut self, addrs: impl IntoIterator<Item = &'a ResourceAddr>) -> Obj {
        self.deps.extend(addrs.into_iter().cloned());
        self
    }

    pub fn force_new(mut self, path: &'static str) -> Obj {
        self.force_new.push(path);
        self
    }

    pub fn origin(mut self, location: Option<Location>) -> Obj {
        self.origin = location;
        self
    }

    /// The matih kind: `kubernetes_` + the snake-case Kubernetes kind.
    pub fn matih_kind(&self) -> String {
        format!("kubernetes_{}", snake_kind(self.kind))
    }
}

/// `{ apiGroups, resources, verbs }` of an RBAC rule.
pub(super) fn rule(api_groups: &[&str], resources: &[&str], verbs: &[&str]) -> Value {
    m([("apiGroups", strs(api_groups)), ("resources", strs(resources)), ("verbs", strs(verbs))])
}

/// An RBAC rule restricted to named objects.
pub(super) fn rule_named(api_groups: &[&str], resources: &[&str], names: &[&str], verbs: &[&str]) -> Value {
    m([
        ("apiGroups", strs(api_groups)),
        ("resourceNames", strs(names)),
        ("resources", strs(resources)),
        ("verbs", strs(verbs)),
    ])
}

/// `roleRef` + `subjects` of a (Cluster)RoleBinding to one ServiceAccount.
pub(super) fn binding_fields(
    role_kind: &str,
    role: &str,
    account: &str,
    namespace: &str,
) -> [(&'static str, Value); 2] {
    [
        ("roleRef", m([("apiGroup", s("rbac.authorization.k8s.io")), ("kind", s(role_kind)), ("name", s(role))])),
        ("subjects", l([m([("kind", s("ServiceAccount")), ("name", s(account)), ("namespace", s(namespace))])])),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_become_snake_case() {
        assert_eq!(snake_kind("Deployment"), "deployment");
        assert_eq!(snake_kind("ResourceQuota"), "resource_quota");
        assert_eq!(snake_kind("OpenTelemetryCollector"), "open_telemetry_collector");
        assert_eq!(snake_kind("ClusterRoleBinding"), "cluster_role_binding");
    }

    #[test]
    fn base64_matches_rfc4648() {
        for (clear, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(clear), encoded);
        }
        assert_eq!(base64("5432"), "NTQzMg==");
    }
}
