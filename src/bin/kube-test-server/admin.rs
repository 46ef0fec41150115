//! The admin API under `/_admin/`: runtime settings, fault injection, the request log and reset.
//!
//! - `GET /_admin/config` shows the runtime settings; `PATCH` (or `PUT`/`POST`) with a JSON object changes the
//!   keys it names: `latencyMs`, `deploymentReadyDelayMs`, `lbIpDelayMs`, `certificateReadyDelayMs`,
//!   `namespaceDeleteDelayMs`, `neverReadyDeployments`, `neverAssignLbIp`, `neverReadyCertificates`.
//! - `POST /_admin/faults` adds a fault rule (see [`Fault`]) and answers `{"id": N}`; `GET` lists the rules with
//!   their counters; `DELETE` removes them all.
//! - `GET /_admin/requests` returns the log of API requests; `DELETE` clears it.
//! - `POST /_admin/reset` restores the start settings and clears faults and the request log; with the body
//!   `{"objects": true}` it also deletes every object and seeds the default namespaces and CRDs again.

use crate::api::Info;
use crate::status::ApiError;
use crate::store::{RuntimeConfig, Store};
use serde_json::{json, Value};

/// A fault rule: requests that match every given criterion are counted, and from the `nth` match on, `times`
/// of them (0: all) fail with `status`. Criteria: `verb` (get, list, watch, create, update, patch, apply,
/// delete, deletecollection; `patch` also matches apply), `resource` (plural, or `plural.group`), `namespace`,
/// `name`, `pathPrefix`. A 429 or 503 carries `Retry-After: retryAfterSeconds` when that is given.
#[derive(Clone, Debug)]
pub struct Fault {
    pub id: u64,
    pub verb: Option<String>,
    pub resource: Option<String>,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub path_prefix: Option<String>,
    pub nth: u64,
    pub times: u64,
    pub status: u16,
    pub retry_after: Option<u64>,
    pub message: Option<String>,
    pub seen: u64,
    pub fired: u64,
}

impl Fault {
    fn from_json(id: u64, v: &Value) -> Result<Fault, String> {
        let text = |k: &str| v[k].as_str().map(str::to_string);
        let status = v["status"].as_u64().ok_or("\"status\" (an HTTP status code) is required")?;
        if !(400..=599).contains(&status) {
            return Err(format!("status {status} is not an error code"));
        }
        Ok(Fault {
            id,
            verb: text("verb").map(|s| s.to_lowercase()),
            resource: text("resource"),
            namespace: text("namespace"),
            name: text("name"),
            path_prefix: text("pathPrefix"),
            nth: v["nth"].as_u64().unwrap_or(1).max(1),
            times: v["times"].as_u64().unwrap_or(1),
            status: status as u16,
            retry_after: v["retryAfterSeconds"].as_u64(),
            message: text("message"),
            seen: 0,
            fired: 0,
        })
    }

    fn to_json(&self) -> Value {
        json!({
            "id": self.id, "verb": self.verb, "resource": self.resource, "namespace": self.namespace,
            "name": self.name, "pathPrefix": self.path_prefix, "nth": self.nth, "times": self.times,
            "status": self.status, "retryAfterSeconds": self.retry_after, "message": self.message,
            "seen": self.seen, "fired": self.fired,
        })
    }

    fn matches(&self, path: &str, info: &Info) -> bool {
        let verb_ok = match self.verb.as_deref() {
            None | Some("*") => true,
            Some("patch") => info.verb == "patch" || info.verb == "apply",
            Some(v) => info.verb == v,
        };
        let resource_ok = match self.resource.as_deref() {
            None | Some("*") => true,
            Some(r) => match (&info.resource, &info.group) {
                (Some(plural), Some(group)) => r == plural || (!group.is_empty() && r == format!("{plural}.{group}")),
                _ => false,
            },
        };
        verb_ok
            && resource_ok
            && self.namespace.as_ref().is_none_or(|n| info.namespace.as_ref() == Some(n))
            && self.name.as_ref().is_none_or(|n| info.name.as_ref() == Some(n))
            && self.path_prefix.as_ref().is_none_or(|p| path.starts_with(p.as_str()))
    }
}

/// State of the admin side: fault rules, the request log and the start settings.
pub struct Admin {
    pub startup: RuntimeConfig,
    pub faults: Vec<Fault>,
    pub next_fault_id: u64,
    pub requests: Vec<Value>,
}

