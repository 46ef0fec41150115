//! The Terraform-style block writer shared by the text and Markdown renderers.
//!
//! Lines are written as `indent`, a mark (`+`, `~`, `-`, `-/+` or a space), a space and the text,
//! which is how Terraform lays out a plan. In *gutter* mode (Markdown ```` ```diff ```` blocks) the
//! mark moves to the first column instead (`~` and `-/+` become `!`), so that GitHub colours the
//! lines, and the layout is otherwise the same.
//!
//! **Invariant:** writes one resource change at a time and knows nothing of tenants, phases or
//! summaries.

use std::borrow::Cow;
use std::cell::Cell;
use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::time::Duration;

use similar::{Algorithm, ChangeTag, DiffTag, TextDiff};

use super::{SENSITIVE, UNKNOWN};
use crate::plan::path::{format_path, is_identifier, push_quoted, Seg};
use crate::plan::{Action, ResourceChange};
use crate::value::Value;

const RESET: &str = "\x1b[0m";
pub(super) const BOLD: &str = "\x1b[1m";
const RED: &str = "\x1b[31m";
const GREEN: &str = "\x1b[32m";
const YELLOW: &str = "\x1b[33m";
const CYAN: &str = "\x1b[36m";

/// Above this many lines (both sides together) a changed multi-line string is summarised rather
/// than diffed. Myers' diff is quadratic in the worst case; below this size it takes
/// milliseconds, so the output never depends on the timeout below and stays deterministic.
const MAX_DIFF_LINES: usize = 8_000;
/// A safety net only: [`MAX_DIFF_LINES`] keeps every diff well inside it.
const DIFF_TIMEOUT: Duration = Duration::from_secs(5);

/// The mark at the start of a line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Mark {
    Add,
    Change,
    Remove,
    Replace,
    /// An existing object taken over (`<=`).
    Adopt,
    Plain,
}

impl Mark {
    fn symbol(self) -> &'static str {
        match self {
            Mark::Add => "+",
            Mark::Change => "~",
            Mark::Remove => "-",
            Mark::Replace => "-/+",
            Mark::Adopt => "<=",
            Mark::Plain => " ",
        }
    }

    fn gutter(self) -> char {
        match self {
            Mark::Add => '+',
            Mark::Remove => '-',
            Mark::Change | Mark::Replace | Mark::Adopt => '!',
            Mark::Plain => ' ',
        }
    }

    fn color(self) -> Option<&'static str> {
        match self {
            Mark::Add => Some(GREEN),
            Mark::Change => Some(YELLOW),
            Mark::Remove => Some(RED),
            Mark::Adopt => Some(CYAN),
            Mark::Replace | Mark::Plain => None,
        }
    }
}

/// How a writer lays its lines out.
#[derive(Clone, Copy, Debug)]
pub(super) struct Layout {
    /// ANSI colours (text renderer only).
    pub color: bool,
    /// Marks in the first column (Markdown diff blocks).
    pub gutter: bool,
    /// Deletes show their header only, not every attribute (Markdown keeps PR comments short).
    pub compact_deletes: bool,
}

pub(super) struct Writer<'p> {
    pub out: String,
    layout: Layout,
    /// Paths of the current resource whose change forces replacement.
    forcing: HashSet<&'p str>,
    path: Vec<Seg<'p>>,
}

/// Whether `v` is shown on the line of its key ([`push_inline`]) rather than spread over lines.
fn is_inline(v: &Value) -> bool {
    match v {
        Value::String(s) => !s.contains('\n'),
        Value::List(items) => items.is_empty(),
        Value::Map(m) => m.is_empty(),
        _ => true,
    }
}

/// Appends an inline value (see [`is_inline`]) as the plan shows it.
fn push_inline(out: &mut String, v: &Value) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int(n) => {
            let _ = write!(out, "{n}");
        }
        Value::String(s) => push_quoted(out, s),
        Value::List(_) => out.push_str("[]"),
        Value::Map(_) => out.push_str("{}"),
        Value::Ref { .. } | Value::Computed { .. } => out.push_str(UNKNOWN),
        Value::Secret(_) => out.push_str(SENSITIVE),
    }
}

