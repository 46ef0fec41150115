//! `matih apply` and `matih destroy`: specs (or a saved plan) to a confirmed run over the fleet.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Result};
use clap::ValueEnum;

use matih::apply::{
    ApplyOptions, ConsoleHooks, FleetOptions, Hooks, LiveHooks, NoHooks, OnFailure, Operation, Providers, Replan,
    DEFAULT_PARALLELISM,
};
use matih::diag;
use matih::plan::{self, Plan};
use matih::spec::{PlatformConfig, StateBackend};
use matih::state::SledStore;
use matih::workflow::connect::{connect, require_providers};
use matih::workflow::run::{self, check_protection, protected_specs, FleetRun, SavedPlan};
use matih::workflow::store::{wait_for_tenant_locks, StoreUse};
use matih::workflow::Replanner;

use super::views::run as view;
use super::{
    compute_plan, confirm, keep_shard, load_catalog, load_inputs, load_platform, parse_shard, print, print_diagnostics,
    render, runtime, state_location, Format, Global, Reported, Shard, TargetArgs,
};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Tenant spec files or directories of them, or one plan file saved by `matih plan -out FILE`.
    #[arg(default_value = "tenants")]
    pub paths: Vec<PathBuf>,
    /// Do not ask for confirmation.
    #[arg(long)]
    pub auto_approve: bool,
    /// Operations running at once inside one tenant's phase.
    #[arg(long, default_value_t = DEFAULT_PARALLELISM)]
    pub parallelism: usize,
    /// How long to wait for a tenant locked by another run (e.g. 30s, 2m). With 0, a run over one
    /// tenant, or one with a prompt, fails at once naming the holder; an --auto-approve run over
    /// several sets a held tenant aside and comes back to it for as long as its holder lives.
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub lock_timeout: Duration,
    /// What to do with a phase that failed: roll back what this run created in it, or halt and
    /// leave it as it is (for debugging).
    #[arg(long, value_enum, default_value_t = OnFailureArg::Rollback)]
    pub on_failure: OnFailureArg,
    /// Progress display: auto (live on a terminal, plain lines otherwise), plain, or json (one
    /// JSON object per event on stdout; see `src/apply/progress.rs`).
    #[arg(long, value_enum, default_value_t = Progress::Auto)]
    pub progress: Progress,
    /// Same as --progress json (Terraform's -json).
    #[arg(long)]
    pub json: bool,
    /// Read live objects through the providers before planning (--refresh=false: plan from the
    /// recorded state alone, as Terraform's -refresh=false).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub refresh: bool,
    /// Record what is live instead of changing it (Terraform's -refresh-only): objects changed or
    /// deleted outside matih are written to the state as they are; nothing in the real world changes.
    #[arg(long)]
    pub refresh_only: bool,
    /// With --input=false (Terraform's -input=false) matih never asks: a run that would need
    /// the confirmation prompt fails instead (use --auto-approve or a saved plan).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub input: bool,
    /// Apply the plan file only if its SHA-256 digest (as `matih plan -out FILE` and `matih show FILE`
    /// print it) is this one: the file applied on merge is the file a reviewer approved.
    #[arg(long, value_parser = plan::parse_digest, value_name = "sha256:HEX")]
    pub expect_digest: Option<String>,
    /// Go ahead even when a tenant with `protect_database = true` would lose its database or schema.
    #[arg(long)]
    pub allow_data_loss: bool,
    /// Tenants applied at once by this run. Several runners sharing a PostgreSQL state divide a
    /// fleet through the tenants' locks: each takes a tenant only when it has room for it.
    #[arg(long, default_value_t = 20, value_name = "N")]
    pub tenant_parallelism: usize,
    #[command(flatten)]
    pub targets: TargetArgs,
    /// Only the tenants of shard K of N (1 ≤ K ≤ N), chosen by a hash of their slug: an explicit
    /// way to divide a fleet between N runners.
    #[arg(long, value_parser = parse_shard, value_name = "K/N")]
    pub shard: Option<Shard>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OnFailureArg {
    Rollback,
    Halt,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Progress {
    Auto,
    Plain,
    Json,
}

/// The progress display asked for (`--json` is `--progress json`).
fn progress(args: &Args) -> Progress {
    if args.json {
        Progress::Json
    } else {
        args.progress
    }
}

impl Args {
    fn progress_json(&self) -> bool {
        progress(self) == Progress::Json
    }
}

/// The progress display the flags and the terminal ask for (none for the event stream).
fn progress_hooks(progress: Progress) -> Arc<dyn Hooks> {
    match progress {
        Progress::Json => Arc::new(NoHooks),
        Progress::Auto if std::io::stdout().is_terminal() => Arc::new(LiveHooks::new(Box::new(std::io::stdout()))),
        Progress::Auto | Progress::Plain => Arc::new(ConsoleHooks::new(Box::new(std::io::stdout()))),
    }
}

/// What a run over the fleet is asked to do, from the flags.
fn fleet_run<'a>(
    plan: &'a Plan,
    providers: &'a Providers,
    opts: ApplyOptions,
    args: &Args,
    replan: Option<Arc<dyn Replan>>,
) -> FleetRun<'a> {
    let fleet = FleetOptions { tenant_parallelism: args.tenant_parallelism.max(1), replan, ..FleetOptions::default() };
    let warn = Arc::new(|w: &str| eprintln!("warning: {w}"));
    let events = args.progress_json().then(|| Box::new(std::io::stdout()) as Box<dyn std::io::Write + Send>);
    FleetRun { plan, providers, opts, fleet, progress: progress_hooks(progress(args)), events, warn }
}

