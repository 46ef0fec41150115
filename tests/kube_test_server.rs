//! Tests of the Kubernetes API test server binary: each test starts its own server on a free loopback port and
//! talks to it over plain HTTP/1.1 (and, in one test, through the real `kubectl`).

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running server, killed when dropped.
struct Server {
    child: Child,
    url: String,
    addr: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP answer.
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Value,
    raw: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = body.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(std::str::from_utf8(&body[..eol]).unwrap().trim(), 16).unwrap();
        if size == 0 {
            break;
        }
        out.extend_from_slice(&body[eol + 2..eol + 2 + size]);
        body = &body[eol + 2 + size + 2..];
    }
    out
}

impl Server {
    fn start(args: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_kube-test-server"))
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start kube-test-server");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let url = line.trim().strip_prefix("listening on ").expect("listening line").to_string();
        let addr = url.strip_prefix("http://").unwrap().to_string();
        Server { child, url, addr }
    }

    fn request(&self, method: &str, path: &str, content_type: &str, body: &str) -> Reply {
        let mut s = TcpStream::connect(&self.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nUser-Agent: kube-test/1.0\r\nAccept: application/json\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
            self.addr,
            body.len()
        )
        .unwrap();
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).unwrap();
        let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("end of headers");
        let head = String::from_utf8_lossy(&raw[..split]).to_string();
        let mut lines = head.lines();
        let status: u16 = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_lowercase(), v.trim().to_string()))
            .collect();
        let mut body = raw[split + 4..].to_vec();
        if headers.iter().any(|(k, v)| k == "transfer-encoding" && v.contains("chunked")) {
            body = dechunk(&body);
        }
        let raw = String::from_utf8(body).unwrap();
        Reply { status, headers, body: serde_json::from_str(&raw).unwrap_or(Value::Null), raw }
    }

    fn get(&self, path: &str) -> Reply {
        self.request("GET", path, "application/json", "")
    }
    fn post(&self, path: &str, body: &Value) -> Reply {
        self.request("POST", path, "application/json", &body.to_string())
    }
    fn put(&self, path: &str, body: &Value) -> Reply {
        self.request("PUT", path, "application/json", &body.to_string())
    }
    fn delete(&self, path: &str) -> Reply {
        self.request("DELETE", path, "application/json", "")
    }
    fn patch(&self, path: &str, content_type: &str, body: &str) -> Reply {
        self.request("PATCH", path, content_type, body)
    }
    fn apply(&self, path: &str, manager: &str, force: bool, body: &Value) -> Reply {
        let path = format!("{path}?fieldManager={manager}&force={force}");
        self.request("PATCH", &path, "application/apply-patch+yaml", &body.to_string())
    }
    fn admin(&self, method: &str, path: &str, body: &Value) -> Reply {
        self.request(method, path, "application/json", &body.to_string())
    }

    fn create_namespace(&self, name: &str) {
        let r = self
            .post("/api/v1/namespaces", &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}));
        assert_eq!(r.status, 201, "{}", r.raw);
    }

    /// Polls `path` until `done` holds for the answer, failing after a bounded deadline.
    fn wait_for(&self, path: &str, what: &str, done: impl Fn(&Reply) -> bool) -> Reply {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let r = self.get(path);
            if done(&r) {
                return r;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}; last answer: {}", r.raw);
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn assert_status(r: &Reply, code: u16, reason: &str) {
    assert_eq!(r.status, code, "{}", r.raw);
    assert_eq!(r.body["kind"], "Status", "{}", r.raw);
    assert_eq!(r.body["apiVersion"], "v1");
    assert_eq!(r.body["status"], "Failure");
    assert_eq!(r.body["reason"], reason, "{}", r.raw);
    assert_eq!(r.body["code"], code);
}

fn names(list: &Value) -> Vec<String> {
    list["items"].as_array().unwrap().iter().map(|i| i["metadata"]["name"].as_str().unwrap().to_string()).collect()
}

fn config_map(name: &str, labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": labels}, "data": {"k": "v"}})
}

#[test]
fn discovery_documents() {
    let s = Server::start(&[]);
    let v = s.get("/version");
    assert_eq!(v.status, 200);
    assert_eq!(v.body["major"], "1");
    assert!(v.body["gitVersion"].as_str().unwrap().starts_with("v1.32"));

    let api = s.get("/api");
    assert_eq!(api.body["kind"], "APIVersions");
    assert_eq!(api.body["versions"], json!(["v1"]));

    let apis = s.get("/apis");
    assert_eq!(apis.body["kind"], "APIGroupList");
    let groups: Vec<&str> =
        apis.body["groups"].as_array().unwrap().iter().map(|g| g["name"].as_str().unwrap()).collect();
    for g in [
        "apps",
        "networking.k8s.io",
        "rbac.authorization.k8s.io",
        "apiextensions.k8s.io",
        "cert-manager.io",
        "monitoring.coreos.com",
        "opentelemetry.io",
    ] {
        assert!(groups.contains(&g), "{g} missing from {groups:?}");
    }
    let monitoring =
        apis.body["groups"].as_array().unwrap().iter().find(|g| g["name"] == "monitoring.coreos.com").unwrap();
    assert_eq!(monitoring["preferredVersion"]["version"], "v1");
    assert_eq!(monitoring["versions"].as_array().unwrap().len(), 2);

    let core = s.get("/api/v1");
    assert_eq!(core.body["kind"], "APIResourceList");
    assert_eq!(core.body["groupVersion"], "v1");
    let res = |doc: &Value, name: &str| {
        doc["resources"].as_array().unwrap().iter().find(|r| r["name"] == name).cloned().unwrap()
    };
    let ns = res(&core.body, "namespaces");
    assert_eq!(ns["namespaced"], false);
    assert_eq!(ns["kind"], "Namespace");
    assert_eq!(ns["singularName"], "namespace");
    assert_eq!(ns["shortNames"], json!(["ns"]));
    assert!(ns["verbs"].as_array().unwrap().contains(&json!("patch")));
    assert_eq!(res(&core.body, "services")["shortNames"], json!(["svc"]));
    assert_eq!(res(&core.body, "secrets")["namespaced"], true);

    let apps = s.get("/apis/apps/v1");
    assert_eq!(res(&apps.body, "deployments")["shortNames"], json!(["deploy"]));
    let net = s.get("/apis/networking.k8s.io/v1");
    assert_eq!(res(&net.body, "networkpolicies")["shortNames"], json!(["netpol"]));
    assert_eq!(res(&net.body, "ingressclasses")["namespaced"], false);
    let rbac = s.get("/apis/rbac.authorization.k8s.io/v1");
    assert_eq!(res(&rbac.body, "clusterrolebindings")["namespaced"], false);
    let certs = s.get("/apis/cert-manager.io/v1");
    assert_eq!(res(&certs.body, "certificates")["kind"], "Certificate");
    let otel = s.get("/apis/opentelemetry.io/v1beta1");
    assert_eq!(res(&otel.body, "opentelemetrycollectors")["kind"], "OpenTelemetryCollector");
    let amcfg = s.get("/apis/monitoring.coreos.com/v1alpha1");
    assert_eq!(res(&amcfg.body, "alertmanagerconfigs")["namespaced"], true);

    let group = s.get("/apis/apps");
    assert_eq!(group.body["kind"], "APIGroup");
    assert_eq!(group.body["preferredVersion"]["groupVersion"], "apps/v1");

    assert_status(&s.get("/openapi/v2"), 404, "NotFound");
    assert_status(&s.get("/apis/nothing.example.com/v1"), 404, "NotFound");
    assert_status(&s.get("/api/v1/widgets"), 404, "NotFound");
}

#[test]
fn crud_round_trip_and_status_bodies() {
    let s = Server::start(&[]);
    s.create_namespace("matih-acme");
    s.create_namespace("matih-other");
    let base = "/api/v1/namespaces/matih-acme/configmaps";

    let created = s.post(base, &config_map("a", json!({"app": "web", "tier": "front"})));
    assert_eq!(created.status, 201, "{}", created.raw);
    let meta = &created.body["metadata"];
    assert_eq!(meta["namespace"], "matih-acme");
    assert_eq!(meta["generation"], 1);
    assert_eq!(meta["uid"].as_str().unwrap().len(), 36);
    assert!(meta["creationTimestamp"].as_str().unwrap().ends_with('Z'));
    let rv1: u64 = meta["resourceVersion"].as_str().unwrap().parse().unwrap();
    assert_eq!(created.body["kind"], "ConfigMap");
    assert_eq!(created.body["apiVersion"], "v1");

    assert_eq!(s.post(base, &config_map("b", json!({"app": "api"}))).status, 201);
    assert_eq!(s.post(base, &config_map("c", json!({}))).status, 201);
    let other = s.post("/api/v1/namespaces/matih-other/configmaps", &config_map("d", json!({"app": "web"})));
    assert_eq!(other.status, 201);
    let rv_d: u64 = other.body["metadata"]["resourceVersion"].as_str().unwrap().parse().unwrap();
    assert!(rv_d > rv1, "resourceVersion is a global counter");

    let got = s.get(&format!("{base}/a"));
    assert_eq!(got.status, 200);
    assert_eq!(got.body["data"]["k"], "v");

    let list = s.get(base);
    assert_eq!(list.body["kind"], "ConfigMapList");
    assert_eq!(names(&list.body), ["a", "b", "c"]);
    assert!(list.body["metadata"]["resourceVersion"].is_string());
    let sel = |q: &str| names(&s.get(&format!("{base}?labelSelector={q}&limit=500")).body);
    assert_eq!(sel("app%3Dweb"), ["a"]);
    assert_eq!(sel("app%3D%3Dapi"), ["b"]);
    assert_eq!(sel("app%21%3Dweb"), ["b", "c"]);
    assert_eq!(sel("app"), ["a", "b"]);
    assert_eq!(sel("%21app"), ["c"]);
    assert_eq!(sel("app%3Dweb%2Ctier%3Dfront"), ["a"]);
    assert_eq!(sel("app+in+%28api%2Cweb%29"), ["a", "b"]);
    let all = s.get("/api/v1/configmaps?labelSelector=app%3Dweb");
    assert_eq!(names(&all.body), ["a", "d"]);
    let by_name = s.get(&format!("{base}?fieldSelector=metadata.name%3Db"));
    assert_eq!(names(&by_name.body), ["b"]);

    // A label change bumps resourceVersion but not generation; a data change bumps both.
    let mut obj = got.body.clone();
    obj["metadata"]["labels"]["extra"] = json!("1");
    let put = s.put(&format!("{base}/a"), &obj);
    assert_eq!(put.status, 200, "{}", put.raw);
    assert_eq!(put.body["metadata"]["generation"], 1);
    let rv2 = put.body["metadata"]["resourceVersion"].as_str().unwrap().to_string();
    assert_ne!(rv2, obj["metadata"]["resourceVersion"].as_str().unwrap());
    // The stale resourceVersion of the first read now conflicts.
    let mut stale = got.body.clone();
    stale["data"]["k"] = json!("w");
    let conflict = s.put(&format!("{base}/a"), &stale);
    assert_status(&conflict, 409, "Conflict");
    assert!(conflict.body["message"].as_str().unwrap().contains("the object has been modified"));
    let mut fresh = put.body.clone();
    fresh["data"]["k"] = json!("w");
    let put2 = s.put(&format!("{base}/a"), &fresh);
    assert_eq!(put2.status, 200);
    assert_eq!(put2.body["metadata"]["generation"], 2);
    assert_eq!(put2.body["metadata"]["uid"], created.body["metadata"]["uid"]);
    // A write that changes nothing keeps the resourceVersion.
    let same = s.put(&format!("{base}/a"), &put2.body);
    assert_eq!(same.body["metadata"]["resourceVersion"], put2.body["metadata"]["resourceVersion"]);

    let dup = s.post(base, &config_map("a", json!({})));
    assert_status(&dup, 409, "AlreadyExists");
    assert_eq!(dup.body["message"], "configmaps \"a\" already exists");
    assert_eq!(dup.body["details"], json!({"name": "a", "kind": "configmaps"}));

    let invalid = s.post(base, &config_map("Not_Valid", json!({})));
    assert_status(&invalid, 422, "Invalid");
    assert_eq!(invalid.body["details"]["causes"][0]["field"], "metadata.name");
    let nameless = s.post(base, &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {}}));
    assert_status(&nameless, 422, "Invalid");
    assert!(nameless.body["message"].as_str().unwrap().contains("name or generateName is required"));
    let generated = s.post(base, &json!({"metadata": {"generateName": "gen-"}}));
    assert_eq!(generated.status, 201);
    assert!(generated.body["metadata"]["name"].as_str().unwrap().starts_with("gen-"));
    let mismatch = s.post(base, &json!({"metadata": {"name": "x", "namespace": "matih-other"}}));
    assert_status(&mismatch, 400, "BadRequest");
    let wrong_kind = s.post(base, &json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "x"}}));
    assert_status(&wrong_kind, 400, "BadRequest");
    let no_ns = s.post("/api/v1/namespaces/missing/configmaps", &config_map("x", json!({})));
    assert_status(&no_ns, 404, "NotFound");
    assert_eq!(no_ns.body["details"], json!({"name": "missing", "kind": "namespaces"}));

    let deleted =
        s.request("DELETE", &format!("{base}/b"), "application/json", r#"{"propagationPolicy":"Foreground"}"#);
    assert_eq!(deleted.status, 200, "{}", deleted.raw);
    assert_eq!(deleted.body["metadata"]["name"], "b");
    let gone = s.get(&format!("{base}/b"));
    assert_status(&gone, 404, "NotFound");
    assert_eq!(gone.body["message"], "configmaps \"b\" not found");
    assert_eq!(gone.body["details"], json!({"name": "b", "kind": "configmaps"}));
    let deploy_gone = s.get("/apis/apps/v1/namespaces/matih-acme/deployments/nope");
    assert_eq!(deploy_gone.body["details"], json!({"name": "nope", "group": "apps", "kind": "deployments"}));
    assert_eq!(deploy_gone.body["message"], "deployments.apps \"nope\" not found");
    assert_status(&s.delete(&format!("{base}/b")), 404, "NotFound");
    assert_status(&s.delete(&format!("{base}/a?propagationPolicy=Sideways")), 400, "BadRequest");

    let collection = s.request("DELETE", &format!("{base}?labelSelector=app"), "application/json", "");
    assert_eq!(names(&collection.body), ["a"]);
    assert_eq!(names(&s.get(base).body).len(), 2, "c and the generated one remain");
}

