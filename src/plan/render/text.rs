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

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::io::Write;

use super::group::{thousands, Groups, PLACEHOLDERS};
use super::stream::{Fleet, Spill};
use super::writer::{Layout, Mark, Writer, BOLD};
use super::{Prepared, Preparer};
use crate::phase::Phase;
use crate::plan::{Action, Partial, Plan, ResourceChange, Summary, TenantPlan};

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
    render_text_with(plan, opts, false)
}

/// [`render_text`], with `group`: tenants whose changes are the same apart from their names shown
/// once, as one group with its members (see `group.rs`); the others in sections of their own,
/// risky ones first.
pub fn render_text_with(plan: &Plan, opts: &TextOptions, group: bool) -> String {
    let mut r = TextStream::new(opts.clone(), Spill::memory());
    if group {
        r = r.grouped(Spill::memory());
    }
    r.fleet.refresh_only = plan.refresh_only;
    r.fleet.restore_of = plan.restore_of;
    for t in &plan.tenants {
        r.push(t).expect("writing to memory cannot fail");
    }
    let mut out = Vec::new();
    r.finish(&mut out).expect("writing to memory cannot fail");
    String::from_utf8(out).expect("the renderer writes UTF-8")
}

/// [`render_text`] one tenant at a time, for a fleet that is never held whole: each tenant's
/// section is rendered as it comes and set aside in a [`Spill`]; [`TextStream::finish`] writes
/// the legend (which needs every tenant's actions), the sections and the summary. Holds the
/// counts, the actions used and the first unchanged tenants' names, nothing else per tenant.
pub struct TextStream {
    opts: TextOptions,
    fleet: Fleet,
    used: BTreeSet<Action>,
    spill: Spill,
    /// The first tenant's section and its count line, held until a second tenant shows that the
    /// plan has several (a plan of one tenant has no count line).
    pending: Option<(String, String)>,
    unchanged: usize,
    unchanged_named: Vec<String>,
    /// Once [`TextStream::grouped`]: the tenants with changes, grouped; nothing goes to `spill` then.
    groups: Option<Groups>,
    /// The differences left alone by `ignore_changes`, one line each (`tenant: …`).
    ignored: Vec<String>,
}

impl TextStream {
    pub fn new(opts: TextOptions, spill: Spill) -> TextStream {
        TextStream {
            opts,
            fleet: Fleet::default(),
            used: BTreeSet::new(),
            spill,
            pending: None,
            unchanged: 0,
            unchanged_named: Vec::new(),
            groups: None,
            ignored: Vec::new(),
        }
    }

    /// Groups the tenants with changes (see [`render_text_with`]), the groups' renderings waiting
    /// in `spill` until the end.
    pub fn grouped(mut self, spill: Spill) -> TextStream {
        self.groups = Some(Groups::new(spill));
        self
    }

    /// How this stream renders a tenant ahead of [`TextStream::push_prepared`].
    pub fn preparer(&self) -> Preparer {
        Preparer::Text { color: self.opts.color, grouped: self.groups.is_some() }
    }

    /// Renders the next tenant of the plan.
    pub fn push(&mut self, tenant: &TenantPlan) -> std::io::Result<()> {
        let prepared = self.preparer().prepare(tenant);
        self.push_prepared(tenant, prepared)
    }

