//! The drift report for people (text, Markdown) and machines (JSON).
//!
//! # JSON (`matih drift --format json`)
//!
//! ```json
//! {
//!   "format_version": "1.0",
//!   "drift": true,
//!   "summary": { "tenants": 2, "in_sync": 0, "drifted": 1, "busy": 1, "changed": 1, "deleted": 1,
//!                "read_failed": 0, "pending": 0, "ignored": 0 },
//!   "tenants": [
//!     { "slug": "acme", "tenant_id": "…", "source": "tenants/acme.hcl", "serial": 12,
//!       "status": "drifted", "busy_reason": null, "resources_read": 48, "findings": 2 },
//!     { "slug": "globex", …, "status": "busy", "busy_reason": "locked by … (apply …)", "findings": 0 }
//!   ],
//!   "findings": [
//!     { "tenant": "acme", "phase": "CREATE_NAMESPACE", "phase_number": 1,
//!       "address": "kubernetes_namespace.tenant", "type": "kubernetes_namespace", "name": "tenant",
//!       "kind": "changed", "action": null, "error": null,
//!       "attributes": [ { "path": "metadata.labels[\"matih.ai/region\"]",
//!                         "before": "eastus", "after": "westus" } ] }
//!   ],
//!   "ignored": [
//!     { "tenant": "acme", "address": "kubernetes_deployment.bi", "path": "spec.replicas",
//!       "manager": "kube-controller-manager" }
//!   ]
//! }
//! ```
//!
//! - `drift` is true when there is any finding (the `--detailed-exitcode` 2).
//! - `status` of a tenant: `in_sync`, `drifted` or `busy` (not read; `busy_reason` says who holds
//!   it). `serial` is the state serial compared with (`null`: nothing recorded).
//! - `findings` holds one entry per finding, tenants in spec order, then phase, address, kind.
//!   `kind` is `changed` (changed outside matih; `before` is what matih recorded, `after` what is
//!   live), `deleted` (gone outside matih), `read_failed` (`error` says why) or `pending` (the spec
//!   changed but was not applied; `action` is what `matih apply` would do: `create`, `update`,
//!   `replace`, `delete`; `before` is recorded, `after` desired).
//! - In `attributes`, an absent side is `null`; a secret is `"(sensitive value)"` (never its
//!   fingerprint), a value known only after apply `"(known after apply)"`. Paths are spelled as
//!   in plans.
//! - `ignored` lists differences that are not drift: live differences in fields another controller
//!   owns (`manager`), and differences an `ignore_changes` path of the catalog or the tenant's spec
//!   covers (`declared_at`, `difference`: `live` (`before` recorded, `after` live) or `spec` (a spec
//!   change left alone: `before` recorded, `after` desired), `before`, `after`).
//!
//! Output is deterministic: the same report gives the same bytes (no timestamps).
//!
//! **Invariant:** renders a finished report only; it decides nothing.

use std::fmt::Write as _;

use serde_json::{json, Value as J};

use super::{
    AttrDrift, Finding, FindingKind, Ignored, IgnoredWhy, Report, TenantReport, TenantStatusKind, FORMAT_VERSION,
};
use crate::phase::Phase;
use crate::plan::Action;
use crate::value::Value;

const SENSITIVE: &str = "(sensitive value)";
const UNKNOWN: &str = "(known after apply)";
/// GitHub's limit on a comment body.
const COMMENT_LIMIT: usize = 65_536;
/// The longest value shown inline in text and Markdown before it is shortened.
const INLINE_MAX: usize = 120;

fn json_value(v: &Value) -> J {
    match v {
        Value::Null => J::Null,
        Value::Bool(b) => J::Bool(*b),
        Value::Int(n) => J::from(*n),
        Value::String(s) => J::String(s.clone()),
        Value::List(items) => J::Array(items.iter().map(json_value).collect()),
        Value::Map(m) => J::Object(m.iter().map(|(k, v)| (k.clone(), json_value(v))).collect()),
        Value::Ref { .. } | Value::Computed { .. } => J::String(UNKNOWN.into()),
        Value::Secret(_) => J::String(SENSITIVE.into()),
    }
}

