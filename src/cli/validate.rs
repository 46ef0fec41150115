//! `matih validate`: check specs and the platform file.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;

use matih::graph::ResourceGraph;

use super::{load_inputs, Global};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Tenant spec files or directories of them.
    #[arg(default_value = "tenants")]
    pub paths: Vec<PathBuf>,
}

pub fn exec(global: &Global, args: &Args) -> Result<ExitCode> {
    let inputs = load_inputs(global, &args.paths)?;
    let resources: usize = inputs.graphs.iter().map(ResourceGraph::len).sum();
    println!(
        "Success! {} tenant{} valid ({} resources).",
        inputs.specs.len(),
        if inputs.specs.len() == 1 { "" } else { "s" },
        resources
    );
    Ok(ExitCode::SUCCESS)
}