    /// Takes the next tenant of the plan, rendered ahead by [`TextStream::preparer`].
    pub fn push_prepared(&mut self, tenant: &TenantPlan, prepared: Prepared) -> std::io::Result<()> {
        self.fleet.push(tenant);
        self.ignored.extend(tenant.ignored.iter().map(|i| format!("{}: {}", tenant.slug, super::ignored_line(i))));
        self.used.extend(tenant.resource_changes.iter().map(|c| c.action));
        if let (Some(groups), Some(keyed)) = (&mut self.groups, prepared.keyed) {
            let color = self.opts.color;
            return groups.push(tenant, keyed, &mut |shown, canon| {
                // The text rendered ahead when it has no colours; canonicalised from where it is.
                let rendered;
                let out = match &shown.text {
                    Some(text) if !color => text.as_str(),
                    _ => {
                        let mut w = Writer::new(Layout { color, gutter: false, compact_deletes: false });
                        changes(&mut w, tenant);
                        rendered = w.out;
                        &rendered
                    }
                };
                canon.map_or_else(|| out.to_string(), |c| c.apply(out))
            });
        }
        if self.fleet.tenants == 2 {
            if let Some((section, line)) = self.pending.take() {
                self.spill.write(&section)?;
                self.spill.write(&line)?;
            }
        }
        if let Some(section) = prepared.section {
            let line = format!("Tenant {:?}: {}\n\n", tenant.slug, counts(&tenant.summary()));
            if self.fleet.tenants == 1 {
                self.pending = Some((section, line));
            } else {
                self.spill.write(&section)?;
                self.spill.write(&line)?;
            }
        } else {
            self.unchanged += 1;
            if self.unchanged_named.len() < UNCHANGED_NAMED {
                self.unchanged_named.push(format!("{:?}", tenant.slug));
            }
        }
        Ok(())
    }

    /// Writes the whole plan to `out`.
    pub fn finish(self, out: &mut dyn Write) -> std::io::Result<()> {
        if let Some(note) = partial_note(self.fleet.partial()) {
            write!(out, "{note}\n\n")?;
        }
        let summary = self.fleet.summary;
        if !self.ignored.is_empty() {
            writeln!(out, "{}:", super::IGNORED_HEADING)?;
            for line in &self.ignored {
                writeln!(out, "  {line}")?;
            }
            out.write_all(b"\n")?;
        }
        if summary.is_empty() && self.fleet.refresh_only {
            out.write_all(b"No changes. The state matches what is live.\n")?;
        } else if summary.is_empty() {
            out.write_all(b"No changes. The tenants match the configuration.\n")?;
        } else {
            let mut w = Writer::new(Layout { color: self.opts.color, gutter: false, compact_deletes: false });
            legend(&mut w, &self.used);
            out.write_all(w.out.as_bytes())?;
            if let Some(groups) = self.groups {
                write_groups(out, groups, &w, self.fleet.tenants > 1)?;
            }
            self.spill.copy_to(out)?;
            if let Some((section, _)) = &self.pending {
                out.write_all(section.as_bytes())?;
            }
            if self.unchanged > 0 {
                let mut names = self.unchanged_named.join(", ");
                if self.unchanged > UNCHANGED_NAMED {
                    let _ = write!(names, " and {} more", self.unchanged - UNCHANGED_NAMED);
                }
                let which = if self.unchanged == 1 { "tenant has" } else { "tenants have" };
                write!(out, "{} {which} no changes: {names}.\n\n", self.unchanged)?;
            }
            let plan_word = w.paint(BOLD, "Plan:");
            if let Some(serial) = self.fleet.restore_of {
                writeln!(out, "{plan_word} {}", restore_counts(&summary, serial))?;
            } else if self.fleet.refresh_only {
                writeln!(out, "{plan_word} {}", refresh_counts(&summary))?;
            } else {
                writeln!(out, "{plan_word} {}", counts(&summary))?;
            }
        }
        if let Some(digest) = &self.opts.digest {
            writeln!(out, "Plan file digest: {digest}")?;
        }
        Ok(())
    }
}

/// The summary of a refresh-only plan: what applying it records and forgets.
pub(super) fn refresh_counts(s: &Summary) -> String {
    format!(
        "{} to record, {} to forget (refresh-only: applying it writes the live values to the state and changes \
         nothing in the real world).",
        s.change, s.destroy
    )
}

/// The summary of a restore plan (`matih state restore`): what applying it does to the record.
pub(super) fn restore_counts(s: &Summary, serial: u64) -> String {
    format!(
        "{} to record again, {} to change in the record, {} to forget (restore of serial {serial}: applying it \
         records serial {serial}'s resources as a new serial and changes nothing in the real world).",
        s.add + s.replace,
        s.change,
        s.destroy
    )
}

/// What a partial plan (`--target`, `--exclude`) says first, in text and markdown.
pub(super) fn partial_note(partial: Option<(&Partial, usize)>) -> Option<String> {
    let (p, left_out) = partial?;
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
    let moved = if s.moved > 0 { format!("{} to move, ", s.moved) } else { String::new() };
    format!("{moved}{adopt}{} to add, {} to change, {} to destroy.", s.to_add(), s.change, s.to_destroy())
}