fn status_name(s: &TenantStatusKind) -> &'static str {
    match s {
        TenantStatusKind::InSync => "in_sync",
        TenantStatusKind::Drifted => "drifted",
        TenantStatusKind::Busy(_) => "busy",
    }
}

/// The report as the documented JSON, pretty-printed with a trailing newline.
pub fn render_json(report: &Report) -> String {
    let tenants: Vec<J> = report
        .tenants
        .iter()
        .map(|t| {
            json!({
                "slug": t.slug,
                "tenant_id": t.tenant_id,
                "source": t.source.as_ref().map(|p| p.display().to_string()),
                "serial": t.serial,
                "status": status_name(&t.status),
                "busy_reason": match &t.status { TenantStatusKind::Busy(r) => Some(r.as_str()), _ => None },
                "resources_read": t.read,
                "findings": t.findings.len(),
            })
        })
        .collect();
    let mut findings = Vec::new();
    let mut ignored = Vec::new();
    for t in &report.tenants {
        for f in &t.findings {
            findings.push(json!({
                "tenant": t.slug,
                "phase": f.phase.name(),
                "phase_number": f.phase.number(),
                "address": f.address.to_string(),
                "type": f.address.kind,
                "name": f.address.name,
                "kind": f.kind.name(),
                "action": f.action.map(Action::name),
                "error": f.error,
                "attributes": f.attributes.iter().map(|a| json!({
                    "path": a.path,
                    "before": a.before.as_ref().map_or(J::Null, json_value),
                    "after": a.after.as_ref().map_or(J::Null, json_value),
                })).collect::<Vec<_>>(),
            }));
        }
        for i in &t.ignored {
            ignored.push(match &i.why {
                IgnoredWhy::Controller { manager } => json!({
                    "tenant": t.slug,
                    "address": i.address.to_string(),
                    "path": i.path,
                    "manager": manager,
                }),
                IgnoredWhy::Declared { at, before, after, spec } => json!({
                    "tenant": t.slug,
                    "address": i.address.to_string(),
                    "path": i.path,
                    "declared_at": at,
                    "difference": if *spec { "spec" } else { "live" },
                    "before": before.as_ref().map_or(J::Null, json_value),
                    "after": after.as_ref().map_or(J::Null, json_value),
                }),
            });
        }
    }
    let doc = json!({
        "format_version": FORMAT_VERSION,
        "drift": report.has_drift(),
        "summary": report.counts(),
        "tenants": tenants,
        "findings": findings,
        "ignored": ignored,
    });
    let mut out = serde_json::to_string_pretty(&doc).expect("a JSON tree always serializes");
    out.push('\n');
    out
}

/// A value on one line: strings quoted, structures as compact JSON, secrets and unknowns as their
/// markers, anything long shortened (multi-line strings say how many lines they have).
fn inline(v: Option<&Value>) -> String {
    let Some(v) = v else { return "(absent)".into() };
    let s = match v {
        Value::Secret(_) => return SENSITIVE.into(),
        Value::Ref { .. } | Value::Computed { .. } => return UNKNOWN.into(),
        Value::String(s) if s.contains('\n') => {
            return format!("(text of {} lines)", s.lines().count());
        }
        other => json_value(other).to_string(),
    };
    if s.chars().count() > INLINE_MAX {
        let cut: String = s.chars().take(INLINE_MAX).collect();
        format!("{cut}…")
    } else {
        s
    }
}

/// An ignored difference on one line, for text and Markdown.
fn ignored_line(i: &Ignored) -> String {
    match &i.why {
        IgnoredWhy::Controller { manager } => {
            format!("(not drift: {} {} is owned by the controller {manager:?})", i.address, i.path)
        }
        IgnoredWhy::Declared { at, before, after, spec } => format!(
            "(ignored: {} {}: {} -> {}{}, ignore_changes at {at})",
            i.address,
            i.path,
            inline(before.as_ref()),
            inline(after.as_ref()),
            if *spec { " in the spec, not applied" } else { " live" }
        ),
    }
}

fn symbol(f: &Finding) -> &'static str {
    match f.kind {
        FindingKind::Changed => "~",
        FindingKind::Deleted => "-",
        FindingKind::ReadFailed => "?",
        FindingKind::Pending => "*",
    }
}

