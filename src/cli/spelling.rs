//! Terraform's spellings of options, accepted beside the GNU ones: `-auto-approve`,
//! `-detailed-exitcode`, `-refresh=false`, `-lock-timeout=10s`, `-out=FILE`, … become their
//! `--` forms before clap sees them, and `--refresh false` becomes `--refresh=false`.
//!
//! The long names come from the clap definition itself, so every option of every command has
//! its single-dash spelling without a list to keep in step.

use std::collections::BTreeSet;
use std::ffi::OsString;

/// Every long option name (and alias) of `cmd` and its subcommands, and every short one.
fn names(cmd: &clap::Command, longs: &mut BTreeSet<String>, shorts: &mut BTreeSet<char>, bools: &mut BTreeSet<String>) {
    for arg in cmd.get_arguments() {
        if let Some(l) = arg.get_long() {
            longs.insert(l.to_string());
            // `--refresh false`: a flag that takes its value only after `=` (so that a path after
            // it is not read as its value) also takes `true`/`false` as the next word.
            if arg.is_require_equals_set() {
                bools.insert(l.to_string());
            }
        }
        longs.extend(arg.get_all_aliases().unwrap_or_default().into_iter().map(str::to_string));
        shorts.extend(arg.get_short());
    }
    for sub in cmd.get_subcommands() {
        names(sub, longs, shorts, bools);
    }
}

/// `args` (the program name first) with Terraform's single-dash long options spelled with two
/// dashes. A single-dash word is rewritten when its name (before any `=`) is a long option of
/// matih, or cannot be a cluster of short options (so that `-var-file` is reported as the unknown
/// option `--var-file`, not as `-v`). Nothing after `--` is touched.
pub fn terraform_spellings(args: impl IntoIterator<Item = OsString>, cmd: &clap::Command) -> Vec<OsString> {
    let (mut longs, mut shorts, mut bools) = (BTreeSet::new(), BTreeSet::new(), BTreeSet::new());
    names(cmd, &mut longs, &mut shorts, &mut bools);
    longs.extend(["help".to_string(), "version".to_string()]);
    shorts.extend(['h', 'V']);

    let mut out: Vec<OsString> = Vec::new();
    let mut args = args.into_iter().peekable();
    out.extend(args.next());
    while let Some(arg) = args.next() {
        let Some(s) = arg.to_str() else {
            out.push(arg);
            continue;
        };
        if s == "--" {
            out.push(arg);
            out.extend(args);
            break;
        }
        let word = match s.strip_prefix('-').filter(|rest| !rest.starts_with('-')) {
            Some(rest) => {
                let name = rest.split_once('=').map_or(rest, |(n, _)| n);
                let first = name.chars().next();
                let long_like = name.len() >= 2
                    && first.is_some_and(|c| c.is_ascii_alphabetic())
                    && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
                if long_like && (longs.contains(name) || first.is_some_and(|c| !shorts.contains(&c))) {
                    format!("-{s}")
                } else {
                    s.to_string()
                }
            }
            None => s.to_string(),
        };
        if let Some(name) = word.strip_prefix("--").filter(|n| bools.contains(*n)) {
            if let Some(v) = args.peek().and_then(|v| v.to_str()).filter(|v| matches!(*v, "true" | "false")) {
                out.push(format!("--{name}={v}").into());
                args.next();
                continue;
            }
        }
        out.push(word.into());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Arg, ArgAction, Command};

    fn cmd() -> Command {
        Command::new("matih").subcommand(
            Command::new("plan")
                .arg(Arg::new("out").long("out").short('o'))
                .arg(Arg::new("detailed-exitcode").long("detailed-exitcode").action(ArgAction::SetTrue))
                .arg(Arg::new("refresh").long("refresh").num_args(0..=1).require_equals(true))
                .arg(Arg::new("paths").num_args(0..)),
        )
    }

    fn spell(args: &[&str]) -> Vec<String> {
        let args = args.iter().map(OsString::from);
        terraform_spellings(args, &cmd()).into_iter().map(|a| a.into_string().unwrap()).collect()
    }

    #[test]
    fn single_dash_long_options_get_two_dashes() {
        assert_eq!(
            spell(&["matih", "plan", "-out=p.tfplan", "-detailed-exitcode", "-refresh=false", "tenants"]),
            ["matih", "plan", "--out=p.tfplan", "--detailed-exitcode", "--refresh=false", "tenants"]
        );
        assert_eq!(spell(&["matih", "plan", "-out", "p"]), ["matih", "plan", "--out", "p"]);
        // Short options and their clusters are left alone.
        assert_eq!(spell(&["matih", "plan", "-o", "p", "-ofile", "-h"]), ["matih", "plan", "-o", "p", "-ofile", "-h"]);
        // An unknown Terraform option is reported under its long name.
        assert_eq!(spell(&["matih", "plan", "-var-file=x"]), ["matih", "plan", "--var-file=x"]);
        // Nothing after `--`, and no negative numbers or paths.
        assert_eq!(spell(&["matih", "plan", "--", "-out"]), ["matih", "plan", "--", "-out"]);
        assert_eq!(spell(&["matih", "plan", "-1", "-"]), ["matih", "plan", "-1", "-"]);
    }

    #[test]
    fn refresh_takes_true_or_false_as_the_next_word() {
        assert_eq!(spell(&["matih", "plan", "--refresh", "false", "t"]), ["matih", "plan", "--refresh=false", "t"]);
        assert_eq!(spell(&["matih", "plan", "-refresh", "true"]), ["matih", "plan", "--refresh=true"]);
        // Anything else after it is not its value.
        assert_eq!(spell(&["matih", "plan", "--refresh", "tenants"]), ["matih", "plan", "--refresh", "tenants"]);
    }
}
