//! `matih show FILE`: render a saved plan.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;

use matih::plan;

use super::{print, render, Format};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The plan file written by `matih plan -out FILE`.
    pub planfile: PathBuf,
    /// Print the plan as JSON (same as --format json).
    #[arg(long)]
    pub json: bool,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

pub fn exec(args: &Args, color: bool) -> Result<ExitCode> {
    let format = if args.json { Format::Json } else { args.format };
    let plan = plan::load_plan(&args.planfile)?;
    print(&render(&plan, format, color))?;
    Ok(ExitCode::SUCCESS)
}
