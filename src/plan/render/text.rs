//! The plan as Terraform prints it, for terminals.
//!
//! ```text
//! Resource actions are indicated with the following symbols:
//!   + create
//!
//! Tenant "acme" (tenants/acme.hcl)
//!
//! Phase 1/10: CREATE_NAMESPACE
//!
//!   # kubernetes_namespace.tenant will be created
//!   + resource "kubernetes_namespace" "tenant" {
//!       + metadata = {
//!           + name = "matih-acme"
//!         }
//!     }
//!
//! Plan: 1 to add, 0 to change, 0 to destroy.
//! ```
//!
//! Tenants without changes are not detailed; when others have changes, one line names them.
//!
//! **Invariant:** reads a finished plan only; it never decides what changes.

use std::fmt::Write as _;

use super::writer::{Layout, Mark, Writer, BOLD};
use crate::phase::Phase;
use crate::plan::{Action, Plan, Summary, TenantPlan};

/// Options of [`render_text`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TextOptions {
    /// ANSI colours like Terraform's (green add, yellow change, red destroy). Without them the
    /// output contains no escape codes at all.
    pub color: bool,
    /// The SHA-256 digest of the plan file the plan was saved to or read from (`sha256:…`),
    /// printed after the summary so that a reviewer can pin it (`matih apply --expect-digest`).
    pub digest: Option<String>,
}

/// How many unchanged tenants the text output names before it only counts them.
const UNCHANGED_NAMED: usize = 10;

/// Renders the plan as Terraform-like text. The last line is the `Plan: …` summary, or
/// `No changes. The tenants match the configuration.` when nothing changes; for a saved plan, it
/// is followed by `Plan file digest: sha256:…`.
pub fn render_text(plan: &Plan, opts: &TextOptions) -> String {
    let mut out = match partial_note(plan) {
        Some(note) => format!("{note}\n\n"),
        None => String::new(),
    };
    out.push_str(&render_body(plan, opts));
    if let Some(digest) = &opts.digest {
        let _ = writeln!(out, "Plan file digest: {digest}");
    }
    out
}

fn render_body(plan: &Plan, opts: &TextOptions) -> String {
    let summary = plan.summary();
    if summary.is_empty() && plan.refresh_only {
        return "No changes. The state matches what is live.\n".to_string();
    }
    if summary.is_empty() {
        return "No changes. The tenants match the configuration.\n".to_string();
    }
    let mut w = Writer::new(Layout { color: opts.color, gutter: false, compact_deletes: false });
    legend(&mut w, plan);
    let several = plan.tenants.len() > 1;
    for tenant in plan.tenants.iter().filter(|t| t.has_changes()) {
        tenant_section(&mut w, tenant);
        if several {
            let line = format!("Tenant {:?}: {}", tenant.slug, counts(&tenant.summary()));
            w.out.push_str(&line);
            w.out.push_str("\n\n");
        }
    }
    let unchanged: Vec<&str> = plan.tenants.iter().filter(|t| !t.has_changes()).map(|t| t.slug.as_str()).collect();
    if !unchanged.is_empty() {
        let mut names = unchanged.iter().take(UNCHANGED_NAMED).map(|s| format!("{s:?}")).collect::<Vec<_>>().join(", ");
        if unchanged.len() > UNCHANGED_NAMED {
            let _ = write!(names, " and {} more", unchanged.len() - UNCHANGED_NAMED);
        }
        let which = if unchanged.len() == 1 { "tenant has" } else { "tenants have" };
        let _ = writeln!(w.out, "{} {which} no changes: {names}.\n", unchanged.len());
    }
    let plan_word = w.paint(BOLD, "Plan:");
    if plan.refresh_only {
        let _ = writeln!(w.out, "{plan_word} {}", refresh_counts(&summary));
    } else {
        let _ = writeln!(w.out, "{plan_word} {}", counts(&summary));
    }
    w.out
}

/// The summary of a refresh-only plan: what applying it records and forgets.
pub(super) fn refresh_counts(s: &Summary) -> String {
    format!(
        "{} to record, {} to forget (refresh-only: applying it writes the live values to the state and changes \
         nothing in the real world).",
        s.change, s.destroy
    )
}

/// What a partial plan (`--target`, `--exclude`) says first, in text and markdown.
pub(super) fn partial_note(plan: &Plan) -> Option<String> {
    let (p, left_out) = plan.partial()?;
    let mut asked = Vec::new();
    if !p.target.is_empty() {
        asked.push(format!("--target {}", p.target.join(", ")));
    }
    if !p.exclude.is_empty() {
        asked.push(format!("--exclude {}", p.exclude.join(", ")));
    }
    Some(format!(
        "Partial plan ({}): only the resources selected and what they need. {left_out} other change{} of these \
         tenants {} not in this plan; run matih plan without --target/--exclude for all of it.",
        asked.join("; "),
        if left_out == 1 { "" } else { "s" },
        if left_out == 1 { "is" } else { "are" },
    ))
}

/// `N to add, M to change, K to destroy.` counted the Terraform way (a replace adds and destroys).
/// Adoptions come first when there are any (`1 to adopt, …`), as Terraform's `N to import`.
pub(super) fn counts(s: &Summary) -> String {
    let adopt = if s.adopt > 0 { format!("{} to adopt, ", s.adopt) } else { String::new() };
    format!("{adopt}{} to add, {} to change, {} to destroy.", s.to_add(), s.change, s.to_destroy())
}

/// Terraform's legend, with only the symbols this plan uses.
fn legend(w: &mut Writer<'_>, plan: &Plan) {
    let used = |a: Action| plan.tenants.iter().flat_map(|t| &t.resource_changes).any(|c| c.action == a);
    w.out.push_str("Resource actions are indicated with the following symbols:\n");
    let rows = [
        (Action::Adopt, Mark::Adopt, "adopt (exists, not recorded: taken over)"),
        (Action::Create, Mark::Add, "create"),
        (Action::Update, Mark::Change, "update in-place"),
        (Action::Delete, Mark::Remove, "destroy"),
        (Action::Replace, Mark::Replace, "destroy and then create replacement"),
    ];
    for (action, mark, what) in rows {
        if used(action) {
            let pad = match mark {
                Mark::Replace => "",
                Mark::Adopt => " ",
                _ => "  ",
            };
            let _ = writeln!(w.out, "{pad}{} {what}", w.symbol(mark));
        }
    }
    w.out.push('\n');
}

fn tenant_section<'p>(w: &mut Writer<'p>, tenant: &'p TenantPlan) {
    let heading = heading(tenant);
    let heading = w.paint(BOLD, &heading);
    let _ = writeln!(w.out, "{heading}\n");
    let mut phase: Option<Phase> = None;
    for change in tenant.resource_changes.iter().filter(|c| c.action != Action::NoOp) {
        if phase != Some(change.phase) {
            phase = Some(change.phase);
            let label = w.paint(BOLD, &phase_label(change.phase));
            let _ = writeln!(w.out, "{label}\n");
        }
        w.resource(change);
        w.out.push('\n');
    }
}

/// `Tenant "acme" (tenants/acme.hcl)`, or without the parenthesis when the source is unknown.
pub(super) fn heading(tenant: &TenantPlan) -> String {
    match &tenant.source {
        Some(source) => format!("Tenant {:?} ({})", tenant.slug, source.display()),
        None => format!("Tenant {:?}", tenant.slug),
    }
}

/// `Phase 1/10: CREATE_NAMESPACE`.
pub(super) fn phase_label(phase: Phase) -> String {
    format!("Phase {}/{}: {}", phase.number(), Phase::ALL.len(), phase.name())
}
