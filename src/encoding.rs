//! Decoding of `%`-escapes, for the two places text arrives percent-encoded: the query string of
//! a status API request and the query of a PostgreSQL URL.
//!
//! **Invariant:** knows no domain.

/// How to read a `+`, and a `%` that is not followed by two hex digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Escapes {
    /// A query string (`application/x-www-form-urlencoded`): `+` is a space, and a bad escape is
    /// kept as it is.
    Form,
    /// A URL component as libpq reads it: `+` is itself, and a bad escape is an error.
    Strict,
}

/// The bytes `s` stands for; `None` for a bad escape under [`Escapes::Strict`].
pub fn percent_decode(s: &str, escapes: Escapes) -> Option<Vec<u8>> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => match (s.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(h, 16).ok()), escapes) {
                (Some(byte), _) => {
                    out.push(byte);
                    i += 3;
                    continue;
                }
                (None, Escapes::Form) => out.push(b'%'),
                (None, Escapes::Strict) => return None,
            },
            b'+' if escapes == Escapes::Form => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_keeps_bad_escapes_and_strict_refuses_them() {
        assert_eq!(percent_decode("a%2Bb+c", Escapes::Form).unwrap(), b"a+b c");
        assert_eq!(percent_decode("%zz%", Escapes::Form).unwrap(), b"%zz%");
        assert_eq!(percent_decode("/ca%20dir/a+b.pem", Escapes::Strict).unwrap(), b"/ca dir/a+b.pem");
        assert_eq!(percent_decode("bad%2", Escapes::Strict), None);
    }
}