#[test]
fn patch_types() {
    let s = Server::start(&[]);
    s.create_namespace("ns1");
    let path = "/apis/apps/v1/namespaces/ns1/deployments/web";
    let dep = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "labels": {"a": "1"}},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}}, "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "nginx:1"}]}}}});
    assert_eq!(s.post("/apis/apps/v1/namespaces/ns1/deployments", &dep).status, 201);

    let merged = s.patch(
        path,
        "application/merge-patch+json",
        r#"{"metadata":{"labels":{"a":null,"b":"2"}},"spec":{"replicas":3}}"#,
    );
    assert_eq!(merged.status, 200, "{}", merged.raw);
    assert_eq!(merged.body["metadata"]["labels"], json!({"b": "2"}));
    assert_eq!(merged.body["spec"]["replicas"], 3);
    assert_eq!(merged.body["metadata"]["generation"], 2);

    let strategic = s.patch(path, "application/strategic-merge-patch+json", r#"{"spec":{"replicas":4}}"#);
    assert_eq!(strategic.body["spec"]["replicas"], 4);

    let json_patch = r#"[{"op":"add","path":"/metadata/labels/c","value":"3"},{"op":"replace","path":"/spec/replicas","value":5},{"op":"remove","path":"/metadata/labels/b"}]"#;
    let patched = s.patch(path, "application/json-patch+json", json_patch);
    assert_eq!(patched.status, 200, "{}", patched.raw);
    assert_eq!(patched.body["metadata"]["labels"], json!({"c": "3"}));
    assert_eq!(patched.body["spec"]["replicas"], 5);

    let failing = s.patch(path, "application/json-patch+json", r#"[{"op":"remove","path":"/spec/nothing"}]"#);
    assert_status(&failing, 422, "Invalid");
    assert_status(&s.patch(path, "text/plain", "{}"), 415, "UnsupportedMediaType");
    assert_status(
        &s.patch("/apis/apps/v1/namespaces/ns1/deployments/nope", "application/merge-patch+json", "{}"),
        404,
        "NotFound",
    );
    let stale = s.patch(path, "application/merge-patch+json", r#"{"metadata":{"resourceVersion":"1"}}"#);
    assert_status(&stale, 409, "Conflict");

    // Patches are Update operations: the manager (from the user agent here) owns what it changed.
    let entries = patched.body["metadata"]["managedFields"].as_array().unwrap();
    let kube_test = entries.iter().find(|e| e["manager"] == "kube-test").unwrap();
    assert_eq!(kube_test["operation"], "Update");
    assert_eq!(kube_test["fieldsV1"]["f:spec"]["f:replicas"], json!({}));
}

fn managed<'a>(obj: &'a Value, manager: &str, operation: &str) -> Option<&'a Value> {
    obj["metadata"]["managedFields"].as_array()?.iter().find(|e| e["manager"] == manager && e["operation"] == operation)
}

