//! Grouping tests: the canonical names, a fleet of tenants with one catalog change shown once in
//! text, Markdown and JSON (risky and different tenants in sections of their own, first), 1,000
//! tenants in one GitHub comment, and the streamed renderers giving the in-memory bytes.

use super::Canon;
use crate::graph::{ResourceGraph, TenantMeta};
use crate::plan::render::tests::{recorded, resource};
use crate::plan::{
    diff, render_json_with, render_markdown_with, render_text_with, JsonStream, MarkdownStream, Plan, Spill,
    TenantPlan, TextOptions, TextStream,
};
use crate::state::{TenantState, TenantStatus};
use crate::value::Value;

/// `t0000`…, and for 9001 and 9002 slugs spelled like the keys a group's rendering waits in.
fn slug(i: usize) -> String {
    match i {
        9_001 => "open".into(),
        9_002 => "phases".into(),
        _ => format!("t{i:04}"),
    }
}

fn id(i: usize) -> String {
    format!("{i:08x}-0000-4000-8000-{i:012x}")
}

fn namespace(i: usize) -> Value {
    Value::map([("metadata", Value::map([("name", Value::str(format!("matih-{}", slug(i))))]))])
}

/// A tenant's alert rule: its namespace and id in it, `threshold` the catalog's.
fn rule(i: usize, threshold: &str) -> Value {
    Value::map([
        ("expr", Value::str(format!("rate(errors{{namespace=\"matih-{}\"}}[5m]) > {threshold}", slug(i)))),
        ("labels", Value::map([("tenant_id", Value::str(id(i)))])),
    ])
}

/// Tenant `i`, recorded with the rule at 0.05, planned with it at `threshold`; with `schema`, a
/// recorded schema that is no longer desired (a data-loss risk).
fn tenant(i: usize, threshold: &str, schema: bool) -> TenantPlan {
    let meta = TenantMeta { slug: slug(i), id: id(i), tier: "free".into(), region: "eastus".into(), source: None };
    let mut g = ResourceGraph::new(meta);
    assert!(g.add(resource("kubernetes_namespace.tenant", 1, namespace(i), &[])));
    assert!(g.add(resource("kubernetes_prometheus_rule.tenant", 9, rule(i, threshold), &[])));
    assert!(g.connect().is_empty());
    let mut resources = vec![
        ("kubernetes_namespace.tenant", recorded(1, namespace(i))),
        ("kubernetes_prometheus_rule.tenant", recorded(9, rule(i, "0.05"))),
    ];
    if schema {
        let name = Value::map([("name", Value::str(format!("tenant_{}", slug(i))))]);
        resources.push(("postgresql_schema.tenant", recorded(2, name)));
    }
    let s = TenantState {
        slug: slug(i),
        tenant_id: id(i),
        lineage: "0b7e6a52-5f3c-4c6e-9d0a-2f1f3c1d9e11".into(),
        serial: 4,
        status: TenantStatus::Active,
        updated_at: "2024-05-01T10:00:00Z".into(),
        resources: resources.into_iter().map(|(a, s)| (a.parse().unwrap(), s)).collect(),
        ..Default::default()
    };
    diff(&g, Some(&s), None)
}

/// `n` tenants with the same change (0.05 → 0.10); tenant 3 changes to 0.20 instead and tenant 5
/// also loses its schema; tenant 1 has no change.
fn fleet(n: usize) -> Plan {
    Plan::new(
        (0..n)
            .map(|i| match i {
                1 => tenant(i, "0.05", false),
                3 => tenant(i, "0.20", false),
                5 => tenant(i, "0.10", true),
                _ => tenant(i, "0.10", false),
            })
            .collect(),
    )
}

fn text(plan: &Plan, group: bool) -> String {
    render_text_with(plan, &TextOptions { color: false, digest: None }, group)
}

#[test]
fn names_become_placeholders_only_as_whole_words() {
    let t = tenant(7, "0.10", false);
    let canon = Canon::of(&t);
    assert_eq!(canon.apply("matih-t0007 t0007.example tenant_t0007"), "matih-${slug} ${slug}.example tenant_${slug}");
    assert_eq!(canon.apply("t00070 xt0007 t0007"), "t00070 xt0007 ${slug}");
    assert_eq!(canon.apply(&format!("id {}", id(7))), "id ${tenant_id}");
    // A slug with dashes is also found as PostgreSQL spells it.
    let mut t = tenant(7, "0.10", false);
    t.slug = "acme-corp".into();
    assert_eq!(Canon::of(&t).apply("matih-acme-corp tenant_acme_corp"), "matih-${slug} tenant_${slug}");
}

