//! The Kubernetes REST API: routing of discovery and resource paths, and the verbs on resources.

use crate::fields::{self, Scope};
use crate::kinds::{self, Kind};
use crate::patch;
use crate::selector::Selector;
use crate::status::ApiError;
use crate::store::{with_type, Event, Store, WriteOp};
use crate::table;
use crate::util;
use serde_json::{json, Value};
use std::sync::Arc;
use tokio::sync::broadcast;

/// A request as the API layer sees it.
pub struct ApiRequest {
    pub method: String,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub content_type: String,
    pub accept: String,
    pub user_agent: String,
    pub body: Vec<u8>,
}

impl ApiRequest {
    pub fn param(&self, key: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

/// Where a path leads.
pub enum Route {
    Version,
    Api,
    Apis,
    Group(String),
    ResourceList(String, String),
    /// `/openapi/v3`: the index of group versions.
    OpenApiRoot,
    /// `/openapi/v3/api/v1` or `/openapi/v3/apis/{group}/{version}`.
    OpenApiGroupVersion(String, String),
    Resource {
        kind: Kind,
        namespace: Option<String>,
        name: Option<String>,
        sub: Option<String>,
    },
}

/// A successful answer: a JSON body with a code, or the start of a watch stream.
pub enum Reply {
    Json(u16, Value),
    Watch(Box<Watch>),
}

/// What a watch stream needs: the events to send first, the live feed and the filter.
pub struct Watch {
    pub initial: Vec<Value>,
    pub feed: broadcast::Receiver<Arc<Event>>,
    pub store_key: (String, String),
    pub kind: Kind,
    pub namespace: Option<String>,
    pub selector: Selector,
    pub after_rv: u64,
    pub timeout_secs: u64,
}

impl Watch {
    /// Whether a store event belongs on this stream.
    pub fn wants(&self, e: &Event) -> bool {
        e.rv > self.after_rv
            && e.store_key == self.store_key
            && self.namespace.as_ref().is_none_or(|n| *n == e.namespace)
            && self.selector.matches(&e.object)
    }

    /// Renders one event line.
    pub fn line(&self, kind: &str, object: &Value) -> Value {
        json!({"type": kind, "object": with_type(&self.kind, object)})
    }
}

/// The classification of a request, used by fault matching and the request log.
#[derive(Clone, Debug, Default)]
pub struct Info {
    pub verb: String,
    pub resource: Option<String>,
    pub group: Option<String>,
    pub subresource: Option<String>,
    pub namespace: Option<String>,
    pub name: Option<String>,
}

/// Resolves a path against the served kinds.
pub fn route(path: &str, kinds: &[Kind]) -> Result<Route, ApiError> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').filter(|s| !s.is_empty()).collect();
    let (group, version, rest) = match segs.as_slice() {
        ["version"] => return Ok(Route::Version),
        ["api"] => return Ok(Route::Api),
        ["apis"] => return Ok(Route::Apis),
        ["apis", g] => return Ok(Route::Group(g.to_string())),
        ["openapi", "v3"] => return Ok(Route::OpenApiRoot),
        ["openapi", "v3", "api", v] => return Ok(Route::OpenApiGroupVersion(String::new(), v.to_string())),
        ["openapi", "v3", "apis", g, v] => return Ok(Route::OpenApiGroupVersion(g.to_string(), v.to_string())),
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return Err(ApiError::no_route()),
    };
    if rest.is_empty() {
        return Ok(Route::ResourceList(group.into(), version.into()));
    }
    let find = |plural: &str| kinds.iter().find(|k| k.group == group && k.version == version && k.plural == plural);
    let namespaced_path = rest[0] == "namespaces"
        && rest.len() >= 3
        && !(group.is_empty() && rest.len() == 3 && (rest[2] == "status" || rest[2] == "finalize"));
    let (namespace, rest) = if namespaced_path { (Some(rest[1].to_string()), &rest[2..]) } else { (None, rest) };
    let kind = find(rest[0]).cloned().ok_or_else(ApiError::no_route)?;
    resource_route(kind, namespace, &rest[1..])
}

fn resource_route(kind: Kind, namespace: Option<String>, rest: &[&str]) -> Result<Route, ApiError> {
    if namespace.is_some() && !kind.namespaced {
        return Err(ApiError::no_route());
    }
    let (name, sub) = match rest {
        [] => (None, None),
        [n] => (Some(n.to_string()), None),
        [n, s] if *s == "status" && kind.status_subresource => (Some(n.to_string()), Some(s.to_string())),
        _ => return Err(ApiError::no_route()),
    };
    if kind.namespaced && namespace.is_none() && name.is_some() {
        return Err(ApiError::no_route());
    }
    Ok(Route::Resource { kind, namespace, name, sub })
}

/// The verb and target of a request, for faults and the log.
pub fn classify(req: &ApiRequest, route: Option<&Route>) -> Info {
    let Some(Route::Resource { kind, namespace, name, sub }) = route else {
        return Info { verb: req.method.to_lowercase(), ..Info::default() };
    };
    let watch = matches!(req.param("watch"), Some("true" | "1"));
    let verb = match (req.method.as_str(), name.is_some()) {
        ("GET", true) => "get",
        ("GET", false) if watch => "watch",
        ("GET", false) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) if req.content_type.starts_with("application/apply-patch") => "apply",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        (m, _) => return Info { verb: m.to_lowercase(), ..Info::default() },
    };
    Info {
        verb: verb.into(),
        resource: Some(kind.plural.clone()),
        group: Some(kind.group.clone()),
        subresource: sub.clone(),
        namespace: namespace.clone(),
        name: name.clone(),
    }
}