#[test]
fn server_side_apply() {
    // The deployment controller stays out of the way: its status update would bump the
    // resourceVersion this test expects an idempotent apply to keep (it did on a loaded machine).
    let s = Server::start(&["--deployment-ready-delay-ms", "3600000"]);
    s.create_namespace("matih-acme");
    let path = "/apis/apps/v1/namespaces/matih-acme/deployments/query-engine";
    let config = |replicas: i64, labels: Value| {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "query-engine", "namespace": "matih-acme", "labels": labels},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "qe"}},
                "template": {"metadata": {"labels": {"app": "qe"}}, "spec": {"containers": [{"name": "qe", "image": "qe:1"}]}}}})
    };

    // Apply creates when absent (201) and records an Apply entry for the manager.
    let created = s.apply(path, "matih", true, &config(2, json!({"matih.ai/tenant": "acme", "extra": "x"})));
    assert_eq!(created.status, 201, "{}", created.raw);
    let entry = managed(&created.body, "matih", "Apply").expect("matih Apply entry");
    assert_eq!(entry["fieldsType"], "FieldsV1");
    assert_eq!(entry["apiVersion"], "apps/v1");
    assert_eq!(entry["fieldsV1"]["f:spec"]["f:replicas"], json!({}));
    assert_eq!(entry["fieldsV1"]["f:metadata"]["f:labels"]["f:extra"], json!({}));
    assert_eq!(entry["fieldsV1"]["f:spec"]["f:template"]["f:spec"]["f:containers"], json!({}));
    assert!(entry["fieldsV1"].get("f:status").is_none());
    let rv = created.body["metadata"]["resourceVersion"].clone();

    // The same apply again changes nothing, not even the resourceVersion.
    let again = s.apply(path, "matih", true, &config(2, json!({"matih.ai/tenant": "acme", "extra": "x"})));
    assert_eq!(again.status, 200);
    assert_eq!(again.body["metadata"]["resourceVersion"], rv);
    assert_eq!(again.body["metadata"]["generation"], 1);

    // A field the manager stops applying is removed; a spec change bumps generation.
    let updated = s.apply(path, "matih", true, &config(3, json!({"matih.ai/tenant": "acme"})));
    assert_eq!(updated.status, 200);
    assert_eq!(updated.body["metadata"]["labels"], json!({"matih.ai/tenant": "acme"}));
    assert_eq!(updated.body["spec"]["replicas"], 3);
    assert_eq!(updated.body["metadata"]["generation"], 2);

    // Another manager setting a different value conflicts without force.
    let other = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "query-engine"}, "spec": {"replicas": 5}});
    let conflict = s.apply(path, "hpa", false, &other);
    assert_status(&conflict, 409, "Conflict");
    assert_eq!(conflict.body["message"], "Apply failed with 1 conflict: conflict with \"matih\": .spec.replicas");
    assert_eq!(
        conflict.body["details"]["causes"],
        json!([{"reason": "FieldManagerConflict", "message": "conflict with \"matih\"", "field": ".spec.replicas"}])
    );
    assert_eq!(s.get(path).body["spec"]["replicas"], 3);

    // The same value is shared ownership, not a conflict.
    let shared = s.apply(path, "observer", false, &json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "query-engine"}, "spec": {"replicas": 3}}));
    assert_eq!(shared.status, 200, "{}", shared.raw);
    assert!(managed(&shared.body, "observer", "Apply").is_some());

    // With force, ownership moves to the new manager.
    let forced = s.apply(path, "hpa", true, &other);
    assert_eq!(forced.status, 200, "{}", forced.raw);
    assert_eq!(forced.body["spec"]["replicas"], 5);
    assert_eq!(managed(&forced.body, "hpa", "Apply").unwrap()["fieldsV1"], json!({"f:spec": {"f:replicas": {}}}));
    let matih = managed(&forced.body, "matih", "Apply").unwrap();
    assert!(matih["fieldsV1"]["f:spec"].get("f:replicas").is_none(), "{matih}");
    assert!(managed(&forced.body, "observer", "Apply").is_none(), "observer lost its only field");

    // matih applying without replicas now leaves them alone: hpa owns them.
    let mut no_replicas = config(0, json!({"matih.ai/tenant": "acme"}));
    no_replicas["spec"].as_object_mut().unwrap().remove("replicas");
    let kept = s.apply(path, "matih", false, &no_replicas);
    assert_eq!(kept.status, 200, "{}", kept.raw);
    assert_eq!(kept.body["spec"]["replicas"], 5);

    // An Update by another client takes the fields it changes.
    let scaled = s.patch(
        &format!("{path}?fieldManager=kubectl-scale"),
        "application/merge-patch+json",
        r#"{"spec":{"replicas":7}}"#,
    );
    assert_eq!(scaled.status, 200);
    assert_eq!(
        managed(&scaled.body, "kubectl-scale", "Update").unwrap()["fieldsV1"],
        json!({"f:spec": {"f:replicas": {}}})
    );
    assert!(managed(&scaled.body, "hpa", "Apply").is_none());

    // Apply needs a field manager, a type and a matching name.
    let r = s.request("PATCH", path, "application/apply-patch+yaml", &other.to_string());
    assert_status(&r, 400, "BadRequest");
    let r = s.apply(path, "matih", true, &json!({"metadata": {"name": "query-engine"}}));
    assert_status(&r, 400, "BadRequest");
    let r = s.apply(
        path,
        "matih",
        true,
        &json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "other"}}),
    );
    assert_status(&r, 400, "BadRequest");

    // YAML apply bodies are accepted too.
    let yaml = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: from-yaml\ndata:\n  answer: \"42\"\n";
    let r = s.request(
        "PATCH",
        "/api/v1/namespaces/matih-acme/configmaps/from-yaml?fieldManager=matih",
        "application/apply-patch+yaml",
        yaml,
    );
    assert_eq!(r.status, 201, "{}", r.raw);
    assert_eq!(r.body["data"]["answer"], "42");

    // Applying into a namespace that does not exist fails as a create would.
    let r = s.apply(
        "/api/v1/namespaces/nowhere/configmaps/x",
        "matih",
        true,
        &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}),
    );
    assert_status(&r, 404, "NotFound");
}

