//! `matih graph`: the resource graph as DOT.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::ValueEnum;

use matih::graph;

use super::{load_inputs, print, Global};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Tenant spec files or directories of them.
    #[arg(default_value = "tenants")]
    pub paths: Vec<PathBuf>,
    /// The output format (Graphviz DOT).
    #[arg(long, value_enum, default_value_t = GraphFormat::Dot)]
    pub format: GraphFormat,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum GraphFormat {
    Dot,
}

pub fn exec(global: &Global, args: &Args) -> Result<ExitCode> {
    let GraphFormat::Dot = args.format;
    let inputs = load_inputs(global, &args.paths)?;
    print(&graph::to_dot(&inputs.graphs))?;
    Ok(ExitCode::SUCCESS)
}