/// The field manager of a request: the `fieldManager` parameter, else the user agent up to its first '/'.
fn manager_of(req: &ApiRequest) -> String {
    match req.param("fieldManager") {
        Some(m) if !m.is_empty() => m.to_string(),
        _ => req.user_agent.split('/').next().filter(|s| !s.is_empty()).unwrap_or("unknown").to_string(),
    }
}

fn dry_run(req: &ApiRequest) -> Result<bool, ApiError> {
    match req.param("dryRun") {
        None | Some("") => Ok(false),
        Some("All") => Ok(true),
        Some(other) => Err(ApiError::bad_request(format!("Invalid dry run value: {other:?}; must be All"))),
    }
}

fn parse_body(req: &ApiRequest) -> Result<Value, ApiError> {
    if req.content_type.starts_with("application/vnd.kubernetes.protobuf")
        || req.content_type.starts_with("application/cbor")
    {
        return Err(ApiError::unsupported_media_type(&req.content_type));
    }
    let v = util::parse_json_or_yaml(&req.body).map_err(ApiError::bad_request)?;
    if !v.is_object() {
        return Err(ApiError::bad_request("the request body must be a JSON object"));
    }
    Ok(v)
}

/// Answers one API request with the store locked.
pub fn handle(store: &mut Store, req: &ApiRequest, route: Route) -> Result<Reply, ApiError> {
    let kinds = store.kinds();
    let get_only = |doc: Option<Value>| -> Result<Reply, ApiError> {
        if req.method != "GET" {
            return Err(ApiError::method_not_allowed(format!(
                "the server does not allow this method on the requested resource ({})",
                req.method
            )));
        }
        doc.map(|d| Reply::Json(200, d)).ok_or_else(ApiError::no_route)
    };
    match route {
        Route::Version => get_only(Some(json!({
            "major": "1", "minor": "32", "gitVersion": "v1.32.0-kube-test-server", "gitCommit": "0000000000000000000000000000000000000000",
            "gitTreeState": "clean", "buildDate": "2025-01-01T00:00:00Z", "goVersion": "go1.23.0", "compiler": "gc", "platform": "linux/amd64",
        }))),
        Route::Api => get_only(Some(
            json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]}),
        )),
        Route::Apis => get_only(Some(kinds::api_group_list(&kinds))),
        Route::Group(g) => get_only(kinds::api_group(&kinds, &g)),
        Route::ResourceList(g, v) => get_only(kinds::api_resource_list(&kinds, &g, &v)),
        Route::OpenApiRoot => get_only(Some(kinds::openapi_v3_root(&kinds))),
        Route::OpenApiGroupVersion(g, v) => get_only(kinds::openapi_v3_group_version(&kinds, &g, &v)),
        Route::Resource { kind, namespace, name, sub } => {
            let ns = namespace.as_deref();
            match (req.method.as_str(), name.as_deref()) {
                ("GET", Some(n)) => get(store, req, &kind, ns.unwrap_or_default(), n),
                ("GET", None) => list(store, req, &kind, ns),
                ("POST", None) => create(store, req, &kind, ns),
                ("PUT", Some(n)) => update(store, req, &kind, ns.unwrap_or_default(), n, sub.is_some()),
                ("PATCH", Some(n)) => patch_object(store, req, &kind, ns.unwrap_or_default(), n, sub.is_some()),
                ("DELETE", Some(n)) if sub.is_none() => delete(store, req, &kind, ns.unwrap_or_default(), n),
                ("DELETE", None) => delete_collection(store, req, &kind, ns),
                (m, _) => Err(ApiError::method_not_allowed(format!(
                    "the server does not allow this method on the requested resource ({m})"
                ))),
            }
        }
    }
}

