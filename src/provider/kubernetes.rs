//! The Kubernetes provider: every `kubernetes_*` resource is one object, whose manifest is the
//! resource's attributes, written with server-side apply (field manager `matih`, forced) so that
//! matih owns exactly the fields it sets and other controllers keep theirs.
//!
//! After an apply it waits for the readiness gates of the platform guide: Deployments available (every
//! replica ready), LoadBalancer Services with an external IP (exposed as output
//! `load_balancer_ip`), cert-manager Certificates `Ready=True`, Jobs (the pipeline checks) complete.
//! The gates poll at their intervals and also watch the object, so that readiness ends the wait as
//! soon as the API server reports it rather than at the next poll. Deletes use foreground propagation
//! and wait until the object is gone; a Certificate's delete also removes the TLS Secret cert-manager
//! issued for it (which cert-manager leaves ownerless by default). Reads project the live object onto the attributes matih
//! manages, so server defaults, status and other managers' fields never look like drift.
//!
//! Refresh reads a tenant's objects together ([`Provider::read_many`]): one LIST per kind and
//! namespace, narrowed by the labels the objects share, instead of one GET per object; the
//! answers are the same as the GETs'.
//!
//! **Invariant:** knows nothing of graphs, plans or state; one object per call (reads: one kind
//! and namespace per request).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use base64::Engine as _;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::{Client, Config};

use super::{Observed, Provider, ProviderError, ProviderFuture, ReadMany, ResourceObject, TenantRef, YieldedField};
use crate::value::{fingerprint, Secret, Value};

/// The field manager matih applies as.
pub const FIELD_MANAGER: &str = "matih";

/// Timeouts and polling of the readiness gates. `Default` follows the platform guide: the LoadBalancer IP is
/// polled 60 times, 10 s apart (600 s).
#[derive(Clone, Debug)]
pub struct KubeSettings {
    pub lb_ip_attempts: u32,
    pub lb_ip_interval: Duration,
    pub deployment_timeout: Duration,
    pub certificate_timeout: Duration,
    pub delete_timeout: Duration,
    /// How often Deployments, Certificates and deletions are polled.
    pub poll_interval: Duration,
}

impl Default for KubeSettings {
    fn default() -> Self {
        KubeSettings {
            lb_ip_attempts: 60,
            lb_ip_interval: Duration::from_secs(10),
            deployment_timeout: Duration::from_secs(600),
            certificate_timeout: Duration::from_secs(600),
            delete_timeout: Duration::from_secs(300),
            poll_interval: Duration::from_secs(2),
        }
    }
}

/// Where the cluster is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KubeTarget {
    /// An explicit API server URL (the tests' proxy to the real control plane, a local cluster).
    Url(String),
    /// The user's kubeconfig (`KUBECONFIG` or `~/.kube/config`), optionally a named context.
    Kubeconfig { context: Option<String> },
}

pub struct KubernetesProvider {
    client: Client,
    settings: KubeSettings,
}

impl KubernetesProvider {
    pub async fn connect(target: &KubeTarget, settings: KubeSettings) -> Result<Self, String> {
        let mut config = match target {
            KubeTarget::Url(url) => {
                let uri = url.parse().map_err(|e| format!("invalid Kubernetes API URL {url:?}: {e}"))?;
                Config::new(uri)
            }
            KubeTarget::Kubeconfig { context } => {
                let opts = kube::config::KubeConfigOptions { context: context.clone(), ..Default::default() };
                Config::from_kubeconfig(&opts).await.map_err(|e| format!("cannot load kubeconfig: {e}"))?
            }
        };
        // kube's client retries 429, 503 and 504 by itself unless told not to (up to 15 times,
        // backing off towards 1,000 s), under the engine's own attempts: a throttled apply then
        // took minutes per attempt instead of failing after `max_attempts`. The engine's retry
        // (with its backoff, and the `resource_retrying` events) is the only one.
        config.default_retry = false;
        let client = Client::try_from(config).map_err(|e| format!("cannot create a Kubernetes client: {e}"))?;
        Ok(KubernetesProvider { client, settings })
    }
}

fn err(obj: &ResourceObject, path: Option<&str>, message: impl Into<String>, transient: bool) -> ProviderError {
    ProviderError { address: obj.addr.clone(), path: path.map(str::to_string), message: message.into(), transient }
}

/// Turns a client error into a provider error: 429, 5xx and connection failures are transient;
/// everything else (403, 404, 409, 422, …) is permanent.
fn api_err(obj: &ResourceObject, what: &str, e: kube::Error) -> ProviderError {
    match e {
        kube::Error::Api(status) => {
            let transient = status.code == 429 || status.code >= 500;
            let reason = if status.reason.is_empty() { String::new() } else { format!(" {}", status.reason) };
            err(obj, None, format!("{what}: HTTP {}{reason}: {}", status.code, status.message), transient)
        }
        kube::Error::HyperError(_) | kube::Error::Service(_) => {
            err(obj, None, format!("{what}: cannot reach the Kubernetes API: {e}"), true)
        }
        other => err(obj, None, format!("{what}: {other}"), false),
    }
}