fn describe(f: &Finding) -> String {
    match f.kind {
        FindingKind::Changed => "changed outside matih".into(),
        FindingKind::Deleted => "deleted outside matih".into(),
        FindingKind::ReadFailed => format!("could not be read: {}", f.error.as_deref().unwrap_or("unknown error")),
        FindingKind::Pending => format!(
            "spec changed, not applied (apply would {})",
            match f.action {
                Some(Action::Create) => "create it",
                Some(Action::Adopt) => "adopt it",
                Some(Action::Update) => "update it in place",
                Some(Action::Replace) => "replace it",
                Some(Action::Delete) => "destroy it",
                Some(Action::NoOp) | None => "leave it",
            }
        ),
    }
}

fn attr_line(a: &AttrDrift) -> String {
    format!("{}: {} -> {}", a.path, inline(a.before.as_ref()), inline(a.after.as_ref()))
}

fn tenant_heading(t: &TenantReport) -> String {
    match &t.source {
        Some(p) => format!("Tenant {:?} ({})", t.slug, p.display()),
        None => format!("Tenant {:?}", t.slug),
    }
}

fn phase_label(p: Phase) -> String {
    format!("Phase {}/10: {}", p.number(), p.name())
}

fn summary_line(report: &Report) -> String {
    let c = report.counts();
    let mut s = format!(
        "Drift: {} changed, {} deleted, {} unreadable, {} pending in {} of {} tenant{}",
        c.changed,
        c.deleted,
        c.read_failed,
        c.pending,
        c.drifted,
        c.tenants,
        if c.tenants == 1 { "" } else { "s" }
    );
    if c.busy > 0 {
        let _ = write!(s, "; {} busy (not checked)", c.busy);
    }
    s.push('.');
    s
}

/// The report for a terminal: per tenant, per phase, one line per finding and one per attribute.
/// The last line counts the findings.
pub fn render_text(report: &Report) -> String {
    let mut out = String::new();
    if !report.has_drift() && report.counts().busy == 0 {
        let _ = writeln!(out, "No drift. The real world matches the recorded state and the specs.");
    }
    for t in &report.tenants {
        match &t.status {
            TenantStatusKind::InSync => {
                if report.tenants.len() > 1 && report.has_drift() {
                    let _ = writeln!(out, "{}: in sync ({} resources read)\n", tenant_heading(t), t.read);
                }
            }
            TenantStatusKind::Busy(reason) => {
                let _ = writeln!(out, "{}: busy, not checked: {reason}\n", tenant_heading(t));
            }
            TenantStatusKind::Drifted => {
                let _ = writeln!(out, "{}: {} finding(s)\n", tenant_heading(t), t.findings.len());
                let mut phase = None;
                for f in &t.findings {
                    if phase != Some(f.phase) {
                        phase = Some(f.phase);
                        let _ = writeln!(out, "  {}", phase_label(f.phase));
                    }
                    let _ = writeln!(out, "    {} {} {}", symbol(f), f.address, describe(f));
                    for a in &f.attributes {
                        let _ = writeln!(out, "        {}", attr_line(a));
                    }
                }
                out.push('\n');
            }
        }
        for i in &t.ignored {
            let _ = writeln!(out, "  {}", ignored_line(i));
        }
    }
    if report.has_drift() {
        let _ = writeln!(
            out,
            "Legend: ~ changed outside matih, - deleted outside matih, ? could not be read, * spec not applied.\n\
             `matih plan` shows the repair and `matih apply` performs it."
        );
    }
    let _ = writeln!(out, "{}", summary_line(report));
    out
}

