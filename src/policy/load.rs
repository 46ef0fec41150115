//! Reading a policy set: the `.rego` and `.json` files of the given paths into a `regorus`
//! engine, every problem a located diagnostic.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::diag::{Diagnostic, Location};

use super::{Options, PolicyFile, PolicySet};

/// See [`PolicySet::load`].
pub(super) fn load(paths: &[PathBuf], options: Options) -> Result<PolicySet, Vec<Diagnostic>> {
    let mut diags = Vec::new();
    for ns in &options.namespaces {
        if !valid_namespace(ns) {
            diags.push(Diagnostic::error(format!(
                "{ns:?} is not a policy namespace: expected a package name such as main or terraform.aws"
            )));
        }
    }
    let (rego, data) = policy_files(paths, &mut diags);
    let mut engine = regorus::Engine::new();
    engine.set_rego_v0(options.rego_v0);
    engine.set_gather_prints(true);
    let mut files = Vec::new();
    for path in &rego {
        let name = path.display().to_string();
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) => {
                diags.push(Diagnostic::error(format!("cannot read policy file {name}: {e}")));
                continue;
            }
        };
        match engine.add_policy(name.clone(), text) {
            // `data.main` → `main`.
            Ok(package) => files.push(PolicyFile {
                package: package.strip_prefix("data.").unwrap_or(&package).to_string(),
                rules: BTreeSet::new(),
                path: name,
            }),
            Err(e) => diags.push(located(&format!("{e:#}"), &name)),
        }
    }
    for path in &data {
        if let Err(d) = add_data(&mut engine, path) {
            diags.push(d);
        }
    }
    if diags.is_empty() {
        check_namespaces(&options, &files, paths, &mut diags);
    }
    if diags.is_empty() {
        // Compile errors (an unknown function, an unsafe variable) show on the first evaluation:
        // make it now, over an empty input, so that they are reported before any plan is made.
        engine.set_input(regorus::Value::new_object());
        for ns in &options.namespaces {
            if let Err(e) = engine.eval_query(format!("data.{ns}"), false) {
                diags.push(located(&format!("{e:#}"), &rego_list(&rego)));
            }
        }
        let _ = engine.take_prints();
    }
    if diags.iter().any(Diagnostic::is_error) {
        crate::diag::sort(&mut diags);
        return Err(diags);
    }
    declared_rules(&mut engine, &mut files);
    Ok(PolicySet { engine, files, options })
}

/// Fills in the rules each file declares, from the modules regorus parsed (in the order added).
fn declared_rules(engine: &mut regorus::Engine, files: &mut [PolicyFile]) {
    use regorus::unstable::{Rule, RuleHead};
    for (module, file) in engine.get_modules().iter().zip(files.iter_mut()) {
        for rule in &module.policy {
            let refr = match &**rule {
                Rule::Spec { head: RuleHead::Compr { refr, .. } | RuleHead::Set { refr, .. }, .. } => refr,
                Rule::Default { refr, .. } => refr,
                Rule::Spec { head: RuleHead::Func { .. }, .. } => continue,
            };
            // `deny`, `deny[msg]`, `a.b`: the rule is the first name.
            let text = refr.span().text();
            let name = text.split(['[', '.', ' ', '(']).next().unwrap_or(text);
            file.rules.insert(name.to_string());
        }
    }
}

fn rego_list(rego: &[PathBuf]) -> String {
    rego.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
}

/// A package name as Rego writes it: dotted identifiers.
fn valid_namespace(ns: &str) -> bool {
    !ns.is_empty()
        && ns.split('.').all(|part| {
            let mut bytes = part.bytes();
            matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
                && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
        })
}

/// Every namespace checked must be some file's package: a misspelt one would pass everything.
fn check_namespaces(options: &Options, files: &[PolicyFile], paths: &[PathBuf], diags: &mut Vec<Diagnostic>) {
    let where_ = paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ");
    for ns in &options.namespaces {
        if !files.iter().any(|f| &f.package == ns) {
            let packages: BTreeSet<&str> = files.iter().map(|f| f.package.as_str()).collect();
            let found = packages.into_iter().collect::<Vec<_>>().join(", ");
            diags.push(
                Diagnostic::error(format!("no policy in {where_} is in package {ns}, so nothing would be checked"))
                    .with_note(format!("packages found: {found}"))
                    .with_note("conftest's convention is package main; name another with --policy-namespace"),
            );
        }
    }
}

/// The `.rego` files (without `*_test.rego`) and `.json` files of `paths`, each list sorted.
fn policy_files(paths: &[PathBuf], diags: &mut Vec<Diagnostic>) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let (mut rego, mut data) = (Vec::new(), Vec::new());
    for path in paths {
        if path.is_dir() {
            let before = rego.len();
            walk(path, &mut rego, &mut data, diags);
            if rego.len() == before {
                diags.push(Diagnostic::error(format!("no .rego policy file in {}", path.display())));
            }
        } else if path.is_file() && path.extension().is_some_and(|e| e == "rego") {
            rego.push(path.clone());
        } else if path.exists() {
            diags.push(Diagnostic::error(format!(
                "{} is neither a directory of policies nor a .rego file",
                path.display()
            )));
        } else {
            diags.push(Diagnostic::error(format!("policy directory {} does not exist", path.display())));
        }
    }
    rego.sort();
    rego.dedup();
    data.sort();
    data.dedup();
    (rego, data)
}