/// The object's identity, read from its manifest.
struct Target {
    ar: ApiResource,
    name: String,
    namespace: Option<String>,
}

fn target(obj: &ResourceObject) -> Result<Target, ProviderError> {
    let s = |key: &str| obj.attrs.get(key).and_then(Value::as_str).map(str::to_string);
    let api_version = s("apiVersion").ok_or_else(|| err(obj, Some("apiVersion"), "missing apiVersion", false))?;
    let kind = s("kind").ok_or_else(|| err(obj, Some("kind"), "missing kind", false))?;
    let meta = obj.attrs.get("metadata").and_then(Value::as_map);
    let name = meta
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .ok_or_else(|| err(obj, Some("metadata.name"), "missing metadata.name", false))?
        .to_string();
    let namespace = meta.and_then(|m| m.get("namespace")).and_then(Value::as_str).map(str::to_string);
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version.as_str()));
    let ar = ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, &kind));
    Ok(Target { ar, name, namespace })
}

impl KubernetesProvider {
    fn api(&self, t: &Target) -> Api<DynamicObject> {
        match &t.namespace {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, &t.ar),
            None => Api::all_with(self.client.clone(), &t.ar),
        }
    }
}

/// A random password: 48 characters from two UUIDv4 (the OS's CSPRNG), 244 bits of entropy.
fn generate_secret() -> String {
    format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple())[..48].to_string()
}

/// Converts attributes into the JSON manifest to apply. `Computed` values become the creation time.
/// Under a Secret's `data`, plain strings are already base64 (as in any manifest) and are sent as
/// they are, while secrets are resolved (from the run, the live object, or generated) and
/// base64-encoded. Returns the manifest and the attributes to record (secrets as fingerprints).
fn manifest(
    obj: &ResourceObject,
    live: Option<&serde_json::Value>,
) -> Result<(serde_json::Value, BTreeMap<String, Value>), ProviderError> {
    let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let mut recorded = BTreeMap::new();
    let mut out = serde_json::Map::new();
    for (key, value) in &obj.attrs {
        if key == "data" || key == "stringData" {
            let Some(entries) = value.as_map() else {
                return Err(err(obj, Some(key), "must be a map", false));
            };
            let data = out.entry("data").or_insert_with(|| serde_json::json!({}));
            let mut rec = BTreeMap::new();
            for (k, v) in entries {
                let path = format!("{key}.{k}");
                let (encoded, rec_value) = match v {
                    Value::String(b64) => (b64.clone(), v.clone()),
                    Value::Secret(secret) => {
                        let clear = secret_value(obj, secret, live, k, &path)?;
                        let fp = fingerprint(&clear);
                        let encoded = base64::engine::general_purpose::STANDARD.encode(clear);
                        (encoded, Value::Secret(Secret { source: secret.source.clone(), fingerprint: Some(fp) }))
                    }
                    _ => return Err(err(obj, Some(&path), "secret data must be base64 strings or secrets", false)),
                };
                data[k] = serde_json::Value::String(encoded);
                rec.insert(k.clone(), rec_value);
            }
            recorded.insert(key.clone(), Value::Map(rec));
            continue;
        }
        let filled = fill_computed(value, &now);
        out.insert(key.clone(), filled.clone().into());
        recorded.insert(key.clone(), filled);
    }
    Ok((serde_json::Value::Object(out), recorded))
}

fn fill_computed(v: &Value, now: &str) -> Value {
    match v {
        Value::Computed { .. } => Value::str(now),
        Value::Map(m) => Value::Map(m.iter().map(|(k, v)| (k.clone(), fill_computed(v, now))).collect()),
        Value::List(l) => Value::List(l.iter().map(|v| fill_computed(v, now)).collect()),
        other => other.clone(),
    }
}

/// The clear value of a secret key: supplied by the run, kept from the live object when its
/// fingerprint matches what was recorded, or generated when the source says so.
fn secret_value(
    obj: &ResourceObject,
    secret: &Secret,
    live: Option<&serde_json::Value>,
    key: &str,
    path: &str,
) -> Result<String, ProviderError> {
    if let Some(clear) = obj.secrets.get(&secret.source) {
        return Ok(clear.clone());
    }
    let live_clear = live
        .and_then(|l| l.get("data")?.get(key)?.as_str())
        .and_then(|b64| base64::engine::general_purpose::STANDARD.decode(b64).ok())
        .and_then(|bytes| String::from_utf8(bytes).ok());
    if let Some(clear) = live_clear {
        if secret.fingerprint.is_none() || secret.fingerprint.as_deref() == Some(fingerprint(&clear).as_str()) {
            return Ok(clear);
        }
    }
    if secret.source == "generated" {
        return Ok(generate_secret());
    }
    Err(err(
        obj,
        Some(path),
        format!(
            "the secret value from {} is not available in this run and the live object does not hold the recorded one",
            secret.source
        ),
        false,
    ))
}

