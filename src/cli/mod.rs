//! The command line's parts: one module per command (its clap arguments and an `exec` that calls
//! the library), and what they share (loading the inputs, opening the state store, printing).

pub mod apply;
pub mod completion;
pub mod drift;
pub mod graph;
pub mod import;
pub mod lock;
pub mod logging;
pub mod output;
pub mod plan;
pub mod policy;
pub mod serve;
pub mod show;
pub mod spelling;
pub mod state;
pub mod status;
pub mod validate;
pub mod views;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::{Args, ValueEnum};

use matih::apply::{Providers, DEFAULT_PARALLELISM};
use matih::catalog::Catalog;
use matih::diag::{self, Diagnostic};
use matih::graph::ResourceGraph;
use matih::plan::{
    render_json_with, render_markdown_with, render_text_with, AddrPattern, Plan, Prepared, Targeting, TenantPlan,
    TextOptions,
};
use matih::spec::{self, PlatformConfig, TenantSpec};
use matih::state::StateStore;
use matih::workflow::store::{StateLocation, StoreUse};
use matih::workflow::stream::{self, Stream, Streamed};
use matih::workflow::{self, Refresh};

#[derive(Args, Debug)]
pub struct Global {
    /// Directory of the sled state store (default: `path` of the platform file's `state` block, else state).
    #[arg(long, global = true, env = "MATIH_STATE_DIR", value_name = "DIR")]
    pub state: Option<PathBuf>,
    /// Read the catalog from this directory instead of the copy of schemas/ built into matih.
    #[arg(long, global = true, env = "MATIH_SCHEMAS_DIR", value_name = "DIR")]
    pub schemas: Option<PathBuf>,
    /// The platform file (where things live). Default: ./matih.hcl when it exists.
    #[arg(long, global = true, env = "MATIH_PLATFORM_FILE", value_name = "FILE")]
    pub platform: Option<PathBuf>,
    /// Never print colours (also: the NO_COLOR environment variable).
    #[arg(long, global = true)]
    pub no_color: bool,
}

/// `--group`, `--no-group`: how a fleet's plan is shown.
#[derive(Args, Debug, Default, Clone, Copy)]
pub struct GroupArgs {
    /// Show tenants whose changes are the same apart from their own names (slug, id, what derives
    /// from them) once, with the group's size and members; tenants that differ keep sections of
    /// their own, risky ones first. The default for --format markdown; JSON gains a `groups` section.
    #[arg(long, overrides_with = "no_group")]
    pub group: bool,
    /// One section per tenant in plan order, markdown included.
    #[arg(long, overrides_with = "group")]
    pub no_group: bool,
}

impl GroupArgs {
    /// Whether `format` groups: as asked, else only markdown.
    pub fn on(&self, format: Format) -> bool {
        !self.no_group && (self.group || format == Format::Markdown)
    }
}

/// `--target`, `--exclude`, `--replace`: acting on part of the tenants (see `plan::Targeting`).
#[derive(Args, Debug, Default)]
pub struct TargetArgs {
    /// Only this resource and what it depends on (repeatable). ADDR is [TENANT/]KIND.NAME, with *
    /// and ? as wildcards: acme/kubernetes_deployment.query_engine, */postgresql_role.tenant, or
    /// kubernetes_namespace.tenant for every tenant of the run. The plan says it is partial.
    #[arg(long, value_name = "ADDR")]
    pub target: Vec<AddrPattern>,
    /// Everything but this resource and what depends on it (repeatable; same ADDR as --target).
    #[arg(long, value_name = "ADDR")]
    pub exclude: Vec<AddrPattern>,
    /// Replace this recorded resource even though nothing forces it (repeatable; same ADDR).
    #[arg(long, value_name = "ADDR")]
    pub replace: Vec<AddrPattern>,
}

impl TargetArgs {
    pub fn targeting(&self) -> Targeting {
        Targeting { target: self.target.clone(), exclude: self.exclude.clone(), replace: self.replace.clone() }
    }

