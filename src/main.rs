//! The `matih` command line: parse the arguments, pick the command, map its result to an exit
//! code. Each command is a file of `src/cli/` (its arguments and an `exec` that calls the library).

mod cli;

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::Result;
use clap::{CommandFactory, Parser, Subcommand};

use cli::{
    apply, completion, drift, graph, import, lock, output, plan, serve, show, state, status, validate, Global, Reported,
};

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

#[derive(Subcommand, Debug)]
enum Command {
    /// Check tenant specs (and the platform file) without touching state; exit 1 on any error.
    #[command(after_help = "Examples:\n  matih validate\n  matih validate tenants/acme.hcl --format json")]
    Validate(validate::Args),
    /// Show what would change to make the recorded state match the tenant specs.
    ///
    /// Differences an `ignore_changes` path covers (the catalog's `ignore_changes "KIND" { paths = [...] }`
    /// in schemas/lifecycle.hcl, or a spec's `lifecycle { ignore_changes = ["KIND.NAME:PATH"] }`) are left
    /// alone (the recorded value is kept) and listed as ignored, with where each path is declared. A record
    /// the catalog's `moved { from = "KIND.OLD"  to = "KIND.NEW" }` blocks rename is shown as
    /// `# KIND.OLD has moved to KIND.NEW`, and applying the plan moves it: never a destroy and a create.
    #[command(
        after_help = "Examples:\n  matih plan tenants/acme.hcl\n  matih plan tenants/ -out=p.tfplan -detailed-exitcode\n  matih plan tenants/ --target '*/postgresql_role.tenant' --format markdown\n  matih plan tenants/ -refresh-only -out=accept.tfplan\n  matih plan tenants/ --group --format json\n  matih plan tenants/ --policy examples/policies -out=p.tfplan\n  matih plan tenants/acme.hcl --format json --json-shape terraform"
    )]
    Plan(plan::Args),
    /// Make the real world match the tenant specs (or a saved plan), phase by phase.
    #[command(
        after_help = "Examples:\n  matih apply tenants/acme.hcl\n  matih apply -auto-approve p.tfplan --expect-digest sha256:…\n  matih apply tenants/ --auto-approve --tenant-parallelism 50 --shard 1/4\n  matih apply -refresh-only -auto-approve tenants/acme.hcl"
    )]
    Apply(apply::Args),
    /// Delete every resource of the tenants, in reverse phase order.
    #[command(
        after_help = "Examples:\n  matih destroy tenants/acme.hcl\n  matih destroy tenants/acme.hcl --auto-approve --allow-data-loss"
    )]
    Destroy(apply::Args),
    /// Render a saved plan file.
    #[command(after_help = "Examples:\n  matih show p.tfplan\n  matih show p.tfplan --format markdown")]
    Show(show::Args),
    /// Print the resource graph of tenants as DOT, one cluster per phase.
    #[command(after_help = "Examples:\n  matih graph tenants/acme.hcl | dot -Tsvg > acme.svg")]
    Graph(graph::Args),
    /// Where provisioning of a tenant stands, from the state store.
    #[command(after_help = "Examples:\n  matih status acme\n  matih status acme --history --json")]
    Status(status::Args),
    /// Inspect and edit recorded state.
    #[command(subcommand, after_help = "Examples:\n  matih state list\n  matih state show acme")]
    State(state::Command),
    /// Inspect and release tenant locks.
    #[command(subcommand, after_help = "Examples:\n  matih lock list\n  matih lock force-unlock acme 6f1c…")]
    Lock(lock::Command),
    /// Record objects that already exist as tenants' resources, after reading them (nothing is changed).
    #[command(
        after_help = "Examples:\n  matih import acme/kubernetes_namespace.tenant\n  matih import '*/postgresql_role.tenant' --path tenants/"
    )]
    Import(import::Args),
    /// A tenant's outputs: LoadBalancer IP, nameservers, URLs, database host and name (never a password).
    Output(output::Args),
    /// Read every recorded resource back and report what changed outside matih (read-only).
    ///
    /// A field another controller owns, and a difference an `ignore_changes` path of the catalog or the
    /// tenant's spec covers, is listed as ignored, not as drift.
    #[command(
        after_help = "Examples:\n  matih drift tenants/\n  matih drift tenants/ --format json --detailed-exitcode"
    )]
    Drift(drift::Args),
    /// Print a shell completion script (bash, zsh, fish, powershell).
    #[command(
        after_help = "Examples:\n  matih completion bash > /etc/bash_completion.d/matih\n  matih completion zsh > \"${fpath[1]}/_matih\"\n  matih completion fish > ~/.config/fish/completions/matih.fish"
    )]
    Completion(completion::CompletionArgs),
    /// Print matih's manual page (roff), or write one page per command into a directory.
    #[command(after_help = "Examples:\n  matih man | man -l -\n  matih man --out-dir /usr/local/share/man/man1")]
    Man(completion::ManArgs),
    /// Serve provisioning status, a live WebSocket stream and a status page over HTTP.
    #[command(after_help = "Examples:\n  matih serve\n  MATIH_SERVE_TOKEN=… matih serve --listen 0.0.0.0:8080")]
    Serve(serve::Args),
}

fn main() -> ExitCode {
    // Terraform's spellings (`-auto-approve`, `-out=FILE`, `-refresh=false`, …) beside the GNU ones.
    let cli = Cli::parse_from(cli::spelling::terraform_spellings(std::env::args_os(), &Cli::command()));
    if let Err(e) = cli::logging::init() {
        eprintln!("error: {e:#}");
        return ExitCode::from(1);
    }
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(1)
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    let color = !cli.global.no_color && std::env::var_os("NO_COLOR").is_none() && std::io::stdout().is_terminal();
    let global = &cli.global;
    let result = match cli.command {
        Command::Validate(args) => validate::exec(global, &args),
        Command::Plan(args) => plan::exec(global, &args, color),
        Command::Apply(args) => apply::exec(global, &args, color, false),
        Command::Destroy(args) => apply::exec(global, &args, color, true),
        Command::Show(args) => show::exec(&args, color),
        Command::Graph(args) => graph::exec(global, &args),
        Command::Status(args) => status::exec(global, &args),
        Command::State(cmd) => state::exec(global, cmd, color),
        Command::Lock(cmd) => lock::exec(global, cmd),
        Command::Drift(args) => drift::exec(global, &args),
        Command::Output(args) => output::exec(global, &args),
        Command::Import(args) => import::exec(global, &args),
        Command::Completion(args) => completion::completion(Cli::command(), &args),
        Command::Man(args) => completion::man(Cli::command(), &args),
        Command::Serve(args) => serve::exec(global, &args),
    };
    match result {
        Err(e) if e.is::<Reported>() => Ok(ExitCode::from(1)),
        other => other,
    }
}