/// Appends a mark's symbol, coloured when `color`.
fn push_symbol(out: &mut String, color: bool, mark: Mark) {
    match (color, mark, mark.color()) {
        (true, Mark::Replace, _) => {
            let _ = write!(out, "{RED}-{RESET}/{GREEN}+{RESET}");
        }
        (true, _, Some(code)) => {
            let _ = write!(out, "{code}{}{RESET}", mark.symbol());
        }
        _ => out.push_str(mark.symbol()),
    }
}

fn inline(v: &Value) -> Option<String> {
    is_inline(v).then(|| {
        let mut out = String::new();
        push_inline(&mut out, v);
        out
    })
}

fn display_key(k: &str) -> Cow<'_, str> {
    if is_identifier(k) {
        Cow::Borrowed(k)
    } else {
        let mut out = String::with_capacity(k.len() + 2);
        push_quoted(&mut out, k);
        Cow::Owned(out)
    }
}

/// Keys shown as [`display_key`] does, and the width of the longest in characters: the column
/// the `=` of a block's entries lines up at.
fn display_keys<'k>(keys: impl Iterator<Item = &'k String>) -> (Vec<Cow<'k, str>>, usize) {
    let shown: Vec<Cow<'k, str>> = keys.map(|k| display_key(k)).collect();
    let width = shown.iter().map(|k| k.chars().count()).max().unwrap_or(0);
    (shown, width)
}

/// Sets `head` to `key = ` with the key padded to `width` characters (one buffer for all the
/// entries of a block: a fleet plan writes millions of them).
fn set_head(head: &mut String, key: &str, width: usize) {
    head.clear();
    head.push_str(key);
    push_spaces(head, width.saturating_sub(key.chars().count()));
    head.push_str(" = ");
}

