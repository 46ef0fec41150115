//! The command line's parts: one module per command (its clap arguments and an `exec` that calls
//! the library), and what they share (loading the inputs, opening the state store, printing).

pub mod apply;
pub mod drift;
pub mod graph;
pub mod lock;
pub mod plan;
pub mod serve;
pub mod show;
pub mod state;
pub mod status;
pub mod validate;

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};

use matih::apply::{Providers, DEFAULT_PARALLELISM};
use matih::catalog::Catalog;
use matih::diag::{self, Diagnostic};
use matih::graph::ResourceGraph;
use matih::plan::{render_json, render_markdown, render_text, Plan, TextOptions};
use matih::provider::dns::DnsProvider;
use matih::provider::kubernetes::{KubeSettings, KubeTarget, KubernetesProvider};
use matih::provider::postgres::{PostgresProvider, PostgresSettings};
use matih::spec::{self, PlatformConfig, StateBackend, TenantSpec};
use matih::state::{MemoryStore, PostgresStore, SledStore, StateStore, TenantStatus};
use matih::workflow::{self, Refresh};

use apply::open_for_run;

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

/// What a command does with the state store it opens.
#[derive(Clone, Copy, Debug)]
pub enum StoreUse {
    /// Reads only: an absent sled store is an empty one (planning never creates files).
    Read,
    /// Writes (state rm, force-unlock): the sled store is created if absent.
    Write,
    /// Applies or destroys: waits up to the lock timeout for another process holding a sled store.
    Run(Duration),
}

/// Where the state is: the platform file's `state` block (`backend`, `path`, `url_env`), with
/// `--state`/`MATIH_STATE_DIR` taking precedence for the sled directory.
pub struct StateLocation {
    pub backend: StateBackend,
    pub dir: PathBuf,
    pub url_env: String,
}

pub fn state_location(global: &Global) -> Result<StateLocation> {
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
pub fn open_store(global: &Global, usage: StoreUse) -> Result<Box<dyn StateStore>> {
    open_store_at(&state_location(global)?, usage)
}

pub fn open_store_at(loc: &StateLocation, usage: StoreUse) -> Result<Box<dyn StateStore>> {
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
pub fn connect_postgres_state(url_env: &str) -> Result<PostgresStore> {
    let url = std::env::var(url_env).ok().filter(|u| !u.is_empty()).with_context(|| {
        format!(
            "the platform file selects the postgres state backend, but {url_env} is not set: set it to the \
             connection URL postgresql://USER:PASSWORD@HOST:PORT/DATABASE"
        )
    })?;
    Ok(PostgresStore::connect(&url)?)
}

/// Opens the state store for reading. An absent store is an empty one: planning never creates files.
pub fn open_state_for_read(global: &Global) -> Result<Box<dyn StateStore>> {
    open_store(global, StoreUse::Read)
}

/// Connects the providers the platform file configures: Kubernetes (`kubernetes` block), DNS
/// (`dns` block with a `provider`), PostgreSQL (when the admin URL variable is set). Returns them
/// with, per resource-kind prefix (`kubernetes_`), why that family could not be connected.
pub fn try_connect_providers(
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
pub fn connect_providers(
    platform: &PlatformConfig,
    catalog: &Catalog,
    rt: &tokio::runtime::Runtime,
) -> Result<Providers> {
    let (providers, unavailable) = try_connect_providers(platform, catalog, rt);
    match unavailable.into_values().next() {
        Some(e) => bail!(e),
        None => Ok(providers),
    }
}

/// Fails, before anything is changed, when a plan needs resource kinds no provider handles.
pub fn require_providers(plan: &Plan, providers: &Providers, platform: &PlatformConfig) -> Result<()> {
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
pub fn compute_plan(
    inputs: &Inputs,
    store: &dyn StateStore,
    providers: &Providers,
    refresh: bool,
    rt: &tokio::runtime::Runtime,
) -> Result<Plan> {
    let r = Refresh { providers, runtime: rt, parallelism: DEFAULT_PARALLELISM };
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

pub fn render(plan: &Plan, format: Format, color: bool) -> String {
    match format {
        Format::Text => render_text(plan, &TextOptions { color }),
        Format::Json => render_json(plan),
        Format::Markdown => render_markdown(plan),
    }
}

pub fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
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

/// The status as the state store and the API spell it (`ACTIVE`).
pub fn status_name(s: TenantStatus) -> String {
    serde_json::to_value(s).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
}

/// Writes to stdout; a closed pipe (`matih plan | head`) is not an error.
pub fn print(s: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(s.as_bytes()).and_then(|_| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}
