//! The layers of ARCHITECTURE.md, checked (as rust-analyzer's tidy tests check its rules): every
//! `crate::…` path a module of the library names must be an arrow of [`ALLOWED`], and no two
//! files of one module use each other. [`ALLOWED`] is the one place the arrows are written down;
//! ARCHITECTURE.md points here.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Each top-level module of the library, with the modules it may use. An arrow not listed here is
/// a layering error; a module not listed may use nothing of the crate.
const ALLOWED: &[(&str, &[&str])] = &[
    // Leaves: vocabulary every layer shares.
    ("addr", &[]),
    ("diag", &[]),
    ("encoding", &[]),
    ("kind", &[]),
    ("phase", &[]),
    ("pgconn", &["encoding", "transport"]),
    ("quantity", &[]),
    ("transport", &[]),
    ("value", &["addr"]),
    // The pure core: data in, data and diagnostics out.
    ("catalog", &["addr", "diag", "kind", "phase", "quantity", "value"]),
    ("spec", &["addr", "catalog", "diag", "transport"]),
    ("graph", &["addr", "catalog", "diag", "kind", "phase", "quantity", "spec", "value"]),
    // State knows nothing of providers, graphs or plans.
    ("state", &["addr", "pgconn", "phase", "value"]),
    // The one progress event and the status document it folds into.
    ("events", &["phase", "state", "value"]),
    // Plans are made from graphs and states; they never reach a provider.
    ("plan", &["addr", "graph", "kind", "phase", "state", "value"]),
    // Policy checks read plans (as their JSON documents) and report located diagnostics (phases and values: its tests build plans).
    ("policy", &["diag", "phase", "plan", "value"]),
    // Providers know nothing of graphs, plans or state.
    ("provider", &["addr", "catalog", "pgconn", "quantity", "spec", "transport", "value"]),
    // The engine: plans executed through the Provider trait, written to state.
    ("apply", &["addr", "events", "graph", "kind", "phase", "plan", "provider", "state", "value"]),
    ("drift", &["addr", "apply", "graph", "phase", "plan", "provider", "state", "value"]),
    // Readers of the event stream.
    ("notify", &["apply", "phase", "plan", "spec", "state", "transport", "value"]),
    (
        "serve",
        &["addr", "apply", "encoding", "events", "notify", "phase", "plan", "provider", "spec", "state", "value"],
    ),
    // The steps the commands share: may use every layer.
    (
        "workflow",
        &[
            "addr", "apply", "catalog", "diag", "drift", "graph", "kind", "notify", "phase", "plan", "provider",
            "spec", "state", "value",
        ],
    ),
];

/// Every `.rs` file of the library under `dir` (the binaries' files excluded: `main.rs`, `cli/`, `bin/`).
fn library_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src is readable") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            if !path.ends_with("bin") && !path.ends_with("cli") {
                library_files(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs") && !path.ends_with("main.rs") {
            out.push(path);
        }
    }
}

/// The identifiers that follow `prefix` in `text`, including those of a braced list
/// (`crate::{a, b::c}` names `a` and `b`).
fn names_after(text: &str, prefix: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (at, _) in text.match_indices(prefix) {
        let rest = &text[at + prefix.len()..];
        if let Some(list) = rest.strip_prefix('{') {
            let list = &list[..list.find('}').unwrap_or(list.len())];
            // Only the first segment of each item: nested braces belong to inner modules.
            let mut depth = 0;
            let mut item_start = true;
            for (i, c) in list.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    c if item_start && depth == 0 && (c.is_alphabetic() || c == '_') => {
                        out.insert(ident(&list[i..]).to_string());
                        item_start = false;
                    }
                    _ => {}
                }
            }
        } else {
            let name = ident(rest);
            if !name.is_empty() {
                out.insert(name.to_string());
            }
        }
    }
    out
}

fn ident(s: &str) -> &str {
    &s[..s.find(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap_or(s.len())]
}

/// Text without `//` comments (doc comments mention modules they do not use).
fn code_of(path: &Path) -> String {
    let text = std::fs::read_to_string(path).expect("a source file is readable");
    text.lines().map(|l| l.find("//").map_or(l, |i| &l[..i])).collect::<Vec<_>>().join("\n")
}

#[test]
fn every_arrow_between_modules_is_allowed_by_the_architecture() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    let mut files = Vec::new();
    library_files(&src, &mut files);
    let mut wrong = Vec::new();
    for path in &files {
        let rel = path.strip_prefix(&src).expect("under src");
        let top = rel.iter().next().and_then(|c| c.to_str()).expect("a file name");
        let module = top.strip_suffix(".rs").unwrap_or(top);
        if module == "lib" || module == "layers" {
            continue;
        }
        let may = allowed.get(module).copied().unwrap_or(&[]);
        for used in names_after(&code_of(path), "crate::") {
            if used != module && !may.contains(&used.as_str()) {
                wrong.push(format!("{}: {module} -> {used}", rel.display()));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "arrows ARCHITECTURE.md does not allow (see ALLOWED in src/layers.rs):\n{}",
        wrong.join("\n")
    );
}

#[test]
fn no_two_files_of_a_module_use_each_other() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    library_files(&src, &mut files);
    // (directory, file stem) → the sibling stems it names through `super::`.
    let mut uses: BTreeMap<(PathBuf, String), BTreeSet<String>> = BTreeMap::new();
    for path in &files {
        let stem = path.file_stem().and_then(|s| s.to_str()).expect("a file name").to_string();
        if stem == "mod" || stem == "lib" || stem.ends_with("tests") {
            continue;
        }
        let dir = path.parent().expect("a directory").to_path_buf();
        let code = code_of(path);
        let mut named = names_after(&code, "super::");
        // `crate::apply::feed::…` names a sibling of `apply/events.rs` as well.
        if let Ok(module) = dir.strip_prefix(&src) {
            let prefix = format!("crate::{}::", module.display().to_string().replace('/', "::"));
            named.extend(names_after(&code, &prefix));
        }
        uses.insert((dir, stem), named);
    }
    let mut cycles = Vec::new();
    for ((dir, a), named) in &uses {
        for b in named.iter().filter(|b| *b > a) {
            if uses.get(&(dir.clone(), b.clone())).is_some_and(|back| back.contains(a)) {
                cycles.push(format!("{}: {a}.rs <-> {b}.rs", dir.strip_prefix(&src).unwrap_or(dir).display()));
            }
        }
    }
    assert!(cycles.is_empty(), "files of one module that use each other:\n{}", cycles.join("\n"));
}

/// Files of the library allowed to print to the terminal: the console hooks write through a
/// writer they are handed, so only `matih serve`'s start line is left.
const MAY_PRINT: &[&str] = &["serve/mod.rs"];

#[test]
fn the_library_prints_nothing_the_cli_does() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    library_files(&src, &mut files);
    let mut printing = Vec::new();
    for path in &files {
        let rel = path.strip_prefix(&src).expect("under src").to_string_lossy().replace('\\', "/");
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
        if MAY_PRINT.contains(&rel.as_str()) || stem.ends_with("tests") || rel == "layers.rs" {
            continue;
        }
        let code = code_of(path);
        let code = code.split("#[cfg(test)]").next().unwrap_or_default();
        if ["println!", "eprintln!", "print!(", "eprint!("].iter().any(|m| code.contains(m)) {
            printing.push(rel);
        }
    }
    assert!(
        printing.is_empty(),
        "library files that print (return the text, or use tracing):\n{}",
        printing.join("\n")
    );
}