#[test]
fn namespace_deletion_cascades() {
    let s = Server::start(&["--namespace-delete-delay-ms", "300"]);
    s.create_namespace("matih-acme");
    s.create_namespace("matih-keep");
    for ns in ["matih-acme", "matih-keep"] {
        let r = s.post(
            &format!("/api/v1/namespaces/{ns}/secrets"),
            &json!({"metadata": {"name": "creds"}, "stringData": {"password": "pw"}}),
        );
        assert_eq!(r.status, 201);
        assert_eq!(r.body["data"]["password"], "cHc=");
    }
    let r = s.apply("/apis/networking.k8s.io/v1/namespaces/matih-acme/networkpolicies/deny", "matih", true,
        &json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "deny"}, "spec": {"podSelector": {}}}));
    assert_eq!(r.status, 201);

    let deleted = s.delete("/api/v1/namespaces/matih-acme");
    assert_eq!(deleted.status, 200, "{}", deleted.raw);
    assert_eq!(deleted.body["status"]["phase"], "Terminating");
    assert!(deleted.body["metadata"]["deletionTimestamp"].is_string());

    // Its objects are gone at once; the namespace itself is still Terminating and refuses new content.
    assert_status(&s.get("/api/v1/namespaces/matih-acme/secrets/creds"), 404, "NotFound");
    assert_status(&s.get("/apis/networking.k8s.io/v1/namespaces/matih-acme/networkpolicies/deny"), 404, "NotFound");
    assert_eq!(s.get("/api/v1/namespaces/matih-keep/secrets/creds").status, 200);
    let ns = s.get("/api/v1/namespaces/matih-acme");
    assert_eq!(ns.status, 200, "the namespace lingers for --namespace-delete-delay-ms");
    assert_eq!(ns.body["status"]["phase"], "Terminating");
    let refused = s.post("/api/v1/namespaces/matih-acme/configmaps", &config_map("x", json!({})));
    assert_status(&refused, 403, "Forbidden");

    s.wait_for("/api/v1/namespaces/matih-acme", "the namespace to disappear", |r| r.status == 404);
    assert_eq!(s.get("/api/v1/namespaces/matih-keep").body["status"]["phase"], "Active");
}

