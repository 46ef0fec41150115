//! Review-comment tests: the risk section (schema drop, a migration that drops a table, network
//! policy, namespace labels, DNS, the ingress controller's LoadBalancer), unified diffs of
//! multi-line values, redaction, the size limit and determinism.

use super::*;
use crate::graph::ResourceGraph;
use crate::plan::diff;
use crate::plan::render::risk::dropping_statements;
use crate::plan::render::tests::{meta, recorded, resource};
use crate::state::{TenantState, TenantStatus};
use crate::value::{fingerprint, Secret, Value};

fn migration(script: &str, checksum: i64, sql: &str) -> Value {
    Value::map([("script", Value::str(script)), ("checksum", Value::Int(checksum)), ("sql", Value::str(sql))])
}

fn migrations(list: Vec<Value>) -> Value {
    Value::map([("schema", Value::str("tenant_acme")), ("migrations", Value::List(list))])
}

fn policy(from: &[&str]) -> Value {
    Value::map([(
        "spec",
        Value::map([
            ("podSelector", Value::map::<&str>([])),
            ("ingress", Value::list(from.iter().map(|ns| Value::map([("namespace", Value::str(*ns))])))),
        ]),
    )])
}

fn namespace(zone: &str) -> Value {
    Value::map([(
        "metadata",
        Value::map([
            ("name", Value::str("matih-acme")),
            (
                "labels",
                Value::map([("matih.ai/tenant", Value::str("acme")), ("matih.ai/network-zone", Value::str(zone))]),
            ),
        ]),
    )])
}

fn dashboard(title: &str) -> Value {
    let json = format!(
        "{{\n  \"title\": \"{title}\",\n  \"refresh\": \"30s\",\n  \"panels\": [\n    {{ \"id\": 1, \"type\": \"graph\" }},\n    {{ \"id\": 2, \"type\": \"stat\" }}\n  ]\n}}\n"
    );
    Value::map([("json", Value::str(json))])
}

fn webhook(clear: &str) -> Value {
    Value::map([(
        "data",
        Value::map([(
            "url",
            Value::Secret(Secret { source: "env:ACME_SLACK_WEBHOOK".into(), fingerprint: Some(fingerprint(clear)) }),
        )]),
    )])
}

const V1: &str = "CREATE TABLE events (id bigint);\nCREATE TABLE legacy_events (id bigint);\n";
const V3: &str = "-- Legacy events moved to the warehouse. DROP TABLE is on purpose.\n\
                  /* DROP SCHEMA tenant_acme would be worse */\n\
                  ALTER TABLE events DROP CONSTRAINT events_pk;\n\
                  INSERT INTO audit (note) VALUES ('DROP TABLE events; just a string');\n\
                  DROP TABLE legacy_events;\n\
                  ALTER TABLE events DROP old_payload;\n";

