//! Renderer tests over one plan that exercises every action and value kind, built with the real
//! diff from a hand-made graph and state. Its fixtures (`attrs`, `resource`, `recorded`, `meta`)
//! serve the other renderers' tests too.

use std::collections::{BTreeMap, BTreeSet};

use super::*;
use crate::graph::{Resource, ResourceGraph, TenantMeta};
use crate::phase::Phase;
use crate::plan::{diff, Plan, TenantPlan};
use crate::state::{ResourceState, TenantState, TenantStatus};
use crate::value::{fingerprint, Secret, Value};

pub(super) fn attrs(v: Value) -> BTreeMap<String, Value> {
    match v {
        Value::Map(m) => m,
        other => panic!("not a map: {other:?}"),
    }
}

pub(super) fn resource(addr: &str, phase: u8, v: Value, force_new: &[&str]) -> Resource {
    Resource {
        addr: addr.parse().unwrap(),
        phase: Phase::from_number(phase).unwrap(),
        attrs: attrs(v),
        depends_on: BTreeSet::new(),
        force_new: force_new.iter().map(|s| s.to_string()).collect(),
        origin: None,
    }
}

pub(super) fn recorded(phase: u8, v: Value) -> ResourceState {
    ResourceState {
        phase: Phase::from_number(phase).unwrap(),
        attrs: attrs(v),
        outputs: BTreeMap::new(),
        depends_on: BTreeSet::new(),
    }
}

pub(super) fn meta(slug: &str) -> TenantMeta {
    TenantMeta {
        slug: slug.into(),
        id: "550e8400-e29b-41d4-a716-446655440000".into(),
        tier: "professional".into(),
        region: "eastus".into(),
        source: None,
    }
}

fn state(slug: &str, resources: Vec<(&str, ResourceState)>) -> TenantState {
    TenantState {
        phases: Default::default(),
        slug: slug.into(),
        tenant_id: "550e8400-e29b-41d4-a716-446655440000".into(),
        lineage: "0b7e6a52-5f3c-4c6e-9d0a-2f1f3c1d9e11".into(),
        serial: 4,
        status: TenantStatus::Active,
        current_phase: None,
        provisioning_error: None,
        provisioning_completed_at: None,
        updated_at: "2024-05-01T10:00:00Z".into(),
        resources: resources.into_iter().map(|(a, s)| (a.parse().unwrap(), s)).collect(),
        ..Default::default()
    }
}

fn secret(clear: Option<&str>) -> Value {
    Value::Secret(Secret { source: "generated".into(), fingerprint: clear.map(fingerprint) })
}

fn namespace(tier: &str, name: &str) -> Value {
    Value::map([
        ("apiVersion", Value::str("v1")),
        ("kind", Value::str("Namespace")),
        (
            "metadata",
            Value::map([
                ("labels", Value::map([("matih.ai/tenant", Value::str("acme")), ("matih.ai/tier", Value::str(tier))])),
                ("name", Value::str(name)),
            ]),
        ),
    ])
}

fn deployment(image: &str, args: &[&str]) -> Value {
    Value::map([(
        "spec",
        Value::map([
            ("replicas", Value::Int(2)),
            (
                "containers",
                Value::list([Value::map([
                    ("image", Value::str(image)),
                    ("name", Value::str("query-engine")),
                    ("args", Value::list(args.iter().map(|a| Value::str(*a)))),
                ])]),
            ),
        ]),
    )])
}

fn rules(expr: &str) -> Value {
    Value::map([("expr", Value::str(expr)), ("for", Value::str("5m"))])
}