#[test]
fn controllers_make_objects_ready() {
    let s = Server::start(&[
        "--deployment-ready-delay-ms",
        "50",
        "--lb-ip-delay-ms",
        "50",
        "--certificate-ready-delay-ms",
        "50",
        "--lb-ip-pool",
        "20.85.123.0/24",
    ]);
    s.create_namespace("matih-acme");
    let dep = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "ai-service"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "ai"}}, "template": {"metadata": {"labels": {"app": "ai"}}, "spec": {"containers": [{"name": "ai", "image": "ai:1"}]}}}});
    let created = s.post("/apis/apps/v1/namespaces/matih-acme/deployments", &dep);
    assert_eq!(created.status, 201);
    assert!(created.body.get("status").is_none(), "status in a create is not stored");
    let ready = s.wait_for(
        "/apis/apps/v1/namespaces/matih-acme/deployments/ai-service",
        "the Deployment to be available",
        |r| r.body["status"]["availableReplicas"] == 2,
    );
    let st = &ready.body["status"];
    assert_eq!(st["replicas"], 2);
    assert_eq!(st["readyReplicas"], 2);
    assert_eq!(st["updatedReplicas"], 2);
    assert_eq!(st["observedGeneration"], 1);
    let available = st["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "Available").unwrap();
    assert_eq!(available["status"], "True");
    assert_eq!(ready.body["metadata"]["generation"], 1, "status writes do not bump generation");

    let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "ingress-nginx"}, "spec": {"type": "LoadBalancer", "selector": {"app": "nginx"}, "ports": [{"port": 443}]}});
    let created = s.post("/api/v1/namespaces/matih-acme/services", &svc);
    assert!(created.body["spec"]["clusterIP"].as_str().unwrap().starts_with("10.96."));
    let with_ip = s.wait_for("/api/v1/namespaces/matih-acme/services/ingress-nginx", "a LoadBalancer IP", |r| {
        r.body["status"]["loadBalancer"]["ingress"][0]["ip"].is_string()
    });
    assert_eq!(with_ip.body["status"]["loadBalancer"]["ingress"][0]["ip"], "20.85.123.1");
    let plain = s.post(
        "/api/v1/namespaces/matih-acme/services",
        &json!({"metadata": {"name": "plain"}, "spec": {"ports": [{"port": 80}]}}),
    );
    assert_eq!(plain.body["spec"]["type"], "ClusterIP");
    assert!(plain.body["spec"]["clusterIP"].is_string());

    let cert = json!({"apiVersion": "cert-manager.io/v1", "kind": "Certificate", "metadata": {"name": "acme-tls"},
        "spec": {"secretName": "acme-tls", "dnsNames": ["acme.matih.ai", "*.acme.matih.ai"], "issuerRef": {"name": "letsencrypt", "kind": "ClusterIssuer"}}});
    assert_eq!(s.post("/apis/cert-manager.io/v1/namespaces/matih-acme/certificates", &cert).status, 201);
    let ready = s.wait_for(
        "/apis/cert-manager.io/v1/namespaces/matih-acme/certificates/acme-tls",
        "the Certificate to be Ready",
        |r| r.body["status"]["conditions"][0]["status"] == "True",
    );
    assert_eq!(ready.body["status"]["conditions"][0]["type"], "Ready");
    let secret = s.get("/api/v1/namespaces/matih-acme/secrets/acme-tls");
    assert_eq!(secret.status, 200);
    assert_eq!(secret.body["type"], "kubernetes.io/tls");
}

