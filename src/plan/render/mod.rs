//! Renderers of plans: Terraform-like text for terminals, JSON for machines, Markdown for pull
//! request comments.
//!
//! Every renderer is a pure function of the [`Plan`](super::Plan): the same plan gives the same
//! bytes. None of them shows a secret (only `(sensitive value)`) or a fingerprint. Text and
//! Markdown hide no-ops; JSON lists them, for machines that want the whole picture.
//!
//! **Invariant:** knows nothing of how the plan was computed: it trusts that, for updates and
//! replaces, a subtree of `after` differs from `before` exactly where the diff found a change.

mod group;
mod json;
mod markdown;
mod risk;
mod stream;
mod terraform;
mod text;
mod writer;

pub use json::{json_document, render_json, render_json_saved, render_json_with, JsonStream};
pub use markdown::{render_markdown, render_markdown_saved, render_markdown_with, MarkdownStream};
pub use stream::Spill;
pub use terraform::{module_address, render_terraform, terraform_document, TerraformStream, TERRAFORM_FORMAT_VERSION};
pub use text::{render_text, render_text_with, TextOptions, TextStream};

use super::TenantPlan;

/// How a plan stream renders one tenant ahead of its `push`, from the tenant alone: `Copy`,
/// `Sync`, so that a fleet's tenants are rendered on every core as they are planned (see
/// `workflow::stream`) while the stream takes them in plan order. A fleet plan spends most of its
/// time rendering; done in `push`, on one thread, it made a 1,000-tenant plan wait for one core.
#[derive(Clone, Copy, Debug)]
pub enum Preparer {
    /// Nothing ahead (a stream whose `push` renders, or a plan that is not rendered).
    Nothing,
    Text {
        color: bool,
        grouped: bool,
    },
    Json {
        grouped: bool,
    },
    Markdown {
        grouped: bool,
    },
}

/// One tenant rendered ahead by a [`Preparer`], for the stream that made the preparer.
#[derive(Default)]
pub struct Prepared {
    /// The text section (heading and changes) or the JSON element, as the stream writes it.
    section: Option<String>,
    /// What grouping compares, for a tenant with changes in a grouped stream.
    keyed: Option<group::Keyed>,
}

impl Preparer {
    pub fn prepare(self, t: &TenantPlan) -> Prepared {
        let grouped = match self {
            Preparer::Nothing => return Prepared::default(),
            Preparer::Text { grouped, .. } | Preparer::Json { grouped } | Preparer::Markdown { grouped } => grouped,
        };
        let section = match self {
            Preparer::Text { color, grouped: false } if t.has_changes() => Some(text::section(t, color)),
            Preparer::Json { .. } => Some(json::element(t)),
            _ => None,
        };
        let text = matches!(self, Preparer::Text { .. });
        let keyed = (grouped && t.has_changes()).then(|| group::Keyed::of(t, shown(t, text)));
        Prepared { section, keyed }
    }
}

/// What grouping compares of a tenant: its changes as the JSON plan lists them and, for a text
/// plan (`text`), as it shows them without colours; and its heading.
fn shown(t: &TenantPlan, text: bool) -> group::Shown {
    let text = text.then(|| {
        let mut w = writer::Writer::for_tenant(writer::Layout { color: false, gutter: false, compact_deletes: false });
        text::changes(&mut w, t);
        w.finish_tenant()
    });
    group::Shown { text, json: json::changes_compact(t), heading: text::heading(t) }
}

/// One difference left alone by `ignore_changes`, on one line, for text and Markdown:
/// `ADDR PATH: recorded -> desired (ignore_changes at FILE:LINE:COL)`; values as compact JSON with
/// the markers for secrets and unknowns, long ones shortened.
fn ignored_line(i: &super::IgnoredChange) -> String {
    let show = |v: &Option<crate::value::Value>| match v {
        None => "(absent)".to_string(),
        Some(v) => {
            let s = json::value(v).to_string();
            if s.chars().count() > 120 {
                format!("{}…", s.chars().take(120).collect::<String>())
            } else {
                s
            }
        }
    };
    format!("{} {}: {} -> {} (ignore_changes at {})", i.address, i.path, show(&i.before), show(&i.after), i.declared_at)
}

/// The heading of the ignored differences of a plan, for text and Markdown.
const IGNORED_HEADING: &str = "Differences left alone (ignore_changes): the recorded value is kept";

/// What stands in for a secret in every rendering.
pub(crate) const SENSITIVE: &str = "(sensitive value)";
/// What stands in for a value known only after apply in every rendering.
pub(crate) const UNKNOWN: &str = "(known after apply)";

#[cfg(test)]
mod tests;