/// The live object seen through the shape of `desired`: only the keys matih sets, recursively.
/// Secret data becomes fingerprints; `Computed` desired values take the live value.
pub fn project(desired: &Value, live: &serde_json::Value) -> Option<Value> {
    match (desired, live) {
        (_, serde_json::Value::Null) => None,
        (Value::Map(d), serde_json::Value::Object(l)) => {
            Some(Value::Map(d.iter().filter_map(|(k, dv)| Some((k.clone(), project(dv, l.get(k)?)?))).collect()))
        }
        (Value::List(d), serde_json::Value::Array(l)) if d.len() == l.len() => {
            d.iter().zip(l).map(|(dv, lv)| project(dv, lv)).collect::<Option<Vec<_>>>().map(Value::List)
        }
        // The API server stores quantities in canonical form ("1000m" comes back as "1", "1024Mi"
        // as "1Gi"): the same amount is not drift.
        (Value::String(d), serde_json::Value::String(l)) if d != l && crate::quantity::same(d, l) => {
            Some(desired.clone())
        }
        _ => Value::try_from(live.clone()).ok(),
    }
}

fn project_secret_data(desired: &Value, live: &serde_json::Value) -> Option<Value> {
    let d = desired.as_map()?;
    let l = live.as_object()?;
    Some(Value::Map(
        d.iter()
            .filter_map(|(k, dv)| {
                let encoded = l.get(k)?.as_str()?;
                Some((
                    k.clone(),
                    match dv {
                        Value::Secret(s) => {
                            let clear = base64::engine::general_purpose::STANDARD.decode(encoded).ok()?;
                            let clear = String::from_utf8(clear).ok()?;
                            Value::Secret(Secret { source: s.source.clone(), fingerprint: Some(fingerprint(&clear)) })
                        }
                        _ => Value::str(encoded),
                    },
                ))
            })
            .collect(),
    ))
}

/// The field managers of a live object (`metadata.managedFields`), sorted, without duplicates.
fn managers(live: &serde_json::Value) -> Vec<String> {
    let entries = live.pointer("/metadata/managedFields").and_then(|m| m.as_array());
    let names: std::collections::BTreeSet<String> =
        entries.into_iter().flatten().filter_map(|e| e["manager"].as_str()).map(str::to_string).collect();
    names.into_iter().collect()
}

/// Whether a field manager is a controller (its fields are not drift) rather than a person at a
/// terminal (`kubectl`, `kubectl-edit`, `kubectl-label`, …: their edits are drift).
pub fn is_controller(manager: &str) -> bool {
    manager != FIELD_MANAGER && !manager.starts_with("kubectl")
}

/// Field ownership read from `metadata.managedFields`: the fields matih owns, and those that a
/// controller took over. A field a controller owns and matih no longer does (an autoscaler's
/// `spec.replicas`) is that controller's: reading it back keeps matih's recorded value, so it is not
/// drift. Changes made by hand with kubectl stay drift. Only fields reached by object keys are
/// considered (`f:name`), so ownership of one list item never hides a change.
struct Ownership {
    matih: Vec<serde_json::Value>,
    controllers: Vec<(String, serde_json::Value)>,
}

impl Ownership {
    fn of(live: &serde_json::Value) -> Ownership {
        let mut o = Ownership { matih: Vec::new(), controllers: Vec::new() };
        for entry in live.pointer("/metadata/managedFields").and_then(|m| m.as_array()).into_iter().flatten() {
            let manager = entry["manager"].as_str().unwrap_or_default();
            if entry.get("subresource").and_then(|s| s.as_str()) == Some("status") {
                continue;
            }
            let Some(fields) = entry.get("fieldsV1") else { continue };
            if manager == FIELD_MANAGER {
                o.matih.push(fields.clone());
            } else if is_controller(manager) {
                o.controllers.push((manager.to_string(), fields.clone()));
            }
        }
        o
    }

    fn owns(tree: &serde_json::Value, path: &[String]) -> bool {
        path.iter().try_fold(tree, |node, key| node.get(format!("f:{key}"))).is_some()
    }

    /// The controller that owns the field at `path` when matih no longer does.
    fn yielded_to(&self, path: &[String]) -> Option<&str> {
        if self.matih.iter().any(|t| Self::owns(t, path)) {
            return None;
        }
        self.controllers.iter().find(|(_, t)| Self::owns(t, path)).map(|(m, _)| m.as_str())
    }
}

/// An attribute path as plans spell it: `spec.replicas`, `metadata.labels["matih.ai/tier"]`.
fn spell(path: &[String]) -> String {
    let mut out = String::new();
    for key in path {
        let ident = key.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if ident {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(key);
        } else {
            out.push_str(&format!("[{key:?}]"));
        }
    }
    out
}

/// [`project`], except that fields a controller took over keep the recorded value; those whose live
/// value differs are listed in `yielded`.
fn project_owned(
    recorded: &Value,
    live: Option<&serde_json::Value>,
    path: &mut Vec<String>,
    own: &Ownership,
    yielded: &mut Vec<YieldedField>,
) -> Option<Value> {
    if let Some(manager) = own.yielded_to(path) {
        if live.and_then(|l| project(recorded, l)).as_ref() != Some(recorded) {
            yielded.push(YieldedField { path: spell(path), manager: manager.to_string() });
        }
        return Some(recorded.clone());
    }
    let live = live?;
    match (recorded, live) {
        (Value::Map(d), serde_json::Value::Object(l)) => Some(Value::Map(
            d.iter()
                .filter_map(|(k, dv)| {
                    path.push(k.clone());
                    let v = project_owned(dv, l.get(k), path, own, yielded);
                    path.pop();
                    Some((k.clone(), v?))
                })
                .collect(),
        )),
        _ => project(recorded, live),
    }
}

