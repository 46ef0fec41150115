//! The in-memory object store: writes with Kubernetes metadata rules, a global resourceVersion counter, watch
//! events, and the background work (controllers) that writes create.

use crate::fields::{self, Entry, Scope};
use crate::kinds::{self, Kind, NameRule};
use crate::status::ApiError;
use crate::util;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::broadcast;

/// Settings that can change at run time through the admin API; `reset` restores the start values.
#[derive(Clone, Debug)]
pub struct RuntimeConfig {
    pub latency_ms: u64,
    pub deployment_ready_delay_ms: u64,
    pub lb_ip_delay_ms: u64,
    pub certificate_ready_delay_ms: u64,
    pub namespace_delete_delay_ms: u64,
    pub never_ready_deployments: bool,
    pub never_assign_lb_ip: bool,
    pub never_ready_certificates: bool,
}

/// One change to the store, as sent to watchers.
#[derive(Clone, Debug)]
pub struct Event {
    pub rv: u64,
    pub store_key: (String, String),
    pub namespace: String,
    pub kind: &'static str,
    pub object: Value,
}

/// Work a controller does once its time has come.
#[derive(Clone, Debug, PartialEq)]
enum Action {
    DeploymentProgressing { generation: i64 },
    DeploymentReady { generation: i64 },
    AssignLoadBalancerIp,
    CertificateReady { generation: i64 },
    JobComplete,
    FinalizeNamespace,
}

#[derive(Clone, Debug)]
struct Task {
    due: Instant,
    store_key: (String, String),
    namespace: String,
    name: String,
    action: Action,
}

/// How a write records field ownership.
pub enum WriteOp<'a> {
    /// An Update operation (create, replace, patch) by a manager, to the main resource or the status.
    Update { manager: &'a str, scope: Scope },
    /// A server-side apply whose managedFields entries were already computed.
    Apply { entries: Vec<Entry> },
}

/// Objects of one resource, keyed by (namespace, name); cluster-scoped objects have an empty namespace.
type Objects = BTreeMap<(String, String), Value>;

pub struct Store {
    objects: HashMap<(String, String), Objects>,
    pub rv: u64,
    history: Vec<Arc<Event>>,
    pub events: broadcast::Sender<Arc<Event>>,
    tasks: Vec<Task>,
    next_cluster_ip: u32,
    lb_pool: (u32, u32),
    next_lb_ip: u32,
    pub config: RuntimeConfig,
}

/// Removes `metadata` and `status`, leaving what counts for `metadata.generation`.
fn spec_part(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(m) = v.as_object_mut() {
        m.shift_remove("metadata");
        m.shift_remove("status");
    }
    v
}

/// Parses `a.b.c.d/len` into the first and last usable host addresses.
pub fn parse_pool(cidr: &str) -> Result<(u32, u32), String> {
    let (addr, len) = cidr.split_once('/').ok_or_else(|| format!("invalid CIDR {cidr:?}"))?;
    let addr: Ipv4Addr = addr.parse().map_err(|_| format!("invalid CIDR address {addr:?}"))?;
    let len: u32 = len.parse().ok().filter(|l| *l <= 30).ok_or_else(|| format!("invalid CIDR length in {cidr:?}"))?;
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    let network = u32::from(addr) & mask;
    Ok((network + 1, (network | !mask) - 1))
}

impl Store {
    pub fn new(config: RuntimeConfig, lb_pool: (u32, u32)) -> Self {
        let (events, _) = broadcast::channel(4096);
        let mut store = Store {
            objects: HashMap::new(),
            rv: 0,
            history: Vec::new(),
            events,
            tasks: Vec::new(),
            next_cluster_ip: 1,
            lb_pool,
            next_lb_ip: lb_pool.0,
            config,
        };
        store.seed();
        store
    }

