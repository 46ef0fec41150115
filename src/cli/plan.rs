//! `matih plan`: what would change, rendered; optionally saved as a sealed plan file.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Result};

use matih::apply::Providers;
use matih::plan;

use matih::workflow::connect::connect;
use matih::workflow::{self, run};

use super::{
    compute_plan, in_automation, keep_shard, load_inputs, open_state_for_read, parse_shard, print, render, runtime,
    Format, Global, Shard, TargetArgs,
};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Tenant spec files or directories of them.
    #[arg(default_value = "tenants")]
    pub paths: Vec<PathBuf>,
    /// Save the plan to FILE (sealed, bound to the state it was made from) for `matih apply FILE`.
    #[arg(long = "out", short = 'o', value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// How to print the plan: text (like Terraform's), json (the machine interface), markdown (a
    /// pull-request comment).
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Same as --format json (Terraform's -json).
    #[arg(long)]
    pub json: bool,
    /// Exit 0 when nothing changes, 2 when something does, 1 on error.
    #[arg(long)]
    pub detailed_exitcode: bool,
    /// Read live objects through the providers before planning (needs a platform file); also reads
    /// each planned create, so an existing object matih has no record of is adopted (`<=`), not created.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub refresh: bool,
    /// Accepted for Terraform's -input=false; plan never asks anything.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub input: bool,
    /// Plan the destruction of every recorded resource of the tenants (as `matih destroy` would),
    /// to review and save it (`-out FILE`) like any plan; `matih apply FILE` performs it.
    #[arg(long)]
    pub destroy: bool,
    /// Plan only to record what is live (Terraform's -refresh-only): objects changed or deleted
    /// outside matih, to accept as they are; `matih apply FILE` writes them to the state and changes
    /// nothing in the real world.
    #[arg(long, conflicts_with = "destroy")]
    pub refresh_only: bool,
    #[command(flatten)]
    pub targets: TargetArgs,
    /// Only the tenants of shard K of N (1 ≤ K ≤ N), chosen by a hash of their slug (as for apply).
    #[arg(long, value_parser = parse_shard, value_name = "K/N")]
    pub shard: Option<Shard>,
}

pub fn exec(global: &Global, args: &Args, color: bool) -> Result<ExitCode> {
    let format = if args.json { Format::Json } else { args.format };
    let mut inputs = load_inputs(global, &args.paths)?;
    keep_shard(&mut inputs, args.shard);
    let store = open_state_for_read(global)?;
    let rt = runtime()?;
    let targeting = args.targets.targeting();
    if args.refresh_only && (!args.refresh || targeting.is_partial() || !targeting.replace.is_empty()) {
        bail!("--refresh-only reads every recorded resource: it takes no --refresh=false, --target, --exclude or --replace");
    }
    let plan = if args.refresh_only {
        super::compute_refresh_only(&inputs, store.as_ref(), &rt)?
    } else if args.destroy {
        if !targeting.replace.is_empty() {
            bail!("--replace has no meaning with --destroy, which deletes everything it selects");
        }
        let whole = run::destroy_plan(&inputs.specs, &inputs.graphs, store.as_ref())?;
        workflow::select(whole, &targeting)?
    } else {
        let providers = if args.refresh { connect(&inputs.platform, &inputs.catalog, &rt)? } else { Providers::new() };
        compute_plan(&inputs, store.as_ref(), &providers, args.refresh, &targeting, &rt)?
    };
    let hints = !in_automation();
    if hints
        && !args.destroy
        && !args.refresh_only
        && inputs.platform_file.is_none()
        && args.refresh
        && format == Format::Text
    {
        eprintln!(
            "Note: no platform file (matih.hcl), so live objects were not read: this plan compares the specs \
             with the recorded state alone."
        );
    }
    // Saved first, so that what is printed names the digest of the file as written.
    let digest = match &args.out {
        Some(out) => Some(plan::save_plan(&plan, out)?),
        None => None,
    };
    print(&render(&plan, format, color, digest.as_deref()))?;
    if let (Some(out), Some(digest)) = (&args.out, &digest) {
        if format == Format::Text {
            println!("\nSaved the plan to: {}", out.display());
            if hints {
                println!(
                    "To perform exactly these actions, run: matih apply {} --expect-digest {digest}",
                    out.display()
                );
            }
        }
    }
    Ok(if args.detailed_exitcode && plan.has_changes() { ExitCode::from(2) } else { ExitCode::SUCCESS })
}