/// The live object seen through the recorded attributes, and the fields controllers took over.
fn observe(
    recorded: &BTreeMap<String, Value>,
    live: &serde_json::Value,
) -> (BTreeMap<String, Value>, Vec<YieldedField>) {
    let own = Ownership::of(live);
    let mut yielded = Vec::new();
    let attrs = recorded
        .iter()
        .filter_map(|(k, dv)| {
            if k == "data" || k == "stringData" {
                return Some((k.clone(), project_secret_data(dv, live.get("data")?)?));
            }
            Some((k.clone(), project_owned(dv, live.get(k), &mut vec![k.clone()], &own, &mut yielded)?))
        })
        .collect();
    (attrs, yielded)
}

fn get_str<'a>(v: &'a serde_json::Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(v, |v, k| v.get(k))?.as_str()
}

fn get_i64(v: &serde_json::Value, path: &[&str]) -> Option<i64> {
    path.iter().try_fold(v, |v, k| v.get(k))?.as_i64()
}

fn deployment_ready(live: &serde_json::Value) -> bool {
    let want = get_i64(live, &["spec", "replicas"]).unwrap_or(1);
    let generation = get_i64(live, &["metadata", "generation"]).unwrap_or(0);
    let observed = get_i64(live, &["status", "observedGeneration"]).unwrap_or(0);
    let available = get_i64(live, &["status", "availableReplicas"]).unwrap_or(0);
    let updated = get_i64(live, &["status", "updatedReplicas"]).unwrap_or(0);
    observed >= generation && available >= want && updated >= want
}

fn has_condition(live: &serde_json::Value, kind: &str) -> bool {
    let conditions = live.pointer("/status/conditions").and_then(|c| c.as_array());
    conditions.is_some_and(|c| c.iter().any(|c| c["type"] == kind && c["status"] == "True"))
}

fn certificate_ready(live: &serde_json::Value) -> bool {
    has_condition(live, "Ready")
}

/// A LoadBalancer Service's external IP (or host name), once assigned.
fn ingress_address(live: &serde_json::Value) -> Option<&str> {
    let ingress = live.pointer("/status/loadBalancer/ingress/0");
    ingress.and_then(|i| i.get("ip").or_else(|| i.get("hostname"))).and_then(|v| v.as_str())
}

fn has_ingress(live: &serde_json::Value) -> bool {
    ingress_address(live).is_some()
}

/// A watch of one object, for the readiness gates.
type ObjectWatch = std::pin::Pin<
    Box<dyn futures_util::Stream<Item = Result<Option<DynamicObject>, kube::runtime::watcher::Error>> + Send>,
>;

/// What [`Provider::read`] answers for `obj` whose live object is `live`: nothing when it is
/// being deleted, else the live object projected onto the attributes matih manages.
fn seen(obj: &ResourceObject, live: &serde_json::Value) -> Option<Observed> {
    if live.pointer("/metadata/deletionTimestamp").is_some() {
        return None;
    }
    let mut outputs = BTreeMap::new();
    if let Some(ip) = live.pointer("/status/loadBalancer/ingress/0/ip").and_then(|v| v.as_str()) {
        outputs.insert("load_balancer_ip".to_string(), Value::str(ip));
    }
    let (attrs, yielded) = observe(&obj.attrs, live);
    Some(Observed { attrs, outputs, yielded, made_by: managers(live), ..Observed::default() })
}

/// The labels every one of `objs` asks for (`metadata.labels`, plain strings), as a label selector
/// (`k=v,k2=v2`); `None` when they share none.
fn common_labels(objs: &[&ResourceObject]) -> Option<String> {
    let labels = |o: &ResourceObject| -> BTreeMap<String, String> {
        let m = o.attrs.get("metadata").and_then(Value::as_map);
        let l = m.and_then(|m| m.get("labels")).and_then(Value::as_map);
        l.into_iter().flatten().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string()))).collect()
    };
    let mut common = labels(objs.first()?);
    for o in &objs[1..] {
        let l = labels(o);
        common.retain(|k, v| l.get(k) == Some(v));
    }
    let selector: Vec<String> = common.iter().map(|(k, v)| format!("{k}={v}")).collect();
    (!selector.is_empty()).then(|| selector.join(","))
}

