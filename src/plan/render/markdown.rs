//! The plan as Markdown, for a pull request comment (`matih plan --format markdown`).
//!
//! Layout: a title with Terraform's counts, a table of the tenants that change (add, change,
//! replace and destroy counted separately), a **Risks** section, then one collapsed
//! `<details>` per tenant holding one ```` ```diff ```` block per phase. No-ops are hidden; deletes
//! show only their header (their attributes are in the text and JSON plans).
//!
//! Risks are, per resource (each listed once, under the first category that fits):
//! 1. *Data loss*: a `postgresql_schema` or `postgresql_database` deleted or replaced, or a
//!    `postgresql_migrations` change that runs a migration (new, or a repeatable one whose
//!    checksum changed) containing a statement that drops data: `DROP TABLE|SCHEMA|DATABASE|
//!    COLUMN|MATERIALIZED VIEW|OWNED|SEQUENCE`, `ALTER TABLE … DROP [COLUMN] name`, `TRUNCATE`.
//!    Comments and string literals are ignored; each such statement is quoted.
//! 2. *Isolation, access and quotas*: any change to `kubernetes_network_policy`,
//!    `kubernetes_role*`, `kubernetes_cluster_role*`, `kubernetes_resource_quota`,
//!    `kubernetes_limit_range`, `postgresql_role` (other than a password rotation), or to the labels
//!    of `kubernetes_namespace` (network policies select namespaces by them).
//! 3. *DNS and TLS*: any change to `dns_*`, `kubernetes_certificate` or `kubernetes_ingress`, and
//!    anything of phase 6 (the ingress controller, its LoadBalancer Service whose IP the DNS records
//!    point to) deleted or replaced.
//! 4. *Credentials rotated*: an update that generates a secret anew (a recorded secret changes to
//!    one generated at apply: the tenant's database password); the services using it need the
//!    new Secret.
//! 5. *Destroyed or replaced*: anything else deleted or replaced.
//!
//! For categories 2 and 3, and for migrations, creates count only for tenants that already have
//! state: everything is created when a tenant is first provisioned, and that is not a risk to
//! review line by line.
//!
//! GitHub refuses comments over 65,536 characters. The comment is kept under that by dropping
//! whole items from the end (table rows, risks, then resource diffs) and saying what was left
//! out; the title and counts are always there.
//!
//! **Invariant:** reads a finished plan only; it never decides what changes.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::group::{change_list, thousands, Group, Groups, PLACEHOLDERS};
use super::risk::{verb, Risk};
use super::stream::{Fleet, Spill};
use super::text::{counts, heading, partial_note, phase_label};
use super::writer::{Layout, Writer};
use super::{Prepared, Preparer};
use crate::phase::Phase;
use crate::plan::{Action, Plan, ResourceChange, TenantPlan};

/// GitHub's limit on the body of a comment, in characters.
const GITHUB_COMMENT_LIMIT: usize = 65_536;
/// Room kept for the notes that say what was left out.
const NOTE_RESERVE: usize = 1_024;

/// Renders the plan as a Markdown PR comment of at most 65,536 characters, tenants with the same
/// changes grouped (see [`render_markdown_with`]).
pub fn render_markdown(plan: &Plan) -> String {
    render_with_limit(plan, GITHUB_COMMENT_LIMIT, None, true)
}

/// [`render_markdown`] of a plan saved to a plan file whose SHA-256 digest is `digest`
/// (`sha256:…`): a line under the title names it, for the reviewer to pin with
/// `matih apply FILE --expect-digest`.
pub fn render_markdown_saved(plan: &Plan, digest: Option<&str>) -> String {
    render_with_limit(plan, GITHUB_COMMENT_LIMIT, digest, true)
}

/// [`render_markdown_saved`], grouping chosen: with `group`, when several tenants have the same
/// changes apart from their names (see `group.rs`), the table has a row per group, the risks and
/// the details name each group once (its size, its members, its changes with `${slug}` and
/// `${tenant_id}` for the names), risky groups and tenants first; without, or when no two tenants
/// share their changes, a row and a section per tenant in plan order.
pub fn render_markdown_with(plan: &Plan, digest: Option<&str>, group: bool) -> String {
    render_with_limit(plan, GITHUB_COMMENT_LIMIT, digest, group)
}

/// Appends items while they fit in `budget` bytes (bytes are never fewer than GitHub's
/// characters, so the limit holds); returns how many did not fit.
fn fill(out: &mut String, items: impl IntoIterator<Item = String>, budget: usize) -> usize {
    let mut left_out = 0;
    for item in items {
        if left_out == 0 && out.len() + item.len() <= budget {
            out.push_str(&item);
        } else {
            left_out += 1;
        }
    }
    left_out
}