fn walk(dir: &Path, rego: &mut Vec<PathBuf>, data: &mut Vec<PathBuf>, diags: &mut Vec<Diagnostic>) {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            diags.push(Diagnostic::error(format!("cannot read policy directory {}: {e}", dir.display())));
            return;
        }
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        if path.is_dir() {
            walk(&path, rego, data, diags);
        } else if name.ends_with(".rego") && !name.ends_with("_test.rego") {
            rego.push(path);
        } else if name.ends_with(".json") {
            data.push(path);
        }
    }
}

fn add_data(engine: &mut regorus::Engine, path: &Path) -> Result<(), Diagnostic> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| Diagnostic::error(format!("cannot read policy data file {name}: {e}")))?;
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
        Diagnostic::error(format!("policy data is not JSON: {e}")).at(Location {
            file: path.to_path_buf(),
            line: e.line().max(1),
            column: e.column().max(1),
        })
    })?;
    if !json.is_object() {
        return Err(Diagnostic::error("policy data must be a JSON object (it is merged into `data`)").at(Location {
            file: path.to_path_buf(),
            line: 1,
            column: 1,
        }));
    }
    let value = serde_json::from_value::<regorus::Value>(json)
        .map_err(|e| Diagnostic::error(format!("policy data file {name}: {e}")))?;
    engine.add_data(value).map_err(|e| Diagnostic::error(format!("policy data file {name}: {e:#}")))
}

/// A regorus error as a diagnostic: its `--> file:line:col` becomes the location, its last line
/// (`error: …`) the message and the source line with its caret the notes. `fallback` names the
/// file(s) when the error has no location.
fn located(error: &str, fallback: &str) -> Diagnostic {
    let lines: Vec<&str> = error.lines().collect();
    let arrow = lines.iter().position(|l| l.trim_start().starts_with("--> "));
    let Some(at) = arrow else {
        return Diagnostic::error(format!("{fallback}: {}", error.trim()));
    };
    let spot = lines[at].trim_start().trim_start_matches("--> ");
    let mut parts = spot.rsplitn(3, ':');
    let (col, line, file) = (parts.next(), parts.next(), parts.next());
    let (Some(col), Some(line), Some(file)) =
        (col.and_then(|c| c.parse().ok()), line.and_then(|l| l.parse().ok()), file)
    else {
        return Diagnostic::error(format!("{fallback}: {}", error.trim()));
    };
    let rest = &lines[at + 1..];
    let first_error = rest.iter().position(|l| l.starts_with("error: "));
    let message =
        first_error.map_or_else(|| rest.last().copied().unwrap_or("").to_string(), |i| rest[i][7..].to_string());
    // What came before the arrow (regorus prefixes some errors with their context).
    let context: Vec<&str> = lines[..at].iter().map(|l| l.trim()).filter(|l| !l.is_empty()).collect();
    let mut d = Diagnostic::error(message).at(Location { file: PathBuf::from(file), line, column: col });
    for l in context {
        d = d.with_note(l.to_string());
    }
    // The source line and its caret, then whatever follows (a second location: the rule another
    // one conflicts with).
    for (i, l) in rest.iter().enumerate() {
        if Some(i) == first_error {
            continue;
        }
        if let Some(other) = l.trim_start().strip_prefix("--> ") {
            d = d.with_note(format!("at {other}:"));
        } else if let Some(e) = l.strip_prefix("error: ") {
            d = d.with_note(e.to_string());
        } else if l.contains('|') && !l.trim().trim_start_matches('|').trim().is_empty() {
            d = d.with_note(l.to_string());
        }
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regorus_errors_become_located_diagnostics() {
        let e = "\n--> p/x.rego:3:9\n  |\n3 |     deny[msg] {\n  |         ^\nerror: unexpected token";
        let d = located(e, "p/x.rego");
        assert_eq!(d.location.as_ref().unwrap().to_string(), "p/x.rego:3:9");
        assert_eq!(d.message, "unexpected token");
        assert_eq!(d.notes, ["3 |     deny[msg] {", "  |         ^"]);
        let plain = located("file too large", "p/x.rego");
        assert_eq!(plain.to_string(), "error: p/x.rego: file too large");
    }

    #[test]
    fn namespaces_are_package_names() {
        assert!(valid_namespace("main") && valid_namespace("terraform.aws") && valid_namespace("_x.y1"));
        assert!(
            !valid_namespace("") && !valid_namespace("a..b") && !valid_namespace("x; true") && !valid_namespace("1a")
        );
    }
}