impl KubernetesProvider {
    /// Reads objects of one kind in one namespace (or cluster-scoped ones of one kind): one LIST,
    /// narrowed by the labels they all carry, matched back by name. An object the LIST does not
    /// hold is read with a GET when the LIST was narrowed by labels (its labels may have been
    /// changed: that is drift, not absence), and is gone otherwise. A single object, or
    /// cluster-scoped objects without common labels (a LIST would return every tenant's), are read
    /// one GET each. The answers are [`Provider::read`]'s.
    async fn read_group(&self, objs: &[&ResourceObject]) -> Vec<Result<Option<Observed>, ProviderError>> {
        let first = objs[0];
        let t = match target(first) {
            Ok(t) => t,
            Err(e) => {
                return objs.iter().map(|o| Err(ProviderError { address: o.addr.clone(), ..e.clone() })).collect()
            }
        };
        let selector = common_labels(objs);
        let one_by_one = || async {
            let mut out = Vec::with_capacity(objs.len());
            for o in objs {
                out.push(self.read_one(o).await);
            }
            out
        };
        if objs.len() == 1 || (t.namespace.is_none() && selector.is_none()) {
            return one_by_one().await;
        }
        let mut params = kube::api::ListParams::default();
        if let Some(s) = &selector {
            params = params.labels(s);
        }
        let listed = match self.api(&t).list(&params).await {
            Ok(l) => l,
            // Not allowed to list (RBAC may grant `get` only), or the server failed: the GETs
            // answer, with their own errors.
            Err(e) => {
                tracing::debug!("listing {} failed ({e}); reading one object at a time", t.ar.kind);
                return one_by_one().await;
            }
        };
        let types = kube::core::TypeMeta { api_version: t.ar.api_version.clone(), kind: t.ar.kind.clone() };
        let mut by_name: BTreeMap<String, serde_json::Value> = BTreeMap::new();
        for mut item in listed.items {
            // List items of built-in kinds come without apiVersion and kind; a GET has them.
            item.types.get_or_insert_with(|| types.clone());
            let Some(name) = item.metadata.name.clone() else { continue };
            match serde_json::to_value(item) {
                Ok(v) => by_name.insert(name, v),
                Err(e) => return objs.iter().map(|o| Err(err(o, None, e.to_string(), false))).collect(),
            };
        }
        let mut out = Vec::with_capacity(objs.len());
        for o in objs {
            let name = o.attrs.get("metadata").and_then(|m| m.get_path("name")).and_then(Value::as_str);
            out.push(match (name.and_then(|n| by_name.get(n)), &selector) {
                (Some(live), _) => Ok(seen(o, live)),
                (None, Some(_)) => self.read_one(o).await,
                (None, None) => Ok(None),
            });
        }
        out
    }

    /// The next look at an object a readiness gate waits on: as soon as a watch of it shows it
    /// `done`, else after `interval` with a GET, as the gate polled before it watched. The watch
    /// (`watch`, opened on the first call) only ever ends a wait early: when it fails or ends, the
    /// gate goes on polling, so its attempts, timeouts and messages are those of the polling.
    async fn next_look(
        &self,
        obj: &ResourceObject,
        t: &Target,
        watch: &mut Option<ObjectWatch>,
        interval: Duration,
        done: &(dyn Fn(&serde_json::Value) -> bool + Sync),
    ) -> Result<serde_json::Value, ProviderError> {
        use futures_util::StreamExt as _;
        let until = tokio::time::Instant::now() + interval;
        let stream = watch.get_or_insert_with(|| Box::pin(kube::runtime::watcher::watch_object(self.api(t), &t.name)));
        loop {
            match tokio::time::timeout_at(until, stream.next()).await {
                Ok(Some(Ok(Some(seen)))) => {
                    let seen = serde_json::to_value(seen).map_err(|e| err(obj, None, e.to_string(), false))?;
                    if done(&seen) {
                        return Ok(seen);
                    }
                }
                Ok(Some(Ok(None))) => {}
                // The watch failed or ended: polling alone from now on.
                Ok(Some(Err(_)) | None) => {
                    *watch = Some(Box::pin(futures_util::stream::pending()));
                    break;
                }
                Err(_) => break,
            }
        }
        tokio::time::sleep_until(until).await;
        Ok(self.get_json(obj, t).await?.unwrap_or(serde_json::Value::Null))
    }

    /// [`Provider::read`]: one GET.
    async fn read_one(&self, obj: &ResourceObject) -> Result<Option<Observed>, ProviderError> {
        let t = target(obj)?;
        let live = self.get_json(obj, &t).await?;
        Ok(live.and_then(|live| seen(obj, &live)))
    }

    async fn get_json(&self, obj: &ResourceObject, t: &Target) -> Result<Option<serde_json::Value>, ProviderError> {
        let api = self.api(t);
        match api.get_opt(&t.name).await {
            Ok(Some(o)) => Ok(Some(serde_json::to_value(o).map_err(|e| err(obj, None, e.to_string(), false))?)),
            Ok(None) => Ok(None),
            Err(e) => Err(api_err(obj, "read", e)),
        }
    }

