//! `matih show FILE`: render a saved plan.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;

use matih::plan;

use super::{print, render, Format, GroupArgs};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The plan file written by `matih plan -out FILE`.
    pub planfile: PathBuf,
    /// Print the plan as JSON (same as --format json).
    #[arg(long)]
    pub json: bool,
    /// How to print the plan: text, json or markdown (each names the file's SHA-256 digest).
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    #[command(flatten)]
    pub group: GroupArgs,
}

pub fn exec(args: &Args, color: bool) -> Result<ExitCode> {
    let format = if args.json { Format::Json } else { args.format };
    let (plan, digest) = plan::load_plan_digest(&args.planfile)?;
    print(&render(&plan, format, color, Some(&digest), args.group.on(format)))?;
    Ok(ExitCode::SUCCESS)
}
