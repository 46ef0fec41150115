//! The whole tool, end to end, as a platform engineer uses it: the real `matih` binary applies the
//! tenant acme through all ten phases against the real Kubernetes control plane, a real PostgreSQL and
//! a real PowerDNS (the last two started here), then plans again (no changes), sees and repairs drift, and
//! destroys the tenant. The real `kubectl`, `dig` and the PostgreSQL server check what it did.
//! Runs on both state backends (`…::sled`, `…::postgres`).

use crate::support as common;
use crate::support::kube;
use crate::support::powerdns;

use common::pg as postgres;
use common::{psql, text, Backend, TestState};
use kube::Kube;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use base64::Engine as _;
use matih::provider::dns::DnsBackend;

const PARENT: &str = "matih.test";
const WEBHOOK: &str = "https://hooks.slack.example/services/T0/B0/e2e-secret-webhook";

fn matih(dir: &Path, state: &TestState, args: &[&str], pg: &postgres::PgServer, dns: &powerdns::PowerDns) -> Output {
    let mut cmd = crate::support::matih_command();
    cmd.args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .env("MATIH_POSTGRES_ADMIN_URL", &pg.admin_url)
        .env("PDNS_API_KEY", &dns.api_key)
        .env("ACME_SLACK_WEBHOOK", WEBHOOK)
        .stdin(Stdio::null());
    state.configure(&mut cmd, dir);
    cmd.output().unwrap()
}

