//! `services { delivery = "helm" }` end to end: the real `matih` binary installs the tenant acme's
//! services as Helm releases of the project's chart (charts/matih-service) with the real `helm`
//! (built by scripts/lib/helm.sh from the helm.sh/helm/v3 module) into the real control plane,
//! against a real PostgreSQL and PowerDNS. A release that fails in phase 5 rolls the phase back
//! (helm uninstalls what the run installed) and the next apply resumes; a second plan is a no-op;
//! a values change plans and applies as an update with its values and rendered-manifest diffs; the
//! ingress controller is a release of the project's charts/matih-ingress-nginx whose Service's IP
//! reaches DNS; a `kubectl` edit and a release uninstalled outside matih are drift that apply
//! repairs; destroy uninstalls every release. Releases also come from an HTTP chart repository and
//! a real OCI registry.

use crate::support as common;
use crate::support::kube;
use crate::support::powerdns;

use common::pg as postgres;
use common::{text, Backend, TestState};
use kube::Kube;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const PARENT: &str = "matih.test";

/// The `helm` the tests use: `MATIH_HELM` (set by scripts/lib/helm.sh's helm_build), else the one
/// on the PATH. Its absence fails the test: the tests never skip a tool they need.
fn helm_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("MATIH_HELM") {
        return PathBuf::from(p);
    }
    matih::provider::helm::find_binary(None).unwrap_or_else(|e| {
        panic!("{e}\nrun the tests through scripts/test, or `. scripts/lib/helm.sh && helm_build` first")
    })
}

/// The real helm as the cluster admin, straight to the API server.
fn helm(args: &[&str]) -> Output {
    Command::new(helm_binary())
        .args(args)
        .env("KUBECONFIG", kube::controlplane_dir().join("kubeconfig"))
        .output()
        .expect("helm runs")
}

fn matih(dir: &Path, state: &TestState, args: &[&str], pg: &postgres::PgServer, dns: &powerdns::PowerDns) -> Output {
    let mut cmd = crate::support::matih_command();
    cmd.args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .env("MATIH_POSTGRES_ADMIN_URL", &pg.admin_url)
        .env("PDNS_API_KEY", &dns.api_key)
        .env("ACME_SLACK_WEBHOOK", "https://hooks.slack.example/services/T0/B0/helm-test")
        .env_remove("KUBECONFIG")
        .stdin(Stdio::null());
    state.configure(&mut cmd, dir);
    cmd.output().unwrap()
}

/// The namespace of a release of acme: the ingress controller's is the edge namespace.
fn namespace_of(release: &str) -> &'static str {
    if release == "ingress-nginx" {
        "matih-acme-edge"
    } else {
        "matih-acme"
    }
}

/// `helm list` of acme's namespace and its edge namespace: release name → (chart, status).
fn releases() -> Vec<(String, String, String)> {
    let mut found: Vec<(String, String, String)> = Vec::new();
    for ns in ["matih-acme", "matih-acme-edge"] {
        let out = helm(&["list", "--namespace", ns, "--all", "--output", "json"]);
        assert!(out.status.success(), "{}", text(&out));
        let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        found.extend(list.as_array().unwrap().iter().map(|r| {
            let s = |k: &str| r[k].as_str().unwrap().to_string();
            (s("name"), s("chart"), s("status"))
        }));
    }
    found.sort();
    found
}