#[test]
fn fault_injection_and_latency() {
    let s = Server::start(&["--lb-ip-delay-ms", "30"]);
    s.create_namespace("ns1");
    assert_eq!(s.post("/api/v1/namespaces/ns1/configmaps", &config_map("a", json!({}))).status, 201);
    let path = "/api/v1/namespaces/ns1/configmaps/a";

    // The second matching request fails with 500; the first and third succeed.
    let added =
        s.admin("POST", "/_admin/faults", &json!({"verb": "get", "resource": "configmaps", "nth": 2, "status": 500}));
    assert_eq!(added.status, 201, "{}", added.raw);
    assert_eq!(s.get(path).status, 200);
    assert_status(&s.get(path), 500, "InternalError");
    assert_eq!(s.get(path).status, 200);
    assert_eq!(s.get("/api/v1/namespaces/ns1/configmaps").status, 200, "a list does not match verb get");

    // 429 carries Retry-After; times 2 fails two requests in a row.
    s.admin(
        "POST",
        "/_admin/faults",
        &json!({"verb": "apply", "resource": "deployments.apps", "status": 429, "retryAfterSeconds": 3, "times": 2}),
    );
    let dep =
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}, "spec": {"replicas": 0}});
    let dpath = "/apis/apps/v1/namespaces/ns1/deployments/d";
    for _ in 0..2 {
        let r = s.apply(dpath, "matih", true, &dep);
        assert_status(&r, 429, "TooManyRequests");
        assert_eq!(r.header("retry-after"), Some("3"));
        assert_eq!(r.body["details"]["retryAfterSeconds"], 3);
    }
    assert_eq!(s.apply(dpath, "matih", true, &dep).status, 201);

    // times 0 fails every matching request until the faults are cleared.
    s.admin("POST", "/_admin/faults", &json!({"verb": "list", "status": 503, "times": 0}));
    for _ in 0..3 {
        assert_status(&s.get("/api/v1/namespaces"), 503, "ServiceUnavailable");
    }
    let faults = s.get("/_admin/faults");
    assert_eq!(faults.body.as_array().unwrap().len(), 3);
    assert_eq!(s.delete("/_admin/faults").status, 200);
    assert_eq!(s.get("/api/v1/namespaces").status, 200);

    // Never assign a LoadBalancer IP: none appears well past the delay; after a reset one does.
    let cfg = s.admin("PATCH", "/_admin/config", &json!({"neverAssignLbIp": true}));
    assert_eq!(cfg.body["neverAssignLbIp"], true);
    let svc = json!({"metadata": {"name": "lb"}, "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}});
    assert_eq!(s.post("/api/v1/namespaces/ns1/services", &svc).status, 201);
    std::thread::sleep(Duration::from_millis(300));
    assert!(s.get("/api/v1/namespaces/ns1/services/lb").body["status"]["loadBalancer"]["ingress"].is_null());
    assert_eq!(s.admin("POST", "/_admin/reset", &json!({})).status, 200);
    assert_eq!(s.get("/_admin/config").body["neverAssignLbIp"], false);
    s.wait_for("/api/v1/namespaces/ns1/services/lb", "the IP after reset", |r| {
        r.body["status"]["loadBalancer"]["ingress"][0]["ip"].is_string()
    });

    // Latency applies to every API request, not to the admin API.
    s.admin("PATCH", "/_admin/config", &json!({"latencyMs": 250}));
    let started = Instant::now();
    assert_eq!(s.get(path).status, 200);
    assert!(started.elapsed() >= Duration::from_millis(250), "{:?}", started.elapsed());
    s.admin("PATCH", "/_admin/config", &json!({"latencyMs": 0}));
    assert_eq!(s.admin("PATCH", "/_admin/config", &json!({"bogus": 1})).status, 400);
}

#[test]
fn latency_from_the_command_line() {
    let s = Server::start(&["--latency-ms", "200"]);
    let started = Instant::now();
    assert_eq!(s.get("/api/v1/namespaces").status, 200);
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert_eq!(s.get("/_admin/config").body["latencyMs"], 200);
}

#[test]
fn request_log_records_what_clients_sent() {
    let s = Server::start(&[]);
    s.create_namespace("ns1");
    s.apply(
        "/api/v1/namespaces/ns1/configmaps/c",
        "matih",
        true,
        &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}),
    );
    s.get("/api/v1/namespaces/ns1/configmaps/missing");
    let log = s.get("/_admin/requests").body;
    let entries = log.as_array().unwrap();
    assert_eq!(entries.len(), 3, "admin requests are not logged: {log}");
    assert_eq!(entries[0]["method"], "POST");
    assert_eq!(entries[0]["verb"], "create");
    assert_eq!(entries[0]["status"], 201);
    let apply = &entries[1];
    assert_eq!(apply["method"], "PATCH");
    assert_eq!(apply["path"], "/api/v1/namespaces/ns1/configmaps/c");
    assert_eq!(apply["query"], "fieldManager=matih&force=true");
    assert_eq!(apply["contentType"], "application/apply-patch+yaml");
    assert_eq!(apply["fieldManager"], "matih");
    assert_eq!(apply["verb"], "apply");
    assert_eq!(apply["resource"], "configmaps");
    assert_eq!(apply["namespace"], "ns1");
    assert_eq!(apply["name"], "c");
    assert_eq!(apply["status"], 201);
    assert_eq!(entries[2]["status"], 404);
    s.delete("/_admin/requests");
    assert_eq!(s.get("/_admin/requests").body, json!([]));
}