#[test]
fn base64_of_a_name_is_shown_decoded_with_placeholders() {
    use base64::Engine as _;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let canon = Canon::of(&tenant(7, "0.10", false));
    // A Secret's data, as text and JSON show it: the same canonical form for every tenant.
    let user = format!("POSTGRES_USER = \"{}\"", b64("tenant_t0007"));
    assert_eq!(canon.apply(&user), "POSTGRES_USER = \"base64(tenant_${slug})\"");
    let url = format!("{{\"url\":\"{}\"}}", b64("postgresql://tenant_t0007@db:5432/matih"));
    assert_eq!(canon.apply(&url), "{\"url\":\"base64(postgresql://tenant_${slug}@db:5432/matih)\"}");
    assert_eq!(Canon::of(&tenant(8, "0.10", false)).apply(&b64("tenant_t0008")), canon.apply(&b64("tenant_t0007")));
    // Base64 of anything else, of text that needs escaping, or part of a longer token: as it is.
    for kept in [b64("tenant_t0008"), b64("a \"t0007\""), format!("x{}", b64("tenant_t0007")), "dGVuYW50".into()] {
        assert_eq!(canon.apply(&kept), kept);
    }
}

/// Only tokens that hold some encoding of a name are decoded (`Canon::cores`): a name at each of
/// the three offsets a base64 group has, after any text, is still found.
#[test]
fn base64_of_a_name_is_found_at_every_offset() {
    use base64::Engine as _;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let canon = Canon::of(&tenant(7, "0.10", false));
    for prefix in ["", "u=", "us=", "user=", "postgresql://"] {
        for name in ["t0007", &id(7)] {
            let text = format!("{prefix}{name}@db");
            let placeholder = if name == "t0007" { "${slug}" } else { "${tenant_id}" };
            assert_eq!(canon.apply(&b64(&text)), format!("base64({prefix}{placeholder}@db)"), "{text}");
        }
    }
    // A short slug has no characters of its own in every encoding: every token is decoded.
    let mut t = tenant(7, "0.10", false);
    t.slug = "ab".into();
    assert_eq!(Canon::of(&t).apply(&b64("role=ab,x")), "base64(role=${slug},x)");
}

/// DEL is written `\u007f` by the text plan and as it is by the JSON plan, which grouping compares:
/// next to DEL a name is not a whole word, so the JSON never finds a name the text does not.
#[test]
fn a_name_next_to_del_is_not_a_whole_word() {
    let canon = Canon::of(&tenant(7, "0.10", false));
    assert_eq!(canon.apply("\u{7f}t0007 t0007\u{7f} t0007"), "\u{7f}t0007 t0007\u{7f} ${slug}");
}

/// A move with no other change is shown by the text plan only (the JSON lists no no-ops): it
/// still keeps its tenant out of a group without it.
#[test]
fn a_move_alone_keeps_a_tenant_out_of_the_group() {
    let mut moved = tenant(2, "0.10", false);
    moved.moved.push(crate::plan::PlannedMove {
        from: "kubernetes_namespace.old".parse().unwrap(),
        to: "kubernetes_namespace.tenant".parse().unwrap(),
        declared_at: "schemas/lifecycle.hcl:1:1".into(),
    });
    let plan = Plan::new(vec![tenant(0, "0.10", false), moved, tenant(4, "0.10", false)]);
    let out = text(&plan, true);
    assert!(out.contains("2 tenants with the same changes"), "{out}");
    assert!(out.contains("has moved to kubernetes_namespace.tenant"), "{out}");
    let json: serde_json::Value = serde_json::from_str(&render_json_with(&plan, None, true)).unwrap();
    let sizes: Vec<_> = json["groups"].as_array().unwrap().iter().map(|g| g["size"].clone()).collect();
    assert_eq!(sizes, [2, 1], "{json}");
}

#[test]
fn a_slug_spelled_like_a_key_is_replaced_in_what_is_shown_only() {
    let plan = Plan::new(vec![tenant(0, "0.10", false), tenant(9_001, "0.10", false), tenant(9_002, "0.10", false)]);
    let md = render_markdown_with(&plan, None, true);
    assert!(md.contains("<summary>3 tenants: `kubernetes_prometheus_rule.tenant` ~ update</summary>"), "{md}");
    assert!(md.contains("Members: `t0000`, `open`, `phases`."), "{md}");
    assert!(md.contains("matih-${slug}") && !md.contains("matih-open"), "{md}");
    let json: serde_json::Value = serde_json::from_str(&render_json_with(&plan, None, true)).unwrap();
    let change = &json["groups"][0]["resource_changes"][0];
    assert_eq!(json["groups"][0]["size"], 3);
    assert_eq!(change["address"], "kubernetes_prometheus_rule.tenant", "{change}");
    assert!(text(&plan, true).contains("3 tenants with the same changes"));
}

