//! Policy checks of plans: Rego policies (OPA's language, interpreted in-process by `regorus`)
//! evaluated against each tenant's plan, with conftest's conventions, as Atlantis runs conftest
//! and Terraform Cloud runs Sentinel between plan and apply (`matih plan --policy DIR`).
//!
//! - **Files.** Every `.rego` file under the given directories (or a `.rego` file given itself),
//!   in path order; `*_test.rego` files (`opa test`'s) are left out. Every `.json` file there is a
//!   data document merged into `data` (conftest's `--data`), e.g. approvals a policy consults.
//! - **Rules.** In each checked package (`main` by default, conftest's namespace), the rules
//!   named `deny`, `violation` or `warn`, alone or followed by `_` and a suffix (`deny_public_lb`):
//!   `deny…` and `violation…` fail the plan, `warn…` is printed. A rule's value is a set (or list)
//!   of messages: strings, or objects with a `msg` string (conftest's structured results); a
//!   boolean rule that is true counts once.
//! - **Input.** One tenant at a time: `input` is the JSON plan of that tenant alone, as
//!   `matih plan FILE --format json` prints it ([`Shape::Matih`]), or in Terraform's plan-JSON
//!   shape ([`Shape::Terraform`], `--json-shape terraform`), so policies written for Terraform
//!   plans run unchanged. Per tenant, so that a fleet is checked in bounded memory as it is
//!   planned, and every message names its tenant. Secrets are never in the input (markers stand
//!   in for them, as in every rendering).
//! - **Errors.** A Rego syntax or compile error, or a data file that is not JSON, is a located
//!   [`Diagnostic`] (`file:line:col`); an error while evaluating is a [`PolicyError`] naming the
//!   tenant.
//!
//! **Invariant:** reads only the policy files and the plan it is handed; prints nothing (what
//! policies `print` is returned with the findings).

mod load;

use std::collections::BTreeSet;
use std::fmt;
use std::path::PathBuf;

use serde_json::Value as J;

use crate::diag::Diagnostic;
use crate::plan::{self, TenantPlan};

/// The shape of the plan a policy sees as `input`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Shape {
    /// matih's own JSON plan (`matih plan --format json`).
    #[default]
    Matih,
    /// Terraform's plan JSON (`terraform show -json`), see `plan::terraform_document`.
    Terraform,
}

/// How policies are loaded and checked.
#[derive(Clone, Debug)]
pub struct Options {
    /// The packages whose rules are checked (conftest's `--namespace`): `main`, `terraform.aws`.
    pub namespaces: Vec<String>,
    /// Rego v0 syntax (`deny[msg] { … }` without `import rego.v1`) instead of v1.
    pub rego_v0: bool,
    pub shape: Shape,
}

impl Default for Options {
    fn default() -> Self {
        Options { namespaces: vec!["main".to_string()], rego_v0: false, shape: Shape::Matih }
    }
}

/// Whether a finding fails the plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    /// From a `deny…` or `violation…` rule: the plan fails.
    Failure,
    /// From a `warn…` rule: printed, the plan passes.
    Warning,
}

/// One message of one rule for one tenant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub outcome: Outcome,
    pub tenant: String,
    /// `main.deny_public_load_balancer`: package and rule.
    pub rule: String,
    /// The policy files that declare the rule (one, unless a package spreads it over several).
    pub files: Vec<String>,
    pub message: String,
}

impl fmt::Display for Finding {
    /// `FAIL acme: examples/policies/data_loss.rego: main.deny: postgresql_schema.tenant …`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let label = match self.outcome {
            Outcome::Failure => "FAIL",
            Outcome::Warning => "WARN",
        };
        let files = if self.files.is_empty() { "(no file declares it)".to_string() } else { self.files.join(", ") };
        write!(f, "{label} {}: {files}: {}: {}", self.tenant, self.rule, self.message)
    }
}

/// What checking one tenant's plan found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Checked {
    /// Failures first, then warnings; in rule order, then message order.
    pub findings: Vec<Finding>,
    /// What the policies `print`ed, `file:line: text`.
    pub prints: Vec<String>,
}

/// A policy could not be evaluated against a tenant's plan.
#[derive(Debug, thiserror::Error)]
#[error("policy evaluation failed for tenant {tenant:?}: {message}")]
pub struct PolicyError {
    pub tenant: String,
    pub message: String,
}

