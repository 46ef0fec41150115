//! `matih completion SHELL` and `matih man`: shell completion scripts and manual pages, generated
//! from the clap definition (clap_complete, clap_mangen), so they always match `--help`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};

#[derive(clap::Args, Debug)]
pub struct CompletionArgs {
    /// The shell to write the completion script for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(clap::Args, Debug)]
pub struct ManArgs {
    /// Write matih.1 and one page per command (matih-plan.1, …) into DIR instead of printing
    /// matih.1 on standard output.
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
}

/// Writes the completion script of `cmd` for `args.shell` to standard output.
pub fn completion(mut cmd: clap::Command, args: &CompletionArgs) -> Result<ExitCode> {
    let mut out = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "matih", &mut out);
    super::print(&String::from_utf8(out).context("the completion script is not UTF-8")?)?;
    Ok(ExitCode::SUCCESS)
}

/// Writes the manual page(s) of `cmd`.
pub fn man(cmd: clap::Command, args: &ManArgs) -> Result<ExitCode> {
    match &args.out_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
            clap_mangen::generate_to(cmd, dir)
                .with_context(|| format!("cannot write the pages into {}", dir.display()))?;
            eprintln!("Wrote the manual pages into {}", dir.display());
        }
        None => {
            let mut out = Vec::new();
            clap_mangen::Man::new(cmd).render(&mut out)?;
            super::print(&String::from_utf8_lossy(&out))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    //! The clap definition of `main.rs`, checked: help text on every argument, an example per command.

    use clap::CommandFactory;

    use crate::Cli;

    fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
        for arg in cmd.get_arguments() {
            let id = arg.get_id().as_str();
            if id != "help" && id != "version" && arg.get_help().is_none() {
                missing.push(format!("{path}: argument {id} has no help text"));
            }
        }
        if path != "matih"
            && !cmd.get_after_help().is_some_and(|h| {
                let h = h.to_string();
                h.contains("Examples:\n  ") && h.contains("matih ")
            })
        {
            missing.push(format!("{path}: no example in --help"));
        }
        for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
            walk(sub, &format!("{path} {}", sub.get_name()), missing);
        }
    }

    #[test]
    fn every_argument_has_help_and_every_command_an_example() {
        let cmd = Cli::command();
        cmd.clone().debug_assert();
        let mut missing = Vec::new();
        walk(&cmd, "matih", &mut missing);
        assert!(missing.is_empty(), "{}", missing.join("\n"));
    }
}