/// Appends `n` spaces.
fn push_spaces(out: &mut String, n: usize) {
    const SPACES: &str = "                                                                ";
    let mut left = n;
    while left > 0 {
        let k = left.min(SPACES.len());
        out.push_str(&SPACES[..k]);
        left -= k;
    }
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn hidden(n: usize, what_one: &str, what_many: &str) -> String {
    format!("# ({} hidden)", plural(n, &format!("unchanged {what_one}"), &format!("unchanged {what_many}")))
}

thread_local! {
    /// The length of the last tenant rendering this thread finished ([`Writer::for_tenant`]).
    static TENANT_LEN: Cell<usize> = const { Cell::new(0) };
}

/// Room for a rendering about `last` bytes long, with an eighth to spare: the tenants of a fleet
/// render to about the same size, and a buffer that starts that large is written once, where one
/// that doubles its way there is copied and touches twice the memory (fresh memory, which the
/// kernel zeroes first: a tenant's text plan is over 100 KB).
pub(super) fn room_for(last: usize) -> usize {
    last + last / 8
}

impl<'p> Writer<'p> {
    pub fn new(layout: Layout) -> Self {
        Writer { out: String::new(), layout, forcing: HashSet::new(), path: Vec::new() }
    }

    /// A writer for a whole tenant's changes, its buffer sized like the last one this thread
    /// rendered ([`room_for`]); [`Writer::finish_tenant`] hands the text over and notes its size.
    pub fn for_tenant(layout: Layout) -> Self {
        let mut w = Writer::new(layout);
        w.out.reserve(room_for(TENANT_LEN.get()));
        w
    }

    pub fn finish_tenant(self) -> String {
        TENANT_LEN.set(self.out.len());
        self.out
    }

    /// `s` in the given ANSI colour when colours are on.
    pub fn paint(&self, code: &str, s: &str) -> String {
        if self.layout.color {
            format!("{code}{s}{RESET}")
        } else {
            s.to_string()
        }
    }

    /// A mark's symbol, coloured when colours are on.
    pub fn symbol(&self, mark: Mark) -> String {
        let mut out = String::new();
        push_symbol(&mut out, self.layout.color, mark);
        out
    }

    fn emit(&mut self, indent: usize, mark: Mark, text: &str) {
        self.line(indent, mark, |out| out.push_str(text));
    }

    /// One line: the indent and mark, then what `write` appends (straight into the output: a
    /// fleet plan writes millions of lines, and a string per line was a good part of its cost).
    fn line(&mut self, indent: usize, mark: Mark, write: impl FnOnce(&mut String)) {
        let start = self.out.len();
        if self.layout.gutter {
            self.out.push(mark.gutter());
            push_spaces(&mut self.out, indent + mark.symbol().len());
        } else {
            push_spaces(&mut self.out, indent);
            push_symbol(&mut self.out, self.layout.color, mark);
        }
        self.out.push(' ');
        let text = self.out.len();
        write(&mut self.out);
        if self.out.len() == text {
            // No trailing blanks after a bare mark; other text is kept exactly as it is.
            let trimmed = self.out[start..].trim_end_matches(' ').len();
            self.out.truncate(start + trimmed);
        }
        self.out.push('\n');
    }

    /// Writes one resource change the way Terraform does; no-ops write nothing.
    pub fn resource(&mut self, c: &'p ResourceChange) {
        let (verb, mark) = match c.action {
            Action::NoOp => return,
            Action::Create => ("created", Mark::Add),
            Action::Adopt => ("adopted", Mark::Adopt),
            Action::Update => ("updated in place", Mark::Change),
            Action::Replace => ("replaced", Mark::Replace),
            Action::Delete => ("destroyed", Mark::Remove),
        };
        let must = if c.action == Action::Replace { "must be" } else { "will be" };
        let verb_color = match c.action {
            Action::Create => GREEN,
            Action::Update => YELLOW,
            Action::Adopt => CYAN,
            _ => RED,
        };
        let comment =
            format!("{} {must} {}", self.paint(BOLD, &format!("# {}", c.address)), self.paint(verb_color, verb));
        self.emit(0, Mark::Plain, &comment);
        if c.action == Action::Delete {
            self.emit(0, Mark::Plain, "# (because it is no longer in the tenant's configuration)");
        }
        for note in &c.notes {
            self.emit(0, Mark::Plain, &format!("# {note}"));
        }
        let header = format!("resource \"{}\" \"{}\" {{", c.address.kind, c.address.name);
        let indent = match mark {
            Mark::Replace => 0,
            Mark::Adopt => 1,
            _ => 2,
        };
        self.emit(indent, mark, &header);

        self.forcing = c.changes.iter().filter(|a| a.forces_replacement).map(|a| a.path.as_str()).collect();
        self.path.clear();
        match (c.action, &c.before, &c.after) {
            (Action::Create, _, Some(after)) => self.entries(6, Mark::Add, after, ""),
            (Action::Delete, Some(before), _) if self.layout.compact_deletes => {
                self.emit(6, Mark::Plain, &format!("# ({} hidden)", plural(before.len(), "attribute", "attributes")));
            }
            (Action::Delete, Some(before), _) => self.entries(6, Mark::Remove, before, " -> null"),
            (_, Some(before), Some(after)) => self.map_diff(6, before, after),
            // A change without the sides its action implies: say so rather than show nothing.
            _ => self.emit(6, Mark::Plain, "# (attributes not recorded in the plan)"),
        }
        self.emit(2, Mark::Plain, "}");
        self.manifest_changes(c);
    }

    /// A Helm release's rendered-manifest changes (helm-diff's view) under its block: one comment
    /// per object, and for a changed one its unified diff with `+`/`-` marks.
    fn manifest_changes(&mut self, c: &'p ResourceChange) {
        if c.manifest_changes.is_empty() {
            return;
        }
        self.emit(2, Mark::Plain, "# rendered manifests (helm template against the release's manifest):");
        for m in &c.manifest_changes {
            self.emit(4, Mark::Plain, &format!("# {}: {}", m.object, m.change));
            for line in m.diff.iter().flat_map(|d| d.lines()) {
                let (mark, text) = match line.chars().next() {
                    Some('+') => (Mark::Add, &line[1..]),
                    Some('-') => (Mark::Remove, &line[1..]),
                    Some(' ') => (Mark::Plain, &line[1..]),
                    _ => (Mark::Plain, line),
                };
                self.emit(6, mark, text);
            }
        }
    }

    /// Every entry of a map with the same mark, keys aligned; `tail` ends each top entry.
    fn entries(&mut self, indent: usize, mark: Mark, m: &'p BTreeMap<String, Value>, tail: &str) {
        let (keys, width) = display_keys(m.keys());
        let mut head = String::new();
        for ((k, v), shown) in m.iter().zip(&keys) {
            self.path.push(Seg::Key(k));
            set_head(&mut head, shown, width);
            self.value(indent, mark, mark, &head, v, tail);
            self.path.pop();
        }
    }

    /// A value on the line `head…`, spread over more lines when it is a non-empty map or list or
    /// a multi-line string. `first` marks the first line, `nested` the entries inside; `tail` ends
    /// the last line. A `# forces replacement` note goes on the first line when the current path
    /// forces replacement.
    fn value(&mut self, indent: usize, first: Mark, nested: Mark, head: &str, v: &'p Value, tail: &str) {
        let note = self.force_note();
        if is_inline(v) {
            self.line(indent, first, |out| {
                out.push_str(head);
                push_inline(out, v);
                out.push_str(tail);
                out.push_str(&note);
            });
            return;
        }
        match v {
            Value::String(s) => {
                self.emit(indent, first, &format!("{head}<<-EOT{note}"));
                for line in s.lines() {
                    self.emit(indent + 4, Mark::Plain, line);
                }
                self.emit(indent, Mark::Plain, &format!("EOT{tail}"));
            }
            Value::Map(m) => {
                self.emit(indent, first, &format!("{head}{{{note}"));
                self.entries(indent + 4, nested, m, "");
                self.emit(indent, Mark::Plain, &format!("}}{tail}"));
            }
            Value::List(items) => {
                self.emit(indent, first, &format!("{head}[{note}"));
                for (i, item) in items.iter().enumerate() {
                    self.path.push(Seg::Index(i));
                    self.value(indent + 4, nested, nested, "", item, ",");
                    self.path.pop();
                }
                self.emit(indent, Mark::Plain, &format!("]{tail}"));
            }
            _ => unreachable!("inline() covers every other value"),
        }
    }

    fn force_note(&self) -> String {
        if self.forcing.is_empty() || !self.forcing.contains(format_path(&self.path).as_str()) {
            return String::new();
        }
        format!(" {}", self.paint(RED, "# forces replacement"))
    }

    /// The changed entries of two maps, keys aligned, then a count of the unchanged ones.
    fn map_diff(&mut self, indent: usize, before: &'p BTreeMap<String, Value>, after: &'p BTreeMap<String, Value>) {
        let mut rows: Vec<(&'p String, Option<&'p Value>, Option<&'p Value>)> = Vec::new();
        let mut unchanged = 0;
        for (k, b) in before {
            match after.get(k) {
                Some(a) if a == b => unchanged += 1,
                a => rows.push((k, Some(b), a)),
            }
        }
        for (k, a) in after {
            if !before.contains_key(k) {
                rows.push((k, None, Some(a)));
            }
        }
        rows.sort_by(|x, y| x.0.cmp(y.0));
        let (keys, width) = display_keys(rows.iter().map(|r| r.0));
        let mut head = String::new();
        for ((k, b, a), shown) in rows.into_iter().zip(&keys) {
            self.path.push(Seg::Key(k));
            set_head(&mut head, shown, width);
            match (b, a) {
                (Some(b), Some(a)) => self.change(indent, &head, b, a, ""),
                (None, Some(a)) => self.value(indent, Mark::Add, Mark::Add, &head, a, ""),
                (Some(b), None) => self.value(indent, Mark::Remove, Mark::Remove, &head, b, " -> null"),
                (None, None) => unreachable!("every row has a side"),
            }
            self.path.pop();
        }
        if unchanged > 0 {
            self.emit(indent, Mark::Plain, &hidden(unchanged, "attribute", "attributes"));
        }
    }

    /// One changed value: maps and equal-length lists recurse, lists of another length show
    /// element insertions and removals, multi-line strings a unified diff, the rest `old -> new`.
    fn change(&mut self, indent: usize, head: &str, b: &'p Value, a: &'p Value, tail: &str) {
        match (b, a) {
            (Value::Map(bm), Value::Map(am)) => {
                let note = self.force_note();
                self.emit(indent, Mark::Change, &format!("{head}{{{note}"));
                self.map_diff(indent + 4, bm, am);
                self.emit(indent, Mark::Plain, &format!("}}{tail}"));
            }
            (Value::List(bl), Value::List(al)) => {
                let note = self.force_note();
                self.emit(indent, Mark::Change, &format!("{head}[{note}"));
                if bl.len() == al.len() {
                    self.list_diff_pairwise(indent + 4, bl, al);
                } else {
                    self.list_diff_sequence(indent + 4, bl, al);
                }
                self.emit(indent, Mark::Plain, &format!("]{tail}"));
            }
            (Value::String(bs), Value::String(as_)) if bs.contains('\n') || as_.contains('\n') => {
                let note = self.force_note();
                self.emit(indent, Mark::Change, &format!("{head}<<-EOT{note}"));
                self.text_diff(indent + 4, bs, as_);
                self.emit(indent, Mark::Plain, &format!("EOT{tail}"));
            }
            _ => match (inline(b), inline(a)) {
                (Some(bs), Some(as_)) => {
                    let arrow = self.paint(YELLOW, "->");
                    let note = self.force_note();
                    self.emit(indent, Mark::Change, &format!("{head}{bs} {arrow} {as_}{tail}{note}"));
                }
                (_, Some(as_)) => {
                    self.value(indent, Mark::Change, Mark::Remove, head, b, &format!(" -> {as_}{tail}"));
                }
                (Some(bs), None) => self.value(indent, Mark::Change, Mark::Add, &format!("{head}{bs} -> "), a, tail),
                (None, None) => {
                    self.value(indent, Mark::Remove, Mark::Remove, head, b, &format!(" -> null{tail}"));
                    self.value(indent, Mark::Add, Mark::Add, head, a, tail);
                }
            },
        }
    }

    fn list_diff_pairwise(&mut self, indent: usize, bl: &'p [Value], al: &'p [Value]) {
        let mut unchanged = 0;
        for (i, (b, a)) in bl.iter().zip(al).enumerate() {
            if b == a {
                unchanged += 1;
                continue;
            }
            self.path.push(Seg::Index(i));
            self.change(indent, "", b, a, ",");
            self.path.pop();
        }
        if unchanged > 0 {
            self.emit(indent, Mark::Plain, &hidden(unchanged, "element", "elements"));
        }
    }

    /// Elements removed and inserted, found with Myers' diff over the elements; runs of equal
    /// elements are counted, not shown.
    fn list_diff_sequence(&mut self, indent: usize, bl: &'p [Value], al: &'p [Value]) {
        // `Value` is not hashable: number each distinct element and diff the numbers.
        let mut distinct: Vec<&Value> = Vec::new();
        let mut id = |v: &'p Value| match distinct.iter().position(|d| *d == v) {
            Some(i) => i,
            None => {
                distinct.push(v);
                distinct.len() - 1
            }
        };
        let bi: Vec<usize> = bl.iter().map(&mut id).collect();
        let ai: Vec<usize> = al.iter().map(&mut id).collect();
        for op in similar::capture_diff_slices(Algorithm::Myers, &bi, &ai) {
            let (tag, old, new) = op.as_tag_tuple();
            match tag {
                DiffTag::Equal => self.emit(indent, Mark::Plain, &hidden(old.len(), "element", "elements")),
                DiffTag::Delete | DiffTag::Insert | DiffTag::Replace => {
                    for item in &bl[old] {
                        self.value(indent, Mark::Remove, Mark::Remove, "", item, ",");
                    }
                    for item in &al[new] {
                        self.value(indent, Mark::Add, Mark::Add, "", item, ",");
                    }
                }
            }
        }
    }

    /// A unified diff (3 lines of context) of two multi-line strings, Terraform-style marks.
    fn text_diff(&mut self, indent: usize, old: &str, new: &str) {
        let lines = old.lines().count() + new.lines().count();
        if lines > MAX_DIFF_LINES {
            let summary = format!(
                "# ({} -> {}; too large to diff here, see the JSON plan)",
                plural(old.lines().count(), "line", "lines"),
                plural(new.lines().count(), "line", "lines")
            );
            self.emit(indent, Mark::Plain, &summary);
            return;
        }
        let diff = TextDiff::configure().algorithm(Algorithm::Myers).timeout(DIFF_TIMEOUT).diff_lines(old, new);
        let mut unified = diff.unified_diff();
        unified.context_radius(3);
        for hunk in unified.iter_hunks() {
            let header = self.paint(CYAN, &hunk.header().to_string());
            self.emit(indent, Mark::Plain, &header);
            for change in hunk.iter_changes() {
                let mark = match change.tag() {
                    ChangeTag::Delete => Mark::Remove,
                    ChangeTag::Insert => Mark::Add,
                    ChangeTag::Equal => Mark::Plain,
                };
                let line = change.value();
                self.emit(indent, mark, line.strip_suffix('\n').unwrap_or(line));
                if change.missing_newline() {
                    self.emit(indent, Mark::Plain, "\\ No newline at end of file");
                }
            }
        }
    }
}
