//! The example GitHub Actions workflows of `examples/github-actions/` (README.md, "Plans"): each
//! parses as YAML with the shape GitHub expects (`on`, `jobs`, each job's `steps`, each step a `uses`
//! or a `run`), and every `matih` command of their `run:` scripts exists in the real binary with
//! every option it is given. A workflow that says `matih plan --no-such-flag` fails here, not on a
//! team's first pull request.
//!
//! Scripts are split the way a shell reads them, closely enough for these files: line continuations
//! joined, commands separated at newlines, `;`, `|`, `&&`, `||`, `$(…)` and backquotes, comments and
//! redirections dropped, quotes removed. Each option is looked up in `matih … --help` of its command
//! (Terraform's single-dash spelling `-out` as `--out`, which is what matih turns it into), and the
//! whole command line, with `--help` added and shell variables replaced by sample values, is run
//! through the binary, which parses every option before it prints the help: an option it does not
//! accept, or a value it refuses, is an error there.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use yaml_rust2::{Yaml, YamlLoader};

use crate::support::{matih_command, root, stderr, stdout};

/// Every `*.yml` of `examples/github-actions/`, with its text.
fn workflows() -> Vec<(PathBuf, String)> {
    let dir = root().join("examples/github-actions");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yml" || x == "yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no workflow in {}", dir.display());
    files.into_iter().map(|p| (p.clone(), std::fs::read_to_string(&p).unwrap())).collect()
}

/// Checks the workflow's shape and returns the `run:` scripts of its steps.
fn run_scripts(name: &str, text: &str) -> Vec<String> {
    let docs = YamlLoader::load_from_str(text).unwrap_or_else(|e| panic!("{name} is not YAML: {e}"));
    assert_eq!(docs.len(), 1, "{name}: one YAML document");
    let doc = &docs[0];
    assert!(doc.as_hash().is_some(), "{name}: a mapping at the top");
    assert!(doc["name"].as_str().is_some(), "{name}: no name");
    let on = &doc["on"];
    assert!(on.as_hash().is_some() || on.as_str().is_some() || on.as_vec().is_some(), "{name}: no `on`");
    assert!(!doc["permissions"].is_badvalue(), "{name}: no top-level permissions (keep them minimal)");
    let jobs = doc["jobs"].as_hash().unwrap_or_else(|| panic!("{name}: no jobs"));
    assert!(!jobs.is_empty(), "{name}: no jobs");
    let mut scripts = Vec::new();
    for (job_name, job) in jobs {
        let job_name = job_name.as_str().unwrap_or_else(|| panic!("{name}: a job name that is not a string"));
        let at = format!("{name}: job {job_name}");
        assert!(job["runs-on"].as_str().is_some(), "{at}: no runs-on");
        let steps = job["steps"].as_vec().unwrap_or_else(|| panic!("{at}: no steps"));
        assert!(!steps.is_empty(), "{at}: no steps");
        for (i, step) in steps.iter().enumerate() {
            let (uses, run) = (step["uses"].as_str(), step["run"].as_str());
            assert!(uses.is_some() != run.is_some(), "{at}: step {} needs exactly one of uses and run", i + 1);
            if let Some(uses) = uses {
                let (action, version) = uses.split_once('@').unwrap_or_else(|| panic!("{at}: {uses} has no @version"));
                assert!(action.contains('/') && !version.is_empty(), "{at}: {uses} is not OWNER/REPO@REF");
            }
            scripts.extend(run.map(str::to_string));
        }
    }
    scripts
}