fn acme_from_nothing_to_active_to_repaired_drift_to_destroyed(backend: Backend) {
    // Both variants provision the tenant acme on the same PostgreSQL and PowerDNS.
    let _one = common::one_variant_at_a_time("acme");
    let _claim = kube::claim_tenant("acme");
    let state = &TestState::new(backend);
    let kube = Kube::start();
    let pg = postgres::server();
    let dns = powerdns::server();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let pdns = dns.parent_zone(&rt, PARENT);
    rt.block_on(pdns.replace_rrset(
        PARENT,
        "www",
        "A",
        &matih::provider::dns::RecordSet { ttl: 300, records: vec!["198.51.100.7".into()] },
    ))
    .unwrap();

    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("tenants")).unwrap();
    std::fs::copy(common::root().join("tenants/acme.hcl"), dir.path().join("tenants/acme.hcl")).unwrap();
    state.write_platform(dir.path(), &common::platform_hcl(PARENT, &dns.api_url, pg.port, &kube.url));

    // Apply: every phase, in order, against the real systems.
    let out = matih(dir.path(), state, &["apply", "tenants/acme.hcl", "--auto-approve"], pg, dns);
    let log = text(&out);
    assert!(out.status.success(), "{log}");
    let graph = common::compile_file(&dir.path().join("tenants/acme.hcl"));
    assert!(
        log.contains(&format!("Apply complete! Resources: {} added, 0 changed, 0 destroyed.", graph.len())),
        "{log}"
    );
    let mut last = 0;
    for p in matih::phase::Phase::ALL {
        let at = log
            .find(&format!("acme: Phase {}/10 {} complete", p.number(), p.name()))
            .unwrap_or_else(|| panic!("{p} in {log}"));
        assert!(at > last, "phases in order");
        last = at;
    }

    // The plan after apply reads everything back and has nothing to do.
    let out = matih(dir.path(), state, &["plan", "tenants/acme.hcl", "--detailed-exitcode"], pg, dns);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("No changes."));

    let status = text(&matih(dir.path(), state, &["status", "acme"], pg, dns));
    assert!(status.contains("Status:     ACTIVE"), "{status}");
    assert!(status.contains("SETUP_OBSERVABILITY") && status.contains("COMPLETED"), "{status}");

    // Kubernetes: namespace, Secret with the role's password; PostgreSQL: the role and its schema;
    // DNS: the records point at the LoadBalancer IP, the parent delegates.
    let ns = kube.kubectl(&["get", "ns", "matih-acme", "-o", "json"]);
    assert!(ns.status.success(), "{}", text(&ns));
    let svc: serde_json::Value = serde_json::from_slice(
        &kube.kubectl(&["get", "svc", "ingress-nginx-controller", "-n", "matih-acme-edge", "-o", "json"]).stdout,
    )
    .unwrap();
    let ip = svc["status"]["loadBalancer"]["ingress"][0]["ip"].as_str().unwrap().to_string();
    assert_eq!(dns.dig(&format!("api.acme.{PARENT}"), "A"), vec![ip.clone()]);
    assert_eq!(dns.dig(&format!("anything.acme.{PARENT}"), "A"), vec![ip.clone()], "the wildcard record");
    assert_eq!(dns.dig(&format!("acme.{PARENT}"), "NS"), ["ns1.matih.test.", "ns2.matih.test."]);
    assert_eq!(psql(&pg.admin_url, "SELECT rolconnlimit FROM pg_roles WHERE rolname = 'tenant_acme'"), "40");
    let secret: serde_json::Value = serde_json::from_slice(
        &kube.kubectl(&["get", "secret", "tenant-database-credentials", "-n", "matih-acme", "-o", "json"]).stdout,
    )
    .unwrap();
    let b64 = |k: &str| {
        String::from_utf8(
            base64::engine::general_purpose::STANDARD.decode(secret["data"][k].as_str().unwrap()).unwrap(),
        )
        .unwrap()
    };
    let password = b64("POSTGRES_PASSWORD");
    assert!(password.len() >= 32);
    assert!(b64("DATABASE_URL").contains(&password));
    // The tenant logs in with the Secret's credentials and sees its migrated tables.
    let url = format!("postgresql://tenant_acme:{password}@127.0.0.1:{}/{}", pg.port, b64("POSTGRES_DB"));
    let login = Command::new("psql")
        .args([url.as_str(), "-tA", "-c", "SELECT count(*) FROM tenant_acme.flyway_schema_history WHERE success"])
        .output()
        .unwrap();
    assert!(login.status.success(), "{}", String::from_utf8_lossy(&login.stderr));
    assert!(String::from_utf8_lossy(&login.stdout).trim().parse::<i32>().unwrap() >= 3);
    // `matih output`: what was recorded from the real systems, never the password.
    let out = matih(dir.path(), state, &["output", "acme", "--json"], pg, dns);
    assert!(out.status.success(), "{}", text(&out));
    let outputs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(outputs["load_balancer_ip"], ip.as_str(), "{outputs}");
    assert_eq!(outputs["nameservers"], serde_json::json!(["ns1.matih.test.", "ns2.matih.test."]), "{outputs}");
    assert_eq!(outputs["zone"], format!("acme.{PARENT}"));
    assert_eq!(outputs["urls"][0], format!("https://acme.{PARENT}"));
    assert_eq!(outputs["database_name"], b64("POSTGRES_DB").as_str());
    assert_eq!(outputs["database_host"], b64("POSTGRES_HOST").as_str());
    assert!(!String::from_utf8_lossy(&out.stdout).contains(&password));
    let raw = matih(dir.path(), state, &["output", "acme", "load_balancer_ip", "--raw"], pg, dns);
    assert_eq!(String::from_utf8_lossy(&raw.stdout), format!("{ip}\n"));

    // Secrets never reach the state store or the output.
    let stored = String::from_utf8_lossy(&state.contents()).into_owned();
    assert!(stored.contains("postgresql_role.tenant"), "the store's contents were read");
    for secret in [password.as_str(), WEBHOOK] {
        assert!(!stored.contains(secret), "a secret reached the state store");
        assert!(!log.contains(secret), "a secret reached the output");
    }

    // Drift: a record deleted in PowerDNS and a label changed with kubectl are seen and repaired.
    rt.block_on(pdns.delete_rrset(&format!("acme.{PARENT}"), "api", "A")).unwrap();
    assert!(kube.kubectl(&["label", "ns", "matih-acme", "matih.ai/region=westus", "--overwrite"]).status.success());
    let out = matih(dir.path(), state, &["plan", "tenants/acme.hcl", "--detailed-exitcode"], pg, dns);
    let plan = text(&out);
    assert_eq!(out.status.code(), Some(2), "{plan}");
    assert!(plan.contains("# dns_a_record.api will be created"), "{plan}");
    assert!(plan.contains("# kubernetes_namespace.tenant will be updated in place"), "{plan}");
    assert!(plan.contains("Plan: 1 to add, 1 to change, 0 to destroy."), "{plan}");
    let out = matih(dir.path(), state, &["apply", "tenants/acme.hcl", "--auto-approve"], pg, dns);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(dns.dig(&format!("api.acme.{PARENT}"), "A"), [ip]);
    let out = matih(dir.path(), state, &["plan", "tenants/acme.hcl", "--detailed-exitcode"], pg, dns);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    // Destroy: everything goes, in reverse phase order; the parent zone keeps its other records.
    let out = matih(dir.path(), state, &["destroy", "tenants/acme.hcl", "--auto-approve"], pg, dns);
    assert!(out.status.success(), "{}", text(&out));
    assert!(dns.dig(&format!("api.acme.{PARENT}"), "A").is_empty());
    assert_eq!(dns.dig(&format!("www.{PARENT}"), "A"), ["198.51.100.7"]);
    assert!(!kube.kubectl(&["get", "ns", "matih-acme"]).status.success(), "the namespace is gone");
    assert!(!kube.kubectl(&["get", "ns", "matih-acme-edge"]).status.success(), "the edge namespace is gone");
    assert_eq!(psql(&pg.admin_url, "SELECT count(*) FROM pg_roles WHERE rolname = 'tenant_acme'"), "0");
    let status = text(&matih(dir.path(), state, &["status", "acme"], pg, dns));
    assert!(status.contains("DESTROYED"), "{status}");
}
on_both_backends!(acme_from_nothing_to_active_to_repaired_drift_to_destroyed);