/// acme, provisioned, with one change of every risky sort.
fn acme() -> TenantPlan {
    let desired: Vec<(&str, u8, Value)> = vec![
        ("kubernetes_namespace.tenant", 1, namespace("restricted")),
        (
            "postgresql_migrations.tenant",
            2,
            migrations(vec![migration("V1__init.sql", 11, V1), migration("V3__drop_legacy.sql", 33, V3)]),
        ),
        ("kubernetes_network_policy.allow_ingress_controller", 4, policy(&["ingress-nginx", "monitoring"])),
        (
            "kubernetes_service.ingress_controller",
            6,
            Value::map([("type", Value::str("LoadBalancer")), ("port", Value::Int(443))]),
        ),
        ("dns_a_record.api", 7, Value::map([("name", Value::str("api")), ("ip", Value::str("20.85.1.2"))])),
        ("grafana_dashboard.overview", 9, dashboard("Tenant overview (v2)")),
        ("kubernetes_secret.alert_webhook", 9, webhook("https://hooks.slack.example/new")),
    ];
    let before: Vec<(&str, u8, Value)> = vec![
        ("kubernetes_namespace.tenant", 1, namespace("default")),
        ("postgresql_schema.tenant", 2, Value::map([("name", Value::str("tenant_acme"))])),
        ("postgresql_migrations.tenant", 2, migrations(vec![migration("V1__init.sql", 11, V1)])),
        ("kubernetes_network_policy.allow_ingress_controller", 4, policy(&["ingress-nginx"])),
        (
            "kubernetes_service.ingress_controller",
            6,
            Value::map([("type", Value::str("LoadBalancer")), ("port", Value::Int(80))]),
        ),
        ("dns_a_record.api", 7, Value::map([("name", Value::str("api")), ("ip", Value::str("20.85.1.1"))])),
        ("grafana_dashboard.overview", 9, dashboard("Tenant overview")),
        ("kubernetes_secret.alert_webhook", 9, webhook("https://hooks.slack.example/old")),
    ];
    let mut g = ResourceGraph::new(meta("acme"));
    for (addr, phase, v) in desired {
        let force_new: &[&str] = if addr.starts_with("kubernetes_service") { &["port"] } else { &[] };
        assert!(g.add(resource(addr, phase, v, force_new)));
    }
    assert!(g.connect().is_empty());
    let mut st = TenantState::new("acme", "550e8400-e29b-41d4-a716-446655440000");
    st.lineage = "0b7e6a52-5f3c-4c6e-9d0a-2f1f3c1d9e11".into();
    st.serial = 9;
    st.status = TenantStatus::Active;
    for (addr, phase, v) in before {
        st.resources.insert(addr.parse().unwrap(), recorded(phase, v));
    }
    diff(&g, Some(&st), Some("tenants/acme.hcl".into()))
}

/// A tenant provisioned for the first time: its creates are no risk.
fn fresh(slug: &str) -> TenantPlan {
    let mut g = ResourceGraph::new(meta(slug));
    for (addr, phase, v) in [
        ("kubernetes_network_policy.default_deny", 4, policy(&[])),
        ("dns_a_record.api", 7, Value::map([("name", Value::str("api")), ("ip", Value::str("20.85.9.9"))])),
        ("postgresql_migrations.tenant", 2, migrations(vec![migration("V3__drop_legacy.sql", 33, V3)])),
    ] {
        assert!(g.add(resource(addr, phase, v, &[])));
    }
    assert!(g.connect().is_empty());
    diff(&g, None, Some(format!("tenants/{slug}.hcl").into()))
}