/// Splits a shell script into simple commands (each as its words, quotes removed). See the module
/// comment for what is understood.
fn commands(script: &str) -> Vec<Vec<String>> {
    let script = script.replace("\\\n", " ");
    let chars: Vec<char> = script.chars().collect();
    let (mut out, mut cmd, mut word) = (Vec::new(), Vec::new(), None::<String>);
    // Whether inside double quotes, saved when a `$(` starts inside them.
    let (mut dq, mut saved) = (false, Vec::new());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let in_redirect = word.as_deref().is_some_and(|w| w.ends_with(['>', '<']));
        let boundary = if c == '$' && chars.get(i + 1) == Some(&'(') {
            saved.push(dq);
            dq = false;
            i += 1;
            true
        } else if c == ')' && !dq && !saved.is_empty() {
            dq = saved.pop().unwrap();
            true
        } else {
            !dq && (matches!(c, '\n' | ';' | '|' | '(' | ')' | '`') || (c == '&' && !in_redirect))
        };
        if boundary || (!dq && c.is_whitespace()) {
            cmd.extend(word.take());
            if boundary && !cmd.is_empty() {
                out.push(std::mem::take(&mut cmd));
            }
        } else if c == '#' && !dq && word.is_none() {
            i = chars[i..].iter().position(|&c| c == '\n').map_or(chars.len(), |n| i + n);
            continue;
        } else if c == '"' {
            dq = !dq;
            word.get_or_insert_with(String::new);
        } else if c == '\'' && !dq {
            let end = chars[i + 1..].iter().position(|&c| c == '\'').map_or(chars.len(), |n| i + 1 + n);
            word.get_or_insert_with(String::new).extend(&chars[i + 1..end.min(chars.len())]);
            i = end;
        } else if c == '\\' && i + 1 < chars.len() {
            word.get_or_insert_with(String::new).push(chars[i + 1]);
            i += 1;
        } else {
            word.get_or_insert_with(String::new).push(c);
        }
        i += 1;
    }
    cmd.extend(word);
    out.extend((!cmd.is_empty()).then_some(cmd));
    out
}

/// The arguments of every `matih` command of `script` (redirections left out).
fn invocations(script: &str) -> Vec<Vec<String>> {
    const KEYWORDS: &[&str] = &["if", "then", "else", "elif", "do", "while", "until", "!", "time", "exec", "{"];
    let mut found = Vec::new();
    for cmd in commands(script) {
        let mut words = cmd.into_iter().skip_while(|w| KEYWORDS.contains(&w.as_str()) || is_assignment(w)).peekable();
        if words.next().as_deref() != Some("matih") {
            continue;
        }
        let mut args = Vec::new();
        while let Some(w) = words.next() {
            let op = w.trim_start_matches(|c: char| c.is_ascii_digit());
            if op.starts_with(['>', '<']) {
                if op.trim_start_matches(['>', '<', '&']).is_empty() {
                    words.next(); // `> FILE`: the file too
                }
                continue;
            }
            args.push(w);
        }
        found.push(args);
    }
    found
}

fn is_assignment(word: &str) -> bool {
    word.split_once('=')
        .is_some_and(|(name, _)| !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
}

/// What `matih … --help` of one command lists.
struct Help {
    subcommands: BTreeSet<String>,
    /// Long option → the name of its value when it takes one (`None`: a flag, or a value only after `=`).
    longs: BTreeMap<String, Option<String>>,
    shorts: BTreeMap<char, String>,
}

/// `matih PATH… --help` parsed, or `None` when the binary refuses it (no such command).
fn help(path: &[String]) -> Option<Help> {
    let out = matih_command().args(path).arg("--help").env("NO_COLOR", "1").output().expect("run matih");
    if !out.status.success() {
        return None;
    }
    let mut h = Help { subcommands: BTreeSet::new(), longs: BTreeMap::new(), shorts: BTreeMap::new() };
    let mut in_commands = false;
    for line in stdout(&out).lines() {
        if line == "Commands:" {
            in_commands = true;
            continue;
        }
        let t = line.trim_start();
        if in_commands {
            in_commands = !t.is_empty();
            h.subcommands.extend(t.split_whitespace().next().map(str::to_string));
            continue;
        }
        // Option lines are indented by at most six spaces; wrapped descriptions by more.
        if line.len() - t.len() > 6 || !t.starts_with('-') {
            continue;
        }
        let short = t.chars().nth(1).filter(|_| t.chars().nth(2) == Some(','));
        let t = if short.is_some() { t[3..].trim_start() } else { t };
        let Some(rest) = t.strip_prefix("--") else { continue };
        let name: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '-').collect();
        let after = &rest[name.len()..];
        let value = after.strip_prefix(" <").and_then(|v| v.split_once('>')).map(|(v, _)| v.to_string());
        if let Some(s) = short {
            h.shorts.insert(s, name.clone());
        }
        h.longs.insert(name, value);
    }
    Some(h)
}

