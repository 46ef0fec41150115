//! `matih state list|show|history|migrate|rm|mv|restore`: inspect and edit recorded state.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Subcommand, ValueEnum};

use matih::spec::StateBackend;
use matih::state::StateStore as _;

use matih::workflow::store::{forget_resources, StateLocation, StoreUse};
use matih::workflow::{state_mv, state_restore};

use super::views::status::status_name;
use super::{
    compute_plan, confirm, load_inputs, open_state_for_read, open_store, print, render, runtime, state_location,
    Format, Global,
};

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Every tenant in the state store, with status, serial and resource count.
    #[command(after_help = "Examples:\n  matih state list")]
    List,
    /// The recorded state of a tenant (or of one resource of it), as JSON.
    #[command(
        after_help = "Examples:\n  matih state show acme\n  matih state show acme kubernetes_service.ingress_controller"
    )]
    Show {
        /// The tenant's slug.
        slug: String,
        /// One resource (KIND.NAME) instead of the whole state.
        address: Option<String>,
    },
    /// Earlier serials of a tenant's state.
    #[command(after_help = "Examples:\n  matih state history acme")]
    History {
        /// The tenant's slug.
        slug: String,
    },
    /// Copy every tenant (state, history, audit log) from one backend to the other, empty one, and
    /// compare SHA-256 digests. The sled directory is --state (or the `state` block's path), the
    /// PostgreSQL URL is in the variable the `state` block's url_env names (MATIH_STATE_URL).
    #[command(
        after_help = "Examples:\n  MATIH_STATE_URL=postgresql://… matih state migrate --from sled --to postgres"
    )]
    Migrate {
        /// The backend to copy from.
        #[arg(long, value_enum)]
        from: BackendArg,
        /// The backend to copy to (it must be empty).
        #[arg(long, value_enum)]
        to: BackendArg,
    },
    /// Forget resources (matih will no longer manage them; nothing is deleted in the real world).
    #[command(after_help = "Examples:\n  matih state rm acme kubernetes_config_map.tempo_overrides")]
    Rm {
        /// The tenant's slug.
        slug: String,
        /// The resources to forget (KIND.NAME), one or more.
        #[arg(required = true)]
        addresses: Vec<String>,
    },
    /// Give a recorded resource a new address (a rename in the catalog or spec), in one tenant
    /// (`TENANT/KIND.NAME`) or in every tenant that records it (`KIND.NAME`), so the next plan
    /// does not destroy and recreate it. Nothing changes in the real world.
    #[command(
        after_help = "Examples:\n  matih state mv acme/kubernetes_deployment.query_engine kubernetes_deployment.trino\n  \
                      matih state mv --dry-run kubernetes_deployment.query_engine kubernetes_deployment.trino"
    )]
    Mv {
        /// The recorded address, `[TENANT/]KIND.NAME` (every tenant recording it without `TENANT/`).
        from: String,
        /// The new address: same kind, same tenant (which may be left out), not yet recorded.
        to: String,
        /// Print what would move and write nothing (Terraform's `-dry-run` is accepted too).
        #[arg(long)]
        dry_run: bool,
    },
    /// Bring an earlier record of a tenant back, through a plan: serial N's resources become the
    /// current record as a new serial (the history is kept, never rewritten). Nothing changes in
    /// the real world; the command then says what the next `matih plan` will do about it.
    #[command(after_help = "Examples:\n  matih state history acme\n  matih state restore acme --serial 4\n  \
                      matih state restore acme --serial 4 --auto-approve --path tenants/acme.hcl")]
    Restore(RestoreArgs),
}

