//! The Kubernetes provider end to end, against the real Kubernetes control plane (scripts/test starts it) and
//! checked with the real `kubectl`: a tenant's Kubernetes objects applied through the apply engine,
//! a plan after apply with no changes, drift made with kubectl seen as an attribute-level update,
//! readiness timeouts and retries under fault injection.
//!
//! PostgreSQL and DNS are not what this file tests, so their resources go through a scripted
//! provider that answers like them (the role's generated password as a sensitive output, the
//! zone's nameservers); tests/postgres.rs and tests/dns_*.rs test the real ones.

use crate::support as common;
use crate::support::fake::Scripted;
use crate::support::kube;

use std::sync::Arc;
use std::time::Duration;

use kube::Kube;
use matih::apply::{apply_tenant, refresh, ApplyError, ApplyOptions, NoHooks, Providers};
use matih::plan::{diff, Action, TenantPlan};
use matih::provider::kubernetes::{KubeSettings, KubeTarget, KubernetesProvider};
use matih::state::{MemoryStore, StateStore, TenantStatus};
use matih::value::Value;

/// The real Kubernetes control plane (through a proxy of its own), and what these tests ask of it.
/// The tests here provision acme and globex on the shared cluster, one test at a time.
struct Server(Kube, #[allow(dead_code)] Vec<kube::TenantClaim>);

impl Server {
    fn start() -> Server {
        let claims = kube::claim_tenants(&["acme", "globex"]);
        Server(Kube::start(), claims)
    }

    /// Runs the real kubectl; fails the test when kubectl fails.
    fn kubectl(&self, args: &[&str]) -> String {
        let out = self.0.kubectl(args);
        assert!(out.status.success(), "kubectl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    fn kubectl_json(&self, args: &[&str]) -> serde_json::Value {
        let mut a = args.to_vec();
        a.extend(["-o", "json"]);
        serde_json::from_str(&self.kubectl(&a)).unwrap()
    }

    fn admin(&self, method: &str, path: &str, body: serde_json::Value) -> serde_json::Value {
        self.0.admin(method, path, body)
    }

    async fn provider(&self, settings: KubeSettings) -> KubernetesProvider {
        KubernetesProvider::connect(&KubeTarget::Url(self.0.url.clone()), settings).await.unwrap()
    }
}

fn fast() -> KubeSettings {
    KubeSettings {
        lb_ip_attempts: 100,
        lb_ip_interval: Duration::from_millis(20),
        deployment_timeout: Duration::from_secs(10),
        certificate_timeout: Duration::from_secs(10),
        delete_timeout: Duration::from_secs(10),
        poll_interval: Duration::from_millis(20),
    }
}

fn opts() -> ApplyOptions {
    ApplyOptions {
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(50),
        ..ApplyOptions::default()
    }
}

/// The Slack webhook of acme comes from the environment, which the apply engine reads in this
/// process: the tests that apply acme rerun themselves in a child process with it set.
const WEBHOOK: (&str, &str) = ("ACME_SLACK_WEBHOOK", "https://hooks.slack.example/services/T000/B000/XXXX");

fn acme_plan(store: &dyn StateStore) -> TenantPlan {
    let mut graph = common::compile_file(&common::root().join("tenants/acme.hcl"));
    assert!(matih::apply::fill_env_fingerprints(&mut graph).is_empty());
    diff(&graph, store.get("acme").unwrap().as_ref(), None)
}

/// The plan after reading the live objects back, as `matih plan` makes it.
async fn refreshed_plan(store: &dyn StateStore, providers: &Providers) -> TenantPlan {
    let mut graph = common::compile_file(&common::root().join("tenants/acme.hcl"));
    matih::apply::fill_env_fingerprints(&mut graph);
    let prior = store.get("acme").unwrap().unwrap();
    let r = refresh(&prior, providers, 8).await;
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    diff(&graph, r.state.as_ref(), None)
}

fn changed(plan: &TenantPlan) -> Vec<String> {
    plan.resource_changes
        .iter()
        .filter(|c| c.action != Action::NoOp)
        .map(|c| format!("{:?} {}", c.action, c.address))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_applied_to_kubernetes_is_what_the_seed_describes() {
    if common::rerun_in_child("kubernetes::a_tenant_applied_to_kubernetes_is_what_the_seed_describes", &[WEBHOOK]) {
        return;
    }
    let server = Server::start();
    let k8s = Arc::new(server.provider(fast()).await);
    let providers = Providers::new().with(k8s).with(Arc::new(Scripted::postgres_and_dns()));
    let store = MemoryStore::default();

    let report = apply_tenant(&acme_plan(&store), &store, &providers, &NoHooks, &opts()).await.unwrap();
    assert_eq!(report.status, TenantStatus::Active);

    // Namespace with the platform guide's labels.
    let ns = server.kubectl_json(&["get", "ns", "matih-acme"]);
    let labels = &ns["metadata"]["labels"];
    assert_eq!(labels["matih.ai/tenant-id"], "550e8400-e29b-41d4-a716-446655440000");
    assert_eq!(labels["matih.ai/tenant-slug"], "acme");
    assert_eq!(labels["matih.ai/tier"], "professional");
    assert_eq!(labels["matih.ai/region"], "eastus");
    assert_eq!(labels["matih.ai/managed-by"], "tenant-service");
    assert_eq!(ns["metadata"]["annotations"]["matih.ai/provisioned-by"], "admin@matih.ai");
    assert!(ns["metadata"]["annotations"]["matih.ai/provisioned-at"].as_str().unwrap().ends_with('Z'));

    // The quota of the professional tier.
    let quota = server.kubectl_json(&["get", "resourcequota", "-n", "matih-acme"]);
    let hard = &quota["items"][0]["spec"]["hard"];
    assert_eq!((&hard["requests.cpu"], &hard["limits.cpu"], &hard["pods"]), (&"8".into(), &"16".into(), &"50".into()));
    assert_eq!((&hard["requests.memory"], &hard["limits.memory"]), (&"16Gi".into(), &"32Gi".into()));

    // Network policies, among them the platform guide's three.
    let text = server.kubectl(&["get", "-n", "matih-acme", "deploy,svc,networkpolicy"]);
    for name in [
        "default-deny-ingress",
        "allow-same-namespace",
        "allow-ingress-controller",
        "query-engine",
        "ai-service",
        "api-gateway",
        "bi-workbench",
    ] {
        assert!(text.contains(name), "{name} in\n{text}");
    }
    let deploys = server.kubectl_json(&["get", "deploy", "-n", "matih-acme"]);
    let ready: Vec<(String, i64)> = deploys["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["metadata"]["name"].as_str().unwrap().to_string(),
                d["status"]["availableReplicas"].as_i64().unwrap_or(0),
            )
        })
        .collect();
    assert!(ready.iter().all(|(_, n)| *n >= 1), "every Deployment available: {ready:?}");
    assert!(ready.iter().any(|(n, r)| n == "ai-service" && *r == 2), "the override of replicas: {ready:?}");

    // Pod Security Admission: the namespace enforces `restricted`, so every pod above was admitted by
    // the API server's own check; a pod without the securityContext is refused.
    assert_eq!(labels["pod-security.kubernetes.io/enforce"], "restricted");
    assert_eq!(labels["pod-security.kubernetes.io/enforce-version"], "v1.30");
    let bare = server.0.kubectl(&["run", "bare", "-n", "matih-acme", "--image=busybox", "--dry-run=server"]);
    let why = String::from_utf8_lossy(&bare.stderr);
    assert!(!bare.status.success() && why.contains("violates PodSecurity \"restricted:v1.30\""), "{why}");
    for missing in
        ["allowPrivilegeEscalation != false", "unrestricted capabilities", "runAsNonRoot != true", "seccompProfile"]
    {
        assert!(why.contains(missing), "{missing} in {why}");
    }
    let job = server.kubectl_json(&["get", "job", "observability-pipeline-check", "-n", "matih-acme"]);
    assert_eq!(job["status"]["succeeded"], 1, "the check Job's pod was admitted and ran: {}", job["status"]);
    // The project's chart (delivery = "helm"): the API server checks a Deployment's pod template
    // against the namespace's `warn` level and answers with a warning when it would be refused. The
    // chart's pods pass; the same chart without its securityContext values would not.
    let helm = std::env::var("MATIH_HELM").unwrap_or_else(|_| "helm".into());
    let chart = concat!(env!("CARGO_MANIFEST_DIR"), "/charts/matih-service");
    let render = |extra: &[&str]| {
        let mut args = vec!["template", "chart-check", chart, "--namespace", "matih-acme"];
        args.extend(extra);
        let out = std::process::Command::new(&helm).args(&args).output().expect("helm (MATIH_HELM, from helm_build)");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let file = std::env::temp_dir().join(format!("matih-chart-{}-{}.yaml", std::process::id(), extra.len()));
        std::fs::write(&file, &out.stdout).unwrap();
        let created =
            server.0.kubectl(&["create", "--dry-run=server", "-n", "matih-acme", "-f", file.to_str().unwrap()]);
        std::fs::remove_file(&file).unwrap();
        assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
        String::from_utf8_lossy(&created.stderr).into_owned()
    };
    let ours = render(&[]);
    assert!(!ours.contains("would violate PodSecurity"), "{ours}");
    let without = render(&["--set", "podSecurityContext=null", "--set", "securityContext=null"]);
    assert!(without.contains("would violate PodSecurity \"restricted:v1.30\""), "{without}");

    // The collector's credentials: generated, in the tenant's Secret; state holds a fingerprint.
    let obs = server.kubectl_json(&["get", "secret", "observability-credentials", "-n", "matih-acme"]);
    assert_eq!(obs["type"], "kubernetes.io/basic-auth");
    let obs_pw = obs["data"]["password"].as_str().unwrap();
    assert!(obs_pw.len() >= 40, "a generated password: {obs_pw}");

    // The collector's export to Tempo: TLS, verified, by default. With the platform's otlp_ca_file the
    // ConfigMap and the collector that mounts it are accepted by the API server (the upstream CRD's
    // schema with strict field validation, in a server-side dry run).
    let live = server.kubectl_json(&["get", "opentelemetrycollector", "tenant", "-n", "matih-acme"]);
    assert_eq!(live["spec"]["config"]["exporters"]["otlp/tempo"]["tls"], serde_json::json!({ "insecure": false }));
    let mut platform = matih::spec::PlatformConfig::default();
    let ca = std::fs::read_to_string(common::root().join("tests/fixtures/platform/tempo-ca.pem")).unwrap();
    platform.observability.otlp_ca = Some(ca);
    let catalog = matih::catalog::Catalog::embedded().unwrap();
    let (specs, _) = matih::spec::load_tenants(&[common::root().join("tenants/acme.hcl")], &catalog);
    let (with_ca, diags) = matih::graph::compile(&specs[0], &catalog, &platform);
    assert!(diags.is_empty(), "{diags:?}");
    let with_ca = with_ca.unwrap();
    for address in ["kubernetes_config_map.observability_ca", "kubernetes_open_telemetry_collector.tenant"] {
        let r = with_ca.get(&address.parse().unwrap()).unwrap();
        let manifest = serde_json::Value::from(Value::Map(r.attrs.clone()));
        let file = std::env::temp_dir().join(format!("matih-otlp-ca-{}.json", std::process::id()));
        std::fs::write(&file, manifest.to_string()).unwrap();
        let out = server.0.kubectl(&[
            "apply",
            "--server-side",
            "--dry-run=server",
            "--validate=strict",
            "--force-conflicts",
            "--field-manager=otlp-ca-check",
            "-f",
            file.to_str().unwrap(),
        ]);
        std::fs::remove_file(&file).unwrap();
        assert!(out.status.success(), "{address}: {}", String::from_utf8_lossy(&out.stderr));
    }

    // Secrets: the credentials hold the role's password, and state only its fingerprint.
    let secret = server.kubectl_json(&["get", "secret", "tenant-database-credentials", "-n", "matih-acme"]);
    let pw = secret["data"]["POSTGRES_PASSWORD"].as_str().unwrap();
    assert_eq!(pw, "cHctb2YtdGhlLXRlc3Q=", "base64 of the role's password");
    let st = store.get("acme").unwrap().unwrap();
    assert!(!serde_json::to_string(&st).unwrap().contains("pw-of-the-test"));

    // The ingress controller lives in the edge namespace, which enforces `restricted` too, with the
    // Ingress and its TLS Secret: its ServiceAccount may list and read the Secrets there (as
    // ingress-nginx does) and none of the tenant namespace's, the database credentials above all.
    // Asked of the real API server's authorizer (a SubjectAccessReview, kubectl auth can-i).
    let edge = server.kubectl_json(&["get", "ns", "matih-acme-edge"]);
    assert_eq!(edge["metadata"]["labels"]["pod-security.kubernetes.io/enforce"], "restricted");
    assert_eq!(edge["metadata"]["labels"]["matih.ai/tenant-slug"], "acme");
    let can = |verb: &str, what: &str, ns: &str| {
        let sa = "system:serviceaccount:matih-acme-edge:ingress-nginx";
        let out = server.0.kubectl(&["auth", "can-i", verb, what, "--namespace", ns, "--as", sa]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(can("get", "secret/tenant-database-credentials", "matih-acme"), "no");
    assert_eq!(can("list", "secrets", "matih-acme"), "no");
    assert_eq!(can("watch", "secrets", "matih-acme"), "no");
    assert_eq!(can("get", "secret/observability-credentials", "matih-acme"), "no");
    assert_eq!(can("get", "secret/acme-tls-certificate", "matih-acme-edge"), "yes");
    assert_eq!(can("list", "secrets", "matih-acme-edge"), "yes");
    assert_eq!(can("list", "ingresses.networking.k8s.io", "matih-acme-edge"), "yes");
    assert_eq!(can("list", "ingresses.networking.k8s.io", "matih-acme"), "no");
    let controller = server.kubectl_json(&["get", "deploy", "ingress-nginx-controller", "-n", "matih-acme-edge"]);
    assert_eq!(controller["status"]["availableReplicas"], 2, "admitted under `restricted`: {}", controller["status"]);
    let args = controller["spec"]["template"]["spec"]["containers"][0]["args"].to_string();
    assert!(args.contains("--watch-namespace=matih-acme-edge"), "{args}");
    let quota = server.kubectl_json(&["get", "resourcequota", "edge-quota", "-n", "matih-acme-edge"]);
    assert_eq!(quota["status"]["used"]["services.loadbalancers"], "1", "{}", quota["status"]);
    // Only the edge namespace's controller pods enter the tenant namespace, to the Ingress's
    // backends on their ports; the edge namespace denies everything else.
    let allow = server.kubectl_json(&["get", "networkpolicy", "allow-ingress-controller", "-n", "matih-acme"]);
    let from = &allow["spec"]["ingress"][0]["from"][0];
    assert_eq!(from["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"], "matih-acme-edge");
    assert_eq!(from["podSelector"]["matchLabels"]["app.kubernetes.io/name"], "ingress-nginx");
    assert_eq!(allow["spec"]["ingress"][0]["ports"].as_array().map(Vec::len), Some(2), "{allow}");
    let text = server.kubectl(&["get", "networkpolicy", "-n", "matih-acme-edge", "-o", "name"]);
    for name in ["edge-default-deny", "edge-allow-loadbalancer", "edge-allow-dns-egress", "edge-allow-backends-egress"]
    {
        assert!(text.contains(name), "{name} in\n{text}");
    }

    // IngressClass and Ingress as the platform guide, in the edge namespace.
    let class = server.kubectl_json(&["get", "ingressclass", "nginx-acme"]);
    assert_eq!(class["spec"]["controller"], "k8s.io/ingress-nginx-acme");
    let ing = server.kubectl_json(&["get", "ingress", "tenant-ingress", "-n", "matih-acme-edge"]);
    assert_eq!(ing["spec"]["ingressClassName"], "nginx-acme");
    assert_eq!(ing["metadata"]["annotations"]["cert-manager.io/cluster-issuer"], "letsencrypt-prod-dns01");
    assert_eq!(ing["spec"]["tls"][0]["hosts"], serde_json::json!(["acme.matih.ai", "*.acme.matih.ai"]));
    assert_eq!(ing["spec"]["tls"][0]["secretName"], "acme-tls-certificate");
    let rules = &ing["spec"]["rules"];
    assert_eq!(rules[0]["host"], "acme.matih.ai");
    assert_eq!(rules[0]["http"]["paths"][0]["path"], "/api");
    assert_eq!(rules[0]["http"]["paths"][0]["backend"]["service"]["name"], "api-gateway");
    assert_eq!(rules[0]["http"]["paths"][0]["backend"]["service"]["port"]["number"], 8080);
    assert_eq!(rules[1]["host"], "bi.acme.matih.ai");
    assert_eq!(rules[1]["http"]["paths"][0]["backend"]["service"]["name"], "bi-workbench");
    assert_eq!(rules[1]["http"]["paths"][0]["backend"]["service"]["port"]["number"], 3000);
    // Its backends are ExternalName Services of the edge namespace naming the tenant's Services.
    for (name, port) in [("api-gateway", 8080), ("bi-workbench", 3000)] {
        let svc = server.kubectl_json(&["get", "svc", name, "-n", "matih-acme-edge"]);
        assert_eq!(svc["spec"]["type"], "ExternalName");
        assert_eq!(svc["spec"]["externalName"], format!("{name}.matih-acme.svc.cluster.local"));
        assert_eq!(svc["spec"]["ports"][0]["targetPort"], port);
        let target = server.kubectl_json(&["get", "svc", name, "-n", "matih-acme"]);
        assert_eq!(target["spec"]["ports"][0]["port"], port);
    }

    // The LoadBalancer IP reached the DNS records.
    let lb = server.kubectl_json(&["get", "svc", "-n", "matih-acme-edge", "ingress-nginx-controller"]);
    let ip = lb["status"]["loadBalancer"]["ingress"][0]["ip"].as_str().unwrap().to_string();
    let api = &st.resources[&"dns_a_record.api".parse().unwrap()];
    assert_eq!(api.attrs["records"], Value::list([Value::str(ip)]));

    // A plan after apply, refreshed from the live objects, has nothing to do.
    assert_eq!(changed(&refreshed_plan(&store, &providers).await), Vec::<String>::new());

    // A label changed with kubectl is an update of that label only.
    server.kubectl(&["label", "ns", "matih-acme", "matih.ai/tier=free", "--overwrite"]);
    let plan = refreshed_plan(&store, &providers).await;
    assert_eq!(changed(&plan), ["Update kubernetes_namespace.tenant"]);
    let ns_change = plan.resource_changes.iter().find(|c| c.action == Action::Update).unwrap();
    let paths: Vec<&str> = ns_change.changes.iter().map(|c| c.path.as_str()).collect();
    assert_eq!(paths, [r#"metadata.labels["matih.ai/tier"]"#]);
    let report = apply_tenant(&plan, &store, &providers, &NoHooks, &opts()).await.unwrap();
    assert_eq!(report.operations.len(), 1);
    assert_eq!(
        server.kubectl_json(&["get", "ns", "matih-acme"])["metadata"]["labels"]["matih.ai/tier"],
        "professional"
    );

    // A deleted object is created again, in the edge namespace too (drift reads both namespaces).
    server.kubectl(&["delete", "networkpolicy", "allow-same-namespace", "-n", "matih-acme"]);
    server.kubectl(&["delete", "networkpolicy", "edge-default-deny", "-n", "matih-acme-edge"]);
    let plan = refreshed_plan(&store, &providers).await;
    assert_eq!(
        changed(&plan),
        ["Create kubernetes_network_policy.allow_same_namespace", "Create kubernetes_network_policy.edge_default_deny"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_timeouts_name_the_object_and_transient_errors_are_retried() {
    if common::rerun_in_child(
        "kubernetes::readiness_timeouts_name_the_object_and_transient_errors_are_retried",
        &[WEBHOOK],
    ) {
        return;
    }
    let server = Server::start();
    // Every second apply of a Deployment fails with 500 once: retried, and the apply succeeds.
    server.admin(
        "POST",
        "/_admin/faults",
        serde_json::json!({"verb": "apply", "resource": "deployments", "nth": 2, "status": 500}),
    );
    server.admin(
        "POST",
        "/_admin/faults",
        serde_json::json!({"verb": "apply", "resource": "services", "nth": 3, "status": 429, "retryAfterSeconds": 0}),
    );
    // A connection dropped without an answer, and a request held for a while, are retried too.
    server.admin(
        "POST",
        "/_admin/faults",
        serde_json::json!({"verb": "apply", "resource": "networkpolicies", "nth": 1, "drop": true}),
    );
    server.admin(
        "POST",
        "/_admin/faults",
        serde_json::json!({"verb": "apply", "resource": "serviceaccounts", "nth": 2, "delayMs": 300}),
    );
    server.admin("PATCH", "/_admin/config", serde_json::json!({"neverAssignLbIp": true}));
    let settings = KubeSettings { lb_ip_attempts: 5, ..fast() };
    let providers =
        Providers::new().with(Arc::new(server.provider(settings).await)).with(Arc::new(Scripted::postgres_and_dns()));
    let store = MemoryStore::default();
    let err = apply_tenant(&acme_plan(&store), &store, &providers, &NoHooks, &opts()).await.unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, ApplyError::Failed { .. }), "{msg}");
    assert!(msg.contains("phase 6/10 DEPLOY_INGRESS_CONTROLLER"), "{msg}");
    assert!(
        msg.contains("kubernetes_service.ingress_controller (status.loadBalancer.ingress): no external IP assigned to LoadBalancer Service ingress-nginx-controller after 5 attempts"),
        "{msg}"
    );
    let st = store.get("acme").unwrap().unwrap();
    assert_eq!(st.status, TenantStatus::Failed);
    assert_eq!(st.current_phase.map(|p| p.number()), Some(6));
    // Every fault fired once (and the apply went on past each of them).
    let faults = server.admin("GET", "/_admin/faults", serde_json::json!({}));
    let fired: Vec<u64> = faults.as_array().unwrap().iter().map(|f| f["fired"].as_u64().unwrap()).collect();
    assert_eq!(fired, [1, 1, 1, 1], "{faults}");
    // Phase 6 was rolled back: the controller and its edge namespace are gone again, phase 5 stays.
    assert!(!server.0.kubectl(&["get", "ns", "matih-acme-edge"]).status.success(), "the edge namespace is gone");
    let text = server.kubectl(&["get", "deploy", "-n", "matih-acme"]);
    assert!(text.contains("render-service"), "{text}");

    // The IP arrives now: the next apply resumes at phase 6 and finishes. (The rollback deleted the
    // edge namespace and with it the Service that never got its IP, so the new one waits for the
    // stand-in cloud's 200 ms again: the default attempts.)
    server.admin("PATCH", "/_admin/config", serde_json::json!({"neverAssignLbIp": false}));
    let providers =
        Providers::new().with(Arc::new(server.provider(fast()).await)).with(Arc::new(Scripted::postgres_and_dns()));
    let plan = acme_plan(&store);
    assert!(plan.resource_changes.iter().filter(|c| c.phase.number() < 6).all(|c| c.action == Action::NoOp));
    let report = apply_tenant(&plan, &store, &providers, &NoHooks, &opts()).await.unwrap();
    assert_eq!(report.status, TenantStatus::Active);

    // A Deployment that never becomes ready is a timeout naming it.
    server.admin("PATCH", "/_admin/config", serde_json::json!({"neverReadyDeployments": true}));
    let settings = KubeSettings { deployment_timeout: Duration::from_millis(300), ..fast() };
    let providers =
        Providers::new().with(Arc::new(server.provider(settings).await)).with(Arc::new(Scripted::postgres_and_dns()));
    let fresh = MemoryStore::default();
    let graph = common::compile_file(&common::root().join("tenants/globex.hcl"));
    let err =
        apply_tenant(&diff(&graph, None, None), &fresh, &providers, &NoHooks, &opts()).await.unwrap_err().to_string();
    assert!(err.contains("phase 3/10 DEPLOY_CORE_SERVICES"), "{err}");
    assert!(err.contains("timed out after 0s waiting for Deployment"), "{err}");
    assert!(err.contains("to become available (0/1 replicas available)"), "{err}");
}