fn values(release: &str) -> serde_json::Value {
    let out = helm(&["get", "values", release, "--namespace", namespace_of(release), "--output", "json"]);
    assert!(out.status.success(), "{}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn acme_delivered_with_helm_goes_active_updates_values_rolls_a_failed_phase_back_and_uninstalls() {
    let _claim = kube::claim_tenant("acme");
    let state = &TestState::new(Backend::Sled);
    let kube = Kube::start();
    let pg = postgres::server();
    let dns = powerdns::server();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let _pdns = dns.parent_zone(&rt, PARENT);

    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("tenants/acme.hcl");
    std::fs::create_dir_all(spec.parent().unwrap()).unwrap();
    std::fs::copy(common::root().join("tenants/acme.hcl"), &spec).unwrap();
    let helm_settings = format!(
        "services {{\n  delivery = \"helm\"\n}}\nhelm {{\n  binary           = \"{}\"\n  chart_repository = \"{}\"\n  timeout_ms       = 120000\n}}\n",
        helm_binary().display(),
        common::root().join("charts").display()
    );
    state
        .write_platform(dir.path(), &(common::platform_hcl(PARENT, &dns.api_url, pg.port, &kube.url) + &helm_settings));
    let catalog = matih::catalog::Catalog::embedded().unwrap();
    let (specs, _) = matih::spec::load_tenants(std::slice::from_ref(&spec), &catalog);
    let (platform, _) = matih::spec::load_platform(&dir.path().join("matih.hcl"));
    let (graph, diags) = matih::graph::compile(&specs[0], &catalog, &platform);
    assert!(diags.is_empty(), "{diags:?}");
    let graph = graph.unwrap();
    let release_count = graph.graph.node_weights().filter(|r| r.addr.kind == "helm_release").count();
    assert_eq!(release_count, 10, "nine services and the ingress controller, ten releases");
    assert!(graph.graph.node_weights().all(|r| r.addr.kind != "kubernetes_deployment"));

    // A Service `bi-service` that helm does not own makes the release bi_service fail in phase 5,
    // after pipeline_service and semantic_layer were installed by the same run.
    assert!(kube::admin_kubectl(&["create", "namespace", "matih-acme"]).status.success());
    let blocker = kube::admin_kubectl(&[
        "create",
        "service",
        "clusterip",
        "bi-service",
        "--tcp=3000:3000",
        "--namespace",
        "matih-acme",
    ]);
    assert!(blocker.status.success(), "{}", text(&blocker));
    let out = matih(dir.path(), state, &["apply", "tenants/acme.hcl", "--auto-approve"], pg, dns);
    let log = text(&out);
    assert_eq!(out.status.code(), Some(1), "{log}");
    assert!(log.contains("helm_release.bi_service"), "the error names the release: {log}");
    assert!(log.contains("exists and cannot be imported into the current release"), "helm's own message: {log}");
    assert!(log.contains("rolling back phase 5/10 DEPLOY_DATA_SERVICES"), "{log}");
    assert!(!log.contains("panicked"), "{log}");
    let names: Vec<String> = releases().into_iter().map(|r| r.0).collect();
    assert_eq!(names, ["ai-service", "catalog-service", "query-engine"], "phase 5's releases were uninstalled");
    let status = text(&matih(dir.path(), state, &["status", "acme"], pg, dns));
    assert!(status.contains("FAILED") && status.contains("DEPLOY_DATA_SERVICES"), "{status}");

    // Without the blocker the next apply resumes and the tenant goes ACTIVE.
    assert!(kube::admin_kubectl(&["delete", "service", "bi-service", "--namespace", "matih-acme"]).status.success());
    let out = matih(dir.path(), state, &["apply", "tenants/acme.hcl", "--auto-approve"], pg, dns);
    let log = text(&out);
    assert!(out.status.success(), "{log}");
    let status = text(&matih(dir.path(), state, &["status", "acme"], pg, dns));
    assert!(status.contains("Status:     ACTIVE"), "{status}");
    let listed = releases();
    assert_eq!(listed.len(), release_count, "{listed:?}");
    for (name, chart, status) in &listed {
        let want = if name == "ingress-nginx" { "matih-ingress-nginx-0.2.0" } else { "matih-service-0.1.0" };
        assert_eq!((chart.as_str(), status.as_str()), (want, "deployed"), "{name}");
    }
    // Phase 6: the tenant's ingress controller from the project's chart with the platform guide's values; the
    // IP its LoadBalancer Service gets is what phase 7 published.
    let controller = &values("ingress-nginx")["controller"];
    assert_eq!(controller["ingressClassResource"]["controllerValue"], "k8s.io/ingress-nginx-acme");
    assert_eq!(controller["admissionWebhooks"]["enabled"], false);
    let class = kube.kubectl(&["get", "ingressclass", "nginx-acme", "-o", "jsonpath={.spec.controller}"]);
    assert_eq!(String::from_utf8_lossy(&class.stdout), "k8s.io/ingress-nginx-acme", "{}", text(&class));
    let svc = kube.kubectl(&["get", "service", "ingress-nginx-controller", "-n", "matih-acme-edge", "-o", "json"]);
    let svc: serde_json::Value = serde_json::from_slice(&svc.stdout).unwrap();
    assert_eq!(svc["spec"]["type"], "LoadBalancer");
    assert_eq!(
        svc["metadata"]["annotations"]["service.beta.kubernetes.io/azure-load-balancer-health-probe-request-path"],
        "/healthz"
    );
    let ip = svc["status"]["loadBalancer"]["ingress"][0]["ip"].as_str().expect("an external IP").to_string();
    assert_eq!(dns.dig(&format!("api.acme.{PARENT}"), "A"), vec![ip.clone()]);
    let raw = matih(dir.path(), state, &["output", "acme", "load_balancer_ip", "--raw"], pg, dns);
    assert_eq!(String::from_utf8_lossy(&raw.stdout), format!("{ip}\n"), "{}", text(&raw));
    let deploy =
        kube.kubectl(&["get", "deployment", "ingress-nginx-controller", "-n", "matih-acme-edge", "-o", "json"]);
    let deploy: serde_json::Value = serde_json::from_slice(&deploy.stdout).unwrap();
    assert_eq!(deploy["spec"]["replicas"], 2);
    let pod = &deploy["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault");
    let container = &pod["containers"][0];
    assert_eq!(container["image"], "registry.k8s.io/ingress-nginx/controller:v1.11.3");
    assert_eq!(container["securityContext"]["allowPrivilegeEscalation"], false);
    assert_eq!(container["securityContext"]["capabilities"]["drop"], serde_json::json!(["ALL"]));
    assert!(container["args"].to_string().contains("--watch-namespace=matih-acme-edge"), "{container}");
    // The chart's Role lets the controller list and watch the Secrets of the edge namespace, as
    // ingress-nginx does, and nothing in the tenant namespace: never the database's credentials.
    let can = |verb: &str, what: &str, ns: &str| {
        let sa = "system:serviceaccount:matih-acme-edge:ingress-nginx";
        let out = kube::admin_kubectl(&["auth", "can-i", verb, what, "--namespace", ns, "--as", sa]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(can("get", "secret/acme-tls-certificate", "matih-acme-edge"), "yes");
    assert_eq!(can("list", "secrets", "matih-acme-edge"), "yes");
    assert_eq!(can("get", "secret/tenant-database-credentials", "matih-acme"), "no");
    assert_eq!(can("list", "secrets", "matih-acme"), "no");
    assert_eq!(can("list", "ingresses.networking.k8s.io", "matih-acme-edge"), "yes");
    // The Ingress, in the edge namespace, routes to ExternalName Services naming the tenant's.
    let ing = kube.kubectl(&["get", "ingress", "tenant-ingress", "-n", "matih-acme-edge", "-o", "json"]);
    let ing: serde_json::Value = serde_json::from_slice(&ing.stdout).unwrap();
    assert_eq!(ing["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"], "api-gateway");
    let api = kube.kubectl(&["get", "service", "api-gateway", "-n", "matih-acme-edge", "-o", "json"]);
    let api: serde_json::Value = serde_json::from_slice(&api.stdout).unwrap();
    assert_eq!(api["spec"]["externalName"], "api-gateway.matih-acme.svc.cluster.local", "{api}");
    // Its pods pass Pod Security Admission `restricted` (the real admission plugin): a Pod of the
    // live template, dry-run in a namespace that enforces it; the same Pod allowed to escalate is
    // refused, so the check can fail.
    let _psa = kube::claim_tenant("helmpsa");
    let mut pod = serde_json::json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "probe"}, "spec": pod});
    let objects = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "matih-helmpsa",
            "labels": {"pod-security.kubernetes.io/enforce": "restricted"}}},
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "ingress-nginx", "namespace": "matih-helmpsa"}},
    ]});
    let dry_run = |doc: &serde_json::Value, extra: &[&str]| {
        let file = dir.path().join("psa.json");
        std::fs::write(&file, doc.to_string()).unwrap();
        kube::admin_kubectl(&[&["apply", "--namespace", "matih-helmpsa", "-f", file.to_str().unwrap()], extra].concat())
    };
    let out = dry_run(&objects, &[]);
    assert!(out.status.success(), "{}", text(&out));
    let out = dry_run(&pod, &["--dry-run=server"]);
    assert!(out.status.success(), "the controller's pod is `restricted`: {}", text(&out));
    pod["spec"]["containers"][0]["securityContext"]["allowPrivilegeEscalation"] = true.into();
    let out = dry_run(&pod, &["--dry-run=server"]);
    assert!(text(&out).contains("violates PodSecurity \"restricted:latest\""), "{}", text(&out));
    assert!(kube::admin_kubectl(&["delete", "namespace", "matih-helmpsa", "--wait=false"]).status.success());
    // The platform guide's values: replicas, image from the platform's images block, the credentials Secret.
    let ai = values("ai-service");
    assert_eq!(ai["replicaCount"], 2);
    assert_eq!(ai["image"]["repository"], "matih.azurecr.io/ai-service");
    assert_eq!(ai["env"][0], serde_json::json!({"name": "TENANT_ID", "value": "550e8400-e29b-41d4-a716-446655440000"}));
    assert_eq!(ai["env"][1]["valueFrom"]["secretKeyRef"]["name"], "tenant-database-credentials");
    assert_eq!(ai["resources"]["limits"]["memory"], "1Gi");
    // kubectl sees the chart's objects, labelled as the network policies expect.
    let deploy = kube.kubectl(&["get", "deployment", "ai-service", "-n", "matih-acme", "-o", "json"]);
    assert!(deploy.status.success(), "{}", text(&deploy));
    let deploy: serde_json::Value = serde_json::from_slice(&deploy.stdout).unwrap();
    assert_eq!(deploy["spec"]["replicas"], 2);
    assert_eq!(deploy["spec"]["template"]["metadata"]["labels"]["matih.ai/tenant-slug"], "acme");
    assert_eq!(deploy["metadata"]["annotations"]["meta.helm.sh/release-name"], "ai-service");

    // A second plan reads every release back and has nothing to do.
    let out = matih(dir.path(), state, &["plan", "tenants/acme.hcl", "--detailed-exitcode"], pg, dns);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("No changes."), "{}", text(&out));

    // A values change is an update in place of that release only, with the values diff.
    let edited = std::fs::read_to_string(&spec).unwrap().replace("replicas = 2", "replicas = 3");
    std::fs::write(&spec, edited).unwrap();
    let out =
        matih(dir.path(), state, &["plan", "tenants/acme.hcl", "--detailed-exitcode", "-out", "acme.plan"], pg, dns);
    let plan = text(&out);
    assert_eq!(out.status.code(), Some(2), "{plan}");
    assert!(plan.contains("# helm_release.ai_service will be updated in place"), "{plan}");
    assert!(plan.contains("~ replicaCount") && plan.contains("2 -> 3"), "{plan}");
    assert!(plan.contains("Plan: 0 to add, 1 to change, 0 to destroy."), "{plan}");
    // … and the rendered-manifest diff: helm template against the release's live manifest.
    assert!(plan.contains("# rendered manifests (helm template against the release's manifest):"), "{plan}");
    assert!(plan.contains("# Deployment ai-service: changed\n"), "{plan}");
    assert!(plan.contains("-   replicas: 2\n") && plan.contains("+   replicas: 3\n"), "{plan}");
    assert!(!plan.contains("# Service ai-service"), "the Service does not change: {plan}");
    // The saved plan keeps it: JSON and markdown renderings of the same file.
    let out = matih(dir.path(), state, &["show", "acme.plan", "--json"], pg, dns);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)));
    let change = doc["tenants"][0]["resource_changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["address"] == "helm_release.ai_service")
        .unwrap()
        .clone();
    assert_eq!(change["manifest_changes"][0]["object"], "Deployment ai-service", "{change}");
    assert_eq!(change["manifest_changes"][0]["change"], "changed");
    assert!(change["manifest_changes"][0]["diff"].as_str().unwrap().contains("+  replicas: 3\n"), "{change}");
    let out = matih(dir.path(), state, &["show", "acme.plan", "--format", "markdown"], pg, dns);
    let md = text(&out);
    assert!(md.contains("# Deployment ai-service: changed\n") && md.contains("\n+          replicas: 3\n"), "{md}");
    let out = matih(dir.path(), state, &["apply", "acme.plan"], pg, dns);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(values("ai-service")["replicaCount"], 3);
    let history = helm(&["history", "ai-service", "--namespace", "matih-acme", "--output", "json"]);
    let history: serde_json::Value = serde_json::from_slice(&history.stdout).unwrap();
    assert_eq!(history.as_array().unwrap().len(), 2, "an upgrade, not a reinstall: {history}");

    // A `kubectl` edit of a release's object is drift of that release; apply (helm's upgrade,
    // a three-way merge with the live object) puts the chart's value back.
    let patch =
        kube.kubectl(&["patch", "deployment", "ai-service", "-n", "matih-acme", "-p", r#"{"spec":{"replicas":5}}"#]);
    assert!(patch.status.success(), "{}", text(&patch));
    let out = matih(dir.path(), state, &["plan", "tenants/acme.hcl", "--detailed-exitcode"], pg, dns);
    let plan = text(&out);
    assert_eq!(out.status.code(), Some(2), "{plan}");
    assert!(plan.contains("# helm_release.ai_service will be updated in place"), "{plan}");
    assert!(plan.contains("Deployment ai-service: spec.replicas = 5 (the chart sets 3)"), "{plan}");
    assert!(plan.contains("Plan: 0 to add, 1 to change, 0 to destroy."), "{plan}");
    let out = matih(dir.path(), state, &["apply", "tenants/acme.hcl", "--auto-approve"], pg, dns);
    assert!(out.status.success(), "{}", text(&out));
    let deploy =
        kube.kubectl(&["get", "deployment", "ai-service", "-n", "matih-acme", "-o", "jsonpath={.spec.replicas}"]);
    assert_eq!(String::from_utf8_lossy(&deploy.stdout), "3");
    let out = matih(dir.path(), state, &["plan", "tenants/acme.hcl", "--detailed-exitcode"], pg, dns);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    // A release uninstalled outside matih is drift; apply installs it again.
    assert!(helm(&["uninstall", "query-engine", "--namespace", "matih-acme", "--wait"]).status.success());
    let out = matih(dir.path(), state, &["drift", "tenants/acme.hcl", "--detailed-exitcode"], pg, dns);
    let drift = text(&out);
    assert_eq!(out.status.code(), Some(2), "{drift}");
    assert!(drift.contains("helm_release.query_engine"), "{drift}");
    let out = matih(dir.path(), state, &["apply", "tenants/acme.hcl", "--auto-approve"], pg, dns);
    assert!(out.status.success(), "{}", text(&out));
    assert!(releases().iter().any(|r| r.0 == "query-engine" && r.2 == "deployed"));
    let out = matih(dir.path(), state, &["plan", "tenants/acme.hcl", "--detailed-exitcode"], pg, dns);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    // Destroy uninstalls every release (then the namespace goes). The controller chart's
    // cluster-scoped objects go too: only helm's uninstall removes them.
    let out = matih(dir.path(), state, &["destroy", "tenants/acme.hcl", "--auto-approve"], pg, dns);
    let log = text(&out);
    assert!(out.status.success(), "{log}");
    for release in graph.graph.node_weights().filter(|r| r.addr.kind == "helm_release") {
        assert!(log.contains(&release.addr.to_string()), "{} destroyed: {log}", release.addr);
    }
    assert!(!kube.kubectl(&["get", "ns", "matih-acme"]).status.success(), "the namespace is gone");
    assert!(!kube.kubectl(&["get", "ns", "matih-acme-edge"]).status.success(), "the edge namespace is gone");
    assert!(!kube.kubectl(&["get", "ingressclass", "nginx-acme"]).status.success(), "uninstalled");
    assert!(!kube.kubectl(&["get", "clusterrole", "ingress-nginx-matih-acme-edge"]).status.success(), "uninstalled");
    let out = helm(&["list", "--all-namespaces", "--all", "--output", "json"]);
    assert!(!String::from_utf8_lossy(&out.stdout).contains("matih-acme"), "{}", text(&out));
}

/// A static HTTP server for `dir` on a free loopback port (a chart repository: `index.yaml` and
/// the packaged charts), answering GETs until the test ends. Returns its URL.
fn serve_dir(dir: PathBuf) -> String {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request = String::new();
            if reader.read_line(&mut request).is_err() {
                continue;
            }
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).map_or(true, |n| n == 0) || header.trim().is_empty() {
                    break;
                }
            }
            let path = request.split_whitespace().nth(1).unwrap_or("/").trim_start_matches('/').to_string();
            let file = (!path.contains("..")).then(|| std::fs::read(dir.join(&path)).ok()).flatten();
            let _ = match file {
                Some(body) => stream
                    .write_all(
                        format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len())
                            .as_bytes(),
                    )
                    .and_then(|_| stream.write_all(&body)),
                None => stream.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
            };
        }
    });
    url
}