impl Admin {
    /// Counts the request against every matching rule and returns the failure of the first rule that fires.
    pub fn check_faults(&mut self, path: &str, info: &Info) -> Option<ApiError> {
        let mut failure = None;
        for f in self.faults.iter_mut().filter(|f| f.matches(path, info)) {
            f.seen += 1;
            let due = f.seen >= f.nth && (f.times == 0 || f.fired < f.times);
            if due && failure.is_none() {
                f.fired += 1;
                failure = Some(ApiError::injected(f.status, f.message.clone(), f.retry_after));
            }
        }
        failure
    }
}

fn config_json(c: &RuntimeConfig) -> Value {
    json!({
        "latencyMs": c.latency_ms,
        "deploymentReadyDelayMs": c.deployment_ready_delay_ms,
        "lbIpDelayMs": c.lb_ip_delay_ms,
        "certificateReadyDelayMs": c.certificate_ready_delay_ms,
        "namespaceDeleteDelayMs": c.namespace_delete_delay_ms,
        "neverReadyDeployments": c.never_ready_deployments,
        "neverAssignLbIp": c.never_assign_lb_ip,
        "neverReadyCertificates": c.never_ready_certificates,
    })
}

fn update_config(c: &mut RuntimeConfig, v: &Value) -> Result<(), String> {
    let obj = v.as_object().ok_or("the body must be a JSON object")?;
    for (k, val) in obj {
        let num = || val.as_u64().ok_or(format!("{k} must be a non-negative integer"));
        let flag = || val.as_bool().ok_or(format!("{k} must be a boolean"));
        match k.as_str() {
            "latencyMs" => c.latency_ms = num()?,
            "deploymentReadyDelayMs" => c.deployment_ready_delay_ms = num()?,
            "lbIpDelayMs" => c.lb_ip_delay_ms = num()?,
            "certificateReadyDelayMs" => c.certificate_ready_delay_ms = num()?,
            "namespaceDeleteDelayMs" => c.namespace_delete_delay_ms = num()?,
            "neverReadyDeployments" => c.never_ready_deployments = flag()?,
            "neverAssignLbIp" => c.never_assign_lb_ip = flag()?,
            "neverReadyCertificates" => c.never_ready_certificates = flag()?,
            other => return Err(format!("unknown setting {other:?}")),
        }
    }
    Ok(())
}

/// Answers one admin request.
pub fn handle(admin: &mut Admin, store: &mut Store, method: &str, path: &str, body: &[u8]) -> (u16, Value) {
    let parsed = || -> Result<Value, String> {
        if body.iter().all(u8::is_ascii_whitespace) {
            Ok(json!({}))
        } else {
            serde_json::from_slice(body).map_err(|e| format!("invalid JSON body: {e}"))
        }
    };
    let bad = |msg: String| (400, json!({"error": msg}));
    match (method, path.trim_end_matches('/')) {
        ("GET", "/_admin/config") => (200, config_json(&store.config)),
        ("PATCH" | "PUT" | "POST", "/_admin/config") => {
            let mut next = store.config.clone();
            match parsed().and_then(|v| update_config(&mut next, &v)) {
                Ok(()) => {
                    store.config = next;
                    (200, config_json(&store.config))
                }
                Err(e) => bad(e),
            }
        }
        ("GET", "/_admin/faults") => (200, json!(admin.faults.iter().map(Fault::to_json).collect::<Vec<_>>())),
        ("POST", "/_admin/faults") => match parsed().and_then(|v| Fault::from_json(admin.next_fault_id, &v)) {
            Ok(f) => {
                admin.next_fault_id += 1;
                let id = f.id;
                admin.faults.push(f);
                (201, json!({"id": id}))
            }
            Err(e) => bad(e),
        },
        ("DELETE", "/_admin/faults") => {
            admin.faults.clear();
            (200, json!({}))
        }
        ("GET", "/_admin/requests") => (200, json!(admin.requests)),
        ("DELETE", "/_admin/requests") => {
            admin.requests.clear();
            (200, json!({}))
        }
        ("POST", "/_admin/reset") => match parsed() {
            Ok(v) => {
                store.config = admin.startup.clone();
                admin.faults.clear();
                admin.requests.clear();
                if v["objects"].as_bool().unwrap_or(false) {
                    store.wipe();
                }
                (200, json!({}))
            }
            Err(e) => bad(e),
        },
        _ => (404, json!({"error": format!("no admin endpoint {method} {path}")})),
    }
}
