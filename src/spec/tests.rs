//! Tests of the spec language: one per validation rule, each asserting the full rendered
//! diagnostics (`path:line:col: message`), plus the example files in `tenants/` and the platform
//! fixture.

use std::fs;
use std::path::{Path, PathBuf};

use super::*;
use crate::catalog::Catalog;
use crate::diag::SourceFile;

fn catalog() -> Catalog {
    Catalog::minimal(
        &["free", "professional", "enterprise"],
        &["eastus", "eastus2", "westus2", "westeurope", "northeurope", "southeastasia"],
        &[
            "query_engine",
            "ai_service",
            "catalog_service",
            "pipeline_service",
            "semantic_layer",
            "bi_service",
            "data_quality_service",
            "ml_service",
            "render_service",
        ],
    )
}

/// A valid tenant; tests replace one part of it. Value columns: id 8, tier 10, region 12,
/// admin_email 17.
const VALID: &str = r#"tenant "acme" {
  id = "550e8400-e29b-41d4-a716-446655440000"
  tier = "professional"
  region = "eastus"
  admin_email = "admin@acme.example"
}
"#;

/// `VALID` with `extra` added as the last lines of the tenant block (from line 6 on).
fn with(extra: &str) -> String {
    VALID.replace("\n}\n", &format!("\n{extra}\n}}\n"))
}

/// `VALID` with `from` replaced by `to` (which must occur).
fn replaced(from: &str, to: &str) -> String {
    assert!(VALID.contains(from), "{from:?} is not in the valid tenant");
    VALID.replacen(from, to, 1)
}

fn parse(text: &str) -> (Vec<TenantSpec>, Vec<String>) {
    let (specs, diags) = parse_tenants(&SourceFile::new("t.hcl", text), &catalog());
    (specs, diags.iter().map(ToString::to_string).collect())
}

/// Asserts the exact rendered diagnostics, and that no spec comes back when there are errors.
#[track_caller]
fn check(text: &str, expected: &[&str]) {
    let (specs, diags) = parse(text);
    assert_eq!(diags, expected, "for input:\n{text}");
    if !expected.is_empty() {
        assert!(specs.is_empty(), "a tenant with errors must not be returned");
    }
}

#[test]
fn a_valid_tenant_becomes_a_spec_with_locations() {
    let text = with(
        r#"  display_name = "Acme Corporation"
  services {
    ai_service {
      replicas   = 2
      enabled    = true
      image_tag  = "1.4.2"
      depends_on = ["catalog_service", "query_engine"]
    }
  }
  monitoring {
    notify_email             = ["ops@acme.example", "cto@acme.example"]
    notify_slack_webhook_env = "ACME_SLACK_WEBHOOK"
  }"#,
    );
    let (specs, diags) = parse(&text);
    assert_eq!(diags, Vec::<String>::new());
    let [spec] = specs.as_slice() else { panic!("one spec expected, got {specs:?}") };
    assert_eq!(spec.slug.value, "acme");
    assert_eq!(spec.slug.location.to_string(), "t.hcl:1:8");
    assert_eq!(spec.location.to_string(), "t.hcl:1:1");
    assert_eq!(spec.id.value, "550e8400-e29b-41d4-a716-446655440000");
    assert_eq!(spec.id.location.to_string(), "t.hcl:2:8");
    assert_eq!(spec.tier.value, "professional");
    assert_eq!(spec.region.value, "eastus");
    assert_eq!(spec.region.location.to_string(), "t.hcl:4:12");
    assert_eq!(spec.admin_email.value, "admin@acme.example");
    assert_eq!(spec.display_name.as_ref().map(|d| d.value.as_str()), Some("Acme Corporation"));

    let ai = &spec.services["ai_service"];
    assert_eq!(spec.services.len(), 1);
    assert_eq!(ai.replicas.as_ref().map(|r| r.value), Some(2));
    assert_eq!(ai.enabled.as_ref().map(|e| e.value), Some(true));
    assert_eq!(ai.image_tag.as_ref().map(|t| t.value.as_str()), Some("1.4.2"));
    assert_eq!(ai.location.as_ref().map(ToString::to_string).as_deref(), Some("t.hcl:8:5"));
    let deps: Vec<String> = ai.depends_on.iter().map(|d| format!("{} at {}", d.value, d.location)).collect();
    assert_eq!(deps, ["catalog_service at t.hcl:12:21", "query_engine at t.hcl:12:40"]);

    let emails: Vec<&str> = spec.monitoring.notify_email.iter().map(|e| e.value.as_str()).collect();
    assert_eq!(emails, ["ops@acme.example", "cto@acme.example"]);
    let env = spec.monitoring.notify_slack_webhook_env.as_ref().unwrap();
    assert_eq!((env.value.as_str(), env.location.to_string().as_str()), ("ACME_SLACK_WEBHOOK", "t.hcl:17:32"));
}

#[test]
fn protect_database_is_a_located_bool() {
    let (specs, diags) = parse(&with("  protect_database = true"));
    assert!(diags.is_empty(), "{diags:?}");
    assert_eq!(specs[0].database_protection().map(ToString::to_string).as_deref(), Some("t.hcl:6:22"));
    let (specs, _) = parse(&with("  protect_database = false"));
    assert_eq!(specs[0].database_protection(), None);
    check(&with("  protect_database = \"yes\""), &["t.hcl:6:22: protect_database must be a bool, found string"]);
}

#[test]
fn optional_parts_default_to_empty() {
    let (specs, diags) = parse(VALID);
    assert!(diags.is_empty(), "{diags:?}");
    assert_eq!(specs[0].display_name, None);
    assert_eq!(specs[0].database_protection(), None);
    assert!(specs[0].services.is_empty());
    assert_eq!(specs[0].monitoring, MonitoringSpec::default());
}

#[test]
fn a_file_without_tenants_is_a_warning() {
    let (specs, diags) = parse("# nothing here yet\n");
    assert!(specs.is_empty());
    assert_eq!(diags, ["t.hcl:1:1: warning: no tenant blocks in this file"]);
}

#[test]
fn syntax_errors_are_one_located_line() {
    check(
        "tenant \"acme\" {\n  id = \n}\n",
        &["t.hcl:2:8: syntax error: invalid expression; expected `\"`, `[`, `{`, `-`, `!`, `(`, `_`, `<`, letter or digit"],
    );
    check(
        "tenant \"acme\" {\n  tier = \"free\"\n",
        &["t.hcl:2:16: syntax error: invalid block body; expected `}`, newline or identifier"],
    );
}

#[test]
fn a_syntax_error_after_multibyte_characters_is_located_by_character() {
    // Found by the spec fuzz target: hcl-edit reports this one at a byte offset inside the last
    // "ҕ", and counted the line's bytes, not its characters, for the column.
    check("eҕ{eeҕ", &["t.hcl:1:6: syntax error: invalid attribute; expected `=`"]);
}