fn escape_html(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// A code fence longer than any run of backticks in `body`.
fn fence(body: &str) -> String {
    let longest = body.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    "`".repeat(longest.max(2) + 1)
}

pub(super) fn render_with_limit(plan: &Plan, limit: usize, digest: Option<&str>, group: bool) -> String {
    let mut r = MarkdownStream::with_limit(limit, digest.map(str::to_string));
    if group {
        r = r.grouped(Spill::memory());
    }
    r.fleet.refresh_only = plan.refresh_only;
    for t in &plan.tenants {
        r.push(t).expect("writing to memory cannot fail");
    }
    let mut out = Vec::new();
    r.finish(&mut out).expect("writing to memory cannot fail");
    String::from_utf8(out).expect("the renderer writes UTF-8")
}

/// One risk found, by category: its list line (`- \`slug\`: …`).
type RiskLines = BTreeMap<Risk, (Vec<String>, usize, usize)>;

/// One tenant's `<details>` rendered in full, before the comment's limit cuts it: its opening
/// line and, per phase, the diff block of each change. Serialized while it waits in a group.
#[derive(Serialize, Deserialize)]
struct Details {
    open: String,
    phases: Vec<(Phase, Vec<String>)>,
}

/// [`render_markdown_saved`] one tenant at a time (see [`super::TextStream`]). A comment is
/// bounded, so no spill is needed: the table rows, risks and details that can still fit are kept
/// (each part at most the size of the comment), and what cannot is only counted, exactly as the
/// whole-plan rendering would cut it.
pub struct MarkdownStream {
    limit: usize,
    budget: usize,
    digest: Option<String>,
    fleet: Fleet,
    /// Table rows that fit in a quarter of the budget, and how many did not.
    rows: String,
    rows_left_out: usize,
    changed: usize,
    /// Per category: lines kept (while the category alone fits in half the budget), their
    /// bytes, and lines dropped.
    risks: RiskLines,
    /// Rendered details, while those before them could still leave room; `details_bytes` is a
    /// lower bound of what they take.
    details: Vec<(Details, usize)>,
    details_bytes: usize,
    /// Changes of the tenants whose details cannot fit whatever comes before them.
    details_dropped: usize,
    /// When grouping: the tenants with changes, grouped (their renderings in a spill); used
    /// instead of the above when some group has several members.
    groups: Option<Groups>,
    /// The differences left alone by `ignore_changes` that fit in [`IGNORED_RESERVE`], one list
    /// line each, and how many did not.
    ignored: String,
    ignored_left_out: usize,
}

/// What the list of differences left alone may take of [`NOTE_RESERVE`].
const IGNORED_RESERVE: usize = 600;

impl MarkdownStream {
    pub fn new(digest: Option<String>) -> MarkdownStream {
        MarkdownStream::with_limit(GITHUB_COMMENT_LIMIT, digest)
    }

    /// Groups tenants with the same changes (see [`render_markdown_with`]), the groups'
    /// renderings waiting in `spill` until the end.
    pub fn grouped(mut self, spill: Spill) -> MarkdownStream {
        self.groups = Some(Groups::new(spill));
        self
    }

    fn with_limit(limit: usize, digest: Option<String>) -> MarkdownStream {
        MarkdownStream {
            limit,
            budget: limit.saturating_sub(NOTE_RESERVE),
            digest,
            fleet: Fleet::default(),
            rows: String::new(),
            rows_left_out: 0,
            changed: 0,
            risks: BTreeMap::new(),
            details: Vec::new(),
            details_bytes: 0,
            details_dropped: 0,
            groups: None,
            ignored: String::new(),
            ignored_left_out: 0,
        }
    }

    /// How this stream renders a tenant ahead of [`MarkdownStream::push_prepared`].
    pub fn preparer(&self) -> Preparer {
        Preparer::Markdown { grouped: self.groups.is_some() }
    }

    pub fn push(&mut self, tenant: &TenantPlan) -> std::io::Result<()> {
        let prepared = self.preparer().prepare(tenant);
        self.push_prepared(tenant, prepared)
    }

    /// Takes the next tenant of the plan, rendered ahead by [`MarkdownStream::preparer`].
    pub fn push_prepared(&mut self, tenant: &TenantPlan, prepared: Prepared) -> std::io::Result<()> {
        self.fleet.push(tenant);
        for i in &tenant.ignored {
            let text = super::ignored_line(i);
            let f = fence(&text);
            let line = format!("- `{}`: {f} {text} {f}\n", tenant.slug);
            if self.ignored_left_out > 0 {
                self.ignored_left_out += 1;
            } else {
                self.ignored_left_out += fill(&mut self.ignored, [line], IGNORED_RESERVE);
            }
        }
        if !tenant.has_changes() {
            return Ok(());
        }
        self.changed += 1;
        let moved = |c: &ResourceChange| tenant.moved.iter().any(|m| m.to == c.address);
        let shown: Vec<&ResourceChange> =
            tenant.resource_changes.iter().filter(|c| c.action != Action::NoOp || moved(c)).collect();
        if let (Some(groups), Some(keyed)) = (&mut self.groups, prepared.keyed) {
            groups.push(tenant, keyed, &mut |_, canon| {
                let mut d = details(tenant, &shown);
                // Each shown string canonicalised, never the JSON it waits in (a slug may be "open").
                if let Some(c) = canon {
                    d.open = c.apply(&d.open);
                    d.phases.iter_mut().flat_map(|(_, blocks)| blocks).for_each(|b| *b = c.apply(b));
                }
                serde_json::to_string(&d).expect("strings always serialize")
            })?;
        }
        let s = tenant.summary();
        let row = format!("| `{}` | {} | {} | {} | {} |\n", tenant.slug, s.add, s.change, s.replace, s.destroy);
        if self.rows_left_out > 0 {
            // As in one pass over all rows: once a row did not fit, no later one is added.
            self.rows_left_out += 1;
        } else {
            self.rows_left_out += fill(&mut self.rows, [row], self.budget / 4);
        }
        // A refresh-only plan changes nothing in the real world: it has no risks.
        let risky = if self.fleet.refresh_only { &[][..] } else { &tenant.resource_changes[..] };
        for change in risky {
            if let Some((risk, why)) = Risk::of(tenant, change) {
                let line = format!("- `{}`: `{}` {}{why}\n", tenant.slug, change.address, verb(change.action));
                keep_risk(&mut self.risks, risk, line, self.budget / 2);
            }
        }
        if self.details_bytes > self.budget {
            self.details_dropped += shown.len();
            return Ok(());
        }
        let d = details(tenant, &shown);
        self.details_bytes += d.open.len() + d.phases.iter().flat_map(|(_, b)| b).map(String::len).sum::<usize>();
        self.details.push((d, shown.len()));
        Ok(())
    }

    pub fn finish(mut self, w: &mut dyn std::io::Write) -> std::io::Result<()> {
        let ignored = std::mem::take(&mut self.ignored);
        let ignored_left_out = self.ignored_left_out;
        let mut out = match self.groups.take().filter(Groups::any_shared) {
            Some(groups) => self.render_grouped(groups)?,
            None => self.render(),
        };
        if !ignored.is_empty() || ignored_left_out > 0 {
            let _ = write!(out, "\n**{}:**\n\n{ignored}", super::IGNORED_HEADING);
            if ignored_left_out > 0 {
                let _ = writeln!(out, "- … and {ignored_left_out} more (comment size limit)");
            }
        }
        w.write_all(out.as_bytes())
    }

    /// The title, the partial plan's and the saved plan's notes; `None` when nothing changes
    /// (the whole comment is then in `out`).
    fn head(&self, out: &mut String) -> Option<()> {
        let summary = self.fleet.summary;
        let partial = self.fleet.partial();
        let saved = |out: &mut String| {
            if let Some(note) = partial_note(partial) {
                let _ = writeln!(out, "> **{note}**\n");
            }
            if let Some(d) = &self.digest {
                let _ = writeln!(out, "Plan file digest: `{d}` (apply exactly this file with `--expect-digest {d}`)\n");
            }
        };
        if summary.is_empty() {
            let _ = writeln!(out, "### matih plan: no changes\n");
            saved(out);
            let _ = writeln!(out, "The tenants match the configuration.");
            return None;
        }
        if self.fleet.refresh_only {
            let _ = writeln!(out, "### matih plan: {}\n", super::text::refresh_counts(&summary));
        } else {
            let _ = writeln!(out, "### matih plan: {}\n", counts(&summary));
        }
        saved(out);
        Some(())
    }

    fn render(self) -> String {
        let budget = self.budget;
        let mut out = String::new();
        if self.head(&mut out).is_none() {
            return out;
        }

        // The risks come before the table's rows in importance, so they are sized first; the table
        // gets a quarter of the comment at most, the diffs whatever is left.
        let mut risks = String::new();
        let risks_left_out = risk_section(&mut risks, &self.risks, budget / 2);

        out.push_str("| Tenant | Add | Change | Replace | Destroy |\n| --- | ---: | ---: | ---: | ---: |\n");
        out.push_str(&self.rows);
        if self.rows_left_out > 0 {
            let _ =
                writeln!(out, "| … {} more tenants with changes (comment size limit) | | | | |", self.rows_left_out);
        }
        self.unchanged_and_risks(&mut out, &risks, risks_left_out);

        let mut details_left_out = 0;
        for (d, shown) in self.details {
            details_left_out += tenant_details(&mut out, d, shown, budget, details_left_out > 0);
        }
        details_left_out += self.details_dropped;
        shortened_note(&mut out, details_left_out, self.limit);
        out
    }

    /// After the table: how many tenants are not listed, then the risk section and how many
    /// risks the size limit left out.
    fn unchanged_and_risks(&self, out: &mut String, risks: &str, risks_left_out: usize) {
        let unchanged = self.fleet.tenants - self.changed;
        if unchanged > 0 {
            let _ = writeln!(
                out,
                "\n{unchanged} tenant{} without changes not listed.",
                if unchanged == 1 { "" } else { "s" }
            );
        }
        out.push('\n');
        out.push_str(risks);
        if risks_left_out > 0 {
            let _ = writeln!(out, "- … and {risks_left_out} more (comment size limit)");
        }
        out.push('\n');
    }

    /// The comment when some tenants share their changes: the table, the risks and the details by
    /// group (see [`render_markdown_with`]), in the groups' order, cut as [`Self::render`] cuts.
    fn render_grouped(self, groups: Groups) -> std::io::Result<String> {
        let budget = self.budget;
        let mut out = String::new();
        if self.head(&mut out).is_none() {
            return Ok(out);
        }
        let (list, mut rendered) = groups.finish()?;
        let mut found = RiskLines::new();
        let mut rows = Vec::new();
        for g in &list {
            let s = g.summary;
            rows.push(format!("| {} | {} | {} | {} | {} |\n", who(g, 3), s.add, s.change, s.replace, s.destroy));
            for r in g.risks.iter().filter(|_| !self.fleet.refresh_only) {
                let line = format!("- {}: {}\n", who(g, 3), r.text(g.members.len() > 1));
                keep_risk(&mut found, r.risk, line, budget / 2);
            }
        }
        let mut risks = String::new();
        let risks_left_out = risk_section(&mut risks, &found, budget / 2);
        out.push_str("| Tenants (counts per tenant) | Add | Change | Replace | Destroy |\n");
        out.push_str("| --- | ---: | ---: | ---: | ---: |\n");
        let room = out.len() + budget / 4;
        let rows_left_out = fill(&mut out, rows, room);
        if rows_left_out > 0 {
            let _ = writeln!(out, "| … {rows_left_out} more groups and tenants (comment size limit) | | | | |");
        }
        self.unchanged_and_risks(&mut out, &risks, risks_left_out);
        let mut details_left_out = 0;
        for g in &list {
            if details_left_out > 0 || out.len() > budget {
                details_left_out += g.changes.len();
                continue;
            }
            let mut d: Details = serde_json::from_str(&rendered.get(g)?)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
            if g.members.len() > 1 {
                d.open = group_open(g);
            }
            details_left_out += tenant_details(&mut out, d, g.changes.len(), budget, false);
        }
        shortened_note(&mut out, details_left_out, self.limit);
        Ok(out)
    }
}

/// A group in the table and the risks: `` `acme` `` for one tenant, else
/// `` 998 tenants (`a`, `b`, `c`, and 995 more) ``.
fn who(g: &Group, named: usize) -> String {
    if g.members.len() == 1 {
        format!("`{}`", g.members[0])
    } else {
        format!("{} tenants ({})", thousands(g.members.len()), g.named(named, '`'))
    }
}

/// The opening of a group's `<details>`: its size and changes, then its members and what the
/// placeholders mean.
fn group_open(g: &Group) -> String {
    let summary = format!("{} tenants: {}", thousands(g.members.len()), change_list(g, 3));
    format!(
        "<details><summary>{}</summary>\n\nEach: {} Members: {}. Shown once: {}.\n\n",
        escape_html(&summary),
        counts(&g.summary),
        g.named(MEMBERS_NAMED, '`'),
        PLACEHOLDERS
            .replace("${slug}", "`${slug}`")
            .replace("${tenant_id}", "`${tenant_id}`")
            .replace("base64(…)", "`base64(…)`"),
    )
}

/// How many members a group's details name (JSON with `--group` lists them all).
const MEMBERS_NAMED: usize = 50;

/// Keeps a risk's line while its category fits in `budget` bytes, else counts it.
fn keep_risk(risks: &mut RiskLines, risk: Risk, line: String, budget: usize) {
    let (lines, bytes, dropped) = risks.entry(risk).or_default();
    if *dropped == 0 && *bytes + line.len() <= budget {
        *bytes += line.len();
        lines.push(line);
    } else {
        *dropped += 1;
    }
}

fn shortened_note(out: &mut String, left_out: usize, limit: usize) {
    if left_out > 0 {
        let _ = writeln!(
            out,
            "> **Note:** this comment was shortened to fit GitHub's limit of {limit} characters: {left_out} \
             resource change{} not shown. Run `matih plan` for the whole plan.",
            if left_out == 1 { " is" } else { "s are" }
        );
    }
}

/// Writes the risk section; returns how many risks did not fit in `budget` bytes.
fn risk_section(out: &mut String, found: &RiskLines, budget: usize) -> usize {
    out.push_str("#### Risks\n\n");
    if found.is_empty() {
        out.push_str(
            "None: nothing is destroyed or replaced, no migration drops data, and no network policy, RBAC, quota, \
             database role, namespace label, DNS or TLS resource changes.\n",
        );
        return 0;
    }
    // Tenants and resources keep plan order inside a category.
    let mut items = Vec::new();
    let mut dropped = 0;
    let mut stopped = false;
    for (i, (risk, (lines, _, more))) in found.iter().enumerate() {
        if stopped {
            // A line of an earlier category could not fit: as in one pass, nothing after it does.
            dropped += lines.len() + more;
            continue;
        }
        dropped += more;
        stopped = *more > 0;
        for (n, line) in lines.iter().enumerate() {
            let mut item = String::new();
            if n == 0 {
                if i > 0 {
                    // A blank line ends the previous category's list.
                    item.push('\n');
                }
                let _ = writeln!(item, "**{}**\n", risk.title());
            }
            item.push_str(line);
            items.push(item);
        }
    }
    fill(out, items, budget) + dropped
}

/// A tenant's `<details>` rendered in full.
fn details(tenant: &TenantPlan, shown: &[&ResourceChange]) -> Details {
    let open =
        format!("<details><summary>{}: {}</summary>\n\n", escape_html(&heading(tenant)), counts(&tenant.summary()));
    let mut phases = Vec::new();
    let mut i = 0;
    while i < shown.len() {
        let phase: Phase = shown[i].phase;
        let end = shown[i..].iter().position(|c| c.phase != phase).map_or(shown.len(), |n| i + n);
        let blocks: Vec<String> = shown[i..end]
            .iter()
            .enumerate()
            .map(|(n, c)| {
                let mut w = Writer::new(Layout { color: false, gutter: true, compact_deletes: true });
                if n > 0 {
                    // A blank line between resources, as in the text plan.
                    w.out.push('\n');
                }
                if let Some(m) = tenant.moved.iter().find(|m| m.to == c.address) {
                    // As in the text plan: the move, then any change of the moved resource.
                    let _ = writeln!(w.out, "  # {} has moved to {} (moved block at {})", m.from, m.to, m.declared_at);
                }
                w.resource(c);
                w.out
            })
            .collect();
        phases.push((phase, blocks));
        i = end;
    }
    Details { open, phases }
}

/// Appends one tenant's `<details>`; returns how many resource changes (`shown`) did not fit.
/// Once something did not fit (`full`), nothing more is added, so what is shown is a prefix of
/// the plan.
fn tenant_details(out: &mut String, d: Details, shown: usize, budget: usize, full: bool) -> usize {
    let close = "</details>\n\n";
    if full || out.len() + d.open.len() + close.len() > budget {
        return shown;
    }
    out.push_str(&d.open);
    let mut left_out = 0;
    for (phase, blocks) in d.phases {
        let fence_str = fence(&blocks.concat());
        let head = format!("**{}**\n\n{fence_str}diff\n", phase_label(phase));
        let tail = format!("{fence_str}\n\n");
        let first_len = blocks.first().map_or(0, String::len);
        if left_out > 0 || out.len() + head.len() + first_len + tail.len() + close.len() > budget {
            // Not even the phase's first change fits: leave the whole phase out.
            left_out += blocks.len();
        } else {
            out.push_str(&head);
            let mut body = String::new();
            let room = budget.saturating_sub(out.len() + tail.len() + close.len());
            left_out += fill(&mut body, blocks, room);
            out.push_str(&body);
            out.push_str(&tail);
        }
    }
    out.push_str(close);
    left_out
}

#[cfg(test)]
#[path = "markdown_tests.rs"]
mod tests;