    /// Waits until the object passes its readiness gate; returns the outputs it exposes.
    async fn wait_ready(
        &self,
        obj: &ResourceObject,
        t: &Target,
        applied: serde_json::Value,
    ) -> Result<BTreeMap<String, Value>, ProviderError> {
        let kind = t.ar.kind.as_str();
        let mut outputs = BTreeMap::new();
        let s = &self.settings;
        match (t.ar.group.as_str(), kind) {
            ("apps", "Deployment") => {
                let deadline = Instant::now() + s.deployment_timeout;
                let mut live = applied;
                let mut watch = None;
                loop {
                    let want = get_i64(&live, &["spec", "replicas"]).unwrap_or(1);
                    let available = get_i64(&live, &["status", "availableReplicas"]).unwrap_or(0);
                    if deployment_ready(&live) {
                        break;
                    }
                    if Instant::now() >= deadline {
                        return Err(err(
                            obj,
                            Some("status.availableReplicas"),
                            format!(
                                "timed out after {}s waiting for Deployment {} to become available ({available}/{want} replicas available)",
                                s.deployment_timeout.as_secs(),
                                t.name
                            ),
                            false,
                        ));
                    }
                    live = self.next_look(obj, t, &mut watch, s.poll_interval, &deployment_ready).await?;
                }
            }
            ("", "Service") if get_str(&applied, &["spec", "type"]) == Some("LoadBalancer") => {
                outputs.insert("load_balancer_ip".to_string(), self.wait_load_balancer_ip(obj, t, applied).await?);
            }
            ("batch", "Job") => {
                let deadline = Instant::now() + s.deployment_timeout;
                let mut live = applied;
                let mut watch = None;
                loop {
                    if has_condition(&live, "Complete") {
                        break;
                    }
                    if has_condition(&live, "Failed") {
                        return Err(err(obj, Some("status.conditions"), format!("Job {} failed", t.name), false));
                    }
                    if Instant::now() >= deadline {
                        return Err(err(
                            obj,
                            Some("status.conditions"),
                            format!(
                                "timed out after {}s waiting for Job {} to complete",
                                s.deployment_timeout.as_secs(),
                                t.name
                            ),
                            false,
                        ));
                    }
                    let finished = |l: &serde_json::Value| has_condition(l, "Complete") || has_condition(l, "Failed");
                    live = self.next_look(obj, t, &mut watch, s.poll_interval, &finished).await?;
                }
            }
            ("cert-manager.io", "Certificate") => {
                let deadline = Instant::now() + s.certificate_timeout;
                let mut live = applied;
                let mut watch = None;
                loop {
                    if certificate_ready(&live) {
                        break;
                    }
                    if Instant::now() >= deadline {
                        return Err(err(
                            obj,
                            Some("status.conditions"),
                            format!(
                                "timed out after {}s waiting for Certificate {} to become Ready",
                                s.certificate_timeout.as_secs(),
                                t.name
                            ),
                            false,
                        ));
                    }
                    live = self.next_look(obj, t, &mut watch, s.poll_interval, &certificate_ready).await?;
                }
            }
            _ => {}
        }
        Ok(outputs)
    }

    /// Waits for a LoadBalancer Service's external IP (the ingress controller's), polling
    /// `lb_ip_attempts` times: the IP (or hostname) once assigned.
    async fn wait_load_balancer_ip(
        &self,
        obj: &ResourceObject,
        t: &Target,
        applied: serde_json::Value,
    ) -> Result<Value, ProviderError> {
        let s = &self.settings;
        let mut live = applied;
        let mut attempt = 1;
        let mut watch = None;
        loop {
            if let Some(ip) = ingress_address(&live) {
                tracing::info!("{}: attempt {attempt}/{}: external IP assigned: {ip}", obj.addr, s.lb_ip_attempts);
                return Ok(Value::str(ip));
            }
            if attempt >= s.lb_ip_attempts {
                let waited = s.lb_ip_interval * s.lb_ip_attempts.saturating_sub(1);
                return Err(err(
                    obj,
                    Some("status.loadBalancer.ingress"),
                    format!(
                        "no external IP assigned to LoadBalancer Service {} after {} attempts ({}s)",
                        t.name,
                        s.lb_ip_attempts,
                        waited.as_secs()
                    ),
                    false,
                ));
            }
            tracing::info!("{}: attempt {attempt}/{}: no external IP yet", obj.addr, s.lb_ip_attempts);
            live = self.next_look(obj, t, &mut watch, s.lb_ip_interval, &has_ingress).await?;
            attempt += 1;
        }
    }
}

impl Provider for KubernetesProvider {
    fn handles(&self, kind: &str) -> bool {
        kind.starts_with("kubernetes_")
    }