#[test]
fn unknown_top_level_block_suggests_tenant() {
    check(
        &VALID.replace("tenant \"acme\"", "tenants \"acme\""),
        &[r#"t.hcl:1:1: unknown block "tenants" (did you mean "tenant"?)"#],
    );
}

#[test]
fn top_level_attributes_are_refused() {
    let (specs, diags) = parse(&format!("slug = \"acme\"\n{VALID}"));
    assert_eq!(diags, [r#"t.hcl:1:1: unknown attribute "slug" (only blocks are allowed here: tenant)"#]);
    assert_eq!(specs.len(), 1, "the tenant block itself is clean (the file as a whole still has an error)");
}

#[test]
fn unknown_attribute_suggests_the_closest_name_and_does_not_also_report_it_missing() {
    check(&replaced("  tier =", "  teir ="), &[r#"t.hcl:3:3: unknown attribute "teir" (did you mean "tier"?)"#]);
}

#[test]
fn unknown_attribute_far_from_any_name_lists_the_known_ones() {
    check(
        &with("  colour = \"red\""),
        &[
            r#"t.hcl:6:3: unknown attribute "colour" (expected one of id, tier, region, admin_email, display_name, protect_database)"#,
        ],
    );
}

#[test]
fn unknown_block_inside_tenant() {
    check(&with("  monitor {\n  }"), &[r#"t.hcl:6:3: unknown block "monitor" (did you mean "monitoring"?)"#]);
}

#[test]
fn attribute_written_as_block_and_block_written_as_attribute() {
    check(&with("  services = {}"), &["t.hcl:6:3: services must be a block (services { … }), not an attribute"]);
    check(
        &with("  display_name {\n  }"),
        &["t.hcl:6:3: display_name must be an attribute (display_name = …), not a block"],
    );
}

#[test]
fn unknown_attributes_inside_services_and_monitoring() {
    check(
        &with("  services {\n    replicas = 2\n  }"),
        &["t.hcl:7:5: unknown attribute \"replicas\" (only blocks are allowed here: query_engine, ai_service, \
           catalog_service, pipeline_service, semantic_layer, bi_service, data_quality_service, ml_service, \
           render_service)"],
    );
    check(
        &with("  services {\n    ai_service {\n      replica = 2\n    }\n  }"),
        &[r#"t.hcl:8:7: unknown attribute "replica" (did you mean "replicas"?)"#],
    );
    check(
        &with("  monitoring {\n    notify_emails = [\"ops@acme.example\"]\n  }"),
        &[r#"t.hcl:7:5: unknown attribute "notify_emails" (did you mean "notify_email"?)"#],
    );
}

#[test]
fn a_literal_webhook_is_refused_without_echoing_it() {
    let url = "https://hooks.slack.com/services/T0000/B0000/XXXXXXXX";
    let text = with(&format!("  monitoring {{\n    notify_slack_webhook = \"{url}\"\n  }}"));
    check(
        &text,
        &["t.hcl:7:5: secrets come from the environment, never from the file: set notify_slack_webhook_env to \
           the name of an environment variable that holds the webhook URL"],
    );
    let (_, diags) = parse(&text);
    assert!(diags.iter().all(|d| !d.contains("hooks.slack.com")), "the secret leaked: {diags:?}");
}

#[test]
fn a_webhook_url_in_the_env_attribute_is_refused_without_echoing_it() {
    let text =
        with("  monitoring {\n    notify_slack_webhook_env = \"https://hooks.slack.com/services/T0/B0/XX\"\n  }");
    check(
        &text,
        &["t.hcl:7:32: notify_slack_webhook_env must be the name of an environment variable ([A-Z_][A-Z0-9_]*, \
           like ACME_SLACK_WEBHOOK); the secret itself goes in that variable, never in the file"],
    );
}

#[test]
fn wrong_types_name_what_was_expected_and_found() {
    check(&replaced("\"professional\"", "3"), &["t.hcl:3:10: tier must be a string, found number"]);
    check(&replaced("\"eastus\"", "[\"eastus\"]"), &["t.hcl:4:12: region must be a string, found list"]);
    check(&replaced("\"professional\"", "null"), &["t.hcl:3:10: tier must be a string, found null"]);
    check(
        &with("  services {\n    ml_service {\n      enabled = \"no\"\n      replicas = 1.5\n    }\n  }"),
        &["t.hcl:8:17: enabled must be a bool, found string", "t.hcl:9:18: replicas must be a whole number, found 1.5"],
    );
    check(
        &with("  monitoring {\n    notify_email = \"ops@acme.example\"\n  }"),
        &["t.hcl:7:20: notify_email must be a list of strings, found string"],
    );
    check(
        &with("  monitoring {\n    notify_email = [\"ops@acme.example\", 3]\n  }"),
        &["t.hcl:7:41: notify_email must be a list of strings, found number"],
    );
}

#[test]
fn missing_required_attributes_are_reported_at_the_block() {
    check(
        &replaced("  admin_email = \"admin@acme.example\"\n", ""),
        &[r#"t.hcl:1:1: tenant block is missing required attribute "admin_email""#],
    );
    check(
        "tenant \"acme\" {\n}\n",
        &[
            r#"t.hcl:1:1: tenant block is missing required attribute "id""#,
            r#"t.hcl:1:1: tenant block is missing required attribute "tier""#,
            r#"t.hcl:1:1: tenant block is missing required attribute "region""#,
            r#"t.hcl:1:1: tenant block is missing required attribute "admin_email""#,
        ],
    );
}

#[test]
fn duplicate_attributes_point_at_the_first() {
    check(&with("  tier = \"free\""), &["t.hcl:6:3: duplicate attribute \"tier\""]);
    check(
        &with("  services {\n    ai_service {\n      replicas = 1\n      replicas = 2\n    }\n  }"),
        &["t.hcl:9:7: duplicate attribute \"replicas\""],
    );
}

#[test]
fn duplicate_blocks_point_at_the_first() {
    check(
        &with("  monitoring {\n  }\n  monitoring {\n  }"),
        &["t.hcl:8:3: duplicate block \"monitoring\"\n    first written at t.hcl:6:3"],
    );
    check(
        &with("  services {\n    ai_service {\n    }\n    ai_service {\n      replicas = 1\n    }\n  }"),
        &["t.hcl:9:5: duplicate block \"ai_service\"\n    first written at t.hcl:7:5"],
    );
}

#[test]
fn a_tenant_needs_exactly_one_label() {
    check(
        &VALID.replace("tenant \"acme\"", "tenant"),
        &["t.hcl:1:1: tenant block needs exactly one label, the tenant slug (tenant \"…\" { … }), found none"],
    );
    check(
        &VALID.replace("tenant \"acme\"", "tenant \"acme\" \"prod\""),
        &["t.hcl:1:15: tenant block needs exactly one label, the tenant slug, found 2"],
    );
    check(&with("  monitoring \"x\" {\n  }"), &["t.hcl:6:14: monitoring block takes no labels"]);
}

#[test]
fn only_literal_values_are_allowed() {
    const MSG: &str = "only literal values are allowed here";
    check(&replaced("\"eastus\"", "var.region"), &[&format!("t.hcl:4:12: {MSG}")]);
    check(&replaced("\"eastus\"", "region"), &[&format!("t.hcl:4:12: {MSG}")]);
    check(&replaced("\"professional\"", "lower(\"PRO\")"), &[&format!("t.hcl:3:10: {MSG}")]);
    check(&replaced("\"eastus\"", "\"east${\"us\"}\""), &[&format!("t.hcl:4:17: {MSG}")]);
    check(&replaced("\"eastus\"", "\"%{if true}eastus%{endif}\""), &[&format!("t.hcl:4:13: {MSG}")]);
    check(&replaced("\"professional\"", "true ? \"free\" : \"enterprise\""), &[&format!("t.hcl:3:10: {MSG}")]);
    check(&replaced("\"professional\"", "(\"free\")"), &[&format!("t.hcl:3:10: {MSG}")]);
    check(
        &with("  services {\n    ai_service {\n      replicas = 1 + 1\n    }\n  }"),
        &[&format!("t.hcl:8:18: {MSG}")],
    );
    check(
        &with("  monitoring {\n    notify_email = [\"ops@acme.example\", local.cto]\n  }"),
        &[&format!("t.hcl:7:41: {MSG}")],
    );
    check(
        &replaced("\"professional\"", "<<EOT\nfree\nEOT"),
        &["t.hcl:3:10: heredoc strings are not allowed here; write a quoted string"],
    );
}

#[test]
fn escaped_template_sequences_are_plain_text() {
    let (specs, diags) = parse(&with("  display_name = \"Acme $${not interpolated}\""));
    assert!(diags.is_empty(), "{diags:?}");
    assert_eq!(specs[0].display_name.as_ref().unwrap().value, "Acme ${not interpolated}");
}

#[test]
fn slugs_must_be_dns_labels() {
    check(
        &VALID.replace("\"acme\"", "\"Acme_Corp\""),
        &["t.hcl:1:8: invalid tenant slug \"Acme_Corp\": must be a DNS-1123 label (lowercase letters, digits \
           and '-', starting with a letter and ending with a letter or digit)"],
    );
    check(
        &VALID.replace("\"acme\"", "\"acme-\""),
        &["t.hcl:1:8: invalid tenant slug \"acme-\": must be a DNS-1123 label (lowercase letters, digits \
           and '-', starting with a letter and ending with a letter or digit)"],
    );
    check(&VALID.replace("\"acme\"", "\"\""), &["t.hcl:1:8: tenant slug must not be empty"]);
}

#[test]
fn slugs_must_leave_the_namespace_within_63_characters() {
    let ok = "a".repeat(52);
    let (specs, diags) = parse(&VALID.replace("\"acme\"", &format!("\"{ok}\"")));
    assert!(diags.is_empty(), "{diags:?}");
    assert_eq!(specs[0].slug.value.len(), MAX_SLUG);

    let long = "a".repeat(53);
    check(
        &VALID.replace("\"acme\"", &format!("\"{long}\"")),
        &[&format!(
            "t.hcl:1:8: tenant slug \"{long}\" is too long (53 characters): namespace \"matih-{long}-edge\" must \
             be at most 63 characters, so a slug has at most 52"
        )],
    );
    check(
        &VALID.replace("\"acme\"", "\"acme-edge\""),
        &["t.hcl:1:8: tenant slug \"acme-edge\" must not end in \"-edge\": namespace \"matih-acme-edge\" is the \
           edge namespace of tenant \"acme\""],
    );
}

#[test]
fn unknown_tier_lists_the_catalog_tiers() {
    // `Catalog::tiers` is a BTreeMap, so the catalog's order is alphabetical.
    check(
        &replaced("\"professional\"", "\"gold\""),
        &["t.hcl:3:10: unknown tier \"gold\" (expected enterprise, free, professional)"],
    );
}

#[test]
fn unknown_region_lists_the_catalog_regions() {
    check(
        &replaced("\"eastus\"", "\"mars-1\""),
        &["t.hcl:4:12: unknown region \"mars-1\" (expected eastus, eastus2, westus2, westeurope, northeurope, \
           southeastasia)"],
    );
}

#[test]
fn ids_must_be_canonical_uuids_and_are_lowercased() {
    check(
        &replaced("550e8400-e29b-41d4-a716-446655440000", "acme-1"),
        &["t.hcl:2:8: id must be a UUID in canonical form (8-4-4-4-12 hexadecimal digits, like \
           550e8400-e29b-41d4-a716-446655440000), found \"acme-1\""],
    );
    check(
        &replaced("550e8400-e29b-41d4-a716-446655440000", "550e8400e29b41d4a716446655440000"),
        &["t.hcl:2:8: id must be a UUID in canonical form (8-4-4-4-12 hexadecimal digits, like \
           550e8400-e29b-41d4-a716-446655440000), found \"550e8400e29b41d4a716446655440000\""],
    );
    check(
        &replaced("550e8400-e29b-41d4-a716-446655440000", "00000000-0000-0000-0000-000000000000"),
        &["t.hcl:2:8: id must not be the nil UUID"],
    );
    let (specs, diags) =
        parse(&replaced("550e8400-e29b-41d4-a716-446655440000", "550E8400-E29B-41D4-A716-446655440000"));
    assert!(diags.is_empty(), "{diags:?}");
    assert_eq!(specs[0].id.value, "550e8400-e29b-41d4-a716-446655440000");
}

#[test]
fn emails_are_checked() {
    check(
        &replaced("admin@acme.example", "admin@acme"),
        &["t.hcl:5:17: admin_email \"admin@acme\" is not an e-mail address (expected name@domain.example)"],
    );
    check(
        &with("  monitoring {\n    notify_email = [\"ops@acme.example\", \"oncall acme.example\"]\n  }"),
        &["t.hcl:7:41: notify_email \"oncall acme.example\" is not an e-mail address (expected name@domain.example)"],
    );
}

#[test]
fn webhook_env_must_be_an_environment_variable_name() {
    check(
        &with("  monitoring {\n    notify_slack_webhook_env = \"acme-slack\"\n  }"),
        &["t.hcl:7:32: notify_slack_webhook_env must be the name of an environment variable ([A-Z_][A-Z0-9_]*, \
           like ACME_SLACK_WEBHOOK); the secret itself goes in that variable, never in the file"],
    );
}

#[test]
fn service_overrides_must_name_catalog_services() {
    check(
        &with("  services {\n    ai_servce {\n      replicas = 2\n    }\n  }"),
        &[r#"t.hcl:7:5: unknown service "ai_servce" (did you mean "ai_service"?)"#],
    );
    check(
        &with("  services {\n    kafka {\n    }\n  }"),
        &["t.hcl:7:5: unknown service \"kafka\" (expected one of query_engine, ai_service, catalog_service, \
           pipeline_service, semantic_layer, bi_service, data_quality_service, ml_service, render_service)"],
    );
}

#[test]
fn depends_on_must_name_catalog_services_once() {
    check(
        &with("  services {\n    bi_service {\n      depends_on = [\"semantic_layr\", \"query_engine\", \"query_engine\"]\n    }\n  }"),
        &[
            r#"t.hcl:8:21: unknown service "semantic_layr" (did you mean "semantic_layer"?)"#,
            r#"t.hcl:8:54: "query_engine" is listed twice in depends_on"#,
        ],
    );
}

#[test]
fn replicas_must_be_in_range() {
    check(
        &with("  services {\n    ai_service {\n      replicas = 51\n    }\n  }"),
        &["t.hcl:8:18: replicas must be between 0 and 50, found 51"],
    );
    check(
        &with("  services {\n    ai_service {\n      replicas = -1\n    }\n  }"),
        &["t.hcl:8:18: replicas must be between 0 and 50, found -1"],
    );
    let (specs, diags) = parse(&with("  services {\n    ml_service {\n      replicas = 0\n    }\n  }"));
    assert!(diags.is_empty(), "{diags:?}");
    assert_eq!(specs[0].services["ml_service"].replicas.as_ref().map(|r| r.value), Some(0));
}

#[test]
fn image_tags_are_checked() {
    check(
        &with("  services {\n    ai_service {\n      image_tag = \"v1 beta\"\n    }\n  }"),
        &["t.hcl:8:19: image_tag \"v1 beta\" is not an image tag (letters, digits, '_', '.' and '-', at most 128, \
           not starting with '.' or '-')"],
    );
}

#[test]
fn display_name_must_not_be_blank() {
    check(&with("  display_name = \"  \""), &["t.hcl:6:18: display_name must not be empty"]);
}

#[test]
fn every_problem_is_reported_sorted_by_position() {
    let text = r#"tenant "Acme" {
  id = "nope"
  tier = "gold"
  region = var.region
  admin_email = "admin"
  services {
    ai_servce {
      replicas = 99
    }
  }
}
"#;
    check(
        text,
        &[
            "t.hcl:1:8: invalid tenant slug \"Acme\": must be a DNS-1123 label (lowercase letters, digits and '-', \
             starting with a letter and ending with a letter or digit)",
            "t.hcl:2:8: id must be a UUID in canonical form (8-4-4-4-12 hexadecimal digits, like \
             550e8400-e29b-41d4-a716-446655440000), found \"nope\"",
            "t.hcl:3:10: unknown tier \"gold\" (expected enterprise, free, professional)",
            "t.hcl:4:12: only literal values are allowed here",
            "t.hcl:5:17: admin_email \"admin\" is not an e-mail address (expected name@domain.example)",
            "t.hcl:7:5: unknown service \"ai_servce\" (did you mean \"ai_service\"?)",
        ],
    );
}

#[test]
fn only_clean_tenants_are_returned() {
    let text = format!(
        "{VALID}\n{}",
        VALID.replace("acme", "globex").replace("professional", "gold").replace("550e8400", "650e8400")
    );
    let (specs, diags) = parse(&text);
    assert_eq!(diags, ["t.hcl:10:10: unknown tier \"gold\" (expected enterprise, free, professional)"]);
    let slugs: Vec<&str> = specs.iter().map(|s| s.slug.value.as_str()).collect();
    assert_eq!(slugs, ["acme"]);
}

#[test]
fn duplicate_slug_in_one_file_points_at_the_second() {
    let text = format!("{VALID}\n{}", VALID.replace("550e8400", "650e8400"));
    let (specs, diags) = parse(&text);
    assert_eq!(diags, ["t.hcl:8:8: duplicate tenant slug \"acme\"\n    tenant \"acme\" is first defined at t.hcl:1:8"]);
    assert_eq!(specs.len(), 1);
    assert_eq!(specs[0].id.value, "550e8400-e29b-41d4-a716-446655440000");
}

/// A temporary directory with the given files.
fn dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

fn load(paths: &[PathBuf]) -> (Vec<String>, Vec<String>) {
    let (specs, diags) = load_tenants(paths, &catalog());
    (specs.iter().map(|s| s.slug.value.clone()).collect(), diags.iter().map(ToString::to_string).collect())
}

fn globex() -> String {
    VALID
        .replace("acme", "globex")
        .replace("550e8400-e29b-41d4-a716-446655440000", "7c9e6679-7425-40de-944b-e07fc1f90ae7")
}

#[test]
fn directories_expand_to_their_hcl_files_in_name_order_without_the_platform_file() {
    let dir = dir_with(&[
        ("b-globex.hcl", &globex()),
        ("a-acme.hcl", VALID),
        ("matih.hcl", "platform {\n}\n"),
        ("notes.txt", "not a tenant"),
    ]);
    let (slugs, diags) = load(&[dir.path().to_path_buf()]);
    assert_eq!(diags, Vec::<String>::new());
    assert_eq!(slugs, ["acme", "globex"]);
}

#[test]
fn duplicate_id_across_files_points_at_the_second_and_names_the_first() {
    let clash = VALID.replace("\"acme\"", "\"acme2\"").replace("550e8400-e29b-41d4", "550E8400-E29B-41D4");
    let dir = dir_with(&[("a.hcl", VALID), ("b.hcl", &clash)]);
    let (slugs, diags) = load(&[dir.path().to_path_buf()]);
    let a = dir.path().join("a.hcl");
    let b = dir.path().join("b.hcl");
    assert_eq!(
        diags,
        [format!(
            "{}:2:8: duplicate tenant id \"550e8400-e29b-41d4-a716-446655440000\"\n    tenant \"acme\" already has this \
             id, at {}:2:8",
            b.display(),
            a.display()
        )]
    );
    assert_eq!(slugs, ["acme"]);
}

#[test]
fn duplicate_slug_across_files_points_at_the_second() {
    let clash = VALID.replace("550e8400", "650e8400");
    let dir = dir_with(&[("a.hcl", VALID), ("b.hcl", &clash)]);
    let (slugs, diags) = load(&[dir.path().join("a.hcl"), dir.path().join("b.hcl")]);
    assert_eq!(
        diags,
        [format!(
            "{}:1:8: duplicate tenant slug \"acme\"\n    tenant \"acme\" is first defined at {}:1:8",
            dir.path().join("b.hcl").display(),
            dir.path().join("a.hcl").display()
        )]
    );
    assert_eq!(slugs, ["acme"]);
}

#[test]
fn a_file_named_twice_is_read_once() {
    let dir = dir_with(&[("acme.hcl", VALID)]);
    let (slugs, diags) = load(&[dir.path().to_path_buf(), dir.path().join("acme.hcl")]);
    assert_eq!(diags, Vec::<String>::new());
    assert_eq!(slugs, ["acme"]);
}

#[test]
fn unreadable_paths_and_empty_directories_are_diagnostics() {
    let dir = dir_with(&[("matih.hcl", "platform {\n}\n")]);
    let missing = dir.path().join("missing.hcl");
    let (slugs, diags) = load(&[dir.path().to_path_buf(), missing.clone()]);
    assert!(slugs.is_empty());
    assert_eq!(
        diags,
        [
            format!("error: no tenant files (*.hcl, other than matih.hcl) in directory {}", dir.path().display()),
            format!("error: cannot read {}: No such file or directory (os error 2)", missing.display()),
        ]
    );
}

#[test]
fn the_platform_file_named_explicitly_is_skipped_with_a_warning() {
    let dir = dir_with(&[("matih.hcl", "platform {\n}\n"), ("acme.hcl", VALID)]);
    let (slugs, diags) = load(&[dir.path().join("acme.hcl"), dir.path().join("matih.hcl")]);
    assert_eq!(slugs, ["acme"]);
    assert_eq!(
        diags,
        [format!(
            "warning: skipping {}: matih.hcl is the platform file, not a tenant file",
            dir.path().join("matih.hcl").display()
        )]
    );
}

#[test]
fn diagnostics_across_files_are_sorted_by_file_then_position() {
    let dir =
        dir_with(&[("b.hcl", &globex().replace("eastus", "moon")), ("a.hcl", &VALID.replace("professional", "gold"))]);
    let (_, diags) = load(&[dir.path().to_path_buf()]);
    assert_eq!(
        diags,
        [
            format!(
                "{}:3:10: unknown tier \"gold\" (expected enterprise, free, professional)",
                dir.path().join("a.hcl").display()
            ),
            format!(
                "{}:4:12: unknown region \"moon\" (expected eastus, eastus2, westus2, westeurope, northeurope, \
                 southeastasia)",
                dir.path().join("b.hcl").display()
            ),
        ]
    );
}

fn repo_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

#[test]
fn the_example_tenants_parse_without_diagnostics() {
    let (specs, diags) = load_tenants(&[repo_path("tenants")], &catalog());
    let rendered: Vec<String> = diags.iter().map(ToString::to_string).collect();
    assert_eq!(rendered, Vec::<String>::new());
    let summary: Vec<(&str, &str, &str)> =
        specs.iter().map(|s| (s.slug.value.as_str(), s.tier.value.as_str(), s.region.value.as_str())).collect();
    assert_eq!(
        summary,
        [("acme", "professional", "eastus"), ("globex", "free", "westeurope"), ("initech", "enterprise", "westus2")]
    );
}

#[test]
fn the_acme_example_carries_the_seed_values() {
    let (specs, diags) = load_tenants(&[repo_path("tenants/acme.hcl")], &catalog());
    assert!(diags.is_empty(), "{diags:?}");
    let acme = &specs[0];
    assert_eq!(acme.slug.value, "acme");
    assert_eq!(acme.id.value, "550e8400-e29b-41d4-a716-446655440000");
    assert_eq!(acme.tier.value, "professional");
    assert_eq!(acme.region.value, "eastus");
    assert_eq!(acme.admin_email.value, "admin@acme.example");
    assert_eq!(acme.services["ai_service"].replicas.as_ref().map(|r| r.value), Some(2));
    assert_eq!(acme.monitoring.notify_email.iter().map(|e| e.value.as_str()).collect::<Vec<_>>(), ["ops@acme.example"]);
    assert_eq!(acme.monitoring.notify_slack_webhook_env.as_ref().map(|e| e.value.as_str()), Some("ACME_SLACK_WEBHOOK"));
}

// The platform file.

fn platform(text: &str) -> (PlatformConfig, Vec<String>) {
    let (config, diags) = parse_platform(&SourceFile::new("matih.hcl", text));
    (config, diags.iter().map(ToString::to_string).collect())
}

#[test]
fn the_platform_fixture_sets_every_field() {
    let (config, diags) = load_platform(&repo_path("tests/fixtures/platform/matih.hcl"));
    assert!(diags.is_empty(), "{diags:?}");
    let expected = PlatformConfig {
        parent_zone: "matih.ai".into(),
        postgres_host: "pg.internal".into(),
        postgres_port: 5432,
        postgres_admin_url_env: "MATIH_POSTGRES_ADMIN_URL".into(),
        postgres_connect_timeout_ms: 10_000,
        provisioned_by: "admin@matih.ai".into(),
        image_registry: "matih.azurecr.io".into(),
        image_tag: "1.4.2".into(),
        image_digests: [(
            "matih.azurecr.io/ai-service".to_string(),
            "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef".to_string(),
        )]
        .into(),
        cluster_issuer: "letsencrypt-prod-dns01".into(),
        control_plane_namespace: "matih-system".into(),
        database_cidrs: vec!["10.20.0.5/32".into(), "fd00:20::5/128".into()],
        api_server_cidrs: vec!["10.0.0.1/32".into()],
        kubernetes: None,
        dns: None,
        notify: Default::default(),
        state: Default::default(),
        delivery: crate::spec::Delivery::Helm,
        helm: crate::spec::HelmPlatform {
            binary: Some("/usr/local/bin/helm".into()),
            chart_repository: "https://charts.matih.ai/matih".into(),
            timeout_ms: 300_000,
            plain_http: false,
        },
        observability: crate::spec::ObservabilityPlatform {
            otlp_ca: Some(fs::read_to_string(repo_path("tests/fixtures/platform/tempo-ca.pem")).unwrap()),
            otlp_insecure: false,
        },
        source: config.source.clone(),
    };
    assert_eq!(config, expected);
    assert_eq!(config.source.unwrap().line, 1);
}

#[test]
fn the_collectors_export_to_tempo_is_tls_unless_the_platform_file_opts_out() {
    // Nothing written: TLS against the system roots, no warning.
    let (config, diags) = platform("observability {\n}\n");
    assert!(diags.is_empty(), "{diags:?}");
    assert_eq!(config.observability, crate::spec::ObservabilityPlatform::default());
    // The opt-out is kept and warned about at its value, each time the file is read.
    let (config, diags) = platform("observability {\n  otlp_insecure = true\n}\n");
    assert!(config.observability.otlp_insecure);
    assert_eq!(diags.len(), 1);
    assert!(
        diags[0].starts_with("matih.hcl:2:19: warning: otlp_insecure = true: each tenant's OpenTelemetry collector sends its credentials to Tempo in clear text"),
        "{diags:?}"
    );
    let (config, diags) = platform("observability {\n  otlp_insecure = false\n}\n");
    assert!(diags.is_empty() && !config.observability.otlp_insecure, "{diags:?}");
    let (_, diags) = platform("observability {\n  otlp_insecure = \"yes\"\n}\n");
    assert_eq!(diags, ["matih.hcl:2:19: otlp_insecure must be a bool, found string"]);
}

#[test]
fn the_otlp_ca_file_is_read_relative_to_the_platform_file_and_bad_ones_are_located() {
    let pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    let dir = dir_with(&[
        ("ca.pem", pem),
        ("notes.txt", "not a certificate\n"),
        ("binary.der", "\u{0}\u{1}"),
        ("with-key.pem", "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n-----BEGIN PRIVATE KEY-----\nx\n-----END PRIVATE KEY-----\n"),
    ]);
    fs::create_dir(dir.path().join("a-directory")).unwrap();
    let file = dir.path().join("matih.hcl");
    let read = |text: &str| {
        fs::write(&file, text).unwrap();
        let (config, diags) = load_platform(&file);
        (config, diags.iter().map(ToString::to_string).collect::<Vec<_>>())
    };
    let (config, diags) = read("observability {\n  otlp_ca_file = \"ca.pem\"\n}\n");
    assert!(diags.is_empty(), "{diags:?}");
    assert_eq!(config.observability.otlp_ca.as_deref(), Some(pem));
    let absolute = dir.path().join("ca.pem");
    let (config, diags) =
        read(&format!("observability {{\n  otlp_ca_file = {:?}\n}}\n", absolute.display().to_string()));
    assert!(diags.is_empty(), "{diags:?}");
    assert_eq!(config.observability.otlp_ca.as_deref(), Some(pem));
    let shown = |name: &str| dir.path().join(name).display().to_string();
    let f = file.display();
    for (name, message) in [
        ("missing.pem", format!("otlp_ca_file {} does not exist", shown("missing.pem"))),
        ("notes.txt", format!("otlp_ca_file {} is not a PEM file of certificates (no -----BEGIN CERTIFICATE-----)", shown("notes.txt"))),
        ("binary.der", format!("otlp_ca_file {} is not a PEM file of certificates (no -----BEGIN CERTIFICATE-----)", shown("binary.der"))),
        ("with-key.pem", format!("otlp_ca_file {} holds a private key, which would be copied into every tenant's namespace: give the CA's certificates only", shown("with-key.pem"))),
    ] {
        let (config, diags) = read(&format!("observability {{\n  otlp_ca_file = {name:?}\n}}\n"));
        assert_eq!(diags, [format!("{f}:2:18: {message}")]);
        assert_eq!(config.observability.otlp_ca, None);
    }
    let (_, diags) = read("observability {\n  otlp_ca_file = \"a-directory\"\n}\n");
    assert_eq!(diags.len(), 1);
    assert!(
        diags[0].starts_with(&format!("{f}:2:18: cannot read otlp_ca_file {}: ", shown("a-directory"))),
        "{diags:?}"
    );
    let (_, diags) = read("observability {\n  otlp_ca_file = \" \"\n}\n");
    assert_eq!(diags, [format!("{f}:2:18: otlp_ca_file must not be empty")]);
    // A CA with TLS turned off is a contradiction, located at the opt-out (and not read).
    let (config, diags) = read("observability {\n  otlp_ca_file  = \"missing.pem\"\n  otlp_insecure = true\n}\n");
    assert_eq!(
        diags,
        [format!("{f}:3:19: otlp_insecure = true turns TLS off, so the CA of otlp_ca_file would not be used: remove one of them")]
    );
    assert_eq!(config.observability.otlp_ca, None);
}

#[test]
fn the_platform_file_picks_helm_delivery_and_where_helm_and_its_charts_are() {
    let (config, diags) = platform(
        "services {\n  delivery = \"helm\"\n}\nhelm {\n  binary = \"/opt/helm\"\n  chart_repository = \"https://charts.example/matih/\"\n  timeout_ms = 5000\n}\n",
    );
    assert!(diags.is_empty(), "{diags:?}");
    assert_eq!(config.delivery, crate::spec::Delivery::Helm);
    assert_eq!(
        config.helm,
        crate::spec::HelmPlatform {
            binary: Some("/opt/helm".into()),
            chart_repository: "https://charts.example/matih".into(),
            timeout_ms: 5000,
            plain_http: false,
        }
    );
    let (config, diags) =
        platform("helm {\n  chart_repository = \"oci://127.0.0.1:5000/charts/\"\n  registry_transport = \"http\"\n}\n");
    assert!(diags.is_empty(), "{diags:?}");
    assert_eq!((config.helm.chart_repository.as_str(), config.helm.plain_http), ("oci://127.0.0.1:5000/charts", true));
    assert_eq!(PlatformConfig::default().delivery, crate::spec::Delivery::Manifests, "manifests stay the default");
    let (_, diags) =
        platform("services {\n  delivery = \"kustomize\"\n}\nhelm {\n  chart_repository = \"s3://x\"\n  registry_transport = \"tls\"\n}\n");
    assert_eq!(
        diags,
        [
            "matih.hcl:2:14: delivery must be one of manifests, helm, found \"kustomize\"",
            "matih.hcl:5:22: chart_repository must be a directory, an http:// or https:// chart repository or an oci:// registry, found \"s3://x\"",
            "matih.hcl:6:24: registry_transport must be one of https, http, found \"tls\"",
        ]
    );
}

#[test]
fn missing_platform_fields_keep_their_defaults() {
    let (config, diags) = platform("dns {\n  parent_zone = \"Example.COM\"\n}\npostgres {\n  port = 6432\n}\n");
    assert!(diags.is_empty(), "{diags:?}");
    let expected = PlatformConfig {
        parent_zone: "example.com".into(),
        postgres_port: 6432,
        source: config.source.clone(),
        ..PlatformConfig::default()
    };
    assert_eq!(config, expected);
    let (empty, diags) = platform("");
    assert!(diags.is_empty());
    assert_eq!(PlatformConfig { source: None, ..empty }, PlatformConfig::default());
}

#[test]
fn platform_unknown_blocks_and_attributes() {
    let (_, diags) = platform("dsn {\n}\nimages {\n  registy = \"r.io\"\n}\nkubernete {\n}\n");
    assert_eq!(
        diags,
        [
            r#"matih.hcl:1:1: unknown block "dsn" (did you mean "dns"?)"#,
            r#"matih.hcl:4:3: unknown attribute "registy" (did you mean "registry"?)"#,
            r#"matih.hcl:6:1: unknown block "kubernete" (did you mean "kubernetes"?)"#,
        ]
    );
}

#[test]
fn platform_kubernetes_block() {
    let (config, diags) = platform("kubernetes {\n}\n");
    assert!(diags.is_empty(), "{diags:?}");
    assert_eq!(config.kubernetes, Some(crate::spec::KubernetesPlatform::default()), "an empty block means defaults");
    let (config, diags) = platform(
        "kubernetes {\n  api_url = \"http://127.0.0.1:6443\"\n  load_balancer_ip_attempts = 3\n  \
         load_balancer_ip_interval_ms = 50\n}\n",
    );
    assert!(diags.is_empty(), "{diags:?}");
    let k = config.kubernetes.unwrap();
    assert_eq!(k.api_url.as_deref(), Some("http://127.0.0.1:6443"));
    assert_eq!((k.load_balancer_ip_attempts, k.load_balancer_ip_interval_ms), (3, 50));
    let (_, diags) = platform("kubernetes {\n  api_url = \"ftp://x\"\n  token = \"abc\"\n  poll_interval_ms = 0\n}\n");
    assert_eq!(
        diags,
        [
            r#"matih.hcl:2:13: api_url must be an http:// or https:// URL, found "ftp://x""#,
            "matih.hcl:3:3: credentials come from the kubeconfig or the environment, never from the platform file",
            "matih.hcl:4:22: poll_interval_ms must be between 1 and 3600000, found 0",
        ]
    );
}

#[test]
fn platform_passwords_are_refused_without_echoing_them() {
    let (config, diags) = platform("postgres {\n  host     = \"pg.internal\"\n  password = \"hunter2\"\n}\n");
    assert_eq!(
        diags,
        ["matih.hcl:3:3: secrets come from the environment, never from the platform file: remove the PostgreSQL \
          password from matih.hcl"]
    );
    assert_eq!(config.postgres_host, "pg.internal", "the rest of the block is still read");
}

#[test]
fn platform_postgres_admin_connection_is_named_never_written() {
    let (config, diags) = platform(
        "postgres {\n  host = \"pg.internal\"\n  admin_url_env = \"PG_ADMIN\"\n  connect_timeout_ms = 2500\n}\n",
    );
    assert!(diags.is_empty(), "{diags:?}");
    assert_eq!(config.postgres_admin_url_env, "PG_ADMIN");
    assert_eq!(config.postgres_connect_timeout_ms, 2500);
    assert_eq!(PlatformConfig::default().postgres_admin_url_env, "MATIH_POSTGRES_ADMIN_URL");

    let url = "postgresql://postgres:hunter2@db:5432/postgres";
    let (config, diags) = platform(&format!(
        "postgres {{\n  admin_url = \"{url}\"\n  admin_url_env = \"{url}\"\n  connect_timeout_ms = 0\n}}\n"
    ));
    assert_eq!(
        diags,
        [
            "matih.hcl:2:3: the admin connection string holds a password: put it in an environment variable and \
             name that variable with admin_url_env = \"MATIH_POSTGRES_ADMIN_URL\"",
            "matih.hcl:3:19: admin_url_env must be the name of an environment variable ([A-Z_][A-Z0-9_]*, like \
             ACME_SLACK_WEBHOOK); the secret itself goes in that variable, never in the file",
            "matih.hcl:4:24: connect_timeout_ms must be between 1 and 600000, found 0",
        ]
    );
    assert!(diags.iter().all(|d| !d.contains("hunter2")), "{diags:?}");
    assert_eq!(config.postgres_admin_url_env, "MATIH_POSTGRES_ADMIN_URL", "a bad value keeps the default");
}

#[test]
fn platform_types_ranges_and_literals() {
    let (config, diags) = platform(
        "postgres {\n  port = \"5432\"\n}\nimages {\n  tag = var.tag\n}\ndns {\n  parent_zone = \"matih\"\n}\n\
         platform {\n  provisioned_by = \"root\"\n  control_plane_namespace = \"Matih_System\"\n}\n\
         certificates {\n  cluster_issuer = 1\n}\n",
    );
    assert_eq!(
        diags,
        [
            "matih.hcl:2:10: port must be a whole number, found string",
            "matih.hcl:5:9: only literal values are allowed here",
            "matih.hcl:8:17: parent_zone \"matih\" is not a valid DNS name (like matih.ai: dot-separated labels, no \
             trailing dot)",
            "matih.hcl:11:20: provisioned_by \"root\" is not an e-mail address (expected name@domain.example)",
            "matih.hcl:12:29: control_plane_namespace \"Matih_System\" is not a valid namespace name (a DNS-1123 \
             label: at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit)",
            "matih.hcl:15:20: cluster_issuer must be a string, found number",
        ]
    );
    assert_eq!(PlatformConfig { source: None, ..config }, PlatformConfig::default(), "bad values keep defaults");
    let (_, diags) = platform("postgres {\n  port = 70000\n}\n");
    assert_eq!(diags, ["matih.hcl:2:10: port must be between 1 and 65535, found 70000"]);
}

#[test]
fn platform_duplicates_labels_and_syntax_errors() {
    let (_, diags) = platform("dns {\n}\ndns \"x\" {\n}\n");
    assert_eq!(diags, ["matih.hcl:3:1: duplicate block \"dns\"\n    first written at matih.hcl:1:1"]);
    let (config, diags) = platform("images \"x\" {\n  tag = \"1.0\"\n}\n");
    assert_eq!(diags, ["matih.hcl:1:8: images block takes no labels"]);
    assert_eq!(config.image_tag, "1.0");
    let (_, diags) = platform("images {\n  tag = \"1\"\n  tag = \"2\"\n}\n");
    assert_eq!(diags, ["matih.hcl:3:3: duplicate attribute \"tag\""]);
    let (config, diags) = platform("dns {\n  parent_zone = \"example.com\"\n");
    assert_eq!(diags, ["matih.hcl:2:30: syntax error: invalid block body; expected `}`, newline or identifier"]);
    assert_eq!(config.parent_zone, PlatformConfig::default().parent_zone);
}

#[test]
fn a_platform_syntax_error_after_multibyte_characters_is_located_by_character() {
    // Found by the platform fuzz target (the column was one past the end of the line).
    let (_, diags) = platform("#\npostgres {\n  hTom thipgҎn\" \"pgҎ");
    assert_eq!(diags, ["matih.hcl:3:20: syntax error: expected `{`"]);
}

#[test]
fn an_unreadable_platform_file_is_a_diagnostic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("matih.hcl");
    let (config, diags) = load_platform(&path);
    assert_eq!(config, PlatformConfig::default());
    let rendered: Vec<String> = diags.iter().map(ToString::to_string).collect();
    assert_eq!(rendered, [format!("error: cannot read {}: No such file or directory (os error 2)", path.display())]);
}

// The `dns` block's provider settings.

#[test]
fn platform_dns_powerdns() {
    let (config, diags) = platform(
        "dns {\n  parent_zone = \"matih.ai\"\n  provider    = \"powerdns\"\n  api_url     = \"http://127.0.0.1:8081/\"\n  \
         api_key_env = \"PDNS_API_KEY\"\n  nameservers = [\"ns1.matih.ai.\", \"NS2.matih.ai\"]\n  ttl = 120\n}\n",
    );
    assert!(diags.is_empty(), "{diags:?}");
    assert_eq!(
        config.dns,
        Some(DnsPlatform {
            provider: DnsProviderKind::PowerDns,
            api_url: Some("http://127.0.0.1:8081".into()),
            api_key_env: Some("PDNS_API_KEY".into()),
            server_id: "localhost".into(),
            nameservers: vec!["ns1.matih.ai.".into(), "ns2.matih.ai.".into()],
            ttl: Some(120),
            ..DnsPlatform::default()
        })
    );
    let (config, diags) = platform("dns {\n  parent_zone = \"matih.ai\"\n}\n");
    assert!(diags.is_empty(), "{diags:?}");
    assert_eq!(config.dns, None, "no provider: no DNS provider configured");
}

#[test]
fn platform_dns_azure() {
    let (config, diags) = platform(
        "dns {\n  provider = \"azure\"\n  subscription_id = \"11111111-2222-3333-4444-555555555555\"\n  \
         resource_group = \"matih-dns\"\n  endpoint = \"http://127.0.0.1:9999\"\n}\n",
    );
    assert!(diags.is_empty(), "{diags:?}");
    let dns = config.dns.unwrap();
    assert_eq!(dns.provider, DnsProviderKind::Azure);
    assert_eq!(dns.subscription_id.as_deref(), Some("11111111-2222-3333-4444-555555555555"));
    assert_eq!(dns.resource_group.as_deref(), Some("matih-dns"));
    assert_eq!(dns.endpoint.as_deref(), Some("http://127.0.0.1:9999"));
}

#[test]
fn platform_dns_secrets_are_refused_without_echoing_them() {
    let (_, diags) = platform(
        "dns {\n  provider = \"powerdns\"\n  api_url = \"https://pdns:8081\"\n  api_key = \"k3y-LITERAL\"\n  \
         api_key_env = \"k3y-LITERAL-2\"\n  client_secret = \"az-LITERAL\"\n  nameservers = [\"ns1.matih.ai\"]\n}\n",
    );
    assert_eq!(
        diags,
        [
            "matih.hcl:4:3: secrets come from the environment, never from the platform file: set api_key_env to the \
             NAME of the variable that holds the PowerDNS API key",
            "matih.hcl:5:17: api_key_env must be the name of an environment variable ([A-Z_][A-Z0-9_]*, like \
             ACME_SLACK_WEBHOOK); the secret itself goes in that variable, never in the file",
            "matih.hcl:6:3: Azure credentials come from the environment (AZURE_CLIENT_ID, AZURE_TENANT_ID, \
             AZURE_CLIENT_SECRET), workload identity or the Azure CLI, never from the platform file",
        ]
    );
    assert!(diags.iter().all(|d| !d.contains("LITERAL")), "{diags:?}");
}

#[test]
fn platform_dns_provider_settings_must_match_the_provider() {
    let (config, diags) = platform("dns {\n  api_url = \"https://pdns:8081\"\n}\n");
    assert_eq!(
        diags,
        ["matih.hcl:2:13: api_url set without a DNS provider: add provider = \"powerdns\" or \"azure\" to the dns block"]
    );
    assert_eq!(config.dns, None);
    let (_, diags) = platform("dns {\n  provider = \"azure\"\n  api_url = \"https://pdns:8081\"\n}\n");
    assert_eq!(
        diags,
        [
            "matih.hcl:1:1: DNS provider \"azure\" needs subscription_id, resource_group in the dns block",
            "matih.hcl:3:13: api_url is a setting of another DNS provider, not of \"azure\"",
        ]
    );
    let (_, diags) = platform(
        "dns {\n  provider = \"route53\"\n  nameservers = [\"ns1.matih.ai\", \"-bad\"]\n  subscription_id = \"x\"\n  \
         resource_group = \"a/b\"\n  ttl = 0\n}\n",
    );
    assert_eq!(
        diags,
        [
            "matih.hcl:2:14: unknown DNS provider \"route53\" (expected powerdns, azure)",
            "matih.hcl:3:34: nameserver \"-bad\" is not a DNS name (like ns1.matih.ai.)",
            "matih.hcl:4:21: subscription_id must be a UUID in canonical form (8-4-4-4-12 hexadecimal digits, like \
             550e8400-e29b-41d4-a716-446655440000), found \"x\"",
            "matih.hcl:5:20: resource_group \"a/b\" is not an Azure resource group name (1 to 90 letters, digits, \
             '-', '_', '.', '(', ')', not ending with '.')",
            "matih.hcl:6:9: ttl must be between 1 and 2147483647, found 0",
        ]
    );
}

#[test]
fn platform_state_block_selects_the_backend_and_never_holds_the_url() {
    let (config, diags) = platform("");
    assert!(diags.is_empty());
    assert_eq!(
        config.state,
        StatePlatform { backend: StateBackend::Sled, path: None, url_env: "MATIH_STATE_URL".into() }
    );
    let (config, diags) = platform("state {\n  backend = \"postgres\"\n  url_env = \"TEAM_STATE\"\n}\n");
    assert!(diags.is_empty(), "{diags:?}");
    assert_eq!((config.state.backend, config.state.url_env.as_str()), (StateBackend::Postgres, "TEAM_STATE"));
    let (config, diags) = platform("state {\n  backend = \"sled\"\n  path = \"shared/state\"\n}\n");
    assert!(diags.is_empty(), "{diags:?}");
    assert_eq!(config.state.path.as_deref(), Some("shared/state"));

    let (config, diags) = platform(
        "state {\n  backend = \"etcd\"\n  url_env = \"not a name\"\n  url = \"postgresql://u:hunter2@h/db\"\n}\n",
    );
    assert_eq!(config.state.backend, StateBackend::Sled, "a bad value keeps the default");
    assert_eq!(diags.len(), 3, "{diags:?}");
    assert!(diags[0].starts_with("matih.hcl:2:13: backend must be one of sled, postgres, found \"etcd\""), "{diags:?}");
    assert!(diags[2].contains("never from the platform file") && !diags[2].contains("hunter2"), "{diags:?}");
}

#[test]
fn platform_credentials_never_travel_in_clear_text() {
    let (_, diags) = platform(
        "dns {\n  provider = \"powerdns\"\n  api_url = \"http://pdns.example:8081\"\n  api_key_env = \"PDNS_KEY\"\n  \
         nameservers = [\"ns1.matih.ai\"]\n}\nkubernetes {\n  api_url = \"http://10.0.0.1:6443\"\n}\n\
         notifications {\n  smtp_host = \"smtp.example.com\"\n  smtp_tls = \"none\"\n  smtp_from = \"m@matih.ai\"\n  \
         smtp_username_env = \"SMTP_USER\"\n}\n",
    );
    assert_eq!(
        diags,
        [
            "matih.hcl:3:13: api_url is http://pdns.example: it carries a credential, which is sent only over \
             https:// (plain http is allowed to loopback addresses only)",
            "matih.hcl:8:13: api_url is http://10.0.0.1: it carries a credential, which is sent only over https:// \
             (plain http is allowed to loopback addresses only)",
            "matih.hcl:12:14: smtp_tls = \"none\" would send the SMTP credentials to smtp.example.com in clear text: \
             use \"starttls\" or \"tls\" (no TLS is allowed only to a server on this machine)",
        ]
    );
    // The same settings to this machine are fine, as they were.
    let (_, diags) = platform(
        "dns {\n  provider = \"powerdns\"\n  api_url = \"http://127.0.0.1:8081\"\n  api_key_env = \"PDNS_KEY\"\n  \
         nameservers = [\"ns1.matih.ai\"]\n}\nnotifications {\n  smtp_host = \"localhost\"\n  smtp_tls = \"none\"\n  \
         smtp_from = \"m@matih.ai\"\n  smtp_username_env = \"SMTP_USER\"\n}\n",
    );
    assert_eq!(diags, Vec::<String>::new());
}

#[test]
fn malformed_digests_and_cidrs_are_located_errors() {
    let (config, diags) = platform(
        "images {\n  digests = [\"r.io/a@sha256:00\", \"r.io/b:1.0@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\"]\n}\n",
    );
    assert_eq!(
        diags,
        ["matih.hcl:2:14: digests element \"r.io/a@sha256:00\" is not an image pinned by digest \
          (REPOSITORY@sha256:<64 hex digits>): the digest must be 64 lowercase hex digits"]
    );
    assert!(config.image_digests.is_empty());
    let hex = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    let (_, diags) = platform(&format!("images {{\n  digests = [\"r.io/b:1.0@sha256:{hex}\"]\n}}\n"));
    assert_eq!(diags.len(), 1);
    assert!(
        diags[0].starts_with("matih.hcl:2:14: ") && diags[0].ends_with("the repository has a tag or is empty"),
        "{diags:?}"
    );
    let (_, diags) =
        platform(&format!("images {{\n  digests = [\"r.io/b@sha256:{hex}\", \"r.io/b@sha256:{hex}\"]\n}}\n"));
    assert_eq!(diags.len(), 1);
    assert!(diags[0].starts_with("matih.hcl:2:") && diags[0].ends_with("digests pins \"r.io/b\" twice"), "{diags:?}");
    let (config, diags) =
        platform("network {\n  database_cidrs = [\"10.0.0.5/32\", \"10.0.0.5/24\", \"::1/129\", \"pg.internal\"]\n}\n");
    assert_eq!(diags, ["matih.hcl:2:36: database_cidrs element \"10.0.0.5/24\" has address bits set past /24"]);
    assert!(config.database_cidrs.is_empty());
    for bad in ["::1/129", "pg.internal", "10.0.0.0/08", "10.0.0.0/+8"] {
        let (_, diags) = platform(&format!("network {{\n  api_server_cidrs = [\"{bad}\"]\n}}\n"));
        assert_eq!(diags.len(), 1, "{bad}");
        assert!(
            diags[0].starts_with("matih.hcl:2:23: api_server_cidrs element") && diags[0].contains("not a CIDR block"),
            "{diags:?}"
        );
    }
    let (config, diags) =
        platform("network {\n  api_server_cidrs = [\"10.0.0.0/8\", \"fd00::/8\", \"0.0.0.0/0\"]\n}\n");
    assert!(diags.is_empty(), "{diags:?}");
    assert_eq!(config.api_server_cidrs, ["10.0.0.0/8", "fd00::/8", "0.0.0.0/0"]);
}