fn escape_html(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// Backticks cannot be escaped inside a code span; a longer fence around the text can.
fn code(s: &str) -> String {
    let longest = s.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat(longest + 1);
    let pad = if s.starts_with('`') || s.ends_with('`') { " " } else { "" };
    format!("{fence}{pad}{s}{pad}{fence}")
}

/// The report as Markdown for a chat message or an issue: a table of tenants with findings, then
/// one collapsible section per tenant. At most 65,536 characters; what does not fit is counted.
pub fn render_markdown(report: &Report) -> String {
    render_markdown_with_limit(report, COMMENT_LIMIT)
}

pub(super) fn render_markdown_with_limit(report: &Report, limit: usize) -> String {
    let budget = limit.saturating_sub(512);
    let c = report.counts();
    let mut out = String::new();
    if !report.has_drift() {
        let _ =
            writeln!(out, "### matih drift: none\n\n{} tenant(s) match the recorded state and the specs.", c.in_sync);
    } else {
        let n = c.changed + c.deleted + c.read_failed + c.pending;
        let _ =
            writeln!(out, "### matih drift: {n} finding{} in {} tenant(s)\n", if n == 1 { "" } else { "s" }, c.drifted);
        out.push_str("| Tenant | Changed | Deleted | Unreadable | Pending |\n| --- | ---: | ---: | ---: | ---: |\n");
        let mut rows_left_out = 0;
        for t in report.tenants.iter().filter(|t| t.status == TenantStatusKind::Drifted) {
            if rows_left_out > 0 || out.len() > budget / 3 {
                rows_left_out += 1;
                continue;
            }
            let count = |k| t.findings.iter().filter(|f| f.kind == k).count();
            let _ = writeln!(
                out,
                "| `{}` | {} | {} | {} | {} |",
                t.slug,
                count(FindingKind::Changed),
                count(FindingKind::Deleted),
                count(FindingKind::ReadFailed),
                count(FindingKind::Pending)
            );
        }
        if rows_left_out > 0 {
            let _ = writeln!(out, "| … {rows_left_out} more drifted tenant(s) (size limit) | | | | |");
        }
        if c.in_sync > 0 {
            let _ = writeln!(out, "\n{} tenant(s) in sync.", c.in_sync);
        }
    }
    for t in &report.tenants {
        if let TenantStatusKind::Busy(reason) = &t.status {
            let _ = writeln!(out, "\n**`{}` is busy and was not checked:** {}", t.slug, escape_html(reason));
        }
    }
    out.push('\n');
    let mut left_out = 0;
    for t in report.tenants.iter().filter(|t| t.status == TenantStatusKind::Drifted) {
        let open = format!(
            "<details><summary>{}: {} finding(s)</summary>\n\n",
            escape_html(&tenant_heading(t)),
            t.findings.len()
        );
        let close = "</details>\n\n";
        if left_out > 0 || out.len() + open.len() + close.len() > budget {
            left_out += t.findings.len();
            continue;
        }
        out.push_str(&open);
        let mut phase = None;
        for f in &t.findings {
            let mut item = String::new();
            if phase != Some(f.phase) {
                let _ = writeln!(item, "{}**{}**\n", if phase.is_some() { "\n" } else { "" }, phase_label(f.phase));
                phase = Some(f.phase);
            }
            let _ = writeln!(item, "- {} {}", code(&f.address.to_string()), escape_html(&describe(f)));
            for a in &f.attributes {
                let _ = writeln!(
                    item,
                    "  - {}: {} → {}",
                    code(&a.path),
                    code(&inline(a.before.as_ref())),
                    code(&inline(a.after.as_ref()))
                );
            }
            if left_out > 0 || out.len() + item.len() + close.len() > budget {
                left_out += 1;
            } else {
                out.push_str(&item);
            }
        }
        out.push('\n');
        out.push_str(close);
    }
    let ignored: Vec<(&str, &Ignored)> =
        report.tenants.iter().flat_map(|t| t.ignored.iter().map(move |i| (t.slug.as_str(), i))).collect();
    if !ignored.is_empty() {
        out.push_str("**Not drift:**\n\n");
        let mut not_shown = 0;
        for (slug, i) in ignored {
            let line = format!("- `{slug}`: {}\n", code(&ignored_line(i)));
            if not_shown > 0 || out.len() + line.len() > budget {
                not_shown += 1;
            } else {
                out.push_str(&line);
            }
        }
        if not_shown > 0 {
            let _ = writeln!(out, "- … and {not_shown} more (size limit)");
        }
        out.push('\n');
    }
    if left_out > 0 {
        let _ = writeln!(
            out,
            "> **Note:** shortened to fit {limit} characters: {left_out} finding(s) not shown. \
             Run `matih drift` for the whole report."
        );
    }
    let _ = writeln!(out, "{}", summary_line(report));
    out
}