/// The ClusterRole README shows ("The ClusterRole matih needs"), taken from README itself.
fn readme_cluster_role() -> String {
    let readme = std::fs::read_to_string(common::root().join("README.md")).unwrap();
    let section = &readme[readme.find("### The ClusterRole matih needs").expect("the README section")..];
    let yaml = &section[section.find("```yaml\n").expect("its YAML block") + 8..];
    yaml[..yaml.find("```").unwrap()].to_string()
}

/// Least privilege, as an operator deploys matih: a ServiceAccount bound only to README's
/// ClusterRole applies acme through all ten phases and destroys it on the real API server, whose
/// RBAC escalation checks refuse any Role or binding granting what the account does not hold.
#[test]
fn acme_applies_and_destroys_through_a_service_account_bound_only_to_readmes_cluster_role() {
    let _one = common::one_variant_at_a_time("acme");
    let _claim = kube::claim_tenant("acme");
    let (pg, dns) = (postgres::server(), powerdns::server());
    dns.parent_zone(&tokio::runtime::Runtime::new().unwrap(), PARENT);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("role.yaml"), readme_cluster_role()).unwrap();
    let admin = |args: &[&str]| {
        let out = kube::admin_kubectl(args);
        assert!(out.status.success(), "kubectl {args:?}: {}", text(&out));
        String::from_utf8(out.stdout).unwrap()
    };
    admin(&["apply", "-f", d.join("role.yaml").to_str().unwrap()]);
    let _ = kube::admin_kubectl(&["create", "namespace", "matih-system"]);
    let _ = kube::admin_kubectl(&["create", "serviceaccount", "matih", "-n", "matih-system"]);
    let _ = kube::admin_kubectl(&[
        "create",
        "clusterrolebinding",
        "matih",
        "--clusterrole",
        "matih-provisioner",
        "--serviceaccount",
        "matih-system:matih",
    ]);
    let token = admin(&["create", "token", "matih", "-n", "matih-system", "--duration", "1h"]);
    let cp = kube::controlplane_dir();
    let server = std::fs::read_to_string(cp.join("apiserver.url")).unwrap();
    let kubeconfig = d.join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {}\n    certificate-authority: {}\n\
             contexts:\n- name: matih-sa\n  context: {{cluster: c, user: matih}}\ncurrent-context: matih-sa\n\
             users:\n- name: matih\n  user:\n    token: {}\n",
            server.trim(),
            cp.join("pki/ca.crt").display(),
            token.trim()
        ),
    )
    .unwrap();
    // The account is not an administrator: it cannot touch nodes or read what is not its business.
    let can = |verb: &str, what: &str| {
        let out = Command::new("kubectl")
            .args(["--kubeconfig", kubeconfig.to_str().unwrap(), "auth", "can-i", verb, what])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(can("delete", "nodes"), "no");
    assert_eq!(can("create", "customresourcedefinitions.apiextensions.k8s.io"), "no");
    assert_eq!(can("create", "deployments.apps"), "yes");

    std::fs::create_dir_all(d.join("tenants")).unwrap();
    std::fs::copy(common::root().join("tenants/acme.hcl"), d.join("tenants/acme.hcl")).unwrap();
    let platform = common::platform_hcl(PARENT, &dns.api_url, pg.port, "unused");
    let platform =
        platform.replace("api_url                      = \"unused\"", "context                      = \"matih-sa\"");
    std::fs::write(d.join("matih.hcl"), platform).unwrap();
    let run = |args: &[&str]| {
        crate::support::matih_command()
            .args(args)
            .current_dir(d)
            .env("NO_COLOR", "1")
            .env("KUBECONFIG", &kubeconfig)
            .env("MATIH_STATE_DIR", d.join("state"))
            .env("MATIH_POSTGRES_ADMIN_URL", &pg.admin_url)
            .env("PDNS_API_KEY", &dns.api_key)
            .env("ACME_SLACK_WEBHOOK", WEBHOOK)
            .env_remove("MATIH_PLATFORM_FILE")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let out = run(&["apply", "tenants/acme.hcl", "--auto-approve"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("acme: Phase 10/10 SETUP_OBSERVABILITY complete"), "{}", text(&out));
    let out = run(&["plan", "tenants/acme.hcl", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = run(&["destroy", "tenants/acme.hcl", "--auto-approve"]);
    assert!(out.status.success(), "{}", text(&out));
    let ns = kube::admin_kubectl(&["get", "namespace", "matih-acme", "matih-acme-edge"]);
    assert!(!ns.status.success() && text(&ns).matches("NotFound").count() == 2, "{}", text(&ns));
}