    pub fn any(&self) -> bool {
        !self.target.is_empty() || !self.exclude.is_empty() || !self.replace.is_empty()
    }
}

/// Keeps only the tenants of `shard` (all of them without one), and says how many on stderr.
pub fn keep_shard(inputs: &mut Inputs, shard: Option<Shard>) {
    let Some(Shard { k, n }) = shard else { return };
    let all = inputs.specs.len();
    let keep: Vec<bool> = inputs.graphs.iter().map(|g| workflow::shard_of(&g.tenant.slug, n) == k - 1).collect();
    let mut it = keep.iter();
    inputs.specs.retain(|_| *it.next().expect("one per spec"));
    let mut it = keep.iter();
    inputs.graphs.retain(|_| *it.next().expect("one per graph"));
    eprintln!("shard {k}/{n}: {} of {all} tenant(s)", inputs.specs.len());
}

/// `--shard K/N`: K counted from 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub k: usize,
    pub n: usize,
}

pub fn parse_shard(s: &str) -> std::result::Result<Shard, String> {
    let bad = || format!("{s:?} is not a shard: expected K/N with 1 <= K <= N, e.g. 2/4");
    let (k, n) = s.split_once('/').ok_or_else(bad)?;
    let (k, n): (usize, usize) = (k.trim().parse().map_err(|_| bad())?, n.trim().parse().map_err(|_| bad())?);
    if k == 0 || n == 0 || k > n {
        return Err(bad());
    }
    Ok(Shard { k, n })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
    Markdown,
}

/// An error that has already been reported to the user (as diagnostics).
#[derive(Debug)]
pub struct Reported;

impl std::fmt::Display for Reported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("errors reported above")
    }
}

impl std::error::Error for Reported {}

/// Everything read from the user's files: catalog, platform, tenant specs and their graphs.
pub struct Inputs {
    pub specs: Vec<TenantSpec>,
    pub graphs: Vec<ResourceGraph>,
    pub catalog: Catalog,
    pub platform: PlatformConfig,
    pub platform_file: Option<PathBuf>,
}

pub fn print_diagnostics(diags: &[Diagnostic]) {
    let mut err = std::io::stderr().lock();
    for d in diags {
        let _ = writeln!(err, "{d}");
    }
}

pub fn load_catalog(global: &Global) -> Result<Catalog> {
    let loaded = match &global.schemas {
        Some(dir) => Catalog::load_dir(dir),
        None => Catalog::embedded(),
    };
    loaded.map_err(|diags| {
        print_diagnostics(&diags);
        anyhow::Error::new(Reported)
    })
}

pub fn load_platform(global: &Global) -> (PlatformConfig, Option<PathBuf>, Vec<Diagnostic>) {
    let path = match &global.platform {
        Some(p) => Some(p.clone()),
        None => Some(PathBuf::from("matih.hcl")).filter(|p| p.is_file()),
    };
    match path {
        Some(p) => {
            let (cfg, diags) = spec::load_platform(&p);
            (cfg, Some(p), diags)
        }
        None => (PlatformConfig::default(), None, Vec::new()),
    }
}

/// Reads and validates everything; reports every diagnostic; fails if any is an error.
pub fn load_inputs(global: &Global, paths: &[PathBuf]) -> Result<Inputs> {
    let catalog = load_catalog(global)?;
    let (platform, platform_file, mut diags) = load_platform(global);
    let compiled = workflow::compile_tenants(paths, &catalog, &platform);
    diags.extend(compiled.diagnostics);
    let mut unset: BTreeMap<String, (usize, String)> = BTreeMap::new();
    for (slug, var) in &compiled.unset_env {
        unset.entry(var.clone()).or_insert_with(|| (0, slug.clone())).0 += 1;
    }
    unset_env_note(&unset);
    report_diagnostics(&mut diags)?;
    let (specs, graphs) = (compiled.specs, compiled.graphs);
    Ok(Inputs { specs, graphs, catalog, platform, platform_file })
}