/// The provider against an HTTP chart repository (`index.yaml`, helm's `--repo`): the project's
/// chart packaged and indexed by the real helm, served over HTTP, installed, read back, upgraded,
/// refused at a version the repository lacks (helm's message, the release's address), rolled back
/// to its previous revision when an upgrade fails, uninstalled. Then from a real OCI registry
/// (`helm push`, `oci://`), with the rendered-manifest diff before and after the install.
#[test]
fn releases_from_an_http_chart_repository_and_an_oci_registry_install_read_upgrade_and_uninstall() {
    use matih::provider::helm::{ChartSource, HelmProvider, HelmSettings, HelmTarget};
    use matih::provider::{Provider, ResourceObject, TenantRef};
    use matih::value::Value;
    let _claim = kube::claim_tenant("helmrepo");
    let kube = Kube::start();
    let repo = tempfile::tempdir().unwrap();
    let chart = common::root().join("charts/matih-service");
    let out = helm(&["package", chart.to_str().unwrap(), "--destination", repo.path().to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let url = serve_dir(repo.path().to_path_buf());
    let out = helm(&["repo", "index", repo.path().to_str().unwrap(), "--url", &url]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(kube::admin_kubectl(&["create", "namespace", "matih-helmrepo"]).status.success());

    let rt = tokio::runtime::Runtime::new().unwrap();
    let settings = |charts: &str, timeout: u64| HelmSettings {
        binary: Some(helm_binary().to_string_lossy().into_owned()),
        charts: ChartSource::parse(charts),
        target: HelmTarget::Url(kube.url.clone()),
        timeout: std::time::Duration::from_secs(timeout),
        plain_http: true,
        lb_ip_attempts: 3,
        lb_ip_interval: std::time::Duration::from_millis(500),
    };
    let provider = rt.block_on(HelmProvider::connect(settings(&url, 120))).unwrap();
    let tenant = TenantRef { slug: "helmrepo".into(), id: "00000000-0000-4000-8000-000000000001".into() };
    let release = |version: &str, replicas: i64| {
        let values = serde_json::json!({"replicaCount": replicas, "image": {"repository": "r.example/web", "tag": "1"}, "serviceAccountName": "default"});
        ResourceObject::new(
            "helm_release.web".parse().unwrap(),
            [
                ("name", Value::str("web")),
                ("namespace", Value::str("matih-helmrepo")),
                ("chart", Value::str("matih-service")),
                ("version", Value::str(version)),
                ("values", serde_json::from_value(values).unwrap()),
                ("status", Value::str("deployed")),
                ("live_changes", Value::List(Vec::new())),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
        )
    };
    assert_eq!(rt.block_on(provider.read(&tenant, &release("0.1.0", 1))).unwrap(), None);
    let installed = rt.block_on(provider.apply(&tenant, &release("0.1.0", 1))).unwrap();
    assert_eq!(installed.attrs, release("0.1.0", 1).attrs, "what was read back is what was asked");
    assert_eq!(installed.outputs["revision"], Value::Int(1));
    let upgraded = rt.block_on(provider.apply(&tenant, &release("0.1.0", 2))).unwrap();
    assert_eq!(upgraded.attrs["values"].get_path("replicaCount"), Some(&Value::Int(2)));
    assert_eq!(upgraded.outputs["revision"], Value::Int(2));
    let err = rt.block_on(provider.apply(&tenant, &release("9.9.9", 2))).unwrap_err();
    assert_eq!(err.address.to_string(), "helm_release.web");
    assert!(err.message.contains("9.9.9"), "helm's own message: {err}");
    // An upgrade that never becomes ready (pods of a ServiceAccount that does not exist are refused)
    // goes back to the previous revision (--atomic): the release stays deployed with its old values.
    let impatient = rt.block_on(HelmProvider::connect(settings(&url, 10))).unwrap();
    let mut broken = release("0.1.0", 3);
    if let Some(Value::Map(values)) = broken.attrs.get_mut("values") {
        values.insert("serviceAccountName".into(), Value::str("nobody"));
    }
    let err = rt.block_on(impatient.apply(&tenant, &broken)).unwrap_err();
    assert!(err.message.contains("UPGRADE FAILED") && err.message.contains("rolled back"), "{err}");
    let after = rt.block_on(provider.read(&tenant, &broken)).unwrap().expect("still installed");
    assert_eq!(after.attrs["status"], Value::str("deployed"));
    assert_eq!(after.attrs["values"].get_path("replicaCount"), Some(&Value::Int(2)), "the previous revision's values");
    assert_eq!(after.outputs["revision"], Value::Int(4), "3 failed, 4 is the rollback to 2");
    rt.block_on(provider.delete(&tenant, &release("0.1.0", 2))).unwrap();
    assert_eq!(rt.block_on(provider.read(&tenant, &release("0.1.0", 2))).unwrap(), None);
    rt.block_on(provider.delete(&tenant, &release("0.1.0", 2))).expect("deleting an absent release succeeds");

    // The same chart pushed with `helm push` to a real OCI registry and installed from
    // `oci://…`; before the install the rendered-manifest diff adds its objects, after a values
    // change it shows the Deployment's new replicas.
    let registry = OciRegistry::start();
    let packaged = repo.path().join("matih-service-0.1.0.tgz");
    let base = format!("oci://{}/charts", registry.addr);
    let out = helm(&["push", packaged.to_str().unwrap(), &base, "--plain-http"]);
    assert!(out.status.success(), "{}", text(&out));
    let oci = rt.block_on(HelmProvider::connect(settings(&base, 120))).unwrap();
    let added = rt.block_on(oci.preview(&tenant, &release("0.1.0", 1))).unwrap();
    let added: Vec<(&str, &str)> = added.iter().map(|c| (c.object.as_str(), c.change)).collect();
    assert_eq!(added, [("Service web", "added"), ("Deployment web", "added")]);
    let installed = rt.block_on(oci.apply(&tenant, &release("0.1.0", 1))).unwrap();
    assert_eq!(installed.attrs, release("0.1.0", 1).attrs);
    let meta = helm(&["get", "metadata", "web", "--namespace", "matih-helmrepo", "--output", "json"]);
    assert!(String::from_utf8_lossy(&meta.stdout).contains("matih-service"), "{}", text(&meta));
    assert!(rt.block_on(oci.preview(&tenant, &release("0.1.0", 1))).unwrap().is_empty(), "nothing to change");
    let changed = rt.block_on(oci.preview(&tenant, &release("0.1.0", 4))).unwrap();
    assert_eq!(changed.len(), 1, "{changed:?}");
    assert_eq!((changed[0].object.as_str(), changed[0].change), ("Deployment web", "changed"));
    let diff = changed[0].diff.as_deref().unwrap();
    assert!(diff.contains("-  replicas: 1\n+  replicas: 4\n"), "{diff}");
    let err = rt.block_on(oci.apply(&tenant, &release("0.2.0", 1))).unwrap_err();
    assert_eq!(err.address.to_string(), "helm_release.web");
    assert!(err.message.contains("0.2.0"), "helm's own message: {err}");
    rt.block_on(oci.delete(&tenant, &release("0.1.0", 1))).unwrap();
    assert!(kube::admin_kubectl(&["delete", "namespace", "matih-helmrepo", "--wait=false"]).status.success());
}

/// The OCI registry of the tests (`MATIH_OCI_REGISTRY`, built by scripts/lib/helm.sh's
/// helm_build from go-containerregistry's pkg/registry) on a free loopback port, stopped on drop.
struct OciRegistry {
    child: std::process::Child,
    addr: String,
}

impl OciRegistry {
    fn start() -> OciRegistry {
        use std::io::BufRead;
        let binary = std::env::var_os("MATIH_OCI_REGISTRY").unwrap_or_else(|| {
            panic!("MATIH_OCI_REGISTRY is not set: run the tests through scripts/test, or `. scripts/lib/helm.sh && helm_build` first")
        });
        let mut child = Command::new(binary)
            .arg("127.0.0.1:0")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the OCI registry starts");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let addr = line.trim().strip_prefix("listening on ").unwrap_or_else(|| panic!("{line:?}")).to_string();
        OciRegistry { child, addr }
    }
}

impl Drop for OciRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plan that needs helm fails before anything is read or changed when helm is missing, naming the
/// platform file's `helm { binary }` setting.
#[test]
fn a_plan_that_needs_a_missing_helm_names_the_setting() {
    let kube = Kube::start();
    let state = &TestState::new(Backend::Sled);
    let dir = tempfile::tempdir().unwrap();
    let kubernetes =
        format!("kubernetes {{\n  api_url = \"{}\"\n}}\nservices {{\n  delivery = \"helm\"\n}}\n", kube.url);
    let run = |platform: &str, path: &str| {
        state.write_platform(dir.path(), platform);
        let mut cmd = crate::support::matih_command();
        cmd.args(["plan", common::root().join("tenants/acme.hcl").to_str().unwrap()])
            .current_dir(dir.path())
            .env("NO_COLOR", "1")
            .env("PATH", path)
            .env_remove("MATIH_POSTGRES_ADMIN_URL")
            .stdin(Stdio::null());
        state.configure(&mut cmd, dir.path());
        cmd.output().unwrap()
    };
    let out = run(&format!("{kubernetes}helm {{\n  binary = \"/nonexistent/helm\"\n}}\n"), "/usr/bin:/bin");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("\"/nonexistent/helm\" named by `helm { binary = … }`"), "{}", text(&out));
    let out = run(&kubernetes, "/nonexistent");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("`helm` is not on the PATH"), "{}", text(&out));
    assert!(text(&out).contains(r#"set `helm { binary = "/path/to/helm" }` in the platform file"#), "{}", text(&out));
    // With helm there (the manifests delivery needs none), the same plan runs.
    let path = format!("{}:/usr/bin:/bin", helm_binary().parent().unwrap().display());
    let out = run(&kubernetes, &path);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("helm_release.query_engine will be created"), "{}", text(&out));
}
