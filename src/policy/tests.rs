use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use super::*;
use crate::phase::Phase;
use crate::plan::{Action, ResourceChange};
use crate::value::Value;

fn tenant(action: Action) -> TenantPlan {
    let attrs = BTreeMap::from([("metadata".to_string(), Value::map([("name", Value::str("matih-acme"))]))]);
    TenantPlan::with_changes(
        "acme",
        vec![ResourceChange {
            address: "postgresql_schema.tenant".parse().unwrap(),
            phase: Phase::CreateNamespace,
            action,
            before: (action != Action::Create).then(|| attrs.clone()),
            after: (action != Action::Delete).then_some(attrs),
            changes: Vec::new(),
            depends_on: BTreeSet::new(),
            notes: Vec::new(),
            manifest_changes: Vec::new(),
        }],
    )
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

fn load(dir: &Path, options: Options) -> Result<PolicySet, Vec<Diagnostic>> {
    PolicySet::load(&[dir.to_path_buf()], options)
}

#[test]
fn rules_are_named_as_conftest_names_them() {
    assert_eq!(rule_outcome("deny"), Some(Outcome::Failure));
    assert_eq!(rule_outcome("violation_no_lb"), Some(Outcome::Failure));
    assert_eq!(rule_outcome("deny_a_b2"), Some(Outcome::Failure));
    assert_eq!(rule_outcome("warn"), Some(Outcome::Warning));
    assert_eq!(rule_outcome("warn_x"), Some(Outcome::Warning));
    for not_a_rule in ["denied", "deny_", "deny__x", "allow", "warning", "helper", "deny_a-b"] {
        assert_eq!(rule_outcome(not_a_rule), None, "{not_a_rule}");
    }
}

#[test]
fn messages_are_strings_or_objects_with_msg() {
    let v = serde_json::json!(["a", { "msg": "b", "details": 1 }, { "other": 2 }]);
    assert_eq!(messages(&v), ["a", "b", r#"{"other":2}"#]);
    assert_eq!(messages(&serde_json::json!(true)), ["(the rule is true)"]);
    assert!(messages(&serde_json::json!(false)).is_empty());
    assert!(messages(&serde_json::json!([])).is_empty());
}

#[test]
fn deny_fails_warn_warns_and_each_names_its_file_and_rule() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(
        d,
        "data_loss.rego",
        r#"package main

deny contains msg if {
    some t in input.tenants
    some rc in t.resource_changes
    rc.action in {"delete", "replace"}
    startswith(rc.type, "postgresql_")
    not data.approved[t.slug]
    msg := sprintf("%s: %s would be %sd", [t.slug, rc.address, rc.action])
}

warn_creates contains {"msg": sprintf("%d create(s)", [input.summary.add])} if input.summary.add > 0
"#,
    );
    write(d, "helpers_test.rego", "this is not even rego");
    let mut set = load(d, Options::default()).unwrap();
    assert_eq!(set.files().collect::<Vec<_>>(), [d.join("data_loss.rego").display().to_string()]);

    let checked = set.check(&tenant(Action::Delete), false).unwrap();
    assert_eq!(checked.findings.len(), 1, "{checked:?}");
    let f = &checked.findings[0];
    assert_eq!((f.outcome, f.rule.as_str(), f.tenant.as_str()), (Outcome::Failure, "main.deny", "acme"));
    assert_eq!(f.message, "acme: postgresql_schema.tenant would be deleted");
    assert_eq!(f.files, [d.join("data_loss.rego").display().to_string()]);
    assert!(f.to_string().starts_with("FAIL acme: "), "{f}");

    let checked = set.check(&tenant(Action::Create), false).unwrap();
    assert_eq!(checked.findings.len(), 1, "{checked:?}");
    assert_eq!(checked.findings[0].outcome, Outcome::Warning);
    assert_eq!(checked.findings[0].message, "1 create(s)");
    assert_eq!(checked.findings[0].rule, "main.warn_creates");

    // An approval in a data file lifts the deny.
    write(d, "approvals.json", r#"{ "approved": { "acme": "CHG-1" } }"#);
    let mut set = load(d, Options::default()).unwrap();
    assert!(set.check(&tenant(Action::Delete), false).unwrap().findings.is_empty());
}

#[test]
fn terraform_shaped_input_runs_terraform_policies() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "tf.rego",
        r#"package terraform.deletes

import rego.v1

deny contains msg if {
    some rc in input.resource_changes
    rc.mode == "managed"
    "delete" in rc.change.actions
    msg := sprintf("%s is deleted (%v)", [rc.address, rc.change.after_sensitive])
}
"#,
    );
    let options =
        Options { namespaces: vec!["terraform.deletes".into()], shape: Shape::Terraform, ..Options::default() };
    let mut set = load(dir.path(), options).unwrap();
    let checked = set.check(&tenant(Action::Delete), false).unwrap();
    assert_eq!(checked.findings.len(), 1, "{checked:?}");
    assert_eq!(checked.findings[0].message, r#"module.tenant["acme"].postgresql_schema.tenant is deleted (false)"#);
    assert!(set.check(&tenant(Action::Update), false).unwrap().findings.is_empty());
}

#[test]
fn rego_v0_is_accepted_when_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "v0.rego",
        "package main\n\ndeny[msg] {\n  input.summary.destroy > 0\n  msg := \"destroys\"\n}\n",
    );
    let errs = load(dir.path(), Options::default()).unwrap_err();
    assert_eq!(errs[0].location.as_ref().unwrap().line, 3, "{errs:?}");
    let mut set = load(dir.path(), Options { rego_v0: true, ..Options::default() }).unwrap();
    let checked = set.check(&tenant(Action::Delete), false).unwrap();
    assert_eq!(checked.findings[0].message, "destroys");
}