fn get(store: &Store, req: &ApiRequest, kind: &Kind, ns: &str, name: &str) -> Result<Reply, ApiError> {
    let obj = store.get(kind, ns, name).ok_or_else(|| ApiError::not_found(kind, name))?;
    let obj = with_type(kind, obj);
    if table::wants_table(&req.accept) {
        let rv = obj["metadata"]["resourceVersion"].as_str().unwrap_or_default().to_string();
        return Ok(Reply::Json(200, table::render(kind, &[obj], &rv)));
    }
    Ok(Reply::Json(200, obj))
}

fn selector(req: &ApiRequest) -> Result<Selector, ApiError> {
    Selector::parse(req.param("labelSelector"), req.param("fieldSelector")).map_err(ApiError::bad_request)
}

fn list(store: &Store, req: &ApiRequest, kind: &Kind, ns: Option<&str>) -> Result<Reply, ApiError> {
    let sel = selector(req)?;
    let items: Vec<Value> = store.list(kind, ns).into_iter().filter(|o| sel.matches(o)).collect();
    if matches!(req.param("watch"), Some("true" | "1")) {
        let after_rv = match req.param("resourceVersion") {
            None | Some("") | Some("0") => None,
            Some(rv) => {
                Some(rv.parse::<u64>().map_err(|_| ApiError::bad_request(format!("invalid resource version {rv:?}")))?)
            }
        };
        let mut watch = Watch {
            initial: Vec::new(),
            feed: store.events.subscribe(),
            store_key: kind.store_key(),
            kind: kind.clone(),
            namespace: ns.map(str::to_string),
            selector: sel,
            after_rv: after_rv.unwrap_or(store.rv),
            timeout_secs: req.param("timeoutSeconds").and_then(|t| t.parse().ok()).unwrap_or(1800),
        };
        watch.initial = match after_rv {
            None => items.iter().map(|o| watch.line("ADDED", o)).collect(),
            Some(rv) => store
                .events_since(&watch.store_key, rv)
                .iter()
                .filter(|e| watch.wants(e))
                .map(|e| watch.line(e.kind, &e.object))
                .collect(),
        };
        watch.after_rv = store.rv;
        return Ok(Reply::Watch(Box::new(watch)));
    }
    let rv = store.rv.to_string();
    if table::wants_table(&req.accept) {
        return Ok(Reply::Json(200, table::render(kind, &items, &rv)));
    }
    Ok(Reply::Json(
        200,
        json!({"kind": format!("{}List", kind.kind), "apiVersion": kind.api_version(), "metadata": {"resourceVersion": rv}, "items": items}),
    ))
}