/// One loaded policy file.
#[derive(Debug)]
struct PolicyFile {
    path: String,
    /// `main`, `terraform.aws`.
    package: String,
    /// The rules it declares (`deny`, `deny_data_loss`, helpers), not its functions.
    rules: BTreeSet<String>,
}

/// The loaded policies, ready to check plans.
pub struct PolicySet {
    engine: regorus::Engine,
    files: Vec<PolicyFile>,
    options: Options,
}

impl fmt::Debug for PolicySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PolicySet").field("files", &self.files).field("options", &self.options).finish()
    }
}

/// The kind of a rule by conftest's naming: `deny`, `violation` or `warn`, optionally followed by
/// `_suffix` parts of letters and digits.
fn rule_outcome(name: &str) -> Option<Outcome> {
    let (outcome, rest) = if let Some(rest) = name.strip_prefix("deny") {
        (Outcome::Failure, rest)
    } else if let Some(rest) = name.strip_prefix("violation") {
        (Outcome::Failure, rest)
    } else {
        (Outcome::Warning, name.strip_prefix("warn")?)
    };
    let suffix_ok = rest.is_empty()
        || rest.strip_prefix('_').is_some_and(|r| {
            r.split('_').all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_alphanumeric()))
        });
    suffix_ok.then_some(outcome)
}

/// The messages of one rule's value.
fn messages(value: &J) -> Vec<String> {
    let one = |v: &J| match v {
        J::String(s) => s.clone(),
        J::Object(o) => match o.get("msg") {
            Some(J::String(s)) => s.clone(),
            _ => v.to_string(),
        },
        other => other.to_string(),
    };
    match value {
        J::Array(items) => items.iter().map(one).collect(),
        J::Bool(true) => vec!["(the rule is true)".to_string()],
        J::Bool(false) | J::Null => Vec::new(),
        J::String(s) if s == "<undefined>" => Vec::new(),
        other => vec![one(other)],
    }
}

impl PolicySet {
    /// Loads the policies of `paths` (directories or `.rego` files): every diagnostic at once
    /// when any is an error (see the module's documentation).
    pub fn load(paths: &[PathBuf], options: Options) -> Result<PolicySet, Vec<Diagnostic>> {
        load::load(paths, options)
    }

    /// The policy files loaded, in order.
    pub fn files(&self) -> impl Iterator<Item = &str> {
        self.files.iter().map(|f| f.path.as_str())
    }

    /// Checks the plan of one tenant (`refresh_only` as its plan's).
    pub fn check(&mut self, t: &TenantPlan, refresh_only: bool) -> Result<Checked, PolicyError> {
        let doc = match self.options.shape {
            Shape::Matih => plan::json_document(t, refresh_only),
            Shape::Terraform => plan::terraform_document([t]),
        };
        let fail = |message: String| PolicyError { tenant: t.slug.clone(), message };
        let input = serde_json::from_value::<regorus::Value>(doc).map_err(|e| fail(e.to_string()))?;
        self.engine.set_input(input);
        let mut checked = Checked::default();
        for ns in self.options.namespaces.clone() {
            let rules = self.evaluate(&ns).map_err(|e| fail(format!("{e:#}")))?;
            for (rule, value) in rules {
                let Some(outcome) = rule_outcome(&rule) else { continue };
                let files = self.declaring(&ns, &rule);
                for message in messages(&value) {
                    checked.findings.push(Finding {
                        outcome,
                        tenant: t.slug.clone(),
                        rule: format!("{ns}.{rule}"),
                        files: files.clone(),
                        message,
                    });
                }
            }
        }
        checked.findings.sort_by_key(|f| f.outcome);
        checked.prints = self.engine.take_prints().map_err(|e| fail(e.to_string()))?;
        Ok(checked)
    }

    /// Every rule of package `ns` with its value for the current input (undefined ones absent).
    fn evaluate(&mut self, ns: &str) -> anyhow::Result<Vec<(String, J)>> {
        let results = self.engine.eval_query(format!("data.{ns}"), false)?;
        let value = results
            .result
            .first()
            .and_then(|r| r.expressions.first())
            .map(|e| serde_json::to_value(&e.value))
            .transpose()?;
        Ok(match value {
            Some(J::Object(rules)) => rules.into_iter().collect(),
            _ => Vec::new(),
        })
    }

    /// The files of package `ns` that declare `rule`.
    fn declaring(&self, ns: &str, rule: &str) -> Vec<String> {
        self.files.iter().filter(|f| f.package == ns && f.rules.contains(rule)).map(|f| f.path.clone()).collect()
    }
}

#[cfg(test)]
mod tests;