#[test]
fn text_shows_a_shared_change_once_and_the_others_first_by_risk() {
    let plan = fleet(10);
    let out = text(&plan, true);
    let update = "# kubernetes_prometheus_rule.tenant will be updated in place";
    // Once for the seven, once for t0003, once for t0005.
    assert_eq!(out.matches(update).count(), 3, "{out}");
    assert!(out.contains("7 tenants with the same changes, shown once"), "{out}");
    assert!(out.contains("\"t0000\", \"t0002\", \"t0004\", \"t0006\", \"t0007\", \"t0008\", \"t0009\""), "{out}");
    assert!(out.contains("matih-${slug}") && out.contains("${tenant_id}"), "{out}");
    assert!(out.contains("7 tenants, each: 0 to add, 1 to change, 0 to destroy."), "{out}");
    // The risky tenant first, then the largest group, then the tenant that differs.
    let at = |s: &str| out.find(s).unwrap_or_else(|| panic!("{s} in {out}"));
    assert!(at("Tenant \"t0005\"") < at("7 tenants with the same changes"));
    assert!(at("7 tenants with the same changes") < at("Tenant \"t0003\""));
    assert!(out.contains("> 0.20") && out.contains("matih-t0003"), "a group of one keeps its names: {out}");
    assert!(out.contains("1 tenant has no changes: \"t0001\"."), "{out}");
    // Without grouping, a section per tenant.
    assert_eq!(text(&plan, false).matches(update).count(), 9);
    // The same totals either way.
    let last = |s: &str| s.lines().find(|l| l.starts_with("Plan: ")).unwrap().to_string();
    assert_eq!(last(&out), last(&text(&plan, false)));
}

#[test]
fn a_thousand_tenants_with_one_change_fit_one_comment_with_the_whole_diff() {
    let plan = fleet(1_000);
    let md = render_markdown_with(&plan, None, true);
    assert!(md.len() <= 65_536, "{} bytes", md.len());
    assert!(!md.contains("not shown"), "nothing cut: {md}");
    assert!(
        md.contains("<details><summary>997 tenants: `kubernetes_prometheus_rule.tenant` ~ update</summary>"),
        "{md}"
    );
    assert!(md.contains("| 997 tenants (`t0000`, `t0002`, `t0004`, and 994 more) | 0 | 1 | 0 | 0 |"), "{md}");
    // The diff once for the group, once each for the two that differ.
    assert_eq!(md.matches("# kubernetes_prometheus_rule.tenant will be updated").count(), 3, "{md}");
    assert!(md.contains("matih-${slug}") && md.contains("> 0.10"), "{md}");
    // Risks first: t0005's schema.
    assert!(md.find("`t0005`").unwrap() < md.find("997 tenants").unwrap(), "{md}");
    assert!(md.contains("- `t0005`: `postgresql_schema.tenant` will be destroyed"), "{md}");
    // Without grouping, the table and diffs are cut.
    let flat = render_markdown_with(&plan, None, false);
    assert!(flat.len() <= 65_536 && flat.contains("not shown"));
}

#[test]
fn json_groups_index_the_tenants_and_show_the_canonical_change() {
    let plan = fleet(10);
    let doc: serde_json::Value = serde_json::from_str(&render_json_with(&plan, None, true)).unwrap();
    let flat: serde_json::Value = serde_json::from_str(&render_json_with(&plan, None, false)).unwrap();
    assert!(flat.get("groups").is_none(), "only with --group");
    for key in ["format_version", "tenants", "summary"] {
        assert_eq!(doc[key], flat[key], "{key} unchanged by grouping");
    }
    let groups = doc["groups"].as_array().unwrap();
    let sizes: Vec<u64> = groups.iter().map(|g| g["size"].as_u64().unwrap()).collect();
    assert_eq!(sizes, [1, 7, 1], "risky first, then the largest: {doc:#}");
    assert_eq!(groups[0]["members"], serde_json::json!(["t0005"]));
    assert_eq!(groups[0]["risks"][0]["category"], "Data loss");
    assert_eq!(groups[1]["members"].as_array().unwrap().len(), 7);
    assert_eq!(groups[1]["summary"]["change"], 1);
    assert!(groups[1]["digest"].as_str().unwrap().starts_with("sha256:"));
    let change = &groups[1]["resource_changes"][0];
    assert_eq!(change["address"], "kubernetes_prometheus_rule.tenant");
    assert_eq!(change["after"]["expr"], "rate(errors{namespace=\"matih-${slug}\"}[5m]) > 0.10");
    assert_eq!(change["after"]["labels"]["tenant_id"], "${tenant_id}");
    assert_eq!(groups[1]["resource_changes"].as_array().unwrap().len(), 1, "no-ops left out");
    // A group of one shows its tenant's own names.
    assert_eq!(groups[2]["resource_changes"][0]["after"]["labels"]["tenant_id"], id(3));
}