/// Checks the body's apiVersion and kind against the URL's resource, when the body sets them.
fn check_type(kind: &Kind, body: &Value, required: bool) -> Result<(), ApiError> {
    let api_version = body["apiVersion"].as_str().unwrap_or_default();
    let k = body["kind"].as_str().unwrap_or_default();
    if required && (api_version.is_empty() || k.is_empty()) {
        return Err(ApiError::bad_request(format!("invalid object type: {api_version}, Kind={k}")));
    }
    if !api_version.is_empty() && api_version != kind.api_version() {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({api_version}) does not match the expected API version ({})",
            kind.api_version()
        )));
    }
    if !k.is_empty() && k != kind.kind {
        return Err(ApiError::bad_request(format!(
            "the kind in the data ({k}) does not match the expected kind ({})",
            kind.kind
        )));
    }
    Ok(())
}

/// Checks (and fills in) the body's namespace against the URL's.
fn check_namespace(kind: &Kind, body: &mut Value, ns: Option<&str>) -> Result<(), ApiError> {
    let body_ns = body["metadata"]["namespace"].as_str().unwrap_or_default().to_string();
    match ns {
        Some(ns) if kind.namespaced => {
            if !body_ns.is_empty() && body_ns != ns {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            body["metadata"]["namespace"] = json!(ns);
        }
        _ => {
            if let Some(m) = body["metadata"].as_object_mut() {
                m.shift_remove("namespace");
            }
        }
    }
    Ok(())
}

/// Checks that a namespaced object may be created in `ns`: it must exist and not be terminating.
fn check_namespace_open(store: &Store, kind: &Kind, ns: &str, name: &str) -> Result<(), ApiError> {
    if !kind.namespaced {
        return Ok(());
    }
    let ns_kind =
        store.kinds().into_iter().find(|k| k.group.is_empty() && k.kind == "Namespace").expect("built-in Namespace");
    let namespace = store.get(&ns_kind, "", ns).ok_or_else(|| ApiError::not_found(&ns_kind, ns))?;
    if namespace["metadata"].get("deletionTimestamp").is_some() {
        return Err(ApiError::forbidden(kind, name, format!("{} \"{name}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated", kind.group_resource())));
    }
    Ok(())
}

fn random_suffix() -> String {
    const CHARS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    uuid::Uuid::new_v4().as_bytes()[..5].iter().map(|b| CHARS[*b as usize % CHARS.len()] as char).collect()
}

fn create(store: &mut Store, req: &ApiRequest, kind: &Kind, ns: Option<&str>) -> Result<Reply, ApiError> {
    if kind.namespaced && ns.is_none() {
        return Err(ApiError::method_not_allowed(
            "create is only allowed on a namespaced path for namespaced resources",
        ));
    }
    let mut body = parse_body(req)?;
    check_type(kind, &body, false)?;
    if !body["metadata"].is_object() {
        body["metadata"] = json!({});
    }
    check_namespace(kind, &mut body, ns)?;
    if body["metadata"]["name"].as_str().unwrap_or_default().is_empty() {
        if let Some(prefix) = body["metadata"]["generateName"].as_str() {
            body["metadata"]["name"] = json!(format!("{prefix}{}", random_suffix()));
        }
    }
    let name = body["metadata"]["name"].as_str().unwrap_or_default().to_string();
    let ns = ns.unwrap_or_default();
    if !name.is_empty() {
        check_namespace_open(store, kind, ns, &name)?;
        if store.get(kind, if kind.namespaced { ns } else { "" }, &name).is_some() {
            return Err(ApiError::already_exists(kind, &name));
        }
    }
    let manager = manager_of(req);
    let op = WriteOp::Update { manager: &manager, scope: Scope::Main { status_subresource: kind.status_subresource } };
    let obj = store.write(kind, None, body, op, dry_run(req)?)?;
    Ok(Reply::Json(201, obj))
}

fn check_name(body: &mut Value, name: &str) -> Result<(), ApiError> {
    match body["metadata"]["name"].as_str() {
        Some(n) if !n.is_empty() && n != name => Err(ApiError::bad_request(format!(
            "the name of the object ({n}) does not match the name on the URL ({name})"
        ))),
        _ => {
            body["metadata"]["name"] = json!(name);
            Ok(())
        }
    }
}

fn check_resource_version(kind: &Kind, name: &str, body: &Value, current: &Value) -> Result<(), ApiError> {
    match body["metadata"]["resourceVersion"].as_str() {
        Some(rv) if !rv.is_empty() && Some(rv) != current["metadata"]["resourceVersion"].as_str() => {
            Err(ApiError::conflict(
                kind,
                name,
                "the object has been modified; please apply your changes to the latest version and try again",
            ))
        }
        _ => Ok(()),
    }
}

fn scope_of(kind: &Kind, status: bool) -> Scope {
    if status {
        Scope::Status
    } else {
        Scope::Main { status_subresource: kind.status_subresource }
    }
}

fn update(
    store: &mut Store,
    req: &ApiRequest,
    kind: &Kind,
    ns: &str,
    name: &str,
    status: bool,
) -> Result<Reply, ApiError> {
    let mut body = parse_body(req)?;
    check_type(kind, &body, false)?;
    if !body["metadata"].is_object() {
        body["metadata"] = json!({});
    }
    check_name(&mut body, name)?;
    check_namespace(kind, &mut body, Some(ns))?;
    let current = store.get(kind, ns, name).cloned().ok_or_else(|| ApiError::not_found(kind, name))?;
    check_resource_version(kind, name, &body, &current)?;
    let manager = manager_of(req);
    let obj = store.write(
        kind,
        Some(&current),
        body,
        WriteOp::Update { manager: &manager, scope: scope_of(kind, status) },
        dry_run(req)?,
    )?;
    Ok(Reply::Json(200, with_type(kind, &obj)))
}

fn patch_object(
    store: &mut Store,
    req: &ApiRequest,
    kind: &Kind,
    ns: &str,
    name: &str,
    status: bool,
) -> Result<Reply, ApiError> {
    let content_type = req.content_type.split(';').next().unwrap_or_default().trim().to_string();
    let dry = dry_run(req)?;
    let current = store.get(kind, ns, name).cloned();
    if content_type == "application/apply-patch+yaml" {
        if status {
            return Err(ApiError::method_not_allowed(
                "server-side apply to the status subresource is not supported by this test server",
            ));
        }
        let manager = req
            .param("fieldManager")
            .filter(|m| !m.is_empty())
            .ok_or_else(|| {
                ApiError::bad_request("PATCH, application/apply-patch+yaml requires a fieldManager query parameter")
            })?
            .to_string();
        let force = match req.param("force") {
            None | Some("false") => false,
            Some("true") => true,
            Some(other) => return Err(ApiError::bad_request(format!("invalid force value {other:?}"))),
        };
        let mut body = parse_body(req)?;
        check_type(kind, &body, true)?;
        if !body["metadata"].is_object() {
            body["metadata"] = json!({});
        }
        check_name(&mut body, name)?;
        check_namespace(kind, &mut body, if kind.namespaced { Some(ns) } else { None })?;
        if current.is_none() {
            check_namespace_open(store, kind, ns, name)?;
        }
        let live = current.clone().unwrap_or_else(
            || json!({"apiVersion": kind.api_version(), "kind": kind.kind, "metadata": body["metadata"].clone()}),
        );
        if let Some(c) = &current {
            check_resource_version(kind, name, &body, c)?;
        }
        if let Some(m) = body["metadata"].as_object_mut() {
            m.shift_remove("resourceVersion");
            m.shift_remove("managedFields");
        }
        let now = util::now_rfc3339();
        let applied = fields::apply(&live, &body, &manager, &kind.api_version(), force, kind.status_subresource, &now)
            .map_err(|conflicts| ApiError::apply_conflict(kind, name, &conflicts))?;
        let mut object = applied.object;
        object["metadata"]["name"] = json!(name);
        let obj = store.write(kind, current.as_ref(), object, WriteOp::Apply { entries: applied.entries }, dry)?;
        let code = if current.is_none() { 201 } else { 200 };
        return Ok(Reply::Json(code, with_type(kind, &obj)));
    }
    let current = current.ok_or_else(|| ApiError::not_found(kind, name))?;
    let patch_doc = util::parse_json_or_yaml(&req.body).map_err(ApiError::bad_request)?;
    let mut patched = current.clone();
    match content_type.as_str() {
        "application/merge-patch+json" | "application/strategic-merge-patch+json" => {
            if !patch_doc.is_object() {
                return Err(ApiError::bad_request("a merge patch must be a JSON object"));
            }
            check_resource_version(kind, name, &patch_doc, &current)?;
            patch::merge_patch(&mut patched, &patch_doc);
        }
        "application/json-patch+json" => {
            patch::json_patch(&mut patched, &patch_doc).map_err(|e| {
                ApiError::new(
                    422,
                    "Invalid",
                    format!("the server rejected our request due to an error in our request: {e}"),
                    None,
                )
            })?;
        }
        other => return Err(ApiError::unsupported_media_type(other)),
    }
    if patched["metadata"]["name"] != current["metadata"]["name"]
        || patched["metadata"]["namespace"] != current["metadata"]["namespace"]
    {
        return Err(ApiError::bad_request("metadata.name and metadata.namespace cannot be changed by a patch"));
    }
    let manager = manager_of(req);
    let obj = store.write(
        kind,
        Some(&current),
        patched,
        WriteOp::Update { manager: &manager, scope: scope_of(kind, status) },
        dry,
    )?;
    Ok(Reply::Json(200, with_type(kind, &obj)))
}

fn delete_options(req: &ApiRequest) -> Result<Value, ApiError> {
    let mut opts = if req.body.iter().all(u8::is_ascii_whitespace) { json!({}) } else { parse_body(req)? };
    if let Some(p) = req.param("propagationPolicy") {
        opts["propagationPolicy"] = json!(p);
    }
    match opts["propagationPolicy"].as_str() {
        None | Some("Orphan" | "Background" | "Foreground") => Ok(opts),
        Some(other) => Err(ApiError::bad_request(format!("propagationPolicy: Unsupported value: {other:?}: supported values: \"Foreground\", \"Background\", \"Orphan\""))),
    }
}

fn delete(store: &mut Store, req: &ApiRequest, kind: &Kind, ns: &str, name: &str) -> Result<Reply, ApiError> {
    let opts = delete_options(req)?;
    let current = store.get(kind, ns, name).cloned().ok_or_else(|| ApiError::not_found(kind, name))?;
    let pre = &opts["preconditions"];
    if let Some(uid) = pre["uid"].as_str() {
        if Some(uid) != current["metadata"]["uid"].as_str() {
            let why = format!(
                "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                current["metadata"]["uid"].as_str().unwrap_or_default()
            );
            return Err(ApiError::conflict(kind, name, &why));
        }
    }
    if let Some(rv) = pre["resourceVersion"].as_str() {
        if Some(rv) != current["metadata"]["resourceVersion"].as_str() {
            let why = format!(
                "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                current["metadata"]["resourceVersion"].as_str().unwrap_or_default()
            );
            return Err(ApiError::conflict(kind, name, &why));
        }
    }
    if dry_run(req)? || opts["dryRun"].as_array().is_some_and(|d| d.iter().any(|v| v == "All")) {
        return Ok(Reply::Json(200, with_type(kind, &current)));
    }
    let obj = store.delete(kind, ns, name).ok_or_else(|| ApiError::not_found(kind, name))?;
    Ok(Reply::Json(200, with_type(kind, &obj)))
}

fn delete_collection(store: &mut Store, req: &ApiRequest, kind: &Kind, ns: Option<&str>) -> Result<Reply, ApiError> {
    if kind.kind == "Namespace" {
        return Err(ApiError::method_not_allowed(
            "the server does not allow this method on the requested resource (deletecollection namespaces)",
        ));
    }
    delete_options(req)?;
    let sel = selector(req)?;
    let targets: Vec<Value> = store.list(kind, ns).into_iter().filter(|o| sel.matches(o)).collect();
    let mut items = Vec::new();
    for t in targets {
        let (n, name) = (
            t["metadata"]["namespace"].as_str().unwrap_or_default(),
            t["metadata"]["name"].as_str().unwrap_or_default(),
        );
        if let Some(obj) = store.delete(kind, n, name) {
            items.push(with_type(kind, &obj));
        }
    }
    Ok(Reply::Json(
        200,
        json!({"kind": format!("{}List", kind.kind), "apiVersion": kind.api_version(), "metadata": {"resourceVersion": store.rv.to_string()}, "items": items}),
    ))
}
