//! SQL text helpers: checked and quoted identifiers, quoted literals, and server errors turned
//! into messages with a transient/permanent verdict.
//!
//! Values always travel as bind parameters. Identifiers cannot (SQL has no parameter for a
//! name), so every name is checked by [`ident`] and double-quoted before it reaches SQL text; the
//! few utility statements that take a literal and no parameter (`PASSWORD '…'`) use [`literal`].

use tokio_postgres::error::ErrorPosition;

/// PostgreSQL truncates identifiers longer than this (NAMEDATALEN - 1), which would silently
/// address another object: longer names are refused.
pub const MAX_IDENT: usize = 63;

/// Double-quotes any text as an identifier (`a"b` → `"a""b"`). Prefer [`ident`], which also
/// checks the name.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Checks that `name` is a plain SQL name (ASCII letters, digits and `_`, not starting with a
/// digit, at most 63 bytes) and returns it double-quoted. Plain names are all matih ever creates;
/// anything else in an attribute is a bug or an attack, never something to pass through.
pub fn ident(name: &str) -> Result<String, String> {
    let plain = name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !plain {
        return Err(format!(
            "{name:?} is not a plain SQL name (ASCII letters, digits and '_', not starting with a digit)"
        ));
    }
    if name.len() > MAX_IDENT {
        return Err(format!("{name:?} is longer than {MAX_IDENT} bytes"));
    }
    Ok(quote_ident(name))
}

/// A string literal for the few statements that take no bind parameter. Backslashes and quotes
/// are escaped whatever `standard_conforming_strings` says.
pub fn literal(text: &str) -> String {
    postgres_protocol::escape::escape_literal(text)
}

// Error classification is shared with the PostgreSQL state store, so it lives in `pgconn`.
pub use crate::pgconn::{describe, is_transient_code};

/// The SQLSTATE of a server error.
pub fn code(e: &tokio_postgres::Error) -> Option<&str> {
    e.as_db_error().map(|db| db.code().code())
}

/// The 1-based line of `sql` a server error points at, when it points into `sql` itself.
pub fn error_line(e: &tokio_postgres::Error, sql: &str) -> Option<usize> {
    match e.as_db_error()?.position()? {
        ErrorPosition::Original(pos) => {
            let before = (*pos as usize).saturating_sub(1);
            Some(sql.chars().take(before).filter(|&c| c == '\n').count() + 1)
        }
        ErrorPosition::Internal { .. } => None,
    }
}

/// Percent-encodes a URL component (RFC 3986 unreserved characters stay as they are).
pub fn url_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_checked_and_quoted() {
        assert_eq!(ident("tenant_acme").unwrap(), "\"tenant_acme\"");
        assert_eq!(ident("_x1").unwrap(), "\"_x1\"");
        assert_eq!(ident("Flyway_Schema_History").unwrap(), "\"Flyway_Schema_History\"");
        for bad in ["", "1abc", "a b", "a\"b", "a;DROP TABLE x", "tenant-acme", "ä", "a\0b", "x'--", &"a".repeat(64)] {
            assert!(ident(bad).is_err(), "{bad:?} should be refused");
        }
        assert_eq!(ident(&"a".repeat(63)).unwrap().len(), 65);
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote_ident("x\"; DROP TABLE t; --"), "\"x\"\"; DROP TABLE t; --\"");
    }

    #[test]
    fn literals_escape_quotes_and_backslashes() {
        assert_eq!(literal("abc"), "'abc'");
        assert_eq!(literal("o'brien"), "'o''brien'");
        assert_eq!(literal("a\\b"), " E'a\\\\b'");
        assert_eq!(literal("SCRAM-SHA-256$4096:c2FsdA==$a:b"), "'SCRAM-SHA-256$4096:c2FsdA==$a:b'");
    }

    #[test]
    fn transient_codes() {
        for code in ["08006", "08001", "57P01", "40001", "40P01", "53300"] {
            assert!(is_transient_code(code), "{code}");
        }
        for code in ["42601", "42501", "42P01", "23505", "28P01", "2BP01", "XX000"] {
            assert!(!is_transient_code(code), "{code}");
        }
    }

    #[test]
    fn url_components_are_percent_encoded() {
        assert_eq!(url_encode("tenant_acme"), "tenant_acme");
        assert_eq!(url_encode("-csearch_path=x"), "-csearch_path%3Dx");
        assert_eq!(url_encode("p@ss:/w?d"), "p%40ss%3A%2Fw%3Fd");
    }
}