fn check_snapshot(name: &str, actual: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/plan/render/testdata").join(name);
    if std::env::var_os("UPDATE_EXPECT").is_some() {
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

fn risks(md: &str) -> &str {
    &md[md.find("#### Risks").unwrap()..md.find("<details>").unwrap_or(md.len())]
}

#[test]
fn review_snapshot() {
    let plan = Plan::new(vec![acme(), fresh("globex")]);
    let md = render_markdown(&plan);
    for leak in ["hooks.slack.example", "sha256:"] {
        assert!(!md.contains(leak), "{leak} leaked:\n{md}");
    }
    assert_eq!(md, render_markdown_with(&plan, None, false), "deterministic");
    check_snapshot("review.md", &md);
}

#[test]
fn risks_name_data_loss_isolation_and_dns() {
    let md = render_markdown(&Plan::new(vec![acme(), fresh("globex")]));
    let r = risks(&md);
    // Order: the summary table, then the risks, then the details.
    assert!(md.find("| Tenant |").unwrap() < md.find("#### Risks").unwrap());
    let data_loss = &r[r.find("**Data loss**").unwrap()..r.find("**Network isolation").unwrap()];
    assert!(data_loss.contains("`postgresql_schema.tenant` will be destroyed (drops the tenant's schema"), "{r}");
    assert!(
        data_loss.contains("`V3__drop_legacy.sql`: `DROP TABLE legacy_events`")
            && data_loss.contains("`V3__drop_legacy.sql`: `ALTER TABLE events DROP old_payload`"),
        "{r}"
    );
    assert!(!data_loss.contains("CONSTRAINT") && !data_loss.contains("just a string"), "{r}");
    let isolation = &r[r.find("**Network isolation").unwrap()..r.find("**DNS and TLS**").unwrap()];
    assert!(isolation.contains("`kubernetes_network_policy.allow_ingress_controller` will be updated in place"), "{r}");
    assert!(isolation.contains("`kubernetes_namespace.tenant` will be updated in place (its labels change"), "{r}");
    let dns = &r[r.find("**DNS and TLS**").unwrap()..];
    assert!(dns.contains("`dns_a_record.api` will be updated in place"), "{r}");
    assert!(dns.contains("`kubernetes_service.ingress_controller` must be replaced (tenant traffic stops"), "{r}");
    assert!(!r.contains("globex"), "first provisioning is no risk:\n{r}");
}

#[test]
fn details_show_unified_diffs_of_multi_line_values() {
    let md = render_markdown(&Plan::new(vec![acme()]));
    let details = &md[md.find("<details>").unwrap()..];
    assert!(details.contains("@@ -1,5 +1,5 @@"), "{details}");
    assert!(details.contains("-              \"title\": \"Tenant overview\",\n"), "{details}");
    assert!(details.contains("+              \"title\": \"Tenant overview (v2)\",\n"), "{details}");
    assert!(details.contains("url = (sensitive value) -> (sensitive value)"), "{details}");
    let phases: Vec<usize> = ["Phase 1/10", "Phase 2/10", "Phase 4/10", "Phase 6/10", "Phase 7/10", "Phase 9/10"]
        .iter()
        .map(|p| details.find(p).unwrap_or_else(|| panic!("{p} missing")))
        .collect();
    assert!(phases.windows(2).all(|w| w[0] < w[1]), "grouped by phase in order");
}

#[test]
fn the_comment_fits_and_says_what_was_cut() {
    // 300 copies of one tenant would be one group: shown one by one, they must be cut.
    let plan = Plan::new((0..300).map(|_| acme()).collect());
    let md = render_markdown_with(&plan, None, false);
    assert!(md.len() <= 65_536, "{}", md.len());
    assert!(
        md.contains("this comment was shortened to fit GitHub's limit of 65536 characters"),
        "{}",
        &md[md.len() - 500..]
    );
    assert!(md.contains("more (comment size limit)"), "risks cut too");
    assert_eq!(md.matches("<details>").count(), md.matches("</details>").count());
    assert_eq!(md.lines().filter(|l| l.starts_with("```")).count() % 2, 0);
    assert_eq!(md, render_markdown_with(&plan, None, false), "deterministic");
}

#[test]
fn statements_that_drop_data() {
    let found = dropping_statements(V3);
    assert_eq!(found, ["DROP TABLE legacy_events", "ALTER TABLE events DROP old_payload"]);
    assert_eq!(dropping_statements("truncate audit_log;"), ["truncate audit_log"]);
    assert_eq!(dropping_statements("drop schema x cascade"), ["drop schema x cascade"]);
    assert_eq!(
        dropping_statements("ALTER TABLE t DROP COLUMN IF EXISTS c;"),
        ["ALTER TABLE t DROP COLUMN IF EXISTS c"]
    );
    for harmless in [
        "DROP VIEW IF EXISTS v; DROP INDEX i; DROP FUNCTION f();",
        "ALTER TABLE t ALTER COLUMN c DROP NOT NULL; ALTER TABLE t ALTER COLUMN c DROP DEFAULT;",
        "CREATE OR REPLACE VIEW dropped AS SELECT 'DROP TABLE x';",
        "-- DROP TABLE x\nSELECT 1;",
    ] {
        assert!(dropping_statements(harmless).is_empty(), "{harmless}");
    }
}