/// Sorts and prints every diagnostic; fails, saying how many errors there were, when one is an
/// error (nothing has been planned or changed at that point).
fn report_diagnostics(diags: &mut Vec<Diagnostic>) -> Result<()> {
    diag::sort(diags);
    print_diagnostics(diags);
    if diag::has_errors(diags) {
        let n = diags.iter().filter(|d| d.is_error()).count();
        eprintln!("{n} error{} found; nothing was planned or changed.", if n == 1 { "" } else { "s" });
        return Err(Reported.into());
    }
    Ok(())
}

/// The note about secrets whose environment variable is not set: each variable once, with the
/// tenant that needs it or how many do (`ACME_SLACK_WEBHOOK (tenant "acme")`,
/// `OPS_WEBHOOK (1000 tenants)`), so that a fleet's note stays one short line.
pub fn unset_env_note(unset: &BTreeMap<String, (usize, String)>) {
    if unset.is_empty() {
        return;
    }
    let vars: Vec<String> = unset
        .iter()
        .map(
            |(var, (n, first))| {
                if *n == 1 {
                    format!("{var} (tenant {first:?})")
                } else {
                    format!("{var} ({n} tenants)")
                }
            },
        )
        .collect();
    eprintln!(
        "Note: not set in the environment: {}. Plans keep the recorded secrets; apply needs the variables when it \
         creates or changes the resources that use them.",
        vars.join(", ")
    );
}

/// [`load_inputs`] for a fleet that is never held whole: streams the tenants of `paths` through
/// `with` (see `workflow::stream`), handing each plan to `each`, then reports as `load_inputs`
/// does (the note on unset variables, every diagnostic) and fails when one is an error.
pub fn stream_inputs(
    global: &Global,
    catalog: &Catalog,
    paths: &[PathBuf],
    with: &Stream<'_>,
    each: &mut dyn FnMut(TenantPlan, Prepared),
) -> Result<Streamed> {
    let (platform, _, mut diags) = load_platform(global);
    let mut streamed = stream::stream_tenants(paths, catalog, &platform, with, each);
    diags.append(&mut streamed.diagnostics);
    unset_env_note(&streamed.unset_env);
    report_diagnostics(&mut diags)?;
    streamed.diagnostics = diags;
    Ok(streamed)
}

/// Where the state is: the platform file's `state` block, with `--state` taking precedence.
pub fn state_location(global: &Global) -> Result<StateLocation> {
    let (platform, _, diags) = load_platform(global);
    if diag::has_errors(&diags) {
        print_diagnostics(&diags);
        return Err(Reported.into());
    }
    Ok(StateLocation::new(&platform, global.state.clone()))
}

/// Opens the state store the platform file selects.
pub fn open_store(global: &Global, usage: StoreUse) -> Result<Box<dyn StateStore>> {
    state_location(global)?.open(usage)
}

/// Opens the state store for reading. An absent store is an empty one: planning never creates files.
pub fn open_state_for_read(global: &Global) -> Result<Box<dyn StateStore>> {
    open_store(global, StoreUse::Read)
}

/// The plan of every tenant in `inputs`: recorded state, refreshed through the providers when
/// `refresh` is set, diffed with the desired graph.
pub fn compute_plan(
    inputs: &Inputs,
    store: &dyn StateStore,
    providers: &Providers,
    refresh: bool,
    targeting: &Targeting,
    rt: &tokio::runtime::Runtime,
) -> Result<Plan> {
    let r = Refresh { providers, runtime: rt, parallelism: DEFAULT_PARALLELISM };
    let refresh = if refresh { Some(&r) } else { None };
    let (plan, refresh_errors) =
        workflow::plan_tenants_targeted(&inputs.specs, &inputs.graphs, store, refresh, targeting)?;
    if !refresh_errors.is_empty() {
        for e in &refresh_errors {
            eprintln!("error: refresh: {e}");
        }
        bail!("{} resource(s) could not be read; no plan was made", refresh_errors.len());
    }
    Ok(plan)
}

