//! Tidy checks of the source itself (as rust-analyzer's tidy tests), beside the layering checks of
//! [`crate::layers`]: no function of `src/` (library, binary and tests alike) is longer than
//! [`MAX_FN_LINES`] lines, except the data literals of [`DATA_LITERALS`].

use std::path::{Path, PathBuf};

/// The longest a function may be, from its `fn` line to its closing brace.
const MAX_FN_LINES: usize = 120;

/// Functions allowed to be longer because they are data, not logic: (file under `src/`, function,
/// why). Keep it short; a function of logic over the limit is split instead.
const DATA_LITERALS: &[(&str, &str, &str)] = &[
    (
        "graph/compile.rs",
        "ingress_controller",
        "phase 6's objects (account, roles, Deployment, Services) as Value literals",
    ),
    ("graph/compile.rs", "monitoring", "phase 8's Prometheus objects, alert rules and dashboards as Value literals"),
    ("graph/compile.rs", "observability", "phase 9's Loki, collector, Tempo and Grafana objects as Value literals"),
];

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src is readable") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `text` with the contents of comments, strings and character literals blanked (newlines kept),
/// so that braces in them are not counted.
fn code_only(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    // Blanks `chars[from..to]`, keeping newlines.
    let blank = |out: &mut String, from: usize, to: usize| {
        out.extend(chars[from..to].iter().map(|&c| if c == '\n' { '\n' } else { ' ' }));
    };
    while i < chars.len() {
        let rest = &chars[i..];
        let end = if rest.starts_with(&['/', '/']) {
            rest.iter().position(|&c| c == '\n').map_or(chars.len(), |n| i + n)
        } else if rest.starts_with(&['/', '*']) {
            (i + 2..chars.len()).find(|&j| chars[j - 1] == '*' && chars[j] == '/').map_or(chars.len(), |j| j + 1)
        } else if let Some(hashes) = raw_string_start(rest) {
            let close: Vec<char> = std::iter::once('"').chain(std::iter::repeat_n('#', hashes)).collect();
            let body = i + hashes + 2 + usize::from(rest[0] == 'b');
            (body..chars.len()).find(|&j| chars[j..].starts_with(&close)).map_or(chars.len(), |j| j + close.len())
        } else if rest[0] == '"' {
            let mut j = i + 1;
            while j < chars.len() && chars[j] != '"' {
                j += if chars[j] == '\\' { 2 } else { 1 };
            }
            j + 1
        } else if rest[0] == '\'' && (rest.get(2) == Some(&'\'') || rest.get(1) == Some(&'\\')) {
            // A character literal ('{', '\'', '\u{7b}'); a lifetime ('a) has no closing quote.
            if rest[1] == '\\' {
                (i + 3..chars.len()).find(|&j| chars[j] == '\'').map_or(chars.len(), |j| j + 1)
            } else {
                i + 3
            }
        } else {
            out.push(rest[0]);
            i += 1;
            continue;
        };
        let end = end.min(chars.len());
        blank(&mut out, i, end);
        i = end;
    }
    out
}

/// The number of `#`s of a raw string starting at `rest` (`r"`, `r#"`, `br##"`…).
fn raw_string_start(rest: &[char]) -> Option<usize> {
    let after_r = match rest {
        ['r', ..] => &rest[1..],
        ['b', 'r', ..] => &rest[2..],
        _ => return None,
    };
    let hashes = after_r.iter().take_while(|&&c| c == '#').count();
    (after_r.get(hashes) == Some(&'"')).then_some(hashes)
}

/// The functions of `code` (comments and literals blanked) with a body: (name, first line, lines).
fn functions(code: &str) -> Vec<(String, usize, usize)> {
    let lines: Vec<&str> = code.lines().collect();
    let mut found = Vec::new();
    for (n, line) in lines.iter().enumerate() {
        let Some(at) = fn_keyword(line) else { continue };
        let name: String = line[at + 3..].chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
        // The body: from the first `{` after the signature (unless a `;` ends it first) to its match.
        let mut depth = 0usize;
        let mut opened = false;
        'lines: for (m, l) in lines.iter().enumerate().skip(n) {
            let from = if m == n { at } else { 0 };
            for c in l[from..].chars() {
                match c {
                    ';' if !opened => break 'lines,
                    '{' => {
                        depth += 1;
                        opened = true;
                    }
                    '}' if opened => {
                        depth -= 1;
                        if depth == 0 {
                            found.push((name.clone(), n + 1, m - n + 1));
                            break 'lines;
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    found
}

/// Where the `fn` keyword of a function item starts in `line`, if it declares one.
fn fn_keyword(line: &str) -> Option<usize> {
    let at = line.find("fn ")?;
    let before = &line[..at];
    let words_before = before.split_whitespace().all(|w| {
        matches!(w, "pub" | "async" | "const" | "unsafe" | "extern" | "\"C\"" | "default") || w.starts_with("pub(")
    });
    let name_follows = line[at + 3..].starts_with(|c: char| c.is_alphabetic() || c == '_');
    (words_before && name_follows).then_some(at)
}

#[test]
fn no_function_is_longer_than_the_limit_except_data_literals() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut long = Vec::new();
    let mut allowed_seen = Vec::new();
    for path in &files {
        let rel = path.strip_prefix(&src).expect("under src").to_string_lossy().replace('\\', "/");
        let code = code_only(&std::fs::read_to_string(path).expect("a source file is readable"));
        for (name, line, len) in functions(&code) {
            if len <= MAX_FN_LINES {
                continue;
            }
            if DATA_LITERALS.iter().any(|(f, n, _)| *f == rel && *n == name) {
                allowed_seen.push((rel.clone(), name));
            } else {
                long.push(format!("src/{rel}:{line}: fn {name} is {len} lines"));
            }
        }
    }
    assert!(
        long.is_empty(),
        "functions over {MAX_FN_LINES} lines (split them; data literals go in DATA_LITERALS with a reason):\n{}",
        long.join("\n")
    );
    let stale: Vec<_> = DATA_LITERALS
        .iter()
        .filter(|(f, n, _)| !allowed_seen.iter().any(|(sf, sn)| sf == f && sn == n))
        .map(|(f, n, _)| format!("src/{f}: fn {n}"))
        .collect();
    assert!(stale.is_empty(), "DATA_LITERALS names functions that are not over the limit:\n{}", stale.join("\n"));
}

#[test]
fn the_function_counter_skips_braces_in_comments_strings_and_characters() {
    let code = code_only(
        "fn a() {\n    let s = \"}\"; // }\n    let c = '}';\n    let e = '\\\\';\n    let r = r#\"}\"#;\n    /* } */\n    x::<'a>();\n}\n\
         fn b(&self);\npub(crate) async fn c() -> u8 {\n    1\n}\n",
    );
    assert_eq!(functions(&code), [("a".to_string(), 1, 8), ("c".to_string(), 10, 3)]);
}
