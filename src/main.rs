//! The `matih` command line: argument definitions and glue. The work happens in the library.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};

use matih::apply::{ApplyOptions, ConsoleHooks, Hooks, JsonHooks, LiveHooks, OnFailure, Providers};
use matih::catalog::Catalog;
use matih::diag::{self, Diagnostic};
use matih::graph::{self, ResourceGraph};
use matih::plan::{self, Action, Plan, TextOptions};
use matih::provider::dns::DnsProvider;
use matih::provider::kubernetes::{KubeSettings, KubeTarget, KubernetesProvider};
use matih::provider::postgres::{PostgresProvider, PostgresSettings};
use matih::spec::StateBackend;
use matih::spec::{self, PlatformConfig, TenantSpec};
use matih::state::{MemoryStore, PostgresStore, SledStore, StateError, StateStore, TenantStatus, DEFAULT_OPEN_WAIT};
use matih::workflow::{self, Refresh};

/// Plans of many tenants build and drop millions of small attribute values; mimalloc does that with
/// about 40% less CPU time than the system allocator in `benches/plan.rs` (1,000 tenants).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Declarative plan-and-apply for the per-tenant data plane of the MATIH platform.
#[derive(Parser, Debug)]
#[command(name = "matih", version, about, long_about = None, propagate_version = true)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Debug)]
struct Global {
    /// Directory of the sled state store (default: `path` of the platform file's `state` block, else state).
    #[arg(long, global = true, env = "MATIH_STATE_DIR", value_name = "DIR")]
    state: Option<PathBuf>,
    /// Read the catalog from this directory instead of the copy of schemas/ built into matih.
    #[arg(long, global = true, env = "MATIH_SCHEMAS_DIR", value_name = "DIR")]
    schemas: Option<PathBuf>,
    /// The platform file (where things live). Default: ./matih.hcl when it exists.
    #[arg(long, global = true, env = "MATIH_PLATFORM_FILE", value_name = "FILE")]
    platform: Option<PathBuf>,
    /// Never print colours (also: the NO_COLOR environment variable).
    #[arg(long, global = true)]
    no_color: bool,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Check tenant specs (and the platform file) without touching state; exit 1 on any error.
    Validate {
        /// Tenant spec files or directories of them.
        #[arg(default_value = "tenants")]
        paths: Vec<PathBuf>,
    },
    /// Show what would change to make the recorded state match the tenant specs.
    Plan(PlanArgs),
    /// Make the real world match the tenant specs (or a saved plan), phase by phase.
    Apply(ApplyArgs),
    /// Delete every resource of the tenants, in reverse phase order.
    Destroy(ApplyArgs),
    /// Render a saved plan file.
    Show {
        /// The plan file written by `matih plan -out FILE`.
        planfile: PathBuf,
        /// Print the plan as JSON (same as --format json).
        #[arg(long)]
        json: bool,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Print the resource graph of tenants as DOT, one cluster per phase.
    Graph {
        #[arg(default_value = "tenants")]
        paths: Vec<PathBuf>,
        #[arg(long, value_enum, default_value_t = GraphFormat::Dot)]
        format: GraphFormat,
    },
    /// Where provisioning of a tenant stands, from the state store.
    Status {
        slug: String,
        #[arg(long)]
        json: bool,
        /// Print the tenant's audit log (every run, phase and resource operation) instead.
        #[arg(long)]
        history: bool,
    },
    /// Inspect and edit recorded state.
    #[command(subcommand)]
    State(StateCommand),
    /// Inspect and release tenant locks.
    #[command(subcommand)]
    Lock(LockCommand),
    /// Read every recorded resource back and report what changed outside matih (read-only).
    Drift(DriftArgs),
    /// Serve provisioning status, a live WebSocket stream and a status page over HTTP.
    Serve(ServeArgs),
}

#[derive(Args, Debug)]
struct ServeArgs {
    /// Address to listen on. Anything but loopback needs MATIH_SERVE_TOKEN.
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR")]
    listen: std::net::SocketAddr,
}

#[derive(Args, Debug)]
struct PlanArgs {
    /// Tenant spec files or directories of them.
    #[arg(default_value = "tenants")]
    paths: Vec<PathBuf>,
    /// Save the plan to FILE (sealed, bound to the state it was made from) for `matih apply FILE`.
    #[arg(long = "out", short = 'o', value_name = "FILE")]
    out: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Exit 0 when nothing changes, 2 when something does, 1 on error.
    #[arg(long)]
    detailed_exitcode: bool,
    /// Read live objects through the providers before planning (needs a platform file).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    refresh: bool,
    /// Only the tenants of shard K of N (1 ≤ K ≤ N), chosen by a hash of their slug (as for apply).
    #[arg(long, value_parser = parse_shard, value_name = "K/N")]
    shard: Option<Shard>,
}

#[derive(Args, Debug)]
struct ApplyArgs {
    /// Tenant spec files or directories of them, or one plan file saved by `matih plan -out FILE`.
    #[arg(default_value = "tenants")]
    paths: Vec<PathBuf>,
    /// Do not ask for confirmation.
    #[arg(long)]
    auto_approve: bool,
    /// Operations running at once inside one tenant's phase.
    #[arg(long, default_value_t = 10)]
    parallelism: usize,
    /// How long to wait for a tenant locked by another run (e.g. 30s, 2m). With 0, a run over one
    /// tenant, or one with a prompt, fails at once naming the holder; an --auto-approve run over
    /// several sets a held tenant aside and comes back to it for as long as its holder lives.
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    lock_timeout: Duration,
    /// What to do with a phase that failed: roll back what this run created in it, or halt and
    /// leave it as it is (for debugging).
    #[arg(long, value_enum, default_value_t = OnFailureArg::Rollback)]
    on_failure: OnFailureArg,
    /// Progress display: auto (live on a terminal, plain lines otherwise), plain, or json (one
    /// JSON object per event on stdout; see `src/apply/progress.rs`).
    #[arg(long, value_enum, default_value_t = Progress::Auto)]
    progress: Progress,
    /// Go ahead even when a tenant with `protect_database = true` would lose its database or schema.
    #[arg(long)]
    allow_data_loss: bool,
    /// Tenants applied at once by this run. Several runners sharing a PostgreSQL state divide a
    /// fleet through the tenants' locks: each takes a tenant only when it has room for it.
    #[arg(long, default_value_t = 20, value_name = "N")]
    tenant_parallelism: usize,
    /// Only the tenants of shard K of N (1 ≤ K ≤ N), chosen by a hash of their slug: an explicit
    /// way to divide a fleet between N runners.
    #[arg(long, value_parser = parse_shard, value_name = "K/N")]
    shard: Option<Shard>,
}

/// Keeps only the tenants of `shard` (all of them without one), and says how many on stderr.
fn keep_shard(inputs: &mut Inputs, shard: Option<Shard>) {
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
struct Shard {
    k: usize,
    n: usize,
}

fn parse_shard(s: &str) -> std::result::Result<Shard, String> {
    let bad = || format!("{s:?} is not a shard: expected K/N with 1 <= K <= N, e.g. 2/4");
    let (k, n) = s.split_once('/').ok_or_else(bad)?;
    let (k, n): (usize, usize) = (k.trim().parse().map_err(|_| bad())?, n.trim().parse().map_err(|_| bad())?);
    if k == 0 || n == 0 || k > n {
        return Err(bad());
    }
    Ok(Shard { k, n })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum OnFailureArg {
    Rollback,
    Halt,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Progress {
    Auto,
    Plain,
    Json,
}

#[derive(Subcommand, Debug)]
enum StateCommand {
    /// Every tenant in the state store, with status, serial and resource count.
    List,
    /// The recorded state of a tenant (or of one resource of it), as JSON.
    Show { slug: String, address: Option<String> },
    /// Earlier serials of a tenant's state.
    History { slug: String },
    /// Copy every tenant (state, history, audit log) from one backend to the other, empty one, and
    /// compare SHA-256 digests. The sled directory is --state (or the `state` block's path), the
    /// PostgreSQL URL is in the variable the `state` block's url_env names (MATIH_STATE_URL).
    Migrate {
        #[arg(long, value_enum)]
        from: BackendArg,
        #[arg(long, value_enum)]
        to: BackendArg,
    },
    /// Forget resources (matih will no longer manage them; nothing is deleted in the real world).
    Rm {
        slug: String,
        #[arg(required = true)]
        addresses: Vec<String>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum BackendArg {
    Sled,
    Postgres,
}

#[derive(Subcommand, Debug)]
enum LockCommand {
    /// Every lock held, with holder, host, pid, operation and time.
    List,
    /// Release a tenant's lock held by someone else (a crashed run on another machine).
    ForceUnlock { slug: String, id: String },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Format {
    Text,
    Json,
    Markdown,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum GraphFormat {
    Dot,
}

/// Terraform spells the plan-file flag `-out FILE` / `-out=FILE`; accept that spelling too.
fn terraform_spellings(args: impl Iterator<Item = std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    args.map(|a| match a.to_str() {
        Some("-out") => "--out".into(),
        Some(s) if s.starts_with("-out=") => format!("-{s}").into(),
        _ => a,
    })
    .collect()
}

fn main() -> ExitCode {
    let cli = Cli::parse_from(terraform_spellings(std::env::args_os()));
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("MATIH_LOG"))
        .with_writer(std::io::stderr)
        .init();
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(1)
        }
    }
}

/// An error that has already been reported to the user (as diagnostics).
#[derive(Debug)]
struct Reported;

impl std::fmt::Display for Reported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("errors reported above")
    }
}

impl std::error::Error for Reported {}

fn run(cli: Cli) -> Result<ExitCode> {
    let color = !cli.global.no_color && std::env::var_os("NO_COLOR").is_none() && std::io::stdout().is_terminal();
    let result = match cli.command {
        Command::Validate { paths } => validate(&cli.global, &paths),
        Command::Plan(args) => plan_cmd(&cli.global, &args, color),
        Command::Apply(args) => apply_cmd(&cli.global, &args, color, false),
        Command::Destroy(args) => apply_cmd(&cli.global, &args, color, true),
        Command::Show { planfile, json, format } => show(&planfile, if json { Format::Json } else { format }, color),
        Command::Graph { paths, format: GraphFormat::Dot } => {
            let inputs = load_inputs(&cli.global, &paths)?;
            print(&graph::to_dot(&inputs.graphs))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Status { slug, json, history } => status(&cli.global, &slug, json, history),
        Command::State(cmd) => state_cmd(&cli.global, cmd),
        Command::Lock(cmd) => lock_cmd(&cli.global, cmd),
        Command::Drift(args) => drift_cmd(&cli.global, &args, color),
        Command::Serve(args) => serve_cmd(&cli.global, &args),
    };
    match result {
        Err(e) if e.is::<Reported>() => Ok(ExitCode::from(1)),
        other => other,
    }
}

/// Everything read from the user's files: catalog, platform, tenant specs and their graphs.
struct Inputs {
    specs: Vec<TenantSpec>,
    graphs: Vec<ResourceGraph>,
    catalog: Catalog,
    platform: PlatformConfig,
    platform_file: Option<PathBuf>,
}

fn print_diagnostics(diags: &[Diagnostic]) {
    let mut err = std::io::stderr().lock();
    for d in diags {
        let _ = writeln!(err, "{d}");
    }
}

fn load_catalog(global: &Global) -> Result<Catalog> {
    let loaded = match &global.schemas {
        Some(dir) => Catalog::load_dir(dir),
        None => Catalog::embedded(),
    };
    loaded.map_err(|diags| {
        print_diagnostics(&diags);
        anyhow::Error::new(Reported)
    })
}

fn load_platform(global: &Global) -> (PlatformConfig, Option<PathBuf>, Vec<Diagnostic>) {
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
fn load_inputs(global: &Global, paths: &[PathBuf]) -> Result<Inputs> {
    let catalog = load_catalog(global)?;
    let (platform, platform_file, mut diags) = load_platform(global);
    let compiled = workflow::compile_tenants(paths, &catalog, &platform);
    diags.extend(compiled.diagnostics);
    if !compiled.unset_env.is_empty() {
        let vars: Vec<String> =
            compiled.unset_env.iter().map(|(slug, var)| format!("{var} (tenant {slug:?})")).collect();
        eprintln!(
            "Note: not set in the environment: {}. Plans keep the recorded secrets; apply needs the variables \
             when it creates or changes the resources that use them.",
            vars.join(", ")
        );
    }
    diag::sort(&mut diags);
    print_diagnostics(&diags);
    if diag::has_errors(&diags) {
        let n = diags.iter().filter(|d| d.is_error()).count();
        eprintln!("{n} error{} found; nothing was planned or changed.", if n == 1 { "" } else { "s" });
        return Err(Reported.into());
    }
    let (specs, graphs) = (compiled.specs, compiled.graphs);
    Ok(Inputs { specs, graphs, catalog, platform, platform_file })
}

fn validate(global: &Global, paths: &[PathBuf]) -> Result<ExitCode> {
    let inputs = load_inputs(global, paths)?;
    let resources: usize = inputs.graphs.iter().map(ResourceGraph::len).sum();
    println!(
        "Success! {} tenant{} valid ({} resources).",
        inputs.specs.len(),
        if inputs.specs.len() == 1 { "" } else { "s" },
        resources
    );
    Ok(ExitCode::SUCCESS)
}

/// What a command does with the state store it opens.
#[derive(Clone, Copy, Debug)]
enum StoreUse {
    /// Reads only: an absent sled store is an empty one (planning never creates files).
    Read,
    /// Writes (state rm, force-unlock): the sled store is created if absent.
    Write,
    /// Applies or destroys: waits up to the lock timeout for another process holding a sled store.
    Run(Duration),
}

/// Where the state is: the platform file's `state` block (`backend`, `path`, `url_env`), with
/// `--state`/`MATIH_STATE_DIR` taking precedence for the sled directory.
struct StateLocation {
    backend: StateBackend,
    dir: PathBuf,
    url_env: String,
}

fn state_location(global: &Global) -> Result<StateLocation> {
    let (platform, _, diags) = load_platform(global);
    if diag::has_errors(&diags) {
        print_diagnostics(&diags);
        return Err(Reported.into());
    }
    let dir = global.state.clone().or_else(|| platform.state.path.map(PathBuf::from)).unwrap_or_else(|| "state".into());
    Ok(StateLocation { backend: platform.state.backend, dir, url_env: platform.state.url_env })
}

impl StateLocation {
    /// How messages name the store.
    fn describe(&self) -> String {
        match self.backend {
            StateBackend::Sled => self.dir.display().to_string(),
            StateBackend::Postgres => format!("PostgreSQL (${})", self.url_env),
        }
    }
}

/// Opens the state store the platform file selects: the one way every command opens it.
fn open_store(global: &Global, usage: StoreUse) -> Result<Box<dyn StateStore>> {
    open_store_at(&state_location(global)?, usage)
}

fn open_store_at(loc: &StateLocation, usage: StoreUse) -> Result<Box<dyn StateStore>> {
    match loc.backend {
        StateBackend::Postgres => Ok(Box::new(connect_postgres_state(&loc.url_env)?)),
        StateBackend::Sled => match usage {
            StoreUse::Read if !SledStore::exists(&loc.dir) => Ok(Box::new(MemoryStore::default())),
            StoreUse::Read | StoreUse::Write => Ok(Box::new(SledStore::open(&loc.dir)?)),
            StoreUse::Run(lock_timeout) => Ok(Box::new(open_for_run(&loc.dir, lock_timeout)?)),
        },
    }
}

/// The PostgreSQL state store whose URL is in the variable `url_env` (never in a file).
fn connect_postgres_state(url_env: &str) -> Result<PostgresStore> {
    let url = std::env::var(url_env).ok().filter(|u| !u.is_empty()).with_context(|| {
        format!(
            "the platform file selects the postgres state backend, but {url_env} is not set: set it to the \
             connection URL postgresql://USER:PASSWORD@HOST:PORT/DATABASE"
        )
    })?;
    Ok(PostgresStore::connect(&url)?)
}

/// Opens the state store for reading. An absent store is an empty one: planning never creates files.
fn open_state_for_read(global: &Global) -> Result<Box<dyn StateStore>> {
    open_store(global, StoreUse::Read)
}

/// Connects the providers the platform file configures: Kubernetes (`kubernetes` block), DNS
/// (`dns` block with a `provider`), PostgreSQL (when the admin URL variable is set). Returns them
/// with, per resource-kind prefix (`kubernetes_`), why that family could not be connected.
fn try_connect_providers(
    platform: &PlatformConfig,
    catalog: &Catalog,
    rt: &tokio::runtime::Runtime,
) -> (Providers, std::collections::BTreeMap<String, String>) {
    let mut providers = Providers::new();
    let mut unavailable = std::collections::BTreeMap::new();
    if let Some(k) = &platform.kubernetes {
        let target = match &k.api_url {
            Some(url) => KubeTarget::Url(url.clone()),
            None => KubeTarget::Kubeconfig { context: k.context.clone() },
        };
        let settings = KubeSettings {
            lb_ip_attempts: k.load_balancer_ip_attempts,
            lb_ip_interval: Duration::from_millis(k.load_balancer_ip_interval_ms),
            deployment_timeout: Duration::from_millis(k.deployment_timeout_ms),
            certificate_timeout: Duration::from_millis(k.certificate_timeout_ms),
            delete_timeout: Duration::from_millis(k.deployment_timeout_ms),
            poll_interval: Duration::from_millis(k.poll_interval_ms),
        };
        match rt.block_on(KubernetesProvider::connect(&target, settings)) {
            Ok(p) => providers = providers.with(Arc::new(p)),
            Err(e) => {
                unavailable.insert("kubernetes_".to_string(), e);
            }
        }
    }
    if let Some(dns) = &platform.dns {
        match DnsProvider::from_platform(dns) {
            Ok(p) => providers = providers.with(Arc::new(p)),
            Err(e) => {
                unavailable.insert("dns_".to_string(), e.to_string());
            }
        }
    }
    if std::env::var_os(&platform.postgres_admin_url_env).is_some() {
        let connected = PostgresSettings::from_platform(platform, catalog)
            .and_then(|settings| rt.block_on(PostgresProvider::connect(&settings)));
        match connected {
            Ok(p) => providers = providers.with(Arc::new(p)),
            Err(e) => {
                unavailable.insert("postgresql_".to_string(), e);
            }
        }
    }
    (providers, unavailable)
}

/// [`try_connect_providers`], failing on the first family that could not be connected: plan and
/// apply need every configured provider.
fn connect_providers(platform: &PlatformConfig, catalog: &Catalog, rt: &tokio::runtime::Runtime) -> Result<Providers> {
    let (providers, unavailable) = try_connect_providers(platform, catalog, rt);
    match unavailable.into_values().next() {
        Some(e) => bail!(e),
        None => Ok(providers),
    }
}

/// Fails, before anything is changed, when a plan needs resource kinds no provider handles.
fn require_providers(plan: &Plan, providers: &Providers, platform: &PlatformConfig) -> Result<()> {
    let mut missing = std::collections::BTreeSet::new();
    for t in &plan.tenants {
        missing.extend(providers.missing(t));
    }
    if missing.is_empty() {
        return Ok(());
    }
    let families: std::collections::BTreeSet<&str> =
        missing.iter().map(|k| k.split('_').next().unwrap_or(k.as_str())).collect();
    let mut hints = Vec::new();
    for f in families {
        hints.push(match f {
            "kubernetes" => "kubernetes_*: add a `kubernetes` block to the platform file (matih.hcl)".to_string(),
            "postgresql" => format!(
                "postgresql_*: set the environment variable {} to matih's PostgreSQL admin URL \
                 (postgres.admin_url_env in matih.hcl names another variable)",
                platform.postgres_admin_url_env
            ),
            "dns" => {
                "dns_*: set `provider` (\"powerdns\" or \"azure\") in the `dns` block of the platform file".to_string()
            }
            other => format!("{other}_*: no {other} provider is configured in the platform file"),
        });
    }
    bail!(
        "the plan changes resources that no provider can reach, so nothing was changed:\n  {}\n(kinds: {})",
        hints.join("\n  "),
        missing.into_iter().collect::<Vec<_>>().join(", ")
    )
}

/// The plan of every tenant in `inputs`: recorded state, refreshed through the providers when
/// `refresh` is set, diffed with the desired graph.
fn compute_plan(
    inputs: &Inputs,
    store: &dyn StateStore,
    providers: &Providers,
    refresh: bool,
    rt: &tokio::runtime::Runtime,
) -> Result<Plan> {
    let r = Refresh { providers, runtime: rt, parallelism: 10 };
    let (plan, refresh_errors) =
        workflow::plan_tenants(&inputs.specs, &inputs.graphs, store, if refresh { Some(&r) } else { None })?;
    if !refresh_errors.is_empty() {
        for e in &refresh_errors {
            eprintln!("error: refresh: {e}");
        }
        bail!("{} resource(s) could not be read; no plan was made", refresh_errors.len());
    }
    Ok(plan)
}

fn render(plan: &Plan, format: Format, color: bool) -> String {
    match format {
        Format::Text => plan::render_text(plan, &TextOptions { color }),
        Format::Json => plan::render_json(plan),
        Format::Markdown => plan::render_markdown(plan),
    }
}

fn plan_cmd(global: &Global, args: &PlanArgs, color: bool) -> Result<ExitCode> {
    let mut inputs = load_inputs(global, &args.paths)?;
    keep_shard(&mut inputs, args.shard);
    let store = open_state_for_read(global)?;
    let rt = runtime()?;
    let providers =
        if args.refresh { connect_providers(&inputs.platform, &inputs.catalog, &rt)? } else { Providers::new() };
    let plan = compute_plan(&inputs, store.as_ref(), &providers, args.refresh, &rt)?;
    if inputs.platform_file.is_none() && args.refresh && args.format == Format::Text {
        eprintln!(
            "Note: no platform file (matih.hcl), so live objects were not read: this plan compares the specs \
             with the recorded state alone."
        );
    }
    print(&render(&plan, args.format, color))?;
    if let Some(out) = &args.out {
        plan::save_plan(&plan, out)?;
        if args.format == Format::Text {
            println!(
                "\nSaved the plan to: {}\nTo perform exactly these actions, run: matih apply {}",
                out.display(),
                out.display()
            );
        }
    }
    Ok(if args.detailed_exitcode && plan.has_changes() { ExitCode::from(2) } else { ExitCode::SUCCESS })
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
}

/// Asks for confirmation on stdin, as Terraform does. Anything but `yes` cancels; a closed stdin
/// cancels with a message instead of hanging.
fn confirm(question: &str, to_stderr: bool) -> Result<bool> {
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

/// Opens the sled store for an apply or destroy. While another matih process has it open, tries
/// again until `lock_timeout` has passed; then, if that process holds tenant locks, fails naming
/// them (the tenant lock holder), otherwise keeps waiting up to [`DEFAULT_OPEN_WAIT`] (a short
/// command such as `matih status` holds the store only briefly).
fn open_for_run(path: &Path, lock_timeout: Duration) -> Result<SledStore> {
    let started = std::time::Instant::now();
    loop {
        match SledStore::open_with_wait(path, Duration::from_millis(250)) {
            Ok(store) => return Ok(store),
            Err(e @ StateError::Io { .. }) if e.to_string().contains("in use by another matih process") => {
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
fn wait_for_tenant_locks(store: &dyn StateStore, slugs: &[&str], timeout: Duration) -> Result<()> {
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
fn progress_hooks(progress: Progress) -> Arc<dyn Hooks> {
    match progress {
        Progress::Json => Arc::new(JsonHooks::new(Box::new(std::io::stdout()))),
        Progress::Auto if std::io::stdout().is_terminal() => Arc::new(LiveHooks::new(Box::new(std::io::stdout()))),
        Progress::Auto | Progress::Plain => Arc::new(ConsoleHooks::new(Box::new(std::io::stdout()))),
    }
}

/// How a run is carried out beyond [`ApplyOptions`].
struct RunSettings {
    progress: Progress,
    tenant_parallelism: usize,
    /// Plans tenants again whose state another run moved (an `--auto-approve` run over specs).
    replan: Option<Arc<dyn matih::apply::Replan>>,
}

/// Applies every tenant plan with changes, several tenants at once (see `apply::fleet`), and
/// prints a summary.
fn execute(
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
    let destroy = opts.operation == "destroy";
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
fn check_protection(
    plan: &Plan,
    protected: &std::collections::BTreeMap<String, diag::Location>,
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

fn apply_cmd(global: &Global, args: &ApplyArgs, color: bool, destroy: bool) -> Result<ExitCode> {
    let rt = runtime()?;
    let mut opts = ApplyOptions {
        parallelism: args.parallelism.max(1),
        operation: if destroy { "destroy".into() } else { "apply".into() },
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
        Some(Arc::new(workflow::Replanner::new(std::mem::take(&mut inputs.graphs), destroy, Some(10))))
    } else {
        None
    };
    let run = RunSettings { progress: args.progress, tenant_parallelism: args.tenant_parallelism, replan };
    execute(&plan, global, &inputs.platform, &providers, opts, run, &rt)
}

/// Slugs whose spec sets `protect_database = true`, with where it is written.
fn protected_specs(specs: &[TenantSpec]) -> std::collections::BTreeMap<String, diag::Location> {
    specs.iter().filter_map(|s| Some((s.slug.value.clone(), s.database_protection()?.clone()))).collect()
}

fn show(path: &Path, format: Format, color: bool) -> Result<ExitCode> {
    let plan = plan::load_plan(path)?;
    print(&render(&plan, format, color))?;
    Ok(ExitCode::SUCCESS)
}

fn status(global: &Global, slug: &str, json: bool, history: bool) -> Result<ExitCode> {
    let store = open_state_for_read(global)?;
    if history {
        return audit_log(global, store.as_ref(), slug, json);
    }
    let Some(st) = store.get(slug)? else {
        // A destroyed tenant: its state is gone, its history and audit log are not.
        let last = store.history(slug)?.pop();
        let Some(last) = last.filter(|h| h.state.status == TenantStatus::Destroyed) else {
            bail!("no tenant {slug:?} in the state store at {}", state_location(global)?.describe());
        };
        if json {
            let v = serde_json::json!({
                "slug": slug,
                "tenant_id": last.state.tenant_id,
                "status": TenantStatus::Destroyed,
                "destroyed_at": last.at,
                "lineage": last.state.lineage,
                "last_serial": last.serial,
                "duration_ms": last.state.provisioning_duration_ms,
            });
            print(&format!("{}\n", serde_json::to_string_pretty(&v)?))?;
        } else {
            print(&format!(
                "Tenant:     {slug} ({})\nStatus:     DESTROYED at {} (its state was removed; `matih status {slug} \
                 --history` shows its audit log, `matih state history {slug}` its earlier states)\n",
                last.state.tenant_id, last.at
            ))?;
        }
        return Ok(ExitCode::SUCCESS);
    };
    if json {
        let v = serde_json::json!({
            "slug": st.slug,
            "tenant_id": st.tenant_id,
            "status": st.status,
            "current_phase": st.current_phase.map(|p| p.name()),
            "current_phase_number": st.current_phase.map(|p| p.number()),
            "provisioning_error": st.provisioning_error,
            "provisioning_completed_at": st.provisioning_completed_at,
            "serial": st.serial,
            "lineage": st.lineage,
            "updated_at": st.updated_at,
            "resources": st.resources.len(),
            "duration_ms": st.provisioning_duration_ms,
            "in_flight": st.in_flight.iter().map(|(a, r)| serde_json::json!({
                "resource": a.to_string(),
                "action": r.action,
                "phase": r.phase.number(),
                "started_at": r.started_at,
            })).collect::<Vec<_>>(),
            "phases": st.phases.iter().map(|(p, r)| serde_json::json!({
                "number": p.number(),
                "name": p.name(),
                "state": r.state,
                "started_at": r.started_at,
                "finished_at": r.finished_at,
                "duration_ms": r.duration_ms,
                "operations": r.operations,
            })).collect::<Vec<_>>(),
        });
        print(&format!("{}\n", serde_json::to_string_pretty(&v)?))?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = String::new();
    out.push_str(&format!("Tenant:     {} ({})\n", st.slug, st.tenant_id));
    out.push_str(&format!("Status:     {}\n", status_name(st.status)));
    if let Some(p) = st.current_phase {
        out.push_str(&format!("Phase:      {}/10 {}\n", p.number(), p.name()));
    }
    if let Some(e) = &st.provisioning_error {
        out.push_str(&format!("Error:      {e}\n"));
    }
    if let Some(t) = &st.provisioning_completed_at {
        out.push_str(&format!("Completed:  {t}\n"));
    }
    if let Some(ms) = st.provisioning_duration_ms {
        out.push_str(&format!("Took:       {:.1}s (last complete run)\n", ms as f64 / 1000.0));
    }
    out.push_str(&format!("Resources:  {}\n", st.resources.len()));
    if !st.in_flight.is_empty() {
        out.push_str(&format!(
            "In flight:  {} operation(s) of an interrupted run; the next plan or apply reads and adopts them\n",
            st.in_flight.len()
        ));
        for (addr, r) in &st.in_flight {
            out.push_str(&format!("  {:<8} {addr} (phase {}, started {})\n", r.action, r.phase.number(), r.started_at));
        }
    }
    if !st.phases.is_empty() {
        out.push_str("Phases (last run):\n");
        for (phase, run) in &st.phases {
            let took = run.duration_ms.map(|ms| format!("{:.1}s", ms as f64 / 1000.0)).unwrap_or_else(|| "-".into());
            out.push_str(&format!(
                "  {:>2} {:<26} {:<12} started {}  took {:>7}  {} operation(s)\n",
                phase.number(),
                phase.name(),
                run.state,
                run.started_at,
                took,
                run.operations
            ));
        }
    }
    out.push_str(&format!("Serial:     {} (lineage {})\n", st.serial, st.lineage));
    out.push_str(&format!("Updated:    {}\n", st.updated_at));
    print(&out)?;
    Ok(ExitCode::SUCCESS)
}

/// `matih status SLUG --history`: the tenant's audit log, oldest first.
fn audit_log(global: &Global, store: &dyn StateStore, slug: &str, json: bool) -> Result<ExitCode> {
    let log = store.audit(slug)?;
    if log.is_empty() && store.get(slug)?.is_none() && store.history(slug)?.is_empty() {
        bail!("no tenant {slug:?} in the state store at {}", state_location(global)?.describe());
    }
    if json {
        print(&format!("{}\n", serde_json::to_string_pretty(&log)?))?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = format!(
        "{:<20}  {:<8} {:<29} {:<44} {:<9} {:<11} {:>8}\n",
        "TIME", "RUN", "PHASE", "RESOURCE", "ACTION", "OUTCOME", "TOOK"
    );
    for e in &log {
        let phase = e.phase.map(|p| format!("{:>2}/10 {}", p.number(), p.name())).unwrap_or_default();
        let took = e.duration_ms.map(|ms| format!("{:.1}s", ms as f64 / 1000.0)).unwrap_or_default();
        let resource = e.resource.as_ref().map(ToString::to_string).unwrap_or_default();
        out.push_str(&format!(
            "{:<20}  {:<8} {:<29} {:<44} {:<9} {:<11} {:>8}{}\n",
            e.at,
            e.operation,
            phase,
            resource,
            e.action,
            e.outcome,
            took,
            e.message.as_ref().map(|m| format!("  {m}")).unwrap_or_default()
        ));
    }
    print(&out)?;
    Ok(ExitCode::SUCCESS)
}

fn state_cmd(global: &Global, cmd: StateCommand) -> Result<ExitCode> {
    match cmd {
        StateCommand::List => {
            let store = open_state_for_read(global)?;
            let mut out = String::new();
            for slug in store.tenants()? {
                if let Some(st) = store.get(&slug)? {
                    out.push_str(&format!(
                        "{:<24} {:<13} serial {:<5} {} resources\n",
                        st.slug,
                        status_name(st.status),
                        st.serial,
                        st.resources.len()
                    ));
                }
            }
            print(&out)?;
        }
        StateCommand::Show { slug, address } => {
            let store = open_state_for_read(global)?;
            let st = store.get(&slug)?.with_context(|| format!("no tenant {slug:?} in the state store"))?;
            let json = match address {
                None => serde_json::to_string_pretty(&st)?,
                Some(a) => {
                    let addr: matih::addr::ResourceAddr = a.parse().map_err(anyhow::Error::msg)?;
                    let r =
                        st.resources.get(&addr).with_context(|| format!("tenant {slug:?} has no resource {addr}"))?;
                    serde_json::to_string_pretty(r)?
                }
            };
            print(&format!("{json}\n"))?;
        }
        StateCommand::History { slug } => {
            let store = open_state_for_read(global)?;
            let mut out = String::new();
            for h in store.history(&slug)? {
                out.push_str(&format!(
                    "serial {:<5} {:<4} resources, status {:<12} replaced at {} by {}\n",
                    h.serial,
                    h.state.resources.len(),
                    status_name(h.state.status),
                    h.at,
                    h.operation
                ));
            }
            if let Some(st) = store.get(&slug)? {
                out.push_str(&format!(
                    "serial {:<5} {:<4} resources, status {:<12} current (written at {})\n",
                    st.serial,
                    st.resources.len(),
                    status_name(st.status),
                    st.updated_at
                ));
            }
            print(&out)?;
        }
        StateCommand::Migrate { from, to } => {
            if from == to {
                bail!("--from and --to name the same backend; nothing to migrate");
            }
            let loc = state_location(global)?;
            let open = |b: BackendArg, usage: StoreUse| {
                let backend = match b {
                    BackendArg::Sled => StateBackend::Sled,
                    BackendArg::Postgres => StateBackend::Postgres,
                };
                open_store_at(&StateLocation { backend, dir: loc.dir.clone(), url_env: loc.url_env.clone() }, usage)
            };
            let source = open(from, StoreUse::Read)?;
            let target = open(to, StoreUse::Write)?;
            let report = matih::state::migrate(source.as_ref(), target.as_ref())?;
            let mut out = String::new();
            for (slug, digest) in &report.digests {
                out.push_str(&format!("{slug:<24} sha256 {digest}\n"));
            }
            out.push_str(&format!(
                "Migrated {} tenant(s) ({} with current state, {} history entries, {} audit entries) from {} to {}; \
                 every digest matches.\n",
                report.digests.len(),
                report.tenants,
                report.history_entries,
                report.audit_entries,
                if from == BackendArg::Sled {
                    loc.dir.display().to_string()
                } else {
                    format!("PostgreSQL (${})", loc.url_env)
                },
                if to == BackendArg::Sled {
                    loc.dir.display().to_string()
                } else {
                    format!("PostgreSQL (${})", loc.url_env)
                },
            ));
            print(&out)?;
        }
        StateCommand::Rm { slug, addresses } => {
            let store = open_store(global, StoreUse::Write)?;
            let lock = matih::state::LockInfo::new(&slug, "state rm");
            store.lock(&lock)?;
            let result = (|| -> Result<()> {
                let mut st = store.get(&slug)?.with_context(|| format!("no tenant {slug:?} in the state store"))?;
                let expected = st.serial;
                for a in &addresses {
                    let addr: matih::addr::ResourceAddr = a.parse().map_err(anyhow::Error::msg)?;
                    if st.resources.remove(&addr).is_none() {
                        bail!("tenant {slug:?} has no resource {addr}; nothing was removed");
                    }
                }
                st.serial = expected + 1;
                st.updated_at = matih::state::now_rfc3339();
                // Not part of any run: the state it replaces goes to history.
                st.run_id = None;
                store.put(&st, Some(expected), "state rm")?;
                println!("Removed {} resource(s) from the state of {slug:?} (serial {}).", addresses.len(), st.serial);
                Ok(())
            })();
            store.unlock(&slug, &lock.id)?;
            result?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn lock_cmd(global: &Global, cmd: LockCommand) -> Result<ExitCode> {
    match cmd {
        LockCommand::List => {
            let store = open_state_for_read(global)?;
            let mut out = String::new();
            for l in store.locks()? {
                out.push_str(&format!(
                    "{:<24} {:<10} by {} on {} (pid {}) since {}  id {}\n",
                    l.slug, l.operation, l.who, l.host, l.pid, l.created_at, l.id
                ));
            }
            print(&out)?;
        }
        LockCommand::ForceUnlock { slug, id } => {
            let store = open_store(global, StoreUse::Write)?;
            store.unlock(&slug, &id)?;
            println!("Released the lock {id} of tenant {slug:?}.");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The status as the state store and the API spell it (`ACTIVE`).
fn status_name(s: TenantStatus) -> String {
    serde_json::to_value(s).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
}

/// Writes to stdout; a closed pipe (`matih plan | head`) is not an error.
fn print(s: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(s.as_bytes()).and_then(|_| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

#[derive(Args, Debug)]
struct DriftArgs {
    /// Tenant spec files or directories of them.
    #[arg(default_value = "tenants")]
    paths: Vec<PathBuf>,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Exit 0 when nothing drifted, 2 when something did, 1 on error.
    #[arg(long)]
    detailed_exitcode: bool,
    /// Tenants checked at once.
    #[arg(long, default_value_t = 4)]
    parallelism: usize,
    /// Only the tenants of shard K of N (1 ≤ K ≤ N), chosen by a hash of their slug (as for apply).
    #[arg(long, value_parser = parse_shard, value_name = "K/N")]
    shard: Option<Shard>,
}

/// What `drift::read_recorded` reads from a sled store, read from the PostgreSQL one (which
/// needs no copy: reads change nothing there): a locked tenant is busy.
fn read_recorded_postgres(loc: &StateLocation, slugs: &[&str]) -> Result<Vec<matih::drift::Recorded>> {
    use matih::drift::Recorded;
    let store = open_store_at(loc, StoreUse::Read)?;
    let locks = store.locks()?;
    let mut out = Vec::with_capacity(slugs.len());
    for slug in slugs {
        match locks.iter().find(|l| l.slug == *slug) {
            Some(l) => out.push(Recorded::Busy(format!(
                "locked by {} ({} on {}, pid {}, since {}); if that run is gone, release the lock with \
                 `matih lock force-unlock {slug} {}`",
                l.who, l.operation, l.host, l.pid, l.created_at, l.id
            ))),
            None => out.push(Recorded::State(store.get(slug)?)),
        }
    }
    Ok(out)
}

/// How long `matih drift` waits for the state store, which a running apply holds, before it
/// reports every tenant as busy.
const DRIFT_STORE_WAIT: Duration = Duration::from_secs(2);

/// `matih drift`: strictly read-only. Reads the recorded states from a copy of the store (an apply
/// is kept waiting for the copy only), then reads every recorded resource back through the
/// providers and compares it with the state, and the specs with the state.
fn drift_cmd(global: &Global, args: &DriftArgs, _color: bool) -> Result<ExitCode> {
    use matih::drift::{self, DriftOptions, Recorded, TenantInput};

    let mut inputs = load_inputs(global, &args.paths)?;
    keep_shard(&mut inputs, args.shard);
    let slugs: Vec<&str> = inputs.graphs.iter().map(|g| g.tenant.slug.as_str()).collect();
    let loc = state_location(global)?;
    let recorded = match loc.backend {
        StateBackend::Sled => drift::read_recorded(&loc.dir, &slugs, DRIFT_STORE_WAIT)?,
        StateBackend::Postgres => read_recorded_postgres(&loc, &slugs)?,
    };
    for ((spec, graph), r) in inputs.specs.iter().zip(&inputs.graphs).zip(&recorded) {
        match r {
            Recorded::State(Some(st)) if st.tenant_id != graph.tenant.id => bail!(
                "{}: tenant {:?} is recorded with id {} but the spec says {}; a tenant's id cannot change",
                spec.id.location,
                graph.tenant.slug,
                st.tenant_id,
                graph.tenant.id
            ),
            Recorded::Busy(reason) if args.format == Format::Text => {
                eprintln!("Note: tenant {:?} is busy and is not checked: {reason}.", graph.tenant.slug)
            }
            _ => {}
        }
    }

    let rt = runtime()?;
    let (providers, mut unavailable) = try_connect_providers(&inputs.platform, &inputs.catalog, &rt);
    if std::env::var_os(&inputs.platform.postgres_admin_url_env).is_none() {
        unavailable.insert(
            "postgresql_".to_string(),
            format!(
                "not read: the environment variable {} (matih's PostgreSQL admin URL) is not set",
                inputs.platform.postgres_admin_url_env
            ),
        );
    }
    if inputs.platform_file.is_none() && args.format == Format::Text {
        eprintln!(
            "Note: no platform file (matih.hcl), so no live object can be read: every recorded resource is \
             reported as unreadable."
        );
    }
    let tenants: Vec<TenantInput> = inputs
        .specs
        .iter()
        .zip(inputs.graphs)
        .zip(recorded)
        .map(|((spec, graph), recorded)| TenantInput { graph, source: Some(spec.location.file.clone()), recorded })
        .collect();
    let opts = DriftOptions { tenant_concurrency: args.parallelism.max(1), unavailable, ..DriftOptions::default() };
    let report = rt.block_on(drift::check(tenants, &providers, &opts));
    print(&match args.format {
        Format::Text => drift::render_text(&report),
        Format::Json => drift::render_json(&report),
        Format::Markdown => drift::render_markdown(&report),
    })?;
    Ok(if args.detailed_exitcode && report.has_drift() { ExitCode::from(2) } else { ExitCode::SUCCESS })
}

/// `matih serve`: status API, WebSocket stream and status page; also retries queued notifications.
fn serve_cmd(global: &Global, args: &ServeArgs) -> Result<ExitCode> {
    let (platform, _, diags) = load_platform(global);
    print_diagnostics(&diags);
    if diag::has_errors(&diags) {
        return Err(Reported.into());
    }
    let loc = state_location(global)?;
    let mut opts = matih::serve::ServeOptions::new(args.listen, &loc.dir);
    if matches!(loc.backend, StateBackend::Postgres) {
        // Shared by every machine: serve reads the tenants from it and follows applies anywhere.
        opts.postgres = Some(Arc::new(connect_postgres_state(&loc.url_env)?));
    }
    opts.token = std::env::var("MATIH_SERVE_TOKEN").ok().filter(|t| !t.is_empty());
    opts.notify = platform.notify;
    runtime()?.block_on(matih::serve::run(opts))?;
    Ok(ExitCode::SUCCESS)
}