/// Runs a confirmed plan over the fleet and prints the summary.
fn execute(
    global: &Global,
    platform: &PlatformConfig,
    run: FleetRun<'_>,
    args: &Args,
    rt: &tokio::runtime::Runtime,
) -> Result<ExitCode> {
    let destroy = run.opts.operation == Operation::Destroy;
    let outcome = run::run_fleet(run, &state_location(global)?, platform, rt)?;
    Ok(view::summary(&outcome, progress(args) == Progress::Json, destroy))
}

/// `matih apply PLANFILE`: a saved plan, applied exactly as reviewed, without a prompt.
fn apply_saved(global: &Global, path: &Path, args: &Args, mut opts: ApplyOptions) -> Result<ExitCode> {
    let rt = runtime()?;
    if args.shard.is_some() {
        bail!("--shard selects tenants from spec files; a saved plan is applied whole ({})", path.display());
    }
    if args.targets.any() {
        bail!(
            "--target, --exclude and --replace select from spec files; a saved plan is applied exactly as saved \
             (give them to `matih plan -out FILE`) ({})",
            path.display()
        );
    }
    let (plan, digest) = plan::load_plan_digest(path)?;
    if let Some(expected) = &args.expect_digest {
        if *expected != digest {
            bail!(
                "plan file {} has digest {digest}, not the expected {expected}: it is not the plan that was reviewed; \
                 nothing was changed",
                path.display()
            );
        }
    }
    if args.progress_json() {
        eprintln!("Applying the plan saved in {} ({digest})", path.display());
    } else {
        println!("Applying the plan saved in {} ({digest})", path.display());
    }
    if plan.refresh_only {
        let store = state_location(global)?.open(StoreUse::Run(args.lock_timeout))?;
        return super::record_refresh_only(&plan, store.as_ref());
    }
    if args.refresh_only {
        bail!("{} is not a refresh-only plan (make one with `matih plan --refresh-only -out FILE`)", path.display());
    }
    let (platform, _, diags) = load_platform(global);
    print_diagnostics(&diags);
    if diag::has_errors(&diags) {
        return Err(Reported.into());
    }
    let catalog = load_catalog(global)?;
    let saved = SavedPlan::new(plan, &catalog, &platform, args.allow_data_loss)?;
    opts.protected = saved.protected.clone();
    let providers = connect(&platform, &catalog, &rt)?;
    run::check_saved_plan_current(&saved, path, &providers, &platform, &rt)?;
    execute(global, &platform, fleet_run(&saved.plan, &providers, opts, args, None), args, &rt)
}

/// One file that is not a spec: a saved plan.
fn is_plan_file(paths: &[PathBuf]) -> bool {
    paths.len() == 1 && paths[0].is_file() && paths[0].extension().is_none_or(|e| e != "hcl")
}

