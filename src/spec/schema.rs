//! A small table-driven walker over `hcl-edit` bodies: it checks one body against a [`Schema`]
//! (which attributes and blocks may appear, of which type, which are required, which are forbidden
//! because they would hold a secret) and hands back the well-typed attributes and the known blocks.
//!
//! Every problem is reported as a located [`Diagnostic`] in the [`Ctx`]; the walker never stops at
//! the first one. Adding an attribute or a block to the language is one line in a schema table.
//!
//! **Invariant:** this module knows HCL structure and literal types only. It knows nothing of
//! tenants, catalogs, or what a value means (a UUID, an e-mail address, a region): the callers
//! check meaning on the typed values it returns.

use std::collections::BTreeMap;
use std::ops::Range;

use hcl_edit::expr::Expression;
use hcl_edit::structure::{Block, Body, Structure};
use hcl_edit::template::{Element, Template};
use hcl_edit::{Number, Span};

use super::Spanned;
use crate::diag::{Diagnostic, Location, SourceFile};

/// The file being read and the diagnostics found in it so far.
pub(crate) struct Ctx<'s> {
    pub src: &'s SourceFile,
    pub diags: Vec<Diagnostic>,
}

impl<'s> Ctx<'s> {
    pub fn new(src: &'s SourceFile) -> Self {
        Ctx { src, diags: Vec::new() }
    }

    /// The location of the start of a span; spans are always present on parsed input, and a
    /// missing one falls back to the start of the file rather than losing the diagnostic.
    pub fn loc(&self, span: Option<Range<usize>>) -> Location {
        self.src.location(span.map_or(0, |s| s.start))
    }

    pub fn error(&mut self, span: Option<Range<usize>>, message: impl Into<String>) {
        let d = Diagnostic::error(message).at(self.loc(span));
        self.diags.push(d);
    }

    pub fn push(&mut self, diagnostic: Diagnostic) {
        self.diags.push(diagnostic);
    }

    /// How many errors have been reported so far: callers compare counts before and after
    /// reading a block to know whether that block was clean.
    pub fn error_count(&self) -> usize {
        self.diags.iter().filter(|d| d.is_error()).count()
    }
}

/// The type an attribute must have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    String,
    Bool,
    /// A whole number within `min..=max` (inclusive).
    Int {
        min: i64,
        max: i64,
    },
    /// A list of strings (possibly empty).
    StringList,
}

impl Kind {
    fn describe(self) -> &'static str {
        match self {
            Kind::String => "a string",
            Kind::Bool => "a bool",
            Kind::Int { .. } => "a whole number",
            Kind::StringList => "a list of strings",
        }
    }
}

/// One attribute a body may hold.
#[derive(Clone, Debug)]
pub(crate) struct AttrDef {
    pub name: &'static str,
    pub kind: Kind,
    pub required: bool,
}

impl AttrDef {
    pub const fn optional(name: &'static str, kind: Kind) -> Self {
        AttrDef { name, kind, required: false }
    }

    pub const fn required(name: &'static str, kind: Kind) -> Self {
        AttrDef { name, kind, required: true }
    }
}

/// One block a body may hold.
#[derive(Clone, Debug)]
pub(crate) struct BlockDef {
    pub name: String,
    /// `Some(what)`: the block takes exactly one label, described as `what` in messages
    /// ("the tenant slug"). `None`: the block takes no labels.
    pub label: Option<&'static str>,
    /// Whether the block may appear more than once (blocks with labels, like `tenant`).
    pub repeatable: bool,
}

impl BlockDef {
    pub fn plain(name: impl Into<String>) -> Self {
        BlockDef { name: name.into(), label: None, repeatable: false }
    }
}

/// An attribute name that must never be written because its value would be a secret; the
/// message says where the value comes from instead. The value is never echoed.
#[derive(Clone, Debug)]
pub(crate) struct Forbidden {
    pub name: &'static str,
    pub message: &'static str,
}

/// What one body may hold.
#[derive(Clone, Debug, Default)]
pub(crate) struct Schema {
    pub attrs: Vec<AttrDef>,
    pub blocks: Vec<BlockDef>,
    pub forbidden: Vec<Forbidden>,
    /// The noun for an unknown block in messages: `block` in general, `service` inside
    /// `services { … }`.
    pub block_noun: &'static str,
}

impl Schema {
    pub fn new(attrs: Vec<AttrDef>, blocks: Vec<BlockDef>) -> Self {
        Schema { attrs, blocks, forbidden: Vec::new(), block_noun: "block" }
    }