    fn read<'a>(&'a self, _tenant: &'a TenantRef, obj: &'a ResourceObject) -> ProviderFuture<'a, Option<Observed>> {
        Box::pin(self.read_one(obj))
    }

    /// One LIST per kind and namespace (see [`KubernetesProvider::read_group`]).
    fn read_many<'a>(&'a self, _tenant: &'a TenantRef, objs: &'a [ResourceObject], parallelism: usize) -> ReadMany<'a> {
        use futures_util::StreamExt as _;
        Box::pin(async move {
            let mut out: Vec<Option<Result<Option<Observed>, ProviderError>>> = objs.iter().map(|_| None).collect();
            // The objects of each (apiVersion, kind, namespace), in the order asked.
            let mut groups: BTreeMap<(String, String, Option<String>), Vec<usize>> = BTreeMap::new();
            for (i, obj) in objs.iter().enumerate() {
                match target(obj) {
                    Ok(t) => groups.entry((t.ar.api_version, t.ar.kind, t.namespace)).or_default().push(i),
                    Err(e) => out[i] = Some(Err(e)),
                }
            }
            let mut read = futures_util::stream::iter(groups.into_values())
                .map(|members| async move {
                    let asked: Vec<&ResourceObject> = members.iter().map(|&i| &objs[i]).collect();
                    (members, self.read_group(&asked).await)
                })
                .buffer_unordered(parallelism.max(1));
            while let Some((members, results)) = read.next().await {
                for (i, r) in members.into_iter().zip(results) {
                    out[i] = Some(r);
                }
            }
            out.into_iter().map(|r| r.expect("every object is in a group")).collect()
        })
    }

    fn apply<'a>(&'a self, _tenant: &'a TenantRef, obj: &'a ResourceObject) -> ProviderFuture<'a, Observed> {
        Box::pin(async move {
            let t = target(obj)?;
            let has_secrets = obj.attrs.values().any(Value::is_sensitive);
            let live = if has_secrets { self.get_json(obj, &t).await? } else { None };
            let (body, recorded) = manifest(obj, live.as_ref())?;
            let api = self.api(&t);
            let params = PatchParams::apply(FIELD_MANAGER).force();
            let applied =
                api.patch(&t.name, &params, &Patch::Apply(&body)).await.map_err(|e| api_err(obj, "apply", e))?;
            let applied = serde_json::to_value(applied).map_err(|e| err(obj, None, e.to_string(), false))?;
            let outputs = self.wait_ready(obj, &t, applied).await?;
            Ok(Observed { attrs: recorded, outputs, ..Observed::default() })
        })
    }

    fn delete<'a>(&'a self, _tenant: &'a TenantRef, obj: &'a ResourceObject) -> ProviderFuture<'a, ()> {
        Box::pin(async move {
            let t = target(obj)?;
            let api = self.api(&t);
            match api.delete(&t.name, &DeleteParams::foreground()).await {
                Ok(_) => {}
                Err(kube::Error::Api(status)) if status.code == 404 => return Ok(()),
                Err(e) => return Err(api_err(obj, "delete", e)),
            }
            let deadline = Instant::now() + self.settings.delete_timeout;
            while self.get_json(obj, &t).await?.is_some() {
                if Instant::now() >= deadline {
                    return Err(err(
                        obj,
                        None,
                        format!(
                            "timed out after {}s waiting for {} {} to be deleted",
                            self.settings.delete_timeout.as_secs(),
                            t.ar.kind,
                            t.name
                        ),
                        false,
                    ));
                }
                tokio::time::sleep(self.settings.poll_interval).await;
            }
            if (t.ar.group.as_str(), t.ar.kind.as_str()) == ("cert-manager.io", "Certificate") {
                self.delete_issued_secret(obj, &t).await?;
            }
            Ok(())
        })
    }
}

