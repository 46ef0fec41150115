//! Reading catalog HCL with source locations: a thin layer over `hcl-edit` (which keeps byte spans)
//! that evaluates attribute values with `hcl-rs` and reports every problem as a located diagnostic.
//!
//! **Invariant:** knows HCL, not what the catalog means; the loader says which attributes exist.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::ops::Range;

use hcl::eval::Evaluate;
use hcl_edit::expr::Expression;
use hcl_edit::structure::{Attribute, Block, BlockLabel, Body, Structure};
use hcl_edit::Span;

use crate::diag::{Diagnostic, Location, SourceFile};
use crate::value::Value;

/// One parsed catalog file and the diagnostics found while reading it.
pub(super) struct Ctx {
    pub file: SourceFile,
    pub diags: RefCell<Vec<Diagnostic>>,
}

impl Ctx {
    pub fn new(file: SourceFile) -> Ctx {
        Ctx { file, diags: RefCell::new(Vec::new()) }
    }

    /// Parses the file's body; a syntax error becomes a located diagnostic.
    pub fn parse(&self) -> Option<Body> {
        match hcl_edit::parser::parse_body(&self.file.text) {
            Ok(body) => Some(body),
            Err(e) => {
                let at = self.file.location(e.location().offset());
                self.diags.borrow_mut().push(Diagnostic::error(format!("syntax error: {}", e.message())).at(at));
                None
            }
        }
    }

    pub fn loc(&self, span: Option<Range<usize>>) -> Location {
        self.file.location(span.map_or(0, |s| s.start))
    }

    pub fn error(&self, span: Option<Range<usize>>, message: impl Into<String>) {
        let d = Diagnostic::error(message).at(self.loc(span));
        self.diags.borrow_mut().push(d);
    }
}

/// The labels of a block as strings.
pub(super) fn labels(block: &Block) -> Vec<String> {
    block
        .labels
        .iter()
        .map(|l| match l {
            BlockLabel::Ident(i) => i.as_str().to_string(),
            BlockLabel::String(s) => s.as_str().to_string(),
        })
        .collect()
}

/// `tier "free"`: how a block is named in messages.
pub(super) fn describe(block: &Block) -> String {
    let mut s = block.ident.as_str().to_string();
    for l in labels(block) {
        s.push_str(&format!(" {l:?}"));
    }
    s
}

/// Converts an evaluated HCL value; numbers must be integers.
pub(super) fn convert(v: hcl::Value) -> Result<Value, String> {
    Ok(match v {
        hcl::Value::Null => Value::Null,
        hcl::Value::Bool(b) => Value::Bool(b),
        hcl::Value::Number(n) => Value::Int(n.as_i64().ok_or_else(|| format!("number {n} is not an integer"))?),
        hcl::Value::String(s) => Value::String(s),
        hcl::Value::Array(items) => Value::List(items.into_iter().map(convert).collect::<Result<_, _>>()?),
        hcl::Value::Object(m) => {
            Value::Map(m.into_iter().map(|(k, v)| Ok((k, convert(v)?))).collect::<Result<_, String>>()?)
        }
    })
}

/// The attributes and nested blocks of one block (or of a file), read one by one. What was not
/// read by the time of [`Fields::finish`] is reported as unknown.
pub(super) struct Fields<'a> {
    ctx: &'a Ctx,
    body: &'a Body,
    what: String,
    span: Option<Range<usize>>,
    used: BTreeSet<String>,
}