/// The refresh-only plan of every tenant in `inputs` (`--refresh-only`): what changed or was
/// deleted outside matih, to record. Fails when a resource cannot be read.
pub fn compute_refresh_only(inputs: &Inputs, store: &dyn StateStore, rt: &tokio::runtime::Runtime) -> Result<Plan> {
    if inputs.platform_file.is_none() {
        bail!(
            "--refresh-only records what is live: it needs a platform file (matih.hcl) that configures the providers"
        );
    }
    let providers = matih::workflow::connect::connect(&inputs.platform, &inputs.catalog, rt)?;
    let sources: Vec<_> = inputs.specs.iter().map(|s| Some(s.location.file.clone())).collect();
    let (plan, errors) = workflow::refresh_only::plan_refresh_only(
        &inputs.graphs,
        &sources,
        store,
        &providers,
        rt,
        DEFAULT_PARALLELISM,
    )?;
    if !errors.is_empty() {
        for e in &errors {
            eprintln!("error: refresh: {e}");
        }
        bail!("{} resource(s) could not be read; no plan was made", errors.len());
    }
    Ok(plan)
}

/// Records a refresh-only plan in the state and prints what it did.
pub fn record_refresh_only(plan: &Plan, store: &dyn StateStore) -> Result<std::process::ExitCode> {
    let done = workflow::refresh_only::record_refreshed(plan, store)?;
    for (slug, recorded, forgotten) in &done {
        println!("{slug}: recorded the live values of {recorded} resource(s), forgot {forgotten}");
    }
    println!("\nRefresh complete! {} tenant(s) recorded; nothing was changed in the real world.", done.len());
    Ok(std::process::ExitCode::SUCCESS)
}

/// The plan in `format`; `digest` is the SHA-256 of the plan file it was saved to or read from.
pub fn render(plan: &Plan, format: Format, color: bool, digest: Option<&str>, group: bool) -> String {
    match format {
        Format::Text => render_text_with(plan, &TextOptions { color, digest: digest.map(str::to_string) }, group),
        Format::Json => render_json_with(plan, digest, group),
        Format::Markdown => render_markdown_with(plan, digest, group),
    }
}

pub fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
}

/// `MATIH_IN_AUTOMATION` (any non-empty value, like Terraform's `TF_IN_AUTOMATION`): matih runs in
/// CI, so the hints that suggest what to type next are left out.
pub fn in_automation() -> bool {
    std::env::var_os("MATIH_IN_AUTOMATION").is_some_and(|v| !v.is_empty())
}

/// Asks for confirmation on stdin, as Terraform does. Anything but `yes` cancels; a closed stdin
/// cancels with a message instead of hanging.
pub fn confirm(question: &str, to_stderr: bool) -> Result<bool> {
    let prompt = format!(
        "\n{question}\n  matih will perform the actions described above.\n  Only 'yes' will be accepted to approve.\n\n  Enter a value: "
    );
    if to_stderr {
        eprint!("{prompt}");
    } else {
        print(&prompt)?;
    }
    let mut answer = String::new();
    let n = std::io::stdin().read_line(&mut answer)?;
    if to_stderr {
        eprintln!();
    } else {
        println!();
    }
    if n == 0 {
        bail!(
            "no answer: standard input is closed (use --auto-approve to apply without a prompt); nothing was changed"
        );
    }
    Ok(answer.trim() == "yes")
}

/// Writes to stdout; a closed pipe (`matih plan | head`) is not an error.
pub fn print(s: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(s.as_bytes()).and_then(|_| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

/// Prints `value` as pretty JSON and a newline.
pub fn print_json<T: serde::Serialize>(value: &T) -> Result<()> {
    print(&format!("{}\n", serde_json::to_string_pretty(value)?))
}