/// The tenant `acme` with recorded state: one resource of each action, secrets, unknowns and a
/// multi-line string among them.
fn acme() -> TenantPlan {
    let mut g = ResourceGraph::new(meta("acme"));
    let old_sql = "SELECT 1;\nSELECT 2;\nSELECT 3;\nSELECT 4;\nSELECT 5;\nSELECT 6;\nSELECT 7;\nSELECT 8;\n";
    let new_sql = old_sql.replace("SELECT 7;", "SELECT 70;");
    for r in [
        resource("kubernetes_namespace.tenant", 1, namespace("enterprise", "matih-acme"), &["metadata.name"]),
        resource(
            "postgresql_role.tenant",
            2,
            Value::map([("name", Value::str("acme")), ("password", secret(None))]),
            &[],
        ),
        resource("kubernetes_secret.webhook", 9, Value::map([("url", secret(Some("https://hooks/new")))]), &[]),
        resource("kubernetes_deployment.query_engine", 3, deployment("query:2", &["--a", "--c"]), &[]),
        resource("postgresql_migration.v2", 2, Value::map([("sql", Value::str(new_sql.clone()))]), &[]),
        resource(
            "dns_a_record.api",
            7,
            Value::map([
                ("name", Value::str("api")),
                ("ip", Value::Ref { resource: "kubernetes_service.ingress".parse().unwrap(), output: "ip".into() }),
            ]),
            &[],
        ),
        resource("kubernetes_service.ingress", 6, Value::map([("type", Value::str("LoadBalancer"))]), &[]),
        resource("prometheus_rule.high_error_rate", 9, rules("rate(errors[5m]) > 0.05"), &[]),
    ] {
        assert!(g.add(r));
    }
    assert!(g.connect().is_empty());
    let s = state(
        "acme",
        vec![
            ("kubernetes_namespace.tenant", recorded(1, namespace("professional", "matih-acme-old"))),
            (
                "postgresql_role.tenant",
                recorded(2, Value::map([("name", Value::str("acme")), ("password", secret(Some("hunter2")))])),
            ),
            ("kubernetes_secret.webhook", recorded(9, Value::map([("url", secret(Some("https://hooks/old")))]))),
            ("kubernetes_deployment.query_engine", recorded(3, deployment("query:1", &["--a", "--b", "--c"]))),
            ("postgresql_migration.v2", recorded(2, Value::map([("sql", Value::str(old_sql))]))),
            ("postgresql_schema.tenant", recorded(2, Value::map([("name", Value::str("tenant_acme"))]))),
            ("prometheus_rule.high_error_rate", recorded(9, rules("rate(errors[5m]) > 0.05"))),
        ],
    );
    diff(&g, Some(&s), Some("tenants/acme.hcl".into()))
}

/// The tenant `gamma`, not provisioned yet: everything is created.
fn gamma() -> TenantPlan {
    let mut g = ResourceGraph::new(meta("gamma"));
    let policy = Value::map([(
        "spec",
        Value::map([
            ("podSelector", Value::Map(BTreeMap::new())),
            ("policyTypes", Value::list([Value::str("Ingress")])),
        ]),
    )]);
    let dashboard = "{\n  \"title\": \"Tenant overview\",\n  \"panels\": []\n}\n";
    for r in [
        resource("kubernetes_namespace.tenant", 1, namespace("free", "matih-gamma"), &["metadata.name"]),
        resource("kubernetes_network_policy.default_deny_ingress", 4, policy, &[]),
        resource("kubernetes_deployment.query_engine", 3, deployment("query:2", &["--a"]), &[]),
        resource(
            "grafana_dashboard.overview",
            9,
            Value::map([
                ("json", Value::str(dashboard)),
                ("created_at", Value::Computed { note: "set by Grafana".into() }),
                ("admin_password", secret(None)),
            ]),
            &[],
        ),
    ] {
        assert!(g.add(r));
    }
    assert!(g.connect().is_empty());
    diff(&g, None, Some("tenants/gamma.hcl".into()))
}

/// The tenant `beta`, recorded and unchanged.
fn beta() -> TenantPlan {
    let mut g = ResourceGraph::new(meta("beta"));
    assert!(g.add(resource("kubernetes_namespace.tenant", 1, namespace("free", "matih-beta"), &[])));
    let s = state("beta", vec![("kubernetes_namespace.tenant", recorded(1, namespace("free", "matih-beta")))]);
    diff(&g, Some(&s), Some("tenants/beta.hcl".into()))
}

fn sample() -> Plan {
    Plan::new(vec![acme(), beta(), gamma()])
}