    pub fn forbid(mut self, forbidden: Vec<Forbidden>) -> Self {
        self.forbidden = forbidden;
        self
    }

    pub fn block_noun(mut self, noun: &'static str) -> Self {
        self.block_noun = noun;
        self
    }

    fn attr(&self, name: &str) -> Option<&AttrDef> {
        self.attrs.iter().find(|a| a.name == name)
    }

    fn block(&self, name: &str) -> Option<&BlockDef> {
        self.blocks.iter().find(|b| b.name == name)
    }
}

/// A well-typed attribute value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Typed {
    String(String),
    Bool(bool),
    Int(i64),
    StringList(Vec<Spanned<String>>),
}

/// What a body held, once checked: the attributes that had the right type, and the blocks with
/// a known name (duplicates of non-repeatable blocks left out), in source order.
pub(crate) struct Fields<'a> {
    attrs: BTreeMap<&'static str, Spanned<Typed>>,
    pub blocks: Vec<&'a Block>,
}

impl<'a> Fields<'a> {
    pub fn string(&self, name: &str) -> Option<Spanned<String>> {
        match self.attrs.get(name) {
            Some(Spanned { value: Typed::String(s), location }) => Some(Spanned::new(s.clone(), location.clone())),
            _ => None,
        }
    }

    pub fn bool(&self, name: &str) -> Option<Spanned<bool>> {
        match self.attrs.get(name) {
            Some(Spanned { value: Typed::Bool(b), location }) => Some(Spanned::new(*b, location.clone())),
            _ => None,
        }
    }

    pub fn int(&self, name: &str) -> Option<Spanned<i64>> {
        match self.attrs.get(name) {
            Some(Spanned { value: Typed::Int(n), location }) => Some(Spanned::new(*n, location.clone())),
            _ => None,
        }
    }

    pub fn string_list(&self, name: &str) -> Option<Vec<Spanned<String>>> {
        match self.attrs.get(name) {
            Some(Spanned { value: Typed::StringList(items), .. }) => Some(items.clone()),
            _ => None,
        }
    }

    /// The blocks with this name, in source order.
    pub fn blocks_named<'f>(&'f self, name: &'f str) -> impl Iterator<Item = &'a Block> + 'f {
        self.blocks.iter().copied().filter(move |b| b.ident.as_str() == name)
    }
}

/// Where a block starts (its identifier), for "missing attribute" and similar messages.
pub(crate) fn block_start(block: &Block) -> Option<Range<usize>> {
    block.ident.span().or_else(|| block.span())
}

/// Checks `body` (the body of a block starting at `owner`, or the whole file when `owner` is
/// `None`) against `schema`, reporting every problem in `ctx`.
pub(crate) fn walk<'a>(ctx: &mut Ctx<'_>, body: &'a Body, owner: Option<&Block>, schema: &Schema) -> Fields<'a> {
    let mut fields = Fields { attrs: BTreeMap::new(), blocks: Vec::new() };
    // Where each name was first written, to point duplicates at the first one.
    let mut seen: BTreeMap<String, Location> = BTreeMap::new();
    // Known attribute names offered as the correction of an unknown one.
    let mut suggested: Vec<&'static str> = Vec::new();

    for structure in body.iter() {
        match structure {
            Structure::Attribute(attr) => {
                let name = attr.key.as_str();
                let key_span = attr.key.span();
                if let Some(f) = schema.forbidden.iter().find(|f| f.name == name) {
                    ctx.error(key_span, f.message);
                    continue;
                }
                let Some(def) = schema.attr(name) else {
                    if schema.block(name).is_some() {
                        ctx.error(key_span, format!("{name} must be a block ({name} {{ … }}), not an attribute"));
                    } else {
                        let known: Vec<&str> = schema.attrs.iter().map(|a| a.name).collect();
                        if let Some(guess) = closest(name, &known) {
                            // `teir = …` already says "did you mean tier"; a second message
                            // about tier missing would only be noise.
                            suggested.push(guess);
                        }
                        let blocks: Vec<&str> = schema.blocks.iter().map(|b| b.name.as_str()).collect();
                        let message = if known.is_empty() && !blocks.is_empty() {
                            format!(
                                "unknown attribute \"{name}\" (only blocks are allowed here: {})",
                                blocks.join(", ")
                            )
                        } else {
                            unknown_message("attribute", name, &known)
                        };
                        ctx.error(key_span, message);
                    }
                    continue;
                };
                // hcl-edit refuses a body that sets an attribute twice (reported as a syntax error
                // by `parse::syntax_error`), so each name is seen at most once here.
                seen.insert(name.to_string(), ctx.loc(key_span));
                if let Some(value) = typed(ctx, name, def.kind, &attr.value) {
                    fields.attrs.insert(def.name, Spanned::new(value, ctx.loc(attr.value.span())));
                }
            }
            Structure::Block(block) => {
                let name = block.ident.as_str();
                let start = block_start(block);
                let Some(def) = schema.block(name) else {
                    if schema.attr(name).is_some() {
                        ctx.error(start, format!("{name} must be an attribute ({name} = …), not a block"));
                    } else {
                        let known: Vec<&str> = schema.blocks.iter().map(|b| b.name.as_str()).collect();
                        let message = unknown_message(schema.block_noun, name, &known);
                        ctx.error(start, message);
                    }
                    continue;
                };
                if !def.repeatable {
                    if let Some(first) = seen.get(name) {
                        let d = Diagnostic::error(format!("duplicate block \"{name}\""))
                            .at(ctx.loc(start))
                            .with_note(format!("first written at {first}"));
                        ctx.push(d);
                        continue;
                    }
                    seen.insert(name.to_string(), ctx.loc(start));
                }
                check_labels(ctx, block, def);
                fields.blocks.push(block);
            }
        }
    }

    let missing: Vec<&'static str> = schema
        .attrs
        .iter()
        .filter(|a| a.required && !seen.contains_key(a.name) && !suggested.contains(&a.name))
        .map(|a| a.name)
        .collect();
    for name in missing {
        let (span, message) = match owner {
            Some(block) => {
                (block_start(block), format!("{} block is missing required attribute \"{name}\"", block.ident.as_str()))
            }
            None => (None, format!("missing required attribute \"{name}\"")),
        };
        ctx.error(span, message);
    }
    fields
}