#[test]
fn custom_resource_definitions_register_kinds() {
    let s = Server::start(&[]);
    s.create_namespace("ns1");
    assert_status(&s.get("/apis/example.matih.ai/v1/namespaces/ns1/widgets"), 404, "NotFound");
    let crd = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition", "metadata": {"name": "widgets.example.matih.ai"},
        "spec": {"group": "example.matih.ai", "scope": "Namespaced", "names": {"kind": "Widget", "plural": "widgets", "singular": "widget", "shortNames": ["wd"]},
            "versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {"type": "object"}}}]}});
    let r = s.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", &crd);
    assert_eq!(r.status, 201, "{}", r.raw);
    let list = s.get("/apis/example.matih.ai/v1");
    assert_eq!(list.body["resources"][0]["shortNames"], json!(["wd"]));
    let w = s.post("/apis/example.matih.ai/v1/namespaces/ns1/widgets", &json!({"apiVersion": "example.matih.ai/v1", "kind": "Widget", "metadata": {"name": "w1"}, "spec": {"size": 3}}));
    assert_eq!(w.status, 201, "{}", w.raw);
    assert_eq!(s.get("/apis/example.matih.ai/v1/widgets").body["items"][0]["spec"]["size"], 3);

    let bad = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition", "metadata": {"name": "wrong"},
        "spec": {"group": "example.matih.ai", "scope": "Namespaced", "names": {"kind": "Gadget", "plural": "gadgets"}, "versions": [{"name": "v1"}]}});
    assert_status(&s.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", &bad), 422, "Invalid");

    assert_eq!(
        s.delete("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.example.matih.ai").status,
        200
    );
    assert_status(&s.get("/apis/example.matih.ai/v1/namespaces/ns1/widgets/w1"), 404, "NotFound");
    let crds = s.get("/apis/apiextensions.k8s.io/v1/customresourcedefinitions");
    assert!(names(&crds.body).contains(&"certificates.cert-manager.io".to_string()));
}

#[test]
fn watch_streams_events() {
    let s = Server::start(&[]);
    s.create_namespace("ns1");
    s.post("/api/v1/namespaces/ns1/configmaps", &config_map("a", json!({})));
    let list = s.get("/api/v1/namespaces/ns1/configmaps");
    let rv = list.body["metadata"]["resourceVersion"].as_str().unwrap().to_string();
    s.post("/api/v1/namespaces/ns1/configmaps", &config_map("b", json!({})));
    s.delete("/api/v1/namespaces/ns1/configmaps/a");
    // Resuming from the list's resourceVersion replays what happened since; the stream ends at the timeout.
    let w = s.get(&format!("/api/v1/namespaces/ns1/configmaps?watch=true&resourceVersion={rv}&timeoutSeconds=1"));
    let events: Vec<Value> = w.raw.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let summary: Vec<(String, String)> = events
        .iter()
        .map(|e| (e["type"].as_str().unwrap().into(), e["object"]["metadata"]["name"].as_str().unwrap().into()))
        .collect();
    assert_eq!(summary, [("ADDED".to_string(), "b".to_string()), ("DELETED".to_string(), "a".to_string())]);
    // Without a resourceVersion the current objects come first as ADDED.
    let w = s.get("/api/v1/namespaces/ns1/configmaps?watch=1&timeoutSeconds=1");
    assert_eq!(w.raw.lines().count(), 1);
    assert!(w.raw.contains("\"ADDED\""));
}