#[derive(clap::Args, Debug)]
pub struct RestoreArgs {
    /// The tenant's slug.
    slug: String,
    /// The earlier serial to restore, as `matih state history SLUG` lists it.
    #[arg(long, value_name = "N")]
    serial: u64,
    /// Do not ask for confirmation.
    #[arg(long)]
    auto_approve: bool,
    /// With --input=false matih never asks: a restore that would need the prompt fails instead.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    input: bool,
    /// Tenant spec files or directories of them, where the tenant's spec is found to say what the
    /// next plan will do (repeatable; default tenants).
    #[arg(long = "path", value_name = "PATH", default_value = "tenants")]
    paths: Vec<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BackendArg {
    Sled,
    Postgres,
}

pub fn exec(global: &Global, cmd: Command, color: bool) -> Result<ExitCode> {
    match cmd {
        Command::List => {
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
        Command::Show { slug, address } => {
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
        Command::History { slug } => {
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
        Command::Migrate { from, to } => {
            if from == to {
                bail!("--from and --to name the same backend; nothing to migrate");
            }
            let loc = state_location(global)?;
            let open = |b: BackendArg, usage: StoreUse| {
                let backend = match b {
                    BackendArg::Sled => StateBackend::Sled,
                    BackendArg::Postgres => StateBackend::Postgres,
                };
                StateLocation { backend, ..loc.clone() }.open(usage)
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
        Command::Rm { slug, addresses } => {
            let store = open_store(global, StoreUse::Write)?;
            let serial = forget_resources(store.as_ref(), &slug, &addresses)?;
            println!("Removed {} resource(s) from the state of {slug:?} (serial {serial}).", addresses.len());
        }
        Command::Mv { from, to, dry_run } => state_mv_command(global, &from, &to, dry_run)?,
        Command::Restore(args) => return restore_command(global, &args, color),
    }
    Ok(ExitCode::SUCCESS)
}

/// `matih state restore SLUG --serial N`: the restore plan, the next plan's outlook, the prompt,
/// the write.
fn restore_command(global: &Global, args: &RestoreArgs, color: bool) -> Result<ExitCode> {
    let store = open_store(global, StoreUse::Write)?;
    let restore = state_restore::plan_restore(store.as_ref(), &args.slug, args.serial, None)?;
    print(&render(&restore.plan, Format::Text, color, None, false))?;
    if !restore.plan.has_changes() {
        println!("\nSerial {} records the same resources as the current record; nothing to restore.", args.serial);
        return Ok(ExitCode::SUCCESS);
    }
    print(&format!("\n{}\n", next_plan_outlook(global, args, &restore)))?;
    if !args.auto_approve && !args.input {
        bail!("--input=false: this restore would need the confirmation prompt; nothing was restored");
    }
    if !args.auto_approve && !confirm("Do you want to restore this record?", false)? {
        eprintln!("Restore cancelled; nothing was recorded.");
        return Ok(ExitCode::from(1));
    }
    let serial = state_restore::record_restore(store.as_ref(), &restore)?;
    println!(
        "Restore complete! The resources of serial {} of tenant {:?} are recorded as serial {serial}; nothing was \
         changed in the real world.",
        args.serial, args.slug
    );
    Ok(ExitCode::SUCCESS)
}

/// What the next `matih plan` of the tenant will do once the record is restored: its spec (found
/// in `--path`) planned against the restored record, refreshed when the platform file configures
/// providers. A sentence; never an error (a restore does not need the spec).
fn next_plan_outlook(global: &Global, args: &RestoreArgs, restore: &state_restore::Restore) -> String {
    let outlook = || -> Result<String> {
        let mut inputs = load_inputs(global, &args.paths)?;
        let Some(i) = inputs.graphs.iter().position(|g| g.tenant.slug == args.slug) else {
            return Ok(format!(
                "No spec of tenant {:?} in {}: the next plan cannot be told here (pass --path).",
                args.slug,
                args.paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
            ));
        };
        inputs.graphs = vec![inputs.graphs.swap_remove(i)];
        inputs.specs = vec![inputs.specs.swap_remove(i)];
        let restored = matih::state::MemoryStore::new();
        let mut st = state_restore::restored_state(&restore.current, restore);
        st.serial = 1;
        restored.put(&st, None, "restore preview")?;
        let rt = runtime()?;
        let refresh = inputs.platform_file.is_some();
        let providers = if refresh {
            matih::workflow::connect::connect(&inputs.platform, &inputs.catalog, &rt)?
        } else {
            matih::apply::Providers::new()
        };
        let plan = compute_plan(&inputs, &restored, &providers, refresh, &Default::default(), &rt)?;
        let s = plan.summary();
        let against =
            if refresh { "the specs and what is live" } else { "the specs (no platform file: nothing live read)" };
        Ok(if s.is_empty() {
            format!(
                "Once restored, the next `matih plan` of {:?} shows no changes: {against} match the restored record.",
                args.slug
            )
        } else {
            format!(
                "Once restored, the next `matih plan` of {:?} compares {against} with the restored record: {}",
                args.slug,
                counts(&s)
            )
        })
    };
    outlook().unwrap_or_else(|e| format!("The next plan cannot be told here: {e:#}"))
}

/// `matih state mv [--dry-run] FROM TO`.
fn state_mv_command(global: &Global, from: &str, to: &str, dry_run: bool) -> Result<()> {
    let mv = state_mv::Move::parse(from, to)?;
    let store = if dry_run { open_state_for_read(global)? } else { open_store(global, StoreUse::Write)? };
    let moved = state_mv::move_resource(store.as_ref(), &mv, dry_run)?;
    let mut out = String::new();
    for m in &moved {
        let verb = if dry_run { "would move" } else { "moved" };
        out.push_str(&format!(
            "{:<24} {verb} {} to {} ({} dependent(s) updated), serial {}\n",
            m.slug, mv.from, mv.to, m.dependents, m.serial
        ));
    }
    out.push_str(&if dry_run {
        format!("Dry run: {} tenant(s) would move; nothing was written.\n", moved.len())
    } else {
        format!("Moved {} to {} in {} tenant(s).\n", mv.from, mv.to, moved.len())
    });
    print(&out)?;
    Ok(())
}

/// `N to add, M to change, K to destroy.` (adoptions first when there are any), as plans say it.
fn counts(s: &matih::plan::Summary) -> String {
    let adopt = if s.adopt > 0 { format!("{} to adopt, ", s.adopt) } else { String::new() };
    format!("{adopt}{} to add, {} to change, {} to destroy.", s.to_add(), s.change, s.to_destroy())
}