fn check_labels(ctx: &mut Ctx<'_>, block: &Block, def: &BlockDef) {
    let name = block.ident.as_str();
    match (def.label, block.labels.len()) {
        (None, 0) | (Some(_), 1) => {}
        (None, _) => ctx.error(block.labels[0].span(), format!("{name} block takes no labels")),
        (Some(what), 0) => ctx.error(
            block_start(block),
            format!("{name} block needs exactly one label, {what} ({name} \"…\" {{ … }}), found none"),
        ),
        (Some(what), n) => {
            ctx.error(block.labels[1].span(), format!("{name} block needs exactly one label, {what}, found {n}"))
        }
    }
}

/// `unknown attribute "teir" (did you mean "tier"?)` when a known name is close, otherwise the
/// list of what is expected.
pub(crate) fn unknown_message(noun: &str, name: &str, known: &[&str]) -> String {
    match (closest(name, known), known.is_empty()) {
        (Some(guess), _) => format!("unknown {noun} \"{name}\" (did you mean \"{guess}\"?)"),
        (None, true) => format!("unknown {noun} \"{name}\" (none are allowed here)"),
        (None, false) => format!("unknown {noun} \"{name}\" (expected one of {})", known.join(", ")),
    }
}

/// The known name closest to `name`, when it is close enough to be a likely typo: at most one
/// edit for short names, at most a third of the length for longer ones, or a known name that
/// `name` (of four characters or more) begins (`monitor` for `monitoring`). Ties go to the
/// earlier name, so the answer is deterministic.
pub(crate) fn closest<'k>(name: &str, known: &[&'k str]) -> Option<&'k str> {
    let limit = (name.chars().count() / 3).max(1);
    let close = known
        .iter()
        .map(|k| (edit_distance(name, k), *k))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k);
    close.or_else(|| known.iter().copied().find(|k| name.chars().count() >= 4 && k.starts_with(name)))
}

/// Optimal-string-alignment distance: insertions, deletions, substitutions and transpositions
/// of adjacent characters each cost one (so `teir` is one edit from `tier`).
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1).min(d[i][j - 1] + 1).min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

/// A literal value, before its type is checked against the schema.
enum Lit {
    Null,
    Bool(bool),
    Number(Number),
    String(String),
    List(Vec<(Lit, Option<Range<usize>>)>),
    Object,
}

impl Lit {
    fn kind_name(&self) -> &'static str {
        match self {
            Lit::Null => "null",
            Lit::Bool(_) => "bool",
            Lit::Number(_) => "number",
            Lit::String(_) => "string",
            Lit::List(_) => "list",
            Lit::Object => "object",
        }
    }
}

const ONLY_LITERALS: &str = "only literal values are allowed here";