/// Compares `actual` with the committed file `testdata/NAME`; with `UPDATE_EXPECT=1` rewrites the
/// file instead (then review the diff before committing it).
fn check_snapshot(name: &str, actual: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/plan/render/testdata").join(name);
    if std::env::var_os("UPDATE_EXPECT").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; run with UPDATE_EXPECT=1 to create it", path.display()));
    if expected != actual {
        let diff =
            similar::TextDiff::from_lines(&expected, actual).unified_diff().header("expected", "actual").to_string();
        panic!("{name} differs from the snapshot (UPDATE_EXPECT=1 rewrites it):\n{diff}");
    }
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            assert_eq!(chars.next(), Some('['), "only CSI sequences are used");
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Nothing secret may appear: neither a clear value nor a fingerprint.
fn assert_no_secrets(out: &str) {
    for needle in ["hunter2", "https://hooks", "sha256:"] {
        assert!(!out.contains(needle), "{needle:?} leaked into:\n{out}");
    }
}

#[test]
fn text_snapshot() {
    let out = render_text(&sample(), &TextOptions { color: false, ..Default::default() });
    assert_no_secrets(&out);
    assert!(!out.contains('\x1b'));
    assert!(out.ends_with("\nPlan: 7 to add, 3 to change, 2 to destroy.\n"), "{out}");
    check_snapshot("plan.txt", &out);
}

#[test]
fn colour_only_adds_escape_codes() {
    let plan = sample();
    let colored = render_text(&plan, &TextOptions { color: true, ..Default::default() });
    assert!(colored.contains("\x1b[32m+\x1b[0m resource"));
    assert!(colored.contains("\x1b[31m-\x1b[0m/\x1b[32m+\x1b[0m resource"));
    assert!(colored.contains("\x1b[31m# forces replacement\x1b[0m"));
    assert_eq!(strip_ansi(&colored), render_text(&plan, &TextOptions { color: false, ..Default::default() }));
}

#[test]
fn no_changes_is_one_line() {
    let plan = Plan::new(vec![beta()]);
    assert_eq!(
        render_text(&plan, &TextOptions { color: true, ..Default::default() }),
        "No changes. The tenants match the configuration.\n"
    );
    assert_eq!(
        render_text(&Plan::new(vec![]), &TextOptions::default()),
        "No changes. The tenants match the configuration.\n"
    );
    let md = render_markdown(&plan);
    assert!(md.starts_with("### matih plan: no changes\n"));
    assert!(!md.contains("<details>"));
}

#[test]
fn markdown_snapshot() {
    let out = render_markdown(&sample());
    assert_no_secrets(&out);
    check_snapshot("plan.md", &out);
}

#[test]
fn markdown_risks_name_data_loss_and_skip_first_provisioning() {
    let out = render_markdown(&sample());
    let risks = &out[out.find("#### Risks").unwrap()..out.find("<details>").unwrap()];
    assert!(risks.contains("- `acme`: `postgresql_schema.tenant` will be destroyed (drops the tenant's schema"));
    assert!(risks.contains("- `acme`: `kubernetes_namespace.tenant` must be replaced"));
    assert!(risks.contains("- `acme`: `dns_a_record.api` will be created"));
    // gamma is provisioned for the first time: its new network policy is no risk to review.
    assert!(!risks.contains("gamma"), "{risks}");
}

#[test]
fn json_snapshot() {
    let out = render_json(&sample());
    assert_no_secrets(&out);
    assert!(out.ends_with("}\n"));
    check_snapshot("plan.json", &out);
}

#[test]
fn json_marks_unknown_and_sensitive_paths() {
    let doc: serde_json::Value = serde_json::from_str(&render_json(&sample())).unwrap();
    assert_eq!(doc["format_version"], crate::plan::FORMAT_VERSION);
    assert_eq!(doc["summary"], serde_json::json!({ "adopt": 0, "add": 6, "change": 3, "replace": 1, "destroy": 1 }));
    let changes = |slug: &str| {
        let t = doc["tenants"].as_array().unwrap().iter().find(|t| t["slug"] == slug).unwrap();
        t["resource_changes"].as_array().unwrap().clone()
    };
    let find = |slug: &str, address: &str| changes(slug).into_iter().find(|c| c["address"] == address).unwrap();

    let record = find("acme", "dns_a_record.api");
    assert_eq!(record["after"]["ip"], UNKNOWN);
    assert_eq!(record["after_unknown"], serde_json::json!(["ip"]));

    let dashboard = find("gamma", "grafana_dashboard.overview");
    assert_eq!(dashboard["after"]["admin_password"], SENSITIVE);
    assert_eq!(dashboard["sensitive_paths"], serde_json::json!(["admin_password"]));
    assert_eq!(dashboard["after_unknown"], serde_json::json!(["admin_password", "created_at"]));

    let webhook = find("acme", "kubernetes_secret.webhook");
    assert_eq!(webhook["changes"][0]["before"], SENSITIVE);
    assert_eq!(webhook["changes"][0]["after"], SENSITIVE);

    // No-ops are listed for machines; the unchanged tenant too.
    assert_eq!(find("beta", "kubernetes_namespace.tenant")["action"], "no-op");
    assert_eq!(find("acme", "postgresql_schema.tenant")["after"], serde_json::Value::Null);
    assert_eq!(find("acme", "kubernetes_namespace.tenant")["phase_number"], 1);
}

#[test]
fn markdown_fits_one_comment_and_says_what_it_left_out() {
    // Copies of one tenant would be one group: shown one by one, they must be cut.
    let big = Plan::new((0..400).map(|_| acme()).chain([gamma()]).collect());
    let out = render_markdown_with(&big, None, false);
    assert!(out.len() <= 65_536, "{} bytes", out.len());
    assert!(out.contains("this comment was shortened to fit GitHub's limit of 65536 characters"));
    assert_eq!(out.matches("<details>").count(), out.matches("</details>").count());
    let fences = out.lines().filter(|l| l.starts_with("```")).count();
    assert_eq!(fences % 2, 0, "unbalanced code fences");
    assert!(out.starts_with("### matih plan: 1204 to add, 1200 to change, 800 to destroy.\n"));

    // A tiny limit still leaves a well-formed comment with the counts.
    let small = markdown::render_with_limit(&sample(), 2_500, None, false);
    assert!(small.len() <= 2_500, "{} bytes", small.len());
    assert!(small.contains("not shown"));
    assert_eq!(small.matches("<details>").count(), small.matches("</details>").count());
    assert_eq!(small.lines().filter(|l| l.starts_with("```")).count() % 2, 0);
}

#[test]
fn notes_go_under_the_resource_heading_in_text_markdown_and_json() {
    let mut g = ResourceGraph::new(meta("acme"));
    assert!(g.add(resource("postgresql_role.tenant", 2, Value::map([("password", secret(None))]), &[])));
    let s =
        state("acme", vec![("postgresql_role.tenant", recorded(2, Value::map([("password", secret(Some("pw")))])))]);
    let mut t = diff(&g, Some(&s), None);
    // What the diff gives a rotated role (see plan::diff's rotation tests).
    let c = &mut t.resource_changes[0];
    c.action = crate::plan::Action::Update;
    c.after = Some(attrs(Value::map([("password", secret(None))])));
    c.changes = vec![crate::plan::AttrChange {
        path: "password".into(),
        before: Some(secret(Some("pw"))),
        after: Some(secret(None)),
        forces_replacement: false,
    }];
    c.notes = vec!["password rotated: kubernetes_secret.database_credentials is missing".into()];
    let plan = Plan::new(vec![t]);
    let text = render_text(&plan, &TextOptions { color: false, ..Default::default() });
    assert!(
        text.contains(
            "  # postgresql_role.tenant will be updated in place\n  \
             # password rotated: kubernetes_secret.database_credentials is missing\n  \
             ~ resource \"postgresql_role\" \"tenant\" {\n      \
             ~ password = (sensitive value) -> (sensitive value)\n"
        ),
        "{text}"
    );
    let md = render_markdown(&plan);
    assert!(md.contains("# password rotated: kubernetes_secret.database_credentials is missing"), "{md}");
    assert!(
        md.contains(
            "**Credentials rotated**\n\n- `acme`: `postgresql_role.tenant` will be updated in place (a new password: \
             restart what uses the old one)\n"
        ),
        "{md}"
    );
    let doc: serde_json::Value = serde_json::from_str(&render_json(&plan)).unwrap();
    assert_eq!(
        doc["tenants"][0]["resource_changes"][0]["notes"][0],
        "password rotated: kubernetes_secret.database_credentials is missing"
    );
    assert_no_secrets(&text);
}

#[test]
fn a_releases_rendered_manifest_changes_follow_its_block_in_text_markdown_and_json() {
    let mut g = ResourceGraph::new(meta("acme"));
    assert!(g.add(resource("helm_release.web", 5, Value::map([("version", Value::str("0.2.0"))]), &[])));
    let s = state("acme", vec![("helm_release.web", recorded(5, Value::map([("version", Value::str("0.1.0"))])))]);
    let mut t = diff(&g, Some(&s), None);
    t.resource_changes[0].manifest_changes = vec![
        crate::plan::ManifestChange {
            object: "Deployment web".into(),
            change: "changed".into(),
            diff: Some("@@ -1,2 +1,2 @@\n spec:\n-  replicas: 2\n+  replicas: 3\n".into()),
        },
        crate::plan::ManifestChange { object: "Service web".into(), change: "added".into(), diff: None },
    ];
    let plan = Plan::new(vec![t]);
    let text = render_text(&plan, &TextOptions { color: false, ..Default::default() });
    assert!(
        text.contains(
            "    }\n    # rendered manifests (helm template against the release's manifest):\n      \
             # Deployment web: changed\n        @@ -1,2 +1,2 @@\n        spec:\n      -   replicas: 2\n      \
             +   replicas: 3\n      # Service web: added\n"
        ),
        "{text}"
    );
    let md = render_markdown(&plan);
    assert!(md.contains("\n-          replicas: 2\n+          replicas: 3\n       # Service web: added\n"), "{md}");
    let doc: serde_json::Value = serde_json::from_str(&render_json(&plan)).unwrap();
    let changes = &doc["tenants"][0]["resource_changes"][0]["manifest_changes"];
    assert_eq!(changes[1], serde_json::json!({"object": "Service web", "change": "added"}));
    assert_eq!(changes[0]["diff"], "@@ -1,2 +1,2 @@\n spec:\n-  replicas: 2\n+  replicas: 3\n");
}
