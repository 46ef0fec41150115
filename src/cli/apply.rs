//! `matih apply` and `matih destroy`: specs (or a saved plan) to a confirmed run over the fleet.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Result};
use clap::ValueEnum;

use matih::apply::{
    ApplyOptions, ConsoleHooks, Hooks, JsonHooks, LiveHooks, OnFailure, Operation, Providers, DEFAULT_PARALLELISM,
};
use matih::diag;
use matih::graph::ResourceGraph;
use matih::plan::{self, Action, Plan};
use matih::spec::{self, PlatformConfig, StateBackend, TenantSpec};
use matih::state::{SledStore, StateError, StateStore, DEFAULT_OPEN_WAIT};
use matih::workflow;

use super::{
    compute_plan, confirm, connect_providers, keep_shard, load_catalog, load_inputs, load_platform, open_store_at,
    parse_shard, print, print_diagnostics, render, require_providers, runtime, state_location, Format, Global,
    Reported, Shard, StoreUse,
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
    /// Go ahead even when a tenant with `protect_database = true` would lose its database or schema.
    #[arg(long)]
    pub allow_data_loss: bool,
    /// Tenants applied at once by this run. Several runners sharing a PostgreSQL state divide a
    /// fleet through the tenants' locks: each takes a tenant only when it has room for it.
    #[arg(long, default_value_t = 20, value_name = "N")]
    pub tenant_parallelism: usize,
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

/// Opens the sled store for an apply or destroy. While another matih process has it open, tries
/// again until `lock_timeout` has passed; then, if that process holds tenant locks, fails naming
/// them (the tenant lock holder), otherwise keeps waiting up to [`DEFAULT_OPEN_WAIT`] (a short
/// command such as `matih status` holds the store only briefly).
pub fn open_for_run(path: &Path, lock_timeout: Duration) -> Result<SledStore> {
    let started = std::time::Instant::now();
    loop {
        match SledStore::open_with_wait(path, Duration::from_millis(250)) {
            Ok(store) => return Ok(store),
            Err(e @ StateError::Busy { .. }) => {
                let waited = started.elapsed();
                if waited < lock_timeout {
                    continue;
                }
                let holders = SledStore::holders(path);
                if let Some(h) = holders.first() {
                    let others = if holders.len() > 1 {
                        format!(" (and {} other tenant(s))", holders.len() - 1)
                    } else {
                        String::new()
                    };
                    let how_long = if lock_timeout.is_zero() {
                        "use --lock-timeout to wait for it".to_string()
                    } else {
                        format!("still locked after waiting {}", humantime::format_duration(lock_timeout))
                    };
                    bail!(
                        "tenant {:?} is locked by {} ({} on {}, pid {}, since {}; lock id {}){others}: that run has the \
                         state store {} open; nothing was changed ({how_long})",
                        h.slug,
                        h.who,
                        h.operation,
                        h.host,
                        h.pid,
                        h.created_at,
                        h.id,
                        path.display()
                    );
                }
                if waited >= lock_timeout.max(DEFAULT_OPEN_WAIT) {
                    return Err(e.into());
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Before an apply or destroy plans on the postgres backend, waits up to `timeout` for the runs
/// holding these tenants' locks to finish, so that it plans against the state they leave, as on
/// sled (where `open_for_run` waits for the store itself). Fails naming the holder when the wait
/// runs out.
pub fn wait_for_tenant_locks(store: &dyn StateStore, slugs: &[&str], timeout: Duration) -> Result<()> {
    let started = std::time::Instant::now();
    loop {
        let Some(holder) = store.locks()?.into_iter().find(|l| slugs.contains(&l.slug.as_str())) else {
            return Ok(());
        };
        if started.elapsed() >= timeout {
            let e = StateError::Locked { slug: holder.slug.clone(), holder: Box::new(holder) };
            bail!("{e}; nothing was changed (still locked after waiting {})", humantime::format_duration(timeout));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The progress hooks the flags and the terminal ask for.
pub fn progress_hooks(progress: Progress) -> Arc<dyn Hooks> {
    match progress {
        Progress::Json => Arc::new(JsonHooks::new(Box::new(std::io::stdout()))),
        Progress::Auto if std::io::stdout().is_terminal() => Arc::new(LiveHooks::new(Box::new(std::io::stdout()))),
        Progress::Auto | Progress::Plain => Arc::new(ConsoleHooks::new(Box::new(std::io::stdout()))),
    }
}

/// How a run is carried out beyond [`ApplyOptions`].
pub struct RunSettings {
    pub progress: Progress,
    pub tenant_parallelism: usize,
    /// Plans tenants again whose state another run moved (an `--auto-approve` run over specs).
    pub replan: Option<Arc<dyn matih::apply::Replan>>,
}

/// Applies every tenant plan with changes, several tenants at once (see `apply::fleet`), and
/// prints a summary.
pub fn execute(
    plan: &Plan,
    global: &Global,
    platform: &PlatformConfig,
    providers: &Providers,
    opts: ApplyOptions,
    run: RunSettings,
    rt: &tokio::runtime::Runtime,
) -> Result<ExitCode> {
    require_providers(plan, providers, platform)?;
    let progress = run.progress;
    let loc = state_location(global)?;
    let store: Arc<dyn StateStore> = Arc::from(open_store_at(&loc, StoreUse::Run(opts.lock_timeout))?);
    // Progress goes to the terminal (or JSON) and to the change feed that `matih serve` reads (in
    // the state directory, whatever the backend); completion goes to notifications and events.
    let completion = matih::notify::Completion::new(&loc.dir, &platform.notify);
    let destroy = opts.operation == Operation::Destroy;
    let feed = Arc::new(matih::serve::FeedHooks::new(
        &loc.dir,
        store.clone(),
        progress_hooks(progress),
        &plan.tenants,
        destroy,
        completion,
    ));
    let started = std::time::Instant::now();
    let tenants: Vec<matih::plan::TenantPlan> = plan.tenants.iter().filter(|t| t.has_changes()).cloned().collect();
    let slugs: Vec<String> = tenants.iter().map(|t| t.slug.clone()).collect();
    let finished: matih::apply::TenantFinished = {
        let feed = feed.clone();
        Arc::new(move |slug: String, result| {
            let feed = feed.clone();
            Box::pin(async move { feed.tenant_finished(&slug, result).await })
        })
    };
    let fleet = matih::apply::FleetOptions {
        tenant_parallelism: run.tenant_parallelism.max(1),
        replan: run.replan,
        ..matih::apply::FleetOptions::default()
    };
    let results = rt.block_on(matih::apply::apply_fleet(
        tenants,
        store.clone(),
        providers.clone(),
        feed.clone(),
        opts.clone(),
        fleet,
        finished,
    ));
    drop(feed);
    let (mut failed, mut refused) = (0, 0);
    let (mut added, mut changed, mut destroyed, mut overtaken) = (0, 0, 0, 0);
    for (slug, r) in slugs.iter().zip(&results) {
        match r {
            Err(e) => {
                failed += 1;
                refused += usize::from(e.changed_nothing());
                eprintln!("error: {slug}: {e}");
            }
            Ok(report) => {
                overtaken += usize::from(report.overtaken());
                for (_, action) in &report.operations {
                    match action {
                        Action::Create => added += 1,
                        Action::Update => changed += 1,
                        Action::Replace => (added, destroyed) = (added + 1, destroyed + 1),
                        Action::Delete => destroyed += 1,
                        Action::NoOp => {}
                    }
                }
            }
        }
    }
    let elapsed = started.elapsed();
    if progress == Progress::Json {
        JsonHooks::new(Box::new(std::io::stdout())).event(
            "summary",
            serde_json::json!({
                "ok": failed == 0,
                "tenants": results.len(),
                "failed": failed,
                "applied_by_another_run": overtaken,
                "added": added,
                "changed": changed,
                "destroyed": destroyed,
                "elapsed_ms": elapsed.as_millis() as u64,
            }),
        );
        return Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) });
    }
    let verb = if destroy { "Destroy" } else { "Apply" };
    let others = if overtaken > 0 { format!("; {overtaken} already done by another run") } else { String::new() };
    if failed == 0 {
        println!(
            "\n{verb} complete! Resources: {added} added, {changed} changed, {destroyed} destroyed. ({} tenant(s) in {:.1}s{others})",
            results.len(),
            elapsed.as_secs_f64()
        );
        Ok(ExitCode::SUCCESS)
    } else if refused == failed {
        eprintln!(
            "\n{verb} refused for {failed} of {} tenant(s) (see above); nothing was changed for {}.",
            results.len(),
            if failed == 1 { "it" } else { "them" }
        );
        Ok(ExitCode::from(1))
    } else {
        eprintln!(
            "\n{verb} failed for {} of {} tenant(s){}; what finished is recorded in the state, and `matih apply` resumes from there.",
            failed - refused,
            results.len(),
            if refused > 0 { format!(" and was refused for {refused} (nothing changed for those)") } else { String::new() }
        );
        Ok(ExitCode::from(1))
    }
}

/// Refuses, before anything is asked or changed, a plan that would lose the data of a tenant whose
/// spec sets `protect_database = true`, pointing at that line. `protected` maps slugs to where the
/// flag is written.
pub fn check_protection(
    plan: &Plan,
    protected: &BTreeMap<String, diag::Location>,
    allow_data_loss: bool,
) -> Result<()> {
    if allow_data_loss {
        return Ok(());
    }
    let mut problems = Vec::new();
    for tp in &plan.tenants {
        let Some(at) = protected.get(&tp.slug) else { continue };
        let lost = matih::apply::data_loss(tp);
        if !lost.is_empty() {
            let what: Vec<String> = lost.iter().map(|c| format!("{} {}", c.action.name(), c.address)).collect();
            problems.push(format!(
                "{at}: tenant {:?} has protect_database = true, and this plan would {} (its data would be lost)",
                tp.slug,
                what.join(", ")
            ));
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    bail!("{}\nnothing was changed; pass --allow-data-loss if you really mean it", problems.join("\n"))
}

pub fn exec(global: &Global, args: &Args, color: bool, destroy: bool) -> Result<ExitCode> {
    let rt = runtime()?;
    let mut opts = ApplyOptions {
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
    let json = args.progress == Progress::Json;
    // A saved plan: applied exactly as reviewed, no prompt.
    if !destroy
        && args.paths.len() == 1
        && args.paths[0].is_file()
        && args.paths[0].extension().is_none_or(|e| e != "hcl")
    {
        let path = &args.paths[0];
        if args.shard.is_some() {
            bail!("--shard selects tenants from spec files; a saved plan is applied whole ({})", path.display());
        }
        let plan = plan::load_plan(path)?;
        let (platform, _, diags) = load_platform(global);
        print_diagnostics(&diags);
        if diag::has_errors(&diags) {
            return Err(Reported.into());
        }
        let catalog = load_catalog(global)?;
        // Protection comes from the spec files the plan was made from, as they are now.
        let sources: Vec<PathBuf> =
            plan.tenants.iter().filter_map(|t| t.source.clone()).filter(|p| p.is_file()).collect();
        let protected = protected_specs(&spec::load_tenants(&sources, &catalog).0);
        check_protection(&plan, &protected, args.allow_data_loss)?;
        opts.protected = protected.into_keys().collect();
        let providers = connect_providers(&platform, &catalog, &rt)?;
        require_providers(&plan, &providers, &platform)?;
        for tp in plan.tenants.iter().filter(|t| t.has_changes()) {
            let changed = rt.block_on(matih::apply::changed_since_planned(tp, &providers))?;
            if !changed.is_empty() {
                bail!(
                    "refusing to apply {}: {} changed in the real world since the plan was made ({}); run matih plan again",
                    path.display(),
                    changed.len(),
                    changed.iter().map(|a| format!("{}: {a}", tp.slug)).collect::<Vec<_>>().join(", ")
                );
            }
        }
        let run = RunSettings { progress: args.progress, tenant_parallelism: args.tenant_parallelism, replan: None };
        return execute(&plan, global, &platform, &providers, opts, run, &rt);
    }

    let mut inputs = load_inputs(global, &args.paths)?;
    keep_shard(&mut inputs, args.shard);
    let protected = protected_specs(&inputs.specs);
    opts.protected = protected.keys().cloned().collect();
    let loc = state_location(global)?;
    let store = if loc.backend == StateBackend::Sled && !SledStore::exists(&loc.dir) {
        open_store_at(&loc, StoreUse::Read)?
    } else {
        open_store_at(&loc, StoreUse::Run(args.lock_timeout))?
    };
    // A prompt, or a single tenant: the plan shown is made against the state the holders leave.
    // (An --auto-approve run over several tenants sets held ones aside and plans them again under
    // their locks instead: waiting here for every lock would stop runners from sharing a fleet.)
    let fleet_run = args.auto_approve && inputs.graphs.len() > 1;
    if loc.backend == StateBackend::Postgres && !args.lock_timeout.is_zero() && !fleet_run {
        let slugs: Vec<&str> = inputs.graphs.iter().map(|g| g.tenant.slug.as_str()).collect();
        wait_for_tenant_locks(store.as_ref(), &slugs, args.lock_timeout)?;
    }
    let providers = connect_providers(&inputs.platform, &inputs.catalog, &rt)?;
    let plan = if destroy {
        let mut tenants = Vec::new();
        for (spec, graph) in inputs.specs.iter().zip(&inputs.graphs) {
            let prior = store.get(&graph.tenant.slug)?;
            let empty = ResourceGraph::new(graph.tenant.clone());
            tenants.push(plan::diff(&empty, prior.as_ref(), Some(spec.location.file.clone())));
        }
        Plan::new(tenants)
    } else {
        compute_plan(&inputs, store.as_ref(), &providers, true, &rt)?
    };
    drop(store);
    if json {
        let s = plan.summary();
        JsonHooks::new(Box::new(std::io::stdout()))
            .event("plan", serde_json::json!({"add": s.to_add(), "change": s.change, "destroy": s.to_destroy()}));
    } else {
        print(&render(&plan, Format::Text, color))?;
    }
    if !plan.has_changes() {
        return Ok(ExitCode::SUCCESS);
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
    let replan: Option<Arc<dyn matih::apply::Replan>> = if args.auto_approve {
        Some(Arc::new(workflow::Replanner::new(std::mem::take(&mut inputs.graphs), destroy, Some(DEFAULT_PARALLELISM))))
    } else {
        None
    };
    let run = RunSettings { progress: args.progress, tenant_parallelism: args.tenant_parallelism, replan };
    execute(&plan, global, &inputs.platform, &providers, opts, run, &rt)
}

/// Slugs whose spec sets `protect_database = true`, with where it is written.
pub fn protected_specs(specs: &[TenantSpec]) -> BTreeMap<String, diag::Location> {
    specs.iter().filter_map(|s| Some((s.slug.value.clone(), s.database_protection()?.clone()))).collect()
}