impl KubernetesProvider {
    /// Deletes the TLS Secret cert-manager issued for a Certificate that is gone (`spec.secretName`,
    /// when its `cert-manager.io/certificate-name` annotation names the Certificate): cert-manager
    /// gives the Secret no owner by default, so without this a rolled-back phase 8 would leave the
    /// tenant's private key behind (the guide: "The TLS secret is cleaned up"). A Secret of that
    /// name that cert-manager did not issue for this Certificate is left alone.
    async fn delete_issued_secret(&self, obj: &ResourceObject, cert: &Target) -> Result<(), ProviderError> {
        let secret_name = obj
            .attrs
            .get("spec")
            .and_then(Value::as_map)
            .and_then(|spec| spec.get("secretName"))
            .and_then(Value::as_str);
        let (Some(secret_name), Some(ns)) = (secret_name, &cert.namespace) else { return Ok(()) };
        let secret = Target {
            ar: ApiResource::from_gvk(&GroupVersionKind::gvk("", "v1", "Secret")),
            name: secret_name.to_string(),
            namespace: Some(ns.clone()),
        };
        let Some(live) = self.get_json(obj, &secret).await? else { return Ok(()) };
        if live["metadata"]["annotations"]["cert-manager.io/certificate-name"].as_str() != Some(cert.name.as_str()) {
            return Ok(());
        }
        match self.api(&secret).delete(&secret.name, &DeleteParams::default()).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
            Err(e) => Err(api_err(obj, &format!("delete the TLS Secret {secret_name} issued for it"), e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(attrs: Value) -> ResourceObject {
        ResourceObject::new("kubernetes_secret.db".parse().unwrap(), attrs.as_map().unwrap().clone())
    }

    #[test]
    fn quantities_in_another_spelling_of_the_same_amount_are_not_drift() {
        let desired = Value::Map([("cpu".to_string(), Value::str("1000m"))].into());
        let live = serde_json::json!({"cpu": "1"});
        assert_eq!(project(&desired, &live), Some(desired.clone()));
        let live = serde_json::json!({"cpu": "2"});
        assert_eq!(project(&desired, &live), Some(Value::Map([("cpu".to_string(), Value::str("2"))].into())));
    }

    #[test]
    fn projection_keeps_only_managed_fields() {
        let desired = Value::map([
            ("metadata", Value::map([("labels", Value::map([("a", Value::str("1"))]))])),
            ("spec", Value::map([("replicas", Value::Int(2))])),
        ]);
        let live = serde_json::json!({
            "metadata": {"labels": {"a": "2", "other": "x"}, "uid": "u", "managedFields": []},
            "spec": {"replicas": 2, "revisionHistoryLimit": 10},
            "status": {"readyReplicas": 2}
        });
        let got = project(&desired, &live).unwrap();
        assert_eq!(
            got,
            Value::map([
                ("metadata", Value::map([("labels", Value::map([("a", Value::str("2"))]))])),
                ("spec", Value::map([("replicas", Value::Int(2))])),
            ])
        );
    }

    #[test]
    fn fields_a_controller_took_over_are_not_drift_but_kubectl_edits_are() {
        let recorded: BTreeMap<String, Value> = [
            ("metadata".to_string(), Value::map([("labels", Value::map([("tier", Value::str("pro"))]))])),
            ("spec".to_string(), Value::map([("replicas", Value::Int(2)), ("paused", Value::Bool(false))])),
        ]
        .into_iter()
        .collect();
        let live = serde_json::json!({
            "metadata": {
                "labels": {"tier": "free"},
                "managedFields": [
                    {"manager": "matih", "operation": "Apply", "fieldsV1": {"f:spec": {"f:paused": {}}}},
                    {"manager": "horizontal-pod-autoscaler", "operation": "Update", "fieldsV1": {"f:spec": {"f:replicas": {}}}},
                    {"manager": "kubectl-label", "operation": "Update", "fieldsV1": {"f:metadata": {"f:labels": {"f:tier": {}}}}},
                    {"manager": "kube-controller-manager", "operation": "Update", "subresource": "status", "fieldsV1": {"f:spec": {"f:paused": {}}}}
                ]
            },
            "spec": {"replicas": 7, "paused": true}
        });
        let (seen, yielded) = observe(&recorded, &live);
        assert_eq!(seen["spec"].get_path("replicas"), Some(&Value::Int(2)), "the autoscaler's field keeps the record");
        assert_eq!(
            yielded,
            [YieldedField { path: "spec.replicas".into(), manager: "horizontal-pod-autoscaler".into() }]
        );
        assert!(is_controller("kube-controller-manager"));
        assert!(!is_controller("kubectl-label") && !is_controller("kubectl") && !is_controller("matih"));
        assert_eq!(
            spell(&["metadata".into(), "labels".into(), "matih.ai/tier".into()]),
            r#"metadata.labels["matih.ai/tier"]"#
        );
        assert_eq!(seen["spec"].get_path("paused"), Some(&Value::Bool(true)), "matih's own field is read back");
        assert_eq!(seen["metadata"].get_path("labels.tier"), Some(&Value::str("free")), "a kubectl edit is drift");
    }

    #[test]
    fn secrets_are_sent_base64_and_recorded_as_fingerprints() {
        let o = ResourceObject {
            secrets: [("env:HOOK".to_string(), "https://hooks.example/T0".to_string())].into_iter().collect(),
            ..obj(Value::map([
                ("apiVersion", Value::str("v1")),
                ("kind", Value::str("Secret")),
                ("metadata", Value::map([("name", Value::str("s")), ("namespace", Value::str("n"))])),
                (
                    "data",
                    Value::map([
                        ("URL", Value::Secret(Secret { source: "env:HOOK".into(), fingerprint: None })),
                        ("HOST", Value::str("ZGI=")),
                    ]),
                ),
            ]))
        };
        let (body, recorded) = manifest(&o, None).unwrap();
        assert_eq!(body["data"]["HOST"], "ZGI=");
        assert_eq!(body["data"]["URL"], base64::engine::general_purpose::STANDARD.encode("https://hooks.example/T0"));
        let rec = serde_json::to_string(&recorded).unwrap();
        assert!(!rec.contains("hooks.example"), "{rec}");
        assert!(rec.contains(&fingerprint("https://hooks.example/T0")));
        // Read back through the projection: the same fingerprint, so no drift.
        let (observed, _) = observe(&recorded, &body);
        assert_eq!(observed["data"], recorded["data"]);
    }

    #[test]
    fn a_missing_secret_is_an_error_naming_its_source_and_generated_ones_are_random() {
        let o = obj(Value::map([
            ("apiVersion", Value::str("v1")),
            ("kind", Value::str("Secret")),
            ("metadata", Value::map([("name", Value::str("s"))])),
            (
                "data",
                Value::map([(
                    "P",
                    Value::Secret(Secret {
                        source: "output:postgresql_role.tenant.password".into(),
                        fingerprint: None,
                    }),
                )]),
            ),
        ]));
        let e = manifest(&o, None).unwrap_err();
        assert!(e.message.contains("output:postgresql_role.tenant.password"), "{e}");
        assert_eq!(e.path.as_deref(), Some("data.P"));
        let a = generate_secret();
        assert_eq!(a.len(), 48);
        assert_ne!(a, generate_secret());
    }
}
