//! `matih plan --policy DIR` (the plan checked against Rego policies, see `matih::policy`) and
//! `--json-shape` (matih's JSON plan or Terraform's shape of it, printed and handed to policies).

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::ValueEnum;

use matih::plan::{Plan, TenantPlan};
use matih::policy::{self, Outcome, PolicySet, Shape};

use super::{print_diagnostics, Format, Reported};

/// The shape of the JSON plan.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum JsonShape {
    /// matih's own JSON plan (README, "Plans"; src/plan/render/json.rs).
    #[default]
    Matih,
    /// Terraform's plan JSON (`terraform show -json`): resource_changes[].change.actions, before,
    /// after, after_unknown, before_sensitive, after_sensitive; planned_values.
    Terraform,
}

/// The Rego syntax policies are written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum RegoVersion {
    /// `deny[msg] { … }` (OPA before 1.0; a file with `import rego.v1` may use v1's).
    V0,
    /// `deny contains msg if { … }` (OPA 1.0's, conftest's default).
    V1,
}

#[derive(clap::Args, Debug)]
pub struct PolicyArgs {
    /// Check the plan against the Rego policies (OPA's language, conftest's conventions) in DIR
    /// (repeatable; a .rego file works too). Each tenant's plan is checked alone, as `input`;
    /// a message of a deny or violation rule fails the plan (exit 1, no plan file written), one of a
    /// warn rule is printed. The .json files in DIR are merged into `data`.
    #[arg(long, value_name = "DIR")]
    pub policy: Vec<PathBuf>,
    /// The Rego package whose deny, violation and warn rules --policy checks (repeatable;
    /// conftest's --namespace).
    #[arg(long, value_name = "PACKAGE", default_value = "main", requires = "policy")]
    pub policy_namespace: Vec<String>,
    /// The Rego syntax of the --policy files: v1 (`deny contains msg if`) or v0 (`deny[msg] { … }`).
    #[arg(long, value_enum, default_value_t = RegoVersion::V1, requires = "policy")]
    pub rego_version: RegoVersion,
    /// The shape of the JSON plan, printed with --format json and handed to --policy as `input`:
    /// matih's own, or terraform (Terraform's plan JSON, a tenant being module.tenant["SLUG"]) so
    /// that tools and policies written for Terraform plans read it.
    #[arg(long, value_enum, default_value_t = JsonShape::Matih)]
    pub json_shape: JsonShape,
}

impl PolicyArgs {
    /// Refuses a `--json-shape terraform` nothing would use, or with `--group` (Terraform's shape
    /// has no groups).
    pub fn check_shape(&self, format: Format, group: bool) -> Result<()> {
        if self.json_shape == JsonShape::Terraform {
            if format != Format::Json && self.policy.is_empty() {
                bail!("--json-shape terraform shapes the JSON plan: use it with --format json or --policy DIR");
            }
            if format == Format::Json && group {
                bail!("--group has no place in Terraform's plan JSON: leave out --group or --json-shape terraform");
            }
        }
        Ok(())
    }

    /// The policies of `--policy`, loaded (every diagnostic printed on failure); `None` without it.
    pub fn load(&self) -> Result<Option<Checker>> {
        if self.policy.is_empty() {
            return Ok(None);
        }
        let options = policy::Options {
            namespaces: self.policy_namespace.clone(),
            rego_v0: self.rego_version == RegoVersion::V0,
            shape: match self.json_shape {
                JsonShape::Matih => Shape::Matih,
                JsonShape::Terraform => Shape::Terraform,
            },
        };
        match PolicySet::load(&self.policy, options) {
            Ok(set) => Ok(Some(Checker { set, tenants: 0, lines: Vec::new(), failures: 0, warnings: 0 })),
            Err(diags) => {
                print_diagnostics(&diags);
                let n = diags.iter().filter(|d| d.is_error()).count();
                eprintln!("{n} error{} in the policies; nothing was planned.", if n == 1 { "" } else { "s" });
                Err(Reported.into())
            }
        }
    }
}

/// Checks tenants' plans one at a time and keeps what to report (findings are few; the plans are
/// not kept).
pub struct Checker {
    set: PolicySet,
    tenants: usize,
    lines: Vec<String>,
    failures: usize,
    warnings: usize,
}

impl Checker {
    pub fn check(&mut self, t: &TenantPlan, refresh_only: bool) -> Result<()> {
        let checked = self.set.check(t, refresh_only)?;
        self.tenants += 1;
        for p in checked.prints {
            self.lines.push(format!("print {}: {p}", t.slug));
        }
        for f in checked.findings {
            match f.outcome {
                Outcome::Failure => self.failures += 1,
                Outcome::Warning => self.warnings += 1,
            }
            self.lines.push(f.to_string());
        }
        Ok(())
    }

    pub fn check_plan(&mut self, plan: &Plan) -> Result<()> {
        plan.tenants.iter().try_for_each(|t| self.check(t, plan.refresh_only))
    }

    pub fn passed(&self) -> bool {
        self.failures == 0
    }

    /// Prints the findings and a summary on stderr; fails when a policy denied the plan.
    pub fn report(self, saving: bool) -> Result<()> {
        for line in &self.lines {
            eprintln!("{line}");
        }
        let files = self.set.files().count();
        let plural = |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
        let counts = format!(
            "{}, {} in {} checked against {}",
            plural(self.failures, "failure"),
            plural(self.warnings, "warning"),
            plural(self.tenants, "tenant"),
            plural(files, "policy file"),
        );
        if self.passed() {
            eprintln!("Policy check passed: {counts}.");
            return Ok(());
        }
        eprintln!("Policy check failed: {counts}.");
        let unsaved = if saving { "; no plan file was written" } else { "" };
        bail!("the plan was denied by policy ({}){unsaved}", plural(self.failures, "failure"))
    }
}
