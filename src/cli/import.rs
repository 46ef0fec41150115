//! `matih import ADDR...`: record existing objects as tenants' resources, after reading them.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;

use matih::plan::AddrPattern;
use matih::workflow::connect::connect;
use matih::workflow::import::import_resources;
use matih::workflow::store::StoreUse;

use super::{load_inputs, open_store, runtime, Global};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The resources to import, [TENANT/]KIND.NAME with * and ? as wildcards (as for --target):
    /// each must be in its tenant's spec, not recorded yet, and exist.
    #[arg(required = true, value_name = "ADDR")]
    pub addresses: Vec<AddrPattern>,
    /// Tenant spec files or directories of them (repeatable; default tenants).
    #[arg(long = "path", value_name = "PATH", default_value = "tenants")]
    pub paths: Vec<PathBuf>,
}

pub fn exec(global: &Global, args: &Args) -> Result<ExitCode> {
    let inputs = load_inputs(global, &args.paths)?;
    let rt = runtime()?;
    let providers = connect(&inputs.platform, &inputs.catalog, &rt)?;
    let store = open_store(global, StoreUse::Write)?;
    let imported = import_resources(&inputs.graphs, &args.addresses, store.as_ref(), &providers, &rt)?;
    for (slug, addr) in &imported {
        println!("{slug}/{addr}: Import complete");
    }
    println!(
        "Imported {} resource(s). Run matih plan to see how they differ from the specs; apply makes them match.",
        imported.len()
    );
    Ok(ExitCode::SUCCESS)
}
