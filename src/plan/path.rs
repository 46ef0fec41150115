//! Attribute paths as plans print them: `metadata.labels["matih.ai/tier"]`,
//! `spec.template.spec.containers[0].image`.
//!
//! Keys that look like identifiers are joined with `.`; any other key is written `["key"]` with
//! JSON string escaping; list indexes are `[n]`. The same spelling is used by [`super::AttrChange`],
//! the JSON renderer's `after_unknown` and `sensitive_paths`, and the text renderer's
//! `# forces replacement` markers, so a path can be matched across all of them as a plain string.
//!
//! **Invariant:** knows only the shape of [`Value`] trees, nothing of resources or actions.

use std::fmt::Write as _;

use crate::value::Value;

/// One step into an attribute tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Seg<'a> {
    Key(&'a str),
    Index(usize),
}

/// True for keys printed bare: an ASCII letter or `_`, then letters, digits, `_` or `-`
/// (the HCL identifier rule).
pub(crate) fn is_identifier(key: &str) -> bool {
    let mut bytes = key.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Appends `"key"` with JSON string escaping.
pub(crate) fn push_quoted(out: &mut String, key: &str) {
    out.push('"');
    // Runs without anything to escape are copied whole; every character to escape is ASCII, so
    // a byte index found here is always a character boundary.
    let mut clean = 0;
    for (i, b) in key.bytes().enumerate() {
        let escaped = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            b if b < 0x20 || b == 0x7f => "",
            _ => continue,
        };
        out.push_str(&key[clean..i]);
        if escaped.is_empty() {
            let _ = write!(out, "\\u{b:04x}");
        } else {
            out.push_str(escaped);
        }
        clean = i + 1;
    }
    out.push_str(&key[clean..]);
    out.push('"');
}

/// Formats a path from its segments.
pub(crate) fn format_path(segs: &[Seg<'_>]) -> String {
    let mut out = String::new();
    for (i, seg) in segs.iter().enumerate() {
        match *seg {
            Seg::Key(k) if is_identifier(k) => {
                if i > 0 {
                    out.push('.');
                }
                out.push_str(k);
            }
            Seg::Key(k) => {
                out.push('[');
                push_quoted(&mut out, k);
                out.push(']');
            }
            Seg::Index(n) => {
                let _ = write!(out, "[{n}]");
            }
        }
    }
    out
}

/// True for a value that is itself unknown until apply (not one that merely contains one).
pub(crate) fn is_unknown_leaf(v: &Value) -> bool {
    matches!(v, Value::Ref { .. } | Value::Computed { .. })
}

/// The one walk over a value tree with paths: calls `visit(path, value)` for `v` (at `segs`) and,
/// unless `visit` returns false, for every value under it, depth first in tree order (map keys
/// sorted, list indexes ascending).
pub(crate) fn walk_paths<'v>(
    v: &'v Value,
    segs: &mut Vec<Seg<'v>>,
    visit: &mut dyn FnMut(&[Seg<'v>], &'v Value) -> bool,
) {
    if !visit(segs, v) {
        return;
    }
    match v {
        Value::Map(m) => {
            for (k, item) in m {
                segs.push(Seg::Key(k));
                walk_paths(item, segs, visit);
                segs.pop();
            }
        }
        Value::List(items) => {
            for (i, item) in items.iter().enumerate() {
                segs.push(Seg::Index(i));
                walk_paths(item, segs, visit);
                segs.pop();
            }
        }
        _ => {}
    }
}

/// [`walk_paths`] over every attribute of `attrs`, each at the path of its name.
pub(crate) fn walk_attrs<'v, I>(attrs: I, visit: &mut dyn FnMut(&[Seg<'v>], &'v Value) -> bool)
where
    I: IntoIterator<Item = (&'v String, &'v Value)>,
{
    let mut segs = Vec::new();
    for (k, v) in attrs {
        segs.push(Seg::Key(k.as_str()));
        walk_paths(v, &mut segs, visit);
        segs.pop();
    }
}

/// Every path (in tree order: map keys sorted, list indexes ascending) under `root` at which
/// `pred` holds for the value there. The walk does not descend below a matching value.
pub(crate) fn paths_where<'a, I>(root: I, pred: &dyn Fn(&Value) -> bool) -> Vec<String>
where
    I: IntoIterator<Item = (&'a String, &'a Value)>,
{
    let mut out = Vec::new();
    walk_attrs(root, &mut |segs, v| {
        if pred(v) {
            out.push(format_path(segs));
            return false;
        }
        true
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_use_dots_for_identifiers_and_brackets_otherwise() {
        let segs = [Seg::Key("metadata"), Seg::Key("labels"), Seg::Key("matih.ai/tier")];
        assert_eq!(format_path(&segs), r#"metadata.labels["matih.ai/tier"]"#);
        let segs = [Seg::Key("spec"), Seg::Key("containers"), Seg::Index(0), Seg::Key("image")];
        assert_eq!(format_path(&segs), "spec.containers[0].image");
        assert_eq!(format_path(&[Seg::Key("data"), Seg::Key("tenant-db")]), "data.tenant-db");
        assert_eq!(format_path(&[Seg::Key("a \"b\"\n")]), r#"["a \"b\"\n"]"#);
        assert_eq!(format_path(&[Seg::Key("1abc")]), r#"["1abc"]"#);
    }

    #[test]
    fn quoting_escapes_as_json_does_around_any_text() {
        for key in ["", "plain", "é\"ü\\\n\r\t", "\u{1}a\u{7f}", "日本\u{1f}語", "tail\\", "\"head"] {
            let mut out = String::new();
            push_quoted(&mut out, key);
            // serde_json leaves DEL as it is; the plan escapes it like the other control characters.
            assert_eq!(out, serde_json::to_string(key).unwrap().replace('\u{7f}', "\\u007f"), "{key:?}");
        }
    }

    #[test]
    fn paths_where_finds_nested_matches_in_order() {
        let root = std::collections::BTreeMap::from([
            ("b".to_string(), Value::list([Value::Int(1), Value::Computed { note: String::new() }])),
            ("a".to_string(), Value::map([("x.y", Value::Computed { note: String::new() })])),
        ]);
        assert_eq!(paths_where(&root, &is_unknown_leaf), [r#"a["x.y"]"#, "b[1]"]);
    }
}