/// Terraform's legend, with only the symbols this plan uses.
fn legend(w: &mut Writer<'_>, used: &BTreeSet<Action>) {
    let used = |a: Action| used.contains(&a);
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

/// The sections of the groups of tenants: for a group of one, the tenant's section as without
/// grouping (with its count line when the plan has several tenants); for a larger one, its size
/// and members, its changes once (canonical) and its count line.
fn write_groups(out: &mut dyn Write, groups: Groups, w: &Writer<'_>, several: bool) -> std::io::Result<()> {
    let (list, mut rendered) = groups.finish()?;
    for g in &list {
        let body = rendered.get(g)?;
        if g.members.len() == 1 {
            writeln!(out, "{}\n", w.paint(BOLD, &g.heading))?;
            out.write_all(body.as_bytes())?;
            if several {
                write!(out, "Tenant {:?}: {}\n\n", g.members[0], counts(&g.summary))?;
            }
            continue;
        }
        let n = thousands(g.members.len());
        let title = format!("{n} tenants with the same changes, shown once ({PLACEHOLDERS}):");
        writeln!(out, "{}", w.paint(BOLD, &title))?;
        for line in wrap(&g.named(usize::MAX, '"'), 100) {
            writeln!(out, "  {line}")?;
        }
        out.write_all(b"\n")?;
        out.write_all(body.as_bytes())?;
        write!(out, "{n} tenants, each: {}\n\n", counts(&g.summary))?;
    }
    Ok(())
}

/// `list` (words separated by `, `) in lines of at most `width` characters where it can.
fn wrap(list: &str, width: usize) -> Vec<String> {
    let mut lines = vec![String::new()];
    for item in list.split_inclusive(", ") {
        let line = lines.last_mut().expect("never empty");
        if !line.is_empty() && line.len() + item.trim_end().len() > width {
            let done = line.trim_end().to_string();
            *line = done;
            lines.push(String::new());
        }
        lines.last_mut().expect("never empty").push_str(item);
    }
    lines
}

/// A tenant's section: its heading and its changes by phase.
pub(super) fn section(tenant: &TenantPlan, color: bool) -> String {
    let mut w = Writer::for_tenant(Layout { color, gutter: false, compact_deletes: false });
    let heading = heading(tenant);
    let heading = w.paint(BOLD, &heading);
    let _ = writeln!(w.out, "{heading}\n");
    changes(&mut w, tenant);
    w.finish_tenant()
}

/// A tenant's changes by phase, as its section shows them under its heading.
pub(super) fn changes<'p>(w: &mut Writer<'p>, tenant: &'p TenantPlan) {
    let mut phase: Option<Phase> = None;
    let moved_to = |c: &ResourceChange| tenant.moved.iter().find(|m| m.to == c.address);
    for change in tenant.resource_changes.iter().filter(|c| c.action != Action::NoOp || moved_to(c).is_some()) {
        if phase != Some(change.phase) {
            phase = Some(change.phase);
            let label = w.paint(BOLD, &phase_label(change.phase));
            let _ = writeln!(w.out, "{label}\n");
        }
        match moved_to(change) {
            // A move alone, as Terraform shows it: the header and the attributes hidden.
            Some(m) if change.action == Action::NoOp => {
                let head = w.paint(BOLD, &format!("# {} has moved to {}", m.from, m.to));
                let hidden = change.after.as_ref().map_or(0, |a| a.len());
                let _ = writeln!(
                    w.out,
                    "  {head}\n  # (moved block at {})\n    resource \"{}\" \"{}\" {{\n        # ({hidden} unchanged \
                     attribute{} hidden)\n    }}",
                    m.declared_at,
                    m.to.kind,
                    m.to.name,
                    if hidden == 1 { "" } else { "s" }
                );
            }
            Some(m) => {
                let head = w.paint(BOLD, &format!("# {} has moved to {}", m.from, m.to));
                let _ = writeln!(w.out, "  {head}");
                w.resource(change);
            }
            None => w.resource(change),
        }
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