/// Turns an expression into a literal, reporting every non-literal part (variables, function
/// calls, interpolations, operators, conditionals, `for` expressions) at its own position.
fn literal(ctx: &mut Ctx<'_>, expr: &Expression) -> Option<Lit> {
    match expr {
        Expression::Null(_) => Some(Lit::Null),
        Expression::Bool(b) => Some(Lit::Bool(*b.value())),
        Expression::Number(n) => Some(Lit::Number(*n.value())),
        Expression::String(s) => Some(Lit::String(s.value().clone())),
        Expression::StringTemplate(t) => literal_template(ctx, t, expr.span()),
        Expression::HeredocTemplate(_) => {
            ctx.error(expr.span(), "heredoc strings are not allowed here; write a quoted string");
            None
        }
        Expression::Array(items) => {
            let mut out = Vec::new();
            let mut ok = true;
            for item in items.iter() {
                match literal(ctx, item) {
                    Some(lit) => out.push((lit, item.span())),
                    None => ok = false,
                }
            }
            ok.then_some(Lit::List(out))
        }
        Expression::Object(object) => {
            let mut ok = true;
            for (_, value) in object.iter() {
                ok &= literal(ctx, value.expr()).is_some();
            }
            ok.then_some(Lit::Object)
        }
        Expression::Parenthesis(_)
        | Expression::Variable(_)
        | Expression::Conditional(_)
        | Expression::FuncCall(_)
        | Expression::Traversal(_)
        | Expression::UnaryOp(_)
        | Expression::BinaryOp(_)
        | Expression::ForExpr(_) => {
            ctx.error(expr.span(), ONLY_LITERALS);
            None
        }
    }
}

/// A quoted string that the parser kept as a template: a literal when every element is literal
/// text (escaped `$${` and `%%{` end up here), an error at the first interpolation or directive.
fn literal_template(ctx: &mut Ctx<'_>, template: &Template, span: Option<Range<usize>>) -> Option<Lit> {
    let mut text = String::new();
    for element in template.iter() {
        match element {
            Element::Literal(s) => text.push_str(s.value()),
            Element::Interpolation(_) | Element::Directive(_) => {
                ctx.error(element.span().or(span), ONLY_LITERALS);
                return None;
            }
        }
    }
    Some(Lit::String(text))
}

/// Checks an attribute value's literal-ness and type; reports and returns `None` when wrong.
fn typed(ctx: &mut Ctx<'_>, name: &str, kind: Kind, expr: &Expression) -> Option<Typed> {
    let lit = literal(ctx, expr)?;
    let span = expr.span();
    let wrong = |ctx: &mut Ctx<'_>, found: &str| {
        ctx.error(span.clone(), format!("{name} must be {}, found {found}", kind.describe()));
    };
    match (kind, lit) {
        (Kind::String, Lit::String(s)) => Some(Typed::String(s)),
        (Kind::Bool, Lit::Bool(b)) => Some(Typed::Bool(b)),
        (Kind::Int { min, max }, Lit::Number(n)) => match n.as_i64() {
            Some(v) if (min..=max).contains(&v) => Some(Typed::Int(v)),
            Some(v) => {
                ctx.error(span, format!("{name} must be between {min} and {max}, found {v}"));
                None
            }
            None => {
                wrong(ctx, &n.to_string());
                None
            }
        },
        (Kind::StringList, Lit::List(items)) => {
            let mut out = Vec::new();
            let mut ok = true;
            for (item, item_span) in items {
                match item {
                    Lit::String(s) => out.push(Spanned::new(s, ctx.loc(item_span))),
                    other => {
                        ctx.error(item_span, format!("{name} must be a list of strings, found {}", other.kind_name()));
                        ok = false;
                    }
                }
            }
            ok.then_some(Typed::StringList(out))
        }
        (_, other) => {
            wrong(ctx, other.kind_name());
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_counts_transpositions_as_one() {
        assert_eq!(edit_distance("teir", "tier"), 1);
        assert_eq!(edit_distance("ai_servce", "ai_service"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("region", "region"), 0);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn closest_only_suggests_likely_typos() {
        let known = ["id", "tier", "region", "admin_email", "display_name"];
        assert_eq!(closest("teir", &known), Some("tier"));
        assert_eq!(closest("regoin", &known), Some("region"));
        assert_eq!(closest("admin_mail", &known), Some("admin_email"));
        assert_eq!(closest("colour", &known), None);
        assert_eq!(closest("monitor", &["services", "monitoring"]), Some("monitoring"));
        assert_eq!(closest("id", &["id_x"]), None, "short prefixes are not suggestions");
    }
}