/// What `matih plan DIR` streams is what a plan held whole renders, whether the spills wait in
/// temporary files, in memory, or move from memory to a file halfway through.
#[test]
fn streamed_grouped_renderings_are_the_in_memory_bytes() {
    let plan = fleet(40);
    let opts = TextOptions { color: false, digest: None };
    type NewSpill = fn() -> Spill;
    let spills: [(&str, NewSpill); 3] = [
        ("file", || Spill::file().unwrap()),
        ("memory", Spill::spooled),
        ("memory, then a file", || Spill::spooled_up_to(4096)),
    ];
    for (kind, spill) in spills {
        let mut t = TextStream::new(opts.clone(), spill()).grouped(spill());
        let mut j = JsonStream::new(None, spill()).grouped(spill());
        let mut m = MarkdownStream::new(None).grouped(spill());
        for tenant in &plan.tenants {
            t.push(tenant).unwrap();
            j.push(tenant).unwrap();
            m.push(tenant).unwrap();
        }
        let finish = |f: &mut dyn FnMut(&mut Vec<u8>) -> std::io::Result<()>| {
            let mut out = Vec::new();
            f(&mut out).unwrap();
            String::from_utf8(out).unwrap()
        };
        let mut t = Some(t);
        let mut j = Some(j);
        let mut m = Some(m);
        assert_eq!(finish(&mut |o| t.take().unwrap().finish(o)), render_text_with(&plan, &opts, true), "{kind}");
        assert_eq!(finish(&mut |o| j.take().unwrap().finish(o)), render_json_with(&plan, None, true), "{kind}");
        assert_eq!(finish(&mut |o| m.take().unwrap().finish(o)), render_markdown_with(&plan, None, true), "{kind}");
    }
    // Deterministic.
    assert_eq!(render_markdown_with(&plan, None, true), render_markdown_with(&fleet(40), None, true));
}

/// Looking only where the finder points gives what looking at every position gives: over many
/// mixes of names, their base64 encodings at every offset, parts of them and punctuation.
#[test]
fn the_finder_skips_nothing_a_full_pass_finds() {
    use base64::Engine as _;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let mut t = tenant(7, "0.10", false);
    t.slug = "acme-corp".into();
    let canon = Canon::of(&t);
    assert!(canon.finder.is_some());
    let parts: Vec<String> = vec![
        "acme-corp".into(),
        "acme_corp".into(),
        id(7),
        "acme".into(),
        "x".into(),
        "-".into(),
        "/".into(),
        "=".into(),
        "\"".into(),
        "\u{7f}".into(),
        " ".into(),
        "\\n".into(),
        b64("tenant_acme_corp"),
        b64("u=acme-corp@db"),
        b64("us=acme-corp"),
        b64(&format!("id={}", id(7))),
        b64("acme-corporation"),
        "dGVuYW50".into(),
    ];
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    for _ in 0..3_000 {
        let mut s = String::new();
        for _ in 0..8 {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            s.push_str(&parts[(seed >> 33) as usize % parts.len()]);
        }
        let mut full = String::new();
        canon.pieces_at(&s, 0..s.len(), &mut |p| full.push_str(p));
        assert_eq!(canon.apply(&s), full, "{s:?}");
    }
}

/// Text beyond ASCII is passed over whole, with the finder and without it (a one-letter slug).
#[test]
fn text_beyond_ascii_is_kept() {
    let canon = Canon::of(&tenant(7, "0.10", false));
    assert_eq!(canon.apply("Société t0007 é…"), "Société ${slug} é…");
    let mut t = tenant(7, "0.10", false);
    t.slug = "a".into();
    let canon = Canon::of(&t);
    assert!(canon.finder.is_none());
    assert_eq!(canon.apply("Générale a é"), "Générale ${slug} é");
}