fn kubectl(home: &std::path::Path, server: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new("kubectl")
        .env("HOME", home)
        .env("KUBECONFIG", home.join("no-kubeconfig"))
        .arg(format!("--server={server}"))
        .arg(format!("--cache-dir={}", home.join("cache").display()))
        .args(args)
        .output()
        .expect("kubectl must be installed on this machine (it is part of the test environment)");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn real_kubectl_works_against_the_server() {
    let s = Server::start(&["--deployment-ready-delay-ms", "20", "--lb-ip-delay-ms", "20"]);
    let home = tempfile::tempdir().unwrap();
    let manifest = home.path().join("tenant.yaml");
    std::fs::write(
        &manifest,
        r#"apiVersion: v1
kind: Namespace
metadata:
  name: matih-acme
  labels:
    matih.ai/tenant: acme
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: query-engine
  namespace: matih-acme
spec:
  replicas: 2
  selector:
    matchLabels: {app: query-engine}
  template:
    metadata:
      labels: {app: query-engine}
    spec:
      containers:
      - name: query-engine
        image: matih/query-engine:1.0
---
apiVersion: v1
kind: Service
metadata:
  name: ingress-nginx
  namespace: matih-acme
spec:
  type: LoadBalancer
  selector: {app: ingress-nginx}
  ports:
  - port: 443
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: default-deny-ingress
  namespace: matih-acme
spec:
  podSelector: {}
  policyTypes: [Ingress]
---
apiVersion: v1
kind: Secret
metadata:
  name: tenant-database-credentials
  namespace: matih-acme
stringData:
  username: acme
"#,
    )
    .unwrap();
    let run = |args: &[&str]| {
        let (ok, out, err) = kubectl(home.path(), &s.url, args);
        assert!(ok, "kubectl {args:?} failed: {err}\n{out}");
        out
    };

    let out = run(&["apply", "--server-side", "-f", manifest.to_str().unwrap()]);
    assert!(out.contains("namespace/matih-acme serverside-applied"), "{out}");
    assert!(out.contains("deployment.apps/query-engine serverside-applied"), "{out}");
    assert!(out.contains("secret/tenant-database-credentials serverside-applied"), "{out}");
    let applied = s.get("/apis/apps/v1/namespaces/matih-acme/deployments/query-engine");
    assert!(managed(&applied.body, "kubectl", "Apply").is_some(), "{}", applied.raw);

    let out = run(&["get", "ns"]);
    let line = out.lines().find(|l| l.starts_with("matih-acme")).unwrap_or_else(|| panic!("{out}"));
    assert!(line.contains("Active"), "{out}");
    assert!(out.starts_with("NAME"), "{out}");

    s.wait_for("/apis/apps/v1/namespaces/matih-acme/deployments/query-engine", "readiness", |r| {
        r.body["status"]["readyReplicas"] == 2
    });
    s.wait_for("/api/v1/namespaces/matih-acme/services/ingress-nginx", "the IP", |r| {
        r.body["status"]["loadBalancer"]["ingress"][0]["ip"].is_string()
    });
    let out = run(&["get", "-n", "matih-acme", "deploy,svc,networkpolicy"]);
    let dep = out.lines().find(|l| l.starts_with("deployment.apps/query-engine")).unwrap_or_else(|| panic!("{out}"));
    assert!(dep.split_whitespace().nth(1) == Some("2/2"), "{out}");
    let svc = out.lines().find(|l| l.starts_with("service/ingress-nginx")).unwrap_or_else(|| panic!("{out}"));
    assert!(svc.contains("LoadBalancer") && svc.contains("20.85.123.1") && svc.contains("443/TCP"), "{out}");
    assert!(out.contains("networkpolicy.networking.k8s.io/default-deny-ingress"), "{out}");

    let out = run(&["get", "secret", "tenant-database-credentials", "-n", "matih-acme", "-o", "json"]);
    let secret: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(secret["kind"], "Secret");
    assert_eq!(secret["data"]["username"], "YWNtZQ==");

    let out = run(&["delete", "-n", "matih-acme", "networkpolicy", "default-deny-ingress"]);
    assert!(out.contains("deleted"), "{out}");
    let (ok, _, err) =
        kubectl(home.path(), &s.url, &["get", "-n", "matih-acme", "networkpolicy", "default-deny-ingress"]);
    assert!(!ok);
    assert!(err.contains("NotFound") && err.contains("not found"), "{err}");

    let out = run(&["delete", "namespace", "matih-acme"]);
    assert!(out.contains("namespace \"matih-acme\" deleted"), "{out}");
    let out = run(&["get", "ns"]);
    assert!(!out.contains("matih-acme"), "{out}");
    assert!(out.contains("default"), "{out}");

    // kubectl asked for discovery and tables as FACTS.md describes, and the request log shows it.
    let log = s.get("/_admin/requests").body;
    let paths: Vec<&str> = log.as_array().unwrap().iter().map(|e| e["path"].as_str().unwrap()).collect();
    assert!(paths.contains(&"/api") && paths.contains(&"/apis") && paths.contains(&"/api/v1"), "{paths:?}");
}