/// A value matih accepts in place of a shell variable given to an option whose value is `value_name`.
fn sample(value_name: Option<&str>) -> String {
    match value_name {
        Some(v) if v.contains("sha256") => format!("sha256:{}", "0".repeat(64)),
        _ => "sample".to_string(),
    }
}

/// Everything wrong with `matih ARGS` (nothing when the command and all its options exist): each
/// option checked against its command's `--help`, then the whole line run with `--help` added.
fn problems(args: &[String]) -> Vec<String> {
    let line = format!("matih {}", args.join(" "));
    let mut found = Vec::new();
    let (mut path, mut argv) = (Vec::<String>::new(), Vec::<String>::new());
    let mut h = help(&path).expect("matih --help");
    let mut words = args.iter();
    while let Some(w) = words.next() {
        if let Some(rest) = w.strip_prefix('-').filter(|r| !r.is_empty()) {
            let rest = rest.strip_prefix('-').unwrap_or(rest);
            let (name, inline) = rest.split_once('=').map_or((rest, None), |(n, v)| (n, Some(v)));
            let long_like = name.len() >= 2 || w.starts_with("--");
            let long = if long_like {
                Some(name.to_string())
            } else {
                name.chars().next().and_then(|c| h.shorts.get(&c).cloned())
            };
            let Some(value_name) = long.as_ref().and_then(|l| h.longs.get(l)) else {
                found.push(format!("`{line}`: `matih {}` has no option {w}", path.join(" ")));
                argv.push(w.clone());
                continue;
            };
            match inline {
                Some(v) if v.contains('$') => {
                    argv.push(format!("{}={}", &w[..w.len() - v.len() - 1], sample(value_name.as_deref())))
                }
                _ => argv.push(w.clone()),
            }
            if value_name.is_some() && inline.is_none() {
                if let Some(v) = words.next() {
                    argv.push(if v.contains('$') { sample(value_name.as_deref()) } else { v.clone() });
                }
            }
        } else if !h.subcommands.is_empty() && !w.contains('$') {
            path.push(w.clone());
            argv.push(w.clone());
            match help(&path) {
                Some(sub) => h = sub,
                None => {
                    found.push(format!("`{line}`: matih has no command `{}`", path.join(" ")));
                    return found;
                }
            }
        } else {
            argv.push(if w.contains('$') { sample(None) } else { w.clone() });
        }
    }
    if path.is_empty() {
        found.push(format!("`{line}`: no command"));
    }
    let out = matih_command().args(&argv).arg("--help").env("NO_COLOR", "1").output().expect("run matih");
    if !out.status.success() || !stdout(&out).contains("Usage: matih") {
        let why = stderr(&out).lines().next().unwrap_or_default().to_string();
        found.push(format!("`{line}`: the binary refuses `matih {} --help`: {why}", argv.join(" ")));
    }
    found
}

fn words(line: &str) -> Vec<String> {
    line.split_whitespace().map(str::to_string).collect()
}

/// The splitter and the checker themselves: they find the commands a script hides in substitutions,
/// pipes and continued lines, skip comments and quoted text, and report what does not exist.
#[test]
fn the_checker_finds_commands_and_refuses_options_that_do_not_exist() {
    let script = "# matih nothing\nd=$(matih show p --format json | jq -r .digest)\necho 'matih no' \"$d\"\n\
                  if matih plan tenants \\\n  -out p --format markdown > p.md 2> e; then :; fi\n\
                  x=\"$(NO_COLOR=1 matih drift --json)\" && matih apply p --expect-digest \"$d\" -auto-approve 2>&1 | tee log";
    let found = invocations(script);
    let expected = [
        "show p --format json",
        "plan tenants -out p --format markdown",
        "drift --json",
        "apply p --expect-digest $d -auto-approve",
    ];
    assert_eq!(found, expected.map(words).to_vec());
    for args in &found {
        assert_eq!(problems(args), Vec::<String>::new());
    }
    for bad in [
        "plan tenants --no-such-flag",
        "plan -no-such-flag",
        "drift --out x",
        "frobnicate tenants",
        "apply p -auto-aprove",
    ] {
        let why = problems(&words(bad));
        assert!(!why.is_empty(), "the checker accepted `matih {bad}`");
    }
    let why = problems(&words("plan --no-such-flag"));
    assert!(why[0].contains("has no option --no-such-flag"), "{why:?}");
    assert!(why[1].contains("unexpected argument '--no-such-flag'"), "{why:?}");
    assert!(
        !problems(&words("apply p --expect-digest sha256:0")).is_empty(),
        "a malformed digest is refused by the binary"
    );
}