impl<'a> Fields<'a> {
    pub fn of_block(ctx: &'a Ctx, block: &'a Block) -> Fields<'a> {
        Fields { ctx, body: &block.body, what: describe(block), span: block.span(), used: BTreeSet::new() }
    }

    pub fn of_file(ctx: &'a Ctx, body: &'a Body) -> Fields<'a> {
        let what = format!("{}", ctx.file.path.display());
        Fields { ctx, body, what, span: None, used: BTreeSet::new() }
    }

    /// Where the block starts.
    pub fn location(&self) -> Location {
        self.ctx.loc(self.span.clone())
    }

    fn attribute(&mut self, key: &str) -> Option<&'a Attribute> {
        self.used.insert(key.to_string());
        self.body.get_attribute(key)
    }

    fn evaluate(&self, attr: &Attribute) -> Option<Value> {
        let expr = hcl::Expression::from(attr.value.clone());
        match expr.evaluate(&hcl::eval::Context::new()) {
            Ok(v) => match convert(v) {
                Ok(v) => Some(v),
                Err(e) => {
                    self.ctx.error(attr.value.span(), format!("{}: {e}", attr.key.as_str()));
                    None
                }
            },
            Err(e) => {
                self.ctx.error(attr.value.span(), format!("{}: {e}", attr.key.as_str()));
                None
            }
        }
    }

    /// The value of an optional attribute and where it is written.
    pub fn value(&mut self, key: &str) -> Option<(Value, Location)> {
        let attr = self.attribute(key)?;
        let v = self.evaluate(attr)?;
        Some((v, self.ctx.loc(attr.value.span())))
    }

    fn missing(&self, key: &str) {
        self.ctx.error(self.span.clone(), format!("{} has no attribute `{key}`", self.what));
    }

    fn wrong_type(&self, key: &str, expected: &str, at: &Location) {
        let d = Diagnostic::error(format!("`{key}` of {} must be {expected}", self.what)).at(at.clone());
        self.ctx.diags.borrow_mut().push(d);
    }

    pub fn opt_string(&mut self, key: &str) -> Option<String> {
        let (v, at) = self.value(key)?;
        match v {
            Value::String(s) => Some(s),
            _ => {
                self.wrong_type(key, "a string", &at);
                None
            }
        }
    }

    pub fn string(&mut self, key: &str) -> String {
        let present = self.body.has_attribute(key);
        let v = self.opt_string(key);
        if !present {
            self.missing(key);
        }
        v.unwrap_or_default()
    }

    pub fn opt_int(&mut self, key: &str) -> Option<i64> {
        let (v, at) = self.value(key)?;
        match v {
            Value::Int(n) => Some(n),
            _ => {
                self.wrong_type(key, "an integer", &at);
                None
            }
        }
    }

    pub fn int(&mut self, key: &str) -> i64 {
        let present = self.body.has_attribute(key);
        let v = self.opt_int(key);
        if !present {
            self.missing(key);
        }
        v.unwrap_or_default()
    }

    /// A list of strings, each with its own location (for diagnostics about one element).
    pub fn string_list(&mut self, key: &str) -> Vec<(String, Location)> {
        let Some(attr) = self.attribute(key) else { return Vec::new() };
        let at = self.ctx.loc(attr.value.span());
        match &attr.value {
            Expression::Array(items) => {
                let mut out = Vec::new();
                for item in items.iter() {
                    match item {
                        Expression::String(s) => out.push((s.as_str().to_string(), self.ctx.loc(item.span()))),
                        _ => self.wrong_type(key, "a list of strings", &self.ctx.loc(item.span())),
                    }
                }
                out
            }
            _ => {
                self.wrong_type(key, "a list of strings", &at);
                Vec::new()
            }
        }
    }

    /// Nested blocks of one type.
    pub fn blocks(&mut self, ident: &str) -> Vec<&'a Block> {
        self.used.insert(ident.to_string());
        self.body.blocks().filter(|b| b.has_ident(ident)).collect()
    }

    /// Reports every attribute and block that was not read.
    pub fn finish(self) {
        for s in self.body.iter() {
            match s {
                Structure::Attribute(a) if !self.used.contains(a.key.as_str()) => {
                    self.ctx.error(a.span(), format!("unknown attribute `{}` in {}", a.key.as_str(), self.what));
                }
                Structure::Block(b) if !self.used.contains(b.ident.as_str()) => {
                    self.ctx.error(b.span(), format!("unknown block `{}` in {}", b.ident.as_str(), self.what));
                }
                _ => {}
            }
        }
    }
}