pub fn exec(global: &Global, args: &Args, color: bool, destroy: bool) -> Result<ExitCode> {
    let opts = ApplyOptions {
        parallelism: args.parallelism.max(1),
        operation: if destroy { Operation::Destroy } else { Operation::Apply },
        lock_timeout: args.lock_timeout,
        on_failure: match args.on_failure {
            OnFailureArg::Rollback => OnFailure::Rollback,
            OnFailureArg::Halt => OnFailure::Halt,
        },
        allow_data_loss: args.allow_data_loss,
        ..ApplyOptions::default()
    };
    let json = args.progress_json();
    if args.expect_digest.is_some() && (destroy || !is_plan_file(&args.paths)) {
        bail!(
            "--expect-digest checks a saved plan file: give one plan file (matih apply FILE --expect-digest sha256:…)"
        );
    }
    if !destroy && is_plan_file(&args.paths) {
        return apply_saved(global, &args.paths[0], args, opts);
    }
    let rt = runtime()?;
    let mut opts = opts;
    let mut inputs = load_inputs(global, &args.paths)?;
    keep_shard(&mut inputs, args.shard);
    let protected = protected_specs(&inputs.specs);
    opts.protected = protected.keys().cloned().collect();
    let loc = state_location(global)?;
    let store = if loc.backend == StateBackend::Sled && !SledStore::exists(&loc.dir) {
        loc.open(StoreUse::Read)?
    } else {
        loc.open(StoreUse::Run(args.lock_timeout))?
    };
    // A prompt, or a single tenant: the plan shown is made against the state the holders leave.
    // (An --auto-approve run over several tenants sets held ones aside and plans them again under
    // their locks instead: waiting here for every lock would stop runners from sharing a fleet.)
    let shared_fleet = args.auto_approve && inputs.graphs.len() > 1;
    if loc.backend == StateBackend::Postgres && !args.lock_timeout.is_zero() && !shared_fleet {
        let slugs: Vec<&str> = inputs.graphs.iter().map(|g| g.tenant.slug.as_str()).collect();
        wait_for_tenant_locks(store.as_ref(), &slugs, args.lock_timeout)?;
    }
    let targeting = args.targets.targeting();
    if args.refresh_only {
        if destroy || !args.refresh || targeting.is_partial() || !targeting.replace.is_empty() {
            bail!(
                "--refresh-only records every recorded resource as it is live: it takes no --refresh=false, --target, \
                 --exclude or --replace, and destroy has no refresh-only form"
            );
        }
        let plan = super::compute_refresh_only(&inputs, store.as_ref(), &rt)?;
        print(&render(&plan, Format::Text, color, None, false))?;
        if !plan.has_changes() {
            return Ok(ExitCode::SUCCESS);
        }
        if !args.auto_approve && !args.input {
            bail!("--input=false: this run would need the confirmation prompt; nothing was recorded");
        }
        if !args.auto_approve && !confirm("Do you want to record these values in the state?", json)? {
            eprintln!("Refresh cancelled; nothing was recorded.");
            return Ok(ExitCode::from(1));
        }
        return super::record_refresh_only(&plan, store.as_ref());
    }
    let providers = connect(&inputs.platform, &inputs.catalog, &rt)?;
    let plan = if destroy {
        if !targeting.replace.is_empty() {
            bail!("--replace has no meaning for destroy, which deletes everything it selects");
        }
        let whole = run::destroy_plan(&inputs.specs, &inputs.graphs, store.as_ref())?;
        matih::workflow::select(whole, &targeting)?
    } else {
        compute_plan(&inputs, store.as_ref(), &providers, args.refresh, &targeting, &rt)?
    };
    drop(store);
    if json {
        view::plan_event(&plan);
    } else {
        print(&render(&plan, Format::Text, color, None, false))?;
    }
    if !plan.has_changes() {
        return Ok(ExitCode::SUCCESS);
    }
    if !args.auto_approve && !args.input {
        bail!(
            "--input=false: this run would need the confirmation prompt; nothing was changed (pass --auto-approve, \
             or apply a plan saved with `matih plan -out FILE`)"
        );
    }
    check_protection(&plan, &protected, args.allow_data_loss)?;
    require_providers(&plan, &providers, &inputs.platform)?;
    if !args.auto_approve {
        let q = if destroy {
            "Do you really want to destroy these tenants?"
        } else {
            "Do you want to perform these actions?"
        };
        if !confirm(q, json)? {
            eprintln!("{} cancelled; nothing was changed.", if destroy { "Destroy" } else { "Apply" });
            return Ok(ExitCode::from(1));
        }
    }
    // Without a prompt, a tenant another run applied meanwhile is planned again under its lock
    // (several runners on one fleet); a plan someone approved is never changed behind their back.
    let replan: Option<Arc<dyn Replan>> = if args.auto_approve {
        let replanner = Replanner::new(std::mem::take(&mut inputs.graphs), destroy, Some(DEFAULT_PARALLELISM));
        Some(Arc::new(replanner.with_targeting(targeting)))
    } else {
        None
    };
    execute(global, &inputs.platform, fleet_run(&plan, &providers, opts, args, replan), args, &rt)
}