#[test]
fn the_example_workflows_parse_and_use_only_commands_and_options_that_exist() {
    let mut seen = BTreeSet::new();
    let mut wrong = Vec::new();
    for (path, text) in workflows() {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        for script in run_scripts(&name, &text) {
            for args in invocations(&script) {
                seen.insert(args.iter().find(|a| !a.starts_with('-')).cloned().unwrap_or_default());
                if args.first().is_some_and(|a| a == "apply") {
                    assert!(
                        args.iter().any(|a| a == "--expect-digest"),
                        "{name}: apply without --expect-digest: {args:?}"
                    );
                }
                wrong.extend(problems(&args).into_iter().map(|p| format!("{name}: {p}")));
            }
        }
    }
    assert_eq!(wrong, Vec::<String>::new());
    for command in ["plan", "show", "apply", "drift"] {
        assert!(seen.contains(command), "no workflow runs `matih {command}` (found: {seen:?})");
    }
}

/// What the plan-and-apply workflow promises: one comment found again by its marker, the plan file
/// uploaded under the head commit's name, and the merge applying that file by its digest.
#[test]
fn the_pull_request_workflow_updates_one_comment_and_applies_the_reviewed_file() {
    let text = std::fs::read_to_string(root().join("examples/github-actions/plan-apply.yml")).unwrap();
    let doc = &YamlLoader::load_from_str(&text).unwrap()[0];
    let on = &doc["on"];
    assert!(!on["pull_request"].is_badvalue() && !on["push"].is_badvalue(), "runs on pull requests and pushes");
    let plan = &doc["jobs"]["plan"];
    let apply = &doc["jobs"]["apply"];
    assert_eq!(plan["permissions"]["pull-requests"].as_str(), Some("write"));
    assert_eq!(apply["concurrency"]["cancel-in-progress"].as_bool(), Some(false), "an apply is never cancelled");
    assert!(apply["concurrency"]["group"].as_str().is_some_and(|g| !g.contains("${{")), "one apply at a time");
    // Every string of the first step of `job` that uses `uses`, one a line.
    let script = |job: &Yaml, uses: &str| -> String {
        let steps = job["steps"].as_vec().unwrap();
        let step = steps.iter().find(|s| s["uses"].as_str().is_some_and(|u| u.starts_with(uses)));
        let mut text = String::new();
        strings(step.unwrap_or_else(|| panic!("no {uses} step")), &mut text);
        text
    };
    let comment = script(plan, "actions/github-script");
    for needle in ["<!-- matih-plan -->", "updateComment", "createComment", "listComments"] {
        assert!(comment.contains(needle), "the plan comment step lacks {needle}");
    }
    assert!(script(plan, "actions/upload-artifact").contains("matih-plan-${{ github.event.pull_request.head.sha }}"));
    assert!(script(apply, "actions/download-artifact").contains("run-id"));
}

/// Every string (and number and boolean) in `y`, one a line.
fn strings(y: &Yaml, out: &mut String) {
    match y {
        Yaml::Hash(h) => h.iter().for_each(|(k, v)| {
            strings(k, out);
            strings(v, out);
        }),
        Yaml::Array(items) => items.iter().for_each(|v| strings(v, out)),
        Yaml::String(s) | Yaml::Real(s) => out.extend([s.as_str(), "\n"]),
        Yaml::Integer(i) => out.push_str(&format!("{i}\n")),
        Yaml::Boolean(b) => out.push_str(&format!("{b}\n")),
        _ => {}
    }
}