    /// Creates the namespaces and CustomResourceDefinitions every cluster starts with.
    pub fn seed(&mut self) {
        let all = self.kinds();
        let find = |kind: &str| all.iter().find(|k| k.kind == kind).cloned().expect("built-in kind");
        let ns_kind = find("Namespace");
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            let obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
            self.write(
                &ns_kind,
                None,
                obj,
                WriteOp::Update { manager: "kube-apiserver", scope: Scope::Main { status_subresource: true } },
                false,
            )
            .expect("seed namespace");
        }
        let crd_kind = find("CustomResourceDefinition");
        for entry in kinds::PREREGISTERED_CRDS {
            let obj = kinds::preregistered_crd(entry);
            self.write(
                &crd_kind,
                None,
                obj,
                WriteOp::Update { manager: "kube-test-server", scope: Scope::Main { status_subresource: true } },
                false,
            )
            .expect("seed CRD");
        }
    }

    /// Removes every object and pending task, then seeds again (resourceVersions keep counting up).
    pub fn wipe(&mut self) {
        self.objects.clear();
        self.tasks.clear();
        self.seed();
    }

    /// Built-in kinds followed by the kinds of every stored CustomResourceDefinition.
    pub fn kinds(&self) -> Vec<Kind> {
        let mut all = kinds::builtin_kinds();
        if let Some(crds) =
            self.objects.get(&("apiextensions.k8s.io".to_string(), "customresourcedefinitions".to_string()))
        {
            for crd in crds.values() {
                if crd["metadata"].get("deletionTimestamp").is_none() {
                    all.extend(kinds::kinds_from_crd(crd).unwrap_or_default());
                }
            }
        }
        all
    }

    /// The served kind for a store key, preferring the highest-priority version.
    fn kind_for(&self, store_key: &(String, String)) -> Option<Kind> {
        let mut ks: Vec<Kind> = self.kinds().into_iter().filter(|k| k.store_key() == *store_key).collect();
        ks.sort_by_key(|k| std::cmp::Reverse(kinds::version_priority(&k.version)));
        ks.into_iter().next()
    }

    pub fn get(&self, kind: &Kind, namespace: &str, name: &str) -> Option<&Value> {
        self.objects.get(&kind.store_key())?.get(&(namespace.to_string(), name.to_string()))
    }

    /// Objects of a kind, in one namespace or (with `None`) in all, ordered by namespace then name.
    pub fn list(&self, kind: &Kind, namespace: Option<&str>) -> Vec<Value> {
        self.objects
            .get(&kind.store_key())
            .map(|objs| {
                objs.iter()
                    .filter(|((ns, _), _)| namespace.is_none_or(|n| n == ns))
                    .map(|(_, v)| with_type(kind, v))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn emit(&mut self, store_key: (String, String), namespace: &str, kind: &'static str, object: Value) {
        let event = Arc::new(Event { rv: self.rv, store_key, namespace: namespace.to_string(), kind, object });
        self.history.push(event.clone());
        // A send error only means nobody watches right now.
        let _ = self.events.send(event);
    }

    /// Events after `rv` for one resource, for a watch that resumes from a resourceVersion.
    pub fn events_since(&self, store_key: &(String, String), rv: u64) -> Vec<Arc<Event>> {
        let start = self.history.partition_point(|e| e.rv <= rv);
        self.history[start..].iter().filter(|e| e.store_key == *store_key).cloned().collect()
    }

    fn validate_name(kind: &Kind, name: &str) -> Option<String> {
        let ok = match kind.name_rule {
            NameRule::Label => util::is_dns1123_label(name),
            NameRule::Subdomain => util::is_dns1123_subdomain(name),
            NameRule::PathSegment => name != "." && name != ".." && !name.contains('/') && !name.contains('%'),
        };
        if ok {
            return None;
        }
        Some(match kind.name_rule {
            NameRule::Label => format!("Invalid value: {name:?}: a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"),
            NameRule::Subdomain => format!("Invalid value: {name:?}: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"),
            NameRule::PathSegment => format!("Invalid value: {name:?}: may not contain '/' or '%' and may not be '.' or '..'"),
        })
    }

    /// Writes an object: fills system metadata, keeps or drops status, applies defaults, records field
    /// ownership, bumps generation on spec changes and resourceVersion on any change, and schedules controllers.
    /// A write that changes nothing returns the stored object untouched. With `dry_run` nothing is stored.
    pub fn write(
        &mut self,
        kind: &Kind,
        old: Option<&Value>,
        mut new: Value,
        op: WriteOp<'_>,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        let name = new["metadata"]["name"].as_str().unwrap_or_default().to_string();
        let namespace = new["metadata"]["namespace"].as_str().unwrap_or_default().to_string();
        if old.is_none() {
            let mut errors = Vec::new();
            if name.is_empty() {
                errors.push((
                    "metadata.name".to_string(),
                    "Required value: name or generateName is required".to_string(),
                ));
            } else if let Some(msg) = Self::validate_name(kind, &name) {
                errors.push(("metadata.name".to_string(), msg));
            }
            if kind.kind == "CustomResourceDefinition" {
                if let Err(e) = kinds::kinds_from_crd(&new) {
                    errors.extend(e);
                }
            }
            if !errors.is_empty() {
                return Err(ApiError::invalid(kind, &name, &errors));
            }
        }
        let now = util::now_rfc3339();
        let obj = new.as_object_mut().ok_or_else(|| ApiError::bad_request("the object must be a JSON object"))?;
        obj.shift_remove("apiVersion");
        obj.shift_remove("kind");
        let mut typed = serde_json::Map::new();
        typed.insert("apiVersion".into(), json!(kind.api_version()));
        typed.insert("kind".into(), json!(kind.kind));
        typed.extend(std::mem::take(obj));
        new = Value::Object(typed);

        let meta =
            new["metadata"].as_object_mut().ok_or_else(|| ApiError::bad_request("metadata must be an object"))?;
        for system in [
            "resourceVersion",
            "managedFields",
            "selfLink",
            "uid",
            "creationTimestamp",
            "generation",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
        ] {
            meta.shift_remove(system);
        }
        if namespace.is_empty() {
            meta.shift_remove("namespace");
        }
        match old {
            Some(old) => {
                for system in ["uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds"] {
                    if let Some(v) = old["metadata"].get(system) {
                        meta.insert(system.into(), v.clone());
                    }
                }
            }
            None => {
                meta.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
                meta.insert("creationTimestamp".into(), json!(now));
            }
        }

        let scope = match &op {
            WriteOp::Update { scope, .. } => *scope,
            WriteOp::Apply { .. } => Scope::Main { status_subresource: kind.status_subresource },
        };
        match scope {
            Scope::Status => {
                let status = new.get("status").cloned();
                new = old.cloned().unwrap_or(new);
                match status {
                    Some(s) => new["status"] = s,
                    None => {
                        new.as_object_mut().expect("object").shift_remove("status");
                    }
                }
            }
            Scope::Main { status_subresource: true } => {
                let obj = new.as_object_mut().expect("object");
                match old.and_then(|o| o.get("status")) {
                    Some(s) => {
                        obj.insert("status".into(), s.clone());
                    }
                    None => {
                        obj.shift_remove("status");
                    }
                }
            }
            Scope::Main { status_subresource: false } => {}
        }
        if scope != Scope::Status {
            self.default_fields(kind, old, &mut new);
        }

        let mut entries = match op {
            WriteOp::Apply { entries } => entries,
            WriteOp::Update { manager, .. } => {
                let mut entries = old.map(fields::read_entries).unwrap_or_default();
                let previous = old.cloned().map(|mut o| {
                    fields::write_entries(&mut o, &[]);
                    o
                });
                fields::record_update(&mut entries, previous.as_ref(), &new, manager, &kind.api_version(), scope, &now);
                entries
            }
        };
        // Entries whose time did not move keep the stored time, so a no-op write stays a no-op.
        if let Some(old) = old {
            for e in &mut entries {
                if let Some(prev) = fields::read_entries(old).into_iter().find(|p| {
                    p.manager == e.manager
                        && p.operation == e.operation
                        && p.subresource == e.subresource
                        && p.fields == e.fields
                }) {
                    e.time = prev.time;
                }
            }
        }
        fields::write_entries(&mut new, &entries);

        let generation = match old {
            None => 1,
            Some(old) => {
                let g = old["metadata"]["generation"].as_i64().unwrap_or(1);
                if spec_part(old) != spec_part(&new) {
                    g + 1
                } else {
                    g
                }
            }
        };
        new["metadata"]["generation"] = json!(generation);

        if let Some(old) = old {
            let mut same = new.clone();
            same["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"].clone();
            if same == *old {
                return Ok(old.clone());
            }
        }
        if dry_run {
            if let Some(old) = old {
                new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"].clone();
            }
            return Ok(new);
        }

        let store_key = kind.store_key();
        let finalizers_done = new["metadata"]["finalizers"].as_array().is_none_or(Vec::is_empty);
        if new["metadata"].get("deletionTimestamp").is_some() && finalizers_done && kind.kind != "Namespace" {
            return Ok(self.remove(&store_key, &namespace, &name).unwrap_or(new));
        }
        self.rv += 1;
        new["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        self.objects.entry(store_key.clone()).or_default().insert((namespace.clone(), name.clone()), new.clone());
        self.emit(store_key, &namespace, if old.is_some() { "MODIFIED" } else { "ADDED" }, new.clone());
        self.schedule(kind, old, &new);
        Ok(new)
    }

    /// Server-side defaults and mutations of built-in kinds.
    fn default_fields(&mut self, kind: &Kind, old: Option<&Value>, new: &mut Value) {
        match (kind.group.as_str(), kind.kind.as_str()) {
            ("", "Namespace") => {
                let name = new["metadata"]["name"].clone();
                new["metadata"]["labels"]["kubernetes.io/metadata.name"] = name;
                if new["spec"]["finalizers"].is_null() {
                    new["spec"]["finalizers"] = json!(["kubernetes"]);
                }
                if old.is_none() {
                    new["status"] = json!({"phase": "Active"});
                }
            }
            ("", "Secret") => {
                if let Some(string_data) = new.as_object_mut().and_then(|o| o.shift_remove("stringData")) {
                    for (k, v) in string_data.as_object().into_iter().flatten() {
                        new["data"][k] = json!(util::base64_encode(v.as_str().unwrap_or_default().as_bytes()));
                    }
                }
                if new["type"].is_null() {
                    new["type"] = json!("Opaque");
                }
            }
            ("", "Service") => {
                let spec = &mut new["spec"];
                if spec["type"].is_null() {
                    spec["type"] = json!("ClusterIP");
                }
                if spec["sessionAffinity"].is_null() {
                    spec["sessionAffinity"] = json!("None");
                }
                if spec["clusterIP"].is_null() {
                    let previous = old.map(|o| o["spec"]["clusterIP"].clone()).filter(|v| !v.is_null());
                    let ip = previous.unwrap_or_else(|| {
                        let ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 96, 0, 0)) + self.next_cluster_ip);
                        self.next_cluster_ip += 1;
                        json!(ip.to_string())
                    });
                    spec["clusterIP"] = ip;
                }
                spec["clusterIPs"] = json!([spec["clusterIP"].clone()]);
                if let Some(ports) = spec["ports"].as_array_mut() {
                    for p in ports {
                        if p["protocol"].is_null() {
                            p["protocol"] = json!("TCP");
                        }
                        if p["targetPort"].is_null() {
                            p["targetPort"] = p["port"].clone();
                        }
                    }
                }
            }
            ("apps", "Deployment" | "StatefulSet") if new["spec"]["replicas"].is_null() => {
                new["spec"]["replicas"] = json!(1);
            }
            _ => {}
        }
    }

    /// Removes one object, emitting a DELETED event with a fresh resourceVersion.
    pub fn remove(&mut self, store_key: &(String, String), namespace: &str, name: &str) -> Option<Value> {
        let mut obj = self.objects.get_mut(store_key)?.remove(&(namespace.to_string(), name.to_string()))?;
        self.rv += 1;
        obj["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        self.emit(store_key.clone(), namespace, "DELETED", obj.clone());
        self.tasks.retain(|t| !(t.store_key == *store_key && t.namespace == namespace && t.name == name));
        if store_key.1 == "customresourcedefinitions" {
            // Deleting a CustomResourceDefinition deletes every object of the kind it defined.
            let group = obj["spec"]["group"].as_str().unwrap_or_default().to_string();
            let plural = obj["spec"]["names"]["plural"].as_str().unwrap_or_default().to_string();
            let key = (group, plural);
            let names: Vec<(String, String)> =
                self.objects.get(&key).map(|o| o.keys().cloned().collect()).unwrap_or_default();
            for (ns, n) in names {
                self.remove(&key, &ns, &n);
            }
        }
        Some(obj)
    }

    /// Deletes an object as the API server does: objects with finalizers get a deletionTimestamp and stay until
    /// their finalizers are removed; a namespace turns Terminating, its objects are deleted and it disappears
    /// after the namespace delete delay. Returns the object as it is after the call.
    pub fn delete(&mut self, kind: &Kind, namespace: &str, name: &str) -> Option<Value> {
        let store_key = kind.store_key();
        let current = self.get(kind, namespace, name)?.clone();
        let has_finalizers = current["metadata"]["finalizers"].as_array().is_some_and(|f| !f.is_empty());
        if kind.kind == "Namespace" {
            if current["metadata"].get("deletionTimestamp").is_some() {
                return Some(current);
            }
            let mut terminating = current.clone();
            terminating["metadata"]["deletionTimestamp"] = json!(util::now_rfc3339());
            terminating["metadata"]["deletionGracePeriodSeconds"] = json!(0);
            terminating["status"]["phase"] = json!("Terminating");
            self.rv += 1;
            terminating["metadata"]["resourceVersion"] = json!(self.rv.to_string());
            self.objects
                .entry(store_key.clone())
                .or_default()
                .insert((String::new(), name.to_string()), terminating.clone());
            self.emit(store_key.clone(), "", "MODIFIED", terminating.clone());
            for k in self.kinds().into_iter().filter(|k| k.namespaced) {
                let names: Vec<String> = self
                    .list(&k, Some(name))
                    .iter()
                    .filter_map(|o| o["metadata"]["name"].as_str().map(str::to_string))
                    .collect();
                for n in names {
                    self.delete(&k, name, &n);
                }
            }
            let delay = Duration::from_millis(self.config.namespace_delete_delay_ms);
            self.tasks.push(Task {
                due: Instant::now() + delay,
                store_key,
                namespace: String::new(),
                name: name.into(),
                action: Action::FinalizeNamespace,
            });
            return Some(terminating);
        }
        if has_finalizers {
            if current["metadata"].get("deletionTimestamp").is_some() {
                return Some(with_type(kind, &current));
            }
            let mut marked = current.clone();
            marked["metadata"]["deletionTimestamp"] = json!(util::now_rfc3339());
            marked["metadata"]["deletionGracePeriodSeconds"] = json!(0);
            self.rv += 1;
            marked["metadata"]["resourceVersion"] = json!(self.rv.to_string());
            self.objects
                .entry(store_key.clone())
                .or_default()
                .insert((namespace.to_string(), name.to_string()), marked.clone());
            self.emit(store_key, namespace, "MODIFIED", marked.clone());
            return Some(marked);
        }
        self.remove(&store_key, namespace, name)
    }

    fn schedule(&mut self, kind: &Kind, old: Option<&Value>, new: &Value) {
        let generation = new["metadata"]["generation"].as_i64().unwrap_or(1);
        let generation_changed = old.is_none_or(|o| o["metadata"]["generation"].as_i64() != Some(generation));
        let ns = new["metadata"]["namespace"].as_str().unwrap_or_default().to_string();
        let name = new["metadata"]["name"].as_str().unwrap_or_default().to_string();
        let now = Instant::now();
        let push = |tasks: &mut Vec<Task>, delay_ms: u64, action: Action| {
            tasks.push(Task {
                due: now + Duration::from_millis(delay_ms),
                store_key: kind.store_key(),
                namespace: ns.clone(),
                name: name.clone(),
                action,
            });
        };
        match (kind.group.as_str(), kind.kind.as_str()) {
            ("apps", "Deployment") if generation_changed => {
                push(&mut self.tasks, 0, Action::DeploymentProgressing { generation });
                push(&mut self.tasks, self.config.deployment_ready_delay_ms, Action::DeploymentReady { generation });
            }
            ("", "Service") => {
                let wants_ip = new["spec"]["type"] == "LoadBalancer"
                    && new["status"]["loadBalancer"]["ingress"].as_array().is_none_or(Vec::is_empty);
                let pending = self
                    .tasks
                    .iter()
                    .any(|t| t.action == Action::AssignLoadBalancerIp && t.namespace == ns && t.name == name);
                if wants_ip && !pending {
                    push(&mut self.tasks, self.config.lb_ip_delay_ms, Action::AssignLoadBalancerIp);
                }
            }
            ("cert-manager.io", "Certificate") if generation_changed => {
                push(&mut self.tasks, self.config.certificate_ready_delay_ms, Action::CertificateReady { generation });
            }
            // A Job runs once: it completes after the Deployment delay (its pods "ran" that long).
            ("batch", "Job") if old.is_none() => {
                push(&mut self.tasks, self.config.deployment_ready_delay_ms, Action::JobComplete);
            }
            _ => {}
        }
    }

    /// Runs every controller task that is due and not held back by a `never…` switch.
    pub fn run_controllers(&mut self) {
        let now = Instant::now();
        let (due, rest): (Vec<Task>, Vec<Task>) =
            std::mem::take(&mut self.tasks).into_iter().partition(|t| t.due <= now);
        self.tasks = rest;
        for task in due {
            let held = match task.action {
                Action::DeploymentReady { .. } | Action::JobComplete => self.config.never_ready_deployments,
                Action::AssignLoadBalancerIp => self.config.never_assign_lb_ip,
                Action::CertificateReady { .. } => self.config.never_ready_certificates,
                _ => false,
            };
            if held || !self.run_task(&task) {
                self.tasks.push(task);
            }
        }
    }

    /// Performs one task; returns false when it must be tried again later.
    fn run_task(&mut self, task: &Task) -> bool {
        let Some(kind) = self.kind_for(&task.store_key) else { return true };
        let Some(current) = self.get(&kind, &task.namespace, &task.name).cloned() else { return true };
        let generation = current["metadata"]["generation"].as_i64().unwrap_or(1);
        let now = util::now_rfc3339();
        let mut status = current.get("status").cloned().unwrap_or_else(|| json!({}));
        let manager = match &task.action {
            Action::DeploymentProgressing { generation: g } | Action::DeploymentReady { generation: g } => {
                if *g != generation {
                    return true;
                }
                let replicas = current["spec"]["replicas"].as_i64().unwrap_or(1);
                let ready = matches!(task.action, Action::DeploymentReady { .. }) || replicas == 0;
                let name = &task.name;
                status = json!({
                    "observedGeneration": generation,
                    "replicas": replicas,
                    "updatedReplicas": replicas,
                    "conditions": [
                        if ready {
                            json!({"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable", "message": "Deployment has minimum availability.", "lastUpdateTime": now, "lastTransitionTime": now})
                        } else {
                            json!({"type": "Available", "status": "False", "reason": "MinimumReplicasUnavailable", "message": "Deployment does not have minimum availability.", "lastUpdateTime": now, "lastTransitionTime": now})
                        },
                        if ready {
                            json!({"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable", "message": format!("ReplicaSet \"{name}\" has successfully progressed."), "lastUpdateTime": now, "lastTransitionTime": now})
                        } else {
                            json!({"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated", "message": format!("ReplicaSet \"{name}\" is progressing."), "lastUpdateTime": now, "lastTransitionTime": now})
                        },
                    ],
                });
                if ready {
                    status["readyReplicas"] = json!(replicas);
                    status["availableReplicas"] = json!(replicas);
                } else {
                    status["unavailableReplicas"] = json!(replicas);
                }
                "kube-controller-manager"
            }
            Action::AssignLoadBalancerIp => {
                if current["spec"]["type"] != "LoadBalancer" {
                    return true;
                }
                if self.next_lb_ip > self.lb_pool.1 {
                    return false;
                }
                let ip = Ipv4Addr::from(self.next_lb_ip).to_string();
                self.next_lb_ip += 1;
                status["loadBalancer"] = json!({"ingress": [{"ip": ip, "ipMode": "VIP"}]});
                "cloud-controller-manager"
            }
            Action::CertificateReady { generation: g } => {
                if *g != generation {
                    return true;
                }
                self.issue_certificate_secret(&current);
                let secs = util::unix_now();
                status = json!({
                    "conditions": [{"type": "Ready", "status": "True", "reason": "Ready", "message": "Certificate is up to date and has not expired", "lastTransitionTime": now, "observedGeneration": generation}],
                    "notBefore": now,
                    "notAfter": util::rfc3339(secs + 90 * 86_400),
                    "renewalTime": util::rfc3339(secs + 60 * 86_400),
                    "revision": 1,
                });
                "cert-manager-certificates-readiness"
            }
            Action::JobComplete => {
                let completions = current["spec"]["completions"].as_i64().unwrap_or(1);
                status = json!({
                    "succeeded": completions,
                    "startTime": now,
                    "completionTime": now,
                    "conditions": [{"type": "Complete", "status": "True", "lastProbeTime": now, "lastTransitionTime": now}],
                });
                "job-controller"
            }
            Action::FinalizeNamespace => {
                let remaining = self
                    .kinds()
                    .into_iter()
                    .filter(|k| k.namespaced)
                    .any(|k| !self.list(&k, Some(&task.name)).is_empty());
                if remaining {
                    return false;
                }
                self.remove(&task.store_key, "", &task.name);
                return true;
            }
        };
        let mut updated = current.clone();
        updated["status"] = status;
        let op = WriteOp::Update { manager, scope: Scope::Status };
        // A status write of a stored, valid object cannot fail validation.
        let _ = self.write(&kind, Some(&current), updated, op, false);
        true
    }

    /// Writes the TLS Secret a ready cert-manager Certificate names in `spec.secretName`, as cert-manager does.
    fn issue_certificate_secret(&mut self, cert: &Value) {
        let (Some(ns), Some(secret_name)) =
            (cert["metadata"]["namespace"].as_str(), cert["spec"]["secretName"].as_str())
        else {
            return;
        };
        let Some(secret_kind) = self.kinds().into_iter().find(|k| k.group.is_empty() && k.kind == "Secret") else {
            return;
        };
        let dns: Vec<&str> =
            cert["spec"]["dnsNames"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        let pem = format!(
            "-----BEGIN CERTIFICATE-----\nkube-test-server certificate for {}\n-----END CERTIFICATE-----\n",
            dns.join(",")
        );
        let obj = json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": secret_name, "namespace": ns, "annotations": {"cert-manager.io/certificate-name": cert["metadata"]["name"]}},
            "type": "kubernetes.io/tls",
            "data": {"tls.crt": util::base64_encode(pem.as_bytes()), "tls.key": util::base64_encode(b"kube-test-server key")},
        });
        let old = self.get(&secret_kind, ns, secret_name).cloned();
        let op = WriteOp::Update {
            manager: "cert-manager-certificates-issuing",
            scope: Scope::Main { status_subresource: false },
        };
        let _ = self.write(&secret_kind, old.as_ref(), obj, op, false);
    }
}

/// The object with `apiVersion` and `kind` of the version it is served as.
pub fn with_type(kind: &Kind, v: &Value) -> Value {
    let mut v = v.clone();
    v["apiVersion"] = json!(kind.api_version());
    v["kind"] = json!(kind.kind);
    v
}