#[test]
fn problems_are_located_or_named() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "bad.rego", "package main\n\ndeny contains msg if {\n    msg := \n}\n");
    let errs = load(d, Options::default()).unwrap_err();
    let loc = errs[0].location.as_ref().expect("a syntax error is located");
    assert_eq!((loc.file.as_path(), loc.line), (d.join("bad.rego").as_path(), 4), "{errs:?}");

    write(d, "bad.rego", "package main\n\ndeny contains msg if {\n    msg := nosuchfunction(1)\n}\n");
    let errs = load(d, Options::default()).unwrap_err();
    assert!(errs[0].location.is_some(), "a compile error is located: {errs:?}");

    write(d, "bad.rego", "package other\n\ndeny contains 1 if true\n");
    let errs = load(d, Options::default()).unwrap_err();
    assert!(errs[0].message.contains("is in package main"), "{errs:?}");

    write(d, "bad.rego", "package main\n");
    write(d, "data.json", "{\n  \"a\": \n}");
    let errs = load(d, Options::default()).unwrap_err();
    assert_eq!(errs[0].location.as_ref().unwrap().line, 3, "{errs:?}");

    let empty = tempfile::tempdir().unwrap();
    let errs = load(empty.path(), Options::default()).unwrap_err();
    assert!(errs[0].message.starts_with("no .rego policy file in"), "{errs:?}");
    let errs = PolicySet::load(&[d.join("missing")], Options::default()).unwrap_err();
    assert!(errs[0].message.contains("does not exist"), "{errs:?}");
}

#[test]
fn prints_are_returned_not_printed() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "p.rego",
        "package main\n\nwarn contains \"w\" if {\n  print(\"tier\", input.tenants[0].tier)\n}\n",
    );
    let mut set = load(dir.path(), Options::default()).unwrap();
    let checked = set.check(&tenant(Action::NoOp), false).unwrap();
    assert_eq!(checked.prints.len(), 1, "{checked:?}");
    assert!(checked.prints[0].ends_with(":4: tier free"), "{checked:?}");
}
